//! Start-up and lifetime of one node, in ZooKeeper's order (`QuorumPeer.start()`): load
//! the database → open the client port → serve. A standalone server serves at once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::Instrument;
use zk_proto::zxid::epoch_of;
use zk_quorum::driver::NodeStorage;
use zk_storage::db::{DbError, DbOptions, DbParts, ZkDatabase};
use zk_storage::log::{EpochStore, TxnLog};

use crate::config::{LoadedConfig, Mode};
use crate::pipeline::{self, StandaloneStorage, WriteOp};
use crate::quorum::{QuorumPeer, ServerMachine};
use crate::server::{Role, Shared};
use crate::snapshots::Snapshotter;

/// Why a node could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The database could not be opened or written.
    #[error("database: {0}")]
    Db(#[from] zk_storage::db::DbError),
    /// A socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration asks for something this build does not do.
    #[error("{0}")]
    Unsupported(String),
    /// The write pipeline stopped.
    #[error("write pipeline stopped: {0}")]
    Pipeline(String),
    /// The write pipeline failed.
    #[error(transparent)]
    PipelineFailed(#[from] pipeline::PipelineError),
}

/// Where a node keeps its database inside `dataDir` (our format, not Apache's
/// `version-2`, so the two are never mixed up).
pub fn database_dir(loaded: &LoadedConfig) -> PathBuf {
    loaded.config.data_dir.join("zk-rs")
}

/// What runs the writes: the standalone pipeline thread, or the ensemble peer loop.
enum Engine {
    Standalone(std::thread::JoinHandle<Result<(), pipeline::PipelineError>>),
    Quorum {
        task: tokio::task::JoinHandle<Result<(), NodeError>>,
        stop: tokio::sync::watch::Sender<bool>,
    },
}

/// A running node: its shared state and the address its client port is bound to.
pub struct Node {
    /// The shared state.
    pub shared: Arc<Shared>,
    /// The bound client address (the real port when the config asked for 0).
    pub client_addr: SocketAddr,
    engine: Engine,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Node {
    /// Loads the database, binds the client port and starts serving (standalone), or
    /// starts leader election (ensemble), in ZooKeeper's order.
    pub async fn start(loaded: LoadedConfig) -> Result<Node, NodeError> {
        let my_id = loaded.my_id.unwrap_or(0);
        let config = Arc::new(loaded.config.clone());
        let dir = database_dir(&loaded);
        let parts = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || {
                ZkDatabase::open(dir, DbOptions::default()).map(ZkDatabase::into_parts)
            })
            .await
            .map_err(|e| NodeError::Pipeline(e.to_string()))??
        };
        let DbParts {
            log,
            epochs,
            snapshots,
            tree,
            log_base,
            ..
        } = parts;
        let last_logged = log
            .last_zxid()
            .map_err(DbError::from)?
            .unwrap_or(0)
            .max(log_base);
        let shared = Shared::new(config.clone(), my_id, tree);
        let snapshotter = Snapshotter::new(
            snapshots,
            config.snap_count,
            config.snap_retain_count.max(1) as usize,
            u64::from(std::process::id()) ^ my_id.rotate_left(32),
        );
        let addr = loaded.client_address.to_string();
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|source| NodeError::Bind {
                addr: addr.clone(),
                source,
            })?;
        let client_addr = listener
            .local_addr()
            .map_err(|source| NodeError::Bind { addr, source })?;

        let limit = config.global_outstanding_limit.max(1) as usize;
        let (submitter, rx) = mpsc::channel::<WriteOp>(limit);
        let mut tasks = vec![tokio::spawn(
            crate::cnxn::serve(listener, shared.clone(), submitter.clone()).in_current_span(),
        )];
        // The admin server starts after the client port and before election, as in
        // ZooKeeper; as there, a port it cannot bind is a warning, not a failed start.
        if config.admin.enabled {
            let admin =
                crate::config::HostPort::new(config.admin.address.clone(), config.admin.port);
            match TcpListener::bind(admin.to_string()).await {
                Ok(admin_listener) => tasks.push(tokio::spawn(
                    crate::admin::serve(admin_listener, shared.clone()).in_current_span(),
                )),
                Err(e) => tracing::warn!(
                    addr = %admin,
                    error = %e,
                    "problem starting the admin server; serving without it \
                     (set admin.serverPort, or admin.enableServer=false)"
                ),
            }
        }
        let engine = match loaded.mode {
            Mode::Standalone => {
                let epoch = epoch_of(last_logged)
                    .max(epochs.current_epoch().unwrap_or(0))
                    .max(epoch_of(shared.last_processed_zxid()));
                let storage = StandaloneStorage {
                    log,
                    snapshots: snapshotter,
                    epoch,
                };
                let span = tracing::Span::current();
                let thread = {
                    let shared = shared.clone();
                    std::thread::Builder::new()
                        .name("write-pipeline".into())
                        .spawn(move || {
                            let _g = span.enter();
                            pipeline::run_standalone(shared, storage, rx)
                        })
                        .map_err(|e| NodeError::Pipeline(e.to_string()))?
                };
                shared.set_role(Role::Standalone);
                tasks.push(tokio::spawn(
                    pipeline::expire_sessions(shared.clone(), submitter.clone()).in_current_span(),
                ));
                tasks.push(tokio::spawn(
                    pipeline::clean_containers(shared.clone(), submitter).in_current_span(),
                ));
                tracing::info!(
                    %client_addr,
                    last_zxid = format_args!("{:#x}", shared.last_processed_zxid()),
                    "serving as a standalone server"
                );
                Engine::Standalone(thread)
            }
            Mode::Quorum { my_id } => {
                drop(submitter);
                let election = crate::quorum::start_election(&config, my_id).await?;
                // The newest snapshot's size: a leader weighs it against a DIFF from its
                // log when a learner is behind the txns it keeps in memory.
                // (The database was just loaded from it: its size is enough, no re-read.)
                let snapshot_bytes = snapshotter
                    .store()
                    .list()
                    .ok()
                    .and_then(|files| {
                        let newest = files.into_iter().next()?;
                        std::fs::metadata(newest.path).ok()
                    })
                    .map_or(0, |m| m.len());
                let purge_points = snapshotter.purge_points();
                let machine = ServerMachine::new(shared.clone(), snapshotter);
                let peer = QuorumPeer {
                    shared: shared.clone(),
                    storage: NodeStorage::new(log, epochs, machine, log_base)
                        .with_snapshot_bytes(snapshot_bytes),
                    writes: rx,
                    my_id,
                    purge_points,
                };
                let (stop, stop_rx) = tokio::sync::watch::channel(false);
                tracing::info!(
                    %client_addr,
                    last_logged_zxid = format_args!("{last_logged:#x}"),
                    "starting leader election"
                );
                let task = tokio::spawn(peer.run(election, stop_rx).in_current_span());
                Engine::Quorum { task, stop }
            }
        };
        Ok(Node {
            shared,
            client_addr,
            engine,
            tasks,
        })
    }

    /// Stops accepting clients, closes every connection and waits for the write side to
    /// finish what it has (SIGTERM).
    pub async fn shutdown(self) -> Result<(), NodeError> {
        self.shared.set_role(Role::NotServing);
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
        self.shared.close_all();
        match self.engine {
            Engine::Standalone(pipeline) => {
                // Connections still in their handshake hold submitters for a few
                // seconds; everything acknowledged is already durable, so do not wait.
                let join = tokio::task::spawn_blocking(move || pipeline.join());
                match tokio::time::timeout(std::time::Duration::from_secs(2), join).await {
                    Ok(Ok(Ok(r))) => Ok(r?),
                    Ok(Ok(Err(_))) => {
                        Err(NodeError::Pipeline("the write pipeline panicked".into()))
                    }
                    Ok(Err(e)) => Err(NodeError::Pipeline(e.to_string())),
                    Err(_) => {
                        tracing::info!("write pipeline idle with connections still closing");
                        Ok(())
                    }
                }
            }
            Engine::Quorum { task, stop } => {
                let _ = stop.send(true);
                match task.await {
                    Ok(r) => r,
                    Err(e) => Err(NodeError::Pipeline(e.to_string())),
                }
            }
        }
    }
}
