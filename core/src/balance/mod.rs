//! Load balancing: random, round robin, smooth weighted round robin,
//! least connections and least response time (both by power of two
//! choices), and consistent hashing with bounded loads; passive outlier
//! ejection with a panic threshold, and slow start.
//!
//! Picks are lock-free: the endpoint set is an immutable snapshot that
//! updates replace atomically, and every counter is an atomic. Randomness
//! is seeded, and time comes from an injectable [`Clock`], so tests replay.

mod balancer;
mod choose;
mod clock;
#[cfg(test)]
mod extremes_tests;
mod pick;
mod policy;
mod snapshot;
mod stats;
#[cfg(test)]
mod tests;
mod turns;
#[cfg(test)]
mod weights_tests;

pub use balancer::{BalanceError, Balancer, NewEndpoint};
pub use clock::{Clock, ManualClock, SystemClock};
pub use pick::{Outcome, Pick};
pub use policy::{seconds, Health, Policy};
pub use stats::{Attachment, EndpointId, EndpointStats};
