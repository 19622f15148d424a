//! Quality and behaviour of every algorithm: balance, weights, minimal
//! movement, distinct replicas, bounded loads, and bad input.

use super::*;

const ALL: [Algorithm; 4] = [
    Algorithm::Ring { vnodes: 160 },
    Algorithm::Maglev {
        min_table_size: 65_537,
    },
    Algorithm::Jump,
    Algorithm::Rendezvous,
];

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("endpoint-{i}")).collect()
}

fn ring(alg: Algorithm, n: usize) -> HashRing {
    let ns = names(n);
    let refs: Vec<&str> = ns.iter().map(String::as_str).collect();
    HashRing::with_names(alg, &refs).unwrap()
}

fn counts(r: &HashRing, keys: u64) -> Vec<u64> {
    let mut c = vec![0u64; r.len()];
    for k in 0..keys {
        c[r.index_for_u64(k)] += 1;
    }
    c
}

fn peak_to_mean(c: &[u64]) -> f64 {
    let max = *c.iter().max().unwrap() as f64;
    let mean = c.iter().sum::<u64>() as f64 / c.len() as f64;
    max / mean
}

#[test]
fn maglev_balances_within_three_percent_at_100_endpoints() {
    let r = ring(ALL[1], 100);
    let ptm = peak_to_mean(&counts(&r, 1_000_000));
    assert!(ptm <= 1.03, "Maglev peak-to-mean {ptm}");
}

#[test]
fn every_algorithm_spreads_keys_over_every_endpoint() {
    for alg in ALL {
        let r = ring(alg, 100);
        let c = counts(&r, 200_000);
        assert!(c.iter().all(|&x| x > 0), "{alg:?} starves an endpoint");
        let ptm = peak_to_mean(&c);
        assert!(ptm < 1.35, "{alg:?} peak-to-mean {ptm}");
    }
}

#[test]
fn adding_one_endpoint_moves_few_keys() {
    let n = 100;
    for alg in ALL {
        let before = ring(alg, n);
        let after = ring(alg, n + 1);
        let keys = 200_000u64;
        let moved = (0..keys)
            .filter(|&k| before.index_for_u64(k) != after.index_for_u64(k))
            .count() as f64
            / keys as f64;
        let limit = match alg {
            Algorithm::Maglev { .. } => 2.5 / (n + 1) as f64,
            _ => 1.2 / (n + 1) as f64,
        };
        assert!(
            moved <= limit,
            "{alg:?} moved {moved:.4} of keys (limit {limit:.4})"
        );
        // And the keys that moved went to the new endpoint (ring, jump,
        // rendezvous move nothing else).
        if !matches!(alg, Algorithm::Maglev { .. }) {
            let stray = (0..keys)
                .filter(|&k| {
                    let (a, b) = (before.index_for_u64(k), after.index_for_u64(k));
                    a != b && b != n
                })
                .count();
            assert_eq!(stray, 0, "{alg:?} moved keys between old endpoints");
        }
    }
}

#[test]
fn weights_set_the_shares() {
    for alg in [ALL[0], ALL[1], ALL[3]] {
        let r = HashRing::new(alg, &[("a", 1), ("b", 2), ("c", 5)]).unwrap();
        let c = counts(&r, 400_000);
        let total: u64 = c.iter().sum();
        for (i, want) in [1.0 / 8.0, 2.0 / 8.0, 5.0 / 8.0].iter().enumerate() {
            let got = c[i] as f64 / total as f64;
            assert!(
                (got - want).abs() < 0.03,
                "{alg:?}: endpoint {i} got {got:.3}, want {want:.3}"
            );
        }
    }
}

#[test]
fn replicas_are_distinct_and_start_with_the_primary() {
    for alg in ALL {
        let r = ring(alg, 10);
        let mut out = Vec::new();
        for k in 0..2_000u64 {
            let h = hash_u64(k, 9);
            r.indexes_for_hash(h, 3, &mut out);
            assert_eq!(out.len(), 3);
            assert_eq!(out[0], r.index_for_hash(h), "{alg:?}");
            assert!(
                out[0] != out[1] && out[1] != out[2] && out[0] != out[2],
                "{alg:?}"
            );
        }
        // Asking for more than there are gives each once.
        r.indexes_for_hash(1, 50, &mut out);
        let mut sorted = out.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>(), "{alg:?}");
    }
    let r = HashRing::with_names(Algorithm::Rendezvous, &["a", "b", "c"]).unwrap();
    assert_eq!(r.get_n(b"key", 2).len(), 2);
    assert_eq!(r.get(b"key"), r.get_n(b"key", 1)[0]);
}

#[test]
fn bounded_load_never_exceeds_its_bound() {
    for alg in ALL {
        let r = ring(alg, 10);
        let eps = 0.25;
        let mut loads = vec![0u64; 10];
        for k in 0..10_000u64 {
            let i = r.index_bounded(hash_u64(k, 3), &loads, eps).unwrap();
            loads[i] += 1;
            let total: u64 = loads.iter().sum();
            let cap = ((1.0 + eps) * total as f64 / 10.0).ceil() as u64;
            assert!(
                loads.iter().all(|&l| l <= cap),
                "{alg:?}: {loads:?} over {cap}"
            );
        }
    }
}

#[test]
fn bad_input_gets_a_clear_error() {
    assert_eq!(HashRing::new(ALL[0], &[]).unwrap_err(), HashError::Empty);
    assert_eq!(
        HashRing::new(ALL[1], &[("a", 0)]).unwrap_err(),
        HashError::ZeroWeight("a".into())
    );
    assert_eq!(
        HashRing::new(ALL[3], &[("a", 1), ("a", 2)]).unwrap_err(),
        HashError::Duplicate("a".into())
    );
    assert!(matches!(
        HashRing::new(Algorithm::Jump, &[("a", 3)]),
        Err(HashError::WeightsUnsupported(_, 3))
    ));
    assert!(matches!(
        HashRing::new(Algorithm::Ring { vnodes: 0 }, &[("a", 1)]),
        Err(HashError::Invalid { .. })
    ));
    assert!(matches!(
        HashRing::new(
            Algorithm::Maglev { min_table_size: 2 },
            &[("a", 2), ("b", 2), ("c", 1)]
        ),
        Err(HashError::Invalid { .. })
    ));
    // Weights beyond the table share it in proportion.
    let heavy = HashRing::new(
        Algorithm::Maglev {
            min_table_size: 1009,
        },
        &[("a", 3000), ("b", 1000)],
    )
    .unwrap();
    let to_a = (0..20_000u64)
        .filter(|k| heavy.get(&k.to_le_bytes()) == "a")
        .count();
    assert!((14_000..16_000).contains(&to_a), "{to_a}");
    // However light, every endpoint has a slot: it gets keys and is found
    // when walking the table for replicas.
    let lopsided = HashRing::new(
        Algorithm::Maglev { min_table_size: 7 },
        &[("a", 1000), ("b", 1)],
    )
    .unwrap();
    assert!((0..1_000u64).any(|k| lopsided.get(&k.to_le_bytes()) == "b"));
    assert_eq!(lopsided.get_n(b"k", 2).len(), 2);
    assert!(matches!(
        Algorithm::Maglev { min_table_size: 0 }.validate(),
        Err(HashError::Invalid {
            setting: "table_size",
            ..
        })
    ));
    let r = ring(ALL[0], 3);
    for eps in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            r.index_bounded(1, &[0, 0, 0], eps),
            Err(HashError::Invalid {
                setting: "epsilon",
                ..
            })
        ));
    }
    assert!(matches!(
        r.index_bounded(1, &[0, 0], 0.5),
        Err(HashError::Invalid { .. })
    ));
    assert_eq!(Algorithm::from_name("maglev"), Some(ALL[1]));
    assert_eq!(Algorithm::from_name("nope"), None);
}

#[test]
fn lookups_are_stable_across_builds() {
    for alg in ALL {
        let a = ring(alg, 20);
        let b = ring(alg, 20);
        for k in 0..1_000u64 {
            assert_eq!(a.index_for_u64(k), b.index_for_u64(k));
        }
    }
}

#[test]
fn blocked_jump_matches_the_papers_loop() {
    use super::jump::{jump, jump_reference};
    let mut key = 0x1234_5678_9ABC_DEF0u64;
    for buckets in [1usize, 2, 3, 7, 10, 100, 1000, 65_537, 1 << 20] {
        for _ in 0..20_000 {
            key = super::mix64(key.wrapping_add(1));
            assert_eq!(
                jump(key, buckets),
                jump_reference(key, buckets),
                "{key} {buckets}"
            );
        }
    }
    // Extreme keys: the step that multiplies by 2^31 saturates, never wraps.
    for key in [0, 1, u64::MAX, u64::MAX - 1, 1 << 63] {
        for buckets in [1usize, 5, 1 << 30] {
            assert_eq!(jump(key, buckets), jump_reference(key, buckets));
        }
    }
}

#[test]
fn loads_are_summed_exactly_at_any_size() {
    use super::sum_of;
    assert_eq!(sum_of(&[]), 0);
    assert_eq!(sum_of(&[1, 2, 3]), 6);
    assert_eq!(sum_of(&[u64::MAX; 3]), 3 * u64::MAX as u128);
    let mixed = [u64::MAX, 1 << 32, (1 << 32) - 1, 0, 12_345];
    let want: u128 = mixed.iter().map(|&l| l as u128).sum();
    assert_eq!(sum_of(&mixed), want);
    // All below 2^32: the one-pass sum.
    let below = [u64::from(u32::MAX); 1_000];
    assert_eq!(sum_of(&below), 1_000 * u128::from(u32::MAX));
}
