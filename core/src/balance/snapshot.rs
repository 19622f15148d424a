//! One immutable state of a balancer's endpoint set, with everything a pick
//! reads precomputed: the weighted round-robin order, the alias table
//! of weighted random picks, the hash ring, and the maps from names and ids
//! to positions. Updates build a new snapshot (outside any lock a pick
//! needs) and publish it whole.

use super::balancer::BalanceError;
use super::policy::Policy;
use super::stats::Stats;
use super::turns::Turns;
use crate::hashing::HashRing;
use std::collections::HashMap;
use std::sync::Arc;

/// An endpoint as one snapshot holds it.
#[derive(Debug)]
pub(super) struct Endpoint {
    pub(super) weight: u32,
    /// Statistics and name, shared by every snapshot holding the endpoint.
    pub(super) stats: Arc<Stats>,
}

impl Endpoint {
    /// The same endpoint, for the next snapshot.
    pub(super) fn share(&self) -> Endpoint {
        Endpoint {
            weight: self.weight,
            stats: Arc::clone(&self.stats),
        }
    }
}

/// Vose's alias table: a weighted random choice in constant time. Slot `i`
/// is `(keep, alias)`: it keeps itself when a second random number is below
/// `keep` (out of 2^32), and is `alias` otherwise. Both halves sit side by
/// side, so a choice touches one cache line.
#[derive(Debug, Default)]
pub(super) struct AliasTable {
    slots: Vec<(u32, u32)>,
}

impl AliasTable {
    fn build(weights: &[u32]) -> AliasTable {
        let n = weights.len();
        let total: f64 = weights.iter().map(|&w| w as f64).sum();
        // Each slot's share, scaled so that the mean is 1.
        let mut scaled: Vec<f64> = weights
            .iter()
            .map(|&w| w as f64 * n as f64 / total)
            .collect();
        // What is never paired below keeps itself (rounding leaves a few
        // just under 1).
        let mut slots: Vec<(u32, u32)> = (0..n as u32).map(|i| (u32::MAX, i)).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| scaled[i] < 1.0);
        while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
            small.pop();
            slots[s] = ((scaled[s] * 4_294_967_296.0) as u32, l as u32);
            scaled[l] -= 1.0 - scaled[s];
            if scaled[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        AliasTable { slots }
    }

    /// The slot for 64 random bits.
    #[inline]
    pub(super) fn choose(&self, random: u64) -> usize {
        let slot = below(random as u32, self.slots.len());
        let (keep, alias) = self.slots[slot];
        if ((random >> 32) as u32) < keep {
            slot
        } else {
            alias as usize
        }
    }
}

/// A number below `n` from 32 random bits, by multiplication rather than
/// division (Lemire's reduction; the bias, n / 2^32, is immaterial here).
/// `n` must be below 2^32.
#[inline]
pub(super) fn below(random: u32, n: usize) -> usize {
    ((random as u64 * n as u64) >> 32) as usize
}

/// One state of the endpoint set.
#[derive(Debug, Default)]
pub(super) struct Snapshot {
    pub(super) endpoints: Vec<Endpoint>,
    /// Every endpoint has the same weight: the unweighted fast paths apply.
    pub(super) uniform: bool,
    /// Round robin's order (a plain rotation when weights are equal).
    pub(super) turns: Turns,
    /// Random with unequal weights.
    pub(super) alias: AliasTable,
    pub(super) ring: Option<HashRing>,
    by_name: HashMap<Arc<str>, usize>,
    by_id: HashMap<u64, usize>,
}

impl Snapshot {
    /// Builds the snapshot of `endpoints` for `policy`.
    ///
    /// # Errors
    /// [`BalanceError::Hash`] when the hash ring refuses the endpoints.
    pub(super) fn build(
        policy: Policy,
        endpoints: Vec<Endpoint>,
    ) -> Result<Snapshot, BalanceError> {
        let weights: Vec<u32> = endpoints.iter().map(|e| e.weight).collect();
        let uniform = weights.windows(2).all(|w| w[0] == w[1]);
        let mut snap = Snapshot {
            uniform,
            by_name: endpoints
                .iter()
                .enumerate()
                .map(|(i, e)| (Arc::clone(&e.stats.name), i))
                .collect(),
            by_id: endpoints
                .iter()
                .enumerate()
                .map(|(i, e)| (e.stats.id, i))
                .collect(),
            endpoints,
            ..Snapshot::default()
        };
        if snap.endpoints.is_empty() {
            return Ok(snap);
        }
        match policy {
            Policy::RoundRobin | Policy::WeightedRoundRobin => snap.turns = Turns::build(&weights),
            Policy::Random if !uniform => snap.alias = AliasTable::build(&weights),
            Policy::ConsistentHash { algorithm, .. } => {
                let eps: Vec<(&str, u32)> = snap
                    .endpoints
                    .iter()
                    .map(|e| (&*e.stats.name, e.weight))
                    .collect();
                snap.ring = Some(HashRing::new(algorithm, &eps)?);
            }
            _ => {}
        }
        Ok(snap)
    }

    /// The position of the endpoint named `name`.
    pub(super) fn index_of_name(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The position of the endpoint with id `id`.
    pub(super) fn index_of_id(&self, id: u64) -> Option<usize> {
        self.by_id.get(&id).copied()
    }

    /// The endpoints, each shared into a list for the next snapshot.
    pub(super) fn shared_endpoints(&self) -> Vec<Endpoint> {
        self.endpoints.iter().map(Endpoint::share).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::AliasTable;

    #[test]
    fn the_alias_table_gives_each_slot_its_share() {
        // One heavy weight, several, a zero, and many unequal ones: each
        // pairing path of Vose's construction runs.
        let cases: [&[u32]; 4] = [
            &[1, 9, 0, 30],
            &[1, 1, 5, 5],
            &[7, 3, 3, 1, 2, 9, 9, 1],
            &[100, 1, 50, 1, 25, 1, 12, 1, 6, 1, 3],
        ];
        for weights in cases {
            let table = AliasTable::build(weights);
            let total: u32 = weights.iter().sum();
            let mut counts = vec![0u64; weights.len()];
            let mut x = 0x1234_5678u64;
            let n = 400_000;
            for _ in 0..n {
                x = crate::hashing::mix64(x.wrapping_add(0x9E37_79B9_7F4A_7C15));
                counts[table.choose(x)] += 1;
            }
            for (i, &c) in counts.iter().enumerate() {
                let share = c as f64 / n as f64;
                let expect = f64::from(weights[i]) / f64::from(total);
                assert!(
                    (share - expect).abs() < 0.005,
                    "{weights:?} slot {i}: {share} for {expect}"
                );
                if weights[i] == 0 {
                    assert_eq!(c, 0, "a zero share is never chosen");
                }
            }
        }
    }
}
