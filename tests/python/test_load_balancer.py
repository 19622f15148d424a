"""LoadBalancer from Python: the textbook calls, every policy, statistics,
health, threads, and bad input. No test depends on timing: latencies are
reported explicitly where a policy needs them."""

import collections
import threading

import pytest

import consenso


class Node:
    """A server in the textbook sense: it processes requests."""

    def __init__(self, name, fail=False):
        self.name = name
        self.fail = fail
        self.seen = []

    def process(self, request):
        self.seen.append(request)
        if self.fail:
            raise RuntimeError(f"{self.name} is down")
        return f"{self.name}:{request}"

    def __repr__(self):
        return f"Node({self.name!r})"


def nodes(*names):
    return [Node(n) for n in names]


def test_request_calls_process_on_the_picked_node_and_returns_its_result():
    a, b, c = nodes("a", "b", "c")
    lb = consenso.LoadBalancer([a, b, c], policy="round_robin")
    assert [lb.request(i) for i in range(4)] == ["a:0", "b:1", "c:2", "a:3"]
    assert (a.seen, b.seen, c.seen) == ([0, 3], [1], [2])
    stats = {s["name"]: s for s in lb.stats()}
    assert stats["a"]["successes"] == 2 and stats["a"]["node"] is a
    assert all(s["in_flight"] == 0 for s in stats.values())
    assert stats["a"]["ewma_latency"] > 0, "request records latency"


def test_an_exception_in_process_counts_as_a_failure_and_propagates():
    bad = Node("bad", fail=True)
    lb = consenso.LoadBalancer([bad], policy="random", seed=1)
    with pytest.raises(RuntimeError, match="bad is down"):
        lb.request("x")
    (s,) = lb.stats()
    assert (s["failures"], s["successes"], s["in_flight"]) == (1, 0, 0)


def test_a_node_without_process_is_a_failure_not_a_crash():
    class NoProcess:
        name = "np"

    lb = consenso.LoadBalancer([NoProcess()], policy="random")
    with pytest.raises(AttributeError):
        lb.request(1)
    assert lb.stats()[0]["failures"] == 1


def test_smooth_weighted_round_robin_is_exact_within_each_cycle():
    lb = consenso.LoadBalancer(nodes("a", "b", "c"), policy="weighted_round_robin", weights=[5, 1, 1])
    assert " ".join(lb.pick().name for _ in range(7)) == "a a b a c a a"


def test_random_is_seeded_and_spreads_evenly():
    def sequence(seed):
        lb = consenso.LoadBalancer(nodes("a", "b", "c", "d"), policy="random", seed=seed)
        return [lb.pick().name for _ in range(20_000)]

    first = sequence(7)
    assert first == sequence(7), "the same seed picks the same sequence"
    counts = collections.Counter(first)
    assert all(4_500 <= counts[n] <= 5_500 for n in "abcd"), counts


def test_least_connections_avoids_nodes_with_requests_in_flight():
    a, b = nodes("a", "b")
    lb = consenso.LoadBalancer([a, b], policy="least_connections", seed=3)
    held = [lb.acquire() for _ in range(10)]
    busy = collections.Counter(lease.node.name for lease in held)
    # Two choices out of two: every pick went to the less loaded node.
    assert busy["a"] == busy["b"] == 5
    for lease in held:
        lease.finish()
    assert all(s["in_flight"] == 0 and s["successes"] == 5 for s in lb.stats())


def test_least_response_time_prefers_the_faster_node():
    fast, slow = nodes("fast", "slow")
    lb = consenso.LoadBalancer([fast, slow], policy="least_response_time", seed=5)
    # Both untried: each gets a first request, then report their latencies.
    for _ in range(2):
        lease = lb.acquire()
        lease.finish(latency=0.001 if lease.node is fast else 0.5)
    picks = collections.Counter(lb.pick().name for _ in range(100))
    assert picks == {"fast": 100}


def test_acquire_tracks_in_flight_and_records_failure_when_the_block_raises():
    lb = consenso.LoadBalancer(nodes("only"), policy="round_robin")
    with lb.acquire() as node:
        assert node.name == "only"
        assert lb.stats()[0]["in_flight"] == 1
    with pytest.raises(ValueError):
        with lb.acquire():
            raise ValueError("boom")
    (s,) = lb.stats()
    assert (s["in_flight"], s["successes"], s["failures"]) == (0, 1, 1)
    lease = lb.acquire()
    lease.finish(success=False, latency=0.25)
    assert not lease.active
    with pytest.raises(consenso.ConsensoError, match="already finished"):
        lease.finish()
    assert lb.stats()[0]["ewma_latency"] == pytest.approx(0.25, rel=0.05)


def test_consecutive_failures_eject_a_node_and_the_rest_take_over():
    good, bad = Node("good"), Node("bad", fail=True)
    lb = consenso.LoadBalancer([good, bad], policy="round_robin", consecutive_failures=3, max_ejected_share=0.5)
    for i in range(6):
        try:
            lb.request(i)
        except RuntimeError:
            pass
    stats = {s["name"]: s for s in lb.stats()}
    assert stats["bad"]["ejected"] and stats["bad"]["ejections"] == 1
    assert stats["bad"]["failures"] == 3
    assert {lb.pick().name for _ in range(10)} == {"good"}


def test_consistent_hash_keeps_keys_on_their_node_and_respects_the_bound():
    names = [f"n{i}" for i in range(5)]
    lb = consenso.LoadBalancer(nodes(*names), policy="consistent_hash", hash="maglev")
    ring = consenso.HashRing(names, algorithm="maglev")
    for k in range(200):
        key = f"user:{k}"
        assert lb.pick(key=key).name == ring.get(key) == lb.pick(key=key.encode()).name
    with pytest.raises(ValueError, match="needs a key"):
        lb.pick()
    bounded = consenso.LoadBalancer(nodes(*names), policy="consistent_hash", hash="jump", bound=1.25)
    held = [bounded.acquire(key="hot") for _ in range(50)]
    # ceil(1.25 * 50 / 5) = 13 at most on any node.
    assert max(s["in_flight"] for s in bounded.stats()) <= 13
    for lease in held:
        lease.finish()


def test_add_remove_and_set_weight_keep_the_other_nodes_statistics():
    a, b = nodes("a", "b")
    lb = consenso.LoadBalancer([a], policy="weighted_round_robin")
    for _ in range(3):
        lb.request("r")
    lb.add(b, weight=3)
    assert len(lb) == 2 and b in lb and lb.nodes == [a, b]
    assert [lb.pick().name for _ in range(4)].count("b") == 3
    lb.set_weight(a, 3)
    lb.remove(b)
    assert b not in lb and lb.nodes == [a]
    (s,) = lb.stats()
    assert (s["name"], s["weight"], s["successes"]) == ("a", 3, 3)
    lb.add("plain-string-node")
    assert "plain-string-node" in lb and lb.policy == "weighted_round_robin"


def test_bad_input_raises_clear_errors():
    with pytest.raises(consenso.NoEndpointsError):
        consenso.LoadBalancer().pick()
    with pytest.raises(consenso.NoEndpointsError):
        consenso.LoadBalancer().request("x")
    lb = consenso.LoadBalancer(nodes("a"))
    for weight in (0, -1, 2**32):
        with pytest.raises(ValueError, match="weight"):
            lb.add(Node("w"), weight=weight)
    with pytest.raises(TypeError, match="weight must be an int"):
        lb.add(Node("w"), weight="heavy")
    with pytest.raises(ValueError, match="already exists"):
        lb.add(Node("a"))
    with pytest.raises(ValueError, match="is not a node"):
        lb.remove(Node("zz"))
    with pytest.raises(ValueError, match="is not a node"):
        lb.set_weight(Node("zz"), 2)
    with pytest.raises(TypeError, match="key must be bytes, bytearray, memoryview or str"):
        lb.pick(key=3.5)
    for seed in (-1, 2**64, 2**70):
        with pytest.raises(ValueError, match="seed must be from 0 to 2\\*\\*64-1"):
            consenso.LoadBalancer(policy="random", seed=seed)
    with pytest.raises(TypeError, match="seed must be an int"):
        consenso.LoadBalancer(policy="random", seed=1.5)
    with pytest.raises(ValueError, match="unknown policy"):
        consenso.LoadBalancer(policy="fastest")
    with pytest.raises(ValueError, match="unknown hash"):
        consenso.LoadBalancer(policy="consistent_hash", hash="md5")
    for bound in (1.0, 0.5, -2.0, float("nan")):
        with pytest.raises(ValueError, match="bound"):
            consenso.LoadBalancer(policy="consistent_hash", bound=bound)
    with pytest.raises(ValueError, match="consistent_hash policy"):
        consenso.LoadBalancer(policy="random", bound=1.5)
    with pytest.raises(ValueError, match="weights for"):
        consenso.LoadBalancer(nodes("a", "b"), weights=[1])
    with pytest.raises(ValueError, match="jump"):
        consenso.LoadBalancer(nodes("a"), policy="consistent_hash", hash="jump", weights=[2])
    with pytest.raises(ValueError, match="panic_threshold"):
        consenso.LoadBalancer(panic_threshold=1.5)
    with pytest.raises(ValueError, match="slow_start"):
        consenso.LoadBalancer(slow_start=-1.0)
    with pytest.raises(TypeError):
        consenso.LoadBalancer(nodes=5)
    assert len(lb) == 1, "refused calls changed nothing"


def test_threads_share_one_balancer_without_losing_counts():
    ns = nodes("a", "b", "c")
    lb = consenso.LoadBalancer(ns, policy="least_connections")
    per_thread = 2_000

    def work():
        for i in range(per_thread):
            with lb.acquire() as node:
                node.process(i)

    def churn():
        for _ in range(200):
            extra = Node("extra")
            lb.add(extra)
            lb.remove(extra)

    threads = [threading.Thread(target=work) for _ in range(4)] + [threading.Thread(target=churn)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = lb.stats()
    assert sum(s["in_flight"] for s in stats) == 0
    # Picks of the churned node left with it; the three kept the rest.
    assert 0 < sum(s["successes"] for s in stats) <= 4 * per_thread


def test_a_node_referencing_its_balancer_is_collected():
    import gc
    import weakref

    class Cyclic(Node):
        pass

    node = Cyclic("c")
    lb = consenso.LoadBalancer([node])
    node.lb = lb
    ref = weakref.ref(node)
    del node, lb
    gc.collect()
    assert ref() is None, "the node <-> balancer cycle was collected"


@pytest.mark.parametrize("leave", ["remove", "drop_balancer"])
def test_a_node_holding_its_own_lease_is_collected_once_it_leaves(leave):
    import gc
    import weakref

    class Cyclic(Node):
        pass

    node = Cyclic("c")
    lb = consenso.LoadBalancer([node, Node("d")], policy="round_robin")
    lease = lb.acquire()
    while lease.node is not node:
        lease.finish()
        lease = lb.acquire()
    node.lease = lease  # node -> lease -> node
    ref = weakref.ref(node)
    del node, lease
    gc.collect()
    assert ref() is not None, "a node of the balancer stays"
    if leave == "remove":
        lb.remove(ref())
        assert [n.name for n in lb.nodes] == ["d"]
    else:
        del lb
    gc.collect()
    assert ref() is None, "the node <-> lease cycle was collected"


def test_a_lease_outliving_its_node_still_finishes():
    lb = consenso.LoadBalancer(nodes("a", "b"), policy="round_robin")
    lease = lb.acquire()
    picked = lease.node
    lb.remove(picked)
    assert lease.node is picked and lease.active
    lease.finish(success=False)
    assert picked not in lb and len(lb) == 1
    assert lb.pick() is not picked


def test_bad_settings_get_the_cores_error_naming_the_setting():
    # The same checks as Rust's Health::validate and C's setters.
    cases = [
        (dict(ejection_time=60.0, max_ejection_time=1.0), "max_ejection"),
        (dict(max_ejected_share=float("nan")), "max_ejected_share"),
        (dict(max_ejected_share=1.5), "max_ejected_share"),
        (dict(panic_threshold=float("nan")), "panic_threshold"),
        (dict(ewma_decay=0.0), "ewma_decay"),
        (dict(ejection_time=float("nan")), "ejection_time"),
        (dict(ejection_time=-1.0), "ejection_time"),
        (dict(policy="consistent_hash", bound=float("inf")), "bound"),
        (dict(policy="least_connections", hash="ring"), "hash"),
    ]
    for kwargs, setting in cases:
        with pytest.raises(ValueError, match=f"invalid {setting}:"):
            consenso.LoadBalancer(nodes("a"), **kwargs)


def test_times_beyond_the_clock_mean_forever():
    lb = consenso.LoadBalancer(
        nodes("bad", "good"),
        policy="round_robin",
        consecutive_failures=1,
        ejection_time=float("inf"),
        max_ejection_time=1e300,
        max_ejected_share=1.0,
        panic_threshold=0.0,
        slow_start=1e30,
    )
    # Round robin starts at a random turn and slow start skips turns at
    # random: take leases until one lands on "bad".
    for _ in range(100):
        lease = lb.acquire()
        if lease.node.name == "bad":
            break
        lease.finish()
    assert lease.node.name == "bad"
    lease.finish(success=False, latency=1e300)
    assert {s["name"]: s["ejected"] for s in lb.stats()}["bad"]
    assert all(lb.pick().name == "good" for _ in range(20))


def test_weights_count_under_every_policy():
    for policy in ("random", "round_robin", "weighted_round_robin", "least_connections",
                   "least_response_time"):
        light, heavy = nodes("light", "heavy")
        lb = consenso.LoadBalancer([light, heavy], policy=policy, weights=[1, 9], seed=5)
        # Held open so the load-aware policies see the load.
        leases = [lb.acquire() for _ in range(1000)]
        share = sum(lease.node is heavy for lease in leases) / len(leases)
        for lease in leases:
            lease.finish()
        assert 0.86 <= share <= 0.94, (policy, share)
    lb = consenso.LoadBalancer(["light", "heavy"], policy="consistent_hash", weights=[1, 9])
    share = sum(lb.pick(key=f"k{i}") == "heavy" for i in range(10_000)) / 10_000
    assert 0.86 <= share <= 0.94, share


def test_a_large_consistent_hash_balancer_places_keys_as_its_hash_ring():
    names = [f"node-{i}" for i in range(2000)]
    for algorithm in ("ring", "maglev", "rendezvous", "jump"):
        lb = consenso.LoadBalancer(names, policy="consistent_hash", hash=algorithm)
        ring = consenso.HashRing(names, algorithm=algorithm)
        assert len(lb) == 2000 and "node-1999" in lb and "node-2000" not in lb
        for k in range(200):
            assert lb.pick(key=f"k{k}") == ring.get(f"k{k}")


def test_a_refused_constructor_or_add_changes_nothing():
    lb = consenso.LoadBalancer(nodes("a", "b"), policy="round_robin")
    with pytest.raises(ValueError, match="already exists"):
        consenso.LoadBalancer(nodes("x", "x"))
    with pytest.raises(ValueError, match="weight"):
        lb.add(Node("c"), weight=10**100)
    with pytest.raises(ValueError, match="already exists"):
        lb.extend([Node("c"), Node("a")])
    with pytest.raises(TypeError, match="bool"):
        lb.extend([Node("c")], weights=[True])
    assert [s["weight"] for s in lb.stats()] == [1, 1] and len(lb) == 2
    lb.add(Node("c"))
    assert [s["name"] for s in lb.stats()] == ["a", "b", "c"]
    # Any weights: round robin stays exact per cycle however large they are.
    lb.set_weight("a", 2**32 - 1)
    assert lb.stats()[0]["weight"] == 2**32 - 1


def test_extend_adds_many_nodes_in_one_call():
    lb = consenso.LoadBalancer(policy="consistent_hash", hash="maglev")
    lb.extend([f"n{i}" for i in range(500)], weights=[1 + i % 3 for i in range(500)])
    lb.extend([])
    assert len(lb) == 500 and "n499" in lb
    ring = consenso.HashRing([f"n{i}" for i in range(500)],
                             weights=[1 + i % 3 for i in range(500)], algorithm="maglev")
    assert all(lb.pick(key=f"k{k}") == ring.get(f"k{k}") for k in range(200))


def test_a_single_string_is_not_a_list_of_nodes():
    with pytest.raises(TypeError, match="not a single str"):
        consenso.LoadBalancer("xyz")
    lb = consenso.LoadBalancer(["a"])
    with pytest.raises(TypeError, match="not a single str"):
        lb.extend("xyz")
    assert len(lb) == 1


def test_tiny_times_are_not_zero():
    # A decay below a nanosecond is the shortest decay, not a refused zero.
    consenso.LoadBalancer(nodes("a"), policy="least_response_time", ewma_decay=1e-10)


def test_a_node_is_known_by_the_name_it_was_added_under():
    a, b = nodes("a", "b")
    lb = consenso.LoadBalancer([a, b], policy="round_robin")
    a.name = "renamed"
    assert a in lb, "the object added is found whatever its name is now"
    lb.set_weight(a, 3)
    assert {s["name"]: s["weight"] for s in lb.stats()} == {"a": 3, "b": 1}
    lb.remove(a)
    assert a not in lb and len(lb) == 1
    # A node is named by a str name attribute, by itself when a str, or by
    # its own __str__/__repr__ (an int is "5"); never by a memory address.
    lb.add(5)
    assert 5 in lb and "5" in [s["name"] for s in lb.stats()]

    class Nameless:
        pass

    with pytest.raises(TypeError, match="stable name"):
        lb.add(Nameless())
    assert Nameless() not in lb

    with pytest.raises(TypeError, match="cannot be None"):
        lb.add(None)
    for raw in (b"k", bytearray(b"k"), memoryview(b"k")):
        with pytest.raises(TypeError, match="name it by a str"):
            lb.add(raw)
    with pytest.raises(TypeError, match="name it by a str"):
        consenso.LoadBalancer([b"a", b"b"])

    class BadName:
        name = 7

    with pytest.raises(TypeError, match="name attribute must be a str, not int"):
        lb.add(BadName())


def test_the_balancer_is_generic_in_its_node_type():
    alias = consenso.LoadBalancer[Node]
    assert alias.__origin__ is consenso.LoadBalancer and alias.__args__ == (Node,)
    assert consenso.Lease[Node].__origin__ is consenso.Lease
    assert "consistent_hash" in consenso.LoadBalancer.__doc__
    assert "ewma_decay" in consenso.LoadBalancer.__doc__


def test_only_the_object_added_is_that_node():
    x, y = nodes("x", "y")
    lb = consenso.LoadBalancer([x, y], policy="round_robin")
    x.name = "y"  # renamed to another node's name
    lb.remove(x)
    assert x not in lb and y in lb and len(lb) == 1
    with pytest.raises(ValueError, match="is not a node"):
        lb.remove(x)  # removing it again must not remove y
    assert y in lb
    twin = Node("y")  # same name, another object
    assert twin not in lb
    with pytest.raises(ValueError, match="is not a node"):
        lb.remove(twin)
    with pytest.raises(ValueError, match="is not a node"):
        lb.set_weight(twin, 2)
    assert y in lb
    # A str node is its own name.
    lb.add("s")
    assert "s" in lb
    lb.remove("s")
    assert "s" not in lb
