//! `zk-server <zoo.cfg>`: one node of a ZooKeeper-compatible ensemble, started from the
//! same `zoo.cfg` + `dataDir/myid` layout Apache ZooKeeper reads.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use tracing::Instrument;
use zk_server::config;
use zk_server::node::Node;

#[derive(Parser)]
#[command(
    name = "zk-server",
    version,
    about = "A ZooKeeper-compatible coordination server"
)]
struct Args {
    /// The configuration file (ZooKeeper's zoo.cfg format).
    config: PathBuf,
}

fn main() -> Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let loaded = config::load(&args.config)
        .with_context(|| format!("invalid configuration {}", args.config.display()))?;
    let my_id = loaded.my_id.unwrap_or(0);
    let span = tracing::info_span!("node", id = my_id);
    for w in &loaded.warnings {
        let _g = span.enter();
        match w.line {
            Some(line) => tracing::warn!(line, key = %w.key, "{}", w.message),
            None => tracing::warn!(key = %w.key, "{}", w.message),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("zk-server")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(
        async move {
            let node = Node::start(loaded).await.context("starting the node")?;
            wait_for_shutdown_signal().await?;
            tracing::info!("shutting down");
            node.shutdown().await.context("shutting down")?;
            tracing::info!("stopped");
            Ok(())
        }
        .instrument(span),
    )
}

async fn wait_for_shutdown_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
