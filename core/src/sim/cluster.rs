//! A simulated cluster: protocol cores, their storage, a key-value state
//! machine per node and the simulated network, driven by a virtual clock.
//! Every event is checked by [`Invariants`].

use super::checker::{Invariants, RoleEpoch, Violation};
use super::kv::KvStore;
use super::linearizability::{OpKind, Operation};
use super::network::{NetFaults, SimNetwork};
use super::protocols::{ExtraChecks, SimProtocol};
use crate::consensus::{Effects, Protocol, ReadId, Recovered};
use crate::error::ProposeError;
use crate::rng::Rng;
use crate::types::{Entry, Epoch, Index, NodeId, Role};
use bytes::Bytes;
use std::collections::BTreeMap;

/// Virtual time units per protocol tick.
pub const TICK: u64 = 10;

/// What survives a crash: the persisted hard state and log.
#[derive(Clone, Debug)]
struct Disk<H> {
    hard_state: Option<H>,
    log: Vec<Entry>,
}

/// A client operation waiting on a node.
#[derive(Clone, Copy, Debug)]
struct Waiting {
    op: usize,
}

struct SimNode<P: Protocol> {
    id: NodeId,
    core: Option<P>,
    disk: Disk<P::HardState>,
    kv: KvStore,
    applied: Vec<(Index, Bytes)>,
    /// Proposals by (index, epoch) waiting to be applied here.
    proposals: BTreeMap<(Index, Epoch), Waiting>,
    /// Reads by id waiting for confirmation.
    reads: BTreeMap<ReadId, Waiting>,
    next_read: ReadId,
    tick_phase: u64,
    /// Crash during the next event, before its effects are persisted.
    torn: bool,
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
    /// Events processed (ticks and deliveries).
    pub events: u64,
}

/// A simulated cluster of `P` cores with ids `1..=n`.
pub struct SimCluster<P: SimProtocol> {
    /// Virtual time.
    pub now: u64,
    nodes: Vec<SimNode<P>>,
    /// The network.
    /// The network; each message travels with its sender's epoch at
    /// sending, to count the ones that arrive stale.
    pub net: SimNetwork<(Epoch, P::Message)>,
    rng: Rng,
    checker: Invariants,
    extra: P::Checks,
    config: P::Config,
    seed: u64,
    fx: Effects<P::Message, P::HardState>,
    /// Client history (for the linearizability check).
    pub history: Vec<Operation>,
    /// Logical clock for call/return stamps.
    stamp: u64,
    /// Counters.
    pub stats: SimStats,
    /// When set, every delivered message's encoded size is added to `bytes_sent`.
    pub measure_bytes: bool,
    /// Encoded bytes of all messages sent (when `measure_bytes`).
    pub bytes_sent: u64,
    /// Completed client operations: op index -> done.
    completed: Vec<bool>,
    /// Print every write, apply, read, completion and role change
    /// (`CONSENSO_SIM_TRACE` set when the cluster was built).
    pub trace: bool,
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

impl<P: SimProtocol> SimCluster<P> {
    /// `n` nodes on a reliable network, everything drawn from `seed`.
    ///
    /// # Errors
    /// The protocol's [`crate::ConfigError`] when `config` is invalid.
    pub fn new(n: usize, config: P::Config, seed: u64) -> Result<Self, crate::ConfigError> {
        let voters: Vec<NodeId> = (1..=n as NodeId).collect();
        let mut rng = Rng::new(seed);
        let mut nodes = Vec::with_capacity(n);
        for &id in &voters {
            let core = P::new(
                id,
                &voters,
                config.clone(),
                Recovered::default(),
                rng.next_u64(),
            )?;
            nodes.push(SimNode {
                id,
                core: Some(core),
                disk: Disk {
                    hard_state: None,
                    log: Vec::new(),
                },
                kv: KvStore::default(),
                applied: Vec::new(),
                proposals: BTreeMap::new(),
                reads: BTreeMap::new(),
                next_read: 1,
                tick_phase: rng.below(TICK),
                torn: false,
            });
        }
        Ok(SimCluster {
            now: 0,
            nodes,
            net: SimNetwork::new(NetFaults::reliable()),
            rng,
            checker: Invariants::new(P::LOG_MATCHING),
            extra: P::Checks::default(),
            config,
            seed,
            fx: Effects::default(),
            history: Vec::new(),
            stamp: 0,
            stats: SimStats::default(),
            measure_bytes: false,
            bytes_sent: 0,
            completed: Vec::new(),
            trace: std::env::var_os("CONSENSO_SIM_TRACE").is_some(),
        })
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

    /// Commands applied by `id`, in order (index and bytes).
    pub fn applied(&self, id: NodeId) -> &[(Index, Bytes)] {
        &self.nodes[Self::idx(id)].applied
    }

    /// Persisted log length of `id`.
    pub fn persisted_len(&self, id: NodeId) -> usize {
        self.nodes[Self::idx(id)].disk.log.len()
    }

    fn role_epoch(core: &P) -> RoleEpoch {
        RoleEpoch {
            role: core.role(),
            epoch: core.epoch(),
        }
    }

    /// Runs `f` on node `id`'s core and carries out the effects it produced.
    fn with_core<R>(
        &mut self,
        id: NodeId,
        f: impl FnOnce(&mut P, &mut Effects<P::Message, P::HardState>) -> R,
    ) -> Result<Option<R>, Violation> {
        let i = Self::idx(id);
        let Some(core) = self.nodes[i].core.as_mut() else {
            return Ok(None);
        };
        let before = Self::role_epoch(core);
        let mut fx = std::mem::take(&mut self.fx);
        let r = f(core, &mut fx);
        core.flush(&mut fx);
        if self.nodes[i].torn {
            // Crash before the batch was synced: nothing of it was persisted
            // or sent, and the core's memory is gone with the process.
            self.nodes[i].torn = false;
            fx.clear();
            self.fx = fx;
            self.crash(id);
            return Ok(None);
        }
        let Some(core) = self.nodes[i].core.as_ref() else {
            return Ok(None);
        };
        let after = Self::role_epoch(core);
        let commit = core.commit_index();
        let result = self.carry_out(id, before, after, commit, &mut fx);
        fx.clear();
        self.fx = fx;
        self.stats.events += 1;
        result.map(|()| Some(r))
    }

    fn carry_out(
        &mut self,
        id: NodeId,
        before: RoleEpoch,
        after: RoleEpoch,
        commit: Index,
        fx: &mut Effects<P::Message, P::HardState>,
    ) -> Result<(), Violation> {
        self.checker.on_effects(id, before, after, commit, fx)?;
        if let Some(core) = self.nodes[Self::idx(id)].core.as_ref() {
            self.extra.check(id, core, fx, self.checker.committed())?;
        }
        self.stats.leaders_elected = self.checker.leaders_elected;
        self.stats.committed = self.checker.committed_len();
        let i = Self::idx(id);
        let n_nodes = self.nodes.len();
        let node = &mut self.nodes[i];
        // Persist.
        if self.trace && (fx.truncate_from.is_some() || !fx.append.is_empty()) {
            println!(
                "t={} node {id} write trunc {:?} append {:?}",
                self.now,
                fx.truncate_from,
                fx.append
                    .iter()
                    .map(|e| (
                        e.index,
                        e.epoch,
                        super::kv::decode_put(&e.data).map(|x| x.1)
                    ))
                    .collect::<Vec<_>>()
            );
        }
        if let Some(hs) = fx.hard_state.take() {
            node.disk.hard_state = Some(hs);
        }
        if let Some(t) = fx.truncate_from {
            if (t as usize) <= node.disk.log.len() {
                self.stats.truncations += 1;
            }
            node.disk.log.truncate(t.saturating_sub(1) as usize);
        }
        node.disk.log.append(&mut fx.append);
        let campaigns = matches!(after.role, Role::Candidate | Role::Leader)
            && !matches!(before.role, Role::Candidate | Role::Leader);
        let inherited = |e: &Entry| e.index > commit && e.origin < after.epoch;
        if campaigns && node.disk.log.iter().rev().any(inherited) {
            self.stats.campaigns_over_uncommitted += 1;
        }
        // Send.
        for (to, msg) in fx.messages.drain(..) {
            if to == 0 || to as usize > n_nodes {
                continue;
            }
            if self.measure_bytes {
                self.bytes_sent += postcard::to_allocvec(&msg).map_or(0, |b| b.len() as u64);
            }
            self.net
                .send(&mut self.rng, self.now, id, to, (after.epoch, msg));
        }
        // Apply.
        if self.trace {
            if let Some(rc) = fx.role_change {
                println!(
                    "t={} node {id} {} ({:?}) {} leader {:?}",
                    self.now,
                    P::KIND.role_name(rc.role),
                    rc.role,
                    P::KIND.epoch_label(rc.epoch),
                    rc.leader
                );
            }
            for e in fx.committed.iter() {
                println!(
                    "t={} node {id} apply {} epoch {} data {:?}",
                    self.now,
                    e.index,
                    e.epoch,
                    super::kv::decode_put(&e.data)
                );
            }
        }
        for e in fx.committed.drain(..) {
            if e.kind == crate::types::EntryKind::Normal {
                node.kv.apply(&e.data);
                node.applied.push((e.index, e.data.clone()));
            }
            if let Some(w) = node.proposals.remove(&(e.index, e.origin)) {
                if self.trace {
                    println!(
                        "t={} node {id} completes op {} at stamp {}",
                        self.now,
                        w.op,
                        self.stamp + 1
                    );
                }
                self.stamp += 1;
                complete(
                    &mut self.history,
                    &mut self.completed,
                    w.op,
                    self.stamp,
                    None,
                );
                self.stats.puts_ok += 1;
            }
            // Proposals at this index with another identity were overwritten:
            // like the runtime, say `Dropped`, a definite "did not happen"
            // the linearizability check holds the cluster to.
            let stale: Vec<_> = node
                .proposals
                .range((e.index, 0)..=(e.index, Epoch::MAX))
                .map(|(k, _)| *k)
                .collect();
            for k in stale {
                if let Some(w) = node.proposals.remove(&k) {
                    self.stamp += 1;
                    complete(
                        &mut self.history,
                        &mut self.completed,
                        w.op,
                        self.stamp,
                        None,
                    );
                    self.history[w.op].failed = true;
                    self.stats.puts_dropped += 1;
                }
            }
        }
        for r in fx.reads_ready.drain(..) {
            if self.trace {
                println!(
                    "t={} node {id} read ready at {} (applied {})",
                    self.now,
                    r.index,
                    node.applied.last().map_or(0, |a| a.0)
                );
            }
            if let Some(w) = node.reads.remove(&r.id) {
                // The simulator applies synchronously, so `r.index` is applied.
                let key = self.history[w.op].key;
                let value = node.kv.get(key);
                if self.trace {
                    println!(
                        "t={} node {id} read op {} key {key} -> {value:?} stamp {}",
                        self.now,
                        w.op,
                        self.stamp + 1
                    );
                }
                self.stamp += 1;
                complete(
                    &mut self.history,
                    &mut self.completed,
                    w.op,
                    self.stamp,
                    Some(value),
                );
                self.stats.gets_ok += 1;
            }
        }
        for r in fx.reads_failed.drain(..) {
            self.stats.reads_failed += 1;
            node.reads.remove(&r.id);
        }
        Ok(())
    }

    /// Advances virtual time by one unit: delivers due messages and ticks the
    /// nodes whose tick falls now.
    ///
    /// # Errors
    /// The first safety violation.
    pub fn step(&mut self) -> Result<(), Violation> {
        self.now += 1;
        while let Some((from, to, (sent_in, msg))) = self.net.next_due(self.now) {
            let stale = self.nodes[Self::idx(to)]
                .core
                .as_ref()
                .is_some_and(|c| c.epoch() > sent_in);
            self.stats.stale_deliveries += u64::from(stale);
            self.with_core(to, |core, fx| core.step(from, msg, fx))?;
        }
        for i in 0..self.nodes.len() {
            if self.now % TICK == self.nodes[i].tick_phase {
                let id = self.nodes[i].id;
                self.with_core(id, |core, fx| core.tick(fx))?;
            }
        }
        Ok(())
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

    /// Proposes `data` on node `id` (like 6.5840's `Start`).
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
            .with_core(id, |core, fx| core.propose(data, fx))?
            .unwrap_or(Err(ProposeError::Closed)))
    }

    /// Submits a client put of `value` to `key` through node `id`.
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
        let cmd = super::kv::encode_put(key, value);
        let call = self.stamp + 1;
        match self.propose(id, &cmd)? {
            Ok((epoch, index)) => {
                self.stamp = call;
                let op = self.push_op(client, key, OpKind::Put(value), call);
                let node = &mut self.nodes[Self::idx(id)];
                // A single-node cluster commits and applies within `propose`.
                let applied_now = node
                    .applied
                    .iter()
                    .rev()
                    .find(|(i, _)| *i == index)
                    .map(|(_, d)| d.as_ref() == cmd.as_slice());
                match applied_now {
                    Some(true) => {
                        if self.trace {
                            println!("t={} node {id} completes op {op} at once", self.now);
                        }
                        self.stamp += 1;
                        complete(&mut self.history, &mut self.completed, op, self.stamp, None);
                        self.stats.puts_ok += 1;
                    }
                    Some(false) => {}
                    None => {
                        node.proposals.insert((index, epoch), Waiting { op });
                    }
                }
                Ok(Submit::Pending(op))
            }
            Err(ProposeError::NotLeader { leader }) => Ok(Submit::Refused(leader)),
            Err(_) => Ok(Submit::Refused(None)),
        }
    }

    /// Submits a client linearizable get of `key` through node `id`.
    ///
    /// # Errors
    /// A violation from carrying out the effects.
    pub fn client_get(&mut self, client: u64, id: NodeId, key: u8) -> Result<Submit, Violation> {
        let i = Self::idx(id);
        if self.nodes[i].core.is_none() {
            return Ok(Submit::Refused(None));
        }
        let read_id = self.nodes[i].next_read;
        self.nodes[i].next_read += 1;
        // Register the op first: the read may complete within this call.
        self.stamp += 1;
        let call = self.stamp;
        let op = self.push_op(client, key, OpKind::Get, call);
        self.nodes[i].reads.insert(read_id, Waiting { op });
        match self.with_core(id, |core, fx| core.read(read_id, fx))? {
            Some(Ok(())) => Ok(Submit::Pending(op)),
            other => {
                self.nodes[i].reads.remove(&read_id);
                // Never happened: drop it from the history.
                self.history.pop();
                self.completed.pop();
                let hint = match other {
                    Some(Err(ProposeError::NotLeader { leader })) => leader,
                    _ => None,
                };
                Ok(Submit::Refused(hint))
            }
        }
    }

    fn push_op(&mut self, client: u64, key: u8, kind: OpKind, call: u64) -> usize {
        self.history.push(Operation {
            client,
            key,
            kind,
            call,
            ret: None,
            output: None,
            failed: false,
        });
        self.completed.push(false);
        self.history.len() - 1
    }

    /// True when client op `op` has returned.
    pub fn is_complete(&self, op: usize) -> bool {
        self.completed.get(op).copied().unwrap_or(false)
    }

    /// Gives up on op `op`: a pending put stays in the history with an
    /// unknown outcome; a late completion is ignored.
    pub fn abandon(&mut self, op: usize) {
        if let Some(c) = self.completed.get_mut(op) {
            if !*c {
                *c = true; // closed without a return stamp
            }
        }
        for n in &mut self.nodes {
            n.proposals.retain(|_, w| w.op != op);
            n.reads.retain(|_, w| w.op != op);
        }
    }

    /// Crashes node `id`: its volatile state is lost, its disk survives.
    pub fn crash(&mut self, id: NodeId) {
        let n = &mut self.nodes[Self::idx(id)];
        if n.core.take().is_some() {
            self.stats.crashes += 1;
        }
        n.proposals.clear();
        n.reads.clear();
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
    /// # Panics
    /// Never on valid input: recovery errors are reported as a violation.
    ///
    /// # Errors
    /// A violation when the node cannot be rebuilt from its own disk.
    pub fn restart(&mut self, id: NodeId) -> Result<(), Violation> {
        let i = Self::idx(id);
        if self.nodes[i].core.is_some() {
            return Ok(());
        }
        let voters = self.ids();
        let recovered = Recovered {
            hard_state: self.nodes[i].disk.hard_state.clone(),
            entries: self.nodes[i].disk.log.clone(),
        };
        let seed = self.rng.next_u64();
        let core =
            P::new(id, &voters, self.config.clone(), recovered, seed).map_err(|e| Violation {
                property: "Recovery",
                detail: format!("node {id} could not restart from its disk: {e}"),
            })?;
        self.checker.on_restart(id, core.commit_index());
        let n = &mut self.nodes[i];
        n.core = Some(core);
        n.kv = KvStore::default();
        n.applied.clear();
        // Apply what the recovered commit index covers.
        self.with_core(id, |_, _| ())?;
        Ok(())
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
            if let Some((_, c)) = n.applied.iter().find(|(i, _)| *i == index) {
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

fn complete(
    history: &mut [Operation],
    completed: &mut [bool],
    op: usize,
    stamp: u64,
    output: Option<Option<u64>>,
) {
    if completed[op] {
        return;
    }
    completed[op] = true;
    history[op].ret = Some(stamp);
    if let Some(v) = output {
        history[op].output = v;
    }
}
