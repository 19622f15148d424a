//! A node whose protocol is chosen at run time, its timing given in real
//! time and its members by name: the form the C and Python surfaces take.
//! The settings are checked here, once, so every surface rejects the same
//! things with the same words.

use super::config::{NodeConfig, SnapshotPolicy};
use super::node::{wait_for, Inbox, Node, ReceiveError, StartError};
use super::status::Status;
use super::{ProposeCallback, ReadCallback, StateChangeCallback, StateMachine, Transport};
use crate::consensus::paxos::{MultiPaxos, PaxosConfig};
use crate::consensus::raft::{Raft, RaftConfig};
use crate::consensus::replication::ReplicationLimits;
use crate::consensus::zab::{Zab, ZabConfig};
use crate::consensus::{Protocol, ProtocolKind, Timing};
use crate::error::{ConfigError, ProposeError};
use crate::hashing::hash64;
use crate::storage::FileOptions;
use crate::types::{Index, NodeId};
use bytes::Bytes;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The shortest heartbeat interval a node takes.
pub const MIN_HEARTBEAT: Duration = Duration::from_millis(1);

/// Ticks per heartbeat when the heartbeat allows it (so the election
/// timeout is drawn with a fifth of a heartbeat's resolution).
const TICKS_PER_HEARTBEAT: u32 = 5;

/// A leader's heartbeat and the range a follower's election timeout is
/// drawn from, in real time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Shortest election timeout.
    pub election_min: Duration,
    /// Longest election timeout (equal to `election_min` for a fixed one).
    pub election_max: Duration,
    /// How often a leader sends heartbeats.
    pub heartbeat: Duration,
}

impl Default for Timeouts {
    /// Elections after 150 to 300 ms without a leader, heartbeats every
    /// 50 ms (the Raft paper's figures).
    fn default() -> Self {
        Timeouts {
            election_min: Duration::from_millis(150),
            election_max: Duration::from_millis(300),
            heartbeat: Duration::from_millis(50),
        }
    }
}

impl Timeouts {
    /// The node's tick and the protocol timing in ticks: a tick is a fifth
    /// of the heartbeat (at least 1 ms, the heartbeat then a whole number
    /// of ticks, rounded down); election bounds are rounded up to ticks,
    /// and the upper bound is exclusive, one tick past the longest.
    ///
    /// # Errors
    /// A [`ConfigError`] naming `heartbeat_interval` (under
    /// [`MIN_HEARTBEAT`]) or `election_timeout` (not above the heartbeat,
    /// bounds reversed, or too long to count in ticks).
    pub fn to_ticks(&self) -> Result<(Duration, Timing), ConfigError> {
        let Timeouts {
            election_min,
            election_max,
            heartbeat,
        } = *self;
        if heartbeat < MIN_HEARTBEAT {
            return Err(ConfigError::new(
                "heartbeat_interval",
                format!("must be at least {MIN_HEARTBEAT:?}, got {heartbeat:?}"),
            ));
        }
        if election_min <= heartbeat {
            return Err(ConfigError::new(
                "election_timeout",
                format!(
                    "must be longer than heartbeat_interval ({heartbeat:?}), got {election_min:?}"
                ),
            ));
        }
        if election_max < election_min {
            return Err(ConfigError::new(
                "election_timeout",
                format!("the longest ({election_max:?}) is below the shortest ({election_min:?})"),
            ));
        }
        let tick = (heartbeat / TICKS_PER_HEARTBEAT).max(MIN_HEARTBEAT);
        let ticks = |d: Duration| {
            let n = d.as_nanos().div_ceil(tick.as_nanos());
            u32::try_from(n)
                .ok()
                .filter(|&n| n < u32::MAX)
                .ok_or_else(|| {
                    ConfigError::new(
                        "election_timeout",
                        format!("{d:?} is too long (at most {:?})", tick * (u32::MAX - 1)),
                    )
                })
        };
        let heartbeat_ticks = (heartbeat.as_nanos() / tick.as_nanos()) as u32;
        let election_ticks_min = ticks(election_min)?.max(heartbeat_ticks + 1);
        let election_ticks_max = ticks(election_max)?.max(election_ticks_min) + 1;
        let timing = Timing {
            heartbeat_ticks,
            election_ticks_min,
            election_ticks_max,
        };
        timing.validate()?;
        Ok((tick, timing))
    }
}

/// The members of a cluster by name, as the C-free surfaces know them, and
/// the node ids the library uses: a name's id is a stable 64-bit hash of it,
/// the same in every process whatever the order of the list.
#[derive(Clone, Debug)]
pub struct Members {
    names: Vec<String>,
    ids: Vec<NodeId>,
}

/// Seed of the name hash (changing it changes every id on the wire).
const NAME_SEED: u64 = 0x636f_6e73_656e_736f;

impl Members {
    /// The members named `names`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming `peers`: no names, an empty name, a name
    /// given twice, or two names whose ids collide (one in 2^64 per pair).
    pub fn new(names: Vec<String>) -> Result<Self, ConfigError> {
        if names.is_empty() {
            return Err(ConfigError::new("peers", "must name at least one node"));
        }
        let mut ids = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            if name.is_empty() {
                return Err(ConfigError::new("peers", "a node name is empty"));
            }
            if names[..i].contains(name) {
                return Err(ConfigError::new(
                    "peers",
                    format!("{name:?} is named twice"),
                ));
            }
            let id = Self::id_for(name);
            if let Some(j) = ids.iter().position(|&other| other == id) {
                return Err(ConfigError::new(
                    "peers",
                    format!("{name:?} and {:?} map to one node id", names[j]),
                ));
            }
            ids.push(id);
        }
        Ok(Members { names, ids })
    }

    /// The id a member named `name` has (never 0).
    pub fn id_for(name: &str) -> NodeId {
        hash64(name.as_bytes(), NAME_SEED).max(1)
    }

    /// The id of member `name`, the node a surface starts as `name`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming `name` when it is not one of the members.
    pub fn member_id(&self, name: &str) -> Result<NodeId, ConfigError> {
        self.id(name).ok_or_else(|| {
            ConfigError::new(
                "name",
                format!("{name:?} is not one of the peers {:?}", self.names),
            )
        })
    }

    /// The id of member `name`, if it is one.
    pub fn id(&self, name: &str) -> Option<NodeId> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| self.ids[i])
    }

    /// The name of the member with id `id`, if there is one.
    pub fn name(&self, id: NodeId) -> Option<&str> {
        self.ids
            .iter()
            .position(|&i| i == id)
            .map(|i| self.names[i].as_str())
    }

    /// Every member's id, in the order the names were given.
    pub fn ids(&self) -> &[NodeId] {
        &self.ids
    }

    /// Every member's name, in the order given.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// Settings of an [`AnyNode`]. `Default` gives a Raft node with the
/// runtime's defaults; set `id` and `voters`.
#[derive(Clone, Debug)]
pub struct AnyNodeConfig {
    /// The protocol the node runs.
    pub protocol: ProtocolKind,
    /// This node's id (non-zero).
    pub id: NodeId,
    /// Every voter, this node included.
    pub voters: Vec<NodeId>,
    /// Envelopes from another cluster id are rejected.
    pub cluster_id: u64,
    /// Heartbeat and election timeouts.
    pub timeouts: Timeouts,
    /// Batching and memory limits of a leader (a transport with a message
    /// size limit, such as UDP, lowers `max_bytes_per_message`).
    pub limits: ReplicationLimits,
    /// A callback-style proposal or read that has not completed after this
    /// long fails with `Timeout`.
    pub proposal_timeout: Duration,
    /// The node's data directory; `None` keeps everything in memory.
    pub data_dir: Option<PathBuf>,
    /// How the data directory is written.
    pub storage: FileOptions,
    /// When the state machine is snapshotted.
    pub snapshot: SnapshotPolicy,
    /// Seed of the protocol's randomness; `None` derives one from the clock.
    pub seed: Option<u64>,
}

impl Default for AnyNodeConfig {
    fn default() -> Self {
        let base = NodeConfig::<()>::new(0, Vec::new());
        AnyNodeConfig {
            protocol: ProtocolKind::Raft,
            id: 0,
            voters: Vec::new(),
            cluster_id: base.cluster_id,
            timeouts: Timeouts::default(),
            limits: ReplicationLimits::default(),
            proposal_timeout: base.proposal_timeout,
            data_dir: None,
            storage: base.storage,
            snapshot: base.snapshot,
            seed: None,
        }
    }
}

impl AnyNodeConfig {
    /// The runtime config of protocol `P` whose own settings `protocol`
    /// builds from the timing.
    fn node_config<C: Default>(&self, tick: Duration, protocol: C) -> NodeConfig<C> {
        let mut config = NodeConfig::new(self.id, self.voters.clone());
        config.protocol = protocol;
        config.cluster_id = self.cluster_id;
        config.tick_interval = tick;
        config.proposal_timeout = self.proposal_timeout;
        config.data_dir = self.data_dir.clone();
        config.storage = self.storage;
        config.snapshot = self.snapshot;
        config.seed = self.seed;
        config
    }
}

/// What [`AnyNode`] needs of a [`Node`], whatever its protocol.
trait ErasedNode: Send + Sync {
    fn receive(&self, from: NodeId, bytes: &[u8]) -> Result<(), ReceiveError>;
    fn propose_with(&self, data: Bytes, done: ProposeCallback);
    fn read_barrier_with(&self, done: ReadCallback);
    fn status(&self) -> Status;
    fn is_closed(&self) -> bool;
    fn is_node_thread(&self) -> bool;
    fn shutdown(&self);
    fn inbox(&self) -> Arc<dyn Inbox>;
}

impl<P: Protocol> ErasedNode for Node<P> {
    fn receive(&self, from: NodeId, bytes: &[u8]) -> Result<(), ReceiveError> {
        (**self).receive(from, bytes)
    }
    fn propose_with(&self, data: Bytes, done: ProposeCallback) {
        (**self).propose_with(data, done)
    }
    fn read_barrier_with(&self, done: ReadCallback) {
        (**self).read_barrier_with(done)
    }
    fn status(&self) -> Status {
        (**self).status()
    }
    fn is_closed(&self) -> bool {
        (**self).is_closed()
    }
    fn is_node_thread(&self) -> bool {
        (**self).is_node_thread()
    }
    fn shutdown(&self) {
        Node::shutdown(self)
    }
    fn inbox(&self) -> Arc<dyn Inbox> {
        (**self).inbox()
    }
}

/// A running node of any protocol. Thread-safe: every method takes `&self`
/// and may be called from any thread, the node's own callbacks included
/// (where [`AnyNode::shutdown`] stops the node without waiting for it).
/// Dropping it shuts the node down.
pub struct AnyNode {
    protocol: ProtocolKind,
    id: NodeId,
    node: Box<dyn ErasedNode>,
}

impl std::fmt::Debug for AnyNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnyNode")
            .field("protocol", &self.protocol)
            .field("id", &self.id)
            .finish()
    }
}

impl AnyNode {
    /// Starts a node on the storage `config` names (as [`Node::open`]),
    /// sending through `transport`, applying to `machine`, and calling
    /// `on_state_change` from the driver thread on role, term or leader
    /// changes.
    ///
    /// # Errors
    /// [`StartError`]: a rejected setting (see [`Timeouts::to_ticks`] and
    /// the protocol's own checks of `id` and `voters`), a data directory
    /// that cannot be used, a snapshot the machine refuses, or a failed
    /// spawn. Nothing was started then.
    pub fn open<T, M>(
        config: &AnyNodeConfig,
        transport: T,
        machine: M,
        on_state_change: Option<StateChangeCallback>,
    ) -> Result<Self, StartError>
    where
        T: Transport,
        M: StateMachine,
    {
        let (tick, timing) = config.timeouts.to_ticks()?;
        let node: Box<dyn ErasedNode> = match config.protocol {
            ProtocolKind::Raft => {
                let protocol = RaftConfig {
                    timing,
                    limits: config.limits,
                    ..RaftConfig::default()
                };
                let c = config.node_config(tick, protocol);
                Box::new(Node::<Raft>::open_observed(
                    c,
                    transport,
                    machine,
                    on_state_change,
                )?)
            }
            ProtocolKind::MultiPaxos => {
                let protocol = PaxosConfig {
                    timing,
                    limits: config.limits,
                };
                let c = config.node_config(tick, protocol);
                Box::new(Node::<MultiPaxos>::open_observed(
                    c,
                    transport,
                    machine,
                    on_state_change,
                )?)
            }
            ProtocolKind::Zab => {
                let protocol = ZabConfig {
                    timing,
                    limits: config.limits,
                    ..ZabConfig::default()
                };
                let c = config.node_config(tick, protocol);
                Box::new(Node::<Zab>::open_observed(
                    c,
                    transport,
                    machine,
                    on_state_change,
                )?)
            }
        };
        Ok(AnyNode {
            protocol: config.protocol,
            id: config.id,
            node,
        })
    }

    /// The protocol this node runs.
    pub fn protocol(&self) -> ProtocolKind {
        self.protocol
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Hands bytes received from peer `from` to the node (decoded on the
    /// caller's thread; never blocks).
    ///
    /// # Errors
    /// [`ReceiveError`]: rejected bytes, a full queue or a closed node;
    /// nothing was queued, and each is counted in the status.
    pub fn receive(&self, from: NodeId, bytes: &[u8]) -> Result<(), ReceiveError> {
        self.node.receive(from, bytes)
    }

    /// Proposes `data` without blocking; `done` is called exactly once, from
    /// a node thread or right away on the caller's.
    pub fn propose_with(&self, data: impl Into<Bytes>, done: ProposeCallback) {
        self.node.propose_with(data.into(), done)
    }

    /// Proposes `data` and blocks until it is applied here or `timeout`
    /// passes; returns the state machine's response.
    ///
    /// # Errors
    /// [`ProposeError`]: `Timeout` means the entry may still commit;
    /// `WouldBlock` from one of the node's own threads (a callback: use
    /// [`AnyNode::propose_with`]).
    pub fn propose(
        &self,
        data: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Vec<u8>, ProposeError> {
        wait_for(timeout, self.is_node_thread(), |done| {
            self.propose_with(data, done)
        })
    }

    /// Starts a linearizable read barrier; `done` gets the read index (or
    /// an error), exactly once.
    pub fn read_barrier_with(&self, done: ReadCallback) {
        self.node.read_barrier_with(done)
    }

    /// Blocks until a linearizable read may be served from this node's
    /// machine; returns the index applied through.
    ///
    /// # Errors
    /// `NotLeader`, `Busy`, `Timeout`, `Closed`, or `WouldBlock` from one of
    /// the node's own threads (a callback).
    pub fn read_barrier(&self, timeout: Duration) -> Result<Index, ProposeError> {
        wait_for(timeout, self.is_node_thread(), |done| {
            self.read_barrier_with(done)
        })
    }

    /// Role, term, leader, indexes and counters. Lock-free.
    pub fn status(&self) -> Status {
        self.node.status()
    }

    /// True once the node was shut down or stopped on an error.
    pub fn is_closed(&self) -> bool {
        self.node.is_closed()
    }

    /// A handle that delivers envelopes to this node, for in-process
    /// transports ([`crate::local::LocalNetwork::register`]); after shutdown
    /// it rejects everything with `Closed`.
    pub fn inbox(&self) -> Arc<dyn Inbox> {
        self.node.inbox()
    }

    /// True when the calling thread is one of this node's threads.
    pub fn is_node_thread(&self) -> bool {
        self.node.is_node_thread()
    }

    /// Stops the node and waits for its threads (not when called from one
    /// of them). Idempotent; pending proposals and reads fail with `Closed`.
    pub fn shutdown(&self) {
        self.node.shutdown()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeouts(min_ms: u64, max_ms: u64, heartbeat_us: u64) -> Timeouts {
        Timeouts {
            election_min: Duration::from_millis(min_ms),
            election_max: Duration::from_millis(max_ms),
            heartbeat: Duration::from_micros(heartbeat_us),
        }
    }

    #[test]
    fn the_defaults_tick_every_ten_milliseconds() {
        let (tick, timing) = Timeouts::default().to_ticks().unwrap();
        assert_eq!(tick, Duration::from_millis(10));
        assert_eq!(
            (
                timing.heartbeat_ticks,
                timing.election_ticks_min,
                timing.election_ticks_max
            ),
            (5, 15, 31)
        );
    }

    #[test]
    fn short_heartbeats_tick_every_millisecond() {
        let (tick, timing) = timeouts(4, 4, 3_000).to_ticks().unwrap();
        assert_eq!(tick, MIN_HEARTBEAT);
        // A fixed timeout: the exclusive bound is one tick past it.
        assert_eq!(
            (
                timing.heartbeat_ticks,
                timing.election_ticks_min,
                timing.election_ticks_max
            ),
            (3, 4, 5)
        );
    }

    #[test]
    fn bad_timeouts_name_their_setting() {
        let field = |t: Timeouts| t.to_ticks().unwrap_err().field;
        assert_eq!(field(timeouts(150, 300, 0)), "heartbeat_interval");
        assert_eq!(field(timeouts(150, 300, 999)), "heartbeat_interval");
        assert_eq!(field(timeouts(50, 300, 50_000)), "election_timeout");
        assert_eq!(field(timeouts(300, 150, 50_000)), "election_timeout");
        let huge = Timeouts {
            election_min: Duration::from_secs(1),
            election_max: Duration::MAX,
            heartbeat: MIN_HEARTBEAT,
        };
        assert_eq!(field(huge), "election_timeout");
        let huge = Timeouts {
            election_min: Duration::MAX,
            election_max: Duration::MAX,
            heartbeat: Duration::MAX / 2,
        };
        // A heartbeat of half of forever ticks once; the timeout fits.
        assert!(huge.to_ticks().is_ok());
    }

    #[test]
    fn members_map_names_to_ids_whatever_their_order() {
        let a = Members::new(vec!["n1".into(), "n2".into(), "n3".into()]).unwrap();
        let b = Members::new(vec!["n3".into(), "n1".into(), "n2".into()]).unwrap();
        for name in ["n1", "n2", "n3"] {
            let id = a.id(name).unwrap();
            assert_eq!(b.id(name), Some(id));
            assert_eq!(id, Members::id_for(name));
            assert_ne!(id, 0);
            assert_eq!(a.name(id), Some(name));
        }
        assert_eq!(a.id("n4"), None);
        assert_eq!(a.name(12345), None);
        assert_eq!(a.names(), ["n1", "n2", "n3"]);
        assert_eq!(a.ids().len(), 3);
    }

    #[test]
    fn seconds_become_durations() {
        let d = |s: f64| crate::duration_from_seconds("t", s);
        assert_eq!(d(0.05).unwrap(), Duration::from_millis(50));
        assert_eq!(d(0.0).unwrap(), Duration::ZERO);
        assert_eq!(d(1e-12).unwrap(), Duration::from_nanos(1));
        assert_eq!(d(f64::INFINITY).unwrap(), Duration::MAX);
        assert_eq!(d(1e300).unwrap(), Duration::MAX);
        assert_eq!(d(f64::NAN).unwrap_err().field, "t");
        assert_eq!(d(-1.0).unwrap_err().field, "t");
    }

    #[test]
    fn a_node_must_be_one_of_its_peers() {
        let m = Members::new(vec!["a".into(), "b".into()]).unwrap();
        assert_eq!(m.member_id("b").unwrap(), Members::id_for("b"));
        let e = m.member_id("c").unwrap_err();
        assert_eq!(e.field, "name");
        assert!(e.reason.contains("\"c\" is not one of the peers"), "{e}");
    }

    #[test]
    fn bad_member_lists_are_refused() {
        let err = |names: &[&str]| {
            Members::new(names.iter().map(|n| n.to_string()).collect())
                .unwrap_err()
                .to_string()
        };
        assert!(err(&[]).contains("at least one"));
        assert!(err(&["a", ""]).contains("empty"));
        assert!(err(&["a", "b", "a"]).contains("\"a\" is named twice"));
    }
}
