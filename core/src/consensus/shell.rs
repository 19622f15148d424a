//! The skeleton every protocol core shares: who the node is among which
//! voters, its log, its timers and randomness, the leader's replication
//! progress and pending reads, and what it already emitted, persisted and
//! reported. Each core keeps its own messages, hard state and handlers and
//! builds its messages through the closures it passes here; everything
//! else a Raft, Multi-Paxos or ZAB node does the same way is written once,
//! in this file.
//!
//! Invariants live here too (checked in debug builds, so in tests and the
//! simulator): commit never passes the last index, committed entries are
//! emitted once and in order, and a leader never truncates its own log.

use crate::consensus::log::Log;
use crate::consensus::progress::{Progress, ReplicationState};
use crate::consensus::read_index::ReadQueue;
use crate::consensus::replication::{Replication, ReplicationLimits};
use crate::consensus::snapshot::{Incoming, Received};
use crate::consensus::{
    Effects, ReadFailed, ReadId, ReadReady, Recovered, RoleChange, Snapshot, SnapshotAck,
    SnapshotChunk, SnapshotId,
};
use crate::error::{ConfigError, ProposeError};
use crate::rng::Rng;
use crate::types::{Entry, EntryKind, Epoch, Index, NodeId};
use bytes::Bytes;

/// Largest command a node takes (a log record must hold it, with room to
/// spare); a bigger one fails with [`ProposeError::TooLarge`].
pub const MAX_COMMAND_BYTES: usize = 256 << 20;

/// Most voters a cluster may have (acknowledgements are tracked in a 64-bit
/// set, and a Paxos ballot names its proposer's position in 8 bits).
pub const MAX_VOTERS: usize = 64;

/// Heartbeat and election timing in ticks, the same settings for every
/// protocol (the runtime turns ticks into time). `Default` gives values that
/// work; [`Timing::validate`] rejects the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// A leader sends heartbeats (with the commit point) every this many ticks.
    pub heartbeat_ticks: u32,
    /// Lower bound of the randomized timeout after which a node that hears
    /// no leader starts an election; a leader that has not heard from a
    /// quorum for this long steps down.
    pub election_ticks_min: u32,
    /// Upper bound (exclusive) of that randomized timeout.
    pub election_ticks_max: u32,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            heartbeat_ticks: 5,
            election_ticks_min: 15,
            election_ticks_max: 30,
        }
    }
}

impl Timing {
    /// Checks heartbeats at least every tick and a randomized election
    /// timeout range above the heartbeat.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let Timing {
            heartbeat_ticks,
            election_ticks_min,
            election_ticks_max,
        } = *self;
        if heartbeat_ticks == 0 {
            return Err(ConfigError::new("heartbeat_ticks", "must be at least 1"));
        }
        if election_ticks_min <= heartbeat_ticks {
            return Err(ConfigError::new(
                "election_ticks_min",
                format!("must be greater than heartbeat_ticks ({heartbeat_ticks}), got {election_ticks_min}"),
            ));
        }
        if election_ticks_max <= election_ticks_min {
            return Err(ConfigError::new(
                "election_ticks_max",
                format!("must be greater than election_ticks_min ({election_ticks_min}), got {election_ticks_max}"),
            ));
        }
        Ok(())
    }
}

/// A protocol's hard state, as far as the shell needs to know it.
pub trait HardStateCommit: Clone + PartialEq + Default {
    /// The commit index it records.
    fn commit(&self) -> Index;
    /// The same hard state recording `commit` instead.
    fn with_commit(&self, commit: Index) -> Self;
}

/// The [`crate::consensus::Protocol`] methods every core answers the same
/// way, from its shell and three items of its own: `EPOCHS_ORDERED` (for
/// [`Shell::new`]), `from_shell(shell, hard_state, config)` and
/// `lead_epoch()` (the epoch it leads in, or `NotLeader` with its hint).
/// Used inside each core's `impl Protocol`, with its kind and config type;
/// `Message` and `HardState` are the names in the core's module.
macro_rules! protocol_plumbing {
    ($kind:expr, $config:ty) => {
        type Message = Message;
        type HardState = HardState;
        type Config = $config;
        const KIND: $crate::consensus::ProtocolKind = $kind;

        fn new(
            id: $crate::types::NodeId,
            voters: &[$crate::types::NodeId],
            config: Self::Config,
            recovered: $crate::consensus::Recovered<Self::HardState>,
            seed: u64,
        ) -> Result<Self, $crate::error::ConfigError> {
            config.validate()?;
            let (timing, limits, ordered) = (config.timing, config.limits, Self::EPOCHS_ORDERED);
            let (shell, hs) = $crate::consensus::shell::Shell::new(
                id, voters, timing, limits, recovered, ordered, seed,
            )?;
            Ok(Self::from_shell(shell, hs, config))
        }

        fn propose(
            &mut self,
            data: bytes::Bytes,
            out: &mut $crate::consensus::Effects<Self::Message, Self::HardState>,
        ) -> Result<($crate::types::Epoch, $crate::types::Index), $crate::error::ProposeError> {
            let epoch = self.lead_epoch()?;
            self.shell.propose(epoch, data, out)
        }

        fn read(
            &mut self,
            id: $crate::consensus::ReadId,
            _out: &mut $crate::consensus::Effects<Self::Message, Self::HardState>,
        ) -> Result<(), $crate::error::ProposeError> {
            self.lead_epoch()?;
            self.shell.read(id);
            Ok(())
        }

        fn compact(&mut self, snapshot: $crate::consensus::Snapshot) -> bool {
            self.shell.compact(snapshot)
        }

        fn snapshot_index(&self) -> $crate::types::Index {
            self.shell.log.snapshot_index()
        }

        fn id(&self) -> $crate::types::NodeId {
            self.shell.id
        }

        fn commit_index(&self) -> $crate::types::Index {
            self.shell.log.commit()
        }

        fn last_index(&self) -> $crate::types::Index {
            self.shell.log.last_index()
        }

        fn voters(&self) -> &[$crate::types::NodeId] {
            &self.shell.voters
        }
    };
}
pub(crate) use protocol_plumbing;

/// The state and behaviour every core shares (see the module doc).
#[derive(Debug)]
pub(crate) struct Shell<H> {
    pub(crate) id: NodeId,
    pub(crate) voters: Vec<NodeId>,
    pub(crate) self_pos: usize,
    /// The log (accepted values, history); `log.commit()` is the committed prefix.
    pub(crate) log: Log,
    pub(crate) rng: Rng,
    pub(crate) timing: Timing,
    pub(crate) limits: ReplicationLimits,
    /// Ticks since the leader was last heard from; for a leader, since the
    /// last CheckQuorum round.
    pub(crate) elapsed: u32,
    /// Ticks since the last heartbeat (a leader's) or resend (a follower's).
    pub(crate) heartbeat_elapsed: u32,
    /// The current randomized election timeout.
    pub(crate) timeout: u32,
    /// Leader only: progress by voter position and the uncommitted budget.
    pub(crate) repl: Replication,
    pub(crate) reads: ReadQueue,
    /// The latest snapshot (what a follower the log no longer reaches is
    /// sent) and its identity.
    snapshot: Option<(Snapshot, SnapshotId)>,
    /// A snapshot being received from the leader.
    incoming: Incoming,
    /// Raft and ZAB: a log must match the leader's at the snapshot's index
    /// to keep what follows it. Multi-Paxos keeps an acceptor's later
    /// slots whatever they hold.
    logs_match: bool,
    /// A log cut recovery made in memory only (the stored log had another
    /// entry at the snapshot's index): the first batch makes it durable,
    /// so that what this node writes and acknowledges next is never
    /// dropped by the same rule at a later restart.
    pending_cut: Option<Index>,
    /// Entries up to here were handed out in `Effects::committed`.
    emitted_commit: Index,
    persisted: H,
    reported: Option<RoleChange>,
}

impl<H: HardStateCommit> Shell<H> {
    /// The shell of node `id` among `voters`, from what it recovered; also
    /// returns the recovered hard state (the default on first boot).
    /// `epochs_ordered`: the log's epochs never decrease and logs that
    /// agree on an entry agree on everything before it (Raft, ZAB; not
    /// Paxos, whose chosen slots keep the ballot they were chosen in).
    ///
    /// # Errors
    /// A [`ConfigError`] for a bad membership or a recovered log that does
    /// not hold together.
    pub(crate) fn new(
        id: NodeId,
        voters: &[NodeId],
        timing: Timing,
        limits: ReplicationLimits,
        recovered: Recovered<H>,
        epochs_ordered: bool,
        seed: u64,
    ) -> Result<(Self, H), ConfigError> {
        // One order on every node, whatever order each was given: positions
        // go on the wire (a Multi-Paxos ballot names its proposer by one).
        let mut voters = voters.to_vec();
        voters.sort_unstable();
        let self_pos = crate::consensus::validate_membership(id, &voters, MAX_VOTERS)?;
        let hs = recovered.hard_state.unwrap_or_default();
        let (log, pending_cut) = recovered_log(
            recovered.snapshot.as_ref(),
            recovered.entries,
            hs.commit(),
            epochs_ordered,
        )
        .map_err(|e| ConfigError::new("recovered", e))?;
        let emitted_commit = log.snapshot_index();
        let snapshot = recovered.snapshot.map(|s| {
            let id = s.id();
            (s, id)
        });
        let mut shell = Shell {
            id,
            voters,
            self_pos,
            log,
            rng: Rng::new(seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            timing,
            limits,
            elapsed: 0,
            heartbeat_elapsed: 0,
            timeout: timing.election_ticks_min,
            repl: Replication::new(self_pos),
            reads: ReadQueue::default(),
            snapshot,
            incoming: Incoming::default(),
            logs_match: epochs_ordered,
            pending_cut,
            emitted_commit,
            persisted: hs.clone(),
            reported: None,
        };
        shell.reset_timers();
        Ok((shell, hs))
    }

    /// Ends an input batch: hands out what committed since the last batch,
    /// asks to persist `hs` if it changed, and reports `now` if it changed.
    pub(crate) fn finish_flush<M>(&mut self, hs: H, now: RoleChange, out: &mut Effects<M, H>) {
        if let Some(at) = self.pending_cut.take() {
            // Nothing of this batch is at or after it (the log holds
            // nothing there yet) unless it appends there, which cuts too.
            if out.append.first().is_none_or(|e| e.index > at) {
                out.truncate_from = Some(out.truncate_from.map_or(at, |t| t.min(at)));
            }
        }
        self.log
            .take_committed(&mut self.emitted_commit, &mut out.committed);
        if hs != self.persisted {
            // Only the commit index moved: no need to sync for it (it is
            // a hint a restart relearns), so it can ride on the next write.
            out.hard_state_must_sync |= hs.with_commit(0) != self.persisted.with_commit(0);
            out.hard_state = Some(hs.clone());
            self.persisted = hs;
        }
        if self.reported != Some(now) {
            out.role_change = Some(now);
            self.reported = Some(now);
        }
    }

    /// Cuts the log from `at` on (a follower replacing what a leader
    /// overwrote). Returns false, changing nothing, when that would cut a
    /// committed entry: only a broken leader asks for it.
    pub(crate) fn truncate<M>(&mut self, at: Index, out: &mut Effects<M, H>) -> bool {
        debug_assert!(
            !self.repl.is_leading(),
            "node {}: a leader truncates its own log at {at}",
            self.id
        );
        if !self.log.truncate(at) {
            ::log::error!("node {}: refusing to cut committed entry {at}", self.id);
            return false;
        }
        out.truncate(at);
        true
    }

    /// Drops the log through `snapshot.index`, which the host's state
    /// machine saved; kept to send to followers the log no longer reaches.
    /// False (nothing changed) unless the index is committed, held with
    /// the snapshot's epoch, and above the current snapshot.
    pub(crate) fn compact(&mut self, snapshot: Snapshot) -> bool {
        if snapshot.index <= self.log.snapshot_index()
            || snapshot.index > self.emitted_commit
            || self.log.term(snapshot.index) != Some(snapshot.epoch)
            || !self.log.compact_to(snapshot.index)
        {
            return false;
        }
        let id = snapshot.id();
        self.snapshot = Some((snapshot, id));
        true
    }

    /// A chunk of the leader's snapshot (the caller checked that it comes
    /// from the leader this node follows): the answer to send back. Once
    /// the snapshot is whole it replaces the log before it and goes to the
    /// host in `out`. A snapshot this node's committed log already covers
    /// is answered as done at once.
    pub(crate) fn receive_chunk<M>(
        &mut self,
        chunk: SnapshotChunk,
        out: &mut Effects<M, H>,
    ) -> SnapshotAck {
        let index = chunk.id.index;
        let whole = chunk.id.len;
        if index <= self.log.commit() {
            self.incoming.clear();
            return SnapshotAck {
                index,
                received: whole,
                done: true,
            };
        }
        match self.incoming.receive(chunk) {
            Received::Partial(received) => SnapshotAck {
                index,
                received,
                done: false,
            },
            Received::Complete(snapshot) => {
                self.install(snapshot, out);
                SnapshotAck {
                    index,
                    received: whole,
                    done: true,
                }
            }
        }
    }

    /// Puts `snapshot` (above the commit point) in place of the log before
    /// it. The entries after it stay when the protocol keeps them (Paxos)
    /// or the log holds the snapshot's last entry; otherwise they go.
    fn install<M>(&mut self, snapshot: Snapshot, out: &mut Effects<M, H>) {
        debug_assert!(snapshot.index > self.log.commit());
        let (index, epoch) = (snapshot.index, snapshot.epoch);
        let keep = !self.logs_match || self.log.term(index) == Some(epoch);
        let cut_after = !keep && self.log.last_index() > index;
        ::log::info!(
            "node {}: installing a snapshot through {index} ({} bytes)",
            self.id,
            snapshot.data.len()
        );
        self.log.install_snapshot(index, epoch, keep);
        self.emitted_commit = index;
        out.install(snapshot.clone(), cut_after);
        let id = snapshot.id();
        self.snapshot = Some((snapshot, id));
    }

    /// Fails every pending read (leadership was lost, `leader` known now)
    /// and forgets the leader's budget.
    pub(crate) fn stop_leading<M>(&mut self, leader: Option<NodeId>, out: &mut Effects<M, H>) {
        if self.repl.is_leading() {
            self.reads
                .fail_all(|id| out.reads_failed.push(ReadFailed { id, leader }));
        }
        self.repl.stop_leading();
    }
}

impl<H> Shell<H> {
    /// The position of voter `id`.
    pub(crate) fn pos(&self, id: NodeId) -> Option<usize> {
        self.voters.iter().position(|&v| v == id)
    }

    /// True for a cluster of one.
    pub(crate) fn is_single(&self) -> bool {
        self.voters.len() == 1
    }

    /// Positions of every voter but this node.
    pub(crate) fn peers(&self) -> impl Iterator<Item = usize> {
        let me = self.self_pos;
        (0..self.voters.len()).filter(move |&p| p != me)
    }

    /// Sends `msg` to every other voter.
    pub(crate) fn broadcast<M: Clone>(&self, msg: M, out: &mut Effects<M, H>) {
        for p in self.peers() {
            out.send(self.voters[p], msg.clone());
        }
    }

    /// Restarts the timers with a new randomized election timeout.
    pub(crate) fn reset_timers(&mut self) {
        self.elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.timeout = self.rng.range_inclusive(
            self.timing.election_ticks_min as u64,
            self.timing.election_ticks_max as u64 - 1,
        ) as u32;
    }

    /// A tick without a leader heard: true when the election timeout ran out.
    pub(crate) fn tick_election(&mut self) -> bool {
        self.elapsed += 1;
        self.elapsed >= self.timeout
    }

    /// A leader's tick: heartbeats built by `heartbeat(commit, read_round)`
    /// when due and, every election timeout, the CheckQuorum round (when
    /// `check_quorum`). Returns true when no quorum was heard from: the
    /// leader must step down.
    pub(crate) fn tick_leader<M>(
        &mut self,
        check_quorum: bool,
        out: &mut Effects<M, H>,
        heartbeat: impl Fn(Index, u64) -> M,
    ) -> bool {
        self.heartbeat_elapsed += 1;
        self.elapsed += 1;
        if self.elapsed >= self.timing.election_ticks_min {
            self.elapsed = 0;
            if check_quorum && !self.repl.quorum_active() {
                return true;
            }
        }
        if self.heartbeat_elapsed >= self.timing.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            let round = self.reads.current_round();
            self.heartbeat_all(out, |commit| heartbeat(commit, round));
        }
        false
    }

    /// Appends an entry this leader made in `epoch` and counts it against
    /// the uncommitted budget. Returns its index.
    pub(crate) fn append_local<M>(
        &mut self,
        epoch: Epoch,
        kind: EntryKind,
        data: Bytes,
        out: &mut Effects<M, H>,
    ) -> Index {
        let entry = Entry::new(epoch, self.log.last_index() + 1, kind, data);
        let (index, size) = (entry.index, entry.size());
        self.write(entry, out);
        self.repl.appended(index, size);
        index
    }

    /// A leader's proposal: refused with `Busy` when the uncommitted budget
    /// is spent, else appended in `epoch` (and committed at once in a
    /// cluster of one). The caller has checked that this node leads.
    ///
    /// # Errors
    /// [`ProposeError::Busy`], or [`ProposeError::TooLarge`] for a command
    /// over [`MAX_COMMAND_BYTES`].
    pub(crate) fn propose<M>(
        &mut self,
        epoch: Epoch,
        data: Bytes,
        out: &mut Effects<M, H>,
    ) -> Result<(Epoch, Index), ProposeError> {
        if data.len() > MAX_COMMAND_BYTES {
            return Err(ProposeError::TooLarge {
                bytes: data.len(),
                max: MAX_COMMAND_BYTES,
            });
        }
        self.repl.admit(
            data.len() + Entry::OVERHEAD,
            self.limits.max_uncommitted_bytes,
        )?;
        let index = self.append_local(epoch, EntryKind::Normal, data, out);
        if self.is_single() {
            self.commit_quorum();
        }
        Ok((epoch, index))
    }

    /// Appends `entry` to the log and to the batch's writes.
    pub(crate) fn write<M>(&mut self, entry: Entry, out: &mut Effects<M, H>) {
        out.append.push(entry.clone());
        self.log.push(entry);
    }

    /// Commits through the index a majority holds. Returns true when the
    /// commit point moved. (Raft adds its current-term rule before calling.)
    pub(crate) fn commit_quorum(&mut self) -> bool {
        let c = self.repl.quorum_index();
        self.repl.commit(&mut self.log, c)
    }

    /// The progress of the peer at `p`, marked as heard from.
    pub(crate) fn heard_from(&mut self, p: usize) -> &mut Progress {
        let pr = &mut self.repl.progress[p];
        pr.recent_active = true;
        pr
    }

    /// The peer at `p` holds the log through `matched`: pipelining starts
    /// if it was probing. Returns true when its match moved.
    pub(crate) fn on_append_ack(&mut self, p: usize, matched: Index) -> bool {
        let last = self.log.last_index();
        let base = self.log.snapshot_index();
        let pr = self.heard_from(p);
        let moved = pr.acknowledge(matched.min(last));
        // A peer that holds everything the snapshot covers needs no snapshot.
        if pr.state == ReplicationState::Probe
            || (pr.state == ReplicationState::Snapshot && pr.matched >= base)
        {
            pr.start_replicating();
        }
        moved
    }

    /// The peer at `p` answered a heartbeat of read round `read_round`
    /// (0: none): a probe may go again, a pipelined peer that lags gets an
    /// empty batch to find lost messages, and reads a quorum confirmed are
    /// ready.
    pub(crate) fn on_heartbeat_ack<M>(
        &mut self,
        p: usize,
        read_round: u64,
        out: &mut Effects<M, H>,
    ) {
        let last = self.log.last_index();
        let pr = self.heard_from(p);
        match pr.state {
            ReplicationState::Probe | ReplicationState::Snapshot => pr.paused = false,
            ReplicationState::Replicate => pr.check_needed = pr.matched < last,
        }
        if read_round > 0 {
            let n = self.voters.len();
            self.reads.acknowledge(p, read_round, n, |id, index| {
                out.reads_ready.push(ReadReady { id, index });
            });
        }
    }

    /// Sends every peer that `include` names the batches its progress
    /// allows, each wrapped by `build(log, first, entries, commit)` (`None`:
    /// not sent, and nothing more to that peer now); a pipelined peer whose heartbeat answer showed it lagging
    /// and that got nothing else gets an empty batch at its next index,
    /// whose answer shows whether pipelined messages were lost. A peer
    /// that needs entries the log no longer holds gets the next chunk of
    /// the snapshot instead, wrapped by `chunk`.
    pub(crate) fn send_batches<M>(
        &mut self,
        out: &mut Effects<M, H>,
        include: impl Fn(usize) -> bool,
        mut build: impl FnMut(&Log, Index, Vec<Entry>, Index) -> Option<M>,
        chunk: impl Fn(SnapshotChunk) -> M,
    ) {
        let commit = self.log.commit();
        for p in self.peers() {
            if !include(p) {
                continue;
            }
            let to = self.voters[p];
            if self.send_snapshot_chunk(p, out, &chunk) {
                continue;
            }
            let mut sent_any = false;
            while let Some(batch) = self.repl.next_batch(p, &self.log, &self.limits) {
                sent_any = true;
                // No message for it (Raft without the previous entry's
                // term): stop here rather than count more as in flight.
                let Some(msg) = build(&self.log, batch.first, batch.entries, commit) else {
                    break;
                };
                out.send(to, msg);
            }
            if let Some(next) = self.repl.take_check(p).filter(|_| !sent_any) {
                let commit = commit.min(self.repl.progress[p].matched);
                if let Some(msg) = build(&self.log, next, Vec::new(), commit) {
                    out.send(to, msg);
                }
            }
        }
    }

    /// When the peer at `p` needs entries the log no longer holds: sends
    /// it the next chunk of the snapshot (one at a time; a heartbeat answer
    /// or the chunk's own lets the next go) and returns true.
    pub(crate) fn send_snapshot_chunk<M>(
        &mut self,
        p: usize,
        out: &mut Effects<M, H>,
        chunk: impl Fn(SnapshotChunk) -> M,
    ) -> bool {
        let Some((snapshot, id)) = &self.snapshot else {
            return false;
        };
        let pr = &mut self.repl.progress[p];
        if pr.next > self.log.snapshot_index() {
            return false;
        }
        pr.send_snapshot(snapshot.index);
        if !pr.paused {
            pr.paused = true;
            let piece = snapshot.chunk(*id, pr.snapshot_offset, self.limits.max_bytes_per_message);
            pr.snapshot_sent = piece.offset + piece.data.len() as u64;
            out.send(self.voters[p], chunk(piece));
        }
        true
    }

    /// The peer at `p` answered a snapshot chunk: once it holds the whole
    /// snapshot, replication probes from the entry after it; until then
    /// the next chunk starts where it said.
    pub(crate) fn on_snapshot_ack(&mut self, p: usize, ack: SnapshotAck) {
        let pr = self.heard_from(p);
        if ack.done {
            pr.acknowledge(ack.index);
            if pr.state == ReplicationState::Snapshot {
                pr.probe_from(ack.index + 1);
            }
        } else if pr.state == ReplicationState::Snapshot && pr.snapshot_index == ack.index {
            pr.snapshot_offset = ack.received;
            // Only an answer to the chunk in flight lets the next go.
            if ack.received >= pr.snapshot_sent {
                pr.paused = false;
            }
        }
    }

    /// Sends every peer `build(commit)`, the commit point capped at what
    /// the peer is known to hold.
    pub(crate) fn heartbeat_all<M>(&self, out: &mut Effects<M, H>, build: impl Fn(Index) -> M) {
        for p in self.peers() {
            let commit = self.log.commit().min(self.repl.progress[p].matched);
            out.send(self.voters[p], build(commit));
        }
    }

    /// Queues a read at a leader until the next round starts.
    pub(crate) fn read(&mut self, id: ReadId) {
        self.reads.push(id);
    }

    /// Starts a read round for the reads waiting, once `ready` (the leader
    /// committed in its own epoch): a cluster of one confirms it at once,
    /// else heartbeats built by `heartbeat(commit, round)` carry it.
    pub(crate) fn start_reads<M>(
        &mut self,
        ready: bool,
        out: &mut Effects<M, H>,
        heartbeat: impl Fn(Index, u64) -> M,
    ) {
        if !ready || !self.reads.has_waiting() {
            return;
        }
        let round = self.reads.start_round(self.log.commit(), self.self_pos);
        if self.is_single() {
            self.reads
                .acknowledge(self.self_pos, round, 1, |id, index| {
                    out.reads_ready.push(ReadReady { id, index });
                });
        } else {
            self.heartbeat_all(out, |commit| heartbeat(commit, round));
        }
    }
}

/// The log a node restarts with: its snapshot (if any) and the entries
/// after it, and where the stored log must be cut to match. `logs_match`
/// (Raft, ZAB): epochs never go down, and when the entry at the
/// snapshot's index has another epoch, everything after it goes (the
/// snapshot was installed and the crash came before the log cut that went
/// with it was durable); the cut, right after the snapshot, is returned so
/// that it is made durable before anything else.
pub(crate) fn recovered_log(
    snapshot: Option<&Snapshot>,
    mut entries: Vec<Entry>,
    commit: Index,
    logs_match: bool,
) -> Result<(Log, Option<Index>), String> {
    let Some(snapshot) = snapshot else {
        if logs_match {
            Log::check_epochs_ordered(&entries)?;
        }
        return Ok((Log::from_entries(entries, commit)?, None));
    };
    let (index, epoch) = (snapshot.index, snapshot.epoch);
    let mut cut = None;
    if let Some(first) = entries.first().map(|e| e.index) {
        if first > index + 1 {
            return Err(format!(
                "the log starts at {first}, after the snapshot through {index}"
            ));
        }
        let at = entries
            .iter()
            .position(|e| e.index > index)
            .unwrap_or(entries.len());
        let conflicts = at > 0 && entries[at - 1].index == index && entries[at - 1].epoch != epoch;
        entries.drain(..at);
        if logs_match && conflicts {
            entries.clear();
            cut = Some(index + 1);
        }
    }
    if logs_match {
        Log::check_epochs_ordered(&entries)?;
        if entries.first().is_some_and(|e| e.epoch < epoch) {
            return Err(format!(
                "entry {} has a lower epoch than the snapshot before it",
                index + 1
            ));
        }
    }
    Ok((Log::after_snapshot(index, epoch, entries, commit)?, cut))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(epoch: Epoch, index: Index) -> Entry {
        Entry::new(epoch, index, EntryKind::Normal, Bytes::from_static(b"x"))
    }

    fn snap(index: Index, epoch: Epoch) -> Snapshot {
        Snapshot {
            index,
            epoch,
            data: Bytes::new(),
        }
    }

    #[test]
    fn recovery_keeps_a_log_that_matches_its_snapshot_and_cuts_one_that_does_not() {
        let log = |epochs: &[Epoch]| -> Vec<Entry> {
            epochs
                .iter()
                .enumerate()
                .map(|(i, &e)| entry(e, i as Index + 1))
                .collect()
        };
        // The entry at the snapshot's index matches: the rest stays.
        let (l, cut) = recovered_log(Some(&snap(3, 2)), log(&[1, 2, 2, 2, 3]), 0, true).unwrap();
        assert_eq!((l.snapshot_index(), l.last_index(), cut), (3, 5, None));
        // Another epoch there: the rest goes, and the cut is returned to be
        // made durable (Raft, ZAB); a Paxos acceptor keeps its slots.
        let (l, cut) = recovered_log(Some(&snap(3, 3)), log(&[1, 2, 2, 2]), 0, true).unwrap();
        assert_eq!((l.last_index(), cut), (3, Some(4)));
        let (l, cut) = recovered_log(Some(&snap(3, 3)), log(&[1, 2, 2, 2]), 0, false).unwrap();
        assert_eq!((l.last_index(), cut), (4, None));
        // A log that ends before the snapshot, or starts right after it.
        let (l, cut) = recovered_log(Some(&snap(9, 3)), log(&[1, 2]), 0, true).unwrap();
        assert_eq!((l.last_index(), l.commit(), cut), (9, 9, None));
        let after = vec![entry(3, 10), entry(3, 11)];
        let (l, _) = recovered_log(Some(&snap(9, 3)), after, 0, true).unwrap();
        assert_eq!(l.last_index(), 11);
        // A gap between the snapshot and the log is damage.
        assert!(recovered_log(Some(&snap(2, 1)), vec![entry(1, 5)], 0, true).is_err());
    }

    #[test]
    fn a_cut_recovery_made_goes_out_with_the_first_batch() {
        let recovered = Recovered {
            hard_state: None,
            snapshot: Some(snap(3, 3)),
            entries: vec![entry(1, 1), entry(2, 2), entry(2, 3), entry(2, 4)],
        };
        let limits = ReplicationLimits::default();
        let (mut shell, hs) =
            Shell::<TestHs>::new(1, &[1, 2, 3], Timing::default(), limits, recovered, true, 7)
                .unwrap();
        let mut out: Effects<(), TestHs> = Effects::default();
        let now = RoleChange {
            role: crate::types::Role::Follower,
            epoch: 0,
            leader: None,
        };
        shell.finish_flush(hs.clone(), now, &mut out);
        assert_eq!(out.truncate_from, Some(4));
        out.clear();
        shell.finish_flush(hs, now, &mut out);
        assert_eq!(out.truncate_from, None, "once");
    }

    #[derive(Clone, Debug, Default, PartialEq)]
    struct TestHs(Index);

    impl HardStateCommit for TestHs {
        fn commit(&self) -> Index {
            self.0
        }
        fn with_commit(&self, commit: Index) -> Self {
            TestHs(commit)
        }
    }

    #[test]
    fn timing_default_is_valid_and_bad_values_name_their_field() {
        assert!(Timing::default().validate().is_ok());
        let field = |t: Timing| t.validate().unwrap_err().field;
        let d = Timing::default();
        assert_eq!(
            field(Timing {
                heartbeat_ticks: 0,
                ..d
            }),
            "heartbeat_ticks"
        );
        assert_eq!(
            field(Timing {
                election_ticks_min: d.heartbeat_ticks,
                ..d
            }),
            "election_ticks_min"
        );
        assert_eq!(
            field(Timing {
                election_ticks_max: d.election_ticks_min,
                ..d
            }),
            "election_ticks_max"
        );
    }
}
