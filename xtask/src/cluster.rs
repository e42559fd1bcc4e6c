//! `cargo xtask cluster …`: a local ensemble of `zk-server` processes.
//!
//! Node `i` (1-based) runs on its own loopback address `127.0.0.i`, so the network between
//! any two nodes can be cut by address, with client port `client_base + i - 1`, quorum
//! port `quorum_base + i - 1`, election port `election_base + i - 1` and admin port
//! `8080 + i`. Everything lives under one directory (default `.cluster/`):
//! `cluster.env` (the layout), `nodeI/zoo.cfg`, `nodeI/data/myid`, `nodeI/pid`,
//! `nodeI/zk.log`.

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

/// `cargo xtask cluster` arguments.
#[derive(Args)]
pub struct ClusterArgs {
    /// Directory that holds the ensemble's configs, data and logs.
    #[arg(long, global = true, default_value = ".cluster")]
    dir: PathBuf,
    #[command(subcommand)]
    cmd: ClusterCmd,
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Build zk-server, write each node's zoo.cfg and myid, start the nodes, wait for a leader.
    Up {
        /// Number of nodes (odd: 1, 3, 5, 7).
        #[arg(short = 'n', long, default_value_t = 3)]
        nodes: u32,
        /// First client port (node i listens on base + i - 1).
        #[arg(long, default_value_t = 2181)]
        client_base: u16,
        /// First quorum port.
        #[arg(long, default_value_t = 2888)]
        quorum_base: u16,
        /// First election port.
        #[arg(long, default_value_t = 3888)]
        election_base: u16,
        /// tickTime in ms.
        #[arg(long, default_value_t = 2000)]
        tick_ms: u32,
        /// Build and run the release binary.
        #[arg(long)]
        release: bool,
        /// Seconds to wait for a leader.
        #[arg(long, default_value_t = 60)]
        wait_s: u64,
    },
    /// Role, zxid and pid of every node.
    Status,
    /// Stop node N (SIGTERM, then SIGKILL after 10 s).
    Stop {
        /// Node id.
        id: u32,
    },
    /// Start node N again.
    Start {
        /// Node id.
        id: u32,
    },
    /// Kill node N with SIGKILL.
    Kill {
        /// Node id.
        id: u32,
    },
    /// Stop every node.
    Down,
    /// Print the end of node N's log.
    Logs {
        /// Node id.
        id: u32,
        /// Number of lines.
        #[arg(short = 'n', long, default_value_t = 50)]
        lines: usize,
    },
}

/// The layout written to `cluster.env` by `up` and read back by every other verb.
#[derive(Debug, Clone)]
struct Layout {
    nodes: u32,
    client_base: u16,
    quorum_base: u16,
    election_base: u16,
    bin: PathBuf,
}

impl Layout {
    fn host(&self, id: u32) -> String {
        format!("127.0.0.{id}")
    }
    fn client_addr(&self, id: u32) -> SocketAddr {
        let port = self.client_base + (id as u16) - 1;
        SocketAddr::from(([127, 0, 0, id as u8], port))
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let text = format!(
            "nodes={}\nclient_base={}\nquorum_base={}\nelection_base={}\nbin={}\n",
            self.nodes,
            self.client_base,
            self.quorum_base,
            self.election_base,
            self.bin.display()
        );
        fs::write(dir.join("cluster.env"), text).context("writing cluster.env")
    }

    fn load(dir: &Path) -> Result<Layout> {
        let path = dir.join("cluster.env");
        let text = fs::read_to_string(&path).with_context(|| {
            format!(
                "no cluster in {} (run `cargo xtask cluster up` first)",
                dir.display()
            )
        })?;
        let get = |key: &str| -> Result<String> {
            text.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
                .map(str::to_owned)
                .with_context(|| format!("{} has no {key}", path.display()))
        };
        Ok(Layout {
            nodes: get("nodes")?.parse()?,
            client_base: get("client_base")?.parse()?,
            quorum_base: get("quorum_base")?.parse()?,
            election_base: get("election_base")?.parse()?,
            bin: PathBuf::from(get("bin")?),
        })
    }

    fn check_id(&self, id: u32) -> Result<()> {
        if id == 0 || id > self.nodes {
            bail!("no node {id}: the cluster has nodes 1..={}", self.nodes);
        }
        Ok(())
    }
}

/// Runs a `cargo xtask cluster` verb.
pub fn run(args: ClusterArgs) -> Result<()> {
    let dir = args.dir;
    match args.cmd {
        ClusterCmd::Up {
            nodes,
            client_base,
            quorum_base,
            election_base,
            tick_ms,
            release,
            wait_s,
        } => {
            let bases = Bases {
                client: client_base,
                quorum: quorum_base,
                election: election_base,
            };
            let cluster = Cluster::launch(&dir, nodes, bases, tick_ms, release, wait_s)?;
            print_status(&cluster.dir, &cluster.layout);
            println!("\nconnect string: {}", cluster.connect_string());
            // The ensemble outlives this command: `cargo xtask cluster down` stops it.
            std::mem::forget(cluster);
            Ok(())
        }
        ClusterCmd::Status => {
            let layout = Layout::load(&dir)?;
            print_status(&dir, &layout);
            Ok(())
        }
        ClusterCmd::Stop { id } => {
            let layout = Layout::load(&dir)?;
            layout.check_id(id)?;
            stop_node(&dir, id, Duration::from_secs(10))
        }
        ClusterCmd::Start { id } => {
            let layout = Layout::load(&dir)?;
            layout.check_id(id)?;
            start_node(&dir, &layout, id)
        }
        ClusterCmd::Kill { id } => {
            let layout = Layout::load(&dir)?;
            layout.check_id(id)?;
            match node_pid(&dir, id) {
                Some(pid) => {
                    signal(pid, "KILL")?;
                    let _ = fs::remove_file(dir.join(format!("node{id}/pid")));
                    println!("node{id}: killed pid {pid}");
                }
                None => println!("node{id} is not running"),
            }
            Ok(())
        }
        ClusterCmd::Down => {
            let layout = Layout::load(&dir)?;
            for id in 1..=layout.nodes {
                stop_node(&dir, id, Duration::from_secs(10))?;
            }
            Ok(())
        }
        ClusterCmd::Logs { id, lines } => {
            let layout = Layout::load(&dir)?;
            layout.check_id(id)?;
            let path = dir.join(format!("node{id}/zk.log"));
            let text =
                fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let all: Vec<&str> = text.lines().collect();
            for l in &all[all.len().saturating_sub(lines)..] {
                println!("{l}");
            }
            Ok(())
        }
    }
}

/// Port bases of a local ensemble: node `i` uses `base + i - 1`.
#[derive(Debug, Clone, Copy)]
pub struct Bases {
    /// Client ports.
    pub client: u16,
    /// Quorum (Zab) ports.
    pub quorum: u16,
    /// Election ports.
    pub election: u16,
}

/// A local ensemble of `zk-server` processes, stopped when dropped.
pub struct Cluster {
    dir: PathBuf,
    layout: Layout,
}

impl Cluster {
    /// Builds `zk-server`, writes every node's config under `dir`, starts the nodes and
    /// waits (at most `wait_s`) for a leader.
    pub fn launch(
        dir: &Path,
        nodes: u32,
        bases: Bases,
        tick_ms: u32,
        release: bool,
        wait_s: u64,
    ) -> Result<Cluster> {
        if !(1..=7).contains(&nodes) || nodes.is_multiple_of(2) {
            bail!("-n must be 1, 3, 5 or 7 (got {nodes})");
        }
        if dir.join("cluster.env").exists() {
            let old = Layout::load(dir)?;
            if (1..=old.nodes).any(|id| node_pid(dir, id).is_some()) {
                bail!(
                    "a cluster is already running in {}; `cargo xtask cluster down` first",
                    dir.display()
                );
            }
        }
        let bin = build_server(release)?;
        let layout = Layout {
            nodes,
            client_base: bases.client,
            quorum_base: bases.quorum,
            election_base: bases.election,
            bin,
        };
        fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        layout.save(&dir)?;
        for id in 1..=nodes {
            write_node_config(&dir, &layout, id, tick_ms)?;
        }
        let cluster = Cluster { dir, layout };
        for id in 1..=nodes {
            start_node(&cluster.dir, &cluster.layout, id)?;
        }
        wait_for_leader(&cluster.dir, &cluster.layout, Duration::from_secs(wait_s))?;
        Ok(cluster)
    }

    /// `host:port,host:port,…` of every node.
    pub fn connect_string(&self) -> String {
        connect_string(&self.layout)
    }

    /// Stops every node (SIGTERM, then SIGKILL).
    pub fn down(&self) {
        for id in 1..=self.layout.nodes {
            if let Err(e) = stop_node(&self.dir, id, Duration::from_secs(10)) {
                eprintln!("node{id}: {e:#}");
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.down();
    }
}

fn connect_string(layout: &Layout) -> String {
    (1..=layout.nodes)
        .map(|id| layout.client_addr(id).to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn build_server(release: bool) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!(
        "building zk-server{} …",
        if release { " (release)" } else { "" }
    );
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--package", "zk-server", "--bin", "zk-server"]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().context("running cargo build")?;
    if !status.success() {
        bail!("building zk-server failed (see the compiler output above)");
    }
    let target = target_dir()?;
    let bin = target
        .join(if release { "release" } else { "debug" })
        .join("zk-server");
    if !bin.exists() {
        bail!("built zk-server but {} is missing", bin.display());
    }
    Ok(bin)
}

/// The workspace's target directory, as cargo reports it.
pub fn target_dir() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has no parent dir")?;
    Ok(root.join("target"))
}

fn write_node_config(dir: &Path, layout: &Layout, id: u32, tick_ms: u32) -> Result<()> {
    let node = dir.join(format!("node{id}"));
    let data = node.join("data");
    fs::create_dir_all(&data)?;
    fs::write(data.join("myid"), format!("{id}\n"))?;
    let mut cfg = String::new();
    writeln!(cfg, "tickTime={tick_ms}")?;
    writeln!(cfg, "initLimit=10")?;
    writeln!(cfg, "syncLimit=5")?;
    writeln!(cfg, "dataDir={}", data.display())?;
    writeln!(cfg, "clientPortAddress={}", layout.host(id))?;
    writeln!(cfg, "clientPort={}", layout.client_addr(id).port())?;
    writeln!(cfg, "maxClientCnxns=0")?;
    writeln!(cfg, "admin.serverPort={}", 8080 + id)?;
    writeln!(cfg, "admin.serverAddress={}", layout.host(id))?;
    writeln!(cfg, "4lw.commands.whitelist=*")?;
    writeln!(cfg, "autopurge.snapRetainCount=3")?;
    writeln!(cfg, "autopurge.purgeInterval=1")?;
    if layout.nodes > 1 {
        for peer in 1..=layout.nodes {
            writeln!(
                cfg,
                "server.{peer}={}:{}:{}",
                layout.host(peer),
                layout.quorum_base + peer as u16 - 1,
                layout.election_base + peer as u16 - 1
            )?;
        }
    }
    fs::write(node.join("zoo.cfg"), cfg)?;
    Ok(())
}

fn node_pid(dir: &Path, id: u32) -> Option<u32> {
    let pid: u32 = fs::read_to_string(dir.join(format!("node{id}/pid")))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // A pid file whose process is gone (or is not ours any more) does not count.
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

fn start_node(dir: &Path, layout: &Layout, id: u32) -> Result<()> {
    if let Some(pid) = node_pid(dir, id) {
        println!("node{id} already running (pid {pid})");
        return Ok(());
    }
    let child = spawn_node(&layout.bin, &dir.join(format!("node{id}")))?;
    println!(
        "node{id}: started pid {} on {}",
        child.id(),
        layout.client_addr(id)
    );
    Ok(())
}

/// Starts `bin` on `node/zoo.cfg` in its own process group, its output appended to
/// `node/zk.log`, and records its pid in `node/pid`.
pub fn spawn_node(bin: &Path, node: &Path) -> Result<std::process::Child> {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(node.join("zk.log"))?;
    let child = Command::new(bin)
        .arg(node.join("zoo.cfg"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    fs::write(node.join("pid"), format!("{}\n", child.id()))?;
    Ok(child)
}

fn signal(pid: u32, sig: &str) -> Result<()> {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()?;
    if !status.success() {
        bail!("kill -{sig} {pid} failed");
    }
    Ok(())
}

fn stop_node(dir: &Path, id: u32, grace: Duration) -> Result<()> {
    let Some(pid) = node_pid(dir, id) else {
        println!("node{id} is not running");
        return Ok(());
    };
    signal(pid, "TERM")?;
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && Path::new(&format!("/proc/{pid}")).exists() {
        std::thread::sleep(Duration::from_millis(100));
    }
    if Path::new(&format!("/proc/{pid}")).exists() {
        signal(pid, "KILL")?;
        println!("node{id}: pid {pid} did not stop within {grace:?}, killed");
    } else {
        println!("node{id}: stopped (pid {pid})");
    }
    let _ = fs::remove_file(dir.join(format!("node{id}/pid")));
    Ok(())
}

/// Sends a four-letter word and returns the reply (empty when the node does not answer).
pub fn four_letter_word(addr: SocketAddr, word: &str, timeout: Duration) -> String {
    let attempt = || -> std::io::Result<String> {
        let mut s = TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        s.write_all(word.as_bytes())?;
        let mut out = String::new();
        s.take(1 << 20).read_to_string(&mut out)?;
        Ok(out)
    };
    attempt().unwrap_or_default()
}

/// What `srvr` says about a node.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct NodeInfo {
    /// `leader`, `follower`, `observer`, `standalone`, or empty when down / not serving.
    pub mode: String,
    /// The `Zxid:` line, as printed.
    pub zxid: String,
}

/// Parses the reply of `srvr`.
pub fn parse_srvr(reply: &str) -> NodeInfo {
    let field = |name: &str| {
        reply
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    NodeInfo {
        mode: field("Mode:"),
        zxid: field("Zxid:"),
    }
}

fn node_info(layout: &Layout, id: u32) -> NodeInfo {
    parse_srvr(&four_letter_word(
        layout.client_addr(id),
        "srvr",
        Duration::from_secs(2),
    ))
}

fn wait_for_leader(dir: &Path, layout: &Layout, limit: Duration) -> Result<()> {
    let started = Instant::now();
    loop {
        let infos: Vec<NodeInfo> = (1..=layout.nodes).map(|id| node_info(layout, id)).collect();
        let leaders = infos
            .iter()
            .filter(|i| i.mode == "leader" || i.mode == "standalone")
            .count();
        let serving = infos.iter().filter(|i| !i.mode.is_empty()).count();
        let line: Vec<String> = infos
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let m = if n.mode.is_empty() {
                    "…"
                } else {
                    n.mode.as_str()
                };
                format!("node{}={m}", i + 1)
            })
            .collect();
        eprint!(
            "\r[{:>4.1}s] waiting for a leader: {}   ",
            started.elapsed().as_secs_f64(),
            line.join(" ")
        );
        if leaders == 1 && serving == layout.nodes as usize {
            eprintln!(
                "\nensemble ready after {:.1} s",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        for id in 1..=layout.nodes {
            if node_pid(dir, id).is_none() {
                eprintln!();
                bail!(
                    "node{id} exited during start-up; its log: {}",
                    dir.join(format!("node{id}/zk.log")).display()
                );
            }
        }
        if started.elapsed() > limit {
            eprintln!();
            bail!(
                "no leader after {:?}; see the logs in {}/node*/zk.log",
                limit,
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn print_status(dir: &Path, layout: &Layout) {
    println!(
        "{:<4} {:<18} {:<11} {:<20} {:>8}",
        "id", "client address", "role", "zxid", "pid"
    );
    for id in 1..=layout.nodes {
        let pid = node_pid(dir, id);
        let info = if pid.is_some() {
            node_info(layout, id)
        } else {
            NodeInfo::default()
        };
        let role = match (pid, info.mode.as_str()) {
            (None, _) => "down",
            (Some(_), "") => "not serving",
            (Some(_), m) => m,
        };
        println!(
            "{:<4} {:<18} {:<11} {:<20} {:>8}",
            id,
            layout.client_addr(id).to_string(),
            role,
            if info.zxid.is_empty() {
                "-"
            } else {
                info.zxid.as_str()
            },
            pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into())
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_srvr_reply() {
        let reply = "Zookeeper version: 3.8.0-xyz, built on 2022\nLatency min/avg/max: 0/0.0/0\n\
                     Received: 3\nSent: 2\nConnections: 1\nOutstanding: 0\nZxid: 0x100000002\n\
                     Mode: follower\nNode count: 5\n";
        assert_eq!(
            parse_srvr(reply),
            NodeInfo {
                mode: "follower".into(),
                zxid: "0x100000002".into()
            }
        );
        assert_eq!(parse_srvr(""), NodeInfo::default());
    }

    #[test]
    fn layout_round_trips_through_its_file() {
        let dir = std::env::temp_dir().join(format!("xtask-layout-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let l = Layout {
            nodes: 5,
            client_base: 12181,
            quorum_base: 12888,
            election_base: 13888,
            bin: PathBuf::from("/x/zk-server"),
        };
        l.save(&dir).unwrap();
        let back = Layout::load(&dir).unwrap();
        assert_eq!(
            (back.nodes, back.client_base, back.bin.clone()),
            (5, 12181, l.bin.clone())
        );
        assert_eq!(back.client_addr(3).to_string(), "127.0.0.3:12183");
        assert!(back.check_id(6).is_err());
        write_node_config(&dir, &back, 2, 500).unwrap();
        let cfg = fs::read_to_string(dir.join("node2/zoo.cfg")).unwrap();
        assert!(cfg.contains("clientPortAddress=127.0.0.2\n"));
        assert!(cfg.contains("server.5=127.0.0.5:12892:13892\n"));
        assert_eq!(
            fs::read_to_string(dir.join("node2/data/myid")).unwrap(),
            "2\n"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
