//! The leader core: runs discovery and synchronisation for every learner that connects,
//! then broadcasts proposals (ZooKeeper's `Leader` + `LearnerHandler`, without threads).

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use tracing::{debug, info, warn};
use zk_proto::zxid::{counter_of, epoch_of, make};

use crate::broadcast::Outstanding;
use crate::command::{Command, Input};
use crate::discovery::EpochNegotiation;
use crate::error::ZabError;
use crate::sync::{self, History, SyncMode, SyncPolicy};
use crate::types::{Config, Ensemble, LearnerInfo, Packet, ServerId, Txn, Zxid};

/// What the leader starts from: its durable state after the election.
#[derive(Clone, Debug)]
pub struct LeaderStorage {
    /// Persisted acceptedEpoch.
    pub accepted_epoch: i64,
    /// Persisted currentEpoch.
    pub current_epoch: i64,
    /// The zxid the state machine is at (restored from the newest snapshot, never beyond
    /// what is known committed).
    pub applied_zxid: Zxid,
    /// The durable log: every txn is part of the history the new epoch starts from.
    pub history: History,
    /// Size of the newest snapshot (for the DIFF-versus-SNAP choice).
    pub snapshot_bytes: u64,
}

/// Where the leader is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaderPhase {
    /// Waiting for a quorum of FOLLOWERINFO, then of ACKEPOCH.
    Discovery,
    /// The epoch is acknowledged; syncing learners, waiting for a quorum of NEWLEADER acks.
    Synchronization,
    /// Established: serving and broadcasting.
    Broadcast,
    /// Gave up; the driver goes back to election.
    Stopped,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum HandlerPhase {
    AwaitEpoch,
    AwaitAckEpoch,
    AwaitEpochQuorum,
    AwaitNewLeaderAck,
    AwaitEstablished,
    Active,
}

impl HandlerPhase {
    fn name(self) -> &'static str {
        match self {
            HandlerPhase::AwaitEpoch => "waiting for the epoch",
            HandlerPhase::AwaitAckEpoch => "waiting for ACKEPOCH",
            HandlerPhase::AwaitEpochQuorum => "waiting for an epoch quorum",
            HandlerPhase::AwaitNewLeaderAck => "waiting for the NEWLEADER ack",
            HandlerPhase::AwaitEstablished => "waiting for the leader to be established",
            HandlerPhase::Active => "active",
        }
    }
}

#[derive(Clone, Debug)]
struct Handler {
    observer: bool,
    phase: HandlerPhase,
    last_zxid: Zxid,
    idle_half_ticks: u32,
    forwarding: bool,
}

/// The leader core. Feed it [`Input`]s with [`Leader::step`], and local writes with
/// [`Leader::propose`]; execute the returned [`Command`]s in order.
#[derive(Debug)]
pub struct Leader {
    id: ServerId,
    config: Config,
    ensemble: Ensemble,
    accepted_epoch: i64,
    current_epoch: i64,
    phase: LeaderPhase,
    negotiation: EpochNegotiation,
    epoch: i64,
    history: History,
    applied: Zxid,
    snapshot_bytes: u64,
    last_proposed: Zxid,
    persisted: Zxid,
    outstanding: Outstanding,
    learners: BTreeMap<ServerId, Handler>,
    newleader_acks: std::collections::BTreeSet<ServerId>,
    half_ticks: u64,
    pending_syncs: VecDeque<(Zxid, ServerId, i64, i32)>,
}

impl Leader {
    /// A leader elected with this durable state.
    pub fn new(
        id: ServerId,
        config: Config,
        ensemble: Ensemble,
        mut storage: LeaderStorage,
    ) -> Self {
        let last = storage.history.last_zxid();
        storage.history.set_floor(storage.applied_zxid);
        Self {
            id,
            negotiation: EpochNegotiation::new(id, storage.accepted_epoch),
            config,
            ensemble,
            accepted_epoch: storage.accepted_epoch,
            current_epoch: storage.current_epoch,
            phase: LeaderPhase::Discovery,
            epoch: 0,
            history: storage.history,
            applied: storage.applied_zxid,
            snapshot_bytes: storage.snapshot_bytes,
            last_proposed: last,
            persisted: last,
            outstanding: Outstanding::default(),
            learners: BTreeMap::new(),
            newleader_acks: std::collections::BTreeSet::from([id]),
            half_ticks: 0,
            pending_syncs: VecDeque::new(),
        }
    }

    /// Starts discovery (a one-voter ensemble is established at once).
    pub fn start(&mut self) -> Vec<Command> {
        let mut out = Vec::new();
        info!(sid = self.id, "leading: waiting for followers");
        if let Some(epoch) =
            self.negotiation
                .learner_info(self.id, self.accepted_epoch, &self.ensemble)
        {
            self.epoch_chosen(epoch, &mut out);
        }
        self.debug_validate();
        out
    }

    /// This server's id.
    pub fn id(&self) -> ServerId {
        self.id
    }

    /// The phase.
    pub fn phase(&self) -> LeaderPhase {
        self.phase
    }

    /// The epoch being established or led (0 before a quorum connected).
    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// The last committed (and applied) zxid once established.
    pub fn committed_zxid(&self) -> Zxid {
        self.history.last_zxid()
    }

    /// The last zxid proposed.
    pub fn last_proposed(&self) -> Zxid {
        self.last_proposed
    }

    /// Number of proposals in flight.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Forwarded `sync`s waiting for earlier proposals to commit (`mntr`'s
    /// `zk_pending_syncs`).
    pub fn pending_syncs(&self) -> usize {
        self.pending_syncs.len()
    }

    /// Proposals in flight, oldest first.
    pub fn outstanding_txns(&self) -> impl Iterator<Item = &Txn> {
        self.outstanding.after(Zxid::MIN)
    }

    /// Learners that are synced and serving.
    pub fn active_learners(&self) -> impl Iterator<Item = ServerId> + '_ {
        self.learners
            .iter()
            .filter(|(_, h)| h.phase == HandlerPhase::Active)
            .map(|(s, _)| *s)
    }

    /// Handles one input.
    pub fn step(&mut self, input: Input) -> Vec<Command> {
        let mut out = Vec::new();
        if self.phase == LeaderPhase::Stopped {
            return out;
        }
        match input {
            Input::Message { from, packet } => self.on_packet(from, packet, &mut out),
            Input::Disconnected { peer } => {
                if self.learners.remove(&peer).is_some() {
                    info!(sid = self.id, peer, "learner disconnected");
                }
            }
            Input::Tick => self.on_tick(&mut out),
            Input::Persisted { zxid } => {
                if zxid > self.last_proposed {
                    self.stop(
                        ZabError::BadCompletion {
                            got: zxid,
                            last: self.last_proposed,
                        },
                        &mut out,
                    );
                } else if zxid > self.persisted {
                    self.persisted = zxid;
                    if self.phase == LeaderPhase::Broadcast {
                        self.outstanding.ack(self.id, zxid);
                        self.try_commit(&mut out);
                    }
                }
            }
            Input::LogCompacted {
                up_to,
                snapshot_bytes,
            } => {
                self.history.compact(up_to.min(self.applied));
                self.snapshot_bytes = snapshot_bytes;
            }
        }
        self.debug_validate();
        out
    }

    /// Proposes a txn: returns its zxid and the commands (persist locally, send PROPOSAL).
    /// `Err(ZxidRollover)` means the epoch is exhausted and the leader stopped: go back to
    /// election.
    pub fn propose(&mut self, data: Bytes) -> Result<(Zxid, Vec<Command>), ZabError> {
        if self.phase != LeaderPhase::Broadcast {
            return Err(ZabError::NotLeading);
        }
        if self.outstanding.len() >= self.config.max_outstanding {
            return Err(ZabError::Busy(self.outstanding.len()));
        }
        let counter = if epoch_of(self.last_proposed) == self.epoch {
            counter_of(self.last_proposed)
        } else {
            0
        };
        // ZooKeeper's XidRolloverException: counter 0xffffffff is the last one an epoch has.
        if counter >= 0xffff_ffff {
            warn!(
                sid = self.id,
                epoch = self.epoch,
                "zxid counter exhausted, stepping down"
            );
            self.phase = LeaderPhase::Stopped;
            return Err(ZabError::ZxidRollover(self.epoch));
        }
        let zxid = make(self.epoch, counter + 1);
        let txn = Txn { zxid, data };
        let mut out = vec![Command::Persist {
            txns: vec![txn.clone()],
        }];
        for (sid, h) in &self.learners {
            if h.forwarding && !h.observer {
                out.push(Command::Send {
                    to: *sid,
                    packet: Packet::Proposal(txn.clone()),
                });
            }
        }
        self.outstanding.push(txn);
        self.last_proposed = zxid;
        self.debug_validate();
        Ok((zxid, out))
    }

    /// Answers a learner's REVALIDATE.
    pub fn revalidate_reply(
        &self,
        to: ServerId,
        session_id: i64,
        timeout_ms: i32,
        valid: bool,
    ) -> Vec<Command> {
        if !self.may_answer(to) {
            debug!(
                sid = self.id,
                peer = to,
                "revalidation answer dropped: learner not synced"
            );
            return Vec::new();
        }
        vec![Command::Send {
            to,
            packet: Packet::Revalidate {
                session_id,
                timeout_ms,
                valid,
            },
        }]
    }

    /// Answers go only to learners whose sync is queued: earlier, they would land in the
    /// middle of discovery (a learner that reconnected since it asked).
    fn may_answer(&self, to: ServerId) -> bool {
        self.learners
            .get(&to)
            .is_some_and(|h| h.phase >= HandlerPhase::AwaitNewLeaderAck)
    }

    /// Answers a forwarded `sync` once every proposal made so far has committed.
    pub fn sync_reply(
        &mut self,
        to: ServerId,
        session_id: i64,
        cxid: i32,
    ) -> Result<Vec<Command>, ZabError> {
        if self.phase != LeaderPhase::Broadcast {
            return Err(ZabError::NotLeading);
        }
        match self.outstanding.last_zxid() {
            None if !self.may_answer(to) => Ok(Vec::new()),
            None => Ok(vec![Command::Send {
                to,
                packet: Packet::SyncReply {
                    session_id,
                    cxid,
                    zxid: self.history.last_zxid(),
                },
            }]),
            Some(z) => {
                if self.pending_syncs.len() >= self.config.max_pending_syncs {
                    return Err(ZabError::Busy(self.pending_syncs.len()));
                }
                self.pending_syncs.push_back((z, to, session_id, cxid));
                Ok(Vec::new())
            }
        }
    }

    fn on_packet(&mut self, from: ServerId, packet: Packet, out: &mut Vec<Command>) {
        if let Packet::LearnerInfo(info) = packet {
            self.on_learner_info(from, info, out);
            return;
        }
        let Some(h) = self.learners.get_mut(&from) else {
            self.drop_learner(
                from,
                ZabError::UnexpectedPacket {
                    from,
                    packet: packet.name(),
                    phase: "not connected",
                },
                out,
            );
            return;
        };
        h.idle_half_ticks = 0;
        let phase = h.phase;
        let observer = h.observer;
        match packet {
            Packet::AckEpoch {
                current_epoch,
                last_zxid,
            } if phase == HandlerPhase::AwaitAckEpoch => {
                self.on_ack_epoch(from, observer, current_epoch, last_zxid, out);
            }
            Packet::Ack { zxid } => self.on_ack(from, phase, observer, zxid, out),
            Packet::Ping { touches } => {
                if !touches.is_empty() {
                    out.push(Command::SessionTouches { from, touches });
                }
            }
            Packet::Request(request) if phase >= HandlerPhase::AwaitNewLeaderAck => {
                out.push(Command::Request { from, request });
            }
            Packet::Revalidate {
                session_id,
                timeout_ms,
                ..
            } if phase >= HandlerPhase::AwaitNewLeaderAck => {
                out.push(Command::Revalidate {
                    from,
                    session_id,
                    timeout_ms,
                });
            }
            other => {
                let reason = ZabError::UnexpectedPacket {
                    from,
                    packet: other.name(),
                    phase: phase.name(),
                };
                self.drop_learner(from, reason, out);
            }
        }
    }

    fn on_learner_info(&mut self, from: ServerId, info: LearnerInfo, out: &mut Vec<Command>) {
        let role_ok = if info.observer {
            self.ensemble.is_member(from) && !self.ensemble.is_voter(from)
        } else {
            self.ensemble.is_voter(from)
        };
        if info.sid != from || from == self.id || !role_ok {
            self.drop_learner(from, ZabError::UnknownPeer(from), out);
            return;
        }
        self.outstanding.forget(from);
        if self.learners.remove(&from).is_some() {
            debug!(
                sid = self.id,
                peer = from,
                "learner reconnected, replacing its handler"
            );
        }
        self.learners.insert(
            from,
            Handler {
                observer: info.observer,
                phase: HandlerPhase::AwaitEpoch,
                last_zxid: info.last_zxid,
                idle_half_ticks: 0,
                forwarding: false,
            },
        );
        if self.epoch != 0 && info.accepted_epoch > self.epoch {
            let reason = ZabError::NewerEpochSeen {
                sid: from,
                accepted: info.accepted_epoch,
                epoch: self.epoch,
            };
            self.stop(reason, out);
        } else if self.epoch != 0 {
            self.send_leader_info(from, out);
        } else if !info.observer
            && let Some(epoch) =
                self.negotiation
                    .learner_info(from, info.accepted_epoch, &self.ensemble)
        {
            self.epoch_chosen(epoch, out);
        }
    }

    fn epoch_chosen(&mut self, epoch: i64, out: &mut Vec<Command>) {
        info!(sid = self.id, epoch, "new epoch chosen");
        self.epoch = epoch;
        self.accepted_epoch = epoch;
        out.push(Command::SaveAcceptedEpoch { epoch });
        let waiting: Vec<_> = self
            .learners
            .iter()
            .filter(|(_, h)| h.phase == HandlerPhase::AwaitEpoch)
            .map(|(s, _)| *s)
            .collect();
        for sid in waiting {
            self.send_leader_info(sid, out);
        }
        // The leader acknowledges its own epoch; a one-voter ensemble is done at once.
        let own = (self.current_epoch, self.history.last_zxid());
        if let Ok(true) = self
            .negotiation
            .ack_epoch(self.id, own.0, own.1, own, &self.ensemble)
        {
            self.epoch_acked(out);
        }
    }

    fn send_leader_info(&mut self, sid: ServerId, out: &mut Vec<Command>) {
        if let Some(h) = self.learners.get_mut(&sid) {
            h.phase = HandlerPhase::AwaitAckEpoch;
            out.push(Command::Send {
                to: sid,
                packet: Packet::LeaderInfo {
                    new_epoch: self.epoch,
                },
            });
        }
    }

    fn on_ack_epoch(
        &mut self,
        from: ServerId,
        observer: bool,
        current_epoch: i64,
        last_zxid: Zxid,
        out: &mut Vec<Command>,
    ) {
        if let Some(h) = self.learners.get_mut(&from) {
            h.last_zxid = last_zxid;
            h.phase = HandlerPhase::AwaitEpochQuorum;
        }
        if observer {
            if self.negotiation.acked_quorum() {
                self.sync_learner(from, out);
            }
            return;
        }
        let own = (self.current_epoch, self.history.last_zxid());
        match self
            .negotiation
            .ack_epoch(from, current_epoch, last_zxid, own, &self.ensemble)
        {
            Err(e) => self.stop(e, out),
            Ok(true) => self.epoch_acked(out),
            Ok(false) => {
                if self.negotiation.acked_quorum() {
                    self.sync_learner(from, out);
                }
            }
        }
    }

    fn epoch_acked(&mut self, out: &mut Vec<Command>) {
        info!(
            sid = self.id,
            epoch = self.epoch,
            "epoch acknowledged by a quorum"
        );
        self.current_epoch = self.epoch;
        out.push(Command::SaveCurrentEpoch { epoch: self.epoch });
        self.phase = LeaderPhase::Synchronization;
        let waiting: Vec<_> = self
            .learners
            .iter()
            .filter(|(_, h)| h.phase == HandlerPhase::AwaitEpochQuorum)
            .map(|(s, _)| *s)
            .collect();
        for sid in waiting {
            self.sync_learner(sid, out);
        }
        self.check_newleader_quorum(out);
    }

    fn sync_learner(&mut self, sid: ServerId, out: &mut Vec<Command>) {
        let Some(h) = self.learners.get(&sid) else {
            return;
        };
        let observer = h.observer;
        let peer_last = h.last_zxid;
        let plan = sync::plan(
            &self.history,
            peer_last,
            SyncPolicy {
                snapshot_size_percent: self.config.snapshot_size_percent,
                snapshot_bytes: self.snapshot_bytes,
                applied: self.applied,
            },
        );
        info!(
            sid = self.id,
            learner = sid,
            mode = plan.mode.name(),
            peer_last_zxid = format_args!("{peer_last:#x}"),
            leader_zxid = format_args!("{:#x}", self.history.last_zxid()),
            "synchronising learner"
        );
        out.push(Command::SyncChosen {
            learner: sid,
            mode: plan.mode,
            peer_last_zxid: peer_last,
            synced_to: self.history.last_zxid(),
        });
        match plan.mode {
            SyncMode::Diff => out.push(Command::Send {
                to: sid,
                packet: Packet::Diff { zxid: plan.zxid },
            }),
            SyncMode::Trunc => out.push(Command::Send {
                to: sid,
                packet: Packet::Trunc { zxid: plan.zxid },
            }),
            SyncMode::Snap => out.push(Command::SendSnapshot {
                to: sid,
                zxid: plan.zxid,
            }),
        }
        let (disk, mem) = self.history.txns_after(plan.send_after);
        if let Some((after, up_to)) = disk {
            out.push(Command::SendLogRange {
                to: sid,
                after,
                up_to,
            });
        }
        for txn in mem {
            let zxid = txn.zxid;
            out.push(Command::Send {
                to: sid,
                packet: Packet::Proposal(txn),
            });
            out.push(Command::Send {
                to: sid,
                packet: Packet::Commit { zxid },
            });
        }
        // startForwarding: proposals in flight go to participants, so none is lost.
        if !observer {
            for txn in self.outstanding.after(self.history.last_zxid()) {
                out.push(Command::Send {
                    to: sid,
                    packet: Packet::Proposal(txn.clone()),
                });
            }
        }
        out.push(Command::Send {
            to: sid,
            packet: Packet::NewLeader {
                zxid: make(self.epoch, 0),
                config: Bytes::new(),
            },
        });
        if let Some(h) = self.learners.get_mut(&sid) {
            h.forwarding = true;
            h.phase = HandlerPhase::AwaitNewLeaderAck;
        }
    }

    fn on_ack(
        &mut self,
        from: ServerId,
        phase: HandlerPhase,
        observer: bool,
        zxid: Zxid,
        out: &mut Vec<Command>,
    ) {
        if zxid == make(self.epoch, 0) {
            if phase != HandlerPhase::AwaitNewLeaderAck {
                debug!(
                    sid = self.id,
                    peer = from,
                    "ignoring a repeated NEWLEADER ack"
                );
                return;
            }
            if self.phase == LeaderPhase::Broadcast {
                self.set_phase(from, HandlerPhase::Active);
                out.push(Command::Send {
                    to: from,
                    packet: Packet::UpToDate,
                });
            } else {
                self.set_phase(from, HandlerPhase::AwaitEstablished);
                if !observer {
                    self.newleader_acks.insert(from);
                }
                self.check_newleader_quorum(out);
            }
            return;
        }
        if observer || phase < HandlerPhase::AwaitNewLeaderAck {
            let reason = ZabError::UnexpectedPacket {
                from,
                packet: "ACK",
                phase: phase.name(),
            };
            self.drop_learner(from, reason, out);
            return;
        }
        if zxid > self.last_proposed {
            let reason = ZabError::AckBeyondProposals {
                sid: from,
                zxid,
                last: self.last_proposed,
            };
            self.drop_learner(from, reason, out);
            return;
        }
        if epoch_of(zxid) != self.epoch || zxid <= self.history.last_zxid() {
            return;
        }
        self.outstanding.ack(from, zxid);
        self.try_commit(out);
    }

    fn check_newleader_quorum(&mut self, out: &mut Vec<Command>) {
        if self.phase != LeaderPhase::Synchronization
            || !self.ensemble.is_quorum(self.newleader_acks.iter())
        {
            return;
        }
        info!(
            sid = self.id,
            epoch = self.epoch,
            "established: NEWLEADER acknowledged by a quorum"
        );
        self.phase = LeaderPhase::Broadcast;
        let last = self.history.last_zxid();
        if self.applied < last {
            out.push(Command::Apply { up_to: last });
            self.applied = last;
            self.history.set_floor(last);
        }
        out.push(Command::Serving { epoch: self.epoch });
        let waiting: Vec<_> = self
            .learners
            .iter()
            .filter(|(_, h)| h.phase == HandlerPhase::AwaitEstablished)
            .map(|(s, _)| *s)
            .collect();
        for sid in waiting {
            self.set_phase(sid, HandlerPhase::Active);
            out.push(Command::Send {
                to: sid,
                packet: Packet::UpToDate,
            });
        }
    }

    fn try_commit(&mut self, out: &mut Vec<Command>) {
        let committed = self.outstanding.take_committable(&self.ensemble);
        let Some(last) = committed.last().map(|t| t.zxid) else {
            return;
        };
        for txn in committed {
            self.history.set_floor(txn.zxid);
            self.history.push(&txn);
            for (sid, h) in &self.learners {
                if !h.forwarding {
                    continue;
                }
                let packet = if h.observer {
                    Packet::Inform(txn.clone())
                } else {
                    Packet::Commit { zxid: txn.zxid }
                };
                out.push(Command::Send { to: *sid, packet });
            }
        }
        out.push(Command::Apply { up_to: last });
        self.applied = last;
        while self.pending_syncs.front().is_some_and(|p| p.0 <= last) {
            if let Some((_, to, session_id, cxid)) = self.pending_syncs.pop_front()
                && self.may_answer(to)
            {
                out.push(Command::Send {
                    to,
                    packet: Packet::SyncReply {
                        session_id,
                        cxid,
                        zxid: last,
                    },
                });
            }
        }
    }

    fn on_tick(&mut self, out: &mut Vec<Command>) {
        self.half_ticks += 1;
        let init = 2 * u64::from(self.config.init_limit);
        let sync = 2 * self.config.sync_limit;
        if self.phase != LeaderPhase::Broadcast && self.half_ticks > init {
            let phase = if self.phase == LeaderPhase::Discovery {
                "waiting for a quorum to accept the epoch"
            } else {
                "waiting for a quorum to acknowledge NEWLEADER"
            };
            self.stop(
                ZabError::Timeout {
                    phase,
                    ticks: self.config.init_limit,
                },
                out,
            );
            return;
        }
        let mut dead = Vec::new();
        for (sid, h) in self.learners.iter_mut() {
            h.idle_half_ticks = h.idle_half_ticks.saturating_add(1);
            let limit = if h.phase == HandlerPhase::Active {
                sync
            } else {
                2 * self.config.init_limit
            };
            if h.idle_half_ticks > limit {
                dead.push(*sid);
            } else if h.phase >= HandlerPhase::AwaitNewLeaderAck {
                // Also before the leader is established: a follower that acknowledged
                // NEWLEADER waits for UPTODATE with syncLimit, while other learners may still
                // be receiving snapshots.
                out.push(Command::Send {
                    to: *sid,
                    packet: Packet::Ping {
                        touches: Vec::new(),
                    },
                });
            }
        }
        for sid in dead {
            self.drop_learner(
                sid,
                ZabError::Timeout {
                    phase: "waiting for the learner",
                    ticks: self.config.sync_limit,
                },
                out,
            );
        }
        if self.phase == LeaderPhase::Broadcast {
            let mut synced = vec![self.id];
            synced.extend(
                self.learners
                    .iter()
                    .filter(|(_, h)| h.forwarding && !h.observer && h.idle_half_ticks <= sync)
                    .map(|(s, _)| *s),
            );
            if !self.ensemble.is_quorum(synced.iter()) {
                self.stop(ZabError::QuorumLost { synced }, out);
            }
        }
    }

    fn set_phase(&mut self, sid: ServerId, phase: HandlerPhase) {
        if let Some(h) = self.learners.get_mut(&sid) {
            h.phase = phase;
        }
    }

    fn drop_learner(&mut self, peer: ServerId, reason: ZabError, out: &mut Vec<Command>) {
        warn!(sid = self.id, peer, %reason, "dropping learner");
        self.learners.remove(&peer);
        out.push(Command::Disconnect { peer, reason });
    }

    fn stop(&mut self, reason: ZabError, out: &mut Vec<Command>) {
        warn!(sid = self.id, epoch = self.epoch, %reason, "leader stepping down");
        self.phase = LeaderPhase::Stopped;
        out.push(Command::GoLooking { reason });
    }

    fn debug_validate(&self) {
        if cfg!(debug_assertions)
            && let Err(e) = self.validate()
        {
            panic!("leader {} state invalid: {e}", self.id);
        }
    }

    /// Checks the state's invariants (called after every step in debug builds).
    pub fn validate(&self) -> Result<(), String> {
        if self.current_epoch > self.accepted_epoch {
            return Err(format!(
                "currentEpoch {} > acceptedEpoch {}",
                self.current_epoch, self.accepted_epoch
            ));
        }
        self.history.validate()?;
        let last = self.history.last_zxid();
        if self.applied > last || self.applied < self.history.base() {
            return Err(format!(
                "applied {:#x} outside the history ({:#x}, {:#x}]",
                self.applied,
                self.history.base(),
                last
            ));
        }
        self.outstanding.validate(last)?;
        if self.last_proposed != self.outstanding.last_zxid().unwrap_or(last) {
            return Err("last proposed does not match the proposals".into());
        }
        if self.persisted > self.last_proposed {
            return Err("persisted beyond the last proposal".into());
        }
        if self.phase == LeaderPhase::Broadcast
            && (self.applied != last
                || self.current_epoch != self.epoch
                || self.accepted_epoch != self.epoch)
        {
            return Err("established leader with inconsistent epochs or unapplied commits".into());
        }
        if self.outstanding.len() > self.config.max_outstanding {
            return Err("too many proposals in flight".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_counter_of_an_epoch_is_used_then_the_leader_steps_down() {
        let mut leader = Leader::new(
            1,
            Config::default(),
            Ensemble::new([1], []),
            LeaderStorage {
                accepted_epoch: 0,
                current_epoch: 0,
                applied_zxid: 0,
                history: History::new(0, 10, 100),
                snapshot_bytes: 0,
            },
        );
        let out = leader.start();
        assert!(
            out.contains(&Command::Serving { epoch: 1 }),
            "a one-voter ensemble leads at once"
        );
        // Pretend the epoch is almost exhausted (2^32 proposals are too many for a test).
        leader.last_proposed = make(1, 0xffff_fffe);
        leader.history = History::new(make(1, 0xffff_fffe), 10, 100);
        leader.applied = make(1, 0xffff_fffe);
        leader.persisted = make(1, 0xffff_fffe);
        let (zxid, _) = leader.propose(Bytes::from_static(b"last")).unwrap();
        assert_eq!(zxid, make(1, 0xffff_ffff));
        assert_eq!(leader.propose(Bytes::new()), Err(ZabError::ZxidRollover(1)));
        assert_eq!(leader.phase(), LeaderPhase::Stopped);
        assert!(leader.step(Input::Tick).is_empty());
    }
}
