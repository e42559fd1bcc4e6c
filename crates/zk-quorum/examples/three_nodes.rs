//! Three Zab nodes in one process over gRPC on 127.0.0.1, 127.0.0.2 and 127.0.0.3, each
//! with a sled txn log and epoch files in a temporary directory. Node 1 leads (the
//! election is left out), nodes 2 and 3 follow; 200 writes are committed, then every node's
//! state is compared.
//!
//! ```text
//! cargo run -p zk-quorum --example three_nodes
//! RUST_LOG=zk_quorum=debug cargo run -p zk-quorum --example three_nodes
//! ```

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::sync::{oneshot, watch};
use zk_quorum::driver::{
    DriverOptions, LeaderClient, NodeStatus, NodeStorage, run_leader, run_learner,
};
use zk_quorum::transport::{TcpDialer, bind_local};
use zk_quorum::{Config, Ensemble, StateMachine, Txn, Zxid};
use zk_storage::log::{FileEpochStore, SledLogOptions, SledTxnLog};

/// The replicated state: every applied txn, in order.
#[derive(Default, Debug, Clone, PartialEq, Eq)]
struct ListMachine {
    txns: Vec<(Zxid, Bytes)>,
}

#[derive(Debug, thiserror::Error)]
#[error("corrupt snapshot")]
struct Corrupt;

impl StateMachine for ListMachine {
    type Error = Corrupt;
    fn applied_zxid(&self) -> Zxid {
        self.txns.last().map_or(0, |t| t.0)
    }
    fn apply(&mut self, txn: &Txn) -> Result<(), Corrupt> {
        self.txns.push((txn.zxid, txn.data.clone()));
        Ok(())
    }
    fn snapshot(&self, max_chunk_bytes: usize) -> Result<Vec<Bytes>, Corrupt> {
        let mut b = BytesMut::new();
        for (z, d) in &self.txns {
            b.put_i64(*z);
            b.put_u32(d.len() as u32);
            b.put_slice(d);
        }
        let mut all = b.freeze();
        let mut out = Vec::new();
        while all.len() > max_chunk_bytes {
            out.push(all.split_to(max_chunk_bytes));
        }
        out.push(all);
        Ok(out)
    }
    fn restore(&mut self, zxid: Zxid, chunks: &[Bytes]) -> Result<(), Corrupt> {
        let mut b: Bytes = chunks.concat().into();
        let mut txns = Vec::new();
        while b.has_remaining() {
            if b.remaining() < 12 {
                return Err(Corrupt);
            }
            let z = b.get_i64();
            let len = b.get_u32() as usize;
            if b.remaining() < len {
                return Err(Corrupt);
            }
            txns.push((z, b.split_to(len)));
        }
        if txns.last().map_or(0, |t| t.0) != zxid {
            return Err(Corrupt);
        }
        self.txns = txns;
        Ok(())
    }
}

type Storage = NodeStorage<SledTxnLog, FileEpochStore, ListMachine>;

fn open_storage(dir: &std::path::Path, id: u64) -> anyhow::Result<Storage> {
    let node_dir = dir.join(format!("node{id}"));
    let log = SledTxnLog::open(node_dir.join("log"), SledLogOptions::default())?;
    let epochs = FileEpochStore::open(node_dir.join("epochs"))?;
    Ok(NodeStorage::new(log, epochs, ListMachine::default(), 0))
}

fn ip(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("zk_quorum=info")),
        )
        .init();
    let dir = tempfile::tempdir()?;
    let config = Config::default();
    let options = DriverOptions {
        tick_time: Duration::from_millis(200),
        ..DriverOptions::default()
    };

    // Node 1: the leader, listening on 127.0.0.1 (port chosen by the OS).
    let (incoming, addr) = bind_local(ip(1), 0).await?;
    let (client, proposals) = LeaderClient::new(256);
    let (leader_status_tx, mut leader_status) = watch::channel(NodeStatus::default());
    let (stop_leader, leader_stopped) = oneshot::channel::<()>();
    let mut st1 = open_storage(dir.path(), 1)?;
    let (cfg, opts) = (config.clone(), options.clone());
    let leader = tokio::spawn(async move {
        let shutdown = async {
            let _ = leader_stopped.await;
        };
        let ensemble = Ensemble::new([1, 2, 3], []);
        let why = run_leader(
            1,
            cfg,
            ensemble,
            opts,
            &mut st1,
            incoming,
            proposals,
            leader_status_tx,
            shutdown,
        )
        .await;
        (why, st1)
    });

    // Nodes 2 and 3: followers, dialing from their own address.
    let mut followers = Vec::new();
    for id in [2u64, 3] {
        let mut st = open_storage(dir.path(), id)?;
        let (status_tx, status) = watch::channel(NodeStatus::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let (cfg, opts, addr) = (config.clone(), options.clone(), addr.to_string());
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            let dialer = TcpDialer {
                local_ip: Some(ip(id as u8)),
            };
            let why = run_learner(
                id, 1, &addr, false, cfg, opts, &mut st, dialer, status_tx, shutdown,
            )
            .await;
            (why, st)
        });
        followers.push((id, status, stop, task));
    }

    tokio::time::timeout(
        Duration::from_secs(10),
        leader_status.wait_for(|s| s.serving),
    )
    .await
    .context("the leader was not established")??;
    let started = Instant::now();
    let writes = 200;
    // Pipelined, as a server's request processor does: submit every write in order without
    // waiting for the previous commit, then wait for the commits.
    let mut pending = Vec::new();
    for i in 0..writes {
        pending.push(client.submit(Bytes::from(format!("set /k{i}"))).await?);
    }
    let mut last = 0;
    for commit in pending {
        let zxid = commit.await?;
        if zxid <= last {
            bail!("commits out of submit order: {zxid:#x} after {last:#x}");
        }
        last = zxid;
    }
    let elapsed = started.elapsed();
    println!("{writes} writes committed in {elapsed:?} (last zxid {last:#x})");

    for (id, status, _, _) in followers.iter_mut() {
        tokio::time::timeout(
            Duration::from_secs(10),
            status.wait_for(|s| s.applied >= last),
        )
        .await
        .with_context(|| format!("node {id} did not apply everything"))??;
    }
    let _ = stop_leader.send(());
    let (why, st1) = leader.await?;
    println!("leader stopped: {:?}; {:?}", why?, *leader_status.borrow());
    for (id, _, stop, task) in followers {
        let _ = stop.send(());
        let (why, st) = task.await?;
        println!(
            "node {id} stopped: {:?}; applied {} txns",
            why?,
            st.machine.txns.len()
        );
        if st.machine != st1.machine {
            bail!("node {id} differs from the leader");
        }
    }
    println!(
        "all three nodes applied the same {} txns in the same order",
        st1.machine.txns.len()
    );
    Ok(())
}
