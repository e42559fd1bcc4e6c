//! The clients: each talks to one node only and runs a seeded random mix of linearizable
//! reads (`sync` + `getData`), writes and compare-and-sets on a few registers, plus
//! sequential and ephemeral creates, recording every invocation and completion.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zk_proto::data::{Acl, CreateMode, ErrorCode};
use zk_server::client::{Client, Error as ZkError, SessionState};

use super::checker::{Op, Operation, Outcome};
use super::nemesis::Rng;

/// Root of everything the run writes.
pub const ROOT: &str = "/chaos";
/// Parent of the registers.
pub const REG: &str = "/chaos/reg";
/// Parent of the sequential creates.
pub const SEQ: &str = "/chaos/seq";
/// Parent of the ephemeral creates.
pub const EPH: &str = "/chaos/eph";

/// Path of register `k`.
pub fn key_path(k: usize) -> String {
    format!("{REG}/k{k}")
}

/// One register operation, for the checker.
#[derive(Debug, Clone)]
pub struct KeyOp {
    /// Register index.
    pub key: usize,
    /// The operation.
    pub op: Operation,
    /// The error, when there was one.
    pub error: Option<String>,
}

/// Everything the clients did.
#[derive(Debug, Default)]
pub struct History {
    /// Register operations.
    pub ops: Vec<KeyOp>,
    /// Acknowledged sequential creates: (client, path).
    pub seq_created: Vec<(u32, String)>,
    /// Sequential creates with an unknown outcome.
    pub seq_unknown: usize,
    /// Acknowledged ephemeral creates: (client, session id, path).
    pub eph_created: Vec<(u32, i64, String)>,
    /// Sessions that ended with `SessionExpired`.
    pub expired_sessions: Vec<i64>,
    /// Sessions opened.
    pub sessions_opened: usize,
    /// Operations that completed with an answer (ok or a definite failure).
    pub completed: usize,
    /// Operations with an unknown outcome.
    pub unknown: usize,
    /// A line per invocation and completion, for the history file.
    pub log: String,
}

/// Bound on history entries kept (operations beyond it are not started).
pub const MAX_OPS: usize = 200_000;

/// Settings shared by every client.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// Number of registers.
    pub keys: usize,
    /// Session timeout asked for.
    pub session_timeout: Duration,
    /// A call with no answer after this is recorded as unknown.
    pub op_timeout: Duration,
    /// Pause between a client's operations.
    pub think: Duration,
    /// When the run started (timestamps count from it).
    pub started: Instant,
    /// No operation starts after this.
    pub until: Instant,
    /// Reads `sync` first (linearizable); without it a follower may answer stale data,
    /// which the checker should then catch.
    pub sync_reads: bool,
    /// Raised on SIGINT/SIGTERM: clients stop early.
    pub stop: Arc<AtomicBool>,
}

fn now_ns(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// What one call came back with.
enum Res<T> {
    Ok(T),
    /// A definite answer that changed nothing.
    Failed(ErrorCode),
    /// No answer, or one that leaves the outcome open.
    Unknown(String),
}

async fn call<T>(
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<T, ZkError>>,
) -> Res<T> {
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => Res::Unknown("timeout".into()),
        Ok(Ok(v)) => Res::Ok(v),
        Ok(Err(ZkError::Keeper(code)))
            if matches!(
                code,
                ErrorCode::BadVersion | ErrorCode::NoNode | ErrorCode::NodeExists
            ) =>
        {
            Res::Failed(code)
        }
        Ok(Err(e)) => Res::Unknown(format!("{:?}", e.code())),
    }
}

fn encode(v: i64) -> Vec<u8> {
    v.to_string().into_bytes()
}

/// The number a register's data holds (`None` if it is not one).
pub fn decode(data: Option<&[u8]>) -> Option<i64> {
    std::str::from_utf8(data?).ok()?.parse().ok()
}

/// Runs client `id` against `connect` until `cfg.until`.
pub async fn client_loop(
    id: u32,
    connect: String,
    seed: u64,
    cfg: WorkloadConfig,
    history: Arc<Mutex<History>>,
) {
    let mut rng = Rng::new(seed ^ (u64::from(id) << 32) ^ 0x636c_6965_6e74);
    let mut client: Option<Client> = None;
    let mut versions = vec![0i32; cfg.keys];
    let mut counter: i64 = 0;
    let acl = Acl::open_unsafe();
    while Instant::now() < cfg.until && !cfg.stop.load(Ordering::Relaxed) {
        if history
            .lock()
            .map(|h| h.ops.len() >= MAX_OPS)
            .unwrap_or(true)
        {
            break;
        }
        let c = match &client {
            Some(c) if !c.state().is_terminal() => c.clone(),
            old => {
                if let Some(old) = old
                    && old.state() == SessionState::Expired
                    && let Ok(mut h) = history.lock()
                {
                    h.expired_sessions.push(old.session_id());
                }
                client = None;
                let built = Client::builder(connect.clone())
                    .session_timeout(cfg.session_timeout)
                    .connect_timeout(Duration::from_secs(2))
                    .connect()
                    .await;
                match built {
                    Ok((c, _events)) => {
                        if let Ok(mut h) = history.lock() {
                            h.sessions_opened += 1;
                        }
                        client = Some(c.clone());
                        c
                    }
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        continue;
                    }
                }
            }
        };
        if c.state() != SessionState::Connected {
            let mut states = c.state_changes();
            let _ = tokio::time::timeout(
                cfg.op_timeout,
                states.wait_for(|s| *s == SessionState::Connected || s.is_terminal()),
            )
            .await;
            continue;
        }
        counter += 1;
        let value = i64::from(id) * 1_000_000_000 + counter;
        let key = rng.below(cfg.keys as u64) as usize;
        let path = key_path(key);
        let roll = rng.below(100);
        let call_ns = now_ns(cfg.started);
        let session = c.session_id();
        let t = cfg.op_timeout;
        // (op, outcome, error, description)
        let mut record: Option<(Op, Outcome, Option<String>)> = None;
        let mut line = String::new();
        if roll < 40 {
            let res = call(t, async {
                if cfg.sync_reads {
                    c.sync(&path).await?;
                }
                c.get_data(&path, false).await
            })
            .await;
            match res {
                Res::Ok((data, stat)) => {
                    let v = decode(data.as_deref()).unwrap_or(i64::MIN);
                    if let Some(slot) = versions.get_mut(key) {
                        *slot = stat.version;
                    }
                    let _ = write!(line, "read k{key} -> {v}@{}", stat.version);
                    let op = Op::Read {
                        value: v,
                        version: stat.version,
                    };
                    record = Some((op, Outcome::Ok, None));
                }
                Res::Failed(code) => {
                    let _ = write!(line, "read k{key} failed {code:?}");
                    let op = Op::Read {
                        value: 0,
                        version: 0,
                    };
                    record = Some((op, Outcome::Failed, Some(format!("{code:?}"))));
                }
                Res::Unknown(e) => {
                    let _ = write!(line, "read k{key} unknown {e}");
                    let op = Op::Read {
                        value: 0,
                        version: 0,
                    };
                    record = Some((op, Outcome::Unknown, Some(e)));
                }
            }
        } else if roll < 85 {
            let cas = roll >= 65;
            let expected = versions.get(key).copied().unwrap_or(0);
            let res = call(
                t,
                c.set_data(&path, &encode(value), cas.then_some(expected)),
            )
            .await;
            let name = if cas {
                format!("cas k{key} {expected}->{value}")
            } else {
                format!("write k{key} {value}")
            };
            let mk = |new_version| {
                if cas {
                    Op::Cas {
                        expected,
                        value,
                        new_version,
                    }
                } else {
                    Op::Write { value, new_version }
                }
            };
            match res {
                Res::Ok(stat) => {
                    if let Some(slot) = versions.get_mut(key) {
                        *slot = stat.version;
                    }
                    let _ = write!(line, "{name} ok @{}", stat.version);
                    record = Some((mk(Some(stat.version)), Outcome::Ok, None));
                }
                Res::Failed(code) => {
                    let _ = write!(line, "{name} failed {code:?}");
                    record = Some((mk(None), Outcome::Failed, Some(format!("{code:?}"))));
                }
                Res::Unknown(e) => {
                    let _ = write!(line, "{name} unknown {e}");
                    record = Some((mk(None), Outcome::Unknown, Some(e)));
                }
            }
        } else if roll < 95 {
            let res = call(
                t,
                c.create(
                    &format!("{SEQ}/s-"),
                    &encode(value),
                    &acl,
                    CreateMode::PersistentSequential,
                ),
            )
            .await;
            let mut h = history.lock().ok();
            match res {
                Res::Ok(p) => {
                    let _ = write!(line, "create-seq ok {p}");
                    if let Some(h) = h.as_mut() {
                        h.seq_created.push((id, p));
                    }
                }
                Res::Failed(code) => {
                    let _ = write!(line, "create-seq failed {code:?}");
                }
                Res::Unknown(e) => {
                    let _ = write!(line, "create-seq unknown {e}");
                    if let Some(h) = h.as_mut() {
                        h.seq_unknown += 1;
                    }
                }
            }
        } else {
            let p = format!("{EPH}/c{id}-{counter}");
            let res = call(t, c.create(&p, b"", &acl, CreateMode::Ephemeral)).await;
            match res {
                Res::Ok(p) => {
                    let _ = write!(line, "create-eph ok {p} session {session:#x}");
                    if let Ok(mut h) = history.lock() {
                        h.eph_created.push((id, session, p));
                    }
                }
                Res::Failed(code) => {
                    let _ = write!(line, "create-eph failed {code:?}");
                }
                Res::Unknown(e) => {
                    let _ = write!(line, "create-eph unknown {e}");
                }
            }
        }
        let ret_ns = now_ns(cfg.started);
        if let Ok(mut h) = history.lock() {
            let unknown = line.contains(" unknown ");
            if unknown {
                h.unknown += 1;
            } else {
                h.completed += 1;
            }
            let _ = writeln!(h.log, "{call_ns} {ret_ns} c{id} {line}");
            if let Some((op, outcome, error)) = record {
                h.ops.push(KeyOp {
                    key,
                    op: Operation {
                        client: id,
                        call: call_ns,
                        ret: if outcome == Outcome::Unknown {
                            u64::MAX
                        } else {
                            ret_ns
                        },
                        op,
                        outcome,
                    },
                    error,
                });
            }
        }
        tokio::time::sleep(cfg.think).await;
    }
    if let Some(c) = client {
        if c.state() == SessionState::Expired
            && let Ok(mut h) = history.lock()
        {
            h.expired_sessions.push(c.session_id());
        }
        let _ = tokio::time::timeout(cfg.op_timeout, c.close()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_data_round_trips() {
        assert_eq!(decode(Some(&encode(-42))), Some(-42));
        assert_eq!(decode(Some(&encode(3_000_000_017))), Some(3_000_000_017));
        assert_eq!(decode(Some(b"x")), None);
        assert_eq!(decode(None), None);
        assert_eq!(key_path(3), "/chaos/reg/k3");
    }
}
