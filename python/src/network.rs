//! `LocalNetwork`: the core's in-process network, for nodes of one Python
//! process. A node given one as its `send` exchanges messages in Rust,
//! without the GIL, and the network can be partitioned.

use crate::args;
use consenso::local::LocalNetwork as CoreNetwork;
use consenso::runtime::Members;
use consenso::NodeId;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

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

    /// Splits the named nodes into groups that cannot reach one another,
    /// replacing any earlier partition. A node named in no group still
    /// reaches every node (name it in a group of its own to cut it off;
    /// ``consenso.Raft.partition`` does so for the nodes it leaves out).
    #[pyo3(signature = (*groups))]
    fn partition(&self, groups: &Bound<'_, PyTuple>) -> PyResult<()> {
        let mut ids: Vec<Vec<NodeId>> = Vec::with_capacity(groups.len());
        for group in groups.iter() {
            let names = args::strings(&group, "each group")?;
            ids.push(names.iter().map(|n| Members::id_for(n)).collect());
        }
        let slices: Vec<&[NodeId]> = ids.iter().map(Vec::as_slice).collect();
        self.inner.partition(&slices);
        Ok(())
    }

    /// Cuts node ``name`` off, both ways, from every node on the network now
    /// (not from nodes that join later).
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
