//! `consenso_balancer_*` and `consenso_pick_*`: the load balancer.
//!
//! A balancer is thread-safe: any number of threads may pick, finish,
//! update and read stats at once. A pick belongs to one thread at a time
//! and is consumed by `consenso_pick_finish` or `consenso_pick_free`. Picks
//! keep the balancer's state alive, so freeing the balancer while picks are
//! outstanding is allowed; they still finish normally.

use crate::args::{self, into_handle, out_ptr, take_handle};
use crate::enums;
use crate::panic::{guard, guard_void};
use crate::result::consenso_result;
use crate::result::fail;
use consenso::balance::{Balancer, EndpointId, Health, NewEndpoint, Pick, Policy, SystemClock};
use consenso::hashing::Algorithm;
use std::ffi::{c_char, c_void};
use std::sync::Arc;
use std::time::Duration;

/// Passed as `latency_ns` to `consenso_pick_finish`: use the time since the
/// pick, measured by the library.
pub const CONSENSO_LATENCY_MEASURED: u64 = u64::MAX;

/// Settings for a new balancer, built with `consenso_balancer_options_new`
/// and the `_set_` functions. Not thread-safe: one thread builds it. Each
/// setter checks its values with the core's own checks and changes nothing
/// when it returns an error.
#[derive(Default)]
pub struct consenso_balancer_options {
    /// `None`: not set (the core's default when the policy hashes).
    algorithm: Option<Algorithm>,
    bound: Option<f64>,
    health: Health,
    /// `None`: a seed of the balancer's own.
    seed: Option<u64>,
}

/// A load balancer over named, weighted endpoints.
pub struct consenso_balancer {
    inner: Balancer,
}

/// A picked endpoint, in flight until finished or freed.
pub struct consenso_pick {
    pick: Pick<'static>,
}

/// Statistics of one endpoint (`consenso_balancer_stats`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct consenso_endpoint_stats {
    /// The endpoint's id (from `consenso_balancer_add`).
    pub id: u64,
    /// Its weight.
    pub weight: u32,
    /// Times it was ejected.
    pub ejections: u32,
    /// Requests in flight.
    pub in_flight: u64,
    /// Requests that succeeded.
    pub successes: u64,
    /// Requests that failed.
    pub failures: u64,
    /// Peak-EWMA latency in seconds (0 with no sample yet).
    pub ewma_latency: f64,
    /// Ejected now.
    pub ejected: bool,
}

/// Writes default options into `*out`: ring hashing with 160 virtual nodes
/// and no bound, eject after 5 consecutive failures for 30 s growing to at
/// most 300 s, at most half ejected, panic below half healthy, no slow
/// start, a 10 s latency decay, and a random seed of the balancer's own.
/// Free with
/// `consenso_balancer_options_free`.
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT`.
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_balancer_options_new(
    out: *mut *mut consenso_balancer_options,
) -> consenso_result {
    guard(|| {
        // SAFETY: the caller passes a writable pointer or NULL.
        let out = unsafe { out_ptr(out) }?;
        out.set(into_handle(consenso_balancer_options::default()));
        Ok(())
    })
}

/// Frees options; NULL does nothing. Balancers made from them are not
/// affected.
#[no_mangle]
pub extern "C" fn consenso_balancer_options_free(options: *mut consenso_balancer_options) {
    // SAFETY: a live options handle or NULL, not used again by the caller.
    guard_void(|| drop(unsafe { take_handle(options) }));
}

/// Runs `f` on the options behind `options`.
fn with_options(
    options: *mut consenso_balancer_options,
    f: impl FnOnce(&mut consenso_balancer_options) -> Result<(), consenso_result>,
) -> consenso_result {
    guard(|| {
        // SAFETY: a live options handle used by one thread, or NULL.
        let o = unsafe { options.as_mut() }.ok_or(consenso_result::NullArgument)?;
        f(o)
    })
}

/// Applies `change` to a copy of the options' health settings and keeps it
/// only when the core accepts it.
fn set_health(
    options: *mut consenso_balancer_options,
    change: impl FnOnce(&mut Health),
) -> consenso_result {
    with_options(options, |o| {
        let mut health = o.health;
        change(&mut health);
        health.validate()?;
        o.health = health;
        Ok(())
    })
}

/// The consistent-hashing algorithm (a `CONSENSO_HASH_ALGORITHM_*`) and its
/// parameter (0: the default; see `consenso_hash_algorithm`).
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT`, `CONSENSO_RESULT_INVALID_ARGUMENT`.
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_balancer_options_set_hash(
    options: *mut consenso_balancer_options,
    algorithm: u32,
    param: u32,
) -> consenso_result {
    with_options(options, |o| {
        let algorithm = enums::algorithm(algorithm, param)?;
        algorithm.validate()?;
        o.algorithm = Some(algorithm);
        Ok(())
    })
}

/// Bounded loads for consistent hashing: no endpoint takes more than
/// `bound` times its weighted share of the keys in flight (rounded up;
/// with equal weights, `ceil(bound × mean)`). `bound` is 1 + ε and must be
/// above 1; 0 turns bounding off.
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT`, `CONSENSO_RESULT_INVALID_ARGUMENT`.
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_balancer_options_set_bound(
    options: *mut consenso_balancer_options,
    bound: f64,
) -> consenso_result {
    with_options(options, |o| {
        o.bound = match bound {
            0.0 => None,
            b => {
                let hashing = Policy::ConsistentHash {
                    algorithm: Algorithm::default(),
                    bound: Some(b),
                };
                hashing.validate()?;
                Some(b)
            }
        };
        Ok(())
    })
}

/// The seed of the balancer's randomness (the same seed, the same picks).
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT`.
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_balancer_options_set_seed(
    options: *mut consenso_balancer_options,
    seed: u64,
) -> consenso_result {
    with_options(options, |o| {
        o.seed = Some(seed);
        Ok(())
    })
}

/// Passive outlier ejection: `consecutive_failures` failures in a row
/// (0: never eject) eject an endpoint for `base_ms`, the n-th time for n ×
/// `base_ms` up to `max_ms` (`UINT64_MAX`: as good as forever; no time
/// wraps); at most `max_share` (0..1) of the endpoints is ejected at once.
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT`, `CONSENSO_RESULT_INVALID_ARGUMENT`
/// (`max_share` outside 0..1 or NaN, `max_ms` below `base_ms`).
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_balancer_options_set_ejection(
    options: *mut consenso_balancer_options,
    consecutive_failures: u32,
    base_ms: u64,
    max_ms: u64,
    max_share: f64,
) -> consenso_result {
    set_health(options, |h| {
        h.consecutive_failures = consecutive_failures;
        h.base_ejection = Duration::from_millis(base_ms);
        h.max_ejection = Duration::from_millis(max_ms);
        h.max_ejected_share = max_share;
    })
}

/// Panic mode: when less than `threshold` (0..1) of the endpoints is
/// healthy, balance over all of them.
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT`, `CONSENSO_RESULT_INVALID_ARGUMENT`
/// (outside 0..1, or NaN).
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_balancer_options_set_panic_threshold(
    options: *mut consenso_balancer_options,
    threshold: f64,
) -> consenso_result {
    set_health(options, |h| h.panic_threshold = threshold)
}

/// Slow start: a new or returning endpoint's share ramps up over
/// `window_ms` (0: off; any length, none wraps).
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT`.
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_balancer_options_set_slow_start(
    options: *mut consenso_balancer_options,
    window_ms: u64,
) -> consenso_result {
    set_health(options, |h| h.slow_start = Duration::from_millis(window_ms))
}

/// The time constant of the latency EWMA, in milliseconds (above 0).
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT`, `CONSENSO_RESULT_INVALID_ARGUMENT`.
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_balancer_options_set_ewma_decay(
    options: *mut consenso_balancer_options,
    decay_ms: u64,
) -> consenso_result {
    set_health(options, |h| h.ewma_decay = Duration::from_millis(decay_ms))
}

/// A new balancer with `policy` (a `CONSENSO_POLICY_*`) and `options`
/// (NULL: the defaults of `consenso_balancer_options_new`). It starts with
/// no endpoints. Free with `consenso_balancer_free`.
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT` (`out`),
/// `CONSENSO_RESULT_INVALID_ARGUMENT` (unknown policy, a hash algorithm or
/// a bound set for a policy other than consistent hashing).
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_balancer_new(
    policy: u32,
    options: *const consenso_balancer_options,
    out: *mut *mut consenso_balancer,
) -> consenso_result {
    guard(|| {
        // SAFETY: a writable pointer or NULL.
        let out = unsafe { out_ptr(out) }?;
        let defaults = consenso_balancer_options::default();
        // SAFETY: a live options handle or NULL.
        let o = unsafe { options.as_ref() }.unwrap_or(&defaults);
        let policy = enums::policy(policy)?.with_hashing(o.algorithm, o.bound)?;
        let inner = Balancer::with_options(
            policy,
            o.health,
            Arc::new(SystemClock::default()),
            o.seed.unwrap_or_else(consenso::rng::entropy_seed),
        )?;
        out.set(into_handle(consenso_balancer { inner }));
        Ok(())
    })
}

/// Frees a balancer; NULL does nothing. No other thread may use the
/// balancer during or after the call; outstanding picks stay valid and must
/// still be finished or freed.
#[no_mangle]
pub extern "C" fn consenso_balancer_free(balancer: *mut consenso_balancer) {
    // SAFETY: a live balancer handle or NULL, not used again by the caller.
    guard_void(|| drop(unsafe { take_handle(balancer) }));
}

/// Runs `f` on the balancer behind `balancer`.
fn with_balancer(
    balancer: *const consenso_balancer,
    f: impl FnOnce(&Balancer) -> Result<(), consenso_result>,
) -> consenso_result {
    guard(|| {
        // SAFETY: a live balancer handle or NULL.
        let b = unsafe { args::handle(balancer) }?;
        f(&b.inner)
    })
}

/// Adds endpoint `name` (a NUL-terminated UTF-8 string, copied) with
/// `weight` (at least 1) and writes its id into `*id_out` unless `id_out`
/// is NULL. Ids are never reused by a balancer. The others keep their
/// statistics.
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT`, `CONSENSO_RESULT_INVALID_UTF8`,
/// `CONSENSO_RESULT_INVALID_WEIGHT`, `CONSENSO_RESULT_DUPLICATE_ENDPOINT`,
/// `CONSENSO_RESULT_WEIGHTS_UNSUPPORTED` (jump hashing),
/// `CONSENSO_RESULT_INVALID_ARGUMENT` (a ring too large, more endpoints
/// than a Maglev table has slots).
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_balancer_add(
    balancer: *const consenso_balancer,
    name: *const c_char,
    weight: u32,
    id_out: *mut u64,
) -> consenso_result {
    with_balancer(balancer, |b| {
        // SAFETY: a NUL-terminated string or NULL.
        let name = unsafe { args::c_str(name) }?;
        let id = b.add(name, weight)?;
        // SAFETY: a writable pointer or NULL (then the id is not wanted).
        if let Ok(out) = unsafe { out_ptr(id_out) } {
            out.set(id.0);
        }
        Ok(())
    })
}

/// The host's pointer riding on an endpoint; the library never reads or
/// frees what it points to.
struct HostPointer(*mut c_void);
// SAFETY: only handed back to the host, which promised (in the header) it
// may be used from any thread that picks.
unsafe impl Send for HostPointer {}
// SAFETY: as above.
unsafe impl Sync for HostPointer {}

/// As `consenso_balancer_add`, with `user_data` riding on the endpoint:
/// `consenso_pick_user_data` gives it back with each pick of it, so the
/// host needs no table of its own (a connection pool, a client). The
/// library never dereferences or frees it; it must stay valid while the
/// endpoint is in the balancer and while picks of it are outstanding, and
/// be usable from any thread that picks.
///
/// Errors: as `consenso_balancer_add` (nothing is added then).
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_balancer_add_with_data(
    balancer: *const consenso_balancer,
    name: *const c_char,
    weight: u32,
    user_data: *mut c_void,
    id_out: *mut u64,
) -> consenso_result {
    with_balancer(balancer, |b| {
        // SAFETY: a NUL-terminated string or NULL.
        let name = unsafe { args::c_str(name) }?;
        let id = b.add_with(name, weight, Arc::new(HostPointer(user_data)))?;
        // SAFETY: a writable pointer or NULL (then the id is not wanted).
        if let Ok(out) = unsafe { out_ptr(id_out) } {
            out.set(id.0);
        }
        Ok(())
    })
}

/// Adds `count` endpoints at once: `names[i]` (NUL-terminated UTF-8,
/// copied) with `weights[i]` (`weights` NULL: all 1), and writes their ids
/// into `ids_out[0..count]` unless `ids_out` is NULL. One rebuild of the
/// policy's tables for all of them, so building a consistent-hashing
/// balancer of thousands of endpoints costs about one hash ring. All or
/// nothing: on an error none is added and `ids_out` is not written.
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT` (`names`, or one of its entries,
/// NULL with `count` above 0), `CONSENSO_RESULT_INVALID_UTF8`,
/// `CONSENSO_RESULT_INVALID_WEIGHT`, `CONSENSO_RESULT_DUPLICATE_ENDPOINT`
/// (in the balancer or twice in `names`),
/// `CONSENSO_RESULT_WEIGHTS_UNSUPPORTED` (jump hashing),
/// `CONSENSO_RESULT_INVALID_ARGUMENT` (a ring too large, more endpoints
/// than a Maglev table has slots).
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_balancer_add_many(
    balancer: *const consenso_balancer,
    names: *const *const c_char,
    weights: *const u32,
    count: usize,
    ids_out: *mut u64,
) -> consenso_result {
    with_balancer(balancer, |b| {
        // SAFETY: `count` readable pointers, or NULL with 0.
        let names = unsafe { args::array(names, count) }?;
        // SAFETY: `count` readable weights, or NULL.
        let weights = unsafe { args::opt_array(weights, count) };
        let mut endpoints = Vec::with_capacity(count);
        for (i, &name) in names.iter().enumerate() {
            // SAFETY: each entry a NUL-terminated string or NULL.
            let name = unsafe { args::c_str(name) }?;
            endpoints.push(NewEndpoint::new(name, weights.map_or(1, |w| w[i])));
        }
        let ids: Vec<u64> = b.extend(endpoints)?.into_iter().map(|id| id.0).collect();
        // SAFETY: room for `count` ids, or NULL (then ids are not wanted).
        unsafe { args::write_array(ids_out, &ids) };
        Ok(())
    })
}

/// Removes the endpoint named `name`. Its outstanding picks finish normally.
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT`, `CONSENSO_RESULT_INVALID_UTF8`,
/// `CONSENSO_RESULT_UNKNOWN_ENDPOINT`.
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_balancer_remove(
    balancer: *const consenso_balancer,
    name: *const c_char,
) -> consenso_result {
    with_balancer(balancer, |b| {
        // SAFETY: a NUL-terminated string or NULL.
        Ok(b.remove(unsafe { args::c_str(name) }?)?)
    })
}

/// Removes the endpoint with id `id`.
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT`, `CONSENSO_RESULT_UNKNOWN_ENDPOINT`.
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_balancer_remove_id(
    balancer: *const consenso_balancer,
    id: u64,
) -> consenso_result {
    with_balancer(balancer, |b| Ok(b.remove_id(EndpointId(id))?))
}

/// Sets the weight of the endpoint named `name`, keeping its statistics.
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT`, `CONSENSO_RESULT_INVALID_UTF8`,
/// `CONSENSO_RESULT_INVALID_WEIGHT`, `CONSENSO_RESULT_UNKNOWN_ENDPOINT`,
/// `CONSENSO_RESULT_WEIGHTS_UNSUPPORTED`, `CONSENSO_RESULT_INVALID_ARGUMENT`
/// (a ring too large).
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_balancer_set_weight(
    balancer: *const consenso_balancer,
    name: *const c_char,
    weight: u32,
) -> consenso_result {
    with_balancer(balancer, |b| {
        // SAFETY: a NUL-terminated string or NULL.
        Ok(b.set_weight(unsafe { args::c_str(name) }?, weight)?)
    })
}

/// Sets the weight of the endpoint with id `id`.
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT`, `CONSENSO_RESULT_INVALID_WEIGHT`,
/// `CONSENSO_RESULT_UNKNOWN_ENDPOINT`, `CONSENSO_RESULT_WEIGHTS_UNSUPPORTED`,
/// `CONSENSO_RESULT_INVALID_ARGUMENT` (a ring too large).
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_balancer_set_weight_id(
    balancer: *const consenso_balancer,
    id: u64,
    weight: u32,
) -> consenso_result {
    with_balancer(balancer, |b| Ok(b.set_weight_id(EndpointId(id), weight)?))
}

/// Writes the number of endpoints into `*out`.
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT`.
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_balancer_len(
    balancer: *const consenso_balancer,
    out: *mut usize,
) -> consenso_result {
    with_balancer(balancer, |b| {
        // SAFETY: a writable pointer or NULL.
        unsafe { out_ptr(out) }?.set(b.len());
        Ok(())
    })
}

/// Picks an endpoint and writes the pick into `*out`. `key` (`key_len`
/// bytes; NULL and 0 for none) is needed by consistent hashing and ignored
/// by the other policies. The pick counts as in flight, and is timed, until
/// `consenso_pick_finish` (or `consenso_pick_free`). Lock-free.
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT`, `CONSENSO_RESULT_NO_ENDPOINTS`,
/// `CONSENSO_RESULT_KEY_REQUIRED`.
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_balancer_pick(
    balancer: *const consenso_balancer,
    key: *const u8,
    key_len: usize,
    out: *mut *mut consenso_pick,
) -> consenso_result {
    with_balancer(balancer, |b| {
        // SAFETY: `key_len` readable bytes, or NULL with 0; a writable `out`.
        let (key, out) = unsafe { (args::opt_bytes(key, key_len)?, out_ptr(out)?) };
        let pick = b.pick_owned(key)?;
        out.set(into_handle(consenso_pick { pick }));
        Ok(())
    })
}

/// Chooses an endpoint as `consenso_balancer_pick` would and writes its id
/// into `*id_out`, without counting it in flight or recording anything.
///
/// Errors: as `consenso_balancer_pick`.
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_balancer_select(
    balancer: *const consenso_balancer,
    key: *const u8,
    key_len: usize,
    id_out: *mut u64,
) -> consenso_result {
    with_balancer(balancer, |b| {
        // SAFETY: `key_len` readable bytes, or NULL with 0; a writable `id_out`.
        let (key, out) = unsafe { (args::opt_bytes(key, key_len)?, out_ptr(id_out)?) };
        out.set(b.select(key)?.0);
        Ok(())
    })
}

/// Copies the statistics of every endpoint into `out`, room for `capacity`
/// entries of `entry_size` bytes each (pass
/// `sizeof(consenso_endpoint_stats)`: later versions may add fields and
/// still fill the entries of a caller built against this header), and
/// writes how many into `*count`.
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT` (`balancer`, `count`);
/// `CONSENSO_RESULT_INVALID_ARGUMENT` (`entry_size` below
/// `sizeof(consenso_endpoint_stats)`);
/// `CONSENSO_RESULT_BUFFER_TOO_SMALL` (`out` NULL, or fewer than `*count`
/// entries of room: `*count` is set to the number needed, nothing else is
/// written).
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_balancer_stats(
    balancer: *const consenso_balancer,
    out: *mut consenso_endpoint_stats,
    capacity: usize,
    entry_size: usize,
    count: *mut usize,
) -> consenso_result {
    with_balancer(balancer, |b| {
        // SAFETY: a writable pointer or NULL.
        let count = unsafe { out_ptr(count) }?;
        if entry_size < std::mem::size_of::<consenso_endpoint_stats>() {
            return Err(fail(
                consenso_result::InvalidArgument,
                format!("entry_size {entry_size}: pass sizeof(consenso_endpoint_stats)"),
            ));
        }
        let stats = b.stats();
        if out.is_null() || stats.len() > capacity {
            count.set(stats.len());
            return Err(consenso_result::BufferTooSmall);
        }
        let entries: Vec<consenso_endpoint_stats> = stats
            .iter()
            .map(|s| consenso_endpoint_stats {
                id: s.id.0,
                weight: s.weight,
                ejections: s.ejections,
                in_flight: s.in_flight,
                successes: s.successes,
                failures: s.failures,
                ewma_latency: s.ewma_latency,
                ejected: s.ejected,
            })
            .collect();
        // SAFETY: `out` has room for `capacity >= entries.len()` entries of
        // `entry_size` bytes, as the caller promises.
        unsafe { args::write_entries(out, entry_size, &entries) }?;
        count.set(stats.len());
        Ok(())
    })
}

/// Copies the name of the endpoint with id `id` into `buf` (`len` bytes) as
/// a NUL-terminated string and writes its length without the NUL into
/// `*written`.
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT` (`balancer`, `written`),
/// `CONSENSO_RESULT_UNKNOWN_ENDPOINT`, `CONSENSO_RESULT_BUFFER_TOO_SMALL`
/// (`buf` NULL or too short for the name and its NUL: `*written` is set to
/// the name's length, nothing else is written; allocate `*written + 1`).
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_balancer_endpoint_name(
    balancer: *const consenso_balancer,
    id: u64,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> consenso_result {
    with_balancer(balancer, |b| {
        // SAFETY: a writable `written` or NULL.
        let written = unsafe { out_ptr(written) }?;
        let name = b
            .name_of(EndpointId(id))
            .ok_or(consenso_result::UnknownEndpoint)?;
        // SAFETY: `len` writable bytes or NULL.
        match unsafe { args::out_buffer(buf, len) } {
            Ok(buf) if name.len() < len => args::write_c_string(&name, buf, written),
            _ => {
                written.set(name.len());
                Err(consenso_result::BufferTooSmall)
            }
        }
    })
}

/// The picked endpoint's id; 0 for a NULL pick.
#[no_mangle]
pub extern "C" fn consenso_pick_id(pick: *const consenso_pick) -> u64 {
    let mut id = 0;
    guard(|| {
        // SAFETY: a live pick handle or NULL.
        id = unsafe { args::handle(pick) }?.pick.id().0;
        Ok(())
    });
    id
}

/// The `user_data` the picked endpoint was added with
/// (`consenso_balancer_add_with_data`); NULL for an endpoint added without,
/// or a NULL pick.
#[no_mangle]
pub extern "C" fn consenso_pick_user_data(pick: *const consenso_pick) -> *mut c_void {
    let mut data = std::ptr::null_mut();
    guard(|| {
        // SAFETY: a live pick handle or NULL.
        let p = unsafe { args::handle(pick) }?;
        if let Some(h) = p
            .pick
            .attachment()
            .and_then(|a| a.downcast_ref::<HostPointer>())
        {
            data = h.0;
        }
        Ok(())
    });
    data
}

/// Points `*name` at the picked endpoint's name (UTF-8, `*len` bytes, not
/// NUL-terminated), valid until the pick is finished or freed.
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT`.
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_pick_name(
    pick: *const consenso_pick,
    name: *mut *const c_char,
    len: *mut usize,
) -> consenso_result {
    guard(|| {
        // SAFETY: a live pick handle or NULL; writable pointers or NULL.
        let (p, name, len) = unsafe { (args::handle(pick)?, out_ptr(name)?, out_ptr(len)?) };
        let s = p.pick.name();
        name.set(s.as_ptr().cast());
        len.set(s.len());
        Ok(())
    })
}

/// Finishes a pick: records `outcome` (a `CONSENSO_OUTCOME_*`) and the
/// latency, `latency_ns` nanoseconds or `CONSENSO_LATENCY_MEASURED` for the
/// time since the pick, and frees the pick.
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT`; `CONSENSO_RESULT_INVALID_ARGUMENT`
/// (unknown outcome: the pick is untouched; finish or free it again);
/// `CONSENSO_RESULT_PANIC` (the pick is freed all the same: do not use it
/// again).
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_pick_finish(
    pick: *mut consenso_pick,
    outcome: u32,
    latency_ns: u64,
) -> consenso_result {
    guard(|| {
        if pick.is_null() {
            return Err(consenso_result::NullArgument);
        }
        let outcome = enums::outcome(outcome)?;
        // SAFETY: a live pick handle, not used again by the caller.
        let Some(p) = (unsafe { take_handle(pick) }) else {
            return Err(consenso_result::NullArgument);
        };
        match latency_ns {
            CONSENSO_LATENCY_MEASURED => p.pick.finish(outcome),
            ns => p
                .pick
                .finish_with_latency(Duration::from_nanos(ns), outcome),
        }
        Ok(())
    })
}

/// Abandons a pick: it stops counting as in flight and nothing is
/// recorded. NULL does nothing.
#[no_mangle]
pub extern "C" fn consenso_pick_free(pick: *mut consenso_pick) {
    // SAFETY: a live pick handle or NULL, not used again by the caller.
    guard_void(|| drop(unsafe { take_handle(pick) }));
}
