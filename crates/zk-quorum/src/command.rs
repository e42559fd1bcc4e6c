//! What goes into a core ([`Input`]) and what comes out ([`Command`]).
//!
//! A driver executes the commands of one step **in order**. `Persist` is the only
//! asynchronous one: the driver appends the txns at once (later reads see them) and
//! reports durability with [`Input::Persisted`]; every other storage command is durable
//! when the driver has executed it.

use bytes::Bytes;

use crate::error::ZabError;
use crate::sync::SyncMode;
use crate::types::{ForwardedRequest, Packet, ServerId, SessionTouch, Txn, Zxid};

/// An input to a core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A packet from a peer (for a learner, from its leader).
    Message {
        /// The sender.
        from: ServerId,
        /// The packet.
        packet: Packet,
    },
    /// The stream to a peer broke.
    Disconnected {
        /// The peer.
        peer: ServerId,
    },
    /// Half a `tickTime` passed.
    Tick,
    /// Every txn up to and including `zxid` that was handed out in `Persist` is durable.
    Persisted {
        /// The highest durable zxid.
        zxid: Zxid,
    },
    /// Leader only: the driver took a snapshot at `up_to` and removed the log before it.
    LogCompacted {
        /// The snapshot's zxid; the log now starts after it.
        up_to: Zxid,
        /// The snapshot's size, for the DIFF-versus-SNAP choice.
        snapshot_bytes: u64,
    },
}

/// A side effect for the driver, or an event to report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Send a packet on the stream to `to`.
    Send {
        /// The peer.
        to: ServerId,
        /// The packet.
        packet: Packet,
    },
    /// Append these txns to the log (in order) and make them durable; report with
    /// [`Input::Persisted`] (one flush may cover many `Persist` commands).
    Persist {
        /// The txns, in zxid order.
        txns: Vec<Txn>,
    },
    /// Durably store `acceptedEpoch`.
    SaveAcceptedEpoch {
        /// The epoch.
        epoch: i64,
    },
    /// Durably store `currentEpoch`.
    SaveCurrentEpoch {
        /// The epoch.
        epoch: i64,
    },
    /// Apply every logged txn up to and including `up_to` to the state machine, in order.
    Apply {
        /// The last zxid to apply.
        up_to: Zxid,
    },
    /// Durably drop every logged txn after `to`.
    Truncate {
        /// The zxid that becomes the last one logged.
        to: Zxid,
    },
    /// Buffer one verified chunk of the snapshot being received.
    SnapshotChunk {
        /// The snapshot's zxid.
        zxid: Zxid,
        /// Where the chunk starts.
        offset: u64,
        /// The bytes.
        data: Bytes,
    },
    /// At NEWLEADER after a SNAP, atomically and durably: restore the state machine from
    /// the buffered chunks (taken at `zxid`), store that snapshot, and replace the whole log
    /// with `txns` (the txns synced after it). Until then the old log and state stay intact,
    /// so a crash during the transfer loses nothing.
    InstallSnapshot {
        /// The snapshot's zxid.
        zxid: Zxid,
        /// The synced txns that follow the snapshot, in zxid order.
        txns: Vec<Txn>,
    },
    /// Throw away the buffered chunks.
    AbortSnapshot,
    /// Stream a snapshot of the state machine (which is at `zxid` when this command is
    /// executed) to `to` as `Packet::Snap` then `Packet::SnapChunk`s
    /// (see [`crate::sync::snapshot_packets`]).
    SendSnapshot {
        /// The learner.
        to: ServerId,
        /// The zxid the state machine is at.
        zxid: Zxid,
    },
    /// Read the logged txns in `(after, up_to]` and send each to `to` as a PROPOSAL
    /// followed by a COMMIT, before any later command's packets to `to`.
    SendLogRange {
        /// The learner.
        to: ServerId,
        /// Exclusive lower bound.
        after: Zxid,
        /// Inclusive upper bound.
        up_to: Zxid,
    },
    /// The leader chose how to synchronise a learner (for a metric and a log line).
    SyncChosen {
        /// The learner.
        learner: ServerId,
        /// DIFF, TRUNC or SNAP.
        mode: SyncMode,
        /// The learner's last zxid.
        peer_last_zxid: Zxid,
        /// The zxid the learner will be at after the sync packets (before in-flight
        /// proposals).
        synced_to: Zxid,
    },
    /// The leader is established (NEWLEADER acknowledged by a quorum), or the learner
    /// received UPTODATE: start serving clients in `epoch`.
    Serving {
        /// The epoch.
        epoch: i64,
    },
    /// Leader: a learner forwarded a client write.
    Request {
        /// The learner.
        from: ServerId,
        /// The request.
        request: ForwardedRequest,
    },
    /// Leader: sessions a learner reports alive.
    SessionTouches {
        /// The learner.
        from: ServerId,
        /// The sessions.
        touches: Vec<SessionTouch>,
    },
    /// Leader: a learner asks whether a session is valid; answer with
    /// `Leader::revalidate_reply`.
    Revalidate {
        /// The learner.
        from: ServerId,
        /// The session.
        session_id: i64,
        /// Its timeout.
        timeout_ms: i32,
    },
    /// Learner: the leader's answer to a REVALIDATE.
    RevalidateReply {
        /// The session.
        session_id: i64,
        /// Its timeout.
        timeout_ms: i32,
        /// Whether it is valid.
        valid: bool,
    },
    /// Learner: the leader's answer to a forwarded `sync`.
    SyncReply {
        /// The session.
        session_id: i64,
        /// The request id.
        cxid: i32,
        /// The leader's last committed zxid when it answered.
        zxid: Zxid,
    },
    /// Leader: close the stream to a learner (it will reconnect and re-sync).
    Disconnect {
        /// The learner.
        peer: ServerId,
        /// Why.
        reason: ZabError,
    },
    /// Stop this core and go back to leader election; the core ignores later inputs.
    GoLooking {
        /// Why.
        reason: ZabError,
    },
}
