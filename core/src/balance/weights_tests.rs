//! Weights count under every policy: each test checks the split that a
//! weight of 9 beside a weight of 1 must give.

use super::*;
use crate::hashing::Algorithm;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

fn balancer(policy: Policy, eps: &[(&str, u32)]) -> Balancer {
    let b =
        Balancer::with_options(policy, Health::default(), Arc::new(ManualClock::new()), 7).unwrap();
    let endpoints = eps.iter().map(|&(n, w)| NewEndpoint::new(n, w));
    b.extend(endpoints).unwrap();
    b
}

/// Share of `k` finished picks that went to `name`.
fn share_of_picks(b: &Balancer, name: &str, k: usize, key: impl Fn(usize) -> Vec<u8>) -> f64 {
    let mut hits = 0;
    for i in 0..k {
        let p = b.pick(Some(&key(i))).unwrap();
        hits += (p.name() == name) as usize;
        p.finish(Outcome::Success);
    }
    hits as f64 / k as f64
}

fn no_key(_: usize) -> Vec<u8> {
    Vec::new()
}

/// Share of `k` picks held open at once (in flight) that went to `name`.
fn share_in_flight(b: &Balancer, name: &str, k: usize) -> f64 {
    let held: Vec<Pick<'_>> = (0..k).map(|_| b.pick(None).unwrap()).collect();
    held.iter().filter(|p| p.name() == name).count() as f64 / k as f64
}

fn assert_near(what: &str, got: f64, want: f64, tolerance: f64) {
    assert!(
        (got - want).abs() <= tolerance,
        "{what}: {got:.3}, expected {want:.3} ± {tolerance}"
    );
}

#[test]
fn random_picks_in_proportion_to_weight() {
    let b = balancer(Policy::Random, &[("light", 1), ("heavy", 9)]);
    assert_near(
        "random",
        share_of_picks(&b, "heavy", 40_000, no_key),
        0.9,
        0.01,
    );
    let b = balancer(Policy::Random, &[("a", 1), ("b", 2), ("c", 7)]);
    assert_near(
        "random c",
        share_of_picks(&b, "c", 40_000, no_key),
        0.7,
        0.015,
    );
    assert_near(
        "random b",
        share_of_picks(&b, "b", 40_000, no_key),
        0.2,
        0.015,
    );
}

#[test]
fn round_robin_is_weighted_and_plain_with_equal_weights() {
    for policy in [Policy::RoundRobin, Policy::WeightedRoundRobin] {
        let b = balancer(policy, &[("light", 1), ("heavy", 9)]);
        // Exact within every cycle of ten.
        assert_near(
            "round robin",
            share_of_picks(&b, "heavy", 1_000, no_key),
            0.9,
            0.0,
        );
        b.set_weight("heavy", 1).unwrap();
        let seq: Vec<String> = (0..4)
            .map(|_| {
                let p = b.pick(None).unwrap();
                p.name().to_string()
            })
            .collect();
        assert!(
            seq == ["light", "heavy", "light", "heavy"]
                || seq == ["heavy", "light", "heavy", "light"],
            "{seq:?}"
        );
    }
}

#[test]
fn least_connections_keeps_load_in_proportion_to_weight() {
    let b = balancer(Policy::LeastConnections, &[("light", 1), ("heavy", 9)]);
    assert_near(
        "least connections",
        share_in_flight(&b, "heavy", 1_000),
        0.9,
        0.01,
    );
    // Equal weights: equal loads, as before weights counted.
    let b = balancer(Policy::LeastConnections, &[("a", 3), ("b", 3)]);
    assert_near("equal", share_in_flight(&b, "b", 1_000), 0.5, 0.01);
}

#[test]
fn least_response_time_divides_cost_by_weight() {
    let b = balancer(Policy::LeastResponseTime, &[("light", 1), ("heavy", 9)]);
    // The same latency on both, so only load and weight tell them apart.
    // Before any sample, load per weight decides: held picks spread 1 : 9.
    assert_near(
        "no samples yet",
        share_in_flight(&b, "heavy", 1_000),
        0.9,
        0.01,
    );
    for name in ["light", "heavy"] {
        let mut held = Vec::new();
        for _ in 0..100 {
            let p = b.pick(None).unwrap();
            if p.name() == name {
                p.finish_with_latency(Duration::from_millis(10), Outcome::Success);
                break;
            }
            held.push(p);
        }
        assert!(held.len() < 100, "{name} never came up");
    }
    assert_near(
        "least response time",
        share_in_flight(&b, "heavy", 1_000),
        0.9,
        0.01,
    );
}

#[test]
fn consistent_hashing_gives_keys_in_proportion_to_weight() {
    for algorithm in [
        Algorithm::default(),
        Algorithm::Maglev {
            min_table_size: Algorithm::DEFAULT_MAGLEV_TABLE,
        },
        Algorithm::Rendezvous,
    ] {
        let policy = Policy::ConsistentHash {
            algorithm,
            bound: None,
        };
        let b = balancer(policy, &[("light", 1), ("heavy", 9)]);
        let key = |i: usize| format!("key-{i}").into_bytes();
        assert_near(
            &format!("{algorithm:?}"),
            share_of_picks(&b, "heavy", 20_000, key),
            0.9,
            0.02,
        );
    }
}

#[test]
fn bounded_loads_cap_each_endpoint_at_its_weighted_share() {
    let policy = Policy::ConsistentHash {
        algorithm: Algorithm::Rendezvous,
        bound: Some(1.25),
    };
    let b = balancer(policy, &[("a", 1), ("b", 3), ("c", 6)]);
    let weights: HashMap<&str, f64> = [("a", 0.1), ("b", 0.3), ("c", 0.6)].into();
    let mut held = Vec::new();
    for i in 0..2_000 {
        held.push(b.pick(Some(format!("k{i}").as_bytes())).unwrap());
        let total = held.len() as f64;
        for s in b.stats() {
            let cap = (1.25 * total * weights[s.name.as_str()]).ceil() as u64;
            assert!(
                s.in_flight <= cap,
                "{} holds {} over its cap {cap}",
                s.name,
                s.in_flight
            );
        }
    }
}

/// With an endpoint ejected, the rest keep their weights relative to each
/// other: its share is spread over them, not handed to its neighbour.
#[test]
fn an_ejected_endpoint_s_share_is_spread_by_weight_over_the_rest() {
    let health = Health {
        consecutive_failures: 1,
        max_ejected_share: 1.0,
        panic_threshold: 0.0,
        ..Health::default()
    };
    let policies = [
        Policy::Random,
        Policy::RoundRobin,
        Policy::WeightedRoundRobin,
        Policy::LeastConnections,
        Policy::LeastResponseTime,
    ];
    // (weights, the one to eject, the one whose share is checked, its share
    // by turns, its share under power of two choices with nothing in flight:
    // the lighter load per weight of two drawn uniformly from the rest)
    type Case = (
        &'static [(&'static str, u32)],
        &'static str,
        &'static str,
        f64,
        f64,
    );
    let cases: [Case; 4] = [
        (&[("a", 98), ("b", 1), ("c", 1)], "a", "b", 0.5, 0.5),
        // Unequal survivors: the scan after missed draws keeps weights.
        (&[("a", 98), ("b", 1), ("c", 2)], "a", "c", 2.0 / 3.0, 1.0),
        (&[("b", 1), ("a", 98), ("c", 1)], "a", "c", 0.5, 0.5),
        (
            &[("a", 1), ("b", 1), ("c", 2), ("d", 1)],
            "b",
            "c",
            0.5,
            2.0 / 3.0,
        ),
    ];
    for policy in policies {
        for (eps, victim, watched, share, p2c_share) in cases {
            let b =
                Balancer::with_options(policy, health, Arc::new(ManualClock::new()), 7).unwrap();
            b.extend(eps.iter().map(|&(n, w)| NewEndpoint::new(n, w)))
                .unwrap();
            while !b.stats().iter().any(|s| s.ejected) {
                let p = b.pick(None).unwrap();
                if p.name() == victim {
                    p.finish(Outcome::Failure);
                } else {
                    p.finish(Outcome::Success);
                }
            }
            let weighs_turns = matches!(
                policy,
                Policy::Random | Policy::RoundRobin | Policy::WeightedRoundRobin
            );
            let want = if weighs_turns { share } else { p2c_share };
            let got = share_of_picks(&b, watched, 20_000, no_key);
            assert_near(
                &format!("{policy:?} {eps:?} without {victim}, {watched}"),
                got,
                want,
                0.02,
            );
            assert!(b.stats().iter().filter(|s| s.ejected).count() == 1);
        }
    }
}
