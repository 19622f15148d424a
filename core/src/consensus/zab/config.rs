//! ZAB settings, validated before a core is built.

use crate::consensus::replication::ReplicationLimits;
use crate::consensus::Timing;
use crate::error::ConfigError;

/// ZAB settings, in ticks and bytes. `Default` gives values that work;
/// [`ZabConfig::validate`] rejects the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZabConfig {
    /// Heartbeat and election timing.
    pub timing: Timing,
    /// Fast Leader Election's finalize wait: once a quorum agrees, wait this
    /// many ticks for a better vote before deciding.
    pub finalize_ticks: u32,
    /// Batching, pipelining and uncommitted-bytes limits.
    pub limits: ReplicationLimits,
}

impl Default for ZabConfig {
    fn default() -> Self {
        ZabConfig {
            timing: Timing::default(),
            finalize_ticks: 2,
            limits: ReplicationLimits::default(),
        }
    }
}

impl ZabConfig {
    /// Checks every field.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first field that is out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.timing.validate()?;
        if self.finalize_ticks >= self.timing.election_ticks_min {
            return Err(ConfigError::new(
                "finalize_ticks",
                format!(
                    "must be below election_ticks_min ({})",
                    self.timing.election_ticks_min
                ),
            ));
        }
        self.limits.validate()
    }
}
