//! A node's observable state and counters.

use crate::consensus::ProtocolKind;
use crate::types::{Epoch, Index, NodeId, Role};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};

/// A point-in-time view of a node, from [`super::NodeHandle::status`].
/// Its `Display` speaks the protocol's own vocabulary (`node 2: FOLLOWING
/// (ZAB) in epoch 3, leader 1, commit 10, applied 10`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The node's id.
    pub id: NodeId,
    /// The protocol the node runs.
    pub protocol: ProtocolKind,
    /// Current role (generic; [`Status::role_name`] in the protocol's words).
    pub role: Role,
    /// Current term (epoch).
    pub term: Epoch,
    /// Known leader.
    pub leader: Option<NodeId>,
    /// Whom the node backs in its current term (see
    /// [`crate::consensus::Protocol::vote`]): Raft's `votedFor`.
    pub voted_for: Option<NodeId>,
    /// Highest committed index.
    pub commit_index: Index,
    /// Highest index applied to the state machine.
    pub applied_index: Index,
    /// Last index in the log.
    pub last_index: Index,
    /// Envelopes sent.
    pub messages_sent: u64,
    /// Envelopes received and accepted.
    pub messages_received: u64,
    /// Envelopes rejected (malformed, other cluster, unknown sender, ...).
    pub messages_rejected: u64,
    /// Envelopes dropped because the input queue was full.
    pub messages_dropped: u64,
    /// Proposals that failed (not leader, busy, dropped, timeout, closed).
    pub proposals_failed: u64,
    /// Storage errors (the node stops at the first).
    pub storage_errors: u64,
    /// The storage error that stopped the node, if one did: it acknowledged
    /// nothing it did not persist, and takes nothing more.
    pub storage_failure: Option<String>,
    /// Syncs that made writes durable (commits per sync measure group
    /// commit).
    pub storage_syncs: u64,
    /// Bytes of a torn last write cut off the log when the storage was
    /// opened (never acknowledged: they were not synced).
    pub storage_torn_bytes: u64,
    /// The last index the latest snapshot covers (0: none); the log before
    /// it was dropped.
    pub snapshot_index: Index,
    /// Snapshots this node took of its state machine since it started.
    pub snapshots_taken: u64,
    /// Snapshots this node installed from its leader since it started.
    pub snapshots_installed: u64,
    /// The state machine panicked in `apply` (or refused a snapshot): the node stopped (it neither
    /// applies nor leads nor votes any more) so that the cluster replaces
    /// it; restart it once the state machine is fixed.
    pub state_machine_failed: bool,
}

impl Status {
    /// The role in the protocol's own words (ZAB: LOOKING, FOLLOWING,
    /// LEADING; Paxos: acceptor, proposer, leader).
    pub fn role_name(&self) -> &'static str {
        self.protocol.role_name(self.role)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "node {}: {} ({}) in {}",
            self.id,
            self.role_name(),
            self.protocol.name(),
            self.protocol.epoch_label(self.term)
        )?;
        if let Some(l) = self.leader {
            write!(f, ", leader {l}")?;
        }
        write!(
            f,
            ", commit {}, applied {}",
            self.commit_index, self.applied_index
        )?;
        if self.state_machine_failed {
            write!(f, ", state machine failed")?;
        }
        if let Some(why) = &self.storage_failure {
            write!(f, ", stopped by storage: {why}")?;
        }
        Ok(())
    }
}

/// Lock-free shared status, written by the node's threads.
#[derive(Debug, Default)]
pub(crate) struct SharedStatus {
    pub role: AtomicU8,
    pub term: AtomicU64,
    pub leader: AtomicU64,
    pub vote: AtomicU64,
    pub commit: AtomicU64,
    pub applied: AtomicU64,
    pub last_index: AtomicU64,
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub rejected: AtomicU64,
    pub dropped: AtomicU64,
    pub proposals_failed: AtomicU64,
    pub storage_errors: AtomicU64,
    pub storage_failure: parking_lot::Mutex<Option<String>>,
    pub storage_syncs: AtomicU64,
    pub storage_torn_bytes: AtomicU64,
    pub snapshot_index: AtomicU64,
    pub snapshots: AtomicU64,
    pub snapshots_installed: AtomicU64,
    pub state_machine_failed: AtomicBool,
}

fn role_code(role: Role) -> u8 {
    match role {
        Role::Follower => 0,
        Role::PreCandidate => 1,
        Role::Candidate => 2,
        Role::Leader => 3,
    }
}

fn role_from(code: u8) -> Role {
    match code {
        1 => Role::PreCandidate,
        2 => Role::Candidate,
        3 => Role::Leader,
        _ => Role::Follower,
    }
}

impl SharedStatus {
    pub fn set_role(&self, role: Role, term: Epoch, leader: Option<NodeId>) {
        self.role.store(role_code(role), Relaxed);
        self.term.store(term, Relaxed);
        self.leader.store(leader.unwrap_or(0), Relaxed);
    }

    pub fn role(&self) -> Role {
        role_from(self.role.load(Relaxed))
    }

    pub fn leader(&self) -> Option<NodeId> {
        match self.leader.load(Relaxed) {
            0 => None,
            l => Some(l),
        }
    }

    pub fn snapshot(&self, id: NodeId, protocol: ProtocolKind) -> Status {
        Status {
            id,
            protocol,
            role: self.role(),
            term: self.term.load(Relaxed),
            leader: self.leader(),
            voted_for: match self.vote.load(Relaxed) {
                0 => None,
                v => Some(v),
            },
            commit_index: self.commit.load(Relaxed),
            applied_index: self.applied.load(Relaxed),
            last_index: self.last_index.load(Relaxed),
            messages_sent: self.sent.load(Relaxed),
            messages_received: self.received.load(Relaxed),
            messages_rejected: self.rejected.load(Relaxed),
            messages_dropped: self.dropped.load(Relaxed),
            proposals_failed: self.proposals_failed.load(Relaxed),
            storage_errors: self.storage_errors.load(Relaxed),
            storage_failure: self.storage_failure.lock().clone(),
            storage_syncs: self.storage_syncs.load(Relaxed),
            storage_torn_bytes: self.storage_torn_bytes.load(Relaxed),
            snapshot_index: self.snapshot_index.load(Relaxed),
            snapshots_taken: self.snapshots.load(Relaxed),
            snapshots_installed: self.snapshots_installed.load(Relaxed),
            state_machine_failed: self.state_machine_failed.load(Relaxed),
        }
    }
}
