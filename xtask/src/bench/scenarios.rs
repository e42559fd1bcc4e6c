//! Failover, catch-up, restart and footprint measurements on a running ensemble.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::time::Instant;

use super::ensemble::{Ensemble, NODES, parse_zxid};
use super::load;

/// Sessions writing during a failover.
const FAILOVER_WRITERS: usize = 3;
/// Steady load before the kill.
const FAILOVER_WARMUP: Duration = Duration::from_secs(1);
/// Longest wait for a write to succeed again or a leader to show up.
const FAILOVER_LIMIT: Duration = Duration::from_secs(30);
/// How often the survivors are asked who leads.
const LEADER_POLL: Duration = Duration::from_millis(10);
/// Longest wait for a restarted node to be in sync.
const SYNC_LIMIT: Duration = Duration::from_secs(300);

/// One leader failover.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailoverSample {
    /// From the kill to the first success of a write issued after it, ms.
    pub write_ms: f64,
    /// From the kill to a survivor answering `srvr` with `Mode: leader`, ms.
    pub leader_ms: f64,
}

/// Under a steady write load, `kill -9` the leader, time the first successful write
/// issued after the kill and the first survivor reporting itself leader, then start the
/// killed node again and wait for the ensemble to be whole.
pub async fn failover(ens: &mut Ensemble, keys: Arc<Vec<String>>) -> Result<FailoverSample> {
    let leader = ens.leader().context("no leader before the failover")?;
    let connect = ens.connect_string();
    let mut clients = Vec::new();
    for _ in 0..FAILOVER_WRITERS {
        clients.push(load::connect(&connect, 1).await?);
    }
    // When the leader was killed; writes issued after it count.
    let killed_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let first_ok: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        let (client, killed_at, first_ok, stop) = (
            client.clone(),
            killed_at.clone(),
            first_ok.clone(),
            stop.clone(),
        );
        let key = keys
            .get(i % keys.len().max(1))
            .cloned()
            .context("no keys")?;
        writers.push(tokio::spawn(async move {
            let value = [b'f'; load::VALUE_BYTES];
            let hard_end = Instant::now() + FAILOVER_LIMIT + FAILOVER_WARMUP;
            while !stop.load(Ordering::Relaxed) && Instant::now() < hard_end {
                let issued = Instant::now();
                let r = tokio::time::timeout(
                    Duration::from_secs(5),
                    client.set_data(&key, &value, None),
                )
                .await;
                let done = Instant::now();
                match r {
                    Ok(Ok(_)) => {
                        let after_kill = lock(&killed_at).is_some_and(|k| issued >= k);
                        if after_kill {
                            let mut first = lock(&first_ok);
                            if first.is_none_or(|f| done < f) {
                                *first = Some(done);
                            }
                        }
                    }
                    _ => tokio::time::sleep(Duration::from_millis(1)).await,
                }
            }
        }));
    }
    tokio::time::sleep(FAILOVER_WARMUP).await;
    let kill_at = Instant::now();
    *lock(&killed_at) = Some(kill_at);
    ens.kill(leader)?;
    // Poll the survivors for a new leader.
    let survivors: Vec<_> = (1..=NODES)
        .filter(|id| *id != leader)
        .map(|id| ens.client_addr(id))
        .collect();
    let mut leader_at = None;
    let deadline = kill_at + FAILOVER_LIMIT;
    while Instant::now() < deadline {
        let poll = Instant::now();
        if leader_at.is_none() {
            let addrs = survivors.clone();
            let found = tokio::task::spawn_blocking(move || {
                addrs.iter().any(|a| {
                    crate::cluster::parse_srvr(&crate::cluster::four_letter_word(
                        *a,
                        "srvr",
                        Duration::from_millis(300),
                    ))
                    .mode
                        == "leader"
                })
            })
            .await?;
            if found {
                leader_at = Some(Instant::now());
            }
        }
        if leader_at.is_some() && lock(&first_ok).is_some() {
            break;
        }
        tokio::time::sleep_until(poll + LEADER_POLL).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = w.await;
    }
    for c in &clients {
        let _ = tokio::time::timeout(Duration::from_secs(5), c.close()).await;
    }
    let first = *lock(&first_ok);
    ens.start(leader)?;
    ens.wait_ready(Duration::from_secs(120))?;
    let (Some(first), Some(leader_at)) = (first, leader_at) else {
        bail!("no write succeeded or no new leader within {FAILOVER_LIMIT:?} of the kill");
    };
    Ok(FailoverSample {
        write_ms: ms(first - kill_at),
        leader_ms: ms(leader_at - kill_at),
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The zxid node `id` reports, if it answers.
fn zxid_of(ens: &Ensemble, id: u32) -> Option<u64> {
    parse_zxid(&ens.info(id, Duration::from_secs(1)).zxid)
}

/// Waits until node `id` reports the leader's zxid; returns when (bounded by
/// [`SYNC_LIMIT`]).
fn wait_synced(ens: &Ensemble, id: u32, leader: u32) -> Result<Instant> {
    let started = Instant::now();
    loop {
        let target = zxid_of(ens, leader).context("the leader does not answer srvr")?;
        if zxid_of(ens, id) == Some(target) {
            return Ok(Instant::now());
        }
        if started.elapsed() > SYNC_LIMIT {
            bail!("node {id} not in sync after {SYNC_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Stops a follower (SIGTERM), writes `txns` setData txns through the other nodes,
/// starts it again and returns the seconds from its start until it reports the leader's
/// zxid.
pub async fn catch_up(ens: &mut Ensemble, keys: Arc<Vec<String>>, txns: u64) -> Result<f64> {
    let leader = ens.leader().context("no leader")?;
    let follower = ens.follower().context("no follower")?;
    ens.stop(follower)?;
    let others: Vec<_> = (1..=NODES)
        .filter(|id| *id != follower)
        .map(|id| ens.client_addr(id))
        .collect();
    let written = load::write_count(&others, 8, 16, txns, keys, None).await;
    let started = Instant::now();
    ens.start(follower)?;
    written?;
    let synced = tokio::task::block_in_place(|| wait_synced(ens, follower, leader))?;
    Ok((synced - started).as_secs_f64())
}

/// What the big-database phase measured.
#[derive(Debug, Clone, PartialEq)]
pub struct BigDb {
    /// RSS of each node with the znodes loaded, MiB.
    pub rss_mib: Vec<f64>,
    /// Seconds from a follower's start until it answered `srvr` as a follower.
    pub serve_s: f64,
    /// Seconds from its start until it reported the leader's zxid.
    pub synced_s: f64,
}

/// Creates `znodes` znodes of 100 B, measures every node's RSS, then restarts a follower
/// (SIGTERM, start) and times how long it takes to load the database and serve.
pub async fn big_db(ens: &mut Ensemble, znodes: u64) -> Result<BigDb> {
    let addrs = ens.addrs();
    let connect = addrs.first().map(ToString::to_string).context("no nodes")?;
    let client = load::connect(&connect, 16).await?;
    load::ensure(&client, "/bench").await?;
    load::ensure(&client, "/bench/big").await?;
    let _ = client.close().await;
    load::write_count(
        &addrs,
        16,
        16,
        znodes,
        Arc::new(Vec::new()),
        Some("/bench/big"),
    )
    .await?;
    let leader = ens.leader().context("no leader")?;
    for id in 1..=NODES {
        tokio::task::block_in_place(|| wait_synced(ens, id, leader))?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_mib = (1..=NODES)
        .map(|id| ens.rss_kib(id).map_or(f64::NAN, |k| k as f64 / 1024.0))
        .collect();
    let follower = ens.follower().context("no follower")?;
    ens.stop(follower)?;
    let started = Instant::now();
    ens.start(follower)?;
    let serving = tokio::task::block_in_place(|| -> Result<Instant> {
        loop {
            if ens.info(follower, Duration::from_secs(1)).mode == "follower" {
                return Ok(Instant::now());
            }
            if started.elapsed() > SYNC_LIMIT {
                bail!("node {follower} not serving after {SYNC_LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    })?;
    let synced = tokio::task::block_in_place(|| wait_synced(ens, follower, leader))?;
    Ok(BigDb {
        rss_mib,
        serve_s: (serving - started).as_secs_f64(),
        synced_s: (synced - started).as_secs_f64(),
    })
}
