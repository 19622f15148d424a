//! Balancer behaviour with seeded randomness and an injected clock.

use super::*;
use crate::hashing::Algorithm;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const SEC: u64 = 1_000_000_000;

fn balancer(policy: Policy, eps: &[(&str, u32)]) -> (Balancer, Arc<ManualClock>) {
    balancer_with(policy, Health::default(), eps)
}

fn balancer_with(
    policy: Policy,
    health: Health,
    eps: &[(&str, u32)],
) -> (Balancer, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    let b = Balancer::with_options(policy, health, clock.clone(), 42).unwrap();
    for &(n, w) in eps {
        b.add(n, w).unwrap();
    }
    (b, clock)
}

fn pick_names(b: &Balancer, k: usize) -> Vec<String> {
    (0..k)
        .map(|_| {
            let p = b.pick(None).unwrap();
            let n = p.name().to_string();
            p.finish(Outcome::Success);
            n
        })
        .collect()
}

fn histogram(b: &Balancer, k: usize) -> HashMap<String, usize> {
    let mut h = HashMap::new();
    for n in pick_names(b, k) {
        *h.entry(n).or_default() += 1;
    }
    h
}

#[test]
fn smooth_weighted_round_robin_spreads_each_cycle_exactly() {
    let (b, _) = balancer(Policy::WeightedRoundRobin, &[("a", 5), ("b", 1), ("c", 1)]);
    let seq = pick_names(&b, 14).join(" ");
    assert_eq!(seq, "a a b a c a a a a b a c a a");
    // Weights with a common factor give the same cycle.
    let (b, _) = balancer(
        Policy::WeightedRoundRobin,
        &[("a", 50), ("b", 10), ("c", 10)],
    );
    assert_eq!(pick_names(&b, 7).join(" "), "a a b a c a a");
}

#[test]
fn round_robin_takes_turns_and_random_spreads_evenly() {
    let (b, _) = balancer(Policy::RoundRobin, &[("a", 1), ("b", 1), ("c", 1)]);
    assert_eq!(pick_names(&b, 6).join(" "), "a b c a b c");
    let (b, _) = balancer(Policy::Random, &[("a", 1), ("b", 1), ("c", 1), ("d", 1)]);
    let h = histogram(&b, 40_000);
    for n in ["a", "b", "c", "d"] {
        assert!((9_000..=11_000).contains(&h[n]), "{n}: {}", h[n]);
    }
    // Seeded: the same seed picks the same sequence.
    let (b2, _) = balancer(Policy::Random, &[("a", 1), ("b", 1), ("c", 1), ("d", 1)]);
    let (b3, _) = balancer(Policy::Random, &[("a", 1), ("b", 1), ("c", 1), ("d", 1)]);
    assert_eq!(pick_names(&b2, 50), pick_names(&b3, 50));
}

#[test]
fn least_connections_avoids_busy_endpoints() {
    let (b, _) = balancer(Policy::LeastConnections, &[("a", 1), ("b", 1)]);
    // Keep 10 requests open on whichever endpoint comes first.
    let held: Vec<Pick> = (0..10).map(|_| b.pick(None).unwrap()).collect();
    let in_flight: Vec<u64> = b.stats().iter().map(|s| s.in_flight).collect();
    assert_eq!(in_flight.iter().sum::<u64>(), 10);
    // With two endpoints P2C compares both: the open requests balance.
    assert!(in_flight.iter().all(|&x| x == 5), "{in_flight:?}");
    drop(held);
    assert!(
        b.stats().iter().all(|s| s.in_flight == 0),
        "dropped picks leave no in-flight count"
    );
}

#[test]
fn least_response_time_tries_new_endpoints_and_avoids_slow_ones() {
    let (b, clock) = balancer(Policy::LeastResponseTime, &[("fast", 1), ("slow", 1)]);
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..2_000 {
        let p = b.pick(None).unwrap();
        let latency = if p.name() == "slow" {
            100 * SEC / 1000
        } else {
            SEC / 1000
        };
        *counts.entry(p.name().to_string()).or_default() += 1;
        clock.advance(SEC / 100);
        p.finish_with_latency(Duration::from_nanos(latency), Outcome::Success);
    }
    assert!(counts["slow"] >= 1, "an endpoint with no samples is tried");
    assert!(counts["fast"] > 10 * counts["slow"], "{counts:?}");
    let stats = b.stats();
    assert!(stats[1].ewma_latency > stats[0].ewma_latency);
}

#[test]
fn consistent_hashing_keeps_keys_in_place_and_bounds_load() {
    let policy = Policy::ConsistentHash {
        algorithm: Algorithm::Maglev {
            min_table_size: 1009,
        },
        bound: None,
    };
    let (b, _) = balancer(policy, &[("a", 1), ("b", 1), ("c", 1)]);
    let first = b.pick(Some(b"user-42")).unwrap();
    let name = first.name().to_string();
    first.finish(Outcome::Success);
    for _ in 0..10 {
        let p = b.pick(Some(b"user-42")).unwrap();
        assert_eq!(p.name(), name);
        p.finish(Outcome::Success);
    }
    assert_eq!(b.pick(None).unwrap_err(), BalanceError::KeyRequired);
    // Bounded loads: the same hot key cannot pile onto one endpoint.
    let bounded = Policy::ConsistentHash {
        algorithm: Algorithm::Ring { vnodes: 100 },
        bound: Some(1.25),
    };
    let (b, _) = balancer(bounded, &[("a", 1), ("b", 1), ("c", 1), ("d", 1)]);
    let held: Vec<Pick> = (0..400).map(|_| b.pick(Some(b"hot")).unwrap()).collect();
    let in_flight: Vec<u64> = b.stats().iter().map(|s| s.in_flight).collect();
    let cap = (1.25f64 * 400.0 / 4.0).ceil() as u64;
    assert!(
        in_flight.iter().all(|&x| x <= cap),
        "{in_flight:?} over {cap}"
    );
    drop(held);
}

#[test]
fn updates_keep_the_other_endpoints_statistics() {
    let (b, _) = balancer(Policy::RoundRobin, &[("a", 1), ("b", 1)]);
    pick_names(&b, 10);
    let held = b.pick(None).unwrap();
    assert_eq!(held.name(), "a");
    b.add("c", 1).unwrap();
    b.set_weight("a", 3).unwrap();
    b.remove("b").unwrap();
    let stats = b.stats();
    let a = stats.iter().find(|s| s.name == "a").unwrap();
    assert_eq!((a.weight, a.successes, a.in_flight), (3, 5, 1));
    held.finish(Outcome::Failure);
    let a = b.stats().into_iter().find(|s| s.name == "a").unwrap();
    assert_eq!(
        (a.failures, a.in_flight),
        (1, 0),
        "a pick made before the updates finishes normally"
    );
    assert_eq!(b.names(), vec!["a", "c"]);
}

#[test]
fn consecutive_failures_eject_for_growing_times() {
    let health = Health {
        consecutive_failures: 3,
        base_ejection: Duration::from_secs(10),
        max_ejection: Duration::from_secs(25),
        max_ejected_share: 0.5,
        panic_threshold: 0.0,
        ..Health::default()
    };
    let (b, clock) = balancer_with(Policy::RoundRobin, health, &[("bad", 1), ("good", 1)]);
    let fail_bad = |b: &Balancer| {
        let mut fails = 0;
        while fails < 3 {
            let p = b.pick(None).unwrap();
            if p.name() == "bad" {
                p.finish(Outcome::Failure);
                fails += 1;
            } else {
                p.finish(Outcome::Success);
            }
        }
    };
    fail_bad(&b);
    assert!(b.stats()[0].ejected);
    assert!(
        pick_names(&b, 10).iter().all(|n| n == "good"),
        "ejected endpoints are not picked"
    );
    clock.advance(10 * SEC);
    assert!(
        !b.stats()[0].ejected,
        "back after the first ejection (10 s)"
    );
    fail_bad(&b);
    clock.advance(15 * SEC);
    assert!(b.stats()[0].ejected, "the second ejection lasts 20 s");
    clock.advance(5 * SEC);
    assert!(!b.stats()[0].ejected);
    fail_bad(&b);
    clock.advance(25 * SEC);
    assert!(
        !b.stats()[0].ejected,
        "the third would last 30 s but is capped at 25 s"
    );
    assert_eq!(b.stats()[0].ejections, 3);
}

#[test]
fn the_ejected_share_is_capped_and_panic_mode_uses_everyone() {
    let health = Health {
        consecutive_failures: 1,
        max_ejected_share: 0.5,
        panic_threshold: 0.75,
        ..Health::default()
    };
    let (b, _) = balancer_with(
        Policy::RoundRobin,
        health,
        &[("a", 1), ("b", 1), ("c", 1), ("d", 1)],
    );
    for _ in 0..8 {
        b.pick(None).unwrap().finish(Outcome::Failure);
    }
    let ejected = b.stats().iter().filter(|s| s.ejected).count();
    assert_eq!(ejected, 2, "at most half of the endpoints are ejected");
    // 2 of 4 healthy is below the 75% panic threshold: everyone is picked.
    let h = histogram(&b, 8);
    assert_eq!(h.len(), 4, "{h:?}");
}

#[test]
fn slow_start_ramps_a_new_endpoint_up() {
    let health = Health {
        slow_start: Duration::from_secs(100),
        ..Health::default()
    };
    let (b, clock) = balancer_with(Policy::RoundRobin, health, &[("old", 1)]);
    clock.advance(1000 * SEC);
    b.add("new", 1).unwrap();
    clock.advance(10 * SEC);
    let early = histogram(&b, 10_000).get("new").copied().unwrap_or(0);
    clock.advance(100 * SEC);
    let later = histogram(&b, 10_000).get("new").copied().unwrap_or(0);
    assert!(
        early < 2_000,
        "10% into the window the new endpoint got {early} of 10000"
    );
    assert!(
        (4_500..=5_500).contains(&later),
        "after the window it got {later}"
    );
}

#[test]
fn concurrent_picks_and_updates_lose_no_in_flight_counts() {
    let (b, _) = balancer(Policy::LeastConnections, &[("a", 1), ("b", 1), ("c", 1)]);
    std::thread::scope(|s| {
        for t in 0..4 {
            let b = b.clone();
            s.spawn(move || {
                for i in 0..20_000 {
                    let p = b.pick(None).unwrap();
                    if (i + t) % 7 == 0 {
                        p.finish(Outcome::Failure);
                    } else {
                        p.finish(Outcome::Success);
                    }
                }
            });
        }
        let b = b.clone();
        s.spawn(move || {
            for i in 0..2_000 {
                let name = format!("extra-{}", i % 3);
                let _ = b.add(&name, 1 + i % 4);
                let _ = b.set_weight("a", 1 + i % 5);
                let _ = b.remove(&name);
            }
        });
    });
    assert!(
        b.stats().iter().all(|s| s.in_flight == 0),
        "{:?}",
        b.stats()
    );
    let done: u64 = b.stats().iter().map(|s| s.successes + s.failures).sum();
    assert!(done > 0 && done <= 80_000);
}

#[test]
fn bad_input_gets_a_clear_error() {
    let (b, _) = balancer(Policy::RoundRobin, &[]);
    assert_eq!(b.pick(None).unwrap_err(), BalanceError::Empty);
    assert_eq!(
        b.add("a", 0).unwrap_err(),
        BalanceError::ZeroWeight("a".into())
    );
    b.add("a", 1).unwrap();
    assert_eq!(
        b.add("a", 2).unwrap_err(),
        BalanceError::Duplicate("a".into())
    );
    assert_eq!(
        b.remove("zz").unwrap_err(),
        BalanceError::Unknown("zz".into())
    );
    assert_eq!(
        b.set_weight("zz", 1).unwrap_err(),
        BalanceError::Unknown("zz".into())
    );
    assert_eq!(
        b.set_weight("a", 0).unwrap_err(),
        BalanceError::ZeroWeight("a".into())
    );
    for bound in [1.0, 0.5, f64::NAN] {
        let policy = Policy::ConsistentHash {
            algorithm: Algorithm::Jump,
            bound: Some(bound),
        };
        assert!(matches!(
            Balancer::new(policy),
            Err(BalanceError::Invalid { .. })
        ));
    }
    let health = Health {
        panic_threshold: 1.5,
        ..Health::default()
    };
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new());
    assert!(matches!(
        Balancer::with_options(Policy::Random, health, clock, 1),
        Err(BalanceError::Invalid { .. })
    ));
    // Jump hashing cannot weight endpoints: the error names the endpoint.
    let jump = Policy::ConsistentHash {
        algorithm: Algorithm::Jump,
        bound: None,
    };
    let b = Balancer::new(jump).unwrap();
    assert!(matches!(b.add("w", 3), Err(BalanceError::Hash(_))));
    assert!(b.is_empty(), "a refused update changes nothing");
    assert_eq!(
        Policy::from_name("least_response_time"),
        Some(Policy::LeastResponseTime)
    );
    assert_eq!(Policy::from_name("fastest"), None);
}

#[test]
fn an_owned_pick_outlives_the_borrow_and_finishes_elsewhere() {
    let (b, _) = balancer(Policy::RoundRobin, &[("a", 1), ("b", 1)]);
    let picks: Vec<Pick<'static>> = (0..4).map(|_| b.pick_owned(None).unwrap()).collect();
    let stats = b.stats();
    assert_eq!(stats.iter().map(|s| s.in_flight).sum::<u64>(), 4);
    drop(b);
    // The balancer's last handle is gone; the picks still finish.
    std::thread::spawn(move || {
        for p in picks {
            p.finish(Outcome::Success);
        }
    })
    .join()
    .unwrap();
}

#[test]
fn ids_are_stable_never_reused_and_address_endpoints() {
    let (b, _) = balancer(Policy::RoundRobin, &[]);
    let a = b.add("a", 1).unwrap();
    assert!(b.add("a", 1).is_err(), "a refused add burns no id");
    let bb = b.add("b", 1).unwrap();
    assert_eq!((a, bb), (EndpointId(1), EndpointId(2)));
    b.set_weight_id(bb, 4).unwrap();
    // Round robin is weighted: the heavier endpoint leads the cycle.
    let p = b.pick(None).unwrap();
    assert_eq!((p.id(), p.name()), (bb, "b"));
    p.finish(Outcome::Success);
    b.remove_id(a).unwrap();
    let c = b.add("a", 1).unwrap();
    assert_eq!(c, EndpointId(3), "a re-added name gets a new id");
    let stats = b.stats();
    assert_eq!(
        stats
            .iter()
            .map(|s| (s.id, s.name.as_str(), s.weight, s.successes))
            .collect::<Vec<_>>(),
        vec![(bb, "b", 4, 1), (c, "a", 1, 0)],
        "the new 'a' starts with fresh statistics"
    );
    assert_eq!(
        b.remove_id(a).unwrap_err(),
        BalanceError::Unknown("#1".into())
    );
    assert_eq!(
        b.set_weight_id(EndpointId(99), 1).unwrap_err(),
        BalanceError::Unknown("#99".into())
    );
    assert_eq!(
        b.set_weight_id(bb, 0).unwrap_err(),
        BalanceError::ZeroWeight("#2".into())
    );
}

#[test]
fn select_chooses_like_pick_without_tracking() {
    let (b, _) = balancer(Policy::RoundRobin, &[("a", 1), ("b", 1), ("c", 1)]);
    let ids: Vec<u64> = (0..6).map(|_| b.select(None).unwrap().0).collect();
    assert_eq!(ids, vec![1, 2, 3, 1, 2, 3]);
    assert!(b
        .stats()
        .iter()
        .all(|s| s.in_flight == 0 && s.successes == 0));
    let (empty, _) = balancer(Policy::Random, &[]);
    assert_eq!(empty.select(None).unwrap_err(), BalanceError::Empty);
    let (hashed, _) = balancer(
        Policy::ConsistentHash {
            algorithm: Algorithm::Maglev {
                min_table_size: 1009,
            },
            bound: None,
        },
        &[("a", 1), ("b", 1)],
    );
    assert_eq!(hashed.select(None).unwrap_err(), BalanceError::KeyRequired);
    let id = hashed.select(Some(b"user-7")).unwrap();
    let p = hashed.pick(Some(b"user-7")).unwrap();
    assert_eq!(p.id(), id, "select and pick agree on a key");
}

#[test]
fn picks_are_timed_so_finish_records_latency_unless_untimed() {
    let (b, clock) = balancer(Policy::RoundRobin, &[("a", 1)]);
    let untimed = b.pick_untimed(None).unwrap();
    assert!(!untimed.is_timed(), "round robin can skip the clock");
    clock.advance(1_000_000);
    untimed.finish(Outcome::Success);
    assert_eq!(b.stats()[0].ewma_latency, 0.0, "no latency recorded");
    for (owned, ms) in [(false, 3u64), (true, 5)] {
        let pick = if owned {
            b.pick_owned(None).unwrap()
        } else {
            b.pick(None).unwrap()
        };
        assert!(pick.is_timed());
        clock.advance(ms * 1_000_000);
        pick.finish(Outcome::Success);
        let ewma = b.stats()[0].ewma_latency;
        // Peak EWMA: a higher sample replaces the estimate at once.
        assert!(
            (ewma - ms as f64 / 1e3).abs() < 1e-9,
            "{ms} ms recorded: {ewma}"
        );
    }
    // least_response_time needs the clock, so its untimed picks are timed.
    let (lrt, _) = balancer(Policy::LeastResponseTime, &[("a", 1)]);
    assert!(lrt.pick_untimed(None).unwrap().is_timed());
}

#[test]
fn attachments_come_back_with_picks_and_leave_with_their_endpoint() {
    let (b, _) = balancer(Policy::RoundRobin, &[]);
    let client_a: Attachment = Arc::new(String::from("client-a"));
    let a = b.add_with("a", 1, client_a.clone()).unwrap();
    b.add("b", 1).unwrap();
    let p = b.pick(None).unwrap();
    let got = p.attachment().and_then(|x| x.downcast_ref::<String>());
    assert_eq!(got.map(String::as_str), Some("client-a"));
    p.finish(Outcome::Success);
    let seen = b.select_with(None, |id, att| (id, att.is_some())).unwrap();
    assert_eq!(seen, (EndpointId(2), false), "b carries nothing");
    let mut all = Vec::new();
    b.for_each_endpoint(|id, name, att| all.push((id.0, name.to_string(), att.is_some())));
    assert_eq!(all, vec![(1, "a".into(), true), (2, "b".into(), false)]);
    // A pick keeps the attachment alive after its endpoint is removed.
    let held = b.pick_owned(None).unwrap();
    assert_eq!(held.id(), a);
    b.remove_id(a).unwrap();
    assert_eq!(Arc::strong_count(&client_a), 2, "ours and the pick's");
    held.finish(Outcome::Success);
    assert_eq!(
        Arc::strong_count(&client_a),
        1,
        "released with the last pick"
    );
}

#[test]
fn picks_can_be_finished_on_another_thread() {
    fn assert_send<T: Send>(_: &T) {}
    let (b, _) = balancer(Policy::RoundRobin, &[("a", 1)]);
    let borrowed = b.pick(None).unwrap();
    assert_send(&borrowed);
    std::thread::scope(|s| {
        s.spawn(move || borrowed.finish(Outcome::Failure));
    });
    assert_eq!((b.stats()[0].failures, b.stats()[0].in_flight), (1, 0));
    // Many picks held at once outgrow the snapshot guard's fast slots; all
    // still count and finish.
    let held: Vec<Pick> = (0..50).map(|_| b.pick(None).unwrap()).collect();
    assert_eq!(b.stats()[0].in_flight, 50);
    b.add("b", 1).unwrap();
    b.remove("a").unwrap();
    for p in held {
        assert_eq!(p.name(), "a");
        p.finish(Outcome::Success);
    }
    assert!(b.stats().iter().all(|s| s.in_flight == 0));
}

#[test]
fn least_response_time_compares_without_the_clock_as_it_would_with_it() {
    use super::stats::Stats;
    let tau = 10.0 * SEC as f64;
    let mut rng = crate::rng::Rng::new(9);
    let mut agreed = 0;
    for _ in 0..20_000 {
        let (a, b) = (Stats::new("a", 1, None, 0), Stats::new("b", 2, None, 0));
        for s in [&a, &b] {
            // Some endpoints have no sample; the rest one taken within 60 s.
            if !rng.next_u64().is_multiple_of(8) {
                let at = rng.next_u64() % (60 * SEC);
                let latency = (1 + rng.next_u64() % 1_000_000) as f64;
                s.observe(latency, at, tau);
            }
            s.in_flight.store(
                (rng.next_u64() % 4) as i64,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        let now = 60 * SEC + rng.next_u64() % (600 * SEC);
        // Half the pairs weighted alike, the rest 1 to 10 each.
        let (wa, wb) = if rng.next_u64().is_multiple_of(2) {
            (1.0, 1.0)
        } else {
            (
                (1 + rng.next_u64() % 10) as f64,
                (1 + rng.next_u64() % 10) as f64,
            )
        };
        let load = |s: &Stats, w: f64| (s.in_flight() + 1) as f64 / w;
        let cost = |s: &Stats, w: f64| s.ewma_ns(now, tau) * load(s, w);
        let (mut ca, mut cb) = (cost(&a, wa), cost(&b, wb));
        if ca == 0.0 && cb == 0.0 {
            // Neither has a sample: load per weight decides.
            (ca, cb) = (load(&a, wa), load(&b, wb));
        }
        // Skip near-ties, where rounding may decide either way.
        if (ca - cb).abs() <= 1e-9 * ca.max(cb) && ca != cb {
            continue;
        }
        let inv_tau = 1.0 / tau;
        assert_eq!(
            a.costs_less_than(wa, &b, wb, inv_tau),
            ca < cb,
            "{ca} vs {cb}"
        );
        assert_eq!(
            b.costs_less_than(wb, &a, wa, inv_tau),
            cb < ca,
            "{cb} vs {ca}"
        );
        agreed += 1;
    }
    assert!(agreed > 19_000);
}

#[test]
fn picks_and_ejections_do_not_wait_for_an_update_in_progress() {
    let health = Health {
        consecutive_failures: 1,
        max_ejected_share: 1.0,
        ..Health::default()
    };
    let (b, _) = balancer_with(Policy::RoundRobin, health, &[("a", 1), ("b", 1)]);
    // An update holds the writer lock for as long as its rebuild takes.
    let rebuilding = b.inner.writer.lock();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let picker = b.clone();
    std::thread::spawn(move || {
        // A failure ejects: the ejection takes a lock of its own.
        picker.pick(None).unwrap().finish(Outcome::Failure);
        picker.pick(None).unwrap().finish(Outcome::Success);
        done_tx.send(()).unwrap();
    });
    // Not a timing check: a minute means the picker is blocked for good.
    let finished = done_rx.recv_timeout(Duration::from_secs(60));
    drop(rebuilding);
    assert!(
        finished.is_ok(),
        "a pick or its ejection waited for the writer lock"
    );
    assert_eq!(b.stats().iter().filter(|s| s.ejected).count(), 1);
}
