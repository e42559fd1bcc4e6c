//! What a serving node shares between its client connections and its write pipeline:
//! the database, the watches, the connected sessions, the counters — and the two halves
//! of ZooKeeper's `FinalRequestProcessor`: answering reads against the local tree, and
//! applying committed txns (firing watches, answering the client that sent the write).
//!
//! Lock order, everywhere: `db` before `watches` before `conns`. A read registers its
//! watch while it holds the `db` read lock and an apply fires watches while it holds the
//! `db` write lock, so no change can slip between a read and its watch; and a client's
//! events are queued on its connection before the apply releases the lock, so any later
//! read of that client is answered after the event (ZooKeeper's ordering guarantee).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use tokio::sync::{mpsc, watch};
use zk_proto::data::{ErrorCode, EventType, Id, KeeperState, OpCode, Stat, WatcherType};
use zk_proto::jute::records::ClientInfo as WireClientInfo;
use zk_proto::jute::{
    Create2Response, CreateResponse, ErrorResponse, ExistsResponse, GetAclResponse,
    GetAllChildrenNumberResponse, GetChildren2Response, GetChildrenResponse, GetDataResponse,
    GetEphemeralsResponse, MultiOp, MultiResult, ReplyPacket, Request, Response, SetAclResponse,
    SetDataResponse, WatcherEvent, WhoAmIResponse,
};
use zk_proto::txn::TxnEntry;
use zk_proto::zxid::Zxid;
use zk_storage::log::is_successor;
use zk_storage::tree::{ApplyOutcome, DataTree};

use crate::acl;
use crate::config::Config;
use crate::session::SessionTracker;
use crate::watch::{SetWatches, TriggerAcls, WatchManager, WatchedEvent};

/// A committed txn that does not follow the last applied one: a bug or corrupt storage;
/// the node must stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("txn {zxid:#x} does not follow the last applied txn {applied:#x}")]
pub struct ApplyOrderError {
    /// The last applied zxid.
    pub applied: Zxid,
    /// The refused txn's zxid.
    pub zxid: Zxid,
}

/// A client connection's id (unique in this process).
pub type ConnId = u64;

/// What the rest of the server sends to a connection's task.
#[derive(Debug)]
pub enum Outbound {
    /// The session's createSession txn was applied: answer the handshake.
    SessionCreated,
    /// The reply to the oldest outstanding write of the connection.
    Reply(ReplyPacket),
    /// A watch event.
    Notify(ReplyPacket),
    /// The session was closed or expired (or moved to another connection): close after
    /// writing what is queued.
    Close,
}

/// A connected session's way back to its connection.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    /// The connection.
    pub id: ConnId,
    /// The client's address.
    pub remote: SocketAddr,
    /// Its queue. Unbounded, but bounded in practice: replies by the connection's cap on
    /// outstanding requests, events by the watches the session set.
    pub tx: mpsc::UnboundedSender<Outbound>,
    /// Its counters (`cons`).
    pub stats: Arc<ConnStats>,
    /// The ids the connection is authenticated as (its ip, then what `addauth` added):
    /// a watch event reaches it only if these may READ the znode the event is about.
    pub auth: Arc<RwLock<Vec<Id>>>,
}

/// The node's role as `srvr` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Not serving clients (starting, or LOOKING / syncing with a leader).
    NotServing,
    /// A standalone server.
    Standalone,
    /// The ensemble's leader.
    Leader,
    /// A follower.
    Follower,
    /// An observer.
    Observer,
}

impl Role {
    /// The word `srvr`/`stat` print after `Mode:`.
    pub fn mode_name(self) -> &'static str {
        match self {
            Role::NotServing => "not serving",
            Role::Standalone => "standalone",
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Observer => "observer",
        }
    }
    /// True when clients are served.
    pub fn is_serving(self) -> bool {
        self != Role::NotServing
    }
}

/// Counters for `srvr`, `mntr` and `/metrics`.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Packets received from clients.
    pub packets_received: AtomicU64,
    /// Packets sent to clients.
    pub packets_sent: AtomicU64,
    /// Requests answered (for the average latency).
    pub requests: AtomicU64,
    /// Sum of request latencies, µs.
    pub latency_total_us: AtomicU64,
    /// Largest request latency, µs.
    pub latency_max_us: AtomicU64,
    /// Smallest request latency, µs (`u64::MAX` until the first).
    pub latency_min_us: AtomicU64,
    /// Requests received but not answered yet.
    pub outstanding: AtomicU64,
    /// Txns applied.
    pub txns_applied: AtomicU64,
    /// Group commits (log flushes) done.
    pub log_flushes: AtomicU64,
    /// Sum of flush times, µs.
    pub flush_total_us: AtomicU64,
    /// Connections accepted since start.
    pub connections_accepted: AtomicU64,
    /// Latencies of requests answered without a txn (`readlatency`).
    pub read_latency: crate::metrics::Histogram,
    /// Latencies of requests that went through a txn (`updatelatency`).
    pub update_latency: crate::metrics::Histogram,
    /// Ensemble counters, fed by election and Zab.
    pub quorum: crate::metrics::QuorumStats,
}

impl ServerStats {
    /// Records one answered request that took `us` µs.
    pub fn record_latency(&self, us: u64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.latency_total_us.fetch_add(us, Ordering::Relaxed);
        self.latency_max_us.fetch_max(us, Ordering::Relaxed);
        self.latency_min_us.fetch_min(us, Ordering::Relaxed);
    }

    /// Records one answered request (`write`: it went through a txn) that took `us` µs.
    pub fn record_request(&self, us: u64, write: bool) {
        self.record_latency(us);
        if write {
            self.update_latency.record(us);
        } else {
            self.read_latency.record(us);
        }
    }

    /// Resets the latency and packet counters (`srst`); the histograms `/metrics` exports
    /// keep counting.
    pub fn reset(&self) {
        for c in [
            &self.packets_received,
            &self.packets_sent,
            &self.requests,
            &self.latency_total_us,
            &self.latency_max_us,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        self.latency_min_us.store(u64::MAX, Ordering::Relaxed);
    }
}

/// One client connection's counters (ZooKeeper's `ServerCnxn` statistics), for `cons`,
/// `stat` and `crst`. The connection's task counts; admin commands read.
#[derive(Debug)]
pub struct ConnStats {
    /// The connection.
    pub id: ConnId,
    /// The client's address.
    pub remote: SocketAddr,
    /// Wall-clock ms when the connection was accepted.
    pub established_ms: u64,
    session: AtomicI64,
    timeout_ms: AtomicU64,
    packets_received: AtomicU64,
    packets_sent: AtomicU64,
    outstanding: AtomicU64,
    responses: Mutex<ResponseStats>,
}

/// The part of [`ConnStats`] updated per response, under one lock so it stays coherent.
#[derive(Debug, Clone, Copy)]
struct ResponseStats {
    op: &'static str,
    cxid: i64,
    zxid: i64,
    time_ms: u64,
    latency_us: u64,
    min_us: u64,
    max_us: u64,
    count: u64,
    total_us: u64,
}

impl ResponseStats {
    /// ZooKeeper's values after `resetStats`.
    const RESET: ResponseStats = ResponseStats {
        op: "NA",
        cxid: -1,
        zxid: -1,
        time_ms: 0,
        latency_us: 0,
        min_us: u64::MAX,
        max_us: 0,
        count: 0,
        total_us: 0,
    };
}

/// A copy of a connection's counters; latencies in ms as ZooKeeper prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnStatsView {
    /// The connection.
    pub id: ConnId,
    /// The client's address.
    pub remote: SocketAddr,
    /// Wall-clock ms when the connection was accepted.
    pub established_ms: u64,
    /// The session (0 before the handshake, and for four-letter words).
    pub session_id: i64,
    /// The negotiated session timeout.
    pub timeout_ms: u64,
    /// Packets received on this connection.
    pub packets_received: u64,
    /// Packets sent on this connection.
    pub packets_sent: u64,
    /// Requests of this connection not answered yet.
    pub outstanding: u64,
    /// The last request answered (`FinalRequestProcessor`'s names: `GETD`, `PING`, …).
    pub last_op: &'static str,
    /// Its xid (-1: none).
    pub last_cxid: i64,
    /// The zxid of its reply (-1: none).
    pub last_zxid: i64,
    /// When it was answered, wall-clock ms.
    pub last_response_ms: u64,
    /// Its latency.
    pub last_latency_ms: u64,
    /// Smallest latency.
    pub min_latency_ms: u64,
    /// Average latency (integer ms, as ZooKeeper).
    pub avg_latency_ms: u64,
    /// Largest latency.
    pub max_latency_ms: u64,
}

impl ConnStats {
    /// Fresh counters of connection `id` from `remote`, accepted at `established_ms`.
    pub fn new(id: ConnId, remote: SocketAddr, established_ms: u64) -> ConnStats {
        ConnStats {
            id,
            remote,
            established_ms,
            session: AtomicI64::new(0),
            timeout_ms: AtomicU64::new(0),
            packets_received: AtomicU64::new(0),
            packets_sent: AtomicU64::new(0),
            outstanding: AtomicU64::new(0),
            responses: Mutex::new(ResponseStats::RESET),
        }
    }

    /// The session is established on this connection.
    pub fn set_session(&self, session: i64, timeout_ms: u32) {
        self.session.store(session, Ordering::Relaxed);
        self.timeout_ms
            .store(u64::from(timeout_ms), Ordering::Relaxed);
    }

    /// One packet received.
    pub fn received(&self) {
        self.packets_received.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` packets sent.
    pub fn sent(&self, n: u64) {
        self.packets_sent.fetch_add(n, Ordering::Relaxed);
    }

    /// A request starts waiting for its answer.
    pub fn request_queued(&self) {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
    }

    /// A request of op `op` (a [`last_op_name`]) and xid `cxid` was answered with
    /// `zxid` at `now_ms`, `latency_us` after it arrived.
    pub fn responded(&self, op: &'static str, cxid: i32, zxid: i64, latency_us: u64, now_ms: u64) {
        let _ = self
            .outstanding
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        let mut r = lock(&self.responses);
        // Special xids (ping -2, auth -4, setWatches -8) leave the last cxid alone.
        if cxid >= 0 {
            r.cxid = i64::from(cxid);
        }
        r.op = op;
        r.zxid = zxid;
        r.time_ms = now_ms;
        r.latency_us = latency_us;
        r.min_us = r.min_us.min(latency_us);
        r.max_us = r.max_us.max(latency_us);
        r.count += 1;
        r.total_us = r.total_us.saturating_add(latency_us);
    }

    /// Zeroes the packet counts and latencies (`crst`, `ServerCnxn.resetStats`).
    pub fn reset(&self) {
        self.packets_received.store(0, Ordering::Relaxed);
        self.packets_sent.store(0, Ordering::Relaxed);
        *lock(&self.responses) = ResponseStats::RESET;
    }

    /// The current figures.
    pub fn view(&self) -> ConnStatsView {
        let r = *lock(&self.responses);
        let ms = |us: u64| us / 1000;
        ConnStatsView {
            id: self.id,
            remote: self.remote,
            established_ms: self.established_ms,
            session_id: self.session.load(Ordering::Relaxed),
            timeout_ms: self.timeout_ms.load(Ordering::Relaxed),
            packets_received: self.packets_received.load(Ordering::Relaxed),
            packets_sent: self.packets_sent.load(Ordering::Relaxed),
            outstanding: self.outstanding.load(Ordering::Relaxed),
            last_op: r.op,
            last_cxid: r.cxid,
            last_zxid: r.zxid,
            last_response_ms: r.time_ms,
            last_latency_ms: ms(r.latency_us),
            min_latency_ms: if r.count == 0 { 0 } else { ms(r.min_us) },
            avg_latency_ms: ms(r.total_us.checked_div(r.count).unwrap_or(0)),
            max_latency_ms: ms(r.max_us),
        }
    }
}

/// The name `cons` prints for the last operation of a connection
/// (`FinalRequestProcessor`'s `lastOp`).
pub fn last_op_name(op: OpCode) -> &'static str {
    match op {
        OpCode::Ping => "PING",
        OpCode::CreateSession => "SESS",
        OpCode::Multi => "MULT",
        OpCode::MultiRead => "MLTR",
        OpCode::Create | OpCode::Create2 | OpCode::CreateTtl | OpCode::CreateContainer => "CREA",
        OpCode::Delete | OpCode::DeleteContainer => "DELE",
        OpCode::SetData => "SETD",
        OpCode::Reconfig => "RECO",
        OpCode::SetAcl => "SETA",
        OpCode::CloseSession => "CLOS",
        OpCode::Sync => "SYNC",
        OpCode::Check => "CHEC",
        OpCode::Exists => "EXIS",
        OpCode::GetData => "GETD",
        OpCode::SetWatches => "SETW",
        OpCode::SetWatches2 => "STW2",
        OpCode::AddWatch => "ADDW",
        OpCode::GetAcl => "GETA",
        OpCode::GetChildren | OpCode::GetChildren2 => "GETC",
        OpCode::GetAllChildrenNumber => "GETACN",
        OpCode::CheckWatches => "CHKW",
        OpCode::RemoveWatches => "REMW",
        OpCode::WhoAmI => "HOMI",
        OpCode::GetEphemerals => "GETE",
        OpCode::Auth | OpCode::Sasl | OpCode::Notification | OpCode::Error => "NA",
    }
}

/// A client connection listed in [`Shared::clients`] until this guard drops.
#[derive(Debug)]
pub struct ClientRegistration {
    shared: Arc<Shared>,
    /// The connection's counters.
    pub stats: Arc<ConnStats>,
}

impl Drop for ClientRegistration {
    fn drop(&mut self) {
        lock(&self.shared.clients).remove(&self.stats.id);
    }
}

/// The state of one serving node, shared by its connections and its pipeline.
#[derive(Debug)]
pub struct Shared {
    /// The configuration.
    pub config: Arc<Config>,
    /// This server's id (0 for a standalone server without `myid`).
    pub my_id: u64,
    /// When the process started.
    pub started: Instant,
    /// Wall-clock ms at start.
    started_wall_ms: u64,
    /// Counters.
    pub stats: ServerStats,
    tree: RwLock<DataTree>,
    sessions: Mutex<SessionTracker>,
    watches: Mutex<WatchManager>,
    conns: Mutex<HashMap<i64, ConnHandle>>,
    /// Every open client connection (with a session or not), for `cons` and `stat`.
    clients: Mutex<HashMap<ConnId, Arc<ConnStats>>>,
    /// The last tree digest computed for `hash`: when, at which zxid, the digest.
    digest_cache: Mutex<Option<(Instant, Zxid, u64)>>,
    role: watch::Sender<Role>,
    next_conn_id: AtomicU64,
    /// Client syncs waiting for the tree to reach a zxid, oldest first.
    pending_syncs: Mutex<VecDeque<PendingSync>>,
    /// On a learner: sessions touched since the last report to the leader.
    touched: Mutex<Option<HashMap<i64, u32>>>,
    /// On a learner: where session revalidations go (to the leader).
    revalidator: Mutex<Option<mpsc::Sender<Revalidation>>>,
}

/// The answer to a session revalidation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// The session lives (and was touched).
    Valid,
    /// The session expired, was closed, or never existed.
    Expired,
    /// No answer: the learner lost its leader before it answered. The client must try
    /// again, here or on another server; its session may well be alive.
    Unknown,
}

/// A client `sync` answered once the tree has applied `target`.
#[derive(Debug)]
struct PendingSync {
    target: Zxid,
    session: i64,
    cxid: i32,
    path: String,
}

/// A learner's question to its leader: is this session still valid?
#[derive(Debug)]
pub struct Revalidation {
    /// The session.
    pub session: i64,
    /// Its negotiated timeout.
    pub timeout_ms: u32,
    /// The answer.
    pub reply: tokio::sync::oneshot::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock is a bug that already stopped that task; the data
    // (watch tables, the connection map) is still consistent enough to go on serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Wraps an opened database.
    pub fn new(config: Arc<Config>, my_id: u64, tree: DataTree) -> Arc<Shared> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut tracker = SessionTracker::new(my_id, config.tick_time_ms, now);
        // Sessions in the database live on until they expire or their clients return.
        for (id, timeout) in tree.sessions() {
            tracker.track_session(id, timeout.max(0) as u32, now);
        }
        let stats = ServerStats::default();
        stats.latency_min_us.store(u64::MAX, Ordering::Relaxed);
        Arc::new(Shared {
            config,
            my_id,
            started: Instant::now(),
            started_wall_ms: now,
            stats,
            sessions: Mutex::new(tracker),
            tree: RwLock::new(tree),
            watches: Mutex::new(WatchManager::new()),
            conns: Mutex::new(HashMap::new()),
            clients: Mutex::new(HashMap::new()),
            digest_cache: Mutex::new(None),
            role: watch::channel(Role::NotServing).0,
            next_conn_id: AtomicU64::new(1),
            pending_syncs: Mutex::new(VecDeque::new()),
            touched: Mutex::new(None),
            revalidator: Mutex::new(None),
        })
    }

    /// Shared access to the tree.
    pub fn tree(&self) -> RwLockReadGuard<'_, DataTree> {
        self.tree.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Exclusive access to the tree.
    pub fn tree_mut(&self) -> RwLockWriteGuard<'_, DataTree> {
        self.tree.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The session tracker (authoritative on a standalone server and on the leader).
    pub fn sessions(&self) -> MutexGuard<'_, SessionTracker> {
        lock(&self.sessions)
    }

    /// The watch manager.
    pub fn watches(&self) -> MutexGuard<'_, WatchManager> {
        lock(&self.watches)
    }

    /// The last zxid applied to the tree.
    pub fn last_processed_zxid(&self) -> Zxid {
        self.tree().last_processed_zxid()
    }

    /// The current role.
    pub fn role(&self) -> Role {
        *self.role.borrow()
    }

    /// Changes the role (and wakes whoever waits on [`Shared::watch_role`]).
    pub fn set_role(&self, role: Role) {
        self.role.send_replace(role);
    }

    /// A receiver of role changes.
    pub fn watch_role(&self) -> watch::Receiver<Role> {
        self.role.subscribe()
    }

    /// Milliseconds on a clock that never jumps (the session tracker's time): the wall
    /// clock at start plus the monotonic time since.
    pub fn now_ms(&self) -> u64 {
        self.started_wall_ms + self.started.elapsed().as_millis() as u64
    }

    /// A fresh connection id.
    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers the connection of `session`; the connection it replaces, if any, is told
    /// to close (the client moved to a new connection).
    pub fn attach(&self, session: i64, handle: ConnHandle) {
        if let Some(old) = lock(&self.conns).insert(session, handle.clone())
            && old.id != handle.id
        {
            let _ = old.tx.send(Outbound::Close);
        }
    }

    /// Forgets the connection of `session` if it is still `conn`, and drops the session's
    /// watches (the client sets them again with setWatches when it reconnects).
    pub fn detach(&self, session: i64, conn: ConnId) {
        let mut watches = lock(&self.watches);
        let mut conns = lock(&self.conns);
        if conns.get(&session).is_some_and(|h| h.id == conn) {
            conns.remove(&session);
            watches.remove_session(session);
        }
    }

    /// The connections, for `cons`/`stat`/`dump`.
    pub fn connections(&self) -> Vec<(i64, ConnHandle)> {
        let mut v: Vec<_> = lock(&self.conns)
            .iter()
            .map(|(s, h)| (*s, h.clone()))
            .collect();
        v.sort_by_key(|(s, _)| *s);
        v
    }

    /// Lists a new client connection from `remote` (with a fresh id) until the returned
    /// guard drops.
    pub fn register_client(self: &Arc<Self>, remote: SocketAddr) -> ClientRegistration {
        let wall_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let stats = Arc::new(ConnStats::new(self.next_conn_id(), remote, wall_ms));
        lock(&self.clients).insert(stats.id, stats.clone());
        ClientRegistration {
            shared: self.clone(),
            stats,
        }
    }

    /// Every open client connection, in the order they were accepted.
    pub fn clients(&self) -> Vec<Arc<ConnStats>> {
        let mut v: Vec<_> = lock(&self.clients).values().cloned().collect();
        v.sort_by_key(|c| c.id);
        v
    }

    /// `(zxid, digest)` of the tree (`hash`). The digest walks every node under the read
    /// lock, so one computed less than `max_age` ago is answered again, with the zxid it
    /// was computed at.
    pub fn tree_digest(&self, max_age: std::time::Duration) -> (Zxid, u64) {
        let mut cache = lock(&self.digest_cache);
        if let Some((at, zxid, digest)) = *cache
            && at.elapsed() < max_age
        {
            return (zxid, digest);
        }
        let (zxid, digest) = {
            let tree = self.tree();
            (tree.last_processed_zxid(), tree.digest())
        };
        *cache = Some((Instant::now(), zxid, digest));
        (zxid, digest)
    }

    /// Zeroes every connection's counters (`crst`).
    pub fn reset_connection_stats(&self) {
        for c in self.clients() {
            c.reset();
        }
    }

    /// Number of connected sessions.
    pub fn connection_count(&self) -> usize {
        lock(&self.conns).len()
    }

    /// Number of connections from `ip` (for `maxClientCnxns`).
    pub fn connections_from(&self, ip: std::net::IpAddr) -> usize {
        lock(&self.conns)
            .values()
            .filter(|h| h.remote.ip() == ip)
            .count()
    }

    /// Sends `msg` to the connection of `session`, if it is connected here.
    pub fn send_to(&self, session: i64, msg: Outbound) -> bool {
        match lock(&self.conns).get(&session) {
            Some(h) => h.tx.send(msg).is_ok(),
            None => false,
        }
    }

    /// Closes every client connection (the node stops serving: new leader, shutdown).
    pub fn close_all(&self) {
        let mut watches = lock(&self.watches);
        let mut conns = lock(&self.conns);
        for (session, h) in conns.drain() {
            let _ = h.tx.send(Outbound::Close);
            watches.remove_session(session);
        }
    }

    // -- sessions across servers -------------------------------------------------------

    /// A client packet arrived for `session`: keep it alive here, and on a learner
    /// remember to report it to the leader.
    pub fn touch_session(&self, session: i64, timeout_ms: u32) {
        let now = self.now_ms();
        self.sessions().touch(session, timeout_ms, now);
        if let Some(t) = lock(&self.touched).as_mut() {
            t.insert(session, timeout_ms);
        }
    }

    /// The sessions touched since the last call (learners report them in PING answers).
    pub fn take_touches(&self) -> Vec<(i64, u32)> {
        match lock(&self.touched).as_mut() {
            Some(t) => t.drain().collect(),
            None => Vec::new(),
        }
    }

    /// Makes this node a learner (touches collected, revalidations sent to the leader
    /// through `leader`) or, with `None`, the session authority (standalone or leader).
    pub fn set_learner(&self, leader: Option<mpsc::Sender<Revalidation>>) {
        *lock(&self.touched) = leader.as_ref().map(|_| HashMap::new());
        *lock(&self.revalidator) = leader;
    }

    /// Is `session` still valid? The session authority answers from its tracker; a
    /// learner asks its leader (ZooKeeper's REVALIDATE). A node that is neither (it lost
    /// its leader, or is between roles) has no answer: [`Validity::Unknown`]; its own
    /// tracker does not know the sessions created through other servers.
    pub async fn revalidate(&self, session: i64, timeout_ms: u32) -> Validity {
        let to_leader = lock(&self.revalidator).clone();
        match to_leader {
            None if !matches!(self.role(), Role::Leader | Role::Standalone) => Validity::Unknown,
            None => {
                let now = self.now_ms();
                if self.sessions().touch(session, timeout_ms, now) {
                    Validity::Valid
                } else {
                    Validity::Expired
                }
            }
            Some(tx) => {
                let (reply, rx) = tokio::sync::oneshot::channel();
                let ask = Revalidation {
                    session,
                    timeout_ms,
                    reply,
                };
                if tx.send(ask).await.is_err() {
                    return Validity::Unknown;
                }
                let wait = std::time::Duration::from_millis(u64::from(timeout_ms).max(1000));
                match tokio::time::timeout(wait, rx).await {
                    Ok(Ok(true)) => Validity::Valid,
                    Ok(Ok(false)) => Validity::Expired,
                    Ok(Err(_)) | Err(_) => Validity::Unknown,
                }
            }
        }
    }

    /// Makes the tracker know every session of the tree (a new leader takes over the
    /// sessions its predecessor tracked, with a fresh timeout, as ZooKeeper does).
    pub fn track_sessions_of_tree(&self) {
        let now = self.now_ms();
        let tree = self.tree();
        let mut tracker = self.sessions();
        tracker.take_over(
            tree.sessions()
                .map(|(id, timeout)| (id, timeout.max(0) as u32)),
            now,
        );
    }

    /// Answers a client's `sync` once the tree has applied `target` (at once if it has).
    pub fn sync_after(&self, target: Zxid, session: i64, cxid: i32, path: String) {
        let tree = self.tree();
        let applied = tree.last_processed_zxid();
        if applied >= target {
            self.send_to(session, Outbound::Reply(sync_reply(cxid, applied, path)));
        } else {
            lock(&self.pending_syncs).push_back(PendingSync {
                target,
                session,
                cxid,
                path,
            });
        }
    }

    /// Drops the syncs waiting for a tree that will not get there (leader change).
    pub fn clear_pending_syncs(&self) {
        lock(&self.pending_syncs).clear();
    }

    fn answer_syncs(&self, applied: Zxid, conns: &HashMap<i64, ConnHandle>) {
        let mut pending = lock(&self.pending_syncs);
        while pending.front().is_some_and(|p| p.target <= applied) {
            if let Some(p) = pending.pop_front()
                && let Some(h) = conns.get(&p.session)
            {
                let _ =
                    h.tx.send(Outbound::Reply(sync_reply(p.cxid, applied, p.path)));
            }
        }
    }

    // -- applying committed txns --------------------------------------------------------

    /// Applies committed (and logged) txns in zxid order: updates the tree, fires
    /// watches, answers the clients connected here that sent them. A txn that does not
    /// follow the last applied one is refused before anything changes.
    pub fn apply_committed(&self, entries: &[TxnEntry]) -> Result<(), ApplyOrderError> {
        let mut tree = self.tree_mut();
        for entry in entries {
            let applied = tree.last_processed_zxid();
            if !is_successor(applied, entry.header.zxid) {
                return Err(ApplyOrderError {
                    applied,
                    zxid: entry.header.zxid,
                });
            }
            self.apply_one(&mut tree, entry);
        }
        Ok(())
    }

    /// Applies one txn to `tree` (the `db` write lock held), fires its watches and answers
    /// its client. The ACLs of the nodes the txn deletes are read before it applies, so
    /// their `NodeDeleted` events can be checked against them.
    pub fn apply_one(&self, tree: &mut DataTree, entry: &TxnEntry) -> ApplyOutcome {
        let acls = if self.watches().is_empty() {
            TriggerAcls::default()
        } else {
            TriggerAcls::before_apply(tree, entry)
        };
        let outcome = tree.apply(entry);
        self.stats.txns_applied.fetch_add(1, Ordering::Relaxed);
        self.after_apply(tree, entry, &outcome, &acls);
        outcome
    }

    /// Fires the watches of one applied txn and answers its client; called with the `db`
    /// write lock held. As ZooKeeper's `ServerCnxn.process(WatchedEvent, List<ACL>)`
    /// (unless `skipACL`), an event goes only to a connection whose ids may READ the
    /// znode it is about — the node itself for `NodeCreated`, `NodeDataChanged` and
    /// `NodeDeleted`, the parent for `NodeChildrenChanged`; a one-shot watch is used up
    /// even when its event is withheld. `acls` holds the ACLs of the nodes the txn
    /// deleted ([`TriggerAcls::before_apply`]).
    pub fn after_apply(
        &self,
        tree: &DataTree,
        entry: &TxnEntry,
        outcome: &ApplyOutcome,
        acls: &TriggerAcls,
    ) {
        let mut watches = lock(&self.watches);
        let conns = lock(&self.conns);
        for (i, t) in outcome.triggers.iter().enumerate() {
            let fired = watches.trigger(&t.path, t.event, outcome.zxid);
            if fired.is_empty() {
                continue;
            }
            let node_acl = acls.for_trigger(tree, i, &t.path, t.event);
            for (session, ev) in fired {
                let Some(h) = conns.get(&session) else {
                    continue;
                };
                if !self.config.skip_acl {
                    let ids = h.auth.read().unwrap_or_else(|e| e.into_inner());
                    if acl::check(node_acl, &ids, zk_proto::data::perms::READ).is_err() {
                        tracing::trace!(
                            session = format_args!("{session:#x}"),
                            path = %ev.path,
                            event = ?ev.event_type,
                            "event not delivered: no READ permission on the node"
                        );
                        continue;
                    }
                }
                let _ = h.tx.send(Outbound::Notify(notification(&ev)));
            }
        }
        let session = entry.header.client_id;
        if entry.header.op == OpCode::CloseSession {
            watches.remove_session(session);
            self.sessions().remove_session(session);
        }
        let Some(h) = conns.get(&session) else {
            self.answer_syncs(outcome.zxid, &conns);
            return;
        };
        match entry.header.op {
            OpCode::CreateSession => {
                let _ = h.tx.send(Outbound::SessionCreated);
            }
            OpCode::CloseSession => {
                // A client's close gets its reply; an expiry (cxid 0) just closes.
                if entry.header.cxid != 0 {
                    let _ = h.tx.send(Outbound::Reply(ReplyPacket::new(
                        entry.header.cxid,
                        outcome.zxid,
                        ErrorCode::Ok,
                        Response::Empty,
                    )));
                }
                let _ = h.tx.send(Outbound::Close);
            }
            OpCode::DeleteContainer => {}
            _ => {
                let _ =
                    h.tx.send(Outbound::Reply(write_reply(tree, entry, outcome)));
            }
        }
        self.answer_syncs(outcome.zxid, &conns);
    }

    // -- reads --------------------------------------------------------------------------

    /// Answers a request that needs no txn (reads, watches, ping, whoAmI) from the local
    /// tree. `events` receives the events setWatches fires at once (to send before the
    /// reply).
    pub fn read(
        &self,
        session: i64,
        auth: &[Id],
        xid: i32,
        request: &Request,
        events: &mut Vec<ReplyPacket>,
    ) -> ReplyPacket {
        let tree = self.tree();
        let zxid = tree.last_processed_zxid();
        let result = self.read_locked(&tree, session, auth, request, events);
        match result {
            Ok(body) => ReplyPacket::new(xid, zxid, ErrorCode::Ok, body),
            Err(err) => ReplyPacket::new(xid, zxid, err, Response::Empty),
        }
    }

    fn read_locked(
        &self,
        tree: &DataTree,
        session: i64,
        auth: &[Id],
        request: &Request,
        events: &mut Vec<ReplyPacket>,
    ) -> Result<Response, ErrorCode> {
        let check_read = |acl: &[zk_proto::data::Acl]| -> Result<(), ErrorCode> {
            if self.config.skip_acl {
                return Ok(());
            }
            acl::check(acl, auth, zk_proto::data::perms::READ).map_err(|e| e.code())
        };
        match request {
            Request::Ping => Ok(Response::Empty),
            Request::Exists(r) => {
                if r.path.contains('\0') {
                    return Err(ErrorCode::BadArguments);
                }
                // ZooKeeper 3.8 answers exists without an ACL check.
                let node = tree.get(node_path(&r.path));
                if r.watch {
                    self.watches().add_data_watch(session, &r.path);
                }
                node.map(|n| Response::Exists(ExistsResponse { stat: n.stat() }))
                    .ok_or(ErrorCode::NoNode)
            }
            Request::GetData(r) => self
                .get_data(tree, session, &r.path, r.watch, &check_read)
                .map(Response::GetData),
            Request::GetChildren(r) => self
                .get_children(tree, session, &r.path, r.watch, &check_read)
                .map(|(children, _)| Response::GetChildren(GetChildrenResponse { children })),
            Request::GetChildren2(r) => self
                .get_children(tree, session, &r.path, r.watch, &check_read)
                .map(|(children, stat)| {
                    Response::GetChildren2(GetChildren2Response { children, stat })
                }),
            Request::GetAcl(r) => {
                let node = tree.get(node_path(&r.path)).ok_or(ErrorCode::NoNode)?;
                let acl = if self.config.skip_acl {
                    node.acl().to_vec()
                } else {
                    acl::acl_for_reader(node.acl(), auth).map_err(|e| e.code())?
                };
                Ok(Response::GetAcl(GetAclResponse {
                    acl,
                    stat: node.stat(),
                }))
            }
            Request::GetAllChildrenNumber(r) => {
                let node = tree.get(node_path(&r.path)).ok_or(ErrorCode::NoNode)?;
                check_read(node.acl())?;
                // ZooKeeper counts the keys of its node map that start with `path + "/"`:
                // for "" that is every entry but the root's "" one.
                let n = if r.path.is_empty() {
                    tree.all_children_number("/").map(|n| n + 1)
                } else {
                    tree.all_children_number(&r.path)
                };
                let n = n.unwrap_or(0);
                Ok(Response::GetAllChildrenNumber(
                    GetAllChildrenNumberResponse {
                        total_number: i32::try_from(n).unwrap_or(i32::MAX),
                    },
                ))
            }
            Request::GetEphemerals(r) => {
                let prefix = r.prefix_path.trim();
                let ephemerals: Vec<String> = if prefix.is_empty() || prefix == "/" {
                    tree.ephemerals(session)
                        .into_iter()
                        .map(str::to_owned)
                        .collect()
                } else {
                    tree.ephemerals(session)
                        .into_iter()
                        .filter(|p| p.starts_with(r.prefix_path.as_str()))
                        .map(str::to_owned)
                        .collect()
                };
                Ok(Response::GetEphemerals(GetEphemeralsResponse {
                    ephemerals,
                }))
            }
            Request::MultiRead(ops) => {
                let mut results = Vec::with_capacity(ops.len());
                for op in ops {
                    let r = match op {
                        MultiOp::GetData(g) => self
                            .get_data(tree, session, &g.path, false, &check_read)
                            .map(MultiResult::GetData),
                        MultiOp::GetChildren(g) => self
                            .get_children(tree, session, &g.path, false, &check_read)
                            .map(|(children, _)| {
                                MultiResult::GetChildren(GetChildrenResponse { children })
                            }),
                        _ => Err(ErrorCode::MarshallingError),
                    };
                    results.push(r.unwrap_or_else(MultiResult::error));
                }
                Ok(Response::Multi(results))
            }
            Request::WhoAmI => Ok(Response::WhoAmI(WhoAmIResponse {
                client_info: acl::who_am_i(auth)
                    .into_iter()
                    .map(|c| WireClientInfo {
                        auth_scheme: c.auth_scheme,
                        user: c.user,
                    })
                    .collect(),
            })),
            Request::CheckWatches(r) => {
                let kind = removable_watcher_type(r.watcher_type)?;
                self.watches()
                    .check(session, &r.path, kind)
                    .map(|()| Response::Empty)
                    .map_err(|e| e.code())
            }
            Request::RemoveWatches(r) => {
                let kind = removable_watcher_type(r.watcher_type)?;
                self.watches()
                    .remove(session, &r.path, kind)
                    .map(|()| Response::Empty)
                    .map_err(|e| e.code())
            }
            Request::AddWatch(r) => {
                // An unknown mode fails in ZooKeeper while the request is read.
                let mode = r.watch_mode().map_err(|_| ErrorCode::MarshallingError)?;
                self.watches().add_watch(session, &r.path, mode);
                Ok(Response::Error(ErrorResponse { err: 0 }))
            }
            Request::SetWatches(r) => {
                let req = SetWatches {
                    relative_zxid: r.relative_zxid,
                    data: &r.data_watches,
                    exist: &r.exist_watches,
                    child: &r.child_watches,
                    persistent: &[],
                    persistent_recursive: &[],
                };
                self.set_watches(tree, session, req, events);
                Ok(Response::Empty)
            }
            Request::SetWatches2(r) => {
                let req = SetWatches {
                    relative_zxid: r.relative_zxid,
                    data: &r.data_watches,
                    exist: &r.exist_watches,
                    child: &r.child_watches,
                    persistent: &r.persistent_watches,
                    persistent_recursive: &r.persistent_recursive_watches,
                };
                self.set_watches(tree, session, req, events);
                Ok(Response::Empty)
            }
            _ => Err(ErrorCode::Unimplemented),
        }
    }

    fn set_watches(
        &self,
        tree: &DataTree,
        session: i64,
        req: SetWatches<'_>,
        events: &mut Vec<ReplyPacket>,
    ) {
        let fired = self.watches().set_watches(session, req, |p| tree.stat(p));
        events.extend(fired.iter().map(notification));
    }

    fn get_data(
        &self,
        tree: &DataTree,
        session: i64,
        path: &str,
        watch: bool,
        check_read: &dyn Fn(&[zk_proto::data::Acl]) -> Result<(), ErrorCode>,
    ) -> Result<GetDataResponse, ErrorCode> {
        let node = tree.get(node_path(path)).ok_or(ErrorCode::NoNode)?;
        check_read(node.acl())?;
        if watch {
            self.watches().add_data_watch(session, path);
        }
        Ok(GetDataResponse {
            // Null data is answered as null (length -1), as ZooKeeper does.
            data: node.data().map(bytes::Bytes::copy_from_slice),
            stat: node.stat(),
        })
    }

    fn get_children(
        &self,
        tree: &DataTree,
        session: i64,
        path: &str,
        watch: bool,
        check_read: &dyn Fn(&[zk_proto::data::Acl]) -> Result<(), ErrorCode>,
    ) -> Result<(Vec<String>, Stat), ErrorCode> {
        let node = tree.get(node_path(path)).ok_or(ErrorCode::NoNode)?;
        check_read(node.acl())?;
        let children = tree
            .children_unsorted(node_path(path))
            .map(|c| c.map(str::to_owned).collect())
            .unwrap_or_default();
        if watch {
            self.watches().add_child_watch(session, path);
        }
        Ok((children, node.stat()))
    }
}

/// The prep stage's session checks, on the tracker of the session authority (a
/// standalone server or the leader).
impl crate::prep::SessionCheck for &Shared {
    fn check_session(&mut self, session: i64) -> Result<(), ErrorCode> {
        match self.sessions().session(session) {
            Some(info) if !info.closing => Ok(()),
            _ => Err(ErrorCode::SessionExpired),
        }
    }
    fn track_session(&mut self, session: i64, timeout_ms: i32) {
        let now = self.now_ms();
        self.sessions()
            .track_session(session, timeout_ms.max(0) as u32, now);
    }
    fn set_closing(&mut self, session: i64) {
        self.sessions().set_closing(session);
    }
}

/// The reply to a `sync`.
pub fn sync_reply(cxid: i32, zxid: Zxid, path: String) -> ReplyPacket {
    ReplyPacket::new(
        cxid,
        zxid,
        ErrorCode::Ok,
        Response::Sync(zk_proto::jute::SyncResponse { path }),
    )
}

/// The node a read names. ZooKeeper keeps the root under "" as well as "/", so a read
/// of "" sees the root (a watch set on "" stays on "", where no event fires).
fn node_path(path: &str) -> &str {
    if path.is_empty() { "/" } else { path }
}

/// The watcher type of checkWatches/removeWatches. ZooKeeper 3.8 knows children (1), data
/// (2) and any (3) only; another value fails while the request is read (MarshallingError).
fn removable_watcher_type(t: i32) -> Result<WatcherType, ErrorCode> {
    match WatcherType::try_from(t) {
        Ok(kind @ (WatcherType::Children | WatcherType::Data | WatcherType::Any)) => Ok(kind),
        _ => Err(ErrorCode::MarshallingError),
    }
}

/// The wire form of a watch event.
pub fn notification(ev: &WatchedEvent) -> ReplyPacket {
    ReplyPacket::notification(WatcherEvent::new(ev.event_type, ev.state, ev.path.clone()))
}

/// A session-state event (e.g. `Expired`) with no path.
pub fn state_event(state: KeeperState) -> ReplyPacket {
    ReplyPacket::notification(WatcherEvent::new(EventType::None, state, ""))
}

/// The reply to a write, from its applied outcome (`FinalRequestProcessor`).
pub fn write_reply(tree: &DataTree, entry: &TxnEntry, outcome: &ApplyOutcome) -> ReplyPacket {
    let xid = entry.header.cxid;
    let zxid = outcome.zxid;
    let path = || outcome.path.clone().unwrap_or_default();
    let stat = || outcome.stat.unwrap_or_default();
    let body = match entry.header.op {
        OpCode::Create => Response::Create(CreateResponse { path: path() }),
        OpCode::Create2 | OpCode::CreateContainer | OpCode::CreateTtl => {
            Response::Create2(Create2Response {
                path: path(),
                stat: stat(),
            })
        }
        OpCode::SetData => Response::SetData(SetDataResponse { stat: stat() }),
        OpCode::SetAcl => Response::SetAcl(SetAclResponse { stat: stat() }),
        OpCode::Check => Response::SetData(SetDataResponse {
            stat: outcome
                .path
                .as_deref()
                .and_then(|p| tree.stat(p))
                .unwrap_or_default(),
        }),
        OpCode::Multi => {
            // A failed multi is not an error of the reply: its results say what failed.
            let results = outcome.multi.iter().map(multi_result).collect();
            return ReplyPacket::new(xid, zxid, ErrorCode::Ok, Response::Multi(results));
        }
        _ => Response::Empty,
    };
    ReplyPacket::new(xid, zxid, outcome.err, body)
}

fn multi_result(op: &zk_storage::tree::OpOutcome) -> MultiResult {
    if op.err != ErrorCode::Ok || op.op == OpCode::Error {
        return MultiResult::error(op.err);
    }
    let path = op.path.clone().unwrap_or_default();
    let stat = op.stat.unwrap_or_default();
    match op.op {
        // ZooKeeper 3.8 answers a create2 inside a multi with a plain create result.
        OpCode::Create | OpCode::Create2 => MultiResult::Create(CreateResponse { path }),
        OpCode::CreateContainer | OpCode::CreateTtl => {
            MultiResult::Create2(Create2Response { path, stat })
        }
        OpCode::Delete | OpCode::DeleteContainer => MultiResult::Delete,
        OpCode::SetData => MultiResult::SetData(SetDataResponse { stat }),
        OpCode::Check => MultiResult::Check,
        _ => MultiResult::error(ErrorCode::MarshallingError),
    }
}

/// True for requests answered from the local tree without a txn.
pub fn is_read(request: &Request) -> bool {
    matches!(
        request,
        Request::Ping
            | Request::Exists(_)
            | Request::GetData(_)
            | Request::GetChildren(_)
            | Request::GetChildren2(_)
            | Request::GetAcl(_)
            | Request::GetAllChildrenNumber(_)
            | Request::GetEphemerals(_)
            | Request::MultiRead(_)
            | Request::WhoAmI
            | Request::CheckWatches(_)
            | Request::RemoveWatches(_)
            | Request::AddWatch(_)
            | Request::SetWatches(_)
            | Request::SetWatches2(_)
    )
}

#[cfg(test)]
mod tests;
