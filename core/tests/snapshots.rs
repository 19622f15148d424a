//! Snapshots in running nodes (threads, LocalNetwork), for all three
//! protocols: a node snapshots its state machine and compacts its log, a
//! restarted node restores its snapshot and replays only what follows, and
//! a follower that missed the compacted log catches up from its leader's
//! snapshot. Behaviour only: never timing.

use consenso::consensus::paxos::MultiPaxos;
use consenso::consensus::raft::Raft;
use consenso::consensus::zab::Zab;
use consenso::consensus::Protocol;
use consenso::local::LocalCluster;
use consenso::runtime::{CounterMachine, NodeConfig, SnapshotPolicy, StartError, StateMachine};
use consenso::storage::FileOptions;
use consenso::types::{Index, NodeId};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

/// A fresh directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("consenso-snapshots-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn template<P: Protocol>(data_dir: Option<&TempDir>, every: u64) -> NodeConfig<P::Config>
where
    P::Config: Default,
{
    let mut t = NodeConfig::<P::Config>::new(1, vec![1, 2, 3]);
    t.tick_interval = Duration::from_millis(2);
    t.snapshot = SnapshotPolicy {
        entries: every,
        bytes: 0,
    };
    t.data_dir = data_dir.map(|d| d.0.clone());
    t.storage = FileOptions {
        sync: true,
        segment_bytes: 64 << 10,
    };
    t
}

/// The counter's answer: how many commands its machine applied.
fn count(reply: &[u8]) -> u64 {
    u64::from_le_bytes(reply.try_into().expect("8 bytes"))
}

/// Waits until `id` applied through `index`.
fn wait_applied<P: Protocol>(cluster: &LocalCluster<P>, id: NodeId, index: Index) {
    let deadline = Instant::now() + WAIT;
    loop {
        let status = cluster.node(id).expect("running").status();
        if status.applied_index >= index {
            return;
        }
        assert!(Instant::now() < deadline, "node {id} stuck: {status}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Compaction, restart from the snapshot, and catch-up of a follower that
/// was down while the log it needed was compacted.
fn compact_restart_and_catch_up<P: Protocol>(data_dir: Option<&TempDir>)
where
    P::Config: Default,
{
    let mut cluster =
        LocalCluster::<P>::start_with(template::<P>(data_dir, 20), |_| CounterMachine::default())
            .unwrap();
    let leader = cluster.wait_for_leader(WAIT).expect("a leader");
    let behind = if leader == 3 { 2 } else { 3 };
    cluster.stop(behind);
    let blob = vec![7u8; 300];
    for i in 1..=200u64 {
        assert_eq!(count(&cluster.propose(&blob, WAIT).unwrap()), i);
    }
    let leader = cluster.wait_for_leader(WAIT).expect("a leader");
    let status = cluster.node(leader).unwrap().status();
    assert!(status.snapshots_taken > 0, "{status:?}");
    assert!(status.snapshot_index >= 100, "{status:?}");
    assert!(
        status.last_index - status.snapshot_index < 200,
        "the log was compacted"
    );
    // The follower that was down needs entries the others compacted.
    cluster.restart(behind).unwrap();
    let commit = cluster.node(leader).unwrap().status().commit_index;
    wait_applied(&cluster, behind, commit);
    let caught_up = cluster.node(behind).unwrap().status();
    assert!(caught_up.snapshots_installed > 0, "{caught_up:?}");
    // Every node restarts from its snapshot and the log after it: the
    // counter goes on from 200, not from 0.
    for id in cluster.ids() {
        cluster.stop(id);
    }
    for id in cluster.ids() {
        cluster.restart(id).unwrap();
    }
    assert_eq!(count(&cluster.propose(&blob, WAIT).unwrap()), 201);
    let leader = cluster.wait_for_leader(WAIT).expect("a leader");
    let index = cluster.node(leader).unwrap().status().commit_index;
    for id in cluster.ids() {
        wait_applied(&cluster, id, index);
        assert!(cluster.node(id).unwrap().status().snapshot_index > 0);
    }
    cluster.shutdown();
}

#[test]
fn raft_compacts_restarts_and_catches_up_from_snapshots_in_memory_and_on_disk() {
    compact_restart_and_catch_up::<Raft>(None);
    compact_restart_and_catch_up::<Raft>(Some(&TempDir::new("raft")));
}

#[test]
fn paxos_compacts_restarts_and_catches_up_from_snapshots_in_memory_and_on_disk() {
    compact_restart_and_catch_up::<MultiPaxos>(None);
    compact_restart_and_catch_up::<MultiPaxos>(Some(&TempDir::new("paxos")));
}

#[test]
fn zab_compacts_restarts_and_catches_up_from_snapshots_in_memory_and_on_disk() {
    compact_restart_and_catch_up::<Zab>(None);
    compact_restart_and_catch_up::<Zab>(Some(&TempDir::new("zab")));
}

/// A machine that keeps no snapshots (the trait's defaults).
#[derive(Default)]
struct Plain(u64);

impl StateMachine for Plain {
    fn apply(&mut self, _index: Index, _command: &[u8]) -> Vec<u8> {
        self.0 += 1;
        self.0.to_le_bytes().to_vec()
    }
}

#[test]
fn a_machine_without_snapshots_keeps_its_whole_log() {
    let cluster =
        LocalCluster::<Raft>::start_with(template::<Raft>(None, 5), |_| Plain::default()).unwrap();
    for i in 1..=50u64 {
        assert_eq!(count(&cluster.propose(b"x", WAIT).unwrap()), i);
    }
    for id in cluster.ids() {
        let status = cluster.node(id).unwrap().status();
        assert_eq!(status.snapshot_index, 0, "{status:?}");
        assert_eq!(status.snapshots_taken, 0);
    }
    cluster.shutdown();
}

/// Snapshots, but refuses every snapshot it is given back.
#[derive(Default)]
struct Forgetful(u64);

impl StateMachine for Forgetful {
    fn apply(&mut self, _index: Index, _command: &[u8]) -> Vec<u8> {
        self.0 += 1;
        Vec::new()
    }

    fn snapshot(&self) -> Option<Vec<u8>> {
        Some(self.0.to_le_bytes().to_vec())
    }

    fn restore(&mut self, _index: Index, _data: &[u8]) -> Result<(), String> {
        Err("this machine forgot how".into())
    }
}

#[test]
fn a_machine_that_refuses_its_own_snapshot_does_not_restart() {
    let dir = TempDir::new("refuses");
    let mut cluster =
        LocalCluster::<Raft>::start_with(template::<Raft>(Some(&dir), 5), |_| Forgetful::default())
            .unwrap();
    for _ in 0..40 {
        cluster.propose(b"x", WAIT).unwrap();
    }
    let leader = cluster.wait_for_leader(WAIT).unwrap();
    let deadline = Instant::now() + WAIT;
    while cluster.node(leader).unwrap().status().snapshot_index == 0 {
        assert!(Instant::now() < deadline, "no snapshot was taken");
        std::thread::sleep(Duration::from_millis(5));
    }
    cluster.stop(leader);
    match cluster.restart(leader) {
        Err(StartError::Restore(why)) => assert!(why.contains("forgot how"), "{why}"),
        Err(e) => panic!("expected a refused snapshot, got {e}"),
        Ok(()) => panic!("expected a refused snapshot, the node started"),
    }
    cluster.shutdown();
}

/// Panics when asked for a snapshot.
#[derive(Default)]
struct Fragile;

impl StateMachine for Fragile {
    fn apply(&mut self, _index: Index, _command: &[u8]) -> Vec<u8> {
        Vec::new()
    }

    fn snapshot(&self) -> Option<Vec<u8>> {
        panic!("snapshot failed")
    }
}

#[test]
fn a_machine_that_panics_taking_a_snapshot_stops_its_node_and_says_so() {
    let mut t = template::<Raft>(None, 3);
    t.voters = vec![1];
    let cluster = LocalCluster::<Raft>::start_with(t, |_| Fragile).unwrap();
    let node = cluster.node(1).unwrap();
    let deadline = Instant::now() + WAIT;
    while !node.status().state_machine_failed {
        let _ = cluster.propose(b"x", Duration::from_millis(200));
        assert!(Instant::now() < deadline, "the node kept running");
    }
    assert!(node.is_closed());
    cluster.shutdown();
}
