//! Load-balancer picks and a slow-endpoint simulation.
//!
//! 1. Pick cost (`pick_untimed` and drop the guard) for each policy at 10,
//!    100 and 1,000 endpoints on one thread, and the pick rate of two threads
//!    at once against one at each size; at 100 endpoints `select` (the
//!    choice alone) and `pick` (timed: one clock read more).
//! 2. Building a balancer of 2,000 endpoints in one `extend` under each
//!    consistent-hashing algorithm, against building a `HashRing` of the
//!    same names (the rebuild is the same work; the ratio is the overhead).
//! 3. In the spirit of Linkerd's published experiment: 11 endpoints, one of
//!    them 100x slower for the middle third of the run; open-loop requests;
//!    p50/p99/p99.9 of request latency per policy (virtual time, seeded).
//!
//! ```text
//! cargo bench -p consenso --bench balance
//! CONSENSO_BENCH_EQUAL_WEIGHTS=1 cargo bench -p consenso --bench balance -- picks
//! ```

use consenso::balance::{Balancer, Clock, Health, ManualClock, NewEndpoint, Outcome, Policy};
use consenso::hashing::{Algorithm, HashRing};
use consenso::rng::Rng;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn policies() -> Vec<(&'static str, Policy)> {
    vec![
        ("random", Policy::Random),
        ("round_robin", Policy::RoundRobin),
        ("weighted_round_robin", Policy::WeightedRoundRobin),
        ("least_connections", Policy::LeastConnections),
        ("least_response_time", Policy::LeastResponseTime),
        (
            "consistent_hash (ring)",
            Policy::ConsistentHash {
                algorithm: Algorithm::default(),
                bound: None,
            },
        ),
        (
            "consistent_hash (maglev, bound 1.25)",
            Policy::ConsistentHash {
                algorithm: Algorithm::Maglev {
                    min_table_size: Algorithm::DEFAULT_MAGLEV_TABLE,
                },
                bound: Some(1.25),
            },
        ),
    ]
}

/// Endpoint `i`'s weight: 1 to 3, or 1 for every endpoint when
/// `CONSENSO_BENCH_EQUAL_WEIGHTS=1` (the policies' unweighted paths).
fn weight_of(i: usize) -> u32 {
    let equal = std::env::var("CONSENSO_BENCH_EQUAL_WEIGHTS").is_ok_and(|v| v == "1");
    if equal {
        1
    } else {
        1 + (i % 3) as u32
    }
}

fn build(policy: Policy, n: usize) -> Balancer {
    let b = Balancer::new(policy).expect("valid policy");
    let names: Vec<String> = (0..n).map(|i| format!("endpoint-{i}")).collect();
    b.extend(
        names
            .iter()
            .enumerate()
            .map(|(i, name)| NewEndpoint::new(name, weight_of(i))),
    )
    .expect("extend");
    // Give least_response_time some history.
    for _ in 0..(4 * n) {
        if let Ok(p) = b.pick(Some(b"warm")) {
            p.finish_with_latency(Duration::from_micros(500), Outcome::Success);
        }
    }
    b
}

/// `count` picks, each dropped at once: `pick_untimed` (what the policy
/// itself costs) or, `timed`, `pick` (one clock read more, so finishing it
/// records latency).
fn pick_loop(b: &Balancer, count: u64, timed: bool) -> Duration {
    let start = Instant::now();
    for i in 0..count {
        let key = i.to_le_bytes();
        let p = if timed {
            b.pick(Some(&key))
        } else {
            b.pick_untimed(Some(&key))
        };
        black_box(p.expect("pick").index());
    }
    start.elapsed()
}

fn picks(b: &Balancer, count: u64) -> Duration {
    pick_loop(b, count, false)
}

/// `select`: the choice alone, without in-flight tracking (what Python's
/// `lb.pick()` does).
fn selects(b: &Balancer, count: u64) -> Duration {
    let start = Instant::now();
    for i in 0..count {
        let key = i.to_le_bytes();
        black_box(b.select(Some(&key)).expect("select"));
    }
    start.elapsed()
}

/// Median of three timed runs, in ns per call.
fn median_ns(run: impl Fn() -> Duration, count: u64) -> f64 {
    let mut samples: Vec<f64> = (0..3)
        .map(|_| run().as_nanos() as f64 / count as f64)
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[1]
}

/// The pick rate of two threads at once against one thread's, median of
/// three tries: a single try swings widely on a shared two-core machine.
fn two_thread_ratio(b: &Balancer, count: u64) -> f64 {
    let mut ratios: Vec<f64> = (0..3)
        .map(|_| {
            let one = count as f64 / picks(b, count).as_secs_f64();
            let start = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(|| picks(b, count));
                }
            });
            2.0 * count as f64 / start.elapsed().as_secs_f64() / one
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[1]
}

fn pick_costs() {
    println!(
        "| policy | 10 endpoints | 100 endpoints | 1,000 endpoints | 2 threads / 1 thread (10 / 100 / 1,000) | select only (100) | timed pick (100) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let count = 1_000_000u64;
    for (name, policy) in policies() {
        let (mut cells, mut ratios) = (Vec::new(), Vec::new());
        for n in [10, 100, 1000] {
            let b = build(policy, n);
            picks(&b, count / 10);
            cells.push(format!("{:.1} ns", median_ns(|| picks(&b, count), count)));
            ratios.push(format!("{:.2}x", two_thread_ratio(&b, count)));
        }
        let b = build(policy, 100);
        let select = median_ns(|| selects(&b, count), count);
        let timed = median_ns(|| pick_loop(&b, count, true), count);
        println!(
            "| {name} | {} | {} | {} | {} | {select:.1} ns | {timed:.1} ns |",
            cells[0],
            cells[1],
            cells[2],
            ratios.join(" / ")
        );
    }
}

/// Milliseconds to build 2,000 endpoints: a balancer in one `extend`, and a
/// hash ring of the same names; median of three.
fn build_costs() {
    println!();
    println!("| 2,000 endpoints | Balancer::extend | HashRing::new | ratio |");
    println!("|---|---:|---:|---:|");
    let names: Vec<String> = (0..2_000).map(|i| format!("node-{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    for (name, algorithm) in [
        ("ring (160 vnodes)", Algorithm::default()),
        (
            "maglev (65,537)",
            Algorithm::Maglev {
                min_table_size: Algorithm::DEFAULT_MAGLEV_TABLE,
            },
        ),
        ("rendezvous", Algorithm::Rendezvous),
        ("jump", Algorithm::Jump),
    ] {
        let policy = Policy::ConsistentHash {
            algorithm,
            bound: None,
        };
        let balancer = median_ns(
            || {
                let start = Instant::now();
                let b = Balancer::new(policy).expect("balancer");
                b.extend(refs.iter().map(|n| NewEndpoint::new(n, 1)))
                    .expect("extend");
                black_box(&b);
                start.elapsed()
            },
            1,
        ) / 1e6;
        let ring = median_ns(
            || {
                let start = Instant::now();
                black_box(HashRing::with_names(algorithm, &refs).expect("ring"));
                start.elapsed()
            },
            1,
        ) / 1e6;
        println!(
            "| {name} | {balancer:.2} ms | {ring:.2} ms | {:.2}x |",
            balancer / ring
        );
    }
    // Weighted round robin's order: the smooth cycle for small weights, the
    // strided order (linear in the endpoints) past 2^24 endpoints x weight.
    println!();
    println!("| weighted round robin, 2,000 endpoints | extend | one set_weight |");
    println!("|---|---:|---:|");
    for (name, base) in [("weights 1-3", 1u32), ("weights 10,000-10,002", 10_000)] {
        let b = Balancer::new(Policy::WeightedRoundRobin).expect("balancer");
        let start = Instant::now();
        b.extend(
            refs.iter()
                .enumerate()
                .map(|(i, n)| NewEndpoint::new(n, base + (i % 3) as u32)),
        )
        .expect("extend");
        let extend = start.elapsed().as_secs_f64() * 1e3;
        let start = Instant::now();
        b.set_weight(refs[0], base + 7).expect("set_weight");
        let update = start.elapsed().as_secs_f64() * 1e3;
        println!("| {name} | {extend:.2} ms | {update:.2} ms |");
    }
}

/// Latency percentiles (ms) of one simulated run.
fn simulate(policy: Policy, slow: bool) -> (f64, f64, f64) {
    let clock = Arc::new(ManualClock::new());
    let health = Health {
        consecutive_failures: 0,
        ewma_decay: Duration::from_secs(1),
        ..Health::default()
    };
    let b = Balancer::with_options(policy, health, clock.clone(), 7).expect("balancer");
    for i in 0..11 {
        b.add(&format!("e{i}"), 1).expect("add");
    }
    let mut rng = Rng::new(11);
    let ms = 1_000_000u64;
    let rate_per_ms = 1.0; // 1,000 requests/s
    let duration = 60_000 * ms;
    let (slow_from, slow_to) = (20_000 * ms, 40_000 * ms);
    let mut now = 0u64;
    let mut done: BinaryHeap<Reverse<(u64, u64)>> = BinaryHeap::new();
    let mut open: Vec<Option<consenso::balance::Pick>> = Vec::new();
    let mut latencies: Vec<u64> = Vec::new();
    while now < duration {
        // Next arrival: exponential inter-arrival times.
        let u = ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let gap = (-u.ln() / rate_per_ms * ms as f64) as u64;
        let next = now + gap.max(1);
        while let Some(&Reverse((t, id))) = done.peek() {
            if t > next {
                break;
            }
            done.pop();
            clock.advance(t.saturating_sub(clock.now_ns()));
            if let Some(p) = open[id as usize].take() {
                p.finish(Outcome::Success);
            }
        }
        clock.advance(next.saturating_sub(clock.now_ns()));
        now = next;
        let key = rng.next_u64().to_le_bytes();
        let p = b.pick(Some(&key)).expect("pick");
        // 10 ms ± 20% normally; endpoint 0 is 100x slower in the window.
        let jitter = 0.8 + 0.4 * ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64);
        let mut latency = (10.0 * jitter * ms as f64) as u64;
        if slow && p.index() == 0 && (slow_from..slow_to).contains(&now) {
            latency *= 100;
        }
        latencies.push(latency);
        let id = open.len() as u64;
        open.push(Some(p));
        done.push(Reverse((now + latency, id)));
    }
    latencies.sort_unstable();
    let pct = |q: f64| {
        latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)] as f64
            / ms as f64
    };
    (pct(0.5), pct(0.99), pct(0.999))
}

fn slow_endpoint() {
    println!();
    println!("| policy | p50 | p99 | p99.9 | p99, all healthy |");
    println!("|---|---:|---:|---:|---:|");
    for (name, policy) in policies() {
        let (p50, p99, p999) = simulate(policy, true);
        let (_, healthy99, _) = simulate(policy, false);
        println!("| {name} | {p50:.1} ms | {p99:.1} ms | {p999:.1} ms | {healthy99:.1} ms |");
    }
}

fn main() {
    // `balance picks` (or `builds`, `slow`) runs one part alone.
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let runs = |part: &str| only.as_deref().is_none_or(|o| o == part);
    if runs("picks") {
        pick_costs();
    }
    if runs("builds") {
        build_costs();
    }
    if runs("slow") {
        slow_endpoint();
    }
}
