"""Type stubs for the native module consenso._consenso."""

import asyncio
import concurrent.futures
import os
from typing import Any, Callable, Generic, Iterable, List, Literal, Mapping, Optional, Sequence, Tuple, TypedDict, TypeVar, Union

from typing_extensions import Self, disjoint_base, final

__all__ = [
    "__version__",
    "version",
    "LoadBalancer",
    "Lease",
    "HashRing",
    "Node",
    "LocalNetwork",
    "TcpNetwork",
    "_close_all",
    "ConsensoError",
    "NoEndpointsError",
    "NotLeaderError",
    "ClosedError",
    "ProposalTimeout",
]

__version__: str

def version() -> str:
    """The library version, the same string as the Rust crate's."""

_Key = Union[bytes, bytearray, memoryview, str]

class ConsensoError(Exception):
    """Base class of consenso's errors."""

class NoEndpointsError(ConsensoError):
    """There is no node to pick: the balancer is empty."""

class NotLeaderError(ConsensoError):
    """This node is not the leader; `leader` names the one it knows of, or is None."""

    leader: Optional[str]

class ClosedError(ConsensoError):
    """The node is closed: it was closed, or it stopped on a storage or state machine failure."""

class ProposalTimeout(ConsensoError, TimeoutError):
    """The wait ran out before the proposal or read completed. A proposal may still commit later."""

_BytesLike = Union[bytes, bytearray, memoryview]
_Protocol = Literal["raft", "paxos", "zab"]
_Policy = Literal[
    "random",
    "round_robin",
    "weighted_round_robin",
    "least_connections",
    "least_response_time",
    "consistent_hash",
]
_Hash = Literal["ring", "maglev", "jump", "rendezvous"]
_N = TypeVar("_N")

class _NodeStatus(TypedDict):
    id: str
    protocol: str
    role: str
    term: int
    leader: Optional[str]
    voted_for: Optional[str]
    commit_index: int
    applied_index: int
    last_index: int
    messages_sent: int
    messages_received: int
    messages_rejected: int
    messages_dropped: int
    proposals_failed: int
    storage_errors: int
    storage_failure: Optional[str]
    storage_syncs: int
    snapshot_index: int
    snapshots_taken: int
    snapshots_installed: int
    state_machine_failed: bool
    send_errors: int
    apply_errors: int
    on_state_change_errors: int
    closed: bool

@disjoint_base
class Node:
    """A consensus node whose network is the caller's (see help(consenso.Node))."""

    def __new__(
        cls,
        name: str,
        peers: Iterable[str],
        *,
        send: Union[Callable[[str, bytes], None], "LocalNetwork", "TcpNetwork"],
        apply: Optional[Callable[[int, bytes], Optional[bytes]]] = None,
        on_state_change: Optional[Callable[[str, int, Optional[str]], None]] = None,
        protocol: Optional[_Protocol] = None,
        cluster_id: Optional[int] = None,
        election_timeout: Union[float, Tuple[float, float], None] = None,
        heartbeat_interval: Optional[float] = None,
        data_dir: Union[str, os.PathLike[str], None] = None,
        proposal_timeout: Optional[float] = None,
        max_bytes_per_message: Optional[int] = None,
    ) -> Self: ...
    def receive(self, sender: str, data: _BytesLike) -> None: ...
    def propose(self, command: _BytesLike, timeout: Optional[float] = None) -> Optional[bytes]: ...
    def propose_async(self, command: _BytesLike) -> "concurrent.futures.Future[Optional[bytes]]": ...
    def apropose(self, command: _BytesLike) -> "asyncio.Future[Optional[bytes]]": ...
    def read_barrier(self, timeout: Optional[float] = None) -> int: ...
    @property
    def id(self) -> str: ...
    @property
    def peers(self) -> List[str]: ...
    @property
    def protocol(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def term(self) -> int: ...
    @property
    def leader(self) -> Optional[str]: ...
    @property
    def voted_for(self) -> Optional[str]: ...
    @property
    def commit_index(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    def status(self) -> _NodeStatus: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc: Any) -> bool: ...

def _close_all() -> None: ...

@final
class LocalNetwork:
    """An in-process network for nodes of this process (see help(consenso.LocalNetwork))."""

    def __new__(cls) -> Self: ...
    def partition(self, *groups: Iterable[str]) -> None: ...
    def isolate(self, name: str) -> None: ...
    def cut_one_way(self, sender: str, receiver: str) -> None: ...
    def heal(self) -> None: ...
    @property
    def delivered(self) -> int: ...
    @property
    def dropped(self) -> int: ...

@final
class TcpNetwork:
    """One node's TCP network to its peers (see help(consenso.TcpNetwork))."""

    def __new__(cls, addresses: Mapping[str, str], *, listen: Optional[str] = None) -> Self: ...
    @property
    def address(self) -> Optional[str]: ...
    @property
    def sent(self) -> int: ...
    @property
    def received(self) -> int: ...
    @property
    def dropped(self) -> int: ...
    @property
    def refused(self) -> int: ...

class _NodeStats(TypedDict):
    node: Any
    name: str
    weight: int
    in_flight: int
    ewma_latency: float
    successes: int
    failures: int
    ejected: bool
    ejections: int

@final
class Lease(Generic[_N]):
    """A picked node held in flight until the `with` block ends or `finish`."""

    @property
    def node(self) -> _N: ...
    @property
    def active(self) -> bool: ...
    def finish(self, success: bool = True, latency: Optional[float] = None) -> None:
        """Records the outcome and latency (seconds; default: since the pick).
        Raises ConsensoError when already finished."""
    def __enter__(self) -> _N: ...
    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool: ...
    @classmethod
    def __class_getitem__(cls, item: Any) -> Any: ...

@final
class LoadBalancer(Generic[_N]):
    """A load balancer over Python objects; thread-safe, lock-free picks.

    policy: "random", "round_robin", "weighted_round_robin",
    "least_connections", "least_response_time" or "consistent_hash"
    (hash="ring" | "maglev" | "jump" | "rendezvous"; bound=1.25 for
    bounded loads). A node is known by the name it is added under: a str
    node is its own name; else its `name` attribute (a str); else
    str(node) when its type defines __str__ or __repr__ (never a memory
    address). Renaming a node later does not lose it.
    """

    def __new__(
        cls,
        nodes: Optional[Iterable[_N]] = None,
        policy: _Policy = "random",
        *,
        weights: Optional[Sequence[int]] = None,
        hash: Optional[_Hash] = None,
        bound: Optional[float] = None,
        seed: Optional[int] = None,
        consecutive_failures: Optional[int] = None,
        ejection_time: Optional[float] = None,
        max_ejection_time: Optional[float] = None,
        max_ejected_share: Optional[float] = None,
        panic_threshold: Optional[float] = None,
        slow_start: Optional[float] = None,
        ewma_decay: Optional[float] = None,
    ) -> "LoadBalancer[_N]":
        """Health settings left None keep the library's defaults: eject after
        5 consecutive failures for 30 s, growing to at most 300 s; at most
        half the nodes ejected; panic mode below half healthy; no slow start;
        a 10 s latency decay. Durations are seconds; float("inf") is forever.

        Weights count under every policy: random picks in proportion,
        round_robin is the smooth weighted cycle when weights differ,
        least_connections and least_response_time divide load by weight,
        consistent_hash gives a node keys in proportion (not with jump)."""
    def request(self, request: Any, key: Optional[_Key] = None) -> Any:
        """node.process(request) on the chosen node; records latency and
        outcome; an exception counts as a failure and propagates."""
    def pick(self, key: Optional[_Key] = None) -> _N:
        """The chosen node, untracked."""
    def acquire(self, key: Optional[_Key] = None) -> Lease[_N]:
        """The chosen node, held in flight: `with lb.acquire() as node:`."""
    def add(self, node: _N, weight: Optional[int] = None) -> None: ...
    def extend(
        self, nodes: Iterable[_N], weights: Optional[Iterable[int]] = None
    ) -> None:
        """Adds all of nodes in one rebuild; all or nothing."""
    def remove(self, node: _N) -> None: ...
    def set_weight(self, node: _N, weight: int) -> None: ...
    def stats(self) -> List[_NodeStats]: ...
    @property
    def nodes(self) -> List[_N]: ...
    @property
    def policy(self) -> _Policy: ...
    def __len__(self) -> int: ...
    def __contains__(self, key: object, /) -> bool: ...
    @classmethod
    def __class_getitem__(cls, item: Any) -> Any: ...

@final
class HashRing:
    """Names placed by consistent hashing: "ring", "maglev", "jump" or
    "rendezvous". Immutable and thread-safe."""

    def __new__(
        cls,
        nodes: Iterable[str],
        algorithm: _Hash = "ring",
        *,
        weights: Optional[Sequence[int]] = None,
        vnodes: Optional[int] = None,
        table_size: Optional[int] = None,
    ) -> Self: ...
    def get(self, key: _Key) -> str: ...
    def get_n(self, key: _Key, n: int) -> List[str]: ...
    def get_bounded(self, key: _Key, loads: Sequence[int], epsilon: float) -> str: ...
    @property
    def nodes(self) -> List[str]: ...
    @property
    def algorithm(self) -> _Hash: ...
    def __len__(self) -> int: ...
