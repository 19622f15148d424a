//! Raft, sans-IO: leader election with randomized timeouts, PreVote and
//! CheckQuorum; log replication with batching, pipelining and fast conflict
//! backtracking by term; the current-term commit rule; a no-op at the start of
//! each term; ReadIndex reads; a bound on uncommitted bytes.
//!
//! Structure follows etcd's `raft.go`: one state struct, [`Raft::step`]
//! handles terms and dispatches by role, and each `become_*` is the only place
//! a role changes.

mod config;
mod message;
#[cfg(test)]
mod tests;

pub use config::RaftConfig;
pub use message::{HardState, Message, Rejection};

use crate::consensus::log::{self, Log};
use crate::consensus::progress::{Progress, ReplicationState};
use crate::consensus::quorum::{self, VoteResult};
use crate::consensus::shell::{protocol_plumbing, Shell};
use crate::consensus::{Effects, Protocol, ProtocolKind, RoleChange};
use crate::error::ProposeError;
use crate::types::{Entry, EntryKind, Epoch, Index, NodeId, Role};
use bytes::Bytes;

pub use crate::consensus::MAX_VOTERS;

/// Effects of a Raft core.
pub type RaftEffects = Effects<Message, HardState>;

/// A Raft node's protocol state. Deterministic given its seed and inputs.
#[derive(Debug)]
pub struct Raft {
    shell: Shell<HardState>,
    cfg: RaftConfig,
    term: Epoch,
    vote: Option<NodeId>,
    role: Role,
    leader: Option<NodeId>,
    /// Votes received in the current (pre-)campaign: `Some(granted)` by voter position.
    votes: Vec<Option<bool>>,
    /// Follower: the highest match to acknowledge to the leader at flush.
    pending_ack: Option<(NodeId, Index)>,
}

/// A heartbeat of `term` as the shell sends it: `(commit, read_round)`.
fn heartbeat(term: Epoch) -> impl Fn(Index, u64) -> Message {
    move |commit, read_round| Message::Heartbeat {
        term,
        commit,
        read_round,
    }
}

impl Raft {
    /// Raft's log never goes back in term.
    const EPOCHS_ORDERED: bool = true;

    fn from_shell(shell: Shell<HardState>, hs: HardState, cfg: RaftConfig) -> Self {
        let voters = shell.voters.len();
        Raft {
            shell,
            cfg,
            term: hs.term,
            vote: hs.vote,
            role: Role::Follower,
            leader: None,
            votes: vec![None; voters],
            pending_ack: None,
        }
    }

    /// The term this node leads in, or `NotLeader` with the leader it knows.
    fn lead_epoch(&self) -> Result<Epoch, ProposeError> {
        match self.role {
            Role::Leader => Ok(self.term),
            _ => Err(ProposeError::NotLeader {
                leader: self.leader,
            }),
        }
    }

    fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.shell.log.commit(),
        }
    }

    /// The log (read-only), for tests and status.
    pub fn log(&self) -> &Log {
        &self.shell.log
    }

    /// Progress of `id` if this node leads.
    pub fn progress(&self, id: NodeId) -> Option<&Progress> {
        if self.role != Role::Leader {
            return None;
        }
        self.shell.pos(id).map(|p| &self.shell.repl.progress[p])
    }

    /// Vote cast in the current term.
    pub fn vote(&self) -> Option<NodeId> {
        self.vote
    }

    /// Every role change goes through here: a new term forgets the vote, a
    /// leader stepping down fails its reads (telling them of `leader`).
    fn reset(&mut self, term: Epoch, leader: Option<NodeId>, out: &mut RaftEffects) {
        if term != self.term {
            self.term = term;
            self.vote = None;
        }
        self.shell.stop_leading(leader, out);
        self.leader = leader;
        self.shell.reset_timers();
        self.votes.iter_mut().for_each(|v| *v = None);
        self.pending_ack = None;
    }

    fn become_follower(&mut self, term: Epoch, leader: Option<NodeId>, out: &mut RaftEffects) {
        self.reset(term, leader, out);
        self.role = Role::Follower;
    }

    fn become_pre_candidate(&mut self, out: &mut RaftEffects) {
        // Term and vote stay: a pre-campaign must not disturb anyone.
        self.reset(self.term, None, out);
        self.role = Role::PreCandidate;
    }

    fn become_candidate(&mut self, out: &mut RaftEffects) {
        self.reset(self.term + 1, None, out);
        self.role = Role::Candidate;
        self.vote = Some(self.shell.id);
    }

    fn become_leader(&mut self, out: &mut RaftEffects) {
        self.reset(self.term, Some(self.shell.id), out);
        self.role = Role::Leader;
        let last = self.shell.log.last_index();
        self.shell
            .repl
            .reset(self.shell.voters.len(), last + 1, last);
        // A no-op in the new term lets the leader commit what earlier terms
        // left behind (Raft §5.4.2) and makes ReadIndex usable.
        self.shell
            .append_local(self.term, EntryKind::Noop, Bytes::new(), out);
        self.maybe_commit();
    }

    /// Starts a (pre-)campaign: votes for itself and asks everyone else.
    fn campaign(&mut self, pre: bool, out: &mut RaftEffects) {
        if pre {
            self.become_pre_candidate(out);
        } else {
            self.become_candidate(out);
        }
        self.votes[self.shell.self_pos] = Some(true);
        if self.tally() == VoteResult::Won {
            // Single voter: no one to ask.
            self.become_leader(out);
            return;
        }
        let (last_index, last_term) = (self.shell.log.last_index(), self.shell.log.last_term());
        let msg = if pre {
            Message::PreVote {
                term: self.term + 1,
                last_index,
                last_term,
            }
        } else {
            Message::Vote {
                term: self.term,
                last_index,
                last_term,
            }
        };
        self.shell.broadcast(msg, out);
    }

    fn tally(&self) -> VoteResult {
        let granted = self.votes.iter().filter(|v| **v == Some(true)).count();
        let rejected = self.votes.iter().filter(|v| **v == Some(false)).count();
        quorum::vote_result(granted, rejected, self.shell.voters.len())
    }

    fn in_lease(&self) -> bool {
        self.cfg.check_quorum
            && self.leader.is_some()
            && self.shell.elapsed < self.shell.timing.election_ticks_min
    }

    /// Handles one message. Messages from non-voters are ignored.
    pub fn step(&mut self, from: NodeId, msg: Message, out: &mut RaftEffects) {
        if from == self.shell.id || self.shell.pos(from).is_none() {
            return;
        }
        if !self.step_term(from, &msg, out) {
            return;
        }
        match msg {
            Message::PreVote {
                term,
                last_index,
                last_term,
            } => {
                let can_vote = self.vote == Some(from)
                    || (self.vote.is_none() && self.leader.is_none())
                    || term > self.term;
                let granted = can_vote && self.shell.log.is_up_to_date(last_index, last_term);
                let term = if granted { term } else { self.term };
                out.send(from, Message::PreVoteResponse { term, granted });
            }
            Message::Vote {
                last_index,
                last_term,
                ..
            } => {
                let can_vote =
                    self.vote == Some(from) || (self.vote.is_none() && self.leader.is_none());
                let granted = can_vote && self.shell.log.is_up_to_date(last_index, last_term);
                if granted {
                    self.vote = Some(from);
                    self.shell.elapsed = 0;
                }
                let term = self.term;
                out.send(from, Message::VoteResponse { term, granted });
            }
            Message::PreVoteResponse { granted, .. } if self.role == Role::PreCandidate => {
                self.record_vote(from, granted, out)
            }
            Message::VoteResponse { granted, .. } if self.role == Role::Candidate => {
                self.record_vote(from, granted, out)
            }
            Message::Append {
                prev_index,
                prev_term,
                entries,
                commit,
                ..
            } => {
                self.heard_leader(from, out);
                self.handle_append(from, prev_index, prev_term, entries, commit, out);
            }
            Message::Heartbeat {
                commit, read_round, ..
            } => {
                self.heard_leader(from, out);
                self.shell.log.commit_to(commit);
                let term = self.term;
                out.send(from, Message::HeartbeatResponse { term, read_round });
            }
            Message::AppendResponse { result, .. } if self.role == Role::Leader => {
                self.handle_append_response(from, result)
            }
            Message::HeartbeatResponse { read_round, .. } if self.role == Role::Leader => {
                if let Some(p) = self.shell.pos(from) {
                    self.shell.on_heartbeat_ack(p, read_round, out);
                }
            }
            Message::InstallSnapshot { chunk, .. } => {
                self.heard_leader(from, out);
                let ack = self.shell.receive_chunk(chunk, out);
                let term = self.term;
                out.send(from, Message::SnapshotResponse { term, ack });
            }
            Message::SnapshotResponse { ack, .. } if self.role == Role::Leader => {
                if let Some(p) = self.shell.pos(from) {
                    self.shell.on_snapshot_ack(p, ack);
                    self.maybe_commit();
                }
            }
            _ => {}
        }
    }

    /// The term rules before a message is handled: a higher term makes this
    /// node follow (unless a leader's lease protects it from a disruptive
    /// candidate); a lower one is answered so its sender learns the term.
    /// Returns false when the message needs nothing more.
    fn step_term(&mut self, from: NodeId, msg: &Message, out: &mut RaftEffects) -> bool {
        let m_term = msg.term();
        if m_term > self.term {
            match msg {
                // We hear from a leader: a disruptive candidate is ignored.
                Message::PreVote { .. } | Message::Vote { .. } if self.in_lease() => return false,
                Message::PreVote { .. } | Message::PreVoteResponse { granted: true, .. } => {}
                Message::Append { .. }
                | Message::Heartbeat { .. }
                | Message::InstallSnapshot { .. } => self.become_follower(m_term, Some(from), out),
                _ => {
                    // Raft's Figure 2: only hearing the leader or granting a
                    // vote restarts the election timer. A server that turns
                    // down a candidate whose log is behind keeps counting, so
                    // a disruptive server with a fast clock (and no PreVote)
                    // cannot hold every election off. etcd restarts it here.
                    // (A leader's count is its CheckQuorum round: it starts
                    // afresh.)
                    let kept = (self.role != Role::Leader)
                        .then_some((self.shell.elapsed, self.shell.timeout));
                    self.become_follower(m_term, None, out);
                    if let Some((elapsed, timeout)) = kept {
                        self.shell.elapsed = elapsed;
                        self.shell.timeout = timeout;
                    }
                }
            }
            return true;
        }
        if m_term < self.term {
            let term = self.term;
            match msg {
                // Tell a stale leader about the newer term so it steps down.
                Message::Append { .. }
                | Message::Heartbeat { .. }
                | Message::InstallSnapshot { .. } => out.send(
                    from,
                    Message::HeartbeatResponse {
                        term,
                        read_round: 0,
                    },
                ),
                Message::PreVote { .. } => out.send(
                    from,
                    Message::PreVoteResponse {
                        term,
                        granted: false,
                    },
                ),
                _ => {}
            }
            return false;
        }
        true
    }

    /// A message from the leader of the current term.
    fn heard_leader(&mut self, from: NodeId, out: &mut RaftEffects) {
        if self.role != Role::Follower {
            self.become_follower(self.term, Some(from), out);
        }
        self.leader = Some(from);
        self.shell.elapsed = 0;
    }

    fn record_vote(&mut self, from: NodeId, granted: bool, out: &mut RaftEffects) {
        let Some(p) = self.shell.pos(from) else {
            return;
        };
        if self.votes[p].is_none() {
            self.votes[p] = Some(granted);
        }
        match self.tally() {
            VoteResult::Won if self.role == Role::PreCandidate => self.campaign(false, out),
            VoteResult::Won => self.become_leader(out),
            VoteResult::Lost => self.become_follower(self.term, None, out),
            VoteResult::Pending => {}
        }
    }

    /// Why an append at `prev_index` does not fit, with the hint that lets
    /// the leader skip a whole conflicting term at once.
    fn rejection(&self, prev_index: Index, found: Option<Epoch>) -> Rejection {
        let log = &self.shell.log;
        Rejection {
            rejected: prev_index,
            conflict_term: found,
            hint_index: match found {
                None => log.last_index() + 1,
                Some(_) => log.first_index_of_term_at(prev_index).max(log.commit() + 1),
            },
        }
    }

    fn handle_append(
        &mut self,
        from: NodeId,
        prev_index: Index,
        prev_term: Epoch,
        entries: Vec<Entry>,
        leader_commit: Index,
        out: &mut RaftEffects,
    ) {
        let (mut prev_index, mut prev_term, mut entries) = (prev_index, prev_term, entries);
        let base = self.shell.log.snapshot_index();
        if prev_index < base {
            // The snapshot covers the start of the batch: committed here,
            // so the leader's log holds the same entries; skip them.
            let skip = (base - prev_index) as usize;
            if entries.len() < skip {
                let ack = match self.pending_ack {
                    Some((to, m)) if to == from => m.max(base),
                    _ => base,
                };
                self.pending_ack = Some((from, ack));
                return;
            }
            prev_term = entries
                .drain(..skip)
                .next_back()
                .map_or(prev_term, |e| e.epoch);
            prev_index = base;
        }
        let found = self.shell.log.term(prev_index);
        if found != Some(prev_term) {
            let reply = Message::AppendResponse {
                term: self.term,
                result: Err(self.rejection(prev_index, found)),
            };
            out.send(from, reply);
            return;
        }
        if !log::consecutive(&entries, prev_index + 1) {
            ::log::warn!(
                "node {}: ignoring an append whose entries do not follow {prev_index}",
                self.shell.id
            );
            return;
        }
        let last_new = prev_index + entries.len() as Index;
        for entry in entries {
            match self.shell.log.term(entry.index) {
                Some(t) if t == entry.epoch => continue,
                // Refused when it would overwrite a committed entry: only a
                // broken leader sends that. Refuse the rest too.
                Some(_) if !self.shell.truncate(entry.index, out) => return,
                _ => {}
            }
            self.shell.write(entry, out);
        }
        self.shell.log.commit_to(leader_commit.min(last_new));
        let ack = match self.pending_ack {
            Some((to, m)) if to == from => m.max(last_new),
            _ => last_new,
        };
        self.pending_ack = Some((from, ack));
    }

    fn handle_append_response(&mut self, from: NodeId, result: Result<Index, Rejection>) {
        let Some(p) = self.shell.pos(from) else {
            return;
        };
        let rej = match result {
            Ok(matched) => {
                if self.shell.on_append_ack(p, matched) {
                    self.maybe_commit();
                }
                return;
            }
            Err(rej) => rej,
        };
        let pr = self.shell.heard_from(p);
        let stale = match pr.state {
            ReplicationState::Replicate => rej.rejected <= pr.matched,
            ReplicationState::Probe => rej.rejected + 1 != pr.next,
            // A late answer to an append sent before the snapshot.
            ReplicationState::Snapshot => true,
        };
        if stale {
            return;
        }
        let next = rej
            .conflict_term
            .and_then(|term| self.shell.log.last_index_of_term(term, rej.rejected))
            .map_or(rej.hint_index, |i| i + 1);
        self.shell.repl.progress[p].probe_from(next.min(rej.rejected));
    }

    fn maybe_commit(&mut self) {
        let candidate = self.shell.repl.quorum_index();
        // Figure 8: only entries of the current term commit by counting.
        if self.shell.log.term(candidate) == Some(self.term) {
            self.shell.commit_quorum();
        }
    }

    fn committed_in_current_term(&self) -> bool {
        self.shell.log.term(self.shell.log.commit()) == Some(self.term)
    }

    fn flush_leader(&mut self, out: &mut RaftEffects) {
        let term = self.term;
        self.shell.send_batches(
            out,
            |_| true,
            |log, first, entries, commit| {
                let prev_index = first - 1;
                Some(Message::Append {
                    term,
                    prev_index,
                    prev_term: log.term(prev_index)?,
                    entries,
                    commit,
                })
            },
            |chunk| Message::InstallSnapshot { term, chunk },
        );
        let ready = self.committed_in_current_term();
        self.shell.start_reads(ready, out, heartbeat(term));
    }
}

impl Protocol for Raft {
    protocol_plumbing!(ProtocolKind::Raft, RaftConfig);

    fn vote(&self) -> Option<NodeId> {
        self.vote
    }

    fn may_send_before_sync(msg: &Message) -> bool {
        matches!(
            msg,
            Message::Append { .. } | Message::Heartbeat { .. } | Message::InstallSnapshot { .. }
        )
    }

    fn tick(&mut self, out: &mut RaftEffects) {
        if self.role != Role::Leader {
            if self.shell.tick_election() {
                let pre = self.cfg.pre_vote && !self.shell.is_single();
                self.campaign(pre, out);
            }
        } else if self
            .shell
            .tick_leader(self.cfg.check_quorum, out, heartbeat(self.term))
        {
            self.become_follower(self.term, None, out);
        }
    }

    fn step(&mut self, from: NodeId, msg: Message, out: &mut RaftEffects) {
        Raft::step(self, from, msg, out);
    }

    fn flush(&mut self, out: &mut RaftEffects) {
        if self.role == Role::Leader {
            self.flush_leader(out);
        } else if let Some((to, matched)) = self.pending_ack.take() {
            let term = self.term;
            out.send(
                to,
                Message::AppendResponse {
                    term,
                    result: Ok(matched),
                },
            );
        }
        let now = RoleChange {
            role: self.role,
            epoch: self.term,
            leader: self.leader,
        };
        self.shell.finish_flush(self.hard_state(), now, out);
    }

    fn role(&self) -> Role {
        self.role
    }
    fn epoch(&self) -> Epoch {
        self.term
    }
    fn leader(&self) -> Option<NodeId> {
        self.leader
    }
}
