"""consenso: embeddable cluster coordination.

The textbook examples, real::

    election = consenso.LeaderElection(["node1", "node2", "node3"])
    leader = election.run(timeout=5.0)

    raft = consenso.Raft(["node1", "node2", "node3"])
    raft.run(); index = raft.propose(b"set x 1"); raft.log

Consensus nodes whose network is yours (Raft, Multi-Paxos or ZAB)::

    node = consenso.RaftNode("n1", peers=["n1", "n2", "n3"],
                             send=send, apply=apply)
    node.receive("n2", data)          # bytes from the network
    node.propose(b"set x 1", timeout=5.0)

or over the library's own TCP (one process per node)::

    net = consenso.TcpNetwork({"n1": "10.0.0.1:7001", "n2": "10.0.0.2:7001",
                               "n3": "10.0.0.3:7001"})
    node = consenso.RaftNode("n1", peers=["n1", "n2", "n3"], send=net,
                             apply=apply)

Load balancing, mirroring the textbook::

    lb = consenso.LoadBalancer(nodes, policy="round_robin")
    lb.request(request)          # node.process(request) on the chosen node

Consistent hashing alone::

    ring = consenso.HashRing(["a", "b", "c"], algorithm="maglev")
    ring.get(b"user:42")
"""

import atexit as _atexit
from typing import Any as _Any

from ._consenso import (
    ClosedError,
    ConsensoError,
    HashRing,
    Lease,
    LoadBalancer,
    LocalNetwork,
    NoEndpointsError,
    Node,
    NotLeaderError,
    ProposalTimeout,
    TcpNetwork,
    __version__,
    _close_all,
    version,
)

from ._textbook import LeaderElection, Raft

# Node threads call into Python; they stop before the interpreter does.
_atexit.register(_close_all)


class RaftNode(Node):
    """A :class:`Node` running Raft (randomized election timeouts, PreVote
    and CheckQuorum). Takes every argument of :class:`Node` but
    ``protocol``."""

    __slots__ = ()

    def __new__(cls, name: str, peers: _Any, **kwargs: _Any) -> "RaftNode":
        return super().__new__(cls, name, peers, protocol="raft", **kwargs)


class PaxosNode(Node):
    """A :class:`Node` running Multi-Paxos with a stable leader. Takes every
    argument of :class:`Node` but ``protocol``."""

    __slots__ = ()

    def __new__(cls, name: str, peers: _Any, **kwargs: _Any) -> "PaxosNode":
        return super().__new__(cls, name, peers, protocol="paxos", **kwargs)


class ZabNode(Node):
    """A :class:`Node` running ZooKeeper Atomic Broadcast (Fast Leader
    Election, discovery and synchronization). Takes every argument of
    :class:`Node` but ``protocol``."""

    __slots__ = ()

    def __new__(cls, name: str, peers: _Any, **kwargs: _Any) -> "ZabNode":
        return super().__new__(cls, name, peers, protocol="zab", **kwargs)


__all__ = [
    "ClosedError",
    "ConsensoError",
    "HashRing",
    "LeaderElection",
    "Lease",
    "LoadBalancer",
    "LocalNetwork",
    "NoEndpointsError",
    "Node",
    "NotLeaderError",
    "PaxosNode",
    "ProposalTimeout",
    "Raft",
    "RaftNode",
    "TcpNetwork",
    "ZabNode",
    "__version__",
    "version",
]
