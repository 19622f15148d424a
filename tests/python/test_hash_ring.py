"""HashRing from Python: the same answers as the balancer's consistent
hashing, replicas, bounded loads, movement, and bad input."""

import collections

import pytest

import consenso

NAMES = [f"node-{i}" for i in range(10)]


@pytest.mark.parametrize("algorithm", ["ring", "maglev", "jump", "rendezvous"])
def test_keys_stay_put_and_spread(algorithm):
    ring = consenso.HashRing(NAMES, algorithm=algorithm)
    assert len(ring) == 10 and ring.nodes == NAMES and ring.algorithm == algorithm
    keys = [f"key-{k}" for k in range(20_000)]
    placed = [ring.get(k) for k in keys]
    assert placed == [ring.get(k.encode()) for k in keys], "str and its UTF-8 bytes agree"
    counts = collections.Counter(placed)
    assert set(counts) == set(NAMES)
    assert max(counts.values()) / (len(keys) / 10) < 1.35, counts
    # Adding a node moves few keys; all but Maglev move only keys that go
    # to the new node (Maglev trades a little churn for its balance).
    bigger = consenso.HashRing(NAMES + ["node-new"], algorithm=algorithm)
    moved = [k for k, p in zip(keys, placed) if bigger.get(k) != p]
    if algorithm == "maglev":
        assert len(moved) / len(keys) < 2.5 / 11
    else:
        assert all(bigger.get(k) == "node-new" for k in moved)
        assert len(moved) / len(keys) < 1.5 / 11


def test_replicas_are_distinct_and_start_with_get():
    ring = consenso.HashRing(NAMES, algorithm="rendezvous", weights=[1] * 9 + [5])
    for k in range(100):
        top = ring.get_n(f"k{k}", 3)
        assert len(set(top)) == 3 and top[0] == ring.get(f"k{k}")
    assert len(ring.get_n("k", 50)) == 10


def test_bounded_loads_skip_full_nodes():
    ring = consenso.HashRing(["a", "b", "c"], algorithm="maglev", table_size=1009)
    first = ring.get("hot")
    loads = [10 if n == first else 0 for n in ring.nodes]
    assert ring.get_bounded("hot", loads, 0.25) != first
    assert ring.get_bounded("hot", [0, 0, 0], 0.25) == first


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="at least one"):
        consenso.HashRing([])
    with pytest.raises(ValueError, match="unknown algorithm"):
        consenso.HashRing(["a"], algorithm="crc32")
    with pytest.raises(TypeError, match="must be str"):
        consenso.HashRing(["a", 2])
    with pytest.raises(ValueError, match="appears twice"):
        consenso.HashRing(["a", "a"])
    with pytest.raises(ValueError, match="weight"):
        consenso.HashRing(["a", "b"], weights=[1, 0])
    with pytest.raises(ValueError, match="jump"):
        consenso.HashRing(["a", "b"], algorithm="jump", weights=[1, 2])
    with pytest.raises(ValueError, match="vnodes applies"):
        consenso.HashRing(["a"], algorithm="maglev", vnodes=10)
    ring = consenso.HashRing(["a", "b"])
    with pytest.raises(TypeError, match="key must be bytes, bytearray, memoryview or str"):
        ring.get(42)
    # Every bytes-like form of a key lands where its bytes do.
    for key in (b"user:42", "user:42"):
        raw = key.encode() if isinstance(key, str) else key
        assert ring.get(bytearray(raw)) == ring.get(memoryview(raw)) == ring.get(key)
    for eps in (0.0, -0.5, float("inf")):
        with pytest.raises(ValueError, match="epsilon"):
            ring.get_bounded("k", [0, 0], eps)
    with pytest.raises(ValueError, match="loads"):
        ring.get_bounded("k", [0], 0.5)
