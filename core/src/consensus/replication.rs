//! Leader-side replication shared by the protocol cores: per-peer progress,
//! batches cut to the limits, the uncommitted-bytes budget, and quorum
//! arithmetic over acknowledgements. Each core wraps the batches in its own
//! message (AppendEntries, Accept, Proposal).

use crate::consensus::log::Log;
use crate::consensus::progress::{Progress, ReplicationState};
use crate::consensus::quorum;
use crate::error::ProposeError;
use crate::types::{Entry, Index};

/// Batching, pipelining and memory limits of a leader, the same for every
/// protocol (each protocol's config carries one). `Default` gives values
/// that work; [`ReplicationLimits::validate`] rejects zeros.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicationLimits {
    /// Most entries in one replication message.
    pub max_entries_per_message: usize,
    /// Most entry bytes in one message (at least one entry always goes).
    pub max_bytes_per_message: usize,
    /// Most messages in flight to one peer.
    pub max_inflight_messages: usize,
    /// Most entry bytes in flight to one peer.
    pub max_inflight_bytes: usize,
    /// Most bytes of proposed but uncommitted entries at the leader; further
    /// proposals fail with `Busy`.
    pub max_uncommitted_bytes: usize,
}

impl Default for ReplicationLimits {
    fn default() -> Self {
        ReplicationLimits {
            max_entries_per_message: 4096,
            max_bytes_per_message: 1 << 20,
            max_inflight_messages: 64,
            max_inflight_bytes: 32 << 20,
            max_uncommitted_bytes: 64 << 20,
        }
    }
}

impl ReplicationLimits {
    /// Checks that every limit is at least 1.
    ///
    /// # Errors
    /// A [`crate::ConfigError`] naming the first zero field.
    pub fn validate(&self) -> Result<(), crate::ConfigError> {
        crate::consensus::validate_limits(&[
            ("max_entries_per_message", self.max_entries_per_message),
            ("max_bytes_per_message", self.max_bytes_per_message),
            ("max_inflight_messages", self.max_inflight_messages),
            ("max_inflight_bytes", self.max_inflight_bytes),
            ("max_uncommitted_bytes", self.max_uncommitted_bytes),
        ])
    }
}

/// One batch for one peer: entries from `first` on (possibly none: a probe).
#[derive(Debug)]
pub struct Batch {
    /// Index of the first entry, or where an empty batch would start.
    pub first: Index,
    /// The entries.
    pub entries: Vec<Entry>,
}

/// The leader's view of its peers and its uncommitted budget.
#[derive(Debug, Default)]
pub struct Replication {
    /// Progress by voter position (the leader's own tracks its log).
    pub progress: Vec<Progress>,
    self_pos: usize,
    uncommitted: usize,
    /// Between [`Replication::reset`] and [`Replication::stop_leading`].
    leading: bool,
    scratch: Vec<Index>,
}

impl Replication {
    /// Replication for the voter at `self_pos`.
    pub fn new(self_pos: usize) -> Self {
        Replication {
            self_pos,
            ..Self::default()
        }
    }

    /// Starts a leadership over `voters` peers: everyone probes from `next`;
    /// the leader holds everything through `own_last`.
    pub fn reset(&mut self, voters: usize, next: Index, own_last: Index) {
        self.progress = (0..voters).map(|_| Progress::new(next)).collect();
        self.progress[self.self_pos].matched = own_last;
        self.progress[self.self_pos].recent_active = true;
        self.uncommitted = 0;
        self.leading = true;
    }

    /// Leadership ended: forgets the budget.
    pub fn stop_leading(&mut self) {
        self.uncommitted = 0;
        self.leading = false;
    }

    /// True from [`Replication::reset`] until [`Replication::stop_leading`].
    pub fn is_leading(&self) -> bool {
        self.leading
    }

    /// Refuses an entry of `size` bytes when the uncommitted budget `max`
    /// is spent (one entry always fits when nothing is uncommitted).
    ///
    /// # Errors
    /// [`ProposeError::Busy`].
    pub fn admit(&self, size: usize, max: usize) -> Result<(), ProposeError> {
        if self.uncommitted > 0 && self.uncommitted + size > max {
            Err(ProposeError::Busy)
        } else {
            Ok(())
        }
    }

    /// The leader appended an entry of `size` bytes at `index`.
    pub fn appended(&mut self, index: Index, size: usize) {
        self.uncommitted += size;
        self.progress[self.self_pos].matched = index;
    }

    /// The highest index a majority holds.
    pub fn quorum_index(&mut self) -> Index {
        let acked: Vec<Index> = self.progress.iter().map(|p| p.matched).collect();
        quorum::committed_index(&acked, &mut self.scratch)
    }

    /// Commits `log` through `to` and frees the budget of what committed.
    /// Returns true when the commit point moved.
    pub fn commit(&mut self, log: &mut Log, to: Index) -> bool {
        let old = log.commit();
        if !log.commit_to(to) {
            return false;
        }
        let freed: usize = log
            .slice(old + 1, log.commit())
            .iter()
            .map(Entry::size)
            .sum();
        self.uncommitted = self.uncommitted.saturating_sub(freed);
        true
    }

    /// CheckQuorum: true when a majority was heard from since the last call;
    /// then starts a new round.
    pub fn quorum_active(&mut self) -> bool {
        let active = self.progress.iter().filter(|p| p.recent_active).count();
        let ok = quorum::has_majority(active, self.progress.len());
        for (i, p) in self.progress.iter_mut().enumerate() {
            p.recent_active = i == self.self_pos;
        }
        ok
    }

    /// The next batch for the peer at `p` under `limits`, recorded as sent;
    /// `None` when the pipeline is full, a probe is outstanding, or (when
    /// pipelining) there is nothing new. A probing peer gets one batch,
    /// empty if it is caught up.
    pub fn next_batch(&mut self, p: usize, log: &Log, limits: &ReplicationLimits) -> Option<Batch> {
        let pr = &self.progress[p];
        if pr.is_full(limits.max_inflight_messages, limits.max_inflight_bytes)
            || (pr.state == ReplicationState::Replicate && pr.next > log.last_index())
        {
            return None;
        }
        let first = pr.next;
        let (count, bytes) = log.batch_from(
            first,
            limits.max_entries_per_message,
            limits.max_bytes_per_message,
        );
        let entries = log.slice(first, first + count as Index - 1).to_vec();
        let pr = &mut self.progress[p];
        pr.check_needed = false;
        pr.sent(first + count as Index - 1, bytes);
        Some(Batch { first, entries })
    }

    /// When a heartbeat answer asked for it and nothing else was sent: the
    /// index an empty batch should start at, to find out whether pipelined
    /// messages were lost.
    pub fn take_check(&mut self, p: usize) -> Option<Index> {
        let pr = &mut self.progress[p];
        let due = std::mem::take(&mut pr.check_needed) && pr.state == ReplicationState::Replicate;
        due.then_some(pr.next)
    }
}

impl Log {
    /// Appends to `out` the entries committed since `emitted` and advances it.
    pub fn take_committed(&self, emitted: &mut Index, out: &mut Vec<Entry>) {
        let commit = self.commit();
        debug_assert!(
            commit <= self.last_index(),
            "commit {commit} beyond the last index {}",
            self.last_index()
        );
        // Emitted once, in order: what follows continues what went before.
        debug_assert!(
            out.last().is_none_or(|e| e.index == *emitted),
            "committed entries emitted out of order"
        );
        if commit > *emitted {
            out.extend_from_slice(self.slice(*emitted + 1, commit));
            *emitted = commit;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::EntryKind;
    use bytes::Bytes;

    fn log_of(n: Index) -> Log {
        let mut log = Log::default();
        for i in 1..=n {
            log.push(Entry::new(
                1,
                i,
                EntryKind::Normal,
                Bytes::from_static(b"xy"),
            ));
        }
        log
    }

    #[test]
    fn budget_commit_and_quorum() {
        let mut r = Replication::new(0);
        r.reset(3, 1, 0);
        let mut log = log_of(4);
        for i in 1..=4 {
            assert!(r.admit(26, 104).is_ok());
            r.appended(i, 26);
        }
        assert_eq!(r.admit(26, 104), Err(ProposeError::Busy));
        r.progress[1].acknowledge(3);
        assert_eq!(r.quorum_index(), 3);
        assert!(r.commit(&mut log, 3));
        assert!(r.admit(26, 104).is_ok(), "committing freed the budget");
        assert!(!r.commit(&mut log, 2));
    }

    #[test]
    fn batches_respect_limits_and_probes_go_one_at_a_time() {
        let log = log_of(10);
        let limits = ReplicationLimits {
            max_entries_per_message: 4,
            max_inflight_messages: 2,
            ..ReplicationLimits::default()
        };
        let mut r = Replication::new(0);
        r.reset(2, 1, 10);
        // Probe: one batch, then nothing until an answer.
        assert_eq!(
            r.next_batch(1, &log, &limits).map(|b| b.entries.len()),
            Some(4)
        );
        assert!(r.next_batch(1, &log, &limits).is_none());
        r.progress[1].acknowledge(4);
        r.progress[1].start_replicating();
        let sizes: Vec<usize> = std::iter::from_fn(|| r.next_batch(1, &log, &limits))
            .map(|b| b.entries.len())
            .collect();
        assert_eq!(sizes, vec![4, 2], "two in flight, up to the end");
        assert!(r.take_check(1).is_none());
        r.progress[1].check_needed = true;
        assert_eq!(r.take_check(1), Some(11));
    }

    #[test]
    fn check_quorum_counts_and_resets() {
        let mut r = Replication::new(0);
        r.reset(3, 1, 0);
        assert!(!r.quorum_active(), "only the leader itself");
        r.progress[2].recent_active = true;
        assert!(r.quorum_active());
        assert!(!r.quorum_active(), "a new round starts empty");
    }
}
