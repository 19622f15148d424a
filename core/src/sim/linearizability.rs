//! A linearizability checker for key-value histories, in the style of
//! Porcupine: the history is split by key (a register per key), and each
//! part is searched with the Wing–Gong–Lowe algorithm, memoizing
//! (linearized set, state) pairs so the same configuration is never explored
//! twice.

use std::collections::{BTreeMap, HashSet};

/// What a client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// Write `value` to the key.
    Put(u64),
    /// Read the key; the output is what was read.
    Get,
    /// A user's command ([`super::run_machine`]); the key-value check
    /// ignores it ([`check_commands`] checks it against the user's model).
    Command,
}

/// One client operation, with logical call and return times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// The client that issued it.
    pub client: u64,
    /// The key.
    pub key: u8,
    /// Put or Get.
    pub kind: OpKind,
    /// When it was called.
    pub call: u64,
    /// When it returned; `None` when the outcome is unknown (it may or may
    /// not have taken effect, at any time after `call`).
    pub ret: Option<u64>,
    /// For a completed Get: the value read; for a completed Put: the value
    /// it replaced (`None`: key absent).
    pub output: Option<u64>,
    /// The system answered that the op did not take effect (a Put whose
    /// proposal was `Dropped`): it must not appear to have happened.
    pub failed: bool,
}

/// Result of a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckResult {
    /// Every key's history is linearizable.
    Ok,
    /// The history of `key` is not linearizable.
    Illegal {
        /// The first key found illegal.
        key: u8,
    },
}

/// Checks a whole history against a register per key whose put returns
/// the value it replaced. Gets with unknown outcome are ignored (they
/// change nothing); Puts with unknown outcome may take effect or not; failed
/// ops never took effect, so a Get (or a Put's answer) that returns a failed
/// Put's value is illegal.
///
/// A Put with unknown outcome whose value no operation ever returned is
/// dropped before the search: linearizing it at the end of time is always
/// possible and changes nothing anyone saw, so dropping it is exact, and it
/// keeps runs with many timed-out writes from blowing up the search.
pub fn check(history: &[Operation]) -> CheckResult {
    let observed: HashSet<(u8, u64)> = history
        .iter()
        .filter(|op| op.ret.is_some() && !op.failed)
        .filter_map(|op| op.output.map(|v| (op.key, v)))
        .collect();
    let mut by_key: BTreeMap<u8, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        if op.failed || op.kind == OpKind::Command || (op.kind == OpKind::Get && op.ret.is_none()) {
            continue;
        }
        if let (OpKind::Put(v), None) = (op.kind, op.ret) {
            if !observed.contains(&(op.key, v)) {
                continue;
            }
        }
        by_key.entry(op.key).or_default().push(op);
    }
    for (key, ops) in by_key {
        if !check_register(&ops) {
            return CheckResult::Illegal { key };
        }
    }
    CheckResult::Ok
}

/// A user's command as its client saw it, for [`check_commands`]: only
/// commands that took effect (their entry committed) belong in the check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandOp {
    /// The command's bytes.
    pub command: Vec<u8>,
    /// When it was called (a logical stamp).
    pub call: u64,
    /// When it returned; `None` when the client never learnt the outcome
    /// (timed out, its node stopped): it took effect some time after `call`.
    pub ret: Option<u64>,
    /// The response the client got (`None` when it got none).
    pub response: Option<Vec<u8>>,
}

/// Checks that the responses clients got are those of some sequential run
/// of a fresh `new_machine()` that respects real time: the user's own state
/// machine is the model. The model applies each command with index 0 (its
/// position in the log is not the model's business), so a machine whose
/// responses depend on the index cannot be its own model.
///
/// # Errors
/// A description naming how many commands could not be ordered.
pub fn check_commands<M>(ops: &[CommandOp], new_machine: impl Fn() -> M) -> Result<(), String>
where
    M: crate::runtime::StateMachine + Clone + Eq + std::hash::Hash,
{
    let intervals: Vec<(u64, Option<u64>)> = ops.iter().map(|op| (op.call, op.ret)).collect();
    let legal = linearizable(&intervals, new_machine(), |machine, i| {
        let mut next = machine.clone();
        let response = next.apply(0, &ops[i].command);
        match &ops[i].response {
            Some(got) if *got != response => None,
            _ => Some(next),
        }
    });
    if legal {
        Ok(())
    } else {
        Err(format!(
            "the responses of {} commands fit no sequential run of the model",
            ops.len()
        ))
    }
}

#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
}

/// The calls and returns of a history in time order, as a doubly linked
/// list from which the search lifts an operation it linearizes (its call
/// and its return) and puts it back when it backtracks.
struct Events {
    events: Vec<Event>,
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Position of each operation's return.
    return_pos: Vec<usize>,
}

impl Events {
    /// The events of operations given as `(call, return)` stamps; an
    /// operation that never returned returns at the end of time.
    fn new(intervals: impl Iterator<Item = (u64, Option<u64>)>) -> Self {
        let mut timed: Vec<(u64, bool, Event)> = Vec::new();
        for (op, (call, ret)) in intervals.enumerate() {
            timed.push((call, false, Event { op, is_call: true }));
            let ret = ret.unwrap_or(u64::MAX);
            timed.push((ret, true, Event { op, is_call: false }));
        }
        // A call before a return at the same time (stamps are unique, so
        // ties do not happen in practice).
        timed.sort_by_key(|(t, is_ret, e)| (*t, *is_ret, e.op));
        let n = timed.len();
        let mut return_pos = vec![0; n / 2];
        for (pos, (_, _, e)) in timed.iter().enumerate() {
            if !e.is_call {
                return_pos[e.op] = pos;
            }
        }
        // Position n is the head sentinel: next[n] is the first event.
        let mut next: Vec<usize> = (1..=n).collect();
        next.push(0);
        let mut prev: Vec<usize> = Vec::with_capacity(n + 1);
        prev.push(n);
        prev.extend(0..n.saturating_sub(1));
        prev.push(n.saturating_sub(1));
        Events {
            events: timed.into_iter().map(|(_, _, e)| e).collect(),
            next,
            prev,
            return_pos,
        }
    }

    fn head(&self) -> usize {
        self.events.len()
    }

    fn first(&self) -> usize {
        self.next[self.head()]
    }

    fn is_empty(&self) -> bool {
        self.first() == self.head()
    }

    fn unlink(&mut self, i: usize) {
        let (p, nx) = (self.prev[i], self.next[i]);
        self.next[p] = nx;
        self.prev[nx] = p;
    }

    fn relink(&mut self, i: usize) {
        let (p, nx) = (self.prev[i], self.next[i]);
        self.next[p] = i;
        self.prev[nx] = i;
    }

    /// Takes the operation called at `call_pos` out of the list.
    fn lift(&mut self, call_pos: usize) {
        let op = self.events[call_pos].op;
        self.unlink(call_pos);
        self.unlink(self.return_pos[op]);
    }

    /// Puts it back (in the reverse order of `lift`).
    fn unlift(&mut self, call_pos: usize) {
        let op = self.events[call_pos].op;
        self.relink(self.return_pos[op]);
        self.relink(call_pos);
    }
}

/// Wing–Gong–Lowe search with memoization of (linearized set, state): true
/// when the operations, given by their `(call, return)` stamps, can be put
/// in an order that respects real time and in which `step(state, op)`
/// accepts each one (returning the next state).
pub fn linearizable<S: Clone + Eq + std::hash::Hash>(
    intervals: &[(u64, Option<u64>)],
    init: S,
    step: impl Fn(&S, usize) -> Option<S>,
) -> bool {
    if intervals.is_empty() {
        return true;
    }
    let mut list = Events::new(intervals.iter().copied());
    let mut linearized = vec![0u64; intervals.len().div_ceil(64)];
    let mut cache: HashSet<(Vec<u64>, S)> = HashSet::new();
    let mut stack: Vec<(usize, S)> = Vec::new();
    let mut state = init;
    let mut entry = list.first();
    while !list.is_empty() {
        let at = (entry != list.head()).then(|| list.events[entry]);
        match at {
            Some(ev) if ev.is_call => {
                let op = ev.op;
                let tried = step(&state, op).filter(|new_state| {
                    linearized[op / 64] |= 1 << (op % 64);
                    let fresh = cache.insert((linearized.clone(), new_state.clone()));
                    if !fresh {
                        linearized[op / 64] &= !(1 << (op % 64));
                    }
                    fresh
                });
                match tried {
                    Some(new_state) => {
                        stack.push((entry, std::mem::replace(&mut state, new_state)));
                        list.lift(entry);
                        entry = list.first();
                    }
                    None => entry = list.next[entry],
                }
            }
            // Ran off the end, or reached a return whose call is not
            // linearized yet: undo the last choice and try the next one.
            _ => {
                let Some((call_pos, old_state)) = stack.pop() else {
                    return false;
                };
                let op = list.events[call_pos].op;
                linearized[op / 64] &= !(1 << (op % 64));
                state = old_state;
                list.unlift(call_pos);
                entry = list.next[call_pos];
            }
        }
    }
    true
}

/// Register model step: `Some(new_state)` when `op` is legal in `state`
/// (a Put that returned must have replaced `state`; one whose outcome is
/// unknown returned nothing to check).
fn step(state: Option<u64>, op: &Operation) -> Option<Option<u64>> {
    let answered = op.ret.is_some();
    match op.kind {
        OpKind::Put(v) => (!answered || op.output == state).then_some(Some(v)),
        OpKind::Get => (op.output == state).then_some(state),
        OpKind::Command => Some(state),
    }
}

fn check_register(ops: &[&Operation]) -> bool {
    let intervals: Vec<(u64, Option<u64>)> = ops.iter().map(|op| (op.call, op.ret)).collect();
    linearizable(&intervals, None, |state, i| step(*state, ops[i]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A put of `v` that answered it replaced `replaced` (when `ret`).
    fn put(client: u64, v: u64, call: u64, ret: Option<u64>, replaced: Option<u64>) -> Operation {
        Operation {
            client,
            key: 0,
            kind: OpKind::Put(v),
            call,
            ret,
            output: replaced,
            failed: false,
        }
    }

    fn get(client: u64, out: Option<u64>, call: u64, ret: u64) -> Operation {
        Operation {
            client,
            key: 0,
            kind: OpKind::Get,
            call,
            ret: Some(ret),
            output: out,
            failed: false,
        }
    }

    #[test]
    fn sequential_history_is_legal() {
        let h = vec![
            put(1, 1, 0, Some(1), None),
            get(2, Some(1), 2, 3),
            put(1, 2, 4, Some(5), Some(1)),
            get(2, Some(2), 6, 7),
        ];
        assert_eq!(check(&h), CheckResult::Ok);
    }

    #[test]
    fn stale_read_after_a_completed_write_is_illegal() {
        let h = vec![
            put(1, 1, 0, Some(1), None),
            put(1, 2, 2, Some(3), Some(1)),
            get(2, Some(1), 4, 5),
        ];
        assert_eq!(check(&h), CheckResult::Illegal { key: 0 });
    }

    #[test]
    fn concurrent_write_may_be_seen_either_way() {
        let h = vec![
            put(1, 1, 0, Some(1), None),
            put(1, 2, 2, Some(6), Some(1)),
            get(2, Some(1), 3, 4),
            get(3, Some(2), 5, 7),
        ];
        assert_eq!(check(&h), CheckResult::Ok);
        // But not back again once the newer value was seen and both finished.
        let h = vec![
            put(1, 1, 0, Some(1), None),
            put(1, 2, 2, Some(6), Some(1)),
            get(2, Some(2), 3, 4),
            get(3, Some(1), 5, 7),
        ];
        assert_eq!(check(&h), CheckResult::Illegal { key: 0 });
    }

    #[test]
    fn unknown_put_may_or_may_not_happen() {
        let h = vec![
            put(1, 1, 0, Some(1), None),
            put(2, 9, 2, None, None),
            get(3, Some(1), 3, 4),
            get(3, Some(9), 5, 6),
        ];
        assert_eq!(check(&h), CheckResult::Ok);
        // A read of a value nobody wrote is never legal.
        let h = vec![put(1, 1, 0, Some(1), None), get(3, Some(7), 3, 4)];
        assert_eq!(check(&h), CheckResult::Illegal { key: 0 });
        // Reading an absent key before any write is fine.
        let h = vec![get(3, None, 0, 1), put(1, 1, 2, Some(3), None)];
        assert_eq!(check(&h), CheckResult::Ok);
    }

    #[test]
    fn keys_are_checked_apart() {
        let mut other = put(1, 5, 0, Some(1), None);
        other.key = 1;
        let h = vec![other, put(1, 1, 2, Some(3), None), get(2, Some(1), 4, 5)];
        assert_eq!(check(&h), CheckResult::Ok);
    }

    #[test]
    fn a_read_of_a_value_whose_put_failed_is_illegal() {
        let mut failed = put(1, 5, 1, Some(2), None);
        failed.failed = true;
        let read = get(2, Some(5), 3, 4);
        assert_eq!(
            check(&[failed.clone(), read]),
            CheckResult::Illegal { key: 0 }
        );
        let nothing = get(2, None, 3, 4);
        assert_eq!(check(&[failed, nothing]), CheckResult::Ok);
    }

    #[test]
    fn a_put_answers_the_value_it_replaced() {
        // Sequential: the second put replaced the first.
        let h = vec![put(1, 1, 0, Some(1), None), put(2, 2, 2, Some(3), Some(1))];
        assert_eq!(check(&h), CheckResult::Ok);
        // An answer missing the value it replaced (a put answered before its
        // entry was applied) is illegal.
        let h = vec![put(1, 1, 0, Some(1), None), put(2, 2, 2, Some(3), None)];
        assert_eq!(check(&h), CheckResult::Illegal { key: 0 });
        // Concurrent puts chain in either order, but each replaces the other
        // at most once.
        let h = vec![put(1, 1, 0, Some(5), Some(2)), put(2, 2, 1, Some(4), None)];
        assert_eq!(check(&h), CheckResult::Ok);
        let h = vec![
            put(1, 1, 0, Some(5), Some(2)),
            put(2, 2, 1, Some(4), Some(1)),
        ];
        assert_eq!(check(&h), CheckResult::Illegal { key: 0 });
        // A put whose outcome is unknown is seen through another's answer.
        let h = vec![put(1, 9, 0, None, None), put(2, 2, 5, Some(6), Some(9))];
        assert_eq!(check(&h), CheckResult::Ok);
    }
}

#[cfg(test)]
mod unobserved {
    use super::*;

    #[test]
    fn many_timed_out_writes_nobody_saw_are_checked_quickly_and_exactly() {
        let mut h: Vec<Operation> = (0..500)
            .map(|i| Operation {
                client: 9,
                key: 0,
                kind: OpKind::Put(1000 + i),
                call: i,
                ret: None,
                output: None,
                failed: false,
            })
            .collect();
        h.push(Operation {
            client: 1,
            key: 0,
            kind: OpKind::Get,
            call: 600,
            ret: Some(601),
            output: None,
            failed: false,
        });
        assert_eq!(check(&h), CheckResult::Ok);
        // Still exact: a completed write followed by a read of nothing fails.
        h.push(Operation {
            client: 2,
            key: 0,
            kind: OpKind::Put(7),
            call: 602,
            ret: Some(603),
            output: None,
            failed: false,
        });
        h.push(Operation {
            client: 1,
            key: 0,
            kind: OpKind::Get,
            call: 604,
            ret: Some(605),
            output: None,
            failed: false,
        });
        assert_eq!(check(&h), CheckResult::Illegal { key: 0 });
    }
}
