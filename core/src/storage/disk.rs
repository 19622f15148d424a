//! The few file operations [`super::FileStorage`] needs, behind a trait so
//! that the same storage code runs on the operating system's files
//! ([`OsDisk`]) and on a simulated disk that loses, tears and flips what
//! was not synced.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// A file system. Implementations are cheap to clone and usable from any
/// thread (the write-ahead log prepares its next segment on a helper
/// thread).
pub trait Disk: Clone + Send + Sync + 'static {
    /// An open file.
    type File: DiskFile;
    /// A held lock; dropping it releases the lock.
    type Lock: Send + 'static;

    /// Creates `dir` and its parents when missing.
    ///
    /// # Errors
    /// The device's error.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;

    /// Names of the entries of `dir`; `NotFound` when it does not exist.
    ///
    /// # Errors
    /// The device's error.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;

    /// Opens `path` for reading and writing, creating it when `create`.
    ///
    /// # Errors
    /// The device's error (`NotFound` when it is missing and not created).
    fn open(&self, path: &Path, create: bool) -> io::Result<Self::File>;

    /// Renames `from` to `to`, replacing `to` (durable once the directory
    /// is synced).
    ///
    /// # Errors
    /// The device's error.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes the file `path`.
    ///
    /// # Errors
    /// The device's error.
    fn remove(&self, path: &Path) -> io::Result<()>;

    /// Makes the entries of `dir` (created, renamed, removed files) durable.
    ///
    /// # Errors
    /// The device's error.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// Takes the exclusive lock of `path` (created when missing) without
    /// waiting: `None` when another holder has it. A lock held by a
    /// process ends with the process, however it ends.
    ///
    /// # Errors
    /// The device's error.
    fn try_lock(&self, path: &Path) -> io::Result<Option<Self::Lock>>;

    /// True when work such as preparing the next log segment may run on
    /// a helper thread; false for a disk that must see every operation
    /// from its caller's thread, in order (a simulated one).
    fn prepares_in_background(&self) -> bool {
        true
    }
}

/// Replaces `dir/name` atomically with `parts`, one after another: writes
/// them to `name.tmp` (removed first if a crash left one), syncs it, renames
/// it over `name` and syncs the directory (the syncs only when `durable`).
/// A crash leaves the old file or the new one, never a mix.
///
/// # Errors
/// The device's error.
pub(crate) fn replace_file<D: Disk>(
    disk: &D,
    dir: &Path,
    name: &str,
    parts: &[&[u8]],
    durable: bool,
) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    match disk.remove(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = disk.open(&tmp, true)?;
    let mut at = 0;
    for part in parts {
        file.write_at(at, part)?;
        at += part.len() as u64;
    }
    if durable {
        file.sync()?;
    }
    drop(file);
    disk.rename(&tmp, &dir.join(name))?;
    if durable {
        disk.sync_dir(dir)?;
    }
    Ok(())
}

/// An open file of a [`Disk`].
pub trait DiskFile: Send + 'static {
    /// The whole file.
    ///
    /// # Errors
    /// The device's error.
    fn read_all(&mut self) -> io::Result<Vec<u8>>;

    /// Writes all of `bytes` at `offset` (not durable until [`DiskFile::sync`]).
    ///
    /// # Errors
    /// The device's error; part of `bytes` may have been written.
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()>;

    /// Reserves space so that the file is `len` bytes long, reading as
    /// zeros where nothing was written, and later writes within it need
    /// no new space or size change.
    ///
    /// # Errors
    /// The device's error (`StorageFull` when there is no room).
    fn allocate(&mut self, len: u64) -> io::Result<()>;

    /// Makes everything written to the file durable.
    ///
    /// # Errors
    /// The device's error: nothing written since the last successful sync
    /// may be assumed durable, and the file should not be used again.
    fn sync(&mut self) -> io::Result<()>;
}

/// The operating system's files. Stateless and thread-safe.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsDisk;

/// An exclusive lock on a file (`flock` on Unix), held until dropped or
/// the process ends.
#[derive(Debug)]
pub struct OsLock {
    _file: File,
}

impl Disk for OsDisk {
    type File = File;
    type Lock = OsLock;

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        #[cfg(unix)]
        {
            File::open(dir)?.sync_all()
        }
        #[cfg(not(unix))]
        {
            let _ = dir;
            Ok(())
        }
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<OsLock>> {
        let file = self.open(path, true)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(OsLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

impl DiskFile for File {
    fn read_all(&mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.seek(SeekFrom::Start(0))?;
        self.read_to_end(&mut out)?;
        Ok(out)
    }

    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.seek(SeekFrom::Start(offset))?;
        self.write_all(bytes)
    }

    fn allocate(&mut self, len: u64) -> io::Result<()> {
        // Zeros written for real (not a sparse length): later writes then
        // allocate nothing, so a data sync flushes no metadata. Portable,
        // and done on the log's helper thread, off the write path.
        const CHUNK: usize = 1 << 20;
        let zeros = vec![0u8; CHUNK];
        let mut at = File::metadata(self)?.len();
        self.seek(SeekFrom::Start(at))?;
        while at < len {
            let n = CHUNK.min((len - at) as usize);
            self.write_all(&zeros[..n])?;
            at += n as u64;
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.sync_data()
    }
}
