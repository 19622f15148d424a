"""The textbook Raft class, real: a three-node cluster elects a leader,
replicates commands, loses its leader, elects another, and keeps every
committed command.

    python examples/python/raft.py
"""

import time

import consenso

with consenso.Raft(["node1", "node2", "node3"]) as raft:
    leader = raft.run(timeout=5.0)
    print(f"leader: {leader}, term {raft.current_term}, votes {raft.voted_for}")

    for command in [b"set x 1", b"set y 2", b"set x 3"]:
        index = raft.propose(command)
        print(f"committed {command!r} at index {index}")
    print(f"log: {raft.log}, commit index {raft.commit_index}")
    committed = raft.log

    raft.stop(leader)
    print(f"{leader} stops")
    new_leader = raft.run(timeout=5.0)
    print(f"new leader: {new_leader}, term {raft.current_term}")
    raft.propose(b"set z 4")

    raft.restart(leader)
    print(f"{leader} restarts from its data directory and catches up")
    deadline = time.monotonic() + 5
    while raft.log_of(leader) != raft.log:
        assert time.monotonic() < deadline, f"{leader} did not catch up"
        time.sleep(0.01)
    assert raft.log[: len(committed)] == committed, "a committed command was lost"
    print(f"log on {leader}: {raft.log_of(leader)}")
