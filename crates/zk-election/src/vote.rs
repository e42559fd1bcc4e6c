//! Votes, peer states, notifications and decisions, plus their Protobuf conversions.

use std::cmp::Ordering;

use zk_proto::peer::election as pb;
use zk_proto::zxid::Zxid;

use crate::error::DecodeError;

/// A server id (`myid`).
pub type Sid = u64;

/// A proposed leader: its sid, its last logged zxid and its `currentEpoch`.
///
/// The order is ZooKeeper's `totalOrderPredicate`: higher `peer_epoch` wins, then higher
/// `zxid`, then higher `leader` sid.
///
/// ```
/// use zk_election::Vote;
/// let a = Vote { leader: 1, zxid: 10, peer_epoch: 2 };
/// let b = Vote { leader: 3, zxid: 5, peer_epoch: 2 };
/// assert!(a > b); // same epoch, larger zxid
/// assert!(Vote { leader: 1, zxid: 0, peer_epoch: 3 } > a); // larger epoch
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Vote {
    /// The proposed leader's sid.
    pub leader: Sid,
    /// The proposed leader's last logged zxid.
    pub zxid: Zxid,
    /// The proposed leader's `currentEpoch` (ZooKeeper's `peerEpoch`).
    pub peer_epoch: i64,
}

impl Vote {
    /// The initial self-vote of a voter: `(myid, lastLoggedZxid, currentEpoch)`.
    pub const fn initial(myid: Sid, last_logged_zxid: Zxid, current_epoch: i64) -> Self {
        Vote {
            leader: myid,
            zxid: last_logged_zxid,
            peer_epoch: current_epoch,
        }
    }

    /// The initial vote of a non-voter (observer): ZooKeeper proposes `Long.MIN_VALUE`
    /// for the zxid and epoch so that the vote loses against every voter's.
    pub const fn non_voter(myid: Sid) -> Self {
        Vote {
            leader: myid,
            zxid: i64::MIN,
            peer_epoch: i64::MIN,
        }
    }
}

impl Ord for Vote {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.peer_epoch, self.zxid, self.leader).cmp(&(other.peer_epoch, other.zxid, other.leader))
    }
}

impl PartialOrd for Vote {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A server's state, as carried in notifications (`QuorumPeer.ServerState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerState {
    /// Electing a leader.
    Looking,
    /// Following an elected leader.
    Following,
    /// Leading.
    Leading,
    /// A non-voting learner following the leader.
    Observing,
}

impl PeerState {
    /// True for `FOLLOWING`, `LEADING` and `OBSERVING`.
    pub const fn is_decided(self) -> bool {
        !matches!(self, PeerState::Looking)
    }
}

impl From<PeerState> for pb::PeerState {
    fn from(s: PeerState) -> Self {
        match s {
            PeerState::Looking => pb::PeerState::Looking,
            PeerState::Following => pb::PeerState::Following,
            PeerState::Leading => pb::PeerState::Leading,
            PeerState::Observing => pb::PeerState::Observing,
        }
    }
}

impl From<pb::PeerState> for PeerState {
    fn from(s: pb::PeerState) -> Self {
        match s {
            pb::PeerState::Looking => PeerState::Looking,
            pb::PeerState::Following => PeerState::Following,
            pb::PeerState::Leading => PeerState::Leading,
            pb::PeerState::Observing => PeerState::Observing,
        }
    }
}

impl std::fmt::Display for PeerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PeerState::Looking => "LOOKING",
            PeerState::Following => "FOLLOWING",
            PeerState::Leading => "LEADING",
            PeerState::Observing => "OBSERVING",
        })
    }
}

/// A FastLeaderElection notification: the sender's current vote, round and state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Notification {
    /// The sender's sid.
    pub sid: Sid,
    /// The sender's state.
    pub state: PeerState,
    /// The leader the sender proposes (or follows, when not LOOKING).
    pub vote: Vote,
    /// The sender's logical clock (election round) or, when not LOOKING, the round in
    /// which it decided.
    pub election_epoch: i64,
    /// The sender's quorum configuration version.
    pub config_version: i64,
}

impl From<&Notification> for pb::Notification {
    fn from(n: &Notification) -> Self {
        pb::Notification {
            leader: n.vote.leader,
            zxid: n.vote.zxid,
            election_epoch: n.election_epoch,
            peer_epoch: n.vote.peer_epoch,
            state: pb::PeerState::from(n.state) as i32,
            sid: n.sid,
            config_version: n.config_version,
        }
    }
}

impl TryFrom<&pb::Notification> for Notification {
    type Error = DecodeError;

    fn try_from(n: &pb::Notification) -> Result<Self, Self::Error> {
        let state = pb::PeerState::try_from(n.state)
            .map_err(|_| DecodeError::UnknownState(n.state))?
            .into();
        Ok(Notification {
            sid: n.sid,
            state,
            vote: Vote {
                leader: n.leader,
                zxid: n.zxid,
                peer_epoch: n.peer_epoch,
            },
            election_epoch: n.election_epoch,
            config_version: n.config_version,
        })
    }
}

/// The outcome of an election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The elected leader, its last logged zxid and its epoch.
    pub vote: Vote,
    /// The round (logical clock) the decision belongs to.
    pub election_epoch: i64,
    /// This node's new state: `LEADING`, `FOLLOWING` or `OBSERVING`.
    pub state: PeerState,
    /// The voters whose votes formed the deciding quorum.
    pub quorum: Vec<Sid>,
    /// True when the node decided on notifications from peers that already follow or
    /// lead (the leader confirmed it leads), rather than by a quorum of LOOKING votes
    /// for its own proposal.
    pub joined_established: bool,
}

impl Decision {
    /// The elected leader's sid.
    pub const fn leader(&self) -> Sid {
        self.vote.leader
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_epoch_then_zxid_then_sid() {
        let v = |leader, zxid, peer_epoch| Vote {
            leader,
            zxid,
            peer_epoch,
        };
        assert!(v(1, 0, 2) > v(9, 100, 1));
        assert!(v(1, 5, 1) > v(9, 4, 1));
        assert!(v(2, 5, 1) > v(1, 5, 1));
        assert_eq!(v(2, 5, 1).cmp(&v(2, 5, 1)), Ordering::Equal);
        assert!(Vote::non_voter(100) < v(0, -1, 0));
    }

    #[test]
    fn notification_round_trips_through_protobuf() {
        let n = Notification {
            sid: 3,
            state: PeerState::Following,
            vote: Vote {
                leader: 2,
                zxid: 0x1_0000_0007,
                peer_epoch: 1,
            },
            election_epoch: 4,
            config_version: 0,
        };
        let p = pb::Notification::from(&n);
        assert_eq!(Notification::try_from(&p), Ok(n));
    }

    #[test]
    fn unknown_state_is_an_error() {
        let p = pb::Notification {
            state: 17,
            ..Default::default()
        };
        assert_eq!(
            Notification::try_from(&p),
            Err(DecodeError::UnknownState(17))
        );
    }
}
