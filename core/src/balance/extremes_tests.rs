//! Settings and inputs at the edges: 0, 1, `u64::MAX`, `Duration::MAX`,
//! huge and NaN floats. Nothing panics or wraps, in debug (overflow checks
//! on) or release (`make test` runs these in both); every call that returns
//! an error has changed nothing.

use super::*;
use crate::hashing::{Algorithm, HashRing};
use proptest::prelude::*;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

const SEC: u64 = 1_000_000_000;
const YEAR: u64 = 365 * 24 * 3600 * SEC;

fn policies() -> Vec<Policy> {
    let mut all = vec![
        Policy::Random,
        Policy::RoundRobin,
        Policy::WeightedRoundRobin,
        Policy::LeastConnections,
        Policy::LeastResponseTime,
    ];
    for algorithm in [
        Algorithm::default(),
        Algorithm::Maglev {
            min_table_size: 1_000,
        },
        Algorithm::Rendezvous,
    ] {
        for bound in [None, Some(1.5)] {
            all.push(Policy::ConsistentHash { algorithm, bound });
        }
    }
    all
}

fn health_failing_once(ejection: Duration) -> Health {
    Health {
        consecutive_failures: 1,
        base_ejection: ejection,
        max_ejection: Duration::MAX,
        max_ejected_share: 1.0,
        panic_threshold: 0.0,
        ..Health::default()
    }
}

/// Picks until `name` comes up and fails that pick.
fn fail(b: &Balancer, name: &str) {
    for _ in 0..1_000 {
        let p = b.pick(Some(b"k")).unwrap();
        if p.name() == name {
            p.finish(Outcome::Failure);
            return;
        }
        p.finish(Outcome::Success);
    }
    panic!("{name} never came up");
}

#[test]
fn an_ejection_beyond_the_clock_lasts_forever_instead_of_wrapping() {
    for ejection in [
        Duration::MAX,
        Duration::from_millis(u64::MAX),
        Duration::from_secs(585 * 365 * 24 * 3600),
    ] {
        let clock = Arc::new(ManualClock::new());
        let b = Balancer::with_options(
            Policy::RoundRobin,
            health_failing_once(ejection),
            clock.clone(),
            1,
        )
        .unwrap();
        b.add("bad", 1).unwrap();
        b.add("good", 1).unwrap();
        clock.advance(100 * YEAR);
        fail(&b, "bad");
        assert!(b.stats()[0].ejected, "{ejection:?}: ejected");
        // The wrap this guards against brought the endpoint back 1.2 s later.
        // The last step saturates the clock: forever outlasts it too.
        for step in [SEC, 2 * SEC, 100 * YEAR, u64::MAX] {
            clock.advance(step);
            assert!(
                b.stats()[0].ejected,
                "{ejection:?}: still ejected after {step} ns more"
            );
            assert_eq!(b.pick(None).unwrap().name(), "good");
        }
    }
}

#[test]
fn the_failure_run_saturates_instead_of_wrapping() {
    // Ejection off: the run of failures never resets.
    let health = Health {
        consecutive_failures: 0,
        ..Health::default()
    };
    let b =
        Balancer::with_options(Policy::Random, health, Arc::new(ManualClock::new()), 1).unwrap();
    b.add("a", 1).unwrap();
    let p = b.pick(None).unwrap();
    p.stats.consecutive_failures.store(u32::MAX - 1, Relaxed);
    p.finish(Outcome::Failure);
    for _ in 0..3 {
        b.pick(None).unwrap().finish(Outcome::Failure);
    }
    let stats = b.pick(None).unwrap().stats.clone();
    assert_eq!(stats.consecutive_failures.load(Relaxed), u32::MAX);
    assert_eq!(b.stats()[0].failures, 4);
}

#[test]
fn latency_samples_centuries_apart_compare_without_wrapping() {
    let clock = Arc::new(ManualClock::new());
    let b = Balancer::with_options(
        Policy::LeastResponseTime,
        Health::default(),
        clock.clone(),
        3,
    )
    .unwrap();
    b.add("old", 1).unwrap();
    b.add("new", 1).unwrap();
    let sample = |name: &str, latency: Duration| loop {
        let p = b.pick_untimed(None).unwrap();
        if p.name() == name {
            p.finish_with_latency(latency, Outcome::Success);
            return;
        }
        p.finish(Outcome::Success);
    };
    clock.advance(1);
    sample("old", Duration::from_secs(100));
    // 2^63 ns and more later (292 years), a fast sample on the other.
    clock.advance((1 << 63) + 10 * SEC);
    sample("new", Duration::from_millis(1));
    // "old"'s estimate has long decayed to nothing: it is the cheaper.
    for _ in 0..200 {
        assert_eq!(b.pick(None).unwrap().name(), "old");
    }
}

#[test]
fn a_slow_start_beyond_the_clock_keeps_every_call_working() {
    let health = Health {
        slow_start: Duration::MAX,
        ..Health::default()
    };
    let clock = Arc::new(ManualClock::new());
    let b = Balancer::with_options(Policy::Random, health, clock.clone(), 3).unwrap();
    clock.advance(u64::MAX - 5);
    b.add("old", 1).unwrap();
    b.add("new", 1).unwrap();
    assert_eq!(b.len(), 2);
    for _ in 0..100 {
        b.pick(None).unwrap().finish(Outcome::Success);
    }
    clock.advance(u64::MAX);
    b.pick(None).unwrap().finish(Outcome::Failure);
}

#[test]
fn latencies_and_weights_at_their_limits_are_recorded_without_overflow() {
    for policy in policies() {
        let b = Balancer::with_options(policy, Health::default(), Arc::new(ManualClock::new()), 5)
            .unwrap();
        // u32::MAX weights: refused by name where a table would be too
        // large (ring points, Maglev slots), taken everywhere else.
        for name in ["a", "b"] {
            if let Err(e) = b.add(name, u32::MAX) {
                let table = matches!(
                    policy,
                    Policy::ConsistentHash {
                        algorithm: Algorithm::Ring { .. } | Algorithm::Maglev { .. },
                        ..
                    }
                );
                assert!(table, "{policy:?}: {e}");
                assert!(
                    matches!(
                        e,
                        BalanceError::Hash(crate::hashing::HashError::Invalid { .. })
                    ),
                    "{e:?}"
                );
                b.add(name, 1).unwrap();
            }
        }
        for latency in [Duration::ZERO, Duration::from_nanos(1), Duration::MAX] {
            b.pick(Some(b"key"))
                .unwrap()
                .finish_with_latency(latency, Outcome::Success);
        }
        let ewma = b.stats()[0].ewma_latency.max(b.stats()[1].ewma_latency);
        assert!(ewma.is_finite() && ewma > 0.0, "{policy:?}: {ewma}");
    }
}

#[test]
fn bounded_loads_near_u64_max_neither_overflow_nor_panic() {
    let ring = HashRing::with_names(Algorithm::Rendezvous, &["a", "b", "c"]).unwrap();
    for loads in [
        [u64::MAX, u64::MAX, u64::MAX],
        [u64::MAX, 0, u64::MAX],
        [u64::MAX - 1, u64::MAX, 1],
        [0, 0, 0],
    ] {
        let i = ring.index_bounded(42, &loads, 0.25).unwrap();
        assert!(i < 3);
        if loads.contains(&0) && loads.contains(&u64::MAX) {
            assert_eq!(loads[i], 0, "the only endpoint under its cap: {loads:?}");
        }
    }
}

#[test]
fn seconds_refuse_nan_and_negatives_and_saturate_huge_values() {
    for bad in [f64::NAN, -1.0, -0.5, f64::NEG_INFINITY] {
        assert!(matches!(
            seconds("ejection_time", bad),
            Err(BalanceError::Invalid {
                setting: "ejection_time",
                ..
            })
        ));
    }
    assert_eq!(seconds("x", 0.0).unwrap(), Duration::ZERO);
    assert_eq!(seconds("x", 1.5).unwrap(), Duration::from_millis(1_500));
    for huge in [f64::INFINITY, f64::MAX, 1e30] {
        assert_eq!(seconds("x", huge).unwrap(), Duration::MAX);
    }
}

#[test]
fn each_bad_setting_is_named_by_the_one_check_in_core() {
    let d = Health::default();
    let cases: Vec<(Health, &str)> = vec![
        (
            Health {
                max_ejected_share: f64::NAN,
                ..d
            },
            "max_ejected_share",
        ),
        (
            Health {
                max_ejected_share: 1.5,
                ..d
            },
            "max_ejected_share",
        ),
        (
            Health {
                panic_threshold: -0.1,
                ..d
            },
            "panic_threshold",
        ),
        (
            Health {
                panic_threshold: f64::INFINITY,
                ..d
            },
            "panic_threshold",
        ),
        (
            Health {
                base_ejection: Duration::from_secs(60),
                max_ejection: Duration::from_secs(1),
                ..d
            },
            "max_ejection",
        ),
        (
            Health {
                ewma_decay: Duration::ZERO,
                ..d
            },
            "ewma_decay",
        ),
    ];
    for (health, setting) in cases {
        let got = Balancer::with_options(Policy::Random, health, Arc::new(ManualClock::new()), 1);
        match got {
            Err(BalanceError::Invalid { setting: s, .. }) => assert_eq!(s, setting),
            other => panic!("{setting}: {other:?}"),
        }
    }
    for bound in [1.0, 0.0, -3.0, f64::NAN, f64::INFINITY] {
        let p = Policy::ConsistentHash {
            algorithm: Algorithm::default(),
            bound: Some(bound),
        };
        assert!(
            matches!(
                p.validate(),
                Err(BalanceError::Invalid {
                    setting: "bound",
                    ..
                })
            ),
            "bound {bound}"
        );
    }
    let p = Policy::ConsistentHash {
        algorithm: Algorithm::Ring { vnodes: 0 },
        bound: None,
    };
    assert!(matches!(
        Balancer::new(p),
        Err(BalanceError::Hash(crate::hashing::HashError::Invalid {
            setting: "vnodes",
            ..
        }))
    ));
    // Hashing options beside another policy are refused, not ignored.
    assert!(matches!(
        Policy::Random.with_hashing(None, Some(1.5)),
        Err(BalanceError::Invalid {
            setting: "bound",
            ..
        })
    ));
    assert!(matches!(
        Policy::LeastConnections.with_hashing(Some(Algorithm::Jump), None),
        Err(BalanceError::Invalid {
            setting: "hash",
            ..
        })
    ));
    // Defaults are defined once and pass their own checks.
    assert!(Health::default().validate().is_ok());
    assert_eq!(
        Policy::from_name("consistent_hash"),
        Some(Policy::ConsistentHash {
            algorithm: Algorithm::default(),
            bound: None
        })
    );
}

/// Everything a caller can observe of a balancer, to compare before and
/// after a refused call.
fn observe(b: &Balancer) -> Vec<(EndpointId, String, u32, u64, u64, u64)> {
    b.stats()
        .into_iter()
        .map(|s| (s.id, s.name, s.weight, s.in_flight, s.successes, s.failures))
        .collect()
}

#[test]
fn a_call_that_returns_an_error_changes_nothing() {
    let jump = Policy::ConsistentHash {
        algorithm: Algorithm::Jump,
        bound: None,
    };
    for policy in [Policy::RoundRobin, Policy::LeastConnections, jump] {
        let b = Balancer::with_options(policy, Health::default(), Arc::new(ManualClock::new()), 1)
            .unwrap();
        b.add("a", 1).unwrap();
        b.add("b", 1).unwrap();
        let before = observe(&b);
        let mut refused: Vec<(&str, BalanceError)> = vec![
            ("add duplicate", b.add("a", 1).unwrap_err()),
            ("add zero weight", b.add("c", 0).unwrap_err()),
            (
                "add_with duplicate",
                b.add_with("b", 1, Arc::new(())).unwrap_err(),
            ),
            (
                "extend with one bad entry",
                b.extend([NewEndpoint::new("c", 1), NewEndpoint::new("d", 0)])
                    .unwrap_err(),
            ),
            (
                "extend repeating a name",
                b.extend([NewEndpoint::new("c", 1), NewEndpoint::new("c", 1)])
                    .unwrap_err(),
            ),
            (
                "extend with a taken name",
                b.extend([NewEndpoint::new("c", 1), NewEndpoint::new("a", 1)])
                    .unwrap_err(),
            ),
            ("remove unknown", b.remove("zz").unwrap_err()),
            (
                "remove_id unknown",
                b.remove_id(EndpointId(99)).unwrap_err(),
            ),
            ("set_weight unknown", b.set_weight("zz", 2).unwrap_err()),
            ("set_weight zero", b.set_weight("a", 0).unwrap_err()),
            (
                "set_weight_id unknown",
                b.set_weight_id(EndpointId(99), 2).unwrap_err(),
            ),
        ];
        if matches!(policy, Policy::ConsistentHash { .. }) {
            refused.push(("pick without key", b.pick(None).unwrap_err()));
            refused.push(("pick_owned without key", b.pick_owned(None).unwrap_err()));
            refused.push(("select without key", b.select(None).unwrap_err()));
            refused.push(("weight under jump", b.set_weight("a", 3).unwrap_err()));
            refused.push(("add weighted under jump", b.add("w", 3).unwrap_err()));
        }
        for (what, _) in &refused {
            assert_eq!(observe(&b), before, "{policy:?}: {what} changed something");
        }
        // No id was used up by any refused add.
        assert_eq!(b.add("next", 1).unwrap(), EndpointId(3), "{policy:?}");
    }
    let empty = Balancer::new(Policy::Random).unwrap();
    assert_eq!(empty.pick(None).unwrap_err(), BalanceError::Empty);
    assert!(empty.is_empty());
}

#[test]
fn extend_adds_all_at_once_with_consecutive_ids() {
    let b = Balancer::new(Policy::ConsistentHash {
        algorithm: Algorithm::Maglev {
            min_table_size: Algorithm::DEFAULT_MAGLEV_TABLE,
        },
        bound: None,
    })
    .unwrap();
    let names: Vec<String> = (0..500).map(|i| format!("node-{i}")).collect();
    let ids = b
        .extend(names.iter().map(|n| NewEndpoint::new(n, 1)))
        .unwrap();
    assert_eq!(ids.first(), Some(&EndpointId(1)));
    assert_eq!(ids.last(), Some(&EndpointId(500)));
    assert_eq!(b.names(), names);
    assert!(b.contains("node-42") && !b.contains("node-500"));
    assert_eq!(b.name_of(EndpointId(43)).as_deref(), Some("node-42"));
    assert_eq!(b.name_of(EndpointId(501)), None);
    // The same placement as a hash ring built of the same names.
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let ring = HashRing::with_names(
        Algorithm::Maglev {
            min_table_size: Algorithm::DEFAULT_MAGLEV_TABLE,
        },
        &refs,
    )
    .unwrap();
    for k in 0..200 {
        let key = format!("k{k}");
        assert_eq!(
            b.name_of(b.select(Some(key.as_bytes())).unwrap())
                .as_deref(),
            Some(ring.get(key.as_bytes()))
        );
    }
    assert_eq!(b.extend([]).unwrap(), vec![]);
}

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::MAX),
        Just(Duration::from_millis(u64::MAX)),
        Just(Duration::from_nanos(u64::MAX)),
        (0u64..u64::MAX).prop_map(Duration::from_nanos),
        (0u64..u64::MAX).prop_map(Duration::from_secs),
    ]
}

fn share() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(-1.0),
        Just(0.0),
        Just(1.0),
        Just(f64::MAX),
        0.0f64..=1.0,
    ]
}

fn clock_step() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::MAX),
        Just(u64::MAX / 2),
        0u64..10 * SEC,
        0u64..u64::MAX
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any settings either are refused by name or give a balancer whose
    /// every call works, whatever the clock does.
    #[test]
    fn extreme_settings_are_refused_or_work(
        policy in proptest::sample::select(policies()),
        base in duration(), max in duration(), slow in duration(), decay in duration(),
        shares in (share(), share()),
        failures in prop_oneof![Just(0u32), Just(1), Just(u32::MAX), 1u32..5],
        weights in proptest::collection::vec(prop_oneof![Just(1u32), Just(u32::MAX), 1u32..100], 1..5),
        steps in proptest::collection::vec(clock_step(), 1..20),
    ) {
        let health = Health {
            consecutive_failures: failures,
            base_ejection: base,
            max_ejection: max,
            max_ejected_share: shares.0,
            panic_threshold: shares.1,
            slow_start: slow,
            ewma_decay: decay,
        };
        let clock = Arc::new(ManualClock::new());
        let b = match Balancer::with_options(policy, health, clock.clone(), 11) {
            Ok(b) => b,
            Err(e) => {
                prop_assert!(matches!(e, BalanceError::Invalid { .. } | BalanceError::Hash(_)), "{e:?}");
                return Ok(());
            }
        };
        for (i, &w) in weights.iter().enumerate() {
            let before = b.len();
            if b.add(&format!("e{i}"), w).is_err() {
                prop_assert_eq!(b.len(), before, "a refused add added");
            }
        }
        for (i, &step) in steps.iter().enumerate() {
            clock.advance(step);
            if b.is_empty() {
                break;
            }
            let p = b.pick(Some(format!("k{i}").as_bytes())).unwrap();
            let outcome = if i % 3 == 0 { Outcome::Success } else { Outcome::Failure };
            if i % 2 == 0 {
                p.finish(outcome);
            } else {
                p.finish_with_latency(Duration::from_nanos(step), outcome);
            }
            for s in b.stats() {
                prop_assert!(s.ewma_latency.is_finite() && s.ewma_latency >= 0.0);
                prop_assert_eq!(s.in_flight, 0);
            }
        }
    }
}
