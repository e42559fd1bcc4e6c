//! Scenario tests over real gRPC on 127.0.0.1–4 with real storage: each node has a sled
//! txn log and epoch files in a temporary directory, and a restart reopens them. Each test
//! asserts which synchronisation the leader chose, on both sides: the leader's counters in
//! [`NodeStatus`] and the learner's own [`NodeStatus::sync_mode`].
//!
//! * DIFF: a follower down briefly comes back to a few new txns (from the leader's memory),
//!   then to more than the memory holds (from the leader's sled log), and ends with the
//!   leader's log;
//! * TRUNC: a follower holds an uncommitted txn of a dead epoch; it is dropped and never
//!   applied;
//! * SNAP: an empty follower joins a leader whose log was purged, and a follower far
//!   behind (past the in-memory window, disk DIFF off) rejoins; both end equal to the
//!   leader;
//! * an observer down while writes commit catches up by DIFF and applies every commit.
//!
//! Node 1 always leads: the election is not part of this crate.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use bytes::Bytes;
use zk_proto::zxid::make;
use zk_quorum::driver::{DriverOptions, LeaderClient, LearnerClient, LearnerInbox, NodeStorage};
use zk_quorum::{Config, Ensemble, StateMachine, SyncMode, Zxid};
use zk_storage::log::{FileEpochStore, SledLogOptions, SledTxnLog, TxnLog};

mod support;
use support::{ListMachine, Running, node_dir};

type Storage = NodeStorage<SledTxnLog, FileEpochStore, ListMachine>;

/// Opens node `id`'s storage under `root`: its sled log and epoch files, as found on disk,
/// with an empty state machine and `log_base` 0 (no snapshot): the driver applies the
/// logged txns once the leader has confirmed them.
fn open(root: &Path, id: u64) -> anyhow::Result<Storage> {
    open_with(root, id, ListMachine::default(), 0)
}

fn open_with(
    root: &Path,
    id: u64,
    machine: ListMachine,
    log_base: Zxid,
) -> anyhow::Result<Storage> {
    let log_options = SledLogOptions {
        cache_capacity_bytes: 4 * 1024 * 1024,
    };
    support::open_sled(root, id, log_options, machine, log_base)
}

/// Every record of a log, in order.
fn records(log: &SledTxnLog) -> anyhow::Result<Vec<(Zxid, Vec<u8>)>> {
    let mut out = Vec::new();
    for r in log.read_from(0)? {
        let r = r?;
        out.push((r.zxid, r.payload));
    }
    Ok(out)
}

fn options() -> DriverOptions {
    DriverOptions {
        tick_time: Duration::from_millis(100),
        learner_queue: 256,
        connect_timeout: Duration::from_secs(2),
        // Small pieces, so that a DIFF from the log of a few hundred txns takes several.
        log_range_piece: 64,
    }
}

/// Ten committed txns in memory, no DIFF from the on-disk log.
fn config() -> Config {
    Config {
        committed_log_count: 10,
        snapshot_size_percent: None,
        ..Config::default()
    }
}

const WAIT: Duration = Duration::from_secs(10);

type Node = Running<Storage>;

impl Node {
    /// Stops the node and returns its storage (still open). Why the run ended does not
    /// matter here: a leader whose followers stopped first may have given up, a follower
    /// may have seen its leader go.
    async fn stop(self) -> anyhow::Result<Storage> {
        let (_, st) = self.stop_within(WAIT).await?;
        Ok(st)
    }

    /// Waits until the node serves and has applied `zxid`; if it stops instead, says why.
    async fn wait_applied(&mut self, zxid: Zxid) -> anyhow::Result<()> {
        self.wait_applied_within(zxid, WAIT).await
    }

    fn sync_mode(&self) -> Option<SyncMode> {
        self.status.borrow().sync_mode
    }
}

struct Leading {
    node: Node,
    client: LeaderClient,
    addr: String,
}

impl Leading {
    /// Commits `n` writes named `{prefix}{i}`, pipelined; returns the last zxid.
    async fn write(&self, prefix: &str, n: usize) -> anyhow::Result<Zxid> {
        let mut pending = Vec::with_capacity(n);
        for i in 0..n {
            pending.push(
                self.client
                    .submit(Bytes::from(format!("{prefix}{i}")))
                    .await?,
            );
        }
        let mut last = 0;
        for p in pending {
            last = tokio::time::timeout(WAIT, p)
                .await
                .context("timed out waiting for a commit")??;
        }
        Ok(last)
    }

    fn syncs(&self) -> (u64, u64, u64) {
        let s = *self.node.status.borrow();
        (s.syncs_diff, s.syncs_trunc, s.syncs_snap)
    }
}

async fn start_leader(ensemble: Ensemble, config: Config, st: Storage) -> anyhow::Result<Leading> {
    let (client, inbox) = LeaderClient::new(256);
    let (addr, node) = support::start_leader(config, ensemble, options(), st, inbox).await?;
    Ok(Leading { node, client, addr })
}

fn start_learner(id: u64, observer: bool, addr: &str, config: Config, st: Storage) -> Node {
    start_learner_with(id, observer, addr, config, st, LearnerInbox::detached())
}

/// A follower with a server's handle on it.
fn start_follower_with_client(
    id: u64,
    addr: &str,
    config: Config,
    st: Storage,
) -> (Node, LearnerClient) {
    let (client, inbox) = LearnerClient::new(16);
    let node = start_learner_with(id, false, addr, config, st, inbox);
    (node, client)
}

fn start_learner_with(
    id: u64,
    observer: bool,
    addr: &str,
    config: Config,
    st: Storage,
    inbox: LearnerInbox,
) -> Node {
    support::start_learner(id, observer, addr, config, options(), st, inbox)
}

fn start_follower(id: u64, addr: &str, config: Config, st: Storage) -> Node {
    start_learner(id, false, addr, config, st)
}

fn voters() -> Ensemble {
    Ensemble::new([1, 2, 3], [])
}

/// Node 1 leads nodes 2 and 3, all on fresh storage under `root`; waits until the leader
/// serves.
async fn three_nodes(root: &Path, config: &Config) -> anyhow::Result<(Leading, Node, Node)> {
    let mut leader = start_leader(voters(), config.clone(), open(root, 1)?).await?;
    let mut f2 = start_follower(2, &leader.addr, config.clone(), open(root, 2)?);
    let mut f3 = start_follower(3, &leader.addr, config.clone(), open(root, 3)?);
    leader.node.wait_applied(0).await?;
    f2.wait_applied(0).await?;
    f3.wait_applied(0).await?;
    Ok((leader, f2, f3))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_down_briefly_catches_up_by_diff_and_ends_with_the_leaders_log()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    // Ten txns in memory; beyond them, DIFF from the leader's log while the txns weigh at
    // most 1000% of its snapshot.
    let config = Config {
        snapshot_size_percent: Some(1000),
        ..config()
    };
    // The leader's snapshot (of 1 MB, say) makes its log the cheaper way for up to 10 MB.
    let mut leader = start_leader(
        voters(),
        config.clone(),
        open(root, 1)?.with_snapshot_bytes(1_000_000),
    )
    .await?;
    let mut f2 = start_follower(2, &leader.addr, config.clone(), open(root, 2)?);
    let mut f3 = start_follower(3, &leader.addr, config.clone(), open(root, 3)?);
    leader.node.wait_applied(0).await?;
    f2.wait_applied(0).await?;
    f3.wait_applied(0).await?;
    let mut last = leader.write("a", 20).await?;
    f2.wait_applied(last).await?;
    let after_start = leader.syncs();
    assert_eq!(
        after_start,
        (2, 0, 0),
        "both empty followers get an empty DIFF"
    );

    // Down while 5 txns commit (within the 10 in memory), then restarted from its disk.
    drop(f2.stop().await?);
    last = leader.write("b", 5).await?;
    let mut f2 = start_follower(2, &leader.addr, config.clone(), open(root, 2)?);
    f2.wait_applied(last).await?;
    assert_eq!(f2.sync_mode(), Some(SyncMode::Diff));
    assert_eq!(leader.syncs(), (3, 0, 0));

    // Down again while 30 txns commit: past the memory, the leader reads them from its
    // sled log.
    drop(f2.stop().await?);
    last = leader.write("c", 30).await?;
    let mut f2 = start_follower(2, &leader.addr, config.clone(), open(root, 2)?);
    f2.wait_applied(last).await?;
    assert_eq!(f2.sync_mode(), Some(SyncMode::Diff));
    assert_eq!(leader.syncs(), (4, 0, 0));
    last = leader.write("d", 3).await?;
    f2.wait_applied(last).await?;
    f3.wait_applied(last).await?;

    let f2_st = f2.stop().await?;
    let f3_st = f3.stop().await?;
    let leader_st = leader.node.stop().await?;
    let expected = records(&leader_st.log)?;
    assert_eq!(expected.len(), 58);
    assert_eq!(expected.last().map(|r| r.0), Some(last));
    assert_eq!(records(&f2_st.log)?, expected, "follower 2's log");
    assert_eq!(records(&f3_st.log)?, expected, "follower 3's log");
    assert_eq!(f2_st.machine.txns, leader_st.machine.txns);
    assert_eq!(f2_st.machine.applied_zxid(), last);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncommitted_txn_of_a_dead_epoch_is_truncated_and_never_applied() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let config = config();
    let (leader, mut f2, mut f3) = three_nodes(root, &config).await?;
    let last = leader.write("a", 8).await?;
    f2.wait_applied(last).await?;
    f3.wait_applied(last).await?;
    assert_eq!(last, make(1, 8));
    for st in [
        f2.stop().await?,
        f3.stop().await?,
        leader.node.stop().await?,
    ] {
        drop(st);
    }

    // Node 2 logged a proposal of epoch 1 that never committed: written to its sled log
    // directly, as a follower (or the leader itself) persists a PROPOSAL before the ACK.
    let dead = make(1, 9);
    {
        let mut log = SledTxnLog::open(node_dir(root, 2).join("log"), SledLogOptions::default())?;
        log.append(dead, b"dead epoch")?;
        ensure!(log.sync()? == Some(dead));
    }

    // Epoch 1 is over: nodes 1 and 3 establish epoch 2 without node 2 (which the election
    // would prefer for its higher zxid had it been up; a leader refuses to lead a follower
    // of the same epoch with a higher zxid).
    let mut leader = start_leader(voters(), config.clone(), open(root, 1)?).await?;
    let mut f3 = start_follower(3, &leader.addr, config.clone(), open(root, 3)?);
    leader.node.wait_applied(last).await?;
    f3.wait_applied(last).await?;
    assert_eq!(f3.sync_mode(), Some(SyncMode::Diff), "node 3 is level");
    // Node 2 comes back with currentEpoch 1 and 1:9: ahead of the leader's 1:8, from an
    // older epoch, so the leader truncates it.
    let mut f2 = start_follower(2, &leader.addr, config.clone(), open(root, 2)?);
    f2.wait_applied(last).await?;
    assert_eq!(f2.sync_mode(), Some(SyncMode::Trunc), "node 2 holds 1:9");
    assert_eq!(leader.syncs(), (1, 1, 0));
    let last = leader.write("b", 4).await?;
    assert_eq!(last, make(2, 4));
    f2.wait_applied(last).await?;

    let f2_st = f2.stop().await?;
    drop(f3.stop().await?);
    let leader_st = leader.node.stop().await?;
    let logged = records(&f2_st.log)?;
    assert!(
        logged.iter().all(|r| r.0 != dead),
        "1:9 is gone from the log"
    );
    assert_eq!(logged, records(&leader_st.log)?);
    assert_eq!(logged.len(), 12);
    assert!(
        !f2_st
            .machine
            .ever_applied
            .contains(&Bytes::from_static(b"dead epoch")),
        "the truncated txn was applied"
    );
    assert_eq!(f2_st.machine.txns, leader_st.machine.txns);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_follower_joining_a_leader_with_a_purged_log_gets_a_snapshot() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let config = config();
    // Node 1 and 2 commit 30 txns; node 3 is not there yet.
    let mut leader = start_leader(voters(), config.clone(), open(root, 1)?).await?;
    let mut f2 = start_follower(2, &leader.addr, config.clone(), open(root, 2)?);
    leader.node.wait_applied(0).await?;
    let last = leader.write("a", 30).await?;
    f2.wait_applied(last).await?;
    let f2_st = f2.stop().await?;
    let leader_st = leader.node.stop().await?;
    drop(f2_st);

    // Node 1 keeps its state as a snapshot at 1:25 and purges its log before 1:26, then
    // leads again: its history starts after 1:25.
    let snapshot_at = make(1, 25);
    let NodeStorage {
        mut log, machine, ..
    } = leader_st;
    log.purge_before(snapshot_at + 1)?;
    ensure!(log.first_zxid()? == Some(make(1, 26)));
    drop(log);
    let mut leader = start_leader(
        voters(),
        config.clone(),
        open_with(root, 1, machine, snapshot_at)?,
    )
    .await?;
    let mut f2 = start_follower(2, &leader.addr, config.clone(), open(root, 2)?);
    leader.node.wait_applied(last).await?;
    f2.wait_applied(last).await?;
    assert_eq!(f2.sync_mode(), Some(SyncMode::Diff));

    // An empty node 3 is behind the purged point: nothing but a snapshot can sync it.
    let mut f3 = start_follower(3, &leader.addr, config.clone(), open(root, 3)?);
    f3.wait_applied(last).await?;
    assert_eq!(f3.sync_mode(), Some(SyncMode::Snap));
    assert_eq!(leader.syncs(), (1, 0, 1));
    let last = leader.write("b", 5).await?;
    f3.wait_applied(last).await?;

    let f3_st = f3.stop().await?;
    drop(f2.stop().await?);
    let leader_st = leader.node.stop().await?;
    assert_eq!(f3_st.machine.txns.len(), 35);
    assert_eq!(f3_st.machine.txns, leader_st.machine.txns);
    // The follower's log starts after the snapshot it installed.
    let logged = records(&f3_st.log)?;
    assert_eq!(logged.first().map(|r| r.0), Some(make(2, 1)));
    assert_eq!(logged.len(), 5);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_far_behind_gets_a_snapshot_and_ends_equal() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let config = config();
    let (leader, mut f2, mut f3) = three_nodes(root, &config).await?;
    let first = leader.write("a", 5).await?;
    f3.wait_applied(first).await?;

    // Node 3 is down while 40 txns commit: 4 times the in-memory window, and DIFF from the
    // log is off.
    drop(f3.stop().await?);
    let last = leader.write("b", 40).await?;
    f2.wait_applied(last).await?;
    let mut f3 = start_follower(3, &leader.addr, config.clone(), open(root, 3)?);
    f3.wait_applied(last).await?;
    assert_eq!(f3.sync_mode(), Some(SyncMode::Snap));
    assert_eq!(leader.syncs(), (2, 0, 1));
    let last = leader.write("c", 5).await?;
    f3.wait_applied(last).await?;
    f2.wait_applied(last).await?;

    let f3_st = f3.stop().await?;
    let f2_st = f2.stop().await?;
    let leader_st = leader.node.stop().await?;
    assert_eq!(leader_st.machine.txns.len(), 50);
    assert_eq!(f3_st.machine.txns, leader_st.machine.txns);
    assert_eq!(f2_st.machine.txns, leader_st.machine.txns);
    // The snapshot replaced node 3's log: what follows it is the 5 later txns.
    assert_eq!(records(&f3_st.log)?.len(), 5);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_down_while_writes_commit_catches_up_by_diff() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let config = config();
    let ensemble = Ensemble::new([1, 2, 3], [4]);
    let mut leader = start_leader(ensemble, config.clone(), open(root, 1)?).await?;
    let mut f2 = start_follower(2, &leader.addr, config.clone(), open(root, 2)?);
    let mut obs = start_learner(4, true, &leader.addr, config.clone(), open(root, 4)?);
    leader.node.wait_applied(0).await?;
    let last = leader.write("a", 6).await?;
    obs.wait_applied(last).await?;
    assert_eq!(obs.sync_mode(), Some(SyncMode::Diff));

    // The observer is down while 8 txns commit (within the 10 in memory).
    drop(obs.stop().await?);
    let last = leader.write("b", 8).await?;
    f2.wait_applied(last).await?;
    let mut obs = start_learner(4, true, &leader.addr, config.clone(), open(root, 4)?);
    obs.wait_applied(last).await?;
    assert_eq!(obs.sync_mode(), Some(SyncMode::Diff));
    assert_eq!(leader.syncs(), (3, 0, 0));
    ensure!(leader.node.status.borrow().synced_observers == 1);
    // Later commits reach it by INFORM.
    let last = leader.write("c", 4).await?;
    obs.wait_applied(last).await?;
    f2.wait_applied(last).await?;

    let obs_st = obs.stop().await?;
    let f2_st = f2.stop().await?;
    let leader_st = leader.node.stop().await?;
    assert_eq!(leader_st.machine.txns.len(), 18);
    assert_eq!(obs_st.machine.txns, leader_st.machine.txns);
    assert_eq!(obs_st.machine.txns, f2_st.machine.txns);
    assert_eq!(records(&obs_st.log)?, records(&leader_st.log)?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diff_longer_than_the_learner_queue_still_syncs_the_follower() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    // 500 txns in memory, a learner queue of 256 items (`options()`).
    let config = Config {
        snapshot_size_percent: None,
        ..Config::default()
    };
    let mut leader = start_leader(voters(), config.clone(), open(root, 1)?).await?;
    let mut f2 = start_follower(2, &leader.addr, config.clone(), open(root, 2)?);
    leader.node.wait_applied(0).await?;
    let mut last = 0;
    for i in 0..10 {
        last = leader.write(&format!("a{i}-"), 30).await?;
    }
    f2.wait_applied(last).await?;

    // 300 txns behind, all in the leader's memory: a DIFF of 600 packets.
    let mut f3 = start_follower(3, &leader.addr, config.clone(), open(root, 3)?);
    f3.wait_applied(last).await?;
    assert_eq!(f3.sync_mode(), Some(SyncMode::Diff));
    assert_eq!(leader.syncs(), (2, 0, 0), "synced at the first attempt");
    let f3_st = f3.stop().await?;
    drop(f2.stop().await?);
    let leader_st = leader.node.stop().await?;
    assert_eq!(records(&f3_st.log)?, records(&leader_st.log)?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diff_from_the_log_longer_than_a_piece_arrives_whole_and_in_order() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    // Ten txns in memory; DIFF from the log while it weighs at most 1000% of the snapshot.
    let config = Config {
        snapshot_size_percent: Some(1000),
        ..config()
    };
    let mut leader = start_leader(
        voters(),
        config.clone(),
        open(root, 1)?.with_snapshot_bytes(10_000_000),
    )
    .await?;
    let mut f2 = start_follower(2, &leader.addr, config.clone(), open(root, 2)?);
    let mut f3 = start_follower(3, &leader.addr, config.clone(), open(root, 3)?);
    leader.node.wait_applied(0).await?;
    f2.wait_applied(0).await?;
    f3.wait_applied(0).await?;
    drop(f3.stop().await?);

    // Node 3 is 1,000 txns behind: the leader reads them from its log in pieces of 64
    // txns, while more writes commit and queue up behind the range.
    let mut last = 0;
    for i in 0..10 {
        last = leader.write(&format!("a{i}-"), 100).await?;
    }
    let mut f3 = start_follower(3, &leader.addr, config.clone(), open(root, 3)?);
    for i in 0..5 {
        last = leader.write(&format!("b{i}-"), 20).await?;
    }
    f3.wait_applied(last).await?;
    f2.wait_applied(last).await?;
    assert_eq!(f3.sync_mode(), Some(SyncMode::Diff));
    assert_eq!(leader.syncs(), (3, 0, 0));

    let f3_st = f3.stop().await?;
    drop(f2.stop().await?);
    let leader_st = leader.node.stop().await?;
    let logged = records(&leader_st.log)?;
    assert_eq!(logged.len(), 1_100);
    assert_eq!(records(&f3_st.log)?, logged);
    assert_eq!(f3_st.machine.txns, leader_st.machine.txns);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purged_log_turns_the_diff_of_a_follower_behind_it_into_a_snapshot() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    // Ten txns in memory, DIFF from the log allowed (while it weighs at most 1000% of a
    // 10 MB snapshot).
    let config = Config {
        snapshot_size_percent: Some(1000),
        ..config()
    };
    let mut leader = start_leader(
        voters(),
        config.clone(),
        open(root, 1)?.with_snapshot_bytes(10_000_000),
    )
    .await?;
    let (mut f2, f2_client) =
        start_follower_with_client(2, &leader.addr, config.clone(), open(root, 2)?);
    let mut f3 = start_follower(3, &leader.addr, config.clone(), open(root, 3)?);
    leader.node.wait_applied(0).await?;
    f3.wait_applied(0).await?;
    let at_30 = leader.write("a", 30).await?;
    f3.wait_applied(at_30).await?;

    // Node 3 misses 20 txns: a DIFF from the leader's log.
    drop(f3.stop().await?);
    let at_50 = leader.write("b", 20).await?;
    let mut f3 = start_follower(3, &leader.addr, config.clone(), open(root, 3)?);
    f3.wait_applied(at_50).await?;
    assert_eq!(f3.sync_mode(), Some(SyncMode::Diff));
    assert_eq!(leader.syncs(), (3, 0, 0));

    // It misses 20 more, and meanwhile the leader's server snapshots at 1:60 and purges the
    // log up to it: node 3 (at 1:50) is behind the log now, and gets a SNAP.
    drop(f3.stop().await?);
    let at_70 = leader.write("c", 20).await?;
    let purged_to = make(1, 60);
    assert_eq!(leader.client.purge_log(purged_to, 5_000).await?, purged_to);
    let mut f3 = start_follower(3, &leader.addr, config.clone(), open(root, 3)?);
    f3.wait_applied(at_70).await?;
    assert_eq!(f3.sync_mode(), Some(SyncMode::Snap));
    assert_eq!(leader.syncs(), (3, 0, 1));

    // A follower's server purges its own log too, never past what it applied.
    f2.wait_applied(at_70).await?;
    assert_eq!(f2_client.purge_log(make(1, 65)).await?, make(1, 65));
    assert_eq!(f2_client.purge_log(make(1, 1_000)).await?, at_70);
    let last = leader.write("d", 5).await?;
    f2.wait_applied(last).await?;
    f3.wait_applied(last).await?;

    let f2_st = f2.stop().await?;
    let f3_st = f3.stop().await?;
    let leader_st = leader.node.stop().await?;
    let leader_log = records(&leader_st.log)?;
    assert_eq!(leader_log.first().map(|r| r.0), Some(make(1, 61)));
    assert_eq!(leader_log.len(), 15);
    assert_eq!(leader_st.log_base, purged_to);
    let f2_log = records(&f2_st.log)?;
    assert_eq!(f2_log.first().map(|r| r.0), Some(make(1, 71)));
    assert_eq!(f2_st.log_base, at_70);
    assert_eq!(f2_st.machine.txns, leader_st.machine.txns);
    assert_eq!(f3_st.machine.txns, leader_st.machine.txns);
    assert_eq!(leader_st.machine.txns.len(), 75);
    Ok(())
}
