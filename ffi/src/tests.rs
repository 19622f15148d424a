//! The C functions called from Rust the way C would call them: NULLs, bad
//! strings, unknown enum values and the whole pick cycle.

use super::*;
use std::ffi::CStr;
use std::ptr::{null, null_mut};

type R = consenso_result;

fn new_balancer(policy: consenso_policy) -> *mut consenso_balancer {
    let mut b = null_mut();
    assert_eq!(consenso_balancer_new(policy as u32, null(), &mut b), R::Ok);
    b
}

fn message(code: u32) -> String {
    let mut buf = [0 as c_char; 128];
    let mut n = 0;
    assert_eq!(
        consenso_result_message(code, buf.as_mut_ptr(), buf.len(), &mut n),
        R::Ok
    );
    // SAFETY: the function wrote a NUL-terminated string.
    let s = unsafe { CStr::from_ptr(buf.as_ptr()) };
    assert_eq!(s.to_bytes().len(), n);
    s.to_str().unwrap().to_string()
}

#[test]
fn version_matches_core() {
    // SAFETY: consenso_version returns a static NUL-terminated string.
    let v = unsafe { CStr::from_ptr(consenso_version()) };
    assert_eq!(v.to_str().ok(), Some(consenso::VERSION));
}

#[test]
fn every_code_has_a_message_and_unknown_codes_say_so() {
    assert_eq!(
        message(R::DuplicateEndpoint as u32),
        "an endpoint with that name already exists"
    );
    assert_eq!(message(9999), "unknown result code 9999");
    let mut small = [0 as c_char; 4];
    let mut n = 7;
    assert_eq!(
        consenso_result_message(0, small.as_mut_ptr(), small.len(), &mut n),
        R::BufferTooSmall
    );
    assert_eq!(n, "success".len(), "the size needed is reported");
    assert_eq!(small, [0; 4], "and nothing else is written");
    n = 0;
    assert_eq!(
        consenso_result_message(0, null_mut(), 10, &mut n),
        R::BufferTooSmall
    );
    assert_eq!(n, "success".len());
    assert_eq!(
        consenso_result_message(0, small.as_mut_ptr(), small.len(), null_mut()),
        R::NullArgument
    );
}

#[test]
fn a_panic_becomes_a_result_code() {
    assert_eq!(crate::panic::guard(|| panic!("boom")), R::Panic);
    let mut buf = [0 as c_char; 128];
    let mut n = 0;
    assert_eq!(
        crate::result::consenso_last_error_message(buf.as_mut_ptr(), buf.len(), &mut n),
        R::Ok
    );
    let text = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    assert_eq!(
        text.to_str().unwrap(),
        "internal error: the library panicked: boom"
    );
}

#[test]
fn a_pick_cycle_records_the_outcome() {
    let b = new_balancer(consenso_policy::RoundRobin);
    let mut id_a = 0;
    assert_eq!(consenso_balancer_add(b, c"a".as_ptr(), 1, &mut id_a), R::Ok);
    assert_eq!(
        consenso_balancer_add(b, c"b".as_ptr(), 1, null_mut()),
        R::Ok
    );
    let mut p = null_mut();
    assert_eq!(consenso_balancer_pick(b, null(), 0, &mut p), R::Ok);
    assert_eq!(consenso_pick_id(p), id_a);
    let (mut name, mut len) = (null(), 0);
    assert_eq!(consenso_pick_name(p, &mut name, &mut len), R::Ok);
    // SAFETY: the name lives as long as the pick.
    assert_eq!(
        unsafe { std::slice::from_raw_parts(name.cast::<u8>(), len) },
        b"a"
    );
    assert_eq!(
        consenso_pick_finish(p, 7, 0),
        R::InvalidArgument,
        "unknown outcome"
    );
    // The pick was not consumed by the refused call.
    assert_eq!(
        consenso_pick_finish(p, consenso_outcome::Failure as u32, 2_000_000),
        R::Ok
    );
    let mut stats = [consenso_endpoint_stats::default(); 2];
    let mut count = 0;
    assert_eq!(
        consenso_balancer_stats(b, stats.as_mut_ptr(), 2, ENTRY, &mut count),
        R::Ok
    );
    assert_eq!(count, 2);
    assert_eq!(
        (stats[0].id, stats[0].failures, stats[0].in_flight),
        (id_a, 1, 0)
    );
    assert!((stats[0].ewma_latency - 0.002).abs() < 1e-9);
    count = 0;
    assert_eq!(
        consenso_balancer_stats(b, stats.as_mut_ptr(), 1, ENTRY, &mut count),
        R::BufferTooSmall
    );
    assert_eq!(count, 2, "the number needed is reported");
    let mut buf = [0 as c_char; 8];
    let mut n = 0;
    assert_eq!(
        consenso_balancer_endpoint_name(b, id_a, buf.as_mut_ptr(), 8, &mut n),
        R::Ok
    );
    assert_eq!(n, 1);
    // A pick outlives its balancer.
    assert_eq!(consenso_balancer_pick(b, null(), 0, &mut p), R::Ok);
    consenso_balancer_free(b);
    assert_eq!(consenso_pick_finish(p, 0, CONSENSO_LATENCY_MEASURED), R::Ok);
}

/// The stats entry size a caller of this version passes.
const ENTRY: usize = std::mem::size_of::<consenso_endpoint_stats>();

#[test]
fn bad_input_gets_a_result_code_never_a_crash() {
    let mut b = null_mut();
    assert_eq!(consenso_balancer_new(0, null(), &mut b), R::InvalidArgument);
    assert_eq!(
        consenso_balancer_new(1, null(), null_mut()),
        R::NullArgument
    );
    let b = new_balancer(consenso_policy::Random);
    let mut p = null_mut();
    assert_eq!(consenso_balancer_pick(b, null(), 0, &mut p), R::NoEndpoints);
    assert!(p.is_null(), "out-parameters are written only on success");
    assert_eq!(
        consenso_balancer_add(b, null(), 1, null_mut()),
        R::NullArgument
    );
    assert_eq!(
        consenso_balancer_add(b, c"x".as_ptr(), 0, null_mut()),
        R::InvalidWeight
    );
    let bad = [0xffu8, 0xfe, 0];
    assert_eq!(
        consenso_balancer_add(b, bad.as_ptr().cast(), 1, null_mut()),
        R::InvalidUtf8
    );
    assert_eq!(
        consenso_balancer_add(b, c"x".as_ptr(), 1, null_mut()),
        R::Ok
    );
    assert_eq!(
        consenso_balancer_add(b, c"x".as_ptr(), 1, null_mut()),
        R::DuplicateEndpoint
    );
    assert_eq!(
        consenso_balancer_remove(b, c"y".as_ptr()),
        R::UnknownEndpoint
    );
    assert_eq!(consenso_balancer_remove_id(b, 42), R::UnknownEndpoint);
    assert_eq!(consenso_balancer_set_weight_id(b, 1, 0), R::InvalidWeight);
    assert_eq!(
        consenso_balancer_pick(b, null(), 3, &mut p),
        R::NullArgument
    );
    assert_eq!(
        consenso_balancer_pick(null(), null(), 0, &mut p),
        R::NullArgument
    );
    assert_eq!(consenso_pick_finish(null_mut(), 0, 0), R::NullArgument);
    assert_eq!(consenso_pick_id(null()), 0);
    consenso_balancer_free(b);
    consenso_balancer_free(null_mut());
    consenso_pick_free(null_mut());
    consenso_balancer_options_free(null_mut());
    consenso_hash_free(null_mut());

    let mut o = null_mut();
    assert_eq!(consenso_balancer_options_new(&mut o), R::Ok);
    for eps in [1.0, 0.5, -1.0, f64::NAN, f64::INFINITY] {
        assert_eq!(
            consenso_balancer_options_set_bound(o, eps),
            R::InvalidArgument,
            "{eps}"
        );
    }
    assert_eq!(
        consenso_balancer_options_set_ejection(o, 3, 10, 5, 0.5),
        R::InvalidArgument
    );
    assert_eq!(
        consenso_balancer_options_set_ejection(o, 3, 10, 50, 1.5),
        R::InvalidArgument
    );
    assert_eq!(
        consenso_balancer_options_set_panic_threshold(o, -0.1),
        R::InvalidArgument
    );
    assert_eq!(
        consenso_balancer_options_set_ewma_decay(o, 0),
        R::InvalidArgument
    );
    assert_eq!(
        consenso_balancer_options_set_hash(o, 9, 0),
        R::InvalidArgument
    );
    assert_eq!(
        consenso_balancer_options_set_hash(o, 3, 7),
        R::InvalidArgument
    );
    assert_eq!(consenso_balancer_options_set_bound(o, 1.25), R::Ok);
    let mut b = null_mut();
    assert_eq!(
        consenso_balancer_new(consenso_policy::Random as u32, o, &mut b),
        R::InvalidArgument,
        "a bound needs consistent hashing"
    );
    assert_eq!(
        consenso_balancer_new(consenso_policy::ConsistentHash as u32, o, &mut b),
        R::Ok
    );
    consenso_balancer_options_free(o);
    assert_eq!(
        consenso_balancer_add(b, c"a".as_ptr(), 1, null_mut()),
        R::Ok
    );
    assert_eq!(consenso_balancer_pick(b, null(), 0, &mut p), R::KeyRequired);
    let mut id = 0;
    assert_eq!(
        consenso_balancer_select(b, b"k".as_ptr(), 1, &mut id),
        R::Ok
    );
    assert_eq!(id, 1);
    consenso_balancer_free(b);
}

#[test]
fn hash_rings_answer_by_position() {
    let names = [c"a".as_ptr(), c"b".as_ptr(), c"c".as_ptr()];
    let mut h = null_mut();
    let maglev = consenso_hash_algorithm::Maglev as u32;
    assert_eq!(
        consenso_hash_new(maglev, 1009, names.as_ptr(), null(), 3, &mut h),
        R::Ok
    );
    let ring = consenso::hashing::HashRing::new(
        consenso::hashing::Algorithm::Maglev {
            min_table_size: 1009,
        },
        &[("a", 1), ("b", 1), ("c", 1)],
    )
    .unwrap();
    let mut i = 9;
    assert_eq!(consenso_hash_get(h, b"key".as_ptr(), 3, &mut i), R::Ok);
    assert_eq!(
        ring.names()[i],
        ring.get(b"key"),
        "the same answer as the core"
    );
    let mut out = [9usize; 3];
    let mut n = 0;
    assert_eq!(
        consenso_hash_get_n(h, b"key".as_ptr(), 3, 5, out.as_mut_ptr(), &mut n),
        R::Ok
    );
    assert_eq!((n, out[0]), (3, i));
    let loads = [0u64, 0, 0];
    assert_eq!(
        consenso_hash_get_bounded(h, b"key".as_ptr(), 3, loads.as_ptr(), 3, 0.0, &mut i),
        R::InvalidArgument,
        "epsilon must be above 0"
    );
    let (mut name, mut len) = (null(), 0);
    assert_eq!(
        consenso_hash_name(h, 3, &mut name, &mut len),
        R::UnknownEndpoint
    );
    consenso_hash_free(h);

    let weights = [1u32, 2, 1];
    let jump = consenso_hash_algorithm::Jump as u32;
    assert_eq!(
        consenso_hash_new(jump, 0, names.as_ptr(), weights.as_ptr(), 3, &mut h),
        R::WeightsUnsupported
    );
    assert_eq!(
        consenso_hash_new(jump, 0, names.as_ptr(), null(), 0, &mut h),
        R::NoEndpoints
    );
    assert_eq!(
        consenso_hash_new(jump, 0, null(), null(), 2, &mut h),
        R::NullArgument
    );
    let dup = [c"a".as_ptr(), c"a".as_ptr()];
    assert_eq!(
        consenso_hash_new(jump, 0, dup.as_ptr(), null(), 2, &mut h),
        R::DuplicateEndpoint
    );
}

#[test]
fn enum_numbers_are_the_ones_the_conversions_accept() {
    use consenso::balance::Policy;
    use consenso::hashing::Algorithm;
    let ring = Algorithm::default();
    for (code, want) in [
        (consenso_policy::Random, Policy::Random),
        (consenso_policy::RoundRobin, Policy::RoundRobin),
        (
            consenso_policy::WeightedRoundRobin,
            Policy::WeightedRoundRobin,
        ),
        (consenso_policy::LeastConnections, Policy::LeastConnections),
        (
            consenso_policy::LeastResponseTime,
            Policy::LeastResponseTime,
        ),
        (
            consenso_policy::ConsistentHash,
            Policy::ConsistentHash {
                algorithm: ring,
                bound: None,
            },
        ),
    ] {
        assert_eq!(enums::policy(code as u32), Ok(want));
    }
    assert_eq!(
        enums::algorithm(consenso_hash_algorithm::Ring as u32, 0),
        Ok(ring)
    );
    assert_eq!(
        enums::algorithm(consenso_hash_algorithm::Rendezvous as u32, 0),
        Ok(Algorithm::Rendezvous)
    );
    assert_eq!(
        enums::outcome(consenso_outcome::Failure as u32),
        Ok(consenso::balance::Outcome::Failure)
    );
}
