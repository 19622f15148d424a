//! How a pick chooses an endpoint from a snapshot: health (ejection, panic
//! mode), slow start, and each policy's choice, weights included. Lock-free;
//! reads the clock only while an ejection or a slow start lasts, or when
//! the pick is timed.

use super::balancer::{BalanceError, Inner};
use super::policy::Policy;
use super::snapshot::{below, Snapshot};
use super::stats::lasts_at;
use super::turns::Turns;
use crate::hashing::HashRing;
use std::sync::atomic::Ordering::Relaxed;

/// Whether the endpoint at a position may be picked now.
type Usable<'a> = &'a dyn Fn(usize) -> bool;

/// Draws before a pick stops drawing and scans for a usable endpoint.
const DRAWS: usize = 4;

/// The first of up to [`DRAWS`] draws that is usable: rejecting the
/// unusable keeps every usable endpoint's share exact. `None` when all
/// missed (most of the weight is ejected).
#[inline]
fn draw_usable(mut draw: impl FnMut() -> usize, usable: Usable<'_>) -> Option<usize> {
    (0..DRAWS).map(|_| draw()).find(|&i| usable(i))
}

/// The usable endpoint at position `at(total)` (which must be below
/// `total`) when the usable endpoints' weights (or ones, unweighted) are
/// laid end to end: an exact share among the usable in one linear scan,
/// for when draws keep missing. `None` when none is usable.
fn scan_usable(
    snap: &Snapshot,
    weighted: bool,
    usable: &dyn Fn(usize) -> bool,
    at: impl FnOnce(u64) -> u64,
) -> Option<usize> {
    let n = snap.endpoints.len();
    let weight = |i: usize| {
        if weighted {
            u64::from(snap.endpoints[i].weight)
        } else {
            1
        }
    };
    // At most 2^32 endpoints of weight below 2^32: no overflow.
    let total: u64 = (0..n).filter(|&i| usable(i)).map(weight).sum();
    if total == 0 {
        return None;
    }
    let mut pos = at(total);
    (0..n).filter(|&i| usable(i)).find(|&i| {
        let w = weight(i);
        if pos < w {
            true
        } else {
            pos -= w;
            false
        }
    })
}

/// A position below `total` from 64 random bits.
#[inline]
fn scaled(random: u64, total: u64) -> u64 {
    ((u128::from(random) * u128::from(total)) >> 64) as u64
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
        if ejected_until != 0 && !lasts_at(ejected_until, now) {
            let _ = self
                .ejected_horizon
                .compare_exchange(ejected_until, 0, Relaxed, Relaxed);
        }
        if warming_until != 0 && !lasts_at(warming_until, now) {
            let _ = self
                .warming_horizon
                .compare_exchange(warming_until, 0, Relaxed, Relaxed);
        }
        let ejections = ejected_until != 0 && lasts_at(ejected_until, now);
        let panic = ejections && {
            let healthy = snap
                .endpoints
                .iter()
                .filter(|e| !e.stats.is_ejected(now))
                .count();
            // Too few healthy endpoints: use them all.
            (healthy as f64) < self.health.panic_threshold * n as f64 || healthy == 0
        };
        let healthy = |i: usize| !snap.endpoints[i].stats.is_ejected(now);
        // Checked per candidate only while some endpoint is out.
        let usable = (ejections && !panic).then_some(&healthy as Usable<'_>);
        let mut index = self.choose(snap, key, usable)?;
        // Slow start: a warming endpoint is passed over with the probability
        // it has not yet earned, at most a few times.
        let hashing = matches!(self.policy, Policy::ConsistentHash { .. });
        if warming_until != 0 && lasts_at(warming_until, now) && !hashing {
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
                index = self.choose(snap, key, usable)?;
            }
        }
        Ok((index, time_it.then_some(now)))
    }

    /// Two distinct random usable endpoints (the same one when only one is),
    /// each uniform among the usable (`usable` `None`: all are). When none
    /// is usable any more (another thread ejected the last one since the
    /// pick counted them), the first draw: a pick never fails for it.
    #[inline]
    fn two_choices(&self, snap: &Snapshot, usable: Option<Usable<'_>>) -> (usize, usize) {
        let n = snap.endpoints.len();
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
        let Some(usable) = usable.filter(|u| !(u(a0) && u(b0))) else {
            return (a0, b0);
        };
        let a = self.uniform_usable(snap, usable).unwrap_or(a0);
        let other = |i: usize| i != a && usable(i);
        let b = self.uniform_usable(snap, &other).unwrap_or(a);
        (a, b)
    }

    /// One endpoint uniform among those that pass `usable`, if any does.
    fn uniform_usable(&self, snap: &Snapshot, usable: Usable<'_>) -> Option<usize> {
        let n = snap.endpoints.len();
        draw_usable(|| below(self.random() as u32, n), usable)
            .or_else(|| scan_usable(snap, false, usable, |t| scaled(self.random(), t)))
    }

    /// Round robin's next usable turn: skipping unusable turns keeps the
    /// rest in their proportions; when most turns are ejected, a weighted
    /// draw among the rest; when none is usable any more, the first turn.
    #[inline]
    fn next_turn(&self, snap: &Snapshot, usable: Option<Usable<'_>>) -> usize {
        let order = &snap.turns;
        let n = snap.endpoints.len() as u64;
        let weighted = !matches!(order, Turns::Rotation);
        let turn = || {
            let t = self.turn.next(1);
            match order {
                Turns::Rotation => (t % n) as usize,
                _ => order.at(t),
            }
        };
        let first = turn();
        match usable {
            Some(usable) if !usable(first) => draw_usable(turn, usable)
                .or_else(|| scan_usable(snap, weighted, usable, |t| scaled(self.random(), t)))
                .unwrap_or(first),
            _ => first,
        }
    }

    /// The policy's choice among the endpoints that pass `usable` (`None`:
    /// all do, the common case, with no check per candidate).
    #[inline]
    fn choose(
        &self,
        snap: &Snapshot,
        key: Option<&[u8]>,
        usable: Option<Usable<'_>>,
    ) -> Result<usize, BalanceError> {
        let n = snap.endpoints.len();
        Ok(match self.policy {
            Policy::Random => {
                let draw = || {
                    if snap.uniform {
                        below(self.random() as u32, n)
                    } else {
                        snap.alias.choose(self.random())
                    }
                };
                let first = draw();
                match usable {
                    Some(usable) if !usable(first) => draw_usable(draw, usable)
                        .or_else(|| {
                            scan_usable(snap, !snap.uniform, usable, |t| scaled(self.random(), t))
                        })
                        .unwrap_or(first),
                    _ => first,
                }
            }
            Policy::RoundRobin | Policy::WeightedRoundRobin => self.next_turn(snap, usable),
            Policy::LeastConnections => {
                let (a, b) = self.two_choices(snap, usable);
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
                let (a, b) = self.two_choices(snap, usable);
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
                        // In-flight counts add up to the picks alive, far
                        // below 2^64: the u64 sum cannot wrap.
                        let mut total = 0u64;
                        let loads: Vec<u64> = snap
                            .endpoints
                            .iter()
                            .map(|e| {
                                let l = e.stats.in_flight();
                                total = total.wrapping_add(l);
                                l
                            })
                            .collect();
                        // The policy's bound was checked when it was made.
                        ring.index_bounded_summed(h, &loads, u128::from(total), b - 1.0)
                    }
                    None => ring.index_for_hash(h),
                };
                match usable {
                    Some(usable) if !usable(first) => {
                        let mut order = Vec::with_capacity(n);
                        ring.indexes_for_hash(h, n, &mut order);
                        order.into_iter().find(|&i| usable(i)).unwrap_or(first)
                    }
                    _ => first,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Balancer, Policy};

    /// A pick counts the healthy endpoints before it draws; another thread
    /// may eject the last of them in between. The pick must still choose
    /// (as panic mode would), never report an empty balancer.
    #[test]
    fn a_pick_whose_candidates_were_all_ejected_meanwhile_still_chooses() {
        for policy in [
            Policy::Random,
            Policy::RoundRobin,
            Policy::WeightedRoundRobin,
            Policy::LeastConnections,
            Policy::LeastResponseTime,
        ] {
            for weights in [[1, 1], [1, 3]] {
                let b = Balancer::new(policy).unwrap();
                b.add("a", weights[0]).unwrap();
                b.add("b", weights[1]).unwrap();
                let snap = b.inner.snapshot.load();
                let none_usable: &dyn Fn(usize) -> bool = &|_| false;
                for _ in 0..50 {
                    let i = b.inner.choose(&snap, None, Some(none_usable));
                    assert!(matches!(i, Ok(0 | 1)), "{policy:?} {weights:?}: {i:?}");
                }
            }
        }
    }
}
