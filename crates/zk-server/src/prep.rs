//! Turning client writes into txns: ZooKeeper's `PrepRequestProcessor`.
//!
//! The leader (or a standalone server) preps every write in the order it will be proposed:
//! it checks the session, the path, the ACL and the version against the tree **plus the
//! changes of every txn prepped but not yet applied** (ZooKeeper's outstanding
//! `ChangeRecord`s), so that many writes can be in flight at once and each sees the
//! effects of those before it. A failed check still yields a txn (an error txn, or a
//! multi whose members say which op failed), as ZooKeeper does, so that the reply keeps
//! its place in the order.
//!
//! Error precedence follows `PrepRequestProcessor.pRequest2Txn` exactly: e.g. for a create,
//! bad mode/TTL, then a path without '/', then the ACL, then the parent's existence, then
//! the parent's ACL, then the full path, then existence, then an ephemeral parent.

use std::collections::{HashMap, VecDeque};

use zk_proto::data::{Acl, CreateMode, ErrorCode, Id, OpCode, perms};
use zk_proto::jute::{
    CheckVersionRequest, CreateRequest, DeleteRequest, MultiOp, Request, SetAclRequest,
    SetDataRequest,
};
use zk_proto::txn::{MultiMember, Txn, TxnEntry, TxnHeader};
use zk_proto::zxid::Zxid;
use zk_storage::tree::{
    CONTAINER_EPHEMERAL_OWNER, DataTree, NodeKind, StatPersisted, ttl_ephemeral_owner,
    validate_path,
};

use crate::acl;

/// Paths no client may delete (`ZKDatabase.isSpecialPath`).
const SPECIAL_PATHS: [&str; 4] = ["/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"];

/// What the prep stage needs to know about sessions (the leader's session tracker).
pub trait SessionCheck {
    /// `Ok` if `session` is live and owned by the requester; `SessionExpired` or
    /// `SessionMoved` otherwise (ZooKeeper's `checkSession`).
    fn check_session(&mut self, session: i64) -> Result<(), ErrorCode>;
    /// Starts tracking a new session (on its createSession txn).
    fn track_session(&mut self, session: i64, timeout_ms: i32);
    /// Marks a session closing: later requests of it get `SessionExpired`.
    fn set_closing(&mut self, session: i64);
}

/// One request for the prep stage.
#[derive(Debug, Clone)]
pub enum PrepInput {
    /// A client write (create, delete, setData, setACL, check, multi, reconfig).
    Client {
        /// Session of the client.
        session: i64,
        /// The client's xid.
        cxid: i32,
        /// The request.
        request: Request,
        /// The session's ids (ip plus `addauth` ones), for ACL checks.
        auth: Vec<Id>,
    },
    /// A new session with its negotiated timeout.
    CreateSession {
        /// The new session's id.
        session: i64,
        /// Negotiated timeout.
        timeout_ms: i32,
    },
    /// A session closed by its client (`cxid` is the close request's xid) or expired by
    /// the leader (`cxid` 0).
    CloseSession {
        /// The session.
        session: i64,
        /// The close request's xid.
        cxid: i32,
    },
    /// A write whose body could not be decoded: ZooKeeper's prep stage fails to read it
    /// and logs an error txn (`MarshallingError`), which takes a zxid and answers the
    /// client in order.
    Malformed {
        /// Session of the client.
        session: i64,
        /// The client's xid.
        cxid: i32,
    },
    /// The container manager removes an empty container or an expired TTL node.
    DeleteContainer {
        /// The node.
        path: String,
    },
}

/// Prep-stage options from the config.
#[derive(Debug, Clone, Copy, Default)]
pub struct PrepOptions {
    /// `skipACL`: no ACL checks at all.
    pub skip_acl: bool,
    /// `extendedTypesEnabled`: TTL nodes allowed.
    pub ttl_enabled: bool,
}

/// The state of a node as of the newest prepped txn (ZooKeeper's `ChangeRecord`).
#[derive(Debug, Clone)]
struct ChangeRecord {
    zxid: Zxid,
    /// `None`: deleted by an outstanding txn.
    stat: Option<StatPersisted>,
    child_count: i32,
    acl: Vec<Acl>,
}

/// The outstanding changes: what prepped-but-unapplied txns did to each path.
#[derive(Debug, Default)]
pub struct Prep {
    options: PrepOptions,
    by_path: HashMap<String, ChangeRecord>,
    /// (zxid, path) of every record, oldest first, to forget them once applied.
    order: VecDeque<(Zxid, String)>,
}

type PrepResult<T> = Result<T, ErrorCode>;

/// A view of the tree with outstanding changes and (inside a multi) the multi's own
/// changes layered on top.
struct View<'a> {
    tree: &'a DataTree,
    outstanding: &'a HashMap<String, ChangeRecord>,
    local: HashMap<String, ChangeRecord>,
}

impl View<'_> {
    fn record(&self, path: &str) -> PrepResult<ChangeRecord> {
        let found = match self.local.get(path).or_else(|| self.outstanding.get(path)) {
            Some(r) => r.clone(),
            None => {
                let node = self.tree.get(path).ok_or(ErrorCode::NoNode)?;
                ChangeRecord {
                    zxid: 0,
                    stat: Some(node.persisted()),
                    child_count: i32::try_from(node.num_children()).unwrap_or(i32::MAX),
                    acl: node.acl().to_vec(),
                }
            }
        };
        if found.stat.is_none() {
            return Err(ErrorCode::NoNode);
        }
        Ok(found)
    }

    fn put(&mut self, path: String, record: ChangeRecord) {
        self.local.insert(path, record);
    }
}

/// `checkAndIncVersion`: the next version, or `BadVersion`.
fn check_and_inc_version(current: i32, expected: i32) -> PrepResult<i32> {
    if expected != -1 && expected != current {
        return Err(ErrorCode::BadVersion);
    }
    // ZOOKEEPER-4743: never hand out -1 (it means "any version").
    let next = current.wrapping_add(1);
    Ok(if next == -1 { 0 } else { next })
}

fn valid_path(path: &str) -> PrepResult<()> {
    validate_path(path).map_err(|_| ErrorCode::BadArguments)
}

/// The parent of `path` for a delete; special paths and paths without '/' are refused.
fn parent_for_delete(path: &str) -> PrepResult<&str> {
    let slash = path.rfind('/').ok_or(ErrorCode::BadArguments)?;
    if path.contains('\0') || SPECIAL_PATHS.contains(&path) {
        return Err(ErrorCode::BadArguments);
    }
    Ok(parent_of(path, slash))
}

/// `path[..slash]`, with the root's parent written as "" → "/" as ZooKeeper resolves it.
fn parent_of(path: &str, slash: usize) -> &str {
    if slash == 0 { "/" } else { &path[..slash] }
}

impl Prep {
    /// An empty prep stage.
    pub fn new(options: PrepOptions) -> Self {
        Prep {
            options,
            ..Prep::default()
        }
    }

    /// Number of outstanding change records (for metrics and tests).
    pub fn outstanding(&self) -> usize {
        self.by_path.len()
    }

    /// Forgets every change of txns up to `zxid`: they are in the tree now.
    pub fn applied(&mut self, zxid: Zxid) {
        while let Some((z, _)) = self.order.front() {
            if *z > zxid {
                break;
            }
            let Some((z, path)) = self.order.pop_front() else {
                break;
            };
            if self.by_path.get(&path).is_some_and(|r| r.zxid <= z) {
                self.by_path.remove(&path);
            }
        }
    }

    /// Forgets every outstanding change (a new leadership starts from the tree).
    pub fn clear(&mut self) {
        self.by_path.clear();
        self.order.clear();
    }

    /// Preps one request as txn `zxid` at leader time `time_ms`.
    pub fn prep(
        &mut self,
        tree: &DataTree,
        sessions: &mut dyn SessionCheck,
        input: &PrepInput,
        zxid: Zxid,
        time_ms: i64,
    ) -> TxnEntry {
        let mut view = View {
            tree,
            outstanding: &self.by_path,
            local: HashMap::new(),
        };
        let (client_id, cxid, op, result) = match input {
            PrepInput::Client {
                session,
                cxid,
                request,
                auth,
            } => {
                let op = request.op_code();
                let ctx = Ctx {
                    session: *session,
                    auth,
                    options: self.options,
                    zxid,
                    time_ms,
                };
                let r = match request {
                    Request::Multi(ops) => Ok(Self::prep_multi(&mut view, sessions, &ctx, ops)),
                    other => sessions
                        .check_session(*session)
                        .and_then(|()| prep_single(&mut view, &ctx, other)),
                };
                (*session, *cxid, op, r)
            }
            PrepInput::CreateSession {
                session,
                timeout_ms,
            } => {
                sessions.track_session(*session, *timeout_ms);
                (
                    *session,
                    0,
                    OpCode::CreateSession,
                    Ok(Txn::CreateSession {
                        timeout_ms: *timeout_ms,
                    }),
                )
            }
            PrepInput::CloseSession { session, cxid } => {
                let paths = self.ephemerals_of(tree, *session);
                for p in &paths {
                    view.put(
                        p.clone(),
                        ChangeRecord {
                            zxid,
                            stat: None,
                            child_count: 0,
                            acl: Vec::new(),
                        },
                    );
                }
                sessions.set_closing(*session);
                (
                    *session,
                    *cxid,
                    OpCode::CloseSession,
                    Ok(Txn::CloseSession {
                        paths_to_delete: paths,
                    }),
                )
            }
            PrepInput::Malformed { session, cxid } => (
                *session,
                *cxid,
                OpCode::Error,
                Err(ErrorCode::MarshallingError),
            ),
            PrepInput::DeleteContainer { path } => (
                0,
                0,
                OpCode::DeleteContainer,
                prep_delete_container(&mut view, path, zxid),
            ),
        };
        let local = std::mem::take(&mut view.local);
        let (op, txn) = match result {
            Ok(txn) => {
                for (path, record) in local {
                    self.order.push_back((zxid, path.clone()));
                    self.by_path.insert(path, record);
                }
                (op, txn)
            }
            Err(err) => (OpCode::Error, Txn::Error { err }),
        };
        TxnEntry {
            header: TxnHeader {
                client_id,
                cxid,
                zxid,
                time: time_ms,
                op,
            },
            txn,
        }
    }

    /// The ephemerals of `session` as of the outstanding changes (`closeSession` prep).
    fn ephemerals_of(&self, tree: &DataTree, session: i64) -> Vec<String> {
        let mut paths: Vec<String> = tree
            .ephemerals(session)
            .into_iter()
            .filter(|p| self.by_path.get(*p).is_none_or(|r| r.stat.is_some()))
            .map(str::to_owned)
            .collect();
        for (path, r) in &self.by_path {
            if r.stat.is_some_and(|s| s.ephemeral_owner == session) && !paths.contains(path) {
                paths.push(path.clone());
            }
        }
        paths.sort();
        paths
    }

    fn prep_multi(
        view: &mut View<'_>,
        sessions: &mut dyn SessionCheck,
        ctx: &Ctx<'_>,
        ops: &[MultiOp],
    ) -> Txn {
        let mut members = Vec::with_capacity(ops.len());
        let mut failed = false;
        for op in ops {
            if failed {
                members.push(MultiMember {
                    op: OpCode::Error,
                    txn: Txn::Error {
                        err: ErrorCode::RuntimeInconsistency,
                    },
                });
                continue;
            }
            let single = multi_op_request(op);
            let r = sessions
                .check_session(ctx.session)
                .and_then(|()| single.ok_or(ErrorCode::MarshallingError))
                .and_then(|req| prep_single(view, ctx, &req).map(|txn| (req.op_code(), txn)));
            match r {
                Ok((op, txn)) => members.push(MultiMember { op, txn }),
                Err(err) => {
                    failed = true;
                    // Roll back what the multi's earlier members changed.
                    view.local.clear();
                    members.push(MultiMember {
                        op: OpCode::Error,
                        txn: Txn::Error { err },
                    });
                }
            }
        }
        Txn::Multi(members)
    }
}

/// The request a multi member stands for; reads are not allowed in multi.
///
/// As in ZooKeeper (`MultiOperationRecord` rebuilds each member with `Op.create`), a
/// create member's kind follows its flags, not its header: a container mode is a
/// createContainer, a TTL mode under a createTTL header a createTTL, anything else a plain
/// create (so a create2 member answers without a Stat, and a createTTL member with a
/// non-TTL mode is a plain create whose TTL is dropped).
fn multi_op_request(op: &MultiOp) -> Option<Request> {
    fn by_flags(r: CreateRequest) -> Request {
        match CreateMode::try_from(r.flags) {
            Ok(mode) if mode.is_container() => Request::CreateContainer(r),
            _ => Request::Create(r),
        }
    }
    Some(match op {
        MultiOp::Create(r) | MultiOp::Create2(r) | MultiOp::CreateContainer(r) => {
            by_flags(r.clone())
        }
        MultiOp::CreateTtl(r) => match CreateMode::try_from(r.flags) {
            Ok(mode) if mode.is_ttl() => Request::CreateTtl(r.clone()),
            _ => by_flags(CreateRequest {
                path: r.path.clone(),
                data: r.data.clone(),
                acl: r.acl.clone(),
                flags: r.flags,
            }),
        },
        MultiOp::Delete(r) => Request::Delete(r.clone()),
        MultiOp::SetData(r) => Request::SetData(r.clone()),
        MultiOp::Check(r) => Request::Check(r.clone()),
        MultiOp::GetChildren(_) | MultiOp::GetData(_) => return None,
    })
}

struct Ctx<'a> {
    session: i64,
    auth: &'a [Id],
    options: PrepOptions,
    zxid: Zxid,
    time_ms: i64,
}

impl Ctx<'_> {
    fn check_acl(&self, node_acl: &[Acl], perm: i32) -> PrepResult<()> {
        if self.options.skip_acl {
            return Ok(());
        }
        acl::check(node_acl, self.auth, perm).map_err(|e| e.code())
    }

    fn fixup_acl(&self, requested: &[Acl]) -> PrepResult<Vec<Acl>> {
        acl::fixup_acl(self.auth, requested).map_err(|e| e.code())
    }
}

fn prep_single(view: &mut View<'_>, ctx: &Ctx<'_>, request: &Request) -> PrepResult<Txn> {
    match request {
        Request::Create(r) | Request::Create2(r) | Request::CreateContainer(r) => {
            prep_create(view, ctx, request.op_code(), r, -1)
        }
        Request::CreateTtl(r) => {
            let as_create = CreateRequest {
                path: r.path.clone(),
                data: r.data.clone(),
                acl: r.acl.clone(),
                flags: r.flags,
            };
            prep_create(view, ctx, OpCode::CreateTtl, &as_create, r.ttl)
        }
        Request::Delete(r) => prep_delete(view, ctx, r),
        Request::SetData(r) => prep_set_data(view, ctx, r),
        Request::SetAcl(r) => prep_set_acl(view, ctx, r),
        Request::Check(r) => prep_check(view, ctx, r),
        // Dynamic reconfiguration is not offered (reconfigEnabled=false in ZooKeeper).
        Request::Reconfig(_) => Err(ErrorCode::ReconfigDisabled),
        _ => Err(ErrorCode::Unimplemented),
    }
}

fn prep_create(
    view: &mut View<'_>,
    ctx: &Ctx<'_>,
    op: OpCode,
    r: &CreateRequest,
    ttl: i64,
) -> PrepResult<Txn> {
    let mode = CreateMode::try_from(r.flags).map_err(|_| ErrorCode::BadArguments)?;
    // validateCreateRequest
    if mode.is_ttl() && !ctx.options.ttl_enabled {
        return Err(ErrorCode::Unimplemented);
    }
    let ttl_owner = if mode.is_ttl() {
        Some(ttl_ephemeral_owner(ttl).ok_or(ErrorCode::BadArguments)?)
    } else if ttl >= 0 {
        return Err(ErrorCode::BadArguments);
    } else {
        None
    };
    // validatePathForCreate
    let slash = r.path.rfind('/').ok_or(ErrorCode::BadArguments)?;
    if r.path.contains('\0') {
        return Err(ErrorCode::BadArguments);
    }
    let parent_path = parent_of(&r.path, slash).to_owned();
    let acl = ctx.fixup_acl(&r.acl)?;
    let parent = view.record(&parent_path)?;
    ctx.check_acl(&parent.acl, perms::CREATE)?;
    let parent_stat = parent.stat.unwrap_or_default();
    let path = if mode.is_sequential() {
        format!("{}{:010}", r.path, parent_stat.cversion)
    } else {
        r.path.clone()
    };
    valid_path(&path)?;
    match view.record(&path) {
        Ok(_) => return Err(ErrorCode::NodeExists),
        Err(ErrorCode::NoNode) => {}
        Err(e) => return Err(e),
    }
    if matches!(
        NodeKind::of(parent_stat.ephemeral_owner),
        NodeKind::Ephemeral(_)
    ) {
        return Err(ErrorCode::NoChildrenForEphemerals);
    }
    let new_cversion = parent_stat.cversion.wrapping_add(1);
    // Null stays null (a jute buffer of length -1), as in ZooKeeper.
    let data = r.data.as_deref().map(<[u8]>::to_vec);
    let owner = if mode.is_container() {
        CONTAINER_EPHEMERAL_OWNER
    } else if let Some(o) = ttl_owner {
        o
    } else if mode.is_ephemeral() {
        ctx.session
    } else {
        0
    };
    let txn = match op {
        OpCode::CreateContainer => Txn::CreateContainer {
            path: path.clone(),
            data,
            acl: acl.clone(),
            parent_cversion: new_cversion,
        },
        OpCode::CreateTtl => Txn::CreateTtl {
            path: path.clone(),
            data,
            acl: acl.clone(),
            parent_cversion: new_cversion,
            ttl,
        },
        _ => Txn::Create {
            path: path.clone(),
            data,
            acl: acl.clone(),
            ephemeral: mode.is_ephemeral(),
            parent_cversion: new_cversion,
        },
    };
    let mut parent = parent;
    parent.zxid = ctx.zxid;
    parent.child_count += 1;
    if let Some(s) = parent.stat.as_mut() {
        s.cversion = new_cversion;
        s.pzxid = ctx.zxid;
    }
    view.put(parent_path, parent);
    view.put(
        path,
        ChangeRecord {
            zxid: ctx.zxid,
            stat: Some(StatPersisted::created(ctx.zxid, ctx.time_ms, owner)),
            child_count: 0,
            acl,
        },
    );
    Ok(txn)
}

fn record_deleted(
    view: &mut View<'_>,
    path: &str,
    parent_path: &str,
    parent: ChangeRecord,
    zxid: Zxid,
) {
    let mut parent = parent;
    parent.zxid = zxid;
    parent.child_count -= 1;
    if let Some(s) = parent.stat.as_mut() {
        s.pzxid = zxid;
    }
    view.put(parent_path.to_owned(), parent);
    view.put(
        path.to_owned(),
        ChangeRecord {
            zxid,
            stat: None,
            child_count: -1,
            acl: Vec::new(),
        },
    );
}

fn prep_delete(view: &mut View<'_>, ctx: &Ctx<'_>, r: &DeleteRequest) -> PrepResult<Txn> {
    let parent_path = parent_for_delete(&r.path)?;
    let parent = view.record(parent_path)?;
    ctx.check_acl(&parent.acl, perms::DELETE)?;
    let node = view.record(&r.path)?;
    check_and_inc_version(node.stat.map(|s| s.version).unwrap_or_default(), r.version)?;
    if node.child_count > 0 {
        return Err(ErrorCode::NotEmpty);
    }
    record_deleted(view, &r.path, parent_path, parent, ctx.zxid);
    Ok(Txn::Delete {
        path: r.path.clone(),
    })
}

fn prep_delete_container(view: &mut View<'_>, path: &str, zxid: Zxid) -> PrepResult<Txn> {
    let parent_path = parent_for_delete(path)?;
    let node = view.record(path)?;
    if node.child_count > 0 {
        return Err(ErrorCode::NotEmpty);
    }
    let owner = node.stat.map(|s| s.ephemeral_owner).unwrap_or_default();
    if !matches!(NodeKind::of(owner), NodeKind::Container | NodeKind::Ttl(_)) {
        return Err(ErrorCode::BadVersion);
    }
    let parent = view.record(parent_path)?;
    record_deleted(view, path, parent_path, parent, zxid);
    Ok(Txn::Delete {
        path: path.to_owned(),
    })
}

fn prep_set_data(view: &mut View<'_>, ctx: &Ctx<'_>, r: &SetDataRequest) -> PrepResult<Txn> {
    valid_path(&r.path)?;
    let mut node = view.record(&r.path)?;
    ctx.check_acl(&node.acl, perms::WRITE)?;
    let mut stat = node.stat.unwrap_or_default();
    let version = check_and_inc_version(stat.version, r.version)?;
    stat.version = version;
    stat.mtime = ctx.time_ms;
    stat.mzxid = ctx.zxid;
    node.stat = Some(stat);
    node.zxid = ctx.zxid;
    view.put(r.path.clone(), node);
    Ok(Txn::SetData {
        path: r.path.clone(),
        data: r.data.as_deref().map(<[u8]>::to_vec),
        version,
    })
}

fn prep_set_acl(view: &mut View<'_>, ctx: &Ctx<'_>, r: &SetAclRequest) -> PrepResult<Txn> {
    valid_path(&r.path)?;
    let acl = ctx.fixup_acl(&r.acl)?;
    let mut node = view.record(&r.path)?;
    ctx.check_acl(&node.acl, perms::ADMIN)?;
    let mut stat = node.stat.unwrap_or_default();
    let version = check_and_inc_version(stat.aversion, r.version)?;
    stat.aversion = version;
    node.stat = Some(stat);
    node.zxid = ctx.zxid;
    // Later preps must see the new ACL, not the one still in the tree.
    node.acl = acl.clone();
    view.put(r.path.clone(), node);
    Ok(Txn::SetAcl {
        path: r.path.clone(),
        acl,
        version,
    })
}

fn prep_check(view: &mut View<'_>, ctx: &Ctx<'_>, r: &CheckVersionRequest) -> PrepResult<Txn> {
    valid_path(&r.path)?;
    let node = view.record(&r.path)?;
    ctx.check_acl(&node.acl, perms::READ)?;
    let version =
        check_and_inc_version(node.stat.map(|s| s.version).unwrap_or_default(), r.version)?;
    Ok(Txn::Check {
        path: r.path.clone(),
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use zk_proto::jute::{CreateTtlRequest, DeleteRequest};

    /// Every session is live unless listed as expired.
    #[derive(Default)]
    struct Sessions {
        expired: Vec<i64>,
        tracked: Vec<(i64, i32)>,
        closing: Vec<i64>,
    }

    impl SessionCheck for Sessions {
        fn check_session(&mut self, session: i64) -> Result<(), ErrorCode> {
            if self.expired.contains(&session) || self.closing.contains(&session) {
                Err(ErrorCode::SessionExpired)
            } else {
                Ok(())
            }
        }
        fn track_session(&mut self, session: i64, timeout_ms: i32) {
            self.tracked.push((session, timeout_ms));
        }
        fn set_closing(&mut self, session: i64) {
            self.closing.push(session);
        }
    }

    struct Harness {
        tree: DataTree,
        prep: Prep,
        sessions: Sessions,
        zxid: Zxid,
    }

    impl Harness {
        fn new() -> Self {
            Harness {
                tree: DataTree::new(),
                prep: Prep::new(PrepOptions {
                    skip_acl: false,
                    ttl_enabled: true,
                }),
                sessions: Sessions::default(),
                zxid: zk_proto::zxid::make(1, 0),
            }
        }

        /// Preps without applying.
        fn prep(&mut self, session: i64, request: Request) -> TxnEntry {
            self.zxid += 1;
            let input = PrepInput::Client {
                session,
                cxid: 7,
                request,
                auth: vec![Id::new("ip", "127.0.0.1")],
            };
            self.prep
                .prep(&self.tree, &mut self.sessions, &input, self.zxid, 1_000)
        }

        /// Preps and applies at once.
        fn run(&mut self, session: i64, request: Request) -> TxnEntry {
            let e = self.prep(session, request);
            self.apply(&e);
            e
        }

        fn apply(&mut self, e: &TxnEntry) {
            self.tree.apply(e);
            self.prep.applied(e.header.zxid);
        }
    }

    fn create(path: &str, flags: i32) -> Request {
        Request::Create(CreateRequest {
            path: path.into(),
            data: Some(Bytes::from_static(b"d")),
            acl: Acl::open_unsafe(),
            flags,
        })
    }

    fn error_of(e: &TxnEntry) -> Option<ErrorCode> {
        match e.txn {
            Txn::Error { err } => Some(err),
            _ => None,
        }
    }

    #[test]
    fn create_then_errors_in_zookeeper_order() {
        let mut h = Harness::new();
        let e = h.run(1, create("/a", 0));
        assert_eq!(e.header.op, OpCode::Create);
        assert!(matches!(e.txn, Txn::Create { ref path, parent_cversion: 1, .. } if path == "/a"));
        assert_eq!(
            error_of(&h.run(1, create("/a", 0))),
            Some(ErrorCode::NodeExists)
        );
        assert_eq!(
            error_of(&h.run(1, create("/x/y", 0))),
            Some(ErrorCode::NoNode)
        );
        assert_eq!(
            error_of(&h.run(1, create("a", 0))),
            Some(ErrorCode::BadArguments)
        );
        // A bad full path is reported after the parent's existence.
        assert_eq!(
            error_of(&h.run(1, create("/nope/", 0))),
            Some(ErrorCode::NoNode)
        );
        assert_eq!(
            error_of(&h.run(1, create("/a/", 0))),
            Some(ErrorCode::BadArguments)
        );
        assert_eq!(
            error_of(&h.run(1, create("/a", 9))),
            Some(ErrorCode::BadArguments)
        );
        let bad_acl = Request::Create(CreateRequest {
            path: "/b".into(),
            data: None,
            acl: vec![],
            flags: 0,
        });
        assert_eq!(error_of(&h.run(1, bad_acl)), Some(ErrorCode::InvalidAcl));
        // The error txn keeps the client's header and takes the error op code.
        let e = h.run(1, create("/a", 0));
        assert_eq!(
            (e.header.op, e.header.client_id, e.header.cxid),
            (OpCode::Error, 1, 7)
        );
    }

    #[test]
    fn malformed_write_is_an_error_txn_of_its_client() {
        let mut h = Harness::new();
        h.zxid += 1;
        let input = PrepInput::Malformed {
            session: 5,
            cxid: 9,
        };
        let e = h.prep.prep(&h.tree, &mut h.sessions, &input, h.zxid, 1_000);
        assert_eq!(
            (
                e.header.op,
                e.header.client_id,
                e.header.cxid,
                e.header.zxid
            ),
            (OpCode::Error, 5, 9, h.zxid)
        );
        assert_eq!(error_of(&e), Some(ErrorCode::MarshallingError));
        assert_eq!(h.prep.outstanding(), 0);
    }

    #[test]
    fn sequential_names_come_from_outstanding_cversion() {
        let mut h = Harness::new();
        h.run(1, create("/q", 0));
        // Three creates prepped before any is applied get distinct suffixes.
        let a = h.prep(1, create("/q/n-", 2));
        let b = h.prep(1, create("/q/n-", 2));
        let c = h.prep(1, create("/q/n-", 2));
        let names: Vec<_> = [&a, &b, &c]
            .iter()
            .map(|e| e.txn.path().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(
            names,
            ["/q/n-0000000000", "/q/n-0000000001", "/q/n-0000000002"]
        );
        for e in [&a, &b, &c] {
            h.apply(e);
        }
        assert_eq!(h.tree.children("/q").unwrap().len(), 3);
        assert_eq!(h.prep.outstanding(), 0);
    }

    #[test]
    fn outstanding_changes_are_seen_by_later_preps() {
        let mut h = Harness::new();
        let p = h.prep(1, create("/p", 0));
        let c = h.prep(1, create("/p/c", 0));
        assert!(matches!(c.txn, Txn::Create { .. }), "{c:?}");
        // Delete of /p while its child is outstanding: NotEmpty.
        let d = h.prep(
            1,
            Request::Delete(DeleteRequest {
                path: "/p".into(),
                version: -1,
            }),
        );
        assert_eq!(error_of(&d), Some(ErrorCode::NotEmpty));
        // setData sees the version the outstanding create gives.
        let s = h.prep(
            1,
            Request::SetData(SetDataRequest {
                path: "/p/c".into(),
                data: None,
                version: 0,
            }),
        );
        assert!(matches!(s.txn, Txn::SetData { version: 1, .. }), "{s:?}");
        let s2 = h.prep(
            1,
            Request::SetData(SetDataRequest {
                path: "/p/c".into(),
                data: None,
                version: 0,
            }),
        );
        assert_eq!(error_of(&s2), Some(ErrorCode::BadVersion));
        for e in [&p, &c, &d, &s, &s2] {
            h.apply(e);
        }
        assert_eq!(h.tree.get("/p/c").unwrap().stat().version, 1);
    }

    #[test]
    fn delete_rules() {
        let mut h = Harness::new();
        let del = |p: &str, v| {
            Request::Delete(DeleteRequest {
                path: p.into(),
                version: v,
            })
        };
        assert_eq!(
            error_of(&h.run(1, del("/zookeeper", -1))),
            Some(ErrorCode::BadArguments)
        );
        assert_eq!(
            error_of(&h.run(1, del("/", -1))),
            Some(ErrorCode::BadArguments)
        );
        assert_eq!(
            error_of(&h.run(1, del("/none", -1))),
            Some(ErrorCode::NoNode)
        );
        h.run(1, create("/d", 0));
        assert_eq!(
            error_of(&h.run(1, del("/d", 3))),
            Some(ErrorCode::BadVersion)
        );
        let ok = h.run(1, del("/d", 0));
        assert!(matches!(ok.txn, Txn::Delete { .. }));
        assert!(!h.tree.exists("/d"));
    }

    #[test]
    fn multi_fails_whole_and_rolls_back_its_own_changes() {
        let mut h = Harness::new();
        let ops = vec![
            MultiOp::Create(CreateRequest {
                path: "/m".into(),
                data: None,
                acl: Acl::open_unsafe(),
                flags: 0,
            }),
            MultiOp::Check(CheckVersionRequest {
                path: "/m".into(),
                version: 5,
            }),
            MultiOp::Delete(DeleteRequest {
                path: "/m".into(),
                version: -1,
            }),
        ];
        let e = h.prep(1, Request::Multi(ops));
        assert_eq!(e.header.op, OpCode::Multi);
        let Txn::Multi(members) = &e.txn else {
            panic!("not a multi: {e:?}")
        };
        assert_eq!(members[0].op, OpCode::Create);
        assert!(matches!(
            members[1].txn,
            Txn::Error {
                err: ErrorCode::BadVersion
            }
        ));
        assert!(matches!(
            members[2].txn,
            Txn::Error {
                err: ErrorCode::RuntimeInconsistency
            }
        ));
        // The failed multi's create is not outstanding: a later create of /m is fine.
        let c = h.prep(1, create("/m", 0));
        assert!(matches!(c.txn, Txn::Create { .. }), "{c:?}");
        h.apply(&e);
        h.apply(&c);
        assert!(h.tree.exists("/m"));
    }

    #[test]
    fn a_multi_create_member_is_of_the_kind_its_flags_say() {
        let mut h = Harness::new();
        let req = |path: &str, flags| CreateRequest {
            path: path.into(),
            data: None,
            acl: Acl::open_unsafe(),
            flags,
        };
        let ttl = |path: &str, flags, ttl| {
            MultiOp::CreateTtl(CreateTtlRequest {
                path: path.into(),
                data: None,
                acl: Acl::open_unsafe(),
                flags,
                ttl,
            })
        };
        let ops = vec![
            // A createTTL member with a persistent mode: a plain create, TTL dropped.
            ttl("/a", 0, 1_000),
            // A create2 member: a plain create (answered without a Stat).
            MultiOp::Create2(req("/b", 0)),
            // A create member with the container mode: a container.
            MultiOp::Create(req("/c", 4)),
            // A createContainer member with a persistent mode: a plain create.
            MultiOp::CreateContainer(req("/d", 0)),
            // A createTTL member with a TTL mode stays one.
            ttl("/e", 5, 1_000),
        ];
        let e = h.prep(1, Request::Multi(ops));
        let Txn::Multi(members) = &e.txn else {
            panic!("not a multi: {e:?}")
        };
        let ops: Vec<OpCode> = members.iter().map(|m| m.op).collect();
        assert_eq!(
            ops,
            [
                OpCode::Create,
                OpCode::Create,
                OpCode::CreateContainer,
                OpCode::Create,
                OpCode::CreateTtl
            ]
        );
        assert!(matches!(members[2].txn, Txn::CreateContainer { .. }));
        assert!(matches!(members[4].txn, Txn::CreateTtl { ttl: 1_000, .. }));
        // A createTTL member with a TTL mode and a bad TTL is still refused.
        let bad = h.prep(1, Request::Multi(vec![ttl("/f", 5, 0)]));
        let Txn::Multi(members) = &bad.txn else {
            panic!("not a multi: {bad:?}")
        };
        assert!(matches!(
            members[0].txn,
            Txn::Error {
                err: ErrorCode::BadArguments
            }
        ));
    }

    #[test]
    fn sessions_ephemerals_and_ttl() {
        let mut h = Harness::new();
        h.sessions.expired.push(9);
        assert_eq!(
            error_of(&h.run(9, create("/e", 0))),
            Some(ErrorCode::SessionExpired)
        );
        h.zxid += 1;
        let cs = h.prep.prep(
            &h.tree,
            &mut h.sessions,
            &PrepInput::CreateSession {
                session: 5,
                timeout_ms: 4000,
            },
            h.zxid,
            1,
        );
        h.apply(&cs);
        assert_eq!(h.sessions.tracked, vec![(5, 4000)]);
        h.run(5, create("/e", 1));
        assert_eq!(
            error_of(&h.run(5, create("/e/child", 0))),
            Some(ErrorCode::NoChildrenForEphemerals)
        );
        let pending = h.prep(5, create("/e2", 1));
        h.zxid += 1;
        let close = h.prep.prep(
            &h.tree,
            &mut h.sessions,
            &PrepInput::CloseSession {
                session: 5,
                cxid: 3,
            },
            h.zxid,
            2,
        );
        assert!(
            matches!(&close.txn, Txn::CloseSession { paths_to_delete } if paths_to_delete == &["/e", "/e2"]),
            "{close:?}"
        );
        assert_eq!(
            error_of(&h.run(5, create("/late", 0))),
            Some(ErrorCode::SessionExpired)
        );
        h.apply(&pending);
        h.apply(&close);
        assert!(!h.tree.exists("/e") && !h.tree.exists("/e2"));
        let ttl = |flags, ttl| {
            Request::CreateTtl(CreateTtlRequest {
                path: "/t".into(),
                data: None,
                acl: Acl::open_unsafe(),
                flags,
                ttl,
            })
        };
        assert_eq!(
            error_of(&h.run(1, ttl(5, 0))),
            Some(ErrorCode::BadArguments)
        );
        assert_eq!(
            error_of(&h.run(1, ttl(0, 100))),
            Some(ErrorCode::BadArguments)
        );
        assert!(matches!(
            h.run(1, ttl(5, 100)).txn,
            Txn::CreateTtl { ttl: 100, .. }
        ));
        h.prep.options.ttl_enabled = false;
        assert_eq!(
            error_of(&h.run(1, ttl(6, 100))),
            Some(ErrorCode::Unimplemented)
        );
    }

    #[test]
    fn acl_checks_use_outstanding_acl() {
        let mut h = Harness::new();
        h.run(1, create("/s", 0));
        let revoke = h.prep(
            1,
            Request::SetAcl(SetAclRequest {
                path: "/s".into(),
                acl: Acl::read_unsafe(),
                version: -1,
            }),
        );
        assert!(matches!(revoke.txn, Txn::SetAcl { version: 1, .. }));
        // Prepped after the revocation but before it is applied: refused.
        let w = h.prep(
            1,
            Request::SetData(SetDataRequest {
                path: "/s".into(),
                data: None,
                version: -1,
            }),
        );
        assert_eq!(error_of(&w), Some(ErrorCode::NoAuth));
    }
}
