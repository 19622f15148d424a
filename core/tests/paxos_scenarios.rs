//! The 6.5840 scenarios (agreement, failover, partitions, persistence,
//! churn and unreliable networks; written once in `common`) run on
//! Multi-Paxos, plus Paxos's own: preemption by a higher ballot, a leader
//! cut off from the quorum, and the bound on unchosen bytes.

mod common;

use common::{pos, scenarios, Harness, ELECTION_TIMEOUT};
use consenso::consensus::paxos::{round_of, MultiPaxos, PaxosConfig};
use consenso::consensus::replication::ReplicationLimits;

fn cfg() -> PaxosConfig {
    PaxosConfig::default()
}

#[test]
fn initial_election() {
    scenarios::initial_election::<MultiPaxos>(cfg());
}

#[test]
fn re_election() {
    scenarios::re_election::<MultiPaxos>(cfg());
}

#[test]
fn many_elections() {
    scenarios::many_elections::<MultiPaxos>(cfg());
}

#[test]
fn basic_agree() {
    scenarios::basic_agree::<MultiPaxos>(cfg());
}

#[test]
fn rpc_bytes() {
    scenarios::rpc_bytes::<MultiPaxos>(cfg());
}

#[test]
fn follower_failure() {
    scenarios::follower_failure::<MultiPaxos>(cfg());
}

#[test]
fn leader_failure() {
    scenarios::leader_failure::<MultiPaxos>(cfg());
}

#[test]
fn fail_agree() {
    scenarios::fail_agree::<MultiPaxos>(cfg());
}

#[test]
fn fail_no_agree() {
    scenarios::fail_no_agree::<MultiPaxos>(cfg());
}

#[test]
fn concurrent_starts() {
    scenarios::concurrent_starts::<MultiPaxos>(cfg());
}

#[test]
fn rejoin() {
    scenarios::rejoin::<MultiPaxos>(cfg());
}

#[test]
fn backup() {
    scenarios::backup::<MultiPaxos>(cfg());
}

#[test]
fn count() {
    scenarios::count::<MultiPaxos>(cfg());
}

#[test]
fn persist1() {
    scenarios::persist1::<MultiPaxos>(cfg());
}

#[test]
fn persist2() {
    scenarios::persist2::<MultiPaxos>(cfg());
}

#[test]
fn persist3() {
    scenarios::persist3::<MultiPaxos>(cfg());
}

#[test]
fn restart_when_idle() {
    scenarios::restart_when_idle::<MultiPaxos>(cfg());
}

#[test]
fn unreliable_agree() {
    scenarios::unreliable_agree::<MultiPaxos>(cfg());
}

#[test]
fn reliable_churn() {
    scenarios::reliable_churn::<MultiPaxos>(cfg());
}

#[test]
fn unreliable_churn() {
    scenarios::unreliable_churn::<MultiPaxos>(cfg());
}

#[test]
fn figure8_reliable() {
    for seed in scenarios::seeds() {
        scenarios::figure8::<MultiPaxos>(seed, false, cfg());
    }
}

/// Figure 8 with one entry per message, so a follower can acknowledge an
/// old-epoch entry before the new leader's first entry reaches it.
#[test]
fn figure8_one_entry_per_message() {
    let config = PaxosConfig {
        limits: ReplicationLimits {
            max_entries_per_message: 1,
            max_inflight_messages: 1,
            ..ReplicationLimits::default()
        },
        ..cfg()
    };
    scenarios::figure8_small_batches::<MultiPaxos>(config);
}

#[test]
fn figure8_unreliable() {
    for seed in scenarios::seeds() {
        scenarios::figure8::<MultiPaxos>(seed, true, cfg());
    }
}

#[test]
fn a_rejoining_node_with_a_higher_ballot_takes_over_without_losing_anything() {
    for seed in scenarios::seeds() {
        let mut h = Harness::<MultiPaxos>::new(3, seed, cfg());
        let leader = h.check_one_leader();
        let first = h.one(1, 3, false);
        let loner = h.id(pos(leader) + 1);
        h.disconnect(loner);
        // Cut off, it keeps raising its ballot in failed Phase 1 rounds.
        h.sleep(5 * ELECTION_TIMEOUT);
        let (_, loner_ballot) = h.sim.state(loner).unwrap();
        assert!(round_of(loner_ballot) > 1);
        let second = h.one(2, 2, true);
        h.connect(loner);
        h.sleep(2 * ELECTION_TIMEOUT);
        h.check_one_leader();
        // Whoever leads now, both values kept their slots everywhere.
        let third = h.one(3, 3, true);
        assert!(first < second && second < third);
        for (index, value) in [(first, 1), (second, 2)] {
            assert_eq!(h.n_committed(index), (3, Some(value)));
        }
    }
}

#[test]
fn a_leader_cut_off_from_the_quorum_steps_down() {
    scenarios::leader_cut_off_from_the_quorum_steps_down::<MultiPaxos>(cfg());
}

#[test]
fn the_unchosen_bytes_limit_refuses_a_flood_of_proposals() {
    let config = PaxosConfig {
        limits: ReplicationLimits {
            max_uncommitted_bytes: 10_000,
            ..ReplicationLimits::default()
        },
        ..cfg()
    };
    let mut h = Harness::<MultiPaxos>::new(3, 0, config);
    let leader = h.check_one_leader();
    h.disconnect(h.id(pos(leader) + 1));
    h.disconnect(h.id(pos(leader) + 2));
    let mut accepted = 0;
    let refused = loop {
        match h.sim.propose(leader, &[0u8; 100]).unwrap() {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 1000, "never refused");
    };
    assert_eq!(refused, consenso::ProposeError::Busy);
    assert!((50..=100).contains(&accepted), "accepted {accepted}");
}

// Lab 3D: snapshots and compaction.

#[test]
fn snapshot_basic() {
    scenarios::snapshot_common::<MultiPaxos>(cfg(), false, true, false);
}

#[test]
fn snapshot_install() {
    scenarios::snapshot_common::<MultiPaxos>(cfg(), true, true, false);
}

#[test]
fn snapshot_install_unreliable() {
    scenarios::snapshot_common::<MultiPaxos>(cfg(), true, false, false);
}

#[test]
fn snapshot_install_crash() {
    scenarios::snapshot_common::<MultiPaxos>(cfg(), false, true, true);
}

#[test]
fn snapshot_install_uncrash() {
    scenarios::snapshot_common::<MultiPaxos>(cfg(), false, false, true);
}

#[test]
fn snapshot_all_crash() {
    scenarios::snapshot_all_crash::<MultiPaxos>(cfg());
}

#[test]
fn snapshot_init() {
    scenarios::snapshot_init::<MultiPaxos>(cfg());
}
