//! Three nodes on an in-process network: elect a leader, replicate 10,000
//! commands, stop the leader, elect a new one, and show that nothing
//! committed was lost.
//!
//! ```text
//! cargo run --release --example cluster [-- --protocol raft|paxos|zab] [--commands N]
//! ```

use consenso::consensus::paxos::MultiPaxos;
use consenso::consensus::raft::Raft;
use consenso::consensus::zab::Zab;
use consenso::consensus::{Protocol, ProtocolKind};
use consenso::local::LocalCluster;
use consenso::runtime::{NodeConfig, StateMachine};
use consenso::types::NodeId;
use std::process::ExitCode;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

/// Appends every applied command (a little-endian u64) to a shared list.
#[derive(Clone, Default)]
struct Ledger(Arc<Mutex<Vec<u64>>>);

impl Ledger {
    fn snapshot(&self) -> Vec<u64> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl StateMachine for Ledger {
    fn apply(&mut self, _index: u64, command: &[u8]) -> Vec<u8> {
        let value = command
            .try_into()
            .map(u64::from_le_bytes)
            .unwrap_or(u64::MAX);
        if let Ok(mut v) = self.0.lock() {
            v.push(value);
        }
        Vec::new()
    }
}

struct Args {
    protocol: ProtocolKind,
    commands: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        protocol: ProtocolKind::Raft,
        commands: 10_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--protocol" => {
                let name = it.next().ok_or("--protocol needs a value")?;
                args.protocol = ProtocolKind::from_name(&name)
                    .ok_or_else(|| format!("unknown protocol {name:?} (raft, paxos or zab)"))?;
            }
            "--commands" => {
                args.commands = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--commands needs a number")?
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn run(args: Args) -> Result<(), String> {
    match args.protocol {
        ProtocolKind::Raft => run_with::<Raft>(args),
        ProtocolKind::MultiPaxos => run_with::<MultiPaxos>(args),
        ProtocolKind::Zab => run_with::<Zab>(args),
    }
}

fn run_with<P: Protocol>(args: Args) -> Result<(), String>
where
    P::Config: Default,
{
    let ledgers: Vec<Ledger> = (0..3).map(|_| Ledger::default()).collect();
    let for_nodes = ledgers.clone();
    let ledger = move |id: NodeId| ledgers[id as usize - 1].clone();
    let config = NodeConfig::<P::Config>::new(1, vec![1, 2, 3]);
    let mut cluster =
        LocalCluster::<P>::start_with(config, move |id| for_nodes[id as usize - 1].clone())
            .map_err(|e| format!("start: {e}"))?;
    println!(
        "consenso {}: 3 {} nodes on an in-process network",
        consenso::VERSION,
        args.protocol.name()
    );

    let leader = cluster.wait_for_leader(WAIT).ok_or("no leader elected")?;
    let status = cluster.node(leader).ok_or("leader vanished")?.status();
    println!("elected: {status}");

    // Replicate with up to 256 proposals in flight.
    let node = cluster.node(leader).ok_or("leader vanished")?;
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    let (mut sent, mut done) = (0u64, 0u64);
    while done < args.commands {
        while sent < args.commands && sent - done < 256 {
            let tx = tx.clone();
            node.propose_with(
                sent.to_le_bytes().to_vec(),
                Box::new(move |r| {
                    let _ = tx.send(r);
                }),
            );
            sent += 1;
        }
        match rx.recv_timeout(WAIT) {
            Ok(Ok(_)) => done += 1,
            Ok(Err(e)) => return Err(format!("proposal failed: {e}")),
            Err(_) => return Err("replication stalled".into()),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "replicated {} commands in {:.0} ms ({:.0} commits/s)",
        args.commands,
        secs * 1000.0,
        args.commands as f64 / secs
    );
    let committed = ledger(leader).snapshot();

    cluster.stop(leader);
    println!("stopped the leader, node {leader}");
    let new_leader = cluster.wait_for_leader(WAIT).ok_or("no new leader")?;
    let status = cluster
        .node(new_leader)
        .ok_or("new leader vanished")?
        .status();
    println!("elected: {status}");

    cluster
        .propose(&u64::MAX.to_le_bytes(), WAIT)
        .map_err(|e| format!("proposal after failover: {e}"))?;
    let new_node = cluster.node(new_leader).ok_or("new leader vanished")?;
    new_node
        .read_barrier(WAIT)
        .map_err(|e| format!("read barrier: {e}"))?;
    let survived = ledger(new_leader).snapshot();
    if survived.len() < committed.len() || survived[..committed.len()] != committed[..] {
        return Err(format!(
            "committed commands lost: leader had {}, new leader has {}",
            committed.len(),
            survived.len()
        ));
    }
    println!(
        "all {} committed commands are on the new leader, in order",
        committed.len()
    );

    let before = ledger(leader).snapshot().len();
    cluster
        .restart(leader)
        .map_err(|e| format!("restart: {e}"))?;
    let deadline = Instant::now() + WAIT;
    loop {
        let replayed = ledger(leader).snapshot();
        if replayed.len() >= before + survived.len() {
            if replayed[before..before + survived.len()] != survived[..] {
                return Err("the restarted node's log differs".into());
            }
            break;
        }
        if Instant::now() > deadline {
            return Err("the restarted node did not catch up".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    println!(
        "node {leader} restarted from its storage and caught up ({} commands)",
        survived.len()
    );
    let status = cluster
        .node(new_leader)
        .ok_or("new leader vanished")?
        .status();
    println!(
        "leader status: {status}, {} envelopes sent",
        status.messages_sent
    );
    cluster.shutdown();
    Ok(())
}

fn main() -> ExitCode {
    let result = parse_args().and_then(run);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
