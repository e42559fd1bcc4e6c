//! What zk-quorum's tests and examples share: a state machine that keeps the list of
//! applied txns (snapshotted as `zxid i64 | len u32 | bytes` records cut into chunks), the
//! storage openers, and the start of a leader or learner on its own task.
//!
//! Tests use it with `mod support;`, examples with
//! `#[path = "../tests/support/mod.rs"] mod support;`; each uses a part of it.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::sync::{oneshot, watch};
use zk_quorum::driver::{
    DriverOptions, LeaderInbox, LearnerInbox, NodeStatus, NodeStorage, Stopped, run_leader,
    run_learner_with,
};
use zk_quorum::transport::{TcpDialer, bind_local};
use zk_quorum::{Config, Ensemble, Rollback, StateMachine, Txn, Zxid};
use zk_storage::log::{EpochStore, FileEpochStore, SledLogOptions, SledTxnLog, TxnLog};

/// Every applied txn in order; every payload ever handed to `apply` (kept across
/// `restore` and `rollback`, so a test can tell that a txn was never applied); and the
/// "durable snapshot", what `restore` installed last.
#[derive(Default, Debug, Clone)]
pub struct ListMachine {
    pub txns: Vec<(Zxid, Bytes)>,
    pub ever_applied: Vec<Bytes>,
    pub snapshot: Vec<(Zxid, Bytes)>,
}

/// A snapshot (or a log read by `rollback`) that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("corrupt snapshot or log")]
pub struct Corrupt;

/// Serialises `records` as `zxid i64 | len u32 | bytes` each, cut into chunks of at most
/// `max_chunk_bytes` (at least 1) bytes.
pub fn encode_records<'a>(
    records: impl IntoIterator<Item = (Zxid, &'a [u8])>,
    max_chunk_bytes: usize,
) -> Vec<Bytes> {
    let mut b = BytesMut::new();
    for (z, d) in records {
        b.put_i64(z);
        b.put_u32(d.len() as u32);
        b.put_slice(d);
    }
    let mut all = b.freeze();
    let mut out = Vec::new();
    while all.len() > max_chunk_bytes.max(1) {
        out.push(all.split_to(max_chunk_bytes.max(1)));
    }
    out.push(all);
    out
}

/// Appends the whole records of `b` to `out`; a cut record is [`Corrupt`].
pub fn decode_records(mut b: Bytes, out: &mut Vec<(Zxid, Bytes)>) -> Result<(), Corrupt> {
    while b.has_remaining() {
        if b.remaining() < 12 {
            return Err(Corrupt);
        }
        let z = b.get_i64();
        let len = b.get_u32() as usize;
        if b.remaining() < len {
            return Err(Corrupt);
        }
        out.push((z, b.split_to(len)));
    }
    Ok(())
}

/// Decodes the records of `chunks` (records may span chunks) and checks that the last one
/// (0 if none) is `zxid`, the zxid the snapshot was taken at.
pub fn decode_snapshot(zxid: Zxid, chunks: &[Bytes]) -> Result<Vec<(Zxid, Bytes)>, Corrupt> {
    let mut txns = Vec::new();
    decode_records(chunks.concat().into(), &mut txns)?;
    check_last(zxid, &txns)?;
    Ok(txns)
}

/// [`Corrupt`] unless the last of `txns` (0 if none) is `zxid`.
pub fn check_last(zxid: Zxid, txns: &[(Zxid, Bytes)]) -> Result<(), Corrupt> {
    if txns.last().map_or(0, |t| t.0) != zxid {
        return Err(Corrupt);
    }
    Ok(())
}

impl StateMachine for ListMachine {
    type Error = Corrupt;
    fn applied_zxid(&self) -> Zxid {
        self.txns.last().map_or(0, |t| t.0)
    }
    fn apply(&mut self, txn: &Txn) -> Result<(), Corrupt> {
        self.txns.push((txn.zxid, txn.data.clone()));
        self.ever_applied.push(txn.data.clone());
        Ok(())
    }
    fn snapshot(&self, max_chunk_bytes: usize) -> Result<Vec<Bytes>, Corrupt> {
        Ok(encode_records(
            self.txns.iter().map(|(z, d)| (*z, d.as_ref())),
            max_chunk_bytes,
        ))
    }
    fn restore(&mut self, zxid: Zxid, chunks: &[Bytes]) -> Result<(), Corrupt> {
        let txns = decode_snapshot(zxid, chunks)?;
        self.snapshot = txns.clone();
        self.txns = txns;
        Ok(())
    }
    /// Reloads the snapshot and replays the log up to `to`, as ZooKeeper reloads its
    /// database after truncating its log.
    fn rollback(&mut self, to: Zxid, log: &dyn TxnLog) -> Result<Rollback, Corrupt> {
        let mut txns: Vec<_> = self
            .snapshot
            .iter()
            .filter(|t| t.0 <= to)
            .cloned()
            .collect();
        let after = txns.last().map_or(0, |t| t.0);
        for r in log.read_from(after + 1).map_err(|_| Corrupt)? {
            let r = r.map_err(|_| Corrupt)?;
            if r.zxid > to {
                break;
            }
            txns.push((r.zxid, Bytes::from(r.payload)));
        }
        self.txns = txns;
        Ok(Rollback::Done)
    }
}

/// 127.0.0.`n`: node `n`'s address.
pub fn ip(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// Node `id`'s directory under `root`.
pub fn node_dir(root: &Path, id: u64) -> PathBuf {
    root.join(format!("node{id}"))
}

/// Opens node `id`'s sled log and epoch files under `root`, as found on disk, with
/// `machine` and `log_base`.
pub fn open_sled<M: StateMachine>(
    root: &Path,
    id: u64,
    log_options: SledLogOptions,
    machine: M,
    log_base: Zxid,
) -> anyhow::Result<NodeStorage<SledTxnLog, FileEpochStore, M>> {
    let dir = node_dir(root, id);
    let log = SledTxnLog::open(dir.join("log"), log_options)?;
    let epochs = FileEpochStore::open(dir.join("epochs"))?;
    Ok(NodeStorage::new(log, epochs, machine, log_base))
}

/// A node's run on its own task: it ends with why the node stopped and its storage.
pub type Task<S> = tokio::task::JoinHandle<anyhow::Result<(Stopped, S)>>;

/// A node started by [`start_leader`] or [`start_learner`].
pub struct Running<S> {
    /// The node's status as the driver publishes it.
    pub status: watch::Receiver<NodeStatus>,
    /// Sending (or dropping) stops the node.
    pub stop: oneshot::Sender<()>,
    /// The node's run.
    pub task: Task<S>,
}

/// Node 1 leads `ensemble` on 127.0.0.1 (port chosen by the OS), fed by `inbox`; returns
/// its address and the node.
pub async fn start_leader<L, E, M>(
    config: Config,
    ensemble: Ensemble,
    options: DriverOptions,
    mut st: NodeStorage<L, E, M>,
    inbox: LeaderInbox,
) -> anyhow::Result<(String, Running<NodeStorage<L, E, M>>)>
where
    L: TxnLog + Send + 'static,
    E: EpochStore + Send + 'static,
    M: StateMachine + Send + 'static,
{
    let (incoming, addr) = bind_local(ip(1), 0).await?;
    let (status_tx, status) = watch::channel(NodeStatus::default());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        let why = run_leader(
            1, config, ensemble, options, &mut st, incoming, inbox, status_tx, shutdown,
        )
        .await?;
        Ok((why, st))
    });
    Ok((addr.to_string(), Running { status, stop, task }))
}

/// Node `id` follows (or observes) leader 1 at `addr`, dialing from 127.0.0.`id`, with
/// `inbox` as its server's handle.
pub fn start_learner<L, E, M>(
    id: u64,
    observer: bool,
    addr: &str,
    config: Config,
    options: DriverOptions,
    mut st: NodeStorage<L, E, M>,
    inbox: LearnerInbox,
) -> Running<NodeStorage<L, E, M>>
where
    L: TxnLog + Send + 'static,
    E: EpochStore + Send + 'static,
    M: StateMachine + Send + 'static,
{
    let (status_tx, status) = watch::channel(NodeStatus::default());
    let (stop, stopped) = oneshot::channel::<()>();
    let addr = addr.to_owned();
    let task = tokio::spawn(async move {
        let dialer = TcpDialer {
            local_ip: Some(ip(id as u8)),
        };
        let shutdown = async {
            let _ = stopped.await;
        };
        let why = run_learner_with(
            id, 1, &addr, observer, config, options, &mut st, dialer, inbox, status_tx, shutdown,
        )
        .await?;
        Ok((why, st))
    });
    Running { status, stop, task }
}

impl<S> Running<S> {
    /// Waits up to `wait` until the node serves and has applied `zxid`. If its run ends
    /// first (its status channel closes), says how: why it went back to LOOKING, its
    /// error, or its panic, instead of a bare "channel closed".
    pub async fn wait_applied_within(&mut self, zxid: Zxid, wait: Duration) -> anyhow::Result<()> {
        let waited = tokio::time::timeout(
            wait,
            self.status.wait_for(|s| s.serving && s.applied >= zxid),
        )
        .await
        .with_context(|| format!("timed out waiting for zxid {zxid:#x} to be applied"))?
        .map(|_| ());
        if waited.is_ok() {
            return Ok(());
        }
        let ended = tokio::time::timeout(wait, &mut self.task)
            .await
            .context("the node's status closed but its run did not end")?;
        match ended {
            Ok(Ok((why, _))) => bail!("the node stopped before applying {zxid:#x}: {why:?}"),
            Ok(Err(e)) => Err(e.context(format!("the node failed before applying {zxid:#x}"))),
            Err(e) => Err(anyhow::Error::new(e).context("the node's task panicked")),
        }
    }

    /// Stops the node and waits up to `wait` for its run to end: why it stopped and its
    /// storage (still open).
    pub async fn stop_within(self, wait: Duration) -> anyhow::Result<(Stopped, S)> {
        let _ = self.stop.send(());
        tokio::time::timeout(wait, self.task)
            .await
            .context("the node did not stop")??
    }
}
