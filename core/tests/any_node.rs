//! `AnyNode`, the protocol-chosen-at-run-time node the C and Python
//! surfaces wrap: three nodes of each protocol in one process, wired by a
//! transport of the test's own, elect, commit in one order, answer reads,
//! refuse on followers, and shut down cleanly; bad settings are refused.

use consenso::consensus::ProtocolKind;
use consenso::runtime::{AnyNode, AnyNodeConfig, Members, StartError, StateMachine, Timeouts};
use consenso::{NodeId, ProposeError};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

type Registry = Arc<Mutex<HashMap<NodeId, Weak<AnyNode>>>>;

/// Records every command it applies, in order, and answers with its index.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Vec<u8>>>>);

impl StateMachine for Recorder {
    fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8> {
        self.0.lock().push(command.to_vec());
        index.to_le_bytes().to_vec()
    }
}

fn config(protocol: ProtocolKind, id: NodeId, voters: &[NodeId]) -> AnyNodeConfig {
    AnyNodeConfig {
        protocol,
        id,
        voters: voters.to_vec(),
        timeouts: Timeouts {
            election_min: Duration::from_millis(60),
            election_max: Duration::from_millis(120),
            heartbeat: Duration::from_millis(15),
        },
        ..AnyNodeConfig::default()
    }
}

struct Cluster {
    nodes: Vec<Arc<AnyNode>>,
    machines: Vec<Recorder>,
    members: Members,
}

fn start(protocol: ProtocolKind) -> Cluster {
    let members = Members::new(vec!["a".into(), "b".into(), "c".into()]).unwrap();
    let registry: Registry = Arc::default();
    let mut nodes = Vec::new();
    let mut machines = Vec::new();
    for (i, &id) in members.ids().iter().enumerate() {
        // Each node lists the voters in an order of its own.
        let mut voters = members.ids().to_vec();
        voters.rotate_left(i);
        let reg = Arc::clone(&registry);
        let send = move |to: NodeId, bytes: Vec<u8>| {
            let peer = reg.lock().get(&to).and_then(Weak::upgrade);
            if let Some(peer) = peer {
                let _ = peer.receive(id, &bytes);
            }
        };
        let machine = Recorder::default();
        let node =
            AnyNode::open(&config(protocol, id, &voters), send, machine.clone(), None).unwrap();
        assert_eq!((node.id(), node.protocol()), (id, protocol));
        let node = Arc::new(node);
        registry.lock().insert(id, Arc::downgrade(&node));
        nodes.push(node);
        machines.push(machine);
    }
    Cluster {
        nodes,
        machines,
        members,
    }
}

impl Cluster {
    fn leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let leaders: Vec<usize> = (0..self.nodes.len())
                .filter(|&i| {
                    let s = self.nodes[i].status();
                    s.leader == Some(self.nodes[i].id()) && s.role_name() != "candidate"
                })
                .collect();
            if let [one] = leaders.as_slice() {
                if self.nodes[*one]
                    .read_barrier(Duration::from_millis(500))
                    .is_ok()
                {
                    return *one;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("no leader within {timeout:?}");
    }
}

fn a_cluster_elects_commits_and_shuts_down(protocol: ProtocolKind) {
    let cluster = start(protocol);
    let l = cluster.leader(Duration::from_secs(10));
    let leader = &cluster.nodes[l];
    for i in 0..100u32 {
        let answer = leader
            .propose(i.to_le_bytes().to_vec(), Duration::from_secs(5))
            .unwrap();
        assert_eq!(answer.len(), 8, "the machine's answer comes back");
    }
    let read = leader.read_barrier(Duration::from_secs(5)).unwrap();
    assert!(read >= 100);
    // A quorum backs the leader in its term (Raft's votedFor, the ballot
    // promised, the ZAB vote).
    let backing = cluster
        .nodes
        .iter()
        .filter(|n| n.status().voted_for == Some(leader.id()))
        .count();
    assert!(backing >= 2, "{protocol:?}: {backing} of 3 back the leader");
    // A follower refuses, naming the leader once it knows it (a node that
    // started last may still be joining).
    let f = (l + 1) % 3;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match cluster.nodes[f].propose(b"x".to_vec(), Duration::from_secs(5)) {
            Err(ProposeError::NotLeader { leader: Some(id) }) => {
                assert_eq!(cluster.members.name(id), cluster.members.name(leader.id()));
                assert_eq!(id, leader.id());
                break;
            }
            Err(ProposeError::NotLeader { leader: None }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => panic!("a follower answered {other:?}"),
        }
    }
    // Every node applies the same commands in the same order.
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.machines.iter().any(|m| m.0.lock().len() < 100) {
        assert!(Instant::now() < deadline, "followers did not catch up");
        std::thread::sleep(Duration::from_millis(10));
    }
    let first = cluster.machines[0].0.lock().clone();
    for m in &cluster.machines[1..] {
        assert_eq!(*m.0.lock(), first);
    }
    // A callback-style proposal is answered exactly once.
    let (tx, rx) = crossbeam_channel::unbounded();
    leader.propose_with(
        b"async".to_vec(),
        Box::new(move |r| {
            tx.send(r).unwrap();
        }),
    );
    assert!(rx.recv_timeout(Duration::from_secs(5)).unwrap().is_ok());
    assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
    for node in &cluster.nodes {
        node.shutdown();
        assert!(node.is_closed());
        node.shutdown(); // idempotent
    }
    assert_eq!(
        leader.propose(b"late".to_vec(), Duration::from_secs(1)),
        Err(ProposeError::Closed)
    );
    assert!(leader.receive(cluster.nodes[f].id(), b"bytes").is_err());
}

#[test]
fn raft_cluster_elects_commits_and_shuts_down() {
    a_cluster_elects_commits_and_shuts_down(ProtocolKind::Raft);
}

#[test]
fn paxos_cluster_elects_commits_and_shuts_down() {
    a_cluster_elects_commits_and_shuts_down(ProtocolKind::MultiPaxos);
}

#[test]
fn zab_cluster_elects_commits_and_shuts_down() {
    a_cluster_elects_commits_and_shuts_down(ProtocolKind::Zab);
}

/// A cluster of one elects itself and commits alone, whatever the protocol.
#[test]
fn a_node_alone_leads_itself() {
    for protocol in [
        ProtocolKind::Raft,
        ProtocolKind::MultiPaxos,
        ProtocolKind::Zab,
    ] {
        let id = Members::id_for("solo");
        let node = AnyNode::open(
            &config(protocol, id, &[id]),
            |_: NodeId, _: Vec<u8>| {},
            Recorder::default(),
            None,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while node.status().leader != Some(id) {
            assert!(
                Instant::now() < deadline,
                "{protocol:?}: a node alone never led"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let answer = node.propose(b"alone".to_vec(), Duration::from_secs(5));
        assert!(answer.is_ok(), "{protocol:?}: {answer:?}");
    }
}

/// A machine whose `apply` calls the blocking API of its own node.
struct Reentrant(
    Arc<Mutex<Option<Weak<AnyNode>>>>,
    Arc<Mutex<Vec<ProposeError>>>,
);

impl StateMachine for Reentrant {
    fn apply(&mut self, _index: u64, command: &[u8]) -> Vec<u8> {
        let node = self.0.lock().as_ref().and_then(Weak::upgrade);
        if let (Some(node), b"outer") = (node, command) {
            let started = Instant::now();
            let errors = [
                node.propose(b"inner".to_vec(), Duration::from_secs(5))
                    .unwrap_err(),
                node.read_barrier(Duration::from_secs(5)).unwrap_err(),
            ];
            assert!(started.elapsed() < Duration::from_secs(1), "it waited");
            self.1.lock().extend(errors);
        }
        Vec::new()
    }
}

#[test]
fn blocking_calls_from_a_node_thread_are_refused_at_once() {
    let id = Members::id_for("solo");
    let slot = Arc::new(Mutex::new(None));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let machine = Reentrant(Arc::clone(&slot), Arc::clone(&seen));
    let node = Arc::new(
        AnyNode::open(
            &config(ProtocolKind::Raft, id, &[id]),
            |_: NodeId, _: Vec<u8>| {},
            machine,
            None,
        )
        .unwrap(),
    );
    *slot.lock() = Some(Arc::downgrade(&node));
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.status().leader != Some(id) {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    node.propose(b"outer".to_vec(), Duration::from_secs(5))
        .unwrap();
    assert_eq!(
        *seen.lock(),
        [ProposeError::WouldBlock, ProposeError::WouldBlock]
    );
    assert_eq!(node.status().last_index, 2, "nothing more was proposed");
}

#[test]
fn bad_settings_start_nothing() {
    let ids = Members::new(vec!["a".into(), "b".into()]).unwrap();
    let open =
        |c: AnyNodeConfig| AnyNode::open(&c, |_: NodeId, _: Vec<u8>| {}, Recorder::default(), None);
    let field = |r: Result<AnyNode, StartError>| match r {
        Err(StartError::Config(e)) => e.field,
        other => panic!("expected a config error, got {other:?}"),
    };
    let good = config(ProtocolKind::Raft, ids.ids()[0], ids.ids());
    let mut c = good.clone();
    c.timeouts.heartbeat = Duration::ZERO;
    assert_eq!(field(open(c)), "heartbeat_interval");
    let mut c = good.clone();
    c.timeouts.election_min = c.timeouts.heartbeat;
    assert_eq!(field(open(c)), "election_timeout");
    let mut c = good.clone();
    c.id = 0;
    assert_eq!(field(open(c)), "id");
    let mut c = good.clone();
    c.id = 7; // not a voter
    assert_eq!(field(open(c)), "voters");
    let mut c = good.clone();
    c.proposal_timeout = Duration::ZERO;
    assert_eq!(field(open(c)), "proposal_timeout");
    // The good one starts, and two of one directory do not.
    let dir = std::env::temp_dir().join(format!("consenso-any-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut c = good;
    c.data_dir = Some(dir.clone());
    let first = open(c.clone()).unwrap();
    assert!(matches!(open(c), Err(StartError::Storage(_))));
    drop(first);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A LocalNetwork takes one running node per id; a closed node's place is
/// taken (a restart).
#[test]
fn a_local_network_takes_one_running_node_per_id() {
    let net = consenso::local::LocalNetwork::new();
    let id = Members::id_for("solo");
    let open = || {
        AnyNode::open(
            &config(ProtocolKind::Raft, id, &[id]),
            net.transport(id),
            Recorder::default(),
            None,
        )
        .unwrap()
    };
    let first = open();
    assert!(!net.has_running(id));
    assert!(net.register_new(id, first.inbox()));
    assert!(net.has_running(id));
    let second = open();
    assert!(
        !net.register_new(id, second.inbox()),
        "a running node was replaced"
    );
    first.shutdown();
    assert!(!net.has_running(id));
    assert!(net.register_new(id, second.inbox()));
    assert!(net.has_running(id));
}
