//! One simulated node: its protocol core, the runtime's effect executor and
//! applier (the same code a threaded node runs), the disk that survives a
//! crash, and the [`Host`] through which the executor reaches the simulated
//! disk, network and applier.

use super::cluster::SimStats;
use super::disk::SimDisk;
use super::kv::{self, KvStore};
use super::network::SimNetwork;
use crate::consensus::{Protocol, ProtocolKind, RoleChange, Snapshot};
use crate::error::ProposeError;
use crate::rng::Rng;
use crate::runtime::apply::{Applier, ApplyMsg, Completions};
use crate::runtime::executor::{Executor, Host};
use crate::runtime::{SnapshotPolicy, StateMachine};
use crate::storage::{FileOptions, FileStorage, Storage, StorageError};
use crate::types::{Entry, Epoch, Index, NodeId};
use bytes::Bytes;
use std::collections::VecDeque;
use std::path::PathBuf;

/// What the node synced: the hard state, snapshot and log its
/// [`FileStorage`] must give back when it restarts (the model the recovery
/// is checked against).
#[derive(Clone, Debug)]
pub(super) struct Synced<H> {
    pub(super) hard_state: Option<H>,
    pub(super) snapshot: Option<Snapshot>,
    /// Contiguous; from index 1, or from after the snapshot.
    pub(super) log: Vec<Entry>,
}

impl<H> Synced<H> {
    /// Removes every entry at or above `index`.
    pub(super) fn cut(&mut self, index: Index) {
        self.log.retain(|e| e.index < index);
    }

    /// Appends `entries`, replacing what they overwrite.
    pub(super) fn append(&mut self, entries: &mut Vec<Entry>) {
        if let Some(first) = entries.first() {
            self.cut(first.index);
        }
        self.log.append(entries);
    }

    /// A snapshot was saved: the log it covers goes.
    pub(super) fn save_snapshot(&mut self, snapshot: &Snapshot) {
        self.log.retain(|e| e.index > snapshot.index);
        self.snapshot = Some(snapshot.clone());
    }

    /// The synced entry at `index`, if any.
    pub(super) fn entry(&self, index: Index) -> Option<&Entry> {
        let first = self.log.first()?.index;
        self.log.get(index.checked_sub(first)? as usize)
    }
}

/// A client operation's handle: its position in the history.
pub(super) type Op = usize;

/// What a node's executor or applier answered, in order.
#[derive(Debug)]
pub(super) enum Outcome {
    Proposal(Op, Result<Vec<u8>, ProposeError>),
    Read(Op, Result<Index, ProposeError>),
}

/// The answers of one event, recorded in the history once it is over.
#[derive(Debug, Default)]
pub(super) struct Outcomes(pub(super) Vec<Outcome>);

impl Completions<Op, Op> for Outcomes {
    fn proposal_done(&mut self, done: Op, result: Result<Vec<u8>, ProposeError>) {
        self.0.push(Outcome::Proposal(done, result));
    }

    fn read_done(&mut self, done: Op, result: Result<Index, ProposeError>) {
        self.0.push(Outcome::Read(done, result));
    }
}

/// Builds a user's state machine for each node ([`super::run_machine`]).
pub(super) type MachineFactory = std::rc::Rc<dyn Fn() -> Box<dyn StateMachine>>;

/// The replicated machine of a simulated node: a key-value store whose
/// puts answer the value they replaced (so a put's response is checked for
/// linearizability too), or a user's machine in its place; and the
/// commands applied, in order.
#[derive(Default)]
pub(super) struct SimMachine {
    pub(super) kv: KvStore,
    user: Option<Box<dyn StateMachine>>,
    pub(super) applied: Vec<(Index, Bytes)>,
}

impl SimMachine {
    /// The key-value machine, or `factory`'s machine.
    pub(super) fn new(factory: Option<&MachineFactory>) -> Self {
        SimMachine {
            user: factory.map(|f| f()),
            ..SimMachine::default()
        }
    }
}

/// What a simulated machine's snapshot holds: every command applied (so
/// that the checks comparing replicas see a restored one whole), the
/// key-value store, and the user's machine's own snapshot.
type SimSnapshot = (Vec<(Index, Bytes)>, KvStore, Option<Vec<u8>>);

impl StateMachine for SimMachine {
    fn apply(&mut self, index: Index, command: &[u8]) -> Vec<u8> {
        self.applied.push((index, Bytes::copy_from_slice(command)));
        match &mut self.user {
            Some(user) => user.apply(index, command),
            None => kv::encode_value(self.kv.apply(command)),
        }
    }

    /// `None` when the user's machine keeps no snapshots.
    fn snapshot(&self) -> Option<Vec<u8>> {
        let user = match &self.user {
            Some(user) => Some(user.snapshot()?),
            None => None,
        };
        let whole: SimSnapshot = (self.applied.clone(), self.kv.clone(), user);
        postcard::to_allocvec(&whole).ok()
    }

    fn restore(&mut self, index: Index, data: &[u8]) -> Result<(), String> {
        let (applied, kv, user): SimSnapshot =
            postcard::from_bytes(data).map_err(|e| format!("snapshot does not decode: {e}"))?;
        if applied.last().is_some_and(|(i, _)| *i > index) {
            return Err(format!("the snapshot at {index} holds later commands"));
        }
        match (&mut self.user, user) {
            (Some(machine), Some(bytes)) => machine.restore(index, &bytes)?,
            (None, None) => {}
            _ => return Err("the snapshot is of another kind of machine".into()),
        }
        self.applied = applied;
        self.kv = kv;
        Ok(())
    }
}

pub(super) type SimApply = ApplyMsg<Op, Op>;

/// A node of the simulated cluster.
pub(super) struct SimNode<P: Protocol> {
    pub(super) id: NodeId,
    pub(super) core: Option<P>,
    pub(super) disk: Synced<P::HardState>,
    /// The node's storage on the simulated disk (`None` while it is down).
    pub(super) store: Option<FileStorage<SimDisk>>,
    /// Where its data directory is on the simulated disk.
    pub(super) dir: PathBuf,
    /// Its synced data was damaged (a flipped bit): it may refuse to start.
    pub(super) flipped: bool,
    /// It refused to start on a damaged disk, and stays down.
    pub(super) refused: bool,
    /// The writes of the batch it died syncing (they may partly survive).
    pub(super) torn_writes: Option<Staged<P::HardState>>,
    pub(super) exec: Executor<Op, Op, u64>,
    pub(super) applier: Applier<SimMachine, Op>,
    /// When the applier snapshots the machine.
    pub(super) policy: SnapshotPolicy,
    /// Segments its storage reported deleted so far (since it opened).
    pub(super) segments_removed: u64,
    /// Work handed to the applier, with the time it runs (the applier lags
    /// behind the executor, as the runtime's apply thread can).
    pub(super) to_apply: VecDeque<(u64, SimApply)>,
    pub(super) tick_phase: u64,
    /// Time units between two ticks of this node's clock ([`super::TICK`]
    /// unless its clock is skewed).
    pub(super) tick_every: u64,
    /// Paused (a stalled process) until this time: no ticks, no applying,
    /// and messages wait in `held` until it resumes.
    pub(super) paused_until: Option<u64>,
    pub(super) held: Vec<(NodeId, Epoch, P::Message)>,
    /// Crash during the next event, before its effects are persisted.
    pub(super) torn: bool,
}

impl<P: Protocol> SimNode<P> {
    pub(super) fn new(
        id: NodeId,
        core: P,
        tick_phase: u64,
        store: FileStorage<SimDisk>,
        policy: SnapshotPolicy,
    ) -> Self {
        SimNode {
            id,
            core: Some(core),
            disk: Synced {
                hard_state: None,
                snapshot: None,
                log: Vec::new(),
            },
            dir: store.dir().to_path_buf(),
            store: Some(store),
            flipped: false,
            refused: false,
            torn_writes: None,
            exec: Executor::new(),
            applier: Applier::new(SimMachine::default(), None, policy)
                .expect("a fresh machine needs no snapshot"),
            policy,
            segments_removed: 0,
            to_apply: VecDeque::new(),
            tick_phase,
            tick_every: super::TICK,
            paused_until: None,
            held: Vec::new(),
            torn: false,
        }
    }

    /// True when this node's clock ticks at `now`.
    pub(super) fn ticks_at(&self, now: u64) -> bool {
        self.paused_until.is_none() && now % self.tick_every == self.tick_phase % self.tick_every
    }

    /// The process died: the core, the executor's waiters and the applier's
    /// queue are gone (what they held never gets an answer).
    pub(super) fn crash(&mut self, machine: SimMachine) {
        self.core = None;
        self.store = None;
        self.exec = Executor::new();
        self.applier =
            Applier::new(machine, None, self.policy).expect("a fresh machine needs no snapshot");
        self.to_apply.clear();
        self.paused_until = None;
        self.held.clear();
        self.torn = false;
    }
}

/// What the executor reaches in the simulator for one event of one node.
pub(super) struct SimHost<'a, M, H> {
    /// The process dies at this batch's sync: `persist` fails.
    pub(super) torn: bool,
    pub(super) id: NodeId,
    pub(super) kind: ProtocolKind,
    pub(super) now: u64,
    /// The node's epoch after the event (messages travel with it).
    pub(super) epoch: Epoch,
    pub(super) n_nodes: usize,
    pub(super) disk: &'a mut Synced<H>,
    pub(super) store: Option<&'a mut FileStorage<SimDisk>>,
    /// Where the writes of a batch that dies at its sync are kept.
    pub(super) torn_writes: &'a mut Option<Staged<H>>,
    pub(super) to_apply: &'a mut VecDeque<(u64, SimApply)>,
    /// When work handed to the applier now runs.
    pub(super) apply_at: u64,
    pub(super) net: &'a mut SimNetwork<(Epoch, M)>,
    pub(super) rng: &'a mut Rng,
    pub(super) stats: &'a mut SimStats,
    /// Adds every message's encoded size to `bytes_sent` when set.
    pub(super) bytes_sent: Option<&'a mut u64>,
    pub(super) outcomes: &'a mut Outcomes,
    pub(super) trace: bool,
    /// Written by the executor and not yet synced: lost if the process
    /// dies at the sync.
    pub(super) staged: Staged<H>,
}

/// A batch's writes between `write` and `sync`.
pub(super) struct Staged<H> {
    pub(super) hard_state: Option<H>,
    pub(super) truncate_from: Option<Index>,
    pub(super) append: Vec<Entry>,
}

/// How simulated nodes open their storage: synced, 4 KiB segments (so
/// runs roll over them, and snapshots delete them).
pub(super) const SIM_STORAGE: FileOptions = FileOptions {
    sync: true,
    segment_bytes: 4 << 10,
};

impl<H> Default for Staged<H> {
    fn default() -> Self {
        Staged {
            hard_state: None,
            truncate_from: None,
            append: Vec::new(),
        }
    }
}

impl<M, H> Completions<Op, Op> for SimHost<'_, M, H> {
    fn proposal_done(&mut self, done: Op, result: Result<Vec<u8>, ProposeError>) {
        self.outcomes.proposal_done(done, result);
    }

    fn read_done(&mut self, done: Op, result: Result<Index, ProposeError>) {
        self.outcomes.read_done(done, result);
    }
}

impl<M: serde::Serialize + Clone, H: serde::Serialize> Host<M, H, Op, Op> for SimHost<'_, M, H> {
    fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        if let Some(store) = self.store.as_deref_mut() {
            store.save_snapshot(snapshot)?;
        }
        // Durable once saved, whatever becomes of the batch.
        self.disk.save_snapshot(snapshot);
        self.stats.snapshots_installed += 1;
        if self.trace {
            println!(
                "t={} node {} installs a snapshot through {}",
                self.now, self.id, snapshot.index
            );
        }
        Ok(())
    }

    fn write(
        &mut self,
        hard_state: Option<H>,
        hard_state_must_sync: bool,
        truncate_from: Option<Index>,
        append: &mut Vec<Entry>,
    ) -> Result<(), StorageError> {
        // As FileStorage does: a change of the commit index alone is not
        // written until a hard state that must be synced comes along, and
        // that one carries the newest commit index (so a restarted node
        // recovers an older commit index, as it may).
        if let Some(store) = self.store.as_deref_mut() {
            if let Some(hs) = &hard_state {
                let bytes = postcard::to_allocvec(hs)
                    .map_err(|e| StorageError::Corrupt(format!("hard state: {e}")))?;
                if hard_state_must_sync {
                    store.set_hard_state(&bytes)?;
                } else {
                    store.set_hard_state_unsynced(&bytes)?;
                }
            }
            if let Some(t) = truncate_from {
                store.truncate_from(t)?;
            }
            store.append(append)?;
        }
        if let Some(hs) = hard_state.filter(|_| hard_state_must_sync) {
            self.staged.hard_state = Some(hs);
        }
        if let Some(t) = truncate_from {
            self.staged.append.retain(|e| e.index < t);
            self.staged.truncate_from = Some(self.staged.truncate_from.map_or(t, |u| u.min(t)));
        }
        self.staged.append.append(append);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        let Staged {
            hard_state,
            truncate_from,
            mut append,
        } = std::mem::take(&mut self.staged);
        let synced = self.store.as_deref_mut().map_or(Ok(()), |s| s.sync());
        if self.torn {
            // The process dies at this sync (the disk fails it): what was
            // written may partly survive; what was sent before is out.
            *self.torn_writes = Some(Staged {
                hard_state,
                truncate_from,
                append,
            });
            return Err(StorageError::Corrupt("the process died at its sync".into()));
        }
        synced?;
        if self.trace && (truncate_from.is_some() || !append.is_empty()) {
            let appended: Vec<_> = append
                .iter()
                .map(|e| (e.index, e.epoch, kv::decode_put(&e.data).map(|x| x.1)))
                .collect();
            println!(
                "t={} node {} write trunc {truncate_from:?} append {appended:?}",
                self.now, self.id
            );
        }
        if let Some(hs) = hard_state {
            self.disk.hard_state = Some(hs);
        }
        if let Some(t) = truncate_from {
            if self.disk.log.last().is_some_and(|e| e.index >= t) {
                self.stats.truncations += 1;
            }
            self.disk.cut(t);
        }
        self.disk.append(&mut append);
        Ok(())
    }

    fn send(&mut self, to: NodeId, msg: M) {
        if to == 0 || to as usize > self.n_nodes {
            return;
        }
        if let Some(total) = self.bytes_sent.as_deref_mut() {
            *total += postcard::to_allocvec(&msg).map_or(0, |b| b.len() as u64);
        }
        self.net
            .send(self.rng, self.now, self.id, to, (self.epoch, msg));
    }

    fn role_changed(&mut self, change: RoleChange) {
        if self.trace {
            println!(
                "t={} node {} {} ({:?}) {} leader {:?}",
                self.now,
                self.id,
                self.kind.role_name(change.role),
                change.role,
                self.kind.epoch_label(change.epoch),
                change.leader
            );
        }
    }

    fn apply(&mut self, msg: SimApply) -> Result<(), SimApply> {
        self.to_apply.push_back((self.apply_at, msg));
        Ok(())
    }
}
