//! consenso's consistent hashing side by side with the published crates the
//! load-balancing issue names, on the same machine in one run: ns per lookup
//! of u64 keys at 100 endpoints (median of 5 passes) and peak-to-mean load
//! over the same keys.
//!
//! ```text
//! cargo bench -p consenso --bench hash_compare
//! ```

use consenso::hashing::{Algorithm, HashRing};
use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

const N: usize = 100;

fn median_ns(keys: &[u64], mut f: impl FnMut(u64) -> usize) -> f64 {
    let mut samples = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let mut acc = 0usize;
        for &k in keys {
            acc = acc.wrapping_add(f(black_box(k)));
        }
        black_box(acc);
        samples.push(start.elapsed().as_nanos() as f64 / keys.len() as f64);
    }
    samples.sort_by(f64::total_cmp);
    samples[2]
}

fn peak_to_mean(keys: &[u64], mut f: impl FnMut(u64) -> usize) -> f64 {
    let mut counts: HashMap<usize, u64> = HashMap::new();
    for &k in keys {
        *counts.entry(f(k)).or_default() += 1;
    }
    let max = counts.values().copied().max().unwrap_or(0) as f64;
    max / (keys.len() as f64 / N as f64)
}

#[derive(Hash, Clone, Copy, PartialEq, Eq, Debug)]
struct VNode {
    endpoint: usize,
    replica: u32,
}

fn row(name: &str, keys: &[u64], sample: &[u64], mut f: impl FnMut(u64) -> usize) {
    let ns = median_ns(sample, &mut f);
    let ptm = peak_to_mean(keys, &mut f);
    println!("| {name} | {ns:.1} ns | {ptm:.3} |");
}

fn main() {
    let keys: Vec<u64> = (0..1_000_000u64)
        .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .collect();
    let small = &keys[..100_000];
    let names: Vec<String> = (0..N).map(|i| format!("endpoint-{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    println!("| implementation (100 endpoints) | lookup | peak/mean |");
    println!("|---|---:|---:|");

    let ours = HashRing::with_names(Algorithm::Ring { vnodes: 160 }, &refs).expect("ring");
    row("consenso ring (160 vnodes)", &keys, &keys, |k| {
        ours.index_for_u64(k)
    });
    let mut theirs = hashring::HashRing::new();
    for e in 0..N {
        for replica in 0..160 {
            theirs.add(VNode {
                endpoint: e,
                replica,
            });
        }
    }
    row("hashring (160 vnodes)", &keys, &keys, |k| {
        theirs.get(&k).map_or(0, |v| v.endpoint)
    });

    let ours = HashRing::with_names(
        Algorithm::Maglev {
            min_table_size: 65_537,
        },
        &refs,
    )
    .expect("maglev");
    row("consenso maglev (65,537)", &keys, &keys, |k| {
        ours.index_for_u64(k)
    });
    let theirs = maglev::Maglev::new((0..N).collect::<Vec<usize>>());
    row("maglev crate", &keys, &keys, |k| {
        use maglev::ConsistentHasher;
        *theirs.get(&k).unwrap_or(&0)
    });

    let ours = HashRing::with_names(Algorithm::Jump, &refs).expect("jump");
    row("consenso jump", &keys, &keys, |k| ours.index_for_u64(k));
    let theirs = jumphash::JumpHasher::new_with_keys(1, 2);
    row("jumphash", &keys, &keys, |k| {
        theirs.slot(&k, N as u32) as usize
    });

    let ours = HashRing::with_names(Algorithm::Rendezvous, &refs).expect("rendezvous");
    row("consenso rendezvous", &keys, small, |k| {
        ours.index_for_u64(k)
    });
    let ids: Vec<usize> = (0..N).collect();
    let mut theirs = hash_rings::rendezvous::Ring::new();
    for id in &ids {
        theirs.insert_node(id, 1);
    }
    row("hash-rings rendezvous", &keys[..200_000], small, |k| {
        *theirs.get_node(&k)
    });
}
