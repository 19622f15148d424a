//! A fast, well-mixed 64-bit hash for keys and endpoint names.
//!
//! Not cryptographic and not DoS-resistant: keys choose endpoints, they do
//! not index attacker-sized tables. The mixing is a multiply-xorshift over
//! 8-byte words with a final avalanche (in the spirit of wyhash and the
//! murmur3 finalizer), stable across platforms and releases so the same key
//! maps to the same endpoint everywhere.

const K0: u64 = 0x9E37_79B9_7F4A_7C15;
const K1: u64 = 0xBF58_476D_1CE4_E5B9;
const K2: u64 = 0x94D0_49BB_1331_11EB;

/// The avalanche step: every input bit affects every output bit.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(K1);
    z = (z ^ (z >> 27)).wrapping_mul(K2);
    z ^ (z >> 31)
}

/// Hash of `bytes` under `seed`.
#[inline]
pub fn hash64(bytes: &[u8], seed: u64) -> u64 {
    let mut h = seed ^ K0 ^ (bytes.len() as u64).wrapping_mul(K1);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ mix64(u64::from_le_bytes(w)))
            .wrapping_mul(K0)
            .rotate_left(29);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h ^ mix64(u64::from_le_bytes(w) ^ 0xFF))
            .wrapping_mul(K0)
            .rotate_left(29);
    }
    mix64(h)
}

/// Hash of a `u64` key under `seed` (no byte slicing).
#[inline]
pub fn hash_u64(key: u64, seed: u64) -> u64 {
    mix64(key ^ mix64(seed ^ K0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_seed_dependent() {
        assert_eq!(hash64(b"hello", 1), hash64(b"hello", 1));
        assert_ne!(hash64(b"hello", 1), hash64(b"hello", 2));
        assert_ne!(hash64(b"hello", 1), hash64(b"hellp", 1));
        assert_ne!(hash64(b"", 1), hash64(b"\0", 1));
        assert_ne!(hash64(b"abcdefgh", 0), hash64(b"abcdefghi", 0));
    }

    #[test]
    fn bits_are_balanced() {
        let mut ones = [0u32; 64];
        for i in 0..10_000u64 {
            let h = hash64(&i.to_le_bytes(), 7);
            for (b, one) in ones.iter_mut().enumerate() {
                *one += ((h >> b) & 1) as u32;
            }
        }
        for (b, n) in ones.iter().enumerate() {
            assert!(
                (4_700..=5_300).contains(n),
                "bit {b} set {n} times of 10000"
            );
        }
    }
}
