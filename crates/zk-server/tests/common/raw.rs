//! A minimal jute client over a plain TCP stream, for what `zookeeper-client` hides: exact
//! error codes of malformed requests, null data, per-op multi results, the order of
//! notifications and replies, session ids and passwords, bad frames.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zk_proto::data::{Acl, ErrorCode, OpCode, Stat};
use zk_proto::jute::{
    AuthPacket, ConnectRequest, ConnectResponse, CreateRequest, CreateTtlRequest, DeleteRequest,
    ExistsRequest, GetDataRequest, Record, ReplyPacket, Request, RequestPacket, Response,
    SetDataRequest, WatcherEvent,
};

/// How long any single read from the server may take before the test fails.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest frame the raw client accepts.
const MAX_FRAME: usize = 4 << 20;

/// A raw client connection with a session.
pub struct Raw {
    stream: TcpStream,
    next_xid: i32,
    /// The session id.
    pub session_id: i64,
    /// The session password.
    pub passwd: Bytes,
    /// The negotiated timeout.
    pub timeout_ms: i32,
    /// The last zxid seen in a reply.
    pub last_zxid: i64,
    /// Notifications received while waiting for replies, oldest first.
    pub events: VecDeque<(i64, WatcherEvent)>,
}

/// Writes `len(payload) | payload`.
pub async fn write_frame(stream: &mut TcpStream, payload: &[u8]) -> Result<()> {
    let len = i32::try_from(payload.len())?;
    let mut buf = Vec::with_capacity(payload.len() + 4);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(payload);
    stream.write_all(&buf).await?;
    Ok(())
}

/// Reads one frame; `Ok(None)` on a clean end of stream (or a reset) before its first byte.
pub async fn read_frame(stream: &mut TcpStream) -> Result<Option<Bytes>> {
    let mut len = [0u8; 4];
    match tokio::time::timeout(READ_TIMEOUT, stream.read_exact(&mut len)).await {
        Err(_) => bail!("no frame from the server within {READ_TIMEOUT:?}"),
        Ok(Err(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ) =>
        {
            return Ok(None);
        }
        Ok(Err(e)) => return Err(e.into()),
        Ok(Ok(_)) => {}
    }
    let len = usize::try_from(i32::from_be_bytes(len)).context("negative frame length")?;
    if len > MAX_FRAME {
        bail!("frame of {len} bytes");
    }
    let mut body = vec![0u8; len];
    tokio::time::timeout(READ_TIMEOUT, stream.read_exact(&mut body))
        .await
        .context("frame body timed out")??;
    Ok(Some(Bytes::from(body)))
}

/// True if the server closes `stream` (EOF or reset) within [`READ_TIMEOUT`], reading
/// and discarding whatever it still sends.
pub async fn closed_by_server(stream: &mut TcpStream) -> Result<bool> {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + READ_TIMEOUT;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return Ok(false),
            Ok(Ok(0)) => return Ok(true),
            Ok(Ok(_)) => continue,
            Ok(Err(_)) => return Ok(true),
        }
    }
}

/// The handshake a client sends for a new session (or to resume `session_id`).
pub fn connect_request(
    timeout_ms: i32,
    session_id: i64,
    passwd: Bytes,
    last_zxid: i64,
) -> ConnectRequest {
    ConnectRequest {
        protocol_version: 0,
        last_zxid_seen: last_zxid,
        timeout_ms,
        session_id,
        passwd,
        read_only: Some(false),
    }
}

/// Sends a handshake and reads the answer; the stream is returned for further use.
pub async fn handshake(
    addr: SocketAddr,
    req: &ConnectRequest,
) -> Result<(TcpStream, Option<ConnectResponse>)> {
    let mut stream = TcpStream::connect(addr).await.context("connecting")?;
    stream.set_nodelay(true)?;
    let mut buf = BytesMut::new();
    req.encode(&mut buf);
    write_frame(&mut stream, &buf).await?;
    let resp = match read_frame(&mut stream).await? {
        Some(mut frame) => Some(ConnectResponse::decode(&mut frame)?),
        None => None,
    };
    Ok((stream, resp))
}

impl Raw {
    /// A new session with the given requested timeout.
    pub async fn connect(addr: SocketAddr, timeout_ms: i32) -> Result<Raw> {
        Self::resume(addr, timeout_ms, 0, Bytes::from_static(&[0; 16]), 0).await
    }

    /// Resumes `session_id` (or starts a new session when it is 0).
    pub async fn resume(
        addr: SocketAddr,
        timeout_ms: i32,
        session_id: i64,
        passwd: Bytes,
        last_zxid: i64,
    ) -> Result<Raw> {
        let req = connect_request(timeout_ms, session_id, passwd, last_zxid);
        let (stream, resp) = handshake(addr, &req).await?;
        let resp =
            resp.context("the server closed the connection instead of answering the handshake")?;
        if resp.session_id == 0 {
            bail!("session refused: {resp:?}");
        }
        Ok(Raw {
            stream,
            next_xid: 1,
            session_id: resp.session_id,
            passwd: resp.passwd,
            timeout_ms: resp.timeout_ms,
            last_zxid,
            events: VecDeque::new(),
        })
    }

    /// The socket (for tests that write bad bytes to it).
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Sends `request` and waits for its reply; notifications that arrive first are kept
    /// in [`Raw::events`].
    pub async fn call(&mut self, request: Request) -> Result<ReplyPacket> {
        let xid = match request.special_xid() {
            Some(x) => x,
            None => {
                let x = self.next_xid;
                self.next_xid += 1;
                x
            }
        };
        let op = request.op_code();
        let packet = RequestPacket::new(xid, request);
        let mut buf = BytesMut::new();
        packet.encode(&mut buf);
        write_frame(&mut self.stream, &buf).await?;
        self.read_reply(xid, op).await
    }

    async fn read_reply(&mut self, xid: i32, op: OpCode) -> Result<ReplyPacket> {
        // Bounded: every frame read has a timeout, and a server sends at most a few
        // notifications per test before the reply.
        for _ in 0..10_000 {
            let mut frame = read_frame(&mut self.stream).await?.with_context(|| {
                format!("connection closed while waiting for the reply to xid {xid}")
            })?;
            let reply = ReplyPacket::decode(&mut frame, |x| (x == xid).then_some(op))
                .with_context(|| format!("decoding a reply while waiting for xid {xid}"))?;
            if let Response::Notification(ev) = reply.body {
                self.events.push_back((reply.header.zxid, ev));
                continue;
            }
            if reply.header.xid != xid {
                bail!("reply to xid {} while waiting for {xid}", reply.header.xid);
            }
            if reply.header.zxid > 0 {
                self.last_zxid = reply.header.zxid;
            }
            return Ok(reply);
        }
        bail!("too many frames before the reply to xid {xid}")
    }

    /// The next notification (already received, or the next frame).
    pub async fn next_event(&mut self) -> Result<WatcherEvent> {
        if let Some((_, ev)) = self.events.pop_front() {
            return Ok(ev);
        }
        let mut frame = read_frame(&mut self.stream)
            .await?
            .context("connection closed while waiting for an event")?;
        let reply = ReplyPacket::decode(&mut frame, |_| None)?;
        match reply.body {
            Response::Notification(ev) => Ok(ev),
            other => bail!("expected a notification, got {other:?}"),
        }
    }

    /// Sends a ping and returns once it is answered; every notification the server queued
    /// before is then in [`Raw::events`].
    pub async fn ping(&mut self) -> Result<()> {
        let r = self.call(Request::Ping).await?;
        anyhow::ensure!(r.header.err == 0, "ping failed: {:?}", r.header);
        Ok(())
    }

    /// `addauth scheme auth`: the reply's error code.
    pub async fn auth(&mut self, scheme: &str, auth: &[u8]) -> Result<i32> {
        let r = self
            .call(Request::Auth(AuthPacket {
                auth_type: 0,
                scheme: scheme.into(),
                auth: Bytes::copy_from_slice(auth),
            }))
            .await?;
        Ok(r.header.err)
    }

    /// create2 with `flags` and an open ACL: `Ok((path, stat))` or the error code.
    pub async fn create(
        &mut self,
        path: &str,
        data: Option<&[u8]>,
        flags: i32,
    ) -> Result<Result<(String, Stat), i32>> {
        self.create_acl(path, data, Acl::open_unsafe(), flags).await
    }

    /// create2 with an ACL.
    pub async fn create_acl(
        &mut self,
        path: &str,
        data: Option<&[u8]>,
        acl: Vec<Acl>,
        flags: i32,
    ) -> Result<Result<(String, Stat), i32>> {
        let r = self
            .call(Request::Create2(CreateRequest {
                path: path.into(),
                data: data.map(Bytes::copy_from_slice),
                acl,
                flags,
            }))
            .await?;
        Ok(match r.body {
            Response::Create2(c) => Ok((c.path, c.stat)),
            _ => Err(nonzero(r.header.err)),
        })
    }

    /// createTTL.
    pub async fn create_ttl(
        &mut self,
        path: &str,
        flags: i32,
        ttl: i64,
    ) -> Result<Result<(String, Stat), i32>> {
        let r = self
            .call(Request::CreateTtl(CreateTtlRequest {
                path: path.into(),
                data: Some(Bytes::from_static(b"t")),
                acl: Acl::open_unsafe(),
                flags,
                ttl,
            }))
            .await?;
        Ok(match r.body {
            Response::Create2(c) => Ok((c.path, c.stat)),
            _ => Err(nonzero(r.header.err)),
        })
    }

    /// createContainer.
    pub async fn create_container(&mut self, path: &str) -> Result<Result<(String, Stat), i32>> {
        let r = self
            .call(Request::CreateContainer(CreateRequest {
                path: path.into(),
                data: None,
                acl: Acl::open_unsafe(),
                flags: 4,
            }))
            .await?;
        Ok(match r.body {
            Response::Create2(c) => Ok((c.path, c.stat)),
            _ => Err(nonzero(r.header.err)),
        })
    }

    /// delete: the error code (0 = deleted).
    pub async fn delete(&mut self, path: &str, version: i32) -> Result<i32> {
        let r = self
            .call(Request::Delete(DeleteRequest {
                path: path.into(),
                version,
            }))
            .await?;
        Ok(r.header.err)
    }

    /// exists: the stat, or the error code.
    pub async fn exists(&mut self, path: &str, watch: bool) -> Result<Result<Stat, i32>> {
        let r = self
            .call(Request::Exists(ExistsRequest {
                path: path.into(),
                watch,
            }))
            .await?;
        Ok(match r.body {
            Response::Exists(e) => Ok(e.stat),
            _ => Err(nonzero(r.header.err)),
        })
    }

    /// getData: data and stat, or the error code.
    pub async fn get_data(
        &mut self,
        path: &str,
        watch: bool,
    ) -> Result<Result<(Option<Bytes>, Stat), i32>> {
        let r = self
            .call(Request::GetData(GetDataRequest {
                path: path.into(),
                watch,
            }))
            .await?;
        Ok(match r.body {
            Response::GetData(g) => Ok((g.data, g.stat)),
            _ => Err(nonzero(r.header.err)),
        })
    }

    /// setData: the new stat, or the error code.
    pub async fn set_data(
        &mut self,
        path: &str,
        data: Option<&[u8]>,
        version: i32,
    ) -> Result<Result<Stat, i32>> {
        let r = self
            .call(Request::SetData(SetDataRequest {
                path: path.into(),
                data: data.map(Bytes::copy_from_slice),
                version,
            }))
            .await?;
        Ok(match r.body {
            Response::SetData(s) => Ok(s.stat),
            _ => Err(nonzero(r.header.err)),
        })
    }

    /// closeSession: waits for the reply.
    pub async fn close(mut self) -> Result<i32> {
        let r = self.call(Request::CloseSession).await?;
        Ok(r.header.err)
    }
}

/// An error code that must not be 0 (a reply without the expected body).
fn nonzero(err: i32) -> i32 {
    if err == 0 {
        ErrorCode::MarshallingError.code()
    } else {
        err
    }
}
