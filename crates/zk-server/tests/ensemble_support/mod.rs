//! Harness of the ensemble tests: three real `zk-server` processes, node `i` on its own
//! loopback address `127.0.0.i` with ports picked here, each with its own `zoo.cfg` and
//! `dataDir/myid` in one temp dir; every process is killed and reaped when the
//! [`Ensemble`] drops (also when a test panics). Set `ZK_ENSEMBLE_KEEP=1` to keep the
//! temp dir (configs, data, one log per start of each node) after the test.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use zookeeper_client as zk;

/// `tickTime` of the test ensembles: sessions may be as short as 2 ticks (1 s).
pub const TICK_MS: u32 = 500;

/// How long an ensemble may take to elect a leader and serve.
pub const ELECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// How long every thread of a process may take to stop after SIGSTOP.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(10);

/// True when every thread of process `pid` is in the stopped state (`T` in
/// `/proc/<pid>/task/<tid>/stat`); an error if the process is gone or a zombie.
fn all_threads_stopped(pid: u32) -> Result<bool> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .with_context(|| format!("process {pid} is gone"))?;
    let mut threads = 0;
    for task in tasks {
        // A thread that exits meanwhile has nothing left to stop.
        let Ok(stat) = std::fs::read_to_string(task?.path().join("stat")) else {
            continue;
        };
        // "tid (comm) S ...": the state follows the last ')' (comm may hold one).
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        match state {
            Some('T') => threads += 1,
            Some('Z' | 'X') => bail!("process {pid} exited"),
            _ => return Ok(false),
        }
    }
    Ok(threads > 0)
}

/// One node's addresses and process.
struct NodeProc {
    id: u32,
    ip: Ipv4Addr,
    client_port: u16,
    quorum_port: u16,
    election_port: u16,
    child: Option<Child>,
    /// Number of times the process was started (names its log file).
    starts: u32,
    /// An observer (no vote) rather than a participant.
    observer: bool,
}

/// What `srvr` says about a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srvr {
    /// `leader`, `follower`, `standalone`, `not serving`, …
    pub mode: String,
    /// The last zxid the node applied.
    pub zxid: i64,
    /// `Node count:`.
    pub node_count: u64,
}

/// A running three-node (or n-node) ensemble.
pub struct Ensemble {
    dir: Option<tempfile::TempDir>,
    nodes: Vec<NodeProc>,
    /// Lines added to every node's zoo.cfg.
    extra_cfg: String,
}

/// Ports are picked below the kernel's ephemeral range (read from
/// `/proc/sys/net/ipv4/ip_local_port_range`, 32768 if unknown), so that no outgoing
/// connection of this or another test takes one between the pick and the server's bind.
fn port_range() -> std::ops::Range<u16> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    if low > 12_000 {
        10_000..low
    } else {
        40_000..60_000
    }
}

/// Picks ports on `ip` that can be bound now, from a sequence seeded by the process id
/// and the clock (so that tests running at the same time pick apart); each pick stays
/// bound in `held` until the caller drops it.
fn reserve_port(ip: Ipv4Addr, seed: &mut u64, held: &mut Vec<TcpListener>) -> Result<u16> {
    let range = port_range();
    let span = u64::from(range.end - range.start);
    for _ in 0..200 {
        // xorshift64
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let port = range.start + (*seed % span) as u16;
        if let Ok(l) = TcpListener::bind((ip, port)) {
            held.push(l);
            return Ok(port);
        }
    }
    bail!("no free port on {ip} in {range:?}")
}

/// A seed for [`reserve_port`].
fn port_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (u64::from(std::process::id()) << 32) ^ nanos ^ 0x9E37_79B9_7F4A_7C15
}

impl Ensemble {
    /// Writes the configs of `n` nodes and starts them all (without waiting for a
    /// leader: see [`Ensemble::wait_for_leader`]).
    pub fn start(n: u32) -> Result<Ensemble> {
        Self::start_with_observers(n, 0)
    }

    /// Like [`Ensemble::start`], the last `observers` of the `n` nodes being observers.
    pub fn start_with_observers(n: u32, observers: u32) -> Result<Ensemble> {
        Self::start_configured(n, observers, "")
    }

    /// Like [`Ensemble::start_with_observers`], with `extra_cfg` (zoo.cfg lines) added to
    /// every node's config.
    pub fn start_configured(n: u32, observers: u32, extra_cfg: &str) -> Result<Ensemble> {
        ensure!((1..=9).contains(&n), "1 to 9 nodes");
        ensure!(observers < n, "at least one participant");
        let dir = tempfile::Builder::new()
            .prefix("zk-ensemble-")
            .tempdir()
            .context("creating the temp dir")?;
        let mut nodes = Vec::new();
        // Hold every listener until all ports are picked, so none is picked twice.
        let mut held = Vec::new();
        let mut seed = port_seed();
        for id in 1..=n {
            let ip = Ipv4Addr::new(127, 0, 0, id as u8);
            nodes.push(NodeProc {
                id,
                ip,
                client_port: reserve_port(ip, &mut seed, &mut held)?,
                quorum_port: reserve_port(ip, &mut seed, &mut held)?,
                election_port: reserve_port(ip, &mut seed, &mut held)?,
                child: None,
                starts: 0,
                observer: id > n - observers,
            });
        }
        drop(held);
        let mut ens = Ensemble {
            dir: Some(dir),
            nodes,
            extra_cfg: extra_cfg.to_owned(),
        };
        for id in 1..=n {
            ens.write_config(id)?;
        }
        for id in 1..=n {
            ens.spawn(id)?;
        }
        Ok(ens)
    }

    /// Starts an ensemble of three and waits for a leader with two followers; returns
    /// the ensemble and the leader's id.
    /// A node that cannot bind its ports (taken meanwhile by another program) makes
    /// this start again on other ports, at most three times.
    pub fn start_three() -> Result<(Ensemble, u32)> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut ens = Ensemble::start(3)?;
            match ens.wait_for_leader(ELECTION_TIMEOUT) {
                Ok(leader) => return Ok((ens, leader)),
                Err(e) if attempt < 3 && format!("{e:#}").contains("Address already in use") => {
                    eprintln!("ensemble start failed on a port taken meanwhile; again");
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn dir(&self) -> &Path {
        match &self.dir {
            Some(d) => d.path(),
            None => Path::new("/nonexistent"),
        }
    }

    fn node(&self, id: u32) -> &NodeProc {
        &self.nodes[(id - 1) as usize]
    }

    fn node_mut(&mut self, id: u32) -> &mut NodeProc {
        &mut self.nodes[(id - 1) as usize]
    }

    /// Node ids, 1-based.
    pub fn ids(&self) -> Vec<u32> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    fn node_dir(&self, id: u32) -> PathBuf {
        self.dir().join(format!("node{id}"))
    }

    fn write_config(&self, id: u32) -> Result<()> {
        let node = self.node(id);
        let dir = self.node_dir(id);
        let data = dir.join("data");
        std::fs::create_dir_all(&data)?;
        std::fs::write(data.join("myid"), format!("{id}\n"))?;
        let mut cfg = format!(
            "tickTime={TICK_MS}\ninitLimit=10\nsyncLimit=5\ndataDir={}\n\
             clientPortAddress={}\nclientPort={}\nmaxClientCnxns=0\n\
             admin.enableServer=false\n4lw.commands.whitelist=*\n",
            data.display(),
            node.ip,
            node.client_port
        );
        if node.observer {
            cfg.push_str("peerType=observer\n");
        }
        cfg.push_str(&self.extra_cfg);
        for peer in &self.nodes {
            cfg.push_str(&format!(
                "server.{}={}:{}:{}{}\n",
                peer.id,
                peer.ip,
                peer.quorum_port,
                peer.election_port,
                if peer.observer { ":observer" } else { "" }
            ));
        }
        std::fs::write(dir.join("zoo.cfg"), cfg).context("writing zoo.cfg")
    }

    fn log_path(&self, id: u32, start: u32) -> PathBuf {
        self.node_dir(id).join(format!("zk-{start}.log"))
    }

    fn spawn(&mut self, id: u32) -> Result<()> {
        ensure!(
            self.node(id).child.is_none(),
            "node {id} is already running"
        );
        let start = self.node(id).starts + 1;
        let log = std::fs::File::create(self.log_path(id, start))?;
        let child = Command::new(env!("CARGO_BIN_EXE_zk-server"))
            .arg(self.node_dir(id).join("zoo.cfg"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting node {id}"))?;
        let node = self.node_mut(id);
        node.starts = start;
        node.child = Some(child);
        Ok(())
    }

    /// The client address of node `id`.
    pub fn client_addr(&self, id: u32) -> SocketAddr {
        let n = self.node(id);
        SocketAddr::from((n.ip, n.client_port))
    }

    /// A connect string naming the given nodes, in that order.
    pub fn connect_string(&self, ids: &[u32]) -> String {
        ids.iter()
            .map(|id| self.client_addr(*id).to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every node's connect string.
    pub fn connect_string_all(&self) -> String {
        self.connect_string(&self.ids())
    }

    /// True while node `id`'s process runs.
    pub fn is_running(&mut self, id: u32) -> bool {
        match self.node_mut(id).child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The process id of node `id`, if it runs.
    pub fn pid(&self, id: u32) -> Option<u32> {
        self.node(id).child.as_ref().map(Child::id)
    }

    /// `kill -9` node `id` and reap it.
    pub fn kill9(&mut self, id: u32) -> Result<()> {
        if let Some(mut child) = self.node_mut(id).child.take() {
            child.kill().with_context(|| format!("killing node {id}"))?;
            child.wait().with_context(|| format!("reaping node {id}"))?;
        }
        Ok(())
    }

    /// Stops node `id` with SIGTERM (a clean shutdown), SIGKILL after `grace`.
    pub fn stop(&mut self, id: u32, grace: Duration) -> Result<()> {
        let Some(mut child) = self.node_mut(id).child.take() else {
            return Ok(());
        };
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .context("running kill -TERM")?;
        ensure!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Sends `signal` (`STOP`, `CONT`, …) to node `id`'s process.
    pub fn signal(&self, id: u32, signal: &str) -> Result<()> {
        let pid = self
            .pid(id)
            .with_context(|| format!("node {id} is not running"))?;
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .context("running kill")?;
        ensure!(status.success(), "kill -{signal} {pid} failed");
        Ok(())
    }

    /// Freezes node `id` (SIGSTOP): its sockets stay open, it answers nothing. Returns once
    /// every thread of the process has stopped: `kill` returns as soon as the signal is
    /// queued, and on a loaded machine the process goes on running (and answering its
    /// peers) until one of its threads is scheduled to take the stop.
    pub fn pause(&self, id: u32) -> Result<()> {
        self.signal(id, "STOP")?;
        let pid = self
            .pid(id)
            .with_context(|| format!("node {id} is not running"))?;
        let deadline = Instant::now() + PAUSE_TIMEOUT;
        while !all_threads_stopped(pid)? {
            ensure!(
                Instant::now() < deadline,
                "node {id} (pid {pid}) not stopped {PAUSE_TIMEOUT:?} after SIGSTOP"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }

    /// Thaws node `id` (SIGCONT).
    pub fn resume(&self, id: u32) -> Result<()> {
        self.signal(id, "CONT")
    }

    /// Starts node `id` again on its dataDir and ports (it must be stopped).
    pub fn restart(&mut self, id: u32) -> Result<()> {
        self.spawn(id)
    }

    /// `srvr` of node `id`.
    pub fn srvr(&self, id: u32) -> Result<Srvr> {
        let text = four_letter_word(self.client_addr(id), "srvr")?;
        parse_srvr(&text).with_context(|| format!("node {id} answered srvr with {text:?}"))
    }

    /// The mode of node `id` (`None` when it does not answer or does not serve).
    pub fn mode(&self, id: u32) -> Option<String> {
        self.srvr(id).ok().map(|s| s.mode)
    }

    /// Fails if a node this harness started has exited on its own.
    pub fn check_alive(&mut self) -> Result<()> {
        for i in 0..self.nodes.len() {
            let id = self.nodes[i].id;
            let exited = match self.nodes[i].child.as_mut() {
                Some(c) => c.try_wait()?,
                None => None,
            };
            if let Some(status) = exited {
                self.nodes[i].child = None;
                bail!(
                    "node {id} exited with {status}:\n{}",
                    self.log_tail(id, 3000)
                );
            }
        }
        Ok(())
    }

    /// Waits until one running node leads and every other running node follows;
    /// returns the leader's id.
    pub fn wait_for_leader(&mut self, timeout: Duration) -> Result<u32> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            let running: Vec<u32> = self
                .nodes
                .iter()
                .filter(|n| n.child.is_some())
                .map(|n| n.id)
                .collect();
            let modes: Vec<(u32, Option<String>)> =
                running.iter().map(|id| (*id, self.mode(*id))).collect();
            let leaders: Vec<u32> = modes
                .iter()
                .filter(|(_, m)| m.as_deref() == Some("leader"))
                .map(|(id, _)| *id)
                .collect();
            let all_follow = modes.iter().all(|(id, m)| {
                let want = if self.node(*id).observer {
                    &["observer"][..]
                } else {
                    &["leader", "follower"][..]
                };
                m.as_deref().is_some_and(|m| want.contains(&m))
            });
            if leaders.len() == 1 && all_follow {
                return Ok(leaders[0]);
            }
            if Instant::now() > deadline {
                bail!(
                    "no leader with every running node following within {timeout:?}: \
                     {modes:?}\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until node `id` serves as a follower (as an observer, if it is one).
    pub fn wait_following(&mut self, id: u32, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let want = if self.node(id).observer {
            "observer"
        } else {
            "follower"
        };
        loop {
            self.check_alive()?;
            if self.mode(id).as_deref() == Some(want) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "node {id} does not follow within {timeout:?}\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The running nodes other than `id`.
    pub fn others(&self, id: u32) -> Vec<u32> {
        self.nodes
            .iter()
            .filter(|n| n.id != id && n.child.is_some())
            .map(|n| n.id)
            .collect()
    }

    /// The node whose `cons` lists `session` (the server the client is connected to).
    pub fn server_of(&self, session: i64) -> Option<u32> {
        let needle = format!("sid={session:#x},");
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .find(|n| {
                four_letter_word(self.client_addr(n.id), "cons")
                    .is_ok_and(|text| text.contains(&needle))
            })
            .map(|n| n.id)
    }

    /// The end of node `id`'s current log.
    pub fn log_tail(&self, id: u32, bytes: usize) -> String {
        let node = self.node(id);
        let text = std::fs::read_to_string(self.log_path(id, node.starts)).unwrap_or_default();
        let mut start = text.len().saturating_sub(bytes);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        text[start..].to_owned()
    }

    /// The whole of node `id`'s log of its `start`-th run (1-based).
    pub fn log_of_start(&self, id: u32, start: u32) -> String {
        std::fs::read_to_string(self.log_path(id, start)).unwrap_or_default()
    }

    /// The ends of every node's current log (for failure messages).
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            out.push_str(&format!(
                "---- node {} (start {}) ----\n{}\n",
                n.id,
                n.starts,
                self.log_tail(n.id, 3000)
            ));
        }
        out
    }
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut child) = n.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::env::var_os("ZK_ENSEMBLE_KEEP").is_some()
            && let Some(dir) = self.dir.take()
        {
            let path = dir.keep();
            eprintln!("ensemble files kept in {}", path.display());
        }
    }
}

/// Parses `srvr`'s `Zxid:`, `Mode:` and `Node count:` lines.
pub fn parse_srvr(text: &str) -> Option<Srvr> {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
    };
    let zxid = field("Zxid:")?;
    let zxid = i64::from_str_radix(zxid.trim_start_matches("0x"), 16).ok()?;
    Some(Srvr {
        mode: field("Mode:")?.to_owned(),
        zxid,
        node_count: field("Node count:")?.parse().ok()?,
    })
}

/// Sends a four-letter word on a fresh connection and returns the whole reply (the
/// server closes the connection after it), bounded by short timeouts.
pub fn four_letter_word(addr: SocketAddr, word: &str) -> Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(word.as_bytes())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// A `zookeeper-client` on `connect` (one or more servers) with the given session
/// timeout.
pub async fn client(connect: &str, session_timeout: Duration) -> Result<zk::Client> {
    zk::Client::connector()
        .with_connection_timeout(Duration::from_secs(3))
        .with_session_timeout(session_timeout)
        .connect(connect)
        .await
        .with_context(|| format!("connecting to {connect}"))
}

/// A client connected to node `id` alone.
pub async fn client_of(ens: &Ensemble, id: u32) -> Result<zk::Client> {
    client(&ens.connect_string(&[id]), Duration::from_secs(10)).await
}

/// `path` and every node under it with its data, read through `c` after a `sync`.
pub async fn subtree(c: &zk::Client, path: &str) -> Result<BTreeMap<String, Vec<u8>>> {
    c.sync(path).await.context("sync")?;
    let mut out = BTreeMap::new();
    let mut todo = vec![path.to_owned()];
    while let Some(p) = todo.pop() {
        ensure!(out.len() < 100_000, "subtree of {path} too large");
        let (data, _) = c
            .get_data(&p)
            .await
            .with_context(|| format!("get_data {p}"))?;
        let children = c
            .list_children(&p)
            .await
            .with_context(|| format!("list_children {p}"))?;
        for child in children {
            todo.push(if p == "/" {
                format!("/{child}")
            } else {
                format!("{p}/{child}")
            });
        }
        out.insert(p, data);
    }
    Ok(out)
}

/// Polls `check` every 50 ms until it holds, for at most `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) if tokio::time::Instant::now() > deadline => {
                return Err(e.context(format!("{what}: not within {timeout:?}")));
            }
            Err(_) => {}
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{what}: not within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One acknowledged create: path, value, when it was sent, when it was acknowledged.
pub type Acked = (String, Vec<u8>, Instant, Instant);

/// Acknowledged creates so far, and the latest send time among them.
pub type Progress = (usize, Option<Instant>);

/// What one [`writer`] saw.
pub struct WriterLog {
    /// Every acknowledged create, in order.
    pub acked: Vec<Acked>,
    /// Creates that failed or went unanswered (not acknowledged, maybe applied).
    pub failed: usize,
}

/// Creates `{root}/w{writer}-{n}` one after another until `stop` turns true, publishing
/// each acknowledgement on `progress` when given; each create is bounded (5 s), and a
/// failed or unanswered one is just not acknowledged. An expired session is an error.
pub async fn writer(
    c: zk::Client,
    root: &'static str,
    writer: usize,
    stop: tokio::sync::watch::Receiver<bool>,
    progress: Option<tokio::sync::watch::Sender<Progress>>,
) -> Result<WriterLog> {
    let options = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let mut log = WriterLog {
        acked: Vec::new(),
        failed: 0,
    };
    for n in 0..1_000_000u32 {
        if *stop.borrow() {
            break;
        }
        let path = format!("{root}/w{writer}-{n:06}");
        let value = format!("value {writer}/{n}").into_bytes();
        let sent = Instant::now();
        match tokio::time::timeout(Duration::from_secs(5), c.create(&path, &value, &options)).await
        {
            Ok(Ok(_)) => {
                log.acked.push((path, value, sent, Instant::now()));
                if let Some(progress) = &progress {
                    progress.send_modify(|(n, latest)| {
                        *n += 1;
                        *latest = Some(latest.map_or(sent, |l| l.max(sent)));
                    });
                }
            }
            Ok(Err(zk::Error::SessionExpired)) => bail!("writer {writer}: session expired"),
            Ok(Err(_)) | Err(_) => {
                log.failed += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    Ok(log)
}
