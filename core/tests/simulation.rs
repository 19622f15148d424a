//! Seeded random simulation runs of Raft, Multi-Paxos and ZAB under
//! partitions, loss, duplication, reordering, delay, crashes and restarts.
//!
//! `CONSENSO_SIM_SEEDS` (default 10,000, the range that first caught ZAB's
//! "two servers follow each other" liveness bug) and `CONSENSO_SIM_STEPS`
//! (default 5000) set the range; `CONSENSO_SIM_SEED` replays one seed with
//! `replay_one`.

use consenso::consensus::paxos::{MultiPaxos, PaxosConfig};
use consenso::consensus::raft::{Raft, RaftConfig};
use consenso::consensus::replication::ReplicationLimits;
use consenso::consensus::zab::{Zab, ZabConfig};
use consenso::rng::Rng;
use consenso::sim::{run_random, SimFailure, SimReport};
use std::time::Instant;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Each seed also draws the replication limits, so small batches and
/// narrow pipelines (where acknowledgements split a batch) are explored.
fn limits_for(seed: u64) -> ReplicationLimits {
    let mut rng = Rng::new(seed ^ 0xC0F1_6000);
    ReplicationLimits {
        max_entries_per_message: [1, 2, 8, 4096][rng.below(4) as usize],
        max_inflight_messages: [1, 2, 64][rng.below(3) as usize],
        max_inflight_bytes: [64, 1 << 20][rng.below(2) as usize],
        // Small messages cut snapshots into many chunks.
        max_bytes_per_message: [64, 4096, 1 << 20][rng.below(3) as usize],
        ..ReplicationLimits::default()
    }
}

/// Runs one seed of protocol `name`.
fn run_one(name: &str, seed: u64, steps: u64) -> Result<SimReport, SimFailure> {
    match name {
        "raft" => {
            // PreVote and CheckQuorum each off in a quarter of the seeds:
            // the paths they usually hide (disruptive candidates, a deposed
            // leader that does not know it) run too.
            let mut rng = Rng::new(seed ^ 0x0FF5_E771);
            let config = RaftConfig {
                limits: limits_for(seed),
                pre_vote: !rng.chance(0.25),
                check_quorum: !rng.chance(0.25),
                ..RaftConfig::default()
            };
            let drew = format!(
                " pre_vote={} check_quorum={}",
                config.pre_vote, config.check_quorum
            );
            run_random::<Raft>(seed, steps, config, "replay_one").map_err(|mut f| {
                f.draw.push_str(&drew);
                f
            })
        }
        "paxos" => {
            let config = PaxosConfig {
                limits: limits_for(seed),
                ..PaxosConfig::default()
            };
            run_random::<MultiPaxos>(seed, steps, config, "replay_one")
        }
        "zab" => {
            let config = ZabConfig {
                limits: limits_for(seed),
                ..ZabConfig::default()
            };
            run_random::<Zab>(seed, steps, config, "replay_one")
        }
        other => panic!("unknown protocol {other}"),
    }
}

fn run_range(name: &'static str, seeds: u64, steps: u64) -> (Vec<SimReport>, Vec<SimFailure>) {
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(4) as u64;
    let results: Vec<(Vec<SimReport>, Vec<SimFailure>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                s.spawn(move || {
                    let mut ok = Vec::new();
                    let mut failed = Vec::new();
                    let mut seed = w;
                    while seed < seeds {
                        match run_one(name, seed, steps) {
                            Ok(r) => ok.push(r),
                            Err(f) => failed.push(f),
                        }
                        seed += workers;
                    }
                    (ok, failed)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker panicked"))
            .collect()
    });
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for (o, f) in results {
        ok.extend(o);
        failed.extend(f);
    }
    failed.sort_by_key(|f| f.seed);
    (ok, failed)
}

fn seed_range(name: &'static str) {
    let seeds = env_u64("CONSENSO_SIM_SEEDS", 10_000);
    let steps = env_u64("CONSENSO_SIM_STEPS", 5000);
    let start = Instant::now();
    let (ok, failed) = run_range(name, seeds, steps);
    let elections: u64 = ok.iter().map(|r| r.stats.leaders_elected).sum();
    let crashes: u64 = ok.iter().map(|r| r.stats.crashes).sum();
    let puts: u64 = ok.iter().map(|r| r.stats.puts_ok).sum();
    let gets: u64 = ok.iter().map(|r| r.stats.gets_ok).sum();
    println!(
        "{name} simulation: {} seeds x {steps} steps in {:.1?}: {} passed, {} failed; {elections} leaders elected, {crashes} crashes, {puts} puts and {gets} gets completed",
        seeds,
        start.elapsed(),
        ok.len(),
        failed.len()
    );
    for f in failed.iter().take(10) {
        println!("{f}");
    }
    assert!(
        failed.is_empty(),
        "{} seeds failed; first: {}",
        failed.len(),
        failed[0]
    );
    // Sometimes properties over the range: faults really happened, the hard
    // paths really ran, and the cluster worked through them.
    assert!(crashes > 0, "no run crashed a node");
    assert!(elections as usize > ok.len(), "no run saw a re-election");
    let total = |f: fn(&SimReport) -> u64| ok.iter().map(f).sum::<u64>();
    let sometimes = [
        ("a log truncated", total(|r| r.stats.truncations)),
        (
            "a stale-epoch message delivered",
            total(|r| r.stats.stale_deliveries),
        ),
        ("a read failed", total(|r| r.stats.reads_failed)),
        ("a put answered Dropped", total(|r| r.stats.puts_dropped)),
        ("an operation timed out", total(|r| r.stats.timeouts)),
        ("a node paused", total(|r| r.stats.pauses)),
        (
            "an operation answered Closed at shutdown",
            total(|r| r.stats.closed),
        ),
        (
            "a leader change over uncommitted entries",
            total(|r| r.stats.campaigns_over_uncommitted),
        ),
        (
            "an unsynced write lost or torn by a crash",
            total(|r| r.stats.disk_writes_lost),
        ),
        (
            "a file name change lost by a crash before its directory's sync",
            total(|r| r.stats.disk_names_lost),
        ),
        (
            "a torn write cut from the log at restart",
            total(|r| r.stats.torn_tails_cut),
        ),
        (
            "a bit flipped in synced data",
            total(|r| r.stats.disk_bits_flipped),
        ),
        (
            "a node refused to start on a damaged disk",
            total(|r| r.stats.disk_refusals),
        ),
        (
            "a node snapshotted its machine and compacted its log",
            total(|r| r.stats.snapshots_taken),
        ),
        (
            "a follower installed its leader's snapshot",
            total(|r| r.stats.snapshots_installed),
        ),
        (
            "a log segment deleted below a snapshot",
            total(|r| r.stats.segments_removed),
        ),
    ];
    println!("{name} hard paths: {sometimes:?}");
    for (what, count) in sometimes {
        assert!(count > 0, "{name}: over {seeds} seeds, never {what}");
    }
}

#[test]
fn raft_seed_range() {
    seed_range("raft");
}

#[test]
fn paxos_seed_range() {
    seed_range("paxos");
}

#[test]
fn zab_seed_range() {
    seed_range("zab");
}

#[test]
fn replay_one() {
    let seed = env_u64("CONSENSO_SIM_SEED", 0);
    let steps = env_u64("CONSENSO_SIM_STEPS", 5000);
    let protocol = std::env::var("CONSENSO_SIM_PROTOCOL").unwrap_or_else(|_| "raft".into());
    match run_one(&protocol, seed, steps) {
        Ok(r) => println!("{protocol} seed {seed}: {r:?}"),
        Err(f) => panic!("{f}"),
    }
}
