//! Our client-side encoding against a real Apache ZooKeeper, for the ops the recorded
//! client sessions do not use (createContainer, createTTL, multiRead, checkWatches,
//! removeWatches, setWatches with xid −8, standalone getEphemerals, …).
//!
//! Ignored by default: it needs a ZooKeeper 3.8 started with `extendedTypesEnabled=true`
//! at `ZK_LIVE_ADDR` (e.g. `127.0.0.1:21811`):
//! `ZK_LIVE_ADDR=127.0.0.1:21811 cargo test -p zk-proto --test jute_live_zookeeper -- --ignored`

use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;
use zk_proto::data::{Acl, AddWatchMode, CreateMode, ErrorCode, EventType, OpCode, WatcherType};
use zk_proto::jute::*;

struct Client {
    framed: Framed<TcpStream, JuteCodec>,
    next_xid: i32,
    events: Vec<WatcherEvent>,
}

impl Client {
    async fn connect(addr: &str) -> anyhow::Result<(Client, ConnectResponse)> {
        let mut framed = Framed::new(TcpStream::connect(addr).await?, JuteCodec::new());
        framed
            .send(&ConnectRequest {
                timeout_ms: 10_000,
                passwd: Bytes::from_static(&[0; PASSWORD_LEN]),
                read_only: Some(false),
                ..ConnectRequest::default()
            })
            .await?;
        let frame = tokio::time::timeout(Duration::from_secs(10), framed.next())
            .await?
            .context("closed")??;
        let session = ConnectResponse::decode(&mut frame.freeze())?;
        Ok((
            Client {
                framed,
                next_xid: 1,
                events: Vec::new(),
            },
            session,
        ))
    }

    /// Sends `request` and waits for its reply, keeping notifications that arrive first.
    async fn call(&mut self, request: Request) -> anyhow::Result<ReplyPacket> {
        let packet = RequestPacket::new(self.next_xid, request);
        self.next_xid += 1;
        let (xid, op) = (packet.xid, packet.request.op_code());
        self.framed.send(&packet).await?;
        for _ in 0..100 {
            let frame = tokio::time::timeout(Duration::from_secs(10), self.framed.next())
                .await?
                .context("closed")??;
            let reply = ReplyPacket::decode(&mut frame.freeze(), |x| (x == xid).then_some(op))?;
            match reply.body {
                Response::Notification(event) => self.events.push(event),
                _ if reply.header.xid == xid => return Ok(reply),
                other => bail!("unexpected reply {other:?}"),
            }
        }
        bail!("no reply to xid {xid}")
    }

    /// Waits for one more frame, expected to be a notification.
    async fn notification(&mut self) -> anyhow::Result<WatcherEvent> {
        if !self.events.is_empty() {
            return Ok(self.events.remove(0));
        }
        let frame = tokio::time::timeout(Duration::from_secs(10), self.framed.next())
            .await?
            .context("closed")??;
        match ReplyPacket::decode(&mut frame.freeze(), |_| None)?.body {
            Response::Notification(event) => Ok(event),
            other => bail!("expected a notification, got {other:?}"),
        }
    }
}

fn create(path: &str, mode: CreateMode) -> CreateRequest {
    CreateRequest {
        path: path.into(),
        data: Some(Bytes::from_static(b"v")),
        acl: Acl::open_unsafe(),
        flags: mode.code(),
    }
}

fn ok(reply: &ReplyPacket) -> anyhow::Result<&Response> {
    match reply.header.error() {
        Ok(ErrorCode::Ok) => Ok(&reply.body),
        other => bail!("xid {}: {other:?}", reply.header.xid),
    }
}

#[tokio::test]
#[ignore = "needs a running ZooKeeper at ZK_LIVE_ADDR"]
async fn every_op_against_real_zookeeper() -> anyhow::Result<()> {
    let addr = std::env::var("ZK_LIVE_ADDR").context("set ZK_LIVE_ADDR=host:port")?;
    let (mut zk, session) = Client::connect(&addr).await?;
    assert_eq!(session.timeout_ms, 10_000);
    assert_eq!(session.read_only, Some(false));

    let root = format!("/jute-live-{:x}", session.session_id);
    let reply = zk
        .call(Request::Create2(create(&root, CreateMode::Persistent)))
        .await?;
    let Response::Create2(created) = ok(&reply)? else {
        bail!("create2: {reply:?}")
    };
    assert_eq!(created.path, root);
    assert_eq!(created.stat.czxid, reply.header.zxid);

    let container = format!("{root}/container");
    let reply = zk
        .call(Request::CreateContainer(create(
            &container,
            CreateMode::Container,
        )))
        .await?;
    assert!(matches!(ok(&reply)?, Response::Create2(c) if c.path == container));
    // A container needs a child, or the server may reap it.
    zk.call(Request::Create(create(
        &format!("{container}/c"),
        CreateMode::Persistent,
    )))
    .await?;

    let ttl = format!("{root}/ttl-");
    let reply = zk
        .call(Request::CreateTtl(CreateTtlRequest {
            path: ttl.clone(),
            data: None,
            acl: Acl::open_unsafe(),
            flags: CreateMode::PersistentSequentialWithTtl.code(),
            ttl: 60_000,
        }))
        .await?;
    let Response::Create2(c) = ok(&reply)? else {
        bail!("createTTL: {reply:?}")
    };
    assert!(
        c.path.starts_with(&ttl) && c.path.len() == ttl.len() + 10,
        "{}",
        c.path
    );
    assert_eq!(c.stat.data_length, 0);
    // Null data comes back as null.
    let reply = zk
        .call(Request::GetData(GetDataRequest {
            path: c.path.clone(),
            watch: false,
        }))
        .await?;
    assert!(matches!(ok(&reply)?, Response::GetData(g) if g.data.is_none()));

    let eph = format!("{root}/eph");
    zk.call(Request::Create(create(&eph, CreateMode::Ephemeral)))
        .await?;
    let reply = zk
        .call(Request::GetEphemerals(GetEphemeralsRequest {
            prefix_path: root.clone(),
        }))
        .await?;
    assert!(matches!(ok(&reply)?, Response::GetEphemerals(e) if e.ephemerals == [eph.clone()]));

    let reply = zk
        .call(Request::GetAllChildrenNumber(GetAllChildrenNumberRequest {
            path: root.clone(),
        }))
        .await?;
    assert!(matches!(
        ok(&reply)?,
        Response::GetAllChildrenNumber(n) if n.total_number == 4
    ));

    // multiRead: results and a per-op error.
    let reply = zk
        .call(Request::MultiRead(vec![
            MultiOp::GetData(GetDataRequest {
                path: root.clone(),
                watch: false,
            }),
            MultiOp::GetChildren(GetChildrenRequest {
                path: container.clone(),
                watch: false,
            }),
            MultiOp::GetData(GetDataRequest {
                path: format!("{root}/missing"),
                watch: false,
            }),
        ]))
        .await?;
    let Response::Multi(results) = ok(&reply)? else {
        bail!("multiRead: {reply:?}")
    };
    assert!(matches!(
        results.as_slice(),
        [MultiResult::GetData(d), MultiResult::GetChildren(c), MultiResult::Error(e)]
            if d.data.as_deref() == Some(&b"v"[..]) && c.children == ["c"] && e.err == ErrorCode::NoNode.code()
    ));

    // multi: ZooKeeper 3.8 answers a create2 op inside multi with a plain create result.
    let reply = zk
        .call(Request::Multi(vec![
            MultiOp::Create2(create(&format!("{root}/m"), CreateMode::Persistent)),
            MultiOp::Check(CheckVersionRequest {
                path: root.clone(),
                version: 0,
            }),
            MultiOp::SetData(SetDataRequest {
                path: format!("{root}/m"),
                data: Some(Bytes::from_static(b"w")),
                version: 0,
            }),
            MultiOp::Delete(DeleteRequest {
                path: format!("{root}/m"),
                version: 1,
            }),
        ]))
        .await?;
    let Response::Multi(results) = ok(&reply)? else {
        bail!("multi: {reply:?}")
    };
    assert!(
        matches!(
            results.as_slice(),
            [MultiResult::Create(_), MultiResult::Check, MultiResult::SetData(s), MultiResult::Delete]
                if s.stat.version == 1
        ),
        "{results:?}"
    );

    // Watches: set, check, remove, check again.
    zk.call(Request::GetData(GetDataRequest {
        path: root.clone(),
        watch: true,
    }))
    .await?;
    let check = || {
        Request::CheckWatches(CheckWatchesRequest {
            path: root.clone(),
            watcher_type: WatcherType::Data.code(),
        })
    };
    assert_eq!(zk.call(check()).await?.header.err, 0);
    let reply = zk
        .call(Request::RemoveWatches(RemoveWatchesRequest {
            path: root.clone(),
            watcher_type: WatcherType::Data.code(),
        }))
        .await?;
    assert_eq!(reply.header.err, 0);
    assert_eq!(
        zk.call(check()).await?.header.error(),
        Ok(ErrorCode::NoWatcher)
    );
    // (DataWatchRemoved is raised inside the Java client; the server sends nothing.)

    // setWatches (xid -8) with a zxid older than the node's last change: the server
    // fires the data watch at once.
    let reply = zk
        .call(Request::SetWatches(SetWatches {
            relative_zxid: 0,
            data_watches: vec![root.clone()],
            ..SetWatches::default()
        }))
        .await?;
    assert_eq!((reply.header.xid, reply.header.err), (SET_WATCHES_XID, 0));
    let event = zk.notification().await?;
    assert_eq!(event.kind(), Ok(EventType::NodeDataChanged));
    assert_eq!(event.path, root);

    // addWatch: answered with ErrorResponse{0}; a change below fires it.
    let reply = zk
        .call(Request::AddWatch(AddWatchRequest {
            path: root.clone(),
            mode: AddWatchMode::PersistentRecursive.code(),
        }))
        .await?;
    assert_eq!(ok(&reply)?, &Response::Error(ErrorResponse { err: 0 }));
    zk.call(Request::SetData(SetDataRequest {
        path: format!("{container}/c"),
        data: None,
        version: -1,
    }))
    .await?;
    let event = zk.notification().await?;
    assert_eq!(event.kind(), Ok(EventType::NodeDataChanged));
    assert_eq!(event.path, format!("{container}/c"));

    let reply = zk.call(Request::WhoAmI).await?;
    assert!(matches!(
        ok(&reply)?,
        Response::WhoAmI(w) if w.client_info.iter().any(|c| c.auth_scheme == "ip")
    ));
    let reply = zk
        .call(Request::Sync(SyncRequest { path: root.clone() }))
        .await?;
    assert!(matches!(ok(&reply)?, Response::Sync(s) if s.path == root));
    let reply = zk
        .call(Request::GetAcl(GetAclRequest { path: root.clone() }))
        .await?;
    assert!(matches!(ok(&reply)?, Response::GetAcl(a) if a.acl == Acl::open_unsafe()));
    let reply = zk.call(Request::Ping).await?;
    assert_eq!(reply.header.xid, PING_XID);

    // Clean up and close.
    for path in [
        format!("{container}/c"),
        container,
        eph,
        c.path.clone(),
        root,
    ] {
        let reply = zk
            .call(Request::Delete(DeleteRequest { path, version: -1 }))
            .await?;
        ok(&reply)?;
    }
    let reply = zk.call(Request::CloseSession).await?;
    assert_eq!(reply.header.err, 0);
    assert_eq!(OpCode::CloseSession.code(), -11);
    Ok(())
}
