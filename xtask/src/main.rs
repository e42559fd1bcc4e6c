//! `cargo xtask …`: the project's tasks.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

mod bench;
mod chaos;
mod cluster;
mod difftest;
mod interop;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Project tasks for the ZooKeeper-compatible ensemble"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run every check CI runs: formatting, clippy, the whole test suite.
    Ci,
    /// Launch and operate a local ensemble (`up`, `status`, `stop N`, `start N`, `kill N`,
    /// `down`, `logs N`).
    Cluster(cluster::ClusterArgs),
    /// Benchmark a local ensemble (throughput, latency, failover, catch-up, restart,
    /// footprint), optionally side by side with Apache ZooKeeper (`--against apache`).
    Bench(bench::BenchArgs),
    /// Faults (kill -9, SIGSTOP, partitions) under load on a local ensemble, then a
    /// linearizability and convergence check of what the clients saw.
    Chaos(chaos::ChaosArgs),
    /// The same seeded random client operations against our ensemble and Apache
    /// ZooKeeper 3.8; any difference in replies or watch events is shrunk and printed.
    Difftest(difftest::DifftestArgs),
    /// Drive a local ensemble with kazoo and Apache's zkCli.sh and check the results.
    Interop(interop::InteropArgs),
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Ci => ci(),
        Cmd::Chaos(args) => chaos::run(args),
        Cmd::Cluster(args) => cluster::run(args),
        Cmd::Difftest(args) => difftest::run(args),
        Cmd::Interop(args) => interop::run(args),
        Cmd::Bench(args) => bench::run(args),
    }
}

/// One named step of `cargo xtask ci`: a cargo command line.
struct Step {
    name: &'static str,
    args: &'static [&'static str],
    seed: Seed,
}

/// Whether a step gets a `--seed` appended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seed {
    /// The command line as written.
    None,
    /// `--seed N` with N from the clock, printed so that a failure can be replayed.
    Clock,
}

/// A seed from the clock (nanoseconds since the epoch).
fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

/// The fixed seed of the seeded CI runs of chaos and difftest.
const CI_SEED: &str = "20261125";

const CI_STEPS: &[Step] = &[
    Step {
        name: "format",
        args: &["fmt", "--all", "--", "--check"],
        seed: Seed::None,
    },
    Step {
        name: "clippy",
        args: &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        seed: Seed::None,
    },
    Step {
        name: "tests",
        args: &[
            "nextest",
            "run",
            "--workspace",
            "--no-fail-fast",
            "--profile",
            "ci",
        ],
        seed: Seed::None,
    },
    Step {
        name: "doc tests",
        args: &["test", "--workspace", "--doc"],
        seed: Seed::None,
    },
    Step {
        name: "election bench (smoke)",
        args: &[
            "run",
            "--quiet",
            "-p",
            "zk-election",
            "--example",
            "bench",
            "--",
            "--runs",
            "3",
        ],
        seed: Seed::None,
    },
    Step {
        name: "interop",
        args: &["xtask", "interop"],
        seed: Seed::None,
    },
    Step {
        name: "chaos (fixed seed)",
        args: &[
            "xtask",
            "chaos",
            "--nodes",
            "5",
            "--duration",
            "60s",
            "--seed",
            CI_SEED,
        ],
        seed: Seed::None,
    },
    Step {
        name: "chaos (clock seed)",
        args: &["xtask", "chaos", "--nodes", "5", "--duration", "60s"],
        seed: Seed::Clock,
    },
    Step {
        name: "difftest (fixed seed)",
        args: &["xtask", "difftest", "--ops", "2000", "--seed", CI_SEED],
        seed: Seed::None,
    },
    Step {
        name: "difftest (clock seed)",
        args: &["xtask", "difftest", "--ops", "2000"],
        seed: Seed::Clock,
    },
];

fn ci() -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let started = Instant::now();
    let mut results = Vec::new();
    for (i, step) in CI_STEPS.iter().enumerate() {
        let mut args: Vec<String> = step.args.iter().map(|a| (*a).to_owned()).collect();
        if step.seed == Seed::Clock {
            args.push("--seed".into());
            args.push(clock_seed().to_string());
        }
        eprintln!(
            "==> [{}/{}] {}: cargo {}",
            i + 1,
            CI_STEPS.len(),
            step.name,
            args.join(" ")
        );
        let t = Instant::now();
        let status = Command::new(&cargo)
            .args(&args)
            .status()
            .with_context(|| format!("could not run cargo for step {}", step.name))?;
        results.push((step.name, status.success(), t.elapsed()));
        if !status.success() {
            if step.seed == Seed::Clock {
                eprintln!(
                    "==> {} failed; replay it with: cargo {}",
                    step.name,
                    args.join(" ")
                );
            }
            break;
        }
    }
    eprintln!("\n{:<24} {:<6} {:>8}", "step", "result", "seconds");
    for (name, ok, took) in &results {
        eprintln!(
            "{:<24} {:<6} {:>8.1}",
            name,
            if *ok { "ok" } else { "FAILED" },
            took.as_secs_f64()
        );
    }
    eprintln!("total {:.1} s", started.elapsed().as_secs_f64());
    if results.iter().any(|r| !r.1) {
        bail!("a CI step failed (see above)");
    }
    Ok(())
}
