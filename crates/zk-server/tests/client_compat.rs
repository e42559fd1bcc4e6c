//! Client-compatibility tests: real `zk-server` processes on 127.0.0.1, driven by an
//! independent client (the `zookeeper-client` crate) and by a raw jute client where the
//! exact wire answer matters (error codes of malformed requests, null data, per-op multi
//! results, session handshakes, bad frames).
//!
//! Every expected value here was taken from Apache ZooKeeper 3.8.0. To check them again,
//! run the same tests against Apache ZooKeeper (Debian package `zookeeper`, Java 17):
//!
//! ```text
//! ZK_TEST_TARGET=apache cargo nextest run -p zk-server --test client_compat
//! ```
//!
//! which starts `org.apache.zookeeper.server.ZooKeeperServerMain` with the same `zoo.cfg`
//! instead of our binary (see `common/mod.rs`). Without the variable (and in CI) the tests
//! run against `target/debug/zk-server`.

mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use common::raw::{self, Raw};
use common::{Target, ZkServer, client, four_letter_word};
use zk_proto::data::{Acl, ErrorCode, EventType, Id, KeeperState, perms};
use zk_proto::jute::{
    AddWatchRequest, CheckVersionRequest, CheckWatchesRequest, CreateRequest, DeleteRequest,
    ErrorResponse, GetAclRequest, GetAllChildrenNumberRequest, GetChildrenRequest, GetDataRequest,
    GetEphemeralsRequest, MultiOp, MultiResult, RemoveWatchesRequest, Request, Response,
    SetAclRequest, SetDataRequest, SyncRequest,
};
use zookeeper_client as zk;

const NO_NODE: i32 = ErrorCode::NoNode.code();
const NODE_EXISTS: i32 = ErrorCode::NodeExists.code();
const BAD_ARGUMENTS: i32 = ErrorCode::BadArguments.code();
const BAD_VERSION: i32 = ErrorCode::BadVersion.code();
const NOT_EMPTY: i32 = ErrorCode::NotEmpty.code();
const NO_AUTH: i32 = ErrorCode::NoAuth.code();
const NO_CHILDREN_FOR_EPHEMERALS: i32 = ErrorCode::NoChildrenForEphemerals.code();
const INVALID_ACL: i32 = ErrorCode::InvalidAcl.code();
const UNIMPLEMENTED: i32 = ErrorCode::Unimplemented.code();
const NO_WATCHER: i32 = ErrorCode::NoWatcher.code();
const AUTH_FAILED: i32 = ErrorCode::AuthFailed.code();
const RUNTIME_INCONSISTENCY: i32 = ErrorCode::RuntimeInconsistency.code();

const PERSISTENT: i32 = 0;
const EPHEMERAL: i32 = 1;
const PERSISTENT_SEQUENTIAL: i32 = 2;
const EPHEMERAL_SEQUENTIAL: i32 = 3;
const PERSISTENT_WITH_TTL: i32 = 5;
const PERSISTENT_SEQUENTIAL_WITH_TTL: i32 = 6;

/// Generous bound for things that happen in the background (expiry, container cleanup).
const BACKGROUND: Duration = Duration::from_secs(20);

fn open() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

/// Longest a test driven by `zookeeper-client` may take: its calls have no timeout of
/// their own, so a protocol mismatch would otherwise hang the test.
const TEST_LIMIT: Duration = Duration::from_secs(60);

/// Runs a test body under [`TEST_LIMIT`].
async fn bounded(body: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    tokio::time::timeout(TEST_LIMIT, body)
        .await
        .context("the test hung")?
}

/// Polls until `path` no longer exists, for at most [`BACKGROUND`].
async fn wait_gone(c: &mut Raw, path: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + BACKGROUND;
    while c.exists(path, false).await?.is_ok() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{path} still exists"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn multi_errors(results: &[MultiResult]) -> Vec<i32> {
    results
        .iter()
        .map(|r| match r {
            MultiResult::Error(e) => e.err,
            _ => 0,
        })
        .collect()
}

// -- creates, stats, sequential names ---------------------------------------------------

#[tokio::test]
async fn create_in_every_mode_with_its_stat() -> Result<()> {
    let server = ZkServer::start()?;
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;

    let (path, st) = c
        .create("/a", Some(b"hello"), PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(path, "/a");
    let zxid = c.last_zxid;
    assert_eq!((st.czxid, st.mzxid, st.pzxid), (zxid, zxid, zxid));
    assert_eq!((st.version, st.cversion, st.aversion), (0, 0, 0));
    assert_eq!(
        (st.ephemeral_owner, st.data_length, st.num_children),
        (0, 5, 0)
    );
    assert_eq!(st.ctime, st.mtime);

    // Ephemeral: owned by the session; no children below it.
    let (_, e) = c
        .create("/a/e", None, EPHEMERAL)
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(e.ephemeral_owner, c.session_id);
    assert_eq!(e.data_length, 0);
    assert_eq!(
        c.create("/a/e/x", None, PERSISTENT).await?,
        Err(NO_CHILDREN_FOR_EPHEMERALS)
    );

    // Sequential suffix: the parent's cversion before the create, 10 digits.
    let (s1, _) = c
        .create("/a/s-", None, PERSISTENT_SEQUENTIAL)
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(s1, "/a/s-0000000001");
    let (s2, es) = c
        .create("/a/s-", None, EPHEMERAL_SEQUENTIAL)
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(s2, "/a/s-0000000002");
    assert_eq!(es.ephemeral_owner, c.session_id);
    assert_eq!(c.delete("/a/s-0000000001", -1).await?, 0);
    // A delete does not give the number back.
    let (s3, _) = c
        .create("/a/", None, PERSISTENT_SEQUENTIAL)
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(s3, "/a/0000000003");

    // Container: reported ephemeralOwner 0.
    let (cpath, cst) = c
        .create_container("/c")
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(cpath, "/c");
    assert_eq!(cst.ephemeral_owner, 0);

    // TTL modes are refused unless extendedTypesEnabled.
    assert_eq!(
        c.create_ttl("/t", PERSISTENT_WITH_TTL, 10_000).await?,
        Err(UNIMPLEMENTED)
    );

    // Errors.
    assert_eq!(c.create("/a", None, PERSISTENT).await?, Err(NODE_EXISTS));
    assert_eq!(c.create("/nope/x", None, PERSISTENT).await?, Err(NO_NODE));
    assert_eq!(c.create("/a", None, 42).await?, Err(BAD_ARGUMENTS));
    assert_eq!(
        c.create_acl("/empty-acl", None, vec![], PERSISTENT).await?,
        Err(INVALID_ACL)
    );
    assert_eq!(
        c.create_acl("/creator", None, Acl::creator_all(), PERSISTENT)
            .await?,
        Err(INVALID_ACL),
        "CREATOR_ALL_ACL needs an authenticated id"
    );
    Ok(())
}

#[tokio::test]
async fn bad_paths_and_error_precedence() -> Result<()> {
    let server = ZkServer::start()?;
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    c.create("/a", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;

    // The parent (everything before the last '/') is looked up before the full path is
    // validated: a bad path under a missing parent is NoNode.
    let cases = [
        ("a", BAD_ARGUMENTS),
        ("/a/", BAD_ARGUMENTS),
        ("/a/.", BAD_ARGUMENTS),
        ("/a/..", BAD_ARGUMENTS),
        ("/a//b", NO_NODE),
        ("/a/./b", NO_NODE),
        ("/a/../b", NO_NODE),
        ("/a/b\u{0}", BAD_ARGUMENTS),
        ("/", NODE_EXISTS),
        ("//", BAD_ARGUMENTS),
    ];
    let mut got = Vec::new();
    for (path, _) in cases {
        got.push((
            path,
            c.create(path, None, PERSISTENT)
                .await?
                .map(|_| ())
                .err()
                .unwrap_or(0),
        ));
    }
    assert_eq!(got, cases);
    // The parent is looked up before the full path is validated.
    assert_eq!(c.create("/nope//x", None, PERSISTENT).await?, Err(NO_NODE));
    assert_eq!(c.create("/nope/x/", None, PERSISTENT).await?, Err(NO_NODE));
    // Reads answer NoNode for paths that cannot exist.
    assert_eq!(c.exists("/a/", false).await?, Err(NO_NODE));
    assert_eq!(c.get_data("a", false).await?.map(|_| ()), Err(NO_NODE));
    // Deletes: special paths and paths without a slash.
    for bad in [
        "/",
        "/zookeeper",
        "/zookeeper/quota",
        "/zookeeper/config",
        "a",
    ] {
        assert_eq!(c.delete(bad, -1).await?, BAD_ARGUMENTS, "delete {bad}");
    }
    assert_eq!(c.delete("/a/", -1).await?, NO_NODE);
    assert_eq!(
        c.set_data("/a/", None, -1).await?.map(|_| ()),
        Err(BAD_ARGUMENTS)
    );
    assert_eq!(
        c.set_data("/nope", None, -1).await?.map(|_| ()),
        Err(NO_NODE)
    );
    Ok(())
}

#[tokio::test]
async fn ttl_nodes_with_extended_types() -> Result<()> {
    let server = ZkServer::start_with(&[
        "extendedTypesEnabled=true",
        "znode.container.checkIntervalMs=100",
    ])?;
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    let (p, st) = c
        .create_ttl("/t", PERSISTENT_WITH_TTL, 100)
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(p, "/t");
    assert_eq!(st.ephemeral_owner, 0, "the TTL sentinel is not reported");
    let (p, _) = c
        .create_ttl("/ts-", PERSISTENT_SEQUENTIAL_WITH_TTL, 60_000)
        .await?
        .map_err(anyhow::Error::msg)?;
    assert!(p.starts_with("/ts-") && p.len() == "/ts-".len() + 10, "{p}");
    assert_eq!(
        c.create_ttl("/bad", PERSISTENT_WITH_TTL, 0).await?,
        Err(BAD_ARGUMENTS)
    );
    assert_eq!(
        c.create_ttl("/bad", PERSISTENT_WITH_TTL, -5).await?,
        Err(BAD_ARGUMENTS)
    );
    assert_eq!(
        c.create_ttl("/bad", EPHEMERAL, 1000).await?,
        Err(BAD_ARGUMENTS)
    );
    // The expired TTL node is removed by the container manager.
    wait_gone(&mut c, "/t")
        .await
        .context("the expired TTL node was not deleted")?;
    assert!(
        c.exists(&p, false).await?.is_ok(),
        "the long TTL node stays"
    );
    Ok(())
}

#[tokio::test]
async fn containers_are_deleted_once_empty() -> Result<()> {
    let server = ZkServer::start_with(&["znode.container.checkIntervalMs=100"])?;
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    c.create_container("/c")
        .await?
        .map_err(anyhow::Error::msg)?;
    c.create_container("/never-used")
        .await?
        .map_err(anyhow::Error::msg)?;
    c.create("/c/child", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(c.delete("/c/child", -1).await?, 0);
    wait_gone(&mut c, "/c")
        .await
        .context("the empty container was not deleted")?;
    // Give the container manager a few more rounds (100 ms apart) to get it wrong.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        c.exists("/never-used", false).await?.is_ok(),
        "a container that never had a child stays"
    );
    Ok(())
}

#[tokio::test]
async fn empty_data_reads_back_empty() -> Result<()> {
    let server = ZkServer::start()?;
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    c.create("/empty", Some(b""), PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    let (d, st) = c
        .get_data("/empty", false)
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!((d, st.data_length), (Some(Bytes::new()), 0));
    c.set_data("/empty", Some(b"x"), -1)
        .await?
        .map_err(anyhow::Error::msg)?;
    c.set_data("/empty", Some(b""), -1)
        .await?
        .map_err(anyhow::Error::msg)?;
    let (d, st) = c
        .get_data("/empty", false)
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!((d, st.data_length, st.version), (Some(Bytes::new()), 0, 2));
    Ok(())
}

/// Apache keeps a null `data` as null (`getData` answers a -1 length, the stat's
/// dataLength is 0), from a create and from a setData; empty data stays empty. Both survive
/// a restart, from the snapshots (`snapCount=2` takes one every few txns) and the log.
#[tokio::test]
async fn null_data_reads_back_as_null() -> Result<()> {
    let mut server = ZkServer::start_with(&["snapCount=2"])?;
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    c.create("/null", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    let (d, st) = c
        .get_data("/null", false)
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!((d, st.data_length), (None, 0));
    c.create("/empty", Some(b""), PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    let (d, _) = c
        .get_data("/empty", false)
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(d.as_deref(), Some(&b""[..]));
    c.set_data("/empty", None, -1)
        .await?
        .map_err(anyhow::Error::msg)?;
    let (d, _) = c
        .get_data("/empty", false)
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(d, None);
    c.create("/still-empty", Some(b""), PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    for i in 0..6 {
        c.create(&format!("/filler{i}"), None, PERSISTENT)
            .await?
            .map_err(anyhow::Error::msg)?;
    }
    drop(c);
    // A snapshot was taken (in the background) with the null nodes in it.
    let mut waited = 0;
    while !has_snapshot(server.dir()) {
        anyhow::ensure!(waited < 100, "no snapshot file under {:?}", server.dir());
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    server.restart()?;

    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    let mut got = Vec::new();
    for path in ["/null", "/empty", "/still-empty", "/filler5"] {
        let (d, st) = c.get_data(path, false).await?.map_err(anyhow::Error::msg)?;
        got.push((d, st.data_length));
    }
    let empty = Some(bytes::Bytes::new());
    assert_eq!(got, [(None, 0), (None, 0), (empty, 0), (None, 0)]);
    Ok(())
}

/// True when a file named `snapshot.*` is somewhere under `dir` (ours and Apache's name
/// their snapshots so). Walks at most a few levels.
fn has_snapshot(dir: &std::path::Path) -> bool {
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if e.file_name().to_string_lossy().starts_with("snapshot.") {
                return true;
            }
            if depth < 4 && path.is_dir() {
                stack.push((path, depth + 1));
            }
        }
    }
    false
}

// -- delete, setData, stats after each change -----------------------------------------

#[tokio::test]
async fn stat_fields_after_each_kind_of_change() -> Result<()> {
    let server = ZkServer::start()?;
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    let (_, p0) = c
        .create("/p", Some(b"x"), PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    let czxid = p0.czxid;

    // setData: version and mzxid move, czxid/pzxid do not.
    let s1 = c
        .set_data("/p", Some(b"abc"), 0)
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!((s1.czxid, s1.mzxid, s1.pzxid), (czxid, c.last_zxid, czxid));
    assert_eq!((s1.version, s1.data_length), (1, 3));
    assert!(s1.mtime >= p0.mtime);
    assert_eq!(s1.ctime, p0.ctime);
    assert_eq!(
        c.set_data("/p", Some(b"y"), 0).await?.map(|_| ()),
        Err(BAD_VERSION)
    );
    let s2 = c
        .set_data("/p", Some(b"y"), -1)
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(s2.version, 2);

    // Child create: parent's cversion, numChildren and pzxid; not its mzxid.
    c.create("/p/a", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    let za = c.last_zxid;
    c.create("/p/b", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    let zb = c.last_zxid;
    let st = c.exists("/p", false).await?.map_err(anyhow::Error::msg)?;
    assert!(za < zb);
    assert_eq!(
        (st.cversion, st.num_children, st.pzxid, st.mzxid),
        (2, 2, zb, s2.mzxid)
    );

    // Child delete: pzxid moves; the reported cversion follows Apache's.
    assert_eq!(c.delete("/p/a", 0).await?, 0);
    let zd = c.last_zxid;
    let st = c.exists("/p", false).await?.map_err(anyhow::Error::msg)?;
    assert_eq!((st.cversion, st.num_children, st.pzxid), (3, 1, zd));
    c.create("/p/c", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    let st = c.exists("/p", false).await?.map_err(anyhow::Error::msg)?;
    assert_eq!((st.cversion, st.num_children), (4, 2));

    // setACL: aversion only.
    let r = c
        .call(Request::SetAcl(SetAclRequest {
            path: "/p".into(),
            acl: Acl::open_unsafe(),
            version: 0,
        }))
        .await?;
    let Response::SetAcl(sa) = r.body else {
        anyhow::bail!("setACL: {:?}", r.header)
    };
    assert_eq!(
        (sa.stat.aversion, sa.stat.version, sa.stat.mzxid),
        (1, 2, s2.mzxid)
    );

    // Deletes with versions.
    assert_eq!(c.delete("/p", -1).await?, NOT_EMPTY);
    assert_eq!(c.delete("/p/b", 7).await?, BAD_VERSION);
    assert_eq!(c.delete("/p/b", 0).await?, 0);
    assert_eq!(c.delete("/p/b", 0).await?, NO_NODE);
    assert_eq!(c.delete("/p/c", -1).await?, 0);
    assert_eq!(c.delete("/p", 1).await?, BAD_VERSION);
    assert_eq!(c.delete("/p", 2).await?, 0);
    assert_eq!(c.exists("/p", false).await?.map(|_| ()), Err(NO_NODE));
    Ok(())
}

// -- reads: children, ACLs, counts, ephemerals, sync, whoAmI --------------------------

#[tokio::test]
async fn every_read_op_through_zookeeper_client() -> Result<()> {
    bounded(async move {
        let server = ZkServer::start()?;
        let zk = client(&server).await?;
        zk.create("/r", b"root", &open()).await?;
        for child in ["x", "y", "z"] {
            zk.create(&format!("/r/{child}"), child.as_bytes(), &open())
                .await?;
        }
        zk.create("/r/x/deep", b"", &open()).await?;
        let eph = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
        zk.create("/r/y/e1", b"", &eph).await?;
        zk.create("/e2", b"", &eph).await?;

        let (data, stat) = zk.get_data("/r").await?;
        assert_eq!((data.as_slice(), stat.num_children), (&b"root"[..], 3));
        let mut children = zk.list_children("/r").await?;
        children.sort();
        assert_eq!(children, ["x", "y", "z"]);
        let (mut children, stat) = zk.get_children("/r").await?;
        children.sort();
        assert_eq!(
            (children.len(), stat.num_children, stat.cversion),
            (3, 3, 3)
        );
        assert_eq!(zk.count_descendants_number("/r").await?, 5);
        assert_eq!(zk.count_descendants_number("/r/z").await?, 0);
        assert!(matches!(
            zk.count_descendants_number("/nope").await,
            Err(zk::Error::NoNode)
        ));
        let mut eph_paths = zk.list_ephemerals("/").await?;
        eph_paths.sort();
        assert_eq!(eph_paths, ["/e2", "/r/y/e1"]);
        assert_eq!(zk.list_ephemerals("/r").await?, ["/r/y/e1"]);
        assert!(zk.list_ephemerals("/zz").await?.is_empty());
        zk.sync("/r").await?;
        assert!(zk.check_stat("/nope").await?.is_none());
        assert!(matches!(zk.get_data("/nope").await, Err(zk::Error::NoNode)));
        assert!(matches!(
            zk.list_children("/nope").await,
            Err(zk::Error::NoNode)
        ));

        let (acl, stat) = zk.get_acl("/r").await?;
        assert_eq!(acl.len(), 1);
        assert_eq!((acl[0].scheme(), acl[0].id()), ("world", "anyone"));
        assert_eq!(stat.aversion, 0);
        let users = zk.list_auth_users().await?;
        assert_eq!(users, [zk::AuthUser::new("ip", "127.0.0.1")]);
        assert!(matches!(zk.get_acl("/nope").await, Err(zk::Error::NoNode)));
        Ok(())
    })
    .await
}

#[tokio::test]
async fn raw_reads_sync_and_whoami() -> Result<()> {
    let server = ZkServer::start()?;
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    c.create("/q", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    let r = c
        .call(Request::Sync(SyncRequest { path: "/q".into() }))
        .await?;
    assert!(
        matches!(&r.body, Response::Sync(s) if s.path == "/q"),
        "{r:?}"
    );
    // sync of a missing path still answers with the path.
    let r = c
        .call(Request::Sync(SyncRequest {
            path: "/missing".into(),
        }))
        .await?;
    assert!(
        matches!(&r.body, Response::Sync(s) if s.path == "/missing"),
        "{r:?}"
    );
    let r = c
        .call(Request::GetAllChildrenNumber(GetAllChildrenNumberRequest {
            path: "/missing".into(),
        }))
        .await?;
    assert_eq!(r.header.err, NO_NODE);
    let r = c
        .call(Request::GetChildren2(GetChildrenRequest {
            path: "/missing".into(),
            watch: false,
        }))
        .await?;
    assert_eq!(r.header.err, NO_NODE);
    let r = c
        .call(Request::GetAcl(GetAclRequest {
            path: "/missing".into(),
        }))
        .await?;
    assert_eq!(r.header.err, NO_NODE);
    let r = c
        .call(Request::GetEphemerals(GetEphemeralsRequest {
            prefix_path: "/".into(),
        }))
        .await?;
    assert!(
        matches!(&r.body, Response::GetEphemerals(e) if e.ephemerals.is_empty()),
        "{r:?}"
    );
    assert_eq!(c.auth("digest", b"alice:secret").await?, 0);
    let r = c.call(Request::WhoAmI).await?;
    let Response::WhoAmI(w) = r.body else {
        anyhow::bail!("whoAmI: {:?}", r.header)
    };
    let mut who: Vec<_> = w
        .client_info
        .iter()
        .map(|i| (i.auth_scheme.as_str(), i.user.as_str()))
        .collect();
    who.sort();
    assert_eq!(who, [("digest", "alice"), ("ip", "127.0.0.1")]);
    Ok(())
}

// -- ACLs ------------------------------------------------------------------------------

#[tokio::test]
async fn acl_refusals_digest_world_read_only_and_ip() -> Result<()> {
    let server = ZkServer::start()?;
    let mut owner = Raw::connect(server.socket_addr(), 10_000).await?;
    let mut other = Raw::connect(server.socket_addr(), 10_000).await?;
    assert_eq!(owner.auth("digest", b"alice:secret").await?, 0);

    // digest: only alice.
    owner
        .create_acl("/d", Some(b"s"), Acl::creator_all(), PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    let r = owner
        .call(Request::GetAcl(GetAclRequest { path: "/d".into() }))
        .await?;
    let Response::GetAcl(ga) = r.body else {
        anyhow::bail!("getACL {:?}", r.header)
    };
    assert_eq!(ga.acl.len(), 1);
    assert_eq!(ga.acl[0].id.scheme, "digest");
    assert!(ga.acl[0].id.id.starts_with("alice:"), "{:?}", ga.acl);
    assert_eq!(ga.acl[0].perms, perms::ALL);
    assert_eq!(other.get_data("/d", false).await?.map(|_| ()), Err(NO_AUTH));
    assert_eq!(
        other.set_data("/d", None, -1).await?.map(|_| ()),
        Err(NO_AUTH)
    );
    assert_eq!(other.create("/d/x", None, PERSISTENT).await?, Err(NO_AUTH));
    // exists needs no permission.
    assert!(other.exists("/d", false).await?.is_ok());
    assert_eq!(
        other.auth("digest", b"alice:wrong").await?,
        0,
        "a wrong digest is not a failure, just another id"
    );
    assert_eq!(other.get_data("/d", false).await?.map(|_| ()), Err(NO_AUTH));
    assert_eq!(other.auth("digest", b"alice:secret").await?, 0);
    assert!(other.get_data("/d", false).await?.is_ok());

    // world read-only.
    let mut anon = Raw::connect(server.socket_addr(), 10_000).await?;
    owner
        .create_acl("/ro", Some(b"r"), Acl::read_unsafe(), PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    assert!(anon.get_data("/ro", false).await?.is_ok());
    assert_eq!(
        anon.set_data("/ro", None, -1).await?.map(|_| ()),
        Err(NO_AUTH)
    );
    assert_eq!(anon.create("/ro/x", None, PERSISTENT).await?, Err(NO_AUTH));
    let r = anon
        .call(Request::SetAcl(SetAclRequest {
            path: "/ro".into(),
            acl: Acl::open_unsafe(),
            version: -1,
        }))
        .await?;
    assert_eq!(r.header.err, NO_AUTH);

    // ip: 127.0.0.1 may, 10/8 may not.
    let mine = vec![Acl {
        perms: perms::ALL,
        id: Id::new("ip", "127.0.0.1"),
    }];
    let theirs = vec![Acl {
        perms: perms::ALL,
        id: Id::new("ip", "10.0.0.0/8"),
    }];
    anon.create_acl("/ip-mine", Some(b"m"), mine, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    anon.create_acl("/ip-theirs", Some(b"t"), theirs, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    assert!(anon.get_data("/ip-mine", false).await?.is_ok());
    assert_eq!(
        anon.get_data("/ip-theirs", false).await?.map(|_| ()),
        Err(NO_AUTH)
    );
    let bad_ip = vec![Acl {
        perms: perms::ALL,
        id: Id::new("ip", "not-an-ip"),
    }];
    assert_eq!(
        anon.create_acl("/ip-bad", None, bad_ip, PERSISTENT).await?,
        Err(INVALID_ACL)
    );

    // setACL: the ADMIN permission is checked before the version.
    let set_acl = |path: &str, version: i32| {
        Request::SetAcl(SetAclRequest {
            path: path.into(),
            acl: Acl::open_unsafe(),
            version,
        })
    };
    assert_eq!(owner.call(set_acl("/ro", 3)).await?.header.err, NO_AUTH);
    assert_eq!(owner.call(set_acl("/d", 3)).await?.header.err, BAD_VERSION);
    assert_eq!(anon.call(set_acl("/d", 0)).await?.header.err, NO_AUTH);
    assert_eq!(owner.call(set_acl("/d", 0)).await?.header.err, 0);
    assert_eq!(owner.call(set_acl("/nope", 0)).await?.header.err, NO_NODE);
    assert!(anon.set_data("/d", None, -1).await?.is_ok());

    // An unknown auth scheme: the AuthFailed reply, then the connection closes with
    // nothing else sent (the session itself lives on).
    assert_eq!(anon.auth("nosuchscheme", b"x").await?, AUTH_FAILED);
    assert!(anon.events.is_empty(), "{:?}", anon.events);
    assert_eq!(
        raw::read_frame(anon.stream()).await?,
        None,
        "a frame after AuthFailed"
    );
    let again = Raw::resume(
        server.socket_addr(),
        10_000,
        anon.session_id,
        anon.passwd.clone(),
        0,
    )
    .await?;
    assert_eq!(again.session_id, anon.session_id);
    Ok(())
}

// -- multi and multiRead ---------------------------------------------------------------

fn create_op(path: &str) -> MultiOp {
    MultiOp::Create(CreateRequest {
        path: path.into(),
        data: Some(Bytes::from_static(b"m")),
        acl: Acl::open_unsafe(),
        flags: 0,
    })
}

#[tokio::test]
async fn multi_results_and_rollback() -> Result<()> {
    let server = ZkServer::start()?;
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    c.create("/m", Some(b"v0"), PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;

    // A failing member: earlier ones report 0, later ones RuntimeInconsistency; nothing
    // is applied.
    let r = c
        .call(Request::Multi(vec![
            create_op("/m/1"),
            MultiOp::SetData(SetDataRequest {
                path: "/m".into(),
                data: Some(Bytes::from_static(b"v1")),
                version: -1,
            }),
            MultiOp::Delete(DeleteRequest {
                path: "/m/missing".into(),
                version: -1,
            }),
            create_op("/m/2"),
        ]))
        .await?;
    assert_eq!(r.header.err, 0, "a failed multi is not an error reply");
    let Response::Multi(results) = &r.body else {
        anyhow::bail!("multi: {r:?}")
    };
    assert_eq!(
        multi_errors(results),
        [0, 0, NO_NODE, RUNTIME_INCONSISTENCY]
    );
    assert!(
        results.iter().all(|x| matches!(x, MultiResult::Error(_))),
        "{results:?}"
    );
    assert_eq!(c.exists("/m/1", false).await?.map(|_| ()), Err(NO_NODE));
    let (d, st) = c.get_data("/m", false).await?.map_err(anyhow::Error::msg)?;
    assert_eq!((d.as_deref(), st.version), (Some(&b"v0"[..]), 0));

    // A check that fails.
    let r = c
        .call(Request::Multi(vec![
            MultiOp::Check(CheckVersionRequest {
                path: "/m".into(),
                version: 5,
            }),
            create_op("/m/3"),
        ]))
        .await?;
    let Response::Multi(results) = &r.body else {
        anyhow::bail!("multi: {r:?}")
    };
    assert_eq!(multi_errors(results), [BAD_VERSION, RUNTIME_INCONSISTENCY]);

    // A successful multi: one result per op, one zxid for all of them.
    let r = c
        .call(Request::Multi(vec![
            MultiOp::Check(CheckVersionRequest {
                path: "/m".into(),
                version: 0,
            }),
            create_op("/m/a"),
            MultiOp::Create2(CreateRequest {
                path: "/m/b".into(),
                data: None,
                acl: Acl::open_unsafe(),
                flags: 2,
            }),
            MultiOp::SetData(SetDataRequest {
                path: "/m".into(),
                data: Some(Bytes::from_static(b"v2")),
                version: 0,
            }),
            MultiOp::Delete(DeleteRequest {
                path: "/m/a".into(),
                version: 0,
            }),
        ]))
        .await?;
    assert_eq!(r.header.err, 0);
    let zxid = r.header.zxid;
    let Response::Multi(results) = &r.body else {
        anyhow::bail!("multi: {r:?}")
    };
    assert_eq!(results.len(), 5);
    assert!(matches!(results[0], MultiResult::Check));
    assert!(
        matches!(&results[1], MultiResult::Create(cr) if cr.path == "/m/a"),
        "{results:?}"
    );
    // ZooKeeper 3.8 answers a create2 member with a plain create result (no stat).
    assert!(
        matches!(&results[2], MultiResult::Create(cr) if cr.path == "/m/b0000000001"),
        "{results:?}"
    );
    assert!(
        matches!(&results[3], MultiResult::SetData(s) if s.stat.version == 1 && s.stat.mzxid == zxid),
        "{results:?}"
    );
    assert!(matches!(results[4], MultiResult::Delete));
    let st = c.exists("/m", false).await?.map_err(anyhow::Error::msg)?;
    assert_eq!((st.mzxid, st.pzxid, st.num_children), (zxid, zxid, 1));

    // An empty multi.
    let r = c.call(Request::Multi(vec![])).await?;
    assert!(
        matches!(&r.body, Response::Multi(v) if v.is_empty()),
        "{r:?}"
    );

    // multiRead: each op on its own.
    let r = c
        .call(Request::MultiRead(vec![
            MultiOp::GetData(GetDataRequest {
                path: "/m".into(),
                watch: false,
            }),
            MultiOp::GetData(GetDataRequest {
                path: "/nope".into(),
                watch: false,
            }),
            MultiOp::GetChildren(GetChildrenRequest {
                path: "/m".into(),
                watch: false,
            }),
            MultiOp::GetChildren(GetChildrenRequest {
                path: "/nope".into(),
                watch: false,
            }),
        ]))
        .await?;
    assert_eq!(r.header.err, 0);
    let Response::Multi(results) = &r.body else {
        anyhow::bail!("multiRead: {r:?}")
    };
    assert!(
        matches!(&results[0], MultiResult::GetData(g) if g.data.as_deref() == Some(&b"v2"[..])),
        "{results:?}"
    );
    assert!(
        matches!(&results[1], MultiResult::Error(e) if e.err == NO_NODE),
        "{results:?}"
    );
    assert!(
        matches!(&results[2], MultiResult::GetChildren(g) if g.children == ["b0000000001"]),
        "{results:?}"
    );
    assert!(
        matches!(&results[3], MultiResult::Error(e) if e.err == NO_NODE),
        "{results:?}"
    );
    Ok(())
}

#[tokio::test]
async fn multi_through_zookeeper_client() -> Result<()> {
    bounded(async move {
        let server = ZkServer::start()?;
        let zk = client(&server).await?;
        zk.create("/w", b"", &open()).await?;
        let mut w = zk.new_multi_writer();
        w.add_create("/w/a", b"1", &open())?;
        w.add_set_data("/w", b"x", Some(0))?;
        w.add_delete("/w/nope", None)?;
        match w.commit().await {
            Err(zk::MultiWriteError::OperationFailed { index, source }) => {
                assert_eq!(index, 2);
                assert!(matches!(source, zk::Error::NoNode), "{source:?}");
            }
            other => anyhow::bail!("expected a failed member, got {other:?}"),
        }
        assert!(zk.check_stat("/w/a").await?.is_none());
        let mut w = zk.new_multi_writer();
        w.add_create("/w/a", b"1", &open())?;
        w.add_check_version("/w", 0)?;
        w.add_set_data("/w", b"x", Some(0))?;
        let results = w.commit().await?;
        assert_eq!(results.len(), 3);
        assert!(matches!(&results[2], zk::MultiWriteResult::SetData { stat } if stat.version == 1));
        let mut r = zk.new_multi_reader();
        r.add_get_data("/w/a")?;
        r.add_get_children("/w")?;
        r.add_get_data("/nope")?;
        let results = r.commit().await?;
        assert!(matches!(&results[0], zk::MultiReadResult::Data { data, .. } if data == b"1"));
        assert!(
            matches!(&results[1], zk::MultiReadResult::Children { children } if children == &["a"])
        );
        assert!(matches!(
            &results[2],
            zk::MultiReadResult::Error {
                err: zk::Error::NoNode
            }
        ));
        Ok(())
    })
    .await
}

// -- watches ---------------------------------------------------------------------------

#[tokio::test]
async fn one_shot_watches_of_each_kind() -> Result<()> {
    bounded(async move {
        let server = ZkServer::start()?;
        let zk = client(&server).await?;
        let writer = client(&server).await?;

        // exists on a missing node → NodeCreated.
        let (stat, w) = zk.check_and_watch_stat("/n").await?;
        assert!(stat.is_none());
        writer.create("/n", b"", &open()).await?;
        let ev = w.changed().await;
        assert_eq!(
            (ev.event_type, ev.path.as_str()),
            (zk::EventType::NodeCreated, "/n")
        );

        // getData → NodeDataChanged; getChildren → NodeChildrenChanged.
        let (_, _, data_w) = zk.get_and_watch_data("/n").await?;
        let (_, child_w) = zk.list_and_watch_children("/n").await?;
        writer.set_data("/n", b"new", None).await?;
        let ev = data_w.changed().await;
        assert_eq!(
            (ev.event_type, ev.path.as_str()),
            (zk::EventType::NodeDataChanged, "/n")
        );
        writer.create("/n/c", b"", &open()).await?;
        let ev = child_w.changed().await;
        assert_eq!(
            (ev.event_type, ev.path.as_str()),
            (zk::EventType::NodeChildrenChanged, "/n")
        );

        // delete → NodeDeleted on the node's data watch, NodeChildrenChanged on the parent.
        let (_, _, data_w) = zk.get_and_watch_data("/n/c").await?;
        let (_, parent_w) = zk.list_and_watch_children("/n").await?;
        let (_, exist_w) = zk.check_and_watch_stat("/n/c").await?;
        writer.delete("/n/c", None).await?;
        assert_eq!(
            data_w.changed().await.event_type,
            zk::EventType::NodeDeleted
        );
        assert_eq!(
            exist_w.changed().await.event_type,
            zk::EventType::NodeDeleted
        );
        let ev = parent_w.changed().await;
        assert_eq!(
            (ev.event_type, ev.path.as_str()),
            (zk::EventType::NodeChildrenChanged, "/n")
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn raw_watch_events_come_before_later_replies() -> Result<()> {
    let server = ZkServer::start()?;
    let mut watcher = Raw::connect(server.socket_addr(), 10_000).await?;
    let mut writer = Raw::connect(server.socket_addr(), 10_000).await?;
    watcher
        .create("/o", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    assert!(watcher.get_data("/o", true).await?.is_ok());
    assert_eq!(
        watcher.exists("/o/x", true).await?.map(|_| ()),
        Err(NO_NODE)
    );
    let r = watcher
        .call(Request::GetChildren(GetChildrenRequest {
            path: "/o".into(),
            watch: true,
        }))
        .await?;
    assert_eq!(r.header.err, 0);
    writer
        .set_data("/o", Some(b"1"), -1)
        .await?
        .map_err(anyhow::Error::msg)?;
    let set_zxid = writer.last_zxid;
    writer
        .create("/o/x", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    let create_zxid = writer.last_zxid;
    watcher.ping().await?;
    let events: Vec<_> = watcher.events.drain(..).collect();
    let got: Vec<_> = events
        .iter()
        .map(|(z, e)| (*z, e.event_type, e.state, e.path.as_str()))
        .collect();
    let sync = KeeperState::SyncConnected.code();
    assert!(set_zxid < create_zxid);
    // ZooKeeper 3.8 sends notifications with zxid -1.
    assert_eq!(
        got,
        [
            (-1, EventType::NodeDataChanged.code(), sync, "/o"),
            (-1, EventType::NodeCreated.code(), sync, "/o/x"),
            (-1, EventType::NodeChildrenChanged.code(), sync, "/o"),
        ]
    );
    // Many rounds: the event of a change acknowledged to another client always comes
    // before the reply to this client's next request.
    for round in 0..50 {
        assert!(watcher.get_data("/o", true).await?.is_ok());
        writer
            .set_data("/o", Some(b"r"), -1)
            .await?
            .map_err(anyhow::Error::msg)?;
        watcher.ping().await?;
        let got: Vec<_> = watcher
            .events
            .drain(..)
            .map(|(_, e)| (e.event_type, e.path))
            .collect();
        assert_eq!(
            got,
            [(EventType::NodeDataChanged.code(), "/o".to_owned())],
            "round {round}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn check_and_remove_watches() -> Result<()> {
    let server = ZkServer::start()?;
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    c.create("/k", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    let check = |path: &str, t: i32| {
        Request::CheckWatches(CheckWatchesRequest {
            path: path.into(),
            watcher_type: t,
        })
    };
    let remove = |path: &str, t: i32| {
        Request::RemoveWatches(RemoveWatchesRequest {
            path: path.into(),
            watcher_type: t,
        })
    };
    const CHILDREN: i32 = 1;
    const DATA: i32 = 2;
    const ANY: i32 = 3;

    assert_eq!(c.call(check("/k", DATA)).await?.header.err, NO_WATCHER);
    assert_eq!(c.call(check("/nope", ANY)).await?.header.err, NO_WATCHER);
    assert!(c.get_data("/k", true).await?.is_ok());
    assert_eq!(c.call(check("/k", DATA)).await?.header.err, 0);
    assert_eq!(c.call(check("/k", ANY)).await?.header.err, 0);
    assert_eq!(c.call(check("/k", CHILDREN)).await?.header.err, NO_WATCHER);
    assert_eq!(c.call(remove("/k", CHILDREN)).await?.header.err, NO_WATCHER);
    assert_eq!(c.call(remove("/k", DATA)).await?.header.err, 0);
    assert_eq!(c.call(check("/k", DATA)).await?.header.err, NO_WATCHER);
    // A removed watch does not fire, and the server sends no event for the removal.
    c.set_data("/k", Some(b"x"), -1)
        .await?
        .map_err(anyhow::Error::msg)?;
    c.ping().await?;
    assert!(c.events.is_empty(), "{:?}", c.events);

    let r = c
        .call(Request::GetChildren(GetChildrenRequest {
            path: "/k".into(),
            watch: true,
        }))
        .await?;
    assert_eq!(r.header.err, 0);
    assert!(c.exists("/k", true).await?.is_ok());
    assert_eq!(c.call(remove("/k", ANY)).await?.header.err, 0);
    assert_eq!(c.call(check("/k", ANY)).await?.header.err, NO_WATCHER);
    c.create("/k/c", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    c.ping().await?;
    assert!(c.events.is_empty(), "{:?}", c.events);
    Ok(())
}

#[tokio::test]
async fn persistent_and_recursive_watches() -> Result<()> {
    bounded(async move {
        let server = ZkServer::start()?;
        let zk = client(&server).await?;
        let zk2 = client(&server).await?;
        let writer = client(&server).await?;
        zk.create("/pw", b"", &open()).await?;
        // Different connections: a connection has one watch mode per path.
        let mut persistent = zk.watch("/pw", zk::AddWatchMode::Persistent).await?;
        let mut recursive = zk2
            .watch("/pw", zk::AddWatchMode::PersistentRecursive)
            .await?;

        writer.set_data("/pw", b"1", None).await?;
        writer.create("/pw/a", b"", &open()).await?;
        writer.create("/pw/a/b", b"", &open()).await?;
        writer.set_data("/pw/a/b", b"2", None).await?;
        writer.delete("/pw/a/b", None).await?;
        writer.set_data("/pw", b"3", None).await?;

        use zk::EventType::*;
        let mut got = Vec::new();
        for _ in 0..3 {
            let ev = tokio::time::timeout(raw::READ_TIMEOUT, persistent.changed()).await?;
            got.push((ev.event_type, ev.path));
        }
        assert_eq!(
            got,
            [
                (NodeDataChanged, "/pw".to_owned()),
                (NodeChildrenChanged, "/pw".to_owned()),
                (NodeDataChanged, "/pw".to_owned()),
            ]
        );
        let mut got = Vec::new();
        for _ in 0..6 {
            let ev = tokio::time::timeout(raw::READ_TIMEOUT, recursive.changed()).await?;
            got.push((ev.event_type, ev.path));
        }
        // No NodeChildrenChanged for recursive watches.
        assert_eq!(
            got,
            [
                (NodeDataChanged, "/pw".to_owned()),
                (NodeCreated, "/pw/a".to_owned()),
                (NodeCreated, "/pw/a/b".to_owned()),
                (NodeDataChanged, "/pw/a/b".to_owned()),
                (NodeDeleted, "/pw/a/b".to_owned()),
                (NodeDataChanged, "/pw".to_owned()),
            ]
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn raw_add_watch_modes() -> Result<()> {
    let server = ZkServer::start()?;
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    let mut w = Raw::connect(server.socket_addr(), 10_000).await?;
    c.create("/aw", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    let add = |path: &str, mode: i32| {
        Request::AddWatch(AddWatchRequest {
            path: path.into(),
            mode,
        })
    };
    let r = w.call(add("/aw", 0)).await?;
    assert_eq!(r.header.err, 0);
    assert!(
        matches!(r.body, Response::Error(ErrorResponse { err: 0 })),
        "{r:?}"
    );
    // A watch may be set on a path that does not exist yet.
    assert_eq!(w.call(add("/later", 0)).await?.header.err, 0);
    let check = |path: &str, t: i32| {
        Request::CheckWatches(CheckWatchesRequest {
            path: path.into(),
            watcher_type: t,
        })
    };
    assert_eq!(
        w.call(check("/aw", 3)).await?.header.err,
        0,
        "a watch is present"
    );
    // ZooKeeper 3.8.0 knows watcher types 1-3 only (Persistent=4 came later).
    let mc = ErrorCode::MarshallingError.code();
    assert_eq!(w.call(check("/aw", 4)).await?.header.err, mc);

    c.create("/aw/x", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    c.create("/later", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    c.set_data("/later", Some(b"1"), -1)
        .await?
        .map_err(anyhow::Error::msg)?;
    c.set_data("/aw/x", Some(b"1"), -1)
        .await?
        .map_err(anyhow::Error::msg)?;
    w.ping().await?;
    let got: Vec<_> = w
        .events
        .drain(..)
        .map(|(_, e)| (e.event_type, e.path))
        .collect();
    // Persistent, not recursive: nothing for /aw/x's data.
    assert_eq!(
        got,
        [
            (EventType::NodeChildrenChanged.code(), "/aw".to_owned()),
            (EventType::NodeCreated.code(), "/later".to_owned()),
            (EventType::NodeDataChanged.code(), "/later".to_owned()),
        ]
    );
    let r = w.call(add("/aw", 7)).await?;
    assert_eq!(r.header.err, ErrorCode::MarshallingError.code(), "{r:?}");
    Ok(())
}

/// In ZooKeeper 3.8.0 a connection has one watch mode per path (`WatcherModeManager`):
/// addWatch(recursive) after addWatch(persistent) on the same path replaces it, so the
/// path's NodeChildrenChanged is no longer sent.
#[tokio::test]
async fn second_add_watch_mode_replaces_the_first() -> Result<()> {
    let server = ZkServer::start()?;
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    let mut w = Raw::connect(server.socket_addr(), 10_000).await?;
    c.create("/aw", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    let add = |path: &str, mode: i32| {
        Request::AddWatch(AddWatchRequest {
            path: path.into(),
            mode,
        })
    };
    assert_eq!(w.call(add("/aw", 0)).await?.header.err, 0);
    assert_eq!(w.call(add("/aw", 1)).await?.header.err, 0);
    c.create("/aw/x", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    w.ping().await?;
    let got: Vec<_> = w
        .events
        .drain(..)
        .map(|(_, e)| (e.event_type, e.path))
        .collect();
    assert_eq!(got, [(EventType::NodeCreated.code(), "/aw/x".to_owned())]);
    Ok(())
}

/// The (type, path) of every event `c` has received, once the server has answered a ping
/// (so every event queued before it has arrived).
async fn drained_events(c: &mut Raw) -> Result<Vec<(i32, String)>> {
    c.ping().await?;
    Ok(c.events
        .drain(..)
        .map(|(_, e)| (e.event_type, e.path))
        .collect())
}

fn event(t: EventType, path: &str) -> (i32, String) {
    (t.code(), path.to_owned())
}

/// `setACL path acl`: the reply's error code.
async fn set_acl(c: &mut Raw, path: &str, acl: Vec<Acl>) -> Result<i32> {
    let r = c
        .call(Request::SetAcl(SetAclRequest {
            path: path.into(),
            acl,
            version: -1,
        }))
        .await?;
    Ok(r.header.err)
}

/// As ZooKeeper 3.8 with the fix for CVE-2024-23944 (`ServerCnxn.process(WatchedEvent,
/// List<ACL>)`), an event reaches a session only if it may READ the node the event is
/// about: a persistent watch sees nothing of a node it cannot read, whoever created it
/// (the session's own create included), and a digest session that may read sees it all.
#[tokio::test]
async fn watch_events_need_read_on_the_node() -> Result<()> {
    bounded(async move {
        let server = ZkServer::start()?;
        let addr = server.socket_addr();
        let mut owner = Raw::connect(addr, 10_000).await?;
        let mut reader = Raw::connect(addr, 10_000).await?;
        let mut stranger = Raw::connect(addr, 10_000).await?;
        assert_eq!(owner.auth("digest", b"alice:secret").await?, 0);
        assert_eq!(reader.auth("digest", b"alice:secret").await?, 0);
        let add = |path: &str, mode: i32| {
            Request::AddWatch(AddWatchRequest {
                path: path.into(),
                mode,
            })
        };
        for c in [&mut owner, &mut reader, &mut stranger] {
            assert_eq!(c.call(add("/b", 0)).await?.header.err, 0);
            assert_eq!(c.call(add("/z", 1)).await?.header.err, 0);
        }

        // world:anyone with no permission: nobody may read it, not even its creator.
        let none = vec![Acl {
            perms: 0,
            id: Id::new("world", "anyone"),
        }];
        stranger
            .create_acl("/z", Some(b""), none, PERSISTENT)
            .await?
            .map_err(anyhow::Error::msg)?;
        for c in [&mut owner, &mut reader, &mut stranger] {
            assert_eq!(drained_events(c).await?, []);
        }

        // alice only: alice's sessions see create, change, delete; the stranger nothing.
        owner
            .create_acl("/b", Some(b""), Acl::creator_all(), PERSISTENT)
            .await?
            .map_err(anyhow::Error::msg)?;
        owner
            .set_data("/b", Some(b"1"), -1)
            .await?
            .map_err(anyhow::Error::msg)?;
        assert_eq!(owner.delete("/b", -1).await?, 0);
        let seen = [
            event(EventType::NodeCreated, "/b"),
            event(EventType::NodeDataChanged, "/b"),
            event(EventType::NodeDeleted, "/b"),
        ];
        assert_eq!(drained_events(&mut owner).await?, seen);
        assert_eq!(drained_events(&mut reader).await?, seen);
        assert_eq!(drained_events(&mut stranger).await?, []);

        // The persistent watches stay: an open node is seen by all.
        stranger
            .create("/b", None, PERSISTENT)
            .await?
            .map_err(anyhow::Error::msg)?;
        for c in [&mut owner, &mut reader, &mut stranger] {
            assert_eq!(
                drained_events(c).await?,
                [event(EventType::NodeCreated, "/b")]
            );
        }
        Ok(())
    })
    .await
}

/// NodeChildrenChanged is about the parent: a session that may not read the parent gets
/// none, however open the child is; its one-shot child watch is used up all the same.
#[tokio::test]
async fn children_changed_needs_read_on_the_parent() -> Result<()> {
    bounded(async move {
        let server = ZkServer::start()?;
        let addr = server.socket_addr();
        let mut owner = Raw::connect(addr, 10_000).await?;
        let mut stranger = Raw::connect(addr, 10_000).await?;
        assert_eq!(owner.auth("digest", b"alice:secret").await?, 0);
        owner
            .create("/p", None, PERSISTENT)
            .await?
            .map_err(anyhow::Error::msg)?;
        let children = |path: &str| {
            Request::GetChildren(GetChildrenRequest {
                path: path.into(),
                watch: true,
            })
        };
        // Both watch /p while it is open; then it becomes alice's.
        for c in [&mut owner, &mut stranger] {
            assert_eq!(c.call(children("/p")).await?.header.err, 0);
        }
        assert_eq!(set_acl(&mut owner, "/p", Acl::creator_all()).await?, 0);
        owner
            .create("/p/c", None, PERSISTENT)
            .await?
            .map_err(anyhow::Error::msg)?;
        assert_eq!(
            drained_events(&mut owner).await?,
            [event(EventType::NodeChildrenChanged, "/p")]
        );
        assert_eq!(drained_events(&mut stranger).await?, []);

        // Open again: the stranger's watch fired (unseen) and is gone.
        assert_eq!(set_acl(&mut owner, "/p", Acl::open_unsafe()).await?, 0);
        owner
            .create("/p/d", None, PERSISTENT)
            .await?
            .map_err(anyhow::Error::msg)?;
        assert_eq!(drained_events(&mut stranger).await?, []);
        // A new watch sees the next change.
        assert_eq!(stranger.call(children("/p")).await?.header.err, 0);
        assert_eq!(owner.delete("/p/d", -1).await?, 0);
        assert_eq!(
            drained_events(&mut stranger).await?,
            [event(EventType::NodeChildrenChanged, "/p")]
        );
        Ok(())
    })
    .await
}

/// An exists watch on a missing node fires when the node is created; if the session may
/// not read the new node it gets no event, and the watch is used up (ZooKeeper removes
/// one-shot watches in `WatchManager.triggerWatch`, before the ACL check on delivery).
#[tokio::test]
async fn exists_watch_on_an_unreadable_node_is_used_up() -> Result<()> {
    bounded(async move {
        let server = ZkServer::start()?;
        let addr = server.socket_addr();
        let mut owner = Raw::connect(addr, 10_000).await?;
        let mut reader = Raw::connect(addr, 10_000).await?;
        let mut stranger = Raw::connect(addr, 10_000).await?;
        assert_eq!(owner.auth("digest", b"alice:secret").await?, 0);
        assert_eq!(reader.auth("digest", b"alice:secret").await?, 0);
        for c in [&mut reader, &mut stranger] {
            assert_eq!(c.exists("/x", true).await?.map(|_| ()), Err(NO_NODE));
        }
        owner
            .create_acl("/x", Some(b""), Acl::creator_all(), PERSISTENT)
            .await?
            .map_err(anyhow::Error::msg)?;
        assert_eq!(
            drained_events(&mut reader).await?,
            [event(EventType::NodeCreated, "/x")]
        );
        assert_eq!(drained_events(&mut stranger).await?, []);
        // Readable now, but the stranger's exists watch has gone.
        assert_eq!(set_acl(&mut owner, "/x", Acl::open_unsafe()).await?, 0);
        owner
            .set_data("/x", Some(b"1"), -1)
            .await?
            .map_err(anyhow::Error::msg)?;
        assert_eq!(drained_events(&mut stranger).await?, []);
        assert!(stranger.exists("/x", true).await?.is_ok());
        owner
            .set_data("/x", Some(b"2"), -1)
            .await?
            .map_err(anyhow::Error::msg)?;
        assert_eq!(
            drained_events(&mut stranger).await?,
            [event(EventType::NodeDataChanged, "/x")]
        );
        Ok(())
    })
    .await
}

/// In a multi each event is checked against the ACL its node has at that member, as
/// ZooKeeper fires a member's watches when the member applies.
#[tokio::test]
async fn multi_events_are_checked_member_by_member() -> Result<()> {
    bounded(async move {
        let server = ZkServer::start()?;
        let addr = server.socket_addr();
        let mut owner = Raw::connect(addr, 10_000).await?;
        let mut stranger = Raw::connect(addr, 10_000).await?;
        assert_eq!(owner.auth("digest", b"alice:secret").await?, 0);
        owner
            .create("/m", None, PERSISTENT)
            .await?
            .map_err(anyhow::Error::msg)?;
        let add = Request::AddWatch(AddWatchRequest {
            path: "/m".into(),
            mode: 0,
        });
        assert_eq!(owner.call(add.clone()).await?.header.err, 0);
        assert_eq!(stranger.call(add).await?.header.err, 0);
        // Changed and deleted while open, created again as alice's.
        let r = owner
            .call(Request::Multi(vec![
                MultiOp::SetData(SetDataRequest {
                    path: "/m".into(),
                    data: Some(Bytes::from_static(b"1")),
                    version: -1,
                }),
                MultiOp::Delete(DeleteRequest {
                    path: "/m".into(),
                    version: -1,
                }),
                MultiOp::Create(CreateRequest {
                    path: "/m".into(),
                    data: None,
                    acl: Acl::creator_all(),
                    flags: PERSISTENT,
                }),
            ]))
            .await?;
        assert_eq!(r.header.err, 0, "{r:?}");
        let open = [
            event(EventType::NodeDataChanged, "/m"),
            event(EventType::NodeDeleted, "/m"),
        ];
        assert_eq!(drained_events(&mut stranger).await?, open);
        let mut all = open.to_vec();
        all.push(event(EventType::NodeCreated, "/m"));
        assert_eq!(drained_events(&mut owner).await?, all);
        Ok(())
    })
    .await
}

/// The deletes of a closing session's ephemerals are checked against the ACL the nodes
/// had.
#[tokio::test]
async fn ephemeral_deleted_at_close_needs_read() -> Result<()> {
    bounded(async move {
        let server = ZkServer::start()?;
        let addr = server.socket_addr();
        let mut owner = Raw::connect(addr, 10_000).await?;
        let mut reader = Raw::connect(addr, 10_000).await?;
        let mut stranger = Raw::connect(addr, 10_000).await?;
        assert_eq!(owner.auth("digest", b"alice:secret").await?, 0);
        assert_eq!(reader.auth("digest", b"alice:secret").await?, 0);
        owner
            .create_acl("/e", Some(b""), Acl::creator_all(), EPHEMERAL)
            .await?
            .map_err(anyhow::Error::msg)?;
        assert!(reader.exists("/e", true).await?.is_ok());
        assert!(stranger.exists("/e", true).await?.is_ok());
        assert_eq!(owner.close().await?, 0);
        assert_eq!(
            drained_events(&mut reader).await?,
            [event(EventType::NodeDeleted, "/e")]
        );
        assert_eq!(drained_events(&mut stranger).await?, []);
        Ok(())
    })
    .await
}

// -- sessions --------------------------------------------------------------------------

#[tokio::test]
async fn ephemerals_go_when_the_session_closes() -> Result<()> {
    bounded(async move {
        let server = ZkServer::start()?;
        let mut observer = Raw::connect(server.socket_addr(), 10_000).await?;
        let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
        c.create("/eph", None, EPHEMERAL)
            .await?
            .map_err(anyhow::Error::msg)?;
        assert!(observer.exists("/eph", true).await?.is_ok());
        assert_eq!(c.close().await?, 0);
        let ev = observer.next_event().await?;
        assert_eq!(
            (ev.event_type, ev.path.as_str()),
            (EventType::NodeDeleted.code(), "/eph")
        );
        assert_eq!(
            observer.exists("/eph", false).await?.map(|_| ()),
            Err(NO_NODE)
        );

        // The same through zookeeper-client: dropping the client closes its session.
        let zk = client(&server).await?;
        zk.create(
            "/eph2",
            b"",
            &zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all()),
        )
        .await?;
        assert!(observer.exists("/eph2", true).await?.is_ok());
        drop(zk);
        let ev = observer.next_event().await?;
        assert_eq!(
            (ev.event_type, ev.path.as_str()),
            (EventType::NodeDeleted.code(), "/eph2")
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn ephemerals_go_when_the_session_expires() -> Result<()> {
    let server = ZkServer::start_with(&["tickTime=100", "minSessionTimeout=200"])?;
    let mut observer = Raw::connect(server.socket_addr(), 10_000).await?;
    let c = Raw::connect(server.socket_addr(), 300).await?;
    assert!(c.timeout_ms <= 2000, "negotiated {}", c.timeout_ms);
    let (session, passwd) = (c.session_id, c.passwd.clone());
    let mut c = c;
    c.create("/exp", None, EPHEMERAL)
        .await?
        .map_err(anyhow::Error::msg)?;
    assert!(observer.exists("/exp", true).await?.is_ok());
    drop(c); // no close: the session must expire.
    // The observer (2 s session at most here) pings while it waits for the event.
    let deadline = tokio::time::Instant::now() + BACKGROUND;
    while observer.events.is_empty() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "/exp was never deleted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        observer.ping().await?;
    }
    let got: Vec<_> = observer
        .events
        .drain(..)
        .map(|(_, e)| (e.event_type, e.path))
        .collect();
    assert_eq!(got, [(EventType::NodeDeleted.code(), "/exp".to_owned())]);
    // The expired session cannot be resumed.
    let req = raw::connect_request(300, session, passwd, 0);
    let (mut s, resp) = raw::handshake(server.socket_addr(), &req).await?;
    let resp = resp.context("no answer to the handshake")?;
    assert_eq!((resp.session_id, resp.timeout_ms), (0, 0));
    assert!(raw::closed_by_server(&mut s).await?);
    Ok(())
}

#[tokio::test]
async fn reconnect_keeps_the_session_and_its_ephemerals() -> Result<()> {
    bounded(async move {
        let server = ZkServer::start()?;
        let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
        c.create("/mine", None, EPHEMERAL)
            .await?
            .map_err(anyhow::Error::msg)?;
        let (session, passwd, zxid) = (c.session_id, c.passwd.clone(), c.last_zxid);
        drop(c);
        let mut again =
            Raw::resume(server.socket_addr(), 10_000, session, passwd.clone(), zxid).await?;
        assert_eq!(again.session_id, session);
        let st = again
            .exists("/mine", false)
            .await?
            .map_err(anyhow::Error::msg)?;
        assert_eq!(st.ephemeral_owner, session);
        let r = again
            .call(Request::GetEphemerals(GetEphemeralsRequest {
                prefix_path: "/".into(),
            }))
            .await?;
        assert!(
            matches!(&r.body, Response::GetEphemerals(e) if e.ephemerals == ["/mine"]),
            "{r:?}"
        );
        // The session is usable on the new connection.
        again
            .create("/mine2", None, EPHEMERAL)
            .await?
            .map_err(anyhow::Error::msg)?;

        // A second connection for the same session takes it over; the first is closed.
        let mut third = Raw::resume(server.socket_addr(), 10_000, session, passwd, 0).await?;
        assert!(raw::closed_by_server(again.stream()).await?);
        assert!(third.exists("/mine2", false).await?.is_ok());

        // zookeeper-client: same session id after reconnecting with the session info.
        let zk = zk::Client::connector()
            .with_detached()
            .with_connection_timeout(Duration::from_secs(5))
            .connect(&server.addr())
            .await?;
        let id = zk.session_id();
        zk.create(
            "/zkmine",
            b"",
            &zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all()),
        )
        .await?;
        let info = zk.into_session();
        let zk2 = zk::Client::connector()
            .with_session(info)
            .with_connection_timeout(Duration::from_secs(5))
            .connect(&server.addr())
            .await?;
        assert_eq!(zk2.session_id(), id);
        assert_eq!(
            zk2.check_stat("/zkmine").await?.map(|s| s.ephemeral_owner),
            Some(id.0)
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn wrong_session_password_is_refused() -> Result<()> {
    let server = ZkServer::start()?;
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    c.create("/pwd", None, EPHEMERAL)
        .await?
        .map_err(anyhow::Error::msg)?;
    let mut wrong = c.passwd.to_vec();
    wrong[0] ^= 0xff;
    let req = raw::connect_request(10_000, c.session_id, Bytes::from(wrong), 0);
    let (mut s, resp) = raw::handshake(server.socket_addr(), &req).await?;
    let resp = resp.context("no answer to the handshake")?;
    assert_eq!((resp.session_id, resp.timeout_ms), (0, 0));
    assert_eq!(resp.passwd.as_ref(), &[0u8; 16]);
    assert!(raw::closed_by_server(&mut s).await?);
    // Apache closes the session's current connection before it checks the password
    // (`processConnectRequest`); the owner resumes with the right password.
    assert!(raw::closed_by_server(c.stream()).await?);
    let mut c = Raw::resume(
        server.socket_addr(),
        10_000,
        c.session_id,
        c.passwd.clone(),
        c.last_zxid,
    )
    .await?;
    assert!(c.exists("/pwd", false).await?.is_ok());
    // A client that has seen a newer zxid than the server is refused (closed).
    let req = raw::connect_request(10_000, 0, Bytes::from_static(&[0; 16]), c.last_zxid + 1000);
    let (mut s, resp) = raw::handshake(server.socket_addr(), &req).await?;
    assert!(resp.is_none(), "answered {resp:?}");
    assert!(raw::closed_by_server(&mut s).await?);
    Ok(())
}

// -- durability ------------------------------------------------------------------------

#[tokio::test]
async fn kill_9_and_restart_keeps_every_acknowledged_write() -> Result<()> {
    let mut server = ZkServer::start()?;
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    c.create("/d", Some(b"root"), PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    let mut expected = Vec::new();
    for i in 0..50 {
        let (p, _) = c
            .create(
                "/d/n-",
                Some(format!("v{i}").as_bytes()),
                PERSISTENT_SEQUENTIAL,
            )
            .await?
            .map_err(anyhow::Error::msg)?;
        expected.push(p);
    }
    c.set_data("/d/n-0000000007", Some(b"changed"), 0)
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(c.delete("/d/n-0000000009", -1).await?, 0);
    let before = c.exists("/d", false).await?.map_err(anyhow::Error::msg)?;
    let last_zxid = c.last_zxid;
    drop(c);
    server.restart()?;

    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    let after = c.exists("/d", false).await?.map_err(anyhow::Error::msg)?;
    assert_eq!(after, before);
    let r = c
        .call(Request::GetChildren(GetChildrenRequest {
            path: "/d".into(),
            watch: false,
        }))
        .await?;
    let Response::GetChildren(mut ch) = r.body else {
        anyhow::bail!("getChildren {:?}", r.header)
    };
    ch.children.sort();
    let mut want: Vec<String> = expected
        .iter()
        .filter(|p| p.as_str() != "/d/n-0000000009")
        .map(|p| p.trim_start_matches("/d/").to_owned())
        .collect();
    want.sort();
    assert_eq!(ch.children, want);
    let (d, st) = c
        .get_data("/d/n-0000000007", false)
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!((d.as_deref(), st.version), (Some(&b"changed"[..]), 1));
    let (d, _) = c
        .get_data("/d/n-0000000049", false)
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(d.as_deref(), Some(&b"v49"[..]));
    // New writes get newer zxids.
    c.create("/after", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    assert!(
        c.last_zxid > last_zxid,
        "{:#x} <= {last_zxid:#x}",
        c.last_zxid
    );
    Ok(())
}

// -- bad input on the client port ------------------------------------------------------

#[tokio::test]
async fn bad_input_closes_only_that_connection() -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let server = ZkServer::start()?;
    let mut good = Raw::connect(server.socket_addr(), 10_000).await?;
    good.create("/ok", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;

    // Garbage instead of a handshake.
    let mut s = tokio::net::TcpStream::connect(server.socket_addr()).await?;
    s.write_all(b"\x00\x00\x00\x08garbage!").await?;
    assert!(raw::closed_by_server(&mut s).await?, "garbage handshake");
    let mut s = tokio::net::TcpStream::connect(server.socket_addr()).await?;
    s.write_all(b"GARBAGE GARBAGE GARBAGE").await?;
    assert!(raw::closed_by_server(&mut s).await?, "garbage bytes");

    // A huge or negative length prefix, before and after the handshake.
    for prefix in [0x7fff_ffffu32.to_be_bytes(), (-5i32).to_be_bytes()] {
        let mut s = tokio::net::TcpStream::connect(server.socket_addr()).await?;
        s.write_all(&prefix).await?;
        assert!(
            raw::closed_by_server(&mut s).await?,
            "length {prefix:?} before the handshake"
        );
        let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
        let mut bytes = prefix.to_vec();
        bytes.extend_from_slice(&[0; 64]);
        c.stream().write_all(&bytes).await?;
        assert!(
            raw::closed_by_server(c.stream()).await?,
            "length {prefix:?} after the handshake"
        );
    }

    // Half a frame, then the client stops sending.
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    c.stream().write_all(&100i32.to_be_bytes()).await?;
    c.stream().write_all(&[1, 2, 3, 4, 5]).await?;
    c.stream().shutdown().await?;
    assert!(raw::closed_by_server(c.stream()).await?, "half a frame");

    // A frame whose body is not the request it claims to be.
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    // ZooKeeper answers MarshallingError (as an error txn) and keeps the connection.
    raw::write_frame(c.stream(), &[0, 0, 0, 1, 0, 0, 0, 1, 0xff]).await?;
    let mut frame = raw::read_frame(c.stream())
        .await?
        .context("closed after a truncated create")?;
    let h = <zk_proto::jute::ReplyHeader as zk_proto::jute::Record>::decode(&mut frame)?;
    assert_eq!((h.xid, h.err), (1, ErrorCode::MarshallingError.code()));
    assert!(h.zxid > good.last_zxid, "the error txn takes a zxid");
    assert!(c.exists("/ok", false).await?.is_ok());

    // The good client never noticed.
    assert!(good.exists("/ok", false).await?.is_ok());
    good.create("/ok2", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    Ok(())
}

// -- four-letter words -----------------------------------------------------------------

#[tokio::test]
async fn four_letter_words() -> Result<()> {
    let server = ZkServer::start()?;
    assert_eq!(four_letter_word(server.socket_addr(), "ruok")?, "imok");
    let srvr = four_letter_word(server.socket_addr(), "srvr")?;
    assert!(srvr.starts_with("Zookeeper version: "), "{srvr}");
    assert!(srvr.contains("\nMode: standalone\n"), "{srvr}");
    for line in [
        "Latency min/avg/max: ",
        "Received: ",
        "Sent: ",
        "Connections: ",
        "Outstanding: ",
        "Zxid: 0x",
        "Node count: ",
    ] {
        assert!(srvr.contains(line), "srvr lacks {line:?}:\n{srvr}");
    }
    let mntr = four_letter_word(server.socket_addr(), "mntr")?;
    let keys: Vec<&str> = mntr.lines().filter_map(|l| l.split('\t').next()).collect();
    for key in [
        "zk_version",
        "zk_avg_latency",
        "zk_max_latency",
        "zk_min_latency",
        "zk_packets_received",
        "zk_packets_sent",
        "zk_num_alive_connections",
        "zk_outstanding_requests",
        "zk_server_state",
        "zk_znode_count",
        "zk_watch_count",
        "zk_ephemerals_count",
        "zk_approximate_data_size",
        "zk_open_file_descriptor_count",
        "zk_max_file_descriptor_count",
    ] {
        assert!(keys.contains(&key), "mntr lacks {key}:\n{mntr}");
    }
    assert!(mntr.contains("zk_server_state\tstandalone\n"), "{mntr}");
    let znodes = |m: &str| -> Option<i64> {
        m.lines()
            .find_map(|l| l.strip_prefix("zk_znode_count\t"))
            .and_then(|v| v.trim().parse().ok())
    };
    let fresh = znodes(&mntr).context("zk_znode_count")?;
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    c.create("/four", None, EPHEMERAL)
        .await?
        .map_err(anyhow::Error::msg)?;
    let mntr = four_letter_word(server.socket_addr(), "mntr")?;
    assert_eq!(znodes(&mntr), Some(fresh + 1));
    assert!(mntr.contains("zk_ephemerals_count\t1\n"), "{mntr}");
    assert_eq!(four_letter_word(server.socket_addr(), "isro")?, "rw");
    Ok(())
}

#[tokio::test]
async fn four_letter_word_whitelist() -> Result<()> {
    let server = ZkServer::start_with(&["4lw.commands.whitelist=srvr, mntr"])?;
    assert_eq!(
        four_letter_word(server.socket_addr(), "ruok")?,
        "ruok is not executed because it is not in the whitelist.\n"
    );
    assert!(four_letter_word(server.socket_addr(), "mntr")?.contains("zk_version"));
    assert!(four_letter_word(server.socket_addr(), "srvr")?.contains("Mode: standalone"));
    // An unknown word is not a four-letter word: the server reads it as a length.
    let mut s = tokio::net::TcpStream::connect(server.socket_addr()).await?;
    tokio::io::AsyncWriteExt::write_all(&mut s, b"abcd").await?;
    assert!(raw::closed_by_server(&mut s).await?);
    Ok(())
}

#[tokio::test]
async fn harness_reports_its_target() -> Result<()> {
    // Makes the target visible in the test output of a run against Apache.
    let server = ZkServer::start()?;
    let srvr = four_letter_word(server.socket_addr(), "srvr")?;
    match server.target() {
        Target::Apache => assert!(srvr.starts_with("Zookeeper version: 3.8"), "{srvr}"),
        Target::Ours => assert!(srvr.starts_with("Zookeeper version: "), "{srvr}"),
    }
    Ok(())
}

// -- more wire details -------------------------------------------------------------------

async fn sorted_children(c: &mut Raw, path: &str) -> Result<(Vec<String>, zk_proto::data::Stat)> {
    let r = c
        .call(Request::GetChildren2(GetChildrenRequest {
            path: path.into(),
            watch: false,
        }))
        .await?;
    match r.body {
        Response::GetChildren2(mut g) => {
            g.children.sort();
            Ok((g.children, g.stat))
        }
        _ => anyhow::bail!("getChildren2 {path}: {:?}", r.header),
    }
}

#[tokio::test]
async fn fresh_tree_and_special_nodes() -> Result<()> {
    let server = ZkServer::start()?;
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    let (root, st) = sorted_children(&mut c, "/").await?;
    assert_eq!(root, ["zookeeper"]);
    assert_eq!(
        (st.czxid, st.mzxid, st.version, st.cversion, st.num_children),
        (0, 0, 0, -1, 1),
        "reported cversion = 2 * stored - numChildren; /zookeeper did not bump the root's"
    );
    assert_eq!((st.ephemeral_owner, st.data_length, st.aversion), (0, 0, 0));
    let (zk, _) = sorted_children(&mut c, "/zookeeper").await?;
    assert_eq!(zk, ["config", "quota"]);
    let r = c
        .call(Request::GetAllChildrenNumber(GetAllChildrenNumberRequest {
            path: "/".into(),
        }))
        .await?;
    assert!(
        matches!(&r.body, Response::GetAllChildrenNumber(n) if n.total_number == 3),
        "{r:?}"
    );
    let mntr = four_letter_word(server.socket_addr(), "mntr")?;
    // ZooKeeper counts the root twice (it is stored under "" and "/").
    assert!(mntr.contains("zk_znode_count\t5\n"), "{mntr}");
    let (d, _) = c
        .get_data("/zookeeper/quota", false)
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(d.as_deref().unwrap_or_default(), b"");
    // The special nodes cannot be deleted, but may get children.
    assert_eq!(c.delete("/zookeeper/quota", -1).await?, BAD_ARGUMENTS);
    assert!(c.create("/zookeeper/mine", None, PERSISTENT).await?.is_ok());
    Ok(())
}

#[tokio::test]
async fn reply_zxids() -> Result<()> {
    let server = ZkServer::start()?;
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    let r = c
        .call(Request::Create(CreateRequest {
            path: "/z".into(),
            data: None,
            acl: Acl::open_unsafe(),
            flags: 0,
        }))
        .await?;
    assert!(
        matches!(&r.body, Response::Create(cr) if cr.path == "/z"),
        "{r:?}"
    );
    let z1 = r.header.zxid;
    // A failed write is an error txn: it takes the next zxid.
    let r = c
        .call(Request::Create(CreateRequest {
            path: "/z".into(),
            data: None,
            acl: Acl::open_unsafe(),
            flags: 0,
        }))
        .await?;
    assert_eq!((r.header.err, r.header.zxid), (NODE_EXISTS, z1 + 1));
    // Reads and pings carry the last processed zxid.
    let r = c
        .call(Request::GetData(GetDataRequest {
            path: "/z".into(),
            watch: false,
        }))
        .await?;
    assert_eq!(r.header.zxid, z1 + 1);
    let r = c.call(Request::Ping).await?;
    assert_eq!((r.header.xid, r.header.zxid), (-2, z1 + 1));
    let r = c
        .call(Request::GetData(GetDataRequest {
            path: "/nope".into(),
            watch: false,
        }))
        .await?;
    assert_eq!((r.header.err, r.header.zxid), (NO_NODE, z1 + 1));
    // Auth replies carry zxid 0.
    let r = c
        .call(Request::Auth(zk_proto::jute::AuthPacket {
            auth_type: 0,
            scheme: "digest".into(),
            auth: Bytes::from_static(b"u:p"),
        }))
        .await?;
    assert_eq!((r.header.xid, r.header.zxid, r.header.err), (-4, 0, 0));
    // A session's create and close take zxids too.
    let c2 = Raw::connect(server.socket_addr(), 10_000).await?;
    drop(c2);
    let r = c.call(Request::Ping).await?;
    assert_eq!(r.header.zxid, z1 + 2);
    Ok(())
}

#[tokio::test]
async fn session_timeout_negotiation() -> Result<()> {
    let server = ZkServer::start()?;
    // tickTime=2000: min 2 ticks, max 20 ticks.
    let c = Raw::connect(server.socket_addr(), 1).await?;
    assert_eq!(c.timeout_ms, 4_000);
    let c = Raw::connect(server.socket_addr(), 1_000_000).await?;
    assert_eq!(c.timeout_ms, 40_000);
    let c = Raw::connect(server.socket_addr(), 12_345).await?;
    assert_eq!(c.timeout_ms, 12_345);
    assert_eq!(c.passwd.len(), 16);
    Ok(())
}

#[tokio::test]
async fn acl_is_checked_before_existence_and_version() -> Result<()> {
    let server = ZkServer::start()?;
    let mut owner = Raw::connect(server.socket_addr(), 10_000).await?;
    let mut other = Raw::connect(server.socket_addr(), 10_000).await?;
    owner
        .create_acl("/ro", Some(b"r"), Acl::read_unsafe(), PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(other.delete("/ro/missing", -1).await?, NO_AUTH);
    assert_eq!(
        other.set_data("/ro", None, 99).await?.map(|_| ()),
        Err(NO_AUTH)
    );
    assert_eq!(other.create("/ro/x", None, PERSISTENT).await?, Err(NO_AUTH));
    assert_eq!(
        other.create("/ro/x/y", None, PERSISTENT).await?,
        Err(NO_NODE)
    );

    assert_eq!(owner.auth("digest", b"alice:secret").await?, 0);
    owner
        .create_acl("/secret", Some(b"s"), Acl::creator_all(), PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    owner
        .create("/secret/child", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    let r = other
        .call(Request::GetChildren(GetChildrenRequest {
            path: "/secret".into(),
            watch: false,
        }))
        .await?;
    assert_eq!(r.header.err, NO_AUTH);
    let r = other
        .call(Request::GetAllChildrenNumber(GetAllChildrenNumberRequest {
            path: "/secret".into(),
        }))
        .await?;
    assert_eq!(r.header.err, NO_AUTH);
    let r = other
        .call(Request::GetAcl(GetAclRequest {
            path: "/secret".into(),
        }))
        .await?;
    assert_eq!(r.header.err, NO_AUTH, "getACL needs READ or ADMIN");
    // The child has an open ACL: reachable although its parent is not.
    assert!(other.get_data("/secret/child", false).await?.is_ok());
    assert_eq!(other.delete("/secret/child", -1).await?, NO_AUTH);
    // multi: the ACL failure is the member's error.
    let r = other
        .call(Request::Multi(vec![
            create_op("/ok-in-multi"),
            MultiOp::SetData(SetDataRequest {
                path: "/ro".into(),
                data: None,
                version: -1,
            }),
        ]))
        .await?;
    let Response::Multi(results) = &r.body else {
        anyhow::bail!("multi: {r:?}")
    };
    assert_eq!(multi_errors(results), [0, NO_AUTH]);
    Ok(())
}

#[tokio::test]
async fn set_watches_after_reconnect_fire_for_missed_changes() -> Result<()> {
    let server = ZkServer::start()?;
    let mut writer = Raw::connect(server.socket_addr(), 10_000).await?;
    writer
        .create("/sw", Some(b"0"), PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    writer
        .create("/gone", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    writer
        .create("/same", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    let seen = writer.last_zxid;
    writer
        .set_data("/sw", Some(b"1"), -1)
        .await?
        .map_err(anyhow::Error::msg)?;
    writer
        .create("/sw/c", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(writer.delete("/gone", -1).await?, 0);
    writer
        .create("/new", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;

    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    let r = c
        .call(Request::SetWatches(zk_proto::jute::SetWatches {
            relative_zxid: seen,
            data_watches: vec!["/sw".into(), "/gone".into(), "/same".into()],
            exist_watches: vec!["/new".into(), "/none".into()],
            child_watches: vec!["/sw".into(), "/same".into()],
        }))
        .await?;
    assert_eq!((r.header.xid, r.header.err), (-8, 0));
    let got: Vec<_> = c
        .events
        .drain(..)
        .map(|(_, e)| (e.event_type, e.path))
        .collect();
    assert_eq!(
        got,
        [
            (EventType::NodeDataChanged.code(), "/sw".to_owned()),
            (EventType::NodeDeleted.code(), "/gone".to_owned()),
            (EventType::NodeCreated.code(), "/new".to_owned()),
            (EventType::NodeChildrenChanged.code(), "/sw".to_owned()),
        ]
    );
    // The watches that did not fire are set.
    writer
        .create("/none", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    writer
        .set_data("/same", Some(b"x"), -1)
        .await?
        .map_err(anyhow::Error::msg)?;
    writer
        .create("/same/c", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    c.ping().await?;
    let got: Vec<_> = c
        .events
        .drain(..)
        .map(|(_, e)| (e.event_type, e.path))
        .collect();
    assert_eq!(
        got,
        [
            (EventType::NodeCreated.code(), "/none".to_owned()),
            (EventType::NodeDataChanged.code(), "/same".to_owned()),
            (EventType::NodeChildrenChanged.code(), "/same".to_owned()),
        ]
    );
    // Java's NIO client renumbers setWatches with an ordinary xid: the reply echoes it.
    let mut frame = bytes::BytesMut::new();
    zk_proto::jute::Record::encode(
        &zk_proto::jute::RequestHeader { xid: 77, op: 101 },
        &mut frame,
    );
    zk_proto::jute::Record::encode(
        &zk_proto::jute::SetWatches {
            relative_zxid: c.last_zxid,
            data_watches: vec!["/sw".into()],
            exist_watches: vec![],
            child_watches: vec![],
        },
        &mut frame,
    );
    raw::write_frame(c.stream(), &frame).await?;
    let mut reply = raw::read_frame(c.stream())
        .await?
        .context("no setWatches reply")?;
    let h = <zk_proto::jute::ReplyHeader as zk_proto::jute::Record>::decode(&mut reply)?;
    assert_eq!((h.xid, h.err), (77, 0));
    Ok(())
}

#[tokio::test]
async fn unknown_op_code() -> Result<()> {
    let server = ZkServer::start()?;
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    c.create("/u", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    let mut frame = Vec::new();
    frame.extend_from_slice(&77i32.to_be_bytes());
    frame.extend_from_slice(&999i32.to_be_bytes());
    raw::write_frame(c.stream(), &frame).await?;
    let mut reply = raw::read_frame(c.stream())
        .await?
        .context("closed after an unknown op")?;
    let h = <zk_proto::jute::ReplyHeader as zk_proto::jute::Record>::decode(&mut reply)?;
    // Unimplemented (zxid -1), then ZooKeeper closes the connection.
    assert_eq!((h.xid, h.zxid, h.err), (77, -1, UNIMPLEMENTED));
    assert_eq!(raw::read_frame(c.stream()).await?, None);
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    assert!(c.exists("/u", false).await?.is_ok());
    Ok(())
}

#[tokio::test]
async fn multi_member_errors() -> Result<()> {
    let server = ZkServer::start()?;
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    c.create("/mm", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    c.create("/mm/full", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    c.create("/mm/full/c", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    let eph = |path: &str| {
        MultiOp::Create(CreateRequest {
            path: path.into(),
            data: None,
            acl: Acl::open_unsafe(),
            flags: EPHEMERAL,
        })
    };
    let cases: Vec<(Vec<MultiOp>, Vec<i32>)> = vec![
        (
            vec![eph("/mm/e"), create_op("/mm/e/c")],
            vec![0, NO_CHILDREN_FOR_EPHEMERALS],
        ),
        (
            vec![MultiOp::Delete(DeleteRequest {
                path: "/mm/full".into(),
                version: -1,
            })],
            vec![NOT_EMPTY],
        ),
        (
            vec![create_op("/mm/x"), create_op("/mm/x")],
            vec![0, NODE_EXISTS],
        ),
        (
            vec![create_op("/mm/bad/"), create_op("/mm/y")],
            vec![NO_NODE, RUNTIME_INCONSISTENCY],
        ),
        (
            vec![MultiOp::Delete(DeleteRequest {
                path: "/zookeeper".into(),
                version: -1,
            })],
            vec![BAD_ARGUMENTS],
        ),
        (
            vec![
                MultiOp::Check(CheckVersionRequest {
                    path: "/nope".into(),
                    version: 0,
                }),
                create_op("/mm/z"),
            ],
            vec![NO_NODE, RUNTIME_INCONSISTENCY],
        ),
    ];
    for (ops, want) in cases {
        let r = c.call(Request::Multi(ops.clone())).await?;
        let Response::Multi(results) = &r.body else {
            anyhow::bail!("multi {ops:?}: {r:?}")
        };
        assert_eq!(multi_errors(results), want, "{ops:?}");
    }
    let r = c
        .call(Request::GetChildren(GetChildrenRequest {
            path: "/mm".into(),
            watch: false,
        }))
        .await?;
    assert!(
        matches!(&r.body, Response::GetChildren(g) if g.children == ["full"]),
        "{r:?}"
    );
    // Create then delete in one multi, and the same names again.
    let r = c
        .call(Request::Multi(vec![
            create_op("/mm/t"),
            MultiOp::Delete(DeleteRequest {
                path: "/mm/t".into(),
                version: 0,
            }),
            create_op("/mm/t"),
            MultiOp::SetData(SetDataRequest {
                path: "/mm/t".into(),
                data: None,
                version: 0,
            }),
        ]))
        .await?;
    let Response::Multi(results) = &r.body else {
        anyhow::bail!("multi: {r:?}")
    };
    assert_eq!(multi_errors(results), [0, 0, 0, 0]);
    let st = c
        .exists("/mm/t", false)
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(
        (st.version, st.czxid, st.mzxid),
        (1, r.header.zxid, r.header.zxid)
    );
    let st = c.exists("/mm", false).await?.map_err(anyhow::Error::msg)?;
    assert_eq!((st.cversion, st.num_children), (4, 2));
    Ok(())
}

#[tokio::test]
async fn other_four_letter_words() -> Result<()> {
    let server = ZkServer::start()?;
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    c.create("/fl", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    assert!(c.get_data("/fl", true).await?.is_ok());
    let addr = server.socket_addr();
    let stat = four_letter_word(addr, "stat")?;
    for part in [
        "Zookeeper version: ",
        "Clients:\n",
        "Latency min/avg/max: ",
        "Mode: standalone\n",
        "Node count: 6\n",
    ] {
        assert!(stat.contains(part), "stat lacks {part:?}:\n{stat}");
    }
    let conf = four_letter_word(addr, "conf")?;
    assert!(
        conf.contains(&format!("clientPort={}\n", server.port)),
        "{conf}"
    );
    assert!(conf.contains("tickTime=2000\n"), "{conf}");
    assert!(conf.contains("maxSessionTimeout=40000\n"), "{conf}");
    let envi = four_letter_word(addr, "envi")?;
    assert!(envi.starts_with("Environment:\n"), "{envi}");
    assert!(envi.contains("zookeeper.version="), "{envi}");
    let cons = four_letter_word(addr, "cons")?;
    assert!(cons.contains(" /127.0.0.1:"), "{cons}");
    let wchs = four_letter_word(addr, "wchs")?;
    assert!(
        wchs.starts_with("1 connections watching 1 paths\nTotal watches:1\n"),
        "{wchs}"
    );
    let dirs = four_letter_word(addr, "dirs")?;
    assert!(
        dirs.contains("datadir_size: ") && dirs.contains("logdir_size: "),
        "{dirs}"
    );
    assert_eq!(four_letter_word(addr, "srst")?, "Server stats reset.\n");
    assert_eq!(four_letter_word(addr, "crst")?, "Connection stats reset.\n");
    Ok(())
}

#[tokio::test]
async fn frame_size_limit() -> Result<()> {
    use std::io::ErrorKind;
    use tokio::io::AsyncWriteExt;
    let server = ZkServer::start()?;
    let mut good = Raw::connect(server.socket_addr(), 10_000).await?;
    good.create("/big", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    // A setData of /big whose frame is `len` bytes long. jute.maxbuffer (0xfffff by
    // default) bounds the length prefix.
    let frame_of = |len: usize| {
        let header_and_fields = 4 + 4 + (4 + 4) + 4 + 4;
        let data_len = len - header_and_fields;
        let mut f = Vec::with_capacity(len + 4);
        f.extend_from_slice(&(len as i32).to_be_bytes());
        f.extend_from_slice(&9i32.to_be_bytes()); // xid
        f.extend_from_slice(&5i32.to_be_bytes()); // setData
        f.extend_from_slice(&4i32.to_be_bytes());
        f.extend_from_slice(b"/big");
        f.extend_from_slice(&(data_len as i32).to_be_bytes());
        f.extend(std::iter::repeat_n(b'x', data_len));
        f.extend_from_slice(&(-1i32).to_be_bytes()); // version
        f
    };
    let mut results = Vec::new();
    for len in [
        1_000_000usize,
        0xfffff,
        0xfffff + 1,
        0xfffff + 1024,
        0xfffff + 1025,
        2_000_000,
    ] {
        let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
        // The server may close while the frame is still being written.
        let written = c.stream().write_all(&frame_of(len)).await;
        let outcome = match written {
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                None
            }
            Err(e) => return Err(e.into()),
            Ok(()) => raw::read_frame(c.stream()).await?,
        };
        let outcome = match outcome {
            None => "closed".to_owned(),
            Some(mut reply) => {
                let h =
                    <zk_proto::jute::ReplyHeader as zk_proto::jute::Record>::decode(&mut reply)?;
                format!("err {}", h.err)
            }
        };
        results.push((len, outcome));
    }
    let want = [
        (1_000_000, "err 0"),
        (0xfffff, "err 0"),
        (0xfffff + 1, "closed"),
        (0xfffff + 1024, "closed"),
        (0xfffff + 1025, "closed"),
        (2_000_000, "closed"),
    ];
    let got: Vec<(usize, &str)> = results.iter().map(|(l, o)| (*l, o.as_str())).collect();
    assert_eq!(got, want);
    assert!(good.exists("/big", false).await?.is_ok());
    Ok(())
}

#[tokio::test]
async fn idle_session_expires_and_pings_keep_one_alive() -> Result<()> {
    let server = ZkServer::start_with(&["tickTime=100", "minSessionTimeout=200"])?;
    let mut idle = Raw::connect(server.socket_addr(), 300).await?;
    // The busy one asks for 2 s (the most tickTime=100 allows), so that a slow machine
    // does not expire it between two pings.
    let mut busy = Raw::connect(server.socket_addr(), 2_000).await?;
    idle.create("/idle", None, EPHEMERAL)
        .await?
        .map_err(anyhow::Error::msg)?;
    busy.create("/busy", None, EPHEMERAL)
        .await?
        .map_err(anyhow::Error::msg)?;
    // The busy client pings well within its timeout until the idle one is gone.
    let deadline = tokio::time::Instant::now() + BACKGROUND;
    loop {
        busy.ping().await?;
        if busy.exists("/idle", false).await?.is_err() {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the idle session never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(busy.exists("/busy", false).await?.is_ok());
    // What the expired session's connection gets: nothing, then the close.
    let mut frames = Vec::new();
    while let Some(mut f) = raw::read_frame(idle.stream()).await? {
        let reply = zk_proto::jute::ReplyPacket::decode(&mut f, |_| None)?;
        frames.push(reply);
        anyhow::ensure!(frames.len() < 10, "too many frames: {frames:?}");
    }
    assert_eq!(frames, []);
    Ok(())
}

#[tokio::test]
async fn sequential_names_collide_with_existing_nodes() -> Result<()> {
    let server = ZkServer::start()?;
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    c.create("/s", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    let (p, _) = c
        .create("/s/x-", None, PERSISTENT_SEQUENTIAL)
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(p, "/s/x-0000000000");
    // Failed creates leave the parent's cversion alone.
    assert_eq!(
        c.create("/s/x-0000000000", None, PERSISTENT).await?,
        Err(NODE_EXISTS)
    );
    assert_eq!(
        c.create("/s/missing/y", None, PERSISTENT_SEQUENTIAL)
            .await?,
        Err(NO_NODE)
    );
    // A node named like the next sequence number makes the sequential create fail.
    c.create("/s/x-0000000002", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(
        c.create("/s/x-", None, PERSISTENT_SEQUENTIAL).await?,
        Err(NODE_EXISTS)
    );
    // It keeps failing (a failed create does not move the cversion) until another child
    // change moves the counter on.
    assert_eq!(
        c.create("/s/x-", None, PERSISTENT_SEQUENTIAL).await?,
        Err(NODE_EXISTS)
    );
    c.create("/s/other", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    let (p, _) = c
        .create("/s/x-", None, PERSISTENT_SEQUENTIAL)
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(p, "/s/x-0000000003");
    Ok(())
}

#[tokio::test]
async fn one_event_per_connection_and_change() -> Result<()> {
    let server = ZkServer::start()?;
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    let mut w = Raw::connect(server.socket_addr(), 10_000).await?;
    c.create("/one", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    // getData and exists watches on the same node: one NodeDataChanged.
    assert!(w.get_data("/one", true).await?.is_ok());
    assert!(w.exists("/one", true).await?.is_ok());
    assert!(w.get_data("/one", true).await?.is_ok());
    c.set_data("/one", Some(b"1"), -1)
        .await?
        .map_err(anyhow::Error::msg)?;
    // A one-shot watch fires once.
    c.set_data("/one", Some(b"2"), -1)
        .await?
        .map_err(anyhow::Error::msg)?;
    w.ping().await?;
    let got: Vec<_> = w
        .events
        .drain(..)
        .map(|(_, e)| (e.event_type, e.path))
        .collect();
    assert_eq!(
        got,
        [(EventType::NodeDataChanged.code(), "/one".to_owned())]
    );
    // Data and child watches on a node that is deleted: one NodeDeleted.
    assert!(w.get_data("/one", true).await?.is_ok());
    let r = w
        .call(Request::GetChildren(GetChildrenRequest {
            path: "/one".into(),
            watch: true,
        }))
        .await?;
    assert_eq!(r.header.err, 0);
    assert_eq!(c.delete("/one", -1).await?, 0);
    w.ping().await?;
    let got: Vec<_> = w
        .events
        .drain(..)
        .map(|(_, e)| (e.event_type, e.path))
        .collect();
    assert_eq!(got, [(EventType::NodeDeleted.code(), "/one".to_owned())]);
    // An exists watch on a missing node sees the create only.
    assert_eq!(w.exists("/one", true).await?.map(|_| ()), Err(NO_NODE));
    c.create("/one", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(c.delete("/one", -1).await?, 0);
    w.ping().await?;
    let got: Vec<_> = w
        .events
        .drain(..)
        .map(|(_, e)| (e.event_type, e.path))
        .collect();
    assert_eq!(got, [(EventType::NodeCreated.code(), "/one".to_owned())]);
    Ok(())
}

#[tokio::test]
async fn acl_forms_accepted_and_refused() -> Result<()> {
    let server = ZkServer::start()?;
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    assert_eq!(c.auth("digest", b"alice:a").await?, 0);
    assert_eq!(c.auth("digest", b"bob:b").await?, 0);
    c.create_acl("/two", None, Acl::creator_all(), PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    let r = c
        .call(Request::GetAcl(GetAclRequest {
            path: "/two".into(),
        }))
        .await?;
    let Response::GetAcl(ga) = r.body else {
        anyhow::bail!("getACL {:?}", r.header)
    };
    let mut users: Vec<String> = ga
        .acl
        .iter()
        .map(|a| format!("{}:{}", a.id.scheme, a.id.id))
        .collect();
    users.sort();
    assert_eq!(users.len(), 2, "{users:?}");
    assert!(
        users[0].starts_with("digest:alice:") && users[1].starts_with("digest:bob:"),
        "{users:?}"
    );

    let acl = |perms: i32, scheme: &str, id: &str| {
        vec![Acl {
            perms,
            id: Id::new(scheme, id),
        }]
    };
    let cases = [
        ("/a1", acl(perms::ALL, "ip", "127.0.0.0/8"), 0),
        ("/a2", acl(perms::ALL, "ip", "127.0.0.1/33"), INVALID_ACL),
        ("/a3", acl(perms::ALL, "digest", "alice"), INVALID_ACL),
        ("/a4", acl(perms::ALL, "digest", "alice:anything"), 0),
        ("/a5", acl(perms::ALL, "foo", "bar"), INVALID_ACL),
        ("/a6", acl(0, "world", "anyone"), 0),
        ("/a7", acl(perms::ALL, "world", "someone"), INVALID_ACL),
        ("/a8", acl(perms::ALL, "auth", "ignored"), 0),
        ("/a9", acl(perms::ALL | 32, "world", "anyone"), 0),
    ];
    let mut got = Vec::new();
    for (path, acl, _) in &cases {
        got.push((
            *path,
            c.create_acl(path, None, acl.clone(), PERSISTENT)
                .await?
                .map(|_| ())
                .err()
                .unwrap_or(0),
        ));
    }
    let want: Vec<_> = cases.iter().map(|(p, _, e)| (*p, *e)).collect();
    assert_eq!(got, want);
    // /a1 (127/8) is readable from here; /a6 (no permissions) is not.
    assert!(c.get_data("/a1", false).await?.is_ok());
    assert_eq!(c.get_data("/a6", false).await?.map(|_| ()), Err(NO_AUTH));
    Ok(())
}

#[tokio::test]
async fn create_op_and_mode_combinations() -> Result<()> {
    let server = ZkServer::start_with(&[
        "extendedTypesEnabled=true",
        "znode.container.checkIntervalMs=100",
    ])?;
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    let req = |path: &str, flags: i32| CreateRequest {
        path: path.into(),
        data: None,
        acl: Acl::open_unsafe(),
        flags,
    };
    let ttl = |path: &str, flags: i32, ttl: i64| zk_proto::jute::CreateTtlRequest {
        path: path.into(),
        data: None,
        acl: Acl::open_unsafe(),
        flags,
        ttl,
    };
    // (request, error, reported ephemeralOwner of a create2-style reply)
    let cases: Vec<(Request, i32, Option<i64>)> = vec![
        (Request::Create2(req("/c1", 4)), 0, Some(0)),
        (Request::Create(req("/c2", 4)), 0, None),
        (Request::CreateContainer(req("/c3", 0)), 0, Some(0)),
        (Request::CreateContainer(req("/c4", 1)), 0, Some(0)),
        (Request::Create2(req("/c5", 5)), BAD_ARGUMENTS, None),
        (Request::CreateTtl(ttl("/c6", 0, 1000)), BAD_ARGUMENTS, None),
        (Request::CreateTtl(ttl("/c7", 4, 1000)), BAD_ARGUMENTS, None),
        (
            Request::CreateTtl(ttl("/c8", 5, 1 << 41)),
            BAD_ARGUMENTS,
            None,
        ),
        (Request::Create2(req("/c9", 7)), BAD_ARGUMENTS, None),
        (Request::Create2(req("/c10", -1)), BAD_ARGUMENTS, None),
    ];
    let mut got = Vec::new();
    let mut want = Vec::new();
    for (r, err, owner) in cases {
        let path = r.path().unwrap_or_default().to_owned();
        let reply = c.call(r).await?;
        let reported = match &reply.body {
            Response::Create2(cr) => Some(cr.stat.ephemeral_owner),
            _ => None,
        };
        got.push((path.clone(), reply.header.err, reported));
        want.push((path, err, owner));
    }
    assert_eq!(got, want);
    // The container flag makes a container only with the createContainer op, which makes
    // one whatever the flags say.
    for p in ["/c1", "/c2", "/c3", "/c4"] {
        c.create(&format!("{p}/child"), None, PERSISTENT)
            .await?
            .map_err(anyhow::Error::msg)?;
        assert_eq!(c.delete(&format!("{p}/child"), -1).await?, 0);
    }
    wait_gone(&mut c, "/c3").await?;
    wait_gone(&mut c, "/c4").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        c.exists("/c1", false).await?.is_ok(),
        "create2 with flag 4 made a container"
    );
    assert!(
        c.exists("/c2", false).await?.is_ok(),
        "create with flag 4 made a container"
    );
    Ok(())
}

#[tokio::test]
async fn multi_with_container_and_ttl_members() -> Result<()> {
    let server = ZkServer::start_with(&["extendedTypesEnabled=true"])?;
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    let r = c
        .call(Request::Multi(vec![
            MultiOp::CreateContainer(CreateRequest {
                path: "/mc".into(),
                data: None,
                acl: Acl::open_unsafe(),
                flags: 4,
            }),
            MultiOp::CreateTtl(zk_proto::jute::CreateTtlRequest {
                path: "/mt".into(),
                data: None,
                acl: Acl::open_unsafe(),
                flags: PERSISTENT_WITH_TTL,
                ttl: 60_000,
            }),
        ]))
        .await?;
    let zxid = r.header.zxid;
    let Response::Multi(results) = &r.body else {
        anyhow::bail!("multi: {r:?}")
    };
    assert!(
        matches!(&results[..], [MultiResult::Create2(a), MultiResult::Create2(b)]
            if a.path == "/mc" && b.path == "/mt" && a.stat.czxid == zxid && b.stat.czxid == zxid
                && a.stat.ephemeral_owner == 0 && b.stat.ephemeral_owner == 0),
        "{results:?}"
    );
    // Without extended types a TTL member fails the multi.
    let server = ZkServer::start()?;
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    let r = c
        .call(Request::Multi(vec![
            create_op("/before"),
            MultiOp::CreateTtl(zk_proto::jute::CreateTtlRequest {
                path: "/mt".into(),
                data: None,
                acl: Acl::open_unsafe(),
                flags: PERSISTENT_WITH_TTL,
                ttl: 60_000,
            }),
        ]))
        .await?;
    let Response::Multi(results) = &r.body else {
        anyhow::bail!("multi: {r:?}")
    };
    assert_eq!(multi_errors(results), [0, UNIMPLEMENTED]);
    Ok(())
}

#[tokio::test]
async fn empty_path_reads_the_root() -> Result<()> {
    let server = ZkServer::start()?;
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    c.create("/x", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    // ZooKeeper's node map holds the root under "" too: reads of "" see the root.
    let st = c.exists("", false).await?.map_err(anyhow::Error::msg)?;
    assert_eq!(st.num_children, 2);
    let (d, st) = c.get_data("", true).await?.map_err(anyhow::Error::msg)?;
    assert_eq!((d, st.num_children), (Some(Bytes::new()), 2));
    let (children, _) = sorted_children(&mut c, "").await?;
    assert_eq!(children, ["x", "zookeeper"]);
    let r = c
        .call(Request::GetAllChildrenNumber(GetAllChildrenNumberRequest {
            path: "".into(),
        }))
        .await?;
    assert!(
        matches!(&r.body, Response::GetAllChildrenNumber(n) if n.total_number == 5),
        "{r:?}"
    );
    let r = c
        .call(Request::GetAllChildrenNumber(GetAllChildrenNumberRequest {
            path: "/".into(),
        }))
        .await?;
    assert!(
        matches!(&r.body, Response::GetAllChildrenNumber(n) if n.total_number == 4),
        "{r:?}"
    );
    // Writes refuse it.
    assert_eq!(c.create("", None, PERSISTENT).await?, Err(BAD_ARGUMENTS));
    assert_eq!(c.delete("", -1).await?, BAD_ARGUMENTS);
    assert_eq!(
        c.set_data("", Some(b"x"), -1).await?.map(|_| ()),
        Err(BAD_ARGUMENTS)
    );
    // The watch set through "" is on "", where no event fires.
    c.set_data("/", Some(b"root"), -1)
        .await?
        .map_err(anyhow::Error::msg)?;
    c.ping().await?;
    assert!(c.events.is_empty(), "{:?}", c.events);
    Ok(())
}

#[tokio::test]
async fn set_acl_fires_no_watch() -> Result<()> {
    let server = ZkServer::start()?;
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    let mut w = Raw::connect(server.socket_addr(), 10_000).await?;
    c.create("/x", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    assert!(w.get_data("/x", true).await?.is_ok());
    assert!(w.exists("/x", true).await?.is_ok());
    let r = c
        .call(Request::SetAcl(SetAclRequest {
            path: "/x".into(),
            acl: Acl::open_unsafe(),
            version: -1,
        }))
        .await?;
    assert_eq!(r.header.err, 0);
    w.ping().await?;
    assert!(w.events.is_empty(), "{:?}", w.events);
    c.set_data("/x", Some(b"1"), -1)
        .await?
        .map_err(anyhow::Error::msg)?;
    w.ping().await?;
    assert_eq!(w.events.len(), 1, "{:?}", w.events);
    Ok(())
}

/// In ZooKeeper 3.8.0 a persistent watch is an entry in both the data and the child watch
/// tables: checkWatches finds it as a data and as a child watch, and removeWatches(data)
/// removes only its data half (child events go on).
#[tokio::test]
async fn persistent_watch_is_a_data_and_a_child_watch() -> Result<()> {
    let server = ZkServer::start()?;
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    let mut w = Raw::connect(server.socket_addr(), 10_000).await?;
    c.create("/x", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    let add = |path: &str, mode: i32| {
        Request::AddWatch(AddWatchRequest {
            path: path.into(),
            mode,
        })
    };
    let check = |path: &str, t: i32| {
        Request::CheckWatches(CheckWatchesRequest {
            path: path.into(),
            watcher_type: t,
        })
    };
    let remove = |path: &str, t: i32| {
        Request::RemoveWatches(RemoveWatchesRequest {
            path: path.into(),
            watcher_type: t,
        })
    };
    assert_eq!(w.call(add("/x", 0)).await?.header.err, 0);
    let mut got = Vec::new();
    for t in [1, 2, 3] {
        got.push(w.call(check("/x", t)).await?.header.err);
    }
    got.push(w.call(remove("/x", 2)).await?.header.err);
    got.push(w.call(check("/x", 1)).await?.header.err);
    assert_eq!(got, [0, 0, 0, 0, 0]);
    c.set_data("/x", Some(b"1"), -1)
        .await?
        .map_err(anyhow::Error::msg)?;
    c.create("/x/c", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    w.ping().await?;
    let ev: Vec<_> = w
        .events
        .drain(..)
        .map(|(_, e)| (e.event_type, e.path))
        .collect();
    assert_eq!(
        ev,
        [(EventType::NodeChildrenChanged.code(), "/x".to_owned())]
    );
    Ok(())
}

#[tokio::test]
async fn parent_stat_after_session_close_and_multi_events() -> Result<()> {
    let server = ZkServer::start()?;
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    let mut w = Raw::connect(server.socket_addr(), 10_000).await?;
    c.create("/p", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    c.create("/p/keep", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    let mut e = Raw::connect(server.socket_addr(), 10_000).await?;
    e.create("/p/e1", None, EPHEMERAL)
        .await?
        .map_err(anyhow::Error::msg)?;
    e.create("/p/e2", None, EPHEMERAL_SEQUENTIAL)
        .await?
        .map_err(anyhow::Error::msg)?;
    let before = c.exists("/p", false).await?.map_err(anyhow::Error::msg)?;
    let r = w
        .call(Request::GetChildren(GetChildrenRequest {
            path: "/p".into(),
            watch: true,
        }))
        .await?;
    assert_eq!(r.header.err, 0);
    assert!(w.exists("/p/e1", true).await?.is_ok());
    assert_eq!(e.close().await?, 0);
    let after = c.exists("/p", false).await?.map_err(anyhow::Error::msg)?;
    let close_zxid = c.last_zxid;
    assert_eq!((before.cversion, before.num_children), (3, 3));
    assert_eq!(
        (after.cversion, after.num_children, after.pzxid),
        (5, 1, close_zxid)
    );
    // Which ephemeral goes first is the order of a Java HashSet; both events come.
    w.ping().await?;
    let mut got: Vec<_> = w
        .events
        .drain(..)
        .map(|(_, e)| (e.event_type, e.path))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            (EventType::NodeDeleted.code(), "/p/e1".to_owned()),
            (EventType::NodeChildrenChanged.code(), "/p".to_owned()),
        ]
    );
    // One delete: the node's NodeDeleted comes before its parent's NodeChildrenChanged.
    c.create("/p/d", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    let r = w
        .call(Request::GetChildren(GetChildrenRequest {
            path: "/p".into(),
            watch: true,
        }))
        .await?;
    assert_eq!(r.header.err, 0);
    assert!(w.exists("/p/d", true).await?.is_ok());
    assert_eq!(c.delete("/p/d", -1).await?, 0);
    w.ping().await?;
    let got: Vec<_> = w
        .events
        .drain(..)
        .map(|(_, e)| (e.event_type, e.path))
        .collect();
    assert_eq!(
        got,
        [
            (EventType::NodeDeleted.code(), "/p/d".to_owned()),
            (EventType::NodeChildrenChanged.code(), "/p".to_owned()),
        ]
    );

    // A multi fires its members' events in order, each watch once.
    c.create("/p/a", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    assert!(w.get_data("/p/a", true).await?.is_ok());
    assert!(w.get_data("/p/keep", true).await?.is_ok());
    let r = w
        .call(Request::GetChildren(GetChildrenRequest {
            path: "/p".into(),
            watch: true,
        }))
        .await?;
    assert_eq!(r.header.err, 0);
    assert_eq!(w.exists("/p/b", true).await?.map(|_| ()), Err(NO_NODE));
    let r = c
        .call(Request::Multi(vec![
            MultiOp::SetData(SetDataRequest {
                path: "/p/a".into(),
                data: None,
                version: -1,
            }),
            create_op("/p/b"),
            MultiOp::Delete(DeleteRequest {
                path: "/p/keep".into(),
                version: -1,
            }),
        ]))
        .await?;
    assert_eq!(r.header.err, 0);
    w.ping().await?;
    let got: Vec<_> = w
        .events
        .drain(..)
        .map(|(_, e)| (e.event_type, e.path))
        .collect();
    assert_eq!(
        got,
        [
            (EventType::NodeDataChanged.code(), "/p/a".to_owned()),
            (EventType::NodeCreated.code(), "/p/b".to_owned()),
            (EventType::NodeChildrenChanged.code(), "/p".to_owned()),
            (EventType::NodeDeleted.code(), "/p/keep".to_owned()),
        ]
    );
    Ok(())
}

#[tokio::test]
async fn old_client_handshake_and_set_watches2() -> Result<()> {
    let server = ZkServer::start()?;
    // A handshake without the read-only byte (clients before 3.4) gets none back.
    let mut req = raw::connect_request(10_000, 0, Bytes::from_static(&[0; 16]), 0);
    req.read_only = None;
    let (_s, resp) = raw::handshake(server.socket_addr(), &req).await?;
    let resp = resp.context("no answer to an old client's handshake")?;
    assert!(resp.session_id != 0);
    assert_eq!(resp.read_only, None);
    let req = raw::connect_request(10_000, 0, Bytes::from_static(&[0; 16]), 0);
    let (_s, resp) = raw::handshake(server.socket_addr(), &req).await?;
    assert_eq!(resp.context("no answer")?.read_only, Some(false));

    // setWatches2: persistent watches come back without firing for missed changes.
    let mut writer = Raw::connect(server.socket_addr(), 10_000).await?;
    writer
        .create("/pw", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    writer
        .create("/rw", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    let seen = writer.last_zxid;
    writer
        .set_data("/pw", Some(b"1"), -1)
        .await?
        .map_err(anyhow::Error::msg)?;
    writer
        .create("/rw/c", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    let r = c
        .call(Request::SetWatches2(zk_proto::jute::SetWatches2 {
            relative_zxid: seen,
            data_watches: vec![],
            exist_watches: vec![],
            child_watches: vec![],
            persistent_watches: vec!["/pw".into()],
            persistent_recursive_watches: vec!["/rw".into()],
        }))
        .await?;
    assert_eq!((r.header.xid, r.header.err), (-8, 0));
    assert!(c.events.is_empty(), "{:?}", c.events);
    writer
        .set_data("/pw", Some(b"2"), -1)
        .await?
        .map_err(anyhow::Error::msg)?;
    writer
        .set_data("/rw/c", Some(b"2"), -1)
        .await?
        .map_err(anyhow::Error::msg)?;
    writer
        .set_data("/pw", Some(b"3"), -1)
        .await?
        .map_err(anyhow::Error::msg)?;
    c.ping().await?;
    let got: Vec<_> = c
        .events
        .drain(..)
        .map(|(_, e)| (e.event_type, e.path))
        .collect();
    let changed = EventType::NodeDataChanged.code();
    assert_eq!(
        got,
        [
            (changed, "/pw".to_owned()),
            (changed, "/rw/c".to_owned()),
            (changed, "/pw".to_owned())
        ]
    );
    Ok(())
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() -> Result<()> {
    use bytes::BytesMut;
    use tokio::io::AsyncWriteExt;
    use zk_proto::data::OpCode;
    use zk_proto::jute::{ReplyPacket, RequestPacket};
    let server = ZkServer::start()?;
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    c.create("/pipe", None, PERSISTENT)
        .await?
        .map_err(anyhow::Error::msg)?;
    // 300 requests in one write: a create, a read of it, a failing create, ...
    let mut wire = BytesMut::new();
    let mut ops = Vec::new();
    for i in 0..100 {
        let path = format!("/pipe/n{i}");
        for request in [
            Request::Create(CreateRequest {
                path: path.clone(),
                data: None,
                acl: Acl::open_unsafe(),
                flags: 0,
            }),
            Request::GetData(GetDataRequest {
                path: path.clone(),
                watch: false,
            }),
            Request::Create(CreateRequest {
                path,
                data: None,
                acl: Acl::open_unsafe(),
                flags: 0,
            }),
        ] {
            let xid = 1000 + ops.len() as i32;
            ops.push(request.op_code());
            let packet = RequestPacket::new(xid, request);
            let mut body = BytesMut::new();
            packet.encode(&mut body);
            wire.extend_from_slice(&(body.len() as i32).to_be_bytes());
            wire.extend_from_slice(&body);
        }
    }
    c.stream().write_all(&wire).await?;
    let mut got = Vec::new();
    for _ in 0..ops.len() {
        let mut frame = raw::read_frame(c.stream())
            .await?
            .context("closed mid-pipeline")?;
        let reply = ReplyPacket::decode(&mut frame, |x| {
            usize::try_from(x - 1000)
                .ok()
                .and_then(|i| ops.get(i))
                .copied()
        })?;
        got.push((reply.header.xid, reply.header.err));
    }
    let want: Vec<(i32, i32)> = (0..ops.len())
        .map(|i| {
            let err = match ops[i] {
                OpCode::Create if i % 3 == 2 => NODE_EXISTS,
                _ => 0,
            };
            (1000 + i as i32, err)
        })
        .collect();
    assert_eq!(got, want);
    Ok(())
}

#[tokio::test]
async fn max_client_connections_per_address() -> Result<()> {
    let server = ZkServer::start_with(&["maxClientCnxns=2"])?;
    let mut a = Raw::connect(server.socket_addr(), 10_000).await?;
    let b = Raw::connect(server.socket_addr(), 10_000).await?;
    // The third connection from 127.0.0.1 is closed without an answer.
    let req = raw::connect_request(10_000, 0, Bytes::from_static(&[0; 16]), 0);
    let third = raw::handshake(server.socket_addr(), &req).await;
    assert!(
        matches!(&third, Ok((_, None)) | Err(_)),
        "answered: {:?}",
        third.map(|(_, r)| r)
    );
    assert!(a.exists("/", false).await?.is_ok());
    // Once one goes, a new one is let in.
    drop(b);
    let mut again = None;
    for _ in 0..100 {
        if let Ok(c) = Raw::connect(server.socket_addr(), 10_000).await {
            again = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut again = again.context("no connection accepted after one closed")?;
    assert!(again.exists("/", false).await?.is_ok());
    Ok(())
}

#[tokio::test]
async fn auth_variants_and_who_am_i() -> Result<()> {
    use zk_proto::jute::Record;
    let server = ZkServer::start()?;
    // (scheme, auth, error, whoAmI sorted: ZooKeeper keeps the ids in a hash set)
    let cases: [(&str, &[u8], i32, &[&str]); 8] = [
        ("ip", b"10.0.0.1", 0, &["ip=127.0.0.1"]),
        ("digest", b"alice", 0, &["digest=alice", "ip=127.0.0.1"]),
        ("digest", b"", 0, &["digest=", "ip=127.0.0.1"]),
        ("digest", b":pw", 0, &["digest=", "ip=127.0.0.1"]),
        ("world", b"anyone", AUTH_FAILED, &[]),
        ("super", b"x", AUTH_FAILED, &[]),
        ("sasl", b"x", AUTH_FAILED, &[]),
        ("DIGEST", b"a:b", AUTH_FAILED, &[]),
    ];
    // The auth reply carries the request's xid: clients other than Java's do not use -4.
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    let mut frame = bytes::BytesMut::new();
    zk_proto::jute::RequestHeader { xid: 55, op: 100 }.encode(&mut frame);
    zk_proto::jute::AuthPacket {
        auth_type: 0,
        scheme: "digest".into(),
        auth: Bytes::from_static(b"u:p"),
    }
    .encode(&mut frame);
    raw::write_frame(c.stream(), &frame).await?;
    let mut reply = raw::read_frame(c.stream())
        .await?
        .context("no auth reply")?;
    let h = <zk_proto::jute::ReplyHeader as zk_proto::jute::Record>::decode(&mut reply)?;
    assert_eq!((h.xid, h.zxid, h.err), (55, 0, 0));
    for (scheme, auth, want_err, want_who) in cases {
        let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
        let err = c.auth(scheme, auth).await?;
        assert_eq!(err, want_err, "{scheme}");
        if err != 0 {
            continue;
        }
        let r = c.call(Request::WhoAmI).await?;
        let Response::WhoAmI(w) = r.body else {
            anyhow::bail!("whoAmI: {:?}", r.header)
        };
        let mut who: Vec<String> = w
            .client_info
            .iter()
            .map(|i| format!("{}={}", i.auth_scheme, i.user))
            .collect();
        who.sort();
        assert_eq!(who, want_who, "{scheme}");
    }
    Ok(())
}

#[tokio::test]
async fn paths_with_nul() -> Result<()> {
    let server = ZkServer::start()?;
    let mut c = Raw::connect(server.socket_addr(), 10_000).await?;
    let p = "/a\u{0}b".to_owned();
    let reqs: Vec<(&str, Request)> = vec![
        (
            "exists",
            Request::Exists(zk_proto::jute::ExistsRequest {
                path: p.clone(),
                watch: false,
            }),
        ),
        (
            "getData",
            Request::GetData(GetDataRequest {
                path: p.clone(),
                watch: false,
            }),
        ),
        (
            "getChildren",
            Request::GetChildren(GetChildrenRequest {
                path: p.clone(),
                watch: false,
            }),
        ),
        ("getACL", Request::GetAcl(GetAclRequest { path: p.clone() })),
        ("sync", Request::Sync(SyncRequest { path: p.clone() })),
        (
            "setData",
            Request::SetData(SetDataRequest {
                path: p.clone(),
                data: None,
                version: -1,
            }),
        ),
        (
            "delete",
            Request::Delete(DeleteRequest {
                path: p.clone(),
                version: -1,
            }),
        ),
        (
            "addWatch",
            Request::AddWatch(AddWatchRequest {
                path: p.clone(),
                mode: 0,
            }),
        ),
        (
            "getAllChildrenNumber",
            Request::GetAllChildrenNumber(GetAllChildrenNumberRequest { path: p.clone() }),
        ),
        (
            "getEphemerals",
            Request::GetEphemerals(GetEphemeralsRequest {
                prefix_path: p.clone(),
            }),
        ),
        (
            "setACL",
            Request::SetAcl(SetAclRequest {
                path: p.clone(),
                acl: Acl::open_unsafe(),
                version: -1,
            }),
        ),
        (
            "checkWatches",
            Request::CheckWatches(CheckWatchesRequest {
                path: p.clone(),
                watcher_type: 3,
            }),
        ),
    ];
    let mut got = Vec::new();
    for (name, r) in reqs {
        got.push((name, c.call(r).await?.header.err));
    }
    // Only exists and the writes look for a NUL; the other reads just find no node, and
    // sync, addWatch, getEphemerals and checkWatches (of the watch just added) succeed.
    let want = [
        ("exists", BAD_ARGUMENTS),
        ("getData", NO_NODE),
        ("getChildren", NO_NODE),
        ("getACL", NO_NODE),
        ("sync", 0),
        ("setData", BAD_ARGUMENTS),
        ("delete", BAD_ARGUMENTS),
        ("addWatch", 0),
        ("getAllChildrenNumber", NO_NODE),
        ("getEphemerals", 0),
        ("setACL", BAD_ARGUMENTS),
        ("checkWatches", 0),
    ];
    assert_eq!(got, want);
    Ok(())
}

#[tokio::test]
async fn zookeeper_client_writes_and_errors() -> Result<()> {
    bounded(async move {
        let server = ZkServer::start_with(&["extendedTypesEnabled=true"])?;
        let zk = client(&server).await?;
        let (st, seq) = zk.create("/w", b"v", &open()).await?;
        assert_eq!((st.version, st.data_length, seq.into_i64()), (0, 1, -1));
        assert!(matches!(
            zk.create("/w", b"", &open()).await,
            Err(zk::Error::NodeExists)
        ));
        assert!(matches!(
            zk.create("/nope/x", b"", &open()).await,
            Err(zk::Error::NoNode)
        ));
        let seq_opts = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
        let (_, s1) = zk.create("/w/q-", b"", &seq_opts).await?;
        let (_, s2) = zk.create("/w/q-", b"", &seq_opts).await?;
        assert_eq!(
            (s1.into_i64(), s2.into_i64(), s2.to_string()),
            (0, 1, "0000000001".to_owned())
        );
        let container = zk::CreateMode::Container.with_acls(zk::Acls::anyone_all());
        let (st, _) = zk.create("/w/c", b"", &container).await?;
        assert_eq!(st.ephemeral_owner, 0);
        let ttl = zk::CreateMode::Persistent
            .with_acls(zk::Acls::anyone_all())
            .with_ttl(Duration::from_secs(60));
        let (st, _) = zk.create("/w/t", b"", &ttl).await?;
        assert_eq!(st.ephemeral_owner, 0);
        let eph = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
        let (st, _) = zk.create("/w/e", b"", &eph).await?;
        assert_eq!(st.ephemeral_owner, zk.session_id().0);
        assert!(matches!(
            zk.create("/w/e/x", b"", &open()).await,
            Err(zk::Error::NoChildrenForEphemerals)
        ));

        let st = zk.set_data("/w", b"new", Some(0)).await?;
        assert_eq!(st.version, 1);
        assert!(matches!(
            zk.set_data("/w", b"x", Some(0)).await,
            Err(zk::Error::BadVersion)
        ));
        assert!(matches!(
            zk.delete("/w", None).await,
            Err(zk::Error::NotEmpty)
        ));
        assert!(matches!(
            zk.delete("/w/q-0000000000", Some(3)).await,
            Err(zk::Error::BadVersion)
        ));
        zk.delete("/w/q-0000000000", Some(0)).await?;
        zk.mkdir("/deep/er/still", &open()).await?;
        assert!(zk.check_stat("/deep/er/still").await?.is_some());

        // ACLs through the client: world read-only, then digest.
        zk.create(
            "/ro",
            b"r",
            &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_read()),
        )
        .await?;
        assert!(matches!(
            zk.set_data("/ro", b"x", None).await,
            Err(zk::Error::NoAuth)
        ));
        let other = client(&server).await?;
        zk.auth("digest", b"alice:secret").await?;
        zk.create(
            "/mine",
            b"m",
            &zk::CreateMode::Persistent.with_acls(zk::Acls::creator_all()),
        )
        .await?;
        assert!(matches!(
            other.get_data("/mine").await,
            Err(zk::Error::NoAuth)
        ));
        let st = zk
            .set_acl(
                "/mine",
                &[zk::Acl::new(zk::Permission::READ, zk::AuthId::anyone())],
                Some(0),
            )
            .await?;
        assert_eq!(st.aversion, 1);
        assert_eq!(other.get_data("/mine").await?.0, b"m");
        assert!(matches!(
            zk.set_acl("/mine", &[], None).await,
            Err(zk::Error::InvalidAcl)
        ));
        let mut users = zk.list_auth_users().await?;
        users.sort_by(|a, b| a.scheme().cmp(b.scheme()));
        assert_eq!(
            users,
            [
                zk::AuthUser::new("digest", "alice"),
                zk::AuthUser::new("ip", "127.0.0.1")
            ]
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn zookeeper_client_lock_recipe() -> Result<()> {
    bounded(async move {
        let server = ZkServer::start()?;
        let a = client(&server).await?;
        let b = client(&server).await?;
        a.create("/locks", b"", &open()).await?;
        let prefix = || zk::LockPrefix::new_curator("/locks", "lock-");
        let first = a.lock(prefix()?, b"a", zk::Acls::anyone_all()).await?;
        // b waits for the lock until a lets go.
        let waiter = tokio::spawn(async move {
            let guard = b.lock(prefix()?, b"b", zk::Acls::anyone_all()).await?;
            let path = guard.lock_path().to_owned();
            Ok::<_, anyhow::Error>((path, guard.into_owned()))
        });
        let mut children = a.list_children("/locks").await?;
        for _ in 0..100 {
            if children.len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            children = a.list_children("/locks").await?;
        }
        assert_eq!(children.len(), 2, "{children:?}");
        assert!(!waiter.is_finished(), "b got the lock while a held it");
        let first_path = first.lock_path().to_owned();
        drop(first);
        let (second_path, _b) = tokio::time::timeout(BACKGROUND, waiter).await???;
        assert_ne!(first_path, second_path);
        assert!(
            second_path.starts_with("/locks/_c_") && second_path.ends_with("0000000001"),
            "{second_path}"
        );
        assert!(a.check_stat(&first_path).await?.is_none());
        Ok(())
    })
    .await
}
