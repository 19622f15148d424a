//! Raft's safety properties (Figure 3 of the paper), checked after every
//! simulated event from the effects each core emits. They hold for any
//! protocol that reports effects in the common shape, so Multi-Paxos and ZAB
//! are checked by the same code; Log Matching is checked only for protocols
//! that promise it (Raft and ZAB; a Paxos acceptor's slots are independent).
//!
//! Committed and applied entries are compared by value (kind and data), not
//! by epoch: a Paxos leader re-proposes a chosen value under its own ballot,
//! and that is the same command.
//!
//! The checker keeps a shadow of every node's persisted log and one global
//! committed log, so each check is incremental rather than a scan of all logs.

use crate::consensus::Effects;
use crate::types::{Entry, Epoch, Index, NodeId, Role};
use std::collections::HashMap;

/// An entry as the checker remembers it: epoch, origin and a hash of kind
/// and data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EntryId {
    /// Epoch (term).
    pub epoch: Epoch,
    /// The epoch it was first proposed in (its identity with the index).
    pub origin: Epoch,
    /// FNV-1a hash of kind and data.
    pub hash: u64,
}

impl EntryId {
    /// The id of `e`.
    pub fn of(e: &Entry) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let kind = match e.kind {
            crate::types::EntryKind::Normal => 1u8,
            crate::types::EntryKind::Noop => 2u8,
        };
        for b in std::iter::once(&kind).chain(e.data.iter()) {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01B3);
        }
        EntryId {
            epoch: e.epoch,
            origin: e.origin,
            hash: h,
        }
    }
}

/// A violated safety property.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The property, e.g. "Election Safety".
    pub property: &'static str,
    /// What was seen.
    pub detail: String,
}

fn violation(property: &'static str, detail: String) -> Result<(), Violation> {
    Err(Violation { property, detail })
}

/// Role and epoch of a node around an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoleEpoch {
    /// Role.
    pub role: Role,
    /// Epoch.
    pub epoch: Epoch,
}

#[derive(Default)]
struct NodeShadow {
    log: Vec<EntryId>,
    commit: Index,
    applied: Index,
}

/// Incremental checker of the five Raft safety properties.
#[derive(Default)]
pub struct Invariants {
    log_matching: bool,
    leaders: HashMap<Epoch, NodeId>,
    /// Globally committed entries (index - 1), with the epoch of the node that
    /// first saw each one committed.
    committed: Vec<(EntryId, Epoch)>,
    /// Log Matching: (index, epoch) -> (entry, epoch of the previous entry).
    positions: HashMap<(Index, Epoch), (EntryId, Epoch)>,
    nodes: HashMap<NodeId, NodeShadow>,
    /// Leaders elected (distinct (epoch, node) pairs).
    pub leaders_elected: u64,
}

impl Invariants {
    /// A checker with nothing seen yet; `log_matching` turns on the Log
    /// Matching check.
    pub fn new(log_matching: bool) -> Self {
        Invariants {
            log_matching,
            ..Self::default()
        }
    }

    /// Number of entries known committed.
    pub fn committed_len(&self) -> Index {
        self.committed.len() as Index
    }

    /// Every committed entry so far (index - 1), with the epoch of the node
    /// that first saw it committed.
    pub fn committed(&self) -> &[(EntryId, Epoch)] {
        &self.committed
    }

    /// A node restarted from storage: its shadow log becomes the log it
    /// recovered (its snapshot, which must cover committed entries only,
    /// then what it synced after it, and whatever part of the batch it died
    /// syncing survived), its volatile commit and applied indexes are reset
    /// (to the snapshot's index, which its machine was restored to).
    ///
    /// # Errors
    /// A snapshot past what was committed.
    pub fn on_restart(
        &mut self,
        node: NodeId,
        recovered_commit: Index,
        snapshot: Index,
        after: &[Entry],
    ) -> Result<(), Violation> {
        let mut n = self.nodes.remove(&node).unwrap_or_default();
        n.log.clear();
        n.commit = 0;
        n.applied = 0;
        let result = self.put_snapshot(node, &mut n, snapshot, None);
        n.log.extend(after.iter().map(EntryId::of));
        n.commit = recovered_commit.min(n.log.len() as Index).max(snapshot);
        self.nodes.insert(node, n);
        result
    }

    /// The shadow of `node` holds a snapshot through `index` (of `epoch`
    /// there, when known): the committed entries replace its log up to
    /// there, and count as committed and applied.
    fn put_snapshot(
        &self,
        node: NodeId,
        shadow: &mut NodeShadow,
        index: Index,
        epoch: Option<Epoch>,
    ) -> Result<(), Violation> {
        if index == 0 {
            return Ok(());
        }
        let Some(&(at, _)) = self.committed.get(index as usize - 1) else {
            return violation(
                "Snapshot",
                format!(
                    "node {node} holds a snapshot through {index}, but only {} entries are committed",
                    self.committed.len()
                ),
            );
        };
        if self.log_matching && epoch.is_some_and(|e| e != at.epoch) {
            return violation(
                "Snapshot",
                format!(
                    "node {node} holds a snapshot through {index} of epoch {epoch:?}, but epoch {} committed there",
                    at.epoch
                ),
            );
        }
        let prefix = self.committed[..index as usize].iter().map(|(id, _)| *id);
        let suffix: Vec<EntryId> = shadow.log.iter().skip(index as usize).copied().collect();
        shadow.log = prefix.chain(suffix).collect();
        shadow.commit = shadow.commit.max(index);
        shadow.applied = shadow.applied.max(index);
        Ok(())
    }

    /// Checks the effects of one event on `node`, whose role and epoch were
    /// `before` the event and are `after` it, and whose commit index is now
    /// `commit`. Call before the effects' committed entries are applied.
    ///
    /// # Errors
    /// The first property violated.
    pub fn on_effects<M, H>(
        &mut self,
        node: NodeId,
        before: RoleEpoch,
        after: RoleEpoch,
        commit: Index,
        fx: &Effects<M, H>,
    ) -> Result<(), Violation> {
        let mut shadow = self.nodes.remove(&node).unwrap_or_default();
        let result = self.check_event(node, &mut shadow, before, after, commit, fx);
        self.nodes.insert(node, shadow);
        result
    }

    fn check_event<M, H>(
        &mut self,
        node: NodeId,
        shadow: &mut NodeShadow,
        before: RoleEpoch,
        after: RoleEpoch,
        commit: Index,
        fx: &Effects<M, H>,
    ) -> Result<(), Violation> {
        let stayed_leader = before.role == Role::Leader
            && after.role == Role::Leader
            && before.epoch == after.epoch;
        if stayed_leader {
            Self::check_append_only(node, shadow, after.epoch, fx)?;
        }
        self.persist(node, shadow, fx)?;
        self.check_commit(node, shadow, after.epoch, commit)?;
        self.check_applied(node, shadow, commit, &fx.committed)?;
        if after.role == Role::Leader {
            self.check_leader(node, shadow, after.epoch)?;
        }
        Ok(())
    }

    /// Leader Append-Only: a leader that stayed one never rewrites its log.
    fn check_append_only<M, H>(
        node: NodeId,
        shadow: &NodeShadow,
        epoch: Epoch,
        fx: &Effects<M, H>,
    ) -> Result<(), Violation> {
        let first_write = fx
            .truncate_from
            .into_iter()
            .chain(fx.append.first().map(|e| e.index))
            .min();
        match first_write {
            Some(i) if i <= shadow.log.len() as Index => violation(
                "Leader Append-Only",
                format!(
                    "leader {node} of epoch {epoch} rewrote its log from index {i} (last {})",
                    shadow.log.len()
                ),
            ),
            _ => Ok(()),
        }
    }

    /// Applies the persisted changes to the shadow log, checking that no
    /// committed entry is cut and (where the protocol promises it) Log
    /// Matching.
    fn persist<M, H>(
        &mut self,
        node: NodeId,
        shadow: &mut NodeShadow,
        fx: &Effects<M, H>,
    ) -> Result<(), Violation> {
        if let Some(s) = &fx.snapshot {
            self.put_snapshot(node, shadow, s.index, Some(s.epoch))?;
        }
        if let Some(t) = fx.truncate_from {
            if t <= shadow.commit {
                return violation(
                    "State Machine Safety",
                    format!(
                        "node {node} truncated its log at {t}, below its commit index {}",
                        shadow.commit
                    ),
                );
            }
            shadow.log.truncate(t.saturating_sub(1) as usize);
        }
        for e in &fx.append {
            if e.index != shadow.log.len() as Index + 1 {
                return violation(
                    "Log Matching",
                    format!(
                        "node {node} appended index {} after {}",
                        e.index,
                        shadow.log.len()
                    ),
                );
            }
            let id = EntryId::of(e);
            let prev_epoch = shadow.log.last().map_or(0, |p| p.epoch);
            if self.log_matching {
                self.check_position(node, e, id, prev_epoch)?;
            }
            shadow.log.push(id);
        }
        Ok(())
    }

    /// Log Matching: an (index, epoch) names one entry and one predecessor
    /// epoch everywhere.
    fn check_position(
        &mut self,
        node: NodeId,
        e: &Entry,
        id: EntryId,
        prev_epoch: Epoch,
    ) -> Result<(), Violation> {
        match self.positions.get(&(e.index, e.epoch)) {
            Some(&(seen, seen_prev)) if seen != id || seen_prev != prev_epoch => violation(
                "Log Matching",
                format!(
                    "node {node} holds a different entry (or predecessor) at index {} epoch {}",
                    e.index, e.epoch
                ),
            ),
            Some(_) => Ok(()),
            None => {
                self.positions.insert((e.index, e.epoch), (id, prev_epoch));
                Ok(())
            }
        }
    }

    /// State Machine Safety: the commit index only grows (but across
    /// restarts), stays within the persisted log, and an index commits one
    /// entry everywhere.
    fn check_commit(
        &mut self,
        node: NodeId,
        shadow: &mut NodeShadow,
        epoch: Epoch,
        commit: Index,
    ) -> Result<(), Violation> {
        if commit < shadow.commit {
            return violation(
                "State Machine Safety",
                format!(
                    "node {node} commit index went back from {} to {commit}",
                    shadow.commit
                ),
            );
        }
        if commit > shadow.log.len() as Index {
            return violation(
                "State Machine Safety",
                format!(
                    "node {node} committed {commit} beyond its persisted log ({})",
                    shadow.log.len()
                ),
            );
        }
        for i in shadow.commit + 1..=commit {
            let id = shadow.log[i as usize - 1];
            match self.committed.get(i as usize - 1) {
                Some(&(c, _)) if c.hash != id.hash => {
                    return violation(
                        "State Machine Safety",
                        format!(
                            "node {node} committed index {i} epoch {} but epoch {} was committed there",
                            id.epoch, c.epoch
                        ),
                    );
                }
                Some(_) => {}
                None => self.committed.push((id, epoch)),
            }
        }
        shadow.commit = commit;
        Ok(())
    }

    /// Applied in order, the committed entries only.
    fn check_applied(
        &self,
        node: NodeId,
        shadow: &mut NodeShadow,
        commit: Index,
        applied: &[Entry],
    ) -> Result<(), Violation> {
        for e in applied {
            if e.index != shadow.applied + 1 {
                return violation(
                    "State Machine Safety",
                    format!(
                        "node {node} applied index {} after {}",
                        e.index, shadow.applied
                    ),
                );
            }
            let committed = self.committed.get(e.index as usize - 1).map(|c| c.0.hash);
            if committed != Some(EntryId::of(e).hash) || e.index > commit {
                return violation(
                    "State Machine Safety",
                    format!(
                        "node {node} applied index {} that differs from the committed entry",
                        e.index
                    ),
                );
            }
            shadow.applied = e.index;
        }
        Ok(())
    }

    /// Election Safety (one leader per epoch) and, for a new leader, Leader
    /// Completeness (everything committed in an earlier epoch is in its log).
    fn check_leader(
        &mut self,
        node: NodeId,
        shadow: &NodeShadow,
        epoch: Epoch,
    ) -> Result<(), Violation> {
        match self.leaders.get(&epoch) {
            Some(&l) if l != node => {
                return violation(
                    "Election Safety",
                    format!("nodes {l} and {node} both lead epoch {epoch}"),
                );
            }
            Some(_) => return Ok(()),
            None => {
                self.leaders.insert(epoch, node);
                self.leaders_elected += 1;
            }
        }
        for (i, &(c, at)) in self.committed.iter().enumerate() {
            if at < epoch && shadow.log.get(i).map(|e| e.hash) != Some(c.hash) {
                return violation(
                    "Leader Completeness",
                    format!(
                        "leader {node} of epoch {epoch} lacks index {} committed in epoch {at}",
                        i + 1
                    ),
                );
            }
        }
        Ok(())
    }
}
