//! `HashRing`: consistent hashing alone, over names.

use crate::args;
use crate::errors;
use consenso::hashing::{Algorithm, HashRing as CoreRing};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyString;

/// Names placed by a consistent-hashing algorithm: "ring" (virtual nodes),
/// "maglev", "jump" or "rendezvous". Immutable and thread-safe; build a new
/// one to change the names.
#[pyclass(frozen, module = "consenso")]
pub struct HashRing {
    ring: CoreRing,
    algorithm: String,
}

#[pymethods]
impl HashRing {
    /// Places `nodes` (strings) with `algorithm`; `weights` (ints >= 1,
    /// not for jump) and `vnodes` (ring) or `table_size` (Maglev, the
    /// smallest acceptable) tune it.
    #[new]
    #[pyo3(signature = (nodes, algorithm = "ring", *, weights = None, vnodes = None, table_size = None))]
    fn new(
        nodes: &Bound<'_, PyAny>,
        algorithm: &str,
        weights: Option<&Bound<'_, PyAny>>,
        vnodes: Option<u32>,
        table_size: Option<usize>,
    ) -> PyResult<Self> {
        let mut alg = Algorithm::from_name(algorithm).ok_or_else(|| {
            PyValueError::new_err(format!(
                "unknown algorithm {algorithm:?}; one of: ring, maglev, jump, rendezvous"
            ))
        })?;
        match (&mut alg, vnodes, table_size) {
            (_, None, None) => {}
            (Algorithm::Ring { vnodes: v }, Some(n), None) => *v = n,
            (Algorithm::Maglev { min_table_size }, None, Some(n)) => *min_table_size = n,
            _ => {
                return Err(PyValueError::new_err(
                    "vnodes applies to the ring algorithm and table_size to maglev",
                ))
            }
        }
        let mut names = Vec::new();
        for node in nodes.try_iter()? {
            let node = node?;
            let s = node.cast::<PyString>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "HashRing nodes must be str, not {}",
                    args::type_name(&node)
                ))
            })?;
            names.push(s.to_cow()?.into_owned());
        }
        let weights = args::weights(weights, names.len())?;
        let endpoints: Vec<(&str, u32)> = names.iter().map(|n| n.as_str()).zip(weights).collect();
        // Without the GIL: a table of thousands of names takes a while.
        let ring = nodes
            .py()
            .detach(|| CoreRing::new(alg, &endpoints))
            .map_err(errors::hash)?;
        Ok(HashRing {
            ring,
            algorithm: algorithm.to_string(),
        })
    }

    /// The node for `key` (bytes or str).
    fn get(&self, key: &Bound<'_, PyAny>) -> PyResult<&str> {
        Ok(self.ring.get(&args::key(key)?))
    }

    /// Up to `n` distinct nodes for `key`, preferred first (replicas).
    fn get_n(&self, key: &Bound<'_, PyAny>, n: usize) -> PyResult<Vec<&str>> {
        Ok(self.ring.get_n(&args::key(key)?, n))
    }

    /// Bounded loads: the first node in `key`'s preference order whose load
    /// (`loads`, one int per node, in order) is below its cap,
    /// ceil((1 + epsilon) * (total + 1) * weight / total_weight) (with equal
    /// weights, ceil((1 + epsilon) * (total + 1) / nodes)). Raises ValueError
    /// unless epsilon > 0.
    fn get_bounded(&self, key: &Bound<'_, PyAny>, loads: Vec<u64>, epsilon: f64) -> PyResult<&str> {
        let h = CoreRing::key_hash(&args::key(key)?);
        let i = self
            .ring
            .index_bounded(h, &loads, epsilon)
            .map_err(errors::hash)?;
        Ok(&self.ring.names()[i])
    }

    /// The node names, in the order given.
    #[getter]
    fn nodes(&self) -> Vec<String> {
        self.ring.names().to_vec()
    }

    /// The algorithm's name.
    #[getter]
    fn algorithm(&self) -> &str {
        &self.algorithm
    }

    fn __len__(&self) -> usize {
        self.ring.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "HashRing(algorithm='{}', nodes={})",
            self.algorithm,
            self.ring.len()
        )
    }
}
