//! The server's side of the driver: what a ZooKeeper server sends into a running
//! [`crate::driver::run_leader`] / [`crate::driver::run_learner_with`] and what it gets back.
//!
//! Leader:
//!
//! * [`LeaderClient`] (from [`LeaderClient::new`], with the [`LeaderInbox`] the driver
//!   reads): [`propose`](LeaderClient::propose) / [`submit`](LeaderClient::submit) txns,
//!   answer a forwarded `sync` ([`sync`](LeaderClient::sync)) and a REVALIDATE
//!   ([`revalidate_reply`](LeaderClient::revalidate_reply)). One FIFO queue carries them
//!   all, so a `sync` is registered after every txn submitted before it.
//! * [`LeaderEvent`]s, on the channel given with [`LeaderInbox::with_events`]: a learner
//!   forwarded a client request, reported live sessions or asks to revalidate a session.
//!
//! Learner:
//!
//! * [`LearnerClient`] (from [`LearnerClient::new`], with its [`LearnerInbox`]): forward a
//!   client request, revalidate a session, touch a session.
//! * [`LearnerEvent`]s, on the channel given with [`LearnerInbox::with_events`]: the
//!   leader's answers to a forwarded `sync` and to a REVALIDATE.
//!
//! Every queue is bounded: the inboxes by the capacity given to `new`, the events by the
//! capacity of the server's channel plus what the driver holds while that channel is
//! full. Past [`EVENT_BUFFER`] held events the driver stops reading the streams the
//! events come from (learner streams on the leader, the leader's stream on a learner), so
//! a slow server slows its peers down instead of growing a queue.
//!
//! One exception keeps a leader from deadlocking with a server that waits in
//! [`LeaderClient::submit`] before it takes the next event: while `max_outstanding`
//! proposals are in flight the leader keeps reading learner streams (their ACKs are what
//! commits the proposals and frees the server). Events beyond [`EVENT_HARD_LIMIT`] are then
//! refused by closing the stream of the learner that sent them: it re-syncs, and its
//! server sees the connection to the leader drop, as after any leader loss. A server that
//! bounds the client requests it forwards (ZooKeeper's `maxRequests`, 1000 per server)
//! stays far below it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use crate::error::ZabError;
use crate::types::{ForwardedRequest, ServerId, SessionTouch, Zxid};

/// Events the driver holds for the server while the server's channel is full; past it
/// the driver stops reading the streams that produce events (back-pressure).
pub const EVENT_BUFFER: usize = 1024;

/// Events a leader holds at most for its server: past it, the learner whose packet
/// produced the event is disconnected (see the module docs).
pub const EVENT_HARD_LIMIT: usize = 4 * EVENT_BUFFER;

/// What a leader driver reports to the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaderEvent {
    /// A learner forwarded a client request (a write, `sync` with op type 9,
    /// `createSession` / `closeSession`). The server preps it and [`LeaderClient::submit`]s
    /// the txn, or answers a `sync` with [`LeaderClient::sync`].
    Request {
        /// The learner that forwarded it.
        from: ServerId,
        /// The request.
        request: ForwardedRequest,
    },
    /// Sessions connected to a learner that are alive (from its PING answer).
    SessionTouches {
        /// The learner.
        from: ServerId,
        /// The sessions and their timeouts.
        touches: Vec<SessionTouch>,
    },
    /// A learner asks whether a reconnecting session is valid; answer with
    /// [`LeaderClient::revalidate_reply`].
    Revalidate {
        /// The learner.
        from: ServerId,
        /// The session.
        session_id: i64,
        /// Its timeout.
        timeout_ms: i32,
    },
}

/// What a learner driver reports to the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LearnerEvent {
    /// The leader's answer to a forwarded `sync`: every txn the leader had proposed when the
    /// `sync` reached it is committed (and, since the answer follows their COMMITs on the
    /// stream, applied here before this event).
    SyncReply {
        /// The session.
        session_id: i64,
        /// The request id.
        cxid: i32,
        /// The leader's last committed zxid when it answered.
        zxid: Zxid,
    },
    /// The leader's answer to [`LearnerClient::revalidate`].
    RevalidateReply {
        /// The session.
        session_id: i64,
        /// Its timeout.
        timeout_ms: i32,
        /// Whether the session is valid.
        valid: bool,
    },
}

#[derive(Debug)]
pub(crate) enum LeaderOp {
    Propose {
        data: Bytes,
        reply: oneshot::Sender<Result<Zxid, ZabError>>,
    },
    Sync {
        to: ServerId,
        session_id: i64,
        cxid: i32,
    },
    Revalidate {
        to: ServerId,
        session_id: i64,
        timeout_ms: i32,
        valid: bool,
    },
    PurgeLog {
        up_to: Zxid,
        snapshot_bytes: u64,
        reply: oneshot::Sender<Zxid>,
    },
}

/// One item of a [`LeaderClient`]'s queue (a txn to propose, a `sync` or REVALIDATE answer).
#[derive(Debug)]
pub struct ProposalRequest(pub(crate) LeaderOp);

/// A txn's commit: resolves to its zxid once committed and applied on the leader, or to
/// [`ZabError::NotLeading`] when the leader stopped first. `NotLeading` does not mean the
/// txn is lost: if it was proposed it may still commit under the next leader (like a
/// ZooKeeper client's connection loss, the outcome is unknown).
#[derive(Debug)]
pub struct PendingCommit {
    rx: oneshot::Receiver<Result<Zxid, ZabError>>,
}

impl Future for PendingCommit {
    type Output = Result<Zxid, ZabError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(ZabError::NotLeading)))
    }
}

/// What [`crate::driver::run_leader`] reads: the [`LeaderClient`]'s queue and, optionally,
/// where to send [`LeaderEvent`]s.
#[derive(Debug)]
pub struct LeaderInbox {
    pub(crate) rx: mpsc::Receiver<ProposalRequest>,
    pub(crate) events: Option<mpsc::Sender<LeaderEvent>>,
}

impl LeaderInbox {
    /// Sends the learners' requests, session touches and revalidations to `events`.
    /// Without it they are dropped (with a debug log line).
    pub fn with_events(mut self, events: mpsc::Sender<LeaderEvent>) -> Self {
        self.events = Some(events);
        self
    }
}

/// The server's handle on a running [`crate::driver::run_leader`]: one bounded FIFO
/// queue, read in order. The driver reads it only while the leader is established and
/// fewer than `Config::max_outstanding` proposals are in flight, so a full queue makes
/// the calls wait (back-pressure) instead of failing.
#[derive(Debug, Clone)]
pub struct LeaderClient {
    tx: mpsc::Sender<ProposalRequest>,
}

impl LeaderClient {
    /// A client and the inbox to pass to [`crate::driver::run_leader`] (`capacity` items
    /// queued, at least 1).
    pub fn new(capacity: usize) -> (Self, LeaderInbox) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { tx }, LeaderInbox { rx, events: None })
    }

    async fn send(&self, op: LeaderOp) -> Result<(), ZabError> {
        self.tx
            .send(ProposalRequest(op))
            .await
            .map_err(|_| ZabError::NotLeading)
    }

    /// Queues `data` for proposal without waiting for its commit (pipelining): waits only
    /// for queue space. Txns are proposed in the order they are submitted (across clones
    /// of this client, in the order the calls return). `Err(NotLeading)` when the leader
    /// is gone.
    pub async fn submit(&self, data: Bytes) -> Result<PendingCommit, ZabError> {
        let (reply, rx) = oneshot::channel();
        self.send(LeaderOp::Propose { data, reply }).await?;
        Ok(PendingCommit { rx })
    }

    /// Proposes `data` and waits until it is committed; returns its zxid.
    pub async fn propose(&self, data: Bytes) -> Result<Zxid, ZabError> {
        self.submit(data).await?.await
    }

    /// Answers learner `to`'s forwarded `sync` once every txn submitted before this call
    /// has committed (the learner gets [`LearnerEvent::SyncReply`]). Waits only for queue
    /// space.
    pub async fn sync(&self, to: ServerId, session_id: i64, cxid: i32) -> Result<(), ZabError> {
        self.send(LeaderOp::Sync {
            to,
            session_id,
            cxid,
        })
        .await
    }

    /// Answers learner `to`'s REVALIDATE (the learner gets
    /// [`LearnerEvent::RevalidateReply`]). Waits only for queue space.
    pub async fn revalidate_reply(
        &self,
        to: ServerId,
        session_id: i64,
        timeout_ms: i32,
        valid: bool,
    ) -> Result<(), ZabError> {
        self.send(LeaderOp::Revalidate {
            to,
            session_id,
            timeout_ms,
            valid,
        })
        .await
    }

    /// Drops the txns at or below `up_to` from the leader's log, once the server has a
    /// durable snapshot of the state machine at `up_to` (or later) of `snapshot_bytes`
    /// bytes: what ZooKeeper's `autopurge` does to old log files. Returns the zxid the log
    /// now starts after: `up_to`, or less when the leader has not committed and applied that
    /// far. The leader's history starts there too, so a learner behind it gets a SNAP, and
    /// `snapshot_bytes` becomes the size weighed against a DIFF from the log
    /// (`Config::snapshot_size_percent`). Queued behind earlier submissions, like every op.
    pub async fn purge_log(&self, up_to: Zxid, snapshot_bytes: u64) -> Result<Zxid, ZabError> {
        let (reply, rx) = oneshot::channel();
        self.send(LeaderOp::PurgeLog {
            up_to,
            snapshot_bytes,
            reply,
        })
        .await?;
        rx.await.map_err(|_| ZabError::NotLeading)
    }
}

#[derive(Debug)]
pub(crate) enum LearnerOp {
    Forward(ForwardedRequest),
    Revalidate {
        session_id: i64,
        timeout_ms: i32,
    },
    Touch(SessionTouch),
    PurgeLog {
        up_to: Zxid,
        reply: oneshot::Sender<Zxid>,
    },
}

/// One item of a [`LearnerClient`]'s queue.
#[derive(Debug)]
pub struct LearnerRequest(pub(crate) LearnerOp);

/// What [`crate::driver::run_learner_with`] reads: the [`LearnerClient`]'s queue and,
/// optionally, where to send [`LearnerEvent`]s.
#[derive(Debug)]
pub struct LearnerInbox {
    pub(crate) rx: mpsc::Receiver<LearnerRequest>,
    pub(crate) capacity: usize,
    pub(crate) events: Option<mpsc::Sender<LearnerEvent>>,
}

impl LearnerInbox {
    /// An inbox no server writes to, for a learner that only replicates.
    pub fn detached() -> Self {
        LearnerClient::new(1).1
    }

    /// Sends the leader's `sync` and REVALIDATE answers to `events`. Without it they are
    /// dropped (with a debug log line).
    pub fn with_events(mut self, events: mpsc::Sender<LearnerEvent>) -> Self {
        self.events = Some(events);
        self
    }
}

/// The server's handle on a running [`crate::driver::run_learner_with`]: one bounded FIFO
/// queue. Forwards and revalidations that arrive before the learner is up to date are
/// held (at most `capacity` of them, then the calls wait) and sent, in order, once it
/// is; when the learner stops first they are dropped with the inbox, and the server
/// learns it from `run_learner_with` returning (and from these calls failing with
/// [`ZabError::NotFollowing`]).
#[derive(Debug, Clone)]
pub struct LearnerClient {
    tx: mpsc::Sender<LearnerRequest>,
}

impl LearnerClient {
    /// A client and the inbox to pass to [`crate::driver::run_learner_with`] (`capacity` items
    /// queued and `capacity` held until the learner is synced, at least 1 each).
    pub fn new(capacity: usize) -> (Self, LearnerInbox) {
        let capacity = capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        (
            Self { tx },
            LearnerInbox {
                rx,
                capacity,
                events: None,
            },
        )
    }

    async fn send(&self, op: LearnerOp) -> Result<(), ZabError> {
        self.tx
            .send(LearnerRequest(op))
            .await
            .map_err(|_| ZabError::NotFollowing)
    }

    /// Forwards a client request to the leader (REQUEST). Waits only for queue space; the
    /// outcome shows as the txn being applied (or, for a `sync`, a
    /// [`LearnerEvent::SyncReply`]).
    pub async fn forward(&self, request: ForwardedRequest) -> Result<(), ZabError> {
        self.send(LearnerOp::Forward(request)).await
    }

    /// Asks the leader whether a reconnecting session is valid; the answer comes as
    /// [`LearnerEvent::RevalidateReply`].
    pub async fn revalidate(&self, session_id: i64, timeout_ms: i32) -> Result<(), ZabError> {
        self.send(LearnerOp::Revalidate {
            session_id,
            timeout_ms,
        })
        .await
    }

    /// Records a session as alive; the learner reports it in its next PING answer. Never
    /// waits: `Err(Busy)` when the queue is full (the next touch will do), and the learner
    /// keeps at most `Config::max_pending_touches` distinct sessions between two PINGs.
    pub fn touch(&self, session_id: i64, timeout_ms: i32) -> Result<(), ZabError> {
        let touch = SessionTouch {
            session_id,
            timeout_ms,
        };
        self.tx
            .try_send(LearnerRequest(LearnerOp::Touch(touch)))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => ZabError::Busy(self.tx.max_capacity()),
                mpsc::error::TrySendError::Closed(_) => ZabError::NotFollowing,
            })
    }

    /// Drops the txns at or below `up_to` from this learner's log, once the server has a
    /// durable snapshot of the state machine at `up_to` (or later). Returns the zxid the
    /// log now starts after: `up_to`, or less when this learner does not know that far to
    /// be committed and applied. Done as soon as the driver reads it (also while syncing).
    pub async fn purge_log(&self, up_to: Zxid) -> Result<Zxid, ZabError> {
        let (reply, rx) = oneshot::channel();
        self.send(LearnerOp::PurgeLog { up_to, reply }).await?;
        rx.await.map_err(|_| ZabError::NotFollowing)
    }
}

/// Events on their way to the server: sent at once while the server's channel has room,
/// else held in order until it has (see the module docs for the bounds).
#[derive(Debug)]
pub(crate) struct Outbox<E> {
    tx: Option<mpsc::Sender<E>>,
    held: std::collections::VecDeque<E>,
}

impl<E: std::fmt::Debug> Outbox<E> {
    pub(crate) fn new(tx: Option<mpsc::Sender<E>>) -> Self {
        Self {
            tx,
            held: std::collections::VecDeque::new(),
        }
    }

    pub(crate) fn push(&mut self, event: E) {
        let Some(tx) = &self.tx else {
            debug!(?event, "event dropped: no server attached");
            return;
        };
        if !self.held.is_empty() {
            self.held.push_back(event);
            return;
        }
        match tx.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(event)) => self.held.push_back(event),
            Err(mpsc::error::TrySendError::Closed(event)) => {
                debug!(?event, "event dropped: the server closed its channel");
                self.tx = None;
            }
        }
    }

    /// Like [`Outbox::push`], but gives the event back when [`EVENT_HARD_LIMIT`] events
    /// are already held.
    pub(crate) fn push_bounded(&mut self, event: E) -> Result<(), E> {
        if self.held.len() >= EVENT_HARD_LIMIT {
            return Err(event);
        }
        self.push(event);
        Ok(())
    }

    /// True when the driver must stop reading what produces events.
    pub(crate) fn is_full(&self) -> bool {
        self.held.len() >= EVENT_BUFFER
    }

    pub(crate) fn has_held(&self) -> bool {
        !self.held.is_empty() && self.tx.is_some()
    }

    /// Waits for room in the server's channel, then sends the held events that fit.
    pub(crate) async fn flush(&mut self) {
        let Some(tx) = self.tx.clone() else {
            return;
        };
        match tx.reserve().await {
            Ok(permit) => {
                if let Some(event) = self.held.pop_front() {
                    permit.send(event);
                }
                while let Some(event) = self.held.pop_front() {
                    match tx.try_send(event) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(event)) => {
                            self.held.push_front(event);
                            break;
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => break,
                    }
                }
            }
            Err(_) => {
                debug!(
                    dropped = self.held.len(),
                    "events dropped: the server closed its channel"
                );
                self.held.clear();
                self.tx = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn outbox_keeps_order_when_the_server_is_full() {
        let (tx, mut rx) = mpsc::channel(2);
        let mut outbox = Outbox::new(Some(tx));
        for i in 0..5 {
            outbox.push(i);
        }
        assert!(outbox.has_held() && !outbox.is_full());
        assert_eq!((rx.recv().await, rx.recv().await), (Some(0), Some(1)));
        outbox.flush().await;
        assert_eq!((rx.recv().await, rx.recv().await), (Some(2), Some(3)));
        // A new event waits behind the held one.
        outbox.push(5);
        outbox.flush().await;
        assert_eq!((rx.recv().await, rx.recv().await), (Some(4), Some(5)));
        assert!(!outbox.has_held());
    }

    #[tokio::test]
    async fn outbox_is_full_at_its_bound_and_forgets_a_closed_server() {
        let (tx, rx) = mpsc::channel(1);
        let mut outbox = Outbox::new(Some(tx));
        for i in 0..=EVENT_BUFFER {
            outbox.push(i);
        }
        assert!(outbox.is_full());
        drop(rx);
        outbox.flush().await;
        assert!(!outbox.is_full() && !outbox.has_held());
        outbox.push(0);
        assert!(!outbox.has_held());
        let mut detached: Outbox<u8> = Outbox::new(None);
        detached.push(1);
        assert!(!detached.has_held());
    }

    #[tokio::test]
    async fn clients_fail_once_the_driver_is_gone() {
        let (leader, inbox) = LeaderClient::new(1);
        let commit = leader.submit(Bytes::from_static(b"x")).await;
        let Ok(commit) = commit else {
            panic!("submit refused: {commit:?}");
        };
        drop(inbox);
        assert_eq!(commit.await, Err(ZabError::NotLeading));
        assert_eq!(
            leader.propose(Bytes::from_static(b"y")).await,
            Err(ZabError::NotLeading)
        );
        assert_eq!(leader.sync(2, 1, 1).await, Err(ZabError::NotLeading));

        let (learner, inbox) = LearnerClient::new(1);
        assert_eq!(learner.touch(1, 1000), Ok(()));
        assert_eq!(learner.touch(2, 1000), Err(ZabError::Busy(1)));
        drop(inbox);
        assert_eq!(learner.touch(1, 1000), Err(ZabError::NotFollowing));
        assert_eq!(
            learner.revalidate(1, 1000).await,
            Err(ZabError::NotFollowing)
        );
    }

    #[tokio::test]
    async fn the_leader_queue_is_fifo_across_kinds() {
        let (leader, mut inbox) = LeaderClient::new(4);
        let _commit = leader.submit(Bytes::from_static(b"a")).await;
        leader.sync(2, 7, 1).await.ok();
        leader.revalidate_reply(3, 8, 100, true).await.ok();
        let kinds: Vec<&str> = std::iter::from_fn(|| inbox.rx.try_recv().ok())
            .map(|op| match op.0 {
                LeaderOp::Propose { .. } => "propose",
                LeaderOp::Sync { .. } => "sync",
                LeaderOp::Revalidate { .. } => "revalidate",
                LeaderOp::PurgeLog { .. } => "purge",
            })
            .collect();
        assert_eq!(kinds, ["propose", "sync", "revalidate"]);
    }
}
