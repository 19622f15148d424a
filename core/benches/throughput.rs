//! Cluster throughput: 3 nodes (Raft, Multi-Paxos or ZAB) in one process on LocalNetwork, in-memory
//! storage, N closed-loop proposers (each waits for its commit before it
//! proposes again), empty or 100-byte commands. Prints commits/s and p50/p99
//! commit latency per point. In the spirit of openraft's `benchmarks/minimal`.
//!
//! Each point runs `--repeat` times (a fresh cluster each time) and reports
//! the median run: thread scheduling on a small machine is noisy.
//!
//! With `--data-dir DIR` every node keeps a FileStorage (synced) under
//! `DIR`, and the run first measures the raw rate of write + fdatasync of
//! one record of the same size on the same disk, to compare with (one
//! writer; three; and three started together until two are done, the floor
//! of a one-proposer commit when three nodes share the disk); each point
//! then also reports commits per sync of the leader.
//!
//! ```text
//! cargo bench -p consenso --bench throughput -- [--protocol raft,paxos,zab]
//!     [--proposers 1,64,256,4096] [--payload 0,100] [--seconds 3] [--repeat 3]
//!     [--data-dir DIR]
//! ```

use bytes::Bytes;
use consenso::consensus::paxos::MultiPaxos;
use consenso::consensus::raft::Raft;
use consenso::consensus::zab::Zab;
use consenso::consensus::{Protocol, ProtocolKind};
use consenso::local::LocalCluster;
use consenso::runtime::{NodeConfig, NodeHandle, NullMachine};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Log-linear latency histogram in nanoseconds (16 sub-buckets per power of
/// two, so percentiles are within ~6%). Lock-free.
struct Histogram {
    buckets: Vec<AtomicU64>,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            buckets: (0..64 * 16).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn bucket(ns: u64) -> usize {
        let ns = ns.max(1);
        let exp = 63 - ns.leading_zeros() as usize;
        let sub = if exp >= 4 {
            ((ns >> (exp - 4)) & 15) as usize
        } else {
            0
        };
        exp * 16 + sub
    }

    fn lower_bound(bucket: usize) -> u64 {
        let (exp, sub) = (bucket / 16, bucket % 16);
        if exp >= 4 {
            (1u64 << exp) + ((sub as u64) << (exp - 4))
        } else {
            1u64 << exp
        }
    }

    fn record(&self, d: Duration) {
        self.buckets[Self::bucket(d.as_nanos() as u64)].fetch_add(1, Relaxed);
    }

    fn percentile(&self, p: f64) -> Duration {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return Duration::ZERO;
        }
        let target = ((total as f64) * p).ceil() as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= target {
                return Duration::from_nanos(Self::lower_bound(i));
            }
        }
        Duration::ZERO
    }
}

struct Run {
    stop: AtomicBool,
    measure_from: Instant,
    completed: AtomicU64,
    failed: AtomicU64,
    in_flight: AtomicU64,
    latency: Histogram,
}

/// A fresh command, as a client would build one (sharing one buffer between
/// all proposals would measure refcount contention instead).
fn command(size: usize) -> Bytes {
    if size == 0 {
        Bytes::new()
    } else {
        Bytes::from(vec![0xAB; size])
    }
}

/// One closed-loop proposer: proposes, and proposes again from the
/// completion callback until the run stops.
fn propose_loop<P: Protocol>(node: NodeHandle<P>, run: Arc<Run>, size: usize) {
    let started = Instant::now();
    run.in_flight.fetch_add(1, Relaxed);
    let n = node.clone();
    let r = Arc::clone(&run);
    node.propose_with(
        command(size),
        Box::new(move |result| {
            let now = Instant::now();
            r.in_flight.fetch_sub(1, Relaxed);
            match result {
                Ok(_) => {
                    if now >= r.measure_from && !r.stop.load(Relaxed) {
                        r.completed.fetch_add(1, Relaxed);
                        r.latency.record(now - started);
                    }
                    if !r.stop.load(Relaxed) {
                        propose_loop(n, r, size);
                    }
                }
                Err(_) => {
                    r.failed.fetch_add(1, Relaxed);
                }
            }
        }),
    );
}

struct Point {
    payload: usize,
    proposers: usize,
    commits_per_sec: f64,
    p50: Duration,
    p99: Duration,
    failed: u64,
    /// Commits per sync of the leader's storage (durable runs).
    commits_per_sync: Option<f64>,
}

fn measure(
    protocol: ProtocolKind,
    payload: usize,
    proposers: usize,
    seconds: f64,
    data_dir: Option<&Path>,
) -> Result<Point, String> {
    match protocol {
        ProtocolKind::Raft => measure_with::<Raft>(payload, proposers, seconds, data_dir),
        ProtocolKind::MultiPaxos => {
            measure_with::<MultiPaxos>(payload, proposers, seconds, data_dir)
        }
        ProtocolKind::Zab => measure_with::<Zab>(payload, proposers, seconds, data_dir),
    }
}

/// A fresh directory for one durable run under `root`.
fn fresh_dir(root: &Path) -> PathBuf {
    static RUN: AtomicU64 = AtomicU64::new(0);
    let dir = root.join(format!(
        "run-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn measure_with<P: Protocol>(
    payload: usize,
    proposers: usize,
    seconds: f64,
    data_dir: Option<&Path>,
) -> Result<Point, String>
where
    P::Config: Default,
{
    let mut config = NodeConfig::<P::Config>::new(1, vec![1, 2, 3]);
    let run_dir = data_dir.map(fresh_dir);
    config.data_dir = run_dir.clone();
    let cluster =
        LocalCluster::<P>::start_with(config, |_| NullMachine).map_err(|e| e.to_string())?;
    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .ok_or("no leader")?;
    let node = cluster.node(leader).ok_or("no leader node")?.handle();
    let warmup = Duration::from_millis(500);
    let run = Arc::new(Run {
        stop: AtomicBool::new(false),
        measure_from: Instant::now() + warmup,
        completed: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        in_flight: AtomicU64::new(0),
        latency: Histogram::new(),
    });
    for _ in 0..proposers {
        propose_loop(node.clone(), Arc::clone(&run), payload);
    }
    std::thread::sleep(warmup);
    let syncs_before = node.status().storage_syncs;
    std::thread::sleep(Duration::from_secs_f64(seconds));
    run.stop.store(true, Relaxed);
    let syncs = node.status().storage_syncs - syncs_before;
    let elapsed = run.measure_from.elapsed().as_secs_f64();
    let completed = run.completed.load(Relaxed);
    let deadline = Instant::now() + Duration::from_secs(10);
    while run.in_flight.load(Relaxed) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    cluster.shutdown();
    if let Some(dir) = run_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(Point {
        payload,
        proposers,
        commits_per_sec: completed as f64 / elapsed,
        p50: run.latency.percentile(0.50),
        p99: run.latency.percentile(0.99),
        failed: run.failed.load(Relaxed),
        commits_per_sync: data_dir.map(|_| completed as f64 / syncs.max(1) as f64),
    })
}

/// The raw rate of the disk under `root`: `writers` threads, each on its
/// own preallocated file, appending one `size`-byte record and calling
/// `fdatasync`, for `seconds` (three local nodes are three such writers on
/// one disk). Returns syncs/s in total and the p50 and p99 of one write +
/// sync.
fn raw_sync_rate(
    root: &Path,
    size: usize,
    seconds: f64,
    writers: usize,
) -> std::io::Result<(f64, Duration, Duration)> {
    use std::io::Write;
    let dir = fresh_dir(root);
    std::fs::create_dir_all(&dir)?;
    let latency = Arc::new(Histogram::new());
    let total = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let path = dir.join(format!("raw{w}"));
            let (latency, total) = (Arc::clone(&latency), Arc::clone(&total));
            std::thread::spawn(move || -> std::io::Result<()> {
                // Preallocated like a log segment: a sync writes no metadata.
                std::fs::write(&path, vec![0u8; 64 << 20])?;
                let mut file = std::fs::OpenOptions::new().write(true).open(&path)?;
                file.sync_all()?;
                let record = vec![0xAB; size];
                while start.elapsed().as_secs_f64() < seconds {
                    let t = Instant::now();
                    file.write_all(&record)?;
                    file.sync_data()?;
                    latency.record(t.elapsed());
                    total.fetch_add(1, Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join()
            .map_err(|_| std::io::Error::other("writer panicked"))??;
    }
    let rate = total.load(Relaxed) as f64 / start.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    Ok((rate, latency.percentile(0.5), latency.percentile(0.99)))
}

/// The floor a commit of one proposer meets when three nodes share one
/// disk: three writers, each on its own preallocated file, start a
/// `size`-byte write + `fdatasync` together, round after round, for
/// `seconds`; a round's time is when the second of them is done (a
/// majority of three is durable). Returns the p50 and p99 of a round.
fn raw_quorum_floor(
    root: &Path,
    size: usize,
    seconds: f64,
) -> std::io::Result<(Duration, Duration)> {
    use std::io::Write;
    use std::sync::{Barrier, Mutex};
    const WRITERS: usize = 3;
    let dir = fresh_dir(root);
    std::fs::create_dir_all(&dir)?;
    let latency = Arc::new(Histogram::new());
    let barrier = Arc::new(Barrier::new(WRITERS));
    let round: Arc<Mutex<Vec<Duration>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let path = dir.join(format!("quorum{w}"));
            let (latency, barrier, round, stop) = (
                Arc::clone(&latency),
                Arc::clone(&barrier),
                Arc::clone(&round),
                Arc::clone(&stop),
            );
            std::thread::spawn(move || -> std::io::Result<()> {
                std::fs::write(&path, vec![0u8; 64 << 20])?;
                let mut file = std::fs::OpenOptions::new().write(true).open(&path)?;
                file.sync_all()?;
                let record = vec![0xAB; size];
                loop {
                    if w == 0 && start.elapsed().as_secs_f64() >= seconds {
                        stop.store(true, Relaxed);
                    }
                    barrier.wait();
                    if stop.load(Relaxed) {
                        return Ok(());
                    }
                    let t = Instant::now();
                    file.write_all(&record)?;
                    file.sync_data()?;
                    round.lock().unwrap().push(t.elapsed());
                    if barrier.wait().is_leader() {
                        let mut times = std::mem::take(&mut *round.lock().unwrap());
                        times.sort_unstable();
                        latency.record(times[WRITERS / 2]);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join()
            .map_err(|_| std::io::Error::other("writer panicked"))??;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok((latency.percentile(0.5), latency.percentile(0.99)))
}

fn list(arg: Option<String>, default: &[usize]) -> Vec<usize> {
    arg.map(|s| s.split(',').filter_map(|v| v.trim().parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}

fn main() {
    let mut protocols = None;
    let mut proposers = None;
    let mut payloads = None;
    let mut seconds = 3.0;
    let mut data_dir: Option<PathBuf> = None;
    let mut repeat = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--protocol" => protocols = args.next(),
            "--proposers" => proposers = args.next(),
            "--payload" => payloads = args.next(),
            "--data-dir" => data_dir = args.next().map(PathBuf::from),
            "--seconds" => seconds = args.next().and_then(|v| v.parse().ok()).unwrap_or(seconds),
            "--repeat" => {
                repeat = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(repeat)
                    .max(1)
            }
            _ => {} // `cargo bench` passes --bench
        }
    }
    let proposers = list(proposers, &[1, 64, 256, 4096]);
    let payloads = list(payloads, &[0, 100]);
    let protocols: Vec<ProtocolKind> = protocols
        .as_deref()
        .unwrap_or("raft,paxos,zab")
        .split(',')
        .filter_map(|n| ProtocolKind::from_name(n.trim()))
        .collect();
    if let Some(dir) = &data_dir {
        for &payload in &payloads {
            // A record's framing and an entry's header come to about 30 bytes.
            for writers in [1, 3] {
                match raw_sync_rate(dir, payload + 30, seconds, writers) {
                    Ok((rate, p50, p99)) => println!(
                        "raw write+fdatasync of {} B, {writers} writer(s) on {}: {rate:.0}/s, \
                         p50 {p50:.1?}, p99 {p99:.1?}",
                        payload + 30,
                        dir.display()
                    ),
                    Err(e) => println!("raw write+fdatasync on {}: error: {e}", dir.display()),
                }
            }
            match raw_quorum_floor(dir, payload + 30, seconds) {
                Ok((p50, p99)) => println!(
                    "raw write+fdatasync of {} B, 3 writers started together, \
                     until 2 are done: p50 {p50:.1?}, p99 {p99:.1?}",
                    payload + 30
                ),
                Err(e) => println!("raw quorum floor on {}: error: {e}", dir.display()),
            }
        }
        println!();
    }
    let durable = data_dir.is_some();
    println!(
        "| protocol | payload | proposers | commits/s | p50 latency | p99 latency |{}",
        if durable { " commits/sync |" } else { "" }
    );
    println!(
        "|----------|--------:|----------:|----------:|------------:|------------:|{}",
        if durable { "-------------:|" } else { "" }
    );
    for &protocol in &protocols {
        for &payload in &payloads {
            for &n in &proposers {
                let mut runs: Vec<Point> = Vec::new();
                let mut error = None;
                for _ in 0..repeat {
                    match measure(protocol, payload, n, seconds, data_dir.as_deref()) {
                        Ok(p) => runs.push(p),
                        Err(e) => error = Some(e),
                    }
                }
                runs.sort_by(|a, b| a.commits_per_sec.total_cmp(&b.commits_per_sec));
                let median = if runs.is_empty() {
                    None
                } else {
                    Some(runs.swap_remove(runs.len() / 2))
                };
                match median.ok_or_else(|| error.unwrap_or_default()) {
                    Ok(p) => {
                        println!(
                            "| {} | {} B | {} | {:.0} | {:.1?} | {:.1?} |{}{}",
                            protocol.name(),
                            p.payload,
                            p.proposers,
                            p.commits_per_sec,
                            p.p50,
                            p.p99,
                            p.commits_per_sync
                                .map_or(String::new(), |c| format!(" {c:.1} |")),
                            if p.failed > 0 {
                                format!(" ({} failed)", p.failed)
                            } else {
                                String::new()
                            }
                        );
                    }
                    Err(e) => println!(
                        "| {} | {payload} B | {n} | error: {e} | | |",
                        protocol.name()
                    ),
                }
            }
        }
    }
}
