//! Sans-IO tests of the Multi-Paxos core, messages routed by hand.

use super::*;
use crate::consensus::replication::ReplicationLimits;
use crate::consensus::{ReadReady, Recovered};
use std::collections::BTreeMap;

type Net = crate::consensus::testing::Net<MultiPaxos>;

fn cfg() -> PaxosConfig {
    PaxosConfig::default()
}

fn entry(index: Index, epoch: Ballot, data: &[u8]) -> Entry {
    Entry::new(
        epoch,
        index,
        EntryKind::Normal,
        Bytes::copy_from_slice(data),
    )
}

/// Nodes with given (promised, commit, accepted values).
fn with_state(config: PaxosConfig, nodes: &[(NodeId, Ballot, Index, Vec<Entry>)]) -> Net {
    let voters: Vec<NodeId> = nodes.iter().map(|n| n.0).collect();
    let cores: BTreeMap<NodeId, MultiPaxos> = nodes
        .iter()
        .map(|(id, promised, commit, entries)| {
            let rec = Recovered {
                snapshot: None,
                hard_state: Some(HardState {
                    promised: *promised,
                    commit: *commit,
                }),
                entries: entries.clone(),
            };
            (
                *id,
                MultiPaxos::new(*id, &voters, config.clone(), rec, 3).unwrap(),
            )
        })
        .collect();
    Net::from_nodes(cores)
}

fn values(p: &MultiPaxos) -> Vec<(Index, Ballot, Vec<u8>)> {
    p.log()
        .slice(1, p.last_index())
        .iter()
        .map(|e| (e.index, e.epoch, e.data.to_vec()))
        .collect()
}

#[test]
fn phase_1_elects_a_leader_whose_no_op_is_chosen() {
    let mut net = Net::new(3, cfg());
    net.elect(2);
    let leader = net.node(2);
    assert_eq!(leader.epoch(), ballot(1, 1), "round 1, position 1");
    assert_eq!(leader.commit_index(), 1);
    for id in [1, 3] {
        assert_eq!(net.node(id).leader(), Some(2));
        assert_eq!(net.node(id).promised(), ballot(1, 1));
    }
    let (b, i) = net.propose(2, b"x").unwrap();
    net.deliver_all();
    assert_eq!((b, i), (ballot(1, 1), 2));
    assert_eq!(net.node(2).commit_index(), 2);
}

#[test]
fn an_acceptor_refuses_a_ballot_lower_than_its_promise() {
    let mut net = with_state(
        cfg(),
        &[
            (1, ballot(5, 0), 0, vec![]),
            (2, ballot(5, 0), 0, vec![]),
            (3, ballot(5, 0), 0, vec![]),
        ],
    );
    net.call(2, |p, fx| {
        p.step(
            3,
            Message::Accept {
                ballot: ballot(4, 2),
                first: 1,
                entries: vec![entry(1, ballot(4, 2), b"old")],
                commit: 0,
            },
            fx,
        )
    });
    assert_eq!(net.node(2).last_index(), 0, "nothing accepted");
    let reply = net.queue.pop_front().map(|m| m.2);
    assert_eq!(
        reply,
        Some(Message::Accepted {
            ballot: ballot(4, 2),
            result: Err(Refusal::Promised(ballot(5, 0)))
        })
    );
    // A lower Prepare is refused too, and the promise stays.
    net.call(2, |p, fx| {
        p.step(
            3,
            Message::Prepare {
                ballot: ballot(3, 2),
                from: 1,
            },
            fx,
        )
    });
    assert_eq!(net.node(2).promised(), ballot(5, 0));
    assert!(matches!(
        net.queue.pop_front().map(|m| m.2),
        Some(Message::Promise { result: Err(b), .. }) if b == ballot(5, 0)
    ));
}

/// Slot 1 chosen everywhere. Slot 2: node 2 accepted "a" in ballot (2,1),
/// node 3 "b" in the higher (3,2); slot 3 only node 2 holds ("c").
fn split_acceptors() -> Net {
    let (b2, b3) = (ballot(2, 1), ballot(3, 2));
    let chosen = entry(1, ballot(1, 0), b"z");
    with_state(
        cfg(),
        &[
            (1, b3, 1, vec![chosen.clone()]),
            (
                2,
                b3,
                1,
                vec![chosen.clone(), entry(2, b2, b"a"), entry(3, b2, b"c")],
            ),
            (3, b3, 1, vec![chosen, entry(2, b3, b"b")]),
        ],
    )
}

/// Node 1 campaigns and hears the promise of `promiser` first.
fn elect_1_with(net: &mut Net, promiser: NodeId) {
    while net.node(1).role() == Role::Follower {
        net.tick(1, 1);
    }
    net.deliver_once(|_, _, _| true);
    net.deliver_once(|from, _, _| from == promiser);
    assert_eq!(net.node(1).role(), Role::Leader);
}

#[test]
fn a_new_leader_re_proposes_the_highest_accepted_value_of_each_open_slot() {
    let mut net = split_acceptors();
    elect_1_with(&mut net, 2);
    let b = net.node(1).epoch();
    assert!(b > ballot(3, 2));
    let v = values(net.node(1));
    assert_eq!(
        v[0],
        (1, ballot(1, 0), b"z".to_vec()),
        "chosen slot kept as chosen"
    );
    assert_eq!(
        v[1],
        (2, b, b"a".to_vec()),
        "node 2's value, re-proposed in the new ballot"
    );
    assert_eq!(v[2], (3, b, b"c".to_vec()));
    assert_eq!(v[3].0, 4, "then this leadership's no-op");
    net.deliver_all();
    assert_eq!(net.node(1).commit_index(), 4);
    for id in [2, 3] {
        assert_eq!(values(net.node(id)), v, "node {id} holds the leader's log");
    }
}

#[test]
fn with_another_quorum_the_higher_ballot_value_wins_the_slot() {
    let mut net = split_acceptors();
    elect_1_with(&mut net, 3);
    let b = net.node(1).epoch();
    let v = values(net.node(1));
    assert_eq!(v[1], (2, b, b"b".to_vec()), "(3,2) beats (2,1) for slot 2");
    assert_eq!(
        v.len(),
        3,
        "slot 3 was never reported: this leadership's no-op takes it"
    );
    net.deliver_all();
    assert_eq!(
        values(net.node(2)),
        v,
        "node 2's unchosen values are replaced"
    );
}

#[test]
fn a_slot_no_promise_covers_becomes_a_no_op() {
    let b = ballot(9, 0);
    let promises = vec![
        (
            1usize,
            Promised {
                commit: 0,
                entries: vec![entry(1, ballot(2, 1), b"a")],
            },
        ),
        (
            2usize,
            Promised {
                commit: 0,
                entries: vec![entry(3, ballot(2, 1), b"c")],
            },
        ),
    ];
    let gap = merge_slot(2, 0, b, None, &promises);
    assert_eq!((gap.index, gap.epoch, gap.kind), (2, b, EntryKind::Noop));
    let kept = merge_slot(3, 0, b, None, &promises);
    assert_eq!((kept.epoch, kept.data.as_ref()), (b, &b"c"[..]));
}

#[test]
fn values_known_chosen_by_a_promiser_are_adopted_as_chosen() {
    let b1 = ballot(1, 2);
    let mut net = with_state(
        cfg(),
        &[
            (1, b1, 0, vec![]),
            (2, b1, 2, vec![entry(1, b1, b"x"), entry(2, b1, b"y")]),
            (3, b1, 0, vec![]),
        ],
    );
    net.elect(1);
    let v = values(net.node(1));
    assert_eq!(v[0], (1, b1, b"x".to_vec()));
    assert_eq!(v[1], (2, b1, b"y".to_vec()));
    assert!(net.node(1).commit_index() >= 2);
}

#[test]
fn overwriting_a_slot_keeps_the_acceptors_later_slots() {
    let (b1, b2) = (ballot(1, 0), ballot(2, 0));
    let mut net = with_state(
        cfg(),
        &[
            (1, b2, 0, vec![]),
            (
                2,
                b1,
                0,
                vec![entry(1, b1, b"a"), entry(2, b1, b"b"), entry(3, b1, b"c")],
            ),
            (3, b2, 0, vec![]),
        ],
    );
    net.call(2, |p, fx| {
        p.step(
            1,
            Message::Accept {
                ballot: b2,
                first: 1,
                entries: vec![entry(1, b2, b"A")],
                commit: 0,
            },
            fx,
        )
    });
    let v = values(net.node(2));
    assert_eq!(
        v,
        vec![
            (1, b2, b"A".to_vec()),
            (2, b1, b"b".to_vec()),
            (3, b1, b"c".to_vec())
        ],
        "slots 2 and 3 are still accepted"
    );
    let fx = &net.last[&2];
    assert_eq!(fx.truncate_from, Some(1));
    assert_eq!(fx.append.len(), 3, "rewritten with the tail it keeps");
}

#[test]
fn a_lagging_acceptor_is_caught_up_from_its_chosen_prefix() {
    let mut net = Net::new(3, cfg());
    net.elect(1);
    // Node 3 misses everything for a while.
    for i in 0..5u8 {
        net.propose(1, &[i]).unwrap();
        net.deliver_once(|_, to, _| to != 3);
        net.deliver_once(|_, to, _| to != 3);
    }
    assert_eq!(net.node(3).last_index(), 1);
    assert_eq!(net.node(1).commit_index(), 6);
    net.propose(1, b"last").unwrap();
    for _ in 0..4 {
        net.tick(1, cfg().timing.heartbeat_ticks);
        net.deliver_all();
    }
    assert_eq!(net.node(3).last_index(), 7);
    assert_eq!(net.node(3).commit_index(), 7);
    assert_eq!(values(net.node(3)), values(net.node(1)));
}

#[test]
fn batches_and_pipelining_respect_the_limits() {
    let config = PaxosConfig {
        limits: ReplicationLimits {
            max_entries_per_message: 10,
            max_inflight_messages: 3,
            ..ReplicationLimits::default()
        },
        ..cfg()
    };
    let mut net = Net::new(2, config);
    net.elect(1);
    let mut fx = PaxosEffects::default();
    let node = net.nodes.get_mut(&1).unwrap();
    for _ in 0..100 {
        node.propose(Bytes::from_static(b"x"), &mut fx).unwrap();
    }
    node.flush(&mut fx);
    let sizes: Vec<usize> = fx
        .messages
        .iter()
        .filter_map(|(_, m)| match m {
            Message::Accept { entries, .. } => Some(entries.len()),
            _ => None,
        })
        .collect();
    assert_eq!(sizes, vec![10, 10, 10]);
    assert_eq!(fx.append.len(), 100, "persisted in one batch");
}

#[test]
fn a_read_waits_for_the_no_op_and_a_quorum_round() {
    let mut net = Net::new(3, cfg());
    net.elect(1);
    net.propose(1, b"a").unwrap();
    net.deliver_all();
    net.call(1, |p, fx| p.read(9, fx)).unwrap();
    assert!(net.last[&1].reads_ready.is_empty());
    net.deliver_once(|_, to, _| to == 2);
    net.deliver_once(|_, to, _| to == 1);
    assert_eq!(
        net.last[&1].reads_ready,
        vec![ReadReady { id: 9, index: 2 }]
    );
}

#[test]
fn a_preempted_leader_steps_down_and_fails_its_reads() {
    let mut net = Net::new(3, cfg());
    net.elect(1);
    net.call(1, |p, fx| p.read(4, fx)).unwrap();
    net.queue.clear();
    let (mine, higher) = (net.node(1).epoch(), ballot(7, 2));
    net.call(1, |p, fx| {
        p.step(
            3,
            Message::HeartbeatResponse {
                ballot: mine,
                read_round: 1,
                result: Err(higher),
            },
            fx,
        )
    });
    assert_eq!(net.node(1).role(), Role::Follower);
    assert_eq!(net.last[&1].reads_failed.len(), 1);
    // Its next campaign uses a round above the one that preempted it.
    net.elect(1);
    assert!(round_of(net.node(1).epoch()) > 7);
}

#[test]
fn followers_refuse_proposals_and_reads_with_the_leader_hint() {
    let mut net = Net::new(3, cfg());
    net.elect(3);
    assert_eq!(
        net.propose(1, b"x"),
        Err(ProposeError::NotLeader { leader: Some(3) })
    );
    assert_eq!(
        net.call(2, |p, fx| p.read(1, fx)),
        Err(ProposeError::NotLeader { leader: Some(3) })
    );
}

#[test]
fn a_leader_cut_off_from_the_quorum_steps_down() {
    let mut net = Net::new(3, cfg());
    net.elect(1);
    net.queue.clear();
    net.tick(1, 2 * cfg().timing.election_ticks_min);
    assert_eq!(net.node(1).role(), Role::Follower);
}

#[test]
fn restart_recovers_the_promise_and_accepted_values() {
    let b = ballot(4, 1);
    let rec = Recovered {
        snapshot: None,
        hard_state: Some(HardState {
            promised: b,
            commit: 1,
        }),
        entries: vec![entry(1, ballot(2, 0), b"a"), entry(2, b, b"b")],
    };
    let mut p = MultiPaxos::new(1, &[1, 2, 3], cfg(), rec, 1).unwrap();
    assert_eq!((p.promised(), p.commit_index(), p.last_index()), (b, 1, 2));
    let mut fx = PaxosEffects::default();
    p.flush(&mut fx);
    assert_eq!(fx.committed.len(), 1);
    // Epochs may go down along an acceptor's log (slots are independent),
    // which Raft's recovery would refuse.
    let rec = Recovered {
        snapshot: None,
        hard_state: None,
        entries: vec![entry(1, ballot(5, 0), b"a"), entry(2, ballot(2, 0), b"b")],
    };
    assert!(MultiPaxos::new(1, &[1, 2, 3], cfg(), rec, 1).is_ok());
}

#[test]
fn config_and_membership_are_validated() {
    let bad = PaxosConfig {
        timing: crate::consensus::Timing {
            heartbeat_ticks: 0,
            ..cfg().timing
        },
        ..cfg()
    };
    assert_eq!(bad.validate().unwrap_err().field, "heartbeat_ticks");
    let bad = PaxosConfig {
        limits: ReplicationLimits {
            max_inflight_bytes: 0,
            ..ReplicationLimits::default()
        },
        ..cfg()
    };
    assert_eq!(bad.validate().unwrap_err().field, "max_inflight_bytes");
    let err = MultiPaxos::new(4, &[1, 2, 3], cfg(), Recovered::default(), 1).unwrap_err();
    assert_eq!(err.field, "voters");
}
