//! The snapshot file: the latest snapshot of the state machine, replaced
//! atomically (written to `snapshot.tmp`, synced, renamed over `snapshot`,
//! and the directory synced).
//!
//! Layout: `CNSOSNAP`, the format version (`u32 LE`), four zero bytes, the
//! index and epoch it covers through and the data's length (`u64 LE`
//! each), the data's CRC32C, the CRC32C of the 44 bytes before it (`u32
//! LE` each), then the data. A file shorter than its header says, or whose
//! checksums fail, is [`StorageError::CorruptRecord`]: a node never starts
//! from a snapshot it cannot trust.

use super::disk::{replace_file, Disk, DiskFile};
use super::StorageError;
use crate::consensus::Snapshot;
use std::path::Path;

/// The file's name in the data directory.
pub(crate) const SNAPSHOT_FILE: &str = "snapshot";
/// The temporary name it is written under.
pub(crate) const SNAPSHOT_TMP: &str = "snapshot.tmp";

const MAGIC: &[u8; 8] = b"CNSOSNAP";
const VERSION: u32 = 1;
const HEADER: usize = 48;

fn encode_header(snapshot: &Snapshot) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&snapshot.index.to_le_bytes());
    h[24..32].copy_from_slice(&snapshot.epoch.to_le_bytes());
    h[32..40].copy_from_slice(&(snapshot.data.len() as u64).to_le_bytes());
    h[40..44].copy_from_slice(&crc32c::crc32c(&snapshot.data).to_le_bytes());
    let own = crc32c::crc32c(&h[..44]);
    h[44..48].copy_from_slice(&own.to_le_bytes());
    h
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Writes `snapshot` to `dir` in place of the one there (the syncs only
/// when `durable`). Once it returns, a crash leaves this snapshot or (if
/// it failed) the previous one, never a mix.
///
/// # Errors
/// The device's error.
pub(crate) fn write<D: Disk>(
    disk: &D,
    dir: &Path,
    snapshot: &Snapshot,
    durable: bool,
) -> Result<(), StorageError> {
    let header = encode_header(snapshot);
    Ok(replace_file(
        disk,
        dir,
        SNAPSHOT_FILE,
        &[&header, &snapshot.data],
        durable,
    )?)
}

/// Reads the snapshot at `path`.
///
/// # Errors
/// [`StorageError::CorruptRecord`] for a file cut short or damaged,
/// [`StorageError::UnsupportedFormat`] for a newer version, or the
/// device's error.
pub(crate) fn read<D: Disk>(disk: &D, path: &Path) -> Result<Snapshot, StorageError> {
    let bytes = disk.open(path, false)?.read_all()?;
    let corrupt = |offset: usize, reason: String| StorageError::CorruptRecord {
        file: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    if bytes.len() < HEADER {
        return Err(corrupt(
            bytes.len(),
            format!("cut short: {} bytes, less than its header", bytes.len()),
        ));
    }
    if &bytes[..8] != MAGIC {
        return Err(corrupt(0, "not a consenso snapshot (bad magic)".into()));
    }
    if u32_at(&bytes, 44) != crc32c::crc32c(&bytes[..44]) {
        return Err(corrupt(0, "its header fails its checksum".into()));
    }
    let version = u32_at(&bytes, 8);
    if version != VERSION {
        return Err(StorageError::UnsupportedFormat {
            path: path.to_path_buf(),
            found: version,
            supported: VERSION,
        });
    }
    let len = u64_at(&bytes, 32);
    let have = (bytes.len() - HEADER) as u64;
    if have != len {
        return Err(corrupt(
            bytes.len(),
            format!("holds {have} bytes of data where its header says {len}"),
        ));
    }
    let data = &bytes[HEADER..];
    if crc32c::crc32c(data) != u32_at(&bytes, 40) {
        return Err(corrupt(HEADER, "its data fails its checksum".into()));
    }
    let (index, epoch) = (u64_at(&bytes, 16), u64_at(&bytes, 24));
    Ok(Snapshot {
        index,
        epoch,
        data: bytes::Bytes::from(bytes).slice(HEADER..),
    })
}
