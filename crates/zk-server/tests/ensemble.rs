//! A real three-node ensemble of `zk-server` processes (node `i` on `127.0.0.i`, ports
//! picked here, `tickTime` 500 ms) driven by an independent client, the
//! `zookeeper-client` crate (and the raw jute client of `common/` where the wire matters):
//! writes through followers and `sync`, sequential names across servers, ephemerals and
//! session expiry decided by the leader, clients that move to another server when theirs
//! dies or freezes, a leader killed (or frozen) under a write load, nodes that catch up
//! after a restart (DIFF, SNAP, TRUNC, across epochs, with large values), watches fired
//! on a follower, quorum loss, whole-ensemble restarts, an observer, and a client refused
//! by a server that is behind what it has seen. Every test is bounded in time and kills
//! its processes when it ends (`ZK_ENSEMBLE_KEEP=1` keeps their files).

mod common;
mod ensemble_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use common::raw::{self, Raw};
use ensemble_support::{Ensemble, client, client_of, eventually, subtree, writer};
use zk_proto::jute::{Request, SetDataRequest, SyncRequest};
use zookeeper_client as zk;

/// Upper bound of any one test.
const TEST_TIMEOUT: Duration = Duration::from_secs(90);

/// Generous bound for things that happen in the background (expiry, catch-up, failover).
const BACKGROUND: Duration = Duration::from_secs(20);

fn persistent() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

fn ephemeral() -> zk::CreateOptions<'static> {
    zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all())
}

fn sequential() -> zk::CreateOptions<'static> {
    zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all())
}

/// Runs a test body with the ensemble's logs attached to its error, bounded in time.
async fn bounded<F>(body: F) -> Result<()>
where
    F: std::future::Future<Output = Result<()>>,
{
    match tokio::time::timeout(TEST_TIMEOUT, body).await {
        Ok(r) => r,
        Err(_) => bail!("test did not finish within {TEST_TIMEOUT:?}"),
    }
}

fn followers(ens: &Ensemble, leader: u32) -> (u32, u32) {
    let f = ens.others(leader);
    (f[0], f[1])
}

// -- sync and reads across servers ------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_through_a_follower_is_read_on_another_server_after_sync() -> Result<()> {
    let (ens, leader) = Ensemble::start_three()?;
    let (f1, f2) = followers(&ens, leader);
    let r = bounded(async {
        let w = client_of(&ens, f1).await?;
        let r2 = client_of(&ens, f2).await?;
        let rl = client_of(&ens, leader).await?;
        w.create("/sync", b"", &persistent()).await?;
        // One write through the follower, then a sync and a read on the other follower
        // and on the leader.
        w.create("/sync/a", b"one", &persistent()).await?;
        for (name, reader) in [("follower", &r2), ("leader", &rl)] {
            reader.sync("/sync/a").await?;
            let (data, _) = reader
                .get_data("/sync/a")
                .await
                .with_context(|| format!("read on the {name}"))?;
            ensure!(data == b"one", "the {name} read {data:?}");
        }
        // Many writes acknowledged through both followers and the leader: after one sync
        // every server returns every one of them.
        let mut acked = BTreeMap::new();
        for i in 0..30u32 {
            let (c, via) = match i % 3 {
                0 => (&w, f1),
                1 => (&r2, f2),
                _ => (&rl, leader),
            };
            let path = format!("/sync/n{i:03}");
            let value = format!("v{i}-via-{via}").into_bytes();
            c.create(&path, &value, &persistent()).await?;
            c.set_data("/sync/a", &value, None).await?;
            acked.insert(path, value);
        }
        let last = acked.values().last().cloned().unwrap_or_default();
        for (id, reader) in [(f1, &w), (f2, &r2), (leader, &rl)] {
            reader.sync("/sync").await?;
            for (path, value) in &acked {
                let (data, _) = reader
                    .get_data(path)
                    .await
                    .with_context(|| format!("{path} on node {id}"))?;
                ensure!(&data == value, "{path} on node {id}: {data:?}");
            }
            let (data, _) = reader.get_data("/sync/a").await?;
            ensure!(data == last, "/sync/a on node {id}: {data:?}");
        }
        Ok(())
    })
    .await;
    r.map_err(|e| e.context(ens.logs()))
}

// -- sequential names -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_creates_through_different_servers_get_distinct_increasing_names() -> Result<()>
{
    let (ens, _leader) = Ensemble::start_three()?;
    let r = bounded(async {
        let mut clients = Vec::new();
        for id in ens.ids() {
            clients.push((id, client_of(&ens, id).await?));
        }
        clients[0].1.create("/seq", b"", &persistent()).await?;
        // In turn: each create is acknowledged before the next one, through another
        // server; the names count up by one.
        let mut names = Vec::new();
        for i in 0..12usize {
            let (_, c) = &clients[i % clients.len()];
            let (_, seq) = c.create("/seq/turn-", b"", &sequential()).await?;
            names.push(seq.into_i64());
        }
        ensure!(
            names == (0..12).collect::<Vec<i64>>(),
            "names created in turn: {names:?}"
        );
        // At once: three clients (one per server) create concurrently; every client's
        // names increase and no name is given twice.
        const PER_CLIENT: i64 = 40;
        let mut tasks = Vec::new();
        for (id, c) in &clients {
            let c = c.clone();
            let id = *id;
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                for _ in 0..PER_CLIENT {
                    let (_, seq) = c.create("/seq/par-", b"", &sequential()).await?;
                    mine.push(seq.into_i64());
                }
                anyhow::Ok((id, mine))
            }));
        }
        let mut all = BTreeSet::new();
        for t in tasks {
            let (id, mine) = t.await??;
            ensure!(
                mine.windows(2).all(|w| w[0] < w[1]),
                "names of the client on node {id} do not increase: {mine:?}"
            );
            for n in mine {
                ensure!(all.insert(n), "name {n} given twice");
            }
        }
        let expected: BTreeSet<i64> = (12..12 + 3 * PER_CLIENT).collect();
        ensure!(all == expected, "names given: {all:?}");
        // Every server lists the same children under /seq.
        let mut lists = Vec::new();
        for (id, c) in &clients {
            c.sync("/seq").await?;
            let mut children = c.list_children("/seq").await?;
            children.sort();
            lists.push((*id, children));
        }
        ensure!(lists[0].1.len() == 12 + 3 * PER_CLIENT as usize);
        for (id, l) in &lists[1..] {
            ensure!(
                *l == lists[0].1,
                "node {id} lists other children under /seq"
            );
        }
        Ok(())
    })
    .await;
    r.map_err(|e| e.context(ens.logs()))
}

// -- ephemerals and sessions ------------------------------------------------------------

/// Waits (bounded) for the one event of `watcher`.
async fn event(watcher: zk::OneshotWatcher) -> Result<zk::WatchedEvent> {
    tokio::time::timeout(BACKGROUND, watcher.changed())
        .await
        .context("no watch event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_created_through_a_follower_goes_when_its_session_closes() -> Result<()> {
    let (ens, leader) = Ensemble::start_three()?;
    let (f1, f2) = followers(&ens, leader);
    let r = bounded(async {
        let owner = client_of(&ens, f1).await?;
        let other = client_of(&ens, f2).await?;
        owner.create("/eph", b"", &persistent()).await?;
        let (stat, _) = owner.create("/eph/closed", b"x", &ephemeral()).await?;
        ensure!(stat.ephemeral_owner == owner.session_id().0);
        other.sync("/eph").await?;
        let (seen, watcher) = other.check_and_watch_stat("/eph/closed").await?;
        let seen = seen.context("the other follower does not see the ephemeral")?;
        ensure!(seen.ephemeral_owner == owner.session_id().0);
        // Dropping the last handle of a client closes its session.
        drop(owner);
        let ev = event(watcher).await?;
        ensure!(
            ev.event_type == zk::EventType::NodeDeleted && ev.path == "/eph/closed",
            "{ev:?}"
        );
        let on_leader = client_of(&ens, leader).await?;
        on_leader.sync("/eph").await?;
        ensure!(on_leader.check_stat("/eph/closed").await?.is_none());
        Ok(())
    })
    .await;
    r.map_err(|e| e.context(ens.logs()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_created_through_a_follower_goes_when_the_leader_expires_its_session()
-> Result<()> {
    let (ens, leader) = Ensemble::start_three()?;
    let (f1, f2) = followers(&ens, leader);
    let r = bounded(async {
        // A raw client on a follower, with the shortest session (2 ticks = 1 s).
        let mut owner = Raw::connect(ens.client_addr(f1), 1000).await?;
        ensure!(owner.timeout_ms == 1000, "timeout {}", owner.timeout_ms);
        let created = owner.create("/expiring", Some(b"x"), 1).await?;
        let (_, stat) = created.map_err(|e| anyhow::anyhow!("create failed: {e}"))?;
        ensure!(stat.ephemeral_owner == owner.session_id);
        let other = client_of(&ens, f2).await?;
        // While it pings its follower (which reports to the leader), the session lives
        // on well past its timeout.
        let until = Instant::now() + Duration::from_millis(3000);
        while Instant::now() < until {
            owner.ping().await?;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        other.sync("/expiring").await?;
        let (stat, watcher) = other.check_and_watch_stat("/expiring").await?;
        let stat = stat.context("the ephemeral of a pinging session is gone")?;
        ensure!(stat.ephemeral_owner == owner.session_id);
        // Silence: the leader expires the session, the ephemeral goes everywhere, and the
        // follower closes the owner's connection.
        let silent_since = Instant::now();
        let ev = event(watcher).await?;
        ensure!(
            ev.event_type == zk::EventType::NodeDeleted && ev.path == "/expiring",
            "{ev:?}"
        );
        eprintln!(
            "ephemeral of a silent 1 s session deleted {:?} after its last ping",
            silent_since.elapsed()
        );
        ensure!(
            raw::closed_by_server(owner.stream()).await?,
            "the follower kept the expired session's connection open"
        );
        // The session is gone for good: resuming it on another server is refused.
        let req = raw::connect_request(1000, owner.session_id, owner.passwd.clone(), 0);
        let (_, resp) = raw::handshake(ens.client_addr(leader), &req).await?;
        let resp = resp.context("no answer to the handshake")?;
        ensure!(resp.session_id == 0 && resp.timeout_ms == 0, "{resp:?}");
        Ok(())
    })
    .await;
    r.map_err(|e| e.context(ens.logs()))
}

// -- a client whose server dies ---------------------------------------------------------

/// Waits (bounded) until `c` is connected again after a `Disconnected`.
async fn reconnected(c: &zk::Client) -> Result<()> {
    let mut states = c.state_watcher();
    let wait = async {
        loop {
            match states.state() {
                zk::SessionState::SyncConnected => return Ok(()),
                zk::SessionState::Disconnected => {}
                other => bail!("session state {other}"),
            }
            states.changed().await;
        }
    };
    tokio::time::timeout(BACKGROUND, wait)
        .await
        .context("the client did not reconnect")?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_of_a_killed_follower_moves_to_another_server_with_its_session() -> Result<()> {
    let (mut ens, leader) = Ensemble::start_three()?;
    let (f1, f2) = followers(&ens, leader);
    let r = bounded(async {
        // The client knows only the two followers, so it lands on one of them.
        let c = client(&ens.connect_string(&[f1, f2]), Duration::from_secs(6)).await?;
        let session = c.session_id().0;
        c.create("/moving", b"", &persistent()).await?;
        c.create("/moving/eph", b"mine", &ephemeral()).await?;
        let (_, watcher) = c.check_and_watch_stat("/moving/watched").await?;
        let first = ens
            .server_of(session)
            .context("no server lists the session")?;
        ensure!(first == f1 || first == f2, "the session is on node {first}");
        ens.kill9(first)?;
        // The client reconnects to the other follower, with the same session.
        let expected = if first == f1 { f2 } else { f1 };
        eventually(
            BACKGROUND,
            "the session moves to the other follower",
            || {
                let on = ens.server_of(session);
                async move { Ok(on == Some(expected)) }
            },
        )
        .await?;
        reconnected(&c).await?;
        ensure!(c.session_id().0 == session);
        // Its ephemeral is intact, seen from every live server; it still writes; the watch
        // it set before the move fires.
        let (data, stat) = c.get_data("/moving/eph").await?;
        ensure!(data == b"mine" && stat.ephemeral_owner == session);
        let on_leader = client_of(&ens, leader).await?;
        on_leader.sync("/moving").await?;
        let stat = on_leader.check_stat("/moving/eph").await?;
        ensure!(stat.is_some_and(|s| s.ephemeral_owner == session));
        on_leader
            .create("/moving/watched", b"", &persistent())
            .await?;
        let ev = event(watcher).await?;
        ensure!(
            ev.event_type == zk::EventType::NodeCreated && ev.path == "/moving/watched",
            "{ev:?}"
        );
        c.set_data("/moving", b"after", None).await?;
        // And it lives on past its timeout (pings now go to the other follower).
        tokio::time::sleep(Duration::from_secs(7)).await;
        on_leader.sync("/moving").await?;
        ensure!(on_leader.check_stat("/moving/eph").await?.is_some());
        Ok(())
    })
    .await;
    r.map_err(|e| e.context(ens.logs()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_on_a_killed_leader_is_resumed_on_a_follower_with_its_ephemerals() -> Result<()> {
    let (mut ens, leader) = Ensemble::start_three()?;
    let (f1, f2) = followers(&ens, leader);
    let r = bounded(async {
        // A detached client on the leader alone: dropping it does not close the session.
        let c = zk::Client::connector()
            .with_detached()
            .with_connection_timeout(Duration::from_secs(3))
            .with_session_timeout(Duration::from_secs(8))
            .connect(&ens.connect_string(&[leader]))
            .await?;
        let session = c.session().clone();
        c.create("/resumed", b"", &persistent()).await?;
        c.create("/resumed/eph", b"kept", &ephemeral()).await?;
        ens.kill9(leader)?;
        drop(c);
        let new_leader = ens.wait_for_leader(BACKGROUND)?;
        ensure!(new_leader == f1 || new_leader == f2);
        // The same session, resumed on the followers' side of the ensemble.
        let c = zk::Client::connector()
            .with_session(session.clone())
            .with_connection_timeout(Duration::from_secs(3))
            .with_session_timeout(Duration::from_secs(8))
            .connect(&ens.connect_string(&[f1, f2]))
            .await
            .context("resuming the session")?;
        ensure!(c.session_id() == session.id());
        let (data, stat) = c.get_data("/resumed/eph").await?;
        ensure!(data == b"kept" && stat.ephemeral_owner == session.id().0);
        c.set_data("/resumed", b"after", None).await?;
        // Closing it now removes the ephemeral everywhere.
        drop(c);
        let other = client_of(&ens, new_leader).await?;
        eventually(BACKGROUND, "the ephemeral goes after the close", || async {
            other.sync("/resumed").await?;
            Ok(other.check_stat("/resumed/eph").await?.is_none())
        })
        .await?;
        Ok(())
    })
    .await;
    r.map_err(|e| e.context(ens.logs()))
}

// -- the leader killed under a write load ------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_under_a_write_load_loses_no_acknowledged_write() -> Result<()> {
    let (mut ens, old_leader) = Ensemble::start_three()?;
    let r = bounded(async {
        let setup = client_of(&ens, old_leader).await?;
        setup.create("/load", b"", &persistent()).await?;
        drop(setup);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for w in 0..3 {
            let c = client(&ens.connect_string_all(), Duration::from_secs(8)).await?;
            tasks.push(tokio::spawn(writer(c, "/load", w, stop_rx.clone(), None)));
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let killed_at = Instant::now();
        ens.kill9(old_leader)?;
        let new_leader = ens.wait_for_leader(BACKGROUND)?;
        ensure!(new_leader != old_leader);
        let elected_after = killed_at.elapsed();
        // Let the writers go on for a while under the new leader.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let _ = stop_tx.send(true);
        let mut acked = Vec::new();
        let mut failed = 0;
        for t in tasks {
            let log = t.await??;
            failed += log.failed;
            acked.extend(log.acked);
        }
        let before = acked.iter().filter(|(_, _, _, at)| *at < killed_at).count();
        // The first write sent after the kill that was acknowledged, and when.
        let first_after = acked
            .iter()
            .filter(|(_, _, sent, _)| *sent >= killed_at)
            .map(|(_, _, _, at)| at.duration_since(killed_at))
            .min();
        eprintln!(
            "leader {old_leader} killed: node {new_leader} leads after {elected_after:?}; \
             first write sent after the kill acknowledged {first_after:?} after it; \
             acknowledged {before} before and {} after the kill, {failed} failed or \
             unanswered",
            acked.len() - before
        );
        ensure!(before > 0, "no write acknowledged before the kill");
        ensure!(
            first_after.is_some(),
            "no write acknowledged after the kill"
        );
        // The old leader comes back as a follower; every acknowledged write is on every
        // node, with its value.
        ens.restart(old_leader)?;
        ens.wait_following(old_leader, BACKGROUND)?;
        // Whatever the old leader had logged but not committed is gone from it: the three
        // trees are the same.
        converged(&ens, "/load", "after the old leader came back").await?;
        for id in ens.ids() {
            let c = client_of(&ens, id).await?;
            let tree = subtree(&c, "/load").await?;
            for (path, value, _, _) in &acked {
                match tree.get(path) {
                    Some(v) if v == value => {}
                    Some(v) => bail!("{path} on node {id} holds {v:?}"),
                    None => bail!("acknowledged {path} is missing on node {id}"),
                }
            }
        }
        Ok(())
    })
    .await;
    r.map_err(|e| e.context(ens.logs()))
}

// -- a node that was down catches up -----------------------------------------------------

/// Waits until every node reports the same zxid, then checks that every node holds the
/// same subtree under `root`; returns that zxid.
async fn converged(ens: &Ensemble, root: &str, what: &str) -> Result<i64> {
    let ids = ens.ids();
    let mut zxids = Vec::new();
    eventually(BACKGROUND, &format!("{what}: equal zxids"), || {
        zxids = ids
            .iter()
            .map(|id| ens.srvr(*id).map(|s| s.zxid))
            .collect::<Result<Vec<_>>>()
            .unwrap_or_default();
        let same = zxids.len() == ids.len() && zxids.windows(2).all(|w| w[0] == w[1]);
        async move { Ok(same) }
    })
    .await
    .with_context(|| format!("zxids {zxids:x?}"))?;
    let mut trees = Vec::new();
    for id in &ids {
        let c = client_of(ens, *id).await?;
        trees.push((*id, subtree(&c, root).await?));
    }
    for (id, t) in &trees[1..] {
        if *t != trees[0].1 {
            let a: BTreeSet<_> = trees[0].1.iter().collect();
            let b: BTreeSet<_> = t.iter().collect();
            let only_a: Vec<_> = a.difference(&b).take(5).collect();
            let only_b: Vec<_> = b.difference(&a).take(5).collect();
            bail!(
                "{what}: node {id}'s {root} differs from node {}'s: only there {only_a:?}, \
                 only here {only_b:?}",
                trees[0].0
            );
        }
    }
    // The srvr zxids do not move: nothing else writes (the reads above made sessions,
    // which are txns too, so look again).
    let after: Vec<i64> = ids
        .iter()
        .map(|id| ens.srvr(*id).map(|s| s.zxid))
        .collect::<Result<_>>()?;
    ensure!(after.iter().all(|z| *z >= zxids[0]));
    Ok(zxids[0])
}

/// `count` writes under `/catchup`, pipelined through `c`: creates, updates of the
/// nodes made, and deletes of every third.
async fn write_batch(c: &zk::Client, tag: &str, count: usize) -> Result<()> {
    let paths: Vec<String> = (0..count)
        .map(|i| format!("/catchup/{tag}-{i:05}"))
        .collect();
    let options = persistent();
    let pending: Vec<_> = paths
        .iter()
        .map(|p| c.create(p, tag.as_bytes(), &options))
        .collect();
    for r in futures::future::join_all(pending).await {
        r?;
    }
    let mut updates = Vec::new();
    for i in (0..count).step_by(2) {
        let path = format!("/catchup/{tag}-{i:05}");
        let value = format!("{tag} updated {i}").into_bytes();
        updates.push(async move { c.set_data(&path, &value, None).await });
    }
    for r in futures::future::join_all(updates).await {
        r?;
    }
    let mut deletes = Vec::new();
    for i in (0..count).step_by(3) {
        let path = format!("/catchup/{tag}-{i:05}");
        deletes.push(async move { c.delete(&path, None).await });
    }
    for r in futures::future::join_all(deletes).await {
        r?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_node_catches_up_after_a_restart() -> Result<()> {
    let (mut ens, leader) = Ensemble::start_three()?;
    let (f1, f2) = followers(&ens, leader);
    let r = bounded(async {
        let c = client(&ens.connect_string(&[leader, f2]), Duration::from_secs(8)).await?;
        c.create("/catchup", b"", &persistent()).await?;
        write_batch(&c, "base", 20).await?;
        // A follower killed, a few writes, back: it gets what it missed.
        ens.kill9(f1)?;
        write_batch(&c, "few", 30).await?;
        ens.restart(f1)?;
        ens.wait_following(f1, BACKGROUND)?;
        converged(&ens, "/catchup", "after a few writes").await?;
        // Stopped cleanly, many more writes than the leader keeps in memory, back.
        ens.stop(f1, Duration::from_secs(10))?;
        write_batch(&c, "many", 400).await?;
        ens.restart(f1)?;
        ens.wait_following(f1, BACKGROUND)?;
        converged(&ens, "/catchup", "after many writes").await?;
        drop(c);
        // The leader killed, writes under the new one, the old leader back as a follower.
        ens.kill9(leader)?;
        let new_leader = ens.wait_for_leader(BACKGROUND)?;
        let c = client_of(&ens, new_leader).await?;
        write_batch(&c, "newepoch", 30).await?;
        ens.restart(leader)?;
        ens.wait_following(leader, BACKGROUND)?;
        converged(&ens, "/catchup", "after a leader change").await?;
        Ok(())
    })
    .await;
    r.map_err(|e| e.context(ens.logs()))
}

/// `autopurge.snapRetainCount` in ensemble mode: after each snapshot the Zab driver drops
/// the log records the oldest retained snapshot covers, on every node; a follower that
/// was down while the leader's log moved past it comes back by SNAP with the same tree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_txn_log_is_purged_after_snapshots_and_a_node_behind_it_catches_up() -> Result<()> {
    let mut ens = Ensemble::start_configured(3, 0, "snapCount=40\nautopurge.snapRetainCount=3\n")?;
    let r = bounded(async {
        let leader = ens.wait_for_leader(BACKGROUND)?;
        let (f1, f2) = followers(&ens, leader);
        let c = client(&ens.connect_string(&[leader, f2]), Duration::from_secs(8)).await?;
        c.create("/catchup", b"", &persistent()).await?;
        // About 370 txns: several snapshots (every 21 to 40 txns) on every node.
        write_batch(&c, "a", 200).await?;
        converged(&ens, "/catchup", "after the first writes").await?;
        let purged = "log purged up to a snapshot";
        eventually(BACKGROUND, "every node purged its log", || {
            let ok = ens
                .ids()
                .iter()
                .all(|&id| ens.log_of_start(id, 1).contains(purged));
            async move { Ok(ok) }
        })
        .await?;
        // A follower stopped; the leader's log moves far past it and is purged meanwhile.
        ens.stop(f1, Duration::from_secs(10))?;
        write_batch(&c, "b", 300).await?;
        ens.restart(f1)?;
        ens.wait_following(f1, BACKGROUND)?;
        converged(&ens, "/catchup", "after the follower came back").await?;
        let log = ens.log_of_start(f1, 2);
        let synced = log
            .lines()
            .find(|l| l.contains("synchronised by the leader"))
            .context("the restarted follower did not log how it was synchronised")?;
        ensure!(synced.contains("SNAP"), "expected a SNAP: {synced}");
        Ok(())
    })
    .await;
    r.map_err(|e| e.context(ens.logs()))
}

// -- watches across servers --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_set_on_a_follower_fire_for_writes_through_other_servers() -> Result<()> {
    let (ens, leader) = Ensemble::start_three()?;
    let (f1, f2) = followers(&ens, leader);
    let r = bounded(async {
        let watcher = client_of(&ens, f1).await?;
        let via_follower = client_of(&ens, f2).await?;
        let via_leader = client_of(&ens, leader).await?;
        via_leader.create("/w", b"", &persistent()).await?;
        via_leader.create("/w/data", b"0", &persistent()).await?;
        watcher.sync("/w").await?;
        let (_, _, data_w) = watcher.get_and_watch_data("/w/data").await?;
        let (_, child_w) = watcher.list_and_watch_children("/w").await?;
        let (none, exists_w) = watcher.check_and_watch_stat("/w/new").await?;
        ensure!(none.is_none());
        // From another session: in ZooKeeper 3.8 a session's recursive watch on /w would
        // replace its getChildren watch there (one watch mode per session and path).
        let recursive_watcher = client_of(&ens, f1).await?;
        let mut recursive = recursive_watcher
            .watch("/w", zk::AddWatchMode::PersistentRecursive)
            .await?;
        // Writes through the other follower and through the leader.
        via_follower.set_data("/w/data", b"1", None).await?;
        via_leader.create("/w/new", b"", &persistent()).await?;
        let ev = event(data_w).await?;
        ensure!(
            ev.event_type == zk::EventType::NodeDataChanged && ev.path == "/w/data",
            "{ev:?}"
        );
        let ev = event(child_w).await?;
        ensure!(
            ev.event_type == zk::EventType::NodeChildrenChanged && ev.path == "/w",
            "{ev:?}"
        );
        let ev = event(exists_w).await?;
        ensure!(
            ev.event_type == zk::EventType::NodeCreated && ev.path == "/w/new",
            "{ev:?}"
        );
        let mut seen = Vec::new();
        for _ in 0..2 {
            let ev = tokio::time::timeout(BACKGROUND, recursive.changed())
                .await
                .context("no recursive watch event")?;
            seen.push((ev.event_type, ev.path));
        }
        ensure!(
            seen == [
                (zk::EventType::NodeDataChanged, "/w/data".to_owned()),
                (zk::EventType::NodeCreated, "/w/new".to_owned()),
            ],
            "recursive watch events {seen:?}"
        );
        // The data the event announced is there when the watcher reads it.
        let (data, _) = watcher.get_data("/w/data").await?;
        ensure!(data == b"1");
        Ok(())
    })
    .await;
    r.map_err(|e| e.context(ens.logs()))
}

// -- a client ahead of its server ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_behind_what_the_client_has_seen_refuses_the_connection() -> Result<()> {
    let (ens, leader) = Ensemble::start_three()?;
    let (f1, _) = followers(&ens, leader);
    let r = bounded(async {
        // A session on the leader that has seen the zxid of its own write.
        let mut c = Raw::connect(ens.client_addr(leader), 4000).await?;
        let stat = c
            .call(Request::SetData(SetDataRequest {
                path: "/".into(),
                data: Some(Bytes::from_static(b"seen")),
                version: -1,
            }))
            .await?;
        ensure!(stat.header.err == 0, "{:?}", stat.header);
        let seen = c.last_zxid;
        ensure!(seen > 0);
        let follower_zxid = ens.srvr(f1)?.zxid;
        // A follower that is behind that zxid refuses the session: it closes the
        // connection without an answer, and the client must try another server. A
        // serving follower is behind only for the moment a commit takes to reach it, so
        // the client here claims a zxid past everything the ensemble has written.
        let ahead = seen.max(follower_zxid) + 1000;
        let req = raw::connect_request(4000, c.session_id, c.passwd.clone(), ahead);
        let (mut stream, resp) = raw::handshake(ens.client_addr(f1), &req).await?;
        ensure!(
            resp.is_none(),
            "a server behind the client answered {resp:?}"
        );
        ensure!(raw::closed_by_server(&mut stream).await?);
        // A new session that claims to have seen the future is refused the same way.
        let req = raw::connect_request(4000, 0, Bytes::from_static(&[0; 16]), ahead);
        let (_, resp) = raw::handshake(ens.client_addr(f1), &req).await?;
        ensure!(resp.is_none(), "answered {resp:?}");
        // The session is intact: with the zxid it really saw it moves to the follower,
        // whose tree has that zxid once it answers.
        // (The follower may not have applied that zxid yet when the first try arrives:
        // then it refuses, and the client tries again.)
        let deadline = Instant::now() + BACKGROUND;
        let mut moved = loop {
            let addr = ens.client_addr(f1);
            match Raw::resume(addr, 4000, c.session_id, c.passwd.clone(), seen).await {
                Ok(m) => break m,
                Err(e) if Instant::now() > deadline => return Err(e.context("resuming")),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        ensure!(moved.session_id == c.session_id);
        let got = moved.get_data("/", false).await?;
        let (data, _) = got.map_err(|e| anyhow::anyhow!("getData failed: {e}"))?;
        ensure!(data.as_deref() == Some(&b"seen"[..]), "{data:?}");
        Ok(())
    })
    .await;
    r.map_err(|e| e.context(ens.logs()))
}

// -- order of a session's requests through a follower -----------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_through_a_follower_are_answered_in_order() -> Result<()> {
    let (ens, leader) = Ensemble::start_three()?;
    let (f1, _) = followers(&ens, leader);
    let r = bounded(async {
        let c = client_of(&ens, f1).await?;
        c.create("/fifo", b"", &persistent()).await?;
        // Writes and reads of one session sent back to back, without waiting: the writes
        // get increasing zxids in the order they were sent, and each read sees the write
        // sent just before it (a client reads its own writes on a follower too).
        let paths: Vec<String> = (0..200).map(|i| format!("/fifo/n{i:04}")).collect();
        let options = persistent();
        let mut creates = Vec::new();
        let mut reads = Vec::new();
        for (i, p) in paths.iter().enumerate() {
            creates.push(c.create(p, format!("{i}").as_bytes(), &options));
            reads.push(c.get_data(p));
        }
        let (created, read) = futures::future::join(
            futures::future::join_all(creates),
            futures::future::join_all(reads),
        )
        .await;
        let mut last = 0;
        for (i, (made, got)) in created.into_iter().zip(read).enumerate() {
            let (stat, _) = made.with_context(|| format!("create {i}"))?;
            ensure!(
                stat.czxid > last,
                "create {i} got zxid {:#x} after {last:#x}",
                stat.czxid
            );
            last = stat.czxid;
            let (data, read_stat) = got.with_context(|| format!("read {i}"))?;
            ensure!(data == format!("{i}").as_bytes() && read_stat.czxid == stat.czxid);
        }
        Ok(())
    })
    .await;
    r.map_err(|e| e.context(ens.logs()))
}

// -- quorum loss and whole-ensemble restarts ---------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_node_stops_serving_and_serves_again_with_a_quorum() -> Result<()> {
    let (mut ens, leader) = Ensemble::start_three()?;
    let (f1, f2) = followers(&ens, leader);
    let r = bounded(async {
        let c = client_of(&ens, f1).await?;
        c.create("/alone", b"before", &persistent()).await?;
        drop(c);
        // Two of three gone: the survivor must not serve (not even reads).
        ens.kill9(leader)?;
        ens.kill9(f2)?;
        eventually(BACKGROUND, "the lone node stops serving", || {
            let mode = ens.mode(f1);
            async move { Ok(!matches!(mode.as_deref(), Some("leader" | "follower"))) }
        })
        .await?;
        let refused = zk::Client::connector()
            .with_connection_timeout(Duration::from_millis(500))
            .with_session_timeout(Duration::from_secs(4))
            .with_fail_eagerly()
            .connect(&ens.connect_string(&[f1]))
            .await;
        ensure!(
            refused.is_err(),
            "a node without a quorum accepted a session"
        );
        // One comes back: a quorum again, with everything written before.
        ens.restart(f2)?;
        let new_leader = ens.wait_for_leader(BACKGROUND)?;
        ensure!(new_leader == f1 || new_leader == f2);
        for id in [f1, f2] {
            let c = client_of(&ens, id).await?;
            c.sync("/alone").await?;
            let (data, _) = c.get_data("/alone").await?;
            ensure!(data == b"before", "node {id}: {data:?}");
        }
        let c = client_of(&ens, f2).await?;
        c.set_data("/alone", b"after", None).await?;
        ens.restart(leader)?;
        ens.wait_following(leader, BACKGROUND)?;
        converged(&ens, "/alone", "after the third node came back").await?;
        Ok(())
    })
    .await;
    r.map_err(|e| e.context(ens.logs()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_ensemble_restarted_keeps_every_write_and_session() -> Result<()> {
    let (mut ens, leader) = Ensemble::start_three()?;
    let r = bounded(async {
        // Detached: dropping it leaves the session open.
        let c = zk::Client::connector()
            .with_detached()
            .with_connection_timeout(Duration::from_secs(3))
            .with_session_timeout(Duration::from_secs(10))
            .connect(&ens.connect_string_all())
            .await?;
        c.create("/restart", b"", &persistent()).await?;
        for i in 0..50 {
            c.create(&format!("/restart/n{i:03}"), b"v", &persistent())
                .await?;
        }
        c.create("/restart/eph", b"", &ephemeral()).await?;
        let session = c.session().clone();
        let before = converged(&ens, "/restart", "before the restart").await?;
        drop(c);
        // Everyone stopped: once cleanly, once with kill -9.
        for (round, clean) in [(1, true), (2, false)] {
            for id in ens.ids() {
                if clean {
                    ens.stop(id, Duration::from_secs(10))?;
                } else {
                    ens.kill9(id)?;
                }
            }
            for id in ens.ids() {
                ens.restart(id)?;
            }
            ens.wait_for_leader(BACKGROUND)?;
            let after = converged(&ens, "/restart", &format!("restart {round}")).await?;
            ensure!(
                after >= before,
                "zxid {after:#x} after the restart, {before:#x} before"
            );
            let c = client_of(&ens, ens.ids()[round]).await?;
            c.sync("/restart").await?;
            let children = c.list_children("/restart").await?;
            ensure!(children.len() == 51, "{} children", children.len());
        }
        // The session (10 s) survived both restarts: it resumes, its ephemeral is there.
        let c = zk::Client::connector()
            .with_session(session.clone())
            .with_connection_timeout(Duration::from_secs(3))
            .with_session_timeout(Duration::from_secs(10))
            .connect(&ens.connect_string_all())
            .await
            .context("resuming the session after the restarts")?;
        let stat = c.check_stat("/restart/eph").await?;
        ensure!(stat.is_some_and(|s| s.ephemeral_owner == session.id().0));
        let _ = leader;
        Ok(())
    })
    .await;
    r.map_err(|e| e.context(ens.logs()))
}

// -- paused nodes and missed events -------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_fires_for_a_change_made_while_its_client_was_moving() -> Result<()> {
    let (mut ens, leader) = Ensemble::start_three()?;
    let (f1, f2) = followers(&ens, leader);
    let r = bounded(async {
        let c = client(&ens.connect_string(&[f1, f2]), Duration::from_secs(8)).await?;
        c.create("/missed", b"0", &persistent()).await?;
        let (_, _, watcher) = c.get_and_watch_data("/missed").await?;
        let first = ens
            .server_of(c.session_id().0)
            .context("no server lists the session")?;
        // Its server freezes (the client does not notice yet), the node changes through
        // the leader, then the frozen server dies: the client moves to the other follower
        // with the zxid it last saw, and the change it missed fires its watch there.
        ens.pause(first)?;
        let other = client_of(&ens, leader).await?;
        other.set_data("/missed", b"1", None).await?;
        ens.kill9(first)?;
        let ev = event(watcher).await?;
        ensure!(
            ev.event_type == zk::EventType::NodeDataChanged && ev.path == "/missed",
            "{ev:?}"
        );
        let (data, _) = c.get_data("/missed").await?;
        ensure!(data == b"1", "{data:?}");
        Ok(())
    })
    .await;
    r.map_err(|e| e.context(ens.logs()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_leader_is_replaced_and_rejoins_as_a_follower() -> Result<()> {
    let (mut ens, old_leader) = Ensemble::start_three()?;
    let (f1, f2) = followers(&ens, old_leader);
    let r = bounded(async {
        let on_old = client(&ens.connect_string(&[old_leader]), Duration::from_secs(10)).await?;
        on_old.create("/paused", b"", &persistent()).await?;
        ens.pause(old_leader)?;
        // The others stop hearing from it and elect one of themselves.
        let new_leader = {
            let deadline = Instant::now() + BACKGROUND;
            loop {
                let modes: Vec<_> = [f1, f2].iter().map(|id| ens.mode(*id)).collect();
                if let Some(i) = modes.iter().position(|m| m.as_deref() == Some("leader"))
                    && modes.iter().all(|m| m.is_some())
                {
                    break [f1, f2][i];
                }
                ensure!(Instant::now() < deadline, "no new leader: {modes:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        ens.wait_following(if new_leader == f1 { f2 } else { f1 }, BACKGROUND)?;
        // A write sent to the frozen old leader, and writes under the new one.
        let stale = on_old.create("/paused/via-old", b"old", &persistent());
        let fresh = client_of(&ens, new_leader).await?;
        for i in 0..20 {
            fresh
                .create(&format!("/paused/new{i:02}"), b"new", &persistent())
                .await?;
        }
        // The old leader wakes up: it steps down and follows the new one.
        ens.resume(old_leader)?;
        ens.wait_following(old_leader, BACKGROUND)?;
        ensure!(ens.wait_for_leader(BACKGROUND)? == new_leader);
        // The write it had taken either failed or is in every tree, like every other.
        let stale = tokio::time::timeout(BACKGROUND, stale).await;
        converged(&ens, "/paused", "after the old leader woke up").await?;
        let check = client_of(&ens, new_leader).await?;
        let tree = subtree(&check, "/paused").await?;
        if let Ok(Ok(_)) = stale {
            ensure!(
                tree.get("/paused/via-old").is_some_and(|v| v == b"old"),
                "a write acknowledged by the old leader is missing"
            );
        }
        ensure!(tree.keys().filter(|k| k.contains("/new")).count() == 20);
        Ok(())
    })
    .await;
    r.map_err(|e| e.context(ens.logs()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_leader_expires_the_sessions_of_clients_that_left() -> Result<()> {
    let (mut ens, leader) = Ensemble::start_three()?;
    let (f1, f2) = followers(&ens, leader);
    let r = bounded(async {
        // A client with a 1 s session and an ephemeral vanishes without closing.
        let mut gone = Raw::connect(ens.client_addr(f1), 1000).await?;
        let created = gone.create("/left", Some(b"x"), 1).await?;
        created.map_err(|e| anyhow::anyhow!("create failed: {e}"))?;
        drop(gone);
        // Its leader dies at once; the new leader inherits the session and expires it.
        ens.kill9(leader)?;
        let new_leader = ens.wait_for_leader(BACKGROUND)?;
        let watcher_node = if new_leader == f1 { f2 } else { f1 };
        let c = client_of(&ens, watcher_node).await?;
        eventually(
            BACKGROUND,
            "the ephemeral of the vanished client goes",
            || async {
                c.sync("/left").await?;
                Ok(c.check_stat("/left").await?.is_none())
            },
        )
        .await?;
        Ok(())
    })
    .await;
    r.map_err(|e| e.context(ens.logs()))
}

// -- large values ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_values_replicate_and_reach_a_node_that_was_down() -> Result<()> {
    let (mut ens, leader) = Ensemble::start_three()?;
    let (f1, f2) = followers(&ens, leader);
    let r = bounded(async {
        // Values close to jute.maxbuffer (1 MiB), written through a follower.
        let value = |i: u8| -> Vec<u8> { (0..900_000u32).map(|j| (j as u8) ^ i).collect() };
        let c = client_of(&ens, f2).await?;
        c.create("/big", b"", &persistent()).await?;
        c.create("/big/a", &value(1), &persistent()).await?;
        let other = client_of(&ens, f1).await?;
        other.sync("/big/a").await?;
        let (got, _) = other.get_data("/big/a").await?;
        ensure!(
            got == value(1),
            "the other follower read {} bytes",
            got.len()
        );
        drop(other);
        // Null data (a -1 length on the wire), from a create and, while a follower is
        // down, from a setData: replicated as null, not as empty.
        let mut raw_c = Raw::connect(ens.client_addr(f2), 8000).await?;
        for path in ["/big/null", "/big/to-null"] {
            let data = (path == "/big/to-null").then_some(&b"x"[..]);
            raw_c
                .create(path, data, 0)
                .await?
                .map_err(anyhow::Error::msg)?;
        }
        // A follower down while several megabytes are written, then back.
        ens.kill9(f1)?;
        raw_c
            .set_data("/big/to-null", None, -1)
            .await?
            .map_err(anyhow::Error::msg)?;
        drop(raw_c);
        for i in 2..10u8 {
            c.create(&format!("/big/n{i}"), &value(i), &persistent())
                .await?;
        }
        c.set_data("/big/a", &value(42), None).await?;
        ens.restart(f1)?;
        ens.wait_following(f1, BACKGROUND)?;
        converged(&ens, "/big", "after a restart behind large writes").await?;
        // And once more after the leader restarts (it reloads the big values from disk).
        ens.kill9(leader)?;
        let new_leader = ens.wait_for_leader(BACKGROUND)?;
        let c = client_of(&ens, new_leader).await?;
        c.set_data("/big/n2", &value(7), None).await?;
        ens.restart(leader)?;
        ens.wait_following(leader, BACKGROUND)?;
        converged(&ens, "/big", "after the old leader came back").await?;
        for id in ens.ids() {
            let mut raw_c = Raw::connect(ens.client_addr(id), 8000).await?;
            let synced = raw_c
                .call(Request::Sync(SyncRequest {
                    path: "/big".into(),
                }))
                .await?;
            ensure!(
                synced.header.err == 0,
                "sync on node {id}: {:?}",
                synced.header
            );
            for path in ["/big/null", "/big/to-null"] {
                let (d, st) = raw_c
                    .get_data(path, false)
                    .await?
                    .map_err(anyhow::Error::msg)?;
                ensure!(
                    d.is_none() && st.data_length == 0,
                    "node {id} reads {path} as {d:?}"
                );
            }
        }
        Ok(())
    })
    .await;
    r.map_err(|e| e.context(ens.logs()))
}

// -- a leader's uncommitted proposals ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_a_killed_leader_could_not_commit_end_the_same_on_every_node() -> Result<()> {
    let (mut ens, old_leader) = Ensemble::start_three()?;
    let (f1, f2) = followers(&ens, old_leader);
    let r = bounded(async {
        let c = client(&ens.connect_string(&[old_leader]), Duration::from_secs(10)).await?;
        c.create("/uncommitted", b"", &persistent()).await?;
        for i in 0..5 {
            c.create(&format!("/uncommitted/ok{i}"), b"ok", &persistent())
                .await?;
        }
        // Both followers frozen: the leader logs what it is sent but cannot commit it.
        ens.pause(f1)?;
        ens.pause(f2)?;
        let pending: Vec<_> = (0..5)
            .map(|i| {
                let c = c.clone();
                tokio::spawn(async move {
                    let path = format!("/uncommitted/late{i}");
                    c.create(&path, b"late", &persistent()).await
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        ens.kill9(old_leader)?;
        for p in pending {
            let r = tokio::time::timeout(BACKGROUND, p).await??;
            ensure!(
                r.is_err(),
                "a write was acknowledged without a quorum: {r:?}"
            );
        }
        drop(c);
        ens.resume(f1)?;
        ens.resume(f2)?;
        let new_leader = ens.wait_for_leader(BACKGROUND)?;
        ensure!(new_leader != old_leader);
        // The old leader comes back with those proposals in its log: it must end with
        // exactly what the others have (dropped, or committed by the new leader for all).
        ens.restart(old_leader)?;
        ens.wait_following(old_leader, BACKGROUND)?;
        converged(&ens, "/uncommitted", "after the old leader came back").await?;
        let c = client_of(&ens, old_leader).await?;
        c.create("/uncommitted/after", b"", &persistent()).await?;
        converged(&ens, "/uncommitted", "after a write on the rejoined node").await?;
        // Restarted once more it loads the log it was made to agree with.
        drop(c);
        ens.kill9(old_leader)?;
        ens.restart(old_leader)?;
        ens.wait_following(old_leader, BACKGROUND)?;
        converged(&ens, "/uncommitted", "after another restart").await?;
        let c = client_of(&ens, old_leader).await?;
        let tree = subtree(&c, "/uncommitted").await?;
        for i in 0..5 {
            ensure!(tree.contains_key(&format!("/uncommitted/ok{i}")));
        }
        Ok(())
    })
    .await;
    r.map_err(|e| e.context(ens.logs()))
}

// -- an observer ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observer_serves_reads_writes_and_watches_but_does_not_vote() -> Result<()> {
    let mut ens = Ensemble::start_with_observers(4, 1)?;
    let observer = 4;
    let leader = ens.wait_for_leader(ensemble_support::ELECTION_TIMEOUT)?;
    ensure!(leader != observer);
    let r = bounded(async {
        let voters: Vec<u32> = [1, 2, 3].into_iter().filter(|v| *v != leader).collect();
        let on_obs = client_of(&ens, observer).await?;
        let on_f = client_of(&ens, voters[0]).await?;
        // A write through the observer is read on a follower after sync, and the reverse.
        on_obs
            .create("/obs", b"from observer", &persistent())
            .await?;
        on_f.sync("/obs").await?;
        ensure!(on_f.get_data("/obs").await?.0 == b"from observer");
        let (_, _, watcher) = on_obs.get_and_watch_data("/obs").await?;
        on_f.set_data("/obs", b"from follower", None).await?;
        let ev = event(watcher).await?;
        ensure!(ev.event_type == zk::EventType::NodeDataChanged, "{ev:?}");
        on_obs.sync("/obs").await?;
        ensure!(on_obs.get_data("/obs").await?.0 == b"from follower");
        // An ephemeral of an observer's session expires when it goes silent.
        let mut silent = Raw::connect(ens.client_addr(observer), 1000).await?;
        let created = silent.create("/obs/eph", Some(b"x"), 1).await?;
        created.map_err(|e| anyhow::anyhow!("create failed: {e}"))?;
        drop(silent);
        eventually(
            BACKGROUND,
            "the observer's silent session expires",
            || async {
                on_f.sync("/obs").await?;
                Ok(on_f.check_stat("/obs/eph").await?.is_none())
            },
        )
        .await?;
        drop(on_obs);
        drop(on_f);
        // Two of three voters gone: the observer and the last voter are two processes
        // but no quorum, so neither serves.
        ens.kill9(leader)?;
        ens.kill9(voters[1])?;
        eventually(BACKGROUND, "the observer stops serving", || {
            let mode = ens.mode(observer);
            async move { Ok(mode.as_deref() != Some("observer")) }
        })
        .await?;
        tokio::time::sleep(Duration::from_millis(2000)).await;
        for id in [observer, voters[0]] {
            let mode = ens.mode(id);
            ensure!(
                !matches!(mode.as_deref(), Some("leader" | "follower" | "observer")),
                "node {id} serves as {mode:?} without a quorum of voters"
            );
        }
        // A voter back: service again, the observer too.
        ens.restart(voters[1])?;
        ens.wait_for_leader(BACKGROUND)?;
        let c = client_of(&ens, observer).await?;
        c.sync("/obs").await?;
        ensure!(c.get_data("/obs").await?.0 == b"from follower");
        Ok(())
    })
    .await;
    r.map_err(|e| e.context(ens.logs()))
}

// -- a session resumed on a follower that is losing its leader ----------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_resumed_on_a_follower_losing_its_leader_is_not_declared_expired() -> Result<()> {
    let (ens, leader) = Ensemble::start_three()?;
    let (f1, f2) = followers(&ens, leader);
    let r = bounded(async {
        let mut owner = Raw::connect(ens.client_addr(f2), 8000).await?;
        let created = owner.create("/alive", Some(b"x"), 1).await?;
        created.map_err(|e| anyhow::anyhow!("create failed: {e}"))?;
        let (session, passwd, seen) = (owner.session_id, owner.passwd.clone(), owner.last_zxid);
        // The leader freezes. The session moves to the other follower, which asks the
        // frozen leader whether the session lives and gets no answer before it gives up
        // on that leader: it must close the connection (try elsewhere), not call the
        // session expired.
        ens.pause(leader)?;
        let req = raw::connect_request(8000, session, passwd.clone(), seen);
        let (_, resp) = raw::handshake(ens.client_addr(f1), &req).await?;
        if let Some(resp) = &resp {
            // Only a leader elected meanwhile (the test stalled for syncLimit ticks) can
            // have answered, and then the session lives.
            let new_leader = [f1, f2]
                .into_iter()
                .any(|id| ens.mode(id).as_deref() == Some("leader"));
            ensure!(
                new_leader && resp.session_id == session && resp.timeout_ms > 0,
                "a follower without an answer from its leader answered {resp:?}"
            );
        }
        // The two followers elect a leader; the session is alive there, ephemeral and all.
        let deadline = Instant::now() + BACKGROUND;
        let mut moved = loop {
            match Raw::resume(ens.client_addr(f1), 8000, session, passwd.clone(), seen).await {
                Ok(m) => break m,
                Err(e) if Instant::now() > deadline => return Err(e.context("resuming")),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        ensure!(moved.session_id == session);
        let stat = moved.exists("/alive", false).await?;
        let stat = stat.map_err(|e| anyhow::anyhow!("exists failed: {e}"))?;
        ensure!(stat.ephemeral_owner == session);
        ens.resume(leader)?;
        Ok(())
    })
    .await;
    r.map_err(|e| e.context(ens.logs()))
}

// -- many sessions through a leader change ----------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_session_survives_a_leader_kill() -> Result<()> {
    let (mut ens, leader) = Ensemble::start_three()?;
    let r = bounded(async {
        let setup = client_of(&ens, leader).await?;
        setup.create("/many", b"", &persistent()).await?;
        drop(setup);
        // 30 sessions of 4 s made on the three servers in turn, one ephemeral each (by
        // detached clients, so that dropping them leaves the sessions open), then each
        // taken over by a client that knows every server.
        let mut movers = Vec::new();
        for i in 0..30u32 {
            let id = ens.ids()[(i % 3) as usize];
            let first = zk::Client::connector()
                .with_detached()
                .with_connection_timeout(Duration::from_secs(2))
                .with_session_timeout(Duration::from_secs(4))
                .connect(&ens.connect_string(&[id]))
                .await?;
            first
                .create(&format!("/many/e{i:02}"), b"", &ephemeral())
                .await?;
            let session = first.session().clone();
            drop(first);
            let moved = zk::Client::connector()
                .with_session(session)
                .with_connection_timeout(Duration::from_secs(2))
                .with_session_timeout(Duration::from_secs(4))
                .connect(&ens.connect_string_all())
                .await
                .with_context(|| format!("taking over session {i}"))?;
            movers.push((i, moved));
        }
        ens.kill9(leader)?;
        ens.wait_for_leader(BACKGROUND)?;
        // Longer than a session timeout after the failover: every session lives and
        // every ephemeral is on both live nodes.
        tokio::time::sleep(Duration::from_secs(5)).await;
        for (i, c) in &movers {
            let stat = c
                .check_stat(&format!("/many/e{i:02}"))
                .await
                .with_context(|| format!("session {i}"))?;
            ensure!(stat.is_some_and(|s| s.ephemeral_owner == c.session_id().0));
        }
        for id in ens.others(leader) {
            let c = client_of(&ens, id).await?;
            c.sync("/many").await?;
            let n = c.list_children("/many").await?.len();
            ensure!(n == 30, "node {id} lists {n} ephemerals");
        }
        Ok(())
    })
    .await;
    r.map_err(|e| e.context(ens.logs()))
}
