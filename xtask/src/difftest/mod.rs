//! `cargo xtask difftest`: Apache ZooKeeper as the oracle for what a client sees.
//!
//! The same seeded random sequences of client operations (every op and create mode, bad
//! paths, bad versions, multi with failing members, null data, ACLs and auth, watches
//! set and fired, sequential creates, ephemerals across session close; three sessions
//! per sequence) run through `zk_server::client::Client` against a 3-node ensemble of
//! ours and a 3-node Apache ZooKeeper 3.8 ensemble (or the server given with
//! `--against`), and every reply and watch event is compared after normalisation (see
//! [`normalise`]: zxids and session ids by rank of first appearance, times left out,
//! children, ACLs and other lists compared as sets because Apache answers in hash order
//! and ours sorted). A difference is shrunk ([`shrink`]) to the shortest op sequence
//! that still shows it, replayed on fresh roots and sessions, and printed with both
//! systems' replies; the run goes on with the next sequence (a difference already seen
//! is counted, not shrunk again) and exits non-zero at the end.
//!
//! Each sequence runs under its own root `/dt-<run>-<n>` (the same on both systems);
//! see [`exec`] for how sessions, syncs and watch events are kept deterministic and
//! [`ops`] for what the generator produces (and the one thing it avoids: emptying a
//! container, whose deletion time is the server's own).

pub mod exec;
pub mod normalise;
pub mod ops;
pub mod shrink;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::bench::ensemble::{Ensemble, NODES, Settings, System};
use exec::{Step, Target, Trace, first_difference, replay};
use ops::{Generator, KINDS, Op};

/// Client port bases of the two ensembles (quorum +100, election +200): clear of chaos
/// (24181+), interop (12181, 12881, 13881), bench (21810+, 22810+) and 2181.
const OURS_BASE: u16 = 19181;
const APACHE_BASE: u16 = 20181;
/// Lines added to both systems' `zoo.cfg`: TTL nodes.
const EXTRA_CFG: &str = "extendedTypesEnabled=true\n";

/// `cargo xtask difftest` arguments.
#[derive(Args)]
pub struct DifftestArgs {
    /// Number of ops to run in all.
    #[arg(long, default_value_t = 10_000)]
    ops: usize,
    /// Seed of the op sequences (default: from the clock; printed either way).
    #[arg(long)]
    seed: Option<u64>,
    /// Compare against this ZooKeeper server (`host:port`, needs
    /// `extendedTypesEnabled=true` for TTL nodes) instead of starting Apache ZooKeeper.
    #[arg(long, value_name = "HOST:PORT")]
    against: Option<String>,
    /// Longest sequence (ops per set of sessions); lengths vary from a quarter of it.
    #[arg(long, default_value_t = 60)]
    seq_len: usize,
    /// Stop after this many distinct differences (repeats of one are counted, not
    /// shrunk again).
    #[arg(long, default_value_t = 10)]
    max_diffs: usize,
    /// Replays allowed to shrink one difference.
    #[arg(long, default_value_t = 400)]
    shrink_budget: usize,
    /// Work directory (emptied first): node data and logs, `summary.txt`,
    /// `differences.txt`.
    #[arg(long, default_value = "target/difftest")]
    dir: PathBuf,
    /// Run the release build of zk-server.
    #[arg(long)]
    release: bool,
    /// Print every op with both systems' replies (to see what a seed does).
    #[arg(long)]
    print_ops: bool,
}

fn root_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

/// Starts a 3-node ensemble of `system` with the bench's `zoo.cfg` layout plus
/// [`EXTRA_CFG`].
fn launch(system: System, dir: &Path, base: u16, bin: &Path) -> Result<Ensemble> {
    let settings = Settings {
        tick_ms: 1000,
        init_limit: 10,
        sync_limit: 5,
        java_heap_mib: 512,
        extra_cfg: EXTRA_CFG,
    };
    Ensemble::launch(system, dir, base, bin, settings, Duration::from_secs(120))
}

/// One difference found.
struct Finding {
    /// Sequence number and op index where it first showed.
    seq: usize,
    at: usize,
    /// The minimal sequence and both systems' steps on it.
    ops: Vec<Op>,
    ours: Vec<Step>,
    theirs: Vec<Step>,
    replays: usize,
    exhausted: bool,
    /// Whether the last replay of the minimal sequence showed the difference again.
    reproduced: bool,
    /// How often the same kind of difference showed in the run.
    seen: usize,
    signature: String,
}

/// The class of a step: `Ok`, `Err(Code)` or `Err(multi Code`, and the types of the
/// events it brought.
fn class(step: &Step) -> String {
    let r = &step.reply;
    let head = if r.starts_with("Ok") {
        "Ok".to_owned()
    } else if let Some(rest) = r.strip_prefix("Err(multi ") {
        let code: String = rest.chars().take_while(|c| c.is_alphanumeric()).collect();
        format!("Err(multi {code})")
    } else {
        r.chars().take_while(|c| *c != ' ' && *c != ',').collect()
    };
    let mut kinds: Vec<&str> = step
        .events
        .iter()
        .filter_map(|(_, e)| e.split(' ').next())
        .collect();
    kinds.sort_unstable();
    if kinds.is_empty() {
        head
    } else {
        format!("{head} +events[{}]", kinds.join(","))
    }
}

/// The shape of a difference, to count repeats rather than shrink them again: the op
/// kind and both replies' classes (see [`class`]).
fn signature(op: &Op, ours: &Step, theirs: &Step) -> String {
    format!("{} | {} | {}", op.kind(), class(ours), class(theirs))
}

/// Replaces the replay's root by `<root>` for printing.
fn show(text: &str, root: &str) -> String {
    text.replace(root, "<root>")
}

fn render(f: &Finding, their_name: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "DIFFERENCE (sequence {}, op {}; seen {} time(s); minimal sequence of {} op(s) after {} replay(s){})",
        f.seq,
        f.at,
        f.seen,
        f.ops.len(),
        f.replays,
        if f.exhausted {
            ", shrink budget exhausted"
        } else {
            ""
        }
    );
    if !f.reproduced {
        let _ = writeln!(
            out,
            "  (the last replay of this sequence did not show it again: the difference comes and goes)"
        );
    }
    for (i, op) in f.ops.iter().enumerate() {
        let a = f.ours.get(i).map(Step::text).unwrap_or_default();
        let b = f.theirs.get(i).map(Step::text).unwrap_or_default();
        let _ = writeln!(out, "  #{i} {op}");
        if a == b {
            let _ = writeln!(out, "       both:    {a}");
        } else {
            let _ = writeln!(out, "    ! ours:    {a}");
            let _ = writeln!(out, "    ! {their_name:<7}  {b}");
        }
    }
    out
}

/// Runs `cargo xtask difftest`.
pub fn run(args: DifftestArgs) -> Result<()> {
    if args.ops == 0 {
        bail!("--ops must be at least 1");
    }
    if args.seq_len < 4 || args.seq_len > 10_000 {
        bail!("--seq-len must be 4..=10000");
    }
    let seed = args.seed.unwrap_or_else(clock_seed);
    eprintln!(
        "==> difftest: seed {seed}, {} ops (replay with: cargo xtask difftest --ops {} --seed {seed})",
        args.ops, args.ops
    );
    if args.against.is_none() && !Path::new("/usr/share/java/zookeeper.jar").exists() {
        bail!(
            "Apache ZooKeeper is not installed: `apt-get install zookeeper`, or give a \
             server with --against HOST:PORT"
        );
    }
    let dir = root_dir().join(&args.dir);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    let bin = crate::chaos::build_server(args.release)?;
    eprintln!("==> starting our ensemble ({})", dir.join("ours").display());
    let ours_ens = launch(System::Ours, &dir.join("ours"), OURS_BASE, &bin)?;
    let mut apache_ens = None;
    let mut session_ids: Vec<u32> = (1..=NODES).collect();
    let theirs = match &args.against {
        Some(addr) => Target {
            name: addr.clone(),
            servers: vec![addr.clone()],
            session_timeout: Duration::from_secs(20),
        },
        None => {
            eprintln!(
                "==> starting Apache ZooKeeper ({})",
                dir.join("apache").display()
            );
            let e = launch(System::Apache, &dir.join("apache"), APACHE_BASE, &bin)?;
            // Apache's leader answers `sync` without waiting for its own apply, so a
            // read after a sync there can miss a write acknowledged through another
            // server (seen here: a stale NoNode, a missing NodeDeleted). Sessions use
            // only the servers that follow in Apache's ensemble, the same ids in both
            // systems; `sync` on our leader is checked by `cargo xtask chaos`.
            let leader = e.leader();
            let ids: Vec<u32> = (1..=NODES).filter(|id| Some(*id) != leader).collect();
            eprintln!(
                "==> Apache's leader is node {}: sessions use nodes {ids:?} of both systems",
                leader.map_or_else(|| "?".to_owned(), |l| l.to_string())
            );
            session_ids = ids;
            let t = Target {
                name: "apache".into(),
                servers: session_ids
                    .iter()
                    .map(|id| e.client_addr(*id).to_string())
                    .collect(),
                session_timeout: Duration::from_secs(20),
            };
            apache_ens = Some(e);
            t
        }
    };
    let ours = Target {
        name: "ours".into(),
        servers: session_ids
            .iter()
            .map(|id| ours_ens.client_addr(*id).to_string())
            .collect(),
        session_timeout: Duration::from_secs(20),
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        rt.spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\n==> interrupted: stopping after this sequence");
                stop.store(true, Ordering::SeqCst);
            }
        });
    }
    let outcome = drive(&args, seed, &ours, &theirs, &rt, &stop, &dir);
    rt.shutdown_timeout(Duration::from_secs(5));
    drop(ours_ens);
    drop(apache_ens);
    let (summary, findings) = outcome?;
    println!("{summary}");
    fs::write(dir.join("summary.txt"), &summary)?;
    if stop.load(Ordering::SeqCst) {
        bail!("interrupted (seed {seed})");
    }
    if findings > 0 {
        bail!(
            "{findings} difference(s) between ours and {} (seed {seed}); see above and {}",
            theirs.name,
            dir.join("differences.txt").display()
        );
    }
    Ok(())
}

/// A short tag that keeps this run's roots apart from earlier runs' on a server that
/// is not fresh (`--against`).
fn run_tag(seed: u64) -> String {
    format!("{:x}", (clock_seed() ^ seed.rotate_left(17)) & 0xff_ffff)
}

fn replay_both(
    rt: &tokio::runtime::Runtime,
    ours: &Target,
    theirs: &Target,
    root: &str,
    ops: &[Op],
) -> Result<(Trace, Trace)> {
    rt.block_on(async {
        let (a, b) = tokio::join!(replay(ours, root, ops), replay(theirs, root, ops));
        Ok((a?, b?))
    })
}

#[allow(clippy::too_many_lines)]
fn drive(
    args: &DifftestArgs,
    seed: u64,
    ours: &Target,
    theirs: &Target,
    rt: &tokio::runtime::Runtime,
    stop: &AtomicBool,
    dir: &Path,
) -> Result<(String, usize)> {
    let started = Instant::now();
    let tag = run_tag(seed);
    let mut generator = Generator::new(seed);
    let mut kinds: BTreeMap<&'static str, usize> = BTreeMap::new();
    let (mut done, mut seq, mut sessions, mut events, mut replays) = (0usize, 0usize, 0, 0, 0);
    let mut findings: Vec<Finding> = Vec::new();
    let mut differing_sequences = 0usize;
    let mut diff_file = String::new();
    let bar = if std::io::stderr().is_terminal() {
        let b = ProgressBar::new(args.ops as u64);
        b.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} ops {msg}")
                .context("progress template")?
                .progress_chars("=> "),
        );
        Some(b)
    } else {
        None
    };
    let mut next_report = args.ops / 10;
    while done < args.ops && !stop.load(Ordering::SeqCst) {
        let len = generator
            .length(args.seq_len / 4, args.seq_len)
            .min(args.ops - done)
            .max(1);
        let ops = generator.sequence(len);
        let root = format!("/dt-{tag}-{seq}");
        let (a, b) = replay_both(rt, ours, theirs, &root, &ops)?;
        replays += 1;
        for op in &ops {
            *kinds.entry(op.kind()).or_default() += 1;
        }
        sessions += a.sessions;
        events += a.events.max(b.events);
        done += ops.len();
        if args.print_ops {
            let mut text = format!("sequence {seq} ({root}):\n");
            for (i, op) in ops.iter().enumerate() {
                let x = a.steps.get(i).map(Step::text).unwrap_or_default();
                let y = b.steps.get(i).map(Step::text).unwrap_or_default();
                let _ = writeln!(text, "  #{i} {op}\n       ours:   {}", show(&x, &root));
                if x != y {
                    let _ = writeln!(text, "     ! {:<7} {}", theirs.name, show(&y, &root));
                }
            }
            match &bar {
                Some(b) => b.println(text.trim_end()),
                None => eprint!("{text}"),
            }
        }
        if let Some(at) = first_difference(&a.steps, &b.steps) {
            differing_sequences += 1;
            let (Some(op), Some(sa), Some(sb)) = (ops.get(at), a.steps.get(at), b.steps.get(at))
            else {
                bail!("sequence {seq}: the systems answered a different number of ops");
            };
            let sig = signature(op, sa, sb);
            if let Some(f) = findings.iter_mut().find(|f| f.signature == sig) {
                f.seen += 1;
            } else {
                let msg = format!(
                    "sequence {seq}: difference at op {at} ({op}), shrinking\n    ours:    {}\n    {:<8} {}",
                    show(&sa.text(), &root),
                    theirs.name,
                    show(&sb.text(), &root)
                );
                match &bar {
                    Some(b) => b.println(&msg),
                    None => eprintln!("{msg}"),
                }
                let mut attempt = 0usize;
                let shrunk = shrink::shrink(&ops, at, args.shrink_budget, |cand| {
                    attempt += 1;
                    let root = format!("/dt-{tag}-{seq}-r{attempt}");
                    let (x, y) = replay_both(rt, ours, theirs, &root, cand)?;
                    Ok(first_difference(&x.steps, &y.steps))
                })?;
                replays += shrunk.replays;
                let root = format!("/dt-{tag}-{seq}-min");
                let (x, y) = replay_both(rt, ours, theirs, &root, &shrunk.ops)?;
                let fix = |steps: Vec<Step>| -> Vec<Step> {
                    steps
                        .into_iter()
                        .map(|s| Step {
                            reply: show(&s.reply, &root),
                            events: s
                                .events
                                .into_iter()
                                .map(|(i, e)| (i, show(&e, &root)))
                                .collect(),
                        })
                        .collect()
                };
                let reproduced = first_difference(&x.steps, &y.steps).is_some();
                let finding = Finding {
                    reproduced,
                    seq,
                    at,
                    ops: shrunk.ops,
                    ours: fix(x.steps),
                    theirs: fix(y.steps),
                    replays: shrunk.replays,
                    exhausted: shrunk.exhausted,
                    seen: 1,
                    signature: sig,
                };
                let text = render(&finding, &theirs.name);
                match &bar {
                    Some(b) => b.println(&text),
                    None => eprintln!("{text}"),
                }
                diff_file.push_str(&text);
                diff_file.push('\n');
                fs::write(dir.join("differences.txt"), &diff_file)?;
                findings.push(finding);
                if findings.len() >= args.max_diffs {
                    let msg = format!("{} distinct differences: stopping", findings.len());
                    match &bar {
                        Some(b) => b.println(&msg),
                        None => eprintln!("{msg}"),
                    }
                    break;
                }
            }
        }
        seq += 1;
        match &bar {
            Some(b) => {
                b.set_position(done as u64);
                b.set_message(format!("{} difference(s)", findings.len()));
            }
            None if done >= next_report => {
                eprintln!(
                    "{done}/{} ops, {} difference(s), {:.0} s",
                    args.ops,
                    findings.len(),
                    started.elapsed().as_secs_f64()
                );
                next_report = done + args.ops / 10;
            }
            None => {}
        }
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "difftest: seed {seed}, ours vs {}, {}",
        theirs.name,
        utc_now()
    );
    let _ = writeln!(
        s,
        "ops {done} in {seq} sequences ({} replays in all), sessions {sessions} per system, watch events compared {events}, {:.1} s",
        replays,
        started.elapsed().as_secs_f64()
    );
    let per_kind: Vec<String> = KINDS
        .iter()
        .map(|k| format!("{k} {}", kinds.get(k).copied().unwrap_or(0)))
        .collect();
    let _ = writeln!(s, "ops per kind: {}", per_kind.join(", "));
    if findings.is_empty() {
        let _ = writeln!(s, "differences: none");
    } else {
        let _ = writeln!(
            s,
            "differences: {} distinct, in {differing_sequences} of {seq} sequences (minimal sequences above and in differences.txt)",
            findings.len()
        );
        for f in &findings {
            let last = f.ops.last().map(ToString::to_string).unwrap_or_default();
            let _ = writeln!(
                s,
                "  seen {}x: minimal {} op(s), differs at: {last}",
                f.seen,
                f.ops.len()
            );
        }
    }
    Ok((s, findings.len()))
}

/// The current UTC time as `YYYY-MM-DD HH:MM:SS UTC` (from the `date` command).
fn utc_now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M:%S UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_ignore_paths_and_numbers_but_not_codes() {
        let op = Op::WhoAmI { s: 0 };
        let st = |r: &str| Step {
            reply: r.to_owned(),
            events: Vec::new(),
        };
        let a = signature(&op, &st("Ok(/dt-1-2/a z3)"), &st("Err(NoNode)"));
        let b = signature(&op, &st("Ok(/dt-9-7/b/c z12)"), &st("Err(NoNode)"));
        let c = signature(&op, &st("Ok(/dt-9-7/b/c z12)"), &st("Err(NodeExists)"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let m = |r: &str| class(&st(r));
        assert_eq!(
            m("Err(multi BadArguments at 0: [error BadArguments])"),
            m("Err(multi BadArguments at 2: [error Ok; error Ok; error BadArguments])")
        );
        let mut with_event = st("Ok(/a)");
        with_event.events.push((2, "NodeCreated /a".into()));
        assert_eq!(class(&with_event), "Ok +events[NodeCreated]");
        assert_ne!(class(&with_event), m("Ok(/a)"));
    }
}
