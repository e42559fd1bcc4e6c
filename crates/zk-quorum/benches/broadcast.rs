//! Broadcast throughput: the cores alone (3 nodes in one loop, no I/O), and the tokio driver
//! over gRPC on 127.0.0.1–3 with in-memory logs.
//!
//! `cargo bench -p zk-quorum --bench broadcast`

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bytes::Bytes;
use divan::Bencher;
use divan::counter::ItemsCount;
use tokio::sync::{oneshot, watch};
use zk_quorum::driver::{
    DriverOptions, LeaderClient, NodeStatus, NodeStorage, run_leader, run_learner,
};
use zk_quorum::transport::{TcpDialer, bind_local};
use zk_quorum::{
    Command, Config, Ensemble, Follower, History, Input, Leader, LeaderStorage, LearnerStorage,
    Packet, StateMachine, Txn, Zxid,
};
use zk_storage::log::{MemEpochStore, MemTxnLog};

fn main() {
    divan::main();
}

/// Three cores wired together in memory: every Send is delivered, every Persist completes at
/// the end of the round in which it was issued (one flush per round, like group commit).
struct Cluster {
    leader: Leader,
    followers: Vec<Follower>,
}

impl Cluster {
    fn new() -> Self {
        let cfg = Config {
            max_outstanding: 100_000,
            ..Config::default()
        };
        let empty = LearnerStorage {
            accepted_epoch: 0,
            current_epoch: 0,
            last_logged_zxid: 0,
            applied_zxid: 0,
        };
        let mut c = Cluster {
            leader: Leader::new(
                1,
                cfg.clone(),
                Ensemble::new([1, 2, 3], []),
                LeaderStorage {
                    accepted_epoch: 0,
                    current_epoch: 0,
                    applied_zxid: 0,
                    history: History::new(0, 500, 1_000_000),
                    snapshot_bytes: 0,
                },
            ),
            followers: vec![
                Follower::new(2, 1, cfg.clone(), empty),
                Follower::new(3, 1, cfg, empty),
            ],
        };
        let mut to_leader = Vec::new();
        for f in c.followers.iter_mut() {
            for cmd in f.start() {
                if let Command::Send { packet, .. } = cmd {
                    to_leader.push((f.id(), packet));
                }
            }
        }
        c.leader.start();
        c.run(Vec::new(), to_leader);
        c
    }

    /// Runs rounds until no packet is in flight.
    fn run(&mut self, mut leader_cmds: Vec<Command>, mut to_leader: Vec<(u64, Packet)>) {
        for _ in 0..100 {
            let mut leader_persist = None;
            for (from, packet) in std::mem::take(&mut to_leader) {
                leader_cmds.extend(self.leader.step(Input::Message { from, packet }));
            }
            let mut to_followers: Vec<Vec<Packet>> = vec![Vec::new(), Vec::new()];
            for cmd in std::mem::take(&mut leader_cmds) {
                match cmd {
                    Command::Send { to, packet } => to_followers[(to - 2) as usize].push(packet),
                    Command::Persist { txns } => leader_persist = txns.last().map(|t| t.zxid),
                    _ => {}
                }
            }
            for (i, f) in self.followers.iter_mut().enumerate() {
                let mut persist: Option<Zxid> = None;
                let mut out = Vec::new();
                for packet in std::mem::take(&mut to_followers[i]) {
                    out.extend(f.step(Input::Message { from: 1, packet }));
                }
                for cmd in &out {
                    if let Command::Persist { txns } = cmd {
                        persist = txns.last().map(|t| t.zxid);
                    }
                }
                if let Some(zxid) = persist {
                    out.extend(f.step(Input::Persisted { zxid }));
                }
                for cmd in out {
                    if let Command::Send { packet, .. } = cmd {
                        to_leader.push((f.id(), packet));
                    }
                }
            }
            if let Some(zxid) = leader_persist {
                leader_cmds.extend(self.leader.step(Input::Persisted { zxid }));
            }
            if to_leader.is_empty() && leader_cmds.is_empty() {
                return;
            }
        }
    }
}

#[divan::bench(args = [1, 100, 1000])]
fn cores_commit(bencher: Bencher, batch: usize) {
    let mut cluster = Cluster::new();
    let data = Bytes::from(vec![7u8; 100]);
    bencher.counter(ItemsCount::new(batch)).bench_local(|| {
        let mut cmds = Vec::new();
        for _ in 0..batch {
            let (_, out) = cluster.leader.propose(data.clone()).expect("established");
            cmds.extend(out);
        }
        cluster.run(cmds, Vec::new());
        assert_eq!(cluster.leader.outstanding(), 0);
    });
}

#[derive(Default)]
struct Count(Zxid);

#[derive(Debug, thiserror::Error)]
#[error("no snapshot")]
struct NoSnapshot;

impl StateMachine for Count {
    type Error = NoSnapshot;
    fn applied_zxid(&self) -> Zxid {
        self.0
    }
    fn apply(&mut self, txn: &Txn) -> Result<(), NoSnapshot> {
        self.0 = txn.zxid;
        Ok(())
    }
    fn snapshot(&self, _: usize) -> Result<Vec<Bytes>, NoSnapshot> {
        Err(NoSnapshot)
    }
    fn restore(&mut self, _: Zxid, _: &[Bytes]) -> Result<(), NoSnapshot> {
        Err(NoSnapshot)
    }
}

#[divan::bench(args = [1, 100])]
fn grpc_commit(bencher: Bencher, concurrent: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let ip = |n: u8| IpAddr::V4(Ipv4Addr::new(127, 0, 0, n));
    let options = DriverOptions {
        tick_time: Duration::from_millis(500),
        ..DriverOptions::default()
    };
    let (client, stops, tasks) = rt.block_on(async {
        let (incoming, addr) = bind_local(ip(1), 0).await.expect("bind");
        let (client, proposals) = LeaderClient::new(4096);
        let (status_tx, mut status) = watch::channel(NodeStatus::default());
        let mut stops = Vec::new();
        let (stop, stopped) = oneshot::channel::<()>();
        stops.push(stop);
        let opts = options.clone();
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(async move {
            let mut st =
                NodeStorage::new(MemTxnLog::new(), MemEpochStore::new(), Count::default(), 0);
            let shutdown = async {
                let _ = stopped.await;
            };
            let ensemble = Ensemble::new([1, 2, 3], []);
            run_leader(
                1,
                Config::default(),
                ensemble,
                opts,
                &mut st,
                incoming,
                proposals,
                status_tx,
                shutdown,
            )
            .await
        }));
        for id in [2u64, 3] {
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            let (opts, addr) = (options.clone(), addr.to_string());
            tasks.push(tokio::spawn(async move {
                let mut st =
                    NodeStorage::new(MemTxnLog::new(), MemEpochStore::new(), Count::default(), 0);
                let (tx, _rx) = watch::channel(NodeStatus::default());
                let shutdown = async {
                    let _ = stopped.await;
                };
                let dialer = TcpDialer {
                    local_ip: Some(ip(id as u8)),
                };
                run_learner(
                    id,
                    1,
                    &addr,
                    false,
                    Config::default(),
                    opts,
                    &mut st,
                    dialer,
                    tx,
                    shutdown,
                )
                .await
            }));
        }
        status.wait_for(|s| s.serving).await.expect("established");
        (client, stops, tasks)
    });
    let data = Bytes::from(vec![7u8; 100]);
    bencher
        .counter(ItemsCount::new(concurrent))
        .bench_local(|| {
            rt.block_on(async {
                let mut pending = Vec::with_capacity(concurrent);
                for _ in 0..concurrent {
                    let c = client.clone();
                    let d = data.clone();
                    pending.push(tokio::spawn(async move { c.propose(d).await }));
                }
                for p in pending {
                    p.await.expect("task").expect("committed");
                }
            })
        });
    for s in stops {
        let _ = s.send(());
    }
    // Let the nodes stop before the runtime goes away.
    rt.block_on(async {
        for t in tasks {
            let _ = t.await;
        }
    });
}
