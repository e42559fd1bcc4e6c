//! A 3-node loopback ensemble of either system, launched from the same `zoo.cfg`.
//!
//! Node `i` (1-based) runs on `127.0.0.i` with client port `client_base + i - 1`, quorum
//! port `client_base + 100 + i - 1` and election port `client_base + 200 + i - 1`, the
//! layout of `cargo xtask cluster`. Both systems get the same `zoo.cfg` (tickTime,
//! initLimit, syncLimit, forceSync, no admin server); Apache ZooKeeper is started the way
//! `shared/tools/zk-ensemble.sh` starts it (`java … QuorumPeerMain zoo.cfg`).

use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cluster::{NodeInfo, four_letter_word, parse_srvr};

/// Nodes per ensemble.
pub const NODES: u32 = 3;
/// Apache ZooKeeper's class path (Debian packages `zookeeper` and its log4j binding).
const ZK_CLASS_PATH: &str =
    "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar";
const JAVA: &str = "/usr/bin/java";
/// Longest wait for a stopped node to exit after SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// Every process the bench started and has not reaped yet, so the watchdog can kill them.
static LIVE_PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn live_pids() -> std::sync::MutexGuard<'static, Vec<u32>> {
    LIVE_PIDS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends SIGKILL to every node process still running (used when the time bound is hit).
pub fn kill_all_started() {
    for pid in live_pids().drain(..) {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
}

/// Which implementation an ensemble runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    /// This project's `zk-server`.
    Ours,
    /// Apache ZooKeeper 3.8 (Debian package).
    Apache,
}

impl System {
    /// Short name used in tables.
    pub fn name(self) -> &'static str {
        match self {
            System::Ours => "ours",
            System::Apache => "apache",
        }
    }
}

/// Settings shared by both systems' `zoo.cfg`.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// tickTime in ms.
    pub tick_ms: u32,
    /// initLimit in ticks.
    pub init_limit: u32,
    /// syncLimit in ticks.
    pub sync_limit: u32,
    /// Java heap limit for Apache ZooKeeper, in MiB.
    pub java_heap_mib: u32,
    /// Lines added at the end of every node's `zoo.cfg` (empty, or ending in a newline).
    pub extra_cfg: &'static str,
}

/// The text of node `id`'s `zoo.cfg`.
pub fn zoo_cfg(settings: &Settings, data_dir: &Path, client_base: u16, id: u32) -> String {
    let mut cfg = String::new();
    let _ = writeln!(cfg, "tickTime={}", settings.tick_ms);
    let _ = writeln!(cfg, "initLimit={}", settings.init_limit);
    let _ = writeln!(cfg, "syncLimit={}", settings.sync_limit);
    let _ = writeln!(cfg, "dataDir={}", data_dir.display());
    let _ = writeln!(cfg, "clientPortAddress=127.0.0.{id}");
    let _ = writeln!(cfg, "clientPort={}", port(client_base, 0, id));
    let _ = writeln!(cfg, "maxClientCnxns=0");
    let _ = writeln!(cfg, "admin.enableServer=false");
    let _ = writeln!(cfg, "4lw.commands.whitelist=*");
    let _ = writeln!(cfg, "forceSync=yes");
    let _ = writeln!(cfg, "autopurge.snapRetainCount=3");
    let _ = writeln!(cfg, "autopurge.purgeInterval=1");
    let _ = writeln!(cfg, "quorumListenOnAllIPs=false");
    for peer in 1..=NODES {
        let _ = writeln!(
            cfg,
            "server.{peer}=127.0.0.{peer}:{}:{}",
            port(client_base, 100, peer),
            port(client_base, 200, peer)
        );
    }
    cfg.push_str(settings.extra_cfg);
    cfg
}

fn port(base: u16, offset: u16, id: u32) -> u16 {
    base + offset + id as u16 - 1
}

/// Reads a `Zxid:` value as printed by `srvr` (`0x…`).
pub fn parse_zxid(text: &str) -> Option<u64> {
    let hex = text.trim().strip_prefix("0x")?;
    u64::from_str_radix(hex, 16).ok()
}

/// The resident set size of a process, in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A running ensemble; every node is killed when it is dropped.
pub struct Ensemble {
    /// What runs.
    pub system: System,
    pub(crate) dir: PathBuf,
    pub(crate) client_base: u16,
    pub(crate) server_bin: PathBuf,
    pub(crate) settings: Settings,
    pub(crate) children: Vec<Option<Child>>,
}

impl Ensemble {
    /// Writes fresh configs under `dir` (removing what was there), starts the three nodes
    /// and waits (at most `wait`) until each serves and one leads.
    pub fn launch(
        system: System,
        dir: &Path,
        client_base: u16,
        server_bin: &Path,
        settings: Settings,
        wait: Duration,
    ) -> Result<Ensemble> {
        if dir.exists() {
            fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        for id in 1..=NODES {
            let node = dir.join(format!("node{id}"));
            let data = node.join("data");
            fs::create_dir_all(&data)?;
            fs::create_dir_all(node.join("log"))?;
            fs::write(data.join("myid"), format!("{id}\n"))?;
            fs::write(
                node.join("zoo.cfg"),
                zoo_cfg(&settings, &data, client_base, id),
            )?;
            fs::write(node.join("log4j.properties"), LOG4J)?;
        }
        let mut ensemble = Ensemble {
            system,
            dir,
            client_base,
            server_bin: server_bin.to_owned(),
            settings,
            children: (0..NODES).map(|_| None).collect(),
        };
        for id in 1..=NODES {
            ensemble.start(id)?;
        }
        ensemble.wait_ready(wait)?;
        Ok(ensemble)
    }

    /// Node `id`'s client address.
    pub fn client_addr(&self, id: u32) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, id as u8], port(self.client_base, 0, id)))
    }

    /// Every node's client address.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        (1..=NODES).map(|id| self.client_addr(id)).collect()
    }

    /// `host:port,…` of every node.
    pub fn connect_string(&self) -> String {
        self.addrs()
            .iter()
            .map(SocketAddr::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// What `srvr` says about node `id` (timeout `timeout`).
    pub fn info(&self, id: u32, timeout: Duration) -> NodeInfo {
        parse_srvr(&four_letter_word(self.client_addr(id), "srvr", timeout))
    }

    /// The node whose `srvr` says `leader`, if any.
    pub fn leader(&self) -> Option<u32> {
        (1..=NODES).find(|id| self.info(*id, Duration::from_secs(2)).mode == "leader")
    }

    /// A node that is running and follows.
    pub fn follower(&self) -> Option<u32> {
        (1..=NODES).find(|id| self.info(*id, Duration::from_secs(2)).mode == "follower")
    }

    /// Node `id`'s pid, while it runs.
    pub fn pid(&self, id: u32) -> Option<u32> {
        self.slot(id)
            .and_then(|c| c.as_ref())
            .map(std::process::Child::id)
    }

    fn slot(&self, id: u32) -> Option<&Option<Child>> {
        self.children.get(id.checked_sub(1)? as usize)
    }

    fn slot_mut(&mut self, id: u32) -> Option<&mut Option<Child>> {
        self.children.get_mut(id.checked_sub(1)? as usize)
    }

    /// Node `id`'s resident set size in KiB.
    pub fn rss_kib(&self, id: u32) -> Option<u64> {
        self.pid(id).and_then(rss_kib)
    }

    /// Starts node `id` (no-op when it runs).
    pub fn start(&mut self, id: u32) -> Result<()> {
        if self.pid(id).is_some() {
            return Ok(());
        }
        let node = self.dir.join(format!("node{id}"));
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.join("log/stdout.log"))?;
        let mut cmd = match self.system {
            System::Ours => {
                let mut c = Command::new(&self.server_bin);
                c.arg(node.join("zoo.cfg"));
                c
            }
            System::Apache => {
                let mut c = Command::new(JAVA);
                c.arg("-Xms128m")
                    .arg(format!("-Xmx{}m", self.settings.java_heap_mib))
                    .arg(format!(
                        "-Dzookeeper.log.dir={}",
                        node.join("log").display()
                    ))
                    .arg("-Dzookeeper.log.file=zookeeper.log")
                    .arg("-Dzookeeper.root.logger=INFO,ROLLINGFILE")
                    .arg(format!(
                        "-Dlog4j.configuration=file:{}",
                        node.join("log4j.properties").display()
                    ))
                    .arg("-Dzookeeper.admin.enableServer=false")
                    .arg("-Dzookeeper.jmx.log4j.disable=true")
                    .arg("-cp")
                    .arg(ZK_CLASS_PATH)
                    .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
                    .arg(node.join("zoo.cfg"));
                c
            }
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {} node {id}", self.system.name()))?;
        live_pids().push(child.id());
        if let Some(slot) = self.slot_mut(id) {
            *slot = Some(child);
        }
        Ok(())
    }

    /// `kill -9` node `id` and reap it.
    pub fn kill(&mut self, id: u32) -> Result<()> {
        if let Some(mut child) = self.slot_mut(id).and_then(Option::take) {
            let pid = child.id();
            child.kill().context("kill -9")?;
            child.wait()?;
            live_pids().retain(|p| *p != pid);
        }
        Ok(())
    }

    /// Stops node `id` with SIGTERM (SIGKILL after a grace period) and reaps it.
    pub fn stop(&mut self, id: u32) -> Result<()> {
        let Some(mut child) = self.slot_mut(id).and_then(Option::take) else {
            return Ok(());
        };
        let pid = child.id();
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = Instant::now() + STOP_GRACE;
        loop {
            if child.try_wait()?.is_some() {
                break;
            }
            if Instant::now() > deadline {
                child.kill()?;
                child.wait()?;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        live_pids().retain(|p| *p != pid);
        Ok(())
    }

    /// Waits until every running node serves and exactly one leads.
    pub fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            let infos: Vec<NodeInfo> = (1..=NODES)
                .map(|id| self.info(id, Duration::from_secs(1)))
                .collect();
            let leaders = infos.iter().filter(|i| i.mode == "leader").count();
            let serving = infos
                .iter()
                .filter(|i| i.mode == "leader" || i.mode == "follower")
                .count();
            if leaders == 1 && serving == NODES as usize {
                return Ok(());
            }
            for id in 1..=NODES {
                if let Some(Some(child)) = self.children.get_mut(id as usize - 1)
                    && let Some(status) = child.try_wait()?
                {
                    bail!(
                        "{} node {id} exited ({status}); see {}",
                        self.system.name(),
                        self.dir.join(format!("node{id}/log")).display()
                    );
                }
            }
            if started.elapsed() > limit {
                bail!(
                    "{} ensemble not ready after {limit:?}; see {}",
                    self.system.name(),
                    self.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Nodes that exited on their own since they were started, with how (the child is
    /// reaped and its slot emptied, so [`start`](Self::start) can run it again).
    pub fn exited(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for id in 1..=NODES {
            let Some(slot) = self.slot_mut(id) else {
                continue;
            };
            let status = match slot.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => status,
                _ => continue,
            };
            if let Some(child) = slot.take() {
                let pid = child.id();
                live_pids().retain(|p| *p != pid);
            }
            out.push(format!("node {id} exited ({status})"));
        }
        out
    }

    /// Starts every node that is not running and waits for the ensemble to be whole.
    pub fn heal(&mut self, limit: Duration) -> Result<()> {
        let _ = self.exited();
        for id in 1..=NODES {
            self.start(id)?;
        }
        self.wait_ready(limit)
    }

    /// Kills every node.
    pub fn shutdown(&mut self) {
        for id in 1..=NODES {
            let _ = self.kill(id);
        }
    }
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The log4j 1.2 config of an Apache node: one rolling file in the node's `log/`.
pub(crate) const LOG4J: &str = "log4j.rootLogger=${zookeeper.root.logger}
log4j.appender.ROLLINGFILE=org.apache.log4j.RollingFileAppender
log4j.appender.ROLLINGFILE.Threshold=INFO
log4j.appender.ROLLINGFILE.File=${zookeeper.log.dir}/${zookeeper.log.file}
log4j.appender.ROLLINGFILE.MaxFileSize=20MB
log4j.appender.ROLLINGFILE.MaxBackupIndex=2
log4j.appender.ROLLINGFILE.layout=org.apache.log4j.PatternLayout
log4j.appender.ROLLINGFILE.layout.ConversionPattern=%d{ISO8601} [myid:%X{myid}] - %-5p [%t:%C{1}@%L] - %m%n
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zoo_cfg_has_the_cluster_layout() {
        let s = Settings {
            tick_ms: 500,
            init_limit: 10,
            sync_limit: 5,
            java_heap_mib: 512,
            extra_cfg: "",
        };
        let cfg = zoo_cfg(&s, Path::new("/d/node2/data"), 21810, 2);
        for line in [
            "tickTime=500",
            "initLimit=10",
            "syncLimit=5",
            "dataDir=/d/node2/data",
            "clientPortAddress=127.0.0.2",
            "clientPort=21811",
            "server.1=127.0.0.1:21910:22010",
            "server.3=127.0.0.3:21912:22012",
        ] {
            assert!(cfg.lines().any(|l| l == line), "{line} missing in\n{cfg}");
        }
    }

    #[test]
    fn parses_zxids_and_rss() {
        assert_eq!(parse_zxid("0x100000002"), Some(0x1_0000_0002));
        assert_eq!(parse_zxid(" 0x0 "), Some(0));
        assert_eq!(parse_zxid("12"), None);
        assert_eq!(parse_zxid("0xzz"), None);
        // This test process has a resident set.
        assert!(rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
    }
}
