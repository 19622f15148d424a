//! The simulated disk under every simulated node's [`FileStorage`]: files
//! in memory that remember which writes were synced. When a node's process
//! dies, [`SimDisk::crash`] decides the fate of its unsynced writes, each
//! on its own (so a later write may survive an earlier one: reordering),
//! the last one possibly torn at any byte; [`SimDisk::flip_bit`] damages
//! synced data. A file's name (created, renamed, removed) is durable once
//! its directory is synced; at a crash, the changes not yet synced survive
//! as a prefix in the order they were made (an ordered metadata journal,
//! as on ext4 and XFS), each rename whole or not at all. Directories
//! themselves are durable at once. Deterministic: the faults draw from the
//! simulator's seeded generator, and the log prepares its segments inline
//! on this disk.
//!
//! [`FileStorage`]: crate::storage::FileStorage

use crate::rng::Rng;
use crate::storage::{Disk, DiskFile};
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One file: its synced bytes and the writes made since its last sync.
#[derive(Default)]
struct FileData {
    synced: Vec<u8>,
    unsynced: Vec<(u64, Vec<u8>)>,
}

fn write_into(bytes: &mut Vec<u8>, offset: u64, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let at = offset as usize;
    if bytes.len() < at + data.len() {
        bytes.resize(at + data.len(), 0);
    }
    bytes[at..at + data.len()].copy_from_slice(data);
}

impl FileData {
    /// What a read sees: the synced bytes with every write since applied.
    fn current(&self) -> Vec<u8> {
        let mut bytes = self.synced.clone();
        for (offset, data) in &self.unsynced {
            write_into(&mut bytes, *offset, data);
        }
        bytes
    }
}

/// One change of a directory's names, made durable by syncing `dir`: each
/// path gets the file (`Some`) or loses its name (`None`), all together.
struct NameChange {
    dir: PathBuf,
    names: Vec<(PathBuf, Option<usize>)>,
}

#[derive(Default)]
struct State {
    /// Names, by path, of the files in `inodes` (an open file follows its
    /// file through a rename, as on a real file system).
    names: BTreeMap<PathBuf, usize>,
    /// The names a crash keeps: `names` without the changes in `unsynced_names`.
    durable_names: BTreeMap<PathBuf, usize>,
    /// Name changes whose directory was not synced since, oldest first.
    unsynced_names: Vec<NameChange>,
    inodes: Vec<FileData>,
    dirs: BTreeSet<PathBuf>,
    locks: BTreeSet<PathBuf>,
    /// Directories whose process is dying: their syncs fail.
    dying: BTreeSet<PathBuf>,
}

/// A disk shared by the nodes of one simulated cluster (each in its own
/// directory). Clones share it.
#[derive(Clone, Default)]
pub(crate) struct SimDisk {
    state: Arc<Mutex<State>>,
}

/// An open file of a [`SimDisk`].
pub(crate) struct SimFile {
    disk: SimDisk,
    /// The path it was opened by (a dying directory fails its syncs).
    path: PathBuf,
    inode: usize,
}

/// A held lock of a [`SimDisk`], released when dropped.
pub(crate) struct SimLock {
    disk: SimDisk,
    path: PathBuf,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.disk.state.lock().locks.remove(&self.path);
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, path.display().to_string())
}

impl Disk for SimDisk {
    type File = SimFile;
    type Lock = SimLock;

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        for d in dir.ancestors() {
            state.dirs.insert(d.to_path_buf());
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.state.lock();
        if !state.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        let children = state
            .names
            .keys()
            .chain(state.dirs.iter())
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        Ok(children.collect::<BTreeSet<_>>().into_iter().collect())
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<SimFile> {
        let mut state = self.state.lock();
        let inode = match state.names.get(path) {
            Some(&inode) => inode,
            None if create => state.create(path),
            None => return Err(not_found(path)),
        };
        Ok(SimFile {
            disk: self.clone(),
            path: path.to_path_buf(),
            inode,
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        let inode = *state.names.get(from).ok_or_else(|| not_found(from))?;
        state.change_names(vec![
            (from.to_path_buf(), None),
            (to.to_path_buf(), Some(inode)),
        ]);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        if !state.names.contains_key(path) {
            return Err(not_found(path));
        }
        state.change_names(vec![(path.to_path_buf(), None)]);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        if state.is_dying(dir) {
            return Err(io::Error::other("the process died at its sync"));
        }
        let (synced, rest) = std::mem::take(&mut state.unsynced_names)
            .into_iter()
            .partition(|c| c.dir == dir);
        state.unsynced_names = rest;
        for change in synced {
            state.make_durable(change);
        }
        Ok(())
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<SimLock>> {
        let mut state = self.state.lock();
        if !state.names.contains_key(path) {
            state.create(path);
        }
        if !state.locks.insert(path.to_path_buf()) {
            return Ok(None);
        }
        Ok(Some(SimLock {
            disk: self.clone(),
            path: path.to_path_buf(),
        }))
    }

    fn prepares_in_background(&self) -> bool {
        false
    }
}

impl State {
    fn create(&mut self, path: &Path) -> usize {
        self.inodes.push(FileData::default());
        let inode = self.inodes.len() - 1;
        self.change_names(vec![(path.to_path_buf(), Some(inode))]);
        inode
    }

    /// Applies `names` now; they become durable when their directory is
    /// synced.
    fn change_names(&mut self, names: Vec<(PathBuf, Option<usize>)>) {
        for (path, inode) in &names {
            match inode {
                Some(inode) => self.names.insert(path.clone(), *inode),
                None => self.names.remove(path),
            };
        }
        let dir = names[0].0.parent().unwrap_or(Path::new("")).to_path_buf();
        self.unsynced_names.push(NameChange { dir, names });
    }

    fn make_durable(&mut self, change: NameChange) {
        for (path, inode) in change.names {
            match inode {
                Some(inode) => self.durable_names.insert(path, inode),
                None => self.durable_names.remove(&path),
            };
        }
    }

    /// True when `path` is in a directory whose process is dying.
    fn is_dying(&self, path: &Path) -> bool {
        self.dying.iter().any(|d| path.starts_with(d))
    }

    /// The files named under `dir`.
    fn inodes_under(&self, dir: &Path) -> Vec<(PathBuf, usize)> {
        self.names
            .iter()
            .filter(|(p, _)| p.starts_with(dir))
            .map(|(p, &i)| (p.clone(), i))
            .collect()
    }
}

impl SimFile {
    fn with<T>(&self, f: impl FnOnce(&mut FileData) -> T) -> io::Result<T> {
        let mut state = self.disk.state.lock();
        Ok(f(&mut state.inodes[self.inode]))
    }
}

impl DiskFile for SimFile {
    fn read_all(&mut self) -> io::Result<Vec<u8>> {
        self.with(|f| f.current())
    }

    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.with(|f| f.unsynced.push((offset, bytes.to_vec())))
    }

    fn allocate(&mut self, len: u64) -> io::Result<()> {
        self.with(|f| {
            let now = f.current().len() as u64;
            if now < len {
                f.unsynced.push((now, vec![0; (len - now) as usize]));
            }
        })
    }

    fn sync(&mut self) -> io::Result<()> {
        if self.disk.state.lock().is_dying(&self.path) {
            return Err(io::Error::other("the process died at its sync"));
        }
        self.with(|f| {
            for (offset, data) in std::mem::take(&mut f.unsynced) {
                write_into(&mut f.synced, offset, &data);
            }
        })
    }
}

/// What a crash undid.
pub(crate) struct CrashLosses {
    /// Unsynced writes lost or torn.
    pub(crate) writes: u64,
    /// Name changes (creates, renames, removes) whose directory was not
    /// synced, lost.
    pub(crate) names: u64,
}

impl SimDisk {
    /// While `dying`, every sync of a file in `dir` fails (the process dies
    /// at its sync; what it wrote stays unsynced).
    pub(crate) fn set_dying(&self, dir: &Path, dying: bool) {
        let mut state = self.state.lock();
        if dying {
            state.dying.insert(dir.to_path_buf());
        } else {
            state.dying.remove(dir);
        }
    }

    /// The process that used `dir` died: the name changes under `dir` not
    /// yet synced survive as a drawn prefix of them; each unsynced write of
    /// its files survives or is lost on its own draw, and the last one may
    /// be torn (a prefix of it survives).
    pub(crate) fn crash(&self, dir: &Path, rng: &mut Rng) -> CrashLosses {
        let mut state = self.state.lock();
        let (pending, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut state.unsynced_names)
            .into_iter()
            .partition(|c| c.dir.starts_with(dir));
        state.unsynced_names = rest;
        let kept = rng.below(pending.len() as u64 + 1) as usize;
        let names_lost = (pending.len() - kept) as u64;
        for change in pending.into_iter().take(kept) {
            state.make_durable(change);
        }
        state.names.retain(|p, _| !p.starts_with(dir));
        let durable: Vec<_> = state
            .durable_names
            .iter()
            .filter(|(p, _)| p.starts_with(dir))
            .map(|(p, &i)| (p.clone(), i))
            .collect();
        state.names.extend(durable);
        let mut damaged = 0;
        for (_, inode) in state.inodes_under(dir) {
            let file = &mut state.inodes[inode];
            let writes = std::mem::take(&mut file.unsynced);
            let last = writes.len().saturating_sub(1);
            for (i, (offset, data)) in writes.into_iter().enumerate() {
                let kept = if i == last && rng.chance(0.3) {
                    rng.below(data.len() as u64 + 1) as usize
                } else if rng.chance(0.5) {
                    data.len()
                } else {
                    0
                };
                if kept < data.len() {
                    damaged += 1;
                }
                write_into(&mut file.synced, offset, &data[..kept]);
            }
        }
        CrashLosses {
            writes: damaged,
            names: names_lost,
        }
    }

    /// Flips one bit of the synced data of a file in `dir` (the files'
    /// bytes up to 4 KiB past their last non-zero one). Returns the file
    /// and offset, or `None` when there is nothing to damage.
    pub(crate) fn flip_bit(&self, dir: &Path, rng: &mut Rng) -> Option<(PathBuf, u64)> {
        let mut state = self.state.lock();
        let candidates: Vec<(PathBuf, usize, usize)> = state
            .inodes_under(dir)
            .into_iter()
            .filter_map(|(p, i)| {
                // The data and a little of the zeros after it (a
                // segment's padding).
                let synced = &state.inodes[i].synced;
                let used = synced.iter().rposition(|&b| b != 0)? + 1;
                Some((p, i, (used + 4096).min(synced.len())))
            })
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let (path, inode, used) = candidates[rng.below(candidates.len() as u64) as usize].clone();
        let at = rng.below(used as u64) as usize;
        let bit = rng.below(8) as u8;
        state.inodes[inode].synced[at] ^= 1 << bit;
        Some((path, at as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_keeps_synced_bytes_and_draws_the_fate_of_the_rest() {
        let disk = SimDisk::default();
        let dir = Path::new("/n1");
        disk.create_dir_all(dir).unwrap();
        let mut f = disk.open(&dir.join("f"), true).unwrap();
        f.write_at(0, b"synced").unwrap();
        f.sync().unwrap();
        let mut outcomes = BTreeSet::new();
        for seed in 0..64 {
            let disk2 = SimDisk::default();
            disk2.create_dir_all(dir).unwrap();
            let mut g = disk2.open(&dir.join("f"), true).unwrap();
            g.write_at(0, b"synced").unwrap();
            g.sync().unwrap();
            g.write_at(6, b"-one").unwrap();
            g.write_at(10, b"-two").unwrap();
            disk2.crash(dir, &mut Rng::new(seed));
            let after = g.read_all().unwrap();
            assert!(after.starts_with(b"synced"), "{after:?}");
            outcomes.insert(after);
        }
        // Lost, kept, torn, and a later write without an earlier one.
        assert!(outcomes.contains(b"synced".as_slice()), "{outcomes:?}");
        assert!(outcomes.contains(b"synced-one-two".as_slice()));
        assert!(outcomes.contains(b"synced\0\0\0\0-two".as_slice()));
        assert!(outcomes.len() >= 4, "{outcomes:?}");
        assert_eq!(f.read_all().unwrap(), b"synced");
    }

    #[test]
    fn a_crash_keeps_synced_names_and_a_prefix_of_the_rest() {
        let dir = Path::new("/n1");
        let (a, b, c) = (dir.join("a"), dir.join("b"), dir.join("c"));
        let mut outcomes = BTreeSet::new();
        for seed in 0..64 {
            let disk = SimDisk::default();
            disk.create_dir_all(dir).unwrap();
            let mut f = disk.open(&a, true).unwrap();
            f.write_at(0, b"x").unwrap();
            f.sync().unwrap();
            disk.sync_dir(dir).unwrap();
            // Unsynced: a renamed to b, then c created, then b removed.
            disk.rename(&a, &b).unwrap();
            disk.open(&c, true).unwrap();
            disk.remove(&b).unwrap();
            assert_eq!(disk.list(dir).unwrap(), ["c"]);
            let lost = disk.crash(dir, &mut Rng::new(seed));
            let names = disk.list(dir).unwrap();
            assert_eq!(lost.names, 3 - kept_of(&names));
            outcomes.insert(names.clone());
            if names.contains(&"a".to_string()) || names.contains(&"b".to_string()) {
                let name = if names.contains(&"a".to_string()) {
                    &a
                } else {
                    &b
                };
                assert_eq!(disk.open(name, false).unwrap().read_all().unwrap(), b"x");
            }
        }
        // Each prefix of the three changes, and nothing out of order (c
        // never without the rename before it).
        let expect: BTreeSet<Vec<String>> = [vec!["a"], vec!["b"], vec!["b", "c"], vec!["c"]]
            .into_iter()
            .map(|v| v.into_iter().map(String::from).collect())
            .collect();
        assert_eq!(outcomes, expect);
    }

    /// How many of the test's three changes the names `names` show kept.
    fn kept_of(names: &[String]) -> u64 {
        match names
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["a"] => 0,
            ["b"] => 1,
            ["b", "c"] => 2,
            ["c"] => 3,
            other => panic!("not a prefix: {other:?}"),
        }
    }

    #[test]
    fn a_synced_directory_keeps_its_names_through_a_crash() {
        let disk = SimDisk::default();
        let (d1, d2) = (Path::new("/n1"), Path::new("/n1/wal"));
        disk.create_dir_all(d2).unwrap();
        disk.open(&d1.join("a"), true).unwrap();
        disk.open(&d2.join("b"), true).unwrap();
        disk.sync_dir(d1).unwrap();
        for seed in 0..16 {
            disk.crash(d1, &mut Rng::new(seed));
            assert!(disk.list(d1).unwrap().contains(&"a".to_string()));
        }
        // Syncing /n1 did not sync /n1/wal: b may be gone, and once gone
        // stays gone.
        let gone = (0..64).any(|seed| {
            let disk = SimDisk::default();
            disk.create_dir_all(d2).unwrap();
            disk.open(&d2.join("b"), true).unwrap();
            disk.sync_dir(d1).unwrap();
            disk.crash(d1, &mut Rng::new(seed));
            disk.list(d2).unwrap().is_empty()
        });
        assert!(gone);
    }

    #[test]
    fn a_dying_process_cannot_sync_its_directory() {
        let disk = SimDisk::default();
        let dir = Path::new("/n1");
        disk.create_dir_all(dir).unwrap();
        disk.set_dying(dir, true);
        assert!(disk.sync_dir(dir).is_err());
        disk.set_dying(dir, false);
        assert!(disk.sync_dir(dir).is_ok());
    }

    #[test]
    fn locks_are_exclusive_until_dropped() {
        let disk = SimDisk::default();
        let lock = disk.try_lock(Path::new("/d/LOCK")).unwrap();
        assert!(lock.is_some());
        assert!(disk.try_lock(Path::new("/d/LOCK")).unwrap().is_none());
        drop(lock);
        assert!(disk.try_lock(Path::new("/d/LOCK")).unwrap().is_some());
    }
}
