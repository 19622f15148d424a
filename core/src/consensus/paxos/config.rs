//! Multi-Paxos settings, validated before a core is built.

use crate::consensus::replication::ReplicationLimits;
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
    /// Batching, pipelining and uncommitted-bytes limits.
    pub limits: ReplicationLimits,
}

impl Default for PaxosConfig {
    fn default() -> Self {
        PaxosConfig {
            election_ticks_min: 15,
            election_ticks_max: 30,
            heartbeat_ticks: 5,
            limits: ReplicationLimits::default(),
        }
    }
}

impl PaxosConfig {
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
        self.limits.validate()
    }
}
