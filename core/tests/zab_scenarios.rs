//! The 6.5840 scenarios (written once in `common`) run on ZAB, plus the
//! lessons ZooKeeper learned the hard way that need a whole cluster: a
//! server with the highest zxid that joins the election late
//! (ZOOKEEPER-1154), and histories that diverge through repeated partial
//! restarts and must end identical (ZOOKEEPER-2832). The other lessons
//! (proposals reaching followers that acked the epoch but not NEWLEADER,
//! duplicate proposals, the NEWLEADER commit, DIFF persisted before the
//! NEWLEADER ack) are sans-IO tests in `core/src/consensus/zab/tests.rs`.

mod common;

use common::{scenarios, Harness, ELECTION_TIMEOUT};
use consenso::consensus::replication::ReplicationLimits;
use consenso::consensus::zab::{Zab, ZabConfig};
use consenso::runtime::SnapshotPolicy;
use consenso::types::NodeId;

fn cfg() -> ZabConfig {
    ZabConfig::default()
}

#[test]
fn initial_election() {
    scenarios::initial_election::<Zab>(cfg());
}

#[test]
fn re_election() {
    scenarios::re_election::<Zab>(cfg());
}

#[test]
fn many_elections() {
    scenarios::many_elections::<Zab>(cfg());
}

#[test]
fn basic_agree() {
    scenarios::basic_agree::<Zab>(cfg());
}

#[test]
fn rpc_bytes() {
    scenarios::rpc_bytes::<Zab>(cfg());
}

#[test]
fn follower_failure() {
    scenarios::follower_failure::<Zab>(cfg());
}

#[test]
fn leader_failure() {
    scenarios::leader_failure::<Zab>(cfg());
}

#[test]
fn fail_agree() {
    scenarios::fail_agree::<Zab>(cfg());
}

#[test]
fn fail_no_agree() {
    scenarios::fail_no_agree::<Zab>(cfg());
}

#[test]
fn concurrent_starts() {
    scenarios::concurrent_starts::<Zab>(cfg());
}

#[test]
fn rejoin() {
    scenarios::rejoin::<Zab>(cfg());
}

#[test]
fn backup() {
    scenarios::backup::<Zab>(cfg());
}

#[test]
fn count() {
    scenarios::count::<Zab>(cfg());
}

#[test]
fn persist1() {
    scenarios::persist1::<Zab>(cfg());
}

#[test]
fn persist2() {
    scenarios::persist2::<Zab>(cfg());
}

#[test]
fn persist3() {
    scenarios::persist3::<Zab>(cfg());
}

#[test]
fn restart_when_idle() {
    scenarios::restart_when_idle::<Zab>(cfg());
}

#[test]
fn unreliable_agree() {
    scenarios::unreliable_agree::<Zab>(cfg());
}

#[test]
fn reliable_churn() {
    scenarios::reliable_churn::<Zab>(cfg());
}

#[test]
fn unreliable_churn() {
    scenarios::unreliable_churn::<Zab>(cfg());
}

#[test]
fn figure8_reliable() {
    for seed in scenarios::seeds() {
        scenarios::figure8::<Zab>(seed, false, cfg());
    }
}

/// Figure 8 with one entry per message, so a follower can acknowledge an
/// old-epoch entry before the new leader's first entry reaches it.
#[test]
fn figure8_one_entry_per_message() {
    let config = ZabConfig {
        limits: ReplicationLimits {
            max_entries_per_message: 1,
            max_inflight_messages: 1,
            ..ReplicationLimits::default()
        },
        ..cfg()
    };
    scenarios::figure8_small_batches::<Zab>(config);
}

#[test]
fn figure8_unreliable() {
    for seed in scenarios::seeds() {
        scenarios::figure8::<Zab>(seed, true, cfg());
    }
}

fn logs_of(h: &Harness<Zab>, ids: &[NodeId]) -> Vec<Vec<(u64, u64, Vec<u8>)>> {
    ids.iter()
        .map(|&id| {
            let z = h.sim.core(id).expect("up");
            z.log()
                .slice(1, z.log().last_index())
                .iter()
                .map(|e| (e.index, e.epoch, e.data.to_vec()))
                .collect()
        })
        .collect()
}

#[test]
fn a_server_with_the_highest_zxid_joining_the_election_late_is_not_lost() {
    for seed in scenarios::seeds() {
        let mut h = Harness::<Zab>::new(5, seed, cfg());
        let leader = h.check_one_leader();
        h.one(1, 5, false);
        // Two servers miss the next values; a majority of three commits them.
        let others: Vec<NodeId> = (1..=5).filter(|&i| i != leader).collect();
        let (behind, ahead) = (&others[..2], &others[2..]);
        for &b in behind {
            h.disconnect(b);
        }
        let v2 = h.one(2, 3, false);
        let v3 = h.one(3, 3, false);
        // Everyone goes down; the two that are behind come back first and
        // look for a leader on their own for a while.
        for id in 1..=5 {
            h.crash(id);
        }
        for &b in behind {
            h.restart(b);
        }
        h.sleep(3 * ELECTION_TIMEOUT);
        h.check_no_leader();
        // One server holding the committed values joins late: it must win.
        h.restart(ahead[0]);
        let new_leader = h.check_one_leader();
        assert_eq!(
            new_leader, ahead[0],
            "the late server with the highest zxid leads"
        );
        h.one(4, 3, true);
        for (index, value) in [(v2, 2), (v3, 3)] {
            let (n, v) = h.n_committed(index);
            assert!(n >= 3 && v == Some(value), "committed value {value} lost");
        }
        for id in [leader, ahead[1]] {
            h.restart(id);
        }
        h.one(5, 5, true);
    }
}

#[test]
fn histories_diverged_by_repeated_partial_restarts_end_identical() {
    for seed in scenarios::seeds() {
        let n = 5;
        let mut h = Harness::<Zab>::new(n, seed, cfg());
        // Whole histories are compared at the end: nothing compacted.
        h.sim.set_snapshot_policy(SnapshotPolicy::NEVER);
        h.check_one_leader();
        for round in 0..30u64 {
            // Whoever leads takes a few proposals; some will never commit.
            let leaders: Vec<NodeId> = h.sim.leaders().into_iter().map(|l| l.0).collect();
            for &l in &leaders {
                for k in 0..3 {
                    h.start(l, 1000 * round + k);
                }
            }
            let wait = h.sim.rng().below(60);
            h.sleep(wait);
            // Crash a random minority or majority, restart them soon after.
            let count = 1 + h.sim.rng().below(3) as usize;
            let mut victims: Vec<NodeId> = Vec::new();
            while victims.len() < count {
                let v = h.sim.rng().below(n as u64) as NodeId + 1;
                if !victims.contains(&v) {
                    victims.push(v);
                }
            }
            for &v in &victims {
                h.crash(v);
            }
            let pause = h.sim.rng().below(ELECTION_TIMEOUT);
            h.sleep(pause);
            for &v in &victims {
                h.restart(v);
            }
        }
        let last = h.one(99_999, n, true);
        h.sleep(ELECTION_TIMEOUT);
        let ids: Vec<NodeId> = (1..=n as NodeId).collect();
        let logs = logs_of(&h, &ids);
        for (i, log) in logs.iter().enumerate() {
            assert_eq!(log, &logs[0], "server {} diverged from server 1", i + 1);
            assert_eq!(log.len() as u64, last);
        }
    }
}

#[test]
fn a_leader_cut_off_from_the_quorum_goes_back_to_election() {
    scenarios::leader_cut_off_from_the_quorum_steps_down::<Zab>(cfg());
}

// Lab 3D: snapshots and compaction.

#[test]
fn snapshot_basic() {
    scenarios::snapshot_common::<Zab>(cfg(), false, true, false);
}

#[test]
fn snapshot_install() {
    scenarios::snapshot_common::<Zab>(cfg(), true, true, false);
}

#[test]
fn snapshot_install_unreliable() {
    scenarios::snapshot_common::<Zab>(cfg(), true, false, false);
}

#[test]
fn snapshot_install_crash() {
    scenarios::snapshot_common::<Zab>(cfg(), false, true, true);
}

#[test]
fn snapshot_install_uncrash() {
    scenarios::snapshot_common::<Zab>(cfg(), false, false, true);
}

#[test]
fn snapshot_all_crash() {
    scenarios::snapshot_all_crash::<Zab>(cfg());
}

#[test]
fn snapshot_init() {
    scenarios::snapshot_init::<Zab>(cfg());
}
