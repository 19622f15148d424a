//! Bounded memory under compaction: a 3-node durable cluster (Raft,
//! Multi-Paxos or ZAB, one process, LocalNetwork, FileStorage under
//! `--data-dir`) takes `--commits` 100-byte commands from 256 closed-loop
//! proposers while every node snapshots its state machine every
//! `--snapshot-entries` entries. Once a second it prints the process's
//! resident memory (VmRSS, and the peak VmHWM), the bytes and log segments
//! on disk, and the leader's last and snapshot index; at the end, the total
//! log bytes written against the most the directories ever held.
//!
//! `--snapshot-entries 0` turns snapshots off, to compare: memory then
//! grows with the log.
//!
//! ```text
//! cargo bench -p consenso --bench compaction -- --data-dir DIR
//!     [--protocol raft] [--commits 10000000] [--snapshot-entries 100000]
//! ```

use bytes::Bytes;
use consenso::consensus::paxos::MultiPaxos;
use consenso::consensus::raft::Raft;
use consenso::consensus::zab::Zab;
use consenso::consensus::{Protocol, ProtocolKind};
use consenso::local::LocalCluster;
use consenso::runtime::{CounterMachine, NodeConfig, NodeHandle, SnapshotPolicy};
use consenso::types::Entry;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PROPOSERS: usize = 256;

/// Prints the nodes' warnings, and with `CONSENSO_LOG=info` their role
/// changes too, with the time since the start.
struct Logger(Instant, log::LevelFilter);

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= self.1
    }

    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            eprintln!(
                "{:>8.3}s {} {}",
                self.0.elapsed().as_secs_f64(),
                r.level(),
                r.args()
            );
        }
    }

    fn flush(&self) {}
}
const PAYLOAD: usize = 100;

struct Load {
    stop: AtomicBool,
    committed: AtomicU64,
    in_flight: AtomicU64,
    failed: AtomicU64,
}

/// One closed-loop proposer on `node`; it ends at the first failure (the
/// node no longer leads: the main loop starts proposers on the new one).
fn propose_loop<P: Protocol>(node: NodeHandle<P>, load: Arc<Load>, target: u64) {
    load.in_flight.fetch_add(1, Relaxed);
    let n = node.clone();
    let l = Arc::clone(&load);
    node.propose_with(
        Bytes::from(vec![0xAB; PAYLOAD]),
        Box::new(move |result| {
            l.in_flight.fetch_sub(1, Relaxed);
            match result {
                Ok(_) => {
                    if l.committed.fetch_add(1, Relaxed) + 1 >= target {
                        l.stop.store(true, Relaxed);
                    }
                    if !l.stop.load(Relaxed) {
                        propose_loop(n, l, target);
                    }
                }
                Err(_) => {
                    l.failed.fetch_add(1, Relaxed);
                }
            }
        }),
    );
}

/// `VmRSS` and `VmHWM` of this process, in bytes.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Bytes of every file under `dir`, and how many of them are log segments.
fn on_disk(dir: &Path) -> (u64, usize) {
    let mut bytes = 0;
    let mut segments = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(path),
                Ok(m) => {
                    bytes += m.len();
                    segments += usize::from(path.extension().is_some_and(|x| x == "wal"));
                }
                Err(_) => {}
            }
        }
    }
    (bytes, segments)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn run<P: Protocol>(dir: &Path, commits: u64, every: u64) -> Result<(), String>
where
    P::Config: Default,
{
    let _ = std::fs::remove_dir_all(dir);
    let mut config = NodeConfig::<P::Config>::new(1, vec![1, 2, 3]);
    config.data_dir = Some(dir.to_path_buf());
    config.snapshot = SnapshotPolicy {
        entries: every,
        bytes: 0,
    };
    let cluster = LocalCluster::<P>::start_with(config, |_| CounterMachine::default())
        .map_err(|e| e.to_string())?;
    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .ok_or("no leader")?;
    let node = cluster.node(leader).ok_or("no leader node")?.handle();
    let load = Arc::new(Load {
        stop: AtomicBool::new(false),
        committed: AtomicU64::new(0),
        in_flight: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let started = Instant::now();
    for _ in 0..PROPOSERS {
        propose_loop(node.clone(), Arc::clone(&load), commits);
    }
    let mut node = node;
    let mut leader_changes = 0;
    println!(
        "{} commits/s  committed   rss MiB  peak MiB  disk MiB  segments  last index  snapshot",
        P::KIND.name()
    );
    let mut most_on_disk = 0;
    let mut last_print = Instant::now();
    while !load.stop.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        // Proposers that failed (a leader change): start them again on
        // whichever node leads now.
        let missing = PROPOSERS.saturating_sub(load.in_flight.load(Relaxed) as usize);
        if missing > PROPOSERS / 2 {
            if let Some(l) = cluster.leader().and_then(|id| cluster.node(id)) {
                if l.id() != node.id() {
                    leader_changes += 1;
                }
                node = l.handle();
                for _ in 0..missing {
                    propose_loop(node.clone(), Arc::clone(&load), commits);
                }
            }
        }
        if last_print.elapsed() < Duration::from_secs(1) && !load.stop.load(Relaxed) {
            let (bytes, _) = on_disk(dir);
            most_on_disk = most_on_disk.max(bytes);
            continue;
        }
        last_print = Instant::now();
        let done = load.committed.load(Relaxed);
        let (rss, hwm) = memory();
        let (bytes, segments) = on_disk(dir);
        most_on_disk = most_on_disk.max(bytes);
        let status = node.status();
        println!(
            "{:>16.0} {:>10} {:>9.0} {:>9.0} {:>9.0} {:>9} {:>11} {:>9}",
            done as f64 / started.elapsed().as_secs_f64(),
            done,
            mib(rss),
            mib(hwm),
            mib(bytes),
            segments,
            status.last_index,
            status.snapshot_index
        );
        if status.storage_failure.is_some() {
            return Err(format!("storage failed: {status}"));
        }
    }
    let elapsed = started.elapsed();
    while load.in_flight.load(Relaxed) > 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let (_, hwm) = memory();
    let status = node.status();
    cluster.shutdown();
    let _ = std::fs::remove_dir_all(dir);
    // Every entry reaches each of the three logs as one entry.
    let entry = Entry::OVERHEAD as u64 + PAYLOAD as u64;
    let written = 3 * status.last_index * entry;
    println!(
        "{}: {} commits in {:.0?} ({leader_changes} leader changes, {} proposals failed), \
         snapshots every {every} entries; about {:.0} MiB of log written across 3 nodes, at most \
         {:.0} MiB on disk at once; peak resident memory {:.0} MiB; leader's snapshot through {} of {}",
        P::KIND.name(),
        load.committed.load(Relaxed),
        elapsed,
        load.failed.load(Relaxed),
        mib(written),
        mib(most_on_disk),
        mib(hwm),
        status.snapshot_index,
        status.last_index
    );
    Ok(())
}

fn main() {
    let level = match std::env::var("CONSENSO_LOG").as_deref() {
        Ok("info") => log::LevelFilter::Info,
        _ => log::LevelFilter::Warn,
    };
    let logger = Box::leak(Box::new(Logger(Instant::now(), level)));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
    let mut protocol = ProtocolKind::Raft;
    let mut commits = 10_000_000u64;
    let mut every = SnapshotPolicy::default().entries;
    let mut data_dir: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--protocol" => {
                protocol = args
                    .next()
                    .and_then(|p| ProtocolKind::from_name(&p))
                    .unwrap_or(protocol)
            }
            "--commits" => commits = args.next().and_then(|v| v.parse().ok()).unwrap_or(commits),
            "--snapshot-entries" => {
                every = args.next().and_then(|v| v.parse().ok()).unwrap_or(every)
            }
            "--data-dir" => data_dir = args.next().map(PathBuf::from),
            _ => {} // `cargo bench` passes --bench
        }
    }
    let Some(root) = data_dir else {
        eprintln!("--data-dir DIR is required (the cluster's logs go there)");
        std::process::exit(2);
    };
    let dir = root.join(format!("compaction-{}", std::process::id()));
    let result = match protocol {
        ProtocolKind::Raft => run::<Raft>(&dir, commits, every),
        ProtocolKind::MultiPaxos => run::<MultiPaxos>(&dir, commits, every),
        ProtocolKind::Zab => run::<Zab>(&dir, commits, every),
    };
    if let Err(e) = result {
        eprintln!("{e}");
        std::process::exit(1);
    }
}
