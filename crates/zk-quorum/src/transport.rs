//! The gRPC transport: one bidirectional `Learn` stream per learner, learner → leader.
//!
//! Pluggable both ways so it also runs over a simulated network: the leader serves any
//! stream of accepted connections (`serve_with_incoming`), a learner connects through any
//! [`Dialer`]. [`TcpDialer`] binds the node's own IP (port 0) before connecting, so that
//! outgoing connections come from 127.0.0.2, … like the listening socket does.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures::StreamExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::Service;
use tonic::transport::Uri;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, warn};
use zk_proto::peer::quorum as pb;
use zk_proto::peer::quorum::quorum_server::Quorum;

use crate::types::{Packet, ServerId};

/// Largest message accepted on a quorum stream: a txn is at most ZooKeeper's 1 MiB
/// `jute.maxbuffer` and snapshot chunks are at most 1 MiB, plus framing.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Opens a byte stream to a peer's quorum address (`host:port`).
pub trait Dialer: Clone + Send + Sync + 'static {
    /// The connection type.
    type Io: AsyncRead + AsyncWrite + Send + Unpin + 'static;
    /// Connects to `addr`.
    fn dial(&self, addr: &str) -> Pin<Box<dyn Future<Output = io::Result<Self::Io>> + Send>>;
}

/// Dials over TCP from a fixed local IP (port 0).
#[derive(Debug, Clone, Default)]
pub struct TcpDialer {
    /// The local IP to bind before connecting; `None` lets the OS choose.
    pub local_ip: Option<IpAddr>,
}

impl Dialer for TcpDialer {
    type Io = tokio::net::TcpStream;

    fn dial(&self, addr: &str) -> Pin<Box<dyn Future<Output = io::Result<Self::Io>> + Send>> {
        let addr = addr.to_owned();
        let local_ip = self.local_ip;
        Box::pin(async move {
            let target = tokio::net::lookup_host(&addr)
                .await?
                .next()
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, format!("no address for {addr}"))
                })?;
            let socket = if target.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            if let Some(ip) = local_ip {
                socket.bind(SocketAddr::new(ip, 0))?;
            }
            let stream = socket.connect(target).await?;
            stream.set_nodelay(true)?;
            Ok(stream)
        })
    }
}

/// Adapts a [`Dialer`] to the tower service tonic's `connect_with_connector` takes.
#[derive(Clone)]
pub(crate) struct DialService<D>(pub(crate) D);

impl<D: Dialer> Service<Uri> for DialService<D> {
    type Response = TokioIo<D::Io>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let dialer = self.0.clone();
        let authority = uri.authority().map(|a| a.to_string());
        Box::pin(async move {
            let addr = authority.ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "uri without authority")
            })?;
            Ok(TokioIo::new(dialer.dial(&addr).await?))
        })
    }
}

/// Binds a TCP listener on `ip:port` (port 0 picks one) and returns it as the stream of
/// accepted connections tonic's `serve_with_incoming` takes (with `TCP_NODELAY` set on each,
/// which tonic only does for listeners it binds itself), with its address.
pub async fn bind_local(
    ip: IpAddr,
    port: u16,
) -> io::Result<(
    impl futures::Stream<Item = io::Result<tokio::net::TcpStream>> + Send + 'static,
    SocketAddr,
)> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, port)).await?;
    let addr = listener.local_addr()?;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|conn| {
        let conn = conn?;
        conn.set_nodelay(true)?;
        Ok(conn)
    });
    Ok((incoming, addr))
}

/// What goes down a learner's stream: one packet, or a batch queued as one item (a
/// snapshot's chunks, a log range), so a single queue slot holds it.
#[derive(Debug)]
pub(crate) enum Outbound {
    One(Packet),
    Batch(Vec<Packet>),
    /// Ends the stream with this error (e.g. the learner's packet did not decode), so the
    /// learner sees why instead of a clean end of stream.
    Failed(Status),
}

/// What the learner streams report to the leader task.
#[derive(Debug)]
pub(crate) enum StreamEvent {
    /// A learner opened a stream and introduced itself; `tx` is its bounded send queue.
    Opened {
        sid: ServerId,
        conn: u64,
        tx: mpsc::Sender<Outbound>,
        first: Packet,
    },
    /// A packet on stream `conn`.
    Packet {
        sid: ServerId,
        conn: u64,
        packet: Packet,
    },
    /// Stream `conn` ended or failed.
    Closed { sid: ServerId, conn: u64 },
}

/// The `Quorum` service a leader serves.
pub(crate) struct LearnService {
    pub(crate) events: mpsc::Sender<StreamEvent>,
    pub(crate) queue_capacity: usize,
    pub(crate) next_conn: Arc<AtomicU64>,
}

type LearnStream = Pin<Box<dyn futures::Stream<Item = Result<pb::QuorumPacket, Status>> + Send>>;

#[tonic::async_trait]
impl Quorum for LearnService {
    type LearnStream = LearnStream;

    async fn learn(
        &self,
        request: Request<Streaming<pb::QuorumPacket>>,
    ) -> Result<Response<LearnStream>, Status> {
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("stream ended before FOLLOWERINFO"))?;
        let first = Packet::try_from(first).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let Packet::LearnerInfo(info) = &first else {
            return Err(Status::invalid_argument(format!(
                "expected FOLLOWERINFO, got {}",
                first.name()
            )));
        };
        let sid = info.sid;
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.queue_capacity.max(1));
        let fail = tx.downgrade();
        self.events
            .send(StreamEvent::Opened {
                sid,
                conn,
                tx,
                first,
            })
            .await
            .map_err(|_| Status::unavailable("not leading"))?;
        let events = self.events.clone();
        tokio::spawn(async move {
            let failure = loop {
                match inbound.message().await {
                    Ok(Some(p)) => match Packet::try_from(p) {
                        Ok(packet) => {
                            let ev = StreamEvent::Packet { sid, conn, packet };
                            if events.send(ev).await.is_err() {
                                break None;
                            }
                        }
                        Err(e) => {
                            warn!(peer = sid, error = %e, "undecodable packet from learner");
                            break Some(Status::invalid_argument(e.to_string()));
                        }
                    },
                    Ok(None) => break None,
                    Err(status) => {
                        // A decode error (e.g. a message over the size limit) arrives here:
                        // pass it back down so the learner sees it.
                        debug!(peer = sid, %status, "learner stream failed");
                        break Some(status);
                    }
                }
            };
            if let (Some(status), Some(tx)) = (failure, fail.upgrade()) {
                let _ = tx.try_send(Outbound::Failed(status));
            }
            let _ = events.send(StreamEvent::Closed { sid, conn }).await;
        });
        let out = ReceiverStream::new(rx)
            .flat_map(|o| {
                // Converted one by one as the stream is read: a batch may be a whole log
                // range or snapshot.
                let items: Box<dyn Iterator<Item = Result<pb::QuorumPacket, Status>> + Send> =
                    match o {
                        Outbound::One(p) => Box::new(std::iter::once(Ok(p.into()))),
                        Outbound::Batch(v) => Box::new(v.into_iter().map(|p| Ok(p.into()))),
                        Outbound::Failed(status) => Box::new(std::iter::once(Err(status))),
                    };
                futures::stream::iter(items)
            })
            .scan(false, |failed, item| {
                if *failed {
                    return futures::future::ready(None);
                }
                *failed = item.is_err();
                futures::future::ready(Some(item))
            });
        Ok(Response::new(Box::pin(out)))
    }
}
