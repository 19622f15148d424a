//! The order in which weighted round robin visits endpoints: turn `t` of a
//! cycle of `Σ weights` turns names one endpoint, and every cycle gives each
//! endpoint exactly its weight in turns. Immutable once built; a pick reads
//! it without a lock.

/// Largest `endpoints × Σ weights` for which the smooth cycle is built (its
/// build costs that many steps: about 16 million, 10 ms on a slow machine).
/// Below it a turn is one table read; above it, the strided order costs a
/// binary search per turn but builds in linear time.
const MAX_SMOOTH_WORK: u64 = 1 << 24;

/// Golden-ratio fraction of the cycle: a stride near it spreads the turns of
/// every endpoint evenly over the cycle (a Weyl sequence).
const GOLDEN: f64 = 0.618_033_988_749_894_9;

/// A weighted round-robin order.
#[derive(Debug, Default)]
pub(super) enum Turns {
    /// Equal weights: a plain rotation, no table.
    #[default]
    Rotation,
    /// nginx's smooth weighted cycle, one entry per turn (weights 5, 1, 1
    /// give a a b a c a a).
    Smooth(Vec<u32>),
    /// For weights whose smooth cycle would be too long to build: turn `t`
    /// lands on position `t × stride mod total` of the weights laid end to
    /// end (`ends` are the running sums). Memory and build are linear in
    /// the endpoints, whatever the weights; a turn costs a binary search.
    Stride {
        ends: Vec<u64>,
        total: u64,
        stride: u64,
    },
}

impl Turns {
    /// The order for `weights` (each at least 1), divided by their greatest
    /// common divisor first.
    pub(super) fn build(weights: &[u32]) -> Turns {
        if weights.windows(2).all(|w| w[0] == w[1]) {
            return Turns::Rotation;
        }
        let g = weights.iter().fold(0, |g, &w| gcd(g, w)).max(1);
        let weights: Vec<u64> = weights.iter().map(|&w| u64::from(w / g)).collect();
        // At most 2^32 endpoints of weight below 2^32: no overflow.
        let total: u64 = weights.iter().sum();
        let work = (weights.len() as u64).saturating_mul(total);
        if work <= MAX_SMOOTH_WORK {
            return Turns::Smooth(smooth_cycle(&weights, total));
        }
        let ends = weights
            .iter()
            .scan(0u64, |sum, &w| {
                *sum += w;
                Some(*sum)
            })
            .collect();
        Turns::Stride {
            ends,
            total,
            stride: coprime_stride(total),
        }
    }

    /// Turns in one cycle (`None` for a plain rotation).
    #[cfg(test)]
    fn cycle(&self) -> Option<u64> {
        match self {
            Turns::Rotation => None,
            Turns::Smooth(c) => Some(c.len() as u64),
            Turns::Stride { total, .. } => Some(*total),
        }
    }

    /// The endpoint of turn `t` (any `t`; the order repeats every cycle).
    /// For a plain rotation, the caller takes `t mod n` itself.
    #[inline]
    pub(super) fn at(&self, t: u64) -> usize {
        match self {
            Turns::Rotation => 0,
            Turns::Smooth(c) => c[(t % c.len() as u64) as usize] as usize,
            Turns::Stride {
                ends,
                total,
                stride,
            } => {
                let t = t % total;
                // Both factors below 2^32 (the usual case): no 128-bit division.
                let pos = if *total <= u64::from(u32::MAX) {
                    t * stride % total
                } else {
                    (u128::from(t) * u128::from(*stride) % u128::from(*total)) as u64
                };
                ends.partition_point(|&end| end <= pos)
            }
        }
    }
}

/// One cycle of nginx's smooth weighted round robin.
fn smooth_cycle(weights: &[u64], total: u64) -> Vec<u32> {
    // Bounded by MAX_SMOOTH_WORK, so every sum fits an i64.
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..weights.len() {
            current[i] += weights[i] as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total as i64;
        out.push(best as u32);
    }
    out
}

/// A stride near `total / φ` that shares no factor with `total`, so that
/// `t × stride mod total` visits every position once per cycle.
fn coprime_stride(total: u64) -> u64 {
    let mut s = ((total as f64 * GOLDEN) as u64).clamp(1, total.max(1));
    while gcd64(s, total) != 1 {
        s = if s + 1 >= total { 1 } else { s + 1 };
    }
    s
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn gcd64(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd64(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::Turns;

    fn counts(turns: &Turns, n: usize, from: u64) -> Vec<u64> {
        let cycle = turns.cycle().unwrap();
        let mut c = vec![0u64; n];
        for t in from..from + cycle {
            c[turns.at(t)] += 1;
        }
        c
    }

    #[test]
    fn small_weights_get_the_smooth_cycle() {
        let turns = Turns::build(&[5, 1, 1]);
        assert!(matches!(turns, Turns::Smooth(_)));
        let seq: Vec<usize> = (0..7).map(|t| turns.at(t)).collect();
        assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0]);
        assert!(matches!(Turns::build(&[3, 3]), Turns::Rotation));
    }

    #[test]
    fn large_weights_get_exact_shares_in_linear_memory() {
        let weights: Vec<u32> = (0..300).map(|i| 10_000 + (i % 2)).collect();
        let turns = Turns::build(&weights);
        let Turns::Stride { ends, total, .. } = &turns else {
            panic!("expected the stride order, got {turns:?}");
        };
        assert_eq!(ends.len(), 300);
        assert_eq!(*total, 300 * 10_000 + 150);
        // Every cycle, wherever it starts, gives each endpoint its weight.
        for from in [0, 17, u64::MAX - 4 * 1_000_000] {
            let c = counts(&turns, 300, from);
            for (i, &k) in c.iter().enumerate() {
                assert_eq!(k, u64::from(weights[i]), "endpoint {i} from {from}");
            }
        }
        // Turns of one endpoint are spread out, not bunched: in any window
        // of a tenth of the cycle an endpoint gets about a tenth of its turns.
        let mut seen = vec![0u64; 300];
        for t in 0..*total / 10 {
            seen[turns.at(t)] += 1;
        }
        assert!(
            seen.iter().all(|&k| (800..=1_200).contains(&k)),
            "{:?}",
            &seen[..8]
        );
    }

    #[test]
    fn extreme_weights_are_accepted() {
        let turns = Turns::build(&[u32::MAX, 1, u32::MAX - 1]);
        let cycle = turns.cycle().unwrap();
        assert_eq!(cycle, 2 * u64::from(u32::MAX));
        // The heavy two share the turns evenly (the products need 128 bits).
        let mut c = [0u64; 3];
        for t in 0..100_000 {
            c[turns.at(t)] += 1;
        }
        assert!((49_000..=51_000).contains(&c[0]), "{c:?}");
        assert!(c[1] <= 1, "{c:?}");
        assert!(turns.at(u64::MAX) < 3);
    }
}
