//! Quorum verifiers: who votes and which sets of voters form a quorum.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::ElectionError;
use crate::vote::Sid;

/// Decides membership and quorums, like ZooKeeper's `QuorumVerifier`.
///
/// Voters have a positive weight; observers (non-voting learners) have weight 0 and are
/// told the leader but never counted.
pub trait QuorumVerifier: std::fmt::Debug + Send + Sync {
    /// The voting members.
    fn voters(&self) -> &BTreeSet<Sid>;
    /// The non-voting members (observers).
    fn observers(&self) -> &BTreeSet<Sid>;
    /// The weight of a sid's vote; 0 for non-voters and unknown sids.
    fn weight(&self, sid: Sid) -> u64;
    /// True when the acknowledging sids contain a quorum.
    fn contains_quorum(&self, acks: &BTreeSet<Sid>) -> bool;
    /// The configuration version (ZooKeeper's dynamic-config `version`).
    fn version(&self) -> i64 {
        0
    }
    /// True for voters.
    fn is_voter(&self, sid: Sid) -> bool {
        self.voters().contains(&sid)
    }
    /// True for voters and observers.
    fn is_member(&self, sid: Sid) -> bool {
        self.voters().contains(&sid) || self.observers().contains(&sid)
    }
}

/// A plain majority of voters (ZooKeeper's `QuorumMaj`).
///
/// ```
/// use std::collections::BTreeSet;
/// use zk_election::{Majority, QuorumVerifier};
/// let q = Majority::new([1, 2, 3], [4]).unwrap();
/// assert!(q.contains_quorum(&BTreeSet::from([1, 3])));
/// assert!(!q.contains_quorum(&BTreeSet::from([1, 4]))); // observers never count
/// ```
#[derive(Debug, Clone)]
pub struct Majority {
    voters: BTreeSet<Sid>,
    observers: BTreeSet<Sid>,
}

impl Majority {
    /// Builds a majority verifier. Fails on an empty voter set or a sid that is both a
    /// voter and an observer.
    pub fn new(
        voters: impl IntoIterator<Item = Sid>,
        observers: impl IntoIterator<Item = Sid>,
    ) -> Result<Self, ElectionError> {
        let voters: BTreeSet<Sid> = voters.into_iter().collect();
        let observers: BTreeSet<Sid> = observers.into_iter().collect();
        if voters.is_empty() {
            return Err(ElectionError::Config("no voting members".into()));
        }
        if let Some(both) = voters.intersection(&observers).next() {
            return Err(ElectionError::Config(format!(
                "sid {both} is both a voter and an observer"
            )));
        }
        Ok(Majority { voters, observers })
    }
}

impl QuorumVerifier for Majority {
    fn voters(&self) -> &BTreeSet<Sid> {
        &self.voters
    }
    fn observers(&self) -> &BTreeSet<Sid> {
        &self.observers
    }
    fn weight(&self, sid: Sid) -> u64 {
        u64::from(self.voters.contains(&sid))
    }
    fn contains_quorum(&self, acks: &BTreeSet<Sid>) -> bool {
        let n = acks.iter().filter(|s| self.voters.contains(s)).count();
        n > self.voters.len() / 2
    }
}

/// Weighted voting: a set of voters is a quorum when its weight is more than half of the
/// total (the flat form of ZooKeeper's `QuorumHierarchical`, without groups).
///
/// ```
/// use std::collections::BTreeSet;
/// use zk_election::{QuorumVerifier, Weighted};
/// let q = Weighted::new([(1, 3), (2, 1), (3, 1)], []).unwrap();
/// assert!(q.contains_quorum(&BTreeSet::from([1]))); // 3 of 5
/// assert!(!q.contains_quorum(&BTreeSet::from([2, 3])));
/// ```
#[derive(Debug, Clone)]
pub struct Weighted {
    weights: BTreeMap<Sid, u64>,
    voters: BTreeSet<Sid>,
    observers: BTreeSet<Sid>,
    total: u64,
}

impl Weighted {
    /// Builds a weighted verifier from `(sid, weight)` pairs; weight 0 makes a non-voter.
    pub fn new(
        weights: impl IntoIterator<Item = (Sid, u64)>,
        observers: impl IntoIterator<Item = Sid>,
    ) -> Result<Self, ElectionError> {
        let weights: BTreeMap<Sid, u64> = weights.into_iter().collect();
        let mut observers: BTreeSet<Sid> = observers.into_iter().collect();
        let voters: BTreeSet<Sid> = weights
            .iter()
            .filter(|(_, w)| **w > 0)
            .map(|(s, _)| *s)
            .collect();
        observers.extend(weights.iter().filter(|(_, w)| **w == 0).map(|(s, _)| *s));
        if voters.is_empty() {
            return Err(ElectionError::Config(
                "no voter with a positive weight".into(),
            ));
        }
        if let Some(both) = voters.intersection(&observers).next() {
            return Err(ElectionError::Config(format!(
                "sid {both} is both a voter and an observer"
            )));
        }
        let total = weights
            .values()
            .try_fold(0u64, |a, w| a.checked_add(*w))
            .ok_or_else(|| ElectionError::Config("total weight overflows".into()))?;
        Ok(Weighted {
            weights,
            voters,
            observers,
            total,
        })
    }
}

impl QuorumVerifier for Weighted {
    fn voters(&self) -> &BTreeSet<Sid> {
        &self.voters
    }
    fn observers(&self) -> &BTreeSet<Sid> {
        &self.observers
    }
    fn weight(&self, sid: Sid) -> u64 {
        self.weights.get(&sid).copied().unwrap_or(0)
    }
    fn contains_quorum(&self, acks: &BTreeSet<Sid>) -> bool {
        // No overflow: the sum of a subset is at most `total`, which was checked.
        let w: u64 = acks.iter().map(|s| self.weight(*s)).sum();
        w > self.total / 2
    }
}

/// ZooKeeper's `QuorumHierarchical`: voters in groups, each with a weight. A set is a
/// quorum when, in more than half of the groups (those of positive total weight), it
/// holds more than half of the group's weight.
///
/// ```
/// use std::collections::BTreeSet;
/// use zk_election::{Hierarchical, QuorumVerifier};
/// // Three groups of two.
/// let q = Hierarchical::new([(1, vec![(1, 1), (2, 1)]), (2, vec![(3, 1), (4, 1)]), (3, vec![(5, 1), (6, 1)])], []).unwrap();
/// assert!(q.contains_quorum(&BTreeSet::from([1, 2, 3, 4])));
/// assert!(!q.contains_quorum(&BTreeSet::from([1, 3, 5]))); // half of each group only
/// ```
#[derive(Debug, Clone)]
pub struct Hierarchical {
    group_of: BTreeMap<Sid, u64>,
    weights: BTreeMap<Sid, u64>,
    group_weight: BTreeMap<u64, u64>,
    voters: BTreeSet<Sid>,
    observers: BTreeSet<Sid>,
}

impl Hierarchical {
    /// Builds it from `(group id, [(sid, weight)])`; weight 0 makes a non-voter.
    pub fn new(
        groups: impl IntoIterator<Item = (u64, Vec<(Sid, u64)>)>,
        observers: impl IntoIterator<Item = Sid>,
    ) -> Result<Self, ElectionError> {
        let mut group_of = BTreeMap::new();
        let mut weights = BTreeMap::new();
        let mut group_weight: BTreeMap<u64, u64> = BTreeMap::new();
        for (gid, members) in groups {
            for (sid, w) in members {
                if group_of.insert(sid, gid).is_some() {
                    return Err(ElectionError::Config(format!("sid {sid} is in two groups")));
                }
                weights.insert(sid, w);
                let total = group_weight.entry(gid).or_insert(0);
                *total = total
                    .checked_add(w)
                    .ok_or_else(|| ElectionError::Config("group weight overflows".into()))?;
            }
        }
        let mut observers: BTreeSet<Sid> = observers.into_iter().collect();
        observers.extend(weights.iter().filter(|(_, w)| **w == 0).map(|(s, _)| *s));
        let voters: BTreeSet<Sid> = weights
            .iter()
            .filter(|(_, w)| **w > 0)
            .map(|(s, _)| *s)
            .collect();
        if voters.is_empty() {
            return Err(ElectionError::Config(
                "no voter with a positive weight".into(),
            ));
        }
        if let Some(both) = voters.intersection(&observers).next() {
            return Err(ElectionError::Config(format!(
                "sid {both} is both a voter and an observer"
            )));
        }
        Ok(Hierarchical {
            group_of,
            weights,
            group_weight,
            voters,
            observers,
        })
    }
}

impl QuorumVerifier for Hierarchical {
    fn voters(&self) -> &BTreeSet<Sid> {
        &self.voters
    }
    fn observers(&self) -> &BTreeSet<Sid> {
        &self.observers
    }
    fn weight(&self, sid: Sid) -> u64 {
        self.weights.get(&sid).copied().unwrap_or(0)
    }
    fn contains_quorum(&self, acks: &BTreeSet<Sid>) -> bool {
        let mut acked: BTreeMap<u64, u64> = BTreeMap::new();
        for sid in acks {
            if let Some(gid) = self.group_of.get(sid) {
                // No overflow: at most the group's total, which was checked.
                *acked.entry(*gid).or_insert(0) += self.weight(*sid);
            }
        }
        let groups = self.group_weight.values().filter(|w| **w > 0).count();
        let majorities = acked
            .iter()
            .filter(|(gid, w)| {
                self.group_weight
                    .get(gid)
                    .is_some_and(|total| **w > total / 2)
            })
            .count();
        majorities > groups / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_counts_only_voters() {
        let q = Majority::new([1, 2, 3, 4, 5], [6, 7]).unwrap();
        assert!(!q.contains_quorum(&BTreeSet::from([1, 2, 6, 7])));
        assert!(q.contains_quorum(&BTreeSet::from([1, 2, 5])));
        assert!(!q.contains_quorum(&BTreeSet::from([1, 2, 99])));
        assert_eq!(q.weight(6), 0);
        assert!(q.is_member(6) && !q.is_voter(6));
    }

    #[test]
    fn even_ensemble_needs_more_than_half() {
        let q = Majority::new([1, 2, 3, 4], []).unwrap();
        assert!(!q.contains_quorum(&BTreeSet::from([1, 2])));
        assert!(q.contains_quorum(&BTreeSet::from([1, 2, 3])));
    }

    #[test]
    fn bad_configs_are_refused() {
        assert!(Majority::new([], [1]).is_err());
        assert!(Majority::new([1, 2], [2]).is_err());
        assert!(Weighted::new([(1, 0)], []).is_err());
        assert!(Weighted::new([(1, u64::MAX), (2, 1)], []).is_err());
    }

    #[test]
    fn hierarchical_needs_a_majority_of_groups_with_a_majority_each() {
        let q = Hierarchical::new(
            [
                (1, vec![(1, 1), (2, 1), (3, 1)]),
                (2, vec![(4, 1), (5, 1), (6, 1)]),
                (3, vec![(7, 1), (8, 1), (9, 0)]),
            ],
            [],
        )
        .unwrap();
        assert!(q.contains_quorum(&BTreeSet::from([1, 2, 4, 5])));
        assert!(!q.contains_quorum(&BTreeSet::from([1, 2, 3, 4])));
        assert!(q.contains_quorum(&BTreeSet::from([7, 8, 5, 6])));
        assert!(
            !q.contains_quorum(&BTreeSet::from([7, 9, 5, 6])),
            "weight 0 does not count"
        );
        assert!(q.observers().contains(&9));
        assert!(Hierarchical::new([(1, vec![(1, 1)]), (2, vec![(1, 1)])], []).is_err());
    }

    #[test]
    fn weight_zero_is_an_observer() {
        let q = Weighted::new([(1, 1), (2, 1), (3, 0)], []).unwrap();
        assert!(!q.is_voter(3) && q.is_member(3));
        assert!(q.contains_quorum(&BTreeSet::from([1, 2])));
        assert!(!q.contains_quorum(&BTreeSet::from([1, 3])));
    }
}
