"""consenso: embeddable cluster coordination.

Load balancing, mirroring the textbook::

    lb = consenso.LoadBalancer(nodes, policy="round_robin")
    lb.request(request)          # node.process(request) on the chosen node

Consistent hashing alone::

    ring = consenso.HashRing(["a", "b", "c"], algorithm="maglev")
    ring.get(b"user:42")
"""

from ._consenso import (
    ConsensoError,
    HashRing,
    Lease,
    LoadBalancer,
    NoEndpointsError,
    __version__,
    version,
)

__all__ = [
    "ConsensoError",
    "HashRing",
    "Lease",
    "LoadBalancer",
    "NoEndpointsError",
    "__version__",
    "version",
]
