//! In-process transport for one-process clusters: real threaded nodes whose
//! envelopes go through [`LocalNetwork`], which can partition, drop and delay
//! them. [`LocalCluster`] starts and restarts whole clusters on it (keeping
//! each node's storage across restarts). Used by examples, tests, benchmarks
//! and the Python `Raft(nodes)` mirror.

use crate::consensus::raft::Raft;
use crate::consensus::Protocol;
use crate::error::ProposeError;
use crate::rng::Rng;
use crate::runtime::{Inbox, Node, NodeConfig, StartError, StateMachine, Transport};
use crate::storage::MemStorage;
use crate::types::{NodeId, Role};
use crossbeam_channel::{unbounded, RecvTimeoutError, Sender};
use parking_lot::{Mutex, RwLock};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Faults {
    cut: HashSet<(NodeId, NodeId)>,
    drop_rate: f64,
    delay: Duration,
}

struct Delayed {
    at: Instant,
    seq: u64,
    from: NodeId,
    to: NodeId,
    bytes: Vec<u8>,
}

struct NetInner {
    inboxes: RwLock<HashMap<NodeId, Arc<dyn Inbox>>>,
    faults: RwLock<Faults>,
    rng: Mutex<Rng>,
    delayer: Mutex<Option<Sender<Delayed>>>,
    seq: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
}

/// An in-process network. Cheap to clone (clones share it); thread-safe.
#[derive(Clone)]
pub struct LocalNetwork {
    inner: Arc<NetInner>,
}

impl Default for LocalNetwork {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for LocalNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalNetwork")
            .field("delivered", &self.delivered())
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl LocalNetwork {
    /// A network with no faults.
    pub fn new() -> Self {
        LocalNetwork {
            inner: Arc::new(NetInner {
                inboxes: RwLock::new(HashMap::new()),
                faults: RwLock::new(Faults::default()),
                rng: Mutex::new(Rng::new(0x10CA_1000)),
                delayer: Mutex::new(None),
                seq: AtomicU64::new(0),
                delivered: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
            }),
        }
    }

    /// The transport node `from` sends through.
    pub fn transport(&self, from: NodeId) -> LocalTransport {
        LocalTransport {
            net: Arc::clone(&self.inner),
            from,
        }
    }

    /// Routes envelopes for `id` to `inbox` (replacing any earlier one).
    pub fn register(&self, id: NodeId, inbox: Arc<dyn Inbox>) {
        self.inner.inboxes.write().insert(id, inbox);
    }

    /// Routes envelopes for `id` to `inbox` unless a node still running has
    /// that id here: returns false then, and changes nothing (a closed
    /// node's place is taken, as a restart does).
    pub fn register_new(&self, id: NodeId, inbox: Arc<dyn Inbox>) -> bool {
        let mut inboxes = self.inner.inboxes.write();
        if inboxes.get(&id).is_some_and(|i| !i.is_closed()) {
            return false;
        }
        inboxes.insert(id, inbox);
        true
    }

    /// True when a node still running has `id` on this network.
    pub fn has_running(&self, id: NodeId) -> bool {
        self.inner
            .inboxes
            .read()
            .get(&id)
            .is_some_and(|i| !i.is_closed())
    }

    /// Stops routing to `id`; its envelopes are dropped.
    pub fn unregister(&self, id: NodeId) {
        self.inner.inboxes.write().remove(&id);
    }

    /// Splits nodes into groups that cannot reach one another (replacing any
    /// earlier partition).
    pub fn partition(&self, groups: &[&[NodeId]]) {
        let mut f = self.inner.faults.write();
        f.cut.clear();
        for (gi, g) in groups.iter().enumerate() {
            for (hi, h) in groups.iter().enumerate() {
                if gi != hi {
                    for &a in g.iter() {
                        for &b in h.iter() {
                            f.cut.insert((a, b));
                        }
                    }
                }
            }
        }
    }

    /// Cuts `id` off from every registered node, both ways.
    pub fn isolate(&self, id: NodeId) {
        let ids: Vec<NodeId> = self.inner.inboxes.read().keys().copied().collect();
        let mut f = self.inner.faults.write();
        for other in ids {
            if other != id {
                f.cut.insert((id, other));
                f.cut.insert((other, id));
            }
        }
    }

    /// Cuts the link from `from` to `to` only; `to` still reaches `from`
    /// (a one-way partition, as a half-broken NIC or firewall makes).
    pub fn cut_one_way(&self, from: NodeId, to: NodeId) {
        self.inner.faults.write().cut.insert((from, to));
    }

    /// Restores every link (drop rate and delay stay as set).
    pub fn heal(&self) {
        self.inner.faults.write().cut.clear();
    }

    /// Drops each envelope with probability `rate` (clamped to `[0, 1]`).
    pub fn set_drop_rate(&self, rate: f64) {
        self.inner.faults.write().drop_rate = rate.clamp(0.0, 1.0);
    }

    /// Delays every envelope by `delay` (zero: deliver on the sender's thread).
    pub fn set_delay(&self, delay: Duration) {
        self.inner.faults.write().delay = delay;
    }

    /// Envelopes delivered so far.
    pub fn delivered(&self) -> u64 {
        self.inner.delivered.load(Relaxed)
    }

    /// Envelopes dropped so far (cut links, random drops, unknown nodes).
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Relaxed)
    }
}

impl NetInner {
    fn deliver(&self, from: NodeId, to: NodeId, bytes: &[u8]) {
        let inbox = self.inboxes.read().get(&to).cloned();
        match inbox {
            Some(inbox) if inbox.deliver(from, bytes).is_ok() => {
                self.delivered.fetch_add(1, Relaxed);
            }
            _ => {
                self.dropped.fetch_add(1, Relaxed);
            }
        }
    }

    fn send(self: &Arc<Self>, from: NodeId, to: NodeId, bytes: Vec<u8>) {
        let delay = {
            let f = self.faults.read();
            if f.cut.contains(&(from, to))
                || (f.drop_rate > 0.0 && self.rng.lock().chance(f.drop_rate))
            {
                self.dropped.fetch_add(1, Relaxed);
                return;
            }
            f.delay
        };
        if delay.is_zero() {
            self.deliver(from, to, &bytes);
            return;
        }
        let item = Delayed {
            at: Instant::now() + delay,
            seq: self.seq.fetch_add(1, Relaxed),
            from,
            to,
            bytes,
        };
        let mut d = self.delayer.lock();
        let tx = d.get_or_insert_with(|| spawn_delayer(Arc::downgrade(self)));
        if tx.send(item).is_err() {
            self.dropped.fetch_add(1, Relaxed);
        }
    }
}

/// A thread that delivers delayed envelopes when they are due. It ends when
/// the network is dropped.
fn spawn_delayer(net: Weak<NetInner>) -> Sender<Delayed> {
    let (tx, rx) = unbounded::<Delayed>();
    let spawned = std::thread::Builder::new()
        .name("consenso-local-delay".into())
        .spawn(move || {
            let mut heap: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
            let mut items: HashMap<u64, Delayed> = HashMap::new();
            loop {
                let next = heap.peek().map(|Reverse((at, _))| *at);
                let got = match next {
                    Some(at) => rx.recv_deadline(at),
                    None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                };
                match got {
                    Ok(d) => {
                        heap.push(Reverse((d.at, d.seq)));
                        items.insert(d.seq, d);
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
                let now = Instant::now();
                while let Some(Reverse((at, seq))) = heap.peek().copied() {
                    if at > now {
                        break;
                    }
                    heap.pop();
                    if let (Some(d), Some(net)) = (items.remove(&seq), net.upgrade()) {
                        net.deliver(d.from, d.to, &d.bytes);
                    }
                }
            }
        });
    if let Err(e) = spawned {
        ::log::error!("could not start the local network's delay thread: {e}");
    }
    tx
}

/// The [`Transport`] of one node on a [`LocalNetwork`].
pub struct LocalTransport {
    net: Arc<NetInner>,
    from: NodeId,
}

impl Transport for LocalTransport {
    fn send(&self, to: NodeId, bytes: Vec<u8>) {
        self.net.send(self.from, to, bytes);
    }
}

type MachineFactory = Box<dyn Fn(NodeId) -> Box<dyn StateMachine> + Send + Sync>;

struct Slot<P: Protocol> {
    id: NodeId,
    node: Option<Node<P>>,
    storage: MemStorage,
}

/// A whole cluster of threaded nodes on one [`LocalNetwork`], each with
/// storage that survives [`LocalCluster::stop`] and
/// [`LocalCluster::restart`]: in memory, or, when the template names a
/// `data_dir`, a [`crate::storage::FileStorage`] in its `node<id>`
/// subdirectory. Methods take `&self` or `&mut self` as noted;
/// the nodes themselves are thread-safe.
pub struct LocalCluster<P: Protocol = Raft> {
    net: LocalNetwork,
    template: NodeConfig<P::Config>,
    slots: Vec<Slot<P>>,
    machines: MachineFactory,
}

impl LocalCluster<Raft> {
    /// Starts `n` Raft nodes (ids `1..=n`) with default settings; each node
    /// gets the state machine `machine(id)`.
    ///
    /// # Errors
    /// [`StartError`] if a node does not start.
    pub fn start<M, F>(n: usize, machine: F) -> Result<Self, StartError>
    where
        M: StateMachine,
        F: Fn(NodeId) -> M + Send + Sync + 'static,
    {
        let voters: Vec<NodeId> = (1..=n as NodeId).collect();
        Self::start_with(NodeConfig::new(1, voters), machine)
    }
}

impl<P: Protocol> LocalCluster<P> {
    /// Starts one node per voter in `template.voters`, each with `template`'s
    /// settings (its `id` is replaced per node).
    ///
    /// # Errors
    /// [`StartError`] if a node does not start (the others are shut down).
    pub fn start_with<M, F>(template: NodeConfig<P::Config>, machine: F) -> Result<Self, StartError>
    where
        M: StateMachine,
        F: Fn(NodeId) -> M + Send + Sync + 'static,
    {
        template.validate()?;
        let mut cluster = LocalCluster {
            net: LocalNetwork::new(),
            slots: template
                .voters
                .iter()
                .map(|&id| Slot {
                    id,
                    node: None,
                    storage: MemStorage::new(),
                })
                .collect(),
            template,
            machines: Box::new(move |id| Box::new(machine(id))),
        };
        for id in cluster.ids() {
            cluster.restart(id)?;
        }
        Ok(cluster)
    }

    /// The network the nodes talk over (to partition, drop or delay).
    pub fn network(&self) -> &LocalNetwork {
        &self.net
    }

    /// Node ids.
    pub fn ids(&self) -> Vec<NodeId> {
        self.slots.iter().map(|s| s.id).collect()
    }

    /// The running node `id`, if it runs.
    pub fn node(&self, id: NodeId) -> Option<&Node<P>> {
        self.slots.iter().find(|s| s.id == id)?.node.as_ref()
    }

    /// The in-memory storage of node `id` (kept across restarts; unused
    /// when the cluster has a data directory).
    pub fn storage(&self, id: NodeId) -> Option<&MemStorage> {
        self.slots.iter().find(|s| s.id == id).map(|s| &s.storage)
    }

    /// Stops node `id` (joining its threads); its storage is kept.
    pub fn stop(&mut self, id: NodeId) {
        self.net.unregister(id);
        if let Some(slot) = self.slots.iter_mut().find(|s| s.id == id) {
            if let Some(node) = slot.node.take() {
                node.shutdown();
            }
        }
    }

    /// Starts node `id` again from its storage with a fresh state machine
    /// (which replays the log). No-op when it runs.
    ///
    /// # Errors
    /// [`StartError`] if it does not start.
    pub fn restart(&mut self, id: NodeId) -> Result<(), StartError> {
        let Some(pos) = self.slots.iter().position(|s| s.id == id) else {
            return Err(StartError::Config(crate::ConfigError::new(
                "id",
                format!("node {id} is not in this cluster"),
            )));
        };
        if self.slots[pos].node.is_some() {
            return Ok(());
        }
        let mut config = self.template.clone();
        config.id = id;
        let transport = self.net.transport(id);
        let machine = (self.machines)(id);
        let node = match config.data_dir.take() {
            Some(root) => {
                config.data_dir = Some(root.join(format!("node{id}")));
                Node::<P>::open(config, transport, machine)?
            }
            None => Node::<P>::start(config, self.slots[pos].storage.clone(), transport, machine)?,
        };
        self.net.register(id, node.inbox());
        self.slots[pos].node = Some(node);
        Ok(())
    }

    /// The running node that leads the highest term, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.slots
            .iter()
            .filter_map(|s| s.node.as_ref())
            .map(|n| n.status())
            .filter(|s| s.role == Role::Leader)
            .max_by_key(|s| s.term)
            .map(|s| s.id)
    }

    /// Waits (polling) until a running node leads; `None` after `timeout`.
    pub fn wait_for_leader(&self, timeout: Duration) -> Option<NodeId> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader() {
                return Some(l);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Proposes through whichever node leads, following leader hints and
    /// retrying until `timeout`.
    ///
    /// # Errors
    /// The last [`ProposeError`] seen when time ran out.
    pub fn propose(&self, data: &[u8], timeout: Duration) -> Result<Vec<u8>, ProposeError> {
        let deadline = Instant::now() + timeout;
        let mut target = self.leader();
        let mut last = ProposeError::NotLeader { leader: None };
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(last);
            }
            let node = target.and_then(|t| self.node(t));
            match node {
                Some(node) => match node.propose(data.to_vec(), deadline - now) {
                    Ok(r) => return Ok(r),
                    Err(ProposeError::NotLeader { leader }) => {
                        last = ProposeError::NotLeader { leader };
                        target = leader.or_else(|| self.leader());
                    }
                    Err(e @ (ProposeError::Timeout | ProposeError::Closed)) => return Err(e),
                    Err(e) => {
                        last = e;
                        target = self.leader();
                    }
                },
                None => target = self.leader(),
            }
            if target.is_none() {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    /// Stops every node and joins their threads.
    pub fn shutdown(mut self) {
        for id in self.ids() {
            self.stop(id);
        }
    }
}

impl<P: Protocol> Drop for LocalCluster<P> {
    fn drop(&mut self) {
        for id in self.ids() {
            self.stop(id);
        }
    }
}
