//! The real crash test: three nodes in three OS processes on loopback TCP
//! (the core's `TcpNetwork`),
//! each with its own data directory (FileStorage, synced), under a steady
//! stream of proposals. Nodes are killed with SIGKILL (the leader half of
//! the time) and restarted on the same directory. At the end every
//! acknowledged proposal is present exactly once, in one order, on every
//! node; nothing is present twice. Run for Raft, Multi-Paxos and ZAB.
//!
//! The same binary is the node: started with `CONSENSO_CRASH_NODE` set, it
//! runs one node and takes commands on stdin (`P <value>`: propose;
//! `D`: print the applied values), answering on stdout with lines that
//! start with `@`.

use consenso::consensus::paxos::MultiPaxos;
use consenso::consensus::raft::Raft;
use consenso::consensus::zab::Zab;
use consenso::consensus::Protocol;
use consenso::runtime::{Node, NodeConfig, SnapshotPolicy, StateMachine};
use consenso::tcp::{TcpNetwork, TcpOptions};
use consenso::{NodeId, ProposeError};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NODES: u64 = 3;
const KILLS: usize = 20;

fn main() {
    if let Ok(id) = std::env::var("CONSENSO_CRASH_NODE") {
        let id: NodeId = id.parse().expect("node id");
        let protocol = std::env::var("CONSENSO_CRASH_PROTOCOL").expect("protocol");
        let ports = parse_ports(&std::env::var("CONSENSO_CRASH_PORTS").expect("ports"));
        let dir = std::env::var("CONSENSO_CRASH_DIR").expect("data dir");
        match protocol.as_str() {
            "raft" => run_node::<Raft>(id, ports, dir),
            "paxos" => run_node::<MultiPaxos>(id, ports, dir),
            "zab" => run_node::<Zab>(id, ports, dir),
            other => panic!("unknown protocol {other}"),
        }
        return;
    }
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let started = Instant::now();
    for protocol in ["raft", "paxos", "zab"] {
        if only.as_deref().is_some_and(|o| !protocol.contains(o)) {
            continue;
        }
        let t = Instant::now();
        let report = crash_test(protocol);
        println!(
            "crash test {protocol}: {} kills ({} of the leader), {} proposals acknowledged, \
             {} on every node, snapshots through {}, {:.1} s",
            report.kills,
            report.leader_kills,
            report.acked,
            report.applied,
            report.snapshot,
            t.elapsed().as_secs_f64()
        );
    }
    println!(
        "crash tests passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn parse_ports(s: &str) -> Vec<u16> {
    s.split(',').map(|p| p.parse().expect("port")).collect()
}

// ---------------------------------------------------------------- the node

/// The applied values, in order (shared with the stdin loop for `D`).
#[derive(Clone, Default)]
struct Applied(Arc<Mutex<Vec<u64>>>);

impl StateMachine for Applied {
    fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8> {
        let value = u64::from_le_bytes(command.try_into().expect("8-byte command"));
        self.0.lock().unwrap().push(value);
        index.to_le_bytes().to_vec()
    }

    /// Every value applied, so that a node restored from a snapshot still
    /// reports its whole history.
    fn snapshot(&self) -> Option<Vec<u8>> {
        let values = self.0.lock().unwrap();
        Some(values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    fn restore(&mut self, _index: u64, data: &[u8]) -> Result<(), String> {
        if !data.len().is_multiple_of(8) {
            return Err(format!("{} bytes is not a list of values", data.len()));
        }
        let values = data
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        *self.0.lock().unwrap() = values;
        Ok(())
    }
}

fn run_node<P: Protocol>(id: NodeId, ports: Vec<u16>, dir: String)
where
    P::Config: Default,
{
    // The port was free when the test picked it; a restarted node may find
    // its old connections still closing: retry for a while.
    let addresses: Vec<(NodeId, SocketAddr)> = ports
        .iter()
        .enumerate()
        .map(|(i, &port)| (i as NodeId + 1, SocketAddr::from(([127, 0, 0, 1], port))))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let network = loop {
        match TcpNetwork::bind(id, &addresses, None, TcpOptions::default()) {
            Ok(n) => break n,
            Err(e) if Instant::now() < deadline => {
                eprintln!("node {id}: {e}; retrying");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("node {id}: {e}"),
        }
    };
    let mut config = NodeConfig::<P::Config>::new(id, (1..=NODES).collect());
    config.data_dir = Some(dir.into());
    config.tick_interval = Duration::from_millis(5);
    config.proposal_timeout = Duration::from_secs(5);
    // Snapshots every few dozen entries: kills land while snapshots are
    // written and segments deleted, and a restarted node may need one.
    config.snapshot = SnapshotPolicy {
        entries: 40,
        bytes: 0,
    };
    config.storage.segment_bytes = 64 << 10;
    let applied = Applied::default();
    let node = Node::<P>::open(config, network.transport(), applied.clone()).expect("node starts");
    network.attach(node.inbox());
    println!("@READY");
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let mut words = line.split_whitespace();
        match words.next() {
            Some("P") => {
                let value: u64 = words.next().and_then(|v| v.parse().ok()).expect("value");
                node.propose_with(
                    value.to_le_bytes().to_vec(),
                    Box::new(move |result| match result {
                        Ok(_) => println!("@OK {value}"),
                        Err(ProposeError::NotLeader { leader }) => {
                            println!("@NOTLEADER {value} {}", leader.unwrap_or(0))
                        }
                        Err(_) => println!("@FAILED {value}"),
                    }),
                );
            }
            Some("D") => {
                let values = applied.0.lock().unwrap().clone();
                let list: Vec<String> = values.iter().map(u64::to_string).collect();
                let status = node.status();
                println!(
                    "@LOG {} {} {} {}",
                    status.leader.filter(|&l| l == id).is_some() as u8,
                    status.storage_torn_bytes,
                    status.snapshot_index,
                    list.join(",")
                );
            }
            _ => {}
        }
    }
    node.shutdown();
    network.shutdown();
}

// -------------------------------------------------------------- the parent

struct Proc {
    child: Child,
    stdin: ChildStdin,
}

/// A line a node printed, and which node.
type Line = (NodeId, String);

struct ClusterProcs {
    protocol: &'static str,
    ports: Vec<u16>,
    root: std::path::PathBuf,
    procs: Vec<Option<Proc>>,
    lines: Sender<Line>,
}

impl ClusterProcs {
    fn start(&mut self, id: NodeId) {
        let dir = self.root.join(format!("node{id}"));
        let ports: Vec<String> = self.ports.iter().map(u16::to_string).collect();
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .env("CONSENSO_CRASH_NODE", id.to_string())
            .env("CONSENSO_CRASH_PROTOCOL", self.protocol)
            .env("CONSENSO_CRASH_PORTS", ports.join(","))
            .env("CONSENSO_CRASH_DIR", &dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn a node");
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take().expect("stdin");
        let tx = self.lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with('@') && tx.send((id, line)).is_err() {
                    break;
                }
            }
        });
        self.procs[id as usize - 1] = Some(Proc { child, stdin });
    }

    fn kill(&mut self, id: NodeId) {
        if let Some(mut p) = self.procs[id as usize - 1].take() {
            p.child.kill().expect("SIGKILL");
            p.child.wait().expect("reap");
        }
    }

    fn tell(&mut self, id: NodeId, line: &str) -> bool {
        match &mut self.procs[id as usize - 1] {
            Some(p) => writeln!(p.stdin, "{line}").is_ok(),
            None => false,
        }
    }
}

impl Drop for ClusterProcs {
    fn drop(&mut self) {
        for id in 1..=NODES {
            self.kill(id);
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

struct Report {
    kills: usize,
    leader_kills: usize,
    acked: usize,
    applied: usize,
    /// The highest index a node's snapshot covered at the end.
    snapshot: u64,
}

/// Proposals in flight: value → the node asked and when.
struct Load {
    next_value: u64,
    in_flight: HashMap<u64, (NodeId, Instant)>,
    acked: HashSet<u64>,
    leader: NodeId,
}

impl Load {
    const IN_FLIGHT: usize = 16;

    fn top_up(&mut self, c: &mut ClusterProcs) {
        while self.in_flight.len() < Self::IN_FLIGHT {
            let to = self.leader;
            let value = self.next_value;
            if !c.tell(to, &format!("P {value}")) {
                // That node is down: try the next one.
                self.leader = to % NODES + 1;
                return;
            }
            self.next_value += 1;
            self.in_flight.insert(value, (to, Instant::now()));
        }
    }

    fn on_line(&mut self, from: NodeId, line: &str) {
        let mut words = line.split_whitespace();
        let kind = words.next().unwrap_or("");
        let value: u64 = words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        match kind {
            "@OK" => {
                self.in_flight.remove(&value);
                self.acked.insert(value);
                self.leader = from;
            }
            "@NOTLEADER" => {
                self.in_flight.remove(&value);
                let hint: NodeId = words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                self.leader = if (1..=NODES).contains(&hint) {
                    hint
                } else {
                    from % NODES + 1
                };
            }
            "@FAILED" => {
                self.in_flight.remove(&value);
            }
            _ => {}
        }
    }

    /// Forgets proposals to `id` (killed: their outcome is unknown) and
    /// those that went unanswered too long.
    fn forget(&mut self, id: Option<NodeId>) {
        let now = Instant::now();
        self.in_flight.retain(|_, (to, at)| {
            Some(*to) != id && now.duration_since(*at) < Duration::from_secs(10)
        });
    }
}

/// Runs the load for `period`, handling answers.
fn pump(c: &mut ClusterProcs, load: &mut Load, rx: &Receiver<Line>, period: Duration) {
    let end = Instant::now() + period;
    loop {
        load.top_up(c);
        let now = Instant::now();
        if now >= end {
            return;
        }
        match rx.recv_timeout((end - now).min(Duration::from_millis(20))) {
            Ok((from, line)) => load.on_line(from, &line),
            Err(RecvTimeoutError::Timeout) => load.forget(None),
            Err(RecvTimeoutError::Disconnected) => panic!("every reader ended"),
        }
    }
}

/// One node's dump: whether it leads, the torn bytes it cut, the index its
/// snapshot covers, its values.
type Dump = (bool, u64, u64, Vec<u64>);

fn dump(c: &mut ClusterProcs, rx: &Receiver<Line>) -> HashMap<NodeId, Dump> {
    for id in 1..=NODES {
        c.tell(id, "D");
    }
    let mut got = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < NODES as usize && Instant::now() < deadline {
        let Ok((from, line)) = rx.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        let Some(rest) = line.strip_prefix("@LOG ") else {
            continue;
        };
        let mut parts = rest.splitn(4, ' ');
        let leads = parts.next() == Some("1");
        let torn: u64 = parts.next().and_then(|t| t.parse().ok()).unwrap_or(0);
        let snapshot: u64 = parts.next().and_then(|t| t.parse().ok()).unwrap_or(0);
        let values = parts
            .next()
            .unwrap_or("")
            .split(',')
            .filter(|v| !v.is_empty())
            .map(|v| v.parse().expect("value"))
            .collect();
        got.insert(from, (leads, torn, snapshot, values));
    }
    got
}

fn crash_test(protocol: &'static str) -> Report {
    let (tx, rx) = channel();
    let root =
        std::env::temp_dir().join(format!("consenso-crash-{protocol}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut c = ClusterProcs {
        protocol,
        ports: free_ports(NODES as usize),
        root,
        procs: (0..NODES).map(|_| None).collect(),
        lines: tx,
    };
    for id in 1..=NODES {
        c.start(id);
    }
    let mut load = Load {
        next_value: 1,
        in_flight: HashMap::new(),
        acked: HashSet::new(),
        leader: 1,
    };
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ std::process::id() as u64;
    let mut next_rand = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let (mut kills, mut leader_kills) = (0, 0);
    pump(&mut c, &mut load, &rx, Duration::from_millis(800));
    while kills < KILLS || leader_kills < KILLS / 2 {
        pump(
            &mut c,
            &mut load,
            &rx,
            Duration::from_millis(250 + next_rand(250)),
        );
        // Kill the leader every other time (as far as the answers tell
        // it), else another node.
        let leader = dump(&mut c, &rx)
            .iter()
            .find(|(_, (leads, ..))| *leads)
            .map(|(&id, _)| id);
        let victim = match leader {
            Some(l) if leader_kills * 2 <= kills => {
                leader_kills += 1;
                l
            }
            Some(l) => (l + next_rand(NODES - 1)) % NODES + 1,
            None => next_rand(NODES) + 1,
        };
        c.kill(victim);
        load.forget(Some(victim));
        kills += 1;
        pump(
            &mut c,
            &mut load,
            &rx,
            Duration::from_millis(100 + next_rand(200)),
        );
        c.start(victim);
    }
    // Let every node catch up, with no more proposals: done when the
    // three logs are equal in two dumps in a row.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut previous = None;
    let logs = loop {
        while let Ok((from, line)) = rx.recv_timeout(Duration::from_millis(200)) {
            load.on_line(from, &line);
        }
        let logs = dump(&mut c, &rx);
        let first = logs.get(&1).map(|(.., v)| v.clone());
        let equal =
            logs.len() == NODES as usize && logs.values().all(|(.., v)| Some(v) == first.as_ref());
        if (equal && previous == first) || Instant::now() > deadline {
            break logs;
        }
        previous = first;
    };
    let report = Report {
        kills,
        leader_kills,
        acked: load.acked.len(),
        applied: logs.get(&1).map_or(0, |(.., v)| v.len()),
        snapshot: logs.values().map(|(_, _, s, _)| *s).max().unwrap_or(0),
    };
    assert_eq!(
        logs.len(),
        NODES as usize,
        "{protocol}: a node did not answer"
    );
    let reference = &logs[&1].3;
    for (id, (.., values)) in &logs {
        if values != reference {
            let at = values
                .iter()
                .zip(reference)
                .position(|(a, b)| a != b)
                .unwrap_or(values.len().min(reference.len()));
            let around =
                |l: &[u64]| l[at.saturating_sub(3).min(l.len())..(at + 5).min(l.len())].to_vec();
            panic!(
                "{protocol}: node {id} applied another order: {} values against node 1's {}; \
                 first difference at position {at}: {:?} against {:?}",
                values.len(),
                reference.len(),
                around(values),
                around(reference)
            );
        }
    }
    let mut seen = HashSet::new();
    for v in reference {
        assert!(seen.insert(*v), "{protocol}: value {v} applied twice");
    }
    let lost: Vec<u64> = load
        .acked
        .iter()
        .copied()
        .filter(|v| !seen.contains(v))
        .collect();
    assert!(
        lost.is_empty(),
        "{protocol}: acknowledged values lost: {lost:?}"
    );
    assert!(
        report.acked >= 100,
        "{protocol}: only {} acknowledged",
        report.acked
    );
    assert!(report.snapshot > 0, "{protocol}: no node took a snapshot");
    report
}
