//! Background snapshots every `snapCount` txns and the autopurge that follows them
//! (ZooKeeper's `SyncRequestProcessor` snapshot policy plus `DatadirCleanupManager`).
//!
//! A snapshot is a cheap view of the tree (chunk pointers, copy on write) serialised on its
//! own thread while applies go on; ZooKeeper starts one after a random count in
//! `[snapCount/2 + 1, snapCount]` so that an ensemble does not snapshot all at once, and so
//! do we. After a snapshot is on disk, snapshots beyond `autopurge.snapRetainCount` and the
//! log records no retained snapshot needs are removed.

use std::thread::JoinHandle;

use tokio::sync::watch;
use zk_proto::zxid::Zxid;
use zk_storage::log::TxnLog;
use zk_storage::snapshot::{SnapshotError, SnapshotInfo, SnapshotStore};
use zk_storage::tree::DataTree;

/// Schedules snapshots of the tree and purges what they make unnecessary.
#[derive(Debug)]
pub struct Snapshotter {
    store: SnapshotStore,
    retain: usize,
    snap_count: u64,
    /// Txns to apply before the next snapshot starts.
    next_after: u64,
    since: u64,
    job: Option<(Zxid, JoinHandle<Result<SnapshotInfo, SnapshotError>>)>,
    rng: u64,
    /// Where the log may be purged to, for the owner of the log in ensemble mode.
    purge_point: watch::Sender<Option<PurgePoint>>,
}

/// How far the txn log may be purged after a snapshot: every record at or below `up_to`
/// is covered by the oldest retained snapshot. In ensemble mode the Zab driver owns the
/// log, so the snapshot scheduler publishes this and the peer loop asks the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgePoint {
    /// The oldest retained snapshot's zxid.
    pub up_to: Zxid,
    /// The size of the newest snapshot file, which a leader weighs against a DIFF from
    /// its log.
    pub snapshot_bytes: u64,
}

impl Snapshotter {
    /// A scheduler writing into `store`, keeping `retain` snapshots.
    pub fn new(store: SnapshotStore, snap_count: u64, retain: usize, seed: u64) -> Self {
        let mut s = Snapshotter {
            store,
            retain: retain.max(1),
            snap_count: snap_count.max(2),
            next_after: 0,
            since: 0,
            job: None,
            rng: seed | 1,
            purge_point: watch::channel(None).0,
        };
        s.next_after = s.draw();
        s
    }

    /// A count in `[snapCount/2 + 1, snapCount]` (xorshift: no clock, no global RNG).
    fn draw(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let half = self.snap_count / 2;
        half + 1 + self.rng % (self.snap_count - half)
    }

    /// Follows the points the log may be purged to (a new one after each snapshot), for
    /// a caller that owns the log elsewhere; `None` until the first snapshot is written.
    pub fn purge_points(&self) -> watch::Receiver<Option<PurgePoint>> {
        self.purge_point.subscribe()
    }

    /// The snapshot files.
    pub fn store(&self) -> &SnapshotStore {
        &self.store
    }

    /// Counts `n` applied txns; starts a background snapshot of `tree` when due, and
    /// finishes (purging old snapshots, and log records in `log` when given) one that has
    /// completed.
    pub fn applied(&mut self, n: u64, tree: &DataTree, log: Option<&mut dyn TxnLog>) {
        self.since += n;
        self.poll(log);
        if self.since >= self.next_after && self.job.is_none() {
            self.start(tree);
        }
    }

    /// Starts a snapshot now (unless one is running).
    pub fn start(&mut self, tree: &DataTree) {
        if self.job.is_some() {
            return;
        }
        let view = tree.snapshot_view();
        let zxid = tree.last_processed_zxid();
        let store = self.store.clone();
        let span = tracing::Span::current();
        match std::thread::Builder::new()
            .name(format!("snapshot-{zxid:x}"))
            .spawn(move || {
                let _g = span.enter();
                store.write(zxid, |w| view.write_to(w).map(drop))
            }) {
            Ok(handle) => {
                tracing::info!(zxid = format_args!("{zxid:#x}"), "snapshot started");
                self.job = Some((zxid, handle));
                self.since = 0;
                self.next_after = self.draw();
            }
            Err(e) => tracing::warn!(error = %e, "could not start the snapshot thread"),
        }
    }

    fn poll(&mut self, log: Option<&mut dyn TxnLog>) {
        if !self.job.as_ref().is_some_and(|(_, h)| h.is_finished()) {
            return;
        }
        let Some((zxid, handle)) = self.job.take() else {
            return;
        };
        match handle.join() {
            Ok(Ok(info)) => {
                tracing::info!(
                    zxid = format_args!("{:#x}", info.zxid),
                    bytes = info.file_bytes,
                    "snapshot written"
                );
                if let Some(up_to) = self.purge(log) {
                    self.purge_point.send_replace(Some(PurgePoint {
                        up_to,
                        snapshot_bytes: info.file_bytes,
                    }));
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(zxid = format_args!("{zxid:#x}"), error = %e, "snapshot failed")
            }
            Err(_) => tracing::warn!(zxid = format_args!("{zxid:#x}"), "snapshot thread panicked"),
        }
    }

    /// Keeps the newest `retain` snapshots and, when `log` is given, the log records they
    /// need. Returns the oldest retained snapshot's zxid: log records at or below it are
    /// no longer needed.
    pub fn purge(&mut self, log: Option<&mut dyn TxnLog>) -> Option<Zxid> {
        match self.store.purge(self.retain) {
            Ok(p) => {
                let removed_records = match (p.oldest_retained(), log) {
                    (Some(oldest), Some(log)) => log.purge_before(oldest).unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "could not purge the log");
                        0
                    }),
                    _ => 0,
                };
                if !p.removed.is_empty() || removed_records > 0 {
                    tracing::info!(
                        snapshots = p.removed.len(),
                        log_records = removed_records,
                        "purged"
                    );
                }
                p.oldest_retained()
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not purge snapshots");
                None
            }
        }
    }

    /// Waits for a running snapshot (shutdown).
    pub fn finish(&mut self, log: Option<&mut dyn TxnLog>) {
        if let Some((_, h)) = &self.job {
            while !h.is_finished() {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        self.poll(log);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_stay_in_zookeepers_window() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path()).unwrap();
        let mut s = Snapshotter::new(store, 100, 3, 42);
        for _ in 0..1000 {
            let d = s.draw();
            assert!((51..=100).contains(&d), "{d}");
        }
    }
}
