"""consenso against PySyncObj, side by side in one run: three OS processes
on 127.0.0.1 per system, each side with its own TCP transport
(consenso's `TcpNetwork`, PySyncObj's own), Raft on both. "consenso-pysend"
is consenso again with the transport in Python instead (this file's:
length-prefixed frames over one connection per peer, through the node's
`send` callback and `receive`), as a program with a network of its own
would run it. The leader's process runs the load:
closed-loop clients keeping 1 or 64 commands in flight, 10-byte and 1 KiB
commands, for a few seconds per point; requests/s and p50/p99 latency.

    pip install "./python[bench]"     # PySyncObj, bench only
    python python/benches/bench_vs_pysyncobj.py [--seconds 3] [--sizes 10,1024]
        [--inflight 1,64] [--systems consenso,consenso-pysend,pysyncobj,pysyncobj-fast]

PySyncObj runs twice: as it comes, and tuned for latency (it polls every
50 ms by default; "pysyncobj-fast" polls every millisecond and sends
appends every 10 ms). The ratio is the first system's against the better
PySyncObj.

The parent starts the processes (this same file with --serve) and talks to
each over stdin/stdout, one JSON line per request.
"""

import argparse
import json
import socket
import struct
import subprocess
import sys
import threading
import time

NAMES = ["n1", "n2", "n3"]


# ----- the load, run in the leader's process -----

def run_load(submit, size, inflight, seconds):
    """Keeps `inflight` commands in flight through `submit(payload, done)`
    (done(ok) called once from any thread) for `seconds`; returns the
    count of successes and the latencies in seconds."""
    payload = b"x" * size
    slots = threading.Semaphore(inflight)
    lock = threading.Lock()
    latencies = []
    failures = [0]
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        slots.acquire()
        start = time.perf_counter()

        def done(ok, start=start):
            elapsed = time.perf_counter() - start
            with lock:
                if ok:
                    latencies.append(elapsed)
                else:
                    failures[0] += 1
            slots.release()

        submit(payload, done)
    for _ in range(inflight):  # wait for the stragglers
        slots.acquire()
    return latencies, failures[0]


def summary(latencies, failures, seconds):
    latencies.sort()
    pick = lambda q: latencies[min(int(q * len(latencies)), len(latencies) - 1)] if latencies else 0.0  # noqa: E731
    return {
        "rps": len(latencies) / seconds,
        "p50_ms": pick(0.5) * 1e3,
        "p99_ms": pick(0.99) * 1e3,
        "failures": failures,
    }


# ----- consenso over its own TCP network -----

def serve_consenso(name, ports):
    import consenso

    network = consenso.TcpNetwork({n: f"127.0.0.1:{p}" for n, p in zip(NAMES, ports)})
    node = consenso.RaftNode(name, NAMES, send=network, apply=lambda index, command: None)
    return (lambda: node.leader == name), submitter(node)


def submitter(node):
    def submit(payload, done):
        future = node.propose_async(payload)
        future.add_done_callback(lambda f: done(f.exception() is None))

    return submit


# ----- consenso over this file's TCP transport, in Python -----

class TcpTransport:
    """One outgoing connection per peer (made on first use, remade after an
    error), frames of a 4-byte length and the bytes; the first frame on a
    connection names the sender. Lost messages are the protocol's to retry."""

    def __init__(self, me, ports):
        self.me = me
        self.addrs = {n: ("127.0.0.1", p) for n, p in zip(NAMES, ports)}
        self.out = {}
        self.lock = threading.Lock()
        self.listener = socket.create_server(self.addrs[me])
        self.node = None

    def send(self, to, data):
        with self.lock:
            conn = self.out.get(to)
            try:
                if conn is None:
                    conn = socket.create_connection(self.addrs[to], timeout=1)
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    hello = self.me.encode()
                    conn.sendall(struct.pack(">I", len(hello)) + hello)
                    self.out[to] = conn
                conn.sendall(struct.pack(">I", len(data)) + data)
            except OSError:
                self.out.pop(to, None)

    def serve(self):
        while True:
            conn, _ = self.listener.accept()
            threading.Thread(target=self.read_from, args=(conn,), daemon=True).start()

    def read_from(self, conn):
        stream = conn.makefile("rb")

        def frame():
            head = stream.read(4)
            if len(head) < 4:
                return None
            (n,) = struct.unpack(">I", head)
            body = stream.read(n)
            return body if len(body) == n else None

        sender = frame()
        if sender is None:
            return
        sender = sender.decode()
        while True:
            data = frame()
            if data is None:
                return
            try:
                self.node.receive(sender, data)
            except Exception:  # noqa: BLE001 -- closed or malformed: drop
                pass


def serve_consenso_pysend(name, ports):
    import consenso

    transport = TcpTransport(name, ports)
    node = consenso.RaftNode(
        name, NAMES, send=transport.send, apply=lambda index, command: None
    )
    transport.node = node
    threading.Thread(target=transport.serve, daemon=True).start()
    return (lambda: node.leader == name), submitter(node)


# ----- PySyncObj -----

def serve_pysyncobj(name, ports, **conf):
    from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated

    addrs = {n: f"127.0.0.1:{p}" for n, p in zip(NAMES, ports)}

    class Counter(SyncObj):
        def __init__(self):
            super().__init__(
                addrs[name],
                [a for n, a in addrs.items() if n != name],
                SyncObjConf(**conf),
            )
            self.count = 0

        @replicated
        def put(self, value):
            self.count += 1
            return self.count

    obj = Counter()

    def submit(payload, done):
        obj.put(payload, callback=lambda result, error: done(error == FAIL_REASON.SUCCESS))

    return obj._isLeader, submit


# PySyncObj as it comes, and tuned for latency: its loop polls every
# autoTickPeriod (50 ms by default), and a command waits for the next poll.
SYSTEMS = {
    "consenso": serve_consenso,
    "consenso-pysend": serve_consenso_pysend,
    "pysyncobj": serve_pysyncobj,
    "pysyncobj-fast": lambda name, ports: serve_pysyncobj(
        name, ports, autoTickPeriod=0.001, appendEntriesPeriod=0.01
    ),
}


def serve(system, name, ports):
    is_leader, submit = SYSTEMS[system](name, ports)
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "leader?":
            reply = {"leader": bool(is_leader())}
        else:
            latencies, failures = run_load(
                submit, request["size"], request["inflight"], request["seconds"]
            )
            reply = summary(latencies, failures, request["seconds"])
        print(json.dumps(reply), flush=True)


# ----- the parent -----

def free_ports(n):
    socks = [socket.create_server(("127.0.0.1", 0)) for _ in range(n)]
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def measure(system, size, inflight, seconds):
    ports = free_ports(len(NAMES))
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--serve", system, name, ",".join(map(str, ports))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        for name in NAMES
    ]

    def ask(p, request):
        p.stdin.write(json.dumps(request) + "\n")
        p.stdin.flush()
        return json.loads(p.stdout.readline())

    try:
        deadline = time.monotonic() + 30
        leader = None
        while leader is None:
            if time.monotonic() > deadline:
                raise SystemExit(f"{system}: no leader within 30 s")
            time.sleep(0.2)
            leader = next((p for p in procs if ask(p, {"op": "leader?"})["leader"]), None)
        time.sleep(0.5)  # let the followers settle
        return ask(leader, {"op": "load", "size": size, "inflight": inflight, "seconds": seconds})
    finally:
        for p in procs:
            p.stdin.close()
            p.kill()
            p.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", nargs=3, metavar=("SYSTEM", "NAME", "PORTS"))
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--sizes", default="10,1024")
    parser.add_argument("--inflight", default="1,64")
    parser.add_argument(
        "--systems", default="consenso,consenso-pysend,pysyncobj,pysyncobj-fast"
    )
    args = parser.parse_args()
    if args.serve:
        system, name, ports = args.serve
        serve(system, name, [int(p) for p in ports.split(",")])
        return
    systems = args.systems.split(",")
    peers = [i for i, s in enumerate(systems) if s.startswith("pysyncobj")]
    compare = systems[0].startswith("consenso") and bool(peers)
    print("| size | in flight | " + " | ".join(f"{s} req/s (p50 / p99 ms)" for s in systems)
          + (f" | {systems[0]} / best pysyncobj |" if compare else " |"))
    print("|---:|---:|" + "---:|" * len(systems) + ("---:|" if compare else ""))
    for size in map(int, args.sizes.split(",")):
        for inflight in map(int, args.inflight.split(",")):
            results = [measure(s, size, inflight, args.seconds) for s in systems]
            cells = [
                f"{r['rps']:,.0f} ({r['p50_ms']:.2f} / {r['p99_ms']:.2f})"
                + (f", {r['failures']} failed" if r["failures"] else "")
                for r in results
            ]
            ratio = ""
            best_other = max((results[i]["rps"] for i in peers), default=0)
            if compare and best_other > 0:
                ratio = f" {results[0]['rps'] / best_other:.1f}x |"
            print(f"| {size} B | {inflight} | " + " | ".join(cells) + " |" + ratio, flush=True)


if __name__ == "__main__":
    main()
