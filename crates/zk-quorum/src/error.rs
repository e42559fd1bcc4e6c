//! Errors: why a core gave up (it emits them in [`crate::Command::GoLooking`] and
//! [`crate::Command::Disconnect`]) and why a local call was refused.

use crate::types::{ServerId, Zxid};

/// A Protobuf packet that cannot become a [`crate::Packet`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The oneof was not set.
    #[error("quorum packet without a body")]
    Empty,
    /// A peer speaks a protocol older than Zab 1.0.
    #[error("unsupported protocol version {0:#x}")]
    ProtocolVersion(u32),
    /// A snapshot chunk larger than 1 MiB.
    #[error("snapshot chunk of {0} bytes is larger than 1 MiB")]
    ChunkTooLarge(usize),
}

/// Why a core stopped, dropped a learner or refused a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZabError {
    /// A packet that is not valid in the current phase.
    #[error("unexpected {packet} from {from} while {phase}")]
    UnexpectedPacket {
        /// Who sent it.
        from: ServerId,
        /// The packet type.
        packet: &'static str,
        /// What the core was doing.
        phase: &'static str,
    },
    /// The leader proposed an epoch lower than the one this learner accepted.
    #[error("leader's epoch {leader} is less than our accepted epoch {accepted}")]
    StaleEpoch {
        /// The leader's epoch.
        leader: i64,
        /// Ours.
        accepted: i64,
    },
    /// A zxid whose epoch is not the one being established.
    #[error("zxid {zxid:#x} is not of epoch {epoch}")]
    WrongEpoch {
        /// The zxid received.
        zxid: Zxid,
        /// The epoch expected.
        epoch: i64,
    },
    /// A learner already accepted an epoch newer than the one this leader leads, so
    /// it can never follow it; the leader steps down so that the next election picks an
    /// epoch above it (ZooKeeper keeps leading and that learner stays out).
    #[error("learner {sid} accepted epoch {accepted}, newer than ours ({epoch})")]
    NewerEpochSeen {
        /// The learner.
        sid: ServerId,
        /// Its acceptedEpoch.
        accepted: i64,
        /// The leader's epoch.
        epoch: i64,
    },
    /// A follower's (currentEpoch, lastZxid) is more recent than the leader's.
    #[error("follower {sid} is ahead of the leader: ({epoch}, {zxid:#x})")]
    FollowerAhead {
        /// The follower.
        sid: ServerId,
        /// Its currentEpoch.
        epoch: i64,
        /// Its last zxid.
        zxid: Zxid,
    },
    /// A proposal that does not follow the previous one.
    #[error("proposal {got:#x} does not follow {last:#x}")]
    NotContiguous {
        /// The last zxid logged.
        last: Zxid,
        /// The zxid received.
        got: Zxid,
    },
    /// A COMMIT that is not for the oldest uncommitted proposal.
    #[error("commit of {got:#x} but the next pending txn is {expected:?}")]
    CommitMismatch {
        /// The oldest uncommitted proposal, if any.
        expected: Option<Zxid>,
        /// The zxid committed.
        got: Zxid,
    },
    /// An ACK for a zxid the leader never proposed.
    #[error("ack of {zxid:#x} from {sid}, beyond the last proposal {last:#x}")]
    AckBeyondProposals {
        /// The learner.
        sid: ServerId,
        /// The acked zxid.
        zxid: Zxid,
        /// The last proposal.
        last: Zxid,
    },
    /// A TRUNC below what this node already applied.
    #[error("asked to truncate to {to:#x} below the applied {applied:#x}")]
    TruncateBelowApplied {
        /// The truncation point.
        to: Zxid,
        /// The last applied zxid.
        applied: Zxid,
    },
    /// A snapshot stream that is malformed or ended early.
    #[error("bad snapshot stream: {0}")]
    Snapshot(&'static str),
    /// More data during sync than the configured bound.
    #[error("sync exceeds {limit} bytes")]
    SyncTooLarge {
        /// The bound.
        limit: u64,
    },
    /// A peer that is not in the ensemble, or whose id does not match its connection.
    #[error("unknown or mismatched peer {0}")]
    UnknownPeer(ServerId),
    /// Discovery or synchronisation did not finish within `initLimit`, or the leader
    /// was silent for `syncLimit`.
    #[error("timed out after {ticks} ticks while {phase}")]
    Timeout {
        /// What the core was waiting for.
        phase: &'static str,
        /// The limit, in ticks.
        ticks: u32,
    },
    /// The leader no longer hears from a quorum of followers.
    #[error("not sufficient followers synced, only {synced:?}")]
    QuorumLost {
        /// The voters still synced (the leader included).
        synced: Vec<ServerId>,
    },
    /// The connection to the leader (or to a learner) broke.
    #[error("connection to {0} lost")]
    Disconnected(ServerId),
    /// The counter of the zxid would overflow; a new epoch is needed.
    #[error("zxid counter of epoch {0} exhausted")]
    ZxidRollover(i64),
    /// `propose` before the leader is established, or after it stopped.
    #[error("not an established leader")]
    NotLeading,
    /// `forward_request` before the learner is up to date, or after it stopped.
    #[error("not following an established leader")]
    NotFollowing,
    /// Too many proposals or pending answers in flight.
    #[error("too many in flight ({0})")]
    Busy(usize),
    /// A storage completion that does not match what was asked.
    #[error("persisted {got:#x} beyond the last logged {last:#x}")]
    BadCompletion {
        /// The zxid reported.
        got: Zxid,
        /// The last zxid handed out for persisting.
        last: Zxid,
    },
    /// A packet that failed to decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}
