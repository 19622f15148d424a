"""The textbook mirrors: LeaderElection(nodes).run() and Raft(nodes), real
clusters in this process, with stops, restarts and partitions."""

import time

import pytest

import consenso

NODES = ["node1", "node2", "node3"]
FAST = dict(election_timeout=(0.06, 0.12), heartbeat_interval=0.015)


@pytest.mark.parametrize("strategy", ["raft", "zab", "paxos"])
def test_leader_election_elects_and_re_elects(strategy):
    with consenso.LeaderElection(NODES, strategy=strategy, **FAST) as election:
        assert election.strategy == strategy and election.nodes == NODES
        leader = election.run(timeout=10)
        assert leader in NODES and election.leader == leader
        term = election.term
        election.stop(leader)
        new = election.run(timeout=10)
        assert new != leader and new in NODES
        assert election.term >= term
        election.restart(leader)
        assert election.run(timeout=10) in NODES


def test_leader_election_refuses_unknown_strategies():
    with pytest.raises(ValueError, match="unknown strategy 'bully'"):
        consenso.LeaderElection(NODES, strategy="bully")
    with pytest.raises(TypeError, match="strategy must be a str"):
        consenso.LeaderElection(NODES, strategy=1)
    with pytest.raises(TypeError, match="not a single str"):
        consenso.LeaderElection("node1")
    with pytest.raises(ValueError, match="named twice"):
        consenso.LeaderElection(["a", "a"])
    with pytest.raises(ValueError, match="at least one"):
        consenso.Raft([])


def test_raft_replicates_and_keeps_committed_entries_through_failures():
    with consenso.Raft(NODES, **FAST) as raft:
        leader = raft.run(timeout=10)
        assert raft.leader == leader
        indexes = []
        for i in range(5):
            indexes.append(raft.propose(f"set x {i}".encode()))
            # Nothing else is proposed: the index is the leader's last.
            assert raft._node(leader).status()["last_index"] == indexes[-1]
        assert indexes == list(range(indexes[0], indexes[0] + 5))
        assert raft.propose("set y 1") > indexes[-1], "str is sent as UTF-8"
        assert raft.log[-6:] == [f"set x {i}".encode() for i in range(5)] + [b"set y 1"]
        assert raft.commit_index >= indexes[-1]
        assert raft.current_term >= 1
        votes = raft.voted_for
        assert sum(v == leader for v in votes.values()) >= 2, votes

        # The leader is cut off: the majority elects another and goes on.
        others = [n for n in NODES if n != leader]
        raft.partition([leader], others)
        with pytest.raises(consenso.ProposalTimeout):
            raft._node(leader).propose(b"lost", timeout=0.3)
        raft.heal()
        raft.run(timeout=10)
        raft.propose(b"after heal")
        assert b"lost" not in raft.log

        # A node named in no group is cut off alone.
        leader = raft.run(timeout=10)
        rest = [n for n in NODES if n != leader]
        raft.partition(rest)
        with pytest.raises(consenso.ProposalTimeout):
            raft._node(leader).propose(b"alone", timeout=0.3)
        assert raft.run(timeout=10) in rest
        raft.heal()

        # A stopped node comes back from its data directory with the log.
        victim = others[0]
        node = raft._node(victim)
        raft.stop(victim)
        assert node.closed
        raft.propose(b"while down")
        raft.restart(victim)
        with pytest.raises(consenso.ConsensoError, match="running"):
            raft.restart(victim)
        committed = raft.log
        deadline = time.monotonic() + 10
        while raft.log_of(victim)[: len(committed)] != committed:
            assert time.monotonic() < deadline, "the restarted node did not catch up"
            time.sleep(0.01)


def test_an_unclosed_cluster_is_collected_and_stops():
    import gc
    import os

    before = len(os.listdir("/proc/self/task"))
    raft = consenso.Raft(NODES, **FAST)
    raft.run(timeout=10)
    directory = raft._dir
    del raft
    gc.collect()
    deadline = time.monotonic() + 10
    while len(os.listdir("/proc/self/task")) > before or os.path.exists(directory):
        assert time.monotonic() < deadline, "an unclosed cluster kept running"
        time.sleep(0.01)


def test_nodes_left_out_of_a_partition_are_each_alone():
    names = ["a", "b", "c", "d", "e"]
    with consenso.Raft(names, **FAST) as raft:
        raft.run(timeout=10)
        # c, d and e would be a majority together; each alone is not.
        raft.partition(["a", "b"])
        for n in names:
            with pytest.raises((consenso.ProposalTimeout, consenso.NotLeaderError)):
                raft._node(n).propose(b"no quorum", timeout=0.5)
        raft.heal()
        raft.run(timeout=10)


def test_a_leader_stopped_mid_proposal_is_a_timeout_never_a_duplicate():
    import threading

    with consenso.Raft(NODES, **FAST) as raft:
        leader = raft.run(timeout=10)
        outcome = []

        def propose():
            try:
                outcome.append(raft.propose(b"once", timeout=5))
            except consenso.ProposalTimeout as e:
                outcome.append(e)

        raft.partition([leader], [n for n in NODES if n != leader])
        t = threading.Thread(target=propose)
        t.start()
        time.sleep(0.1)
        raft.stop(leader)
        raft.heal()
        t.join()
        assert len(outcome) == 1
        if isinstance(outcome[0], consenso.ProposalTimeout):
            assert "stopped" in str(outcome[0])
        new = raft.run(timeout=10)
        assert raft.log_of(new).count(b"once") <= 1


def test_raft_bad_calls():
    with consenso.Raft(NODES, **FAST) as raft:
        with pytest.raises(ValueError, match="not a node"):
            raft.stop("node9")
        with pytest.raises(ValueError, match="two groups"):
            raft.partition(["node1"], ["node1", "node2"])
        with pytest.raises(TypeError, match="not a str"):
            raft.partition("node1")
        raft.stop("node1")
        with pytest.raises(consenso.ConsensoError, match="stopped"):
            raft.stop("node1")
    assert not __import__("os").path.exists(raft._dir), "close removes the data"
    for call in (lambda: raft.propose(b"x"), lambda: raft.restart("node1"), raft.run):
        with pytest.raises(consenso.ClosedError):
            call()
    raft.close()  # idempotent


def test_a_leader_needs_a_majority_and_run_needs_a_quorum():
    with consenso.Raft(NODES, **FAST) as raft:
        first = raft.run(timeout=5.0)
        survivor = next(n for n in NODES if n != first)
        for name in NODES:
            if name != survivor:
                raft.stop(name)
        # One node of three: whatever it believes, it is no leader, and run
        # cannot confirm one.
        assert raft.leader is None
        with pytest.raises(consenso.ProposalTimeout):
            raft.run(timeout=0.3)
        with pytest.raises(consenso.ProposalTimeout):
            raft.propose(b"no quorum", timeout=0.3)
        raft.restart(first)
        assert raft.run(timeout=5.0) in (first, survivor)
        raft.propose(b"quorum again", timeout=5.0)
        assert b"no quorum" not in raft.log
