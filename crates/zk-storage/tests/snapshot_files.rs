//! Snapshot files on disk: write → verify → read back, damaged files, purge, and the
//! chunked transfer to a peer.

use std::io::{Read, Write};

use anyhow::Result;
use zk_storage::snapshot::{MAX_CHUNK_BYTES, SnapshotError, SnapshotStore};

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn write(store: &SnapshotStore, zxid: i64, data: &[u8]) -> Result<()> {
    // Written in uneven pieces, as a real serializer would.
    store.write(zxid, |w| {
        for piece in data.chunks(777) {
            w.write_all(piece)?;
        }
        Ok(())
    })?;
    Ok(())
}

fn read_payload(store: &SnapshotStore, path: &std::path::Path) -> Result<Vec<u8>> {
    let mut r = store.open_reader(path)?;
    let mut out = Vec::new();
    r.read_to_end(&mut out)?;
    r.finish()?;
    Ok(out)
}

#[test]
fn write_then_restore_a_multi_chunk_snapshot() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = SnapshotStore::open(dir.path())?;
    let data = payload(2 * MAX_CHUNK_BYTES + 12345, 3);
    write(&store, 0x2_0000_0010, &data)?;
    let info = store.newest_valid()?.expect("a valid snapshot");
    assert_eq!(info.zxid, 0x2_0000_0010);
    assert_eq!(info.payload_bytes, data.len() as u64);
    assert_eq!(info.chunks, 3);
    assert_eq!(info.file_bytes, std::fs::metadata(&info.path)?.len());
    assert_eq!(read_payload(&store, &info.path)?, data);
    // No temp file is left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    assert_eq!(names, vec!["snapshot.200000010".to_owned()]);
    Ok(())
}

#[test]
fn truncated_or_garbage_snapshots_are_rejected_and_skipped() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = SnapshotStore::open(dir.path())?;
    write(&store, 10, &payload(5000, 1))?;
    write(&store, 20, &payload(MAX_CHUNK_BYTES + 10, 2))?;
    let newest = store.path_of(20);
    let full = std::fs::read(&newest)?;
    for cut in [
        0,
        10,
        24,
        100,
        MAX_CHUNK_BYTES,
        full.len() - 25,
        full.len() - 1,
    ] {
        std::fs::write(&newest, &full[..cut])?;
        let err = store.verify(&newest).expect_err("truncated");
        assert!(
            matches!(err, SnapshotError::Invalid { .. }),
            "cut {cut}: {err}"
        );
        let valid = store.newest_valid()?.expect("the older snapshot");
        assert_eq!(valid.zxid, 10, "cut {cut}: falls back to the older one");
    }
    // Garbage under a snapshot name.
    std::fs::write(&newest, b"this is not a snapshot at all, just text")?;
    assert!(matches!(
        store.verify(&newest),
        Err(SnapshotError::Invalid { .. })
    ));
    assert_eq!(store.newest_valid()?.map(|i| i.zxid), Some(10));
    // A valid file under the wrong name.
    std::fs::copy(store.path_of(10), store.path_of(30))?;
    assert!(store.verify(&store.path_of(30)).is_err());
    assert_eq!(store.newest_valid()?.map(|i| i.zxid), Some(10));
    // A flipped byte in the middle of a chunk.
    std::fs::write(&newest, &full)?;
    assert_eq!(store.verify(&newest)?.zxid, 20);
    let mut flipped = full.clone();
    flipped[4096] ^= 0xff;
    std::fs::write(&newest, &flipped)?;
    let err = store.verify(&newest).expect_err("flipped");
    assert!(err.to_string().contains("checksum"), "{err}");
    Ok(())
}

#[test]
fn a_failing_payload_writer_leaves_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = SnapshotStore::open(dir.path())?;
    let err = store
        .write(9, |w| {
            w.write_all(&[1; 4096])?;
            Err(std::io::Error::other("serializer failed"))
        })
        .expect_err("the writer failed");
    assert!(err.to_string().contains("serializer failed"), "{err}");
    assert!(store.list()?.is_empty());
    assert_eq!(std::fs::read_dir(dir.path())?.count(), 0);
    Ok(())
}

#[test]
fn purge_keeps_the_newest_valid_n() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = SnapshotStore::open(dir.path())?;
    for z in 1..=6 {
        write(&store, z * 100, &payload(100, z as u8))?;
    }
    // The newest one is damaged: it does not count as retained, and is not removed.
    std::fs::write(store.path_of(600), b"damaged")?;
    let purge = store.purge(3)?;
    assert_eq!(purge.retained, vec![500, 400, 300]);
    assert_eq!(purge.oldest_retained(), Some(300));
    assert_eq!(purge.removed.len(), 2);
    let left: Vec<i64> = store.list()?.iter().map(|f| f.zxid).collect();
    assert_eq!(left, vec![600, 500, 400, 300]);
    // Purging again removes nothing; retain 0 keeps one.
    assert!(store.purge(3)?.removed.is_empty());
    let purge = store.purge(0)?;
    assert_eq!(purge.retained, vec![500]);
    let left: Vec<i64> = store.list()?.iter().map(|f| f.zxid).collect();
    assert_eq!(left, vec![600, 500]);
    Ok(())
}

#[test]
fn remove_newer_than_and_temp_files() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = SnapshotStore::open(dir.path())?;
    for z in [5, 10, 15] {
        write(&store, z, b"x")?;
    }
    std::fs::write(dir.path().join("snapshot.14.tmp"), b"half")?;
    std::fs::write(dir.path().join("unrelated"), b"keep me")?;
    assert_eq!(store.remove_newer_than(10)?.len(), 1);
    assert_eq!(store.remove_temp_files()?.len(), 1);
    let left: Vec<i64> = store.list()?.iter().map(|f| f.zxid).collect();
    assert_eq!(left, vec![10, 5]);
    assert!(dir.path().join("unrelated").exists());
    Ok(())
}

#[test]
fn transfer_to_a_peer_round_trips() -> Result<()> {
    let leader_dir = tempfile::tempdir()?;
    let follower_dir = tempfile::tempdir()?;
    let leader = SnapshotStore::open(leader_dir.path())?;
    let follower = SnapshotStore::open(follower_dir.path())?;
    let data = payload(3 * MAX_CHUNK_BYTES + 1, 9);
    write(&leader, 0x7_0000_0001, &data)?;
    let chunks: Vec<Vec<u8>> = leader
        .chunks(&leader.path_of(0x7_0000_0001))?
        .collect::<Result<_, _>>()?;
    assert!(chunks.iter().all(|c| c.len() <= MAX_CHUNK_BYTES));
    assert!(chunks.len() >= 4);
    let info = follower.receive(
        Some(0x7_0000_0001),
        chunks.iter().cloned().map(Ok::<_, std::io::Error>),
    )?;
    assert_eq!(info.zxid, 0x7_0000_0001);
    assert_eq!(read_payload(&follower, &info.path)?, data);
    assert_eq!(std::fs::read(&info.path)?, chunks.concat());
    Ok(())
}

#[test]
fn damaged_transfers_are_refused_and_leave_nothing() -> Result<()> {
    let leader_dir = tempfile::tempdir()?;
    let follower_dir = tempfile::tempdir()?;
    let leader = SnapshotStore::open(leader_dir.path())?;
    let follower = SnapshotStore::open(follower_dir.path())?;
    write(&leader, 42, &payload(MAX_CHUNK_BYTES + 500, 4))?;
    let chunks: Vec<Vec<u8>> = leader
        .chunks(&leader.path_of(42))?
        .collect::<Result<_, _>>()?;
    let ok = |v: Vec<Vec<u8>>| v.into_iter().map(Ok::<_, std::io::Error>);

    // The stream stops early (the leader went away).
    let err = follower
        .receive(Some(42), ok(chunks[..1].to_vec()))
        .expect_err("truncated");
    assert!(matches!(err, SnapshotError::Invalid { .. }), "{err}");

    // A byte changed on the way.
    let mut bad = chunks.clone();
    bad[1][3] ^= 1;
    assert!(follower.receive(Some(42), ok(bad)).is_err());

    // Another zxid than announced.
    let err = follower
        .receive(Some(43), ok(chunks.clone()))
        .expect_err("zxid");
    assert!(
        matches!(
            err,
            SnapshotError::ZxidMismatch {
                expected: 43,
                found: 42,
                ..
            }
        ),
        "{err}"
    );

    // The source fails.
    let failing = vec![
        Ok(chunks[0].clone()),
        Err(std::io::Error::other("connection reset")),
    ];
    let err = follower.receive(Some(42), failing).expect_err("source");
    assert!(matches!(err, SnapshotError::Source(_)), "{err}");

    // A piece larger than the limit.
    let err = follower
        .receive(None, ok(vec![vec![0; MAX_CHUNK_BYTES + 1]]))
        .expect_err("oversized");
    assert!(err.to_string().contains("more than"), "{err}");

    assert_eq!(std::fs::read_dir(follower_dir.path())?.count(), 0);
    // And a good transfer still works afterwards.
    follower.receive(Some(42), ok(chunks))?;
    assert_eq!(follower.newest_valid()?.map(|i| i.zxid), Some(42));
    Ok(())
}
