//! How a pick chooses an endpoint from a snapshot: health (ejection, panic
//! mode), slow start, and each policy's choice, weights included. Lock-free;
//! reads the clock only while an ejection or a slow start lasts, or when
//! the pick is timed.

use super::balancer::{BalanceError, Inner};
use super::policy::Policy;
use super::snapshot::{below, Snapshot};
use crate::hashing::HashRing;
use std::sync::atomic::Ordering::Relaxed;

/// The first index from `start` on (wrapping at `n`) that passes `ok`.
#[inline]
fn first_usable(start: usize, n: usize, ok: &dyn Fn(usize) -> bool) -> Option<usize> {
    if ok(start) {
        return Some(start);
    }
    let mut i = start;
    for _ in 1..n {
        i = if i + 1 == n { 0 } else { i + 1 };
        if ok(i) {
            return Some(i);
        }
    }
    None
}

impl Inner {
    /// The index of the chosen endpoint, and the clock reading when
    /// `time_it`. No policy needs the clock to choose; ejections and slow
    /// start read it while they last.
    #[inline]
    pub(super) fn pick_index(
        &self,
        snap: &Snapshot,
        key: Option<&[u8]>,
        time_it: bool,
    ) -> Result<(usize, Option<u64>), BalanceError> {
        let n = snap.endpoints.len();
        if n == 0 {
            return Err(BalanceError::Empty);
        }
        let ejected_until = self.ejected_horizon.load(Relaxed);
        let warming_until = self.warming_horizon.load(Relaxed);
        // The clock is read only when something needs it.
        let now = if time_it || ejected_until != 0 || warming_until != 0 {
            self.clock.now_ns()
        } else {
            0
        };
        if ejected_until != 0 && now >= ejected_until {
            let _ = self
                .ejected_horizon
                .compare_exchange(ejected_until, 0, Relaxed, Relaxed);
        }
        if warming_until != 0 && now >= warming_until {
            let _ = self
                .warming_horizon
                .compare_exchange(warming_until, 0, Relaxed, Relaxed);
        }
        let ejections = ejected_until != 0 && now < ejected_until;
        let panic = ejections && {
            let healthy = snap
                .endpoints
                .iter()
                .filter(|e| !e.stats.is_ejected(now))
                .count();
            // Too few healthy endpoints: use them all.
            (healthy as f64) < self.health.panic_threshold * n as f64 || healthy == 0
        };
        let usable = |i: usize| !ejections || panic || !snap.endpoints[i].stats.is_ejected(now);
        let mut index = self.choose(snap, key, &usable)?;
        // Slow start: a warming endpoint is passed over with the probability
        // it has not yet earned, at most a few times.
        let hashing = matches!(self.policy, Policy::ConsistentHash { .. });
        if warming_until != 0 && now < warming_until && !hashing {
            let window = self.slow_start_ns as f64;
            for _ in 0..4 {
                let from = snap.endpoints[index].stats.warm_from.load(Relaxed);
                let share = (now.saturating_sub(from) as f64 / window).clamp(0.0, 1.0);
                if share >= 1.0 {
                    break;
                }
                let roll = (self.random() >> 11) as f64 / (1u64 << 53) as f64;
                if roll < share.max(0.05) {
                    break;
                }
                index = self.choose(snap, key, &usable)?;
            }
        }
        Ok((index, time_it.then_some(now)))
    }

    /// Two distinct random usable endpoints (the same one when only one is).
    fn two_choices(&self, n: usize, usable: &dyn Fn(usize) -> bool) -> (usize, usize) {
        let r = self.random();
        let a0 = below(r as u32, n);
        let b0 = if n == 1 {
            a0
        } else {
            let x = below((r >> 32) as u32, n - 1);
            if x >= a0 {
                x + 1
            } else {
                x
            }
        };
        let a = first_usable(a0, n, &|i| usable(i)).unwrap_or(a0);
        let b = first_usable(b0, n, &|i| i != a && usable(i)).unwrap_or(a);
        (a, b)
    }

    #[inline]
    fn choose(
        &self,
        snap: &Snapshot,
        key: Option<&[u8]>,
        usable: &dyn Fn(usize) -> bool,
    ) -> Result<usize, BalanceError> {
        let n = snap.endpoints.len();
        let first_usable_from = |start: usize| first_usable(start, n, usable).unwrap_or(start);
        Ok(match self.policy {
            Policy::Random if snap.uniform => first_usable_from(below(self.random() as u32, n)),
            Policy::Random => first_usable_from(snap.alias.choose(self.random())),
            Policy::RoundRobin | Policy::WeightedRoundRobin if snap.wrr.is_empty() => {
                first_usable_from((self.turn.next(1) % n as u64) as usize)
            }
            Policy::RoundRobin | Policy::WeightedRoundRobin => {
                let len = snap.wrr.len() as u64;
                let mut pick = 0;
                for _ in 0..len.min(4 * n as u64) {
                    let t = self.turn.next(1) % len;
                    pick = snap.wrr[t as usize] as usize;
                    if usable(pick) {
                        break;
                    }
                }
                if usable(pick) {
                    pick
                } else {
                    first_usable_from(pick)
                }
            }
            Policy::LeastConnections => {
                let (a, b) = self.two_choices(n, usable);
                let (ea, eb) = (&snap.endpoints[a], &snap.endpoints[b]);
                let (la, lb) = (ea.stats.in_flight(), eb.stats.in_flight());
                let b_is_lighter = if snap.uniform {
                    lb < la
                } else {
                    // (lb + 1) / wb < (la + 1) / wa, in u128: no overflow at
                    // any load or weight.
                    (lb as u128 + 1) * (ea.weight as u128) < (la as u128 + 1) * (eb.weight as u128)
                };
                if b_is_lighter {
                    b
                } else {
                    a
                }
            }
            Policy::LeastResponseTime => {
                let (a, b) = self.two_choices(n, usable);
                let (ea, eb) = (&snap.endpoints[a], &snap.endpoints[b]);
                let (wa, wb) = if snap.uniform {
                    (1.0, 1.0)
                } else {
                    (ea.weight as f64, eb.weight as f64)
                };
                if eb.stats.costs_less_than(wb, &ea.stats, wa, self.inv_tau) {
                    b
                } else {
                    a
                }
            }
            Policy::ConsistentHash { bound, .. } => {
                let key = key.ok_or(BalanceError::KeyRequired)?;
                let Some(ring) = &snap.ring else {
                    return Err(BalanceError::Empty);
                };
                let h = HashRing::key_hash(key);
                let first = match bound {
                    Some(b) => {
                        let loads: Vec<u64> =
                            snap.endpoints.iter().map(|e| e.stats.in_flight()).collect();
                        ring.index_bounded(h, &loads, b - 1.0)?
                    }
                    None => ring.index_for_hash(h),
                };
                if usable(first) {
                    first
                } else {
                    let mut order = Vec::with_capacity(n);
                    ring.indexes_for_hash(h, n, &mut order);
                    order.into_iter().find(|&i| usable(i)).unwrap_or(first)
                }
            }
        })
    }
}
