//! ZAB settings, validated before a core is built.

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
    /// Most entries in one Proposal message.
    pub max_entries_per_message: usize,
    /// Most entry bytes in one Proposal message (at least one entry goes).
    pub max_bytes_per_message: usize,
    /// Most Proposal messages in flight to one follower.
    pub max_inflight_messages: usize,
    /// Most entry bytes in flight to one follower.
    pub max_inflight_bytes: usize,
    /// Most bytes of proposed but uncommitted entries at the leader; further
    /// proposals fail with `Busy`.
    pub max_uncommitted_bytes: usize,
}

impl Default for ZabConfig {
    fn default() -> Self {
        ZabConfig {
            election_ticks_min: 15,
            election_ticks_max: 30,
            heartbeat_ticks: 5,
            finalize_ticks: 2,
            max_entries_per_message: 4096,
            max_bytes_per_message: 1 << 20,
            max_inflight_messages: 64,
            max_inflight_bytes: 32 << 20,
            max_uncommitted_bytes: 64 << 20,
        }
    }
}

impl ZabConfig {
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
        if self.finalize_ticks >= self.election_ticks_min {
            return Err(ConfigError::new(
                "finalize_ticks",
                format!(
                    "must be below election_ticks_min ({})",
                    self.election_ticks_min
                ),
            ));
        }
        crate::consensus::validate_limits(&[
            ("max_entries_per_message", self.max_entries_per_message),
            ("max_bytes_per_message", self.max_bytes_per_message),
            ("max_inflight_messages", self.max_inflight_messages),
            ("max_inflight_bytes", self.max_inflight_bytes),
            ("max_uncommitted_bytes", self.max_uncommitted_bytes),
        ])
    }
}
