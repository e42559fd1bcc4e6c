//! Property test of the leader's DIFF / TRUNC / SNAP decision: whatever a learner's log is
//! (a prefix of the leader's history, maybe followed by txns of a dead epoch the leader never
//! saw), executing the plan leaves the learner with exactly the leader's history.

use proptest::prelude::*;
use zk_proto::zxid::{epoch_of, make};
use zk_quorum::sync::{History, SyncMode, SyncPolicy, plan};
use zk_quorum::{Txn, Zxid};

/// A history: even epochs only, each a run of counters from 1.
fn history_strategy() -> impl Strategy<Value = Vec<Zxid>> {
    prop::collection::vec(1usize..5, 0..5).prop_map(|runs| {
        let mut out = Vec::new();
        for (i, n) in runs.iter().enumerate() {
            let epoch = 2 * (i as i64 + 1);
            for c in 1..=*n as i64 {
                out.push(make(epoch, c));
            }
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn executing_the_plan_yields_the_leaders_history(
        h in history_strategy(),
        cut in 0usize..30,
        dead in 0usize..4,
        same_epoch_dead in any::<bool>(),
        in_memory in 0usize..8,
        percent in prop::option::of(0u32..100),
        snapshot_bytes in 0u64..200,
        base_cut in 0usize..4,
    ) {
        // The leader's log may start after a snapshot (its state machine is at the base).
        let base_idx = base_cut.min(h.len());
        let base = if base_idx == 0 { 0 } else { h[base_idx - 1] };
        let mut history = History::new(base, in_memory, 1000);
        for &z in &h[base_idx..] {
            history.push(&Txn::new(z, vec![1u8; 10]));
        }
        // The learner: a prefix of the history, then txns of a dead epoch.
        let k = cut.min(h.len());
        let mut peer: Vec<Zxid> = h[..k].to_vec();
        let last_epoch = peer.last().map_or(0, |&z| epoch_of(z));
        let next_in_same_epoch = h.get(k).is_some_and(|&z| epoch_of(z) == last_epoch);
        // Zab allows a dead suffix only where the leader's history moves to a later epoch:
        // had its history continued the same epoch, the learner's extra zxids would be the
        // leader's own txns; and an epoch that proposed anything was established on that
        // very prefix, so the leader's later txns all belong to later epochs.
        if dead > 0 && !next_in_same_epoch {
            if same_epoch_dead && last_epoch > 0 {
                // The old leader of this epoch logged more than the new leader has.
                let c = peer.last().map_or(0, |&z| z & 0xffff_ffff);
                for i in 1..=dead as i64 {
                    peer.push(make(last_epoch, c + i));
                }
            } else {
                // An odd epoch, between the prefix's and the leader's next one.
                let e = last_epoch + 1;
                for i in 1..=dead as i64 {
                    peer.push(make(e, i));
                }
            }
        }
        let has_dead = peer.len() > k;
        let peer_last = peer.last().copied().unwrap_or(0);
        let applied = history.last_zxid();
        let p = plan(&history, peer_last, SyncPolicy { snapshot_size_percent: percent, snapshot_bytes, applied: base.max(0) });
        // The mode ZooKeeper's syncFollower picks for such a learner.
        let expected = if has_dead {
            // Ahead of the leader: TRUNC to its last zxid; behind with unknown txns: a TRUNC
            // would cross an epoch boundary, so SNAP.
            if k == h.len() { SyncMode::Trunc } else { SyncMode::Snap }
        } else if peer_last == history.last_zxid() {
            SyncMode::Diff
        } else if peer_last < base {
            SyncMode::Snap
        } else {
            let behind = h.iter().filter(|&&z| z > peer_last).count();
            let from_disk = behind > in_memory;
            let fits = percent.is_some_and(|p| 10 * behind as u64 <= snapshot_bytes * u64::from(p) / 100);
            if from_disk && !fits { SyncMode::Snap } else { SyncMode::Diff }
        };
        prop_assert_eq!(p.mode, expected, "plan {:?} for peer {:x?} base {:#x}", p, peer, base);
        // Execute it.
        let mut result: Vec<Zxid> = match p.mode {
            SyncMode::Snap => h[..base_idx].to_vec(),
            SyncMode::Diff => peer.clone(),
            SyncMode::Trunc => peer.iter().copied().filter(|&z| z <= p.zxid).collect(),
        };
        if p.mode == SyncMode::Snap {
            prop_assert_eq!(p.send_after, base);
        } else {
            prop_assert_eq!(result.last().copied().unwrap_or(0), p.send_after, "the learner must end where the sent txns start: {:?}", p);
        }
        result.extend(h.iter().copied().filter(|&z| z > p.send_after));
        prop_assert_eq!(&result, &h, "plan {:?} for peer {:x?} base {:#x} applied {:#x}", p, peer, base, applied);
    }
}
