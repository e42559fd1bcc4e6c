//! Elections over real gRPC streams on 127.0.0.x.

mod common;

use anyhow::Context;
use common::{Cluster, inputs, one_leader};
use zk_election::PeerState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_the_highest_zxid() -> anyhow::Result<()> {
    common::init_tracing();
    let mut c = Cluster::bind(&[1, 2, 3], &[]).await?;
    c.start_all().await?;
    let logs = inputs(&[(1, 5, 1), (2, 9, 1), (3, 7, 1)]);
    let d = c.elect(&[1, 2, 3], &logs).await?;
    assert_eq!(one_leader(&d)?, 2);
    assert_eq!(d[&2].state, PeerState::Leading);
    assert_eq!(d[&1].state, PeerState::Following);
    assert_eq!(d[&3].state, PeerState::Following);
    assert_eq!(d[&1].vote.zxid, zk_proto::zxid::make(1, 9));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_and_an_observer_elect_by_epoch_first() -> anyhow::Result<()> {
    common::init_tracing();
    let mut c = Cluster::bind(&[1, 2, 3, 4, 5], &[6]).await?;
    c.start_all().await?;
    // Node 1 has the newest epoch, node 4 the largest zxid of an older epoch.
    let logs = inputs(&[
        (1, 1, 3),
        (2, 4, 2),
        (3, 4, 2),
        (4, 90, 2),
        (5, 4, 2),
        (6, 0, 0),
    ]);
    let d = c.elect(&[1, 2, 3, 4, 5, 6], &logs).await?;
    assert_eq!(one_leader(&d)?, 1);
    assert_eq!(d[&1].state, PeerState::Leading);
    assert_eq!(d[&6].state, PeerState::Observing);
    for sid in 2..=5 {
        assert_eq!(d[&sid].state, PeerState::Following);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_leader_makes_the_rest_elect_again_and_it_rejoins_on_restart()
-> anyhow::Result<()> {
    common::init_tracing();
    let mut c = Cluster::bind(&[1, 2, 3, 4, 5], &[]).await?;
    c.start_all().await?;
    let logs = inputs(&[(1, 1, 1), (2, 2, 1), (3, 3, 1), (4, 4, 1), (5, 5, 1)]);
    let first = c.elect(&[1, 2, 3, 4, 5], &logs).await?;
    assert_eq!(one_leader(&first)?, 5);
    c.stop(5);
    let second = c.elect(&[1, 2, 3, 4], &logs).await?;
    assert_eq!(one_leader(&second)?, 4);
    assert_eq!(second[&4].state, PeerState::Leading);
    assert!(second[&1].election_epoch > first[&1].election_epoch);
    // And once more: a quorum of 3 of 5 is still up after stopping node 4.
    c.stop(4);
    let third = c.elect(&[1, 2, 3], &logs).await?;
    assert_eq!(one_leader(&third)?, 3);
    // The first leader restarts (same address, fresh state) and joins the running
    // ensemble instead of taking over with its better log.
    c.start(5).await?;
    let back = c.elect(&[5], &logs).await?;
    assert_eq!(
        (back[&5].leader(), back[&5].state),
        (3, PeerState::Following)
    );
    assert!(back[&5].joined_established);
    assert_eq!(c.nodes[&3].status().state, PeerState::Leading);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_late_joins_the_existing_leader() -> anyhow::Result<()> {
    common::init_tracing();
    let mut c = Cluster::bind(&[1, 2, 3], &[]).await?;
    c.start(1).await?;
    c.start(2).await?;
    // Node 3 has the best log, but the ensemble already runs without it.
    let logs = inputs(&[(1, 5, 1), (2, 6, 1), (3, 99, 1)]);
    let first = c.elect(&[1, 2], &logs).await?;
    assert_eq!(one_leader(&first)?, 2);
    c.start(3).await?;
    let late = c.elect(&[3], &logs).await?;
    assert_eq!(late[&3].leader(), 2, "{late:?}");
    assert_eq!(late[&3].state, PeerState::Following);
    assert!(late[&3].joined_established);
    // No new election happened on the running nodes.
    assert_eq!(c.nodes[&2].status().state, PeerState::Leading);
    assert_eq!(c.nodes[&1].status().state, PeerState::Following);
    assert_eq!(c.nodes[&1].status().logical_clock, first[&1].election_epoch);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_highest_zxid_wins_even_when_it_starts_last() -> anyhow::Result<()> {
    common::init_tracing();
    let mut c = Cluster::bind(&[1, 2, 3, 4, 5], &[]).await?;
    let logs = inputs(&[(1, 5, 2), (2, 6, 2), (3, 7, 2), (4, 1, 2), (5, 2, 2)]);
    // Two of five cannot elect; they keep looking.
    c.start(4).await?;
    c.start(5).await?;
    let (Some(n4), Some(n5)) = (c.nodes.remove(&4), c.nodes.remove(&5)) else {
        anyhow::bail!("nodes not started")
    };
    let (i4, i5) = (logs[&4], logs[&5]);
    let t4 = tokio::spawn(async move {
        let d = n4.run(i4).await;
        (n4, d)
    });
    let t5 = tokio::spawn(async move {
        let d = n5.run(i5).await;
        (n5, d)
    });
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert!(
        !t4.is_finished() && !t5.is_finished(),
        "two of five must not decide"
    );
    // Now the node with the best log starts, last.
    c.start(3).await?;
    let d3 = c.elect(&[3], &logs).await?;
    let ((_n4, d4), (_n5, d5)) = tokio::time::timeout(common::HANG_GUARD, async {
        let a = t4.await?;
        let b = t5.await?;
        anyhow::Ok((a, b))
    })
    .await??;
    let (d4, d5) = (d4?, d5?);
    assert_eq!((d3[&3].leader(), d4.leader(), d5.leader()), (3, 3, 3));
    assert_eq!(d3[&3].state, PeerState::Leading);
    assert_eq!(d4.state, PeerState::Following);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outgoing_connections_come_from_the_nodes_own_address() -> anyhow::Result<()> {
    common::init_tracing();
    // Node 2 runs on 127.0.0.2; "node 1" is a bare listener on 127.0.0.1 that only
    // records who connects (the larger sid dials the smaller).
    let mut c = Cluster::bind(&[1, 2], &[]).await?;
    c.start(2).await?;
    let node1 = c.take_listener(1).context("listener")?;
    let (_stream, peer) = tokio::time::timeout(common::HANG_GUARD, node1.accept()).await??;
    assert_eq!(peer.ip(), std::net::IpAddr::from([127, 0, 0, 2]));
    Ok(())
}
