//! `cargo xtask interop`: real ZooKeeper clients against a local ensemble of ours —
//! kazoo (PyPI) through `xtask/interop/kazoo_check.py`, and Apache ZooKeeper's own
//! `zkCli.sh` (Debian package `zookeeper`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::cluster::{Bases, Cluster};

/// Where Debian's `zookeeper` package puts zkCli.sh.
const ZKCLI: &str = "/usr/share/zookeeper/bin/zkCli.sh";

/// `cargo xtask interop` arguments.
#[derive(Args)]
pub struct InteropArgs {
    /// Number of nodes.
    #[arg(short = 'n', long, default_value_t = 3)]
    nodes: u32,
    /// First client port (node i: 127.0.0.i, port base + i - 1).
    #[arg(long, default_value_t = 12181)]
    client_base: u16,
    /// Work directory (removed first).
    #[arg(long, default_value = "target/interop")]
    dir: PathBuf,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Runs every interop check; fails if any fails.
pub fn run(args: InteropArgs) -> Result<()> {
    let python = which("python3").context("python3 is needed for the kazoo checks")?;
    let has_kazoo = Command::new(&python)
        .args(["-c", "import kazoo"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !has_kazoo {
        bail!("kazoo is not installed: `pip install kazoo` (CI's .ci/run does it)");
    }
    if !Path::new(ZKCLI).exists() {
        bail!("{ZKCLI} is missing: `apt-get install -y zookeeper` (CI's .ci/run does it)");
    }
    let dir = root().join(&args.dir);
    let _ = std::fs::remove_dir_all(&dir);
    let bases = Bases {
        client: args.client_base,
        quorum: args.client_base.wrapping_add(700),
        election: args.client_base.wrapping_add(1700),
    };
    eprintln!(
        "==> starting a {}-node ensemble in {}",
        args.nodes,
        dir.display()
    );
    let cluster = Cluster::launch(&dir, args.nodes, bases, 2000, false, 120)?;
    let hosts = cluster.connect_string();
    let mut results: Vec<(&str, bool, Duration)> = Vec::new();

    eprintln!("==> kazoo against {hosts}");
    let t = Instant::now();
    let script = root().join("xtask/interop/kazoo_check.py");
    let kazoo_ok = run_bounded(
        Command::new(&python).arg(&script).arg(&hosts),
        Duration::from_secs(300),
    )?;
    results.push(("kazoo", kazoo_ok, t.elapsed()));

    eprintln!("==> zkCli.sh against {hosts}");
    let t = Instant::now();
    let zkcli_ok = zkcli_checks(&hosts)?;
    results.push(("zkCli.sh", zkcli_ok, t.elapsed()));

    drop(cluster);
    println!("\n{:<10} {:<7} {:>8}", "client", "result", "seconds");
    for (name, ok, took) in &results {
        println!(
            "{:<10} {:<7} {:>8.1}",
            name,
            if *ok { "ok" } else { "FAILED" },
            took.as_secs_f64()
        );
    }
    if results.iter().any(|r| !r.1) {
        bail!(
            "interop failed (output above; node logs in {})",
            dir.display()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// Runs a child to completion within `limit` (killed past it); true on exit 0.
fn run_bounded(cmd: &mut Command, limit: Duration) -> Result<bool> {
    let mut child = cmd
        .stdin(Stdio::null())
        .spawn()
        .context("starting a client")?;
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status.success());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("client did not finish within {limit:?}; killed");
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One zkCli.sh command; returns (exit ok, stdout+stderr).
fn zkcli(hosts: &str, args: &[&str]) -> Result<(bool, String)> {
    let out = Command::new(ZKCLI)
        .arg("-server")
        .arg(hosts)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running zkCli.sh")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

fn zkcli_checks(hosts: &str) -> Result<bool> {
    let node = format!("/zkcli-{}", std::process::id());
    let child = format!("{node}/child");
    let steps: Vec<(&str, Vec<&str>, &str)> = vec![
        ("create", vec!["create", &node, "hello"], "Created"),
        ("get", vec!["get", &node], "hello"),
        ("set", vec!["set", &node, "world"], ""),
        ("get after set", vec!["get", "-s", &node], "dataVersion = 1"),
        ("create child", vec!["create", &child, "c"], "Created"),
        ("ls", vec!["ls", &node], "[child]"),
        ("stat", vec!["stat", &node], "numChildren = 1"),
        ("deleteall", vec!["deleteall", &node], ""),
        ("ls after delete", vec!["ls", "/"], "zookeeper"),
    ];
    let mut all = true;
    for (name, args, expect) in steps {
        let (ok, text) = zkcli(hosts, &args)?;
        let pass = ok && text.contains(expect);
        println!("{} zkCli.sh {name}", if pass { "ok  " } else { "FAIL" });
        if !pass {
            println!("---- output of `zkCli.sh {}` ----\n{text}", args.join(" "));
            all = false;
        }
    }
    let (_, text) = zkcli(hosts, &["ls", &node])?;
    let gone = text.contains("does not exist") || text.contains("NoNode");
    println!(
        "{} zkCli.sh node gone after deleteall",
        if gone { "ok  " } else { "FAIL" }
    );
    Ok(all && gone)
}
