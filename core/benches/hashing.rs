//! Consistent-hashing lookups and quality: ns per lookup for each algorithm
//! at 10, 100 and 1,000 endpoints (u64 keys, one thread), peak-to-mean load
//! over 1M keys, and the share of keys that move when one endpoint is added.
//!
//! ```text
//! cargo bench -p consenso --bench hashing
//! ```

use consenso::hashing::{Algorithm, HashRing};
use std::hint::black_box;
use std::time::Instant;

fn build(alg: Algorithm, n: usize) -> HashRing {
    let names: Vec<String> = (0..n).map(|i| format!("endpoint-{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    HashRing::with_names(alg, &refs).expect("valid ring")
}

/// Median of 5 timed passes of `keys` lookups, in ns per lookup.
fn ns_per_lookup(r: &HashRing, keys: &[u64]) -> f64 {
    let mut samples = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let mut acc = 0usize;
        for &k in keys {
            acc = acc.wrapping_add(r.index_for_u64(black_box(k)));
        }
        black_box(acc);
        samples.push(start.elapsed().as_nanos() as f64 / keys.len() as f64);
    }
    samples.sort_by(f64::total_cmp);
    samples[2]
}

fn main() {
    let algs = [
        ("ring (160 vnodes)", Algorithm::Ring { vnodes: 160 }),
        (
            "maglev (65,537)",
            Algorithm::Maglev {
                min_table_size: 65_537,
            },
        ),
        ("jump", Algorithm::Jump),
        ("rendezvous", Algorithm::Rendezvous),
    ];
    let keys: Vec<u64> = (0..1_000_000u64)
        .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .collect();
    println!("| algorithm | 10 endpoints | 100 endpoints | 1,000 endpoints | peak/mean @100 (1M keys) | moved adding 1 to 100 | bound 1.2/101 or 2.5/101 |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, alg) in algs {
        let mut times = Vec::new();
        for n in [10, 100, 1000] {
            let r = build(alg, n);
            let sample = if alg == Algorithm::Rendezvous {
                &keys[..100_000]
            } else {
                &keys[..]
            };
            times.push(ns_per_lookup(&r, sample));
        }
        let r100 = build(alg, 100);
        let r101 = build(alg, 101);
        let mut counts = vec![0u64; 100];
        let mut moved = 0u64;
        for &k in &keys {
            let a = r100.index_for_u64(k);
            counts[a] += 1;
            if r101.index_for_u64(k) != a {
                moved += 1;
            }
        }
        let mean = keys.len() as f64 / 100.0;
        let peak = *counts.iter().max().unwrap_or(&0) as f64 / mean;
        let bound = if matches!(alg, Algorithm::Maglev { .. }) {
            2.5 / 101.0
        } else {
            1.2 / 101.0
        };
        println!(
            "| {name} | {:.1} ns | {:.1} ns | {:.1} ns | {peak:.3} | {:.4} | {bound:.4} |",
            times[0],
            times[1],
            times[2],
            moved as f64 / keys.len() as f64
        );
    }
}
