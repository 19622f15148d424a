"""The textbook leader election, real: three nodes elect a leader; the
leader fails and the survivors elect another; it comes back and follows.

    python examples/python/leader_election.py [raft|zab|paxos]
"""

import sys

import consenso

strategy = sys.argv[1] if len(sys.argv) > 1 else "raft"
nodes = ["node1", "node2", "node3"]

with consenso.LeaderElection(nodes, strategy=strategy) as election:
    leader = election.run(timeout=5.0)
    print(f"{strategy}: {leader} is elected leader (term {election.term})")

    election.stop(leader)
    print(f"{leader} fails")
    new_leader = election.run(timeout=5.0)
    print(f"{new_leader} is elected leader (term {election.term})")
    assert new_leader != leader

    election.restart(leader)
    assert election.run(timeout=5.0) == new_leader
    print(f"{leader} is back and follows {new_leader}")
