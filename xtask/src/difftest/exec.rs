//! Replays a sequence of ops on one system through `zk_server::client::Client` and
//! records what every op saw: its normalised reply and the watch events each session
//! received because of it.
//!
//! Determinism, so that only behaviour differs between two replays:
//! * session `i` always talks to server `i % servers` of the target's list (the same
//!   node ids in both systems: the nodes that follow in Apache's ensemble);
//! * ops run one at a time; before an op, a session whose server may not have applied
//!   another session's write yet `sync`s first (writes are committed before their reply,
//!   so the sync makes them visible; writes sync too, so that a failed write answered
//!   without a txn cannot leave the server behind for the next read);
//! * after a write, every session that holds (or held) a watch `sync`s: its server has
//!   then applied the write and sent the notifications, which arrive before the sync's
//!   reply on the same connection; then every session's events are drained. Events are
//!   so tied to the op that fired them, in their arrival order per session (as a set
//!   for a session close, whose ephemerals Apache deletes in a hash order).

use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use zk_proto::data::{Acl, AddWatchMode, CreateMode};
use zk_proto::jute::{
    CheckVersionRequest, CreateRequest, CreateTtlRequest, DeleteRequest, GetChildrenRequest,
    GetDataRequest, MultiOp, SetDataRequest,
};
use zk_server::client::{Client, Error as ZkError, SessionState, WatchedEvent};

use super::normalise::{self, Normaliser};
use super::ops::{CreateApi, MultiRead, MultiWrite, Op, SESSIONS, TTL_MS};

/// Longest wait for one call.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Most events drained from one session after one op.
const MAX_EVENTS_PER_OP: usize = 1000;

/// A system under test: its client addresses, one per server.
#[derive(Debug, Clone)]
pub struct Target {
    /// Name used in reports (`ours`, `apache`, an address).
    pub name: String,
    /// `host:port` of each server.
    pub servers: Vec<String>,
    /// Session timeout asked for.
    pub session_timeout: Duration,
}

/// What one op saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The normalised reply.
    pub reply: String,
    /// Events received right after it: (session, `Type path`), in arrival order per
    /// session.
    pub events: Vec<(usize, String)>,
}

impl Step {
    /// The reply and the events as one line.
    pub fn text(&self) -> String {
        if self.events.is_empty() {
            return self.reply.clone();
        }
        let ev: Vec<String> = self
            .events
            .iter()
            .map(|(s, e)| format!("s{s}:{e}"))
            .collect();
        format!("{}  events [{}]", self.reply, ev.join(", "))
    }
}

/// What a replay saw.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// One step per op.
    pub steps: Vec<Step>,
    /// Sessions opened.
    pub sessions: usize,
    /// Watch events received.
    pub events: usize,
}

/// The first op whose step differs between two traces (a missing step counts).
pub fn first_difference(a: &[Step], b: &[Step]) -> Option<usize> {
    let n = a.len().max(b.len());
    (0..n).find(|&i| a.get(i) != b.get(i))
}

struct Slot {
    client: Client,
    events: mpsc::Receiver<WatchedEvent>,
    /// Set once the session asked for a watch; such a session takes part in barriers.
    watching: bool,
    /// Another session wrote since this one last synced.
    stale: bool,
}

async fn timed<T>(f: impl Future<Output = Result<T, ZkError>>) -> Result<T, ZkError> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(r) => r,
        Err(_) => Err(ZkError::BadArgument(format!(
            "no reply within {CALL_TIMEOUT:?}"
        ))),
    }
}

async fn open(target: &Target, s: usize, norm: &mut Normaliser) -> Result<Slot> {
    let server = target
        .servers
        .get(s % target.servers.len().max(1))
        .context("a target without servers")?;
    let (client, events) = Client::builder(server.clone())
        .session_timeout(target.session_timeout)
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .with_context(|| format!("{}: no session on {server}", target.name))?;
    norm.session(client.session_id());
    Ok(Slot {
        client,
        events,
        watching: false,
        stale: false,
    })
}

fn event_text(e: &WatchedEvent) -> String {
    format!("{:?} {}", e.event_type, e.path)
}

fn multi_op(w: &MultiWrite, root: &str) -> MultiOp {
    let bytes = |d: &Option<Vec<u8>>| d.as_deref().map(bytes::Bytes::copy_from_slice);
    match w {
        MultiWrite::Create {
            path,
            data,
            acl,
            mode,
            api,
        } => {
            let req = CreateRequest {
                path: path.resolve(root),
                data: bytes(data),
                acl: acl.acl(),
                flags: mode.code(),
            };
            if mode.is_container() {
                MultiOp::CreateContainer(req)
            } else if *api == CreateApi::Create {
                MultiOp::Create(req)
            } else {
                MultiOp::Create2(req)
            }
        }
        MultiWrite::CreateTtl { path, mode, ttl_ms } => MultiOp::CreateTtl(CreateTtlRequest {
            path: path.resolve(root),
            data: Some(bytes::Bytes::from_static(b"ttl")),
            acl: Acl::open_unsafe(),
            flags: mode.code(),
            ttl: *ttl_ms,
        }),
        MultiWrite::Delete { path, version } => MultiOp::Delete(DeleteRequest {
            path: path.resolve(root),
            version: *version,
        }),
        MultiWrite::SetData {
            path,
            data,
            version,
        } => MultiOp::SetData(SetDataRequest {
            path: path.resolve(root),
            data: bytes(data),
            version: *version,
        }),
        MultiWrite::Check { path, version } => MultiOp::Check(CheckVersionRequest {
            path: path.resolve(root),
            version: *version,
        }),
    }
}

/// Runs one op and returns its normalised reply.
async fn call(c: &Client, op: &Op, root: &str, norm: &mut Normaliser) -> String {
    macro_rules! reply {
        ($fut:expr, |$v:ident| $ok:expr) => {
            match timed($fut).await {
                Ok($v) => $ok,
                Err(e) => norm.error(&e),
            }
        };
    }
    match op {
        Op::Create {
            path,
            data,
            acl,
            mode,
            api,
            ..
        } => {
            let p = path.resolve(root);
            if *api == CreateApi::Create && !mode.is_container() {
                reply!(c.create(&p, data, &acl.acl(), *mode), |path| format!(
                    "Ok({path})"
                ))
            } else {
                reply!(c.create2(&p, data, &acl.acl(), *mode), |r| format!(
                    "Ok({} {})",
                    r.0,
                    norm.stat(&r.1)
                ))
            }
        }
        Op::CreateTtl {
            path,
            data,
            acl,
            mode,
            ..
        } => {
            let p = path.resolve(root);
            let ttl = Duration::from_millis(TTL_MS);
            reply!(c.create_ttl(&p, data, &acl.acl(), *mode, ttl), |r| format!(
                "Ok({} {})",
                r.0,
                norm.stat(&r.1)
            ))
        }
        Op::Delete { path, version, .. } => {
            reply!(c.delete(&path.resolve(root), *version), |_r| "Ok"
                .to_owned())
        }
        Op::Exists { path, watch, .. } => {
            reply!(c.exists(&path.resolve(root), *watch), |r| match r {
                Some(st) => format!("Ok({})", norm.stat(&st)),
                None => "Ok(none)".to_owned(),
            })
        }
        Op::GetData { path, watch, .. } => {
            reply!(c.get_data(&path.resolve(root), *watch), |r| format!(
                "Ok({} {})",
                normalise::data(r.0.as_deref()),
                norm.stat(&r.1)
            ))
        }
        Op::SetData {
            path,
            data,
            version,
            ..
        } => reply!(c.set_data(&path.resolve(root), data, *version), |st| {
            format!("Ok({})", norm.stat(&st))
        }),
        Op::GetAcl { path, .. } => {
            reply!(c.get_acl(&path.resolve(root)), |r| format!(
                "Ok({} {})",
                normalise::acl(&r.0),
                norm.stat(&r.1)
            ))
        }
        Op::SetAcl {
            path, acl, version, ..
        } => reply!(
            c.set_acl(&path.resolve(root), &acl.acl(), *version),
            |st| format!("Ok({})", norm.stat(&st))
        ),
        Op::GetChildren {
            path, watch, two, ..
        } => {
            let p = path.resolve(root);
            if *two {
                reply!(c.get_children2(&p, *watch), |r| format!(
                    "Ok({} {})",
                    normalise::set(&r.0),
                    norm.stat(&r.1)
                ))
            } else {
                reply!(c.get_children(&p, *watch), |r| format!(
                    "Ok({})",
                    normalise::set(&r)
                ))
            }
        }
        Op::AllChildren { path, .. } => {
            reply!(c.get_all_children_number(&path.resolve(root)), |n| format!(
                "Ok({n})"
            ))
        }
        Op::Ephemerals { prefix, .. } => {
            // Only this replay's root: the session is fresh, so "/" lists the same.
            reply!(c.get_ephemerals(&prefix.resolve(root)), |r| format!(
                "Ok({})",
                normalise::set(&r)
            ))
        }
        Op::Sync { path, .. } => {
            reply!(c.sync(&path.resolve(root)), |p| format!("Ok({p})"))
        }
        Op::Multi { ops, .. } => {
            let ops = ops.iter().map(|w| multi_op(w, root)).collect();
            reply!(c.multi(ops), |rs| format!(
                "Ok({})",
                norm.multi_results(&rs)
            ))
        }
        Op::MultiRead { ops, .. } => {
            let ops = ops
                .iter()
                .map(|r| match r {
                    MultiRead::GetData(p) => MultiOp::GetData(GetDataRequest {
                        path: p.resolve(root),
                        watch: false,
                    }),
                    MultiRead::GetChildren(p) => MultiOp::GetChildren(GetChildrenRequest {
                        path: p.resolve(root),
                        watch: false,
                    }),
                })
                .collect();
            reply!(c.multi_read(ops), |rs| format!(
                "Ok({})",
                norm.multi_results(&rs)
            ))
        }
        Op::Auth { scheme, cred, .. } => {
            reply!(c.auth(scheme, cred.as_bytes()), |_r| "Ok".to_owned())
        }
        Op::WhoAmI { .. } => reply!(c.who_am_i(), |r| format!("Ok({})", normalise::who(&r))),
        Op::AddWatch {
            path, recursive, ..
        } => {
            let mode = if *recursive {
                AddWatchMode::PersistentRecursive
            } else {
                AddWatchMode::Persistent
            };
            reply!(c.add_watch(&path.resolve(root), mode), |_r| "Ok".to_owned())
        }
        Op::Close { .. } => reply!(c.close(), |_r| "Ok".to_owned()),
        // Handled by the caller (it replaces the slot).
        Op::Reopen { .. } => String::new(),
    }
}

fn drain(slot: &mut Slot, s: usize, out: &mut Vec<(usize, String)>) {
    for _ in 0..MAX_EVENTS_PER_OP {
        match slot.events.try_recv() {
            Ok(e) => out.push((s, event_text(&e))),
            Err(_) => break,
        }
    }
}

/// A sync on a session whose client still runs (its result is not part of the trace).
async fn barrier_sync(slot: &Slot, root: &str) {
    if !slot.client.state().is_terminal() {
        let _ = timed(slot.client.sync(root)).await;
    }
}

/// Replays `ops` on `target` below a fresh `root` (created first, with an open ACL, by
/// session 0) with [`SESSIONS`] fresh sessions; every session is closed at the end.
/// `Err` only when the replay could not start (no session, no root).
pub async fn replay(target: &Target, root: &str, ops: &[Op]) -> Result<Trace> {
    let mut norm = Normaliser::default();
    let mut slots = Vec::with_capacity(SESSIONS);
    for s in 0..SESSIONS {
        slots.push(open(target, s, &mut norm).await?);
    }
    let mut retired: Vec<Client> = Vec::new();
    let mut trace = Trace {
        sessions: SESSIONS,
        ..Trace::default()
    };
    let result = async {
        let first = slots.first().context("no session")?;
        timed(
            first
                .client
                .create(root, b"", &Acl::open_unsafe(), CreateMode::Persistent),
        )
        .await
        .with_context(|| format!("{}: creating {root}", target.name))?;
        for slot in &slots {
            barrier_sync(slot, root).await;
        }
        for op in ops {
            let s = op.session().min(SESSIONS - 1);
            let reply = if let Op::Reopen { .. } = op {
                match open(target, s, &mut norm).await {
                    Ok(fresh) => {
                        trace.sessions += 1;
                        let old = std::mem::replace(&mut slots[s], fresh);
                        retired.push(old.client);
                        "Ok".to_owned()
                    }
                    Err(e) => format!("Err({e:#})"),
                }
            } else {
                let slot = &mut slots[s];
                if slot.stale {
                    barrier_sync(slot, root).await;
                }
                slot.stale = false;
                if op.sets_watch() {
                    slot.watching = true;
                }
                call(&slot.client, op, root, &mut norm).await
            };
            let mut events = Vec::new();
            if op.is_write() {
                for (i, slot) in slots.iter_mut().enumerate() {
                    if i != s {
                        slot.stale = true;
                    }
                    if slot.watching {
                        barrier_sync(slot, root).await;
                        slot.stale = false;
                    }
                }
            }
            for (i, slot) in slots.iter_mut().enumerate() {
                drain(slot, i, &mut events);
            }
            if matches!(op, Op::Close { .. } | Op::Reopen { .. }) {
                // A closed session's ephemerals go in one txn: ours deletes them in path
                // order, Apache in the iteration order of its per-session HashSet (a hash
                // order that also changes across a restart). Each session's events of a
                // close are compared as a set.
                events.sort();
            }
            trace.events += events.len();
            trace.steps.push(Step { reply, events });
        }
        anyhow::Ok(())
    }
    .await;
    for slot in &slots {
        if slot.client.state() != SessionState::Closed {
            let _ = timed(slot.client.close()).await;
        }
    }
    for c in &retired {
        if c.state() != SessionState::Closed {
            let _ = timed(c.close()).await;
        }
    }
    result.map(|()| trace)
}
