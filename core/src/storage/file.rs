//! [`FileStorage`]: a node's hard state and log in a data directory.
//!
//! ```text
//! <data_dir>/consenso.meta   what this directory is, and its format version
//! <data_dir>/LOCK            held (flock) while a process has it open
//! <data_dir>/hardstate       the protocol's hard state, replaced atomically
//! <data_dir>/snapshot        the latest snapshot, replaced atomically
//! <data_dir>/wal/*.wal       write-ahead log segments (see the wal module)
//! ```

use super::disk::{replace_file, Disk, DiskFile, OsDisk};
use super::record::{decode_small, encode_small, SmallFileError};
use super::snapshot_file::{self, SNAPSHOT_FILE, SNAPSHOT_TMP};
use super::wal::{TornTail, Wal};
use super::{Storage, StorageError};
use crate::consensus::Snapshot;
use crate::error::ConfigError;
use crate::types::{Entry, Index};
use parking_lot::Mutex;
use std::io;
use std::path::{Path, PathBuf};

/// The on-disk format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

const META: &str = "consenso.meta";
const META_MAGIC: &[u8; 8] = b"CNSOMETA";
const LOCK: &str = "LOCK";
const HARD_STATE: &str = "hardstate";
const HARD_STATE_MAGIC: &[u8; 8] = b"CNSOHARD";
const WAL_DIR: &str = "wal";

/// How a [`FileStorage`] writes. `Default`: synced, 64 MiB segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileOptions {
    /// Sync (`fdatasync`) before anything that depends on a write leaves
    /// the node. With `false` nothing is synced: a crash of the process
    /// loses nothing (the operating system holds the writes), but a power
    /// cut or kernel crash loses every write the operating system had not
    /// yet flushed on its own (on Linux, typically the last 5 to 30
    /// seconds) and may tear the last of them. Those writes were
    /// acknowledged: a node that loses its vote may vote twice in one term,
    /// and a cluster whose majority loses power at once may lose committed
    /// entries or diverge. The OS may also write back a later batch and not
    /// an earlier one: the node then finds its log damaged and does not
    /// start. Use it for data you can rebuild.
    pub sync: bool,
    /// Size each log segment is preallocated to; a bigger record gets a
    /// segment of its own. From 64 KiB to 1 GiB.
    pub segment_bytes: u64,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            sync: true,
            segment_bytes: 64 << 20,
        }
    }
}

impl FileOptions {
    /// Checks the segment size.
    ///
    /// # Errors
    /// A [`ConfigError`] naming `segment_bytes`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(64 << 10..=1 << 30).contains(&self.segment_bytes) {
            return Err(ConfigError::new(
                "segment_bytes",
                format!(
                    "must be from 65536 to 1073741824, got {}",
                    self.segment_bytes
                ),
            ));
        }
        Ok(())
    }
}

/// A node's durable storage in a data directory: a write-ahead log with
/// one sync per batch (group commit) and the hard state in its own file.
/// Opening takes the directory's lock, so two processes (or two nodes of
/// one process) cannot share it. Used from one thread at a time; `Send`.
pub struct FileStorage<D: Disk = OsDisk> {
    disk: D,
    dir: PathBuf,
    options: FileOptions,
    wal: Wal<D>,
    hard_state: Option<Vec<u8>>,
    hard_state_dirty: bool,
    snapshot: Option<Snapshot>,
    last_index: Index,
    /// What recovery read, until [`Storage::entries`] takes it.
    recovered: Mutex<Option<Vec<Entry>>>,
    torn: Option<TornTail>,
    syncs: u64,
    segments_removed: u64,
    /// Segments up to this snapshot's index go once the next sync made
    /// its record (and the batch it came with) durable.
    remove_after_sync: Option<Index>,
    /// A snapshot of this node's own being written on a helper thread.
    writing: Option<(Snapshot, std::thread::JoinHandle<Result<(), StorageError>>)>,
    /// Set at the first failed write or sync: nothing is written after it.
    failed: Option<String>,
    /// Held until everything above is dropped (fields drop in order).
    _lock: D::Lock,
}

impl<D: Disk> std::fmt::Debug for FileStorage<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStorage")
            .field("dir", &self.dir)
            .field("last_index", &self.last_index)
            .field("syncs", &self.syncs)
            .finish()
    }
}

impl FileStorage<OsDisk> {
    /// Opens the data directory `dir` with the default options, creating
    /// it when it is missing or empty, and recovers what it holds.
    ///
    /// # Errors
    /// See [`FileStorage::open_on`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StorageError> {
        Self::open_with(dir, FileOptions::default())
    }

    /// Like [`FileStorage::open`] with `options`.
    ///
    /// # Errors
    /// See [`FileStorage::open_on`].
    pub fn open_with(dir: impl AsRef<Path>, options: FileOptions) -> Result<Self, StorageError> {
        Self::open_on(OsDisk, dir.as_ref(), options)
    }
}

impl<D: Disk> FileStorage<D> {
    /// Opens the data directory `dir` on `disk`. A torn last write is cut
    /// off and reported ([`FileStorage::torn_tail`], and a warning in the
    /// log); nothing else is ever repaired or skipped.
    ///
    /// # Errors
    /// - [`StorageError::Config`]: bad `options`;
    /// - [`StorageError::NotADataDir`]: `dir` holds other files (nothing is
    ///   written to it);
    /// - [`StorageError::UnsupportedFormat`]: written by a newer version;
    /// - [`StorageError::Locked`]: another process or node has it open;
    /// - [`StorageError::CorruptRecord`]: a damaged file, naming it and the
    ///   offset;
    /// - [`StorageError::Io`]: the device failed.
    pub fn open_on(disk: D, dir: &Path, options: FileOptions) -> Result<Self, StorageError> {
        options.validate()?;
        Self::open_checked(disk, dir, options)
    }

    /// [`FileStorage::open_on`] with segments of any size from 4 KiB: the
    /// simulator's nodes roll over (and delete) many small segments.
    pub(crate) fn open_with_small_segments(
        disk: D,
        dir: &Path,
        options: FileOptions,
    ) -> Result<Self, StorageError> {
        assert!(
            options.segment_bytes >= 4 << 10,
            "segments of at least 4 KiB"
        );
        Self::open_checked(disk, dir, options)
    }

    fn open_checked(disk: D, dir: &Path, options: FileOptions) -> Result<Self, StorageError> {
        disk.create_dir_all(dir)?;
        // A temporary file is what a crash left of a write (the metadata
        // itself, when the crash came while a fresh directory was set up).
        let ours = |n: &String| {
            n == LOCK
                || *n == format!("{META}.tmp")
                || *n == format!("{HARD_STATE}.tmp")
                || n == SNAPSHOT_TMP
        };
        let ours_or_fresh =
            |names: &[String]| names.iter().any(|n| n == META) || names.iter().all(ours);
        if !ours_or_fresh(&disk.list(dir)?) {
            // Nothing is written to someone else's directory, not even a lock.
            return Err(StorageError::NotADataDir(dir.to_path_buf()));
        }
        let lock = disk
            .try_lock(&dir.join(LOCK))?
            .ok_or_else(|| StorageError::Locked(dir.to_path_buf()))?;
        // Listed again under the lock: the previous owner may have written
        // until it let go.
        let names = disk.list(dir)?;
        if names.iter().any(|n| n == META) {
            read_small(&disk, &dir.join(META), META_MAGIC)?;
        } else if names.iter().all(ours) {
            write_small(
                &disk,
                dir,
                META,
                META_MAGIC,
                b"consenso data directory",
                true,
            )?;
        } else {
            return Err(StorageError::NotADataDir(dir.to_path_buf()));
        }
        let hard_state = if names.iter().any(|n| n == HARD_STATE) {
            Some(read_small(&disk, &dir.join(HARD_STATE), HARD_STATE_MAGIC)?)
        } else {
            None
        };
        let snapshot = if names.iter().any(|n| n == SNAPSHOT_FILE) {
            Some(snapshot_file::read(&disk, &dir.join(SNAPSHOT_FILE))?)
        } else {
            None
        };
        let wal_dir = dir.join(WAL_DIR);
        let saved = snapshot.as_ref().map_or(0, |s| s.index);
        let (mut wal, log, torn) =
            Wal::open(disk.clone(), wal_dir.clone(), options.segment_bytes, saved)?;
        let meets = |first: Index| first <= saved + 1;
        if log.snapshot > saved {
            return Err(StorageError::CorruptRecord {
                file: dir.join(SNAPSHOT_FILE),
                offset: 0,
                reason: format!(
                    "the log says a snapshot through {} was saved, but {}",
                    log.snapshot,
                    if saved == 0 {
                        "there is none".to_string()
                    } else {
                        format!("this one ends at {saved}")
                    }
                ),
            });
        }
        if let Some(first) = log.entries.first().map(|e| e.index).filter(|&f| !meets(f)) {
            return Err(StorageError::CorruptRecord {
                file: wal_dir,
                offset: 0,
                reason: format!(
                    "the log starts at entry {first}, but the snapshot covers only up to {saved}: segments before it are missing"
                ),
            });
        }
        let wal_last = log.base + log.entries.len() as Index;
        if log.snapshot < saved {
            // A crash came before the log recorded the snapshot: record it
            // first thing in the next batch (before the log goes on after
            // it, and before a cut the node makes to match it).
            wal.snapshot_saved(saved)?;
        }
        Ok(FileStorage {
            disk,
            dir: dir.to_path_buf(),
            options,
            wal,
            hard_state,
            hard_state_dirty: false,
            snapshot,
            last_index: wal_last.max(saved),
            recovered: Mutex::new(Some(log.entries)),
            torn,
            syncs: 0,
            segments_removed: 0,
            remove_after_sync: None,
            writing: None,
            failed: None,
            _lock: lock,
        })
    }

    /// The torn last write that opening cut off, if there was one.
    pub fn torn_tail(&self) -> Option<&TornTail> {
        self.torn.as_ref()
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many write-ahead log segment files the directory holds.
    pub fn segments(&self) -> usize {
        self.wal.segments()
    }

    /// How many segments snapshots let this storage delete since it opened.
    pub fn segments_removed(&self) -> u64 {
        self.segments_removed
    }

    /// A snapshot file is durable: the log records it with the next batch
    /// and lets go of the segments it covers after that batch's sync.
    fn snapshot_written(&mut self, snapshot: Snapshot) -> Result<(), StorageError> {
        let index = snapshot.index;
        self.wal.snapshot_saved(index)?;
        self.last_index = self.last_index.max(index);
        self.snapshot = Some(snapshot);
        self.remove_after_sync = Some(index);
        Ok(())
    }

    /// Waits for a snapshot being written; true when the one held then is
    /// at least as new as `snapshot` (which changes nothing).
    ///
    /// # Errors
    /// The failure of that write, or of an earlier one.
    fn holds_newer(&mut self, snapshot: &Snapshot) -> Result<bool, StorageError> {
        self.finish_writing(true)?;
        self.check_usable()?;
        Ok(self
            .snapshot
            .as_ref()
            .is_some_and(|s| s.index >= snapshot.index))
    }

    /// Takes the result of a snapshot written on the helper thread, once
    /// it finished (`wait`: waits for it).
    fn finish_writing(&mut self, wait: bool) -> Result<(), StorageError> {
        let done = self
            .writing
            .as_ref()
            .is_some_and(|(_, handle)| wait || handle.is_finished());
        if !done {
            return Ok(());
        }
        let Some((snapshot, handle)) = self.writing.take() else {
            return Ok(());
        };
        self.guarded(|s| {
            handle
                .join()
                .map_err(|_| StorageError::Io(io::Error::other("writing a snapshot panicked")))??;
            s.snapshot_written(snapshot)
        })
    }

    fn check_usable(&self) -> Result<(), StorageError> {
        match &self.failed {
            Some(why) => Err(StorageError::Io(io::Error::other(format!(
                "storage failed earlier and takes no more writes: {why}"
            )))),
            None => Ok(()),
        }
    }

    /// Runs `write`; a failure makes the storage refuse every later write
    /// (after a failed sync the state of the file is unknown).
    fn guarded<T>(
        &mut self,
        write: impl FnOnce(&mut Self) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        self.check_usable()?;
        let result = write(self);
        if let Err(e) = &result {
            self.failed = Some(e.to_string());
        }
        result
    }
}

impl<D: Disk> Drop for FileStorage<D> {
    /// Waits for a snapshot being written, so that nothing writes in the
    /// directory once its lock is released.
    fn drop(&mut self) {
        if let Some((_, handle)) = self.writing.take() {
            let _ = handle.join();
        }
    }
}

impl<D: Disk> Storage for FileStorage<D> {
    fn hard_state(&self) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.hard_state.clone())
    }

    fn snapshot(&self) -> Result<Option<Snapshot>, StorageError> {
        Ok(self.snapshot.clone())
    }

    fn entries(&self) -> Result<Vec<Entry>, StorageError> {
        match self.recovered.lock().take() {
            Some(entries) => Ok(entries),
            None => Err(StorageError::Io(io::Error::other(
                "the recovered log was already taken; reopen the storage to read it again",
            ))),
        }
    }

    fn set_hard_state(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.check_usable()?;
        if self.hard_state.as_deref() != Some(bytes) {
            self.hard_state = Some(bytes.to_vec());
            self.hard_state_dirty = true;
        }
        Ok(())
    }

    fn set_hard_state_unsynced(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.check_usable()?;
        // Written with the next hard state that must be synced.
        self.hard_state = Some(bytes.to_vec());
        Ok(())
    }

    fn truncate_from(&mut self, index: Index) -> Result<(), StorageError> {
        self.guarded(|s| {
            if index <= s.last_index {
                s.wal.truncate(index)?;
                s.last_index = index.saturating_sub(1);
            }
            Ok(())
        })
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if first.index == 0 || first.index > self.last_index + 1 {
            return Err(StorageError::Corrupt(format!(
                "append at index {} but the log continues at {}",
                first.index,
                self.last_index + 1
            )));
        }
        self.guarded(|s| {
            s.wal.append(entries)?;
            s.last_index = entries.last().map_or(s.last_index, |e| e.index);
            Ok(())
        })
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.finish_writing(false)?;
        self.guarded(|s| {
            let durable = s.options.sync;
            let mut synced = s.wal.sync(durable)?;
            if s.hard_state_dirty {
                if let Some(bytes) = s.hard_state.clone() {
                    write_small(
                        &s.disk,
                        &s.dir,
                        HARD_STATE,
                        HARD_STATE_MAGIC,
                        &bytes,
                        durable,
                    )?;
                    synced |= durable;
                }
                s.hard_state_dirty = false;
            }
            if synced {
                s.syncs += 1;
            }
            if let Some(index) = s.remove_after_sync.take() {
                s.segments_removed += s.wal.remove_through(index)? as u64;
            }
            Ok(())
        })
    }

    /// The snapshot file is synced whatever `FileOptions::sync` says (the
    /// log it replaces is deleted after it). Its record in the log goes
    /// with the next batch, and the segments it covers are deleted once
    /// that batch is durable (before then, a crash may still need them to
    /// tell what the snapshot replaced). A snapshot no newer than the one
    /// held changes nothing.
    fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        if self.holds_newer(snapshot)? {
            return Ok(());
        }
        self.guarded(|s| {
            snapshot_file::write(&s.disk, &s.dir, snapshot, true)?;
            s.snapshot_written(snapshot.clone())
        })
    }

    /// Writes the snapshot file on a helper thread (inline on a disk that
    /// wants every operation from its caller); the log records it, and
    /// the segments it covers go, only once it is durable. A snapshot
    /// still being written is waited for first.
    fn save_snapshot_in_background(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        if self.holds_newer(snapshot)? {
            return Ok(());
        }
        if !self.disk.prepares_in_background() {
            return self.save_snapshot(snapshot);
        }
        let (disk, dir, copy) = (self.disk.clone(), self.dir.clone(), snapshot.clone());
        let handle = std::thread::spawn(move || snapshot_file::write(&disk, &dir, &copy, true));
        self.writing = Some((snapshot.clone(), handle));
        Ok(())
    }

    fn sync_count(&self) -> u64 {
        self.syncs
    }

    fn torn_bytes(&self) -> u64 {
        self.torn.as_ref().map_or(0, |t| t.bytes)
    }
}

/// The payload of the small file at `path`.
fn read_small<D: Disk>(disk: &D, path: &Path, magic: &[u8; 8]) -> Result<Vec<u8>, StorageError> {
    let bytes = disk.open(path, false)?.read_all()?;
    match decode_small(magic, FORMAT_VERSION, &bytes) {
        Ok(payload) => Ok(payload.to_vec()),
        Err(SmallFileError::Version(found)) => Err(StorageError::UnsupportedFormat {
            path: path.to_path_buf(),
            found,
            supported: FORMAT_VERSION,
        }),
        Err(SmallFileError::NotOurs) => Err(StorageError::CorruptRecord {
            file: path.to_path_buf(),
            offset: 0,
            reason: "not a consenso file (bad magic)".into(),
        }),
        Err(SmallFileError::Damaged(reason)) => Err(StorageError::CorruptRecord {
            file: path.to_path_buf(),
            offset: 12,
            reason: reason.into(),
        }),
    }
}

/// Replaces `dir/name` atomically: writes a temporary file, syncs it,
/// renames it over the old one and syncs the directory (the syncs only
/// when `durable`).
fn write_small<D: Disk>(
    disk: &D,
    dir: &Path,
    name: &str,
    magic: &[u8; 8],
    payload: &[u8],
    durable: bool,
) -> Result<(), StorageError> {
    let bytes = encode_small(magic, FORMAT_VERSION, payload);
    Ok(replace_file(disk, dir, name, &[&bytes], durable)?)
}
