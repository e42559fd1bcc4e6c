//! Undo journal for multi txns: while a multi applies, every node created, removed or
//! changed and every session entry changed is recorded, so that a member failing at apply
//! time rolls the whole multi back.

use std::sync::Arc;

use zk_proto::data::Acl;

use super::DataTree;
use super::arena::StatPersisted;

/// One change to revert.
#[derive(Debug, Clone)]
pub(crate) enum Undo {
    /// A node was created: remove it.
    Created(Box<str>),
    /// A node was removed: put it back as it was.
    Removed(NodeImage),
    /// A node's data, stat or ACL was changed: restore them.
    Modified(NodeImage),
    /// A session entry was set or removed: restore its previous value.
    Session { id: i64, prev: Option<i32> },
}

/// A node's content before a change.
#[derive(Debug, Clone)]
pub(crate) struct NodeImage {
    path: String,
    data: Option<Vec<u8>>,
    stat: StatPersisted,
    acl: Arc<[Acl]>,
}

impl DataTree {
    fn image(&self, id: u32) -> Option<NodeImage> {
        let slot = self.arena.slot(id);
        if !slot.is_live() {
            return None;
        }
        Some(NodeImage {
            path: self.path_of(id),
            data: slot.data().map(<[u8]>::to_vec),
            stat: slot.stat(),
            acl: Arc::from(self.acls.get(slot.acl)),
        })
    }

    /// Records the node's content before it changes (inside a multi only).
    pub(crate) fn journal_modified(&mut self, id: u32) {
        if self.journal.is_some()
            && let Some(image) = self.image(id)
            && let Some(journal) = self.journal.as_mut()
        {
            journal.push(Undo::Modified(image));
        }
    }

    /// Records a node about to be removed (inside a multi only).
    pub(crate) fn journal_removed(&mut self, id: u32) {
        if self.journal.is_some()
            && let Some(image) = self.image(id)
            && let Some(journal) = self.journal.as_mut()
        {
            journal.push(Undo::Removed(image));
        }
    }

    pub(crate) fn journal_push(&mut self, undo: Undo) {
        if let Some(journal) = self.journal.as_mut() {
            journal.push(undo);
        }
    }

    /// Sets a session's timeout, journaled.
    pub(crate) fn set_session(&mut self, id: i64, timeout_ms: Option<i32>) {
        let prev = match timeout_ms {
            Some(t) => self.sessions.insert(id, t),
            None => self.sessions.remove(&id),
        };
        self.journal_push(Undo::Session { id, prev });
    }

    /// Reverts the journaled changes, newest first.
    pub(crate) fn rollback(&mut self, journal: Vec<Undo>) {
        debug_assert!(self.journal.is_none(), "rollback while journaling");
        for undo in journal.into_iter().rev() {
            match undo {
                Undo::Created(path) => {
                    if let Some(id) = self.lookup(&path) {
                        self.remove_node(id, &path);
                    }
                }
                Undo::Removed(image) => {
                    let acl = self.acls.intern(&image.acl);
                    if let Err(e) =
                        self.insert_node(&image.path, image.data.as_deref(), acl, image.stat)
                    {
                        self.acls.release(acl);
                        tracing::error!(path = %image.path, ?e, "multi rollback could not restore a node");
                    }
                }
                Undo::Modified(image) => {
                    let Some(id) = self.lookup(&image.path) else {
                        tracing::error!(path = %image.path, "multi rollback: changed node is gone");
                        continue;
                    };
                    let acl = self.acls.intern(&image.acl);
                    let new_len = image.data.as_ref().map_or(0, Vec::len) as u64;
                    let slot = self.arena.slot_mut(id);
                    let old_len = slot.data_len() as u64;
                    slot.set_data(image.data.as_deref());
                    slot.set_stat(image.stat);
                    let old_acl = std::mem::replace(&mut slot.acl, acl);
                    self.acls.release(old_acl);
                    self.data_size = self.data_size.saturating_sub(old_len) + new_len;
                }
                Undo::Session { id, prev } => match prev {
                    Some(t) => {
                        self.sessions.insert(id, t);
                    }
                    None => {
                        self.sessions.remove(&id);
                    }
                },
            }
        }
    }
}
