//! Ketama-style consistent hash ring: each endpoint owns `vnodes × weight`
//! points on a 64-bit circle; a key goes to the owner of the first point at
//! or after its hash. A table over the top 16 bits of the circle narrows
//! every lookup to a handful of points, so lookups cost a few comparisons
//! instead of a full binary search.

use super::hash::hash_u64;

/// The built ring. Immutable; rebuild to change endpoints.
#[derive(Debug, Clone)]
pub struct Ring {
    points: Vec<u64>,
    owners: Vec<u32>,
    /// `starts[b]` is the first point whose top 16 bits are at least `b`.
    starts: Vec<u32>,
}

const BUCKET_BITS: u32 = 16;

impl Ring {
    /// Builds a ring; `seeds[i]` identifies endpoint `i` (a hash of its name)
    /// and `weights[i]` scales its `vnodes` points.
    pub fn build(seeds: &[u64], weights: &[u32], vnodes: u32) -> Ring {
        let mut pts: Vec<(u64, u32)> = Vec::new();
        for (i, (&seed, &w)) in seeds.iter().zip(weights).enumerate() {
            for v in 0..(vnodes as u64 * w as u64) {
                pts.push((hash_u64(v, seed), i as u32));
            }
        }
        pts.sort_unstable();
        let points: Vec<u64> = pts.iter().map(|p| p.0).collect();
        let owners: Vec<u32> = pts.iter().map(|p| p.1).collect();
        let buckets = 1usize << BUCKET_BITS;
        let mut starts = Vec::with_capacity(buckets + 1);
        let mut j = 0usize;
        for b in 0..=buckets as u64 {
            while j < points.len() && (points[j] >> (64 - BUCKET_BITS)) < b {
                j += 1;
            }
            starts.push(j as u32);
        }
        Ring {
            points,
            owners,
            starts,
        }
    }

    /// Position in `points` of the first point at or after `h` (wrapping).
    #[inline]
    fn position(&self, h: u64) -> usize {
        let b = (h >> (64 - BUCKET_BITS)) as usize;
        let (lo, hi) = (self.starts[b] as usize, self.starts[b + 1] as usize);
        let within = self.points[lo..hi].partition_point(|&p| p < h);
        let pos = lo + within;
        if pos == self.points.len() {
            0
        } else {
            pos
        }
    }

    /// The endpoint for key hash `h`.
    #[inline]
    pub fn lookup(&self, h: u64) -> usize {
        self.owners[self.position(h)] as usize
    }

    /// Up to `n` distinct endpoints in ring order from `h`.
    pub fn lookup_n(&self, h: u64, n: usize, endpoints: usize, out: &mut Vec<usize>) {
        out.clear();
        let want = n.min(endpoints);
        let mut pos = self.position(h);
        for _ in 0..self.points.len() {
            if out.len() == want {
                break;
            }
            let e = self.owners[pos] as usize;
            if !out.contains(&e) {
                out.push(e);
            }
            pos = if pos + 1 == self.points.len() {
                0
            } else {
                pos + 1
            };
        }
    }
}
