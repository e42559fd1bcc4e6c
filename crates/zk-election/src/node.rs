//! The async driver: an election node that owns the core and the transport.
//!
//! [`ElectionNode::bind`] (TCP) or [`ElectionNode::start`] (any listener and dialer)
//! starts the gRPC service, the peer streams and one task that owns the sans-IO
//! [`Election`]. The node stays up between elections: while FOLLOWING or LEADING it
//! answers LOOKING peers with its established vote, as ZooKeeper's `WorkerReceiver`
//! does. [`ElectionHandle::run`] runs one election and returns the [`Decision`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::transport::server::{Connected, TcpIncoming};
use tracing::{Instrument, info_span, warn};
use zk_proto::peer::election::election_server::ElectionServer;
use zk_proto::zxid::Zxid;

use crate::config::NodeConfig;
use crate::core::{Election, Input, Output};
use crate::error::ElectionError;
use crate::transport::{
    self, Dialer, EVENT_QUEUE, ElectionService, MAX_MESSAGE_BYTES, Shared, TcpDialer,
    TransportEvent,
};
use crate::vote::{Decision, PeerState, Sid, Vote};

/// What an election starts from: the node's own last logged zxid and `currentEpoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElectionInputs {
    /// The last zxid in the node's txn log (0 for an empty log; −1 makes the node ignore
    /// LOOKING votes, as in ZooKeeper).
    pub last_logged_zxid: Zxid,
    /// The node's `currentEpoch`.
    pub current_epoch: i64,
}

/// A snapshot of the node's election state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// LOOKING, FOLLOWING, LEADING or OBSERVING.
    pub state: PeerState,
    /// The proposal (LOOKING) or the established vote.
    pub vote: Vote,
    /// The logical clock.
    pub logical_clock: i64,
}

enum Command {
    Run {
        inputs: ElectionInputs,
        reply: oneshot::Sender<Result<Decision, ElectionError>>,
    },
    SetEstablished {
        vote: Vote,
        state: PeerState,
    },
}

/// Binds a node on its configured TCP address and runs its first election: the
/// one-call form. Keep the returned handle: it keeps answering LOOKING peers with the
/// decision, and its [`ElectionHandle::run`] starts the next election.
pub async fn run(
    config: NodeConfig,
    inputs: ElectionInputs,
) -> Result<(ElectionHandle, Decision), ElectionError> {
    let handle = ElectionNode::bind(config).await?;
    let decision = handle.run(inputs).await?;
    Ok((handle, decision))
}

/// Starts election nodes.
pub struct ElectionNode;

impl ElectionNode {
    /// Binds the node's election address (from `config.members[myid]`) over TCP and dials
    /// peers from the same IP.
    pub async fn bind(config: NodeConfig) -> Result<ElectionHandle, ElectionError> {
        config.validate()?;
        let addr = config
            .members
            .get(&config.myid)
            .map(|m| m.election_addr.clone())
            .ok_or_else(|| ElectionError::Config("myid missing from members".into()))?;
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        Self::start_tcp(config, listener)
    }

    /// Starts a node on an already bound TCP listener (useful with port 0); outgoing
    /// connections are made from the listener's IP.
    pub fn start_tcp(
        config: NodeConfig,
        listener: tokio::net::TcpListener,
    ) -> Result<ElectionHandle, ElectionError> {
        let local = listener.local_addr()?;
        let dialer = TcpDialer {
            local_ip: Some(local.ip()),
        };
        // Election messages are tiny: without TCP_NODELAY on the accepted side, Nagle and
        // delayed ACKs add ~40 ms to some exchanges.
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let mut handle = Self::start(config, incoming, dialer)?;
        handle.local_addr = Some(local);
        Ok(handle)
    }

    /// Starts a node on an accepted-connection stream and a dialer (pluggable, e.g. for a
    /// simulated network). Must be called inside a tokio runtime.
    pub fn start<S, IO, E, D>(
        config: NodeConfig,
        incoming: S,
        dialer: D,
    ) -> Result<ElectionHandle, ElectionError>
    where
        S: futures::Stream<Item = Result<IO, E>> + Send + 'static,
        IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
        D: Dialer,
    {
        let quorum = config.validate()?;
        let myid = config.myid;
        let span = info_span!("node", id = myid);
        let core = Election::new(config.core_config(), quorum)?;
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let shared = Shared::new(config.clone(), events_tx);
        let mut tasks = JoinSet::new();

        let service = ElectionServer::new(ElectionService {
            shared: shared.clone(),
            span: span.clone(),
        })
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let server = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(config.keepalive_interval))
            .http2_keepalive_timeout(Some(config.keepalive_timeout))
            .max_concurrent_streams(Some(16))
            .tcp_nodelay(true)
            .add_service(service);
        tasks.spawn(
            async move {
                if let Err(e) = server.serve_with_incoming(incoming).await {
                    warn!(error = %e, "election server stopped");
                }
            }
            .instrument(span.clone()),
        );
        for sid in config.members.keys().copied().filter(|s| *s != myid) {
            if sid < myid {
                tasks.spawn(
                    transport::dial_loop(shared.clone(), sid, dialer.clone())
                        .instrument(span.clone()),
                );
            } else {
                tasks.spawn(
                    transport::poke_loop(shared.clone(), sid, dialer.clone())
                        .instrument(span.clone()),
                );
            }
        }
        let (cmd_tx, cmd_rx) = mpsc::channel(8);
        let (status_tx, status_rx) = watch::channel(NodeStatus {
            state: core.state(),
            vote: core.current_vote(),
            logical_clock: core.logical_clock(),
        });
        tasks.spawn(actor(core, shared.clone(), cmd_rx, events_rx, status_tx).instrument(span));
        Ok(ElectionHandle {
            myid,
            cmd: cmd_tx,
            status: status_rx,
            shared,
            local_addr: None,
            _tasks: tasks,
        })
    }
}

/// A running election node. Dropping it stops the node (server, streams, election).
///
/// ```no_run
/// # async fn demo() -> Result<(), zk_election::ElectionError> {
/// use std::collections::BTreeMap;
/// use zk_election::{ElectionInputs, ElectionNode, Member, NodeConfig};
///
/// let members: BTreeMap<u64, Member> = (1..=3)
///     .map(|sid| (sid, Member { election_addr: format!("127.0.0.{sid}:3888"), observer: false }))
///     .collect();
/// let node = ElectionNode::bind(NodeConfig::new(1, members)).await?;
/// let decision = node.run(ElectionInputs { last_logged_zxid: 0, current_epoch: 0 }).await?;
/// println!("leader {} ({})", decision.leader(), decision.state);
/// # Ok(()) }
/// ```
pub struct ElectionHandle {
    myid: Sid,
    cmd: mpsc::Sender<Command>,
    status: watch::Receiver<NodeStatus>,
    shared: Arc<Shared>,
    local_addr: Option<SocketAddr>,
    _tasks: JoinSet<()>,
}

impl ElectionHandle {
    /// This node's sid.
    pub fn myid(&self) -> Sid {
        self.myid
    }

    /// The bound election address (for [`ElectionNode::bind`]).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Runs one election (ZooKeeper's `lookForLeader`) and returns when this node has
    /// decided. Call it each time the node becomes LOOKING; the transport is reused.
    /// A second `run` while one is pending starts a new round, and the first returns
    /// [`ElectionError::Superseded`].
    pub async fn run(&self, inputs: ElectionInputs) -> Result<Decision, ElectionError> {
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Command::Run { inputs, reply })
            .await
            .map_err(|_| ElectionError::Stopped)?;
        rx.await.map_err(|_| ElectionError::Stopped)?
    }

    /// Sets the node's established vote and state after the decision (e.g. when the
    /// server's Zab layer changes them); LOOKING peers are answered with it.
    pub async fn set_established(&self, vote: Vote, state: PeerState) -> Result<(), ElectionError> {
        self.cmd
            .send(Command::SetEstablished { vote, state })
            .await
            .map_err(|_| ElectionError::Stopped)
    }

    /// The node's current election state.
    pub fn status(&self) -> NodeStatus {
        self.status.borrow().clone()
    }

    /// The peers with an election stream up.
    pub fn connected_peers(&self) -> Vec<Sid> {
        self.shared.connected()
    }

    /// Waits until `pred` holds for the status, or the timeout passes.
    pub async fn wait_status(
        &self,
        timeout: Duration,
        pred: impl Fn(&NodeStatus) -> bool,
    ) -> Option<NodeStatus> {
        let mut rx = self.status.clone();
        tokio::time::timeout(timeout, rx.wait_for(|s| pred(s)))
            .await
            .ok()
            .and_then(|r| r.ok().map(|s| s.clone()))
    }
}

impl Drop for ElectionHandle {
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

async fn actor(
    mut core: Election,
    shared: Arc<Shared>,
    mut cmds: mpsc::Receiver<Command>,
    mut events: mpsc::Receiver<TransportEvent>,
    status: watch::Sender<NodeStatus>,
) {
    let origin = Instant::now();
    let now_ms = move || u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut pending: Option<oneshot::Sender<Result<Decision, ElectionError>>> = None;
    loop {
        let deadline = core
            .next_deadline_ms()
            .map(|ms| origin + Duration::from_millis(ms));
        let outputs = tokio::select! {
            cmd = cmds.recv() => match cmd {
                None => return,
                Some(Command::Run { inputs, reply }) => {
                    if let Some(old) = pending.replace(reply) {
                        let _ = old.send(Err(ElectionError::Superseded));
                    }
                    core.start_election(now_ms(), inputs.last_logged_zxid, inputs.current_epoch)
                }
                Some(Command::SetEstablished { vote, state }) => {
                    core.set_established(vote, state);
                    Vec::new()
                }
            },
            ev = events.recv() => match ev {
                None => return,
                Some(ev) => {
                    let mut out = core.step(Input::Tick { now_ms: now_ms() });
                    out.extend(core.step(match ev {
                        TransportEvent::Received(n) => Input::Receive(n),
                        TransportEvent::Up(s) => Input::PeerUp(s),
                        TransportEvent::Down(s) => Input::PeerDown(s),
                    }));
                    out
                }
            },
            _ = sleep_until(deadline) => core.step(Input::Tick { now_ms: now_ms() }),
        };
        // Publish the new status first, so that a caller woken by the decision sees it.
        status.send_if_modified(|s| {
            let new = NodeStatus {
                state: core.state(),
                vote: core.current_vote(),
                logical_clock: core.logical_clock(),
            };
            let changed = *s != new;
            *s = new;
            changed
        });
        for out in outputs {
            match out {
                Output::Send { to, notification } => shared.send(to, notification),
                Output::Decided(d) => {
                    if let Some(reply) = pending.take() {
                        let _ = reply.send(Ok(d));
                    }
                }
            }
        }
        if cfg!(debug_assertions)
            && let Err(e) = core.validate()
        {
            warn!(error = %e, "election core invariant violated");
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => futures::future::pending().await,
    }
}
