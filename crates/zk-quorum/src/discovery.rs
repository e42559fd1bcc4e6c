//! Discovery: the leader collects FOLLOWERINFO from a quorum, proposes
//! `newEpoch = max(acceptedEpoch) + 1` in LEADERINFO and waits for a quorum of ACKEPOCH
//! (`Leader.getEpochToPropose` / `waitForEpochAck`); a learner accepts the epoch
//! (`Learner.registerWithLeader`).

use std::collections::{BTreeMap, BTreeSet};

use crate::error::ZabError;
use crate::types::{Ensemble, Packet, ServerId, Zxid};

/// The leader's side of discovery.
#[derive(Clone, Debug)]
pub(crate) struct EpochNegotiation {
    accepted: BTreeMap<ServerId, i64>,
    epoch: Option<i64>,
    acked: BTreeSet<ServerId>,
    acked_quorum: bool,
}

impl EpochNegotiation {
    /// Starts with the leader's own acceptedEpoch.
    pub(crate) fn new(leader: ServerId, accepted_epoch: i64) -> Self {
        Self {
            accepted: BTreeMap::from([(leader, accepted_epoch)]),
            epoch: None,
            acked: BTreeSet::from([leader]),
            acked_quorum: false,
        }
    }

    /// The epoch, once a quorum connected.
    #[cfg(test)]
    pub(crate) fn epoch(&self) -> Option<i64> {
        self.epoch
    }

    /// True once a quorum acknowledged the epoch.
    pub(crate) fn acked_quorum(&self) -> bool {
        self.acked_quorum
    }

    /// A participant's FOLLOWERINFO; returns the epoch when this one completes the quorum.
    pub(crate) fn learner_info(
        &mut self,
        sid: ServerId,
        accepted_epoch: i64,
        ensemble: &Ensemble,
    ) -> Option<i64> {
        if self.epoch.is_some() {
            return None;
        }
        self.accepted.insert(sid, accepted_epoch);
        if ensemble.is_quorum(self.accepted.keys()) {
            let max = self.accepted.values().copied().max().unwrap_or(0);
            let epoch = max + 1;
            self.epoch = Some(epoch);
            return Some(epoch);
        }
        None
    }

    /// A participant's ACKEPOCH. `Err` when the follower is more recent than the leader
    /// (the leader must not lead); `Ok(true)` when this ack completes the quorum.
    pub(crate) fn ack_epoch(
        &mut self,
        sid: ServerId,
        current_epoch: i64,
        last_zxid: Zxid,
        leader: (i64, Zxid),
        ensemble: &Ensemble,
    ) -> Result<bool, ZabError> {
        if self.acked_quorum || current_epoch == -1 {
            return Ok(false);
        }
        if (current_epoch, last_zxid) > leader {
            return Err(ZabError::FollowerAhead {
                sid,
                epoch: current_epoch,
                zxid: last_zxid,
            });
        }
        self.acked.insert(sid);
        if ensemble.is_quorum(self.acked.iter()) {
            self.acked_quorum = true;
            return Ok(true);
        }
        Ok(false)
    }
}

/// What a learner does with LEADERINFO: whether to persist the new acceptedEpoch, and
/// the ACKEPOCH to send.
pub(crate) fn answer_leader_info(
    accepted_epoch: i64,
    current_epoch: i64,
    last_zxid: Zxid,
    new_epoch: i64,
) -> Result<(bool, Packet), ZabError> {
    if new_epoch > accepted_epoch {
        Ok((
            true,
            Packet::AckEpoch {
                current_epoch,
                last_zxid,
            },
        ))
    } else if new_epoch == accepted_epoch {
        // Already acked this epoch (Zab 1.0 allows one ack per epoch): "-1, here is my zxid".
        Ok((
            false,
            Packet::AckEpoch {
                current_epoch: -1,
                last_zxid,
            },
        ))
    } else {
        Err(ZabError::StaleEpoch {
            leader: new_epoch,
            accepted: accepted_epoch,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_is_max_accepted_plus_one_once_a_quorum_connected() {
        let e = Ensemble::new([1, 2, 3, 4, 5], []);
        let mut n = EpochNegotiation::new(1, 4);
        assert_eq!(n.learner_info(2, 6, &e), None);
        assert_eq!(n.learner_info(3, 2, &e), Some(7));
        assert_eq!(
            n.learner_info(4, 9, &e),
            None,
            "late joiners get the chosen epoch"
        );
        assert_eq!(n.epoch(), Some(7));
    }

    #[test]
    fn observers_do_not_count_for_the_epoch() {
        let e = Ensemble::new([1, 2, 3], [9]);
        let mut n = EpochNegotiation::new(1, 0);
        assert_eq!(n.learner_info(9, 5, &e), None);
        assert_eq!(n.learner_info(2, 0, &e), Some(6));
    }

    #[test]
    fn a_follower_ahead_of_the_leader_is_refused() {
        let e = Ensemble::new([1, 2, 3], []);
        let mut n = EpochNegotiation::new(1, 1);
        n.learner_info(2, 1, &e);
        let r = n.ack_epoch(2, 1, 10, (1, 9), &e);
        assert_eq!(
            r,
            Err(ZabError::FollowerAhead {
                sid: 2,
                epoch: 1,
                zxid: 10
            })
        );
        assert_eq!(n.ack_epoch(3, 1, 9, (1, 9), &e), Ok(true));
    }

    #[test]
    fn minus_one_acks_do_not_count() {
        let e = Ensemble::new([1, 2, 3], []);
        let mut n = EpochNegotiation::new(1, 1);
        assert_eq!(n.ack_epoch(2, -1, 100, (1, 9), &e), Ok(false));
        assert!(!n.acked_quorum());
    }

    #[test]
    fn learner_accepts_newer_epochs_only() {
        assert_eq!(
            answer_leader_info(3, 2, 7, 4),
            Ok((
                true,
                Packet::AckEpoch {
                    current_epoch: 2,
                    last_zxid: 7
                }
            ))
        );
        assert_eq!(
            answer_leader_info(4, 2, 7, 4),
            Ok((
                false,
                Packet::AckEpoch {
                    current_epoch: -1,
                    last_zxid: 7
                }
            ))
        );
        assert_eq!(
            answer_leader_info(5, 2, 7, 4),
            Err(ZabError::StaleEpoch {
                leader: 4,
                accepted: 5
            })
        );
    }
}
