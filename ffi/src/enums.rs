//! The C enums for choosing a policy, a hashing algorithm and an outcome,
//! and their conversion from the plain integers C passes.
//!
//! Functions take these as `uint32_t` rather than as the enum type: a value
//! C made up is then an `CONSENSO_RESULT_INVALID_ARGUMENT`, not undefined
//! behaviour.

use crate::result::consenso_result;
use consenso::balance::{Outcome, Policy};
use consenso::hashing::Algorithm;

/// A load-balancing policy (`consenso_balancer_new`).
#[repr(u32)]
#[derive(Clone, Copy, Debug)]
#[allow(non_camel_case_types, dead_code)]
pub enum consenso_policy {
    /// At random (seeded), in proportion to weight.
    Random = 1,
    /// In turn; with unequal weights, each endpoint gets its weight in turns
    /// per cycle (as `WeightedRoundRobin`).
    RoundRobin = 2,
    /// Weighted round robin: nginx's smooth cycle (weights 5, 1, 1 give
    /// a a b a c a a); for very large weights an evenly spread order with
    /// the same exact shares per cycle.
    WeightedRoundRobin = 3,
    /// Power of two choices over requests in flight per unit of weight.
    LeastConnections = 4,
    /// Power of two choices over peak-EWMA latency × (in flight + 1) per
    /// unit of weight.
    LeastResponseTime = 5,
    /// Consistent hashing of the pick's key (algorithm and bound from the
    /// options; ring by default); weights give keys in proportion, except
    /// under jump hashing, which refuses them.
    ConsistentHash = 6,
}

/// A consistent-hashing algorithm.
#[repr(u32)]
#[derive(Clone, Copy, Debug)]
#[allow(non_camel_case_types, dead_code)]
pub enum consenso_hash_algorithm {
    /// Ketama-style ring; parameter: virtual nodes per unit of weight
    /// (0: 160).
    Ring = 1,
    /// Maglev table; parameter: the smallest table size (0: 65,537).
    Maglev = 2,
    /// Jump consistent hash (no weights; no parameter).
    Jump = 3,
    /// Weighted rendezvous hashing (no parameter).
    Rendezvous = 4,
}

/// How a request ended (`consenso_pick_finish`).
#[repr(u32)]
#[derive(Clone, Copy, Debug)]
#[allow(non_camel_case_types, dead_code)]
pub enum consenso_outcome {
    /// It succeeded.
    Success = 0,
    /// It failed (counts toward outlier ejection).
    Failure = 1,
}

/// The policy numbered `code`, with the core's default parameters.
pub(crate) fn policy(code: u32) -> Result<Policy, consenso_result> {
    Ok(match code {
        1 => Policy::Random,
        2 => Policy::RoundRobin,
        3 => Policy::WeightedRoundRobin,
        4 => Policy::LeastConnections,
        5 => Policy::LeastResponseTime,
        6 => Policy::ConsistentHash {
            algorithm: Algorithm::default(),
            bound: None,
        },
        _ => return Err(consenso_result::InvalidArgument),
    })
}

/// The algorithm numbered `code` with parameter `param` (0: default).
pub(crate) fn algorithm(code: u32, param: u32) -> Result<Algorithm, consenso_result> {
    Ok(match code {
        1 => Algorithm::Ring {
            vnodes: if param == 0 {
                Algorithm::DEFAULT_VNODES
            } else {
                param
            },
        },
        2 => Algorithm::Maglev {
            min_table_size: if param == 0 {
                Algorithm::DEFAULT_MAGLEV_TABLE
            } else {
                param as usize
            },
        },
        3 | 4 if param != 0 => return Err(consenso_result::InvalidArgument),
        3 => Algorithm::Jump,
        4 => Algorithm::Rendezvous,
        _ => return Err(consenso_result::InvalidArgument),
    })
}

/// The outcome numbered `code`.
pub(crate) fn outcome(code: u32) -> Result<Outcome, consenso_result> {
    match code {
        0 => Ok(Outcome::Success),
        1 => Ok(Outcome::Failure),
        _ => Err(consenso_result::InvalidArgument),
    }
}
