//! Broadcast: PROPOSAL, ACK and COMMIT (piggybacked) in zxid order,
//! batched and pipelined; pings that carry the commit point and read rounds;
//! and the timers that send a server back to election when its leader or
//! its quorum goes quiet.

use super::{FollowStage, History, LeadStage, Message, PeerPhase, Phase, Zab, ZabEffects, Zxid};
use crate::consensus::progress::ReplicationState;
use crate::consensus::SnapshotAck;
use crate::types::{Entry, Epoch, Index, NodeId};

/// A ping of `epoch` as the shell sends it: `(commit, read_round)`.
fn ping(epoch: Epoch) -> impl Fn(Index, u64) -> Message {
    move |commit, read_round| Message::Ping {
        epoch,
        commit,
        read_round,
    }
}

impl Zab {
    pub(super) fn maybe_commit(&mut self) {
        if self.is_established() {
            self.shell.commit_quorum();
        }
    }

    /// A leader's end of batch: proposals to every peer being synced or
    /// synced, and a read round once established.
    pub(super) fn flush_leader(&mut self, out: &mut ZabEffects) {
        let Phase::Leading { stage, peers } = &self.phase else {
            return;
        };
        let epoch = self.new_epoch;
        if matches!(
            stage,
            LeadStage::AwaitNewLeaderAcks | LeadStage::Established
        ) {
            let syncing: Vec<bool> = peers
                .iter()
                .map(|p| {
                    matches!(
                        p,
                        PeerPhase::Snapshotting | PeerPhase::Syncing(_) | PeerPhase::Synced
                    )
                })
                .collect();
            self.shell.send_batches(
                out,
                |p| syncing[p],
                |log, first, entries, commit| {
                    let index = first - 1;
                    let prev = Zxid {
                        epoch: log.term(index)?,
                        index,
                    };
                    Some(Message::Proposal {
                        epoch,
                        prev,
                        entries,
                        commit,
                    })
                },
                |chunk| Message::Snapshot { epoch, chunk },
            );
        }
        let ready = self.is_established();
        self.shell.start_reads(ready, out, ping(epoch));
    }

    /// An established leader pings and checks its quorum; one not
    /// established in time goes back to election (the followers that did
    /// not join are electing again). Pings start with synchronization:
    /// before that a follower's own timeout sends it back to election if no
    /// quorum forms.
    pub(super) fn tick_leader(&mut self, out: &mut ZabEffects) {
        if self.is_established() {
            if self.shell.tick_leader(true, out, ping(self.new_epoch)) {
                self.start_looking(out);
            }
            return;
        }
        self.shell.elapsed += 1;
        self.shell.heartbeat_elapsed += 1;
        if self.shell.elapsed >= self.shell.timing.election_ticks_max {
            self.start_looking(out);
            return;
        }
        let syncing = self.stage() == Some(LeadStage::AwaitNewLeaderAcks);
        if syncing && self.shell.heartbeat_elapsed >= self.shell.timing.heartbeat_ticks {
            self.shell.heartbeat_elapsed = 0;
            let round = self.shell.reads.current_round();
            let ping = ping(self.new_epoch);
            self.shell.heartbeat_all(out, |commit| ping(commit, round));
        }
    }

    /// A follower goes back to election when its leader goes quiet, and
    /// resends the step it is stuck on (messages can be lost).
    pub(super) fn tick_follower(&mut self, out: &mut ZabEffects) {
        self.shell.heartbeat_elapsed += 1;
        if self.shell.tick_election() {
            self.start_looking(out);
            return;
        }
        if self.shell.heartbeat_elapsed < self.shell.timing.heartbeat_ticks {
            return;
        }
        self.shell.heartbeat_elapsed = 0;
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
                newleader: self.shell.log.last_index(),
            },
            FollowStage::Broadcast(_) => return,
        };
        out.send(leader, msg);
    }

    /// A follower's ACK: `Ok(index)` holds the history through it; `Err(last)`
    /// found a gap after its last index.
    pub(super) fn handle_ack(
        &mut self,
        p: usize,
        result: Result<Index, Index>,
        out: &mut ZabEffects,
    ) {
        match result {
            Ok(i) => {
                if self.shell.on_append_ack(p, i) {
                    self.maybe_commit();
                }
                // A follower the leader meant to send its snapshot (an
                // ACKEPOCH it resent before its sync arrived described an
                // older history) shows it holds this epoch's history up
                // to here: it needs no snapshot, only the sync.
                let matched = self.shell.repl.progress[p].matched;
                let snapshotting = self
                    .lead_peers()
                    .is_some_and(|(_, peers)| peers[p] == PeerPhase::Snapshotting);
                if snapshotting && matched >= self.shell.log.snapshot_index() {
                    let history = History {
                        snapshot: matched,
                        epochs: Vec::new(),
                    };
                    self.sync_for(p, &history, matched, out);
                }
            }
            Err(follower_last) => {
                let pr = self.shell.heard_from(p);
                // A late answer while the snapshot is on its way.
                if pr.state != ReplicationState::Snapshot {
                    pr.probe_from(follower_last + 1);
                }
            }
        }
    }

    /// A follower's answer to a snapshot chunk. One that was waiting for
    /// the snapshot before its sync is synced from the snapshot on.
    pub(super) fn handle_snapshot_ack(&mut self, p: usize, ack: SnapshotAck, out: &mut ZabEffects) {
        self.shell.on_snapshot_ack(p, ack);
        let waiting = self
            .lead_peers()
            .is_some_and(|(_, peers)| peers[p] == PeerPhase::Snapshotting);
        if ack.done && waiting && ack.index == self.shell.log.snapshot_index() {
            // It holds the snapshot: the same history through its index.
            let history = History {
                snapshot: ack.index,
                epochs: Vec::new(),
            };
            self.sync_for(p, &history, ack.index, out);
        } else {
            self.maybe_commit();
        }
    }

    /// Proposals of this follower's leader (in `epoch`, which it serves)
    /// after `prev`; acknowledged at flush.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle_proposal(
        &mut self,
        leader: NodeId,
        stage: FollowStage,
        epoch: Epoch,
        prev: Zxid,
        entries: Vec<Entry>,
        commit: Index,
        out: &mut ZabEffects,
    ) {
        if self.shell.log.term(prev.index) != Some(prev.epoch) {
            let result = Err(self.shell.log.last_index());
            out.send(leader, Message::Ack { epoch, result });
            return;
        }
        let from_leader = entries
            .iter()
            .enumerate()
            .all(|(i, e)| e.index == prev.index + 1 + i as Index && e.epoch == epoch);
        if !from_leader {
            return;
        }
        let last_new = prev.index + entries.len() as Index;
        // A duplicate proposal is already logged.
        let fresh: Vec<Entry> = entries
            .into_iter()
            .filter(|e| self.shell.log.term(e.index) != Some(e.epoch))
            .collect();
        if let Some(first) = fresh.first().map(|e| e.index) {
            self.replace_after(first - 1, fresh, epoch, out);
        }
        if let FollowStage::Broadcast(_) = stage {
            self.shell.log.commit_to(commit.min(last_new));
        }
        let ack = match self.pending_ack {
            Some((to, e, i)) if to == leader && e == epoch => i.max(last_new),
            _ => last_new,
        };
        self.pending_ack = Some((leader, epoch, ack));
    }
}
