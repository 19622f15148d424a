//! The driver thread: owns the protocol core and the storage, batches inputs,
//! persists once per batch (group commit), then sends and hands committed
//! entries to the apply thread.

use super::apply::{call_guarded, ApplyMsg, Completions};
use super::config::NodeConfig;
use super::executor::{Executor, Host, Stopped};
use super::node::Shared;
use super::{ProposeCallback, ReadCallback, StateChangeCallback, Transport};
use crate::consensus::{Effects, Protocol, RoleChange};
use crate::error::ProposeError;
use crate::storage::{Storage, StorageError};
use crate::types::{Entry, Index, NodeId, Role};
use crate::wire;
use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
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
    /// The apply thread snapshotted the state machine: save it and compact.
    Compact(crate::consensus::Snapshot),
    Shutdown,
}

/// Work for the apply thread.
pub(crate) type RuntimeApply = ApplyMsg<ProposeCallback, ReadCallback>;

/// What the executor drives in a running node: its storage, the host's
/// transport, the apply thread's queue and the host's callbacks.
struct RuntimeHost<P: Protocol, S, T> {
    storage: S,
    /// Written to since the last sync.
    unsynced: bool,
    transport: T,
    shared: Arc<Shared<P>>,
    apply: Sender<RuntimeApply>,
    peers: Vec<NodeId>,
    /// Messages of this batch by peer position, sent in one envelope each.
    outbox: Vec<Vec<P::Message>>,
    on_state_change: Option<StateChangeCallback>,
}

pub(crate) struct Driver<P: Protocol, S, T> {
    core: P,
    exec: Executor<ProposeCallback, ReadCallback, Instant>,
    host: RuntimeHost<P, S, T>,
    input: Receiver<Input<P::Message>>,
    fx: Effects<P::Message, P::HardState>,
    tick: Duration,
    max_batch: usize,
    proposal_timeout: Duration,
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
        apply: Sender<RuntimeApply>,
        config: &NodeConfig<P::Config>,
        on_state_change: Option<StateChangeCallback>,
    ) -> Self {
        let peers = config.voters.clone();
        let outbox = peers.iter().map(|_| Vec::new()).collect();
        Driver {
            core,
            exec: Executor::new(),
            host: RuntimeHost {
                storage,
                unsynced: false,
                transport,
                shared,
                apply,
                peers,
                outbox,
                on_state_change,
            },
            input,
            fx: Effects::default(),
            tick: config.tick_interval,
            max_batch: config.max_batch,
            proposal_timeout: config.proposal_timeout,
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
                // A timeout too long to reach a deadline has none.
                let deadline = Instant::now()
                    .checked_add(self.proposal_timeout)
                    .unwrap_or_else(far_future);
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
                self.exec.expire(now, &mut self.host);
            }
            self.core.flush(&mut self.fx);
            // Closed by shutdown (whose message may not have found room in
            // a full queue) or by a failed state machine: stop.
            running = self.carry_out().is_ok() && !self.host.shared.is_closed();
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
            Input::Propose(data, done) => {
                let proposed =
                    self.exec
                        .propose(&mut self.core, data, deadline, done, &mut self.fx);
                if let Err((e, done)) = proposed {
                    self.host.shared.fail_proposal(done, e);
                }
            }
            Input::Read(done, asked) => {
                let deadline = asked + self.proposal_timeout;
                let read = self.exec.read(&mut self.core, deadline, done, &mut self.fx);
                if let Err((e, done)) = read {
                    call_guarded(|| done(Err(e)));
                }
            }
            Input::Compact(snapshot) => {
                if self.core.compact(snapshot.clone()) {
                    if let Err(e) = self.host.storage.save_snapshot_in_background(&snapshot) {
                        self.storage_failed(&e);
                        return Flow::Stop;
                    }
                    self.host
                        .shared
                        .status
                        .snapshots
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            Input::Shutdown => return Flow::Stop,
        }
        Flow::Continue
    }

    /// Carries out the batch's effects and publishes the commit point.
    fn carry_out(&mut self) -> Result<(), Stopped> {
        let result = self
            .exec
            .carry_out(&self.core, &mut self.fx, &mut self.host);
        let status = &self.host.shared.status;
        status
            .commit
            .store(self.core.commit_index(), Ordering::Relaxed);
        status
            .last_index
            .store(self.core.last_index(), Ordering::Relaxed);
        status
            .vote
            .store(self.core.vote().unwrap_or(0), Ordering::Relaxed);
        status
            .storage_syncs
            .store(self.host.storage.sync_count(), Ordering::Relaxed);
        status
            .snapshot_index
            .store(self.core.snapshot_index(), Ordering::Relaxed);
        if let Err(Stopped::Storage(e)) = &result {
            self.storage_failed(e);
        }
        result
    }

    /// Records in the status why storage failed (the node stops).
    fn storage_failed(&self, e: &StorageError) {
        let status = &self.host.shared.status;
        ::log::error!(
            "node {}: storage failed, stopping: {e}",
            self.host.shared.id
        );
        status.storage_errors.fetch_add(1, Ordering::Relaxed);
        *status.storage_failure.lock() = Some(e.to_string());
    }

    fn close(mut self) {
        let shared = Arc::clone(&self.host.shared);
        // Closed before the last drain: whoever queues after the drain sees
        // the node closed and fails its own input (`Shared::enqueue`).
        shared.close();
        self.exec.close(&mut self.host);
        while let Ok(input) = self.input.try_recv() {
            shared.fail_input(input);
        }
        shared
            .status
            .set_role(Role::Follower, self.core.epoch(), None);
    }
}

impl<P: Protocol, S, T> Completions<ProposeCallback, ReadCallback> for RuntimeHost<P, S, T> {
    fn proposal_done(&mut self, done: ProposeCallback, result: Result<Vec<u8>, ProposeError>) {
        match result {
            Ok(_) => call_guarded(|| done(result)),
            Err(e) => self.shared.fail_proposal(done, e),
        }
    }

    fn read_done(&mut self, done: ReadCallback, result: Result<Index, ProposeError>) {
        call_guarded(|| done(result));
    }
}

impl<P: Protocol, S: Storage, T: Transport>
    Host<P::Message, P::HardState, ProposeCallback, ReadCallback> for RuntimeHost<P, S, T>
{
    fn save_snapshot(&mut self, snapshot: &crate::consensus::Snapshot) -> Result<(), StorageError> {
        self.storage.save_snapshot(snapshot)?;
        self.shared
            .status
            .snapshots_installed
            .fetch_add(1, Ordering::Relaxed);
        self.unsynced = true;
        Ok(())
    }

    fn write(
        &mut self,
        hard_state: Option<P::HardState>,
        hard_state_must_sync: bool,
        truncate_from: Option<Index>,
        append: &mut Vec<Entry>,
    ) -> Result<(), StorageError> {
        if let Some(hs) = hard_state {
            let bytes = postcard::to_allocvec(&hs)
                .map_err(|e| StorageError::Corrupt(format!("hard state: {e}")))?;
            if hard_state_must_sync {
                self.storage.set_hard_state(&bytes)?;
                self.unsynced = true;
            } else {
                self.storage.set_hard_state_unsynced(&bytes)?;
            }
        }
        if let Some(index) = truncate_from {
            self.storage.truncate_from(index)?;
            self.unsynced = true;
        }
        if !append.is_empty() {
            self.storage.append(append)?;
            append.clear();
            self.unsynced = true;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        if self.unsynced {
            self.storage.sync()?;
            self.unsynced = false;
        }
        Ok(())
    }

    fn send(&mut self, to: NodeId, msg: P::Message) {
        if let Some(p) = self.peers.iter().position(|&v| v == to) {
            self.outbox[p].push(msg);
        }
    }

    fn sends_done(&mut self) {
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

    fn role_changed(&mut self, change: RoleChange) {
        self.shared
            .status
            .set_role(change.role, change.epoch, change.leader);
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

    fn apply(&mut self, msg: RuntimeApply) -> Result<(), RuntimeApply> {
        self.apply.send(msg).map_err(|e| e.0)
    }
}

/// A deadline no operation reaches (about a century away).
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}
