//! What the simulator needs to know about each protocol beyond the common
//! [`Protocol`] trait: which common properties apply and which checks are
//! the protocol's own.

use super::checker::{EntryId, Violation};
use crate::consensus::paxos::{self, Ballot, MultiPaxos};
use crate::consensus::raft::Raft;
use crate::consensus::zab::{self, Zab};
use crate::consensus::{Effects, Protocol};
use crate::types::{Epoch, Index, NodeId};
use std::collections::HashMap;

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

    /// Node `node` restarted from storage with a snapshot through
    /// `(epoch, index)` (zeros: none); it delivers from after it again.
    fn on_restart(&mut self, node: NodeId, snapshot: (Epoch, Index)) {
        let _ = (node, snapshot);
    }
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

impl SimProtocol for MultiPaxos {
    const LOG_MATCHING: bool = false;
    type Checks = PaxosChecks;
}

/// Multi-Paxos's own invariants: promises never go backwards, and once a
/// value is chosen in a slot every higher-ballot proposal for that slot
/// carries the same value. (At most one value chosen per slot is the common
/// "committed entries never change" check.)
#[derive(Default, Debug)]
pub struct PaxosChecks {
    promised: HashMap<NodeId, Ballot>,
}

impl ExtraChecks<MultiPaxos> for PaxosChecks {
    fn check(
        &mut self,
        node: NodeId,
        _core: &MultiPaxos,
        fx: &Effects<paxos::Message, paxos::HardState>,
        committed: &[(EntryId, Epoch)],
    ) -> Result<(), Violation> {
        if let Some(hs) = &fx.hard_state {
            let before = self.promised.insert(node, hs.promised).unwrap_or(0);
            if hs.promised < before {
                return Err(Violation {
                    property: "Promises Never Go Backwards",
                    detail: format!(
                        "node {node} persisted promise {} after {before}",
                        hs.promised
                    ),
                });
            }
        }
        for (_, msg) in &fx.messages {
            if let paxos::Message::Accept {
                ballot, entries, ..
            } = msg
            {
                for e in entries {
                    let Some((chosen, _)) = committed.get(e.index as usize - 1) else {
                        break;
                    };
                    if *ballot > chosen.epoch && EntryId::of(e).hash != chosen.hash {
                        return Err(Violation {
                            property: "Chosen Values Stay Chosen",
                            detail: format!(
                                "node {node} proposes another value for chosen slot {} in ballot {ballot}",
                                e.index
                            ),
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

impl SimProtocol for Zab {
    const LOG_MATCHING: bool = true;
    type Checks = ZabChecks;
}

/// ZAB's own invariants beyond the common ones (one established leader per
/// epoch is Election Safety; a committed proposal in every later leader's
/// history is Leader Completeness): every server delivers zxids in order,
/// with no gaps, and never an epoch older than one it already delivered (a
/// snapshot counts as delivering everything through its zxid).
#[derive(Default, Debug)]
pub struct ZabChecks {
    delivered: HashMap<NodeId, zab::Zxid>,
}

impl ExtraChecks<Zab> for ZabChecks {
    fn check(
        &mut self,
        node: NodeId,
        _core: &Zab,
        fx: &Effects<zab::Message, zab::HardState>,
        _committed: &[(EntryId, Epoch)],
    ) -> Result<(), Violation> {
        let delivered = |epoch, index| zab::Zxid { epoch, index };
        if let Some(s) = &fx.snapshot {
            let last = self.delivered.get(&node).copied().unwrap_or_default();
            if s.index <= last.index || s.epoch < last.epoch {
                return Err(Violation {
                    property: "Zxids Delivered In Order",
                    detail: format!(
                        "node {node} installed a snapshot through ({}, {}) after delivering ({}, {})",
                        s.epoch, s.index, last.epoch, last.index
                    ),
                });
            }
            self.delivered.insert(node, delivered(s.epoch, s.index));
        }
        for e in &fx.committed {
            let zxid = delivered(e.epoch, e.index);
            let last = self.delivered.get(&node).copied().unwrap_or_default();
            if e.index != last.index + 1 || e.epoch < last.epoch {
                return Err(Violation {
                    property: "Zxids Delivered In Order",
                    detail: format!(
                        "node {node} delivered ({}, {}) after ({}, {})",
                        e.epoch, e.index, last.epoch, last.index
                    ),
                });
            }
            self.delivered.insert(node, zxid);
        }
        Ok(())
    }

    fn on_restart(&mut self, node: NodeId, (epoch, index): (Epoch, Index)) {
        // A restart delivers the history again from after its snapshot.
        self.delivered.insert(node, zab::Zxid { epoch, index });
    }
}
