//! The versioned wire envelope that carries a batch of protocol messages.
//!
//! Layout (see `docs/wire.md`): 4 magic bytes `CNSO`, 1 version byte, then
//! a postcard-encoded [`Header`] and a postcard-encoded sequence of messages.
//! Decoding never panics on any input; every failure is a [`WireError`].

use crate::consensus::ProtocolKind;
use crate::types::NodeId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// First four bytes of every envelope.
pub const MAGIC: [u8; 4] = *b"CNSO";
/// The envelope version this build writes and reads.
pub const VERSION: u8 = 2;

/// Who an envelope is from and for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Wire code of the protocol ([`ProtocolKind`]).
    pub protocol: u8,
    /// Cluster the sender belongs to.
    pub cluster: u64,
    /// Sender.
    pub from: NodeId,
    /// Recipient.
    pub to: NodeId,
}

/// Why bytes were rejected.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum WireError {
    /// Shorter than the fixed prefix.
    #[error("envelope too short ({0} bytes)")]
    TooShort(usize),
    /// The magic bytes are wrong: not a consenso envelope.
    #[error("not a consenso envelope (bad magic)")]
    BadMagic,
    /// Written by a version this build does not read.
    #[error("unsupported envelope version {0} (this build reads version {VERSION})")]
    UnsupportedVersion(u8),
    /// Names a protocol this node does not run.
    #[error("envelope is for protocol code {found}, this node runs {expected:?}")]
    WrongProtocol {
        /// This node's protocol.
        expected: ProtocolKind,
        /// The code found.
        found: u8,
    },
    /// From another cluster.
    #[error("envelope is from cluster {found}, this node is in cluster {expected}")]
    WrongCluster {
        /// This node's cluster.
        expected: u64,
        /// The cluster found.
        found: u64,
    },
    /// From a node that is not a member.
    #[error("envelope is from unknown node {0}")]
    UnknownSender(NodeId),
    /// The envelope's sender is not the peer the host received it from.
    #[error("envelope says it is from node {found}, the host says {expected}")]
    SenderMismatch {
        /// The sender the host named.
        expected: NodeId,
        /// The sender in the envelope.
        found: NodeId,
    },
    /// Addressed to another node.
    #[error("envelope is for node {0}, not this one")]
    WrongRecipient(NodeId),
    /// The header or messages did not decode.
    #[error("malformed envelope: {0}")]
    Malformed(String),
}

/// Encodes `messages` for `header.to`, appending the envelope to `buf`
/// (pass `Vec::new()` or a buffer to reuse) and returning it.
///
/// # Errors
/// [`WireError::Malformed`] if a message cannot be serialized.
pub fn encode<M: Serialize>(
    header: &Header,
    messages: &[M],
    mut buf: Vec<u8>,
) -> Result<Vec<u8>, WireError> {
    buf.extend_from_slice(&MAGIC);
    buf.push(VERSION);
    let buf = postcard::to_extend(header, buf).map_err(|e| WireError::Malformed(e.to_string()))?;
    postcard::to_extend(messages, buf).map_err(|e| WireError::Malformed(e.to_string()))
}

/// Reads the prefix and header; returns the header and the message bytes.
///
/// # Errors
/// [`WireError`] for a short buffer, bad magic, unknown version or a header
/// that does not decode.
pub fn decode_header(bytes: &[u8]) -> Result<(Header, &[u8]), WireError> {
    if bytes.len() < 5 {
        return Err(WireError::TooShort(bytes.len()));
    }
    if bytes[..4] != MAGIC {
        return Err(WireError::BadMagic);
    }
    if bytes[4] != VERSION {
        return Err(WireError::UnsupportedVersion(bytes[4]));
    }
    postcard::take_from_bytes::<Header>(&bytes[5..])
        .map_err(|e| WireError::Malformed(e.to_string()))
}

/// Decodes the message batch that follows a header.
///
/// # Errors
/// [`WireError::Malformed`] when the bytes are not exactly a batch of `M`.
pub fn decode_messages<M: DeserializeOwned>(bytes: &[u8]) -> Result<Vec<M>, WireError> {
    let (msgs, rest) = postcard::take_from_bytes::<Vec<M>>(bytes)
        .map_err(|e| WireError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(WireError::Malformed(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok(msgs)
}

/// Checks envelopes addressed to one node: its cluster, protocol, id and the
/// set of peers it accepts messages from.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// This node's protocol.
    pub protocol: ProtocolKind,
    /// This node's cluster.
    pub cluster: u64,
    /// This node.
    pub id: NodeId,
    /// Peers it accepts messages from.
    pub peers: Vec<NodeId>,
}

impl Endpoint {
    /// The header for an envelope from this node to `to`.
    pub fn header_to(&self, to: NodeId) -> Header {
        Header {
            protocol: self.protocol as u8,
            cluster: self.cluster,
            from: self.id,
            to,
        }
    }

    /// Decodes and validates an envelope that the host received from `from`.
    ///
    /// # Errors
    /// The first [`WireError`] that applies.
    pub fn open<M: DeserializeOwned>(
        &self,
        from: NodeId,
        bytes: &[u8],
    ) -> Result<Vec<M>, WireError> {
        let (h, rest) = decode_header(bytes)?;
        if h.protocol != self.protocol as u8 {
            return Err(WireError::WrongProtocol {
                expected: self.protocol,
                found: h.protocol,
            });
        }
        if h.cluster != self.cluster {
            return Err(WireError::WrongCluster {
                expected: self.cluster,
                found: h.cluster,
            });
        }
        if h.to != self.id {
            return Err(WireError::WrongRecipient(h.to));
        }
        if h.from != from {
            return Err(WireError::SenderMismatch {
                expected: from,
                found: h.from,
            });
        }
        if h.from == self.id || !self.peers.contains(&h.from) {
            return Err(WireError::UnknownSender(h.from));
        }
        decode_messages(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::raft::Message;
    use proptest::prelude::*;

    fn endpoint() -> Endpoint {
        Endpoint {
            protocol: ProtocolKind::Raft,
            cluster: 7,
            id: 2,
            peers: vec![1, 2, 3],
        }
    }

    fn sample() -> Vec<u8> {
        let from1 = Endpoint {
            id: 1,
            ..endpoint()
        };
        let msgs = vec![Message::VoteResponse {
            term: 5,
            granted: true,
        }];
        encode(&from1.header_to(2), &msgs, Vec::new()).unwrap()
    }

    #[test]
    fn round_trip() {
        let msgs: Vec<Message> = endpoint().open(1, &sample()).unwrap();
        assert_eq!(
            msgs,
            vec![Message::VoteResponse {
                term: 5,
                granted: true
            }]
        );
    }

    #[test]
    fn documented_example_bytes_decode() {
        // The example in docs/wire.md: must stay in step with it.
        let doc = [
            0x43, 0x4E, 0x53, 0x4F, 0x02, 0x01, 0x07, 0x01, 0x02, 0x01, 0x03, 0x05, 0x01,
        ];
        assert_eq!(sample(), doc);
    }

    #[test]
    fn every_check_has_its_error() {
        let good = sample();
        let ep = endpoint();
        let open = |b: &[u8], from| ep.open::<Message>(from, b).unwrap_err();
        assert_eq!(open(&good[..3], 1), WireError::TooShort(3));
        let mut b = good.clone();
        b[0] = b'X';
        assert_eq!(open(&b, 1), WireError::BadMagic);
        let mut b = good.clone();
        b[4] = 9;
        assert_eq!(open(&b, 1), WireError::UnsupportedVersion(9));
        let mut b = good.clone();
        b[5] = 3;
        assert!(matches!(
            open(&b, 1),
            WireError::WrongProtocol { found: 3, .. }
        ));
        let mut b = good.clone();
        b[6] = 8;
        assert_eq!(
            open(&b, 1),
            WireError::WrongCluster {
                expected: 7,
                found: 8
            }
        );
        let mut b = good.clone();
        b[8] = 3;
        assert_eq!(open(&b, 1), WireError::WrongRecipient(3));
        assert!(matches!(open(&good, 3), WireError::SenderMismatch { .. }));
        let stranger = Endpoint {
            id: 9,
            ..endpoint()
        };
        let b = encode(
            &stranger.header_to(2),
            &[Message::VoteResponse {
                term: 1,
                granted: false,
            }],
            Vec::new(),
        )
        .unwrap();
        assert_eq!(open(&b, 9), WireError::UnknownSender(9));
        let mut b = good.clone();
        b.push(0);
        assert!(matches!(open(&b, 1), WireError::Malformed(_)));
        let b = &good[..good.len() - 1];
        assert!(matches!(open(b, 1), WireError::Malformed(_)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = endpoint().open::<Message>(1, &bytes);
        }

        #[test]
        fn arbitrary_bytes_after_a_valid_prefix_never_panic(
            tail in proptest::collection::vec(any::<u8>(), 0..256)
        ) {
            let mut b = sample()[..10].to_vec();
            b.extend_from_slice(&tail);
            let _ = endpoint().open::<Message>(1, &b);
        }

        #[test]
        fn mutated_envelopes_never_panic(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let entries = vec![crate::types::Entry::new(3, 4, crate::types::EntryKind::Normal, bytes::Bytes::from_static(b"hello"))];
            let msg = Message::Append { term: 3, prev_index: 3, prev_term: 2, entries, commit: 2 };
            let from1 = Endpoint { id: 1, ..endpoint() };
            let mut b = encode(&from1.header_to(2), &[msg], Vec::new()).unwrap();
            for (at, v) in flips {
                let i = at.index(b.len());
                b[i] = v;
            }
            let keep = cut.index(b.len() + 1);
            b.truncate(keep);
            let _ = endpoint().open::<Message>(1, &b);
        }
    }
}
