//! Python bindings for consenso: the native module `consenso._consenso`.
//!
//! This crate is a thin adapter: it converts types and errors and holds no
//! protocol logic (see DESIGN.md, "Adapters").

use pyo3::prelude::*;

/// The library version, the same string as the Rust crate's.
#[pyfunction]
fn version() -> &'static str {
    consenso::VERSION
}

#[pymodule]
fn _consenso(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", consenso::VERSION)?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    Ok(())
}
