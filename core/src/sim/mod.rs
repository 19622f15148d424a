//! The deterministic simulator: protocol cores on a virtual clock and a
//! seeded faulty network (partitions, loss, duplication, reordering, delay),
//! with crash and restart where what was persisted survives and what was not
//! is lost. Every event is checked against the safety properties, client
//! histories against linearizability, and runs must show progress
//! ("sometimes" properties) so they cannot pass by doing nothing.
//!
//! A failing seed replays exactly: [`SimFailure`] prints the command.

mod checker;
mod cluster;
mod disk;
pub mod kv;
pub mod linearizability;
mod machine;
mod network;
mod node;
mod protocols;

pub use checker::{EntryId, Invariants, RoleEpoch, Violation};
pub use cluster::{OpOutcome, SimCluster, SimStats, Submit, OP_DEADLINE, TICK};
pub use machine::{linearizable_against, run_machine, MachineReport, MachineRun, ModelCheck};
pub use network::{NetCounts, NetFaults, SimNetwork};
pub use protocols::{ExtraChecks, NoExtraChecks, PaxosChecks, SimProtocol, ZabChecks};

use crate::types::{Index, NodeId};

/// Outcome of one seeded random run.
#[derive(Clone, Debug)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Number of nodes.
    pub nodes: usize,
    /// Counters.
    pub stats: SimStats,
    /// Client operations issued.
    pub ops: usize,
}

/// A failed run: what failed and how to replay it.
#[derive(Clone, Debug)]
pub struct SimFailure {
    /// The seed.
    pub seed: u64,
    /// Steps the run was asked for.
    pub steps: u64,
    /// Virtual time of the failure.
    pub at: u64,
    /// What failed.
    pub reason: String,
    /// How to replay this seed.
    pub replay: Replay,
    /// The protocol's name (`CONSENSO_SIM_PROTOCOL`).
    pub protocol: &'static str,
    /// The faults and settings this seed drew (printed with the failure).
    pub draw: String,
}

/// How a failed seed is replayed.
#[derive(Clone, Debug)]
pub enum Replay {
    /// By the named test of `core/tests/simulation.rs`, with the
    /// `CONSENSO_SIM_*` variables.
    SimulationTest(&'static str),
    /// By this whole command (a user's own run, an example).
    Command(String),
}

impl SimFailure {
    /// The failure of protocol `P`'s seed `seed` (of `steps` units, under
    /// `plan`) at time `at`.
    pub(crate) fn of<P: SimProtocol>(
        seed: u64,
        steps: u64,
        plan: &FaultPlan,
        replay: Replay,
        at: u64,
        reason: String,
    ) -> SimFailure {
        SimFailure {
            seed,
            steps,
            at,
            reason,
            replay,
            protocol: P::KIND.name(),
            draw: plan.to_string(),
        }
    }
}

impl std::fmt::Display for SimFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} seed {} failed at t={}: {}\n  drew: {}\n",
            self.protocol, self.seed, self.at, self.reason, self.draw
        )?;
        match &self.replay {
            Replay::Command(command) => write!(f, "  replay: {command}"),
            Replay::SimulationTest(test) => write!(
                f,
                "  replay: CONSENSO_SIM_PROTOCOL={} CONSENSO_SIM_SEED={} CONSENSO_SIM_STEPS={} cargo test -p consenso --test simulation {} -- --nocapture\n  (add CONSENSO_SIM_TRACE=1 to print every write, apply, read and role change, and CONSENSO_SIM_MESSAGES=t every message delivered from time t on)",
                self.protocol, self.seed, self.steps, test
            ),
        }
    }
}

/// The fault plan of a random run, drawn from its seed (swarm testing:
/// each seed runs its own mix of faults, so rare combinations get runs where
/// they dominate), and printed with a failure.
#[derive(Clone, Copy, Debug)]
pub struct FaultPlan {
    /// The seed it was drawn from.
    pub seed: u64,
    /// Cluster size: 3 or 5.
    pub nodes: usize,
    /// Network faults during the chaotic phase.
    pub net: NetFaults,
    /// Partitions come and go.
    pub partitions: bool,
    /// Nodes crash and restart.
    pub crashes: bool,
    /// Leaders crash often, soon after taking proposals (the conditions of
    /// Raft's Figure 8: entries of old epochs left on some nodes only).
    pub leader_churn: bool,
    /// How far each node's applier runs behind its executor, in time units
    /// (the runtime's apply thread can fall behind the driver).
    pub apply_lag: u64,
    /// One-way partitions: a node that hears everyone but nobody hears
    /// (or the reverse).
    pub one_way: bool,
    /// Processes pause (a stall past election timeouts) and resume.
    pub pauses: bool,
    /// Each node's clock ticks at its own rate, up to 30% fast or slow.
    pub clock_skew: bool,
    /// Crashes may also flip a bit of the node's synced data (one node per
    /// run): it refuses to start, or starts with its data whole.
    pub disk_damage: bool,
}

impl FaultPlan {
    /// The plan of seed `seed`.
    pub fn draw(seed: u64) -> FaultPlan {
        let mut rng = crate::rng::Rng::new(seed ^ 0x005E_ED0F_FA17);
        FaultPlan {
            seed,
            nodes: if rng.chance(0.5) { 3 } else { 5 },
            net: NetFaults {
                loss: [0.0, 0.0, 0.05, 0.1, 0.2][rng.below(5) as usize],
                duplicate: [0.0, 0.02, 0.05][rng.below(3) as usize],
                min_delay: 1,
                max_delay: [3, 10, 30][rng.below(3) as usize],
                // Past election timeouts (100-300 units): stale messages
                // reach nodes that moved on.
                straggle: [0.0, 0.01, 0.05, 0.1][rng.below(4) as usize],
                long_delay: 1_000,
            },
            partitions: rng.chance(0.5),
            crashes: rng.chance(0.5),
            leader_churn: rng.chance(0.25),
            apply_lag: [0, 0, 5, 40][rng.below(4) as usize],
            one_way: rng.chance(0.25),
            pauses: rng.chance(0.25),
            clock_skew: rng.chance(0.5),
            disk_damage: rng.chance(0.25),
        }
    }
}

impl FaultPlan {
    /// Sets up `sim` as the plan says: its network faults, applier lag and
    /// (with clock skew) each node's tick rate, 7 to 13 units a tick.
    pub fn apply_to<P: SimProtocol>(&self, sim: &mut SimCluster<P>) {
        sim.net.faults = self.net;
        sim.apply_lag = self.apply_lag;
        sim.disk_flip_chance = if self.disk_damage { 0.3 } else { 0.0 };
        if self.clock_skew {
            for id in sim.ids() {
                let every = 7 + sim.rng().below(7);
                sim.set_tick_every(id, every);
            }
        }
    }
}

impl std::fmt::Display for FaultPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = &self.net;
        write!(
            f,
            "nodes={} loss={} duplicate={} delay={}..{} straggle={} (up to {}) partitions={} crashes={} leader_churn={} apply_lag={} one_way={} pauses={} clock_skew={} disk_damage={}",
            self.nodes,
            n.loss,
            n.duplicate,
            n.min_delay,
            n.max_delay,
            n.straggle,
            n.long_delay,
            self.partitions,
            self.crashes,
            self.leader_churn,
            self.apply_lag,
            self.one_way,
            self.pauses,
            self.clock_skew,
            self.disk_damage
        )
    }
}

/// Clients of a random run, each with one operation at a time.
const CLIENTS: u64 = 5;

struct Client {
    id: u64,
    leader_hint: Option<NodeId>,
    op: Option<(usize, u64)>,
    next_value: u64,
}

/// Runs one seeded random run of `steps` time units with 5 clients doing
/// puts and linearizable gets on 3 keys. The last quarter of the run is
/// fault-free (every node up, network healed) so the cluster must converge.
///
/// # Errors
/// A [`SimFailure`] naming the property that failed.
pub fn run_random<P: SimProtocol>(
    seed: u64,
    steps: u64,
    config: P::Config,
    replay_test: &'static str,
) -> Result<SimReport, SimFailure> {
    let plan = FaultPlan::draw(seed);
    let fail = |at: u64, reason: String| {
        SimFailure::of::<P>(
            seed,
            steps,
            &plan,
            Replay::SimulationTest(replay_test),
            at,
            reason,
        )
    };
    // An assertion inside the node (debug builds) fails the seed, with its
    // replay line, instead of the whole range.
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_plan::<P>(steps, config, &plan, &fail)
    }));
    run.unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("a panic");
        Err(fail(0, format!("a node panicked (an assertion?): {what}")))
    })
}

/// The body of [`run_random`] for one drawn plan.
fn run_plan<P: SimProtocol>(
    steps: u64,
    config: P::Config,
    plan: &FaultPlan,
    fail: &impl Fn(u64, String) -> SimFailure,
) -> Result<SimReport, SimFailure> {
    let seed = plan.seed;
    let violation = |at: u64| move |v: Violation| fail(at, format!("{}: {}", v.property, v.detail));
    let mut sim =
        SimCluster::<P>::new(plan.nodes, config, seed).map_err(|e| fail(0, e.to_string()))?;
    plan.apply_to(&mut sim);
    let mut clients: Vec<Client> = (1..=CLIENTS)
        .map(|id| Client {
            id,
            leader_hint: None,
            op: None,
            next_value: 1,
        })
        .collect();
    let chaos_until = steps * 3 / 4;
    for t in 0..steps {
        if t == chaos_until {
            end_faults(&mut sim).map_err(violation(sim.now))?;
        }
        if t < chaos_until {
            inject_faults(&mut sim, plan).map_err(violation(sim.now))?;
        }
        for c in clients.iter_mut() {
            drive_client(&mut sim, c).map_err(violation(sim.now))?;
        }
        sim.step().map_err(violation(sim.now))?;
    }
    // One node restarts while nothing new is proposed: it must relearn
    // from the leader alone what was committed (its commit index is not
    // synced, so it recovers an older one).
    let up: Vec<NodeId> = sim
        .ids()
        .into_iter()
        .filter(|&id| sim.core(id).is_some())
        .collect();
    if !up.is_empty() {
        let id = up[sim.rng().below(up.len() as u64) as usize];
        sim.crash(id);
        sim.restart(id).map_err(violation(sim.now))?;
    }
    settle(&mut sim, steps).map_err(|e| match e {
        Ok(reason) => fail(sim.now, reason),
        Err(v) => violation(sim.now)(v),
    })?;
    sim.shutdown().map_err(violation(sim.now))?;
    check_history(&sim).map_err(|reason| fail(sim.now, reason))?;
    Ok(SimReport {
        seed,
        nodes: plan.nodes,
        stats: sim.stats,
        ops: sim.history.len(),
    })
}

/// The start of the fault-free phase: the network heals and turns
/// reliable, every node runs again (a crash scheduled for a node's next
/// event is called off: nothing would restart it).
pub(crate) fn end_faults<P: SimProtocol>(sim: &mut SimCluster<P>) -> Result<(), Violation> {
    sim.net.heal();
    sim.net.faults = NetFaults::reliable();
    for id in sim.ids() {
        sim.cancel_crash_before_sync(id);
        sim.resume(id)?;
        sim.restart(id)?;
    }
    Ok(())
}

/// One time unit's draw of partitions, crashes and restarts under `plan`.
pub(crate) fn inject_faults<P: SimProtocol>(
    sim: &mut SimCluster<P>,
    plan: &FaultPlan,
) -> Result<(), Violation> {
    let ids = sim.ids();
    let n = ids.len() as u64;
    if plan.partitions {
        if sim.net.cut_links() == 0 && sim.rng().below(300) == 0 {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for &id in &ids {
                if sim.rng().chance(0.5) {
                    a.push(id)
                } else {
                    b.push(id)
                }
            }
            sim.partition(&[a, b]);
        } else if sim.rng().below(200) == 0 {
            sim.net.heal();
        } else if sim.net.cut_links() == 0 && sim.rng().below(300) == 0 {
            // Cut the leader off from everyone.
            if let Some(&(leader, _)) = sim.leaders().first() {
                sim.disconnect(leader);
            }
        }
    }
    if plan.one_way && sim.net.cut_links() == 0 && sim.rng().below(300) == 0 {
        cut_one_way(sim);
    }
    if plan.pauses && sim.rng().below(500) == 0 {
        // Past an election timeout (150-300 units) or not.
        let id = ids[sim.rng().below(n) as usize];
        let until = sim.now + 50 + sim.rng().below(550);
        sim.pause(id, until);
    }
    if plan.leader_churn && sim.rng().below(40) == 0 {
        if let Some(&(leader, _)) = sim.leaders().first() {
            sim.crash(leader);
        }
    }
    if plan.leader_churn && sim.rng().below(15) == 0 {
        let id = ids[sim.rng().below(n) as usize];
        sim.restart(id)?;
    }
    if plan.crashes {
        if sim.rng().below(150) == 0 {
            // Crashing leaders is what leaves divergent logs behind.
            if let Some(&(leader, _)) = sim.leaders().first() {
                sim.crash(leader);
            }
        }
        if sim.rng().below(400) == 0 {
            let id = ids[sim.rng().below(n) as usize];
            if sim.rng().chance(0.5) {
                sim.crash(id);
            } else {
                sim.crash_before_sync(id);
            }
        }
        if sim.rng().below(60) == 0 {
            let id = ids[sim.rng().below(n) as usize];
            sim.restart(id)?;
        }
    }
    Ok(())
}

/// Cuts one node's links one way: nobody hears it (a leader that cannot
/// reach its followers but hears their campaigns), or it hears nobody.
fn cut_one_way<P: SimProtocol>(sim: &mut SimCluster<P>) {
    let ids = sim.ids();
    let leader = sim.leaders().first().map(|&(l, _)| l);
    let a = match leader {
        Some(l) if sim.rng().chance(0.5) => l,
        _ => ids[sim.rng().below(ids.len() as u64) as usize],
    };
    let mute = sim.rng().chance(0.5);
    for &b in ids.iter().filter(|&&b| b != a) {
        if mute {
            sim.net.set_link(a, b, false);
        } else {
            sim.net.set_link(b, a, false);
        }
    }
}

/// Client `c`'s turn: wait for its op, or now and then start a put or a
/// get at the node it believes leads. A node answers every op it took
/// (`Timeout` after [`cluster::OP_DEADLINE`]) unless it crashes or its
/// applier lags; the client gives up waiting after twice that.
fn drive_client<P: SimProtocol>(sim: &mut SimCluster<P>, c: &mut Client) -> Result<(), Violation> {
    const KEYS: u64 = 3;
    if let Some((op, started)) = c.op {
        if sim.is_complete(op) {
            c.op = None;
            if sim.history[op].ret.is_none() {
                // Timed out: that node may be cut off; try another.
                c.leader_hint = None;
            }
        } else if sim.now >= started + 2 * cluster::OP_DEADLINE {
            sim.abandon(op)?;
            c.op = None;
            c.leader_hint = None;
        }
        return Ok(());
    }
    if sim.rng().below(10) != 0 {
        return Ok(());
    }
    let ids = sim.ids();
    let target = match c.leader_hint {
        Some(l) => l,
        None => ids[sim.rng().below(ids.len() as u64) as usize],
    };
    let key = sim.rng().below(KEYS) as u8;
    let submitted = if sim.rng().chance(0.5) {
        let value = (c.id << 32) | c.next_value;
        c.next_value += 1;
        sim.client_put(c.id, target, key, value)
    } else {
        sim.client_get(c.id, target, key)
    }?;
    match submitted {
        Submit::Pending(op) => {
            c.leader_hint = Some(target);
            if !sim.is_complete(op) {
                c.op = Some((op, sim.now));
            }
        }
        Submit::Refused(hint) => c.leader_hint = hint,
    }
    Ok(())
}

/// What must hold of the clients' history once every node shut down: it is
/// linearizable (gets and the values puts replaced), and it made progress.
fn check_history<P: SimProtocol>(sim: &SimCluster<P>) -> Result<(), String> {
    if let linearizability::CheckResult::Illegal { key } = linearizability::check(&sim.history) {
        if sim.trace {
            for (i, op) in sim.history.iter().enumerate().filter(|(_, o)| o.key == key) {
                println!("op {i}: {op:?}");
            }
        }
        return Err(format!("client history of key {key} is not linearizable"));
    }
    let stats = sim.stats;
    if stats.puts_ok == 0 || stats.gets_ok == 0 {
        return Err(format!(
            "no progress: {} puts and {} gets completed",
            stats.puts_ok, stats.gets_ok
        ));
    }
    Ok(())
}

/// Waits, fault-free, for what [`check_end`] asks, at most `extra` more
/// units. A cluster that is stuck stays stuck, but one that is only
/// unlucky settles: without PreVote a node whose log is behind can win the
/// timeout race several rounds in a row, disrupting each time and losing
/// the vote (each round is a one-in-three draw in a cluster of three).
///
/// # Errors
/// `Ok(reason)` when the time ran out, `Err` for a safety violation.
fn settle<P: SimProtocol>(
    sim: &mut SimCluster<P>,
    extra: u64,
) -> Result<(), Result<String, Violation>> {
    let until = sim.now + extra;
    let target = sim
        .ids()
        .into_iter()
        .filter_map(|id| sim.core(id).map(|c| c.commit_index()))
        .max()
        .unwrap_or(0);
    loop {
        match check_end(sim, target) {
            Ok(()) => return Ok(()),
            Err(reason) if sim.now >= until => return Err(Ok(reason)),
            Err(_) => sim.run_for(TICK).map_err(Err)?,
        }
    }
}

/// What must hold at the end of the fault-free phase: a leader was elected,
/// every node follows the current one and knows committed at least
/// `target` (what was committed when the wait began: a node that restarted
/// with a lower commit index relearns it).
fn check_end<P: SimProtocol>(sim: &SimCluster<P>, target: Index) -> Result<(), String> {
    let stats = sim.stats;
    if stats.leaders_elected == 0 {
        return Err("no leader was ever elected".into());
    }
    let Some(&(leader, epoch)) = sim.leaders().iter().max_by_key(|(_, e)| *e) else {
        return Err("no leader at the end of the fault-free phase".into());
    };
    // Every node must have rejoined: a server left out for good (nothing
    // timing out) leaves the cluster without a spare.
    for id in sim
        .ids()
        .into_iter()
        .filter(|&id| !sim.refused_to_start(id))
    {
        let follows = sim.core(id).map(|c| c.leader());
        if follows != Some(Some(leader)) {
            return Err(format!(
                "node {id} does not follow leader {leader} (epoch {epoch}) at the end of the \
                 fault-free phase: {}",
                match follows {
                    None => "it is down".to_string(),
                    Some(l) => format!("its leader is {l:?}"),
                }
            ));
        }
        let commit = sim.core(id).map_or(0, |c| c.commit_index());
        if commit < target {
            return Err(format!(
                "node {id} knows commit {commit}, below the {target} committed when the \
                 fault-free phase ended"
            ));
        }
    }
    Ok(())
}
