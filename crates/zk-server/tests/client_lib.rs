//! The `zk_server::client` library against a real server: every op, pipelining, watches,
//! reconnecting after the server was killed and restarted on the same dataDir, and a
//! scripted fake server for the wire-level behaviour (pings, read timeout, bad frames).
//!
//! The server is this workspace's `zk-server` binary; `ZK_TEST_TARGET=apache` runs the
//! same tests against Apache ZooKeeper 3.8 (Debian's `zookeeper` package) instead.

use std::io::{Read, Write};
use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_util::codec::Framed;
use zk_proto::data::{Acl, AddWatchMode, CreateMode, ErrorCode, EventType, Id, perms};
use zk_proto::jute::{
    CheckVersionRequest, ConnectRequest, ConnectResponse, CreateRequest, DeleteRequest,
    GetDataRequest, JuteCodec, MultiOp, MultiResult, Record, ReplyPacket, Request, RequestPacket,
    Response, SetDataRequest,
};
use zk_server::client::{Client, Error, SessionState, WatchedEvent};

// ---------------------------------------------------------------------------------------
// Harness: one server process on 127.0.0.1, killed on drop.

/// A standalone server in a temp dir; SIGKILLed and reaped on drop.
struct Server {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    apache: bool,
}

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A port on 127.0.0.1 that nothing listens on (bound to port 0, then released).
fn free_port() -> Result<u16> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Server {
    fn start() -> Result<Server> {
        Self::start_on(free_port()?)
    }

    fn start_on(port: u16) -> Result<Server> {
        let dir = tempfile::Builder::new().prefix("zk-client-").tempdir()?;
        std::fs::create_dir_all(dir.path().join("data"))?;
        let cfg = format!(
            "tickTime=2000\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
             maxClientCnxns=0\nadmin.enableServer=false\n4lw.commands.whitelist=*\n\
             extendedTypesEnabled=true\n",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("zoo.cfg"), cfg)?;
        let apache = std::env::var("ZK_TEST_TARGET").as_deref() == Ok("apache");
        let mut server = Server {
            child: None,
            port,
            dir,
            apache,
        };
        server.spawn()?;
        Ok(server)
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))?;
        let cfg = self.dir.path().join("zoo.cfg");
        let mut cmd = if self.apache {
            let mut c = Command::new("java");
            c.arg("-Xmx256m")
                .arg("-Dzookeeper.admin.enableServer=false")
                .arg("-Dzookeeper.extendedTypesEnabled=true")
                .arg(format!("-Dzookeeper.log.dir={}", self.dir.path().display()))
                .arg("-cp")
                .arg(
                    "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:\
                     /usr/share/java/log4j-1.2.jar",
                )
                .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
                .arg(&cfg);
            c
        } else {
            let mut c = Command::new(env!("CARGO_BIN_EXE_zk-server"));
            c.arg(&cfg).env("RUST_LOG", "warn");
            c
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting the server")?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.srvr().is_some_and(|s| s.contains("Mode:")) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("the server exited with {status}");
            }
            ensure!(
                Instant::now() < deadline,
                "the server did not start serving"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn srvr(&self) -> Option<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        s.write_all(b"srvr").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    }

    /// SIGKILL, as a crash.
    fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

const WAIT: Duration = Duration::from_secs(20);

async fn connect(server: &Server) -> Result<(Client, tokio::sync::mpsc::Receiver<WatchedEvent>)> {
    Ok(Client::builder(server.addr())
        .session_timeout(Duration::from_secs(20))
        .connect()
        .await?)
}

async fn next_event(
    events: &mut tokio::sync::mpsc::Receiver<WatchedEvent>,
) -> Result<WatchedEvent> {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .context("no watch event in time")?
        .context("event channel closed")
}

async fn wait_state(client: &Client, want: SessionState) -> Result<()> {
    let mut states = client.state_changes();
    if client.state() == want {
        return Ok(());
    }
    tokio::time::timeout(WAIT, states.wait_for(|s| *s == want))
        .await
        .with_context(|| format!("state {want:?} not reached, still {:?}", client.state()))??;
    Ok(())
}

fn code(e: &Error) -> ErrorCode {
    e.code()
}

// ---------------------------------------------------------------------------------------
// Against the real server.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_op_round_trips() -> Result<()> {
    let server = Server::start()?;
    let (zk, _events) = connect(&server).await?;
    let open = Acl::open_unsafe();
    assert!(zk.session_id() != 0);
    assert!(zk.session_timeout() >= Duration::from_secs(4));

    // create in every mode.
    assert_eq!(
        zk.create("/app", b"v0", &open, CreateMode::Persistent)
            .await?,
        "/app"
    );
    let e = zk.create("/app", b"", &open, CreateMode::Persistent).await;
    assert_eq!(e.as_ref().map_err(code).err(), Some(ErrorCode::NodeExists));
    let (p, st) = zk
        .create2("/app/e", b"eph", &open, CreateMode::Ephemeral)
        .await?;
    assert_eq!(
        (p.as_str(), st.ephemeral_owner),
        ("/app/e", zk.session_id())
    );
    let s1 = zk
        .create("/app/s-", b"", &open, CreateMode::PersistentSequential)
        .await?;
    let s2 = zk
        .create("/app/s-", b"", &open, CreateMode::EphemeralSequential)
        .await?;
    assert_eq!(s1, "/app/s-0000000001");
    assert_eq!(s2, "/app/s-0000000002");
    let (c, _) = zk.create_container("/cont", b"", &open).await?;
    assert_eq!(c, "/cont");
    let (t, st) = zk
        .create_ttl(
            "/ttl",
            b"t",
            &open,
            CreateMode::PersistentWithTtl,
            Duration::from_secs(60),
        )
        .await?;
    assert_eq!((t.as_str(), st.ephemeral_owner), ("/ttl", 0));
    assert!(matches!(
        zk.create("/x", b"", &open, CreateMode::PersistentWithTtl)
            .await,
        Err(Error::BadArgument(_))
    ));
    assert!(matches!(
        zk.create("relative", b"", &open, CreateMode::Persistent)
            .await,
        Err(Error::InvalidPath { .. })
    ));

    // reads
    let (data, st) = zk.get_data("/app", false).await?;
    assert_eq!(data.as_deref(), Some(&b"v0"[..]));
    assert_eq!((st.version, st.num_children), (0, 3));
    assert_eq!(
        zk.exists("/app", false).await?.map(|s| s.czxid),
        Some(st.czxid)
    );
    assert_eq!(zk.exists("/nope", false).await?, None);
    let e = zk.get_data("/nope", false).await;
    assert_eq!(e.as_ref().map_err(code).err(), Some(ErrorCode::NoNode));
    let mut kids = zk.get_children("/app", false).await?;
    kids.sort();
    assert_eq!(kids, ["e", "s-0000000001", "s-0000000002"]);
    let (kids2, st2) = zk.get_children2("/app", false).await?;
    assert_eq!((kids2.len(), st2.num_children), (3, 3));
    assert_eq!(zk.get_all_children_number("/app").await?, 3);
    let mut eph = zk.get_ephemerals("/app").await?;
    eph.sort();
    assert_eq!(eph, ["/app/e", "/app/s-0000000002"]);
    assert_eq!(zk.sync("/app").await?, "/app");

    // writes with versions
    let st = zk.set_data("/app", b"v1", Some(0)).await?;
    assert_eq!(st.version, 1);
    let e = zk.set_data("/app", b"v2", Some(0)).await;
    assert_eq!(e.as_ref().map_err(code).err(), Some(ErrorCode::BadVersion));
    let e = zk.delete("/app", None).await;
    assert_eq!(e.as_ref().map_err(code).err(), Some(ErrorCode::NotEmpty));

    // ACLs and auth
    let (acl, _) = zk.get_acl("/app").await?;
    assert_eq!(acl, open);
    zk.auth("digest", b"alice:secret").await?;
    let who = zk.who_am_i().await?;
    assert!(
        who.iter()
            .any(|c| c.auth_scheme == "digest" && c.user == "alice"),
        "{who:?}"
    );
    let st = zk.set_acl("/ttl", &Acl::creator_all(), None).await?;
    assert_eq!(st.aversion, 1);
    let (acl, _) = zk.get_acl("/ttl").await?;
    assert_eq!(acl.len(), 1);
    assert_eq!(acl[0].id.scheme, "digest");
    assert_eq!(acl[0].perms, perms::ALL);
    // Another session without the credentials may not read it.
    let (other, _) = connect(&server).await?;
    let e = other.get_data("/ttl", false).await;
    assert_eq!(e.as_ref().map_err(code).err(), Some(ErrorCode::NoAuth));
    assert!(
        other
            .who_am_i()
            .await?
            .iter()
            .all(|c| c.auth_scheme != "digest")
    );
    let read_only = vec![Acl {
        perms: perms::READ,
        id: Id::new("world", "anyone"),
    }];
    zk.set_acl("/ttl", &read_only, Some(1)).await?;

    // multi: all or nothing
    let ops = vec![
        MultiOp::Create(CreateRequest {
            path: "/m".into(),
            data: Some(Bytes::from_static(b"1")),
            acl: open.clone(),
            flags: 0,
        }),
        MultiOp::SetData(SetDataRequest {
            path: "/m".into(),
            data: Some(Bytes::from_static(b"2")),
            version: 0,
        }),
        MultiOp::Check(CheckVersionRequest {
            path: "/m".into(),
            version: 1,
        }),
    ];
    let results = zk.multi(ops).await?;
    assert!(matches!(
        results.as_slice(),
        [
            MultiResult::Create(_),
            MultiResult::SetData(_),
            MultiResult::Check
        ]
    ));
    let failing = vec![
        MultiOp::Delete(DeleteRequest {
            path: "/m".into(),
            version: -1,
        }),
        MultiOp::Check(CheckVersionRequest {
            path: "/app".into(),
            version: 99,
        }),
    ];
    match zk.multi(failing).await {
        Err(Error::Multi {
            code,
            index,
            results,
        }) => {
            assert_eq!((code, index, results.len()), (ErrorCode::BadVersion, 1, 2));
        }
        other => bail!("expected a failed multi, got {other:?}"),
    }
    assert!(
        zk.exists("/m", false).await?.is_some(),
        "a failed multi applied nothing"
    );
    let reads = zk
        .multi_read(vec![
            MultiOp::GetData(GetDataRequest {
                path: "/m".into(),
                watch: false,
            }),
            MultiOp::GetData(GetDataRequest {
                path: "/nope".into(),
                watch: false,
            }),
        ])
        .await?;
    match reads.as_slice() {
        [MultiResult::GetData(d), MultiResult::Error(e)] => {
            assert_eq!(d.data.as_deref(), Some(&b"2"[..]));
            assert_eq!(e.err, ErrorCode::NoNode.code());
        }
        other => bail!("unexpected multiRead results {other:?}"),
    }

    // close: the ephemerals go, the handle is done.
    zk.close().await?;
    assert_eq!(zk.state(), SessionState::Closed);
    assert!(matches!(zk.exists("/app", false).await, Err(Error::Closed)));
    zk.close().await?;
    assert_eq!(other.exists("/app/e", false).await?, None);
    assert_eq!(other.get_ephemerals("/").await?.len(), 0);
    assert_eq!(other.get_all_children_number("/app").await?, 1);
    other.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_all_answered() -> Result<()> {
    let server = Server::start()?;
    let (zk, _events) = Client::builder(server.addr())
        .max_in_flight(16)
        .connect()
        .await?;
    let open = Acl::open_unsafe();
    zk.create("/p", b"", &open, CreateMode::Persistent).await?;
    const N: usize = 600;
    // Many more requests than may be in flight: the rest wait their turn.
    let creates = (0..N).map(|i| {
        let zk = zk.clone();
        let open = open.clone();
        tokio::spawn(async move {
            zk.create(
                &format!("/p/n{i}"),
                i.to_string().as_bytes(),
                &open,
                CreateMode::Persistent,
            )
            .await
        })
    });
    let created = futures::future::join_all(creates).await;
    for (i, r) in created.into_iter().enumerate() {
        assert_eq!(r??, format!("/p/n{i}"));
    }
    assert_eq!(zk.get_all_children_number("/p").await?, N as i32);
    // Reads pipelined behind writes see them (one session's requests are FIFO).
    let gets = (0..N).map(|i| zk.get_data_owned(format!("/p/n{i}")));
    for (i, r) in futures::future::join_all(gets)
        .await
        .into_iter()
        .enumerate()
    {
        let (data, _) = r?;
        assert_eq!(data.as_deref(), Some(i.to_string().as_bytes()));
    }
    // A set and a get sent back to back without waiting: the get sees the set.
    let (set, get) = tokio::join!(zk.set_data("/p", b"after", None), zk.get_data("/p", false));
    assert_eq!(set?.version, 1);
    assert_eq!(get?.0.as_deref(), Some(&b"after"[..]));
    let last = zk.last_zxid();
    assert!(last > 0);
    zk.close().await?;
    Ok(())
}

/// `get_data` with an owned path, for iterator chains.
trait GetOwned {
    fn get_data_owned(
        &self,
        path: String,
    ) -> impl std::future::Future<Output = Result<(Option<Bytes>, zk_proto::data::Stat), Error>>;
}

impl GetOwned for Client {
    async fn get_data_owned(
        &self,
        path: String,
    ) -> Result<(Option<Bytes>, zk_proto::data::Stat), Error> {
        self.get_data(&path, false).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_fire_once_and_persistent_ones_stay() -> Result<()> {
    let server = Server::start()?;
    let (zk, mut events) = connect(&server).await?;
    let (other, _) = connect(&server).await?;
    let open = Acl::open_unsafe();

    // exists on an absent node, then its creation.
    assert_eq!(zk.exists("/w", true).await?, None);
    other
        .create("/w", b"", &open, CreateMode::Persistent)
        .await?;
    let e = next_event(&mut events).await?;
    assert_eq!(
        (e.event_type, e.path.as_str()),
        (EventType::NodeCreated, "/w")
    );

    // A data and a child watch.
    zk.get_data("/w", true).await?;
    zk.get_children("/w", true).await?;
    other.set_data("/w", b"1", None).await?;
    let e = next_event(&mut events).await?;
    assert_eq!(
        (e.event_type, e.path.as_str()),
        (EventType::NodeDataChanged, "/w")
    );
    // The data watch is used up: this set fires nothing, the child create does.
    other.set_data("/w", b"2", None).await?;
    other
        .create("/w/c", b"", &open, CreateMode::Persistent)
        .await?;
    let e = next_event(&mut events).await?;
    assert_eq!(
        (e.event_type, e.path.as_str()),
        (EventType::NodeChildrenChanged, "/w")
    );

    // A persistent recursive watch sees every change below, many times.
    zk.add_watch("/w", AddWatchMode::PersistentRecursive)
        .await?;
    for i in 0..3 {
        other
            .set_data("/w/c", format!("{i}").as_bytes(), None)
            .await?;
        let e = next_event(&mut events).await?;
        assert_eq!(
            (e.event_type, e.path.as_str()),
            (EventType::NodeDataChanged, "/w/c")
        );
    }
    other.delete("/w/c", None).await?;
    let e = next_event(&mut events).await?;
    assert_eq!(
        (e.event_type, e.path.as_str()),
        (EventType::NodeDeleted, "/w/c")
    );
    assert_eq!(
        e.to_string(),
        "WatchedEvent state:SyncConnected type:NodeDeleted path:/w/c"
    );
    zk.close().await?;
    other.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_event_reader_loses_nothing() -> Result<()> {
    let server = Server::start()?;
    let (zk, mut events) = Client::builder(server.addr())
        .event_capacity(2)
        .connect()
        .await?;
    let (other, _) = connect(&server).await?;
    other
        .create("/slow", b"", &Acl::open_unsafe(), CreateMode::Persistent)
        .await?;
    zk.add_watch("/slow", AddWatchMode::Persistent).await?;
    const N: usize = 40;
    for i in 0..N {
        other
            .set_data("/slow", i.to_string().as_bytes(), None)
            .await?;
    }
    // Nothing was read meanwhile: the client paused reading, and every event is there.
    for _ in 0..N {
        let e = next_event(&mut events).await?;
        assert_eq!(e.event_type, EventType::NodeDataChanged);
    }
    // And the session still answers once the events are taken.
    let (data, _) = zk.get_data("/slow", false).await?;
    assert_eq!(data.as_deref(), Some((N - 1).to_string().as_bytes()));
    zk.close().await?;
    other.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_to_a_restarted_server_with_the_same_session() -> Result<()> {
    let mut server = Server::start()?;
    let (zk, mut events) = connect(&server).await?;
    let open = Acl::open_unsafe();
    zk.create("/eph", b"", &open, CreateMode::Ephemeral).await?;
    zk.create("/w", b"0", &open, CreateMode::Persistent).await?;
    zk.get_data("/w", true).await?;
    zk.exists("/absent", true).await?;
    zk.add_watch("/tree", AddWatchMode::PersistentRecursive)
        .await?;
    zk.auth("digest", b"bob:pw").await?;
    let session = zk.session_id();
    let zxid_before = zk.last_zxid();

    tokio::task::block_in_place(|| server.kill())?;
    // The connection is gone: requests fail with ConnectionLoss, never hang.
    let e = zk.get_data("/w", false).await;
    assert_eq!(
        e.as_ref().map_err(code).err(),
        Some(ErrorCode::ConnectionLoss)
    );
    wait_state(&zk, SessionState::Disconnected).await?;

    tokio::task::block_in_place(|| server.spawn())?;
    wait_state(&zk, SessionState::Connected).await?;
    assert_eq!(
        zk.session_id(),
        session,
        "the session was resumed, not replaced"
    );
    assert!(zk.last_zxid() >= zxid_before);
    assert!(
        zk.exists("/eph", false).await?.is_some(),
        "the ephemeral survived"
    );
    // Credentials were sent again.
    let who = zk.who_am_i().await?;
    assert!(
        who.iter()
            .any(|c| c.auth_scheme == "digest" && c.user == "bob"),
        "{who:?}"
    );

    // The watches were registered again on the new connection.
    let (other, _) = connect(&server).await?;
    other.set_data("/w", b"1", None).await?;
    let e = next_event(&mut events).await?;
    assert_eq!(
        (e.event_type, e.path.as_str()),
        (EventType::NodeDataChanged, "/w")
    );
    other
        .create("/absent", b"", &open, CreateMode::Persistent)
        .await?;
    let e = next_event(&mut events).await?;
    assert_eq!(
        (e.event_type, e.path.as_str()),
        (EventType::NodeCreated, "/absent")
    );
    other
        .create("/tree", b"", &open, CreateMode::Persistent)
        .await?;
    other
        .create("/tree/leaf", b"", &open, CreateMode::Persistent)
        .await?;
    let e = next_event(&mut events).await?;
    assert_eq!(
        (e.event_type, e.path.as_str()),
        (EventType::NodeCreated, "/tree")
    );
    let e = next_event(&mut events).await?;
    assert_eq!(
        (e.event_type, e.path.as_str()),
        (EventType::NodeCreated, "/tree/leaf")
    );

    zk.close().await?;
    assert_eq!(other.exists("/eph", false).await?, None);
    other.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_does_not_know_the_session_expires_it() -> Result<()> {
    // Two standalone servers share no sessions: failing over from one to the other is
    // what a client sees when its session expired while it was away.
    let mut first = Server::start()?;
    let second_port = free_port()?;
    let connect_string = format!("{},127.0.0.1:{second_port}", first.addr());
    let (zk, _events) = Client::builder(connect_string)
        .session_timeout(Duration::from_secs(20))
        .connect()
        .await?;
    assert_eq!(zk.server().map(|a| a.port()), Some(first.port));
    zk.create("/x", b"", &Acl::open_unsafe(), CreateMode::Persistent)
        .await?;
    let second = tokio::task::block_in_place(|| Server::start_on(second_port))?;
    // A server refuses a client that has seen a newer zxid than its own ("client must
    // try another server"), so give the second one a longer history first.
    let (other, _) = connect(&second).await?;
    let mut i = 0;
    while other.last_zxid() <= zk.last_zxid() {
        ensure!(i < 100, "the second server's zxid does not grow");
        other
            .create(
                &format!("/n{i}"),
                b"",
                &Acl::open_unsafe(),
                CreateMode::Persistent,
            )
            .await?;
        i += 1;
    }
    other.close().await?;
    tokio::task::block_in_place(|| first.kill())?;
    wait_state(&zk, SessionState::Expired).await?;
    assert_eq!(zk.server().map(|a| a.port()), Some(second_port));
    let e = zk.exists("/x", false).await;
    assert_eq!(e.map_err(|e| e.code()), Err(ErrorCode::SessionExpired));
    assert_eq!(
        zk.close().await.map_err(|e| e.code()),
        Err(ErrorCode::SessionExpired)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_resume_and_refusals() -> Result<()> {
    let server = Server::start()?;
    let dead = free_port()?;
    // A dead server in the connect string is skipped.
    let connect_string = format!("127.0.0.1:{dead},{}", server.addr());
    let (zk, _) = Client::builder(connect_string)
        .session_timeout(Duration::from_secs(20))
        .connect()
        .await?;
    zk.create("/mine", b"", &Acl::open_unsafe(), CreateMode::Ephemeral)
        .await?;
    let (id, password) = (zk.session_id(), zk.session_password());
    // Dropping every handle leaves the session open (as a crashed process would).
    drop(zk);

    // The same session from another client, by id and password.
    let (again, _) = Client::builder(server.addr())
        .session(id, password)
        .connect()
        .await?;
    assert_eq!(again.session_id(), id);
    assert_eq!(again.get_ephemerals("/").await?, ["/mine"]);

    // A wrong password is an expired session.
    let wrong = Client::builder(server.addr())
        .session(id, Bytes::from_static(&[7; 16]))
        .connect()
        .await;
    assert_eq!(
        wrong.map(|_| ()).map_err(|e| e.code()),
        Err(ErrorCode::SessionExpired)
    );

    // Nobody listening: a typed error, in time.
    let none = Client::builder(format!("127.0.0.1:{dead}"))
        .connect_timeout(Duration::from_millis(800))
        .connect()
        .await;
    assert!(matches!(none, Err(Error::NoServer { .. })), "{none:?}");
    assert!(matches!(
        Client::connect("127.0.0.1:1/chroot").await,
        Err(Error::ConnectString { .. })
    ));

    // Credentials for a scheme the server has no provider for end the client.
    let e = again.auth("nosuch", b"x").await;
    assert_eq!(e.map_err(|e| e.code()), Err(ErrorCode::AuthFailed));
    wait_state(&again, SessionState::AuthFailed).await?;
    let e = again.exists("/", false).await;
    assert_eq!(e.map_err(|e| e.code()), Err(ErrorCode::AuthFailed));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Against a scripted server, for what a real one does not do on demand.

type Wire = Framed<tokio::net::TcpStream, JuteCodec>;

async fn accept_session(listener: &TcpListener, timeout_ms: i32) -> Result<(Wire, ConnectRequest)> {
    let (stream, _) = tokio::time::timeout(WAIT, listener.accept()).await??;
    let mut wire = Framed::new(stream, JuteCodec::new());
    let frame = tokio::time::timeout(WAIT, wire.next())
        .await?
        .context("closed before the handshake")??;
    let request = ConnectRequest::decode(&mut frame.freeze())?;
    let session_id = if request.session_id == 0 {
        0x1234
    } else {
        request.session_id
    };
    wire.send(&ConnectResponse {
        protocol_version: 0,
        timeout_ms,
        session_id,
        passwd: Bytes::from_static(&[9; 16]),
        read_only: Some(false),
    })
    .await?;
    Ok((wire, request))
}

async fn next_request(wire: &mut Wire) -> Result<RequestPacket> {
    let frame = tokio::time::timeout(WAIT, wire.next())
        .await?
        .context("client closed")??;
    Ok(RequestPacket::decode(&mut frame.freeze())?)
}

#[tokio::test]
async fn pings_when_idle_and_reconnects_when_the_server_goes_silent() -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let server = async {
        // First connection: a new session; answer one request, then go silent on pings.
        let (mut wire, hello) = accept_session(&listener, 1500).await?;
        ensure!(hello.session_id == 0 && hello.read_only == Some(false));
        let req = next_request(&mut wire).await?;
        ensure!(matches!(req.request, Request::Exists(_)), "{req:?}");
        let reply = ReplyPacket::new(req.xid, 0x77, ErrorCode::NoNode, Response::Empty);
        wire.send(&reply).await?;
        let ping = next_request(&mut wire).await?;
        ensure!(
            matches!(ping.request, Request::Ping) && ping.xid == -2,
            "{ping:?}"
        );
        // Silence: the client must give up on this connection and come back with the
        // same session, password and last zxid, and register its exists watch again.
        let (mut wire2, again) = accept_session(&listener, 1500).await?;
        ensure!(again.session_id == 0x1234, "{again:?}");
        ensure!(again.passwd.as_ref() == [9; 16]);
        ensure!(again.last_zxid_seen == 0x77);
        let sw = next_request(&mut wire2).await?;
        match sw.request {
            Request::SetWatches(s) => ensure!(s.exist_watches == ["/x"] && s.relative_zxid == 0x77),
            other => bail!("expected setWatches, got {other:?}"),
        }
        Ok::<_, anyhow::Error>(wire2)
    };
    let client = async {
        let (zk, _) = Client::builder(addr.clone()).connect().await?;
        assert_eq!(zk.session_timeout(), Duration::from_millis(1500));
        assert_eq!(zk.exists("/x", true).await?, None);
        let mut states = zk.state_changes();
        tokio::time::timeout(WAIT, states.wait_for(|s| *s == SessionState::Disconnected)).await??;
        tokio::time::timeout(WAIT, states.wait_for(|s| *s == SessionState::Connected)).await??;
        Ok::<_, anyhow::Error>(zk)
    };
    let (wire, zk) = tokio::try_join!(server, client)?;
    drop(wire);
    drop(zk);
    Ok(())
}

#[tokio::test]
async fn garbage_from_the_server_is_a_connection_loss() -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let server = async {
        // 1: a reply for an xid nobody asked for.
        let (mut wire, _) = accept_session(&listener, 10_000).await?;
        let req = next_request(&mut wire).await?;
        let bogus = ReplyPacket::new(req.xid + 1000, 1, ErrorCode::Ok, Response::Empty);
        wire.send(&bogus).await?;
        // 2: a negative frame length.
        let (mut wire, again) = accept_session(&listener, 10_000).await?;
        ensure!(again.session_id == 0x1234);
        next_request(&mut wire).await?;
        let mut raw = BytesMut::new();
        raw.extend_from_slice(&(-5i32).to_be_bytes());
        wire.get_mut().write_all(&raw).await?;
        // 3: a proper answer.
        let (mut wire, again) = accept_session(&listener, 10_000).await?;
        ensure!(again.session_id == 0x1234);
        let req = next_request(&mut wire).await?;
        let stat = zk_proto::data::Stat {
            version: 5,
            ..Default::default()
        };
        let body = Response::Exists(zk_proto::jute::ExistsResponse { stat });
        wire.send(&ReplyPacket::new(req.xid, 2, ErrorCode::Ok, body))
            .await?;
        Ok::<_, anyhow::Error>(wire)
    };
    let client = async {
        let (zk, _) = Client::builder(addr.clone()).connect().await?;
        let mut losses = 0;
        // Bounded: the server above answers the third connection's first request.
        for _ in 0..2000 {
            match zk.exists("/a", false).await {
                Ok(st) => {
                    assert_eq!(st.map(|s| s.version), Some(5));
                    assert!(losses >= 2, "{losses} connection losses");
                    return Ok::<_, anyhow::Error>(zk);
                }
                Err(e) if e.code() == ErrorCode::ConnectionLoss => {
                    losses += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        bail!("never answered")
    };
    let (_wire, _zk) = tokio::try_join!(server, client)?;
    Ok(())
}

/// A small deterministic generator (splitmix64), so a failure replays exactly.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[tokio::test]
async fn random_replies_never_panic_or_hang() -> Result<()> {
    use bytes::BufMut;
    use std::sync::atomic::{AtomicBool, Ordering};

    const ROUNDS: usize = 120;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let done = AtomicBool::new(false);
    let server = async {
        let mut seed = 0x5eed_u64;
        for _ in 0..ROUNDS {
            let (mut wire, _) = accept_session(&listener, 10_000).await?;
            // Past the setWatches (and any ping) to the client's request.
            let mut req = next_request(&mut wire).await?;
            while req.xid < 0 {
                req = next_request(&mut wire).await?;
            }
            // The right xid (so the body is decoded as the request's reply), a random
            // error code, then random bytes.
            let mut frame = BytesMut::new();
            frame.put_i32(req.xid);
            frame.put_i64(1);
            let r = next_random(&mut seed);
            let err = match r % 4 {
                0 | 1 => 0,
                2 => ErrorCode::NoNode.code(),
                _ => (r >> 8) as i32,
            };
            frame.put_i32(err);
            let len = (next_random(&mut seed) % 80) as usize;
            for _ in 0..len {
                frame.put_u8(next_random(&mut seed) as u8);
            }
            wire.send(frame.freeze()).await?;
            // Each round ends the connection; the client comes back with its session.
        }
        done.store(true, Ordering::SeqCst);
        Ok::<_, anyhow::Error>(())
    };
    let client = async {
        let (zk, _) = Client::builder(addr.clone()).connect().await?;
        let mut answered = 0usize;
        let mut i = 0usize;
        while !done.load(Ordering::SeqCst) {
            ensure!(i < ROUNDS * 1000, "the rounds did not finish");
            let call = async {
                match i % 5 {
                    0 => zk.get_data("/a", false).await.map(|_| ()),
                    1 => zk.get_children2("/a", true).await.map(|_| ()),
                    2 => zk.exists("/a", true).await.map(|_| ()),
                    3 => zk
                        .multi(vec![MultiOp::Check(CheckVersionRequest {
                            path: "/a".into(),
                            version: 1,
                        })])
                        .await
                        .map(|_| ()),
                    _ => zk.get_acl("/a").await.map(|_| ()),
                }
            };
            match tokio::time::timeout(WAIT, call).await {
                Err(_) => bail!("call {i} hung"),
                Ok(Ok(())) => answered += 1,
                Ok(Err(e)) if e.code() == ErrorCode::ConnectionLoss => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Ok(Err(_)) => answered += 1,
            }
            i += 1;
        }
        ensure!(!zk.state().is_terminal(), "{:?}", zk.state());
        Ok::<_, anyhow::Error>(answered)
    };
    let ((), answered) = tokio::try_join!(server, client)?;
    // About half the replies carry an error code and no body: those are answered.
    assert!(answered >= ROUNDS / 4, "{answered} of {ROUNDS} answered");
    Ok(())
}
