//! Every record of the client protocol (`org.apache.zookeeper.proto` in `zookeeper.jute`),
//! field for field in wire order.
//!
//! Enumerated fields (`flags`, `type`, `state`, `mode`, `err`) stay raw `i32` so that any
//! value a peer sends survives a decode/encode round trip; typed accessors convert them to
//! the enums of [`crate::data`].

use bytes::{Buf, BufMut, Bytes};

use super::JuteError;
use super::record::{Record, record};
use crate::data::{
    Acl, AddWatchMode, CreateMode, ErrorCode, EventType, KeeperState, Stat, WatcherType,
};
use crate::zxid::Zxid;

/// The xid of a watch notification (`ClientCnxn.NOTIFICATION_XID`).
pub const NOTIFICATION_XID: i32 = -1;
/// The xid of a ping and its reply (`ClientCnxn.PING_XID`).
pub const PING_XID: i32 = -2;
/// The xid of an auth packet and its reply (`ClientCnxn.AUTHPACKET_XID`).
pub const AUTH_XID: i32 = -4;
/// The xid of setWatches / setWatches2 on reconnect (`ClientCnxn.SET_WATCHES_XID`).
pub const SET_WATCHES_XID: i32 = -8;

/// Length of the session password ZooKeeper hands out.
pub const PASSWORD_LEN: usize = 16;

/// The first frame of a client: opens a new session or resumes one. It has no
/// [`RequestHeader`].
///
/// `read_only` is the trailing boolean clients since 3.4 append after the record; very old
/// clients omit it, which decodes as `None` and re-encodes without the byte.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectRequest {
    /// Protocol version, 0.
    pub protocol_version: i32,
    /// The last zxid the client has seen (the server refuses to go back in time).
    pub last_zxid_seen: Zxid,
    /// Requested session timeout in ms.
    pub timeout_ms: i32,
    /// 0 for a new session, else the session to resume.
    pub session_id: i64,
    /// Session password (16 zero bytes for a new session).
    pub passwd: Bytes,
    /// Whether the client accepts a read-only server; `None` if the byte was absent.
    pub read_only: Option<bool>,
}

impl Record for ConnectRequest {
    const MIN_LEN: usize = 4 + 8 + 4 + 8 + 4;
    fn encode<B: BufMut>(&self, buf: &mut B) {
        self.protocol_version.encode(buf);
        self.last_zxid_seen.encode(buf);
        self.timeout_ms.encode(buf);
        self.session_id.encode(buf);
        self.passwd.encode(buf);
        if let Some(ro) = self.read_only {
            ro.encode(buf);
        }
    }
    /// Decodes a whole frame: the optional `read_only` byte is read if one is left.
    fn decode<B: Buf>(buf: &mut B) -> Result<Self, JuteError> {
        Ok(ConnectRequest {
            protocol_version: i32::decode(buf)?,
            last_zxid_seen: i64::decode(buf)?,
            timeout_ms: i32::decode(buf)?,
            session_id: i64::decode(buf)?,
            passwd: Bytes::decode(buf)?,
            read_only: if buf.has_remaining() {
                Some(bool::decode(buf)?)
            } else {
                None
            },
        })
    }
    fn encoded_len(&self) -> usize {
        Self::MIN_LEN + self.passwd.len() + usize::from(self.read_only.is_some())
    }
}

/// The server's answer to a [`ConnectRequest`] (no [`ReplyHeader`]).
///
/// An expired or unknown session is answered with `timeout_ms` 0, `session_id` 0 and a
/// zero password. `read_only` is the trailing boolean servers since 3.4 append; `None`
/// when absent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectResponse {
    /// Protocol version, 0.
    pub protocol_version: i32,
    /// Negotiated session timeout in ms.
    pub timeout_ms: i32,
    /// The session id.
    pub session_id: i64,
    /// The session password.
    pub passwd: Bytes,
    /// Whether the server is read-only; `None` if the byte was absent.
    pub read_only: Option<bool>,
}

impl ConnectResponse {
    /// What ZooKeeper answers to a resumed session that is expired or unknown (or a wrong
    /// password): timeout 0, session 0, 16 zero bytes; the client then reports
    /// `SessionExpired`. `read_only_server` is the trailing byte.
    pub fn session_expired(read_only_server: bool) -> Self {
        ConnectResponse {
            protocol_version: 0,
            timeout_ms: 0,
            session_id: 0,
            passwd: Bytes::from_static(&[0; PASSWORD_LEN]),
            read_only: Some(read_only_server),
        }
    }
}

impl Record for ConnectResponse {
    const MIN_LEN: usize = 4 + 4 + 8 + 4;
    fn encode<B: BufMut>(&self, buf: &mut B) {
        self.protocol_version.encode(buf);
        self.timeout_ms.encode(buf);
        self.session_id.encode(buf);
        self.passwd.encode(buf);
        if let Some(ro) = self.read_only {
            ro.encode(buf);
        }
    }
    /// Decodes a whole frame: the optional `read_only` byte is read if one is left.
    fn decode<B: Buf>(buf: &mut B) -> Result<Self, JuteError> {
        Ok(ConnectResponse {
            protocol_version: i32::decode(buf)?,
            timeout_ms: i32::decode(buf)?,
            session_id: i64::decode(buf)?,
            passwd: Bytes::decode(buf)?,
            read_only: if buf.has_remaining() {
                Some(bool::decode(buf)?)
            } else {
                None
            },
        })
    }
    fn encoded_len(&self) -> usize {
        Self::MIN_LEN + self.passwd.len() + usize::from(self.read_only.is_some())
    }
}

record! {
    /// Precedes every request body after the handshake.
    RequestHeader {
        /// Client-chosen id echoed in the reply, or a special xid ([`PING_XID`], …).
        xid: i32,
        /// The [`crate::data::OpCode`] of the body.
        op: i32,
    }

    /// Precedes every reply body and every watch notification.
    ReplyHeader {
        /// The request's xid, or [`NOTIFICATION_XID`] / [`PING_XID`] / …
        xid: i32,
        /// The server's last processed zxid (−1 in notifications).
        zxid: Zxid,
        /// An [`ErrorCode`]; a body follows only when it is 0.
        err: i32,
    }

    /// Precedes each op of a `multi`/`multiRead` request and each result of its response.
    MultiHeader {
        /// The op code of what follows, −1 at the end (and for an error result).
        op: i32,
        /// True only for the terminating header.
        done: bool,
        /// −1 in requests; in responses 0, or the error code of an error result.
        err: i32,
    }

    /// `addAuthInfo(scheme, auth)`, sent with [`AUTH_XID`].
    AuthPacket {
        /// Always 0.
        auth_type: i32,
        /// `digest`, `ip`, …
        scheme: String,
        /// Scheme-specific credentials (`user:password` for digest).
        auth: Bytes,
    }

    /// Re-registers watches on reconnect, sent with [`SET_WATCHES_XID`].
    SetWatches {
        /// Events after this zxid fire immediately.
        relative_zxid: Zxid,
        /// getData watches.
        data_watches: Vec<String>,
        /// exists watches (on absent nodes).
        exist_watches: Vec<String>,
        /// getChildren watches.
        child_watches: Vec<String>,
    }

    /// [`SetWatches`] plus persistent watches (3.6+ clients).
    SetWatches2 {
        /// Events after this zxid fire immediately.
        relative_zxid: Zxid,
        /// getData watches.
        data_watches: Vec<String>,
        /// exists watches (on absent nodes).
        exist_watches: Vec<String>,
        /// getChildren watches.
        child_watches: Vec<String>,
        /// addWatch(PERSISTENT) paths.
        persistent_watches: Vec<String>,
        /// addWatch(PERSISTENT_RECURSIVE) paths.
        persistent_recursive_watches: Vec<String>,
    }

    /// getData.
    GetDataRequest {
        /// The znode.
        path: String,
        /// Leave a data watch.
        watch: bool,
    }

    /// setData.
    SetDataRequest {
        /// The znode.
        path: String,
        /// New data (null allowed).
        data: Option<Bytes>,
        /// Expected version, −1 for any.
        version: i32,
    }

    /// reconfig (dynamic membership).
    ReconfigRequest {
        /// Servers to add (incremental), or null.
        joining_servers: Option<String>,
        /// Server ids to remove (incremental), or null.
        leaving_servers: Option<String>,
        /// The whole new membership (non-incremental), or null.
        new_members: Option<String>,
        /// Expected current config version, −1 for any.
        cur_config_id: i64,
    }

    /// Reply to setData (and to a standalone check).
    SetDataResponse {
        /// The node's new stat.
        stat: Stat,
    }

    /// A SASL token from the client.
    GetSaslRequest {
        /// The token.
        token: Bytes,
    }

    /// A SASL token from the server.
    SetSaslResponse {
        /// The token.
        token: Bytes,
    }

    /// create, create2 and createContainer.
    CreateRequest {
        /// The znode (a prefix, for sequential modes).
        path: String,
        /// Initial data (null allowed).
        data: Option<Bytes>,
        /// Initial ACL.
        acl: Vec<Acl>,
        /// A [`CreateMode`].
        flags: i32,
    }

    /// createTTL.
    CreateTtlRequest {
        /// The znode (a prefix, for sequential modes).
        path: String,
        /// Initial data (null allowed).
        data: Option<Bytes>,
        /// Initial ACL.
        acl: Vec<Acl>,
        /// A TTL [`CreateMode`].
        flags: i32,
        /// Time to live in ms.
        ttl: i64,
    }

    /// delete.
    DeleteRequest {
        /// The znode.
        path: String,
        /// Expected version, −1 for any.
        version: i32,
    }

    /// getChildren and getChildren2.
    GetChildrenRequest {
        /// The znode.
        path: String,
        /// Leave a child watch.
        watch: bool,
    }

    /// getAllChildrenNumber.
    GetAllChildrenNumberRequest {
        /// The znode.
        path: String,
    }

    /// check (inside multi, or standalone).
    CheckVersionRequest {
        /// The znode.
        path: String,
        /// Expected version.
        version: i32,
    }

    /// sync.
    SyncRequest {
        /// The znode.
        path: String,
    }

    /// Reply to sync.
    SyncResponse {
        /// The path of the request.
        path: String,
    }

    /// getACL.
    GetAclRequest {
        /// The znode.
        path: String,
    }

    /// setACL.
    SetAclRequest {
        /// The znode.
        path: String,
        /// The new ACL.
        acl: Vec<Acl>,
        /// Expected aversion, −1 for any.
        version: i32,
    }

    /// Reply to setACL.
    SetAclResponse {
        /// The node's new stat.
        stat: Stat,
    }

    /// addWatch.
    AddWatchRequest {
        /// The znode.
        path: String,
        /// An [`AddWatchMode`].
        mode: i32,
    }

    /// A watch notification, sent with [`NOTIFICATION_XID`].
    WatcherEvent {
        /// An [`EventType`].
        event_type: i32,
        /// A [`KeeperState`].
        state: i32,
        /// The znode the event is about.
        path: String,
    }

    /// An error code as a body: the error result of a multi, and the reply to addWatch.
    ErrorResponse {
        /// An [`ErrorCode`].
        err: i32,
    }

    /// Reply to create.
    CreateResponse {
        /// The created path (with the sequence suffix, if any).
        path: String,
    }

    /// Reply to create2, createContainer and createTTL.
    Create2Response {
        /// The created path (with the sequence suffix, if any).
        path: String,
        /// The new node's stat.
        stat: Stat,
    }

    /// exists.
    ExistsRequest {
        /// The znode.
        path: String,
        /// Leave a watch (also when the node does not exist).
        watch: bool,
    }

    /// Reply to exists.
    ExistsResponse {
        /// The node's stat.
        stat: Stat,
    }

    /// Reply to getData (and reconfig).
    GetDataResponse {
        /// The data (null if created with null).
        data: Option<Bytes>,
        /// The node's stat.
        stat: Stat,
    }

    /// Reply to getChildren.
    GetChildrenResponse {
        /// Child names.
        children: Vec<String>,
    }

    /// Reply to getAllChildrenNumber.
    GetAllChildrenNumberResponse {
        /// Number of descendants.
        total_number: i32,
    }

    /// Reply to getChildren2.
    GetChildren2Response {
        /// Child names.
        children: Vec<String>,
        /// The parent's stat.
        stat: Stat,
    }

    /// Reply to getACL.
    GetAclResponse {
        /// The ACL.
        acl: Vec<Acl>,
        /// The node's stat.
        stat: Stat,
    }

    /// checkWatches.
    CheckWatchesRequest {
        /// The znode.
        path: String,
        /// A [`WatcherType`].
        watcher_type: i32,
    }

    /// removeWatches.
    RemoveWatchesRequest {
        /// The znode.
        path: String,
        /// A [`WatcherType`].
        watcher_type: i32,
    }

    /// getEphemerals.
    GetEphemeralsRequest {
        /// Only ephemerals under this path.
        prefix_path: String,
    }

    /// Reply to getEphemerals.
    GetEphemeralsResponse {
        /// Paths of the session's ephemeral nodes.
        ephemerals: Vec<String>,
    }

    /// One authenticated identity of a session.
    ClientInfo {
        /// The auth scheme.
        auth_scheme: String,
        /// The user (the scheme's id).
        user: String,
    }

    /// Reply to whoAmI.
    WhoAmIResponse {
        /// The session's identities.
        client_info: Vec<ClientInfo>,
    }
}

/// getChildren2 has the same body as getChildren.
pub type GetChildren2Request = GetChildrenRequest;

impl ReplyHeader {
    /// The error code, or the raw value if ZooKeeper has no such code.
    pub fn error(&self) -> Result<ErrorCode, i32> {
        ErrorCode::try_from(self.err)
    }
}

impl CreateRequest {
    /// The create mode, or the raw flags if they name none.
    pub fn create_mode(&self) -> Result<CreateMode, i32> {
        CreateMode::try_from(self.flags)
    }
}

impl CreateTtlRequest {
    /// The create mode, or the raw flags if they name none.
    pub fn create_mode(&self) -> Result<CreateMode, i32> {
        CreateMode::try_from(self.flags)
    }
}

impl AddWatchRequest {
    /// The watch mode, or the raw value if it names none.
    pub fn watch_mode(&self) -> Result<AddWatchMode, i32> {
        AddWatchMode::try_from(self.mode)
    }
}

impl CheckWatchesRequest {
    /// The watcher type, or the raw value if it names none.
    pub fn kind(&self) -> Result<WatcherType, i32> {
        WatcherType::try_from(self.watcher_type)
    }
}

impl RemoveWatchesRequest {
    /// The watcher type, or the raw value if it names none.
    pub fn kind(&self) -> Result<WatcherType, i32> {
        WatcherType::try_from(self.watcher_type)
    }
}

impl WatcherEvent {
    /// An event about `path`.
    pub fn new(event_type: EventType, state: KeeperState, path: impl Into<String>) -> Self {
        WatcherEvent {
            event_type: event_type.code(),
            state: state.code(),
            path: path.into(),
        }
    }
    /// The event type, or the raw value if it names none.
    pub fn kind(&self) -> Result<EventType, i32> {
        EventType::try_from(self.event_type)
    }
    /// The session state, or the raw value if it names none.
    pub fn keeper_state(&self) -> Result<KeeperState, i32> {
        KeeperState::try_from(self.state)
    }
}
