//! One test suite that every [`TxnLog`] and [`EpochStore`] implementation must pass
//! (the idea of openraft's `testing/log/suite.rs`).
//!
//! Each function runs every case on fresh stores made by the caller's factory, and panics
//! with a message naming the case on the first failure. The crate runs it for
//! [`MemTxnLog`](super::MemTxnLog) and [`SledTxnLog`](super::SledTxnLog); an implementation
//! elsewhere (say, a log over another engine) should call it from its own tests.
//!
//! ```
//! use zk_storage::log::{MemEpochStore, MemTxnLog, suite};
//!
//! suite::txn_log_suite(MemTxnLog::new);
//! suite::epoch_store_suite(MemEpochStore::new);
//! ```

use zk_proto::zxid::{Zxid, make};

use super::record::encode_record;
use super::{EpochStore, LogError, LogRecord, RawRecordAccess, TxnLog};

type Case<L> = (&'static str, fn(&mut L) -> Result<(), LogError>);
type EpochStep<E> = (&'static str, fn(&mut E) -> bool);

/// Runs every txn log case, each on a fresh log from `new_log`.
///
/// # Panics
///
/// On the first failing case, with its name.
pub fn txn_log_suite<L: TxnLog + RawRecordAccess>(mut new_log: impl FnMut() -> L) {
    let cases: &[Case<L>] = &[
        ("empty_log", empty_log),
        (
            "append_is_buffered_until_sync",
            append_is_buffered_until_sync,
        ),
        ("one_sync_covers_a_batch", one_sync_covers_a_batch),
        ("rejects_non_increasing", rejects_non_increasing),
        ("rejects_invalid_zxids", rejects_invalid_zxids),
        ("failed_batch_buffers_nothing", failed_batch_buffers_nothing),
        ("read_from_and_get", read_from_and_get),
        ("across_epochs", across_epochs),
        ("truncate_after", truncate_after),
        ("truncate_everything", truncate_everything),
        ("append_after_truncate", append_after_truncate),
        ("purge_before", purge_before),
        ("corrupt_record_is_named", corrupt_record_is_named),
        ("moved_record_is_detected", moved_record_is_detected),
        ("empty_payloads", empty_payloads),
    ];
    for (name, case) in cases {
        let mut log = new_log();
        if let Err(e) = case(&mut log) {
            panic!("txn log suite case `{name}` failed with an error: {e}");
        }
    }
}

macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        assert!($cond, $($msg)+)
    };
}

fn payload(zxid: Zxid) -> Vec<u8> {
    format!("txn-{zxid:x}").into_bytes()
}

fn append_range<L: TxnLog>(log: &mut L, zxids: &[Zxid]) -> Result<(), LogError> {
    let payloads: Vec<Vec<u8>> = zxids.iter().map(|z| payload(*z)).collect();
    let batch: Vec<(Zxid, &[u8])> = zxids
        .iter()
        .zip(&payloads)
        .map(|(z, p)| (*z, p.as_slice()))
        .collect();
    log.append_batch(&batch)
}

fn all<L: TxnLog>(log: &L, from: Zxid) -> Result<Vec<LogRecord>, LogError> {
    log.read_from(from)?.collect()
}

fn zxids_of(records: &[LogRecord]) -> Vec<Zxid> {
    records.iter().map(|r| r.zxid).collect()
}

fn empty_log<L: TxnLog>(log: &mut L) -> Result<(), LogError> {
    check!(log.last_zxid()?.is_none(), "an empty log has no last zxid");
    check!(
        log.first_zxid()?.is_none(),
        "an empty log has no first zxid"
    );
    check!(
        log.durable_zxid().is_none(),
        "an empty log has no durable zxid"
    );
    check!(log.get(1)?.is_none(), "get on an empty log");
    check!(all(log, 0)?.is_empty(), "read_from on an empty log");
    check!(log.sync()?.is_none(), "sync of an empty log returns None");
    Ok(())
}

fn append_is_buffered_until_sync<L: TxnLog>(log: &mut L) -> Result<(), LogError> {
    log.append(1, b"a")?;
    log.append(2, b"b")?;
    check!(
        log.last_zxid()? == Some(2),
        "last zxid includes buffered records"
    );
    check!(
        log.durable_zxid().is_none(),
        "nothing is durable before sync"
    );
    check!(
        zxids_of(&all(log, 0)?) == vec![1, 2],
        "reads see buffered records"
    );
    check!(log.sync()? == Some(2), "sync returns the durable last zxid");
    check!(log.durable_zxid() == Some(2), "durable after sync");
    log.append(3, b"c")?;
    check!(
        log.durable_zxid() == Some(2),
        "a later append does not move the durable zxid"
    );
    Ok(())
}

fn one_sync_covers_a_batch<L: TxnLog>(log: &mut L) -> Result<(), LogError> {
    let zxids: Vec<Zxid> = (1..=256).collect();
    append_range(log, &zxids)?;
    check!(log.sync()? == Some(256), "one sync for 256 records");
    let back = all(log, 0)?;
    check!(
        zxids_of(&back) == zxids,
        "every record of the batch is there"
    );
    check!(
        back.iter().all(|r| r.payload == payload(r.zxid)),
        "payloads come back unchanged"
    );
    Ok(())
}

fn rejects_non_increasing<L: TxnLog>(log: &mut L) -> Result<(), LogError> {
    append_range(log, &[5, 6])?;
    check!(
        matches!(
            log.append(6, b"dup"),
            Err(LogError::NotIncreasing {
                last: 6,
                zxid: 6,
                ..
            })
        ),
        "an equal zxid is refused"
    );
    check!(
        matches!(log.append(3, b"old"), Err(LogError::NotIncreasing { .. })),
        "a lower zxid is refused"
    );
    check!(
        matches!(
            append_range(log, &[8, 7]),
            Err(LogError::NotIncreasing { .. })
        ),
        "a batch out of order is refused"
    );
    check!(log.last_zxid()? == Some(6), "refusals change nothing");
    Ok(())
}

fn rejects_invalid_zxids<L: TxnLog>(log: &mut L) -> Result<(), LogError> {
    for bad in [0, -1, make(2, 0)] {
        check!(
            matches!(
                log.append(bad, b"x"),
                Err(LogError::InvalidZxid { zxid, .. }) if zxid == bad
            ),
            "zxid {bad:#x} must be refused"
        );
    }
    check!(log.last_zxid()?.is_none(), "nothing was logged");
    Ok(())
}

fn failed_batch_buffers_nothing<L: TxnLog>(log: &mut L) -> Result<(), LogError> {
    append_range(log, &[1])?;
    check!(
        append_range(log, &[2, 3, 3]).is_err(),
        "a batch with a duplicate is refused"
    );
    check!(
        zxids_of(&all(log, 0)?) == vec![1],
        "a refused batch leaves no record behind"
    );
    log.append_batch(&[])?;
    check!(
        log.last_zxid()? == Some(1),
        "an empty batch changes nothing"
    );
    Ok(())
}

fn read_from_and_get<L: TxnLog>(log: &mut L) -> Result<(), LogError> {
    append_range(log, &[1, 2, 3, 4, 5])?;
    log.sync()?;
    check!(
        zxids_of(&all(log, 3)?) == vec![3, 4, 5],
        "read from the middle"
    );
    check!(
        zxids_of(&all(log, -7)?) == vec![1, 2, 3, 4, 5],
        "read from below"
    );
    check!(all(log, 6)?.is_empty(), "read from past the end");
    check!(
        log.get(4)?
            == Some(LogRecord {
                zxid: 4,
                payload: payload(4)
            }),
        "get an existing record"
    );
    check!(log.get(9)?.is_none(), "get a missing record");
    check!(log.first_zxid()? == Some(1), "first zxid");
    Ok(())
}

fn across_epochs<L: TxnLog>(log: &mut L) -> Result<(), LogError> {
    let zxids = [make(1, 1), make(1, 2), make(2, 1), make(7, 1), make(7, 2)];
    append_range(log, &zxids)?;
    log.sync()?;
    check!(
        zxids_of(&all(log, 0)?) == zxids,
        "zxid order across epochs is key order"
    );
    check!(
        zxids_of(&all(log, make(2, 0))?) == zxids[2..],
        "read from an epoch start"
    );
    check!(
        log.last_zxid()? == Some(make(7, 2)),
        "last zxid across epochs"
    );
    Ok(())
}

fn truncate_after<L: TxnLog>(log: &mut L) -> Result<(), LogError> {
    append_range(log, &[1, 2, 3, 4, 5])?;
    log.sync()?;
    check!(log.truncate_after(3)? == 2, "two records removed");
    check!(
        zxids_of(&all(log, 0)?) == vec![1, 2, 3],
        "records after 3 are gone"
    );
    check!(log.last_zxid()? == Some(3), "last zxid after truncate");
    check!(log.durable_zxid() == Some(3), "truncate is durable");
    check!(
        log.truncate_after(3)? == 0,
        "truncating again removes nothing"
    );
    check!(
        log.truncate_after(10)? == 0,
        "truncating past the end removes nothing"
    );
    log.append(Zxid::MAX, b"last possible")?;
    check!(
        log.truncate_after(Zxid::MAX)? == 0,
        "nothing is after the largest zxid"
    );
    check!(
        log.last_zxid()? == Some(Zxid::MAX),
        "the largest zxid stays"
    );
    Ok(())
}

fn truncate_everything<L: TxnLog>(log: &mut L) -> Result<(), LogError> {
    append_range(log, &[make(1, 1), make(1, 2)])?;
    check!(
        log.truncate_after(make(1, 0))? == 2,
        "truncate to the epoch start"
    );
    check!(log.last_zxid()?.is_none(), "log is empty");
    append_range(log, &[3, 4])?;
    check!(
        log.truncate_after(-1)? == 2,
        "truncate after -1 clears the log"
    );
    check!(all(log, 0)?.is_empty(), "log is empty again");
    Ok(())
}

fn append_after_truncate<L: TxnLog>(log: &mut L) -> Result<(), LogError> {
    append_range(log, &[make(1, 1), make(1, 2), make(1, 3)])?;
    log.sync()?;
    log.truncate_after(make(1, 1))?;
    log.append(make(2, 1), b"new epoch")?;
    check!(log.sync()? == Some(make(2, 1)), "append after truncate");
    check!(
        zxids_of(&all(log, 0)?) == vec![make(1, 1), make(2, 1)],
        "the log holds the kept prefix and the new record"
    );
    check!(
        log.get(make(2, 1))?.map(|r| r.payload) == Some(b"new epoch".to_vec()),
        "new payload"
    );
    Ok(())
}

fn purge_before<L: TxnLog>(log: &mut L) -> Result<(), LogError> {
    append_range(log, &[1, 2, 3, 4, 5])?;
    check!(log.purge_before(3)? == 2, "records 1 and 2 are purged");
    check!(log.first_zxid()? == Some(3), "first zxid after purge");
    check!(log.durable_zxid() == Some(5), "purge makes the log durable");
    check!(
        log.purge_before(0)? == 0,
        "purging before 0 removes nothing"
    );
    check!(
        log.purge_before(100)? == 3,
        "purging past the end empties the log"
    );
    check!(log.last_zxid()?.is_none(), "log is empty");
    Ok(())
}

fn corrupt_record_is_named<L: TxnLog + RawRecordAccess>(log: &mut L) -> Result<(), LogError> {
    append_range(log, &[1, 2, 3])?;
    log.sync()?;
    let mut bad = encode_record(2, &payload(2));
    if let Some(b) = bad.last_mut() {
        *b ^= 0x40;
    }
    log.put_raw_for_test(2, bad)?;
    check!(
        log.get(2).err().and_then(|e| e.corrupt_zxid()) == Some(2),
        "get reports the corrupt zxid"
    );
    let items: Vec<Result<LogRecord, LogError>> = log.read_from(0)?.collect();
    check!(items.len() == 3, "the iterator yields every record");
    check!(
        matches!(&items[0], Ok(r) if r.zxid == 1),
        "the record before is fine"
    );
    check!(
        matches!(&items[1], Err(LogError::Corrupt { zxid: 2, .. })),
        "the corrupt record is an error naming its zxid"
    );
    check!(
        matches!(&items[2], Ok(r) if r.zxid == 3),
        "the record after is fine"
    );
    log.put_raw_for_test(3, vec![1, 2])?;
    check!(
        log.get(3).err().and_then(|e| e.corrupt_zxid()) == Some(3),
        "a value shorter than the checksum is corrupt"
    );
    Ok(())
}

fn moved_record_is_detected<L: TxnLog + RawRecordAccess>(log: &mut L) -> Result<(), LogError> {
    append_range(log, &[1])?;
    log.put_raw_for_test(2, encode_record(1, &payload(1)))?;
    check!(
        log.get(2).err().and_then(|e| e.corrupt_zxid()) == Some(2),
        "a value stored under another zxid fails its checksum"
    );
    Ok(())
}

fn empty_payloads<L: TxnLog>(log: &mut L) -> Result<(), LogError> {
    log.append_batch(&[(1, b""), (2, b"")])?;
    log.sync()?;
    check!(
        all(log, 0)?.iter().all(|r| r.payload.is_empty()),
        "empty payloads round-trip"
    );
    Ok(())
}

/// Runs every epoch store case, each on a fresh store from `new_store`.
///
/// # Panics
///
/// On the first failing case, with its name.
pub fn epoch_store_suite<E: EpochStore>(mut new_store: impl FnMut() -> E) {
    let s = new_store();
    assert_eq!(
        s.accepted_epoch(),
        None,
        "a fresh store has no acceptedEpoch"
    );
    assert_eq!(s.current_epoch(), None, "a fresh store has no currentEpoch");

    let mut s = new_store();
    assert!(
        s.set_current_epoch(0).is_err(),
        "currentEpoch cannot be set before acceptedEpoch"
    );
    assert!(
        s.set_accepted_epoch(-1).is_err(),
        "negative epochs are refused"
    );

    let mut s = new_store();
    let steps: [EpochStep<E>; 9] = [
        ("accept 1", |s| s.set_accepted_epoch(1).is_ok()),
        ("current 1", |s| s.set_current_epoch(1).is_ok()),
        ("accept 1 again", |s| s.set_accepted_epoch(1).is_ok()),
        ("accept 3", |s| s.set_accepted_epoch(3).is_ok()),
        ("current 4 > accepted is refused", |s| {
            s.set_current_epoch(4).is_err()
        }),
        ("accept 2 < 3 is refused", |s| {
            s.set_accepted_epoch(2).is_err()
        }),
        ("current 3", |s| s.set_current_epoch(3).is_ok()),
        ("current 2 < 3 is refused", |s| {
            s.set_current_epoch(2).is_err()
        }),
        ("current -1 is refused", |s| {
            s.set_current_epoch(-1).is_err()
        }),
    ];
    for (name, step) in steps {
        assert!(step(&mut s), "epoch store suite step `{name}` failed");
    }
    assert_eq!(s.accepted_epoch(), Some(3), "acceptedEpoch after the steps");
    assert_eq!(s.current_epoch(), Some(3), "currentEpoch after the steps");
}

#[cfg(test)]
mod tests {
    use super::super::{MemEpochStore, MemTxnLog};
    use super::*;

    #[test]
    fn mem_log_passes_the_suite() {
        txn_log_suite(MemTxnLog::new);
    }

    #[test]
    fn mem_epochs_pass_the_suite() {
        epoch_store_suite(MemEpochStore::new);
    }
}
