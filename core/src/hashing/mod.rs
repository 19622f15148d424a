//! Consistent hashing: ring (virtual nodes, weighted), Maglev (weighted),
//! jump, and rendezvous (weighted, top-k), behind one [`HashRing`], plus
//! bounded-load assignment on top of any of them.
//!
//! A `HashRing` is immutable: changing the endpoints builds a new one (the
//! load balancer publishes it as a new snapshot, so lookups never wait).
//! Lookups are `&self`, allocation-free (`get`) and safe from any thread.

mod hash;
mod jump;
mod maglev;
mod rendezvous;
mod ring;

pub use hash::{hash64, hash_u64, mix64};
pub use maglev::next_prime;

use std::collections::HashSet;
use thiserror::Error;

/// Which consistent-hashing algorithm a [`HashRing`] uses. The default is
/// the ring with [`Algorithm::DEFAULT_VNODES`] points per unit of weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// Ketama-style ring with `vnodes` points per unit of weight.
    Ring {
        /// Points per endpoint per unit of weight (160 is customary).
        vnodes: u32,
    },
    /// Maglev lookup table of at least `min_table_size` slots (rounded up to
    /// a prime; at least 100 slots per endpoint is recommended). Slots are
    /// shared in proportion to weight; when the weights add up to more than
    /// the table, a very light endpoint may get no slot.
    Maglev {
        /// Smallest acceptable table size.
        min_table_size: usize,
    },
    /// Jump consistent hash: no table, no weights.
    Jump,
    /// Weighted rendezvous (highest random weight).
    Rendezvous,
}

impl Default for Algorithm {
    fn default() -> Self {
        Algorithm::Ring {
            vnodes: Self::DEFAULT_VNODES,
        }
    }
}

impl Algorithm {
    /// Ring points per endpoint per unit of weight unless told otherwise
    /// (the customary Ketama figure).
    pub const DEFAULT_VNODES: u32 = 160;
    /// The smallest Maglev table unless told otherwise (a prime; enough for
    /// about 650 endpoints at the recommended 100 slots each).
    pub const DEFAULT_MAGLEV_TABLE: usize = 65_537;
    /// The most ring points (endpoints × weight × vnodes) or Maglev slots a
    /// table may have: 2^26, half a gigabyte of ring points at most.
    pub const MAX_TABLE: u64 = 1 << 26;

    /// The algorithm named `name` (`ring`, `maglev`, `jump`, `rendezvous`)
    /// with its default parameters.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "ring" => Some(Algorithm::default()),
            "maglev" => Some(Algorithm::Maglev {
                min_table_size: Self::DEFAULT_MAGLEV_TABLE,
            }),
            "jump" => Some(Algorithm::Jump),
            "rendezvous" => Some(Algorithm::Rendezvous),
            _ => None,
        }
    }

    /// Checks the algorithm's own parameters, before any endpoint is known:
    /// ring `vnodes` from 1 to [`Algorithm::MAX_TABLE`], a Maglev
    /// `min_table_size` of at most [`Algorithm::MAX_TABLE`].
    ///
    /// # Errors
    /// [`HashError::Invalid`] naming the parameter.
    pub fn validate(&self) -> Result<(), HashError> {
        match *self {
            Algorithm::Ring { vnodes } if vnodes == 0 || u64::from(vnodes) > Self::MAX_TABLE => {
                Err(HashError::invalid(
                    "vnodes",
                    format!("must be from 1 to {}, got {vnodes}", Self::MAX_TABLE),
                ))
            }
            Algorithm::Maglev { min_table_size }
                if min_table_size == 0 || min_table_size as u64 > Self::MAX_TABLE =>
            {
                Err(HashError::invalid(
                    "table_size",
                    format!(
                        "must be from 1 to {}, got {min_table_size}",
                        Self::MAX_TABLE
                    ),
                ))
            }
            _ => Ok(()),
        }
    }
}

/// Checks a bounded-load factor: `epsilon` must be positive and finite.
///
/// # Errors
/// [`HashError::Invalid`] naming `epsilon`.
pub fn check_epsilon(epsilon: f64) -> Result<(), HashError> {
    if epsilon > 0.0 && epsilon.is_finite() {
        Ok(())
    } else {
        Err(HashError::invalid(
            "epsilon",
            format!("must be positive and finite, got {epsilon}"),
        ))
    }
}

/// Why a [`HashRing`] could not be built or a lookup was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HashError {
    /// No endpoints were given.
    #[error("a hash ring needs at least one endpoint")]
    Empty,
    /// An endpoint's weight is zero.
    #[error("endpoint {0:?} has weight 0 (weights must be at least 1)")]
    ZeroWeight(String),
    /// Two endpoints share a name.
    #[error("endpoint {0:?} appears twice")]
    Duplicate(String),
    /// Jump hashing has no weights.
    #[error("jump hashing cannot weight endpoints ({0:?} has weight {1})")]
    WeightsUnsupported(String, u32),
    /// A parameter is out of range.
    #[error("invalid {setting}: {reason}")]
    Invalid {
        /// The parameter's name (`vnodes`, `table_size`, `epsilon`, `loads`).
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl HashError {
    fn invalid(setting: &'static str, reason: impl Into<String>) -> Self {
        HashError::Invalid {
            setting,
            reason: reason.into(),
        }
    }
}

#[derive(Debug, Clone)]
enum Index {
    Ring(ring::Ring),
    Maglev(maglev::Maglev),
    Jump,
    Rendezvous,
}

/// Endpoints placed by a consistent-hashing algorithm. Immutable and
/// thread-safe; build a new one to change the endpoints.
#[derive(Debug, Clone)]
pub struct HashRing {
    names: Vec<String>,
    weights: Vec<u32>,
    seeds: Vec<u64>,
    /// All weights equal (rendezvous can skip its logarithm).
    uniform: bool,
    /// The sum of the weights, for bounded loads' weighted caps.
    total_weight: f64,
    algorithm: Algorithm,
    index: Index,
}

const NAME_SEED: u64 = 0x00C0_4E5E_4505;
const KEY_SEED: u64 = 0x004B_E7C0_4E5E;

impl HashRing {
    /// Places `endpoints` (name, weight) with `algorithm`.
    ///
    /// # Errors
    /// [`HashError`] for no endpoints, a zero weight, a duplicate name,
    /// weights with jump hashing, or a bad parameter.
    pub fn new(algorithm: Algorithm, endpoints: &[(&str, u32)]) -> Result<HashRing, HashError> {
        algorithm.validate()?;
        if endpoints.is_empty() {
            return Err(HashError::Empty);
        }
        let mut seen: HashSet<&str> = HashSet::with_capacity(endpoints.len());
        for &(name, w) in endpoints {
            if w == 0 {
                return Err(HashError::ZeroWeight(name.to_string()));
            }
            if !seen.insert(name) {
                return Err(HashError::Duplicate(name.to_string()));
            }
            if algorithm == Algorithm::Jump && w != 1 {
                return Err(HashError::WeightsUnsupported(name.to_string(), w));
            }
        }
        let names: Vec<String> = endpoints.iter().map(|e| e.0.to_string()).collect();
        let weights: Vec<u32> = endpoints.iter().map(|e| e.1).collect();
        let seeds: Vec<u64> = names
            .iter()
            .map(|n| hash64(n.as_bytes(), NAME_SEED))
            .collect();
        let index = match algorithm {
            Algorithm::Ring { vnodes } => {
                // In u128: weights and vnodes may both be near 2^32.
                let points: u128 = weights.iter().map(|&w| w as u128 * vnodes as u128).sum();
                if points > Algorithm::MAX_TABLE as u128 {
                    return Err(HashError::invalid(
                        "vnodes",
                        format!(
                            "{points} ring points (weights x vnodes) is too many; at most {}",
                            Algorithm::MAX_TABLE
                        ),
                    ));
                }
                Index::Ring(ring::Ring::build(&seeds, &weights, vnodes))
            }
            Algorithm::Maglev { min_table_size } => {
                let size = next_prime(min_table_size.max(2));
                // Weights share the slots out in proportion, however large
                // their sum; every endpoint needs a slot to be found at all.
                if size < names.len() {
                    return Err(HashError::invalid(
                        "table_size",
                        format!(
                            "a Maglev table of {size} slots cannot hold {} endpoints",
                            names.len()
                        ),
                    ));
                }
                Index::Maglev(maglev::Maglev::build(&seeds, &weights, size))
            }
            Algorithm::Jump => Index::Jump,
            Algorithm::Rendezvous => Index::Rendezvous,
        };
        let uniform = weights.iter().all(|&w| w == weights[0]);
        let total_weight = weights.iter().map(|&w| w as f64).sum();
        Ok(HashRing {
            names,
            weights,
            seeds,
            uniform,
            total_weight,
            algorithm,
            index,
        })
    }

    /// Unweighted endpoints by name.
    ///
    /// # Errors
    /// As [`HashRing::new`].
    pub fn with_names(algorithm: Algorithm, names: &[&str]) -> Result<HashRing, HashError> {
        let eps: Vec<(&str, u32)> = names.iter().map(|&n| (n, 1)).collect();
        Self::new(algorithm, &eps)
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Number of endpoints.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Always false: a ring has at least one endpoint.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Endpoint names, in the order given.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The hash of a byte key that lookups use.
    #[inline]
    pub fn key_hash(key: &[u8]) -> u64 {
        hash64(key, KEY_SEED)
    }

    /// The endpoint (by position) for an already hashed key.
    #[inline]
    pub fn index_for_hash(&self, h: u64) -> usize {
        match &self.index {
            Index::Ring(r) => r.lookup(h),
            Index::Maglev(m) => m.lookup(h),
            Index::Jump => jump::jump(h, self.names.len()),
            Index::Rendezvous => rendezvous::lookup(h, &self.seeds, &self.weights, self.uniform),
        }
    }

    /// The endpoint (by position) for a `u64` key.
    #[inline]
    pub fn index_for_u64(&self, key: u64) -> usize {
        self.index_for_hash(hash_u64(key, KEY_SEED))
    }

    /// The endpoint for `key`.
    pub fn get(&self, key: &[u8]) -> &str {
        &self.names[self.index_for_hash(Self::key_hash(key))]
    }

    /// Up to `n` distinct endpoints (positions) for a hashed key, preferred
    /// first; the first is always [`HashRing::index_for_hash`]'s answer.
    pub fn indexes_for_hash(&self, h: u64, n: usize, out: &mut Vec<usize>) {
        let len = self.names.len();
        match &self.index {
            Index::Ring(r) => r.lookup_n(h, n, len, out),
            Index::Maglev(m) => m.lookup_n(h, n, len, out),
            Index::Jump => jump::jump_n(h, n, len, out),
            Index::Rendezvous => rendezvous::lookup_n(h, n, &self.seeds, &self.weights, out),
        }
    }

    /// Up to `n` distinct endpoints for `key`, preferred first (replicas).
    pub fn get_n(&self, key: &[u8], n: usize) -> Vec<&str> {
        let mut out = Vec::with_capacity(n.min(self.len()));
        self.indexes_for_hash(Self::key_hash(key), n, &mut out);
        out.into_iter().map(|i| self.names[i].as_str()).collect()
    }

    /// Consistent hashing with bounded loads (Mirrokni, Thorup and
    /// Zadimoghaddam, 2018), weighted: the first endpoint in `h`'s
    /// preference order whose load is below its cap,
    /// `ceil((1 + epsilon) * (total + 1) * weight / total_weight)`, where
    /// `loads[i]` is endpoint `i`'s current load and `total` their sum (with
    /// equal weights the cap is `ceil((1 + epsilon) * (total + 1) / n)`). No
    /// endpoint is handed a key that would take it over its cap. Loads of any
    /// size are summed without overflow; when every load is near `u64::MAX`
    /// and so no cap can be told apart, the key's own endpoint is returned.
    ///
    /// # Errors
    /// [`HashError::Invalid`] unless `epsilon > 0` and finite, or when
    /// `loads` does not have one entry per endpoint.
    pub fn index_bounded(&self, h: u64, loads: &[u64], epsilon: f64) -> Result<usize, HashError> {
        check_epsilon(epsilon)?;
        if loads.len() != self.names.len() {
            return Err(HashError::invalid(
                "loads",
                format!("{} loads for {} endpoints", loads.len(), self.names.len()),
            ));
        }
        Ok(self.index_bounded_summed(h, loads, sum_of(loads), epsilon))
    }

    /// [`HashRing::index_bounded`] for checked arguments whose loads the
    /// caller already summed into `total` (the balancer sums in-flight
    /// counts as it reads them).
    pub(crate) fn index_bounded_summed(
        &self,
        h: u64,
        loads: &[u64],
        total: u128,
        epsilon: f64,
    ) -> usize {
        // Caps in f64: no cast back to an integer, so nothing saturates or
        // wraps; loads below 2^53 compare exactly.
        let budget = (1.0 + epsilon) * (total as f64 + 1.0);
        let per_weight = if self.uniform {
            budget / self.names.len() as f64
        } else {
            budget / self.total_weight
        };
        let under_cap = |i: usize| {
            let share = if self.uniform {
                per_weight
            } else {
                per_weight * self.weights[i] as f64
            };
            // For a whole load L, L < ceil(share) exactly when L < share
            // (and no libm `ceil` call on every pick).
            (loads[i] as f64) < share
        };
        let first = self.index_for_hash(h);
        if under_cap(first) {
            return first;
        }
        let mut order = Vec::with_capacity(self.names.len());
        self.indexes_for_hash(h, self.names.len(), &mut order);
        // Some endpoint is below its cap: the caps add up to more than total.
        order.into_iter().find(|&i| under_cap(i)).unwrap_or(first)
    }
}

/// The exact sum of `loads` (fewer than 2^32 of them). One vectorized pass
/// sums and ORs them: when every load is below 2^32 (in-flight counts always
/// are) the u64 sum cannot have wrapped. Otherwise a second pass sums the
/// low and high 32 bits of every load apart, in two u64 accumulators that
/// cannot overflow.
fn sum_of(loads: &[u64]) -> u128 {
    let (sum, any) = loads.iter().fold((0u64, 0u64), |(sum, any), &l| {
        (sum.wrapping_add(l), any | l)
    });
    if any >> 32 == 0 {
        return u128::from(sum);
    }
    let (low, high) = loads.iter().fold((0u64, 0u64), |(lo, hi), &l| {
        (lo + (l & 0xFFFF_FFFF), hi + (l >> 32))
    });
    ((high as u128) << 32) + low as u128
}

#[cfg(test)]
mod tests;
