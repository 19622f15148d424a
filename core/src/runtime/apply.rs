//! Applying committed entries: the host's state machine runs in log order,
//! a proposal completes only after its entry was applied (with the
//! machine's response), and a read barrier is served only once the machine
//! has applied through its index. [`Applier`] is that logic, once: the
//! runtime's apply thread runs it, and so does the simulator, behind the
//! executor by a seeded delay as the thread can be.

use super::status::SharedStatus;
use super::{ProposeCallback, ReadCallback, StateMachine};
use crate::error::ProposeError;
use crate::types::{Entry, EntryKind, Index};
use crossbeam_channel::Receiver;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

/// Work for an applier, in the order the executor committed it. `D`
/// completes a proposal, `R` a read barrier.
pub(crate) enum ApplyMsg<D, R> {
    /// Committed entries; `completions[i] = (position in entries, done)`,
    /// sorted by position.
    Entries {
        entries: Vec<Entry>,
        completions: Vec<(usize, D)>,
    },
    /// A read a quorum confirmed at `index`.
    Read { index: Index, done: R },
}

/// Where proposals and reads are answered: the runtime calls the host's
/// callbacks, the simulator records the answers in its client history.
pub(crate) trait Completions<D, R> {
    /// Answers a proposal: the state machine's response, or why it failed.
    fn proposal_done(&mut self, done: D, result: Result<Vec<u8>, ProposeError>);
    /// Answers a read barrier: its read index (the machine has applied
    /// through it), or why it failed.
    fn read_done(&mut self, done: R, result: Result<Index, ProposeError>);
}

/// Runs a host callback; a panic in it is logged and does not take the
/// calling node thread down.
pub(crate) fn call_guarded(f: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        ::log::error!("a completion callback panicked; the node keeps running");
    }
}

/// Answers through the host's callbacks, each guarded.
pub(crate) struct Callbacks;

impl Completions<ProposeCallback, ReadCallback> for Callbacks {
    fn proposal_done(&mut self, done: ProposeCallback, result: Result<Vec<u8>, ProposeError>) {
        call_guarded(|| done(result));
    }

    fn read_done(&mut self, done: ReadCallback, result: Result<Index, ProposeError>) {
        call_guarded(|| done(result));
    }
}

/// A state machine and what waits on it. Once `apply` panics the machine is
/// failed: nothing more is applied, and everything after it is answered
/// `Closed`.
pub(crate) struct Applier<M, R> {
    machine: M,
    applied: Index,
    waiting_reads: Vec<(Index, R)>,
    failed: bool,
}

impl<M: StateMachine, R> Applier<M, R> {
    /// An applier that has applied nothing.
    pub(crate) fn new(machine: M) -> Self {
        Applier {
            machine,
            applied: 0,
            waiting_reads: Vec::new(),
            failed: false,
        }
    }

    /// The last index applied.
    pub(crate) fn applied(&self) -> Index {
        self.applied
    }

    /// The machine (read-only).
    pub(crate) fn machine(&self) -> &M {
        &self.machine
    }

    /// Carries out `msg`, answering through `sink`. Returns true when the
    /// machine failed during this call (its `apply` panicked).
    pub(crate) fn handle<D>(
        &mut self,
        msg: ApplyMsg<D, R>,
        sink: &mut impl Completions<D, R>,
    ) -> bool {
        let was_failed = self.failed;
        match msg {
            ApplyMsg::Entries {
                entries,
                completions,
            } => self.apply_entries(&entries, completions, sink),
            ApplyMsg::Read { index, done } => self.waiting_reads.push((index, done)),
        }
        // Reads wait only while the executor runs ahead of this applier.
        let mut i = 0;
        while i < self.waiting_reads.len() {
            if self.failed {
                let (_, done) = self.waiting_reads.swap_remove(i);
                sink.read_done(done, Err(ProposeError::Closed));
            } else if self.waiting_reads[i].0 <= self.applied {
                let (index, done) = self.waiting_reads.swap_remove(i);
                sink.read_done(done, Ok(index));
            } else {
                i += 1;
            }
        }
        self.failed && !was_failed
    }

    fn apply_entries<D>(
        &mut self,
        entries: &[Entry],
        completions: Vec<(usize, D)>,
        sink: &mut impl Completions<D, R>,
    ) {
        let mut completions = completions.into_iter().peekable();
        for (pos, e) in entries.iter().enumerate() {
            debug_assert!(
                self.failed || e.index == self.applied + 1,
                "applied indices are consecutive: {} after {}",
                e.index,
                self.applied
            );
            let response = self.apply_one(e);
            if response.is_some() {
                self.applied = e.index;
            }
            // Answered only now, after its entry was applied.
            if let Some((_, done)) = completions.next_if(|(p, _)| *p == pos) {
                sink.proposal_done(done, response.ok_or(ProposeError::Closed));
            }
        }
    }

    /// The machine's response to `e` (empty for a no-op); `None` once the
    /// machine failed.
    fn apply_one(&mut self, e: &Entry) -> Option<Vec<u8>> {
        if self.failed {
            return None;
        }
        if e.kind != EntryKind::Normal {
            return Some(Vec::new());
        }
        let machine = &mut self.machine;
        match catch_unwind(AssertUnwindSafe(|| machine.apply(e.index, &e.data))) {
            Ok(r) => Some(r),
            Err(_) => {
                ::log::error!(
                    "state machine panicked applying entry {}; stopping the node",
                    e.index
                );
                self.failed = true;
                None
            }
        }
    }

    /// Fails every read still waiting with `Closed` (the node stopped).
    pub(crate) fn close<D>(&mut self, sink: &mut impl Completions<D, R>) {
        for (_, done) in self.waiting_reads.drain(..) {
            sink.read_done(done, Err(ProposeError::Closed));
        }
    }
}

/// The runtime's apply thread: runs until the driver drops its sender.
pub(crate) fn run<M: StateMachine>(
    rx: Receiver<ApplyMsg<ProposeCallback, ReadCallback>>,
    machine: M,
    status: &SharedStatus,
    closed: &AtomicBool,
) {
    let mut applier = Applier::new(machine);
    while let Ok(msg) = rx.recv() {
        if applier.handle(msg, &mut Callbacks) {
            status.state_machine_failed.store(true, Ordering::Relaxed);
            // The driver sees this and stops the node.
            closed.store(true, Ordering::SeqCst);
        }
        status.applied.store(applier.applied(), Ordering::Release);
    }
    applier.close(&mut Callbacks);
}
