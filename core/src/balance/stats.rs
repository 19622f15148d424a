//! Per-endpoint statistics, shared by every snapshot that holds the
//! endpoint, so adding, removing or re-weighting others never resets them.
//! All counters are atomics: recording a result takes no lock.

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering::Relaxed};

/// An endpoint's id: assigned by its balancer when the endpoint is added,
/// stable while it stays, never reused by that balancer (ids start at 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointId(pub u64);

impl std::fmt::Display for EndpointId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Statistics of one endpoint, from
/// [`Balancer::stats`](super::Balancer::stats).
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointStats {
    /// The endpoint's id.
    pub id: EndpointId,
    /// The endpoint's name.
    pub name: String,
    /// Its weight.
    pub weight: u32,
    /// Requests in flight.
    pub in_flight: u64,
    /// Peak-EWMA latency in seconds (0 with no sample).
    pub ewma_latency: f64,
    /// Requests that succeeded.
    pub successes: u64,
    /// Requests that failed.
    pub failures: u64,
    /// Ejected now.
    pub ejected: bool,
    /// Times it was ejected.
    pub ejections: u32,
}

/// Something the caller attaches to an endpoint when adding it (a client,
/// a connection pool, a Python object) and gets back with the picks of that
/// endpoint, without a lookup of its own.
pub type Attachment = std::sync::Arc<dyn std::any::Any + Send + Sync>;

/// An [`Attachment`] that `Stats` can print.
#[derive(Clone)]
pub(crate) struct Attached(pub(crate) Attachment);

impl std::fmt::Debug for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Attachment")
    }
}

/// Live statistics of one endpoint, with its name. Aligned to its own cache
/// lines so threads picking different endpoints do not share them.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Stats {
    pub(crate) name: std::sync::Arc<str>,
    /// The endpoint's id: assigned at `add`, never reused by its balancer.
    pub(crate) id: u64,
    /// What the caller attached at `add`, if anything.
    pub(crate) attachment: Option<Attached>,
    pub(crate) in_flight: AtomicI64,
    pub(crate) successes: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) consecutive_failures: AtomicU32,
    /// Peak EWMA of latency, as f64 bits (nanoseconds); 0 = no sample yet.
    ewma_bits: AtomicU64,
    ewma_at: AtomicU64,
    /// Ejected until this time (ns); 0 = never ejected.
    pub(crate) ejected_until: AtomicU64,
    pub(crate) ejections: AtomicU32,
    /// Start of the current slow-start window (ns).
    pub(crate) warm_from: AtomicU64,
}

impl Stats {
    /// Fresh statistics for endpoint `name` (id `id`, carrying
    /// `attachment`) that joined at `now`.
    pub(crate) fn new(name: &str, id: u64, attachment: Option<Attachment>, now: u64) -> Self {
        let s = Stats {
            name: name.into(),
            id,
            attachment: attachment.map(Attached),
            ..Stats::default()
        };
        s.warm_from.store(now, Relaxed);
        s
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Relaxed).max(0) as u64
    }

    /// The latency estimate at `now`: the peak EWMA decayed with time
    /// constant `tau_ns` since its last update (0 with no sample).
    pub fn ewma_ns(&self, now: u64, tau_ns: f64) -> f64 {
        let v = f64::from_bits(self.ewma_bits.load(Relaxed));
        let at = self.ewma_at.load(Relaxed);
        if v == 0.0 {
            return 0.0;
        }
        let dt = now.saturating_sub(at) as f64;
        v * (-dt / tau_ns).exp()
    }

    /// True when this endpoint's load per unit of weight, its latency
    /// estimate × (in flight + 1) / `weight`, is below `other`'s (of weight
    /// `other_weight`); an endpoint with no sample yet costs nothing, and
    /// when neither has one, load per weight decides (as least connections).
    /// `inv_tau` is 1 / the decay time constant in ns.
    ///
    /// Both estimates decay at the same rate, so the comparison holds at
    /// any common time and needs no clock: `c₁·e^(−(t−t₁)/τ) < c₂·e^(−(t−t₂)/τ)`
    /// exactly when `c₁·e^((t₁−t₂)/τ) < c₂`.
    pub fn costs_less_than(
        &self,
        weight: f64,
        other: &Stats,
        other_weight: f64,
        inv_tau: f64,
    ) -> bool {
        let (v1, at1) = self.ewma_parts();
        let (v2, at2) = other.ewma_parts();
        let (load1, load2) = (
            (self.in_flight() + 1) as f64 * other_weight,
            (other.in_flight() + 1) as f64 * weight,
        );
        if v1 == 0.0 && v2 == 0.0 {
            // No latency known on either side: load per weight decides.
            return load1 < load2;
        }
        // c₁ / w₁ < c₂ / w₂ as c₁·w₂ < c₂·w₁ (weights are at least 1).
        let (c1, c2) = (v1 * load1, v2 * load2);
        if c1 == 0.0 || c2 == 0.0 {
            return c1 < c2;
        }
        // t₁ − t₂ without wrapping, however far apart the two samples are.
        let dt = if at1 >= at2 {
            (at1 - at2) as f64
        } else {
            -((at2 - at1) as f64)
        };
        let x = dt * inv_tau;
        c1 * exp_near_zero(x) < c2
    }

    fn ewma_parts(&self) -> (f64, u64) {
        (
            f64::from_bits(self.ewma_bits.load(Relaxed)),
            self.ewma_at.load(Relaxed),
        )
    }

    /// Records a latency sample: a higher one replaces the estimate at once
    /// (peak), a lower one is blended in with a weight that grows with the
    /// time since the last sample (Finagle's and tower's peak EWMA).
    pub fn observe(&self, latency_ns: f64, now: u64, tau_ns: f64) {
        let mut cur = self.ewma_bits.load(Relaxed);
        loop {
            let old = f64::from_bits(cur);
            let at = self.ewma_at.load(Relaxed);
            let next = if old == 0.0 || latency_ns > old {
                latency_ns
            } else {
                let w = (-(now.saturating_sub(at) as f64) / tau_ns).exp();
                old * w + latency_ns * (1.0 - w)
            };
            match self
                .ewma_bits
                .compare_exchange_weak(cur, next.to_bits(), Relaxed, Relaxed)
            {
                Ok(_) => {
                    self.ewma_at.store(now, Relaxed);
                    return;
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// True when ejected at `now`.
    pub fn is_ejected(&self, now: u64) -> bool {
        lasts_at(self.ejected_until.load(Relaxed), now)
    }
}

/// True when a state that lasts until `until` (clock ns; 0: not at all,
/// `u64::MAX`: forever, even once the clock saturates) still holds at `now`.
#[inline]
pub(super) fn lasts_at(until: u64, now: u64) -> bool {
    until > now || until == u64::MAX
}

/// `e^x`, by its series when `|x|` is tiny: two busy endpoints' estimates
/// were updated within milliseconds of each other, a tiny fraction of the
/// decay time, and the series is exact to 1e-13 there and cheaper than a
/// call to `exp`.
#[inline]
fn exp_near_zero(x: f64) -> f64 {
    if x.abs() < 1e-3 {
        1.0 + x * (1.0 + x * (0.5 + x * (1.0 / 6.0)))
    } else {
        x.exp()
    }
}
