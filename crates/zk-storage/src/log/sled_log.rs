//! The txn log on sled 0.34.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use zk_proto::zxid::Zxid;

use super::record::{decode_record, encode_record, key_of, zxid_of_key};
use super::{LogError, LogIter, LogRecord, RawRecordAccess, TxnLog, check_batch};

/// The sled tree holding the records (key: big-endian zxid; value: crc32c + payload).
pub const RECORDS_TREE: &str = "txns";
/// The key, in sled's default tree, of the format marker.
const FORMAT_KEY: &[u8] = b"format";
/// The format marker this code writes and accepts.
const FORMAT_VALUE: &[u8] = b"zk-rs txnlog v1";
/// sled 0.34's data file inside its directory.
const SLED_DATA_FILE: &str = "db";
/// sled 0.34's directory of large items.
const SLED_BLOB_DIR: &str = "blobs";
/// Records removed per sled batch by truncate / purge, to bound memory.
const REMOVE_BATCH: usize = 4096;

/// How long [`SledTxnLog::open`] waits for sled's file lock: sled's background threads may
/// hold the lock for a moment after the previous `Db` of the same directory was dropped.
const LOCK_WAIT: Duration = Duration::from_secs(3);
const LOCK_RETRY: Duration = Duration::from_millis(10);

/// Opens sled, retrying (for at most [`LOCK_WAIT`]) while its file lock is still held.
fn open_waiting_for_lock(config: &sled::Config) -> sled::Result<sled::Db> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(LOCK_RETRY);
            }
            other => return other,
        }
    }
}

/// Tuning of the sled log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SledLogOptions {
    /// sled's page cache size in bytes (sled's own default is 1 GiB, too much for several
    /// nodes on one machine).
    pub cache_capacity_bytes: u64,
}

impl Default for SledLogOptions {
    fn default() -> Self {
        Self {
            cache_capacity_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A [`TxnLog`] stored in a sled 0.34 database.
///
/// sled is opened with `flush_every_ms(None)`: nothing is flushed behind the log's back,
/// and a record is durable exactly when [`sync`](TxnLog::sync) has returned. A batch is
/// applied with one sled `Batch`, which sled recovers atomically.
///
/// `sync` is `Db::flush` **followed by an `fdatasync` of sled's data file**. On Linux,
/// sled 0.34.7's `flush` writes its log buffers with `pwrite` + `sync_file_range`
/// (`pagecache/iobuf.rs`), which neither flushes the device's write cache nor persists the
/// file's size when the file grew; that survives `kill -9` but not a power loss. Only
/// sled's periodic flusher calls `fsync`, and it is turned off here so that durability is
/// explicit, so the log calls `fdatasync` itself. sled also writes items larger than about
/// a quarter of its 512 KiB segment (a txn of more than ~128 KiB) to files in `<path>/blobs`
/// without ever syncing them; `sync` therefore also `fdatasync`s every blob file it has not
/// synced yet, and the `blobs` directory when one appeared.
#[derive(Debug)]
pub struct SledTxnLog {
    path: PathBuf,
    db: sled::Db,
    records: sled::Tree,
    /// sled's data file (`<path>/db`), kept open to `fdatasync` it after each flush.
    data_file: File,
    /// Blob files already synced (names in `<path>/blobs`).
    synced_blobs: HashSet<OsString>,
    last: Option<Zxid>,
    durable: Option<Zxid>,
}

impl SledTxnLog {
    /// Opens (or creates) the log in directory `path`. Every record found there is durable.
    pub fn open(path: impl AsRef<Path>, options: SledLogOptions) -> Result<Self, LogError> {
        let path = path.as_ref().to_path_buf();
        let sled_err = |source| LogError::Sled {
            location: path.display().to_string(),
            source,
        };
        let config = sled::Config::new()
            .path(&path)
            .flush_every_ms(None)
            .cache_capacity(options.cache_capacity_bytes)
            .mode(sled::Mode::LowSpace);
        let db = open_waiting_for_lock(&config).map_err(sled_err)?;
        let records = db.open_tree(RECORDS_TREE).map_err(sled_err)?;
        match db.get(FORMAT_KEY).map_err(sled_err)? {
            Some(v) if v.as_ref() == FORMAT_VALUE => {}
            Some(v) => {
                return Err(LogError::Format {
                    location: path.display().to_string(),
                    reason: format!(
                        "unknown format marker {:?}, expected {:?}",
                        String::from_utf8_lossy(&v),
                        String::from_utf8_lossy(FORMAT_VALUE)
                    ),
                });
            }
            None if !records.is_empty() => {
                return Err(LogError::Format {
                    location: path.display().to_string(),
                    reason: "records present but no format marker".to_owned(),
                });
            }
            None => {
                db.insert(FORMAT_KEY, FORMAT_VALUE).map_err(sled_err)?;
            }
        }
        let data_path = path.join(SLED_DATA_FILE);
        let data_file = File::open(&data_path).map_err(|e| LogError::Format {
            location: path.display().to_string(),
            reason: format!("cannot open sled's data file {}: {e}", data_path.display()),
        })?;
        let mut log = Self {
            path,
            db,
            records,
            data_file,
            synced_blobs: HashSet::new(),
            last: None,
            durable: None,
        };
        log.flush_and_fsync()?;
        // sled does not sync its directory after creating its files.
        let dir_err = |e: std::io::Error| LogError::Sled {
            location: log.location(),
            source: sled::Error::Io(e),
        };
        crate::fsio::sync_dir(&log.path).map_err(dir_err)?;
        if let Some(parent) = log.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::fsio::sync_dir(parent).map_err(dir_err)?;
        }
        log.last = log.read_last_key()?;
        // Keys sort as unsigned bytes, so a negative zxid would sort last and zero first:
        // checking both ends shows every key is a positive zxid.
        for end in [log.first_zxid()?, log.last] {
            if let Some(zxid) = end.filter(|z| *z <= 0) {
                return Err(LogError::Format {
                    location: log.location(),
                    reason: format!("key {zxid:#x} is not a valid txn zxid"),
                });
            }
        }
        log.durable = log.last;
        Ok(log)
    }

    /// The directory of the sled database.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes sled uses on disk (sled's own estimate; it may be several times the payload).
    pub fn size_on_disk(&self) -> Result<u64, LogError> {
        self.db.size_on_disk().map_err(|e| self.sled_err(e))
    }

    /// Number of records (walks the tree: O(n)).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when the log holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// sled's `flush`, then `fdatasync` of its data file and of new blob files (see the
    /// type's documentation).
    fn flush_and_fsync(&mut self) -> Result<(), LogError> {
        self.db.flush().map_err(|e| self.sled_err(e))?;
        let io_err = |location: String| {
            move |e: std::io::Error| LogError::Sled {
                location,
                source: sled::Error::Io(e),
            }
        };
        self.data_file
            .sync_data()
            .map_err(io_err(self.location()))?;
        let blobs = self.path.join(SLED_BLOB_DIR);
        let entries = match std::fs::read_dir(&blobs) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(blobs.display().to_string())(e)),
        };
        let mut present = HashSet::new();
        let mut new_blob = false;
        for entry in entries {
            let entry = entry.map_err(io_err(blobs.display().to_string()))?;
            let name = entry.file_name();
            if !self.synced_blobs.contains(&name) {
                match File::open(entry.path()) {
                    Ok(f) => f
                        .sync_data()
                        .map_err(io_err(entry.path().display().to_string()))?,
                    // Removed by sled's garbage collection meanwhile: nothing to sync.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_err(entry.path().display().to_string())(e)),
                }
                new_blob = true;
            }
            present.insert(name);
        }
        if new_blob {
            crate::fsio::sync_dir(&blobs).map_err(io_err(blobs.display().to_string()))?;
        }
        self.synced_blobs = present;
        Ok(())
    }

    fn sled_err(&self, source: sled::Error) -> LogError {
        LogError::Sled {
            location: self.location(),
            source,
        }
    }

    fn key_to_zxid(&self, key: &[u8]) -> Result<Zxid, LogError> {
        zxid_of_key(key).ok_or_else(|| LogError::Format {
            location: self.location(),
            reason: format!("a key of {} bytes is not a zxid", key.len()),
        })
    }

    fn read_last_key(&self) -> Result<Option<Zxid>, LogError> {
        match self.records.last().map_err(|e| self.sled_err(e))? {
            Some((k, _)) => Ok(Some(self.key_to_zxid(&k)?)),
            None => Ok(None),
        }
    }

    fn decode(location: &Path, key: &[u8], value: &[u8]) -> Result<LogRecord, LogError> {
        let zxid = zxid_of_key(key).ok_or_else(|| LogError::Format {
            location: location.display().to_string(),
            reason: format!("a key of {} bytes is not a zxid", key.len()),
        })?;
        decode_record(zxid, value)
            .map(|payload| LogRecord {
                zxid,
                payload: payload.to_vec(),
            })
            .map_err(|reason| LogError::Corrupt {
                location: location.display().to_string(),
                zxid,
                reason,
            })
    }

    /// Removes the keys yielded by `iter` in bounded batches, then flushes.
    fn remove_all(&mut self, iter: sled::Iter) -> Result<u64, LogError> {
        let mut removed = 0u64;
        let mut batch = sled::Batch::default();
        let mut in_batch = 0usize;
        for item in iter.keys() {
            let key = item.map_err(|e| self.sled_err(e))?;
            batch.remove(key);
            in_batch += 1;
            removed += 1;
            if in_batch == REMOVE_BATCH {
                self.records
                    .apply_batch(std::mem::take(&mut batch))
                    .map_err(|e| self.sled_err(e))?;
                in_batch = 0;
            }
        }
        if in_batch > 0 {
            self.records
                .apply_batch(batch)
                .map_err(|e| self.sled_err(e))?;
        }
        self.flush_and_fsync()?;
        self.last = self.read_last_key()?;
        self.durable = self.last;
        Ok(removed)
    }
}

impl TxnLog for SledTxnLog {
    fn append(&mut self, zxid: Zxid, payload: &[u8]) -> Result<(), LogError> {
        self.append_batch(&[(zxid, payload)])
    }

    fn append_batch(&mut self, records: &[(Zxid, &[u8])]) -> Result<(), LogError> {
        let location = || self.location();
        check_batch(&location, self.last, records)?;
        let Some(&(last, _)) = records.last() else {
            return Ok(());
        };
        if let [(zxid, payload)] = records {
            self.records
                .insert(key_of(*zxid), encode_record(*zxid, payload))
                .map_err(|e| self.sled_err(e))?;
        } else {
            let mut batch = sled::Batch::default();
            for &(zxid, payload) in records {
                batch.insert(&key_of(zxid), encode_record(zxid, payload));
            }
            self.records
                .apply_batch(batch)
                .map_err(|e| self.sled_err(e))?;
        }
        self.last = Some(last);
        Ok(())
    }

    fn sync(&mut self) -> Result<Option<Zxid>, LogError> {
        let last = self.last;
        self.flush_and_fsync()?;
        self.durable = last;
        Ok(last)
    }

    fn durable_zxid(&self) -> Option<Zxid> {
        self.durable
    }

    fn last_zxid(&self) -> Result<Option<Zxid>, LogError> {
        Ok(self.last)
    }

    fn first_zxid(&self) -> Result<Option<Zxid>, LogError> {
        match self.records.first().map_err(|e| self.sled_err(e))? {
            Some((k, _)) => Ok(Some(self.key_to_zxid(&k)?)),
            None => Ok(None),
        }
    }

    fn get(&self, zxid: Zxid) -> Result<Option<LogRecord>, LogError> {
        if zxid <= 0 {
            return Ok(None);
        }
        let key = key_of(zxid);
        match self.records.get(key).map_err(|e| self.sled_err(e))? {
            Some(v) => Self::decode(&self.path, &key, &v).map(Some),
            None => Ok(None),
        }
    }

    fn read_from(&self, from: Zxid) -> Result<LogIter<'_>, LogError> {
        let start = key_of(from.max(0));
        let path = self.path.clone();
        Ok(Box::new(self.records.range(start..).map(move |item| {
            let (k, v) = item.map_err(|source| LogError::Sled {
                location: path.display().to_string(),
                source,
            })?;
            Self::decode(&path, &k, &v)
        })))
    }

    fn truncate_after(&mut self, zxid: Zxid) -> Result<u64, LogError> {
        let iter = match zxid.checked_add(1) {
            _ if zxid < 0 => self.records.iter(),
            Some(first_removed) => self.records.range(key_of(first_removed)..),
            // Nothing is after i64::MAX: remove nothing, but stay durable like the others.
            None => self.records.range(key_of(Zxid::MAX)..key_of(Zxid::MAX)),
        };
        self.remove_all(iter)
    }

    fn purge_before(&mut self, zxid: Zxid) -> Result<u64, LogError> {
        let iter = self.records.range(..key_of(zxid.max(0)));
        self.remove_all(iter)
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }
}

impl RawRecordAccess for SledTxnLog {
    fn put_raw_for_test(&mut self, zxid: Zxid, stored_value: Vec<u8>) -> Result<(), LogError> {
        self.records
            .insert(key_of(zxid), stored_value)
            .map_err(|e| self.sled_err(e))?;
        self.sync()?;
        self.last = self.read_last_key()?;
        self.durable = self.last;
        Ok(())
    }
}
