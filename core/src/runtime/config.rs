//! Runtime settings of one node.

use crate::error::ConfigError;
use crate::storage::FileOptions;
use crate::types::NodeId;
use std::path::PathBuf;
use std::time::Duration;

/// When a node snapshots its state machine and drops the log before it:
/// after this many entries or this many entry bytes were applied since the
/// last snapshot, whichever comes first (0 turns that trigger off; both 0:
/// never). Only for a state machine that implements
/// [`super::StateMachine::snapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// Entries applied since the last snapshot.
    pub entries: u64,
    /// Entry bytes (commands plus a fixed overhead each) applied since the
    /// last snapshot.
    pub bytes: u64,
}

impl Default for SnapshotPolicy {
    /// Every 100,000 entries or 64 MiB.
    fn default() -> Self {
        SnapshotPolicy {
            entries: 100_000,
            bytes: 64 << 20,
        }
    }
}

impl SnapshotPolicy {
    /// Never snapshot.
    pub const NEVER: SnapshotPolicy = SnapshotPolicy {
        entries: 0,
        bytes: 0,
    };

    /// True when `entries` and `bytes` applied since the last snapshot
    /// call for a new one.
    pub fn is_due(&self, entries: u64, bytes: u64) -> bool {
        (self.entries > 0 && entries >= self.entries) || (self.bytes > 0 && bytes >= self.bytes)
    }
}

/// Settings of one node: who it is, who its peers are, how fast its clock
/// ticks and how much it queues. `P` is the protocol's own config.
#[derive(Clone, Debug)]
pub struct NodeConfig<P> {
    /// This node's id (non-zero).
    pub id: NodeId,
    /// Every voter, including this node.
    pub voters: Vec<NodeId>,
    /// Envelopes from another cluster id are rejected.
    pub cluster_id: u64,
    /// Protocol settings (timeouts are in ticks).
    pub protocol: P,
    /// Real time per protocol tick.
    pub tick_interval: Duration,
    /// Most inputs the driver handles before it persists and sends.
    pub max_batch: usize,
    /// Capacity of the input queue; beyond it proposals fail with `Busy` and
    /// received messages are dropped (and counted).
    pub queue_capacity: usize,
    /// A callback-style proposal that has not completed after this long fails
    /// with `Timeout` (it may still commit).
    pub proposal_timeout: Duration,
    /// Seed for the protocol's randomness; `None` derives one from the clock.
    pub seed: Option<u64>,
    /// Where [`super::Node::open`] keeps the node's log and hard state (a
    /// [`crate::storage::FileStorage`] data directory, created when
    /// missing); `None` keeps them in memory, lost when the process ends.
    pub data_dir: Option<PathBuf>,
    /// How the data directory is written (sync, segment size).
    pub storage: FileOptions,
    /// When the state machine is snapshotted and the log compacted.
    pub snapshot: SnapshotPolicy,
}

impl<P: Default> NodeConfig<P> {
    /// Defaults for node `id` among `voters`: 10 ms ticks (so Raft's default
    /// election timeout is 150–300 ms and heartbeats go every 50 ms).
    pub fn new(id: NodeId, voters: Vec<NodeId>) -> Self {
        NodeConfig {
            id,
            voters,
            cluster_id: 1,
            protocol: P::default(),
            tick_interval: Duration::from_millis(10),
            max_batch: 4096,
            queue_capacity: 1 << 16,
            proposal_timeout: Duration::from_secs(30),
            seed: None,
            data_dir: None,
            storage: FileOptions::default(),
            snapshot: SnapshotPolicy::default(),
        }
    }
}

impl<P> NodeConfig<P> {
    /// Checks the runtime fields (the protocol checks its own).
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.tick_interval.is_zero() {
            return Err(ConfigError::new("tick_interval", "must be positive"));
        }
        if self.max_batch == 0 {
            return Err(ConfigError::new("max_batch", "must be at least 1"));
        }
        if self.queue_capacity == 0 {
            return Err(ConfigError::new("queue_capacity", "must be at least 1"));
        }
        if self.proposal_timeout.is_zero() {
            return Err(ConfigError::new("proposal_timeout", "must be positive"));
        }
        self.storage.validate()
    }
}
