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
//! The phases live in their own files: `election.rs` (Fast Leader
//! Election), `discovery.rs` (discovery and synchronization, both sides) and
//! `broadcast.rs` (proposals, commits, pings and timers). Accepted and
//! current epochs persist separately. Followers that stop
//! hearing their leader go back to election; a leader that loses its quorum
//! does too. Reads are linearizable through a quorum ping round.

mod broadcast;
mod config;
mod discovery;
mod election;
mod message;
#[cfg(test)]
mod tests;

pub use config::ZabConfig;
pub use message::{HardState, Message, PeerState, SyncKind, Vote, Zxid};

use crate::consensus::log::Log;
use crate::consensus::shell::{protocol_plumbing, Shell};
use crate::consensus::{Effects, Protocol, ProtocolKind, RoleChange};
use crate::error::ProposeError;
use crate::types::{Epoch, Index, NodeId, Role};
use election::Election;

pub use crate::consensus::MAX_VOTERS;

/// A follower's history as its leader compares it: the index its snapshot
/// covers (committed there, so it agrees with any leader's history) and
/// the last index of each epoch after it, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct History {
    snapshot: Index,
    epochs: Vec<(Epoch, Index)>,
}

/// Effects of a ZAB core.
pub type ZabEffects = Effects<Message, HardState>;

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

impl FollowStage {
    /// The epoch of the leader's session this stage belongs to (none yet
    /// in discovery).
    fn session(self) -> Option<Epoch> {
        match self {
            FollowStage::Discovery => None,
            FollowStage::AckedEpoch(e) | FollowStage::Synced(e) | FollowStage::Broadcast(e) => {
                Some(e)
            }
        }
    }

    /// True once synced in `epoch`: proposals and pings of it are served.
    fn serves(self, epoch: Epoch) -> bool {
        matches!(self, FollowStage::Synced(e) | FollowStage::Broadcast(e) if e == epoch)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum PeerPhase {
    Unknown,
    Info(Epoch),
    /// Acknowledged the new epoch; its history summary and last index.
    EpochAcked(History, Index),
    /// Its history ends before this leader's log begins: the snapshot
    /// goes first, then the sync.
    Snapshotting,
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
    /// `shell.log` is the history; its commit is the committed prefix.
    shell: Shell<HardState>,
    cfg: ZabConfig,
    accepted_epoch: Epoch,
    current_epoch: Epoch,
    election_epoch: u64,
    phase: Phase,
    /// The epoch this server leads, once NEWEPOCH is chosen.
    new_epoch: Epoch,
    /// NEWLEADER's index when this leader was established.
    newleader: Index,
    pending_ack: Option<(NodeId, Epoch, Index)>,
    /// Follower in `AckedEpoch`: whether its epoch acknowledgement was a
    /// fresh promise (the epoch was above what it had accepted).
    fresh_epoch_ack: bool,
}

impl Zab {
    /// A history never goes back in epoch.
    const EPOCHS_ORDERED: bool = true;

    fn from_shell(shell: Shell<HardState>, hs: HardState, cfg: ZabConfig) -> Self {
        let mut el = Election::new(shell.voters.len());
        let mut zab = Zab {
            phase: Phase::Looking(Election::new(0)),
            shell,
            cfg,
            accepted_epoch: hs.accepted_epoch,
            current_epoch: hs.current_epoch,
            election_epoch: 1,
            new_epoch: 0,
            newleader: 0,
            pending_ack: None,
            fresh_epoch_ack: false,
        };
        el.vote = zab.self_vote();
        el.received[zab.shell.self_pos] = Some(el.vote);
        zab.phase = Phase::Looking(el);
        zab
    }

    /// The epoch this server leads (established), or `NotLeader` with the
    /// leader it serves under.
    fn lead_epoch(&self) -> Result<Epoch, ProposeError> {
        if self.is_established() {
            Ok(self.new_epoch)
        } else {
            Err(ProposeError::NotLeader {
                leader: self.leader_hint(),
            })
        }
    }

    /// The history (read-only), for tests and inspection.
    pub fn log(&self) -> &Log {
        &self.shell.log
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
            epoch: self.shell.log.last_term(),
            index: self.shell.log.last_index(),
        }
    }

    fn history(&self) -> History {
        let log = &self.shell.log;
        let mut h = Vec::new();
        for e in log.slice(1, log.last_index()) {
            match h.last_mut() {
                Some((ep, last)) if *ep == e.epoch => *last = e.index,
                _ => h.push((e.epoch, e.index)),
            }
        }
        History {
            snapshot: log.snapshot_index(),
            epochs: h,
        }
    }

    /// Leaves the current phase: an established leader's reads fail and a
    /// follower's unsent acknowledgement is dropped.
    fn leaving(&mut self, out: &mut ZabEffects) {
        self.shell.stop_leading(None, out);
        self.pending_ack = None;
    }

    fn is_established(&self) -> bool {
        self.stage() == Some(LeadStage::Established)
    }

    fn stage(&self) -> Option<LeadStage> {
        match &self.phase {
            Phase::Leading { stage, .. } => Some(*stage),
            _ => None,
        }
    }

    fn lead_peers(&mut self) -> Option<(&mut LeadStage, &mut Vec<PeerPhase>)> {
        match &mut self.phase {
            Phase::Leading { stage, peers } => Some((stage, peers)),
            _ => None,
        }
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
            } => Some(self.shell.id),
            _ => None,
        }
    }

    /// What a leader hears from follower `p` (`from`).
    fn handle_leader_message(
        &mut self,
        from: NodeId,
        p: usize,
        msg: Message,
        out: &mut ZabEffects,
    ) {
        let new_epoch = self.new_epoch;
        match msg {
            Message::FollowerInfo { accepted_epoch } => {
                self.handle_follower_info(from, p, accepted_epoch, out)
            }
            Message::AckEpoch {
                epoch,
                current_epoch,
                last,
                history,
                snapshot,
                fresh,
            } if epoch == new_epoch => {
                let ahead = (current_epoch, last) > (self.current_epoch, self.last_zxid());
                let history = History {
                    snapshot,
                    epochs: history,
                };
                self.handle_ack_epoch(p, ahead, fresh, history, last.index, out)
            }
            Message::AckNewLeader { epoch, newleader } if epoch == new_epoch => {
                self.handle_ack_new_leader(from, p, newleader, out)
            }
            Message::Ack { epoch, result } if epoch == new_epoch => self.handle_ack(p, result, out),
            Message::SnapshotAck { epoch, ack } if epoch == new_epoch => {
                self.handle_snapshot_ack(p, ack, out)
            }
            Message::Pong { epoch, read_round } if epoch == new_epoch => {
                self.shell.on_heartbeat_ack(p, read_round, out)
            }
            _ => {}
        }
    }

    /// What a follower hears from `from`. Only what its leader sends counts
    /// as hearing from it: two servers that each decided to follow the
    /// other (stale notifications) would otherwise keep each other's timers
    /// alive forever with their FOLLOWERINFO resends.
    fn handle_follower_message(&mut self, from: NodeId, msg: Message, out: &mut ZabEffects) {
        let Phase::Following { leader, stage } = self.phase else {
            return;
        };
        if from != leader || !msg.is_from_leader() || !self.in_session(leader, stage, &msg, out) {
            return;
        }
        match msg {
            Message::LeaderInfo { epoch } => self.handle_leader_info(leader, stage, epoch, out),
            Message::Sync {
                epoch,
                keep,
                entries,
                newleader,
                ..
            } => self.handle_sync(leader, stage, epoch, keep, entries, newleader, out),
            Message::UpToDate { epoch, commit } if stage.serves(epoch) => {
                let stage = FollowStage::Broadcast(epoch);
                self.phase = Phase::Following { leader, stage };
                self.shell.log.commit_to(commit);
            }
            Message::Proposal {
                epoch,
                prev,
                entries,
                commit,
            } if stage.serves(epoch) => {
                self.handle_proposal(leader, stage, epoch, prev, entries, commit, out)
            }
            Message::Snapshot { epoch, chunk } if stage.session() == Some(epoch) => {
                let ack = self.shell.receive_chunk(chunk, out);
                out.send(from, Message::SnapshotAck { epoch, ack });
            }
            Message::Ping {
                epoch,
                commit,
                read_round,
            } => {
                if stage == FollowStage::Broadcast(epoch) {
                    self.shell.log.commit_to(commit);
                }
                if stage.serves(epoch) {
                    out.send(from, Message::Pong { epoch, read_round });
                }
            }
            _ => {}
        }
    }

    /// True when `msg` belongs to this follower's session with `leader`,
    /// whose timer it then resets. A newer epoch from the same server means
    /// it went through an election this one missed: register again.
    fn in_session(
        &mut self,
        leader: NodeId,
        stage: FollowStage,
        msg: &Message,
        out: &mut ZabEffects,
    ) -> bool {
        let theirs = match msg {
            Message::Sync { epoch, .. }
            | Message::Snapshot { epoch, .. }
            | Message::UpToDate { epoch, .. }
            | Message::Proposal { epoch, .. }
            | Message::Ping { epoch, .. } => Some(*epoch),
            _ => None,
        };
        match (stage.session(), theirs) {
            (Some(mine), Some(theirs)) if theirs > mine => {
                let stage = FollowStage::Discovery;
                self.phase = Phase::Following { leader, stage };
                let accepted_epoch = self.accepted_epoch;
                out.send(leader, Message::FollowerInfo { accepted_epoch });
                false
            }
            (Some(mine), Some(theirs)) if theirs < mine => false,
            _ => {
                self.shell.elapsed = 0;
                true
            }
        }
    }
}

impl Protocol for Zab {
    protocol_plumbing!(ProtocolKind::Zab, ZabConfig);

    fn vote(&self) -> Option<NodeId> {
        match &self.phase {
            Phase::Looking(el) => Some(el.vote.leader).filter(|&l| l != 0),
            Phase::Following { leader, .. } => Some(*leader),
            Phase::Leading { .. } => Some(self.shell.id),
        }
    }

    fn may_send_before_sync(msg: &Message) -> bool {
        matches!(
            msg,
            Message::Proposal { .. } | Message::Ping { .. } | Message::Snapshot { .. }
        )
    }

    fn tick(&mut self, out: &mut ZabEffects) {
        match &self.phase {
            Phase::Looking(_) => self.tick_looking(out),
            Phase::Following { .. } => self.tick_follower(out),
            Phase::Leading { .. } => self.tick_leader(out),
        }
    }

    fn step(&mut self, from: NodeId, msg: Message, out: &mut ZabEffects) {
        let Some(p) = self.shell.pos(from).filter(|_| from != self.shell.id) else {
            return;
        };
        match msg {
            Message::Notification {
                vote,
                election_epoch,
                state,
            } => self.handle_notification(from, p, vote, election_epoch, state, out),
            other => match self.phase {
                Phase::Leading { .. } => self.handle_leader_message(from, p, other, out),
                Phase::Following { .. } => self.handle_follower_message(from, other, out),
                Phase::Looking(_) => {}
            },
        }
    }

    fn flush(&mut self, out: &mut ZabEffects) {
        if matches!(self.phase, Phase::Leading { .. }) {
            self.flush_leader(out);
        } else if let Some((to, epoch, i)) = self.pending_ack.take() {
            let result = Ok(i);
            out.send(to, Message::Ack { epoch, result });
        }
        let hs = HardState {
            accepted_epoch: self.accepted_epoch,
            current_epoch: self.current_epoch,
            commit: self.shell.log.commit(),
        };
        let now = RoleChange {
            role: self.role(),
            epoch: self.epoch(),
            leader: self.leader_hint(),
        };
        self.shell.finish_flush(hs, now, out);
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
}
