//! Four-letter words on the client port, answered in ZooKeeper 3.8's text format
//! (monitoring scripts parse `srvr`'s `Mode:` line and `mntr`'s `zk_*` keys).
//! `4lw.commands.whitelist` is honoured: a word not on it gets ZooKeeper's refusal text.
//!
//! The figures are gathered once per request into [`Facts`], which the admin server's
//! JSON commands and `/metrics` use too, so the three always agree.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use zk_proto::jute::FourLetterWord;
use zk_proto::zxid::Zxid;

use crate::config::LearnerType;
use crate::metrics::HistogramSnapshot;
use crate::server::{ConnStatsView, Role, Shared};

/// The version string `srvr`, `stat`, `mntr` and `envi` print. Tools parse its first
/// three numbers as the ZooKeeper version the server is compatible with.
pub const VERSION: &str = concat!("3.8.4-zk-rs-", env!("CARGO_PKG_VERSION"));

/// `Version.getFullVersion()`: the version and the build date.
pub fn full_version() -> String {
    format!("{VERSION}, built on unknown")
}

/// ZooKeeper's answer to most words while the server does not serve clients.
pub const NOT_SERVING: &str = "This ZooKeeper instance is not currently serving requests";

/// The text a four-letter word gets (the connection is closed after it).
pub fn answer(shared: &Shared, word: FourLetterWord) -> String {
    let name = word.to_string();
    if word == FourLetterWord::TelnetClose {
        return String::new();
    }
    if !shared.config.four_letter_words.is_enabled(&name) {
        return format!("{name} is not executed because it is not in the whitelist.\n");
    }
    let serving = shared.role().is_serving();
    match word {
        FourLetterWord::Ruok => "imok".into(),
        // No trace mask exists here: nothing is traced.
        FourLetterWord::Gtmk | FourLetterWord::Stmk => "0".into(),
        FourLetterWord::Envi => environment_text(),
        FourLetterWord::Isro if !serving => "null".into(),
        FourLetterWord::Isro => "rw".into(),
        _ if !serving => format!("{NOT_SERVING}\n"),
        FourLetterWord::Srst => {
            shared.stats.reset();
            "Server stats reset.\n".into()
        }
        FourLetterWord::Crst => {
            shared.reset_connection_stats();
            "Connection stats reset.\n".into()
        }
        FourLetterWord::Srvr => server_stats_text(shared, false),
        FourLetterWord::Stat => server_stats_text(shared, true),
        FourLetterWord::Mntr => monitor_text(shared),
        FourLetterWord::Wchs => shared.watches().wchs_text(),
        FourLetterWord::Wchc => shared.watches().wchc_text(),
        FourLetterWord::Wchp => shared.watches().wchp_text(),
        FourLetterWord::Cons => connections_text(shared),
        FourLetterWord::Conf => configuration_text(shared),
        FourLetterWord::Dump => dump_text(shared),
        FourLetterWord::Dirs => {
            let (data, log) = dir_sizes(shared);
            format!("datadir_size: {data}\nlogdir_size: {log}\n")
        }
        FourLetterWord::Hash => {
            let (zxid, digest) = digest(shared);
            format!("{zxid:x}: {digest}\n")
        }
        FourLetterWord::TelnetClose => String::new(),
    }
}

// -- figures shared with the admin server and /metrics ------------------------------

/// The server's figures at one moment, as `srvr`, `mntr`, the admin commands and
/// `/metrics` report them. Latencies are in ms, as ZooKeeper reports them.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    /// The role.
    pub role: Role,
    /// Znodes in the tree.
    pub znode_count: usize,
    /// Watches (data and child tables).
    pub watch_count: usize,
    /// Ephemeral znodes.
    pub ephemerals_count: usize,
    /// ZooKeeper's approximate data size (paths and data), bytes.
    pub approximate_data_size: u64,
    /// The last zxid applied to the tree.
    pub last_zxid: Zxid,
    /// Open client connections, including ones without a session (four-letter words).
    pub connections: usize,
    /// Sessions in the database.
    pub global_sessions: usize,
    /// Requests received and not answered.
    pub outstanding: u64,
    /// Packets received (since start or `srst`).
    pub packets_received: u64,
    /// Packets sent (since start or `srst`).
    pub packets_sent: u64,
    /// Smallest request latency, ms.
    pub min_latency_ms: u64,
    /// Average request latency, ms, rounded to 4 decimals.
    pub avg_latency_ms: f64,
    /// Largest request latency, ms.
    pub max_latency_ms: u64,
    /// Time since start, ms.
    pub uptime_ms: u64,
    /// Open file descriptors of the process.
    pub open_fds: Option<usize>,
    /// The soft limit on open files.
    pub max_fds: Option<u64>,
    /// Voting members in the configuration (0 for a standalone server).
    pub quorum_size: usize,
}

impl Facts {
    /// Reads the figures, taking each lock on its own.
    pub fn gather(shared: &Shared) -> Facts {
        let s = &shared.stats;
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let (znode_count, ephemerals_count, approximate_data_size, last_zxid, global_sessions) = {
            let tree = shared.tree();
            (
                // ZooKeeper's node map holds the root twice (under "" and "/"), and
                // its count shows it.
                tree.node_count() + 1,
                tree.ephemeral_count(),
                tree.approximate_data_size(),
                tree.last_processed_zxid(),
                tree.sessions().count(),
            )
        };
        let watch_count = shared.watches().watch_count();
        let n = load(&s.requests);
        let (min_latency_ms, avg_latency_ms, max_latency_ms) = if n == 0 {
            (0, 0.0, 0)
        } else {
            let avg = load(&s.latency_total_us) as f64 / n as f64 / 1000.0;
            (
                load(&s.latency_min_us) / 1000,
                round4(avg),
                load(&s.latency_max_us) / 1000,
            )
        };
        let quorum_size = if shared.config.servers.is_empty() {
            0
        } else {
            shared.config.participants().count()
        };
        Facts {
            role: shared.role(),
            znode_count,
            watch_count,
            ephemerals_count,
            approximate_data_size,
            last_zxid,
            connections: shared.clients().len(),
            global_sessions,
            outstanding: load(&s.outstanding),
            packets_received: load(&s.packets_received),
            packets_sent: load(&s.packets_sent),
            min_latency_ms,
            avg_latency_ms,
            max_latency_ms,
            uptime_ms: shared.started.elapsed().as_millis() as u64,
            open_fds: open_fds(),
            max_fds: max_fds(),
            quorum_size,
        }
    }
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// A double as Java's `Double.toString` prints it in the range ZooKeeper's figures live in
/// (`2.6667`, `1.0`, `0.0`).
pub fn java_double(x: f64) -> String {
    if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e7 {
        format!("{x:.1}")
    } else {
        x.to_string()
    }
}

/// One `mntr` value.
#[derive(Debug, Clone, PartialEq)]
pub enum MonitorValue {
    /// An integer.
    Int(i64),
    /// A double (printed as Java prints it).
    Float(f64),
    /// Text.
    Text(String),
}

impl std::fmt::Display for MonitorValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MonitorValue::Int(v) => write!(f, "{v}"),
            MonitorValue::Float(v) => f.write_str(&java_double(*v)),
            MonitorValue::Text(v) => f.write_str(v),
        }
    }
}

fn int(v: impl TryInto<i64>) -> MonitorValue {
    MonitorValue::Int(v.try_into().unwrap_or(i64::MAX))
}

/// ZooKeeper's summary set for a histogram in ms: `avg_X`, `min_X`, `max_X`, `cnt_X`,
/// `sum_X`.
fn summary_set(out: &mut Vec<(String, MonitorValue)>, name: &str, h: &HistogramSnapshot) {
    let avg = if h.count == 0 {
        0.0
    } else {
        round4(h.sum_us as f64 / h.count as f64 / 1000.0)
    };
    out.push((format!("avg_{name}"), MonitorValue::Float(avg)));
    out.push((format!("min_{name}"), int(h.min_us / 1000)));
    out.push((format!("max_{name}"), int(h.max_us / 1000)));
    out.push((format!("cnt_{name}"), int(h.count)));
    out.push((format!("sum_{name}"), int(h.sum_us / 1000)));
}

/// The `mntr` keys (without the `zk_` prefix) and values, in the order printed. Leader
/// keys appear on the leader only, `quorum_size` on ensemble members only.
pub fn monitor_values(shared: &Shared) -> Vec<(String, MonitorValue)> {
    let f = Facts::gather(shared);
    let s = &shared.stats;
    let q = &s.quorum;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let mut kv: Vec<(String, MonitorValue)> = Vec::with_capacity(64);
    let mut put = |k: &str, v: MonitorValue| kv.push((k.to_string(), v));
    put("version", MonitorValue::Text(full_version()));
    put(
        "server_state",
        MonitorValue::Text(f.role.mode_name().into()),
    );
    put("ephemerals_count", int(f.ephemerals_count));
    put("num_alive_connections", int(f.connections));
    put("avg_latency", MonitorValue::Float(f.avg_latency_ms));
    put("outstanding_requests", int(f.outstanding));
    put("znode_count", int(f.znode_count));
    put("global_sessions", int(f.global_sessions));
    // Every session is global here (no localSessionsEnabled).
    put("local_sessions", int(0));
    put("packets_sent", int(f.packets_sent));
    put("packets_received", int(f.packets_received));
    put("watch_count", int(f.watch_count));
    put("min_latency", int(f.min_latency_ms));
    put("max_latency", int(f.max_latency_ms));
    if let Some(n) = f.max_fds {
        put("max_file_descriptor_count", int(n));
    }
    if let Some(n) = f.open_fds {
        put("open_file_descriptor_count", int(n));
    }
    put("approximate_data_size", int(f.approximate_data_size));
    put("uptime", int(f.uptime_ms));
    put(
        "connection_request_count",
        int(load(&s.connections_accepted)),
    );
    put("diff_count", int(load(&q.diff_syncs)));
    put("snap_count", int(load(&q.snap_syncs)));
    put("looking_count", int(load(&q.looking)));
    put("proposal_count", int(load(&q.proposals)));
    put("commit_count", int(load(&q.commits)));
    if f.quorum_size > 0 {
        put("quorum_size", int(f.quorum_size));
    }
    if f.role == Role::Leader {
        put("learners", int(load(&q.learners)));
        put("synced_followers", int(load(&q.synced_followers)));
        put(
            "synced_non_voting_followers",
            int(load(&q.synced_non_voting_followers)),
        );
        put("synced_observers", int(load(&q.synced_observers)));
        put("pending_syncs", int(load(&q.pending_syncs)));
        let (last, min, max) = q
            .proposal_sizes()
            .map_or((-1, -1, -1), |(l, mi, ma)| (l as i64, mi as i64, ma as i64));
        put("last_proposal_size", int(last));
        put("min_proposal_size", int(min));
        put("max_proposal_size", int(max));
    }
    let flushes = load(&s.log_flushes);
    let flush_us = load(&s.flush_total_us);
    let avg_flush = if flushes == 0 {
        0.0
    } else {
        round4(flush_us as f64 / flushes as f64 / 1000.0)
    };
    put("avg_fsynctime", MonitorValue::Float(avg_flush));
    put("cnt_fsynctime", int(flushes));
    put("sum_fsynctime", int(flush_us / 1000));
    let elections = load(&q.elections);
    let election_ms = load(&q.election_time_total_ms);
    let avg_election = if elections == 0 {
        0.0
    } else {
        round4(election_ms as f64 / elections as f64)
    };
    put("avg_election_time", MonitorValue::Float(avg_election));
    put("cnt_election_time", int(elections));
    put("sum_election_time", int(election_ms));
    summary_set(&mut kv, "readlatency", &s.read_latency.snapshot());
    summary_set(&mut kv, "updatelatency", &s.update_latency.snapshot());
    kv
}

fn monitor_text(shared: &Shared) -> String {
    let mut out = String::new();
    for (k, v) in monitor_values(shared) {
        let _ = writeln!(out, "zk_{k}\t{v}");
    }
    out
}

// -- srvr, stat, cons ---------------------------------------------------------------

fn server_stats_text(shared: &Shared, with_clients: bool) -> String {
    let f = Facts::gather(shared);
    let mut out = String::new();
    let _ = writeln!(out, "Zookeeper version: {}", full_version());
    if with_clients {
        out.push_str("Clients:\n");
        for c in shared.clients() {
            let _ = writeln!(out, "{}", connection_line(&c.view(), true));
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "Latency min/avg/max: {}/{}/{}",
        f.min_latency_ms,
        java_double(f.avg_latency_ms),
        f.max_latency_ms
    );
    let _ = writeln!(out, "Received: {}", f.packets_received);
    let _ = writeln!(out, "Sent: {}", f.packets_sent);
    let _ = writeln!(out, "Connections: {}", f.connections);
    let _ = writeln!(out, "Outstanding: {}", f.outstanding);
    let _ = writeln!(out, "Zxid: {:#x}", f.last_zxid);
    let _ = writeln!(out, "Mode: {}", f.role.mode_name());
    let _ = writeln!(out, "Node count: {}", f.znode_count);
    if f.role == Role::Leader {
        let (last, min, max) = shared
            .stats
            .quorum
            .proposal_sizes()
            .map_or((-1, -1, -1), |(l, mi, ma)| (l as i64, mi as i64, ma as i64));
        let _ = writeln!(out, "Proposal sizes last/min/max: {last}/{min}/{max}");
    }
    out
}

/// An address as Java's `InetSocketAddress.toString()` prints a resolved literal, less
/// its leading `/`: `127.0.0.1:2181`, `0:0:0:0:0:0:0:1:2181`.
pub fn java_address(addr: &SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => {
            let segs: Vec<String> = a.ip().segments().iter().map(|s| format!("{s:x}")).collect();
            format!("{}:{}", segs.join(":"), a.port())
        }
    }
}

/// One connection as `stat` (brief) and `cons` print it (`ServerCnxn.dumpConnectionInfo`).
pub fn connection_line(c: &ConnStatsView, brief: bool) -> String {
    let mut out = format!(
        " /{}[{}](queued={},recved={},sent={}",
        java_address(&c.remote),
        u8::from(c.session_id != 0),
        c.outstanding,
        c.packets_received,
        c.packets_sent
    );
    if !brief && c.session_id != 0 {
        let _ = write!(
            out,
            ",sid={:#x},lop={},est={},to={}",
            c.session_id, c.last_op, c.established_ms, c.timeout_ms
        );
        if c.last_cxid >= 0 {
            let _ = write!(out, ",lcxid={:#x}", c.last_cxid);
        }
        let _ = write!(
            out,
            ",lzxid={:#x},lresp={},llat={},minlat={},avglat={},maxlat={}",
            c.last_zxid,
            c.last_response_ms,
            c.last_latency_ms,
            c.min_latency_ms,
            c.avg_latency_ms,
            c.max_latency_ms
        );
    }
    out.push(')');
    out
}

fn connections_text(shared: &Shared) -> String {
    let mut out = String::new();
    for c in shared.clients() {
        let _ = writeln!(out, "{}", connection_line(&c.view(), false));
    }
    out.push('\n');
    out
}

// -- conf, envi, dump, dirs, hash ---------------------------------------------------

/// Where the database lives: `dataDir/zk-rs` holds the log and the snapshots (ZooKeeper
/// prints its `version-2` directories here).
pub fn database_dir(shared: &Shared) -> PathBuf {
    absolute(&shared.config.data_dir).join("zk-rs")
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// `(datadir_size, logdir_size)` in bytes: the snapshots and the log share one directory.
pub fn dir_sizes(shared: &Shared) -> (u64, u64) {
    let size = dir_size(&database_dir(shared), 4);
    (size, size)
}

fn dir_size(path: &Path, depth: u32) -> u64 {
    let Ok(rd) = std::fs::read_dir(path) else {
        return 0;
    };
    rd.filter_map(Result::ok)
        .take(100_000)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() && depth > 0 => dir_size(&e.path(), depth - 1),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The `conf` keys and values (`ZooKeeperServer.dumpConf`, plus the quorum part of
/// `QuorumZooKeeperServer.dumpConf` on an ensemble member).
fn configuration_text(shared: &Shared) -> String {
    let c = &shared.config;
    let db = database_dir(shared);
    let (data_size, log_size) = dir_sizes(shared);
    let mut out = String::new();
    let _ = writeln!(out, "clientPort={}", c.client_port.unwrap_or(0));
    let _ = writeln!(
        out,
        "secureClientPort={}",
        c.secure_client_port.map_or(-1, i32::from)
    );
    let _ = writeln!(out, "dataDir={}", db.display());
    let _ = writeln!(out, "dataDirSize={data_size}");
    let _ = writeln!(out, "dataLogDir={}", db.display());
    let _ = writeln!(out, "dataLogSize={log_size}");
    let _ = writeln!(out, "tickTime={}", c.tick_time_ms);
    let _ = writeln!(out, "maxClientCnxns={}", c.max_client_cnxns);
    let _ = writeln!(out, "minSessionTimeout={}", c.min_session_timeout_ms);
    let _ = writeln!(out, "maxSessionTimeout={}", c.max_session_timeout_ms);
    let _ = writeln!(out, "clientPortListenBacklog=-1");
    let _ = writeln!(out, "serverId={}", shared.my_id);
    if let Some(me) = c.servers.get(&shared.my_id) {
        let _ = writeln!(out, "initLimit={}", c.init_limit);
        let _ = writeln!(out, "syncLimit={}", c.sync_limit);
        let _ = writeln!(out, "electionAlg={}", c.election_alg);
        let _ = writeln!(out, "electionPort={}", me.election.port);
        let _ = writeln!(out, "quorumPort={}", me.quorum.port);
        let peer_type = match me.learner_type {
            LearnerType::Participant => 0,
            LearnerType::Observer => 1,
        };
        let _ = writeln!(out, "peerType={peer_type}");
        out.push_str("membership: \n");
        for (id, s) in &c.servers {
            let _ = writeln!(out, "server.{id}={s}");
        }
        out.push_str("version=0\n");
    }
    out
}

/// The `envi` keys and values that apply to a native process (ZooKeeper's
/// `Environment.list()` less the `java.*` and JVM-memory entries).
pub fn environment() -> Vec<(&'static str, String)> {
    let os_name = match std::env::consts::OS {
        "linux" => "Linux".to_string(),
        "macos" => "Mac OS X".to_string(),
        other => other.to_string(),
    };
    let os_arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        other => other,
    };
    vec![
        ("zookeeper.version", full_version()),
        ("host.name", hostname()),
        ("os.name", os_name),
        ("os.arch", os_arch.to_string()),
        ("os.version", read_trimmed("/proc/sys/kernel/osrelease")),
        ("user.name", user_name()),
        (
            "user.home",
            std::env::var("HOME").unwrap_or_else(|_| "?".into()),
        ),
        (
            "user.dir",
            std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
        ),
    ]
}

fn environment_text() -> String {
    let mut out = String::from("Environment:\n");
    for (k, v) in environment() {
        let _ = writeln!(out, "{k}={v}");
    }
    out
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn hostname() -> String {
    let h = read_trimmed("/proc/sys/kernel/hostname");
    if h.is_empty() { "localhost".into() } else { h }
}

/// The user the process runs as: its uid looked up in `/etc/passwd`, else `$USER`.
fn user_name() -> String {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        });
    let from_passwd = uid.and_then(|uid| {
        std::fs::read_to_string("/etc/passwd").ok().and_then(|p| {
            p.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                let _password = f.next()?;
                (f.next()? == uid).then(|| name.to_string())
            })
        })
    });
    from_passwd
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "?".into())
}

/// A wall-clock time in ms as Java's `Date.toString()` prints it in UTC
/// (`Wed Nov 25 09:01:15 UTC 2026`).
pub fn java_date(ms: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} UTC {}",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1).clamp(0, 11) as usize],
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        year
    )
}

/// True on a follower or an observer, whose sessions expire on the leader.
fn is_learner(shared: &Shared) -> bool {
    matches!(shared.role(), Role::Follower | Role::Observer)
}

fn dump_text(shared: &Shared) -> String {
    let mut out = String::from("SessionTracker dump:\n");
    if is_learner(shared) {
        // A learner's tracker (`LearnerSessionTracker`) lists the global sessions.
        let sessions: Vec<(i64, i32)> = shared.tree().sessions().collect();
        let _ = writeln!(out, "Global Sessions({}):", sessions.len());
        for (id, timeout) in sessions {
            let _ = writeln!(out, "{id:#x}\t{timeout}ms");
        }
    } else {
        out.push_str(&shared.sessions().dump_text(java_date));
    }
    out.push_str("ephemeral nodes dump:\n");
    let tree = shared.tree();
    let owners = tree.sessions_with_ephemerals();
    let _ = writeln!(out, "Sessions with Ephemerals ({}):", owners.len());
    for s in owners {
        let _ = writeln!(out, "{s:#x}:");
        for p in tree.ephemerals(s) {
            let _ = writeln!(out, "\t{p}");
        }
    }
    drop(tree);
    out.push_str("Connections dump:\n");
    out
}

/// How long a computed tree digest is answered again (`hash` walks the whole tree).
pub const DIGEST_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(1);

/// `(zxid, digest of the tree at that zxid)`. ZooKeeper keeps a digest every 128 txns;
/// this is the digest of the whole tree (`DataTree::digest`, not comparable with Apache
/// ZooKeeper's), computed at most once per [`DIGEST_MAX_AGE`].
pub fn digest(shared: &Shared) -> (Zxid, u64) {
    shared.tree_digest(DIGEST_MAX_AGE)
}

fn open_fds() -> Option<usize> {
    std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count())
}

/// The soft limit on open files (`Max open files` in `/proc/self/limits`).
fn max_fds() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_max_open_files(&limits)
}

fn parse_max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
pub(crate) mod tests;
