//! The panic boundary: every exported function runs its body through
//! [`guard`], so a panic becomes `CONSENSO_RESULT_PANIC` instead of
//! unwinding into C (which would abort the process).

use crate::result::{self, consenso_result};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `body`; its error, or a panic, becomes the returned code, and its
/// message the thread's last error (`consenso_last_error_message`).
pub(crate) fn guard(body: impl FnOnce() -> Result<(), consenso_result>) -> consenso_result {
    result::begin_call();
    let code = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return consenso_result::Ok,
        Ok(Err(code)) => code,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            result::fail(
                consenso_result::Panic,
                format!("internal error: the library panicked: {what}"),
            )
        }
    };
    result::record(code);
    code
}

/// Runs `body` for a function with no result (the `_free`s): a panic is
/// swallowed, since there is no way to report it.
pub(crate) fn guard_void(body: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(body));
}
