//! Helpers for tests that run election nodes over real gRPC on 127.0.0.x.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use zk_election::{
    Decision, ElectionHandle, ElectionInputs, ElectionNode, Member, NodeConfig, Sid,
};

/// Upper bound for any election in these tests (a hang guard, not a timing assertion).
pub const HANG_GUARD: Duration = Duration::from_secs(30);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "zk_election=warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A set of nodes, each on its own loopback address 127.0.0.<sid>, port 0.
pub struct Cluster {
    pub members: BTreeMap<Sid, Member>,
    pub nodes: BTreeMap<Sid, ElectionHandle>,
    pub hello_timeout: Duration,
    listeners: BTreeMap<Sid, tokio::net::TcpListener>,
}

impl Cluster {
    /// Binds a listener for every member (none started yet).
    pub async fn bind(voters: &[Sid], observers: &[Sid]) -> anyhow::Result<Cluster> {
        let mut members = BTreeMap::new();
        let mut listeners = BTreeMap::new();
        for (sid, observer) in voters
            .iter()
            .map(|s| (*s, false))
            .chain(observers.iter().map(|s| (*s, true)))
        {
            let l = tokio::net::TcpListener::bind(format!("127.0.0.{sid}:0")).await?;
            members.insert(
                sid,
                Member {
                    election_addr: l.local_addr()?.to_string(),
                    observer,
                },
            );
            listeners.insert(sid, l);
        }
        Ok(Cluster {
            members,
            nodes: BTreeMap::new(),
            hello_timeout: Duration::from_secs(5),
            listeners,
        })
    }

    pub fn config(&self, sid: Sid) -> NodeConfig {
        let mut c = NodeConfig::new(sid, self.members.clone());
        c.max_notification_interval = Duration::from_secs(2);
        c.reconnect_backoff_max = Duration::from_millis(200);
        c.hello_timeout = self.hello_timeout;
        c
    }

    /// Starts a node (re-binding its address if it ran before).
    pub async fn start(&mut self, sid: Sid) -> anyhow::Result<()> {
        let l = match self.listeners.remove(&sid) {
            Some(l) => l,
            None => {
                // A stopped node's listener closes when its task is cancelled, which
                // happens asynchronously: retry the bind for a while.
                let addr = &self.members.get(&sid).context("unknown sid")?.election_addr;
                let mut attempt = 0;
                loop {
                    match tokio::net::TcpListener::bind(addr).await {
                        Ok(l) => break l,
                        Err(e) if attempt < 100 => {
                            attempt += 1;
                            tracing::debug!(error = %e, "rebind");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        };
        let node = ElectionNode::start_tcp(self.config(sid), l)?;
        self.nodes.insert(sid, node);
        Ok(())
    }

    pub async fn start_all(&mut self) -> anyhow::Result<()> {
        let sids: Vec<Sid> = self.members.keys().copied().collect();
        for sid in sids {
            self.start(sid).await?;
        }
        Ok(())
    }

    /// Takes a member's reserved listener (when the test plays that member itself).
    pub fn take_listener(&mut self, sid: Sid) -> Option<tokio::net::TcpListener> {
        self.listeners.remove(&sid)
    }

    /// Stops a node (drops it: listener, streams and election task end).
    pub fn stop(&mut self, sid: Sid) {
        self.nodes.remove(&sid);
    }

    /// Runs an election on the given nodes concurrently.
    pub async fn elect(
        &self,
        sids: &[Sid],
        inputs: &BTreeMap<Sid, ElectionInputs>,
    ) -> anyhow::Result<BTreeMap<Sid, Decision>> {
        let runs = sids.iter().map(|sid| async move {
            let node = self.nodes.get(sid).context("node not started")?;
            let i = inputs.get(sid).copied().unwrap_or(ElectionInputs {
                last_logged_zxid: 0,
                current_epoch: 0,
            });
            let d = node.run(i).await?;
            anyhow::Ok((*sid, d))
        });
        let all = tokio::time::timeout(HANG_GUARD, futures::future::try_join_all(runs))
            .await
            .context("election did not finish")??;
        Ok(all.into_iter().collect())
    }
}

/// `(zxid counter, epoch)` per sid as election inputs.
pub fn inputs(list: &[(Sid, i64, i64)]) -> BTreeMap<Sid, ElectionInputs> {
    list.iter()
        .map(|(sid, counter, epoch)| {
            (
                *sid,
                ElectionInputs {
                    last_logged_zxid: zk_proto::zxid::make(*epoch, *counter),
                    current_epoch: *epoch,
                },
            )
        })
        .collect()
}

/// All decisions name one leader; returns it.
pub fn one_leader(decisions: &BTreeMap<Sid, Decision>) -> anyhow::Result<Sid> {
    let leaders: std::collections::BTreeSet<Sid> = decisions.values().map(|d| d.leader()).collect();
    anyhow::ensure!(leaders.len() == 1, "decisions disagree: {decisions:?}");
    leaders.into_iter().next().context("no decision")
}
