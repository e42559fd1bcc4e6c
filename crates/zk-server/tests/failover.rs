//! Leader failover in a five-node ensemble of real `zk-server` processes: the leader is
//! killed under a write load, then the leader elected after it, so that the survivors
//! elect twice with a dead voter that was connected (the case in which the finalize wait
//! is shortened once every live voter agrees). Checked: each time one leader with every
//! live node following, a different one; writes acknowledged after each kill; no
//! acknowledged write lost on any node; the survivors' trees equal. Timings are printed,
//! never asserted. Bounded in time; every process is killed when the test ends.

mod ensemble_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use ensemble_support::{Ensemble, Progress, client, client_of, eventually, subtree, writer};
use zookeeper_client as zk;

/// Upper bound of the test.
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Bound of anything that happens in the background (election, catch-up).
const BACKGROUND: Duration = Duration::from_secs(30);

/// Writers running at once.
const WRITERS: usize = 3;

fn persistent() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

/// Kills the leader, waits for the next one and for a write acknowledged after the kill;
/// returns the new leader.
async fn kill_leader(
    ens: &mut Ensemble,
    leader: u32,
    acked_after: impl Fn(Instant) -> Result<bool>,
) -> Result<u32> {
    let killed_at = Instant::now();
    ens.kill9(leader)?;
    let next = ens.wait_for_leader(BACKGROUND)?;
    ensure!(next != leader, "node {leader} was killed but still leads");
    let elected_after = killed_at.elapsed();
    eventually(BACKGROUND, "a write acknowledged after the kill", || {
        let done = acked_after(killed_at);
        async move { done }
    })
    .await?;
    eprintln!(
        "leader {leader} killed: node {next} leads after {elected_after:?}, writes resumed \
         within {:?}",
        killed_at.elapsed()
    );
    Ok(next)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_survive_two_leader_kills_without_losing_a_write() -> Result<()> {
    let mut ens = Ensemble::start(5)?;
    let r = tokio::time::timeout(TEST_TIMEOUT, async {
        let first = ens.wait_for_leader(BACKGROUND)?;
        let setup = client_of(&ens, first).await?;
        setup.create("/fo", b"", &persistent()).await?;
        drop(setup);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let (progress_tx, progress) = tokio::sync::watch::channel::<Progress>((0, None));
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let c = client(&ens.connect_string_all(), Duration::from_secs(10)).await?;
            tasks.push(tokio::spawn(writer(
                c,
                "/fo",
                w,
                stop_rx.clone(),
                Some(progress_tx.clone()),
            )));
        }
        let acked_after = |killed_at: Instant| -> Result<bool> {
            Ok(progress.borrow().1.is_some_and(|sent| sent >= killed_at))
        };
        eventually(
            BACKGROUND,
            "writes acknowledged before the first kill",
            || {
                let n = progress.borrow().0;
                async move { Ok(n >= 20) }
            },
        )
        .await?;
        let second = kill_leader(&mut ens, first, acked_after).await?;
        let third = kill_leader(&mut ens, second, acked_after).await?;
        ensure!(third != first, "a killed node leads");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = stop_tx.send(true);
        let mut acked = Vec::new();
        for t in tasks {
            acked.extend(t.await??.acked);
        }
        ensure!(!acked.is_empty(), "no write acknowledged");
        // Every acknowledged write is on each of the three survivors, whose trees are
        // the same once their zxids are.
        let alive: Vec<u32> = ens
            .ids()
            .into_iter()
            .filter(|id| *id != first && *id != second)
            .collect();
        eventually(BACKGROUND, "the survivors at one zxid", || {
            let zxids: BTreeSet<i64> = alive
                .iter()
                .filter_map(|id| ens.srvr(*id).ok().map(|s| s.zxid))
                .collect();
            async move { Ok(zxids.len() == 1) }
        })
        .await?;
        let mut trees = Vec::new();
        for id in &alive {
            let c = client_of(&ens, *id).await?;
            trees.push((*id, subtree(&c, "/fo").await?));
        }
        for (id, tree) in &trees {
            for (path, value, _, _) in &acked {
                match tree.get(path) {
                    Some(v) if v == value => {}
                    Some(v) => bail!("{path} on node {id} holds {v:?}"),
                    None => bail!("acknowledged {path} is missing on node {id}"),
                }
            }
            ensure!(
                *tree == trees[0].1,
                "node {id}'s /fo differs from node {}'s",
                trees[0].0
            );
        }
        eprintln!(
            "{} writes acknowledged, all on nodes {alive:?}",
            acked.len()
        );
        Ok(())
    })
    .await
    .context("test did not finish in time")
    .and_then(|r| r);
    r.map_err(|e| e.context(ens.logs()))
}
