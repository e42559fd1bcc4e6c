//! The transport over an in-memory network (no sockets): the pluggable listener and
//! dialer, and the rule that only the connection opened by the larger sid survives.

mod common;

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use zk_election::{
    Dialer, ElectionHandle, ElectionInputs, ElectionNode, Member, NodeConfig, PeerState, Sid,
};

type Listeners = BTreeMap<Sid, mpsc::Sender<io::Result<DuplexStream>>>;

/// Open connections per (dialing sid, dialed sid).
type Open = Arc<Mutex<BTreeMap<(Sid, Sid), usize>>>;

/// Pairs (smaller, larger) that cannot talk.
type Cut = Arc<Mutex<std::collections::BTreeSet<(Sid, Sid)>>>;

#[derive(Clone)]
struct MemDialer {
    from: Sid,
    listeners: Arc<Mutex<Listeners>>,
    open: Open,
    cut: Cut,
}

fn is_cut(cut: &Cut, a: Sid, b: Sid) -> bool {
    cut.lock().is_ok_and(|c| c.contains(&(a.min(b), a.max(b))))
}

fn broken() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "partitioned")
}

/// The dialing half of a connection; counts itself open until dropped.
struct Tracked {
    io: DuplexStream,
    key: (Sid, Sid),
    open: Open,
    cut: Cut,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Ok(mut o) = self.open.lock()
            && let Some(n) = o.get_mut(&self.key)
        {
            *n = n.saturating_sub(1);
        }
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if is_cut(&self.cut, self.key.0, self.key.1) {
            return Poll::Ready(Err(broken()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if is_cut(&self.cut, self.key.0, self.key.1) {
            return Poll::Ready(Err(broken()));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl Dialer for MemDialer {
    type Io = Tracked;

    fn dial(&self, addr: &str) -> Pin<Box<dyn Future<Output = io::Result<Tracked>> + Send>> {
        let this = self.clone();
        let to: Option<Sid> = addr
            .strip_prefix("node")
            .and_then(|s| s.split(':').next())
            .and_then(|s| s.parse().ok());
        Box::pin(async move {
            let to =
                to.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad address"))?;
            if is_cut(&this.cut, this.from, to) {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "partitioned"));
            }
            let listener = this.listeners.lock().ok().and_then(|l| l.get(&to).cloned());
            let listener = listener
                .ok_or_else(|| io::Error::new(io::ErrorKind::ConnectionRefused, "no such node"))?;
            let (client, server) = tokio::io::duplex(64 * 1024);
            listener
                .send(Ok(server))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::ConnectionRefused, "node is down"))?;
            if let Ok(mut o) = this.open.lock() {
                *o.entry((this.from, to)).or_insert(0) += 1;
            }
            Ok(Tracked {
                io: client,
                key: (this.from, to),
                open: this.open,
                cut: this.cut,
            })
        })
    }
}

struct MemCluster {
    nodes: BTreeMap<Sid, ElectionHandle>,
    open: Open,
    cut: Cut,
}

fn mem_cluster(sids: &[Sid]) -> anyhow::Result<MemCluster> {
    let members: BTreeMap<Sid, Member> = sids
        .iter()
        .map(|s| {
            (
                *s,
                Member {
                    election_addr: format!("node{s}:3888"),
                    observer: false,
                },
            )
        })
        .collect();
    let listeners: Arc<Mutex<Listeners>> = Arc::default();
    let open: Open = Arc::default();
    let cut: Cut = Arc::default();
    let mut nodes: BTreeMap<Sid, ElectionHandle> = BTreeMap::new();
    for s in sids {
        let (tx, rx) = mpsc::channel(16);
        listeners
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .insert(*s, tx);
        let dialer = MemDialer {
            from: *s,
            listeners: listeners.clone(),
            open: open.clone(),
            cut: cut.clone(),
        };
        let mut cfg = NodeConfig::new(*s, members.clone());
        cfg.reconnect_backoff_max = Duration::from_millis(100);
        nodes.insert(
            *s,
            ElectionNode::start(cfg, ReceiverStream::new(rx), dialer)?,
        );
    }
    Ok(MemCluster { nodes, open, cut })
}

async fn elect(c: &MemCluster, sids: &[Sid]) -> anyhow::Result<Vec<zk_election::Decision>> {
    let runs = sids.iter().map(|s| async move {
        let n = c
            .nodes
            .get(s)
            .ok_or_else(|| anyhow::anyhow!("no node {s}"))?;
        let d = n
            .run(ElectionInputs {
                last_logged_zxid: *s as i64,
                current_epoch: 1,
            })
            .await?;
        anyhow::Ok(d)
    });
    tokio::time::timeout(common::HANG_GUARD, futures::future::try_join_all(runs)).await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_larger_sids_connection_survives() -> anyhow::Result<()> {
    common::init_tracing();
    let sids: Vec<Sid> = vec![1, 2, 3, 4];
    let c = mem_cluster(&sids)?;
    let ds = elect(&c, &sids).await?;
    assert!(ds.iter().all(|d| d.leader() == 4), "{ds:?}");
    assert_eq!(c.nodes[&4].status().state, PeerState::Leading);

    // Every pair ends up with one live connection, opened by the larger sid; the ones a
    // smaller sid opened to wake its peer up are closed again.
    let settled = tokio::time::timeout(common::HANG_GUARD, async {
        loop {
            let snapshot = c.open.lock().map(|o| o.clone()).unwrap_or_default();
            let live: Vec<(Sid, Sid)> = snapshot
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, _)| *k)
                .collect();
            let all_up = c
                .nodes
                .values()
                .all(|n| n.connected_peers().len() == sids.len() - 1);
            let expected: Vec<(Sid, Sid)> = sids
                .iter()
                .flat_map(|a| sids.iter().filter(move |b| *b < a).map(move |b| (*a, *b)))
                .collect();
            let one_each = expected.iter().all(|k| snapshot.get(k) == Some(&1));
            if all_up && one_each && live.len() == expected.len() {
                return live;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await?;
    assert!(settled.iter().all(|(from, to)| from > to), "{settled:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_is_replaced_and_rejoins_after_the_heal() -> anyhow::Result<()> {
    common::init_tracing();
    let sids: Vec<Sid> = vec![1, 2, 3];
    let c = mem_cluster(&sids)?;
    let first = elect(&c, &sids).await?;
    assert!(first.iter().all(|d| d.leader() == 3), "{first:?}");

    // Cut node 3 off; streams break (on the next write: a keepalive ping at the latest).
    if let Ok(mut cut) = c.cut.lock() {
        cut.insert((1, 3));
        cut.insert((2, 3));
    }
    tokio::time::timeout(common::HANG_GUARD, async {
        while !c.nodes[&3].connected_peers().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await?;
    let second = elect(&c, &[1, 2]).await?;
    assert!(second.iter().all(|d| d.leader() == 2), "{second:?}");

    // Node 3 looks while cut off: it cannot decide (one of three).
    let n3 = c
        .nodes
        .get(&3)
        .ok_or_else(|| anyhow::anyhow!("no node 3"))?;
    let looking = n3.run(ElectionInputs {
        last_logged_zxid: 3,
        current_epoch: 1,
    });
    tokio::pin!(looking);
    let early = tokio::time::timeout(Duration::from_millis(500), &mut looking).await;
    assert!(early.is_err(), "decided while partitioned: {early:?}");
    // Heal: node 3 reconnects (with backoff) and joins leader 2.
    if let Ok(mut cut) = c.cut.lock() {
        cut.clear();
    }
    let d3 = tokio::time::timeout(common::HANG_GUARD, looking).await??;
    assert_eq!((d3.leader(), d3.state), (2, PeerState::Following));
    assert!(d3.joined_established);
    Ok(())
}
