//! How bytes are framed on disk: write-ahead-log records and small
//! checksummed files. Every checksum is CRC32C (hardware-accelerated where
//! the CPU has it), taken per record over its payload, not chained: a
//! record stands or falls alone, and recovery tells a torn last write from
//! damage before it by what follows the bad record (see [`scan`]).
//!
//! A record is `len: u32 LE`, `crc32c(payload): u32 LE`, then `len` bytes
//! of payload. A length of zero never occurs in a record, so zeros (a
//! preallocated, never-written area) mark the end of the data.

/// Bytes before a record's payload.
pub(crate) const RECORD_HEADER: usize = 8;

/// Largest payload a record may declare; anything larger is damage.
pub(crate) const MAX_RECORD: usize = 1 << 30;

/// Appends one record holding `payload` to `out`.
pub(crate) fn put_record(out: &mut Vec<u8>, payload: &[u8]) {
    debug_assert!(!payload.is_empty() && payload.len() <= MAX_RECORD);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// How a scan of a run of records ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ScanEnd {
    /// The data ended cleanly at this offset (end of buffer, or zeros).
    Clean(usize),
    /// The record at this offset is damaged and only zeros (or nothing)
    /// follow where it claims to end: what a write cut short by a crash
    /// leaves.
    Torn(usize),
    /// The record at this offset is damaged and data follows it: the
    /// damage is not a torn last write.
    Damaged(usize, &'static str),
}

/// Reads the records of `buf` from `start`, calling `each(offset,
/// payload)` for every whole one, until the data ends or a record is bad.
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
        if rest.len() < RECORD_HEADER {
            return Ok(if rest.iter().all(|&b| b == 0) {
                ScanEnd::Clean(off)
            } else {
                ScanEnd::Torn(off)
            });
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len == 0 && crc == 0 {
            return Ok(if rest.iter().all(|&b| b == 0) {
                ScanEnd::Clean(off)
            } else {
                ScanEnd::Damaged(off, "data after the end marker")
            });
        }
        let whole = RECORD_HEADER + len;
        let bad = if len == 0 || len > MAX_RECORD {
            Some("impossible record length")
        } else if whole > rest.len() {
            Some("record runs past the end of the file")
        } else if crc32c::crc32c(&rest[RECORD_HEADER..whole]) != crc {
            Some("checksum mismatch")
        } else {
            None
        };
        let Some(reason) = bad else {
            each(off, &rest[RECORD_HEADER..whole]).map_err(|e| (off, e))?;
            off += whole;
            continue;
        };
        // Torn: only zeros follow where the record claims to end, and, when
        // it claims to run past the end of the data, no whole record starts
        // anywhere after it (a damaged length must not hide the records
        // that follow).
        let past_end = whole > rest.len();
        let after = &rest[whole.min(rest.len())..];
        let torn = reason != "impossible record length"
            && after.iter().all(|&b| b == 0)
            && !(past_end && any_record_in(&rest[1..]));
        return Ok(if torn {
            ScanEnd::Torn(off)
        } else {
            ScanEnd::Damaged(off, reason)
        });
    }
}

/// True when a whole, checksummed record starts at any offset of `buf`.
fn any_record_in(buf: &[u8]) -> bool {
    (0..buf.len().saturating_sub(RECORD_HEADER)).any(|p| {
        let h = &buf[p..p + RECORD_HEADER];
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        len > 0
            && len <= buf.len() - p - RECORD_HEADER
            && crc32c::crc32c(&buf[p + RECORD_HEADER..p + RECORD_HEADER + len]) == crc
    })
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
        (Ok(ScanEnd::Clean(_)), Some(_)) => Err(SmallFileError::Damaged("data after the record")),
        (Ok(ScanEnd::Clean(_)), None) => Err(SmallFileError::Damaged("no record")),
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
    fn a_last_record_cut_at_any_byte_is_torn_not_damaged() {
        let buf = records(&[b"first", b"second record"]);
        let second = RECORD_HEADER + 5;
        for cut in second + 1..buf.len() {
            // Cut short, or the rest zeroed as in a preallocated file.
            let mut zeroed = buf.clone();
            zeroed[cut..].iter_mut().for_each(|b| *b = 0);
            for b in [&buf[..cut], &zeroed[..]] {
                let (got, how) = collect(b);
                assert_eq!(got, vec![b"first".to_vec()], "cut at {cut}");
                assert!(
                    matches!(how, ScanEnd::Torn(o) | ScanEnd::Clean(o) if o == second),
                    "cut at {cut}: {how:?}"
                );
            }
        }
    }

    #[test]
    fn a_flipped_bit_before_the_last_record_is_damage() {
        let buf = records(&[b"first", b"second", b"third"]);
        for byte in 0..RECORD_HEADER + 5 {
            let mut bad = buf.clone();
            bad[byte] ^= 0x10;
            let (_, how) = collect(&bad);
            assert!(
                matches!(how, ScanEnd::Damaged(0, _)),
                "byte {byte}: {how:?}"
            );
        }
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
