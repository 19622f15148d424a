"""consenso.Node from Python: three nodes of each protocol in one process,
wired by the test's own `send`, elect, commit in one order, refuse on
followers and on a cut-off leader, survive exceptions in callbacks, and
reject bad arguments with the argument's name."""

import asyncio
import gc
import logging
import os
import random
import subprocess
import sys
import threading
import time

import pytest

import consenso

PROTOCOLS = ["raft", "paxos", "zab"]
NAMES = ["n1", "n2", "n3"]
FAST = dict(election_timeout=(0.06, 0.12), heartbeat_interval=0.015)


class Cluster:
    """Three nodes whose `send` hands bytes straight to the peer's
    `receive`; `cut` names nodes whose messages are dropped both ways."""

    def __init__(self, protocol, apply=None, data_dir=None, **kwargs):
        self.nodes = {}
        self.applied = {n: [] for n in NAMES}
        self.cut = set()
        self.lock = threading.Lock()
        for name in NAMES:
            self.start(name, protocol, apply, data_dir, **kwargs)

    def start(self, name, protocol, apply=None, data_dir=None, **kwargs):
        def send(to, data, me=name):
            if me in self.cut or to in self.cut:
                return
            peer = self.nodes.get(to)
            if peer is not None and not peer.closed:
                try:
                    peer.receive(me, data)
                except consenso.ClosedError:
                    pass

        def record(index, command, me=name):
            with self.lock:
                self.applied[me].append(command)
            return b"applied:" + command

        self.applied[name] = []
        self.nodes[name] = consenso.Node(
            name,
            NAMES,
            send=send,
            apply=apply or record,
            protocol=protocol,
            data_dir=None if data_dir is None else os.path.join(data_dir, name),
            **FAST,
            **kwargs,
        )

    def leader(self, timeout=10.0, among=None):
        deadline = time.monotonic() + timeout
        among = among or NAMES
        while time.monotonic() < deadline:
            leaders = [
                n for n in among if not self.nodes[n].closed and self.nodes[n].leader == n
            ]
            if len(leaders) == 1:
                try:
                    self.nodes[leaders[0]].read_barrier(timeout=0.5)
                    return leaders[0]
                except (consenso.NotLeaderError, consenso.ProposalTimeout):
                    pass
            time.sleep(0.01)
        raise AssertionError("no leader elected")

    def close(self):
        for node in self.nodes.values():
            node.close()


@pytest.fixture(params=PROTOCOLS)
def cluster(request):
    c = Cluster(request.param)
    yield c
    c.close()


def wait_until(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_a_thousand_proposals_apply_in_one_order(cluster):
    leader = cluster.nodes[cluster.leader()]
    assert leader.role in ("leader", "LEADING")
    futures = [leader.propose_async(f"cmd-{i}".encode()) for i in range(1000)]
    results = [f.result(timeout=30) for f in futures]
    assert results == [f"applied:cmd-{i}".encode() for i in range(1000)]
    wait_until(lambda: all(len(a) == 1000 for a in cluster.applied.values()))
    first = cluster.applied["n1"]
    assert first == cluster.applied["n2"] == cluster.applied["n3"]
    assert sorted(first) == sorted(f"cmd-{i}".encode() for i in range(1000))
    assert leader.propose(b"one more", timeout=5) == b"applied:one more"
    assert leader.read_barrier(timeout=5) >= 1001
    status = leader.status()
    assert status["commit_index"] >= 1001 and status["closed"] is False
    assert status["protocol"] == leader.protocol and status["id"] == leader.id


def test_a_follower_refuses_naming_the_leader(cluster):
    name = cluster.leader()
    follower = cluster.nodes[next(n for n in NAMES if n != name)]
    # A node that started last may still be joining: it names no leader yet.
    deadline = time.monotonic() + 10
    while True:
        with pytest.raises(consenso.NotLeaderError) as err:
            follower.propose(b"x", timeout=5)
        if err.value.leader is not None or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert err.value.leader == name
    assert isinstance(err.value, consenso.ConsensoError)


def test_a_cut_off_leader_never_reports_a_false_success(cluster):
    old = cluster.leader()
    cluster.cut.add(old)
    outcomes = []
    for _ in range(3):
        try:
            outcomes.append(cluster.nodes[old].propose(b"lost?", timeout=0.3))
        except (consenso.NotLeaderError, consenso.ProposalTimeout) as e:
            outcomes.append(type(e))
    assert all(o in (consenso.NotLeaderError, consenso.ProposalTimeout) for o in outcomes)
    new = cluster.leader(among=[n for n in NAMES if n != old])
    assert cluster.nodes[new].propose(b"after", timeout=5) == b"applied:after"
    cluster.cut.clear()
    wait_until(lambda: b"after" in cluster.applied[old])
    assert b"lost?" not in cluster.applied[new]


def test_a_timeout_is_a_timeout_error_and_other_threads_run(cluster):
    name = cluster.leader()
    for other in NAMES:
        if other != name:
            cluster.nodes[other].close()
    ticks = []
    stop = threading.Event()

    def count():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.001)

    t = threading.Thread(target=count)
    t.start()
    try:
        with pytest.raises(TimeoutError):
            cluster.nodes[name].propose(b"no quorum", timeout=0.3)
    finally:
        stop.set()
        t.join()
    assert len(ticks) > 10, "the GIL was held during propose"


def test_close_fails_a_pending_proposal(cluster):
    name = cluster.leader()
    for other in NAMES:
        if other != name:
            cluster.nodes[other].close()
    node = cluster.nodes[name]
    future = node.propose_async(b"pending")
    assert not future.cancel(), "a running future cannot be cancelled"
    node.close()
    with pytest.raises(consenso.ClosedError):
        future.result(timeout=5)
    with pytest.raises(consenso.ClosedError):
        node.propose(b"late")
    with pytest.raises(consenso.ClosedError):
        node.receive("n1", b"\x00")
    node.close()  # idempotent
    assert node.closed and node.status()["closed"]


def test_asyncio_does_not_block_the_loop(cluster):
    leader = cluster.nodes[cluster.leader()]

    async def main():
        beats = 0

        async def heartbeat():
            nonlocal beats
            while True:
                beats += 1
                await asyncio.sleep(0)

        hb = asyncio.create_task(heartbeat())
        results = await asyncio.gather(*(leader.apropose(f"a{i}".encode()) for i in range(50)))
        hb.cancel()
        return results, beats

    results, beats = asyncio.run(main())
    assert results == [f"applied:a{i}".encode() for i in range(50)]
    assert beats > 0
    # Without a running loop nothing is proposed.
    last = leader.status()["last_index"]
    with pytest.raises(RuntimeError):
        leader.apropose(b"no loop")
    assert leader.status()["last_index"] == last


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_protocol_fixed_forms(protocol):
    cls = {"raft": consenso.RaftNode, "paxos": consenso.PaxosNode, "zab": consenso.ZabNode}[protocol]
    with cls("a", ["a"], send=lambda to, data: None, **FAST) as node:
        assert isinstance(node, consenso.Node) and node.protocol == protocol
        wait_until(lambda: node.leader == "a")
        assert node.propose(b"solo", timeout=5) is None, "no apply: None"
        assert node.peers == ["a"] and node.id == "a"
        assert protocol in repr(node)
    assert node.closed
    with pytest.raises(TypeError):
        cls("a", ["a"], send=lambda to, data: None, protocol="raft")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_apply_returning_none_and_state_changes(protocol):
    changes = []

    def on_change(role, term, leader):
        changes.append((role, term, leader))

    node = consenso.Node(
        "a", ["a"], send=lambda to, data: None, apply=lambda i, c: None,
        on_state_change=on_change, protocol=protocol, **FAST,
    )
    with node:
        wait_until(lambda: node.leader == "a")
        assert node.propose(b"x", timeout=5) is None
        assert node.term >= 1 and node.commit_index >= 1
    assert any(leader == "a" for _, _, leader in changes), changes
    assert all(isinstance(r, str) and isinstance(t, int) for r, t, _ in changes)


def test_exceptions_in_send_and_on_state_change_are_logged_and_counted(caplog):
    nodes = {}
    flaky = random.Random(7)

    def make_send(me):
        def send(to, data):
            # One message in five lost to an exception (drawn at random: a
            # fixed pattern could starve one link forever).
            if flaky.random() < 0.2:
                raise RuntimeError("flaky network")
            peer = nodes.get(to)
            if peer is not None and not peer.closed:
                peer.receive(me, data)

        return send

    def bad_observer(role, term, leader):
        raise ValueError("observer bug")

    caplog.set_level(logging.ERROR, logger="consenso")
    for name in NAMES:
        nodes[name] = consenso.Node(
            name, NAMES, send=make_send(name), apply=lambda i, c: c,
            on_state_change=bad_observer, protocol="raft", **FAST,
        )
    try:
        c = Cluster.__new__(Cluster)
        c.nodes = nodes
        leader = nodes[c.leader()]
        assert leader.propose(b"still works", timeout=5) == b"still works"
        total = lambda key: sum(n.status()[key] for n in nodes.values())
        wait_until(lambda: total("send_errors") > 0 and total("on_state_change_errors") > 0)
        assert all(not n.status()["state_machine_failed"] for n in nodes.values())
    finally:
        for n in nodes.values():
            n.close()
    messages = " ".join(r.getMessage() for r in caplog.records if r.name == "consenso")
    assert "send callback raised" in messages
    assert "on_state_change callback raised" in messages
    assert any(r.exc_info and "flaky network" in str(r.exc_info[1]) for r in caplog.records)


@pytest.mark.parametrize("bad_result", [False, True])
def test_an_exception_in_apply_stops_the_node(caplog, bad_result):
    def apply(index, command):
        if command == b"boom":
            if bad_result:
                return 42  # not bytes: a TypeError, as bad as raising
            raise KeyError("machine bug")
        return command

    caplog.set_level(logging.ERROR, logger="consenso")
    node = consenso.Node("a", ["a"], send=lambda to, data: None, apply=apply, **FAST)
    with node:
        wait_until(lambda: node.leader == "a")
        assert node.propose(b"fine", timeout=5) == b"fine"
        with pytest.raises(consenso.ClosedError):
            node.propose(b"boom", timeout=5)
        wait_until(lambda: node.closed)
        status = node.status()
        assert status["state_machine_failed"] and status["apply_errors"] == 1
        with pytest.raises(consenso.ClosedError):
            node.propose(b"after", timeout=5)
    assert "apply callback raised" in " ".join(r.getMessage() for r in caplog.records)


def test_blocking_calls_inside_callbacks_are_refused_at_once():
    seen = []
    holder = {}

    def apply(index, command):
        if command == b"outer":
            started = time.monotonic()
            for call in (lambda: holder["node"].propose(b"inner", timeout=5),
                         lambda: holder["node"].read_barrier(timeout=5)):
                try:
                    call()
                except RuntimeError as e:
                    seen.append((type(e), "wait on itself" in str(e)))
            seen.append(time.monotonic() - started < 1.0)
            holder["node"].propose_async(b"inner")  # the callback form works
        return command

    node = consenso.Node("a", ["a"], send=SEND, apply=apply, **FAST)
    holder["node"] = node
    with node:
        wait_until(lambda: node.leader == "a")
        assert node.propose(b"outer", timeout=5) == b"outer"
        wait_until(lambda: node.status()["applied_index"] >= 3)
        assert not node.closed
    assert seen == [(RuntimeError, True)] * 2 + [True]


def test_closing_a_node_from_a_done_callback():
    node = consenso.Node("a", ["a"], send=SEND, **FAST)
    wait_until(lambda: node.leader == "a")
    closed = threading.Event()
    errors = []

    def done(future):
        try:
            node.close()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        closed.set()

    node.propose_async(b"x").add_done_callback(done)
    assert closed.wait(10)
    assert errors == [] and node.closed
    node.close()


def test_one_running_node_per_name_on_a_local_network():
    net = consenso.LocalNetwork()
    first = consenso.Node("a", ["a"], send=net, **FAST)
    try:
        wait_until(lambda: first.leader == "a")
        with pytest.raises(ValueError, match="already on this LocalNetwork"):
            consenso.Node("a", ["a"], send=net, **FAST)
        assert first.propose(b"still mine", timeout=5) is None
        first.close()
        # A closed node's place is taken, as a restart does.
        with consenso.Node("a", ["a"], send=net, **FAST) as second:
            wait_until(lambda: second.leader == "a")
    finally:
        first.close()


def test_a_durable_cluster_keeps_its_log_across_restarts(tmp_path):
    c = Cluster("raft", data_dir=str(tmp_path))
    try:
        leader = c.nodes[c.leader()]
        for i in range(10):
            leader.propose(f"d{i}".encode(), timeout=5)
    finally:
        c.close()
    # Reopened, each node applies its recovered log again, in order.
    c = Cluster("raft", data_dir=str(tmp_path))
    try:
        c.leader()
        expected = [f"d{i}".encode() for i in range(10)]
        wait_until(lambda: all(a[:10] == expected for a in c.applied.values()))
        # A second node on a directory in use is refused.
        with pytest.raises(consenso.ConsensoError, match="in use|lock"):
            c.start("n1", "raft", data_dir=str(tmp_path))
    finally:
        c.close()


def test_a_proposal_timeout_of_forever_waits_without_breaking_the_node():
    with consenso.Node("a", ["a"], send=SEND, proposal_timeout=float("inf"), **FAST) as node:
        wait_until(lambda: node.leader == "a")
        assert node.propose(b"x", timeout=5) is None
        assert node.propose(b"y") is None
        assert not node.closed


def test_futures_pending_at_exit_neither_hang_nor_crash():
    script = """
import consenso, time
node = consenso.Node("a", ["a", "b"], send=lambda to, data: None,
                     election_timeout=(0.06, 0.12), heartbeat_interval=0.015)
futures = [node.propose_async(b"x") for _ in range(20000)]
print("exiting with futures pending", flush=True)
"""
    for _ in range(3):
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert "exiting with futures pending" in done.stdout


def test_bad_bytes_and_senders_are_refused():
    with consenso.Node("a", ["a", "b"], send=lambda to, data: None, **FAST) as node:
        with pytest.raises(ValueError, match="data"):
            node.receive("b", b"garbage bytes")
        with pytest.raises(ValueError, match="data"):
            node.receive("b", b"")
        with pytest.raises(ValueError, match="sender"):
            node.receive("c", b"\x00")
        with pytest.raises(TypeError, match="data"):
            node.receive("b", "text")
        with pytest.raises(TypeError, match="sender"):
            node.receive(2, b"\x00")
        with pytest.raises(TypeError, match="command"):
            node.propose("text")
        with pytest.raises(TypeError, match="timeout"):
            node.propose(b"x", timeout="soon")
        with pytest.raises(ValueError, match="timeout"):
            node.read_barrier(timeout=float("nan"))
        assert node.status()["messages_rejected"] >= 2
        assert not node.closed


SEND = lambda to, data: None  # noqa: E731


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(name=1), TypeError, "name must be a str"),
        (dict(peers="abc"), TypeError, "peers must be an iterable of str"),
        (dict(peers=5), TypeError, "peers must be an iterable"),
        (dict(peers=[]), ValueError, "peers"),
        (dict(peers=["a", "a"]), ValueError, "named twice"),
        (dict(peers=["a", ""]), ValueError, "empty"),
        (dict(peers=["a", 2]), TypeError, "each of peers"),
        (dict(name="z"), ValueError, "not one of the peers"),
        (dict(send=None), TypeError, "send must be callable"),
        (dict(send=3), TypeError, "send must be callable"),
        (dict(apply="no"), TypeError, "apply must be callable"),
        (dict(on_state_change=1), TypeError, "on_state_change must be callable"),
        (dict(protocol="pbft"), ValueError, "protocol must be"),
        (dict(protocol=1), TypeError, "protocol must be a str"),
        (dict(cluster_id=-1), ValueError, "cluster_id must be from 0"),
        (dict(cluster_id=2**64), ValueError, "cluster_id must be from 0"),
        (dict(cluster_id=1.5), TypeError, "cluster_id must be an int"),
        (dict(heartbeat_interval=0), ValueError, "heartbeat_interval"),
        (dict(heartbeat_interval=float("nan")), ValueError, "heartbeat_interval"),
        (dict(heartbeat_interval=True), TypeError, "heartbeat_interval"),
        (dict(heartbeat_interval=0.1, election_timeout=0.1), ValueError, "election_timeout"),
        (dict(election_timeout=(0.3, 0.2)), ValueError, "election_timeout"),
        (dict(election_timeout=(0.3,)), ValueError, "election_timeout"),
        (dict(election_timeout=-1), ValueError, "election_timeout"),
        (dict(election_timeout=float("inf")), ValueError, "election_timeout"),
        (dict(election_timeout=10**400), ValueError, "election_timeout"),
        (dict(proposal_timeout=0), ValueError, "proposal_timeout"),
        (dict(max_bytes_per_message=0), ValueError, "max_bytes_per_message"),
        (dict(max_bytes_per_message=-1), ValueError, "max_bytes_per_message"),
        (dict(max_bytes_per_message="1"), TypeError, "max_bytes_per_message"),
        (dict(data_dir=5), TypeError, "data_dir"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, error, match):
    args = dict(name="a", peers=["a", "b"], send=SEND)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        consenso.Node(args.pop("name"), args.pop("peers"), **args)


def test_a_data_dir_that_is_not_ours_is_refused(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(consenso.ConsensoError, match="not a consenso data directory"):
        consenso.Node("a", ["a"], send=SEND, data_dir=tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def _threads():
    return len(os.listdir("/proc/self/task"))


def test_fifty_create_close_cycles_leave_no_threads():
    gc.collect()
    before = _threads()
    for _ in range(50):
        with consenso.Node("a", ["a", "b", "c"], send=SEND, **FAST) as node:
            node.status()
    gc.collect()
    wait_until(lambda: _threads() <= before, timeout=5)
    # Dropped without close: the node stops with its last reference.
    for _ in range(5):
        consenso.Node("a", ["a", "b"], send=SEND, **FAST)
    gc.collect()
    wait_until(lambda: _threads() <= before, timeout=5)


def test_a_node_whose_callbacks_refer_to_it_is_collected():
    import weakref

    gc.collect()
    before = _threads()

    class Owner:
        def __init__(self):
            self.node = consenso.Node("a", ["a"], send=self.send, apply=self.apply, **FAST)

        def send(self, to, data):
            pass

        def apply(self, index, command):
            return command

    owner = Owner()
    wait_until(lambda: owner.node.leader == "a")
    assert owner.node.propose(b"x", timeout=5) == b"x"
    gone = weakref.ref(owner)
    del owner
    gc.collect()
    wait_until(lambda: gone() is None and _threads() <= before, timeout=10)


def test_interpreter_exit_with_nodes_open_neither_hangs_nor_crashes():
    script = """
import consenso, time
nodes = {}
def make(me):
    def send(to, data):
        nodes[to].receive(me, data)
    return send
for n in ["a", "b", "c"]:
    nodes[n] = consenso.Node(n, ["a", "b", "c"], send=make(n), apply=lambda i, c: c,
                             election_timeout=(0.06, 0.12), heartbeat_interval=0.015)
deadline = time.time() + 10
while not any(n.leader == k for k, n in nodes.items()):
    assert time.time() < deadline
    time.sleep(0.01)
print("exiting with nodes open", flush=True)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "exiting with nodes open" in done.stdout


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_nodes_on_a_local_network(protocol):
    net = consenso.LocalNetwork()
    applied = {n: [] for n in NAMES}
    nodes = {
        n: consenso.Node(n, NAMES, send=net, protocol=protocol,
                         apply=lambda i, c, n=n: applied[n].append(c), **FAST)
        for n in NAMES
    }
    try:
        c = Cluster.__new__(Cluster)
        c.nodes = nodes
        leader = c.leader()
        for i in range(100):
            nodes[leader].propose(f"c{i}".encode(), timeout=5)
        wait_until(lambda: all(len(a) == 100 for a in applied.values()))
        assert applied["n1"] == applied["n2"] == applied["n3"]
        assert net.delivered > 0 and "LocalNetwork" in repr(net)
        # The leader cut off: its proposals do not commit; the others elect.
        net.isolate(leader)
        with pytest.raises((consenso.NotLeaderError, consenso.ProposalTimeout)):
            nodes[leader].propose(b"lost", timeout=0.3)
        others = [n for n in NAMES if n != leader]
        new = c.leader(among=others)
        nodes[new].propose(b"after", timeout=5)
        dropped = net.dropped
        assert dropped > 0
        net.heal()
        wait_until(lambda: b"after" in applied[leader])
        assert b"lost" not in applied[new]
        net.partition([leader], others)
        net.heal()
        net.cut_one_way(others[0], others[1])
        net.heal()
        with pytest.raises(TypeError, match="each group"):
            net.partition("n1")
        with pytest.raises(ValueError, match='groups: "n2" is in two groups'):
            net.partition(["n1", "n2"], ["n2", "n3"])
        # A node named in no group is alone: the two named elect without it.
        net.partition(others)
        with pytest.raises((consenso.NotLeaderError, consenso.ProposalTimeout)):
            nodes[leader].propose(b"alone", timeout=0.3)
        nodes[c.leader(among=others)].propose(b"pair", timeout=5)
        net.heal()
        with pytest.raises(TypeError, match="name must be a str"):
            net.isolate(1)
    finally:
        for node in nodes.values():
            node.close()
