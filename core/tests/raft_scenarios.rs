//! The 6.5840 Raft scenarios (written once in `common`) run on Raft, plus
//! Raft's own: PreVote, CheckQuorum and the uncommitted-bytes bound, each with
//! a control run that turns the feature off.

mod common;

use common::{pos, scenarios, Harness, ELECTION_TIMEOUT};
use consenso::consensus::raft::{Raft, RaftConfig};
use consenso::consensus::replication::ReplicationLimits;
use consenso::types::Role;

fn seeds() -> std::ops::Range<u64> {
    scenarios::seeds()
}

#[test]
fn initial_election() {
    scenarios::initial_election::<Raft>(RaftConfig::default());
}

#[test]
fn re_election() {
    scenarios::re_election::<Raft>(RaftConfig::default());
}

#[test]
fn many_elections() {
    scenarios::many_elections::<Raft>(RaftConfig::default());
}

#[test]
fn basic_agree() {
    scenarios::basic_agree::<Raft>(RaftConfig::default());
}

#[test]
fn rpc_bytes() {
    scenarios::rpc_bytes::<Raft>(RaftConfig::default());
}

#[test]
fn follower_failure() {
    scenarios::follower_failure::<Raft>(RaftConfig::default());
}

#[test]
fn leader_failure() {
    scenarios::leader_failure::<Raft>(RaftConfig::default());
}

#[test]
fn fail_agree() {
    scenarios::fail_agree::<Raft>(RaftConfig::default());
}

#[test]
fn fail_no_agree() {
    scenarios::fail_no_agree::<Raft>(RaftConfig::default());
}

#[test]
fn concurrent_starts() {
    scenarios::concurrent_starts::<Raft>(RaftConfig::default());
}

#[test]
fn rejoin() {
    scenarios::rejoin::<Raft>(RaftConfig::default());
}

#[test]
fn backup() {
    scenarios::backup::<Raft>(RaftConfig::default());
}

#[test]
fn count() {
    scenarios::count::<Raft>(RaftConfig::default());
}

#[test]
fn persist1() {
    scenarios::persist1::<Raft>(RaftConfig::default());
}

#[test]
fn persist2() {
    scenarios::persist2::<Raft>(RaftConfig::default());
}

#[test]
fn persist3() {
    scenarios::persist3::<Raft>(RaftConfig::default());
}

#[test]
fn restart_when_idle() {
    scenarios::restart_when_idle::<Raft>(RaftConfig::default());
}

#[test]
fn figure8_reliable() {
    for seed in seeds() {
        scenarios::figure8::<Raft>(seed, false, RaftConfig::default());
    }
}

/// Figure 8 with one entry per message, so a follower can acknowledge an
/// old-epoch entry before the new leader's first entry reaches it.
#[test]
fn figure8_one_entry_per_message() {
    let config = RaftConfig {
        limits: ReplicationLimits {
            max_entries_per_message: 1,
            max_inflight_messages: 1,
            ..ReplicationLimits::default()
        },
        ..RaftConfig::default()
    };
    scenarios::figure8_small_batches::<Raft>(config);
}

#[test]
fn figure8_unreliable() {
    for seed in seeds() {
        scenarios::figure8::<Raft>(seed, true, RaftConfig::default());
    }
}

#[test]
fn unreliable_agree() {
    scenarios::unreliable_agree::<Raft>(RaftConfig::default());
}

#[test]
fn reliable_churn() {
    scenarios::reliable_churn::<Raft>(RaftConfig::default());
}

#[test]
fn unreliable_churn() {
    scenarios::unreliable_churn::<Raft>(RaftConfig::default());
}

#[test]
fn pre_vote_keeps_a_rejoining_node_from_disrupting_the_leader() {
    for seed in seeds() {
        let mut h = Harness::<Raft>::new(3, seed, RaftConfig::default());
        let leader = h.check_one_leader();
        h.one(1, 3, false);
        let term = h.check_terms();
        let follower = h.id(pos(leader) + 1);
        h.disconnect(follower);
        h.sleep(5 * ELECTION_TIMEOUT);
        // Cut off, it pre-campaigns but never raises its term.
        assert_eq!(
            h.sim.state(follower).map(|s| s.1),
            Some(term),
            "isolated node raised its term"
        );
        h.connect(follower);
        h.sleep(ELECTION_TIMEOUT);
        assert_eq!(
            h.check_one_leader(),
            leader,
            "the rejoining node disrupted the leader"
        );
        assert_eq!(h.check_terms(), term);
        h.one(2, 3, false);
    }
}

#[test]
fn without_pre_vote_a_rejoining_node_does_disrupt_the_leader() {
    // The control for the test above: it must be PreVote that prevents it.
    let config = RaftConfig {
        pre_vote: false,
        check_quorum: false,
        ..RaftConfig::default()
    };
    let mut h = Harness::<Raft>::new(3, 0, config);
    let leader = h.check_one_leader();
    let term = h.check_terms();
    let follower = h.id(pos(leader) + 1);
    h.disconnect(follower);
    h.sleep(5 * ELECTION_TIMEOUT);
    assert!(h.sim.state(follower).unwrap().1 > term);
    h.connect(follower);
    h.sleep(ELECTION_TIMEOUT);
    h.check_one_leader();
    assert!(
        h.check_terms() > term,
        "the higher term forces a new election"
    );
}

#[test]
fn check_quorum_steps_down_a_leader_cut_off_from_the_quorum() {
    scenarios::leader_cut_off_from_the_quorum_steps_down::<Raft>(RaftConfig::default());
}

#[test]
fn check_quorum_off_leaves_a_cut_off_leader_in_place() {
    // The control: without CheckQuorum the isolated leader never notices.
    let config = RaftConfig {
        check_quorum: false,
        ..RaftConfig::default()
    };
    let mut h = Harness::<Raft>::new(3, 0, config);
    let leader = h.check_one_leader();
    h.disconnect(leader);
    h.sleep(2 * ELECTION_TIMEOUT);
    assert_eq!(h.sim.state(leader).map(|s| s.0), Some(Role::Leader));
}

#[test]
fn uncommitted_bytes_limit_refuses_a_flood_of_proposals() {
    let config = RaftConfig {
        limits: ReplicationLimits {
            max_uncommitted_bytes: 10_000,
            ..ReplicationLimits::default()
        },
        ..RaftConfig::default()
    };
    let mut h = Harness::<Raft>::new(3, 0, config);
    let leader = h.check_one_leader();
    h.disconnect(h.id(pos(leader) + 1));
    h.disconnect(h.id(pos(leader) + 2));
    let mut accepted = 0;
    let mut busy = false;
    for _ in 0..1000 {
        match h.sim.propose(leader, &[0u8; 100]).unwrap() {
            Ok(_) => accepted += 1,
            Err(consenso::ProposeError::Busy) => {
                busy = true;
                break;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(busy, "the leader never refused");
    assert!(
        (50..=100).contains(&accepted),
        "accepted {accepted} 124-byte entries under a 10,000-byte limit"
    );
    // Once a quorum is back, the entries commit and proposals are taken again.
    h.connect(h.id(pos(leader) + 1));
    h.connect(h.id(pos(leader) + 2));
    h.sleep(ELECTION_TIMEOUT);
    let leader = h.check_one_leader();
    assert!(h.sim.propose(leader, &[1u8; 100]).unwrap().is_ok());
}

// Lab 3D: snapshots and compaction.

#[test]
fn snapshot_basic() {
    scenarios::snapshot_common::<Raft>(RaftConfig::default(), false, true, false);
}

#[test]
fn snapshot_install() {
    scenarios::snapshot_common::<Raft>(RaftConfig::default(), true, true, false);
}

#[test]
fn snapshot_install_unreliable() {
    scenarios::snapshot_common::<Raft>(RaftConfig::default(), true, false, false);
}

#[test]
fn snapshot_install_crash() {
    scenarios::snapshot_common::<Raft>(RaftConfig::default(), false, true, true);
}

#[test]
fn snapshot_install_uncrash() {
    scenarios::snapshot_common::<Raft>(RaftConfig::default(), false, false, true);
}

#[test]
fn snapshot_all_crash() {
    scenarios::snapshot_all_crash::<Raft>(RaftConfig::default());
}

#[test]
fn snapshot_init() {
    scenarios::snapshot_init::<Raft>(RaftConfig::default());
}
