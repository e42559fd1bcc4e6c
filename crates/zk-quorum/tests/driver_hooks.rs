//! The server hooks of the driver, 3 nodes over gRPC on 127.0.0.1–3 with in-memory logs:
//! forwarded writes, forwarded `sync`, session touches, revalidation, and the rollback of
//! a restarted learner's state machine after TRUNC.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use tokio::sync::mpsc;
use zk_proto::zxid::make;
use zk_quorum::driver::{
    DriverOptions, LeaderClient, LeaderEvent, LearnerClient, LearnerEvent, NodeStorage,
    PendingCommit, Stopped,
};
use zk_quorum::{Config, Ensemble, ForwardedRequest, StateMachine, Txn, ZabError, Zxid};
use zk_storage::log::{LogError, LogIter, LogRecord, MemEpochStore, MemTxnLog, TxnLog};

mod support;
use support::{ListMachine, Running};

/// ZooKeeper's op code of `sync`.
const OP_SYNC: i32 = 9;
/// ZooKeeper's op code of `create`.
const OP_CREATE: i32 = 1;

/// An in-memory log whose `sync` reports nothing durable beyond `ceiling`, to hold
/// proposals uncommitted.
#[derive(Debug)]
struct GatedLog {
    inner: MemTxnLog,
    ceiling: Arc<AtomicI64>,
}

impl TxnLog for GatedLog {
    fn append(&mut self, zxid: Zxid, payload: &[u8]) -> Result<(), LogError> {
        self.inner.append(zxid, payload)
    }
    fn append_batch(&mut self, records: &[(Zxid, &[u8])]) -> Result<(), LogError> {
        self.inner.append_batch(records)
    }
    fn sync(&mut self) -> Result<Option<Zxid>, LogError> {
        let durable = self.inner.sync()?;
        Ok(durable.map(|z| z.min(self.ceiling.load(Ordering::SeqCst))))
    }
    fn durable_zxid(&self) -> Option<Zxid> {
        self.inner.durable_zxid()
    }
    fn last_zxid(&self) -> Result<Option<Zxid>, LogError> {
        self.inner.last_zxid()
    }
    fn first_zxid(&self) -> Result<Option<Zxid>, LogError> {
        self.inner.first_zxid()
    }
    fn get(&self, zxid: Zxid) -> Result<Option<LogRecord>, LogError> {
        self.inner.get(zxid)
    }
    fn read_from(&self, from: Zxid) -> Result<LogIter<'_>, LogError> {
        self.inner.read_from(from)
    }
    fn truncate_after(&mut self, zxid: Zxid) -> Result<u64, LogError> {
        self.inner.truncate_after(zxid)
    }
    fn purge_before(&mut self, zxid: Zxid) -> Result<u64, LogError> {
        self.inner.purge_before(zxid)
    }
    fn location(&self) -> String {
        self.inner.location()
    }
}

type Storage<L> = NodeStorage<L, MemEpochStore, ListMachine>;

fn mem_storage() -> Storage<MemTxnLog> {
    NodeStorage::new(
        MemTxnLog::new(),
        MemEpochStore::new(),
        ListMachine::default(),
        0,
    )
}

fn gated_storage(ceiling: &Arc<AtomicI64>) -> Storage<GatedLog> {
    let log = GatedLog {
        inner: MemTxnLog::new(),
        ceiling: ceiling.clone(),
    };
    NodeStorage::new(log, MemEpochStore::new(), ListMachine::default(), 0)
}

/// What a server does on restart: load the newest durable snapshot (what `restore`
/// installed, empty if none), replay the whole log after it, committed or not, and pass
/// the snapshot's zxid as `log_base`.
fn restart(st: Storage<MemTxnLog>) -> anyhow::Result<Storage<MemTxnLog>> {
    let base = st.machine.snapshot.last().map_or(0, |t| t.0);
    let mut machine = ListMachine {
        txns: st.machine.snapshot.clone(),
        snapshot: st.machine.snapshot.clone(),
        ..ListMachine::default()
    };
    for r in st.log.read_from(base + 1)? {
        let r = r?;
        machine.apply(&Txn::new(r.zxid, r.payload))?;
    }
    Ok(NodeStorage::new(st.log, st.epochs, machine, base))
}

fn options() -> DriverOptions {
    DriverOptions {
        tick_time: Duration::from_millis(100),
        learner_queue: 256,
        connect_timeout: Duration::from_secs(2),
        ..DriverOptions::default()
    }
}

const WAIT: Duration = Duration::from_secs(20);

type Node<L> = Running<Storage<L>>;

impl<L> Node<L> {
    /// Waits until the node serves and has applied `zxid`. If its run ends first (its
    /// status channel closes), says how: why it went back to LOOKING, its error, or its
    /// panic, instead of a bare "channel closed".
    async fn wait_applied(&mut self, zxid: Zxid) -> anyhow::Result<()> {
        self.wait_applied_within(zxid, WAIT).await
    }

    async fn stop(self) -> anyhow::Result<(Stopped, Storage<L>)> {
        self.stop_within(WAIT).await
    }
}

struct LeaderNode<L> {
    node: Node<L>,
    addr: String,
    client: LeaderClient,
    events: mpsc::Receiver<LeaderEvent>,
}

impl<L> LeaderNode<L> {
    async fn next_event(&mut self) -> anyhow::Result<LeaderEvent> {
        tokio::time::timeout(WAIT, self.events.recv())
            .await
            .context("timed out waiting for a leader event")?
            .context("the leader's event channel closed")
    }
}

struct LearnerNode<L> {
    node: Node<L>,
    client: LearnerClient,
    events: mpsc::Receiver<LearnerEvent>,
}

impl<L> LearnerNode<L> {
    async fn next_event(&mut self) -> anyhow::Result<LearnerEvent> {
        tokio::time::timeout(WAIT, self.events.recv())
            .await
            .context("timed out waiting for a learner event")?
            .context("the learner's event channel closed")
    }
}

async fn start_leader<L: TxnLog + Send + 'static>(
    config: Config,
    st: Storage<L>,
) -> anyhow::Result<LeaderNode<L>> {
    start_leader_with(config, st, 64, 64).await
}

async fn start_leader_with<L: TxnLog + Send + 'static>(
    config: Config,
    st: Storage<L>,
    event_capacity: usize,
    client_capacity: usize,
) -> anyhow::Result<LeaderNode<L>> {
    let (client, inbox) = LeaderClient::new(client_capacity);
    let (events_tx, events) = mpsc::channel(event_capacity);
    // Node 4 observes.
    let ensemble = Ensemble::new([1, 2, 3], [4]);
    let inbox = inbox.with_events(events_tx);
    let (addr, node) = support::start_leader(config, ensemble, options(), st, inbox).await?;
    Ok(LeaderNode {
        node,
        addr,
        client,
        events,
    })
}

fn start_learner<L: TxnLog + Send + 'static>(
    id: u64,
    addr: String,
    config: Config,
    st: Storage<L>,
) -> LearnerNode<L> {
    let (client, inbox) = LearnerClient::new(16);
    let (events_tx, events) = mpsc::channel(64);
    let inbox = inbox.with_events(events_tx);
    let node = support::start_learner(id, id == 4, &addr, config, options(), st, inbox);
    LearnerNode {
        node,
        client,
        events,
    }
}

fn client_request(session_id: i64, cxid: i32, op_type: i32, body: &str) -> ForwardedRequest {
    ForwardedRequest {
        session_id,
        cxid,
        op_type,
        request: Bytes::from(body.to_owned()),
        auth: vec![("digest".into(), "user:hash".into())],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_writes_are_proposed_in_order_and_applied_everywhere() -> anyhow::Result<()> {
    let config = Config::default();
    let mut leader = start_leader(config.clone(), mem_storage()).await?;
    let mut f2 = start_learner(2, leader.addr.clone(), config.clone(), mem_storage());
    let mut f3 = start_learner(3, leader.addr.clone(), config.clone(), mem_storage());

    // Sent before the followers are synced: held, then forwarded once they are.
    for cxid in 0..3 {
        f2.client
            .forward(client_request(2, cxid, OP_CREATE, &format!("early {cxid}")))
            .await?;
    }
    leader.node.wait_applied(0).await?;
    f2.node.wait_applied(0).await?;
    f3.node.wait_applied(0).await?;
    let (c2, c3) = (f2.client.clone(), f3.client.clone());
    let senders = tokio::spawn(async move {
        for cxid in 3..33 {
            c2.forward(client_request(2, cxid, OP_CREATE, &format!("w {cxid}")))
                .await?;
            c3.forward(client_request(3, cxid, OP_CREATE, &format!("w {cxid}")))
                .await?;
        }
        anyhow::Ok(())
    });

    // The server side of the leader: every forwarded request becomes a txn, submitted
    // without waiting for the previous one to commit.
    let mut next_cxid = [0, 0, 0, 3];
    let mut submitted = Vec::new();
    let mut commits: Vec<PendingCommit> = Vec::new();
    while submitted.len() < 63 {
        let LeaderEvent::Request { from, request } = leader.next_event().await? else {
            continue;
        };
        ensure!(request.op_type == OP_CREATE && request.session_id == from as i64);
        ensure!(request.auth == vec![("digest".to_owned(), "user:hash".to_owned())]);
        let expected = next_cxid
            .get_mut(from as usize)
            .context("request from an unknown learner")?;
        ensure!(
            request.cxid == *expected,
            "learner {from}: cxid {} arrived, expected {expected}",
            request.cxid
        );
        *expected += 1;
        let txn = Bytes::from(format!(
            "{from}/{}/{}",
            request.cxid,
            String::from_utf8_lossy(&request.request)
        ));
        commits.push(leader.client.submit(txn.clone()).await?);
        submitted.push(txn);
    }
    senders.await??;
    let mut zxids = Vec::new();
    for c in commits {
        zxids.push(tokio::time::timeout(WAIT, c).await??);
    }
    ensure!(
        zxids.windows(2).all(|w| w[0] < w[1]),
        "proposed out of submit order: {zxids:x?}"
    );
    let last = *zxids.last().context("nothing committed")?;
    ensure!(last == make(1, 63));
    f2.node.wait_applied(last).await?;
    f3.node.wait_applied(last).await?;

    let (_, st2) = f2.node.stop().await?;
    let (_, st3) = f3.node.stop().await?;
    let (_, st1) = leader.node.stop().await?;
    let applied: Vec<Bytes> = st1.machine.txns.iter().map(|t| t.1.clone()).collect();
    assert_eq!(applied, submitted);
    assert_eq!(st2.machine.txns, st1.machine.txns);
    assert_eq!(st3.machine.txns, st1.machine.txns);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_sync_is_answered_after_earlier_proposals_commit() -> anyhow::Result<()> {
    let config = Config::default();
    let ceiling = Arc::new(AtomicI64::new(i64::MAX));
    let mut leader = start_leader(config.clone(), gated_storage(&ceiling)).await?;
    let mut f2 = start_learner(
        2,
        leader.addr.clone(),
        config.clone(),
        gated_storage(&ceiling),
    );
    let mut f3 = start_learner(
        3,
        leader.addr.clone(),
        config.clone(),
        gated_storage(&ceiling),
    );
    leader.node.wait_applied(0).await?;
    let first = leader.client.propose(Bytes::from_static(b"first")).await?;
    f2.node.wait_applied(first).await?;

    // With nothing pending, a sync is answered at once with the last commit.
    f2.client
        .forward(client_request(7, 1, OP_SYNC, "/"))
        .await?;
    let LeaderEvent::Request { from, request } = leader.next_event().await? else {
        bail!("expected the forwarded sync");
    };
    assert_eq!((from, request.op_type, request.cxid), (2, OP_SYNC, 1));
    leader
        .client
        .sync(from, request.session_id, request.cxid)
        .await?;
    assert_eq!(
        f2.next_event().await?,
        LearnerEvent::SyncReply {
            session_id: 7,
            cxid: 1,
            zxid: first
        }
    );

    // Nothing becomes durable on any node any more: the next proposal cannot commit.
    ceiling.store(first, Ordering::SeqCst);
    let mut pending = leader.client.submit(Bytes::from_static(b"pending")).await?;
    f2.client
        .forward(client_request(7, 2, OP_SYNC, "/"))
        .await?;
    let LeaderEvent::Request { from, request } = leader.next_event().await? else {
        bail!("expected the forwarded sync");
    };
    leader
        .client
        .sync(from, request.session_id, request.cxid)
        .await?;
    let early = tokio::time::timeout(Duration::from_millis(500), f2.events.recv()).await;
    assert!(
        early.is_err(),
        "sync answered before the proposal committed: {early:?}"
    );
    tokio::time::timeout(WAIT, leader.node.status.wait_for(|s| s.pending_syncs == 1))
        .await
        .context("the sync is not pending on the leader")??;
    assert!(
        tokio::time::timeout(Duration::from_millis(10), &mut pending)
            .await
            .is_err()
    );

    // Durability again; the next flush covers the pending proposal too.
    ceiling.store(i64::MAX, Ordering::SeqCst);
    let nudge = leader.client.submit(Bytes::from_static(b"nudge")).await?;
    let pending_zxid = tokio::time::timeout(WAIT, pending).await??;
    let LearnerEvent::SyncReply {
        session_id,
        cxid,
        zxid,
    } = f2.next_event().await?
    else {
        bail!("expected a sync reply");
    };
    assert_eq!((session_id, cxid), (7, 2));
    assert!(zxid >= pending_zxid, "{zxid:#x} < {pending_zxid:#x}");
    // The COMMITs precede the answer on the stream: the follower applied them first.
    assert!(f2.node.status.borrow().applied >= pending_zxid);
    let nudge_zxid = tokio::time::timeout(WAIT, nudge).await??;
    tokio::time::timeout(WAIT, leader.node.status.wait_for(|s| s.pending_syncs == 0))
        .await
        .context("the sync is still pending on the leader")??;
    f3.node.wait_applied(nudge_zxid).await?;

    let (_, st2) = f2.node.stop().await?;
    let (_, st1) = leader.node.stop().await?;
    let _ = f3.node.stop().await?;
    let applied: Vec<&[u8]> = st2.machine.txns.iter().map(|t| t.1.as_ref()).collect();
    assert_eq!(applied, [&b"first"[..], b"pending", b"nudge"]);
    assert_eq!(st2.machine.txns, st1.machine.txns);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_touches_reach_the_leader() -> anyhow::Result<()> {
    let config = Config::default();
    let mut leader = start_leader(config.clone(), mem_storage()).await?;
    let mut f2 = start_learner(2, leader.addr.clone(), config.clone(), mem_storage());
    let f3 = start_learner(3, leader.addr.clone(), config.clone(), mem_storage());
    f2.node.wait_applied(0).await?;
    f3.client.touch(42, 5000)?;
    f3.client.touch(43, 6000)?;
    f3.client.touch(42, 5000)?;
    let mut seen = std::collections::BTreeMap::new();
    while seen.len() < 2 {
        if let LeaderEvent::SessionTouches { from, touches } = leader.next_event().await? {
            assert_eq!(from, 3);
            for t in touches {
                seen.insert(t.session_id, t.timeout_ms);
            }
        }
    }
    assert_eq!(seen, [(42, 5000), (43, 6000)].into_iter().collect());
    let _ = f2.node.stop().await?;
    let _ = f3.node.stop().await?;
    let _ = leader.node.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revalidation_round_trip() -> anyhow::Result<()> {
    let config = Config::default();
    let mut leader = start_leader(config.clone(), mem_storage()).await?;
    let mut f2 = start_learner(2, leader.addr.clone(), config.clone(), mem_storage());
    let f3 = start_learner(3, leader.addr.clone(), config.clone(), mem_storage());
    f2.node.wait_applied(0).await?;
    for (session_id, valid) in [(99, true), (100, false)] {
        f2.client.revalidate(session_id, 4000).await?;
        let event = loop {
            match leader.next_event().await? {
                e @ LeaderEvent::Revalidate { .. } => break e,
                _ => continue,
            }
        };
        assert_eq!(
            event,
            LeaderEvent::Revalidate {
                from: 2,
                session_id,
                timeout_ms: 4000
            }
        );
        leader
            .client
            .revalidate_reply(2, session_id, 4000, valid)
            .await?;
        assert_eq!(
            f2.next_event().await?,
            LearnerEvent::RevalidateReply {
                session_id,
                timeout_ms: 4000,
                valid
            }
        );
    }
    let _ = f2.node.stop().await?;
    let _ = f3.node.stop().await?;
    let _ = leader.node.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_learner_rolls_back_an_uncommitted_txn_after_trunc() -> anyhow::Result<()> {
    let config = Config::default();
    // Epoch 1: five writes committed on all three nodes.
    let mut leader = start_leader(config.clone(), mem_storage()).await?;
    let mut f2 = start_learner(2, leader.addr.clone(), config.clone(), mem_storage());
    let mut f3 = start_learner(3, leader.addr.clone(), config.clone(), mem_storage());
    leader.node.wait_applied(0).await?;
    let mut last = 0;
    for i in 0..5 {
        last = leader
            .client
            .propose(Bytes::from(format!("e1 {i}")))
            .await?;
    }
    f2.node.wait_applied(last).await?;
    f3.node.wait_applied(last).await?;
    let (_, st1) = leader.node.stop().await?;
    let (_, st2) = f2.node.stop().await?;
    let (_, mut st3) = f3.node.stop().await?;
    ensure!(last == make(1, 5));

    // Node 3 had logged a sixth proposal that never committed, then crashed; on restart
    // every node replays its whole log.
    let uncommitted = make(1, 6);
    st3.log.append(uncommitted, b"never committed")?;
    st3.log.sync()?;
    let (st1, st2, st3) = (restart(st1)?, restart(st2)?, restart(st3)?);
    assert_eq!(st3.machine.applied_zxid(), uncommitted);
    assert_eq!(st3.committed_zxid(), 0);

    // Epoch 2, led by node 1 with node 2 (node 3 is more recent: it only rejoins once the
    // epoch is established, else the leader would step down for it). Node 3 is truncated
    // to (1, 5) and rolls its state back.
    let mut leader = start_leader(config.clone(), st1).await?;
    let mut f2 = start_learner(2, leader.addr.clone(), config.clone(), st2);
    leader.node.wait_applied(last).await?;
    f2.node.wait_applied(last).await?;
    let mut f3 = start_learner(3, leader.addr.clone(), config.clone(), st3);
    f3.node.wait_applied(last).await?;
    let s = *leader.node.status.borrow();
    assert_eq!(
        (s.syncs_diff, s.syncs_trunc, s.syncs_snap),
        (1, 1, 0),
        "{s:?}"
    );
    assert_eq!(f3.node.status.borrow().applied, last);
    for i in 0..3 {
        last = leader
            .client
            .propose(Bytes::from(format!("e2 {i}")))
            .await?;
    }
    assert_eq!(last, make(2, 3));
    f2.node.wait_applied(last).await?;
    f3.node.wait_applied(last).await?;

    let (_, st3) = f3.node.stop().await?;
    let (_, st2) = f2.node.stop().await?;
    let (_, st1) = leader.node.stop().await?;
    assert_eq!(st3.log.get(uncommitted)?, None);
    assert!(st3.machine.txns.iter().all(|t| t.0 != uncommitted));
    let applied: Vec<String> = st3
        .machine
        .txns
        .iter()
        .map(|t| String::from_utf8_lossy(&t.1).into_owned())
        .collect();
    assert_eq!(
        applied,
        [
            "e1 0", "e1 1", "e1 2", "e1 3", "e1 4", "e2 0", "e2 1", "e2 2"
        ]
    );
    assert_eq!(st3.machine.txns, st1.machine.txns);
    assert_eq!(st2.machine.txns, st1.machine.txns);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_installed_by_snap_restarts_from_that_snapshot() -> anyhow::Result<()> {
    // Two txns kept in memory and no DIFF from disk: an empty node gets a SNAP.
    let config = Config {
        committed_log_count: 2,
        snapshot_size_percent: None,
        ..Config::default()
    };
    let mut leader = start_leader(config.clone(), mem_storage()).await?;
    let mut f2 = start_learner(2, leader.addr.clone(), config.clone(), mem_storage());
    leader.node.wait_applied(0).await?;
    let mut last = 0;
    for i in 0..10 {
        last = leader.client.propose(Bytes::from(format!("w {i}"))).await?;
    }
    let snap_zxid = last;
    let mut f3 = start_learner(3, leader.addr.clone(), config.clone(), mem_storage());
    f3.node.wait_applied(snap_zxid).await?;
    assert_eq!(leader.node.status.borrow().syncs_snap, 1);
    for i in 10..12 {
        last = leader.client.propose(Bytes::from(format!("w {i}"))).await?;
    }
    f3.node.wait_applied(last).await?;
    let (_, st3) = f3.node.stop().await?;
    assert_eq!(st3.log_base, snap_zxid);
    assert_eq!(st3.committed_zxid(), last);
    assert!(
        st3.log.first_zxid()? > Some(snap_zxid),
        "the log still holds txns of the snapshot"
    );
    let before = st3.machine.txns.clone();

    // Restart from the snapshot restore kept plus the log: the same state, then a DIFF.
    let st3 = restart(st3)?;
    assert_eq!(st3.log_base, snap_zxid);
    assert_eq!(st3.machine.txns, before);
    last = leader.client.propose(Bytes::from_static(b"after")).await?;
    let mut f3 = start_learner(3, leader.addr.clone(), config.clone(), st3);
    f3.node.wait_applied(last).await?;
    let s = *tokio::time::timeout(
        WAIT,
        leader.node.status.wait_for(|s| s.synced_followers == 2),
    )
    .await
    .context("the leader never counted two synced followers")??;
    assert_eq!((s.syncs_diff, s.syncs_snap), (2, 1), "{s:?}");
    assert_eq!((s.learners, s.synced_observers), (2, 0), "{s:?}");
    // The last commit needed only node 3's ACK: node 2 may still be applying it.
    f2.node.wait_applied(last).await?;

    let (_, st3) = f3.node.stop().await?;
    let (_, st2) = f2.node.stop().await?;
    let (_, st1) = leader.node.stop().await?;
    assert_eq!(st3.machine.txns, st1.machine.txns);
    assert_eq!(st2.machine.txns, st1.machine.txns);
    assert_eq!(st1.machine.txns.len(), 13);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_server_gets_every_forwarded_request_in_order() -> anyhow::Result<()> {
    const N: i32 = 10_000;
    let config = Config {
        sync_limit: 50,
        ..Config::default()
    };
    // The server's event channel holds one event and the server starts late.
    let mut leader = start_leader_with(config.clone(), mem_storage(), 1, 64).await?;
    let mut f2 = start_learner(2, leader.addr.clone(), config.clone(), mem_storage());
    let f3 = start_learner(3, leader.addr.clone(), config.clone(), mem_storage());
    f2.node.wait_applied(0).await?;
    let client = f2.client.clone();
    // 1 KiB requests: HTTP/2 flow control (1 MiB windows) holds about a thousand.
    let body = "x".repeat(1024);
    let sent = Arc::new(AtomicI64::new(0));
    let counter = sent.clone();
    let sender = tokio::spawn(async move {
        for cxid in 0..N {
            client
                .forward(client_request(2, cxid, OP_CREATE, &body))
                .await?;
            counter.fetch_add(1, Ordering::SeqCst);
        }
        anyhow::Ok(())
    });
    // Every queue on the way is bounded: with the server not reading, the sender stalls
    // short of N instead of being buffered without end.
    let mut before = -1;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = sent.load(Ordering::SeqCst);
        if now == before {
            break;
        }
        before = now;
    }
    let stalled_at = sent.load(Ordering::SeqCst);
    assert_eq!(stalled_at, before, "the sender never stalled");
    assert!(stalled_at < i64::from(N), "{N} requests buffered");

    let mut next = 0;
    while next < N {
        if let LeaderEvent::Request { from, request } = leader.next_event().await? {
            assert_eq!((from, request.cxid), (2, next));
            next += 1;
        }
    }
    sender.await??;
    assert!(leader.node.status.borrow().serving);
    let z = leader
        .client
        .propose(Bytes::from_static(b"still leading"))
        .await?;
    f2.node.wait_applied(z).await?;
    let _ = f2.node.stop().await?;
    let _ = f3.node.stop().await?;
    let _ = leader.node.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_waits_in_submit_while_events_pile_up_does_not_deadlock() -> anyhow::Result<()>
{
    // Both learners together stay below the hard limit of events held for the server.
    const N: i32 = 1_500;
    // Few proposals in flight and a tiny queue: the server's `submit` often waits for a
    // commit, while the learners forward faster than the quorum commits.
    let config = Config {
        max_outstanding: 4,
        sync_limit: 50,
        ..Config::default()
    };
    let mut leader = start_leader_with(config.clone(), mem_storage(), 1, 1).await?;
    let mut f2 = start_learner(2, leader.addr.clone(), config.clone(), mem_storage());
    let mut f3 = start_learner(3, leader.addr.clone(), config.clone(), mem_storage());
    f2.node.wait_applied(0).await?;
    f3.node.wait_applied(0).await?;
    let body = "y".repeat(256);
    let mut senders = Vec::new();
    for f in [&f2, &f3] {
        let (client, body) = (f.client.clone(), body.clone());
        senders.push(tokio::spawn(async move {
            for cxid in 0..N {
                client
                    .forward(client_request(2, cxid, OP_CREATE, &body))
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    // The simplest server loop: one event, one submit (which may wait), next event.
    let mut last = None;
    let mut submitted = 0;
    while submitted < 2 * N {
        if let LeaderEvent::Request { request, .. } = leader.next_event().await? {
            last = Some(leader.client.submit(request.request).await?);
            submitted += 1;
        }
    }
    for s in senders {
        s.await??;
    }
    let last = tokio::time::timeout(WAIT, last.context("nothing submitted")?).await??;
    assert_eq!(last, make(1, i64::from(2 * N)));
    f2.node.wait_applied(last).await?;
    f3.node.wait_applied(last).await?;
    let _ = f2.node.stop().await?;
    let _ = f3.node.stop().await?;
    let _ = leader.node.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_forwards_writes_and_syncs() -> anyhow::Result<()> {
    let config = Config::default();
    let mut leader = start_leader(config.clone(), mem_storage()).await?;
    let mut f2 = start_learner(2, leader.addr.clone(), config.clone(), mem_storage());
    let mut obs = start_learner(4, leader.addr.clone(), config.clone(), mem_storage());
    obs.node.wait_applied(0).await?;
    let s = *tokio::time::timeout(
        WAIT,
        leader
            .node
            .status
            .wait_for(|s| s.synced_followers == 1 && s.synced_observers == 1),
    )
    .await
    .context("the leader never counted the follower and the observer")??;
    assert_eq!(s.learners, 2);

    for cxid in 0..10 {
        obs.client
            .forward(client_request(4, cxid, OP_CREATE, &format!("o {cxid}")))
            .await?;
    }
    obs.client
        .forward(client_request(4, 10, OP_SYNC, "/"))
        .await?;
    let mut last = 0;
    let mut handled = 0;
    while handled < 11 {
        let LeaderEvent::Request { from, request } = leader.next_event().await? else {
            continue;
        };
        assert_eq!((from, request.cxid), (4, handled));
        if request.op_type == OP_SYNC {
            leader
                .client
                .sync(from, request.session_id, request.cxid)
                .await?;
        } else {
            last = leader.client.propose(request.request).await?;
        }
        handled += 1;
    }
    assert_eq!(
        obs.next_event().await?,
        LearnerEvent::SyncReply {
            session_id: 4,
            cxid: 10,
            zxid: last
        }
    );
    assert!(obs.node.status.borrow().applied >= last);
    f2.node.wait_applied(last).await?;

    let (_, obs_st) = obs.node.stop().await?;
    let (_, st2) = f2.node.stop().await?;
    let (_, st1) = leader.node.stop().await?;
    assert_eq!(obs_st.machine.txns.len(), 10);
    assert_eq!(obs_st.machine.txns, st1.machine.txns);
    assert_eq!(st2.machine.txns, st1.machine.txns);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_hard_limit_the_flooding_learner_is_dropped() -> anyhow::Result<()> {
    use zk_quorum::driver::EVENT_HARD_LIMIT;
    // One proposal in flight that cannot commit (nothing is durable on the followers):
    // the leader keeps reading learner streams while the server reads no events.
    let config = Config {
        max_outstanding: 1,
        sync_limit: 50,
        ..Config::default()
    };
    let ceiling = Arc::new(AtomicI64::new(i64::MAX));
    let mut leader = start_leader_with(config.clone(), mem_storage(), 1, 4).await?;
    let mut f2 = start_learner(
        2,
        leader.addr.clone(),
        config.clone(),
        gated_storage(&ceiling),
    );
    let mut f3 = start_learner(
        3,
        leader.addr.clone(),
        config.clone(),
        gated_storage(&ceiling),
    );
    f2.node.wait_applied(0).await?;
    f3.node.wait_applied(0).await?;
    ceiling.store(0, Ordering::SeqCst);
    let stuck = leader.client.submit(Bytes::from_static(b"stuck")).await?;

    let total = i32::try_from(EVENT_HARD_LIMIT)? + 1000;
    let client = f2.client.clone();
    let flood = tokio::spawn(async move {
        for cxid in 0..total {
            if client
                .forward(client_request(2, cxid, OP_CREATE, "f"))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    // Node 2 is dropped: its run ends, and later forwards are refused.
    let (why, _) = tokio::time::timeout(WAIT, f2.node.task).await???;
    assert_eq!(why, Stopped::Looking(ZabError::Disconnected(1)));
    tokio::time::timeout(WAIT, flood).await??;
    assert_eq!(
        f2.client
            .forward(client_request(2, total, OP_CREATE, "late"))
            .await,
        Err(ZabError::NotFollowing)
    );

    // The server finds every event held before the limit, in order, and no more.
    let mut received = 0;
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(500), leader.events.recv()).await
    {
        if let LeaderEvent::Request { from, request } = event {
            assert_eq!((from, request.cxid), (2, received));
            received += 1;
        }
    }
    assert_eq!(received, i32::try_from(EVENT_HARD_LIMIT)? + 1);
    assert!(leader.node.status.borrow().serving);

    // The proposal never committed: stopping the leader leaves its outcome unknown.
    let _ = leader.node.stop().await?;
    assert_eq!(
        tokio::time::timeout(WAIT, stuck).await?,
        Err(ZabError::NotLeading)
    );
    let _ = f3.node.stop().await?;
    Ok(())
}
