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

use crate::consensus::log::{self, Log};
use crate::consensus::progress::ReplicationState;
use crate::consensus::quorum;
use crate::consensus::shell::{protocol_plumbing, Shell};
use crate::consensus::{Effects, Protocol, ProtocolKind, RoleChange};
use crate::error::ProposeError;
use crate::types::{Entry, EntryKind, Epoch, Index, NodeId, Role};
use bytes::Bytes;

pub use crate::consensus::MAX_VOTERS;

/// Effects of a Multi-Paxos core.
pub type PaxosEffects = Effects<Message, HardState>;

/// A Multi-Paxos replica: proposer, acceptor and learner in one.
#[derive(Debug)]
pub struct MultiPaxos {
    /// `shell.log` holds the accepted values; its commit is the chosen prefix.
    shell: Shell<HardState>,
    promised: Ballot,
    role: Role,
    leader: Option<NodeId>,
    /// The ballot this node campaigns or leads with.
    my_ballot: Ballot,
    /// The no-op that opened this leadership.
    noop_index: Index,
    max_round_seen: u64,
    /// Phase 1 answers by voter position (own position: `Some` with no entries).
    promises: Vec<Option<Promised>>,
    /// Acceptor: highest slot known to hold a chosen value or one accepted
    /// in `match_ballot`, contiguous from the chosen prefix.
    match_ballot: Ballot,
    matched: Index,
    /// Acceptor: the answer to send at flush (coalesced).
    pending_ack: Option<(NodeId, Ballot, Acked)>,
}

/// A heartbeat of ballot `b` as the shell sends it: `(commit, read_round)`.
fn heartbeat(b: Ballot) -> impl Fn(Index, u64) -> Message {
    move |commit, read_round| Message::Heartbeat {
        ballot: b,
        commit,
        read_round,
    }
}

impl MultiPaxos {
    /// Slots are independent: ballots may go down along the log.
    const EPOCHS_ORDERED: bool = false;

    fn from_shell(shell: Shell<HardState>, hs: HardState, _cfg: PaxosConfig) -> Self {
        let voters = shell.voters.len();
        MultiPaxos {
            shell,
            promised: hs.promised,
            role: Role::Follower,
            leader: None,
            my_ballot: 0,
            noop_index: 0,
            max_round_seen: round_of(hs.promised),
            promises: vec![None; voters],
            match_ballot: 0,
            matched: 0,
            pending_ack: None,
        }
    }

    /// The ballot this node leads with, or `NotLeader` with the leader it knows.
    fn lead_epoch(&self) -> Result<Ballot, ProposeError> {
        match self.role {
            Role::Leader => Ok(self.my_ballot),
            _ => Err(ProposeError::NotLeader {
                leader: self.leader,
            }),
        }
    }

    /// The accepted values (read-only), for tests and inspection.
    pub fn log(&self) -> &Log {
        &self.shell.log
    }

    /// The highest ballot this node promised.
    pub fn promised(&self) -> Ballot {
        self.promised
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

    fn become_follower(&mut self, leader: Option<NodeId>, out: &mut PaxosEffects) {
        self.shell.stop_leading(leader, out);
        self.role = Role::Follower;
        self.leader = leader;
        self.promises.iter_mut().for_each(|p| *p = None);
        self.shell.reset_timers();
    }

    fn campaign(&mut self, out: &mut PaxosEffects) {
        if self.role == Role::Leader {
            return;
        }
        let round = self.max_round_seen.max(round_of(self.promised)) + 1;
        let b = ballot(round, self.shell.self_pos);
        self.become_follower(None, out);
        self.role = Role::Candidate;
        self.my_ballot = b;
        self.promise(b);
        self.promises[self.shell.self_pos] = Some(Promised {
            commit: self.shell.log.commit(),
            entries: Vec::new(),
        });
        if self.shell.is_single() {
            self.become_leader(out);
            return;
        }
        let from = self.shell.log.commit() + 1;
        self.shell
            .broadcast(Message::Prepare { ballot: b, from }, out);
    }

    /// Phase 1 done: build the log this leadership starts from.
    fn become_leader(&mut self, out: &mut PaxosEffects) {
        let b = self.my_ballot;
        let own_commit = self.shell.log.commit();
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
            .fold(self.shell.log.last_index(), Index::max);
        let mut merged = Vec::with_capacity((last - own_commit) as usize);
        for slot in own_commit + 1..=last {
            let own = self.shell.log.entry(slot);
            merged.push(merge_slot(slot, chosen, b, own, &promises));
        }
        self.write_from(own_commit + 1, merged, out);
        self.shell.log.commit_to(chosen);
        self.role = Role::Leader;
        self.leader = Some(self.shell.id);
        self.shell.reset_timers();
        let last = self.shell.log.last_index();
        let next = self.shell.log.commit() + 1;
        self.shell.repl.reset(self.shell.voters.len(), next, last);
        for (i, p) in &promises {
            if *i != self.shell.self_pos {
                self.shell.repl.progress[*i].next = p.commit + 1;
            }
        }
        // A no-op after every re-proposed slot: once it is chosen, everything
        // chosen before this leadership is below the commit point (ReadIndex
        // needs that; a re-proposed slot of this ballot is not enough).
        self.noop_index = self
            .shell
            .append_local(b, EntryKind::Noop, Bytes::new(), out);
        self.shell.commit_quorum();
    }

    /// Replaces the log from `from` on with `entries` where they differ,
    /// keeping the slots after them.
    fn write_from(&mut self, from: Index, entries: Vec<Entry>, out: &mut PaxosEffects) {
        let log = &self.shell.log;
        let Some(k) = entries.iter().position(|e| log.entry(e.index) != Some(e)) else {
            return;
        };
        let s0 = from + k as Index;
        let end = from + entries.len() as Index - 1;
        let tail: Vec<Entry> = log.slice(end + 1, log.last_index()).to_vec();
        if s0 <= log.last_index() {
            if !self.shell.truncate(s0, out) {
                return;
            }
            self.matched = self.matched.min(s0 - 1);
        }
        for e in entries.into_iter().skip(k).chain(tail) {
            self.shell.write(e, out);
        }
    }

    /// Follows `from`, the leader of `b` (already promised).
    fn follow(&mut self, from: NodeId, out: &mut PaxosEffects) {
        if self.role != Role::Follower || self.leader != Some(from) {
            self.become_follower(Some(from), out);
        }
        self.shell.elapsed = 0;
    }

    /// Acceptor: the highest slot holding a chosen value or a value of
    /// ballot `b`, contiguous from the chosen prefix.
    fn matched_in(&mut self, b: Ballot) -> Index {
        let log = &self.shell.log;
        if self.match_ballot != b {
            self.match_ballot = b;
            self.matched = log.commit();
        }
        self.matched = self.matched.max(log.commit());
        while log.entry(self.matched + 1).is_some_and(|e| e.epoch == b) {
            self.matched += 1;
        }
        self.matched
    }

    /// Acceptor: learns that slots up to `commit` are chosen, as far as it
    /// holds the leader's values for them: slots of ballot `b`, and slots of
    /// the batch `[first, through]` it just took from the leader.
    fn advance_commit(&mut self, b: Ballot, commit: Index, batch: Option<(Index, Index)>) {
        let log = &mut self.shell.log;
        let limit = commit.min(log.last_index());
        let mut c = log.commit();
        while c < limit {
            let s = c + 1;
            let from_leader = batch.is_some_and(|(f, t)| (f..=t).contains(&s));
            if from_leader || log.entry(s).is_some_and(|e| e.epoch == b) {
                c = s;
            } else {
                break;
            }
        }
        log.commit_to(c);
    }

    /// Acceptor: true when `entries` may be taken from `from`, the leader of
    /// `b` whose commit point is `commit`: values above the commit are this
    /// ballot's, and chosen slots (which never change) are not contradicted.
    fn acceptable(&self, from: NodeId, b: Ballot, entries: &[Entry], commit: Index) -> bool {
        if entries.iter().any(|e| e.index > commit && e.epoch != b) {
            ::log::warn!(
                "node {}: ignoring an accept from {from} with foreign ballots",
                self.shell.id
            );
            return false;
        }
        let chosen = self.shell.log.commit();
        let contradicted = entries.iter().take_while(|e| e.index <= chosen).find(|e| {
            self.shell
                .log
                .entry(e.index)
                .is_some_and(|mine| mine.data != e.data || mine.kind != e.kind)
        });
        if let Some(e) = contradicted {
            ::log::error!(
                "node {}: accept from {from} contradicts chosen slot {}",
                self.shell.id,
                e.index
            );
            return false;
        }
        true
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
        if first == 0 || !log::consecutive(&entries, first) {
            ::log::warn!(
                "node {}: ignoring a malformed accept from {from}",
                self.shell.id
            );
            return;
        }
        if first > self.shell.log.last_index() + 1 {
            let refusal = Refusal::Gap {
                commit: self.shell.log.commit(),
            };
            let result = Err(refusal);
            out.send(from, Message::Accepted { ballot: b, result });
            return;
        }
        let through = first + entries.len() as Index - 1;
        if !self.acceptable(from, b, &entries, commit) {
            return;
        }
        let chosen = self.shell.log.commit();
        let rest: Vec<Entry> = entries.into_iter().filter(|e| e.index > chosen).collect();
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
        let Some(p) = self.shell.pos(from) else {
            return;
        };
        match result {
            Ok(a) => {
                let last = self.shell.log.last_index();
                let matched = a.matched.min(last);
                if matched < self.shell.repl.progress[p].matched {
                    // It restarted and relearns which slots were chosen
                    // (the commit point is not synced): resend from there.
                    self.shell.repl.progress[p].forgot(matched);
                }
                let moved = self.shell.on_append_ack(p, a.matched);
                if matched < a.through.min(last) {
                    // Something between its chosen prefix and this batch is
                    // not ours yet: resend from there.
                    self.shell.repl.progress[p].probe_from(matched + 1);
                }
                if moved {
                    self.shell.commit_quorum();
                }
            }
            Err(Refusal::Gap { commit }) => {
                let pr = self.shell.heard_from(p);
                // A late answer while the snapshot is on its way.
                if pr.state != ReplicationState::Snapshot {
                    pr.probe_from(commit + 1);
                }
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

    /// Phase 2 from `from` in ballot `b` (an Accept or a snapshot chunk):
    /// refused with the higher promise, or promised and followed. True
    /// when it may be taken.
    fn accept_leader(&mut self, from: NodeId, b: Ballot, out: &mut PaxosEffects) -> bool {
        if b < self.promised {
            let result = Err(Refusal::Promised(self.promised));
            out.send(from, Message::Accepted { ballot: b, result });
            return false;
        }
        self.promise(b);
        self.follow(from, out);
        true
    }

    fn in_lease(&self, from: NodeId) -> bool {
        self.leader.is_some_and(|l| l != from)
            && self.shell.elapsed < self.shell.timing.election_ticks_min
    }

    /// Handles one message. Messages from non-voters are ignored.
    pub fn step(&mut self, from: NodeId, msg: Message, out: &mut PaxosEffects) {
        if from == self.shell.id || self.shell.pos(from).is_none() {
            return;
        }
        self.observe(msg.ballot());
        match msg {
            Message::Prepare {
                ballot: b,
                from: start,
            } => self.handle_prepare(from, b, start, out),
            Message::Promise { ballot: b, result } => {
                if self.role != Role::Candidate || b != self.my_ballot {
                    return;
                }
                match result {
                    Ok(promised) => self.handle_promise(from, promised, out),
                    Err(h) => self.preempted(h, out),
                }
            }
            Message::Accept {
                ballot: b,
                first,
                entries,
                commit,
            } => {
                if self.accept_leader(from, b, out) {
                    self.handle_accept(from, b, first, entries, commit, out);
                }
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
                    if self.shell.log.commit() < commit {
                        // The leader counts on slots this acceptor cannot
                        // confirm: it restarted and relearns which were
                        // chosen (the commit point is not synced). Its
                        // match makes the leader resend them.
                        let matched = self.matched_in(b);
                        let acked = Acked {
                            matched,
                            through: matched,
                        };
                        out.send(
                            from,
                            Message::Accepted {
                                ballot: b,
                                result: Ok(acked),
                            },
                        );
                    }
                    Ok(())
                };
                let reply = Message::HeartbeatResponse {
                    ballot: b,
                    read_round,
                    result,
                };
                out.send(from, reply);
            }
            Message::HeartbeatResponse {
                ballot: b,
                read_round,
                result,
            } => {
                if self.role != Role::Leader || b != self.my_ballot {
                    return;
                }
                match (result, self.shell.pos(from)) {
                    (Ok(()), Some(p)) => self.shell.on_heartbeat_ack(p, read_round, out),
                    (Err(h), _) => self.preempted(h, out),
                    _ => {}
                }
            }
            Message::Snapshot { ballot: b, chunk } => {
                if self.accept_leader(from, b, out) {
                    let ack = self.shell.receive_chunk(chunk, out);
                    out.send(from, Message::SnapshotAck { ballot: b, ack });
                }
            }
            Message::SnapshotAck { ballot: b, ack } => {
                if self.role != Role::Leader || b != self.my_ballot {
                    return;
                }
                if let Some(p) = self.shell.pos(from) {
                    self.shell.on_snapshot_ack(p, ack);
                    self.shell.commit_quorum();
                }
            }
        }
    }

    /// Phase 1a at an acceptor: promise `b` unless a higher ballot was
    /// promised (or a leader's lease holds, when it stays silent). An
    /// acceptor whose snapshot covers slots the proposer does not know
    /// chosen (`start` at or below it) cannot report their values: it
    /// stays silent, so that only a proposer that knows every value it
    /// compacted can lead with its promise (the one with the highest
    /// chosen prefix always can).
    fn handle_prepare(&mut self, from: NodeId, b: Ballot, start: Index, out: &mut PaxosEffects) {
        if start <= self.shell.log.snapshot_index() {
            return;
        }
        if b > self.promised && !self.in_lease(from) {
            self.become_follower(None, out);
            self.promise(b);
        }
        let result = if b == self.promised && self.role == Role::Follower {
            let log = &self.shell.log;
            Ok(Promised {
                commit: log.commit(),
                entries: log.slice(start.max(1), log.last_index()).to_vec(),
            })
        } else {
            Err(self.promised)
        };
        if result.is_err() && b > self.promised {
            // In a lease: stay silent, the candidate backs off.
            return;
        }
        out.send(from, Message::Promise { ballot: b, result });
    }

    /// Phase 1b at the candidate: leads once a majority promised.
    fn handle_promise(&mut self, from: NodeId, promised: Promised, out: &mut PaxosEffects) {
        if let Some(p) = self.shell.pos(from) {
            self.promises[p] = Some(promised);
        }
        let granted = self.promises.iter().filter(|p| p.is_some()).count();
        if quorum::has_majority(granted, self.shell.voters.len()) {
            self.become_leader(out);
        }
    }

    fn committed_in_my_ballot(&self) -> bool {
        self.shell.log.commit() >= self.noop_index
    }

    fn flush_leader(&mut self, out: &mut PaxosEffects) {
        let ballot = self.my_ballot;
        self.shell.send_batches(
            out,
            |_| true,
            |_, first, entries, commit| {
                Some(Message::Accept {
                    ballot,
                    first,
                    entries,
                    commit,
                })
            },
            |chunk| Message::Snapshot { ballot, chunk },
        );
        let ready = self.committed_in_my_ballot();
        self.shell.start_reads(ready, out, heartbeat(ballot));
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
    protocol_plumbing!(ProtocolKind::MultiPaxos, PaxosConfig);

    fn vote(&self) -> Option<NodeId> {
        // A ballot's low 8 bits are its proposer's position.
        let position = (self.promised & 0xff) as usize;
        (self.promised > 0)
            .then(|| self.shell.voters.get(position).copied())
            .flatten()
    }

    fn may_send_before_sync(msg: &Message) -> bool {
        matches!(
            msg,
            Message::Accept { .. } | Message::Heartbeat { .. } | Message::Snapshot { .. }
        )
    }

    fn tick(&mut self, out: &mut PaxosEffects) {
        if self.role != Role::Leader {
            if self.shell.tick_election() {
                self.campaign(out);
            }
        } else if self.shell.tick_leader(true, out, heartbeat(self.my_ballot)) {
            // Cut off from a quorum: stop taking proposals that cannot be chosen.
            self.become_follower(None, out);
        }
    }

    fn step(&mut self, from: NodeId, msg: Message, out: &mut PaxosEffects) {
        MultiPaxos::step(self, from, msg, out);
    }

    fn flush(&mut self, out: &mut PaxosEffects) {
        if self.role == Role::Leader {
            self.flush_leader(out);
        } else if let Some((to, ballot, acked)) = self.pending_ack.take() {
            let result = Ok(acked);
            out.send(to, Message::Accepted { ballot, result });
        }
        let hs = HardState {
            promised: self.promised,
            commit: self.shell.log.commit(),
        };
        let now = RoleChange {
            role: self.role,
            epoch: self.epoch(),
            leader: self.leader,
        };
        self.shell.finish_flush(hs, now, out);
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
}
