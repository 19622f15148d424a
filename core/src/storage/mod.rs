//! What must survive a restart: the protocol's hard state and the log.
//!
//! The runtime calls the mutating methods for a whole batch of effects and
//! then [`Storage::sync`] once before it releases any message that depends on
//! them (group commit); a durable store makes `sync` the point of durability.

mod mem;

pub use mem::MemStorage;

use crate::types::{Entry, Index};
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
}

/// Durable home of one node's hard state and log. Used from one thread at a
/// time (the node's driver thread), so methods take `&mut self`.
pub trait Storage: Send + 'static {
    /// The last hard state written, as the protocol encoded it.
    ///
    /// # Errors
    /// [`StorageError`] when it cannot be read.
    fn hard_state(&self) -> Result<Option<Vec<u8>>, StorageError>;

    /// Every stored entry, in index order from index 1.
    ///
    /// # Errors
    /// [`StorageError`] when they cannot be read.
    fn entries(&self) -> Result<Vec<Entry>, StorageError>;

    /// Replaces the hard state (not durable until [`Storage::sync`]).
    ///
    /// # Errors
    /// [`StorageError`] on failure.
    fn set_hard_state(&mut self, bytes: &[u8]) -> Result<(), StorageError>;

    /// Removes every entry at or above `index` (not durable until sync).
    ///
    /// # Errors
    /// [`StorageError`] on failure.
    fn truncate_from(&mut self, index: Index) -> Result<(), StorageError>;

    /// Appends entries that continue the stored log (not durable until sync).
    ///
    /// # Errors
    /// [`StorageError`] on failure or when `entries` do not continue the log.
    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError>;

    /// Makes everything written so far durable.
    ///
    /// # Errors
    /// [`StorageError`] on failure; nothing written since the last successful
    /// sync may be assumed durable.
    fn sync(&mut self) -> Result<(), StorageError>;
}
