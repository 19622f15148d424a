//! The public handle of a running node.

use super::apply;
use super::config::NodeConfig;
use super::driver::{Driver, Input, RuntimeApply};
use super::status::{SharedStatus, Status};
use super::{ProposeCallback, ReadCallback, StateChangeCallback, StateMachine, Transport};
use crate::consensus::{Protocol, Recovered};
use crate::error::{ConfigError, ProposeError};
use crate::storage::{FileStorage, MemStorage, Storage, StorageError};
use crate::types::{Index, NodeId};
use crate::wire::{Endpoint, WireError};
use bytes::Bytes;
use crossbeam_channel::{bounded, unbounded, Receiver, Sender, TrySendError};
use parking_lot::Mutex;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use thiserror::Error;

/// Why a node did not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// A setting was rejected.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The storage could not be read, or what it held did not decode.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A thread could not be spawned.
    #[error("could not spawn a node thread: {0}")]
    Spawn(std::io::Error),
    /// The state machine refused (or panicked on) the snapshot the
    /// storage holds.
    #[error("{0}")]
    Restore(String),
}

/// Why received bytes were not taken.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReceiveError {
    /// The bytes were rejected (and counted in `messages_rejected`).
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The input queue is full; the envelope was dropped (and counted).
    #[error("input queue full; message dropped")]
    Overloaded,
    /// The node is shut down.
    #[error("the node is closed")]
    Closed,
}

pub(crate) struct Shared<P: Protocol> {
    pub id: NodeId,
    pub endpoint: Endpoint,
    pub input: Sender<Input<P::Message>>,
    /// A second receiver of `input`, for inputs that arrive after the
    /// driver stopped: whoever queued one drains the queue (see
    /// [`Shared::enqueue`]), so every callback is called exactly once.
    pub leftover: Receiver<Input<P::Message>>,
    pub status: SharedStatus,
    /// Set once by shutdown, a storage failure or a state machine failure;
    /// the driver stops at the end of its current batch.
    pub closed: AtomicBool,
    pub threads: Mutex<Vec<ThreadId>>,
}

/// Takes envelopes received from peers. Thread-safe.
pub trait Inbox: Send + Sync {
    /// Decodes and queues an envelope received from `from`.
    ///
    /// # Errors
    /// [`ReceiveError`], counted in the node's status.
    fn deliver(&self, from: NodeId, bytes: &[u8]) -> Result<(), ReceiveError>;

    /// True once the node behind it is shut down (it takes nothing more).
    fn is_closed(&self) -> bool {
        false
    }
}

impl<P: Protocol> Inbox for Shared<P> {
    fn deliver(&self, from: NodeId, bytes: &[u8]) -> Result<(), ReceiveError> {
        self.receive(from, bytes)
    }

    fn is_closed(&self) -> bool {
        Shared::is_closed(self)
    }
}

impl<P: Protocol> Shared<P> {
    fn receive(&self, from: NodeId, bytes: &[u8]) -> Result<(), ReceiveError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ReceiveError::Closed);
        }
        let msgs = self.endpoint.open::<P::Message>(from, bytes).map_err(|e| {
            self.status.rejected.fetch_add(1, Ordering::Relaxed);
            ReceiveError::Wire(e)
        })?;
        match self.input.try_send(Input::Messages(from, msgs)) {
            Ok(()) => {
                self.status.received.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(TrySendError::Full(_)) => {
                self.status.dropped.fetch_add(1, Ordering::Relaxed);
                Err(ReceiveError::Overloaded)
            }
            Err(TrySendError::Disconnected(_)) => Err(ReceiveError::Closed),
        }
    }

    pub fn fail_proposal(&self, cb: ProposeCallback, err: ProposeError) {
        self.status.proposals_failed.fetch_add(1, Ordering::Relaxed);
        apply::call_guarded(|| cb(Err(err)));
    }

    /// True once the node is closed. SeqCst, and paired with the fence in
    /// [`Shared::close`]: a caller that queued an input and then reads
    /// `false` knows the driver had not yet drained its queue for the last
    /// time, so the driver will see the input.
    pub fn is_closed(&self) -> bool {
        fence(Ordering::SeqCst);
        self.closed.load(Ordering::SeqCst)
    }

    /// Marks the node closed (the driver stops at the end of its batch).
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Fails an input that will never be handled: its callback gets
    /// `Closed`.
    pub fn fail_input(&self, input: Input<P::Message>) {
        match input {
            Input::Propose(_, done) => self.fail_proposal(done, ProposeError::Closed),
            Input::Read(done, _) => apply::call_guarded(|| done(Err(ProposeError::Closed))),
            Input::Messages(..) | Input::Compact(_) | Input::Shutdown => {}
        }
    }

    /// Queues a proposal or read for the driver, or fails it right away:
    /// `Busy` when the queue is full, `Closed` when the node is. An input
    /// queued while the node was closing is failed by this call when the
    /// driver can no longer see it, so its callback runs exactly once.
    pub fn enqueue(&self, input: Input<P::Message>) {
        if self.is_closed() {
            self.fail_input(input);
            return;
        }
        self.enqueue_unchecked(input);
    }

    /// [`Shared::enqueue`] without the first check: what a caller that
    /// checked just before the node closed does.
    pub(crate) fn enqueue_unchecked(&self, input: Input<P::Message>) {
        match self.input.try_send(input) {
            Ok(()) => {
                if self.is_closed() {
                    // The driver may have drained for the last time before
                    // this input arrived: drain what is left here.
                    while let Ok(late) = self.leftover.try_recv() {
                        self.fail_input(late);
                    }
                }
            }
            Err(TrySendError::Full(Input::Propose(_, done))) => {
                self.fail_proposal(done, ProposeError::Busy)
            }
            Err(TrySendError::Full(Input::Read(done, _))) => {
                apply::call_guarded(|| done(Err(ProposeError::Busy)))
            }
            Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Disconnected(input)) => self.fail_input(input),
        }
    }
}

/// A running node: a protocol core on its own driver thread plus an apply
/// thread. It owns the threads: dropping it (or [`Node::shutdown`]) stops
/// them. Everything else is on [`NodeHandle`], which `Node` dereferences to.
pub struct Node<P: Protocol> {
    handle: NodeHandle<P>,
    handles: Mutex<Vec<JoinHandle<()>>>,
}

/// A cheap, cloneable handle to a running node: propose, read, receive and
/// status. All methods take `&self` and are safe to call from any thread,
/// including from the node's own callbacks. It does not keep the node
/// running: after the [`Node`] is shut down every call fails with `Closed`.
pub struct NodeHandle<P: Protocol> {
    shared: Arc<Shared<P>>,
}

impl<P: Protocol> Clone for NodeHandle<P> {
    fn clone(&self) -> Self {
        NodeHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<P: Protocol> std::fmt::Debug for Node<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("id", &self.shared.id).finish()
    }
}

impl<P: Protocol> std::fmt::Debug for NodeHandle<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHandle")
            .field("id", &self.shared.id)
            .finish()
    }
}

impl<P: Protocol> std::ops::Deref for Node<P> {
    type Target = NodeHandle<P>;
    fn deref(&self) -> &NodeHandle<P> {
        &self.handle
    }
}

impl<P: Protocol> Node<P> {
    /// Starts a node from what `storage` holds, sending through `transport`
    /// and applying to `machine`.
    ///
    /// # Errors
    /// [`StartError`] for a bad config, unreadable storage or a failed spawn.
    pub fn start<S, T, M>(
        config: NodeConfig<P::Config>,
        storage: S,
        transport: T,
        machine: M,
    ) -> Result<Self, StartError>
    where
        S: Storage,
        T: Transport,
        M: StateMachine,
    {
        Self::start_observed(config, storage, transport, machine, None)
    }

    /// Starts a node on the storage its config names: a
    /// [`FileStorage`] in `config.data_dir` (opened with `config.storage`,
    /// locked, and recovered: the node resumes where it stopped), or a
    /// [`MemStorage`] when there is none.
    ///
    /// # Errors
    /// [`StartError`] for a bad config, a data directory that cannot be
    /// used (not a consenso directory, a newer format, in use by another
    /// node, damaged), or a failed spawn.
    pub fn open<T, M>(
        config: NodeConfig<P::Config>,
        transport: T,
        machine: M,
    ) -> Result<Self, StartError>
    where
        T: Transport,
        M: StateMachine,
    {
        Self::open_observed(config, transport, machine, None)
    }

    /// Like [`Node::open`], calling `on_state_change` (from the driver
    /// thread) whenever the role, term or known leader changes.
    ///
    /// # Errors
    /// As [`Node::open`].
    pub fn open_observed<T, M>(
        config: NodeConfig<P::Config>,
        transport: T,
        machine: M,
        on_state_change: Option<StateChangeCallback>,
    ) -> Result<Self, StartError>
    where
        T: Transport,
        M: StateMachine,
    {
        config.validate()?;
        match &config.data_dir {
            Some(dir) => {
                let storage = FileStorage::open_with(dir, config.storage)?;
                Self::start_observed(config, storage, transport, machine, on_state_change)
            }
            None => Self::start_observed(
                config,
                MemStorage::new(),
                transport,
                machine,
                on_state_change,
            ),
        }
    }

    /// Starts the apply thread of the node `shared` describes. The
    /// snapshots it takes go to the driver through the input queue (when
    /// it is full, the next applied batch tries again).
    fn spawn_applier<M: StateMachine>(
        shared: &Arc<Shared<P>>,
        rx: crossbeam_channel::Receiver<RuntimeApply>,
        applier: apply::Applier<M, crate::runtime::ReadCallback>,
    ) -> Result<JoinHandle<()>, StartError> {
        let apply_shared = Arc::clone(shared);
        let handle = std::thread::Builder::new()
            .name(format!("consenso-apply-{}", shared.id))
            .spawn(move || {
                let s = &apply_shared;
                let snapshotted = |snap| s.input.try_send(Input::Compact(snap)).is_ok();
                apply::run(rx, applier, &s.status, &s.closed, snapshotted)
            })
            .map_err(StartError::Spawn)?;
        shared.threads.lock().push(handle.thread().id());
        Ok(handle)
    }

    /// What `storage` holds: the hard state (decoded) and the log.
    fn recover<S: Storage>(storage: &S) -> Result<Recovered<P::HardState>, StartError> {
        let hard_state = match storage.hard_state()? {
            Some(bytes) => Some(
                postcard::from_bytes::<P::HardState>(&bytes)
                    .map_err(|e| StorageError::Corrupt(format!("hard state: {e}")))?,
            ),
            None => None,
        };
        Ok(Recovered {
            hard_state,
            snapshot: storage.snapshot()?,
            entries: storage.entries()?,
        })
    }

    /// Like [`Node::start`], calling `on_state_change` (from the driver
    /// thread) whenever the role, term or known leader changes.
    ///
    /// # Errors
    /// [`StartError`] for a bad config, unreadable storage or a failed spawn.
    pub fn start_observed<S, T, M>(
        config: NodeConfig<P::Config>,
        storage: S,
        transport: T,
        machine: M,
        on_state_change: Option<StateChangeCallback>,
    ) -> Result<Self, StartError>
    where
        S: Storage,
        T: Transport,
        M: StateMachine,
    {
        config.validate()?;
        let seed = config.seed.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
                ^ config.id
        });
        let recovered = Self::recover(&storage)?;
        let applier = apply::Applier::new(machine, recovered.snapshot.as_ref(), config.snapshot)
            .map_err(StartError::Restore)?;
        let core = P::new(
            config.id,
            &config.voters,
            config.protocol.clone(),
            recovered,
            seed,
        )?;
        let (input_tx, input_rx) = bounded(config.queue_capacity);
        let (apply_tx, apply_rx) = unbounded::<RuntimeApply>();
        let shared = Arc::new(Shared {
            id: config.id,
            endpoint: Endpoint {
                protocol: P::KIND,
                cluster: config.cluster_id,
                id: config.id,
                peers: config.voters.clone(),
            },
            input: input_tx,
            leftover: input_rx.clone(),
            status: SharedStatus::default(),
            closed: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
        });
        shared
            .status
            .storage_torn_bytes
            .store(storage.torn_bytes(), Ordering::Relaxed);
        shared
            .status
            .snapshot_index
            .store(core.snapshot_index(), Ordering::Relaxed);
        // Restored from its snapshot, the machine has applied through it.
        shared
            .status
            .applied
            .store(applier.applied(), Ordering::Release);
        let mut handles = vec![Self::spawn_applier(&shared, apply_rx, applier)?];
        let driver = Driver::new(
            core,
            storage,
            transport,
            Arc::clone(&shared),
            input_rx,
            apply_tx,
            &config,
            on_state_change,
        );
        let driver_handle = std::thread::Builder::new()
            .name(format!("consenso-driver-{}", config.id))
            .spawn(move || driver.run());
        let driver_handle = match driver_handle {
            Ok(h) => h,
            Err(e) => {
                // The apply thread ends when its channel closes (the driver
                // was dropped with it).
                for h in handles {
                    let _ = h.join();
                }
                return Err(StartError::Spawn(e));
            }
        };
        shared.threads.lock().push(driver_handle.thread().id());
        handles.push(driver_handle);
        Ok(Node {
            handle: NodeHandle { shared },
            handles: Mutex::new(handles),
        })
    }

    /// A cloneable handle for proposing, reading and receiving from other
    /// threads or callbacks.
    pub fn handle(&self) -> NodeHandle<P> {
        self.handle.clone()
    }

    /// Stops the node: pending proposals and reads fail with `Closed`,
    /// entries already handed to the apply thread are applied, and both
    /// threads are joined. Idempotent; never blocks on a full input queue
    /// (the driver also stops on seeing the node closed, within a tick).
    /// Called from one of this node's own callbacks, it stops the node
    /// without joining (that would deadlock). Called from two threads at
    /// once, both return once the threads are joined.
    pub fn shutdown(&self) {
        self.shared.close();
        // Wakes the driver if there is room; if not, it is busy and sees
        // the node closed at the end of its batch.
        let _ = self.shared.input.try_send(Input::Shutdown);
        let me = std::thread::current().id();
        if self.shared.threads.lock().contains(&me) {
            return;
        }
        // Joined under the lock: a second shutdown from another thread
        // returns only once the threads are gone too.
        let mut handles = self.handles.lock();
        for h in handles.drain(..) {
            if h.join().is_err() {
                ::log::error!("node {}: a node thread panicked", self.shared.id);
            }
        }
    }
}

impl<P: Protocol> NodeHandle<P> {
    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.shared.id
    }

    /// True once [`Node::shutdown`] ran or the node stopped on an error.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Hands bytes the host received from peer `from` to the node. Thread-safe;
    /// decoding happens on the caller's thread.
    ///
    /// # Errors
    /// [`ReceiveError`]: rejected bytes, a full queue, or a closed node. Each
    /// is counted in [`NodeHandle::status`].
    pub fn receive(&self, from: NodeId, bytes: &[u8]) -> Result<(), ReceiveError> {
        self.shared.receive(from, bytes)
    }

    /// A handle that delivers envelopes to this node (for in-process
    /// transports such as [`crate::local::LocalNetwork`]). It stays valid after
    /// shutdown and then rejects everything with [`ReceiveError::Closed`].
    pub fn inbox(&self) -> Arc<dyn Inbox> {
        Arc::clone(&self.shared) as Arc<dyn Inbox>
    }

    /// Proposes a command without blocking. `done` is called exactly once:
    /// with the state machine's response once the entry is applied here, or
    /// with an error ([`ProposeError`]); from a node thread, or right away on
    /// the caller's thread when the proposal cannot be queued.
    pub fn propose_with(&self, data: impl Into<Bytes>, done: ProposeCallback) {
        self.shared.enqueue(Input::Propose(data.into(), done));
    }

    /// Proposes a command and blocks until it is applied here (returning the
    /// state machine's response) or `timeout` passes.
    ///
    /// # Errors
    /// `NotLeader` (with the leader hint), `Busy`, `Dropped`, `Timeout` (the
    /// entry may still commit), `Closed`, or `WouldBlock` when called from
    /// one of the node's own threads (a callback: use `propose_with`).
    pub fn propose(
        &self,
        data: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Vec<u8>, ProposeError> {
        wait_for(timeout, self.is_node_thread(), |done| {
            self.propose_with(data, done)
        })
    }

    /// Starts a linearizable read barrier without blocking; `done` gets the
    /// read index once a quorum confirmed this node still leads and the state
    /// machine applied through it (or an error: `Timeout` once the node's
    /// `proposal_timeout` passes without a quorum). Called exactly once.
    pub fn read_barrier_with(&self, done: ReadCallback) {
        self.shared.enqueue(Input::Read(done, Instant::now()));
    }

    /// Blocks until a linearizable read may be served from this node's state
    /// machine: a quorum confirmed this node still leads, and everything
    /// committed when the read started has been applied. Returns that index.
    ///
    /// # Errors
    /// `NotLeader`, `Busy`, `Timeout`, `Closed`, or `WouldBlock` from one of
    /// the node's own threads (a callback).
    pub fn read_barrier(&self, timeout: Duration) -> Result<Index, ProposeError> {
        wait_for(timeout, self.is_node_thread(), |done| {
            self.read_barrier_with(done)
        })
    }

    /// A snapshot of role, term, leader, indexes and counters. Lock-free.
    pub fn status(&self) -> Status {
        self.shared.status.snapshot(self.shared.id, P::KIND)
    }

    /// True when the calling thread is one of this node's threads (where
    /// [`Node::shutdown`] does not join).
    pub fn is_node_thread(&self) -> bool {
        self.shared
            .threads
            .lock()
            .contains(&std::thread::current().id())
    }
}

/// Starts an operation with `start` and blocks up to `timeout` (any length:
/// one too long to reach a deadline waits without one) for the answer its
/// callback gets. `Timeout` when none came, `Closed` when the callback was
/// dropped unanswered, `WouldBlock` (nothing started) when called on one of
/// the node's own threads (`on_node_thread`), which would wait on itself.
pub(crate) fn wait_for<T: Send + 'static>(
    timeout: Duration,
    on_node_thread: bool,
    start: impl FnOnce(Box<dyn FnOnce(Result<T, ProposeError>) + Send>),
) -> Result<T, ProposeError> {
    if on_node_thread {
        return Err(ProposeError::WouldBlock);
    }
    let (tx, rx) = bounded(1);
    start(Box::new(move |r| {
        let _ = tx.send(r);
    }));
    match rx.recv_timeout(timeout) {
        Ok(r) => r,
        Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(ProposeError::Timeout),
        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(ProposeError::Closed),
    }
}

impl<P: Protocol> Drop for Node<P> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::raft::{Raft, RaftConfig};
    use crate::runtime::CounterMachine;
    use crate::storage::MemStorage;
    use std::sync::atomic::AtomicU64;

    /// What a caller does that checked `closed` just before the node closed
    /// and queues afterwards: its callback still runs, once, with `Closed`.
    #[test]
    fn an_input_queued_as_the_node_closes_still_gets_its_callback() {
        let node = Node::<Raft>::start(
            NodeConfig::<RaftConfig>::new(1, vec![1]),
            MemStorage::new(),
            |_: u64, _: Vec<u8>| {},
            CounterMachine::default(),
        )
        .unwrap();
        node.shutdown();
        let calls = Arc::new(AtomicU64::new(0));
        let (c1, c2) = (Arc::clone(&calls), Arc::clone(&calls));
        node.shared.enqueue_unchecked(Input::Propose(
            Bytes::from_static(b"late"),
            Box::new(move |r| {
                assert_eq!(r, Err(ProposeError::Closed));
                c1.fetch_add(1, Ordering::SeqCst);
            }),
        ));
        node.shared.enqueue_unchecked(Input::Read(
            Box::new(move |r| {
                assert_eq!(r, Err(ProposeError::Closed));
                c2.fetch_add(1, Ordering::SeqCst);
            }),
            Instant::now(),
        ));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // And through the public calls, after close: at once, once each.
        let c3 = Arc::clone(&calls);
        node.propose_with(
            b"after".to_vec(),
            Box::new(move |_| {
                c3.fetch_add(1, Ordering::SeqCst);
            }),
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
