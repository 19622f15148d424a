//! Raft settings, validated before a core is built.

use crate::consensus::replication::ReplicationLimits;
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
    /// Batching, pipelining and uncommitted-bytes limits.
    pub limits: ReplicationLimits,
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            election_ticks_min: 15,
            election_ticks_max: 30,
            heartbeat_ticks: 5,
            pre_vote: true,
            check_quorum: true,
            limits: ReplicationLimits::default(),
        }
    }
}

impl RaftConfig {
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
            limits: ReplicationLimits {
                max_inflight_messages: 0,
                ..ReplicationLimits::default()
            },
            ..RaftConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "max_inflight_messages");
    }
}
