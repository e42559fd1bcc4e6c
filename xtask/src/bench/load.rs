//! The load generator: many sessions, each pipelining several requests, through the
//! project's own client (`zk_server::client`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::time::Instant;
use zk_proto::data::{Acl, CreateMode, ErrorCode};
use zk_server::client::{Client, Error as ClientError};

/// Bytes of every value written.
pub const VALUE_BYTES: usize = 100;
/// Latency samples kept per task (later ops are counted but not sampled).
const MAX_SAMPLES_PER_TASK: usize = 2_000_000;
/// Session timeout the load sessions ask for.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for one request; a request that takes longer counts as an error.
const OP_TIMEOUT: Duration = Duration::from_secs(15);
/// Runs started by this process (names the znodes each run creates).
static RUNS: AtomicU64 = AtomicU64::new(0);
/// Pause after a failed request, so a broken connection is not spun on.
const ERROR_PAUSE: Duration = Duration::from_millis(2);

/// The operation mix of a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// create of new 100 B znodes.
    Create,
    /// setData on existing keys.
    Set,
    /// getData on existing keys.
    Get,
    /// 90 % getData, 10 % setData.
    Read90,
}

impl Mix {
    /// Name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Mix::Create => "create",
            Mix::Set => "setData",
            Mix::Get => "getData",
            Mix::Read90 => "90% read",
        }
    }

    /// True when every operation is a write.
    pub fn is_write(self) -> bool {
        matches!(self, Mix::Create | Mix::Set)
    }
}

/// One measured load: a mix at a number of sessions and requests in flight per session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    /// What the operations are.
    pub mix: Mix,
    /// Sessions, spread round-robin over the nodes.
    pub sessions: usize,
    /// Requests each session keeps in flight.
    pub in_flight: usize,
}

impl Workload {
    /// `setData 16×16`.
    pub fn label(&self) -> String {
        format!("{} {}×{}", self.mix.name(), self.sessions, self.in_flight)
    }
}

/// Latency percentiles and throughput of one run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadResult {
    /// Operations completed in the measured window.
    pub ops: u64,
    /// Failed operations in the measured window.
    pub errors: u64,
    /// Operations per second.
    pub ops_per_s: f64,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// 99.9th percentile, µs.
    pub p999_us: f64,
}

/// The `q`-quantile (0..=1) of sorted samples, nearest rank; `None` when empty.
pub fn quantile(sorted: &[u32], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.saturating_sub(1).min(sorted.len() - 1))
        .map(|v| f64::from(*v))
}

/// A deterministic, cheap pseudo-random sequence (xorshift) for key picks.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A sequence from a seed (0 is replaced).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// The next number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// Opens a session to one server.
pub async fn connect(addr: &str, in_flight: usize) -> Result<Client> {
    let (client, _events) = Client::builder(addr)
        .session_timeout(SESSION_TIMEOUT)
        .connect_timeout(Duration::from_secs(10))
        .max_in_flight(in_flight.max(1))
        .connect()
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    Ok(client)
}

/// Creates `path` unless it exists.
pub async fn ensure(client: &Client, path: &str) -> Result<()> {
    match client
        .create(path, b"", &Acl::open_unsafe(), CreateMode::Persistent)
        .await
    {
        Ok(_) | Err(ClientError::Keeper(ErrorCode::NodeExists)) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating {path}")),
    }
}

/// Creates `count` keys `{parent}/k{i}` of [`VALUE_BYTES`] (pipelined) and returns their
/// paths.
pub async fn make_keys(client: &Client, parent: &str, count: usize) -> Result<Vec<String>> {
    ensure(client, parent).await?;
    let keys: Vec<String> = (0..count).map(|i| format!("{parent}/k{i}")).collect();
    let value = [b'v'; VALUE_BYTES];
    for chunk in keys.chunks(256) {
        let calls = chunk.iter().map(|k| async {
            match client
                .create(k, &value, &Acl::open_unsafe(), CreateMode::Persistent)
                .await
            {
                Ok(_) | Err(ClientError::Keeper(ErrorCode::NodeExists)) => Ok(()),
                Err(e) => Err(e),
            }
        });
        for r in futures::future::join_all(calls).await {
            r.context("creating a key")?;
        }
    }
    Ok(keys)
}

/// What a task does for its next request.
async fn one_op(
    client: &Client,
    mix: Mix,
    keys: &[String],
    rng: &mut Rng,
    create_path: &str,
    value: &[u8],
) -> Result<(), ClientError> {
    let key = keys.get(rng.below(keys.len())).map_or("/", String::as_str);
    match mix {
        Mix::Create => client
            .create(
                create_path,
                value,
                &Acl::open_unsafe(),
                CreateMode::Persistent,
            )
            .await
            .map(|_| ()),
        Mix::Set => client.set_data(key, value, None).await.map(|_| ()),
        Mix::Get => client.get_data(key, false).await.map(|_| ()),
        Mix::Read90 => {
            if rng.below(10) == 0 {
                client.set_data(key, value, None).await.map(|_| ())
            } else {
                client.get_data(key, false).await.map(|_| ())
            }
        }
    }
}

/// Runs a workload against `servers`: session `i` talks only to `servers[i % n]`; every
/// task runs closed-loop requests for `warmup` (unrecorded), then for `duration`
/// (recorded). Creates go under `create_parent` (which must exist).
pub async fn run(
    servers: &[SocketAddr],
    workload: Workload,
    keys: Arc<Vec<String>>,
    create_parent: &str,
    warmup: Duration,
    duration: Duration,
) -> Result<LoadResult> {
    let mut clients = Vec::with_capacity(workload.sessions);
    for i in 0..workload.sessions {
        let addr = servers
            .get(i % servers.len().max(1))
            .context("no servers")?
            .to_string();
        clients.push(connect(&addr, workload.in_flight).await?);
    }
    // Every run creates under names of its own, so no create collides with an earlier one.
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let mut tasks = Vec::new();
    for (s, client) in clients.iter().enumerate() {
        for t in 0..workload.in_flight {
            let client = client.clone();
            let keys = keys.clone();
            let errors = errors.clone();
            let parent = format!("{create_parent}/r{run}s{s}t{t}-");
            let mut rng = Rng::new((s as u64) << 20 | t as u64);
            tasks.push(tokio::spawn(async move {
                let value = [b'x'; VALUE_BYTES];
                let mut samples: Vec<u32> = Vec::new();
                let mut seq = 0u64;
                let mut ops = 0u64;
                loop {
                    let issued = Instant::now();
                    if issued >= end {
                        break;
                    }
                    seq += 1;
                    let path = format!("{parent}{seq}");
                    let outcome = tokio::time::timeout(
                        OP_TIMEOUT,
                        one_op(&client, workload.mix, &keys, &mut rng, &path, &value),
                    )
                    .await;
                    let done = Instant::now();
                    let recorded = issued >= measure_from && done <= end;
                    match outcome {
                        Ok(Ok(())) => {
                            if recorded {
                                ops += 1;
                                if samples.len() < MAX_SAMPLES_PER_TASK {
                                    let us = (done - issued).as_micros();
                                    samples.push(u32::try_from(us).unwrap_or(u32::MAX));
                                }
                            }
                        }
                        Ok(Err(_)) | Err(_) => {
                            if recorded {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                            tokio::time::sleep(ERROR_PAUSE).await;
                        }
                    }
                }
                (ops, samples)
            }));
        }
    }
    let mut ops = 0;
    let mut samples = Vec::new();
    for task in tasks {
        let (n, s) = task.await.context("a load task panicked")?;
        ops += n;
        samples.extend(s);
    }
    for client in &clients {
        let _ = client.close().await;
    }
    samples.sort_unstable();
    let q = |p| quantile(&samples, p).unwrap_or(f64::NAN);
    Ok(LoadResult {
        ops,
        errors: errors.load(Ordering::Relaxed),
        ops_per_s: ops as f64 / duration.as_secs_f64(),
        p50_us: q(0.50),
        p99_us: q(0.99),
        p999_us: q(0.999),
    })
}

/// Writes exactly `count` setData requests (or creates under `create_parent`, when given)
/// with `sessions × in_flight` pipelined requests over `servers`; fails when more than a
/// few requests fail.
pub async fn write_count(
    servers: &[SocketAddr],
    sessions: usize,
    in_flight: usize,
    count: u64,
    keys: Arc<Vec<String>>,
    create_parent: Option<&str>,
) -> Result<()> {
    let mut clients = Vec::with_capacity(sessions);
    for i in 0..sessions {
        let addr = servers
            .get(i % servers.len().max(1))
            .context("no servers")?
            .to_string();
        clients.push(connect(&addr, in_flight).await?);
    }
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let first_error: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let mut tasks = Vec::new();
    for client in &clients {
        for _ in 0..in_flight {
            let (client, keys, next, failed, first_error) = (
                client.clone(),
                keys.clone(),
                next.clone(),
                failed.clone(),
                first_error.clone(),
            );
            let parent = create_parent.map(str::to_owned);
            tasks.push(tokio::spawn(async move {
                let value = [b'y'; VALUE_BYTES];
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count || failed.load(Ordering::Relaxed) > 100 {
                        break;
                    }
                    let r = match &parent {
                        Some(p) => client
                            .create(
                                &format!("{p}/n{i}"),
                                &value,
                                &Acl::open_unsafe(),
                                CreateMode::Persistent,
                            )
                            .await
                            .map(|_| ()),
                        None => {
                            let key = keys.get(i as usize % keys.len().max(1));
                            client
                                .set_data(key.map_or("/", String::as_str), &value, None)
                                .await
                                .map(|_| ())
                        }
                    };
                    if let Err(e) = r {
                        if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                            *first_error.lock().unwrap_or_else(|p| p.into_inner()) =
                                Some(e.to_string());
                        }
                        tokio::time::sleep(ERROR_PAUSE).await;
                    }
                }
            }));
        }
    }
    for task in tasks {
        task.await.context("a writer task panicked")?;
    }
    for client in &clients {
        let _ = client.close().await;
    }
    let failed = failed.load(Ordering::Relaxed);
    if failed > 100 {
        let first = first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default();
        anyhow::bail!(
            "{failed} of {} writes failed (the first with: {first})",
            next.load(Ordering::Relaxed).min(count)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let v: Vec<u32> = (1..=1000).collect();
        assert_eq!(quantile(&v, 0.5), Some(500.0));
        assert_eq!(quantile(&v, 0.99), Some(990.0));
        assert_eq!(quantile(&v, 0.999), Some(999.0));
        assert_eq!(quantile(&v, 1.0), Some(1000.0));
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[7], 0.999), Some(7.0));
    }

    #[test]
    fn rng_stays_below_its_bound_and_spreads() {
        let mut r = Rng::new(0);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            let i = r.below(10);
            assert!(i < 10);
            seen[i] += 1;
        }
        assert!(seen.iter().all(|n| *n > 500), "{seen:?}");
        assert_eq!(Rng::new(5).below(1), 0);
    }

    #[test]
    fn labels_name_the_mix_and_shape() {
        let w = Workload {
            mix: Mix::Read90,
            sessions: 16,
            in_flight: 16,
        };
        assert_eq!(w.label(), "90% read 16×16");
        assert!(Mix::Set.is_write() && !Mix::Get.is_write());
    }
}
