//! TCP transport: one node's envelopes to and from its peers over TCP, for
//! nodes in separate processes or on separate machines of a trusted
//! network (nothing is encrypted or authenticated).
//!
//! [`TcpNetwork::bind`] listens at the node's address and starts a writer
//! thread per peer; [`TcpNetwork::transport`] is the node's [`Transport`];
//! [`TcpNetwork::attach`] hands what arrives to the node. `send` never
//! blocks: each peer has a bounded queue, and an envelope that finds it
//! full, or finds the peer unreachable, is dropped and counted (the
//! protocols retry). A writer puts every envelope queued while it was
//! writing into its next write, so a busy leader makes few system calls.
//!
//! One connection per direction and peer. On the wire: a hello (the magic
//! `CNSO`, a version byte, the sender's node id as 8 little-endian bytes),
//! then frames, each a little-endian `u32` length and one envelope.

use crate::runtime::{Inbox, Transport};
use crate::types::NodeId;
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The first bytes on every connection, then [`VERSION`].
const MAGIC: &[u8; 4] = b"CNSO";
/// The framing's version.
const VERSION: u8 = 1;
/// Magic, version and node id.
const HELLO_LEN: usize = 4 + 1 + 8;
/// How long a new connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// An inbound connection silent this long is closed (its peer may have
/// died without closing it; a live peer reconnects when it next sends).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A frame buffer grown above this is not kept between frames.
const KEEP_BUFFER: usize = 1 << 20;
/// How often the listener looks for new connections (and for shutdown).
const ACCEPT_POLL: Duration = Duration::from_millis(10);
/// The first wait before reconnecting to a peer that could not be reached.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// Most envelopes a writer puts into one write.
const MAX_BATCH: usize = 1024;
/// Buffer size of each connection's reader and writer.
const BUFFER: usize = 64 << 10;

/// Why a TCP network could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TcpError {
    /// An address that does not resolve to a socket address.
    #[error("address {0:?} is not a reachable host:port ({1})")]
    Address(String, String),
    /// The node's own id is not among the addresses.
    #[error("node {0} has no address of its own")]
    NoOwnAddress(NodeId),
    /// The same node id is given two addresses.
    #[error("node {0} is given more than one address")]
    DuplicateNode(NodeId),
    /// Two nodes are given the same address.
    #[error("two nodes are given the address {0}")]
    SharedAddress(SocketAddr),
    /// A peer's address has port 0, where no one can reach it.
    #[error("node {0} is given port 0, where no peer can reach it")]
    PortZero(NodeId),
    /// An option out of range.
    #[error("{0}")]
    Options(String),
    /// Listening at the address failed (in use, not local, no permission).
    #[error("could not listen at {0}: {1}")]
    Bind(SocketAddr, io::Error),
    /// The operating system refused a thread or a socket option.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Limits and timeouts of a [`TcpNetwork`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpOptions {
    /// Longest envelope accepted from a peer, in bytes; a longer frame
    /// closes its connection. Default 256 MiB.
    pub max_frame: usize,
    /// Most envelopes waiting for one peer; more are dropped. Default 4,096.
    pub queue: usize,
    /// How long connecting to a peer may take. Default 500 ms.
    pub connect_timeout: Duration,
    /// How long one write may block before its connection is dropped
    /// (a peer that stopped reading). Default 1 s.
    pub write_timeout: Duration,
    /// Longest wait between attempts to reach a peer that could not be
    /// reached (from 10 ms, doubling); envelopes for it meanwhile are
    /// dropped. Default 1 s.
    pub max_backoff: Duration,
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions {
            max_frame: 256 << 20,
            queue: 4096,
            connect_timeout: Duration::from_millis(500),
            write_timeout: Duration::from_secs(1),
            max_backoff: Duration::from_secs(1),
        }
    }
}

impl TcpOptions {
    /// Checks every option.
    ///
    /// # Errors
    /// [`TcpError::Options`] naming the first option out of range.
    pub fn validate(&self) -> Result<(), TcpError> {
        let bad = |what: &str| Err(TcpError::Options(what.to_owned()));
        if self.max_frame == 0 || self.max_frame > u32::MAX as usize {
            return bad("max_frame must be between 1 and 4294967295 bytes");
        }
        if self.queue == 0 {
            return bad("queue must hold at least one envelope");
        }
        if self.connect_timeout.is_zero() || self.write_timeout.is_zero() {
            return bad("connect_timeout and write_timeout must be above zero");
        }
        if self.max_backoff < FIRST_BACKOFF {
            return bad("max_backoff must be at least 10 ms");
        }
        Ok(())
    }
}

/// Resolves `address` (`host:port`, a name or an IP literal) to its first
/// socket address.
///
/// # Errors
/// [`TcpError::Address`] when it is malformed or does not resolve.
pub fn resolve(address: &str) -> Result<SocketAddr, TcpError> {
    let fail = |why: String| TcpError::Address(address.to_owned(), why);
    address
        .to_socket_addrs()
        .map_err(|e| fail(e.to_string()))?
        .next()
        .ok_or_else(|| fail("it resolves to nothing".to_owned()))
}

/// What a [`TcpNetwork`] has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpStats {
    /// Envelopes written to peers.
    pub sent: u64,
    /// Envelopes read from peers.
    pub received: u64,
    /// Envelopes dropped: a full queue, an unreachable peer, a failed
    /// write, an unknown destination, or arrived with no node attached.
    pub dropped: u64,
    /// Connections closed for a bad hello or an oversized frame.
    pub refused: u64,
    /// Connections made to peers.
    pub connects: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    dropped: AtomicU64,
    refused: AtomicU64,
    connects: AtomicU64,
}

struct Inner {
    me: NodeId,
    local_addr: SocketAddr,
    options: TcpOptions,
    /// Each peer's writer queue; emptied by shutdown, which ends the writers.
    queues: RwLock<HashMap<NodeId, Sender<Vec<u8>>>>,
    inbox: RwLock<Option<Arc<dyn Inbox>>>,
    closed: AtomicBool,
    /// Every open connection, so shutdown can close them under blocked
    /// reads and writes.
    streams: Mutex<HashMap<u64, TcpStream>>,
    next_stream: AtomicU64,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Held by a shutdown until every thread is joined, so a second one
    /// (from another thread) returns only once the port is free.
    shutting_down: Mutex<()>,
    counters: Counters,
}

/// One node's TCP network: a listener for its peers' connections and a
/// writer per peer. Thread-safe. Dropping it shuts it down.
pub struct TcpNetwork {
    inner: Arc<Inner>,
}

/// The [`Transport`] of a [`TcpNetwork`]'s node. Cheap to clone; `send`
/// never blocks. Sends nothing once its network is shut down.
#[derive(Clone)]
pub struct TcpTransport {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TcpNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpNetwork")
            .field("node", &self.inner.me)
            .field("address", &self.inner.local_addr)
            .field("stats", &self.stats())
            .finish()
    }
}

impl TcpNetwork {
    /// Listens at node `me`'s address in `addresses` (or at `listen` when
    /// given, such as `0.0.0.0:port` behind the address peers use) and
    /// starts a writer for every other node there. Nothing arrives at a
    /// node before [`TcpNetwork::attach`].
    ///
    /// # Errors
    /// [`TcpError`]: bad options, `me` without an address, a node given
    /// two addresses, a failed bind, or no thread.
    pub fn bind(
        me: NodeId,
        addresses: &[(NodeId, SocketAddr)],
        listen: Option<SocketAddr>,
        options: TcpOptions,
    ) -> Result<TcpNetwork, TcpError> {
        options.validate()?;
        check_addresses(me, addresses)?;
        let own = addresses
            .iter()
            .find(|(id, _)| *id == me)
            .map(|(_, a)| *a)
            .ok_or(TcpError::NoOwnAddress(me))?;
        let at = listen.unwrap_or(own);
        let listener = TcpListener::bind(at).map_err(|e| TcpError::Bind(at, e))?;
        Self::with_listener(me, listener, addresses, options)
    }

    /// As [`TcpNetwork::bind`], on a listener the caller bound (port 0 in
    /// tests, or a socket handed over by a service manager); `me` needs no
    /// address of its own.
    ///
    /// # Errors
    /// As [`TcpNetwork::bind`], less the bind.
    pub fn with_listener(
        me: NodeId,
        listener: TcpListener,
        addresses: &[(NodeId, SocketAddr)],
        options: TcpOptions,
    ) -> Result<TcpNetwork, TcpError> {
        options.validate()?;
        check_addresses(me, addresses)?;
        listener.set_nonblocking(true)?;
        let inner = Arc::new(Inner {
            me,
            local_addr: listener.local_addr()?,
            queues: RwLock::new(HashMap::new()),
            inbox: RwLock::new(None),
            closed: AtomicBool::new(false),
            streams: Mutex::new(HashMap::new()),
            next_stream: AtomicU64::new(0),
            threads: Mutex::new(Vec::new()),
            shutting_down: Mutex::new(()),
            counters: Counters::default(),
            options,
        });
        let network = TcpNetwork {
            inner: Arc::clone(&inner),
        };
        // On an error, dropping `network` stops what started.
        let accept = Arc::clone(&inner);
        inner
            .threads
            .lock()
            .push(spawn("consenso-tcp-accept", move || {
                accept_loop(&accept, &listener)
            })?);
        for &(peer, addr) in addresses.iter().filter(|(id, _)| *id != me) {
            let (tx, rx) = bounded(inner.options.queue);
            let writer = Arc::clone(&inner);
            let thread = spawn("consenso-tcp-send", move || write_loop(&writer, addr, &rx))?;
            inner.threads.lock().push(thread);
            inner.queues.write().insert(peer, tx);
        }
        Ok(network)
    }

    /// The node's transport.
    pub fn transport(&self) -> TcpTransport {
        TcpTransport {
            inner: Arc::clone(&self.inner),
        }
    }

    /// Hands every envelope that arrives from now on to `inbox` (replacing
    /// any earlier one). Ignored once shut down.
    pub fn attach(&self, inbox: Arc<dyn Inbox>) {
        let mut slot = self.inner.inbox.write();
        if !self.inner.closed.load(Ordering::SeqCst) {
            *slot = Some(inbox);
        }
    }

    /// The address the network listens at (the port chosen, for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The node this network serves.
    pub fn node_id(&self) -> NodeId {
        self.inner.me
    }

    /// Counters so far (they stay readable after shutdown).
    pub fn stats(&self) -> TcpStats {
        let c = &self.inner.counters;
        TcpStats {
            sent: c.sent.load(Ordering::Relaxed),
            received: c.received.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            connects: c.connects.load(Ordering::Relaxed),
        }
    }

    /// True once shut down.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    /// Stops listening, closes every connection, drops what is queued and
    /// joins the network's threads: when it returns, the port is free and
    /// nothing more reaches the node (also when another thread's shutdown
    /// was under way). Blocks at most about the connect timeout (a writer
    /// may be connecting). Idempotent.
    pub fn shutdown(&self) {
        let inner = &self.inner;
        let _one_at_a_time = inner.shutting_down.lock();
        inner.closed.store(true, Ordering::SeqCst);
        // Writers end once their queue's sender is gone.
        inner.queues.write().clear();
        *inner.inbox.write() = None;
        for stream in inner.streams.lock().values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        // The listener may start a reader while this joins: join until none
        // is left (it starts none once it saw `closed`).
        let me = std::thread::current().id();
        loop {
            let threads = std::mem::take(&mut *inner.threads.lock());
            if threads.is_empty() {
                break;
            }
            for t in threads {
                if t.thread().id() != me {
                    let _ = t.join();
                }
            }
        }
    }
}

impl Drop for TcpNetwork {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Transport for TcpTransport {
    fn send(&self, to: NodeId, bytes: Vec<u8>) {
        if bytes.len() > self.inner.options.max_frame {
            // Its peer would close the connection on it, again and again.
            ::log::warn!(
                "tcp: an envelope of {} bytes for node {to} is above max_frame {}; dropped (lower the node's max_bytes_per_message)",
                bytes.len(),
                self.inner.options.max_frame
            );
            self.inner.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let queued = match self.inner.queues.read().get(&to) {
            Some(queue) => match queue.try_send(bytes) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            },
            None => false,
        };
        if !queued {
            self.inner.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The first of `nodes` without an address in `addresses`, if any: a
/// node's network reaches only the peers it has addresses for.
pub fn missing_address(addresses: &[(NodeId, SocketAddr)], nodes: &[NodeId]) -> Option<NodeId> {
    nodes
        .iter()
        .copied()
        .find(|n| !addresses.iter().any(|(id, _)| id == n))
}

/// Refuses a node id given two addresses, two nodes at one address, and a
/// peer at port 0 (which no one can connect to; `me` may listen at one).
fn check_addresses(me: NodeId, addresses: &[(NodeId, SocketAddr)]) -> Result<(), TcpError> {
    let mut ids = std::collections::HashSet::new();
    let mut addrs = std::collections::HashSet::new();
    for &(id, addr) in addresses {
        if !ids.insert(id) {
            return Err(TcpError::DuplicateNode(id));
        }
        if !addrs.insert(addr) {
            return Err(TcpError::SharedAddress(addr));
        }
        if id != me && addr.port() == 0 {
            return Err(TcpError::PortZero(id));
        }
    }
    Ok(())
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, TcpError> {
    Ok(std::thread::Builder::new().name(name.into()).spawn(f)?)
}

impl Inner {
    /// Keeps a clone of `stream` for shutdown; `None` once shut down.
    fn track(&self, stream: &TcpStream) -> Option<u64> {
        let clone = stream.try_clone().ok()?;
        let key = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let mut streams = self.streams.lock();
        // Checked under the lock shutdown takes after setting `closed`.
        if self.closed.load(Ordering::SeqCst) {
            return None;
        }
        streams.insert(key, clone);
        Some(key)
    }

    fn forget(&self, key: u64) {
        self.streams.lock().remove(&key);
    }

    /// Connects to `addr` and says hello.
    fn connect(&self, addr: SocketAddr) -> io::Result<(u64, BufWriter<TcpStream>)> {
        let stream = TcpStream::connect_timeout(&addr, self.options.connect_timeout)?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(self.options.write_timeout))?;
        let key = self
            .track(&stream)
            .ok_or_else(|| io::Error::other("the network is shut down"))?;
        let mut writer = BufWriter::with_capacity(BUFFER, stream);
        let mut hello = [0u8; HELLO_LEN];
        hello[..4].copy_from_slice(MAGIC);
        hello[4] = VERSION;
        hello[5..].copy_from_slice(&self.me.to_le_bytes());
        if let Err(e) = writer.write_all(&hello) {
            self.forget(key);
            return Err(e);
        }
        self.counters.connects.fetch_add(1, Ordering::Relaxed);
        Ok((key, writer))
    }
}

/// Takes new connections until shutdown, a reader thread for each.
fn accept_loop(inner: &Arc<Inner>, listener: &TcpListener) {
    while !inner.closed.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let reader = Arc::clone(inner);
                let started = spawn("consenso-tcp-receive", move || {
                    read_connection(&reader, stream)
                });
                let mut threads = inner.threads.lock();
                threads.retain(|t| !t.is_finished());
                match started {
                    Ok(t) => threads.push(t),
                    Err(e) => ::log::warn!("tcp: a connection was refused: {e}"),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(ACCEPT_POLL),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // Out of descriptors and the like: wait rather than spin.
                ::log::warn!("tcp: accept failed: {e}");
                std::thread::sleep(ACCEPT_POLL * 10);
            }
        }
    }
}

/// Reads one peer's hello, then its frames until it closes, the network
/// shuts down, or a frame is bad.
fn read_connection(inner: &Inner, stream: TcpStream) {
    let Some(key) = inner.track(&stream) else {
        return;
    };
    if let Err(e) = read_frames(inner, stream) {
        if e.kind() == io::ErrorKind::InvalidData {
            inner.counters.refused.fetch_add(1, Ordering::Relaxed);
            ::log::warn!("tcp: closed a connection: {e}");
        }
    }
    inner.forget(key);
}

fn read_frames(inner: &Inner, stream: TcpStream) -> io::Result<()> {
    let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(HELLO_TIMEOUT))?;
    let mut reader = BufReader::with_capacity(BUFFER, stream);
    let mut hello = [0u8; HELLO_LEN];
    reader.read_exact(&mut hello)?;
    if &hello[..4] != MAGIC || hello[4] != VERSION {
        return Err(invalid("a connection that is not a consenso peer".into()));
    }
    let from = NodeId::from_le_bytes(hello[5..].try_into().expect("8 bytes"));
    reader.get_ref().set_read_timeout(Some(IDLE_TIMEOUT))?;
    let mut frame = Vec::new();
    loop {
        let mut len = [0u8; 4];
        reader.read_exact(&mut len)?;
        let len = u32::from_le_bytes(len) as usize;
        if len > inner.options.max_frame {
            return Err(invalid(format!(
                "node {from} sent a frame of {len} bytes, above max_frame {}",
                inner.options.max_frame
            )));
        }
        // Grown as bytes arrive, not to the length a peer claims.
        if frame.capacity() > KEEP_BUFFER {
            frame = Vec::new();
        }
        frame.clear();
        (&mut reader).take(len as u64).read_to_end(&mut frame)?;
        if frame.len() != len {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        inner.counters.received.fetch_add(1, Ordering::Relaxed);
        match &*inner.inbox.read() {
            // The node counts what it refuses.
            Some(inbox) => {
                let _ = inbox.deliver(from, &frame);
            }
            None => {
                inner.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Writes one peer's envelopes until its queue's sender is dropped,
/// connecting on demand and backing off while the peer is unreachable.
fn write_loop(inner: &Inner, addr: SocketAddr, queue: &Receiver<Vec<u8>>) {
    let mut link: Option<(u64, BufWriter<TcpStream>)> = None;
    let mut backoff = FIRST_BACKOFF;
    let mut retry_at: Option<Instant> = None;
    let dropped = |n: u64| inner.counters.dropped.fetch_add(n, Ordering::Relaxed);
    while let Ok(first) = queue.recv() {
        if link.is_none() {
            if retry_at.is_some_and(|t| Instant::now() < t) {
                dropped(1);
                continue;
            }
            match inner.connect(addr) {
                Ok(l) => {
                    link = Some(l);
                    backoff = FIRST_BACKOFF;
                    retry_at = None;
                }
                Err(_) => {
                    dropped(1);
                    retry_at = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(inner.options.max_backoff);
                    continue;
                }
            }
        }
        let (key, writer) = link.as_mut().expect("connected above");
        let mut batch = 1u64;
        let mut written = write_frame(writer, &first);
        while written.is_ok() && batch < MAX_BATCH as u64 {
            let Ok(next) = queue.try_recv() else { break };
            written = write_frame(writer, &next);
            batch += 1;
        }
        match written.and_then(|()| writer.flush()) {
            Ok(()) => {
                inner.counters.sent.fetch_add(batch, Ordering::Relaxed);
            }
            Err(_) => {
                // The peer went away (or stopped reading): reconnect on
                // the next envelope. Closed first, so dropping the writer
                // does not block on a flush again. Frames of the batch
                // that did go out are counted as dropped too.
                dropped(batch);
                let _ = writer.get_ref().shutdown(Shutdown::Both);
                inner.forget(*key);
                link = None;
            }
        }
    }
    if let Some((key, _)) = link {
        inner.forget(key);
    }
}

fn write_frame(writer: &mut impl Write, envelope: &[u8]) -> io::Result<()> {
    let len = u32::try_from(envelope.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "envelope above 4 GiB"))?;
    writer.write_all(&len.to_le_bytes())?;
    writer.write_all(envelope)
}

#[cfg(test)]
#[path = "tcp_tests.rs"]
mod tests;
