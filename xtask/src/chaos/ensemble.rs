//! The chaos run's own ensemble of `zk-server` processes: node `i` on `127.0.0.i`, as
//! `cargo xtask cluster` lays it out, but with every child kept so that a node killed
//! with `kill -9` is reaped and can be started again at once.

use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cluster::{four_letter_word, parse_srvr, spawn_node};

/// Ports of node `i`: `base + i - 1`.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// Client ports.
    pub client: u16,
    /// Quorum ports.
    pub quorum: u16,
    /// Election ports.
    pub election: u16,
    /// Admin HTTP ports.
    pub admin: u16,
}

/// The nodes of the run; every process is stopped on drop.
pub struct Ensemble {
    /// Work directory (`nodeI/zoo.cfg`, `nodeI/data`, `nodeI/zk.log`).
    pub dir: PathBuf,
    /// Number of nodes.
    pub nodes: u32,
    /// Port bases.
    pub ports: Ports,
    /// The tickTime written to every config, in ms.
    pub tick_ms: u32,
    bin: PathBuf,
    children: Vec<Option<Child>>,
    paused: Vec<bool>,
}

/// The loopback address of node `id`.
pub fn host(id: u32) -> String {
    format!("127.0.0.{id}")
}

impl Ensemble {
    /// Writes every node's config under `dir` (which must be empty or absent).
    pub fn new(dir: &Path, nodes: u32, ports: Ports, tick_ms: u32, bin: PathBuf) -> Result<Self> {
        if !(1..=7).contains(&nodes) || nodes.is_multiple_of(2) {
            bail!("--nodes must be 1, 3, 5 or 7 (got {nodes})");
        }
        fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        let e = Ensemble {
            dir,
            nodes,
            ports,
            tick_ms,
            bin,
            children: (0..nodes).map(|_| None).collect(),
            paused: vec![false; nodes as usize],
        };
        for id in 1..=nodes {
            e.write_config(id)?;
        }
        Ok(e)
    }

    fn port(base: u16, id: u32) -> u16 {
        base.wrapping_add(id as u16).wrapping_sub(1)
    }

    /// Node `id`'s client address.
    pub fn client_addr(&self, id: u32) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, id as u8], Self::port(self.ports.client, id)))
    }

    /// Node `id`'s quorum and election ports.
    pub fn peer_ports(&self, id: u32) -> [u16; 2] {
        [
            Self::port(self.ports.quorum, id),
            Self::port(self.ports.election, id),
        ]
    }

    fn write_config(&self, id: u32) -> Result<()> {
        let node = self.dir.join(format!("node{id}"));
        let data = node.join("data");
        fs::create_dir_all(&data)?;
        fs::write(data.join("myid"), format!("{id}\n"))?;
        let mut cfg = String::new();
        writeln!(cfg, "tickTime={}", self.tick_ms)?;
        writeln!(cfg, "initLimit=10")?;
        writeln!(cfg, "syncLimit=5")?;
        writeln!(cfg, "dataDir={}", data.display())?;
        writeln!(cfg, "clientPortAddress={}", host(id))?;
        writeln!(cfg, "clientPort={}", self.client_addr(id).port())?;
        writeln!(cfg, "maxClientCnxns=0")?;
        writeln!(cfg, "admin.serverPort={}", Self::port(self.ports.admin, id))?;
        writeln!(cfg, "admin.serverAddress={}", host(id))?;
        writeln!(cfg, "4lw.commands.whitelist=*")?;
        if self.nodes > 1 {
            for peer in 1..=self.nodes {
                let [q, e] = self.peer_ports(peer);
                writeln!(cfg, "server.{peer}={}:{q}:{e}", host(peer))?;
            }
        }
        fs::write(node.join("zoo.cfg"), cfg)?;
        Ok(())
    }

    fn slot(&mut self, id: u32) -> Result<&mut Option<Child>> {
        self.children
            .get_mut((id as usize).wrapping_sub(1))
            .with_context(|| format!("no node {id}"))
    }

    /// Whether node `id`'s process is alive (reaping it if it exited).
    pub fn running(&mut self, id: u32) -> bool {
        match self.slot(id) {
            Ok(slot) => match slot {
                Some(child) => match child.try_wait() {
                    Ok(None) => true,
                    _ => {
                        *slot = None;
                        false
                    }
                },
                None => false,
            },
            Err(_) => false,
        }
    }

    /// The pid of node `id`, if running.
    pub fn pid(&mut self, id: u32) -> Option<u32> {
        if !self.running(id) {
            return None;
        }
        self.slot(id).ok()?.as_ref().map(Child::id)
    }

    /// Starts node `id` (no-op when it runs).
    pub fn start(&mut self, id: u32) -> Result<()> {
        if self.running(id) {
            return Ok(());
        }
        let child = spawn_node(&self.bin, &self.dir.join(format!("node{id}")))?;
        *self.slot(id)? = Some(child);
        if let Some(p) = self.paused.get_mut(id as usize - 1) {
            *p = false;
        }
        Ok(())
    }

    /// `kill -9` of node `id`, then reaps it.
    pub fn kill(&mut self, id: u32) -> Result<()> {
        if let Some(mut child) = self.slot(id)?.take() {
            let _ = signal(child.id(), "CONT");
            child.kill().context("kill -9")?;
            child.wait().context("reaping a killed node")?;
        }
        if let Some(p) = self.paused.get_mut(id as usize - 1) {
            *p = false;
        }
        Ok(())
    }

    /// `SIGSTOP` (`pause = true`) or `SIGCONT` to node `id`.
    pub fn pause(&mut self, id: u32, pause: bool) -> Result<()> {
        if let Some(pid) = self.pid(id) {
            signal(pid, if pause { "STOP" } else { "CONT" })?;
            if let Some(p) = self.paused.get_mut(id as usize - 1) {
                *p = pause;
            }
        }
        Ok(())
    }

    /// Resumes every paused node and starts every stopped one.
    pub fn heal(&mut self) -> Result<()> {
        for id in 1..=self.nodes {
            if self.paused.get(id as usize - 1).copied().unwrap_or(false) {
                self.pause(id, false)?;
            }
            self.start(id)?;
        }
        Ok(())
    }

    /// `srvr` of node `id`: (mode, zxid), empty strings when it does not answer.
    pub fn srvr(&self, id: u32) -> (String, String) {
        let info = parse_srvr(&four_letter_word(
            self.client_addr(id),
            "srvr",
            Duration::from_millis(1500),
        ));
        (info.mode, info.zxid)
    }

    /// The node that says it leads, if exactly one does.
    pub fn leader(&self) -> Option<u32> {
        let leaders: Vec<u32> = (1..=self.nodes)
            .filter(|&id| {
                let mode = self.srvr(id).0;
                mode == "leader" || mode == "standalone"
            })
            .collect();
        match leaders.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }

    /// Waits until every node serves and one leads; `Err` after `limit`.
    pub fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            let modes: Vec<String> = (1..=self.nodes).map(|id| self.srvr(id).0).collect();
            let leaders = modes
                .iter()
                .filter(|m| *m == "leader" || *m == "standalone")
                .count();
            if leaders == 1 && modes.iter().all(|m| !m.is_empty()) {
                return Ok(());
            }
            for id in 1..=self.nodes {
                if !self.running(id) {
                    bail!(
                        "node{id} exited; its log: {}",
                        self.dir.join(format!("node{id}/zk.log")).display()
                    );
                }
            }
            if started.elapsed() > limit {
                bail!("no ready ensemble after {limit:?} (modes: {modes:?})");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Stops every node: SIGCONT, SIGKILL, reap.
    pub fn shutdown(&mut self) {
        for id in 1..=self.nodes {
            if let Err(e) = self.kill(id) {
                eprintln!("node{id}: {e:#}");
            }
            let _ = fs::remove_file(self.dir.join(format!("node{id}/pid")));
        }
    }
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Sends `kill -SIG pid`.
pub fn signal(pid: u32, sig: &str) -> Result<()> {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .stderr(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("kill -{sig} {pid} failed");
    }
    Ok(())
}
