//! Types shared by every protocol core and every layer above them.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A node's identity within one cluster. Zero is reserved for "nobody".
pub type NodeId = u64;

/// A log slot, starting at 1. Zero means "before the first entry".
pub type Index = u64;

/// The protocol's epoch: Raft's term, ZAB's epoch, Paxos's ballot round.
pub type Epoch = u64;

/// What an entry carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EntryKind {
    /// A command for the host's state machine.
    Normal,
    /// An empty entry a new leader appends to commit its epoch; never applied
    /// to the state machine.
    Noop,
}

/// One log entry at position `(epoch, index)`.
///
/// `data` is reference counted, so the log, storage and the apply thread share
/// one copy of each command.
///
/// `(origin, index)` is the identity of the proposal that put the command
/// there: a proposer recognises its own command by it wherever the entry's
/// `epoch` later changes (a Multi-Paxos leader re-proposes a value it
/// recovered under its own ballot, keeping the value's origin).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Epoch (term, ballot) in which the entry was last written by a leader.
    pub epoch: Epoch,
    /// Epoch in which the command was first proposed; never above `epoch`,
    /// and equal to it except for re-proposed values.
    pub origin: Epoch,
    /// Log slot of the entry.
    pub index: Index,
    /// Command or no-op.
    pub kind: EntryKind,
    /// The command bytes; empty for a no-op.
    pub data: Bytes,
}

impl Entry {
    /// A fresh entry proposed in `epoch` (its origin is `epoch`).
    pub fn new(epoch: Epoch, index: Index, kind: EntryKind, data: Bytes) -> Self {
        Entry {
            epoch,
            origin: epoch,
            index,
            kind,
            data,
        }
    }

    /// What an entry counts for besides its data, in batching and memory
    /// limits (its index, epochs and kind).
    pub const OVERHEAD: usize = 32;

    /// Bytes this entry counts for in batching and memory limits.
    pub fn size(&self) -> usize {
        self.data.len() + Self::OVERHEAD
    }
}

/// A node's role as the protocol reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asks for pre-votes without disturbing the cluster (Raft PreVote).
    PreCandidate,
    /// Campaigns for leadership in a new epoch.
    Candidate,
    /// Leads the current epoch.
    Leader,
}

impl Role {
    /// Lower-case name, as used in logs and the C and Python surfaces.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre_candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
