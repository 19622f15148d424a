"""From Python, how much does `lb.pick()` cost next to a call to an empty
Python method? (Issue target: at most 3x.) Also `acquire`+finish,
`request` over a trivial `process`, and HashRing.get.

Ratios are taken within one run, best of several repeats, so the machine's
speed cancels out. Run: make bench-python (after pip install ./python).
"""

import argparse
import timeit

import consenso


class Node:
    def __init__(self, name):
        self.name = name

    def process(self, request):
        return request


class Empty:
    def method(self):
        pass

    def method1(self, key):
        pass


def best(stmt, globals_, number, repeat):
    return min(timeit.repeat(stmt, globals=globals_, number=number, repeat=repeat)) / number * 1e9


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--number", type=int, default=200_000)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--nodes", type=int, default=100)
    a = p.parse_args()

    nodes = [Node(f"n{i}") for i in range(a.nodes)]
    g = {"empty": Empty(), "ring": consenso.HashRing([n.name for n in nodes], algorithm="maglev")}
    base = best("empty.method()", g, a.number, a.repeat)
    print(f"empty Python method call: {base:6.1f} ns  (1.00x)")
    for policy in ["random", "round_robin", "weighted_round_robin", "least_connections",
                   "least_response_time"]:
        g["lb"] = consenso.LoadBalancer(nodes, policy=policy, seed=1)
        t = best("lb.pick()", g, a.number, a.repeat)
        print(f"lb.pick() {policy:<22} {t:6.1f} ns  ({t / base:.2f}x)")
    base1 = best("empty.method1(b'user:42')", g, a.number, a.repeat)
    print(f"empty Python method call, one argument: {base1:6.1f} ns")
    g["lb"] = consenso.LoadBalancer(nodes, policy="consistent_hash", hash="maglev")
    t = best("lb.pick(b'user:42')", g, a.number, a.repeat)
    print(f"lb.pick(key) consistent_hash maglev {t:6.1f} ns  ({t / base1:.2f}x the one-argument call)")
    g["lb"] = consenso.LoadBalancer(nodes, policy="round_robin")
    t = best("with lb.acquire() as n: pass", g, a.number // 4, a.repeat)
    print(f"with lb.acquire(): round_robin  {t:6.1f} ns  ({t / base:.2f}x)")
    t = best("lb.request(1)", g, a.number // 4, a.repeat)
    print(f"lb.request(1): round_robin      {t:6.1f} ns  ({t / base:.2f}x)")
    t = best("ring.get(b'user:42')", g, a.number, a.repeat)
    print(f"HashRing.get maglev             {t:6.1f} ns  ({t / base1:.2f}x the one-argument call)")


if __name__ == "__main__":
    main()
