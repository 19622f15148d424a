//! The effect executor: carries out a core's [`Effects`] batch in the one
//! order every node follows, and keeps the proposals and read barriers
//! that wait on it. The threaded driver and the simulator both run it, each
//! through a [`Host`] of its own (real storage, transport and apply thread;
//! or the simulated disk, network and a lagging applier), so the seeded
//! runs prove this code too.
//!
//! The order (docs/architecture.md):
//! 1. save an installed snapshot (durably, at once), then write the hard
//!    state, the truncation and the appended entries;
//! 2. send the messages that depend on none of it (a leader's appends and
//!    heartbeats, [`Protocol::may_send_before_sync`]) unless the batch
//!    changed the hard state beyond its commit index or cut the log: the
//!    leader's sync then overlaps its followers' (Raft §10.2.1; a leader
//!    counts its own entries only once a later batch runs, after this
//!    sync);
//! 3. sync, then send the other messages (none leaves before what it
//!    depends on is durable), and report the role change;
//! 4. hand an installed snapshot to the applier (proposals it covers are
//!    answered `Timeout`: they may have committed), then the committed
//!    entries with the proposals whose identity `(origin, index)` they
//!    carry; a proposal whose slot committed another entry is answered
//!    `Dropped`;
//! 5. hand the confirmed reads to the applier (it serves each once it has
//!    applied through the read's index); fail the reads the core gave up
//!    on with `NotLeader` and the leader known.
//!
//! Every proposal and read is answered exactly once: by the applier, by
//! [`Executor::expire`] (`Timeout`), or by [`Executor::close`] (`Closed`).

use super::apply::{ApplyMsg, Completions};
use crate::consensus::{Effects, Protocol, ReadId, RoleChange, Snapshot};
use crate::error::ProposeError;
use crate::storage::StorageError;
use crate::types::{Entry, Epoch, Index, NodeId};
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};

/// What the executor needs from the node it runs in. Completions (failed
/// proposals and reads) go through the [`Completions`] supertrait.
pub(crate) trait Host<M, H, D, R>: Completions<D, R> {
    /// Saves `snapshot` durably before it returns (it replaces the log
    /// before it; the rest of the batch follows it).
    ///
    /// # Errors
    /// The storage's error: the node must stop.
    fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError>;

    /// Writes the batch's changes, not yet durable: `hard_state`
    /// (replacing the old; when not `hard_state_must_sync`, only its
    /// commit index changed and it need never be made durable), then the
    /// truncation (every entry at or above the index goes), then `append`,
    /// which the host takes.
    ///
    /// # Errors
    /// The storage's error: the node must stop.
    fn write(
        &mut self,
        hard_state: Option<H>,
        hard_state_must_sync: bool,
        truncate_from: Option<Index>,
        append: &mut Vec<Entry>,
    ) -> Result<(), StorageError>;

    /// Makes everything written durable (nothing to do when nothing was).
    ///
    /// # Errors
    /// The storage's error: the node must stop.
    fn sync(&mut self) -> Result<(), StorageError>;

    /// Queues `msg` for `to`.
    fn send(&mut self, to: NodeId, msg: M);

    /// Every message of the batch was queued.
    fn sends_done(&mut self) {}

    /// The role, epoch or leader changed.
    fn role_changed(&mut self, change: RoleChange);

    /// Hands work to the applier, in order.
    ///
    /// # Errors
    /// The work back, when the applier is gone.
    fn apply(&mut self, msg: ApplyMsg<D, R>) -> Result<(), ApplyMsg<D, R>>;
}

/// Why a node's executor cannot go on.
#[derive(Debug)]
pub(crate) enum Stopped {
    /// Storage failed: nothing more may be persisted or sent.
    Storage(StorageError),
    /// The applier is gone (its thread ended).
    ApplierGone,
}

/// A proposal waiting for its entry, known by its identity `(origin,
/// index)` (see [`crate::types::Entry`]), not by the epoch its slot ends up
/// committed in.
struct Pending<D, T> {
    epoch: Epoch,
    index: Index,
    deadline: T,
    done: D,
}

/// The proposals and read barriers of one node, and the order in which its
/// effects are carried out. `D` answers a proposal, `R` a read, `T` is the
/// clock deadlines are given in (`Instant`, or the simulator's virtual time).
pub(crate) struct Executor<D, R, T> {
    /// Sorted by (index, epoch).
    pending: VecDeque<Pending<D, T>>,
    reads: BTreeMap<ReadId, (R, T)>,
    next_read: ReadId,
}

impl<D, R, T: Copy + Ord> Executor<D, R, T> {
    /// An executor with nothing waiting.
    pub(crate) fn new() -> Self {
        Executor {
            pending: VecDeque::new(),
            reads: BTreeMap::new(),
            next_read: 1,
        }
    }

    /// Proposes `data` to `core`; on success `done` waits for the entry
    /// (until `deadline`).
    ///
    /// # Errors
    /// The core's refusal, with `done` given back unanswered.
    pub(crate) fn propose<P: Protocol>(
        &mut self,
        core: &mut P,
        data: Bytes,
        deadline: T,
        done: D,
        fx: &mut Effects<P::Message, P::HardState>,
    ) -> Result<(Epoch, Index), (ProposeError, D)> {
        let (epoch, index) = match core.propose(data, fx) {
            Ok(at) => at,
            Err(e) => return Err((e, done)),
        };
        let p = Pending {
            epoch,
            index,
            deadline,
            done,
        };
        let key = (index, epoch);
        if self
            .pending
            .back()
            .is_none_or(|b| (b.index, b.epoch) <= key)
        {
            self.pending.push_back(p);
        } else {
            let at = self.pending.partition_point(|q| (q.index, q.epoch) <= key);
            self.pending.insert(at, p);
        }
        Ok((epoch, index))
    }

    /// Starts a read barrier on `core`; `done` waits for its quorum round
    /// (until `deadline`).
    ///
    /// # Errors
    /// The core's refusal, with `done` given back unanswered.
    pub(crate) fn read<P: Protocol>(
        &mut self,
        core: &mut P,
        deadline: T,
        done: R,
        fx: &mut Effects<P::Message, P::HardState>,
    ) -> Result<ReadId, (ProposeError, R)> {
        let id = self.next_read;
        match core.read(id, fx) {
            Ok(()) => {
                self.next_read += 1;
                self.reads.insert(id, (done, deadline));
                Ok(id)
            }
            Err(e) => Err((e, done)),
        }
    }

    /// Carries out `fx`, which `core` produced, in the order of the module
    /// doc, and leaves it empty.
    ///
    /// # Errors
    /// [`Stopped`]: storage failed (nothing that depended on the batch's
    /// writes was sent) or the applier is gone; the node must stop.
    pub(crate) fn carry_out<P: Protocol>(
        &mut self,
        core: &P,
        fx: &mut Effects<P::Message, P::HardState>,
        host: &mut impl Host<P::Message, P::HardState, D, R>,
    ) -> Result<(), Stopped> {
        let result = self.carry_out_in_order(core, fx, host);
        fx.clear();
        result
    }

    fn carry_out_in_order<P: Protocol>(
        &mut self,
        core: &P,
        fx: &mut Effects<P::Message, P::HardState>,
        host: &mut impl Host<P::Message, P::HardState, D, R>,
    ) -> Result<(), Stopped> {
        let commit = core.commit_index();
        debug_assert!(
            commit <= core.last_index(),
            "commit {commit} beyond the last index {}",
            core.last_index()
        );
        let snapshot = fx.snapshot.take();
        if let Some(s) = &snapshot {
            host.save_snapshot(s).map_err(Stopped::Storage)?;
        }
        let hold_all = fx.hard_state_must_sync || fx.truncate_from.is_some() || snapshot.is_some();
        host.write(
            fx.hard_state.take(),
            fx.hard_state_must_sync,
            fx.truncate_from.take(),
            &mut fx.append,
        )
        .map_err(Stopped::Storage)?;
        debug_assert!(
            fx.append.is_empty(),
            "every entry is written before a message leaves"
        );
        if !hold_all {
            let mut early = fx
                .messages
                .extract_if(.., |(_, m)| P::may_send_before_sync(m))
                .peekable();
            if early.peek().is_some() {
                for (to, msg) in early {
                    host.send(to, msg);
                }
                host.sends_done();
            }
        }
        host.sync().map_err(Stopped::Storage)?;
        for (to, msg) in fx.messages.drain(..) {
            host.send(to, msg);
        }
        host.sends_done();
        if let Some(change) = fx.role_change.take() {
            host.role_changed(change);
        }
        if let Some(s) = snapshot {
            // Proposals the snapshot covers may or may not have committed.
            while self.pending.front().is_some_and(|p| p.index <= s.index) {
                if let Some(p) = self.pending.pop_front() {
                    host.proposal_done(p.done, Err(ProposeError::Timeout));
                }
            }
            self.hand_over(ApplyMsg::Restore(s), host)?;
        }
        let entries = std::mem::take(&mut fx.committed);
        if !entries.is_empty() {
            debug_assert!(
                entries.windows(2).all(|w| w[1].index == w[0].index + 1)
                    && entries.last().is_some_and(|e| e.index <= commit),
                "committed entries are consecutive and not past the commit index"
            );
            let completions = self.match_committed(&entries, host);
            self.hand_over(
                ApplyMsg::Entries {
                    entries,
                    completions,
                },
                host,
            )?;
        }
        for r in std::mem::take(&mut fx.reads_ready) {
            if let Some((done, _)) = self.reads.remove(&r.id) {
                let index = r.index;
                self.hand_over(ApplyMsg::Read { index, done }, host)?;
            }
        }
        for r in std::mem::take(&mut fx.reads_failed) {
            if let Some((done, _)) = self.reads.remove(&r.id) {
                let leader = r.leader.or(core.leader());
                host.read_done(done, Err(ProposeError::NotLeader { leader }));
            }
        }
        Ok(())
    }

    /// The proposals `entries` complete, by position; those whose slot went
    /// to another entry are answered `Dropped`.
    fn match_committed(
        &mut self,
        entries: &[Entry],
        host: &mut impl Completions<D, R>,
    ) -> Vec<(usize, D)> {
        let mut completions = Vec::new();
        for (pos, e) in entries.iter().enumerate() {
            while self.pending.front().is_some_and(|p| p.index <= e.index) {
                let Some(p) = self.pending.pop_front() else {
                    break;
                };
                if p.index == e.index && p.epoch == e.origin {
                    completions.push((pos, p.done));
                } else {
                    host.proposal_done(p.done, Err(ProposeError::Dropped));
                }
            }
        }
        completions
    }

    /// Hands `msg` to the applier; when it is gone, answers what `msg`
    /// carried with `Closed`.
    fn hand_over<M, H>(
        &mut self,
        msg: ApplyMsg<D, R>,
        host: &mut impl Host<M, H, D, R>,
    ) -> Result<(), Stopped> {
        match host.apply(msg) {
            Ok(()) => Ok(()),
            Err(ApplyMsg::Entries { completions, .. }) => {
                for (_, done) in completions {
                    host.proposal_done(done, Err(ProposeError::Closed));
                }
                Err(Stopped::ApplierGone)
            }
            Err(ApplyMsg::Read { done, .. }) => {
                host.read_done(done, Err(ProposeError::Closed));
                Err(Stopped::ApplierGone)
            }
            Err(ApplyMsg::Restore(_)) => Err(Stopped::ApplierGone),
        }
    }

    /// Answers `Timeout` to the proposals and reads whose deadline is at or
    /// before `now`.
    pub(crate) fn expire(&mut self, now: T, sink: &mut impl Completions<D, R>) {
        let late: Vec<ReadId> = self
            .reads
            .iter()
            .filter(|(_, (_, deadline))| *deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in late {
            if let Some((done, _)) = self.reads.remove(&id) {
                sink.read_done(done, Err(ProposeError::Timeout));
            }
        }
        if self.pending.iter().all(|p| p.deadline > now) {
            return;
        }
        let (keep, late): (VecDeque<_>, VecDeque<_>) =
            self.pending.drain(..).partition(|p| p.deadline > now);
        self.pending = keep;
        for p in late {
            sink.proposal_done(p.done, Err(ProposeError::Timeout));
        }
    }

    /// Answers `Closed` to everything waiting (the node stops).
    pub(crate) fn close(&mut self, sink: &mut impl Completions<D, R>) {
        for p in self.pending.drain(..) {
            sink.proposal_done(p.done, Err(ProposeError::Closed));
        }
        for (_, (done, _)) in std::mem::take(&mut self.reads) {
            sink.read_done(done, Err(ProposeError::Closed));
        }
    }
}
