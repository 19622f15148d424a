//! FileStorage: what survives a reopen, and every kind of bad directory,
//! damaged file and failing device the issue names.

use super::disk::{Disk, DiskFile, OsDisk};
use super::*;
use crate::types::EntryKind;
use bytes::Bytes;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

/// A fresh directory under the system's temporary directory, removed when
/// dropped.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "consenso-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        TempDir(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn e(epoch: u64, index: Index, len: usize) -> Entry {
    Entry::new(
        epoch,
        index,
        EntryKind::Normal,
        Bytes::from(vec![index as u8; len]),
    )
}

fn run(from: Index, to: Index, len: usize) -> Vec<Entry> {
    (from..=to).map(|i| e(1, i, len)).collect()
}

const SMALL: FileOptions = FileOptions {
    sync: true,
    segment_bytes: 64 << 10,
};

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|d| d.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    files.sort();
    files
}

#[test]
fn what_was_synced_survives_a_reopen_across_segments_and_truncations() {
    let dir = TempDir::new("reopen");
    let mut expected = run(1, 300, 1000);
    {
        let mut s = FileStorage::open_with(dir.path(), SMALL).unwrap();
        assert!(s.entries().unwrap().is_empty());
        assert_eq!(s.hard_state().unwrap(), None);
        s.append(&expected).unwrap();
        s.set_hard_state(b"term 1").unwrap();
        s.sync().unwrap();
        // A follower replacing an uncommitted suffix, across a segment.
        s.truncate_from(250).unwrap();
        let replaced: Vec<Entry> = (250..=260).map(|i| e(2, i, 10)).collect();
        s.append(&replaced).unwrap();
        s.set_hard_state(b"term 2").unwrap();
        s.sync().unwrap();
        expected.truncate(249);
        expected.extend(replaced);
        assert!(s.sync_count() >= 2);
        assert!(s.torn_tail().is_none());
    }
    assert!(
        segments(dir.path()).len() > 3,
        "the log rolled over segments"
    );
    let s = FileStorage::open_with(dir.path(), SMALL).unwrap();
    assert_eq!(s.entries().unwrap(), expected);
    assert_eq!(s.hard_state().unwrap(), Some(b"term 2".to_vec()));
    assert_eq!(s.torn_bytes(), 0);
}

#[test]
fn a_truncation_alone_survives_and_the_log_goes_on_after_it() {
    let dir = TempDir::new("trunc");
    {
        let mut s = FileStorage::open(dir.path()).unwrap();
        s.append(&run(1, 10, 5)).unwrap();
        s.sync().unwrap();
        s.truncate_from(4).unwrap();
        s.sync().unwrap();
    }
    {
        let mut s = FileStorage::open(dir.path()).unwrap();
        assert_eq!(s.entries().unwrap(), run(1, 3, 5));
        assert!(matches!(
            s.append(&run(5, 6, 5)),
            Err(StorageError::Corrupt(_))
        ));
        s.append(&run(4, 6, 5)).unwrap();
        s.sync().unwrap();
    }
    let s = FileStorage::open(dir.path()).unwrap();
    assert_eq!(s.entries().unwrap(), run(1, 6, 5));
}

/// Appends `bytes` after the last whole record of the last segment (as a
/// write cut short by a crash leaves them).
fn write_after_log(dir: &Path, bytes: &[u8]) -> (PathBuf, u64) {
    let last = segments(dir).pop().unwrap();
    let data = fs::read(&last).unwrap();
    let end = (24..=data.len())
        .rev()
        .find(|&i| data[i - 1] != 0)
        .unwrap_or(24);
    let mut f = OsDisk.open(&last, false).unwrap();
    f.write_at(end as u64, bytes).unwrap();
    (last, end as u64)
}

#[test]
fn a_torn_last_write_is_cut_reported_and_the_log_goes_on() {
    let dir = TempDir::new("torn");
    {
        let mut s = FileStorage::open(dir.path()).unwrap();
        s.append(&run(1, 5, 20)).unwrap();
        s.sync().unwrap();
    }
    // Half of a record: its header claims 40 bytes, 10 are there.
    let mut half = Vec::new();
    record::put_record(&mut half, &[1u8; 40]);
    half.truncate(18);
    let (file, at) = write_after_log(dir.path(), &half);
    {
        let mut s = FileStorage::open(dir.path()).unwrap();
        assert_eq!(s.entries().unwrap(), run(1, 5, 20));
        let torn = s.torn_tail().unwrap().clone();
        assert_eq!((torn.file, torn.offset), (file, at));
        assert!(s.torn_bytes() >= 18);
        s.append(&run(6, 7, 20)).unwrap();
        s.sync().unwrap();
    }
    let s = FileStorage::open(dir.path()).unwrap();
    assert_eq!(s.entries().unwrap(), run(1, 7, 20));
    assert!(s.torn_tail().is_none(), "the repair was made durable");
}

#[test]
fn a_flipped_bit_in_the_middle_of_the_log_is_an_error_naming_file_and_offset() {
    let dir = TempDir::new("flip");
    {
        let mut s = FileStorage::open(dir.path()).unwrap();
        for i in 1..=5 {
            s.append(&run(i, i, 30)).unwrap();
            s.sync().unwrap();
        }
    }
    let seg = segments(dir.path()).pop().unwrap();
    let mut data = fs::read(&seg).unwrap();
    // Inside the payload of the second record.
    let second = 24 + record::record_size(data[24] as usize);
    data[second + record::RECORD_HEADER + 3] ^= 0x04;
    fs::write(&seg, &data).unwrap();
    match FileStorage::open(dir.path()) {
        Err(StorageError::CorruptRecord { file, offset, .. }) => {
            assert_eq!(file, seg);
            assert_eq!(offset, second as u64);
        }
        other => panic!("expected CorruptRecord, got {other:?}"),
    }
}

#[test]
fn a_segment_cut_by_hand_is_an_error() {
    for (last, cut_inside_a_record) in [(false, false), (false, true), (true, false), (true, true)]
    {
        let dir = TempDir::new("cut");
        {
            let mut s = FileStorage::open_with(dir.path(), SMALL).unwrap();
            for i in 1..=120 {
                s.append(&run(i, i, 1000)).unwrap();
            }
            s.sync().unwrap();
        }
        let segs = segments(dir.path());
        assert!(segs.len() >= 2);
        let seg = if last { segs.last() } else { segs.first() }.unwrap();
        let data = fs::read(seg).unwrap();
        let len = u32::from_le_bytes(data[24..28].try_into().unwrap()) as usize;
        let first_end = (24 + record::record_size(len)) as u64;
        let cut = first_end + if cut_inside_a_record { 20 } else { 0 };
        fs::OpenOptions::new()
            .write(true)
            .open(seg)
            .unwrap()
            .set_len(cut)
            .unwrap();
        let err = FileStorage::open_with(dir.path(), SMALL).unwrap_err();
        assert!(
            matches!(err, StorageError::CorruptRecord { .. }),
            "last: {last}, cut inside a record: {cut_inside_a_record}: {err}"
        );
    }
}

#[test]
fn a_flipped_bit_in_the_hard_state_file_is_an_error() {
    let dir = TempDir::new("hsflip");
    {
        let mut s = FileStorage::open(dir.path()).unwrap();
        s.set_hard_state(b"vote for 2 in term 7").unwrap();
        s.sync().unwrap();
    }
    let path = dir.path().join("hardstate");
    let mut data = fs::read(&path).unwrap();
    let last = data.len() - 1;
    data[last] ^= 0x01;
    fs::write(&path, &data).unwrap();
    match FileStorage::open(dir.path()) {
        Err(StorageError::CorruptRecord { file, .. }) => assert_eq!(file, path),
        other => panic!("expected CorruptRecord, got {other:?}"),
    }
}

#[test]
fn a_directory_of_other_files_is_refused_and_left_untouched() {
    let dir = TempDir::new("foreign");
    fs::create_dir_all(dir.path()).unwrap();
    fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
    let err = FileStorage::open(dir.path()).unwrap_err();
    assert!(matches!(err, StorageError::NotADataDir(_)), "{err}");
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|d| d.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("notes.txt")]);
}

#[test]
fn a_newer_format_is_refused_and_nothing_is_overwritten() {
    let dir = TempDir::new("newer");
    {
        let mut s = FileStorage::open(dir.path()).unwrap();
        s.append(&run(1, 2, 5)).unwrap();
        s.sync().unwrap();
    }
    let meta = dir.path().join("consenso.meta");
    let newer = record::encode_small(b"CNSOMETA", FORMAT_VERSION + 1, b"from the future");
    fs::write(&meta, &newer).unwrap();
    let before = segments(dir.path())
        .iter()
        .map(|p| fs::read(p).unwrap())
        .collect::<Vec<_>>();
    match FileStorage::open(dir.path()) {
        Err(StorageError::UnsupportedFormat {
            found, supported, ..
        }) => assert_eq!((found, supported), (FORMAT_VERSION + 1, FORMAT_VERSION)),
        other => panic!("expected UnsupportedFormat, got {other:?}"),
    }
    assert_eq!(fs::read(&meta).unwrap(), newer);
    let after = segments(dir.path())
        .iter()
        .map(|p| fs::read(p).unwrap())
        .collect::<Vec<_>>();
    assert_eq!(before, after);
}

#[test]
fn two_storages_cannot_share_one_directory() {
    let dir = TempDir::new("lock");
    let first = FileStorage::open(dir.path()).unwrap();
    let err = FileStorage::open(dir.path()).unwrap_err();
    assert!(matches!(err, StorageError::Locked(_)), "{err}");
    drop(first);
    FileStorage::open(dir.path()).unwrap();
}

#[test]
fn bad_options_are_refused_before_anything_is_written() {
    let dir = TempDir::new("opts");
    let err = FileStorage::open_with(
        dir.path(),
        FileOptions {
            segment_bytes: 1000,
            ..FileOptions::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, StorageError::Config(ref c) if c.field == "segment_bytes"));
    assert!(!dir.path().exists());
}

/// The operating system's files, failing every write once `budget` bytes
/// were written: a full disk (`StorageFull`) or, with `read_only`, one
/// mounted read-only.
#[derive(Clone)]
struct FullDisk {
    budget: Arc<AtomicI64>,
    read_only: bool,
}

struct FullFile {
    file: fs::File,
    budget: Arc<AtomicI64>,
    kind: io::ErrorKind,
}

impl Disk for FullDisk {
    type File = FullFile;
    type Lock = OsLock;
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        OsDisk.create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        OsDisk.list(dir)
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<FullFile> {
        Ok(FullFile {
            file: OsDisk.open(path, create)?,
            budget: Arc::clone(&self.budget),
            kind: if self.read_only {
                io::ErrorKind::ReadOnlyFilesystem
            } else {
                io::ErrorKind::StorageFull
            },
        })
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        OsDisk.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        OsDisk.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        OsDisk.sync_dir(dir)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<OsLock>> {
        OsDisk.try_lock(path)
    }
}

impl DiskFile for FullFile {
    fn read_all(&mut self) -> io::Result<Vec<u8>> {
        self.file.read_all()
    }
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        if self.budget.fetch_sub(bytes.len() as i64, Ordering::SeqCst) < bytes.len() as i64 {
            return Err(io::Error::new(self.kind, "disk full or read-only"));
        }
        self.file.write_at(offset, bytes)
    }
    fn allocate(&mut self, len: u64) -> io::Result<()> {
        // Sparse: preallocation is not what this disk tests.
        self.file.set_len(len)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.file.sync()
    }
}

#[test]
fn a_full_disk_fails_the_sync_and_every_write_after_it() {
    let dir = TempDir::new("full");
    let budget = Arc::new(AtomicI64::new(i64::MAX));
    let disk = FullDisk {
        budget: Arc::clone(&budget),
        read_only: false,
    };
    {
        let mut s = FileStorage::open_on(disk.clone(), dir.path(), FileOptions::default()).unwrap();
        s.append(&run(1, 3, 100)).unwrap();
        s.sync().unwrap();
        budget.store(50, Ordering::SeqCst);
        s.append(&run(4, 6, 100)).unwrap();
        let err = s.sync().unwrap_err();
        assert!(matches!(err, StorageError::Io(ref e) if e.kind() == io::ErrorKind::StorageFull));
        // Even with room again, a storage that failed takes nothing more.
        budget.store(i64::MAX, Ordering::SeqCst);
        assert!(s.append(&run(7, 7, 100)).is_err());
        assert!(s.sync().is_err());
        assert!(s.set_hard_state(b"x").is_err());
    }
    let s = FileStorage::open_on(disk, dir.path(), FileOptions::default()).unwrap();
    assert_eq!(s.entries().unwrap(), run(1, 3, 100));
}

#[test]
fn without_sync_the_writes_still_reach_the_files() {
    let dir = TempDir::new("nosync");
    let options = FileOptions {
        sync: false,
        ..FileOptions::default()
    };
    {
        let mut s = FileStorage::open_with(dir.path(), options).unwrap();
        s.append(&run(1, 4, 10)).unwrap();
        s.set_hard_state(b"hs").unwrap();
        s.sync().unwrap();
        assert_eq!(s.sync_count(), 0, "nothing was synced");
    }
    let s = FileStorage::open_with(dir.path(), options).unwrap();
    assert_eq!(s.entries().unwrap(), run(1, 4, 10));
    assert_eq!(s.hard_state().unwrap(), Some(b"hs".to_vec()));
}

// ------------------------------------------------- nodes on FileStorage

use crate::consensus::raft::{Raft, RaftConfig};
use crate::local::LocalCluster;
use crate::runtime::{Node, NodeConfig, StateMachine};
use crate::ProposeError;
use std::sync::Mutex;
use std::time::Duration;

/// Records the commands it applies, shared with the test.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Vec<u8>>>>);

impl StateMachine for Recorder {
    fn apply(&mut self, _index: Index, command: &[u8]) -> Vec<u8> {
        self.0.lock().unwrap().push(command.to_vec());
        Vec::new()
    }
}

#[test]
fn a_cluster_on_data_directories_resumes_after_every_node_restarts() {
    let dir = TempDir::new("cluster");
    let mut template = NodeConfig::<RaftConfig>::new(1, vec![1, 2, 3]);
    template.data_dir = Some(dir.path().to_path_buf());
    template.tick_interval = Duration::from_millis(2);
    let recorders: Arc<Mutex<Vec<Recorder>>> = Arc::default();
    let rs = Arc::clone(&recorders);
    let mut cluster = LocalCluster::<Raft>::start_with(template, move |_| {
        let r = Recorder::default();
        rs.lock().unwrap().push(r.clone());
        r
    })
    .unwrap();
    let wait = Duration::from_secs(10);
    for i in 0..30u8 {
        cluster.propose(&[i], wait).unwrap();
    }
    for id in 1..=3 {
        cluster.stop(id);
    }
    recorders.lock().unwrap().clear();
    for id in 1..=3 {
        cluster.restart(id).unwrap();
    }
    cluster.propose(&[99], wait).unwrap();
    let leader = cluster.wait_for_leader(wait).unwrap();
    assert!(cluster.node(leader).unwrap().status().storage_syncs > 0);
    // Every restarted node applies the 30 commands from its own log (the
    // leader at least at once; the others as the commit reaches them).
    let deadline = std::time::Instant::now() + wait;
    loop {
        let logs: Vec<Vec<Vec<u8>>> = recorders
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.0.lock().unwrap().clone())
            .collect();
        let expected: Vec<Vec<u8>> = (0..30u8).map(|i| vec![i]).chain([vec![99]]).collect();
        if logs.len() == 3 && logs.iter().all(|l| *l == expected) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "logs after restart: {logs:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    cluster.shutdown();
}

#[test]
fn a_node_whose_disk_fills_stops_acknowledges_nothing_more_and_says_why() {
    let dir = TempDir::new("nodefull");
    let budget = Arc::new(AtomicI64::new(i64::MAX));
    let disk = FullDisk {
        budget: Arc::clone(&budget),
        read_only: false,
    };
    let storage = FileStorage::open_on(disk.clone(), dir.path(), FileOptions::default()).unwrap();
    let mut config = NodeConfig::<RaftConfig>::new(1, vec![1]);
    config.tick_interval = Duration::from_millis(1);
    let node = Node::<Raft>::start(config, storage, |_, _| {}, Recorder::default()).unwrap();
    let wait = Duration::from_secs(10);
    let deadline = std::time::Instant::now() + wait;
    let acked = loop {
        match node.propose(b"kept".to_vec(), wait) {
            Ok(_) => break 1,
            Err(ProposeError::NotLeader { .. }) => {
                assert!(std::time::Instant::now() < deadline, "no leader");
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("{e}"),
        }
    };
    budget.store(0, Ordering::SeqCst);
    let lost = node.propose(b"not persisted".to_vec(), wait);
    assert!(matches!(lost, Err(ProposeError::Closed)), "{lost:?}");
    let status = node.status();
    assert_eq!(status.storage_errors, 1);
    let why = status
        .storage_failure
        .clone()
        .expect("the failure is reported");
    assert!(why.contains("disk full"), "{why}");
    assert!(
        status.to_string().contains("stopped by storage"),
        "{status}"
    );
    assert!(matches!(
        node.propose(b"after".to_vec(), wait),
        Err(ProposeError::Closed)
    ));
    node.shutdown();
    drop(node);
    budget.store(i64::MAX, Ordering::SeqCst);
    let reopened = FileStorage::open_on(disk, dir.path(), FileOptions::default()).unwrap();
    let commands: Vec<Bytes> = reopened
        .entries()
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == EntryKind::Normal)
        .map(|e| e.data)
        .collect();
    assert_eq!(commands.len(), acked);
    assert_eq!(commands[0], Bytes::from_static(b"kept"));
}

#[test]
fn two_nodes_pointed_at_one_directory_the_second_does_not_start() {
    let dir = TempDir::new("twonodes");
    let mut config = NodeConfig::<RaftConfig>::new(1, vec![1]);
    config.data_dir = Some(dir.path().to_path_buf());
    let first = Node::<Raft>::open(config.clone(), |_, _| {}, Recorder::default()).unwrap();
    let second = Node::<Raft>::open(config.clone(), |_, _| {}, Recorder::default());
    assert!(
        matches!(
            second,
            Err(crate::runtime::StartError::Storage(StorageError::Locked(_)))
        ),
        "{:?}",
        second.err()
    );
    first.shutdown();
    drop(first);
    Node::<Raft>::open(config, |_, _| {}, Recorder::default())
        .unwrap()
        .shutdown();
}

#[test]
fn a_batch_survives_whole_or_not_at_all() {
    // A follower's truncation must not survive without the entries that
    // replace it: a Multi-Paxos acceptor rewriting accepted values under a
    // new ballot would forget them.
    let dir = TempDir::new("batch");
    let data_end = |dir: &Path| {
        let seg = segments(dir).pop().unwrap();
        let data = fs::read(&seg).unwrap();
        (seg, data.iter().rposition(|&b| b != 0).unwrap() + 1)
    };
    {
        let mut s = FileStorage::open(dir.path()).unwrap();
        s.append(&run(1, 5, 10)).unwrap();
        s.sync().unwrap();
    }
    let (seg, first_batch_end) = data_end(dir.path());
    {
        let mut s = FileStorage::open(dir.path()).unwrap();
        s.entries().unwrap();
        s.truncate_from(3).unwrap();
        s.append(&(3..=4).map(|i| e(2, i, 10)).collect::<Vec<_>>())
            .unwrap();
        s.sync().unwrap();
    }
    // The disk kept the truncation record and lost the rest of the batch.
    let truncation = record::record_size(9);
    let mut f = OsDisk.open(&seg, false).unwrap();
    let (_, second_batch_end) = data_end(dir.path());
    let lost = first_batch_end + truncation;
    f.write_at(lost as u64, &vec![0; second_batch_end - lost])
        .unwrap();
    let s = FileStorage::open(dir.path()).unwrap();
    assert_eq!(s.entries().unwrap(), run(1, 5, 10));
    let torn = s.torn_tail().expect("the batch was torn");
    assert_eq!(torn.offset, first_batch_end as u64);
}

/// A log of `n` one-entry batches of 1000-byte entries in small segments.
fn many_segments(dir: &Path, n: u64) -> Vec<PathBuf> {
    let mut s = FileStorage::open_with(dir, SMALL).unwrap();
    for i in 1..=n {
        s.append(&run(i, i, 1000)).unwrap();
        s.sync().unwrap();
    }
    drop(s);
    segments(dir)
}

#[test]
fn a_flipped_bit_in_the_padding_of_a_segment_is_damage_not_a_torn_write() {
    let dir = TempDir::new("padflip");
    let segs = many_segments(dir.path(), 150);
    assert!(segs.len() >= 3);
    let mut data = fs::read(&segs[0]).unwrap();
    let used = data.iter().rposition(|&b| b != 0).unwrap() + 1;
    data[used + 40] ^= 0x08;
    fs::write(&segs[0], &data).unwrap();
    let err = FileStorage::open_with(dir.path(), SMALL).unwrap_err();
    assert!(matches!(err, StorageError::CorruptRecord { .. }), "{err}");
    // Nothing was cut or deleted.
    assert_eq!(segments(dir.path()), segs);
}

#[test]
fn a_missing_segment_is_damage() {
    let dir = TempDir::new("missing");
    let segs = many_segments(dir.path(), 150);
    fs::remove_file(&segs[1]).unwrap();
    let err = FileStorage::open_with(dir.path(), SMALL).unwrap_err();
    assert!(
        matches!(err, StorageError::CorruptRecord { ref reason, .. } if reason.contains("missing")),
        "{err}"
    );
}

#[test]
fn a_directory_left_half_set_up_by_a_crash_opens() {
    let dir = TempDir::new("halfsetup");
    fs::create_dir_all(dir.path()).unwrap();
    fs::write(dir.path().join("LOCK"), b"").unwrap();
    fs::write(dir.path().join("consenso.meta.tmp"), b"CNSOME").unwrap();
    let mut s = FileStorage::open(dir.path()).unwrap();
    s.append(&run(1, 1, 5)).unwrap();
    s.sync().unwrap();
}

#[test]
fn a_command_larger_than_a_record_takes_is_refused_and_nothing_changes() {
    let mut config = NodeConfig::<RaftConfig>::new(1, vec![1]);
    config.tick_interval = Duration::from_millis(1);
    let node =
        Node::<Raft>::start(config, MemStorage::new(), |_, _| {}, Recorder::default()).unwrap();
    let wait = Duration::from_secs(10);
    let deadline = std::time::Instant::now() + wait;
    while node.status().role != crate::Role::Leader {
        assert!(std::time::Instant::now() < deadline, "no leader");
        std::thread::sleep(Duration::from_millis(2));
    }
    let max = crate::consensus::MAX_COMMAND_BYTES;
    let before = node.status().last_index;
    let huge = vec![0u8; max + 1];
    assert_eq!(
        node.propose(huge, wait),
        Err(ProposeError::TooLarge {
            bytes: max + 1,
            max
        })
    );
    assert_eq!(node.status().last_index, before);
    node.propose(b"small".to_vec(), wait).unwrap();
    node.shutdown();
}

#[test]
fn a_read_only_disk_fails_the_open_or_the_first_sync() {
    let dir = TempDir::new("readonly");
    let disk = FullDisk {
        budget: Arc::new(AtomicI64::new(0)),
        read_only: true,
    };
    let err = FileStorage::open_on(disk.clone(), dir.path(), FileOptions::default()).unwrap_err();
    assert!(
        matches!(err, StorageError::Io(ref e) if e.kind() == io::ErrorKind::ReadOnlyFilesystem),
        "{err}"
    );
    // Written before, read-only now: it opens (recovery writes nothing
    // when nothing was torn), and the first sync fails.
    {
        let mut s = FileStorage::open(dir.path()).unwrap();
        s.append(&run(1, 2, 5)).unwrap();
        s.sync().unwrap();
    }
    let mut s = FileStorage::open_on(disk, dir.path(), FileOptions::default()).unwrap();
    assert_eq!(s.entries().unwrap(), run(1, 2, 5));
    s.append(&run(3, 3, 5)).unwrap();
    let err = s.sync().unwrap_err();
    assert!(
        matches!(err, StorageError::Io(ref e) if e.kind() == io::ErrorKind::ReadOnlyFilesystem),
        "{err}"
    );
}

#[test]
fn damage_followed_by_a_single_synced_batch_is_still_damage() {
    // Right after a roll the next segment holds one synced batch: a flipped
    // bit in the padding of the segment before must not cut it.
    let dir = TempDir::new("onebatch");
    {
        let mut s = FileStorage::open_with(dir.path(), SMALL).unwrap();
        let mut i = 1;
        while segments(dir.path()).len() < 2 {
            s.append(&run(i, i, 1000)).unwrap();
            s.sync().unwrap();
            i += 1;
        }
    }
    let segs = segments(dir.path());
    let mut data = fs::read(&segs[0]).unwrap();
    let used = data.iter().rposition(|&b| b != 0).unwrap() + 1;
    data[used + 3] ^= 0x40;
    fs::write(&segs[0], &data).unwrap();
    let err = FileStorage::open_with(dir.path(), SMALL).unwrap_err();
    assert!(matches!(err, StorageError::CorruptRecord { .. }), "{err}");
    assert_eq!(segments(dir.path()), segs, "nothing was deleted");
}
