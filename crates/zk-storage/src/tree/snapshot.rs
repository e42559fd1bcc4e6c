//! Serialising the tree: a consistent [`SnapshotView`] taken in O(nodes / 256), written
//! on any thread while the tree goes on applying txns, and read back by
//! [`DataTree::read_from`].
//!
//! Format, version 2, all integers little-endian:
//!
//! ```text
//! "ZKDT" | u32 version = 2
//! i64 last_zxid | u64 node_count | u32 session_count | u32 acl_list_count
//! session_count × (i64 session_id | i32 timeout_ms)
//! acl_list_count × (u32 entries | entries × (i32 perms | str scheme | str id))
//! node_count × (u32 path_len | u32 data_len | u32 acl_list |
//!               i64 czxid | i64 mzxid | i64 pzxid | i64 ctime | i64 mtime |
//!               i32 version | i32 cversion | i32 aversion | i64 ephemeral_owner |
//!               path bytes | data bytes)
//! "DTND" | u32 crc32c of every byte before "DTND"
//! ```
//! `str` is `u32 len | UTF-8 bytes`. Nodes come parents first (`/` first), so the reader
//! links each node to a parent it has already read. A `data_len` of `0xffff_ffff` is null
//! data (no data bytes follow).
//!
//! Version 1 is the same without null data (a `data_len` of `0xffff_ffff` is refused
//! there); it is still read.

use std::io::{self, Read, Write};
use std::sync::Arc;

use zk_proto::data::{Acl, Id};
use zk_proto::zxid::Zxid;

use super::arena::{Chunk, NIL, Slot, StatPersisted, slot_in};
use super::{DataTree, InvalidPath, validate_path};

const MAGIC: &[u8; 4] = b"ZKDT";
const END_MAGIC: &[u8; 4] = b"DTND";
const VERSION: u32 = 2;
/// The version before null data, still read.
const VERSION_NO_NULL: u32 = 1;
/// `data_len` of a node with null data.
const NULL_DATA_LEN: u32 = u32::MAX;
const NODE_HEADER_LEN: usize = 12 + 5 * 8 + 3 * 4 + 8;
/// Longest path accepted (ZooKeeper's requests are capped by `jute.maxbuffer`, 1 MiB by
/// default; paths are far shorter in practice).
const MAX_PATH_LEN: u32 = 1 << 20;
/// Longest data accepted: a Stat's dataLength is an i32.
const MAX_DATA_LEN: u32 = i32::MAX as u32;
/// Longest ACL string (scheme or id).
const MAX_ACL_STR_LEN: u32 = 1 << 16;
/// At most this many elements are reserved up front from a count read from the input;
/// beyond it collections grow with the data actually read.
const RESERVE_CAP: usize = 1 << 16;
/// At most this many index entries (8 bytes each) are reserved from the node count
/// before any node has been read.
const INDEX_RESERVE_CAP: usize = 1 << 22;
/// Variable-length fields are read in steps of this size.
const READ_STEP: usize = 1 << 16;

/// Why a tree snapshot could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TreeSnapshotError {
    /// Reading failed.
    #[error("tree snapshot I/O: {0}")]
    Io(#[from] io::Error),
    /// The input ended inside the snapshot.
    #[error("tree snapshot truncated")]
    Truncated,
    /// Not a tree snapshot.
    #[error("not a tree snapshot (bad magic)")]
    BadMagic,
    /// Written by a newer version of this format.
    #[error("unsupported tree snapshot version {0}")]
    UnsupportedVersion(u32),
    /// The checksum does not match: the bytes were damaged.
    #[error("tree snapshot checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// Stored in the trailer.
        stored: u32,
        /// Computed over the bytes read.
        computed: u32,
    },
    /// A length field is beyond its limit.
    #[error("tree snapshot {what} length {len} is beyond the limit")]
    TooLong {
        /// The field.
        what: &'static str,
        /// The length found.
        len: u64,
    },
    /// A string is not UTF-8.
    #[error("tree snapshot {0} is not UTF-8")]
    BadUtf8(&'static str),
    /// A node path is invalid.
    #[error("tree snapshot node path {path:?}: {reason}")]
    InvalidPath {
        /// The path.
        path: String,
        /// Why.
        reason: InvalidPath,
    },
    /// The first node is not `/`.
    #[error("tree snapshot does not start with the root node")]
    MissingRoot,
    /// A node comes before its parent or its parent is absent.
    #[error("tree snapshot node {0:?} has no parent before it")]
    Orphan(String),
    /// Two nodes with the same path.
    #[error("tree snapshot has node {0:?} twice")]
    Duplicate(String),
    /// A node names an ACL list that is not in the table.
    #[error("tree snapshot node {path:?} refers to ACL list {index} of {count}")]
    BadAclIndex {
        /// The node.
        path: String,
        /// The index.
        index: u32,
        /// Lists in the table.
        count: u32,
    },
    /// The trailer is missing or wrong.
    #[error("tree snapshot trailer missing")]
    BadTrailer,
}

/// A consistent, immutable copy of a [`DataTree`] at one zxid, sharing the tree's memory
/// (copy on write). `Send + 'static`: move it to another thread and
/// [`write_to`](SnapshotView::write_to) there while the tree applies more txns.
#[derive(Debug, Clone)]
pub struct SnapshotView {
    chunks: Vec<Chunk>,
    acls: Vec<Option<Arc<[Acl]>>>,
    sessions: Vec<(i64, i32)>,
    last_zxid: Zxid,
    node_count: u64,
}

impl DataTree {
    /// A consistent view of the whole tree (nodes, ACLs, sessions, last processed zxid).
    /// Costs one pointer copy per 256 nodes plus the session and ACL tables; each chunk
    /// the tree writes to while a view holds it is copied once.
    pub fn snapshot_view(&self) -> SnapshotView {
        SnapshotView {
            chunks: self.arena.chunks().to_vec(),
            acls: self.acls.lists(),
            sessions: self.sessions().collect(),
            last_zxid: self.last_processed_zxid,
            node_count: self.arena.live() as u64,
        }
    }
}

struct CrcWriter<W> {
    inner: W,
    crc: u32,
    written: u64,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let done = buf.get(..n).unwrap_or(buf);
        self.crc = crc32c::crc32c_append(self.crc, done);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn put_str(w: &mut impl Write, s: &str) -> io::Result<()> {
    let len = u32::try_from(s.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "string longer than 4 GiB"))?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn corrupt_view() -> io::Error {
    io::Error::other("snapshot view links point outside the view")
}

impl SnapshotView {
    /// zxid of the last txn applied to the tree when the view was taken.
    pub fn last_zxid(&self) -> Zxid {
        self.last_zxid
    }

    /// Number of nodes in the view.
    pub fn node_count(&self) -> u64 {
        self.node_count
    }

    /// Writes the view in the format above and returns the number of bytes written.
    /// Buffers internally (64 KiB); `w` need not be buffered.
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<u64> {
        let crc_writer = CrcWriter {
            inner: &mut *w,
            crc: 0,
            written: 0,
        };
        let mut out = io::BufWriter::with_capacity(1 << 16, crc_writer);
        out.write_all(MAGIC)?;
        out.write_all(&VERSION.to_le_bytes())?;

        // Dense ACL table: only the lists in use, renumbered.
        let mut acl_index = vec![u32::MAX; self.acls.len()];
        let mut acl_lists: Vec<&Arc<[Acl]>> = Vec::new();
        for (id, list) in self.acls.iter().enumerate() {
            if let Some(list) = list {
                acl_index[id] = acl_lists.len() as u32;
                acl_lists.push(list);
            }
        }

        out.write_all(&self.last_zxid.to_le_bytes())?;
        out.write_all(&self.node_count.to_le_bytes())?;
        let session_count = u32::try_from(self.sessions.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "too many sessions"))?;
        out.write_all(&session_count.to_le_bytes())?;
        out.write_all(&(acl_lists.len() as u32).to_le_bytes())?;
        for (id, timeout) in &self.sessions {
            out.write_all(&id.to_le_bytes())?;
            out.write_all(&timeout.to_le_bytes())?;
        }
        for list in &acl_lists {
            out.write_all(&(list.len() as u32).to_le_bytes())?;
            for acl in list.iter() {
                out.write_all(&acl.perms.to_le_bytes())?;
                put_str(&mut out, &acl.id.scheme)?;
                put_str(&mut out, &acl.id.id)?;
            }
        }

        // Depth-first from the root (slot 0), parents before children, each node's path
        // put together in `path` from its parent's (the first `parent_len` bytes) and its
        // name. The stack holds at most one entry per node.
        let mut written_nodes = 0u64;
        if self.node_count > 0 {
            let mut path = String::new();
            let mut stack = vec![(0u32, None::<usize>)];
            while let Some((id, parent_len)) = stack.pop() {
                let slot = slot_in(&self.chunks, id).ok_or_else(corrupt_view)?;
                if !slot.is_live() {
                    return Err(corrupt_view());
                }
                match parent_len {
                    None => path.push('/'),
                    Some(len) => {
                        path.truncate(len);
                        if !path.ends_with('/') {
                            path.push('/');
                        }
                        path.push_str(slot.name());
                    }
                }
                let acl = acl_index
                    .get(slot.acl as usize)
                    .copied()
                    .filter(|&i| i != u32::MAX)
                    .ok_or_else(corrupt_view)?;
                write_node(&mut out, &path, slot, acl)?;
                written_nodes += 1;
                if written_nodes > self.node_count {
                    return Err(corrupt_view());
                }
                let mut child = slot.first_child;
                while child != NIL {
                    stack.push((child, Some(path.len())));
                    child = slot_in(&self.chunks, child).ok_or_else(corrupt_view)?.next;
                }
            }
        }
        if written_nodes != self.node_count {
            return Err(corrupt_view());
        }
        let crc_writer = out.into_inner().map_err(|e| e.into_error())?;
        let crc = crc_writer.crc;
        let total = crc_writer.written + 8;
        w.write_all(END_MAGIC)?;
        w.write_all(&crc.to_le_bytes())?;
        w.flush()?;
        Ok(total)
    }
}

fn write_node(out: &mut impl Write, path: &str, slot: &Slot, acl: u32) -> io::Result<()> {
    let too_long = || io::Error::new(io::ErrorKind::InvalidData, "node field too long");
    let path_len = u32::try_from(path.len()).map_err(|_| too_long())?;
    let data_len = match slot.data() {
        Some(d) => u32::try_from(d.len())
            .ok()
            .filter(|&l| l <= MAX_DATA_LEN)
            .ok_or_else(too_long)?,
        None => NULL_DATA_LEN,
    };
    let s = &slot.stat();
    let mut header = [0u8; NODE_HEADER_LEN];
    let mut at = 0;
    let mut put = |b: &[u8]| {
        header[at..at + b.len()].copy_from_slice(b);
        at += b.len();
    };
    put(&path_len.to_le_bytes());
    put(&data_len.to_le_bytes());
    put(&acl.to_le_bytes());
    for v in [s.czxid, s.mzxid, s.pzxid, s.ctime, s.mtime] {
        put(&v.to_le_bytes());
    }
    for v in [s.version, s.cversion, s.aversion] {
        put(&v.to_le_bytes());
    }
    put(&s.ephemeral_owner.to_le_bytes());
    out.write_all(&header)?;
    out.write_all(path.as_bytes())?;
    out.write_all(slot.data().unwrap_or_default())
}

/// Reads exactly what it is asked for (never ahead of the snapshot's end), updating the
/// checksum.
struct CrcReader<'r, R> {
    inner: &'r mut R,
    crc: u32,
}

impl<R: Read> CrcReader<'_, R> {
    fn raw(&mut self, buf: &mut [u8]) -> Result<(), TreeSnapshotError> {
        self.inner.read_exact(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                TreeSnapshotError::Truncated
            } else {
                TreeSnapshotError::Io(e)
            }
        })
    }

    fn exact(&mut self, buf: &mut [u8]) -> Result<(), TreeSnapshotError> {
        self.raw(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, buf);
        Ok(())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], TreeSnapshotError> {
        let mut b = [0u8; N];
        self.exact(&mut b)?;
        Ok(b)
    }

    fn u32(&mut self) -> Result<u32, TreeSnapshotError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, TreeSnapshotError> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, TreeSnapshotError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// Reads `len` bytes into `buf` (cleared first), growing it only as bytes arrive.
    fn bytes_into(&mut self, len: usize, buf: &mut Vec<u8>) -> Result<(), TreeSnapshotError> {
        buf.clear();
        let mut remaining = len;
        while remaining > 0 {
            let step = remaining.min(READ_STEP);
            let start = buf.len();
            buf.resize(start + step, 0);
            self.exact(&mut buf[start..])?;
            remaining -= step;
        }
        Ok(())
    }

    fn string(&mut self, what: &'static str, max: u32) -> Result<String, TreeSnapshotError> {
        let len = self.u32()?;
        if len > max {
            return Err(TreeSnapshotError::TooLong {
                what,
                len: u64::from(len),
            });
        }
        let mut buf = Vec::new();
        self.bytes_into(len as usize, &mut buf)?;
        String::from_utf8(buf).map_err(|_| TreeSnapshotError::BadUtf8(what))
    }
}

fn le_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    i64::from_le_bytes(a)
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

impl DataTree {
    /// Reads a tree written by [`SnapshotView::write_to`]. Reads exactly the snapshot's
    /// bytes, in small reads: give it a buffered reader. Garbage, truncation and damage
    /// give an error; no length field makes it allocate more than the input holds.
    pub fn read_from(r: &mut impl Read) -> Result<DataTree, TreeSnapshotError> {
        let mut r = CrcReader { inner: r, crc: 0 };
        if &r.array::<4>()? != MAGIC {
            return Err(TreeSnapshotError::BadMagic);
        }
        let version = r.u32()?;
        if version != VERSION && version != VERSION_NO_NULL {
            return Err(TreeSnapshotError::UnsupportedVersion(version));
        }
        let last_zxid = r.i64()?;
        let node_count = u64::from_le_bytes(r.array()?);
        if node_count >= u64::from(NIL) {
            return Err(TreeSnapshotError::TooLong {
                what: "node count",
                len: node_count,
            });
        }
        let session_count = r.u32()?;
        let acl_count = r.u32()?;

        let mut tree = DataTree::empty();
        tree.last_processed_zxid = last_zxid;
        for _ in 0..session_count {
            let id = r.i64()?;
            let timeout = r.i32()?;
            tree.sessions.insert(id, timeout);
        }
        let mut acl_ids = Vec::with_capacity((acl_count as usize).min(RESERVE_CAP));
        for _ in 0..acl_count {
            let entries = r.u32()?;
            let mut list = Vec::with_capacity((entries as usize).min(RESERVE_CAP));
            for _ in 0..entries {
                let perms = r.i32()?;
                let scheme = r.string("ACL scheme", MAX_ACL_STR_LEN)?;
                let id = r.string("ACL id", MAX_ACL_STR_LEN)?;
                list.push(Acl {
                    perms,
                    id: Id { scheme, id },
                });
            }
            acl_ids.push(tree.acls.insert(Arc::from(list)));
        }

        tree.index
            .reserve((node_count as usize).min(INDEX_RESERVE_CAP), |e| {
                super::table_hash(e.hash)
            });
        let mut scratch = Vec::new();
        let mut data = Vec::new();
        // Nodes come depth-first: the ancestors of the next node are on this stack (with
        // the length of their paths, each a prefix of `last_path`, the path of the node
        // read last), so its parent is found without a hash lookup (other orders fall
        // back to one).
        let mut ancestors: Vec<(u32, usize)> = Vec::new();
        let mut last_path = String::new();
        for n in 0..node_count {
            let header: [u8; NODE_HEADER_LEN] = r.array()?;
            let path_len = le_u32(&header, 0);
            let data_len = le_u32(&header, 4);
            let acl_file = le_u32(&header, 8);
            if path_len > MAX_PATH_LEN {
                return Err(TreeSnapshotError::TooLong {
                    what: "path",
                    len: u64::from(path_len),
                });
            }
            let null_data = data_len == NULL_DATA_LEN && version != VERSION_NO_NULL;
            if data_len > MAX_DATA_LEN && !null_data {
                return Err(TreeSnapshotError::TooLong {
                    what: "data",
                    len: u64::from(data_len),
                });
            }
            let i = |k: usize| le_i64(&header, 12 + 8 * k);
            let i32_at = |k: usize| le_u32(&header, 52 + 4 * k) as i32;
            let stat = StatPersisted {
                czxid: i(0),
                mzxid: i(1),
                pzxid: i(2),
                ctime: i(3),
                mtime: i(4),
                version: i32_at(0),
                cversion: i32_at(1),
                aversion: i32_at(2),
                ephemeral_owner: le_i64(&header, 64),
            };
            r.bytes_into(path_len as usize, &mut scratch)?;
            let path =
                std::str::from_utf8(&scratch).map_err(|_| TreeSnapshotError::BadUtf8("path"))?;
            if let Err(reason) = validate_path(path) {
                return Err(TreeSnapshotError::InvalidPath {
                    path: path.to_string(),
                    reason,
                });
            }
            if (n == 0) != (path == "/") {
                return Err(if n == 0 {
                    TreeSnapshotError::MissingRoot
                } else {
                    TreeSnapshotError::Duplicate(path.to_string())
                });
            }
            let Some(&acl) = acl_ids.get(acl_file as usize) else {
                return Err(TreeSnapshotError::BadAclIndex {
                    path: path.to_string(),
                    index: acl_file,
                    count: acl_count,
                });
            };
            if !null_data {
                r.bytes_into(data_len as usize, &mut data)?;
            }
            let parent_path = super::split_parent(path).map(|(p, _)| p);
            let mut parent = None;
            while let Some(&(top, len)) = ancestors.last() {
                if last_path.get(..len) == parent_path {
                    parent = Some(top);
                    break;
                }
                ancestors.pop();
            }
            let node_data = (!null_data).then_some(data.as_slice());
            match tree.insert_node_under(path, node_data, acl, stat, parent) {
                Ok(id) => {
                    tree.acls.add_ref(acl);
                    ancestors.push((id, path.len()));
                    last_path.clear();
                    last_path.push_str(path);
                }
                Err(zk_proto::data::ErrorCode::NodeExists) => {
                    return Err(TreeSnapshotError::Duplicate(path.to_string()));
                }
                Err(_) => return Err(TreeSnapshotError::Orphan(path.to_string())),
            }
        }
        let computed = r.crc;
        let mut trailer = [0u8; 8];
        r.raw(&mut trailer)
            .map_err(|_| TreeSnapshotError::BadTrailer)?;
        if trailer.get(..4) != Some(&END_MAGIC[..]) {
            return Err(TreeSnapshotError::BadTrailer);
        }
        let stored = le_u32(&trailer, 4);
        if stored != computed {
            return Err(TreeSnapshotError::Checksum { stored, computed });
        }
        tree.acls.purge_unused();
        Ok(tree)
    }
}
