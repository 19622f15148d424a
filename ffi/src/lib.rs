//! C ABI for consenso (`include/consenso.h`).
//!
//! This crate is a thin adapter over the `consenso` core and holds no protocol
//! logic. Every exported function is safe to call from any thread.

use std::ffi::c_char;

/// NUL-terminated version string of the library, e.g. `"0.1.0"`.
///
/// The pointer is static: never free it. Matches the `CONSENSO_VERSION` macro
/// of the header it was built with.
#[no_mangle]
pub extern "C" fn consenso_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn version_matches_core() {
        // SAFETY: consenso_version returns a static NUL-terminated string.
        let v = unsafe { CStr::from_ptr(consenso_version()) };
        assert_eq!(v.to_str().ok(), Some(consenso::VERSION));
    }
}
