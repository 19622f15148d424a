//! Compact wire form of a run of consecutive log entries, for any protocol's
//! messages (`#[serde(with = "entry_codec")]` on a `Vec<Entry>` field).
//!
//! Layout: the first index, then `(epoch, epoch - origin, kind, length)` per
//! entry (the difference is 0, one byte, except for re-proposed values), then all
//! payloads as one byte string. Decoding copies the payloads once into one
//! buffer and hands each entry a slice of it, so a batch of N entries costs
//! one allocation for data instead of N. Indexes are implicit (consecutive),
//! so a decoded batch is always contiguous.

use crate::types::{Entry, EntryKind, Epoch, Index};
use bytes::Bytes;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};
use std::fmt;

struct Metas<'a>(&'a [Entry]);

impl Serialize for Metas<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|e| {
            (
                e.epoch,
                e.epoch.saturating_sub(e.origin),
                e.kind,
                e.data.len() as u64,
            )
        }))
    }
}

struct Blob<'a>(&'a [Entry]);

impl Serialize for Blob<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            [] => s.serialize_bytes(&[]),
            [one] => s.serialize_bytes(&one.data),
            many => {
                let total = many.iter().map(|e| e.data.len()).sum();
                let mut buf = Vec::with_capacity(total);
                for e in many {
                    buf.extend_from_slice(&e.data);
                }
                s.serialize_bytes(&buf)
            }
        }
    }
}

/// Serializes consecutive entries (as the field attribute requires).
///
/// # Errors
/// The serializer's error; also when the entries are not consecutive or an
/// entry's origin is after its epoch.
pub fn serialize<S: Serializer>(entries: &[Entry], s: S) -> Result<S::Ok, S::Error> {
    if entries.windows(2).any(|w| w[1].index != w[0].index + 1) {
        return Err(serde::ser::Error::custom("entries are not consecutive"));
    }
    if entries.iter().any(|e| e.origin > e.epoch) {
        return Err(serde::ser::Error::custom("entry origin after its epoch"));
    }
    let first = entries.first().map_or(0, |e| e.index);
    let mut t = s.serialize_tuple(3)?;
    t.serialize_element(&first)?;
    t.serialize_element(&Metas(entries))?;
    t.serialize_element(&Blob(entries))?;
    t.end()
}

struct BlobBuf(Vec<u8>);

impl<'de> Deserialize<'de> for BlobBuf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BlobBuf;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("entry payload bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<BlobBuf, E> {
                Ok(BlobBuf(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<BlobBuf, E> {
                Ok(BlobBuf(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<BlobBuf, A::Error> {
                let mut v = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    v.push(b);
                }
                Ok(BlobBuf(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// Deserializes what [`serialize`] wrote.
///
/// # Errors
/// When the lengths do not add up to the payload bytes, or an index would
/// overflow.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Entry>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<Entry>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an entry batch")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Entry>, A::Error> {
            let missing = || de::Error::custom("truncated entry batch");
            let first: Index = seq.next_element()?.ok_or_else(missing)?;
            let metas: Vec<(Epoch, Epoch, EntryKind, u64)> =
                seq.next_element()?.ok_or_else(missing)?;
            let blob: BlobBuf = seq.next_element()?.ok_or_else(missing)?;
            let total = metas
                .iter()
                .try_fold(0u64, |acc, m| acc.checked_add(m.3))
                .ok_or_else(|| de::Error::custom("entry lengths overflow"))?;
            if total != blob.0.len() as u64 {
                return Err(de::Error::custom(format!(
                    "entry lengths add up to {total} but {} payload bytes came",
                    blob.0.len()
                )));
            }
            if !metas.is_empty() && (first == 0 || first.checked_add(metas.len() as u64).is_none())
            {
                return Err(de::Error::custom("entry index out of range"));
            }
            let blob = Bytes::from(blob.0);
            let mut at = 0usize;
            let mut out = Vec::with_capacity(metas.len());
            for (i, (epoch, age, kind, len)) in metas.into_iter().enumerate() {
                let origin = epoch
                    .checked_sub(age)
                    .ok_or_else(|| de::Error::custom("entry origin after its epoch"))?;
                let len = len as usize;
                out.push(Entry {
                    origin,
                    ..Entry::new(epoch, first + i as u64, kind, blob.slice(at..at + len))
                });
                at += len;
            }
            Ok(out)
        }
    }
    d.deserialize_tuple(3, V)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Wrap(#[serde(with = "super")] Vec<Entry>);

    fn e(index: Index, data: &'static [u8]) -> Entry {
        Entry::new(3, index, EntryKind::Normal, Bytes::from_static(data))
    }

    #[test]
    fn round_trips_and_shares_one_buffer() {
        let batch = Wrap(vec![e(5, b"ab"), e(6, b""), e(7, b"xyz")]);
        let bytes = postcard::to_allocvec(&batch).unwrap();
        let back: Wrap = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, batch);
        let empty: Wrap =
            postcard::from_bytes(&postcard::to_allocvec(&Wrap(vec![])).unwrap()).unwrap();
        assert!(empty.0.is_empty());
    }

    #[test]
    fn lengths_that_do_not_add_up_are_rejected() {
        let bytes = postcard::to_allocvec(&Wrap(vec![e(1, b"abc")])).unwrap();
        let mut bad = bytes.clone();
        // The last byte of the metadata is the length 3; claim 4.
        let pos = bytes.len() - 5;
        assert_eq!(bad[pos], 3);
        bad[pos] = 4;
        assert!(postcard::from_bytes::<Wrap>(&bad).is_err());
    }

    #[test]
    fn a_re_proposed_entry_keeps_its_origin_and_a_later_origin_is_refused() {
        let mut moved = e(2, b"x");
        moved.epoch = 9;
        let batch = Wrap(vec![e(1, b""), moved]);
        let back: Wrap = postcard::from_bytes(&postcard::to_allocvec(&batch).unwrap()).unwrap();
        assert_eq!(back.0[1].origin, 3);
        assert_eq!(back.0[1].epoch, 9);
        let mut ahead = e(1, b"");
        ahead.origin = 4;
        assert!(postcard::to_allocvec(&Wrap(vec![ahead])).is_err());
    }

    #[test]
    fn gaps_cannot_be_encoded() {
        assert!(postcard::to_allocvec(&Wrap(vec![e(1, b"a"), e(3, b"b")])).is_err());
    }
}
