//! Rust log events to Python's `logging`, under the logger `consenso`.
//!
//! Installed once, at module import. An event is handed to Python only when
//! the calling thread can take the GIL (not while the interpreter shuts
//! down); events at debug level and below are not forwarded.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

/// The `consenso` logger, fetched once.
static LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The `logging.getLogger("consenso")` object.
pub(crate) fn logger(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    LOGGER
        .get_or_try_init(py, || {
            Ok(py
                .import("logging")?
                .call_method1("getLogger", ("consenso",))?
                .unbind())
        })
        .map(|l| l.bind(py))
}

struct PythonLog;

/// Python's number for `level`.
fn python_level(level: log::Level) -> u32 {
    match level {
        log::Level::Error => 40,
        log::Level::Warn => 30,
        log::Level::Info => 20,
        log::Level::Debug => 10,
        log::Level::Trace => 5,
    }
}

impl log::Log for PythonLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let message = record.args().to_string();
        Python::try_attach(|py| {
            let logged = logger(py)
                .and_then(|l| l.call_method1("log", (python_level(record.level()), message)));
            if let Err(e) = logged {
                e.write_unraisable(py, None);
            }
        });
    }

    fn flush(&self) {}
}

/// Forwards the library's log events to Python (a no-op when a logger is
/// already installed in this process).
pub(crate) fn install() {
    if log::set_logger(&PythonLog).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

/// Logs `err`, raised by the host's `what` callback, with its traceback, on
/// the `consenso` logger.
pub(crate) fn callback_failed(py: Python<'_>, what: &str, err: PyErr) {
    let logged = logger(py).and_then(|l| {
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item("exc_info", err.value(py))?;
        l.call_method(
            "error",
            ("the %s callback raised an exception", what),
            Some(&kwargs),
        )
    });
    if let Err(e) = logged {
        e.write_unraisable(py, None);
    }
}
