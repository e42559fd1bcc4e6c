//! The ZooKeeper data types that the client protocol, the database and the server share.
//!
//! Names and numeric values are ZooKeeper's (`zookeeper.jute`, `ZooDefs`,
//! `KeeperException.Code`, `Watcher.Event`, `CreateMode`).

use crate::zxid::Zxid;

/// A znode's metadata, in jute wire order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Stat {
    /// zxid of the create.
    pub czxid: Zxid,
    /// zxid of the last setData (or the create).
    pub mzxid: Zxid,
    /// Create time, ms since the epoch (from the txn header).
    pub ctime: i64,
    /// Last modification time.
    pub mtime: i64,
    /// Number of data changes.
    pub version: i32,
    /// Child version as reported to clients.
    pub cversion: i32,
    /// Number of ACL changes.
    pub aversion: i32,
    /// Owning session of an ephemeral node, else 0.
    pub ephemeral_owner: i64,
    /// Length of the data.
    pub data_length: i32,
    /// Number of children.
    pub num_children: i32,
    /// zxid of the last change to the children (create/delete of a child).
    pub pzxid: Zxid,
}

/// An identity: `scheme:id` (`world:anyone`, `digest:user:hash`, `ip:10.0.0.0/8`, …).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Id {
    /// `world`, `auth`, `digest`, `ip`, `super`, ...
    pub scheme: String,
    /// Scheme-specific identity.
    pub id: String,
}

impl Id {
    /// Builds an id from its two parts.
    pub fn new(scheme: impl Into<String>, id: impl Into<String>) -> Self {
        Id {
            scheme: scheme.into(),
            id: id.into(),
        }
    }
}

/// One ACL entry: permissions granted to an identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Acl {
    /// Bitmask of [`perms`].
    pub perms: i32,
    /// Who the permissions are granted to.
    pub id: Id,
}

impl Acl {
    /// `world:anyone` with every permission (`ZooDefs.Ids.OPEN_ACL_UNSAFE`).
    pub fn open_unsafe() -> Vec<Acl> {
        vec![Acl {
            perms: perms::ALL,
            id: Id::new("world", "anyone"),
        }]
    }
    /// `world:anyone` read only (`ZooDefs.Ids.READ_ACL_UNSAFE`).
    pub fn read_unsafe() -> Vec<Acl> {
        vec![Acl {
            perms: perms::READ,
            id: Id::new("world", "anyone"),
        }]
    }
    /// `auth:` with every permission (`ZooDefs.Ids.CREATOR_ALL_ACL`).
    pub fn creator_all() -> Vec<Acl> {
        vec![Acl {
            perms: perms::ALL,
            id: Id::new("auth", ""),
        }]
    }
}

/// Permission bits (`ZooDefs.Perms`).
pub mod perms {
    /// getData, getChildren, exists.
    pub const READ: i32 = 1;
    /// setData.
    pub const WRITE: i32 = 2;
    /// create children.
    pub const CREATE: i32 = 4;
    /// delete children.
    pub const DELETE: i32 = 8;
    /// setACL.
    pub const ADMIN: i32 = 16;
    /// Everything.
    pub const ALL: i32 = READ | WRITE | CREATE | DELETE | ADMIN;
}

/// Declares a `#[repr(i32)]` enum with `code()` and `TryFrom<i32>`.
macro_rules! int_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $value:expr,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(i32)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $value,)*
        }

        impl $name {
            /// The numeric value on the wire.
            pub const fn code(self) -> i32 {
                self as i32
            }
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];
        }

        impl TryFrom<i32> for $name {
            type Error = i32;
            fn try_from(v: i32) -> Result<Self, i32> {
                match v {
                    $($value => Ok($name::$variant),)*
                    other => Err(other),
                }
            }
        }
    };
}

int_enum! {
    /// Request types (`ZooDefs.OpCode`).
    OpCode {
        /// Watch notification (never a request).
        Notification = 0,
        /// create.
        Create = 1,
        /// delete.
        Delete = 2,
        /// exists.
        Exists = 3,
        /// getData.
        GetData = 4,
        /// setData.
        SetData = 5,
        /// getACL.
        GetAcl = 6,
        /// setACL.
        SetAcl = 7,
        /// getChildren.
        GetChildren = 8,
        /// sync.
        Sync = 9,
        /// ping.
        Ping = 11,
        /// getChildren2.
        GetChildren2 = 12,
        /// check (inside multi).
        Check = 13,
        /// multi.
        Multi = 14,
        /// create2.
        Create2 = 15,
        /// reconfig.
        Reconfig = 16,
        /// checkWatches.
        CheckWatches = 17,
        /// removeWatches.
        RemoveWatches = 18,
        /// createContainer.
        CreateContainer = 19,
        /// deleteContainer (server internal).
        DeleteContainer = 20,
        /// createTTL.
        CreateTtl = 21,
        /// multiRead.
        MultiRead = 22,
        /// auth.
        Auth = 100,
        /// setWatches.
        SetWatches = 101,
        /// sasl.
        Sasl = 102,
        /// getEphemerals.
        GetEphemerals = 103,
        /// getAllChildrenNumber.
        GetAllChildrenNumber = 104,
        /// setWatches2.
        SetWatches2 = 105,
        /// addWatch.
        AddWatch = 106,
        /// whoAmI.
        WhoAmI = 107,
        /// createSession (txn only).
        CreateSession = -10,
        /// closeSession.
        CloseSession = -11,
        /// error (txn only).
        Error = -1,
    }
}

int_enum! {
    /// Result codes (`KeeperException.Code`).
    ErrorCode {
        /// Everything is OK.
        Ok = 0,
        /// System and server-side errors.
        SystemError = -1,
        /// A runtime inconsistency was found.
        RuntimeInconsistency = -2,
        /// A data inconsistency was found.
        DataInconsistency = -3,
        /// Connection to the server has been lost.
        ConnectionLoss = -4,
        /// Error while marshalling or unmarshalling data.
        MarshallingError = -5,
        /// Operation is unimplemented.
        Unimplemented = -6,
        /// Operation timeout.
        OperationTimeout = -7,
        /// Invalid arguments.
        BadArguments = -8,
        /// Unknown session (internal server use only).
        UnknownSession = -12,
        /// No quorum of new config is connected.
        NewConfigNoQuorum = -13,
        /// Another reconfiguration is in progress.
        ReconfigInProgress = -14,
        /// API errors.
        ApiError = -100,
        /// Node does not exist.
        NoNode = -101,
        /// Not authenticated.
        NoAuth = -102,
        /// Version conflict.
        BadVersion = -103,
        /// Ephemeral nodes may not have children.
        NoChildrenForEphemerals = -108,
        /// The node already exists.
        NodeExists = -110,
        /// The node has children.
        NotEmpty = -111,
        /// The session has been expired by the server.
        SessionExpired = -112,
        /// Invalid callback specified.
        InvalidCallback = -113,
        /// Invalid ACL specified.
        InvalidAcl = -114,
        /// Client authentication failed.
        AuthFailed = -115,
        /// Session moved to another server, so operation is ignored.
        SessionMoved = -118,
        /// State-changing request is passed to read-only server.
        NotReadOnly = -119,
        /// Attempt to create ephemeral node on a local session.
        EphemeralOnLocalSession = -120,
        /// Attempts to remove a non-existing watcher.
        NoWatcher = -121,
        /// Request not completed within max allowed time.
        RequestTimeout = -122,
        /// Attempts to perform a reconfiguration operation when reconfiguration is disabled.
        ReconfigDisabled = -123,
        /// The session has been closed by server because server requires client to do SASL authentication.
        SessionClosedRequireSaslAuth = -124,
        /// Exceeded the quota that was set on the path.
        QuotaExceeded = -125,
        /// Operation was throttled and not executed at all.
        Throttled = -127,
    }
}

int_enum! {
    /// How a znode is created (`CreateMode`), the `flags` of a create request.
    CreateMode {
        /// Persistent.
        Persistent = 0,
        /// Deleted when the creating session ends.
        Ephemeral = 1,
        /// Persistent with a 10-digit suffix from the parent's cversion.
        PersistentSequential = 2,
        /// Ephemeral and sequential.
        EphemeralSequential = 3,
        /// Deleted by the server once its last child is gone.
        Container = 4,
        /// Persistent, deleted once unmodified and childless for its TTL.
        PersistentWithTtl = 5,
        /// Persistent sequential with a TTL.
        PersistentSequentialWithTtl = 6,
    }
}

impl CreateMode {
    /// True for the ephemeral modes.
    pub const fn is_ephemeral(self) -> bool {
        matches!(
            self,
            CreateMode::Ephemeral | CreateMode::EphemeralSequential
        )
    }
    /// True for the sequential modes.
    pub const fn is_sequential(self) -> bool {
        matches!(
            self,
            CreateMode::PersistentSequential
                | CreateMode::EphemeralSequential
                | CreateMode::PersistentSequentialWithTtl
        )
    }
    /// True for containers.
    pub const fn is_container(self) -> bool {
        matches!(self, CreateMode::Container)
    }
    /// True for the TTL modes.
    pub const fn is_ttl(self) -> bool {
        matches!(
            self,
            CreateMode::PersistentWithTtl | CreateMode::PersistentSequentialWithTtl
        )
    }
}

int_enum! {
    /// Watch event types (`Watcher.Event.EventType`).
    EventType {
        /// A state change, no path.
        None = -1,
        /// NodeCreated.
        NodeCreated = 1,
        /// NodeDeleted.
        NodeDeleted = 2,
        /// NodeDataChanged.
        NodeDataChanged = 3,
        /// NodeChildrenChanged.
        NodeChildrenChanged = 4,
        /// DataWatchRemoved.
        DataWatchRemoved = 5,
        /// ChildWatchRemoved.
        ChildWatchRemoved = 6,
        /// PersistentWatchRemoved.
        PersistentWatchRemoved = 7,
    }
}

int_enum! {
    /// Session states reported in watch events (`Watcher.Event.KeeperState`).
    KeeperState {
        /// Disconnected.
        Disconnected = 0,
        /// SyncConnected.
        SyncConnected = 3,
        /// AuthFailed.
        AuthFailed = 4,
        /// ConnectedReadOnly.
        ConnectedReadOnly = 5,
        /// SaslAuthenticated.
        SaslAuthenticated = 6,
        /// Closed.
        Closed = 7,
        /// Expired.
        Expired = -112,
    }
}

int_enum! {
    /// Watcher kinds for `checkWatches` / `removeWatches` (`Watcher.WatcherType`).
    WatcherType {
        /// Child watches.
        Children = 1,
        /// Data (and exists) watches.
        Data = 2,
        /// Any kind.
        Any = 3,
        /// Persistent watches.
        Persistent = 4,
        /// Persistent recursive watches.
        PersistentRecursive = 5,
    }
}

int_enum! {
    /// Modes of `addWatch` (`AddWatchMode`).
    AddWatchMode {
        /// Persistent watch on one node.
        Persistent = 0,
        /// Persistent watch on a node and every descendant.
        PersistentRecursive = 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for op in OpCode::ALL {
            assert_eq!(OpCode::try_from(op.code()), Ok(*op));
        }
        for e in ErrorCode::ALL {
            assert_eq!(ErrorCode::try_from(e.code()), Ok(*e));
        }
        assert_eq!(OpCode::try_from(10), Err(10));
        assert_eq!(ErrorCode::NoNode.code(), -101);
        assert_eq!(CreateMode::try_from(3), Ok(CreateMode::EphemeralSequential));
        assert!(CreateMode::EphemeralSequential.is_ephemeral());
        assert!(CreateMode::EphemeralSequential.is_sequential());
        assert_eq!(perms::ALL, 31);
    }
}
