//! Multi-Paxos settings, validated before a core is built.

use crate::consensus::replication::ReplicationLimits;
use crate::consensus::Timing;
use crate::error::ConfigError;

/// Multi-Paxos settings, in ticks and bytes. `Default` gives values that
/// work; [`PaxosConfig::validate`] rejects the rest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PaxosConfig {
    /// Heartbeat and election timing.
    pub timing: Timing,
    /// Batching, pipelining and uncommitted-bytes limits.
    pub limits: ReplicationLimits,
}

impl PaxosConfig {
    /// Checks every field.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first field that is out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.timing.validate()?;
        self.limits.validate()
    }
}
