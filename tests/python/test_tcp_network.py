"""consenso.TcpNetwork: nodes of each protocol over loopback TCP, each with
a network of its own, elect, commit in one order, lose their leader and go
on; a network serves one open node at a time and can serve it again after
it closes; bad addresses are refused with the argument's name."""

import socket
import threading
import time

import pytest

import consenso

NAMES = ["n1", "n2", "n3"]
FAST = dict(election_timeout=(0.08, 0.16), heartbeat_interval=0.02)


def free_ports(n):
    """Ports free on 127.0.0.1 now (held open together, so distinct)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def addresses():
    return {name: f"127.0.0.1:{port}" for name, port in zip(NAMES, free_ports(3))}


def wait_for(what, predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


class TcpCluster:
    def __init__(self, protocol):
        self.addresses = addresses()
        self.applied = {n: [] for n in NAMES}
        self.lock = threading.Lock()
        self.networks = {n: consenso.TcpNetwork(self.addresses) for n in NAMES}
        self.nodes = {}
        for name in NAMES:
            self.start(name, protocol)

    def start(self, name, protocol):
        def apply(index, command, me=name):
            with self.lock:
                self.applied[me].append(command)
            return command

        self.applied[name] = []
        self.nodes[name] = consenso.Node(
            name, NAMES, send=self.networks[name], apply=apply, protocol=protocol, **FAST
        )

    def leader(self, among=None):
        """The first node that knows itself the leader."""
        names = among or list(self.nodes)

        def leading():
            return [n for n in names if self.nodes[n].leader == n]

        wait_for("a leader", leading)
        return leading()[0]

    def close(self):
        for node in self.nodes.values():
            node.close()


@pytest.mark.parametrize("protocol", ["raft", "paxos", "zab"])
def test_three_nodes_over_tcp_commit_in_one_order_and_survive_their_leader(protocol):
    cluster = TcpCluster(protocol)
    try:
        first = cluster.leader()
        for i in range(100):
            assert cluster.nodes[first].propose(b"cmd%d" % i, timeout=5.0) == b"cmd%d" % i
        net = cluster.networks[first]
        assert net.address == cluster.addresses[first]
        assert net.sent > 0 and net.received > 0 and net.refused == 0
        cluster.nodes[first].close()
        rest = [n for n in NAMES if n != first]
        second = cluster.leader(rest)
        for i in range(100, 150):
            cluster.nodes[second].propose(b"cmd%d" % i, timeout=5.0)
        # The old leader comes back on its port (same network object, its
        # log lost: in memory) and catches up.
        cluster.start(first, protocol)
        wait_for("every node to apply 150", lambda: all(len(a) >= 150 for a in cluster.applied.values()))
        logs = list(cluster.applied.values())
        assert logs[0][:150] == logs[1][:150] == logs[2][:150]
        assert logs[0][:150] == [b"cmd%d" % i for i in range(150)]
    finally:
        cluster.close()


def test_a_network_serves_one_open_node_at_a_time():
    addrs = addresses()
    net = consenso.TcpNetwork(addrs)
    assert net.address is None and net.sent == 0
    node = consenso.RaftNode("n1", NAMES, send=net)
    try:
        with pytest.raises(ValueError, match='already serves the open node "n1"'):
            consenso.RaftNode("n2", NAMES, send=net)
    finally:
        node.close()
    # Closed: the port is free and the network serves again.
    again = consenso.RaftNode("n1", NAMES, send=net)
    again.close()


def test_a_port_in_use_is_an_os_error_and_nothing_is_left_open():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        addrs = addresses()
        addrs["n1"] = "127.0.0.1:%d" % taken.getsockname()[1]
        net = consenso.TcpNetwork(addrs)
        with pytest.raises(OSError, match="could not listen"):
            consenso.RaftNode("n1", NAMES, send=net)
        assert net.address is None
    # The refusal changed nothing: the network works once the port is free.
    node = consenso.RaftNode("n1", NAMES, send=net)
    node.close()


def test_listen_overrides_the_own_address():
    addrs = addresses()
    port = free_ports(1)[0]
    net = consenso.TcpNetwork(addrs, listen=f"0.0.0.0:{port}")
    with consenso.RaftNode("n2", NAMES, send=net):
        assert net.address == f"0.0.0.0:{port}"


def test_bad_addresses_are_refused_by_name():
    with pytest.raises(TypeError, match="addresses must be a mapping"):
        consenso.TcpNetwork(["127.0.0.1:7001"])
    with pytest.raises(ValueError, match="at least one node"):
        consenso.TcpNetwork({})
    with pytest.raises(ValueError, match="not a reachable host:port"):
        consenso.TcpNetwork({"n1": "no-port-here"})
    with pytest.raises(ValueError, match="not a reachable host:port"):
        consenso.TcpNetwork({"n1": "127.0.0.1:70000"})
    with pytest.raises(TypeError, match="addresses' values"):
        consenso.TcpNetwork({"n1": 7001})
    with pytest.raises(TypeError, match="addresses' names"):
        consenso.TcpNetwork({1: "127.0.0.1:7001"})
    with pytest.raises(TypeError, match="listen"):
        consenso.TcpNetwork({"n1": "127.0.0.1:7001"}, listen=7001)
    partial = consenso.TcpNetwork({"n1": "127.0.0.1:7001", "n2": "127.0.0.1:7002"})
    with pytest.raises(ValueError, match='no address for peer "n3"'):
        consenso.RaftNode("n1", NAMES, send=partial)
    assert partial.address is None


def test_a_stranger_on_the_port_is_refused_and_counted():
    addrs = addresses()
    net = consenso.TcpNetwork(addrs)
    with consenso.RaftNode("n1", NAMES, send=net):
        host, port = addrs["n1"].split(":")
        with socket.create_connection((host, int(port))) as s:
            s.sendall(b"GET / HTTP/1.1\r\n\r\n")
            wait_for("the refusal", lambda: net.refused == 1)


def test_reading_a_network_while_a_node_takes_it_does_not_deadlock():
    net = consenso.TcpNetwork(addresses())
    stop = threading.Event()
    reads = [0]

    def poll():
        while not stop.is_set():
            repr(net), net.address, net.sent
            reads[0] += 1

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        for _ in range(20):
            consenso.RaftNode("n1", NAMES, send=net).close()
    finally:
        stop.set()
        poller.join()
    assert reads[0] > 0


def test_a_node_closed_on_one_thread_frees_the_network_for_another():
    net = consenso.TcpNetwork(addresses())
    for _ in range(10):
        node = consenso.RaftNode("n1", NAMES, send=net)
        closer = threading.Thread(target=node.close)
        closer.start()
        # Refused while the node is open; once it is closing, the new node
        # waits for the close under way and listens on the freed port
        # (never an OSError for a port still held).
        deadline = time.monotonic() + 10
        while True:
            try:
                consenso.RaftNode("n1", NAMES, send=net).close()
                break
            except ValueError as e:
                assert "already serves" in str(e)
                assert time.monotonic() < deadline
        closer.join()


def test_addresses_no_node_could_use_are_refused_by_argument():
    with pytest.raises(ValueError, match="^listen: "):
        consenso.TcpNetwork({"n1": "127.0.0.1:7001"}, listen="nope")
    port = free_ports(1)[0]
    shared = consenso.TcpNetwork({n: f"127.0.0.1:{port}" for n in NAMES})
    with pytest.raises(ValueError, match="^addresses: two nodes are given the address"):
        consenso.RaftNode("n1", NAMES, send=shared)
    zero = addresses()
    zero["n2"] = "127.0.0.1:0"
    with pytest.raises(ValueError, match="port 0"):
        consenso.RaftNode("n1", NAMES, send=consenso.TcpNetwork(zero))
