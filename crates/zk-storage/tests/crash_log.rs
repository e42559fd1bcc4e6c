//! Durability under `kill -9`: the test re-runs its own binary as a child that appends
//! batches to a sled txn log and prints each zxid once `sync` has returned; the parent
//! kills it at a random moment, reopens the log and checks that every printed zxid is
//! there, as part of a gap-free prefix (the idea of sled's `test_crash_recovery.rs`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use zk_storage::log::{SledLogOptions, SledTxnLog, TxnLog};

const CHILD_ENV: &str = "ZK_STORAGE_CRASH_CHILD_DIR";
const SEED_ENV: &str = "ZK_STORAGE_CRASH_SEED";
const TEST_NAME: &str = "flushed_txns_survive_kill_9";
/// Marks the child's own lines (libtest may print on the same line first).
const MARK: &str = "@crash@ ";
const ROUNDS: u64 = 4;
/// The child stops on its own after this long, should the parent fail to kill it.
const CHILD_DEADLINE: Duration = Duration::from_secs(20);

fn options() -> SledLogOptions {
    SledLogOptions {
        cache_capacity_bytes: 8 * 1024 * 1024,
    }
}

/// The payload of a zxid: 100 bytes derived from it, so a reopened log can be checked.
fn payload(zxid: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(100);
    while out.len() < 100 {
        out.extend_from_slice(&zxid.to_le_bytes());
    }
    out.truncate(100);
    out
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn child(dir: &Path, seed: u64) -> Result<()> {
    let mut rng = XorShift(seed | 1);
    let mut log = SledTxnLog::open(dir, options())?;
    let mut last = log.last_zxid()?.unwrap_or(0);
    println!("{MARK}opened {last}");
    let started = Instant::now();
    while started.elapsed() < CHILD_DEADLINE {
        let n = 1 + rng.below(64) as i64;
        let zxids: Vec<i64> = (last + 1..=last + n).collect();
        let payloads: Vec<Vec<u8>> = zxids.iter().map(|z| payload(*z)).collect();
        let batch: Vec<(i64, &[u8])> = zxids
            .iter()
            .zip(&payloads)
            .map(|(z, p)| (*z, p.as_slice()))
            .collect();
        log.append_batch(&batch)?;
        let durable = log.sync()?.context("a durable zxid after sync")?;
        println!("{MARK}durable {durable}");
        last = durable;
    }
    Ok(())
}

/// The argument of a child event line `MARK name arg`, wherever the mark is in the line.
fn event<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let (_, rest) = line.split_once(MARK)?;
    rest.strip_prefix(name)?.strip_prefix(' ')
}

fn check_log(dir: &Path, acknowledged: i64) -> Result<i64> {
    let log = SledTxnLog::open(dir, options())?;
    let mut expected = 1i64;
    for record in log.read_from(0)? {
        let record = record?;
        ensure!(
            record.zxid == expected,
            "gap: found zxid {} where {expected} was expected",
            record.zxid
        );
        ensure!(
            record.payload == payload(record.zxid),
            "payload of {} differs",
            record.zxid
        );
        expected += 1;
    }
    let last = expected - 1;
    ensure!(
        last >= acknowledged,
        "acknowledged zxid {acknowledged} was lost: the log ends at {last}"
    );
    Ok(last)
}

#[test]
fn flushed_txns_survive_kill_9() -> Result<()> {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let seed: u64 = std::env::var(SEED_ENV)?.parse()?;
        return child(Path::new(&dir), seed);
    }
    let seed = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
    eprintln!("crash test seed {seed}");
    let mut rng = XorShift(seed | 1);
    let dir = tempfile::tempdir()?;
    let log_dir = dir.path().join("log");
    let mut acknowledged = 0i64;
    let mut total_acks = 0u64;
    for round in 0..ROUNDS {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &log_dir)
            .env(SEED_ENV, rng.next().to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().context("child stdout")?;
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait until the child has opened the log (libtest prints its own lines first),
        // then let it run a random while.
        let mut lines = Vec::new();
        let start_deadline = Instant::now() + Duration::from_secs(10);
        while !lines.iter().any(|l: &String| event(l, "opened").is_some()) {
            let left = start_deadline
                .checked_duration_since(Instant::now())
                .context("the child did not open the log in time")?;
            lines.push(rx.recv_timeout(left).context("the child did not start")?);
        }
        let run_for = Duration::from_millis(100 + rng.below(400));
        let deadline = Instant::now() + run_for;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("round {round}: the child exited before it was killed: {lines:?}")
                }
            }
        }
        child.kill()?; // SIGKILL
        child.wait()?;
        lines.extend(rx.iter());
        reader.join().ok().context("reader thread")?;

        let opened_at: i64 = lines
            .iter()
            .find_map(|l| event(l, "opened")?.parse().ok())
            .context("no `opened` line")?;
        ensure!(
            opened_at >= acknowledged,
            "round {round}: the child reopened at {opened_at}, below the acknowledged {acknowledged}"
        );
        for line in &lines {
            if let Some(z) = event(line, "durable") {
                let z: i64 = z.parse()?;
                ensure!(z > acknowledged, "acknowledgements go up");
                acknowledged = z;
                total_acks += 1;
            }
        }
        let last = check_log(&log_dir, acknowledged)
            .with_context(|| format!("round {round}, seed {seed}"))?;
        eprintln!(
            "round {round}: killed after {run_for:?}, acknowledged up to {acknowledged}, log ends at {last}"
        );
        acknowledged = acknowledged.max(last);
    }
    ensure!(
        total_acks > 0,
        "no batch was acknowledged in {ROUNDS} rounds"
    );
    Ok(())
}
