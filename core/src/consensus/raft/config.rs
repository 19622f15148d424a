//! Raft settings, validated before a core is built.

use crate::error::ConfigError;

/// Raft settings, in ticks (the runtime turns ticks into time) and bytes.
/// `Default` gives values that work; [`RaftConfig::validate`] rejects the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftConfig {
    /// Lower bound of the randomized election timeout, in ticks.
    pub election_ticks_min: u32,
    /// Upper bound (exclusive) of the randomized election timeout, in ticks.
    pub election_ticks_max: u32,
    /// A leader sends heartbeats every this many ticks.
    pub heartbeat_ticks: u32,
    /// Ask for pre-votes before starting an election, so a node that was cut
    /// off does not disrupt a working leader when it comes back.
    pub pre_vote: bool,
    /// A leader steps down when it has not heard from a quorum within an
    /// election timeout; followers ignore vote requests while they hear from
    /// a leader.
    pub check_quorum: bool,
    /// Most entries in one AppendEntries message.
    pub max_entries_per_message: usize,
    /// Most entry bytes in one AppendEntries message (at least one entry is
    /// always sent).
    pub max_bytes_per_message: usize,
    /// Most AppendEntries messages in flight to one follower.
    pub max_inflight_messages: usize,
    /// Most entry bytes in flight to one follower.
    pub max_inflight_bytes: usize,
    /// Most bytes of proposed but uncommitted entries at the leader; further
    /// proposals fail with `Busy`.
    pub max_uncommitted_bytes: usize,
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            election_ticks_min: 15,
            election_ticks_max: 30,
            heartbeat_ticks: 5,
            pre_vote: true,
            check_quorum: true,
            max_entries_per_message: 4096,
            max_bytes_per_message: 1 << 20,
            max_inflight_messages: 64,
            max_inflight_bytes: 32 << 20,
            max_uncommitted_bytes: 64 << 20,
        }
    }
}

impl RaftConfig {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_bad_values_name_their_field() {
        assert!(RaftConfig::default().validate().is_ok());
        let bad = RaftConfig {
            election_ticks_min: 2,
            heartbeat_ticks: 2,
            ..RaftConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "election_ticks_min");
        let bad = RaftConfig {
            election_ticks_max: 10,
            ..RaftConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "election_ticks_max");
        let bad = RaftConfig {
            max_inflight_messages: 0,
            ..RaftConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "max_inflight_messages");
    }
}
