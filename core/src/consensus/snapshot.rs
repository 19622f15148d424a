//! Snapshots in the protocol cores: what one is, how a leader cuts it into
//! chunks for a follower its log no longer reaches, and how the follower
//! puts the chunks back together. Shared by Raft (InstallSnapshot), ZAB
//! (SNAP) and Multi-Paxos (catch-up past the compaction point); each core
//! wraps [`SnapshotChunk`] and [`SnapshotAck`] in messages of its own.
//!
//! A chunk names the snapshot it belongs to (index, epoch, length and the
//! CRC32C of the whole): a follower that finds a chunk of another snapshot
//! starts over, and one whose assembled bytes fail the checksum throws
//! them away. Every chunk is answered with how many bytes the follower
//! holds, so a lost chunk is sent again from there, not from the start.

use crate::types::{Epoch, Index};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A state machine's state after applying every entry through `index`
/// (whose epoch is `epoch`), as the host's machine serialized it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The last entry it covers.
    pub index: Index,
    /// That entry's epoch.
    pub epoch: Epoch,
    /// The state machine's bytes.
    pub data: Bytes,
}

impl Snapshot {
    /// The identity chunks carry: index, epoch, length and checksum.
    pub fn id(&self) -> SnapshotId {
        SnapshotId {
            index: self.index,
            epoch: self.epoch,
            len: self.data.len() as u64,
            crc: crc32c::crc32c(&self.data),
        }
    }

    /// The chunk at `offset` of at most `max` bytes (at least one byte
    /// when any is left; empty only for an empty snapshot).
    pub fn chunk(&self, id: SnapshotId, offset: u64, max: usize) -> SnapshotChunk {
        let from = (offset as usize).min(self.data.len());
        let to = from + max.max(1).min(self.data.len() - from);
        SnapshotChunk {
            id,
            offset: from as u64,
            data: self.data.slice(from..to),
        }
    }
}

/// Which snapshot a chunk belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotId {
    /// The last entry it covers.
    pub index: Index,
    /// That entry's epoch.
    pub epoch: Epoch,
    /// Its length in bytes.
    pub len: u64,
    /// CRC32C of all its bytes.
    pub crc: u32,
}

/// A piece of a snapshot on its way to a follower.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotChunk {
    /// The snapshot.
    pub id: SnapshotId,
    /// Where `data` starts in it.
    pub offset: u64,
    /// The bytes.
    pub data: Bytes,
}

/// A follower's answer to a chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotAck {
    /// The snapshot's index, as the chunk named it.
    pub index: Index,
    /// How many bytes of it the follower holds; the whole length once it
    /// installed it (or already held everything it covers).
    pub received: u64,
    /// True once the follower holds everything through `index`.
    pub done: bool,
}

/// A follower's half-received snapshot.
#[derive(Debug, Default)]
pub(crate) struct Incoming {
    id: Option<SnapshotId>,
    buf: Vec<u8>,
}

/// What a chunk did to the snapshot being received.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// More is needed; ask from this offset.
    Partial(u64),
    /// Complete and its checksum holds.
    Complete(Snapshot),
}

impl Incoming {
    /// Takes `chunk`: a chunk of another snapshot starts over (from its
    /// own offset 0), one at the wrong offset is ignored, one that ends the
    /// snapshot completes it if the checksum holds (else it starts over).
    pub(crate) fn receive(&mut self, chunk: SnapshotChunk) -> Received {
        if self.id != Some(chunk.id) {
            self.id = Some(chunk.id);
            self.buf.clear();
        }
        if chunk.offset == self.buf.len() as u64
            && self.buf.len() as u64 + chunk.data.len() as u64 <= chunk.id.len
        {
            self.buf.extend_from_slice(&chunk.data);
        }
        if (self.buf.len() as u64) < chunk.id.len {
            return Received::Partial(self.buf.len() as u64);
        }
        let data = Bytes::from(std::mem::take(&mut self.buf));
        self.id = None;
        if crc32c::crc32c(&data) != chunk.id.crc {
            ::log::warn!(
                "snapshot at {} failed its checksum; receiving it again",
                chunk.id.index
            );
            return Received::Partial(0);
        }
        Received::Complete(Snapshot {
            index: chunk.id.index,
            epoch: chunk.id.epoch,
            data,
        })
    }

    /// Drops what was received (the sender is no longer the leader).
    pub(crate) fn clear(&mut self) {
        self.id = None;
        self.buf = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(len: usize) -> Snapshot {
        Snapshot {
            index: 9,
            epoch: 2,
            data: (0..len).map(|i| i as u8).collect::<Vec<u8>>().into(),
        }
    }

    #[test]
    fn chunks_reassemble_after_a_lost_and_a_repeated_chunk() {
        let s = snap(10);
        let id = s.id();
        let mut inc = Incoming::default();
        assert_eq!(inc.receive(s.chunk(id, 0, 4)), Received::Partial(4));
        // Chunk 4..8 lost: 8..10 does not fit, and the answer says where.
        assert_eq!(inc.receive(s.chunk(id, 8, 4)), Received::Partial(4));
        assert_eq!(inc.receive(s.chunk(id, 0, 4)), Received::Partial(4));
        assert_eq!(inc.receive(s.chunk(id, 4, 4)), Received::Partial(8));
        assert_eq!(inc.receive(s.chunk(id, 8, 4)), Received::Complete(s));
    }

    #[test]
    fn a_chunk_of_another_snapshot_starts_over_and_a_bad_checksum_is_refused() {
        let s = snap(6);
        let mut inc = Incoming::default();
        assert_eq!(inc.receive(s.chunk(s.id(), 0, 3)), Received::Partial(3));
        let other = Snapshot {
            index: 12,
            ..snap(6)
        };
        assert_eq!(
            inc.receive(other.chunk(other.id(), 3, 3)),
            Received::Partial(0),
            "a new snapshot starts from its beginning"
        );
        let mut bad = s.id();
        bad.crc ^= 1;
        assert_eq!(inc.receive(s.chunk(bad, 0, 6)), Received::Partial(0));
        let empty = snap(0);
        assert_eq!(
            inc.receive(empty.chunk(empty.id(), 0, 3)),
            Received::Complete(empty)
        );
    }

    #[test]
    fn an_install_goes_before_the_rest_of_its_batch() {
        use crate::consensus::Effects;
        use crate::types::{Entry, EntryKind};
        let e = |i| Entry::new(1, i, EntryKind::Normal, Bytes::from_static(b"x"));
        let mut fx: Effects<(), ()> = Effects::default();
        // Earlier in the batch: a cut at 4 and appends 4..=6.
        fx.truncate(4);
        fx.append.extend([e(4), e(5), e(6)]);
        fx.install(snap(0).with_index(5), false);
        // Appends the snapshot covers go; the cut moves to just after it.
        assert_eq!(
            fx.append.iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![6]
        );
        assert_eq!(fx.truncate_from, Some(6));
        // A log that does not match the snapshot is cut right after it.
        let mut fx: Effects<(), ()> = Effects::default();
        fx.install(snap(0).with_index(5), true);
        assert_eq!(fx.truncate_from, Some(6));
        assert!(fx.snapshot.is_some());
    }

    impl Snapshot {
        fn with_index(mut self, index: Index) -> Self {
            self.index = index;
            self
        }
    }
}
