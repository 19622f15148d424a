//! Applying committed entries: the host's state machine runs in log order,
//! a proposal completes only after its entry was applied (with the
//! machine's response), and a read barrier is served only once the machine
//! has applied through its index. [`Applier`] is that logic, once: the
//! runtime's apply thread runs it, and so does the simulator, behind the
//! executor by a seeded delay as the thread can be.

use super::status::SharedStatus;
use super::{ProposeCallback, ReadCallback, SnapshotPolicy, StateMachine};
use crate::consensus::Snapshot;
use crate::error::ProposeError;
use crate::types::{Entry, EntryKind, Epoch, Index};
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
    /// A snapshot from the leader replaces the machine's state (the
    /// entries after it follow).
    Restore(Snapshot),
}

/// Where proposals and reads are answered: the runtime calls the host's
/// callbacks, the simulator records the answers in its client history.
pub(crate) trait Completions<D, R> {
    /// Answers a proposal: the state machine's response, or why it failed.
    fn proposal_done(&mut self, done: D, result: Result<Vec<u8>, ProposeError>);
    /// Answers a read barrier: its read index (the machine has applied
    /// through it), or why it failed.
    fn read_done(&mut self, done: R, result: Result<Index, ProposeError>);
    /// The machine just failed: called before anything waiting on it is
    /// answered, so whoever is answered already sees it failed.
    fn machine_failed(&mut self) {}
}

/// Runs a host callback; a panic in it is logged and does not take the
/// calling node thread down.
pub(crate) fn call_guarded(f: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        ::log::error!("a completion callback panicked; the node keeps running");
    }
}

/// Answers through the host's callbacks, each guarded; a failed machine
/// shows in the node's status (and stops it) before any answer.
pub(crate) struct Callbacks<'a> {
    status: &'a SharedStatus,
    closed: &'a AtomicBool,
}

impl Callbacks<'_> {
    fn mark_failed(&self) {
        self.status
            .state_machine_failed
            .store(true, Ordering::Relaxed);
        // The driver sees this and stops the node.
        self.closed.store(true, Ordering::SeqCst);
    }
}

impl Completions<ProposeCallback, ReadCallback> for Callbacks<'_> {
    fn proposal_done(&mut self, done: ProposeCallback, result: Result<Vec<u8>, ProposeError>) {
        call_guarded(|| done(result));
    }

    fn read_done(&mut self, done: ReadCallback, result: Result<Index, ProposeError>) {
        call_guarded(|| done(result));
    }

    fn machine_failed(&mut self) {
        self.mark_failed();
    }
}

/// A state machine and what waits on it. Once `apply` panics the machine is
/// failed: nothing more is applied, and everything after it is answered
/// `Closed`.
pub(crate) struct Applier<M, R> {
    machine: M,
    applied: Index,
    /// The epoch of the entry at `applied`.
    applied_epoch: Epoch,
    waiting_reads: Vec<(Index, R)>,
    failed: bool,
    policy: SnapshotPolicy,
    /// Entries and entry bytes applied since the last snapshot.
    since: (u64, u64),
}

impl<M: StateMachine, R> Applier<M, R> {
    /// An applier of `machine` as `snapshot` left it (restored here), or
    /// as it is when there is none, snapshotting by `policy`.
    ///
    /// # Errors
    /// The machine's reason when it refused the snapshot.
    pub(crate) fn new(
        mut machine: M,
        snapshot: Option<&Snapshot>,
        policy: SnapshotPolicy,
    ) -> Result<Self, String> {
        let (applied, applied_epoch) = match snapshot {
            Some(s) => {
                restore_guarded(&mut machine, s)?;
                (s.index, s.epoch)
            }
            None => (0, 0),
        };
        Ok(Applier {
            machine,
            applied,
            applied_epoch,
            waiting_reads: Vec::new(),
            failed: false,
            policy,
            since: (0, 0),
        })
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
            ApplyMsg::Restore(snapshot) => self.restore(&snapshot),
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
            let failed_before = self.failed;
            let response = self.apply_one(e);
            if self.failed && !failed_before {
                sink.machine_failed();
            }
            if response.is_some() {
                self.applied = e.index;
                self.applied_epoch = e.epoch;
                self.since.0 += 1;
                self.since.1 += e.size() as u64;
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
                    "the state machine failed (it panicked, or its host callback raised) applying entry {}; stopping the node",
                    e.index
                );
                self.failed = true;
                None
            }
        }
    }

    /// Replaces the machine's state with `snapshot` (one it already passed
    /// is ignored); a refusal fails the machine.
    fn restore(&mut self, snapshot: &Snapshot) {
        if self.failed || snapshot.index <= self.applied {
            return;
        }
        match restore_guarded(&mut self.machine, snapshot) {
            Ok(()) => {
                self.applied = snapshot.index;
                self.applied_epoch = snapshot.epoch;
                self.since = (0, 0);
            }
            Err(why) => {
                ::log::error!("{why}; stopping the node");
                self.failed = true;
            }
        }
    }

    /// A snapshot of the machine when the policy says one is due (the
    /// machine's `snapshot` runs here); `None` otherwise, or when the
    /// machine gave none (it is asked again a policy's worth later). The
    /// count starts again either way: a snapshot the caller could not hand
    /// on is not retried at every batch.
    pub(crate) fn due_snapshot(&mut self) -> Option<Snapshot> {
        if self.failed || !self.policy.is_due(self.since.0, self.since.1) {
            return None;
        }
        self.since = (0, 0);
        let machine = &self.machine;
        match catch_unwind(AssertUnwindSafe(|| machine.snapshot())) {
            Ok(Some(data)) => Some(Snapshot {
                index: self.applied,
                epoch: self.applied_epoch,
                data: data.into(),
            }),
            Ok(None) => None,
            Err(_) => {
                ::log::error!("state machine panicked taking a snapshot; stopping the node");
                self.failed = true;
                None
            }
        }
    }

    /// Snapshots by `policy` from now on.
    pub(crate) fn set_policy(&mut self, policy: SnapshotPolicy) {
        self.policy = policy;
    }

    /// True once the machine failed (a panic, or a refused snapshot).
    pub(crate) fn is_failed(&self) -> bool {
        self.failed
    }

    /// Fails every read still waiting with `Closed` (the node stopped).
    pub(crate) fn close<D>(&mut self, sink: &mut impl Completions<D, R>) {
        for (_, done) in self.waiting_reads.drain(..) {
            sink.read_done(done, Err(ProposeError::Closed));
        }
    }
}

/// Restores `machine` from `snapshot`; a refusal or a panic is the error.
fn restore_guarded<M: StateMachine>(machine: &mut M, snapshot: &Snapshot) -> Result<(), String> {
    let index = snapshot.index;
    match catch_unwind(AssertUnwindSafe(|| machine.restore(index, &snapshot.data))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(why)) => Err(format!(
            "the state machine refused the snapshot through {index}: {why}"
        )),
        Err(_) => Err(format!(
            "the state machine panicked restoring the snapshot through {index}"
        )),
    }
}

/// The runtime's apply thread: runs until the driver drops its sender.
/// Snapshots the policy calls for go to `snapshotted` (false: it could not
/// take it; the next comes a policy's worth later).
pub(crate) fn run<M: StateMachine>(
    rx: Receiver<ApplyMsg<ProposeCallback, ReadCallback>>,
    mut applier: Applier<M, ReadCallback>,
    status: &SharedStatus,
    closed: &AtomicBool,
    snapshotted: impl Fn(Snapshot) -> bool,
) {
    let mut sink = Callbacks { status, closed };
    while let Ok(msg) = rx.recv() {
        let failed = applier.handle(msg, &mut sink);
        status.applied.store(applier.applied(), Ordering::Release);
        if let Some(snapshot) = applier.due_snapshot() {
            if !snapshotted(snapshot) {
                ::log::warn!("a snapshot was dropped (the node's input queue is full)");
            }
        }
        if failed || applier.is_failed() {
            sink.mark_failed();
        }
    }
    applier.close(&mut sink);
}
