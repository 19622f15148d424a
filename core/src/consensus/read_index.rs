//! ReadIndex bookkeeping: reads wait for a heartbeat round that a quorum
//! answered, then become ready at the commit index they started at.

use crate::consensus::quorum;
use crate::consensus::ReadId;
use crate::types::Index;
use std::collections::VecDeque;

#[derive(Debug)]
struct PendingRead {
    id: ReadId,
    index: Index,
    round: u64,
    /// Bit per voter position that answered a round >= `round`.
    acks: u64,
}

/// Reads that arrived at the leader and the rounds that confirm them.
#[derive(Debug, Default)]
pub struct ReadQueue {
    waiting: Vec<ReadId>,
    pending: VecDeque<PendingRead>,
    round: u64,
}

impl ReadQueue {
    /// Queues a read until the next round starts.
    pub fn push(&mut self, id: ReadId) {
        self.waiting.push(id);
    }

    /// True when reads wait for a round to start.
    pub fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// The latest round started (0: none yet).
    pub fn current_round(&self) -> u64 {
        self.round
    }

    /// Starts a round for every waiting read at `commit`; the leader at
    /// `self_pos` counts as acknowledged. Returns the round number.
    pub fn start_round(&mut self, commit: Index, self_pos: usize) -> u64 {
        self.round += 1;
        let round = self.round;
        for id in self.waiting.drain(..) {
            self.pending.push_back(PendingRead {
                id,
                index: commit,
                round,
                acks: 1 << self_pos,
            });
        }
        round
    }

    /// Records that voter `pos` answered round `round`; calls `ready` for each
    /// read a majority of `voters` has now confirmed, in arrival order.
    pub fn acknowledge(
        &mut self,
        pos: usize,
        round: u64,
        voters: usize,
        mut ready: impl FnMut(ReadId, Index),
    ) {
        for r in self.pending.iter_mut() {
            if r.round > round {
                break;
            }
            r.acks |= 1 << pos;
        }
        while let Some(front) = self.pending.front() {
            if !quorum::has_majority(front.acks.count_ones() as usize, voters) {
                break;
            }
            if let Some(r) = self.pending.pop_front() {
                ready(r.id, r.index);
            }
        }
    }

    /// Drops every read (leadership was lost), calling `failed` for each.
    pub fn fail_all(&mut self, mut failed: impl FnMut(ReadId)) {
        for r in self.pending.drain(..) {
            failed(r.id);
        }
        for id in self.waiting.drain(..) {
            failed(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_need_a_majority_of_a_round_at_or_after_theirs() {
        let mut q = ReadQueue::default();
        q.push(1);
        let r1 = q.start_round(10, 0);
        q.push(2);
        let r2 = q.start_round(12, 0);
        let mut ready = Vec::new();
        // An answer to an older round confirms nothing newer.
        q.acknowledge(1, r1, 5, |id, i| ready.push((id, i)));
        assert!(ready.is_empty());
        q.acknowledge(2, r1, 5, |id, i| ready.push((id, i)));
        assert_eq!(ready, vec![(1, 10)]);
        q.acknowledge(1, r2, 5, |id, i| ready.push((id, i)));
        assert_eq!(ready.len(), 1);
        q.acknowledge(3, r2, 5, |id, i| ready.push((id, i)));
        assert_eq!(ready, vec![(1, 10), (2, 12)]);
    }

    #[test]
    fn fail_all_reports_every_read() {
        let mut q = ReadQueue::default();
        q.push(1);
        q.start_round(1, 0);
        q.push(2);
        let mut failed = Vec::new();
        q.fail_all(|id| failed.push(id));
        failed.sort();
        assert_eq!(failed, vec![1, 2]);
        assert!(!q.has_waiting());
    }
}
