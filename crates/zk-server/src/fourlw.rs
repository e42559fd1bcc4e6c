//! Four-letter words on the client port, answered in ZooKeeper 3.8's text format
//! (monitoring scripts parse `srvr`'s `Mode:` line and `mntr`'s `zk_*` keys).
//! `4lw.commands.whitelist` is honoured: a word not on it gets ZooKeeper's refusal text.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use zk_proto::jute::FourLetterWord;

use crate::server::{Role, Shared};

/// The version string `srvr`, `stat`, `mntr` and `envi` print. Tools parse its first
/// three numbers as the ZooKeeper version the server is compatible with.
pub const VERSION: &str = concat!("3.8.4-zk-rs-", env!("CARGO_PKG_VERSION"));

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
        FourLetterWord::Isro => "rw".into(),
        FourLetterWord::Srst => {
            shared.stats.reset();
            "Server stats reset.\n".into()
        }
        FourLetterWord::Crst => "Connection stats reset.\n".into(),
        FourLetterWord::Gtmk => "0\n".into(),
        FourLetterWord::Stmk => "0\n".into(),
        _ if !serving => "This ZooKeeper instance is not currently serving requests\n".into(),
        FourLetterWord::Srvr => server_stats(shared, false),
        FourLetterWord::Stat => server_stats(shared, true),
        FourLetterWord::Mntr => monitor(shared),
        FourLetterWord::Wchs => shared.watches().wchs_text(),
        FourLetterWord::Wchc => shared.watches().wchc_text(),
        FourLetterWord::Wchp => shared.watches().wchp_text(),
        FourLetterWord::Cons => connections(shared),
        FourLetterWord::Conf => configuration(shared),
        FourLetterWord::Envi => environment(shared),
        FourLetterWord::Dump => dump(shared),
        FourLetterWord::Dirs => dirs(shared),
        FourLetterWord::Hash => "Digest in every 128 txns:\n".into(),
        FourLetterWord::TelnetClose => String::new(),
    }
}

/// min/avg/max latency in ms, as ZooKeeper prints it.
fn latency(shared: &Shared) -> (u64, f64, u64) {
    let s = &shared.stats;
    let n = s.requests.load(Ordering::Relaxed);
    if n == 0 {
        return (0, 0.0, 0);
    }
    let min = s.latency_min_us.load(Ordering::Relaxed) / 1000;
    let max = s.latency_max_us.load(Ordering::Relaxed) / 1000;
    let avg = s.latency_total_us.load(Ordering::Relaxed) as f64 / n as f64 / 1000.0;
    (min, avg, max)
}

fn server_stats(shared: &Shared, with_clients: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Zookeeper version: {VERSION}, built on unknown");
    if with_clients {
        out.push_str("Clients:\n");
        for (session, h) in shared.connections() {
            let _ = writeln!(out, " /{}[1](queued=0,sid={session:#x})", h.remote);
        }
        out.push('\n');
    }
    let (min, avg, max) = latency(shared);
    let s = &shared.stats;
    let tree = shared.tree();
    let _ = writeln!(out, "Latency min/avg/max: {min}/{avg:.4}/{max}");
    let _ = writeln!(
        out,
        "Received: {}",
        s.packets_received.load(Ordering::Relaxed)
    );
    let _ = writeln!(out, "Sent: {}", s.packets_sent.load(Ordering::Relaxed));
    let _ = writeln!(out, "Connections: {}", shared.connection_count());
    let _ = writeln!(
        out,
        "Outstanding: {}",
        s.outstanding.load(Ordering::Relaxed)
    );
    let _ = writeln!(out, "Zxid: {:#x}", tree.last_processed_zxid());
    let _ = writeln!(out, "Mode: {}", shared.role().mode_name());
    let _ = writeln!(out, "Node count: {}", tree.node_count());
    out
}

fn monitor(shared: &Shared) -> String {
    let (min, avg, max) = latency(shared);
    let s = &shared.stats;
    let tree = shared.tree();
    let watches = shared.watches().watch_count();
    let mut kv: Vec<(&str, String)> = vec![
        ("zk_version", format!("{VERSION}, built on unknown")),
        ("zk_server_state", shared.role().mode_name().to_string()),
        ("zk_avg_latency", format!("{avg:.4}")),
        ("zk_max_latency", max.to_string()),
        ("zk_min_latency", min.to_string()),
        (
            "zk_packets_received",
            s.packets_received.load(Ordering::Relaxed).to_string(),
        ),
        (
            "zk_packets_sent",
            s.packets_sent.load(Ordering::Relaxed).to_string(),
        ),
        (
            "zk_num_alive_connections",
            shared.connection_count().to_string(),
        ),
        (
            "zk_outstanding_requests",
            s.outstanding.load(Ordering::Relaxed).to_string(),
        ),
        ("zk_znode_count", tree.node_count().to_string()),
        ("zk_watch_count", watches.to_string()),
        ("zk_ephemerals_count", tree.ephemeral_count().to_string()),
        (
            "zk_approximate_data_size",
            tree.approximate_data_size().to_string(),
        ),
        (
            "zk_last_processed_zxid",
            format!("{:#x}", tree.last_processed_zxid()),
        ),
        (
            "zk_txns_applied",
            s.txns_applied.load(Ordering::Relaxed).to_string(),
        ),
        (
            "zk_fsync_count",
            s.log_flushes.load(Ordering::Relaxed).to_string(),
        ),
        (
            "zk_uptime",
            shared.started.elapsed().as_millis().to_string(),
        ),
    ];
    if let Some(fds) = open_fds() {
        kv.push(("zk_open_file_descriptor_count", fds.to_string()));
    }
    if shared.role() == Role::Leader {
        kv.push(("zk_learners", "0".into()));
        kv.push(("zk_synced_followers", "0".into()));
        kv.push(("zk_pending_syncs", "0".into()));
    }
    let mut out = String::new();
    for (k, v) in kv {
        let _ = writeln!(out, "{k}\t{v}");
    }
    out
}

fn open_fds() -> Option<usize> {
    std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count())
}

fn connections(shared: &Shared) -> String {
    let mut out = String::new();
    for (session, h) in shared.connections() {
        let _ = writeln!(out, " /{}[1](queued=0,sid={session:#x})", h.remote);
    }
    out.push('\n');
    out
}

fn configuration(shared: &Shared) -> String {
    let c = &shared.config;
    let mut out = String::new();
    let _ = writeln!(out, "clientPort={}", c.client_port.unwrap_or(0));
    let _ = writeln!(out, "dataDir={}", c.data_dir.display());
    let _ = writeln!(out, "dataLogDir={}", c.data_log_dir.display());
    let _ = writeln!(out, "tickTime={}", c.tick_time_ms);
    let _ = writeln!(out, "maxClientCnxns={}", c.max_client_cnxns);
    let _ = writeln!(out, "minSessionTimeout={}", c.min_session_timeout_ms);
    let _ = writeln!(out, "maxSessionTimeout={}", c.max_session_timeout_ms);
    let _ = writeln!(out, "serverId={}", shared.my_id);
    if !c.servers.is_empty() {
        let _ = writeln!(out, "initLimit={}", c.init_limit);
        let _ = writeln!(out, "syncLimit={}", c.sync_limit);
        let _ = writeln!(out, "electionAlg={}", c.election_alg);
        for (id, s) in &c.servers {
            let _ = writeln!(out, "server.{id}={s}");
        }
    }
    out
}

fn environment(shared: &Shared) -> String {
    let mut out = String::from("Environment:\n");
    let _ = writeln!(out, "zookeeper.version={VERSION}, built on unknown");
    let _ = writeln!(out, "host.name={}", hostname());
    let _ = writeln!(out, "os.name={}", std::env::consts::OS);
    let _ = writeln!(out, "os.arch={}", std::env::consts::ARCH);
    let _ = writeln!(
        out,
        "user.dir={}",
        std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default()
    );
    let _ = writeln!(out, "server.id={}", shared.my_id);
    let _ = writeln!(out, "process.id={}", std::process::id());
    out
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

fn dump(shared: &Shared) -> String {
    let tree = shared.tree();
    let mut out = String::from("SessionTracker dump:\n");
    let sessions: Vec<(i64, i32)> = tree.sessions().collect();
    let _ = writeln!(out, "Global Sessions({}):", sessions.len());
    for (id, timeout) in &sessions {
        let _ = writeln!(out, "{id:#x}\t{timeout}ms");
    }
    out.push_str("ephemeral nodes dump:\n");
    let owners = tree.sessions_with_ephemerals();
    let _ = writeln!(out, "Sessions with Ephemerals ({}):", owners.len());
    for s in owners {
        let _ = writeln!(out, "{s:#x}:");
        for p in tree.ephemerals(s) {
            let _ = writeln!(out, "\t{p}");
        }
    }
    out
}

fn dirs(shared: &Shared) -> String {
    let c = &shared.config;
    let size = |p: &std::path::Path| dir_size(p, 4);
    format!(
        "datadir_size: {}\nlogdir_size: {}\n",
        size(&c.data_dir),
        size(&c.data_log_dir)
    )
}

fn dir_size(path: &std::path::Path, depth: u32) -> u64 {
    let Ok(rd) = std::fs::read_dir(path) else {
        return 0;
    };
    rd.filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() && depth > 0 => dir_size(&e.path(), depth - 1),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
