//! A tokio driver for the cores: storage behind `zk-storage`'s [`TxnLog`] and
//! [`EpochStore`], state behind [`StateMachine`], peers over the gRPC transport.
//!
//! One role at a time: [`run_leader`] or [`run_learner`] runs until the core goes back to
//! LOOKING (returning why) and the caller runs the next election. Commands are executed in
//! order; appends are buffered and made durable with one `sync` per loop turn (group
//! commit) before [`Input::Persisted`] lets the core ACK or commit.
//!
//! A ZooKeeper server talks to a running driver through the types of [`crate::hooks`]
//! (re-exported here): [`LeaderClient`] + [`LeaderEvent`] on the leader,
//! [`LearnerClient`] + [`LearnerEvent`] on a learner.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use tonic::transport::{Endpoint, Server};
use tracing::{Instrument, debug, info, info_span, warn};
use zk_proto::peer::quorum as pb;
use zk_proto::peer::quorum::quorum_client::QuorumClient;
use zk_proto::peer::quorum::quorum_server::QuorumServer;
use zk_storage::log::{EpochError, EpochStore, LogError, TxnLog};

use crate::command::{Command, Input};
use crate::error::ZabError;
pub use crate::hooks::{
    EVENT_BUFFER, EVENT_HARD_LIMIT, LeaderClient, LeaderEvent, LeaderInbox, LearnerClient,
    LearnerEvent, LearnerInbox, LearnerRequest, PendingCommit, ProposalRequest,
};
use crate::hooks::{LeaderOp, LearnerOp, Outbox};
use crate::leader::{Leader, LeaderPhase, LeaderStorage};
use crate::learner::{LearnerPhase, LearnerStorage};
use crate::state_machine::{Rollback, StateMachine};
use crate::sync::{History, SyncMode, snapshot_packets};
use crate::transport::{
    DialService, Dialer, LearnService, MAX_MESSAGE_BYTES, Outbound, StreamEvent,
};
use crate::types::{
    Config, Ensemble, ForwardedRequest, MAX_SNAPSHOT_CHUNK_BYTES, Packet, ServerId, SessionTouch,
    Txn, Zxid,
};
use crate::{Follower, Observer};

/// Capacity of the queue from the learner streams to the leader task.
const EVENT_QUEUE: usize = 1024;
/// Most inputs handled per loop turn before the group-commit `sync`.
const MAX_BATCH: usize = 256;

/// Why a driver stopped other than the core going back to LOOKING.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The txn log failed (the node must stop).
    #[error(transparent)]
    Log(#[from] LogError),
    /// The epoch store failed (the node must stop).
    #[error(transparent)]
    Epoch(#[from] EpochError),
    /// The state machine failed (the node must stop).
    #[error("state machine: {0}")]
    StateMachine(String),
    /// Storage does not hold what the core asked for.
    #[error("storage: {0}")]
    Storage(String),
    /// The leader truncated txns this node had applied and the state machine cannot roll
    /// back ([`StateMachine::rollback`]).
    #[error("the state machine cannot roll back from {applied:#x} to {to:#x}")]
    Rollback {
        /// The truncation point.
        to: Zxid,
        /// What the state machine had applied.
        applied: Zxid,
    },
    /// The gRPC transport failed to connect or serve.
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
    /// The leader refused the stream.
    #[error(transparent)]
    Status(#[from] tonic::Status),
}

/// Driver settings.
#[derive(Debug, Clone)]
pub struct DriverOptions {
    /// ZooKeeper's `tickTime`; the cores get a tick every half of it.
    pub tick_time: Duration,
    /// Packets queued per learner on the leader; past it the learner is dropped and
    /// re-syncs (a snapshot or log range counts as one).
    pub learner_queue: usize,
    /// Bound on connecting to the leader.
    pub connect_timeout: Duration,
    /// Txns a leader reads from its log at a time when it sends a learner a range of it
    /// (a DIFF beyond the in-memory txns): one piece per loop turn, so a long range does
    /// not stop the leader's loop (default 8192).
    pub log_range_piece: usize,
}

impl Default for DriverOptions {
    fn default() -> Self {
        Self {
            tick_time: Duration::from_millis(2000),
            learner_queue: 1024,
            connect_timeout: Duration::from_secs(5),
            log_range_piece: 8192,
        }
    }
}

/// What a node is doing, published on a `watch` channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeStatus {
    /// The epoch being served (0 until serving).
    pub epoch: i64,
    /// True once the leader is established / the learner is up to date.
    pub serving: bool,
    /// The last zxid applied to the state machine.
    pub applied: Zxid,
    /// Leader: learners synchronised by DIFF so far.
    pub syncs_diff: u64,
    /// Leader: learners synchronised by TRUNC so far.
    pub syncs_trunc: u64,
    /// Leader: learners synchronised by SNAP so far.
    pub syncs_snap: u64,
    /// Leader: learners connected (ZooKeeper's `zk_learners`).
    pub learners: usize,
    /// Leader: voting followers synced and serving (`zk_synced_followers`).
    pub synced_followers: usize,
    /// Leader: observers synced and serving (`zk_synced_observers`).
    pub synced_observers: usize,
    /// Leader: forwarded `sync`s waiting for earlier proposals to commit
    /// (`zk_pending_syncs`).
    pub pending_syncs: usize,
    /// Learner: how the leader synchronised this node in the current run (DIFF, TRUNC or
    /// SNAP), set when the learner accepts the leader's DIFF / TRUNC / SNAP packet; `None`
    /// before that and on a leader. Also logged as `synchronised by the leader`.
    pub sync_mode: Option<SyncMode>,
}

/// Why a driver returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// The core went back to LOOKING: run an election.
    Looking(ZabError),
    /// The shutdown future completed.
    Shutdown,
}

/// A node's storage: txn log, epochs, state machine and where the log starts.
#[derive(Debug)]
pub struct NodeStorage<L, E, M> {
    /// The txn log (payloads are the opaque txn bytes).
    pub log: L,
    /// acceptedEpoch / currentEpoch.
    pub epochs: E,
    /// The replicated state.
    pub machine: M,
    /// The zxid the log starts after (the snapshot the state machine came from).
    pub log_base: Zxid,
    /// The highest zxid known committed: `log_base` at first, then whatever the cores had
    /// applied or installed. The state machine may be ahead of it (a replayed log).
    committed: Zxid,
    snapshot_bytes: u64,
    incoming: Vec<Bytes>,
    appended: bool,
    recent: RecentTxns,
}

/// Most bytes (payloads plus [`RECENT_ENTRY_OVERHEAD`] each) of appended txns kept in
/// memory until they are applied.
const RECENT_MAX_BYTES: usize = 256 * 1024 * 1024;
/// What one kept txn costs besides its payload, for [`RECENT_MAX_BYTES`].
const RECENT_ENTRY_OVERHEAD: usize = 64;

/// The tail of the log not applied yet, kept in memory so that applying a commit does not
/// read the log back (a log read per COMMIT cost more than the append). When `covers` is
/// `Some(after)`, `txns` is exactly the log's records after `after`; past
/// [`RECENT_MAX_BYTES`], or after a truncation below it, it is dropped (`None`) and the
/// driver reads the log, until everything logged has been applied.
#[derive(Debug, Default)]
struct RecentTxns {
    covers: Option<Zxid>,
    txns: VecDeque<Txn>,
    bytes: usize,
}

impl RecentTxns {
    fn clear(&mut self) {
        self.covers = None;
        self.txns.clear();
        self.bytes = 0;
    }

    /// Starts over: the log ends at `last` and holds `txns` after it.
    fn reset(&mut self, last: Zxid) {
        self.clear();
        self.covers = Some(last);
    }

    /// `txns` were appended to a log that ended at `last_before`.
    fn appended(&mut self, last_before: Zxid, txns: &[Txn]) {
        if self.covers.is_none() && self.txns.is_empty() {
            self.covers = Some(last_before);
        }
        let tail = self.txns.back().map(|t| t.zxid).or(self.covers);
        if self.covers.is_none() || tail != Some(last_before) {
            self.clear();
            return;
        }
        for t in txns {
            self.bytes += t.data.len() + RECENT_ENTRY_OVERHEAD;
            self.txns.push_back(t.clone());
        }
        if self.bytes > RECENT_MAX_BYTES {
            self.clear();
        }
    }

    /// The log was truncated after `to`.
    fn truncated(&mut self, to: Zxid) {
        while self.txns.back().is_some_and(|t| t.zxid > to) {
            if let Some(t) = self.txns.pop_back() {
                self.bytes -= t.data.len() + RECENT_ENTRY_OVERHEAD;
            }
        }
        if self.covers.is_some_and(|after| after > to) {
            self.clear();
        }
    }

    /// Forgets the txns up to `zxid` (applied).
    fn forget_up_to(&mut self, zxid: Zxid) {
        while let Some(t) = self.txns.front() {
            if t.zxid > zxid {
                break;
            }
            self.covers = Some(t.zxid);
            if let Some(t) = self.txns.pop_front() {
                self.bytes -= t.data.len() + RECENT_ENTRY_OVERHEAD;
            }
        }
    }

    /// The txns in `(after, up_to]` when they are all here, in order.
    fn take(&mut self, after: Zxid, up_to: Zxid) -> Option<Vec<Txn>> {
        self.forget_up_to(after);
        if self.covers != Some(after) || self.txns.back().is_none_or(|t| t.zxid < up_to) {
            return None;
        }
        let n = self.txns.partition_point(|t| t.zxid <= up_to);
        let out: Vec<Txn> = self.txns.drain(..n).collect();
        for t in &out {
            self.bytes -= t.data.len() + RECENT_ENTRY_OVERHEAD;
        }
        self.covers = out.last().map(|t| t.zxid).or(self.covers);
        Some(out)
    }
}

impl<L: TxnLog, E: EpochStore, M: StateMachine> NodeStorage<L, E, M> {
    /// Storage whose log starts after `log_base`, a zxid known committed (the snapshot the
    /// state machine was restored from). The state machine may have replayed log txns
    /// after it, committed or not: see [`StateMachine`]'s restart contract.
    pub fn new(log: L, epochs: E, machine: M, log_base: Zxid) -> Self {
        Self {
            log,
            epochs,
            machine,
            log_base,
            committed: log_base,
            snapshot_bytes: 0,
            incoming: Vec::new(),
            appended: false,
            recent: RecentTxns::default(),
        }
    }

    /// Drops the log's txns at or below `up_to`, which a durable snapshot of the state
    /// machine (of `snapshot_bytes` bytes) covers, but never beyond what is known
    /// committed and applied here; returns the zxid the log now starts after (the new
    /// `log_base`). For a stopped node; a running one does this through
    /// [`LeaderClient::purge_log`] / [`LearnerClient::purge_log`], which also tell the
    /// leader's core (a learner behind the purged point then gets a SNAP).
    pub fn purge_log(&mut self, up_to: Zxid, snapshot_bytes: u64) -> Result<Zxid, DriverError> {
        let point = up_to.min(self.committed).min(self.machine.applied_zxid());
        self.snapshot_bytes = snapshot_bytes;
        if point <= self.log_base {
            return Ok(self.log_base);
        }
        let log = &mut self.log;
        let removed = blocking(|| log.purge_before(point.saturating_add(1)))?;
        self.log_base = point;
        self.recent.forget_up_to(point);
        info!(
            up_to = format_args!("{point:#x}"),
            removed, "log purged up to a snapshot"
        );
        Ok(point)
    }

    /// Sets the size in bytes of the durable snapshot the state machine came from. A
    /// leader weighs it against the txns a learner misses to choose between a DIFF from
    /// its on-disk log and a SNAP (`Config::snapshot_size_percent`); while it is 0 (the
    /// default) a learner behind the in-memory window always gets a SNAP.
    pub fn with_snapshot_bytes(mut self, bytes: u64) -> Self {
        self.snapshot_bytes = bytes;
        self
    }

    fn last_logged(&self) -> Result<Zxid, DriverError> {
        Ok(self
            .log
            .last_zxid()?
            .unwrap_or(self.log_base)
            .max(self.log_base))
    }

    /// The highest zxid known committed on this node (see [`NodeStorage::new`]).
    pub fn committed_zxid(&self) -> Zxid {
        self.committed
    }

    /// The learner's starting state. Its `applied_zxid` is what the state machine applied
    /// *and* is known committed, so that the leader may truncate (and the driver roll
    /// back) txns replayed from the log at restart.
    pub fn learner_storage(&self) -> Result<LearnerStorage, DriverError> {
        Ok(LearnerStorage {
            accepted_epoch: self.epochs.accepted_epoch().unwrap_or(0),
            current_epoch: self.epochs.current_epoch().unwrap_or(0),
            last_logged_zxid: self.last_logged()?,
            applied_zxid: self.machine.applied_zxid().min(self.committed),
        })
    }

    /// The leader's starting state (reads the whole log to index it).
    pub fn leader_storage(&self, config: &Config) -> Result<LeaderStorage, DriverError> {
        let mut history = History::new(
            self.log_base,
            config.committed_log_count,
            config.max_history_entries,
        );
        for r in self.log.read_from(self.log_base.saturating_add(1))? {
            let r = r?;
            history.push(&Txn::new(r.zxid, r.payload));
        }
        Ok(LeaderStorage {
            accepted_epoch: self.epochs.accepted_epoch().unwrap_or(0),
            current_epoch: self.epochs.current_epoch().unwrap_or(0),
            applied_zxid: self.machine.applied_zxid(),
            history,
            snapshot_bytes: self.snapshot_bytes,
        })
    }

    /// The txns in `(after, up_to]`, at most `max` of them (fewer only at `up_to`).
    fn read_piece(&self, after: Zxid, up_to: Zxid, max: usize) -> Result<Vec<Txn>, DriverError> {
        let mut out = Vec::new();
        for r in self.log.read_from(after.saturating_add(1))? {
            let r = r?;
            if r.zxid > up_to {
                break;
            }
            out.push(Txn::new(r.zxid, r.payload));
            if out.len() >= max.max(1) {
                return Ok(out);
            }
        }
        if out.last().map(|t| t.zxid) != Some(up_to) {
            return Err(DriverError::Storage(format!(
                "log range ({after:#x}, {up_to:#x}] is not in the log"
            )));
        }
        Ok(out)
    }

    fn read_range(&self, after: Zxid, up_to: Zxid) -> Result<Vec<Txn>, DriverError> {
        let mut out = Vec::new();
        for r in self.log.read_from(after.saturating_add(1))? {
            let r = r?;
            if r.zxid > up_to {
                break;
            }
            out.push(Txn::new(r.zxid, r.payload));
        }
        if out.last().map(|t| t.zxid) != Some(up_to) {
            return Err(DriverError::Storage(format!(
                "log range ({after:#x}, {up_to:#x}] is not in the log"
            )));
        }
        Ok(out)
    }

    fn apply_up_to(&mut self, up_to: Zxid) -> Result<(), DriverError> {
        self.committed = self.committed.max(up_to);
        let from = self.machine.applied_zxid();
        if up_to <= from {
            return Ok(());
        }
        let txns = match self.recent.take(from, up_to) {
            Some(txns) => txns,
            None => {
                let txns = blocking(|| self.read_range(from, up_to))?;
                self.recent.forget_up_to(up_to);
                txns
            }
        };
        let machine = &mut self.machine;
        let mut apply = || {
            for t in &txns {
                machine
                    .apply(t)
                    .map_err(|e| DriverError::StateMachine(e.to_string()))?;
            }
            Ok(())
        };
        if txns.len() > LARGE_BATCH {
            blocking(apply)
        } else {
            apply()
        }
    }

    fn sync(&mut self) -> Result<Option<Zxid>, DriverError> {
        if !self.appended {
            return Ok(None);
        }
        self.appended = false;
        let log = &mut self.log;
        Ok(blocking(|| log.sync())?)
    }

    /// Executes a storage command; returns the command back when it is not one.
    fn execute(&mut self, cmd: Command) -> Result<Option<Command>, DriverError> {
        match cmd {
            Command::Persist { txns } => {
                let last_before = self.last_logged()?;
                if txns.len() > LARGE_BATCH {
                    blocking(|| self.append(&txns))?;
                } else {
                    self.append(&txns)?;
                }
                self.appended = true;
                self.recent.appended(last_before, &txns);
            }
            Command::SaveAcceptedEpoch { epoch } => self.epochs.set_accepted_epoch(epoch)?,
            Command::SaveCurrentEpoch { epoch } => self.epochs.set_current_epoch(epoch)?,
            Command::Apply { up_to } => self.apply_up_to(up_to)?,
            Command::Truncate { to } => {
                self.log.truncate_after(to)?;
                self.recent.truncated(to);
                self.log_base = self.log_base.min(to);
                self.committed = self.committed.min(to);
                let applied = self.machine.applied_zxid();
                if applied > to {
                    self.roll_back(to, applied)?;
                }
            }
            Command::SnapshotChunk { data, .. } => self.incoming.push(data),
            Command::AbortSnapshot => self.incoming.clear(),
            Command::InstallSnapshot { zxid, txns } => {
                blocking(|| self.install_snapshot(zxid, txns))?;
            }
            other => return Ok(Some(other)),
        }
        Ok(None)
    }

    /// Appends `txns` to the log in pieces of at most [`APPEND_CHUNK`].
    fn append(&mut self, txns: &[Txn]) -> Result<(), DriverError> {
        for chunk in txns.chunks(APPEND_CHUNK) {
            let records: Vec<(Zxid, &[u8])> =
                chunk.iter().map(|t| (t.zxid, t.data.as_ref())).collect();
            self.log.append_batch(&records)?;
        }
        Ok(())
    }

    /// Installs the staged snapshot at `zxid` and replaces the log with `txns` (what
    /// follows it), durably.
    fn install_snapshot(&mut self, zxid: Zxid, txns: Vec<Txn>) -> Result<(), DriverError> {
        let chunks = std::mem::take(&mut self.incoming);
        self.snapshot_bytes = chunks.iter().map(|c| c.len() as u64).sum();
        self.machine
            .restore(zxid, &chunks)
            .map_err(|e| DriverError::StateMachine(e.to_string()))?;
        self.log.truncate_after(0)?;
        self.log_base = zxid;
        self.committed = zxid;
        self.append(&txns)?;
        self.log.sync()?;
        self.recent.reset(zxid);
        self.recent.appended(zxid, &txns);
        Ok(())
    }

    fn roll_back(&mut self, to: Zxid, applied: Zxid) -> Result<(), DriverError> {
        info!(
            to = format_args!("{to:#x}"),
            applied = format_args!("{applied:#x}"),
            "rolling the state machine back to the truncated log"
        );
        let done = self
            .machine
            .rollback(to, &self.log)
            .map_err(|e| DriverError::StateMachine(e.to_string()))?;
        if done == Rollback::Unsupported {
            return Err(DriverError::Rollback { to, applied });
        }
        let now = self.machine.applied_zxid();
        if now != to {
            return Err(DriverError::StateMachine(format!(
                "rolled back to {now:#x} instead of {to:#x}"
            )));
        }
        Ok(())
    }

    fn snapshot(&self, zxid: Zxid) -> Result<Vec<Packet>, DriverError> {
        if self.machine.applied_zxid() != zxid {
            return Err(DriverError::Storage(format!(
                "snapshot asked at {zxid:#x} but the state machine is at {:#x}",
                self.machine.applied_zxid()
            )));
        }
        let chunks = self
            .machine
            .snapshot(MAX_SNAPSHOT_CHUNK_BYTES)
            .map_err(|e| DriverError::StateMachine(e.to_string()))?;
        Ok(snapshot_packets(zxid, &chunks, MAX_SNAPSHOT_CHUNK_BYTES))
    }
}

/// Runs storage work that may take long (an fsync, reading or writing many txns) with
/// `block_in_place` on a multi-threaded runtime, so that the runtime's other tasks (the
/// gRPC connections and their keep-alives, the other nodes of a test) go on meanwhile; on a
/// current-thread runtime it simply runs.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    if tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
    {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

/// Txns in one storage operation above which it runs through [`blocking`].
const LARGE_BATCH: usize = 4096;
/// Most records per `append_batch`: sled keeps every page a batch replaces until the batch
/// ends (about 5 GB for a batch of a million 100-byte txns, 170 MB in batches of 256), so
/// a large `Persist` (a sync) goes to the log in pieces. The whole `Persist` need not be
/// atomic: it counts only once the `sync` after it returns, and a log that ends part-way
/// through it is one the learner could have after any crash.
const APPEND_CHUNK: usize = 512;

fn ticker(tick_time: Duration) -> tokio::time::Interval {
    let half = (tick_time / 2).max(Duration::from_millis(1));
    let mut t = tokio::time::interval_at(tokio::time::Instant::now() + half, half);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t
}

/// Leads until the core goes back to LOOKING; returns why. Learners connect through
/// `incoming` (accepted connections, e.g. from [`crate::transport::bind_local`]); the
/// server proposes txns and answers learners through the [`LeaderClient`] whose `inbox`
/// this is, and gets the learners' requests as [`LeaderEvent`]s
/// ([`LeaderInbox::with_events`]).
///
/// The inbox is read only once the leader is established and while fewer than
/// `config.max_outstanding` proposals are in flight: a client submitting faster than the
/// quorum commits waits for queue space.
#[allow(clippy::too_many_arguments)]
pub async fn run_leader<L, E, M, I, IO, IE>(
    id: ServerId,
    config: Config,
    ensemble: Ensemble,
    options: DriverOptions,
    storage: &mut NodeStorage<L, E, M>,
    incoming: I,
    inbox: LeaderInbox,
    status: watch::Sender<NodeStatus>,
    shutdown: impl Future<Output = ()>,
) -> Result<Stopped, DriverError>
where
    L: TxnLog,
    E: EpochStore,
    M: StateMachine,
    I: futures::Stream<Item = Result<IO, IE>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    let span = info_span!("zab", sid = id, role = "leader");
    async move {
        let (ev_tx, mut events) = mpsc::channel(EVENT_QUEUE);
        let service = LearnService {
            events: ev_tx,
            queue_capacity: options.learner_queue,
            next_conn: Arc::new(AtomicU64::new(1)),
        };
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(
            Server::builder()
                .http2_keepalive_interval(Some(options.tick_time))
                .http2_keepalive_timeout(Some(options.tick_time * config.sync_limit.max(1)))
                .add_service(
                    QuorumServer::new(service)
                        .max_decoding_message_size(MAX_MESSAGE_BYTES)
                        .max_encoding_message_size(MAX_MESSAGE_BYTES),
                )
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stop_rx.await;
                }),
        );
        let LeaderInbox {
            rx: mut ops,
            events: server_events,
        } = inbox;
        let mut run = LeaderRun {
            core: Leader::new(
                id,
                config.clone(),
                ensemble,
                blocking(|| storage.leader_storage(&config))?,
            ),
            learners: HashMap::new(),
            observers: HashSet::new(),
            waiting: BTreeMap::new(),
            inputs: VecDeque::new(),
            unsent: Vec::new(),
            ranges: HashMap::new(),
            backlog_limit: options.learner_queue.max(1).saturating_mul(MAX_BATCH),
            range_piece: options.log_range_piece.max(1),
            outbox: Outbox::new(server_events),
            max_outstanding: config.max_outstanding,
            storage,
            status,
        };
        let first = run.core.start();
        let result = tokio::select! {
            r = run.drive(first, &mut events, &mut ops, &options) => r.map(Stopped::Looking),
            () = shutdown => Ok(Stopped::Shutdown),
        };
        for (_, reply) in std::mem::take(&mut run.waiting) {
            let _ = reply.send(Err(ZabError::NotLeading));
        }
        run.status.send_modify(|s| {
            s.serving = false;
            s.learners = 0;
            s.synced_followers = 0;
            s.synced_observers = 0;
            s.pending_syncs = 0;
        });
        // Dropping the learner queues ends their streams, so learners see the leader go.
        drop(run);
        drop(events);
        let _ = stop_tx.send(());
        let _ = server.await;
        result
    }
    .instrument(span)
    .await
}

struct LeaderRun<'a, L, E, M> {
    core: Leader,
    learners: HashMap<ServerId, (u64, mpsc::Sender<Outbound>)>,
    observers: HashSet<ServerId>,
    waiting: BTreeMap<Zxid, oneshot::Sender<Result<Zxid, ZabError>>>,
    inputs: VecDeque<Input>,
    /// Packets for each learner stream `(sid, conn)` not yet queued: everything sent to one
    /// learner in a loop turn goes into its queue as one item (see [`LeaderRun::flush_sends`]).
    unsent: Vec<(ServerId, u64, Vec<Packet>)>,
    /// Log ranges being read and queued a piece per loop turn, by learner.
    ranges: HashMap<ServerId, RangeSend>,
    /// Most packets held behind a range for one learner before it is dropped.
    backlog_limit: usize,
    /// [`DriverOptions::log_range_piece`].
    range_piece: usize,
    outbox: Outbox<LeaderEvent>,
    max_outstanding: usize,
    storage: &'a mut NodeStorage<L, E, M>,
    status: watch::Sender<NodeStatus>,
}

/// A `SendLogRange` in progress: the txns in `(after, up_to]` go to learner stream `conn`
/// [`DriverOptions::log_range_piece`] at a time, one piece per loop turn while the learner's queue is at
/// least half free, so that a DIFF of millions of txns from the log neither stops the
/// leader's loop (its PINGs, the other learners' ACKs) for longer than a piece takes nor
/// fills the leader's memory. What the core sends the learner meanwhile waits in
/// `backlog` and follows the range.
#[derive(Debug)]
struct RangeSend {
    conn: u64,
    after: Zxid,
    up_to: Zxid,
    backlog: Vec<Packet>,
}

impl<L: TxnLog, E: EpochStore, M: StateMachine> LeaderRun<'_, L, E, M> {
    /// True when the server's queue may be read: established, with room for a proposal.
    fn takes_ops(&self) -> bool {
        self.core.phase() == LeaderPhase::Broadcast
            && self.core.outstanding() < self.max_outstanding
    }

    async fn drive(
        &mut self,
        first: Vec<Command>,
        events: &mut mpsc::Receiver<StreamEvent>,
        ops: &mut mpsc::Receiver<ProposalRequest>,
        options: &DriverOptions,
    ) -> Result<ZabError, DriverError> {
        let mut tick = ticker(options.tick_time);
        if let Some(reason) = self.execute(first)? {
            return Ok(reason);
        }
        self.flush_sends();
        loop {
            let takes_ops = self.takes_ops();
            // Learner packets may produce server events: stop reading them while the
            // server is behind (back-pressure down the learners' streams), unless the
            // proposals in flight wait for their ACKs: the server may be waiting in
            // `submit`, and only commits free it.
            let stalled = self.core.phase() == LeaderPhase::Broadcast
                && self.core.outstanding() >= self.max_outstanding;
            let reads_streams = !self.outbox.is_full() || stalled;
            let flushes = self.outbox.has_held();
            let sends_ranges = !self.ranges.is_empty();
            tokio::select! {
                _ = tick.tick() => self.inputs.push_back(Input::Tick),
                // The next piece of a log range, once the learner's queue has room.
                () = tokio::time::sleep(Duration::from_millis(1)), if sends_ranges => {}
                Some(ev) = events.recv(), if reads_streams => {
                    self.on_event(ev);
                    let mut n = 0;
                    while n < MAX_BATCH && let Ok(ev) = events.try_recv() {
                        self.on_event(ev);
                        n += 1;
                    }
                }
                Some(op) = ops.recv(), if takes_ops => {
                    if let Some(reason) = self.on_op(op)? {
                        return Ok(reason);
                    }
                    let mut n = 0;
                    while n < MAX_BATCH && self.takes_ops() && let Ok(op) = ops.try_recv() {
                        if let Some(reason) = self.on_op(op)? {
                            return Ok(reason);
                        }
                        n += 1;
                    }
                }
                () = self.outbox.flush(), if flushes => {}
            }
            // Bounded: each input is handled once; follow-up inputs come from dropped
            // learners, at most one per learner.
            let mut budget = MAX_BATCH * 4 + self.learners.len() * 2;
            loop {
                while let Some(input) = self.inputs.pop_front() {
                    budget = budget.saturating_sub(1);
                    let out = self.core.step(input);
                    if let Some(reason) = self.execute(out)? {
                        return Ok(reason);
                    }
                    if budget == 0 {
                        break;
                    }
                }
                // The packets go out before the leader's own fsync, so that the followers
                // write in parallel with it.
                self.flush_sends();
                // Group commit: one sync for everything appended in this turn.
                match self.storage.sync()? {
                    Some(zxid) => self.inputs.push_back(Input::Persisted { zxid }),
                    // A learner dropped while flushing.
                    None if budget > 0 && !self.inputs.is_empty() => {}
                    None => break,
                }
            }
            self.send_range_pieces()?;
        }
    }

    /// Queues the next piece of every log range whose learner has room for it (see
    /// [`RangeSend`]); a finished range is followed by its backlog.
    fn send_range_pieces(&mut self) -> Result<(), DriverError> {
        let sids: Vec<ServerId> = self.ranges.keys().copied().collect();
        for sid in sids {
            let Some(job) = self.ranges.get(&sid) else {
                continue;
            };
            let (conn, after, up_to) = (job.conn, job.after, job.up_to);
            let Some((_, tx)) = self.learners.get(&sid).filter(|(c, _)| *c == conn) else {
                self.ranges.remove(&sid);
                continue;
            };
            if tx.capacity() < tx.max_capacity().div_ceil(2) {
                continue;
            }
            let storage = &*self.storage;
            let piece = self.range_piece;
            let txns = blocking(|| storage.read_piece(after, up_to, piece))?;
            let mut packets = Vec::with_capacity(2 * txns.len());
            let mut last = after;
            for t in txns {
                last = t.zxid;
                packets.push(Packet::Proposal(t));
                packets.push(Packet::Commit { zxid: last });
            }
            if last == up_to {
                if let Some(job) = self.ranges.remove(&sid) {
                    packets.extend(job.backlog);
                }
            } else if let Some(job) = self.ranges.get_mut(&sid) {
                job.after = last;
            }
            self.queue(sid, conn, Outbound::Batch(packets));
        }
        Ok(())
    }

    fn on_event(&mut self, ev: StreamEvent) {
        match ev {
            StreamEvent::Opened {
                sid,
                conn,
                tx,
                first,
            } => {
                info!(peer = sid, conn, "learner connected");
                self.learners.insert(sid, (conn, tx));
                if matches!(&first, Packet::LearnerInfo(i) if i.observer) {
                    self.observers.insert(sid);
                } else {
                    self.observers.remove(&sid);
                }
                self.inputs.push_back(Input::Message {
                    from: sid,
                    packet: first,
                });
            }
            StreamEvent::Packet { sid, conn, packet } => {
                if self.learners.get(&sid).is_some_and(|(c, _)| *c == conn) {
                    self.inputs.push_back(Input::Message { from: sid, packet });
                }
            }
            StreamEvent::Closed { sid, conn } => {
                if self.learners.get(&sid).is_some_and(|(c, _)| *c == conn) {
                    self.learners.remove(&sid);
                    self.inputs.push_back(Input::Disconnected { peer: sid });
                }
            }
        }
    }

    fn on_op(&mut self, op: ProposalRequest) -> Result<Option<ZabError>, DriverError> {
        match op.0 {
            LeaderOp::Propose { data, reply } => self.propose(data, reply),
            LeaderOp::Sync {
                to,
                session_id,
                cxid,
            } => match self.core.sync_reply(to, session_id, cxid) {
                Ok(out) => self.execute(out),
                Err(e) => {
                    warn!(peer = to, session_id, cxid, error = %e, "cannot answer a sync");
                    Ok(None)
                }
            },
            LeaderOp::Revalidate {
                to,
                session_id,
                timeout_ms,
                valid,
            } => {
                let out = self
                    .core
                    .revalidate_reply(to, session_id, timeout_ms, valid);
                self.execute(out)
            }
            LeaderOp::PurgeLog {
                up_to,
                snapshot_bytes,
                reply,
            } => {
                let up_to = up_to.min(self.core.committed_zxid());
                let point = self.storage.purge_log(up_to, snapshot_bytes)?;
                let out = self.core.step(Input::LogCompacted {
                    up_to: point,
                    snapshot_bytes,
                });
                let _ = reply.send(point);
                self.execute(out)
            }
        }
    }

    fn propose(
        &mut self,
        data: Bytes,
        reply: oneshot::Sender<Result<Zxid, ZabError>>,
    ) -> Result<Option<ZabError>, DriverError> {
        match self.core.propose(data) {
            Ok((zxid, out)) => {
                self.waiting.insert(zxid, reply);
                self.execute(out)
            }
            Err(e @ ZabError::ZxidRollover(_)) => {
                let _ = reply.send(Err(e.clone()));
                Ok(Some(e))
            }
            Err(e) => {
                let _ = reply.send(Err(e));
                Ok(None)
            }
        }
    }

    /// Queues an event for the server; past [`EVENT_HARD_LIMIT`] drops it and closes the
    /// stream of the learner that caused it (it re-syncs; see [`crate::hooks`]).
    fn queue_event(&mut self, from: ServerId, event: LeaderEvent) {
        if let Err(event) = self.outbox.push_bounded(event) {
            warn!(
                peer = from,
                limit = EVENT_HARD_LIMIT,
                ?event,
                "the server is too far behind, dropping the learner"
            );
            if self.learners.remove(&from).is_some() {
                self.inputs.push_back(Input::Disconnected { peer: from });
            }
        }
    }

    /// Adds packets for learner `to` to what goes into its queue at the next
    /// [`LeaderRun::flush_sends`] (nothing if it is not connected).
    fn send(&mut self, to: ServerId, packets: impl IntoIterator<Item = Packet>) {
        let Some(&(conn, _)) = self.learners.get(&to) else {
            return;
        };
        if let Some(job) = self.ranges.get_mut(&to) {
            if job.conn == conn {
                job.backlog.extend(packets);
                if job.backlog.len() > self.backlog_limit {
                    warn!(
                        peer = to,
                        "too much queued behind a log range, dropping the learner"
                    );
                    self.ranges.remove(&to);
                    self.learners.remove(&to);
                    self.inputs.push_back(Input::Disconnected { peer: to });
                }
                return;
            }
            self.ranges.remove(&to);
        }
        match self
            .unsent
            .iter_mut()
            .find(|(sid, c, _)| *sid == to && *c == conn)
        {
            Some((_, _, queued)) => queued.extend(packets),
            None => self.unsent.push((to, conn, packets.into_iter().collect())),
        }
    }

    /// Queues what [`LeaderRun::send`] collected: one queue item per learner (a batch when
    /// it is more than one packet), so a burst of proposals, or a sync of many in-memory
    /// txns, takes one slot of the learner's bounded queue instead of one per packet. A
    /// learner whose queue is full or closed is dropped (it re-syncs).
    fn flush_sends(&mut self) {
        for (to, conn, mut packets) in std::mem::take(&mut self.unsent) {
            let item = match packets.len() {
                0 => continue,
                1 => match packets.pop() {
                    Some(p) => Outbound::One(p),
                    None => continue,
                },
                _ => Outbound::Batch(packets),
            };
            self.queue(to, conn, item);
        }
    }

    fn queue(&mut self, to: ServerId, conn: u64, item: Outbound) {
        let Some((_, tx)) = self.learners.get(&to).filter(|(c, _)| *c == conn) else {
            return;
        };
        if let Err(e) = tx.try_send(item) {
            warn!(
                peer = to,
                full = matches!(e, mpsc::error::TrySendError::Full(_)),
                "learner queue unavailable, dropping it"
            );
            self.learners.remove(&to);
            self.inputs.push_back(Input::Disconnected { peer: to });
        }
    }

    fn execute(&mut self, out: Vec<Command>) -> Result<Option<ZabError>, DriverError> {
        for cmd in out {
            let Some(cmd) = self.storage.execute(cmd)? else {
                continue;
            };
            match cmd {
                Command::Send { to, packet } => self.send(to, [packet]),
                Command::SendSnapshot { to, zxid } => {
                    let storage = &*self.storage;
                    let packets = blocking(|| storage.snapshot(zxid))?;
                    self.send(to, packets);
                }
                Command::SendLogRange { to, after, up_to } => {
                    // What was sent before goes first; the range follows a piece at a time.
                    self.flush_sends();
                    if let Some(&(conn, _)) = self.learners.get(&to) {
                        self.ranges.insert(
                            to,
                            RangeSend {
                                conn,
                                after,
                                up_to,
                                backlog: Vec::new(),
                            },
                        );
                    }
                }
                Command::SyncChosen {
                    learner,
                    mode,
                    peer_last_zxid,
                    synced_to,
                } => {
                    info!(
                        peer = learner,
                        mode = mode.name(),
                        peer_last_zxid,
                        synced_to,
                        "sync"
                    );
                    self.status.send_modify(|s| match mode {
                        SyncMode::Diff => s.syncs_diff += 1,
                        SyncMode::Trunc => s.syncs_trunc += 1,
                        SyncMode::Snap => s.syncs_snap += 1,
                    });
                }
                Command::Serving { epoch } => {
                    info!(epoch, "leading");
                    // Established: its whole history is committed.
                    let committed = self.core.committed_zxid();
                    self.storage.committed = self.storage.committed.max(committed);
                    self.status.send_modify(|s| {
                        s.epoch = epoch;
                        s.serving = true;
                    });
                }
                Command::Disconnect { peer, reason } => {
                    debug!(peer, %reason, "closing learner stream");
                    // What was sent before goes out before the stream ends.
                    self.flush_sends();
                    self.learners.remove(&peer);
                }
                Command::GoLooking { reason } => {
                    self.flush_sends();
                    return Ok(Some(reason));
                }
                Command::Request { from, request } => {
                    self.queue_event(from, LeaderEvent::Request { from, request });
                }
                Command::SessionTouches { from, touches } => {
                    self.queue_event(from, LeaderEvent::SessionTouches { from, touches });
                }
                Command::Revalidate {
                    from,
                    session_id,
                    timeout_ms,
                } => self.queue_event(
                    from,
                    LeaderEvent::Revalidate {
                        from,
                        session_id,
                        timeout_ms,
                    },
                ),
                Command::RevalidateReply { .. } | Command::SyncReply { .. } => {}
                other => {
                    return Err(DriverError::Storage(format!(
                        "unexpected command {other:?}"
                    )));
                }
            }
        }
        let applied = self.storage.machine.applied_zxid();
        let learners = self.learners.len();
        let (mut followers, mut observers) = (0, 0);
        for sid in self.core.active_learners() {
            if self.observers.contains(&sid) {
                observers += 1;
            } else {
                followers += 1;
            }
        }
        let pending_syncs = self.core.pending_syncs();
        self.status.send_if_modified(|s| {
            let changed = s.applied != applied
                || s.learners != learners
                || s.synced_followers != followers
                || s.synced_observers != observers
                || s.pending_syncs != pending_syncs;
            s.applied = applied;
            s.learners = learners;
            s.synced_followers = followers;
            s.synced_observers = observers;
            s.pending_syncs = pending_syncs;
            changed
        });
        while let Some(entry) = self.waiting.first_entry() {
            if *entry.key() > applied {
                break;
            }
            let (zxid, reply) = entry.remove_entry();
            let _ = reply.send(Ok(zxid));
        }
        Ok(None)
    }
}

/// Follows (or observes) the leader at `leader_addr` until the core goes back to LOOKING;
/// returns why. A learner without a server: [`run_learner_with`] with
/// [`LearnerInbox::detached`].
#[allow(clippy::too_many_arguments)]
pub async fn run_learner<L, E, M, D>(
    id: ServerId,
    leader: ServerId,
    leader_addr: &str,
    observer: bool,
    config: Config,
    options: DriverOptions,
    storage: &mut NodeStorage<L, E, M>,
    dialer: D,
    status: watch::Sender<NodeStatus>,
    shutdown: impl Future<Output = ()>,
) -> Result<Stopped, DriverError>
where
    L: TxnLog,
    E: EpochStore,
    M: StateMachine,
    D: Dialer,
{
    run_learner_with(
        id,
        leader,
        leader_addr,
        observer,
        config,
        options,
        storage,
        dialer,
        LearnerInbox::detached(),
        status,
        shutdown,
    )
    .await
}

/// Follows (or observes) the leader at `leader_addr` until the core goes back to LOOKING;
/// returns why. The server forwards requests, revalidates and touches sessions through
/// the [`LearnerClient`] whose `inbox` this is ([`LearnerInbox::detached`] when no server
/// is attached) and gets the leader's answers as [`LearnerEvent`]s
/// ([`LearnerInbox::with_events`]).
///
/// Forwards and revalidations that arrive before the learner is up to date are held, in
/// order, until it is (at most the inbox's capacity; then the inbox is not read). They
/// go out only while the send queue to the leader is at most half full, so that the
/// server's traffic never fills it and ACKs and PINGs always find room.
#[allow(clippy::too_many_arguments)]
pub async fn run_learner_with<L, E, M, D>(
    id: ServerId,
    leader: ServerId,
    leader_addr: &str,
    observer: bool,
    config: Config,
    options: DriverOptions,
    storage: &mut NodeStorage<L, E, M>,
    dialer: D,
    inbox: LearnerInbox,
    status: watch::Sender<NodeStatus>,
    shutdown: impl Future<Output = ()>,
) -> Result<Stopped, DriverError>
where
    L: TxnLog,
    E: EpochStore,
    M: StateMachine,
    D: Dialer,
{
    let span = info_span!(
        "zab",
        sid = id,
        role = if observer { "observer" } else { "follower" }
    );
    let final_status = status.clone();
    let body = async move {
        let endpoint = Endpoint::from_shared(format!("http://{leader_addr}"))
            .map_err(DriverError::Transport)?
            .connect_timeout(options.connect_timeout)
            .http2_keep_alive_interval(options.tick_time)
            .keep_alive_timeout(options.tick_time * config.sync_limit.max(1))
            .keep_alive_while_idle(true);
        let channel = match endpoint.connect_with_connector(DialService(dialer)).await {
            Ok(c) => c,
            Err(e) => {
                warn!(leader, error = %e, "cannot connect to the leader");
                return Ok(ZabError::Disconnected(leader));
            }
        };
        let mut client = QuorumClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let mut core = LearnerCore::new(id, leader, observer, config, storage.learner_storage()?);
        let send_queue = options.learner_queue.max(1);
        let (tx, rx) = mpsc::channel::<pb::QuorumPacket>(send_queue);
        let LearnerInbox {
            rx: mut requests,
            capacity: hold_limit,
            events,
        } = inbox;
        let first = core.start();
        let mut run = LearnerRun {
            storage,
            tx,
            status,
            leader,
            outbox: Outbox::new(events),
            held: VecDeque::new(),
            // Server traffic goes out only while at least this much of the queue is free.
            room: send_queue.div_ceil(2),
        };
        run.status.send_modify(|s| s.sync_mode = None);
        if let Some(reason) = run.execute(first)? {
            return Ok(reason);
        }
        let mut inbound = match client.learn(ReceiverStream::new(rx)).await {
            Ok(r) => r.into_inner(),
            Err(status) => {
                warn!(leader, %status, "leader refused the stream");
                return Ok(ZabError::Disconnected(leader));
            }
        };
        let mut tick = ticker(options.tick_time);
        let mut requests_open = true;
        loop {
            let mut inputs = VecDeque::new();
            let reads_leader = !run.outbox.is_full();
            let flushes = run.outbox.has_held();
            let reads_requests = requests_open && run.held.len() < hold_limit;
            let waits_for_room = run.waits_for_room(&core);
            tokio::select! {
                _ = tick.tick() => inputs.push_back(Input::Tick),
                msg = inbound.message(), if reads_leader => {
                    let mut next = Some(msg);
                    let mut n = 0;
                    // Take every packet already received (up to a batch) before the
                    // group-commit sync below: one fsync covers them all, instead of one
                    // fsync per PROPOSAL.
                    while let Some(msg) = next.take() {
                        let open = on_leader_message(&mut inputs, leader, msg);
                        n += 1;
                        if open && n < MAX_BATCH {
                            next = inbound.message().now_or_never();
                        }
                    }
                }
                request = requests.recv(), if reads_requests => match request {
                    Some(r) => {
                        run.on_request(&mut core, r.0)?;
                        let mut n = 0;
                        while n < MAX_BATCH
                            && run.held.len() < hold_limit
                            && let Ok(r) = requests.try_recv()
                        {
                            run.on_request(&mut core, r.0)?;
                            n += 1;
                        }
                    }
                    None => requests_open = false,
                },
                () = run.outbox.flush(), if flushes => {}
                () = wait_for_room(&run.tx, run.room), if waits_for_room => {}
            }
            loop {
                while let Some(input) = inputs.pop_front() {
                    let out = core.step(input);
                    run.note_sync_mode(&core);
                    if let Some(reason) = run.execute(out)? {
                        return Ok(reason);
                    }
                }
                match run.storage.sync()? {
                    Some(zxid) => inputs.push_back(Input::Persisted { zxid }),
                    None => break,
                }
            }
            if let Some(reason) = run.send_held(&mut core)? {
                return Ok(reason);
            }
        }
    };
    let result = tokio::select! {
        r = body.instrument(span) => r.map(Stopped::Looking),
        () = shutdown => Ok(Stopped::Shutdown),
    };
    final_status.send_modify(|s| s.serving = false);
    result
}

/// Waits until `room` slots of the send queue are free (then releases them).
async fn wait_for_room(tx: &mpsc::Sender<pb::QuorumPacket>, room: usize) {
    let _ = tx.reserve_many(room).await;
}

/// Turns one read from the leader's stream into inputs; false once the stream is over.
fn on_leader_message(
    inputs: &mut VecDeque<Input>,
    leader: ServerId,
    msg: Result<Option<pb::QuorumPacket>, tonic::Status>,
) -> bool {
    match msg {
        Ok(Some(p)) => match Packet::try_from(p) {
            Ok(packet) => {
                inputs.push_back(Input::Message {
                    from: leader,
                    packet,
                });
                true
            }
            Err(e) => {
                warn!(leader, error = %e, "undecodable packet from the leader");
                inputs.push_back(Input::Disconnected { peer: leader });
                false
            }
        },
        Ok(None) => {
            inputs.push_back(Input::Disconnected { peer: leader });
            false
        }
        Err(status) => {
            debug!(leader, %status, "leader stream failed");
            inputs.push_back(Input::Disconnected { peer: leader });
            false
        }
    }
}

enum LearnerCore {
    Follower(Box<Follower>),
    Observer(Box<Observer>),
}

impl LearnerCore {
    fn new(
        id: ServerId,
        leader: ServerId,
        observer: bool,
        config: Config,
        s: LearnerStorage,
    ) -> Self {
        if observer {
            LearnerCore::Observer(Box::new(Observer::new(id, leader, config, s)))
        } else {
            LearnerCore::Follower(Box::new(Follower::new(id, leader, config, s)))
        }
    }
    fn start(&mut self) -> Vec<Command> {
        match self {
            LearnerCore::Follower(f) => f.start(),
            LearnerCore::Observer(o) => o.start(),
        }
    }
    fn step(&mut self, input: Input) -> Vec<Command> {
        match self {
            LearnerCore::Follower(f) => f.step(input),
            LearnerCore::Observer(o) => o.step(input),
        }
    }
    fn phase(&self) -> LearnerPhase {
        match self {
            LearnerCore::Follower(f) => f.phase(),
            LearnerCore::Observer(o) => o.phase(),
        }
    }
    fn forward_request(&mut self, request: ForwardedRequest) -> Result<Vec<Command>, ZabError> {
        match self {
            LearnerCore::Follower(f) => f.forward_request(request),
            LearnerCore::Observer(o) => o.forward_request(request),
        }
    }
    fn revalidate(&mut self, session_id: i64, timeout_ms: i32) -> Result<Vec<Command>, ZabError> {
        match self {
            LearnerCore::Follower(f) => f.revalidate(session_id, timeout_ms),
            LearnerCore::Observer(o) => o.revalidate(session_id, timeout_ms),
        }
    }
    fn touch_session(&mut self, touch: SessionTouch) -> Result<(), ZabError> {
        match self {
            LearnerCore::Follower(f) => f.touch_session(touch),
            LearnerCore::Observer(o) => o.touch_session(touch),
        }
    }
}

struct LearnerRun<'a, L, E, M> {
    storage: &'a mut NodeStorage<L, E, M>,
    tx: mpsc::Sender<pb::QuorumPacket>,
    status: watch::Sender<NodeStatus>,
    leader: ServerId,
    outbox: Outbox<LearnerEvent>,
    /// Forwards and revalidations waiting for the learner to be up to date or for room in
    /// the send queue (bounded by the inbox's capacity).
    held: VecDeque<LearnerOp>,
    room: usize,
}

impl<L: TxnLog, E: EpochStore, M: StateMachine> LearnerRun<'_, L, E, M> {
    /// Publishes the sync mode once the core has accepted the leader's DIFF / TRUNC / SNAP.
    fn note_sync_mode(&self, core: &LearnerCore) {
        let LearnerPhase::Syncing(mode) = core.phase() else {
            return;
        };
        self.status.send_if_modified(|s| {
            if s.sync_mode == Some(mode) {
                return false;
            }
            info!(
                leader = self.leader,
                mode = mode.name(),
                "synchronised by the leader"
            );
            s.sync_mode = Some(mode);
            true
        });
    }

    fn on_request(&mut self, core: &mut LearnerCore, op: LearnerOp) -> Result<(), DriverError> {
        match op {
            LearnerOp::Touch(touch) => {
                if let Err(e) = core.touch_session(touch) {
                    debug!(session_id = touch.session_id, error = %e, "session touch dropped");
                }
            }
            LearnerOp::PurgeLog { up_to, reply } => {
                let snapshot_bytes = self.storage.snapshot_bytes;
                let point = self.storage.purge_log(up_to, snapshot_bytes)?;
                let _ = reply.send(point);
            }
            other => self.held.push_back(other),
        }
        Ok(())
    }

    /// True when held requests wait only for room in the send queue.
    fn waits_for_room(&self, core: &LearnerCore) -> bool {
        !self.held.is_empty()
            && !self.tx.is_closed()
            && core.phase() == LearnerPhase::Broadcast
            && self.tx.capacity() < self.room
    }

    /// Sends the held requests, in order, while up to date and the send queue has room.
    fn send_held(&mut self, core: &mut LearnerCore) -> Result<Option<ZabError>, DriverError> {
        while core.phase() == LearnerPhase::Broadcast && self.tx.capacity() >= self.room {
            let Some(op) = self.held.pop_front() else {
                break;
            };
            let out = match op {
                LearnerOp::Forward(request) => core.forward_request(request),
                LearnerOp::Revalidate {
                    session_id,
                    timeout_ms,
                } => core.revalidate(session_id, timeout_ms),
                LearnerOp::Touch(touch) => core.touch_session(touch).map(|()| Vec::new()),
                LearnerOp::PurgeLog { up_to, reply } => {
                    let snapshot_bytes = self.storage.snapshot_bytes;
                    let _ = reply.send(self.storage.purge_log(up_to, snapshot_bytes)?);
                    Ok(Vec::new())
                }
            };
            match out {
                Ok(out) => {
                    if let Some(reason) = self.execute(out)? {
                        return Ok(Some(reason));
                    }
                }
                Err(e) => warn!(error = %e, "request to the leader refused"),
            }
        }
        Ok(None)
    }

    fn execute(&mut self, out: Vec<Command>) -> Result<Option<ZabError>, DriverError> {
        for cmd in out {
            let Some(cmd) = self.storage.execute(cmd)? else {
                continue;
            };
            match cmd {
                Command::Send { packet, .. } => {
                    if self.tx.try_send(packet.into()).is_err() {
                        warn!(
                            leader = self.leader,
                            "send queue to the leader full or closed"
                        );
                        return Ok(Some(ZabError::Disconnected(self.leader)));
                    }
                }
                Command::Serving { epoch } => {
                    info!(epoch, "following");
                    self.status.send_modify(|s| {
                        s.epoch = epoch;
                        s.serving = true;
                    });
                }
                Command::GoLooking { reason } => return Ok(Some(reason)),
                Command::RevalidateReply {
                    session_id,
                    timeout_ms,
                    valid,
                } => self.outbox.push(LearnerEvent::RevalidateReply {
                    session_id,
                    timeout_ms,
                    valid,
                }),
                Command::SyncReply {
                    session_id,
                    cxid,
                    zxid,
                } => self.outbox.push(LearnerEvent::SyncReply {
                    session_id,
                    cxid,
                    zxid,
                }),
                other => {
                    return Err(DriverError::Storage(format!(
                        "unexpected command {other:?}"
                    )));
                }
            }
        }
        let applied = self.storage.machine.applied_zxid();
        self.status.send_if_modified(|s| {
            let changed = s.applied != applied;
            s.applied = applied;
            changed
        });
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use zk_proto::zxid::make;
    use zk_storage::log::{MemEpochStore, MemTxnLog};

    use super::*;

    fn txns(epoch: i64, counters: std::ops::RangeInclusive<i64>) -> Vec<Txn> {
        counters
            .map(|c| Txn::new(make(epoch, c), format!("{epoch}:{c}").into_bytes()))
            .collect()
    }

    fn zxids(txns: &[Txn]) -> Vec<Zxid> {
        txns.iter().map(|t| t.zxid).collect()
    }

    #[test]
    fn recent_txns_hand_out_the_log_tail_in_order() {
        let mut r = RecentTxns::default();
        r.appended(0, &txns(1, 1..=3));
        assert_eq!(
            r.take(0, make(1, 2)).map(|t| zxids(&t)),
            Some(vec![make(1, 1), make(1, 2)])
        );
        r.appended(make(1, 3), &txns(1, 4..=5));
        assert_eq!(
            r.take(make(1, 2), make(1, 5)).map(|t| zxids(&t)),
            Some(vec![make(1, 3), make(1, 4), make(1, 5)])
        );
        assert_eq!(r.bytes, 0);
        // Not what the log holds after `after`: the caller reads the log.
        r.appended(make(1, 5), &txns(1, 6..=7));
        assert_eq!(r.take(make(1, 4), make(1, 6)), None);
        // Asked beyond what is here.
        assert_eq!(r.take(make(1, 5), make(1, 9)), None);
    }

    #[test]
    fn recent_txns_follow_truncation_and_drop_what_they_cannot_vouch_for() {
        let mut r = RecentTxns::default();
        r.appended(0, &txns(1, 1..=4));
        r.truncated(make(1, 2));
        assert_eq!(
            zxids(r.txns.make_contiguous()),
            vec![make(1, 1), make(1, 2)]
        );
        r.appended(make(1, 2), &txns(2, 1..=1));
        assert_eq!(
            r.take(0, make(2, 1)).map(|t| zxids(&t)),
            Some(vec![make(1, 1), make(1, 2), make(2, 1)])
        );
        // Truncated below where the kept tail starts: nothing is known any more.
        r.truncated(make(1, 1));
        assert_eq!(r.covers, None);
        assert_eq!(r.take(make(1, 1), make(1, 1)), None);
        // Appends that do not continue the kept tail drop it.
        r.appended(make(1, 1), &txns(3, 1..=1));
        r.appended(make(3, 5), &txns(3, 6..=6));
        assert_eq!((r.covers, r.txns.len(), r.bytes), (None, 0, 0));
        // Past the byte bound everything is dropped.
        let big = vec![Txn::new(make(4, 1), vec![0u8; RECENT_MAX_BYTES])];
        r.appended(0, &big);
        assert_eq!((r.covers, r.txns.len()), (None, 0));
    }

    /// Every applied txn, in order.
    #[derive(Debug, Default)]
    struct Applied(Vec<Txn>);

    #[derive(Debug, thiserror::Error)]
    #[error("no snapshots here")]
    struct NoSnapshots;

    impl StateMachine for Applied {
        type Error = NoSnapshots;
        fn applied_zxid(&self) -> Zxid {
            self.0.last().map_or(0, |t| t.zxid)
        }
        fn apply(&mut self, txn: &Txn) -> Result<(), NoSnapshots> {
            self.0.push(txn.clone());
            Ok(())
        }
        fn snapshot(&self, _: usize) -> Result<Vec<Bytes>, NoSnapshots> {
            Err(NoSnapshots)
        }
        fn restore(&mut self, _: Zxid, _: &[Bytes]) -> Result<(), NoSnapshots> {
            Err(NoSnapshots)
        }
    }

    #[test]
    fn applies_from_memory_and_from_the_log_give_the_logged_txns() -> Result<(), DriverError> {
        let mut st = NodeStorage::new(
            MemTxnLog::new(),
            MemEpochStore::new(),
            Applied::default(),
            0,
        );
        let run = |st: &mut NodeStorage<_, _, _>, cmd| st.execute(cmd).map(|_| ());
        run(
            &mut st,
            Command::Persist {
                txns: txns(1, 1..=3),
            },
        )?;
        run(
            &mut st,
            Command::Persist {
                txns: txns(1, 4..=6),
            },
        )?;
        run(&mut st, Command::Apply { up_to: make(1, 2) })?;
        run(&mut st, Command::Truncate { to: make(1, 4) })?;
        run(&mut st, Command::Apply { up_to: make(1, 4) })?;
        run(
            &mut st,
            Command::Persist {
                txns: txns(2, 1..=2),
            },
        )?;
        // Forgotten (as past the byte bound): the rest comes from the log.
        st.recent.clear();
        run(
            &mut st,
            Command::Persist {
                txns: txns(2, 3..=3),
            },
        )?;
        run(&mut st, Command::Apply { up_to: make(2, 3) })?;
        let logged: Vec<Txn> = st
            .log
            .read_from(0)?
            .map(|r| r.map(|r| Txn::new(r.zxid, r.payload)))
            .collect::<Result<_, _>>()?;
        assert_eq!(zxids(&logged), zxids(&st.machine.0));
        assert_eq!(logged, st.machine.0);
        assert_eq!(st.machine.0.len(), 7);
        Ok(())
    }
}
