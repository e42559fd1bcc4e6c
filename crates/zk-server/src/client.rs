//! A small async ZooKeeper client on tokio and the jute codec of `zk-proto`, for this
//! project's own tools (`zk-cli`, the benchmark and chaos drivers).
//!
//! * One background task per client owns the connection. It connects to one of the
//!   servers of a connect string (`host:port,host:port`, tried in a shuffled order),
//!   opens or resumes a session (timeout negotiation, session id and password), and then
//!   pipelines requests: many are in flight at once, each answered through its own
//!   oneshot channel when the reply with its xid arrives.
//! * It pings after a third of the negotiated session timeout without sending, and
//!   declares the connection lost when nothing arrived for two thirds of it (ZooKeeper's
//!   `readTimeout`).
//! * On a lost connection the requests in flight fail with `ConnectionLoss`, and the task
//!   connects to the next server with the same session id, password and last zxid seen;
//!   then it re-registers the watches it holds (`setWatches`, or `setWatches2` when there
//!   are persistent watches) and resends the `auth` credentials, as the Java client does.
//!   A server that answers "expired" ends the client with `SessionExpired`.
//! * Watch events arrive on a bounded channel ([`WatchedEvent`]); the session's state
//!   ([`SessionState`]) is a `tokio::sync::watch` value.
//!
//! Everything is bounded: at most [`ClientBuilder::max_in_flight`] requests are on the
//! wire (later ones wait in a bounded queue), the event channel has
//! [`ClientBuilder::event_capacity`] slots — when it is full the task stops reading from
//! the socket until there is room (it keeps pinging, so the session stays alive) — and
//! frames are limited to `jute.maxbuffer` plus headers. The watch tables kept for
//! re-registration hold one entry per path the caller watches.
//!
//! ```no_run
//! # async fn demo() -> Result<(), zk_server::client::Error> {
//! use zk_proto::data::{Acl, CreateMode};
//! use zk_server::client::Client;
//!
//! let (client, mut events) = Client::connect("127.0.0.1:2181").await?;
//! client.create("/app", b"v1", &Acl::open_unsafe(), CreateMode::Persistent).await?;
//! let (data, stat) = client.get_data("/app", true).await?;
//! assert_eq!(data.as_deref(), Some(&b"v1"[..]));
//! client.set_data("/app", b"v2", Some(stat.version)).await?;
//! let event = events.recv().await; // NodeDataChanged for /app
//! # let _ = event;
//! client.close().await?;
//! # Ok(()) }
//! ```

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::codec::{Encoder, Framed, FramedRead};
use zk_proto::data::{Acl, AddWatchMode, CreateMode, ErrorCode, EventType, KeeperState, Stat};
use zk_proto::jute::{
    AUTH_XID, AddWatchRequest, AuthPacket, ClientInfo, ConnectRequest, ConnectResponse,
    CreateRequest, CreateTtlRequest, DeleteRequest, ExistsRequest, GetAclRequest,
    GetAllChildrenNumberRequest, GetChildrenRequest, GetDataRequest, GetEphemeralsRequest,
    JuteCodec, JuteError, MultiOp, MultiResult, NOTIFICATION_XID, PASSWORD_LEN, PING_XID, Record,
    ReplyPacket, Request, RequestPacket, Response, SET_WATCHES_XID, SetAclRequest, SetDataRequest,
    SetWatches, SetWatches2, SyncRequest, WatcherEvent,
};
use zk_proto::zxid::Zxid;

/// The session timeout asked for unless the builder says otherwise (zkCli.sh's default).
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(30);
/// How many requests may be on the wire at once by default.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1000;
/// Default capacity of the watch event channel.
pub const DEFAULT_EVENT_CAPACITY: usize = 1024;
/// The port of a connect-string entry that names none.
pub const DEFAULT_PORT: u16 = 2181;

/// Requests waiting for the connection task (beyond those in flight).
const COMMAND_CAPACITY: usize = 256;
/// Pings are sent at least this often, whatever the session timeout (`ClientCnxn`).
const MAX_PING_INTERVAL: Duration = Duration::from_secs(10);
/// Pings are sent at most this often, even if a server grants a tiny timeout.
const MIN_PING_INTERVAL: Duration = Duration::from_millis(50);
/// The shortest silence that counts as a lost connection.
const MIN_READ_TIMEOUT: Duration = Duration::from_millis(100);
/// The smallest frame limit a builder accepts (a handshake and small requests fit).
const MIN_FRAME_BYTES: usize = 1024;
/// The shortest time given to one connection attempt (TCP connect and handshake).
const MIN_ATTEMPT_TIMEOUT: Duration = Duration::from_millis(500);
/// Longest pause after every server of the connect string failed once.
const MAX_RECONNECT_PAUSE: Duration = Duration::from_secs(1);
/// Path bytes per setWatches packet on reconnect (the Java client's 128 KiB batches).
const SET_WATCHES_MAX_BYTES: usize = 128 * 1024;
/// Bytes buffered for the socket above which no new request is taken.
const OUT_HIGH_WATER_BYTES: usize = 1 << 20;
/// Credentials remembered for re-authentication on reconnect.
const MAX_AUTH_INFOS: usize = 64;
/// Servers named in one connect string.
const MAX_HOSTS: usize = 256;

/// What a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with a ZooKeeper error code, or the client reports one of
    /// ZooKeeper's client-side codes: `ConnectionLoss` (the connection broke while the
    /// request was outstanding, or there was none), `SessionExpired`, `AuthFailed`.
    #[error("KeeperErrorCode = {0:?}")]
    Keeper(ErrorCode),
    /// The server answered with an error code ZooKeeper does not define.
    #[error("unknown error code {0} from the server")]
    UnknownCode(i32),
    /// A multi transaction failed: nothing of it was applied. `index` is the op that
    /// failed with `code`; `results` holds one result per op as the server sent them.
    #[error("multi failed at op {index}: KeeperErrorCode = {code:?}")]
    Multi {
        /// The failing op's error.
        code: ErrorCode,
        /// Position of the failing op.
        index: usize,
        /// Every op's result (the others are rolled back).
        results: Vec<MultiResult>,
    },
    /// The client was closed (by [`Client::close`]) or its connection task has ended.
    #[error("the client is closed")]
    Closed,
    /// The connect string is malformed.
    #[error("invalid connect string {input:?}: {reason}")]
    ConnectString {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A path the server would refuse anyway (not absolute, empty segment, …).
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The path.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An argument the client refuses before sending (for example a TTL mode without a
    /// TTL).
    #[error("bad argument: {0}")]
    BadArgument(String),
    /// No server of the connect string accepted a session in time.
    #[error("could not connect to any of {servers} within {timeout:?}")]
    NoServer {
        /// The connect string.
        servers: String,
        /// How long the client tried.
        timeout: Duration,
    },
    /// The request does not fit in one frame (`jute.maxbuffer`).
    #[error("request too large: {0}")]
    TooLarge(#[source] JuteError),
    /// The server answered with a reply of the wrong shape for the request.
    #[error("unexpected reply body for {0}")]
    UnexpectedReply(&'static str),
}

impl Error {
    /// The ZooKeeper error code this error stands for, as the Java client would report it
    /// (`Closed` is `SessionExpired` there, local argument errors `BadArguments`).
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Keeper(code) | Error::Multi { code, .. } => *code,
            Error::UnknownCode(_) | Error::UnexpectedReply(_) => ErrorCode::SystemError,
            Error::Closed => ErrorCode::SessionExpired,
            Error::ConnectString { .. } | Error::InvalidPath { .. } | Error::BadArgument(_) => {
                ErrorCode::BadArguments
            }
            Error::NoServer { .. } => ErrorCode::ConnectionLoss,
            Error::TooLarge(_) => ErrorCode::MarshallingError,
        }
    }

    fn from_code(code: i32) -> Error {
        match ErrorCode::try_from(code) {
            Ok(code) => Error::Keeper(code),
            Err(raw) => Error::UnknownCode(raw),
        }
    }
}

/// The state of the client's session, as `Watcher.Event.KeeperState` reports it to Java
/// clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// The first connection is being made.
    Connecting,
    /// Connected to a server with a live session.
    Connected,
    /// The connection was lost; the client is reconnecting with the same session.
    Disconnected,
    /// A server said the session has expired; the client is done.
    Expired,
    /// A server refused the credentials given to [`Client::auth`]; the client is done.
    AuthFailed,
    /// [`Client::close`] was called (or every handle dropped); the client is done.
    Closed,
}

impl SessionState {
    /// True for the states the client never leaves.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            SessionState::Expired | SessionState::AuthFailed | SessionState::Closed
        )
    }

    /// The error a request gets once the client is in this terminal state.
    fn terminal_error(self) -> Error {
        match self {
            SessionState::Expired => Error::Keeper(ErrorCode::SessionExpired),
            SessionState::AuthFailed => Error::Keeper(ErrorCode::AuthFailed),
            _ => Error::Closed,
        }
    }
}

/// A watch notification: what happened, and to which znode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedEvent {
    /// NodeCreated, NodeDeleted, NodeDataChanged, NodeChildrenChanged, …
    pub event_type: EventType,
    /// The session state the server reported with it (SyncConnected).
    pub keeper_state: KeeperState,
    /// The znode.
    pub path: String,
}

impl fmt::Display for WatchedEvent {
    /// The Java client's `WatchedEvent.toString()`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WatchedEvent state:{:?} type:{:?} path:{}",
            self.keeper_state, self.event_type, self.path
        )
    }
}

/// How a client connects; see [`Client::builder`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    connect_string: String,
    session_timeout: Duration,
    connect_timeout: Option<Duration>,
    max_in_flight: usize,
    event_capacity: usize,
    max_frame_bytes: usize,
    session: Option<(i64, Bytes)>,
}

impl ClientBuilder {
    /// The session timeout to ask for (the server clamps it to `2..20 × tickTime`).
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// How long [`ClientBuilder::connect`] tries before it gives up with
    /// [`Error::NoServer`]; by default the session timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// How many requests may be on the wire at once (at least 1).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// Capacity of the watch event channel (at least 1).
    pub fn event_capacity(mut self, n: usize) -> Self {
        self.event_capacity = n.max(1);
        self
    }

    /// Largest frame sent or accepted, in bytes (default: `jute.maxbuffer` + 1 KiB; at
    /// least 1 KiB).
    pub fn max_frame_bytes(mut self, n: usize) -> Self {
        self.max_frame_bytes = n.max(MIN_FRAME_BYTES);
        self
    }

    /// Resumes an existing session (its id and password, from [`Client::session_id`]
    /// and [`Client::session_password`]) instead of opening a new one.
    pub fn session(mut self, session_id: i64, password: impl Into<Bytes>) -> Self {
        self.session = Some((session_id, password.into()));
        self
    }

    /// Connects: returns once a server accepted the session, with the client and the
    /// receiving end of its watch events.
    pub async fn connect(self) -> Result<(Client, mpsc::Receiver<WatchedEvent>), Error> {
        let hosts = parse_connect_string(&self.connect_string)?;
        let wait = self.connect_timeout.unwrap_or(self.session_timeout);
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_CAPACITY);
        let (event_tx, event_rx) = mpsc::channel(self.event_capacity);
        let (state_tx, mut state_rx) = watch::channel(SessionState::Connecting);
        let (session_id, passwd) = self
            .session
            .clone()
            .unwrap_or((0, Bytes::from_static(&[0; PASSWORD_LEN])));
        let info = Arc::new(Mutex::new(SessionInfo {
            session_id,
            passwd: passwd.clone(),
            timeout_ms: 0,
            last_zxid: 0,
            server: None,
        }));
        let requested_ms = i32::try_from(self.session_timeout.as_millis()).unwrap_or(i32::MAX);
        let task = Task {
            hosts: shuffled(hosts),
            next_host: 0,
            requested_timeout_ms: requested_ms,
            negotiated_timeout_ms: requested_ms,
            session_id,
            passwd,
            last_zxid: 0,
            next_xid: 1,
            max_in_flight: self.max_in_flight,
            codec: JuteCodec::with_max_frame_bytes(self.max_frame_bytes),
            cmd_rx,
            events: event_tx,
            stalled: None,
            state: state_tx,
            info: info.clone(),
            watches: WatchTable::default(),
            auths: Vec::new(),
        };
        tokio::spawn(task.run());
        let client = Client {
            cmds: cmd_tx,
            info,
            state: state_rx.clone(),
        };
        let ready = tokio::time::timeout(
            wait,
            state_rx.wait_for(|s| *s == SessionState::Connected || s.is_terminal()),
        )
        .await;
        match ready {
            Ok(Ok(state)) if *state == SessionState::Connected => Ok((client, event_rx)),
            Ok(Ok(state)) => Err(state.terminal_error()),
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => Err(Error::NoServer {
                servers: self.connect_string,
                timeout: wait,
            }),
        }
    }
}

/// What the handles know of the session (the task keeps it current).
#[derive(Debug, Clone)]
struct SessionInfo {
    session_id: i64,
    passwd: Bytes,
    timeout_ms: i32,
    last_zxid: Zxid,
    server: Option<SocketAddr>,
}

/// A handle on a ZooKeeper session. Cheap to clone; every clone talks through the same
/// connection. Dropping the last handle drops the connection without closing the session
/// (it expires on the server, as when a process dies); call [`Client::close`] to end it.
#[derive(Debug, Clone)]
pub struct Client {
    cmds: mpsc::Sender<Command>,
    info: Arc<Mutex<SessionInfo>>,
    state: watch::Receiver<SessionState>,
}

/// What the handles send to the connection task.
enum Command {
    /// A request with an ordinary xid.
    Request {
        request: Request,
        reply: oneshot::Sender<Result<Response, Error>>,
    },
    /// An `auth` packet (special xid, answered in order of sending).
    Auth {
        packet: AuthPacket,
        reply: oneshot::Sender<Result<(), Error>>,
    },
}

fn lock(info: &Mutex<SessionInfo>) -> MutexGuard<'_, SessionInfo> {
    // The data is plain values: a panic elsewhere cannot leave it half-written.
    info.lock().unwrap_or_else(|e| e.into_inner())
}

impl Client {
    /// A builder for a client of the servers in `connect_string` (`host:port,...`).
    pub fn builder(connect_string: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            connect_string: connect_string.into(),
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            connect_timeout: None,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            event_capacity: DEFAULT_EVENT_CAPACITY,
            max_frame_bytes: zk_proto::jute::DEFAULT_MAX_FRAME_BYTES,
            session: None,
        }
    }

    /// Connects with the default settings.
    pub async fn connect(
        connect_string: impl Into<String>,
    ) -> Result<(Client, mpsc::Receiver<WatchedEvent>), Error> {
        Self::builder(connect_string).connect().await
    }

    /// The session id (0 before the first connection).
    pub fn session_id(&self) -> i64 {
        lock(&self.info).session_id
    }

    /// The session password, to resume the session from another client.
    pub fn session_password(&self) -> Bytes {
        lock(&self.info).passwd.clone()
    }

    /// The session timeout the server granted.
    pub fn session_timeout(&self) -> Duration {
        Duration::from_millis(u64::try_from(lock(&self.info).timeout_ms).unwrap_or(0))
    }

    /// The highest zxid seen in a reply.
    pub fn last_zxid(&self) -> Zxid {
        lock(&self.info).last_zxid
    }

    /// The server that answered the latest handshake (the current connection's, when
    /// connected).
    pub fn server(&self) -> Option<SocketAddr> {
        lock(&self.info).server
    }

    /// The session's state now.
    pub fn state(&self) -> SessionState {
        *self.state.borrow()
    }

    /// A receiver of the session's state changes from now on (the current state counts
    /// as seen).
    pub fn state_changes(&self) -> watch::Receiver<SessionState> {
        let mut rx = self.state.clone();
        rx.mark_unchanged();
        rx
    }

    /// The error for a request the task can no longer answer.
    fn gone(&self) -> Error {
        let state = *self.state.borrow();
        if state.is_terminal() {
            state.terminal_error()
        } else {
            Error::Closed
        }
    }

    /// Sends one request and waits for its reply.
    async fn call(&self, request: Request) -> Result<Response, Error> {
        let (reply, rx) = oneshot::channel();
        self.cmds
            .send(Command::Request { request, reply })
            .await
            .map_err(|_| self.gone())?;
        rx.await.map_err(|_| self.gone())?
    }

    /// Adds credentials to the session (`addAuthInfo`): `digest` with `user:password`,
    /// and so on. They are sent again after every reconnect. A refusal ends the client
    /// with [`SessionState::AuthFailed`], as in ZooKeeper.
    pub async fn auth(&self, scheme: &str, auth: &[u8]) -> Result<(), Error> {
        let packet = AuthPacket {
            auth_type: 0,
            scheme: scheme.to_owned(),
            auth: Bytes::copy_from_slice(auth),
        };
        let (reply, rx) = oneshot::channel();
        self.cmds
            .send(Command::Auth { packet, reply })
            .await
            .map_err(|_| self.gone())?;
        rx.await.map_err(|_| self.gone())?
    }

    /// Creates a znode in any mode but the TTL ones (see [`Client::create_ttl`]) and
    /// returns its path (with the sequence suffix for sequential modes). Containers are
    /// created with `createContainer`, the rest with `create`.
    pub async fn create(
        &self,
        path: &str,
        data: &[u8],
        acl: &[Acl],
        mode: CreateMode,
    ) -> Result<String, Error> {
        if mode.is_container() {
            return Ok(self.create2(path, data, acl, mode).await?.0);
        }
        let request = Request::Create(create_request(path, data, acl, mode)?);
        match self.call(request).await? {
            Response::Create(r) => Ok(r.path),
            _ => Err(Error::UnexpectedReply("create")),
        }
    }

    /// Creates a znode (`create2`, or `createContainer` for [`CreateMode::Container`])
    /// and returns its path and stat.
    pub async fn create2(
        &self,
        path: &str,
        data: &[u8],
        acl: &[Acl],
        mode: CreateMode,
    ) -> Result<(String, Stat), Error> {
        let create = create_request(path, data, acl, mode)?;
        let request = if mode.is_container() {
            Request::CreateContainer(create)
        } else {
            Request::Create2(create)
        };
        match self.call(request).await? {
            Response::Create2(r) => Ok((r.path, r.stat)),
            _ => Err(Error::UnexpectedReply("create2")),
        }
    }

    /// Creates a container znode (deleted by the server once its last child is gone).
    pub async fn create_container(
        &self,
        path: &str,
        data: &[u8],
        acl: &[Acl],
    ) -> Result<(String, Stat), Error> {
        self.create2(path, data, acl, CreateMode::Container).await
    }

    /// Creates a TTL znode (`createTTL`, mode [`CreateMode::PersistentWithTtl`] or
    /// [`CreateMode::PersistentSequentialWithTtl`]); the server must have
    /// `extendedTypesEnabled=true`.
    pub async fn create_ttl(
        &self,
        path: &str,
        data: &[u8],
        acl: &[Acl],
        mode: CreateMode,
        ttl: Duration,
    ) -> Result<(String, Stat), Error> {
        if !mode.is_ttl() {
            return Err(Error::BadArgument(format!(
                "{mode:?} is not a TTL create mode"
            )));
        }
        validate_path(path, mode.is_sequential())?;
        let ttl = i64::try_from(ttl.as_millis())
            .ok()
            .filter(|ms| *ms > 0)
            .ok_or_else(|| Error::BadArgument(format!("TTL {ttl:?} out of range")))?;
        let request = Request::CreateTtl(CreateTtlRequest {
            path: path.to_owned(),
            data: Some(Bytes::copy_from_slice(data)),
            acl: acl.to_vec(),
            flags: mode.code(),
            ttl,
        });
        match self.call(request).await? {
            Response::Create2(r) => Ok((r.path, r.stat)),
            _ => Err(Error::UnexpectedReply("createTTL")),
        }
    }

    /// Deletes a znode; `version` must match unless it is `None`.
    pub async fn delete(&self, path: &str, version: Option<i32>) -> Result<(), Error> {
        validate_path(path, false)?;
        let request = Request::Delete(DeleteRequest {
            path: path.to_owned(),
            version: version.unwrap_or(-1),
        });
        self.call(request).await.map(|_| ())
    }

    /// The stat of a znode, `None` if it does not exist. With `watch`, a data watch is
    /// left (an exists watch when the node is absent).
    pub async fn exists(&self, path: &str, watch: bool) -> Result<Option<Stat>, Error> {
        validate_path(path, false)?;
        let request = Request::Exists(ExistsRequest {
            path: path.to_owned(),
            watch,
        });
        match self.call(request).await {
            Ok(Response::Exists(r)) => Ok(Some(r.stat)),
            Ok(_) => Err(Error::UnexpectedReply("exists")),
            Err(Error::Keeper(ErrorCode::NoNode)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The data (`None` if the node was created with null data) and stat of a znode.
    pub async fn get_data(&self, path: &str, watch: bool) -> Result<(Option<Bytes>, Stat), Error> {
        validate_path(path, false)?;
        let request = Request::GetData(GetDataRequest {
            path: path.to_owned(),
            watch,
        });
        match self.call(request).await? {
            Response::GetData(r) => Ok((r.data, r.stat)),
            _ => Err(Error::UnexpectedReply("getData")),
        }
    }

    /// Replaces a znode's data; `version` must match unless it is `None`.
    pub async fn set_data(
        &self,
        path: &str,
        data: &[u8],
        version: Option<i32>,
    ) -> Result<Stat, Error> {
        validate_path(path, false)?;
        let request = Request::SetData(SetDataRequest {
            path: path.to_owned(),
            data: Some(Bytes::copy_from_slice(data)),
            version: version.unwrap_or(-1),
        });
        match self.call(request).await? {
            Response::SetData(r) => Ok(r.stat),
            _ => Err(Error::UnexpectedReply("setData")),
        }
    }

    /// A znode's ACL and stat.
    pub async fn get_acl(&self, path: &str) -> Result<(Vec<Acl>, Stat), Error> {
        validate_path(path, false)?;
        let request = Request::GetAcl(GetAclRequest {
            path: path.to_owned(),
        });
        match self.call(request).await? {
            Response::GetAcl(r) => Ok((r.acl, r.stat)),
            _ => Err(Error::UnexpectedReply("getACL")),
        }
    }

    /// Replaces a znode's ACL; `version` (the aversion) must match unless it is `None`.
    pub async fn set_acl(
        &self,
        path: &str,
        acl: &[Acl],
        version: Option<i32>,
    ) -> Result<Stat, Error> {
        validate_path(path, false)?;
        let request = Request::SetAcl(SetAclRequest {
            path: path.to_owned(),
            acl: acl.to_vec(),
            version: version.unwrap_or(-1),
        });
        match self.call(request).await? {
            Response::SetAcl(r) => Ok(r.stat),
            _ => Err(Error::UnexpectedReply("setACL")),
        }
    }

    /// The names of a znode's children (in the server's order). With `watch`, a child
    /// watch is left.
    pub async fn get_children(&self, path: &str, watch: bool) -> Result<Vec<String>, Error> {
        validate_path(path, false)?;
        let request = Request::GetChildren(GetChildrenRequest {
            path: path.to_owned(),
            watch,
        });
        match self.call(request).await? {
            Response::GetChildren(r) => Ok(r.children),
            _ => Err(Error::UnexpectedReply("getChildren")),
        }
    }

    /// The children and the stat of a znode (`getChildren2`).
    pub async fn get_children2(
        &self,
        path: &str,
        watch: bool,
    ) -> Result<(Vec<String>, Stat), Error> {
        validate_path(path, false)?;
        let request = Request::GetChildren2(GetChildrenRequest {
            path: path.to_owned(),
            watch,
        });
        match self.call(request).await? {
            Response::GetChildren2(r) => Ok((r.children, r.stat)),
            _ => Err(Error::UnexpectedReply("getChildren2")),
        }
    }

    /// Waits until the server this client talks to has applied every write the leader
    /// committed before the sync; returns the path.
    pub async fn sync(&self, path: &str) -> Result<String, Error> {
        validate_path(path, false)?;
        let request = Request::Sync(SyncRequest {
            path: path.to_owned(),
        });
        match self.call(request).await? {
            Response::Sync(r) => Ok(r.path),
            _ => Err(Error::UnexpectedReply("sync")),
        }
    }

    /// Runs write ops (create, delete, setData, check) as one transaction: all apply or
    /// none. A failed transaction is [`Error::Multi`], naming the op that failed.
    pub async fn multi(&self, ops: Vec<MultiOp>) -> Result<Vec<MultiResult>, Error> {
        if let Some(op) = ops.iter().find(|op| op.is_read()) {
            return Err(Error::BadArgument(format!(
                "{:?} is a read op; use multi_read",
                op.op_code()
            )));
        }
        self.multi_any(Request::Multi(ops)).await
    }

    /// Runs read ops (getData, getChildren) together (`multiRead`); each result is a
    /// value or an error of its own.
    pub async fn multi_read(&self, ops: Vec<MultiOp>) -> Result<Vec<MultiResult>, Error> {
        if let Some(op) = ops.iter().find(|op| !op.is_read()) {
            return Err(Error::BadArgument(format!(
                "{:?} is a write op; use multi",
                op.op_code()
            )));
        }
        match self.call(Request::MultiRead(ops)).await? {
            Response::Multi(results) => Ok(results),
            _ => Err(Error::UnexpectedReply("multiRead")),
        }
    }

    async fn multi_any(&self, request: Request) -> Result<Vec<MultiResult>, Error> {
        let results = match self.call(request).await? {
            Response::Multi(results) => results,
            _ => return Err(Error::UnexpectedReply("multi")),
        };
        let failed = results.iter().enumerate().find_map(|(i, r)| match r {
            MultiResult::Error(e) if e.err != 0 => Some((i, e.err)),
            _ => None,
        });
        match failed {
            None => Ok(results),
            Some((index, err)) => Err(Error::Multi {
                code: ErrorCode::try_from(err).unwrap_or(ErrorCode::SystemError),
                index,
                results,
            }),
        }
    }

    /// The number of all descendants of a znode.
    pub async fn get_all_children_number(&self, path: &str) -> Result<i32, Error> {
        validate_path(path, false)?;
        let request = Request::GetAllChildrenNumber(GetAllChildrenNumberRequest {
            path: path.to_owned(),
        });
        match self.call(request).await? {
            Response::GetAllChildrenNumber(r) => Ok(r.total_number),
            _ => Err(Error::UnexpectedReply("getAllChildrenNumber")),
        }
    }

    /// The paths of this session's ephemeral nodes that start with `prefix` (`/` for
    /// all).
    pub async fn get_ephemerals(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let request = Request::GetEphemerals(GetEphemeralsRequest {
            prefix_path: prefix.to_owned(),
        });
        match self.call(request).await? {
            Response::GetEphemerals(r) => Ok(r.ephemerals),
            _ => Err(Error::UnexpectedReply("getEphemerals")),
        }
    }

    /// Adds a persistent (or persistent recursive) watch on a path: it stays until the
    /// session ends and fires for every change (of the node, or of any descendant).
    pub async fn add_watch(&self, path: &str, mode: AddWatchMode) -> Result<(), Error> {
        validate_path(path, false)?;
        let request = Request::AddWatch(AddWatchRequest {
            path: path.to_owned(),
            mode: mode.code(),
        });
        match self.call(request).await? {
            Response::Error(e) if e.err == 0 => Ok(()),
            Response::Error(e) => Err(Error::from_code(e.err)),
            _ => Err(Error::UnexpectedReply("addWatch")),
        }
    }

    /// The identities the session is authenticated as (`whoAmI`).
    pub async fn who_am_i(&self) -> Result<Vec<ClientInfo>, Error> {
        match self.call(Request::WhoAmI).await? {
            Response::WhoAmI(r) => Ok(r.client_info),
            _ => Err(Error::UnexpectedReply("whoAmI")),
        }
    }

    /// Closes the session (its ephemeral nodes go) and ends the client. `Ok` once the
    /// server confirmed; `ConnectionLoss` if it could not (the session then expires on
    /// its own). Every handle is closed afterwards; closing twice is `Ok`.
    pub async fn close(&self) -> Result<(), Error> {
        if self.state() == SessionState::Closed {
            return Ok(());
        }
        let result = match self.call(Request::CloseSession).await {
            Ok(_) => Ok(()),
            Err(Error::Closed) if self.state() == SessionState::Closed => Ok(()),
            Err(e) => Err(e),
        };
        // The task publishes the final state right after it answered the close (or
        // has stopped, which ends the wait too).
        let mut states = self.state.clone();
        let _ = states.wait_for(|s| s.is_terminal()).await;
        result
    }
}

/// Checks a path the way ZooKeeper's `PathUtils.validatePath` does (a sequential create
/// may end in `/`).
fn validate_path(path: &str, sequential: bool) -> Result<(), Error> {
    let bad = |reason| {
        Err(Error::InvalidPath {
            path: path.to_owned(),
            reason,
        })
    };
    if !path.starts_with('/') {
        return bad("path must start with /");
    }
    if path.len() == 1 {
        return if sequential {
            bad("sequential path must not be /")
        } else {
            Ok(())
        };
    }
    let inner = if sequential {
        path.strip_suffix('/').unwrap_or(path)
    } else if path.ends_with('/') {
        return bad("path must not end with /");
    } else {
        path
    };
    for segment in inner.split('/').skip(1) {
        match segment {
            "" => return bad("empty segment"),
            "." | ".." => return bad("relative segment"),
            s if s.chars().any(|c| c == '\0' || c.is_control()) => {
                return bad("control character");
            }
            _ => {}
        }
    }
    Ok(())
}

fn create_request(
    path: &str,
    data: &[u8],
    acl: &[Acl],
    mode: CreateMode,
) -> Result<CreateRequest, Error> {
    if mode.is_ttl() {
        return Err(Error::BadArgument(format!(
            "{mode:?} needs a TTL; use create_ttl"
        )));
    }
    validate_path(path, mode.is_sequential())?;
    Ok(CreateRequest {
        path: path.to_owned(),
        data: Some(Bytes::copy_from_slice(data)),
        acl: acl.to_vec(),
        flags: mode.code(),
    })
}

/// One server of a connect string.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Host {
    host: String,
    port: u16,
}

/// Parses `host:port,host:port` (a missing port is 2181; IPv6 as `[::1]:2181`).
fn parse_connect_string(input: &str) -> Result<Vec<Host>, Error> {
    let fail = |reason: String| Error::ConnectString {
        input: input.to_owned(),
        reason,
    };
    if input.contains('/') {
        return Err(fail("a chroot suffix is not supported".into()));
    }
    let mut hosts = Vec::new();
    for entry in input.split(',').map(str::trim) {
        if entry.is_empty() {
            return Err(fail("empty server entry".into()));
        }
        let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
            let (h, after) = rest
                .split_once(']')
                .ok_or_else(|| fail(format!("unclosed [ in {entry:?}")))?;
            match after.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None if after.is_empty() => (h, None),
                None => return Err(fail(format!("bad server {entry:?}"))),
            }
        } else {
            match entry.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (entry, None),
            }
        };
        if host.is_empty() {
            return Err(fail(format!("no host in {entry:?}")));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| fail(format!("bad port in {entry:?}")))?,
        };
        if hosts.len() == MAX_HOSTS {
            return Err(fail(format!("more than {MAX_HOSTS} servers")));
        }
        hosts.push(Host {
            host: host.to_owned(),
            port,
        });
    }
    Ok(hosts)
}

/// A random number from the standard library's randomly keyed hasher (enough to spread
/// clients over servers; no cryptographic use).
fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x5eed);
    h.finish()
}

/// Fisher–Yates shuffle (ZooKeeper's `StaticHostProvider` shuffles its list too).
fn shuffled<T>(mut items: Vec<T>) -> Vec<T> {
    for i in (1..items.len()).rev() {
        let j = (random_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
    items
}

/// The watches the client holds, to register again on a new connection. Mirrors the
/// Java client's `ZKWatchManager` tables.
#[derive(Debug, Default)]
struct WatchTable {
    data: HashSet<String>,
    exist: HashSet<String>,
    child: HashSet<String>,
    persistent: HashSet<String>,
    recursive: HashSet<String>,
}

/// Which table a successful request adds its path to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WatchReg {
    /// exists: data watch if the node exists, exist watch if it does not.
    Exists,
    Data,
    Child,
    Persistent,
    Recursive,
}

impl WatchReg {
    fn of(request: &Request) -> Option<(WatchReg, &str)> {
        match request {
            Request::Exists(r) if r.watch => Some((WatchReg::Exists, &r.path)),
            Request::GetData(r) if r.watch => Some((WatchReg::Data, &r.path)),
            Request::GetChildren(r) | Request::GetChildren2(r) if r.watch => {
                Some((WatchReg::Child, &r.path))
            }
            Request::AddWatch(r) => match r.watch_mode() {
                Ok(AddWatchMode::Persistent) => Some((WatchReg::Persistent, &r.path)),
                Ok(AddWatchMode::PersistentRecursive) => Some((WatchReg::Recursive, &r.path)),
                Err(_) => None,
            },
            _ => None,
        }
    }
}

impl WatchTable {
    /// Records the watch a request left, given the reply's error code.
    fn register(&mut self, reg: WatchReg, path: String, err: i32) {
        let ok = err == 0;
        match reg {
            WatchReg::Exists if ok => self.data.insert(path),
            WatchReg::Exists if err == ErrorCode::NoNode.code() => self.exist.insert(path),
            WatchReg::Data if ok => self.data.insert(path),
            WatchReg::Child if ok => self.child.insert(path),
            WatchReg::Persistent if ok => self.persistent.insert(path),
            WatchReg::Recursive if ok => self.recursive.insert(path),
            _ => false,
        };
    }

    /// Forgets the one-shot watches an event used up.
    fn fired(&mut self, kind: EventType, path: &str) {
        match kind {
            EventType::NodeCreated | EventType::NodeDataChanged => {
                self.data.remove(path);
                self.exist.remove(path);
            }
            EventType::NodeChildrenChanged => {
                self.child.remove(path);
            }
            EventType::NodeDeleted => {
                self.data.remove(path);
                self.exist.remove(path);
                self.child.remove(path);
            }
            EventType::DataWatchRemoved => {
                self.data.remove(path);
                self.exist.remove(path);
            }
            EventType::ChildWatchRemoved => {
                self.child.remove(path);
            }
            EventType::PersistentWatchRemoved => {
                self.persistent.remove(path);
                self.recursive.remove(path);
            }
            EventType::None => {}
        }
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
            && self.exist.is_empty()
            && self.child.is_empty()
            && self.persistent.is_empty()
            && self.recursive.is_empty()
    }

    /// The setWatches packets that register every watch again, in batches of at most
    /// [`SET_WATCHES_MAX_BYTES`] of paths; `setWatches2` only for batches with
    /// persistent watches, so that servers before 3.6 understand the rest.
    fn set_watches_requests(&self, relative_zxid: Zxid) -> Vec<Request> {
        let mut lists: [Vec<String>; 5] = Default::default();
        let mut bytes = 0usize;
        let mut requests = Vec::new();
        let tables = [
            &self.data,
            &self.exist,
            &self.child,
            &self.persistent,
            &self.recursive,
        ];
        let flush = |lists: &mut [Vec<String>; 5], requests: &mut Vec<Request>| {
            let [data, exist, child, persistent, recursive] = std::mem::take(lists);
            if persistent.is_empty() && recursive.is_empty() {
                requests.push(Request::SetWatches(SetWatches {
                    relative_zxid,
                    data_watches: data,
                    exist_watches: exist,
                    child_watches: child,
                }));
            } else {
                requests.push(Request::SetWatches2(SetWatches2 {
                    relative_zxid,
                    data_watches: data,
                    exist_watches: exist,
                    child_watches: child,
                    persistent_watches: persistent,
                    persistent_recursive_watches: recursive,
                }));
            }
        };
        for (i, table) in tables.iter().enumerate() {
            for path in table.iter() {
                if bytes > 0 && bytes + path.len() > SET_WATCHES_MAX_BYTES {
                    flush(&mut lists, &mut requests);
                    bytes = 0;
                }
                bytes += path.len();
                if let Some(list) = lists.get_mut(i) {
                    list.push(path.clone());
                }
            }
        }
        if bytes > 0 {
            flush(&mut lists, &mut requests);
        }
        requests
    }
}

/// A request on the wire, waiting for its reply.
struct Pending {
    op: zk_proto::data::OpCode,
    reply: oneshot::Sender<Result<Response, Error>>,
    watch: Option<(WatchReg, String)>,
}

/// One TCP connection with an established session.
struct Conn {
    reader: FramedRead<OwnedReadHalf, JuteCodec>,
    writer: OwnedWriteHalf,
    /// Encoded frames not yet written.
    out: BytesMut,
    pending: HashMap<i32, Pending>,
    /// Callers of auth packets in the order sent (`None` for credentials resent on
    /// reconnect); the server answers them in that order.
    auth_waiters: VecDeque<Option<oneshot::Sender<Result<(), Error>>>>,
    last_send: Instant,
    last_recv: Instant,
    /// Set once closeSession is sent: the time to give up waiting for its reply.
    closing: Option<Instant>,
}

/// What woke the serving loop.
enum Step {
    Frame(Option<Result<BytesMut, JuteError>>),
    Room(Option<mpsc::OwnedPermit<WatchedEvent>>),
    Written(std::io::Result<usize>),
    Command(Option<Command>),
    Ping,
    ReadTimeout,
    CloseTimeout,
}

/// How a connection ended.
enum ServeEnd {
    /// The connection broke (or timed out); the session may live on.
    Lost(String),
    /// closeSession was answered (or given up on).
    Closed,
    /// The server refused credentials.
    AuthFailed,
    /// Every handle was dropped.
    Dropped,
}

/// The connection task.
struct Task {
    hosts: Vec<Host>,
    next_host: usize,
    requested_timeout_ms: i32,
    negotiated_timeout_ms: i32,
    session_id: i64,
    passwd: Bytes,
    last_zxid: Zxid,
    next_xid: i32,
    max_in_flight: usize,
    codec: JuteCodec,
    cmd_rx: mpsc::Receiver<Command>,
    events: mpsc::Sender<WatchedEvent>,
    /// An event that did not fit in the channel; reading pauses until it is delivered.
    stalled: Option<WatchedEvent>,
    state: watch::Sender<SessionState>,
    info: Arc<Mutex<SessionInfo>>,
    watches: WatchTable,
    auths: Vec<AuthPacket>,
}

/// Why one connection attempt failed.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Jute(#[from] JuteError),
    #[error("closed by the server during the handshake")]
    Closed,
}

impl Task {
    async fn run(mut self) {
        loop {
            let Some(mut conn) = self.connect_phase().await else {
                return;
            };
            let end = self.serve(&mut conn).await;
            let (state, error) = match end {
                // A close was under way: it cannot be confirmed, but the client is done.
                ServeEnd::Lost(why) if conn.closing.is_some() => {
                    tracing::debug!("connection lost while closing: {why}");
                    (
                        SessionState::Closed,
                        Error::Keeper(ErrorCode::ConnectionLoss),
                    )
                }
                ServeEnd::Lost(why) => {
                    tracing::info!(
                        session = format_args!("{:#x}", self.session_id),
                        "connection lost: {why}"
                    );
                    (
                        SessionState::Disconnected,
                        Error::Keeper(ErrorCode::ConnectionLoss),
                    )
                }
                ServeEnd::Closed => (
                    SessionState::Closed,
                    Error::Keeper(ErrorCode::ConnectionLoss),
                ),
                ServeEnd::AuthFailed => (
                    SessionState::AuthFailed,
                    Error::Keeper(ErrorCode::AuthFailed),
                ),
                ServeEnd::Dropped => (SessionState::Closed, Error::Closed),
            };
            fail_conn(&mut conn, || clone_error(&error));
            self.state.send_replace(state);
            if state.is_terminal() {
                self.fail_queued(state.terminal_error());
                return;
            }
        }
    }

    /// Fails every request waiting in the command queue.
    fn fail_queued(&mut self, error: Error) {
        self.cmd_rx.close();
        while let Ok(cmd) = self.cmd_rx.try_recv() {
            fail_command(cmd, clone_error(&error));
        }
    }

    /// Per-attempt timeout: the session timeout spread over the servers, as
    /// `ClientCnxn` does.
    fn attempt_timeout(&self) -> Duration {
        let per_host =
            u64::try_from(self.negotiated_timeout_ms).unwrap_or(0) / self.hosts.len().max(1) as u64;
        Duration::from_millis(per_host).max(MIN_ATTEMPT_TIMEOUT)
    }

    /// Connects to the servers in turn until one accepts the session. `None` when the
    /// client is done (expired, closed, dropped). Requests arriving meanwhile fail with
    /// `ConnectionLoss`.
    async fn connect_phase(&mut self) -> Option<Conn> {
        let mut failures_in_row = 0usize;
        loop {
            let host = self.hosts.get(self.next_host).cloned()?;
            self.next_host = (self.next_host + 1) % self.hosts.len().max(1);
            let request = ConnectRequest {
                protocol_version: 0,
                last_zxid_seen: self.last_zxid,
                timeout_ms: self.requested_timeout_ms,
                session_id: self.session_id,
                passwd: self.passwd.clone(),
                read_only: Some(false),
            };
            let attempt = attempt(host.clone(), request, self.codec, self.attempt_timeout());
            tokio::pin!(attempt);
            let outcome = loop {
                let cmd = tokio::select! {
                    outcome = &mut attempt => break outcome,
                    cmd = self.cmd_rx.recv() => cmd,
                };
                if self.refuse_while_disconnected(cmd) {
                    return None;
                }
            };
            match outcome {
                Ok((conn, answer, addr)) => return self.established(conn, answer, addr),
                Err(e) => {
                    tracing::debug!(
                        server = %format_args!("{}:{}", host.host, host.port),
                        "connection attempt failed: {e}"
                    );
                    failures_in_row += 1;
                    if failures_in_row < self.hosts.len() {
                        continue;
                    }
                    // Every server failed once: pause a little before the next round.
                    failures_in_row = 0;
                    let pause = Duration::from_millis(
                        100 + random_u64() % (MAX_RECONNECT_PAUSE.as_millis() as u64 - 100),
                    );
                    let sleep = tokio::time::sleep(pause);
                    tokio::pin!(sleep);
                    loop {
                        let cmd = tokio::select! {
                            () = &mut sleep => break,
                            cmd = self.cmd_rx.recv() => cmd,
                        };
                        if self.refuse_while_disconnected(cmd) {
                            return None;
                        }
                    }
                }
            }
        }
    }

    /// Answers a request that arrives while there is no connection; true when the
    /// client is done (closed, or every handle dropped).
    fn refuse_while_disconnected(&mut self, cmd: Option<Command>) -> bool {
        match cmd {
            None => {
                self.state.send_replace(SessionState::Closed);
                true
            }
            Some(Command::Request {
                request: Request::CloseSession,
                reply,
            }) => {
                // Not connected: the session cannot be closed, only left to expire.
                let _ = reply.send(Err(Error::Keeper(ErrorCode::ConnectionLoss)));
                self.state.send_replace(SessionState::Closed);
                self.fail_queued(Error::Closed);
                true
            }
            Some(cmd) => {
                fail_command(cmd, Error::Keeper(ErrorCode::ConnectionLoss));
                false
            }
        }
    }

    /// A server answered the handshake: the session lives on (or is new), or it expired.
    fn established(
        &mut self,
        mut conn: Conn,
        answer: ConnectResponse,
        addr: SocketAddr,
    ) -> Option<Conn> {
        lock(&self.info).server = Some(addr);
        if answer.timeout_ms <= 0 || (self.session_id != 0 && answer.session_id != self.session_id)
        {
            tracing::info!(
                session = format_args!("{:#x}", self.session_id),
                "session expired"
            );
            self.state.send_replace(SessionState::Expired);
            self.fail_queued(Error::Keeper(ErrorCode::SessionExpired));
            return None;
        }
        let resumed = self.session_id != 0;
        self.session_id = answer.session_id;
        self.passwd = answer.passwd.clone();
        self.negotiated_timeout_ms = answer.timeout_ms;
        {
            let mut info = lock(&self.info);
            info.session_id = answer.session_id;
            info.passwd = answer.passwd;
            info.timeout_ms = answer.timeout_ms;
        }
        tracing::debug!(
            %addr,
            session = format_args!("{:#x}", self.session_id),
            timeout_ms = answer.timeout_ms,
            resumed,
            "session established"
        );
        self.prime(&mut conn);
        self.state.send_replace(SessionState::Connected);
        Some(conn)
    }

    /// What goes first on a new connection: the watches to register again, then the
    /// credentials (the order of `ClientCnxn.primeConnection`).
    fn prime(&mut self, conn: &mut Conn) {
        if !self.watches.is_empty() {
            for request in self.watches.set_watches_requests(self.last_zxid) {
                let packet = RequestPacket::new(SET_WATCHES_XID, request);
                if let Err(e) = self.codec.encode(&packet, &mut conn.out) {
                    tracing::warn!("cannot register watches again: {e}");
                }
            }
        }
        for auth in &self.auths {
            let packet = RequestPacket::new(AUTH_XID, Request::Auth(auth.clone()));
            if self.codec.encode(&packet, &mut conn.out).is_ok() {
                conn.auth_waiters.push_back(None);
            }
        }
    }

    /// Two thirds of the session timeout (at least [`MIN_READ_TIMEOUT`]).
    fn read_timeout(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.negotiated_timeout_ms).unwrap_or(0) * 2 / 3)
            .max(MIN_READ_TIMEOUT)
    }

    /// A third of the session timeout, within [`MIN_PING_INTERVAL`] and
    /// [`MAX_PING_INTERVAL`].
    fn ping_interval(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.negotiated_timeout_ms).unwrap_or(0) / 3)
            .clamp(MIN_PING_INTERVAL, MAX_PING_INTERVAL)
    }

    /// Serves one connection until it ends.
    async fn serve(&mut self, conn: &mut Conn) -> ServeEnd {
        let read_timeout = self.read_timeout();
        let ping_interval = self.ping_interval();
        loop {
            let can_take = conn.closing.is_none()
                && conn.pending.len() < self.max_in_flight
                && conn.out.len() < OUT_HIGH_WATER_BYTES;
            let reading = self.stalled.is_none();
            let read_deadline = conn.last_recv + read_timeout;
            let ping_at = conn.last_send + ping_interval;
            let close_deadline = conn.closing;
            let step = tokio::select! {
                frame = conn.reader.next(), if reading => Step::Frame(frame),
                permit = self.events.clone().reserve_owned(), if !reading => Step::Room(permit.ok()),
                written = conn.writer.write_buf(&mut conn.out), if !conn.out.is_empty() => {
                    Step::Written(written)
                }
                cmd = self.cmd_rx.recv(), if can_take => Step::Command(cmd),
                () = tokio::time::sleep_until(ping_at) => Step::Ping,
                () = tokio::time::sleep_until(read_deadline), if reading => Step::ReadTimeout,
                () = sleep_until_opt(close_deadline) => Step::CloseTimeout,
            };
            match step {
                Step::Frame(frame) => {
                    conn.last_recv = Instant::now();
                    match frame {
                        None => return ServeEnd::Lost("the server closed the connection".into()),
                        Some(Err(e)) => return ServeEnd::Lost(format!("bad frame: {e}")),
                        Some(Ok(frame)) => match self.on_frame(conn, frame.freeze()) {
                            Ok(None) => {}
                            Ok(Some(end)) => return end,
                            Err(e) => return ServeEnd::Lost(format!("bad reply: {e}")),
                        },
                    }
                }
                Step::Room(permit) => {
                    // With no receiver left the event is dropped.
                    if let (Some(permit), Some(event)) = (permit, self.stalled.take()) {
                        permit.send(event);
                    }
                    self.stalled = None;
                    // Reading was paused on purpose; the server was not silent.
                    conn.last_recv = Instant::now();
                }
                Step::Written(Ok(0)) => {
                    return ServeEnd::Lost("the socket accepts no more bytes".into());
                }
                Step::Written(Ok(_)) => conn.last_send = Instant::now(),
                Step::Written(Err(e)) => return ServeEnd::Lost(format!("write failed: {e}")),
                Step::Command(None) => return ServeEnd::Dropped,
                Step::Command(Some(cmd)) => self.on_command(conn, cmd),
                Step::Ping => {
                    let ping = RequestPacket::new(PING_XID, Request::Ping);
                    if let Err(e) = self.codec.encode(&ping, &mut conn.out) {
                        return ServeEnd::Lost(format!("cannot encode a ping: {e}"));
                    }
                    // Counts as sent for the next ping; the write itself follows.
                    conn.last_send = Instant::now();
                }
                Step::ReadTimeout => {
                    return ServeEnd::Lost(format!(
                        "nothing received for {} ms",
                        read_timeout.as_millis()
                    ));
                }
                Step::CloseTimeout => {
                    tracing::debug!("no answer to closeSession; closing anyway");
                    return ServeEnd::Closed;
                }
            }
        }
    }

    fn alloc_xid(&mut self, pending: &HashMap<i32, Pending>) -> i32 {
        // At most max_in_flight xids are taken, so this ends within that many steps.
        loop {
            let xid = self.next_xid;
            self.next_xid = if xid >= i32::MAX - 1 { 1 } else { xid + 1 };
            if !pending.contains_key(&xid) {
                return xid;
            }
        }
    }

    fn on_command(&mut self, conn: &mut Conn, cmd: Command) {
        match cmd {
            Command::Request { request, reply } => {
                let xid = self.alloc_xid(&conn.pending);
                let op = request.op_code();
                let watch = WatchReg::of(&request).map(|(reg, path)| (reg, path.to_owned()));
                let closing = matches!(request, Request::CloseSession);
                let packet = RequestPacket { xid, request };
                if let Err(e) = self.codec.encode(&packet, &mut conn.out) {
                    let _ = reply.send(Err(Error::TooLarge(e)));
                    return;
                }
                conn.pending.insert(xid, Pending { op, reply, watch });
                if closing {
                    conn.closing = Some(Instant::now() + self.read_timeout());
                }
            }
            Command::Auth { packet, reply } => {
                let request = RequestPacket::new(AUTH_XID, Request::Auth(packet.clone()));
                if let Err(e) = self.codec.encode(&request, &mut conn.out) {
                    let _ = reply.send(Err(Error::TooLarge(e)));
                    return;
                }
                if !self.auths.contains(&packet) {
                    if self.auths.len() == MAX_AUTH_INFOS {
                        self.auths.remove(0);
                    }
                    self.auths.push(packet);
                }
                conn.auth_waiters.push_back(Some(reply));
            }
        }
    }

    /// Handles one frame from the server; `Some` when the connection is to end.
    fn on_frame(
        &mut self,
        conn: &mut Conn,
        mut frame: Bytes,
    ) -> Result<Option<ServeEnd>, JuteError> {
        let reply = ReplyPacket::decode(&mut frame, |xid| conn.pending.get(&xid).map(|p| p.op))?;
        let err = reply.header.err;
        match reply.header.xid {
            NOTIFICATION_XID => {
                if let Response::Notification(event) = reply.body {
                    self.on_event(event);
                }
            }
            PING_XID => {}
            AUTH_XID => {
                let waiter = conn.auth_waiters.pop_front().flatten();
                if err == 0 {
                    if let Some(w) = waiter {
                        let _ = w.send(Ok(()));
                    }
                } else {
                    tracing::warn!(err, "authentication failed");
                    if let Some(w) = waiter {
                        let _ = w.send(Err(Error::from_code(err)));
                    }
                    return Ok(Some(ServeEnd::AuthFailed));
                }
            }
            SET_WATCHES_XID => {
                if err != 0 {
                    tracing::warn!(err, "setWatches failed");
                }
            }
            xid => {
                let Some(pending) = conn.pending.remove(&xid) else {
                    return Err(JuteError::UnknownXid(xid));
                };
                if reply.header.zxid > 0 {
                    self.last_zxid = reply.header.zxid;
                    lock(&self.info).last_zxid = reply.header.zxid;
                }
                if let Some((reg, path)) = pending.watch {
                    let err = match &reply.body {
                        Response::Error(e) if err == 0 => e.err,
                        _ => err,
                    };
                    self.watches.register(reg, path, err);
                }
                let closed = pending.op == zk_proto::data::OpCode::CloseSession;
                let result = if err == 0 {
                    Ok(reply.body)
                } else {
                    Err(Error::from_code(err))
                };
                let _ = pending.reply.send(result);
                if closed {
                    return Ok(Some(ServeEnd::Closed));
                }
            }
        }
        Ok(None)
    }

    fn on_event(&mut self, event: WatcherEvent) {
        let Ok(kind) = event.kind() else {
            tracing::warn!(event_type = event.event_type, "unknown watch event type");
            return;
        };
        if kind == EventType::None {
            // Session state events (AuthFailed before a close) come with their replies.
            return;
        }
        self.watches.fired(kind, &event.path);
        let event = WatchedEvent {
            event_type: kind,
            keeper_state: event.keeper_state().unwrap_or(KeeperState::SyncConnected),
            path: event.path,
        };
        match self.events.try_send(event) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(event)) => self.stalled = Some(event),
        }
    }
}

/// One TCP connect and session handshake, within `timeout`.
async fn attempt(
    host: Host,
    request: ConnectRequest,
    codec: JuteCodec,
    timeout: Duration,
) -> Result<(Conn, ConnectResponse, SocketAddr), AttemptError> {
    let work = async move {
        let stream = TcpStream::connect((host.host.as_str(), host.port)).await?;
        stream.set_nodelay(true)?;
        let addr = stream.peer_addr()?;
        let mut framed = Framed::new(stream, codec);
        framed.send(&request).await?;
        let frame = framed.next().await.ok_or(AttemptError::Closed)??;
        let answer = ConnectResponse::decode(&mut frame.freeze())?;
        let parts = framed.into_parts();
        let (read_half, write_half) = parts.io.into_split();
        let mut reader = FramedRead::new(read_half, codec);
        reader.read_buffer_mut().extend_from_slice(&parts.read_buf);
        let now = Instant::now();
        let conn = Conn {
            reader,
            writer: write_half,
            out: BytesMut::new(),
            pending: HashMap::new(),
            auth_waiters: VecDeque::new(),
            last_send: now,
            last_recv: now,
            closing: None,
        };
        Ok::<_, AttemptError>((conn, answer, addr))
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| AttemptError::Timeout)?
}

/// Sleeps until `at`, or forever when it is `None`.
async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Fails everything outstanding on a connection that ended.
fn fail_conn(conn: &mut Conn, error: impl Fn() -> Error) {
    for (_, pending) in conn.pending.drain() {
        let _ = pending.reply.send(Err(error()));
    }
    for waiter in conn.auth_waiters.drain(..).flatten() {
        let _ = waiter.send(Err(error()));
    }
}

fn fail_command(cmd: Command, error: Error) {
    match cmd {
        Command::Request { reply, .. } => {
            let _ = reply.send(Err(error));
        }
        Command::Auth { reply, .. } => {
            let _ = reply.send(Err(error));
        }
    }
}

/// A copy of the errors the task hands out (only the simple variants occur).
fn clone_error(e: &Error) -> Error {
    match e {
        Error::Keeper(code) => Error::Keeper(*code),
        _ => Error::Closed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_strings() {
        let hosts = parse_connect_string("a:1, b:2,[::1]:3,c,[::2]").ok();
        let got: Option<Vec<(String, u16)>> =
            hosts.map(|h| h.into_iter().map(|h| (h.host, h.port)).collect());
        assert_eq!(
            got,
            Some(vec![
                ("a".into(), 1),
                ("b".into(), 2),
                ("::1".into(), 3),
                ("c".into(), 2181),
                ("::2".into(), 2181),
            ])
        );
        for bad in [
            "",
            "a:1,",
            "a:x",
            "a:0",
            ":1",
            "a:1/chroot",
            "[::1",
            "a:70000",
        ] {
            assert!(
                matches!(parse_connect_string(bad), Err(Error::ConnectString { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn paths() {
        for ok in ["/", "/a", "/a/b", "/a-b.c"] {
            assert!(validate_path(ok, false).is_ok(), "{ok}");
        }
        assert!(validate_path("/a/", true).is_ok());
        for bad in ["", "a", "/a/", "//a", "/a//b", "/a/./b", "/..", "/a\u{0}"] {
            assert!(validate_path(bad, false).is_err(), "{bad:?}");
        }
        assert!(validate_path("/", true).is_err());
    }

    #[test]
    fn shuffle_keeps_every_item() {
        let mut v = shuffled((0..50).collect::<Vec<_>>());
        v.sort_unstable();
        assert_eq!(v, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn watch_table_follows_java_rules() {
        let mut t = WatchTable::default();
        t.register(WatchReg::Exists, "/a".into(), ErrorCode::NoNode.code());
        t.register(WatchReg::Exists, "/b".into(), 0);
        t.register(WatchReg::Data, "/c".into(), ErrorCode::NoNode.code());
        t.register(WatchReg::Child, "/c".into(), 0);
        t.register(WatchReg::Recursive, "/r".into(), 0);
        assert!(t.exist.contains("/a") && t.data.contains("/b"));
        assert!(!t.data.contains("/c") && t.child.contains("/c"));
        t.fired(EventType::NodeCreated, "/a");
        assert!(t.exist.is_empty());
        t.fired(EventType::NodeDeleted, "/c");
        assert!(t.child.is_empty());
        t.fired(EventType::NodeDataChanged, "/r");
        assert!(t.recursive.contains("/r"));

        // One batch, SetWatches2 because a persistent watch is in it.
        let reqs = t.set_watches_requests(7);
        match reqs.as_slice() {
            [Request::SetWatches2(s)] => {
                assert_eq!(s.relative_zxid, 7);
                assert_eq!(s.data_watches, vec!["/b".to_owned()]);
                assert_eq!(s.persistent_recursive_watches, vec!["/r".to_owned()]);
            }
            other => panic!("unexpected {other:?}"),
        }
        t.recursive.clear();
        assert!(matches!(
            t.set_watches_requests(7).as_slice(),
            [Request::SetWatches(_)]
        ));
    }

    #[test]
    fn set_watches_batches_stay_small() {
        let mut t = WatchTable::default();
        let long = "x".repeat(1000);
        for i in 0..300 {
            t.data.insert(format!("/{long}{i}"));
        }
        let reqs = t.set_watches_requests(1);
        assert!(reqs.len() >= 3, "{} batches", reqs.len());
        let mut total = 0;
        for r in &reqs {
            let Request::SetWatches(s) = r else {
                panic!("expected setWatches");
            };
            let bytes: usize = s.data_watches.iter().map(String::len).sum();
            assert!(bytes <= SET_WATCHES_MAX_BYTES);
            total += s.data_watches.len();
        }
        assert_eq!(total, 300);
    }
}
