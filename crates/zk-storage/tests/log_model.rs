//! Model check: random sequences of appends, syncs, truncations, purges and reopens give
//! the same observable log on sled as on the in-memory log; and arbitrary bytes never
//! make the snapshot reader panic.

use proptest::prelude::*;
use zk_proto::zxid::{Zxid, epoch_of, make};
use zk_storage::log::{LogRecord, MemTxnLog, SledLogOptions, SledTxnLog, TxnLog};
use zk_storage::snapshot::SnapshotReader;

#[derive(Debug, Clone)]
enum Op {
    /// Append `n` records; `new_epoch` starts the next epoch first.
    Append {
        n: u8,
        new_epoch: bool,
    },
    Sync,
    /// Truncate after the record at this position (modulo the log length), or all.
    TruncateAfter(u16),
    /// Purge before the record at this position (modulo the log length).
    PurgeBefore(u16),
    /// Sync, then close and reopen the sled log.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..20, prop::bool::weighted(0.2)).prop_map(|(n, new_epoch)| Op::Append { n, new_epoch }),
        2 => Just(Op::Sync),
        1 => any::<u16>().prop_map(Op::TruncateAfter),
        1 => any::<u16>().prop_map(Op::PurgeBefore),
        1 => Just(Op::Reopen),
    ]
}

fn options() -> SledLogOptions {
    SledLogOptions {
        cache_capacity_bytes: 1024 * 1024,
    }
}

fn all<L: TxnLog>(log: &L) -> Vec<LogRecord> {
    log.read_from(0)
        .expect("read")
        .collect::<Result<_, _>>()
        .expect("records verify")
}

fn pick(records: &[LogRecord], at: u16) -> Option<Zxid> {
    if records.is_empty() {
        return None;
    }
    records.get(at as usize % records.len()).map(|r| r.zxid)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn sled_log_behaves_like_the_model(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let mut sled = Some(SledTxnLog::open(&path, options()).expect("open"));
        let mut model = MemTxnLog::new();
        let mut next = make(1, 1);
        for op in &ops {
            let log = sled.as_mut().expect("open log");
            match op {
                Op::Append { n, new_epoch } => {
                    if *new_epoch {
                        next = make(epoch_of(next) + 1, 1);
                    }
                    let zxids: Vec<Zxid> = (next..next + i64::from(*n)).collect();
                    let payloads: Vec<Vec<u8>> =
                        zxids.iter().map(|z| z.to_be_bytes().repeat(3)).collect();
                    let batch: Vec<(Zxid, &[u8])> =
                        zxids.iter().zip(&payloads).map(|(z, p)| (*z, p.as_slice())).collect();
                    log.append_batch(&batch).expect("sled append");
                    model.append_batch(&batch).expect("model append");
                    next += i64::from(*n);
                }
                Op::Sync => {
                    prop_assert_eq!(log.sync().expect("sled sync"), model.sync().expect("model sync"));
                }
                Op::TruncateAfter(at) => {
                    let z = pick(&all(&model), *at).map_or(-1, |z| z - 1);
                    prop_assert_eq!(
                        log.truncate_after(z).expect("sled truncate"),
                        model.truncate_after(z).expect("model truncate")
                    );
                }
                Op::PurgeBefore(at) => {
                    let z = pick(&all(&model), *at).unwrap_or(0);
                    prop_assert_eq!(
                        log.purge_before(z).expect("sled purge"),
                        model.purge_before(z).expect("model purge")
                    );
                }
                Op::Reopen => {
                    log.sync().expect("sync before reopen");
                    model.sync().expect("model sync");
                    drop(sled.take());
                    sled = Some(SledTxnLog::open(&path, options()).expect("reopen"));
                }
            }
            let log = sled.as_ref().expect("open log");
            prop_assert_eq!(all(log), all(&model), "after {:?}", op);
            prop_assert_eq!(log.last_zxid().expect("last"), model.last_zxid().expect("last"));
            prop_assert_eq!(log.first_zxid().expect("first"), model.first_zxid().expect("first"));
            prop_assert_eq!(log.durable_zxid(), model.durable_zxid());
            if let Some(last) = model.last_zxid().expect("last") {
                // Appends must continue after the last record, whatever happened before.
                next = next.max(last + 1);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_snapshot_reader(
        bytes in prop::collection::vec(any::<u8>(), 0..4096),
        keep_magic in any::<bool>(),
    ) {
        let mut bytes = bytes;
        if keep_magic && bytes.len() >= 4 {
            bytes[..4].copy_from_slice(b"ZRSN");
        }
        if let Ok(reader) = SnapshotReader::new(bytes.as_slice(), "fuzz") {
            // Almost surely invalid; either way it must end without a panic or a hang.
            let _ = reader.finish();
        }
    }
}
