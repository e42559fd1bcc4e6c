//! Broadcast: the leader's proposals in flight and the commit rule (`Leader.processAck` /
//! `tryToCommit`), and a learner's uncommitted proposals.

use std::collections::{BTreeSet, VecDeque};

use crate::error::ZabError;
use crate::types::{Ensemble, ServerId, Txn, Zxid};

#[derive(Clone, Debug)]
struct InFlight {
    txn: Txn,
    acks: BTreeSet<ServerId>,
}

/// The leader's proposals not yet committed, in zxid order.
#[derive(Clone, Debug, Default)]
pub(crate) struct Outstanding {
    proposals: VecDeque<InFlight>,
}

impl Outstanding {
    pub(crate) fn len(&self) -> usize {
        self.proposals.len()
    }

    pub(crate) fn last_zxid(&self) -> Option<Zxid> {
        self.proposals.back().map(|p| p.txn.zxid)
    }

    pub(crate) fn push(&mut self, txn: Txn) {
        self.proposals.push_back(InFlight {
            txn,
            acks: BTreeSet::new(),
        });
    }

    /// Records that `sid` logged every proposal up to `up_to`.
    pub(crate) fn ack(&mut self, sid: ServerId, up_to: Zxid) {
        for p in self
            .proposals
            .iter_mut()
            .take_while(|p| p.txn.zxid <= up_to)
        {
            p.acks.insert(sid);
        }
    }

    /// Forgets every ack of `sid`: it reconnected and its sync may truncate what it acked
    /// (a TRUNC to the last committed zxid drops its uncommitted tail), so those acks no
    /// longer stand for durable copies. It acks again once it has re-logged them.
    pub(crate) fn forget(&mut self, sid: ServerId) {
        for p in self.proposals.iter_mut() {
            p.acks.remove(&sid);
        }
    }

    /// Removes and returns the proposals that can commit: strictly in order, each with a
    /// quorum of acks.
    pub(crate) fn take_committable(&mut self, ensemble: &Ensemble) -> Vec<Txn> {
        let mut out = Vec::new();
        while self
            .proposals
            .front()
            .is_some_and(|p| ensemble.is_quorum(p.acks.iter()))
        {
            if let Some(p) = self.proposals.pop_front() {
                out.push(p.txn);
            }
        }
        out
    }

    /// The proposals after `zxid` (ZooKeeper's `startForwarding`).
    pub(crate) fn after(&self, zxid: Zxid) -> impl Iterator<Item = &Txn> {
        self.proposals
            .iter()
            .map(|p| &p.txn)
            .filter(move |t| t.zxid > zxid)
    }

    pub(crate) fn validate(&self, committed: Zxid) -> Result<(), String> {
        let mut prev = committed;
        for p in &self.proposals {
            if p.txn.zxid <= prev {
                return Err(format!("outstanding {:#x} after {:#x}", p.txn.zxid, prev));
            }
            prev = p.txn.zxid;
        }
        Ok(())
    }
}

/// A learner's logged-but-uncommitted proposals; COMMITs must come for the oldest.
#[derive(Clone, Debug, Default)]
pub(crate) struct PendingCommits {
    zxids: VecDeque<Zxid>,
}

impl PendingCommits {
    pub(crate) fn push(&mut self, zxid: Zxid) {
        self.zxids.push_back(zxid);
    }

    pub(crate) fn len(&self) -> usize {
        self.zxids.len()
    }

    /// Removes the oldest, which must be `zxid`.
    pub(crate) fn commit(&mut self, zxid: Zxid) -> Result<(), ZabError> {
        match self.zxids.front() {
            Some(&z) if z == zxid => {
                self.zxids.pop_front();
                Ok(())
            }
            other => Err(ZabError::CommitMismatch {
                expected: other.copied(),
                got: zxid,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_in_order_once_each_has_a_quorum() {
        let e = Ensemble::new([1, 2, 3], []);
        let mut o = Outstanding::default();
        o.push(Txn::new(1, &b"a"[..]));
        o.push(Txn::new(2, &b"b"[..]));
        // zxid 2 has a quorum before zxid 1: nothing commits.
        o.ack(1, 2);
        o.proposals[1].acks.insert(3);
        assert!(o.take_committable(&e).is_empty());
        o.ack(2, 1);
        let c: Vec<_> = o.take_committable(&e).into_iter().map(|t| t.zxid).collect();
        assert_eq!(c, vec![1, 2]);
        assert_eq!(o.len(), 0);
    }

    #[test]
    fn observers_acks_do_not_count() {
        let e = Ensemble::new([1, 2, 3], [4]);
        let mut o = Outstanding::default();
        o.push(Txn::new(1, &b"a"[..]));
        o.ack(1, 1);
        o.ack(4, 1);
        assert!(o.take_committable(&e).is_empty());
    }

    #[test]
    fn commit_must_match_the_oldest_pending() {
        let mut p = PendingCommits::default();
        p.push(5);
        p.push(6);
        assert_eq!(
            p.commit(6),
            Err(ZabError::CommitMismatch {
                expected: Some(5),
                got: 6
            })
        );
        assert_eq!(p.commit(5), Ok(()));
        assert_eq!(p.commit(6), Ok(()));
        assert_eq!(
            p.commit(7),
            Err(ZabError::CommitMismatch {
                expected: None,
                got: 7
            })
        );
    }
}
