//! Snapshot files: `snapshot.<hex zxid>` in a directory, checksummed chunk by chunk.
//!
//! The payload is opaque here: it comes from a writer callback (the tree's
//! `SnapshotView::write_to`) and goes back out through [`SnapshotReader`], which implements
//! [`Read`] (for `DataTree::read_from`).
//!
//! # File format (all integers big-endian)
//!
//! ```text
//! header   magic "ZRSN" | version u32 = 1 | zxid i64 | flags u32 = 0 | crc32c(previous 20 bytes) u32
//! chunk*   len u32 (1 ..= 1 MiB) | crc32c(payload) u32 | payload
//! end      len u32 = 0
//! trailer  payload bytes u64 | chunk count u64 | crc32c(every byte of the file before this field) u32
//! ```
//!
//! A file that ends early, has a bad chunk, a trailer that disagrees with what was read, or
//! bytes after the trailer is invalid. Files are written as `snapshot.<hex>.tmp`, fsynced,
//! renamed, and the directory is fsynced, so a crash leaves no half snapshot under a real
//! name.
//!
//! # Sending to a peer
//!
//! [`SnapshotStore::chunks`] verifies a file and then streams its exact bytes in pieces of at
//! most [`MAX_CHUNK_BYTES`]; [`SnapshotStore::receive`] writes such a stream to a temp file
//! while verifying it with the same reader, and only renames it in place when every check
//! passed. The whole-file checksum thus covers the transfer end to end.
//!
//! ```
//! use std::io::{Read, Write};
//! use zk_storage::snapshot::SnapshotStore;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = SnapshotStore::open(dir.path())?;
//! let info = store.write(0x1_0000_0005, |w| w.write_all(b"the tree, serialized"))?;
//! assert_eq!(info.path.file_name().and_then(|n| n.to_str()), Some("snapshot.100000005"));
//!
//! let newest = store.newest_valid()?.expect("one valid snapshot");
//! let mut reader = store.open_reader(&newest.path)?;
//! let mut payload = Vec::new();
//! reader.read_to_end(&mut payload)?;
//! reader.finish()?; // trailer and whole-file checksum verified
//! assert_eq!(payload, b"the tree, serialized");
//! # Ok(()) }
//! ```

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use zk_proto::zxid::Zxid;

/// First bytes of every snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 4] = *b"ZRSN";
/// The format version this code writes and reads.
pub const SNAPSHOT_VERSION: u32 = 1;
/// The largest chunk payload in a file, and the largest piece [`SnapshotStore::chunks`]
/// yields or [`SnapshotStore::receive`] accepts: 1 MiB.
pub const MAX_CHUNK_BYTES: usize = 1 << 20;
/// File name prefix; the rest of the name is the zxid in lower-case hex.
pub const SNAPSHOT_PREFIX: &str = "snapshot.";
/// Suffix of a snapshot being written or received.
const TMP_SUFFIX: &str = ".tmp";
const HEADER_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 8;
const TRAILER_LEN: usize = 20;

/// Errors of snapshot files.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// An I/O error on a snapshot file or directory (or from the payload writer).
    #[error("snapshot {location}: {source}")]
    Io {
        /// The file or directory.
        location: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The bytes are not a valid snapshot (truncated, corrupt, wrong magic or version).
    #[error("snapshot {location} is invalid: {reason}")]
    Invalid {
        /// The file, or where the bytes came from.
        location: String,
        /// What failed.
        reason: String,
    },
    /// A received snapshot is for another zxid than expected.
    #[error("snapshot {location} is for zxid {found:#x}, expected {expected:#x}")]
    ZxidMismatch {
        /// Where the bytes came from.
        location: String,
        /// The zxid that was expected.
        expected: Zxid,
        /// The zxid in the header.
        found: Zxid,
    },
    /// The chunk source of [`SnapshotStore::receive`] failed (the peer or the network).
    #[error("receiving snapshot: {0}")]
    Source(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl SnapshotError {
    fn io(location: impl AsRef<Path>) -> impl FnOnce(io::Error) -> SnapshotError {
        let location = location.as_ref().display().to_string();
        move |source| SnapshotError::Io { location, source }
    }
}

/// What a written, verified or received snapshot file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The zxid the snapshot is at (every txn up to it is applied, none after).
    pub zxid: Zxid,
    /// The file.
    pub path: PathBuf,
    /// Payload bytes (the tree's serialized form).
    pub payload_bytes: u64,
    /// Number of payload chunks.
    pub chunks: u64,
    /// Size of the file.
    pub file_bytes: u64,
}

/// A snapshot file found in the directory (not yet verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    /// The zxid from the file name.
    pub zxid: Zxid,
    /// The file.
    pub path: PathBuf,
}

/// What [`SnapshotStore::purge`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotPurge {
    /// The retained snapshots, newest first.
    pub retained: Vec<Zxid>,
    /// The files removed.
    pub removed: Vec<PathBuf>,
}

impl SnapshotPurge {
    /// The zxid of the oldest retained snapshot: log records at or after it are needed.
    pub fn oldest_retained(&self) -> Option<Zxid> {
        self.retained.last().copied()
    }
}

// ---------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------

/// Streams a snapshot payload into the chunked format. Implements [`Write`]: every byte
/// written is payload; chunks are cut at [`MAX_CHUNK_BYTES`].
#[derive(Debug)]
pub struct SnapshotWriter<W: Write> {
    out: W,
    buf: Vec<u8>,
    file_crc: u32,
    file_bytes: u64,
    payload_bytes: u64,
    chunks: u64,
}

impl<W: Write> SnapshotWriter<W> {
    /// Writes the header for `zxid` to `out` and returns the payload writer.
    pub fn new(out: W, zxid: Zxid) -> io::Result<Self> {
        let mut w = Self {
            out,
            buf: Vec::with_capacity(MAX_CHUNK_BYTES),
            file_crc: 0,
            file_bytes: 0,
            payload_bytes: 0,
            chunks: 0,
        };
        let mut header = [0u8; HEADER_LEN];
        header[0..4].copy_from_slice(&SNAPSHOT_MAGIC);
        header[4..8].copy_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        header[8..16].copy_from_slice(&zxid.to_be_bytes());
        // 16..20: flags, zero.
        let crc = crc32c::crc32c(&header[..20]);
        header[20..24].copy_from_slice(&crc.to_be_bytes());
        w.emit(&header)?;
        Ok(w)
    }

    fn emit(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.file_crc = crc32c::crc32c_append(self.file_crc, bytes);
        self.file_bytes += bytes.len() as u64;
        Ok(())
    }

    fn emit_chunk(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let payload = std::mem::take(&mut self.buf);
        let mut frame = [0u8; FRAME_HEADER_LEN];
        frame[0..4].copy_from_slice(&(payload.len() as u32).to_be_bytes());
        frame[4..8].copy_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
        self.emit(&frame)?;
        self.emit(&payload)?;
        self.payload_bytes += payload.len() as u64;
        self.chunks += 1;
        self.buf = payload;
        self.buf.clear();
        Ok(())
    }

    /// Writes the last chunk, the end marker and the trailer, flushes, and returns the
    /// underlying writer with `(payload bytes, chunks, file bytes)`.
    pub fn finish(mut self) -> io::Result<(W, u64, u64, u64)> {
        self.emit_chunk()?;
        self.emit(&0u32.to_be_bytes())?;
        let mut trailer = [0u8; TRAILER_LEN - 4];
        trailer[0..8].copy_from_slice(&self.payload_bytes.to_be_bytes());
        trailer[8..16].copy_from_slice(&self.chunks.to_be_bytes());
        self.emit(&trailer)?;
        let crc = self.file_crc;
        self.emit(&crc.to_be_bytes())?;
        self.out.flush()?;
        Ok((self.out, self.payload_bytes, self.chunks, self.file_bytes))
    }
}

impl<W: Write> Write for SnapshotWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = MAX_CHUNK_BYTES - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == MAX_CHUNK_BYTES {
            self.emit_chunk()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Chunks are cut by size only, so that the format does not depend on how often the
        // payload writer flushes.
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------

/// Reads and verifies a snapshot from any byte source. Implements [`Read`] over the
/// payload; each chunk is checked before its bytes are handed out, and the trailer is
/// checked when the payload ends (or by [`finish`](SnapshotReader::finish)).
#[derive(Debug)]
pub struct SnapshotReader<R: Read> {
    src: R,
    location: String,
    zxid: Zxid,
    file_crc: u32,
    file_bytes: u64,
    payload_bytes: u64,
    chunks: u64,
    chunk: Vec<u8>,
    pos: usize,
    done: bool,
}

impl<R: Read> SnapshotReader<R> {
    /// Reads and checks the header. `location` names the source in errors.
    pub fn new(src: R, location: impl Into<String>) -> Result<Self, SnapshotError> {
        let mut r = Self {
            src,
            location: location.into(),
            zxid: 0,
            file_crc: 0,
            file_bytes: 0,
            payload_bytes: 0,
            chunks: 0,
            chunk: Vec::new(),
            pos: 0,
            done: false,
        };
        let mut header = [0u8; HEADER_LEN];
        r.take_exact(&mut header, "header")?;
        if header[0..4] != SNAPSHOT_MAGIC {
            return Err(r.invalid(format!("bad magic {:02x?}", &header[0..4])));
        }
        let stored_crc = u32::from_be_bytes([header[20], header[21], header[22], header[23]]);
        if crc32c::crc32c(&header[..20]) != stored_crc {
            return Err(r.invalid("header checksum mismatch".into()));
        }
        let version = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        if version != SNAPSHOT_VERSION {
            return Err(r.invalid(format!("unsupported version {version}")));
        }
        let mut zxid = [0u8; 8];
        zxid.copy_from_slice(&header[8..16]);
        r.zxid = Zxid::from_be_bytes(zxid);
        Ok(r)
    }

    /// The zxid in the header.
    pub fn zxid(&self) -> Zxid {
        self.zxid
    }

    fn invalid(&self, reason: String) -> SnapshotError {
        SnapshotError::Invalid {
            location: self.location.clone(),
            reason,
        }
    }

    /// Reads exactly `buf.len()` bytes, counting them into the file checksum.
    fn take_exact(&mut self, buf: &mut [u8], what: &str) -> Result<(), SnapshotError> {
        match self.src.read_exact(buf) {
            Ok(()) => {
                self.file_crc = crc32c::crc32c_append(self.file_crc, buf);
                self.file_bytes += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(self.invalid(format!(
                "truncated: the file ends inside the {what} (after {} bytes)",
                self.file_bytes
            ))),
            Err(e) => Err(SnapshotError::Io {
                location: self.location.clone(),
                source: e,
            }),
        }
    }

    /// Reads and verifies the next payload chunk into the internal buffer. Returns `false`
    /// at the end of the payload, after the trailer has been verified.
    fn load_chunk(&mut self) -> Result<bool, SnapshotError> {
        if self.done {
            return Ok(false);
        }
        let mut len = [0u8; 4];
        self.take_exact(&mut len, "chunk length")?;
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 {
            self.read_trailer()?;
            self.done = true;
            self.chunk.clear();
            self.pos = 0;
            return Ok(false);
        }
        if len > MAX_CHUNK_BYTES {
            return Err(self.invalid(format!(
                "chunk {} claims {len} bytes, more than {MAX_CHUNK_BYTES}",
                self.chunks
            )));
        }
        let mut crc = [0u8; 4];
        self.take_exact(&mut crc, "chunk checksum")?;
        let mut chunk = std::mem::take(&mut self.chunk);
        chunk.resize(len, 0);
        let read = self.take_exact(&mut chunk, "chunk payload");
        self.chunk = chunk;
        read?;
        if crc32c::crc32c(&self.chunk) != u32::from_be_bytes(crc) {
            return Err(self.invalid(format!("chunk {} checksum mismatch", self.chunks)));
        }
        self.chunks += 1;
        self.payload_bytes += len as u64;
        self.pos = 0;
        Ok(true)
    }

    fn read_trailer(&mut self) -> Result<(), SnapshotError> {
        let mut counts = [0u8; 16];
        self.take_exact(&mut counts, "trailer")?;
        let expected_crc = self.file_crc;
        let mut crc = [0u8; 4];
        self.take_exact(&mut crc, "trailer")?;
        let mut total = [0u8; 8];
        total.copy_from_slice(&counts[0..8]);
        let mut chunks = [0u8; 8];
        chunks.copy_from_slice(&counts[8..16]);
        let (total, chunks) = (u64::from_be_bytes(total), u64::from_be_bytes(chunks));
        if total != self.payload_bytes || chunks != self.chunks {
            return Err(self.invalid(format!(
                "trailer says {total} bytes in {chunks} chunks, read {} bytes in {} chunks",
                self.payload_bytes, self.chunks
            )));
        }
        if u32::from_be_bytes(crc) != expected_crc {
            return Err(self.invalid("whole-file checksum mismatch".into()));
        }
        let mut extra = [0u8; 1];
        loop {
            match self.src.read(&mut extra) {
                Ok(0) => return Ok(()),
                Ok(_) => return Err(self.invalid("bytes after the trailer".into())),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(SnapshotError::Io {
                        location: self.location.clone(),
                        source: e,
                    });
                }
            }
        }
    }

    /// The next verified payload chunk, or `None` once the trailer has been verified.
    pub fn next_chunk(&mut self) -> Result<Option<&[u8]>, SnapshotError> {
        if self.load_chunk()? {
            self.pos = self.chunk.len();
            Ok(Some(&self.chunk))
        } else {
            Ok(None)
        }
    }

    /// Reads whatever payload is left (without keeping it), verifies the trailer, and
    /// returns `(payload bytes, chunks, file bytes)`. Returns an error for any invalid
    /// byte, so a caller that read only part of the payload still learns that the file was
    /// complete and intact.
    pub fn finish(mut self) -> Result<(u64, u64, u64), SnapshotError> {
        while self.load_chunk()? {}
        Ok((self.payload_bytes, self.chunks, self.file_bytes))
    }
}

impl<R: Read> Read for SnapshotReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.pos >= self.chunk.len() {
            if !self.load_chunk().map_err(io::Error::other)? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

// ---------------------------------------------------------------------------------------
// The directory
// ---------------------------------------------------------------------------------------

/// The snapshot files of one node, in one directory. Cheap to clone (it is a path), so a
/// background thread can write a snapshot while the database goes on.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    dir: PathBuf,
}

/// The name of the snapshot file for `zxid`.
pub fn snapshot_file_name(zxid: Zxid) -> String {
    format!("{SNAPSHOT_PREFIX}{zxid:x}")
}

fn parse_name(name: &str) -> Option<Zxid> {
    let hex = name.strip_prefix(SNAPSHOT_PREFIX)?;
    if hex.is_empty() || hex.len() > 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let z = u64::from_str_radix(hex, 16).ok()?;
    i64::try_from(z).ok()
}

impl SnapshotStore {
    /// Opens the store in `dir`, creating the directory if needed.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, SnapshotError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(SnapshotError::io(&dir))?;
        Ok(Self { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of the snapshot for `zxid` (whether or not it exists).
    pub fn path_of(&self, zxid: Zxid) -> PathBuf {
        self.dir.join(snapshot_file_name(zxid))
    }

    /// Every `snapshot.<hex>` file, newest (highest zxid) first. Nothing is verified.
    pub fn list(&self) -> Result<Vec<SnapshotFile>, SnapshotError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(SnapshotError::io(&self.dir))? {
            let entry = entry.map_err(SnapshotError::io(&self.dir))?;
            let name = entry.file_name();
            if let Some(zxid) = name.to_str().and_then(parse_name) {
                out.push(SnapshotFile {
                    zxid,
                    path: entry.path(),
                });
            }
        }
        out.sort_by_key(|f| std::cmp::Reverse(f.zxid));
        Ok(out)
    }

    /// Removes leftover `snapshot.*.tmp` files (from a crash during a write or a
    /// transfer). Call it only when no snapshot is being written.
    pub fn remove_temp_files(&self) -> Result<Vec<PathBuf>, SnapshotError> {
        let mut removed = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(SnapshotError::io(&self.dir))? {
            let entry = entry.map_err(SnapshotError::io(&self.dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(SNAPSHOT_PREFIX) && name.ends_with(TMP_SUFFIX) {
                let path = entry.path();
                fs::remove_file(&path).map_err(SnapshotError::io(&path))?;
                removed.push(path);
            }
        }
        if !removed.is_empty() {
            crate::fsio::sync_dir(&self.dir).map_err(SnapshotError::io(&self.dir))?;
        }
        Ok(removed)
    }

    /// Writes the snapshot for `zxid`: `write_payload` streams the payload into the chunked
    /// writer; the file is written under a temp name, fsynced, renamed and the directory
    /// fsynced. An existing snapshot of the same zxid is replaced.
    pub fn write(
        &self,
        zxid: Zxid,
        write_payload: impl FnOnce(&mut SnapshotWriter<BufWriter<File>>) -> io::Result<()>,
    ) -> Result<SnapshotInfo, SnapshotError> {
        let path = self.path_of(zxid);
        let tmp = self.tmp_path(zxid);
        let result = (|| {
            let file = File::create(&tmp)?;
            let mut w = SnapshotWriter::new(BufWriter::with_capacity(256 * 1024, file), zxid)?;
            write_payload(&mut w)?;
            let (out, payload_bytes, chunks, file_bytes) = w.finish()?;
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            Ok((payload_bytes, chunks, file_bytes))
        })();
        let (payload_bytes, chunks, file_bytes) = match result {
            Ok(v) => v,
            Err(source) => {
                let _ = fs::remove_file(&tmp);
                return Err(SnapshotError::Io {
                    location: tmp.display().to_string(),
                    source,
                });
            }
        };
        self.install_tmp(&tmp, &path)?;
        Ok(SnapshotInfo {
            zxid,
            path,
            payload_bytes,
            chunks,
            file_bytes,
        })
    }

    fn tmp_path(&self, zxid: Zxid) -> PathBuf {
        self.dir
            .join(format!("{}{TMP_SUFFIX}", snapshot_file_name(zxid)))
    }

    fn install_tmp(&self, tmp: &Path, path: &Path) -> Result<(), SnapshotError> {
        fs::rename(tmp, path).map_err(SnapshotError::io(path))?;
        crate::fsio::sync_dir(&self.dir).map_err(SnapshotError::io(&self.dir))
    }

    /// Opens a snapshot file for reading its payload (header checked; chunks and trailer
    /// are checked as they are read).
    pub fn open_reader(
        &self,
        path: &Path,
    ) -> Result<SnapshotReader<BufReader<File>>, SnapshotError> {
        let file = File::open(path).map_err(SnapshotError::io(path))?;
        SnapshotReader::new(
            BufReader::with_capacity(256 * 1024, file),
            path.display().to_string(),
        )
    }

    /// Reads a whole snapshot file and verifies every checksum, the trailer and that the
    /// header zxid matches the file name.
    pub fn verify(&self, path: &Path) -> Result<SnapshotInfo, SnapshotError> {
        let reader = self.open_reader(path)?;
        let zxid = reader.zxid();
        let named = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(parse_name);
        if named != Some(zxid) {
            return Err(SnapshotError::Invalid {
                location: path.display().to_string(),
                reason: format!("header zxid {zxid:#x} does not match the file name"),
            });
        }
        let (payload_bytes, chunks, file_bytes) = reader.finish()?;
        Ok(SnapshotInfo {
            zxid,
            path: path.to_path_buf(),
            payload_bytes,
            chunks,
            file_bytes,
        })
    }

    /// The newest snapshot that verifies; invalid newer ones are skipped with a warning.
    pub fn newest_valid(&self) -> Result<Option<SnapshotInfo>, SnapshotError> {
        Ok(self.valid_newest_first(1)?.into_iter().next())
    }

    /// Up to `n` valid snapshots, newest first (invalid ones are skipped with a warning).
    pub fn valid_newest_first(&self, n: usize) -> Result<Vec<SnapshotInfo>, SnapshotError> {
        let mut out = Vec::new();
        for file in self.list()? {
            if out.len() >= n {
                break;
            }
            match self.verify(&file.path) {
                Ok(info) => out.push(info),
                Err(SnapshotError::Io { location, source })
                    if source.kind() != io::ErrorKind::NotFound =>
                {
                    return Err(SnapshotError::Io { location, source });
                }
                Err(e) => {
                    tracing::warn!(path = %file.path.display(), error = %e, "skipping invalid snapshot");
                }
            }
        }
        Ok(out)
    }

    /// Keeps the newest `retain` valid snapshots (at least one) and removes every snapshot
    /// older than the oldest of them (ZooKeeper's `autopurge.snapRetainCount`). Invalid
    /// files newer than that are left for an operator to look at.
    pub fn purge(&self, retain: usize) -> Result<SnapshotPurge, SnapshotError> {
        let kept = self.valid_newest_first(retain.max(1))?;
        let mut purge = SnapshotPurge {
            retained: kept.iter().map(|i| i.zxid).collect(),
            removed: Vec::new(),
        };
        let Some(oldest) = purge.oldest_retained() else {
            return Ok(purge);
        };
        for file in self.list()? {
            if file.zxid < oldest {
                fs::remove_file(&file.path).map_err(SnapshotError::io(&file.path))?;
                purge.removed.push(file.path);
            }
        }
        if !purge.removed.is_empty() {
            crate::fsio::sync_dir(&self.dir).map_err(SnapshotError::io(&self.dir))?;
        }
        Ok(purge)
    }

    /// Removes every snapshot with a zxid above `zxid` (they hold txns a TRUNC drops).
    pub fn remove_newer_than(&self, zxid: Zxid) -> Result<Vec<PathBuf>, SnapshotError> {
        let mut removed = Vec::new();
        for file in self.list()? {
            if file.zxid > zxid {
                fs::remove_file(&file.path).map_err(SnapshotError::io(&file.path))?;
                removed.push(file.path);
            }
        }
        if !removed.is_empty() {
            crate::fsio::sync_dir(&self.dir).map_err(SnapshotError::io(&self.dir))?;
        }
        Ok(removed)
    }

    /// Verifies the snapshot at `path` and returns an iterator over its exact bytes in
    /// pieces of at most [`MAX_CHUNK_BYTES`], for sending to a peer.
    pub fn chunks(&self, path: &Path) -> Result<FileChunks, SnapshotError> {
        let info = self.verify(path)?;
        let file = File::open(path).map_err(SnapshotError::io(path))?;
        Ok(FileChunks {
            file,
            path: path.to_path_buf(),
            info,
            failed: false,
        })
    }

    /// Receives a snapshot from a peer: `chunks` are the exact bytes of a snapshot file (as
    /// yielded by [`chunks`](Self::chunks) on the peer), each at most [`MAX_CHUNK_BYTES`].
    /// They are verified while they are written to a temp file; only a complete, intact
    /// snapshot (of `expected_zxid`, when given) is fsynced and renamed in place.
    pub fn receive<I, E>(
        &self,
        expected_zxid: Option<Zxid>,
        chunks: I,
    ) -> Result<SnapshotInfo, SnapshotError>
    where
        I: IntoIterator<Item = Result<Vec<u8>, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        self.receive_staged(expected_zxid, chunks)?.commit()
    }

    /// Like [`receive`](Self::receive), but stops before the rename: the verified, fsynced
    /// temp file is returned as a [`StagedSnapshot`], so that the caller can prepare for it
    /// (drop log records and snapshots it supersedes) before [`StagedSnapshot::commit`]
    /// makes it visible. Dropping the staged snapshot removes the temp file.
    pub fn receive_staged<I, E>(
        &self,
        expected_zxid: Option<Zxid>,
        chunks: I,
    ) -> Result<StagedSnapshot, SnapshotError>
    where
        I: IntoIterator<Item = Result<Vec<u8>, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let tmp = self
            .dir
            .join(format!("{SNAPSHOT_PREFIX}receiving{TMP_SUFFIX}"));
        let result = self.receive_into(&tmp, expected_zxid, chunks.into_iter());
        let (zxid, payload_bytes, chunk_count, file_bytes) = match result {
            Ok(v) => v,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        Ok(StagedSnapshot {
            store: self.clone(),
            tmp: Some(tmp),
            info: SnapshotInfo {
                zxid,
                path: self.path_of(zxid),
                payload_bytes,
                chunks: chunk_count,
                file_bytes,
            },
        })
    }

    fn receive_into<I, E>(
        &self,
        tmp: &Path,
        expected_zxid: Option<Zxid>,
        chunks: I,
    ) -> Result<(Zxid, u64, u64, u64), SnapshotError>
    where
        I: Iterator<Item = Result<Vec<u8>, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let file = File::create(tmp).map_err(SnapshotError::io(tmp))?;
        let mut tee = TeeChunks {
            chunks,
            current: Vec::new(),
            pos: 0,
            out: BufWriter::with_capacity(256 * 1024, file),
            source_error: None,
        };
        let outcome = (|| {
            let reader = SnapshotReader::new(&mut tee, "received from peer")?;
            let zxid = reader.zxid();
            if let Some(expected) = expected_zxid
                && expected != zxid
            {
                return Err(SnapshotError::ZxidMismatch {
                    location: "received from peer".into(),
                    expected,
                    found: zxid,
                });
            }
            let (payload, chunks, file_bytes) = reader.finish()?;
            Ok((zxid, payload, chunks, file_bytes))
        })();
        if let Some(e) = tee.source_error.take() {
            return Err(e);
        }
        let outcome = outcome?;
        let file = tee
            .out
            .into_inner()
            .map_err(|e| e.into_error())
            .map_err(SnapshotError::io(tmp))?;
        file.sync_all().map_err(SnapshotError::io(tmp))?;
        Ok(outcome)
    }
}

/// A received and verified snapshot, fsynced under a temp name, not yet visible.
#[derive(Debug)]
pub struct StagedSnapshot {
    store: SnapshotStore,
    tmp: Option<PathBuf>,
    info: SnapshotInfo,
}

impl StagedSnapshot {
    /// What the snapshot holds; `path` is where [`commit`](Self::commit) puts it.
    pub fn info(&self) -> &SnapshotInfo {
        &self.info
    }

    /// Where the verified bytes are until [`commit`](Self::commit) (a temp file), e.g. to
    /// load the snapshot before it is made visible.
    pub fn staged_path(&self) -> &Path {
        self.tmp.as_deref().unwrap_or(&self.info.path)
    }

    /// Renames the snapshot in place and fsyncs the directory.
    pub fn commit(mut self) -> Result<SnapshotInfo, SnapshotError> {
        if let Some(tmp) = self.tmp.take() {
            self.store.install_tmp(&tmp, &self.info.path)?;
        }
        Ok(self.info.clone())
    }
}

impl Drop for StagedSnapshot {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = fs::remove_file(tmp);
        }
    }
}

/// The bytes of a verified snapshot file, in pieces of at most [`MAX_CHUNK_BYTES`].
#[derive(Debug)]
pub struct FileChunks {
    file: File,
    path: PathBuf,
    info: SnapshotInfo,
    failed: bool,
}

impl FileChunks {
    /// What the file holds (it was verified before the first chunk).
    pub fn info(&self) -> &SnapshotInfo {
        &self.info
    }
}

impl Iterator for FileChunks {
    type Item = Result<Vec<u8>, SnapshotError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let mut buf = Vec::with_capacity(MAX_CHUNK_BYTES);
        match (&mut self.file)
            .take(MAX_CHUNK_BYTES as u64)
            .read_to_end(&mut buf)
        {
            Ok(0) => None,
            Ok(_) => Some(Ok(buf)),
            Err(source) => {
                self.failed = true;
                Some(Err(SnapshotError::Io {
                    location: self.path.display().to_string(),
                    source,
                }))
            }
        }
    }
}

/// A [`Read`] over a chunk iterator that copies every byte it hands out to `out`.
struct TeeChunks<I, W> {
    chunks: I,
    current: Vec<u8>,
    pos: usize,
    out: W,
    source_error: Option<SnapshotError>,
}

impl<I, E, W> Read for TeeChunks<I, W>
where
    I: Iterator<Item = Result<Vec<u8>, E>>,
    E: std::error::Error + Send + Sync + 'static,
    W: Write,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.pos >= self.current.len() {
            match self.chunks.next() {
                None => return Ok(0),
                Some(Err(e)) => {
                    let msg = e.to_string();
                    self.source_error = Some(SnapshotError::Source(Box::new(e)));
                    return Err(io::Error::other(msg));
                }
                Some(Ok(chunk)) if chunk.len() > MAX_CHUNK_BYTES => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "received a piece of {} bytes, more than {MAX_CHUNK_BYTES}",
                            chunk.len()
                        ),
                    ));
                }
                Some(Ok(chunk)) => {
                    self.out.write_all(&chunk)?;
                    self.current = chunk;
                    self.pos = 0;
                }
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_to_vec(zxid: Zxid, payload: &[u8]) -> Vec<u8> {
        let mut w = SnapshotWriter::new(Vec::new(), zxid).expect("header");
        w.write_all(payload).expect("payload");
        w.finish().expect("finish").0
    }

    fn read_back(bytes: &[u8]) -> Result<(Zxid, Vec<u8>), SnapshotError> {
        let mut r = SnapshotReader::new(bytes, "test")?;
        let mut payload = Vec::new();
        while let Some(c) = r.next_chunk()? {
            payload.extend_from_slice(c);
        }
        Ok((r.zxid(), payload))
    }

    #[test]
    fn round_trip_sizes() {
        for len in [
            0,
            1,
            MAX_CHUNK_BYTES - 1,
            MAX_CHUNK_BYTES,
            2 * MAX_CHUNK_BYTES + 3,
        ] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let bytes = write_to_vec(77, &payload);
            let (zxid, back) = read_back(&bytes).expect("valid");
            assert_eq!(zxid, 77);
            assert_eq!(back, payload, "len {len}");
            let chunks = len.div_ceil(MAX_CHUNK_BYTES);
            assert_eq!(
                bytes.len(),
                HEADER_LEN + chunks * FRAME_HEADER_LEN + len + 4 + TRAILER_LEN
            );
        }
    }

    #[test]
    fn every_truncation_is_detected() {
        let bytes = write_to_vec(5, &[7u8; 100]);
        for cut in 0..bytes.len() {
            assert!(read_back(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let bytes = write_to_vec(5, b"some payload bytes");
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(read_back(&bad).is_err(), "flip at byte {i}");
        }
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = write_to_vec(5, b"x");
        bytes.push(0);
        assert!(read_back(&bytes).is_err());
    }

    #[test]
    fn names() {
        assert_eq!(snapshot_file_name(0x1_0000_00ff), "snapshot.1000000ff");
        assert_eq!(parse_name("snapshot.1000000ff"), Some(0x1_0000_00ff));
        assert_eq!(parse_name("snapshot.1000000ff.tmp"), None);
        assert_eq!(parse_name("snapshot."), None);
        assert_eq!(parse_name("snapshot.ffffffffffffffff"), None);
        assert_eq!(parse_name("log.5"), None);
    }
}
