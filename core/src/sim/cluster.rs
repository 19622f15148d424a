//! A simulated cluster: protocol cores, their storage, a key-value state
//! machine per node and the simulated network, driven by a virtual clock.
//! Every event is checked by [`Invariants`].

use super::checker::{Invariants, RoleEpoch, Violation};
use super::disk::SimDisk;
use super::kv;
use super::linearizability::{OpKind, Operation};
use super::network::{NetFaults, SimNetwork};
use super::node::{
    MachineFactory, Op, Outcome, Outcomes, SimHost, SimMachine, SimNode, SIM_STORAGE,
};
use super::protocols::{ExtraChecks, SimProtocol};
use crate::consensus::{Effects, Recovered};
use crate::error::ProposeError;
use crate::rng::Rng;
use crate::runtime::apply::Applier;
use crate::runtime::executor::{Executor, Stopped};
use crate::runtime::{SnapshotPolicy, StateMachine};
use crate::storage::{FileStorage, Storage};
use crate::types::{Entry, Epoch, Index, NodeId, Role};
use bytes::Bytes;
use std::collections::HashMap;

/// Virtual time units per protocol tick.
pub const TICK: u64 = 10;

/// Where a client operation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpStatus {
    /// Waiting for its answer.
    Open,
    /// Answered (its return is in the history).
    Returned,
    /// Answered with an error that leaves its outcome unknown (timed out,
    /// closed, not leader any more).
    Failed,
    /// Outcome unknown, unanswered: its node crashed or its client stopped
    /// waiting.
    Unknown,
}

/// A client operation's bookkeeping beside its history entry.
#[derive(Clone, Copy, Debug)]
struct OpState {
    status: OpStatus,
    node: NodeId,
    /// A put or command: where its entry was proposed, `(epoch, index)`.
    epoch: Epoch,
    index: Index,
    /// A get: the highest index of a put acknowledged before it was called
    /// (its read index must cover it).
    floor: Index,
    /// Its node paused while it waited (the answer may come late).
    delayed: bool,
}

/// Per-run counters, used for "sometimes" properties.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Distinct leaders elected.
    pub leaders_elected: u64,
    /// Highest index known committed.
    pub committed: Index,
    /// Client puts that completed.
    pub puts_ok: u64,
    /// Client puts answered `Dropped` (their slot went to another entry).
    pub puts_dropped: u64,
    /// Client gets that completed.
    pub gets_ok: u64,
    /// Crashes.
    pub crashes: u64,
    /// Batches that truncated a node's log (a follower dropping entries a
    /// new leader did not have).
    pub truncations: u64,
    /// Messages delivered to a node already in a newer epoch than their
    /// sender was when it sent them.
    pub stale_deliveries: u64,
    /// Reads a leader gave up on (it lost leadership before a quorum
    /// confirmed them).
    pub reads_failed: u64,
    /// Nodes that campaigned for or took over leadership holding entries
    /// of older epochs above their commit index (the entries a new leader
    /// must commit or drop).
    pub campaigns_over_uncommitted: u64,
    /// Operations a node's executor answered `Timeout` (their deadline
    /// passed while they waited).
    pub timeouts: u64,
    /// Operations answered `Closed` when the nodes shut down.
    pub closed: u64,
    /// Process pauses.
    pub pauses: u64,
    /// Events processed (ticks and deliveries).
    pub events: u64,
    /// Unsynced writes lost or torn when their process died.
    pub disk_writes_lost: u64,
    /// File names created, renamed or removed in a directory not synced
    /// since, lost when their process died.
    pub disk_names_lost: u64,
    /// Restarts that found a torn write and cut it off the log.
    pub torn_tails_cut: u64,
    /// Bits flipped in synced data.
    pub disk_bits_flipped: u64,
    /// Nodes that refused to start on a damaged disk (they stay down).
    pub disk_refusals: u64,
    /// Snapshots nodes took of their machines (compacting their logs).
    pub snapshots_taken: u64,
    /// Snapshots nodes installed from their leaders.
    pub snapshots_installed: u64,
    /// Log segments snapshots let nodes delete.
    pub segments_removed: u64,
}

/// A simulated cluster of `P` cores with ids `1..=n`.
pub struct SimCluster<P: SimProtocol> {
    /// Virtual time.
    pub now: u64,
    nodes: Vec<SimNode<P>>,
    /// The network; each message travels with its sender's epoch at
    /// sending, to count the ones that arrive stale.
    pub net: SimNetwork<(Epoch, P::Message)>,
    /// How far each node's applier runs behind its executor, in time units
    /// (0: within the same event), as the runtime's apply thread can.
    pub apply_lag: u64,
    rng: Rng,
    checker: Invariants,
    extra: P::Checks,
    config: P::Config,
    seed: u64,
    fx: Effects<P::Message, P::HardState>,
    /// Client history (for the linearizability check).
    pub history: Vec<Operation>,
    ops: Vec<OpState>,
    /// The highest index of a put acknowledged so far.
    acked_index: Index,
    /// Answers of the current event, not yet in the history.
    outcomes: Outcomes,
    /// Builds the user's machine the nodes run instead of the key-value
    /// store ([`SimCluster::run_user_machine`]).
    machines: Option<MachineFactory>,
    /// The responses to users' commands, by op.
    command_responses: HashMap<Op, Vec<u8>>,
    /// Logical clock for call/return stamps.
    stamp: u64,
    /// Counters.
    pub stats: SimStats,
    /// When set, every delivered message's encoded size is added to `bytes_sent`.
    pub measure_bytes: bool,
    /// Encoded bytes of all messages sent (when `measure_bytes`).
    pub bytes_sent: u64,
    /// Print every write, apply, read, completion and role change
    /// (`CONSENSO_SIM_TRACE` set when the cluster was built).
    pub trace: bool,
    /// Print every message delivered from this time on
    /// (`CONSENSO_SIM_MESSAGES=t` set when the cluster was built).
    pub trace_messages_after: Option<u64>,
    /// The disk under every node's FileStorage.
    sim_disk: SimDisk,
    /// Chance that a crash also flips a bit of the node's synced data (at
    /// most one node per run, so that a majority stays whole).
    pub disk_flip_chance: f64,
    /// When every node snapshots its machine and compacts its log.
    snapshot_policy: SnapshotPolicy,
}

/// What became of a client operation ([`SimCluster::op_outcome`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpOutcome {
    /// Its call stamp.
    pub call: u64,
    /// Its return stamp, once answered with a result (or `Dropped`).
    pub ret: Option<u64>,
    /// Answered `Dropped`: it never took effect.
    pub dropped: bool,
    /// A user's command answered with a result: the response its node's
    /// machine gave.
    pub response: Option<Vec<u8>>,
    /// The node it was submitted to.
    pub node: NodeId,
    /// A put or command: `(epoch, index)` it was proposed at.
    pub at: (Epoch, Index),
}

/// How an operation submitted with [`SimCluster::client_put`] or
/// [`SimCluster::client_get`] was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Submit {
    /// Accepted: the op index in the history.
    Pending(usize),
    /// Refused at once (not leader, busy, node down).
    Refused(Option<NodeId>),
}

fn violation(property: &'static str, detail: String) -> Violation {
    Violation { property, detail }
}

impl<P: SimProtocol> SimCluster<P> {
    /// `n` nodes on a reliable network, everything drawn from `seed`.
    ///
    /// # Errors
    /// The protocol's [`crate::ConfigError`] when `config` is invalid.
    pub fn new(n: usize, config: P::Config, seed: u64) -> Result<Self, crate::ConfigError> {
        let voters: Vec<NodeId> = (1..=n as NodeId).collect();
        let mut rng = Rng::new(seed);
        // Drawn apart, so that the seed's other choices stay as they were:
        // most runs snapshot every few entries (followers fall behind the
        // compaction point and catch up from snapshots), some never do.
        let mut policy_rng = Rng::new(seed ^ 0x5A17_5A17_5A17_5A17);
        let snapshot_policy = if policy_rng.chance(0.2) {
            SnapshotPolicy::NEVER
        } else {
            SnapshotPolicy {
                entries: policy_rng.range_inclusive(2, 40),
                bytes: 0,
            }
        };
        let mut nodes = Vec::with_capacity(n);
        let sim_disk = SimDisk::default();
        for &id in &voters {
            let core = P::new(
                id,
                &voters,
                config.clone(),
                Recovered::default(),
                rng.next_u64(),
            )?;
            let dir = std::path::PathBuf::from(format!("/node{id}"));
            let store = FileStorage::open_with_small_segments(sim_disk.clone(), &dir, SIM_STORAGE)
                .map_err(|e| crate::ConfigError::new("storage", e.to_string()))?;
            nodes.push(SimNode::new(
                id,
                core,
                rng.below(TICK),
                store,
                snapshot_policy,
            ));
        }
        Ok(SimCluster {
            now: 0,
            nodes,
            net: SimNetwork::new(NetFaults::reliable()),
            apply_lag: 0,
            rng,
            checker: Invariants::new(P::LOG_MATCHING),
            extra: P::Checks::default(),
            config,
            seed,
            fx: Effects::default(),
            history: Vec::new(),
            ops: Vec::new(),
            acked_index: 0,
            outcomes: Outcomes::default(),
            machines: None,
            command_responses: HashMap::new(),
            stamp: 0,
            stats: SimStats::default(),
            measure_bytes: false,
            bytes_sent: 0,
            trace: std::env::var_os("CONSENSO_SIM_TRACE").is_some(),
            trace_messages_after: std::env::var("CONSENSO_SIM_MESSAGES")
                .ok()
                .and_then(|t| t.parse().ok()),
            sim_disk,
            disk_flip_chance: 0.0,
            snapshot_policy,
        })
    }

    /// When nodes snapshot their machines from now on (each run draws one
    /// from its seed; scenarios set their own).
    pub fn set_snapshot_policy(&mut self, policy: SnapshotPolicy) {
        self.snapshot_policy = policy;
        for n in &mut self.nodes {
            n.policy = policy;
            n.applier.set_policy(policy);
        }
    }

    /// The snapshot policy nodes follow.
    pub fn snapshot_policy(&self) -> SnapshotPolicy {
        self.snapshot_policy
    }

    /// The last index node `id`'s latest durable snapshot covers (0: none).
    pub fn snapshot_index(&self, id: NodeId) -> Index {
        self.nodes[Self::idx(id)]
            .disk
            .snapshot
            .as_ref()
            .map_or(0, |s| s.index)
    }

    /// True when node `id` refused to start on a damaged disk (it stays
    /// down for the rest of the run).
    pub fn refused_to_start(&self, id: NodeId) -> bool {
        self.nodes[Self::idx(id)].refused
    }

    /// The seed this cluster was built from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True for a cluster of no nodes (never: `new` needs at least one).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node ids, `1..=n`.
    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    fn idx(id: NodeId) -> usize {
        id as usize - 1
    }

    /// The seeded generator (for tests that draw their own choices).
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// True when the node is running.
    pub fn is_up(&self, id: NodeId) -> bool {
        self.nodes[Self::idx(id)].core.is_some()
    }

    /// Role and epoch of a running node.
    pub fn state(&self, id: NodeId) -> Option<(Role, Epoch)> {
        self.nodes[Self::idx(id)]
            .core
            .as_ref()
            .map(|c| (c.role(), c.epoch()))
    }

    /// The core of a running node, for inspection.
    pub fn core(&self, id: NodeId) -> Option<&P> {
        self.nodes[Self::idx(id)].core.as_ref()
    }

    /// Commands applied by `id`'s state machine, in order (index and
    /// bytes), since it last started.
    pub fn applied(&self, id: NodeId) -> &[(Index, Bytes)] {
        &self.nodes[Self::idx(id)].applier.machine().applied
    }

    /// The last index of `id`'s persisted log (its snapshot's when no
    /// entry follows it).
    pub fn persisted_len(&self, id: NodeId) -> usize {
        let disk = &self.nodes[Self::idx(id)].disk;
        let base = disk.snapshot.as_ref().map_or(0, |s| s.index);
        disk.log.last().map_or(base, |e| e.index.max(base)) as usize
    }

    fn role_epoch(core: &P) -> RoleEpoch {
        RoleEpoch {
            role: core.role(),
            epoch: core.epoch(),
        }
    }

    /// Runs `f` on node `id`'s core (and its executor, for proposals and
    /// reads that wait on it), then carries out the effects it produced.
    fn with_core<R>(
        &mut self,
        id: NodeId,
        f: impl FnOnce(&mut P, &mut Executor<Op, Op, u64>, &mut Effects<P::Message, P::HardState>) -> R,
    ) -> Result<Option<R>, Violation> {
        let i = Self::idx(id);
        let node = &mut self.nodes[i];
        let Some(core) = node.core.as_mut().filter(|_| node.paused_until.is_none()) else {
            return Ok(None);
        };
        let before = Self::role_epoch(core);
        let mut fx = std::mem::take(&mut self.fx);
        let r = f(core, &mut node.exec, &mut fx);
        core.flush(&mut fx);
        let result = self.carry_out(i, before, &mut fx);
        fx.clear();
        self.fx = fx;
        self.stats.events += 1;
        result.map(|done| done.then_some(r))
    }

    /// Checks the batch `fx` of node `i`, then has its executor carry it
    /// out. False when the node crashed at its sync (a torn batch).
    fn carry_out(
        &mut self,
        i: usize,
        before: RoleEpoch,
        fx: &mut Effects<P::Message, P::HardState>,
    ) -> Result<bool, Violation> {
        let id = self.nodes[i].id;
        let Some(core) = self.nodes[i].core.as_ref() else {
            return Ok(false);
        };
        let after = Self::role_epoch(core);
        let commit = core.commit_index();
        let torn = self.nodes[i].torn;
        if !torn {
            self.checker.on_effects(id, before, after, commit, fx)?;
            self.extra.check(id, core, fx, self.checker.committed())?;
        }
        self.stats.leaders_elected = self.checker.leaders_elected;
        self.stats.committed = self.checker.committed_len();
        self.trace_batch(id, fx);
        let n_nodes = self.nodes.len();
        let node = &mut self.nodes[i];
        let Some(core) = node.core.as_ref() else {
            return Ok(false);
        };
        if torn {
            self.sim_disk.set_dying(&node.dir, true);
        }
        let mut host = SimHost {
            torn,
            id,
            kind: P::KIND,
            now: self.now,
            epoch: after.epoch,
            n_nodes,
            disk: &mut node.disk,
            store: node.store.as_mut(),
            torn_writes: &mut node.torn_writes,
            to_apply: &mut node.to_apply,
            apply_at: self.now + self.apply_lag,
            net: &mut self.net,
            rng: &mut self.rng,
            stats: &mut self.stats,
            bytes_sent: self.measure_bytes.then_some(&mut self.bytes_sent),
            outcomes: &mut self.outcomes,
            trace: self.trace,
            staged: Default::default(),
        };
        let result = node.exec.carry_out(core, fx, &mut host);
        if torn {
            self.sim_disk.set_dying(&node.dir, false);
        }
        if let Some(store) = &node.store {
            // Segments go at the sync after a snapshot's.
            let removed = store.segments_removed();
            self.stats.segments_removed += removed - node.segments_removed;
            node.segments_removed = removed;
        }
        match result {
            Ok(()) => {}
            // The process died at its sync: nothing of the batch was
            // persisted, and nothing that depended on it was sent (a
            // leader's appends may have left before the sync).
            Err(Stopped::Storage(_)) if torn => {
                if self.trace {
                    println!("t={} node {id} died at its sync", self.now);
                }
                self.crash(id);
                return Ok(false);
            }
            Err(e) => return Err(violation("Executor", format!("node {id} stopped: {e:?}"))),
        }
        let campaigns = matches!(after.role, Role::Candidate | Role::Leader)
            && !matches!(before.role, Role::Candidate | Role::Leader);
        let inherited = |e: &Entry| e.index > commit && e.origin < after.epoch;
        if campaigns && node.disk.log.iter().rev().any(inherited) {
            self.stats.campaigns_over_uncommitted += 1;
        }
        self.settle(i)?;
        self.apply_due(i)?;
        Ok(true)
    }

    fn trace_batch(&self, id: NodeId, fx: &Effects<P::Message, P::HardState>) {
        if !self.trace {
            return;
        }
        for e in fx.committed.iter() {
            let put = kv::decode_put(&e.data);
            println!(
                "t={} node {id} commits {} epoch {} data {put:?}",
                self.now, e.index, e.epoch
            );
        }
    }

    /// Runs node `i`'s applier over the work due now, recording its
    /// answers after each piece (a read's value is the machine's state
    /// when it is served).
    fn apply_due(&mut self, i: usize) -> Result<(), Violation> {
        let now = self.now;
        while self.nodes[i]
            .to_apply
            .front()
            .is_some_and(|(at, _)| *at <= now)
        {
            let Some((_, msg)) = self.nodes[i].to_apply.pop_front() else {
                break;
            };
            self.nodes[i].applier.handle(msg, &mut self.outcomes);
            self.settle(i)?;
            self.compact_if_due(i)?;
        }
        Ok(())
    }

    /// When node `i`'s policy calls for it: snapshots its machine (as the
    /// apply thread does), saves the snapshot and compacts the log (as the
    /// driver does on receiving it).
    fn compact_if_due(&mut self, i: usize) -> Result<(), Violation> {
        let node = &mut self.nodes[i];
        let Some(snapshot) = node.applier.due_snapshot() else {
            return Ok(());
        };
        let Some(core) = node.core.as_mut() else {
            return Ok(());
        };
        if !core.compact(snapshot.clone()) {
            return Ok(());
        }
        if let Some(store) = node.store.as_mut() {
            store.save_snapshot_in_background(&snapshot).map_err(|e| {
                violation(
                    "Executor",
                    format!("node {} could not save a snapshot: {e}", node.id),
                )
            })?;
        }
        node.disk.save_snapshot(&snapshot);
        self.stats.snapshots_taken += 1;
        if self.trace {
            println!(
                "t={} node {} snapshots through {}",
                self.now, node.id, snapshot.index
            );
        }
        Ok(())
    }

    /// Records the answers node `i` gave in the history, checking that each
    /// operation is answered once and that a read covers every write
    /// acknowledged before it began.
    fn settle(&mut self, i: usize) -> Result<(), Violation> {
        for outcome in std::mem::take(&mut self.outcomes.0) {
            match outcome {
                Outcome::Proposal(op, Ok(response)) => {
                    let command = self.history[op].kind == OpKind::Command;
                    let replaced = (!command).then(|| kv::decode_value(&response));
                    if self.answer(op, replaced)? {
                        self.stats.puts_ok += u64::from(!command);
                        self.acked_index = self.acked_index.max(self.ops[op].index);
                        if command {
                            self.command_responses.insert(op, response);
                        }
                    }
                }
                // A definite "did not happen" the linearizability check
                // holds the cluster to.
                Outcome::Proposal(op, Err(ProposeError::Dropped)) => {
                    if self.answer(op, None)? {
                        self.history[op].failed = true;
                        self.stats.puts_dropped += 1;
                    }
                }
                Outcome::Read(op, Ok(index)) => {
                    let floor = self.ops[op].floor;
                    if index < floor {
                        return Err(violation(
                            "ReadIndex",
                            format!(
                                "op {op}: read index {index} misses a write acknowledged at \
                                 {floor} before the read began"
                            ),
                        ));
                    }
                    let key = self.history[op].key;
                    let value = self.nodes[i].applier.machine().kv.get(key);
                    if self.answer(op, Some(value))? {
                        self.stats.gets_ok += 1;
                    }
                }
                // Failed, timed out or closed: it may or may not take effect.
                Outcome::Read(op, Err(e)) | Outcome::Proposal(op, Err(e)) => {
                    match e {
                        ProposeError::NotLeader { leader } => {
                            self.check_hint(self.nodes[i].id, leader)?;
                            self.stats.reads_failed += 1;
                        }
                        ProposeError::Timeout => self.stats.timeouts += 1,
                        ProposeError::Closed => self.stats.closed += 1,
                        _ => {}
                    }
                    self.fail_op(op)?;
                }
            }
        }
        Ok(())
    }

    /// Checks that `op` was not answered before. False when its client
    /// stopped waiting already (the late answer is ignored).
    fn first_answer(&self, op: Op) -> Result<bool, Violation> {
        match self.ops[op].status {
            OpStatus::Open => Ok(true),
            OpStatus::Unknown => Ok(false),
            OpStatus::Returned | OpStatus::Failed => Err(violation(
                "ExactlyOnce",
                format!("op {op} was answered twice"),
            )),
        }
    }

    /// Answers `op` with an error that leaves its outcome unknown.
    fn fail_op(&mut self, op: Op) -> Result<(), Violation> {
        if self.first_answer(op)? {
            self.ops[op].status = OpStatus::Failed;
        }
        Ok(())
    }

    /// Returns `op` with `output` now. False when its client stopped
    /// waiting already (the late answer is ignored).
    fn answer(&mut self, op: Op, output: Option<Option<u64>>) -> Result<bool, Violation> {
        if !self.first_answer(op)? {
            return Ok(false);
        }
        self.stamp += 1;
        if self.trace {
            println!(
                "t={} op {op} returns {output:?} at {}",
                self.now, self.stamp
            );
        }
        self.ops[op].status = OpStatus::Returned;
        self.history[op].ret = Some(self.stamp);
        if let Some(v) = output {
            self.history[op].output = v;
        }
        Ok(true)
    }

    fn give_up(&mut self, op: Op) {
        if self.ops[op].status == OpStatus::Open {
            self.ops[op].status = OpStatus::Unknown;
        }
    }

    /// Advances virtual time by one unit: delivers due messages, ticks the
    /// nodes whose tick falls now (expiring what waited past its
    /// deadline), and runs the appliers' due work.
    ///
    /// # Errors
    /// The first safety violation.
    pub fn step(&mut self) -> Result<(), Violation> {
        self.now += 1;
        while let Some((from, to, (sent_in, msg))) = self.net.next_due(self.now) {
            let node = &mut self.nodes[Self::idx(to)];
            if node.paused_until.is_some() && node.core.is_some() {
                node.held.push((from, sent_in, msg));
            } else {
                self.deliver(from, to, sent_in, msg)?;
            }
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].paused_until.is_some_and(|t| t <= self.now) {
                self.resume(self.nodes[i].id)?;
            }
            if self.nodes[i].paused_until.is_some() {
                continue;
            }
            if self.nodes[i].ticks_at(self.now) {
                let id = self.nodes[i].id;
                self.with_core(id, |core, _, fx| core.tick(fx))?;
                self.expire(i)?;
            }
            self.apply_due(i)?;
        }
        Ok(())
    }

    fn deliver(
        &mut self,
        from: NodeId,
        to: NodeId,
        sent_in: Epoch,
        msg: P::Message,
    ) -> Result<(), Violation> {
        let stale = self.nodes[Self::idx(to)]
            .core
            .as_ref()
            .is_some_and(|c| c.epoch() > sent_in);
        self.stats.stale_deliveries += u64::from(stale);
        if self.trace_messages_after.is_some_and(|t| self.now >= t) {
            println!("t={} {from}->{to} {msg:?}", self.now);
        }
        self.with_core(to, |core, _, fx| core.step(from, msg, fx))?;
        Ok(())
    }

    /// Pauses node `id` (a process stalled by the OS, a collector or a
    /// debugger) until time `until`: it neither ticks nor applies, and what
    /// reaches it waits. Like the runtime's driver after a stall, it does
    /// not make up the ticks it missed.
    pub fn pause(&mut self, id: NodeId, until: u64) {
        let node = &mut self.nodes[Self::idx(id)];
        if node.core.is_some() && node.paused_until.is_none() {
            node.paused_until = Some(until);
            self.stats.pauses += 1;
            for o in self.ops.iter_mut().filter(|o| o.node == id) {
                o.delayed = true;
            }
        }
    }

    /// Resumes a paused node: what reached it meanwhile is handled now, in
    /// the order it arrived.
    ///
    /// # Errors
    /// The first safety violation.
    pub fn resume(&mut self, id: NodeId) -> Result<(), Violation> {
        let node = &mut self.nodes[Self::idx(id)];
        node.paused_until = None;
        for (from, sent_in, msg) in std::mem::take(&mut node.held) {
            self.deliver(from, id, sent_in, msg)?;
        }
        Ok(())
    }

    /// Makes node `id`'s clock tick every `every` time units instead of
    /// every [`TICK`] (a skewed clock: its timeouts run fast or slow).
    pub fn set_tick_every(&mut self, id: NodeId, every: u64) {
        self.nodes[Self::idx(id)].tick_every = every.max(1);
    }

    fn expire(&mut self, i: usize) -> Result<(), Violation> {
        if self.nodes[i].core.is_some() {
            self.nodes[i].exec.expire(self.now, &mut self.outcomes);
        }
        self.settle(i)
    }

    /// Runs `units` steps.
    ///
    /// # Errors
    /// The first safety violation.
    pub fn run_for(&mut self, units: u64) -> Result<(), Violation> {
        for _ in 0..units {
            self.step()?;
        }
        Ok(())
    }

    /// Proposes `data` on node `id` (like 6.5840's `Start`), with no client
    /// waiting on it.
    ///
    /// # Errors
    /// A violation from carrying out the effects.
    pub fn propose(
        &mut self,
        id: NodeId,
        data: &[u8],
    ) -> Result<Result<(Epoch, Index), ProposeError>, Violation> {
        let data = Bytes::copy_from_slice(data);
        Ok(self
            .with_core(id, |core, _, fx| core.propose(data, fx))?
            .unwrap_or(Err(ProposeError::Closed)))
    }

    /// A `NotLeader` from node `id` names a leader when the node knows one,
    /// and never the node itself (it would send the client back to it).
    fn check_hint(&self, id: NodeId, hint: Option<NodeId>) -> Result<(), Violation> {
        let known = self.core(id).and_then(|c| c.leader()).filter(|&l| l != id);
        if hint == Some(id) || (hint.is_none() && known.is_some()) {
            return Err(violation(
                "LeaderHint",
                format!("node {id} answered NotLeader naming {hint:?} while it knows {known:?}"),
            ));
        }
        Ok(())
    }

    /// Makes every node run `new_machine()`'s machine instead of the
    /// key-value store (for users' commands: [`SimCluster::client_command`]).
    /// Call it before anything was applied.
    pub fn run_user_machine<M: StateMachine>(&mut self, new_machine: impl Fn() -> M + 'static) {
        let factory: MachineFactory =
            std::rc::Rc::new(move || Box::new(new_machine()) as Box<dyn StateMachine>);
        for n in &mut self.nodes {
            n.applier = Applier::new(SimMachine::new(Some(&factory)), None, n.policy)
                .expect("a fresh machine needs no snapshot");
        }
        self.machines = Some(factory);
    }

    /// Submits a user's command through node `id` for `client`; it is
    /// answered as a put is, with the response of the node's machine (see
    /// [`SimCluster::op_outcome`]).
    ///
    /// # Errors
    /// A violation from carrying out the effects.
    pub fn client_command(
        &mut self,
        client: u64,
        id: NodeId,
        command: &[u8],
    ) -> Result<Submit, Violation> {
        let data = Bytes::copy_from_slice(command);
        let op = self.push_op(client, id, 0, OpKind::Command);
        self.submit_proposal(op, id, data)
    }

    fn submit_proposal(&mut self, op: Op, id: NodeId, data: Bytes) -> Result<Submit, Violation> {
        let deadline = self.now + OP_DEADLINE;
        // Where the entry went, even if the node dies at this call's sync.
        let mut placed = None;
        let proposed = self.with_core(id, |core, exec, fx| {
            let result = exec.propose(core, data, deadline, op, fx);
            placed = result.as_ref().ok().copied();
            result
        })?;
        if let (None, Some((epoch, index))) = (&proposed, placed) {
            self.ops[op].epoch = epoch;
            self.ops[op].index = index;
        }
        match proposed {
            Some(Ok((epoch, index))) => {
                self.ops[op].epoch = epoch;
                self.ops[op].index = index;
                Ok(Submit::Pending(op))
            }
            // The node died at the sync of this very call: its entry may
            // have left with the leader's appends (they go before the
            // sync), so the put may yet take effect. Its outcome is
            // unknown, and it stays in the history.
            None if self.ops[op].status == OpStatus::Unknown => Ok(Submit::Pending(op)),
            other => self.refused(id, other.map(|r| r.map_err(|(e, _)| e).map(|_| ()))),
        }
    }

    /// What became of op `op` so far.
    pub fn op_outcome(&self, op: usize) -> Option<OpOutcome> {
        let (h, o) = (self.history.get(op)?, self.ops.get(op)?);
        Some(OpOutcome {
            call: h.call,
            ret: h.ret,
            dropped: h.failed,
            response: self.command_responses.get(&op).cloned(),
            node: o.node,
            at: (o.epoch, o.index),
        })
    }

    /// True when the entry committed at `index` is the one proposed there
    /// in `epoch` with `data` (its identity: a Paxos leader that re-proposed
    /// it under its own ballot kept its origin).
    pub fn committed_as(&self, epoch: Epoch, index: Index, data: &[u8]) -> bool {
        let Some(&(committed, _)) = index
            .checked_sub(1)
            .and_then(|i| self.checker.committed().get(i as usize))
        else {
            return false;
        };
        // The hash, as the checker compares: a Paxos re-proposal carries
        // another ballot but the same origin and bytes.
        let proposed = Entry::new(
            epoch,
            index,
            crate::types::EntryKind::Normal,
            data.to_vec().into(),
        );
        crate::sim::EntryId::of(&proposed).hash == committed.hash && committed.origin == epoch
    }

    /// Submits a client put of `value` to `key` through node `id`; the
    /// client waits for it until the node's executor times it out.
    ///
    /// # Errors
    /// A violation from carrying out the effects.
    pub fn client_put(
        &mut self,
        client: u64,
        id: NodeId,
        key: u8,
        value: u64,
    ) -> Result<Submit, Violation> {
        let data = Bytes::from(kv::encode_put(key, value));
        // Registered first: a cluster of one answers within this call.
        let op = self.push_op(client, id, key, OpKind::Put(value));
        self.submit_proposal(op, id, data)
    }

    /// Submits a client linearizable get of `key` through node `id`.
    ///
    /// # Errors
    /// A violation from carrying out the effects.
    pub fn client_get(&mut self, client: u64, id: NodeId, key: u8) -> Result<Submit, Violation> {
        let op = self.push_op(client, id, key, OpKind::Get);
        let deadline = self.now + OP_DEADLINE;
        let read = self.with_core(id, |core, exec, fx| exec.read(core, deadline, op, fx))?;
        match read {
            Some(Ok(_)) => Ok(Submit::Pending(op)),
            other => self.refused(id, other.map(|r| r.map_err(|(e, _)| e).map(|_| ()))),
        }
    }

    /// The op just pushed was refused (`Some(Err)`) or its node is down
    /// (`None`): it never happened, so it leaves the history.
    fn refused(
        &mut self,
        id: NodeId,
        result: Option<Result<(), ProposeError>>,
    ) -> Result<Submit, Violation> {
        self.history.pop();
        self.ops.pop();
        match result {
            Some(Err(e)) => {
                if let ProposeError::NotLeader { leader } = e {
                    self.check_hint(id, leader)?;
                }
                match e {
                    ProposeError::NotLeader { leader } => Ok(Submit::Refused(leader)),
                    _ => Ok(Submit::Refused(None)),
                }
            }
            _ => Ok(Submit::Refused(None)),
        }
    }

    fn push_op(&mut self, client: u64, node: NodeId, key: u8, kind: OpKind) -> Op {
        self.stamp += 1;
        self.history.push(Operation {
            client,
            key,
            kind,
            call: self.stamp,
            ret: None,
            output: None,
            failed: false,
        });
        self.ops.push(OpState {
            status: OpStatus::Open,
            node,
            epoch: 0,
            index: 0,
            floor: self.acked_index,
            delayed: false,
        });
        self.history.len() - 1
    }

    /// True when client op `op` has returned or its outcome became unknown.
    pub fn is_complete(&self, op: usize) -> bool {
        self.ops.get(op).is_some_and(|o| o.status != OpStatus::Open)
    }

    /// Gives up on op `op`: a pending put stays in the history with an
    /// unknown outcome; a late answer is ignored.
    ///
    /// # Errors
    /// A violation when its node has run all along (no crash, no pause)
    /// and still not answered: every operation a running node took is
    /// answered by its deadline ([`OP_DEADLINE`]) plus the applier's lag.
    pub fn abandon(&mut self, op: usize) -> Result<(), Violation> {
        let Some(state) = self.ops.get(op).copied() else {
            return Ok(());
        };
        if state.status == OpStatus::Open && !state.delayed {
            return Err(violation(
                "ExactlyOnce",
                format!(
                    "op {op} on node {} was never answered, its node up all along",
                    state.node
                ),
            ));
        }
        self.give_up(op);
        Ok(())
    }

    /// Crashes node `id`: its volatile state is lost (the operations waiting
    /// on it never get an answer), its disk survives.
    pub fn crash(&mut self, id: NodeId) {
        let machine = SimMachine::new(self.machines.as_ref());
        let i = Self::idx(id);
        let was_up = self.nodes[i].core.is_some();
        self.nodes[i].crash(machine);
        if was_up {
            self.stats.crashes += 1;
            let dir = self.nodes[i].dir.clone();
            let lost = self.sim_disk.crash(&dir, &mut self.rng);
            self.stats.disk_writes_lost += lost.writes;
            self.stats.disk_names_lost += lost.names;
            let flip = self.disk_flip_chance > 0.0
                && !self.nodes.iter().any(|m| m.flipped)
                && self.rng.chance(self.disk_flip_chance);
            if flip {
                if let Some((file, at)) = self.sim_disk.flip_bit(&dir, &mut self.rng) {
                    self.nodes[i].flipped = true;
                    self.stats.disk_bits_flipped += 1;
                    if self.trace {
                        println!(
                            "t={} node {id}: bit flipped in {} at {at}",
                            self.now,
                            file.display()
                        );
                    }
                }
            }
        }
        for o in self.ops.iter_mut().filter(|o| o.node == id) {
            if o.status == OpStatus::Open {
                o.status = OpStatus::Unknown;
            }
        }
    }

    /// Crashes node `id` in the middle of its next event: the core handles
    /// the input, but the process dies before the batch is synced, so none of
    /// its effects persist or leave the node.
    pub fn crash_before_sync(&mut self, id: NodeId) {
        let n = &mut self.nodes[Self::idx(id)];
        if n.core.is_some() {
            n.torn = true;
        }
    }

    /// Calls off a [`SimCluster::crash_before_sync`] of node `id` that has not
    /// happened yet.
    pub fn cancel_crash_before_sync(&mut self, id: NodeId) {
        self.nodes[Self::idx(id)].torn = false;
    }

    /// Restarts a crashed node from its disk (no-op when it runs).
    ///
    /// # Errors
    /// A violation when the node cannot be rebuilt from its own disk.
    pub fn restart(&mut self, id: NodeId) -> Result<(), Violation> {
        let i = Self::idx(id);
        if self.nodes[i].core.is_some() || self.nodes[i].refused {
            return Ok(());
        }
        let voters = self.ids();
        let Some(recovered) = self.reopen(i)? else {
            return Ok(());
        };
        let seed = self.rng.next_u64();
        let core =
            P::new(id, &voters, self.config.clone(), recovered.clone(), seed).map_err(|e| {
                violation(
                    "Recovery",
                    format!("node {id} could not restart from its disk: {e}"),
                )
            })?;
        let snapshot = recovered.snapshot.clone();
        let (log, _) = crate::consensus::shell::recovered_log(
            snapshot.as_ref(),
            recovered.entries.clone(),
            0,
            P::LOG_MATCHING,
        )
        .map_err(|e| violation("Recovery", format!("node {id}: {e}")))?;
        let after = log.slice(1, log.last_index()).to_vec();
        self.checker
            .on_restart(id, core.commit_index(), log.snapshot_index(), &after)?;
        self.extra
            .on_restart(id, (log.snapshot_epoch(), log.snapshot_index()));
        let n = &mut self.nodes[i];
        n.core = Some(core);
        let machine = SimMachine::new(self.machines.as_ref());
        n.applier = Applier::new(machine, snapshot.as_ref(), n.policy).map_err(|e| {
            violation(
                "Recovery",
                format!("node {id} could not restore its snapshot: {e}"),
            )
        })?;
        // Apply what the recovered commit index covers.
        self.with_core(id, |_, _, _| ())?;
        Ok(())
    }

    /// Opens node `i`'s FileStorage again after a crash and checks what it
    /// recovered against what the node synced: the synced log and hard
    /// state come back whole; of the batch it died syncing, any part may.
    /// `None` when the node refuses to start on a damaged disk (it stays
    /// down).
    fn reopen(&mut self, i: usize) -> Result<Option<Recovered<P::HardState>>, Violation> {
        let id = self.nodes[i].id;
        let dir = self.nodes[i].dir.clone();
        let store =
            match FileStorage::open_with_small_segments(self.sim_disk.clone(), &dir, SIM_STORAGE) {
                Ok(store) => store,
                Err(e) if self.nodes[i].flipped => {
                    if self.trace {
                        println!("t={} node {id} refuses to start: {e}", self.now);
                    }
                    self.stats.disk_refusals += 1;
                    self.nodes[i].refused = true;
                    return Ok(None);
                }
                Err(e) => {
                    return Err(violation(
                        "Durability",
                        format!("node {id} could not reopen its storage: {e}"),
                    ))
                }
            };
        let durability = |detail: String| violation("Durability", format!("node {id}: {detail}"));
        let hard_state = match store.hard_state() {
            Ok(Some(bytes)) => Some(
                postcard::from_bytes::<P::HardState>(&bytes)
                    .map_err(|e| durability(format!("hard state does not decode: {e}")))?,
            ),
            Ok(None) => None,
            Err(e) => return Err(durability(format!("hard state unreadable: {e}"))),
        };
        let entries = store
            .entries()
            .map_err(|e| durability(format!("log unreadable: {e}")))?;
        let snapshot = store
            .snapshot()
            .map_err(|e| durability(format!("snapshot unreadable: {e}")))?;
        if store.torn_tail().is_some() {
            self.stats.torn_tails_cut += 1;
        }
        let node = &mut self.nodes[i];
        let torn = node.torn_writes.take();
        if hard_state != node.disk.hard_state {
            return Err(durability(format!(
                "recovered hard state {hard_state:?}, synced {:?}",
                node.disk.hard_state
            )));
        }
        if snapshot != node.disk.snapshot {
            return Err(durability(format!(
                "recovered the snapshot through {:?}, saved the one through {:?}",
                snapshot.as_ref().map(|s| s.index),
                node.disk.snapshot.as_ref().map(|s| s.index)
            )));
        }
        // Entries the snapshot covers may or may not be left. After it:
        // below the first write of the batch it died syncing, the synced
        // log comes back exactly; from there, each entry is the synced one
        // or the one the batch wrote.
        let base = snapshot.as_ref().map_or(0, |s| s.index);
        let after: Vec<&Entry> = entries.iter().filter(|e| e.index > base).collect();
        let synced: Vec<&Entry> = node.disk.log.iter().filter(|e| e.index > base).collect();
        let cut = torn.as_ref().map_or(Index::MAX, |t| {
            let first_append = t.append.first().map_or(Index::MAX, |e| e.index);
            t.truncate_from.unwrap_or(Index::MAX).min(first_append)
        });
        let keep = synced.iter().take_while(|e| e.index < cut).count();
        if after.len() < keep || after[..keep] != synced[..keep] {
            return Err(durability(format!(
                "recovered {} entries after the snapshot through {base}, synced {}; they differ below index {}",
                after.len(),
                synced.len(),
                base + keep as Index + 1
            )));
        }
        if after.first().is_some_and(|e| e.index != base + 1) {
            return Err(durability(format!(
                "the recovered log does not continue the snapshot through {base}"
            )));
        }
        for e in &after[keep..] {
            let from_batch = torn
                .as_ref()
                .is_some_and(|t| t.append.iter().any(|a| a == *e));
            let was_synced = node.disk.entry(e.index) == Some(*e);
            if !from_batch && !was_synced {
                return Err(durability(format!(
                    "recovered entry {} that was never written",
                    e.index
                )));
            }
        }
        node.disk.log = entries.iter().filter(|e| e.index > base).cloned().collect();
        node.store = Some(store);
        node.segments_removed = 0;
        Ok(Some(Recovered {
            hard_state,
            snapshot,
            entries,
        }))
    }

    /// Stops every running node as `Node::shutdown` does: its executor
    /// answers what waits on it `Closed`, its applier finishes the work it
    /// was handed. Every operation whose node is up must then be answered.
    ///
    /// # Errors
    /// A violation naming an operation left unanswered.
    pub fn shutdown(&mut self) -> Result<(), Violation> {
        for i in 0..self.nodes.len() {
            if self.nodes[i].core.is_none() {
                continue;
            }
            self.nodes[i].exec.close(&mut self.outcomes);
            self.settle(i)?;
            while let Some((_, msg)) = self.nodes[i].to_apply.pop_front() {
                self.nodes[i].applier.handle(msg, &mut self.outcomes);
                self.settle(i)?;
            }
            self.nodes[i].applier.close(&mut self.outcomes);
            self.settle(i)?;
            self.nodes[i].core = None;
        }
        match self.ops.iter().position(|o| o.status == OpStatus::Open) {
            Some(op) => Err(violation(
                "Shutdown",
                format!("op {op} on node {} was never answered", self.ops[op].node),
            )),
            None => Ok(()),
        }
    }

    /// Cuts node `id` off from every other node, both ways.
    pub fn disconnect(&mut self, id: NodeId) {
        for other in self.ids() {
            if other != id {
                self.net.set_link(id, other, false);
                self.net.set_link(other, id, false);
            }
        }
    }

    /// Reconnects node `id` to every node that is not itself disconnected.
    pub fn connect(&mut self, id: NodeId) {
        for other in self.ids() {
            if other != id {
                self.net.set_link(id, other, true);
                self.net.set_link(other, id, true);
            }
        }
    }

    /// Splits the nodes into groups that cannot reach one another.
    pub fn partition(&mut self, groups: &[Vec<NodeId>]) {
        self.net.heal();
        for (gi, g) in groups.iter().enumerate() {
            for (hi, h) in groups.iter().enumerate() {
                if gi != hi {
                    for &a in g {
                        for &b in h {
                            self.net.set_link(a, b, false);
                        }
                    }
                }
            }
        }
    }

    /// True when `a` and `b` can talk both ways.
    pub fn connected(&self, a: NodeId, b: NodeId) -> bool {
        self.net.linked(a, b) && self.net.linked(b, a)
    }

    /// The leaders among running nodes, as (id, epoch).
    pub fn leaders(&self) -> Vec<(NodeId, Epoch)> {
        self.nodes
            .iter()
            .filter_map(|n| n.core.as_ref().map(|c| (n.id, c)))
            .filter(|(_, c)| c.role() == Role::Leader)
            .map(|(id, c)| (id, c.epoch()))
            .collect()
    }

    /// How many nodes applied a command at `index`, and that command
    /// (`Err` when two nodes applied different commands there).
    pub fn n_committed(&self, index: Index) -> Result<(usize, Option<Bytes>), String> {
        let mut count = 0;
        let mut cmd: Option<Bytes> = None;
        for n in &self.nodes {
            let applied = &n.applier.machine().applied;
            if let Some((_, c)) = applied.iter().find(|(i, _)| *i == index) {
                if let Some(prev) = &cmd {
                    if prev != c {
                        return Err(format!("nodes applied different commands at index {index}"));
                    }
                }
                cmd = Some(c.clone());
                count += 1;
            }
        }
        Ok((count, cmd))
    }

    /// The safety checker (read-only).
    pub fn checker(&self) -> &Invariants {
        &self.checker
    }
}

/// How long a client operation waits in a node's executor before it is
/// answered `Timeout` (its outcome then unknown).
pub const OP_DEADLINE: u64 = 200;
