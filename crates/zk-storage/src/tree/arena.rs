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

/// Top bit of [`Slot::name_len`]: the node's data is null.
const NULL_DATA: u32 = 1 << 31;
/// Longest node name a slot holds (the rest of `name_len` is the null flag).
pub(crate) const MAX_NAME_LEN: usize = (NULL_DATA - 1) as usize;

/// One node, or a free slot when `blob` is `None`.
///
/// The node's name (the last component of its path, not the whole path: the path is
/// its ancestors' names) and its data share one allocation, `blob`.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    /// The name's bytes then the data's; `None` for a free slot.
    blob: Option<Box<[u8]>>,
    pub(crate) stat: StatPersisted,
    /// Length of the name in `blob`, with [`NULL_DATA`] set when the data is null.
    name_len: u32,
    pub(crate) acl: u32,
    pub(crate) parent: u32,
    pub(crate) first_child: u32,
    /// Next sibling; next free slot for a free slot.
    pub(crate) next: u32,
    pub(crate) prev: u32,
    pub(crate) num_children: u32,
}

fn blob(name: &str, data: Option<&[u8]>) -> Box<[u8]> {
    let data = data.unwrap_or_default();
    let mut b = Vec::with_capacity(name.len() + data.len());
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(data);
    b.into_boxed_slice()
}

impl Slot {
    /// A node named `name` (at most [`MAX_NAME_LEN`] bytes, checked by the caller) with
    /// `data` (`None`: null), not linked yet.
    pub(crate) fn new(name: &str, data: Option<&[u8]>, stat: StatPersisted, acl: u32) -> Slot {
        let flag = if data.is_none() { NULL_DATA } else { 0 };
        Slot {
            blob: Some(blob(name, data)),
            stat,
            name_len: (name.len() as u32 & !NULL_DATA) | flag,
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
            stat: StatPersisted::default(),
            name_len: 0,
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

    fn split(&self) -> (&[u8], &[u8]) {
        let b = self.blob.as_deref().unwrap_or_default();
        b.split_at(((self.name_len & !NULL_DATA) as usize).min(b.len()))
    }

    /// The node's name ("" for the root and for free slots).
    pub(crate) fn name(&self) -> &str {
        // Always UTF-8: the bytes come from a `&str` cut at a '/'.
        std::str::from_utf8(self.split().0).unwrap_or_default()
    }

    /// The data, `None` when null.
    pub(crate) fn data(&self) -> Option<&[u8]> {
        (self.name_len & NULL_DATA == 0).then(|| self.split().1)
    }

    /// Length of the data, 0 for null (ZooKeeper's `DataNode.copyStat`).
    pub(crate) fn data_len(&self) -> usize {
        self.split().1.len()
    }

    /// Replaces the data (`None`: null), keeping the name.
    pub(crate) fn set_data(&mut self, data: Option<&[u8]>) {
        let new = blob(self.name(), data);
        let flag = if data.is_none() { NULL_DATA } else { 0 };
        self.name_len = (self.name_len & !NULL_DATA) | flag;
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
