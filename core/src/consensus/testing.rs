//! Test support for sans-IO protocol tests: cores plus a queue of messages
//! in flight that a test delivers, drops or reorders by hand.

use crate::consensus::{Effects, Protocol, Recovered};
use crate::error::ProposeError;
use crate::types::{Epoch, Index, NodeId, Role};
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};

/// Cores of protocol `P` and the messages between them.
pub struct Net<P: Protocol> {
    /// The cores by id.
    pub nodes: BTreeMap<NodeId, P>,
    /// Messages sent and not yet delivered: (from, to, message).
    pub queue: VecDeque<(NodeId, NodeId, P::Message)>,
    /// Effects of the last call on each node (after flush), minus messages.
    pub last: BTreeMap<NodeId, Effects<P::Message, P::HardState>>,
}

impl<P: Protocol> Net<P> {
    /// `n` fresh nodes with ids `1..=n`.
    pub fn new(n: u64, config: P::Config) -> Self {
        let voters: Vec<NodeId> = (1..=n).collect();
        let nodes = voters
            .iter()
            .map(|&id| {
                let core = P::new(id, &voters, config.clone(), Recovered::default(), 7);
                (id, core.expect("valid config"))
            })
            .collect();
        Self::from_nodes(nodes)
    }

    /// A net of prepared cores.
    pub fn from_nodes(nodes: BTreeMap<NodeId, P>) -> Self {
        Net {
            nodes,
            queue: VecDeque::new(),
            last: BTreeMap::new(),
        }
    }

    /// Node `id`.
    pub fn node(&self, id: NodeId) -> &P {
        &self.nodes[&id]
    }

    /// Runs `f` on node `id`, flushes, and queues what it sent.
    pub fn call<R>(
        &mut self,
        id: NodeId,
        f: impl FnOnce(&mut P, &mut Effects<P::Message, P::HardState>) -> R,
    ) -> R {
        let mut fx = Effects::default();
        let node = self.nodes.get_mut(&id).expect("known node");
        let r = f(node, &mut fx);
        node.flush(&mut fx);
        for (to, m) in fx.messages.drain(..) {
            self.queue.push_back((id, to, m));
        }
        self.last.insert(id, fx);
        r
    }

    /// Ticks node `id` `n` times.
    pub fn tick(&mut self, id: NodeId, n: u32) {
        for _ in 0..n {
            self.call(id, |r, fx| r.tick(fx));
        }
    }

    /// Delivers the messages queued now for which `keep` holds and drops the
    /// rest; the answers they cause stay queued for the next call.
    pub fn deliver_once(
        &mut self,
        mut keep: impl FnMut(NodeId, NodeId, &P::Message) -> bool,
    ) -> usize {
        let now: Vec<_> = self.queue.drain(..).collect();
        let mut n = 0;
        for (from, to, m) in now {
            if keep(from, to, &m) {
                n += 1;
                self.call(to, |r, fx| r.step(from, m, fx));
            }
        }
        n
    }

    /// Delivers everything, including what it causes, until quiet.
    pub fn deliver_all(&mut self) -> usize {
        let mut n = 0;
        while !self.queue.is_empty() {
            n += self.deliver_once(|_, _, _| true);
        }
        n
    }

    /// Ticks `id` until it starts a campaign, then delivers everything;
    /// asserts that it leads.
    pub fn elect(&mut self, id: NodeId) {
        for _ in 0..1000 {
            if self.node(id).role() != Role::Follower {
                break;
            }
            self.tick(id, 1);
        }
        self.deliver_all();
        assert_eq!(self.node(id).role(), Role::Leader, "node {id} did not win");
    }

    /// Proposes `data` on node `id`.
    pub fn propose(&mut self, id: NodeId, data: &[u8]) -> Result<(Epoch, Index), ProposeError> {
        let data = Bytes::copy_from_slice(data);
        self.call(id, |r, fx| r.propose(data, fx))
    }
}
