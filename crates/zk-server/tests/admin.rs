//! The admin surfaces of a real server: four-letter words on the client port of the
//! `zk-server` binary, and the HTTP admin server (`/commands/<name>`, `/metrics`) of a
//! node started in this process and of the binary. Everything listens on 127.0.0.1 with
//! ports picked here, in a temp dir; servers are killed at the end.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zookeeper_client as zk;

/// How long a server may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(30);

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn write_config(dir: &Path, client_port: u16, admin_port: u16) -> Result<std::path::PathBuf> {
    let cfg = dir.join("zoo.cfg");
    std::fs::write(
        &cfg,
        format!(
            "tickTime=2000\ndataDir={}\nclientPortAddress=127.0.0.1\nclientPort={client_port}\n\
             admin.serverAddress=127.0.0.1\nadmin.serverPort={admin_port}\n\
             4lw.commands.whitelist=*\n",
            dir.join("data").display()
        ),
    )?;
    Ok(cfg)
}

/// The `zk-server` binary on a temp dir; killed and reaped on drop.
struct Server {
    child: Child,
    port: u16,
    admin_port: u16,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Result<Server> {
        let dir = tempfile::tempdir()?;
        let (port, admin_port) = (free_port()?, free_port()?);
        let cfg = write_config(dir.path(), port, admin_port)?;
        let child = Command::new(env!("CARGO_BIN_EXE_zk-server"))
            .arg(&cfg)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting zk-server")?;
        let server = Server {
            child,
            port,
            admin_port,
            _dir: dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while four_letter(server.port, "ruok").await.unwrap_or_default() != "imok" {
            ensure!(Instant::now() < deadline, "zk-server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(server)
    }

    fn client_addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a four-letter word and reads the reply to EOF (bounded: 10 s).
async fn four_letter(port: u16, word: &str) -> Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(word.as_bytes()).await?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out)).await??;
    Ok(out)
}

/// One HTTP/1.1 GET: `(status, content type, body)` (bounded: 10 s).
async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String, String)> {
    let mut s = TcpStream::connect(addr).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await??;
    let text = String::from_utf8(buf)?;
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("no HTTP header in {text:?}");
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .context("no status")?
        .parse()?;
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    Ok((status, content_type, body.to_string()))
}

async fn command(addr: SocketAddr, name: &str) -> Result<Value> {
    let (status, content_type, body) = http_get(addr, &format!("/commands/{name}")).await?;
    ensure!(status == 200, "{name}: HTTP {status}: {body}");
    ensure!(content_type == "application/json", "{content_type}");
    let v: Value = serde_json::from_str(&body)?;
    ensure!(v["error"].is_null(), "{name}: {v}");
    Ok(v)
}

/// The unlabelled samples of a Prometheus text exposition, by name.
fn prometheus_values(text: &str) -> Result<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').context("sample line")?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().with_context(|| format!("value in {line:?}"))?,
        };
        if !series.contains('{') {
            out.insert(series.to_string(), value);
        }
    }
    Ok(out)
}

fn mntr_values(text: &str) -> BTreeMap<&str, &str> {
    text.lines().filter_map(|l| l.split_once('\t')).collect()
}

/// A session with `/app`, an ephemeral `/app/eph` and a data watch on `/app`.
async fn client_with_a_watch(addr: &str) -> Result<(zk::Client, zk::OneshotWatcher)> {
    // A long session timeout keeps pings (which would change `lop`) out of the test.
    let client = zk::Client::connector()
        .with_session_timeout(Duration::from_secs(40))
        .connect(addr)
        .await?;
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let ephemeral = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    client.create("/app", b"x", &persistent).await?;
    client.create("/app/eph", b"y", &ephemeral).await?;
    let (_, _, watcher) = client.get_and_watch_data("/app").await?;
    Ok((client, watcher))
}

#[tokio::test]
async fn binary_answers_four_letter_words_in_zookeepers_formats() -> Result<()> {
    let server = Server::start().await?;
    let (client, _watcher) = client_with_a_watch(&server.client_addr()).await?;
    let session = format!("{:#x}", client.session_id().0);

    let srvr = four_letter(server.port, "srvr").await?;
    let lines: Vec<&str> = srvr.lines().collect();
    ensure!(lines[0].starts_with("Zookeeper version: 3.8."), "{srvr}");
    ensure!(lines[1].starts_with("Latency min/avg/max: "), "{srvr}");
    ensure!(lines.contains(&"Mode: standalone"), "{srvr}");
    ensure!(
        lines.contains(&"Connections: 2"),
        "client + this one: {srvr}"
    );
    ensure!(lines.contains(&"Zxid: 0x3"), "{srvr}");

    // stat: every connection, briefly; the client's has its session ([1]).
    let stat = four_letter(server.port, "stat").await?;
    let clients: Vec<&str> = stat
        .lines()
        .skip_while(|l| *l != "Clients:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    ensure!(clients.len() == 2, "{stat}");
    let mine = clients
        .iter()
        .find(|l| l.contains("[1]"))
        .context("the client's line")?;
    ensure!(
        mine.starts_with(" /127.0.0.1:")
            && mine.contains("](queued=0,recved=")
            && mine.ends_with(')'),
        "{mine}"
    );
    ensure!(
        clients
            .iter()
            .any(|l| l.ends_with("[0](queued=0,recved=1,sent=0)")),
        "{stat}"
    );

    // cons: the full fields; the last op was the getData.
    let cons = four_letter(server.port, "cons").await?;
    let line = cons
        .lines()
        .find(|l| l.contains(&format!("sid={session}")))
        .with_context(|| format!("no line for {session} in {cons}"))?;
    for field in [
        ",lop=GETD,",
        ",est=",
        ",to=",
        ",lcxid=0x",
        ",lzxid=0x3,",
        ",lresp=",
        ",llat=",
        ",minlat=",
        ",avglat=",
        ",maxlat=",
    ] {
        ensure!(line.contains(field), "{field} in {line}");
    }

    let mntr = four_letter(server.port, "mntr").await?;
    let m = mntr_values(&mntr);
    ensure!(m.get("zk_server_state") == Some(&"standalone"), "{mntr}");
    ensure!(m.get("zk_ephemerals_count") == Some(&"1"), "{mntr}");
    ensure!(m.get("zk_watch_count") == Some(&"1"), "{mntr}");
    ensure!(m.get("zk_global_sessions") == Some(&"1"), "{mntr}");
    ensure!(m.get("zk_num_alive_connections") == Some(&"2"), "{mntr}");
    for k in [
        "zk_znode_count",
        "zk_packets_received",
        "zk_open_file_descriptor_count",
        "zk_max_file_descriptor_count",
        "zk_cnt_fsynctime",
    ] {
        ensure!(
            m.get(k).is_some_and(|v| v.parse::<u64>().is_ok()),
            "{k} in {mntr}"
        );
    }
    ensure!(
        m.get("zk_cnt_updatelatency") == Some(&"2"),
        "two creates: {mntr}"
    );

    let wchc = four_letter(server.port, "wchc").await?;
    ensure!(wchc == format!("{session}\n\t/app\n\n"), "{wchc:?}");
    let dump = four_letter(server.port, "dump").await?;
    ensure!(
        dump.contains(&format!("{session}:\n\t/app/eph\n")),
        "{dump}"
    );
    let conf = four_letter(server.port, "conf").await?;
    ensure!(
        conf.contains(&format!("clientPort={}\n", server.port)),
        "{conf}"
    );

    ensure!(four_letter(server.port, "crst").await? == "Connection stats reset.\n");
    let cons = four_letter(server.port, "cons").await?;
    let line = cons
        .lines()
        .find(|l| l.contains(&format!("sid={session}")))
        .context("the client's line")?;
    ensure!(
        line.contains("(queued=0,recved=0,sent=0,") && line.contains(",lop=NA,"),
        "{line}"
    );

    drop(client);
    Ok(())
}

#[tokio::test]
async fn admin_http_on_a_node_in_this_process() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let cfg = write_config(dir.path(), port, 0)?;
    let node = zk_server::node::Node::start(zk_server::config::load(&cfg)?).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let admin = listener.local_addr()?;
    let task = tokio::spawn(zk_server::admin::serve(listener, node.shared.clone()));

    let (client, _watcher) = client_with_a_watch(&node.client_addr.to_string()).await?;

    let ruok = command(admin, "ruok").await?;
    ensure!(
        ruok == serde_json::json!({ "command": "ruok", "error": null }),
        "{ruok}"
    );

    let mntr = command(admin, "mntr").await?;
    ensure!(
        mntr["command"] == "monitor" && mntr["server_state"] == "standalone",
        "{mntr}"
    );
    ensure!(
        mntr["ephemerals_count"] == 1 && mntr["watch_count"] == 1,
        "{mntr}"
    );
    ensure!(mntr["num_alive_connections"] == 1, "{mntr}");

    let cons = command(admin, "connections").await?;
    let conns = cons["connections"].as_array().context("a list")?;
    ensure!(conns.len() == 1, "{cons}");
    ensure!(conns[0]["session_id"] == client.session_id().0, "{cons}");
    ensure!(conns[0]["last_operation"] == "GETD", "{cons}");

    let wchp = command(admin, "wchp").await?;
    ensure!(
        wchp["path_to_session_ids"]["/app"][0] == client.session_id().0,
        "{wchp}"
    );

    let (status, _, body) = http_get(admin, "/commands/nosuch").await?;
    ensure!(status == 404, "{status} {body}");

    let (status, content_type, body) = http_get(admin, "/metrics").await?;
    ensure!(
        status == 200 && content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let v = prometheus_values(&body)?;
    let tree_nodes = node.shared.tree().node_count() as f64;
    ensure!(v.get("znode_count") == Some(&(tree_nodes + 1.0)), "{body}");
    ensure!(v.get("ephemerals_count") == Some(&1.0), "{body}");
    ensure!(v.get("watch_count") == Some(&1.0), "{body}");
    ensure!(v.get("global_sessions") == Some(&1.0), "{body}");
    ensure!(v.get("updatelatency_count") == Some(&2.0), "{body}");
    ensure!(v.get("txns_applied").is_some_and(|n| *n >= 3.0), "{body}");
    ensure!(
        v.get("fsynctime_count").is_some_and(|n| *n >= 1.0),
        "{body}"
    );
    ensure!(
        body.contains("server_state{state=\"standalone\"} 1\n"),
        "{body}"
    );

    drop(client);
    task.abort();
    node.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn binary_serves_the_admin_server() -> Result<()> {
    let server = Server::start().await?;
    let admin: SocketAddr = format!("127.0.0.1:{}", server.admin_port).parse()?;
    let deadline = Instant::now() + START_TIMEOUT;
    while TcpStream::connect(admin).await.is_err() {
        ensure!(Instant::now() < deadline, "no admin server on {admin}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ruok = command(admin, "ruok").await?;
    ensure!(ruok["command"] == "ruok", "{ruok}");
    let mntr = command(admin, "mntr").await?;
    ensure!(mntr["server_state"] == "standalone", "{mntr}");
    let (status, _, body) = http_get(admin, "/metrics").await?;
    ensure!(status == 200, "{status}");
    let v = prometheus_values(&body)?;
    ensure!(v.get("znode_count").is_some_and(|n| *n >= 4.0), "{body}");
    Ok(())
}
