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
