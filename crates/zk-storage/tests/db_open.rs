//! `ZkDatabase`: open = newest valid snapshot + log replay, torn tails, corruption, gaps,
//! TRUNC, snapshots (background and installed from a leader), purge and epochs.

use anyhow::Result;
use zk_proto::data::OpCode;
use zk_proto::txn::{Txn, TxnEntry, TxnHeader};
use zk_proto::zxid::{Zxid, make};
use zk_storage::db::{DbError, DbOptions, TXN_LOG_DIR, ZkDatabase};
use zk_storage::log::{SLED_RECORDS_TREE, encode_record};

fn create(zxid: Zxid, path: &str) -> TxnEntry {
    TxnEntry {
        header: TxnHeader {
            client_id: 7,
            cxid: 1,
            zxid,
            time: 1_700_000_000_000,
            op: OpCode::Create,
        },
        txn: Txn::Create {
            path: path.to_owned(),
            data: Some(path.as_bytes().to_vec()),
            acl: vec![],
            ephemeral: false,
            parent_cversion: -1,
        },
    }
}

/// zxids `(epoch, first..=last)`.
fn zxids(epoch: i64, first: i64, last: i64) -> Vec<Zxid> {
    (first..=last).map(|c| make(epoch, c)).collect()
}

/// Appends, syncs and applies creates of `/<tag><epoch>_<counter>` (hex) for each zxid.
fn commit(db: &mut ZkDatabase, tag: &str, zs: &[Zxid]) -> Result<()> {
    let entries: Vec<TxnEntry> = zs
        .iter()
        .map(|z| create(*z, &format!("/{tag}{:x}_{:x}", z >> 32, z & 0xffff_ffff)))
        .collect();
    let encoded: Vec<Vec<u8>> = entries.iter().map(TxnEntry::encode).collect();
    let batch: Vec<(Zxid, &[u8])> = zs
        .iter()
        .zip(&encoded)
        .map(|(z, e)| (*z, e.as_slice()))
        .collect();
    let durable = db.append_and_sync(&batch)?;
    assert_eq!(Some(&durable), zs.last());
    for e in &entries {
        let outcome = db.apply(e)?;
        assert!(outcome.is_ok(), "{outcome:?}");
    }
    Ok(())
}

fn opts() -> DbOptions {
    let mut o = DbOptions::default();
    o.log.cache_capacity_bytes = 4 * 1024 * 1024;
    o
}

/// Writes a raw stored value into the closed database's log, through sled directly.
fn put_raw(dir: &std::path::Path, zxid: Zxid, value: Vec<u8>) -> Result<()> {
    let db = open_sled(&dir.join(TXN_LOG_DIR))?;
    db.open_tree(SLED_RECORDS_TREE)?
        .insert(zxid.to_be_bytes(), value)?;
    db.flush()?;
    Ok(())
}

/// Opens sled directly, waiting while the dropped database's threads still hold its lock.
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
fn reopen_replays_the_log() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let digest = {
        let mut db = ZkDatabase::open(dir.path(), opts())?;
        assert_eq!(db.last_logged_zxid(), 0);
        commit(&mut db, "a", &zxids(1, 1, 16))?;
        commit(&mut db, "a", &zxids(1, 17, 40))?;
        commit(&mut db, "b", &zxids(2, 1, 10))?;
        db.tree().digest()
    };
    let db = ZkDatabase::open(dir.path(), opts())?;
    let report = db.open_report();
    assert_eq!(report.replayed, 50);
    assert_eq!(report.snapshot, None);
    assert_eq!(report.last_processed_zxid, make(2, 10));
    assert_eq!(db.last_logged_zxid(), make(2, 10));
    assert_eq!(db.durable_zxid(), make(2, 10));
    assert_eq!(db.tree().digest(), digest);
    assert!(db.tree().exists("/a1_28") && db.tree().exists("/b2_a"));
    Ok(())
}

#[test]
fn snapshot_plus_replay_rebuilds_the_same_tree() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let digest = {
        let mut db = ZkDatabase::open(dir.path(), opts())?;
        commit(&mut db, "n", &zxids(1, 1, 30))?;
        let info = db.snapshot()?;
        assert_eq!(info.zxid, make(1, 30));
        commit(&mut db, "n", &zxids(1, 31, 50))?;
        db.tree().digest()
    };
    let db = ZkDatabase::open(dir.path(), opts())?;
    let report = db.open_report();
    assert_eq!(report.snapshot.as_ref().map(|s| s.zxid), Some(make(1, 30)));
    assert_eq!(report.replayed, 20);
    assert_eq!(db.tree().digest(), digest);
    Ok(())
}

#[test]
fn background_snapshot_is_taken_at_its_start() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut db = ZkDatabase::open(dir.path(), opts())?;
    commit(&mut db, "x", &zxids(1, 1, 100))?;
    let digest_at_start = db.tree().digest();
    assert_eq!(db.begin_snapshot()?, Some(make(1, 100)));
    // The tree goes on while the snapshot is written.
    commit(&mut db, "x", &zxids(1, 101, 150))?;
    let info = db.wait_snapshot().expect("a snapshot was started")?;
    assert_eq!(info.zxid, make(1, 100));
    assert!(db.poll_snapshot().is_none());
    let final_digest = db.tree().digest();
    drop(db);
    // The snapshot alone holds the tree as it was at its zxid.
    let snap_dir = tempfile::tempdir()?;
    std::fs::copy(
        &info.path,
        snap_dir.path().join(info.path.file_name().expect("name")),
    )?;
    let only_snapshot = ZkDatabase::open(snap_dir.path(), opts())?;
    assert_eq!(only_snapshot.tree().digest(), digest_at_start);
    assert_eq!(only_snapshot.last_logged_zxid(), make(1, 100));
    // And the full directory rebuilds the final tree.
    let db = ZkDatabase::open(dir.path(), opts())?;
    assert_eq!(db.open_report().replayed, 50);
    assert_eq!(db.tree().digest(), final_digest);
    Ok(())
}

#[test]
fn a_torn_last_record_is_truncated() -> Result<()> {
    let dir = tempfile::tempdir()?;
    {
        let mut db = ZkDatabase::open(dir.path(), opts())?;
        commit(&mut db, "t", &zxids(1, 1, 10))?;
    }
    let mut torn = encode_record(make(1, 10), &create(make(1, 10), "/t10").encode());
    torn.truncate(torn.len() / 2);
    put_raw(dir.path(), make(1, 10), torn)?;
    let mut db = ZkDatabase::open(dir.path(), opts())?;
    assert_eq!(db.open_report().truncated_tail, Some(make(1, 10)));
    assert_eq!(db.last_processed_zxid(), make(1, 9));
    assert_eq!(db.last_logged_zxid(), make(1, 9));
    assert!(!db.tree().exists("/t1_a"));
    // The zxid can be logged again.
    commit(&mut db, "t", &[make(1, 10)])?;
    drop(db);
    let db = ZkDatabase::open(dir.path(), opts())?;
    assert_eq!(db.open_report().truncated_tail, None);
    assert_eq!(db.last_processed_zxid(), make(1, 10));
    Ok(())
}

#[test]
fn corruption_before_the_tail_refuses_to_open() -> Result<()> {
    let dir = tempfile::tempdir()?;
    {
        let mut db = ZkDatabase::open(dir.path(), opts())?;
        commit(&mut db, "c", &zxids(3, 1, 10))?;
    }
    let mut bad = encode_record(make(3, 5), &create(make(3, 5), "/c5").encode());
    let mid = bad.len() / 2;
    bad[mid] ^= 0x01;
    put_raw(dir.path(), make(3, 5), bad)?;
    let err = ZkDatabase::open(dir.path(), opts()).expect_err("corrupt record 3:5");
    assert!(
        matches!(err, DbError::CorruptLog { zxid, .. } if zxid == make(3, 5)),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains("0x300000005"), "{msg}");
    assert!(msg.contains(TXN_LOG_DIR), "{msg}");
    // Still refused on the next try: nothing was truncated.
    assert!(ZkDatabase::open(dir.path(), opts()).is_err());
    Ok(())
}

#[test]
fn a_gap_or_a_bad_txn_refuses_to_open() -> Result<()> {
    let dir = tempfile::tempdir()?;
    {
        let mut db = ZkDatabase::open(dir.path(), opts())?;
        commit(&mut db, "g", &zxids(1, 1, 5))?;
    }
    // Record 1:7 without 1:6 (and a valid checksum).
    put_raw(
        dir.path(),
        make(1, 7),
        encode_record(make(1, 7), &create(make(1, 7), "/g7").encode()),
    )?;
    let err = ZkDatabase::open(dir.path(), opts()).expect_err("gap");
    assert!(
        matches!(err, DbError::LogGap { prev, zxid, .. } if prev == make(1, 5) && zxid == make(1, 7)),
        "{err}"
    );
    // Fill the gap with a record whose checksum is right but whose payload is no txn.
    put_raw(
        dir.path(),
        make(1, 6),
        encode_record(make(1, 6), b"not a txn"),
    )?;
    let err = ZkDatabase::open(dir.path(), opts()).expect_err("bad txn");
    assert!(
        matches!(err, DbError::BadTxn { zxid, .. } if zxid == make(1, 6)),
        "{err}"
    );
    // A txn stored under another zxid than its header's.
    put_raw(
        dir.path(),
        make(1, 6),
        encode_record(make(1, 6), &create(make(1, 9), "/g6").encode()),
    )?;
    let err = ZkDatabase::open(dir.path(), opts()).expect_err("zxid mismatch");
    assert!(err.to_string().contains("header says"), "{err}");
    Ok(())
}

#[test]
fn append_and_apply_are_checked() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut db = ZkDatabase::open(dir.path(), opts())?;
    commit(&mut db, "s", &zxids(1, 1, 3))?;
    let e = create(make(1, 5), "/s5").encode();
    assert!(matches!(
        db.append(&[(make(1, 5), &e)]),
        Err(DbError::OutOfSequence { .. })
    ));
    assert!(matches!(
        db.append(&[(make(2, 2), &e)]),
        Err(DbError::OutOfSequence { .. })
    ));
    // Not logged yet: cannot be applied.
    assert!(matches!(
        db.apply(&create(make(1, 4), "/s4")),
        Err(DbError::ApplyOrder { .. })
    ));
    // Logged but skipping one.
    let e4 = create(make(1, 4), "/s4").encode();
    let e5 = create(make(1, 5), "/s5").encode();
    db.append(&[(make(1, 4), &e4), (make(1, 5), &e5)])?;
    assert!(matches!(
        db.apply(&create(make(1, 5), "/s5")),
        Err(DbError::ApplyOrder { .. })
    ));
    // A follower's COMMIT applies from the log.
    let outcomes = db.apply_logged(make(1, 4))?;
    assert_eq!(outcomes.len(), 1);
    assert_eq!(db.last_processed_zxid(), make(1, 4));
    assert!(db.apply_logged(make(1, 9)).is_err());
    assert_eq!(db.apply_logged(make(1, 5))?.len(), 1);
    assert!(db.tree().exists("/s5"));
    // A new epoch starts at counter 1.
    commit(&mut db, "u", &[make(4, 1)])?;
    Ok(())
}

#[test]
fn truncate_reloads_when_the_tree_is_past_the_point() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut db = ZkDatabase::open(dir.path(), opts())?;
    commit(&mut db, "r", &zxids(1, 1, 10))?;
    let digest_at_5 = {
        let probe = tempfile::tempdir()?;
        let mut p = ZkDatabase::open(probe.path(), opts())?;
        commit(&mut p, "r", &zxids(1, 1, 5))?;
        p.tree().digest()
    };
    db.snapshot()?;
    commit(&mut db, "r", &zxids(1, 11, 20))?;

    // Within the log after the snapshot.
    let report = db.truncate_after(make(1, 15))?;
    assert_eq!(report.removed_records, 5);
    assert!(report.reloaded && report.removed_snapshots.is_empty());
    assert_eq!(db.last_processed_zxid(), make(1, 15));
    assert!(db.tree().exists("/r1_f") && !db.tree().exists("/r1_10"));

    // Before the snapshot: it goes, and the tree is rebuilt from the log alone.
    let report = db.truncate_after(make(1, 5))?;
    assert_eq!(report.removed_snapshots.len(), 1);
    assert_eq!(db.last_processed_zxid(), make(1, 5));
    assert_eq!(db.tree().digest(), digest_at_5);

    // Log ahead of the tree only: no reload.
    let e6 = create(make(1, 6), "/r6").encode();
    db.append(&[(make(1, 6), &e6)])?;
    let report = db.truncate_after(make(1, 5))?;
    assert_eq!((report.removed_records, report.reloaded), (1, false));
    // Past the end: nothing.
    assert_eq!(db.truncate_after(make(9, 9))?.removed_records, 0);
    drop(db);
    let db = ZkDatabase::open(dir.path(), opts())?;
    assert_eq!(db.last_logged_zxid(), make(1, 5));
    assert_eq!(db.tree().digest(), digest_at_5);
    Ok(())
}

#[test]
fn truncate_that_the_disk_cannot_rebuild_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut o = opts();
    o.snap_retain_count = 1;
    let mut db = ZkDatabase::open(dir.path(), o)?;
    commit(&mut db, "p", &zxids(1, 1, 10))?;
    db.snapshot()?;
    commit(&mut db, "p", &zxids(1, 11, 20))?;
    let purge = db.purge()?;
    assert_eq!(purge.retained_snapshots, vec![make(1, 10)]);
    assert_eq!(purge.removed_records, 9);
    let err = db
        .truncate_after(make(1, 5))
        .expect_err("records 1..9 are gone");
    assert!(matches!(err, DbError::CannotTruncate { .. }), "{err}");
    // Nothing was removed.
    assert_eq!(db.last_logged_zxid(), make(1, 20));
    assert_eq!(db.snapshots().list()?.len(), 1);
    Ok(())
}

#[test]
fn purge_keeps_the_newest_snapshots_and_the_log_they_need() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut o = opts();
    o.snap_retain_count = 2;
    let digest = {
        let mut db = ZkDatabase::open(dir.path(), o.clone())?;
        for round in 0..4 {
            commit(&mut db, "q", &zxids(1, round * 10 + 1, round * 10 + 10))?;
            db.snapshot()?;
        }
        commit(&mut db, "q", &zxids(1, 41, 45))?;
        let report = db.purge()?;
        assert_eq!(report.retained_snapshots, vec![make(1, 40), make(1, 30)]);
        assert_eq!(report.removed_snapshots.len(), 2);
        assert_eq!(report.removed_records, 29);
        let first = db.log_from(0)?.next().transpose()?.map(|r| r.zxid);
        assert_eq!(first, Some(make(1, 30)));
        db.tree().digest()
    };
    let db = ZkDatabase::open(dir.path(), o)?;
    assert_eq!(db.tree().digest(), digest);
    assert_eq!(db.open_report().replayed, 5);
    Ok(())
}

#[test]
fn install_a_snapshot_from_the_leader() -> Result<()> {
    let leader_dir = tempfile::tempdir()?;
    let follower_dir = tempfile::tempdir()?;
    let mut leader = ZkDatabase::open(leader_dir.path(), opts())?;
    commit(&mut leader, "l", &zxids(1, 1, 20))?;
    commit(&mut leader, "l", &zxids(2, 1, 20))?;
    let snap = leader.snapshot()?;
    let leader_digest = leader.tree().digest();

    // The follower has a history of its own: epoch 1 beyond the leader's, never committed.
    let mut follower = ZkDatabase::open(follower_dir.path(), opts())?;
    commit(&mut follower, "f", &zxids(1, 1, 30))?;
    follower.snapshot()?;
    commit(&mut follower, "f", &zxids(1, 31, 35))?;
    let follower_digest = follower.tree().digest();

    // A damaged transfer changes nothing.
    let mut chunks: Vec<Vec<u8>> = leader
        .snapshots()
        .chunks(&snap.path)?
        .collect::<Result<_, _>>()?;
    let mut damaged = chunks.clone();
    if let Some(b) = damaged.last_mut().and_then(|c| c.get_mut(40)) {
        *b ^= 0xff;
    }
    assert!(
        follower
            .install_snapshot(snap.zxid, damaged.into_iter().map(Ok::<_, std::io::Error>))
            .is_err()
    );
    assert_eq!(follower.tree().digest(), follower_digest);
    assert_eq!(follower.last_logged_zxid(), make(1, 35));

    let info =
        follower.install_snapshot(snap.zxid, chunks.drain(..).map(Ok::<_, std::io::Error>))?;
    assert_eq!(info.zxid, make(2, 20));
    assert_eq!(follower.tree().digest(), leader_digest);
    assert_eq!(follower.last_logged_zxid(), make(2, 20));
    assert!(follower.log_from(0)?.next().is_none(), "the log is cleared");
    // The follower's own snapshot (1:30) is older and kept; nothing newer than 2:20 exists.
    assert_eq!(
        follower.snapshots().newest_valid()?.map(|i| i.zxid),
        Some(make(2, 20))
    );

    // It goes on from the leader's zxid.
    commit(&mut follower, "l", &zxids(3, 1, 2))?;
    commit(&mut leader, "l", &zxids(3, 1, 2))?;
    drop(follower);
    let follower = ZkDatabase::open(follower_dir.path(), opts())?;
    assert_eq!(
        follower.open_report().snapshot.as_ref().map(|s| s.zxid),
        Some(make(2, 20))
    );
    assert_eq!(follower.open_report().replayed, 2);
    assert_eq!(follower.tree().digest(), leader.tree().digest());
    Ok(())
}

#[test]
fn epochs_are_derived_stored_and_checked() -> Result<()> {
    let dir = tempfile::tempdir()?;
    {
        let mut db = ZkDatabase::open(dir.path(), opts())?;
        assert_eq!((db.accepted_epoch(), db.current_epoch()), (0, 0));
        db.set_accepted_epoch(2)?;
        assert!(db.set_current_epoch(3).is_err(), "above acceptedEpoch");
        db.set_current_epoch(2)?;
        assert!(db.set_accepted_epoch(1).is_err(), "goes down");
    }
    let db = ZkDatabase::open(dir.path(), opts())?;
    assert_eq!((db.accepted_epoch(), db.current_epoch()), (2, 2));
    drop(db);

    // Without epoch files, they are derived from the last logged zxid.
    std::fs::remove_file(dir.path().join("acceptedEpoch"))?;
    std::fs::remove_file(dir.path().join("currentEpoch"))?;
    {
        let mut db = ZkDatabase::open(dir.path(), opts())?;
        commit(&mut db, "e", &zxids(5, 1, 2))?;
    }
    std::fs::remove_file(dir.path().join("acceptedEpoch"))?;
    std::fs::remove_file(dir.path().join("currentEpoch"))?;
    let db = ZkDatabase::open(dir.path(), opts())?;
    assert_eq!((db.accepted_epoch(), db.current_epoch()), (5, 5));
    drop(db);

    // currentEpoch > acceptedEpoch on disk refuses to open.
    std::fs::write(dir.path().join("currentEpoch"), "9")?;
    let err = ZkDatabase::open(dir.path(), opts()).expect_err("9 > 5");
    assert!(matches!(err, DbError::Epoch(_)), "{err}");
    Ok(())
}

#[test]
fn a_damaged_newest_snapshot_falls_back_to_an_older_one() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let digest = {
        let mut db = ZkDatabase::open(dir.path(), opts())?;
        commit(&mut db, "d", &zxids(1, 1, 10))?;
        db.snapshot()?;
        commit(&mut db, "d", &zxids(1, 11, 20))?;
        let newest = db.snapshot()?;
        commit(&mut db, "d", &zxids(1, 21, 25))?;
        let bytes = std::fs::read(&newest.path)?;
        std::fs::write(&newest.path, &bytes[..bytes.len() - 3])?;
        db.tree().digest()
    };
    let db = ZkDatabase::open(dir.path(), opts())?;
    let report = db.open_report();
    assert_eq!(report.snapshot.as_ref().map(|s| s.zxid), Some(make(1, 10)));
    assert_eq!(report.skipped_snapshots.len(), 1);
    assert_eq!(report.replayed, 15);
    assert_eq!(db.tree().digest(), digest);
    Ok(())
}

#[test]
fn into_parts_hands_over_what_open_loaded() -> Result<()> {
    use zk_storage::log::{EpochStore, TxnLog};
    let dir = tempfile::tempdir()?;
    {
        let mut db = ZkDatabase::open(dir.path(), opts())?;
        commit(&mut db, "h", &zxids(1, 1, 10))?;
        db.snapshot()?;
        commit(&mut db, "h", &zxids(1, 11, 12))?;
        db.set_accepted_epoch(1)?;
        db.set_current_epoch(1)?;
    }
    let db = ZkDatabase::open(dir.path(), opts())?;
    let digest = db.tree().digest();
    // A background snapshot still running is waited for.
    let mut db = db;
    db.begin_snapshot()?;
    let parts = db.into_parts();
    assert_eq!(parts.log_base, make(1, 10));
    assert_eq!(parts.report.replayed, 2);
    assert_eq!(parts.tree.digest(), digest);
    assert_eq!(parts.log.last_zxid()?, Some(make(1, 12)));
    assert_eq!(parts.epochs.current_epoch(), Some(1));
    assert_eq!(
        parts.snapshots.newest_valid()?.map(|i| i.zxid),
        Some(make(1, 12))
    );
    Ok(())
}

#[test]
fn a_tree_larger_than_a_chunk_snapshots_and_installs() -> Result<()> {
    let leader_dir = tempfile::tempdir()?;
    let follower_dir = tempfile::tempdir()?;
    let mut leader = ZkDatabase::open(leader_dir.path(), opts())?;
    // 3,000 nodes of 1 KiB: about 3 MiB of snapshot payload, so several chunks.
    let zs = zxids(1, 1, 3000);
    let entries: Vec<TxnEntry> = zs
        .iter()
        .map(|z| {
            let counter = z & 0xffff_ffff;
            let mut e = create(*z, &format!("/big{counter:x}"));
            if let Txn::Create { data, .. } = &mut e.txn {
                *data = Some(vec![(counter % 251) as u8; 1024]);
            }
            e
        })
        .collect();
    for chunk in entries.chunks(500) {
        let encoded: Vec<Vec<u8>> = chunk.iter().map(TxnEntry::encode).collect();
        let batch: Vec<(Zxid, &[u8])> = chunk
            .iter()
            .zip(&encoded)
            .map(|(e, b)| (e.header.zxid, b.as_slice()))
            .collect();
        leader.append_and_sync(&batch)?;
        for e in chunk {
            leader.apply(e)?;
        }
    }
    let info = leader.snapshot()?;
    assert!(info.chunks >= 3, "{info:?}");
    let chunks = leader.snapshots().chunks(&info.path)?;
    let mut follower = ZkDatabase::open(follower_dir.path(), opts())?;
    follower.install_snapshot(info.zxid, chunks)?;
    assert_eq!(follower.tree().digest(), leader.tree().digest());
    assert_eq!(
        follower
            .tree()
            .get("/big7d0")
            .and_then(|n| n.data())
            .map(<[u8]>::to_vec),
        Some(vec![(0x7d0 % 251) as u8; 1024])
    );
    drop(follower);
    let follower = ZkDatabase::open(follower_dir.path(), opts())?;
    assert_eq!(follower.tree().digest(), leader.tree().digest());
    Ok(())
}

#[test]
fn a_snapshot_whose_tree_cannot_be_read_is_not_installed() -> Result<()> {
    use std::io::Write;
    let other_dir = tempfile::tempdir()?;
    let other = zk_storage::snapshot::SnapshotStore::open(other_dir.path())?;
    // A well-formed snapshot file whose payload is not a tree.
    let bogus = other.write(make(2, 5), |w| w.write_all(b"not a tree at all"))?;
    let chunks: Vec<Vec<u8>> = other.chunks(&bogus.path)?.collect::<Result<_, _>>()?;

    let dir = tempfile::tempdir()?;
    let mut db = ZkDatabase::open(dir.path(), opts())?;
    commit(&mut db, "k", &zxids(1, 1, 8))?;
    let digest = db.tree().digest();
    let err = db
        .install_snapshot(make(2, 5), chunks.into_iter().map(Ok::<_, std::io::Error>))
        .expect_err("not a tree");
    assert!(matches!(err, DbError::TreeSnapshot { .. }), "{err}");
    assert_eq!(db.tree().digest(), digest);
    assert_eq!(db.last_logged_zxid(), make(1, 8));
    assert!(db.snapshots().list()?.is_empty());
    drop(db);
    let db = ZkDatabase::open(dir.path(), opts())?;
    assert_eq!(db.open_report().replayed, 8);
    assert_eq!(db.open_report().removed_temp_files, 0);
    Ok(())
}
