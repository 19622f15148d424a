//! What the simulator needs to know about each protocol beyond the common
//! [`Protocol`] trait: which common properties apply and which checks are
//! the protocol's own.

use super::checker::{EntryId, Violation};
use crate::consensus::raft::Raft;
use crate::consensus::{Effects, Protocol};
use crate::types::{Epoch, NodeId};

/// Checks a protocol adds to the common ones, run after every event.
pub trait ExtraChecks<P: Protocol>: Default {
    /// Checks the effects one event on `node` produced; `committed` is the
    /// globally committed log so far (index - 1) with the epoch each entry
    /// was first seen committed in.
    ///
    /// # Errors
    /// The violated property.
    fn check(
        &mut self,
        node: NodeId,
        core: &P,
        fx: &Effects<P::Message, P::HardState>,
        committed: &[(EntryId, Epoch)],
    ) -> Result<(), Violation>;
}

/// No checks beyond the common ones.
#[derive(Default, Debug)]
pub struct NoExtraChecks;

impl<P: Protocol> ExtraChecks<P> for NoExtraChecks {
    fn check(
        &mut self,
        _: NodeId,
        _: &P,
        _: &Effects<P::Message, P::HardState>,
        _: &[(EntryId, Epoch)],
    ) -> Result<(), Violation> {
        Ok(())
    }
}

/// A protocol the simulator can run.
pub trait SimProtocol: Protocol + Sized {
    /// The protocol promises Raft's Log Matching: an entry's (index, epoch)
    /// determines it and everything before it.
    const LOG_MATCHING: bool;
    /// The protocol's own invariants.
    type Checks: ExtraChecks<Self>;
}

impl SimProtocol for Raft {
    const LOG_MATCHING: bool = true;
    type Checks = NoExtraChecks;
}
