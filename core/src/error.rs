//! Typed errors shared by the layers.

use crate::types::NodeId;
use std::time::Duration;
use thiserror::Error;

/// A configuration value was rejected; nothing was started.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid configuration: {field}: {reason}")]
pub struct ConfigError {
    /// The offending field.
    pub field: &'static str,
    /// Why it was rejected.
    pub reason: String,
}

impl ConfigError {
    /// A new error for `field`.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        ConfigError {
            field,
            reason: reason.into(),
        }
    }
}

/// Why a proposal or a read did not complete.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProposeError {
    /// This node is not the leader; `leader` is the one it knows of, if any.
    #[error("not the leader (leader hint: {leader:?})")]
    NotLeader {
        /// The leader this node last heard from.
        leader: Option<NodeId>,
    },
    /// The leader has too many uncommitted bytes or its input queue is full;
    /// retry later.
    #[error("too many uncommitted proposals; retry later")]
    Busy,
    /// The entry was overwritten by another leader's entry; it never committed.
    #[error("the proposal was dropped by a leader change and did not commit")]
    Dropped,
    /// The wait ran out. The proposal may still commit later.
    #[error("timed out waiting for the proposal")]
    Timeout,
    /// The node is shut down (or shutting down).
    #[error("the node is closed")]
    Closed,
    /// A blocking call came from one of the node's own threads (inside a
    /// callback): it would wait on the thread that must answer it. Nothing
    /// was proposed; use the callback form (`propose_with`,
    /// `read_barrier_with`) there.
    #[error("a blocking call from one of the node's own threads (a callback) would wait on itself; nothing was proposed; use the callback form")]
    WouldBlock,
    /// The command is larger than any node takes
    /// ([`crate::consensus::MAX_COMMAND_BYTES`]); nothing was proposed.
    #[error("a command of {bytes} bytes is larger than the {max} a node takes")]
    TooLarge {
        /// The command's size.
        bytes: usize,
        /// The most a command may hold.
        max: usize,
    },
}

/// A setting given in seconds (as C doubles and Python floats are), as a
/// duration: infinity is the longest duration there is, and a positive time
/// below a nanosecond is a nanosecond, not zero.
///
/// # Errors
/// A [`ConfigError`] naming `field` for NaN or a negative number.
pub fn duration_from_seconds(field: &'static str, secs: f64) -> Result<Duration, ConfigError> {
    if secs.is_nan() || secs < 0.0 {
        return Err(ConfigError::new(
            field,
            format!("must be a number of seconds >= 0, got {secs}"),
        ));
    }
    let d = Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX);
    Ok(if d.is_zero() && secs > 0.0 {
        Duration::from_nanos(1)
    } else {
        d
    })
}
