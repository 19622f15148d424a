//! Discovery and synchronization, both sides. The leader gathers
//! FOLLOWERINFO from a quorum, picks a new epoch above every one (NEWEPOCH),
//! collects fresh epoch acknowledgements, syncs each follower (DIFF, TRUNC
//! or SNAP, then NEWLEADER) and is established once a quorum acknowledged
//! NEWLEADER; UPTODATE then carries the commit point. A follower promises
//! an epoch to one leader only, and persists the synced history and its
//! new current epoch before it acknowledges NEWLEADER.

use super::{
    FollowStage, History, LeadStage, Message, PeerPhase, Phase, SyncKind, Zab, ZabEffects,
};
use crate::consensus::log::{self, Log};
use crate::consensus::progress::{Progress, ReplicationState};
use crate::consensus::quorum;
use crate::types::{Entry, Epoch, Index, NodeId};

/// Common prefix of the leader's log and a follower history given as the
/// last index of each of its epochs (ascending). Entries of one epoch come
/// from one leader in one order, so histories agree wherever (index, epoch)
/// agree. Below the leader's snapshot only its last entry is known: a
/// follower whose history has the snapshot's epoch there agrees with the
/// leader up to it; one that does not shares nothing the leader can check
/// (0: it gets the snapshot).
pub(super) fn common_prefix(log: &Log, history: &History) -> Index {
    let base = log.snapshot_index();
    // Through the follower's own snapshot everything is committed: the
    // same as here.
    let mut common = history.snapshot.min(log.last_index());
    let mut covered = history.snapshot;
    for &(epoch, last) in &history.epochs {
        if last <= covered {
            continue;
        }
        if last < base {
            covered = last;
            continue;
        }
        if covered < base {
            // This epoch's run holds the follower's entry at the
            // snapshot's index.
            if epoch != log.snapshot_epoch() {
                break;
            }
            common = base;
        }
        covered = last;
        if log.term(last) == Some(epoch) {
            common = last;
            continue;
        }
        if let Some(x) = log.last_index_of_term(epoch, last) {
            common = common.max(x);
        }
        break;
    }
    common
}

// ----- leader -----

impl Zab {
    /// Discovery: once a quorum reported its accepted epoch, pick one above
    /// all of them and send it (NEWEPOCH, as LEADERINFO).
    pub(super) fn lead_discovery(&mut self, out: &mut ZabEffects) {
        let n = self.shell.voters.len();
        let me = self.shell.self_pos;
        let Some((stage, peers)) = self.lead_peers() else {
            return;
        };
        if *stage != LeadStage::Discovery {
            return;
        }
        let infos: Vec<(usize, Epoch)> = peers
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match p {
                PeerPhase::Info(e) => Some((i, *e)),
                _ => None,
            })
            .collect();
        if !quorum::has_majority(infos.len(), n) {
            return;
        }
        let new_epoch = infos.iter().map(|(_, e)| *e).max().unwrap_or(0) + 1;
        *stage = LeadStage::AwaitEpochAcks;
        peers[me] = PeerPhase::EpochAcked(History::default(), 0);
        self.new_epoch = new_epoch;
        self.accepted_epoch = new_epoch;
        for (i, _) in infos.into_iter().filter(|(i, _)| *i != me) {
            let to = self.shell.voters[i];
            out.send(to, Message::LeaderInfo { epoch: new_epoch });
        }
        self.lead_epoch_acks(out);
    }

    /// Once a quorum acknowledged the new epoch: sync each of them.
    fn lead_epoch_acks(&mut self, out: &mut ZabEffects) {
        let n = self.shell.voters.len();
        let me = self.shell.self_pos;
        let Some((stage, peers)) = self.lead_peers() else {
            return;
        };
        if *stage != LeadStage::AwaitEpochAcks {
            return;
        }
        let acked = peers
            .iter()
            .filter(|p| matches!(p, PeerPhase::EpochAcked(..)))
            .count();
        if !quorum::has_majority(acked, n) {
            return;
        }
        *stage = LeadStage::AwaitNewLeaderAcks;
        let waiting: Vec<(usize, History, Index)> = peers
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != me)
            .filter_map(|(i, p)| match p {
                PeerPhase::EpochAcked(h, last) => Some((i, h.clone(), *last)),
                _ => None,
            })
            .collect();
        self.current_epoch = self.new_epoch;
        self.newleader = self.shell.log.last_index();
        for (p, history, last) in waiting {
            self.sync_for(p, &history, last, out);
        }
        self.maybe_establish(out);
    }

    /// The sync (and NEWLEADER) for a follower whose history is `history`.
    pub(super) fn sync_for(
        &mut self,
        p: usize,
        history: &History,
        follower_last: Index,
        out: &mut ZabEffects,
    ) {
        let common = common_prefix(&self.shell.log, history);
        let base = self.shell.log.snapshot_index();
        if common < base {
            // The entries after its history were compacted: SNAP first
            // (chunks go at flush; a repeated ACKEPOCH resends the one
            // that may have been lost), the sync once it holds it.
            let pr = &mut self.shell.repl.progress[p];
            if pr.state != ReplicationState::Snapshot {
                *pr = Progress::new(common + 1);
            }
            pr.paused = false;
            if let Some((_, peers)) = self.lead_peers() {
                peers[p] = PeerPhase::Snapshotting;
            }
            return;
        }
        let kind = if base > 0 && common == base && follower_last <= base {
            SyncKind::Snap
        } else if common == follower_last {
            SyncKind::Diff
        } else if common == 0 {
            SyncKind::Snap
        } else {
            SyncKind::Trunc
        };
        let last = self.shell.log.last_index();
        let entries = self.shell.log.slice(common + 1, last).to_vec();
        let msg = Message::Sync {
            epoch: self.new_epoch,
            kind,
            keep: common,
            entries,
            newleader: last,
        };
        out.send(self.shell.voters[p], msg);
        let pr = &mut self.shell.repl.progress[p];
        *pr = Progress::new(last + 1);
        pr.start_replicating();
        pr.next = last + 1;
        pr.matched = 0;
        if let Some((_, peers)) = self.lead_peers() {
            peers[p] = PeerPhase::Syncing(last);
        }
    }

    /// Established once a quorum acknowledged NEWLEADER: the whole synced
    /// history is committed, and UPTODATE says so.
    fn maybe_establish(&mut self, out: &mut ZabEffects) {
        let n = self.shell.voters.len();
        let me = self.shell.self_pos;
        let Some((stage, peers)) = self.lead_peers() else {
            return;
        };
        if *stage != LeadStage::AwaitNewLeaderAcks {
            return;
        }
        let synced: Vec<usize> = peers
            .iter()
            .enumerate()
            .filter(|(i, p)| *i != me && **p == PeerPhase::Synced)
            .map(|(i, _)| i)
            .collect();
        if !quorum::has_majority(synced.len() + 1, n) {
            return;
        }
        *stage = LeadStage::Established;
        self.shell.log.commit_to(self.newleader);
        let own = &mut self.shell.repl.progress[me];
        own.matched = self.shell.log.last_index();
        own.recent_active = true;
        self.shell.reset_timers();
        let (epoch, commit) = (self.new_epoch, self.shell.log.commit());
        for i in synced {
            out.send(self.shell.voters[i], Message::UpToDate { epoch, commit });
        }
    }

    pub(super) fn handle_follower_info(
        &mut self,
        from: NodeId,
        p: usize,
        accepted_epoch: Epoch,
        out: &mut ZabEffects,
    ) {
        let new_epoch = self.new_epoch;
        let Some((stage, peers)) = self.lead_peers() else {
            return;
        };
        if *stage == LeadStage::Discovery {
            peers[p] = PeerPhase::Info(accepted_epoch);
            self.lead_discovery(out);
        } else if accepted_epoch > new_epoch
            || (accepted_epoch == new_epoch
                && *stage == LeadStage::AwaitEpochAcks
                && !matches!(peers[p], PeerPhase::EpochAcked(..)))
        {
            // This server promised a higher epoch than ours (to a leader
            // that never got established) and can never follow us; or it
            // promised ours without its promise reaching us, so its
            // ACKEPOCH can no longer count (it would not be fresh) while we
            // still need a quorum. Step down: the next discovery includes it
            // and picks an epoch above its promise. (Past the epoch stage,
            // our own epoch accepted before is answered below: the ACKEPOCH
            // that follows only resyncs it.)
            self.start_looking(out);
        } else {
            // A FOLLOWERINFO may be stale, delayed from before the peer
            // synced: it must not undo the peer's progress (the leader would
            // stop sending it proposals while the peer, already serving,
            // ignores the LEADERINFO). A real new registration answers with
            // an ACKEPOCH, which syncs it again.
            if matches!(peers[p], PeerPhase::Unknown | PeerPhase::Info(_)) {
                peers[p] = PeerPhase::Info(accepted_epoch);
            }
            out.send(from, Message::LeaderInfo { epoch: new_epoch });
        }
    }

    /// An ACKEPOCH of this leader's epoch; `ahead`: the follower's history
    /// is ahead of this leader's.
    pub(super) fn handle_ack_epoch(
        &mut self,
        p: usize,
        ahead: bool,
        fresh: bool,
        history: History,
        last: Index,
        out: &mut ZabEffects,
    ) {
        match self.stage() {
            Some(LeadStage::AwaitEpochAcks) => {
                if ahead {
                    // A follower is ahead of this leader: give up and let
                    // the election find the most up-to-date server.
                    self.start_looking(out);
                    return;
                }
                // Promised to another leader first: not part of this epoch's
                // quorum (it is synced once the quorum forms).
                if !fresh {
                    return;
                }
                if let Some((_, peers)) = self.lead_peers() {
                    peers[p] = PeerPhase::EpochAcked(history, last);
                }
                self.lead_epoch_acks(out);
            }
            // The quorum formed already: sync this one now (a history of
            // older epochs this leader lacks is truncated by the sync; none
            // of this epoch can exist elsewhere, as every server promises an
            // epoch to one leader only).
            Some(LeadStage::AwaitNewLeaderAcks | LeadStage::Established) => {
                self.sync_for(p, &history, last, out)
            }
            _ => {}
        }
    }

    pub(super) fn handle_ack_new_leader(
        &mut self,
        from: NodeId,
        p: usize,
        newleader: Index,
        out: &mut ZabEffects,
    ) {
        let epoch = self.new_epoch;
        let Some((stage, peers)) = self.lead_peers() else {
            return;
        };
        let stage = *stage;
        // A follower resends its NEWLEADER acknowledgement with its last
        // index, which grows with the proposals that follow the sync: any
        // index at or past the sync's acknowledges it (a lost first answer
        // must not leave the follower unsynced forever, its timer kept alive
        // by our pings).
        if !matches!(peers[p], PeerPhase::Syncing(x) if newleader >= x)
            && peers[p] != PeerPhase::Synced
        {
            return;
        }
        peers[p] = PeerPhase::Synced;
        self.shell.heard_from(p).acknowledge(newleader);
        if stage == LeadStage::Established {
            let commit = self.shell.log.commit().min(newleader);
            out.send(from, Message::UpToDate { epoch, commit });
            self.maybe_commit();
        } else {
            self.maybe_establish(out);
        }
    }
}

// ----- follower -----

impl Zab {
    pub(super) fn ack_epoch(&self, epoch: Epoch) -> Message {
        let history = self.history();
        Message::AckEpoch {
            epoch,
            current_epoch: self.current_epoch,
            last: self.last_zxid(),
            history: history.epochs,
            snapshot: history.snapshot,
            fresh: self.fresh_epoch_ack,
        }
    }

    /// NEWEPOCH from this follower's leader: promise it (once) and answer
    /// with this server's history.
    pub(super) fn handle_leader_info(
        &mut self,
        leader: NodeId,
        stage: FollowStage,
        epoch: Epoch,
        out: &mut ZabEffects,
    ) {
        if stage != FollowStage::Discovery && stage != FollowStage::AckedEpoch(epoch) {
            return;
        }
        if epoch < self.accepted_epoch {
            // A leader behind what this server already accepted.
            self.start_looking(out);
            return;
        }
        // A promise is fresh only the first time: an epoch already accepted
        // was promised to some leader, maybe another one (a resend of this
        // session's LEADERINFO keeps its answer).
        if stage != FollowStage::AckedEpoch(epoch) {
            self.fresh_epoch_ack = epoch > self.accepted_epoch;
        }
        self.accepted_epoch = epoch;
        let stage = FollowStage::AckedEpoch(epoch);
        self.phase = Phase::Following { leader, stage };
        out.send(leader, self.ack_epoch(epoch));
    }

    /// The sync and NEWLEADER: the history through `keep` stays, `entries`
    /// follow it up to `newleader`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle_sync(
        &mut self,
        leader: NodeId,
        stage: FollowStage,
        epoch: Epoch,
        keep: Index,
        entries: Vec<Entry>,
        newleader: Index,
        out: &mut ZabEffects,
    ) {
        if stage.session() != Some(epoch) {
            return;
        }
        if keep < self.shell.log.commit() || keep > self.shell.log.last_index() {
            ::log::error!(
                "node {}: sync would cut committed history; back to election",
                self.shell.id
            );
            self.start_looking(out);
            return;
        }
        if !log::consecutive(&entries, keep + 1) || keep + entries.len() as Index != newleader {
            return;
        }
        self.replace_after(keep, entries, epoch, out);
        // NEWLEADER: the synced history and the new current epoch are
        // persisted (this batch) before the acknowledgement leaves.
        self.current_epoch = epoch;
        if let FollowStage::AckedEpoch(_) = stage {
            let stage = FollowStage::Synced(epoch);
            self.phase = Phase::Following { leader, stage };
        }
        out.send(leader, Message::AckNewLeader { epoch, newleader });
    }

    /// Keeps the history through `keep` and puts `entries` after it. Later
    /// entries survive only if they are proposals of `epoch` (this leader's,
    /// which a repeated sync must not drop); older ones are truncated.
    pub(super) fn replace_after(
        &mut self,
        keep: Index,
        entries: Vec<Entry>,
        epoch: Epoch,
        out: &mut ZabEffects,
    ) {
        let log = &self.shell.log;
        let cut = match entries.iter().position(|e| log.entry(e.index) != Some(e)) {
            Some(k) => Some(keep + 1 + k as Index),
            None => {
                let after = keep + 1 + entries.len() as Index;
                log.entry(after).filter(|e| e.epoch != epoch).map(|_| after)
            }
        };
        if let Some(cut) = cut.filter(|&c| c <= log.last_index()) {
            if !self.shell.truncate(cut, out) {
                return;
            }
        }
        let from = self.shell.log.last_index() + 1;
        for e in entries.into_iter().filter(|e| e.index >= from) {
            self.shell.write(e, out);
        }
    }
}
