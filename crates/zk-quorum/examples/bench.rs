//! Zab benchmark: 3 nodes in one process over gRPC on 127.0.0.1–3, each with a sled txn log
//! and epoch files in a temporary directory.
//!
//! * broadcast: committed txns/s of 100-byte txns with 1, 64 and 1024 proposals in flight,
//!   and the commit latency (from `submit` to the commit being applied on the leader);
//! * catch-up: the time an empty follower takes to join a leader whose log holds 1,000,000
//!   txns, by DIFF (from the leader's log: the snapshot is declared as large as the state,
//!   `snapshot_size_percent` 100) and by SNAP (`snapshot_size_percent` off, the 500 txns in
//!   memory are far too few).
//!
//! ```text
//! cargo run --release -p zk-quorum --example bench              # full run
//! cargo run --release -p zk-quorum --example bench -- --quick   # smoke run, a few seconds
//! cargo run --release -p zk-quorum --example bench -- --only catchup --txns 200000
//! ```

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use zk_proto::zxid::make;
use zk_quorum::driver::{DriverOptions, LeaderClient, LearnerInbox, NodeStorage};
use zk_quorum::{Config, Ensemble, StateMachine, SyncMode, Txn, Zxid};
use zk_storage::log::{EpochStore, FileEpochStore, SledLogOptions, SledTxnLog, TxnLog};

#[path = "../tests/support/mod.rs"]
mod support;
use support::{Corrupt, Running};

/// Payload size of every txn.
const TXN_BYTES: usize = 100;
/// Bound on every wait for a node.
const WAIT: Duration = Duration::from_secs(120);

/// The replicated state: every applied txn (so a snapshot is as large as the history).
#[derive(Default, Debug, Clone)]
struct ListMachine {
    txns: Vec<(Zxid, Bytes)>,
}

/// Serialised size of one txn in a snapshot.
const fn entry_bytes(payload: usize) -> usize {
    8 + 4 + payload
}

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
        let max = max_chunk_bytes.max(entry_bytes(TXN_BYTES));
        let mut out = Vec::new();
        let mut b = BytesMut::with_capacity(max);
        for (z, d) in &self.txns {
            if b.len() + entry_bytes(d.len()) > max && !b.is_empty() {
                out.push(std::mem::replace(&mut b, BytesMut::with_capacity(max)).freeze());
            }
            b.put_i64(*z);
            b.put_u32(d.len() as u32);
            b.put_slice(d);
        }
        out.push(b.freeze());
        Ok(out)
    }
    fn restore(&mut self, zxid: Zxid, chunks: &[Bytes]) -> Result<(), Corrupt> {
        // Every chunk holds whole records (see `snapshot`).
        let mut txns = Vec::new();
        for chunk in chunks {
            support::decode_records(chunk.clone(), &mut txns)?;
        }
        support::check_last(zxid, &txns)?;
        self.txns = txns;
        Ok(())
    }
}

type Storage = NodeStorage<SledTxnLog, FileEpochStore, ListMachine>;

fn open(root: &Path, id: u64) -> anyhow::Result<Storage> {
    open_with(root, id, ListMachine::default())
}

fn open_with(root: &Path, id: u64, machine: ListMachine) -> anyhow::Result<Storage> {
    support::open_sled(root, id, SledLogOptions::default(), machine, 0)
}

/// The state after the `n` txns [`prefill`] writes, as a server has it after replaying
/// its log at start (every entry shares one payload buffer).
fn replayed(n: u32) -> ListMachine {
    let payload = Bytes::from(vec![b'x'; TXN_BYTES]);
    ListMachine {
        txns: (1..=n)
            .map(|c| (make(1, i64::from(c)), payload.clone()))
            .collect(),
    }
}

fn options() -> DriverOptions {
    DriverOptions {
        tick_time: Duration::from_millis(500),
        ..DriverOptions::default()
    }
}

type Node = Running<Storage>;

impl Node {
    async fn wait_applied(&mut self, zxid: Zxid) -> anyhow::Result<()> {
        self.wait_applied_within(zxid, WAIT).await
    }

    async fn stop(self) -> anyhow::Result<Storage> {
        let (_, st) = self.stop_within(WAIT).await?;
        Ok(st)
    }
}

async fn start_leader(
    config: Config,
    st: Storage,
    client_capacity: usize,
) -> anyhow::Result<(Node, LeaderClient, String)> {
    let (client, inbox) = LeaderClient::new(client_capacity);
    let ensemble = Ensemble::new([1, 2, 3], []);
    let (addr, node) = support::start_leader(config, ensemble, options(), st, inbox).await?;
    Ok((node, client, addr))
}

fn start_follower(id: u64, addr: &str, config: Config, st: Storage) -> Node {
    let inbox = LearnerInbox::detached();
    support::start_learner(id, false, addr, config, options(), st, inbox)
}

struct Load {
    inflight: usize,
    committed: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Load {
    fn rate(&self) -> f64 {
        self.committed as f64 / self.elapsed.as_secs_f64()
    }
    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        self.latencies
            .get(i.min(self.latencies.len() - 1))
            .copied()
            .unwrap_or_default()
    }
}

/// Keeps `inflight` proposals of [`TXN_BYTES`] in flight for `duration`, then waits for
/// the last ones.
async fn load(client: &LeaderClient, inflight: usize, duration: Duration) -> anyhow::Result<Load> {
    let payload = Bytes::from(vec![b'x'; TXN_BYTES]);
    let mut pending = FuturesUnordered::new();
    let mut latencies = Vec::new();
    let start = Instant::now();
    let mut last = 0;
    loop {
        let submitting = start.elapsed() < duration;
        while submitting && pending.len() < inflight {
            let t = Instant::now();
            let commit = client.submit(payload.clone()).await?;
            pending.push(async move { (t, commit.await) });
        }
        let Some((t, zxid)) = pending.next().await else {
            break;
        };
        latencies.push(t.elapsed());
        last = last.max(zxid?);
    }
    let elapsed = start.elapsed();
    ensure!(last > 0 || latencies.is_empty(), "no zxid");
    latencies.sort_unstable();
    Ok(Load {
        inflight,
        committed: latencies.len(),
        elapsed,
        latencies,
    })
}

async fn broadcast(quick: bool) -> anyhow::Result<Vec<Load>> {
    let dir = tempfile::tempdir()?;
    let config = Config {
        max_outstanding: 2048,
        ..Config::default()
    };
    // Opened before any node starts: opening a sled database blocks its thread.
    let (s1, s2, s3) = (
        open(dir.path(), 1)?,
        open(dir.path(), 2)?,
        open(dir.path(), 3)?,
    );
    let (mut leader, client, addr) = start_leader(config.clone(), s1, 1024).await?;
    let mut f2 = start_follower(2, &addr, config.clone(), s2);
    let mut f3 = start_follower(3, &addr, config.clone(), s3);
    leader.wait_applied(0).await?;
    f2.wait_applied(0).await?;
    f3.wait_applied(0).await?;
    let duration = if quick {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(5)
    };
    // Warm-up (connections, sled's first segments).
    load(&client, 64, Duration::from_millis(200)).await?;
    let mut out = Vec::new();
    for inflight in [1, 64, 1024] {
        let l = load(&client, inflight, duration).await?;
        eprintln!(
            "  {inflight:>4} in flight: {} txns in {:.2?}",
            l.committed, l.elapsed
        );
        out.push(l);
    }
    let last = leader.status.borrow().applied;
    f2.wait_applied(last).await?;
    f3.wait_applied(last).await?;
    let s3 = f3.stop().await?;
    let s2 = f2.stop().await?;
    let s1 = leader.stop().await?;
    ensure!(s1.machine.txns.len() == s2.machine.txns.len());
    ensure!(s1.machine.txns == s3.machine.txns, "node 3 differs");
    Ok(out)
}

/// Writes `n` txns of epoch 1 into node `id`'s log and sets its epochs to 1, as if it had
/// followed a leader that committed them.
fn prefill(root: &Path, id: u64, n: u32) -> anyhow::Result<()> {
    let mut st = open(root, id)?;
    let payload = vec![b'x'; TXN_BYTES];
    let mut next = 1u32;
    while next <= n {
        let end = (next + 255).min(n);
        let batch: Vec<(Zxid, &[u8])> = (next..=end)
            .map(|c| (make(1, i64::from(c)), payload.as_slice()))
            .collect();
        st.log.append_batch(&batch)?;
        next = end + 1;
    }
    st.log.sync()?;
    st.epochs.set_accepted_epoch(1)?;
    st.epochs.set_current_epoch(1)?;
    Ok(())
}

struct CatchUp {
    mode: SyncMode,
    txns: u32,
    elapsed: Duration,
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Times an empty node 3 joining nodes 1 and 2, whose storage is a copy of `template`'s
/// node 1 (a log of `n` txns).
async fn catch_up(template: &Path, n: u32, by: SyncMode) -> anyhow::Result<CatchUp> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    for id in [1, 2] {
        copy_dir(&template.join("node1"), &root.join(format!("node{id}")))?;
    }
    // Generous limits: a sync of a million txns takes seconds on a loaded machine.
    let limits = Config {
        init_limit: 120,
        sync_limit: 20,
        ..Config::default()
    };
    let config = match by {
        // The leader's snapshot is declared as large as the state it would send: a DIFF of
        // every txn (100 bytes each) weighs less than it.
        SyncMode::Diff => Config {
            snapshot_size_percent: Some(100),
            ..limits
        },
        _ => Config {
            snapshot_size_percent: None,
            ..limits
        },
    };
    let snapshot_bytes = u64::from(n) * entry_bytes(TXN_BYTES) as u64;
    // Opened before any node starts: opening a sled database blocks its thread.
    // Nodes 1 and 2 restart with their state replayed from the log (as a server does).
    let leader_st = open_with(root, 1, replayed(n))?.with_snapshot_bytes(snapshot_bytes);
    let s2 = open_with(root, 2, replayed(n))?;
    let s3 = open(root, 3)?;
    let t = Instant::now();
    let (mut leader, _client, addr) = start_leader(config.clone(), leader_st, 16).await?;
    let mut f2 = start_follower(2, &addr, config.clone(), s2);
    let last = make(1, i64::from(n));
    leader.wait_applied(last).await?;
    f2.wait_applied(last).await?;
    eprintln!(
        "  nodes 1 and 2 serving in {:.2?} (the leader reads its whole log at start)",
        t.elapsed()
    );

    let t = Instant::now();
    let mut f3 = start_follower(3, &addr, config.clone(), s3);
    f3.wait_applied(last).await?;
    let elapsed = t.elapsed();
    let mode = f3.status.borrow().sync_mode;
    ensure!(
        mode == Some(by),
        "node 3 was synchronised by {mode:?}, not {by:?}"
    );
    eprintln!("  node 3 caught up by {} in {elapsed:.2?}", by.name());
    let s3 = f3.stop().await?;
    drop(f2.stop().await?);
    let s1 = leader.stop().await?;
    ensure!(
        s3.machine.txns.len() == n as usize,
        "node 3 applied {}",
        s3.machine.txns.len()
    );
    ensure!(
        s3.machine.txns == s1.machine.txns,
        "node 3 differs from the leader"
    );
    Ok(CatchUp {
        mode: by,
        txns: n,
        elapsed,
    })
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut quick = false;
    let mut only: Option<String> = None;
    let mut txns: Option<u32> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--only" => only = Some(args.next().context("--only broadcast|catchup")?),
            "--txns" => txns = Some(args.next().context("--txns N")?.parse()?),
            other => bail!(
                "unknown argument {other}; use [--quick] [--only broadcast|catchup] [--txns N]"
            ),
        }
    }
    let n = txns.unwrap_or(if quick { 100_000 } else { 1_000_000 });
    let runs = |what: &str| only.as_deref().is_none_or(|o| o == what);

    let mut loads = Vec::new();
    if runs("broadcast") {
        eprintln!("broadcast, 3 nodes, {TXN_BYTES}-byte txns:");
        loads = broadcast(quick).await?;
    }
    let mut catchups = Vec::new();
    if runs("catchup") {
        let template = tempfile::tempdir()?;
        let t = Instant::now();
        prefill(template.path(), 1, n)?;
        eprintln!(
            "{n} txns of {TXN_BYTES} bytes written to a log in {:.2?}",
            t.elapsed()
        );
        for by in [SyncMode::Diff, SyncMode::Snap] {
            eprintln!(
                "catch-up of an empty follower, {n} txns behind, by {}:",
                by.name()
            );
            catchups.push(catch_up(template.path(), n, by).await?);
        }
    }

    println!();
    if !loads.is_empty() {
        println!("| in flight | committed txns/s | p50 commit latency | p99 commit latency |");
        println!("|---:|---:|---:|---:|");
        for l in &loads {
            println!(
                "| {} | {:.0} | {} | {} |",
                l.inflight,
                l.rate(),
                ms(l.percentile(0.5)),
                ms(l.percentile(0.99))
            );
        }
        println!();
    }
    if !catchups.is_empty() {
        println!("| catch-up of an empty follower | txns behind | time |");
        println!("|---|---:|---:|");
        for c in &catchups {
            println!(
                "| {} | {} | {:.2} s |",
                c.mode.name(),
                c.txns,
                c.elapsed.as_secs_f64()
            );
        }
    }
    Ok(())
}
