//! `cargo xtask bench`: throughput, latency, failover, catch-up, restart and footprint of
//! a 3-node ensemble of ours, optionally side by side with Apache ZooKeeper 3.8.
//!
//! The load generator is the project's own pipelined client; the servers and the bench
//! itself run as release builds (a debug `cargo xtask` re-runs itself with `--release`).
//! With `--against apache` both ensembles run at once on different ports, and every
//! measurement runs on one system, then the other, alternating which goes first. The
//! table goes to `docs/benchmarks/results.md`, the plot to `docs/benchmarks/results.svg`.

pub(crate) mod ensemble;
mod load;
mod report;
mod scenarios;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use ensemble::{Ensemble, NODES, Settings, System};
use load::{Mix, Workload};
use report::{Measured, Report};

/// `cargo xtask bench` arguments.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Also measure this system, alternating with ours, and print ratios ours/theirs.
    #[arg(long, value_enum)]
    against: Option<Against>,
    /// Smaller sizes and shorter runs (catch-up, restart and footprint with fewer txns
    /// and znodes).
    #[arg(long)]
    quick: bool,
    /// Seconds each workload is measured (default 5 with --quick, 20 without).
    #[arg(long)]
    duration_s: Option<u64>,
    /// Leader failovers per system (at least 5 count for the median).
    #[arg(long, default_value_t = 5)]
    failovers: u32,
    /// Txns written while a follower is down (default 50 000 with --quick, 1 000 000).
    #[arg(long)]
    catch_up_txns: Option<u64>,
    /// Znodes for the restart and footprint measures (default 100 000 with --quick,
    /// 1 000 000).
    #[arg(long)]
    znodes: Option<u64>,
    /// Hard bound on the whole run, in minutes; past it every node is killed and the
    /// bench exits (default 30 with --quick, 150 without).
    #[arg(long)]
    max_minutes: Option<u64>,
    /// tickTime of both ensembles, ms.
    #[arg(long, default_value_t = 2000)]
    tick_ms: u32,
    /// Java heap limit of each Apache node, MiB (default 512 with --quick, 2048).
    #[arg(long)]
    java_heap_mib: Option<u32>,
    /// Where the ensembles keep their data and logs.
    #[arg(long, default_value = "target/bench")]
    work_dir: PathBuf,
    /// Where the table and the plot go.
    #[arg(long, default_value = "docs/benchmarks")]
    out: PathBuf,
}

/// The system compared against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Against {
    /// Apache ZooKeeper 3.8 from the Debian package `zookeeper`.
    Apache,
}

/// Client port bases: ours, Apache (quorum at +100, election at +200).
const OURS_BASE: u16 = 21810;
const APACHE_BASE: u16 = 22810;
/// Keys of the setData / getData workloads.
const KEYS: usize = 1000;
/// Warm-up before each measured workload.
const WARMUP: Duration = Duration::from_secs(1);
/// Marks the re-executed release build.
const RELEASE_ENV: &str = "XTASK_BENCH_RELEASE";

/// Runs `cargo xtask bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    if cfg!(debug_assertions) && std::env::var_os(RELEASE_ENV).is_none() {
        return rerun_in_release();
    }
    let root = workspace_root()?;
    let quick = args.quick;
    let duration_s = args.duration_s.unwrap_or(if quick { 5 } else { 20 });
    let catch_up_txns = args
        .catch_up_txns
        .unwrap_or(if quick { 50_000 } else { 1_000_000 });
    let znodes = args
        .znodes
        .unwrap_or(if quick { 100_000 } else { 1_000_000 });
    let max_minutes = args.max_minutes.unwrap_or(if quick { 30 } else { 150 });
    let failovers = args.failovers.max(1);
    if args.against.is_some() && !Path::new("/usr/share/java/zookeeper.jar").exists() {
        bail!(
            "Apache ZooKeeper is not installed: `apt-get install zookeeper` \
             (or `shared/tools/zk-ensemble.sh install`)"
        );
    }
    start_watchdog(Duration::from_secs(max_minutes * 60));
    let server_bin = build_server(&root)?;
    let settings = Settings {
        tick_ms: args.tick_ms,
        init_limit: 10,
        sync_limit: 5,
        java_heap_mib: args.java_heap_mib.unwrap_or(if quick { 512 } else { 2048 }),
        extra_cfg: "",
    };
    let work_dir = root.join(&args.work_dir);
    let out_dir = root.join(&args.out);
    std::fs::create_dir_all(&out_dir)?;

    let mut systems = vec![System::Ours];
    if args.against.is_some() {
        systems.push(System::Apache);
    }
    let workloads: Vec<Workload> = [Mix::Create, Mix::Set, Mix::Get, Mix::Read90]
        .into_iter()
        .flat_map(|mix| {
            [(1, 1), (16, 16)].map(|(sessions, in_flight)| Workload {
                mix,
                sessions,
                in_flight,
            })
        })
        .collect();
    let steps = systems.len() as u64 * (2 + workloads.len() as u64 + u64::from(failovers) + 2) + 1;
    let bar = ProgressBar::new(steps);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {wide_msg}")
            .context("progress template")?
            .progress_chars("=> "),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut results: Vec<Measured> = systems.iter().map(|_| Measured::default()).collect();
    let mut failures = Vec::new();
    let wait = Duration::from_secs(120);

    // Fresh ensembles: idle footprint, keys for setData/getData.
    let mut ensembles = Vec::new();
    for system in &systems {
        bar.set_message(format!("starting the {} ensemble", system.name()));
        let (dir, base) = match system {
            System::Ours => (work_dir.join("ours"), OURS_BASE),
            System::Apache => (work_dir.join("apache"), APACHE_BASE),
        };
        ensembles.push(Ensemble::launch(
            *system,
            &dir,
            base,
            &server_bin,
            settings,
            wait,
        )?);
        bar.inc(1);
    }
    std::thread::sleep(Duration::from_secs(3));
    let mut keys = Vec::new();
    for (ens, m) in ensembles.iter().zip(results.iter_mut()) {
        bar.set_message(format!("{}: idle footprint, keys", ens.system.name()));
        m.idle_rss_mib = (1..=NODES)
            .map(|id| ens.rss_kib(id).map_or(f64::NAN, |k| k as f64 / 1024.0))
            .collect();
        let connect = ens.client_addr(1).to_string();
        let k = runtime.block_on(async {
            let client = load::connect(&connect, 256).await?;
            load::ensure(&client, "/bench").await?;
            load::ensure(&client, "/bench/create").await?;
            let k = load::make_keys(&client, "/bench/keys", KEYS).await?;
            let _ = client.close().await;
            anyhow::Ok(k)
        })?;
        keys.push(Arc::new(k));
        bar.inc(1);
    }

    // Throughput and latency, alternating the system that goes first.
    for (n, w) in workloads.iter().enumerate() {
        for i in order(systems.len(), n) {
            let (Some(ens), Some(k), Some(m)) = (ensembles.get(i), keys.get(i), results.get_mut(i))
            else {
                continue;
            };
            bar.set_message(format!(
                "{}: {} for {duration_s} s",
                ens.system.name(),
                w.label()
            ));
            let r = runtime.block_on(load::run(
                &ens.addrs(),
                *w,
                k.clone(),
                "/bench/create",
                WARMUP,
                Duration::from_secs(duration_s),
            ));
            match r {
                Ok(r) => {
                    say(
                        &bar,
                        format!(
                            "{:>6} {:<16} {:>9.0} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms  p99.9 {:>7.2} ms{}",
                            ens.system.name(),
                            w.label(),
                            r.ops_per_s,
                            r.p50_us / 1000.0,
                            r.p99_us / 1000.0,
                            r.p999_us / 1000.0,
                            if r.errors > 0 {
                                format!("  {} errors", r.errors)
                            } else {
                                String::new()
                            }
                        ),
                    );
                    m.workloads.push((*w, r));
                }
                Err(e) => failures.push(format!("{} {}: {e:#}", ens.system.name(), w.label())),
            }
            bar.inc(1);
        }
    }

    // Leader failover.
    for rep in 0..failovers {
        for i in order(systems.len(), rep as usize) {
            let (Some(ens), Some(k), Some(m)) =
                (ensembles.get_mut(i), keys.get(i), results.get_mut(i))
            else {
                continue;
            };
            let name = ens.system.name();
            bar.set_message(format!("{name}: failover {}/{failovers}", rep + 1));
            match runtime.block_on(scenarios::failover(ens, k.clone())) {
                Ok(f) => {
                    say(
                        &bar,
                        format!(
                            "{name:>6} failover {}: first write ok after {:.0} ms, new leader after {:.0} ms",
                            rep + 1,
                            f.write_ms,
                            f.leader_ms
                        ),
                    );
                    m.failovers.push(f);
                }
                Err(e) => failures.push(failed(ens, &format!("failover {}", rep + 1), &e, wait)),
            }
            bar.inc(1);
        }
    }

    // Catch-up of a follower that missed `catch_up_txns` txns.
    for i in order(systems.len(), 0) {
        let (Some(ens), Some(k), Some(m)) = (ensembles.get_mut(i), keys.get(i), results.get_mut(i))
        else {
            continue;
        };
        let name = ens.system.name();
        bar.set_message(format!("{name}: catch-up after {catch_up_txns} txns"));
        match runtime.block_on(scenarios::catch_up(ens, k.clone(), catch_up_txns)) {
            Ok(s) => {
                say(
                    &bar,
                    format!("{name:>6} catch-up: in sync {s:.2} s after start"),
                );
                m.catch_up_s = Some(s);
            }
            Err(e) => failures.push(failed(ens, "catch-up", &e, wait)),
        }
        bar.inc(1);
    }

    // A big database: footprint, restart.
    for i in order(systems.len(), 1) {
        let (Some(ens), Some(m)) = (ensembles.get_mut(i), results.get_mut(i)) else {
            continue;
        };
        let name = ens.system.name();
        bar.set_message(format!("{name}: {znodes} znodes, RSS, restart"));
        match runtime.block_on(scenarios::big_db(ens, znodes)) {
            Ok(b) => {
                say(
                    &bar,
                    format!(
                        "{name:>6} {znodes} znodes: RSS {:?} MiB; restart: serving after {:.2} s, in sync after {:.2} s",
                        b.rss_mib.iter().map(|r| r.round()).collect::<Vec<_>>(),
                        b.serve_s,
                        b.synced_s
                    ),
                );
                m.big = Some(b);
            }
            Err(e) => failures.push(failed(ens, "restart/footprint", &e, wait)),
        }
        bar.inc(1);
    }
    bar.set_message("writing the report");
    for mut ens in ensembles {
        ens.shutdown();
    }
    drop(runtime);

    let mut results = results.into_iter();
    let ours = results.next().unwrap_or_default();
    let apache = results.next();
    let report = Report {
        command: command_line(),
        date: shell("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        machine: format!(
            "{} cores, {}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            shell("uname", &["-sr"])
        ),
        duration_s,
        catch_up_txns,
        znodes,
        ours,
        apache,
        failures,
    };
    let md = report.markdown();
    let md_path = out_dir.join("results.md");
    std::fs::write(&md_path, &md).with_context(|| format!("writing {}", md_path.display()))?;
    let svg_path = out_dir.join("results.svg");
    report.plot(&svg_path)?;
    bar.inc(1);
    bar.finish_and_clear();
    println!("{md}");
    println!("wrote {} and {}", md_path.display(), svg_path.display());
    Ok(())
}

/// Describes a failed step (with the nodes that died during it) and makes the ensemble
/// whole again for the steps that follow.
fn failed(ens: &mut Ensemble, step: &str, e: &anyhow::Error, wait: Duration) -> String {
    let exited = ens.exited();
    let mut text = format!("{} {step}: {e:#}", ens.system.name());
    if !exited.is_empty() {
        text.push_str(&format!(" [{}]", exited.join("; ")));
    }
    if let Err(e) = ens.heal(wait) {
        text.push_str(&format!(" [could not restart the ensemble: {e:#}]"));
    }
    text
}

/// Prints a result line above the progress bar (on stderr when there is no terminal).
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

/// Indices `0..n`, rotated by `round` so each system goes first in turn.
fn order(n: usize, round: usize) -> Vec<usize> {
    (0..n).map(|i| (i + round) % n.max(1)).collect()
}

fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("cargo xtask {}", args.join(" "))
}

fn shell(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn workspace_root() -> Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .context("xtask has no parent dir")
}

/// Re-runs this command from a release build of xtask, so the load generator is
/// optimised.
fn rerun_in_release() -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["run", "--release", "--quiet", "--package", "xtask", "--"])
        .args(std::env::args_os().skip(1))
        .env(RELEASE_ENV, "1")
        .status()
        .context("running the release build of xtask")?;
    if !status.success() {
        bail!("the bench failed ({status})");
    }
    Ok(())
}

/// Builds the release `zk-server` and returns its path.
fn build_server(root: &Path) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "zk-server",
            "--bin",
            "zk-server",
        ])
        .current_dir(root)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("building zk-server failed");
    }
    let bin = crate::cluster::target_dir()?.join("release/zk-server");
    if !bin.exists() {
        bail!("{} is missing after the build", bin.display());
    }
    Ok(bin)
}

/// Past `limit`, kills every node the bench started and exits: the hard time bound.
fn start_watchdog(limit: Duration) {
    let started = Instant::now();
    std::thread::spawn(move || {
        while started.elapsed() < limit {
            std::thread::sleep(Duration::from_secs(1));
        }
        eprintln!("\nbench: time bound of {limit:?} reached; killing the ensembles");
        ensemble::kill_all_started();
        std::process::exit(3);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_rotates_the_first_system() {
        assert_eq!(order(2, 0), vec![0, 1]);
        assert_eq!(order(2, 1), vec![1, 0]);
        assert_eq!(order(1, 7), vec![0]);
    }
}
