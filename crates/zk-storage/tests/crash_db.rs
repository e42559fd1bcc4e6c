//! `ZkDatabase` under `kill -9`: a child process appends and applies batches of creates,
//! takes background snapshots and purges old ones, printing each zxid once `sync` has
//! returned; the parent kills it at a random moment, reopens the database and checks that
//! it opens (no half snapshot, no broken log) and that every acknowledged txn is in the
//! tree.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use zk_proto::data::OpCode;
use zk_proto::txn::{Txn, TxnEntry, TxnHeader};
use zk_proto::zxid::{Zxid, make};
use zk_storage::db::{DbOptions, ZkDatabase};

const CHILD_ENV: &str = "ZK_STORAGE_DB_CRASH_CHILD_DIR";
const SEED_ENV: &str = "ZK_STORAGE_DB_CRASH_SEED";
const TEST_NAME: &str = "acknowledged_txns_survive_kill_9_with_snapshots";
/// Marks the child's own lines (libtest may print on the same line first).
const MARK: &str = "@dbcrash@ ";
const ROUNDS: u64 = 3;
/// The child stops on its own after this long, should the parent fail to kill it.
const CHILD_DEADLINE: Duration = Duration::from_secs(20);
/// A snapshot is started every this many batches.
const SNAPSHOT_EVERY: u64 = 20;

fn options() -> DbOptions {
    let mut o = DbOptions::default();
    o.log.cache_capacity_bytes = 8 * 1024 * 1024;
    o.snap_retain_count = 2;
    o
}

fn path_of(zxid: Zxid) -> String {
    format!("/c{zxid:x}")
}

fn create(zxid: Zxid) -> TxnEntry {
    TxnEntry {
        header: TxnHeader {
            client_id: 1,
            cxid: 1,
            zxid,
            time: 0,
            op: OpCode::Create,
        },
        txn: Txn::Create {
            path: path_of(zxid),
            data: Some(vec![0xab; 64]),
            acl: vec![],
            ephemeral: false,
            parent_cversion: -1,
        },
    }
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
    let mut db = ZkDatabase::open(dir, options())?;
    let mut last = db.last_logged_zxid();
    // Each run is a new epoch, as after an election.
    let epoch = zk_proto::zxid::epoch_of(last) + 1;
    println!("{MARK}opened {last}");
    let started = Instant::now();
    let mut batches = 0u64;
    let mut next = make(epoch, 1);
    while started.elapsed() < CHILD_DEADLINE {
        let n = 1 + rng.below(32) as i64;
        let entries: Vec<TxnEntry> = (next..next + n).map(create).collect();
        let encoded: Vec<Vec<u8>> = entries.iter().map(TxnEntry::encode).collect();
        let batch: Vec<(Zxid, &[u8])> = entries
            .iter()
            .zip(&encoded)
            .map(|(e, b)| (e.header.zxid, b.as_slice()))
            .collect();
        let durable = db.append_and_sync(&batch)?;
        println!("{MARK}durable {durable}");
        for e in &entries {
            db.apply(e)?;
        }
        last = durable;
        next = last + 1;
        batches += 1;
        if let Some(done) = db.poll_snapshot() {
            done?;
            db.purge()?;
        }
        if batches.is_multiple_of(SNAPSHOT_EVERY) {
            db.begin_snapshot()?;
        }
    }
    Ok(())
}

#[test]
fn acknowledged_txns_survive_kill_9_with_snapshots() -> Result<()> {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let seed: u64 = std::env::var(SEED_ENV)?.parse()?;
        return child(Path::new(&dir), seed);
    }
    let seed = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
    eprintln!("db crash test seed {seed}");
    let mut rng = XorShift(seed | 1);
    let dir = tempfile::tempdir()?;
    let db_dir = dir.path().join("data");
    let mut acknowledged: Vec<Zxid> = Vec::new();
    for round in 0..ROUNDS {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &db_dir)
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
        let mut lines = Vec::new();
        let start_deadline = Instant::now() + Duration::from_secs(10);
        while !lines.iter().any(|l: &String| event(l, "opened").is_some()) {
            let left = start_deadline
                .checked_duration_since(Instant::now())
                .context("the child did not open the database in time")?;
            lines.push(rx.recv_timeout(left).context("the child did not start")?);
        }
        let run_for = Duration::from_millis(200 + rng.below(500));
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

        let mut last_ack = acknowledged.last().copied().unwrap_or(0);
        for line in &lines {
            if let Some(z) = event(line, "durable") {
                let z: Zxid = z.parse()?;
                ensure!(z > last_ack, "acknowledgements go up");
                last_ack = z;
                acknowledged.push(z);
            }
        }
        let db = ZkDatabase::open(&db_dir, options())
            .with_context(|| format!("round {round}, seed {seed}: reopen"))?;
        ensure!(
            db.last_logged_zxid() >= last_ack,
            "round {round}, seed {seed}: acknowledged {last_ack:#x} but the log ends at {:#x}",
            db.last_logged_zxid()
        );
        ensure!(
            db.last_processed_zxid() == db.last_logged_zxid(),
            "round {round}: replay stopped short"
        );
        for z in &acknowledged {
            ensure!(
                db.tree().exists(&path_of(*z)),
                "round {round}, seed {seed}: acknowledged txn {z:#x} is missing from the tree"
            );
        }
        let report = db.open_report();
        eprintln!(
            "round {round}: killed after {run_for:?}; acknowledged up to {last_ack:#x}; snapshot {:?}, replayed {}",
            report.snapshot.as_ref().map(|s| format!("{:#x}", s.zxid)),
            report.replayed
        );
    }
    ensure!(!acknowledged.is_empty(), "nothing was acknowledged");
    Ok(())
}

/// The argument of a child event line `MARK name arg`, wherever the mark is in the line.
fn event<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let (_, rest) = line.split_once(MARK)?;
    rest.strip_prefix(name)?.strip_prefix(' ')
}
