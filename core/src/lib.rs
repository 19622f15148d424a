//! consenso: embeddable cluster coordination.
//!
//! Layers (see docs/architecture.md): sans-IO protocol cores in [`consensus`] (Raft,
//! Multi-Paxos and ZAB behind one [`consensus::Protocol`] trait), the
//! thread-based [`runtime::Node`] that drives one, [`storage`] for what must
//! survive a restart, the versioned [`wire`] envelope, the in-process
//! [`local::LocalNetwork`], the [`tcp::TcpNetwork`] transport and the
//! deterministic simulator in [`sim`].
//!
//! ```
//! use consenso::local::LocalCluster;
//! use consenso::runtime::CounterMachine;
//! use std::time::Duration;
//!
//! let cluster = LocalCluster::start(3, |_| CounterMachine::default()).unwrap();
//! let leader = cluster.wait_for_leader(Duration::from_secs(5)).unwrap();
//! let reply = cluster.node(leader).unwrap().propose(b"hello".to_vec(), Duration::from_secs(5)).unwrap();
//! assert_eq!(reply, 1u64.to_le_bytes().to_vec());
//! cluster.shutdown();
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod balance;
pub mod consensus;
pub mod error;
pub mod hashing;
pub mod local;
pub mod rng;
pub mod runtime;
pub mod sim;
pub mod storage;
pub mod tcp;
pub mod types;
pub mod wire;

pub use error::{duration_from_seconds, ConfigError, ProposeError};
pub use types::{Entry, EntryKind, Index, NodeId, Role};

/// The library version, from Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
