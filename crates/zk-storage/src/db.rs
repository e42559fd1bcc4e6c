//! The database of one node: the [`DataTree`], its txn log, its snapshots and its epochs.
//!
//! [`ZkDatabase::open`] loads the newest valid snapshot and replays the log records after
//! it. The API is plain and synchronous (every call may block on an fsync); the server and
//! Zab drivers run it on a storage thread or in `spawn_blocking`.
//!
//! # On disk (one directory)
//!
//! ```text
//! txnlog/                 the sled database of the txn log (key: big-endian zxid)
//! snapshot.<hex zxid>     snapshot files (see [`crate::snapshot`])
//! acceptedEpoch           decimal, written by tmp + fsync + rename
//! currentEpoch            decimal, written by tmp + fsync + rename
//! ```
//!
//! # Rules
//!
//! * A txn is appended with [`append`](ZkDatabase::append) and is durable once
//!   [`sync`](ZkDatabase::sync) returned a zxid at least as high: only then may it be
//!   acknowledged. zxids are appended gap-free: each is the next counter of its epoch, or
//!   counter 1 of a later epoch.
//! * Only logged txns are applied, in zxid order, so snapshot + log always rebuild the tree.
//! * On open, a corrupt *last* record is a torn write: it is removed with a warning. Any
//!   other corrupt record, a gap, or a record that does not decode refuses to open, with an
//!   error naming the zxid and the path.
//!
//! ```
//! use zk_proto::data::OpCode;
//! use zk_proto::txn::{Txn, TxnEntry, TxnHeader};
//! use zk_proto::zxid::make;
//! use zk_storage::db::{DbOptions, ZkDatabase};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let mut db = ZkDatabase::open(dir.path(), DbOptions::default())?;
//! let entry = TxnEntry {
//!     header: TxnHeader { client_id: 1, cxid: 1, zxid: make(1, 1), time: 0, op: OpCode::Create },
//!     txn: Txn::Create {
//!         path: "/a".into(),
//!         data: Some(b"hello".to_vec()),
//!         acl: vec![],
//!         ephemeral: false,
//!         parent_cversion: 1,
//!     },
//! };
//! db.append(&[(make(1, 1), &entry.encode())])?;
//! assert_eq!(db.sync()?, make(1, 1)); // durable: may be acknowledged now
//! db.apply(&entry)?; // once committed
//! drop(db);
//!
//! let db = ZkDatabase::open(dir.path(), DbOptions::default())?;
//! assert_eq!(db.last_processed_zxid(), make(1, 1));
//! assert_eq!(db.open_report().replayed, 1);
//! assert!(db.tree().exists("/a"));
//! # Ok(()) }
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use zk_proto::txn::TxnEntry;
use zk_proto::zxid::{Zxid, epoch_of};

use crate::log::{
    EpochError, EpochStore, FileEpochStore, LogError, LogIter, SledLogOptions, SledTxnLog, TxnLog,
    is_successor,
};
use crate::snapshot::{SnapshotError, SnapshotInfo, SnapshotStore};
use crate::tree::{ApplyOutcome, DataTree, TreeSnapshotError};

/// Name of the sled directory of the txn log inside the database directory.
pub const TXN_LOG_DIR: &str = "txnlog";

/// Options of [`ZkDatabase::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbOptions {
    /// Tuning of the sled txn log.
    pub log: SledLogOptions,
    /// How many valid snapshots [`ZkDatabase::purge`] keeps (ZooKeeper's
    /// `autopurge.snapRetainCount`; at least 1 is always kept).
    pub snap_retain_count: usize,
}

impl Default for DbOptions {
    fn default() -> Self {
        Self {
            log: SledLogOptions::default(),
            snap_retain_count: 3,
        }
    }
}

/// Errors of the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The txn log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// A snapshot file failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The epoch files failed or broke their rule.
    #[error(transparent)]
    Epoch(#[from] EpochError),
    /// The database directory could not be created or read.
    #[error("database directory {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A log record before the tail is corrupt: the database refuses to open.
    #[error(
        "txn log {path}: record {zxid:#x} is corrupt and is not the last record ({reason}); refusing to open"
    )]
    CorruptLog {
        /// The txn log directory.
        path: PathBuf,
        /// The corrupt record.
        zxid: Zxid,
        /// What failed.
        reason: String,
    },
    /// A log record does not follow the previous one (a gap or a jump).
    #[error("txn log {path}: record {zxid:#x} does not follow {prev:#x}; refusing to open")]
    LogGap {
        /// The txn log directory.
        path: PathBuf,
        /// The zxid before it (the snapshot's, for the first replayed record).
        prev: Zxid,
        /// The record out of sequence.
        zxid: Zxid,
    },
    /// A log record does not hold a valid txn for its zxid.
    #[error("txn log {path}: record {zxid:#x} is not a valid txn: {reason}")]
    BadTxn {
        /// The txn log directory.
        path: PathBuf,
        /// The record.
        zxid: Zxid,
        /// What is wrong.
        reason: String,
    },
    /// A verified snapshot file does not hold a tree this code can read.
    #[error("snapshot {path}: {source}")]
    TreeSnapshot {
        /// The snapshot file.
        path: PathBuf,
        /// The tree's error.
        #[source]
        source: TreeSnapshotError,
    },
    /// An append whose zxid does not follow the last logged zxid.
    #[error("zxid {zxid:#x} does not follow the last logged zxid {last:#x}")]
    OutOfSequence {
        /// The last logged zxid.
        last: Zxid,
        /// The zxid appended.
        zxid: Zxid,
    },
    /// An apply of a txn that is not the next logged one.
    #[error(
        "cannot apply {zxid:#x}: the last applied zxid is {applied:#x} and the last logged {logged:#x}"
    )]
    ApplyOrder {
        /// The last applied zxid.
        applied: Zxid,
        /// The last logged zxid.
        logged: Zxid,
        /// The zxid of the txn.
        zxid: Zxid,
    },
    /// A TRUNC that cannot be carried out from what is on disk.
    #[error("cannot truncate to {zxid:#x}: {reason}")]
    CannotTruncate {
        /// The requested zxid.
        zxid: Zxid,
        /// Why.
        reason: String,
    },
    /// The background snapshot thread panicked.
    #[error("the snapshot thread for {zxid:#x} panicked")]
    SnapshotThread {
        /// The zxid of the snapshot it was writing.
        zxid: Zxid,
    },
}

/// What [`ZkDatabase::open`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// The snapshot the tree was loaded from, if any.
    pub snapshot: Option<SnapshotInfo>,
    /// Log records replayed on top of it.
    pub replayed: u64,
    /// The zxid of the tree after replay.
    pub last_processed_zxid: Zxid,
    /// The last logged zxid (at least the snapshot's).
    pub last_logged_zxid: Zxid,
    /// A torn last record that was removed.
    pub truncated_tail: Option<Zxid>,
    /// Snapshot files that were skipped because they did not verify or load.
    pub skipped_snapshots: Vec<PathBuf>,
    /// Leftover temp files removed.
    pub removed_temp_files: usize,
    /// Time spent loading and replaying.
    pub elapsed: Duration,
}

/// What [`ZkDatabase::truncate_after`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TruncateReport {
    /// Log records removed.
    pub removed_records: u64,
    /// Snapshot files removed (they were newer than the truncation point).
    pub removed_snapshots: Vec<PathBuf>,
    /// True when the tree had applied txns past the point and was reloaded from disk.
    pub reloaded: bool,
}

/// What [`ZkDatabase::purge`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Retained snapshots, newest first.
    pub retained_snapshots: Vec<Zxid>,
    /// Snapshot files removed.
    pub removed_snapshots: Vec<PathBuf>,
    /// Log records removed (every record before the oldest retained snapshot).
    pub removed_records: u64,
}

/// The pieces of an opened database, for a driver that owns the log, the epochs and the
/// state separately (e.g. Zab's `NodeStorage`): see [`ZkDatabase::into_parts`].
#[derive(Debug)]
pub struct DbParts {
    /// The txn log, after the torn-tail check.
    pub log: SledTxnLog,
    /// acceptedEpoch / currentEpoch.
    pub epochs: FileEpochStore,
    /// The snapshot files.
    pub snapshots: SnapshotStore,
    /// The tree: the newest valid snapshot with the log replayed on top.
    pub tree: DataTree,
    /// The zxid of the snapshot the log continues (0 without one): records at or before it
    /// are not needed to rebuild the tree.
    pub log_base: Zxid,
    /// What opening found and did.
    pub report: OpenReport,
}

/// A snapshot being written by a background thread. Dropping it waits for the thread, so
/// no snapshot write outlives the database.
#[derive(Debug)]
struct SnapshotJob {
    zxid: Zxid,
    handle: Option<JoinHandle<Result<SnapshotInfo, SnapshotError>>>,
}

impl SnapshotJob {
    fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }

    fn join(mut self) -> Result<SnapshotInfo, DbError> {
        let zxid = self.zxid;
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(result)) => Ok(result?),
            Some(Err(_)) | None => Err(DbError::SnapshotThread { zxid }),
        }
    }
}

impl Drop for SnapshotJob {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take()
            && let Ok(Err(e)) = handle.join()
        {
            tracing::warn!(zxid = format_args!("{:#x}", self.zxid), error = %e, "background snapshot failed");
        }
    }
}

/// The database of one node (ZooKeeper's `ZKDatabase` + `FileTxnSnapLog`).
#[derive(Debug)]
pub struct ZkDatabase {
    dir: PathBuf,
    options: DbOptions,
    log: SledTxnLog,
    epochs: FileEpochStore,
    snapshots: SnapshotStore,
    tree: DataTree,
    /// The zxid of the state the log continues (the loaded or installed snapshot's, or 0).
    base_zxid: Zxid,
    report: OpenReport,
    job: Option<SnapshotJob>,
    applied_since_snapshot: u64,
}

/// A tree loaded from disk and how.
struct Loaded {
    tree: DataTree,
    base_zxid: Zxid,
    snapshot: Option<SnapshotInfo>,
    skipped: Vec<PathBuf>,
    replayed: u64,
}

impl ZkDatabase {
    /// Opens (or creates) the database in `dir`: newest valid snapshot, then the log
    /// records after it. See the module documentation for what refuses to open.
    pub fn open(dir: impl AsRef<Path>, options: DbOptions) -> Result<Self, DbError> {
        let started = Instant::now();
        let dir = dir.as_ref().to_path_buf();
        let created = !dir.exists();
        fs::create_dir_all(&dir).map_err(|source| DbError::Io {
            path: dir.clone(),
            source,
        })?;
        if created && let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Make the new directory's own entry durable.
            crate::fsio::sync_dir(parent).map_err(|source| DbError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let snapshots = SnapshotStore::open(&dir)?;
        let removed_temp_files = snapshots.remove_temp_files()?.len();
        let mut log = SledTxnLog::open(dir.join(TXN_LOG_DIR), options.log)?;
        let truncated_tail = truncate_torn_tail(&mut log)?;
        let loaded = load(&log, &snapshots)?;
        let last_logged = log.last_zxid()?.unwrap_or(0).max(loaded.base_zxid);

        let mut epochs = FileEpochStore::open(&dir)?;
        let log_epoch = epoch_of(last_logged);
        if epochs.accepted_epoch().is_none() {
            // First start (or an upgrade): derive the epochs from the log, as ZooKeeper does.
            epochs.set_accepted_epoch(log_epoch)?;
        }
        if epochs.current_epoch().is_none() {
            epochs.set_current_epoch(log_epoch)?;
        }
        if let Some(current) = epochs.current_epoch()
            && log_epoch > current
        {
            tracing::warn!(
                dir = %dir.display(),
                current_epoch = current,
                last_logged_zxid = format_args!("{last_logged:#x}"),
                "the log holds txns of an epoch newer than currentEpoch"
            );
        }

        let report = OpenReport {
            snapshot: loaded.snapshot,
            replayed: loaded.replayed,
            last_processed_zxid: loaded.tree.last_processed_zxid(),
            last_logged_zxid: last_logged,
            truncated_tail,
            skipped_snapshots: loaded.skipped,
            removed_temp_files,
            elapsed: started.elapsed(),
        };
        tracing::info!(
            dir = %dir.display(),
            snapshot = ?report.snapshot.as_ref().map(|s| s.zxid),
            replayed = report.replayed,
            last_processed_zxid = format_args!("{:#x}", report.last_processed_zxid),
            elapsed_ms = report.elapsed.as_millis() as u64,
            "database loaded"
        );
        Ok(Self {
            dir,
            options,
            log,
            epochs,
            snapshots,
            tree: loaded.tree,
            base_zxid: loaded.base_zxid,
            report,
            job: None,
            applied_since_snapshot: 0,
        })
    }

    /// Splits the opened database into its parts (after waiting for a background
    /// snapshot). The rules this type keeps (gap-free appends, apply only what is logged,
    /// sync before currentEpoch) are then the new owner's to keep.
    pub fn into_parts(mut self) -> DbParts {
        self.wait_snapshot_quietly();
        let ZkDatabase {
            log,
            epochs,
            snapshots,
            tree,
            base_zxid,
            report,
            ..
        } = self;
        DbParts {
            log,
            epochs,
            snapshots,
            tree,
            log_base: base_zxid,
            report,
        }
    }

    /// The database directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What [`open`](Self::open) found and did.
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    /// The tree.
    pub fn tree(&self) -> &DataTree {
        &self.tree
    }

    /// The zxid of the last txn applied to the tree.
    pub fn last_processed_zxid(&self) -> Zxid {
        self.tree.last_processed_zxid()
    }

    /// The zxid of the last logged txn (buffered or durable), or of the snapshot the log
    /// continues when that is newer: what the node reports in elections.
    pub fn last_logged_zxid(&self) -> Zxid {
        self.log
            .last_zxid()
            .ok()
            .flatten()
            .unwrap_or(0)
            .max(self.base_zxid)
    }

    /// The zxid up to which the log is durable.
    pub fn durable_zxid(&self) -> Zxid {
        self.log.durable_zxid().unwrap_or(0).max(self.base_zxid)
    }

    /// Txns applied since the last snapshot was started (for a `snapCount` policy).
    pub fn txns_since_snapshot(&self) -> u64 {
        self.applied_since_snapshot
    }

    /// The snapshot files (to stream one to a peer with [`SnapshotStore::chunks`]).
    pub fn snapshots(&self) -> &SnapshotStore {
        &self.snapshots
    }

    /// Log records from `from` on, verified, in zxid order (for a DIFF to a peer).
    pub fn log_from(&self, from: Zxid) -> Result<LogIter<'_>, DbError> {
        Ok(self.log.read_from(from)?)
    }

    // -- the log ------------------------------------------------------------------------

    /// Buffers a batch of encoded txns; each zxid must follow the previous one (the first
    /// must follow [`last_logged_zxid`](Self::last_logged_zxid)). Nothing is durable until
    /// [`sync`](Self::sync).
    pub fn append(&mut self, txns: &[(Zxid, &[u8])]) -> Result<(), DbError> {
        let mut prev = self.last_logged_zxid();
        for &(zxid, _) in txns {
            if !is_successor(prev, zxid) {
                return Err(DbError::OutOfSequence { last: prev, zxid });
            }
            prev = zxid;
        }
        self.log.append_batch(txns)?;
        Ok(())
    }

    /// Makes every appended txn durable with one flush and returns the durable zxid.
    pub fn sync(&mut self) -> Result<Zxid, DbError> {
        let durable = self.log.sync()?.unwrap_or(0);
        Ok(durable.max(self.base_zxid))
    }

    /// [`append`](Self::append) then [`sync`](Self::sync): one group commit.
    pub fn append_and_sync(&mut self, txns: &[(Zxid, &[u8])]) -> Result<Zxid, DbError> {
        self.append(txns)?;
        self.sync()
    }

    // -- applying -----------------------------------------------------------------------

    /// Applies one committed txn to the tree. It must be logged and be the next one after
    /// [`last_processed_zxid`](Self::last_processed_zxid).
    pub fn apply(&mut self, entry: &TxnEntry) -> Result<ApplyOutcome, DbError> {
        let zxid = entry.header.zxid;
        let applied = self.tree.last_processed_zxid();
        let logged = self.last_logged_zxid();
        if zxid > logged || !is_successor(applied, zxid) {
            return Err(DbError::ApplyOrder {
                applied,
                logged,
                zxid,
            });
        }
        self.applied_since_snapshot += 1;
        Ok(self.tree.apply(entry))
    }

    /// Applies the logged txns after [`last_processed_zxid`](Self::last_processed_zxid) up
    /// to and including `commit_zxid` (a follower's COMMIT), reading them from the log.
    pub fn apply_logged(&mut self, commit_zxid: Zxid) -> Result<Vec<ApplyOutcome>, DbError> {
        let logged = self.last_logged_zxid();
        if commit_zxid > logged {
            return Err(DbError::ApplyOrder {
                applied: self.tree.last_processed_zxid(),
                logged,
                zxid: commit_zxid,
            });
        }
        let from = self.tree.last_processed_zxid().saturating_add(1);
        let path = self.log.path().to_path_buf();
        let mut entries = Vec::new();
        for record in self.log.read_from(from)? {
            let record = record.map_err(|e| corrupt(&path, e))?;
            if record.zxid > commit_zxid {
                break;
            }
            entries.push(decode_entry(&path, record.zxid, &record.payload)?);
        }
        let mut outcomes = Vec::with_capacity(entries.len());
        for entry in &entries {
            outcomes.push(self.apply(entry)?);
        }
        Ok(outcomes)
    }

    // -- truncation -----------------------------------------------------------------------

    /// ZooKeeper's TRUNC: removes every logged txn after `zxid`. If the tree had applied
    /// txns after it, snapshots newer than `zxid` are removed and the tree is reloaded from
    /// the newest remaining snapshot and the log. Refused (before anything is removed) when
    /// the disk cannot rebuild the state at `zxid`.
    pub fn truncate_after(&mut self, zxid: Zxid) -> Result<TruncateReport, DbError> {
        self.wait_snapshot_quietly();
        let mut report = TruncateReport::default();
        if zxid >= self.last_logged_zxid() {
            return Ok(report);
        }
        if self.tree.last_processed_zxid() <= zxid && self.base_zxid <= zxid {
            report.removed_records = self.log.truncate_after(zxid)?;
            return Ok(report);
        }
        // The tree must go back: check that some snapshot at or before `zxid`, or the log
        // from its very first txn, can rebuild it.
        let base = self
            .snapshots
            .list()?
            .into_iter()
            .filter(|f| f.zxid <= zxid)
            .find(|f| self.snapshots.verify(&f.path).is_ok())
            .map_or(0, |f| f.zxid);
        if base < zxid {
            let first = self.log.first_zxid()?;
            let covered = first.is_some_and(|f| f <= base || is_successor(base, f));
            if !covered {
                return Err(DbError::CannotTruncate {
                    zxid,
                    reason: format!(
                        "the newest snapshot at or before it is {base:#x} and the log starts at {}",
                        first.map_or("nothing".to_owned(), |f| format!("{f:#x}"))
                    ),
                });
            }
        }
        report.removed_snapshots = self.snapshots.remove_newer_than(zxid)?;
        report.removed_records = self.log.truncate_after(zxid)?;
        let loaded = load(&self.log, &self.snapshots)?;
        self.tree = loaded.tree;
        self.base_zxid = loaded.base_zxid;
        report.reloaded = true;
        Ok(report)
    }

    // -- snapshots ------------------------------------------------------------------------

    /// Starts writing a snapshot of the tree as it is now, on a background thread (the
    /// tree's view is copy-on-write, so applying goes on). Returns its zxid, or `None`
    /// when a snapshot is still being written.
    pub fn begin_snapshot(&mut self) -> Result<Option<Zxid>, DbError> {
        if let Some(job) = &self.job {
            if !job.is_finished() {
                return Ok(None);
            }
            if let Some(Err(e)) = self.poll_snapshot() {
                tracing::warn!(error = %e, "the previous background snapshot failed");
            }
        }
        let view = self.tree.snapshot_view();
        let zxid = self.tree.last_processed_zxid();
        let store = self.snapshots.clone();
        let handle = std::thread::Builder::new()
            .name(format!("zk-snapshot-{zxid:x}"))
            .spawn(move || store.write(zxid, |w| view.write_to(w).map(drop)))
            .map_err(|source| DbError::Io {
                path: self.dir.clone(),
                source,
            })?;
        self.job = Some(SnapshotJob {
            zxid,
            handle: Some(handle),
        });
        self.applied_since_snapshot = 0;
        Ok(Some(zxid))
    }

    /// The outcome of the background snapshot, once it has finished (`None` while it runs
    /// or when none was started).
    pub fn poll_snapshot(&mut self) -> Option<Result<SnapshotInfo, DbError>> {
        if self.job.as_ref()?.is_finished() {
            self.job.take().map(SnapshotJob::join)
        } else {
            None
        }
    }

    /// Waits for the background snapshot, if one was started.
    pub fn wait_snapshot(&mut self) -> Option<Result<SnapshotInfo, DbError>> {
        self.job.take().map(SnapshotJob::join)
    }

    fn wait_snapshot_quietly(&mut self) {
        if let Some(Err(e)) = self.wait_snapshot() {
            tracing::warn!(error = %e, "background snapshot failed");
        }
    }

    /// Writes a snapshot now and waits for it (after any background one).
    pub fn snapshot(&mut self) -> Result<SnapshotInfo, DbError> {
        self.wait_snapshot_quietly();
        self.begin_snapshot()?;
        self.wait_snapshot().unwrap_or(Err(DbError::SnapshotThread {
            zxid: self.tree.last_processed_zxid(),
        }))
    }

    /// Keeps the newest [`DbOptions::snap_retain_count`] valid snapshots, removes older
    /// ones and every log record before the oldest retained snapshot.
    pub fn purge(&mut self) -> Result<PurgeReport, DbError> {
        let purge = self.snapshots.purge(self.options.snap_retain_count)?;
        let removed_records = match purge.oldest_retained() {
            Some(oldest) => self.log.purge_before(oldest)?,
            None => 0,
        };
        Ok(PurgeReport {
            retained_snapshots: purge.retained,
            removed_snapshots: purge.removed,
            removed_records,
        })
    }

    /// Installs a snapshot sent by the leader (SNAP): `chunks` are the bytes of its snapshot
    /// file. It is verified before anything changes; then log records and snapshots after
    /// its zxid are removed, it is made visible, the log before it is cleared, and the tree
    /// is loaded from it.
    pub fn install_snapshot<I, E>(&mut self, zxid: Zxid, chunks: I) -> Result<SnapshotInfo, DbError>
    where
        I: IntoIterator<Item = Result<Vec<u8>, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        self.wait_snapshot_quietly();
        let staged = self.snapshots.receive_staged(Some(zxid), chunks)?;
        // Load it before anything changes, so that a tree this code cannot read leaves the
        // database as it was.
        let tree = load_snapshot(&self.snapshots, staged.staged_path(), zxid)?;
        // Nothing after the leader's state may survive: neither log records nor snapshots.
        self.snapshots.remove_newer_than(zxid)?;
        self.log.truncate_after(zxid)?;
        let info = staged.commit()?;
        // Records up to the snapshot are covered by it (and may be from another history).
        self.log.truncate_after(-1)?;
        self.tree = tree;
        self.base_zxid = zxid;
        self.applied_since_snapshot = 0;
        Ok(info)
    }

    // -- epochs ---------------------------------------------------------------------------

    /// The stored acceptedEpoch.
    pub fn accepted_epoch(&self) -> i64 {
        self.epochs.accepted_epoch().unwrap_or(0)
    }

    /// The stored currentEpoch.
    pub fn current_epoch(&self) -> i64 {
        self.epochs.current_epoch().unwrap_or(0)
    }

    /// Durably sets acceptedEpoch (it never goes down).
    pub fn set_accepted_epoch(&mut self, epoch: i64) -> Result<(), DbError> {
        Ok(self.epochs.set_accepted_epoch(epoch)?)
    }

    /// Durably sets currentEpoch, after making every appended txn durable (the txns
    /// received during sync must be on disk before NEWLEADER is acknowledged).
    pub fn set_current_epoch(&mut self, epoch: i64) -> Result<(), DbError> {
        self.log.sync()?;
        Ok(self.epochs.set_current_epoch(epoch)?)
    }
}

/// Removes the last record if it fails its checksum (a torn write), with a warning.
fn truncate_torn_tail(log: &mut SledTxnLog) -> Result<Option<Zxid>, DbError> {
    let Some(last) = log.last_zxid()? else {
        return Ok(None);
    };
    match log.get(last) {
        Ok(_) => Ok(None),
        Err(LogError::Corrupt { reason, .. }) => {
            tracing::warn!(
                path = %log.path().display(),
                zxid = format_args!("{last:#x}"),
                %reason,
                "the last txn log record is torn; removing it"
            );
            log.truncate_after(last.saturating_sub(1))?;
            Ok(Some(last))
        }
        Err(e) => Err(e.into()),
    }
}

fn corrupt(path: &Path, e: LogError) -> DbError {
    match e {
        LogError::Corrupt { zxid, reason, .. } => DbError::CorruptLog {
            path: path.to_path_buf(),
            zxid,
            reason,
        },
        other => DbError::Log(other),
    }
}

fn decode_entry(path: &Path, zxid: Zxid, payload: &[u8]) -> Result<TxnEntry, DbError> {
    let entry = TxnEntry::decode(payload).map_err(|e| DbError::BadTxn {
        path: path.to_path_buf(),
        zxid,
        reason: e.to_string(),
    })?;
    if entry.header.zxid != zxid {
        return Err(DbError::BadTxn {
            path: path.to_path_buf(),
            zxid,
            reason: format!("its header says zxid {:#x}", entry.header.zxid),
        });
    }
    Ok(entry)
}

/// Reads the tree from a snapshot file and checks that it is at `zxid`.
fn load_snapshot(store: &SnapshotStore, path: &Path, zxid: Zxid) -> Result<DataTree, DbError> {
    let mut reader = store.open_reader(path)?;
    let tree = DataTree::read_from(&mut reader).map_err(|source| match source {
        TreeSnapshotError::Io(e) => match e.downcast::<SnapshotError>() {
            Ok(snap) => DbError::Snapshot(snap),
            Err(e) => DbError::TreeSnapshot {
                path: path.to_path_buf(),
                source: TreeSnapshotError::Io(e),
            },
        },
        source => DbError::TreeSnapshot {
            path: path.to_path_buf(),
            source,
        },
    })?;
    reader.finish()?;
    if tree.last_processed_zxid() != zxid {
        return Err(DbError::Snapshot(SnapshotError::Invalid {
            location: path.display().to_string(),
            reason: format!(
                "the tree inside is at zxid {:#x}",
                tree.last_processed_zxid()
            ),
        }));
    }
    Ok(tree)
}

/// Loads the newest snapshot that verifies and loads, then replays the log after it.
fn load(log: &SledTxnLog, snapshots: &SnapshotStore) -> Result<Loaded, DbError> {
    let mut skipped = Vec::new();
    let mut found = None;
    for file in snapshots.list()? {
        let attempt = snapshots
            .verify(&file.path)
            .map_err(DbError::from)
            .and_then(|info| Ok((load_snapshot(snapshots, &info.path, info.zxid)?, info)));
        match attempt {
            Ok(loaded) => {
                found = Some(loaded);
                break;
            }
            Err(e) => {
                tracing::warn!(path = %file.path.display(), error = %e, "skipping snapshot");
                skipped.push(file.path);
            }
        }
    }
    let (mut tree, snapshot) = match found {
        Some((tree, info)) => (tree, Some(info)),
        None => (DataTree::new(), None),
    };
    let base_zxid = snapshot.as_ref().map_or(0, |s| s.zxid);
    let path = log.path();
    let mut prev = base_zxid;
    let mut replayed = 0u64;
    for record in log.read_from(base_zxid.saturating_add(1))? {
        let record = record.map_err(|e| corrupt(path, e))?;
        if !is_successor(prev, record.zxid) {
            return Err(DbError::LogGap {
                path: path.to_path_buf(),
                prev,
                zxid: record.zxid,
            });
        }
        let entry = decode_entry(path, record.zxid, &record.payload)?;
        tree.apply(&entry);
        prev = record.zxid;
        replayed += 1;
    }
    Ok(Loaded {
        tree,
        base_zxid,
        snapshot,
        skipped,
        replayed,
    })
}
