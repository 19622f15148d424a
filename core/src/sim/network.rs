//! The simulated network: latency, loss, duplication, reordering (through
//! random latency) and partitions, all drawn from the simulation's seed.

use crate::rng::Rng;
use crate::types::NodeId;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

/// Fault settings of the simulated network.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NetFaults {
    /// Probability that a message is lost.
    pub loss: f64,
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
    /// Least latency, in time units.
    pub min_delay: u64,
    /// Most latency, in time units (a wide range reorders messages).
    pub max_delay: u64,
    /// Probability that a message is held back far longer, up to
    /// `long_delay` units: past election timeouts, so it reaches a node
    /// that has since moved to a newer epoch (a stale leader's append, an
    /// old vote, a late read confirmation).
    pub straggle: f64,
    /// Most latency of a held-back message, in time units.
    pub long_delay: u64,
}

impl NetFaults {
    /// A reliable network with 1–3 units of latency.
    pub fn reliable() -> Self {
        NetFaults {
            loss: 0.0,
            duplicate: 0.0,
            min_delay: 1,
            max_delay: 3,
            straggle: 0.0,
            long_delay: 0,
        }
    }

    /// The 6.5840 "unreliable" network: 10% loss, some duplicates and long,
    /// reordering delays.
    pub fn unreliable() -> Self {
        NetFaults {
            loss: 0.1,
            duplicate: 0.02,
            min_delay: 1,
            max_delay: 27,
            straggle: 0.0,
            long_delay: 0,
        }
    }
}

struct InFlight<M> {
    at: u64,
    seq: u64,
    from: NodeId,
    to: NodeId,
    msg: M,
}

impl<M> PartialEq for InFlight<M> {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl<M> Eq for InFlight<M> {}
impl<M> PartialOrd for InFlight<M> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl<M> Ord for InFlight<M> {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// Messages in flight between simulated nodes.
pub struct SimNetwork<M> {
    queue: BinaryHeap<Reverse<InFlight<M>>>,
    seq: u64,
    /// Current faults.
    pub faults: NetFaults,
    /// Directed links that are cut.
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Messages sent, lost, duplicated, delivered.
    pub counts: NetCounts,
}

/// What the network did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetCounts {
    /// Messages handed to the network.
    pub sent: u64,
    /// Messages lost to random loss or cut links.
    pub lost: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
    /// Messages delivered.
    pub delivered: u64,
}

impl<M: Clone> SimNetwork<M> {
    /// An empty network with `faults`.
    pub fn new(faults: NetFaults) -> Self {
        SimNetwork {
            queue: BinaryHeap::new(),
            seq: 0,
            faults,
            cut: BTreeSet::new(),
            counts: NetCounts::default(),
        }
    }

    /// True when `from` can currently reach `to`.
    pub fn linked(&self, from: NodeId, to: NodeId) -> bool {
        !self.cut.contains(&(from, to))
    }

    /// Cuts or restores the link from `from` to `to`.
    pub fn set_link(&mut self, from: NodeId, to: NodeId, up: bool) {
        if up {
            self.cut.remove(&(from, to));
        } else {
            self.cut.insert((from, to));
        }
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Number of cut directed links.
    pub fn cut_links(&self) -> usize {
        self.cut.len()
    }

    /// Sends `msg` at time `now`, applying loss, duplication and latency.
    pub fn send(&mut self, rng: &mut Rng, now: u64, from: NodeId, to: NodeId, msg: M) {
        self.counts.sent += 1;
        if !self.linked(from, to) || rng.chance(self.faults.loss) {
            self.counts.lost += 1;
            return;
        }
        if rng.chance(self.faults.duplicate) {
            self.counts.duplicated += 1;
            self.enqueue(rng, now, from, to, msg.clone());
        }
        self.enqueue(rng, now, from, to, msg);
    }

    fn enqueue(&mut self, rng: &mut Rng, now: u64, from: NodeId, to: NodeId, msg: M) {
        let hi = self.faults.max_delay.max(self.faults.min_delay);
        let delay = if self.faults.straggle > 0.0 && rng.chance(self.faults.straggle) {
            rng.range_inclusive(hi, self.faults.long_delay.max(hi))
        } else {
            rng.range_inclusive(self.faults.min_delay, hi)
        };
        self.seq += 1;
        self.queue.push(Reverse(InFlight {
            at: now + delay,
            seq: self.seq,
            from,
            to,
            msg,
        }));
    }

    /// The next message due at or before `now`, if any. A message whose link
    /// was cut while in flight is lost.
    pub fn next_due(&mut self, now: u64) -> Option<(NodeId, NodeId, M)> {
        loop {
            let due = self.queue.peek().is_some_and(|Reverse(m)| m.at <= now);
            if !due {
                return None;
            }
            let Reverse(m) = self.queue.pop()?;
            if !self.linked(m.from, m.to) {
                self.counts.lost += 1;
                continue;
            }
            self.counts.delivered += 1;
            return Some((m.from, m.to, m.msg));
        }
    }

    /// Messages still in flight.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }
}
