"""consenso nodes from Python, in one process: proposals/s through three
Raft nodes (an `apply` in Python on each) whose messages go through Python
`send` callbacks calling the peer's `receive`, or through a
`consenso.LocalNetwork` (in Rust, no GIL), from 1 and 16 Python threads
calling the blocking `propose` and through `propose_async` with 64 in
flight; then on a LocalNetwork with a data directory each (every commit
synced: the textbook `consenso.Raft` runs so); and the cost of one
`propose` on a node alone next to a call of an empty Python function.
Best of --repeat runs per point.

    python python/benches/bench_node.py [--seconds 2] [--repeat 3]
"""

import argparse
import threading
import time
import timeit

import consenso

import contextlib
import tempfile
from typing import Dict, Iterator, Optional

FAST = dict(election_timeout=(0.15, 0.3), heartbeat_interval=0.05)
NAMES = ["n1", "n2", "n3"]


@contextlib.contextmanager
def cluster(data_dir: Optional[str], local: bool) -> Iterator[consenso.Node]:
    """Three nodes wired through Python `send` callbacks, or through a
    LocalNetwork (`local`); yields the leader."""
    nodes: Dict[str, consenso.Node] = {}
    network = consenso.LocalNetwork()

    def wire(me: str):  # type: ignore[no-untyped-def]
        def send(to: str, data: bytes) -> None:
            peer = nodes.get(to)
            if peer is not None:
                try:
                    peer.receive(me, data)
                except consenso.ConsensoError:
                    pass

        return send

    for name in NAMES:
        nodes[name] = consenso.RaftNode(
            name, NAMES, send=network if local else wire(name),
            apply=lambda index, command: None,
            data_dir=None if data_dir is None else f"{data_dir}/{name}", **FAST,
        )
    try:
        while True:
            leader = next((n for n in nodes.values() if n.leader == n.id), None)
            if leader is not None:
                try:
                    leader.read_barrier(timeout=1)
                    break
                except consenso.ConsensoError:
                    pass
            time.sleep(0.01)
        yield leader
    finally:
        for node in nodes.values():
            node.close()


def threads_rate(leader: consenso.Node, threads: int, seconds: float) -> float:
    done = [0] * threads
    stop = time.monotonic() + seconds

    def work(i: int) -> None:
        while time.monotonic() < stop:
            leader.propose(b"x" * 100, timeout=5)
            done[i] += 1

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    started = time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(done) / (time.monotonic() - started)


def async_rate(leader: consenso.Node, inflight: int, seconds: float) -> float:
    slots = threading.Semaphore(inflight)
    done = [0]
    stop = time.monotonic() + seconds
    started = time.monotonic()
    while time.monotonic() < stop:
        slots.acquire()
        future = leader.propose_async(b"x" * 100)

        def finished(f: object) -> None:
            done[0] += 1
            slots.release()

        future.add_done_callback(finished)
    for _ in range(inflight):
        slots.acquire()
    return done[0] / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    print("| what | proposals/s (best of runs) |")
    print("|---|---:|")
    for durable, local in ((False, False), (False, True), (True, True)):
        where = "3 nodes, " + ("data directories" if durable else "in memory") + (
            ", LocalNetwork" if local else ", send callbacks"
        )
        for label, measure in [
            ("1 thread, propose", lambda n: threads_rate(n, 1, args.seconds)),
            ("16 threads, propose", lambda n: threads_rate(n, 16, args.seconds)),
            ("1 thread, propose_async x64", lambda n: async_rate(n, 64, args.seconds)),
        ]:
            best = 0.0
            for _ in range(args.repeat):
                with tempfile.TemporaryDirectory() as tmp:
                    with cluster(tmp if durable else None, local) as leader:
                        best = max(best, measure(leader))
            print(f"| {where}, {label} | {best:,.0f} |", flush=True)

    def empty(command: bytes) -> None:
        pass

    with consenso.RaftNode("a", ["a"], send=lambda to, data: None, **FAST) as node:
        while node.leader != "a":
            time.sleep(0.01)
        n = 20_000
        propose = min(timeit.repeat(lambda: node.propose(b"x"), number=n, repeat=args.repeat)) / n
        call = min(timeit.repeat(lambda: empty(b"x"), number=n, repeat=args.repeat)) / n
    print()
    print(f"one propose on a node alone: {propose * 1e6:.1f} us; "
          f"an empty Python call: {call * 1e9:.0f} ns ({propose / call:,.0f}x)")


if __name__ == "__main__":
    main()
