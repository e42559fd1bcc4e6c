//! The durable txn log and the `acceptedEpoch` / `currentEpoch` store.
//!
//! Storage sits behind two small traits so that the Zab simulation can run on the
//! in-memory implementations while a real node runs on disk:
//!
//! * [`TxnLog`]: records keyed by zxid, each an opaque payload (an encoded
//!   `zk_proto::txn::TxnEntry`) protected by a crc32c over `zxid ‖ payload`.
//!   [`MemTxnLog`] keeps them in a `BTreeMap`; [`SledTxnLog`] keeps them in sled 0.34 under
//!   the big-endian zxid, so key order is zxid order.
//! * [`EpochStore`]: `acceptedEpoch` and `currentEpoch` with the rule
//!   `currentEpoch ≤ acceptedEpoch`. [`MemEpochStore`] and [`FileEpochStore`] (ZooKeeper's two
//!   decimal files, written atomically by tmp + fsync + rename + directory fsync).
//!
//! Both pairs pass the same test suite, [`suite`].
//!
//! # Durability
//!
//! [`TxnLog::append`] and [`TxnLog::append_batch`] only buffer: nothing may be acknowledged
//! until [`TxnLog::sync`] has returned a durable zxid at least as high. One `sync` covers
//! every record appended before it, which is the group commit a driver pipelines: append
//! many, sync once, then ACK them all. [`TxnLog::truncate_after`] and
//! [`TxnLog::purge_before`] are durable when they return.
//!
//! # Blocking
//!
//! Every method blocks on disk I/O (`sync` ends in an `fdatasync`). Async callers run the
//! log on a storage thread or in `tokio::task::spawn_blocking`. sled's own `flush_async` is
//! not offered: on Linux it is not a durable flush by itself (see [`SledTxnLog`]).
//!
//! ```
//! use zk_storage::log::{MemTxnLog, TxnLog};
//!
//! # fn main() -> Result<(), zk_storage::log::LogError> {
//! let mut log = MemTxnLog::new();
//! log.append_batch(&[(1, b"first".as_slice()), (2, b"second".as_slice())])?;
//! assert_eq!(log.durable_zxid(), None); // buffered, not acknowledged yet
//! assert_eq!(log.sync()?, Some(2)); // one flush for the whole batch
//! let zxids: Vec<i64> = log
//!     .read_from(2)?
//!     .map(|r| r.map(|rec| rec.zxid))
//!     .collect::<Result<_, _>>()?;
//! assert_eq!(zxids, vec![2]);
//! # Ok(()) }
//! ```

mod epoch;
mod memory;
mod record;
mod sled_log;
pub mod suite;

pub use epoch::{EpochError, EpochStore, FileEpochStore, MemEpochStore};
pub use memory::MemTxnLog;
pub use record::{RECORD_HEADER_LEN, decode_record, encode_record, record_crc};
pub use sled_log::{RECORDS_TREE as SLED_RECORDS_TREE, SledLogOptions, SledTxnLog};

use zk_proto::zxid::{Zxid, counter_of, epoch_of};

/// One record of the txn log: its zxid and the opaque payload (an encoded txn).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// The zxid the record is stored under.
    pub zxid: Zxid,
    /// The payload exactly as it was appended.
    pub payload: Vec<u8>,
}

/// A forward iterator over log records; each item is checked against its checksum.
pub type LogIter<'a> = Box<dyn Iterator<Item = Result<LogRecord, LogError>> + Send + 'a>;

/// Errors of the txn log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// sled reported an error (I/O, or its own corruption detection).
    #[error("txn log {location}: storage error: {source}")]
    Sled {
        /// Where the log lives.
        location: String,
        /// sled's error.
        #[source]
        source: sled::Error,
    },
    /// An append whose zxid is not greater than the last logged zxid.
    #[error("txn log {location}: zxid {zxid:#x} is not after the last logged zxid {last:#x}")]
    NotIncreasing {
        /// Where the log lives.
        location: String,
        /// The last zxid already in the log.
        last: Zxid,
        /// The zxid that was appended.
        zxid: Zxid,
    },
    /// A zxid that can never be logged (negative, or the `counter == 0` marker of an epoch).
    #[error("txn log {location}: {zxid:#x} is not a valid txn zxid")]
    InvalidZxid {
        /// Where the log lives.
        location: String,
        /// The rejected zxid.
        zxid: Zxid,
    },
    /// A stored record failed verification (checksum, length or key).
    #[error("txn log {location}: record {zxid:#x} is corrupt: {reason}")]
    Corrupt {
        /// Where the log lives.
        location: String,
        /// The zxid of the corrupt record.
        zxid: Zxid,
        /// What failed.
        reason: String,
    },
    /// The store holds something this code does not understand (another format version,
    /// or a key that is not an 8-byte zxid).
    #[error("txn log {location}: {reason}")]
    Format {
        /// Where the log lives.
        location: String,
        /// What is wrong.
        reason: String,
    },
}

impl LogError {
    /// The zxid of the corrupt record, when this error is a corruption.
    pub fn corrupt_zxid(&self) -> Option<Zxid> {
        match self {
            LogError::Corrupt { zxid, .. } => Some(*zxid),
            _ => None,
        }
    }
}

/// An ordered, checksummed log of txns keyed by zxid.
///
/// Records are appended with strictly increasing zxids. Reads see every appended record,
/// durable or not; [`durable_zxid`](TxnLog::durable_zxid) says how far the log is on disk.
pub trait TxnLog {
    /// Buffers one record. It is durable only after a later [`sync`](TxnLog::sync).
    fn append(&mut self, zxid: Zxid, payload: &[u8]) -> Result<(), LogError>;

    /// Buffers a batch of records (zxids strictly increasing and above the last one).
    /// Either every record of the batch is buffered or, on error, none is.
    fn append_batch(&mut self, records: &[(Zxid, &[u8])]) -> Result<(), LogError>;

    /// Makes every record appended so far durable with one flush (fsync) and returns the
    /// durable last zxid (`None` for an empty log).
    fn sync(&mut self) -> Result<Option<Zxid>, LogError>;

    /// The zxid up to which the log is known to be on disk.
    fn durable_zxid(&self) -> Option<Zxid>;

    /// The zxid of the last record (buffered or durable), if any.
    fn last_zxid(&self) -> Result<Option<Zxid>, LogError>;

    /// The zxid of the first record, if any.
    fn first_zxid(&self) -> Result<Option<Zxid>, LogError>;

    /// Reads one record, verifying its checksum.
    fn get(&self, zxid: Zxid) -> Result<Option<LogRecord>, LogError>;

    /// Iterates over the records with `zxid >= from`, in zxid order, verifying each.
    fn read_from(&self, from: Zxid) -> Result<LogIter<'_>, LogError>;

    /// Removes every record with a zxid greater than `zxid` (ZooKeeper's TRUNC) and makes
    /// the log durable. Returns how many records were removed.
    fn truncate_after(&mut self, zxid: Zxid) -> Result<u64, LogError>;

    /// Removes every record with a zxid less than `zxid` (purge of records no snapshot
    /// needs) and makes the log durable. Returns how many records were removed.
    fn purge_before(&mut self, zxid: Zxid) -> Result<u64, LogError>;

    /// A human-readable location for messages (a path, or `memory`).
    fn location(&self) -> String;
}

/// True when `next` may directly follow `prev` in a log: the next counter of the same
/// epoch, or the first txn (`counter == 1`) of a later epoch.
///
/// ```
/// use zk_proto::zxid::make;
/// use zk_storage::log::is_successor;
///
/// assert!(is_successor(make(1, 7), make(1, 8)));
/// assert!(is_successor(make(1, 7), make(3, 1)));
/// assert!(!is_successor(make(1, 7), make(1, 9)));
/// assert!(!is_successor(make(1, 7), make(2, 2)));
/// ```
pub fn is_successor(prev: Zxid, next: Zxid) -> bool {
    next == prev.wrapping_add(1) && epoch_of(next) == epoch_of(prev)
        || epoch_of(next) > epoch_of(prev) && counter_of(next) == 1
}

/// Checks that a zxid may be stored: positive and not an epoch's `counter == 0` marker.
pub(crate) fn check_zxid(location: impl FnOnce() -> String, zxid: Zxid) -> Result<(), LogError> {
    if zxid <= 0 || counter_of(zxid) == 0 {
        return Err(LogError::InvalidZxid {
            location: location(),
            zxid,
        });
    }
    Ok(())
}

/// Checks a batch: valid zxids, strictly increasing, all above `last`.
pub(crate) fn check_batch(
    location: &dyn Fn() -> String,
    last: Option<Zxid>,
    records: &[(Zxid, &[u8])],
) -> Result<(), LogError> {
    let mut prev = last;
    for &(zxid, _) in records {
        check_zxid(location, zxid)?;
        if let Some(p) = prev
            && zxid <= p
        {
            return Err(LogError::NotIncreasing {
                location: location(),
                last: p,
                zxid,
            });
        }
        prev = Some(zxid);
    }
    Ok(())
}

/// Test hook shared by both logs: writes a raw stored value (checksum + payload) under a
/// zxid without computing its checksum, durably, so tests can plant corrupt records.
/// Production code never calls it.
pub trait RawRecordAccess {
    /// Stores `stored_value` as the raw value of `zxid`.
    fn put_raw_for_test(&mut self, zxid: Zxid, stored_value: Vec<u8>) -> Result<(), LogError>;
}
