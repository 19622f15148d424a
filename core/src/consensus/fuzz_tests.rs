//! Arbitrary decoded messages from a peer never panic a core, whatever its
//! role, and never break its basic bookkeeping. Random bytes that postcard
//! accepts as a message are stepped into a leader and a follower.

use crate::consensus::paxos::{MultiPaxos, PaxosConfig};
use crate::consensus::raft::{Raft, RaftConfig};
use crate::consensus::testing::Net;
use crate::consensus::zab::{Zab, ZabConfig};
use crate::consensus::Protocol;
use crate::types::Role;
use proptest::prelude::*;

/// A 3-node net of `P` with a settled leader.
fn settled<P: Protocol>(config: P::Config) -> Net<P> {
    let mut net = Net::<P>::new(3, config);
    for _ in 0..300 {
        for id in 1..=3 {
            net.tick(id, 1);
        }
        net.deliver_all();
        if (1..=3).any(|i| net.node(i).role() == Role::Leader) {
            break;
        }
    }
    let leader = (1..=3).find(|&i| net.node(i).role() == Role::Leader);
    assert!(leader.is_some(), "no leader to fuzz");
    net
}

fn fuzz<P: Protocol>(net: &mut Net<P>, bytes: &[u8]) {
    let Ok(msg) = postcard::from_bytes::<P::Message>(bytes) else {
        return;
    };
    for to in 1..=3u64 {
        for from in 1..=3u64 {
            if from != to {
                let m = msg.clone();
                net.call(to, |core, fx| core.step(from, m, fx));
                let core = net.node(to);
                assert!(core.commit_index() <= core.last_index());
            }
        }
    }
    net.queue.clear();
}

/// Mostly small bytes (enum tags and varints are small), so that most
/// strings decode into a message.
fn message_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(prop_oneof![4 => 0u8..8, 1 => any::<u8>()], 1..48)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn raft_survives_arbitrary_messages(bytes in message_bytes()) {
        let mut net = settled::<Raft>(RaftConfig::default());
        fuzz(&mut net, &bytes);
    }

    #[test]
    fn paxos_survives_arbitrary_messages(bytes in message_bytes()) {
        let mut net = settled::<MultiPaxos>(PaxosConfig::default());
        fuzz(&mut net, &bytes);
    }

    #[test]
    fn zab_survives_arbitrary_messages(bytes in message_bytes()) {
        let mut net = settled::<Zab>(ZabConfig::default());
        fuzz(&mut net, &bytes);
    }
}

#[test]
fn most_generated_strings_decode() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut ok = 0;
    for _ in 0..1000 {
        let b = message_bytes()
            .new_tree(&mut runner)
            .map(|t| t.current())
            .unwrap_or_default();
        ok += postcard::from_bytes::<crate::consensus::zab::Message>(&b).is_ok() as usize;
    }
    assert!(
        ok > 100,
        "only {ok} of 1000 decoded: the fuzz tests would test little"
    );
}
