//! Applying replicated txns to the tree (ZooKeeper's `DataTree.processTxn`).

use std::sync::Arc;

use zk_proto::data::{Acl, ErrorCode, EventType, OpCode, Stat};
use zk_proto::txn::{MultiMember, Txn, TxnEntry, TxnHeader};
use zk_proto::zxid::Zxid;

use super::arena::StatPersisted;
use super::quota::{QUOTA_STAT_NODE, quota_target};
use super::{CONTAINER_EPHEMERAL_OWNER, DataTree, NodeKind, client_stat, split_parent};
use super::{ttl_ephemeral_owner, validate_path};

/// A watch to fire: the server's watch manager delivers `event` to the watches on `path`.
/// As in ZooKeeper, `NodeCreated` and `NodeDataChanged` go to the data (and exists)
/// watches of the path, `NodeChildrenChanged` to its child watches, and `NodeDeleted` to
/// both its data and its child watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchTrigger {
    /// The znode.
    pub path: String,
    /// NodeCreated, NodeDeleted, NodeDataChanged or NodeChildrenChanged.
    pub event: EventType,
}

/// The result of one op (a whole txn, or one member of a multi).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpOutcome {
    /// The op code applied (`Error` for the members of a failed multi).
    pub op: OpCode,
    /// `Ok` or why the op failed.
    pub err: ErrorCode,
    /// The path acted on (the created path for creates).
    pub path: Option<String>,
    /// The node's stat after a successful create, setData or setACL.
    pub stat: Option<Stat>,
}

impl OpOutcome {
    fn new(op: OpCode, err: ErrorCode) -> Self {
        OpOutcome {
            op,
            err,
            path: None,
            stat: None,
        }
    }
}

/// What [`DataTree::apply`] did (ZooKeeper's `ProcessTxnResult` plus the watch triggers):
/// everything the server needs to answer the client and fire watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// Session of the request.
    pub client_id: i64,
    /// The client's xid.
    pub cxid: i32,
    /// zxid of the txn.
    pub zxid: Zxid,
    /// Op code of the header.
    pub op: OpCode,
    /// `Ok`, the error of the op, or for a multi the first error of its members.
    pub err: ErrorCode,
    /// The path acted on (not for multi and sessions).
    pub path: Option<String>,
    /// The stat after create/setData/setACL.
    pub stat: Option<Stat>,
    /// One result per member of a multi, in order.
    pub multi: Vec<OpOutcome>,
    /// Watches to fire, in ZooKeeper's order.
    pub triggers: Vec<WatchTrigger>,
}

impl ApplyOutcome {
    /// True when the txn applied without error.
    pub fn is_ok(&self) -> bool {
        self.err == ErrorCode::Ok
    }
}

fn trigger(triggers: &mut Vec<WatchTrigger>, path: &str, event: EventType) {
    triggers.push(WatchTrigger {
        path: path.to_string(),
        event,
    });
}

impl DataTree {
    /// Applies one txn. Deterministic: the same txns applied to equal trees give equal
    /// trees and outcomes, and time comes only from the header.
    ///
    /// Failures are reported in the outcome, never by panicking, and leave the tree as
    /// ZooKeeper's `DataTree` would: a create whose parent is missing is `NoNode`, one
    /// whose node exists is `NodeExists` (and still raises the parent's cversion and pzxid
    /// to the txn's, as ZooKeeper does for fuzzy-snapshot replay), a delete of a missing
    /// node is `NoNode` (after advancing the parent's pzxid). Beyond ZooKeeper, a delete of
    /// a node that still has children is refused with `NotEmpty` and a create under an
    /// ephemeral with `NoChildrenForEphemerals`, so that no input can orphan a node;
    /// malformed paths are `BadArguments`.
    ///
    /// A multi is atomic. One whose members include an error txn applies nothing: each
    /// member before the first error reports `Ok`, error members report their own code,
    /// and the other members after it `RuntimeInconsistency` (ZooKeeper's rule). One
    /// without error members applies its members in order; should a member still fail
    /// here (the leader's checks and the tree disagree, or a damaged log), the members
    /// before it are rolled back and the outcome has the same shape as a multi that failed
    /// in pre-processing, with no watch triggers. (ZooKeeper keeps the members that did
    /// apply, which its fuzzy snapshots need; our snapshots are exact, so no replay ever
    /// meets an already-applied multi.)
    pub fn apply(&mut self, entry: &TxnEntry) -> ApplyOutcome {
        let h = &entry.header;
        let mut out = ApplyOutcome {
            client_id: h.client_id,
            cxid: h.cxid,
            zxid: h.zxid,
            op: h.op,
            err: ErrorCode::Ok,
            path: None,
            stat: None,
            multi: Vec::new(),
            triggers: Vec::new(),
        };
        match &entry.txn {
            Txn::Multi(members) if h.op == OpCode::Multi => {
                let failed = members
                    .iter()
                    .any(|m| m.op == OpCode::Error || matches!(m.txn, Txn::Error { .. }));
                if failed {
                    // Pre-processing failed: every member becomes an error result.
                    let mut post_failed = false;
                    for m in members {
                        let err = match m.txn {
                            Txn::Error { err } => {
                                post_failed = true;
                                err
                            }
                            _ if post_failed => ErrorCode::RuntimeInconsistency,
                            _ => ErrorCode::Ok,
                        };
                        if err != ErrorCode::Ok && out.err == ErrorCode::Ok {
                            out.err = err;
                        }
                        out.multi.push(OpOutcome::new(OpCode::Error, err));
                    }
                } else {
                    self.apply_multi(h, members, &mut out);
                }
            }
            txn => {
                let r = self.apply_op(h, h.op, txn, &mut out.triggers);
                out.err = r.err;
                out.path = r.path;
                out.stat = r.stat;
            }
        }
        if out.err != ErrorCode::Ok {
            tracing::debug!(
                zxid = format_args!("{:#x}", h.zxid),
                op = ?h.op,
                err = ?out.err,
                path = out.path.as_deref().unwrap_or(""),
                "txn applied with an error"
            );
        }
        if h.zxid > self.last_processed_zxid {
            self.last_processed_zxid = h.zxid;
        }
        out
    }

    /// Applies the members in order; if one fails, rolls back the ones before it and
    /// reports the multi as failed at that member (earlier members `Ok`, later ones
    /// `RuntimeInconsistency`, no watch triggers), as a multi failed in pre-processing.
    fn apply_multi(&mut self, h: &TxnHeader, members: &[MultiMember], out: &mut ApplyOutcome) {
        self.journal = Some(Vec::new());
        let mut failed_at = None;
        for (i, m) in members.iter().enumerate() {
            let sub = self.apply_op(h, m.op, &m.txn, &mut out.triggers);
            if sub.err != ErrorCode::Ok {
                failed_at = Some((i, sub.err));
                break;
            }
            out.multi.push(sub);
        }
        let journal = self.journal.take().unwrap_or_default();
        if let Some((at, err)) = failed_at {
            self.rollback(journal);
            out.triggers.clear();
            out.err = err;
            out.multi = (0..members.len())
                .map(|i| {
                    let e = match i.cmp(&at) {
                        std::cmp::Ordering::Less => ErrorCode::Ok,
                        std::cmp::Ordering::Equal => err,
                        std::cmp::Ordering::Greater => ErrorCode::RuntimeInconsistency,
                    };
                    OpOutcome::new(OpCode::Error, e)
                })
                .collect();
        }
    }

    fn apply_op(
        &mut self,
        h: &TxnHeader,
        op: OpCode,
        txn: &Txn,
        triggers: &mut Vec<WatchTrigger>,
    ) -> OpOutcome {
        let mut r = OpOutcome::new(op, ErrorCode::Ok);
        if !txn.accepts_op(op) {
            r.err = ErrorCode::MarshallingError;
            return r;
        }
        r.path = txn.path().map(str::to_string);
        let result: Result<Option<Stat>, ErrorCode> = match txn {
            Txn::Create {
                path,
                data,
                acl,
                ephemeral,
                parent_cversion,
            } => {
                let owner = if *ephemeral { h.client_id } else { 0 };
                self.create_op(path, data, acl, owner, *parent_cversion, h, triggers)
            }
            Txn::CreateContainer {
                path,
                data,
                acl,
                parent_cversion,
            } => self.create_op(
                path,
                data,
                acl,
                CONTAINER_EPHEMERAL_OWNER,
                *parent_cversion,
                h,
                triggers,
            ),
            Txn::CreateTtl {
                path,
                data,
                acl,
                parent_cversion,
                ttl,
            } => match ttl_ephemeral_owner(*ttl) {
                Some(owner) => {
                    self.create_op(path, data, acl, owner, *parent_cversion, h, triggers)
                }
                None => Err(ErrorCode::BadArguments),
            },
            Txn::Delete { path } => self.delete_node(path, h.zxid, triggers).map(|()| None),
            Txn::SetData {
                path,
                data,
                version,
            } => self
                .set_data(path, data.as_deref(), *version, h.zxid, h.time)
                .map(|stat| {
                    trigger(triggers, path, EventType::NodeDataChanged);
                    Some(stat)
                }),
            Txn::SetAcl { path, acl, version } => self.set_acl(path, acl, *version).map(Some),
            // The version was checked by the leader; applying a check changes nothing.
            Txn::Check { .. } => Ok(None),
            Txn::Error { err } => Err(*err),
            Txn::CreateSession { timeout_ms } => {
                self.set_session(h.client_id, Some(*timeout_ms));
                Ok(None)
            }
            Txn::CloseSession { paths_to_delete } => {
                self.close_session(h.client_id, paths_to_delete, h.zxid, triggers);
                Ok(None)
            }
            // Nested multis are rejected by the decoder; never apply one.
            Txn::Multi(_) => Err(ErrorCode::MarshallingError),
        };
        match result {
            Ok(stat) => r.stat = stat,
            Err(e) => r.err = e,
        }
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn create_op(
        &mut self,
        path: &str,
        data: &Option<Vec<u8>>,
        acl: &[Acl],
        owner: i64,
        parent_cversion: i32,
        h: &TxnHeader,
        triggers: &mut Vec<WatchTrigger>,
    ) -> Result<Option<Stat>, ErrorCode> {
        let data = data.as_deref();
        match self.create_node(path, data, acl, owner, parent_cversion, h.zxid, h.time) {
            Ok(stat) => {
                if let Some((target, QUOTA_STAT_NODE)) = quota_target(path) {
                    self.update_quota_for_path(target);
                }
                if let Some(prefix) = self.max_prefix_with_quota(path) {
                    self.update_quota_stat(&prefix, data.map_or(0, <[u8]>::len) as i64, 1);
                }
                trigger(triggers, path, EventType::NodeCreated);
                if let Some((parent, _)) = split_parent(path) {
                    trigger(triggers, parent, EventType::NodeChildrenChanged);
                }
                Ok(Some(stat))
            }
            Err(ErrorCode::NodeExists) => {
                // ZooKeeper: replaying a create over a fuzzy snapshot that already has the
                // node still brings the parent's cversion/pzxid up to this txn.
                if let Some((parent, _)) = split_parent(path)
                    && self
                        .set_cversion_pzxid(parent, parent_cversion, h.zxid)
                        .is_err()
                {
                    return Err(ErrorCode::NoNode);
                }
                Err(ErrorCode::NodeExists)
            }
            Err(e) => Err(e),
        }
    }

    /// ZooKeeper's `createNode`: returns the new node's stat.
    #[allow(clippy::too_many_arguments)]
    fn create_node(
        &mut self,
        path: &str,
        data: Option<&[u8]>,
        acl: &[Acl],
        owner: i64,
        parent_cversion: i32,
        zxid: Zxid,
        time: i64,
    ) -> Result<Stat, ErrorCode> {
        if validate_path(path).is_err() {
            return Err(ErrorCode::BadArguments);
        }
        let Some((parent_path, _)) = split_parent(path) else {
            return Err(ErrorCode::NodeExists);
        };
        let parent = self.lookup(parent_path).ok_or(ErrorCode::NoNode)?;
        if self.lookup(path).is_some() {
            return Err(ErrorCode::NodeExists);
        }
        if let NodeKind::Ephemeral(_) = NodeKind::of(self.arena.slot(parent).owner()) {
            return Err(ErrorCode::NoChildrenForEphemerals);
        }
        self.journal_modified(parent);
        {
            let p = self.arena.slot_mut(parent);
            let new_cversion = if parent_cversion == -1 {
                p.cversion.wrapping_add(1)
            } else {
                parent_cversion
            };
            if new_cversion > p.cversion {
                p.cversion = new_cversion;
                p.pzxid = zxid;
            }
        }
        let acl = self.acls.intern(acl);
        match self.insert_node_under(
            path,
            data,
            acl,
            StatPersisted::created(zxid, time, owner),
            Some(parent),
        ) {
            Ok(id) => Ok(client_stat(self.arena.slot(id))),
            Err(e) => {
                self.acls.release(acl);
                Err(e)
            }
        }
    }

    /// ZooKeeper's `setCversionPzxid`.
    fn set_cversion_pzxid(
        &mut self,
        path: &str,
        new_cversion: i32,
        zxid: Zxid,
    ) -> Result<(), ErrorCode> {
        let id = self.lookup(path).ok_or(ErrorCode::NoNode)?;
        self.journal_modified(id);
        let s = self.arena.slot_mut(id);
        let new_cversion = if new_cversion == -1 {
            s.cversion.wrapping_add(1)
        } else {
            new_cversion
        };
        if new_cversion > s.cversion {
            s.cversion = new_cversion;
            s.pzxid = zxid;
        }
        Ok(())
    }

    /// ZooKeeper's `deleteNode`, plus the `NotEmpty` check.
    fn delete_node(
        &mut self,
        path: &str,
        zxid: Zxid,
        triggers: &mut Vec<WatchTrigger>,
    ) -> Result<(), ErrorCode> {
        if validate_path(path).is_err() {
            return Err(ErrorCode::BadArguments);
        }
        let Some((parent_path, _)) = split_parent(path) else {
            return Err(ErrorCode::BadArguments);
        };
        let parent = self.lookup(parent_path).ok_or(ErrorCode::NoNode)?;
        let id = self.lookup(path);
        if let Some(id) = id
            && self.arena.slot(id).num_children > 0
        {
            return Err(ErrorCode::NotEmpty);
        }
        self.journal_modified(parent);
        {
            let p = self.arena.slot_mut(parent);
            if zxid > p.pzxid {
                p.pzxid = zxid;
            }
        }
        let id = id.ok_or(ErrorCode::NoNode)?;
        let old_len = self.arena.slot(id).data_len() as i64;
        self.remove_node(id, path);
        if let Some(prefix) = self.max_prefix_with_quota(path) {
            self.update_quota_stat(&prefix, -old_len, -1);
        }
        trigger(triggers, path, EventType::NodeDeleted);
        trigger(triggers, parent_path, EventType::NodeChildrenChanged);
        Ok(())
    }

    /// ZooKeeper's `setData`: `version` is the node's new version; `None` is null data.
    pub(super) fn set_data(
        &mut self,
        path: &str,
        data: Option<&[u8]>,
        version: i32,
        zxid: Zxid,
        time: i64,
    ) -> Result<Stat, ErrorCode> {
        let id = self.lookup(path).ok_or(ErrorCode::NoNode)?;
        self.journal_modified(id);
        let new_len = data.map_or(0, <[u8]>::len) as u64;
        let s = self.arena.slot_mut(id);
        let old_len = s.data_len() as u64;
        s.set_data(data);
        s.mtime = time;
        s.mzxid = zxid;
        s.version = version;
        let stat = client_stat(s);
        self.data_size = self.data_size.saturating_sub(old_len) + new_len;
        if let Some(prefix) = self.max_prefix_with_quota(path) {
            self.update_quota_stat(&prefix, new_len as i64 - old_len as i64, 0);
        }
        Ok(stat)
    }

    /// ZooKeeper's `setACL`: `version` is the node's new aversion.
    fn set_acl(&mut self, path: &str, acl: &[Acl], version: i32) -> Result<Stat, ErrorCode> {
        let id = self.lookup(path).ok_or(ErrorCode::NoNode)?;
        self.journal_modified(id);
        let new_acl = self.acls.intern(acl);
        let s = self.arena.slot_mut(id);
        let old_acl = std::mem::replace(&mut s.acl, new_acl);
        s.aversion = version;
        let stat = client_stat(s);
        self.acls.release(old_acl);
        Ok(stat)
    }

    /// ZooKeeper 3.8's `killSession`: deletes the txn's paths and every other ephemeral
    /// of the session, deepest paths first; paths already gone are skipped.
    fn close_session(
        &mut self,
        session: i64,
        paths: &[String],
        zxid: Zxid,
        triggers: &mut Vec<WatchTrigger>,
    ) {
        self.set_session(session, None);
        let mut targets: Vec<Arc<str>> = paths.iter().map(|p| Arc::from(p.as_str())).collect();
        if let Some(own) = self.ephemerals.get(&session) {
            targets.extend(own.iter().cloned());
        }
        // Children sort after their parent, so reverse byte order deletes them first.
        targets.sort_unstable_by(|a, b| b.cmp(a));
        targets.dedup();
        for path in targets {
            if let Err(e) = self.delete_node(&path, zxid, triggers) {
                tracing::debug!(
                    session = format_args!("{session:#x}"),
                    %path,
                    ?e,
                    "ephemeral not deleted while closing session"
                );
            }
        }
    }
}
