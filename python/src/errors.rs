//! The Python exceptions, and what each core error raises.
//!
//! `ConsensoError` is the base of the library's own errors; bad arguments
//! raise the built-in `TypeError` / `ValueError` (the project's Python
//! conventions).

use consenso::balance::BalanceError;
use consenso::hashing::HashError;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::PyErr;

create_exception!(
    consenso,
    ConsensoError,
    PyException,
    "Base class of consenso's errors."
);
create_exception!(
    consenso,
    NoEndpointsError,
    ConsensoError,
    "There is no node to pick: the balancer is empty."
);

/// The exception for a balancer error: an empty balancer is a
/// `NoEndpointsError`, everything else is a bad argument (`ValueError`).
pub(crate) fn balance(e: BalanceError) -> PyErr {
    match e {
        BalanceError::Empty => NoEndpointsError::new_err("the load balancer has no nodes"),
        BalanceError::Hash(h) => hash(h),
        other => PyValueError::new_err(other.to_string()),
    }
}

/// The exception for a hash-ring error: always a bad argument.
pub(crate) fn hash(e: HashError) -> PyErr {
    PyValueError::new_err(e.to_string())
}
