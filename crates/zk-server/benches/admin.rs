//! Cost of the admin counters on the request path (per-connection statistics, latency
//! histograms) and of rendering `mntr` and `/metrics`.
//! Run with `cargo bench -p zk-server --bench admin`.

use std::sync::Arc;

use divan::{Bencher, black_box};
use zk_proto::data::{Acl, OpCode};
use zk_proto::txn::{Txn, TxnEntry, TxnHeader};
use zk_server::config::Config;
use zk_server::server::{ConnStats, Role, Shared, last_op_name};
use zk_storage::tree::DataTree;

fn main() {
    divan::main();
}

/// What one answered request adds: the server's latency figures and histogram, and the
/// connection's counters.
#[divan::bench]
fn count_one_request(bencher: Bencher) {
    let shared = Shared::new(Arc::new(Config::default()), 0, DataTree::new());
    let conn = ConnStats::new(1, "127.0.0.1:5000".parse().expect("addr"), 0);
    let mut us = 0u64;
    bencher.bench_local(|| {
        us = (us + 37) % 5_000;
        conn.received();
        conn.request_queued();
        shared.stats.record_request(black_box(us), false);
        conn.responded(last_op_name(OpCode::GetData), 7, 3, us, 1_000);
        conn.sent(1);
    });
}

/// A standalone server with `nodes` znodes under `/app` and 100 connections.
fn server(nodes: usize) -> (Arc<Shared>, Vec<zk_server::server::ClientRegistration>) {
    let shared = Shared::new(Arc::new(Config::default()), 0, DataTree::new());
    let entries: Vec<TxnEntry> = (0..=nodes)
        .map(|i| TxnEntry {
            header: TxnHeader {
                client_id: 1,
                cxid: 1,
                zxid: i as i64 + 1,
                time: 0,
                op: OpCode::Create,
            },
            txn: Txn::Create {
                path: if i == 0 {
                    "/app".into()
                } else {
                    format!("/app/n{i}")
                },
                data: Some(vec![0; 10]),
                acl: Acl::open_unsafe(),
                ephemeral: false,
                parent_cversion: -1,
            },
        })
        .collect();
    shared.apply_committed(&entries).expect("apply");
    shared.set_role(Role::Standalone);
    let conns = (0..100)
        .map(|i| {
            let addr = format!("127.0.0.1:{}", 10_000 + i).parse().expect("addr");
            shared.register_client(addr)
        })
        .collect();
    (shared, conns)
}

#[divan::bench(args = [1_000, 100_000])]
fn render_metrics(bencher: Bencher, nodes: usize) {
    let (shared, _conns) = server(nodes);
    bencher.bench_local(|| black_box(zk_server::metrics::render(&shared)));
}

#[divan::bench(args = [1_000, 100_000])]
fn mntr(bencher: Bencher, nodes: usize) {
    let (shared, _conns) = server(nodes);
    bencher.bench_local(|| black_box(zk_server::admin::run_command(&shared, "mntr")));
}

#[divan::bench(args = [1_000, 100_000])]
fn hash(bencher: Bencher, nodes: usize) {
    let (shared, _conns) = server(nodes);
    bencher.bench_local(|| black_box(zk_server::admin::run_command(&shared, "hash")));
}
