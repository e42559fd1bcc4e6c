//! The sled txn log and the file epoch store: the shared suite, plus what only a disk
//! store can show (reopen, corruption planted through sled, epoch files).

use anyhow::Result;
use zk_proto::zxid::make;
use zk_storage::log::{
    EpochError, EpochStore, FileEpochStore, LogError, SledLogOptions, SledTxnLog, TxnLog, suite,
};

fn options() -> SledLogOptions {
    SledLogOptions {
        cache_capacity_bytes: 4 * 1024 * 1024,
    }
}

/// Opens sled directly, waiting while the dropped log's threads still hold its lock.
fn open_sled(path: &std::path::Path) -> Result<sled::Db> {
    for _ in 0..300 {
        match sled::open(path) {
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return Ok(other?),
        }
    }
    anyhow::bail!("sled lock on {} still held after 3 s", path.display())
}

#[test]
fn sled_log_passes_the_suite() {
    let mut dirs = Vec::new();
    suite::txn_log_suite(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = SledTxnLog::open(dir.path().join("log"), options()).expect("open sled log");
        dirs.push(dir);
        log
    });
}

#[test]
fn file_epochs_pass_the_suite() {
    let mut dirs = Vec::new();
    suite::epoch_store_suite(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FileEpochStore::open(dir.path()).expect("open epoch store");
        dirs.push(dir);
        store
    });
}

#[test]
fn synced_records_survive_reopen() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("log");
    {
        let mut log = SledTxnLog::open(&path, options())?;
        let batch: Vec<(i64, Vec<u8>)> = (1..=100).map(|z| (z, vec![z as u8; 100])).collect();
        let refs: Vec<(i64, &[u8])> = batch.iter().map(|(z, p)| (*z, p.as_slice())).collect();
        log.append_batch(&refs)?;
        assert_eq!(log.sync()?, Some(100));
        log.append_batch(&[(make(1, 1), b"epoch one".as_slice())])?;
        log.sync()?;
    }
    let log = SledTxnLog::open(&path, options())?;
    assert_eq!(log.last_zxid()?, Some(make(1, 1)));
    assert_eq!(log.durable_zxid(), Some(make(1, 1)));
    assert_eq!(log.first_zxid()?, Some(1));
    let records: Vec<_> = log.read_from(0)?.collect::<Result<_, _>>()?;
    assert_eq!(records.len(), 101);
    assert!(
        records[..100]
            .iter()
            .all(|r| r.payload == vec![r.zxid as u8; 100])
    );
    assert_eq!(records[100].payload, b"epoch one");
    Ok(())
}

#[test]
fn truncate_and_purge_survive_reopen() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("log");
    {
        let mut log = SledTxnLog::open(&path, options())?;
        for z in 1..=10 {
            log.append(z, &[z as u8])?;
        }
        log.sync()?;
        assert_eq!(log.truncate_after(7)?, 3);
        assert_eq!(log.purge_before(3)?, 2);
        // No sync: truncate and purge are durable on their own.
    }
    let log = SledTxnLog::open(&path, options())?;
    let zxids: Vec<i64> = log
        .read_from(0)?
        .map(|r| r.map(|r| r.zxid))
        .collect::<Result<_, _>>()?;
    assert_eq!(zxids, vec![3, 4, 5, 6, 7]);
    Ok(())
}

#[test]
fn bad_value_written_through_sled_is_reported_after_reopen() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("log");
    {
        let mut log = SledTxnLog::open(&path, options())?;
        for z in 1..=3 {
            log.append(z, b"payload")?;
        }
        log.sync()?;
    }
    {
        // Plant a bad value with sled directly, under the documented layout.
        let db = open_sled(&path)?;
        let tree = db.open_tree(zk_storage::log::SLED_RECORDS_TREE)?;
        tree.insert(2i64.to_be_bytes(), b"\0\0\0\0payload".to_vec())?;
        db.flush()?;
    }
    let log = SledTxnLog::open(&path, options())?;
    let err = log.get(2).expect_err("record 2 is corrupt");
    assert_eq!(err.corrupt_zxid(), Some(2));
    let msg = err.to_string();
    assert!(
        msg.contains("0x2") && msg.contains(&path.display().to_string()),
        "{msg}"
    );
    assert!(log.get(1)?.is_some() && log.get(3)?.is_some());
    Ok(())
}

#[test]
fn a_foreign_key_is_a_format_error() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("log");
    drop(SledTxnLog::open(&path, options())?);
    {
        let db = open_sled(&path)?;
        let tree = db.open_tree(zk_storage::log::SLED_RECORDS_TREE)?;
        tree.insert(b"short", b"x".to_vec())?;
        db.flush()?;
    }
    let err = SledTxnLog::open(&path, options()).expect_err("a 5-byte key is not a zxid");
    assert!(matches!(err, LogError::Format { .. }), "{err}");
    // Negative and zero zxids are refused too.
    for bad in [-1i64, 0, i64::MIN] {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("log");
        {
            let mut log = SledTxnLog::open(&path, options())?;
            log.append(5, b"ok")?;
            log.sync()?;
        }
        {
            let db = open_sled(&path)?;
            let tree = db.open_tree(zk_storage::log::SLED_RECORDS_TREE)?;
            tree.insert(bad.to_be_bytes(), b"x".to_vec())?;
            db.flush()?;
        }
        let err = SledTxnLog::open(&path, options()).expect_err("not a txn zxid");
        assert!(matches!(err, LogError::Format { .. }), "{bad}: {err}");
    }
    Ok(())
}

#[test]
fn epoch_files_survive_reopen_and_are_checked() -> Result<()> {
    let dir = tempfile::tempdir()?;
    {
        let mut s = FileEpochStore::open(dir.path())?;
        s.set_accepted_epoch(5)?;
        s.set_current_epoch(4)?;
    }
    let s = FileEpochStore::open(dir.path())?;
    assert_eq!((s.accepted_epoch(), s.current_epoch()), (Some(5), Some(4)));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("acceptedEpoch"))?.trim(),
        "5"
    );
    assert!(!dir.path().join("acceptedEpoch.tmp").exists());

    // currentEpoch > acceptedEpoch on disk: refuse to load.
    std::fs::write(dir.path().join("currentEpoch"), "6")?;
    let err = FileEpochStore::open(dir.path()).expect_err("6 > 5");
    assert!(
        matches!(
            err,
            EpochError::Inconsistent {
                accepted: 5,
                current: 6,
                ..
            }
        ),
        "{err}"
    );

    // Garbage is a parse error, not a panic.
    std::fs::write(dir.path().join("currentEpoch"), "banana")?;
    let err = FileEpochStore::open(dir.path()).expect_err("not a number");
    assert!(matches!(err, EpochError::Parse { .. }), "{err}");
    std::fs::write(dir.path().join("currentEpoch"), vec![b'1'; 4096])?;
    assert!(FileEpochStore::open(dir.path()).is_err());
    Ok(())
}

#[test]
fn large_records_survive_reopen() -> Result<()> {
    // Larger than sled's blob threshold (~120 KiB with 512 KiB segments): stored as blob
    // files, which the log syncs itself.
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("log");
    let big: Vec<Vec<u8>> = (1..=3u8)
        .map(|i| vec![i; 300 * 1024 * i as usize])
        .collect();
    {
        let mut log = SledTxnLog::open(&path, options())?;
        for (i, payload) in big.iter().enumerate() {
            log.append(i as i64 + 1, payload)?;
            log.sync()?;
        }
        log.append(4, b"small")?;
        log.sync()?;
    }
    let log = SledTxnLog::open(&path, options())?;
    for (i, payload) in big.iter().enumerate() {
        let record = log.get(i as i64 + 1)?.expect("record");
        assert_eq!(&record.payload, payload);
    }
    assert_eq!(log.get(4)?.map(|r| r.payload), Some(b"small".to_vec()));
    Ok(())
}
