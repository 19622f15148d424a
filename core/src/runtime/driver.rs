//! The driver thread: owns the protocol core and the storage, batches inputs,
//! persists once per batch (group commit), then sends and hands committed
//! entries to the apply thread.

use super::apply::{call_guarded, ApplyMsg};
use super::config::NodeConfig;
use super::node::Shared;
use super::{ProposeCallback, ReadCallback, StateChangeCallback, Transport};
use crate::consensus::{Effects, Protocol, ReadId};
use crate::error::ProposeError;
use crate::storage::{Storage, StorageError};
use crate::types::{Epoch, Index, NodeId, Role};
use crate::wire;
use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What reaches the driver thread.
pub(crate) enum Input<M> {
    Messages(NodeId, Vec<M>),
    Propose(Bytes, ProposeCallback),
    /// A read barrier and when it was asked for (its deadline counts from
    /// then).
    Read(ReadCallback, Instant),
    Shutdown,
}

/// A proposal waiting for its entry, known by its identity `(origin,
/// index)` (see [`crate::types::Entry`]), not by the epoch its slot ends up
/// committed in.
struct PendingProposal {
    epoch: Epoch,
    index: Index,
    deadline: Instant,
    done: ProposeCallback,
}

pub(crate) struct Driver<P: Protocol, S, T> {
    core: P,
    storage: S,
    transport: T,
    shared: Arc<Shared<P>>,
    input: Receiver<Input<P::Message>>,
    apply: Sender<ApplyMsg>,
    fx: Effects<P::Message, P::HardState>,
    /// Sorted by (index, epoch).
    pending: VecDeque<PendingProposal>,
    /// Read barriers waiting for their quorum round, with their deadlines.
    reads: HashMap<ReadId, (ReadCallback, Instant)>,
    next_read: ReadId,
    peers: Vec<NodeId>,
    outbox: Vec<Vec<P::Message>>,
    tick: Duration,
    max_batch: usize,
    proposal_timeout: Duration,
    on_state_change: Option<StateChangeCallback>,
}

enum Flow {
    Continue,
    Stop,
}

impl<P: Protocol, S: Storage, T: Transport> Driver<P, S, T> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        core: P,
        storage: S,
        transport: T,
        shared: Arc<Shared<P>>,
        input: Receiver<Input<P::Message>>,
        apply: Sender<ApplyMsg>,
        config: &NodeConfig<P::Config>,
        on_state_change: Option<StateChangeCallback>,
    ) -> Self {
        let peers = config.voters.clone();
        let outbox = peers.iter().map(|_| Vec::new()).collect();
        Driver {
            core,
            storage,
            transport,
            shared,
            input,
            apply,
            fx: Effects::default(),
            pending: VecDeque::new(),
            reads: HashMap::new(),
            next_read: 1,
            peers,
            outbox,
            tick: config.tick_interval,
            max_batch: config.max_batch,
            proposal_timeout: config.proposal_timeout,
            on_state_change,
        }
    }

    pub fn run(mut self) {
        let mut next_tick = Instant::now() + self.tick;
        let mut next_sweep = Instant::now() + Duration::from_secs(1);
        // Recovered committed entries are applied before anything else.
        self.core.flush(&mut self.fx);
        let mut running = self.carry_out().is_ok();
        while running {
            let first = match self.input.recv_deadline(next_tick) {
                Ok(input) => Some(input),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if let Some(input) = first {
                let deadline = Instant::now() + self.proposal_timeout;
                if let Flow::Stop = self.handle(input, deadline) {
                    break;
                }
                let mut stop = false;
                for _ in 1..self.max_batch {
                    match self.input.try_recv() {
                        Ok(input) => {
                            if let Flow::Stop = self.handle(input, deadline) {
                                stop = true;
                                break;
                            }
                        }
                        Err(_) => break,
                    }
                }
                if stop {
                    break;
                }
            }
            let now = Instant::now();
            if now >= next_tick {
                self.core.tick(&mut self.fx);
                next_tick += self.tick;
                if next_tick < now {
                    // Fell far behind (a stalled host): do not burst ticks.
                    next_tick = now + self.tick;
                }
            }
            if now >= next_sweep {
                next_sweep = now + Duration::from_secs(1);
                self.expire_proposals(now);
            }
            self.core.flush(&mut self.fx);
            // Closed by shutdown (whose message may not have found room in
            // a full queue) or by a failed state machine: stop.
            running = self.carry_out().is_ok() && !self.shared.is_closed();
        }
        self.close();
    }

    /// Handles one input; a proposal gives up at `deadline`.
    fn handle(&mut self, input: Input<P::Message>, deadline: Instant) -> Flow {
        match input {
            Input::Messages(from, msgs) => {
                for m in msgs {
                    self.core.step(from, m, &mut self.fx);
                }
            }
            Input::Propose(data, done) => match self.core.propose(data, &mut self.fx) {
                Ok((epoch, index)) => {
                    let p = PendingProposal {
                        epoch,
                        index,
                        deadline,
                        done,
                    };
                    let at_back = self
                        .pending
                        .back()
                        .is_none_or(|b| (b.index, b.epoch) <= (index, epoch));
                    if at_back {
                        self.pending.push_back(p);
                    } else {
                        let at = self
                            .pending
                            .partition_point(|q| (q.index, q.epoch) <= (index, epoch));
                        self.pending.insert(at, p);
                    }
                }
                Err(e) => self.shared.fail_proposal(done, e),
            },
            Input::Read(done, asked) => {
                let id = self.next_read;
                self.next_read += 1;
                match self.core.read(id, &mut self.fx) {
                    Ok(()) => {
                        let deadline = asked + self.proposal_timeout;
                        self.reads.insert(id, (done, deadline));
                    }
                    Err(e) => call_guarded(|| done(Err(e))),
                }
            }
            Input::Shutdown => return Flow::Stop,
        }
        Flow::Continue
    }

    /// Fails with `Timeout` the proposals and read barriers whose deadline
    /// passed.
    fn expire_proposals(&mut self, now: Instant) {
        let late: Vec<ReadId> = self
            .reads
            .iter()
            .filter(|(_, (_, deadline))| *deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in late {
            if let Some((done, _)) = self.reads.remove(&id) {
                call_guarded(|| done(Err(ProposeError::Timeout)));
            }
        }
        if self.pending.iter().all(|p| p.deadline > now) {
            return;
        }
        let mut keep = VecDeque::with_capacity(self.pending.len());
        let mut expired = Vec::new();
        for p in self.pending.drain(..) {
            if p.deadline > now {
                keep.push_back(p);
            } else {
                expired.push(p);
            }
        }
        self.pending = keep;
        for p in expired {
            self.shared.fail_proposal(p.done, ProposeError::Timeout);
        }
    }

    fn persist(&mut self) -> Result<(), StorageError> {
        let mut wrote = false;
        if let Some(hs) = self.fx.hard_state.take() {
            let bytes = postcard::to_allocvec(&hs)
                .map_err(|e| StorageError::Corrupt(format!("hard state: {e}")))?;
            self.storage.set_hard_state(&bytes)?;
            wrote = true;
        }
        if let Some(index) = self.fx.truncate_from.take() {
            self.storage.truncate_from(index)?;
            wrote = true;
        }
        if !self.fx.append.is_empty() {
            self.storage.append(&self.fx.append)?;
            self.fx.append.clear();
            wrote = true;
        }
        if wrote {
            self.storage.sync()?;
        }
        Ok(())
    }

    fn send_all(&mut self) {
        if self.fx.messages.is_empty() {
            return;
        }
        for (to, msg) in self.fx.messages.drain(..) {
            if let Some(p) = self.peers.iter().position(|&v| v == to) {
                self.outbox[p].push(msg);
            }
        }
        for (p, batch) in self.outbox.iter_mut().enumerate() {
            if batch.is_empty() {
                continue;
            }
            let to = self.peers[p];
            let header = self.shared.endpoint.header_to(to);
            match wire::encode(&header, batch, Vec::new()) {
                Ok(bytes) => {
                    let transport = &self.transport;
                    if catch_unwind(AssertUnwindSafe(|| transport.send(to, bytes))).is_err() {
                        ::log::error!("transport send to {to} panicked; message dropped");
                    }
                    self.shared.status.sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => ::log::error!("could not encode a message to {to}: {e}"),
            }
            batch.clear();
        }
    }

    /// Carries out the effects: persist, send, report, apply, serve reads.
    fn carry_out(&mut self) -> Result<(), ()> {
        if let Err(e) = self.persist() {
            ::log::error!("node {}: storage failed, stopping: {e}", self.shared.id);
            self.shared
                .status
                .storage_errors
                .fetch_add(1, Ordering::Relaxed);
            return Err(());
        }
        self.send_all();
        let status = &self.shared.status;
        status
            .commit
            .store(self.core.commit_index(), Ordering::Relaxed);
        status
            .last_index
            .store(self.core.last_index(), Ordering::Relaxed);
        if let Some(change) = self.fx.role_change.take() {
            status.set_role(change.role, change.epoch, change.leader);
            ::log::info!(
                "node {}: {} ({}) in {}, leader {:?}",
                self.shared.id,
                P::KIND.role_name(change.role),
                P::KIND.name(),
                P::KIND.epoch_label(change.epoch),
                change.leader
            );
            if let Some(cb) = &self.on_state_change {
                if catch_unwind(AssertUnwindSafe(|| cb(change))).is_err() {
                    ::log::error!("on_state_change callback panicked");
                }
            }
        }
        debug_assert!(
            self.core.commit_index() <= self.core.last_index(),
            "commit {} beyond the last index {}",
            self.core.commit_index(),
            self.core.last_index()
        );
        if !self.fx.committed.is_empty() {
            let entries = std::mem::take(&mut self.fx.committed);
            debug_assert!(
                entries.windows(2).all(|w| w[1].index == w[0].index + 1)
                    && entries
                        .last()
                        .is_some_and(|e| e.index <= self.core.commit_index()),
                "committed entries must be consecutive and not past the commit index"
            );
            let mut completions = Vec::new();
            for (pos, e) in entries.iter().enumerate() {
                while let Some(front) = self.pending.front() {
                    if front.index > e.index {
                        break;
                    }
                    let Some(p) = self.pending.pop_front() else {
                        break;
                    };
                    if p.index == e.index && p.epoch == e.origin {
                        completions.push((pos, p.done));
                    } else {
                        self.shared.fail_proposal(p.done, ProposeError::Dropped);
                    }
                }
            }
            if let Err(e) = self.apply.send(ApplyMsg::Entries {
                entries,
                completions,
            }) {
                if let ApplyMsg::Entries { completions, .. } = e.0 {
                    for (_, done) in completions {
                        self.shared.fail_proposal(done, ProposeError::Closed);
                    }
                }
                return Err(());
            }
        }
        for r in std::mem::take(&mut self.fx.reads_ready) {
            if let Some((done, _)) = self.reads.remove(&r.id) {
                if let Err(e) = self.apply.send(ApplyMsg::Read {
                    index: r.index,
                    done,
                }) {
                    if let ApplyMsg::Read { done, .. } = e.0 {
                        call_guarded(|| done(Err(ProposeError::Closed)));
                    }
                    return Err(());
                }
            }
        }
        for r in std::mem::take(&mut self.fx.reads_failed) {
            if let Some((done, _)) = self.reads.remove(&r.id) {
                let leader = self.core.leader();
                call_guarded(|| done(Err(ProposeError::NotLeader { leader })));
            }
        }
        self.fx.clear();
        Ok(())
    }

    fn close(mut self) {
        // Closed before the last drain: whoever queues after the drain sees
        // the node closed and fails its own input (`Shared::enqueue`).
        self.shared.close();
        for p in self.pending.drain(..) {
            self.shared.fail_proposal(p.done, ProposeError::Closed);
        }
        for (_, (done, _)) in self.reads.drain() {
            call_guarded(|| done(Err(ProposeError::Closed)));
        }
        while let Ok(input) = self.input.try_recv() {
            self.shared.fail_input(input);
        }
        self.shared
            .status
            .set_role(Role::Follower, self.core.epoch(), None);
    }
}
