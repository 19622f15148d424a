"""The textbook load balancer, with consenso doing the picking.

The classic snippet:

    class LoadBalancer:
        def __init__(self, nodes):
            self.nodes = nodes
        def request(self, request):
            node = random.choice(self.nodes)
            return node.process(request)

becomes `consenso.LoadBalancer(nodes, policy=...)`, with every policy of
the textbook and of production balancers behind the same two calls.

Run: python examples/python/load_balancer.py   (after pip install ./python)
"""

import collections
import time

import consenso


class Server:
    """A node that processes requests; `delay` seconds each."""

    def __init__(self, name: str, delay: float = 0.0) -> None:
        self.name = name
        self.delay = delay

    def process(self, request: str) -> str:
        if self.delay:
            time.sleep(self.delay)
        return f"{self.name} handled {request}"


def show(title: str, lb: consenso.LoadBalancer[Server], requests: int) -> None:
    counts: collections.Counter[str] = collections.Counter()
    for r in range(requests):
        counts[lb.request(f"req-{r}").split()[0]] += 1
    print(f"{title:<34} " + "  ".join(f"{n}={counts[n]}" for n in sorted(counts)))


def main() -> None:
    servers = [Server("s1"), Server("s2"), Server("s3")]

    # The textbook: random, round robin, weighted round robin.
    show("random", consenso.LoadBalancer(servers, policy="random", seed=1), 300)
    show("round_robin", consenso.LoadBalancer(servers, policy="round_robin"), 300)
    show(
        "weighted_round_robin 5:1:1",
        consenso.LoadBalancer(servers, policy="weighted_round_robin", weights=[5, 1, 1]),
        70,
    )

    # Least response time: s3 is slow, so it soon gets little traffic.
    timed = [Server("s1", 0.001), Server("s2", 0.001), Server("s3", 0.02)]
    lb = consenso.LoadBalancer(timed, policy="least_response_time")
    show("least_response_time (s3 slow)", lb, 200)
    for s in lb.stats():
        print(f"    {s['name']}: ewma {s['ewma_latency'] * 1e3:.1f} ms, {s['successes']} ok")

    # Tracking a request yourself: in flight until the block ends.
    lb = consenso.LoadBalancer(servers, policy="least_connections")
    with lb.acquire() as server:
        print(f"least_connections acquired {server.name}; in flight:",
              {s["name"]: s["in_flight"] for s in lb.stats()})

    # Consistent hashing: a key always lands on the same server.
    lb = consenso.LoadBalancer(servers, policy="consistent_hash", hash="maglev")
    for user in ("alice", "bob", "carol"):
        print(f"consistent_hash {user:<6} -> {lb.pick(key=user).name}")

    ring = consenso.HashRing(["a", "b", "c"], algorithm="maglev")
    print("HashRing get(b'key') =", ring.get(b"key"), " get_n(b'key', 2) =", ring.get_n(b"key", 2))


if __name__ == "__main__":
    main()
