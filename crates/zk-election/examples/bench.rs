//! Election latency on loopback: time from start to "all nodes decided", and from the
//! leader stopping to "all the others decided again".
//!
//! `cargo run --release -p zk-election --example bench -- [--runs 50] [--sizes 3,5,7]`
//!
//! Each run starts a fresh ensemble on 127.0.0.1..n (port 0) with random logs, starts
//! every node's election at the same moment and waits for all decisions; then it stops
//! the leader and has the others run again at once (a server would first notice the
//! loss through Zab; that detection time is not part of the election and not measured).
//! Prints median and p99 per size.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use zk_election::{ElectionHandle, ElectionInputs, ElectionNode, Member, NodeConfig, Sid};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut runs = 50usize;
    let mut sizes = vec![3u64, 5, 7];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().context("--runs N")?.parse()?,
            "--sizes" => {
                sizes = args
                    .next()
                    .context("--sizes 3,5,7")?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    anyhow::ensure!(
        runs > 0 && sizes.iter().all(|n| (1..=200).contains(n)),
        "bad arguments"
    );

    println!(
        "| nodes | runs | start→all decided: median | p99 | leader stop→all decided: median | p99 |"
    );
    println!("|---|---|---|---|---|---|");
    let mut rng = SmallRng::seed_from_u64(42);
    for n in sizes {
        let mut start = Vec::with_capacity(runs);
        let mut failover = Vec::with_capacity(runs);
        for _ in 0..runs {
            let (a, b) = one_run(n, &mut rng).await?;
            start.push(a);
            if let Some(b) = b {
                failover.push(b);
            }
        }
        println!(
            "| {n} | {runs} | {} | {} | {} | {} |",
            ms(pct(&mut start, 50)),
            ms(pct(&mut start, 99)),
            ms(pct(&mut failover, 50)),
            ms(pct(&mut failover, 99)),
        );
    }
    Ok(())
}

async fn one_run(n: u64, rng: &mut SmallRng) -> anyhow::Result<(Duration, Option<Duration>)> {
    let mut members = BTreeMap::new();
    let mut listeners = Vec::new();
    for sid in 1..=n {
        let l = tokio::net::TcpListener::bind(format!("127.0.0.{sid}:0")).await?;
        members.insert(
            sid,
            Member {
                election_addr: l.local_addr()?.to_string(),
                observer: false,
            },
        );
        listeners.push((sid, l));
    }
    let inputs: BTreeMap<Sid, ElectionInputs> = (1..=n)
        .map(|sid| {
            let epoch = rng.random_range(1..3i64);
            let counter = rng.random_range(0..100i64);
            (
                sid,
                ElectionInputs {
                    last_logged_zxid: zk_proto::zxid::make(epoch, counter),
                    current_epoch: epoch,
                },
            )
        })
        .collect();
    let t0 = Instant::now();
    let mut nodes = BTreeMap::new();
    for (sid, l) in listeners {
        nodes.insert(
            sid,
            ElectionNode::start_tcp(NodeConfig::new(sid, members.clone()), l)?,
        );
    }
    let leader = elect(&nodes, &inputs).await?;
    let start = t0.elapsed();
    if n < 3 {
        return Ok((start, None));
    }
    let t1 = Instant::now();
    nodes.remove(&leader);
    elect(&nodes, &inputs).await?;
    Ok((start, Some(t1.elapsed())))
}

async fn elect(
    nodes: &BTreeMap<Sid, ElectionHandle>,
    inputs: &BTreeMap<Sid, ElectionInputs>,
) -> anyhow::Result<Sid> {
    let runs = nodes.iter().map(|(sid, node)| {
        let i = inputs.get(sid).copied();
        async move {
            node.run(i.context("no inputs")?)
                .await
                .map_err(anyhow::Error::from)
        }
    });
    let ds = tokio::time::timeout(Duration::from_secs(60), futures::future::try_join_all(runs))
        .await
        .context("election timed out")??;
    let leader = ds.first().map(|d| d.leader()).context("no decision")?;
    anyhow::ensure!(
        ds.iter().all(|d| d.leader() == leader),
        "disagreement: {ds:?}"
    );
    Ok(leader)
}

fn pct(v: &mut [Duration], p: usize) -> Option<Duration> {
    if v.is_empty() {
        return None;
    }
    v.sort();
    let i = (v.len() * p)
        .div_ceil(100)
        .saturating_sub(1)
        .min(v.len() - 1);
    v.get(i).copied()
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".into(),
        |d| format!("{:.1} ms", d.as_secs_f64() * 1e3),
    )
}
