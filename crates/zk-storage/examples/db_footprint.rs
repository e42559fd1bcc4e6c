//! Memory of a whole [`ZkDatabase`] (txn log on sled plus the tree), against the tree
//! alone: logs and applies `N` creates of 100 B (default 100k) in batches of 1000, as a
//! server does, then prints the bytes allocated by the tree's creates, the growth of the
//! resident set, and both per znode. The second argument is sled's page cache in MiB
//! (default: `zk_storage::log::SledLogOptions::default()`, 64 MiB).
//!
//! Run: `cargo run --release -p zk-storage --example db_footprint [-- N CACHE_MIB]`.

use cap::Cap;
use zk_proto::data::{Acl, OpCode};
use zk_proto::txn::{Txn, TxnEntry, TxnHeader};
use zk_storage::db::{DbOptions, ZkDatabase};

#[global_allocator]
static ALLOC: Cap<std::alloc::System> = Cap::new(std::alloc::System, usize::MAX);

/// `VmRSS` of this process in bytes (Linux).
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(100_000), |a| a.parse())?;
    let mut options = DbOptions::default();
    if let Some(mib) = args.next() {
        options.log.cache_capacity_bytes = mib.parse::<u64>()? * 1024 * 1024;
    }
    let cache_mib = options.log.cache_capacity_bytes / (1024 * 1024);
    let dir = tempfile::tempdir()?;
    let mut db = ZkDatabase::open(dir.path(), options)?;
    let rss_before = rss_bytes();
    let allocated_before = ALLOC.allocated();
    let mut zxid = 0x1_0000_0000i64;
    let mut entries = Vec::new();
    let mut create = |path: String, data: Vec<u8>| {
        zxid += 1;
        TxnEntry {
            header: TxnHeader {
                client_id: 1,
                cxid: 1,
                zxid,
                time: 1_700_000_000_000 + zxid,
                op: OpCode::Create,
            },
            txn: Txn::Create {
                path,
                data: Some(data),
                acl: Acl::open_unsafe(),
                ephemeral: false,
                parent_cversion: -1,
            },
        }
    };
    entries.push(create("/b".into(), Vec::new()));
    for i in 0..n {
        if i % 1000 == 0 {
            entries.push(create(format!("/b/d{:04}", i / 1000), Vec::new()));
        }
        entries.push(create(
            format!("/b/d{:04}/node-{i:010}", i / 1000),
            vec![b'x'; 100],
        ));
        if entries.len() >= 1000 || i + 1 == n {
            let encoded: Vec<Vec<u8>> = entries.iter().map(TxnEntry::encode).collect();
            let batch: Vec<(i64, &[u8])> = entries
                .iter()
                .zip(&encoded)
                .map(|(e, b)| (e.header.zxid, b.as_slice()))
                .collect();
            db.append_and_sync(&batch)?;
            for e in entries.drain(..) {
                db.apply(&e)?;
            }
        }
    }
    let allocated = ALLOC.allocated().saturating_sub(allocated_before) as f64;
    let rss = rss_bytes()
        .zip(rss_before)
        .map_or(0.0, |(a, b)| a.saturating_sub(b) as f64);
    println!(
        "{n} creates logged and applied (sled cache {cache_mib} MiB): {:.1} MB still \
         allocated ({:.0} B per znode), VmRSS grew {:.1} MB ({:.0} B per znode)",
        allocated / 1e6,
        allocated / n as f64,
        rss / 1e6,
        rss / n as f64
    );
    std::hint::black_box(&db);
    Ok(())
}
