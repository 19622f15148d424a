//! `LoadBalancer`: the core balancer over arbitrary Python node objects,
//! and `Lease`, a pick held while a request is in flight.
//!
//! Each node object rides on its endpoint as the core's attachment, so a
//! pick hands it back without a lookup of this adapter's own. Removing a
//! node empties its attachment: a pick still in flight (a `Lease`) keeps
//! the endpoint, but no Python reference the garbage collector cannot see.

use crate::args;
use crate::errors::{self, ConsensoError};
use consenso::balance::{
    seconds, Attachment, BalanceError, Balancer, EndpointId, Health, NewEndpoint, Outcome, Pick,
    Policy, SystemClock,
};
use consenso::hashing::Algorithm;
use parking_lot::Mutex;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::gc::PyVisit;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyType};
use pyo3::PyTraverseError;
use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

/// `cls[item]` as `types.GenericAlias` makes it (what `list[int]` is).
fn generic_alias(cls: &Bound<'_, PyType>, item: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let py = cls.py();
    Ok(py
        .import("types")?
        .getattr("GenericAlias")?
        .call1((cls, item))?
        .unbind())
}

/// A node object as its endpoint's attachment; emptied once the node
/// leaves the balancer (removed, cleared, or the balancer dropped).
struct NodeRef(Arc<Mutex<Option<Py<PyAny>>>>);

impl NodeRef {
    fn attachment(node: &Bound<'_, PyAny>) -> Attachment {
        Arc::new(NodeRef(Arc::new(Mutex::new(Some(node.clone().unbind())))))
    }

    /// The node, unless it left the balancer.
    fn get(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.0.lock().as_ref().map(|n| n.clone_ref(py))
    }

    /// True when this is the very object `node`.
    fn is(&self, node: &Bound<'_, PyAny>) -> bool {
        self.0
            .lock()
            .as_ref()
            .is_some_and(|n| n.as_ptr() == node.as_ptr())
    }

    /// Drops the reference (the node left the balancer).
    fn empty(&self) {
        let node = self.0.lock().take();
        drop(node);
    }
}

/// The node reference attached to an endpoint.
fn node_of(attachment: Option<&(dyn Any + Send + Sync)>) -> Option<&NodeRef> {
    attachment.and_then(|a| a.downcast_ref::<NodeRef>())
}

/// How often a pick is retried when it lands on a node removed meanwhile
/// (its snapshot was taken just before the removal).
const PICK_RETRIES: usize = 8;

/// The error for a node this balancer does not have.
fn unknown(e: BalanceError, name: &str) -> PyErr {
    match e {
        BalanceError::Unknown(_) => {
            PyValueError::new_err(format!("{name:?} is not a node of this load balancer"))
        }
        e => errors::balance(e),
    }
}

/// A load balancer over Python objects: ``lb.request(req)`` calls
/// ``node.process(req)`` on the node the policy picks. Thread-safe: any
/// thread may pick, request, add or remove at once; picks are lock-free.
///
/// Args:
///     nodes: the nodes (any objects). A node is known by the name it is
///         added under: a str node is its own name; else its ``name``
///         attribute (a str); else ``str(node)`` when its type defines one.
///     policy: ``"random"``, ``"round_robin"``, ``"weighted_round_robin"``,
///         ``"least_connections"``, ``"least_response_time"`` (power of two
///         choices over peak EWMA latency) or ``"consistent_hash"``.
///     weights: one int >= 1 per node; weights count under every policy.
///     hash: for ``consistent_hash``: ``"ring"``, ``"maglev"``, ``"jump"``
///         or ``"rendezvous"``.
///     bound: for ``consistent_hash``: bounded loads, a node takes at most
///         ``bound`` times the mean (e.g. 1.25).
///     seed: seeds the random choices (an int from 0 to 2**64-1).
///     consecutive_failures: failures in a row that eject a node (5).
///     ejection_time: seconds a first ejection lasts (30), doubling up to
///         ``max_ejection_time`` (300).
///     max_ejected_share: most of the nodes ejected at once (0.5).
///     panic_threshold: below this share of healthy nodes, pick among all
///         (0.5).
///     slow_start: seconds over which a new or returning node ramps up (0).
///     ewma_decay: seconds over which latency observations fade (10).
#[pyclass(frozen, module = "consenso")]
pub struct LoadBalancer {
    inner: Balancer,
    policy: String,
}

impl LoadBalancer {
    /// An owned, timed pick and its node object.
    fn pick_node(
        &self,
        py: Python<'_>,
        key: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<(Pick<'static>, Py<PyAny>)> {
        let key = args::opt_key(key)?;
        for _ in 0..PICK_RETRIES {
            let pick = self
                .inner
                .pick_owned(key.as_deref())
                .map_err(errors::balance)?;
            if let Some(node) = node_of(pick.attachment()).and_then(|n| n.get(py)) {
                return Ok((pick, node));
            }
        }
        Err(removed_meanwhile())
    }

    /// Adds `nodes` (any iterable) with `weights` in one rebuild, all or
    /// nothing.
    fn add_nodes(
        &self,
        py: Python<'_>,
        nodes: &Bound<'_, PyAny>,
        weights: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        // A str is an iterable of one-letter names: surely a mistake.
        if nodes.is_instance_of::<PyString>() || nodes.is_instance_of::<PyBytes>() {
            return Err(PyTypeError::new_err(
                "nodes must be an iterable of nodes, not a single str or bytes",
            ));
        }
        let nodes: Vec<Bound<'_, PyAny>> = nodes.try_iter()?.collect::<PyResult<_>>()?;
        let weights = args::weights(weights, nodes.len())?;
        let mut named = Vec::with_capacity(nodes.len());
        for (node, w) in nodes.iter().zip(weights) {
            named.push((args::node_name(node)?, w, NodeRef::attachment(node)));
        }
        // One rebuild for all nodes, without the GIL: a Maglev table of
        // thousands of nodes takes a while, and other threads may run.
        py.detach(|| {
            self.inner.extend(
                named
                    .iter()
                    .map(|(name, w, a)| NewEndpoint::new(name, *w).with_attachment(Arc::clone(a))),
            )
        })
        .map_err(errors::balance)?;
        Ok(())
    }

    /// The name `node` was added under, if it is a node of this balancer:
    /// the endpoint holding this very object (so a node renamed since is
    /// still found, and another object with its name is not it); a `str`
    /// node by its name.
    fn added_name(&self, node: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
        let mut found = None;
        self.inner.for_each_endpoint(|_, name, a| {
            if found.is_none() && node_of(a).is_some_and(|n| n.is(node)) {
                found = Some(name.to_owned());
            }
        });
        if found.is_none() {
            if let Ok(s) = node.cast::<PyString>() {
                let name = s.to_cow()?.into_owned();
                found = self.inner.contains(&name).then_some(name);
            }
        }
        Ok(found)
    }

    /// The name `node` was added under, or `ValueError`.
    fn known_name(&self, node: &Bound<'_, PyAny>) -> PyResult<String> {
        self.added_name(node)?.ok_or_else(|| {
            let shown = node
                .repr()
                .map(|r| r.to_string())
                .unwrap_or_else(|_| "the node".into());
            PyValueError::new_err(format!("{shown} is not a node of this load balancer"))
        })
    }

    fn add_node(&self, node: &Bound<'_, PyAny>, weight: u32) -> PyResult<()> {
        let name = args::node_name(node)?;
        let attachment = NodeRef::attachment(node);
        // Without the GIL: a hashing policy rebuilds its table.
        node.py()
            .detach(|| self.inner.add_with(&name, weight, attachment))
            .map_err(errors::balance)?;
        Ok(())
    }
}

/// `Health` from the keyword arguments, in seconds and shares; each one not
/// given keeps the core's default. The core checks the result.
#[allow(clippy::too_many_arguments)]
fn health(
    consecutive_failures: Option<u32>,
    ejection_time: Option<f64>,
    max_ejection_time: Option<f64>,
    max_ejected_share: Option<f64>,
    panic_threshold: Option<f64>,
    slow_start: Option<f64>,
    ewma_decay: Option<f64>,
) -> PyResult<Health> {
    let d = Health::default();
    let secs = |setting: &'static str, given: Option<f64>, default| match given {
        Some(s) => seconds(setting, s).map_err(errors::balance),
        None => Ok(default),
    };
    Ok(Health {
        consecutive_failures: consecutive_failures.unwrap_or(d.consecutive_failures),
        base_ejection: secs("ejection_time", ejection_time, d.base_ejection)?,
        max_ejection: secs("max_ejection_time", max_ejection_time, d.max_ejection)?,
        max_ejected_share: max_ejected_share.unwrap_or(d.max_ejected_share),
        panic_threshold: panic_threshold.unwrap_or(d.panic_threshold),
        slow_start: secs("slow_start", slow_start, d.slow_start)?,
        ewma_decay: secs("ewma_decay", ewma_decay, d.ewma_decay)?,
    })
}

/// The core policy for a policy name and the consistent-hashing options.
fn policy(name: &str, hash: Option<&str>, bound: Option<f64>) -> PyResult<Policy> {
    let policy = Policy::from_name(name).ok_or_else(|| {
        PyValueError::new_err(format!(
            "unknown policy {name:?}; one of: {}",
            Policy::NAMES.join(", ")
        ))
    })?;
    let algorithm = hash
        .map(|h| {
            Algorithm::from_name(h).ok_or_else(|| {
                PyValueError::new_err(format!(
                    "unknown hash {h:?}; one of: ring, maglev, jump, rendezvous"
                ))
            })
        })
        .transpose()?;
    policy
        .with_hashing(algorithm, bound)
        .map_err(errors::balance)
}

#[pymethods]
impl LoadBalancer {
    /// A load balancer over `nodes` (any objects; `request` calls their
    /// `process(request)` method) with `policy`.
    #[new]
    ///
    /// Health settings not given keep the library's defaults: eject after 5
    /// consecutive failures for 30 s (`ejection_time`), growing to at most
    /// 300 s (`max_ejection_time`), at most half the nodes ejected
    /// (`max_ejected_share`), panic mode below half healthy
    /// (`panic_threshold`), no `slow_start`, a 10 s `ewma_decay`. Durations
    /// are seconds; `float("inf")` means forever.
    #[pyo3(signature = (
        nodes = None, policy = "random", *, weights = None, hash = None, bound = None,
        seed = None, consecutive_failures = None, ejection_time = None,
        max_ejection_time = None, max_ejected_share = None, panic_threshold = None,
        slow_start = None, ewma_decay = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        nodes: Option<&Bound<'_, PyAny>>,
        policy: &str,
        weights: Option<&Bound<'_, PyAny>>,
        hash: Option<&str>,
        bound: Option<f64>,
        seed: Option<&Bound<'_, PyAny>>,
        consecutive_failures: Option<u32>,
        ejection_time: Option<f64>,
        max_ejection_time: Option<f64>,
        max_ejected_share: Option<f64>,
        panic_threshold: Option<f64>,
        slow_start: Option<f64>,
        ewma_decay: Option<f64>,
    ) -> PyResult<Self> {
        let seed = seed
            .filter(|s| !s.is_none())
            .map(|s| args::uint64(s, "seed"))
            .transpose()?;
        let core_policy = self::policy(policy, hash, bound)?;
        let health = health(
            consecutive_failures,
            ejection_time,
            max_ejection_time,
            max_ejected_share,
            panic_threshold,
            slow_start,
            ewma_decay,
        )?;
        let inner = Balancer::with_options(
            core_policy,
            health,
            Arc::new(SystemClock::default()),
            seed.unwrap_or_else(consenso::rng::entropy_seed),
        )
        .map_err(errors::balance)?;
        let lb = LoadBalancer {
            inner,
            policy: policy.to_string(),
        };
        match nodes {
            Some(nodes) => lb.add_nodes(py, nodes, weights)?,
            // Weights without nodes: as many weights as nodes, so none.
            None => drop(args::weights(weights, 0)?),
        }
        Ok(lb)
    }

    /// Adds every node of `nodes` (with `weights`, one int >= 1 per node, or
    /// all 1) in one rebuild of the policy's tables: all or nothing, so on
    /// ValueError (a bad weight, a name in use or given twice) none is added.
    #[pyo3(signature = (nodes, weights = None))]
    fn extend(
        &self,
        py: Python<'_>,
        nodes: &Bound<'_, PyAny>,
        weights: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.add_nodes(py, nodes, weights)
    }

    /// Picks a node, calls `node.process(request)` and returns its result,
    /// recording the latency and the outcome; an exception counts as a
    /// failure and propagates. `key` is for consistent hashing.
    #[pyo3(signature = (request, key = None))]
    fn request(
        &self,
        py: Python<'_>,
        request: &Bound<'_, PyAny>,
        key: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let (pick, node) = self.pick_node(py, key)?;
        match node
            .bind(py)
            .call_method1(intern!(py, "process"), (request,))
        {
            Ok(result) => {
                pick.finish(Outcome::Success);
                Ok(result.unbind())
            }
            Err(e) => {
                pick.finish(Outcome::Failure);
                Err(e)
            }
        }
    }

    /// The node the policy chooses (`key` for consistent hashing). Not
    /// tracked: use `acquire` to count the request in flight and record
    /// how it went.
    #[pyo3(signature = (key = None))]
    fn pick(&self, py: Python<'_>, key: Option<&Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
        let key = args::opt_key(key)?;
        for _ in 0..PICK_RETRIES {
            let node = self
                .inner
                .select_with(key.as_deref(), |_, a| node_of(a).and_then(|n| n.get(py)))
                .map_err(errors::balance)?;
            if let Some(node) = node {
                return Ok(node);
            }
        }
        Err(removed_meanwhile())
    }

    /// Picks a node and holds it in flight: `with lb.acquire() as node:`
    /// records success, or failure when the block raises, with the time
    /// the block took.
    #[pyo3(signature = (key = None))]
    fn acquire(&self, py: Python<'_>, key: Option<&Bound<'_, PyAny>>) -> PyResult<Lease> {
        let (pick, node) = self.pick_node(py, key)?;
        Ok(Lease {
            pick: Mutex::new(Some(pick)),
            node,
        })
    }

    /// Adds `node` with `weight` (an int >= 1). Other nodes keep their
    /// statistics. Raises ValueError for a bad weight or a name in use.
    #[pyo3(signature = (node, weight = None))]
    fn add(&self, node: &Bound<'_, PyAny>, weight: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let weight = weight.map(args::weight).transpose()?.unwrap_or(1);
        self.add_node(node, weight)
    }

    /// Removes `node`; requests in flight on it finish normally. Raises
    /// ValueError when it is not a node of this balancer.
    fn remove(&self, node: &Bound<'_, PyAny>) -> PyResult<()> {
        let name = self.known_name(node)?;
        // The endpoint found now, by id: if another thread removes it and
        // adds another under its name meanwhile, that one stays.
        let mut found = None;
        self.inner.for_each_endpoint(|id, n, a| {
            if n == name {
                found = Some((id, node_of(a).map(|r| Arc::clone(&r.0))));
            }
        });
        let Some((id, reference)) = found else {
            return Err(unknown(BalanceError::Unknown(name.clone()), &name));
        };
        // Without the GIL: a hashing policy rebuilds its table.
        node.py()
            .detach(|| self.inner.remove_id(id))
            .map_err(|e| unknown(e, &name))?;
        if let Some(reference) = reference {
            NodeRef(reference).empty();
        }
        Ok(())
    }

    /// Sets `node`'s weight (an int >= 1), keeping its statistics.
    fn set_weight(&self, node: &Bound<'_, PyAny>, weight: &Bound<'_, PyAny>) -> PyResult<()> {
        let weight = args::weight(weight)?;
        let name = self.known_name(node)?;
        node.py()
            .detach(|| self.inner.set_weight(&name, weight))
            .map_err(|e| unknown(e, &name))
    }

    /// One dict per node: node, name, weight, in_flight, ewma_latency
    /// (seconds), successes, failures, ejected, ejections.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let mut nodes: HashMap<EndpointId, Py<PyAny>> = HashMap::new();
        self.inner.for_each_endpoint(|id, _, a| {
            if let Some(n) = node_of(a).and_then(|n| n.get(py)) {
                nodes.insert(id, n);
            }
        });
        let list = PyList::empty(py);
        for s in self.inner.stats() {
            // Statistics and nodes come from two snapshots: skip a node
            // added or removed in between.
            let Some(node) = nodes.remove(&s.id) else {
                continue;
            };
            let d = PyDict::new(py);
            d.set_item("node", node)?;
            d.set_item("name", s.name)?;
            d.set_item("weight", s.weight)?;
            d.set_item("in_flight", s.in_flight)?;
            d.set_item("ewma_latency", s.ewma_latency)?;
            d.set_item("successes", s.successes)?;
            d.set_item("failures", s.failures)?;
            d.set_item("ejected", s.ejected)?;
            d.set_item("ejections", s.ejections)?;
            list.append(d)?;
        }
        Ok(list)
    }

    /// The nodes, in the order they were added.
    #[getter]
    fn nodes(&self, py: Python<'_>) -> Vec<Py<PyAny>> {
        let mut nodes = Vec::new();
        self.inner.for_each_endpoint(|_, _, a| {
            if let Some(n) = node_of(a).and_then(|n| n.get(py)) {
                nodes.push(n);
            }
        });
        nodes
    }

    /// The policy's name.
    #[getter]
    fn policy(&self) -> &str {
        &self.policy
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __contains__(&self, node: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(self.added_name(node)?.is_some())
    }

    /// ``LoadBalancer[Server]``: the balancer's type with its node type, for
    /// annotations.
    #[classmethod]
    fn __class_getitem__(cls: &Bound<'_, PyType>, item: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        generic_alias(cls, item)
    }

    fn __repr__(&self) -> String {
        format!(
            "LoadBalancer(policy='{}', nodes={})",
            self.policy,
            self.inner.len()
        )
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        let mut result = Ok(());
        self.inner.for_each_endpoint(|_, _, a| {
            // Never block in a traversal: a reference being read is
            // visited next time.
            let Some(guard) = node_of(a).and_then(|n| n.0.try_lock()) else {
                return;
            };
            if let (Ok(()), Some(n)) = (&result, guard.as_ref()) {
                result = visit.call(n);
            }
        });
        result
    }

    fn __clear__(&self) {
        let mut removed = Vec::new();
        self.inner.for_each_endpoint(|id, _, a| {
            removed.push((id, node_of(a).map(|n| Arc::clone(&n.0))));
        });
        for (id, reference) in removed {
            // Cannot fail but for a concurrent removal, which is as good.
            let _ = self.inner.remove_id(id);
            if let Some(reference) = reference {
                NodeRef(reference).empty();
            }
        }
    }
}

impl LoadBalancer {
    /// Drops every node reference the endpoints hold (the balancer is
    /// going away): picks still in flight hold the endpoints, not the
    /// nodes.
    fn empty_all(&self) {
        self.inner.for_each_endpoint(|_, _, a| {
            if let Some(n) = node_of(a) {
                n.empty();
            }
        });
    }
}

impl Drop for LoadBalancer {
    fn drop(&mut self) {
        self.empty_all();
    }
}

/// A pick kept landing on nodes removed while it ran.
fn removed_meanwhile() -> PyErr {
    ConsensoError::new_err("every node picked was removed meanwhile; try again")
}

/// A picked node held in flight until the `with` block ends or `finish`.
#[pyclass(frozen, module = "consenso")]
pub struct Lease {
    pick: Mutex<Option<Pick<'static>>>,
    node: Py<PyAny>,
}

#[pymethods]
impl Lease {
    /// The picked node.
    #[getter]
    fn node(&self, py: Python<'_>) -> Py<PyAny> {
        self.node.clone_ref(py)
    }

    /// Records how the request went: `success`, and `latency` in seconds
    /// (default: the time since the pick). Raises ConsensoError when the
    /// lease was already finished.
    #[pyo3(signature = (success = true, latency = None))]
    fn finish(&self, success: bool, latency: Option<f64>) -> PyResult<()> {
        let latency = latency
            .map(|s| seconds("latency", s))
            .transpose()
            .map_err(errors::balance)?;
        let pick = self
            .pick
            .lock()
            .take()
            .ok_or_else(|| ConsensoError::new_err("this lease is already finished"))?;
        let outcome = if success {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        match latency {
            Some(l) => pick.finish_with_latency(l, outcome),
            None => pick.finish(outcome),
        }
        Ok(())
    }

    /// True until finished.
    #[getter]
    fn active(&self) -> bool {
        self.pick.lock().is_some()
    }

    fn __enter__(&self, py: Python<'_>) -> Py<PyAny> {
        self.node.clone_ref(py)
    }

    /// Finishes the lease unless `finish` did: success, or failure when the
    /// block raised. Never swallows the exception.
    fn __exit__(
        &self,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> bool {
        if let Some(pick) = self.pick.lock().take() {
            pick.finish(if exc_type.is_some_and(|t| !t.is_none()) {
                Outcome::Failure
            } else {
                Outcome::Success
            });
        }
        false
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.node)
    }

    /// ``Lease[Server]``, for annotations.
    #[classmethod]
    fn __class_getitem__(cls: &Bound<'_, PyType>, item: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        generic_alias(cls, item)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let node = self
            .node
            .bind(py)
            .repr()
            .map(|r| r.to_string())
            .unwrap_or_else(|_| "?".into());
        format!("Lease(node={node}, active={})", self.active())
    }
}
