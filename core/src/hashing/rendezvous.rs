//! Rendezvous (highest random weight) hashing, weighted: every endpoint
//! scores the key as `-weight / ln(u)` for a uniform `u` drawn from the
//! hash of (key, endpoint), and the highest score wins (Schindelhauer and
//! Schomaker's weighted form). Adding or removing an endpoint moves only the
//! keys it wins or won, and the top `k` scores give `k` distinct replicas.

use super::hash::hash_u64;

/// Score of endpoint `seed` with `weight` for key hash `h`.
#[inline]
fn score(h: u64, seed: u64, weight: u32) -> f64 {
    // u in (0, 1): 53 random bits, never 0.
    let u = ((hash_u64(h, seed) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -(weight as f64) / u.ln()
}

/// The endpoint with the highest score. With equal weights the score is a
/// monotonic function of the hash, so the hash itself is compared (no
/// logarithm).
pub fn lookup(h: u64, seeds: &[u64], weights: &[u32], uniform: bool) -> usize {
    if uniform {
        let mut best = 0;
        let mut best_hash = 0u64;
        for (i, &s) in seeds.iter().enumerate() {
            let x = hash_u64(h, s);
            if x >= best_hash {
                best = i;
                best_hash = x;
            }
        }
        return best;
    }
    let mut best = 0;
    let mut best_score = f64::NEG_INFINITY;
    for (i, (&s, &w)) in seeds.iter().zip(weights).enumerate() {
        let sc = score(h, s, w);
        if sc > best_score {
            best = i;
            best_score = sc;
        }
    }
    best
}

/// The `n` endpoints with the highest scores, best first.
pub fn lookup_n(h: u64, n: usize, seeds: &[u64], weights: &[u32], out: &mut Vec<usize>) {
    out.clear();
    let mut scored: Vec<(f64, usize)> = seeds
        .iter()
        .zip(weights)
        .enumerate()
        .map(|(i, (&s, &w))| (score(h, s, w), i))
        .collect();
    let k = n.min(scored.len());
    if k == 0 {
        return;
    }
    scored.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
    scored.truncate(k);
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    out.extend(scored.into_iter().map(|(_, i)| i));
}
