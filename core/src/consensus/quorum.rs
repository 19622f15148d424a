//! Quorum arithmetic as pure functions, shared by every protocol.

use crate::types::Index;

/// Votes needed for a majority of `n` voters.
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// True when `granted` votes out of `n` voters form a majority.
pub fn has_majority(granted: usize, n: usize) -> bool {
    n > 0 && granted >= majority(n)
}

/// The highest index that a majority of voters has reached, given each
/// voter's acknowledged index. `scratch` is reused to avoid allocating.
///
/// Returns 0 for an empty slice.
pub fn committed_index(acked: &[Index], scratch: &mut Vec<Index>) -> Index {
    if acked.is_empty() {
        return 0;
    }
    scratch.clear();
    scratch.extend_from_slice(acked);
    scratch.sort_unstable_by(|a, b| b.cmp(a));
    scratch[majority(acked.len()) - 1]
}

/// The outcome of an election tally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    /// A majority granted.
    Won,
    /// A majority rejected; the election cannot be won.
    Lost,
    /// Neither yet.
    Pending,
}

/// Tallies `granted` and `rejected` votes out of `n` voters.
pub fn vote_result(granted: usize, rejected: usize, n: usize) -> VoteResult {
    if has_majority(granted, n) {
        VoteResult::Won
    } else if rejected > n - majority(n) {
        VoteResult::Lost
    } else {
        VoteResult::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majorities() {
        assert_eq!(majority(1), 1);
        assert_eq!(majority(2), 2);
        assert_eq!(majority(3), 2);
        assert_eq!(majority(4), 3);
        assert_eq!(majority(5), 3);
        assert!(!has_majority(0, 0));
    }

    #[test]
    fn committed_index_is_the_majority_floor() {
        let mut s = Vec::new();
        assert_eq!(committed_index(&[5, 3, 1], &mut s), 3);
        assert_eq!(committed_index(&[5, 5, 1, 1], &mut s), 1);
        assert_eq!(committed_index(&[9, 7, 7, 2, 1], &mut s), 7);
        assert_eq!(committed_index(&[4], &mut s), 4);
        assert_eq!(committed_index(&[], &mut s), 0);
    }

    #[test]
    fn tallies() {
        assert_eq!(vote_result(2, 0, 3), VoteResult::Won);
        assert_eq!(vote_result(1, 2, 3), VoteResult::Lost);
        assert_eq!(vote_result(1, 1, 3), VoteResult::Pending);
        assert_eq!(vote_result(2, 2, 4), VoteResult::Lost);
        assert_eq!(vote_result(1, 1, 4), VoteResult::Pending);
    }
}
