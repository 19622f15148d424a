//! The in-memory log shared by the protocol cores: contiguous entries after
//! the last snapshot (from index 1 when there is none), the commit index,
//! and epoch lookups.

use crate::types::{Entry, Epoch, Index};

/// A contiguous run of entries after a snapshot, plus the commit index.
///
/// Invariant: `entries[i].index == snapshot_index() + i + 1`;
/// `snapshot_index() <= commit <= last_index()`.
#[derive(Debug, Default)]
pub struct Log {
    entries: Vec<Entry>,
    /// The last index the snapshot covers (0: none), and its epoch.
    base: Index,
    base_epoch: Epoch,
    commit: Index,
}

impl Log {
    /// A log holding `entries`, which must start at index 1 and be contiguous
    /// (protocols with more rules about epochs check those themselves).
    ///
    /// # Errors
    /// A description of the first gap.
    pub fn from_entries(entries: Vec<Entry>, commit: Index) -> Result<Self, String> {
        for (i, e) in entries.iter().enumerate() {
            if e.index != i as Index + 1 {
                return Err(format!(
                    "entry {} found where index {} was expected",
                    e.index,
                    i + 1
                ));
            }
        }
        let last = entries.len() as Index;
        Ok(Log {
            entries,
            base: 0,
            base_epoch: 0,
            commit: commit.min(last),
        })
    }

    /// A log that continues a snapshot through `(base, base_epoch)` with
    /// `entries` (from `base + 1`, contiguous); everything through `base`
    /// counts as committed.
    ///
    /// # Errors
    /// A description of the first gap.
    pub fn after_snapshot(
        base: Index,
        base_epoch: Epoch,
        entries: Vec<Entry>,
        commit: Index,
    ) -> Result<Self, String> {
        if !consecutive(&entries, base + 1) {
            return Err(format!(
                "the log after the snapshot at {base} does not continue it (it starts at {:?})",
                entries.first().map(|e| e.index)
            ));
        }
        let last = base + entries.len() as Index;
        Ok(Log {
            entries,
            base,
            base_epoch,
            commit: commit.clamp(base, last),
        })
    }

    /// The last index a snapshot covers (0: none); entries through it are
    /// no longer held.
    pub fn snapshot_index(&self) -> Index {
        self.base
    }

    /// The epoch of the entry at [`Log::snapshot_index`].
    pub fn snapshot_epoch(&self) -> Epoch {
        self.base_epoch
    }

    /// Drops the entries through `index`, which must be committed and held
    /// (a snapshot of the state machine now covers them). Returns false,
    /// changing nothing, otherwise.
    pub fn compact_to(&mut self, index: Index) -> bool {
        if index <= self.base || index > self.commit {
            return false;
        }
        let Some(epoch) = self.term(index) else {
            return false;
        };
        self.entries.drain(..(index - self.base) as usize);
        self.base = index;
        self.base_epoch = epoch;
        true
    }

    /// Puts a snapshot through `(index, epoch)` in place of the log before
    /// it, which counts as committed. With `keep_suffix` the entries after
    /// `index` stay; otherwise the log ends at `index`.
    pub fn install_snapshot(&mut self, index: Index, epoch: Epoch, keep_suffix: bool) {
        if keep_suffix && index < self.last_index() && index >= self.base {
            self.entries.drain(..(index - self.base) as usize);
        } else {
            self.entries.clear();
        }
        self.base = index;
        self.base_epoch = epoch;
        self.commit = self.commit.max(index);
    }

    /// Checks that epochs never decrease along `entries` (true of Raft and
    /// ZAB logs, not of a Paxos acceptor's).
    ///
    /// # Errors
    /// A description of the first entry whose epoch goes back.
    pub fn check_epochs_ordered(entries: &[Entry]) -> Result<(), String> {
        match entries.windows(2).find(|w| w[1].epoch < w[0].epoch) {
            Some(w) => Err(format!(
                "entry {} has a lower epoch than its predecessor",
                w[1].index
            )),
            None => Ok(()),
        }
    }

    /// Index of the last entry (the snapshot's when none follows it; 0
    /// when empty).
    pub fn last_index(&self) -> Index {
        self.base + self.entries.len() as Index
    }

    /// Term of the last entry (the snapshot's when none follows it; 0 when
    /// empty).
    pub fn last_term(&self) -> Epoch {
        self.entries.last().map_or(self.base_epoch, |e| e.epoch)
    }

    /// Term of the entry at `index`: `Some(0)` for index 0, the snapshot's
    /// epoch at its index, `None` past the end or before the snapshot.
    pub fn term(&self, index: Index) -> Option<Epoch> {
        if index == self.base {
            return Some(self.base_epoch);
        }
        if index < self.base {
            return None;
        }
        self.entries
            .get((index - self.base) as usize - 1)
            .map(|e| e.epoch)
    }

    /// The entry at `index`, if held (not past the end nor in the snapshot).
    pub fn entry(&self, index: Index) -> Option<&Entry> {
        if index <= self.base {
            return None;
        }
        self.entries.get((index - self.base) as usize - 1)
    }

    /// Entries in `[from, to]` (clamped to what is held; empty when `from`
    /// is past the end).
    pub fn slice(&self, from: Index, to: Index) -> &[Entry] {
        let lo = (from.max(self.base + 1) - self.base - 1).min(self.entries.len() as Index);
        let hi = to.min(self.last_index()).saturating_sub(self.base).max(lo);
        &self.entries[lo as usize..hi as usize]
    }

    /// How many entries from `from` on fit in one message under the limits,
    /// and their size in bytes. At least one entry goes when any is there.
    pub fn batch_from(&self, from: Index, max_entries: usize, max_bytes: usize) -> (usize, usize) {
        let mut bytes = 0usize;
        let mut count = 0usize;
        for e in self.slice(from, self.last_index()) {
            if count >= max_entries || (count > 0 && bytes + e.size() > max_bytes) {
                break;
            }
            bytes += e.size();
            count += 1;
        }
        (count, bytes)
    }

    /// Commit index.
    pub fn commit(&self) -> Index {
        self.commit
    }

    /// Raises the commit index (never lowers it), capped at the last index.
    pub fn commit_to(&mut self, index: Index) -> bool {
        let index = index.min(self.last_index());
        if index > self.commit {
            self.commit = index;
            true
        } else {
            false
        }
    }

    /// Appends one entry at `last_index() + 1`.
    pub fn push(&mut self, entry: Entry) {
        debug_assert_eq!(entry.index, self.last_index() + 1);
        self.entries.push(entry);
    }

    /// Removes every entry at or above `index`. Committed entries are never
    /// removed; returns false (and removes nothing) if asked to.
    pub fn truncate(&mut self, index: Index) -> bool {
        if index <= self.commit {
            return false;
        }
        self.entries.truncate((index - self.base - 1) as usize);
        true
    }

    /// True when a log ending at `(last_term, last_index)` is at least as
    /// up to date as this one (Raft §5.4.1; ZAB orders by zxid the same way).
    pub fn is_up_to_date(&self, last_index: Index, last_term: Epoch) -> bool {
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// First index of the run of entries with the same term as `index`.
    pub fn first_index_of_term_at(&self, index: Index) -> Index {
        let Some(term) = self.term(index) else {
            return index;
        };
        let mut i = index;
        while i > self.base + 1 && self.term(i - 1) == Some(term) {
            i -= 1;
        }
        i
    }

    /// Last index whose entry has term `term`, if the log holds any.
    pub fn last_index_of_term(&self, term: Epoch, at_most: Index) -> Option<Index> {
        let mut i = at_most.min(self.last_index());
        while i >= self.base && i > 0 {
            match self.term(i) {
                Some(t) if t == term => return Some(i),
                Some(t) if t < term => return None,
                _ => i -= 1,
            }
        }
        None
    }
}

/// True when `entries` are numbered `first, first + 1, …` without a gap or
/// an overflow (what a follower checks before it takes a batch).
pub fn consecutive(entries: &[Entry], first: Index) -> bool {
    entries
        .iter()
        .enumerate()
        .all(|(i, e)| first.checked_add(i as Index) == Some(e.index))
}
