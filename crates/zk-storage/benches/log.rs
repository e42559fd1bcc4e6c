//! Txn log throughput: append + one sync (group commit) per batch of 100-byte txns.
//!
//! `cargo bench -p zk-storage --bench log`. Each iteration appends one batch and syncs it,
//! so the items/s column is txns/s and iterations/s (1 / time) is flushes/s.

use divan::Bencher;
use divan::counter::ItemsCount;
use zk_storage::log::{MemTxnLog, SledLogOptions, SledTxnLog, TxnLog};

fn main() {
    divan::main();
}

const TXN_BYTES: usize = 100;

fn run<L: TxnLog>(bencher: Bencher, log: &mut L, batch: usize) {
    let payload = [0x5au8; TXN_BYTES];
    let mut next = 1i64;
    bencher
        .counter(ItemsCount::new(batch))
        .bench_local(move || {
            let records: Vec<(i64, &[u8])> = (next..next + batch as i64)
                .map(|z| (z, payload.as_slice()))
                .collect();
            next += batch as i64;
            if let Err(e) = log.append_batch(&records).and_then(|()| log.sync()) {
                panic!("append/sync failed: {e}");
            }
        });
}

/// sled: append a batch, then one `flush` (fsync).
#[divan::bench(args = [1, 16, 256], sample_count = 20, sample_size = 20)]
fn sled_append_sync(bencher: Bencher, batch: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = SledTxnLog::open(
        dir.path().join("log"),
        SledLogOptions {
            cache_capacity_bytes: 64 * 1024 * 1024,
        },
    )
    .expect("open");
    run(bencher, &mut log, batch);
}

/// The in-memory log (no I/O), as a baseline for the cost of framing and checksums.
#[divan::bench(args = [1, 16, 256])]
fn mem_append_sync(bencher: Bencher, batch: usize) {
    let mut log = MemTxnLog::new();
    run(bencher, &mut log, batch);
}

const REPLAY_TXNS: usize = 50_000;

/// `ZkDatabase::open` of a directory holding 50,000 create txns and no snapshot: log read,
/// checksum, decode and apply of every txn (items/s = txns replayed per second).
#[divan::bench(sample_count = 10, sample_size = 1)]
fn db_open_replay_50k(bencher: Bencher) {
    use zk_proto::data::OpCode;
    use zk_proto::txn::{Txn, TxnEntry, TxnHeader};
    use zk_proto::zxid::make;
    use zk_storage::db::{DbOptions, ZkDatabase};

    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut db = ZkDatabase::open(dir.path(), DbOptions::default()).expect("open");
        let entries: Vec<TxnEntry> = (1..=REPLAY_TXNS as i64)
            .map(|c| TxnEntry {
                header: TxnHeader {
                    client_id: 1,
                    cxid: c as i32,
                    zxid: make(1, c),
                    time: 0,
                    op: OpCode::Create,
                },
                txn: Txn::Create {
                    path: format!("/n{c}"),
                    data: Some(vec![0x5a; 64]),
                    acl: vec![],
                    ephemeral: false,
                    parent_cversion: -1,
                },
            })
            .collect();
        for chunk in entries.chunks(256) {
            let encoded: Vec<Vec<u8>> = chunk.iter().map(TxnEntry::encode).collect();
            let batch: Vec<(i64, &[u8])> = chunk
                .iter()
                .zip(&encoded)
                .map(|(e, b)| (e.header.zxid, b.as_slice()))
                .collect();
            db.append_and_sync(&batch).expect("append");
        }
    }
    bencher
        .counter(ItemsCount::new(REPLAY_TXNS))
        .bench_local(|| {
            let db = ZkDatabase::open(dir.path(), DbOptions::default()).expect("reopen");
            assert_eq!(db.open_report().replayed, REPLAY_TXNS as u64);
        });
}
