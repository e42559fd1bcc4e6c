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
}

const CI_STEPS: &[Step] = &[
    Step {
        name: "format",
        args: &["fmt", "--all", "--", "--check"],
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
    },
    Step {
        name: "doc tests",
        args: &["test", "--workspace", "--doc"],
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
    },
    Step {
        name: "interop",
        args: &["xtask", "interop"],
    },
];

fn ci() -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let started = Instant::now();
    let mut results = Vec::new();
    for (i, step) in CI_STEPS.iter().enumerate() {
        eprintln!(
            "==> [{}/{}] {}: cargo {}",
            i + 1,
            CI_STEPS.len(),
            step.name,
            step.args.join(" ")
        );
        let t = Instant::now();
        let status = Command::new(&cargo)
            .args(step.args)
            .status()
            .with_context(|| format!("could not run cargo for step {}", step.name))?;
        results.push((step.name, status.success(), t.elapsed()));
        if !status.success() {
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
