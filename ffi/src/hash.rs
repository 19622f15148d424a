//! `consenso_hash_*`: consistent hashing alone, without a balancer. A hash
//! ring is immutable and thread-safe; build a new one to change endpoints.
//! Endpoints are named by their position in the array given to
//! `consenso_hash_new`.

use crate::args::{self, into_handle, out_ptr, take_handle};
use crate::enums;
use crate::panic::{guard, guard_void};
use crate::result::consenso_result;
use consenso::hashing::HashRing;
use std::ffi::c_char;

/// Endpoints placed by a consistent-hashing algorithm.
pub struct consenso_hash {
    ring: HashRing,
}

/// A new hash ring over `count` endpoints: `names` (NUL-terminated UTF-8,
/// copied) with `weights` (NULL: all 1; jump hashing accepts only 1),
/// placed by `algorithm` (a `CONSENSO_HASH_ALGORITHM_*`) with `param`
/// (0: the default; see `consenso_hash_algorithm`). Free with
/// `consenso_hash_free`.
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT`, `CONSENSO_RESULT_INVALID_UTF8`,
/// `CONSENSO_RESULT_INVALID_ARGUMENT`, `CONSENSO_RESULT_NO_ENDPOINTS`,
/// `CONSENSO_RESULT_INVALID_WEIGHT`, `CONSENSO_RESULT_DUPLICATE_ENDPOINT`,
/// `CONSENSO_RESULT_WEIGHTS_UNSUPPORTED`.
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_hash_new(
    algorithm: u32,
    param: u32,
    names: *const *const c_char,
    weights: *const u32,
    count: usize,
    out: *mut *mut consenso_hash,
) -> consenso_result {
    guard(|| {
        // SAFETY: `count` string pointers, `count` weights or NULL, and a
        // writable `out`, as the caller promises.
        let (names, weights, out) = unsafe {
            (
                args::array(names, count)?,
                if weights.is_null() {
                    None
                } else {
                    Some(args::array(weights, count)?)
                },
                out_ptr(out)?,
            )
        };
        let algorithm = enums::algorithm(algorithm, param)?;
        let mut endpoints = Vec::with_capacity(count);
        for (i, &name) in names.iter().enumerate() {
            // SAFETY: each name is a NUL-terminated string or NULL.
            let name = unsafe { args::c_str(name) }?;
            endpoints.push((name, weights.map_or(1, |w| w[i])));
        }
        let ring = HashRing::new(algorithm, &endpoints)?;
        out.set(into_handle(consenso_hash { ring }));
        Ok(())
    })
}

/// Frees a hash ring; NULL does nothing. No other thread may use the ring
/// during or after the call, and names from `consenso_hash_name` die with it.
#[no_mangle]
pub extern "C" fn consenso_hash_free(hash: *mut consenso_hash) {
    // SAFETY: a live hash handle or NULL, not used again by the caller.
    guard_void(|| drop(unsafe { take_handle(hash) }));
}

/// Runs `f` on the ring behind `hash`.
fn with_ring(
    hash: *const consenso_hash,
    f: impl FnOnce(&HashRing) -> Result<(), consenso_result>,
) -> consenso_result {
    guard(|| {
        // SAFETY: a live hash handle or NULL.
        f(&unsafe { args::handle(hash) }?.ring)
    })
}

/// Writes the number of endpoints into `*out`.
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT`.
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_hash_len(
    hash: *const consenso_hash,
    out: *mut usize,
) -> consenso_result {
    with_ring(hash, |r| {
        // SAFETY: a writable pointer or NULL.
        unsafe { out_ptr(out) }?.set(r.len());
        Ok(())
    })
}

/// Writes the position of the endpoint for `key` (`key_len` bytes; NULL
/// only with 0) into `*index`. Allocation-free.
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT`.
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_hash_get(
    hash: *const consenso_hash,
    key: *const u8,
    key_len: usize,
    index: *mut usize,
) -> consenso_result {
    with_ring(hash, |r| {
        // SAFETY: `key_len` readable bytes or NULL with 0; a writable `index`.
        let (key, index) = unsafe { (args::bytes(key, key_len)?, out_ptr(index)?) };
        index.set(r.index_for_hash(HashRing::key_hash(key)));
        Ok(())
    })
}

/// Writes the position of the endpoint for the integer key `key` into
/// `*index`. Allocation-free.
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT`.
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_hash_get_u64(
    hash: *const consenso_hash,
    key: u64,
    index: *mut usize,
) -> consenso_result {
    with_ring(hash, |r| {
        // SAFETY: a writable pointer or NULL.
        unsafe { out_ptr(index) }?.set(r.index_for_u64(key));
        Ok(())
    })
}

/// Writes up to `n` distinct endpoint positions for `key`, preferred first
/// (replicas), into `indexes` (room for `n`) and how many into `*written`
/// (`min(n, endpoints)`).
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT`.
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_hash_get_n(
    hash: *const consenso_hash,
    key: *const u8,
    key_len: usize,
    n: usize,
    indexes: *mut usize,
    written: *mut usize,
) -> consenso_result {
    with_ring(hash, |r| {
        // SAFETY: `key_len` readable bytes or NULL with 0; a writable `written`.
        let (key, written) = unsafe { (args::bytes(key, key_len)?, out_ptr(written)?) };
        if indexes.is_null() && n > 0 {
            return Err(consenso_result::NullArgument);
        }
        let mut found = Vec::with_capacity(n.min(r.len()));
        r.indexes_for_hash(HashRing::key_hash(key), n, &mut found);
        for (i, &position) in found.iter().take(n).enumerate() {
            // SAFETY: `indexes` has room for `n` entries and `i < n`.
            unsafe { indexes.add(i).write(position) };
        }
        written.set(found.len().min(n));
        Ok(())
    })
}

/// Bounded loads: writes the position of the first endpoint in `key`'s
/// preference order whose load (`loads`, one per endpoint) is below its cap,
/// `ceil((1 + epsilon) × (total + 1) × weight / total weight)` (with equal
/// weights, `ceil((1 + epsilon) × (total + 1) / endpoints)`), into `*index`.
/// Loads of any size are summed without overflow.
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT`, `CONSENSO_RESULT_INVALID_ARGUMENT`
/// (`epsilon` not above 0, or `loads_len` not the number of endpoints).
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_hash_get_bounded(
    hash: *const consenso_hash,
    key: *const u8,
    key_len: usize,
    loads: *const u64,
    loads_len: usize,
    epsilon: f64,
    index: *mut usize,
) -> consenso_result {
    with_ring(hash, |r| {
        // SAFETY: `key_len` readable bytes and `loads_len` loads, or NULL
        // with 0; a writable `index`.
        let (key, loads, index) = unsafe {
            (
                args::bytes(key, key_len)?,
                args::array(loads, loads_len)?,
                out_ptr(index)?,
            )
        };
        index.set(r.index_bounded(HashRing::key_hash(key), loads, epsilon)?);
        Ok(())
    })
}

/// Points `*name` at the name of the endpoint at `position` (UTF-8, `*len`
/// bytes, not NUL-terminated), valid until the ring is freed.
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT`, `CONSENSO_RESULT_UNKNOWN_ENDPOINT`
/// (`position` out of range).
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_hash_name(
    hash: *const consenso_hash,
    position: usize,
    name: *mut *const c_char,
    len: *mut usize,
) -> consenso_result {
    with_ring(hash, |r| {
        // SAFETY: writable pointers or NULL.
        let (name, len) = unsafe { (out_ptr(name)?, out_ptr(len)?) };
        let s = r
            .names()
            .get(position)
            .ok_or(consenso_result::UnknownEndpoint)?;
        name.set(s.as_ptr().cast());
        len.set(s.len());
        Ok(())
    })
}
