//! The balancer: immutable snapshots of the endpoint set, published
//! atomically, and lock-free picks over them.

use super::clock::{Clock, SystemClock};
use super::pick::{Holder, Pick};
use super::policy::{nanos, Health, Policy};
use super::snapshot::{Endpoint, Snapshot};
use super::stats::{Attachment, EndpointId, EndpointStats, Stats};
use crate::hashing::{mix64, HashError};
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use std::collections::HashSet;
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
    #[error("invalid {setting}: {reason}")]
    Invalid {
        /// The setting's name, as in [`Health`] and [`Policy`] (`bound`,
        /// `max_ejected_share`, `weights`, ...).
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The hash ring could not be built.
    #[error(transparent)]
    Hash(#[from] HashError),
}

impl BalanceError {
    pub(crate) fn invalid(setting: &'static str, reason: impl Into<String>) -> Self {
        BalanceError::Invalid {
            setting,
            reason: reason.into(),
        }
    }
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
pub(super) struct Sharded([Padded; SHARDS]);

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

    pub(super) fn next(&self, step: u64) -> u64 {
        let c = &self.0[shard()].0;
        let v = c.load(Relaxed);
        c.store(v.wrapping_add(step), Relaxed);
        v
    }
}

pub(super) struct Inner {
    pub(super) snapshot: ArcSwap<Snapshot>,
    pub(super) policy: Policy,
    pub(super) health: Health,
    pub(super) clock: Arc<dyn Clock>,
    /// The latency EWMA's time constant in ns, and its inverse.
    pub(super) tau_ns: f64,
    pub(super) inv_tau: f64,
    /// The slow-start window in ns (saturated; 0: none).
    pub(super) slow_start_ns: u64,
    /// The id the next added endpoint gets; changed under `writer` only.
    next_id: AtomicU64,
    pub(super) rng: Sharded,
    pub(super) turn: Sharded,
    /// Latest end of any ejection (0: none active), so picks skip the health
    /// scan (and the clock) while nothing is ejected.
    pub(super) ejected_horizon: AtomicU64,
    /// Latest end of any slow-start window (0: none active).
    pub(super) warming_horizon: AtomicU64,
    /// Serializes writers only; picks never take it, and neither does the
    /// ejection a finished pick may cause, so a long rebuild (a Maglev table
    /// of thousands of endpoints) delays no pick and no finish.
    pub(super) writer: Mutex<()>,
    /// Serializes ejection decisions, so the ejected share stays capped.
    ejection: Mutex<()>,
}

/// A load balancer over named, weighted endpoints. Thread-safe and cheap to
/// clone (clones share it). Picks never take a lock an update holds:
/// updates build a new immutable snapshot and publish it atomically, and
/// per-endpoint statistics survive updates.
///
/// Every call that returns an error has changed nothing (no endpoint added,
/// no id used up, no weight changed).
///
/// What each policy does with weights is on [`Policy`]'s variants: every
/// policy honours them.
#[derive(Clone)]
pub struct Balancer {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for Balancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balancer")
            .field("policy", &self.inner.policy)
            .field("endpoints", &self.inner.snapshot.load().endpoints.len())
            .finish()
    }
}

/// An endpoint to add with [`Balancer::extend`].
#[derive(Clone)]
pub struct NewEndpoint<'a> {
    /// Its name, unique within the balancer.
    pub name: &'a str,
    /// Its weight, at least 1.
    pub weight: u32,
    /// What its picks hand back, if anything.
    pub attachment: Option<Attachment>,
}

impl<'a> NewEndpoint<'a> {
    /// An endpoint named `name` with `weight` and no attachment.
    pub fn new(name: &'a str, weight: u32) -> Self {
        NewEndpoint {
            name,
            weight,
            attachment: None,
        }
    }

    /// The same endpoint carrying `attachment`.
    pub fn with_attachment(mut self, attachment: Attachment) -> Self {
        self.attachment = Some(attachment);
        self
    }
}

impl std::fmt::Debug for NewEndpoint<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewEndpoint")
            .field("name", &self.name)
            .field("weight", &self.weight)
            .field("attachment", &self.attachment.is_some())
            .finish()
    }
}

/// An endpoint named by its name or its id.
#[derive(Clone, Copy)]
enum Target<'a> {
    Name(&'a str),
    Id(EndpointId),
}

impl Target<'_> {
    fn find(&self, snap: &Snapshot) -> Result<usize, BalanceError> {
        match *self {
            Target::Name(name) => snap.index_of_name(name),
            Target::Id(id) => snap.index_of_id(id.0),
        }
        .ok_or_else(|| BalanceError::Unknown(self.to_string()))
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

impl Inner {
    pub(super) fn random(&self) -> u64 {
        mix64(self.rng.next(0x9E37_79B9_7F4A_7C15))
    }

    /// Ejects the endpoint of `stats` at `now` for its next ejection time,
    /// unless that would eject more than the allowed share.
    pub(super) fn try_eject(&self, stats: &Arc<Stats>, now: u64) {
        let _e = self.ejection.lock();
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
        let k = stats.ejections.fetch_add(1, Relaxed).saturating_add(1) as u64;
        let span = nanos(self.health.base_ejection)
            .saturating_mul(k)
            .min(nanos(self.health.max_ejection));
        // Saturated: an ejection past what the clock can count never ends.
        let until = now.saturating_add(span);
        stats.ejected_until.store(until, Relaxed);
        stats.warm_from.store(until, Relaxed);
        stats.consecutive_failures.store(0, Relaxed);
        self.ejected_horizon.fetch_max(until, Relaxed);
        if self.slow_start_ns > 0 {
            self.warming_horizon
                .fetch_max(until.saturating_add(self.slow_start_ns), Relaxed);
        }
    }
}

impl Balancer {
    /// A balancer with `policy`, default health settings, the system clock
    /// and a seed of its own ([`crate::rng::entropy_seed`]): two processes
    /// do not pick in lockstep. Use [`Balancer::with_options`] to replay.
    ///
    /// # Errors
    /// [`BalanceError::Invalid`] or [`BalanceError::Hash`] for a bad policy
    /// parameter ([`Policy::validate`]).
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
    /// [`BalanceError::Invalid`] or [`BalanceError::Hash`] naming the first
    /// bad setting ([`Policy::validate`], [`Health::validate`]).
    pub fn with_options(
        policy: Policy,
        health: Health,
        clock: Arc<dyn Clock>,
        seed: u64,
    ) -> Result<Self, BalanceError> {
        policy.validate()?;
        health.validate()?;
        // Saturated like every duration: a decay past 584 years is "never".
        let tau_ns = nanos(health.ewma_decay) as f64;
        Ok(Balancer {
            inner: Arc::new(Inner {
                snapshot: ArcSwap::from_pointee(Snapshot::default()),
                policy,
                health,
                clock,
                tau_ns,
                inv_tau: 1.0 / tau_ns,
                slow_start_ns: nanos(health.slow_start),
                rng: Sharded::seeded(seed),
                turn: Sharded::default(),
                next_id: AtomicU64::new(1),
                ejected_horizon: AtomicU64::new(0),
                warming_horizon: AtomicU64::new(0),
                writer: Mutex::new(()),
                ejection: Mutex::new(()),
            }),
        })
    }

    /// The policy.
    pub fn policy(&self) -> Policy {
        self.inner.policy
    }

    /// The health settings.
    pub fn health(&self) -> Health {
        self.inner.health
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

    /// True when an endpoint is named `name` (a map lookup).
    pub fn contains(&self, name: &str) -> bool {
        self.inner.snapshot.load().index_of_name(name).is_some()
    }

    /// The name of the endpoint with id `id` (a map lookup).
    pub fn name_of(&self, id: EndpointId) -> Option<String> {
        let snap = self.inner.snapshot.load();
        snap.index_of_id(id.0)
            .map(|i| snap.endpoints[i].stats.name.to_string())
    }

    /// Builds the next endpoint list with `f` from the current snapshot,
    /// then the next snapshot, publishes it and calls `published` with what
    /// `f` returned; holds the writer lock throughout, which only other
    /// updates take. On an error nothing is published and `published` is
    /// not called.
    fn update<T>(
        &self,
        f: impl FnOnce(&Snapshot, &mut Vec<Endpoint>) -> Result<T, BalanceError>,
        published: impl FnOnce(&T),
    ) -> Result<T, BalanceError> {
        let w = self.inner.writer.lock();
        let cur = self.inner.snapshot.load_full();
        let mut eps = cur.shared_endpoints();
        let out = f(&cur, &mut eps)?;
        let snap = Snapshot::build(self.inner.policy, eps)?;
        let old = self.inner.snapshot.swap(Arc::new(snap));
        published(&out);
        // The old snapshot may hold the last reference to a removed
        // endpoint's attachment, whose drop may run caller code (a Python
        // __del__) that calls back into this balancer: drop it unlocked.
        drop(w);
        drop(old);
        drop(cur);
        Ok(out)
    }

    /// Adds an endpoint and returns its id. Others keep their statistics.
    ///
    /// # Errors
    /// [`BalanceError::ZeroWeight`], [`BalanceError::Duplicate`], or what
    /// the policy refuses ([`Balancer::extend`]).
    pub fn add(&self, name: &str, weight: u32) -> Result<EndpointId, BalanceError> {
        self.add_one(NewEndpoint::new(name, weight))
    }

    /// Adds an endpoint carrying `attachment`, which its picks hand back
    /// ([`Pick::attachment`], [`Balancer::select_with`]); like
    /// [`Balancer::add`] otherwise. The attachment is dropped when the
    /// endpoint is removed and its last pick finished.
    ///
    /// # Errors
    /// As [`Balancer::add`].
    pub fn add_with(
        &self,
        name: &str,
        weight: u32,
        attachment: Attachment,
    ) -> Result<EndpointId, BalanceError> {
        self.add_one(NewEndpoint::new(name, weight).with_attachment(attachment))
    }

    fn add_one(&self, endpoint: NewEndpoint<'_>) -> Result<EndpointId, BalanceError> {
        let ids = self.extend([endpoint])?;
        Ok(ids[0])
    }

    /// Adds every endpoint of `endpoints` at once, in order, and returns
    /// their ids: one rebuild of the policy's tables however many there are
    /// (adding 2,000 endpoints one at a time under consistent hashing
    /// rebuilds the table 2,000 times). All or nothing: on an error none is
    /// added and no id is used up. Ids are consecutive and never reused.
    ///
    /// # Errors
    /// [`BalanceError::ZeroWeight`], [`BalanceError::Duplicate`] (a name in
    /// the balancer or twice in `endpoints`) or [`BalanceError::Hash`]
    /// (weights under jump hashing, a ring too large, more endpoints than a
    /// Maglev table has slots).
    pub fn extend<'a>(
        &self,
        endpoints: impl IntoIterator<Item = NewEndpoint<'a>>,
    ) -> Result<Vec<EndpointId>, BalanceError> {
        let endpoints: Vec<NewEndpoint<'a>> = endpoints.into_iter().collect();
        if endpoints.is_empty() {
            return Ok(Vec::new());
        }
        let mut batch: HashSet<&str> = HashSet::with_capacity(endpoints.len());
        for e in &endpoints {
            if e.weight == 0 {
                return Err(BalanceError::ZeroWeight(e.name.into()));
            }
            if !batch.insert(e.name) {
                return Err(BalanceError::Duplicate(e.name.into()));
            }
        }
        let now = self.inner.clock.now_ns();
        let ids = self.update(
            |cur, eps| {
                if let Some(e) = endpoints
                    .iter()
                    .find(|e| cur.index_of_name(e.name).is_some())
                {
                    return Err(BalanceError::Duplicate(e.name.into()));
                }
                // Ids are taken under the writer lock; `next_id` moves on only
                // once the new snapshot is published, so a refused add uses up
                // no id.
                let first = self.inner.next_id.load(Relaxed);
                let mut ids = Vec::with_capacity(endpoints.len());
                for (e, id) in endpoints.into_iter().zip(first..) {
                    eps.push(Endpoint {
                        weight: e.weight,
                        stats: Arc::new(Stats::new(e.name, id, e.attachment, now)),
                    });
                    ids.push(EndpointId(id));
                }
                Ok(ids)
            },
            |ids| {
                if let Some(last) = ids.last() {
                    self.inner.next_id.store(last.0 + 1, Relaxed);
                }
            },
        )?;
        if self.inner.slow_start_ns > 0 && !ids.is_empty() {
            self.inner
                .warming_horizon
                .fetch_max(now.saturating_add(self.inner.slow_start_ns), Relaxed);
        }
        Ok(ids)
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
        self.update(
            |cur, eps| {
                eps.remove(target.find(cur)?);
                Ok(())
            },
            |_| {},
        )
    }

    /// Changes an endpoint's weight, keeping its statistics.
    ///
    /// # Errors
    /// [`BalanceError::ZeroWeight`], [`BalanceError::Unknown`], or what the
    /// policy refuses ([`Balancer::extend`]).
    pub fn set_weight(&self, name: &str, weight: u32) -> Result<(), BalanceError> {
        self.set_weight_where(Target::Name(name), weight)
    }

    /// Changes the weight of the endpoint with id `id`, like
    /// [`Balancer::set_weight`].
    ///
    /// # Errors
    /// As [`Balancer::set_weight`].
    pub fn set_weight_id(&self, id: EndpointId, weight: u32) -> Result<(), BalanceError> {
        self.set_weight_where(Target::Id(id), weight)
    }

    fn set_weight_where(&self, target: Target<'_>, weight: u32) -> Result<(), BalanceError> {
        if weight == 0 {
            return Err(BalanceError::ZeroWeight(target.to_string()));
        }
        self.update(
            |cur, eps| {
                eps[target.find(cur)?].weight = weight;
                Ok(())
            },
            |_| {},
        )
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
    /// latency since the pick as well as the outcome. An error leaves
    /// nothing in flight.
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
        let (index, _) = self.inner.pick_index(&snap, key, false)?;
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
        let (index, now) = self.inner.pick_index(&snap, key, time_it)?;
        // Nothing below can fail: the pick takes effect only here.
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
}
