//! Raft's messages and hard state.

use crate::consensus::{SnapshotAck, SnapshotChunk};
use crate::types::{Entry, Epoch, Index, NodeId};
use serde::{Deserialize, Serialize};

/// What Raft persists besides the log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    /// Current term.
    pub term: Epoch,
    /// Candidate voted for in `term`.
    pub vote: Option<NodeId>,
    /// Highest index known committed (lets a restart apply without waiting).
    pub commit: Index,
}

/// Why a follower refused an AppendEntries, with the hint that lets the
/// leader skip a whole conflicting term at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// The `prev_index` that did not match.
    pub rejected: Index,
    /// Term of the follower's entry at `rejected`; `None` when its log is
    /// shorter than that.
    pub conflict_term: Option<Epoch>,
    /// First index of `conflict_term` in the follower's log, or its last
    /// index + 1 when `conflict_term` is `None`.
    pub hint_index: Index,
}

/// One Raft message. Every message carries its sender's term.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Would you vote for me at `term` (not yet started)?
    PreVote {
        /// The term the candidate would campaign in.
        term: Epoch,
        /// Candidate's last log index.
        last_index: Index,
        /// Candidate's last log term.
        last_term: Epoch,
    },
    /// Answer to [`Message::PreVote`].
    PreVoteResponse {
        /// The asked term when granted, the responder's term otherwise.
        term: Epoch,
        /// Whether the pre-vote was granted.
        granted: bool,
    },
    /// RequestVote.
    Vote {
        /// Candidate's term.
        term: Epoch,
        /// Candidate's last log index.
        last_index: Index,
        /// Candidate's last log term.
        last_term: Epoch,
    },
    /// Answer to [`Message::Vote`].
    VoteResponse {
        /// Responder's term.
        term: Epoch,
        /// Whether the vote was granted.
        granted: bool,
    },
    /// AppendEntries.
    Append {
        /// Leader's term.
        term: Epoch,
        /// Index of the entry just before `entries`.
        prev_index: Index,
        /// Term of that entry.
        prev_term: Epoch,
        /// Entries to append (possibly none), consecutive from `prev_index + 1`.
        #[serde(with = "crate::consensus::entry_codec")]
        entries: Vec<Entry>,
        /// Leader's commit index.
        commit: Index,
    },
    /// Answer to [`Message::Append`].
    AppendResponse {
        /// Responder's term.
        term: Epoch,
        /// `Ok(match_index)` or the rejection with its hint.
        result: Result<Index, Rejection>,
    },
    /// Leader heartbeat; also confirms leadership for ReadIndex rounds.
    Heartbeat {
        /// Leader's term.
        term: Epoch,
        /// Commit index, capped at what the follower is known to hold.
        commit: Index,
        /// ReadIndex round this heartbeat belongs to (0: none).
        read_round: u64,
    },
    /// Answer to [`Message::Heartbeat`].
    HeartbeatResponse {
        /// Responder's term.
        term: Epoch,
        /// Echo of the heartbeat's read round.
        read_round: u64,
    },
    /// InstallSnapshot: a chunk of the leader's snapshot, for a follower
    /// that needs entries the leader's log no longer holds.
    InstallSnapshot {
        /// The leader's term.
        term: Epoch,
        /// The chunk.
        chunk: SnapshotChunk,
    },
    /// Answer to InstallSnapshot.
    SnapshotResponse {
        /// The follower's term.
        term: Epoch,
        /// How much it holds.
        ack: SnapshotAck,
    },
}

impl Message {
    /// The sender's term.
    pub fn term(&self) -> Epoch {
        match self {
            Message::PreVote { term, .. }
            | Message::PreVoteResponse { term, .. }
            | Message::Vote { term, .. }
            | Message::VoteResponse { term, .. }
            | Message::Append { term, .. }
            | Message::AppendResponse { term, .. }
            | Message::Heartbeat { term, .. }
            | Message::HeartbeatResponse { term, .. }
            | Message::InstallSnapshot { term, .. }
            | Message::SnapshotResponse { term, .. } => *term,
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
