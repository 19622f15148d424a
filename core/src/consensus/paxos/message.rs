//! Multi-Paxos messages, ballots and hard state.

use crate::consensus::{SnapshotAck, SnapshotChunk};
use crate::types::{Entry, Epoch, Index};
use serde::{Deserialize, Serialize};

/// A ballot, totally ordered: the round in the high bits, the proposer's
/// position among the voters in the low 8 bits, so two proposers never share
/// one. It is the protocol's epoch.
pub type Ballot = Epoch;

/// The ballot of `round` for the voter at `position`.
pub fn ballot(round: u64, position: usize) -> Ballot {
    (round << 8) | position as u64
}

/// The round of a ballot.
pub fn round_of(b: Ballot) -> u64 {
    b >> 8
}

/// What an acceptor persists besides its accepted values (the log).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    /// The highest ballot promised; no lower ballot is accepted again.
    pub promised: Ballot,
    /// Slots known chosen (so a restart can apply them at once).
    pub commit: Index,
}

/// An acceptor's answer to Prepare: what it accepted from the asked slot on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promised {
    /// Slots up to here are chosen, and this acceptor holds their values.
    pub commit: Index,
    /// Accepted values (each with the ballot it was accepted in) from the
    /// asked slot to the acceptor's last.
    #[serde(with = "crate::consensus::entry_codec")]
    pub entries: Vec<Entry>,
}

/// Why an acceptor refused an Accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// It promised a higher ballot.
    Promised(Ballot),
    /// The batch starts after the acceptor's first empty slot: send from
    /// `commit + 1`.
    Gap {
        /// The acceptor's chosen prefix.
        commit: Index,
    },
}

/// An acceptor's answer to Accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acked {
    /// Every slot up to here holds a chosen value or one accepted in this
    /// ballot.
    pub matched: Index,
    /// The last slot the acknowledged Accept covered.
    pub through: Index,
}

/// One Multi-Paxos message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Phase 1a: promise `ballot`; report accepted values from slot `from`.
    Prepare {
        /// The proposer's ballot.
        ballot: Ballot,
        /// First slot the proposer does not know chosen.
        from: Index,
    },
    /// Phase 1b.
    Promise {
        /// The ballot asked.
        ballot: Ballot,
        /// The promise, or the higher ballot already promised.
        result: Result<Promised, Ballot>,
    },
    /// Phase 2a, batched: accept these values in `ballot`, in order from
    /// slot `first`; slots up to `commit` are chosen.
    Accept {
        /// The leader's ballot.
        ballot: Ballot,
        /// Slot of the first entry (or where an empty batch would start).
        first: Index,
        /// Consecutive values from `first`.
        #[serde(with = "crate::consensus::entry_codec")]
        entries: Vec<Entry>,
        /// The leader's chosen prefix.
        commit: Index,
    },
    /// Phase 2b.
    Accepted {
        /// The ballot accepted (or refused).
        ballot: Ballot,
        /// What is now held, or why not.
        result: Result<Acked, Refusal>,
    },
    /// Leadership heartbeat; carries the commit point and ReadIndex rounds.
    Heartbeat {
        /// The leader's ballot.
        ballot: Ballot,
        /// Chosen prefix, capped at what this acceptor is known to hold.
        commit: Index,
        /// ReadIndex round (0: none).
        read_round: u64,
    },
    /// Answer to a heartbeat.
    HeartbeatResponse {
        /// The heartbeat's ballot.
        ballot: Ballot,
        /// Echo of its read round.
        read_round: u64,
        /// `Ok(())` when the ballot is still the highest promised, else the
        /// higher one.
        result: Result<(), Ballot>,
    },
    /// Catch-up past the leader's compaction point: a chunk of its
    /// snapshot of the chosen prefix.
    Snapshot {
        /// The leader's ballot.
        ballot: Ballot,
        /// The chunk.
        chunk: SnapshotChunk,
    },
    /// Answer to a snapshot chunk.
    SnapshotAck {
        /// The chunk's ballot.
        ballot: Ballot,
        /// How much the acceptor holds.
        ack: SnapshotAck,
    },
}

impl Message {
    /// The ballot the message is about.
    pub fn ballot(&self) -> Ballot {
        match self {
            Message::Prepare { ballot, .. }
            | Message::Promise { ballot, .. }
            | Message::Accept { ballot, .. }
            | Message::Accepted { ballot, .. }
            | Message::Heartbeat { ballot, .. }
            | Message::HeartbeatResponse { ballot, .. }
            | Message::Snapshot { ballot, .. }
            | Message::SnapshotAck { ballot, .. } => *ballot,
        }
    }
}

impl crate::consensus::HardStateCommit for HardState {
    fn commit(&self) -> Index {
        self.commit
    }

    fn with_commit(&self, commit: Index) -> Self {
        HardState {
            commit,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ballots_order_by_round_then_proposer() {
        assert!(ballot(2, 0) > ballot(1, 5));
        assert!(ballot(1, 3) > ballot(1, 2));
        assert_eq!(round_of(ballot(7, 4)), 7);
    }
}
