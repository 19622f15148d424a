//! Per-endpoint statistics, shared by every snapshot that holds the
//! endpoint, so adding, removing or re-weighting others never resets them.
//! All counters are atomics: recording a result takes no lock.

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering::Relaxed};

/// Live statistics of one endpoint, with its name. Aligned to its own cache
/// lines so threads picking different endpoints do not share them.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Stats {
    pub(crate) name: Box<str>,
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
    /// Fresh statistics for endpoint `name` that joined at `now`.
    pub fn new(name: &str, now: u64) -> Self {
        let s = Stats {
            name: name.into(),
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
        self.ejected_until.load(Relaxed) > now
    }
}
