//! Your own state machine and workload under the simulator: the protocol
//! runs with the same seeded faults as its own seed ranges (partitions,
//! loss, held-back messages, crashes, torn batches), and every replica of
//! your machine is checked after every command it applies.
//!
//! Checks, besides the protocol's own safety properties:
//! - your invariant holds on every replica after every command;
//! - replicas agree: every replica that applies the command at an index
//!   returns the same response (a state machine that reads a clock, a
//!   random number or a hash map's order fails here);
//! - the run made progress (some command was applied).

use super::{end_faults, inject_faults, FaultPlan, Replay, SimCluster, SimFailure, SimProtocol};
use crate::rng::Rng;
use crate::runtime::StateMachine;
use crate::types::{Index, NodeId};
use std::collections::HashMap;

/// A user's machine, workload and invariant, to run under the simulator.
///
/// `M` is built fresh for every replica, and again when a restarted node
/// re-applies fewer commands than its replica had seen. A restarted node
/// that re-applies at least as many needs no rebuild: committed commands
/// never change, so the replica already holds the state they produce.
pub struct MachineRun<M, N, W, C>
where
    N: Fn() -> M,
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
}

/// One replica: the machine and how many of its node's applied commands
/// it has seen.
struct Replica<M> {
    machine: M,
    seen: usize,
}

/// Runs seed `seed` of `steps` time units: clients send `workload` commands
/// to the node they believe leads, under the seed's faults for the first
/// three quarters, then a fault-free quarter.
///
/// # Errors
/// A [`SimFailure`] naming the broken invariant, the disagreement or the
/// protocol property, with the command that replays the seed.
pub fn run_machine<P, M, N, W, C>(
    seed: u64,
    steps: u64,
    config: P::Config,
    run: &mut MachineRun<M, N, W, C>,
) -> Result<MachineReport, SimFailure>
where
    P: SimProtocol,
    M: StateMachine,
    N: Fn() -> M,
    W: FnMut(&mut Rng) -> Vec<u8>,
    C: Fn(&M) -> Result<(), String>,
{
    let plan = FaultPlan::draw(seed);
    let replay = Replay::Command(format!("{} {seed}", run.replay));
    let fail = |at: u64, reason: String| {
        SimFailure::of::<P>(seed, steps, &plan, replay.clone(), at, reason)
    };
    let mut sim =
        SimCluster::<P>::new(plan.nodes, config, seed).map_err(|e| fail(0, e.to_string()))?;
    plan.apply_to(&mut sim);
    let mut workload_rng = Rng::new(seed ^ 0x0B5E_55ED);
    let mut replicas: HashMap<NodeId, Replica<M>> = HashMap::new();
    let mut responses: HashMap<Index, Vec<u8>> = HashMap::new();
    let mut report = MachineReport {
        seed,
        proposed: 0,
        applied: 0,
        rebuilds: 0,
    };
    let chaos_until = steps * 3 / 4;
    let mut leader_hint: Option<NodeId> = None;
    for t in 0..steps {
        let now = sim.now;
        let protocol = |v: super::Violation| fail(now, format!("{}: {}", v.property, v.detail));
        if t == chaos_until {
            end_faults(&mut sim).map_err(protocol)?;
        } else if t < chaos_until {
            inject_faults(&mut sim, &plan).map_err(protocol)?;
        }
        if workload_rng.below(5) == 0 {
            let ids = sim.ids();
            let target = leader_hint.unwrap_or(ids[workload_rng.below(ids.len() as u64) as usize]);
            let command = (run.workload)(&mut workload_rng);
            match sim.propose(target, &command).map_err(protocol)? {
                Ok(_) => {
                    report.proposed += 1;
                    leader_hint = Some(target);
                }
                Err(crate::ProposeError::NotLeader { leader }) => leader_hint = leader,
                Err(_) => leader_hint = None,
            }
        }
        sim.step()
            .map_err(|v| fail(now + 1, format!("{}: {}", v.property, v.detail)))?;
        for id in sim.ids() {
            let applied = sim.applied(id);
            let replica = replicas.entry(id).or_insert_with(|| Replica {
                machine: (run.new_machine)(),
                seen: 0,
            });
            if applied.len() < replica.seen {
                // Restarted: the node applies its log again from the start.
                replica.machine = (run.new_machine)();
                replica.seen = 0;
                report.rebuilds += 1;
            }
            for (index, command) in &applied[replica.seen..] {
                let response = replica.machine.apply(*index, command);
                if let Err(broken) = (run.invariant)(&replica.machine) {
                    return Err(fail(
                        sim.now,
                        format!("invariant broken on node {id} after index {index}: {broken}"),
                    ));
                }
                match responses.get(index) {
                    Some(first) if *first != response => {
                        return Err(fail(
                            sim.now,
                            format!(
                                "replicas disagree at index {index}: node {id} answered \
                                 {response:?}, another {first:?}"
                            ),
                        ))
                    }
                    Some(_) => {}
                    None => {
                        responses.insert(*index, response);
                    }
                }
            }
            replica.seen = applied.len();
            report.applied = report.applied.max(applied.len() as u64);
        }
    }
    if report.applied == 0 {
        return Err(fail(sim.now, "no progress: no command was applied".into()));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::raft::{Raft, RaftConfig};
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Counts the commands it applied; answers with its count, plus a salt
    /// that differs between replicas when `salted` (nondeterminism).
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
            new_machine: || Counter {
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
        };
        run_machine::<Raft, _, _, _, _>(3, 3_000, RaftConfig::default(), &mut run)
    }

    #[test]
    fn a_deterministic_machine_passes_and_makes_progress() {
        let report = run_counter(false, u64::MAX).unwrap();
        assert!(report.applied > 10 && report.proposed >= report.applied);
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
