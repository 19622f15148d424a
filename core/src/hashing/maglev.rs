//! Maglev hashing (Eisenbud et al., NSDI 2016): each endpoint walks its own
//! permutation of a prime-sized table and claims the next free slot in turn,
//! so every endpoint gets a near-equal share of slots and a lookup is one
//! table read. Weights give an endpoint proportionally more turns per round.

use super::hash::hash_u64;

/// The built lookup table. Immutable; rebuild to change endpoints.
#[derive(Debug, Clone)]
pub struct Maglev {
    table: Vec<u32>,
}

/// Smallest prime at or above `n`.
pub fn next_prime(n: usize) -> usize {
    let is_prime = |k: usize| {
        if k < 2 {
            return false;
        }
        let mut d = 2;
        while d * d <= k {
            if k.is_multiple_of(d) {
                return false;
            }
            d += 1;
        }
        true
    };
    let mut k = n.max(2);
    while !is_prime(k) {
        k += 1;
    }
    k
}

impl Maglev {
    /// Builds a table of prime size `size` for endpoints identified by
    /// `seeds` with `weights`.
    pub fn build(seeds: &[u64], weights: &[u32], size: usize) -> Maglev {
        let m = size as u64;
        let n = seeds.len();
        let offsets: Vec<u64> = seeds.iter().map(|&s| hash_u64(1, s) % m).collect();
        let skips: Vec<u64> = seeds
            .iter()
            .map(|&s| hash_u64(2, s) % (m - 1) + 1)
            .collect();
        let mut next = vec![0u64; n];
        let mut table = vec![u32::MAX; size];
        // Endpoint `i` claims the next free slot of its permutation.
        let mut claim = |i: usize, table: &mut [u32]| loop {
            let slot = ((offsets[i] + next[i] * skips[i]) % m) as usize;
            next[i] += 1;
            if table[slot] == u32::MAX {
                table[slot] = i as u32;
                return;
            }
        };
        // Every endpoint first takes one slot, however light (the caller
        // guarantees at least as many slots as endpoints): an endpoint with
        // no slot could never be found, not even as a fallback.
        let mut filled = n.min(size);
        for i in 0..filled {
            claim(i, &mut table);
        }
        // Weighted turns: each round an endpoint earns weight/max_w of a
        // turn and takes a slot for every whole turn it has saved up.
        let max_w = weights.iter().copied().max().unwrap_or(1).max(1) as u64;
        let mut credit = vec![0u64; n];
        'fill: while filled < size {
            for i in 0..n {
                credit[i] += weights[i] as u64;
                while credit[i] >= max_w {
                    credit[i] -= max_w;
                    claim(i, &mut table);
                    filled += 1;
                    if filled == size {
                        break 'fill;
                    }
                }
            }
        }
        Maglev { table }
    }

    /// The endpoint for key hash `h`.
    #[inline]
    pub fn lookup(&self, h: u64) -> usize {
        self.table[(h % self.table.len() as u64) as usize] as usize
    }

    /// Up to `n` distinct endpoints, walking the table from `h`'s slot.
    pub fn lookup_n(&self, h: u64, n: usize, endpoints: usize, out: &mut Vec<usize>) {
        out.clear();
        let want = n.min(endpoints);
        let m = self.table.len();
        let mut slot = (h % m as u64) as usize;
        for _ in 0..m {
            if out.len() == want {
                break;
            }
            let e = self.table[slot] as usize;
            if !out.contains(&e) {
                out.push(e);
            }
            slot = if slot + 1 == m { 0 } else { slot + 1 };
        }
    }
}
