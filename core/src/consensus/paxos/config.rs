//! Multi-Paxos settings, validated before a core is built.

use crate::error::ConfigError;

/// Multi-Paxos settings, in ticks and bytes. `Default` gives values that
/// work; [`PaxosConfig::validate`] rejects the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaxosConfig {
    /// Lower bound of the randomized timeout after which a node that hears
    /// no leader starts Phase 1 (and of the back-off after a preempted one).
    pub election_ticks_min: u32,
    /// Upper bound (exclusive) of that timeout.
    pub election_ticks_max: u32,
    /// The leader sends heartbeats (with the commit point) every this many ticks.
    pub heartbeat_ticks: u32,
    /// Most entries in one Accept message.
    pub max_entries_per_message: usize,
    /// Most entry bytes in one Accept message (at least one entry always goes).
    pub max_bytes_per_message: usize,
    /// Most Accept messages in flight to one acceptor.
    pub max_inflight_messages: usize,
    /// Most entry bytes in flight to one acceptor.
    pub max_inflight_bytes: usize,
    /// Most bytes of proposed but unchosen entries at the leader; further
    /// proposals fail with `Busy`.
    pub max_uncommitted_bytes: usize,
}

impl Default for PaxosConfig {
    fn default() -> Self {
        PaxosConfig {
            election_ticks_min: 15,
            election_ticks_max: 30,
            heartbeat_ticks: 5,
            max_entries_per_message: 4096,
            max_bytes_per_message: 1 << 20,
            max_inflight_messages: 64,
            max_inflight_bytes: 32 << 20,
            max_uncommitted_bytes: 64 << 20,
        }
    }
}

impl PaxosConfig {
    /// The batching and pipelining limits.
    pub fn batch_limits(&self) -> crate::consensus::replication::BatchLimits {
        crate::consensus::replication::BatchLimits {
            max_entries: self.max_entries_per_message,
            max_bytes: self.max_bytes_per_message,
            max_inflight_messages: self.max_inflight_messages,
            max_inflight_bytes: self.max_inflight_bytes,
        }
    }

    /// Checks every field.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first field that is out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::consensus::validate_timing(
            self.heartbeat_ticks,
            self.election_ticks_min,
            self.election_ticks_max,
        )?;
        crate::consensus::validate_limits(&[
            ("max_entries_per_message", self.max_entries_per_message),
            ("max_bytes_per_message", self.max_bytes_per_message),
            ("max_inflight_messages", self.max_inflight_messages),
            ("max_inflight_bytes", self.max_inflight_bytes),
            ("max_uncommitted_bytes", self.max_uncommitted_bytes),
        ])
    }
}
