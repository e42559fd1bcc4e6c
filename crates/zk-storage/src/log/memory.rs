//! The in-memory txn log, for simulations and tests.

use std::collections::BTreeMap;
use std::ops::Bound;

use zk_proto::zxid::Zxid;

use super::record::{decode_record, encode_record};
use super::{LogError, LogIter, LogRecord, RawRecordAccess, TxnLog, check_batch};

/// A [`TxnLog`] held in memory. It models a disk: records appended since the last
/// [`sync`](TxnLog::sync) are lost by [`crash`](MemTxnLog::crash), so a simulation can
/// check that nothing is acknowledged before it is durable.
#[derive(Debug, Clone, Default)]
pub struct MemTxnLog {
    /// Stored values (checksum + payload), exactly as the sled log stores them.
    records: BTreeMap<Zxid, Vec<u8>>,
    durable: Option<Zxid>,
    syncs: u64,
}

const LOCATION: &str = "memory";

fn location() -> String {
    LOCATION.to_owned()
}

impl MemTxnLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Simulates a power loss: drops every record that was not made durable by a `sync`.
    /// Returns how many records were lost.
    pub fn crash(&mut self) -> u64 {
        let lost = match self.durable {
            Some(d) => self.records.split_off(&d.saturating_add(1)),
            None => std::mem::take(&mut self.records),
        };
        lost.len() as u64
    }

    /// How many times [`sync`](TxnLog::sync) flushed (for tests of group commit).
    pub fn sync_count(&self) -> u64 {
        self.syncs
    }

    /// Number of records held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when the log holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn decode(zxid: Zxid, value: &[u8]) -> Result<LogRecord, LogError> {
        decode_record(zxid, value)
            .map(|payload| LogRecord {
                zxid,
                payload: payload.to_vec(),
            })
            .map_err(|reason| LogError::Corrupt {
                location: location(),
                zxid,
                reason,
            })
    }

    fn last(&self) -> Option<Zxid> {
        self.records.last_key_value().map(|(k, _)| *k)
    }
}

impl TxnLog for MemTxnLog {
    fn append(&mut self, zxid: Zxid, payload: &[u8]) -> Result<(), LogError> {
        self.append_batch(&[(zxid, payload)])
    }

    fn append_batch(&mut self, records: &[(Zxid, &[u8])]) -> Result<(), LogError> {
        check_batch(&location, self.last(), records)?;
        for &(zxid, payload) in records {
            self.records.insert(zxid, encode_record(zxid, payload));
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<Option<Zxid>, LogError> {
        self.syncs += 1;
        self.durable = self.last();
        Ok(self.durable)
    }

    fn durable_zxid(&self) -> Option<Zxid> {
        self.durable
    }

    fn last_zxid(&self) -> Result<Option<Zxid>, LogError> {
        Ok(self.last())
    }

    fn first_zxid(&self) -> Result<Option<Zxid>, LogError> {
        Ok(self.records.first_key_value().map(|(k, _)| *k))
    }

    fn get(&self, zxid: Zxid) -> Result<Option<LogRecord>, LogError> {
        self.records
            .get(&zxid)
            .map(|v| Self::decode(zxid, v))
            .transpose()
    }

    fn read_from(&self, from: Zxid) -> Result<LogIter<'_>, LogError> {
        Ok(Box::new(
            self.records
                .range((Bound::Included(from), Bound::Unbounded))
                .map(|(zxid, value)| Self::decode(*zxid, value)),
        ))
    }

    fn truncate_after(&mut self, zxid: Zxid) -> Result<u64, LogError> {
        let removed = match zxid.checked_add(1) {
            _ if zxid < 0 => std::mem::take(&mut self.records),
            Some(first_removed) => self.records.split_off(&first_removed),
            None => BTreeMap::new(),
        };
        self.sync()?;
        Ok(removed.len() as u64)
    }

    fn purge_before(&mut self, zxid: Zxid) -> Result<u64, LogError> {
        let kept = self.records.split_off(&zxid);
        let removed = std::mem::replace(&mut self.records, kept);
        self.sync()?;
        Ok(removed.len() as u64)
    }

    fn location(&self) -> String {
        location()
    }
}

impl RawRecordAccess for MemTxnLog {
    fn put_raw_for_test(&mut self, zxid: Zxid, stored_value: Vec<u8>) -> Result<(), LogError> {
        self.records.insert(zxid, stored_value);
        Ok(())
    }
}
