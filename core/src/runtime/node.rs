//! The public handle of a running node.

use super::apply::{self, ApplyMsg};
use super::config::NodeConfig;
use super::driver::{Driver, Input};
use super::status::{SharedStatus, Status};
use super::{ProposeCallback, ReadCallback, StateChangeCallback, StateMachine, Transport};
use crate::consensus::{Protocol, Recovered};
use crate::error::{ConfigError, ProposeError};
use crate::storage::{Storage, StorageError};
use crate::types::{Index, NodeId};
use crate::wire::{Endpoint, WireError};
use bytes::Bytes;
use crossbeam_channel::{bounded, unbounded, Sender, TrySendError};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
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
    pub status: SharedStatus,
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
}

impl<P: Protocol> Inbox for Shared<P> {
    fn deliver(&self, from: NodeId, bytes: &[u8]) -> Result<(), ReceiveError> {
        self.receive(from, bytes)
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
        let hard_state = match storage.hard_state()? {
            Some(bytes) => Some(
                postcard::from_bytes::<P::HardState>(&bytes)
                    .map_err(|e| StorageError::Corrupt(format!("hard state: {e}")))?,
            ),
            None => None,
        };
        let recovered = Recovered {
            hard_state,
            entries: storage.entries()?,
        };
        let seed = config.seed.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
                ^ config.id
        });
        let core = P::new(
            config.id,
            &config.voters,
            config.protocol.clone(),
            recovered,
            seed,
        )?;
        let (input_tx, input_rx) = bounded(config.queue_capacity);
        let (apply_tx, apply_rx) = unbounded::<ApplyMsg>();
        let shared = Arc::new(Shared {
            id: config.id,
            endpoint: Endpoint {
                protocol: P::KIND,
                cluster: config.cluster_id,
                id: config.id,
                peers: config.voters.clone(),
            },
            input: input_tx,
            status: SharedStatus::default(),
            closed: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
        });
        let mut handles = Vec::new();
        let apply_shared = Arc::clone(&shared);
        let apply_handle = std::thread::Builder::new()
            .name(format!("consenso-apply-{}", config.id))
            .spawn(move || {
                apply::run(
                    apply_rx,
                    machine,
                    &apply_shared.status,
                    &apply_shared.closed,
                )
            })
            .map_err(StartError::Spawn)?;
        shared.threads.lock().push(apply_handle.thread().id());
        handles.push(apply_handle);
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
    /// threads are joined. Idempotent. Called from one of this node's own
    /// callbacks, it stops the node without joining (that would deadlock).
    pub fn shutdown(&self) {
        self.shared.closed.store(true, Ordering::Release);
        let _ = self.shared.input.send(Input::Shutdown);
        let me = std::thread::current().id();
        if self.shared.threads.lock().contains(&me) {
            return;
        }
        let handles: Vec<_> = self.handles.lock().drain(..).collect();
        for h in handles {
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
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Hands bytes the host received from peer `from` to the node. Thread-safe;
    /// decoding happens on the caller's thread.
    ///
    /// # Errors
    /// [`ReceiveError`]: rejected bytes, a full queue, or a closed node. Each
    /// is counted in [`Node::status`].
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
        if self.is_closed() {
            self.shared.fail_proposal(done, ProposeError::Closed);
            return;
        }
        match self
            .shared
            .input
            .try_send(Input::Propose(data.into(), done))
        {
            Ok(()) => {}
            Err(TrySendError::Full(Input::Propose(_, done))) => {
                self.shared.fail_proposal(done, ProposeError::Busy)
            }
            Err(TrySendError::Disconnected(Input::Propose(_, done))) => {
                self.shared.fail_proposal(done, ProposeError::Closed)
            }
            Err(_) => {}
        }
    }

    /// Proposes a command and blocks until it is applied here (returning the
    /// state machine's response) or `timeout` passes.
    ///
    /// # Errors
    /// `NotLeader` (with the leader hint), `Busy`, `Dropped`, `Timeout` (the
    /// entry may still commit) or `Closed`.
    pub fn propose(
        &self,
        data: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Vec<u8>, ProposeError> {
        let (tx, rx) = bounded(1);
        self.propose_with(
            data,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        match rx.recv_timeout(timeout) {
            Ok(r) => r,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(ProposeError::Timeout),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(ProposeError::Closed),
        }
    }

    /// Starts a linearizable read barrier without blocking; `done` gets the
    /// read index once a quorum confirmed this node still leads and the state
    /// machine applied through it (or an error). Called exactly once.
    pub fn read_barrier_with(&self, done: ReadCallback) {
        if self.is_closed() {
            apply::call_guarded(|| done(Err(ProposeError::Closed)));
            return;
        }
        match self.shared.input.try_send(Input::Read(done)) {
            Ok(()) => {}
            Err(TrySendError::Full(Input::Read(done))) => {
                apply::call_guarded(|| done(Err(ProposeError::Busy)))
            }
            Err(TrySendError::Disconnected(Input::Read(done))) => {
                apply::call_guarded(|| done(Err(ProposeError::Closed)))
            }
            Err(_) => {}
        }
    }

    /// Blocks until a linearizable read may be served from this node's state
    /// machine: a quorum confirmed this node still leads, and everything
    /// committed when the read started has been applied. Returns that index.
    ///
    /// # Errors
    /// `NotLeader`, `Busy`, `Timeout` or `Closed`.
    pub fn read_barrier(&self, timeout: Duration) -> Result<Index, ProposeError> {
        let (tx, rx) = bounded(1);
        self.read_barrier_with(Box::new(move |r| {
            let _ = tx.send(r);
        }));
        match rx.recv_timeout(timeout) {
            Ok(r) => r,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(ProposeError::Timeout),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(ProposeError::Closed),
        }
    }

    /// A snapshot of role, term, leader, indexes and counters. Lock-free.
    pub fn status(&self) -> Status {
        self.shared.status.snapshot(self.shared.id)
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

impl<P: Protocol> Drop for Node<P> {
    fn drop(&mut self) {
        self.shutdown();
    }
}
