//! The node's metrics in the Prometheus text format (`GET /metrics` on the admin server),
//! and the counters behind them that `server` does not own: request-latency histograms
//! and [`QuorumStats`], the hooks leader election and Zab feed.
//!
//! Names follow the metrics Apache ZooKeeper 3.8 exports through its Prometheus provider
//! (`znode_count`, `watch_count`, `num_alive_connections`, `outstanding_requests`,
//! `packets_received`, `fsynctime`, `readlatency`, `updatelatency`, `learners`,
//! `synced_followers`, `diff_count`, `snap_count`, `election_time`, …), so dashboards
//! written for ZooKeeper find them. ZooKeeper's latency summaries are histograms here
//! (same `_sum` and `_count` series, plus `_bucket`); what ZooKeeper has no name for
//! carries a plain descriptive name (`trunc_count`, `txns_applied`, `server_state`).

use std::fmt::{Display, Write as _};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use zk_quorum::driver::NodeStatus;

use crate::server::{Role, Shared};

/// Upper bounds of the latency histogram buckets, µs (the `le` labels are in ms).
pub const LATENCY_BUCKETS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// A latency histogram with fixed buckets ([`LATENCY_BUCKETS_US`] and +Inf), lock-free.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last one is +Inf.
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    count: AtomicU64,
    sum_us: AtomicU64,
    max_us: AtomicU64,
    /// `u64::MAX - min`, so that the zero a `Default` starts with means "none yet".
    inverted_min_us: AtomicU64,
}

/// A copy of a [`Histogram`] at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound in ms, observations at or below it)`, ascending, cumulative; the
    /// +Inf bucket is `count`.
    pub buckets: Vec<(f64, u64)>,
    /// Observations.
    pub count: u64,
    /// Sum of the observations, µs.
    pub sum_us: u64,
    /// Smallest observation, µs (0 when there is none).
    pub min_us: u64,
    /// Largest observation, µs.
    pub max_us: u64,
}

impl Histogram {
    /// Records one observation of `us` µs.
    pub fn record(&self, us: u64) {
        let i = LATENCY_BUCKETS_US.partition_point(|&b| b < us);
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
        self.inverted_min_us
            .fetch_max(u64::MAX - us, Ordering::Relaxed);
    }

    /// The current figures.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let buckets = LATENCY_BUCKETS_US
            .iter()
            .zip(&self.buckets)
            .map(|(bound, n)| {
                total += n.load(Ordering::Relaxed);
                (*bound as f64 / 1000.0, total)
            })
            .collect();
        let count = self.count.load(Ordering::Relaxed);
        let inverted = self.inverted_min_us.load(Ordering::Relaxed);
        HistogramSnapshot {
            buckets,
            // Concurrent records may make the buckets run ahead of the count for a moment.
            count: count.max(total),
            sum_us: self.sum_us.load(Ordering::Relaxed),
            min_us: if count == 0 { 0 } else { u64::MAX - inverted },
            max_us: self.max_us.load(Ordering::Relaxed),
        }
    }
}

/// How a leader brought a learner up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// The missing txns were sent.
    Diff,
    /// The learner dropped txns the new epoch does not have.
    Trunc,
    /// A full snapshot was sent.
    Snap,
}

/// The phase of Zab a peer is in (`QuorumPeer.ZabState`, the `zabstate` command).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZabState {
    /// Leader election.
    Election,
    /// Discovery (epoch agreement).
    Discovery,
    /// Synchronisation with the leader.
    Synchronization,
    /// Broadcast: serving.
    Broadcast,
}

impl ZabState {
    /// The lower-case name ZooKeeper prints.
    pub fn name(self) -> &'static str {
        match self {
            ZabState::Election => "election",
            ZabState::Discovery => "discovery",
            ZabState::Synchronization => "synchronization",
            ZabState::Broadcast => "broadcast",
        }
    }
}

/// Ensemble counters and gauges, fed by leader election and Zab (all zero on a
/// standalone server). Gauges are set with `store`, counters grow with `fetch_add` or
/// the `record_*` helpers; `mntr`, the admin commands and `/metrics` read them.
#[derive(Debug, Default)]
pub struct QuorumStats {
    /// Leader: learners connected (`zk_learners`).
    pub learners: AtomicU64,
    /// Leader: followers in sync, ready for proposals (`zk_synced_followers`).
    pub synced_followers: AtomicU64,
    /// Leader: non-voting followers in sync (`zk_synced_non_voting_followers`).
    pub synced_non_voting_followers: AtomicU64,
    /// Leader: observers in sync (`zk_synced_observers`).
    pub synced_observers: AtomicU64,
    /// Leader: `sync` requests waiting for a quorum (`zk_pending_syncs`).
    pub pending_syncs: AtomicU64,
    /// Leader: learners synchronised with DIFF (`diff_count`).
    pub diff_syncs: AtomicU64,
    /// Leader: learners synchronised with TRUNC.
    pub trunc_syncs: AtomicU64,
    /// Leader: learners synchronised with SNAP (`snap_count`).
    pub snap_syncs: AtomicU64,
    /// Times this peer went LOOKING (`looking_count`).
    pub looking: AtomicU64,
    /// Leader elections this peer finished (`election_time_count`).
    pub elections: AtomicU64,
    /// Sum of election durations, ms (`election_time_sum`).
    pub election_time_total_ms: AtomicU64,
    /// Leader: proposals sent (`proposal_count`).
    pub proposals: AtomicU64,
    /// Leader: commits sent (`commit_count`).
    pub commits: AtomicU64,
    last_proposal_bytes: AtomicU64,
    max_proposal_bytes: AtomicU64,
    inverted_min_proposal_bytes: AtomicU64,
    /// The elected leader's sid + 1 (0: none known).
    leader_plus_one: AtomicU64,
    zab_state: AtomicU8,
}

impl QuorumStats {
    /// Counts one learner synchronisation.
    pub fn record_sync(&self, mode: SyncMode) {
        let c = match mode {
            SyncMode::Diff => &self.diff_syncs,
            SyncMode::Trunc => &self.trunc_syncs,
            SyncMode::Snap => &self.snap_syncs,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one finished election that took `duration_ms`.
    pub fn record_election(&self, duration_ms: u64) {
        self.elections.fetch_add(1, Ordering::Relaxed);
        self.election_time_total_ms
            .fetch_add(duration_ms, Ordering::Relaxed);
    }

    /// Counts one proposal of `size_bytes` (the leader's `Proposal sizes` line).
    pub fn record_proposal(&self, size_bytes: u64) {
        self.proposals.fetch_add(1, Ordering::Relaxed);
        self.last_proposal_bytes
            .store(size_bytes, Ordering::Relaxed);
        self.max_proposal_bytes
            .fetch_max(size_bytes, Ordering::Relaxed);
        self.inverted_min_proposal_bytes
            .fetch_max(u64::MAX - size_bytes, Ordering::Relaxed);
    }

    /// `(last, min, max)` proposal sizes in bytes, if any proposal was recorded.
    pub fn proposal_sizes(&self) -> Option<(u64, u64, u64)> {
        if self.proposals.load(Ordering::Relaxed) == 0 {
            return None;
        }
        Some((
            self.last_proposal_bytes.load(Ordering::Relaxed),
            u64::MAX - self.inverted_min_proposal_bytes.load(Ordering::Relaxed),
            self.max_proposal_bytes.load(Ordering::Relaxed),
        ))
    }

    /// Records the elected leader (`None` while looking).
    pub fn set_leader(&self, sid: Option<u64>) {
        let v = sid.map_or(0, |s| s.saturating_add(1));
        self.leader_plus_one.store(v, Ordering::Relaxed);
    }

    /// The elected leader's sid, if known.
    pub fn leader(&self) -> Option<u64> {
        self.leader_plus_one.load(Ordering::Relaxed).checked_sub(1)
    }

    /// Records the Zab phase this peer is in.
    pub fn set_zab_state(&self, state: ZabState) {
        let v = match state {
            ZabState::Election => 0,
            ZabState::Discovery => 1,
            ZabState::Synchronization => 2,
            ZabState::Broadcast => 3,
        };
        self.zab_state.store(v, Ordering::Relaxed);
    }

    /// The Zab phase this peer is in (election until told otherwise).
    pub fn zab_state(&self) -> ZabState {
        match self.zab_state.load(Ordering::Relaxed) {
            1 => ZabState::Discovery,
            2 => ZabState::Synchronization,
            3 => ZabState::Broadcast,
            _ => ZabState::Election,
        }
    }
}

impl QuorumStats {
    /// Zeroes the leader-only gauges (the node stopped leading).
    pub fn clear_leader_gauges(&self) {
        for g in [
            &self.learners,
            &self.synced_followers,
            &self.synced_non_voting_followers,
            &self.synced_observers,
            &self.pending_syncs,
        ] {
            g.store(0, Ordering::Relaxed);
        }
    }
}

/// Copies one leadership's [`NodeStatus`] (the Zab driver's `watch` channel) into
/// [`QuorumStats`]: the gauges as they are, the sync counts as increments, since each
/// leadership's driver counts from zero and the exported counters never go down. Make
/// one per leadership and call [`LeaderStatusFeed::update`] on every status change.
#[derive(Debug, Default)]
pub struct LeaderStatusFeed {
    last: NodeStatus,
}

impl LeaderStatusFeed {
    /// Records `now`.
    pub fn update(&mut self, q: &QuorumStats, now: &NodeStatus) {
        let gauge = |g: &AtomicU64, v: usize| g.store(v as u64, Ordering::Relaxed);
        gauge(&q.learners, now.learners);
        gauge(&q.synced_followers, now.synced_followers);
        gauge(&q.synced_observers, now.synced_observers);
        gauge(&q.pending_syncs, now.pending_syncs);
        let add = |c: &AtomicU64, now: u64, before: u64| {
            c.fetch_add(now.saturating_sub(before), Ordering::Relaxed);
        };
        add(&q.diff_syncs, now.syncs_diff, self.last.syncs_diff);
        add(&q.trunc_syncs, now.syncs_trunc, self.last.syncs_trunc);
        add(&q.snap_syncs, now.syncs_snap, self.last.syncs_snap);
        self.last = *now;
    }
}

/// A Prometheus text-format (0.0.4) writer: `# HELP`/`# TYPE` once per family, then its
/// samples.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

/// The `Content-Type` of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Self {
        Exposition::default()
    }

    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample line.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.out, "{k}=\"{v}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A gauge with one unlabelled sample.
    pub fn gauge(&mut self, name: &str, help: &str, value: impl Display) {
        self.header(name, "gauge", help);
        self.sample(name, &[], value);
    }

    /// A counter with one unlabelled sample.
    pub fn counter(&mut self, name: &str, help: &str, value: impl Display) {
        self.header(name, "counter", help);
        self.sample(name, &[], value);
    }

    /// A summary without quantiles: `_sum` and `_count` only.
    pub fn summary(&mut self, name: &str, help: &str, count: u64, sum: impl Display) {
        self.header(name, "summary", help);
        self.sample(&format!("{name}_sum"), &[], sum);
        self.sample(&format!("{name}_count"), &[], count);
    }

    /// A histogram in ms.
    pub fn histogram(&mut self, name: &str, help: &str, h: &HistogramSnapshot) {
        self.header(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        for (le, n) in &h.buckets {
            self.sample(&bucket, &[("le", &le.to_string())], n);
        }
        self.sample(&bucket, &[("le", "+Inf")], h.count);
        self.sample(&format!("{name}_sum"), &[], h.sum_us as f64 / 1000.0);
        self.sample(&format!("{name}_count"), &[], h.count);
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

/// Every role, for the `server_state` gauge (one sample per role, 1 for the current one).
const ROLES: [Role; 5] = [
    Role::NotServing,
    Role::Standalone,
    Role::Leader,
    Role::Follower,
    Role::Observer,
];

/// The node's metrics in the Prometheus text format.
pub fn render(shared: &Shared) -> String {
    let facts = crate::fourlw::Facts::gather(shared);
    let s = &shared.stats;
    let q = &s.quorum;
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let mut e = Exposition::new();

    e.gauge("znode_count", "Number of znodes", facts.znode_count);
    e.gauge("watch_count", "Number of watches", facts.watch_count);
    e.gauge(
        "ephemerals_count",
        "Number of ephemeral znodes",
        facts.ephemerals_count,
    );
    e.gauge(
        "approximate_data_size",
        "Approximate size of the znode data and paths, bytes",
        facts.approximate_data_size,
    );
    e.gauge(
        "last_processed_zxid",
        "Zxid of the last txn applied to the tree",
        facts.last_zxid,
    );
    e.gauge(
        "num_alive_connections",
        "Open client connections",
        facts.connections,
    );
    e.gauge(
        "global_sessions",
        "Sessions known to the ensemble",
        facts.global_sessions,
    );
    e.gauge(
        "outstanding_requests",
        "Client requests received and not answered yet",
        facts.outstanding,
    );
    e.gauge(
        "packets_received",
        "Packets received from clients since start or the last srst",
        facts.packets_received,
    );
    e.gauge(
        "packets_sent",
        "Packets sent to clients since start or the last srst",
        facts.packets_sent,
    );
    e.gauge(
        "avg_latency",
        "Average request latency since start or the last srst, ms",
        crate::fourlw::java_double(facts.avg_latency_ms),
    );
    e.gauge(
        "min_latency",
        "Smallest request latency since start or the last srst, ms",
        facts.min_latency_ms,
    );
    e.gauge(
        "max_latency",
        "Largest request latency since start or the last srst, ms",
        facts.max_latency_ms,
    );
    e.histogram(
        "readlatency",
        "Latency of requests answered without a txn (reads, pings, watches), ms",
        &s.read_latency.snapshot(),
    );
    e.histogram(
        "updatelatency",
        "Latency of requests that go through a txn (writes, sync), ms",
        &s.update_latency.snapshot(),
    );
    e.counter(
        "connection_request_count",
        "Client connections accepted",
        load(&s.connections_accepted),
    );
    e.counter(
        "txns_applied",
        "Txns applied to the tree",
        load(&s.txns_applied),
    );
    e.summary(
        "fsynctime",
        "Time of the txn log flushes (group commits), ms",
        load(&s.log_flushes),
        load(&s.flush_total_us) as f64 / 1000.0,
    );
    e.gauge(
        "uptime",
        "Time since the server started, ms",
        facts.uptime_ms,
    );
    if let Some(n) = facts.open_fds {
        e.gauge("open_file_descriptor_count", "Open file descriptors", n);
    }
    if let Some(n) = facts.max_fds {
        e.gauge(
            "max_file_descriptor_count",
            "Limit on open file descriptors",
            n,
        );
    }

    e.header(
        "server_state",
        "gauge",
        "1 for the role this server has now",
    );
    for role in ROLES {
        let v = u8::from(role == facts.role);
        e.sample("server_state", &[("state", role.mode_name())], v);
    }
    e.gauge(
        "quorum_size",
        "Voting members of the ensemble",
        facts.quorum_size,
    );
    e.gauge("learners", "Leader: connected learners", load(&q.learners));
    e.gauge(
        "synced_followers",
        "Leader: followers in sync",
        load(&q.synced_followers),
    );
    e.gauge(
        "synced_non_voting_followers",
        "Leader: non-voting followers in sync",
        load(&q.synced_non_voting_followers),
    );
    e.gauge(
        "synced_observers",
        "Leader: observers in sync",
        load(&q.synced_observers),
    );
    e.gauge(
        "pending_syncs",
        "Leader: sync requests waiting for a quorum",
        load(&q.pending_syncs),
    );
    e.counter(
        "diff_count",
        "Learners synchronised with DIFF",
        load(&q.diff_syncs),
    );
    e.counter(
        "trunc_count",
        "Learners synchronised with TRUNC",
        load(&q.trunc_syncs),
    );
    e.counter(
        "snap_count",
        "Learners synchronised with SNAP",
        load(&q.snap_syncs),
    );
    e.counter(
        "looking_count",
        "Times this server started looking for a leader",
        load(&q.looking),
    );
    e.summary(
        "election_time",
        "Duration of the leader elections this server took part in, ms",
        load(&q.elections),
        load(&q.election_time_total_ms),
    );
    e.counter(
        "proposal_count",
        "Leader: proposals sent",
        load(&q.proposals),
    );
    e.counter("commit_count", "Leader: commits sent", load(&q.commits));
    e.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_bounds_inclusive() {
        let h = Histogram::default();
        assert_eq!(h.snapshot().min_us, 0);
        for us in [50, 100, 101, 1_000, 20_000_000] {
            h.record(us);
        }
        let s = h.snapshot();
        assert_eq!(s.count, 5);
        assert_eq!(s.sum_us, 50 + 100 + 101 + 1_000 + 20_000_000);
        assert_eq!((s.min_us, s.max_us), (50, 20_000_000));
        assert_eq!(s.buckets[0], (0.1, 2)); // 50 and 100 (le is inclusive)
        assert_eq!(s.buckets[1], (0.25, 3));
        assert_eq!(s.buckets[3], (1.0, 4));
        // The 20 s one is only in +Inf.
        assert_eq!(s.buckets.last(), Some(&(10_000.0, 4)));
    }

    #[test]
    fn quorum_hooks() {
        let q = QuorumStats::default();
        assert_eq!(q.leader(), None);
        assert_eq!(q.zab_state(), ZabState::Election);
        assert_eq!(q.proposal_sizes(), None);
        q.set_leader(Some(0));
        assert_eq!(q.leader(), Some(0));
        q.set_leader(None);
        assert_eq!(q.leader(), None);
        q.set_zab_state(ZabState::Synchronization);
        assert_eq!(q.zab_state().name(), "synchronization");
        q.record_sync(SyncMode::Diff);
        q.record_sync(SyncMode::Snap);
        q.record_sync(SyncMode::Snap);
        assert_eq!(
            (
                q.diff_syncs.load(Ordering::Relaxed),
                q.trunc_syncs.load(Ordering::Relaxed),
                q.snap_syncs.load(Ordering::Relaxed)
            ),
            (1, 0, 2)
        );
        q.record_proposal(300);
        q.record_proposal(100);
        q.record_proposal(200);
        assert_eq!(q.proposal_sizes(), Some((200, 100, 300)));
        q.record_election(40);
        q.record_election(60);
        assert_eq!(q.elections.load(Ordering::Relaxed), 2);
        assert_eq!(q.election_time_total_ms.load(Ordering::Relaxed), 100);
    }

    /// A sample: metric name, labels, value.
    type Sample = (String, Vec<(String, String)>, f64);

    /// Parses the text format back: `(family -> type, samples)`, checking the grammar
    /// (every sample belongs to a family declared before it, once).
    fn parse(text: &str) -> (std::collections::BTreeMap<String, String>, Vec<Sample>) {
        let valid_name = |n: &str| {
            !n.is_empty()
                && n.chars().enumerate().all(|(i, c)| {
                    c == '_' || c == ':' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())
                })
        };
        let mut types = std::collections::BTreeMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                assert!(valid_name(name), "{line}");
                assert!(
                    ["counter", "gauge", "summary", "histogram"].contains(&kind),
                    "{line}"
                );
                assert!(
                    types.insert(name.to_string(), kind.to_string()).is_none(),
                    "{line}"
                );
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
            let (series, value) = line.rsplit_once(' ').expect("series value");
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("value in {line}")),
            };
            let (name, labels) = match series.split_once('{') {
                None => (series, Vec::new()),
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect("closing brace");
                    let labels = body
                        .split(',')
                        .map(|kv| {
                            let (k, v) = kv.split_once('=').expect("label=value");
                            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
                            (k.to_string(), v.expect("quoted").to_string())
                        })
                        .collect();
                    (name, labels)
                }
            };
            assert!(valid_name(name), "{line}");
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| types.contains_key(*f)))
                .unwrap_or(name);
            assert!(types.contains_key(family), "sample before its TYPE: {line}");
            samples.push((name.to_string(), labels, value));
        }
        (types, samples)
    }

    fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
        samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && l.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, v)| *v)
            .unwrap_or_else(|| panic!("no {name}{labels:?}"))
    }

    #[test]
    fn render_parses_back_and_reports_the_server_state() {
        let f = crate::fourlw::tests::fixture();
        let s = &f.shared.stats;
        s.record_request(800, false);
        s.record_request(3_000, false);
        s.record_request(40_000, true);
        s.log_flushes.store(4, Ordering::Relaxed);
        s.flush_total_us.store(10_000, Ordering::Relaxed);
        s.quorum.record_sync(SyncMode::Trunc);
        s.quorum.record_election(250);
        let (types, samples) = parse(&render(&f.shared));

        let tree = f.shared.tree();
        assert_eq!(
            value(&samples, "znode_count", &[]),
            (tree.node_count() + 1) as f64
        );
        assert_eq!(value(&samples, "ephemerals_count", &[]), 1.0);
        assert_eq!(value(&samples, "last_processed_zxid", &[]), 3.0);
        drop(tree);
        assert_eq!(value(&samples, "watch_count", &[]), 1.0);
        assert_eq!(value(&samples, "num_alive_connections", &[]), 1.0);
        assert_eq!(value(&samples, "global_sessions", &[]), 1.0);
        assert_eq!(
            value(&samples, "server_state", &[("state", "standalone")]),
            1.0
        );
        assert_eq!(value(&samples, "server_state", &[("state", "leader")]), 0.0);
        assert_eq!(types["server_state"], "gauge");

        assert_eq!(types["readlatency"], "histogram");
        assert_eq!(value(&samples, "readlatency_count", &[]), 2.0);
        assert_eq!(value(&samples, "readlatency_sum", &[]), 3.8);
        assert_eq!(value(&samples, "readlatency_bucket", &[("le", "1")]), 1.0);
        assert_eq!(value(&samples, "readlatency_bucket", &[("le", "5")]), 2.0);
        assert_eq!(
            value(&samples, "readlatency_bucket", &[("le", "+Inf")]),
            2.0
        );
        assert_eq!(value(&samples, "updatelatency_count", &[]), 1.0);
        assert_eq!(
            value(&samples, "updatelatency_bucket", &[("le", "25")]),
            0.0
        );
        assert_eq!(
            value(&samples, "updatelatency_bucket", &[("le", "50")]),
            1.0
        );
        // Buckets never decrease.
        let buckets: Vec<f64> = samples
            .iter()
            .filter(|(n, _, _)| n == "readlatency_bucket")
            .map(|(_, _, v)| *v)
            .collect();
        assert_eq!(buckets.len(), LATENCY_BUCKETS_US.len() + 1);
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]));

        assert_eq!(types["fsynctime"], "summary");
        assert_eq!(value(&samples, "fsynctime_count", &[]), 4.0);
        assert_eq!(value(&samples, "fsynctime_sum", &[]), 10.0);
        assert_eq!(types["trunc_count"], "counter");
        assert_eq!(value(&samples, "trunc_count", &[]), 1.0);
        assert_eq!(value(&samples, "diff_count", &[]), 0.0);
        assert_eq!(value(&samples, "election_time_count", &[]), 1.0);
        assert_eq!(value(&samples, "election_time_sum", &[]), 250.0);
        assert_eq!(value(&samples, "avg_latency", &[]), 14.6);
        assert_eq!(value(&samples, "max_latency", &[]), 40.0);
        for name in [
            "learners",
            "synced_followers",
            "pending_syncs",
            "snap_count",
            "uptime",
        ] {
            assert!(types.contains_key(name), "{name}");
        }
    }

    #[test]
    fn leader_status_feed_adds_sync_increments_and_sets_gauges() {
        let q = QuorumStats::default();
        let mut first = LeaderStatusFeed::default();
        let mut s = NodeStatus {
            learners: 2,
            synced_followers: 1,
            syncs_diff: 1,
            ..NodeStatus::default()
        };
        first.update(&q, &s);
        s.synced_followers = 2;
        s.syncs_diff = 2;
        s.syncs_snap = 1;
        first.update(&q, &s);
        first.update(&q, &s);
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        assert_eq!((load(&q.diff_syncs), load(&q.snap_syncs)), (2, 1));
        assert_eq!((load(&q.learners), load(&q.synced_followers)), (2, 2));
        // A new leadership: its driver counts from zero again.
        q.clear_leader_gauges();
        assert_eq!(load(&q.learners), 0);
        let mut second = LeaderStatusFeed::default();
        second.update(
            &q,
            &NodeStatus {
                learners: 1,
                syncs_trunc: 1,
                syncs_diff: 1,
                ..NodeStatus::default()
            },
        );
        assert_eq!(
            (
                load(&q.diff_syncs),
                load(&q.trunc_syncs),
                load(&q.snap_syncs)
            ),
            (3, 1, 1)
        );
        assert_eq!(load(&q.learners), 1);
    }

    #[test]
    fn exposition_escapes_label_values_and_help() {
        let mut e = Exposition::new();
        e.header("m", "gauge", "a \\ b\nc");
        e.sample("m", &[("path", "a\"b\\c\nd")], 1);
        assert_eq!(
            e.finish(),
            "# HELP m a \\\\ b\\nc\n# TYPE m gauge\nm{path=\"a\\\"b\\\\c\\nd\"} 1\n"
        );
    }
}
