//! A 3-node election in one process on 127.0.0.1, 127.0.0.2 and 127.0.0.3.
//!
//! `cargo run -p zk-election --example three_nodes`
//!
//! Each node binds its own loopback address (port 0) and dials its peers from that
//! address. Node 2 has the highest zxid, so it leads. Then the leader stops and the other
//! two elect again.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context;
use zk_election::{ElectionHandle, ElectionInputs, ElectionNode, Member, NodeConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "zk_election=info".into()),
        )
        .init();

    let mut listeners = BTreeMap::new();
    let mut members = BTreeMap::new();
    for sid in 1..=3u64 {
        let l = tokio::net::TcpListener::bind(format!("127.0.0.{sid}:0")).await?;
        members.insert(
            sid,
            Member {
                election_addr: l.local_addr()?.to_string(),
                observer: false,
            },
        );
        listeners.insert(sid, l);
    }
    // (last logged zxid, currentEpoch) per node.
    let logs = BTreeMap::from([
        (1u64, (0x1_0000_0005i64, 1i64)),
        (2, (0x1_0000_0009, 1)),
        (3, (0x1_0000_0007, 1)),
    ]);
    let mut nodes: BTreeMap<u64, ElectionHandle> = BTreeMap::new();
    for (sid, l) in listeners {
        nodes.insert(
            sid,
            ElectionNode::start_tcp(NodeConfig::new(sid, members.clone()), l)?,
        );
    }

    let started = Instant::now();
    let decisions = elect(&nodes, &logs).await?;
    println!("elected in {:?}:", started.elapsed());
    for (sid, d) in &decisions {
        println!(
            "  node {sid}: {} leader={} round={}",
            d.state,
            d.leader(),
            d.election_epoch
        );
    }
    let leader = decisions
        .values()
        .next()
        .map(|d| d.leader())
        .context("no decision")?;

    println!("stopping leader {leader}");
    nodes.remove(&leader);
    let started = Instant::now();
    let decisions = elect(&nodes, &logs).await?;
    println!("re-elected in {:?}:", started.elapsed());
    for (sid, d) in &decisions {
        println!(
            "  node {sid}: {} leader={} round={}",
            d.state,
            d.leader(),
            d.election_epoch
        );
    }
    Ok(())
}

async fn elect(
    nodes: &BTreeMap<u64, ElectionHandle>,
    logs: &BTreeMap<u64, (i64, i64)>,
) -> anyhow::Result<BTreeMap<u64, zk_election::Decision>> {
    let runs = nodes.iter().map(|(sid, node)| {
        let (last_logged_zxid, current_epoch) = logs.get(sid).copied().unwrap_or((0, 0));
        async move {
            let d = node
                .run(ElectionInputs {
                    last_logged_zxid,
                    current_epoch,
                })
                .await?;
            anyhow::Ok((*sid, d))
        }
    });
    let all = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        futures::future::try_join_all(runs),
    )
    .await
    .context("election timed out")??;
    Ok(all.into_iter().collect())
}
