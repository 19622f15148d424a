//! The balancer: immutable snapshots of the endpoint set, published
//! atomically, and lock-free picks over them.

use super::clock::{Clock, SystemClock};
use super::pick::{Holder, Pick};
use super::policy::{Health, Policy};
use super::stats::{Attachment, EndpointId, EndpointStats, Stats};
use crate::hashing::{mix64, HashError, HashRing};
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use thiserror::Error;

/// Why a balancer call failed. Nothing changed when it did.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum BalanceError {
    /// There is no endpoint to pick.
    #[error("no endpoints")]
    Empty,
    /// No endpoint has that name (or id, shown as `#id`).
    #[error("unknown endpoint {0:?}")]
    Unknown(String),
    /// The name is taken.
    #[error("endpoint {0:?} already exists")]
    Duplicate(String),
    /// Weights must be at least 1.
    #[error("endpoint {0:?}: weight must be at least 1")]
    ZeroWeight(String),
    /// Consistent hashing needs a key.
    #[error("the consistent_hash policy needs a key")]
    KeyRequired,
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    Invalid(String),
    /// The hash ring could not be built.
    #[error(transparent)]
    Hash(#[from] HashError),
}

#[derive(Debug)]
struct Endpoint {
    weight: u32,
    /// Statistics and name, shared by every snapshot holding the endpoint.
    stats: Arc<Stats>,
}

/// A counter kept on its own pair of cache lines (CPUs fetch lines in
/// adjacent pairs, so 64 bytes apart still interfere).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded(AtomicU64);

const SHARDS: usize = 8;

/// Counters sharded by thread, so threads picking at once do not fight over
/// one cache line. One thread always uses the same shard, so its sequence
/// is exact (round robin in order, the smooth weighted cycle as nginx's).
///
/// A step is a plain load and store, not an atomic add: a locked
/// read-modify-write costs as much as the rest of a round-robin choice. Two
/// threads that share a shard (more than eight threads) may now and then
/// read the same value and make the same choice twice; a value is never out
/// of range and nothing else depends on the count.
#[derive(Debug, Default)]
struct Sharded([Padded; SHARDS]);

fn shard() -> usize {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static SHARD: usize = (NEXT.fetch_add(1, Relaxed) as usize) % SHARDS;
    }
    SHARD.with(|s| *s)
}

impl Sharded {
    fn seeded(seed: u64) -> Self {
        let s = Sharded::default();
        for (i, c) in s.0.iter().enumerate() {
            c.0.store(mix64(seed ^ i as u64), Relaxed);
        }
        s
    }

    fn next(&self, step: u64) -> u64 {
        let c = &self.0[shard()].0;
        let v = c.load(Relaxed);
        c.store(v.wrapping_add(step), Relaxed);
        v
    }
}

#[derive(Debug, Default)]
struct Snapshot {
    endpoints: Vec<Endpoint>,
    /// Smooth weighted round robin: one cycle of picks.
    wrr: Vec<u32>,
    ring: Option<HashRing>,
}

pub(super) struct Inner {
    snapshot: ArcSwap<Snapshot>,
    policy: Policy,
    pub(super) health: Health,
    pub(super) clock: Arc<dyn Clock>,
    /// The latency EWMA's time constant in ns, and its inverse.
    pub(super) tau_ns: f64,
    inv_tau: f64,
    /// The id the next added endpoint gets.
    next_id: AtomicU64,
    rng: Sharded,
    turn: Sharded,
    /// Latest end of any ejection (0: none active), so picks skip the health
    /// scan (and the clock) while nothing is ejected.
    ejected_horizon: AtomicU64,
    /// Latest end of any slow-start window (0: none active).
    warming_horizon: AtomicU64,
    /// Serializes writers only; picks never take it.
    writer: Mutex<()>,
}

/// A load balancer over named, weighted endpoints. Thread-safe and cheap to
/// clone (clones share it). Picks never take a lock an update holds:
/// updates build a new immutable snapshot and publish it atomically, and
/// per-endpoint statistics survive updates.
#[derive(Clone)]
pub struct Balancer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Balancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balancer")
            .field("policy", &self.inner.policy)
            .field("endpoints", &self.inner.snapshot.load().endpoints.len())
            .finish()
    }
}

/// A number below `n` from 32 random bits, by multiplication rather than
/// division (Lemire's reduction; the bias, n / 2^32, is immaterial here).
/// `n` must be below 2^32.
#[inline]
fn below(random: u32, n: usize) -> usize {
    ((random as u64 * n as u64) >> 32) as usize
}

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

/// One cycle of nginx's smooth weighted round robin.
fn smooth_wrr_cycle(weights: &[u32]) -> Vec<u32> {
    let total: i64 = weights.iter().map(|&w| w as i64).sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..weights.len() {
            current[i] += weights[i] as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best as u32);
    }
    out
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl Inner {
    fn random(&self) -> u64 {
        mix64(self.rng.next(0x9E37_79B9_7F4A_7C15))
    }

    pub(super) fn try_eject(&self, stats: &Arc<Stats>, now: u64) {
        let _w = self.writer.lock();
        if stats.is_ejected(now) {
            return;
        }
        let snap = self.snapshot.load();
        let n = snap.endpoints.len();
        let ejected = snap
            .endpoints
            .iter()
            .filter(|e| e.stats.is_ejected(now))
            .count();
        if (ejected + 1) as f64 > self.health.max_ejected_share * n as f64 {
            return;
        }
        let k = stats.ejections.fetch_add(1, Relaxed) as u64 + 1;
        let base = self.health.base_ejection.as_nanos() as u64;
        let span = base
            .saturating_mul(k)
            .min(self.health.max_ejection.as_nanos() as u64);
        stats.ejected_until.store(now + span, Relaxed);
        stats.warm_from.store(now + span, Relaxed);
        stats.consecutive_failures.store(0, Relaxed);
        self.ejected_horizon.fetch_max(now + span, Relaxed);
        let window = self.health.slow_start.as_nanos() as u64;
        if window > 0 {
            self.warming_horizon.fetch_max(now + span + window, Relaxed);
        }
    }

    fn build(&self, endpoints: Vec<Endpoint>) -> Result<Snapshot, BalanceError> {
        let mut snap = Snapshot {
            endpoints,
            ..Snapshot::default()
        };
        if snap.endpoints.is_empty() {
            return Ok(snap);
        }
        match self.policy {
            Policy::WeightedRoundRobin => {
                let g = snap
                    .endpoints
                    .iter()
                    .fold(0, |g, e| gcd(g, e.weight))
                    .max(1);
                let weights: Vec<u32> = snap.endpoints.iter().map(|e| e.weight / g).collect();
                let total: u64 = weights.iter().map(|&w| w as u64).sum();
                if total > 1 << 22 {
                    return Err(BalanceError::Invalid(format!(
                        "weights add up to {total} after dividing by their gcd; at most 2^22"
                    )));
                }
                snap.wrr = smooth_wrr_cycle(&weights);
            }
            Policy::ConsistentHash { algorithm, .. } => {
                let eps: Vec<(&str, u32)> = snap
                    .endpoints
                    .iter()
                    .map(|e| (&*e.stats.name, e.weight))
                    .collect();
                snap.ring = Some(HashRing::new(algorithm, &eps)?);
            }
            _ => {}
        }
        Ok(snap)
    }
}

/// An endpoint named by its name or its id.
#[derive(Clone, Copy)]
enum Target<'a> {
    Name(&'a str),
    Id(EndpointId),
}

impl Target<'_> {
    fn is(&self, stats: &Stats) -> bool {
        match *self {
            Target::Name(name) => &*stats.name == name,
            Target::Id(id) => stats.id == id.0,
        }
    }

    fn unknown(&self) -> BalanceError {
        BalanceError::Unknown(self.to_string())
    }
}

impl std::fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Name(name) => f.write_str(name),
            Target::Id(id) => write!(f, "{id}"),
        }
    }
}

impl Balancer {
    /// A balancer with `policy`, default health settings, the system clock
    /// and a seed of its own ([`crate::rng::entropy_seed`]): two processes
    /// do not pick in lockstep. Use [`Balancer::with_options`] to replay.
    ///
    /// # Errors
    /// [`BalanceError::Invalid`] for a bounded-load factor that is not > 1.
    pub fn new(policy: Policy) -> Result<Self, BalanceError> {
        Self::with_options(
            policy,
            Health::default(),
            Arc::new(SystemClock::default()),
            crate::rng::entropy_seed(),
        )
    }

    /// A balancer with every option: health settings, a clock (tests inject
    /// a [`super::ManualClock`]) and the seed of its randomness.
    ///
    /// # Errors
    /// [`BalanceError::Invalid`] for out-of-range settings.
    pub fn with_options(
        policy: Policy,
        health: Health,
        clock: Arc<dyn Clock>,
        seed: u64,
    ) -> Result<Self, BalanceError> {
        if let Policy::ConsistentHash { bound: Some(b), .. } = policy {
            if !(b > 1.0 && b.is_finite()) {
                return Err(BalanceError::Invalid(format!(
                    "bound must be greater than 1 (it is 1 + epsilon), got {b}"
                )));
            }
        }
        for (name, v) in [
            ("max_ejected_share", health.max_ejected_share),
            ("panic_threshold", health.panic_threshold),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(BalanceError::Invalid(format!(
                    "{name} must be within 0..=1, got {v}"
                )));
            }
        }
        if health.ewma_decay.is_zero() {
            return Err(BalanceError::Invalid("ewma_decay must be positive".into()));
        }
        Ok(Balancer {
            inner: Arc::new(Inner {
                snapshot: ArcSwap::from_pointee(Snapshot::default()),
                policy,
                health,
                clock,
                tau_ns: health.ewma_decay.as_nanos() as f64,
                inv_tau: 1.0 / health.ewma_decay.as_nanos() as f64,
                rng: Sharded::seeded(seed),
                turn: Sharded::default(),
                next_id: AtomicU64::new(1),
                ejected_horizon: AtomicU64::new(0),
                warming_horizon: AtomicU64::new(0),
                writer: Mutex::new(()),
            }),
        })
    }

    /// The policy.
    pub fn policy(&self) -> Policy {
        self.inner.policy
    }

    /// Number of endpoints.
    pub fn len(&self) -> usize {
        self.inner.snapshot.load().endpoints.len()
    }

    /// True with no endpoints.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Endpoint names in order.
    pub fn names(&self) -> Vec<String> {
        self.inner
            .snapshot
            .load()
            .endpoints
            .iter()
            .map(|e| e.stats.name.to_string())
            .collect()
    }

    fn update(
        &self,
        f: impl FnOnce(&mut Vec<Endpoint>) -> Result<(), BalanceError>,
    ) -> Result<(), BalanceError> {
        let _w = self.inner.writer.lock();
        let cur = self.inner.snapshot.load();
        let mut eps: Vec<Endpoint> = cur
            .endpoints
            .iter()
            .map(|e| Endpoint {
                weight: e.weight,
                stats: Arc::clone(&e.stats),
            })
            .collect();
        f(&mut eps)?;
        let snap = self.inner.build(eps)?;
        let old = self.inner.snapshot.swap(Arc::new(snap));
        // The old snapshot may hold the last reference to a removed
        // endpoint's attachment, whose drop may run caller code (a Python
        // __del__) that calls back into this balancer: drop it unlocked.
        drop(_w);
        drop(old);
        Ok(())
    }

    /// Adds an endpoint and returns its id. Others keep their statistics.
    ///
    /// # Errors
    /// [`BalanceError::ZeroWeight`] or [`BalanceError::Duplicate`].
    pub fn add(&self, name: &str, weight: u32) -> Result<EndpointId, BalanceError> {
        self.add_endpoint(name, weight, None)
    }

    /// Adds an endpoint carrying `attachment`, which its picks hand back
    /// ([`Pick::attachment`], [`Balancer::select_with`]); like
    /// [`Balancer::add`] otherwise. The attachment is dropped when the
    /// endpoint is removed and its last pick finished.
    ///
    /// # Errors
    /// [`BalanceError::ZeroWeight`] or [`BalanceError::Duplicate`].
    pub fn add_with(
        &self,
        name: &str,
        weight: u32,
        attachment: Attachment,
    ) -> Result<EndpointId, BalanceError> {
        self.add_endpoint(name, weight, Some(attachment))
    }

    fn add_endpoint(
        &self,
        name: &str,
        weight: u32,
        attachment: Option<Attachment>,
    ) -> Result<EndpointId, BalanceError> {
        if weight == 0 {
            return Err(BalanceError::ZeroWeight(name.into()));
        }
        let now = self.inner.clock.now_ns();
        let mut id = 0;
        self.update(|eps| {
            if eps.iter().any(|e| &*e.stats.name == name) {
                return Err(BalanceError::Duplicate(name.into()));
            }
            // Taken under the writer lock, after the duplicate check: a
            // duplicate burns no id (an add the hash ring refuses, such as a
            // weight under jump hashing, does; ids stay unique either way).
            id = self.inner.next_id.fetch_add(1, Relaxed);
            eps.push(Endpoint {
                weight,
                stats: Arc::new(Stats::new(name, id, attachment, now)),
            });
            Ok(())
        })?;
        let window = self.inner.health.slow_start.as_nanos() as u64;
        if window > 0 {
            self.inner.warming_horizon.fetch_max(now + window, Relaxed);
        }
        Ok(EndpointId(id))
    }

    /// Removes an endpoint. Picks already made of it finish normally.
    ///
    /// # Errors
    /// [`BalanceError::Unknown`].
    pub fn remove(&self, name: &str) -> Result<(), BalanceError> {
        self.remove_where(Target::Name(name))
    }

    /// Removes the endpoint with id `id`, like [`Balancer::remove`].
    ///
    /// # Errors
    /// [`BalanceError::Unknown`].
    pub fn remove_id(&self, id: EndpointId) -> Result<(), BalanceError> {
        self.remove_where(Target::Id(id))
    }

    fn remove_where(&self, target: Target<'_>) -> Result<(), BalanceError> {
        self.update(|eps| {
            let before = eps.len();
            eps.retain(|e| !target.is(&e.stats));
            if eps.len() == before {
                return Err(target.unknown());
            }
            Ok(())
        })
    }

    /// Changes an endpoint's weight, keeping its statistics.
    ///
    /// # Errors
    /// [`BalanceError::ZeroWeight`] or [`BalanceError::Unknown`].
    pub fn set_weight(&self, name: &str, weight: u32) -> Result<(), BalanceError> {
        self.set_weight_where(Target::Name(name), weight)
    }

    /// Changes the weight of the endpoint with id `id`, like
    /// [`Balancer::set_weight`].
    ///
    /// # Errors
    /// [`BalanceError::ZeroWeight`] or [`BalanceError::Unknown`].
    pub fn set_weight_id(&self, id: EndpointId, weight: u32) -> Result<(), BalanceError> {
        self.set_weight_where(Target::Id(id), weight)
    }

    fn set_weight_where(&self, target: Target<'_>, weight: u32) -> Result<(), BalanceError> {
        if weight == 0 {
            return Err(BalanceError::ZeroWeight(target.to_string()));
        }
        self.update(|eps| match eps.iter_mut().find(|e| target.is(&e.stats)) {
            Some(e) => {
                e.weight = weight;
                Ok(())
            }
            None => Err(target.unknown()),
        })
    }

    /// Statistics of every endpoint.
    pub fn stats(&self) -> Vec<EndpointStats> {
        let now = self.inner.clock.now_ns();
        let tau = self.inner.tau_ns;
        self.inner
            .snapshot
            .load()
            .endpoints
            .iter()
            .map(|e| EndpointStats {
                id: EndpointId(e.stats.id),
                name: e.stats.name.to_string(),
                weight: e.weight,
                in_flight: e.stats.in_flight(),
                ewma_latency: e.stats.ewma_ns(now, tau) / 1e9,
                successes: e.stats.successes.load(Relaxed),
                failures: e.stats.failures.load(Relaxed),
                ejected: e.stats.is_ejected(now),
                ejections: e.stats.ejections.load(Relaxed),
            })
            .collect()
    }

    /// Picks an endpoint (`key` is needed by consistent hashing and ignored
    /// by the others). Lock-free. The pick counts as in flight until
    /// finished or dropped, and is timed: [`Pick::finish`] records the
    /// latency since the pick as well as the outcome.
    ///
    /// # Errors
    /// [`BalanceError::Empty`] or [`BalanceError::KeyRequired`].
    pub fn pick(&self, key: Option<&[u8]>) -> Result<Pick<'_>, BalanceError> {
        self.pick_with(key, Holder::Borrowed(&self.inner), true)
    }

    /// Like [`Balancer::pick`] without the clock read (about as costly as
    /// the rest of a round-robin pick): [`Pick::finish`] then records only
    /// the outcome, and [`Pick::finish_with_latency`] a latency the caller
    /// measured. `least_response_time` picks are timed regardless, since
    /// the policy needs the clock.
    ///
    /// # Errors
    /// [`BalanceError::Empty`] or [`BalanceError::KeyRequired`].
    pub fn pick_untimed(&self, key: Option<&[u8]>) -> Result<Pick<'_>, BalanceError> {
        // least_response_time learns only from timed picks.
        let time_it = self.inner.policy == Policy::LeastResponseTime;
        self.pick_with(key, Holder::Borrowed(&self.inner), time_it)
    }

    /// Like [`Balancer::pick`], but the pick owns a reference to the
    /// balancer, so it can outlive this borrow (one reference-count update
    /// more per pick). The C and Python adapters use it.
    ///
    /// # Errors
    /// [`BalanceError::Empty`] or [`BalanceError::KeyRequired`].
    pub fn pick_owned(&self, key: Option<&[u8]>) -> Result<Pick<'static>, BalanceError> {
        self.pick_with(key, Holder::Owned(Arc::clone(&self.inner)), true)
    }

    /// Chooses an endpoint as [`Balancer::pick`] would, without counting it
    /// in flight or recording anything: for callers that want only the
    /// choice (`least_connections` then sees no load from it). Lock-free.
    ///
    /// # Errors
    /// [`BalanceError::Empty`] or [`BalanceError::KeyRequired`].
    pub fn select(&self, key: Option<&[u8]>) -> Result<EndpointId, BalanceError> {
        self.select_with(key, |id, _| id)
    }

    /// Like [`Balancer::select`], handing `f` the chosen endpoint's id and
    /// attachment (borrowed: no reference count changes hands).
    ///
    /// # Errors
    /// [`BalanceError::Empty`] or [`BalanceError::KeyRequired`].
    pub fn select_with<R>(
        &self,
        key: Option<&[u8]>,
        f: impl FnOnce(EndpointId, Option<&(dyn std::any::Any + Send + Sync)>) -> R,
    ) -> Result<R, BalanceError> {
        let snap = self.inner.snapshot.load();
        let (index, _) = self.pick_index(&snap, key, false)?;
        let stats = &snap.endpoints[index].stats;
        Ok(f(
            EndpointId(stats.id),
            stats.attachment.as_ref().map(|a| &*a.0),
        ))
    }

    /// Calls `f` with the id, name and attachment of every endpoint, in
    /// order, from one snapshot.
    pub fn for_each_endpoint(
        &self,
        mut f: impl FnMut(EndpointId, &str, Option<&(dyn std::any::Any + Send + Sync)>),
    ) {
        for e in &self.inner.snapshot.load().endpoints {
            f(
                EndpointId(e.stats.id),
                &e.stats.name,
                e.stats.attachment.as_ref().map(|a| &*a.0),
            );
        }
    }

    fn pick_with<'a>(
        &self,
        key: Option<&[u8]>,
        holder: Holder<'a>,
        time_it: bool,
    ) -> Result<Pick<'a>, BalanceError> {
        let snap = self.inner.snapshot.load();
        let (index, now) = self.pick_index(&snap, key, time_it)?;
        let stats = Arc::clone(&snap.endpoints[index].stats);
        stats.in_flight.fetch_add(1, Relaxed);
        Ok(Pick {
            inner: holder,
            index,
            stats,
            started: now,
            done: false,
        })
    }

    /// The index of the chosen endpoint, and the clock reading when
    /// `time_it`. No policy needs the clock to choose; ejections and slow
    /// start read it while they last.
    fn pick_index(
        &self,
        snap: &Snapshot,
        key: Option<&[u8]>,
        time_it: bool,
    ) -> Result<(usize, Option<u64>), BalanceError> {
        let inner = &*self.inner;
        let n = snap.endpoints.len();
        if n == 0 {
            return Err(BalanceError::Empty);
        }
        let timed = time_it;
        let ejected_until = inner.ejected_horizon.load(Relaxed);
        let warming_until = inner.warming_horizon.load(Relaxed);
        // The clock is read only when something needs it.
        let now = if timed || ejected_until != 0 || warming_until != 0 {
            inner.clock.now_ns()
        } else {
            0
        };
        if ejected_until != 0 && now >= ejected_until {
            let _ = inner
                .ejected_horizon
                .compare_exchange(ejected_until, 0, Relaxed, Relaxed);
        }
        if warming_until != 0 && now >= warming_until {
            let _ = inner
                .warming_horizon
                .compare_exchange(warming_until, 0, Relaxed, Relaxed);
        }
        let ejections = ejected_until != 0 && now < ejected_until;
        let health = &inner.health;
        let panic = ejections && {
            let healthy = snap
                .endpoints
                .iter()
                .filter(|e| !e.stats.is_ejected(now))
                .count();
            // Too few healthy endpoints: use them all.
            (healthy as f64) < health.panic_threshold * n as f64 || healthy == 0
        };
        let usable = |i: usize| !ejections || panic || !snap.endpoints[i].stats.is_ejected(now);
        let mut index = self.choose(snap, key, &usable)?;
        // Slow start: a warming endpoint is passed over with the probability
        // it has not yet earned, at most a few times.
        let hashing = matches!(inner.policy, Policy::ConsistentHash { .. });
        if warming_until != 0 && now < warming_until && !hashing {
            let window = health.slow_start.as_nanos() as f64;
            for _ in 0..4 {
                let from = snap.endpoints[index].stats.warm_from.load(Relaxed);
                let share = (now.saturating_sub(from) as f64 / window).clamp(0.0, 1.0);
                if share >= 1.0 {
                    break;
                }
                let roll = (inner.random() >> 11) as f64 / (1u64 << 53) as f64;
                if roll < share.max(0.05) {
                    break;
                }
                index = self.choose(snap, key, &usable)?;
            }
        }
        Ok((index, timed.then_some(now)))
    }

    /// Two distinct random usable endpoints (the same one when only one is).
    fn two_choices(&self, n: usize, usable: &dyn Fn(usize) -> bool) -> (usize, usize) {
        let r = self.inner.random();
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

    fn choose(
        &self,
        snap: &Snapshot,
        key: Option<&[u8]>,
        usable: &dyn Fn(usize) -> bool,
    ) -> Result<usize, BalanceError> {
        let n = snap.endpoints.len();
        let first_usable_from = |start: usize| first_usable(start, n, usable).unwrap_or(start);
        Ok(match self.inner.policy {
            Policy::Random => first_usable_from(below(self.inner.random() as u32, n)),
            Policy::RoundRobin => first_usable_from((self.inner.turn.next(1) % n as u64) as usize),
            Policy::WeightedRoundRobin => {
                let len = snap.wrr.len() as u64;
                let mut pick = 0;
                for _ in 0..len.min(4 * n as u64) {
                    let t = self.inner.turn.next(1) % len;
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
                let (la, lb) = (
                    snap.endpoints[a].stats.in_flight(),
                    snap.endpoints[b].stats.in_flight(),
                );
                if lb < la {
                    b
                } else {
                    a
                }
            }
            Policy::LeastResponseTime => {
                let (a, b) = self.two_choices(n, usable);
                let (sa, sb) = (&snap.endpoints[a].stats, &snap.endpoints[b].stats);
                if sb.costs_less_than(sa, self.inner.inv_tau) {
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
