//! Node storage: slots in fixed-size chunks behind `Arc`, copied on write.
//!
//! A snapshot view clones the chunk pointers (one `Arc` per 256 nodes), and the next
//! write to a chunk that a view still holds copies that chunk first, so the tree and any
//! number of views share every chunk that has not changed since.

use std::sync::Arc;

use zk_proto::zxid::Zxid;

/// "No node" in the links between slots.
pub(crate) const NIL: u32 = u32::MAX;
const CHUNK_BITS: u32 = 8;
/// Slots per chunk.
pub(crate) const CHUNK_LEN: usize = 1 << CHUNK_BITS;

/// The persisted metadata of a znode (ZooKeeper's `StatPersisted`): the reported
/// [`zk_proto::data::Stat`] is derived from it, the data length and the child count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct StatPersisted {
    /// zxid of the create.
    pub czxid: Zxid,
    /// zxid of the last setData (or the create).
    pub mzxid: Zxid,
    /// zxid of the last change to the children.
    pub pzxid: Zxid,
    /// Create time, ms since the epoch.
    pub ctime: i64,
    /// Last modification time.
    pub mtime: i64,
    /// Number of data changes.
    pub version: i32,
    /// Stored child version: one per create of a child (reported as 2 × this −
    /// numChildren).
    pub cversion: i32,
    /// Number of ACL changes.
    pub aversion: i32,
    /// Owning session of an ephemeral, or the container / TTL encoding, or 0.
    pub ephemeral_owner: i64,
}

impl StatPersisted {
    /// The stat of a node created by txn `zxid` at `time` (ZooKeeper's `createStat`).
    pub fn created(zxid: Zxid, time: i64, ephemeral_owner: i64) -> Self {
        StatPersisted {
            czxid: zxid,
            mzxid: zxid,
            pzxid: zxid,
            ctime: time,
            mtime: time,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner,
        }
    }
}

/// Bit of [`Slot::flags`]: the node's data is null.
const NULL_DATA: u32 = 1 << 31;
/// Bit of [`Slot::flags`]: `blob` starts with the 8-byte `ephemeralOwner` (persistent
/// nodes, owner 0, have none).
const HAS_OWNER: u32 = 1 << 30;
/// Longest node name a slot holds (the rest of [`Slot::flags`] are flags).
pub(crate) const MAX_NAME_LEN: usize = (HAS_OWNER - 1) as usize;
const OWNER_LEN: usize = 8;

/// One node, or a free slot when `blob` is `None`: 96 bytes plus one allocation.
///
/// The node's name (the last component of its path, not the whole path: the path is
/// its ancestors' names) and its data share one allocation, `blob`, after the node's
/// `ephemeralOwner` when it is not 0 (it never changes). The other fields of the stored
/// stat ([`StatPersisted`]) are fields of the slot, so that they pack with the links.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    /// `[ephemeralOwner]`, the name's bytes, the data's; `None` for a free slot.
    blob: Option<Box<[u8]>>,
    pub(crate) czxid: Zxid,
    pub(crate) mzxid: Zxid,
    pub(crate) pzxid: Zxid,
    pub(crate) ctime: i64,
    pub(crate) mtime: i64,
    pub(crate) version: i32,
    pub(crate) cversion: i32,
    pub(crate) aversion: i32,
    /// Length of the name in `blob`, with [`NULL_DATA`] and [`HAS_OWNER`].
    flags: u32,
    pub(crate) acl: u32,
    pub(crate) parent: u32,
    pub(crate) first_child: u32,
    /// Next sibling; next free slot for a free slot.
    pub(crate) next: u32,
    pub(crate) prev: u32,
    pub(crate) num_children: u32,
}

/// The blob of a node: owner (when not 0), name, data.
fn blob(owner: i64, name: &str, data: Option<&[u8]>) -> Box<[u8]> {
    let data = data.unwrap_or_default();
    let owner_len = if owner != 0 { OWNER_LEN } else { 0 };
    let mut b = Vec::with_capacity(owner_len + name.len() + data.len());
    if owner != 0 {
        b.extend_from_slice(&owner.to_le_bytes());
    }
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(data);
    b.into_boxed_slice()
}

impl Slot {
    /// A node named `name` (at most [`MAX_NAME_LEN`] bytes, checked by the caller) with
    /// `data` (`None`: null), not linked yet.
    pub(crate) fn new(name: &str, data: Option<&[u8]>, stat: StatPersisted, acl: u32) -> Slot {
        let owner = stat.ephemeral_owner;
        let mut flags = name.len() as u32 & MAX_NAME_LEN as u32;
        if data.is_none() {
            flags |= NULL_DATA;
        }
        if owner != 0 {
            flags |= HAS_OWNER;
        }
        Slot {
            blob: Some(blob(owner, name, data)),
            czxid: stat.czxid,
            mzxid: stat.mzxid,
            pzxid: stat.pzxid,
            ctime: stat.ctime,
            mtime: stat.mtime,
            version: stat.version,
            cversion: stat.cversion,
            aversion: stat.aversion,
            flags,
            acl,
            parent: NIL,
            first_child: NIL,
            next: NIL,
            prev: NIL,
            num_children: 0,
        }
    }

    /// A free slot whose next free slot is `next`.
    fn free(next: u32) -> Slot {
        Slot {
            blob: None,
            czxid: 0,
            mzxid: 0,
            pzxid: 0,
            ctime: 0,
            mtime: 0,
            version: 0,
            cversion: 0,
            aversion: 0,
            flags: 0,
            acl: 0,
            parent: NIL,
            first_child: NIL,
            next,
            prev: NIL,
            num_children: 0,
        }
    }

    /// True for a node, false for a free slot.
    pub(crate) fn is_live(&self) -> bool {
        self.blob.is_some()
    }

    /// (owner bytes, name bytes, data bytes) of the blob.
    fn parts(&self) -> (&[u8], &[u8], &[u8]) {
        let b = self.blob.as_deref().unwrap_or_default();
        let owner_len = if self.flags & HAS_OWNER != 0 {
            OWNER_LEN
        } else {
            0
        };
        let (owner, rest) = b.split_at(owner_len.min(b.len()));
        let name_len = (self.flags & MAX_NAME_LEN as u32) as usize;
        let (name, data) = rest.split_at(name_len.min(rest.len()));
        (owner, name, data)
    }

    /// The node's name ("" for the root and for free slots).
    pub(crate) fn name(&self) -> &str {
        // Always UTF-8: the bytes come from a `&str` cut at a '/'.
        std::str::from_utf8(self.name_bytes()).unwrap_or_default()
    }

    /// The bytes of the node's name (no UTF-8 check: for comparing and hashing).
    pub(crate) fn name_bytes(&self) -> &[u8] {
        self.parts().1
    }

    /// The data, `None` when null.
    pub(crate) fn data(&self) -> Option<&[u8]> {
        (self.flags & NULL_DATA == 0).then(|| self.parts().2)
    }

    /// Length of the data, 0 for null (ZooKeeper's `DataNode.copyStat`).
    pub(crate) fn data_len(&self) -> usize {
        self.parts().2.len()
    }

    /// The stored `ephemeralOwner`.
    pub(crate) fn owner(&self) -> i64 {
        let mut b = [0u8; OWNER_LEN];
        if let Some(owner) = self.parts().0.get(..OWNER_LEN) {
            b.copy_from_slice(owner);
        }
        i64::from_le_bytes(b)
    }

    /// The stored stat.
    pub(crate) fn stat(&self) -> StatPersisted {
        StatPersisted {
            czxid: self.czxid,
            mzxid: self.mzxid,
            pzxid: self.pzxid,
            ctime: self.ctime,
            mtime: self.mtime,
            version: self.version,
            cversion: self.cversion,
            aversion: self.aversion,
            ephemeral_owner: self.owner(),
        }
    }

    /// Sets the stored stat but for `ephemeralOwner`, which a node keeps for life.
    pub(crate) fn set_stat(&mut self, stat: StatPersisted) {
        self.czxid = stat.czxid;
        self.mzxid = stat.mzxid;
        self.pzxid = stat.pzxid;
        self.ctime = stat.ctime;
        self.mtime = stat.mtime;
        self.version = stat.version;
        self.cversion = stat.cversion;
        self.aversion = stat.aversion;
    }

    /// Replaces the data (`None`: null), keeping the owner and the name.
    pub(crate) fn set_data(&mut self, data: Option<&[u8]>) {
        let new = blob(self.owner(), self.name(), data);
        self.flags = (self.flags & !NULL_DATA) | if data.is_none() { NULL_DATA } else { 0 };
        self.blob = Some(new);
    }
}

pub(crate) type Chunk = Arc<Vec<Slot>>;

/// Looks a slot up in a chunk list (the tree's or a view's).
pub(crate) fn slot_in(chunks: &[Chunk], id: u32) -> Option<&Slot> {
    chunks
        .get((id >> CHUNK_BITS) as usize)?
        .get(id as usize & (CHUNK_LEN - 1))
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Arena {
    chunks: Vec<Chunk>,
    free: Option<u32>,
    live: usize,
}

impl Arena {
    /// The slot of a live id. Ids come from the index and the links, never from input.
    pub(crate) fn slot(&self, id: u32) -> &Slot {
        &self.chunks[(id >> CHUNK_BITS) as usize][id as usize & (CHUNK_LEN - 1)]
    }

    pub(crate) fn slot_mut(&mut self, id: u32) -> &mut Slot {
        let chunk = Arc::make_mut(&mut self.chunks[(id >> CHUNK_BITS) as usize]);
        &mut chunk[id as usize & (CHUNK_LEN - 1)]
    }

    /// Stores a node; `None` when 2^32 − 1 slots are in use.
    pub(crate) fn alloc(&mut self, slot: Slot) -> Option<u32> {
        self.live += 1;
        if let Some(id) = self.free {
            let s = self.slot_mut(id);
            let next = s.next;
            *s = slot;
            self.free = (next != NIL).then_some(next);
            return Some(id);
        }
        let total = self.chunks.len() * CHUNK_LEN;
        let last_full = self.chunks.last().is_none_or(|c| c.len() == CHUNK_LEN);
        let id = if last_full {
            total
        } else {
            total - CHUNK_LEN + self.chunks.last().map_or(0, |c| c.len())
        };
        let Ok(id) = u32::try_from(id) else {
            self.live -= 1;
            return None;
        };
        if id == NIL {
            self.live -= 1;
            return None;
        }
        if last_full {
            self.chunks.push(Arc::new(Vec::with_capacity(CHUNK_LEN)));
        }
        if let Some(chunk) = self.chunks.last_mut() {
            Arc::make_mut(chunk).push(slot);
        }
        Some(id)
    }

    /// Frees a slot and returns what it held.
    pub(crate) fn release(&mut self, id: u32) -> Slot {
        let next = self.free.unwrap_or(NIL);
        let old = std::mem::replace(self.slot_mut(id), Slot::free(next));
        self.free = Some(id);
        self.live -= 1;
        old
    }

    pub(crate) fn live(&self) -> usize {
        self.live
    }

    pub(crate) fn chunks(&self) -> &[Chunk] {
        &self.chunks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_slot_is_96_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 96);
    }

    #[test]
    fn owner_name_and_data_share_the_blob() {
        for owner in [
            0,
            0x1234_5678_9abc,
            -1,
            crate::tree::CONTAINER_EPHEMERAL_OWNER,
        ] {
            for data in [None, Some(&b""[..]), Some(&b"some data"[..])] {
                let stat = StatPersisted {
                    ephemeral_owner: owner,
                    cversion: 3,
                    ..StatPersisted::created(7, 9, owner)
                };
                let mut s = Slot::new("node-1", data, stat, 2);
                assert_eq!((s.name(), s.data(), s.owner()), ("node-1", data, owner));
                assert_eq!(s.stat(), stat);
                assert_eq!(s.data_len(), data.map_or(0, <[u8]>::len));
                s.set_data(Some(b"xy"));
                assert_eq!(
                    (s.name(), s.data(), s.owner()),
                    ("node-1", Some(&b"xy"[..]), owner)
                );
                s.set_data(None);
                assert_eq!((s.name(), s.data(), s.data_len()), ("node-1", None, 0));
                let other = StatPersisted {
                    version: 5,
                    ephemeral_owner: 99,
                    ..stat
                };
                s.set_stat(other);
                assert_eq!(
                    s.stat(),
                    StatPersisted {
                        ephemeral_owner: owner,
                        ..other
                    }
                );
            }
        }
        let root = Slot::new("", Some(&[]), StatPersisted::default(), 0);
        assert_eq!(
            (root.name(), root.data(), root.owner()),
            ("", Some(&b""[..]), 0)
        );
        let free = Slot::free(NIL);
        assert!(!free.is_live() && free.name().is_empty());
    }
}
