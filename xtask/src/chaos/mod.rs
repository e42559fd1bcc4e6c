//! `cargo xtask chaos`: a local ensemble of real `zk-server` processes under a seeded
//! nemesis (kill -9 and restart, SIGSTOP pauses, iptables partitions) while clients run
//! reads, writes, compare-and-sets and creates; afterwards the history is checked for
//! linearizability per register, acknowledged creates and sets are looked up, and every
//! node must end with the same zxid and tree.
//!
//! A register the checker cannot decide within `--max-steps` in a debug build (long
//! runs) is checked again by a release build of xtask with twenty times the steps.
//!
//! Everything is left in the run's directory: `history.txt` (one line per operation:
//! call and return times in ns, client, what and how it ended), `summary.txt`, and
//! `nodeI/zk.log` for every node.

pub mod checker;
pub mod ensemble;
pub mod nemesis;
pub mod workload;

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use zk_proto::data::{Acl, CreateMode, ErrorCode};
use zk_server::client::{Client, Error as ZkError};

use checker::{Op, Operation, Outcome, State, Verdict};
use ensemble::{Ensemble, Ports};
use nemesis::{Firewall, NemesisConfig};
use workload::{EPH, History, KeyOp, REG, ROOT, SEQ, WorkloadConfig, key_path};

/// `cargo xtask chaos` arguments.
#[derive(Args)]
pub struct ChaosArgs {
    /// Number of nodes (3 or 5; 1 and 7 work too).
    #[arg(long, default_value_t = 5)]
    nodes: u32,
    /// How long clients and nemesis run (`30s`, `2m`, or seconds); at most 1 hour.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Seed of the nemesis schedule and the clients' choices (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Number of clients (spread over the nodes), at most 100.
    #[arg(long, default_value_t = 10)]
    clients: u32,
    /// Number of registers the clients share.
    #[arg(long, default_value_t = 3)]
    keys: usize,
    /// tickTime of the nodes, in ms (sessions may last 2 to 20 ticks).
    #[arg(long, default_value_t = 500)]
    tick_ms: u32,
    /// Session timeout the clients ask for, in ms.
    #[arg(long, default_value_t = 4000)]
    session_timeout_ms: u64,
    /// First client port (node i: 127.0.0.i, base + i - 1); quorum, election and admin
    /// ports follow at +700, +1700 and +2700.
    #[arg(long, default_value_t = 24181)]
    client_base: u16,
    /// Work directory (emptied first); history and node logs stay there.
    #[arg(long, default_value = "target/chaos")]
    dir: PathBuf,
    /// Run the release build of zk-server.
    #[arg(long)]
    release: bool,
    /// Skip partitions even when iptables is usable.
    #[arg(long)]
    no_partitions: bool,
    /// Read without `sync` first: ZooKeeper does not promise these are linearizable,
    /// so a run with faults is expected to report stale reads (checks the checker).
    #[arg(long)]
    reads_without_sync: bool,
    /// Only check a `history.txt` left by an earlier run (no ensemble is started).
    #[arg(long, value_name = "FILE")]
    check_history: Option<PathBuf>,
    /// Search steps allowed per register before the checker answers "undecided".
    #[arg(long, default_value_t = checker::MAX_STEPS)]
    max_steps: u64,
}

/// Parses `30s`, `2m`, `500ms` or a plain number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult_ms) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else {
        (s, 1000)
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("not a duration: {s:?}"))?;
    let ms = n
        .checked_mul(mult_ms)
        .filter(|&ms| ms <= 3_600_000)
        .ok_or_else(|| format!("{s:?} is longer than an hour"))?;
    Ok(Duration::from_millis(ms))
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

pub(crate) fn build_server(release: bool) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args([
        "build",
        "--quiet",
        "--package",
        "zk-server",
        "--bin",
        "zk-server",
    ]);
    if release {
        cmd.arg("--release");
    }
    if !cmd.status().context("running cargo build")?.success() {
        bail!("building zk-server failed");
    }
    let bin = crate::cluster::target_dir()?
        .join(if release { "release" } else { "debug" })
        .join("zk-server");
    if !bin.exists() {
        bail!("{} is missing after the build", bin.display());
    }
    Ok(bin)
}

/// Runs a chaos test; `Err` on any violation (after printing the summary).
pub fn run(args: ChaosArgs) -> Result<()> {
    if args.clients == 0 || args.clients > 100 {
        bail!("--clients must be 1..=100");
    }
    if args.keys == 0 || args.keys > 64 {
        bail!("--keys must be 1..=64");
    }
    if let Some(file) = &args.check_history {
        return check_history_file(file, args.max_steps);
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let dir = root().join(&args.dir);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    eprintln!(
        "==> chaos: seed {seed}, {} nodes, {:?}",
        args.nodes, args.duration
    );
    let bin = build_server(args.release)?;
    let fw = Arc::new(if args.no_partitions {
        Firewall::disabled("--no-partitions")
    } else {
        Firewall::new()
    });
    if let Some(why) = &fw.disabled_because {
        eprintln!("==> partitions skipped: {why}");
    }
    let ports = Ports {
        client: args.client_base,
        quorum: args.client_base.wrapping_add(700),
        election: args.client_base.wrapping_add(1700),
        admin: args.client_base.wrapping_add(2700),
    };
    let mut ens = Ensemble::new(&dir, args.nodes, ports, args.tick_ms, bin)?;
    for id in 1..=args.nodes {
        ens.start(id)?;
    }
    ens.wait_ready(Duration::from_secs(60))?;
    eprintln!("==> ensemble ready in {}", dir.display());
    let ens = Arc::new(Mutex::new(ens));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        rt.spawn(async move {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            eprintln!("\n==> interrupted: healing and stopping");
            stop.store(true, Ordering::SeqCst);
        });
    }
    // Bounded as a whole: the run, healing (90 s), the ephemeral wait and the checks.
    let limit = args.duration + Duration::from_secs(600);
    let outcome = rt.block_on(async {
        let run = drive(&args, seed, &dir, ens.clone(), fw.clone(), stop.clone());
        match tokio::time::timeout(limit, run).await {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!("the run did not finish within {limit:?}")),
        }
    });
    // Whatever happened: no rule stays, every node stops (the guards do it on drop too).
    fw.heal();
    rt.shutdown_timeout(Duration::from_secs(5));
    if let Ok(mut e) = ens.lock() {
        e.shutdown();
    }
    drop(fw);
    let report = outcome?;
    println!("{report}");
    std::fs::write(dir.join("summary.txt"), &report)?;
    if stop.load(Ordering::SeqCst) {
        bail!("interrupted (seed {seed}); history in {}", dir.display());
    }
    if report.contains("VIOLATION") {
        bail!(
            "violations found (seed {seed}); history and node logs in {}",
            dir.display()
        );
    }
    Ok(())
}

/// A client on node `id` only, retried for up to `limit`.
async fn node_client(ens: &Arc<Mutex<Ensemble>>, id: u32, limit: Duration) -> Result<Client> {
    let addr = ens
        .lock()
        .map_err(|_| anyhow::anyhow!("lock"))?
        .client_addr(id);
    let deadline = Instant::now() + limit;
    loop {
        match Client::builder(addr.to_string())
            .session_timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(3))
            .connect()
            .await
        {
            Ok((c, _)) => return Ok(c),
            Err(e) if Instant::now() > deadline => {
                bail!("no session on node{id} ({addr}) within {limit:?}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

async fn create_if_absent(c: &Client, path: &str, data: &[u8]) -> Result<()> {
    match c
        .create(path, data, &Acl::open_unsafe(), CreateMode::Persistent)
        .await
    {
        Ok(_) | Err(ZkError::Keeper(ErrorCode::NodeExists)) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating {path}")),
    }
}

/// 64-bit FNV-1a.
fn fnv(hash: &mut u64, bytes: &[u8]) {
    for b in bytes {
        *hash ^= u64::from(*b);
        *hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
}

/// A digest of the tree under [`ROOT`] as one node serves it (paths, data, versions,
/// ephemeral owners), and the number of znodes.
async fn tree_digest(c: &Client) -> Result<(u64, usize)> {
    c.sync(ROOT).await?;
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut todo = vec![ROOT.to_owned()];
    let mut count = 0usize;
    while let Some(path) = todo.pop() {
        count += 1;
        if count > 1_000_000 {
            bail!("more than a million znodes under {ROOT}");
        }
        let (data, stat) = c.get_data(&path, false).await?;
        fnv(&mut hash, path.as_bytes());
        fnv(&mut hash, &[0]);
        fnv(&mut hash, data.as_deref().unwrap_or(b"<null>"));
        fnv(&mut hash, &stat.version.to_le_bytes());
        fnv(&mut hash, &stat.ephemeral_owner.to_le_bytes());
        let mut kids = c.get_children(&path, false).await?;
        kids.sort();
        for k in kids.into_iter().rev() {
            todo.push(format!("{path}/{k}"));
        }
    }
    Ok((hash, count))
}

async fn drive(
    args: &ChaosArgs,
    seed: u64,
    dir: &Path,
    ens: Arc<Mutex<Ensemble>>,
    fw: Arc<Firewall>,
    stop: Arc<AtomicBool>,
) -> Result<String> {
    let nodes = args.nodes;
    // The test tree.
    {
        let c = node_client(&ens, 1, Duration::from_secs(30)).await?;
        for p in [ROOT, REG, SEQ, EPH] {
            create_if_absent(&c, p, b"").await?;
        }
        for k in 0..args.keys {
            create_if_absent(&c, &key_path(k), b"0").await?;
        }
        let _ = c.close().await;
    }

    let started = Instant::now();
    let until = started + args.duration;
    let session_timeout = Duration::from_millis(args.session_timeout_ms);
    let history = Arc::new(Mutex::new(History::default()));
    let cfg = WorkloadConfig {
        keys: args.keys,
        session_timeout,
        op_timeout: Duration::from_secs(5),
        think: Duration::from_millis(10),
        started,
        until,
        sync_reads: !args.reads_without_sync,
        stop: stop.clone(),
    };
    let mut tasks = Vec::new();
    for i in 0..args.clients {
        let node = i % nodes + 1;
        let addr = ens
            .lock()
            .map_err(|_| anyhow::anyhow!("lock"))?
            .client_addr(node);
        tasks.push(tokio::spawn(workload::client_loop(
            i + 1,
            addr.to_string(),
            seed,
            cfg.clone(),
            history.clone(),
        )));
    }
    let nem = {
        let cfg = NemesisConfig {
            seed,
            until,
            session_timeout,
            started,
        };
        let (ens, fw, stop) = (ens.clone(), fw.clone(), stop.clone());
        std::thread::spawn(move || nemesis::run(cfg, ens, fw, stop))
    };
    for t in tasks {
        let _ = t.await;
    }
    let faults = tokio::task::spawn_blocking(move || nem.join())
        .await
        .ok()
        .and_then(|r| r.ok())
        .unwrap_or_default();
    let run_s = started.elapsed().as_secs_f64();
    // The history so far, in case a later step fails (rewritten with the final reads).
    if let Ok(h) = history.lock() {
        std::fs::write(dir.join("history.txt"), &h.log)?;
    }

    let mut report = String::new();
    let mut violations: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    if stop.load(Ordering::SeqCst) {
        return Ok(format!("interrupted after {run_s:.1} s (seed {seed})"));
    }

    // Heal and wait for the ensemble to come back.
    fw.heal();
    {
        let ens = ens.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let mut e = ens.lock().map_err(|_| anyhow::anyhow!("lock"))?;
            e.heal()?;
            e.wait_ready(Duration::from_secs(90))
        })
        .await??;
    }
    let healed_at = Instant::now();

    // One client per node for the final checks.
    let mut finals = Vec::new();
    for id in 1..=nodes {
        finals.push((id, node_client(&ens, id, Duration::from_secs(30)).await?));
    }

    // Final reads of every register on every node, as part of the history.
    let final_client_base = 1000;
    for (id, c) in &finals {
        for k in 0..args.keys {
            let call = started.elapsed().as_nanos() as u64;
            let path = key_path(k);
            let res = async {
                c.sync(&path).await?;
                c.get_data(&path, false).await
            }
            .await;
            let ret = started.elapsed().as_nanos() as u64;
            match res {
                Ok((data, stat)) => {
                    let value = workload::decode(data.as_deref()).unwrap_or(i64::MIN);
                    if let Ok(mut h) = history.lock() {
                        let _ = writeln!(
                            h.log,
                            "{call} {ret} final-node{id} read k{k} -> {value}@{}",
                            stat.version
                        );
                        h.ops.push(KeyOp {
                            key: k,
                            op: Operation {
                                client: final_client_base + id,
                                call,
                                ret,
                                op: Op::Read {
                                    value,
                                    version: stat.version,
                                },
                                outcome: Outcome::Ok,
                            },
                            error: None,
                        });
                    }
                }
                Err(e) => violations.push(format!(
                    "VIOLATION: final read of {path} on healed node{id} failed: {e}"
                )),
            }
        }
    }

    // Acknowledged sequential creates: unique names, all present.
    let (seq_created, seq_unknown, eph_created, expired, opened) = {
        let h = history
            .lock()
            .map_err(|_| anyhow::anyhow!("history lock"))?;
        (
            h.seq_created.clone(),
            h.seq_unknown,
            h.eph_created.len(),
            h.expired_sessions.len(),
            h.sessions_opened,
        )
    };
    let mut seen = HashSet::new();
    for (client, p) in &seq_created {
        if !seen.insert(p.clone()) {
            violations.push(format!(
                "VIOLATION: sequential name {p} acknowledged twice (again to client {client})"
            ));
        }
    }
    if let Some((_, c)) = finals.first() {
        c.sync(SEQ).await?;
        let present: HashSet<String> = c
            .get_children(SEQ, false)
            .await?
            .into_iter()
            .map(|k| format!("{SEQ}/{k}"))
            .collect();
        let missing: Vec<&String> = seen.iter().filter(|p| !present.contains(*p)).collect();
        if !missing.is_empty() {
            violations.push(format!(
                "VIOLATION: {} acknowledged sequential creates are missing, e.g. {:?}",
                missing.len(),
                missing.iter().take(5).collect::<Vec<_>>()
            ));
        }
        let extra = present.len().saturating_sub(seen.len());
        if extra > seq_unknown {
            violations.push(format!(
                "VIOLATION: {extra} sequential znodes nobody created (only {seq_unknown} creates had an unknown outcome)"
            ));
        }
    }

    // Ephemerals: every client session is closed or expired by now; wait for the
    // expired ones to be reaped.
    if let Some((_, c)) = finals.first() {
        let deadline = Instant::now() + session_timeout * 3 + Duration::from_secs(10);
        loop {
            c.sync(EPH).await?;
            let left = c.get_children(EPH, false).await?;
            if left.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                let mut owners = Vec::new();
                for k in left.iter().take(5) {
                    let owner = c
                        .exists(&format!("{EPH}/{k}"), false)
                        .await?
                        .map(|s| s.ephemeral_owner);
                    owners.push(format!("{k} (owner {:#x})", owner.unwrap_or(0)));
                }
                violations.push(format!(
                    "VIOLATION: {} ephemerals outlive their ended sessions, e.g. {owners:?}",
                    left.len()
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    // Convergence: same zxid everywhere, then the same tree.
    let zxids = {
        let ens = ens.clone();
        tokio::task::spawn_blocking(move || -> Vec<String> {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let z: Vec<String> = match ens.lock() {
                    Ok(e) => (1..=nodes).map(|id| e.srvr(id).1).collect(),
                    Err(_) => Vec::new(),
                };
                let same = z
                    .first()
                    .is_some_and(|f| !f.is_empty() && z.iter().all(|x| x == f));
                if same || Instant::now() > deadline {
                    return z;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        })
        .await?
    };
    let zxid_ok = zxids
        .first()
        .is_some_and(|f| !f.is_empty() && zxids.iter().all(|x| x == f));
    if !zxid_ok {
        violations.push(format!(
            "VIOLATION: nodes did not converge on one zxid: {zxids:?}"
        ));
    }
    let mut digests = BTreeMap::new();
    for (id, c) in &finals {
        match tree_digest(c).await {
            Ok(d) => {
                digests.insert(*id, d);
            }
            Err(e) => violations.push(format!("VIOLATION: reading the tree on node{id}: {e:#}")),
        }
    }
    let distinct: HashSet<u64> = digests.values().map(|d| d.0).collect();
    if distinct.len() > 1 {
        violations.push(format!(
            "VIOLATION: nodes serve different trees: {}",
            digests
                .iter()
                .map(|(id, (h, n))| format!("node{id}={h:016x} ({n} znodes)"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for (_, c) in &finals {
        let _ = c.close().await;
    }
    let converge_s = healed_at.elapsed().as_secs_f64();

    // Linearizability per register.
    let (ops, completed, unknown, log) = {
        let h = history
            .lock()
            .map_err(|_| anyhow::anyhow!("history lock"))?;
        (h.ops.clone(), h.completed, h.unknown, h.log.clone())
    };
    std::fs::write(dir.join("history.txt"), &log)?;
    let mut verdicts = Vec::new();
    for k in 0..args.keys {
        let hist: Vec<Operation> = ops.iter().filter(|o| o.key == k).map(|o| o.op).collect();
        let max_steps = args.max_steps;
        let t = Instant::now();
        let init = State {
            value: 0,
            version: 0,
        };
        let verdict =
            tokio::task::spawn_blocking(move || checker::check(&hist, init, max_steps)).await?;
        let took = t.elapsed().as_secs_f64();
        match &verdict {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable { stuck_at, blocking } => {
                let blocking_op = blocking
                    .and_then(|b| ops.iter().filter(|o| o.key == k).nth(b))
                    .map(|o| format!("{:?} {}", o.op, o.error.as_deref().unwrap_or("")))
                    .unwrap_or_default();
                violations.push(format!(
                    "VIOLATION: {} is not linearizable (deepest attempt linearized {stuck_at} ops, then could not explain {blocking_op})",
                    key_path(k)
                ));
            }
            Verdict::Undecided { steps } => notes.push(format!(
                "{}: undecided after {steps} search steps",
                key_path(k)
            )),
        }
        verdicts.push((k, verdict, took));
    }

    // A debug build checks about thirty times slower than a release build: a long run's
    // registers can come out undecided here and be decided there.
    let undecided: Vec<usize> = verdicts
        .iter()
        .filter(|(_, v, _)| matches!(v, Verdict::Undecided { .. }))
        .map(|(k, _, _)| *k)
        .collect();
    if !undecided.is_empty() && cfg!(debug_assertions) {
        let steps = args.max_steps.saturating_mul(RELEASE_STEPS_FACTOR);
        let history_file = dir.join("history.txt");
        let out =
            tokio::task::spawn_blocking(move || recheck_in_release(&history_file, steps)).await?;
        match out {
            Ok(lines) => {
                for k in undecided {
                    let path = key_path(k);
                    let Some(line) = lines.iter().find(|l| l.starts_with(&format!("{path}:")))
                    else {
                        notes.push(format!("{path}: the release re-check did not report it"));
                        continue;
                    };
                    notes.push(format!(
                        "re-checked by the release build ({steps} steps): {line}"
                    ));
                    if line.contains("NotLinearizable") {
                        violations.push(format!(
                            "VIOLATION: {path} is not linearizable (release re-check: {line})"
                        ));
                    }
                }
            }
            Err(e) => notes.push(format!("the release re-check failed: {e:#}")),
        }
    }

    let _ = writeln!(report, "chaos summary (seed {seed})");
    let _ = writeln!(
        report,
        "  nodes {nodes}, clients {}, registers {}, ran {run_s:.1} s; partitions {}",
        args.clients,
        args.keys,
        if fw.enabled() {
            "on".to_owned()
        } else {
            format!(
                "skipped ({})",
                fw.disabled_because.clone().unwrap_or_default()
            )
        }
    );
    let _ = writeln!(
        report,
        "  ops: {completed} answered, {unknown} unknown; {} register ops checked; sessions opened {opened}, expired {expired}",
        ops.len()
    );
    let _ = writeln!(
        report,
        "  creates acknowledged: {} sequential ({seq_unknown} unknown), {eph_created} ephemeral",
        seq_created.len()
    );
    let _ = writeln!(report, "  faults ({}):", faults.len());
    for f in &faults {
        let _ = writeln!(
            report,
            "    [{:>6.1}s +{:>4.1}s] {}",
            f.at_s, f.held_s, f.what
        );
    }
    let _ = writeln!(
        report,
        "  after healing: checks took {converge_s:.1} s; zxids {zxids:?}"
    );
    for (id, (h, n)) in &digests {
        let _ = writeln!(report, "    node{id}: tree digest {h:016x} over {n} znodes");
    }
    for (k, v, took) in &verdicts {
        let _ = writeln!(report, "  {}: {v:?} ({took:.2} s)", key_path(*k));
    }
    for n in &notes {
        let _ = writeln!(report, "  note: {n}");
    }
    if violations.is_empty() {
        let _ = writeln!(report, "  result: no violation found");
    } else {
        for v in &violations {
            let _ = writeln!(report, "  {v}");
        }
    }
    let _ = writeln!(report, "  history and node logs: {}", dir.display());
    Ok(report)
}

/// How many more search steps the release re-check of an undecided register gets.
const RELEASE_STEPS_FACTOR: u64 = 20;

/// Runs `chaos --check-history FILE --max-steps STEPS` in a release build of xtask and
/// returns its verdict lines (one per register).
fn recheck_in_release(history: &Path, steps: u64) -> Result<Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("==> a register is undecided: re-checking the history with a release build");
    let out = Command::new(&cargo)
        .args(["run", "--quiet", "--release", "--package", "xtask", "--"])
        .arg("chaos")
        .arg("--check-history")
        .arg(history)
        .arg("--max-steps")
        .arg(steps.to_string())
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running the release checker")?;
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    if lines.is_empty() {
        bail!("the release checker printed nothing ({})", out.status);
    }
    Ok(lines)
}

/// Parses one register line of `history.txt` into (key, operation); `None` for other
/// lines (creates) and malformed ones.
fn parse_history_line(line: &str) -> Option<(usize, Operation)> {
    let mut w = line.split_whitespace();
    let call: u64 = w.next()?.parse().ok()?;
    let ret: u64 = w.next()?.parse().ok()?;
    let who = w.next()?;
    let client: u32 = match who.strip_prefix("final-node") {
        Some(n) => 1000 + n.parse::<u32>().ok()?,
        None => who.strip_prefix('c')?.parse().ok()?,
    };
    let kind = w.next()?;
    let key: usize = w.next()?.strip_prefix('k')?.parse().ok()?;
    let rest: Vec<&str> = w.collect();
    let outcome = match rest
        .iter()
        .find(|t| matches!(**t, "ok" | "failed" | "unknown"))
    {
        Some(&"unknown") => Outcome::Unknown,
        Some(&"failed") => Outcome::Failed,
        _ => Outcome::Ok,
    };
    let at_version = |t: &str| t.strip_prefix('@').and_then(|v| v.parse::<i32>().ok());
    let new_version = rest.last().and_then(|t| at_version(t));
    let op = match kind {
        "read" => {
            if outcome != Outcome::Ok {
                Op::Read {
                    value: 0,
                    version: 0,
                }
            } else {
                let (value, version) = rest.get(1)?.split_once('@')?;
                Op::Read {
                    value: value.parse().ok()?,
                    version: version.parse().ok()?,
                }
            }
        }
        "write" => Op::Write {
            value: rest.first()?.parse().ok()?,
            new_version,
        },
        "cas" => {
            let (expected, value) = rest.first()?.split_once("->")?;
            Op::Cas {
                expected: expected.parse().ok()?,
                value: value.parse().ok()?,
                new_version,
            }
        }
        _ => return None,
    };
    let ret = if outcome == Outcome::Unknown {
        u64::MAX
    } else {
        ret
    };
    Some((
        key,
        Operation {
            client,
            call,
            ret,
            op,
            outcome,
        },
    ))
}

/// `--check-history`: runs the checker over a saved history, per register.
fn check_history_file(file: &Path, max_steps: u64) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let mut per_key: BTreeMap<usize, Vec<Operation>> = BTreeMap::new();
    for (key, op) in text.lines().filter_map(parse_history_line) {
        per_key.entry(key).or_default().push(op);
    }
    let mut bad = 0;
    for (key, ops) in &per_key {
        let t = Instant::now();
        let init = State {
            value: 0,
            version: 0,
        };
        let verdict = checker::check(ops, init, max_steps);
        println!(
            "{}: {} ops: {verdict:?} ({:.2} s)",
            key_path(*key),
            ops.len(),
            t.elapsed().as_secs_f64()
        );
        if matches!(verdict, Verdict::NotLinearizable { .. }) {
            bad += 1;
        }
    }
    if bad > 0 {
        bail!("{bad} registers are not linearizable");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_lines_parse_back_into_operations() {
        let p = |l: &str| parse_history_line(l).map(|(k, o)| (k, o.client, o.op, o.outcome));
        assert_eq!(
            p("6982277 10906944 c5 read k1 -> 7@3"),
            Some((
                1,
                5,
                Op::Read {
                    value: 7,
                    version: 3
                },
                Outcome::Ok
            ))
        );
        assert_eq!(
            p("8480972 14768968 c1 cas k0 0->1000000001 ok @1"),
            Some((
                0,
                1,
                Op::Cas {
                    expected: 0,
                    value: 1000000001,
                    new_version: Some(1)
                },
                Outcome::Ok
            ))
        );
        assert_eq!(
            p("25014369 27313382 c1 cas k2 0->1000000002 failed BadVersion").map(|x| x.3),
            Some(Outcome::Failed)
        );
        let unknown = parse_history_line(
            "3276847227 5789509867 c9 write k2 9000000219 unknown ConnectionLoss",
        );
        assert_eq!(
            unknown.map(|(k, o)| (k, o.op, o.outcome, o.ret)),
            Some((
                2,
                Op::Write {
                    value: 9000000219,
                    new_version: None
                },
                Outcome::Unknown,
                u64::MAX
            ))
        );
        assert_eq!(
            p("63278519288 63279270904 final-node1 read k0 -> 3000002516@2024"),
            Some((
                0,
                1001,
                Op::Read {
                    value: 3000002516,
                    version: 2024
                },
                Outcome::Ok
            ))
        );
        assert_eq!(
            p("4678576 10464767 c10 create-seq ok /chaos/seq/s-0000000000"),
            None
        );
        assert_eq!(p("garbage"), None);
    }

    #[test]
    fn durations_parse_with_units_and_are_bounded() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("2h").is_err());
        assert!(parse_duration("61m").is_err());
        assert!(parse_duration("x").is_err());
    }

    #[test]
    fn fnv_digest_depends_on_every_byte() {
        let mut a = 0xcbf2_9ce4_8422_2325u64;
        let mut b = a;
        fnv(&mut a, b"/chaos/reg/k0");
        fnv(&mut b, b"/chaos/reg/k1");
        assert_ne!(a, b);
    }
}
