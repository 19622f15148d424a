//! How bytes are framed on disk: write-ahead-log records and small
//! checksummed files. Every checksum is CRC32C (hardware-accelerated where
//! the CPU has it), taken per record over its payload, not chained: a
//! record stands or falls alone.
//!
//! A record is `len: u32 LE`, `!len: u32 LE` (the length again, inverted),
//! `crc32c(payload): u32 LE`, `len` bytes of payload, then the end mark
//! `0xA5`. A length of zero never occurs, so zeros (a preallocated,
//! never-written area) mark the end of the data.
//!
//! Telling a torn write from damage: a write the disk did not finish
//! leaves zeros where its bytes were to go (a missing end mark, a header
//! cut short, or a whole zero sector inside the record), while a flipped
//! bit leaves the length pair disagreeing, or the end mark and every
//! sector in place with a checksum that fails. A bad record of the first
//! kind is [`ScanEnd::Torn`], of the second [`ScanEnd::Damaged`]: no
//! single flipped bit is taken for a torn write, unless the record's own
//! data holds a whole aligned sector of zeros. The log also checks that
//! no complete batch was written after a torn record (only the last batch
//! can be unfinished), so that zeros where synced data was (a flipped bit
//! in a segment's padding, a lost sector) are damage, not a torn write.

/// Bytes before a record's payload.
pub(crate) const RECORD_HEADER: usize = 12;

/// Bytes after a record's payload (the end mark).
pub(crate) const RECORD_TRAILER: usize = 1;

const END_MARK: u8 = 0xA5;

/// The sector size torn writes are assumed to respect at least.
const SECTOR: usize = 512;

/// Largest payload a record may declare; anything larger is damage.
pub(crate) const MAX_RECORD: usize = 1 << 30;

/// Bytes a record of `payload_len` bytes takes.
pub(crate) fn record_size(payload_len: usize) -> usize {
    RECORD_HEADER + payload_len + RECORD_TRAILER
}

/// Appends one record holding `payload` to `out`.
pub(crate) fn put_record(out: &mut Vec<u8>, payload: &[u8]) {
    debug_assert!(!payload.is_empty() && payload.len() <= MAX_RECORD);
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out.push(END_MARK);
}

/// How a scan of a run of records ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ScanEnd {
    /// The data ended cleanly at this offset: only zeros (or nothing)
    /// follow.
    Clean(usize),
    /// The record at this offset was not finished (zeros where its bytes
    /// were to go): a write cut short, or one an unsynced later write
    /// overtook. Nothing from here on was ever synced.
    Torn(usize),
    /// The record at this offset is damaged in a way no unfinished write
    /// explains.
    Damaged(usize, &'static str),
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads the records of `buf` from `start` (offsets in `buf` are file
/// offsets), calling `each(offset, payload)` for every whole one, until
/// the data ends or a record is bad.
///
/// # Errors
/// What `each` returned, with the record's offset.
pub(crate) fn scan<'a, E>(
    buf: &'a [u8],
    start: usize,
    mut each: impl FnMut(usize, &'a [u8]) -> Result<(), E>,
) -> Result<ScanEnd, (usize, E)> {
    let mut off = start;
    loop {
        let rest = &buf[off.min(buf.len())..];
        if rest.iter().all(|&b| b == 0) {
            return Ok(ScanEnd::Clean(off));
        }
        if rest.len() < RECORD_HEADER {
            // A header cut short by the end of the file.
            return Ok(ScanEnd::Torn(off));
        }
        let (len, inv, crc) = (u32_at(rest, 0), u32_at(rest, 4), u32_at(rest, 8));
        if len != !inv || len == 0 || len as usize > MAX_RECORD {
            // A header whose end is zeros was cut short; one whose length
            // pair disagrees otherwise was damaged.
            let torn = crc == 0 && rest[7] == 0;
            return Ok(if torn {
                ScanEnd::Torn(off)
            } else {
                ScanEnd::Damaged(off, "record header damaged")
            });
        }
        let whole = record_size(len as usize);
        if whole > rest.len() {
            return Ok(ScanEnd::Torn(off));
        }
        let payload = &rest[RECORD_HEADER..whole - RECORD_TRAILER];
        if rest[whole - 1] == END_MARK && crc32c::crc32c(payload) == crc {
            each(off, payload).map_err(|e| (off, e))?;
            off += whole;
            continue;
        }
        let unfinished = rest[whole - 1] == 0 || has_zero_sector(buf, off, off + whole - 1);
        return Ok(if unfinished {
            ScanEnd::Torn(off)
        } else if rest[whole - 1] != END_MARK {
            ScanEnd::Damaged(off, "record end mark damaged")
        } else {
            ScanEnd::Damaged(off, "checksum mismatch")
        });
    }
}

/// The offsets of `buf`, from `from` on, where a whole record starts
/// (its length pair agrees, its checksum and end mark hold), with its
/// payload. Looks at every byte offset outside the whole records it finds:
/// for deciding whether anything was written after a bad record, not for
/// reading a log.
pub(crate) fn whole_records_in(buf: &[u8], from: usize) -> impl Iterator<Item = (usize, &[u8])> {
    let mut p = from;
    std::iter::from_fn(move || {
        while p + RECORD_HEADER + RECORD_TRAILER <= buf.len() {
            let at = p;
            p += 1;
            let (len, inv, crc) = (u32_at(buf, at), u32_at(buf, at + 4), u32_at(buf, at + 8));
            if len == 0 || len != !inv || len as usize > MAX_RECORD {
                continue;
            }
            let Some(end) = at.checked_add(record_size(len as usize)) else {
                continue;
            };
            if end > buf.len() || buf[end - 1] != END_MARK {
                continue;
            }
            let payload = &buf[at + RECORD_HEADER..end - RECORD_TRAILER];
            if crc32c::crc32c(payload) == crc {
                // Whatever a whole record's payload holds is not looked
                // at as records of its own.
                p = end;
                return Some((at, payload));
            }
        }
        None
    })
}

/// True when a whole sector of `buf` lies in `[from, to)` and is zeros.
fn has_zero_sector(buf: &[u8], from: usize, to: usize) -> bool {
    let first = from.div_ceil(SECTOR) * SECTOR;
    (first..to)
        .step_by(SECTOR)
        .take_while(|s| s + SECTOR <= to)
        .any(|s| buf[s..s + SECTOR].iter().all(|&b| b == 0))
}

/// A small file that holds one checksummed value: `magic` (8 bytes),
/// `version: u32 LE`, then one record.
pub(crate) fn encode_small(magic: &[u8; 8], version: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + payload.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_le_bytes());
    put_record(&mut out, payload);
    out
}

/// Why a small file did not decode.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SmallFileError {
    /// It does not start with the expected magic.
    NotOurs,
    /// Its version is newer than this build reads.
    Version(u32),
    /// It is short or its checksum fails.
    Damaged(&'static str),
}

/// The payload of a file [`encode_small`] wrote.
///
/// # Errors
/// [`SmallFileError`].
pub(crate) fn decode_small<'a>(
    magic: &[u8; 8],
    supported: u32,
    bytes: &'a [u8],
) -> Result<&'a [u8], SmallFileError> {
    if bytes.len() < 12 || &bytes[..8] != magic {
        return Err(SmallFileError::NotOurs);
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version > supported || version == 0 {
        return Err(SmallFileError::Version(version));
    }
    let mut payload = None;
    let end = scan(bytes, 12, |_, p| {
        payload = Some(p);
        Ok::<(), ()>(())
    });
    match (end, payload) {
        (Ok(ScanEnd::Clean(end)), Some(p)) if end == bytes.len() => Ok(p),
        (Ok(ScanEnd::Clean(_)), _) => Err(SmallFileError::Damaged("no record, or zeros after it")),
        (Ok(ScanEnd::Torn(_) | ScanEnd::Damaged(..)), _) | (Err(_), _) => {
            Err(SmallFileError::Damaged("checksum mismatch or cut short"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(payloads: &[&[u8]]) -> Vec<u8> {
        let mut buf = Vec::new();
        for p in payloads {
            put_record(&mut buf, p);
        }
        buf
    }

    fn collect(buf: &[u8]) -> (Vec<Vec<u8>>, ScanEnd) {
        let mut got = Vec::new();
        let end = scan(buf, 0, |_, p| {
            got.push(p.to_vec());
            Ok::<(), ()>(())
        })
        .unwrap();
        (got, end)
    }

    #[test]
    fn whole_records_then_zeros_end_cleanly() {
        let mut buf = records(&[b"one", b"two"]);
        let end = buf.len();
        buf.resize(end + 100, 0);
        let (got, how) = collect(&buf);
        assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(how, ScanEnd::Clean(end));
    }

    #[test]
    fn a_last_record_cut_at_any_byte_is_torn() {
        let buf = records(&[b"first", b"second record"]);
        let second = record_size(5);
        for cut in second + 1..buf.len() {
            // Cut short, or the rest zeroed as in a preallocated file.
            let mut zeroed = buf.clone();
            zeroed[cut..].iter_mut().for_each(|b| *b = 0);
            zeroed.extend_from_slice(&[0; 64]);
            for b in [&buf[..cut], &zeroed[..]] {
                let (got, how) = collect(b);
                assert_eq!(got, vec![b"first".to_vec()], "cut at {cut}");
                assert_eq!(how, ScanEnd::Torn(second), "cut at {cut}");
            }
        }
    }

    #[test]
    fn no_flipped_bit_in_any_record_passes_for_a_torn_write() {
        let mut buf = records(&[b"first", b"second", b"third, the last one"]);
        buf.extend_from_slice(&[0; 64]);
        let data_end = buf.len() - 64;
        for bit in 0..data_end * 8 {
            let mut bad = buf.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let (_, how) = collect(&bad);
            assert!(matches!(how, ScanEnd::Damaged(..)), "bit {bit}: {how:?}");
        }
    }

    #[test]
    fn a_lost_write_overtaken_by_a_later_one_is_torn() {
        let mut buf = records(&[b"first", b"second", b"third"]);
        let second = record_size(5);
        // The second write never reached the disk; the third did.
        buf[second..second + record_size(6)]
            .iter_mut()
            .for_each(|b| *b = 0);
        let (got, how) = collect(&buf);
        assert_eq!(got, vec![b"first".to_vec()]);
        assert_eq!(how, ScanEnd::Torn(second));
    }

    #[test]
    fn a_zero_sector_inside_a_record_is_a_torn_write() {
        let payload = vec![7u8; 3000];
        let mut buf = records(&[&payload]);
        buf[1024..1536].iter_mut().for_each(|b| *b = 0);
        assert_eq!(collect(&buf).1, ScanEnd::Torn(0));
    }

    #[test]
    fn small_files_reject_other_files_newer_versions_and_flipped_bits() {
        let magic = b"TESTFILE";
        let file = encode_small(magic, 1, b"payload");
        assert_eq!(decode_small(magic, 1, &file), Ok(&b"payload"[..]));
        assert_eq!(
            decode_small(b"OTHERMAG", 1, &file),
            Err(SmallFileError::NotOurs)
        );
        let newer = encode_small(magic, 2, b"payload");
        assert_eq!(
            decode_small(magic, 1, &newer),
            Err(SmallFileError::Version(2))
        );
        for bit in 12 * 8..file.len() * 8 {
            let mut bad = file.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                matches!(
                    decode_small(magic, 1, &bad),
                    Err(SmallFileError::Damaged(_))
                ),
                "bit {bit}"
            );
        }
        assert!(decode_small(magic, 1, &file[..file.len() - 1]).is_err());
    }
}
