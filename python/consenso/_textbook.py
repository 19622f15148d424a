"""The textbook examples made real: ``Raft(nodes)`` and
``LeaderElection(nodes)`` run real consensus nodes in this process, wired by
an in-process network that can be partitioned, whose nodes can be stopped
and restarted (each keeps a data directory, so a restart is a real
recovery)."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from typing import Dict, Iterable, List, Literal, Optional, Tuple, Union, cast

from ._consenso import (
    ClosedError,
    ConsensoError,
    LocalNetwork,
    Node,
    NotLeaderError,
    ProposalTimeout,
)

__all__ = ["LeaderElection", "Raft"]

#: The protocols whose own election a cluster runs.
PROTOCOLS = ("raft", "paxos", "zab")

Command = Union[bytes, bytearray, memoryview, str]


class _InProcessCluster:
    """Nodes of one protocol in this process. Messages go from the sending
    node's thread straight to the receiver's ``receive`` unless the two are
    in different partitions or the receiver is stopped. Thread-safe."""

    def __init__(
        self,
        nodes: Iterable[str],
        protocol: str,
        election_timeout: Union[float, Tuple[float, float]],
        heartbeat_interval: float,
    ) -> None:
        if isinstance(nodes, (str, bytes)):
            raise TypeError("nodes must be an iterable of names, not a single str or bytes")
        self._names: List[str] = list(nodes)
        if not self._names:
            raise ValueError("nodes must name at least one node")
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        self._protocol = cast(Literal["raft", "paxos", "zab"], protocol)
        self._timeouts = dict(
            election_timeout=election_timeout, heartbeat_interval=heartbeat_interval
        )
        self._lock = threading.Lock()
        self._nodes: Dict[str, Node] = {}
        self._applied: Dict[str, List[bytes]] = {}
        self._members = frozenset(self._names)
        # Messages between the nodes go through the core's in-process
        # network, in Rust: no Python callback, no GIL.
        self._network = LocalNetwork()
        self._dir = tempfile.mkdtemp(prefix="consenso-")
        self._closed = False
        try:
            for name in self._names:
                self._start(name)
        except BaseException:
            self.close()
            raise

    def _start(self, name: str) -> None:
        applied: List[bytes] = []
        # `apply` holds no reference to the cluster: an unclosed cluster is
        # collected (and closed by __del__).
        lock = self._lock

        def apply(index: int, command: bytes) -> bytes:
            with lock:
                applied.append(command)
            return index.to_bytes(8, "little")

        node = Node(
            name,
            self._names,
            send=self._network,
            apply=apply,
            protocol=self._protocol,
            data_dir=f"{self._dir}/{self._names.index(name)}",
            **self._timeouts,  # type: ignore[arg-type]
        )
        with self._lock:
            self._nodes[name] = node
            self._applied[name] = applied

    def _node(self, name: str) -> Node:
        with self._lock:
            if self._closed:
                raise ClosedError("the cluster is closed")
            if name not in self._members:
                raise ValueError(f"{name!r} is not a node of this cluster")
            node = self._nodes.get(name)
        if node is None:
            raise ConsensoError(f"{name!r} is stopped")
        return node

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("the cluster is closed")

    def _running(self) -> List[Node]:
        with self._lock:
            return list(self._nodes.values())

    @property
    def nodes(self) -> List[str]:
        """Every node's name, stopped ones included."""
        return list(self._names)

    @property
    def leader(self) -> Optional[str]:
        """The node that leads right now (it says so and a majority of the
        running nodes agree), or ``None``."""
        with self._lock:
            running = dict(self._nodes)
        votes: Dict[str, int] = {}
        for node in running.values():
            leader = node.leader
            if leader is not None:
                votes[leader] = votes.get(leader, 0) + 1
        for name, count in votes.items():
            claimant = running.get(name)
            if count > len(self._names) // 2 and claimant is not None and claimant.leader == name:
                return name
        return None

    def run(self, timeout: float = 5.0) -> str:
        """Blocks until a leader is elected and a quorum confirmed it (a
        linearizable read barrier passed on it); returns its name. Raises
        ``ProposalTimeout`` when none is within ``timeout`` seconds."""
        self._check_open()
        deadline = time.monotonic() + timeout
        while True:
            name = self.leader
            if name is not None:
                remaining = max(deadline - time.monotonic(), 0.001)
                try:
                    self._node(name).read_barrier(timeout=min(remaining, 1.0))
                    return name
                except ConsensoError:
                    pass  # deposed or stopped meanwhile: look again
            if time.monotonic() >= deadline:
                raise ProposalTimeout(f"no leader elected within {timeout} s")
            time.sleep(0.005)

    @property
    def term(self) -> int:
        """The highest term (epoch, ballot round) among the running nodes."""
        return max((n.term for n in self._running()), default=0)

    def stop(self, name: str) -> None:
        """Stops node ``name`` as a crash would (its data directory stays)."""
        node = self._node(name)
        with self._lock:
            self._nodes.pop(name, None)
        node.close()

    def restart(self, name: str) -> None:
        """Starts a stopped node again from its data directory: it recovers
        its term, vote and log, and applies its log again from the start."""
        with self._lock:
            if self._closed:
                raise ClosedError("the cluster is closed")
            if name not in self._members:
                raise ValueError(f"{name!r} is not a node of this cluster")
            if name in self._nodes:
                raise ConsensoError(f"{name!r} is running")
        self._start(name)

    def partition(self, *groups: Iterable[str]) -> None:
        """Splits the network: nodes talk only within their group; nodes
        named in no group are cut off alone."""
        named: List[List[str]] = []
        for group in groups:
            if isinstance(group, str):
                raise TypeError("each group must be an iterable of names, not a str")
            names = list(group)
            for name in names:
                if name not in self._members:
                    raise ValueError(f"{name!r} is not a node of this cluster")
            named.append(names)
        self._network.partition(*named)

    def heal(self) -> None:
        """Ends every partition."""
        self._network.heal()

    def close(self) -> None:
        """Stops every node and removes their data. Idempotent."""
        with self._lock:
            self._closed = True
            nodes = list(self._nodes.values())
            self._nodes.clear()
        for node in nodes:
            node.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: modules may be gone
            pass


class Raft(_InProcessCluster):
    """A Raft cluster of ``nodes`` in this process, as the textbook draws it::

        raft = consenso.Raft(["node1", "node2", "node3"])
        raft.run(timeout=5.0)              # the leader's name
        index = raft.propose(b"set x 1")   # committed at this log index
        raft.log, raft.commit_index, raft.current_term, raft.voted_for
        raft.stop("node2"); raft.restart("node2")
        raft.partition(["node1"], ["node2", "node3"]); raft.heal()

    Real Raft nodes (randomized election timeouts, PreVote, CheckQuorum),
    each with its own data directory, over an in-process network."""

    def __init__(
        self,
        nodes: Iterable[str],
        *,
        election_timeout: Union[float, Tuple[float, float]] = (0.15, 0.3),
        heartbeat_interval: float = 0.05,
    ) -> None:
        super().__init__(nodes, "raft", election_timeout, heartbeat_interval)

    def propose(self, command: Command, timeout: float = 5.0) -> int:
        """Replicates ``command`` (``str`` is sent as UTF-8) through the
        current leader, waiting for one if needed; returns the log index it
        committed at. Raises ``ProposalTimeout`` when it did not commit
        within ``timeout`` seconds (it may still commit)."""
        self._check_open()
        data = command.encode() if isinstance(command, str) else command
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProposalTimeout(f"not committed within {timeout} s")
            name = self.leader
            if name is not None:
                try:
                    index = self._node(name).propose(data, timeout=remaining)
                except ProposalTimeout:
                    raise
                except NotLeaderError:
                    pass  # not the leader any more: nothing was proposed there
                except ClosedError as e:
                    self._check_open()
                    # The leader stopped: the command may have committed.
                    raise ProposalTimeout(
                        f"{name} stopped before answering; the command may have committed"
                    ) from e
                except ConsensoError:
                    pass  # busy, or dropped by a leader change: it did not commit
                else:
                    assert index is not None
                    return int.from_bytes(index, "little")
            time.sleep(0.005)

    @property
    def log(self) -> List[bytes]:
        """The commands applied, in log order, as the leader applied them
        (without a leader: the running node that applied the most).
        Internal entries (a new leader's no-op) are left out."""
        name = self.leader
        with self._lock:
            if name is not None and name in self._applied:
                return list(self._applied[name])
            running: List[List[bytes]] = [self._applied[n] for n in self._nodes]
        longest: List[bytes] = max(running, key=len, default=[])
        return list(longest)

    def log_of(self, name: str) -> List[bytes]:
        """The commands node ``name`` applied, in log order (since its last
        restart: a restarted node applies its log again from the start)."""
        self._node(name)
        with self._lock:
            return list(self._applied[name])

    @property
    def commit_index(self) -> int:
        """The highest log index a running node knows committed."""
        return max((n.commit_index for n in self._running()), default=0)

    @property
    def current_term(self) -> int:
        """The highest term among the running nodes."""
        return self.term

    @property
    def voted_for(self) -> Dict[str, Optional[str]]:
        """Each running node's ``votedFor`` in its current term."""
        with self._lock:
            nodes = dict(self._nodes)
        return {name: node.voted_for for name, node in nodes.items()}

    def __enter__(self) -> "Raft":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LeaderElection(_InProcessCluster):
    """Elects a leader among ``nodes``, as the textbook example does::

        election = consenso.LeaderElection(["node1", "node2", "node3"])
        leader = election.run(timeout=5.0)   # blocks until one is elected

    ``strategy`` is the protocol whose election runs: ``"raft"``
    (randomized timeouts), ``"zab"`` (Fast Leader Election) or ``"paxos"``
    (ballots). The nodes are real consensus nodes in this process;
    ``stop`` the leader and ``run`` again to see the next one elected."""

    def __init__(
        self,
        nodes: Iterable[str],
        strategy: str = "raft",
        *,
        election_timeout: Union[float, Tuple[float, float]] = (0.15, 0.3),
        heartbeat_interval: float = 0.05,
    ) -> None:
        if not isinstance(strategy, str):
            raise TypeError(f"strategy must be a str, not {type(strategy).__name__}")
        if strategy not in PROTOCOLS:
            raise ValueError(
                f"unknown strategy {strategy!r}: the cluster elections are "
                f"{', '.join(map(repr, PROTOCOLS))}"
            )
        self.strategy = strategy
        super().__init__(nodes, strategy, election_timeout, heartbeat_interval)

    def __enter__(self) -> "LeaderElection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

