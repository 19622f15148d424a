//! What must survive a restart: the protocol's hard state and the log.
//!
//! The runtime calls the mutating methods for a whole batch of effects and
//! then [`Storage::sync`] once before it releases any message that depends on
//! them (group commit); a durable store makes `sync` the point of durability.
//! [`FileStorage`] keeps them in a data directory (a write-ahead log and a
//! hard-state file, on any [`Disk`]); [`MemStorage`] in memory.

mod disk;
mod file;
#[cfg(test)]
mod file_tests;
mod mem;
mod record;
mod snapshot_file;
#[cfg(test)]
mod snapshot_tests;
mod wal;

pub use disk::{Disk, DiskFile, OsDisk, OsLock};
pub use file::{FileOptions, FileStorage, FORMAT_VERSION};
pub use mem::MemStorage;
pub use wal::TornTail;

use crate::consensus::Snapshot;
use crate::error::ConfigError;
use crate::types::{Entry, Index};
use std::path::PathBuf;
use thiserror::Error;

/// A storage failure. The runtime stops the node rather than run on without
/// durability.
#[derive(Debug, Error)]
pub enum StorageError {
    /// The underlying device failed.
    #[error("storage I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// Stored bytes did not pass their checksum or did not decode.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A damaged record or file: where, and what is wrong with it. Never
    /// skipped: the node does not start on a log it cannot trust.
    #[error("{} is corrupt at offset {offset}: {reason}", file.display())]
    CorruptRecord {
        /// The damaged file.
        file: PathBuf,
        /// Where in it the damage starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The directory holds files that are not a consenso data directory;
    /// nothing was written to it.
    #[error("{} is not a consenso data directory (it holds other files)", .0.display())]
    NotADataDir(PathBuf),
    /// A file was written by a newer version of consenso.
    #[error("{} has format version {found}; this build reads up to {supported}", path.display())]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// Another process (or another node of this one) has the data directory
    /// open.
    #[error("{} is in use by another node (its LOCK is held)", .0.display())]
    Locked(PathBuf),
    /// A storage setting was rejected.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Durable home of one node's hard state and log. Used from one thread at a
/// time (the node's driver thread), so methods take `&mut self`.
pub trait Storage: Send + 'static {
    /// The last hard state written, as the protocol encoded it.
    ///
    /// # Errors
    /// [`StorageError`] when it cannot be read.
    fn hard_state(&self) -> Result<Option<Vec<u8>>, StorageError>;

    /// The latest snapshot saved, if any (read when the node starts).
    ///
    /// # Errors
    /// [`StorageError`] when it cannot be read or is damaged.
    fn snapshot(&self) -> Result<Option<Snapshot>, StorageError>;

    /// Every stored entry, in index order: from index 1, or with a
    /// snapshot from at or before the index after it (entries it covers
    /// may still be there). A node calls it once, when it starts; a store
    /// may hand its recovered log over only once ([`FileStorage`] does,
    /// and errors after).
    ///
    /// # Errors
    /// [`StorageError`] when they cannot be read.
    fn entries(&self) -> Result<Vec<Entry>, StorageError>;

    /// Replaces the hard state (not durable until [`Storage::sync`]).
    ///
    /// # Errors
    /// [`StorageError`] on failure.
    fn set_hard_state(&mut self, bytes: &[u8]) -> Result<(), StorageError>;

    /// Replaces the hard state when only its commit index changed: this
    /// need never become durable (a restart relearns the commit index), so
    /// a store may keep it in memory until the next write that is synced.
    /// The default treats it as [`Storage::set_hard_state`].
    ///
    /// # Errors
    /// [`StorageError`] on failure.
    fn set_hard_state_unsynced(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.set_hard_state(bytes)
    }

    /// Removes every entry at or above `index` (not durable until sync).
    ///
    /// # Errors
    /// [`StorageError`] on failure.
    fn truncate_from(&mut self, index: Index) -> Result<(), StorageError>;

    /// Appends entries that continue the stored log; an entry at or below
    /// the last one replaces it and everything after it (not durable until
    /// sync).
    ///
    /// # Errors
    /// [`StorageError`] on failure or when `entries` leave a gap.
    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError>;

    /// Saves `snapshot` durably before it returns (whatever `sync` says
    /// about the log), then lets go of the log it covers: the stored log
    /// may continue right after its index, and entries through it may be
    /// deleted (once the next sync made that durable). A snapshot no newer
    /// than the one held changes nothing.
    ///
    /// # Errors
    /// [`StorageError`] on failure; the previous snapshot is then still
    /// the one a restart finds.
    fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError>;

    /// Like [`Storage::save_snapshot`] for a snapshot this node took of its
    /// own state machine: nothing waits for it to be durable (the log it
    /// covers stays until it is), so a store may write it on a helper
    /// thread and return at once. The default saves it before returning.
    ///
    /// # Errors
    /// [`StorageError`] on failure (here, or at a later call once the
    /// helper finished).
    fn save_snapshot_in_background(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        self.save_snapshot(snapshot)
    }

    /// Makes everything written so far durable.
    ///
    /// # Errors
    /// [`StorageError`] on failure; nothing written since the last successful
    /// sync may be assumed durable.
    fn sync(&mut self) -> Result<(), StorageError>;

    /// How many syncs made writes durable so far (0 when not counted).
    fn sync_count(&self) -> u64 {
        0
    }

    /// Bytes of a torn last write that opening this storage cut off the
    /// log (never acknowledged: they were not synced); 0 when none.
    fn torn_bytes(&self) -> u64 {
        0
    }
}
