//! The core's networks, for a node's `send`: `LocalNetwork` (nodes of one
//! Python process, which can be partitioned) and `TcpNetwork` (one node
//! reaching peers in other processes). Either way messages go in Rust,
//! without Python callbacks or the GIL.

use crate::args;
use crate::errors;
use consenso::local::LocalNetwork as CoreNetwork;
use consenso::runtime::Members;
use consenso::tcp::{self, TcpNetwork as CoreTcp, TcpOptions, TcpStats};
use consenso::NodeId;
use parking_lot::Mutex;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use std::net::SocketAddr;
use std::sync::Arc;

/// An in-process network for nodes of this process: pass it as a node's
/// ``send`` and the nodes exchange messages directly, without Python
/// callbacks or the GIL. Nodes are named as in their ``peers``.
/// Thread-safe.
#[pyclass(frozen, module = "consenso")]
pub struct LocalNetwork {
    pub(crate) inner: CoreNetwork,
}

/// The node id a name has on every network.
fn id(name: &Bound<'_, PyAny>, what: &str) -> PyResult<NodeId> {
    Ok(Members::id_for(&args::string(name, what)?))
}

#[pymethods]
impl LocalNetwork {
    #[new]
    fn new() -> Self {
        LocalNetwork {
            inner: CoreNetwork::new(),
        }
    }

    /// Splits the network into groups of named nodes: a node reaches only
    /// the nodes of its own group, and a node named in no group (one that
    /// starts later included) reaches none. Replaces every earlier cut.
    /// Raises ``ValueError`` for a name in two groups (nothing changes).
    #[pyo3(signature = (*groups))]
    fn partition(&self, groups: &Bound<'_, PyTuple>) -> PyResult<()> {
        let mut ids: Vec<Vec<NodeId>> = Vec::with_capacity(groups.len());
        let mut names = std::collections::HashMap::new();
        for group in groups.iter() {
            let group = args::strings(&group, "each group")?;
            ids.push(group.iter().map(|n| Members::id_for(n)).collect());
            names.extend(group.into_iter().map(|n| (Members::id_for(&n), n)));
        }
        let slices: Vec<&[NodeId]> = ids.iter().map(Vec::as_slice).collect();
        self.inner.partition(&slices).map_err(|e| {
            let name = names.get(&e.0).cloned().unwrap_or_default();
            PyValueError::new_err(format!("groups: {name:?} is in two groups"))
        })
    }

    /// Cuts node ``name`` off, both ways, from every other node (nodes that
    /// start later included) until ``heal`` or a new partition.
    fn isolate(&self, name: &Bound<'_, PyAny>) -> PyResult<()> {
        self.inner.isolate(id(name, "name")?);
        Ok(())
    }

    /// Cuts the link from ``sender`` to ``receiver`` only.
    fn cut_one_way(&self, sender: &Bound<'_, PyAny>, receiver: &Bound<'_, PyAny>) -> PyResult<()> {
        self.inner
            .cut_one_way(id(sender, "sender")?, id(receiver, "receiver")?);
        Ok(())
    }

    /// Restores every link.
    fn heal(&self) {
        self.inner.heal();
    }

    /// Messages delivered so far.
    #[getter]
    fn delivered(&self) -> u64 {
        self.inner.delivered()
    }

    /// Messages dropped so far (cut links, stopped or unknown nodes).
    #[getter]
    fn dropped(&self) -> u64 {
        self.inner.dropped()
    }

    fn __repr__(&self) -> String {
        format!(
            "<consenso.LocalNetwork delivered={} dropped={}>",
            self.inner.delivered(),
            self.inner.dropped()
        )
    }
}

/// A TCP network for one node of this process, reaching its peers in other
/// processes or on other machines of a trusted network (nothing is
/// encrypted or authenticated): pass it as the node's ``send`` and messages
/// go over TCP in Rust, without Python callbacks or the GIL. The node
/// listens at its own address in ``addresses`` (or at ``listen``, such as
/// ``"0.0.0.0:7001"``) from the moment it is created until it is closed;
/// after that the network can serve a new node of the same name.
///
/// ``send`` never blocks: a message for a peer that is down, or whose
/// queue is full, is dropped and counted (the protocols retry).
///
/// Args:
///     addresses: every member's ``"host:port"`` by name, this node's
///         included, e.g. ``{"n1": "127.0.0.1:7001", "n2": ...}``.
///     listen: where this node listens, when not at its own address.
///
/// Raises ``ValueError`` for an address that does not resolve, and
/// ``TypeError`` for names or addresses that are not ``str``. Thread-safe.
#[pyclass(frozen, module = "consenso")]
pub struct TcpNetwork {
    addresses: Vec<(String, SocketAddr)>,
    listen: Option<SocketAddr>,
    /// The network of the node it serves (or last served).
    current: Mutex<Option<Arc<CoreTcp>>>,
}

impl TcpNetwork {
    /// Starts the network of node `name` of `members`: listens and starts
    /// its writers. Refused while it serves another open node, or when a
    /// member has no address.
    pub(crate) fn bind(
        &self,
        py: Python<'_>,
        name: &str,
        members: &Members,
    ) -> PyResult<Arc<CoreTcp>> {
        // All without the GIL, which the getters hold while they take
        // `current`: holding that lock and waiting for the GIL deadlocks.
        py.detach(|| self.bind_detached(name, members))
            .map_err(|e| match e {
                BindError::Busy(serving) => PyValueError::new_err(format!(
                    "send: this TcpNetwork already serves the open node {serving:?}; give each node its own"
                )),
                BindError::Missing(missing) => PyValueError::new_err(format!(
                    "send: the TcpNetwork has no address for peer {missing:?}"
                )),
                BindError::Tcp(e) => errors::tcp(e, "addresses"),
            })
    }

    fn bind_detached(&self, name: &str, members: &Members) -> Result<Arc<CoreTcp>, BindError> {
        let mut current = self.current.lock();
        if let Some(open) = current.as_ref() {
            if !open.is_closed() {
                let serving = members.name(open.node_id()).unwrap_or("another node");
                return Err(BindError::Busy(serving.to_owned()));
            }
            // Closed, perhaps still closing on another thread: this returns
            // once its port is free.
            open.shutdown();
        }
        let addresses: Vec<(NodeId, SocketAddr)> = self
            .addresses
            .iter()
            .map(|(n, a)| (Members::id_for(n), *a))
            .collect();
        if let Some(missing) = tcp::missing_address(&addresses, members.ids()) {
            let missing = members.name(missing).unwrap_or_default();
            return Err(BindError::Missing(missing.to_owned()));
        }
        let me = Members::id_for(name);
        let network = CoreTcp::bind(me, &addresses, self.listen, TcpOptions::default())
            .map_err(BindError::Tcp)?;
        let network = Arc::new(network);
        *current = Some(Arc::clone(&network));
        Ok(network)
    }

    fn stats(&self) -> TcpStats {
        self.current
            .lock()
            .as_ref()
            .map(|n| n.stats())
            .unwrap_or_default()
    }
}

/// Why a node could not take a `TcpNetwork`.
enum BindError {
    /// It serves this open node.
    Busy(String),
    /// This peer has no address.
    Missing(String),
    Tcp(tcp::TcpError),
}

#[pymethods]
impl TcpNetwork {
    #[new]
    #[pyo3(signature = (addresses, *, listen=None))]
    fn new(addresses: &Bound<'_, PyAny>, listen: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let items = addresses.call_method0("items").map_err(|_| {
            PyTypeError::new_err(format!(
                "addresses must be a mapping of names to \"host:port\", not {}",
                args::type_name(addresses)
            ))
        })?;
        let mut resolved = Vec::new();
        for item in items.try_iter()? {
            let (name, address): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item?.extract()?;
            let name = args::string(&name, "addresses' names")?;
            let address = args::string(&address, "addresses' values")?;
            // Name resolution may wait on DNS: without the GIL.
            let addr = addresses.py().detach(|| tcp::resolve(&address));
            resolved.push((name, addr.map_err(|e| errors::tcp(e, "addresses"))?));
        }
        if resolved.is_empty() {
            return Err(PyValueError::new_err(
                "addresses must name at least one node",
            ));
        }
        let listen = match listen.filter(|l| !l.is_none()) {
            Some(l) => {
                let l = args::string(l, "listen")?;
                let addr = addresses.py().detach(|| tcp::resolve(&l));
                Some(addr.map_err(|e| errors::tcp(e, "listen"))?)
            }
            None => None,
        };
        Ok(TcpNetwork {
            addresses: resolved,
            listen,
            current: Mutex::new(None),
        })
    }

    /// ``"host:port"`` the node listens at (the port chosen, for port 0),
    /// or ``None`` before a node uses the network.
    #[getter]
    fn address(&self) -> Option<String> {
        self.current
            .lock()
            .as_ref()
            .map(|n| n.local_addr().to_string())
    }

    /// Messages written to peers.
    #[getter]
    fn sent(&self) -> u64 {
        self.stats().sent
    }

    /// Messages read from peers.
    #[getter]
    fn received(&self) -> u64 {
        self.stats().received
    }

    /// Messages dropped: a peer down or too slow, or no node to take them.
    #[getter]
    fn dropped(&self) -> u64 {
        self.stats().dropped
    }

    /// Connections closed because they were not a consenso peer's.
    #[getter]
    fn refused(&self) -> u64 {
        self.stats().refused
    }

    fn __repr__(&self) -> String {
        let s = self.stats();
        format!(
            "<consenso.TcpNetwork address={} sent={} received={} dropped={}>",
            self.address().unwrap_or_else(|| "None".into()),
            s.sent,
            s.received,
            s.dropped
        )
    }
}
