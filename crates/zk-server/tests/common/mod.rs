//! Shared harness of the client-compatibility tests: a ZooKeeper server process (ours, or
//! Apache ZooKeeper 3.8 when `ZK_TEST_TARGET=apache`) on 127.0.0.1 in a temp dir, killed
//! when the guard drops; a raw jute client for wire-level checks; four-letter words.

#![allow(dead_code)]

pub mod raw;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Which server the tests run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// This workspace's `zk-server` binary (the default, and what CI runs).
    Ours,
    /// Apache ZooKeeper 3.8 (`ZooKeeperServerMain` from the Debian `zookeeper` package),
    /// to confirm the expectations: `ZK_TEST_TARGET=apache`.
    Apache,
}

/// The target chosen by `ZK_TEST_TARGET` (`ours` unless it says `apache`).
pub fn target() -> Target {
    match std::env::var("ZK_TEST_TARGET").as_deref() {
        Ok("apache") => Target::Apache,
        _ => Target::Ours,
    }
}

/// Apache ZooKeeper's classpath on Debian (the jar's manifest pulls in netty, jute, ...).
const APACHE_CLASSPATH: &str = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:\
                                /usr/share/java/log4j-1.2.jar";

/// How long a server may take to start serving (a JVM takes a second or two).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A free port on 127.0.0.1 (bound to port 0, then released).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A running server; killed (SIGKILL) and reaped on drop, its temp dir removed.
pub struct ZkServer {
    target: Target,
    child: Option<Child>,
    /// The client port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
    extra_cfg: Vec<String>,
    starts: u32,
}

impl ZkServer {
    /// Starts a server with the default test configuration.
    pub fn start() -> Result<ZkServer> {
        Self::start_with(&[])
    }

    /// Starts a server with extra `zoo.cfg` lines (e.g. `extendedTypesEnabled=true`).
    pub fn start_with(extra_cfg: &[&str]) -> Result<ZkServer> {
        let dir = tempfile::Builder::new()
            .prefix("zk-compat-")
            .tempdir()
            .context("creating the temp dir")?;
        let mut server = ZkServer {
            target: target(),
            child: None,
            port: free_port()?,
            dir,
            extra_cfg: extra_cfg.iter().map(|s| (*s).to_owned()).collect(),
            starts: 0,
        };
        server.write_config()?;
        server.spawn()?;
        Ok(server)
    }

    /// Which implementation this is.
    pub fn target(&self) -> Target {
        self.target
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The socket address.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("zoo.cfg")
    }

    fn write_config(&self) -> Result<()> {
        std::fs::create_dir_all(self.data_dir())?;
        let mut cfg = format!(
            "tickTime=2000\ndataDir={}\nclientPort={}\nclientPortAddress=127.0.0.1\n\
             maxClientCnxns=0\nadmin.enableServer=false\n",
            self.data_dir().display(),
            self.port
        );
        if !self
            .extra_cfg
            .iter()
            .any(|l| l.starts_with("4lw.commands.whitelist"))
        {
            cfg.push_str("4lw.commands.whitelist=*\n");
        }
        for line in &self.extra_cfg {
            cfg.push_str(line);
            cfg.push('\n');
        }
        std::fs::write(self.config_path(), cfg).context("writing zoo.cfg")?;
        Ok(())
    }

    fn spawn(&mut self) -> Result<()> {
        self.starts += 1;
        let log =
            std::fs::File::create(self.dir.path().join(format!("server-{}.log", self.starts)))?;
        let mut cmd = match self.target {
            Target::Ours => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_zk-server"));
                c.arg(self.config_path()).env("RUST_LOG", "warn");
                c
            }
            Target::Apache => {
                let mut c = Command::new("java");
                c.arg("-Xmx256m")
                    .arg("-Dzookeeper.admin.enableServer=false")
                    .arg("-Dzookeeper.jmx.log4j.disable=true")
                    .arg(format!("-Dzookeeper.log.dir={}", self.dir.path().display()));
                // Apache reads these from system properties, not zoo.cfg.
                for line in &self.extra_cfg {
                    if let Some(v) = line.strip_prefix("znode.container.checkIntervalMs=") {
                        c.arg(format!("-Dznode.container.checkIntervalMs={v}"));
                    }
                    if let Some(v) = line.strip_prefix("extendedTypesEnabled=") {
                        c.arg(format!("-Dzookeeper.extendedTypesEnabled={v}"));
                    }
                }
                c.arg("-cp")
                    .arg(APACHE_CLASSPATH)
                    .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
                    .arg(self.config_path());
                c
            }
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting the {:?} server", self.target))?;
        self.child = Some(child);
        self.wait_serving()
    }

    /// Waits until `srvr` answers with a mode (the server serves clients).
    fn wait_serving(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "the server exited with {status} before serving; log:\n{}",
                    self.log_tail()
                );
            }
            if let Ok(reply) = four_letter_word(self.socket_addr(), "srvr")
                && reply.contains("Mode: ")
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the server did not serve within {START_TIMEOUT:?}; log:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The end of the current server log (for failure messages).
    pub fn log_tail(&self) -> String {
        let path = self.dir.path().join(format!("server-{}.log", self.starts));
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        text.get(start..).unwrap_or_default().to_owned()
    }

    /// `kill -9` the server (nothing is flushed on the way out).
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("killing the server")?;
            child.wait().context("reaping the server")?;
        }
        Ok(())
    }

    /// Starts the server again on the same dataDir and port.
    pub fn restart(&mut self) -> Result<()> {
        self.kill9()?;
        self.spawn()
    }

    /// The data directory (for tests that look at it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for ZkServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends a four-letter word on a fresh connection and returns the whole reply (the server
/// closes the connection after it). Bounded by a 5 s read timeout.
pub fn four_letter_word(addr: SocketAddr, word: &str) -> Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(word.as_bytes())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// A connected `zookeeper-client` with a short connection timeout.
pub async fn client(server: &ZkServer) -> Result<zookeeper_client::Client> {
    zookeeper_client::Client::connector()
        .with_connection_timeout(Duration::from_secs(5))
        .with_session_timeout(Duration::from_secs(10))
        .connect(&server.addr())
        .await
        .with_context(|| format!("connecting to {}", server.addr()))
}
