//! ZAB settings, validated before a core is built.

use crate::consensus::replication::ReplicationLimits;
use crate::error::ConfigError;

/// ZAB settings, in ticks and bytes. `Default` gives values that work;
/// [`ZabConfig::validate`] rejects the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZabConfig {
    /// A follower that hears nothing from its leader for this many ticks
    /// goes back to election; also the base of the election's resend timer.
    pub election_ticks_min: u32,
    /// Upper bound (exclusive) of the randomized follower timeout; a leader
    /// that is not established within twice this gives up.
    pub election_ticks_max: u32,
    /// The leader pings (with the commit point) every this many ticks.
    pub heartbeat_ticks: u32,
    /// Fast Leader Election's finalize wait: once a quorum agrees, wait this
    /// many ticks for a better vote before deciding.
    pub finalize_ticks: u32,
    /// Batching, pipelining and uncommitted-bytes limits.
    pub limits: ReplicationLimits,
}

impl Default for ZabConfig {
    fn default() -> Self {
        ZabConfig {
            election_ticks_min: 15,
            election_ticks_max: 30,
            heartbeat_ticks: 5,
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
        crate::consensus::validate_timing(
            self.heartbeat_ticks,
            self.election_ticks_min,
            self.election_ticks_max,
        )?;
        if self.finalize_ticks >= self.election_ticks_min {
            return Err(ConfigError::new(
                "finalize_ticks",
                format!(
                    "must be below election_ticks_min ({})",
                    self.election_ticks_min
                ),
            ));
        }
        self.limits.validate()
    }
}
