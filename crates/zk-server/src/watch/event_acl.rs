//! The ACL a watch event is checked against before it is delivered.
//!
//! ZooKeeper's `DataTree` passes an ACL with every `WatchManager.triggerWatch`, and
//! `ServerCnxn.process(WatchedEvent, List<ACL>)` drops the event unless the connection may
//! READ under it (`ZooKeeperServer.checkACL`): the new node's ACL for `NodeCreated`, the
//! node's ACL for `NodeDataChanged`, the deleted node's ACL (read before it goes) for
//! `NodeDeleted`, and the parent's ACL for `NodeChildrenChanged`. A deleted node is gone
//! once the txn has applied, so [`TriggerAcls::before_apply`] notes the ACLs of the nodes
//! a txn creates and deletes before it applies — for a multi, the ACL of each member's
//! events at that member, as ZooKeeper fires a member's watches when the member applies —
//! and [`TriggerAcls::for_trigger`] then gives the ACL of each event.

use std::collections::HashMap;

use zk_proto::data::{Acl, EventType};
use zk_proto::txn::{MultiMember, Txn, TxnEntry};
use zk_storage::tree::DataTree;

use super::parent;

/// The ACLs of the nodes one txn creates and deletes, noted before it applies.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TriggerAcls {
    /// For a multi: the events its members raise, in order, each with the ACL it has at
    /// that point of the multi (a setACL member changes the ACL for the members after
    /// it, as in ZooKeeper, which fires each member's watches as it applies).
    ordered: Vec<(String, EventType, Vec<Acl>)>,
    /// Nodes the txn creates → the ACL in the txn (the first create of a path).
    created: HashMap<String, Vec<Acl>>,
    /// Nodes the txn deletes → their ACL as the txn found them (the first delete).
    deleted: HashMap<String, Vec<Acl>>,
}

impl TriggerAcls {
    /// Notes the ACLs of the nodes `entry` creates (from the txn) and deletes (from
    /// `tree`, which must not have applied `entry` yet; for a node created earlier in the
    /// same multi, the ACL of that create). Cost: the txn's paths, plus the session's
    /// ephemerals for a closeSession.
    pub fn before_apply(tree: &DataTree, entry: &TxnEntry) -> Self {
        let mut acls = TriggerAcls::default();
        match &entry.txn {
            Txn::Multi(members) => {
                for m in members {
                    acls.note(tree, &m.txn);
                }
                acls.ordered = multi_events(tree, members);
            }
            Txn::CloseSession { paths_to_delete } => {
                // The tree deletes the session's ephemerals: those listed, or all of them.
                let owned = tree.ephemerals(entry.header.client_id);
                for path in paths_to_delete.iter().map(String::as_str).chain(owned) {
                    acls.note_delete(tree, path);
                }
            }
            txn => acls.note(tree, txn),
        }
        acls
    }

    fn note(&mut self, tree: &DataTree, txn: &Txn) {
        match txn {
            Txn::Create { path, acl, .. }
            | Txn::CreateContainer { path, acl, .. }
            | Txn::CreateTtl { path, acl, .. } => {
                self.created
                    .entry(path.clone())
                    .or_insert_with(|| acl.clone());
            }
            Txn::Delete { path } => self.note_delete(tree, path),
            _ => {}
        }
    }

    fn note_delete(&mut self, tree: &DataTree, path: &str) {
        if self.deleted.contains_key(path) {
            return;
        }
        let acl = match self.created.get(path) {
            Some(acl) => Some(acl.clone()),
            None => tree.get(path).map(|n| n.acl().to_vec()),
        };
        if let Some(acl) = acl {
            self.deleted.insert(path.to_string(), acl);
        }
    }

    /// The ACL the `index`-th trigger of the txn (an event of type `event` on `path`) is
    /// checked against, `tree` having applied the txn. In a multi, the ACL the node had
    /// when its member applied. Otherwise: for `NodeCreated` the created node's ACL, for
    /// `NodeDeleted` the deleted node's, for the others (`NodeDataChanged` on the node,
    /// `NodeChildrenChanged` on the parent) the node's ACL now, or the ACL it had if the
    /// txn deleted it. Empty (which lets every session read, as ZooKeeper's `checkACL`
    /// does for an empty ACL) for a path none of these know.
    pub fn for_trigger<'a>(
        &'a self,
        tree: &'a DataTree,
        index: usize,
        path: &str,
        event: EventType,
    ) -> &'a [Acl] {
        if let Some((p, e, acl)) = self.ordered.get(index)
            && p == path
            && *e == event
        {
            return acl;
        }
        let noted = |map: &'a HashMap<String, Vec<Acl>>| map.get(path).map(Vec::as_slice);
        let in_tree = || tree.get(path).map(|n| n.acl());
        let found = match event {
            EventType::NodeCreated => noted(&self.created).or_else(in_tree),
            EventType::NodeDeleted => noted(&self.deleted).or_else(in_tree),
            _ => in_tree()
                .or_else(|| noted(&self.deleted))
                .or_else(|| noted(&self.created)),
        };
        found.unwrap_or(&[])
    }
}

/// The events the members of a multi raise, in `DataTree`'s order, each with the ACL of
/// its node at that point of the multi.
fn multi_events(tree: &DataTree, members: &[MultiMember]) -> Vec<(String, EventType, Vec<Acl>)> {
    // path → its ACL after the members so far (None: deleted); the tree for the others.
    let mut overlay: HashMap<&str, Option<&[Acl]>> = HashMap::new();
    let mut events = Vec::new();
    let acl_now = |overlay: &HashMap<&str, Option<&[Acl]>>, path: &str| -> Vec<Acl> {
        let acl = match overlay.get(path) {
            Some(acl) => *acl,
            None => tree.get(path).map(|n| n.acl()),
        };
        acl.map(<[Acl]>::to_vec).unwrap_or_default()
    };
    for m in members {
        match &m.txn {
            Txn::Create { path, acl, .. }
            | Txn::CreateContainer { path, acl, .. }
            | Txn::CreateTtl { path, acl, .. } => {
                events.push((path.clone(), EventType::NodeCreated, acl.clone()));
                overlay.insert(path, Some(acl));
                if let Some(p) = parent(path) {
                    let acl = acl_now(&overlay, p);
                    events.push((p.to_string(), EventType::NodeChildrenChanged, acl));
                }
            }
            Txn::Delete { path } => {
                let acl = acl_now(&overlay, path);
                events.push((path.clone(), EventType::NodeDeleted, acl));
                overlay.insert(path, None);
                if let Some(p) = parent(path) {
                    let acl = acl_now(&overlay, p);
                    events.push((p.to_string(), EventType::NodeChildrenChanged, acl));
                }
            }
            Txn::SetData { path, .. } => {
                let acl = acl_now(&overlay, path);
                events.push((path.clone(), EventType::NodeDataChanged, acl));
            }
            Txn::SetAcl { path, acl, .. } => {
                overlay.insert(path, Some(acl));
            }
            _ => {}
        }
    }
    events
}

#[cfg(test)]
mod tests;
