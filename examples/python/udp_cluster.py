"""Three consensus nodes in three OS processes on 127.0.0.1, each sending
through its own UDP socket: they elect a leader and replicate; the leader's
process is killed; the survivors elect another and keep every committed
command.

    python examples/python/udp_cluster.py [raft|paxos|zab]

The parent starts the three node processes (this same file with --node)
and talks to each over its stdin and stdout, one JSON line per request.
"""

import argparse
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Literal, Tuple

import consenso

NAMES = ["n1", "n2", "n3"]
# A UDP datagram holds at most 65,507 bytes: keep each message well below.
MAX_MESSAGE = 16 << 10


def run_node(name: str, ports: List[int], protocol: Literal["raft", "paxos", "zab"]) -> None:
    """A node process: a UDP socket for the network, stdin for requests."""
    addrs = {n: ("127.0.0.1", p) for n, p in zip(NAMES, ports)}
    senders = {addr: n for n, addr in addrs.items()}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(addrs[name])
    applied: List[str] = []

    def send(to: str, data: bytes) -> None:
        sock.sendto(data, addrs[to])

    def apply(index: int, command: bytes) -> None:
        applied.append(command.decode())

    node = consenso.Node(
        name, NAMES, send=send, apply=apply, protocol=protocol,
        max_bytes_per_message=MAX_MESSAGE,
    )

    def receive_forever() -> None:
        while True:
            data, addr = sock.recvfrom(65535)
            sender = senders.get(addr)
            if sender is None:
                continue  # not one of ours
            try:
                node.receive(sender, data)
            except ValueError:
                pass  # not a message of this cluster: ignored (and counted)
            except consenso.ConsensoError:
                return  # closed

    threading.Thread(target=receive_forever, daemon=True).start()
    for line in sys.stdin:
        request, _, arg = line.strip().partition(" ")
        if request == "status":
            reply: Dict[str, Any] = {"role": node.role, "leader": node.leader, "term": node.term}
        elif request == "propose":
            try:
                node.propose(arg.encode(), timeout=2.0)
                reply = {"ok": True}
            except consenso.NotLeaderError as e:
                reply = {"ok": False, "leader": e.leader}
            except consenso.ConsensoError as e:
                reply = {"ok": False, "error": type(e).__name__}
        elif request == "log":
            reply = {"log": list(applied)}
        else:
            reply = {"error": f"unknown request {request!r}"}
        print(json.dumps(reply), flush=True)
    node.close()


class NodeProcess:
    def __init__(self, name: str, ports: List[int], protocol: str) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--node", name, "--protocol", protocol,
             "--ports", ",".join(map(str, ports))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )

    def ask(self, request: str) -> Dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(request + "\n")
        self.proc.stdin.flush()
        reply: Dict[str, Any] = json.loads(self.proc.stdout.readline())
        return reply

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)


def free_ports(n: int) -> List[int]:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_for_leader(nodes: List[NodeProcess], timeout: float = 10.0) -> Tuple[str, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = {n.name: n.ask("status") for n in nodes}
        for name, s in statuses.items():
            backers = sum(t["leader"] == name for t in statuses.values())
            if s["leader"] == name and backers * 2 > len(NAMES):
                return name, s["term"]
        time.sleep(0.05)
    raise SystemExit("no leader elected")


def propose_all(nodes: List[NodeProcess], commands: List[str]) -> List[str]:
    """Proposes each command through the leader; returns those acknowledged."""
    by_name = {n.name: n for n in nodes}
    acknowledged: List[str] = []
    for command in commands:
        for _ in range(50):
            leader, _ = wait_for_leader(nodes)
            reply = by_name[leader].ask(f"propose {command}")
            if reply["ok"]:
                acknowledged.append(command)
                break
        else:
            raise SystemExit(f"{command} never committed")
    return acknowledged


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("protocol", nargs="?", default="raft", choices=["raft", "paxos", "zab"])
    parser.add_argument("--node")
    parser.add_argument("--protocol", dest="node_protocol")
    parser.add_argument("--ports")
    args = parser.parse_args()
    if args.node:
        run_node(args.node, [int(p) for p in args.ports.split(",")], args.node_protocol)
        return

    ports = free_ports(len(NAMES))
    nodes = [NodeProcess(n, ports, args.protocol) for n in NAMES]
    try:
        leader, term = wait_for_leader(nodes)
        print(f"{args.protocol} over UDP: {leader} leads (term {term}), ports {ports}")
        acked = propose_all(nodes, [f"cmd-{i}" for i in range(100)])
        print(f"{len(acked)} commands committed")

        victim = next(n for n in nodes if n.name == leader)
        victim.kill()
        survivors = [n for n in nodes if n is not victim]
        print(f"killed {leader}'s process (SIGKILL)")
        new_leader, new_term = wait_for_leader(survivors)
        print(f"{new_leader} leads now (term {new_term})")
        acked += propose_all(survivors, [f"cmd-{i}" for i in range(100, 200)])

        deadline = time.monotonic() + 10
        while True:  # the follower may be a few commands behind
            logs = {n.name: n.ask("log")["log"] for n in survivors}
            if all(len(log) >= len(acked) for log in logs.values()):
                break
            assert time.monotonic() < deadline, "a survivor did not catch up"
            time.sleep(0.05)
        for name, log in logs.items():
            missing = [c for c in acked if c not in log]
            assert not missing, f"{name} lost {missing[:3]}"
            assert len(log) == len(set(log)), f"{name} applied a command twice"
        first, second = logs.values()
        assert first == second, "the survivors applied different orders"
        print(f"both survivors applied all {len(acked)} acknowledged commands in one order")
    finally:
        for n in nodes:
            if n.proc.poll() is None:
                n.stop()


if __name__ == "__main__":
    main()
