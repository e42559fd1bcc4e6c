//! Synchronisation: how the leader brings a learner's log in line with its own
//! (`LearnerHandler.syncFollower` in ZooKeeper), and how a learner receives a snapshot.

use std::collections::VecDeque;

use bytes::Bytes;
use zk_proto::zxid::{epoch_of, is_epoch_start};

use crate::error::ZabError;
use crate::types::{MAX_SNAPSHOT_CHUNK_BYTES, Packet, Txn, Zxid};

/// How a learner was synchronised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SyncMode {
    /// The missing txns were sent (possibly none).
    Diff,
    /// The learner dropped txns the leader's history does not have, then got the rest.
    Trunc,
    /// The learner got a snapshot, then the txns after it.
    Snap,
}

impl SyncMode {
    /// ZooKeeper's name of the mode.
    pub fn name(self) -> &'static str {
        match self {
            SyncMode::Diff => "DIFF",
            SyncMode::Trunc => "TRUNC",
            SyncMode::Snap => "SNAP",
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    zxid: Zxid,
    size_bytes: u64,
    data: Option<Bytes>,
}

/// The leader's committed history: an index of `(zxid, size)` over its durable log (what it
/// can DIFF from disk), the newest `committed_log_count` txns with their bytes (ZooKeeper's
/// in-memory `committedLog`), and the `base` zxid before which only a snapshot holds it.
#[derive(Clone, Debug)]
pub struct History {
    base: Zxid,
    entries: VecDeque<Entry>,
    in_memory: usize,
    max_in_memory: usize,
    max_entries: usize,
    floor: Zxid,
}

impl History {
    /// An empty history whose log starts after `base` (the zxid of the snapshot the log
    /// continues from; 0 for a log that holds everything). Entries are only forgotten for
    /// the `max_entries` bound once [`History::set_floor`] allows it (the leader sets the
    /// floor to what its state machine applied).
    pub fn new(base: Zxid, max_in_memory: usize, max_entries: usize) -> Self {
        Self {
            base,
            entries: VecDeque::new(),
            in_memory: 0,
            max_in_memory,
            max_entries: max_entries.max(1),
            floor: Zxid::MIN,
        }
    }

    /// Adds a txn that is on disk only (older than the in-memory window). Zxids must grow.
    pub fn push_on_disk(&mut self, zxid: Zxid, size_bytes: u64) {
        debug_assert!(zxid > self.last_zxid(), "history zxids must grow");
        if self.in_memory > 0 {
            // A disk-only entry after in-memory ones would break the layout; keep it simple
            // by forgetting the bytes of everything before it.
            for e in self.entries.iter_mut() {
                e.data = None;
            }
            self.in_memory = 0;
        }
        self.entries.push_back(Entry {
            zxid,
            size_bytes,
            data: None,
        });
        self.evict();
    }

    /// Adds a committed txn, keeping its bytes while it is among the newest.
    pub fn push(&mut self, txn: &Txn) {
        debug_assert!(txn.zxid > self.last_zxid(), "history zxids must grow");
        self.entries.push_back(Entry {
            zxid: txn.zxid,
            size_bytes: txn.data.len() as u64,
            data: Some(txn.data.clone()),
        });
        self.in_memory += 1;
        self.evict();
    }

    fn evict(&mut self) {
        while self.in_memory > self.max_in_memory {
            let idx = self.entries.len() - self.in_memory;
            if let Some(e) = self.entries.get_mut(idx) {
                e.data = None;
            }
            self.in_memory -= 1;
        }
        while self.entries.len() > self.max_entries
            && self.entries.front().is_some_and(|e| e.zxid <= self.floor)
        {
            if let Some(e) = self.entries.pop_front() {
                self.base = e.zxid;
                if e.data.is_some() {
                    self.in_memory -= 1;
                }
            }
        }
    }

    /// Keeps every entry after `floor` even beyond the entry bound (the leader's state
    /// machine is at `floor`: a SNAP is taken there and everything after it must be sent).
    pub fn set_floor(&mut self, floor: Zxid) {
        self.floor = floor;
        self.evict();
    }

    /// Forgets everything up to `up_to` (the log was compacted into a snapshot there).
    pub fn compact(&mut self, up_to: Zxid) {
        if up_to <= self.base {
            return;
        }
        while self.entries.front().is_some_and(|e| e.zxid <= up_to) {
            if let Some(e) = self.entries.pop_front()
                && e.data.is_some()
            {
                self.in_memory -= 1;
            }
        }
        self.base = up_to;
    }

    /// The last zxid of the history (`base` when the log is empty).
    pub fn last_zxid(&self) -> Zxid {
        self.entries.back().map_or(self.base, |e| e.zxid)
    }

    /// The zxid the log starts after.
    pub fn base(&self) -> Zxid {
        self.base
    }

    /// Number of indexed txns.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no txn is indexed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when `zxid` is in the indexed log or is the base.
    pub fn contains(&self, zxid: Zxid) -> bool {
        zxid == self.base || self.entries.binary_search_by_key(&zxid, |e| e.zxid).is_ok()
    }

    /// Checks the structure: zxids grow, above `base`, and the in-memory entries are the
    /// newest ones.
    pub fn validate(&self) -> Result<(), String> {
        let mut prev = self.base;
        for (i, e) in self.entries.iter().enumerate() {
            if e.zxid <= prev {
                return Err(format!("history zxid {:#x} after {:#x}", e.zxid, prev));
            }
            let should_have_data = i >= self.entries.len() - self.in_memory;
            if should_have_data != e.data.is_some() {
                return Err(format!(
                    "history entry {:#x} has the wrong residency",
                    e.zxid
                ));
            }
            prev = e.zxid;
        }
        let over = self.entries.len().saturating_sub(self.max_entries);
        if self.in_memory > self.max_in_memory
            || (over > 0 && self.entries.front().is_some_and(|e| e.zxid <= self.floor))
        {
            return Err("history over its bounds".into());
        }
        Ok(())
    }

    /// The sync packets for the txns in `(after, last]`: a disk range (if any) then the
    /// in-memory ones, each as PROPOSAL + COMMIT.
    pub(crate) fn txns_after(&self, after: Zxid) -> (Option<(Zxid, Zxid)>, Vec<Txn>) {
        let start = self.entries.partition_point(|e| e.zxid <= after);
        let mut disk: Option<(Zxid, Zxid)> = None;
        let mut mem = Vec::new();
        for e in self.entries.iter().skip(start) {
            match &e.data {
                None => disk = Some((after, e.zxid)),
                Some(d) => mem.push(Txn {
                    zxid: e.zxid,
                    data: d.clone(),
                }),
            }
        }
        (disk, mem)
    }

    fn bytes_after(&self, after: Zxid) -> u64 {
        let start = self.entries.partition_point(|e| e.zxid <= after);
        self.entries.iter().skip(start).map(|e| e.size_bytes).sum()
    }

    fn needs_disk(&self, after: Zxid) -> bool {
        let start = self.entries.partition_point(|e| e.zxid <= after);
        self.entries.get(start).is_some_and(|e| e.data.is_none())
    }
}

/// The leader's decision for one learner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncPlan {
    /// DIFF, TRUNC or SNAP.
    pub mode: SyncMode,
    /// The DIFF / TRUNC / SNAP packet's zxid.
    pub zxid: Zxid,
    /// Every committed txn after this one is sent as PROPOSAL + COMMIT.
    pub send_after: Zxid,
}

/// The inputs of the decision besides the history.
#[derive(Clone, Copy, Debug)]
pub struct SyncPolicy {
    /// `Config::snapshot_size_percent`.
    pub snapshot_size_percent: Option<u32>,
    /// Size of the leader's newest snapshot.
    pub snapshot_bytes: u64,
    /// The zxid the leader's state machine is at (what a SNAP would contain).
    pub applied: Zxid,
}

/// Decides DIFF, TRUNC or SNAP for a learner whose log ends at `peer_last`, following
/// ZooKeeper's `LearnerHandler.syncFollower` / `queueCommittedProposals`.
pub fn plan(history: &History, peer_last: Zxid, policy: SyncPolicy) -> SyncPlan {
    let last = history.last_zxid();
    let snap = SyncPlan {
        mode: SyncMode::Snap,
        zxid: policy.applied,
        send_after: policy.applied,
    };
    let peer_new_epoch = is_epoch_start(peer_last);
    if peer_last == last {
        return SyncPlan {
            mode: SyncMode::Diff,
            zxid: last,
            send_after: last,
        };
    }
    if peer_last > last {
        if peer_new_epoch {
            return snap;
        }
        return SyncPlan {
            mode: SyncMode::Trunc,
            zxid: last,
            send_after: last,
        };
    }
    if peer_last < history.base {
        return snap;
    }
    let chosen = if peer_last == history.base {
        SyncPlan {
            mode: SyncMode::Diff,
            zxid: last,
            send_after: peer_last,
        }
    } else {
        let idx = history.entries.partition_point(|e| e.zxid < peer_last);
        let Some(first) = history.entries.get(idx) else {
            return snap;
        };
        if first.zxid == peer_last || peer_new_epoch {
            SyncPlan {
                mode: SyncMode::Diff,
                zxid: last,
                send_after: peer_last,
            }
        } else if epoch_of(first.zxid) != epoch_of(peer_last) {
            // A TRUNC may not cross an epoch boundary (ZooKeeper: the learner would crash).
            return snap;
        } else {
            let prev = idx
                .checked_sub(1)
                .and_then(|i| history.entries.get(i))
                .map_or(history.base, |e| e.zxid);
            SyncPlan {
                mode: SyncMode::Trunc,
                zxid: prev,
                send_after: prev,
            }
        }
    };
    if history.needs_disk(chosen.send_after) {
        let Some(percent) = policy.snapshot_size_percent else {
            return snap;
        };
        let limit = policy.snapshot_bytes.saturating_mul(u64::from(percent)) / 100;
        if history.bytes_after(chosen.send_after) > limit {
            return snap;
        }
    }
    chosen
}

/// Cuts a snapshot into SNAP + chunk packets (each chunk at most `chunk_bytes`, capped at
/// 1 MiB), with a crc32c per chunk. `chunks` are the state machine's serialised pieces.
pub fn snapshot_packets(zxid: Zxid, chunks: &[Bytes], chunk_bytes: usize) -> Vec<Packet> {
    let chunk_bytes = chunk_bytes.clamp(1, MAX_SNAPSHOT_CHUNK_BYTES);
    let total: u64 = chunks.iter().map(|c| c.len() as u64).sum();
    let mut out = vec![Packet::Snap {
        zxid,
        total_bytes: total,
    }];
    let mut offset = 0u64;
    let mut pieces: Vec<Bytes> = Vec::new();
    for c in chunks {
        let mut c = c.clone();
        while c.len() > chunk_bytes {
            pieces.push(c.split_to(chunk_bytes));
        }
        if !c.is_empty() {
            pieces.push(c);
        }
    }
    if pieces.is_empty() {
        pieces.push(Bytes::new());
    }
    let n = pieces.len();
    for (i, data) in pieces.into_iter().enumerate() {
        let len = data.len() as u64;
        out.push(Packet::SnapChunk {
            offset,
            crc32c: crc32c::crc32c(&data),
            data,
            last: i + 1 == n,
        });
        offset += len;
    }
    out
}

/// A learner's view of a snapshot being received: checks that chunks are contiguous,
/// intact and add up to the announced size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotReceiver {
    zxid: Zxid,
    total_bytes: u64,
    received: u64,
    done: bool,
}

impl SnapshotReceiver {
    /// Starts receiving a snapshot announced by SNAP.
    pub fn new(zxid: Zxid, total_bytes: u64, max_bytes: u64) -> Result<Self, ZabError> {
        if total_bytes > max_bytes {
            return Err(ZabError::Snapshot("larger than the configured maximum"));
        }
        Ok(Self {
            zxid,
            total_bytes,
            received: 0,
            done: false,
        })
    }

    /// The snapshot's zxid.
    pub fn zxid(&self) -> Zxid {
        self.zxid
    }

    /// True once the last chunk arrived.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Checks one chunk; `Ok(true)` when it was the last one.
    pub fn chunk(
        &mut self,
        offset: u64,
        data: &[u8],
        last: bool,
        crc: u32,
    ) -> Result<bool, ZabError> {
        if self.done {
            return Err(ZabError::Snapshot("chunk after the last one"));
        }
        if offset != self.received {
            return Err(ZabError::Snapshot("chunk out of order"));
        }
        if data.len() > MAX_SNAPSHOT_CHUNK_BYTES {
            return Err(ZabError::Snapshot("chunk larger than 1 MiB"));
        }
        if crc32c::crc32c(data) != crc {
            return Err(ZabError::Snapshot("chunk checksum mismatch"));
        }
        self.received += data.len() as u64;
        if self.received > self.total_bytes {
            return Err(ZabError::Snapshot("more bytes than announced"));
        }
        if last {
            if self.received != self.total_bytes {
                return Err(ZabError::Snapshot("fewer bytes than announced"));
            }
            self.done = true;
        }
        Ok(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zk_proto::zxid::make;

    fn history(zxids: &[Zxid], in_memory: usize) -> History {
        let mut h = History::new(0, in_memory, 1000);
        for &z in zxids {
            h.push(&Txn::new(z, vec![0u8; 10]));
        }
        h
    }

    fn policy(applied: Zxid) -> SyncPolicy {
        SyncPolicy {
            snapshot_size_percent: Some(33),
            snapshot_bytes: 1000,
            applied,
        }
    }

    #[test]
    fn same_zxid_is_an_empty_diff() {
        let h = history(&[make(1, 1), make(1, 2)], 10);
        let p = plan(&h, make(1, 2), policy(make(1, 2)));
        assert_eq!(
            p,
            SyncPlan {
                mode: SyncMode::Diff,
                zxid: make(1, 2),
                send_after: make(1, 2)
            }
        );
        let (disk, mem) = h.txns_after(p.send_after);
        assert!(disk.is_none() && mem.is_empty());
    }

    #[test]
    fn behind_in_the_window_is_a_diff_of_the_rest() {
        let h = history(&[make(1, 1), make(1, 2), make(2, 1)], 10);
        let p = plan(&h, make(1, 1), policy(0));
        assert_eq!(p.mode, SyncMode::Diff);
        let (disk, mem) = h.txns_after(p.send_after);
        assert!(disk.is_none());
        assert_eq!(
            mem.iter().map(|t| t.zxid).collect::<Vec<_>>(),
            vec![make(1, 2), make(2, 1)]
        );
    }

    #[test]
    fn ahead_of_the_leader_is_a_trunc_to_its_last() {
        let h = history(&[make(1, 1), make(1, 2)], 10);
        let p = plan(&h, make(1, 5), policy(0));
        assert_eq!(
            p,
            SyncPlan {
                mode: SyncMode::Trunc,
                zxid: make(1, 2),
                send_after: make(1, 2)
            }
        );
    }

    #[test]
    fn unknown_txn_in_the_same_epoch_truncates_to_the_previous_one() {
        // The learner (an old leader) logged (1,3) that never reached the new leader,
        // whose history continues in epoch 1 with a different txn count.
        let h = history(&[make(1, 1), make(1, 2), make(1, 4), make(2, 1)], 10);
        let p = plan(&h, make(1, 3), policy(0));
        assert_eq!(
            p,
            SyncPlan {
                mode: SyncMode::Trunc,
                zxid: make(1, 2),
                send_after: make(1, 2)
            }
        );
    }

    #[test]
    fn unknown_txn_across_epochs_is_a_snap() {
        let h = history(&[make(1, 1), make(1, 2), make(3, 1)], 10);
        let p = plan(&h, make(2, 7), policy(make(1, 2)));
        assert_eq!(
            p,
            SyncPlan {
                mode: SyncMode::Snap,
                zxid: make(1, 2),
                send_after: make(1, 2)
            }
        );
    }

    #[test]
    fn before_the_log_is_a_snap() {
        let mut h = History::new(make(1, 5), 10, 100);
        h.push(&Txn::new(make(1, 6), vec![1]));
        let p = plan(&h, make(1, 2), policy(make(1, 5)));
        assert_eq!(p.mode, SyncMode::Snap);
        assert_eq!(p.send_after, make(1, 5));
    }

    #[test]
    fn disk_diff_when_cheaper_than_a_snapshot_else_snap() {
        // Two txns in memory, eight on disk only.
        let zxids: Vec<_> = (1..=10).map(|c| make(1, c)).collect();
        let h = history(&zxids, 2);
        let cheap = plan(&h, make(1, 8), policy(make(1, 10)));
        assert_eq!(cheap.mode, SyncMode::Diff);
        let p = plan(
            &h,
            make(1, 5),
            SyncPolicy {
                snapshot_bytes: 1000,
                ..policy(make(1, 10))
            },
        );
        assert_eq!(p.mode, SyncMode::Diff);
        let (disk, mem) = h.txns_after(p.send_after);
        assert_eq!(disk, Some((make(1, 5), make(1, 8))));
        assert_eq!(mem.len(), 2);
        // 50 bytes to send but the snapshot is only 100 bytes: 33 % of it is 33.
        let p = plan(
            &h,
            make(1, 5),
            SyncPolicy {
                snapshot_bytes: 100,
                ..policy(make(1, 10))
            },
        );
        assert_eq!(p.mode, SyncMode::Snap);
        let p = plan(
            &h,
            make(1, 5),
            SyncPolicy {
                snapshot_size_percent: None,
                ..policy(make(1, 10))
            },
        );
        assert_eq!(p.mode, SyncMode::Snap);
    }

    #[test]
    fn empty_learner_gets_everything_when_the_log_is_complete() {
        let h = history(&[make(1, 1), make(1, 2)], 10);
        let p = plan(&h, 0, policy(0));
        assert_eq!(
            p,
            SyncPlan {
                mode: SyncMode::Diff,
                zxid: make(1, 2),
                send_after: 0
            }
        );
    }

    #[test]
    fn history_evicts_bytes_then_entries() {
        let mut h = History::new(0, 2, 3);
        h.set_floor(Zxid::MAX);
        for c in 1..=5 {
            h.push(&Txn::new(make(1, c), vec![c as u8]));
            h.validate().unwrap();
        }
        assert_eq!(h.base(), make(1, 2));
        assert_eq!(h.len(), 3);
        let (disk, mem) = h.txns_after(make(1, 2));
        assert_eq!(disk, Some((make(1, 2), make(1, 3))));
        assert_eq!(mem.len(), 2);
        h.compact(make(1, 4));
        h.validate().unwrap();
        assert_eq!((h.base(), h.len()), (make(1, 4), 1));
    }

    #[test]
    fn snapshot_round_trip_and_truncation() {
        let chunks = [Bytes::from(vec![7u8; 2500]), Bytes::from_static(b"tail")];
        let packets = snapshot_packets(42, &chunks, 1000);
        assert_eq!(packets.len(), 1 + 4);
        let Some(Packet::Snap { zxid, total_bytes }) = packets.first().cloned() else {
            panic!("first packet is not SNAP");
        };
        let mut rx = SnapshotReceiver::new(zxid, total_bytes, 1 << 20).unwrap();
        let mut done = false;
        for p in &packets[1..] {
            let Packet::SnapChunk {
                offset,
                data,
                last,
                crc32c,
            } = p
            else {
                panic!("not a chunk")
            };
            done = rx.chunk(*offset, data, *last, *crc32c).unwrap();
        }
        assert!(done && rx.is_done());

        let mut rx = SnapshotReceiver::new(zxid, total_bytes, 1 << 20).unwrap();
        let Packet::SnapChunk { data, crc32c, .. } = &packets[1] else {
            panic!("not a chunk")
        };
        assert!(rx.chunk(0, data, false, crc32c ^ 1).is_err());
        let mut rx = SnapshotReceiver::new(zxid, total_bytes, 1 << 20).unwrap();
        assert!(
            rx.chunk(0, data, true, *crc32c).is_err(),
            "last chunk too early"
        );
        assert!(SnapshotReceiver::new(1, 100, 10).is_err());
    }
}
