//! Seeded deterministic simulation of the election core.
//!
//! A schedule is a plain loop over a seeded event queue: message deliveries with random
//! delays (so reordering between streams, and within a stream before GST), duplicates, drops, node crashes and restarts, partitions, and
//! ticks. Every failure prints the seed; replay one with
//! `ZK_ELECTION_SEED=<seed> ZK_ELECTION_PROFILE=<sync|async> cargo test -p zk-election --test sim replay`.
//! `ZK_ELECTION_SIM_SCALE=N` runs N times as many schedules.
//!
//! Two fault profiles:
//!
//! * `sync`: FastLeaderElection's timing assumption holds (every message arrives within
//!   an eighth of the finalize wait and within half the shortened wait used once every
//!   voter is accounted for, no loss, all nodes start within that bound; nodes may
//!   crash for good, partitions are fixed from the start). Checked after every step: all
//!   decisions of one round name the same leader; the leader's `(epoch, zxid)` is at least
//!   that of every voter in the quorum that elected it; at the end every node connected
//!   to a quorum has decided, within a bound of simulated time.
//! * `async`: anything goes until a global stabilisation time (GST): drops, duplicates,
//!   long delays, crash/restart, partitions that come and go, late starts. FastLeaderElection
//!   alone cannot promise one leader per round here (ZooKeeper relies on Zab's discovery
//!   phase for that), so the harness plays the part of Zab: a follower whose leader does
//!   not lead that vote, or a leader without a quorum of followers, goes back to LOOKING
//!   after `INIT_LIMIT_MS`. Checked after every step: the leader-quality invariant and
//!   the core's `validate()`; after GST with a connected quorum: every connected node
//!   ends up following one leader that leads, within a bound of simulated time.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use zk_election::{
    CoreConfig, Decision, Election, Hierarchical, Input, Majority, Notification, Output, PeerState,
    QuorumVerifier, Sid, Vote, Weighted,
};

const FINALIZE_MS: u64 = 200;
/// The finalize wait once every voter is accounted for: a message relayed once arrives
/// within it (two of the sync profile's delays).
const ACCOUNTED_MS: u64 = FINALIZE_MS / 4;
const MAX_INTERVAL_MS: u64 = 1_600;
const INIT_LIMIT_MS: u64 = 1_000;
const SYNC_CHECK_MS: u64 = 400;
/// Liveness bound in the sync profile: every connected voter decides by then.
const SYNC_DECIDE_BOUND_MS: u64 = 3 * FINALIZE_MS;
/// Observers learn the leader by asking, at the doubling notification interval.
const SYNC_OBSERVER_BOUND_MS: u64 = 10 * FINALIZE_MS;
/// Liveness bound in the async profile, counted from GST.
const ASYNC_STABLE_BOUND_MS: u64 = 30_000;
/// A schedule that needs more events than this is a livelock.
const MAX_EVENTS: usize = 200_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Profile {
    Sync,
    Async,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Deliver {
        to: Sid,
        to_inc: u32,
        from_inc: u32,
        n: NotificationKey,
    },
    Tick {
        sid: Sid,
        inc: u32,
    },
    ZabCheck {
        sid: Sid,
        inc: u32,
    },
    Start {
        sid: Sid,
    },
    Crash {
        sid: Sid,
    },
    Restart {
        sid: Sid,
    },
    Partition {
        side: Vec<Sid>,
    },
    Heal,
}

/// `Notification` has no `Ord`; events carry this sortable copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct NotificationKey {
    sid: Sid,
    state: u8,
    leader: Sid,
    zxid: i64,
    peer_epoch: i64,
    election_epoch: i64,
}

impl From<&Notification> for NotificationKey {
    fn from(n: &Notification) -> Self {
        NotificationKey {
            sid: n.sid,
            state: match n.state {
                PeerState::Looking => 0,
                PeerState::Following => 1,
                PeerState::Leading => 2,
                PeerState::Observing => 3,
            },
            leader: n.vote.leader,
            zxid: n.vote.zxid,
            peer_epoch: n.vote.peer_epoch,
            election_epoch: n.election_epoch,
        }
    }
}

impl NotificationKey {
    fn to_notification(self) -> Notification {
        Notification {
            sid: self.sid,
            state: match self.state {
                0 => PeerState::Looking,
                1 => PeerState::Following,
                2 => PeerState::Leading,
                _ => PeerState::Observing,
            },
            vote: Vote {
                leader: self.leader,
                zxid: self.zxid,
                peer_epoch: self.peer_epoch,
            },
            election_epoch: self.election_epoch,
            config_version: 0,
        }
    }
}

struct Node {
    sid: Sid,
    init: Vote,
    core: Option<Election>,
    inc: u32,
    tick_at: Option<u64>,
    decided: Option<(Decision, u64)>,
}

struct Sim {
    seed: u64,
    profile: Profile,
    rng: SmallRng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64, Event)>>,
    quorum: Arc<dyn QuorumVerifier>,
    nodes: BTreeMap<Sid, Node>,
    cut: BTreeSet<(Sid, Sid)>,
    gst: u64,
    drop_p: f64,
    dup_p: f64,
    max_delay: u64,
    /// (round, leader) of every decision taken on the LOOKING path, per round (sync).
    round_leaders: BTreeMap<i64, Sid>,
    /// (leader, peer epoch) of every LEADING decision.
    ever_led: BTreeSet<(Sid, i64)>,
    /// Time of the last delivery scheduled per (from, to) stream.
    channel_last: BTreeMap<(Sid, Sid), u64>,
    /// (sender, round, vote) of every LOOKING notification sent.
    looking_votes: BTreeSet<(Sid, i64, Vote)>,
    checked_electors: u64,
    events: usize,
    decisions: u64,
    crashes: u64,
    trace: bool,
}

impl Sim {
    fn new(seed: u64, profile: Profile) -> Sim {
        let mut rng = SmallRng::seed_from_u64(seed);
        let voters = [1usize, 3, 5, 7][rng.random_range(0..4usize)] as u64;
        let observers = rng.random_range(0..3u64);
        let voter_ids: Vec<Sid> = (1..=voters).collect();
        let observer_ids: Vec<Sid> = (voters + 1..=voters + observers).collect();
        // Half plain majorities, the rest weighted votes (1 to 3 each) or groups.
        let kind = rng.random_range(0..10);
        let quorum: Arc<dyn QuorumVerifier> = if voters >= 3 && kind < 2 {
            // ZooKeeper's hierarchical quorums: voters dealt into three groups.
            let mut groups: BTreeMap<u64, Vec<(Sid, u64)>> = BTreeMap::new();
            for (i, s) in voter_ids.iter().enumerate() {
                let w = rng.random_range(1..=2u64);
                groups.entry(i as u64 % 3).or_default().push((*s, w));
            }
            Arc::new(Hierarchical::new(groups, observer_ids.clone()).unwrap())
        } else if voters > 1 && kind < 5 {
            let weights: Vec<(Sid, u64)> = voter_ids
                .iter()
                .map(|s| (*s, rng.random_range(1..=3u64)))
                .collect();
            Arc::new(Weighted::new(weights, observer_ids.clone()).unwrap())
        } else {
            Arc::new(Majority::new(voter_ids.clone(), observer_ids.clone()).unwrap())
        };
        let mut nodes = BTreeMap::new();
        for sid in voter_ids.iter().chain(&observer_ids) {
            // Few distinct values so that ties on epoch and zxid are common.
            let epoch = rng.random_range(0..3i64);
            let zxid = zk_proto::zxid::make(epoch, rng.random_range(0..3i64));
            nodes.insert(
                *sid,
                Node {
                    sid: *sid,
                    init: Vote::initial(*sid, zxid, epoch),
                    core: None,
                    inc: 0,
                    tick_at: None,
                    decided: None,
                },
            );
        }
        let (drop_p, dup_p, max_delay) = match profile {
            Profile::Sync => (0.0, rng.random_range(0.0..0.2), FINALIZE_MS / 8),
            Profile::Async => (
                rng.random_range(0.0..0.3),
                rng.random_range(0.0..0.2),
                rng.random_range(1..4 * FINALIZE_MS),
            ),
        };
        let gst = match profile {
            Profile::Sync => 0,
            Profile::Async => rng.random_range(0..3_000),
        };
        let mut sim = Sim {
            seed,
            profile,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            quorum,
            nodes,
            cut: BTreeSet::new(),
            gst,
            drop_p,
            dup_p,
            max_delay,
            round_leaders: BTreeMap::new(),
            ever_led: BTreeSet::new(),
            channel_last: BTreeMap::new(),
            looking_votes: BTreeSet::new(),
            checked_electors: 0,
            events: 0,
            decisions: 0,
            crashes: 0,
            trace: std::env::var_os("ZK_ELECTION_TRACE").is_some(),
        };
        sim.plan_faults();
        sim
    }

    fn voters(&self) -> Vec<Sid> {
        self.quorum.voters().iter().copied().collect()
    }

    fn max_faulty(&self) -> usize {
        (self.quorum.voters().len() - 1) / 2
    }

    fn push(&mut self, at: u64, e: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, e)));
    }

    fn plan_faults(&mut self) {
        let sids: Vec<Sid> = self.nodes.keys().copied().collect();
        let voters = self.voters();
        let f = self.max_faulty();
        match self.profile {
            Profile::Sync => {
                for sid in &sids {
                    let at = self.rng.random_range(0..=FINALIZE_MS / 8);
                    self.push(at, Event::Start { sid: *sid });
                }
                // Crash-stop up to f voters (and maybe observers) at random times.
                let crashes = self.rng.random_range(0..=f);
                for _ in 0..crashes {
                    let sid = voters[self.rng.random_range(0..voters.len())];
                    let at = self.rng.random_range(0..2 * FINALIZE_MS);
                    self.push(at, Event::Crash { sid });
                }
                // A fixed partition from the start that isolates a minority of voters.
                if self.rng.random_bool(0.3) && f > 0 {
                    let k = self.rng.random_range(1..=f);
                    let mut side: Vec<Sid> = Vec::new();
                    while side.len() < k {
                        let s = voters[self.rng.random_range(0..voters.len())];
                        if !side.contains(&s) {
                            side.push(s);
                        }
                    }
                    self.apply_partition(&side);
                }
            }
            Profile::Async => {
                for sid in &sids {
                    let at = self.rng.random_range(0..=self.gst.max(1));
                    self.push(at, Event::Start { sid: *sid });
                }
                let faults = self.rng.random_range(0..6);
                for _ in 0..faults {
                    let at = self.rng.random_range(0..=self.gst.max(1));
                    match self.rng.random_range(0..3) {
                        0 => {
                            let sid = sids[self.rng.random_range(0..sids.len())];
                            self.push(at, Event::Crash { sid });
                            let back = at + self.rng.random_range(1..1_500);
                            self.push(back.min(self.gst), Event::Restart { sid });
                        }
                        1 => {
                            let k = self.rng.random_range(1..=sids.len().max(2) / 2);
                            let side: Vec<Sid> = (0..k)
                                .map(|_| sids[self.rng.random_range(0..sids.len())])
                                .collect();
                            self.push(at, Event::Partition { side });
                            let heal = at + self.rng.random_range(1..2_000);
                            self.push(heal.min(self.gst), Event::Heal);
                        }
                        _ => {
                            self.push(at, Event::Heal);
                        }
                    }
                }
                // What holds after GST: up to f voters stay down, maybe a minority is cut off.
                let down = self.rng.random_range(0..=f);
                let mut down_set = BTreeSet::new();
                while down_set.len() < down {
                    down_set.insert(voters[self.rng.random_range(0..voters.len())]);
                }
                for sid in &down_set {
                    self.push(self.gst, Event::Crash { sid: *sid });
                }
                self.push(self.gst, Event::Heal);
                let room = f - down;
                if room > 0 && self.rng.random_bool(0.3) {
                    let up: Vec<Sid> = voters
                        .iter()
                        .copied()
                        .filter(|s| !down_set.contains(s))
                        .collect();
                    let k = self.rng.random_range(1..=room);
                    let side: Vec<Sid> = up.iter().copied().take(k).collect();
                    self.push(self.gst, Event::Partition { side });
                }
            }
        }
    }

    fn apply_partition(&mut self, side: &[Sid]) {
        let all: Vec<Sid> = self.nodes.keys().copied().collect();
        for a in side {
            for b in &all {
                if !side.contains(b) {
                    self.cut.insert((*a.min(b), *a.max(b)));
                }
            }
        }
    }

    fn alive(&self, sid: Sid) -> bool {
        self.nodes.get(&sid).is_some_and(|n| n.core.is_some())
    }

    fn linked(&self, a: Sid, b: Sid) -> bool {
        self.alive(a) && self.alive(b) && !self.cut.contains(&(a.min(b), a.max(b)))
    }

    fn inc(&self, sid: Sid) -> u32 {
        self.nodes.get(&sid).map_or(0, |n| n.inc)
    }

    fn fail(&self, msg: String) -> ! {
        let profile = match self.profile {
            Profile::Sync => "sync",
            Profile::Async => "async",
        };
        panic!(
            "simulation failure at t={}ms: {msg}\nreplay with: ZK_ELECTION_SEED={} ZK_ELECTION_PROFILE={profile} cargo test -p zk-election --test sim replay",
            self.now, self.seed
        );
    }

    /// Feeds one input to a node and routes its outputs.
    fn step(&mut self, sid: Sid, input: Input) {
        let Some(node) = self.nodes.get_mut(&sid) else {
            return;
        };
        let Some(core) = node.core.as_mut() else {
            return;
        };
        let outs = core.step(input);
        self.after_step(sid, outs);
    }

    fn after_step(&mut self, sid: Sid, outs: Vec<Output>) {
        for out in outs {
            match out {
                Output::Send { to, notification } => self.send(sid, to, notification),
                Output::Decided(d) => self.on_decided(sid, d),
            }
        }
        let now = self.now;
        let Some(node) = self.nodes.get_mut(&sid) else {
            return;
        };
        let Some(core) = node.core.as_ref() else {
            return;
        };
        if let Err(e) = core.validate() {
            let msg = e.to_string();
            self.fail(msg);
        }
        let inc = node.inc;
        if let Some(at) = core.next_deadline_ms() {
            let at = at.max(now);
            if node.tick_at.is_none_or(|t| t > at || t < now) {
                node.tick_at = Some(at);
                self.push(at, Event::Tick { sid, inc });
            }
        }
    }

    fn send(&mut self, from: Sid, to: Sid, n: Notification) {
        if n.state == PeerState::Looking {
            self.looking_votes.insert((from, n.election_epoch, n.vote));
        }
        if !self.linked(from, to) {
            return;
        }
        let after_gst = self.now >= self.gst;
        let (drop_p, dup_p, max_delay) = if after_gst && self.profile == Profile::Async {
            (0.0, 0.0, FINALIZE_MS / 8)
        } else {
            (self.drop_p, self.dup_p, self.max_delay)
        };
        if drop_p > 0.0 && self.rng.random_bool(drop_p) {
            return;
        }
        let copies = if dup_p > 0.0 && self.rng.random_bool(dup_p) {
            2
        } else {
            1
        };
        // A stream is FIFO (TCP); before GST the async profile also reorders within it.
        let fifo = self.profile == Profile::Sync || after_gst;
        for _ in 0..copies {
            let mut at = self.now + self.rng.random_range(1..=max_delay.max(1));
            if fifo {
                let last = self.channel_last.entry((from, to)).or_insert(0);
                at = at.max(*last);
                *last = at;
            }
            let e = Event::Deliver {
                to,
                to_inc: self.inc(to),
                from_inc: self.inc(from),
                n: NotificationKey::from(&n),
            };
            self.push(at, e);
        }
    }

    fn on_decided(&mut self, sid: Sid, d: Decision) {
        // Leader quality: the leader's vote is its real one, and it is at least as good
        // as that of every voter in the quorum that elected it.
        let leader_init = self.nodes.get(&d.vote.leader).map(|n| n.init);
        if leader_init != Some(d.vote) {
            self.fail(format!(
                "node {sid} decided {:?}, not the leader's real vote {leader_init:?}",
                d.vote
            ));
        }
        let acks: BTreeSet<Sid> = d.quorum.iter().copied().collect();
        if !self.quorum.contains_quorum(&acks) {
            self.fail(format!("node {sid} decided without a quorum: {d:?}"));
        }
        if d.joined_established {
            // Joining: the leader must have decided LEADING with this vote at some point.
            if !self.ever_led.contains(&(d.vote.leader, d.vote.peer_epoch)) && d.vote.leader != sid
            {
                self.fail(format!(
                    "node {sid} joined leader {:?}, which never led",
                    d.vote
                ));
            }
        }
        // The members that elected it by voting for it while LOOKING in this round (a
        // member may also count because it already follows that leader; it did not elect
        // it then, and may have joined it with a better log, as in ZooKeeper).
        let electors = d.quorum.iter().filter(|s| {
            !d.joined_established
                && self
                    .looking_votes
                    .contains(&(**s, d.election_epoch, d.vote))
        });
        for s in electors {
            self.checked_electors += 1;
            let v = self.nodes.get(s).map(|n| n.init);
            if let Some(v) = v
                && (v.peer_epoch, v.zxid) > (d.vote.peer_epoch, d.vote.zxid)
            {
                self.fail(format!(
                    "node {sid} elected {:?} but quorum member {s} has the better {v:?}",
                    d.vote
                ));
            }
        }
        let expected = if d.vote.leader == sid {
            PeerState::Leading
        } else if self.quorum.is_voter(sid) {
            PeerState::Following
        } else {
            PeerState::Observing
        };
        if d.state != expected {
            self.fail(format!(
                "node {sid} decided state {} for leader {}",
                d.state, d.vote.leader
            ));
        }
        if self.profile == Profile::Sync {
            // Agreement: one leader per round.
            match self.round_leaders.get(&d.election_epoch) {
                Some(l) if *l != d.vote.leader => self.fail(format!(
                    "round {}: node {sid} decided leader {} but leader {l} was decided before",
                    d.election_epoch, d.vote.leader
                )),
                _ => {
                    self.round_leaders.insert(d.election_epoch, d.vote.leader);
                }
            }
        }
        self.decisions += 1;
        if d.state == PeerState::Leading {
            self.ever_led.insert((sid, d.vote.peer_epoch));
        }
        if self.trace {
            eprintln!(
                "{:>6} node {sid} DECIDED {} leader {} round {} joined {}",
                self.now, d.state, d.vote.leader, d.election_epoch, d.joined_established
            );
        }
        let now = self.now;
        if let Some(node) = self.nodes.get_mut(&sid) {
            node.decided = Some((d, now));
            let inc = node.inc;
            if self.profile == Profile::Async {
                self.push(now + INIT_LIMIT_MS, Event::ZabCheck { sid, inc });
            }
        }
    }

    fn start(&mut self, sid: Sid) {
        let quorum: Arc<dyn QuorumVerifier> = self.quorum.clone();
        let mut cfg = CoreConfig::new(sid);
        cfg.max_notification_interval_ms = MAX_INTERVAL_MS;
        cfg.accounted_wait_ms = ACCOUNTED_MS;
        let now = self.now;
        let Some(node) = self.nodes.get_mut(&sid) else {
            return;
        };
        if node.core.is_some() {
            return;
        }
        let mut core = Election::new(cfg, quorum).unwrap();
        node.inc += 1;
        node.tick_at = None;
        node.decided = None;
        let outs = core.start_election(now, node.init.zxid, node.init.peer_epoch);
        node.core = Some(core);
        self.after_step(sid, outs);
        let peers: Vec<Sid> = self.nodes.keys().copied().filter(|p| *p != sid).collect();
        for p in peers {
            if self.linked(sid, p) {
                self.step(sid, Input::PeerUp(p));
                self.step(p, Input::PeerUp(sid));
            }
        }
    }

    fn crash(&mut self, sid: Sid) {
        let peers: Vec<Sid> = self.nodes.keys().copied().filter(|p| *p != sid).collect();
        let was_linked: Vec<Sid> = peers
            .iter()
            .copied()
            .filter(|p| self.linked(sid, *p))
            .collect();
        if self.alive(sid) {
            self.crashes += 1;
        }
        if let Some(node) = self.nodes.get_mut(&sid) {
            node.core = None;
            node.decided = None;
            node.tick_at = None;
            node.inc += 1;
        }
        for p in was_linked {
            self.step(p, Input::PeerDown(sid));
        }
    }

    fn set_cut(&mut self, new_cut: BTreeSet<(Sid, Sid)>) {
        let sids: Vec<Sid> = self.nodes.keys().copied().collect();
        let before: Vec<(Sid, Sid, bool)> = pairs(&sids)
            .map(|(a, b)| (a, b, self.linked(a, b)))
            .collect();
        self.cut = new_cut;
        for (a, b, was) in before {
            let is = self.linked(a, b);
            if was && !is {
                self.step(a, Input::PeerDown(b));
                self.step(b, Input::PeerDown(a));
            } else if !was && is {
                self.step(a, Input::PeerUp(b));
                self.step(b, Input::PeerUp(a));
            }
        }
    }

    /// The harness's stand-in for Zab: a follower whose leader does not lead, or a leader
    /// without a quorum of followers, goes back to LOOKING.
    fn zab_check(&mut self, sid: Sid) {
        let Some((d, _)) = self.nodes.get(&sid).and_then(|n| n.decided.clone()) else {
            return;
        };
        let ok = if d.state == PeerState::Leading {
            let followers: BTreeSet<Sid> = self
                .nodes
                .values()
                .filter(|n| n.sid == sid || self.linked(sid, n.sid))
                .filter(|n| n.decided.as_ref().is_some_and(|(x, _)| same_leader(x, &d)))
                .map(|n| n.sid)
                .collect();
            self.quorum.contains_quorum(&followers)
        } else {
            let l = d.vote.leader;
            self.linked(sid, l)
                && self.nodes.get(&l).is_some_and(|n| {
                    n.decided
                        .as_ref()
                        .is_some_and(|(x, _)| x.state == PeerState::Leading && same_leader(x, &d))
                })
        };
        if ok {
            let inc = self.inc(sid);
            self.push(self.now + SYNC_CHECK_MS, Event::ZabCheck { sid, inc });
            return;
        }
        let now = self.now;
        let Some(node) = self.nodes.get_mut(&sid) else {
            return;
        };
        let init = node.init;
        node.decided = None;
        let Some(core) = node.core.as_mut() else {
            return;
        };
        let outs = core.start_election(now, init.zxid, init.peer_epoch);
        self.after_step(sid, outs);
    }

    fn run_event(&mut self, e: Event) {
        match e {
            Event::Deliver {
                to,
                to_inc,
                from_inc,
                n,
            } => {
                let n = n.to_notification();
                if self.inc(to) == to_inc && self.inc(n.sid) == from_inc && self.linked(n.sid, to) {
                    self.step(to, Input::Tick { now_ms: self.now });
                    self.step(to, Input::Receive(n));
                }
            }
            Event::Tick { sid, inc } => {
                if self.inc(sid) == inc {
                    if let Some(node) = self.nodes.get_mut(&sid)
                        && node.tick_at == Some(self.now)
                    {
                        node.tick_at = None;
                    }
                    self.step(sid, Input::Tick { now_ms: self.now });
                }
            }
            Event::ZabCheck { sid, inc } => {
                if self.inc(sid) == inc {
                    self.zab_check(sid);
                }
            }
            Event::Start { sid } => self.start(sid),
            Event::Crash { sid } => self.crash(sid),
            Event::Restart { sid } => self.start(sid),
            Event::Partition { side } => {
                let mut cut = BTreeSet::new();
                let all: Vec<Sid> = self.nodes.keys().copied().collect();
                for a in &side {
                    for b in &all {
                        if !side.contains(b) {
                            cut.insert((*a.min(b), *a.max(b)));
                        }
                    }
                }
                self.set_cut(cut);
            }
            Event::Heal => self.set_cut(BTreeSet::new()),
        }
    }

    /// The largest set of live nodes that can all reach each other through live links.
    fn component(&self) -> BTreeSet<Sid> {
        let mut best = BTreeSet::new();
        for start in self.nodes.keys().copied().filter(|s| self.alive(*s)) {
            let mut seen = BTreeSet::from([start]);
            let mut stack = vec![start];
            while let Some(a) = stack.pop() {
                for b in self.nodes.keys().copied() {
                    if !seen.contains(&b) && self.linked(a, b) {
                        seen.insert(b);
                        stack.push(b);
                    }
                }
            }
            if seen.len() > best.len() {
                best = seen;
            }
        }
        best
    }

    /// All connected nodes follow one leader that leads, with the same vote.
    fn stable(&self, comp: &BTreeSet<Sid>) -> Option<Sid> {
        let leader = comp
            .iter()
            .filter_map(|s| self.nodes.get(s))
            .find_map(|n| {
                n.decided
                    .as_ref()
                    .filter(|(d, _)| d.state == PeerState::Leading)
                    .map(|(d, _)| d.clone())
            })?;
        comp.iter()
            .all(|s| {
                self.nodes.get(s).is_some_and(|n| {
                    n.decided
                        .as_ref()
                        .is_some_and(|(d, _)| same_leader(d, &leader))
                })
            })
            .then_some(leader.vote.leader)
    }

    fn run(mut self) -> Summary {
        let horizon = match self.profile {
            Profile::Sync => SYNC_OBSERVER_BOUND_MS + FINALIZE_MS,
            Profile::Async => self.gst + ASYNC_STABLE_BOUND_MS,
        };
        while let Some(Reverse((at, _, e))) = self.queue.pop() {
            if at > horizon {
                break;
            }
            self.now = at;
            self.events += 1;
            if self.events > MAX_EVENTS {
                self.fail(format!("more than {MAX_EVENTS} events: livelock"));
            }
            let zab = matches!(e, Event::ZabCheck { .. });
            if self.trace {
                eprintln!("{:>6} {e:?}", self.now);
            }
            self.run_event(e);
            if self.profile == Profile::Async && zab && self.now >= self.gst {
                let comp = self.component();
                let voters_in: BTreeSet<Sid> = comp
                    .iter()
                    .copied()
                    .filter(|s| self.quorum.is_voter(*s))
                    .collect();
                if self.quorum.contains_quorum(&voters_in) && self.stable(&comp).is_some() {
                    return self.summary();
                }
            }
        }
        let comp = self.component();
        let voters_in: BTreeSet<Sid> = comp
            .iter()
            .copied()
            .filter(|s| self.quorum.is_voter(*s))
            .collect();
        if !self.quorum.contains_quorum(&voters_in) {
            return self.summary(); // no connected quorum: nothing to promise
        }
        match self.profile {
            Profile::Sync => {
                // Observers can only join a leader that is alive and says it leads.
                let leader_up = comp.iter().any(|s| {
                    self.nodes
                        .get(s)
                        .and_then(|n| n.decided.as_ref())
                        .is_some_and(|(d, _)| d.state == PeerState::Leading)
                });
                for s in comp
                    .iter()
                    .filter(|s| leader_up || self.quorum.is_voter(**s))
                {
                    let bound = if self.quorum.is_voter(*s) {
                        SYNC_DECIDE_BOUND_MS
                    } else {
                        SYNC_OBSERVER_BOUND_MS
                    };
                    match self.nodes.get(s).and_then(|n| n.decided.as_ref()) {
                        Some((_, at)) if *at <= bound => {}
                        other => self.fail(format!(
                            "liveness: node {s} connected to a quorum {comp:?} has not decided by {bound} ms (decided: {other:?})"
                        )),
                    }
                }
            }
            Profile::Async => {
                if self.stable(&comp).is_none() {
                    let states: Vec<String> = comp
                        .iter()
                        .filter_map(|s| self.nodes.get(s))
                        .map(|n| {
                            format!(
                                "{}: {:?}",
                                n.sid,
                                n.decided.as_ref().map(|(d, _)| (d.state, d.vote.leader))
                            )
                        })
                        .collect();
                    self.fail(format!(
                        "liveness: connected quorum {comp:?} not settled on one leader {ASYNC_STABLE_BOUND_MS} ms after GST={}; {states:?}",
                        self.gst
                    ));
                }
            }
        }
        self.summary()
    }

    fn summary(&self) -> Summary {
        Summary {
            events: self.events as u64,
            decisions: self.decisions,
            crashes: self.crashes,
            checked_electors: self.checked_electors,
        }
    }
}

struct Summary {
    events: u64,
    decisions: u64,
    crashes: u64,
    checked_electors: u64,
}

fn same_leader(a: &Decision, b: &Decision) -> bool {
    a.vote.leader == b.vote.leader && a.vote.peer_epoch == b.vote.peer_epoch
}

fn pairs(sids: &[Sid]) -> impl Iterator<Item = (Sid, Sid)> + '_ {
    sids.iter()
        .enumerate()
        .flat_map(move |(i, a)| sids.iter().skip(i + 1).map(move |b| (*a, *b)))
}

fn run_many(profile: Profile, first_seed: u64, count: u64) {
    // `ZK_ELECTION_SIM_SCALE=N` runs N times as many schedules (soak runs).
    let scale: u64 = std::env::var("ZK_ELECTION_SIM_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1);
    let first_seed = first_seed * scale;
    let count = count * scale;
    let (mut events, mut decisions, mut crashes, mut electors) = (0, 0, 0, 0);
    for seed in first_seed..first_seed + count {
        let s = Sim::new(seed, profile).run();
        events += s.events;
        decisions += s.decisions;
        crashes += s.crashes;
        electors += s.checked_electors;
    }
    eprintln!(
        "{profile:?}: {count} schedules, {events} events, {decisions} decisions, {crashes} crashes, {electors} electors checked"
    );
    // The schedules exercise the protocol: most nodes decide, and faults happen.
    assert!(decisions > 2 * count, "too few decisions: {decisions}");
    assert!(crashes > count / 4, "too few crashes: {crashes}");
    assert!(electors > count, "too few electors checked: {electors}");
}

// 10,000 schedules in total, split so that the test runner can use both cores.
#[test]
fn sync_schedules_agree_and_decide_0() {
    run_many(Profile::Sync, 0, 3_000);
}

#[test]
fn sync_schedules_agree_and_decide_1() {
    run_many(Profile::Sync, 3_000, 3_000);
}

#[test]
fn async_schedules_settle_after_gst_0() {
    run_many(Profile::Async, 1_000_000, 2_000);
}

#[test]
fn async_schedules_settle_after_gst_1() {
    run_many(Profile::Async, 2_000_000, 2_000);
}

/// Replays one seed from the environment (no-op without `ZK_ELECTION_SEED`).
#[test]
fn replay() {
    let Ok(seed) = std::env::var("ZK_ELECTION_SEED") else {
        return;
    };
    let seed: u64 = seed.parse().expect("ZK_ELECTION_SEED must be a u64");
    let profile = match std::env::var("ZK_ELECTION_PROFILE").as_deref() {
        Ok("async") => Profile::Async,
        _ => Profile::Sync,
    };
    Sim::new(seed, profile).run();
}
