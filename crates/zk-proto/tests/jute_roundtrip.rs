//! Property tests: every jute record, request and reply encodes to exactly
//! `encoded_len()` bytes and decodes back to itself, also through the framing codec.

use std::fmt::Debug;

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};
use zk_proto::data::{Acl, Id, OpCode, Stat};
use zk_proto::jute::*;

fn string() -> impl Strategy<Value = String> {
    prop_oneof![".{0,12}", "(/[a-z0-9]{1,6}){1,3}"]
}

fn strings() -> impl Strategy<Value = Vec<String>> {
    vec(string(), 0..5)
}

fn bytes() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..40).prop_map(Bytes::from)
}

fn data() -> impl Strategy<Value = Option<Bytes>> {
    option::of(bytes())
}

fn stat() -> impl Strategy<Value = Stat> {
    (
        (any::<i64>(), any::<i64>(), any::<i64>(), any::<i64>()),
        (any::<i32>(), any::<i32>(), any::<i32>()),
        (any::<i64>(), any::<i32>(), any::<i32>(), any::<i64>()),
    )
        .prop_map(
            |(
                (czxid, mzxid, ctime, mtime),
                (version, cversion, aversion),
                (ephemeral_owner, data_length, num_children, pzxid),
            )| Stat {
                czxid,
                mzxid,
                ctime,
                mtime,
                version,
                cversion,
                aversion,
                ephemeral_owner,
                data_length,
                num_children,
                pzxid,
            },
        )
}

fn id() -> impl Strategy<Value = Id> {
    (string(), string()).prop_map(|(scheme, id)| Id { scheme, id })
}

fn acls() -> impl Strategy<Value = Vec<Acl>> {
    vec(
        (any::<i32>(), id()).prop_map(|(perms, id)| Acl { perms, id }),
        0..4,
    )
}

fn create() -> impl Strategy<Value = CreateRequest> {
    (string(), data(), acls(), any::<i32>()).prop_map(|(path, data, acl, flags)| CreateRequest {
        path,
        data,
        acl,
        flags,
    })
}

fn create_ttl() -> impl Strategy<Value = CreateTtlRequest> {
    (string(), data(), acls(), any::<i32>(), any::<i64>()).prop_map(
        |(path, data, acl, flags, ttl)| CreateTtlRequest {
            path,
            data,
            acl,
            flags,
            ttl,
        },
    )
}

fn path_version<T: Debug>(f: fn(String, i32) -> T) -> impl Strategy<Value = T> {
    (string(), any::<i32>()).prop_map(move |(p, v)| f(p, v))
}

fn path_watch<T: Debug>(f: fn(String, bool) -> T) -> impl Strategy<Value = T> {
    (string(), any::<bool>()).prop_map(move |(p, w)| f(p, w))
}

fn path_only<T: Debug>(f: fn(String) -> T) -> impl Strategy<Value = T> {
    string().prop_map(f)
}

fn delete() -> impl Strategy<Value = DeleteRequest> {
    path_version(|path, version| DeleteRequest { path, version })
}

fn set_data() -> impl Strategy<Value = SetDataRequest> {
    (string(), data(), any::<i32>()).prop_map(|(path, data, version)| SetDataRequest {
        path,
        data,
        version,
    })
}

fn check() -> impl Strategy<Value = CheckVersionRequest> {
    path_version(|path, version| CheckVersionRequest { path, version })
}

fn get_data() -> impl Strategy<Value = GetDataRequest> {
    path_watch(|path, watch| GetDataRequest { path, watch })
}

fn get_children() -> impl Strategy<Value = GetChildrenRequest> {
    path_watch(|path, watch| GetChildrenRequest { path, watch })
}

fn write_ops() -> impl Strategy<Value = Vec<MultiOp>> {
    vec(
        prop_oneof![
            create().prop_map(MultiOp::Create),
            create().prop_map(MultiOp::Create2),
            create().prop_map(MultiOp::CreateContainer),
            create_ttl().prop_map(MultiOp::CreateTtl),
            delete().prop_map(MultiOp::Delete),
            set_data().prop_map(MultiOp::SetData),
            check().prop_map(MultiOp::Check),
        ],
        0..5,
    )
}

fn read_ops() -> impl Strategy<Value = Vec<MultiOp>> {
    vec(
        prop_oneof![
            get_data().prop_map(MultiOp::GetData),
            get_children().prop_map(MultiOp::GetChildren),
        ],
        0..5,
    )
}

fn set_watches() -> impl Strategy<Value = SetWatches> {
    (any::<i64>(), strings(), strings(), strings()).prop_map(
        |(relative_zxid, data_watches, exist_watches, child_watches)| SetWatches {
            relative_zxid,
            data_watches,
            exist_watches,
            child_watches,
        },
    )
}

fn set_watches2() -> impl Strategy<Value = SetWatches2> {
    (set_watches(), strings(), strings()).prop_map(|(w, persistent, recursive)| SetWatches2 {
        relative_zxid: w.relative_zxid,
        data_watches: w.data_watches,
        exist_watches: w.exist_watches,
        child_watches: w.child_watches,
        persistent_watches: persistent,
        persistent_recursive_watches: recursive,
    })
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        create().prop_map(Request::Create),
        create().prop_map(Request::Create2),
        create().prop_map(Request::CreateContainer),
        create_ttl().prop_map(Request::CreateTtl),
        delete().prop_map(Request::Delete),
        path_watch(|path, watch| ExistsRequest { path, watch }).prop_map(Request::Exists),
        get_data().prop_map(Request::GetData),
        set_data().prop_map(Request::SetData),
        path_only(|path| GetAclRequest { path }).prop_map(Request::GetAcl),
        (string(), acls(), any::<i32>())
            .prop_map(|(path, acl, version)| Request::SetAcl(SetAclRequest { path, acl, version })),
        get_children().prop_map(Request::GetChildren),
        path_only(|path| SyncRequest { path }).prop_map(Request::Sync),
        Just(Request::Ping),
        get_children().prop_map(Request::GetChildren2),
        check().prop_map(Request::Check),
        write_ops().prop_map(Request::Multi),
        (
            option::of(string()),
            option::of(string()),
            option::of(string()),
            any::<i64>()
        )
            .prop_map(|(j, l, n, c)| Request::Reconfig(ReconfigRequest {
                joining_servers: j,
                leaving_servers: l,
                new_members: n,
                cur_config_id: c,
            })),
        path_version(|path, watcher_type| CheckWatchesRequest { path, watcher_type })
            .prop_map(Request::CheckWatches),
        path_version(|path, watcher_type| RemoveWatchesRequest { path, watcher_type })
            .prop_map(Request::RemoveWatches),
        read_ops().prop_map(Request::MultiRead),
        (any::<i32>(), string(), bytes()).prop_map(|(auth_type, scheme, auth)| {
            Request::Auth(AuthPacket {
                auth_type,
                scheme,
                auth,
            })
        }),
        set_watches().prop_map(Request::SetWatches),
        bytes().prop_map(|token| Request::Sasl(GetSaslRequest { token })),
        path_only(|prefix_path| GetEphemeralsRequest { prefix_path })
            .prop_map(Request::GetEphemerals),
        path_only(|path| GetAllChildrenNumberRequest { path })
            .prop_map(Request::GetAllChildrenNumber),
        set_watches2().prop_map(Request::SetWatches2),
        path_version(|path, mode| AddWatchRequest { path, mode }).prop_map(Request::AddWatch),
        Just(Request::WhoAmI),
        Just(Request::CloseSession),
    ]
}

fn multi_result() -> impl Strategy<Value = MultiResult> {
    prop_oneof![
        string().prop_map(|path| MultiResult::Create(CreateResponse { path })),
        (string(), stat())
            .prop_map(|(path, stat)| MultiResult::Create2(Create2Response { path, stat })),
        Just(MultiResult::Delete),
        stat().prop_map(|stat| MultiResult::SetData(SetDataResponse { stat })),
        Just(MultiResult::Check),
        strings().prop_map(|children| MultiResult::GetChildren(GetChildrenResponse { children })),
        (data(), stat())
            .prop_map(|(data, stat)| MultiResult::GetData(GetDataResponse { data, stat })),
        any::<i32>().prop_map(|err| MultiResult::Error(ErrorResponse { err })),
    ]
}

/// A reply body and an op whose reply carries it.
fn response() -> impl Strategy<Value = (OpCode, Response)> {
    prop_oneof![
        Just((OpCode::Delete, Response::Empty)),
        string().prop_map(|path| (OpCode::Create, Response::Create(CreateResponse { path }))),
        (string(), stat()).prop_map(|(path, stat)| (
            OpCode::CreateTtl,
            Response::Create2(Create2Response { path, stat })
        )),
        stat().prop_map(|stat| (OpCode::Exists, Response::Exists(ExistsResponse { stat }))),
        (data(), stat()).prop_map(|(data, stat)| (
            OpCode::GetData,
            Response::GetData(GetDataResponse { data, stat })
        )),
        stat().prop_map(|stat| (OpCode::SetData, Response::SetData(SetDataResponse { stat }))),
        (acls(), stat()).prop_map(|(acl, stat)| (
            OpCode::GetAcl,
            Response::GetAcl(GetAclResponse { acl, stat })
        )),
        stat().prop_map(|stat| (OpCode::SetAcl, Response::SetAcl(SetAclResponse { stat }))),
        strings().prop_map(|children| (
            OpCode::GetChildren,
            Response::GetChildren(GetChildrenResponse { children })
        )),
        (strings(), stat()).prop_map(|(children, stat)| (
            OpCode::GetChildren2,
            Response::GetChildren2(GetChildren2Response { children, stat })
        )),
        string().prop_map(|path| (OpCode::Sync, Response::Sync(SyncResponse { path }))),
        vec(multi_result(), 0..5).prop_map(|r| (OpCode::Multi, Response::Multi(r))),
        any::<i32>().prop_map(|total_number| (
            OpCode::GetAllChildrenNumber,
            Response::GetAllChildrenNumber(GetAllChildrenNumberResponse { total_number })
        )),
        strings().prop_map(|ephemerals| (
            OpCode::GetEphemerals,
            Response::GetEphemerals(GetEphemeralsResponse { ephemerals })
        )),
        any::<i32>().prop_map(|err| (OpCode::AddWatch, Response::Error(ErrorResponse { err }))),
        vec(
            (string(), string()).prop_map(|(auth_scheme, user)| ClientInfo { auth_scheme, user }),
            0..3
        )
        .prop_map(|client_info| (
            OpCode::WhoAmI,
            Response::WhoAmI(WhoAmIResponse { client_info })
        )),
        bytes().prop_map(|token| (OpCode::Sasl, Response::Sasl(SetSaslResponse { token }))),
        (any::<i32>(), any::<i32>(), string()).prop_map(|(event_type, state, path)| (
            OpCode::Notification,
            Response::Notification(WatcherEvent {
                event_type,
                state,
                path
            })
        )),
    ]
}

fn connect_request() -> impl Strategy<Value = ConnectRequest> {
    (
        any::<i32>(),
        any::<i64>(),
        any::<i32>(),
        any::<i64>(),
        bytes(),
        option::of(any::<bool>()),
    )
        .prop_map(
            |(protocol_version, last_zxid_seen, timeout_ms, session_id, passwd, read_only)| {
                ConnectRequest {
                    protocol_version,
                    last_zxid_seen,
                    timeout_ms,
                    session_id,
                    passwd,
                    read_only,
                }
            },
        )
}

fn connect_response() -> impl Strategy<Value = ConnectResponse> {
    (
        any::<i32>(),
        any::<i32>(),
        any::<i64>(),
        bytes(),
        option::of(any::<bool>()),
    )
        .prop_map(
            |(protocol_version, timeout_ms, session_id, passwd, read_only)| ConnectResponse {
                protocol_version,
                timeout_ms,
                session_id,
                passwd,
                read_only,
            },
        )
}

/// Encodes, checks the length, decodes from the bytes and checks nothing is left over.
fn record_round_trip<T: Record + PartialEq + Debug>(value: &T) -> Result<(), TestCaseError> {
    let bytes = Bytes::from(value.to_vec());
    prop_assert_eq!(bytes.len(), value.encoded_len());
    prop_assert!(bytes.len() >= T::MIN_LEN);
    let mut rest = bytes.clone();
    let back = T::decode(&mut rest).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, value);
    prop_assert!(rest.is_empty(), "{} bytes left", rest.len());
    Ok(())
}

/// Frames `packet`, cuts the frame with the codec and returns its payload.
fn through_codec<P: Packet>(packet: P) -> Result<Bytes, TestCaseError> {
    let mut codec = JuteCodec::new();
    let mut wire = BytesMut::new();
    let len = packet.packet_len();
    codec
        .encode(packet, &mut wire)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(wire.len(), 4 + len);
    let frame = codec
        .decode(&mut wire)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(wire.is_empty());
    frame
        .map(BytesMut::freeze)
        .ok_or_else(|| TestCaseError::fail("no frame"))
}

proptest! {
    #[test]
    fn data_records_round_trip(s in stat(), i in id(), a in acls()) {
        record_round_trip(&s)?;
        record_round_trip(&i)?;
        record_round_trip(&a)?;
    }

    #[test]
    fn header_records_round_trip(
        xid in any::<i32>(), op in any::<i32>(), zxid in any::<i64>(), done in any::<bool>()
    ) {
        record_round_trip(&RequestHeader { xid, op })?;
        record_round_trip(&ReplyHeader { xid, zxid, err: op })?;
        record_round_trip(&MultiHeader { op, done, err: xid })?;
        record_round_trip(&ErrorResponse { err: op })?;
        record_round_trip(&GetAllChildrenNumberResponse { total_number: xid })?;
    }

    #[test]
    fn request_records_round_trip(
        c in create(), t in create_ttl(), d in delete(), s in set_data(), k in check(),
        g in get_data(), ch in get_children(), w in set_watches(), w2 in set_watches2(),
    ) {
        record_round_trip(&c)?;
        record_round_trip(&t)?;
        record_round_trip(&d)?;
        record_round_trip(&s)?;
        record_round_trip(&k)?;
        record_round_trip(&g)?;
        record_round_trip(&ch)?;
        record_round_trip(&w)?;
        record_round_trip(&w2)?;
    }

    #[test]
    fn response_records_round_trip(
        path in string(), st in stat(), d in data(), children in strings(), a in acls(),
        (event_type, state) in (any::<i32>(), any::<i32>()),
    ) {
        record_round_trip(&CreateResponse { path: path.clone() })?;
        record_round_trip(&Create2Response { path: path.clone(), stat: st })?;
        record_round_trip(&GetDataResponse { data: d, stat: st })?;
        record_round_trip(&GetChildren2Response { children: children.clone(), stat: st })?;
        record_round_trip(&GetAclResponse { acl: a, stat: st })?;
        record_round_trip(&GetEphemeralsResponse { ephemerals: children })?;
        record_round_trip(&WatcherEvent { event_type, state, path })?;
    }

    #[test]
    fn connect_records_round_trip(req in connect_request(), resp in connect_response()) {
        record_round_trip(&req)?;
        record_round_trip(&resp)?;
        let mut frame = through_codec(&req)?;
        prop_assert_eq!(ConnectRequest::decode(&mut frame).ok(), Some(req));
        let mut frame = through_codec(&resp)?;
        prop_assert_eq!(ConnectResponse::decode(&mut frame).ok(), Some(resp));
    }

    #[test]
    fn requests_round_trip(xid in 0..i32::MAX, req in request()) {
        let packet = RequestPacket::new(xid, req);
        let expected_xid = packet.request.special_xid().unwrap_or(xid);
        prop_assert_eq!(packet.xid, expected_xid);
        let mut frame = through_codec(&packet)?;
        let back = RequestPacket::decode(&mut frame).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&back, &packet);
        prop_assert!(frame.is_empty());
        // The body alone decodes by op code too.
        let mut body = BytesMut::new();
        packet.request.encode_body(&mut body);
        prop_assert_eq!(body.len(), packet.request.body_len());
        let back = Request::decode(packet.request.op_code(), &mut body.freeze())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back, packet.request);
    }

    #[test]
    fn replies_round_trip(xid in 0..i32::MAX, zxid in any::<i64>(), (op, body) in response()) {
        let xid = if op == OpCode::Notification { -1 } else { xid };
        let reply = ReplyPacket { header: ReplyHeader { xid, zxid, err: 0 }, body };
        let mut frame = through_codec(&reply)?;
        let back = ReplyPacket::decode(&mut frame, |x| (x == xid).then_some(op))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&back, &reply);
        prop_assert!(frame.is_empty());
    }

    #[test]
    fn error_replies_have_no_body(
        xid in 0..i32::MAX, zxid in any::<i64>(), err in any::<i32>().prop_filter("error", |e| *e != 0),
        (op, body) in response(),
    ) {
        let reply = ReplyPacket { header: ReplyHeader { xid, zxid, err }, body };
        let mut wire = BytesMut::new();
        reply.header.encode(&mut wire);
        prop_assert_eq!(wire.len(), 16);
        let back = ReplyPacket::decode(&mut wire.freeze(), |_| Some(op))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back.header, reply.header);
        prop_assert_eq!(back.body, Response::Empty);
    }
}

#[test]
fn mixed_multi_is_rejected() {
    let ops = vec![
        MultiOp::Delete(DeleteRequest {
            path: "/a".into(),
            version: -1,
        }),
        MultiOp::GetData(GetDataRequest {
            path: "/a".into(),
            watch: false,
        }),
    ];
    let mut body = BytesMut::new();
    Request::Multi(ops).encode_body(&mut body);
    assert!(matches!(
        Request::decode(OpCode::Multi, &mut body.freeze()),
        Err(JuteError::MixedMulti)
    ));
}

#[test]
fn multi_frames_like_zookeeper() {
    // One delete, then the done header.
    let req = Request::Multi(vec![MultiOp::Delete(DeleteRequest {
        path: "/a".into(),
        version: 3,
    })]);
    let mut body = Vec::new();
    req.encode_body(&mut body);
    let expected: Vec<u8> = [
        &[0, 0, 0, 2, 0, 0xff, 0xff, 0xff, 0xff][..],
        &[0, 0, 0, 2, b'/', b'a', 0, 0, 0, 3],
        &[0xff, 0xff, 0xff, 0xff, 1, 0xff, 0xff, 0xff, 0xff],
    ]
    .concat();
    assert_eq!(body, expected);

    // An error result: header {-1, false, err} and ErrorResponse{err}.
    let resp = Response::Multi(vec![MultiResult::error(zk_proto::data::ErrorCode::NoNode)]);
    let mut body = Vec::new();
    resp.encode_body(&mut body);
    let expected: Vec<u8> = [
        &[0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0xff, 0x9b][..],
        &[0xff, 0xff, 0xff, 0x9b],
        &[0xff, 0xff, 0xff, 0xff, 1, 0xff, 0xff, 0xff, 0xff],
    ]
    .concat();
    assert_eq!(body, expected);
}

#[test]
fn expired_session_answer_is_zookeepers() {
    let mut v = Vec::new();
    ConnectResponse::session_expired(false).encode(&mut v);
    // protocolVersion 0, timeOut 0, sessionId 0, passwd = 16 zero bytes, readOnly false.
    let expected: Vec<u8> = [&[0u8; 16][..], &[0, 0, 0, 16], &[0; 16], &[0]].concat();
    assert_eq!(v, expected);
}

#[test]
fn special_xids_and_unknown_ops() {
    assert_eq!(RequestPacket::new(7, Request::Ping).xid, PING_XID);
    assert_eq!(
        RequestPacket::new(7, Request::SetWatches(SetWatches::default())).xid,
        SET_WATCHES_XID
    );
    assert_eq!(RequestPacket::new(7, Request::WhoAmI).xid, 7);
    let mut frame = Bytes::from_static(&[0, 0, 0, 9, 0, 0, 0, 10]);
    assert!(matches!(
        RequestPacket::decode(&mut frame),
        Err(JuteError::UnknownOpCode(10))
    ));
    let mut frame = Bytes::from_static(&[0, 0, 0, 9, 0xff, 0xff, 0xff, 0xf6]);
    assert!(matches!(
        RequestPacket::decode(&mut frame),
        Err(JuteError::NotARequest(OpCode::CreateSession))
    ));
    let mut frame = Bytes::from_static(&[0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
    assert!(matches!(
        ReplyPacket::decode(&mut frame, |_| None),
        Err(JuteError::UnknownXid(9))
    ));
}
