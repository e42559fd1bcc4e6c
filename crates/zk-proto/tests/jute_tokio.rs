//! The codecs over real TCP sockets (127.0.0.1, port 0) with `tokio_util::codec::Framed`:
//! a tiny echo-style server answers a client that uses the same crate, and a raw
//! four-letter word is told apart from a handshake.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;
use zk_proto::data::{Acl, ErrorCode, OpCode, Stat};
use zk_proto::jute::*;

/// Serves one connection: a four-letter word gets `imok`-style text, a handshake gets a
/// session, create/getData/ping/close get replies. Returns what it saw.
async fn serve_one(listener: TcpListener) -> anyhow::Result<Vec<String>> {
    let (socket, _) = listener.accept().await?;
    let mut framed = Framed::new(socket, ServerCodec::default());
    let mut seen = Vec::new();
    let mut stored: Option<Bytes> = None;
    let mut connected = false;
    while let Some(inbound) = framed.next().await {
        match inbound? {
            Inbound::FourLetterWord(word) => {
                seen.push(format!("4lw {word}"));
                let stream = framed.get_mut();
                stream.write_all(b"imok").await?;
                stream.shutdown().await?;
                return Ok(seen);
            }
            Inbound::Frame(frame) if !connected => {
                let req = ConnectRequest::decode(&mut frame.freeze())?;
                seen.push(format!("connect timeout={}", req.timeout_ms));
                connected = true;
                framed
                    .send(&ConnectResponse {
                        protocol_version: 0,
                        timeout_ms: req.timeout_ms,
                        session_id: 0x1234,
                        passwd: Bytes::from_static(&[9; PASSWORD_LEN]),
                        read_only: Some(false),
                    })
                    .await?;
            }
            Inbound::Frame(frame) => {
                let packet = RequestPacket::decode(&mut frame.freeze())?;
                seen.push(format!("{:?}", packet.request.op_code()));
                let closing = packet.request == Request::CloseSession;
                let (err, body) = match packet.request {
                    Request::Create(c) => {
                        stored = c.data;
                        (
                            ErrorCode::Ok,
                            Response::Create(CreateResponse { path: c.path }),
                        )
                    }
                    Request::GetData(_) => match &stored {
                        Some(data) => (
                            ErrorCode::Ok,
                            Response::GetData(GetDataResponse {
                                data: Some(data.clone()),
                                stat: Stat {
                                    data_length: data.len() as i32,
                                    ..Stat::default()
                                },
                            }),
                        ),
                        None => (ErrorCode::NoNode, Response::Empty),
                    },
                    Request::Ping | Request::CloseSession => (ErrorCode::Ok, Response::Empty),
                    _ => (ErrorCode::Unimplemented, Response::Empty),
                };
                framed
                    .send(&ReplyPacket::new(packet.xid, 5, err, body))
                    .await?;
                if closing {
                    return Ok(seen);
                }
            }
        }
    }
    Ok(seen)
}

#[tokio::test]
async fn client_and_server_talk_through_framed_sockets() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(serve_one(listener));

    let mut client = Framed::new(TcpStream::connect(addr).await?, JuteCodec::new());
    client
        .send(&ConnectRequest {
            timeout_ms: 6000,
            passwd: Bytes::from_static(&[0; PASSWORD_LEN]),
            read_only: Some(false),
            ..ConnectRequest::default()
        })
        .await?;
    let frame = next_frame(&mut client).await?;
    let session = ConnectResponse::decode(&mut frame.freeze())?;
    assert_eq!((session.session_id, session.timeout_ms), (0x1234, 6000));

    let requests = [
        Request::GetData(GetDataRequest {
            path: "/a".into(),
            watch: false,
        }),
        Request::Create(CreateRequest {
            path: "/a".into(),
            data: Some(Bytes::from_static(b"payload")),
            acl: Acl::open_unsafe(),
            flags: 0,
        }),
        Request::GetData(GetDataRequest {
            path: "/a".into(),
            watch: true,
        }),
        Request::Ping,
        Request::CloseSession,
    ];
    let mut replies = Vec::new();
    for (xid, req) in (1..).zip(requests) {
        let packet = RequestPacket::new(xid, req);
        let (sent_xid, op) = (packet.xid, packet.request.op_code());
        client.send(&packet).await?;
        let frame = next_frame(&mut client).await?;
        let reply = ReplyPacket::decode(&mut frame.freeze(), |x| (x == sent_xid).then_some(op))?;
        assert_eq!(reply.header.xid, sent_xid);
        replies.push(reply);
    }
    assert_eq!(replies[0].header.error(), Ok(ErrorCode::NoNode));
    assert_eq!(
        replies[1].body,
        Response::Create(CreateResponse { path: "/a".into() })
    );
    let Response::GetData(got) = &replies[2].body else {
        panic!("getData reply {:?}", replies[2].body);
    };
    assert_eq!(got.data.as_deref(), Some(&b"payload"[..]));
    assert_eq!(got.stat.data_length, 7);
    assert_eq!(replies[3].header.xid, PING_XID);

    let seen = tokio::time::timeout(Duration::from_secs(10), server).await???;
    assert_eq!(
        seen,
        [
            "connect timeout=6000",
            "GetData",
            "Create",
            "GetData",
            "Ping",
            "CloseSession"
        ]
    );
    Ok(())
}

#[tokio::test]
async fn four_letter_word_on_a_fresh_connection() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(serve_one(listener));
    let mut raw = TcpStream::connect(addr).await?;
    raw.write_all(b"ruok\n").await?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut answer)).await??;
    assert_eq!(answer, b"imok");
    let seen = tokio::time::timeout(Duration::from_secs(10), server).await???;
    assert_eq!(seen, ["4lw ruok"]);
    Ok(())
}

async fn next_frame(client: &mut Framed<TcpStream, JuteCodec>) -> anyhow::Result<BytesMut> {
    let next = tokio::time::timeout(Duration::from_secs(10), client.next()).await?;
    Ok(next.ok_or_else(|| anyhow::anyhow!("connection closed"))??)
}

#[test]
fn reply_ops_follow_the_xid() {
    // A helper check that the op map decides the body: the same bytes read as an exists
    // reply and as a setData reply give different variants.
    let stat = Stat {
        version: 3,
        ..Stat::default()
    };
    let reply = ReplyPacket::new(
        4,
        1,
        ErrorCode::Ok,
        Response::Exists(ExistsResponse { stat }),
    );
    let mut bytes = BytesMut::new();
    reply.encode(&mut bytes);
    let bytes = bytes.freeze();
    let as_set = ReplyPacket::decode(&mut bytes.clone(), |_| Some(OpCode::SetData));
    assert_eq!(
        as_set.ok().map(|r| r.body),
        Some(Response::SetData(SetDataResponse { stat }))
    );
    let as_exists = ReplyPacket::decode(&mut bytes.clone(), |_| Some(OpCode::Exists));
    assert_eq!(as_exists.ok(), Some(reply));
}
