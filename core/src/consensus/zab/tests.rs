//! Sans-IO tests of the ZAB core, messages routed by hand.

use super::*;
use crate::consensus::Recovered;
use crate::types::{Entry, EntryKind};
use bytes::Bytes;
use std::collections::BTreeMap;

type Net = crate::consensus::testing::Net<Zab>;

fn cfg() -> ZabConfig {
    ZabConfig::default()
}

fn entry(index: Index, epoch: Epoch, data: &[u8]) -> Entry {
    Entry::new(
        epoch,
        index,
        EntryKind::Normal,
        Bytes::copy_from_slice(data),
    )
}

/// Servers with given (accepted epoch, current epoch, commit, history).
fn with_state(nodes: &[(NodeId, Epoch, Epoch, Index, Vec<Entry>)]) -> Net {
    let voters: Vec<NodeId> = nodes.iter().map(|n| n.0).collect();
    let cores: BTreeMap<NodeId, Zab> = nodes
        .iter()
        .map(|(id, acc, cur, commit, entries)| {
            let rec = Recovered {
                snapshot: None,
                hard_state: Some(HardState {
                    accepted_epoch: *acc,
                    current_epoch: *cur,
                    commit: *commit,
                }),
                entries: entries.clone(),
            };
            (*id, Zab::new(*id, &voters, cfg(), rec, 5).unwrap())
        })
        .collect();
    Net::from_nodes(cores)
}

/// Ticks everyone and delivers everything until a leader is established
/// and every other server serves; returns the leader.
fn settle(net: &mut Net) -> NodeId {
    let ids: Vec<NodeId> = net.nodes.keys().copied().collect();
    for _ in 0..500 {
        for &id in &ids {
            net.tick(id, 1);
        }
        net.deliver_all();
        let leader = ids
            .iter()
            .copied()
            .find(|&i| net.node(i).role() == Role::Leader);
        if let Some(l) = leader {
            if ids
                .iter()
                .all(|&i| i == l || net.node(i).leader() == Some(l))
            {
                return l;
            }
        }
    }
    panic!("no established leader");
}

fn history(z: &Zab) -> Vec<(Index, Epoch, Vec<u8>)> {
    z.log()
        .slice(1, z.last_index())
        .iter()
        .map(|e| (e.index, e.epoch, e.data.to_vec()))
        .collect()
}

#[test]
fn votes_order_by_peer_epoch_then_zxid_then_id() {
    let v = |leader, epoch, index, peer_epoch| Vote {
        leader,
        zxid: Zxid { epoch, index },
        peer_epoch,
    };
    assert!(v(1, 1, 1, 2).beats(&v(9, 9, 9, 1)), "peer epoch first");
    assert!(v(1, 2, 1, 1).beats(&v(9, 1, 9, 1)), "then the zxid's epoch");
    assert!(v(1, 1, 5, 1).beats(&v(9, 1, 4, 1)), "then its counter");
    assert!(v(9, 1, 5, 1).beats(&v(1, 1, 5, 1)), "then the server id");
    assert_eq!(Zxid { epoch: 3, index: 7 }.to_u64(), (3 << 32) | 7);
}

#[test]
fn fast_leader_election_picks_the_most_up_to_date_server() {
    // Server 1 has the longest history; 3 has the highest id.
    let mut net = with_state(&[
        (1, 1, 1, 1, vec![entry(1, 1, b"a"), entry(2, 1, b"b")]),
        (2, 1, 1, 1, vec![entry(1, 1, b"a")]),
        (3, 1, 1, 1, vec![entry(1, 1, b"a")]),
    ]);
    assert_eq!(settle(&mut net), 1);
    // Discovery chose an epoch above every accepted one.
    assert_eq!(net.node(1).epoch(), 2);
    for id in [2, 3] {
        assert_eq!(net.node(id).accepted_epoch(), 2);
        assert_eq!(net.node(id).current_epoch(), 2);
        assert_eq!(
            history(net.node(id)),
            history(net.node(1)),
            "synced by DIFF"
        );
    }
    // NEWLEADER committed the whole synced history, and UPTODATE said so.
    assert_eq!(net.node(1).commit_index(), 2);
    assert_eq!(net.node(2).commit_index(), 2);
}

#[test]
fn without_failures_the_highest_id_leads_and_broadcast_commits() {
    let mut net = Net::new(3, cfg());
    assert_eq!(settle(&mut net), 3);
    let (epoch, index) = net.propose(3, b"x").unwrap();
    assert_eq!((epoch, index), (1, 1));
    net.deliver_all();
    assert_eq!(net.node(3).commit_index(), 1);
    net.tick(3, cfg().timing.heartbeat_ticks);
    net.deliver_all();
    for id in [1, 2] {
        assert_eq!(net.node(id).commit_index(), 1, "COMMIT reached {id}");
    }
}

#[test]
fn a_new_epoch_is_above_every_accepted_epoch_of_the_quorum() {
    let mut net = with_state(&[
        (1, 7, 7, 0, vec![]),
        (2, 2, 2, 0, vec![]),
        (3, 4, 3, 0, vec![]),
    ]);
    assert_eq!(
        settle(&mut net),
        1,
        "the highest current epoch wins the vote"
    );
    assert_eq!(net.node(1).epoch(), 8);
    for id in [2, 3] {
        assert_eq!(net.node(id).accepted_epoch(), 8);
    }
}

#[test]
fn sync_truncates_proposals_the_leader_never_had() {
    // Server 3 holds an uncommitted proposal of epoch 1 that the others
    // (which moved on to epoch 2) do not: TRUNC, then DIFF.
    let common = vec![entry(1, 1, b"a")];
    let mut leader_log = common.clone();
    leader_log.push(entry(2, 2, b"b"));
    let mut stale = common.clone();
    stale.push(entry(2, 1, b"zombie"));
    stale.push(entry(3, 1, b"zombie2"));
    let mut net = with_state(&[
        (1, 2, 2, 1, leader_log.clone()),
        (2, 2, 2, 1, leader_log.clone()),
        (3, 1, 1, 1, stale),
    ]);
    let leader = settle(&mut net);
    assert_ne!(leader, 3);
    let h = history(net.node(3));
    assert_eq!(h, history(net.node(leader)));
    assert!(h.iter().all(|(_, _, d)| !d.starts_with(b"zombie")));
}

fn h(snapshot: Index, epochs: &[(Epoch, Index)]) -> History {
    History {
        snapshot,
        epochs: epochs.to_vec(),
    }
}

#[test]
fn the_sync_kind_follows_the_common_prefix() {
    let mut log = Log::default();
    for (i, e) in [1, 1, 2, 2, 3].into_iter().enumerate() {
        log.push(entry(i as Index + 1, e, b"x"));
    }
    let common = |history| discovery::common_prefix(&log, &history);
    // Follower's history is a prefix: DIFF from its end.
    assert_eq!(common(h(0, &[(1, 2), (2, 3)])), 3);
    // Follower has epoch-2 entries past the leader's: TRUNC to the leader's last of epoch 2.
    assert_eq!(common(h(0, &[(1, 2), (2, 6)])), 4);
    // Follower diverged in an epoch the leader never saw: keep the common part.
    assert_eq!(common(h(0, &[(1, 2), (5, 4)])), 2);
    // Nothing in common: SNAP.
    assert_eq!(common(h(0, &[(9, 3)])), 0);
    assert_eq!(common(h(0, &[])), 0);
    // A follower's own snapshot is committed history: common through it.
    assert_eq!(common(h(2, &[(2, 4)])), 4);
    assert_eq!(common(h(2, &[(7, 4)])), 2);
}

#[test]
fn below_the_leaders_snapshot_only_its_last_entry_is_compared() {
    // The leader compacted through index 3 (epoch 2); it holds 4 and 5.
    let log = Log::after_snapshot(3, 2, vec![entry(4, 2, b"x"), entry(5, 3, b"x")], 3).unwrap();
    let common = |history| discovery::common_prefix(&log, &history);
    // The follower's run of epoch 2 holds index 3: same history through it.
    assert_eq!(common(h(0, &[(1, 2), (2, 4)])), 4);
    assert_eq!(common(h(0, &[(1, 2), (2, 3)])), 3);
    // Its entry at 3 is of another epoch, or it ends before 3: the snapshot.
    assert_eq!(common(h(0, &[(1, 2), (5, 4)])), 0);
    assert_eq!(common(h(0, &[(1, 2)])), 0);
    // Its own snapshot reaches past the leader's: compared from there.
    assert_eq!(common(h(4, &[(3, 5)])), 5);
    assert_eq!(common(h(2, &[])), 2);
}

#[test]
fn nothing_is_broadcast_before_a_quorum_acknowledged_newleader() {
    let mut net = Net::new(3, cfg());
    // Elect 3 but hold back every NEWLEADER acknowledgement.
    for _ in 0..100 {
        for id in 1..=3 {
            net.tick(id, 1);
        }
        while !net.queue.is_empty() {
            net.deliver_once(|_, _, m| !matches!(m, Message::AckNewLeader { .. }));
        }
        if net.node(3).role() == Role::Candidate && net.node(3).epoch() == 1 {
            break;
        }
    }
    assert_eq!(
        net.node(3).role(),
        Role::Candidate,
        "leading, not established"
    );
    assert_eq!(
        net.propose(3, b"early"),
        Err(ProposeError::NotLeader { leader: None })
    );
    assert_eq!(
        net.call(3, |z, fx| z.read(1, fx)),
        Err(ProposeError::NotLeader { leader: None })
    );
    // One acknowledgement (with the leader's own) is a quorum of three.
    net.tick(1, cfg().timing.heartbeat_ticks);
    net.deliver_once(|from, _, m| from == 1 && matches!(m, Message::AckNewLeader { .. }));
    assert_eq!(net.node(3).role(), Role::Leader);
    assert!(net.propose(3, b"now").is_ok());
}

#[test]
fn a_follower_persists_the_synced_history_in_the_batch_that_acknowledges_newleader() {
    // ZOOKEEPER-3911: the runtime persists a batch before sending any of its
    // messages, so the synced entries and the new current epoch must be in the
    // same batch as the acknowledgement.
    let mut net = with_state(&[
        (1, 1, 1, 1, vec![entry(1, 1, b"a"), entry(2, 1, b"b")]),
        (2, 1, 1, 0, vec![]),
        (3, 1, 1, 0, vec![]),
    ]);
    let mut seen = false;
    for _ in 0..200 {
        for id in 1..=3 {
            net.tick(id, 1);
        }
        let batch: Vec<_> = net.queue.drain(..).collect();
        for (from, to, m) in batch {
            let is_sync = matches!(m, Message::Sync { .. });
            net.call(to, |z, fx| z.step(from, m, fx));
            if is_sync {
                let fx = &net.last[&to];
                let queued_ack = net
                    .queue
                    .iter()
                    .any(|(f, _, m)| *f == to && matches!(m, Message::AckNewLeader { .. }));
                assert!(queued_ack, "NEWLEADER acknowledged in the same step");
                assert_eq!(fx.append.len(), 2, "with the synced proposals in the batch");
                assert_eq!(fx.hard_state.as_ref().map(|h| h.current_epoch), Some(2));
                seen = true;
            }
        }
        if seen {
            break;
        }
    }
    assert!(seen, "no sync happened");
}

#[test]
fn a_duplicate_proposal_is_tolerated() {
    let mut net = Net::new(3, cfg());
    let leader = settle(&mut net);
    net.propose(leader, b"once").unwrap();
    let dup: Vec<_> = net
        .queue
        .iter()
        .filter(|(_, to, _)| *to == 1)
        .cloned()
        .collect();
    net.deliver_all();
    net.queue.extend(dup);
    net.deliver_all();
    let f = net.node(1);
    assert_eq!(f.last_index(), 1, "logged once");
    assert_eq!(net.node(leader).commit_index(), 1);
}

#[test]
fn proposals_reach_a_follower_that_acknowledged_the_epoch_but_not_newleader() {
    let mut net = Net::new(3, cfg());
    // Let 3 become established with 2 while 1's sync is held back.
    let mut held = Vec::new();
    for _ in 0..200 {
        for id in 1..=3 {
            net.tick(id, 1);
        }
        while !net.queue.is_empty() {
            let now: Vec<_> = net.queue.drain(..).collect();
            for (from, to, m) in now {
                if to == 1 && matches!(m, Message::Sync { .. }) {
                    held.push((from, to, m));
                } else {
                    net.call(to, |z, fx| z.step(from, m, fx));
                }
            }
        }
        if net.node(3).role() == Role::Leader && !held.is_empty() {
            break;
        }
    }
    assert_eq!(net.node(3).role(), Role::Leader);
    net.propose(3, b"after").unwrap();
    // Now the held sync arrives, followed by everything else.
    let later: Vec<_> = net.queue.drain(..).collect();
    net.queue.extend(held);
    net.queue.extend(later);
    net.deliver_all();
    assert_eq!(net.node(1).last_index(), 1);
    assert_eq!(history(net.node(1)), history(net.node(3)));
}

#[test]
fn a_leader_gives_up_when_a_follower_is_ahead() {
    let mut net = with_state(&[
        (1, 1, 1, 0, vec![]),
        (2, 1, 1, 0, vec![]),
        (3, 1, 1, 0, vec![]),
    ]);
    // 1 leads (by hand); 2's FOLLOWERINFO gives it a discovery quorum.
    net.call(1, |z, fx| z.decide(1, fx));
    net.call(2, |z, fx| z.decide(1, fx));
    net.deliver_once(|_, to, m| to == 1 && matches!(m, Message::FollowerInfo { .. }));
    let epoch = net.node(1).epoch();
    assert_eq!(epoch, 2);
    assert_eq!(net.node(1).role(), Role::Candidate);
    // Server 3 acknowledges the epoch with a history ahead of the leader's.
    net.call(1, |z, fx| {
        z.step(
            3,
            Message::AckEpoch {
                epoch,
                current_epoch: 1,
                last: Zxid { epoch: 1, index: 9 },
                history: vec![(1, 9)],
                snapshot: 0,
                fresh: true,
            },
            fx,
        )
    });
    assert_eq!(net.node(1).role(), Role::PreCandidate, "back to election");
}

#[test]
fn a_follower_refuses_a_leader_behind_its_accepted_epoch() {
    let mut net = with_state(&[
        (1, 1, 1, 0, vec![]),
        (2, 5, 4, 0, vec![]),
        (3, 1, 1, 0, vec![]),
    ]);
    net.call(2, |z, fx| z.decide(1, fx));
    net.queue.clear();
    net.call(2, |z, fx| z.step(1, Message::LeaderInfo { epoch: 3 }, fx));
    assert_eq!(net.node(2).role(), Role::PreCandidate, "back to election");
    assert_eq!(net.node(2).accepted_epoch(), 5);
}

#[test]
fn restart_recovers_both_epochs_separately() {
    let rec = Recovered {
        snapshot: None,
        hard_state: Some(HardState {
            accepted_epoch: 6,
            current_epoch: 5,
            commit: 1,
        }),
        entries: vec![entry(1, 5, b"a"), entry(2, 5, b"b")],
    };
    let z = Zab::new(1, &[1, 2, 3], cfg(), rec, 1).unwrap();
    assert_eq!(
        (z.accepted_epoch(), z.current_epoch(), z.commit_index()),
        (6, 5, 1)
    );
    assert_eq!(z.last_zxid(), Zxid { epoch: 5, index: 2 });
    let bad = Recovered {
        snapshot: None,
        hard_state: None,
        entries: vec![entry(1, 5, b"a"), entry(2, 4, b"b")],
    };
    assert_eq!(
        Zab::new(1, &[1, 2, 3], cfg(), bad, 1).unwrap_err().field,
        "recovered"
    );
}

/// Issue #8, bug 6 (seeds 5981, 9604, 15258, 19143 of 20,000): two servers
/// that each decided to follow the other (from stale notifications) kept
/// each other's timers alive forever with their FOLLOWERINFO resends, and
/// the cluster stayed leaderless with no fault left. Only what a leader
/// sends counts as hearing from it, so both go back to election.
#[test]
fn two_servers_following_each_other_go_back_to_looking() {
    let mut net = Net::new(3, cfg());
    for (me, other) in [(1, 2), (2, 1)] {
        net.nodes.get_mut(&me).unwrap().phase = Phase::Following {
            leader: other,
            stage: FollowStage::Discovery,
        };
    }
    // Server 3 is down: only 1 and 2 tick and talk.
    let limit = 2 * cfg().timing.election_ticks_max;
    let mut looked = [false; 2];
    for _ in 0..limit {
        for id in [1, 2] {
            net.tick(id, 1);
        }
        net.queue.retain(|&(_, to, _)| to != 3);
        net.deliver_all();
        for (i, id) in [1u64, 2].into_iter().enumerate() {
            looked[i] |= !matches!(net.node(id).phase, Phase::Following { .. });
        }
    }
    assert_eq!(
        looked,
        [true, true],
        "both must give up on a leader that never leads"
    );
    // With server 3 back, the three elect a leader.
    let leader = settle(&mut net);
    assert!(net.node(leader).is_established());
}

/// Issue #8, bug 5: a server promises an epoch to one leader only. Server 2
/// acknowledges epoch 1 to leader 1 (and is not synced yet); a re-election
/// makes it follow 3, its FOLLOWERINFO to 3 is lost, and 3 picks epoch 1 too
/// from a FOLLOWERINFO of 2's that was delayed from before. Before the fix 2
/// acknowledged epoch 1 a second time and both leaders passed the epoch
/// stage with the same epoch, whose proposals would share zxids. Now the
/// second acknowledgement is not fresh (ZooKeeper's -1) and does not count.
#[test]
fn a_server_promises_an_epoch_to_one_leader_only() {
    let mut net = Net::new(3, cfg());
    let is_info = |m: &Message| matches!(m, Message::FollowerInfo { .. });
    net.call(1, |z, fx| z.decide(1, fx));
    net.call(2, |z, fx| z.decide(1, fx));
    net.call(3, |z, fx| z.decide(3, fx));
    // 2's FOLLOWERINFO reaches 1: epoch 1; 2 acknowledges it; 1 syncs it,
    // but the sync is held back.
    net.deliver_once(|_, to, m| to == 1 && is_info(m));
    assert_eq!(net.node(1).epoch(), 1);
    net.deliver_once(|from, to, m| (from, to) == (1, 2) && matches!(m, Message::LeaderInfo { .. }));
    net.deliver_once(|from, to, m| (from, to) == (2, 1) && matches!(m, Message::AckEpoch { .. }));
    assert_eq!(net.node(1).stage(), Some(LeadStage::AwaitNewLeaderAcks));
    assert_eq!(net.node(2).accepted_epoch, 1);
    assert_eq!(net.node(2).current_epoch, 0, "not synced yet");
    net.queue.clear();
    // 2 now follows 3; what it says to 3 is lost, but an old FOLLOWERINFO
    // of its, from before it accepted epoch 1, arrives.
    net.call(2, |z, fx| z.decide(3, fx));
    net.queue.clear();
    net.call(3, |z, fx| {
        z.step(2, Message::FollowerInfo { accepted_epoch: 0 }, fx)
    });
    assert_eq!(net.node(3).new_epoch, 1, "3 picked the same epoch");
    net.deliver_once(|from, to, m| (from, to) == (3, 2) && matches!(m, Message::LeaderInfo { .. }));
    net.deliver_once(|from, to, m| (from, to) == (2, 3) && matches!(m, Message::AckEpoch { .. }));
    assert_eq!(
        net.node(3).stage(),
        Some(LeadStage::AwaitEpochAcks),
        "2's second promise of epoch 1 must not complete 3's quorum"
    );
    // The cluster still elects one leader for everyone afterwards.
    net.queue.clear();
    let leader = settle(&mut net);
    assert!(net.node(leader).is_established());
}

/// Found by delaying messages past election timeouts in the simulator
/// (seeds 3475 and 2704 of 10,000): a FOLLOWERINFO delayed from before a
/// follower synced reset its progress at the leader, which stopped sending
/// it proposals while the follower, already serving, ignored the LEADERINFO
/// answer, and nothing committed again; and a follower re-registering with
/// the epoch it had accepted from this very leader made the leader step down.
#[test]
fn stale_or_repeated_followerinfo_neither_stalls_nor_deposes_the_leader() {
    let mut net = Net::new(3, cfg());
    let leader = settle(&mut net);
    let epoch = net.node(leader).new_epoch;
    let follower = [1, 2, 3].into_iter().find(|&i| i != leader).unwrap();
    for accepted_epoch in [0, epoch] {
        net.call(leader, |z, fx| {
            z.step(follower, Message::FollowerInfo { accepted_epoch }, fx)
        });
        net.deliver_all();
        assert!(
            net.node(leader).is_established(),
            "accepted {accepted_epoch}"
        );
        let (_, index) = net.propose(leader, b"after").unwrap();
        for _ in 0..5 {
            for id in [1, 2, 3] {
                net.tick(id, 1);
            }
            net.deliver_all();
        }
        assert!(
            net.node(follower).commit_index() >= index,
            "accepted {accepted_epoch}: the follower still gets proposals"
        );
    }
}

/// Found with the previous fix by the unreliable-network scenario: a
/// follower's NEWLEADER acknowledgement was lost, and its resends carried
/// its last index, grown since with the proposals that followed the sync;
/// the leader only took the exact sync index, so the follower stayed
/// unsynced forever (the leader's pings kept its timer alive).
#[test]
fn a_lost_newleader_ack_is_made_good_by_a_later_resend() {
    let mut net = Net::new(3, cfg());
    let leader = settle(&mut net);
    let follower = [1, 2, 3].into_iter().find(|&i| i != leader).unwrap();
    // The follower registers again (as after a timeout); its NEWLEADER
    // acknowledgement is lost.
    net.call(follower, |z, fx| z.decide(leader, fx));
    for _ in 0..4 {
        net.deliver_once(|from, to, m| {
            !((from, to) == (follower, leader) && matches!(m, Message::AckNewLeader { .. }))
        });
    }
    assert!(matches!(
        net.node(follower).phase,
        Phase::Following {
            stage: FollowStage::Synced(_),
            ..
        }
    ));
    // Proposals follow the sync, so the follower's resend names a later
    // index than the sync's.
    let pos = (follower - 1) as usize;
    let synced_to = match &net.node(leader).phase {
        Phase::Leading { peers, .. } => match peers[pos] {
            PeerPhase::Syncing(x) => x,
            ref other => panic!("expected Syncing, got {other:?}"),
        },
        _ => panic!("not leading"),
    };
    let (epoch, index) = net.propose(leader, b"after the sync").unwrap();
    while !net.queue.is_empty() {
        net.deliver_once(|from, to, m| {
            !((from, to) == (follower, leader) && matches!(m, Message::AckNewLeader { .. }))
        });
    }
    assert_eq!(net.node(follower).last_index(), index);
    assert!(index > synced_to);
    net.call(leader, |z, fx| {
        z.step(
            follower,
            Message::AckNewLeader {
                epoch,
                newleader: index,
            },
            fx,
        )
    });
    assert!(
        net.queue
            .iter()
            .any(|(_, to, m)| *to == follower && matches!(m, Message::UpToDate { .. })),
        "the leader takes the later acknowledgement"
    );
    net.deliver_all();
    assert!(matches!(
        net.node(follower).phase,
        Phase::Following {
            stage: FollowStage::Broadcast(_),
            ..
        }
    ));
}

/// Found by a review's fuzzing: a server that accepted epochs from leaders
/// that never got established (stale FOLLOWERINFOs made it try to lead, five
/// times) sat LOOKING forever once the others established a lower epoch: it
/// would not follow a leader below its promise, so it never sent the
/// FOLLOWERINFO that makes that leader step down, and nothing timed out.
#[test]
fn a_server_that_promised_a_higher_epoch_rejoins_the_cluster() {
    let mut net = Net::new(3, cfg());
    for _ in 0..5 {
        net.call(1, |z, fx| z.decide(1, fx));
        net.call(1, |z, fx| {
            z.step(2, Message::FollowerInfo { accepted_epoch: 0 }, fx)
        });
        net.queue.clear();
        net.call(1, |z, fx| z.start_looking(fx));
        net.queue.clear();
    }
    assert_eq!(net.node(1).accepted_epoch, 5);
    // 2 and 3 elect a leader of a lower epoch without 1.
    for _ in 0..100 {
        for id in [2, 3] {
            net.tick(id, 1);
        }
        while !net.queue.is_empty() {
            net.deliver_once(|from, to, _| from != 1 && to != 1);
        }
    }
    let leader = [2, 3]
        .into_iter()
        .find(|&i| net.node(i).is_established())
        .expect("2 and 3 elect a leader");
    assert!(net.node(leader).new_epoch < 5);
    // With 1 back on the network, it must end up following an established
    // leader, in an epoch above its promise.
    let leader = settle(&mut net);
    assert_eq!(net.node(1).leader(), Some(leader));
    assert!(net.node(leader).new_epoch > 5);
}
