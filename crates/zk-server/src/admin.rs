//! The HTTP admin server: ZooKeeper 3.8's AdminServer commands as JSON at
//! `/commands/<name>` (and their aliases), the list of commands at `/commands`, and the
//! node's metrics in the Prometheus text format at `/metrics`.
//!
//! ```no_run
//! # async fn start(shared: std::sync::Arc<zk_server::server::Shared>) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! tokio::spawn(zk_server::admin::serve(listener, shared));
//! # Ok(()) }
//! ```
//!
//! Every answer carries `command` (the primary name) and `error` (null, or what went
//! wrong), as ZooKeeper's do. Differences from ZooKeeper 3.8.0: an unknown command is
//! answered with HTTP 404 (3.8.0 says 200 with the same JSON); keys come in alphabetical
//! order; figures this server does not keep (client response sizes, TLS counts, JVM
//! memory) are left out rather than invented.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::fourlw::{self, Facts, MonitorValue, NOT_SERVING};
use crate::server::{ConnStatsView, Role, Shared};

/// Every command: its primary name first, then its aliases (ZooKeeper's `Commands`).
pub const COMMANDS: &[&[&str]] = &[
    &["configuration", "conf", "config"],
    &["connection_stat_reset", "crst"],
    &["connections", "cons"],
    &["dirs"],
    &["dump"],
    &["environment", "env", "envi"],
    &["get_trace_mask", "gtmk"],
    &["hash"],
    &["is_read_only", "isro"],
    &["leader", "lead"],
    &["monitor", "mntr"],
    &["ruok"],
    &["server_stats", "srvr"],
    &["stat_reset", "srst"],
    &["stats", "stat"],
    &["voting_view"],
    &["watch_summary", "wchs"],
    &["watches", "wchc"],
    &["watches_by_path", "wchp"],
    &["zabstate"],
];

/// The primary name of a command given by any of its names.
pub fn primary_name(name: &str) -> Option<&'static str> {
    COMMANDS
        .iter()
        .find(|names| names.contains(&name))
        .and_then(|names| names.first().copied())
}

/// A command's answer: the HTTP status and the JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandResponse {
    /// HTTP status code.
    pub status: u16,
    /// The JSON object.
    pub body: Value,
}

fn error_response(status: u16, command: &str, error: &str) -> CommandResponse {
    CommandResponse {
        status,
        body: json!({ "command": command, "error": error }),
    }
}

/// Runs the command named `name` (a primary name or an alias) against `shared`.
pub fn run_command(shared: &Shared, name: &str) -> CommandResponse {
    let Some(primary) = primary_name(name) else {
        return error_response(404, name, &format!("Unknown command: {name}"));
    };
    // As in ZooKeeper, these answer whether or not the server serves clients.
    let needs_server = !matches!(
        primary,
        "environment" | "get_trace_mask" | "monitor" | "zabstate"
    );
    if needs_server && !shared.role().is_serving() {
        return error_response(200, name, NOT_SERVING);
    }
    let mut m = Map::new();
    let mut error = Value::Null;
    match primary {
        "configuration" => configuration(shared, &mut m),
        "connection_stat_reset" => shared.reset_connection_stats(),
        "connections" => {
            let conns: Vec<Value> = shared
                .clients()
                .iter()
                .map(|c| connection_info(&c.view(), false))
                .collect();
            m.insert("connections".into(), Value::Array(conns));
            m.insert("secure_connections".into(), json!([]));
        }
        "dirs" => {
            let (data, log) = fourlw::dir_sizes(shared);
            m.insert("datadir_size".into(), json!(data));
            m.insert("logdir_size".into(), json!(log));
        }
        "dump" => dump(shared, &mut m),
        "environment" => {
            for (k, v) in fourlw::environment() {
                m.insert(k.into(), Value::String(v));
            }
        }
        // No trace mask exists here: nothing is traced (the `gtmk` word says 0 too).
        "get_trace_mask" => {
            m.insert("tracemask".into(), json!(0));
        }
        "hash" => {
            let (zxid, digest) = fourlw::digest(shared);
            m.insert(
                "digests".into(),
                json!([{ "zxid": zxid, "digest": digest }]),
            );
        }
        "is_read_only" => {
            m.insert("read_only".into(), Value::Bool(false));
        }
        "leader" => {
            if let Some(e) = leader(shared, &mut m) {
                error = Value::String(e.into());
            }
        }
        "monitor" => {
            for (k, v) in fourlw::monitor_values(shared) {
                let v = match v {
                    MonitorValue::Int(i) => json!(i),
                    MonitorValue::Float(f) => json!(f),
                    MonitorValue::Text(t) => Value::String(t),
                };
                m.insert(k, v);
            }
        }
        "ruok" => {}
        "server_stats" => server_stats(shared, &mut m),
        "stat_reset" => shared.stats.reset(),
        "stats" => {
            server_stats(shared, &mut m);
            let conns: Vec<Value> = shared
                .clients()
                .iter()
                .map(|c| connection_info(&c.view(), true))
                .collect();
            m.insert("connections".into(), Value::Array(conns));
            m.insert("secure_connections".into(), json!([]));
        }
        "voting_view" => voting_view(shared, &mut m),
        "watch_summary" => {
            let s = shared.watches().summary();
            m.insert("num_connections".into(), json!(s.connections));
            m.insert("num_paths".into(), json!(s.paths));
            m.insert("num_total_watches".into(), json!(s.total));
        }
        "watches" => {
            let by_session: Map<String, Value> = shared
                .watches()
                .by_session()
                .into_iter()
                .map(|(s, paths)| (s.to_string(), json!(paths)))
                .collect();
            m.insert(
                "session_id_to_watched_paths".into(),
                Value::Object(by_session),
            );
        }
        "watches_by_path" => {
            let by_path: Map<String, Value> = shared
                .watches()
                .by_path()
                .into_iter()
                .map(|(p, sessions)| (p, json!(sessions)))
                .collect();
            m.insert("path_to_session_ids".into(), Value::Object(by_path));
        }
        "zabstate" => zab_state(shared, &mut m),
        _ => return error_response(404, name, &format!("Unknown command: {name}")),
    }
    m.insert("command".into(), Value::String(primary.into()));
    m.insert("error".into(), error);
    CommandResponse {
        status: 200,
        body: Value::Object(m),
    }
}

fn configuration(shared: &Shared, m: &mut Map<String, Value>) {
    let c = &shared.config;
    let db = fourlw::database_dir(shared).display().to_string();
    m.insert("client_port".into(), json!(c.client_port.unwrap_or(0)));
    m.insert("data_dir".into(), json!(db));
    m.insert("data_log_dir".into(), json!(db));
    m.insert("tick_time".into(), json!(c.tick_time_ms));
    m.insert("max_client_cnxns".into(), json!(c.max_client_cnxns));
    m.insert(
        "min_session_timeout".into(),
        json!(c.min_session_timeout_ms),
    );
    m.insert(
        "max_session_timeout".into(),
        json!(c.max_session_timeout_ms),
    );
    m.insert("server_id".into(), json!(shared.my_id));
    m.insert("client_port_listen_backlog".into(), json!(-1));
}

/// One connection as `ServerCnxn.getConnectionInfo(brief)` describes it.
pub fn connection_info(c: &ConnStatsView, brief: bool) -> Value {
    let mut m = Map::new();
    m.insert(
        "remote_socket_address".into(),
        json!(fourlw::java_address(&c.remote)),
    );
    m.insert("interest_ops".into(), json!(u8::from(c.session_id != 0)));
    m.insert("outstanding_requests".into(), json!(c.outstanding));
    m.insert("packets_received".into(), json!(c.packets_received));
    m.insert("packets_sent".into(), json!(c.packets_sent));
    if !brief {
        m.insert("session_id".into(), json!(c.session_id));
        m.insert("last_operation".into(), json!(c.last_op));
        m.insert("established".into(), json!(c.established_ms));
        m.insert("session_timeout".into(), json!(c.timeout_ms));
        m.insert("last_cxid".into(), json!(c.last_cxid));
        m.insert("last_zxid".into(), json!(c.last_zxid));
        m.insert("last_response_time".into(), json!(c.last_response_ms));
        m.insert("last_latency".into(), json!(c.last_latency_ms));
        m.insert("min_latency".into(), json!(c.min_latency_ms));
        m.insert("avg_latency".into(), json!(c.avg_latency_ms));
        m.insert("max_latency".into(), json!(c.max_latency_ms));
    }
    Value::Object(m)
}

fn dump(shared: &Shared, m: &mut Map<String, Value>) {
    // Sessions expire on the leader: a learner shows no expiry sets, as ZooKeeper's.
    let expiry: Map<String, Value> = if matches!(shared.role(), Role::Follower | Role::Observer) {
        Map::new()
    } else {
        shared
            .sessions()
            .expiry_map()
            .iter()
            .map(|(t, ids)| (t.to_string(), json!(ids)))
            .collect()
    };
    let ephemerals: Map<String, Value> = {
        let tree = shared.tree();
        tree.sessions_with_ephemerals()
            .into_iter()
            .map(|s| (s.to_string(), json!(tree.ephemerals(s))))
            .collect()
    };
    m.insert("expiry_time_to_session_ids".into(), Value::Object(expiry));
    m.insert(
        "session_id_to_ephemeral_paths".into(),
        Value::Object(ephemerals),
    );
}

fn is_quorum_member(shared: &Shared) -> bool {
    matches!(
        shared.role(),
        Role::Leader | Role::Follower | Role::Observer
    )
}

/// Fills the `leader` command; the error text when this is not an ensemble member.
fn leader(shared: &Shared, m: &mut Map<String, Value>) -> Option<&'static str> {
    if !is_quorum_member(shared) {
        return Some("server is not initialized");
    }
    let leader = shared.stats.quorum.leader();
    m.insert(
        "is_leader".into(),
        Value::Bool(shared.role() == Role::Leader),
    );
    m.insert("leader_id".into(), json!(leader.map_or(-1, |l| l as i64)));
    let ip = leader
        .and_then(|l| shared.config.servers.get(&l))
        .map(|s| s.quorum.host.clone())
        .unwrap_or_default();
    m.insert("leader_ip".into(), Value::String(ip));
    None
}

fn server_stats(shared: &Shared, m: &mut Map<String, Value>) {
    let f = Facts::gather(shared);
    let (data, log) = fourlw::dir_sizes(shared);
    let stats = json!({
        "packets_sent": f.packets_sent,
        "packets_received": f.packets_received,
        "data_dir_size": data,
        "log_dir_size": log,
        "provider_null": false,
        "server_state": f.role.mode_name(),
        "last_processed_zxid": f.last_zxid,
        "outstanding_requests": f.outstanding,
        "avg_latency": f.avg_latency_ms,
        "max_latency": f.max_latency_ms,
        "min_latency": f.min_latency_ms,
        "num_alive_client_connections": f.connections,
        "uptime": f.uptime_ms,
    });
    m.insert("version".into(), json!(fourlw::full_version()));
    m.insert("read_only".into(), Value::Bool(false));
    m.insert("server_stats".into(), stats);
    m.insert("node_count".into(), json!(f.znode_count));
    if f.role == Role::Leader {
        let (last, min, max) = shared
            .stats
            .quorum
            .proposal_sizes()
            .map_or((-1, -1, -1), |(l, mi, ma)| (l as i64, mi as i64, ma as i64));
        m.insert(
            "proposal_stats".into(),
            json!({ "last_buffer_size": last, "min_buffer_size": min, "max_buffer_size": max }),
        );
    }
}

/// This server's client address as ZooKeeper knows it: from its `server.N` line, else
/// `clientPortAddress:clientPort` ("" when neither says).
fn own_client_address(shared: &Shared) -> String {
    let c = &shared.config;
    c.servers
        .get(&shared.my_id)
        .and_then(|s| s.client.as_ref())
        .map(ToString::to_string)
        .or_else(|| {
            c.client_port.map(|port| {
                let host = c.client_port_address.as_deref().unwrap_or("0.0.0.0");
                crate::config::HostPort::new(host, port).to_string()
            })
        })
        .unwrap_or_default()
}

fn voting_view(shared: &Shared, m: &mut Map<String, Value>) {
    let mut view = Map::new();
    if is_quorum_member(shared) {
        for s in shared.config.participants() {
            // ZooKeeper knows the client address of the other servers only when their
            // `server.N` line gives it.
            let client = if s.id == shared.my_id {
                own_client_address(shared)
            } else {
                s.client
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            };
            view.insert(
                s.id.to_string(),
                json!({
                    "server_addresses": [s.quorum.to_string()],
                    "election_addresses": [s.election.to_string()],
                    "learner_type": "participant",
                    "client_address": client,
                }),
            );
        }
    }
    m.insert("current_config".into(), Value::Object(view));
}

/// An address as Jackson renders ZooKeeper's `MultipleAddresses` (one address here).
fn multiple_addresses(a: &crate::config::HostPort) -> Value {
    let addr = a.to_string();
    let wildcard = crate::config::HostPort::new("0.0.0.0", a.port).to_string();
    json!({
        "empty": false,
        "all_addresses": [addr],
        "all_reachable_addresses": [addr],
        "one": addr,
        "reachable_address": addr,
        "wildcard_addresses": [wildcard],
        "all_ports": [a.port],
        "all_host_strings": [a.host],
        "all_reachable_addresses_or_all": [addr],
        "reachable_or_one": addr,
    })
}

fn zab_state(shared: &Shared, m: &mut Map<String, Value>) {
    let me = shared.config.servers.get(&shared.my_id);
    let Some(me) = me.filter(|_| !shared.config.servers.is_empty()) else {
        m.insert("voting".into(), Value::Bool(false));
        m.insert("zabstate".into(), Value::String(String::new()));
        return;
    };
    let zxid = shared.last_processed_zxid();
    let voting = me.learner_type == crate::config::LearnerType::Participant;
    m.insert("myid".into(), json!(shared.my_id));
    m.insert(
        "is_leader".into(),
        Value::Bool(shared.role() == Role::Leader),
    );
    m.insert("quorum_address".into(), multiple_addresses(&me.quorum));
    m.insert("election_address".into(), multiple_addresses(&me.election));
    m.insert("client_address".into(), json!(own_client_address(shared)));
    m.insert("voting".into(), Value::Bool(voting));
    m.insert("last_zxid".into(), json!(format!("{zxid:#x}")));
    m.insert("zab_epoch".into(), json!(zxid >> 32));
    m.insert("zab_counter".into(), json!(zxid & 0xffff_ffff));
    m.insert(
        "zabstate".into(),
        json!(shared.stats.quorum.zab_state().name()),
    );
}

/// The `/commands` page: a link to every command, as ZooKeeper's AdminServer lists them.
pub fn command_list_html() -> String {
    let mut names: Vec<&str> = COMMANDS.iter().filter_map(|n| n.first().copied()).collect();
    names.sort_unstable();
    names
        .iter()
        .map(|n| format!("<a href=\"/commands/{n}\">{n}</a>\n<br/>\n"))
        .collect()
}

/// The admin server's routes.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/commands", get(list))
        .route("/commands/", get(list))
        .route("/commands/{name}", get(command).post(command))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(shared)
}

/// Bounds on the admin server's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminLimits {
    /// Connections served at once; further ones wait in the listen queue.
    pub max_connections: usize,
    /// A connection that moves no byte for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for AdminLimits {
    fn default() -> Self {
        AdminLimits {
            max_connections: 64,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves the admin server on `listener` (`admin.serverAddress:admin.serverPort`,
/// bound by the caller) until the task is dropped, with the default [`AdminLimits`].
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    serve_with(listener, shared, AdminLimits::default()).await;
}

/// [`serve`] with explicit limits.
pub async fn serve_with(listener: TcpListener, shared: Arc<Shared>, limits: AdminLimits) {
    match listener.local_addr() {
        Ok(addr) => tracing::info!(%addr, "admin server listening"),
        Err(e) => tracing::warn!(error = %e, "admin server listener has no address"),
    }
    let listener = BoundedListener {
        inner: listener,
        permits: Arc::new(Semaphore::new(limits.max_connections.max(1))),
        idle_timeout: limits.idle_timeout,
    };
    if let Err(e) = axum::serve(listener, router(shared)).await {
        tracing::warn!(error = %e, "admin server stopped");
    }
}

/// A listener that holds at most `permits` connections open, each closed when idle.
struct BoundedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    idle_timeout: Duration,
}

impl axum::serve::Listener for BoundedListener {
    type Io = AdminStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (AdminStream, SocketAddr) {
        loop {
            // The semaphore is never closed, so this only waits.
            let Ok(permit) = self.permits.clone().acquire_owned().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let idle = Box::pin(tokio::time::sleep(self.idle_timeout));
                    let io = AdminStream {
                        inner: stream,
                        _permit: permit,
                        idle,
                        idle_timeout: self.idle_timeout,
                    };
                    return (io, addr);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "admin server accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// An admin connection: its slot under the connection bound, and an idle deadline that
/// every byte read or written pushes back.
struct AdminStream {
    inner: TcpStream,
    _permit: OwnedSemaphorePermit,
    idle: Pin<Box<Sleep>>,
    idle_timeout: Duration,
}

impl AdminStream {
    fn touch(&mut self) {
        let deadline = Instant::now() + self.idle_timeout;
        self.idle.as_mut().reset(deadline);
    }

    fn check_idle(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        match self.idle.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "admin connection idle",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for AdminStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.touch();
                Poll::Ready(r)
            }
            Poll::Pending => this.check_idle(cx).map(Err),
        }
    }
}

impl AsyncWrite for AdminStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                this.touch();
                Poll::Ready(r)
            }
            Poll::Pending => this.check_idle(cx).map(Err),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

fn json_response(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let text = serde_json::to_string_pretty(body).unwrap_or_else(|_| "{}".into());
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

async fn list() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        command_list_html(),
    )
        .into_response()
}

async fn command(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    // Some commands walk the whole tree or the data directory: off the async threads.
    match tokio::task::spawn_blocking(move || run_command(&shared, &name)).await {
        Ok(r) => json_response(r.status, &r.body),
        Err(e) => json_response(500, &json!({ "error": e.to_string() })),
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    match tokio::task::spawn_blocking(move || crate::metrics::render(&shared)).await {
        Ok(text) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn not_found() -> Response {
    json_response(404, &json!({ "error": "Not found" }))
}

#[cfg(test)]
mod tests;
