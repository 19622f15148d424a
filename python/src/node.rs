//! `Node`: a consensus node (Raft, Multi-Paxos or ZAB) whose network is the
//! caller's. The node calls `send(to, data)` from its threads and the
//! caller hands what arrives to `receive(sender, data)`; committed commands
//! reach `apply(index, command)` in log order, and `on_state_change(role,
//! term, leader)` follows elections. Members are named by `str` here; the
//! core's `Members` gives their node ids.
//!
//! Every call into the node runs without the GIL, and every callback takes
//! it (`Python::try_attach`: none once the interpreter is shutting down),
//! so a thread holding the GIL never waits on a node thread that waits for
//! the GIL.

use crate::args;
use crate::errors;
use crate::logs;
use crate::network::{LocalNetwork, TcpNetwork};
use consenso::consensus::{ProtocolKind, RoleChange};
use consenso::local::LocalTransport;
use consenso::runtime::{
    AnyNode, AnyNodeConfig, Members, StateChangeCallback, StateMachine, Status, Timeouts, Transport,
};
use consenso::tcp::{TcpNetwork as CoreTcp, TcpTransport};
use consenso::{duration_from_seconds, Index, NodeId, ProposeError};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};
use pyo3::PyTraverseError;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// The first byte of a response: `apply` returned `None`, or bytes (which
/// follow). Responses stay on the node that proposed, so this framing is
/// the adapter's own.
const NONE: u8 = 0;
const SOME: u8 = 1;

/// How long a blocking call waits without the GIL before it checks for
/// signals (so Ctrl-C interrupts a wait).
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// Exceptions the host's callbacks raised, per callback.
#[derive(Default)]
struct CallbackErrors {
    send: AtomicU64,
    apply: AtomicU64,
    on_state_change: AtomicU64,
}

/// A node, the thread that answers its futures, and its TCP network.
type Live = (Weak<AnyNode>, Weak<Mutex<Completer>>, Option<Weak<CoreTcp>>);

/// Every node not yet closed, for the interpreter's exit.
static LIVE: Mutex<Vec<Live>> = Mutex::new(Vec::new());

/// Closes every open node (registered with `atexit`): their threads, and
/// the threads answering their futures, end before the interpreter they
/// call into goes away.
#[pyfunction]
pub(crate) fn _close_all(py: Python<'_>) {
    let live: Vec<_> = LIVE
        .lock()
        .drain(..)
        .filter_map(|(n, c, t)| Some((n.upgrade()?, c.upgrade()?, t.and_then(|t| t.upgrade()))))
        .collect();
    py.detach(|| live.iter().for_each(|(n, c, t)| finish(n, c, t.as_deref())));
}

/// The thread answering a node's futures, and where answers go to it.
struct Completer {
    tx: Option<Sender<Completion>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Stops `node` and its TCP network and, unless called from one of the
/// node's own threads (which cannot wait for it), waits for the thread
/// answering its futures to give the last answers. Call without the GIL.
fn finish(node: &AnyNode, completer: &Mutex<Completer>, tcp: Option<&CoreTcp>) {
    node.shutdown();
    // Its threads never wait on the node's: safe from any of them.
    if let Some(tcp) = tcp {
        tcp.shutdown();
    }
    let mut c = completer.lock();
    c.tx = None;
    // Not from a node thread (pending answers may wait on it), nor from the
    // futures thread itself (a done-callback that closes the node).
    let on_completer = c
        .thread
        .as_ref()
        .is_some_and(|t| t.thread().id() == std::thread::current().id());
    if !node.is_node_thread() && !on_completer {
        if let Some(thread) = c.thread.take() {
            drop(c);
            let _ = thread.join();
        }
    }
}

/// A `propose_async` future and the answer it is to get.
type Completion = (Py<PyAny>, Result<Vec<u8>, ProposeError>);

/// Completes the futures of `propose_async` on a thread of its own, taking
/// the GIL once for each burst of answers rather than once per answer (a
/// node with many commands in flight answers them in batches). The thread
/// ends once the node is closed and every answer is given.
fn spawn_completer(members: Arc<Members>) -> PyResult<Completer> {
    let (tx, rx) = crossbeam_channel::unbounded::<Completion>();
    let thread = std::thread::Builder::new()
        .name("consenso-futures".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let attached = Python::try_attach(|py| {
                    complete(py, first, &members);
                    for next in rx.try_iter().take(4096) {
                        complete(py, next, &members);
                    }
                });
                if attached.is_none() {
                    return; // the interpreter is shutting down
                }
            }
        })
        .map_err(|e| errors::ConsensoError::new_err(format!("could not spawn a thread: {e}")))?;
    Ok(Completer {
        tx: Some(tx),
        thread: Some(thread),
    })
}

/// Gives a future its answer.
fn complete(py: Python<'_>, (future, answer): Completion, members: &Members) {
    let set = match answer {
        Ok(framed) => future.call_method1(py, "set_result", (unframe(py, &framed),)),
        Err(e) => future.call_method1(
            py,
            "set_exception",
            (errors::propose(py, e, members).into_value(py),),
        ),
    };
    if let Err(e) = set {
        e.write_unraisable(py, None);
    }
}

/// A host callback that the node's threads call and the garbage collector
/// sees (`__traverse__`) and can break (`__clear__`): a node whose
/// callbacks refer back to it is then collected like any other cycle.
struct Slot(Mutex<Option<Py<PyAny>>>);

impl Slot {
    fn new(callback: Option<Py<PyAny>>) -> Arc<Self> {
        Arc::new(Slot(Mutex::new(callback)))
    }

    /// The callback, unless the garbage collector cleared it.
    fn get(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.0.lock().as_ref().map(|c| c.clone_ref(py))
    }

    fn visit(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        // Never block in a traversal: a slot being read is visited next time.
        if let Some(guard) = self.0.try_lock() {
            if let Some(callback) = guard.as_ref() {
                visit.call(callback)?;
            }
        }
        Ok(())
    }
}

/// The host's state machine: the `apply` callback, or none (commands are
/// only ordered; proposals return `None`).
struct PyMachine {
    apply: Option<Arc<Slot>>,
    errors: Arc<CallbackErrors>,
}

impl PyMachine {
    /// `apply`'s answer to the command at `index`, framed; `None` when it
    /// raised or returned something other than bytes or `None`.
    fn call(
        &self,
        py: Python<'_>,
        apply: &Py<PyAny>,
        index: Index,
        command: &[u8],
    ) -> Option<Vec<u8>> {
        let answer = apply.call1(py, (index, PyBytes::new(py, command)));
        let framed = answer.and_then(|a| {
            let a = a.bind(py);
            if a.is_none() {
                return Ok(vec![NONE]);
            }
            let bytes = args::bytes_like(a, "apply's result").map_err(|_| {
                PyTypeError::new_err(format!(
                    "apply must return bytes or None, not {}",
                    args::type_name(a)
                ))
            })?;
            let mut framed = Vec::with_capacity(bytes.len() + 1);
            framed.push(SOME);
            framed.extend_from_slice(&bytes);
            Ok(framed)
        });
        match framed {
            Ok(f) => Some(f),
            Err(e) => {
                self.errors.apply.fetch_add(1, Relaxed);
                logs::callback_failed(py, "apply", e);
                None
            }
        }
    }
}

impl StateMachine for PyMachine {
    fn apply(&mut self, index: Index, command: &[u8]) -> Vec<u8> {
        let Some(slot) = &self.apply else {
            return vec![NONE];
        };
        // A cleared `apply` (the node is garbage) cannot apply either.
        let answer = Python::try_attach(|py| {
            let apply = slot.get(py)?;
            self.call(py, &apply, index, command)
        });
        match answer.flatten() {
            Some(answer) => answer,
            // A machine that failed cannot go on applying: the node stops
            // as it does when a Rust machine panics (without the panic
            // hook's message: the exception was logged).
            None => std::panic::resume_unwind(Box::new("the apply callback failed")),
        }
    }
}

/// `apply`'s framed answer as Python sees it: `bytes` or `None`.
fn unframe(py: Python<'_>, framed: &[u8]) -> Py<PyAny> {
    match framed.split_first() {
        Some((&SOME, bytes)) => PyBytes::new(py, bytes).into_any().unbind(),
        _ => py.None(),
    }
}

/// A consensus node whose network is the caller's: it calls ``send(to,
/// data)`` from its own threads, and the caller passes what arrives to
/// ``receive(sender, data)``. Committed commands reach ``apply(index,
/// command)`` on every node, in log order, once each; what ``apply``
/// returns (``bytes`` or ``None``) is what ``propose`` returns on the node
/// that proposed. ``on_state_change(role, term, leader)`` follows
/// elections.
///
/// Thread-safe: any thread may call any method, callbacks included. Every
/// blocking call releases the GIL. An exception in a callback is logged on
/// the ``consenso`` logger and counted in ``status()``; ``send`` and
/// ``on_state_change`` exceptions are otherwise ignored (the protocol
/// retries lost messages), but an exception in ``apply`` stops the node (a
/// state machine that failed half way cannot safely go on): pending and
/// later calls raise ``ClosedError`` and ``status()["state_machine_failed"]``
/// is true.
///
/// Args:
///     name: this node's name, one of ``peers``.
///     peers: every member's name, this node's included (the same set on
///         every node, in any order).
///     send: ``send(to: str, data: bytes) -> None``; called from node
///         threads, it should not block for long. Or a network of the
///         core's, where messages go in Rust without the GIL: a
///         ``LocalNetwork`` shared by nodes of this process, or this
///         node's own ``TcpNetwork`` to peers in other processes.
///     apply: ``apply(index: int, command: bytes) -> bytes | None``, or
///         ``None`` to only order commands.
///     on_state_change: ``cb(role: str, term: int, leader: str | None)``.
///     protocol: ``"raft"``, ``"paxos"`` or ``"zab"``.
///     cluster_id: messages from another cluster id are refused.
///     election_timeout: seconds, ``(shortest, longest)``, or one number
///         ``t`` for ``(t, 2 * t)``.
///     heartbeat_interval: seconds between a leader's heartbeats (at least
///         0.001, below the election timeout).
///     data_dir: a directory for the node's durable log, or ``None`` to
///         keep it in memory.
///     proposal_timeout: seconds after which a proposal or read not yet
///         answered fails with ``ProposalTimeout``.
///     max_bytes_per_message: most command bytes a leader puts in one
///         message (default 1 MiB; one command always goes): lower it for a
///         transport with a size limit, such as UDP.
#[pyclass(subclass, frozen, module = "consenso")]
pub struct Node {
    node: Arc<AnyNode>,
    members: Arc<Members>,
    name: String,
    proposal_timeout: Duration,
    errors: Arc<CallbackErrors>,
    /// `send`, `apply` and `on_state_change`, for the garbage collector.
    callbacks: [Arc<Slot>; 3],
    /// Where `propose_async` answers go; `None` once closed.
    completer: Arc<Mutex<Completer>>,
    /// The node's TCP network, when its `send` is a `TcpNetwork`.
    tcp: Option<Arc<CoreTcp>>,
}

/// The election timeout from a number or a pair of numbers.
fn election_timeout(obj: &Bound<'_, PyAny>) -> PyResult<(Duration, Duration)> {
    let secs = |o: &Bound<'_, PyAny>| {
        let s = args::seconds(o, "election_timeout")?;
        duration_from_seconds("election_timeout", s).map_err(errors::config)
    };
    if let Ok(pair) = obj.cast::<PyTuple>() {
        if pair.len() != 2 {
            return Err(PyValueError::new_err(format!(
                "election_timeout must be (shortest, longest), got {} numbers",
                pair.len()
            )));
        }
        return Ok((secs(&pair.get_item(0)?)?, secs(&pair.get_item(1)?)?));
    }
    let t = secs(obj)?;
    Ok((t, t.saturating_mul(2)))
}

/// How a node's messages leave: the host's `send` callback, or one of the
/// core's networks (no Python, no GIL).
enum HostTransport {
    Python {
        send: Arc<Slot>,
        members: Arc<Members>,
        errors: Arc<CallbackErrors>,
    },
    Local(LocalTransport),
    Tcp(TcpTransport),
}

impl Transport for HostTransport {
    fn send(&self, to: NodeId, bytes: Vec<u8>) {
        match self {
            HostTransport::Python {
                send,
                members,
                errors,
            } => send_through(send, members, errors, to, &bytes),
            HostTransport::Local(t) => t.send(to, bytes),
            HostTransport::Tcp(t) => t.send(to, bytes),
        }
    }
}

/// Sends `bytes` to the member with id `to` through the host's `send`.
fn send_through(send: &Slot, members: &Members, errors: &CallbackErrors, to: NodeId, bytes: &[u8]) {
    let Some(name) = members.name(to) else {
        return;
    };
    Python::try_attach(|py| {
        let Some(send) = send.get(py) else {
            return;
        };
        if let Err(e) = send.call1(py, (name, PyBytes::new(py, bytes))) {
            errors.send.fetch_add(1, Relaxed);
            logs::callback_failed(py, "send", e);
        }
    });
}

/// The `on_state_change` callback for the core: the role in the protocol's
/// words, the term, and the leader's name.
fn state_change_callback(
    callback: Arc<Slot>,
    protocol: ProtocolKind,
    members: Arc<Members>,
    errors: Arc<CallbackErrors>,
) -> StateChangeCallback {
    Box::new(move |change: RoleChange| {
        let leader = change.leader.and_then(|id| members.name(id));
        Python::try_attach(|py| {
            let Some(callback) = callback.get(py) else {
                return;
            };
            let role = protocol.role_name(change.role);
            if let Err(e) = callback.call1(py, (role, change.epoch, leader)) {
                errors.on_state_change.fetch_add(1, Relaxed);
                logs::callback_failed(py, "on_state_change", e);
            }
        });
    })
}

impl Node {
    /// Waits for `rx`'s answer up to `timeout` without the GIL, checking for
    /// signals between slices.
    fn wait<T: Send>(
        &self,
        py: Python<'_>,
        rx: Receiver<Result<T, ProposeError>>,
        timeout: Duration,
    ) -> PyResult<T> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let slice = match deadline {
                Some(d) => d
                    .saturating_duration_since(Instant::now())
                    .min(SIGNAL_CHECK),
                None => SIGNAL_CHECK,
            };
            match py.detach(|| rx.recv_timeout(slice)) {
                Ok(answer) => return answer.map_err(|e| errors::propose(py, e, &self.members)),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(errors::propose(py, ProposeError::Closed, &self.members))
                }
                Err(RecvTimeoutError::Timeout) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(errors::propose(py, ProposeError::Timeout, &self.members));
                    }
                    py.check_signals()?;
                }
            }
        }
    }

    /// `timeout` in seconds, or the node's proposal timeout for `None`.
    fn timeout(&self, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<Duration> {
        match timeout.filter(|t| !t.is_none()) {
            None => Ok(self.proposal_timeout),
            Some(t) => duration_from_seconds("timeout", args::seconds(t, "timeout")?)
                .map_err(errors::config),
        }
    }

    /// `WouldBlock` (nothing proposed) on one of the node's own threads,
    /// where a blocking call would wait on itself.
    fn not_on_node_thread(&self, py: Python<'_>) -> PyResult<()> {
        if self.node.is_node_thread() {
            return Err(errors::propose(py, ProposeError::WouldBlock, &self.members));
        }
        Ok(())
    }

    fn status_now(&self) -> Status {
        self.node.status()
    }
}

#[pymethods]
impl Node {
    #[new]
    #[pyo3(signature = (
        name, peers, *, send, apply=None, on_state_change=None, protocol=None,
        cluster_id=None, election_timeout=None, heartbeat_interval=None,
        data_dir=None, proposal_timeout=None, max_bytes_per_message=None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        name: &Bound<'_, PyAny>,
        peers: &Bound<'_, PyAny>,
        send: Bound<'_, PyAny>,
        apply: Option<Bound<'_, PyAny>>,
        on_state_change: Option<Bound<'_, PyAny>>,
        protocol: Option<&Bound<'_, PyAny>>,
        cluster_id: Option<&Bound<'_, PyAny>>,
        election_timeout: Option<&Bound<'_, PyAny>>,
        heartbeat_interval: Option<&Bound<'_, PyAny>>,
        data_dir: Option<PathBuf>,
        proposal_timeout: Option<&Bound<'_, PyAny>>,
        max_bytes_per_message: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let name = args::string(name, "name")?;
        let members =
            Arc::new(Members::new(args::strings(peers, "peers")?).map_err(errors::config)?);
        let id = members.member_id(&name).map_err(errors::config)?;
        // The core's networks carry messages in Rust; anything else is
        // the host's callback.
        let network = send
            .cast::<LocalNetwork>()
            .ok()
            .map(|n| n.get().inner.clone());
        let tcp_network = send.cast::<TcpNetwork>().ok().map(|n| n.clone().unbind());
        let send = match (&network, &tcp_network) {
            (None, None) => Some(args::callback(Some(send), "send")?.ok_or_else(|| {
                PyTypeError::new_err(
                    "send must be callable, a LocalNetwork or a TcpNetwork, not None",
                )
            })?),
            _ => None,
        };
        let apply = args::callback(apply, "apply")?;
        let on_state_change = args::callback(on_state_change, "on_state_change")?;
        let protocol_name = match protocol {
            Some(p) if !p.is_none() => args::string(p, "protocol")?,
            _ => "raft".to_owned(),
        };
        let kind = ProtocolKind::from_name(&protocol_name).ok_or_else(|| {
            PyValueError::new_err(format!(
                "protocol must be \"raft\", \"paxos\" or \"zab\", got {protocol_name:?}"
            ))
        })?;
        let mut config = AnyNodeConfig {
            protocol: kind,
            id,
            voters: members.ids().to_vec(),
            data_dir,
            ..AnyNodeConfig::default()
        };
        if let Some(c) = cluster_id {
            config.cluster_id = args::uint64(c, "cluster_id")?;
        }
        let defaults = Timeouts::default();
        config.timeouts = Timeouts {
            election_min: defaults.election_min,
            election_max: defaults.election_max,
            heartbeat: match heartbeat_interval {
                Some(h) => duration_from_seconds(
                    "heartbeat_interval",
                    args::seconds(h, "heartbeat_interval")?,
                )
                .map_err(errors::config)?,
                None => defaults.heartbeat,
            },
        };
        if let Some(e) = election_timeout {
            (config.timeouts.election_min, config.timeouts.election_max) =
                self::election_timeout(e)?;
        }
        if let Some(t) = proposal_timeout {
            config.proposal_timeout =
                duration_from_seconds("proposal_timeout", args::seconds(t, "proposal_timeout")?)
                    .map_err(errors::config)?;
        }
        if let Some(m) = max_bytes_per_message {
            let m = args::uint64(m, "max_bytes_per_message")?;
            config.limits.max_bytes_per_message = usize::try_from(m).unwrap_or(usize::MAX);
        }
        let errors = Arc::new(CallbackErrors::default());
        let slots = [
            Slot::new(send),
            Slot::new(apply),
            Slot::new(on_state_change),
        ];
        let [send, apply, observe] = slots.clone();
        let tcp = match &tcp_network {
            Some(net) => Some(net.get().bind(py, &name, &members)?),
            None => None,
        };
        let transport = match (&network, &tcp) {
            (Some(net), _) => HostTransport::Local(net.transport(id)),
            (None, Some(tcp)) => HostTransport::Tcp(tcp.transport()),
            (None, None) => HostTransport::Python {
                send,
                members: Arc::clone(&members),
                errors: Arc::clone(&errors),
            },
        };
        let has_apply = apply.0.lock().is_some();
        let machine = PyMachine {
            apply: has_apply.then_some(apply),
            errors: Arc::clone(&errors),
        };
        let observing = observe.0.lock().is_some();
        let observer = observing.then(|| {
            state_change_callback(observe, kind, Arc::clone(&members), Arc::clone(&errors))
        });
        let taken = || {
            PyValueError::new_err(format!(
                "name: a running node named {name:?} is already on this LocalNetwork"
            ))
        };
        if network.as_ref().is_some_and(|net| net.has_running(id)) {
            return Err(taken());
        }
        // Opening may recover a long log; node threads may call back at once.
        let node = py
            .detach(|| AnyNode::open(&config, transport, machine, observer))
            .map_err(|e| {
                if let Some(tcp) = &tcp {
                    py.detach(|| tcp.shutdown());
                }
                errors::start(e)
            })?;
        if let Some(tcp) = &tcp {
            tcp.attach(node.inbox());
        }
        if let Some(net) = &network {
            if !net.register_new(id, node.inbox()) {
                py.detach(|| node.shutdown());
                return Err(taken());
            }
        }
        let node = Arc::new(node);
        let completer = match spawn_completer(Arc::clone(&members)) {
            Ok(c) => Arc::new(Mutex::new(c)),
            Err(e) => {
                // Nothing may stay running (or keep the port) on an error.
                py.detach(|| {
                    node.shutdown();
                    if let Some(tcp) = &tcp {
                        tcp.shutdown();
                    }
                });
                return Err(e);
            }
        };
        let mut live = LIVE.lock();
        live.retain(|(n, _, _)| n.strong_count() > 0);
        live.push((
            Arc::downgrade(&node),
            Arc::downgrade(&completer),
            tcp.as_ref().map(Arc::downgrade),
        ));
        drop(live);
        Ok(Node {
            node,
            members,
            name,
            proposal_timeout: config.proposal_timeout,
            errors,
            completer,
            callbacks: slots,
            tcp,
        })
    }

    /// Hands ``data`` received from peer ``sender`` to the node. Never
    /// blocks. Raises ``ValueError`` for bytes that are not a message of
    /// this cluster (nothing else happens), ``ConsensoError`` when the
    /// node's input queue is full (the message is dropped; the protocol
    /// retries), ``ClosedError`` after ``close``.
    fn receive(
        &self,
        py: Python<'_>,
        sender: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let sender = args::string(sender, "sender")?;
        let from = self.members.id(&sender).ok_or_else(|| {
            PyValueError::new_err(format!("sender: {sender:?} is not one of the peers"))
        })?;
        let data = args::bytes_like(data, "data")?;
        py.detach(|| self.node.receive(from, &data))
            .map_err(errors::receive)
    }

    /// Proposes ``command`` and waits until it is applied on this node;
    /// returns what ``apply`` returned. ``timeout`` in seconds (default:
    /// the node's ``proposal_timeout``). Raises ``NotLeaderError`` (with
    /// ``.leader``), ``ProposalTimeout`` (the command may still commit),
    /// ``ClosedError`` (a command already sent may still commit),
    /// ``ValueError`` for a command too large, ``ConsensoError`` (busy:
    /// retry later; dropped by a leader change: it did not commit), or
    /// ``RuntimeError`` when called from inside one of this node's
    /// callbacks, where waiting would block the node itself (nothing is
    /// proposed; use ``propose_async`` there).
    #[pyo3(signature = (command, timeout=None))]
    fn propose(
        &self,
        py: Python<'_>,
        command: &Bound<'_, PyAny>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let data = args::bytes_like(command, "command")?.into_owned();
        let timeout = self.timeout(timeout)?;
        self.not_on_node_thread(py)?;
        let (tx, rx) = bounded(1);
        py.detach(|| {
            self.node.propose_with(
                data,
                Box::new(move |r| {
                    let _ = tx.send(r);
                }),
            )
        });
        let framed = self.wait(py, rx, timeout)?;
        Ok(unframe(py, &framed))
    }

    /// Proposes ``command`` without waiting: a ``concurrent.futures.Future``
    /// that gets ``apply``'s result or the exception ``propose`` would
    /// raise. It is already running, so it cannot be cancelled.
    fn propose_async(&self, py: Python<'_>, command: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let data = args::bytes_like(command, "command")?.into_owned();
        let future = py
            .import("concurrent.futures")?
            .getattr("Future")?
            .call0()?;
        future.call_method0("set_running_or_notify_cancel")?;
        let done = future.clone().unbind();
        let Some(completer) = self.completer.lock().tx.clone() else {
            let closed = errors::propose(py, ProposeError::Closed, &self.members);
            future.call_method1("set_exception", (closed.into_value(py),))?;
            return Ok(future.unbind());
        };
        py.detach(|| {
            self.node.propose_with(
                data,
                Box::new(move |r| {
                    let _ = completer.send((done, r));
                }),
            )
        });
        Ok(future.unbind())
    }

    /// ``await node.apropose(command)``: ``propose`` for asyncio; the event
    /// loop keeps running while the command commits.
    fn apropose(&self, py: Python<'_>, command: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        // Without a running loop (a RuntimeError), nothing is proposed.
        let asyncio = py.import("asyncio")?;
        let running = asyncio.call_method0("get_running_loop")?;
        let future = self.propose_async(py, command)?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("loop", running)?;
        Ok(asyncio
            .call_method("wrap_future", (future,), Some(&kwargs))?
            .unbind())
    }

    /// Waits until a linearizable read may be served from this node's state
    /// machine: a quorum confirmed this node leads and everything committed
    /// before the call is applied here. Returns that log index. Raises as
    /// ``propose`` does.
    #[pyo3(signature = (timeout=None))]
    fn read_barrier(&self, py: Python<'_>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<Index> {
        let timeout = self.timeout(timeout)?;
        self.not_on_node_thread(py)?;
        let (tx, rx) = bounded(1);
        py.detach(|| {
            self.node.read_barrier_with(Box::new(move |r| {
                let _ = tx.send(r);
            }))
        });
        self.wait(py, rx, timeout)
    }

    /// This node's name.
    #[getter]
    fn id(&self) -> &str {
        &self.name
    }

    /// Every member's name, as given.
    #[getter]
    fn peers(&self) -> Vec<String> {
        self.members.names().to_vec()
    }

    /// ``"raft"``, ``"paxos"`` or ``"zab"``.
    #[getter]
    fn protocol(&self) -> &'static str {
        self.node.protocol().name()
    }

    /// The role in the protocol's own words (Raft: ``"follower"``,
    /// ``"candidate"``, ``"leader"``; ZAB: ``"LOOKING"``, ...).
    #[getter]
    fn role(&self) -> &'static str {
        self.status_now().role_name()
    }

    /// The current term (Raft), epoch (ZAB) or ballot (Paxos: its round
    /// times 256 plus the proposer's position among the peers).
    #[getter]
    fn term(&self) -> u64 {
        self.status_now().term
    }

    /// The leader this node knows of, by name, or ``None``.
    #[getter]
    fn leader(&self) -> Option<String> {
        let leader = self.status_now().leader?;
        self.members.name(leader).map(str::to_owned)
    }

    /// Whom this node backs in its current term, by name: Raft's
    /// ``votedFor``; the proposer of the ballot a Paxos acceptor promised;
    /// the leader a ZAB server's vote names.
    #[getter]
    fn voted_for(&self) -> Option<String> {
        let vote = self.status_now().voted_for?;
        self.members.name(vote).map(str::to_owned)
    }

    /// The highest log index this node knows committed.
    #[getter]
    fn commit_index(&self) -> Index {
        self.status_now().commit_index
    }

    /// True once the node is closed (or stopped on a failure).
    #[getter]
    fn closed(&self) -> bool {
        self.node.is_closed()
    }

    /// A dict of the node's state and counters: role, term, leader, commit,
    /// applied and last index, messages, storage, snapshots, whether the
    /// state machine failed, and the exceptions each callback raised.
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.status_now();
        let d = PyDict::new(py);
        d.set_item("id", &self.name)?;
        d.set_item("protocol", s.protocol.name())?;
        d.set_item("role", s.role_name())?;
        d.set_item("term", s.term)?;
        d.set_item("leader", s.leader.and_then(|l| self.members.name(l)))?;
        d.set_item("voted_for", s.voted_for.and_then(|v| self.members.name(v)))?;
        d.set_item("commit_index", s.commit_index)?;
        d.set_item("applied_index", s.applied_index)?;
        d.set_item("last_index", s.last_index)?;
        d.set_item("messages_sent", s.messages_sent)?;
        d.set_item("messages_received", s.messages_received)?;
        d.set_item("messages_rejected", s.messages_rejected)?;
        d.set_item("messages_dropped", s.messages_dropped)?;
        d.set_item("proposals_failed", s.proposals_failed)?;
        d.set_item("storage_errors", s.storage_errors)?;
        d.set_item("storage_failure", s.storage_failure)?;
        d.set_item("storage_syncs", s.storage_syncs)?;
        d.set_item("snapshot_index", s.snapshot_index)?;
        d.set_item("snapshots_taken", s.snapshots_taken)?;
        d.set_item("snapshots_installed", s.snapshots_installed)?;
        d.set_item("state_machine_failed", s.state_machine_failed)?;
        d.set_item("send_errors", self.errors.send.load(Relaxed))?;
        d.set_item("apply_errors", self.errors.apply.load(Relaxed))?;
        d.set_item(
            "on_state_change_errors",
            self.errors.on_state_change.load(Relaxed),
        )?;
        d.set_item("closed", self.node.is_closed())?;
        Ok(d)
    }

    /// Stops the node: pending proposals and reads raise ``ClosedError``,
    /// and its threads are joined (not when called from one of its own
    /// callbacks: then it stops without waiting). Idempotent.
    fn close(&self, py: Python<'_>) {
        // Later futures fail at once; pending ones get `ClosedError`.
        py.detach(|| finish(&self.node, &self.completer, self.tcp.as_deref()));
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        for slot in &self.callbacks {
            slot.visit(&visit)?;
        }
        Ok(())
    }

    /// Breaks a cycle through the callbacks: they are dropped, so the node
    /// sends nothing more and stops at its next `apply`; it is closed when
    /// collected.
    fn __clear__(&self) {
        for slot in &self.callbacks {
            let callback = slot.0.lock().take();
            drop(callback);
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> bool {
        self.close(py);
        false
    }

    fn __repr__(&self) -> String {
        let s = self.status_now();
        format!(
            "<consenso.Node {:?} {} {} term={} commit={}{}>",
            self.name,
            s.protocol.name(),
            s.role_name(),
            s.term,
            s.commit_index,
            if self.node.is_closed() { " closed" } else { "" }
        )
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // The node's threads may be waiting for the GIL this thread holds.
        let (node, completer, tcp) = (&self.node, &self.completer, self.tcp.as_deref());
        if Python::try_attach(|py| py.detach(|| finish(node, completer, tcp))).is_none() {
            finish(node, completer, tcp);
        }
    }
}
