//! ZAB (ZooKeeper Atomic Broadcast), sans-IO, as ZooKeeper runs it:
//!
//! - **Fast Leader Election**: votes ordered by (peer epoch, last zxid,
//!   server id), notification rounds under an election epoch (logical
//!   clock), and a short finalize wait once a quorum agrees. A server that
//!   is already following or leading answers a looking one with its leader,
//!   so late joiners find the established leader.
//! - **Discovery**: followers report their accepted epoch; the leader picks
//!   a new epoch above every one of a quorum (NEWEPOCH) and collects epoch
//!   acknowledgements, giving up if a follower's history is ahead of its own.
//! - **Synchronization**: DIFF, TRUNC or SNAP per follower, then NEWLEADER;
//!   a follower persists the synced proposals and its new current epoch
//!   before it acknowledges. Nothing is broadcast before a quorum
//!   acknowledged NEWLEADER; then the whole synced history is committed and
//!   UPTODATE carries that commit point.
//! - **Broadcast**: PROPOSAL, ACK and COMMIT (piggybacked) in zxid order,
//!   batched and pipelined; a follower that sees a gap asks for the rest.
//!
//! Accepted and current epochs persist separately. Followers that stop
//! hearing their leader go back to election; a leader that loses its quorum
//! does too. Reads are linearizable through a quorum ping round.

mod config;
mod message;
#[cfg(test)]
mod tests;

pub use config::ZabConfig;
pub use message::{HardState, Message, PeerState, SyncKind, Vote, Zxid};

use crate::consensus::log::Log;
use crate::consensus::progress::{Progress, ReplicationState};
use crate::consensus::quorum;
use crate::consensus::read_index::ReadQueue;
use crate::consensus::replication::Replication;
use crate::consensus::{
    Effects, Protocol, ProtocolKind, ReadFailed, ReadId, ReadReady, Recovered, RoleChange,
};
use crate::error::{ConfigError, ProposeError};
use crate::rng::Rng;
use crate::types::{Entry, EntryKind, Epoch, Index, NodeId, Role};
use bytes::Bytes;

/// A history summary: the last index of each epoch, in order.
type History = Vec<(Epoch, Index)>;

/// Effects of a ZAB core.
pub type ZabEffects = Effects<Message, HardState>;

/// Most voters (acks are tracked in a 64-bit set).
pub const MAX_VOTERS: usize = 64;

#[derive(Debug)]
struct Election {
    vote: Vote,
    /// Votes of looking peers in this election epoch, by position.
    received: Vec<Option<Vote>>,
    /// What peers that are following or leading report, by position.
    settled: Vec<Option<(Vote, PeerState)>>,
    finalize_in: Option<u32>,
    resend_in: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FollowStage {
    /// Sent FOLLOWERINFO, waiting for NEWEPOCH.
    Discovery,
    /// Acknowledged `epoch`, waiting for the sync and NEWLEADER.
    AckedEpoch(Epoch),
    /// Synced and acknowledged NEWLEADER, waiting for UPTODATE.
    Synced(Epoch),
    /// Serving: proposals and commits flow.
    Broadcast(Epoch),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum PeerPhase {
    Unknown,
    Info(Epoch),
    /// Acknowledged the new epoch; its history summary and last index.
    EpochAcked(History, Index),
    Syncing(Index),
    Synced,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LeadStage {
    Discovery,
    AwaitEpochAcks,
    AwaitNewLeaderAcks,
    Established,
}

#[derive(Debug)]
enum Phase {
    Looking(Election),
    Following {
        leader: NodeId,
        stage: FollowStage,
    },
    Leading {
        stage: LeadStage,
        peers: Vec<PeerPhase>,
    },
}

/// A ZAB server.
#[derive(Debug)]
pub struct Zab {
    id: NodeId,
    voters: Vec<NodeId>,
    self_pos: usize,
    cfg: ZabConfig,
    accepted_epoch: Epoch,
    current_epoch: Epoch,
    /// The history; `log.commit()` is the committed prefix.
    log: Log,
    election_epoch: u64,
    phase: Phase,
    /// The epoch this server leads, once NEWEPOCH is chosen.
    new_epoch: Epoch,
    /// NEWLEADER's index when this leader was established.
    newleader: Index,
    elapsed: u32,
    heartbeat_elapsed: u32,
    randomized_timeout: u32,
    rng: Rng,
    /// Leader only: progress by voter position and the uncommitted budget.
    repl: Replication,
    reads: ReadQueue,
    pending_ack: Option<(NodeId, Epoch, Index)>,
    /// Follower in `AckedEpoch`: whether its epoch acknowledgement was a
    /// fresh promise (the epoch was above what it had accepted).
    fresh_epoch_ack: bool,
    emitted_commit: Index,
    persisted: HardState,
    reported: Option<RoleChange>,
}

/// Common prefix of the leader's log and a follower history given as the
/// last index of each of its epochs (ascending). Entries of one epoch come
/// from one leader in one order, so histories agree wherever (index, epoch)
/// agree.
fn common_prefix(log: &Log, history: &[(Epoch, Index)]) -> Index {
    let mut common = 0;
    for &(epoch, last) in history {
        if log.term(last) == Some(epoch) {
            common = last;
            continue;
        }
        if let Some(x) = log.last_index_of_term(epoch, last) {
            if x > common {
                common = x;
            }
        }
        break;
    }
    common
}

impl Zab {
    fn pos(&self, id: NodeId) -> Option<usize> {
        self.voters.iter().position(|&v| v == id)
    }

    /// The history (read-only), for tests and inspection.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Epoch accepted in the last discovery.
    pub fn accepted_epoch(&self) -> Epoch {
        self.accepted_epoch
    }

    /// Epoch of the last NEWLEADER acknowledged.
    pub fn current_epoch(&self) -> Epoch {
        self.current_epoch
    }

    /// The last zxid of the history.
    pub fn last_zxid(&self) -> Zxid {
        Zxid {
            epoch: self.log.last_term(),
            index: self.log.last_index(),
        }
    }

    fn self_vote(&self) -> Vote {
        Vote {
            leader: self.id,
            zxid: self.last_zxid(),
            peer_epoch: self.current_epoch,
        }
    }

    fn history(&self) -> History {
        let mut h: History = Vec::new();
        for e in self.log.slice(1, self.log.last_index()) {
            match h.last_mut() {
                Some((ep, last)) if *ep == e.epoch => *last = e.index,
                _ => h.push((e.epoch, e.index)),
            }
        }
        h
    }

    fn send(&self, to: NodeId, msg: Message, out: &mut ZabEffects) {
        out.messages.push((to, msg));
    }

    fn broadcast(&self, msg: Message, out: &mut ZabEffects) {
        for (i, &v) in self.voters.iter().enumerate() {
            if i != self.self_pos {
                out.messages.push((v, msg.clone()));
            }
        }
    }

    fn reset_timers(&mut self) {
        self.elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.randomized_timeout = self.rng.range_inclusive(
            self.cfg.election_ticks_min as u64,
            self.cfg.election_ticks_max as u64 - 1,
        ) as u32;
    }

    fn leaving(&mut self, out: &mut ZabEffects) {
        if self.is_established() {
            self.reads
                .fail_all(|id| out.reads_failed.push(ReadFailed { id, leader: None }));
        }
        self.pending_ack = None;
        self.repl.clear_budget();
    }

    fn is_established(&self) -> bool {
        matches!(
            self.phase,
            Phase::Leading {
                stage: LeadStage::Established,
                ..
            }
        )
    }

    fn notification(&self) -> Message {
        let (vote, state) = match &self.phase {
            Phase::Looking(el) => (el.vote, PeerState::Looking),
            Phase::Following { leader, .. } => (
                Vote {
                    leader: *leader,
                    zxid: self.last_zxid(),
                    peer_epoch: self.current_epoch,
                },
                PeerState::Following,
            ),
            // A leader reports the epoch it leads; still in discovery, it will
            // pick one above every joiner's, so it reports the largest.
            Phase::Leading { stage, .. } => (
                Vote {
                    peer_epoch: if *stage == LeadStage::Discovery {
                        Epoch::MAX
                    } else {
                        self.new_epoch
                    },
                    ..self.self_vote()
                },
                PeerState::Leading,
            ),
        };
        Message::Notification {
            vote,
            election_epoch: self.election_epoch,
            state,
        }
    }

    /// Enters election with a new logical clock and votes for itself.
    fn start_looking(&mut self, out: &mut ZabEffects) {
        self.leaving(out);
        self.election_epoch += 1;
        let vote = self.self_vote();
        let mut received = vec![None; self.voters.len()];
        received[self.self_pos] = Some(vote);
        self.phase = Phase::Looking(Election {
            vote,
            received,
            settled: vec![None; self.voters.len()],
            finalize_in: None,
            resend_in: self.cfg.election_ticks_min,
        });
        self.reset_timers();
        let n = self.notification();
        self.broadcast(n, out);
        self.check_votes(out);
    }

    fn check_votes(&mut self, out: &mut ZabEffects) {
        let Phase::Looking(el) = &mut self.phase else {
            return;
        };
        let n = self.voters.len();
        let agree = el.received.iter().filter(|v| **v == Some(el.vote)).count();
        if agree == n {
            let leader = el.vote.leader;
            self.decide(leader, out);
        } else if quorum::has_majority(agree, n) {
            if el.finalize_in.is_none() {
                el.finalize_in = Some(self.cfg.finalize_ticks.max(1));
            }
        } else {
            el.finalize_in = None;
        }
    }

    fn decide(&mut self, leader: NodeId, out: &mut ZabEffects) {
        self.leaving(out);
        self.reset_timers();
        if leader == self.id {
            let mut peers = vec![PeerPhase::Unknown; self.voters.len()];
            peers[self.self_pos] = PeerPhase::Info(self.accepted_epoch);
            self.phase = Phase::Leading {
                stage: LeadStage::Discovery,
                peers,
            };
            self.repl.reset(self.voters.len(), 1, self.log.last_index());
            self.lead_discovery(out);
        } else {
            self.phase = Phase::Following {
                leader,
                stage: FollowStage::Discovery,
            };
            let info = Message::FollowerInfo {
                accepted_epoch: self.accepted_epoch,
            };
            self.send(leader, info, out);
        }
    }

    fn handle_notification(
        &mut self,
        from: NodeId,
        vote: Vote,
        e: u64,
        state: PeerState,
        out: &mut ZabEffects,
    ) {
        let Some(p) = self.pos(from) else { return };
        let my_epoch = self.election_epoch;
        let self_vote = self.self_vote();
        let Phase::Looking(el) = &mut self.phase else {
            if state == PeerState::Looking {
                let n = self.notification();
                self.send(from, n, out);
            }
            return;
        };
        if state == PeerState::Looking {
            if e > my_epoch {
                self.election_epoch = e;
                el.received.iter_mut().for_each(|v| *v = None);
                el.vote = if vote.beats(&self_vote) {
                    vote
                } else {
                    self_vote
                };
                el.received[self.self_pos] = Some(el.vote);
                el.finalize_in = None;
                el.received[p] = Some(vote);
                let n = self.notification();
                self.broadcast(n, out);
            } else if e < my_epoch {
                let n = self.notification();
                self.send(from, n, out);
                return;
            } else {
                el.received[p] = Some(vote);
                if vote.beats(&el.vote) {
                    el.vote = vote;
                    el.received[self.self_pos] = Some(vote);
                    el.finalize_in = None;
                    let n = self.notification();
                    self.broadcast(n, out);
                }
            }
            self.check_votes(out);
            return;
        }
        // The sender follows or leads: join its leader once a quorum
        // (the leader itself among them) backs it, counting the votes of this
        // election round too.
        el.settled[p] = Some((vote, state));
        if e == my_epoch {
            el.received[p] = Some(vote);
        }
        let leader = vote.leader;
        let settled_backing = el
            .settled
            .iter()
            .filter(|s| s.is_some_and(|(v, _)| v.leader == leader))
            .count();
        let round_backing = el.received.iter().filter(|v| **v == Some(vote)).count();
        let backing = settled_backing.max(round_backing);
        // The leader itself must say it leads. Its epoch may be below what
        // this server accepted (from leaders that never got established):
        // it follows anyway, and its FOLLOWERINFO makes that leader step
        // down so that the next discovery picks an epoch above the promise.
        // Staying LOOKING instead left the server out for good, nothing
        // ever timing out (found by a review's fuzzing).
        let leader_ready = self
            .pos(leader)
            .and_then(|lp| match &self.phase {
                Phase::Looking(el) => el.settled[lp],
                _ => None,
            })
            .is_some_and(|(_, s)| s == PeerState::Leading);
        if leader != self.id && leader_ready && quorum::has_majority(backing, self.voters.len()) {
            self.election_epoch = self.election_epoch.max(e);
            self.decide(leader, out);
        }
    }

    // ----- leader -----

    fn lead_peers(&mut self) -> Option<(&mut LeadStage, &mut Vec<PeerPhase>)> {
        match &mut self.phase {
            Phase::Leading { stage, peers } => Some((stage, peers)),
            _ => None,
        }
    }

    fn lead_discovery(&mut self, out: &mut ZabEffects) {
        let n = self.voters.len();
        let self_pos = self.self_pos;
        let Some((stage, peers)) = self.lead_peers() else {
            return;
        };
        if *stage != LeadStage::Discovery {
            return;
        }
        let infos: Vec<Epoch> = peers
            .iter()
            .filter_map(|p| match p {
                PeerPhase::Info(e) => Some(*e),
                _ => None,
            })
            .collect();
        if !quorum::has_majority(infos.len(), n) {
            return;
        }
        let new_epoch = infos.iter().copied().max().unwrap_or(0) + 1;
        *stage = LeadStage::AwaitEpochAcks;
        peers[self_pos] = PeerPhase::EpochAcked(Vec::new(), 0);
        let targets: Vec<usize> = peers
            .iter()
            .enumerate()
            .filter(|(i, p)| *i != self_pos && matches!(p, PeerPhase::Info(_)))
            .map(|(i, _)| i)
            .collect();
        self.new_epoch = new_epoch;
        self.accepted_epoch = new_epoch;
        for i in targets {
            let to = self.voters[i];
            self.send(to, Message::LeaderInfo { epoch: new_epoch }, out);
        }
        self.lead_epoch_acks(out);
    }

    fn lead_epoch_acks(&mut self, out: &mut ZabEffects) {
        let n = self.voters.len();
        let self_pos = self.self_pos;
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
            .filter(|(i, _)| *i != self_pos)
            .filter_map(|(i, p)| match p {
                PeerPhase::EpochAcked(h, last) => Some((i, h.clone(), *last)),
                _ => None,
            })
            .collect();
        self.current_epoch = self.new_epoch;
        self.newleader = self.log.last_index();
        for (p, history, last) in waiting {
            self.sync_for(p, &history, last, out);
        }
        self.maybe_establish(out);
    }

    /// The sync (and NEWLEADER) for a follower whose history is `history`.
    fn sync_for(
        &mut self,
        p: usize,
        history: &[(Epoch, Index)],
        follower_last: Index,
        out: &mut ZabEffects,
    ) {
        let common = common_prefix(&self.log, history);
        let kind = if common == follower_last {
            SyncKind::Diff
        } else if common == 0 {
            SyncKind::Snap
        } else {
            SyncKind::Trunc
        };
        let last = self.log.last_index();
        let entries = self.log.slice(common + 1, last).to_vec();
        let msg = Message::Sync {
            epoch: self.new_epoch,
            kind,
            keep: common,
            entries,
            newleader: last,
        };
        self.send(self.voters[p], msg, out);
        let pr = &mut self.repl.progress[p];
        *pr = Progress::new(last + 1);
        pr.start_replicating();
        pr.next = last + 1;
        pr.matched = 0;
        if let Some((_, peers)) = self.lead_peers() {
            peers[p] = PeerPhase::Syncing(last);
        }
    }

    fn maybe_establish(&mut self, out: &mut ZabEffects) {
        let n = self.voters.len();
        let self_pos = self.self_pos;
        let Some((stage, peers)) = self.lead_peers() else {
            return;
        };
        if *stage != LeadStage::AwaitNewLeaderAcks {
            return;
        }
        let synced = peers
            .iter()
            .enumerate()
            .filter(|(i, p)| *i == self_pos || **p == PeerPhase::Synced)
            .count();
        if !quorum::has_majority(synced, n) {
            return;
        }
        *stage = LeadStage::Established;
        let synced_peers: Vec<usize> = peers
            .iter()
            .enumerate()
            .filter(|(i, p)| *i != self_pos && **p == PeerPhase::Synced)
            .map(|(i, _)| i)
            .collect();
        // The whole synced history is committed, and UPTODATE says so.
        self.log.commit_to(self.newleader);
        self.repl.progress[self_pos].matched = self.log.last_index();
        self.repl.progress[self_pos].recent_active = true;
        self.reset_timers();
        let commit = self.log.commit();
        for i in synced_peers {
            let to = self.voters[i];
            self.send(
                to,
                Message::UpToDate {
                    epoch: self.new_epoch,
                    commit,
                },
                out,
            );
        }
    }

    fn handle_leader_message(&mut self, from: NodeId, msg: Message, out: &mut ZabEffects) {
        let Some(p) = self.pos(from) else { return };
        let new_epoch = self.new_epoch;
        match msg {
            Message::FollowerInfo { accepted_epoch } => {
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
                    // This server promised a higher epoch than ours (to a
                    // leader that never got established) and can never
                    // follow us; or it promised ours without its promise
                    // reaching us, so its ACKEPOCH can no longer count (it
                    // would not be fresh) while we still need a quorum.
                    // Step down: the next discovery includes it and picks an
                    // epoch above its promise. (Past the epoch stage, our own
                    // epoch accepted before is answered below: the ACKEPOCH
                    // that follows only resyncs it.)
                    self.start_looking(out);
                } else {
                    // A FOLLOWERINFO may be stale, delayed from before the
                    // peer synced: it must not undo the peer's progress (the
                    // leader would stop sending it proposals while the peer,
                    // already serving, ignores the LEADERINFO). A real new
                    // registration answers with an ACKEPOCH, which syncs it
                    // again.
                    if matches!(peers[p], PeerPhase::Unknown | PeerPhase::Info(_)) {
                        peers[p] = PeerPhase::Info(accepted_epoch);
                    }
                    self.send(from, Message::LeaderInfo { epoch: new_epoch }, out);
                }
            }
            Message::AckEpoch {
                epoch,
                current_epoch,
                last,
                history,
                fresh,
            } => {
                if epoch != new_epoch {
                    return;
                }
                let ahead = (current_epoch, last) > (self.current_epoch, self.last_zxid());
                match self.stage() {
                    Some(LeadStage::AwaitEpochAcks) => {
                        if ahead {
                            // A follower is ahead of this leader: give up and
                            // let the election find the most up-to-date server.
                            self.start_looking(out);
                            return;
                        }
                        // Promised to another leader first: not part of this
                        // epoch's quorum (it is synced once the quorum forms).
                        if !fresh {
                            return;
                        }
                        if let Some((_, peers)) = self.lead_peers() {
                            peers[p] = PeerPhase::EpochAcked(history, last.index);
                        }
                        self.lead_epoch_acks(out);
                    }
                    // The quorum formed already: sync this one now (a history
                    // of older epochs this leader lacks is truncated by the
                    // sync; none of this epoch can exist elsewhere, as every
                    // server promises an epoch to one leader only).
                    Some(LeadStage::AwaitNewLeaderAcks | LeadStage::Established) => {
                        self.sync_for(p, &history, last.index, out)
                    }
                    _ => {}
                }
            }
            Message::AckNewLeader { epoch, newleader } => {
                if epoch != new_epoch {
                    return;
                }
                let Some((stage, peers)) = self.lead_peers() else {
                    return;
                };
                let stage = *stage;
                // A follower resends its NEWLEADER acknowledgement with its
                // last index, which grows with the proposals that follow the
                // sync: any index at or past the sync's acknowledges it (a
                // lost first answer must not leave the follower unsynced
                // forever, its timer kept alive by our pings).
                if !matches!(peers[p], PeerPhase::Syncing(x) if newleader >= x)
                    && peers[p] != PeerPhase::Synced
                {
                    return;
                }
                peers[p] = PeerPhase::Synced;
                let pr = &mut self.repl.progress[p];
                pr.recent_active = true;
                pr.acknowledge(newleader);
                if stage == LeadStage::Established {
                    let commit = self.log.commit().min(newleader);
                    self.send(from, Message::UpToDate { epoch, commit }, out);
                    self.maybe_commit();
                } else {
                    self.maybe_establish(out);
                }
            }
            Message::Ack { epoch, result } => {
                if epoch != new_epoch {
                    return;
                }
                let last = self.log.last_index();
                let pr = &mut self.repl.progress[p];
                pr.recent_active = true;
                match result {
                    Ok(i) => {
                        let moved = pr.acknowledge(i.min(last));
                        if pr.state == ReplicationState::Probe {
                            pr.start_replicating();
                        }
                        if moved {
                            self.maybe_commit();
                        }
                    }
                    Err(follower_last) => pr.probe_from(follower_last + 1),
                }
            }
            Message::Pong { epoch, read_round } => {
                if epoch != new_epoch {
                    return;
                }
                let last = self.log.last_index();
                let pr = &mut self.repl.progress[p];
                pr.recent_active = true;
                match pr.state {
                    ReplicationState::Probe => pr.paused = false,
                    ReplicationState::Replicate => pr.check_needed = pr.matched < last,
                }
                if read_round > 0 && self.is_established() {
                    let n = self.voters.len();
                    self.reads.acknowledge(p, read_round, n, |id, index| {
                        out.reads_ready.push(ReadReady { id, index });
                    });
                }
            }
            _ => {}
        }
    }

    fn stage(&self) -> Option<LeadStage> {
        match &self.phase {
            Phase::Leading { stage, .. } => Some(*stage),
            _ => None,
        }
    }

    fn maybe_commit(&mut self) {
        if self.is_established() {
            let c = self.repl.quorum_index();
            self.repl.commit(&mut self.log, c);
        }
    }

    fn send_proposals(&mut self, out: &mut ZabEffects) {
        let commit = self.log.commit();
        let limits = self.cfg.limits;
        let Phase::Leading { peers, .. } = &self.phase else {
            return;
        };
        let targets: Vec<usize> = peers
            .iter()
            .enumerate()
            .filter(|(i, p)| {
                *i != self.self_pos && matches!(p, PeerPhase::Syncing(_) | PeerPhase::Synced)
            })
            .map(|(i, _)| i)
            .collect();
        for p in targets {
            let to = self.voters[p];
            let mut sent_any = false;
            let mut sends: Vec<(Index, Vec<Entry>, Index)> = Vec::new();
            while let Some(batch) = self.repl.next_batch(p, &self.log, &limits) {
                sent_any = true;
                sends.push((batch.first - 1, batch.entries, commit));
            }
            if let Some(next) = self.repl.take_check(p).filter(|_| !sent_any) {
                // An empty proposal after the last one sent: a gap answer
                // shows pipelined proposals were lost.
                let matched = self.repl.progress[p].matched;
                sends.push((next - 1, Vec::new(), commit.min(matched)));
            }
            for (prev_index, entries, commit) in sends {
                let Some(prev_epoch) = self.log.term(prev_index) else {
                    continue;
                };
                let prev = Zxid {
                    epoch: prev_epoch,
                    index: prev_index,
                };
                let msg = Message::Proposal {
                    epoch: self.new_epoch,
                    prev,
                    entries,
                    commit,
                };
                self.send(to, msg, out);
            }
        }
    }

    fn ping_all(&mut self, read_round: u64, out: &mut ZabEffects) {
        for p in 0..self.voters.len() {
            if p != self.self_pos {
                let msg = Message::Ping {
                    epoch: self.new_epoch,
                    commit: self.log.commit().min(self.repl.progress[p].matched),
                    read_round,
                };
                self.send(self.voters[p], msg, out);
            }
        }
    }

    fn tick_leader(&mut self, out: &mut ZabEffects) {
        self.elapsed += 1;
        self.heartbeat_elapsed += 1;
        if !self.is_established() {
            // Not established in time: followers that did not join are
            // electing again; join them.
            if self.elapsed >= self.cfg.election_ticks_max {
                self.start_looking(out);
                return;
            }
        } else if self.elapsed >= self.cfg.election_ticks_min {
            self.elapsed = 0;
            if !self.repl.quorum_active() {
                self.start_looking(out);
                return;
            }
        }
        // Ping once synchronization started; before that a follower's own
        // timeout sends it back to election if no quorum forms.
        let syncing = matches!(
            self.stage(),
            Some(LeadStage::AwaitNewLeaderAcks | LeadStage::Established)
        );
        if syncing && self.heartbeat_elapsed >= self.cfg.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            let round = self.reads.current_round();
            self.ping_all(round, out);
        }
    }

    // ----- follower -----

    fn handle_follower_message(&mut self, from: NodeId, msg: Message, out: &mut ZabEffects) {
        let Phase::Following { leader, stage } = self.phase else {
            return;
        };
        // Only what a leader sends counts as hearing from it: two servers
        // that each decided to follow the other (stale notifications) would
        // otherwise keep each other's timers alive forever with their
        // FOLLOWERINFO resends.
        if from != leader || !msg.is_from_leader() {
            return;
        }
        let session = match stage {
            FollowStage::Discovery => None,
            FollowStage::AckedEpoch(e) | FollowStage::Synced(e) | FollowStage::Broadcast(e) => {
                Some(e)
            }
        };
        let msg_epoch = match &msg {
            Message::Sync { epoch, .. }
            | Message::UpToDate { epoch, .. }
            | Message::Proposal { epoch, .. }
            | Message::Ping { epoch, .. } => Some(*epoch),
            _ => None,
        };
        match (session, msg_epoch) {
            (Some(mine), Some(theirs)) if theirs > mine => {
                // The same server leads a newer epoch (it went through an
                // election we missed): register with it again.
                self.phase = Phase::Following {
                    leader,
                    stage: FollowStage::Discovery,
                };
                let info = Message::FollowerInfo {
                    accepted_epoch: self.accepted_epoch,
                };
                self.send(from, info, out);
                return;
            }
            (Some(mine), Some(theirs)) if theirs < mine => return,
            // Only the current session keeps this follower from timing out.
            _ => self.elapsed = 0,
        }
        match msg {
            Message::LeaderInfo { epoch } => {
                if stage != FollowStage::Discovery && stage != FollowStage::AckedEpoch(epoch) {
                    return;
                }
                if epoch < self.accepted_epoch {
                    // A leader behind what this server already accepted.
                    self.start_looking(out);
                    return;
                }
                // A promise is fresh only the first time: an epoch already
                // accepted was promised to some leader, maybe another one
                // (a resend of this session's LEADERINFO keeps its answer).
                self.fresh_epoch_ack = if stage == FollowStage::AckedEpoch(epoch) {
                    self.fresh_epoch_ack
                } else {
                    epoch > self.accepted_epoch
                };
                self.accepted_epoch = epoch;
                self.phase = Phase::Following {
                    leader,
                    stage: FollowStage::AckedEpoch(epoch),
                };
                let ack = self.ack_epoch(epoch);
                self.send(from, ack, out);
            }
            Message::Sync {
                epoch,
                kind: _,
                keep,
                entries,
                newleader,
            } => {
                let expected = matches!(stage, FollowStage::AckedEpoch(e) | FollowStage::Synced(e) | FollowStage::Broadcast(e) if e == epoch);
                if !expected {
                    return;
                }
                if keep < self.log.commit() || keep > self.log.last_index() {
                    ::log::error!(
                        "node {}: sync would cut committed history; back to election",
                        self.id
                    );
                    self.start_looking(out);
                    return;
                }
                let consecutive = entries
                    .iter()
                    .enumerate()
                    .all(|(i, e)| keep.checked_add(1 + i as Index) == Some(e.index));
                if !consecutive || keep + entries.len() as Index != newleader {
                    return;
                }
                self.replace_after(keep, entries, epoch, out);
                // NEWLEADER: the synced history and the new current epoch are
                // persisted (this batch) before the acknowledgement leaves.
                self.current_epoch = epoch;
                if let FollowStage::AckedEpoch(_) = stage {
                    self.phase = Phase::Following {
                        leader,
                        stage: FollowStage::Synced(epoch),
                    };
                }
                self.send(from, Message::AckNewLeader { epoch, newleader }, out);
            }
            Message::UpToDate { epoch, commit } => {
                if matches!(stage, FollowStage::Synced(e) | FollowStage::Broadcast(e) if e == epoch)
                {
                    self.phase = Phase::Following {
                        leader,
                        stage: FollowStage::Broadcast(epoch),
                    };
                    self.log.commit_to(commit);
                }
            }
            Message::Proposal {
                epoch,
                prev,
                entries,
                commit,
            } => {
                let serving = matches!(stage, FollowStage::Synced(e) | FollowStage::Broadcast(e) if e == epoch);
                if !serving {
                    return;
                }
                if self.log.term(prev.index) != Some(prev.epoch) {
                    let last = self.log.last_index();
                    self.send(
                        from,
                        Message::Ack {
                            epoch,
                            result: Err(last),
                        },
                        out,
                    );
                    return;
                }
                let consecutive = entries
                    .iter()
                    .enumerate()
                    .all(|(i, e)| e.index == prev.index + 1 + i as Index && e.epoch == epoch);
                if !consecutive {
                    return;
                }
                let last_new = prev.index + entries.len() as Index;
                let mut fresh = Vec::new();
                for e in entries {
                    match self.log.term(e.index) {
                        // A duplicate proposal: already logged.
                        Some(t) if t == e.epoch => {}
                        _ => fresh.push(e),
                    }
                }
                if let Some(first) = fresh.first().map(|e| e.index) {
                    self.replace_after(first - 1, fresh, epoch, out);
                }
                if let FollowStage::Broadcast(_) = stage {
                    self.log.commit_to(commit.min(last_new));
                }
                let ack = match self.pending_ack {
                    Some((to, e, i)) if to == from && e == epoch => i.max(last_new),
                    _ => last_new,
                };
                self.pending_ack = Some((from, epoch, ack));
            }
            Message::Ping {
                epoch,
                commit,
                read_round,
            } => {
                if let FollowStage::Broadcast(e) = stage {
                    if e == epoch {
                        self.log.commit_to(commit);
                    }
                }
                let serving = matches!(stage, FollowStage::Synced(e) | FollowStage::Broadcast(e) if e == epoch);
                if serving {
                    self.send(from, Message::Pong { epoch, read_round }, out);
                }
            }
            _ => {}
        }
    }

    fn ack_epoch(&self, epoch: Epoch) -> Message {
        Message::AckEpoch {
            epoch,
            current_epoch: self.current_epoch,
            last: self.last_zxid(),
            history: self.history(),
            fresh: self.fresh_epoch_ack,
        }
    }

    /// Keeps the history through `keep` and puts `entries` after it. Later
    /// entries survive only if they are proposals of `epoch` (this leader's,
    /// which a repeated sync must not drop); older ones are truncated.
    fn replace_after(
        &mut self,
        keep: Index,
        entries: Vec<Entry>,
        epoch: Epoch,
        out: &mut ZabEffects,
    ) {
        let first_diff = entries
            .iter()
            .position(|e| self.log.entry(e.index) != Some(e));
        let cut = match first_diff {
            Some(k) => Some(keep + 1 + k as Index),
            None => {
                let after = keep + 1 + entries.len() as Index;
                self.log
                    .entry(after)
                    .filter(|e| e.epoch != epoch)
                    .map(|_| after)
            }
        };
        if let Some(cut) = cut.filter(|&c| c <= self.log.last_index()) {
            if !self.log.truncate(cut) {
                ::log::error!(
                    "node {}: refusing to truncate committed history at {cut}",
                    self.id
                );
                return;
            }
            out.truncate(cut);
        }
        let from = self.log.last_index() + 1;
        for e in entries.into_iter().filter(|e| e.index >= from) {
            out.append.push(e.clone());
            self.log.push(e);
        }
    }

    fn tick_follower(&mut self, out: &mut ZabEffects) {
        self.elapsed += 1;
        self.heartbeat_elapsed += 1;
        if self.elapsed >= self.randomized_timeout {
            self.start_looking(out);
            return;
        }
        if self.heartbeat_elapsed < self.cfg.heartbeat_ticks {
            return;
        }
        self.heartbeat_elapsed = 0;
        // Resend the step this follower is stuck on (messages can be lost).
        let Phase::Following { leader, stage } = self.phase else {
            return;
        };
        let msg = match stage {
            FollowStage::Discovery => Message::FollowerInfo {
                accepted_epoch: self.accepted_epoch,
            },
            FollowStage::AckedEpoch(e) => self.ack_epoch(e),
            FollowStage::Synced(e) => Message::AckNewLeader {
                epoch: e,
                newleader: self.log.last_index(),
            },
            FollowStage::Broadcast(_) => return,
        };
        self.send(leader, msg, out);
    }

    fn emit_committed(&mut self, out: &mut ZabEffects) {
        self.log
            .take_committed(&mut self.emitted_commit, &mut out.committed);
    }

    fn leader_hint(&self) -> Option<NodeId> {
        match &self.phase {
            Phase::Following {
                leader,
                stage: FollowStage::Broadcast(_),
            } => Some(*leader),
            Phase::Leading {
                stage: LeadStage::Established,
                ..
            } => Some(self.id),
            _ => None,
        }
    }
}

impl Protocol for Zab {
    type Message = Message;
    type HardState = HardState;
    type Config = ZabConfig;
    const KIND: ProtocolKind = ProtocolKind::Zab;

    fn new(
        id: NodeId,
        voters: &[NodeId],
        config: ZabConfig,
        recovered: Recovered<HardState>,
        seed: u64,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let self_pos = crate::consensus::validate_membership(id, voters, MAX_VOTERS)?;
        let hs = recovered.hard_state.unwrap_or_default();
        Log::check_epochs_ordered(&recovered.entries)
            .map_err(|e| ConfigError::new("recovered", e))?;
        let log = Log::from_entries(recovered.entries, hs.commit)
            .map_err(|e| ConfigError::new("recovered", e))?;
        let mut zab = Zab {
            id,
            voters: voters.to_vec(),
            self_pos,
            accepted_epoch: hs.accepted_epoch,
            current_epoch: hs.current_epoch,
            log,
            election_epoch: 1,
            phase: Phase::Looking(Election {
                vote: Vote {
                    leader: id,
                    zxid: Zxid::default(),
                    peer_epoch: 0,
                },
                received: vec![None; voters.len()],
                settled: vec![None; voters.len()],
                finalize_in: None,
                // The first tick announces this server's vote.
                resend_in: 1,
            }),
            new_epoch: 0,
            newleader: 0,
            elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_timeout: config.election_ticks_min,
            rng: Rng::new(seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            repl: Replication::new(self_pos),
            reads: ReadQueue::default(),
            pending_ack: None,
            fresh_epoch_ack: false,
            emitted_commit: 0,
            persisted: hs.clone(),
            reported: None,
            cfg: config,
        };
        zab.reset_timers();
        let vote = zab.self_vote();
        if let Phase::Looking(el) = &mut zab.phase {
            el.vote = vote;
            el.received[self_pos] = Some(vote);
        }
        Ok(zab)
    }

    fn tick(&mut self, out: &mut ZabEffects) {
        match &mut self.phase {
            Phase::Looking(el) => {
                if let Some(k) = el.finalize_in.as_mut() {
                    *k = k.saturating_sub(1);
                    if *k == 0 {
                        let leader = el.vote.leader;
                        self.decide(leader, out);
                        return;
                    }
                }
                el.resend_in = el.resend_in.saturating_sub(1);
                if el.resend_in == 0 {
                    el.resend_in = self.cfg.election_ticks_min;
                    let n = self.notification();
                    self.broadcast(n, out);
                }
            }
            Phase::Following { .. } => self.tick_follower(out),
            Phase::Leading { .. } => self.tick_leader(out),
        }
    }

    fn step(&mut self, from: NodeId, msg: Message, out: &mut ZabEffects) {
        if from == self.id || self.pos(from).is_none() {
            return;
        }
        match msg {
            Message::Notification {
                vote,
                election_epoch,
                state,
            } => self.handle_notification(from, vote, election_epoch, state, out),
            other => match self.phase {
                Phase::Leading { .. } => self.handle_leader_message(from, other, out),
                Phase::Following { .. } => self.handle_follower_message(from, other, out),
                Phase::Looking(_) => {}
            },
        }
    }

    fn propose(
        &mut self,
        data: Bytes,
        out: &mut ZabEffects,
    ) -> Result<(Epoch, Index), ProposeError> {
        if !self.is_established() {
            return Err(ProposeError::NotLeader {
                leader: self.leader_hint(),
            });
        }
        self.repl.admit(
            data.len() + Entry::OVERHEAD,
            self.cfg.limits.max_uncommitted_bytes,
        )?;
        let entry = Entry::new(
            self.new_epoch,
            self.log.last_index() + 1,
            EntryKind::Normal,
            data,
        );
        let (index, size) = (entry.index, entry.size());
        out.append.push(entry.clone());
        self.log.push(entry);
        self.repl.appended(index, size);
        if self.voters.len() == 1 {
            self.maybe_commit();
        }
        Ok((self.new_epoch, index))
    }

    fn read(&mut self, id: ReadId, _out: &mut ZabEffects) -> Result<(), ProposeError> {
        if !self.is_established() {
            return Err(ProposeError::NotLeader {
                leader: self.leader_hint(),
            });
        }
        self.reads.push(id);
        Ok(())
    }

    fn flush(&mut self, out: &mut ZabEffects) {
        if let Phase::Leading { stage, .. } = &self.phase {
            if *stage != LeadStage::Discovery && *stage != LeadStage::AwaitEpochAcks {
                self.send_proposals(out);
            }
            if self.is_established() && self.reads.has_waiting() {
                let round = self.reads.start_round(self.log.commit(), self.self_pos);
                if self.voters.len() == 1 {
                    self.reads
                        .acknowledge(self.self_pos, round, 1, |id, index| {
                            out.reads_ready.push(ReadReady { id, index });
                        });
                } else {
                    self.ping_all(round, out);
                }
            }
        } else if let Some((to, epoch, i)) = self.pending_ack.take() {
            self.send(
                to,
                Message::Ack {
                    epoch,
                    result: Ok(i),
                },
                out,
            );
        }
        self.emit_committed(out);
        let hs = HardState {
            accepted_epoch: self.accepted_epoch,
            current_epoch: self.current_epoch,
            commit: self.log.commit(),
        };
        if hs != self.persisted {
            out.hard_state = Some(hs.clone());
            self.persisted = hs;
        }
        let now = RoleChange {
            role: self.role(),
            epoch: self.epoch(),
            leader: self.leader_hint(),
        };
        if self.reported != Some(now) {
            out.role_change = Some(now);
            self.reported = Some(now);
        }
    }

    fn id(&self) -> NodeId {
        self.id
    }
    fn role(&self) -> Role {
        match &self.phase {
            Phase::Looking(_) => Role::PreCandidate,
            Phase::Following { .. } => Role::Follower,
            Phase::Leading {
                stage: LeadStage::Established,
                ..
            } => Role::Leader,
            Phase::Leading { .. } => Role::Candidate,
        }
    }
    fn epoch(&self) -> Epoch {
        match &self.phase {
            Phase::Leading { stage, .. } if *stage != LeadStage::Discovery => self.new_epoch,
            _ => self.current_epoch,
        }
    }
    fn leader(&self) -> Option<NodeId> {
        self.leader_hint()
    }
    fn commit_index(&self) -> Index {
        self.log.commit()
    }
    fn last_index(&self) -> Index {
        self.log.last_index()
    }
    fn voters(&self) -> &[NodeId] {
        &self.voters
    }
}
