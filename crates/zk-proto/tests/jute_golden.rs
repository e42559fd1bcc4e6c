//! Golden bytes: sessions of real clients (kazoo 2.11, Apache ZooKeeper 3.8's own Java and
//! C clients, the Rust `zookeeper-client` crate) against a real ZooKeeper 3.8.0, recorded on the wire (see
//! `fixtures/jute/README.md`). Every frame must decode, carry the expected values, and
//! re-encode to exactly the recorded bytes.

use std::collections::{BTreeSet, HashMap};

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};
use zk_proto::data::{Acl, ErrorCode, EventType, KeeperState, OpCode};
use zk_proto::jute::{
    ConnectRequest, ConnectResponse, FourLetterWord, Inbound, JuteCodec, MultiOp, MultiResult,
    Record, ReplyPacket, Request, RequestPacket, Response, ServerCodec,
};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jute/");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}{name}")).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// Cuts a recorded stream into frame payloads; the whole stream must be frames.
fn frames(stream: &[u8]) -> Vec<Bytes> {
    let mut codec = JuteCodec::new();
    let mut buf = BytesMut::from(stream);
    let mut out = Vec::new();
    while let Some(frame) = codec.decode(&mut buf).expect("valid frame") {
        out.push(frame.freeze());
    }
    assert!(buf.is_empty(), "{} trailing bytes", buf.len());
    out
}

/// Frames `packet` with the codec and checks the bytes equal the recorded frame.
fn assert_reencodes<T: zk_proto::jute::Packet>(packet: T, payload: &Bytes) {
    let mut out = BytesMut::new();
    JuteCodec::new().encode(packet, &mut out).expect("encode");
    assert_eq!(&out[..4], &(payload.len() as u32).to_be_bytes());
    assert_eq!(&out[4..], &payload[..], "re-encoding differs");
}

/// A decoded session: the requests and the replies, matched by xid.
struct Session {
    connect: ConnectRequest,
    connected: ConnectResponse,
    requests: Vec<RequestPacket>,
    replies: Vec<ReplyPacket>,
}

fn decode_session(prefix: &str) -> Session {
    let c2s = frames(&fixture(&format!("{prefix}_client_to_server.bin")));
    let s2c = frames(&fixture(&format!("{prefix}_server_to_client.bin")));

    let (first, rest) = c2s.split_first().expect("connect frame");
    let connect = ConnectRequest::decode(&mut first.clone()).expect("connect request");
    assert_reencodes(&connect, first);
    let mut ops = HashMap::new();
    let mut requests = Vec::new();
    for payload in rest {
        let packet = RequestPacket::decode(&mut payload.clone()).expect("request");
        assert_reencodes(&packet, payload);
        ops.insert(packet.xid, packet.request.op_code());
        requests.push(packet);
    }

    let (first, rest) = s2c.split_first().expect("connect response frame");
    let connected = ConnectResponse::decode(&mut first.clone()).expect("connect response");
    assert_reencodes(&connected, first);
    let mut replies = Vec::new();
    for payload in rest {
        let reply =
            ReplyPacket::decode(&mut payload.clone(), |xid| ops.get(&xid).copied()).expect("reply");
        assert_reencodes(&reply, payload);
        replies.push(reply);
    }
    Session {
        connect,
        connected,
        requests,
        replies,
    }
}

fn reply_to(session: &Session, xid: i32) -> &ReplyPacket {
    session
        .replies
        .iter()
        .find(|r| r.header.xid == xid)
        .unwrap_or_else(|| panic!("no reply for xid {xid}"))
}

fn op_codes(session: &Session) -> BTreeSet<i32> {
    session
        .requests
        .iter()
        .map(|r| r.request.op_code().code())
        .collect()
}

#[test]
fn kazoo_connect_request_is_pinned() {
    let s = decode_session("kazoo");
    assert_eq!(
        s.connect,
        ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            timeout_ms: 4000,
            session_id: 0,
            passwd: Bytes::from_static(&[0; 16]),
            read_only: Some(false),
        }
    );
    // 45 bytes: the record (44) and the read-only byte.
    assert_eq!(s.connect.encoded_len(), 45);
    assert_eq!(s.connected.timeout_ms, 4000);
    assert_ne!(s.connected.session_id, 0);
    assert_eq!(s.connected.passwd.len(), 16);
    assert_eq!(s.connected.read_only, Some(false));
}

#[test]
fn kazoo_create_request_is_pinned() {
    let s = decode_session("kazoo");
    let first = &s.requests[0];
    assert_eq!(first.xid, 1);
    let Request::Create(create) = &first.request else {
        panic!("first request is {:?}", first.request);
    };
    assert_eq!(create.path, "/golden");
    assert_eq!(first.request.path(), Some("/golden"));
    assert_eq!(create.data.as_deref(), Some(&b"hello"[..]));
    assert_eq!(create.acl, Acl::open_unsafe());
    assert_eq!(create.flags, 0);
    let reply = reply_to(&s, 1);
    assert_eq!(reply.header.err, 0);
    assert_eq!(
        reply.body,
        Response::Create(zk_proto::jute::CreateResponse {
            path: "/golden".into()
        })
    );
}

#[test]
fn kazoo_get_data_reply_is_pinned() {
    let s = decode_session("kazoo");
    let get = &s.requests[1];
    let Request::GetData(req) = &get.request else {
        panic!("second request is {:?}", get.request);
    };
    assert_eq!((req.path.as_str(), req.watch), ("/golden", false));
    let create_zxid = reply_to(&s, 1).header.zxid;
    let reply = reply_to(&s, get.xid);
    let Response::GetData(data) = &reply.body else {
        panic!("getData reply is {:?}", reply.body);
    };
    assert_eq!(data.data.as_deref(), Some(&b"hello"[..]));
    let stat = data.stat;
    assert_eq!(
        (stat.czxid, stat.mzxid, stat.pzxid),
        (create_zxid, create_zxid, create_zxid)
    );
    assert_eq!(stat.ctime, stat.mtime);
    assert!(
        stat.ctime > 1_700_000_000_000,
        "ctime is ms since the epoch"
    );
    assert_eq!((stat.version, stat.cversion, stat.aversion), (0, 0, 0));
    assert_eq!(
        (stat.ephemeral_owner, stat.data_length, stat.num_children),
        (0, 5, 0)
    );
    assert_eq!(
        reply.header.zxid, create_zxid,
        "reply zxid is the last processed zxid"
    );
}

#[test]
fn kazoo_session_covers_every_recorded_op_and_reply() {
    let s = decode_session("kazoo");
    assert_eq!(
        op_codes(&s),
        [
            OpCode::Create,
            OpCode::Exists,
            OpCode::GetData,
            OpCode::SetData,
            OpCode::GetAcl,
            OpCode::SetAcl,
            OpCode::GetChildren,
            OpCode::Sync,
            OpCode::Ping,
            OpCode::GetChildren2,
            OpCode::Multi,
            OpCode::Create2,
            OpCode::Auth,
            OpCode::Delete,
            OpCode::CloseSession,
        ]
        .iter()
        .map(|o| o.code())
        .collect()
    );

    // exists on a missing node: error header, no body.
    let missing = s
        .requests
        .iter()
        .find(|r| matches!(&r.request, Request::Exists(e) if e.path == "/golden-missing"))
        .expect("exists /golden-missing");
    let reply = reply_to(&s, missing.xid);
    assert_eq!(reply.header.error(), Ok(ErrorCode::NoNode));
    assert_eq!(reply.body, Response::Empty);

    // The committed transaction and its results.
    let multis: Vec<_> = s
        .requests
        .iter()
        .filter_map(|r| match &r.request {
            Request::Multi(ops) => Some((r.xid, ops)),
            _ => None,
        })
        .collect();
    assert_eq!(multis.len(), 2);
    let (xid, ops) = multis[0];
    assert!(matches!(
        ops.as_slice(),
        [
            MultiOp::Create(_),
            MultiOp::Check(_),
            MultiOp::SetData(_),
            MultiOp::Delete(_)
        ]
    ));
    let Response::Multi(results) = &reply_to(&s, xid).body else {
        panic!("multi reply");
    };
    assert!(matches!(
        results.as_slice(),
        [MultiResult::Create(c), MultiResult::Check, MultiResult::SetData(_), MultiResult::Delete]
            if c.path == "/golden/m1"
    ));
    // The failed one: rolled-back ops report 0, the failing check BadVersion.
    let (xid, _) = multis[1];
    let reply = reply_to(&s, xid);
    assert_eq!(
        reply.header.err, 0,
        "a failed multi still replies Ok with error results"
    );
    assert_eq!(
        reply.body,
        Response::Multi(vec![
            MultiResult::error(ErrorCode::Ok),
            MultiResult::error(ErrorCode::BadVersion),
        ])
    );

    // The data watch fired once, as a notification.
    let notes: Vec<_> = s
        .replies
        .iter()
        .filter_map(|r| match &r.body {
            Response::Notification(e) => Some((&r.header, e)),
            _ => None,
        })
        .collect();
    assert_eq!(notes.len(), 1);
    let (header, event) = &notes[0];
    assert_eq!((header.xid, header.zxid, header.err), (-1, -1, 0));
    assert_eq!(event.kind(), Ok(EventType::NodeDataChanged));
    assert_eq!(event.keeper_state(), Ok(KeeperState::SyncConnected));
    assert_eq!(event.path, "/golden");

    // Special xids: ping and auth.
    assert!(
        s.requests
            .iter()
            .any(|r| r.xid == -2 && r.request == Request::Ping)
    );
    let auth = s
        .requests
        .iter()
        .find(|r| r.xid == -4)
        .expect("auth packet");
    let Request::Auth(packet) = &auth.request else {
        panic!("auth xid carries {:?}", auth.request);
    };
    assert_eq!(
        (packet.scheme.as_str(), &packet.auth[..]),
        ("digest", &b"user:secret"[..])
    );
    assert_eq!(reply_to(&s, -4).header.err, 0);
    assert_eq!(reply_to(&s, -2).body, Response::Empty);
}

#[test]
fn java_client_session_round_trips() {
    let s = decode_session("zkcli");
    assert_eq!(s.connect.read_only, Some(false));
    assert_eq!(s.connect.passwd.len(), 16);
    assert_eq!(s.connected.read_only, Some(false));
    let ops = op_codes(&s);
    for op in [
        OpCode::Create,
        OpCode::SetData,
        OpCode::GetAllChildrenNumber,
        OpCode::GetEphemerals,
        OpCode::AddWatch,
        OpCode::WhoAmI,
        OpCode::CloseSession,
    ] {
        assert!(ops.contains(&op.code()), "zkCli sent no {op:?}: {ops:?}");
    }
    // `create /jgolden` without data: the Java client sends a null buffer.
    let Request::Create(create) = &s.requests[0].request else {
        panic!("first zkCli request is {:?}", s.requests[0].request);
    };
    assert_eq!(
        (create.path.as_str(), create.data.as_ref()),
        ("/jgolden", None)
    );
    // addWatch is answered with an ErrorResponse{0} body.
    let add = s
        .requests
        .iter()
        .find(|r| r.request.op_code() == OpCode::AddWatch)
        .expect("addWatch");
    assert_eq!(
        reply_to(&s, add.xid).body,
        Response::Error(zk_proto::jute::ErrorResponse { err: 0 })
    );
    let who = s
        .requests
        .iter()
        .find(|r| r.request == Request::WhoAmI)
        .expect("whoAmI");
    let Response::WhoAmI(me) = &reply_to(&s, who.xid).body else {
        panic!("whoAmI reply");
    };
    assert_eq!(me.client_info.len(), 1);
    assert_eq!(me.client_info[0].auth_scheme, "ip");
    assert_eq!(me.client_info[0].user, "127.0.0.1");
}

#[test]
fn ruok_is_a_four_letter_word_not_a_frame() {
    let mut codec = ServerCodec::default();
    let mut buf = BytesMut::from(&fixture("ruok_client_to_server.bin")[..]);
    assert_eq!(
        codec.decode(&mut buf).expect("decode"),
        Some(Inbound::FourLetterWord(FourLetterWord::Ruok))
    );
    assert_eq!(fixture("ruok_server_to_client.bin"), b"imok");
    // The same bytes through the plain framing codec are an oversized length.
    let mut buf = BytesMut::from(&fixture("ruok_client_to_server.bin")[..]);
    assert!(JuteCodec::new().decode(&mut buf).is_err());
}

#[test]
fn java_client_reconnect_resumes_the_session_and_its_watches() {
    let first = decode_session("java_reconnect_1");
    let second = decode_session("java_reconnect_2");
    let last_zxid = first
        .replies
        .iter()
        .map(|r| r.header.zxid)
        .max()
        .expect("replies");
    assert_eq!(first.connect.session_id, 0);
    assert_eq!(
        second.connect,
        ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: last_zxid,
            timeout_ms: 20000,
            session_id: first.connected.session_id,
            passwd: first.connected.passwd.clone(),
            read_only: Some(false),
        }
    );
    assert_eq!(second.connected.session_id, first.connected.session_id);

    // With a persistent watch registered, the 3.8 client sends setWatches2 — and its NIO
    // socket renumbers it with an ordinary xid instead of -8.
    let set = &second.requests[0];
    assert_eq!(set.xid, 6);
    assert_eq!(set.request.path(), None);
    assert_eq!(
        set.request,
        Request::SetWatches2(zk_proto::jute::SetWatches2 {
            relative_zxid: last_zxid,
            data_watches: vec!["/rgolden".into()],
            exist_watches: vec!["/rgolden-missing".into()],
            child_watches: vec!["/rgolden".into()],
            persistent_watches: vec![],
            persistent_recursive_watches: vec!["/rgolden".into()],
        })
    );
    assert_eq!(reply_to(&second, 6).header.err, 0);
    assert_eq!(reply_to(&second, 6).body, Response::Empty);
}

#[test]
fn kazoo_reconnect_resumes_the_session() {
    let first = decode_session("kazoo_reconnect_1");
    let second = decode_session("kazoo_reconnect_2");
    let last_zxid = first
        .replies
        .iter()
        .map(|r| r.header.zxid)
        .max()
        .expect("replies");
    assert_eq!(second.connect.session_id, first.connected.session_id);
    assert_eq!(second.connect.passwd, first.connected.passwd);
    assert_eq!(second.connect.last_zxid_seen, last_zxid);
    assert_eq!(second.connected.timeout_ms, first.connected.timeout_ms);
    assert_eq!(
        second.requests.last().map(|r| &r.request),
        Some(&Request::CloseSession)
    );
}

#[test]
fn real_server_replies_to_the_less_common_ops() {
    // Requests from our own encoder (tests/jute_live_zookeeper.rs), replies from
    // ZooKeeper 3.8.0 with extendedTypesEnabled: every reply re-encodes byte for byte.
    let s = decode_session("ours_live");
    let reply_for = |op: OpCode| {
        let req = s
            .requests
            .iter()
            .find(|r| r.request.op_code() == op)
            .unwrap_or_else(|| panic!("no {op:?} request"));
        reply_to(&s, req.xid)
    };
    for op in [OpCode::CreateContainer, OpCode::CreateTtl] {
        assert!(matches!(reply_for(op).body, Response::Create2(_)), "{op:?}");
    }
    let Response::Multi(results) = &reply_for(OpCode::MultiRead).body else {
        panic!("multiRead reply");
    };
    assert!(matches!(
        results.as_slice(),
        [MultiResult::GetData(_), MultiResult::GetChildren(_), MultiResult::Error(e)]
            if e.err == ErrorCode::NoNode.code()
    ));
    assert_eq!(
        reply_for(OpCode::CheckWatches).header.error(),
        Ok(ErrorCode::Ok)
    );
    assert_eq!(reply_for(OpCode::RemoveWatches).body, Response::Empty);
    assert_eq!(reply_for(OpCode::SetWatches).header.xid, -8);
    assert!(matches!(
        &reply_for(OpCode::GetEphemerals).body,
        Response::GetEphemerals(e) if e.ephemerals.len() == 1
    ));
    // setWatches fires at once, the recursive watch on a change below, then one
    // NodeDeleted per node removed during the cleanup.
    let kinds: Vec<_> = s
        .replies
        .iter()
        .filter_map(|r| match &r.body {
            Response::Notification(e) => e.kind().ok(),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        [
            [EventType::NodeDataChanged; 2].as_slice(),
            &[EventType::NodeDeleted; 5]
        ]
        .concat()
    );
}

#[test]
fn c_client_session_round_trips() {
    // ZooKeeper's own C client (cli_mt from zookeeper-bin 3.8.0).
    let s = decode_session("cclient");
    assert_eq!(s.connect.read_only, Some(false));
    assert_eq!(s.connect.passwd.len(), 16);
    assert_eq!(s.connect.session_id, 0);
    let Request::Create(create) = &s.requests[0].request else {
        panic!("first C request is {:?}", s.requests[0].request);
    };
    // cli_mt creates with the data "new" and OPEN_ACL_UNSAFE.
    assert_eq!(create.path, "/cgolden");
    assert_eq!(create.data.as_deref(), Some(&b"new"[..]));
    assert_eq!(create.acl, Acl::open_unsafe());
    let ops = op_codes(&s);
    for op in [
        OpCode::Create,
        OpCode::GetData,
        OpCode::GetChildren2,
        OpCode::Exists,
        OpCode::SetData,
        OpCode::Delete,
        OpCode::CloseSession,
    ] {
        assert!(ops.contains(&op.code()), "cli_mt sent no {op:?}: {ops:?}");
    }
    // Its watches fire as notifications: a data change and two child changes.
    let events: Vec<_> = s
        .replies
        .iter()
        .filter_map(|r| match &r.body {
            Response::Notification(e) => Some((e.kind().ok(), e.path.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        events,
        [
            (Some(EventType::NodeDataChanged), "/cgolden"),
            (Some(EventType::NodeChildrenChanged), "/cgolden"),
            (Some(EventType::NodeChildrenChanged), "/cgolden"),
        ]
    );
}

#[test]
fn rust_zookeeper_client_session_round_trips() {
    // The `zookeeper-client` crate 0.11 (through zkbench), the client of our integration
    // tests: it pings first and creates with create2.
    let s = decode_session("rustclient");
    assert_eq!(s.connect.timeout_ms, 10_000);
    assert_eq!(s.connect.read_only, Some(false));
    assert_eq!(s.requests[0], RequestPacket::new(0, Request::Ping));
    let creates: Vec<_> = s
        .requests
        .iter()
        .filter_map(|r| match &r.request {
            Request::Create2(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(creates.len(), 4);
    assert!(
        creates
            .iter()
            .all(|c| c.acl == Acl::open_unsafe() && c.flags == 0)
    );
    assert_eq!(
        op_codes(&s),
        [
            OpCode::GetData,
            OpCode::SetData,
            OpCode::Sync,
            OpCode::Ping,
            OpCode::Create2
        ]
        .iter()
        .map(|o| o.code())
        .collect()
    );
    for r in &s.requests[1..] {
        let reply = reply_to(&s, r.xid);
        assert_eq!(reply.header.err, 0, "{:?}", r.request);
        if let (Request::Create2(c), Response::Create2(done)) = (&r.request, &reply.body) {
            assert_eq!(done.path, c.path);
            assert_eq!(done.stat.czxid, reply.header.zxid);
        }
    }
}
