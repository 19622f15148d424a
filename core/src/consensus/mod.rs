//! Sans-IO consensus cores behind one [`Protocol`] trait.
//!
//! A core is a deterministic state machine: no threads, clocks, I/O or global
//! randomness. Inputs are [`Protocol::tick`], [`Protocol::step`],
//! [`Protocol::propose`] and [`Protocol::read`]; every output lands in an
//! [`Effects`] batch that the caller (the runtime or the simulator) carries out
//! in this order: persist hard state and log changes, then send messages
//! (a leader's appends may leave before its own sync), then apply committed
//! entries and serve ready reads.

pub mod entry_codec;
#[cfg(test)]
mod fuzz_tests;
pub mod log;
pub mod paxos;
pub mod progress;
pub mod quorum;
pub mod raft;
pub mod read_index;
pub mod replication;
pub(crate) mod shell;
pub mod snapshot;
#[cfg(test)]
pub mod testing;
pub mod zab;

pub use shell::{HardStateCommit, Timing, MAX_COMMAND_BYTES, MAX_VOTERS};
pub use snapshot::{Snapshot, SnapshotAck, SnapshotChunk, SnapshotId};

use crate::error::ProposeError;
use crate::types::{Entry, Epoch, Index, NodeId, Role};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

/// Which protocol a message or a node speaks; named in every wire envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ProtocolKind {
    /// Raft (Ongaro and Ousterhout), with PreVote and CheckQuorum.
    Raft = 1,
    /// Multi-Paxos with a stable leader.
    MultiPaxos = 2,
    /// ZooKeeper Atomic Broadcast.
    Zab = 3,
}

impl ProtocolKind {
    /// Short lower-case name: `raft`, `paxos` or `zab`.
    pub fn name(self) -> &'static str {
        match self {
            ProtocolKind::Raft => "raft",
            ProtocolKind::MultiPaxos => "paxos",
            ProtocolKind::Zab => "zab",
        }
    }

    /// The kind named `name` (as [`ProtocolKind::name`] spells it).
    pub fn from_name(name: &str) -> Option<Self> {
        [
            ProtocolKind::Raft,
            ProtocolKind::MultiPaxos,
            ProtocolKind::Zab,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }

    /// `role` in the protocol's own words, as its users know them: Raft's
    /// follower, pre-candidate, candidate and leader; Multi-Paxos's
    /// acceptor, proposer (phase 1, preparing a ballot) and leader; ZAB's
    /// LOOKING, FOLLOWING and LEADING (discovery and synchronization count
    /// as LEADING, as in ZooKeeper).
    pub fn role_name(self, role: Role) -> &'static str {
        match (self, role) {
            (ProtocolKind::Raft, Role::Follower) => "follower",
            (ProtocolKind::Raft, Role::PreCandidate) => "pre-candidate",
            (ProtocolKind::Raft, Role::Candidate) => "candidate",
            (ProtocolKind::Raft, Role::Leader) => "leader",
            (ProtocolKind::MultiPaxos, Role::Follower | Role::PreCandidate) => "acceptor",
            (ProtocolKind::MultiPaxos, Role::Candidate) => "proposer (phase 1)",
            (ProtocolKind::MultiPaxos, Role::Leader) => "leader",
            (ProtocolKind::Zab, Role::PreCandidate) => "LOOKING",
            (ProtocolKind::Zab, Role::Follower) => "FOLLOWING",
            (ProtocolKind::Zab, Role::Candidate | Role::Leader) => "LEADING",
        }
    }

    /// `epoch` as the protocol names it: `term 5`, `epoch 3`, or a Paxos
    /// ballot as `ballot 7.2` (round 7 of the voter at position 2).
    pub fn epoch_label(self, epoch: Epoch) -> String {
        match self {
            ProtocolKind::Raft => format!("term {epoch}"),
            ProtocolKind::Zab => format!("epoch {epoch}"),
            ProtocolKind::MultiPaxos => {
                format!("ballot {}.{}", paxos::round_of(epoch), epoch & 0xFF)
            }
        }
    }

    /// The kind with wire code `code`, if any.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(ProtocolKind::Raft),
            2 => Some(ProtocolKind::MultiPaxos),
            3 => Some(ProtocolKind::Zab),
            _ => None,
        }
    }
}

/// Checks that every named limit is at least 1.
///
/// # Errors
/// A [`crate::ConfigError`] naming the first zero field.
pub fn validate_limits(limits: &[(&'static str, usize)]) -> Result<(), crate::ConfigError> {
    match limits.iter().find(|(_, v)| *v == 0) {
        Some((field, _)) => Err(crate::ConfigError::new(field, "must be at least 1")),
        None => Ok(()),
    }
}

/// Checks a membership: `id` non-zero and among `voters`, no duplicates, no
/// zero id, at most `max` voters. Returns the position of `id`.
///
/// # Errors
/// A [`crate::ConfigError`] on `id` or `voters`.
pub fn validate_membership(
    id: NodeId,
    voters: &[NodeId],
    max: usize,
) -> Result<usize, crate::ConfigError> {
    use crate::ConfigError;
    if id == 0 {
        return Err(ConfigError::new("id", "node id 0 is reserved"));
    }
    let mut sorted = voters.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != voters.len() {
        return Err(ConfigError::new("voters", "duplicate node id"));
    }
    if voters.len() > max {
        return Err(ConfigError::new(
            "voters",
            format!("at most {max} voters, got {}", voters.len()),
        ));
    }
    if sorted.contains(&0) {
        return Err(ConfigError::new("voters", "node id 0 is reserved"));
    }
    voters
        .iter()
        .position(|&v| v == id)
        .ok_or_else(|| ConfigError::new("voters", format!("must include this node ({id})")))
}

/// Caller-chosen identifier of a linearizable read request.
pub type ReadId = u64;

/// What a node recovered from its storage when it starts.
#[derive(Clone, Debug)]
pub struct Recovered<H> {
    /// The protocol's hard state, or `None` on first boot.
    pub hard_state: Option<H>,
    /// The latest snapshot, if one was taken or installed.
    pub snapshot: Option<Snapshot>,
    /// The persisted log, in index order: from index 1 without a
    /// snapshot; with one, from at or before the index after it (entries
    /// the snapshot covers are dropped; when the one at its index has
    /// another epoch, a protocol whose logs must match drops the rest too:
    /// the snapshot was installed and the crash came before the log cut
    /// was durable).
    pub entries: Vec<Entry>,
}

impl<H> Default for Recovered<H> {
    fn default() -> Self {
        Recovered {
            hard_state: None,
            snapshot: None,
            entries: Vec::new(),
        }
    }
}

/// A change of role, epoch or known leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoleChange {
    /// The new role.
    pub role: Role,
    /// The epoch (term) the role holds in.
    pub epoch: Epoch,
    /// The leader this node now knows of, if any.
    pub leader: Option<NodeId>,
}

/// A read that a quorum confirmed: serve it once the state machine has
/// applied through `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadReady {
    /// The id given to [`Protocol::read`].
    pub id: ReadId,
    /// The commit index the read must observe.
    pub index: Index,
}

/// A read the core gave up on (the node lost leadership before a quorum
/// confirmed it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadFailed {
    /// The id given to [`Protocol::read`].
    pub id: ReadId,
    /// The leader this node knows of now, if any.
    pub leader: Option<NodeId>,
}

/// Everything one or more calls into a core asked the caller to do.
///
/// The caller must persist (`hard_state`, `truncate_from`, `append`) before it
/// sends any of `messages` (except those [`Protocol::may_send_before_sync`]
/// allows, when `hard_state_must_sync` is false and nothing is truncated),
/// and apply `committed` in order after that. The buffers are reused: call
/// [`Effects::clear`] after carrying a batch out.
#[derive(Debug)]
pub struct Effects<M, H> {
    /// A snapshot received from the leader: persist it (durably, before
    /// everything else of the batch), then restore the state machine from
    /// it before applying `committed`. The log before it is gone.
    pub snapshot: Option<Snapshot>,
    /// New hard state to persist, replacing the old one.
    pub hard_state: Option<H>,
    /// True when `hard_state` changed in more than its commit index: it
    /// must be durable before any message leaves. A change of the commit
    /// index alone need not be synced (a restart relearns it) and may be
    /// kept until the next write that is synced.
    pub hard_state_must_sync: bool,
    /// Remove every persisted entry at or above this index (before `append`).
    pub truncate_from: Option<Index>,
    /// Entries to append to the persisted log, in index order.
    pub append: Vec<Entry>,
    /// Messages to send after persisting.
    pub messages: Vec<(NodeId, M)>,
    /// Newly committed entries, in index order, to apply after persisting.
    pub committed: Vec<Entry>,
    /// Reads confirmed by a quorum.
    pub reads_ready: Vec<ReadReady>,
    /// Reads that failed.
    pub reads_failed: Vec<ReadFailed>,
    /// The last role change in this batch, if any.
    pub role_change: Option<RoleChange>,
}

impl<M, H> Default for Effects<M, H> {
    fn default() -> Self {
        Effects {
            snapshot: None,
            hard_state: None,
            hard_state_must_sync: false,
            truncate_from: None,
            append: Vec::new(),
            messages: Vec::new(),
            committed: Vec::new(),
            reads_ready: Vec::new(),
            reads_failed: Vec::new(),
            role_change: None,
        }
    }
}

impl<M, H> Effects<M, H> {
    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none()
            && self.hard_state.is_none()
            && self.truncate_from.is_none()
            && self.append.is_empty()
            && self.messages.is_empty()
            && self.committed.is_empty()
            && self.reads_ready.is_empty()
            && self.reads_failed.is_empty()
            && self.role_change.is_none()
    }

    /// Queues `msg` for `to`, sent once this batch is persisted.
    pub fn send(&mut self, to: NodeId, msg: M) {
        self.messages.push((to, msg));
    }

    /// Empties every buffer, keeping their capacity.
    pub fn clear(&mut self) {
        self.snapshot = None;
        self.hard_state = None;
        self.hard_state_must_sync = false;
        self.truncate_from = None;
        self.append.clear();
        self.messages.clear();
        self.committed.clear();
        self.reads_ready.clear();
        self.reads_failed.clear();
        self.role_change = None;
    }

    /// Records that entries from `index` on are replaced: drops any pending
    /// appends at or above it and keeps the lowest truncation point.
    pub fn truncate(&mut self, index: Index) {
        self.append.retain(|e| e.index < index);
        let first_pending = self.append.first().map(|e| e.index);
        // Truncation only needs to reach the persisted log when it cuts below
        // what this batch itself appended.
        if first_pending.is_none_or(|f| index < f) {
            self.truncate_from = Some(self.truncate_from.map_or(index, |t| t.min(index)));
        }
    }

    /// Records an installed snapshot: it is persisted before the rest of
    /// the batch, so pending appends it covers are dropped and a pending
    /// cut at or below its index moves to just after it (what the cut
    /// removed above the index must still go). With `cut_after`, every
    /// entry after it goes too (the log did not match the snapshot).
    pub fn install(&mut self, snapshot: Snapshot, cut_after: bool) {
        let after = snapshot.index + 1;
        self.append.retain(|e| e.index >= after);
        if let Some(t) = self.truncate_from.as_mut() {
            *t = (*t).max(after);
        }
        if cut_after {
            self.truncate(after);
        }
        self.snapshot = Some(snapshot);
    }
}

/// A consensus protocol core: Raft now, Multi-Paxos and ZAB behind the same
/// shape. All methods are deterministic functions of the core's state and
/// their arguments; randomness comes from the seed given at construction.
pub trait Protocol: Send + 'static {
    /// The protocol's messages, carried in wire envelopes.
    type Message: Serialize + DeserializeOwned + Clone + Debug + Send + 'static;
    /// What the protocol must persist besides the log.
    type HardState: Serialize + DeserializeOwned + Clone + Debug + PartialEq + Send + 'static;
    /// Protocol-specific settings.
    type Config: Clone + Debug + Send + Sync + 'static;

    /// Which protocol this is (named in wire envelopes).
    const KIND: ProtocolKind;

    /// Builds a core for node `id` among `voters` (which include `id`) from what
    /// it recovered, drawing randomness only from `seed`.
    ///
    /// # Errors
    /// A [`crate::ConfigError`] when the config or membership is invalid.
    fn new(
        id: NodeId,
        voters: &[NodeId],
        config: Self::Config,
        recovered: Recovered<Self::HardState>,
        seed: u64,
    ) -> Result<Self, crate::ConfigError>
    where
        Self: Sized;

    /// Advances the logical clock by one tick.
    fn tick(&mut self, out: &mut Effects<Self::Message, Self::HardState>);

    /// Handles one message from `from`.
    fn step(
        &mut self,
        from: NodeId,
        msg: Self::Message,
        out: &mut Effects<Self::Message, Self::HardState>,
    );

    /// Appends a command to the log if this node leads; returns its position.
    /// Messages for it go out at the next [`Protocol::flush`].
    ///
    /// # Errors
    /// [`ProposeError::NotLeader`] with the leader hint,
    /// [`ProposeError::Busy`] when the uncommitted-bytes limit is reached,
    /// or [`ProposeError::TooLarge`] for a command over
    /// [`MAX_COMMAND_BYTES`].
    fn propose(
        &mut self,
        data: Bytes,
        out: &mut Effects<Self::Message, Self::HardState>,
    ) -> Result<(Epoch, Index), ProposeError>;

    /// Starts a linearizable read; it completes through
    /// [`Effects::reads_ready`] or [`Effects::reads_failed`].
    ///
    /// # Errors
    /// [`ProposeError::NotLeader`] with the leader hint.
    fn read(
        &mut self,
        id: ReadId,
        out: &mut Effects<Self::Message, Self::HardState>,
    ) -> Result<(), ProposeError>;

    /// Ends an input batch: emits the coalesced messages (appends, acks,
    /// read confirmations) that the calls since the last flush made due.
    fn flush(&mut self, out: &mut Effects<Self::Message, Self::HardState>);

    /// True for a message that depends on nothing its batch persists: a
    /// leader's appends of its own entries and its heartbeats. It may
    /// leave before the batch's writes are durable, so that the leader's
    /// sync overlaps its followers' (Raft §10.2.1); acknowledgements,
    /// votes and promises never do. The default: none.
    fn may_send_before_sync(msg: &Self::Message) -> bool {
        let _ = msg;
        false
    }

    /// The host saved a snapshot of its state machine through
    /// `snapshot.index` (durably): the log before it is dropped, and
    /// followers the log no longer reaches are sent this snapshot. Ignored
    /// (returns false) unless the index is committed, still in the log and
    /// above the current snapshot's.
    fn compact(&mut self, snapshot: Snapshot) -> bool;

    /// The last index the latest snapshot covers (0: none).
    fn snapshot_index(&self) -> Index;

    /// This node's id.
    fn id(&self) -> NodeId;
    /// Current role.
    fn role(&self) -> Role;
    /// Current epoch (term).
    fn epoch(&self) -> Epoch;
    /// The leader this node knows of.
    fn leader(&self) -> Option<NodeId>;
    /// Highest index known committed.
    fn commit_index(&self) -> Index;
    /// Last index in this node's log.
    fn last_index(&self) -> Index;
    /// The voters of the cluster, including this node.
    fn voters(&self) -> &[NodeId];
    /// Whom this node backs in its current epoch, if anyone: Raft's
    /// `votedFor`; the proposer of the highest ballot a Multi-Paxos
    /// acceptor promised; the leader a ZAB server's election vote names
    /// (or the leader it settled on).
    fn vote(&self) -> Option<NodeId>;
}
