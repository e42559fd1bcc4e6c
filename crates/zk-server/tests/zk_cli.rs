//! The `zk-cli` binary against a real server: zkCli.sh-like output, exit statuses, the
//! ephemeral lifetime of one command, and `watch` / `-w` printing events.
//!
//! The server is this workspace's `zk-server`; `ZK_TEST_TARGET=apache` runs the same
//! tests against Apache ZooKeeper 3.8 (Debian's `zookeeper` package).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

/// A standalone server in a temp dir; SIGKILLed and reaped on drop.
struct Server {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Result<Server> {
        let dir = tempfile::Builder::new().prefix("zk-cli-").tempdir()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
        let cfg_path = dir.path().join("zoo.cfg");
        std::fs::write(
            &cfg_path,
            format!(
                "tickTime=2000\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
                 maxClientCnxns=0\nadmin.enableServer=false\n4lw.commands.whitelist=*\n\
                 extendedTypesEnabled=true\n",
                data.display()
            ),
        )?;
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let mut cmd = if std::env::var("ZK_TEST_TARGET").as_deref() == Ok("apache") {
            let mut c = Command::new("java");
            c.arg("-Xmx256m")
                .arg("-Dzookeeper.admin.enableServer=false")
                .arg("-Dzookeeper.extendedTypesEnabled=true")
                .arg(format!("-Dzookeeper.log.dir={}", dir.path().display()))
                .arg("-cp")
                .arg(
                    "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:\
                     /usr/share/java/log4j-1.2.jar",
                )
                .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
                .arg(&cfg_path);
            c
        } else {
            let mut c = Command::new(env!("CARGO_BIN_EXE_zk-server"));
            c.arg(&cfg_path).env("RUST_LOG", "warn");
            c
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting the server")?;
        let mut server = Server {
            child: Some(child),
            port,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !server.srvr().contains("Mode:") {
            if let Some(child) = server.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "the server exited with {status}; log in {}",
                    server.dir.path().display()
                );
            }
            ensure!(
                Instant::now() < deadline,
                "the server did not start serving"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    fn srvr(&self) -> String {
        let mut out = String::new();
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
            if s.write_all(b"srvr").is_ok() {
                let _ = s.read_to_string(&mut out);
            }
        }
        out
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What one run of the CLI printed.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Result<String> {
        ensure!(self.code == Some(0), "zk-cli failed: {self:?}");
        Ok(self.stdout)
    }
}

fn cli_cmd(server: &Server, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zk-cli"));
    // zkCli.sh's spelling, with one dash.
    cmd.arg("-server").arg(server.addr()).args(args);
    cmd.stdin(Stdio::null());
    cmd
}

fn cli(server: &Server, args: &[&str]) -> Result<Run> {
    let out = cli_cmd(server, args).output().context("running zk-cli")?;
    Ok(Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout)?,
        stderr: String::from_utf8(out.stderr)?,
    })
}

fn stat_field<'a>(stdout: &'a str, name: &str) -> Option<&'a str> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(" = "))
}

#[test]
fn commands_print_like_zkcli() -> Result<()> {
    let server = Server::start()?;
    assert_eq!(
        cli(&server, &["create", "/app", "hello"])?.ok()?,
        "Created /app\n"
    );
    assert_eq!(
        cli(&server, &["create", "/app/b"])?.ok()?,
        "Created /app/b\n"
    );
    assert_eq!(
        cli(&server, &["create", "-s", "/app/q-", "x"])?.ok()?,
        "Created /app/q-0000000001\n"
    );
    assert_eq!(cli(&server, &["ls", "/app"])?.ok()?, "[b, q-0000000001]\n");

    let out = cli(&server, &["ls", "-s", "/app"])?.ok()?;
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("[b, q-0000000001]"));
    let names: Vec<&str> = lines.filter_map(|l| l.split(" = ").next()).collect();
    assert_eq!(
        names,
        [
            "cZxid",
            "ctime",
            "mZxid",
            "mtime",
            "pZxid",
            "cversion",
            "dataVersion",
            "aclVersion",
            "ephemeralOwner",
            "dataLength",
            "numChildren"
        ]
    );
    assert_eq!(stat_field(&out, "numChildren"), Some("2"));
    assert_eq!(stat_field(&out, "dataLength"), Some("5"));
    assert!(stat_field(&out, "cZxid").is_some_and(|z| z.starts_with("0x")));
    assert!(stat_field(&out, "ctime").is_some_and(|t| t.contains(" UTC ")));

    assert_eq!(cli(&server, &["get", "/app"])?.ok()?, "hello\n");
    let out = cli(&server, &["get", "-s", "/app"])?.ok()?;
    assert!(out.starts_with("hello\ncZxid = 0x"), "{out}");
    assert_eq!(stat_field(&out, "dataVersion"), Some("0"));

    assert_eq!(
        cli(&server, &["set", "/app", "world", "-v", "0"])?.ok()?,
        ""
    );
    assert_eq!(cli(&server, &["get", "/app"])?.ok()?, "world\n");
    let out = cli(&server, &["set", "-s", "/app", "-dash-data"])?.ok()?;
    assert_eq!(stat_field(&out, "dataVersion"), Some("2"));
    assert_eq!(cli(&server, &["get", "/app"])?.ok()?, "-dash-data\n");

    let out = cli(&server, &["stat", "/app"])?.ok()?;
    assert_eq!(stat_field(&out, "dataVersion"), Some("2"));
    assert_eq!(stat_field(&out, "ephemeralOwner"), Some("0x0"));
    assert_eq!(
        cli(&server, &["getAcl", "/app"])?.ok()?,
        "'world,'anyone\n: cdrwa\n"
    );
    assert_eq!(cli(&server, &["sync", "/app"])?.ok()?, "Sync is OK\n");

    let out = cli(&server, &["ls", "-R", "/app"])?.ok()?;
    assert_eq!(out, "/app\n/app/b\n/app/q-0000000001\n");
    assert_eq!(cli(&server, &["delete", "/app/b"])?.ok()?, "");
    assert_eq!(cli(&server, &["ls", "/app"])?.ok()?, "[q-0000000001]\n");
    // A deeper tree goes at once with deleteall.
    for p in ["/app/q-0000000001/x", "/app/q-0000000001/x/y", "/app/z"] {
        cli(&server, &["create", p])?.ok()?;
    }
    assert_eq!(cli(&server, &["deleteall", "/app"])?.ok()?, "");
    assert_eq!(cli(&server, &["ls", "/"])?.ok()?, "[zookeeper]\n");
    // From the root it clears everything but the server's own nodes.
    for p in ["/x", "/x/y", "/z"] {
        cli(&server, &["create", p])?.ok()?;
    }
    assert_eq!(cli(&server, &["deleteall", "/"])?.ok()?, "");
    assert_eq!(cli(&server, &["ls", "/"])?.ok()?, "[zookeeper]\n");
    Ok(())
}

#[test]
fn errors_name_the_zookeeper_error() -> Result<()> {
    let server = Server::start()?;
    let r = cli(&server, &["get", "/nope"])?;
    assert_eq!(r.code, Some(1));
    assert_eq!(r.stdout, "");
    assert!(
        r.stderr
            .contains("Node does not exist: /nope (KeeperErrorCode = NoNode)"),
        "{r:?}"
    );

    cli(&server, &["create", "/a", "1"])?.ok()?;
    cli(&server, &["create", "/a/b"])?.ok()?;
    let r = cli(&server, &["create", "/a"])?;
    assert!(
        r.code == Some(1) && r.stderr.contains("NodeExists"),
        "{r:?}"
    );
    let r = cli(&server, &["set", "/a", "2", "-v", "7"])?;
    assert!(
        r.code == Some(1) && r.stderr.contains("BadVersion"),
        "{r:?}"
    );
    let r = cli(&server, &["delete", "/a"])?;
    assert!(r.code == Some(1) && r.stderr.contains("NotEmpty"), "{r:?}");
    let r = cli(&server, &["delete", "-v", "3", "/a/b"])?;
    assert!(
        r.code == Some(1) && r.stderr.contains("BadVersion"),
        "{r:?}"
    );
    let r = cli(&server, &["stat", "/a/missing"])?;
    assert!(r.code == Some(1) && r.stderr.contains("NoNode"), "{r:?}");
    let r = cli(&server, &["create", "-c", "-e", "/bad"])?;
    assert!(
        r.code == Some(1) && r.stderr.contains("BadArguments"),
        "{r:?}"
    );
    let r = cli(&server, &["get", "relative"])?;
    assert!(
        r.code == Some(1) && r.stderr.contains("invalid path"),
        "{r:?}"
    );

    // Usage errors are clap's (status 2); an unreachable server is a connection loss.
    let r = cli(&server, &["frobnicate", "/a"])?;
    assert_eq!(r.code, Some(2), "{r:?}");
    let dead = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let out = Command::new(env!("CARGO_BIN_EXE_zk-cli"))
        .args(["--server", &format!("127.0.0.1:{dead}")])
        .args(["--connect-timeout", "500", "ls", "/"])
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr)?;
    assert!(stderr.contains("ConnectionLoss"), "{stderr}");
    Ok(())
}

#[test]
fn create_modes_and_one_command_sessions() -> Result<()> {
    let server = Server::start()?;
    // An ephemeral node lives as long as the command's session: it is gone after.
    assert_eq!(
        cli(&server, &["create", "-e", "/e", "x"])?.ok()?,
        "Created /e\n"
    );
    let r = cli(&server, &["stat", "/e"])?;
    assert!(r.code == Some(1) && r.stderr.contains("NoNode"), "{r:?}");

    cli(&server, &["create", "/p"])?.ok()?;
    // The ephemeral sequential node is deleted when its command ends; a delete does not
    // advance the parent's sequence counter, so the next suffix is 1.
    assert_eq!(
        cli(&server, &["create", "-e", "-s", "/p/es-"])?.ok()?,
        "Created /p/es-0000000000\n"
    );
    assert_eq!(cli(&server, &["create", "-c", "/c"])?.ok()?, "Created /c\n");
    assert_eq!(
        cli(&server, &["create", "-t", "60000", "/t", "ttl"])?.ok()?,
        "Created /t\n"
    );
    assert_eq!(
        cli(&server, &["create", "-s", "-t", "60000", "/p/ts-"])?.ok()?,
        "Created /p/ts-0000000001\n"
    );
    let out = cli(&server, &["stat", "/t"])?.ok()?;
    assert_eq!(stat_field(&out, "ephemeralOwner"), Some("0x0"));
    assert_eq!(cli(&server, &["get", "/t"])?.ok()?, "ttl\n");
    Ok(())
}

/// A running `zk-cli` whose stdout lines arrive on a channel.
struct Streaming {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Streaming {
    fn spawn(server: &Server, args: &[&str]) -> Result<Streaming> {
        let mut child = cli_cmd(server, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Streaming { child, lines })
    }

    fn next_line(&self) -> Result<String> {
        self.lines
            .recv_timeout(Duration::from_secs(20))
            .context("no output line in time")
    }

    fn wait(&mut self) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            ensure!(Instant::now() < deadline, "zk-cli did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn watch_prints_every_change_until_interrupted() -> Result<()> {
    let server = Server::start()?;
    let mut watch = Streaming::spawn(&server, &["watch", "/w"])?;
    assert_eq!(watch.next_line()?, "Watching /w");
    let expect = |event: &str| -> Result<()> {
        let line = watch.next_line()?;
        assert_eq!(
            line,
            format!("WatchedEvent state:SyncConnected type:{event} path:/w")
        );
        Ok(())
    };
    cli(&server, &["create", "/w", "0"])?.ok()?;
    expect("NodeCreated")?;
    // Each event re-arms the watches, so a second change of the same kind shows too.
    cli(&server, &["set", "/w", "1"])?.ok()?;
    expect("NodeDataChanged")?;
    cli(&server, &["set", "/w", "2"])?.ok()?;
    expect("NodeDataChanged")?;
    cli(&server, &["create", "/w/c"])?.ok()?;
    expect("NodeChildrenChanged")?;
    cli(&server, &["delete", "/w/c"])?.ok()?;
    expect("NodeChildrenChanged")?;
    cli(&server, &["delete", "/w"])?.ok()?;
    expect("NodeDeleted")?;
    cli(&server, &["create", "/w"])?.ok()?;
    expect("NodeCreated")?;

    // Ctrl-C ends it cleanly.
    let pid = watch.child.id().to_string();
    let status = Command::new("kill").args(["-INT", &pid]).status()?;
    ensure!(status.success(), "kill -INT failed");
    assert!(watch.wait()?.success());
    Ok(())
}

#[test]
fn dash_w_waits_for_one_event() -> Result<()> {
    let server = Server::start()?;
    cli(&server, &["create", "/g", "a"])?.ok()?;
    let mut get = Streaming::spawn(&server, &["get", "-w", "/g"])?;
    assert_eq!(get.next_line()?, "a");
    cli(&server, &["set", "/g", "b"])?.ok()?;
    assert_eq!(
        get.next_line()?,
        "WatchedEvent state:SyncConnected type:NodeDataChanged path:/g"
    );
    assert!(get.wait()?.success());

    let mut ls = Streaming::spawn(&server, &["ls", "-w", "/g"])?;
    assert_eq!(ls.next_line()?, "[]");
    cli(&server, &["create", "/g/kid"])?.ok()?;
    assert_eq!(
        ls.next_line()?,
        "WatchedEvent state:SyncConnected type:NodeChildrenChanged path:/g"
    );
    assert!(ls.wait()?.success());

    let mut stat = Streaming::spawn(&server, &["stat", "-w", "/later"])?;
    assert_eq!(stat.next_line()?, "Node does not exist: /later");
    cli(&server, &["create", "/later"])?.ok()?;
    assert_eq!(
        stat.next_line()?,
        "WatchedEvent state:SyncConnected type:NodeCreated path:/later"
    );
    assert!(stat.wait()?.success());
    Ok(())
}
