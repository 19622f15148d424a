//! The panic boundary: every exported function runs its body through
//! [`guard`], so a panic becomes `CONSENSO_RESULT_PANIC` instead of
//! unwinding into C (which would abort the process).

use crate::result::consenso_result;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `body`; its error, or a panic, becomes the returned code.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), consenso_result>) -> consenso_result {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => consenso_result::Ok,
        Ok(Err(code)) => code,
        Err(_) => consenso_result::Panic,
    }
}

/// Runs `body` for a function with no result (the `_free`s): a panic is
/// swallowed, since there is no way to report it.
pub(crate) fn guard_void(body: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(body));
}
