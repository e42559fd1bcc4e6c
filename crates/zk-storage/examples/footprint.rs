//! Memory per znode of a [`DataTree`]: builds a tree of `N` znodes of 100 B (default 1M:
//! 1000 directories of 1000 children under `/app`) by applying create txns, and prints
//! the bytes allocated per znode (a counting global allocator) and the growth of the
//! resident set (`VmRSS`, allocator overhead included), each also beyond the 100 B of
//! data.
//!
//! Run: `cargo run --release -p zk-storage --example footprint [-- N]`.

use std::time::Instant;

use cap::Cap;
use zk_proto::data::{Acl, OpCode};
use zk_proto::txn::{Txn, TxnEntry, TxnHeader};
use zk_storage::tree::DataTree;

#[global_allocator]
static ALLOC: Cap<std::alloc::System> = Cap::new(std::alloc::System, usize::MAX);

const PER_DIR: usize = 1000;
const DATA_LEN: usize = 100;

/// `VmRSS` of this process in bytes (Linux).
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn create(tree: &mut DataTree, zxid: &mut i64, path: String, data: Vec<u8>) -> anyhow::Result<()> {
    *zxid += 1;
    let out = tree.apply(&TxnEntry {
        header: TxnHeader {
            client_id: 1,
            cxid: 1,
            zxid: *zxid,
            time: 1_700_000_000_000 + *zxid,
            op: OpCode::Create,
        },
        txn: Txn::Create {
            path,
            data: Some(data),
            acl: Acl::open_unsafe(),
            ephemeral: false,
            parent_cversion: -1,
        },
    });
    anyhow::ensure!(out.is_ok(), "create failed: {out:?}");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let n: usize = match std::env::args().nth(1) {
        Some(a) => a.parse()?,
        None => 1_000_000,
    };
    let dirs = n.div_ceil(PER_DIR);
    let rss_before = rss_bytes();
    let allocated_before = ALLOC.allocated();
    let started = Instant::now();
    let mut tree = DataTree::new();
    let mut zxid = 0x1_0000_0000i64;
    create(&mut tree, &mut zxid, "/app".into(), Vec::new())?;
    let mut made = 0;
    // The slowest create: the one that grows the path index.
    let mut slowest = std::time::Duration::ZERO;
    'dirs: for d in 0..dirs {
        create(&mut tree, &mut zxid, format!("/app/d{d:04}"), Vec::new())?;
        for i in 0..PER_DIR {
            if made == n {
                break 'dirs;
            }
            let path = format!("/app/d{d:04}/node-{i:010}");
            let one = Instant::now();
            create(&mut tree, &mut zxid, path, vec![b'x'; DATA_LEN])?;
            slowest = slowest.max(one.elapsed());
            made += 1;
        }
    }
    let build_s = started.elapsed().as_secs_f64();
    println!("slowest create: {:.1} ms", slowest.as_secs_f64() * 1e3);
    let allocated = ALLOC.allocated().saturating_sub(allocated_before) as f64;
    let nodes = tree.node_count();
    println!(
        "{nodes} znodes ({made} of {DATA_LEN} B) built in {build_s:.2} s: {:.1} MB allocated, \
         {:.1} B per znode, {:.1} B per znode beyond its data",
        allocated / 1e6,
        allocated / made as f64,
        allocated / made as f64 - DATA_LEN as f64
    );
    if let (Some(before), Some(after)) = (rss_before, rss_bytes()) {
        let grown = after.saturating_sub(before) as f64;
        println!(
            "VmRSS grew {:.1} MB: {:.1} B per znode, {:.1} B per znode beyond its data",
            grown / 1e6,
            grown / made as f64,
            grown / made as f64 - DATA_LEN as f64
        );
    }
    // Lookup cost, as a check that the layout does not slow reads down.
    let paths: Vec<String> = (0..made.min(100_000))
        .map(|i| format!("/app/d{:04}/node-{:010}", i * 7 % dirs, i * 13 % PER_DIR))
        .collect();
    let started = Instant::now();
    let mut found = 0usize;
    for _ in 0..10 {
        for p in &paths {
            found += usize::from(tree.get(p).is_some_and(|n| n.data().is_some()));
        }
    }
    let gets = 10 * paths.len();
    println!(
        "get: {:.0} ns per lookup ({found} of {gets} found)",
        started.elapsed().as_secs_f64() * 1e9 / gets as f64
    );
    // Snapshot write and restore, as a check that putting paths together costs little.
    let started = Instant::now();
    let mut snapshot = Vec::new();
    tree.snapshot_view().write_to(&mut snapshot)?;
    let write_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let restored = DataTree::read_from(&mut std::io::BufReader::new(snapshot.as_slice()))?;
    let read_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(restored.digest() == tree.digest(), "restored tree differs");
    println!(
        "snapshot: {:.1} MB written in {write_s:.3} s, restored in {read_s:.3} s",
        snapshot.len() as f64 / 1e6
    );
    std::hint::black_box(&tree);
    Ok(())
}
