//! A bank under the simulator: your own state machine and workload, run on
//! Raft, Multi-Paxos and ZAB under seeded faults (partitions, loss, messages
//! held past election timeouts, crashes, torn writes), with the bank's
//! invariant (the total of all balances never changes, no balance goes
//! below zero) checked on every replica after every transfer, every
//! replica's answers compared, and the answers clients got checked for
//! linearizability against the bank itself as the model.
//!
//! ```text
//! cargo run --release --example bank                     # 200 seeds per protocol
//! cargo run --release --example bank -- --plant-bug      # a bug the checks catch
//! cargo run --release --example bank -- --protocol zab --seed 17   # one seed
//! ```

use consenso::consensus::paxos::{MultiPaxos, PaxosConfig};
use consenso::consensus::raft::{Raft, RaftConfig};
use consenso::consensus::zab::{Zab, ZabConfig};
use consenso::rng::Rng;
use consenso::runtime::StateMachine;
use consenso::sim::{
    linearizable_against, run_machine, MachineReport, MachineRun, SimFailure, SimProtocol,
};

const ACCOUNTS: usize = 4;
const OPENING_BALANCE: i64 = 1_000;
const STEPS: u64 = 5_000;

/// Balances of four accounts. A command is `[from, to, amount]` (amount in
/// whole units, 1 to 255); a transfer the payer cannot cover is refused.
/// The bank is also its own model: clients' responses are checked against
/// a correct bank run sequentially.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bank {
    balances: [i64; ACCOUNTS],
    /// The planted bug: a transfer of exactly the payer's whole balance
    /// credits the payee and forgets to debit the payer.
    buggy: bool,
}

impl Bank {
    fn new(buggy: bool) -> Self {
        Bank {
            balances: [OPENING_BALANCE; ACCOUNTS],
            buggy,
        }
    }

    /// The bank's invariant: money is neither made nor lost, and no account
    /// is overdrawn.
    fn check(&self) -> Result<(), String> {
        let total: i64 = self.balances.iter().sum();
        if total != OPENING_BALANCE * ACCOUNTS as i64 {
            return Err(format!("total is {total}, balances {:?}", self.balances));
        }
        match self.balances.iter().position(|&b| b < 0) {
            Some(a) => Err(format!("account {a} is overdrawn: {:?}", self.balances)),
            None => Ok(()),
        }
    }
}

impl StateMachine for Bank {
    fn apply(&mut self, _index: u64, command: &[u8]) -> Vec<u8> {
        let &[from, to, amount] = command else {
            return b"malformed".to_vec();
        };
        let (from, to, amount) = (
            from as usize % ACCOUNTS,
            to as usize % ACCOUNTS,
            amount as i64,
        );
        if self.balances[from] < amount {
            return b"insufficient funds".to_vec();
        }
        let whole_balance = self.balances[from] == amount;
        if !(self.buggy && whole_balance) {
            self.balances[from] -= amount;
        }
        self.balances[to] += amount;
        self.balances[to].to_le_bytes().to_vec()
    }
}

/// Random transfers, sometimes of a payer's likely whole balance (the
/// amounts that empty an account are where bugs hide).
fn transfer(rng: &mut Rng) -> Vec<u8> {
    let from = rng.below(ACCOUNTS as u64) as u8;
    let to = rng.below(ACCOUNTS as u64) as u8;
    let amount = if rng.chance(0.1) {
        // Small accounts get emptied: 25, 50, ... up to 250.
        25 * (1 + rng.below(10) as u8)
    } else {
        1 + rng.below(255) as u8
    };
    vec![from, to, amount]
}

fn run<P: SimProtocol>(
    seed: u64,
    config: P::Config,
    buggy: bool,
    protocol: &str,
) -> Result<MachineReport, SimFailure> {
    let flag = if buggy { " --plant-bug" } else { "" };
    let mut bank = MachineRun {
        new_machine: move || Bank::new(buggy),
        workload: transfer,
        invariant: Bank::check,
        replay: format!("cargo run --release --example bank --{flag} --protocol {protocol} --seed"),
        model: linearizable_against(|| Bank::new(false)),
    };
    run_machine::<P, _, _, _, _>(seed, STEPS, config, &mut bank)
}

fn run_protocol(protocol: &str, seed: u64, buggy: bool) -> Result<MachineReport, SimFailure> {
    match protocol {
        "raft" => run::<Raft>(seed, RaftConfig::default(), buggy, protocol),
        "paxos" => run::<MultiPaxos>(seed, PaxosConfig::default(), buggy, protocol),
        _ => run::<Zab>(seed, ZabConfig::default(), buggy, protocol),
    }
}

struct Args {
    buggy: bool,
    protocols: Vec<String>,
    seeds: std::ops::Range<u64>,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        buggy: false,
        protocols: vec!["raft".into(), "paxos".into(), "zab".into()],
        seeds: 0..200,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--plant-bug" => args.buggy = true,
            "--protocol" => {
                let p = it.next().ok_or("--protocol needs raft, paxos or zab")?;
                if !["raft", "paxos", "zab"].contains(&p.as_str()) {
                    return Err(format!("unknown protocol {p:?}"));
                }
                args.protocols = vec![p];
            }
            "--seed" => {
                let s: u64 = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or("--seed needs a number")?;
                args.seeds = s..s + 1;
            }
            "--seeds" => {
                let n: u64 = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or("--seeds needs a number")?;
                args.seeds = 0..n;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn main() {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bank: {e}");
            std::process::exit(2);
        }
    };
    let label = if args.buggy {
        "with the planted bug"
    } else {
        "correct"
    };
    println!("a bank of {ACCOUNTS} accounts under the simulator ({label})");
    let mut first_failure = None;
    for protocol in &args.protocols {
        let (mut passed, mut failed, mut applied, mut rebuilds, mut checked) = (0, 0, 0, 0, 0);
        for seed in args.seeds.clone() {
            match run_protocol(protocol, seed, args.buggy) {
                Ok(r) => {
                    passed += 1;
                    applied += r.applied;
                    rebuilds += r.rebuilds;
                    checked += r.checked;
                }
                Err(f) => {
                    failed += 1;
                    first_failure.get_or_insert(f);
                }
            }
        }
        println!(
            "{protocol}: {passed} seeds passed, {failed} failed; {applied} transfers applied, \
             {rebuilds} replicas rebuilt after restarts, {checked} answers linearizable"
        );
    }
    match (first_failure, args.buggy) {
        (None, false) => println!(
            "the total never changed on any replica, and every answer fits a sequential bank"
        ),
        (Some(f), true) => println!("the planted bug was caught:\n{f}"),
        (Some(f), false) => {
            eprintln!("{f}");
            std::process::exit(1);
        }
        (None, true) => {
            eprintln!("the planted bug was not caught");
            std::process::exit(1);
        }
    }
}
