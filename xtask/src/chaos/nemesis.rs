//! The nemesis: seeded faults on a schedule — `kill -9` and restart (the leader more often),
//! `SIGSTOP`/`SIGCONT` pauses longer than the session timeout, network partitions between
//! nodes with iptables rules in a chain of our own, and combinations — each healed before
//! the next.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::ensemble::{Ensemble, host};

/// Our iptables chain; every rule the nemesis adds lives in it.
pub const CHAIN: &str = "ZKCHAOS";

/// A small seeded generator (splitmix64): the same seed gives the same schedule.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// A duration in `[lo, hi)` milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi.saturating_sub(lo).max(1)))
    }

    /// Shuffles `v` in place.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// iptables rules between nodes, in [`CHAIN`], removed when dropped.
pub struct Firewall {
    enabled: bool,
    /// Why partitions are skipped, when they are.
    pub disabled_because: Option<String>,
}

fn iptables(args: &[&str]) -> bool {
    Command::new("iptables")
        .arg("-w")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

impl Firewall {
    /// Creates the chain (removing one left by an earlier run) when we are root and
    /// iptables works; otherwise a firewall that skips partitions.
    pub fn new() -> Firewall {
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        if uid.as_deref() != Some("0") {
            return Firewall::disabled("not root (partitions need iptables as root)");
        }
        if !iptables(&["-L", "-n"]) {
            return Firewall::disabled(
                "`iptables -L` failed (on Debian: apt-get install iptables)",
            );
        }
        remove_chain();
        if !iptables(&["-N", CHAIN]) || !iptables(&["-I", "INPUT", "-j", CHAIN]) {
            remove_chain();
            return Firewall::disabled("could not create the iptables chain");
        }
        Firewall {
            enabled: true,
            disabled_because: None,
        }
    }

    /// A firewall that skips partitions, saying why.
    pub fn disabled(why: &str) -> Firewall {
        Firewall {
            enabled: false,
            disabled_because: Some(why.to_owned()),
        }
    }

    /// Whether partitions can be applied.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Cuts peer traffic between nodes `a` and `b` both ways (client traffic, which
    /// comes from 127.0.0.1, is left alone: rules match the peer ports only).
    pub fn cut(&self, e: &Ensemble, a: u32, b: u32) -> Result<()> {
        if !self.enabled {
            bail!("partitions are disabled");
        }
        for (x, y) in [(a, b), (b, a)] {
            let (hx, hy) = (host(x), host(y));
            let dports = e.peer_ports(y).map(|p| p.to_string()).join(",");
            let sports = e.peer_ports(x).map(|p| p.to_string()).join(",");
            for (flag, ports) in [("--dports", &dports), ("--sports", &sports)] {
                let ok = iptables(&[
                    "-A",
                    CHAIN,
                    "-p",
                    "tcp",
                    "-s",
                    &hx,
                    "-d",
                    &hy,
                    "-m",
                    "multiport",
                    flag,
                    ports,
                    "-j",
                    "DROP",
                ]);
                if !ok {
                    bail!("iptables could not add a rule between {hx} and {hy}");
                }
            }
        }
        Ok(())
    }

    /// Removes every rule of the chain.
    pub fn heal(&self) {
        if self.enabled && !iptables(&["-F", CHAIN]) {
            eprintln!("warning: iptables -F {CHAIN} failed");
        }
    }
}

fn remove_chain() {
    // The jump may have been added more than once by runs that were killed.
    for _ in 0..16 {
        if !iptables(&["-D", "INPUT", "-j", CHAIN]) {
            break;
        }
    }
    iptables(&["-F", CHAIN]);
    iptables(&["-X", CHAIN]);
}

impl Drop for Firewall {
    fn drop(&mut self) {
        if self.enabled {
            remove_chain();
            self.enabled = false;
        }
    }
}

/// One fault the nemesis applied.
#[derive(Debug, Clone)]
pub struct FaultRecord {
    /// Seconds since the start of the run when it began.
    pub at_s: f64,
    /// How long it lasted, in seconds.
    pub held_s: f64,
    /// What it was.
    pub what: String,
}

/// The nemesis' settings.
pub struct NemesisConfig {
    /// Seed of the schedule.
    pub seed: u64,
    /// No new fault starts after this.
    pub until: Instant,
    /// The clients' session timeout (pauses last longer).
    pub session_timeout: Duration,
    /// When the run started.
    pub started: Instant,
}

/// Sleeps `d` in short slices; false if `stop` was raised meanwhile.
fn nap(d: Duration, stop: &AtomicBool) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50).min(end - Instant::now()));
    }
    !stop.load(Ordering::Relaxed)
}

/// Groups of a partition: each inner list is one side; `bridge` nodes see everyone.
fn cut_groups(fw: &Firewall, e: &Ensemble, groups: &[Vec<u32>]) -> Result<()> {
    for (i, g) in groups.iter().enumerate() {
        for other in groups.iter().skip(i + 1) {
            for &a in g {
                for &b in other {
                    fw.cut(e, a, b)?;
                }
            }
        }
    }
    Ok(())
}

/// Runs faults until `cfg.until` or `stop`; heals everything before returning.
pub fn run(
    cfg: NemesisConfig,
    ensemble: Arc<Mutex<Ensemble>>,
    fw: Arc<Firewall>,
    stop: Arc<AtomicBool>,
) -> Vec<FaultRecord> {
    let mut rng = Rng::new(cfg.seed ^ 0x006e_656d_6573_6973);
    let mut log = Vec::new();
    let nodes = ensemble.lock().map(|e| e.nodes).unwrap_or(1);
    if nodes < 3 {
        return log;
    }
    let pause_ms = cfg.session_timeout.as_millis() as u64;
    loop {
        if !nap(rng.millis(1500, 3500), &stop) || Instant::now() >= cfg.until {
            break;
        }
        let leader = ensemble.lock().ok().and_then(|e| e.leader());
        let mut all: Vec<u32> = (1..=nodes).collect();
        rng.shuffle(&mut all);
        // The leader is the target half of the time (when one is known).
        let target = match leader {
            Some(l) if rng.below(2) == 0 => l,
            _ => all.first().copied().unwrap_or(1),
        };
        let kinds = if fw.enabled() { 7 } else { 2 };
        let kind = rng.below(kinds);
        let started = Instant::now();
        let at_s = started.duration_since(cfg.started).as_secs_f64();
        let mut what = String::new();
        let result = (|| -> Result<()> {
            let mut e = ensemble
                .lock()
                .map_err(|_| anyhow::anyhow!("ensemble lock poisoned"))?;
            match kind {
                0 => {
                    what = format!("kill -9 node{target}{}", lead_tag(leader, target));
                    e.kill(target)?;
                }
                1 => {
                    what = format!("SIGSTOP node{target}{}", lead_tag(leader, target));
                    e.pause(target, true)?;
                }
                2 => {
                    let minority = (nodes / 2) as usize;
                    let (a, b) = all.split_at(minority);
                    what = format!("partition {a:?} | {b:?}");
                    cut_groups(&fw, &e, &[a.to_vec(), b.to_vec()])?;
                }
                3 => {
                    let l = leader.unwrap_or(target);
                    let rest: Vec<u32> = (1..=nodes).filter(|&n| n != l).collect();
                    what = format!("isolate leader node{l} from {rest:?}");
                    cut_groups(&fw, &e, &[vec![l], rest])?;
                }
                4 => {
                    // A bridge: one node sees both halves, which do not see each other.
                    let (bridge, rest) = all.split_at(1);
                    let (a, b) = rest.split_at(rest.len() / 2);
                    what = format!("bridge {bridge:?} between {a:?} and {b:?}");
                    cut_groups(&fw, &e, &[a.to_vec(), b.to_vec()])?;
                }
                5 => {
                    // Partition plus a kill on the majority side.
                    let minority = (nodes / 2) as usize;
                    let (a, b) = all.split_at(minority);
                    let victim = b.first().copied().unwrap_or(target);
                    what = format!("partition {a:?} | {b:?} and kill -9 node{victim}");
                    cut_groups(&fw, &e, &[a.to_vec(), b.to_vec()])?;
                    e.kill(victim)?;
                }
                _ => {
                    // Isolate the leader and pause a follower.
                    let l = leader.unwrap_or(target);
                    let rest: Vec<u32> = (1..=nodes).filter(|&n| n != l).collect();
                    let victim = rest.first().copied().unwrap_or(target);
                    what = format!("isolate leader node{l} and SIGSTOP node{victim}");
                    cut_groups(&fw, &e, &[vec![l], rest.clone()])?;
                    e.pause(victim, true)?;
                }
            }
            Ok(())
        })();
        let hold = if kind == 1 || kind == 6 {
            // Longer than a session timeout, so sessions on the paused node expire.
            rng.millis(pause_ms + 1000, pause_ms + 3000)
        } else {
            rng.millis(2000, 6000)
        };
        if let Err(err) = &result {
            what = format!("{what} (failed: {err:#})");
        } else {
            nap(hold, &stop);
        }
        fw.heal();
        if let Ok(mut e) = ensemble.lock()
            && let Err(err) = e.heal()
        {
            what = format!("{what} (heal failed: {err:#})");
        }
        eprintln!("[{at_s:>6.1}s] nemesis: {what}");
        log.push(FaultRecord {
            at_s,
            held_s: started.elapsed().as_secs_f64(),
            what,
        });
    }
    fw.heal();
    if let Ok(mut e) = ensemble.lock() {
        let _ = e.heal();
    }
    log
}

fn lead_tag(leader: Option<u32>, target: u32) -> &'static str {
    if leader == Some(target) {
        " (leader)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_seeded_and_bounded() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let xs: Vec<u64> = (0..100).map(|_| a.below(5)).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.below(5)).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|&x| x < 5));
        assert!((0..5).all(|v| xs.contains(&v)));
        assert_ne!(Rng::new(8).next_u64(), Rng::new(7).next_u64());
        let mut v: Vec<u32> = (0..10).collect();
        a.shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
    }
}
