//! Table-driven, sans-IO tests of the Raft core: messages are routed by hand
//! so each test controls exactly what arrives where.

use super::*;
use crate::consensus::replication::ReplicationLimits;
use crate::consensus::{ReadFailed, ReadReady, Recovered};

type Net = crate::consensus::testing::Net<Raft>;

fn cfg() -> RaftConfig {
    RaftConfig::default()
}

fn with_logs(config: RaftConfig, logs: &[(NodeId, Epoch, Vec<Epoch>)]) -> Net {
    let voters: Vec<NodeId> = logs.iter().map(|l| l.0).collect();
    let nodes = logs
        .iter()
        .map(|(id, term, terms)| {
            let entries = terms
                .iter()
                .enumerate()
                .map(|(i, &t)| {
                    Entry::new(
                        t,
                        i as Index + 1,
                        EntryKind::Normal,
                        Bytes::from(vec![i as u8, t as u8]),
                    )
                })
                .collect();
            let rec = Recovered {
                snapshot: None,
                hard_state: Some(HardState {
                    term: *term,
                    vote: None,
                    commit: 0,
                }),
                entries,
            };
            (
                *id,
                Raft::new(*id, &voters, config.clone(), rec, 7).unwrap(),
            )
        })
        .collect();
    Net::from_nodes(nodes)
}

#[test]
fn a_follower_that_times_out_pre_campaigns_then_wins() {
    let mut net = Net::new(3, cfg());
    let t = net.nodes[&1].shell.timeout;
    net.tick(1, t - 1);
    assert_eq!(net.node(1).role(), Role::Follower);
    net.tick(1, 1);
    assert_eq!(net.node(1).role(), Role::PreCandidate);
    assert_eq!(net.node(1).epoch(), 0, "pre-vote does not raise the term");
    assert!(net
        .queue
        .iter()
        .all(|(_, _, m)| matches!(m, Message::PreVote { term: 1, .. })));
    net.deliver_all();
    assert_eq!(net.node(1).role(), Role::Leader);
    assert_eq!(net.node(1).epoch(), 1);
    for id in [2, 3] {
        assert_eq!(net.node(id).leader(), Some(1));
        assert_eq!(net.node(id).vote(), Some(1));
    }
    // The no-op of term 1 committed everywhere.
    assert_eq!(net.node(1).commit_index(), 1);
    assert_eq!(
        net.node(1).log().entry(1).map(|e| e.kind),
        Some(EntryKind::Noop)
    );
}

#[test]
fn a_node_votes_at_most_once_per_term() {
    let mut net = Net::new(
        3,
        RaftConfig {
            pre_vote: false,
            ..cfg()
        },
    );
    let t1 = net.nodes[&1].shell.timeout;
    let t2 = net.nodes[&2].shell.timeout;
    net.tick(1, t1);
    net.tick(2, t2);
    // Both candidates of term 1 ask node 3; only the first gets its vote.
    let first = net
        .queue
        .iter()
        .find(|(_, to, _)| *to == 3)
        .map(|m| m.0)
        .unwrap();
    let pending: Vec<_> = net
        .queue
        .iter()
        .filter(|(_, to, _)| *to != 3)
        .cloned()
        .collect();
    net.deliver_once(|_, to, _| to == 3);
    net.queue.extend(pending);
    assert_eq!(net.node(3).vote(), Some(first));
    let grants: Vec<_> = net
        .queue
        .iter()
        .filter(|(from, _, m)| {
            *from == 3 && matches!(m, Message::VoteResponse { granted: true, .. })
        })
        .collect();
    assert_eq!(grants.len(), 1);
    net.deliver_all();
    let leaders: Vec<_> = (1..=3)
        .filter(|&i| net.node(i).role() == Role::Leader)
        .collect();
    assert_eq!(leaders, vec![first]);
}

#[test]
fn a_candidate_with_a_stale_log_is_refused() {
    // Node 3 missed term 2's entry; nodes 1 and 2 must refuse it.
    let mut net = with_logs(
        RaftConfig {
            pre_vote: false,
            ..cfg()
        },
        &[(1, 2, vec![1, 2]), (2, 2, vec![1, 2]), (3, 2, vec![1])],
    );
    let t = net.nodes[&3].shell.timeout;
    net.tick(3, t);
    net.deliver_once(|_, _, _| true);
    net.deliver_once(|_, to, _| to == 3);
    assert_ne!(net.node(3).role(), Role::Leader);
    assert_eq!(net.node(1).vote(), None);
}

#[test]
fn figure_8_an_old_term_entry_is_not_committed_by_counting_replicas() {
    // Raft paper, Figure 8 (c): S1 leads term 4 with an entry of term 2 at
    // index 2 that S2 holds too; S5 holds a term-3 entry at index 2.
    let one = RaftConfig {
        limits: ReplicationLimits {
            max_entries_per_message: 1,
            max_inflight_messages: 1,
            ..ReplicationLimits::default()
        },
        pre_vote: false,
        ..cfg()
    };
    let mut net = with_logs(
        one,
        &[
            (1, 3, vec![1, 2]),
            (2, 3, vec![1, 2]),
            (3, 3, vec![1]),
            (4, 3, vec![1]),
            (5, 3, vec![1, 3]),
        ],
    );
    let t = net.nodes[&1].shell.timeout;
    net.tick(1, t);
    // Only 2 and 3 vote (1 votes for itself): elected in term 4.
    net.deliver_once(|_, to, _| to == 2 || to == 3);
    net.deliver_once(|_, to, _| to == 1);
    assert_eq!(net.node(1).role(), Role::Leader);
    assert_eq!(net.node(1).epoch(), 4);
    assert_eq!(net.node(1).last_index(), 3, "no-op of term 4 at index 3");
    // Probes (prev = index 2): node 2 matches and takes the no-op, node 3
    // lacks index 2 and refuses; 4 and 5 hear nothing.
    net.deliver_once(|_, to, _| to == 2 || to == 3);
    net.deliver_once(|_, to, _| to == 1);
    assert_eq!(net.node(2).last_index(), 3);
    // The leader backs up and sends node 3 index 2 alone (one per message).
    net.deliver_once(|_, to, m| to == 3 && matches!(m, Message::Append { entries, .. } if entries.len() == 1 && entries[0].index == 2));
    assert_eq!(net.node(3).last_index(), 2, "node 3 holds the term-2 entry");
    net.deliver_once(|_, to, _| to == 1);
    assert_eq!(net.node(1).progress(3).map(|p| p.matched), Some(2));
    // Index 2 is on nodes 1, 2 and 3, a majority of five, but it is of term
    // 2: counting replicas must not commit it.
    assert_eq!(net.node(1).commit_index(), 0);
    // Once the no-op of term 4 is on a majority, both commit together.
    net.deliver_all();
    assert_eq!(net.node(1).commit_index(), 3);
}

#[test]
fn fast_backtracking_skips_a_whole_conflicting_term_per_round_trip() {
    // Node 2 holds 50 entries of term 2 that the leader's log replaced with
    // term-3 entries; one rejection lets the leader jump past all of them.
    let mut leader_log = vec![1u64; 10];
    leader_log.extend(std::iter::repeat_n(3, 50));
    let mut follower_log = vec![1u64; 10];
    follower_log.extend(std::iter::repeat_n(2, 50));
    let mut net = with_logs(
        RaftConfig {
            pre_vote: false,
            ..cfg()
        },
        &[
            (1, 3, leader_log.clone()),
            (2, 3, follower_log),
            (3, 3, leader_log),
        ],
    );
    let t = net.nodes[&1].shell.timeout;
    net.tick(1, t);
    let mut rejections = 0;
    let mut rounds = 0;
    while !net.queue.is_empty() && rounds < 100 {
        rounds += 1;
        let batch: Vec<_> = net.queue.drain(..).collect();
        for (from, to, m) in batch {
            if matches!(&m, Message::AppendResponse { result: Err(_), .. }) {
                rejections += 1;
            }
            net.call(to, |r, fx| r.step(from, m, fx));
        }
    }
    assert_eq!(net.node(2).log().term(60), Some(3));
    assert_eq!(net.node(2).last_index(), 61);
    assert!(
        rejections <= 2,
        "{rejections} rejections to skip one conflicting term"
    );
}

#[test]
fn a_follower_truncates_a_conflicting_suffix() {
    let mut net = with_logs(
        RaftConfig {
            pre_vote: false,
            ..cfg()
        },
        &[
            (1, 2, vec![1, 2, 2]),
            (2, 2, vec![1, 1, 1, 1]),
            (3, 2, vec![1, 2, 2]),
        ],
    );
    net.elect(1);
    let f = net.node(2);
    assert_eq!(f.last_index(), 4);
    assert_eq!(f.log().term(2), Some(2));
    assert_eq!(
        f.log().term(4),
        Some(3),
        "the no-op of term 3 replaced index 4"
    );
}

#[test]
fn proposals_in_one_batch_go_out_in_one_append_per_follower() {
    let mut net = Net::new(3, cfg());
    net.elect(1);
    let mut fx = RaftEffects::default();
    let node = net.nodes.get_mut(&1).unwrap();
    for i in 0..100u8 {
        node.propose(Bytes::from(vec![i]), &mut fx).unwrap();
    }
    node.flush(&mut fx);
    let appends: Vec<_> = fx
        .messages
        .iter()
        .filter_map(|(to, m)| match m {
            Message::Append { entries, .. } => Some((*to, entries.len())),
            _ => None,
        })
        .collect();
    assert_eq!(appends, vec![(2, 100), (3, 100)]);
    assert_eq!(fx.append.len(), 100, "all 100 persisted in one batch");
}

#[test]
fn batches_split_by_entries_and_bytes_and_pipeline_up_to_the_limit() {
    let config = RaftConfig {
        limits: ReplicationLimits {
            max_entries_per_message: 10,
            max_bytes_per_message: 1 << 20,
            max_inflight_messages: 3,
            ..ReplicationLimits::default()
        },
        ..cfg()
    };
    let mut net = Net::new(2, config);
    net.elect(1);
    let mut fx = RaftEffects::default();
    let node = net.nodes.get_mut(&1).unwrap();
    for _ in 0..100 {
        node.propose(Bytes::from_static(b"x"), &mut fx).unwrap();
    }
    node.flush(&mut fx);
    let sizes: Vec<usize> = fx
        .messages
        .iter()
        .filter_map(|(_, m)| match m {
            Message::Append { entries, .. } => Some(entries.len()),
            _ => None,
        })
        .collect();
    assert_eq!(
        sizes,
        vec![10, 10, 10],
        "three messages of ten in flight, no more"
    );
    // A byte limit smaller than one entry still sends one entry per message.
    let config = RaftConfig {
        limits: ReplicationLimits {
            max_bytes_per_message: 1,
            ..ReplicationLimits::default()
        },
        ..cfg()
    };
    let mut net = Net::new(2, config);
    net.elect(1);
    let mut fx = RaftEffects::default();
    let node = net.nodes.get_mut(&1).unwrap();
    for _ in 0..5 {
        node.propose(Bytes::from_static(b"xyz"), &mut fx).unwrap();
    }
    node.flush(&mut fx);
    let sizes: Vec<usize> = fx
        .messages
        .iter()
        .filter_map(|(_, m)| match m {
            Message::Append { entries, .. } => Some(entries.len()),
            _ => None,
        })
        .collect();
    assert_eq!(sizes, vec![1, 1, 1, 1, 1]);
}

#[test]
fn read_index_waits_for_a_quorum_of_heartbeat_answers() {
    let mut net = Net::new(3, cfg());
    net.elect(1);
    net.propose(1, b"a").unwrap();
    net.deliver_all();
    net.call(1, |r, fx| r.read(42, fx)).unwrap();
    assert!(
        net.last[&1].reads_ready.is_empty(),
        "not before a quorum answered"
    );
    let round: Vec<_> = net
        .queue
        .iter()
        .filter(|(_, _, m)| matches!(m, Message::Heartbeat { read_round, .. } if *read_round > 0))
        .collect();
    assert_eq!(round.len(), 2, "one heartbeat round confirms the read");
    // Node 2 answers: with the leader that is a majority of 3.
    net.deliver_once(|_, to, _| to == 2);
    net.deliver_once(|_, to, _| to == 1);
    assert_eq!(
        net.last[&1].reads_ready,
        vec![ReadReady { id: 42, index: 2 }]
    );
}

#[test]
fn read_index_fails_when_leadership_is_lost() {
    let mut net = Net::new(3, cfg());
    net.elect(1);
    net.call(1, |r, fx| r.read(7, fx)).unwrap();
    net.queue.clear();
    // A higher term arrives: the read fails instead of being served stale,
    // and names the new leader (as Paxos and ZAB do).
    net.call(1, |r, fx| {
        r.step(
            2,
            Message::Heartbeat {
                term: 9,
                commit: 0,
                read_round: 0,
            },
            fx,
        )
    });
    assert_eq!(
        net.last[&1].reads_failed,
        vec![ReadFailed {
            id: 7,
            leader: Some(2)
        }]
    );
    assert_eq!(net.node(1).role(), Role::Follower);
}

#[test]
fn followers_refuse_proposals_and_reads_with_the_leader_hint() {
    let mut net = Net::new(3, cfg());
    net.elect(1);
    assert_eq!(
        net.propose(2, b"x"),
        Err(ProposeError::NotLeader { leader: Some(1) })
    );
    assert_eq!(
        net.call(3, |r, fx| r.read(1, fx)),
        Err(ProposeError::NotLeader { leader: Some(1) })
    );
}

#[test]
fn the_uncommitted_bytes_limit_refuses_proposals_until_entries_commit() {
    let mut net = Net::new(
        3,
        RaftConfig {
            limits: ReplicationLimits {
                max_uncommitted_bytes: 1000,
                ..ReplicationLimits::default()
            },
            ..cfg()
        },
    );
    net.elect(1);
    let mut accepted = 0;
    while net.propose(1, &[0u8; 76]).is_ok() {
        accepted += 1;
        assert!(accepted < 100);
    }
    assert_eq!(net.propose(1, &[0u8; 76]), Err(ProposeError::Busy));
    assert!(
        (9..=10).contains(&accepted),
        "{accepted} entries of 100 bytes under 1000"
    );
    net.deliver_all();
    assert!(
        net.propose(1, &[0u8; 76]).is_ok(),
        "committing frees the budget"
    );
}

#[test]
fn check_quorum_steps_down_a_leader_that_hears_from_no_one() {
    let mut net = Net::new(3, cfg());
    net.elect(1);
    net.queue.clear();
    let min = net.node(1).cfg.timing.election_ticks_min;
    net.tick(1, 2 * min);
    assert_eq!(net.node(1).role(), Role::Follower);
    assert_eq!(net.node(1).leader(), None);
}

#[test]
fn a_follower_in_its_lease_ignores_vote_requests() {
    let mut net = Net::new(3, cfg());
    net.elect(1);
    net.queue.clear();
    // Node 3 asks for votes in term 5 while 2 just heard from leader 1.
    net.call(2, |r, fx| {
        r.step(
            3,
            Message::Vote {
                term: 5,
                last_index: 10,
                last_term: 4,
            },
            fx,
        )
    });
    assert_eq!(net.node(2).epoch(), 1, "the disruptive term was ignored");
    assert!(net.queue.is_empty());
}

#[test]
fn lost_pipelined_appends_are_found_by_the_next_heartbeat() {
    let mut net = Net::new(2, cfg());
    net.elect(1);
    net.propose(1, b"a").unwrap();
    net.deliver_all();
    // Switch to pipelined replication has happened; now lose an append.
    net.propose(1, b"b").unwrap();
    net.queue.clear();
    assert_eq!(net.node(2).last_index(), 2);
    let hb = net.node(1).cfg.timing.heartbeat_ticks;
    for _ in 0..3 {
        net.tick(1, hb);
        net.deliver_all();
    }
    assert_eq!(net.node(2).last_index(), 3, "the lost entry was resent");
    assert_eq!(net.node(1).commit_index(), 3);
}

#[test]
fn restart_recovers_term_vote_log_and_commit() {
    let entries: Vec<Entry> = (1..=3)
        .map(|i| Entry::new(2, i, EntryKind::Normal, Bytes::from(vec![i as u8])))
        .collect();
    let rec = Recovered {
        snapshot: None,
        hard_state: Some(HardState {
            term: 5,
            vote: Some(2),
            commit: 2,
        }),
        entries: entries.clone(),
    };
    let mut r = Raft::new(1, &[1, 2, 3], cfg(), rec, 1).unwrap();
    assert_eq!(
        (r.epoch(), r.vote(), r.commit_index(), r.last_index()),
        (5, Some(2), 2, 3)
    );
    let mut fx = RaftEffects::default();
    r.flush(&mut fx);
    assert_eq!(
        fx.committed,
        entries[..2].to_vec(),
        "recovered commits are applied again"
    );
    // A gap in the recovered log is a clear error.
    let bad = Recovered {
        snapshot: None,
        hard_state: None,
        entries: vec![entries[0].clone(), entries[2].clone()],
    };
    let err = Raft::new(1, &[1, 2, 3], cfg(), bad, 1).unwrap_err();
    assert_eq!(err.field, "recovered");
}

#[test]
fn membership_is_validated() {
    let r =
        |id, voters: &[NodeId]| Raft::new(id, voters, cfg(), Recovered::default(), 1).map(|_| ());
    assert_eq!(r(0, &[0, 1]).unwrap_err().field, "id");
    assert_eq!(r(1, &[2, 3]).unwrap_err().field, "voters");
    assert_eq!(r(1, &[1, 1, 2]).unwrap_err().field, "voters");
    let many: Vec<NodeId> = (1..=65).collect();
    assert_eq!(r(1, &many).unwrap_err().field, "voters");
    assert!(r(1, &[1]).is_ok());
}

#[test]
fn a_single_voter_elects_itself_commits_and_reads_alone() {
    let mut net = Net::new(1, cfg());
    net.elect(1);
    let (_, i) = net.propose(1, b"solo").unwrap();
    assert_eq!(net.node(1).commit_index(), i);
    net.call(1, |r, fx| r.read(3, fx)).unwrap();
    assert_eq!(
        net.last[&1].reads_ready,
        vec![ReadReady { id: 3, index: i }]
    );
}

#[test]
fn messages_from_strangers_and_from_itself_are_ignored() {
    let mut net = Net::new(3, cfg());
    for from in [0, 1, 9] {
        net.call(1, |r, fx| {
            r.step(
                from,
                Message::Heartbeat {
                    term: 3,
                    commit: 0,
                    read_round: 0,
                },
                fx,
            )
        });
    }
    assert_eq!(net.node(1).epoch(), 0);
    assert!(net.queue.is_empty());
}

#[test]
fn turning_down_a_stale_candidate_does_not_restart_the_election_timer() {
    // Node 3's log is behind and (without PreVote) it campaigns again and
    // again, faster than anyone. Nodes 1 and 2 refuse it, take its term,
    // and keep counting: one of them campaigns in time and wins. (Restarting
    // the timer on every refusal let a fast-clocked stale node hold every
    // election off; the simulator found it with skewed clocks.)
    let config = RaftConfig {
        pre_vote: false,
        ..cfg()
    };
    let mut net = with_logs(
        config,
        &[(1, 1, vec![1, 1]), (2, 1, vec![1, 1]), (3, 1, vec![1])],
    );
    let max = net.node(1).cfg.timing.election_ticks_max;
    let mut ticks = 0;
    while net.node(1).role() == Role::Follower && net.node(2).role() == Role::Follower {
        assert!(ticks < max, "nodes 1 and 2 never campaigned");
        // Node 3 campaigns at every tick of theirs.
        let t3 = net.nodes[&3].shell.timeout;
        net.tick(3, t3);
        net.deliver_all();
        assert_ne!(net.node(3).role(), Role::Leader);
        net.tick(1, 1);
        net.tick(2, 1);
        ticks += 1;
    }
    net.deliver_all();
    assert!(
        [1, 2].iter().any(|&id| net.node(id).role() == Role::Leader),
        "an up-to-date node won"
    );
}
