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

use thiserror::Error;

/// Which consistent-hashing algorithm a [`HashRing`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// Ketama-style ring with `vnodes` points per unit of weight.
    Ring {
        /// Points per endpoint per unit of weight (160 is customary).
        vnodes: u32,
    },
    /// Maglev lookup table of at least `min_table_size` slots (rounded up to
    /// a prime; at least 100 slots per endpoint is recommended).
    Maglev {
        /// Smallest acceptable table size.
        min_table_size: usize,
    },
    /// Jump consistent hash: no table, no weights.
    Jump,
    /// Weighted rendezvous (highest random weight).
    Rendezvous,
}

impl Algorithm {
    /// The algorithm named `name` (`ring`, `maglev`, `jump`, `rendezvous`)
    /// with its default parameters.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "ring" => Some(Algorithm::Ring { vnodes: 160 }),
            "maglev" => Some(Algorithm::Maglev {
                min_table_size: 65_537,
            }),
            "jump" => Some(Algorithm::Jump),
            "rendezvous" => Some(Algorithm::Rendezvous),
            _ => None,
        }
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
    #[error("invalid parameter: {0}")]
    Invalid(String),
    /// The bounded-load factor must be positive.
    #[error("the bounded-load factor epsilon must be positive and finite, got {0}")]
    Epsilon(String),
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
        if endpoints.is_empty() {
            return Err(HashError::Empty);
        }
        let mut names: Vec<String> = Vec::with_capacity(endpoints.len());
        for &(name, w) in endpoints {
            if w == 0 {
                return Err(HashError::ZeroWeight(name.to_string()));
            }
            if names.iter().any(|n| n == name) {
                return Err(HashError::Duplicate(name.to_string()));
            }
            if algorithm == Algorithm::Jump && w != 1 {
                return Err(HashError::WeightsUnsupported(name.to_string(), w));
            }
            names.push(name.to_string());
        }
        let weights: Vec<u32> = endpoints.iter().map(|e| e.1).collect();
        let seeds: Vec<u64> = names
            .iter()
            .map(|n| hash64(n.as_bytes(), NAME_SEED))
            .collect();
        let index = match algorithm {
            Algorithm::Ring { vnodes } => {
                if vnodes == 0 {
                    return Err(HashError::Invalid("ring vnodes must be at least 1".into()));
                }
                let points: u64 = weights.iter().map(|&w| w as u64 * vnodes as u64).sum();
                if points > 1 << 26 {
                    return Err(HashError::Invalid(format!(
                        "{points} ring points is too many (at most 2^26)"
                    )));
                }
                Index::Ring(ring::Ring::build(&seeds, &weights, vnodes))
            }
            Algorithm::Maglev { min_table_size } => {
                let total_weight: usize = weights.iter().map(|&w| w as usize).sum();
                if min_table_size < total_weight {
                    return Err(HashError::Invalid(format!(
                        "a Maglev table of {min_table_size} slots cannot hold {total_weight} units of weight"
                    )));
                }
                if min_table_size > 1 << 26 {
                    return Err(HashError::Invalid("Maglev table larger than 2^26".into()));
                }
                let size = next_prime(min_table_size.max(2));
                Index::Maglev(maglev::Maglev::build(&seeds, &weights, size))
            }
            Algorithm::Jump => Index::Jump,
            Algorithm::Rendezvous => Index::Rendezvous,
        };
        let uniform = weights.iter().all(|&w| w == weights[0]);
        Ok(HashRing {
            names,
            weights,
            seeds,
            uniform,
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
    /// Zadimoghaddam, 2018): the first endpoint in `h`'s preference order
    /// whose load is below `ceil((1 + epsilon) * (total + 1) / n)`, where
    /// `loads[i]` is endpoint `i`'s current load and `total` their sum. No
    /// endpoint is ever handed a key that would take it over the bound.
    ///
    /// # Errors
    /// [`HashError::Epsilon`] unless `epsilon > 0`; [`HashError::Invalid`]
    /// when `loads` does not have one entry per endpoint.
    pub fn index_bounded(&self, h: u64, loads: &[u64], epsilon: f64) -> Result<usize, HashError> {
        if !(epsilon > 0.0 && epsilon.is_finite()) {
            return Err(HashError::Epsilon(epsilon.to_string()));
        }
        if loads.len() != self.names.len() {
            return Err(HashError::Invalid(format!(
                "{} loads for {} endpoints",
                loads.len(),
                self.names.len()
            )));
        }
        let n = self.names.len() as f64;
        let total: u64 = loads.iter().sum();
        let cap = ((1.0 + epsilon) * (total as f64 + 1.0) / n).ceil() as u64;
        let first = self.index_for_hash(h);
        if loads[first] < cap {
            return Ok(first);
        }
        let mut order = Vec::with_capacity(self.names.len());
        self.indexes_for_hash(h, self.names.len(), &mut order);
        // Some endpoint is always below the cap: cap * n > total.
        Ok(order.into_iter().find(|&i| loads[i] < cap).unwrap_or(first))
    }
}

#[cfg(test)]
mod tests;
