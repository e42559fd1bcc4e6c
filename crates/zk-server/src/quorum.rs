//! Ensemble mode: ZooKeeper's `QuorumPeer` main loop on top of `zk-election` and
//! `zk-quorum`.
//!
//! LOOKING → elect → LEADING / FOLLOWING / OBSERVING → (on any failure) LOOKING, forever.
//! Clients are served only while the node is an established leader or a synced learner;
//! every change of role closes the client connections (clients reconnect elsewhere with
//! their sessions).
//!
//! * The **leader** preps every write — its own clients' and those its learners forward —
//!   in one order (`prep.rs`), proposes them pipelined, answers learners' syncs once the
//!   proposals before them commit, keeps the sessions (touches from learners' PINGs,
//!   expiry, revalidation).
//! * A **learner** forwards its clients' writes, syncs, new sessions and closes to the
//!   leader, asks it to revalidate reconnecting sessions, and reports session touches.
//! * Everyone applies committed txns through [`ServerMachine`], which answers the local
//!   client of each txn and fires watches.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;
use zk_election::{ElectionHandle, ElectionInputs, ElectionNode, Member, NodeConfig, PeerState};
use zk_proto::data::{Id, OpCode};
use zk_proto::jute::{Record, Request, SyncRequest};
use zk_proto::txn::TxnEntry;
use zk_proto::zxid::{Zxid, make};
use zk_quorum::driver::{
    DriverOptions, LeaderClient, LeaderEvent, LearnerClient, LearnerEvent, NodeStatus, NodeStorage,
    Stopped, run_leader, run_learner_with,
};
use zk_quorum::transport::{TcpDialer, bind_local};
use zk_quorum::{Ensemble, ForwardedRequest, Rollback, StateMachine, Txn, ZabError};
use zk_storage::log::{EpochStore, FileEpochStore, SledTxnLog, TxnLog};
use zk_storage::tree::DataTree;

use crate::config::{Config, LearnerType};
use crate::metrics::{LeaderStatusFeed, ZabState};
use crate::node::NodeError;
use crate::pipeline::{self, WriteOp, now_ms};
use crate::prep::{Prep, PrepInput, PrepOptions};
use crate::server::{Revalidation, Role, Shared, Validity};
use crate::snapshots::{PurgePoint, Snapshotter};

/// Most client writes queued towards the leader's proposer.
const PROPOSAL_QUEUE: usize = 4096;

/// The ZooKeeper state Zab replicates: the shared tree. Applying a txn answers the local
/// client that sent it and fires watches.
pub struct ServerMachine {
    shared: Arc<Shared>,
    snapshots: Snapshotter,
}

/// Why the state machine failed (the node must stop).
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// A committed txn that is not a valid txn.
    #[error("txn {zxid:#x} cannot be decoded: {source}")]
    Decode {
        /// Its zxid.
        zxid: Zxid,
        /// Why.
        source: zk_proto::txn::TxnDecodeError,
    },
    /// A txn out of order.
    #[error(transparent)]
    Order(#[from] crate::server::ApplyOrderError),
    /// A snapshot could not be written, read or restored.
    #[error("snapshot: {0}")]
    Snapshot(String),
    /// The log could not be read while rebuilding.
    #[error("log: {0}")]
    Log(#[from] zk_storage::log::LogError),
}

impl ServerMachine {
    /// The machine over `shared`'s tree, snapshotting into `snapshots`.
    pub fn new(shared: Arc<Shared>, snapshots: Snapshotter) -> Self {
        ServerMachine { shared, snapshots }
    }

    /// Rebuilds the tree as of `to` from the newest snapshot at or before it and the log
    /// (after a TRUNC below what was applied: a restarted node replays its whole log,
    /// committed or not, as ZooKeeper does).
    pub fn rebuild_to(&mut self, to: Zxid, log: &dyn TxnLog) -> Result<(), MachineError> {
        let store = self.snapshots.store().clone();
        // Snapshots past `to` hold txns the new epoch dropped.
        store
            .remove_newer_than(to)
            .map_err(|e| MachineError::Snapshot(e.to_string()))?;
        let base = store
            .valid_newest_first(usize::MAX)
            .map_err(|e| MachineError::Snapshot(e.to_string()))?
            .into_iter()
            .find(|s| s.zxid <= to);
        let mut tree = match &base {
            Some(info) => {
                let mut reader = store
                    .open_reader(&info.path)
                    .map_err(|e| MachineError::Snapshot(e.to_string()))?;
                let mut payload = Vec::new();
                while let Some(chunk) = reader
                    .next_chunk()
                    .map_err(|e| MachineError::Snapshot(e.to_string()))?
                {
                    payload.extend_from_slice(chunk);
                }
                DataTree::read_from(&mut payload.as_slice())
                    .map_err(|e| MachineError::Snapshot(e.to_string()))?
            }
            None => DataTree::new(),
        };
        let from = tree.last_processed_zxid().saturating_add(1);
        for record in log.read_from(from)? {
            let record = record?;
            if record.zxid > to {
                break;
            }
            let entry = decode(record.zxid, &record.payload)?;
            tree.apply(&entry);
        }
        tracing::warn!(
            to = format_args!("{to:#x}"),
            snapshot = ?base.map(|b| b.zxid),
            "rolled the tree back after a TRUNC"
        );
        *self.shared.tree_mut() = tree;
        Ok(())
    }
}

fn decode(zxid: Zxid, data: &[u8]) -> Result<TxnEntry, MachineError> {
    let mut entry =
        TxnEntry::decode(data).map_err(|source| MachineError::Decode { zxid, source })?;
    // The leader preps with the zxid it expects Zab to assign; Zab's is the truth.
    entry.header.zxid = zxid;
    Ok(entry)
}

impl StateMachine for ServerMachine {
    type Error = MachineError;

    fn applied_zxid(&self) -> Zxid {
        self.shared.last_processed_zxid()
    }

    fn apply(&mut self, txn: &Txn) -> Result<(), MachineError> {
        let entry = decode(txn.zxid, &txn.data)?;
        self.shared.apply_committed(std::slice::from_ref(&entry))?;
        let tree = self.shared.tree();
        // The Zab driver owns the log: only snapshots are purged here.
        self.snapshots.applied(1, &tree, None);
        Ok(())
    }

    fn snapshot(&self, max_chunk_bytes: usize) -> Result<Vec<Bytes>, MachineError> {
        let view = self.shared.tree().snapshot_view();
        let mut out = ChunkWriter::new(max_chunk_bytes.max(1));
        view.write_to(&mut out)
            .map_err(|e| MachineError::Snapshot(e.to_string()))?;
        Ok(out.finish())
    }

    fn rollback(&mut self, to: Zxid, log: &dyn TxnLog) -> Result<Rollback, MachineError> {
        self.rebuild_to(to, log)?;
        Ok(Rollback::Done)
    }

    fn restore(&mut self, zxid: Zxid, chunks: &[Bytes]) -> Result<(), MachineError> {
        let payload: Vec<u8> = chunks.concat();
        let tree = DataTree::read_from(&mut payload.as_slice())
            .map_err(|e| MachineError::Snapshot(e.to_string()))?;
        if tree.last_processed_zxid() != zxid {
            return Err(MachineError::Snapshot(format!(
                "snapshot claims {zxid:#x} but holds {:#x}",
                tree.last_processed_zxid()
            )));
        }
        // Persist it first: the driver clears the log once the state is restored.
        self.snapshots
            .store()
            .write(zxid, |w| std::io::Write::write_all(w, &payload))
            .map_err(|e| MachineError::Snapshot(e.to_string()))?;
        *self.shared.tree_mut() = tree;
        Ok(())
    }
}

/// Splits a stream of bytes into chunks of at most `max` bytes.
struct ChunkWriter {
    max: usize,
    cur: BytesMut,
    done: Vec<Bytes>,
}

impl ChunkWriter {
    fn new(max: usize) -> Self {
        ChunkWriter {
            max,
            cur: BytesMut::with_capacity(max.min(1 << 20)),
            done: Vec::new(),
        }
    }
    fn finish(mut self) -> Vec<Bytes> {
        if !self.cur.is_empty() || self.done.is_empty() {
            self.done.push(self.cur.split().freeze());
        }
        self.done
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, mut buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len();
        while !buf.is_empty() {
            let room = self.max - self.cur.len();
            let take = room.min(buf.len());
            self.cur.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if self.cur.len() == self.max {
                self.done.push(self.cur.split().freeze());
            }
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

type Storage = NodeStorage<SledTxnLog, FileEpochStore, ServerMachine>;

/// Everything the peer loop needs.
pub struct QuorumPeer {
    /// The shared server state.
    pub shared: Arc<Shared>,
    /// Zab storage: the log, the epochs, the machine.
    pub storage: Storage,
    /// Client writes from the connections.
    pub writes: mpsc::Receiver<WriteOp>,
    /// This server's id.
    pub my_id: u64,
    /// Where the log may be purged to after each snapshot
    /// ([`Snapshotter::purge_points`]); the Zab driver owns the log, so the role being
    /// played asks it.
    pub purge_points: watch::Receiver<Option<PurgePoint>>,
}

/// Asks the driver to purge its log each time a snapshot makes older records unneeded
/// (`autopurge.snapRetainCount`), starting with the latest point already known. Never
/// ends: the role's other tasks decide when the role is over.
async fn purge_log_after_snapshots<F, Fut>(
    mut points: watch::Receiver<Option<PurgePoint>>,
    purge: F,
) -> std::convert::Infallible
where
    F: Fn(PurgePoint) -> Fut,
    Fut: std::future::Future<Output = Result<Zxid, ZabError>>,
{
    loop {
        let point = *points.borrow_and_update();
        if let Some(point) = point {
            match purge(point).await {
                Ok(start) => tracing::debug!(
                    up_to = format_args!("{:#x}", point.up_to),
                    log_starts_after = format_args!("{start:#x}"),
                    "txn log purged after a snapshot"
                ),
                Err(e) => {
                    tracing::debug!(error = %e, "txn log not purged: the role is ending");
                    return std::future::pending().await;
                }
            }
        }
        if points.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

fn zab_config(config: &Config) -> zk_quorum::Config {
    zk_quorum::Config {
        init_limit: config.init_limit.max(1),
        sync_limit: config.sync_limit.max(1),
        ..zk_quorum::Config::default()
    }
}

fn driver_options(config: &Config) -> DriverOptions {
    DriverOptions {
        tick_time: Duration::from_millis(u64::from(config.tick_time_ms.max(1))),
        ..DriverOptions::default()
    }
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, NodeError> {
    tokio::net::lookup_host((host, port))
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| NodeError::Unsupported(format!("cannot resolve {host}:{port}")))
}

/// Starts the election transport for this server (bound to its `server.N` address).
pub async fn start_election(config: &Config, my_id: u64) -> Result<ElectionHandle, NodeError> {
    let members = config
        .servers
        .iter()
        .map(|(id, s)| {
            (
                *id,
                Member {
                    election_addr: format!("{}:{}", s.election.host, s.election.port),
                    observer: s.learner_type == LearnerType::Observer,
                },
            )
        })
        .collect();
    let mut node = NodeConfig::new(my_id, members);
    node.election_alg = config.election_alg;
    node.finalize_wait = Duration::from_millis(config.election_finalize_wait_ms);
    node.accounted_wait = Duration::from_millis(config.election_accounted_wait_ms);
    let me = config
        .servers
        .get(&my_id)
        .ok_or_else(|| NodeError::Unsupported(format!("My id {my_id} not in the peer list")))?;
    let addr = resolve(&me.election.host, me.election.port).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| NodeError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    ElectionNode::start_tcp(node, listener).map_err(|e| NodeError::Unsupported(e.to_string()))
}

impl QuorumPeer {
    /// Runs the peer until `shutdown` turns true.
    pub async fn run(
        mut self,
        election: ElectionHandle,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), NodeError> {
        let config = self.shared.config.clone();
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            self.stop_serving();
            let inputs = ElectionInputs {
                last_logged_zxid: self
                    .storage
                    .log
                    .last_zxid()
                    .ok()
                    .flatten()
                    .unwrap_or(0)
                    .max(self.storage.log_base),
                current_epoch: self.storage.epochs.current_epoch().unwrap_or(0),
            };
            tracing::info!(
                last_logged_zxid = format_args!("{:#x}", inputs.last_logged_zxid),
                current_epoch = inputs.current_epoch,
                "LOOKING"
            );
            let quorum_stats = &self.shared.stats.quorum;
            quorum_stats
                .looking
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            quorum_stats.set_zab_state(ZabState::Election);
            quorum_stats.clear_leader_gauges();
            let started = std::time::Instant::now();
            let decision = tokio::select! {
                d = election.run(inputs) => d.map_err(|e| NodeError::Unsupported(e.to_string()))?,
                _ = shutdown.changed() => return Ok(()),
            };
            let leader = decision.leader();
            let elapsed_ms = started.elapsed().as_millis() as u64;
            quorum_stats.record_election(elapsed_ms);
            quorum_stats.set_leader(Some(leader));
            quorum_stats.set_zab_state(ZabState::Discovery);
            tracing::info!(leader, state = ?decision.state, elapsed_ms, "election decided");
            let result = match decision.state {
                PeerState::Leading => self.lead(&config, stop_signal(&shutdown)).await,
                PeerState::Following => self.learn(&config, leader, false, &shutdown).await,
                PeerState::Observing => self.learn(&config, leader, true, &shutdown).await,
                PeerState::Looking => continue,
            };
            match result {
                Ok(Stopped::Shutdown) => return Ok(()),
                Ok(Stopped::Looking(reason)) => {
                    tracing::info!(%reason, "back to LOOKING");
                }
                Err(e) => {
                    tracing::error!(error = %e, "role failed; back to LOOKING");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn stop_serving(&mut self) {
        self.shared.set_role(Role::NotServing);
        self.shared.close_all();
        self.shared.clear_pending_syncs();
        self.shared.set_learner(None);
        while self.writes.try_recv().is_ok() {}
    }

    async fn lead(
        &mut self,
        config: &Config,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<Stopped, NodeError> {
        let me = config
            .servers
            .get(&self.my_id)
            .ok_or_else(|| NodeError::Unsupported("not in the server list".into()))?;
        let addr = resolve(&me.quorum.host, me.quorum.port).await?;
        let (incoming, _) =
            bind_local(addr.ip(), addr.port())
                .await
                .map_err(|source| NodeError::Bind {
                    addr: addr.to_string(),
                    source,
                })?;
        let ensemble = Ensemble::new(
            config
                .servers
                .values()
                .filter(|s| s.learner_type == LearnerType::Participant)
                .map(|s| s.id),
            config
                .servers
                .values()
                .filter(|s| s.learner_type == LearnerType::Observer)
                .map(|s| s.id),
        );
        let (client, inbox) = LeaderClient::new(PROPOSAL_QUEUE);
        let (status_tx, status_rx) = watch::channel(NodeStatus::default());
        let (events_tx, events_rx) = mpsc::channel(PROPOSAL_QUEUE);
        let inbox = inbox.with_events(events_tx);
        let driver = run_leader(
            self.my_id,
            zab_config(config),
            ensemble,
            driver_options(config),
            &mut self.storage,
            incoming,
            inbox,
            status_tx,
            stop,
        );
        let purger = {
            let client = client.clone();
            purge_log_after_snapshots(self.purge_points.clone(), move |p| {
                let client = client.clone();
                async move { client.purge_log(p.up_to, p.snapshot_bytes).await }
            })
        };
        let processor = leader_processor(
            self.shared.clone(),
            client,
            status_rx,
            &mut self.writes,
            events_rx,
        );
        tokio::pin!(driver);
        tokio::select! {
            r = &mut driver => r.map_err(|e| NodeError::Unsupported(e.to_string())),
            never = purger => match never {},
            () = processor => {
                // The processor only ends when the driver is gone or the proposals are
                // refused; the driver says why.
                driver.await.map_err(|e| NodeError::Unsupported(e.to_string()))
            }
        }
    }

    /// Follows `leader`. The leader opens its quorum port only once it has decided, so a
    /// learner that decided first retries the connection for a few seconds (ZooKeeper's
    /// `connectToLeader` retries too) before it goes back to LOOKING.
    async fn learn(
        &mut self,
        config: &Config,
        leader: u64,
        observer: bool,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<Stopped, NodeError> {
        let deadline = tokio::time::Instant::now() + CONNECT_RETRY_WINDOW;
        // The leader binds its port right after its own decision, usually within a
        // millisecond of ours: retry soon, then back off.
        let mut backoff = CONNECT_RETRY_FIRST;
        loop {
            let started = tokio::time::Instant::now();
            let (result, served) = self
                .learn_once(config, leader, observer, stop_signal(shutdown))
                .await;
            let quick = started.elapsed() < Duration::from_secs(1);
            let retry = matches!(&result, Ok(Stopped::Looking(ZabError::Disconnected(l))) if *l == leader)
                && !served
                && quick
                && tokio::time::Instant::now() + backoff < deadline;
            if !retry {
                return result;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }

    async fn learn_once(
        &mut self,
        config: &Config,
        leader: u64,
        observer: bool,
        stop: impl std::future::Future<Output = ()>,
    ) -> (Result<Stopped, NodeError>, bool) {
        match self.learn_inner(config, leader, observer, stop).await {
            Ok((r, served)) => (Ok(r), served),
            Err(e) => (Err(e), false),
        }
    }

    async fn learn_inner(
        &mut self,
        config: &Config,
        leader: u64,
        observer: bool,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(Stopped, bool), NodeError> {
        let target = config
            .servers
            .get(&leader)
            .ok_or_else(|| NodeError::Unsupported(format!("leader {leader} is not configured")))?;
        let me = config
            .servers
            .get(&self.my_id)
            .ok_or_else(|| NodeError::Unsupported("not in the server list".into()))?;
        let local = resolve(&me.quorum.host, me.quorum.port).await?;
        let dialer = TcpDialer {
            local_ip: Some(local.ip()),
        };
        let leader_addr = format!("{}:{}", target.quorum.host, target.quorum.port);
        let (status_tx, status_rx) = watch::channel(NodeStatus::default());
        let status_rx_served = status_rx.clone();
        let (lclient, inbox) = LearnerClient::new(PROPOSAL_QUEUE);
        let (events_tx, events_rx) = mpsc::channel(PROPOSAL_QUEUE);
        let inbox = inbox.with_events(events_tx);
        let driver = run_learner_with(
            self.my_id,
            leader,
            &leader_addr,
            observer,
            zab_config(config),
            driver_options(config),
            &mut self.storage,
            dialer,
            inbox,
            status_tx,
            stop,
        );
        let purger = {
            let lclient = lclient.clone();
            purge_log_after_snapshots(self.purge_points.clone(), move |p| {
                let lclient = lclient.clone();
                async move { lclient.purge_log(p.up_to).await }
            })
        };
        let forwarder = learner_forwarder(
            self.shared.clone(),
            observer,
            status_rx,
            &mut self.writes,
            lclient,
            events_rx,
        );
        let served = status_rx_served.clone();
        tokio::pin!(driver);
        let r = tokio::select! {
            r = &mut driver => r,
            never = purger => match never {},
            () = forwarder => driver.await,
        };
        let served = served.borrow().serving || served.borrow().epoch != 0;
        r.map(|r| (r, served))
            .map_err(|e| NodeError::Unsupported(e.to_string()))
    }
}

/// How long a learner keeps trying to reach the leader it elected.
const CONNECT_RETRY_WINDOW: Duration = Duration::from_secs(5);
/// The first pause before a learner tries the leader's port again; it doubles up to
/// half a second.
const CONNECT_RETRY_FIRST: Duration = Duration::from_millis(2);

fn stop_signal(shutdown: &watch::Receiver<bool>) -> impl std::future::Future<Output = ()> + use<> {
    let mut s = shutdown.clone();
    async move {
        let _ = s.wait_for(|v| *v).await;
    }
}

/// Turns a forwarded request back into a prep input (or a sync).
fn from_forwarded(req: &ForwardedRequest) -> Option<WriteOp> {
    let auth: Vec<Id> = req
        .auth
        .iter()
        .map(|(s, i)| Id::new(s.clone(), i.clone()))
        .collect();
    let mut body = req.request.clone();
    match OpCode::try_from(req.op_type).ok()? {
        OpCode::CreateSession => {
            let timeout_ms = i32::decode(&mut body).ok()?;
            Some(WriteOp::Prep(PrepInput::CreateSession {
                session: req.session_id,
                timeout_ms,
            }))
        }
        OpCode::CloseSession => Some(WriteOp::Prep(PrepInput::CloseSession {
            session: req.session_id,
            cxid: req.cxid,
        })),
        OpCode::Error => Some(WriteOp::Prep(PrepInput::Malformed {
            session: req.session_id,
            cxid: req.cxid,
        })),
        OpCode::Sync => {
            let r = SyncRequest::decode(&mut body).ok()?;
            Some(WriteOp::Sync {
                session: req.session_id,
                cxid: req.cxid,
                path: r.path,
            })
        }
        op => Some(WriteOp::Prep(match Request::decode(op, &mut body) {
            Ok(request) => PrepInput::Client {
                session: req.session_id,
                cxid: req.cxid,
                request,
                auth,
            },
            // Answered in order with MarshallingError, as the learner's own prep would.
            Err(_) => PrepInput::Malformed {
                session: req.session_id,
                cxid: req.cxid,
            },
        })),
    }
}

/// Turns a local write into a request to forward to the leader.
fn to_forwarded(op: &WriteOp) -> Option<ForwardedRequest> {
    let mut body = BytesMut::new();
    let (session_id, cxid, op_type, auth) = match op {
        WriteOp::Prep(PrepInput::Client {
            session,
            cxid,
            request,
            auth,
        }) => {
            request.encode_body(&mut body);
            (
                *session,
                *cxid,
                request.op_code().code(),
                auth.iter()
                    .map(|i| (i.scheme.clone(), i.id.clone()))
                    .collect(),
            )
        }
        WriteOp::Prep(PrepInput::CreateSession {
            session,
            timeout_ms,
        }) => {
            timeout_ms.encode(&mut body);
            (*session, 0, OpCode::CreateSession.code(), Vec::new())
        }
        WriteOp::Prep(PrepInput::CloseSession { session, cxid }) => {
            (*session, *cxid, OpCode::CloseSession.code(), Vec::new())
        }
        WriteOp::Prep(PrepInput::Malformed { session, cxid }) => {
            (*session, *cxid, OpCode::Error.code(), Vec::new())
        }
        WriteOp::Sync {
            session,
            cxid,
            path,
        } => {
            SyncRequest { path: path.clone() }.encode(&mut body);
            (*session, *cxid, OpCode::Sync.code(), Vec::new())
        }
        // Only the leader removes containers.
        WriteOp::Prep(PrepInput::DeleteContainer { .. }) => return None,
    };
    Some(ForwardedRequest {
        session_id,
        cxid,
        op_type,
        request: body.freeze(),
        auth,
    })
}

/// The leader's request processor: preps in one order, proposes pipelined.
async fn leader_processor(
    shared: Arc<Shared>,
    client: LeaderClient,
    mut status: watch::Receiver<NodeStatus>,
    writes: &mut mpsc::Receiver<WriteOp>,
    mut events: mpsc::Receiver<LeaderEvent>,
) {
    let Ok(serving) = status.wait_for(|s| s.serving).await.map(|s| *s) else {
        return;
    };
    let epoch = serving.epoch;
    shared.track_sessions_of_tree();
    shared.stats.quorum.set_zab_state(ZabState::Broadcast);
    let mut feed = LeaderStatusFeed::default();
    feed.update(&shared.stats.quorum, &serving);
    shared.set_role(Role::Leader);
    tracing::info!(epoch, "serving clients as the leader");
    {
        // Session expiry and container cleanup run only on the leader.
        let (tx, mut rx) = mpsc::channel::<WriteOp>(PROPOSAL_QUEUE);
        let expire =
            tokio::spawn(pipeline::expire_sessions(shared.clone(), tx.clone()).in_current_span());
        let clean = tokio::spawn(pipeline::clean_containers(shared.clone(), tx).in_current_span());
        let mut prep = Prep::new(PrepOptions {
            skip_acl: shared.config.skip_acl,
            ttl_enabled: shared.config.extended_types_enabled,
        });
        let mut zxid = make(epoch, 0);
        let mut first_commit = FirstCommit::new(epoch);
        let mut revalidated = false;
        loop {
            let op = tokio::select! {
                op = writes.recv() => match op { Some(op) => Origin::Local(op), None => break },
                op = rx.recv() => match op { Some(op) => Origin::Local(op), None => break },
                ev = events.recv() => match ev { Some(ev) => Origin::Learner(ev), None => break },
                changed = status.changed() => {
                    if changed.is_err() { break; }
                    let now = *status.borrow();
                    first_commit.observe(now.applied);
                    prep.applied(now.applied);
                    feed.update(&shared.stats.quorum, &now);
                    continue;
                }
            };
            let op = match op {
                Origin::Local(op) => op,
                Origin::Learner(LeaderEvent::Request { from, request }) => {
                    match from_forwarded(&request) {
                        Some(WriteOp::Sync { session, cxid, .. }) => {
                            if client.sync(from, session, cxid).await.is_err() {
                                break;
                            }
                            continue;
                        }
                        Some(op) => op,
                        None => {
                            tracing::warn!(
                                from,
                                op = request.op_type,
                                "undecodable forwarded request dropped"
                            );
                            continue;
                        }
                    }
                }
                Origin::Learner(LeaderEvent::SessionTouches { touches, .. }) => {
                    let now = shared.now_ms();
                    let mut t = shared.sessions();
                    for touch in touches {
                        t.touch(touch.session_id, touch.timeout_ms.max(0) as u32, now);
                    }
                    continue;
                }
                Origin::Learner(LeaderEvent::Revalidate {
                    from,
                    session_id,
                    timeout_ms,
                }) => {
                    let valid = match shared
                        .revalidate(session_id, timeout_ms.max(0) as u32)
                        .await
                    {
                        Validity::Valid => true,
                        Validity::Expired => false,
                        // No longer the leader: no answer (the learner's times out).
                        Validity::Unknown => continue,
                    };
                    if client
                        .revalidate_reply(from, session_id, timeout_ms, valid)
                        .await
                        .is_err()
                    {
                        break;
                    }
                    if !revalidated {
                        revalidated = true;
                        tracing::info!(
                            from,
                            session = format_args!("{session_id:#x}"),
                            valid,
                            "first session revalidated for a learner in this epoch"
                        );
                    }
                    continue;
                }
            };
            match op {
                WriteOp::Sync {
                    session,
                    cxid,
                    path,
                } => shared.sync_after(zxid, session, cxid, path),
                WriteOp::Prep(input) => {
                    zxid += 1;
                    let entry = {
                        let tree = shared.tree();
                        prep.prep(&tree, &mut &*shared, &input, zxid, now_ms())
                    };
                    // The reply goes out when the txn is applied; the commit handle
                    // is not needed.
                    if client.submit(Bytes::from(entry.encode())).await.is_err() {
                        break;
                    }
                }
            }
        }
        expire.abort();
        clean.abort();
    }
}

enum Origin {
    Local(WriteOp),
    Learner(LeaderEvent),
}

/// Logs the first txn of an epoch that this node applies (a failover stage boundary).
struct FirstCommit {
    first: Zxid,
    logged: bool,
}

impl FirstCommit {
    fn new(epoch: i64) -> Self {
        FirstCommit {
            first: make(epoch, 1),
            logged: false,
        }
    }

    fn observe(&mut self, applied: Zxid) {
        if !self.logged && applied >= self.first {
            self.logged = true;
            tracing::info!(
                zxid = format_args!("{applied:#x}"),
                "first txn of the epoch committed and applied"
            );
        }
    }
}

/// A learner's forwarder: sends its clients' writes, syncs, sessions and touches to the
/// leader and hands the leader's answers back.
async fn learner_forwarder(
    shared: Arc<Shared>,
    observer: bool,
    mut status: watch::Receiver<NodeStatus>,
    writes: &mut mpsc::Receiver<WriteOp>,
    leader: LearnerClient,
    mut events: mpsc::Receiver<LearnerEvent>,
) {
    let Ok(serving) = status.wait_for(|s| s.serving).await.map(|s| *s) else {
        return;
    };
    let mut first_commit = FirstCommit::new(serving.epoch);
    let (reval_tx, mut reval_rx) = mpsc::channel::<Revalidation>(64);
    shared.set_learner(Some(reval_tx));
    shared.stats.quorum.set_zab_state(ZabState::Broadcast);
    shared.set_role(if observer {
        Role::Observer
    } else {
        Role::Follower
    });
    tracing::info!(observer, "serving clients as a learner");
    let mut pending_reval: HashMap<i64, Vec<oneshot::Sender<bool>>> = HashMap::new();
    let mut sync_paths: HashMap<(i64, i32), String> = HashMap::new();
    let half_tick = Duration::from_millis(u64::from(shared.config.tick_time_ms.max(2)) / 2);
    let mut tick = tokio::time::interval(half_tick);
    loop {
        tokio::select! {
            op = writes.recv() => {
                let Some(op) = op else { break };
                if let WriteOp::Sync { session, cxid, path } = &op {
                    sync_paths.insert((*session, *cxid), path.clone());
                }
                if let Some(req) = to_forwarded(&op)
                    && leader.forward(req).await.is_err()
                {
                    break;
                }
            }
            r = reval_rx.recv() => {
                let Some(r) = r else { break };
                pending_reval.entry(r.session).or_default().push(r.reply);
                if leader.revalidate(r.session, r.timeout_ms as i32).await.is_err() {
                    break;
                }
            }
            ev = events.recv() => match ev {
                None => break,
                Some(LearnerEvent::SyncReply { session_id, cxid, zxid }) => {
                    let path = sync_paths.remove(&(session_id, cxid)).unwrap_or_default();
                    shared.sync_after(zxid, session_id, cxid, path);
                }
                Some(LearnerEvent::RevalidateReply { session_id, valid, .. }) => {
                    for reply in pending_reval.remove(&session_id).unwrap_or_default() {
                        let _ = reply.send(valid);
                    }
                }
            },
            _ = tick.tick() => {
                for (session_id, timeout_ms) in shared.take_touches() {
                    if leader.touch(session_id, timeout_ms as i32).is_err() {
                        return;
                    }
                }
            }
            changed = status.changed() => {
                if changed.is_err() {
                    break;
                }
                first_commit.observe(status.borrow().applied);
            }
        }
    }
}

/// The local IP a node's sockets use (its `server.N` host).
pub async fn local_ip(config: &Config, my_id: u64) -> Option<IpAddr> {
    let me = config.servers.get(&my_id)?;
    resolve(&me.quorum.host, me.quorum.port)
        .await
        .ok()
        .map(|a| a.ip())
}
