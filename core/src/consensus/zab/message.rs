//! ZAB messages, votes, zxids and hard state.

use crate::consensus::{SnapshotAck, SnapshotChunk};
use crate::types::{Entry, Epoch, Index, NodeId};
use serde::{Deserialize, Serialize};

/// A transaction id: `epoch << 32 | counter`. In this implementation the
/// log position stands in for the counter: every entry of one epoch comes
/// from that epoch's one established leader, in order, after the same synced
/// history, so comparing `(epoch, index)` orders histories exactly as
/// comparing zxids does.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Zxid {
    /// Epoch of the proposal.
    pub epoch: Epoch,
    /// Its log position.
    pub index: Index,
}

impl Zxid {
    /// The 64-bit form ZooKeeper prints: epoch in the high half. The low half
    /// is the log position truncated to 32 bits.
    pub fn to_u64(self) -> u64 {
        (self.epoch << 32) | (self.index & 0xFFFF_FFFF)
    }
}

/// A Fast Leader Election vote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// The proposed leader.
    pub leader: NodeId,
    /// Its last zxid.
    pub zxid: Zxid,
    /// Its current (acknowledged) epoch.
    pub peer_epoch: Epoch,
}

impl Vote {
    /// ZooKeeper's total order on votes: peer epoch, then zxid, then id.
    pub fn beats(&self, other: &Vote) -> bool {
        (self.peer_epoch, self.zxid, self.leader) > (other.peer_epoch, other.zxid, other.leader)
    }
}

/// A server's state, as election notifications report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerState {
    /// In election.
    Looking,
    /// Following the vote's leader.
    Following,
    /// Leading.
    Leading,
}

/// How a follower's history is brought in line with the leader's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncKind {
    /// The follower's history is a prefix of the leader's: send the rest.
    Diff,
    /// The follower holds proposals the leader does not: truncate them, then
    /// send the rest.
    Trunc,
    /// Nothing in common: replace the whole history.
    Snap,
}

/// What a ZAB server persists besides its history (the log).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    /// The last epoch this server acknowledged in discovery (NEWEPOCH).
    pub accepted_epoch: Epoch,
    /// The epoch of the last NEWLEADER it acknowledged.
    pub current_epoch: Epoch,
    /// Proposals known committed.
    pub commit: Index,
}

/// One ZAB message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Fast Leader Election notification.
    Notification {
        /// The sender's vote (its leader when not looking).
        vote: Vote,
        /// The sender's logical clock of elections.
        election_epoch: u64,
        /// The sender's state.
        state: PeerState,
    },
    /// Discovery: a follower reports the last epoch it accepted.
    FollowerInfo {
        /// Its accepted epoch.
        accepted_epoch: Epoch,
    },
    /// Discovery: NEWEPOCH, above every accepted epoch of a quorum.
    LeaderInfo {
        /// The new epoch.
        epoch: Epoch,
    },
    /// Discovery: the follower accepted the epoch and describes its history.
    AckEpoch {
        /// The acknowledged new epoch.
        epoch: Epoch,
        /// The follower's current epoch.
        current_epoch: Epoch,
        /// The follower's last zxid.
        last: Zxid,
        /// Last index of each epoch in its history after its snapshot, in
        /// order (lets the leader find the common prefix exactly).
        history: Vec<(Epoch, Index)>,
        /// The last index its snapshot covers (0: none): committed, so its
        /// history agrees with the leader's through there.
        snapshot: Index,
        /// False when the follower had already accepted this epoch before
        /// this leader asked (from another leader, or before a restart):
        /// ZooKeeper's ACKEPOCH of -1. A server promises an epoch to one
        /// leader only, so such an ack never counts toward the epoch's
        /// quorum; the leader syncs the follower once that quorum formed.
        fresh: bool,
    },
    /// Synchronization followed by NEWLEADER, in one message.
    Sync {
        /// The new epoch.
        epoch: Epoch,
        /// DIFF, TRUNC or SNAP.
        kind: SyncKind,
        /// Keep the history up to here (TRUNC, SNAP) before adding `entries`.
        keep: Index,
        /// The proposals that follow `keep`, up to the leader's history.
        #[serde(with = "crate::consensus::entry_codec")]
        entries: Vec<Entry>,
        /// Last index of the leader's history: NEWLEADER's zxid.
        newleader: Index,
    },
    /// The follower persisted the synced history and its new current epoch.
    AckNewLeader {
        /// The epoch.
        epoch: Epoch,
        /// The NEWLEADER index acknowledged.
        newleader: Index,
    },
    /// The leader is established: serve, with this commit point.
    UpToDate {
        /// The epoch.
        epoch: Epoch,
        /// Committed through here.
        commit: Index,
    },
    /// Broadcast: proposals following `prev`.
    Proposal {
        /// The leader's epoch.
        epoch: Epoch,
        /// The proposal just before `entries`.
        prev: Zxid,
        /// Consecutive proposals.
        #[serde(with = "crate::consensus::entry_codec")]
        entries: Vec<Entry>,
        /// Committed through here (COMMIT, piggybacked).
        commit: Index,
    },
    /// Broadcast: ACK through an index, or the follower's last index when
    /// `prev` did not match (a gap: the leader resends from there).
    Ack {
        /// The epoch.
        epoch: Epoch,
        /// `Ok(last acknowledged)` or `Err(follower's last index)`.
        result: Result<Index, Index>,
    },
    /// Leader ping: liveness, commit point and ReadIndex rounds.
    Ping {
        /// The epoch.
        epoch: Epoch,
        /// Commit point, capped at what the follower is known to hold.
        commit: Index,
        /// ReadIndex round (0: none).
        read_round: u64,
    },
    /// Answer to a ping.
    Pong {
        /// The epoch.
        epoch: Epoch,
        /// Echo of the read round.
        read_round: u64,
    },
    /// SNAP: a chunk of the leader's snapshot, for a follower whose
    /// history ends before the leader's log begins (in synchronization,
    /// then the sync follows it) or that fell that far behind.
    Snapshot {
        /// The epoch.
        epoch: Epoch,
        /// The chunk.
        chunk: SnapshotChunk,
    },
    /// Answer to a snapshot chunk.
    SnapshotAck {
        /// The epoch.
        epoch: Epoch,
        /// How much the follower holds.
        ack: SnapshotAck,
    },
}

impl Message {
    /// True for what only a leader sends to its followers (LEADERINFO,
    /// sync and NEWLEADER, UPTODATE, proposals and pings).
    pub fn is_from_leader(&self) -> bool {
        matches!(
            self,
            Message::LeaderInfo { .. }
                | Message::Sync { .. }
                | Message::Snapshot { .. }
                | Message::UpToDate { .. }
                | Message::Proposal { .. }
                | Message::Ping { .. }
        )
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
