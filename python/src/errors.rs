//! The Python exceptions, and what each core error raises.
//!
//! `ConsensoError` is the base of the library's own errors; bad arguments
//! raise the built-in `TypeError` / `ValueError` (the project's Python
//! conventions).

use consenso::balance::BalanceError;
use consenso::hashing::HashError;
use consenso::runtime::{Members, ReceiveError, StartError};
use consenso::tcp::TcpError;
use consenso::{ConfigError, ProposeError};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyOSError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

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

create_exception!(
    consenso,
    NotLeaderError,
    ConsensoError,
    "This node is not the leader; `leader` names the one it knows of, or is None."
);
create_exception!(
    consenso,
    ClosedError,
    ConsensoError,
    "The node is closed: it was closed, or it stopped on a storage or state machine failure."
);

/// `ProposalTimeout`, made at module init: a `ConsensoError` that is also a
/// built-in `TimeoutError` (two bases, which `create_exception!` cannot do).
static PROPOSAL_TIMEOUT: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// The `ProposalTimeout` class, made on first use.
pub(crate) fn proposal_timeout_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    PROPOSAL_TIMEOUT
        .get_or_try_init(py, || {
            let bases = PyTuple::new(
                py,
                [
                    py.get_type::<ConsensoError>().into_any(),
                    py.get_type::<PyTimeoutError>().into_any(),
                ],
            )?;
            let namespace = PyDict::new(py);
            namespace.set_item("__module__", "consenso")?;
            namespace.set_item(
                "__doc__",
                "The wait ran out before the proposal or read completed. A proposal \
                 may still commit later.",
            )?;
            let class = py
                .get_type::<PyType>()
                .call1(("ProposalTimeout", bases, namespace))?;
            Ok(class.cast_into::<PyType>()?.unbind())
        })
        .map(|t| t.bind(py))
}

/// The exception for a proposal or read that failed; `members` names the
/// leader a `NotLeaderError` carries.
pub(crate) fn propose(py: Python<'_>, e: ProposeError, members: &Members) -> PyErr {
    match e {
        ProposeError::NotLeader { leader } => {
            let leader = leader.and_then(|id| members.name(id));
            let err = NotLeaderError::new_err(match leader {
                Some(name) => format!("not the leader; the leader is {name:?}"),
                None => "not the leader, and no leader is known".to_string(),
            });
            if let Err(set) = err.value(py).setattr("leader", leader) {
                return set;
            }
            err
        }
        ProposeError::Timeout => match proposal_timeout_type(py) {
            Ok(class) => PyErr::from_type(
                class.clone(),
                "timed out waiting for the proposal or read; a proposal may still commit",
            ),
            Err(e) => e,
        },
        ProposeError::Closed => ClosedError::new_err("the node is closed"),
        ProposeError::WouldBlock => pyo3::exceptions::PyRuntimeError::new_err(e.to_string()),
        too_large @ ProposeError::TooLarge { .. } => {
            PyValueError::new_err(format!("command: {too_large}"))
        }
        other => ConsensoError::new_err(other.to_string()),
    }
}

/// The exception for bytes `receive` did not take: bad bytes are a
/// `ValueError`, a full queue a `ConsensoError`, a closed node `ClosedError`.
pub(crate) fn receive(e: ReceiveError) -> PyErr {
    match e {
        ReceiveError::Wire(w) => PyValueError::new_err(format!("data: {w}")),
        ReceiveError::Closed => ClosedError::new_err("the node is closed"),
        ReceiveError::Overloaded => ConsensoError::new_err(e.to_string()),
    }
}

/// The exception for a rejected setting: a `ValueError` naming it.
pub(crate) fn config(e: ConfigError) -> PyErr {
    PyValueError::new_err(format!("{}: {}", e.field, e.reason))
}

/// The exception for a node that did not start: a bad setting is a
/// `ValueError`; storage, snapshot and thread failures are `ConsensoError`.
pub(crate) fn start(e: StartError) -> PyErr {
    match e {
        StartError::Config(c) => config(c),
        other => ConsensoError::new_err(other.to_string()),
    }
}

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

/// The exception for a TCP network that could not be set up: a port in
/// use or a thread refused is an `OSError` (with its errno when the system
/// gave one); anything else is a bad argument `what` (`ValueError`).
pub(crate) fn tcp(e: TcpError, what: &str) -> PyErr {
    match e {
        TcpError::Bind(_, ref io) | TcpError::Io(ref io) => match io.raw_os_error() {
            Some(errno) => PyOSError::new_err((errno, e.to_string())),
            None => PyOSError::new_err(e.to_string()),
        },
        other => PyValueError::new_err(format!("{what}: {other}")),
    }
}
