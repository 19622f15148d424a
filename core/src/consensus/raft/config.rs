//! Raft settings, validated before a core is built.

use crate::consensus::replication::ReplicationLimits;
use crate::consensus::Timing;
use crate::error::ConfigError;

/// Raft settings, in ticks (the runtime turns ticks into time) and bytes.
/// `Default` gives values that work; [`RaftConfig::validate`] rejects the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftConfig {
    /// Heartbeat and election timing.
    pub timing: Timing,
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
            timing: Timing::default(),
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
        self.timing.validate()?;
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
            timing: Timing {
                election_ticks_min: 2,
                heartbeat_ticks: 2,
                ..Timing::default()
            },
            ..RaftConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "election_ticks_min");
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
