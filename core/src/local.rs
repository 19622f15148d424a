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

/// The network's faults, judged at each send (so they hold for nodes that
/// join later too).
#[derive(Default)]
struct Faults {
    /// Each node's group while partitioned; a node in no group is alone.
    groups: Option<HashMap<NodeId, usize>>,
    /// Nodes cut off from every other.
    isolated: HashSet<NodeId>,
    /// Links cut one way: (from, to).
    one_way: HashSet<(NodeId, NodeId)>,
    drop_rate: f64,
    delay: Duration,
}

impl Faults {
    fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        if from == to {
            return false;
        }
        let apart = self
            .groups
            .as_ref()
            .is_some_and(|g| match (g.get(&from), g.get(&to)) {
                (Some(a), Some(b)) => a != b,
                _ => true,
            });
        apart
            || self.isolated.contains(&from)
            || self.isolated.contains(&to)
            || self.one_way.contains(&(from, to))
    }

    fn heal(&mut self) {
        self.groups = None;
        self.isolated.clear();
        self.one_way.clear();
    }
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

/// A partition that names this node in two groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("node {0} is in two groups")]
pub struct InTwoGroups(pub NodeId);

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

    /// Splits the network into `groups`: a node reaches only the nodes of
    /// its own group, and a node named in no group (one that joins later
    /// included) reaches none. Replaces every earlier cut (partition,
    /// isolation, one-way cut).
    ///
    /// # Errors
    /// [`InTwoGroups`] naming a node given two groups; nothing changed then.
    pub fn partition(&self, groups: &[&[NodeId]]) -> Result<(), InTwoGroups> {
        let mut of = HashMap::new();
        for (i, group) in groups.iter().enumerate() {
            for &id in group.iter() {
                if of.insert(id, i).is_some_and(|g| g != i) {
                    return Err(InTwoGroups(id));
                }
            }
        }
        let mut f = self.inner.faults.write();
        f.heal();
        f.groups = Some(of);
        Ok(())
    }

    /// Cuts `id` off from every other node, both ways (nodes that join later
    /// included), until [`LocalNetwork::heal`] or a new partition.
    pub fn isolate(&self, id: NodeId) {
        self.inner.faults.write().isolated.insert(id);
    }

    /// Cuts the link from `from` to `to` only; `to` still reaches `from`
    /// (a one-way partition, as a half-broken NIC or firewall makes).
    pub fn cut_one_way(&self, from: NodeId, to: NodeId) {
        self.inner.faults.write().one_way.insert((from, to));
    }

    /// Restores every link (drop rate and delay stay as set).
    pub fn heal(&self) {
        self.inner.faults.write().heal();
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
            if f.is_cut(from, to) || (f.drop_rate > 0.0 && self.rng.lock().chance(f.drop_rate)) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::ReceiveError;

    /// Counts what reaches one node.
    #[derive(Default)]
    struct Count(AtomicU64);

    impl Inbox for Count {
        fn deliver(&self, _from: NodeId, _bytes: &[u8]) -> Result<(), ReceiveError> {
            self.0.fetch_add(1, Relaxed);
            Ok(())
        }
    }

    /// Which of `from → to` links deliver now.
    fn reaches(
        net: &LocalNetwork,
        boxes: &HashMap<NodeId, Arc<Count>>,
        from: NodeId,
        to: NodeId,
    ) -> bool {
        let before = boxes[&to].0.load(Relaxed);
        net.transport(from).send(to, vec![1]);
        boxes[&to].0.load(Relaxed) > before
    }

    fn network(ids: &[NodeId]) -> (LocalNetwork, HashMap<NodeId, Arc<Count>>) {
        let net = LocalNetwork::new();
        let boxes: HashMap<NodeId, Arc<Count>> = ids
            .iter()
            .map(|&id| (id, Arc::new(Count::default())))
            .collect();
        for (&id, b) in &boxes {
            net.register(id, Arc::clone(b) as Arc<dyn Inbox>);
        }
        (net, boxes)
    }

    #[test]
    fn a_partition_cuts_between_groups_and_leaves_unnamed_nodes_alone() {
        let (net, mut boxes) = network(&[1, 2, 3, 4]);
        net.partition(&[&[1, 2], &[3]]).unwrap();
        assert!(reaches(&net, &boxes, 1, 2) && reaches(&net, &boxes, 2, 1));
        assert!(!reaches(&net, &boxes, 1, 3) && !reaches(&net, &boxes, 3, 2));
        // Node 4 is in no group: alone, both ways.
        assert!(!reaches(&net, &boxes, 4, 1) && !reaches(&net, &boxes, 3, 4));
        // A node that joins later and is in no group is alone too.
        let late = Arc::new(Count::default());
        net.register(5, Arc::clone(&late) as Arc<dyn Inbox>);
        boxes.insert(5, late);
        assert!(!reaches(&net, &boxes, 5, 1) && !reaches(&net, &boxes, 1, 5));
        net.heal();
        assert!(reaches(&net, &boxes, 4, 1) && reaches(&net, &boxes, 3, 5));
    }

    #[test]
    fn a_node_in_two_groups_is_refused_and_nothing_changes() {
        let (net, boxes) = network(&[1, 2, 3]);
        net.isolate(3);
        assert_eq!(net.partition(&[&[1, 2], &[2, 3]]), Err(InTwoGroups(2)));
        // The isolation stands; no partition was made.
        assert!(reaches(&net, &boxes, 1, 2) && !reaches(&net, &boxes, 1, 3));
    }

    #[test]
    fn isolate_holds_for_nodes_that_join_later_and_one_way_cuts_one_way() {
        let (net, mut boxes) = network(&[1, 2]);
        net.isolate(1);
        let late = Arc::new(Count::default());
        net.register(3, Arc::clone(&late) as Arc<dyn Inbox>);
        boxes.insert(3, late);
        assert!(!reaches(&net, &boxes, 3, 1) && !reaches(&net, &boxes, 1, 3));
        assert!(reaches(&net, &boxes, 2, 3));
        net.heal();
        net.cut_one_way(1, 2);
        assert!(!reaches(&net, &boxes, 1, 2) && reaches(&net, &boxes, 2, 1));
        // A partition replaces the one-way cut.
        net.partition(&[&[1, 2, 3]]).unwrap();
        assert!(reaches(&net, &boxes, 1, 2));
    }
}
