//! The leader's view of each follower (or acceptor): how far it matches and
//! what is in flight. Shared by the protocol cores.

use crate::types::Index;
use std::collections::VecDeque;

/// How the leader currently replicates to one follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicationState {
    /// Finding where the logs agree: one AppendEntries at a time.
    Probe,
    /// Logs agree up to `matched`: AppendEntries are pipelined.
    Replicate,
    /// The entries it needs were compacted: the snapshot goes, one chunk
    /// at a time.
    Snapshot,
}

/// Replication progress of one follower, tracked by the leader.
#[derive(Clone, Debug)]
pub struct Progress {
    /// Highest index known to match the leader's log.
    pub matched: Index,
    /// Next index to send.
    pub next: Index,
    /// Probe or pipelined replication.
    pub state: ReplicationState,
    /// In probe state: one message is outstanding, wait for an answer.
    pub paused: bool,
    /// Heard from since the last CheckQuorum round.
    pub recent_active: bool,
    /// Replicate state: send an empty append to detect lost messages.
    pub check_needed: bool,
    /// Snapshot state: the snapshot being sent (its index) and how much
    /// of it the follower said it holds.
    pub snapshot_index: Index,
    /// See `snapshot_index`.
    pub snapshot_offset: u64,
    /// Snapshot state: where the last chunk sent ends. An answer that
    /// covers it lets the next chunk go; one that does not (a duplicate, a
    /// late one) waits for the heartbeat that resends, so chunks never
    /// multiply in flight.
    pub snapshot_sent: u64,
    /// Last index of each in-flight AppendEntries with its byte size.
    inflight: VecDeque<(Index, usize)>,
    inflight_bytes: usize,
}

impl Progress {
    /// Progress for a follower believed to hold everything before `next`.
    pub fn new(next: Index) -> Self {
        Progress {
            matched: 0,
            next,
            state: ReplicationState::Probe,
            paused: false,
            recent_active: false,
            check_needed: false,
            snapshot_index: 0,
            snapshot_offset: 0,
            snapshot_sent: 0,
            inflight: VecDeque::new(),
            inflight_bytes: 0,
        }
    }

    /// True when no more AppendEntries may go out now.
    pub fn is_full(&self, max_msgs: usize, max_bytes: usize) -> bool {
        match self.state {
            ReplicationState::Probe | ReplicationState::Snapshot => self.paused,
            ReplicationState::Replicate => {
                self.inflight.len() >= max_msgs || self.inflight_bytes >= max_bytes
            }
        }
    }

    /// Records an AppendEntries ending at `last` of `bytes` entry bytes.
    pub fn sent(&mut self, last: Index, bytes: usize) {
        match self.state {
            ReplicationState::Probe | ReplicationState::Snapshot => self.paused = true,
            ReplicationState::Replicate => {
                self.next = last + 1;
                self.inflight.push_back((last, bytes));
                self.inflight_bytes += bytes;
            }
        }
    }

    /// Records that the follower holds everything up to `index`. Returns true
    /// when `matched` moved.
    pub fn acknowledge(&mut self, index: Index) -> bool {
        self.paused = false;
        while let Some(&(last, bytes)) = self.inflight.front() {
            if last > index {
                break;
            }
            self.inflight.pop_front();
            self.inflight_bytes -= bytes;
        }
        if index > self.matched {
            self.matched = index;
            self.next = self.next.max(index + 1);
            true
        } else {
            false
        }
    }

    /// Falls back to probing from `next`.
    pub fn probe_from(&mut self, next: Index) {
        self.state = ReplicationState::Probe;
        self.next = next.max(self.matched + 1);
        self.paused = false;
        self.inflight.clear();
        self.inflight_bytes = 0;
    }

    /// The peer holds less than it acknowledged before (a Multi-Paxos
    /// acceptor that restarted knows fewer slots chosen than it did):
    /// its match goes back to `matched` and probing starts after it.
    pub fn forgot(&mut self, matched: Index) {
        self.matched = self.matched.min(matched);
        self.probe_from(matched + 1);
    }

    /// Starts sending the snapshot through `index` from its beginning
    /// (unless that one is already on its way).
    pub fn send_snapshot(&mut self, index: Index) {
        if self.state == ReplicationState::Snapshot && self.snapshot_index == index {
            return;
        }
        self.state = ReplicationState::Snapshot;
        self.snapshot_index = index;
        self.snapshot_offset = 0;
        self.snapshot_sent = 0;
        self.paused = false;
        self.check_needed = false;
        self.inflight.clear();
        self.inflight_bytes = 0;
    }

    /// Switches to pipelined replication after a successful probe.
    pub fn start_replicating(&mut self) {
        self.state = ReplicationState::Replicate;
        self.next = self.matched + 1;
        self.paused = false;
        self.inflight.clear();
        self.inflight_bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelining_respects_message_and_byte_limits() {
        let mut p = Progress::new(1);
        p.acknowledge(0);
        p.start_replicating();
        p.sent(10, 100);
        p.sent(20, 100);
        assert!(p.is_full(2, 1000));
        assert!(!p.is_full(3, 1000));
        assert!(p.is_full(3, 200));
        assert!(p.acknowledge(10));
        assert!(!p.is_full(2, 1000));
        assert_eq!(p.next, 21);
        assert!(!p.acknowledge(5));
    }

    #[test]
    fn probe_sends_one_at_a_time() {
        let mut p = Progress::new(5);
        assert!(!p.is_full(1, 1));
        p.sent(7, 10);
        assert!(p.is_full(100, 100));
        p.probe_from(3);
        assert!(!p.is_full(1, 1));
        assert_eq!(p.next, 3);
    }
}
