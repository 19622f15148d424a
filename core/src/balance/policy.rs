//! The picking policies and the balancer's settings.

use crate::hashing::Algorithm;
use std::time::Duration;

/// How a [`super::Balancer`] picks an endpoint.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Policy {
    /// Uniformly at random (seeded).
    Random,
    /// In turn.
    RoundRobin,
    /// nginx's smooth weighted round robin: exact proportions within every
    /// cycle, spread out (weights 5, 1, 1 give a a b a c a a).
    WeightedRoundRobin,
    /// Power of two choices over in-flight requests.
    LeastConnections,
    /// Power of two choices over peak-EWMA latency × (in-flight + 1);
    /// endpoints with no sample yet cost nothing, so they are tried.
    LeastResponseTime,
    /// Consistent hashing of the pick's key; with `bound`, no endpoint takes
    /// more than `ceil(bound × mean)` of the in-flight keys (bounded loads,
    /// `bound = 1 + ε`).
    ConsistentHash {
        /// The hashing algorithm.
        algorithm: Algorithm,
        /// `1 + ε` for bounded loads, or `None`.
        bound: Option<f64>,
    },
}

impl Policy {
    /// The policy named `name` (`random`, `round_robin`,
    /// `weighted_round_robin`, `least_connections`, `least_response_time`,
    /// `consistent_hash` with the ring algorithm).
    pub fn from_name(name: &str) -> Option<Policy> {
        Some(match name {
            "random" => Policy::Random,
            "round_robin" => Policy::RoundRobin,
            "weighted_round_robin" => Policy::WeightedRoundRobin,
            "least_connections" => Policy::LeastConnections,
            "least_response_time" => Policy::LeastResponseTime,
            "consistent_hash" => Policy::ConsistentHash {
                algorithm: Algorithm::Ring { vnodes: 160 },
                bound: None,
            },
            _ => return None,
        })
    }
}

/// Passive health checking and slow start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Health {
    /// Consecutive failures that eject an endpoint (0: never eject).
    pub consecutive_failures: u32,
    /// First ejection lasts this long; the n-th lasts n times as long...
    pub base_ejection: Duration,
    /// ...up to this.
    pub max_ejection: Duration,
    /// At most this share of endpoints is ejected at once (0.0–1.0).
    pub max_ejected_share: f64,
    /// When fewer than this share of endpoints is healthy, balance over all
    /// of them (panic mode).
    pub panic_threshold: f64,
    /// A new or returning endpoint's share ramps up over this window
    /// (zero: no slow start).
    pub slow_start: Duration,
    /// Time constant of the latency EWMA.
    pub ewma_decay: Duration,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejected_share: 0.5,
            panic_threshold: 0.5,
            slow_start: Duration::ZERO,
            ewma_decay: Duration::from_secs(10),
        }
    }
}
