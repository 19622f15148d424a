//! Load balancing: random, round robin, smooth weighted round robin,
//! least connections and least response time (both by power of two
//! choices), and consistent hashing with bounded loads; passive outlier
//! ejection with a panic threshold, and slow start.
//!
//! Picks are lock-free: the endpoint set is an immutable snapshot that
//! updates replace atomically, and every counter is an atomic. Randomness
//! is seeded, and time comes from an injectable [`Clock`], so tests replay.

mod balancer;
mod clock;
mod pick;
mod policy;
mod stats;
#[cfg(test)]
mod tests;

pub use balancer::{BalanceError, Balancer};
pub use clock::{Clock, ManualClock, SystemClock};
pub use pick::{Outcome, Pick};
pub use policy::{Health, Policy};
pub use stats::{Attachment, EndpointId, EndpointStats};
