//! The picking policies and the balancer's settings, and the one place
//! where those settings are checked: [`Policy::validate`] and
//! [`Health::validate`] run when a balancer is built, and adapters call
//! them to check a setting the moment their user gives it.

use super::balancer::BalanceError;
use crate::hashing::{check_epsilon, Algorithm};
use std::time::Duration;

/// How a [`super::Balancer`] picks an endpoint.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Policy {
    /// At random (seeded), in proportion to weight: an endpoint of weight 9
    /// beside one of weight 1 gets nine picks in ten (Vose's alias table,
    /// so a pick costs the same whatever the weights).
    Random,
    /// In turn. Weighted as nginx's and Envoy's round robin are: with equal
    /// weights a plain rotation, otherwise the smooth weighted cycle of
    /// [`Policy::WeightedRoundRobin`].
    RoundRobin,
    /// nginx's smooth weighted round robin: exact proportions within every
    /// cycle, spread out (weights 5, 1, 1 give a a b a c a a). When
    /// endpoints × Σ weights passes 2^24, where that cycle gets slow to
    /// build, an evenly spread order with the same exact shares per cycle
    /// (turn `t` lands on `t × stride mod Σ weights` of the weights laid end
    /// to end); any weights are accepted. Turns that land on an ejected
    /// endpoint are skipped, so the others keep their proportions.
    WeightedRoundRobin,
    /// Power of two choices over in-flight requests divided by weight, as
    /// Envoy's weighted least request: of the two, the one with the lower
    /// `(in_flight + 1) / weight` (with equal weights, the lower in flight).
    LeastConnections,
    /// Power of two choices over peak-EWMA latency × (in-flight + 1) divided
    /// by weight; endpoints with no sample yet cost nothing, so they are
    /// tried; between two without samples, load per weight decides.
    LeastResponseTime,
    /// Consistent hashing of the pick's key, weighted by the algorithm (ring,
    /// Maglev and rendezvous honour weights; jump refuses them); with
    /// `bound`, no endpoint takes more than `ceil(bound × its weighted share)`
    /// of the in-flight keys (bounded loads, `bound = 1 + ε`).
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
                algorithm: Algorithm::default(),
                bound: None,
            },
            _ => return None,
        })
    }

    /// The names [`Policy::from_name`] knows, for error messages and docs.
    pub const NAMES: [&'static str; 6] = [
        "random",
        "round_robin",
        "weighted_round_robin",
        "least_connections",
        "least_response_time",
        "consistent_hash",
    ];

    /// The policy's name, as [`Policy::from_name`] takes it.
    pub fn name(&self) -> &'static str {
        match self {
            Policy::Random => "random",
            Policy::RoundRobin => "round_robin",
            Policy::WeightedRoundRobin => "weighted_round_robin",
            Policy::LeastConnections => "least_connections",
            Policy::LeastResponseTime => "least_response_time",
            Policy::ConsistentHash { .. } => "consistent_hash",
        }
    }

    /// This policy with the hashing options a user gave beside it (`None`:
    /// not given), checked: an algorithm or a bound given to a policy other
    /// than consistent hashing is an error rather than silently ignored.
    ///
    /// # Errors
    /// [`BalanceError::Invalid`] naming `hash` or `bound`, or what
    /// [`Policy::validate`] refuses.
    pub fn with_hashing(
        self,
        algorithm: Option<Algorithm>,
        bound: Option<f64>,
    ) -> Result<Policy, BalanceError> {
        let policy = match self {
            Policy::ConsistentHash {
                algorithm: a,
                bound: b,
            } => Policy::ConsistentHash {
                algorithm: algorithm.unwrap_or(a),
                bound: bound.or(b),
            },
            other => {
                let setting = if algorithm.is_some() { "hash" } else { "bound" };
                if algorithm.is_some() || bound.is_some() {
                    return Err(BalanceError::invalid(
                        setting,
                        format!(
                            "applies to the consistent_hash policy only, not {}",
                            other.name()
                        ),
                    ));
                }
                other
            }
        };
        policy.validate()?;
        Ok(policy)
    }

    /// Checks the policy's parameters: the hashing algorithm's
    /// ([`Algorithm::validate`]) and a bound above 1 and finite.
    ///
    /// # Errors
    /// [`BalanceError::Invalid`] naming the setting.
    pub fn validate(&self) -> Result<(), BalanceError> {
        if let Policy::ConsistentHash { algorithm, bound } = *self {
            algorithm.validate()?;
            if let Some(b) = bound {
                check_epsilon(b - 1.0).map_err(|_| {
                    BalanceError::invalid(
                        "bound",
                        format!("is 1 + epsilon and must be above 1 and finite, got {b}"),
                    )
                })?;
            }
        }
        Ok(())
    }
}

/// Passive health checking and slow start.
///
/// Every duration may be as long as [`Duration::MAX`]: one beyond what the
/// balancer's nanosecond clock can count means "forever" (an ejection that
/// never ends, a slow start that never finishes), never a wrap.
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
    /// Time constant of the latency EWMA (above zero).
    pub ewma_decay: Duration,
}

impl Health {
    /// Checks the settings: shares within 0..=1 (NaN is not), a
    /// `max_ejection` no shorter than `base_ejection`, a positive
    /// `ewma_decay`.
    ///
    /// # Errors
    /// [`BalanceError::Invalid`] naming the first bad setting.
    pub fn validate(&self) -> Result<(), BalanceError> {
        for (setting, v) in [
            ("max_ejected_share", self.max_ejected_share),
            ("panic_threshold", self.panic_threshold),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(BalanceError::invalid(
                    setting,
                    format!("must be from 0 to 1, got {v}"),
                ));
            }
        }
        if self.max_ejection < self.base_ejection {
            return Err(BalanceError::invalid(
                "max_ejection",
                format!(
                    "must be at least base_ejection ({:?}), got {:?}",
                    self.base_ejection, self.max_ejection
                ),
            ));
        }
        if self.ewma_decay.is_zero() {
            return Err(BalanceError::invalid("ewma_decay", "must be above zero"));
        }
        Ok(())
    }
}

/// A duration given in seconds as a float (as Python and configuration files
/// give them): NaN and negative values are refused, and values too large for
/// a [`Duration`] (infinity included) become [`Duration::MAX`], "forever";
/// a positive value below a nanosecond becomes one nanosecond.
///
/// # Errors
/// [`BalanceError::Invalid`] naming `setting`.
pub fn seconds(setting: &'static str, secs: f64) -> Result<Duration, BalanceError> {
    crate::error::duration_from_seconds(setting, secs)
        .map_err(|e| BalanceError::invalid(setting, e.reason))
}

/// `d` in nanoseconds, saturating at `u64::MAX` (584 years), which the
/// balancer reads as "forever".
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
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
