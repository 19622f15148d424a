//! The write-ahead log: numbered segment files of checksummed records
//! ([`super::record`]), each preallocated on a helper thread before the
//! log needs it, so that appending never grows a file and a data sync
//! writes no metadata.
//!
//! A segment is `CNSOWAL\0`, the format version (`u32 LE`), four zero
//! bytes, the length it was preallocated to (`u64 LE`; a shorter file was
//! cut, which is damage), then records. A record's payload is one of:
//! - `1` then a postcard-encoded run of entries that continues the log
//!   (an entry below the end replaces what was there: the log was cut);
//! - `2` then an index (`u64 LE`): every entry at or above it is gone;
//! - `4` then an index (`u64 LE`): a snapshot through that index is
//!   durable; the log may continue right after it (entries it covers are
//!   dropped);
//! - `3` then a record count (`u32 LE`): the batch of that many records
//!   before it is complete. Each sync ends its batch with one, and
//!   recovery applies whole batches only: a batch the disk did not finish
//!   (its commit record missing, or records of it lost) is torn as a whole,
//!   so that a follower's truncation never survives without the entries
//!   that replace it.
//!
//! Segments whose entries a snapshot covers are deleted, oldest first, so
//! the first segment left may start anywhere in the log; the caller checks
//! that the log and the snapshot meet.
//!
//! Recovery replays every segment in order. A torn record (a write the
//! disk never finished: never synced, so never acknowledged; see
//! [`super::record`]) ends the log: it, everything after it and every later
//! segment are cut off, and the cut is reported. A damaged record is
//! [`StorageError::CorruptRecord`], naming the file and offset: recovery
//! never skips one.

use super::disk::{Disk, DiskFile};
use super::record::{put_record, scan, whole_records_in, ScanEnd};
use super::StorageError;
use crate::types::{Entry, Index};
use std::io;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

const MAGIC: &[u8; 8] = b"CNSOWAL\0";
const VERSION: u32 = 1;
/// Bytes before the first record of a segment.
const SEGMENT_HEADER: u64 = 24;
const ENTRIES: u8 = 1;
const TRUNCATE: u8 = 2;
const COMMIT: u8 = 3;
const SNAPSHOT: u8 = 4;

/// The log a replay found.
#[derive(Debug, Default)]
pub(crate) struct Replayed {
    /// Contiguous entries, the first right after `base`.
    pub(crate) entries: Vec<Entry>,
    /// The index before the first entry (the last index when there is
    /// none).
    pub(crate) base: Index,
    /// The highest snapshot the log says was saved (0: none).
    pub(crate) snapshot: Index,
}

/// What recovery cut off the end of the log: a torn last write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment it was in.
    pub file: PathBuf,
    /// Where the torn record started.
    pub offset: u64,
    /// How many bytes after it were discarded (zeroed).
    pub bytes: u64,
}

/// The segment file names of `dir`, by sequence number.
fn segment_name(seq: u64) -> String {
    format!("{seq:016x}.wal")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".wal")?;
    (hex.len() == 16)
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
}

fn segment_header(size: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(SEGMENT_HEADER as usize);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&VERSION.to_le_bytes());
    h.extend_from_slice(&[0; 4]);
    h.extend_from_slice(&size.to_le_bytes());
    h
}

/// A segment being prepared (on a helper thread when the disk allows):
/// created under a temporary name, given its header, preallocated and
/// synced.
enum Preparing<F> {
    Thread(JoinHandle<io::Result<F>>),
    Done(io::Result<F>),
}

impl<F> Preparing<F> {
    fn wait(self) -> io::Result<F> {
        match self {
            Preparing::Thread(handle) => handle
                .join()
                .map_err(|_| io::Error::other("segment preparation panicked"))?,
            Preparing::Done(result) => result,
        }
    }
}

fn prepare<D: Disk>(disk: &D, tmp: PathBuf, size: u64) -> Preparing<D::File> {
    let background = disk.prepares_in_background();
    let disk = disk.clone();
    let work = move || {
        let mut file = disk.open(&tmp, true)?;
        file.write_at(0, &segment_header(size))?;
        file.allocate(size)?;
        file.sync()?;
        Ok(file)
    };
    if background {
        Preparing::Thread(std::thread::spawn(work))
    } else {
        Preparing::Done(work())
    }
}

/// The log's segments on disk and the open one being appended to.
pub(crate) struct Wal<D: Disk> {
    disk: D,
    dir: PathBuf,
    segment_bytes: u64,
    seq: u64,
    file: D::File,
    /// Where the next record goes in `file`, counting `pending`.
    end: u64,
    /// Records not yet written to `file`, starting at `end - pending.len()`.
    pending: Vec<u8>,
    /// Files written to and not yet synced, besides `file`.
    older: Vec<D::File>,
    /// A segment was renamed into place since the last sync.
    dir_dirty: bool,
    file_dirty: bool,
    next: Option<Preparing<D::File>>,
    /// Records of the batch not yet ended by a commit record.
    batch_records: u32,
    /// Closed segments, oldest first: sequence number and the highest
    /// entry index any record in it holds.
    closed: std::collections::VecDeque<(u64, Index)>,
    /// The same highest index for the open segment.
    open_max: Index,
    /// Reused encoding buffer.
    scratch: Vec<u8>,
}

impl<D: Disk> Wal<D> {
    /// Opens (creating when empty) the log in `dir` and replays it.
    /// Returns the log, its entries and the torn tail it cut off, if any.
    ///
    /// # Errors
    /// [`StorageError::CorruptRecord`] for damage before the tail, or the
    /// device's error.
    pub(crate) fn open(
        disk: D,
        dir: PathBuf,
        segment_bytes: u64,
        snapshot: Index,
    ) -> Result<(Self, Replayed, Option<TornTail>), StorageError> {
        disk.create_dir_all(&dir)?;
        let mut seqs = Vec::new();
        for name in disk.list(&dir)? {
            if name.ends_with(".tmp") {
                // A segment prepared before a crash and never used.
                disk.remove(&dir.join(&name))?;
            } else if let Some(seq) = parse_segment_name(&name) {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        if let Some(w) = seqs.windows(2).find(|w| w[1] != w[0] + 1) {
            return Err(StorageError::CorruptRecord {
                file: dir.join(segment_name(w[0] + 1)),
                offset: 0,
                reason: "this log segment is missing".into(),
            });
        }
        // Segments before the first were deleted below a snapshot: the
        // first may begin inside a batch that started in them.
        let mut replay = Replay {
            joined_late: seqs.first().is_some_and(|&s| s > 1),
            snapshot,
            ..Replay::default()
        };
        // Each segment's sequence number and where its valid data ends.
        let mut ends: Vec<(u64, usize)> = Vec::new();
        let mut torn_at = None;
        for (i, &seq) in seqs.iter().enumerate() {
            let path = dir.join(segment_name(seq));
            let bytes = disk.open(&path, false)?.read_all()?;
            match replay_segment(&path, &bytes, i, &mut replay)? {
                ScanEnd::Clean(o) => ends.push((seq, o)),
                ScanEnd::Torn(o) => {
                    ends.push((seq, o));
                    torn_at = Some((i, o));
                    break;
                }
                ScanEnd::Damaged(..) => unreachable!("replay_segment reports damage"),
            }
        }
        // A batch that began and never ended was torn from its start.
        if let Some(start) = replay.batch_start.filter(|_| replay.pending > 0) {
            torn_at = Some(torn_at.map_or(start, |t: (usize, usize)| t.min(start)));
        }
        if let Some((i, o)) = torn_at {
            // Only the last batch can be unfinished: a complete batch
            // written after the cut means synced data was damaged there.
            if let Some((file, at)) = batch_after(&disk, &dir, &seqs, i, o)? {
                return Err(StorageError::CorruptRecord {
                    file: dir.join(segment_name(seqs[i])),
                    offset: o as u64,
                    reason: format!(
                        "damaged, though a complete batch follows ({} at offset {at})",
                        file.display()
                    ),
                });
            }
        }
        let mut torn = None;
        if let Some((i, o)) = torn_at {
            ends.truncate(i + 1);
            ends[i].1 = o;
            // Later segments hold only what was never synced either (a
            // sync covers every file). Last first, so that a crash here
            // leaves no gap in the numbering.
            for &seq in seqs[i + 1..].iter().rev() {
                disk.remove(&dir.join(segment_name(seq)))?;
            }
            let path = dir.join(segment_name(seqs[i]));
            let mut file = disk.open(&path, false)?;
            let bytes = file.read_all()?;
            let used = bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
            let dropped = used.saturating_sub(o);
            // Zero the torn bytes so that what is appended next is
            // followed by zeros, as in a fresh segment.
            for at in (o..used).step_by(1 << 20) {
                let n = (1 << 20).min(used - at);
                file.write_at(at as u64, &vec![0; n])?;
            }
            file.sync()?;
            disk.sync_dir(&dir)?;
            ::log::warn!(
                "{}: cut a torn write at offset {o} ({dropped} bytes zeroed)",
                path.display()
            );
            torn = Some(TornTail {
                file: path,
                offset: o as u64,
                bytes: dropped as u64,
            });
        }
        let mut maxima: Vec<(u64, Index)> = ends
            .iter()
            .enumerate()
            .map(|(i, &(seq, _))| (seq, replay.seg_max.get(i).copied().unwrap_or(0)))
            .collect();
        let open_max = maxima.pop().map_or(0, |(_, m)| m);
        let found = Replayed {
            entries: replay.entries,
            base: replay.base,
            snapshot: replay.marker,
        };
        let last = match ends.last() {
            Some(&(seq, end)) => Some((
                seq,
                disk.open(&dir.join(segment_name(seq)), false)?,
                end as u64,
            )),
            None => None,
        };
        let (seq, file, end) = match last {
            Some(last) => last,
            None => {
                let tmp = dir.join(format!("{}.tmp", segment_name(1)));
                let file = prepare(&disk, tmp.clone(), segment_bytes).wait()?;
                disk.rename(&tmp, &dir.join(segment_name(1)))?;
                disk.sync_dir(&dir)?;
                (1, file, SEGMENT_HEADER)
            }
        };
        let mut wal = Wal {
            disk,
            dir,
            segment_bytes,
            seq,
            file,
            end,
            pending: Vec::new(),
            older: Vec::new(),
            dir_dirty: false,
            file_dirty: false,
            next: None,
            batch_records: 0,
            closed: maxima.into(),
            open_max,
            scratch: Vec::new(),
        };
        wal.prepare_next();
        Ok((wal, found, torn))
    }

    fn prepare_next(&mut self) {
        if self.next.is_none() {
            let tmp = self.dir.join(format!("{}.tmp", segment_name(self.seq + 1)));
            self.next = Some(prepare(&self.disk, tmp, self.segment_bytes));
        }
    }

    /// Queues a record of `entries` (written at the next [`Wal::sync`]).
    ///
    /// # Errors
    /// The device's error when a new segment could not be started.
    pub(crate) fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        // Keep records well under a segment: split long runs.
        let max = (self.segment_bytes / 2) as usize;
        let mut from = 0;
        while from < entries.len() {
            let mut to = from;
            let mut size = 0;
            while to < entries.len() && (to == from || size + entries[to].size() <= max) {
                size += entries[to].size();
                to += 1;
            }
            let mut payload = std::mem::take(&mut self.scratch);
            payload.clear();
            payload.push(ENTRIES);
            let payload = postcard::to_extend(&entries[from..to], payload)
                .map_err(|e| StorageError::Corrupt(format!("encoding entries: {e}")))?;
            self.put(&payload)?;
            self.scratch = payload;
            self.open_max = self.open_max.max(entries[to - 1].index);
            from = to;
        }
        Ok(())
    }

    /// Queues a record saying that a snapshot through `index` is durable.
    ///
    /// # Errors
    /// The device's error when a new segment could not be started.
    pub(crate) fn snapshot_saved(&mut self, index: Index) -> Result<(), StorageError> {
        let mut payload = vec![SNAPSHOT];
        payload.extend_from_slice(&index.to_le_bytes());
        self.put(&payload)
    }

    /// Deletes the closed segments, oldest first, whose every entry is at
    /// or below `index` (a durable snapshot covers them). Returns how many.
    ///
    /// # Errors
    /// The device's error.
    pub(crate) fn remove_through(&mut self, index: Index) -> Result<usize, StorageError> {
        let mut removed = 0;
        while let Some(&(seq, max)) = self.closed.front() {
            if max > index {
                break;
            }
            match self.disk.remove(&self.dir.join(segment_name(seq))) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
            self.closed.pop_front();
            removed += 1;
        }
        Ok(removed)
    }

    /// How many segment files the log has.
    pub(crate) fn segments(&self) -> usize {
        self.closed.len() + 1
    }

    /// Queues a record that removes every entry at or above `index`.
    ///
    /// # Errors
    /// The device's error when a new segment could not be started.
    pub(crate) fn truncate(&mut self, index: Index) -> Result<(), StorageError> {
        let mut payload = vec![TRUNCATE];
        payload.extend_from_slice(&index.to_le_bytes());
        self.put(&payload)
    }

    fn put(&mut self, payload: &[u8]) -> Result<(), StorageError> {
        let size = super::record::record_size(payload.len()) as u64;
        if self.end > SEGMENT_HEADER && self.end + size > self.segment_bytes {
            self.roll()?;
        }
        put_record(&mut self.pending, payload);
        self.end += size;
        self.batch_records += 1;
        Ok(())
    }

    /// Writes what is pending to the open segment and moves to the next.
    fn roll(&mut self) -> Result<(), StorageError> {
        self.write_pending()?;
        let next = self
            .next
            .take()
            .expect("a next segment is always being prepared")
            .wait()?;
        let seq = self.seq + 1;
        let tmp = self.dir.join(format!("{}.tmp", segment_name(seq)));
        self.disk.rename(&tmp, &self.dir.join(segment_name(seq)))?;
        let old = std::mem::replace(&mut self.file, next);
        if self.file_dirty {
            self.older.push(old);
        }
        self.closed
            .push_back((self.seq, std::mem::take(&mut self.open_max)));
        self.seq = seq;
        self.end = SEGMENT_HEADER;
        self.dir_dirty = true;
        self.file_dirty = false;
        self.prepare_next();
        Ok(())
    }

    fn write_pending(&mut self) -> Result<(), StorageError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let at = self.end - self.pending.len() as u64;
        self.file.write_at(at, &self.pending)?;
        self.pending.clear();
        self.file_dirty = true;
        Ok(())
    }

    /// Writes what is pending and, when `durable`, syncs every file written
    /// to and the directory if a segment was added. Returns whether any
    /// file was synced.
    ///
    /// # Errors
    /// The device's error.
    pub(crate) fn sync(&mut self, durable: bool) -> Result<bool, StorageError> {
        if self.batch_records > 0 {
            let mut commit = vec![COMMIT];
            commit.extend_from_slice(&self.batch_records.to_le_bytes());
            self.put(&commit)?;
            self.batch_records = 0;
        }
        self.write_pending()?;
        if !durable {
            self.older.clear();
            self.dir_dirty = false;
            self.file_dirty = false;
            return Ok(false);
        }
        let synced = self.file_dirty || !self.older.is_empty() || self.dir_dirty;
        for mut f in self.older.drain(..) {
            f.sync()?;
        }
        if self.file_dirty {
            self.file.sync()?;
            self.file_dirty = false;
        }
        if self.dir_dirty {
            self.disk.sync_dir(&self.dir)?;
            self.dir_dirty = false;
        }
        Ok(synced)
    }
}

/// Where a complete batch written after offset `o` of segment `seqs[i]`
/// (there or in a later segment) ends, if one was: a whole commit record
/// `COMMIT(n)` right after `n` whole records that follow each other, all
/// after `o`. The batch torn at `o` cannot pass for one (its first record
/// is at or before `o`, and not whole), but a synced batch after damage
/// does: then the damage is not a torn write.
fn batch_after<D: Disk>(
    disk: &D,
    dir: &Path,
    seqs: &[u64],
    i: usize,
    o: usize,
) -> Result<Option<(PathBuf, usize)>, StorageError> {
    // Whole records after the cut that follow each other (across a roll
    // too): how many there are in the current run.
    let mut run: u32 = 0;
    for (k, &seq) in seqs.iter().enumerate().skip(i) {
        let path = dir.join(segment_name(seq));
        let bytes = disk.open(&path, false)?.read_all()?;
        let mut expected = if k == i {
            None
        } else {
            Some(SEGMENT_HEADER as usize)
        };
        let from = if k == i {
            o + 1
        } else {
            SEGMENT_HEADER as usize
        };
        for (at, payload) in whole_records_in(&bytes, from) {
            if expected != Some(at) {
                run = 0;
            }
            expected = Some(at + super::record::record_size(payload.len()));
            if let Some((&COMMIT, count)) = payload.split_first() {
                let count = count.try_into().map(u32::from_le_bytes).unwrap_or(u32::MAX);
                if count <= run {
                    return Ok(Some((path.clone(), at)));
                }
                run = 0;
            } else {
                run += 1;
            }
        }
    }
    Ok(None)
}

impl<D: Disk> Drop for Wal<D> {
    /// Waits for a segment being prepared, so that nothing writes in the
    /// directory once its lock is released.
    fn drop(&mut self) {
        if let Some(next) = self.next.take() {
            let _ = next.wait();
        }
    }
}

/// Replays the records of segment number `index` (in order) into
/// `replay`.
fn replay_segment(
    path: &Path,
    bytes: &[u8],
    index: usize,
    replay: &mut Replay,
) -> Result<ScanEnd, StorageError> {
    let corrupt = |offset: usize, reason: String| StorageError::CorruptRecord {
        file: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    if bytes.len() < SEGMENT_HEADER as usize || &bytes[..8] != MAGIC {
        return Err(corrupt(0, "not a consenso log segment".into()));
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != VERSION {
        return Err(StorageError::UnsupportedFormat {
            path: path.to_path_buf(),
            found: version,
            supported: VERSION,
        });
    }
    let allocated = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    if (bytes.len() as u64) < allocated {
        return Err(corrupt(
            bytes.len(),
            format!(
                "the segment was cut: {} bytes of the {allocated} it was allocated",
                bytes.len()
            ),
        ));
    }
    let start = SEGMENT_HEADER as usize;
    let scanned = scan(bytes, start, |off, payload| {
        replay.record(payload, (index, off))
    });
    match scanned {
        Ok(ScanEnd::Damaged(off, reason)) => Err(corrupt(off, reason.into())),
        Ok(end) => Ok(end),
        // Records of this batch were lost (a write the disk did not
        // finish, overtaken by this one): torn, from the batch's start,
        // which the caller finds in `replay`.
        Err((off, Refused::Incomplete)) => Ok(ScanEnd::Torn(off)),
        Err((off, Refused::Bad(reason))) => Err(corrupt(off, reason)),
    }
}

/// Why a record did not replay.
enum Refused {
    /// A commit record counted more records than its batch has here.
    Incomplete,
    /// It does not decode, or its entries do not continue the log.
    Bad(String),
}

/// One record of a batch not yet committed.
enum Op {
    Entries(Vec<Entry>),
    Truncate(Index),
    Snapshot(Index),
}

/// The log being replayed, whole batches at a time. It starts wherever the
/// first segment left does.
#[derive(Default)]
struct Replay {
    /// Contiguous, the first right after `base`.
    entries: Vec<Entry>,
    base: Index,
    /// Whether any record placed the log yet.
    placed: bool,
    /// The segments before the first were deleted: the first batch may
    /// have begun in them (its commit record then counts more records
    /// than the log holds before it).
    joined_late: bool,
    /// A commit record was read.
    committed_any: bool,
    /// The saved snapshot's index: segments with entries below it may
    /// have been deleted, so the log may jump to any index up to the one
    /// after it.
    snapshot: Index,
    /// The highest snapshot record.
    marker: Index,
    /// By segment number: the highest entry index a record holds.
    seg_max: Vec<Index>,
    ops: Vec<Op>,
    /// Records of the open batch (operations and any empty ones).
    pending: u32,
    /// Where the open batch began: segment number and offset.
    batch_start: Option<(usize, usize)>,
}

impl Replay {
    /// Takes one record found at `at`.
    fn record(&mut self, payload: &[u8], at: (usize, usize)) -> Result<(), Refused> {
        if self.pending == 0 {
            self.batch_start = Some(at);
        }
        let index_in = |rest: &[u8], what: &str| {
            rest.try_into()
                .map(u64::from_le_bytes)
                .map_err(|_| Refused::Bad(format!("{what} record of the wrong size")))
        };
        match payload.split_first() {
            Some((&ENTRIES, rest)) => {
                let batch: Vec<Entry> = postcard::from_bytes(rest)
                    .map_err(|e| Refused::Bad(format!("entries do not decode: {e}")))?;
                if self.seg_max.len() <= at.0 {
                    self.seg_max.resize(at.0 + 1, 0);
                }
                let top = batch.last().map_or(0, |e| e.index);
                self.seg_max[at.0] = self.seg_max[at.0].max(top);
                self.ops.push(Op::Entries(batch));
            }
            Some((&TRUNCATE, rest)) => self.ops.push(Op::Truncate(index_in(rest, "truncation")?)),
            Some((&SNAPSHOT, rest)) => self.ops.push(Op::Snapshot(index_in(rest, "snapshot")?)),
            Some((&COMMIT, rest)) => {
                let count = rest
                    .try_into()
                    .map(u32::from_le_bytes)
                    .map_err(|_| Refused::Bad("commit record of the wrong size".into()))?;
                let began_before = self.joined_late && !self.committed_any && count > self.pending;
                if count != self.pending && !began_before {
                    return Err(Refused::Incomplete);
                }
                self.committed_any = true;
                for op in std::mem::take(&mut self.ops) {
                    self.apply(op)?;
                }
                self.pending = 0;
                self.batch_start = None;
                return Ok(());
            }
            _ => return Err(Refused::Bad("unknown record kind".into())),
        }
        self.pending += 1;
        Ok(())
    }

    fn last(&self) -> Index {
        self.base + self.entries.len() as Index
    }

    fn apply(&mut self, op: Op) -> Result<(), Refused> {
        match op {
            Op::Entries(batch) => {
                let Some(first) = batch.first().map(|e| e.index) else {
                    return Ok(());
                };
                if !self.placed {
                    // The first segment left after older ones were deleted.
                    self.placed = true;
                    self.base = first.saturating_sub(1);
                }
                let mut last = self.last();
                if first > last + 1 && first <= self.snapshot + 1 {
                    // What came between was deleted below the snapshot.
                    self.entries.clear();
                    self.base = first - 1;
                    last = self.base;
                }
                if first == 0 || first > last + 1 {
                    return Err(Refused::Bad(format!(
                        "entries from {first} leave a gap after {last}"
                    )));
                }
                if !crate::consensus::log::consecutive(&batch, first) {
                    return Err(Refused::Bad(format!(
                        "entries from {first} are not consecutive"
                    )));
                }
                self.cut(first);
                self.entries.extend(batch);
            }
            Op::Truncate(index) => {
                if self.placed {
                    self.cut(index.max(1));
                }
            }
            Op::Snapshot(index) => {
                self.marker = self.marker.max(index);
                self.placed = true;
                if index >= self.last() {
                    self.entries.clear();
                    self.base = index;
                } else if index > self.base {
                    self.entries.drain(..(index - self.base) as usize);
                    self.base = index;
                }
            }
        }
        Ok(())
    }

    /// Removes every entry at or above `index`.
    fn cut(&mut self, index: Index) {
        if index <= self.base {
            self.entries.clear();
            self.base = index - 1;
        } else {
            self.entries.truncate((index - self.base - 1) as usize);
        }
    }
}
