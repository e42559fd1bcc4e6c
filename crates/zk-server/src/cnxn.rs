//! One client connection: the jute handshake, four-letter words, and the request loop
//! (ZooKeeper's `NIOServerCnxn` plus the ordering part of its `CommitProcessor`).
//!
//! Replies go out in request order. Writes (and `sync`) go to the write pipeline and are
//! answered when their txn is applied; a read that arrives after a write of the same
//! session waits until that write is answered, so a client always reads its own writes.
//! Reads with nothing before them are answered at once from the local tree. At most
//! `globalOutstandingLimit` requests of one connection are in flight: past that the
//! connection stops reading (back-pressure, not a queue without bound).
//!
//! Bad input — garbage, an oversized frame, half a frame at EOF, an undecodable request —
//! closes this connection alone with one log line.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::Framed;
use tracing::Instrument;
use zk_proto::data::{ErrorCode, Id, OpCode};
use zk_proto::jute::{
    ConnectRequest, ConnectResponse, Inbound, JuteCodec, PASSWORD_LEN, Record, ReplyPacket,
    Request, RequestHeader, RequestPacket, Response, ServerCodec,
};

use crate::acl::{self, AuthProviders};
use crate::pipeline::{Submitter, WriteOp};
use crate::prep::PrepInput;
use crate::server::{ConnHandle, ConnStats, Outbound, Shared, Validity, is_read, last_op_name};
use crate::session;

/// How long a fresh connection may take to send its first frame.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts client connections until the task is dropped, enforcing `maxClientCnxns` per
/// address.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, submitter: Submitter) {
    let per_ip: Arc<Mutex<HashMap<IpAddr, u32>>> = Arc::default();
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let limit = shared.config.max_client_cnxns;
        let count = {
            let mut m = per_ip.lock().unwrap_or_else(|e| e.into_inner());
            let c = m.entry(remote.ip()).or_insert(0);
            *c += 1;
            *c
        };
        if limit != 0 && count > limit {
            tracing::warn!(%remote, limit, "too many connections from this address, closing");
            release(&per_ip, remote.ip());
            drop(stream);
            continue;
        }
        shared
            .stats
            .connections_accepted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let shared = shared.clone();
        let submitter = submitter.clone();
        let per_ip = per_ip.clone();
        tokio::spawn(
            async move {
                let _ = stream.set_nodelay(true);
                if let Err(e) = handle(stream, remote, shared, submitter).await {
                    tracing::info!(%remote, "connection closed: {e}");
                }
                release(&per_ip, remote.ip());
            }
            .in_current_span(),
        );
    }
}

fn release(per_ip: &Mutex<HashMap<IpAddr, u32>>, ip: IpAddr) {
    let mut m = per_ip.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = m.get_mut(&ip) {
        *c -= 1;
        if *c == 0 {
            m.remove(&ip);
        }
    }
}

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
pub enum CnxnError {
    /// The client sent bytes that are not the protocol.
    #[error("bad input from client: {0}")]
    Protocol(#[from] zk_proto::jute::JuteError),
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Something else ended the connection (said in the text).
    #[error("{0}")]
    Closed(String),
}

type Conn = Framed<TcpStream, ServerCodec>;

/// Serves one client connection to its end.
pub async fn handle(
    stream: TcpStream,
    remote: SocketAddr,
    shared: Arc<Shared>,
    submitter: Submitter,
) -> Result<(), CnxnError> {
    // Listed in `cons` from now until this returns.
    let client = shared.register_client(remote);
    // ZooKeeper closes the connection when a length prefix exceeds jute.maxbuffer
    // (`NIOServerCnxn.readLength`).
    let max_frame = shared.config.jute_max_buffer as usize;
    let mut framed = Framed::new(
        stream,
        ServerCodec::new(JuteCodec::with_max_frame_bytes(max_frame)),
    );
    let first = match tokio::time::timeout(HANDSHAKE_TIMEOUT, framed.next()).await {
        Err(_) => return Err(CnxnError::Closed("no handshake within 10 s".into())),
        Ok(None) => return Ok(()),
        Ok(Some(item)) => item?,
    };
    let frame = match first {
        Inbound::FourLetterWord(word) => {
            // ZooKeeper counts the word as a packet received, for the server and the
            // connection.
            shared
                .stats
                .packets_received
                .fetch_add(1, Ordering::Relaxed);
            client.stats.received();
            let text = crate::fourlw::answer(&shared, word);
            let mut stream = framed.into_inner();
            stream.write_all(text.as_bytes()).await?;
            stream.shutdown().await?;
            return Ok(());
        }
        Inbound::Frame(frame) => frame,
    };
    shared
        .stats
        .packets_received
        .fetch_add(1, Ordering::Relaxed);
    client.stats.received();
    let mut body = frame.freeze();
    let connect = ConnectRequest::decode(&mut body)?;
    // A node between roles (electing after its leader died, syncing with the new one)
    // usually serves again within tens of milliseconds: hold the handshake until then,
    // bounded well below the client's connect timeout, instead of closing at once and
    // sending the client into its reconnect backoff.
    let hold = Duration::from_millis((connect.timeout_ms.max(0) as u64 / 10).min(500));
    let mut roles = shared.watch_role();
    let _ = tokio::time::timeout(hold, roles.wait_for(|r| r.is_serving())).await;
    let role = shared.role();
    if !role.is_serving() {
        return Err(CnxnError::Closed(
            "not serving: no quorum / not synced".into(),
        ));
    }
    let last_zxid = shared.last_processed_zxid();
    if connect.last_zxid_seen > last_zxid {
        return Err(CnxnError::Closed(format!(
            "client has seen zxid {:#x}, ours is {last_zxid:#x}: client must try another server",
            connect.last_zxid_seen
        )));
    }
    let timeout_ms = session::negotiate_timeout(
        connect.timeout_ms,
        shared.config.min_session_timeout_ms,
        shared.config.max_session_timeout_ms,
    );
    let (tx, mut rx) = mpsc::unbounded_channel();
    let conn_id = client.stats.id;
    let handle = ConnHandle {
        id: conn_id,
        remote,
        tx,
        stats: client.stats.clone(),
        auth: Arc::new(RwLock::new(acl::connection_ids(remote.ip()))),
    };
    let shared_auth = handle.auth.clone();
    let now = shared.now_ms();

    let session = if connect.session_id == 0 {
        let session = shared.sessions().create_session(timeout_ms, now);
        shared.attach(session, handle);
        let create = WriteOp::Prep(PrepInput::CreateSession {
            session,
            timeout_ms: timeout_ms as i32,
        });
        if submitter.send(create).await.is_err() {
            shared.detach(session, conn_id);
            return Err(CnxnError::Closed("write pipeline stopped".into()));
        }
        let wait = Duration::from_millis(u64::from(timeout_ms).max(2_000));
        match tokio::time::timeout(wait, rx.recv()).await {
            Ok(Some(Outbound::SessionCreated)) => {}
            other => {
                shared.detach(session, conn_id);
                return Err(CnxnError::Closed(format!("session not created: {other:?}")));
            }
        }
        session
    } else {
        let session = connect.session_id;
        // ZooKeeper closes the session's current connection before it looks at the
        // password or the expiry (`processConnectRequest`, CLIENT_RECONNECT).
        shared.send_to(session, Outbound::Close);
        let validity = if session::check_password(session, &connect.passwd) {
            shared.revalidate(session, timeout_ms).await
        } else {
            Validity::Expired
        };
        if validity == Validity::Unknown {
            // This server lost its leader before it could tell: no answer, the client
            // tries another server (ZooKeeper closes the connection too).
            return Err(CnxnError::Closed(format!(
                "session {session:#x} could not be revalidated (no leader): \
                 client must try another server"
            )));
        }
        if validity == Validity::Expired {
            // ZooKeeper answers an expired or unknown session (or a wrong password) with
            // a zero timeout, session and password, then closes.
            let answer = ConnectResponse {
                protocol_version: 0,
                timeout_ms: 0,
                session_id: 0,
                passwd: Bytes::from_static(&[0; PASSWORD_LEN]),
                read_only: connect.read_only.map(|_| false),
            };
            framed.send(&answer).await?;
            return Err(CnxnError::Closed(format!(
                "session {session:#x} expired or invalid"
            )));
        }
        shared.attach(session, handle);
        // The node may have stopped serving (and closed every connection) while this
        // one was being revalidated: do not leave it attached to a node that is not
        // serving.
        if !shared.role().is_serving() {
            shared.detach(session, conn_id);
            return Err(CnxnError::Closed(
                "stopped serving during the handshake".into(),
            ));
        }
        session
    };
    let answer = ConnectResponse {
        protocol_version: 0,
        timeout_ms: timeout_ms as i32,
        session_id: session,
        passwd: Bytes::copy_from_slice(&session::generate_password(session)),
        read_only: connect.read_only.map(|_| false),
    };
    framed.send(&answer).await?;
    shared.stats.packets_sent.fetch_add(1, Ordering::Relaxed);
    client.stats.sent(1);
    client.stats.set_session(session, timeout_ms);
    tracing::info!(%remote, session = format_args!("{session:#x}"), timeout_ms, "session established");

    let mut conn = Session {
        shared: shared.clone(),
        submitter,
        session,
        timeout_ms,
        auth: acl::connection_ids(remote.ip()),
        shared_auth,
        providers: AuthProviders::new(shared.config.super_digest.clone()),
        pending: VecDeque::new(),
        remote,
        client: client.stats.clone(),
    };
    let result = conn.run(&mut framed, &mut rx).await;
    shared.detach(session, conn_id);
    let outstanding = conn.pending.len() as u64;
    shared
        .stats
        .outstanding
        .fetch_sub(outstanding, std::sync::atomic::Ordering::Relaxed);
    result
}

async fn flush(framed: &mut Conn) -> Result<(), CnxnError> {
    SinkExt::<&ReplyPacket>::flush(framed).await?;
    Ok(())
}

/// A request waiting for its turn to be answered.
enum Pending {
    /// A write (or sync) submitted to the pipeline; its reply comes as `Outbound::Reply`.
    Write { xid: i32, op: OpCode, at: Instant },
    /// A read that arrived after a write of this session.
    Read {
        xid: i32,
        request: Request,
        at: Instant,
    },
    /// A read whose body could not be decoded, answered with `err` in its turn.
    Failed {
        xid: i32,
        err: ErrorCode,
        at: Instant,
    },
}

struct Session {
    shared: Arc<Shared>,
    submitter: Submitter,
    session: i64,
    timeout_ms: u32,
    auth: Vec<Id>,
    /// The same ids, where event delivery reads them (`ConnHandle::auth`).
    shared_auth: Arc<RwLock<Vec<Id>>>,
    providers: AuthProviders,
    pending: VecDeque<Pending>,
    remote: SocketAddr,
    client: Arc<ConnStats>,
}

impl Session {
    async fn run(
        &mut self,
        framed: &mut Conn,
        rx: &mut mpsc::UnboundedReceiver<Outbound>,
    ) -> Result<(), CnxnError> {
        let cap = self.shared.config.global_outstanding_limit.max(1) as usize;
        loop {
            let can_read = self.pending.len() < cap;
            // Biased, messages first: an event (or reply) queued for this connection
            // before the client's next request arrived goes out before that request's
            // answer, as ZooKeeper orders them.
            tokio::select! {
                biased;
                out = rx.recv() => {
                    let Some(out) = out else { return Ok(()) };
                    if self.on_outbound(framed, out).await? {
                        flush(framed).await?;
                        return Ok(());
                    }
                    // Take whatever else is queued before flushing once.
                    while let Ok(out) = rx.try_recv() {
                        if self.on_outbound(framed, out).await? {
                            flush(framed).await?;
                            return Ok(());
                        }
                    }
                }
                frame = framed.next(), if can_read => {
                    let Some(frame) = frame else { return Ok(()) };
                    let Inbound::Frame(frame) = frame? else {
                        return Err(CnxnError::Closed("four-letter word after the handshake".into()));
                    };
                    let mut body = frame.freeze();
                    let header = RequestHeader::decode(&mut body)?;
                    match Request::decode_type(header.op, &mut body) {
                        Ok(request) => {
                            // The xid as sent: Java's NIO client renumbers setWatches, and
                            // clients other than Java's send auth with an ordinary xid.
                            let packet = RequestPacket {
                                xid: header.xid,
                                request,
                            };
                            if self.on_request(framed, packet).await? {
                                // What the request queued (an AuthFailed reply) goes out
                                // before the connection closes.
                                flush(framed).await?;
                                return Ok(());
                            }
                        }
                        Err(e) => self.on_malformed(framed, header, e).await?,
                    }
                }
            }
            flush(framed).await?;
        }
    }

    fn count_sent(&self, n: u64) {
        self.shared
            .stats
            .packets_sent
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        self.client.sent(n);
    }

    /// A request that arrived at `at` is answered (`write`: it went through a txn).
    fn finished(&self, at: Instant, op: &'static str, xid: i32, zxid: i64, write: bool) {
        let stats = &self.shared.stats;
        let us = at.elapsed().as_micros() as u64;
        stats.record_request(us, write);
        stats
            .outstanding
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.client
            .responded(op, xid, zxid, us, self.shared.now_ms());
    }

    /// Handles one request; true when the connection is to close.
    async fn on_request(
        &mut self,
        framed: &mut Conn,
        packet: RequestPacket,
    ) -> Result<bool, CnxnError> {
        let stats = &self.shared.stats;
        stats
            .packets_received
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.client.received();
        self.shared.touch_session(self.session, self.timeout_ms);
        let xid = packet.xid;
        let at = Instant::now();
        match packet.request {
            Request::Auth(auth) => {
                // Handled on arrival, as ZooKeeper does; later requests carry the new ids.
                let reply = match self.providers.authenticate(
                    &auth.scheme,
                    &auth.auth,
                    self.remote.ip(),
                ) {
                    Ok(ids) => {
                        acl::add_auth_ids(&mut self.auth, ids);
                        self.shared_auth
                            .write()
                            .unwrap_or_else(|e| e.into_inner())
                            .clone_from(&self.auth);
                        // ZooKeeper answers with the request's xid (clients such as
                        // zookeeper-client do not use -4).
                        ReplyPacket::new(xid, 0, ErrorCode::Ok, Response::Empty)
                    }
                    Err(e) => {
                        // ZooKeeper sends the AuthFailed reply and closes the connection
                        // (no event: the client makes its own AuthFailed event).
                        tracing::info!(remote = %self.remote, scheme = %auth.scheme, "authentication failed");
                        framed
                            .feed(&ReplyPacket::new(xid, 0, e.code(), Response::Empty))
                            .await?;
                        self.count_sent(1);
                        return Ok(true);
                    }
                };
                framed.feed(&reply).await?;
                self.count_sent(1);
                Ok(false)
            }
            Request::Sasl(_) => {
                framed
                    .feed(&ReplyPacket::new(
                        xid,
                        self.shared.last_processed_zxid(),
                        ErrorCode::Unimplemented,
                        Response::Empty,
                    ))
                    .await?;
                self.count_sent(1);
                Ok(false)
            }
            request if is_read(&request) => {
                stats
                    .outstanding
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.client.request_queued();
                if self.pending.is_empty() {
                    self.answer_read(framed, xid, &request, at).await?;
                } else {
                    self.pending.push_back(Pending::Read { xid, request, at });
                }
                Ok(false)
            }
            request => {
                stats
                    .outstanding
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.client.request_queued();
                let op_code = request.op_code();
                let op = match request {
                    Request::Sync(r) => WriteOp::Sync {
                        session: self.session,
                        cxid: xid,
                        path: r.path,
                    },
                    Request::CloseSession => WriteOp::Prep(PrepInput::CloseSession {
                        session: self.session,
                        cxid: xid,
                    }),
                    request => WriteOp::Prep(PrepInput::Client {
                        session: self.session,
                        cxid: xid,
                        request,
                        auth: self.auth.clone(),
                    }),
                };
                self.pending.push_back(Pending::Write {
                    xid,
                    op: op_code,
                    at,
                });
                if self.submitter.send(op).await.is_err() {
                    return Err(CnxnError::Closed("write pipeline stopped".into()));
                }
                Ok(false)
            }
        }
    }

    /// A request whose header decoded but whose body did not. As in ZooKeeper, a write
    /// becomes an error txn (`MarshallingError`, with a zxid) and a read is answered with
    /// `MarshallingError`; the connection stays open. Anything else closes it.
    async fn on_malformed(
        &mut self,
        framed: &mut Conn,
        header: RequestHeader,
        error: zk_proto::jute::JuteError,
    ) -> Result<(), CnxnError> {
        let Ok(op) = OpCode::try_from(header.op) else {
            // ZooKeeper answers an op it does not know with Unimplemented (zxid -1) and
            // closes the connection.
            let reply = ReplyPacket::new(header.xid, -1, ErrorCode::Unimplemented, Response::Empty);
            framed.feed(&reply).await?;
            self.count_sent(1);
            flush(framed).await?;
            return Err(error.into());
        };
        let stats = &self.shared.stats;
        let at = Instant::now();
        tracing::info!(remote = %self.remote, ?op, "undecodable request: {error}");
        match op {
            OpCode::Create
            | OpCode::Create2
            | OpCode::CreateContainer
            | OpCode::CreateTtl
            | OpCode::Delete
            | OpCode::SetData
            | OpCode::SetAcl
            | OpCode::Check
            | OpCode::Multi
            | OpCode::Reconfig => {
                stats.packets_received.fetch_add(1, Ordering::Relaxed);
                stats.outstanding.fetch_add(1, Ordering::Relaxed);
                self.client.received();
                self.client.request_queued();
                self.pending.push_back(Pending::Write {
                    xid: header.xid,
                    op,
                    at,
                });
                let op = WriteOp::Prep(PrepInput::Malformed {
                    session: self.session,
                    cxid: header.xid,
                });
                if self.submitter.send(op).await.is_err() {
                    return Err(CnxnError::Closed("write pipeline stopped".into()));
                }
                Ok(())
            }
            OpCode::Exists
            | OpCode::GetData
            | OpCode::GetChildren
            | OpCode::GetChildren2
            | OpCode::GetAcl
            | OpCode::Sync
            | OpCode::GetAllChildrenNumber
            | OpCode::GetEphemerals
            | OpCode::MultiRead
            | OpCode::CheckWatches
            | OpCode::RemoveWatches
            | OpCode::AddWatch => {
                stats.packets_received.fetch_add(1, Ordering::Relaxed);
                stats.outstanding.fetch_add(1, Ordering::Relaxed);
                self.client.received();
                self.client.request_queued();
                let err = ErrorCode::MarshallingError;
                if self.pending.is_empty() {
                    self.answer_failed(framed, header.xid, err, at).await
                } else {
                    self.pending.push_back(Pending::Failed {
                        xid: header.xid,
                        err,
                        at,
                    });
                    Ok(())
                }
            }
            _ => Err(error.into()),
        }
    }

    async fn answer_failed(
        &mut self,
        framed: &mut Conn,
        xid: i32,
        err: ErrorCode,
        at: Instant,
    ) -> Result<(), CnxnError> {
        let zxid = self.shared.last_processed_zxid();
        framed
            .feed(&ReplyPacket::new(xid, zxid, err, Response::Empty))
            .await?;
        self.count_sent(1);
        self.finished(at, "NA", xid, zxid, false);
        Ok(())
    }

    async fn answer_read(
        &mut self,
        framed: &mut Conn,
        xid: i32,
        request: &Request,
        at: Instant,
    ) -> Result<(), CnxnError> {
        let mut events = Vec::new();
        let reply = self
            .shared
            .read(self.session, &self.auth, xid, request, &mut events);
        for e in &events {
            framed.feed(e).await?;
        }
        framed.feed(&reply).await?;
        self.count_sent(events.len() as u64 + 1);
        let op = last_op_name(request.op_code());
        self.finished(at, op, xid, reply.header.zxid, false);
        Ok(())
    }

    /// Handles one message for this connection; true when the connection is to close.
    async fn on_outbound(&mut self, framed: &mut Conn, out: Outbound) -> Result<bool, CnxnError> {
        match out {
            Outbound::Notify(p) => {
                framed.feed(&p).await?;
                self.count_sent(1);
            }
            Outbound::Reply(p) => {
                match self.pending.pop_front() {
                    Some(Pending::Write { xid, op, at }) => {
                        if xid != p.header.xid {
                            tracing::warn!(
                                expected = xid,
                                got = p.header.xid,
                                "reply out of order"
                            );
                        }
                        self.finished(at, last_op_name(op), xid, p.header.zxid, true);
                    }
                    Some(other) => {
                        tracing::warn!(got = p.header.xid, "reply with no outstanding write");
                        self.pending.push_front(other);
                    }
                    None => tracing::warn!(got = p.header.xid, "reply with no outstanding write"),
                }
                framed.feed(&p).await?;
                self.count_sent(1);
                // The reads queued behind that write can go now.
                while let Some(Pending::Read { .. } | Pending::Failed { .. }) = self.pending.front()
                {
                    match self.pending.pop_front() {
                        Some(Pending::Read { xid, request, at }) => {
                            self.answer_read(framed, xid, &request, at).await?;
                        }
                        Some(Pending::Failed { xid, err, at }) => {
                            self.answer_failed(framed, xid, err, at).await?;
                        }
                        _ => break,
                    }
                }
            }
            Outbound::SessionCreated => {}
            Outbound::Close => return Ok(true),
        }
        Ok(false)
    }
}
