//! DataTree benchmarks: get / setData / create ops, snapshot view + write and restore of
//! 1M znodes of 100 B, and memory per znode measured with a counting global allocator.
//!
//! Run: `cargo bench -p zk-storage --bench tree`. The memory and snapshot figures are
//! printed before divan's table.

use std::hint::black_box;
use std::io::{self, BufReader};
use std::sync::LazyLock;
use std::time::Instant;

use cap::Cap;
use divan::Bencher;
use zk_proto::data::{Acl, OpCode};
use zk_proto::txn::{Txn, TxnEntry, TxnHeader};
use zk_storage::tree::DataTree;

#[global_allocator]
static ALLOC: Cap<std::alloc::System> = Cap::new(std::alloc::System, usize::MAX);

/// Nodes in the big trees: `DIRS` directories of `PER_DIR` children.
const DIRS: usize = 1000;
const PER_DIR: usize = 1000;
const DATA_LEN: usize = 100;

fn entry(zxid: i64, op: OpCode, txn: Txn) -> TxnEntry {
    TxnEntry {
        header: TxnHeader {
            client_id: 1,
            cxid: 1,
            zxid,
            time: 1_700_000_000_000 + zxid,
            op,
        },
        txn,
    }
}

fn leaf_path(d: usize, n: usize) -> String {
    format!("/app/d{d:04}/node-{n:010}")
}

/// A tree of `dirs` × `per_dir` nodes of 100 B under `/app`, built by applying txns.
fn build(dirs: usize, per_dir: usize) -> DataTree {
    let mut tree = DataTree::new();
    let mut zxid = 0x1_0000_0000i64;
    let mut create = |tree: &mut DataTree, path: String, data: Vec<u8>| {
        zxid += 1;
        let out = tree.apply(&entry(
            zxid,
            OpCode::Create,
            Txn::Create {
                path,
                data: Some(data),
                acl: Acl::open_unsafe(),
                ephemeral: false,
                parent_cversion: -1,
            },
        ));
        assert!(out.is_ok(), "{out:?}");
    };
    create(&mut tree, "/app".into(), Vec::new());
    for d in 0..dirs {
        create(&mut tree, format!("/app/d{d:04}"), Vec::new());
        for n in 0..per_dir {
            create(&mut tree, leaf_path(d, n), vec![b'x'; DATA_LEN]);
        }
    }
    tree
}

static BIG: LazyLock<DataTree> = LazyLock::new(|| build(DIRS, PER_DIR));
static BIG_SNAPSHOT: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut buf = Vec::new();
    BIG.snapshot_view()
        .write_to(&mut buf)
        .expect("write to a Vec");
    buf
});

/// Resident set size of this process in bytes (Linux), for the allocator's own overhead.
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn report() {
    let n = DIRS * PER_DIR;
    let rss_before = rss_bytes();
    let before = ALLOC.allocated();
    let t = Instant::now();
    let tree = build(DIRS, PER_DIR);
    let build_s = t.elapsed().as_secs_f64();
    let after = ALLOC.allocated();
    let rss_after = rss_bytes();
    let nodes = tree.node_count();
    let bytes = after.saturating_sub(before) as f64;
    println!(
        "memory: {nodes} znodes of {DATA_LEN} B: {:.1} MB allocated, {:.1} B per znode, \
         {:.1} B per znode beyond its data (build {:.2} s, {:.0} creates/s)",
        bytes / 1e6,
        bytes / n as f64,
        bytes / n as f64 - DATA_LEN as f64,
        build_s,
        n as f64 / build_s
    );

    if let (Some(b), Some(a)) = (rss_before, rss_after) {
        println!(
            "memory: resident set grew {:.1} MB, {:.1} B per znode beyond its data (allocator overhead included)",
            a.saturating_sub(b) as f64 / 1e6,
            a.saturating_sub(b) as f64 / n as f64 - DATA_LEN as f64
        );
    }

    let t = Instant::now();
    let view = tree.snapshot_view();
    let view_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut sink = io::sink();
    let written = view.write_to(&mut sink).expect("write to sink");
    let write_s = t.elapsed().as_secs_f64();
    println!(
        "snapshot: view {:.3} ms, write {:.3} s ({:.1} MB, {:.0} MB/s) for {nodes} znodes",
        view_s * 1e3,
        write_s,
        written as f64 / 1e6,
        written as f64 / 1e6 / write_s
    );

    let mut buf = Vec::with_capacity(written as usize);
    view.write_to(&mut buf).expect("write to a Vec");
    drop(view);
    let t = Instant::now();
    let restored = DataTree::read_from(&mut BufReader::new(&buf[..])).expect("restore");
    let restore_s = t.elapsed().as_secs_f64();
    assert_eq!(restored.digest(), tree.digest());
    println!("restore: {restore_s:.3} s for {nodes} znodes (digest equal)");

    // Cost of writes while a view is held: every touched chunk is copied once.
    let mut tree = tree;
    let view = tree.snapshot_view();
    let before = ALLOC.allocated();
    let t = Instant::now();
    for (i, d) in (0..DIRS).enumerate() {
        let out = tree.apply(&entry(
            0x2_0000_0000 + i as i64,
            OpCode::SetData,
            Txn::SetData {
                path: leaf_path(d, 0),
                data: Some(vec![b'y'; DATA_LEN]),
                version: 1,
            },
        ));
        assert!(out.is_ok());
    }
    println!(
        "copy-on-write: {DIRS} setData spread over the tree while a view is held: {:.2} ms, \
         {:.1} MB copied",
        t.elapsed().as_secs_f64() * 1e3,
        ALLOC.allocated().saturating_sub(before) as f64 / 1e6
    );
    drop(view);
}

/// One directory with 1M children: memory, and the cost of a sorted getChildren on it.
fn report_flat() {
    let n = DIRS * PER_DIR;
    let before = ALLOC.allocated();
    let mut tree = DataTree::new();
    for i in 0..=n {
        let path = if i == 0 {
            "/flat".to_string()
        } else {
            format!("/flat/node-{i:010}")
        };
        let out = tree.apply(&entry(
            0x3_0000_0000 + i as i64,
            OpCode::Create,
            Txn::Create {
                path,
                data: Some(if i == 0 {
                    Vec::new()
                } else {
                    vec![b'f'; DATA_LEN]
                }),
                acl: Acl::open_unsafe(),
                ephemeral: false,
                parent_cversion: -1,
            },
        ));
        assert!(out.is_ok());
    }
    let bytes = ALLOC.allocated().saturating_sub(before) as f64;
    let t = Instant::now();
    let children = tree.children("/flat").map_or(0, |c| c.len());
    println!(
        "flat: {n} children of one node: {:.1} B per znode beyond its data; sorted getChildren of {children} names {:.1} ms",
        bytes / n as f64 - DATA_LEN as f64,
        t.elapsed().as_secs_f64() * 1e3
    );
}

fn main() {
    report();
    report_flat();
    // Build the shared trees before divan starts timing.
    LazyLock::force(&BIG);
    LazyLock::force(&BIG_SNAPSHOT);
    LazyLock::force(&SCRAMBLED_PATHS);
    divan::main();
}

/// Every leaf path of `BIG` in a scrambled order, so that gets hit the tree at random.
static SCRAMBLED_PATHS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let n = DIRS * PER_DIR;
    // 7919 is prime and does not divide n, so i * 7919 mod n visits every leaf once.
    (0..n)
        .map(|i| {
            let k = (i * 7919) % n;
            leaf_path(k % DIRS, k / DIRS)
        })
        .collect()
});

const GETS_PER_ITER: usize = 1000;

/// 1000 getData (data + Stat) at random over 1M znodes per iteration.
#[divan::bench(counters = [divan::counter::ItemsCount::new(GETS_PER_ITER)])]
fn get(bencher: Bencher) {
    let tree = &*BIG;
    let paths = &*SCRAMBLED_PATHS;
    let mut at = 0usize;
    bencher.bench_local(|| {
        let mut sum = 0usize;
        for _ in 0..GETS_PER_ITER {
            at = (at + 1) % paths.len();
            let node = tree.get(&paths[at]).expect("node exists");
            sum += node.stat().data_length as usize + node.data().map_or(0, <[u8]>::len);
        }
        black_box(sum)
    });
}

#[divan::bench]
fn get_children_1000(bencher: Bencher) {
    let tree = &*BIG;
    bencher.bench_local(|| black_box(tree.children("/app/d0500").map(|c| c.len())));
}

const OPS_PER_ITER: usize = 1000;

/// 1000 setData txns of 100 B at random over a 1M-znode tree per iteration (the txns are
/// built outside the timing).
#[divan::bench(counters = [divan::counter::ItemsCount::new(OPS_PER_ITER)])]
fn set_data(bencher: Bencher) {
    let mut tree = build(DIRS, PER_DIR);
    let paths = &*SCRAMBLED_PATHS;
    let mut at = 0usize;
    let mut zxid = 0x2_0000_0000i64;
    bencher
        .with_inputs(|| {
            (0..OPS_PER_ITER)
                .map(|_| {
                    at = (at + 1) % paths.len();
                    zxid += 1;
                    entry(
                        zxid,
                        OpCode::SetData,
                        Txn::SetData {
                            path: paths[at].clone(),
                            data: Some(vec![b'z'; DATA_LEN]),
                            version: 1,
                        },
                    )
                })
                .collect::<Vec<_>>()
        })
        .bench_local_refs(|batch| {
            for e in batch.iter() {
                black_box(tree.apply(e).err);
            }
        });
}

/// 1000 creates of 100 B znodes spread over 1000 directories per iteration.
#[divan::bench(counters = [divan::counter::ItemsCount::new(OPS_PER_ITER)])]
fn create(bencher: Bencher) {
    let mut tree = build(DIRS, 1);
    let mut zxid = 0x2_0000_0000i64;
    bencher
        .with_inputs(|| {
            (0..OPS_PER_ITER)
                .map(|_| {
                    zxid += 1;
                    entry(
                        zxid,
                        OpCode::Create,
                        Txn::Create {
                            path: format!("/app/d{:04}/c{zxid}", zxid as usize % DIRS),
                            data: Some(vec![b'c'; DATA_LEN]),
                            acl: Acl::open_unsafe(),
                            ephemeral: false,
                            parent_cversion: -1,
                        },
                    )
                })
                .collect::<Vec<_>>()
        })
        .bench_local_refs(|batch| {
            for e in batch.iter() {
                black_box(tree.apply(e).err);
            }
        });
}

#[divan::bench(sample_count = 5, sample_size = 1)]
fn snapshot_view_and_write_1m(bencher: Bencher) {
    let tree = &*BIG;
    bencher.bench_local(|| {
        let view = tree.snapshot_view();
        view.write_to(&mut io::sink()).expect("write to sink")
    });
}

#[divan::bench(sample_count = 5, sample_size = 1)]
fn restore_1m(bencher: Bencher) {
    let buf = &*BIG_SNAPSHOT;
    bencher.bench_local(|| {
        DataTree::read_from(&mut BufReader::new(&buf[..]))
            .expect("restore")
            .node_count()
    });
}
