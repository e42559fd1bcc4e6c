//! The in-memory znode tree: ZooKeeper's `DataTree` and `DataNode`.
//!
//! [`DataTree`] holds every znode (data, ACL, [`StatPersisted`], children), the ephemerals
//! of each session, the container and TTL nodes and the session table, and applies
//! replicated txns deterministically with [`DataTree::apply`] (the only clock is the txn
//! header's time). Reads give what the server answers clients with: data and [`Stat`],
//! children, ACLs, ephemerals. Quota usage under `/zookeeper/quota` is kept up to date
//! as ZooKeeper does.
//!
//! ```
//! use zk_proto::data::{Acl, EventType, OpCode};
//! use zk_proto::txn::{Txn, TxnEntry, TxnHeader};
//! use zk_storage::tree::DataTree;
//!
//! let mut tree = DataTree::new();
//! let out = tree.apply(&TxnEntry {
//!     header: TxnHeader { client_id: 1, cxid: 1, zxid: 0x1_0000_0001, time: 1000, op: OpCode::Create2 },
//!     txn: Txn::Create { path: "/app".into(), data: Some(b"v1".to_vec()), acl: Acl::open_unsafe(),
//!         ephemeral: false, parent_cversion: 1 },
//! });
//! assert!(out.is_ok());
//! assert_eq!(out.triggers[0].event, EventType::NodeCreated);
//! let node = tree.get("/app").unwrap();
//! assert_eq!(node.data(), Some(&b"v1"[..]));
//! assert_eq!(node.stat().czxid, 0x1_0000_0001);
//! assert_eq!(tree.children("/").unwrap(), vec!["app", "zookeeper"]);
//! ```
//!
//! Layout: nodes live in 96-byte slots of 256-slot chunks behind `Arc` (copy on write),
//! found by path through a hash table of (slot id, path hash); children are linked lists
//! through the slots. A node keeps its name, not its path (a path is its ancestors' names:
//! a lookup checks a candidate by walking up its parents), in one allocation with its
//! data and, when not 0, its `ephemeralOwner`; the stored stat's other fields are slot
//! fields. So a node costs one slot, one index entry and one allocation of name + data
//! (about 130 bytes beyond its data for 1M znodes of 100 B: `examples/footprint.rs`).
//! The ephemeral, container and TTL sets hold their own copies of those nodes' paths.
//! [`DataTree::snapshot_view`] clones the chunk pointers only, and so does `clone`
//! (plus the index).
//!
//! Where this tree differs from ZooKeeper's, on purpose:
//! * [`DataTree::children`] is sorted (ZooKeeper returns its `HashSet` order).
//! * A multi is atomic even if a member fails at apply time (see [`DataTree::apply`]);
//!   ZooKeeper keeps the members applied before the failure.
//! * A delete of a node with children is refused (`NotEmpty`) and so is a create under an
//!   ephemeral (`NoChildrenForEphemerals`): ZooKeeper's `PrepRequestProcessor` checks
//!   both, its `DataTree` does not, and an orphan would corrupt the tree.
//! * After a create fails with `NodeExists`, the parent's cversion/pzxid are raised for
//!   every create op code (ZooKeeper 3.8 does it for create (1) only).
//! * Extended ephemeral types are always on: an `ephemeralOwner` whose top byte is 0xff is
//!   a TTL node, so session ids must not start with 0xff (server ids up to 254).
//! * [`DataTree::node_count`] counts the root once; ZooKeeper's `zk_znode_count` is one
//!   more.

mod acl;
mod apply;
mod arena;
mod path;
mod quota;
mod snapshot;
mod undo;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;
use std::sync::Arc;

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use zk_proto::data::{Acl, ErrorCode, Stat};
use zk_proto::zxid::Zxid;

pub use apply::{ApplyOutcome, OpOutcome, WatchTrigger};
pub use arena::StatPersisted;
pub use path::{InvalidPath, sequential_path, split_parent, validate_path};
pub use quota::{QUOTA_LIMIT_NODE, QUOTA_ROOT, QUOTA_STAT_NODE};
pub use snapshot::{SnapshotView, TreeSnapshotError};

use acl::AclTable;
use arena::{Arena, MAX_NAME_LEN, NIL, Slot};

/// `ephemeralOwner` of a container node (`EphemeralType.CONTAINER_EPHEMERAL_OWNER`).
pub const CONTAINER_EPHEMERAL_OWNER: i64 = i64::MIN;
/// Largest TTL in ms a TTL node can have (40 bits, ZooKeeper's `EphemeralType.TTL.maxValue`).
pub const MAX_TTL_MS: i64 = (1 << 40) - 1;
const EXTENDED_MASK: i64 = 0xff << 56;
const RESERVED_BITS_MASK: i64 = 0x00ff_ff00_0000_0000;

/// What kind of node an `ephemeralOwner` value denotes (ZooKeeper's `EphemeralType`, with
/// extended types always on: session ids must not start with byte 0xff).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// Owner 0.
    Persistent,
    /// Owned by this session.
    Ephemeral(i64),
    /// A container.
    Container,
    /// A TTL node with this TTL in ms.
    Ttl(i64),
}

impl NodeKind {
    /// Classifies a stored `ephemeralOwner`.
    pub fn of(ephemeral_owner: i64) -> NodeKind {
        if ephemeral_owner == 0 {
            NodeKind::Persistent
        } else if ephemeral_owner == CONTAINER_EPHEMERAL_OWNER {
            NodeKind::Container
        } else if ephemeral_owner & EXTENDED_MASK == EXTENDED_MASK
            && ephemeral_owner & RESERVED_BITS_MASK == 0
        {
            NodeKind::Ttl(ephemeral_owner & MAX_TTL_MS)
        } else {
            NodeKind::Ephemeral(ephemeral_owner)
        }
    }

    /// The `ephemeralOwner` clients see: the session for ephemerals, else 0.
    pub fn client_owner(ephemeral_owner: i64) -> i64 {
        match NodeKind::of(ephemeral_owner) {
            NodeKind::Ephemeral(s) => s,
            _ => 0,
        }
    }
}

/// The stored `ephemeralOwner` of a TTL node (`0xff << 56 | ttl`), `None` unless
/// `0 < ttl_ms <= MAX_TTL_MS`.
pub fn ttl_ephemeral_owner(ttl_ms: i64) -> Option<i64> {
    (ttl_ms > 0 && ttl_ms <= MAX_TTL_MS).then_some(EXTENDED_MASK | ttl_ms)
}

#[derive(Debug, Clone, Copy)]
struct IndexEntry {
    id: u32,
    hash: u32,
}

fn table_hash(h: u32) -> u64 {
    (u64::from(h) << 32) | u64::from(h)
}

/// The znode tree of one server. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct DataTree {
    arena: Arena,
    index: HashTable<IndexEntry>,
    hasher: RandomState,
    acls: AclTable,
    sessions: BTreeMap<i64, i32>,
    ephemerals: HashMap<i64, BTreeSet<Arc<str>>>,
    containers: BTreeSet<Arc<str>>,
    ttls: BTreeSet<Arc<str>>,
    /// Paths with a quota (a `zookeeper_limits` node under `/zookeeper/quota`).
    quotas: BTreeSet<Arc<str>>,
    last_processed_zxid: Zxid,
    data_size: u64,
    /// Changes made by the multi being applied, to roll it back if a member fails.
    journal: Option<Vec<undo::Undo>>,
}

impl Default for DataTree {
    fn default() -> Self {
        DataTree::new()
    }
}

/// A borrowed node of a [`DataTree`].
#[derive(Clone, Copy)]
pub struct NodeRef<'a> {
    tree: &'a DataTree,
    id: u32,
    slot: &'a Slot,
}

impl std::fmt::Debug for NodeRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeRef")
            .field("path", &self.path())
            .field("stat", &self.stat())
            .finish()
    }
}

impl<'a> NodeRef<'a> {
    /// Full path (put together from the names of the node and its ancestors).
    pub fn path(&self) -> String {
        self.tree.path_of(self.id)
    }
    /// The node's name: the last component of its path ("" for the root).
    pub fn name(&self) -> &'a str {
        self.slot.name()
    }
    /// The data; `None` when it is null (created or set with null data), which clients
    /// see as a −1 length, unlike empty data.
    pub fn data(&self) -> Option<&'a [u8]> {
        self.slot.data()
    }
    /// The stat as clients see it.
    pub fn stat(&self) -> Stat {
        client_stat(self.slot)
    }
    /// The stat as stored.
    pub fn persisted(&self) -> StatPersisted {
        self.slot.stat()
    }
    /// The ACL.
    pub fn acl(&self) -> &'a [Acl] {
        self.tree.acls.get(self.slot.acl)
    }
    /// Number of children.
    pub fn num_children(&self) -> u32 {
        self.slot.num_children
    }
    /// Ephemeral, container, TTL or persistent.
    pub fn kind(&self) -> NodeKind {
        NodeKind::of(self.slot.owner())
    }
}

fn client_stat(slot: &Slot) -> Stat {
    let s = &slot.stat();
    let num_children = i32::try_from(slot.num_children).unwrap_or(i32::MAX);
    Stat {
        czxid: s.czxid,
        mzxid: s.mzxid,
        ctime: s.ctime,
        mtime: s.mtime,
        version: s.version,
        // ZooKeeper's DataNode.copyStat: stored cversion counts creates only.
        cversion: s.cversion.wrapping_mul(2).wrapping_sub(num_children),
        aversion: s.aversion,
        ephemeral_owner: NodeKind::client_owner(s.ephemeral_owner),
        // 0 for null data too, as ZooKeeper's DataNode.copyStat.
        data_length: i32::try_from(slot.data_len()).unwrap_or(i32::MAX),
        num_children,
        pzxid: s.pzxid,
    }
}

impl DataTree {
    /// The tree of a fresh ZooKeeper server: `/`, `/zookeeper`, `/zookeeper/quota` and
    /// `/zookeeper/config` (readable by anyone, aversion −1, as `DataTree.addConfigNode`
    /// leaves it), all with zeroed stats.
    pub fn new() -> Self {
        let mut tree = DataTree::empty();
        let open = Acl::open_unsafe();
        let zero = StatPersisted::default();
        let initial = [
            ("/", &open, zero),
            ("/zookeeper", &open, zero),
            ("/zookeeper/quota", &open, zero),
            (
                "/zookeeper/config",
                &Acl::read_unsafe(),
                StatPersisted {
                    aversion: -1,
                    ..zero
                },
            ),
        ];
        for (path, acl, stat) in initial {
            let acl = tree.acls.intern(acl);
            // Cannot fail: each parent is inserted first and the tree is empty.
            let _ = tree.insert_node(path, Some(&[]), acl, stat);
        }
        tree
    }

    /// A tree without any node (not even `/`), for snapshot loading.
    fn empty() -> Self {
        DataTree {
            arena: Arena::default(),
            index: HashTable::new(),
            hasher: RandomState::default(),
            acls: AclTable::default(),
            sessions: BTreeMap::new(),
            ephemerals: HashMap::new(),
            containers: BTreeSet::new(),
            ttls: BTreeSet::new(),
            quotas: BTreeSet::new(),
            last_processed_zxid: 0,
            data_size: 0,
            journal: None,
        }
    }

    fn path_hash(&self, path: &str) -> u32 {
        (self.hasher.hash_one(path) >> 32) as u32
    }

    fn lookup_hashed(&self, path: &str, h: u32) -> Option<u32> {
        self.index
            .find(table_hash(h), |e| {
                e.hash == h && path_is(&self.arena, e.id, path)
            })
            .map(|e| e.id)
    }

    /// The full path of a live node, from its name and its ancestors'.
    fn path_of(&self, id: u32) -> String {
        let mut names = Vec::new();
        let mut cur = id;
        // Bounded: a node has fewer ancestors than there are live nodes.
        for _ in 0..=self.arena.live() {
            let s = self.arena.slot(cur);
            if s.parent == NIL {
                break;
            }
            names.push(s.name());
            cur = s.parent;
        }
        if names.is_empty() {
            return "/".to_string();
        }
        let mut path = String::with_capacity(names.iter().map(|n| n.len() + 1).sum());
        for name in names.iter().rev() {
            path.push('/');
            path.push_str(name);
        }
        path
    }

    fn lookup(&self, path: &str) -> Option<u32> {
        self.lookup_hashed(path, self.path_hash(path))
    }

    /// Links a new node under its parent (which must exist) and indexes it. Checks
    /// nothing else: the callers do.
    fn insert_node(
        &mut self,
        path: &str,
        data: Option<&[u8]>,
        acl: u32,
        stat: StatPersisted,
    ) -> Result<u32, ErrorCode> {
        self.insert_node_under(path, data, acl, stat, None)
    }

    /// [`insert_node`](Self::insert_node) with the parent's id when the caller knows it.
    fn insert_node_under(
        &mut self,
        path: &str,
        data: Option<&[u8]>,
        acl: u32,
        stat: StatPersisted,
        parent_hint: Option<u32>,
    ) -> Result<u32, ErrorCode> {
        let (parent, name) = match (parent_hint, split_parent(path)) {
            (Some(parent), Some((_, name))) => (parent, name),
            (None, Some((parent_path, name))) => {
                (self.lookup(parent_path).ok_or(ErrorCode::NoNode)?, name)
            }
            (_, None) if self.arena.live() == 0 => (NIL, ""),
            (_, None) => return Err(ErrorCode::NodeExists),
        };
        if name.len() > MAX_NAME_LEN {
            return Err(ErrorCode::BadArguments);
        }
        let h = self.path_hash(path);
        let arena = &self.arena;
        let vacant = match self.index.entry(
            table_hash(h),
            |e| e.hash == h && path_is(arena, e.id, path),
            |e| table_hash(e.hash),
        ) {
            hashbrown::hash_table::Entry::Occupied(_) => return Err(ErrorCode::NodeExists),
            hashbrown::hash_table::Entry::Vacant(v) => v,
        };
        let next = if parent == NIL {
            NIL
        } else {
            self.arena.slot(parent).first_child
        };
        let owner = stat.ephemeral_owner;
        let data_len = data.map_or(0, <[u8]>::len);
        let mut slot = Slot::new(name, data, stat, acl);
        slot.parent = parent;
        slot.next = next;
        let id = self.arena.alloc(slot).ok_or(ErrorCode::SystemError)?;
        vacant.insert(IndexEntry { id, hash: h });
        self.data_size += (path.len() + data_len) as u64;
        if next != NIL {
            self.arena.slot_mut(next).prev = id;
        }
        if parent != NIL {
            let p = self.arena.slot_mut(parent);
            p.first_child = id;
            p.num_children += 1;
        }
        if self.journal.is_some() {
            self.journal_push(undo::Undo::Created(path.into()));
        }
        if let Some((target, QUOTA_LIMIT_NODE)) = quota::quota_target(path) {
            self.quotas.insert(Arc::from(target));
        }
        match NodeKind::of(owner) {
            NodeKind::Persistent => {}
            NodeKind::Container => {
                self.containers.insert(Arc::from(path));
            }
            NodeKind::Ttl(_) => {
                self.ttls.insert(Arc::from(path));
            }
            NodeKind::Ephemeral(session) => {
                self.ephemerals
                    .entry(session)
                    .or_default()
                    .insert(Arc::from(path));
            }
        }
        Ok(id)
    }

    /// Unlinks and frees a childless node; `path` is its path.
    fn remove_node(&mut self, id: u32, path: &str) {
        self.journal_removed(id);
        let (parent, prev, next) = {
            let s = self.arena.slot(id);
            (s.parent, s.prev, s.next)
        };
        if prev != NIL {
            self.arena.slot_mut(prev).next = next;
        } else if parent != NIL {
            self.arena.slot_mut(parent).first_child = next;
        }
        if next != NIL {
            self.arena.slot_mut(next).prev = prev;
        }
        if parent != NIL {
            let p = self.arena.slot_mut(parent);
            p.num_children = p.num_children.saturating_sub(1);
        }
        let old = self.arena.release(id);
        let old_data_len = old.data_len();
        let h = self.path_hash(path);
        if let Ok(entry) = self.index.find_entry(table_hash(h), |e| e.id == id) {
            entry.remove();
        }
        if let Some((target, QUOTA_LIMIT_NODE)) = quota::quota_target(path) {
            self.quotas.remove(target);
        }
        self.acls.release(old.acl);
        self.data_size = self
            .data_size
            .saturating_sub((path.len() + old_data_len) as u64);
        match NodeKind::of(old.owner()) {
            NodeKind::Persistent => {}
            NodeKind::Container => {
                self.containers.remove(path);
            }
            NodeKind::Ttl(_) => {
                self.ttls.remove(path);
            }
            NodeKind::Ephemeral(session) => {
                if let Some(set) = self.ephemerals.get_mut(&session) {
                    set.remove(path);
                    if set.is_empty() {
                        self.ephemerals.remove(&session);
                    }
                }
            }
        }
    }

    // ---- reads -------------------------------------------------------------------

    /// The node at `path`.
    pub fn get(&self, path: &str) -> Option<NodeRef<'_>> {
        let id = self.lookup(path)?;
        Some(NodeRef {
            tree: self,
            id,
            slot: self.arena.slot(id),
        })
    }

    /// True when a node exists at `path`.
    pub fn exists(&self, path: &str) -> bool {
        self.lookup(path).is_some()
    }

    /// The client stat of the node at `path`.
    pub fn stat(&self, path: &str) -> Option<Stat> {
        self.get(path).map(|n| n.stat())
    }

    /// The ACL and stat of the node at `path` (getACL).
    pub fn acl(&self, path: &str) -> Option<(&[Acl], Stat)> {
        self.get(path).map(|n| (n.acl(), n.stat()))
    }

    /// Names of the children of `path`, sorted by byte order (ZooKeeper returns its
    /// `HashSet` order, which clients must not rely on; sorted is deterministic).
    pub fn children(&self, path: &str) -> Option<Vec<&str>> {
        let mut names: Vec<&str> = self.children_unsorted(path)?.collect();
        names.sort_unstable();
        Some(names)
    }

    /// Names of the children of `path` in no particular order (newest first), without
    /// sorting or allocating.
    pub fn children_unsorted(&self, path: &str) -> Option<impl Iterator<Item = &str> + '_> {
        let id = self.lookup(path)?;
        Some(self.child_ids(id).map(|c| self.arena.slot(c).name()))
    }

    fn child_ids(&self, id: u32) -> impl Iterator<Item = u32> + '_ {
        let mut next = self.arena.slot(id).first_child;
        std::iter::from_fn(move || {
            if next == NIL {
                return None;
            }
            let cur = next;
            next = self.arena.slot(cur).next;
            Some(cur)
        })
    }

    /// Number of descendants of `path` (getAllChildrenNumber), `None` if it does not
    /// exist.
    pub fn all_children_number(&self, path: &str) -> Option<u64> {
        let id = self.lookup(path)?;
        if path == "/" {
            return Some(self.arena.live() as u64 - 1);
        }
        let mut count = 0u64;
        // Bounded by the number of nodes: every id is pushed once.
        let mut stack = vec![id];
        while let Some(cur) = stack.pop() {
            for c in self.child_ids(cur) {
                count += 1;
                stack.push(c);
            }
        }
        Some(count)
    }

    /// The ephemerals of `session`, sorted.
    pub fn ephemerals(&self, session: i64) -> Vec<&str> {
        self.ephemerals
            .get(&session)
            .map(|s| s.iter().map(|p| &**p).collect())
            .unwrap_or_default()
    }

    /// The ephemerals of `session` whose path starts with `prefix` (getEphemerals:
    /// an empty or `/` prefix, surrounding whitespace ignored, means all), sorted.
    pub fn ephemerals_with_prefix(&self, session: i64, prefix: &str) -> Vec<&str> {
        let trimmed = prefix.trim();
        let all = trimmed.is_empty() || trimmed == "/";
        self.ephemerals
            .get(&session)
            .map(|s| {
                s.iter()
                    .map(|p| &**p)
                    .filter(|p| all || p.starts_with(prefix))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sessions that own at least one ephemeral.
    pub fn sessions_with_ephemerals(&self) -> Vec<i64> {
        let mut v: Vec<i64> = self.ephemerals.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Number of znodes, the root included. (ZooKeeper's `zk_znode_count` is one more: its
    /// map holds the root under both "" and "/".)
    pub fn node_count(&self) -> usize {
        self.arena.live()
    }

    /// Number of ephemeral znodes (`zk_ephemerals_count`).
    pub fn ephemeral_count(&self) -> usize {
        self.ephemerals.values().map(BTreeSet::len).sum()
    }

    /// Sum of path and data lengths over all nodes (`zk_approximate_data_size`).
    pub fn approximate_data_size(&self) -> u64 {
        self.data_size
    }

    /// Number of distinct ACL lists in use.
    pub fn acl_list_count(&self) -> usize {
        self.acls.len()
    }

    /// The session table: session id → timeout, kept by createSession/closeSession txns.
    pub fn sessions(&self) -> impl Iterator<Item = (i64, i32)> + '_ {
        self.sessions.iter().map(|(&id, &t)| (id, t))
    }

    /// The timeout of a session in the table.
    pub fn session_timeout(&self, session: i64) -> Option<i32> {
        self.sessions.get(&session).copied()
    }

    /// zxid of the newest txn applied (or loaded from a snapshot).
    pub fn last_processed_zxid(&self) -> Zxid {
        self.last_processed_zxid
    }

    /// Sets the last processed zxid (after replaying a log whose last txns were not
    /// applied to the tree, for instance).
    pub fn set_last_processed_zxid(&mut self, zxid: Zxid) {
        self.last_processed_zxid = zxid;
    }

    /// Paths of all container nodes, sorted.
    pub fn containers(&self) -> Vec<&str> {
        self.containers.iter().map(|p| &**p).collect()
    }

    /// Paths of all TTL nodes, sorted.
    pub fn ttl_nodes(&self) -> Vec<&str> {
        self.ttls.iter().map(|p| &**p).collect()
    }

    /// Paths that have a quota (a `zookeeper_limits` node under [`QUOTA_ROOT`]), sorted.
    pub fn quota_paths(&self) -> Vec<&str> {
        self.quotas.iter().map(|p| &**p).collect()
    }

    /// What the container manager should delete at `now_ms` (ZooKeeper's
    /// `ContainerManager.getCandidates`): childless containers that have had a child
    /// (stored cversion > 0), or that are older than `max_never_used_ms` since their last
    /// change when that is not 0; then childless TTL nodes unmodified for longer than
    /// their TTL. Sorted, containers first.
    pub fn cleanup_candidates(&self, now_ms: i64, max_never_used_ms: i64) -> Vec<String> {
        let mut out = Vec::new();
        for path in &self.containers {
            if let Some(n) = self.get(path) {
                let elapsed = now_ms.saturating_sub(n.slot.mtime);
                if n.num_children() == 0
                    && (n.slot.cversion > 0
                        || (max_never_used_ms != 0 && elapsed > max_never_used_ms))
                {
                    out.push(path.to_string());
                }
            }
        }
        for path in &self.ttls {
            if let Some(n) = self.get(path)
                && n.num_children() == 0
                && let NodeKind::Ttl(ttl) = n.kind()
                && ttl != 0
                && now_ms.saturating_sub(n.slot.mtime) > ttl
            {
                out.push(path.to_string());
            }
        }
        out
    }

    /// Sets `/zookeeper/config` to the ensemble's dynamic config as ZooKeeper's
    /// `ZKDatabase.initConfigInZKDatabase` does: data, version −1, mzxid = the config's
    /// version, mtime = `time_ms`. A local change, not a txn. Recreates the node if it is
    /// missing.
    pub fn init_config_node(&mut self, data: &[u8], config_version: i64, time_ms: i64) {
        let path = "/zookeeper/config";
        if self.lookup(path).is_none() {
            let acl = self.acls.intern(&Acl::read_unsafe());
            let stat = StatPersisted {
                aversion: -1,
                ..StatPersisted::default()
            };
            if self.insert_node(path, Some(&[]), acl, stat).is_err() {
                self.acls.release(acl);
                return;
            }
        }
        let _ = self.set_data(path, Some(data), -1, config_version, time_ms);
    }

    /// Checks the tree's internal invariants in O(nodes): every node is reachable from `/`
    /// exactly once through the children lists, parent links and child counts agree, the
    /// path index finds every node, and the ephemeral, container, TTL and quota sets name
    /// exactly the nodes of their kind. For tests and debug checks; a violation is a bug.
    pub fn check_invariants(&self) -> Result<(), String> {
        let root = self.lookup("/").ok_or("no root")?;
        let mut seen = 0usize;
        let mut ephemerals = 0usize;
        let (mut containers, mut ttls, mut quotas) = (0usize, 0usize, 0usize);
        // Bounded: more visits than live nodes means a cycle, reported below.
        let mut stack = vec![(root, "/".to_string())];
        while let Some((id, path)) = stack.pop() {
            let path = path.as_str();
            seen += 1;
            if seen > self.arena.live() {
                return Err("children lists reach more nodes than exist".into());
            }
            let slot = self.arena.slot(id);
            if !slot.is_live() {
                return Err(format!("free slot linked as a child at {path}"));
            }
            if self.lookup(path) != Some(id) || self.path_of(id) != path {
                return Err(format!("index does not find {path}"));
            }
            let mut children = 0u32;
            for c in self.child_ids(id) {
                children += 1;
                let child = self.arena.slot(c);
                let child_path = match path {
                    "/" => format!("/{}", child.name()),
                    _ => format!("{path}/{}", child.name()),
                };
                if child.parent != id || validate_path(&child_path).is_err() {
                    return Err(format!("{child_path} is linked under {path}"));
                }
                stack.push((c, child_path));
            }
            if children != slot.num_children {
                return Err(format!(
                    "{path} counts {} children, has {children}",
                    slot.num_children
                ));
            }
            match NodeKind::of(slot.owner()) {
                NodeKind::Persistent => {}
                NodeKind::Container => {
                    containers += 1;
                    if !self.containers.contains(path) {
                        return Err(format!("container {path} not in the container set"));
                    }
                }
                NodeKind::Ttl(_) => {
                    ttls += 1;
                    if !self.ttls.contains(path) {
                        return Err(format!("TTL node {path} not in the TTL set"));
                    }
                }
                NodeKind::Ephemeral(s) => {
                    ephemerals += 1;
                    if !self
                        .ephemerals
                        .get(&s)
                        .is_some_and(|set| set.contains(path))
                    {
                        return Err(format!("ephemeral {path} not listed for its session"));
                    }
                }
            }
            if let Some((_, QUOTA_LIMIT_NODE)) = quota::quota_target(path) {
                quotas += 1;
            }
        }
        if seen != self.arena.live() || self.index.len() != seen {
            return Err(format!(
                "{seen} nodes reachable, {} live, {} indexed",
                self.arena.live(),
                self.index.len()
            ));
        }
        if ephemerals != self.ephemeral_count()
            || containers != self.containers.len()
            || ttls != self.ttls.len()
            || quotas != self.quotas.len()
        {
            return Err("ephemeral, container, TTL or quota set names missing nodes".into());
        }
        Ok(())
    }

    /// A deterministic digest of every node (path, data or null, stored stat, child count, ACL),
    /// independent of the order nodes were created in and of the process: two trees with
    /// equal nodes have equal digests.
    pub fn digest(&self) -> u64 {
        let Some(root) = self.lookup("/") else {
            return 0;
        };
        let mut sum = 0u64;
        self.walk_paths(root, |path, s| {
            sum = sum.wrapping_add(node_digest(path, s, self.acls.get(s.acl)));
        });
        sum
    }

    /// Calls `f` with the path and slot of `top` and of every node under it, parents
    /// first (depth-first), putting each path together in one buffer.
    fn walk_paths(&self, top: u32, mut f: impl FnMut(&str, &Slot)) {
        let mut path = self.path_of(top);
        // (node, length of its parent's path in `path`); at most one entry per node.
        let mut stack = vec![(top, None::<usize>)];
        while let Some((id, parent_len)) = stack.pop() {
            let s = self.arena.slot(id);
            if let Some(len) = parent_len {
                path.truncate(len);
                if !path.ends_with('/') {
                    path.push('/');
                }
                path.push_str(s.name());
            }
            f(&path, s);
            let len = path.len();
            stack.extend(self.child_ids(id).map(|c| (c, Some(len))));
        }
    }
}

/// True when the live node `id` has the path `path`: its name and its ancestors' names
/// spell it.
fn path_is(arena: &Arena, id: u32, path: &str) -> bool {
    let mut rest = path.as_bytes();
    let mut cur = id;
    // Bounded: every step but the last takes at least two bytes off `rest`.
    loop {
        let s = arena.slot(cur);
        if s.parent == NIL {
            return rest == b"/";
        }
        let Some(prefix) = rest
            .strip_suffix(s.name_bytes())
            .and_then(|p| p.strip_suffix(b"/"))
        else {
            return false;
        };
        if prefix.is_empty() {
            return arena.slot(s.parent).parent == NIL;
        }
        rest = prefix;
        cur = s.parent;
    }
}

/// FNV-1a over the node's fields, then a finaliser so that the sum over nodes mixes well.
fn node_digest(path: &str, s: &Slot, acl: &[Acl]) -> u64 {
    struct Fnv(u64);
    impl Fnv {
        fn bytes(&mut self, b: &[u8]) {
            for &x in b {
                self.0 ^= u64::from(x);
                self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
            }
        }
        fn field(&mut self, b: &[u8]) {
            self.bytes(&(b.len() as u64).to_le_bytes());
            self.bytes(b);
        }
    }
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    h.field(path.as_bytes());
    match s.data() {
        Some(d) => h.field(d),
        None => h.bytes(&u64::MAX.to_le_bytes()),
    }
    let st = &s.stat();
    for v in [
        st.czxid,
        st.mzxid,
        st.pzxid,
        st.ctime,
        st.mtime,
        st.ephemeral_owner,
    ] {
        h.bytes(&v.to_le_bytes());
    }
    for v in [st.version, st.cversion, st.aversion] {
        h.bytes(&v.to_le_bytes());
    }
    h.bytes(&s.num_children.to_le_bytes());
    for a in acl {
        h.bytes(&a.perms.to_le_bytes());
        h.field(a.id.scheme.as_bytes());
        h.field(a.id.id.as_bytes());
    }
    // splitmix64 finaliser
    let mut z = h.0;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
