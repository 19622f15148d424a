//! Python bindings for consenso: the native module `consenso._consenso`,
//! re-exported by the `consenso` package.
//!
//! A thin adapter (docs/architecture.md, "Layers"): it converts arguments, objects
//! and errors and holds no balancing or hashing logic. Where things live:
//! argument conversion in `args`, exceptions in `errors`, the bridge to
//! Python's `logging` in `logs`, then one module per class family
//! (`balancer`, `hash`, `network`, `node`).

use pyo3::prelude::*;

mod args;
mod balancer;
mod errors;
mod hash;
mod logs;
mod network;
mod node;

/// The library version, the same string as the Rust crate's.
#[pyfunction]
fn version() -> &'static str {
    consenso::VERSION
}

#[pymodule]
fn _consenso(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", consenso::VERSION)?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add_class::<balancer::LoadBalancer>()?;
    m.add_class::<balancer::Lease>()?;
    m.add_class::<hash::HashRing>()?;
    m.add_class::<node::Node>()?;
    m.add_class::<network::LocalNetwork>()?;
    m.add_class::<network::TcpNetwork>()?;
    m.add_function(wrap_pyfunction!(node::_close_all, m)?)?;
    m.add("ConsensoError", py.get_type::<errors::ConsensoError>())?;
    m.add(
        "NoEndpointsError",
        py.get_type::<errors::NoEndpointsError>(),
    )?;
    let not_leader = py.get_type::<errors::NotLeaderError>();
    // The leader a NotLeaderError names; None when none is known.
    not_leader.setattr("leader", py.None())?;
    m.add("NotLeaderError", not_leader)?;
    m.add("ClosedError", py.get_type::<errors::ClosedError>())?;
    m.add("ProposalTimeout", errors::proposal_timeout_type(py)?)?;
    logs::install();
    Ok(())
}
