//! Snapshot file throughput: write (chunking, checksums, fsync, rename) and read back
//! (verification of every chunk and the trailer) of a 32 MiB payload.
//!
//! `cargo bench -p zk-storage --bench snapshot`.

use std::io::{Read, Write};

use divan::Bencher;
use divan::counter::BytesCount;
use zk_storage::snapshot::SnapshotStore;

fn main() {
    divan::main();
}

const PAYLOAD_BYTES: usize = 32 * 1024 * 1024;

fn payload() -> Vec<u8> {
    (0..PAYLOAD_BYTES)
        .map(|i| (i * 7 + i / 4096) as u8)
        .collect()
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn write_32mib(bencher: Bencher) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SnapshotStore::open(dir.path()).expect("store");
    let data = payload();
    let mut zxid = 0i64;
    bencher
        .counter(BytesCount::new(PAYLOAD_BYTES))
        .bench_local(|| {
            zxid += 1;
            store
                .write(zxid, |w| {
                    for piece in data.chunks(64 * 1024) {
                        w.write_all(piece)?;
                    }
                    Ok(())
                })
                .expect("write");
        });
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn read_verify_32mib(bencher: Bencher) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SnapshotStore::open(dir.path()).expect("store");
    let data = payload();
    let info = store.write(1, |w| w.write_all(&data)).expect("write");
    let mut buf = vec![0u8; 64 * 1024];
    bencher
        .counter(BytesCount::new(PAYLOAD_BYTES))
        .bench_local(|| {
            let mut r = store.open_reader(&info.path).expect("open");
            let mut total = 0usize;
            loop {
                let n = r.read(&mut buf).expect("read");
                if n == 0 {
                    break;
                }
                total += n;
            }
            r.finish().expect("verify");
            assert_eq!(total, PAYLOAD_BYTES);
        });
}
