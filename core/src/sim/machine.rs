//! Your own state machine and workload under the simulator: the protocol
//! runs with the same seeded faults as its own seed ranges (partitions,
//! loss, held-back messages, crashes, torn batches, pauses, skewed clocks),
//! every node runs your machine, and every replica of it is checked after
//! every command it applies.
//!
//! Checks, besides the protocol's own safety properties:
//! - your invariant holds on every replica after every command;
//! - replicas agree: every replica that applies the command at an index
//!   returns the same response (a state machine that reads a clock, a
//!   random number or a hash map's order fails here);
//! - with a model, the responses your clients got from the nodes are
//!   linearizable: some sequential run of the model, respecting real time,
//!   gives each of them ([`check_commands`]; commands that never took
//!   effect left out);
//! - the run made progress (some command was applied).

use super::linearizability::{check_commands, CommandOp};
use super::{
    end_faults, inject_faults, FaultPlan, Replay, SimCluster, SimFailure, SimProtocol, Submit,
    Violation, OP_DEADLINE,
};
use crate::rng::Rng;
use crate::runtime::StateMachine;
use crate::types::{Index, NodeId};
use std::collections::HashMap;

/// Checks the clients' commands and responses (see [`MachineRun::model`]).
pub type ModelCheck = Box<dyn Fn(&[CommandOp]) -> Result<(), String>>;

/// A user's machine, workload and invariant, to run under the simulator.
///
/// `M` is built fresh for every node and every replica, and again when a
/// restarted node re-applies fewer commands than its replica had seen. A
/// restarted node that re-applies at least as many needs no rebuild:
/// committed commands never change, so the replica already holds the state
/// they produce.
pub struct MachineRun<M, N, W, C>
where
    N: Fn() -> M + Clone + 'static,
    W: FnMut(&mut Rng) -> Vec<u8>,
    C: Fn(&M) -> Result<(), String>,
{
    /// Builds an empty machine.
    pub new_machine: N,
    /// The next client command (drawn from the seeded generator).
    pub workload: W,
    /// What must hold on a replica after every command it applies.
    pub invariant: C,
    /// The command that replays one seed; the seed is appended to it.
    pub replay: String,
    /// Checks the commands that took effect, with the responses their
    /// clients got, once the run is over; `None`: replicas must agree, and
    /// that is all. [`linearizable_against`] makes one from a machine that
    /// is its own model.
    pub model: Option<ModelCheck>,
}

/// A model check with `new_model()` as the sequential specification (see
/// [`check_commands`]), for [`MachineRun::model`].
pub fn linearizable_against<S>(new_model: impl Fn() -> S + 'static) -> Option<ModelCheck>
where
    S: StateMachine + Clone + Eq + std::hash::Hash,
{
    Some(Box::new(move |ops| check_commands(ops, &new_model)))
}

/// What a passing run did.
#[derive(Clone, Debug)]
pub struct MachineReport {
    /// The seed.
    pub seed: u64,
    /// Commands the clients proposed to a node that accepted them.
    pub proposed: u64,
    /// Commands the most advanced replica applied.
    pub applied: u64,
    /// Replicas rebuilt after a restart.
    pub rebuilds: u64,
    /// Commands whose responses the model checked.
    pub checked: u64,
}

/// One replica: the machine and how many of its node's applied commands
/// it has seen.
struct Replica<M> {
    machine: M,
    seen: usize,
}

/// Clients of a run, each with one command at a time.
const CLIENTS: u64 = 3;

/// A client: the node it believes leads and its command in flight (op,
/// submitted at).
struct Client {
    id: u64,
    leader_hint: Option<NodeId>,
    op: Option<(usize, u64)>,
}

/// What the run keeps beside the cluster.
struct State<M> {
    replicas: HashMap<NodeId, Replica<M>>,
    /// The response every replica gave at an index.
    responses: HashMap<Index, Vec<u8>>,
    /// Every command a node took, by op.
    sent: Vec<(usize, Vec<u8>)>,
    report: MachineReport,
}

/// Runs seed `seed` of `steps` time units: clients send `workload` commands
/// to the node they believe leads, under the seed's faults for the first
/// three quarters, then a fault-free quarter; then the nodes shut down.
///
/// # Errors
/// A [`SimFailure`] naming the broken invariant, the disagreement, the
/// responses that fit no run of the model, or the protocol property, with
/// the command that replays the seed.
pub fn run_machine<P, M, N, W, C>(
    seed: u64,
    steps: u64,
    config: P::Config,
    run: &mut MachineRun<M, N, W, C>,
) -> Result<MachineReport, SimFailure>
where
    P: SimProtocol,
    M: StateMachine,
    N: Fn() -> M + Clone + 'static,
    W: FnMut(&mut Rng) -> Vec<u8>,
    C: Fn(&M) -> Result<(), String>,
{
    let plan = FaultPlan::draw(seed);
    let replay = Replay::Command(format!("{} {seed}", run.replay));
    let fail = |at: u64, reason: String| {
        SimFailure::of::<P>(seed, steps, &plan, replay.clone(), at, reason)
    };
    let protocol = |at: u64| move |v: Violation| fail(at, format!("{}: {}", v.property, v.detail));
    let mut sim =
        SimCluster::<P>::new(plan.nodes, config, seed).map_err(|e| fail(0, e.to_string()))?;
    plan.apply_to(&mut sim);
    sim.run_user_machine(run.new_machine.clone());
    let mut workload_rng = Rng::new(seed ^ 0x0B5E_55ED);
    let mut clients: Vec<Client> = (1..=CLIENTS)
        .map(|id| Client {
            id,
            leader_hint: None,
            op: None,
        })
        .collect();
    let mut state = State {
        replicas: HashMap::new(),
        responses: HashMap::new(),
        sent: Vec::new(),
        report: MachineReport {
            seed,
            proposed: 0,
            applied: 0,
            rebuilds: 0,
            checked: 0,
        },
    };
    let chaos_until = steps * 3 / 4;
    for t in 0..steps {
        if t == chaos_until {
            end_faults(&mut sim).map_err(protocol(sim.now))?;
        } else if t < chaos_until {
            inject_faults(&mut sim, &plan).map_err(protocol(sim.now))?;
        }
        for c in &mut clients {
            drive(
                &mut sim,
                c,
                &mut workload_rng,
                &mut run.workload,
                &mut state,
            )
            .map_err(protocol(sim.now))?;
        }
        sim.step().map_err(protocol(sim.now))?;
        feed_replicas(&sim, run, &mut state).map_err(|r| fail(sim.now, r))?;
    }
    sim.shutdown().map_err(protocol(sim.now))?;
    feed_replicas(&sim, run, &mut state).map_err(|r| fail(sim.now, r))?;
    if state.report.applied == 0 {
        return Err(fail(sim.now, "no progress: no command was applied".into()));
    }
    if let Some(model) = &run.model {
        let ops = commands_that_took_effect(&sim, &state);
        state.report.checked = ops.len() as u64;
        model(&ops).map_err(|r| fail(sim.now, format!("client responses: {r}")))?;
    }
    Ok(state.report)
}

/// Client `c`'s turn: wait for its command (giving up after twice the
/// nodes' deadline), or now and then send the next one.
fn drive<P: SimProtocol, M>(
    sim: &mut SimCluster<P>,
    c: &mut Client,
    rng: &mut Rng,
    workload: &mut impl FnMut(&mut Rng) -> Vec<u8>,
    state: &mut State<M>,
) -> Result<(), Violation> {
    if let Some((op, started)) = c.op {
        if sim.is_complete(op) {
            c.op = None;
        } else if sim.now >= started + 2 * OP_DEADLINE {
            sim.abandon(op)?;
            c.op = None;
            c.leader_hint = None;
        }
        return Ok(());
    }
    if rng.below(5) != 0 {
        return Ok(());
    }
    let ids = sim.ids();
    let target = c
        .leader_hint
        .unwrap_or(ids[rng.below(ids.len() as u64) as usize]);
    let command = workload(rng);
    match sim.client_command(c.id, target, &command)? {
        Submit::Pending(op) => {
            state.report.proposed += 1;
            state.sent.push((op, command));
            c.leader_hint = Some(target);
            c.op = Some((op, sim.now));
        }
        Submit::Refused(hint) => c.leader_hint = hint,
    }
    Ok(())
}

/// Applies what each node applied since the last call to its replica,
/// checking the invariant and that replicas answer alike.
fn feed_replicas<P, M, N, W, C>(
    sim: &SimCluster<P>,
    run: &MachineRun<M, N, W, C>,
    state: &mut State<M>,
) -> Result<(), String>
where
    P: SimProtocol,
    M: StateMachine,
    N: Fn() -> M + Clone + 'static,
    W: FnMut(&mut Rng) -> Vec<u8>,
    C: Fn(&M) -> Result<(), String>,
{
    for id in sim.ids() {
        let applied = sim.applied(id);
        let replica = state.replicas.entry(id).or_insert_with(|| Replica {
            machine: (run.new_machine)(),
            seen: 0,
        });
        if applied.len() < replica.seen {
            // Restarted: the node applies its log again from the start.
            replica.machine = (run.new_machine)();
            replica.seen = 0;
            state.report.rebuilds += 1;
        }
        for (index, command) in &applied[replica.seen..] {
            let response = replica.machine.apply(*index, command);
            (run.invariant)(&replica.machine).map_err(|broken| {
                format!("invariant broken on node {id} after index {index}: {broken}")
            })?;
            match state.responses.get(index) {
                Some(first) if *first != response => {
                    return Err(format!(
                        "replicas disagree at index {index}: node {id} answered \
                         {response:?}, another {first:?}"
                    ))
                }
                Some(_) => {}
                None => {
                    state.responses.insert(*index, response);
                }
            }
        }
        replica.seen = applied.len();
        state.report.applied = state.report.applied.max(applied.len() as u64);
    }
    Ok(())
}

/// The commands that took effect (answered with a result, or committed
/// under their own identity although their client never learnt it), with
/// the responses their clients got from the nodes.
fn commands_that_took_effect<P: SimProtocol, M>(
    sim: &SimCluster<P>,
    state: &State<M>,
) -> Vec<CommandOp> {
    let mut ops = Vec::new();
    for (op, command) in &state.sent {
        let Some(outcome) = sim.op_outcome(*op) else {
            continue;
        };
        let (epoch, index) = outcome.at;
        let answered = outcome.ret.is_some() && !outcome.dropped;
        if outcome.dropped || !(answered || sim.committed_as(epoch, index, command)) {
            continue;
        }
        ops.push(CommandOp {
            command: command.clone(),
            call: outcome.call,
            ret: outcome.ret.filter(|_| answered),
            response: outcome.response,
        });
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::raft::{Raft, RaftConfig};
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Counts the commands it applied; answers with its count, plus a salt
    /// that differs between replicas when `salted` (nondeterminism).
    #[derive(Clone, PartialEq, Eq, Hash)]
    struct Counter {
        count: u64,
        salt: u64,
    }

    impl StateMachine for Counter {
        fn apply(&mut self, _index: u64, _command: &[u8]) -> Vec<u8> {
            self.count += 1;
            (self.count + self.salt).to_le_bytes().to_vec()
        }
    }

    fn run_counter(salted: bool, limit: u64) -> Result<MachineReport, SimFailure> {
        static REPLICAS: AtomicU64 = AtomicU64::new(0);
        let mut run = MachineRun {
            new_machine: move || Counter {
                count: 0,
                salt: if salted {
                    REPLICAS.fetch_add(1, Ordering::Relaxed)
                } else {
                    0
                },
            },
            workload: |_: &mut Rng| vec![1],
            invariant: move |c: &Counter| {
                if c.count <= limit {
                    Ok(())
                } else {
                    Err(format!("count {} above {limit}", c.count))
                }
            },
            replay: "replay-me --seed".into(),
            model: linearizable_against(|| Counter { count: 0, salt: 0 }),
        };
        run_machine::<Raft, _, _, _, _>(3, 3_000, RaftConfig::default(), &mut run)
    }

    #[test]
    fn a_deterministic_machine_passes_and_makes_progress() {
        let report = run_counter(false, u64::MAX).unwrap();
        assert!(report.applied > 10, "{report:?}");
        assert!(report.checked > 10, "{report:?}");
    }

    #[test]
    fn responses_that_fit_no_run_of_the_model_are_caught() {
        // Every replica answers alike, but not as the model does: one
        // count ahead.
        let mut run = MachineRun {
            new_machine: || Counter { count: 0, salt: 1 },
            workload: |_: &mut Rng| vec![1],
            invariant: |_: &Counter| Ok(()),
            replay: "replay-me --seed".into(),
            model: linearizable_against(|| Counter { count: 0, salt: 0 }),
        };
        let f =
            run_machine::<Raft, _, _, _, _>(3, 3_000, RaftConfig::default(), &mut run).unwrap_err();
        assert!(f.reason.contains("client responses"), "{}", f.reason);
    }

    #[test]
    fn replicas_that_answer_differently_are_caught() {
        let f = run_counter(true, u64::MAX).unwrap_err();
        assert!(f.reason.contains("replicas disagree"), "{}", f.reason);
    }

    #[test]
    fn a_broken_invariant_is_caught_with_its_replay_command() {
        let f = run_counter(false, 5).unwrap_err();
        assert!(f.reason.contains("invariant broken"), "{}", f.reason);
        assert!(f.to_string().contains("replay: replay-me --seed 3"), "{f}");
    }
}
