//! Bad input over gRPC: unknown sids, malformed messages, stalled peers. Each is logged
//! and dropped; the election still completes.

mod common;

use std::time::Duration;

use common::{Cluster, inputs, one_leader};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use zk_proto::peer::election as pb;
use zk_proto::peer::election::election_client::ElectionClient;
use zk_proto::peer::election::election_message::Msg;

fn hello(sid: u64) -> pb::ElectionMessage {
    pb::ElectionMessage {
        msg: Some(Msg::Hello(pb::Hello {
            sid,
            protocol_version: 1,
            election_address: String::new(),
        })),
    }
}

fn notification(n: pb::Notification) -> pb::ElectionMessage {
    pb::ElectionMessage {
        msg: Some(Msg::Notification(n)),
    }
}

async fn client(
    c: &Cluster,
    sid: u64,
) -> anyhow::Result<ElectionClient<tonic::transport::Channel>> {
    let addr = &c.members[&sid].election_addr;
    Ok(ElectionClient::connect(format!("http://{addr}")).await?)
}

/// Opens a stream whose messages the test controls.
async fn open(
    c: &Cluster,
    to: u64,
    first: Vec<pb::ElectionMessage>,
) -> anyhow::Result<(
    mpsc::Sender<pb::ElectionMessage>,
    Result<tonic::Response<tonic::Streaming<pb::ElectionMessage>>, tonic::Status>,
)> {
    let mut cl = client(c, to).await?;
    let (tx, rx) = mpsc::channel(16);
    for m in first {
        tx.send(m).await?;
    }
    let r = tokio::time::timeout(common::HANG_GUARD, cl.exchange(ReceiverStream::new(rx))).await?;
    Ok((tx, r))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_sid_and_bad_hellos_are_refused() -> anyhow::Result<()> {
    common::init_tracing();
    let mut c = Cluster::bind(&[1, 2, 3], &[]).await?;
    c.start(1).await?;
    c.start(2).await?;

    let (_tx, r) = open(&c, 1, vec![hello(99)]).await?;
    assert_eq!(r.err().map(|s| s.code()), Some(Code::PermissionDenied));

    let (_tx, r) = open(&c, 1, vec![hello(1)]).await?;
    assert_eq!(
        r.err().map(|s| s.code()),
        Some(Code::InvalidArgument),
        "own sid"
    );

    let first = notification(pb::Notification {
        sid: 3,
        ..Default::default()
    });
    let (_tx, r) = open(&c, 1, vec![first]).await?;
    assert_eq!(
        r.err().map(|s| s.code()),
        Some(Code::InvalidArgument),
        "no hello first"
    );

    let mut wrong_version = hello(3);
    if let Some(Msg::Hello(h)) = wrong_version.msg.as_mut() {
        h.protocol_version = 7;
    }
    let (_tx, r) = open(&c, 1, vec![wrong_version]).await?;
    assert_eq!(r.err().map(|s| s.code()), Some(Code::FailedPrecondition));

    // Larger than the 64 KiB limit: a decode error on the inbound stream.
    let mut huge = hello(3);
    if let Some(Msg::Hello(h)) = huge.msg.as_mut() {
        h.election_address = "x".repeat(100 * 1024);
    }
    let (_tx, r) = open(&c, 1, vec![huge]).await?;
    assert!(r.is_err(), "oversized message must fail the stream");

    let d = c.elect(&[1, 2], &inputs(&[(1, 1, 1), (2, 2, 1)])).await?;
    assert_eq!(one_leader(&d)?, 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_dropped_and_the_stream_stays_usable() -> anyhow::Result<()> {
    common::init_tracing();
    let mut c = Cluster::bind(&[1, 2, 3], &[]).await?;
    c.start(1).await?;
    c.start(2).await?;
    // The test speaks for sid 3 on a stream to node 1 (3 > 1, so node 1 accepts it).
    let garbage = vec![
        hello(3),
        pb::ElectionMessage { msg: None },
        notification(pb::Notification {
            sid: 3,
            state: 42,
            leader: 3,
            zxid: i64::MAX,
            peer_epoch: i64::MAX,
            election_epoch: 1,
            config_version: 0,
        }),
        // Claims to be from sid 2.
        notification(pb::Notification {
            sid: 2,
            leader: 2,
            zxid: i64::MAX,
            peer_epoch: i64::MAX,
            election_epoch: 1,
            ..Default::default()
        }),
        // A vote for a sid that is not a member.
        notification(pb::Notification {
            sid: 3,
            leader: 77,
            zxid: i64::MAX,
            peer_epoch: i64::MAX,
            election_epoch: 1,
            ..Default::default()
        }),
        hello(3),
    ];
    let (tx, r) = open(&c, 1, garbage).await?;
    let mut inbound = r?.into_inner();

    // After all that, a valid vote on the same stream still counts: "3" proposes itself
    // with the best log, and 1 and 2 follow it.
    tx.send(notification(pb::Notification {
        sid: 3,
        leader: 3,
        zxid: zk_proto::zxid::make(5, 1),
        peer_epoch: 5,
        election_epoch: 1,
        state: pb::PeerState::Looking as i32,
        config_version: 0,
    }))
    .await?;
    let d = c.elect(&[1, 2], &inputs(&[(1, 1, 1), (2, 2, 1)])).await?;
    assert_eq!(one_leader(&d)?, 3);
    assert_eq!(d[&1].vote.peer_epoch, 5);
    // Node 1 talked to "3" as to any peer.
    let first = tokio::time::timeout(common::HANG_GUARD, inbound.message()).await??;
    assert!(matches!(
        first,
        Some(pb::ElectionMessage {
            msg: Some(Msg::Notification(_))
        })
    ));
    drop(tx);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_peers_do_not_stall_the_election() -> anyhow::Result<()> {
    common::init_tracing();
    let mut c = Cluster::bind(&[1, 2, 3], &[]).await?;
    c.hello_timeout = Duration::from_millis(300);
    c.start(1).await?;
    c.start(2).await?;

    // A TCP connection that never speaks HTTP/2.
    let _raw = tokio::net::TcpStream::connect(&c.members[&1].election_addr).await?;
    // A stream that never sends its hello: refused after the hello timeout.
    let (_silent, r) = open(&c, 2, vec![]).await?;
    assert_eq!(r.err().map(|s| s.code()), Some(Code::DeadlineExceeded));
    // A peer (speaking for sid 3) that says hello and then never reads.
    let (_quiet, r) = open(&c, 1, vec![hello(3)]).await?;
    let _never_read = r?;

    let d = c.elect(&[1, 2], &inputs(&[(1, 1, 1), (2, 2, 1)])).await?;
    assert_eq!(one_leader(&d)?, 2);
    // Again, after the leader steps back: the stalled peers are still connected.
    let d = c.elect(&[1, 2], &inputs(&[(1, 1, 1), (2, 2, 1)])).await?;
    assert_eq!(one_leader(&d)?, 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_alg_other_than_3_is_refused_at_start() -> anyhow::Result<()> {
    common::init_tracing();
    let c = Cluster::bind(&[1, 2, 3], &[]).await?;
    let mut cfg = c.config(1);
    cfg.election_alg = 0;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let err = zk_election::ElectionNode::start_tcp(cfg, listener).err();
    let msg = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.contains("electionAlg=0 is not supported") && msg.contains("only electionAlg=3"),
        "{msg}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_on_an_accepted_stream_is_sent_back() -> anyhow::Result<()> {
    common::init_tracing();
    let mut c = Cluster::bind(&[1, 2, 3], &[]).await?;
    c.start(1).await?;
    let (tx, r) = open(&c, 1, vec![hello(3)]).await?;
    let mut inbound = r?.into_inner();
    // Over the 64 KiB limit, after the stream was accepted.
    let mut huge = hello(3);
    if let Some(Msg::Hello(h)) = huge.msg.as_mut() {
        h.election_address = "x".repeat(100 * 1024);
    }
    tx.send(huge).await?;
    let end = tokio::time::timeout(common::HANG_GUARD, async {
        loop {
            match inbound.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await?;
    assert_eq!(end.err().map(|s| s.code()), Some(Code::OutOfRange));
    Ok(())
}
