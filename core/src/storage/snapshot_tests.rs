//! Snapshots in storage: what a reopen finds after a snapshot (the
//! snapshot, the log after it, and fewer segments), and every damaged or
//! missing snapshot file the issue names.

use super::file_tests::TempDir;
use super::*;
use crate::types::EntryKind;
use bytes::Bytes;
use std::fs;
use std::path::{Path, PathBuf};

fn e(index: Index) -> Entry {
    Entry::new(
        1,
        index,
        EntryKind::Normal,
        Bytes::from(vec![index as u8; 1000]),
    )
}

fn run(from: Index, to: Index) -> Vec<Entry> {
    (from..=to).map(e).collect()
}

fn snap(index: Index, len: usize) -> Snapshot {
    Snapshot {
        index,
        epoch: 1,
        data: Bytes::from(vec![7u8; len]),
    }
}

const SMALL: FileOptions = FileOptions {
    sync: true,
    segment_bytes: 64 << 10,
};

fn wal_files(dir: &Path) -> usize {
    fs::read_dir(dir.join("wal"))
        .unwrap()
        .filter(|d| {
            d.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "wal")
        })
        .count()
}

/// A directory whose log holds 1..=300 and whose snapshot covers 1..=200.
fn snapshotted(dir: &Path) -> Snapshot {
    let mut s = FileStorage::open_with(dir, SMALL).unwrap();
    s.append(&run(1, 300)).unwrap();
    s.sync().unwrap();
    let before = s.segments();
    let snapshot = snap(200, 5000);
    s.save_snapshot(&snapshot).unwrap();
    s.sync().unwrap();
    assert!(
        s.segments() < before,
        "segments below the snapshot are deleted"
    );
    assert_eq!(s.segments(), wal_files(dir));
    snapshot
}

#[test]
fn a_reopen_finds_the_snapshot_and_the_log_after_it_in_fewer_segments() {
    let dir = TempDir::new("snap-reopen");
    let snapshot = snapshotted(dir.path());
    let s = FileStorage::open_with(dir.path(), SMALL).unwrap();
    assert_eq!(s.snapshot().unwrap(), Some(snapshot));
    let entries = s.entries().unwrap();
    let first = entries.first().unwrap().index;
    assert!(
        first > 1 && first <= 201,
        "the log starts at or before 201: {first}"
    );
    assert_eq!(entries.last().unwrap().index, 300);
    assert!(crate::consensus::log::consecutive(&entries, first));
}

#[test]
fn the_log_continues_right_after_a_snapshot_past_its_end() {
    // A follower installs its leader's snapshot far past its own log.
    let dir = TempDir::new("snap-past");
    {
        let mut s = FileStorage::open_with(dir.path(), SMALL).unwrap();
        s.append(&run(1, 5)).unwrap();
        s.sync().unwrap();
        s.save_snapshot(&snap(100, 10)).unwrap();
        s.append(&run(101, 103)).unwrap();
        s.sync().unwrap();
    }
    let s = FileStorage::open_with(dir.path(), SMALL).unwrap();
    let after: Vec<Index> = s
        .entries()
        .unwrap()
        .iter()
        .map(|e| e.index)
        .filter(|&i| i > 100)
        .collect();
    assert_eq!(after, vec![101, 102, 103]);
}

#[test]
fn a_crash_before_the_log_records_the_snapshot_still_lets_the_log_go_on() {
    // The snapshot file is durable, its record in the log never was.
    let dir = TempDir::new("snap-unrecorded");
    {
        let mut s = FileStorage::open_with(dir.path(), SMALL).unwrap();
        s.append(&run(1, 5)).unwrap();
        s.sync().unwrap();
        s.save_snapshot(&snap(100, 10)).unwrap();
        // Dropped without a sync: the marker record is lost.
    }
    {
        let mut s = FileStorage::open_with(dir.path(), SMALL).unwrap();
        assert_eq!(s.snapshot().unwrap().map(|s| s.index), Some(100));
        s.append(&run(101, 101)).unwrap();
        s.sync().unwrap();
    }
    let s = FileStorage::open_with(dir.path(), SMALL).unwrap();
    assert_eq!(s.entries().unwrap().last().map(|e| e.index), Some(101));
}

fn corrupt_reason(dir: &Path) -> (PathBuf, String) {
    match FileStorage::open_with(dir, SMALL) {
        Err(StorageError::CorruptRecord { file, reason, .. }) => (file, reason),
        other => panic!("expected CorruptRecord, got {other:?}"),
    }
}

#[test]
fn a_snapshot_file_cut_short_is_an_error_naming_it() {
    let dir = TempDir::new("snap-cut");
    snapshotted(dir.path());
    let path = dir.path().join("snapshot");
    let len = fs::metadata(&path).unwrap().len();
    for keep in [len - 1, 60, 47, 0] {
        let bytes = fs::read(&path).unwrap();
        let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(keep).unwrap();
        let (file, reason) = corrupt_reason(dir.path());
        assert_eq!(file, path, "{reason}");
        fs::write(&path, bytes).unwrap();
    }
    assert!(
        FileStorage::open_with(dir.path(), SMALL).is_ok(),
        "whole again"
    );
}

#[test]
fn no_flipped_bit_in_a_snapshot_file_goes_unnoticed() {
    let dir = TempDir::new("snap-flip");
    {
        let mut s = FileStorage::open_with(dir.path(), SMALL).unwrap();
        s.append(&run(1, 3)).unwrap();
        s.sync().unwrap();
        s.save_snapshot(&snap(2, 40)).unwrap();
    }
    let path = dir.path().join("snapshot");
    let whole = fs::read(&path).unwrap();
    for bit in 0..whole.len() * 8 {
        let mut bytes = whole.clone();
        bytes[bit / 8] ^= 1 << (bit % 8);
        fs::write(&path, &bytes).unwrap();
        match FileStorage::open_with(dir.path(), SMALL) {
            Err(StorageError::CorruptRecord { .. } | StorageError::UnsupportedFormat { .. }) => {}
            other => panic!("bit {bit}: expected an error, got {other:?}"),
        }
    }
    fs::write(&path, &whole).unwrap();
    assert!(FileStorage::open_with(dir.path(), SMALL).is_ok());
}

#[test]
fn a_snapshot_of_a_newer_format_is_refused() {
    let dir = TempDir::new("snap-newer");
    snapshotted(dir.path());
    let path = dir.path().join("snapshot");
    let mut bytes = fs::read(&path).unwrap();
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..44]);
    bytes[44..48].copy_from_slice(&crc.to_le_bytes());
    fs::write(&path, &bytes).unwrap();
    match FileStorage::open_with(dir.path(), SMALL) {
        Err(StorageError::UnsupportedFormat { found: 2, .. }) => {}
        other => panic!("expected UnsupportedFormat, got {other:?}"),
    }
}

#[test]
fn a_missing_snapshot_file_is_an_error_when_the_log_needs_it() {
    let dir = TempDir::new("snap-missing");
    snapshotted(dir.path());
    fs::remove_file(dir.path().join("snapshot")).unwrap();
    let (_, reason) = corrupt_reason(dir.path());
    assert!(reason.contains("snapshot"), "{reason}");
}

#[test]
fn mem_storage_keeps_the_snapshot_and_the_log_after_it() {
    let mut s = MemStorage::new();
    s.append(&run(1, 10)).unwrap();
    s.save_snapshot(&snap(6, 3)).unwrap();
    assert_eq!(s.len(), 4);
    assert_eq!(s.snapshot().unwrap().map(|s| s.index), Some(6));
    s.append(&run(9, 12)).unwrap();
    let indexes: Vec<Index> = s.entries().unwrap().iter().map(|e| e.index).collect();
    assert_eq!(indexes, (7..=12).collect::<Vec<_>>());
    s.save_snapshot(&snap(20, 3)).unwrap();
    assert!(s.is_empty());
    s.append(&run(21, 21)).unwrap();
    assert!(s.append(&run(23, 23)).is_err(), "a gap is refused");
}

fn epoch_run(epoch: u64, from: Index, to: Index) -> Vec<Entry> {
    (from..=to)
        .map(|i| {
            Entry::new(
                epoch,
                i,
                EntryKind::Normal,
                Bytes::from(vec![i as u8; 1000]),
            )
        })
        .collect()
}

/// What a restarted Raft or ZAB node makes of `dir`: its log after the
/// snapshot, and the cut it must make durable first.
fn recover(dir: &Path) -> (FileStorage, crate::consensus::log::Log, Option<Index>) {
    let s = FileStorage::open_with(dir, SMALL).unwrap();
    let snapshot = s.snapshot().unwrap();
    let entries = s.entries().unwrap();
    let (log, cut) =
        crate::consensus::shell::recovered_log(snapshot.as_ref(), entries, 0, true).unwrap();
    (s, log, cut)
}

#[test]
fn what_a_node_acknowledges_after_an_interrupted_install_survives_the_next_restart() {
    // A follower's log of a deposed leader (epoch 2) meets the leader's
    // snapshot through 3 (epoch 3); it dies before the cut is durable.
    let dir = TempDir::new("snap-interrupted");
    {
        let mut s = FileStorage::open_with(dir.path(), SMALL).unwrap();
        s.append(&epoch_run(2, 1, 5)).unwrap();
        s.sync().unwrap();
        s.save_snapshot(&Snapshot {
            index: 3,
            epoch: 3,
            data: Bytes::new(),
        })
        .unwrap();
    }
    // Restart 1: recovery cuts after the snapshot; the node makes the cut
    // durable, then takes (and acknowledges) the leader's 4 and 5.
    {
        let (mut s, log, cut) = recover(dir.path());
        assert_eq!((log.last_index(), cut), (3, Some(4)));
        s.truncate_from(4).unwrap();
        s.append(&epoch_run(3, 4, 5)).unwrap();
        s.sync().unwrap();
    }
    // Restart 2: they are still there.
    let (_, log, cut) = recover(dir.path());
    assert_eq!((log.last_index(), cut), (5, None));
    assert_eq!(log.term(5), Some(3));
}

#[test]
fn segments_an_install_covers_stay_until_its_batch_is_durable() {
    // The conflicting entry ends a closed segment: deleting that segment
    // before the install's cut is durable would hide the conflict (the log
    // would start after it, with an older epoch than the snapshot's).
    let dir = TempDir::new("snap-keep-segments");
    let mut ends = Vec::new();
    {
        let mut s = FileStorage::open_with(dir.path(), SMALL).unwrap();
        for i in 1..=200 {
            let before = s.segments();
            s.append(&epoch_run(2, i, i)).unwrap();
            s.sync().unwrap();
            if s.segments() > before {
                ends.push(i - 1);
            }
        }
        let boundary = ends[1];
        let before = s.segments();
        s.save_snapshot(&Snapshot {
            index: boundary,
            epoch: 3,
            data: Bytes::new(),
        })
        .unwrap();
        assert_eq!(s.segments(), before, "nothing deleted before the sync");
    }
    let boundary = ends[1];
    let (_, log, cut) = recover(dir.path());
    assert_eq!((log.last_index(), cut), (boundary, Some(boundary + 1)));
}
