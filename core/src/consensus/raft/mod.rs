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

use crate::consensus::log::Log;
use crate::consensus::progress::{Progress, ReplicationState};
use crate::consensus::replication::Replication;

use crate::consensus::quorum::{self, VoteResult};
use crate::consensus::read_index::ReadQueue;
use crate::consensus::{
    Effects, Protocol, ProtocolKind, ReadFailed, ReadId, ReadReady, Recovered, RoleChange,
};
use crate::error::{ConfigError, ProposeError};
use crate::rng::Rng;
use crate::types::{Entry, EntryKind, Epoch, Index, NodeId, Role};
use bytes::Bytes;

/// Effects of a Raft core.
pub type RaftEffects = Effects<Message, HardState>;

/// Most voters a cluster may have (acks are tracked in a 64-bit set).
pub const MAX_VOTERS: usize = 64;

/// A Raft node's protocol state. Deterministic given its seed and inputs.
#[derive(Debug)]
pub struct Raft {
    id: NodeId,
    voters: Vec<NodeId>,
    self_pos: usize,
    cfg: RaftConfig,
    term: Epoch,
    vote: Option<NodeId>,
    log: Log,
    role: Role,
    leader: Option<NodeId>,
    election_elapsed: u32,
    heartbeat_elapsed: u32,
    randomized_timeout: u32,
    rng: Rng,
    /// Votes received in the current (pre-)campaign: `Some(granted)` by voter position.
    votes: Vec<Option<bool>>,
    /// Leader only: progress by voter position and the uncommitted budget.
    repl: Replication,
    reads: ReadQueue,
    /// Follower: the highest match to acknowledge to the leader at flush.
    pending_ack: Option<(NodeId, Index)>,
    /// Entries up to here were handed out in `Effects::committed`.
    emitted_commit: Index,
    persisted_hard_state: HardState,
    reported: Option<RoleChange>,
}

impl Raft {
    fn pos(&self, id: NodeId) -> Option<usize> {
        self.voters.iter().position(|&v| v == id)
    }

    fn is_single(&self) -> bool {
        self.voters.len() == 1
    }

    fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.commit(),
        }
    }

    /// The log (read-only), for tests and status.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Progress of `id` if this node leads.
    pub fn progress(&self, id: NodeId) -> Option<&Progress> {
        if self.role != Role::Leader {
            return None;
        }
        self.pos(id).map(|p| &self.repl.progress[p])
    }

    /// Vote cast in the current term.
    pub fn vote(&self) -> Option<NodeId> {
        self.vote
    }

    fn send(&self, to: NodeId, msg: Message, out: &mut RaftEffects) {
        out.messages.push((to, msg));
    }

    fn reset(&mut self, term: Epoch, out: &mut RaftEffects) {
        if term != self.term {
            self.term = term;
            self.vote = None;
        }
        if self.role == Role::Leader {
            self.reads.fail_all(|id| {
                out.reads_failed.push(ReadFailed { id, leader: None });
            });
        }
        self.leader = None;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.randomized_timeout = self.rng.range_inclusive(
            self.cfg.election_ticks_min as u64,
            self.cfg.election_ticks_max as u64 - 1,
        ) as u32;
        self.votes.iter_mut().for_each(|v| *v = None);
        self.pending_ack = None;
        self.repl.clear_budget();
    }

    fn become_follower(&mut self, term: Epoch, leader: Option<NodeId>, out: &mut RaftEffects) {
        self.reset(term, out);
        self.role = Role::Follower;
        self.leader = leader;
    }

    fn become_pre_candidate(&mut self, out: &mut RaftEffects) {
        // Term and vote stay: a pre-campaign must not disturb anyone.
        let term = self.term;
        self.reset(term, out);
        self.role = Role::PreCandidate;
    }

    fn become_candidate(&mut self, out: &mut RaftEffects) {
        let term = self.term + 1;
        self.reset(term, out);
        self.role = Role::Candidate;
        self.vote = Some(self.id);
    }

    fn become_leader(&mut self, out: &mut RaftEffects) {
        let term = self.term;
        self.reset(term, out);
        self.role = Role::Leader;
        self.leader = Some(self.id);
        let last = self.log.last_index();
        self.repl.reset(self.voters.len(), last + 1, last);
        // A no-op in the new term lets the leader commit what earlier terms
        // left behind (Raft §5.4.2) and makes ReadIndex usable.
        self.append_local(EntryKind::Noop, Bytes::new(), out);
        self.maybe_commit();
    }

    fn append_local(&mut self, kind: EntryKind, data: Bytes, out: &mut RaftEffects) -> Index {
        let entry = Entry::new(self.term, self.log.last_index() + 1, kind, data);
        let (index, size) = (entry.index, entry.size());
        out.append.push(entry.clone());
        self.log.push(entry);
        self.repl.appended(index, size);
        index
    }

    fn campaign(&mut self, out: &mut RaftEffects) {
        let pre = self.cfg.pre_vote && !self.is_single();
        if pre {
            self.become_pre_candidate(out);
        } else {
            self.become_candidate(out);
        }
        self.votes[self.self_pos] = Some(true);
        if self.tally() == VoteResult::Won {
            // Single voter: no one to ask.
            self.become_leader(out);
            return;
        }
        let (term, last_index, last_term) = (
            if pre { self.term + 1 } else { self.term },
            self.log.last_index(),
            self.log.last_term(),
        );
        for i in 0..self.voters.len() {
            if i == self.self_pos {
                continue;
            }
            let msg = if pre {
                Message::PreVote {
                    term,
                    last_index,
                    last_term,
                }
            } else {
                Message::Vote {
                    term,
                    last_index,
                    last_term,
                }
            };
            self.send(self.voters[i], msg, out);
        }
    }

    fn tally(&self) -> VoteResult {
        let granted = self.votes.iter().filter(|v| **v == Some(true)).count();
        let rejected = self.votes.iter().filter(|v| **v == Some(false)).count();
        quorum::vote_result(granted, rejected, self.voters.len())
    }

    fn in_lease(&self) -> bool {
        self.cfg.check_quorum
            && self.leader.is_some()
            && self.election_elapsed < self.cfg.election_ticks_min
    }

    /// Handles one message. Messages from non-voters are ignored.
    pub fn step(&mut self, from: NodeId, msg: Message, out: &mut RaftEffects) {
        if from == self.id || self.pos(from).is_none() {
            return;
        }
        let m_term = msg.term();
        if m_term > self.term {
            match &msg {
                Message::PreVote { .. } | Message::Vote { .. } if self.in_lease() => {
                    // We hear from a leader: a disruptive candidate is ignored.
                    return;
                }
                Message::PreVote { .. } => {}
                Message::PreVoteResponse { granted: true, .. } => {}
                Message::Append { .. } | Message::Heartbeat { .. } => {
                    self.become_follower(m_term, Some(from), out)
                }
                _ => self.become_follower(m_term, None, out),
            }
        } else if m_term < self.term {
            match msg {
                Message::Append { .. } | Message::Heartbeat { .. } => {
                    // Tell a stale leader about the newer term so it steps down.
                    let reply = Message::HeartbeatResponse {
                        term: self.term,
                        read_round: 0,
                    };
                    self.send(from, reply, out);
                }
                Message::PreVote { .. } => {
                    let reply = Message::PreVoteResponse {
                        term: self.term,
                        granted: false,
                    };
                    self.send(from, reply, out);
                }
                _ => {}
            }
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
                let grant = can_vote && self.log.is_up_to_date(last_index, last_term);
                let reply_term = if grant { term } else { self.term };
                self.send(
                    from,
                    Message::PreVoteResponse {
                        term: reply_term,
                        granted: grant,
                    },
                    out,
                );
            }
            Message::Vote {
                last_index,
                last_term,
                ..
            } => {
                let can_vote =
                    self.vote == Some(from) || (self.vote.is_none() && self.leader.is_none());
                let grant = can_vote && self.log.is_up_to_date(last_index, last_term);
                if grant {
                    self.vote = Some(from);
                    self.election_elapsed = 0;
                }
                self.send(
                    from,
                    Message::VoteResponse {
                        term: self.term,
                        granted: grant,
                    },
                    out,
                );
            }
            Message::PreVoteResponse { granted, .. } => {
                if self.role == Role::PreCandidate {
                    self.record_vote(from, granted, out);
                }
            }
            Message::VoteResponse { granted, .. } => {
                if self.role == Role::Candidate {
                    self.record_vote(from, granted, out);
                }
            }
            Message::Append {
                prev_index,
                prev_term,
                entries,
                commit,
                ..
            } => {
                if self.role != Role::Follower {
                    self.become_follower(m_term, Some(from), out);
                }
                self.leader = Some(from);
                self.election_elapsed = 0;
                self.handle_append(from, prev_index, prev_term, entries, commit, out);
            }
            Message::Heartbeat {
                commit, read_round, ..
            } => {
                if self.role != Role::Follower {
                    self.become_follower(m_term, Some(from), out);
                }
                self.leader = Some(from);
                self.election_elapsed = 0;
                self.log.commit_to(commit);
                let reply = Message::HeartbeatResponse {
                    term: self.term,
                    read_round,
                };
                self.send(from, reply, out);
            }
            Message::AppendResponse { result, .. } => {
                if self.role == Role::Leader {
                    self.handle_append_response(from, result);
                }
            }
            Message::HeartbeatResponse { read_round, .. } => {
                if self.role == Role::Leader {
                    self.handle_heartbeat_response(from, read_round, out);
                }
            }
        }
    }

    fn record_vote(&mut self, from: NodeId, granted: bool, out: &mut RaftEffects) {
        let Some(p) = self.pos(from) else { return };
        if self.votes[p].is_none() {
            self.votes[p] = Some(granted);
        }
        match self.tally() {
            VoteResult::Won if self.role == Role::PreCandidate => self.campaign_for_real(out),
            VoteResult::Won => self.become_leader(out),
            VoteResult::Lost => {
                let term = self.term;
                self.become_follower(term, None, out);
            }
            VoteResult::Pending => {}
        }
    }

    fn campaign_for_real(&mut self, out: &mut RaftEffects) {
        self.become_candidate(out);
        self.votes[self.self_pos] = Some(true);
        let (term, last_index, last_term) =
            (self.term, self.log.last_index(), self.log.last_term());
        for i in 0..self.voters.len() {
            if i != self.self_pos {
                let to = self.voters[i];
                self.send(
                    to,
                    Message::Vote {
                        term,
                        last_index,
                        last_term,
                    },
                    out,
                );
            }
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
        match self.log.term(prev_index) {
            Some(t) if t == prev_term => {}
            found => {
                let rejection = match found {
                    None => Rejection {
                        rejected: prev_index,
                        conflict_term: None,
                        hint_index: self.log.last_index() + 1,
                    },
                    Some(t) => Rejection {
                        rejected: prev_index,
                        conflict_term: Some(t),
                        hint_index: self
                            .log
                            .first_index_of_term_at(prev_index)
                            .max(self.log.commit() + 1),
                    },
                };
                let reply = Message::AppendResponse {
                    term: self.term,
                    result: Err(rejection),
                };
                self.send(from, reply, out);
                return;
            }
        }
        let consecutive = entries
            .iter()
            .enumerate()
            .all(|(i, e)| prev_index.checked_add(1 + i as Index) == Some(e.index));
        if !consecutive {
            ::log::warn!(
                "node {}: ignoring an append whose entries do not follow {prev_index}",
                self.id
            );
            return;
        }
        let last_new = prev_index + entries.len() as Index;
        for entry in entries {
            match self.log.term(entry.index) {
                Some(t) if t == entry.epoch => continue,
                Some(_) => {
                    if !self.log.truncate(entry.index) {
                        // Would overwrite a committed entry: only a broken
                        // leader sends this. Refuse the rest of the message.
                        ::log::error!(
                            "node {}: refusing to overwrite committed entry {}",
                            self.id,
                            entry.index
                        );
                        return;
                    }
                    out.truncate(entry.index);
                }
                None => {}
            }
            out.append.push(entry.clone());
            self.log.push(entry);
        }
        self.log.commit_to(leader_commit.min(last_new));
        let ack = match self.pending_ack {
            Some((to, m)) if to == from => m.max(last_new),
            _ => last_new,
        };
        self.pending_ack = Some((from, ack));
    }

    fn handle_append_response(&mut self, from: NodeId, result: Result<Index, Rejection>) {
        let Some(p) = self.pos(from) else { return };
        let last_index = self.log.last_index();
        let pr = &mut self.repl.progress[p];
        pr.recent_active = true;
        match result {
            Ok(matched) => {
                let matched = matched.min(last_index);
                let moved = pr.acknowledge(matched);
                if pr.state == ReplicationState::Probe {
                    pr.start_replicating();
                }
                if moved {
                    self.maybe_commit();
                }
            }
            Err(rej) => {
                let stale = match pr.state {
                    ReplicationState::Replicate => rej.rejected <= pr.matched,
                    ReplicationState::Probe => rej.rejected + 1 != pr.next,
                };
                if stale {
                    return;
                }
                let next = match rej.conflict_term {
                    None => rej.hint_index,
                    Some(term) => match self.log.last_index_of_term(term, rej.rejected) {
                        Some(i) => i + 1,
                        None => rej.hint_index,
                    },
                };
                let pr = &mut self.repl.progress[p];
                pr.probe_from(next.min(rej.rejected));
            }
        }
    }

    fn handle_heartbeat_response(&mut self, from: NodeId, read_round: u64, out: &mut RaftEffects) {
        let Some(p) = self.pos(from) else { return };
        let last_index = self.log.last_index();
        let pr = &mut self.repl.progress[p];
        pr.recent_active = true;
        match pr.state {
            ReplicationState::Probe => pr.paused = false,
            // An empty append at the last sent index finds out whether
            // pipelined messages were lost (the follower then rejects it).
            ReplicationState::Replicate => pr.check_needed = pr.matched < last_index,
        }
        if read_round > 0 {
            let n = self.voters.len();
            self.reads.acknowledge(p, read_round, n, |id, index| {
                out.reads_ready.push(ReadReady { id, index });
            });
        }
    }

    fn maybe_commit(&mut self) {
        let candidate = self.repl.quorum_index();
        // Figure 8: only entries of the current term commit by counting.
        if self.log.term(candidate) == Some(self.term) {
            self.repl.commit(&mut self.log, candidate);
        }
    }

    fn committed_in_current_term(&self) -> bool {
        self.log.term(self.log.commit()) == Some(self.term)
    }

    fn send_appends(&mut self, out: &mut RaftEffects) {
        let commit = self.log.commit();
        let limits = self.cfg.limits;
        for p in 0..self.voters.len() {
            if p == self.self_pos {
                continue;
            }
            let to = self.voters[p];
            let mut sent_any = false;
            while let Some(batch) = self.repl.next_batch(p, &self.log, &limits) {
                sent_any = true;
                let prev_index = batch.first - 1;
                let Some(prev_term) = self.log.term(prev_index) else {
                    break;
                };
                let msg = Message::Append {
                    term: self.term,
                    prev_index,
                    prev_term,
                    entries: batch.entries,
                    commit,
                };
                self.send(to, msg, out);
            }
            let check = self.repl.take_check(p).filter(|_| !sent_any);
            if let Some(next) = check {
                // An empty append at the last sent index: a rejection shows
                // pipelined messages were lost.
                let prev_index = next - 1;
                if let Some(prev_term) = self.log.term(prev_index) {
                    let msg = Message::Append {
                        term: self.term,
                        prev_index,
                        prev_term,
                        entries: Vec::new(),
                        commit: commit.min(prev_index),
                    };
                    self.send(to, msg, out);
                }
            }
        }
    }

    fn broadcast_heartbeat(&mut self, read_round: u64, out: &mut RaftEffects) {
        for p in 0..self.voters.len() {
            if p == self.self_pos {
                continue;
            }
            let commit = self.log.commit().min(self.repl.progress[p].matched);
            let msg = Message::Heartbeat {
                term: self.term,
                commit,
                read_round,
            };
            self.send(self.voters[p], msg, out);
        }
    }

    fn tick_leader(&mut self, out: &mut RaftEffects) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.election_elapsed >= self.cfg.election_ticks_min {
            self.election_elapsed = 0;
            if self.cfg.check_quorum && !self.repl.quorum_active() {
                let term = self.term;
                self.become_follower(term, None, out);
                return;
            }
        }
        if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            let round = self.reads.current_round();
            self.broadcast_heartbeat(round, out);
        }
    }

    fn emit_committed(&mut self, out: &mut RaftEffects) {
        self.log
            .take_committed(&mut self.emitted_commit, &mut out.committed);
    }
}

impl Protocol for Raft {
    type Message = Message;
    type HardState = HardState;
    type Config = RaftConfig;
    const KIND: ProtocolKind = ProtocolKind::Raft;

    fn new(
        id: NodeId,
        voters: &[NodeId],
        config: RaftConfig,
        recovered: Recovered<HardState>,
        seed: u64,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let self_pos = crate::consensus::validate_membership(id, voters, MAX_VOTERS)?;
        let hs = recovered.hard_state.unwrap_or_default();
        Log::check_epochs_ordered(&recovered.entries)
            .map_err(|e| ConfigError::new("recovered", e))?;
        let log = Log::from_entries(recovered.entries, hs.commit)
            .map_err(|e| ConfigError::new("recovered", e))?;
        let mut raft = Raft {
            id,
            voters: voters.to_vec(),
            self_pos,
            term: hs.term,
            vote: hs.vote,
            log,
            role: Role::Follower,
            leader: None,
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_timeout: config.election_ticks_min,
            rng: Rng::new(seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            votes: vec![None; voters.len()],
            repl: Replication::new(self_pos),
            reads: ReadQueue::default(),
            pending_ack: None,
            emitted_commit: 0,
            persisted_hard_state: hs.clone(),
            reported: None,
            cfg: config,
        };
        let mut ignored = RaftEffects::default();
        let term = raft.term;
        raft.become_follower(term, None, &mut ignored);
        Ok(raft)
    }

    fn tick(&mut self, out: &mut RaftEffects) {
        if self.role == Role::Leader {
            self.tick_leader(out);
            return;
        }
        self.election_elapsed += 1;
        if self.election_elapsed >= self.randomized_timeout {
            self.campaign(out);
        }
    }

    fn step(&mut self, from: NodeId, msg: Message, out: &mut RaftEffects) {
        Raft::step(self, from, msg, out);
    }

    fn propose(
        &mut self,
        data: Bytes,
        out: &mut RaftEffects,
    ) -> Result<(Epoch, Index), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader,
            });
        }
        self.repl.admit(
            data.len() + Entry::OVERHEAD,
            self.cfg.limits.max_uncommitted_bytes,
        )?;
        let index = self.append_local(EntryKind::Normal, data, out);
        if self.is_single() {
            self.maybe_commit();
        }
        Ok((self.term, index))
    }

    fn read(&mut self, id: ReadId, out: &mut RaftEffects) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader,
            });
        }
        let _ = out;
        self.reads.push(id);
        Ok(())
    }

    fn flush(&mut self, out: &mut RaftEffects) {
        if self.role == Role::Leader {
            self.send_appends(out);
            self.emit_committed(out);
            if self.reads.has_waiting() && self.committed_in_current_term() {
                let round = self.reads.start_round(self.log.commit(), self.self_pos);
                if self.is_single() {
                    self.reads
                        .acknowledge(self.self_pos, round, 1, |id, index| {
                            out.reads_ready.push(ReadReady { id, index });
                        });
                } else {
                    self.broadcast_heartbeat(round, out);
                }
            }
        } else {
            if let Some((to, matched)) = self.pending_ack.take() {
                let reply = Message::AppendResponse {
                    term: self.term,
                    result: Ok(matched),
                };
                self.send(to, reply, out);
            }
            self.emit_committed(out);
        }
        let hs = self.hard_state();
        if hs != self.persisted_hard_state {
            out.hard_state = Some(hs.clone());
            self.persisted_hard_state = hs;
        }
        let now = RoleChange {
            role: self.role,
            epoch: self.term,
            leader: self.leader,
        };
        if self.reported != Some(now) {
            out.role_change = Some(now);
            self.reported = Some(now);
        }
    }

    fn id(&self) -> NodeId {
        self.id
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
    fn commit_index(&self) -> Index {
        self.log.commit()
    }
    fn last_index(&self) -> Index {
        self.log.last_index()
    }
    fn voters(&self) -> &[NodeId] {
        &self.voters
    }
}
