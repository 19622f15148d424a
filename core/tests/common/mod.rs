#![allow(dead_code)]
//! The classic MIT 6.824 / 6.5840 Raft tests (lab 3A–3C), ported to the
//! deterministic simulator and written once for every protocol: each
//! scenario is generic over the protocol and takes its config.
//!
//! Time is virtual: one unit is about a millisecond (a tick is 10 units, the
//! election timeout 150–300). Every event of every scenario is also checked
//! against the five safety properties by the simulator itself.
//!
//! Differences from the Go originals, all because of the no-op a leader
//! appends at the start of its term (or ballot): commands do not land at
//! indexes 1, 2, 3, so tests compare indexes relative to the ones `one()`
//! returns.

use consenso::runtime::SnapshotPolicy;
use consenso::sim::{NetFaults, SimCluster, SimProtocol};
use consenso::types::{Index, NodeId, Role};

/// 6.5840's `RaftElectionTimeout`: 1 s, well above the 150–300 unit timeout.
pub const ELECTION_TIMEOUT: u64 = 1000;

/// 6.5840's `SnapShotInterval`: nodes snapshot every this many entries.
pub const SNAPSHOT_INTERVAL: u64 = 10;

/// The most entries a node may hold after its snapshot (6.5840's
/// `MAXLOGSIZE` of 2,000 bytes holds about this many of its entries).
pub const MAX_LOG_ENTRIES: usize = 50;

pub struct Harness<P: SimProtocol> {
    pub sim: SimCluster<P>,
    pub connected: Vec<bool>,
    next_value: u64,
}

/// Position (0-based) of node `id`, as the Go tests index servers.
pub fn pos(id: NodeId) -> usize {
    id as usize - 1
}

pub fn cmd(v: u64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

impl<P: SimProtocol> Harness<P> {
    pub fn new(n: usize, seed: u64, config: P::Config) -> Self {
        Harness {
            sim: SimCluster::new(n, config, seed).expect("valid config"),
            connected: vec![true; n],
            next_value: 1_000_000,
        }
    }

    /// Nodes snapshot every [`SNAPSHOT_INTERVAL`] entries (6.5840's
    /// `applierSnap`).
    pub fn with_snapshots(mut self) -> Self {
        self.sim.set_snapshot_policy(SnapshotPolicy {
            entries: SNAPSHOT_INTERVAL,
            bytes: 0,
        });
        self
    }

    /// 6.5840's `LogSize` check: no running node holds more than
    /// [`MAX_LOG_ENTRIES`] entries after its snapshot.
    pub fn check_log_size(&self) {
        for id in 1..=self.n() as NodeId {
            if self.sim.is_up(id) {
                let held = self.sim.persisted_len(id) - self.sim.snapshot_index(id) as usize;
                assert!(
                    held <= MAX_LOG_ENTRIES,
                    "seed {}: node {id} holds {held} entries after its snapshot",
                    self.sim.seed()
                );
            }
        }
    }

    pub fn n(&self) -> usize {
        self.connected.len()
    }

    /// Node id of position `i` (0-based, wrapping), as the Go tests index servers.
    pub fn id(&self, i: usize) -> NodeId {
        (i % self.n()) as NodeId + 1
    }

    pub fn sleep(&mut self, units: u64) {
        self.sim
            .run_for(units)
            .unwrap_or_else(|v| panic!("seed {}: {}: {}", self.sim.seed(), v.property, v.detail));
    }

    pub fn disconnect(&mut self, id: NodeId) {
        self.connected[pos(id)] = false;
        self.sim.disconnect(id);
    }

    pub fn connect(&mut self, id: NodeId) {
        self.connected[pos(id)] = true;
        for j in 1..=self.n() as NodeId {
            if j != id && self.connected[pos(j)] {
                self.sim.net.set_link(id, j, true);
                self.sim.net.set_link(j, id, true);
            }
        }
    }

    pub fn crash(&mut self, id: NodeId) {
        self.disconnect(id);
        self.sim.crash(id);
    }

    pub fn restart(&mut self, id: NodeId) {
        self.sim
            .restart(id)
            .unwrap_or_else(|v| panic!("{}: {}", v.property, v.detail));
        self.connect(id);
    }

    pub fn is_connected(&self, id: NodeId) -> bool {
        self.connected[pos(id)] && self.sim.is_up(id)
    }

    pub fn unique(&mut self) -> u64 {
        self.next_value += 1;
        self.next_value
    }

    /// Like `rf.Start`: proposes on `id` if it is up and thinks it leads.
    pub fn start(&mut self, id: NodeId, value: u64) -> Option<Index> {
        match self.sim.propose(id, &cmd(value)) {
            Ok(Ok((_, index))) => Some(index),
            Ok(Err(_)) => None,
            Err(v) => panic!("{}: {}", v.property, v.detail),
        }
    }

    pub fn check_one_leader(&mut self) -> NodeId {
        for _ in 0..10 {
            let ms = 450 + self.sim.rng().below(100);
            self.sleep(ms);
            let mut by_term: std::collections::BTreeMap<u64, Vec<NodeId>> = Default::default();
            for id in 1..=self.n() as NodeId {
                if self.is_connected(id) {
                    if let Some((Role::Leader, term)) = self.sim.state(id) {
                        by_term.entry(term).or_default().push(id);
                    }
                }
            }
            for (term, leaders) in &by_term {
                assert!(
                    leaders.len() <= 1,
                    "term {term} has {} leaders",
                    leaders.len()
                );
            }
            if let Some((_, leaders)) = by_term.iter().next_back() {
                return leaders[0];
            }
        }
        panic!("expected one leader, got none");
    }

    pub fn check_terms(&self) -> u64 {
        let mut term = None;
        for id in 1..=self.n() as NodeId {
            if self.is_connected(id) {
                let (_, t) = self.sim.state(id).expect("up");
                match term {
                    None => term = Some(t),
                    Some(x) => assert_eq!(x, t, "servers disagree on term"),
                }
            }
        }
        term.expect("no connected server")
    }

    pub fn check_no_leader(&self) {
        for id in 1..=self.n() as NodeId {
            if self.is_connected(id) {
                assert_ne!(
                    self.sim.state(id).map(|s| s.0),
                    Some(Role::Leader),
                    "node {id} leads without a quorum"
                );
            }
        }
    }

    pub fn n_committed(&self, index: Index) -> (usize, Option<u64>) {
        let (n, c) = self
            .sim
            .n_committed(index)
            .unwrap_or_else(|e| panic!("{e}"));
        let value = c.and_then(|b| b.as_ref().try_into().ok().map(u64::from_le_bytes));
        (n, value)
    }

    /// 6.5840's `one`: gets `value` committed on at least `expected` servers,
    /// trying each server in turn; with `retry`, re-submits after a failure.
    pub fn one(&mut self, value: u64, expected: usize, retry: bool) -> Index {
        let deadline = self.sim.now + 10_000;
        let mut starts = 0usize;
        while self.sim.now < deadline {
            let mut index = None;
            for _ in 0..self.n() {
                starts = (starts + 1) % self.n();
                let id = self.id(starts);
                if self.is_connected(id) {
                    if let Some(i) = self.start(id, value) {
                        index = Some(i);
                        break;
                    }
                }
            }
            if let Some(index) = index {
                let until = self.sim.now + 2000;
                while self.sim.now < until {
                    let (n, v) = self.n_committed(index);
                    if n > 0 && n >= expected && v == Some(value) {
                        return index;
                    }
                    self.sleep(20);
                }
                assert!(retry, "one({value}) failed to reach agreement");
            } else {
                self.sleep(50);
            }
        }
        panic!("one({value}) failed to reach agreement in time");
    }

    /// Waits for `index` to be committed by `n` servers; `None` if the term
    /// moved past `start_term` first.
    pub fn wait(&mut self, index: Index, n: usize, start_term: Option<u64>) -> Option<u64> {
        let mut to = 10;
        for _ in 0..30 {
            let (nd, _) = self.n_committed(index);
            if nd >= n {
                break;
            }
            self.sleep(to);
            if to < 1000 {
                to *= 2;
            }
            if let Some(t) = start_term {
                if (1..=self.n() as NodeId).any(|id| self.sim.state(id).is_some_and(|(_, x)| x > t))
                {
                    return None;
                }
            }
        }
        let (nd, v) = self.n_committed(index);
        assert!(nd >= n, "only {nd} decided for index {index}; wanted {n}");
        v
    }
}

/// The scenarios, each generic over the protocol.
pub mod scenarios {
    use super::*;

    pub fn seeds() -> std::ops::Range<u64> {
        0..3
    }

    pub fn initial_election<P: SimProtocol>(config: P::Config) {
        for seed in seeds() {
            let mut h = Harness::<P>::new(3, seed, config.clone());
            h.check_one_leader();
            h.sleep(50);
            let term1 = h.check_terms();
            assert!(term1 >= 1, "term is {term1}, but should be at least 1");
            h.sleep(2 * ELECTION_TIMEOUT);
            let term2 = h.check_terms();
            assert_eq!(term1, term2, "term changed with no failures");
            h.check_one_leader();
        }
    }

    pub fn re_election<P: SimProtocol>(config: P::Config) {
        for seed in seeds() {
            let mut h = Harness::<P>::new(3, seed, config.clone());
            let leader1 = h.check_one_leader();
            h.disconnect(leader1);
            h.check_one_leader();
            h.connect(leader1);
            let leader2 = h.check_one_leader();
            h.disconnect(leader2);
            let other = h.id(pos(leader2) + 1);
            h.disconnect(other);
            h.sleep(2 * ELECTION_TIMEOUT);
            h.check_no_leader();
            h.connect(other);
            h.check_one_leader();
            h.connect(leader2);
            h.check_one_leader();
        }
    }

    pub fn many_elections<P: SimProtocol>(config: P::Config) {
        for seed in seeds() {
            let mut h = Harness::<P>::new(7, seed, config.clone());
            h.check_one_leader();
            for _ in 0..10 {
                let picks: Vec<NodeId> =
                    (0..3).map(|_| h.sim.rng().below(7) as NodeId + 1).collect();
                for &p in &picks {
                    h.disconnect(p);
                }
                h.check_one_leader();
                for &p in &picks {
                    h.connect(p);
                }
            }
            h.check_one_leader();
        }
    }

    pub fn basic_agree<P: SimProtocol>(config: P::Config) {
        for seed in seeds() {
            let mut h = Harness::<P>::new(3, seed, config.clone());
            let mut last = None;
            for i in 1..=3u64 {
                let index = h.one(i * 100, 3, false);
                if let Some(prev) = last {
                    assert_eq!(index, prev + 1, "got index {index} after {prev}");
                }
                last = Some(index);
            }
        }
    }

    pub fn rpc_bytes<P: SimProtocol>(config: P::Config) {
        let mut h = Harness::<P>::new(3, 1, config.clone());
        h.sim.measure_bytes = true;
        h.one(99, 3, false);
        let bytes0 = h.sim.bytes_sent;
        let mut sent = 0u64;
        for _ in 0..10 {
            let mut c: Vec<u8> = (0..5000).map(|_| h.sim.rng().below(256) as u8).collect();
            let v = h.unique();
            c[..8].copy_from_slice(&v.to_le_bytes());
            // Propose the 5000-byte command through the leader.
            let leader = h.check_one_leader();
            let index = match h.sim.propose(leader, &c) {
                Ok(Ok((_, i))) => i,
                other => panic!("propose failed: {other:?}"),
            };
            h.wait(index, 3, None);
            sent += c.len() as u64;
        }
        let got = h.sim.bytes_sent - bytes0;
        let expected = sent * 2 + 50_000;
        assert!(
            got <= expected,
            "too many bytes sent: {got}, expected at most {expected}"
        );
    }

    pub fn follower_failure<P: SimProtocol>(config: P::Config) {
        for seed in seeds() {
            let mut h = Harness::<P>::new(3, seed, config.clone());
            h.one(101, 3, false);
            let leader1 = h.check_one_leader();
            h.disconnect(h.id(pos(leader1) + 1));
            h.one(102, 2, false);
            h.sleep(ELECTION_TIMEOUT);
            h.one(103, 2, false);
            let leader2 = h.check_one_leader();
            h.disconnect(h.id(pos(leader2) + 1));
            h.disconnect(h.id(pos(leader2) + 2));
            let index = h.start(leader2, 104).expect("leader rejected start");
            h.sleep(2 * ELECTION_TIMEOUT);
            assert_eq!(h.n_committed(index).0, 0, "committed without a majority");
        }
    }

    pub fn leader_failure<P: SimProtocol>(config: P::Config) {
        for seed in seeds() {
            let mut h = Harness::<P>::new(3, seed, config.clone());
            h.one(101, 3, false);
            let leader1 = h.check_one_leader();
            h.disconnect(leader1);
            h.one(102, 2, false);
            h.sleep(ELECTION_TIMEOUT);
            h.one(103, 2, false);
            let leader2 = h.check_one_leader();
            h.disconnect(leader2);
            let mut indexes = Vec::new();
            for id in 1..=3 {
                if let Some(i) = h.start(id, 104) {
                    indexes.push(i);
                }
            }
            h.sleep(2 * ELECTION_TIMEOUT);
            for i in indexes {
                assert_eq!(h.n_committed(i).0, 0, "{i} committed without a majority");
            }
        }
    }

    pub fn fail_agree<P: SimProtocol>(config: P::Config) {
        for seed in seeds() {
            let mut h = Harness::<P>::new(3, seed, config.clone());
            h.one(101, 3, false);
            let leader = h.check_one_leader();
            h.disconnect(h.id(pos(leader) + 1));
            for v in 102..=105 {
                h.one(v, 2, false);
            }
            h.sleep(ELECTION_TIMEOUT);
            h.one(106, 2, false);
            h.connect(h.id(pos(leader) + 1));
            h.one(107, 3, true);
            h.sleep(ELECTION_TIMEOUT);
            h.one(108, 3, true);
        }
    }

    pub fn fail_no_agree<P: SimProtocol>(config: P::Config) {
        for seed in seeds() {
            let mut h = Harness::<P>::new(5, seed, config.clone());
            let first = h.one(10, 5, false);
            let leader = h.check_one_leader();
            for k in 1..=3 {
                h.disconnect(h.id(pos(leader) + k));
            }
            let index = h.start(leader, 20).expect("leader rejected start");
            assert_eq!(
                index,
                first + 1,
                "expected index {}, got {index}",
                first + 1
            );
            h.sleep(2 * ELECTION_TIMEOUT);
            assert_eq!(h.n_committed(index).0, 0, "committed without a majority");
            for k in 1..=3 {
                h.connect(h.id(pos(leader) + k));
            }
            // The disconnected majority may have elected a leader of its own.
            let leader2 = h.check_one_leader();
            let index2 = h.start(leader2, 30).expect("leader2 rejected start");
            assert!(index2 > first, "unexpected index {index2}");
            h.one(1000, 5, true);
        }
    }

    /// One attempt of ConcurrentStarts; false when the term changed under it.
    pub fn concurrent_starts_attempt<P: SimProtocol>(h: &mut Harness<P>) -> bool {
        let leader = h.check_one_leader();
        let term = h.sim.state(leader).map(|s| s.1);
        let mut started = Vec::new();
        for v in 0..5u64 {
            match h.start(leader, 100 + v) {
                Some(i) => started.push(i),
                None => return false,
            }
        }
        let mut got = Vec::new();
        for &i in &started {
            match h.wait(i, 3, term) {
                Some(v) => got.push(v),
                None => return false,
            }
        }
        got.sort();
        assert_eq!(got, vec![100, 101, 102, 103, 104]);
        true
    }

    pub fn concurrent_starts<P: SimProtocol>(config: P::Config) {
        for seed in seeds() {
            let mut h = Harness::<P>::new(3, seed, config.clone());
            assert!(
                (0..5).any(|_| concurrent_starts_attempt(&mut h)),
                "term changed too often"
            );
        }
    }

    pub fn rejoin<P: SimProtocol>(config: P::Config) {
        for seed in seeds() {
            let mut h = Harness::<P>::new(3, seed, config.clone());
            h.one(101, 3, true);
            let leader1 = h.check_one_leader();
            h.disconnect(leader1);
            // The old leader keeps accepting entries that can never commit.
            for v in [102, 103, 104] {
                h.start(leader1, v);
            }
            h.one(103, 2, true);
            let leader2 = h.check_one_leader();
            h.disconnect(leader2);
            h.connect(leader1);
            h.one(104, 2, true);
            h.connect(leader2);
            h.one(105, 3, true);
        }
    }

    pub fn backup<P: SimProtocol>(config: P::Config) {
        for seed in seeds() {
            let mut h = Harness::<P>::new(5, seed, config.clone());
            let v = h.unique();
            h.one(v, 5, true);
            let leader1 = h.check_one_leader();
            for k in 2..=4 {
                h.disconnect(h.id(pos(leader1) + k));
            }
            for _ in 0..50 {
                let v = h.unique();
                h.start(leader1, v);
            }
            h.sleep(ELECTION_TIMEOUT / 2);
            h.disconnect(leader1);
            h.disconnect(h.id(pos(leader1) + 1));
            for k in 2..=4 {
                h.connect(h.id(pos(leader1) + k));
            }
            for _ in 0..50 {
                let v = h.unique();
                h.one(v, 3, true);
            }
            let leader2 = h.check_one_leader();
            let mut other = h.id(pos(leader1) + 2);
            if other == leader2 {
                other = h.id(pos(leader2) + 1);
            }
            h.disconnect(other);
            for _ in 0..50 {
                let v = h.unique();
                h.start(leader2, v);
            }
            h.sleep(ELECTION_TIMEOUT / 2);
            for id in 1..=5 {
                h.disconnect(id);
            }
            h.connect(leader1);
            h.connect(h.id(pos(leader1) + 1));
            h.connect(other);
            for _ in 0..50 {
                let v = h.unique();
                h.one(v, 3, true);
            }
            for id in 1..=5 {
                h.connect(id);
            }
            let v = h.unique();
            h.one(v, 5, true);
        }
    }

    pub fn count<P: SimProtocol>(config: P::Config) {
        let mut h = Harness::<P>::new(3, 2, config.clone());
        h.check_one_leader();
        let total1 = h.sim.net.counts.sent;
        // 6.5840 allows 30 RPCs; a request and its reply are two messages here.
        assert!(
            (1..=60).contains(&total1),
            "too many or too few messages ({total1}) to elect the initial leader"
        );
        // Ten agreements, proposed at once: batching keeps the count low.
        let leader = h.check_one_leader();
        let before = h.sim.net.counts.sent;
        let mut indexes = Vec::new();
        for v in 0..10 {
            indexes.push(h.start(leader, 200 + v).expect("start"));
        }
        for i in &indexes {
            h.wait(*i, 3, None);
        }
        let used = h.sim.net.counts.sent - before;
        // 6.5840's bound: (iters + 1 + 3) * 3 RPCs, two messages each.
        let bound = (10 + 1 + 3) * 3 * 2;
        assert!(used <= bound, "too many messages ({used}) for 10 entries");
        // Idle: heartbeats and their replies only.
        h.sleep(1000);
        let idle0 = h.sim.net.counts.sent;
        h.sleep(1000);
        let idle = h.sim.net.counts.sent - idle0;
        // Two followers, a heartbeat and a reply each, every 50 units.
        assert!(
            idle <= 2 * 2 * (1000 / 50) + 4,
            "{idle} messages in 1000 idle units"
        );
    }

    pub fn persist1<P: SimProtocol>(config: P::Config) {
        for seed in seeds() {
            let mut h = Harness::<P>::new(3, seed, config.clone());
            h.one(11, 3, true);
            for id in 1..=3 {
                h.crash(id);
            }
            for id in 1..=3 {
                h.restart(id);
            }
            h.one(12, 3, true);
            let leader1 = h.check_one_leader();
            h.crash(leader1);
            h.restart(leader1);
            h.one(13, 3, true);
            let leader2 = h.check_one_leader();
            h.crash(leader2);
            let index = h.one(14, 2, true);
            h.restart(leader2);
            h.wait(index, 3, None);
            let leader3 = h.check_one_leader();
            let i3 = h.id(pos(leader3) + 1);
            h.crash(i3);
            h.one(15, 2, true);
            h.restart(i3);
            h.one(16, 3, true);
        }
    }

    pub fn persist2<P: SimProtocol>(config: P::Config) {
        for seed in seeds() {
            let mut h = Harness::<P>::new(5, seed, config.clone());
            let mut index = 1;
            for _ in 0..5 {
                h.one(10 + index, 5, true);
                index += 1;
                let leader1 = h.check_one_leader();
                let p = pos(leader1);
                h.crash(h.id(p + 1));
                h.crash(h.id(p + 2));
                h.one(10 + index, 3, true);
                index += 1;
                h.crash(h.id(p));
                h.crash(h.id(p + 3));
                h.crash(h.id(p + 4));
                h.restart(h.id(p + 1));
                h.restart(h.id(p + 2));
                h.sleep(ELECTION_TIMEOUT);
                h.restart(h.id(p + 3));
                h.one(10 + index, 3, true);
                index += 1;
                h.restart(h.id(p + 4));
                h.restart(h.id(p));
            }
            h.one(1000, 5, true);
        }
    }

    /// A follower that restarts while nothing new is proposed relearns
    /// from the leader alone what was committed (its commit index is not
    /// synced, so it recovers an older one) and applies it again. (The
    /// harder case, a Multi-Paxos acceptor holding chosen slots of an older
    /// ballot above its recovered commit, needs interleavings the seeded
    /// runs find: each ends with such an idle restart.)
    pub fn restart_when_idle<P: SimProtocol>(config: P::Config) {
        for seed in seeds() {
            let mut h = Harness::<P>::new(3, seed, config.clone());
            let mut index = 0;
            for v in 0..20 {
                index = h.one(3000 + v, 3, true);
            }
            let leader = h.check_one_leader();
            let follower = h.id(pos(leader) + 1);
            h.crash(follower);
            h.restart(follower);
            h.wait(index, 3, None);
        }
    }

    pub fn persist3<P: SimProtocol>(config: P::Config) {
        for seed in seeds() {
            let mut h = Harness::<P>::new(3, seed, config.clone());
            h.one(101, 3, false);
            let leader = h.check_one_leader();
            let p = pos(leader);
            h.disconnect(h.id(p + 2));
            h.one(102, 2, false);
            h.crash(h.id(p));
            h.crash(h.id(p + 1));
            h.connect(h.id(p + 2));
            h.restart(h.id(p));
            h.one(103, 2, true);
            h.restart(h.id(p + 1));
            h.one(104, 3, true);
        }
    }

    /// Figure 8 of the Raft paper: leaders crash often, with entries of old
    /// terms left on some servers; an entry of an old term must never be counted
    /// as committed by replicas alone.
    pub fn figure8<P: SimProtocol>(seed: u64, unreliable: bool, config: P::Config) {
        let n = 5;
        let mut h = Harness::<P>::new(n, seed, config);
        if unreliable {
            h.sim.net.faults = NetFaults::unreliable();
        }
        let v = h.unique();
        h.one(v, 1, true);
        let mut nup = n;
        for iter in 0..1000 {
            if unreliable && iter == 200 {
                // Long reordering, as 6.5840's setlongreordering.
                h.sim.net.faults.max_delay = 200;
            }
            let mut leader = None;
            for id in 1..=n as NodeId {
                if h.is_connected(id) || (!unreliable && h.sim.is_up(id)) {
                    let v = h.unique();
                    if h.start(id, v).is_some() {
                        leader = Some(id);
                    }
                }
            }
            let ms = if h.sim.rng().below(1000) < 100 {
                h.sim.rng().below(ELECTION_TIMEOUT / 2)
            } else {
                h.sim.rng().below(13)
            };
            h.sleep(ms);
            if let Some(l) = leader {
                if unreliable {
                    if h.sim.rng().below(1000) < 500 {
                        h.disconnect(l);
                        nup -= 1;
                    }
                } else {
                    h.crash(l);
                    nup -= 1;
                }
            }
            if nup < 3 {
                let s = h.sim.rng().below(n as u64) as NodeId + 1;
                if unreliable {
                    if !h.connected[pos(s)] {
                        h.connect(s);
                        nup += 1;
                    }
                } else if !h.sim.is_up(s) {
                    h.restart(s);
                    nup += 1;
                }
            }
        }
        h.sim.net.faults = NetFaults::reliable();
        for id in 1..=n as NodeId {
            if unreliable {
                h.connect(id);
            } else if !h.sim.is_up(id) {
                h.restart(id);
            }
        }
        let v = h.unique();
        h.one(v, n, true);
    }

    pub fn unreliable_agree<P: SimProtocol>(config: P::Config) {
        for seed in seeds() {
            let mut h = Harness::<P>::new(5, seed, config.clone());
            h.sim.net.faults = NetFaults::unreliable();
            for iter in 1..50u64 {
                for j in 0..4 {
                    // 6.5840 runs these concurrently; one at a time is stricter.
                    let leader =
                        (1..=5).find(|&id| h.sim.state(id).is_some_and(|s| s.0 == Role::Leader));
                    if let Some(l) = leader {
                        h.start(l, 100 * iter + j);
                    }
                }
                h.one(iter, 1, true);
            }
            h.sim.net.faults = NetFaults::reliable();
            h.one(100, 5, true);
        }
    }

    /// 6.5840's internalChurn: clients keep proposing on random servers while
    /// servers are disconnected, crashed and restarted; every value a client saw
    /// committed must be in the final log.
    pub fn churn<P: SimProtocol>(seed: u64, unreliable: bool, config: P::Config) {
        let n = 5;
        let mut h = Harness::<P>::new(n, seed, config);
        if unreliable {
            h.sim.net.faults = NetFaults::unreliable();
        }
        let mut proposed: Vec<(Index, u64)> = Vec::new();
        let mut seen_committed: Vec<u64> = Vec::new();
        for _ in 0..20 {
            // Clients: propose a few values on random servers, then watch.
            let end = h.sim.now + ELECTION_TIMEOUT * 7 / 10;
            while h.sim.now < end {
                for _ in 0..3 {
                    let id = h.sim.rng().below(n as u64) as NodeId + 1;
                    if h.is_connected(id) {
                        let v = h.unique();
                        if let Some(i) = h.start(id, v) {
                            proposed.push((i, v));
                        }
                    }
                }
                h.sleep(10);
                proposed.retain(|&(i, v)| {
                    let (c, got) = h.n_committed(i);
                    if c > 0 && got == Some(v) {
                        seen_committed.push(v);
                        false
                    } else {
                        true
                    }
                });
            }
            let r = h.sim.rng().below(1000);
            let who = h.sim.rng().below(n as u64) as NodeId + 1;
            if r < 200 {
                h.disconnect(who);
            }
            let r = h.sim.rng().below(1000);
            let who = h.sim.rng().below(n as u64) as NodeId + 1;
            if r < 500 {
                if !h.sim.is_up(who) {
                    h.restart(who);
                }
                h.connect(who);
            }
            let r = h.sim.rng().below(1000);
            let who = h.sim.rng().below(n as u64) as NodeId + 1;
            if r < 200 && h.sim.is_up(who) {
                h.crash(who);
            }
        }
        h.sim.net.faults = NetFaults::reliable();
        for id in 1..=n as NodeId {
            if !h.sim.is_up(id) {
                h.restart(id);
            }
            h.connect(id);
        }
        let v = h.unique();
        let last = h.one(v, n, true);
        let final_log: Vec<u64> = h
            .sim
            .applied(1)
            .iter()
            .filter(|(i, _)| *i <= last)
            .filter_map(|(_, b)| b.as_ref().try_into().ok().map(u64::from_le_bytes))
            .collect();
        assert!(!seen_committed.is_empty(), "churn committed nothing");
        for v in &seen_committed {
            assert!(
                final_log.contains(v),
                "committed value {v} is missing from the final log"
            );
        }
    }

    pub fn reliable_churn<P: SimProtocol>(config: P::Config) {
        for seed in seeds() {
            churn::<P>(seed, false, config.clone());
        }
    }

    pub fn unreliable_churn<P: SimProtocol>(config: P::Config) {
        for seed in seeds() {
            churn::<P>(seed, true, config.clone());
        }
    }

    /// A leader left with one follower out of five (no quorum) stops
    /// leading, and the majority side elects a leader of a later epoch.
    pub fn leader_cut_off_from_the_quorum_steps_down<P: SimProtocol>(config: P::Config) {
        for seed in seeds() {
            let mut h = Harness::<P>::new(5, seed, config.clone());
            let leader = h.check_one_leader();
            let epoch = h.check_terms();
            let buddy = h.id(pos(leader) + 1);
            let rest: Vec<NodeId> = (1..=5).filter(|&i| i != leader && i != buddy).collect();
            h.sim.partition(&[vec![leader, buddy], rest.clone()]);
            h.sleep(2 * ELECTION_TIMEOUT);
            assert_ne!(
                h.sim.state(leader).map(|s| s.0),
                Some(Role::Leader),
                "a leader without a quorum did not step down"
            );
            let leaders = h.sim.leaders();
            assert_eq!(
                leaders.len(),
                1,
                "exactly the majority side leads: {leaders:?}"
            );
            assert!(rest.contains(&leaders[0].0) && leaders[0].1 > epoch);
            h.sim.net.heal();
            h.one(7, 5, true);
        }
    }

    /// Figure 8 over ten seeds with `config` (callers pass one entry per
    /// message and one in flight, where acknowledgements split batches).
    pub fn figure8_small_batches<P: SimProtocol>(config: P::Config) {
        for seed in 0..10 {
            figure8::<P>(seed, false, config.clone());
        }
    }

    /// 6.5840's snapcommon (lab 3D): thirty rounds in which a follower (or,
    /// every third round, the leader) is cut off or crashed while the
    /// others take enough commands to snapshot and compact; it comes back
    /// and must catch up (from a snapshot when it fell behind the others'
    /// compaction point). Logs stay small throughout.
    pub fn snapshot_common<P: SimProtocol>(
        config: P::Config,
        disconnect: bool,
        reliable: bool,
        crash: bool,
    ) {
        let servers = 3;
        let mut installed = 0;
        for seed in seeds() {
            let mut h = Harness::<P>::new(servers, seed, config.clone()).with_snapshots();
            if !reliable {
                h.sim.net.faults = NetFaults::unreliable();
            }
            let v = h.unique();
            h.one(v, servers, true);
            let mut leader1 = h.check_one_leader();
            for i in 0..30 {
                let next = h.id(pos(leader1) + 1);
                let (victim, sender) = if i % 3 == 1 {
                    (leader1, next)
                } else {
                    (next, leader1)
                };
                if disconnect {
                    h.disconnect(victim);
                    let v = h.unique();
                    h.one(v, servers - 1, true);
                }
                if crash {
                    h.crash(victim);
                    let v = h.unique();
                    h.one(v, servers - 1, true);
                }
                // Perhaps enough to get a snapshot.
                let nn = SNAPSHOT_INTERVAL / 2 + h.sim.rng().below(SNAPSHOT_INTERVAL);
                for _ in 0..nn {
                    let v = h.unique();
                    h.start(sender, v);
                }
                let v = h.unique();
                if disconnect || crash {
                    h.one(v, servers - 1, true);
                } else {
                    // Every follower caught up: no snapshot needs sending.
                    h.one(v, servers, true);
                }
                h.check_log_size();
                if disconnect {
                    // A follower that may be behind and need a snapshot.
                    h.connect(victim);
                    let v = h.unique();
                    h.one(v, servers, true);
                    leader1 = h.check_one_leader();
                }
                if crash {
                    h.restart(victim);
                    let v = h.unique();
                    h.one(v, servers, true);
                    leader1 = h.check_one_leader();
                }
            }
            installed += h.sim.stats.snapshots_installed;
            assert!(
                h.sim.stats.snapshots_taken > 0,
                "seed {seed}: no snapshot taken"
            );
        }
        if disconnect {
            assert!(installed > 0, "no follower ever needed a snapshot");
        }
    }

    /// 6.5840's TestSnapshotAllCrash3D: every server crashes after enough
    /// commands to snapshot; restarted from its snapshot and the log after
    /// it, the cluster goes on at a higher index.
    pub fn snapshot_all_crash<P: SimProtocol>(config: P::Config) {
        let servers = 3;
        for seed in seeds() {
            let mut h = Harness::<P>::new(servers, seed, config.clone()).with_snapshots();
            let v = h.unique();
            h.one(v, servers, true);
            for _ in 0..5 {
                let nn = SNAPSHOT_INTERVAL / 2 + h.sim.rng().below(SNAPSHOT_INTERVAL);
                for _ in 0..nn {
                    let v = h.unique();
                    h.one(v, servers, true);
                }
                let v = h.unique();
                let index1 = h.one(v, servers, true);
                for id in 1..=servers as NodeId {
                    h.crash(id);
                }
                for id in 1..=servers as NodeId {
                    h.restart(id);
                }
                let v = h.unique();
                let index2 = h.one(v, servers, true);
                assert!(
                    index2 > index1,
                    "seed {seed}: index went from {index1} to {index2}"
                );
            }
            assert!(
                (1..=servers as NodeId).any(|id| h.sim.snapshot_index(id) > 0),
                "seed {seed}: nobody restarted from a snapshot"
            );
        }
    }

    /// 6.5840's TestSnapshotInit3D: a node restarted from a snapshot must
    /// keep it (and the log after it) through what it writes next: crash
    /// everyone, one command, crash everyone again, one more.
    pub fn snapshot_init<P: SimProtocol>(config: P::Config) {
        let servers = 3;
        for seed in seeds() {
            let mut h = Harness::<P>::new(servers, seed, config.clone()).with_snapshots();
            let v = h.unique();
            h.one(v, servers, true);
            for _ in 0..=SNAPSHOT_INTERVAL {
                let v = h.unique();
                h.one(v, servers, true);
            }
            for _ in 0..2 {
                for id in 1..=servers as NodeId {
                    h.crash(id);
                }
                for id in 1..=servers as NodeId {
                    h.restart(id);
                }
                // Something to write after the restart.
                let v = h.unique();
                h.one(v, servers, true);
            }
        }
    }
}
