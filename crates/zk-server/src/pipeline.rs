//! The write pipeline of a standalone server: prep → group commit → apply → reply
//! (ZooKeeper's `PrepRequestProcessor` → `SyncRequestProcessor` → `FinalRequestProcessor`),
//! on one dedicated thread because the log and the tree are synchronous.
//!
//! Every turn takes everything queued (up to [`MAX_BATCH`] requests), preps each against
//! the tree plus the batch's own outstanding changes, makes the whole batch durable with
//! **one** log flush, and only then applies it and answers: nothing is acknowledged before
//! it is on disk, and under load many writes share one fsync.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use zk_proto::data::ErrorCode;
use zk_proto::jute::{ReplyPacket, Response, SyncResponse};
use zk_proto::txn::TxnEntry;
use zk_storage::log::TxnLog;

use crate::prep::{Prep, PrepInput, PrepOptions};
use crate::server::{Outbound, Shared};
use crate::snapshots::Snapshotter;

/// At most this many requests are prepped and committed in one turn.
pub const MAX_BATCH: usize = 1024;

/// A request for the write pipeline.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Something that becomes a txn.
    Prep(PrepInput),
    /// A client's `sync`: answered once everything submitted before it is applied.
    Sync {
        /// Session of the client.
        session: i64,
        /// The sync's xid.
        cxid: i32,
        /// The path it names (echoed back).
        path: String,
    },
}

/// Where connections send their writes.
pub type Submitter = mpsc::Sender<WriteOp>;

/// Wall-clock ms since the epoch: the time written into txn headers.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

enum Item {
    Txn(TxnEntry),
    Sync {
        session: i64,
        cxid: i32,
        path: String,
    },
}

/// What the standalone pipeline owns besides the shared tree.
pub struct StandaloneStorage<L> {
    /// The txn log.
    pub log: L,
    /// Snapshot scheduling and purge.
    pub snapshots: Snapshotter,
    /// The epoch txns are written in.
    pub epoch: i64,
}

/// Why the pipeline stopped: the log could not be written or the tree refused a txn, so
/// nothing more may be acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The txn log failed.
    #[error(transparent)]
    Log(#[from] zk_storage::log::LogError),
    /// A txn out of order.
    #[error(transparent)]
    Order(#[from] crate::server::ApplyOrderError),
}

/// Runs the standalone pipeline until every submitter is dropped.
pub fn run_standalone<L: TxnLog>(
    shared: Arc<Shared>,
    mut storage: StandaloneStorage<L>,
    mut rx: mpsc::Receiver<WriteOp>,
) -> Result<(), PipelineError> {
    let mut prep = Prep::new(PrepOptions {
        skip_acl: shared.config.skip_acl,
        ttl_enabled: shared.config.extended_types_enabled,
    });
    let mut zxid = {
        let last = storage
            .log
            .last_zxid()?
            .unwrap_or(0)
            .max(shared.last_processed_zxid());
        if zk_proto::zxid::epoch_of(last) == storage.epoch && last > 0 {
            last
        } else {
            zk_proto::zxid::make(storage.epoch, 0)
        }
    };
    let mut buf = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        buf.push(first);
        while buf.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => buf.push(op),
                Err(_) => break,
            }
        }
        // Prep the batch against the tree and the batch's own outstanding changes.
        let mut items = Vec::with_capacity(buf.len());
        {
            let tree = shared.tree();
            let mut sessions: &Shared = &shared;
            for op in buf.drain(..) {
                match op {
                    WriteOp::Prep(input) => {
                        zxid += 1;
                        let entry = prep.prep(&tree, &mut sessions, &input, zxid, now_ms());
                        items.push(Item::Txn(entry));
                    }
                    WriteOp::Sync {
                        session,
                        cxid,
                        path,
                    } => items.push(Item::Sync {
                        session,
                        cxid,
                        path,
                    }),
                }
            }
        }
        // One group commit for the batch; readers are not blocked by it.
        let encoded: Vec<(i64, Vec<u8>)> = items
            .iter()
            .filter_map(|i| match i {
                Item::Txn(e) => Some((e.header.zxid, e.encode())),
                Item::Sync { .. } => None,
            })
            .collect();
        if !encoded.is_empty() {
            let refs: Vec<(i64, &[u8])> = encoded.iter().map(|(z, b)| (*z, b.as_slice())).collect();
            let started = Instant::now();
            storage.log.append_batch(&refs)?;
            storage.log.sync()?;
            let us = started.elapsed().as_micros() as u64;
            shared.stats.log_flushes.fetch_add(1, Ordering::Relaxed);
            shared.stats.flush_total_us.fetch_add(us, Ordering::Relaxed);
        }
        // Apply in order and answer.
        let applied = {
            let mut tree = shared.tree_mut();
            let mut applied = 0;
            for item in &items {
                match item {
                    Item::Txn(entry) => {
                        let last = tree.last_processed_zxid();
                        if !zk_storage::log::is_successor(last, entry.header.zxid) {
                            return Err(crate::server::ApplyOrderError {
                                applied: last,
                                zxid: entry.header.zxid,
                            }
                            .into());
                        }
                        shared.apply_one(&mut tree, entry);
                        applied += 1;
                    }
                    Item::Sync {
                        session,
                        cxid,
                        path,
                    } => {
                        let reply = ReplyPacket::new(
                            *cxid,
                            tree.last_processed_zxid(),
                            ErrorCode::Ok,
                            Response::Sync(SyncResponse { path: path.clone() }),
                        );
                        shared.send_to(*session, Outbound::Reply(reply));
                    }
                }
            }
            prep.applied(tree.last_processed_zxid());
            applied
        };
        let tree = shared.tree();
        storage
            .snapshots
            .applied(applied, &tree, Some(&mut storage.log));
    }
    storage.snapshots.finish(Some(&mut storage.log));
    Ok(())
}

/// Submits a close for every session the tracker expires, every tick, until the
/// submitter is closed (standalone and leader).
pub async fn expire_sessions(shared: Arc<Shared>, submitter: Submitter) {
    let tick = Duration::from_millis(u64::from(shared.config.tick_time_ms.max(1)));
    let mut interval = tokio::time::interval(tick);
    loop {
        interval.tick().await;
        let now = shared.now_ms();
        let expired = shared.sessions().expired(now);
        for session in expired {
            // Like ZooKeeper, no event goes to a connected client: its connection is
            // closed once the close is applied, and it learns of the expiry when it
            // reconnects.
            tracing::info!(session = format_args!("{session:#x}"), "session expired");
            let op = WriteOp::Prep(PrepInput::CloseSession { session, cxid: 0 });
            if submitter.send(op).await.is_err() {
                return;
            }
        }
    }
}

/// Removes empty containers and expired TTL nodes every `znode.container.checkIntervalMs`
/// (ZooKeeper's `ContainerManager`), at most `maxPerMinute` a minute.
pub async fn clean_containers(shared: Arc<Shared>, submitter: Submitter) {
    let every = Duration::from_millis(shared.config.container_check_interval_ms.max(100));
    let mut interval = tokio::time::interval(every);
    interval.tick().await;
    loop {
        interval.tick().await;
        let max_per_minute = shared.config.container_max_per_minute.max(1) as u64;
        let per_run = (max_per_minute * every.as_millis() as u64 / 60_000).max(1) as usize;
        // ZooKeeper's znode.container.maxNeverUsedIntervalMs defaults to 0: a container
        // that never had a child is never removed.
        let candidates = shared.tree().cleanup_candidates(now_ms(), 0);
        for path in candidates.into_iter().take(per_run) {
            let op = WriteOp::Prep(PrepInput::DeleteContainer { path });
            if submitter.send(op).await.is_err() {
                return;
            }
        }
    }
}
