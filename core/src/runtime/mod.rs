//! The thread-based runtime: a [`Node`] drives one protocol core.
//!
//! Threads per node: a driver that owns the core and the storage (inputs on a
//! crossbeam channel, a tick timer, group commit, sends through the host's
//! [`Transport`]) and an apply thread that calls the host's [`StateMachine`]
//! in log order and completes proposals and reads.

mod any;
pub(crate) mod apply;
mod config;
mod driver;
pub(crate) mod executor;
mod machines;
mod node;
mod status;

pub use any::{AnyNode, AnyNodeConfig, Members, Timeouts, MIN_HEARTBEAT};
pub use config::{NodeConfig, SnapshotPolicy};
pub use machines::{CounterMachine, NullMachine};
pub use node::{Inbox, Node, NodeHandle, ReceiveError, StartError};
pub use status::Status;

use crate::types::{Index, NodeId};

/// The host's network: delivers bytes to a peer.
///
/// Called from the node's driver thread, possibly while other nodes call it
/// too; must not block for long. It may drop messages: the protocol retries.
pub trait Transport: Send + Sync + 'static {
    /// Sends one envelope to `to`. The bytes are the host's to keep.
    fn send(&self, to: NodeId, bytes: Vec<u8>);
}

impl<F> Transport for F
where
    F: Fn(NodeId, Vec<u8>) + Send + Sync + 'static,
{
    fn send(&self, to: NodeId, bytes: Vec<u8>) {
        self(to, bytes)
    }
}

/// The host's replicated state machine.
///
/// `apply` is called on the node's apply thread, once per committed command,
/// in log order; its return value completes the proposal on the node that
/// proposed it. Without snapshots (a later feature), a restarted node applies
/// its log again from index 1, so `apply` must start from an empty state.
pub trait StateMachine: Send + 'static {
    /// Applies the command at `index` and returns the response bytes.
    fn apply(&mut self, index: Index, command: &[u8]) -> Vec<u8>;

    /// The machine's whole state after the last command applied, as bytes
    /// [`StateMachine::restore`] takes back. Called on the apply thread
    /// (the node keeps running meanwhile) when the node's
    /// [`SnapshotPolicy`] says a snapshot is due; the node then drops the
    /// log it covers. `None` (the default): no snapshot now (asked again a
    /// policy's worth later); a machine that always answers `None` keeps
    /// its node's whole log.
    fn snapshot(&self) -> Option<Vec<u8>> {
        None
    }

    /// Replaces the machine's state with one [`StateMachine::snapshot`]
    /// made after applying the command at `index` (on this node before a
    /// restart, or on the leader, for a node too far behind). Called on
    /// the apply thread, or before the node starts.
    ///
    /// # Errors
    /// Why the bytes could not be taken: the node stops (as when `apply`
    /// panics). The default refuses every snapshot.
    fn restore(&mut self, index: Index, data: &[u8]) -> Result<(), String> {
        let _ = data;
        Err(format!(
            "this state machine takes no snapshots (one through {index} arrived)"
        ))
    }
}

impl StateMachine for Box<dyn StateMachine> {
    fn apply(&mut self, index: Index, command: &[u8]) -> Vec<u8> {
        (**self).apply(index, command)
    }

    fn snapshot(&self) -> Option<Vec<u8>> {
        (**self).snapshot()
    }

    fn restore(&mut self, index: Index, data: &[u8]) -> Result<(), String> {
        (**self).restore(index, data)
    }
}

/// Callback that completes a proposal with the state machine's response.
pub type ProposeCallback = Box<dyn FnOnce(Result<Vec<u8>, crate::ProposeError>) + Send>;

/// Callback that completes a read barrier with the index it observed.
pub type ReadCallback = Box<dyn FnOnce(Result<Index, crate::ProposeError>) + Send>;

/// Called on role, term or leader changes, from the driver thread.
pub type StateChangeCallback = Box<dyn Fn(crate::consensus::RoleChange) + Send + Sync>;
