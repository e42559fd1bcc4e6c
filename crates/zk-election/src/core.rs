//! The sans-IO FastLeaderElection state machine.
//!
//! [`Election`] holds what ZooKeeper's `FastLeaderElection` keeps between polls of its
//! receive queue (`logicalclock`, the proposal, `recvset`, `outofelection`, the
//! notification timeout) and what its `WorkerReceiver` does for peers (answer LOOKING
//! peers with our vote). Inputs are notifications, ticks carrying the current time, and
//! peer connectivity; outputs are notifications to send and the [`Decision`]. It reads no
//! clock, spawns nothing and does no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tracing::{debug, info, warn};
use zk_proto::zxid::Zxid;

use crate::error::{ElectionError, InvariantViolation};
use crate::quorum::QuorumVerifier;
use crate::vote::{Decision, Notification, PeerState, Sid, Vote};

/// ZooKeeper's `finalizeWait` and `minNotificationInterval`: 200 ms.
pub const DEFAULT_FINALIZE_WAIT_MS: u64 = 200;
/// The default [`CoreConfig::accounted_wait_ms`]: 20 ms (ten times a slow LAN round
/// trip).
pub const DEFAULT_ACCOUNTED_WAIT_MS: u64 = 20;
/// ZooKeeper's `maxNotificationInterval`: 60 s.
pub const DEFAULT_MAX_NOTIFICATION_INTERVAL_MS: u64 = 60_000;

/// Timing knobs of the election core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreConfig {
    /// This node's sid.
    pub myid: Sid,
    /// How long a quorum must agree, with no better vote arriving, before deciding.
    pub finalize_wait_ms: u64,
    /// The first notification timeout; it doubles while nothing arrives.
    pub min_notification_interval_ms: u64,
    /// The cap of the doubling notification timeout.
    pub max_notification_interval_ms: u64,
    /// The finalize wait once every voter is accounted for: each has voted for our
    /// proposal in this round, or its connection was up before and is now down (a
    /// crashed leader). A voter never reached yet may still be starting, so it is
    /// waited for in full. Counted from when the last voter was accounted for; a value
    /// of at least `finalize_wait_ms` is ZooKeeper's behaviour (always the full wait).
    ///
    /// This changes only when a decision is taken, never what it needs: a quorum must
    /// still agree on the proposal, so the leader still has the best `(epoch, zxid)` of
    /// a quorum. The short wait is there for votes still in flight from a voter that
    /// crashed while voting: it must cover a message relayed once (two one-way delays).
    /// If a peer still ends up deciding otherwise in the same round, it joins the
    /// established leader, or Zab's discovery fails and the election runs again.
    pub accounted_wait_ms: u64,
}

impl CoreConfig {
    /// ZooKeeper's defaults (finalize wait 200 ms, notification interval 200 ms doubling
    /// up to 60 s), with the finalize wait cut to [`DEFAULT_ACCOUNTED_WAIT_MS`] once
    /// every voter is accounted for.
    pub const fn new(myid: Sid) -> Self {
        CoreConfig {
            myid,
            finalize_wait_ms: DEFAULT_FINALIZE_WAIT_MS,
            min_notification_interval_ms: DEFAULT_FINALIZE_WAIT_MS,
            max_notification_interval_ms: DEFAULT_MAX_NOTIFICATION_INTERVAL_MS,
            accounted_wait_ms: DEFAULT_ACCOUNTED_WAIT_MS,
        }
    }
}

/// An input to [`Election::step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The current time in milliseconds (any monotonic origin).
    Tick {
        /// Now, in ms.
        now_ms: u64,
    },
    /// A notification received from a peer (its `sid` is the authenticated sender).
    Receive(Notification),
    /// The connection to a peer is up.
    PeerUp(Sid),
    /// The connection to a peer is lost.
    PeerDown(Sid),
}

/// An output of the election core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send a notification to a peer. Only the newest unsent notification per peer matters.
    Send {
        /// The recipient.
        to: Sid,
        /// The notification.
        notification: Notification,
    },
    /// The election is over for this node.
    Decided(Decision),
}

/// A vote as kept in `recvset` / `outofelection` (ZooKeeper's `Vote` with state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Recorded {
    vote: Vote,
    election_epoch: i64,
    state: PeerState,
}

impl Recorded {
    /// ZooKeeper's `Vote.equals`: LOOKING votes must match fully; votes of peers out of
    /// the election match on leader and epoch only (their zxid and round may differ).
    fn agrees(&self, other: &Recorded) -> bool {
        if self.state == PeerState::Looking || other.state == PeerState::Looking {
            self.vote == other.vote && self.election_epoch == other.election_epoch
        } else {
            self.vote.leader == other.vote.leader && self.vote.peer_epoch == other.vote.peer_epoch
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Never started an election; notifications are kept for the first round.
    Idle,
    Looking,
    Decided,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Finalize {
    /// When the full finalize wait ends.
    full_deadline_ms: u64,
    /// When the wait ends: earlier than the full one while every voter is accounted for.
    deadline_ms: u64,
    /// Since when every voter is accounted for.
    accounted_since_ms: Option<u64>,
    acks: BTreeSet<Sid>,
}

/// The FastLeaderElection state machine of one node.
///
/// ```
/// use std::sync::Arc;
/// use zk_election::{CoreConfig, Election, Input, Majority, Output, PeerState};
///
/// // A one-voter ensemble elects itself after the finalize wait (ZooKeeper's timing).
/// let q = Arc::new(Majority::new([1], []).unwrap());
/// let mut cfg = CoreConfig::new(1);
/// cfg.accounted_wait_ms = cfg.finalize_wait_ms;
/// let mut e = Election::new(cfg, q).unwrap();
/// assert!(e.start_election(0, 0x1_0000_0005, 1).is_empty());
/// let out = e.step(Input::Tick { now_ms: 200 });
/// match out.as_slice() {
///     [Output::Decided(d)] => assert_eq!((d.leader(), d.state), (1, PeerState::Leading)),
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Debug)]
pub struct Election {
    cfg: CoreConfig,
    quorum: Arc<dyn QuorumVerifier>,
    now_ms: u64,
    phase: Phase,
    state: PeerState,
    logical_clock: i64,
    init: Vote,
    proposal: Vote,
    /// The established vote and the round it was decided in (when not LOOKING).
    current: Option<(Vote, i64)>,
    recvset: BTreeMap<Sid, Recorded>,
    outofelection: BTreeMap<Sid, Recorded>,
    not_timeout_ms: u64,
    next_resend_ms: u64,
    finalize: Option<Finalize>,
    /// Newest notification per sid received before the first election (bounded by the
    /// number of members).
    early: BTreeMap<Sid, Notification>,
    connected: BTreeSet<Sid>,
    /// Members whose connection has been up at least once.
    ever_connected: BTreeSet<Sid>,
    out: Vec<Output>,
}

impl Election {
    /// Creates an idle core. Fails when `myid` is not a member of the configuration or
    /// the timing knobs are inconsistent.
    pub fn new(cfg: CoreConfig, quorum: Arc<dyn QuorumVerifier>) -> Result<Self, ElectionError> {
        if !quorum.is_member(cfg.myid) {
            return Err(ElectionError::Config(format!(
                "myid {} is neither a voter nor an observer",
                cfg.myid
            )));
        }
        if cfg.min_notification_interval_ms == 0
            || cfg.min_notification_interval_ms > cfg.max_notification_interval_ms
        {
            return Err(ElectionError::Config(format!(
                "notification interval must satisfy 0 < min ({}) <= max ({})",
                cfg.min_notification_interval_ms, cfg.max_notification_interval_ms
            )));
        }
        let init = Vote::non_voter(cfg.myid);
        Ok(Election {
            not_timeout_ms: cfg.min_notification_interval_ms,
            cfg,
            quorum,
            now_ms: 0,
            phase: Phase::Idle,
            state: PeerState::Looking,
            logical_clock: 0,
            init,
            proposal: init,
            current: None,
            recvset: BTreeMap::new(),
            outofelection: BTreeMap::new(),
            next_resend_ms: 0,
            finalize: None,
            early: BTreeMap::new(),
            connected: BTreeSet::new(),
            ever_connected: BTreeSet::new(),
            out: Vec::new(),
        })
    }

    /// This node's sid.
    pub fn myid(&self) -> Sid {
        self.cfg.myid
    }

    /// This node's state.
    pub fn state(&self) -> PeerState {
        self.state
    }

    /// True while an election is running.
    pub fn is_looking(&self) -> bool {
        self.phase == Phase::Looking
    }

    /// The logical clock (election round).
    pub fn logical_clock(&self) -> i64 {
        self.logical_clock
    }

    /// The vote this node currently proposes (while LOOKING) or follows (after).
    pub fn current_vote(&self) -> Vote {
        match self.current {
            Some((v, _)) if self.phase == Phase::Decided => v,
            _ => self.proposal,
        }
    }

    /// The quorum verifier.
    pub fn quorum(&self) -> &Arc<dyn QuorumVerifier> {
        &self.quorum
    }

    /// The peers whose connection is currently up.
    pub fn connected_peers(&self) -> &BTreeSet<Sid> {
        &self.connected
    }

    /// When the core next needs a [`Input::Tick`] (absolute ms), if ever.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        if self.phase != Phase::Looking {
            return None;
        }
        Some(match &self.finalize {
            Some(f) => f.deadline_ms,
            None => self.next_resend_ms,
        })
    }

    /// Starts a new round (`lookForLeader`): increments the logical clock, proposes the
    /// initial self-vote `(myid, lastLoggedZxid, currentEpoch)` and broadcasts it.
    pub fn start_election(
        &mut self,
        now_ms: u64,
        last_logged_zxid: Zxid,
        current_epoch: i64,
    ) -> Vec<Output> {
        self.now_ms = self.now_ms.max(now_ms);
        self.phase = Phase::Looking;
        self.state = PeerState::Looking;
        self.logical_clock = self.logical_clock.saturating_add(1);
        self.init = if self.is_voter() {
            Vote::initial(self.cfg.myid, last_logged_zxid, current_epoch)
        } else {
            Vote::non_voter(self.cfg.myid)
        };
        self.proposal = self.init;
        self.current = None;
        self.recvset.clear();
        self.outofelection.clear();
        self.finalize = None;
        self.not_timeout_ms = self.cfg.min_notification_interval_ms;
        self.next_resend_ms = self.now_ms.saturating_add(self.not_timeout_ms);
        info!(
            round = self.logical_clock,
            zxid = format_args!("{:#x}", self.init.zxid),
            peer_epoch = self.init.peer_epoch,
            "new election"
        );
        self.send_notifications();
        self.check_looking_quorum();
        let early = std::mem::take(&mut self.early);
        for n in early.into_values() {
            if self.phase != Phase::Looking {
                break;
            }
            self.receive(n);
        }
        std::mem::take(&mut self.out)
    }

    /// Records the node's established vote and state after the decision (e.g. when the
    /// server's Zab layer changed them); LOOKING peers are answered with it.
    pub fn set_established(&mut self, vote: Vote, state: PeerState) {
        if state == PeerState::Looking {
            warn!("set_established with LOOKING ignored; call start_election instead");
            return;
        }
        let round = self.current.map_or(self.logical_clock, |(_, r)| r);
        self.phase = Phase::Decided;
        self.state = state;
        self.current = Some((vote, round));
        self.recvset.clear();
        self.outofelection.clear();
        self.finalize = None;
    }

    /// Feeds one input and returns what to do.
    pub fn step(&mut self, input: Input) -> Vec<Output> {
        match input {
            Input::Tick { now_ms } => self.tick(now_ms),
            Input::Receive(n) => self.receive(n),
            Input::PeerUp(sid) => {
                if sid != self.cfg.myid && self.quorum.is_member(sid) {
                    self.connected.insert(sid);
                    self.ever_connected.insert(sid);
                    // A voter that is up again has to vote before the wait is cut.
                    self.update_finalize_deadline();
                    // ZooKeeper resends the last message when a connection (re)opens.
                    if self.phase == Phase::Looking && self.quorum.is_voter(sid) {
                        let n = self.notification(
                            PeerState::Looking,
                            self.proposal,
                            self.logical_clock,
                        );
                        self.send(sid, n);
                    }
                }
            }
            Input::PeerDown(sid) => {
                self.connected.remove(&sid);
                // The peer we were waiting for may be the one that is gone.
                self.update_finalize_deadline();
            }
        }
        std::mem::take(&mut self.out)
    }

    /// Checks the core's internal invariants (called by tests after every step).
    pub fn validate(&self) -> Result<(), InvariantViolation> {
        let fail = |m: String| Err(InvariantViolation(format!("node {}: {m}", self.cfg.myid)));
        match self.phase {
            Phase::Looking | Phase::Idle => {
                if self.state != PeerState::Looking {
                    return fail(format!("phase {:?} with state {}", self.phase, self.state));
                }
            }
            Phase::Decided => {
                if self.state == PeerState::Looking || self.current.is_none() {
                    return fail("decided without an established vote".into());
                }
                if !self.recvset.is_empty() || self.finalize.is_some() {
                    return fail("decided with election state left over".into());
                }
            }
        }
        if self.phase == Phase::Looking {
            if self.proposal < self.init {
                return fail(format!(
                    "proposal {:?} below initial vote {:?}",
                    self.proposal, self.init
                ));
            }
            if self.proposal != self.init && !self.quorum.is_voter(self.proposal.leader) {
                return fail(format!("proposal for non-voter {}", self.proposal.leader));
            }
            if let Some((sid, r)) = self
                .recvset
                .iter()
                .find(|(_, r)| r.election_epoch != self.logical_clock)
            {
                return fail(format!(
                    "recvset entry of {sid} from round {} in round {}",
                    r.election_epoch, self.logical_clock
                ));
            }
            if let Some(f) = &self.finalize
                && !self.quorum.contains_quorum(&f.acks)
            {
                return fail("finalizing without a quorum".into());
            }
        }
        if self
            .recvset
            .keys()
            .chain(self.outofelection.keys())
            .any(|s| !self.quorum.is_voter(*s))
        {
            return fail("vote recorded from a non-voter".into());
        }
        if self.not_timeout_ms < self.cfg.min_notification_interval_ms
            || self.not_timeout_ms > self.cfg.max_notification_interval_ms
        {
            return fail(format!(
                "notification timeout {} out of bounds",
                self.not_timeout_ms
            ));
        }
        let members = self.quorum.voters().len() + self.quorum.observers().len();
        if self.early.len() > members {
            return fail("early-notification buffer over its bound".into());
        }
        Ok(())
    }

    fn is_voter(&self) -> bool {
        self.quorum.is_voter(self.cfg.myid)
    }

    fn notification(&self, state: PeerState, vote: Vote, election_epoch: i64) -> Notification {
        Notification {
            sid: self.cfg.myid,
            state,
            vote,
            election_epoch,
            config_version: self.quorum.version(),
        }
    }

    fn send(&mut self, to: Sid, notification: Notification) {
        self.out.push(Output::Send { to, notification });
    }

    /// `totalOrderPredicate`: the new vote wins if its leader votes and it is larger.
    fn better(&self, new: &Vote, cur: &Vote) -> bool {
        self.quorum.weight(new.leader) > 0 && new > cur
    }

    /// Sends our proposal to every voter and records it as our own vote (ZooKeeper
    /// delivers the notification to itself).
    fn send_notifications(&mut self) {
        let n = self.notification(PeerState::Looking, self.proposal, self.logical_clock);
        let voters: Vec<Sid> = self.quorum.voters().iter().copied().collect();
        for sid in voters {
            if sid == self.cfg.myid {
                self.recvset.insert(
                    sid,
                    Recorded {
                        vote: self.proposal,
                        election_epoch: self.logical_clock,
                        state: PeerState::Looking,
                    },
                );
            } else {
                self.send(sid, n);
            }
        }
    }

    fn tick(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        if self.phase == Phase::Looking {
            if let Some(f) = &self.finalize {
                if self.now_ms >= f.deadline_ms {
                    let acks = f.acks.clone();
                    self.decide(self.proposal, self.logical_clock, acks, false);
                }
            } else if self.now_ms >= self.next_resend_ms {
                self.send_notifications();
                self.not_timeout_ms = self
                    .not_timeout_ms
                    .saturating_mul(2)
                    .min(self.cfg.max_notification_interval_ms);
                self.next_resend_ms = self.now_ms.saturating_add(self.not_timeout_ms);
                debug!(timeout_ms = self.not_timeout_ms, "notification time out");
            }
        }
    }

    /// `WorkerReceiver` plus the body of `lookForLeader`'s loop.
    fn receive(&mut self, n: Notification) {
        if n.sid == self.cfg.myid {
            warn!(
                sid = n.sid,
                "notification claiming to come from myself dropped"
            );
            return;
        }
        if !self.quorum.is_member(n.sid) {
            warn!(sid = n.sid, "notification from an unknown sid dropped");
            return;
        }
        if !self.quorum.is_voter(n.sid) {
            // A LOOKING non-voter (observer) is answered right away with our current
            // vote. (ZooKeeper answers every non-voter notification; answering one that
            // already observes makes a voter and an observer ping-pong for as long as
            // the voter looks.)
            if self.phase != Phase::Idle && n.state == PeerState::Looking {
                let reply = self.notification(self.state, self.current_vote(), self.logical_clock);
                self.send(n.sid, reply);
            }
            return;
        }
        match self.phase {
            Phase::Idle => {
                self.early.insert(n.sid, n);
            }
            Phase::Decided => {
                if n.state == PeerState::Looking
                    && let Some((vote, round)) = self.current
                {
                    let reply = self.notification(self.state, vote, round);
                    self.send(n.sid, reply);
                }
            }
            Phase::Looking => {
                // A voter answers a LOOKING peer that is behind in rounds. (Observers
                // skip this: voters ignore their votes, and it could ping-pong.)
                //
                // Beyond ZooKeeper, a voter also answers a peer of the same round whose
                // vote is worse than ours: the peer may have started its round after
                // our broadcast reached it (and was answered with its old vote), and
                // would otherwise learn our vote only at its next notification timeout,
                // which costs a whole extra wait. The peer adopts the answer, so this
                // cannot ping-pong.
                let behind = n.election_epoch < self.logical_clock
                    || (n.election_epoch == self.logical_clock
                        && self.better(&self.proposal, &n.vote));
                if n.state == PeerState::Looking && behind && self.is_voter() {
                    let reply =
                        self.notification(PeerState::Looking, self.proposal, self.logical_clock);
                    self.send(n.sid, reply);
                }
                self.next_resend_ms = self.now_ms.saturating_add(self.not_timeout_ms);
                self.looking_receive(n);
            }
        }
    }

    fn looking_receive(&mut self, n: Notification) {
        if !self.quorum.is_voter(n.vote.leader) {
            warn!(
                sid = n.sid,
                leader = n.vote.leader,
                "vote for a non-voter ignored"
            );
            return;
        }
        if self.finalize.is_some() {
            if self.better(&n.vote, &self.proposal) {
                debug!(sid = n.sid, "better vote during the finalize wait");
                self.finalize = None;
            } else {
                // ZooKeeper consumes notifications that do not change the outcome. A
                // LOOKING vote of this round is still recorded: it may be the last one
                // that the shortened wait needs.
                if n.state == PeerState::Looking
                    && n.election_epoch == self.logical_clock
                    && self.is_voter()
                    && self.init.zxid != -1
                    && n.vote.zxid != -1
                {
                    self.recvset.insert(
                        n.sid,
                        Recorded {
                            vote: n.vote,
                            election_epoch: n.election_epoch,
                            state: PeerState::Looking,
                        },
                    );
                    self.update_finalize_deadline();
                }
                return;
            }
        }
        match n.state {
            PeerState::Looking if !self.is_voter() => {
                // Deliberate difference from ZooKeeper: an observer never decides from
                // LOOKING votes. Voters do not send it their broadcasts, so it would
                // decide on a snapshot of proposals that may still change; it waits for a
                // leader that a quorum follows and that says it leads (below).
            }
            PeerState::Looking => {
                if self.init.zxid == -1 || n.vote.zxid == -1 {
                    debug!(sid = n.sid, "notification ignored: zxid -1");
                    return;
                }
                if n.election_epoch > self.logical_clock {
                    self.logical_clock = n.election_epoch;
                    self.recvset.clear();
                    self.proposal = if self.better(&n.vote, &self.init) {
                        n.vote
                    } else {
                        self.init
                    };
                    self.send_notifications();
                } else if n.election_epoch < self.logical_clock {
                    return;
                } else if self.better(&n.vote, &self.proposal) {
                    self.proposal = n.vote;
                    self.send_notifications();
                }
                self.recvset.insert(
                    n.sid,
                    Recorded {
                        vote: n.vote,
                        election_epoch: n.election_epoch,
                        state: PeerState::Looking,
                    },
                );
                self.check_looking_quorum();
            }
            PeerState::Observing => {}
            PeerState::Following | PeerState::Leading => {
                let rec = Recorded {
                    vote: n.vote,
                    election_epoch: n.election_epoch,
                    state: n.state,
                };
                if n.election_epoch == self.logical_clock {
                    self.recvset.insert(n.sid, rec);
                    let acks = agreeing(&self.recvset, &rec);
                    if self.quorum.contains_quorum(&acks)
                        && self.check_leader(&self.recvset, n.vote.leader, n.election_epoch)
                    {
                        self.decide(n.vote, n.election_epoch, acks, true);
                        return;
                    }
                }
                // ZOOKEEPER-1732: join an established leader once a quorum follows it.
                // (Bounded: only voters get here, one entry each.)
                self.outofelection.insert(n.sid, rec);
                let acks = agreeing(&self.outofelection, &rec);
                if self.quorum.contains_quorum(&acks)
                    && self.check_leader(&self.outofelection, n.vote.leader, n.election_epoch)
                {
                    self.logical_clock = n.election_epoch;
                    self.decide(n.vote, n.election_epoch, acks, true);
                }
            }
        }
    }

    /// `checkLeader`: a leader other than me must itself say it is LEADING; if it is me,
    /// the round must be mine.
    fn check_leader(
        &self,
        votes: &BTreeMap<Sid, Recorded>,
        leader: Sid,
        election_epoch: i64,
    ) -> bool {
        if leader != self.cfg.myid {
            votes
                .get(&leader)
                .is_some_and(|r| r.state == PeerState::Leading)
        } else {
            self.logical_clock == election_epoch
        }
    }

    fn check_looking_quorum(&mut self) {
        if self.phase != Phase::Looking || self.finalize.is_some() {
            return;
        }
        let mine = Recorded {
            vote: self.proposal,
            election_epoch: self.logical_clock,
            state: PeerState::Looking,
        };
        let acks = agreeing(&self.recvset, &mine);
        if self.quorum.contains_quorum(&acks) {
            let deadline_ms = self.now_ms.saturating_add(self.cfg.finalize_wait_ms);
            debug!(
                leader = self.proposal.leader,
                ?acks,
                "quorum agrees; finalize wait"
            );
            if deadline_ms <= self.now_ms {
                self.decide(self.proposal, self.logical_clock, acks, false);
            } else {
                self.finalize = Some(Finalize {
                    full_deadline_ms: deadline_ms,
                    deadline_ms,
                    accounted_since_ms: None,
                    acks,
                });
                self.update_finalize_deadline();
            }
        }
    }

    /// During the finalize wait: cuts it to [`CoreConfig::accounted_wait_ms`] while
    /// every voter is accounted for, restores it when one no longer is.
    fn update_finalize_deadline(&mut self) {
        if self.phase != Phase::Looking || self.finalize.is_none() {
            return;
        }
        let mine = Recorded {
            vote: self.proposal,
            election_epoch: self.logical_clock,
            state: PeerState::Looking,
        };
        let accounted = self.quorum.voters().iter().all(|sid| {
            *sid == self.cfg.myid
                || self.recvset.get(sid).is_some_and(|r| r.agrees(&mine))
                || (!self.connected.contains(sid) && self.ever_connected.contains(sid))
        });
        let now_ms = self.now_ms;
        let wait_ms = self.cfg.accounted_wait_ms;
        let Some(f) = self.finalize.as_mut() else {
            return;
        };
        f.accounted_since_ms = match (accounted, f.accounted_since_ms) {
            (true, Some(since)) => Some(since),
            (true, None) => {
                debug!(
                    leader = self.proposal.leader,
                    wait_ms, "every voter accounted for; finalize wait shortened"
                );
                Some(now_ms)
            }
            (false, _) => None,
        };
        f.deadline_ms = match f.accounted_since_ms {
            Some(since) => f.full_deadline_ms.min(since.saturating_add(wait_ms)),
            None => f.full_deadline_ms,
        };
        if f.deadline_ms <= now_ms {
            let acks = f.acks.clone();
            self.decide(self.proposal, self.logical_clock, acks, false);
        }
    }

    fn decide(&mut self, vote: Vote, election_epoch: i64, acks: BTreeSet<Sid>, joined: bool) {
        let state = if vote.leader == self.cfg.myid {
            PeerState::Leading
        } else if self.is_voter() {
            PeerState::Following
        } else {
            PeerState::Observing
        };
        info!(
            leader = vote.leader,
            zxid = format_args!("{:#x}", vote.zxid),
            peer_epoch = vote.peer_epoch,
            round = election_epoch,
            %state,
            joined,
            "election decided"
        );
        self.phase = Phase::Decided;
        self.state = state;
        self.current = Some((vote, election_epoch));
        self.recvset.clear();
        self.outofelection.clear();
        self.finalize = None;
        self.out.push(Output::Decided(Decision {
            vote,
            election_epoch,
            state,
            quorum: acks.into_iter().collect(),
            joined_established: joined,
        }));
    }
}

fn agreeing(votes: &BTreeMap<Sid, Recorded>, target: &Recorded) -> BTreeSet<Sid> {
    votes
        .iter()
        .filter(|(_, r)| r.agrees(target))
        .map(|(s, _)| *s)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quorum::Majority;

    fn election(myid: Sid, voters: &[Sid], observers: &[Sid]) -> Election {
        let q = Arc::new(Majority::new(voters.iter().copied(), observers.iter().copied()).unwrap());
        Election::new(CoreConfig::new(myid), q).unwrap()
    }

    fn vote(leader: Sid, zxid: Zxid, peer_epoch: i64) -> Vote {
        Vote {
            leader,
            zxid,
            peer_epoch,
        }
    }

    fn looking(sid: Sid, v: Vote, round: i64) -> Notification {
        Notification {
            sid,
            state: PeerState::Looking,
            vote: v,
            election_epoch: round,
            config_version: 0,
        }
    }

    fn sends(out: &[Output]) -> Vec<(Sid, Notification)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send { to, notification } => Some((*to, *notification)),
                Output::Decided(_) => None,
            })
            .collect()
    }

    fn decided(out: &[Output]) -> Option<Decision> {
        out.iter().find_map(|o| match o {
            Output::Decided(d) => Some(d.clone()),
            Output::Send { .. } => None,
        })
    }

    #[test]
    fn start_broadcasts_the_initial_self_vote_to_other_voters() {
        let mut e = election(2, &[1, 2, 3], &[4]);
        let out = e.start_election(0, 10, 1);
        let me = vote(2, 10, 1);
        assert_eq!(
            sends(&out),
            vec![(1, looking(2, me, 1)), (3, looking(2, me, 1))]
        );
        assert_eq!(e.logical_clock(), 1);
        assert_eq!(e.next_deadline_ms(), Some(200));
        e.validate().unwrap();
    }

    #[test]
    fn a_better_vote_is_adopted_and_rebroadcast() {
        let mut e = election(1, &[1, 2, 3], &[]);
        e.start_election(0, 10, 1);
        let out = e.step(Input::Receive(looking(3, vote(3, 20, 1), 1)));
        assert_eq!(
            sends(&out),
            vec![
                (2, looking(1, vote(3, 20, 1), 1)),
                (3, looking(1, vote(3, 20, 1), 1))
            ]
        );
        // A worse one of the same round changes nothing, but its sender is told ours.
        let out = e.step(Input::Receive(looking(2, vote(2, 5, 1), 1)));
        assert_eq!(sends(&out), vec![(2, looking(1, vote(3, 20, 1), 1))]);
        // An equal one is just recorded.
        let out = e.step(Input::Receive(looking(2, vote(3, 20, 1), 1)));
        assert!(sends(&out).is_empty(), "{out:?}");
        assert_eq!(e.current_vote(), vote(3, 20, 1));
    }

    #[test]
    fn a_larger_round_resets_and_a_smaller_round_gets_our_vote_back() {
        let mut e = election(1, &[1, 2, 3], &[]);
        e.start_election(0, 50, 2);
        // Round 4 from node 2 with a worse vote: adopt the round, keep our own vote.
        let out = e.step(Input::Receive(looking(2, vote(2, 1, 1), 4)));
        assert_eq!(e.logical_clock(), 4);
        assert_eq!(
            sends(&out),
            vec![
                (2, looking(1, vote(1, 50, 2), 4)),
                (3, looking(1, vote(1, 50, 2), 4))
            ]
        );
        // Round 3 from node 3: ignored, but answered with our vote and round.
        let out = e.step(Input::Receive(looking(3, vote(3, 99, 9), 3)));
        assert_eq!(sends(&out), vec![(3, looking(1, vote(1, 50, 2), 4))]);
        assert_eq!(e.current_vote(), vote(1, 50, 2));
        e.validate().unwrap();
    }

    #[test]
    fn decides_after_the_finalize_wait_unless_a_better_vote_arrives() {
        let mut e = election(1, &[1, 2, 3], &[]);
        e.start_election(0, 10, 1);
        e.step(Input::Tick { now_ms: 10 });
        // Node 2 agrees with node 1: a quorum; the finalize wait starts.
        let out = e.step(Input::Receive(looking(2, vote(1, 10, 1), 1)));
        assert!(decided(&out).is_none());
        assert_eq!(e.next_deadline_ms(), Some(210));
        // A better vote within the wait cancels it.
        e.step(Input::Tick { now_ms: 100 });
        let out = e.step(Input::Receive(looking(3, vote(3, 11, 1), 1)));
        assert!(decided(&out).is_none());
        assert_eq!(e.current_vote(), vote(3, 11, 1));
        // Quorum {1, 3} on 3: wait again, then decide FOLLOWING 3.
        assert_eq!(e.next_deadline_ms(), Some(300));
        assert!(e.step(Input::Tick { now_ms: 299 }).is_empty());
        let d = decided(&e.step(Input::Tick { now_ms: 300 })).unwrap();
        assert_eq!(
            (d.leader(), d.state, d.election_epoch),
            (3, PeerState::Following, 1)
        );
        assert_eq!(d.quorum, vec![1, 3]);
        assert!(!d.joined_established);
        e.validate().unwrap();
    }

    #[test]
    fn notification_timeout_doubles_up_to_the_maximum() {
        let q = Arc::new(Majority::new([1, 2, 3], []).unwrap());
        let mut cfg = CoreConfig::new(1);
        cfg.max_notification_interval_ms = 700;
        let mut e = Election::new(cfg, q).unwrap();
        e.start_election(0, 0, 0);
        let mut resends = Vec::new();
        for now in (0..5_000).step_by(10) {
            if !sends(&e.step(Input::Tick { now_ms: now })).is_empty() {
                resends.push(now);
            }
        }
        // 200, then +400, then +700 (capped), …
        assert_eq!(&resends[..4], &[200, 600, 1300, 2000]);
    }

    #[test]
    fn joins_an_established_leader_only_when_it_says_it_leads() {
        let mut e = election(3, &[1, 2, 3], &[]);
        e.start_election(0, 99, 1);
        let leader_vote = vote(1, 7, 1);
        let following = Notification {
            sid: 2,
            state: PeerState::Following,
            vote: leader_vote,
            election_epoch: 5,
            config_version: 0,
        };
        assert!(decided(&e.step(Input::Receive(following))).is_none());
        assert!(
            e.is_looking(),
            "a quorum without the leader's word is not enough"
        );
        let leading = Notification {
            sid: 1,
            state: PeerState::Leading,
            ..following
        };
        let d = decided(&e.step(Input::Receive(leading))).unwrap();
        assert_eq!(
            (d.leader(), d.state, d.election_epoch),
            (1, PeerState::Following, 5)
        );
        assert!(d.joined_established);
        assert_eq!(e.logical_clock(), 5);
    }

    #[test]
    fn once_decided_looking_peers_get_the_established_vote() {
        let mut e = election(1, &[1], &[]);
        e.start_election(0, 4, 1);
        // The only voter is accounted for at once: the wait is the short one.
        assert!(decided(&e.step(Input::Tick { now_ms: 20 })).is_some());
        let out = e.step(Input::Receive(looking(1, vote(1, 4, 1), 1)));
        assert!(out.is_empty(), "own sid is dropped");
        e.set_established(vote(1, 4, 2), PeerState::Leading);
        assert_eq!(e.state(), PeerState::Leading);
        assert_eq!(e.current_vote(), vote(1, 4, 2));
    }

    #[test]
    fn answers_looking_voters_and_observers_when_not_looking() {
        let mut e = election(2, &[1, 2, 3], &[4]);
        e.start_election(0, 8, 1);
        e.step(Input::Receive(looking(1, vote(2, 8, 1), 1)));
        let d = decided(&e.step(Input::Tick { now_ms: 200 })).unwrap();
        assert_eq!(d.state, PeerState::Leading);
        let out = e.step(Input::Receive(looking(3, vote(3, 1, 1), 7)));
        let expected = Notification {
            sid: 2,
            state: PeerState::Leading,
            vote: vote(2, 8, 1),
            election_epoch: 1,
            config_version: 0,
        };
        assert_eq!(sends(&out), vec![(3, expected)]);
        let out = e.step(Input::Receive(looking(4, Vote::non_voter(4), 1)));
        assert_eq!(sends(&out), vec![(4, expected)]);
        // An observer that already observes is not answered (no ping-pong).
        let out = e.step(Input::Receive(Notification {
            state: PeerState::Observing,
            ..looking(4, vote(2, 8, 1), 1)
        }));
        assert!(out.is_empty(), "{out:?}");
        // FOLLOWING peers are not answered.
        let out = e.step(Input::Receive(Notification {
            state: PeerState::Following,
            ..looking(3, vote(2, 8, 1), 1)
        }));
        assert!(out.is_empty());
    }

    #[test]
    fn unknown_sids_and_non_voter_leaders_are_ignored() {
        let mut e = election(1, &[1, 2, 3], &[4]);
        e.start_election(0, 1, 1);
        assert!(
            e.step(Input::Receive(looking(99, vote(99, 100, 100), 1)))
                .is_empty()
        );
        assert!(
            e.step(Input::Receive(looking(2, vote(4, 100, 100), 1)))
                .is_empty()
        );
        assert!(
            e.step(Input::Receive(looking(2, vote(77, 100, 100), 1)))
                .is_empty()
        );
        assert_eq!(e.current_vote(), vote(1, 1, 1));
        e.validate().unwrap();
    }

    #[test]
    fn notifications_before_the_first_election_are_kept_for_it() {
        let mut e = election(1, &[1, 2, 3], &[]);
        assert!(
            e.step(Input::Receive(looking(2, vote(2, 9, 1), 1)))
                .is_empty()
        );
        let out = e.start_election(0, 1, 1);
        assert_eq!(e.current_vote(), vote(2, 9, 1));
        // Quorum {1, 2} on 2 right away.
        assert_eq!(e.next_deadline_ms(), Some(200));
        assert!(sends(&out).iter().any(|(_, n)| n.vote == vote(2, 9, 1)));
    }

    #[test]
    fn zxid_minus_one_ignores_looking_votes() {
        let mut e = election(1, &[1, 2, 3], &[]);
        e.start_election(0, -1, 0);
        assert!(
            e.step(Input::Receive(looking(2, vote(2, 9, 1), 1)))
                .is_empty()
        );
        assert_eq!(e.current_vote(), vote(1, -1, 0));
    }

    #[test]
    fn peer_up_resends_the_current_proposal() {
        let mut e = election(1, &[1, 2, 3], &[]);
        e.start_election(0, 3, 1);
        let out = e.step(Input::PeerUp(3));
        assert_eq!(sends(&out), vec![(3, looking(1, vote(1, 3, 1), 1))]);
        assert!(e.connected_peers().contains(&3));
        e.step(Input::PeerDown(3));
        assert!(!e.connected_peers().contains(&3));
    }

    fn connected(myid: Sid, voters: &[Sid], accounted_wait_ms: u64) -> Election {
        let q = Arc::new(Majority::new(voters.iter().copied(), []).unwrap());
        let mut cfg = CoreConfig::new(myid);
        cfg.accounted_wait_ms = accounted_wait_ms;
        let mut e = Election::new(cfg, q).unwrap();
        for s in voters.iter().copied().filter(|s| *s != myid) {
            e.step(Input::PeerUp(s));
        }
        e
    }

    #[test]
    fn a_crashed_peer_does_not_hold_the_decision_back() {
        // Nodes 1 and 2 survive; node 3 (the old leader) was connected and is gone.
        let mut e = connected(1, &[1, 2, 3], 20);
        e.step(Input::PeerDown(3));
        e.start_election(5, 10, 1);
        assert!(decided(&e.step(Input::Receive(looking(2, vote(2, 10, 1), 1)))).is_none());
        // Every voter is accounted for: the wait is 20 ms, not 200.
        assert_eq!(e.next_deadline_ms(), Some(25));
        assert!(e.step(Input::Tick { now_ms: 24 }).is_empty());
        let d = decided(&e.step(Input::Tick { now_ms: 25 })).unwrap();
        assert_eq!((d.leader(), d.state), (2, PeerState::Following));
        assert_eq!(d.quorum, vec![1, 2]);
        e.validate().unwrap();
    }

    #[test]
    fn a_connected_peer_that_has_not_voted_is_waited_for() {
        let mut e = connected(1, &[1, 2, 3], 20);
        e.start_election(0, 10, 1);
        // A quorum {1, 2} agrees on 2, but 3 is up and has not voted in this round.
        let out = e.step(Input::Receive(looking(2, vote(2, 10, 1), 1)));
        assert!(decided(&out).is_none());
        assert_eq!(e.next_deadline_ms(), Some(200));
        // Its agreeing vote, at 30 ms, cuts the wait to 30 + 20.
        e.step(Input::Tick { now_ms: 30 });
        assert!(decided(&e.step(Input::Receive(looking(3, vote(2, 10, 1), 1)))).is_none());
        assert_eq!(e.next_deadline_ms(), Some(50));
        let d = decided(&e.step(Input::Tick { now_ms: 50 })).unwrap();
        assert_eq!(d.leader(), 2);
        // A wait of zero decides at once.
        let mut e = connected(1, &[1, 2, 3], 0);
        e.start_election(0, 10, 1);
        e.step(Input::Receive(looking(2, vote(2, 10, 1), 1)));
        let d = decided(&e.step(Input::Receive(looking(3, vote(2, 10, 1), 1)))).unwrap();
        assert_eq!(d.leader(), 2);
    }

    #[test]
    fn losing_the_last_silent_peer_shortens_the_wait_and_a_new_peer_restores_it() {
        let mut e = connected(2, &[1, 2, 3, 4, 5], 20);
        e.start_election(0, 10, 1);
        e.step(Input::Receive(looking(1, vote(2, 10, 1), 1)));
        e.step(Input::Receive(looking(3, vote(2, 10, 1), 1)));
        e.step(Input::Receive(looking(4, vote(2, 10, 1), 1)));
        assert_eq!(e.next_deadline_ms(), Some(200));
        e.step(Input::Tick { now_ms: 10 });
        e.step(Input::PeerDown(5));
        assert_eq!(e.next_deadline_ms(), Some(30));
        // Node 5 is back before the cut wait ends: it must vote first.
        e.step(Input::Tick { now_ms: 15 });
        e.step(Input::PeerUp(5));
        assert_eq!(e.next_deadline_ms(), Some(200));
        assert!(e.step(Input::Tick { now_ms: 30 }).is_empty());
        e.step(Input::Tick { now_ms: 40 });
        e.step(Input::Receive(looking(5, vote(2, 10, 1), 1)));
        assert_eq!(e.next_deadline_ms(), Some(60));
        let d = decided(&e.step(Input::Tick { now_ms: 60 })).unwrap();
        assert_eq!((d.leader(), d.state), (2, PeerState::Leading));
    }

    #[test]
    fn a_peer_never_reached_or_voting_otherwise_keeps_the_full_wait() {
        // Node 3 was never connected: it may be starting with a better vote.
        let q = Arc::new(Majority::new([1, 2, 3], []).unwrap());
        let mut e = Election::new(CoreConfig::new(1), q).unwrap();
        e.step(Input::PeerUp(2));
        e.start_election(0, 10, 1);
        assert!(decided(&e.step(Input::Receive(looking(2, vote(2, 10, 1), 1)))).is_none());
        assert_eq!(e.next_deadline_ms(), Some(200));
        // Node 3 connected, voting for a worse leader: recorded, still not accounted.
        let mut e = connected(1, &[1, 2, 3], 20);
        e.start_election(0, 10, 1);
        e.step(Input::Receive(looking(2, vote(2, 10, 1), 1)));
        assert!(decided(&e.step(Input::Receive(looking(3, vote(3, 9, 1), 1)))).is_none());
        assert_eq!(e.next_deadline_ms(), Some(200));
        assert!(decided(&e.step(Input::Tick { now_ms: 200 })).is_some());
    }

    #[test]
    fn a_better_vote_during_the_short_wait_cancels_it() {
        let mut e = connected(1, &[1, 2, 3], 20);
        e.step(Input::PeerDown(3));
        e.start_election(0, 10, 1);
        e.step(Input::Receive(looking(2, vote(2, 10, 1), 1)));
        assert_eq!(e.next_deadline_ms(), Some(20));
        // A vote for 3 relayed by 2 (3 voted before it crashed).
        e.step(Input::Tick { now_ms: 5 });
        let out = e.step(Input::Receive(looking(2, vote(3, 11, 1), 1)));
        assert!(decided(&out).is_none());
        assert_eq!(e.current_vote(), vote(3, 11, 1));
        assert!(e.step(Input::Tick { now_ms: 20 }).is_empty());
    }

    #[test]
    fn a_wait_as_long_as_the_finalize_wait_is_zookeepers_timing() {
        let mut e = connected(1, &[1, 2, 3], DEFAULT_FINALIZE_WAIT_MS);
        e.step(Input::PeerDown(3));
        e.start_election(0, 10, 1);
        assert!(decided(&e.step(Input::Receive(looking(2, vote(2, 10, 1), 1)))).is_none());
        assert!(e.step(Input::Tick { now_ms: 199 }).is_empty());
        assert!(decided(&e.step(Input::Tick { now_ms: 200 })).is_some());
    }
}
