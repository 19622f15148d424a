//! The TCP network: real nodes of each protocol over loopback, a peer that
//! dies and comes back, and connections that are not peers.

use super::*;
use crate::consensus::ProtocolKind;
use crate::runtime::{AnyNode, AnyNodeConfig, StateMachine, Timeouts};

/// Records every command it applies.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Vec<u8>>>>);

impl StateMachine for Recorder {
    fn apply(&mut self, _index: u64, command: &[u8]) -> Vec<u8> {
        self.0.lock().push(command.to_vec());
        Vec::new()
    }
}

struct Member {
    node: AnyNode,
    network: TcpNetwork,
    applied: Recorder,
}

fn config(protocol: ProtocolKind, id: NodeId) -> AnyNodeConfig {
    AnyNodeConfig {
        protocol,
        id,
        voters: vec![1, 2, 3],
        timeouts: Timeouts {
            election_min: Duration::from_millis(80),
            election_max: Duration::from_millis(160),
            heartbeat: Duration::from_millis(20),
        },
        ..AnyNodeConfig::default()
    }
}

/// Loopback listeners on free ports for nodes 1, 2 and 3.
fn listeners() -> (Vec<TcpListener>, Vec<(NodeId, SocketAddr)>) {
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let addresses = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| (i as NodeId + 1, l.local_addr().unwrap()))
        .collect();
    (listeners, addresses)
}

fn start(protocol: ProtocolKind, id: NodeId, network: TcpNetwork, applied: Recorder) -> Member {
    let node = AnyNode::open(
        &config(protocol, id),
        network.transport(),
        applied.clone(),
        None,
    )
    .unwrap();
    network.attach(node.inbox());
    Member {
        node,
        network,
        applied,
    }
}

fn leader(members: &[Option<Member>]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for (i, m) in members.iter().enumerate() {
            if let Some(m) = m {
                if m.node.status().role == crate::types::Role::Leader {
                    return i;
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader in 10 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_applied(member: &Member, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while member.applied.0.lock().len() < n {
        assert!(Instant::now() < deadline, "node applied too little");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Three nodes over TCP elect, commit 200 commands in one order, lose
/// their leader (node and network shut down: its port closes), elect
/// another and commit more; the old leader comes back on the same port and
/// catches up.
fn cluster_over_tcp(protocol: ProtocolKind) {
    let (listeners, addresses) = listeners();
    let mut members: Vec<Option<Member>> = listeners
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let id = i as NodeId + 1;
            let net = TcpNetwork::with_listener(id, l, &addresses, TcpOptions::default()).unwrap();
            Some(start(protocol, id, net, Recorder::default()))
        })
        .collect();
    let first = leader(&members);
    let node = &members[first].as_ref().unwrap().node;
    for i in 0..200u32 {
        node.propose(i.to_le_bytes().to_vec(), Duration::from_secs(5))
            .unwrap();
    }
    let old = members[first].take().unwrap();
    old.node.shutdown();
    old.network.shutdown();
    let old_log = old.applied.0.lock().clone();
    assert_eq!(old_log.len(), 200);
    let second = leader(&members);
    assert_ne!(first, second);
    let node = &members[second].as_ref().unwrap().node;
    for i in 200..300u32 {
        node.propose(i.to_le_bytes().to_vec(), Duration::from_secs(5))
            .unwrap();
    }
    // Back on its old port, with its old log lost (in memory): it catches
    // up from the others.
    let id = first as NodeId + 1;
    let net = TcpNetwork::bind(id, &addresses, None, TcpOptions::default()).unwrap();
    members[first] = Some(start(protocol, id, net, Recorder::default()));
    let mut logs = Vec::new();
    for m in members.iter().flatten() {
        wait_applied(m, 300);
        logs.push(m.applied.0.lock().clone());
        assert!(m.network.stats().sent > 0 && m.network.stats().received > 0);
    }
    assert!(
        logs.windows(2).all(|w| w[0] == w[1]),
        "one order everywhere"
    );
    assert_eq!(logs[0][..200], old_log[..]);
    for m in members.into_iter().flatten() {
        m.node.shutdown();
        m.network.shutdown();
    }
}

#[test]
fn raft_over_tcp() {
    cluster_over_tcp(ProtocolKind::Raft);
}

#[test]
fn paxos_over_tcp() {
    cluster_over_tcp(ProtocolKind::MultiPaxos);
}

#[test]
fn zab_over_tcp() {
    cluster_over_tcp(ProtocolKind::Zab);
}

/// A network with a recording inbox and no node.
struct Recording(Mutex<Vec<(NodeId, Vec<u8>)>>);

impl Inbox for Recording {
    fn deliver(&self, from: NodeId, bytes: &[u8]) -> Result<(), crate::runtime::ReceiveError> {
        self.0.lock().push((from, bytes.to_vec()));
        Ok(())
    }
}

fn pair() -> (TcpNetwork, TcpNetwork, Arc<Recording>) {
    let (mut listeners, addresses) = listeners();
    listeners.truncate(2);
    let b = listeners.pop().unwrap();
    let a = listeners.pop().unwrap();
    let addresses = &addresses[..2];
    let a = TcpNetwork::with_listener(1, a, addresses, TcpOptions::default()).unwrap();
    let b = TcpNetwork::with_listener(2, b, addresses, TcpOptions::default()).unwrap();
    let inbox = Arc::new(Recording(Mutex::new(Vec::new())));
    b.attach(Arc::clone(&inbox) as Arc<dyn Inbox>);
    (a, b, inbox)
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn envelopes_arrive_in_order_with_the_sender_id() {
    let (a, b, inbox) = pair();
    let t = a.transport();
    // Fewer than the queue holds: none is dropped however slow the writer.
    for i in 0..4000u32 {
        t.send(2, i.to_le_bytes().to_vec());
    }
    t.send(2, Vec::new());
    wait_until("4001 envelopes", || inbox.0.lock().len() == 4001);
    let got = inbox.0.lock();
    assert!(got.iter().all(|(from, _)| *from == 1));
    for (i, (_, bytes)) in got.iter().take(4000).enumerate() {
        assert_eq!(bytes[..], (i as u32).to_le_bytes());
    }
    assert!(got[4000].1.is_empty(), "an empty envelope is a frame too");
    assert_eq!(a.stats().sent, 4001);
    assert_eq!(a.stats().dropped, 0);
    assert_eq!(a.stats().connects, 1);
    assert_eq!(b.stats().received, 4001);
}

#[test]
fn a_connection_that_is_not_a_peer_is_refused_and_others_go_on() {
    let (a, b, inbox) = pair();
    let mut junk = TcpStream::connect(b.local_addr()).unwrap();
    junk.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    // A peer's hello, then a frame above max_frame.
    let mut huge = TcpStream::connect(b.local_addr()).unwrap();
    let mut hello = MAGIC.to_vec();
    hello.push(VERSION);
    hello.extend_from_slice(&7u64.to_le_bytes());
    hello.extend_from_slice(&u32::MAX.to_le_bytes());
    huge.write_all(&hello).unwrap();
    wait_until("two refusals", || b.stats().refused == 2);
    a.transport().send(2, b"still works".to_vec());
    wait_until("the envelope", || inbox.0.lock().len() == 1);
    assert_eq!(inbox.0.lock()[0], (1, b"still works".to_vec()));
}

#[test]
fn an_unreachable_peer_drops_without_blocking_and_is_reached_once_up() {
    let (listeners, addresses) = listeners();
    let mut listeners = listeners.into_iter();
    let a = TcpNetwork::with_listener(
        1,
        listeners.next().unwrap(),
        &addresses,
        TcpOptions::default(),
    )
    .unwrap();
    // Node 2's port is closed for now.
    let b_listener = listeners.next().unwrap();
    let b_addr = b_listener.local_addr().unwrap();
    drop(b_listener);
    let t = a.transport();
    let started = Instant::now();
    for _ in 0..100 {
        t.send(2, b"lost".to_vec());
    }
    t.send(9, b"nobody".to_vec());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "send never blocks"
    );
    wait_until("drops", || a.stats().dropped >= 101);
    let b = TcpNetwork::bind(2, &addresses, Some(b_addr), TcpOptions::default()).unwrap();
    let inbox = Arc::new(Recording(Mutex::new(Vec::new())));
    b.attach(Arc::clone(&inbox) as Arc<dyn Inbox>);
    // Within the backoff (at most a second), sends get through again.
    wait_until("an envelope after the peer came up", || {
        t.send(2, b"hello".to_vec());
        std::thread::sleep(Duration::from_millis(20));
        !inbox.0.lock().is_empty()
    });
}

#[test]
fn shutdown_frees_the_port_joins_every_thread_and_is_idempotent() {
    let (a, b, inbox) = pair();
    a.transport().send(2, b"x".to_vec());
    wait_until("the envelope", || inbox.0.lock().len() == 1);
    let addr = b.local_addr();
    b.shutdown();
    b.shutdown();
    assert!(b.is_closed());
    assert!(b.inner.threads.lock().is_empty());
    assert!(b.inner.streams.lock().is_empty(), "every connection closed");
    // Nothing reaches an inbox after shutdown, and the port is free.
    let again = TcpListener::bind(addr).expect("the port is free after shutdown");
    drop(again);
    a.transport().send(2, b"after".to_vec());
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(inbox.0.lock().len(), 1);
    // Sends after the sender's own shutdown are dropped, not queued.
    a.shutdown();
    let before = a.stats().dropped;
    a.transport().send(2, b"late".to_vec());
    assert_eq!(a.stats().dropped, before + 1);
}

#[test]
fn bad_settings_are_refused() {
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let opts = |f: fn(&mut TcpOptions)| {
        let mut o = TcpOptions::default();
        f(&mut o);
        o
    };
    for bad in [
        opts(|o| o.queue = 0),
        opts(|o| o.max_frame = 0),
        opts(|o| o.connect_timeout = Duration::ZERO),
        opts(|o| o.max_backoff = Duration::from_millis(1)),
    ] {
        assert!(matches!(
            TcpNetwork::bind(1, &[(1, addr)], None, bad),
            Err(TcpError::Options(_))
        ));
    }
    assert!(matches!(
        TcpNetwork::bind(1, &[(2, addr)], None, TcpOptions::default()),
        Err(TcpError::NoOwnAddress(1))
    ));
    assert!(matches!(
        TcpNetwork::bind(1, &[(1, addr), (1, addr)], None, TcpOptions::default()),
        Err(TcpError::DuplicateNode(1))
    ));
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap();
    assert!(matches!(
        TcpNetwork::bind(1, &[(1, busy)], None, TcpOptions::default()),
        Err(TcpError::Bind(a, _)) if a == busy
    ));
    let other: SocketAddr = "127.0.0.1:2".parse().unwrap();
    assert!(matches!(
        TcpNetwork::bind(1, &[(1, addr), (2, addr)], None, TcpOptions::default()),
        Err(TcpError::SharedAddress(a)) if a == addr
    ));
    let zero: SocketAddr = "127.0.0.1:0".parse().unwrap();
    assert!(matches!(
        TcpNetwork::bind(1, &[(1, other), (2, zero)], None, TcpOptions::default()),
        Err(TcpError::PortZero(2))
    ));
    assert!(matches!(resolve("no port"), Err(TcpError::Address(..))));
    assert!(matches!(
        resolve("127.0.0.1:99999"),
        Err(TcpError::Address(..))
    ));
    assert_eq!(resolve("127.0.0.1:7001").unwrap().port(), 7001);
}

#[test]
fn an_envelope_above_max_frame_is_dropped_by_its_sender() {
    let (mut listeners, addresses) = listeners();
    listeners.truncate(2);
    let b = listeners.pop().unwrap();
    let a = listeners.pop().unwrap();
    let small = TcpOptions {
        max_frame: 16,
        ..TcpOptions::default()
    };
    let a = TcpNetwork::with_listener(1, a, &addresses[..2], small.clone()).unwrap();
    let b = TcpNetwork::with_listener(2, b, &addresses[..2], small).unwrap();
    let inbox = Arc::new(Recording(Mutex::new(Vec::new())));
    b.attach(Arc::clone(&inbox) as Arc<dyn Inbox>);
    a.transport().send(2, vec![0; 17]);
    assert_eq!(a.stats().dropped, 1, "dropped at once, never sent");
    a.transport().send(2, vec![7; 16]);
    wait_until("the envelope that fits", || inbox.0.lock().len() == 1);
    assert_eq!(
        b.stats().refused,
        0,
        "the connection was never closed on it"
    );
}

#[test]
fn a_second_shutdown_from_another_thread_returns_once_the_port_is_free() {
    for _ in 0..20 {
        let (a, b, _inbox) = pair();
        a.transport().send(2, b"x".to_vec());
        let addr = b.local_addr();
        let b = Arc::new(b);
        let other = Arc::clone(&b);
        let first = std::thread::spawn(move || other.shutdown());
        b.shutdown();
        // Whichever came second waited for the first.
        TcpListener::bind(addr).expect("the port is free once shutdown returns");
        first.join().unwrap();
        drop(a);
    }
}
