//! Multi-Paxos, sans-IO: a stable distinguished proposer runs Phase 1
//! (prepare/promise) once per leadership for every open slot, then Phase 2
//! (accept/accepted) per slot, batched and pipelined. Leadership passes by
//! ballot preemption with randomized back-off and is kept by heartbeats; a
//! new leader re-proposes the highest accepted value of every open slot under
//! its own ballot and fills gaps with no-ops. Chosen slots reach every
//! replica with the commit point, and lagging acceptors are caught up from
//! their chosen prefix. Acceptors persist their promise and every accepted
//! value before they answer. Reads are linearizable through a quorum
//! confirmation round (like Raft's ReadIndex).
//!
//! Acceptors accept a batch only when it starts at or before their first
//! empty slot, so an acceptor's accepted values stay contiguous and persist
//! through the same append/truncate log as Raft's. Overwriting one slot
//! keeps the acceptor's later slots (it truncates and re-appends them): an
//! acceptor never forgets a value it accepted except by accepting another in
//! a higher ballot.

mod config;
mod message;
#[cfg(test)]
mod tests;

pub use config::PaxosConfig;
pub use message::{ballot, round_of, Acked, Ballot, HardState, Message, Promised, Refusal};

use crate::consensus::log::Log;
use crate::consensus::progress::ReplicationState;
use crate::consensus::quorum;
use crate::consensus::read_index::ReadQueue;
use crate::consensus::replication::Replication;
use crate::consensus::{
    Effects, Protocol, ProtocolKind, ReadFailed, ReadId, ReadReady, Recovered, RoleChange,
};
use crate::error::{ConfigError, ProposeError};
use crate::rng::Rng;
use crate::types::{Entry, EntryKind, Epoch, Index, NodeId, Role};
use bytes::Bytes;

/// Effects of a Multi-Paxos core.
pub type PaxosEffects = Effects<Message, HardState>;

/// Most voters (ballots carry the proposer's position in 8 bits, and acks
/// are tracked in a 64-bit set).
pub const MAX_VOTERS: usize = 64;

/// A Multi-Paxos replica: proposer, acceptor and learner in one.
#[derive(Debug)]
pub struct MultiPaxos {
    id: NodeId,
    voters: Vec<NodeId>,
    self_pos: usize,
    cfg: PaxosConfig,
    promised: Ballot,
    /// Accepted values; `log.commit()` is the chosen prefix.
    log: Log,
    role: Role,
    leader: Option<NodeId>,
    /// The ballot this node campaigns or leads with.
    my_ballot: Ballot,
    /// The no-op that opened this leadership.
    noop_index: Index,
    max_round_seen: u64,
    election_elapsed: u32,
    heartbeat_elapsed: u32,
    randomized_timeout: u32,
    rng: Rng,
    /// Phase 1 answers by voter position (own position: `Some` with no entries).
    promises: Vec<Option<Promised>>,
    /// Leader only: progress by voter position and the unchosen budget.
    repl: Replication,
    reads: ReadQueue,
    /// Acceptor: highest slot known to hold a chosen value or one accepted
    /// in `match_ballot`, contiguous from the chosen prefix.
    match_ballot: Ballot,
    matched: Index,
    /// Acceptor: the answer to send at flush (coalesced).
    pending_ack: Option<(NodeId, Ballot, Acked)>,
    emitted_commit: Index,
    persisted: HardState,
    reported: Option<RoleChange>,
}

impl MultiPaxos {
    fn pos(&self, id: NodeId) -> Option<usize> {
        self.voters.iter().position(|&v| v == id)
    }

    /// The accepted values (read-only), for tests and inspection.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// The highest ballot this node promised.
    pub fn promised(&self) -> Ballot {
        self.promised
    }

    fn send(&self, to: NodeId, msg: Message, out: &mut PaxosEffects) {
        out.messages.push((to, msg));
    }

    fn observe(&mut self, b: Ballot) {
        self.max_round_seen = self.max_round_seen.max(round_of(b));
    }

    fn promise(&mut self, b: Ballot) {
        if b > self.promised {
            self.promised = b;
            self.observe(b);
        }
    }

    fn reset_timers(&mut self) {
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.randomized_timeout = self.rng.range_inclusive(
            self.cfg.election_ticks_min as u64,
            self.cfg.election_ticks_max as u64 - 1,
        ) as u32;
    }

    fn become_follower(&mut self, leader: Option<NodeId>, out: &mut PaxosEffects) {
        if self.role == Role::Leader {
            self.reads
                .fail_all(|id| out.reads_failed.push(ReadFailed { id, leader }));
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.promises.iter_mut().for_each(|p| *p = None);
        self.repl.clear_budget();
        self.reset_timers();
    }

    fn campaign(&mut self, out: &mut PaxosEffects) {
        if self.role == Role::Leader {
            return;
        }
        let round = self.max_round_seen.max(round_of(self.promised)) + 1;
        let b = ballot(round, self.self_pos);
        self.become_follower(None, out);
        self.role = Role::Candidate;
        self.my_ballot = b;
        self.promise(b);
        self.promises[self.self_pos] = Some(Promised {
            commit: self.log.commit(),
            entries: Vec::new(),
        });
        if quorum::has_majority(1, self.voters.len()) {
            self.become_leader(out);
            return;
        }
        let from = self.log.commit() + 1;
        for i in 0..self.voters.len() {
            if i != self.self_pos {
                self.send(self.voters[i], Message::Prepare { ballot: b, from }, out);
            }
        }
    }

    /// Phase 1 done: build the log this leadership starts from.
    fn become_leader(&mut self, out: &mut PaxosEffects) {
        let b = self.my_ballot;
        let own_commit = self.log.commit();
        let promises: Vec<(usize, Promised)> = self
            .promises
            .iter_mut()
            .enumerate()
            .filter_map(|(i, p)| p.take().map(|p| (i, p)))
            .collect();
        let chosen = promises
            .iter()
            .map(|(_, p)| p.commit)
            .fold(own_commit, Index::max);
        let last = promises
            .iter()
            .filter_map(|(_, p)| p.entries.last().map(|e| e.index))
            .fold(self.log.last_index(), Index::max);
        let mut merged = Vec::with_capacity((last - own_commit) as usize);
        for slot in own_commit + 1..=last {
            merged.push(merge_slot(slot, chosen, b, self.log.entry(slot), &promises));
        }
        self.write_from(own_commit + 1, merged, out);
        self.log.commit_to(chosen);
        self.role = Role::Leader;
        self.leader = Some(self.id);
        self.reset_timers();
        let last = self.log.last_index();
        self.repl
            .reset(self.voters.len(), self.log.commit() + 1, last);
        for (i, p) in &promises {
            if *i != self.self_pos {
                self.repl.progress[*i].next = p.commit + 1;
            }
        }
        // A no-op after every re-proposed slot: once it is chosen, everything
        // chosen before this leadership is below the commit point (ReadIndex
        // needs that; a re-proposed slot of this ballot is not enough).
        self.noop_index = self.append_local(EntryKind::Noop, Bytes::new(), out);
        self.maybe_commit();
    }

    /// Replaces the log from `from` on with `entries` where they differ,
    /// keeping the slots after them.
    fn write_from(&mut self, from: Index, entries: Vec<Entry>, out: &mut PaxosEffects) {
        let first_diff = entries
            .iter()
            .position(|e| self.log.entry(e.index) != Some(e));
        let Some(k) = first_diff else { return };
        let s0 = from + k as Index;
        let end = from + entries.len() as Index - 1;
        let tail: Vec<Entry> = self.log.slice(end + 1, self.log.last_index()).to_vec();
        if s0 <= self.log.last_index() {
            if !self.log.truncate(s0) {
                ::log::error!("node {}: refusing to rewrite chosen slot {s0}", self.id);
                return;
            }
            out.truncate(s0);
            if self.matched >= s0 {
                self.matched = s0 - 1;
            }
        }
        for e in entries.into_iter().skip(k).chain(tail) {
            out.append.push(e.clone());
            self.log.push(e);
        }
    }

    fn append_local(&mut self, kind: EntryKind, data: Bytes, out: &mut PaxosEffects) -> Index {
        let entry = Entry::new(self.my_ballot, self.log.last_index() + 1, kind, data);
        let (index, size) = (entry.index, entry.size());
        out.append.push(entry.clone());
        self.log.push(entry);
        self.repl.appended(index, size);
        index
    }

    fn maybe_commit(&mut self) {
        // Every slot counted was accepted in this ballot (or is chosen).
        let c = self.repl.quorum_index();
        self.repl.commit(&mut self.log, c);
    }

    /// Follows `from`, the leader of `b` (already promised).
    fn follow(&mut self, from: NodeId, out: &mut PaxosEffects) {
        if self.role != Role::Follower || self.leader != Some(from) {
            self.become_follower(Some(from), out);
        }
        self.election_elapsed = 0;
    }

    /// Acceptor: the highest slot holding a chosen value or a value of
    /// ballot `b`, contiguous from the chosen prefix.
    fn matched_in(&mut self, b: Ballot) -> Index {
        if self.match_ballot != b {
            self.match_ballot = b;
            self.matched = self.log.commit();
        }
        self.matched = self.matched.max(self.log.commit());
        while self
            .log
            .entry(self.matched + 1)
            .is_some_and(|e| e.epoch == b)
        {
            self.matched += 1;
        }
        self.matched
    }

    /// Acceptor: learns that slots up to `commit` are chosen, as far as it
    /// holds the leader's values for them: slots of ballot `b`, and slots of
    /// the batch `[first, through]` it just took from the leader.
    fn advance_commit(&mut self, b: Ballot, commit: Index, batch: Option<(Index, Index)>) {
        let limit = commit.min(self.log.last_index());
        let mut c = self.log.commit();
        while c < limit {
            let s = c + 1;
            let from_leader = batch.is_some_and(|(f, t)| (f..=t).contains(&s));
            if from_leader || self.log.entry(s).is_some_and(|e| e.epoch == b) {
                c = s;
            } else {
                break;
            }
        }
        self.log.commit_to(c);
    }

    fn handle_accept(
        &mut self,
        from: NodeId,
        b: Ballot,
        first: Index,
        entries: Vec<Entry>,
        commit: Index,
        out: &mut PaxosEffects,
    ) {
        let consecutive = entries
            .iter()
            .enumerate()
            .all(|(i, e)| first.checked_add(i as Index) == Some(e.index));
        if first == 0 || !consecutive {
            ::log::warn!("node {}: ignoring a malformed accept from {from}", self.id);
            return;
        }
        if first > self.log.last_index() + 1 {
            let refusal = Refusal::Gap {
                commit: self.log.commit(),
            };
            self.send(
                from,
                Message::Accepted {
                    ballot: b,
                    result: Err(refusal),
                },
                out,
            );
            return;
        }
        let through = first + entries.len() as Index - 1;
        // Values above the leader's commit are this ballot's; below it they
        // are chosen (and keep the ballot they were chosen in).
        if entries.iter().any(|e| e.index > commit && e.epoch != b) {
            ::log::warn!(
                "node {}: ignoring an accept from {from} with foreign ballots",
                self.id
            );
            return;
        }
        // Chosen slots never change; a differing value there means a broken peer.
        let chosen = self.log.commit();
        let skip = entries.iter().take_while(|e| e.index <= chosen).count();
        for e in &entries[..skip] {
            if self
                .log
                .entry(e.index)
                .is_some_and(|mine| mine.data != e.data || mine.kind != e.kind)
            {
                ::log::error!(
                    "node {}: accept from {from} contradicts chosen slot {}",
                    self.id,
                    e.index
                );
                return;
            }
        }
        let rest: Vec<Entry> = entries.into_iter().skip(skip).collect();
        if let Some(start) = rest.first().map(|e| e.index) {
            self.write_from(start, rest, out);
        }
        self.advance_commit(b, commit, Some((first, through)));
        let matched = self.matched_in(b);
        let ack = match self.pending_ack {
            Some((to, pb, a)) if to == from && pb == b => Acked {
                matched: a.matched.max(matched),
                through: a.through.max(through),
            },
            _ => Acked { matched, through },
        };
        self.pending_ack = Some((from, b, ack));
    }

    fn handle_accepted(
        &mut self,
        from: NodeId,
        result: Result<Acked, Refusal>,
        out: &mut PaxosEffects,
    ) {
        let Some(p) = self.pos(from) else { return };
        let last = self.log.last_index();
        match result {
            Ok(a) => {
                let pr = &mut self.repl.progress[p];
                pr.recent_active = true;
                let matched = a.matched.min(last);
                let moved = pr.acknowledge(matched);
                if matched < a.through.min(last) {
                    // Something between its chosen prefix and this batch is
                    // not ours yet: resend from there.
                    pr.probe_from(matched + 1);
                } else if pr.state == ReplicationState::Probe {
                    pr.start_replicating();
                }
                if moved {
                    self.maybe_commit();
                }
            }
            Err(Refusal::Gap { commit }) => {
                let pr = &mut self.repl.progress[p];
                pr.recent_active = true;
                pr.probe_from(commit + 1);
            }
            Err(Refusal::Promised(h)) => self.preempted(h, out),
        }
    }

    fn preempted(&mut self, higher: Ballot, out: &mut PaxosEffects) {
        self.observe(higher);
        if higher > self.my_ballot && matches!(self.role, Role::Leader | Role::Candidate) {
            // Back off; a randomized timeout decides who tries next.
            self.become_follower(None, out);
        }
    }

    fn in_lease(&self, from: NodeId) -> bool {
        self.leader.is_some_and(|l| l != from)
            && self.election_elapsed < self.cfg.election_ticks_min
    }

    /// Handles one message. Messages from non-voters are ignored.
    pub fn step(&mut self, from: NodeId, msg: Message, out: &mut PaxosEffects) {
        if from == self.id || self.pos(from).is_none() {
            return;
        }
        self.observe(msg.ballot());
        match msg {
            Message::Prepare {
                ballot: b,
                from: start,
            } => {
                if b > self.promised && !self.in_lease(from) {
                    self.become_follower(None, out);
                    self.promise(b);
                }
                let result = if b == self.promised && self.role == Role::Follower {
                    Ok(Promised {
                        commit: self.log.commit(),
                        entries: self.log.slice(start.max(1), self.log.last_index()).to_vec(),
                    })
                } else {
                    Err(self.promised)
                };
                if result.is_err() && b > self.promised {
                    // In a lease: stay silent, the candidate backs off.
                    return;
                }
                self.send(from, Message::Promise { ballot: b, result }, out);
            }
            Message::Promise { ballot: b, result } => {
                if self.role != Role::Candidate || b != self.my_ballot {
                    return;
                }
                match result {
                    Ok(p) => {
                        if let Some(pp) = self.pos(from) {
                            self.promises[pp] = Some(p);
                        }
                        let granted = self.promises.iter().filter(|p| p.is_some()).count();
                        if quorum::has_majority(granted, self.voters.len()) {
                            self.become_leader(out);
                        }
                    }
                    Err(h) => self.preempted(h, out),
                }
            }
            Message::Accept {
                ballot: b,
                first,
                entries,
                commit,
            } => {
                if b < self.promised {
                    let refusal = Refusal::Promised(self.promised);
                    self.send(
                        from,
                        Message::Accepted {
                            ballot: b,
                            result: Err(refusal),
                        },
                        out,
                    );
                    return;
                }
                self.promise(b);
                self.follow(from, out);
                self.handle_accept(from, b, first, entries, commit, out);
            }
            Message::Accepted { ballot: b, result } => {
                if self.role == Role::Leader && b == self.my_ballot {
                    self.handle_accepted(from, result, out);
                } else if let Err(Refusal::Promised(h)) = result {
                    self.preempted(h, out);
                }
            }
            Message::Heartbeat {
                ballot: b,
                commit,
                read_round,
            } => {
                let result = if b < self.promised {
                    Err(self.promised)
                } else {
                    self.promise(b);
                    self.follow(from, out);
                    self.advance_commit(b, commit, None);
                    Ok(())
                };
                self.send(
                    from,
                    Message::HeartbeatResponse {
                        ballot: b,
                        read_round,
                        result,
                    },
                    out,
                );
            }
            Message::HeartbeatResponse {
                ballot: b,
                read_round,
                result,
            } => {
                if self.role != Role::Leader || b != self.my_ballot {
                    return;
                }
                match result {
                    Ok(()) => self.handle_heartbeat_response(from, read_round, out),
                    Err(h) => self.preempted(h, out),
                }
            }
        }
    }

    fn handle_heartbeat_response(&mut self, from: NodeId, read_round: u64, out: &mut PaxosEffects) {
        let Some(p) = self.pos(from) else { return };
        let last = self.log.last_index();
        let pr = &mut self.repl.progress[p];
        pr.recent_active = true;
        match pr.state {
            ReplicationState::Probe => pr.paused = false,
            ReplicationState::Replicate => pr.check_needed = pr.matched < last,
        }
        if read_round > 0 {
            let n = self.voters.len();
            self.reads.acknowledge(p, read_round, n, |id, index| {
                out.reads_ready.push(ReadReady { id, index });
            });
        }
    }

    fn send_accepts(&mut self, out: &mut PaxosEffects) {
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
                let msg = Message::Accept {
                    ballot: self.my_ballot,
                    first: batch.first,
                    entries: batch.entries,
                    commit,
                };
                self.send(to, msg, out);
            }
            if let Some(next) = self.repl.take_check(p).filter(|_| !sent_any) {
                // An empty accept at the next slot: the answer shows whether
                // pipelined accepts were lost.
                let matched = self.repl.progress[p].matched;
                let msg = Message::Accept {
                    ballot: self.my_ballot,
                    first: next,
                    entries: Vec::new(),
                    commit: commit.min(matched),
                };
                self.send(to, msg, out);
            }
        }
    }

    fn broadcast_heartbeat(&mut self, read_round: u64, out: &mut PaxosEffects) {
        for p in 0..self.voters.len() {
            if p != self.self_pos {
                let msg = Message::Heartbeat {
                    ballot: self.my_ballot,
                    commit: self.log.commit().min(self.repl.progress[p].matched),
                    read_round,
                };
                self.send(self.voters[p], msg, out);
            }
        }
    }

    fn tick_leader(&mut self, out: &mut PaxosEffects) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.election_elapsed >= self.cfg.election_ticks_min {
            self.election_elapsed = 0;
            if !self.repl.quorum_active() {
                // Cut off from a quorum: stop taking proposals that cannot
                // be chosen.
                self.become_follower(None, out);
                return;
            }
        }
        if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            let round = self.reads.current_round();
            self.broadcast_heartbeat(round, out);
        }
    }

    fn committed_in_my_ballot(&self) -> bool {
        self.log.commit() >= self.noop_index
    }

    fn emit_committed(&mut self, out: &mut PaxosEffects) {
        self.log
            .take_committed(&mut self.emitted_commit, &mut out.committed);
    }
}

/// The value a promise reports for `slot` (its entries are consecutive).
fn promised_at(p: &Promised, slot: Index) -> Option<&Entry> {
    let first = p.entries.first()?.index;
    p.entries.get(slot.checked_sub(first)? as usize)
}

/// The value a new leader of ballot `b` puts in `slot`: a value some acceptor
/// knows chosen; else the value accepted in the highest ballot (re-proposed
/// under `b`, keeping its origin); else, in a gap no promise covers, a no-op.
fn merge_slot(
    slot: Index,
    chosen: Index,
    b: Ballot,
    own: Option<&Entry>,
    promises: &[(usize, Promised)],
) -> Entry {
    let reported = promises.iter().filter_map(|(_, p)| promised_at(p, slot));
    if slot <= chosen {
        let known = promises
            .iter()
            .filter(|(_, p)| p.commit >= slot)
            .find_map(|(_, p)| promised_at(p, slot));
        if let Some(e) = known {
            return e.clone();
        }
    }
    let best = reported.chain(own).max_by_key(|e| e.epoch);
    match best {
        // Re-proposed under `b`, it keeps the identity its proposer knows it by.
        Some(e) => Entry {
            origin: e.origin,
            ..Entry::new(b, slot, e.kind, e.data.clone())
        },
        None => Entry::new(b, slot, EntryKind::Noop, Bytes::new()),
    }
}

impl Protocol for MultiPaxos {
    type Message = Message;
    type HardState = HardState;
    type Config = PaxosConfig;
    const KIND: ProtocolKind = ProtocolKind::MultiPaxos;

    fn new(
        id: NodeId,
        voters: &[NodeId],
        config: PaxosConfig,
        recovered: Recovered<HardState>,
        seed: u64,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let self_pos = crate::consensus::validate_membership(id, voters, MAX_VOTERS)?;
        let hs = recovered.hard_state.unwrap_or_default();
        let log = Log::from_entries(recovered.entries, hs.commit)
            .map_err(|e| ConfigError::new("recovered", e))?;
        let mut node = MultiPaxos {
            id,
            voters: voters.to_vec(),
            self_pos,
            promised: hs.promised,
            log,
            role: Role::Follower,
            leader: None,
            my_ballot: 0,
            noop_index: 0,
            max_round_seen: round_of(hs.promised),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_timeout: config.election_ticks_min,
            rng: Rng::new(seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            promises: vec![None; voters.len()],
            repl: Replication::new(self_pos),
            reads: ReadQueue::default(),
            match_ballot: 0,
            matched: 0,
            pending_ack: None,
            emitted_commit: 0,
            persisted: hs.clone(),
            reported: None,
            cfg: config,
        };
        node.reset_timers();
        Ok(node)
    }

    fn tick(&mut self, out: &mut PaxosEffects) {
        if self.role == Role::Leader {
            self.tick_leader(out);
            return;
        }
        self.election_elapsed += 1;
        if self.election_elapsed >= self.randomized_timeout {
            self.campaign(out);
        }
    }

    fn step(&mut self, from: NodeId, msg: Message, out: &mut PaxosEffects) {
        MultiPaxos::step(self, from, msg, out);
    }

    fn propose(
        &mut self,
        data: Bytes,
        out: &mut PaxosEffects,
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
        if self.voters.len() == 1 {
            self.maybe_commit();
        }
        Ok((self.my_ballot, index))
    }

    fn read(&mut self, id: ReadId, _out: &mut PaxosEffects) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader,
            });
        }
        self.reads.push(id);
        Ok(())
    }

    fn flush(&mut self, out: &mut PaxosEffects) {
        if self.role == Role::Leader {
            self.send_accepts(out);
            self.emit_committed(out);
            if self.reads.has_waiting() && self.committed_in_my_ballot() {
                let round = self.reads.start_round(self.log.commit(), self.self_pos);
                if self.voters.len() == 1 {
                    self.reads
                        .acknowledge(self.self_pos, round, 1, |id, index| {
                            out.reads_ready.push(ReadReady { id, index });
                        });
                } else {
                    self.broadcast_heartbeat(round, out);
                }
            }
        } else {
            if let Some((to, b, acked)) = self.pending_ack.take() {
                self.send(
                    to,
                    Message::Accepted {
                        ballot: b,
                        result: Ok(acked),
                    },
                    out,
                );
            }
            self.emit_committed(out);
        }
        let hs = HardState {
            promised: self.promised,
            commit: self.log.commit(),
        };
        if hs != self.persisted {
            out.hard_state = Some(hs.clone());
            self.persisted = hs;
        }
        let now = RoleChange {
            role: self.role,
            epoch: self.epoch(),
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
        self.promised
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
