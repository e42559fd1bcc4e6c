//! The values the cores exchange: txns, server ids, typed packets and the configuration.

use bytes::Bytes;
use zk_proto::peer::quorum as pb;
use zk_proto::peer::quorum::quorum_packet::Packet as PbPacket;

pub use zk_proto::zxid::Zxid;

use crate::error::DecodeError;

/// A server id (ZooKeeper's `myid` / `sid`).
pub type ServerId = u64;

/// The protocol version sent in FOLLOWERINFO and LEADERINFO (ZooKeeper's `0x10000`).
pub const PROTOCOL_VERSION: u32 = 0x10000;

/// Largest snapshot chunk the cores emit or accept (1 MiB).
pub const MAX_SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

/// An opaque replicated txn: the bytes Zab agrees on, and their zxid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Txn {
    /// The zxid the leader gave the txn.
    pub zxid: Zxid,
    /// The txn itself; Zab never looks inside.
    pub data: Bytes,
}

impl Txn {
    /// A txn from a zxid and its bytes.
    pub fn new(zxid: Zxid, data: impl Into<Bytes>) -> Self {
        Self {
            zxid,
            data: data.into(),
        }
    }
}

/// One `(session id, timeout)` pair a learner reports in its PING answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionTouch {
    /// The session that was active on the learner.
    pub session_id: i64,
    /// Its negotiated timeout.
    pub timeout_ms: i32,
}

/// A client write a learner forwards to the leader (REQUEST).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardedRequest {
    /// The client's session.
    pub session_id: i64,
    /// The client's request id.
    pub cxid: i32,
    /// The ZooKeeper op code.
    pub op_type: i32,
    /// The request body, opaque to Zab.
    pub request: Bytes,
    /// The `(scheme, id)` pairs the client authenticated with.
    pub auth: Vec<(String, String)>,
}

/// FOLLOWERINFO / OBSERVERINFO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LearnerInfo {
    /// The learner's id.
    pub sid: ServerId,
    /// The learner's acceptedEpoch.
    pub accepted_epoch: i64,
    /// The last zxid in the learner's log.
    pub last_zxid: Zxid,
    /// OBSERVERINFO when true.
    pub observer: bool,
}

/// A Zab packet, typed; converts to and from the Protobuf [`pb::QuorumPacket`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    /// FOLLOWERINFO / OBSERVERINFO, learner → leader.
    LearnerInfo(LearnerInfo),
    /// LEADERINFO, leader → learner: the proposed epoch.
    LeaderInfo {
        /// The new epoch.
        new_epoch: i64,
    },
    /// ACKEPOCH, learner → leader; `current_epoch == -1` means "already accepted this epoch".
    AckEpoch {
        /// The learner's currentEpoch, or -1.
        current_epoch: i64,
        /// The last zxid in the learner's log.
        last_zxid: Zxid,
    },
    /// DIFF: the missing txns follow as PROPOSAL + COMMIT pairs.
    Diff {
        /// The leader's last committed zxid.
        zxid: Zxid,
    },
    /// TRUNC: drop every logged txn after `zxid`.
    Trunc {
        /// The zxid to truncate to.
        zxid: Zxid,
    },
    /// SNAP: a snapshot follows in chunks.
    Snap {
        /// The zxid of the snapshot.
        zxid: Zxid,
        /// Its size.
        total_bytes: u64,
    },
    /// One chunk of a snapshot.
    SnapChunk {
        /// Where the chunk starts in the snapshot.
        offset: u64,
        /// The bytes.
        data: Bytes,
        /// True on the last chunk.
        last: bool,
        /// crc32c of `data`.
        crc32c: u32,
    },
    /// NEWLEADER: end of the sync; `zxid = newEpoch << 32`.
    NewLeader {
        /// `newEpoch << 32`.
        zxid: Zxid,
        /// The leader's configuration bytes (opaque).
        config: Bytes,
    },
    /// ACK: of NEWLEADER (`zxid = newEpoch << 32`) or of every proposal up to `zxid`.
    Ack {
        /// The acknowledged zxid.
        zxid: Zxid,
    },
    /// UPTODATE: the leader is established; the learner may serve.
    UpToDate,
    /// PROPOSAL.
    Proposal(Txn),
    /// COMMIT.
    Commit {
        /// The committed zxid.
        zxid: Zxid,
    },
    /// INFORM: a committed txn, to observers.
    Inform(Txn),
    /// PING: empty from the leader, the session touches from a learner.
    Ping {
        /// Sessions active on the learner.
        touches: Vec<SessionTouch>,
    },
    /// REQUEST: a forwarded client write.
    Request(ForwardedRequest),
    /// REVALIDATE: question (learner → leader) or answer (leader → learner).
    Revalidate {
        /// The session.
        session_id: i64,
        /// Its timeout.
        timeout_ms: i32,
        /// The answer.
        valid: bool,
    },
    /// SYNC: the answer to a forwarded `sync`.
    SyncReply {
        /// The session.
        session_id: i64,
        /// The request id.
        cxid: i32,
        /// The leader's last committed zxid when it answered.
        zxid: Zxid,
    },
}

impl Packet {
    /// ZooKeeper's name of the packet type, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Packet::LearnerInfo(i) if i.observer => "OBSERVERINFO",
            Packet::LearnerInfo(_) => "FOLLOWERINFO",
            Packet::LeaderInfo { .. } => "LEADERINFO",
            Packet::AckEpoch { .. } => "ACKEPOCH",
            Packet::Diff { .. } => "DIFF",
            Packet::Trunc { .. } => "TRUNC",
            Packet::Snap { .. } => "SNAP",
            Packet::SnapChunk { .. } => "SNAP chunk",
            Packet::NewLeader { .. } => "NEWLEADER",
            Packet::Ack { .. } => "ACK",
            Packet::UpToDate => "UPTODATE",
            Packet::Proposal(_) => "PROPOSAL",
            Packet::Commit { .. } => "COMMIT",
            Packet::Inform(_) => "INFORM",
            Packet::Ping { .. } => "PING",
            Packet::Request(_) => "REQUEST",
            Packet::Revalidate { .. } => "REVALIDATE",
            Packet::SyncReply { .. } => "SYNC",
        }
    }
}

impl From<Packet> for pb::QuorumPacket {
    fn from(p: Packet) -> Self {
        let packet = match p {
            Packet::LearnerInfo(i) => PbPacket::LearnerInfo(pb::LearnerInfo {
                sid: i.sid,
                accepted_epoch: i.accepted_epoch,
                last_zxid: i.last_zxid,
                protocol_version: PROTOCOL_VERSION,
                config_version: 0,
                observer: i.observer,
            }),
            Packet::LeaderInfo { new_epoch } => PbPacket::LeaderInfo(pb::LeaderInfo {
                new_epoch,
                protocol_version: PROTOCOL_VERSION,
            }),
            Packet::AckEpoch {
                current_epoch,
                last_zxid,
            } => PbPacket::AckEpoch(pb::AckEpoch {
                current_epoch,
                last_zxid,
            }),
            Packet::Diff { zxid } => PbPacket::Diff(pb::Diff { zxid }),
            Packet::Trunc { zxid } => PbPacket::Trunc(pb::Trunc { zxid }),
            Packet::Snap { zxid, total_bytes } => {
                PbPacket::Snap(pb::SnapHeader { zxid, total_bytes })
            }
            Packet::SnapChunk {
                offset,
                data,
                last,
                crc32c,
            } => PbPacket::SnapChunk(pb::SnapChunk {
                offset,
                data: data.to_vec(),
                last,
                crc32c,
            }),
            Packet::NewLeader { zxid, config } => PbPacket::NewLeader(pb::NewLeader {
                zxid,
                config: config.to_vec(),
            }),
            Packet::Ack { zxid } => PbPacket::Ack(pb::Ack { zxid }),
            Packet::UpToDate => PbPacket::UpToDate(pb::UpToDate {}),
            Packet::Proposal(t) => PbPacket::Proposal(pb::Proposal {
                zxid: t.zxid,
                txn: t.data.to_vec(),
            }),
            Packet::Commit { zxid } => PbPacket::Commit(pb::Commit { zxid }),
            Packet::Inform(t) => PbPacket::Inform(pb::Inform {
                zxid: t.zxid,
                txn: t.data.to_vec(),
            }),
            Packet::Ping { touches } => PbPacket::Ping(pb::Ping {
                touches: touches
                    .into_iter()
                    .map(|t| pb::SessionTouch {
                        session_id: t.session_id,
                        timeout_ms: t.timeout_ms,
                    })
                    .collect(),
            }),
            Packet::Request(r) => PbPacket::Request(pb::Request {
                session_id: r.session_id,
                cxid: r.cxid,
                op_type: r.op_type,
                request: r.request.to_vec(),
                auth: r
                    .auth
                    .into_iter()
                    .map(|(scheme, id)| pb::AuthId { scheme, id })
                    .collect(),
            }),
            Packet::Revalidate {
                session_id,
                timeout_ms,
                valid,
            } => PbPacket::Revalidate(pb::Revalidate {
                session_id,
                timeout_ms,
                valid,
            }),
            Packet::SyncReply {
                session_id,
                cxid,
                zxid,
            } => PbPacket::Sync(pb::SyncReply {
                session_id,
                cxid,
                zxid,
            }),
        };
        pb::QuorumPacket {
            packet: Some(packet),
        }
    }
}

impl TryFrom<pb::QuorumPacket> for Packet {
    type Error = DecodeError;

    fn try_from(p: pb::QuorumPacket) -> Result<Self, DecodeError> {
        let packet = p.packet.ok_or(DecodeError::Empty)?;
        Ok(match packet {
            PbPacket::LearnerInfo(i) => {
                if i.protocol_version < PROTOCOL_VERSION {
                    return Err(DecodeError::ProtocolVersion(i.protocol_version));
                }
                Packet::LearnerInfo(LearnerInfo {
                    sid: i.sid,
                    accepted_epoch: i.accepted_epoch,
                    last_zxid: i.last_zxid,
                    observer: i.observer,
                })
            }
            PbPacket::LeaderInfo(l) => {
                if l.protocol_version < PROTOCOL_VERSION {
                    return Err(DecodeError::ProtocolVersion(l.protocol_version));
                }
                Packet::LeaderInfo {
                    new_epoch: l.new_epoch,
                }
            }
            PbPacket::AckEpoch(a) => Packet::AckEpoch {
                current_epoch: a.current_epoch,
                last_zxid: a.last_zxid,
            },
            PbPacket::Diff(d) => Packet::Diff { zxid: d.zxid },
            PbPacket::Trunc(t) => Packet::Trunc { zxid: t.zxid },
            PbPacket::Snap(s) => Packet::Snap {
                zxid: s.zxid,
                total_bytes: s.total_bytes,
            },
            PbPacket::SnapChunk(c) => {
                if c.data.len() > MAX_SNAPSHOT_CHUNK_BYTES {
                    return Err(DecodeError::ChunkTooLarge(c.data.len()));
                }
                Packet::SnapChunk {
                    offset: c.offset,
                    data: Bytes::from(c.data),
                    last: c.last,
                    crc32c: c.crc32c,
                }
            }
            PbPacket::NewLeader(n) => Packet::NewLeader {
                zxid: n.zxid,
                config: Bytes::from(n.config),
            },
            PbPacket::Ack(a) => Packet::Ack { zxid: a.zxid },
            PbPacket::UpToDate(_) => Packet::UpToDate,
            PbPacket::Proposal(p) => Packet::Proposal(Txn::new(p.zxid, p.txn)),
            PbPacket::Commit(c) => Packet::Commit { zxid: c.zxid },
            PbPacket::Inform(i) => Packet::Inform(Txn::new(i.zxid, i.txn)),
            PbPacket::Ping(p) => Packet::Ping {
                touches: p
                    .touches
                    .into_iter()
                    .map(|t| SessionTouch {
                        session_id: t.session_id,
                        timeout_ms: t.timeout_ms,
                    })
                    .collect(),
            },
            PbPacket::Request(r) => Packet::Request(ForwardedRequest {
                session_id: r.session_id,
                cxid: r.cxid,
                op_type: r.op_type,
                request: Bytes::from(r.request),
                auth: r.auth.into_iter().map(|a| (a.scheme, a.id)).collect(),
            }),
            PbPacket::Revalidate(r) => Packet::Revalidate {
                session_id: r.session_id,
                timeout_ms: r.timeout_ms,
                valid: r.valid,
            },
            PbPacket::Sync(s) => Packet::SyncReply {
                session_id: s.session_id,
                cxid: s.cxid,
                zxid: s.zxid,
            },
        })
    }
}

/// The tunables of the cores. Limits are in ticks of `tickTime`; the driver feeds
/// [`crate::Input::Tick`] every **half** tick (ZooKeeper's leader loop wakes every
/// `tickTime / 2` to ping its learners), so a limit of `n` ticks is `2n` `Tick` inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Ticks allowed for discovery and synchronisation (`initLimit`, default 10).
    pub init_limit: u32,
    /// Ticks a follower may go without hearing from the leader, and the leader without
    /// hearing from a quorum, once synced (`syncLimit`, default 5).
    pub sync_limit: u32,
    /// Committed txns the leader keeps in memory for DIFF (`commitLogCount`, default 500).
    pub committed_log_count: usize,
    /// DIFF from the on-disk log while the txns to send weigh at most this percentage of
    /// the snapshot (`snapshotSizeFactor` 0.33 → `Some(33)`); `None` disables it.
    pub snapshot_size_percent: Option<u32>,
    /// Most proposals in flight on the leader; `propose` refuses more (default 1000).
    pub max_outstanding: usize,
    /// Most entries of the leader's log index (zxid and size per txn, default 1,000,000);
    /// older entries are forgotten and learners that far behind get a SNAP.
    pub max_history_entries: usize,
    /// Most bytes a learner buffers during synchronisation before NEWLEADER (default 512 MiB).
    pub max_sync_bytes: u64,
    /// Largest snapshot a learner accepts (default 64 GiB).
    pub max_snapshot_bytes: u64,
    /// Most distinct sessions a learner keeps for its next PING answer (default 1,000,000).
    pub max_pending_touches: usize,
    /// Most `sync` answers the leader holds until earlier proposals commit (default 10,000).
    pub max_pending_syncs: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            init_limit: 10,
            sync_limit: 5,
            committed_log_count: 500,
            snapshot_size_percent: Some(33),
            max_outstanding: 1000,
            max_history_entries: 1_000_000,
            max_sync_bytes: 512 * 1024 * 1024,
            max_snapshot_bytes: 64 * 1024 * 1024 * 1024,
            max_pending_touches: 1_000_000,
            max_pending_syncs: 10_000,
        }
    }
}

/// The ensemble: who votes, who observes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ensemble {
    voters: std::collections::BTreeSet<ServerId>,
    observers: std::collections::BTreeSet<ServerId>,
}

impl Ensemble {
    /// An ensemble of voters and observers (a sid in both counts as a voter).
    pub fn new(
        voters: impl IntoIterator<Item = ServerId>,
        observers: impl IntoIterator<Item = ServerId>,
    ) -> Self {
        let voters: std::collections::BTreeSet<_> = voters.into_iter().collect();
        let observers = observers
            .into_iter()
            .filter(|o| !voters.contains(o))
            .collect();
        Self { voters, observers }
    }

    /// True when `sid` votes.
    pub fn is_voter(&self, sid: ServerId) -> bool {
        self.voters.contains(&sid)
    }

    /// True when `sid` is a member (voter or observer).
    pub fn is_member(&self, sid: ServerId) -> bool {
        self.voters.contains(&sid) || self.observers.contains(&sid)
    }

    /// The voters.
    pub fn voters(&self) -> impl Iterator<Item = ServerId> + '_ {
        self.voters.iter().copied()
    }

    /// True when the voters among `sids` form a majority of the voters.
    pub fn is_quorum<'a>(&self, sids: impl IntoIterator<Item = &'a ServerId>) -> bool {
        let n = sids.into_iter().filter(|s| self.voters.contains(s)).count();
        n * 2 > self.voters.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_round_trip_through_protobuf() {
        let packets = vec![
            Packet::LearnerInfo(LearnerInfo {
                sid: 2,
                accepted_epoch: 3,
                last_zxid: 7,
                observer: true,
            }),
            Packet::LeaderInfo { new_epoch: 4 },
            Packet::AckEpoch {
                current_epoch: -1,
                last_zxid: 9,
            },
            Packet::Diff { zxid: 1 },
            Packet::Trunc { zxid: 2 },
            Packet::Snap {
                zxid: 3,
                total_bytes: 10,
            },
            Packet::SnapChunk {
                offset: 0,
                data: Bytes::from_static(b"ab"),
                last: true,
                crc32c: 5,
            },
            Packet::NewLeader {
                zxid: 4 << 32,
                config: Bytes::new(),
            },
            Packet::Ack { zxid: 5 },
            Packet::UpToDate,
            Packet::Proposal(Txn::new(6, &b"x"[..])),
            Packet::Commit { zxid: 6 },
            Packet::Inform(Txn::new(7, &b"y"[..])),
            Packet::Ping {
                touches: vec![SessionTouch {
                    session_id: 1,
                    timeout_ms: 2,
                }],
            },
            Packet::Request(ForwardedRequest {
                session_id: 1,
                cxid: 2,
                op_type: 3,
                request: Bytes::from_static(b"r"),
                auth: vec![("digest".into(), "u:p".into())],
            }),
            Packet::Revalidate {
                session_id: 1,
                timeout_ms: 2,
                valid: true,
            },
            Packet::SyncReply {
                session_id: 1,
                cxid: 2,
                zxid: 3,
            },
        ];
        for p in packets {
            let wire: pb::QuorumPacket = p.clone().into();
            assert_eq!(Packet::try_from(wire), Ok(p));
        }
    }

    #[test]
    fn empty_and_old_packets_are_errors() {
        assert_eq!(
            Packet::try_from(pb::QuorumPacket { packet: None }),
            Err(DecodeError::Empty)
        );
        let old = pb::QuorumPacket {
            packet: Some(PbPacket::LeaderInfo(pb::LeaderInfo {
                new_epoch: 1,
                protocol_version: 1,
            })),
        };
        assert_eq!(Packet::try_from(old), Err(DecodeError::ProtocolVersion(1)));
    }

    #[test]
    fn quorum_counts_voters_only() {
        let e = Ensemble::new([1, 2, 3], [4]);
        assert!(e.is_quorum(&[1, 2]));
        assert!(!e.is_quorum(&[1, 4]));
        assert!(e.is_member(4) && !e.is_voter(4));
    }
}
