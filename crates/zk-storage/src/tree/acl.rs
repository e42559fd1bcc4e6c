//! Shared ACL lists: every node stores a small id; equal lists are stored once, with a
//! reference count (ZooKeeper's `ReferenceCountedACLCache`).

use std::collections::HashMap;
use std::sync::Arc;

use zk_proto::data::Acl;

/// Interned ACL lists with reference counts.
#[derive(Debug, Clone, Default)]
pub(crate) struct AclTable {
    /// By id; `None` for a free id.
    lists: Vec<Option<Arc<[Acl]>>>,
    /// Nodes that use each id.
    refs: Vec<u64>,
    lookup: HashMap<Arc<[Acl]>, u32>,
    free: Vec<u32>,
}

impl AclTable {
    /// The id of `acl`, adding one reference.
    pub(crate) fn intern(&mut self, acl: &[Acl]) -> u32 {
        if let Some(&id) = self.lookup.get(acl) {
            self.add_ref(id);
            return id;
        }
        let id = self.insert(Arc::from(acl));
        self.add_ref(id);
        id
    }

    /// Stores a list with no reference yet (snapshot loading); equal lists share an id.
    pub(crate) fn insert(&mut self, list: Arc<[Acl]>) -> u32 {
        if let Some(&id) = self.lookup.get(&*list) {
            return id;
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.lists[id as usize] = Some(list.clone());
                self.refs[id as usize] = 0;
                id
            }
            None => {
                let id = self.lists.len() as u32;
                self.lists.push(Some(list.clone()));
                self.refs.push(0);
                id
            }
        };
        self.lookup.insert(list, id);
        id
    }

    pub(crate) fn add_ref(&mut self, id: u32) {
        if let Some(r) = self.refs.get_mut(id as usize) {
            *r += 1;
        }
    }

    /// Drops one reference; the list goes away with its last user.
    pub(crate) fn release(&mut self, id: u32) {
        let Some(r) = self.refs.get_mut(id as usize) else {
            return;
        };
        *r = r.saturating_sub(1);
        if *r == 0 {
            self.forget(id);
        }
    }

    fn forget(&mut self, id: u32) {
        if let Some(list) = self.lists.get_mut(id as usize).and_then(Option::take) {
            self.lookup.remove(&*list);
            self.free.push(id);
        }
    }

    /// Frees every list no node uses (after a snapshot load).
    pub(crate) fn purge_unused(&mut self) {
        for id in 0..self.lists.len() {
            if self.refs[id] == 0 {
                self.forget(id as u32);
            }
        }
    }

    pub(crate) fn get(&self, id: u32) -> &[Acl] {
        match self.lists.get(id as usize) {
            Some(Some(list)) => list,
            _ => &[],
        }
    }

    /// The lists by id, for a snapshot view.
    pub(crate) fn lists(&self) -> Vec<Option<Arc<[Acl]>>> {
        self.lists.clone()
    }

    /// Number of distinct lists in use.
    pub(crate) fn len(&self) -> usize {
        self.lookup.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_shared_and_released() {
        let mut t = AclTable::default();
        let open = Acl::open_unsafe();
        let a = t.intern(&open);
        let b = t.intern(&open);
        assert_eq!(a, b);
        let c = t.intern(&Acl::read_unsafe());
        assert_ne!(a, c);
        assert_eq!(t.len(), 2);
        t.release(a);
        assert_eq!(t.get(a), &open[..]);
        t.release(a);
        assert_eq!(t.len(), 1);
        assert!(t.get(a).is_empty());
        // The freed id is reused.
        let d = t.intern(&Acl::creator_all());
        assert_eq!(d, a);
        assert_eq!(t.get(d), &Acl::creator_all()[..]);
    }
}
