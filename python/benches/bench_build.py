"""From Python, what does building a consistent-hashing LoadBalancer of
many nodes cost next to building a HashRing of the same names? (Issue
target: within a small constant.) The constructor adds every node in one
bulk call, so the table is built once, not once per node.

Ratios are taken within one run, best of several repeats. Run:
make bench-python (after pip install ./python).
"""

import argparse
import time

import consenso


def best_ms(build, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        build()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--nodes", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args()
    names = [f"node-{i}" for i in range(a.nodes)]
    print(f"| {a.nodes:,} nodes | LoadBalancer(...) | HashRing(...) | ratio |")
    print("|---|---:|---:|---:|")
    for algorithm in ("ring", "maglev", "rendezvous", "jump"):
        lb = best_ms(lambda: consenso.LoadBalancer(names, policy="consistent_hash", hash=algorithm),
                     a.repeat)
        ring = best_ms(lambda: consenso.HashRing(names, algorithm=algorithm), a.repeat)
        print(f"| {algorithm} | {lb:.2f} ms | {ring:.2f} ms | {lb / ring:.2f}x |")


if __name__ == "__main__":
    main()
