//! The apply thread: runs the host's state machine in log order and completes
//! proposals and reads.

use super::status::SharedStatus;
use super::{ProposeCallback, ReadCallback, StateMachine};
use crate::error::ProposeError;
use crate::types::{Entry, EntryKind, Index};
use crossbeam_channel::Receiver;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

/// Work for the apply thread, in the order the driver committed it.
pub(crate) enum ApplyMsg {
    /// Committed entries; `completions[i] = (position in entries, callback)`,
    /// sorted by position.
    Entries {
        entries: Vec<Entry>,
        completions: Vec<(usize, ProposeCallback)>,
    },
    /// A read confirmed at `index`.
    Read { index: Index, done: ReadCallback },
}

/// Runs a host callback; a panic in it is logged and does not take the
/// calling node thread down.
pub(crate) fn call_guarded(f: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        ::log::error!("a completion callback panicked; the node keeps running");
    }
}

pub(crate) fn run<M: StateMachine>(
    rx: Receiver<ApplyMsg>,
    mut machine: M,
    status: &SharedStatus,
    closed: &AtomicBool,
) {
    let mut applied: Index = 0;
    let mut waiting_reads: Vec<(Index, ReadCallback)> = Vec::new();
    let mut failed = false;
    while let Ok(msg) = rx.recv() {
        match msg {
            ApplyMsg::Entries {
                entries,
                completions,
            } => {
                let mut completions = completions.into_iter().peekable();
                for (pos, e) in entries.iter().enumerate() {
                    debug_assert!(
                        failed || e.index == applied + 1,
                        "applied indices are consecutive: {} after {applied}",
                        e.index
                    );
                    let response = if failed {
                        None
                    } else if e.kind == EntryKind::Normal {
                        match catch_unwind(AssertUnwindSafe(|| machine.apply(e.index, &e.data))) {
                            Ok(r) => Some(r),
                            Err(_) => {
                                ::log::error!(
                                    "state machine panicked applying entry {}; stopping the node",
                                    e.index
                                );
                                failed = true;
                                status.state_machine_failed.store(true, Ordering::Relaxed);
                                // The driver sees this and stops the node.
                                closed.store(true, Ordering::SeqCst);
                                None
                            }
                        }
                    } else {
                        Some(Vec::new())
                    };
                    if response.is_some() {
                        applied = e.index;
                    }
                    if completions.peek().is_some_and(|(p, _)| *p == pos) {
                        if let Some((_, done)) = completions.next() {
                            let result = response.ok_or(ProposeError::Closed);
                            call_guarded(|| done(result));
                        }
                    }
                }
                status.applied.store(applied, Ordering::Release);
            }
            ApplyMsg::Read { index, done } => {
                if failed {
                    call_guarded(|| done(Err(ProposeError::Closed)));
                } else if index <= applied {
                    call_guarded(|| done(Ok(index)));
                } else {
                    waiting_reads.push((index, done));
                }
            }
        }
        // Reads wait only when the driver ran ahead of this thread.
        let mut i = 0;
        while i < waiting_reads.len() {
            if waiting_reads[i].0 <= applied && !failed {
                let (index, done) = waiting_reads.swap_remove(i);
                call_guarded(|| done(Ok(index)));
            } else {
                i += 1;
            }
        }
    }
    for (_, done) in waiting_reads {
        call_guarded(|| done(Err(ProposeError::Closed)));
    }
}
