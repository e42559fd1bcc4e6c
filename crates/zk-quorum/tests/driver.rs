//! The tokio driver over real gRPC streams on 127.0.0.x: a 3-node ensemble commits
//! writes; a late follower catches up by DIFF or SNAP; a restarted follower re-syncs from
//! its kept storage.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use tokio::sync::{oneshot, watch};
use zk_quorum::driver::{
    DriverOptions, LeaderClient, LearnerInbox, NodeStatus, NodeStorage, Stopped,
};
use zk_quorum::{Config, Ensemble, StateMachine, Txn, ZabError, Zxid};
use zk_storage::log::{MemEpochStore, MemTxnLog};

mod support;
use support::{ListMachine, Running};

type Storage = NodeStorage<MemTxnLog, MemEpochStore, ListMachine>;

fn storage() -> Storage {
    NodeStorage::new(
        MemTxnLog::new(),
        MemEpochStore::new(),
        ListMachine::default(),
        0,
    )
}

fn options() -> DriverOptions {
    DriverOptions {
        tick_time: Duration::from_millis(100),
        learner_queue: 256,
        connect_timeout: Duration::from_secs(2),
        ..DriverOptions::default()
    }
}

async fn wait_applied(rx: &mut watch::Receiver<NodeStatus>, zxid: Zxid) -> anyhow::Result<()> {
    tokio::time::timeout(
        Duration::from_secs(20),
        rx.wait_for(|s| s.serving && s.applied >= zxid),
    )
    .await
    .context("timed out waiting for the node to apply")??;
    Ok(())
}

type Task = support::Task<Storage>;

struct Leading {
    client: LeaderClient,
    addr: String,
    status: watch::Receiver<NodeStatus>,
    stop: oneshot::Sender<()>,
    task: Task,
}

async fn start_leader(config: Config, st: Storage) -> anyhow::Result<Leading> {
    start_leader_of(Ensemble::new([1, 2, 3], []), config, st).await
}

async fn start_leader_of(
    ensemble: Ensemble,
    config: Config,
    st: Storage,
) -> anyhow::Result<Leading> {
    let (client, proposals) = LeaderClient::new(64);
    let (addr, node) = support::start_leader(config, ensemble, options(), st, proposals).await?;
    Ok(Leading {
        client,
        addr,
        status: node.status,
        stop: node.stop,
        task: node.task,
    })
}

type Following = Running<Storage>;

fn start_follower(id: u64, addr: String, config: Config, st: Storage) -> Following {
    start_learner(id, false, addr, config, st)
}

fn start_learner(id: u64, observer: bool, addr: String, config: Config, st: Storage) -> Following {
    let inbox = LearnerInbox::detached();
    support::start_learner(id, observer, &addr, config, options(), st, inbox)
}

async fn stop(stop: oneshot::Sender<()>, task: Task) -> anyhow::Result<(Stopped, Storage)> {
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(20), task).await??
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_commit_and_a_late_follower_catches_up() -> anyhow::Result<()> {
    let config = Config {
        committed_log_count: 5,
        snapshot_size_percent: None,
        ..Config::default()
    };
    let mut leader = start_leader(config.clone(), storage()).await?;
    let mut f2 = start_follower(2, leader.addr.clone(), config.clone(), storage());
    wait_applied(&mut leader.status, 0).await?;
    let mut last = 0;
    for i in 0..40 {
        last = leader
            .client
            .propose(Bytes::from(format!("write {i}")))
            .await?;
    }
    wait_applied(&mut leader.status, last).await?;
    wait_applied(&mut f2.status, last).await?;

    // Node 3 joins 40 txns behind, beyond the 5 kept in memory and with disk DIFF off:
    // it gets a snapshot.
    let mut f3 = start_follower(3, leader.addr.clone(), config.clone(), storage());
    wait_applied(&mut f3.status, last).await?;
    let s = *leader.status.borrow();
    assert_eq!(
        (s.syncs_diff, s.syncs_trunc, s.syncs_snap),
        (1, 0, 1),
        "{s:?}"
    );
    for i in 40..50 {
        last = leader
            .client
            .propose(Bytes::from(format!("write {i}")))
            .await?;
    }
    wait_applied(&mut f2.status, last).await?;
    wait_applied(&mut f3.status, last).await?;

    // Stop node 3 and restart it from its storage while writes go on: it re-syncs by DIFF.
    let (why, st3) = stop(f3.stop, f3.task).await?;
    assert_eq!(why, Stopped::Shutdown);
    assert_eq!(st3.machine.applied_zxid(), last);
    for i in 50..54 {
        last = leader
            .client
            .propose(Bytes::from(format!("write {i}")))
            .await?;
    }
    let mut f3 = start_follower(3, leader.addr.clone(), config.clone(), st3);
    wait_applied(&mut f3.status, last).await?;
    let s = *leader.status.borrow();
    assert_eq!(
        (s.syncs_diff, s.syncs_snap),
        (2, 1),
        "4 txns behind, within the 5 in memory: DIFF; {s:?}"
    );

    // Node 2 is replaced by an empty node: 54 txns behind it gets a SNAP.
    let (_, _) = stop(f2.stop, f2.task).await?;
    let mut f2 = start_follower(2, leader.addr.clone(), config.clone(), storage());
    wait_applied(&mut f2.status, last).await?;
    assert_eq!(leader.status.borrow().syncs_snap, 2);

    // The leader goes away: both followers go back to LOOKING with their state intact.
    let (why, leader_st) = stop(leader.stop, leader.task).await?;
    assert_eq!(why, Stopped::Shutdown);
    assert_eq!(leader_st.machine.applied_zxid(), last);
    for f in [f2, f3] {
        let (reason, st) = tokio::time::timeout(Duration::from_secs(20), f.task).await???;
        assert!(
            matches!(
                reason,
                Stopped::Looking(ZabError::Disconnected(1) | ZabError::Timeout { .. })
            ),
            "{reason:?}"
        );
        assert_eq!(st.machine.txns.len(), 54);
        assert_eq!(st.machine.applied_zxid(), last);
        assert_eq!(
            st.machine.txns.last().map(|t| t.1.clone()),
            Some(Bytes::from("write 53"))
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_without_a_quorum_gives_up_after_init_limit() -> anyhow::Result<()> {
    let config = Config {
        init_limit: 3,
        ..Config::default()
    };
    let leader = start_leader(config, storage()).await?;
    let (reason, _) = tokio::time::timeout(Duration::from_secs(10), leader.task).await???;
    assert!(
        matches!(reason, Stopped::Looking(ZabError::Timeout { ticks: 3, .. })),
        "{reason:?}"
    );
    drop(leader.stop);
    Ok(())
}

/// A raw learner stream to the leader at `addr`, with `first` already queued.
async fn raw_stream(
    addr: &str,
    packets: Vec<zk_proto::peer::quorum::QuorumPacket>,
) -> anyhow::Result<(
    tokio::sync::mpsc::Sender<zk_proto::peer::quorum::QuorumPacket>,
    tonic::Streaming<zk_proto::peer::quorum::QuorumPacket>,
)> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut client = zk_proto::peer::quorum::quorum_client::QuorumClient::new(channel)
        .max_encoding_message_size(64 * 1024 * 1024);
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    for p in packets {
        tx.send(p).await?;
    }
    let inbound = client
        .learn(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok((tx, inbound))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_learner_input_is_refused_without_hurting_the_leader() -> anyhow::Result<()> {
    use zk_quorum::{LearnerInfo, Packet};
    let mut leader = start_leader(Config::default(), storage()).await?;
    let _f2 = start_follower(2, leader.addr.clone(), Config::default(), storage());
    wait_applied(&mut leader.status, 0).await?;

    // A stream that does not start with FOLLOWERINFO is refused.
    let err = raw_stream(&leader.addr, vec![Packet::Ack { zxid: 1 }.into()])
        .await
        .err();
    let status = err
        .and_then(|e| e.downcast::<tonic::Status>().ok())
        .context("no status")?;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    // A learner whose message is over the size limit gets the decode error back.
    let info = Packet::LearnerInfo(LearnerInfo {
        sid: 3,
        accepted_epoch: 0,
        last_zxid: 0,
        observer: false,
    });
    let (tx, mut inbound) = raw_stream(&leader.addr, vec![info.into()]).await?;
    let first = inbound.message().await?.map(Packet::try_from).transpose()?;
    assert_eq!(first, Some(Packet::LeaderInfo { new_epoch: 1 }));
    let huge = Packet::Proposal(Txn::new(1, vec![0u8; 5 * 1024 * 1024]));
    tx.send(huge.into()).await?;
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match inbound.message().await {
                Ok(Some(_)) => continue,
                other => break other,
            }
        }
    })
    .await?;
    let status = end.err().context("the stream ended without an error")?;
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");

    // The leader still serves.
    let z = leader
        .client
        .propose(Bytes::from_static(b"still here"))
        .await?;
    assert_eq!(z, zk_proto::zxid::make(1, 1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_applies_every_commit_but_does_not_count() -> anyhow::Result<()> {
    let ensemble = Ensemble::new([1, 2, 3], [4]);
    let mut leader = start_leader_of(ensemble, Config::default(), storage()).await?;
    let mut obs = start_learner(4, true, leader.addr.clone(), Config::default(), storage());
    // An observer alone gives the leader no quorum.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!leader.status.borrow().serving);
    let mut f2 = start_follower(2, leader.addr.clone(), Config::default(), storage());
    wait_applied(&mut leader.status, 0).await?;
    let mut last = 0;
    for i in 0..20 {
        last = leader.client.propose(Bytes::from(format!("w{i}"))).await?;
    }
    wait_applied(&mut f2.status, last).await?;
    wait_applied(&mut obs.status, last).await?;
    let (_, obs_st) = stop(obs.stop, obs.task).await?;
    let (_, f2_st) = stop(f2.stop, f2.task).await?;
    assert_eq!(obs_st.machine.txns, f2_st.machine.txns);
    assert_eq!(obs_st.machine.txns.len(), 20);
    let _ = stop(leader.stop, leader.task).await?;
    Ok(())
}
