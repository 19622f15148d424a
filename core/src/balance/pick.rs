//! A picked endpoint: the guard that counts it in flight and records how
//! the request ended.

use super::balancer::Inner;
use super::stats::{EndpointId, Stats};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It succeeded.
    Success,
    /// It failed (counts toward ejection).
    Failure,
}

/// A picked endpoint. It counts as in flight until [`Pick::finish`]
/// records the outcome (or it is dropped, which records nothing).
///
/// Latency: picks are timed from the pick, so [`Pick::finish`] records the
/// latency too, except those from
/// [`Balancer::pick_untimed`](super::Balancer::pick_untimed) (for hot paths
/// that skip the clock read), whose `finish` records only the outcome; pass
/// a latency you measured to [`Pick::finish_with_latency`].
///
/// [`Balancer::pick`](super::Balancer::pick) borrows the balancer; [`Balancer::pick_owned`](super::Balancer::pick_owned) gives a
/// `Pick<'static>` that keeps it alive instead, for callers that finish the
/// pick somewhere else (another thread, a C or Python handle).
#[must_use = "finish the pick to record its outcome"]
pub struct Pick<'a> {
    pub(super) inner: Holder<'a>,
    pub(super) index: usize,
    pub(super) stats: Arc<Stats>,
    /// Clock reading at the pick, for timed picks.
    pub(super) started: Option<u64>,
    pub(super) done: bool,
}

/// How a pick reaches its balancer.
pub(super) enum Holder<'a> {
    Borrowed(&'a Inner),
    Owned(Arc<Inner>),
}

impl std::ops::Deref for Holder<'_> {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        match self {
            Holder::Borrowed(i) => i,
            Holder::Owned(i) => i,
        }
    }
}

impl std::fmt::Debug for Pick<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pick")
            .field("name", &self.stats.name)
            .finish()
    }
}

impl Pick<'_> {
    /// The picked endpoint's name.
    pub fn name(&self) -> &str {
        &self.stats.name
    }

    /// The picked endpoint's id (stable across updates).
    pub fn id(&self) -> EndpointId {
        EndpointId(self.stats.id)
    }

    /// What was attached to the endpoint when it was added, if anything
    /// ([`Balancer::add_with`](super::Balancer::add_with)).
    pub fn attachment(&self) -> Option<&(dyn std::any::Any + Send + Sync)> {
        self.stats.attachment.as_ref().map(|a| &*a.0)
    }

    /// True when the pick is timed, so [`Pick::finish`] records latency.
    pub fn is_timed(&self) -> bool {
        self.started.is_some()
    }

    /// Its position in the endpoint list at pick time.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Records the outcome (and, for timed picks, the latency since the pick).
    pub fn finish(mut self, outcome: Outcome) {
        let needs_clock = self.started.is_some()
            || (outcome == Outcome::Failure && self.inner.health.consecutive_failures > 0);
        let now = if needs_clock {
            self.inner.clock.now_ns()
        } else {
            0
        };
        let latency = self.started.map(|s| now.saturating_sub(s));
        self.record(latency, outcome, now);
    }

    /// Records the outcome with a latency the caller measured.
    pub fn finish_with_latency(mut self, latency: std::time::Duration, outcome: Outcome) {
        let now = self.inner.clock.now_ns();
        self.record(Some(super::policy::nanos(latency)), outcome, now);
    }

    fn record(&mut self, latency_ns: Option<u64>, outcome: Outcome, now: u64) {
        self.done = true;
        self.stats.in_flight.fetch_sub(1, Relaxed);
        let health = self.inner.health;
        if let Some(l) = latency_ns {
            self.stats.observe(l.max(1) as f64, now, self.inner.tau_ns);
        }
        match outcome {
            Outcome::Success => {
                self.stats.successes.fetch_add(1, Relaxed);
                if self.stats.consecutive_failures.load(Relaxed) != 0 {
                    self.stats.consecutive_failures.store(0, Relaxed);
                }
            }
            Outcome::Failure => {
                self.stats.failures.fetch_add(1, Relaxed);
                // Saturates: with ejection off the run never resets.
                let run =
                    match self
                        .stats
                        .consecutive_failures
                        .fetch_update(Relaxed, Relaxed, |n| n.checked_add(1))
                    {
                        Ok(before) => before + 1,
                        Err(at_max) => at_max,
                    };
                if health.consecutive_failures > 0 && run >= health.consecutive_failures {
                    self.inner.try_eject(&self.stats, now);
                }
            }
        }
    }
}

impl Drop for Pick<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.stats.in_flight.fetch_sub(1, Relaxed);
        }
    }
}
