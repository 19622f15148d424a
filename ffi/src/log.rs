//! `consenso_set_log_callback`: the library's log events (a node elected,
//! a storage error, a refused connection) to a C function of the host's.
//!
//! The Rust `log` facade has one logger per process: this module installs
//! its bridge the first time a callback is set, and setting another
//! callback (or NULL) later swaps what the bridge calls.

use crate::panic::guard;
use crate::result::{consenso_result, fail};
use parking_lot::RwLock;
use std::ffi::{c_char, c_void, CString};

/// How serious a log event is (`consenso_set_log_callback`).
#[repr(u32)]
#[derive(Clone, Copy, Debug)]
#[allow(non_camel_case_types, dead_code)]
pub enum consenso_log_level {
    /// Something failed: a storage error, a state machine failure.
    Error = 1,
    /// Something is wrong but the node goes on: a refused connection, a
    /// dropped snapshot.
    Warn = 2,
    /// What a node did: elections, leaders, snapshots.
    Info = 3,
    /// Detail for debugging.
    Debug = 4,
    /// Everything.
    Trace = 5,
}

/// A log callback: `level` is a `consenso_log_level`; `message` is
/// NUL-terminated UTF-8, valid during the call only.
pub type consenso_log_callback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, level: u32, message: *const c_char)>;

/// The host's callback, its pointer, and the most detailed level it wants.
#[derive(Clone, Copy)]
struct Sink {
    callback: unsafe extern "C" fn(*mut c_void, u32, *const c_char),
    user_data: *mut c_void,
    max_level: log::LevelFilter,
}

// SAFETY: the header says the callback is called from any thread with its
// `user_data`; the library never touches the pointer itself.
unsafe impl Send for Sink {}
// SAFETY: as above.
unsafe impl Sync for Sink {}

static SINK: RwLock<Option<Sink>> = RwLock::new(None);

struct Bridge;

static BRIDGE: Bridge = Bridge;

impl log::Log for Bridge {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        (*SINK.read()).is_some_and(|s| metadata.level() <= s.max_level)
    }

    fn log(&self, record: &log::Record<'_>) {
        // Copied out: the callback may log or set another callback itself.
        let Some(sink) = *SINK.read() else { return };
        if record.level() > sink.max_level {
            return;
        }
        let text = record.args().to_string().replace('\0', "\u{FFFD}");
        let message = CString::new(text).expect("NULs were replaced");
        let level = match record.level() {
            log::Level::Error => consenso_log_level::Error,
            log::Level::Warn => consenso_log_level::Warn,
            log::Level::Info => consenso_log_level::Info,
            log::Level::Debug => consenso_log_level::Debug,
            log::Level::Trace => consenso_log_level::Trace,
        };
        // SAFETY: the host's function with its own pointer; the message
        // lives for the call.
        unsafe { (sink.callback)(sink.user_data, level as u32, message.as_ptr()) };
    }

    fn flush(&self) {}
}

/// Sends the library's log events at `max_level` (a `consenso_log_level`)
/// and more serious to `callback(user_data, level, message)`, from
/// whichever thread logs (node threads included, possibly at once: the
/// callback must be thread-safe, and should be quick). Replaces any
/// earlier callback; NULL stops logging. Process-wide.
///
/// Errors: `CONSENSO_RESULT_INVALID_ARGUMENT` (an unknown level);
/// `CONSENSO_RESULT_SYSTEM` (another logger of the Rust `log` facade is
/// installed in this process, by a Rust host: nothing changed).
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_set_log_callback(
    callback: consenso_log_callback,
    user_data: *mut c_void,
    max_level: u32,
) -> consenso_result {
    guard(|| {
        let max_level = match max_level {
            1 => log::LevelFilter::Error,
            2 => log::LevelFilter::Warn,
            3 => log::LevelFilter::Info,
            4 => log::LevelFilter::Debug,
            5 => log::LevelFilter::Trace,
            other => {
                return Err(fail(
                    consenso_result::InvalidArgument,
                    format!("max_level: unknown log level {other}"),
                ))
            }
        };
        install()?;
        *SINK.write() = callback.map(|callback| Sink {
            callback,
            user_data,
            max_level,
        });
        log::set_max_level(if callback.is_some() {
            max_level
        } else {
            log::LevelFilter::Off
        });
        Ok(())
    })
}

/// Installs the bridge as the process's logger, once.
fn install() -> Result<(), consenso_result> {
    static INSTALLED: parking_lot::Mutex<bool> = parking_lot::Mutex::new(false);
    let mut installed = INSTALLED.lock();
    if !*installed {
        log::set_logger(&BRIDGE).map_err(|_| {
            fail(
                consenso_result::System,
                "another logger is installed in this process",
            )
        })?;
        *installed = true;
    }
    Ok(())
}
