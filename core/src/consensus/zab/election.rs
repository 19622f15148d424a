//! Fast Leader Election: votes ordered by (peer epoch, last zxid, server
//! id) in notification rounds under an election epoch, a short finalize
//! wait once a quorum agrees, and joining an established leader that a
//! quorum follows.

use super::{FollowStage, LeadStage, Message, PeerPhase, PeerState, Phase, Vote, Zab, ZabEffects};
use crate::consensus::quorum;
use crate::types::{Epoch, NodeId};

/// A LOOKING server's election round.
#[derive(Debug)]
pub(super) struct Election {
    pub(super) vote: Vote,
    /// Votes of looking peers in this election epoch, by position.
    pub(super) received: Vec<Option<Vote>>,
    /// What peers that are following or leading report, by position.
    settled: Vec<Option<(Vote, PeerState)>>,
    finalize_in: Option<u32>,
    resend_in: u32,
}

impl Election {
    /// A first election among `voters` servers, before any vote is cast;
    /// the first tick announces this server's vote.
    pub(super) fn new(voters: usize) -> Self {
        Election {
            vote: Vote {
                leader: 0,
                zxid: Default::default(),
                peer_epoch: 0,
            },
            received: vec![None; voters],
            settled: vec![None; voters],
            finalize_in: None,
            resend_in: 1,
        }
    }
}

impl Zab {
    pub(super) fn self_vote(&self) -> Vote {
        Vote {
            leader: self.shell.id,
            zxid: self.last_zxid(),
            peer_epoch: self.current_epoch,
        }
    }

    /// This server's vote and state, as a notification.
    fn notification(&self) -> Message {
        let (vote, state) = match &self.phase {
            Phase::Looking(el) => (el.vote, PeerState::Looking),
            Phase::Following { leader, .. } => (
                Vote {
                    leader: *leader,
                    zxid: self.last_zxid(),
                    peer_epoch: self.current_epoch,
                },
                PeerState::Following,
            ),
            // A leader reports the epoch it leads; still in discovery, it will
            // pick one above every joiner's, so it reports the largest.
            Phase::Leading { stage, .. } => (
                Vote {
                    peer_epoch: if *stage == LeadStage::Discovery {
                        Epoch::MAX
                    } else {
                        self.new_epoch
                    },
                    ..self.self_vote()
                },
                PeerState::Leading,
            ),
        };
        Message::Notification {
            vote,
            election_epoch: self.election_epoch,
            state,
        }
    }

    fn broadcast_notification(&self, out: &mut ZabEffects) {
        self.shell.broadcast(self.notification(), out);
    }

    /// Enters election with a new logical clock and votes for itself.
    pub(super) fn start_looking(&mut self, out: &mut ZabEffects) {
        self.leaving(out);
        self.election_epoch += 1;
        let vote = self.self_vote();
        let mut el = Election::new(self.shell.voters.len());
        el.vote = vote;
        el.received[self.shell.self_pos] = Some(vote);
        el.resend_in = self.shell.timing.election_ticks_min;
        self.phase = Phase::Looking(el);
        self.shell.reset_timers();
        self.broadcast_notification(out);
        self.check_votes(out);
    }

    /// A LOOKING server's tick: decide once the finalize wait is over,
    /// resend its vote now and then (notifications can be lost).
    pub(super) fn tick_looking(&mut self, out: &mut ZabEffects) {
        // Votes are counted as they arrive; a server alone in its cluster
        // receives none and counts its own here.
        if matches!(&self.phase, Phase::Looking(el) if el.finalize_in.is_none()) {
            self.check_votes(out);
        }
        let Phase::Looking(el) = &mut self.phase else {
            return;
        };
        if let Some(k) = el.finalize_in.as_mut() {
            *k = k.saturating_sub(1);
            if *k == 0 {
                let leader = el.vote.leader;
                self.decide(leader, out);
                return;
            }
        }
        el.resend_in = el.resend_in.saturating_sub(1);
        if el.resend_in == 0 {
            el.resend_in = self.shell.timing.election_ticks_min;
            self.broadcast_notification(out);
        }
    }

    fn check_votes(&mut self, out: &mut ZabEffects) {
        let Phase::Looking(el) = &mut self.phase else {
            return;
        };
        let n = self.shell.voters.len();
        let agree = el.received.iter().filter(|v| **v == Some(el.vote)).count();
        if agree == n {
            let leader = el.vote.leader;
            self.decide(leader, out);
        } else if quorum::has_majority(agree, n) {
            if el.finalize_in.is_none() {
                el.finalize_in = Some(self.cfg.finalize_ticks.max(1));
            }
        } else {
            el.finalize_in = None;
        }
    }

    /// The election is over: lead, or register with `leader`.
    pub(super) fn decide(&mut self, leader: NodeId, out: &mut ZabEffects) {
        self.leaving(out);
        self.shell.reset_timers();
        if leader == self.shell.id {
            let n = self.shell.voters.len();
            let mut peers = vec![PeerPhase::Unknown; n];
            peers[self.shell.self_pos] = PeerPhase::Info(self.accepted_epoch);
            let stage = LeadStage::Discovery;
            self.phase = Phase::Leading { stage, peers };
            let last = self.shell.log.last_index();
            self.shell.repl.reset(n, 1, last);
            self.lead_discovery(out);
        } else {
            let stage = FollowStage::Discovery;
            self.phase = Phase::Following { leader, stage };
            let accepted_epoch = self.accepted_epoch;
            out.send(leader, Message::FollowerInfo { accepted_epoch });
        }
    }

    /// A notification from `from` (at position `p`).
    pub(super) fn handle_notification(
        &mut self,
        from: NodeId,
        p: usize,
        vote: Vote,
        e: u64,
        state: PeerState,
        out: &mut ZabEffects,
    ) {
        if !matches!(self.phase, Phase::Looking(_)) {
            // A looking server learns who leads from those that settled.
            if state == PeerState::Looking {
                out.send(from, self.notification());
            }
            return;
        }
        if state == PeerState::Looking {
            self.looking_vote(from, p, vote, e, out);
        } else {
            self.settled_vote(p, vote, e, state, out);
        }
    }

    /// Another LOOKING server's vote: a later election epoch restarts the
    /// round, an earlier one is answered with ours, and a better vote in
    /// this round is adopted and announced.
    fn looking_vote(&mut self, from: NodeId, p: usize, vote: Vote, e: u64, out: &mut ZabEffects) {
        let my_epoch = self.election_epoch;
        let self_vote = self.self_vote();
        let me = self.shell.self_pos;
        let Phase::Looking(el) = &mut self.phase else {
            return;
        };
        if e < my_epoch {
            out.send(from, self.notification());
            return;
        }
        let changed = if e > my_epoch {
            self.election_epoch = e;
            el.received.iter_mut().for_each(|v| *v = None);
            el.vote = if vote.beats(&self_vote) {
                vote
            } else {
                self_vote
            };
            true
        } else {
            vote.beats(&el.vote)
        };
        el.received[p] = Some(vote);
        if changed {
            if e == my_epoch {
                el.vote = vote;
            }
            el.received[me] = Some(el.vote);
            el.finalize_in = None;
            self.broadcast_notification(out);
        }
        self.check_votes(out);
    }

    /// A server that follows or leads reports its leader: join that leader
    /// once a quorum (the leader itself among them) backs it, counting the
    /// votes of this election round too.
    fn settled_vote(
        &mut self,
        p: usize,
        vote: Vote,
        e: u64,
        state: PeerState,
        out: &mut ZabEffects,
    ) {
        let my_epoch = self.election_epoch;
        let leader = vote.leader;
        let leader_pos = self.shell.pos(leader);
        let Phase::Looking(el) = &mut self.phase else {
            return;
        };
        el.settled[p] = Some((vote, state));
        if e == my_epoch {
            el.received[p] = Some(vote);
        }
        let settled_backing = el
            .settled
            .iter()
            .filter(|s| s.is_some_and(|(v, _)| v.leader == leader))
            .count();
        let round_backing = el.received.iter().filter(|v| **v == Some(vote)).count();
        let backing = settled_backing.max(round_backing);
        // The leader itself must say it leads. Its epoch may be below what
        // this server accepted (from leaders that never got established):
        // it follows anyway, and its FOLLOWERINFO makes that leader step
        // down so that the next discovery picks an epoch above the promise.
        // Staying LOOKING instead left the server out for good, nothing
        // ever timing out (found by a review's fuzzing).
        let leader_ready = leader_pos
            .and_then(|lp| el.settled[lp])
            .is_some_and(|(_, s)| s == PeerState::Leading);
        let n = self.shell.voters.len();
        if leader != self.shell.id && leader_ready && quorum::has_majority(backing, n) {
            self.election_epoch = self.election_epoch.max(e);
            self.decide(leader, out);
        }
    }
}
