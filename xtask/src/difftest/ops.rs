//! The operations a difftest sequence is made of, and the seeded generator that picks
//! them.
//!
//! Paths are relative to the sequence's root (a fresh znode per replay), so the same
//! sequence can be replayed on both systems and again while shrinking. Names come from a
//! small pool (`a`, `b`, `k`, and the first sequential names `s0000000000`,
//! `s0000000001`) so that creates collide, deletes find children, versions match or not,
//! and watches fire.
//!
//! Containers: `k` is the name containers are created under. A container whose last
//! child goes is deleted by the server's container manager at a time of its own (every
//! 60 s by default in both systems), which would make the two systems differ by timing
//! alone; so the generator never deletes a child of a node named `k` and never puts
//! an ephemeral under one. TTL nodes get a TTL of a day (bad TTLs only through `multi`,
//! where they are refused), so none expires during a run.

use std::fmt;

use zk_proto::data::{Acl, CreateMode, Id, perms};

use crate::chaos::nemesis::Rng;

/// Sessions per sequence; session `i` talks to server `i % servers` of the target's list
/// (the same node ids in both systems).
pub const SESSIONS: usize = 3;

/// `digest` id of `alice:secret` (base64 of its SHA-1).
const ALICE_DIGEST: &str = "alice:aYXlLOpEooaV1cRAvUL1fp9Qt7E=";
/// TTL of every valid TTL create: a day, so no node expires during a run.
pub const TTL_MS: u64 = 86_400_000;

/// A path argument: the sequence's root, a path below it (possibly malformed: `a/`,
/// `a//b`, …) or a raw string (not below the root at all, e.g. without a leading `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathArg {
    /// The sequence's root itself.
    Root,
    /// `<root>/` followed by this.
    Rel(String),
    /// Exactly this string.
    Raw(String),
}

impl PathArg {
    /// The path sent to the server for a sequence rooted at `root`.
    pub fn resolve(&self, root: &str) -> String {
        match self {
            PathArg::Root => root.to_owned(),
            PathArg::Rel(r) => format!("{root}/{r}"),
            PathArg::Raw(r) => r.clone(),
        }
    }

    /// The segments of a path below the root (empty for the others).
    fn segments(&self) -> Vec<&str> {
        match self {
            PathArg::Rel(r) => r.split('/').filter(|s| !s.is_empty()).collect(),
            _ => Vec::new(),
        }
    }

    /// True when the parent of this path is named `k` (a possible container).
    fn under_container(&self) -> bool {
        let segs = self.segments();
        segs.len() >= 2 && segs.get(segs.len() - 2) == Some(&"k")
    }
}

impl fmt::Display for PathArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathArg::Root => write!(f, "<root>"),
            PathArg::Rel(r) => write!(f, "<root>/{}", r.escape_debug()),
            PathArg::Raw(r) => write!(f, "{r:?}"),
        }
    }
}

/// An ACL the generator can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclSpec {
    /// `world:anyone` ALL.
    Open,
    /// `world:anyone` READ.
    ReadOnly,
    /// `world:anyone` with these permissions (may be 0 or beyond ALL).
    World(i32),
    /// `auth:` ALL (the session's authenticated ids; InvalidACL without any).
    Creator,
    /// `digest:alice:…` ALL and `world:anyone` READ.
    Alice,
    /// `ip:` with this address or range and ALL.
    Ip(&'static str),
    /// No entry at all (InvalidACL).
    Empty,
    /// An unknown scheme (InvalidACL).
    BadScheme,
    /// `world:someone` (InvalidACL).
    WorldSomeone,
}

impl AclSpec {
    /// The ACL list sent.
    pub fn acl(self) -> Vec<Acl> {
        let one = |perms: i32, scheme: &str, id: &str| Acl {
            perms,
            id: Id::new(scheme, id),
        };
        match self {
            AclSpec::Open => Acl::open_unsafe(),
            AclSpec::ReadOnly => Acl::read_unsafe(),
            AclSpec::World(p) => vec![one(p, "world", "anyone")],
            AclSpec::Creator => Acl::creator_all(),
            AclSpec::Alice => vec![
                one(perms::ALL, "digest", ALICE_DIGEST),
                one(perms::READ, "world", "anyone"),
            ],
            AclSpec::Ip(addr) => vec![one(perms::ALL, "ip", addr)],
            AclSpec::Empty => Vec::new(),
            AclSpec::BadScheme => vec![one(perms::ALL, "foo", "bar")],
            AclSpec::WorldSomeone => vec![one(perms::ALL, "world", "someone")],
        }
    }
}

impl fmt::Display for AclSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AclSpec::World(p) => write!(f, "world:anyone:{p}"),
            AclSpec::Ip(a) => write!(f, "ip:{a}"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// Which request a plain create uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateApi {
    /// `create` (the reply is the path).
    Create,
    /// `create2` (path and stat); `createContainer` for containers.
    Create2,
}

/// A write op inside `multi`. Unlike the plain calls, these go to the server as they
/// are: null data, malformed paths and bad TTLs included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiWrite {
    /// create, create2 or createContainer (by `api` and `mode`).
    Create {
        /// Path.
        path: PathArg,
        /// Data (`None` is null).
        data: Option<Vec<u8>>,
        /// ACL.
        acl: AclSpec,
        /// Mode (not a TTL one).
        mode: CreateMode,
        /// Request used.
        api: CreateApi,
    },
    /// createTTL with any TTL (valid or not).
    CreateTtl {
        /// Path.
        path: PathArg,
        /// Mode (a TTL one, or not).
        mode: CreateMode,
        /// TTL in ms as sent.
        ttl_ms: i64,
    },
    /// delete.
    Delete {
        /// Path.
        path: PathArg,
        /// Version (-1: any).
        version: i32,
    },
    /// setData.
    SetData {
        /// Path.
        path: PathArg,
        /// Data (`None` is null).
        data: Option<Vec<u8>>,
        /// Version (-1: any).
        version: i32,
    },
    /// check.
    Check {
        /// Path.
        path: PathArg,
        /// Version (-1: any).
        version: i32,
    },
}

/// A read op inside `multiRead`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiRead {
    /// getData.
    GetData(PathArg),
    /// getChildren.
    GetChildren(PathArg),
}

/// One step of a sequence: a client call on session `s` (an index below [`SESSIONS`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// create / create2 / createContainer.
    Create {
        /// Session.
        s: usize,
        /// Path (a prefix for sequential modes).
        path: PathArg,
        /// Data.
        data: Vec<u8>,
        /// ACL.
        acl: AclSpec,
        /// Mode (not a TTL one).
        mode: CreateMode,
        /// Request used.
        api: CreateApi,
    },
    /// createTTL (TTL of [`TTL_MS`]).
    CreateTtl {
        /// Session.
        s: usize,
        /// Path.
        path: PathArg,
        /// Data.
        data: Vec<u8>,
        /// ACL.
        acl: AclSpec,
        /// `PersistentWithTtl` or `PersistentSequentialWithTtl`.
        mode: CreateMode,
    },
    /// delete.
    Delete {
        /// Session.
        s: usize,
        /// Path.
        path: PathArg,
        /// Expected version (`None`: any).
        version: Option<i32>,
    },
    /// exists.
    Exists {
        /// Session.
        s: usize,
        /// Path.
        path: PathArg,
        /// Leave a watch.
        watch: bool,
    },
    /// getData.
    GetData {
        /// Session.
        s: usize,
        /// Path.
        path: PathArg,
        /// Leave a watch.
        watch: bool,
    },
    /// setData.
    SetData {
        /// Session.
        s: usize,
        /// Path.
        path: PathArg,
        /// Data.
        data: Vec<u8>,
        /// Expected version (`None`: any).
        version: Option<i32>,
    },
    /// getACL.
    GetAcl {
        /// Session.
        s: usize,
        /// Path.
        path: PathArg,
    },
    /// setACL.
    SetAcl {
        /// Session.
        s: usize,
        /// Path.
        path: PathArg,
        /// ACL.
        acl: AclSpec,
        /// Expected aversion (`None`: any).
        version: Option<i32>,
    },
    /// getChildren (`two`: getChildren2).
    GetChildren {
        /// Session.
        s: usize,
        /// Path.
        path: PathArg,
        /// Leave a watch.
        watch: bool,
        /// getChildren2 (children and stat).
        two: bool,
    },
    /// getAllChildrenNumber.
    AllChildren {
        /// Session.
        s: usize,
        /// Path.
        path: PathArg,
    },
    /// getEphemerals (the prefix is not checked by the client).
    Ephemerals {
        /// Session.
        s: usize,
        /// Prefix.
        prefix: PathArg,
    },
    /// sync.
    Sync {
        /// Session.
        s: usize,
        /// Path.
        path: PathArg,
    },
    /// multi.
    Multi {
        /// Session.
        s: usize,
        /// The ops.
        ops: Vec<MultiWrite>,
    },
    /// multiRead.
    MultiRead {
        /// Session.
        s: usize,
        /// The ops.
        ops: Vec<MultiRead>,
    },
    /// addAuth.
    Auth {
        /// Session.
        s: usize,
        /// Scheme.
        scheme: &'static str,
        /// Credentials.
        cred: &'static str,
    },
    /// whoAmI.
    WhoAmI {
        /// Session.
        s: usize,
    },
    /// addWatch.
    AddWatch {
        /// Session.
        s: usize,
        /// Path.
        path: PathArg,
        /// PersistentRecursive rather than Persistent.
        recursive: bool,
    },
    /// close (the session's ephemerals go).
    Close {
        /// Session.
        s: usize,
    },
    /// A new session in this slot (the old one, if still open, stays open until the end
    /// of the sequence).
    Reopen {
        /// Session.
        s: usize,
    },
}

/// Every op kind, in the order the summary lists them.
pub const KINDS: &[&str] = &[
    "create",
    "create2",
    "createContainer",
    "createTTL",
    "delete",
    "exists",
    "getData",
    "setData",
    "getACL",
    "setACL",
    "getChildren",
    "getChildren2",
    "getAllChildrenNumber",
    "getEphemerals",
    "sync",
    "multi",
    "multiRead",
    "auth",
    "whoAmI",
    "addWatch",
    "close",
    "reopen",
];

impl Op {
    /// The session the op runs on.
    pub fn session(&self) -> usize {
        match self {
            Op::Create { s, .. }
            | Op::CreateTtl { s, .. }
            | Op::Delete { s, .. }
            | Op::Exists { s, .. }
            | Op::GetData { s, .. }
            | Op::SetData { s, .. }
            | Op::GetAcl { s, .. }
            | Op::SetAcl { s, .. }
            | Op::GetChildren { s, .. }
            | Op::AllChildren { s, .. }
            | Op::Ephemerals { s, .. }
            | Op::Sync { s, .. }
            | Op::Multi { s, .. }
            | Op::MultiRead { s, .. }
            | Op::Auth { s, .. }
            | Op::WhoAmI { s }
            | Op::AddWatch { s, .. }
            | Op::Close { s }
            | Op::Reopen { s } => *s,
        }
    }

    /// The op's name in [`KINDS`].
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Create { mode, .. } if mode.is_container() => "createContainer",
            Op::Create {
                api: CreateApi::Create,
                ..
            } => "create",
            Op::Create { .. } => "create2",
            Op::CreateTtl { .. } => "createTTL",
            Op::Delete { .. } => "delete",
            Op::Exists { .. } => "exists",
            Op::GetData { .. } => "getData",
            Op::SetData { .. } => "setData",
            Op::GetAcl { .. } => "getACL",
            Op::SetAcl { .. } => "setACL",
            Op::GetChildren { two: false, .. } => "getChildren",
            Op::GetChildren { two: true, .. } => "getChildren2",
            Op::AllChildren { .. } => "getAllChildrenNumber",
            Op::Ephemerals { .. } => "getEphemerals",
            Op::Sync { .. } => "sync",
            Op::Multi { .. } => "multi",
            Op::MultiRead { .. } => "multiRead",
            Op::Auth { .. } => "auth",
            Op::WhoAmI { .. } => "whoAmI",
            Op::AddWatch { .. } => "addWatch",
            Op::Close { .. } => "close",
            Op::Reopen { .. } => "reopen",
        }
    }

    /// True for ops that may change the tree (and so fire watches and make the other
    /// sessions' servers possibly stale).
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Op::Create { .. }
                | Op::CreateTtl { .. }
                | Op::Delete { .. }
                | Op::SetData { .. }
                | Op::SetAcl { .. }
                | Op::Multi { .. }
                | Op::Close { .. }
        )
    }

    /// True for ops that leave a watch when they succeed.
    pub fn sets_watch(&self) -> bool {
        matches!(
            self,
            Op::Exists { watch: true, .. }
                | Op::GetData { watch: true, .. }
                | Op::GetChildren { watch: true, .. }
                | Op::AddWatch { .. }
        )
    }
}

fn data_text(d: &[u8]) -> String {
    if d.len() > 16 {
        format!("<{} bytes>", d.len())
    } else {
        format!("{:?}", String::from_utf8_lossy(d))
    }
}

fn opt_data_text(d: &Option<Vec<u8>>) -> String {
    d.as_deref().map_or_else(|| "null".to_owned(), data_text)
}

fn version_text(v: Option<i32>) -> String {
    v.map_or_else(|| "any".to_owned(), |v| v.to_string())
}

impl fmt::Display for MultiWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MultiWrite::Create {
                path,
                data,
                acl,
                mode,
                api,
            } => write!(
                f,
                "{api:?} {path} data={} acl={acl} {mode:?}",
                opt_data_text(data)
            ),
            MultiWrite::CreateTtl { path, mode, ttl_ms } => {
                write!(f, "createTTL {path} {mode:?} ttl={ttl_ms}")
            }
            MultiWrite::Delete { path, version } => write!(f, "delete {path} v={version}"),
            MultiWrite::SetData {
                path,
                data,
                version,
            } => write!(f, "setData {path} {} v={version}", opt_data_text(data)),
            MultiWrite::Check { path, version } => write!(f, "check {path} v={version}"),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{} {} ", self.session(), self.kind())?;
        match self {
            Op::Create {
                path,
                data,
                acl,
                mode,
                ..
            } => write!(f, "{path} data={} acl={acl} {mode:?}", data_text(data)),
            Op::CreateTtl {
                path,
                data,
                acl,
                mode,
                ..
            } => write!(
                f,
                "{path} data={} acl={acl} {mode:?} ttl={TTL_MS}",
                data_text(data)
            ),
            Op::Delete { path, version, .. } => {
                write!(f, "{path} v={}", version_text(*version))
            }
            Op::Exists { path, watch, .. }
            | Op::GetData { path, watch, .. }
            | Op::GetChildren { path, watch, .. } => write!(f, "{path} watch={watch}"),
            Op::SetData {
                path,
                data,
                version,
                ..
            } => write!(f, "{path} {} v={}", data_text(data), version_text(*version)),
            Op::GetAcl { path, .. } | Op::AllChildren { path, .. } | Op::Sync { path, .. } => {
                write!(f, "{path}")
            }
            Op::SetAcl {
                path, acl, version, ..
            } => write!(f, "{path} acl={acl} v={}", version_text(*version)),
            Op::Ephemerals { prefix, .. } => write!(f, "prefix={prefix}"),
            Op::Multi { ops, .. } => {
                let parts: Vec<String> = ops.iter().map(ToString::to_string).collect();
                write!(f, "[{}]", parts.join("; "))
            }
            Op::MultiRead { ops, .. } => {
                let parts: Vec<String> = ops
                    .iter()
                    .map(|o| match o {
                        MultiRead::GetData(p) => format!("getData {p}"),
                        MultiRead::GetChildren(p) => format!("getChildren {p}"),
                    })
                    .collect();
                write!(f, "[{}]", parts.join("; "))
            }
            Op::Auth { scheme, cred, .. } => write!(f, "{scheme} {cred:?}"),
            Op::AddWatch {
                path, recursive, ..
            } => write!(
                f,
                "{path} {}",
                if *recursive {
                    "PersistentRecursive"
                } else {
                    "Persistent"
                }
            ),
            Op::WhoAmI { .. } | Op::Close { .. } | Op::Reopen { .. } => Ok(()),
        }
    }
}

/// The seeded generator of op sequences. It remembers the paths it asked to create
/// (whether or not the create worked) and the sessions it closed, so that later ops
/// often hit existing znodes and closed sessions are often reopened.
pub struct Generator {
    rng: Rng,
    /// Paths below the root that creates were issued for, most recent last.
    known: Vec<String>,
    /// Sessions closed since the sequence began (and not reopened).
    closed: [bool; SESSIONS],
    /// The last addWatch (session, path, recursive), to add the other mode on the same
    /// path now and then.
    last_watch: Option<(usize, PathArg, bool)>,
}

/// Paths remembered by the generator.
const MAX_KNOWN: usize = 64;

const NAMES: &[&str] = &["a", "b", "k", "s0000000000", "s0000000001"];
const DATA: &[&[u8]] = &[b"", b"v1", b"v2", b"hello world"];
const AUTHS: &[(&str, &str)] = &[
    ("digest", "alice:secret"),
    ("digest", "bob:hunter2"),
    ("digest", "alice:wrong"),
    ("ip", "127.0.0.1"),
];

impl Generator {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Generator {
            rng: Rng::new(seed),
            known: Vec::new(),
            closed: [false; SESSIONS],
            last_watch: None,
        }
    }

    /// Notes a create of `path`: remembered when its parent is the root or a path
    /// already remembered (so the create probably worked).
    fn remember(&mut self, path: &PathArg) {
        let PathArg::Rel(r) = path else { return };
        if r.is_empty() || r.ends_with('/') || r.ends_with("/s") || r == "s" {
            // Malformed, or a sequential prefix (its first names are in the pool).
            return;
        }
        let parent_known = match r.rsplit_once('/') {
            None => true,
            Some((parent, _)) => self.known.iter().any(|k| k == parent),
        };
        if !parent_known || self.known.iter().any(|k| k == r) {
            return;
        }
        if self.known.len() == MAX_KNOWN {
            self.known.remove(0);
        }
        self.known.push(r.clone());
    }

    /// Notes a delete of `path` (it probably worked if the path was remembered).
    fn forget(&mut self, path: &PathArg) {
        if let PathArg::Rel(r) = path {
            self.known.retain(|k| k != r);
        }
    }

    /// A path created earlier in the sequence, if any.
    fn known_rel(&mut self) -> Option<String> {
        if self.known.is_empty() {
            return None;
        }
        let i = self.below(self.known.len());
        self.known.get(i).cloned()
    }

    fn below(&mut self, n: usize) -> usize {
        self.rng.below(n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.rng.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        let i = self.below(items.len());
        items[i.min(items.len() - 1)]
    }

    /// A well-formed path below the root: often one created earlier or a child of one,
    /// else depth 1 to 3 from the name pool.
    fn good_rel(&mut self) -> String {
        match self.below(100) {
            0..50 => {
                if let Some(k) = self.known_rel() {
                    return k;
                }
            }
            50..75 => {
                if let Some(k) = self.known_rel()
                    && k.split('/').count() < 4
                {
                    let name = self.pick(NAMES);
                    return format!("{k}/{name}");
                }
            }
            _ => {}
        }
        let depth = match self.below(100) {
            0..55 => 1,
            55..90 => 2,
            _ => 3,
        };
        let names: Vec<&str> = (0..depth).map(|_| self.pick(NAMES)).collect();
        names.join("/")
    }

    /// Any path argument: mostly well-formed, sometimes the root or malformed.
    fn path(&mut self) -> PathArg {
        match self.below(100) {
            0..4 => PathArg::Root,
            4..8 => self.bad_path(),
            _ => PathArg::Rel(self.good_rel()),
        }
    }

    fn bad_path(&mut self) -> PathArg {
        let good = self.good_rel();
        match self.below(7) {
            0 => PathArg::Rel(format!("{good}/")),
            1 => PathArg::Rel(format!("{good}//a")),
            2 => PathArg::Rel(format!("{good}/./a")),
            3 => PathArg::Rel(format!("{good}/..")),
            4 => PathArg::Rel(format!("{good}\u{1}")),
            5 => PathArg::Raw(format!("no-slash/{good}")),
            _ => PathArg::Rel(String::new()),
        }
    }

    /// A path that is not a child of a `k` node (deletes and ephemerals).
    fn path_not_under_k(&mut self) -> PathArg {
        for _ in 0..8 {
            let p = self.path();
            if !p.under_container() {
                return p;
            }
        }
        PathArg::Rel("a".into())
    }

    /// A path whose last name is `k` (container creates).
    fn container_path(&mut self) -> PathArg {
        let parent = match self.below(3) {
            0 => None,
            1 => self.known_rel(),
            _ => Some(self.pick(NAMES).to_owned()),
        };
        match parent {
            None => PathArg::Rel("k".to_owned()),
            Some(p) => PathArg::Rel(format!("{p}/k")),
        }
    }

    /// A prefix for a sequential create: `<parent>/s`, sometimes `<parent>/`.
    fn seq_path(&mut self, not_under_k: bool) -> PathArg {
        let parent = match self.below(4) {
            0 => None,
            1 => self.known_rel(),
            _ => Some(self.pick(NAMES).to_owned()),
        };
        let parent = match parent {
            Some(p) if not_under_k && (p == "k" || p.ends_with("/k")) => Some("a".to_owned()),
            p => p,
        };
        let last = if self.chance(10) { "" } else { "s" };
        match parent {
            None => PathArg::Rel(last.to_owned()),
            Some(p) => PathArg::Rel(format!("{p}/{last}")),
        }
    }

    fn data(&mut self) -> Vec<u8> {
        if self.chance(2) {
            return vec![b'z'; 2000];
        }
        self.pick(DATA).to_vec()
    }

    fn opt_data(&mut self) -> Option<Vec<u8>> {
        if self.chance(25) {
            None
        } else {
            Some(self.data())
        }
    }

    fn version(&mut self) -> Option<i32> {
        match self.below(10) {
            0..4 => None,
            4..6 => Some(0),
            6..8 => Some(1),
            8 => Some(2),
            _ => Some(-2),
        }
    }

    fn acl(&mut self) -> AclSpec {
        match self.below(100) {
            0..60 => AclSpec::Open,
            60..67 => AclSpec::ReadOnly,
            67..74 => {
                let p = self.pick(&[
                    perms::READ | perms::CREATE,
                    perms::ALL & !perms::DELETE,
                    perms::ALL & !perms::WRITE,
                    perms::ALL & !perms::ADMIN,
                    0,
                    perms::ALL | 32,
                ]);
                AclSpec::World(p)
            }
            74..81 => AclSpec::Creator,
            81..87 => AclSpec::Alice,
            87..92 => {
                let a = self.pick(&["127.0.0.1", "10.1.2.3", "127.0.0.0/8", "300.1.1.1"]);
                AclSpec::Ip(a)
            }
            92..95 => AclSpec::Empty,
            95..98 => AclSpec::BadScheme,
            _ => AclSpec::WorldSomeone,
        }
    }

    fn plain_mode(&mut self) -> CreateMode {
        match self.below(100) {
            0..45 => CreateMode::Persistent,
            45..65 => CreateMode::Ephemeral,
            65..80 => CreateMode::PersistentSequential,
            80..92 => CreateMode::EphemeralSequential,
            _ => CreateMode::Container,
        }
    }

    /// A create with a path that fits its mode.
    fn create_parts(&mut self) -> (PathArg, CreateMode) {
        let mode = self.plain_mode();
        let path = if mode.is_container() {
            self.container_path()
        } else if mode.is_sequential() {
            self.seq_path(mode.is_ephemeral())
        } else if mode.is_ephemeral() {
            self.path_not_under_k()
        } else {
            self.path()
        };
        self.remember(&path);
        (path, mode)
    }

    fn multi_write(&mut self) -> MultiWrite {
        match self.below(100) {
            0..35 => {
                let (path, mode) = self.create_parts();
                let api = match self.below(2) {
                    0 => CreateApi::Create,
                    _ => CreateApi::Create2,
                };
                MultiWrite::Create {
                    path,
                    data: self.opt_data(),
                    acl: self.acl(),
                    mode,
                    api,
                }
            }
            35..42 => {
                let mode = match self.below(4) {
                    0 => CreateMode::PersistentSequentialWithTtl,
                    1 => CreateMode::Persistent,
                    _ => CreateMode::PersistentWithTtl,
                };
                let ttl_ms = self.pick(&[TTL_MS as i64, 0, -5, 1 << 41]);
                let path = if mode.is_sequential() {
                    self.seq_path(false)
                } else {
                    self.path()
                };
                MultiWrite::CreateTtl { path, mode, ttl_ms }
            }
            42..62 => MultiWrite::Delete {
                path: self.path_not_under_k(),
                version: self.version().unwrap_or(-1),
            },
            62..82 => MultiWrite::SetData {
                path: self.path(),
                data: self.opt_data(),
                version: self.version().unwrap_or(-1),
            },
            _ => MultiWrite::Check {
                path: self.path(),
                version: self.version().unwrap_or(-1),
            },
        }
    }

    /// One op on a session chosen at random (a closed session is mostly reopened).
    pub fn op(&mut self) -> Op {
        let s = self.below(SESSIONS);
        if self.closed.get(s).copied().unwrap_or(false) && self.chance(60) {
            if let Some(c) = self.closed.get_mut(s) {
                *c = false;
            }
            return Op::Reopen { s };
        }
        let op = self.op_on(s);
        match &op {
            Op::Close { s } => {
                if let Some(c) = self.closed.get_mut(*s) {
                    *c = true;
                }
            }
            Op::Reopen { s } => {
                if let Some(c) = self.closed.get_mut(*s) {
                    *c = false;
                }
            }
            Op::CreateTtl { path, .. } => self.remember(&path.clone()),
            Op::Delete { path, .. } => self.forget(&path.clone()),
            _ => {}
        }
        op
    }

    fn op_on(&mut self, s: usize) -> Op {
        let watch = self.chance(40);
        match self.below(1000) {
            0..160 => {
                let (path, mode) = self.create_parts();
                let api = match self.below(2) {
                    0 => CreateApi::Create,
                    _ => CreateApi::Create2,
                };
                Op::Create {
                    s,
                    path,
                    data: self.data(),
                    acl: self.acl(),
                    mode,
                    api,
                }
            }
            160..185 => {
                let seq = self.chance(30);
                Op::CreateTtl {
                    s,
                    path: if seq {
                        self.seq_path(false)
                    } else {
                        self.path()
                    },
                    data: self.data(),
                    acl: self.acl(),
                    mode: if seq {
                        CreateMode::PersistentSequentialWithTtl
                    } else {
                        CreateMode::PersistentWithTtl
                    },
                }
            }
            185..275 => Op::Delete {
                s,
                path: self.path_not_under_k(),
                version: self.version(),
            },
            275..345 => Op::Exists {
                s,
                path: self.path(),
                watch,
            },
            345..425 => Op::GetData {
                s,
                path: self.path(),
                watch,
            },
            425..505 => Op::SetData {
                s,
                path: self.path(),
                data: self.data(),
                version: self.version(),
            },
            505..535 => Op::GetAcl {
                s,
                path: self.path(),
            },
            535..560 => Op::SetAcl {
                s,
                path: self.path(),
                acl: self.acl(),
                version: self.version(),
            },
            560..640 => Op::GetChildren {
                s,
                path: self.path(),
                watch,
                two: self.chance(50),
            },
            640..655 => Op::AllChildren {
                s,
                path: self.path(),
            },
            655..675 => {
                let prefix = match self.below(5) {
                    0 => PathArg::Raw("/".into()),
                    1 => PathArg::Raw("no-slash".into()),
                    2 => PathArg::Root,
                    _ => PathArg::Rel(self.good_rel()),
                };
                Op::Ephemerals { s, prefix }
            }
            675..690 => Op::Sync {
                s,
                path: self.path(),
            },
            690..790 => {
                // Single-op multis are common: they are how null data gets in.
                let n = if self.chance(40) {
                    1
                } else {
                    2 + self.below(3)
                };
                Op::Multi {
                    s,
                    ops: (0..n).map(|_| self.multi_write()).collect(),
                }
            }
            790..815 => {
                let n = 1 + self.below(3);
                let ops = (0..n)
                    .map(|_| {
                        if self.chance(50) {
                            MultiRead::GetData(self.path())
                        } else {
                            MultiRead::GetChildren(self.path())
                        }
                    })
                    .collect();
                Op::MultiRead { s, ops }
            }
            815..845 => {
                let (scheme, cred) = if self.chance(5) {
                    ("foo", "bar")
                } else {
                    self.pick(AUTHS)
                };
                Op::Auth { s, scheme, cred }
            }
            845..860 => Op::WhoAmI { s },
            860..920 => {
                let op = match self.last_watch.take() {
                    // The other mode on the same path, by the same session.
                    Some((ws, path, recursive)) if self.chance(30) => Op::AddWatch {
                        s: ws,
                        path,
                        recursive: !recursive,
                    },
                    _ => Op::AddWatch {
                        s,
                        path: self.path(),
                        recursive: self.chance(50),
                    },
                };
                if let Op::AddWatch {
                    s, path, recursive, ..
                } = &op
                {
                    self.last_watch = Some((*s, path.clone(), *recursive));
                }
                op
            }
            920..960 => Op::Close { s },
            _ => Op::Reopen { s },
        }
    }

    /// A sequence of `len` ops (on a fresh root: nothing remembered from the last one).
    pub fn sequence(&mut self, len: usize) -> Vec<Op> {
        self.known.clear();
        self.closed = [false; SESSIONS];
        self.last_watch = None;
        (0..len).map(|_| self.op()).collect()
    }

    /// A length between `lo` and `hi` (inclusive).
    pub fn length(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_seeded_and_covers_every_kind() {
        let a = Generator::new(7).sequence(3000);
        let b = Generator::new(7).sequence(3000);
        assert_eq!(a, b);
        let c = Generator::new(8).sequence(3000);
        assert_ne!(a, c);
        for kind in KINDS {
            assert!(
                a.iter().any(|op| op.kind() == *kind),
                "no {kind} in 3000 ops"
            );
        }
        assert!(a.iter().all(|op| op.session() < SESSIONS));
    }

    #[test]
    fn no_delete_or_ephemeral_below_a_container_name() {
        let ops = Generator::new(11).sequence(5000);
        for op in &ops {
            match op {
                Op::Delete { path, .. } => assert!(!path.under_container(), "{op}"),
                Op::Create { path, mode, .. } if mode.is_ephemeral() => {
                    assert!(!path.under_container(), "{op}")
                }
                Op::Create { path, mode, .. } if mode.is_container() => {
                    assert_eq!(path.segments().last(), Some(&"k"), "{op}")
                }
                Op::Multi { ops: m, .. } => {
                    for w in m {
                        match w {
                            MultiWrite::Delete { path, .. } => {
                                assert!(!path.under_container(), "{w}")
                            }
                            MultiWrite::Create { path, mode, .. } if mode.is_ephemeral() => {
                                assert!(!path.under_container(), "{w}")
                            }
                            MultiWrite::CreateTtl { ttl_ms, .. } => {
                                // A valid TTL is a day; the others are refused.
                                assert!(
                                    *ttl_ms == TTL_MS as i64 || *ttl_ms <= 0 || *ttl_ms > 1 << 40
                                )
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        // Null data and malformed paths are produced (through multi).
        let text: String = ops.iter().map(|o| format!("{o}\n")).collect();
        assert!(text.contains("data=null"));
        assert!(text.contains("//a"));
    }

    #[test]
    fn paths_resolve_below_the_root() {
        assert_eq!(PathArg::Root.resolve("/r"), "/r");
        assert_eq!(PathArg::Rel("a/b".into()).resolve("/r"), "/r/a/b");
        assert_eq!(PathArg::Raw("x".into()).resolve("/r"), "x");
        assert!(PathArg::Rel("k/a".into()).under_container());
        assert!(!PathArg::Rel("a/k".into()).under_container());
    }
}
