//! Three Zab nodes in one process over gRPC on 127.0.0.1, 127.0.0.2 and 127.0.0.3, each
//! with a sled txn log and epoch files in a temporary directory. Node 1 leads (the
//! election is left out), nodes 2 and 3 follow; 200 writes are committed, then every node's
//! state is compared.
//!
//! ```text
//! cargo run -p zk-quorum --example three_nodes
//! RUST_LOG=zk_quorum=debug cargo run -p zk-quorum --example three_nodes
//! ```

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use zk_quorum::driver::{DriverOptions, LeaderClient, LearnerInbox, NodeStorage};
use zk_quorum::{Config, Ensemble};
use zk_storage::log::{FileEpochStore, SledLogOptions, SledTxnLog};

#[path = "../tests/support/mod.rs"]
mod support;
use support::{ListMachine, Running};

type Storage = NodeStorage<SledTxnLog, FileEpochStore, ListMachine>;

fn open_storage(dir: &std::path::Path, id: u64) -> anyhow::Result<Storage> {
    support::open_sled(
        dir,
        id,
        SledLogOptions::default(),
        ListMachine::default(),
        0,
    )
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
    let (client, proposals) = LeaderClient::new(256);
    let st1 = open_storage(dir.path(), 1)?;
    let ensemble = Ensemble::new([1, 2, 3], []);
    let (addr, leader) =
        support::start_leader(config.clone(), ensemble, options.clone(), st1, proposals).await?;
    let Running {
        status: mut leader_status,
        stop: stop_leader,
        task: leader,
    } = leader;

    // Nodes 2 and 3: followers, dialing from their own address.
    let mut followers = Vec::new();
    for id in [2u64, 3] {
        let st = open_storage(dir.path(), id)?;
        let (cfg, opts) = (config.clone(), options.clone());
        let inbox = LearnerInbox::detached();
        let node = support::start_learner(id, false, &addr, cfg, opts, st, inbox);
        followers.push((id, node.status, node.stop, node.task));
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
    let (why, st1) = leader.await??;
    println!("leader stopped: {why:?}; {:?}", *leader_status.borrow());
    for (id, _, stop, task) in followers {
        let _ = stop.send(());
        let (why, st) = task.await??;
        println!(
            "node {id} stopped: {why:?}; applied {} txns",
            st.machine.txns.len()
        );
        if st.machine.txns != st1.machine.txns {
            bail!("node {id} differs from the leader");
        }
    }
    println!(
        "all three nodes applied the same {} txns in the same order",
        st1.machine.txns.len()
    );
    Ok(())
}
