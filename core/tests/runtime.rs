//! The threaded runtime on LocalNetwork: real nodes, real threads. These
//! tests check behaviour, never timing (timeouts are generous upper bounds).

use consenso::consensus::raft::{Raft, RaftConfig};
use consenso::local::LocalCluster;
use consenso::runtime::{CounterMachine, Node, NodeConfig, ReceiveError, StateMachine};
use consenso::storage::{MemStorage, Storage};
use consenso::wire::WireError;
use consenso::{ProposeError, Role};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// Records every applied command, shared with the test.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Vec<u8>>>>);

impl StateMachine for Recorder {
    fn apply(&mut self, _index: u64, command: &[u8]) -> Vec<u8> {
        let mut v = self.0.lock().unwrap();
        v.push(command.to_vec());
        (v.len() as u64).to_le_bytes().to_vec()
    }
}

#[test]
fn three_nodes_elect_replicate_and_survive_losing_the_leader() {
    let recorders: Vec<Recorder> = (0..3).map(|_| Recorder::default()).collect();
    let rs = recorders.clone();
    let mut cluster = LocalCluster::start(3, move |id| rs[id as usize - 1].clone()).unwrap();
    let leader = cluster.wait_for_leader(WAIT).expect("a leader");
    for i in 0..100u32 {
        let reply = cluster.propose(&i.to_le_bytes(), WAIT).unwrap();
        assert_eq!(reply, (i as u64 + 1).to_le_bytes().to_vec());
    }
    let idx = cluster.node(leader).unwrap().read_barrier(WAIT).unwrap();
    assert!(
        idx >= 101,
        "read index {idx} covers the 100 commands and the no-op"
    );
    cluster.stop(leader);
    let new_leader = cluster.wait_for_leader(WAIT).expect("a new leader");
    assert_ne!(new_leader, leader);
    cluster.propose(b"after", WAIT).unwrap();
    cluster
        .node(new_leader)
        .unwrap()
        .read_barrier(WAIT)
        .unwrap();
    let applied = recorders[new_leader as usize - 1].0.lock().unwrap().clone();
    assert_eq!(applied.len(), 101);
    for (i, cmd) in applied.iter().take(100).enumerate() {
        assert_eq!(
            cmd,
            &(i as u32).to_le_bytes().to_vec(),
            "command {i} kept its place"
        );
    }
    // The old leader comes back from its storage and catches up.
    let before_restart = recorders[leader as usize - 1].0.lock().unwrap().len();
    cluster.restart(leader).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while recorders[leader as usize - 1].0.lock().unwrap().len() < before_restart + 101 {
        assert!(
            std::time::Instant::now() < deadline,
            "restarted node did not catch up"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let old = recorders[leader as usize - 1].0.lock().unwrap().clone();
    // After the restart it applies its log again from index 1.
    assert_eq!(old[before_restart..], applied[..]);
    cluster.shutdown();
}

#[test]
fn follower_refuses_proposals_and_reads_with_a_leader_hint() {
    let cluster = LocalCluster::start(3, |_| CounterMachine::default()).unwrap();
    let leader = cluster.wait_for_leader(WAIT).unwrap();
    cluster.propose(b"x", WAIT).unwrap();
    let follower = cluster.ids().into_iter().find(|&i| i != leader).unwrap();
    let node = cluster.node(follower).unwrap();
    // The follower learned the leader from the append it just got.
    let deadline = std::time::Instant::now() + WAIT;
    while node.status().leader != Some(leader) {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(
        node.propose(b"y".to_vec(), WAIT),
        Err(ProposeError::NotLeader {
            leader: Some(leader)
        })
    );
    assert_eq!(
        node.read_barrier(WAIT),
        Err(ProposeError::NotLeader {
            leader: Some(leader)
        })
    );
    assert!(node.status().proposals_failed >= 1);
}

#[test]
fn bad_envelopes_are_rejected_counted_and_harmless() {
    let cluster = LocalCluster::start(3, |_| CounterMachine::default()).unwrap();
    let leader = cluster.wait_for_leader(WAIT).unwrap();
    let node = cluster.node(leader).unwrap();
    let before = node.status().messages_rejected;
    assert!(matches!(
        node.receive(2, b""),
        Err(ReceiveError::Wire(WireError::TooShort(0)))
    ));
    assert!(matches!(
        node.receive(2, b"garbage bytes"),
        Err(ReceiveError::Wire(WireError::BadMagic))
    ));
    let mut foreign = b"CNSO\x02\x01".to_vec();
    foreign.extend_from_slice(&[99, 2, leader as u8, 0]);
    assert!(matches!(
        node.receive(2, &foreign),
        Err(ReceiveError::Wire(WireError::WrongCluster {
            found: 99,
            ..
        }))
    ));
    assert_eq!(node.status().messages_rejected, before + 3);
    cluster.propose(b"still works", WAIT).unwrap();
}

#[test]
fn callbacks_complete_exactly_once_even_across_shutdown() {
    let cluster = LocalCluster::start(3, |_| CounterMachine::default()).unwrap();
    let leader = cluster.wait_for_leader(WAIT).unwrap();
    let node = cluster.node(leader).unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let n = 2000;
    for i in 0..n {
        let (done, ok) = (Arc::clone(&done), Arc::clone(&ok));
        node.propose_with(
            (i as u32).to_le_bytes().to_vec(),
            Box::new(move |r| {
                if r.is_ok() {
                    ok.fetch_add(1, Ordering::SeqCst);
                }
                done.fetch_add(1, Ordering::SeqCst);
            }),
        );
    }
    node.shutdown();
    assert_eq!(
        done.load(Ordering::SeqCst),
        n,
        "every callback ran exactly once"
    );
    // After shutdown everything fails at once with Closed.
    assert_eq!(
        node.propose(b"late".to_vec(), WAIT),
        Err(ProposeError::Closed)
    );
    assert_eq!(node.read_barrier(WAIT), Err(ProposeError::Closed));
    assert!(matches!(node.receive(2, b"x"), Err(ReceiveError::Closed)));
    assert!(node.is_closed());
    drop(cluster);
}

#[test]
fn single_node_commits_alone_and_restarts_from_storage() {
    let storage = MemStorage::new();
    let mut config = NodeConfig::<RaftConfig>::new(1, vec![1]);
    config.tick_interval = Duration::from_millis(1);
    let node = Node::<Raft>::start(
        config.clone(),
        storage.clone(),
        |_, _| {},
        CounterMachine::default(),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while node.status().role != Role::Leader {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(1));
    }
    for i in 1..=10u64 {
        assert_eq!(
            node.propose(vec![1], WAIT).unwrap(),
            i.to_le_bytes().to_vec()
        );
    }
    node.read_barrier(WAIT).unwrap();
    let term = node.status().term;
    node.shutdown();
    assert!(storage.sync_count() > 0);
    let node = Node::<Raft>::start(config, storage, |_, _| {}, CounterMachine::default()).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while node.status().role != Role::Leader {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        node.status().term > term,
        "the restarted node campaigns in a later term"
    );
    // Replayed the 10 commands before this one.
    assert_eq!(
        node.propose(vec![1], WAIT).unwrap(),
        11u64.to_le_bytes().to_vec()
    );
}

#[test]
fn invalid_configuration_is_a_clear_error() {
    let mut config = NodeConfig::<RaftConfig>::new(1, vec![1, 2, 3]);
    config.protocol.timing.election_ticks_max = 1;
    let err = Node::<Raft>::start(
        config,
        MemStorage::new(),
        |_, _| {},
        CounterMachine::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("election_ticks_max"), "{err}");
    let config = NodeConfig::<RaftConfig>::new(4, vec![1, 2, 3]);
    let err = Node::<Raft>::start(
        config,
        MemStorage::new(),
        |_, _| {},
        CounterMachine::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("voters"), "{err}");
    let mut config = NodeConfig::<RaftConfig>::new(1, vec![1]);
    config.tick_interval = Duration::ZERO;
    let err = Node::<Raft>::start(
        config,
        MemStorage::new(),
        |_, _| {},
        CounterMachine::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("tick_interval"), "{err}");
}

#[test]
fn state_changes_are_reported() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = Arc::clone(&seen);
    let mut config = NodeConfig::<RaftConfig>::new(1, vec![1]);
    config.tick_interval = Duration::from_millis(1);
    let node = Node::<Raft>::start_observed(
        config,
        MemStorage::new(),
        |_, _| {},
        CounterMachine::default(),
        Some(Box::new(move |c| s2.lock().unwrap().push(c))),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while !seen.lock().unwrap().iter().any(|c| c.role == Role::Leader) {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(1));
    }
    let changes = seen.lock().unwrap().clone();
    let lead = changes.iter().find(|c| c.role == Role::Leader).unwrap();
    assert_eq!(lead.leader, Some(1));
    drop(node);
}

#[test]
fn a_partitioned_leader_steps_down_and_the_majority_moves_on() {
    let cluster = LocalCluster::start(3, |_| CounterMachine::default()).unwrap();
    let leader = cluster.wait_for_leader(WAIT).unwrap();
    cluster.network().isolate(leader);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let old = cluster.node(leader).unwrap().status();
        let others_have_leader = cluster
            .ids()
            .into_iter()
            .filter(|&i| i != leader)
            .any(|i| cluster.node(i).unwrap().status().role == Role::Leader);
        if old.role != Role::Leader && others_have_leader {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "old leader did not step down (CheckQuorum)"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    cluster.network().heal();
    cluster.propose(b"after heal", WAIT).unwrap();
}

#[test]
fn local_network_loss_and_delay_slow_the_cluster_but_lose_nothing() {
    let recorders: Vec<Recorder> = (0..3).map(|_| Recorder::default()).collect();
    let rs = recorders.clone();
    let cluster = LocalCluster::start(3, move |id| rs[id as usize - 1].clone()).unwrap();
    cluster.wait_for_leader(WAIT).unwrap();
    cluster.network().set_drop_rate(0.2);
    cluster.network().set_delay(Duration::from_millis(2));
    for i in 0..50u32 {
        cluster.propose(&i.to_le_bytes(), WAIT).unwrap();
    }
    assert!(
        cluster.network().dropped() > 0,
        "the network dropped nothing"
    );
    cluster.network().set_drop_rate(0.0);
    cluster.network().set_delay(Duration::ZERO);
    let leader = cluster.wait_for_leader(WAIT).unwrap();
    cluster.node(leader).unwrap().read_barrier(WAIT).unwrap();
    let applied = recorders[leader as usize - 1].0.lock().unwrap().clone();
    let expected: Vec<Vec<u8>> = (0..50u32).map(|i| i.to_le_bytes().to_vec()).collect();
    // Proposals are retried only on NotLeader, so each command is in the log
    // once, in order.
    assert_eq!(applied, expected);
}

#[test]
fn partition_then_heal_converges() {
    let cluster = LocalCluster::start(5, |_| CounterMachine::default()).unwrap();
    let leader = cluster.wait_for_leader(WAIT).unwrap();
    let others: Vec<u64> = cluster.ids().into_iter().filter(|&i| i != leader).collect();
    // Leader with one follower on the minority side.
    let minority = [leader, others[0]];
    let majority = [others[1], others[2], others[3]];
    cluster
        .network()
        .partition(&[&minority, &majority])
        .expect("disjoint groups");
    let deadline = std::time::Instant::now() + WAIT;
    let new_leader = loop {
        let l = majority
            .iter()
            .copied()
            .find(|&i| cluster.node(i).unwrap().status().role == Role::Leader);
        if let Some(l) = l {
            break l;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the majority elected no leader"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    cluster
        .node(new_leader)
        .unwrap()
        .propose(b"majority".to_vec(), WAIT)
        .unwrap();
    cluster.network().heal();
    cluster.propose(b"after heal", WAIT).unwrap();
    let final_leader = cluster.wait_for_leader(WAIT).unwrap();
    let commit = cluster.node(final_leader).unwrap().status().commit_index;
    let deadline = std::time::Instant::now() + WAIT;
    for id in cluster.ids() {
        while cluster.node(id).unwrap().status().applied_index < commit {
            assert!(
                std::time::Instant::now() < deadline,
                "node {id} did not catch up"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Elect, replicate, lose the leader, elect again, lose nothing: the same
/// runtime drives every protocol.
fn failover_keeps_everything<P: consenso::consensus::Protocol>()
where
    P::Config: Default,
{
    let recorders: Vec<Recorder> = (0..3).map(|_| Recorder::default()).collect();
    let rs = recorders.clone();
    let config = NodeConfig::<P::Config>::new(1, vec![1, 2, 3]);
    let mut cluster =
        LocalCluster::<P>::start_with(config, move |id| rs[id as usize - 1].clone()).unwrap();
    let leader = cluster.wait_for_leader(WAIT).expect("a leader");
    for i in 0..200u32 {
        cluster.propose(&i.to_le_bytes(), WAIT).unwrap();
    }
    cluster.stop(leader);
    let next = cluster.wait_for_leader(WAIT).expect("a new leader");
    assert_ne!(next, leader);
    cluster.propose(b"after", WAIT).unwrap();
    cluster.node(next).unwrap().read_barrier(WAIT).unwrap();
    // Status speaks the protocol's own vocabulary.
    let status = cluster.node(next).unwrap().status();
    let (role, epoch) = match P::KIND {
        consenso::consensus::ProtocolKind::Raft => ("leader", "term "),
        consenso::consensus::ProtocolKind::MultiPaxos => ("leader", "ballot "),
        consenso::consensus::ProtocolKind::Zab => ("LEADING", "epoch "),
    };
    assert_eq!(status.role_name(), role);
    let shown = status.to_string();
    assert!(
        shown.contains(&format!("{role} ({})", P::KIND.name())) && shown.contains(epoch),
        "{shown}"
    );
    let applied = recorders[next as usize - 1].0.lock().unwrap().clone();
    assert_eq!(applied.len(), 201);
    for (i, cmd) in applied.iter().take(200).enumerate() {
        assert_eq!(cmd, &(i as u32).to_le_bytes().to_vec());
    }
    // A node of another protocol is refused at the envelope.
    let node = cluster.node(next).unwrap();
    let foreign = consenso::wire::Header {
        protocol: if P::KIND == consenso::consensus::ProtocolKind::Raft {
            2
        } else {
            1
        },
        cluster: 1,
        from: leader,
        to: next,
    };
    let bytes = consenso::wire::encode::<u8>(&foreign, &[], Vec::new()).unwrap();
    assert!(matches!(
        node.receive(leader, &bytes),
        Err(ReceiveError::Wire(WireError::WrongProtocol { .. }))
    ));
    cluster.shutdown();
}

#[test]
fn paxos_runs_in_the_same_runtime() {
    failover_keeps_everything::<consenso::consensus::paxos::MultiPaxos>();
}

#[test]
fn zab_runs_in_the_same_runtime() {
    failover_keeps_everything::<consenso::consensus::zab::Zab>();
}

#[test]
fn raft_runs_in_the_same_runtime() {
    failover_keeps_everything::<Raft>();
}

/// Waits until `f` holds, up to a minute (a deadlock detector, not a timing
/// check).
fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn shutdown_from_a_driver_callback_with_a_full_queue_does_not_deadlock() {
    use std::sync::OnceLock;
    let node_cell: Arc<OnceLock<Arc<Node<Raft>>>> = Arc::new(OnceLock::new());
    let (done_tx, done_rx) = std::sync::mpsc::channel::<u64>();
    let callbacks = Arc::new(AtomicU64::new(0));
    let (cell, counted) = (Arc::clone(&node_cell), Arc::clone(&callbacks));
    let done_tx = Mutex::new(Some(done_tx));
    let on_change = Box::new(move |_change| {
        // The driver thread: wait until the test has the node in hand.
        let node = loop {
            if let Some(n) = cell.get() {
                break Arc::clone(n);
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let Some(tx) = done_tx.lock().unwrap().take() else {
            return;
        };
        // Fill the one-slot queue: only this (blocked) thread drains it.
        let mut queued = 0;
        for _ in 0..3 {
            let c = Arc::clone(&counted);
            node.propose_with(
                b"x".to_vec(),
                Box::new(move |_| {
                    c.fetch_add(1, Ordering::SeqCst);
                }),
            );
            queued += 1;
        }
        node.shutdown();
        let _ = tx.send(queued);
    });
    let mut config = NodeConfig::<RaftConfig>::new(1, vec![1]);
    config.queue_capacity = 1;
    let node = Node::<Raft>::start_observed(
        config,
        MemStorage::new(),
        |_: u64, _: Vec<u8>| {},
        CounterMachine::default(),
        Some(on_change),
    )
    .unwrap();
    let node = Arc::new(node);
    assert!(node_cell.set(Arc::clone(&node)).is_ok());
    let queued = done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("shutdown from the driver thread returned");
    node.shutdown();
    assert!(node.is_closed());
    // Every proposal's callback ran exactly once (Busy or Closed).
    assert_eq!(callbacks.load(Ordering::SeqCst), queued);
}

#[test]
fn a_read_barrier_without_a_quorum_times_out() {
    let mut config = NodeConfig::<RaftConfig>::new(1, vec![1, 2, 3]);
    config.protocol.check_quorum = false;
    config.proposal_timeout = Duration::from_millis(300);
    let cluster = LocalCluster::<Raft>::start_with(config, |_| CounterMachine::default()).unwrap();
    let leader = cluster.wait_for_leader(WAIT).expect("a leader");
    cluster.network().isolate(leader);
    let (tx, rx) = std::sync::mpsc::channel();
    cluster
        .node(leader)
        .unwrap()
        .read_barrier_with(Box::new(move |r| {
            let _ = tx.send(r);
        }));
    let result = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the read barrier completed");
    assert_eq!(result, Err(ProposeError::Timeout));
    cluster.shutdown();
}

/// Panics applying `boom` on the node whose id is in `victim`.
struct Fragile {
    id: u64,
    victim: Arc<AtomicU64>,
}

impl StateMachine for Fragile {
    fn apply(&mut self, _index: u64, command: &[u8]) -> Vec<u8> {
        if command == b"boom" && self.victim.load(Ordering::SeqCst) == self.id {
            panic!("state machine bug");
        }
        Vec::new()
    }
}

#[test]
fn a_leader_whose_state_machine_panics_stops_and_is_replaced() {
    let victim = Arc::new(AtomicU64::new(0));
    let v = Arc::clone(&victim);
    let mut config = NodeConfig::<RaftConfig>::new(1, vec![1, 2, 3]);
    // Without CheckQuorum a leader that kept heartbeating would never be
    // replaced: the node itself must stop.
    config.protocol.check_quorum = false;
    let cluster = LocalCluster::<Raft>::start_with(config, move |id| Fragile {
        id,
        victim: Arc::clone(&v),
    })
    .unwrap();
    let leader = cluster.wait_for_leader(WAIT).expect("a leader");
    victim.store(leader, Ordering::SeqCst);
    let r = cluster
        .node(leader)
        .unwrap()
        .propose(b"boom".to_vec(), WAIT);
    assert_eq!(
        r,
        Err(ProposeError::Closed),
        "the failed apply's proposer is told"
    );
    let old = cluster.node(leader).unwrap();
    // The apply thread marks the node closed; the driver then stops and
    // reports that it no longer leads.
    eventually("the node stops leading", || {
        old.is_closed() && old.status().role != Role::Leader
    });
    assert!(old.status().state_machine_failed);
    eventually("another node leads", || {
        cluster.leader().is_some_and(|l| l != leader)
    });
    // The others applied boom without panicking and go on committing.
    let next = cluster.leader().unwrap();
    cluster
        .node(next)
        .unwrap()
        .propose(b"after".to_vec(), WAIT)
        .unwrap();
    cluster.shutdown();
}

/// Issue #8, bug 1: a Multi-Paxos leader proposes X; only one acceptor
/// takes it and the leader never hears back; the next leader re-proposes X in
/// the same slot under its own ballot; the old leader rejoins and applies X.
/// The proposer must hear that X committed, not `Dropped` (a retrying client
/// would apply it twice).
#[test]
fn a_paxos_proposal_re_proposed_by_the_next_leader_completes_as_committed() {
    use consenso::consensus::paxos::{MultiPaxos, PaxosConfig};
    let recorders: Vec<Recorder> = (0..3).map(|_| Recorder::default()).collect();
    let rs = recorders.clone();
    let mut config = NodeConfig::<PaxosConfig>::new(1, vec![1, 2, 3]);
    config.proposal_timeout = Duration::from_secs(600);
    let cluster =
        LocalCluster::<MultiPaxos>::start_with(config, move |id| rs[id as usize - 1].clone())
            .unwrap();
    let old = cluster.wait_for_leader(WAIT).expect("a leader");
    cluster.propose(b"warm-up", WAIT).unwrap();
    let others: Vec<u64> = cluster.ids().into_iter().filter(|&i| i != old).collect();
    let (taker, other) = (others[0], others[1]);
    let net = cluster.network();
    // X reaches `taker` only, and `taker`'s answer never comes back.
    net.cut_one_way(old, other);
    net.cut_one_way(taker, old);
    let (tx, rx) = crossbeam_channel::bounded(1);
    cluster.node(old).unwrap().propose_with(
        b"X".to_vec(),
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    let taker_log = cluster.storage(taker).unwrap();
    let before = taker_log.len();
    eventually("the acceptor takes X", || taker_log.len() > before);
    // The old leader is cut off; the other two elect a leader that must
    // re-propose X, found in `taker`'s promise.
    net.isolate(old);
    eventually("a new leader commits X", || {
        cluster.leader().is_some_and(|l| l != old)
            && recorders[taker as usize - 1]
                .0
                .lock()
                .unwrap()
                .iter()
                .any(|c| c == b"X")
    });
    assert!(
        rx.try_recv().is_err(),
        "the cut-off proposer cannot know yet"
    );
    net.heal();
    let outcome = rx.recv_timeout(WAIT).expect("the proposer hears back");
    assert!(
        outcome.is_ok(),
        "X committed in its slot, so its proposer is told so, not {outcome:?}"
    );
    let applied = recorders[old as usize - 1].0.lock().unwrap().clone();
    assert_eq!(applied.iter().filter(|c| c.as_slice() == b"X").count(), 1);
    cluster.shutdown();
}
