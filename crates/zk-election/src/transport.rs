//! The gRPC transport: one bidirectional `Exchange` stream per pair of peers.
//!
//! ZooKeeper's `QuorumCnxManager` rule decides which stream survives: the connection
//! initiated by the larger sid. So a node dials every peer with a smaller sid and keeps
//! that stream up (reconnecting with capped, jittered backoff); a peer with a larger sid
//! dials us. If a smaller sid connects to us, we refuse the stream and dial it back at
//! once (the smaller node does that to wake us up when it has something to say).
//!
//! Per peer there is one slot holding the newest notification (a `watch` channel): a
//! stream sends the slot's value when it opens (ZooKeeper resends the last message on a
//! new connection) and then every new value. Older unsent values are overwritten, so no
//! queue grows without bound.
//!
//! The transport is pluggable: the server side takes any stream of accepted connections
//! (`serve_with_incoming`) and the client side any [`Dialer`], so it can run over real
//! TCP ([`TcpDialer`]) or a simulated network.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use hyper_util::rt::TokioIo;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, mpsc, watch};
use tokio_stream::wrappers::WatchStream;
use tokio_util::sync::CancellationToken;
use tonic::codegen::Service;
use tonic::transport::{Endpoint, Uri};
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, debug, info, warn};
use zk_proto::peer::election as pb;
use zk_proto::peer::election::election_client::ElectionClient;
use zk_proto::peer::election::election_message::Msg;

use crate::config::NodeConfig;
use crate::error::DecodeError;
use crate::vote::{Notification, Sid};

/// Version carried in `Hello`.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest message accepted on an election stream (a notification is under 100 bytes;
/// ZooKeeper's `PACKETMAXSIZE` is 512 KiB).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Capacity of the queue from the streams to the election task (ZooKeeper: 100).
pub const EVENT_QUEUE: usize = 128;

/// Opens a byte stream to a peer's election address (`host:port`).
pub trait Dialer: Clone + Send + Sync + 'static {
    /// The connection type.
    type Io: AsyncRead + AsyncWrite + Send + Unpin + 'static;
    /// Connects to `addr`.
    fn dial(&self, addr: &str) -> Pin<Box<dyn Future<Output = io::Result<Self::Io>> + Send>>;
}

/// Dials over TCP from a fixed local IP (port 0), so that a node's outgoing connections
/// come from its own address (127.0.0.2, …) as its listening socket does.
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

/// Adapts a [`Dialer`] to the tower service tonic's `connect_with_connector` wants.
#[derive(Clone)]
struct DialService<D>(D);

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

/// What the streams report to the election task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportEvent {
    /// A notification from an authenticated peer.
    Received(Notification),
    /// The stream to a peer is up.
    Up(Sid),
    /// The stream to a peer is gone.
    Down(Sid),
}

/// Per-peer state shared by the server handler and the dialing task.
struct PeerLink {
    addr: String,
    /// The newest notification for this peer.
    slot: watch::Sender<Option<Notification>>,
    /// Generation of the current stream (bumped on every new stream).
    generation: watch::Sender<u64>,
    /// Whether a stream is up.
    up: watch::Sender<bool>,
    /// Wakes the dialing task (reconnect now).
    poke: Notify,
}

/// State shared by all transport tasks of one node.
pub(crate) struct Shared {
    myid: Sid,
    cfg: NodeConfig,
    peers: BTreeMap<Sid, PeerLink>,
    events: mpsc::Sender<TransportEvent>,
    /// Cancelled when the node stops: ends every stream, including those whose tasks
    /// the gRPC server spawned.
    pub(crate) stop: CancellationToken,
}

impl Shared {
    pub(crate) fn new(cfg: NodeConfig, events: mpsc::Sender<TransportEvent>) -> Arc<Self> {
        let peers = cfg
            .members
            .iter()
            .filter(|(sid, _)| **sid != cfg.myid)
            .map(|(sid, m)| {
                (
                    *sid,
                    PeerLink {
                        addr: m.election_addr.clone(),
                        slot: watch::Sender::new(None),
                        generation: watch::Sender::new(0),
                        up: watch::Sender::new(false),
                        poke: Notify::new(),
                    },
                )
            })
            .collect();
        Arc::new(Shared {
            myid: cfg.myid,
            cfg,
            peers,
            events,
            stop: CancellationToken::new(),
        })
    }

    /// Replaces the pending notification for a peer (only the newest matters).
    pub(crate) fn send(&self, to: Sid, n: Notification) {
        match self.peers.get(&to) {
            Some(p) => {
                p.slot.send_replace(Some(n));
            }
            None => warn!(to, "notification for an unknown sid dropped"),
        }
    }

    /// The sids with a stream up.
    pub(crate) fn connected(&self) -> Vec<Sid> {
        self.peers
            .iter()
            .filter(|(_, p)| *p.up.borrow())
            .map(|(s, _)| *s)
            .collect()
    }

    async fn open(&self, sid: Sid, link: &PeerLink) -> u64 {
        let mut generation = 0;
        link.generation.send_modify(|g| {
            *g += 1;
            generation = *g;
        });
        link.up.send_replace(true);
        info!(peer = sid, "election stream up");
        let _ = self.events.send(TransportEvent::Up(sid)).await;
        generation
    }

    async fn close(&self, sid: Sid, link: &PeerLink, generation: u64) {
        if *link.generation.borrow() == generation && link.up.send_replace(false) {
            info!(peer = sid, "election stream down");
            let _ = self.events.send(TransportEvent::Down(sid)).await;
        }
    }

    /// Our messages to a peer: the current slot value, then every new one, until the
    /// stream is replaced by a newer one.
    fn outbound(
        &self,
        link: &PeerLink,
        generation: Option<u64>,
        hello: Option<pb::ElectionMessage>,
    ) -> impl futures::Stream<Item = pb::ElectionMessage> + Send + 'static {
        let notifications = WatchStream::new(link.slot.subscribe()).filter_map(|n| async move {
            n.map(|n| pb::ElectionMessage {
                msg: Some(Msg::Notification(pb::Notification::from(&n))),
            })
        });
        let mut gen_rx = link.generation.subscribe();
        let stop = self.stop.clone();
        let replaced = async move {
            let replaced = async {
                match generation {
                    Some(g) => {
                        let _ = gen_rx.wait_for(|cur| *cur > g).await;
                    }
                    None => futures::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = replaced => {}
                _ = stop.cancelled() => {}
            }
        };
        futures::stream::iter(hello)
            .chain(notifications)
            .take_until(replaced)
    }

    /// Reads a peer's messages until the stream ends; returns the error that ended it.
    async fn pump(&self, sid: Sid, mut inbound: Streaming<pb::ElectionMessage>) -> Option<Status> {
        loop {
            let next = tokio::select! {
                m = inbound.message() => m,
                _ = self.stop.cancelled() => return None,
            };
            match next {
                Ok(Some(m)) => match decode(sid, m) {
                    Ok(n) => {
                        if self.events.send(TransportEvent::Received(n)).await.is_err() {
                            return None;
                        }
                    }
                    Err(e) => warn!(peer = sid, error = %e, "bad election message dropped"),
                },
                Ok(None) => {
                    debug!(peer = sid, "election stream ended");
                    return None;
                }
                Err(status) => {
                    warn!(peer = sid, %status, "election stream failed");
                    return Some(status);
                }
            }
        }
    }
}

/// Turns a stream message into a notification from `sid`; the sender cannot speak for
/// another sid.
fn decode(sid: Sid, m: pb::ElectionMessage) -> Result<Notification, DecodeError> {
    match m.msg {
        Some(Msg::Notification(p)) => {
            let n = Notification::try_from(&p)?;
            if n.sid != sid {
                return Err(DecodeError::Unexpected(
                    "notification sid differs from the stream's",
                ));
            }
            Ok(n)
        }
        Some(Msg::Hello(_)) => Err(DecodeError::Unexpected("second hello")),
        None => Err(DecodeError::MissingField("ElectionMessage.msg")),
    }
}

/// The gRPC `Election` service of one node.
pub(crate) struct ElectionService {
    pub(crate) shared: Arc<Shared>,
    pub(crate) span: tracing::Span,
}

type OutStream = Pin<Box<dyn futures::Stream<Item = Result<pb::ElectionMessage, Status>> + Send>>;

#[tonic::async_trait]
impl pb::election_server::Election for ElectionService {
    type ExchangeStream = OutStream;

    async fn exchange(
        &self,
        request: Request<Streaming<pb::ElectionMessage>>,
    ) -> Result<Response<Self::ExchangeStream>, Status> {
        self.accept(request).instrument(self.span.clone()).await
    }
}

impl ElectionService {
    async fn accept(
        &self,
        request: Request<Streaming<pb::ElectionMessage>>,
    ) -> Result<Response<OutStream>, Status> {
        let shared = self.shared.clone();
        let remote = request.remote_addr();
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(shared.cfg.hello_timeout, inbound.message())
            .await
            .map_err(|_| {
                warn!("election stream sent no hello in time; dropped");
                Status::deadline_exceeded("no hello")
            })??;
        let hello = match first {
            Some(pb::ElectionMessage {
                msg: Some(Msg::Hello(h)),
            }) => h,
            other => {
                warn!(?other, "election stream did not start with hello; dropped");
                return Err(Status::invalid_argument("the first message must be hello"));
            }
        };
        let sid = hello.sid;
        if hello.protocol_version != PROTOCOL_VERSION {
            warn!(
                peer = sid,
                version = hello.protocol_version,
                "unsupported election protocol version"
            );
            return Err(Status::failed_precondition("unsupported protocol version"));
        }
        if sid == shared.myid {
            warn!("election connection from my own sid: check the server list");
            return Err(Status::invalid_argument("connection from my own sid"));
        }
        let Some(link) = shared.peers.get(&sid) else {
            warn!(
                peer = sid,
                "election connection from an unknown sid refused"
            );
            return Err(Status::permission_denied("unknown sid"));
        };
        if sid < shared.myid {
            // ZooKeeper: "Have smaller server identifier": we dial it ourselves.
            debug!(peer = sid, "smaller sid connected; dialing it back");
            link.poke.notify_one();
            return Err(Status::failed_precondition("the larger sid connects"));
        }
        debug!(peer = sid, ?remote, "accepted election stream");
        let generation = shared.open(sid, link).await;
        // An error on the inbound half (e.g. a message over the size limit) is sent back
        // as the last item of the outbound half, so the peer sees why the stream ended.
        let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<Status>();
        let failed =
            futures::stream::once(failed_rx).filter_map(|r| async move { r.ok().map(Err) });
        let out = shared
            .outbound(link, Some(generation), None)
            .map(Ok)
            .chain(failed);
        let reader = shared.clone();
        let span = tracing::Span::current();
        tokio::spawn(
            async move {
                if let Some(status) = reader.pump(sid, inbound).await {
                    let _ = failed_tx.send(status);
                }
                if let Some(link) = reader.peers.get(&sid) {
                    reader.close(sid, link, generation).await;
                    // Ends our outbound half too.
                    link.generation.send_modify(|g| {
                        if *g == generation {
                            *g += 1;
                        }
                    });
                }
            }
            .instrument(span),
        );
        Ok(Response::new(Box::pin(out)))
    }
}

fn endpoint(cfg: &NodeConfig, addr: &str) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(cfg.connect_timeout)
        .http2_keep_alive_interval(cfg.keepalive_interval)
        .keep_alive_timeout(cfg.keepalive_timeout)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true))
}

fn hello(shared: &Shared) -> pb::ElectionMessage {
    let addr = shared
        .cfg
        .members
        .get(&shared.myid)
        .map(|m| m.election_addr.clone())
        .unwrap_or_default();
    pb::ElectionMessage {
        msg: Some(Msg::Hello(pb::Hello {
            sid: shared.myid,
            protocol_version: PROTOCOL_VERSION,
            election_address: addr,
        })),
    }
}

/// Keeps the stream to a smaller-sid peer up, reconnecting with capped backoff.
pub(crate) async fn dial_loop<D: Dialer>(shared: Arc<Shared>, sid: Sid, dialer: D) {
    let Some(link) = shared.peers.get(&sid) else {
        return;
    };
    let min = shared.cfg.reconnect_backoff_min;
    let max = shared.cfg.reconnect_backoff_max;
    let mut rng = SmallRng::seed_from_u64(shared.myid.wrapping_mul(1_000_003) ^ sid);
    let mut backoff = min;
    loop {
        let was_up = dial_once(&shared, sid, link, &dialer).await;
        if was_up {
            backoff = min;
        }
        let jitter = rng.random_range(0..=backoff.as_millis().max(1) as u64 / 2);
        tokio::select! {
            _ = tokio::time::sleep(backoff + Duration::from_millis(jitter)) => {}
            _ = link.poke.notified() => {}
        }
        backoff = (backoff * 2).min(max);
    }
}

/// One connection attempt; returns true if the stream came up.
async fn dial_once<D: Dialer>(shared: &Arc<Shared>, sid: Sid, link: &PeerLink, dialer: &D) -> bool {
    let channel = match endpoint(&shared.cfg, &link.addr) {
        Ok(e) => match e.connect_with_connector(DialService(dialer.clone())).await {
            Ok(c) => c,
            Err(e) => {
                debug!(peer = sid, addr = %link.addr, error = %e, "connect failed");
                return false;
            }
        },
        Err(e) => {
            warn!(peer = sid, addr = %link.addr, error = %e, "bad election address");
            return false;
        }
    };
    let mut client = ElectionClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
    // The generation this stream will get once it is accepted.
    let next = *link.generation.borrow() + 1;
    let out = shared.outbound(link, Some(next), Some(hello(shared)));
    let response = tokio::time::timeout(shared.cfg.connect_timeout, client.exchange(out)).await;
    let inbound = match response {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(status)) => {
            debug!(peer = sid, %status, "election stream refused");
            return false;
        }
        Err(_) => {
            debug!(peer = sid, "election stream open timed out");
            return false;
        }
    };
    let generation = shared.open(sid, link).await;
    if generation != next {
        warn!(
            peer = sid,
            "concurrent election streams; keeping the newest"
        );
    }
    let _ = shared.pump(sid, inbound).await;
    shared.close(sid, link, generation).await;
    link.generation.send_modify(|g| {
        if *g == generation {
            *g += 1;
        }
    });
    true
}

/// Asks a larger-sid peer to dial us while no stream to it is up and we have something
/// to tell it (ZooKeeper's `connectOne` from the smaller side).
pub(crate) async fn poke_loop<D: Dialer>(shared: Arc<Shared>, sid: Sid, dialer: D) {
    let Some(link) = shared.peers.get(&sid) else {
        return;
    };
    let min = shared.cfg.reconnect_backoff_min;
    let max = shared.cfg.reconnect_backoff_max;
    let mut up = link.up.subscribe();
    let mut slot = link.slot.subscribe();
    let mut backoff = min;
    loop {
        if up.wait_for(|u| !*u).await.is_err() {
            return;
        }
        if slot.wait_for(Option::is_some).await.is_err() {
            return;
        }
        if *up.borrow() {
            backoff = min;
            continue;
        }
        if let Ok(e) = endpoint(&shared.cfg, &link.addr)
            && let Ok(Ok(channel)) = tokio::time::timeout(
                shared.cfg.connect_timeout,
                e.connect_with_connector(DialService(dialer.clone())),
            )
            .await
        {
            let mut client = ElectionClient::new(channel);
            let out = futures::stream::iter([hello(&shared)]);
            // The peer refuses the stream and dials us back; either way we are done.
            let _ = tokio::time::timeout(shared.cfg.connect_timeout, client.exchange(out)).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = up.wait_for(|u| *u) => { backoff = min; continue; }
        }
        backoff = (backoff * 2).min(max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Member;
    use crate::vote::{PeerState, Vote};

    #[test]
    fn only_the_newest_notification_per_peer_is_kept() {
        let members = (1..=3)
            .map(|s| {
                (
                    s,
                    Member {
                        election_addr: format!("127.0.0.{s}:1"),
                        observer: false,
                    },
                )
            })
            .collect();
        let (tx, _rx) = mpsc::channel(1);
        let shared = Shared::new(NodeConfig::new(1, members), tx);
        let n = |zxid| Notification {
            sid: 1,
            state: PeerState::Looking,
            vote: Vote {
                leader: 1,
                zxid,
                peer_epoch: 0,
            },
            election_epoch: 1,
            config_version: 0,
        };
        // No stream is up: nothing is sent, and nothing piles up.
        for zxid in 0..10_000 {
            shared.send(2, n(zxid));
        }
        shared.send(99, n(0)); // unknown: dropped
        let pending = shared.peers.get(&2).map(|p| *p.slot.borrow());
        assert_eq!(pending, Some(Some(n(9_999))));
        assert_eq!(shared.peers.get(&3).map(|p| *p.slot.borrow()), Some(None));
        assert!(shared.connected().is_empty());
    }

    #[test]
    fn stream_messages_are_checked() {
        let n = pb::Notification {
            sid: 2,
            leader: 2,
            ..Default::default()
        };
        let msg = |m| pb::ElectionMessage { msg: m };
        assert!(decode(2, msg(Some(Msg::Notification(n)))).is_ok());
        assert_eq!(
            decode(3, msg(Some(Msg::Notification(n)))),
            Err(DecodeError::Unexpected(
                "notification sid differs from the stream's"
            ))
        );
        assert_eq!(
            decode(2, msg(None)),
            Err(DecodeError::MissingField("ElectionMessage.msg"))
        );
        assert!(decode(2, msg(Some(Msg::Hello(pb::Hello::default())))).is_err());
    }
}
