//! Quota accounting, as ZooKeeper's `DataTree` does it: a path `P` has a quota when
//! `/zookeeper/quota<P>/zookeeper_limits` exists; every create, delete and setData under
//! `P` updates the count and bytes kept in `/zookeeper/quota<P>/zookeeper_stats` (its data
//! changes in place, its stat does not). Enforcement is the server's job.

use std::sync::Arc;

use super::{DataTree, split_parent};

/// Where quotas live.
pub const QUOTA_ROOT: &str = "/zookeeper/quota";
/// Name of the node that holds a quota's limits.
pub const QUOTA_LIMIT_NODE: &str = "zookeeper_limits";
/// Name of the node that holds a quota's usage.
pub const QUOTA_STAT_NODE: &str = "zookeeper_stats";

/// The quota'd path a quota node belongs to: `/zookeeper/quota/a/b/zookeeper_limits` →
/// (`/a/b`, `zookeeper_limits`).
pub(crate) fn quota_target(path: &str) -> Option<(&str, &str)> {
    let (parent, child) = split_parent(path)?;
    let target = parent.strip_prefix(QUOTA_ROOT)?;
    target.starts_with('/').then_some((target, child))
}

/// ZooKeeper's `StatsTrack`: `key=value` pairs separated by `,` or `;`, written back as
/// `count=C,bytes=B` followed, when there are other keys, by `=` and `;key=value` sorted.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct StatsTrack {
    pairs: Vec<(String, i64)>,
}

impl StatsTrack {
    /// Parses stats data; `None` if it is malformed (ZooKeeper would fail the apply).
    pub(crate) fn parse(data: &[u8]) -> Option<StatsTrack> {
        let text = std::str::from_utf8(data).ok()?;
        let mut track = StatsTrack::default();
        for pair in text.split([',', ';']).filter(|p| !p.is_empty()) {
            // Java's split("=") drops trailing empty parts: "bytes=5=" is bytes → 5.
            let mut parts = pair.split('=');
            let key = parts.next().filter(|k| !k.is_empty())?;
            let value = parts.next()?;
            let value = if value.is_empty() {
                -1
            } else {
                value.parse().ok()?
            };
            track.set(key, value);
        }
        Some(track)
    }

    pub(crate) fn get(&self, key: &str) -> i64 {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map_or(-1, |(_, v)| *v)
    }

    pub(crate) fn set(&mut self, key: &str, value: i64) {
        match self.pairs.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.pairs.push((key.to_string(), value)),
        }
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("count={},bytes={}", self.get("count"), self.get("bytes"));
        let mut rest: Vec<&(String, i64)> = self
            .pairs
            .iter()
            .filter(|(k, _)| k != "count" && k != "bytes")
            .collect();
        if !rest.is_empty() {
            out.push('=');
            rest.sort();
            for (k, v) in rest {
                out.push_str(&format!(";{k}={v}"));
            }
        }
        out.into_bytes()
    }
}

impl DataTree {
    /// The deepest path with a quota that is `path` or one of its ancestors (`/` never
    /// has one), ZooKeeper's `getMaxPrefixWithQuota`.
    pub(crate) fn max_prefix_with_quota(&self, path: &str) -> Option<Arc<str>> {
        if self.quotas.is_empty() {
            return None;
        }
        let mut cur = path;
        loop {
            if cur == "/" {
                return None;
            }
            if let Some(q) = self.quotas.get(cur) {
                return Some(q.clone());
            }
            cur = split_parent(cur)?.0;
        }
    }

    /// Adds to the usage kept for the quota on `prefix` (`updateQuotaStat`).
    pub(crate) fn update_quota_stat(&mut self, prefix: &str, bytes_diff: i64, count_diff: i64) {
        let stat_path = format!("{QUOTA_ROOT}{prefix}/{QUOTA_STAT_NODE}");
        let Some(id) = self.lookup(&stat_path) else {
            tracing::warn!(%stat_path, "quota stats node missing");
            return;
        };
        let Some(mut track) = StatsTrack::parse(self.arena.slot(id).data().unwrap_or_default())
        else {
            tracing::warn!(%stat_path, "quota stats node data malformed, not updated");
            return;
        };
        track.set("count", track.get("count").wrapping_add(count_diff));
        track.set("bytes", track.get("bytes").wrapping_add(bytes_diff));
        self.replace_data_in_place(id, track.to_bytes());
    }

    /// Recomputes the usage of the subtree at `path` into its stats node
    /// (`updateQuotaForPath`, when the stats node is created).
    pub(crate) fn update_quota_for_path(&mut self, path: &str) {
        let (mut count, mut bytes) = (0i64, 0i64);
        if let Some(root) = self.lookup(path) {
            // Bounded by the number of nodes: each is pushed once.
            let mut stack = vec![root];
            while let Some(id) = stack.pop() {
                count += 1;
                bytes += self.arena.slot(id).data_len() as i64;
                stack.extend(self.child_ids(id));
            }
        }
        let stat_path = format!("{QUOTA_ROOT}{path}/{QUOTA_STAT_NODE}");
        let Some(id) = self.lookup(&stat_path) else {
            return;
        };
        let mut track = StatsTrack::default();
        track.set("count", count);
        track.set("bytes", bytes);
        self.replace_data_in_place(id, track.to_bytes());
    }

    /// Sets a node's data without touching its stat.
    fn replace_data_in_place(&mut self, id: u32, data: Vec<u8>) {
        self.journal_modified(id);
        let new_len = data.len() as u64;
        let slot = self.arena.slot_mut(id);
        let old_len = slot.data_len() as u64;
        slot.set_data(Some(&data));
        self.data_size = self.data_size.saturating_sub(old_len) + new_len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_track_format_is_zookeepers() {
        let t = StatsTrack::parse(b"count=4,bytes=5=;countHardLimit=10;byteHardLimit=10").unwrap();
        assert_eq!(t.get("count"), 4);
        assert_eq!(t.get("bytes"), 5);
        assert_eq!(t.get("countHardLimit"), 10);
        assert_eq!(
            t.to_bytes(),
            b"count=4,bytes=5=;byteHardLimit=10;countHardLimit=10"
        );
        let t = StatsTrack::parse(b"count=-1,bytes=").unwrap();
        assert_eq!((t.get("count"), t.get("bytes")), (-1, -1));
        assert_eq!(
            StatsTrack::parse(b"").unwrap().to_bytes(),
            b"count=-1,bytes=-1"
        );
        assert_eq!(StatsTrack::parse(b"count"), None);
        assert_eq!(StatsTrack::parse(b"count=x"), None);
        assert_eq!(StatsTrack::parse(b"=3"), None);
    }

    #[test]
    fn quota_targets() {
        assert_eq!(
            quota_target("/zookeeper/quota/a/b/zookeeper_limits"),
            Some(("/a/b", "zookeeper_limits"))
        );
        assert_eq!(quota_target("/zookeeper/quota/zookeeper_limits"), None);
        assert_eq!(quota_target("/zookeeper/quotax/zookeeper_limits"), None);
        assert_eq!(quota_target("/a/zookeeper_limits"), None);
    }
}
