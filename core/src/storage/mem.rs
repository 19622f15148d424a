//! In-memory storage, for tests, examples and benchmarks.

use super::{Storage, StorageError};
use crate::consensus::Snapshot;
use crate::types::{Entry, Index};
use parking_lot::Mutex;
use std::sync::Arc;

/// The log is kept the way a write-ahead log keeps it: each entry
/// postcard-encoded into one growing byte buffer, with the offset where each
/// entry starts. That costs a few bytes per entry instead of a full `Entry`
/// (the core holds the decoded log), and appending copies no `Entry`.
#[derive(Debug, Default)]
struct Inner {
    hard_state: Option<Vec<u8>>,
    snapshot: Option<Snapshot>,
    wal: Vec<u8>,
    /// `offsets[i]` is where entry `base + i + 1` starts in `wal`.
    offsets: Vec<usize>,
    /// The index before the first entry held.
    base: Index,
    syncs: u64,
}

impl Inner {
    fn last(&self) -> Index {
        self.base + self.offsets.len() as Index
    }

    /// Removes every entry at or above `index`.
    fn cut(&mut self, index: Index) {
        if index <= self.base {
            self.wal.clear();
            self.offsets.clear();
            self.base = index.saturating_sub(1);
        } else {
            let keep = (index - self.base - 1) as usize;
            if keep < self.offsets.len() {
                let at = self.offsets[keep];
                self.wal.truncate(at);
                self.offsets.truncate(keep);
            }
        }
    }
}

/// Storage held in memory. Clones share the same contents, so a test can keep
/// a clone to restart a node "from disk" after stopping it. Thread-safe.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    inner: Arc<Mutex<Inner>>,
}

impl MemStorage {
    /// Empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of stored entries (after the snapshot).
    pub fn len(&self) -> usize {
        self.inner.lock().offsets.len()
    }

    /// True when no entry is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Storage for MemStorage {
    fn hard_state(&self) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.inner.lock().hard_state.clone())
    }

    fn snapshot(&self) -> Result<Option<Snapshot>, StorageError> {
        Ok(self.inner.lock().snapshot.clone())
    }

    fn entries(&self) -> Result<Vec<Entry>, StorageError> {
        let inner = self.inner.lock();
        let mut out = Vec::with_capacity(inner.offsets.len());
        let mut rest = &inner.wal[..];
        for _ in 0..inner.offsets.len() {
            let (e, r) = postcard::take_from_bytes::<Entry>(rest)
                .map_err(|e| StorageError::Corrupt(format!("log entry: {e}")))?;
            out.push(e);
            rest = r;
        }
        Ok(out)
    }

    fn set_hard_state(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.inner.lock().hard_state = Some(bytes.to_vec());
        Ok(())
    }

    fn truncate_from(&mut self, index: Index) -> Result<(), StorageError> {
        let mut inner = self.inner.lock();
        if index <= inner.last() {
            inner.cut(index.max(1));
        }
        Ok(())
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let mut inner = self.inner.lock();
        if let Some(first) = entries.first() {
            let expected = inner.last() + 1;
            if first.index == 0 || first.index > expected {
                return Err(StorageError::Corrupt(format!(
                    "append at index {} but the log continues at {expected}",
                    first.index
                )));
            }
            inner.cut(first.index);
        }
        let inner = &mut *inner;
        for e in entries {
            inner.offsets.push(inner.wal.len());
            let wal = std::mem::take(&mut inner.wal);
            inner.wal = postcard::to_extend(e, wal)
                .map_err(|err| StorageError::Corrupt(format!("entry {}: {err}", e.index)))?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.inner.lock().syncs += 1;
        Ok(())
    }

    fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        let mut inner = self.inner.lock();
        let index = snapshot.index;
        if inner.snapshot.as_ref().is_some_and(|s| s.index >= index) {
            return Ok(());
        }
        if index >= inner.last() {
            inner.wal.clear();
            inner.offsets.clear();
        } else if index > inner.base {
            let n = (index - inner.base) as usize;
            let at = inner.offsets[n];
            inner.wal.drain(..at);
            inner.offsets.drain(..n);
            inner.offsets.iter_mut().for_each(|o| *o -= at);
        }
        inner.base = inner.base.max(index);
        inner.snapshot = Some(snapshot.clone());
        Ok(())
    }

    /// How many times [`Storage::sync`] ran (a measure of group commit).
    fn sync_count(&self) -> u64 {
        self.inner.lock().syncs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::EntryKind;
    use bytes::Bytes;

    fn e(index: Index) -> Entry {
        Entry::new(1, index, EntryKind::Normal, Bytes::from(vec![index as u8]))
    }

    #[test]
    fn append_truncate_and_share_between_clones() {
        let mut s = MemStorage::new();
        let kept = s.clone();
        s.append(&[e(1), e(2), e(3)]).unwrap();
        s.truncate_from(2).unwrap();
        s.append(&[e(2)]).unwrap();
        s.set_hard_state(b"hs").unwrap();
        s.sync().unwrap();
        assert_eq!(kept.entries().unwrap(), vec![e(1), e(2)]);
        assert_eq!(kept.hard_state().unwrap(), Some(b"hs".to_vec()));
        assert_eq!(kept.sync_count(), 1);
    }

    #[test]
    fn append_with_a_gap_is_an_error() {
        let mut s = MemStorage::new();
        assert!(matches!(s.append(&[e(2)]), Err(StorageError::Corrupt(_))));
        assert!(s.is_empty());
    }
}
