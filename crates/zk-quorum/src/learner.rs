//! The learner core shared by [`crate::Follower`] and [`crate::Observer`]
//! (ZooKeeper's `Learner.registerWithLeader` / `syncWithLeader` and the follower's and
//! observer's main loops).

use std::collections::BTreeMap;

use tracing::{debug, info, warn};
use zk_proto::zxid::{counter_of, epoch_of, make};

use crate::broadcast::PendingCommits;
use crate::command::{Command, Input};
use crate::discovery::answer_leader_info;
use crate::error::ZabError;
use crate::sync::{SnapshotReceiver, SyncMode};
use crate::types::{
    Config, ForwardedRequest, LearnerInfo, Packet, ServerId, SessionTouch, Txn, Zxid,
};

/// What a learner starts from: its durable state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LearnerStorage {
    /// Persisted acceptedEpoch.
    pub accepted_epoch: i64,
    /// Persisted currentEpoch.
    pub current_epoch: i64,
    /// The last zxid in the durable log (or of the snapshot when the log is empty).
    pub last_logged_zxid: Zxid,
    /// The zxid the state machine is at (≤ `last_logged_zxid`).
    pub applied_zxid: Zxid,
}

/// Where a learner is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LearnerPhase {
    /// FOLLOWERINFO / OBSERVERINFO sent, waiting for LEADERINFO.
    Discovery,
    /// ACKEPOCH sent, waiting for DIFF, TRUNC or SNAP.
    AwaitSyncMode,
    /// Receiving the sync (snapshot chunks, PROPOSAL + COMMIT pairs) until NEWLEADER.
    Syncing(SyncMode),
    /// NEWLEADER received: making the synced txns durable before saving currentEpoch.
    PersistingNewLeader,
    /// NEWLEADER acknowledged, waiting for UPTODATE.
    AwaitUpToDate,
    /// Up to date: logging, acknowledging and applying the broadcast.
    Broadcast,
    /// Gave up; the driver goes back to election.
    Stopped,
}

impl LearnerPhase {
    fn name(self) -> &'static str {
        match self {
            LearnerPhase::Discovery => "waiting for LEADERINFO",
            LearnerPhase::AwaitSyncMode => "waiting for DIFF, TRUNC or SNAP",
            LearnerPhase::Syncing(_) => "synchronising",
            LearnerPhase::PersistingNewLeader => "persisting before the NEWLEADER ack",
            LearnerPhase::AwaitUpToDate => "waiting for UPTODATE",
            LearnerPhase::Broadcast => "following",
            LearnerPhase::Stopped => "stopped",
        }
    }
}

#[derive(Debug)]
pub(crate) struct Learner {
    id: ServerId,
    leader: ServerId,
    observer: bool,
    config: Config,
    accepted_epoch: i64,
    current_epoch: i64,
    last_logged: Zxid,
    persisted: Zxid,
    applied: Zxid,
    committed: Zxid,
    new_epoch: i64,
    phase: LearnerPhase,
    sync_buffer: Vec<Txn>,
    sync_bytes: u64,
    snapshot: Option<SnapshotReceiver>,
    staged_snapshot: Option<Zxid>,
    newleader_target: Zxid,
    pending: PendingCommits,
    acked: Zxid,
    idle_half_ticks: u32,
    touches: BTreeMap<i64, i32>,
}

impl Learner {
    pub(crate) fn new(
        id: ServerId,
        leader: ServerId,
        observer: bool,
        config: Config,
        s: LearnerStorage,
    ) -> Self {
        Self {
            id,
            leader,
            observer,
            config,
            accepted_epoch: s.accepted_epoch,
            current_epoch: s.current_epoch,
            last_logged: s.last_logged_zxid,
            persisted: s.last_logged_zxid,
            applied: s.applied_zxid,
            committed: s.applied_zxid,
            new_epoch: 0,
            phase: LearnerPhase::Discovery,
            sync_buffer: Vec::new(),
            sync_bytes: 0,
            snapshot: None,
            staged_snapshot: None,
            newleader_target: 0,
            pending: PendingCommits::default(),
            acked: 0,
            idle_half_ticks: 0,
            touches: BTreeMap::new(),
        }
    }

    pub(crate) fn start(&mut self) -> Vec<Command> {
        info!(
            sid = self.id,
            leader = self.leader,
            observer = self.observer,
            "connecting to leader"
        );
        vec![Command::Send {
            to: self.leader,
            packet: Packet::LearnerInfo(LearnerInfo {
                sid: self.id,
                accepted_epoch: self.accepted_epoch,
                last_zxid: self.last_logged,
                observer: self.observer,
            }),
        }]
    }

    pub(crate) fn leader(&self) -> ServerId {
        self.leader
    }

    pub(crate) fn id(&self) -> ServerId {
        self.id
    }

    pub(crate) fn phase(&self) -> LearnerPhase {
        self.phase
    }

    pub(crate) fn epoch(&self) -> i64 {
        self.new_epoch
    }

    pub(crate) fn applied_zxid(&self) -> Zxid {
        self.applied
    }

    pub(crate) fn last_logged_zxid(&self) -> Zxid {
        self.last_logged
    }

    pub(crate) fn step(&mut self, input: Input) -> Vec<Command> {
        let mut out = Vec::new();
        if self.phase == LearnerPhase::Stopped {
            return out;
        }
        let result = match input {
            Input::Message { from, packet } if from == self.leader => {
                self.idle_half_ticks = 0;
                self.on_packet(packet, &mut out)
            }
            Input::Message { from, packet } => {
                debug!(
                    sid = self.id,
                    from,
                    packet = packet.name(),
                    "ignoring a packet from a non-leader"
                );
                Ok(())
            }
            Input::Disconnected { peer } if peer == self.leader => {
                Err(ZabError::Disconnected(peer))
            }
            Input::Disconnected { .. } | Input::LogCompacted { .. } => Ok(()),
            Input::Tick => self.on_tick(&mut out),
            Input::Persisted { zxid } => self.on_persisted(zxid, &mut out),
        };
        if let Err(reason) = result {
            self.stop(reason, &mut out);
        }
        self.debug_validate();
        out
    }

    pub(crate) fn forward_request(
        &mut self,
        request: ForwardedRequest,
    ) -> Result<Vec<Command>, ZabError> {
        if self.phase != LearnerPhase::Broadcast {
            return Err(ZabError::NotFollowing);
        }
        Ok(vec![Command::Send {
            to: self.leader,
            packet: Packet::Request(request),
        }])
    }

    pub(crate) fn revalidate(
        &mut self,
        session_id: i64,
        timeout_ms: i32,
    ) -> Result<Vec<Command>, ZabError> {
        if self.phase != LearnerPhase::Broadcast {
            return Err(ZabError::NotFollowing);
        }
        let packet = Packet::Revalidate {
            session_id,
            timeout_ms,
            valid: false,
        };
        Ok(vec![Command::Send {
            to: self.leader,
            packet,
        }])
    }

    pub(crate) fn touch_session(&mut self, touch: SessionTouch) -> Result<(), ZabError> {
        if self.touches.len() >= self.config.max_pending_touches
            && !self.touches.contains_key(&touch.session_id)
        {
            return Err(ZabError::Busy(self.touches.len()));
        }
        self.touches.insert(touch.session_id, touch.timeout_ms);
        Ok(())
    }

    fn on_tick(&mut self, out: &mut Vec<Command>) -> Result<(), ZabError> {
        self.idle_half_ticks = self.idle_half_ticks.saturating_add(1);
        let limit = match self.phase {
            LearnerPhase::AwaitUpToDate | LearnerPhase::Broadcast => self.config.sync_limit,
            _ => self.config.init_limit,
        };
        if self.idle_half_ticks > 2 * limit {
            return Err(ZabError::Timeout {
                phase: self.phase.name(),
                ticks: limit,
            });
        }
        // While a (possibly long) sync streams in, the leader's PINGs queue up behind it:
        // tell the leader this learner is alive so it does not drop it after initLimit.
        if matches!(
            self.phase,
            LearnerPhase::AwaitSyncMode
                | LearnerPhase::Syncing(_)
                | LearnerPhase::PersistingNewLeader
        ) {
            out.push(Command::Send {
                to: self.leader,
                packet: Packet::Ping {
                    touches: Vec::new(),
                },
            });
        }
        Ok(())
    }

    fn unexpected(&self, packet: &Packet) -> ZabError {
        ZabError::UnexpectedPacket {
            from: self.leader,
            packet: packet.name(),
            phase: self.phase.name(),
        }
    }

    /// The zxid the next synced or broadcast txn must follow.
    fn tail(&self) -> Zxid {
        self.sync_buffer
            .last()
            .map(|t| t.zxid)
            .or(self.staged_snapshot)
            .unwrap_or(self.last_logged)
    }

    /// Checks that `zxid` may follow the tail: no epoch from the future, no gap, no repeat.
    fn check_next(&self, zxid: Zxid, same_epoch_only: bool) -> Result<(), ZabError> {
        let epoch = epoch_of(zxid);
        if epoch > self.new_epoch || (same_epoch_only && epoch != self.new_epoch) {
            return Err(ZabError::WrongEpoch {
                zxid,
                epoch: self.new_epoch,
            });
        }
        let last = self.tail();
        let ok = if epoch == epoch_of(last) {
            counter_of(zxid) == counter_of(last) + 1
        } else {
            epoch > epoch_of(last) && counter_of(zxid) == 1
        };
        if !ok {
            return Err(ZabError::NotContiguous { last, got: zxid });
        }
        Ok(())
    }

    fn on_packet(&mut self, packet: Packet, out: &mut Vec<Command>) -> Result<(), ZabError> {
        if let Packet::Ping { .. } = packet {
            if matches!(self.phase, LearnerPhase::Discovery) {
                return Err(self.unexpected(&packet));
            }
            let touches = if self.phase == LearnerPhase::Broadcast {
                std::mem::take(&mut self.touches)
                    .into_iter()
                    .map(|(session_id, timeout_ms)| SessionTouch {
                        session_id,
                        timeout_ms,
                    })
                    .collect()
            } else {
                Vec::new()
            };
            out.push(Command::Send {
                to: self.leader,
                packet: Packet::Ping { touches },
            });
            return Ok(());
        }
        match self.phase {
            LearnerPhase::Discovery => self.in_discovery(packet, out),
            LearnerPhase::AwaitSyncMode => self.in_await_sync_mode(packet, out),
            LearnerPhase::Syncing(_) => self.in_syncing(packet, out),
            LearnerPhase::PersistingNewLeader
            | LearnerPhase::AwaitUpToDate
            | LearnerPhase::Broadcast => self.in_broadcast(packet, out),
            LearnerPhase::Stopped => Ok(()),
        }
    }

    fn in_discovery(&mut self, packet: Packet, out: &mut Vec<Command>) -> Result<(), ZabError> {
        let Packet::LeaderInfo { new_epoch } = packet else {
            return Err(self.unexpected(&packet));
        };
        let (save, ack) = answer_leader_info(
            self.accepted_epoch,
            self.current_epoch,
            self.last_logged,
            new_epoch,
        )?;
        if save {
            self.accepted_epoch = new_epoch;
            out.push(Command::SaveAcceptedEpoch { epoch: new_epoch });
        }
        self.new_epoch = new_epoch;
        out.push(Command::Send {
            to: self.leader,
            packet: ack,
        });
        self.phase = LearnerPhase::AwaitSyncMode;
        Ok(())
    }

    fn in_await_sync_mode(
        &mut self,
        packet: Packet,
        out: &mut Vec<Command>,
    ) -> Result<(), ZabError> {
        match packet {
            Packet::Diff { .. } => {
                // Everything this learner logged is in the leader's history: committed once
                // the leader is established (applied at UPTODATE with the rest).
                self.committed = self.committed.max(self.last_logged);
                self.phase = LearnerPhase::Syncing(SyncMode::Diff);
            }
            Packet::Trunc { zxid } => {
                if zxid < self.applied {
                    return Err(ZabError::TruncateBelowApplied {
                        to: zxid,
                        applied: self.applied,
                    });
                }
                if zxid > self.last_logged {
                    return Err(ZabError::NotContiguous {
                        last: self.last_logged,
                        got: zxid,
                    });
                }
                out.push(Command::Truncate { to: zxid });
                self.last_logged = zxid;
                self.persisted = self.persisted.min(zxid);
                // What is left is in the leader's history, like after a DIFF.
                self.committed = self.committed.max(zxid);
                self.phase = LearnerPhase::Syncing(SyncMode::Trunc);
            }
            Packet::Snap { zxid, total_bytes } => {
                if epoch_of(zxid) > self.new_epoch {
                    return Err(ZabError::WrongEpoch {
                        zxid,
                        epoch: self.new_epoch,
                    });
                }
                self.snapshot = Some(SnapshotReceiver::new(
                    zxid,
                    total_bytes,
                    self.config.max_snapshot_bytes,
                )?);
                self.phase = LearnerPhase::Syncing(SyncMode::Snap);
            }
            other => return Err(self.unexpected(&other)),
        }
        Ok(())
    }

    fn in_syncing(&mut self, packet: Packet, out: &mut Vec<Command>) -> Result<(), ZabError> {
        if let Some(rx) = self.snapshot.as_mut() {
            let Packet::SnapChunk {
                offset,
                data,
                last,
                crc32c,
            } = packet
            else {
                return Err(ZabError::Snapshot("stream ended before its last chunk"));
            };
            let zxid = rx.zxid();
            let done = rx.chunk(offset, &data, last, crc32c)?;
            out.push(Command::SnapshotChunk { zxid, offset, data });
            if done {
                // Staged only: the log and state machine change at NEWLEADER, atomically
                // with the txns that follow, so a crash in between loses nothing.
                self.snapshot = None;
                self.staged_snapshot = Some(zxid);
                self.committed = zxid;
            }
            return Ok(());
        }
        match packet {
            Packet::Proposal(txn) => {
                self.check_next(txn.zxid, false)?;
                self.sync_bytes += txn.data.len() as u64;
                if self.sync_bytes > self.config.max_sync_bytes {
                    return Err(ZabError::SyncTooLarge {
                        limit: self.config.max_sync_bytes,
                    });
                }
                self.pending.push(txn.zxid);
                self.sync_buffer.push(txn);
            }
            Packet::Commit { zxid } => {
                self.pending.commit(zxid)?;
                self.committed = zxid;
            }
            Packet::NewLeader { zxid, .. } => {
                if zxid != make(self.new_epoch, 0) {
                    return Err(ZabError::WrongEpoch {
                        zxid,
                        epoch: self.new_epoch,
                    });
                }
                // ZOOKEEPER-4643/4646: every synced txn is durable before currentEpoch is
                // saved and NEWLEADER acknowledged.
                let txns = std::mem::take(&mut self.sync_buffer);
                self.sync_bytes = 0;
                if let Some(snap) = self.staged_snapshot.take() {
                    self.last_logged = txns.last().map_or(snap, |t| t.zxid);
                    self.persisted = self.last_logged;
                    self.applied = snap;
                    self.committed = self.committed.max(snap);
                    out.push(Command::InstallSnapshot { zxid: snap, txns });
                } else if let Some(last) = txns.last() {
                    self.last_logged = last.zxid;
                    out.push(Command::Persist { txns });
                }
                self.newleader_target = self.last_logged;
                self.phase = LearnerPhase::PersistingNewLeader;
                if self.persisted >= self.newleader_target {
                    self.ack_newleader(out);
                }
            }
            other => return Err(self.unexpected(&other)),
        }
        Ok(())
    }

    fn in_broadcast(&mut self, packet: Packet, out: &mut Vec<Command>) -> Result<(), ZabError> {
        match packet {
            Packet::Proposal(txn) if !self.observer => {
                self.check_next(txn.zxid, true)?;
                if self.pending.len() >= 2 * self.config.max_outstanding.max(1) {
                    return Err(ZabError::Busy(self.pending.len()));
                }
                self.last_logged = txn.zxid;
                self.pending.push(txn.zxid);
                out.push(Command::Persist { txns: vec![txn] });
            }
            Packet::Commit { zxid } if !self.observer => {
                self.pending.commit(zxid)?;
                self.committed = zxid;
                if self.phase == LearnerPhase::Broadcast {
                    self.applied = zxid;
                    out.push(Command::Apply { up_to: zxid });
                }
            }
            Packet::Inform(txn) if self.observer => {
                self.check_next(txn.zxid, true)?;
                let zxid = txn.zxid;
                self.last_logged = zxid;
                self.committed = zxid;
                out.push(Command::Persist { txns: vec![txn] });
                if self.phase == LearnerPhase::Broadcast {
                    self.applied = zxid;
                    out.push(Command::Apply { up_to: zxid });
                }
            }
            Packet::UpToDate if self.phase == LearnerPhase::AwaitUpToDate => {
                info!(sid = self.id, epoch = self.new_epoch, "up to date, serving");
                if self.committed > self.applied {
                    self.applied = self.committed;
                    out.push(Command::Apply {
                        up_to: self.committed,
                    });
                }
                self.phase = LearnerPhase::Broadcast;
                out.push(Command::Serving {
                    epoch: self.new_epoch,
                });
            }
            Packet::Revalidate {
                session_id,
                timeout_ms,
                valid,
            } => {
                // Also while finishing a sync: an answer to a question asked on an earlier
                // connection may arrive then.
                out.push(Command::RevalidateReply {
                    session_id,
                    timeout_ms,
                    valid,
                });
            }
            Packet::SyncReply {
                session_id,
                cxid,
                zxid,
            } => {
                out.push(Command::SyncReply {
                    session_id,
                    cxid,
                    zxid,
                });
            }
            other => return Err(self.unexpected(&other)),
        }
        Ok(())
    }

    fn on_persisted(&mut self, zxid: Zxid, out: &mut Vec<Command>) -> Result<(), ZabError> {
        if zxid > self.last_logged {
            return Err(ZabError::BadCompletion {
                got: zxid,
                last: self.last_logged,
            });
        }
        if zxid <= self.persisted {
            return Ok(());
        }
        self.persisted = zxid;
        match self.phase {
            LearnerPhase::PersistingNewLeader if self.persisted >= self.newleader_target => {
                self.ack_newleader(out)
            }
            LearnerPhase::AwaitUpToDate | LearnerPhase::Broadcast => self.ack_persisted(out),
            _ => {}
        }
        Ok(())
    }

    fn ack_newleader(&mut self, out: &mut Vec<Command>) {
        self.current_epoch = self.new_epoch;
        out.push(Command::SaveCurrentEpoch {
            epoch: self.new_epoch,
        });
        let zxid = make(self.new_epoch, 0);
        out.push(Command::Send {
            to: self.leader,
            packet: Packet::Ack { zxid },
        });
        self.acked = zxid;
        self.phase = LearnerPhase::AwaitUpToDate;
        self.ack_persisted(out);
    }

    fn ack_persisted(&mut self, out: &mut Vec<Command>) {
        if !self.observer && self.persisted > self.acked {
            self.acked = self.persisted;
            out.push(Command::Send {
                to: self.leader,
                packet: Packet::Ack {
                    zxid: self.persisted,
                },
            });
        }
    }

    fn stop(&mut self, reason: ZabError, out: &mut Vec<Command>) {
        warn!(sid = self.id, leader = self.leader, %reason, "leaving the leader");
        if self.snapshot.take().is_some() || self.staged_snapshot.take().is_some() {
            out.push(Command::AbortSnapshot);
        }
        self.sync_buffer.clear();
        self.phase = LearnerPhase::Stopped;
        out.push(Command::GoLooking { reason });
    }

    fn debug_validate(&self) {
        if cfg!(debug_assertions)
            && let Err(e) = self.validate()
        {
            panic!("learner {} state invalid: {e}", self.id);
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.current_epoch > self.accepted_epoch {
            return Err(format!(
                "currentEpoch {} > acceptedEpoch {}",
                self.current_epoch, self.accepted_epoch
            ));
        }
        if self.phase == LearnerPhase::Stopped {
            return Ok(());
        }
        let receiving_snapshot = self.snapshot.is_some() || self.staged_snapshot.is_some();
        if self.applied > self.committed && !receiving_snapshot {
            return Err(format!(
                "applied {:#x} > committed {:#x}",
                self.applied, self.committed
            ));
        }
        if self.committed > self.tail() {
            return Err(format!(
                "committed {:#x} > last logged {:#x}",
                self.committed,
                self.tail()
            ));
        }
        if self.persisted > self.last_logged {
            return Err(format!(
                "persisted {:#x} > last logged {:#x}",
                self.persisted, self.last_logged
            ));
        }
        if self.phase == LearnerPhase::Broadcast && self.applied != self.committed {
            return Err("following with committed txns not applied".into());
        }
        if self.acked > self.persisted && self.acked != make(self.new_epoch, 0) {
            return Err(format!(
                "acked {:#x} before it was persisted ({:#x})",
                self.acked, self.persisted
            ));
        }
        if self.sync_bytes > self.config.max_sync_bytes {
            return Err("sync buffer over its bound".into());
        }
        Ok(())
    }
}

/// Defines a public learner core (follower or observer) over [`Learner`].
macro_rules! learner_core {
    ($(#[$doc:meta])* $name:ident, observer = $observer:expr) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name {
            inner: $crate::learner::Learner,
        }

        impl $name {
            /// A learner of `leader` starting from its durable state.
            pub fn new(
                id: $crate::types::ServerId,
                leader: $crate::types::ServerId,
                config: $crate::types::Config,
                storage: $crate::learner::LearnerStorage,
            ) -> Self {
                Self { inner: $crate::learner::Learner::new(id, leader, $observer, config, storage) }
            }

            /// Connects: the FOLLOWERINFO / OBSERVERINFO to send.
            pub fn start(&mut self) -> Vec<$crate::command::Command> {
                self.inner.start()
            }

            /// Handles one input.
            pub fn step(&mut self, input: $crate::command::Input) -> Vec<$crate::command::Command> {
                self.inner.step(input)
            }

            /// Forwards a client write to the leader (only once up to date).
            pub fn forward_request(
                &mut self,
                request: $crate::types::ForwardedRequest,
            ) -> Result<Vec<$crate::command::Command>, $crate::error::ZabError> {
                self.inner.forward_request(request)
            }

            /// Asks the leader whether a reconnecting session is valid.
            pub fn revalidate(
                &mut self,
                session_id: i64,
                timeout_ms: i32,
            ) -> Result<Vec<$crate::command::Command>, $crate::error::ZabError> {
                self.inner.revalidate(session_id, timeout_ms)
            }

            /// Records a session as active; reported in the next PING answer.
            pub fn touch_session(
                &mut self,
                touch: $crate::types::SessionTouch,
            ) -> Result<(), $crate::error::ZabError> {
                self.inner.touch_session(touch)
            }

            /// This server's id.
            pub fn id(&self) -> $crate::types::ServerId {
                self.inner.id()
            }

            /// The leader this learner follows.
            pub fn leader(&self) -> $crate::types::ServerId {
                self.inner.leader()
            }

            /// The phase.
            pub fn phase(&self) -> $crate::learner::LearnerPhase {
                self.inner.phase()
            }

            /// The epoch from LEADERINFO (0 before).
            pub fn epoch(&self) -> i64 {
                self.inner.epoch()
            }

            /// The zxid the state machine is at.
            pub fn applied_zxid(&self) -> $crate::types::Zxid {
                self.inner.applied_zxid()
            }

            /// The last zxid handed out for logging.
            pub fn last_logged_zxid(&self) -> $crate::types::Zxid {
                self.inner.last_logged_zxid()
            }

            /// Checks the state's invariants (called after every step in debug builds).
            pub fn validate(&self) -> Result<(), String> {
                self.inner.validate()
            }
        }
    };
}

pub(crate) use learner_core;
