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

#[derive(Clone)]
struct MemDialer {
    from: Sid,
    listeners: Arc<Mutex<Listeners>>,
    open: Open,
}

/// The dialing half of a connection; counts itself open until dropped.
struct Tracked {
    io: DuplexStream,
    key: (Sid, Sid),
    open: Open,
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
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
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
            })
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_larger_sids_connection_survives() -> anyhow::Result<()> {
    common::init_tracing();
    let sids: Vec<Sid> = vec![1, 2, 3, 4];
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
    let mut nodes: BTreeMap<Sid, ElectionHandle> = BTreeMap::new();
    for s in &sids {
        let (tx, rx) = mpsc::channel(16);
        listeners
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .insert(*s, tx);
        let dialer = MemDialer {
            from: *s,
            listeners: listeners.clone(),
            open: open.clone(),
        };
        let mut cfg = NodeConfig::new(*s, members.clone());
        cfg.reconnect_backoff_max = Duration::from_millis(100);
        nodes.insert(
            *s,
            ElectionNode::start(cfg, ReceiverStream::new(rx), dialer)?,
        );
    }
    let runs = nodes.iter().map(|(s, n)| async move {
        n.run(ElectionInputs {
            last_logged_zxid: *s as i64,
            current_epoch: 1,
        })
        .await
    });
    let ds =
        tokio::time::timeout(common::HANG_GUARD, futures::future::try_join_all(runs)).await??;
    assert!(ds.iter().all(|d| d.leader() == 4), "{ds:?}");
    assert_eq!(nodes[&4].status().state, PeerState::Leading);

    // Every pair ends up with one live connection, opened by the larger sid; the ones a
    // smaller sid opened to wake its peer up are closed again.
    let settled = tokio::time::timeout(common::HANG_GUARD, async {
        loop {
            let snapshot = open.lock().map(|o| o.clone()).unwrap_or_default();
            let live: Vec<(Sid, Sid)> = snapshot
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, _)| *k)
                .collect();
            let all_up = nodes
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
