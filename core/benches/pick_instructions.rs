//! Instructions per pick, for a comparison that machine noise cannot blur:
//! run under callgrind, which counts instructions, the same count for the
//! same binary and input whatever else the machine does. One policy per
//! run, 100 endpoints, 10,000 `pick_untimed` (then dropped) and 10,000
//! `select`; `make bench-instructions` runs every policy and divides the
//! inclusive cost of `run_picks` and `run_selects` by 10,000.
//!
//! ```text
//! pick_instructions <policy> <equal|unequal|large> [endpoints, default 100]
//! ```
//!
//! `unequal` weights are 1 to 3; `large` are 10,000 to 10,002, whose
//! weighted round-robin order is strided rather than a table.
//!
//! Uses only calls that every version of the balancer has, so the same
//! file builds against an older commit for a before/after comparison.

use consenso::balance::{Balancer, Policy};
use consenso::hashing::Algorithm;
use std::hint::black_box;

const ROUNDS: usize = 10_000;

#[inline(never)]
fn run_picks(b: &Balancer, key: Option<&[u8]>) {
    for _ in 0..ROUNDS {
        // Dropped unfinished: the in-flight count goes up and back down.
        drop(black_box(b.pick_untimed(key).expect("pick")));
    }
}

#[inline(never)]
fn run_selects(b: &Balancer, key: Option<&[u8]>) {
    for _ in 0..ROUNDS {
        black_box(b.select(key).expect("select"));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(policy), Some(weights)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: pick_instructions <policy> <equal|unequal|large> [endpoints]");
        std::process::exit(2);
    };
    let policy = match policy.as_str() {
        "random" => Policy::Random,
        "round_robin" => Policy::RoundRobin,
        "weighted_round_robin" => Policy::WeightedRoundRobin,
        "least_connections" => Policy::LeastConnections,
        "least_response_time" => Policy::LeastResponseTime,
        "ring" => Policy::ConsistentHash {
            algorithm: Algorithm::Ring { vnodes: 160 },
            bound: None,
        },
        "maglev_bounded" => Policy::ConsistentHash {
            algorithm: Algorithm::Maglev {
                min_table_size: 65_537,
            },
            bound: Some(1.25),
        },
        other => {
            eprintln!("unknown policy {other}");
            std::process::exit(2);
        }
    };
    let endpoints: u32 = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(100);
    let b = Balancer::new(policy).expect("policy");
    for i in 0..endpoints {
        let weight = match weights.as_str() {
            "equal" => 1,
            "large" => 10_000 + i % 3,
            _ => 1 + i % 3,
        };
        b.add(&format!("endpoint-{i}"), weight).expect("add");
    }
    let key = matches!(policy, Policy::ConsistentHash { .. }).then_some(&b"some-key"[..]);
    run_picks(&b, key);
    run_selects(&b, key);
}
