//! Unit tests asserting the exact commands the cores emit at the key steps of Zab
//! (discovery, synchronisation, broadcast) and on bad input.

use bytes::Bytes;
use zk_proto::zxid::make;
use zk_quorum::{
    Command, Config, Ensemble, Follower, ForwardedRequest, History, Input, Leader, LeaderPhase,
    LeaderStorage, LearnerInfo, LearnerPhase, LearnerStorage, Observer, Packet, SessionTouch,
    SyncMode, Txn, ZabError, Zxid, snapshot_packets,
};

const L: u64 = 1;

fn msg(from: u64, packet: Packet) -> Input {
    Input::Message { from, packet }
}

fn send(to: u64, packet: Packet) -> Command {
    Command::Send { to, packet }
}

fn txn(zxid: Zxid) -> Txn {
    Txn::new(zxid, format!("txn {zxid:#x}").into_bytes())
}

fn empty_learner() -> LearnerStorage {
    LearnerStorage {
        accepted_epoch: 0,
        current_epoch: 0,
        last_logged_zxid: 0,
        applied_zxid: 0,
    }
}

fn leader_with(history: &[Zxid], epochs: (i64, i64), ensemble: Ensemble) -> Leader {
    let mut h = History::new(0, 500, 10_000);
    for &z in history {
        h.push(&txn(z));
    }
    let applied = h.last_zxid();
    let mut leader = Leader::new(
        L,
        Config::default(),
        ensemble,
        LeaderStorage {
            accepted_epoch: epochs.0,
            current_epoch: epochs.1,
            applied_zxid: applied,
            history: h,
            snapshot_bytes: 1 << 20,
        },
    );
    assert!(leader.start().is_empty());
    leader
}

fn info(sid: u64, accepted_epoch: i64, last_zxid: Zxid) -> Packet {
    Packet::LearnerInfo(LearnerInfo {
        sid,
        accepted_epoch,
        last_zxid,
        observer: false,
    })
}

/// A follower that went through discovery with epoch `epoch` and got `mode`.
fn syncing_follower(storage: LearnerStorage, epoch: i64, mode: Packet) -> Follower {
    let mut f = Follower::new(2, L, Config::default(), storage);
    f.start();
    let out = f.step(msg(L, Packet::LeaderInfo { new_epoch: epoch }));
    assert!(matches!(
        out.last(),
        Some(Command::Send {
            packet: Packet::AckEpoch { .. },
            ..
        })
    ));
    f.step(msg(L, mode));
    f
}

/// A follower of epoch 1 that is up to date with an empty log.
fn broadcasting_follower() -> Follower {
    let mut f = syncing_follower(empty_learner(), 1, Packet::Diff { zxid: 0 });
    let out = f.step(msg(
        L,
        Packet::NewLeader {
            zxid: make(1, 0),
            config: Bytes::new(),
        },
    ));
    assert_eq!(
        out,
        vec![
            Command::SaveCurrentEpoch { epoch: 1 },
            send(L, Packet::Ack { zxid: make(1, 0) })
        ]
    );
    assert_eq!(
        f.step(msg(L, Packet::UpToDate)),
        vec![Command::Serving { epoch: 1 }]
    );
    f
}

/// A leader of a 3-voter ensemble established with follower 2 (follower 3 absent).
fn established_leader() -> Leader {
    let mut leader = leader_with(&[], (0, 0), Ensemble::new([1, 2, 3], []));
    let out = leader.step(msg(2, info(2, 0, 0)));
    assert_eq!(
        out,
        vec![
            Command::SaveAcceptedEpoch { epoch: 1 },
            send(2, Packet::LeaderInfo { new_epoch: 1 })
        ]
    );
    let out = leader.step(msg(
        2,
        Packet::AckEpoch {
            current_epoch: 0,
            last_zxid: 0,
        },
    ));
    assert_eq!(
        out,
        vec![
            Command::SaveCurrentEpoch { epoch: 1 },
            Command::SyncChosen {
                learner: 2,
                mode: SyncMode::Diff,
                peer_last_zxid: 0,
                synced_to: 0
            },
            send(2, Packet::Diff { zxid: 0 }),
            send(
                2,
                Packet::NewLeader {
                    zxid: make(1, 0),
                    config: Bytes::new()
                }
            ),
        ]
    );
    let out = leader.step(msg(2, Packet::Ack { zxid: make(1, 0) }));
    assert_eq!(
        out,
        vec![Command::Serving { epoch: 1 }, send(2, Packet::UpToDate)]
    );
    assert_eq!(leader.phase(), LeaderPhase::Broadcast);
    leader
}

fn is_apply_or_install(c: &Command) -> bool {
    matches!(c, Command::Apply { .. } | Command::InstallSnapshot { .. })
}

#[test]
fn follower_acks_a_proposal_only_after_it_is_persisted() {
    let mut f = broadcasting_follower();
    let p = txn(make(1, 1));
    assert_eq!(
        f.step(msg(L, Packet::Proposal(p.clone()))),
        vec![Command::Persist { txns: vec![p] }]
    );
    let p2 = txn(make(1, 2));
    assert_eq!(
        f.step(msg(L, Packet::Proposal(p2.clone()))),
        vec![Command::Persist { txns: vec![p2] }]
    );
    // One flush covered both: one ACK of the highest zxid.
    assert_eq!(
        f.step(Input::Persisted { zxid: make(1, 2) }),
        vec![send(L, Packet::Ack { zxid: make(1, 2) })]
    );
    assert_eq!(
        f.step(msg(L, Packet::Commit { zxid: make(1, 1) })),
        vec![Command::Apply { up_to: make(1, 1) }]
    );
    assert_eq!(
        f.step(msg(L, Packet::Commit { zxid: make(1, 2) })),
        vec![Command::Apply { up_to: make(1, 2) }]
    );
    assert_eq!(f.applied_zxid(), make(1, 2));
}

/// ZOOKEEPER-4643 / ZOOKEEPER-4646: on NEWLEADER the follower makes every synced txn
/// durable in one flush, only then saves currentEpoch, then ACKs; it applies on UPTODATE.
#[test]
fn zookeeper_4643_newleader_persists_synced_txns_before_current_epoch_and_ack() {
    let storage = LearnerStorage {
        accepted_epoch: 1,
        current_epoch: 1,
        last_logged_zxid: make(1, 1),
        applied_zxid: 0,
    };
    let mut f = syncing_follower(storage, 2, Packet::Diff { zxid: make(1, 3) });
    for c in 2..=3 {
        assert!(f.step(msg(L, Packet::Proposal(txn(make(1, c))))).is_empty());
        assert!(
            f.step(msg(L, Packet::Commit { zxid: make(1, c) }))
                .is_empty()
        );
    }
    let out = f.step(msg(
        L,
        Packet::NewLeader {
            zxid: make(2, 0),
            config: Bytes::new(),
        },
    ));
    assert_eq!(
        out,
        vec![Command::Persist {
            txns: vec![txn(make(1, 2)), txn(make(1, 3))]
        }]
    );
    assert_eq!(f.phase(), LearnerPhase::PersistingNewLeader);
    assert!(
        f.step(Input::Persisted { zxid: make(1, 2) }).is_empty(),
        "not everything is durable yet"
    );
    let out = f.step(Input::Persisted { zxid: make(1, 3) });
    assert_eq!(
        out,
        vec![
            Command::SaveCurrentEpoch { epoch: 2 },
            send(L, Packet::Ack { zxid: make(2, 0) })
        ]
    );
    let out = f.step(msg(L, Packet::UpToDate));
    assert_eq!(
        out,
        vec![
            Command::Apply { up_to: make(1, 3) },
            Command::Serving { epoch: 2 }
        ]
    );
}

/// Port of ZooKeeper's `DIFFSyncConsistencyTest`: a follower that syncs while proposals
/// are in flight gets them after its DIFF and before NEWLEADER, acknowledges them after the
/// NEWLEADER ack, and applies them once they commit.
#[test]
fn diff_sync_consistency_in_flight_proposals_are_forwarded() {
    let mut leader = established_leader();
    let (z1, _) = leader.propose(Bytes::from_static(b"a")).unwrap();
    leader.step(Input::Persisted { zxid: z1 });
    leader.step(msg(2, Packet::Ack { zxid: z1 }));
    let (z2, _) = leader.propose(Bytes::from_static(b"b")).unwrap();
    assert_eq!(leader.committed_zxid(), z1);

    // Follower 3 joins now, with an empty log.
    let out = leader.step(msg(3, info(3, 0, 0)));
    assert_eq!(out, vec![send(3, Packet::LeaderInfo { new_epoch: 1 })]);
    let out = leader.step(msg(
        3,
        Packet::AckEpoch {
            current_epoch: 0,
            last_zxid: 0,
        },
    ));
    assert_eq!(
        out,
        vec![
            Command::SyncChosen {
                learner: 3,
                mode: SyncMode::Diff,
                peer_last_zxid: 0,
                synced_to: z1
            },
            send(3, Packet::Diff { zxid: z1 }),
            send(3, Packet::Proposal(Txn::new(z1, &b"a"[..]))),
            send(3, Packet::Commit { zxid: z1 }),
            send(3, Packet::Proposal(Txn::new(z2, &b"b"[..]))),
            send(
                3,
                Packet::NewLeader {
                    zxid: make(1, 0),
                    config: Bytes::new()
                }
            ),
        ]
    );

    let mut f = Follower::new(3, L, Config::default(), empty_learner());
    f.start();
    f.step(msg(L, Packet::LeaderInfo { new_epoch: 1 }));
    for c in out.into_iter().skip(1) {
        let Command::Send { packet, .. } = c else {
            panic!("not a send")
        };
        let got = f.step(msg(L, packet));
        assert!(!got.iter().any(|c| matches!(
            c,
            Command::Send {
                packet: Packet::Ack { .. },
                ..
            }
        )));
    }
    assert!(f.step(Input::Persisted { zxid: z1 }).is_empty());
    let out = f.step(Input::Persisted { zxid: z2 });
    assert_eq!(
        out,
        vec![
            Command::SaveCurrentEpoch { epoch: 1 },
            send(L, Packet::Ack { zxid: make(1, 0) }),
            send(L, Packet::Ack { zxid: z2 }),
        ]
    );
    assert_eq!(
        leader.step(msg(3, Packet::Ack { zxid: make(1, 0) })),
        vec![send(3, Packet::UpToDate)]
    );
    assert_eq!(
        f.step(msg(L, Packet::UpToDate)),
        vec![Command::Apply { up_to: z1 }, Command::Serving { epoch: 1 }]
    );
    // Follower 3's ACK of z2 plus the leader's own persist make a quorum.
    assert!(leader.step(msg(3, Packet::Ack { zxid: z2 })).is_empty());
    let out = leader.step(Input::Persisted { zxid: z2 });
    assert_eq!(
        out,
        vec![
            send(2, Packet::Commit { zxid: z2 }),
            send(3, Packet::Commit { zxid: z2 }),
            Command::Apply { up_to: z2 }
        ]
    );
    assert_eq!(
        f.step(msg(L, Packet::Commit { zxid: z2 })),
        vec![Command::Apply { up_to: z2 }]
    );
}

#[test]
fn leader_commits_in_zxid_order_only_with_a_quorum_including_its_own_persist() {
    let mut leader = established_leader();
    let (z1, out) = leader.propose(Bytes::from_static(b"1")).unwrap();
    assert_eq!(
        out,
        vec![
            Command::Persist {
                txns: vec![Txn::new(z1, &b"1"[..])]
            },
            send(2, Packet::Proposal(Txn::new(z1, &b"1"[..])))
        ]
    );
    let (z2, _) = leader.propose(Bytes::from_static(b"2")).unwrap();
    // The follower acks both; the leader has not persisted: one ack of three is no quorum.
    assert!(leader.step(msg(2, Packet::Ack { zxid: z2 })).is_empty());
    // The leader's own flush of z1 only: z1 commits, z2 waits.
    assert_eq!(
        leader.step(Input::Persisted { zxid: z1 }),
        vec![
            send(2, Packet::Commit { zxid: z1 }),
            Command::Apply { up_to: z1 }
        ]
    );
    assert_eq!(
        leader.step(Input::Persisted { zxid: z2 }),
        vec![
            send(2, Packet::Commit { zxid: z2 }),
            Command::Apply { up_to: z2 }
        ]
    );
    assert_eq!(leader.outstanding(), 0);
}

#[test]
fn a_new_leader_proposes_and_applies_nothing_before_newleader_has_a_quorum() {
    let mut leader = leader_with(&[make(1, 1)], (1, 1), Ensemble::new([1, 2, 3], []));
    assert_eq!(leader.propose(Bytes::new()), Err(ZabError::NotLeading));
    leader.step(msg(2, info(2, 1, make(1, 1))));
    let out = leader.step(msg(
        2,
        Packet::AckEpoch {
            current_epoch: 1,
            last_zxid: make(1, 1),
        },
    ));
    assert!(!out.iter().any(is_apply_or_install));
    assert_eq!(leader.phase(), LeaderPhase::Synchronization);
    assert_eq!(leader.propose(Bytes::new()), Err(ZabError::NotLeading));
}

#[test]
fn the_leader_gives_up_when_a_follower_is_ahead() {
    let mut leader = leader_with(&[make(1, 1)], (1, 1), Ensemble::new([1, 2, 3], []));
    leader.step(msg(2, info(2, 1, make(1, 2))));
    let out = leader.step(msg(
        2,
        Packet::AckEpoch {
            current_epoch: 1,
            last_zxid: make(1, 2),
        },
    ));
    assert_eq!(
        out,
        vec![Command::GoLooking {
            reason: ZabError::FollowerAhead {
                sid: 2,
                epoch: 1,
                zxid: make(1, 2)
            }
        }]
    );
    assert_eq!(leader.phase(), LeaderPhase::Stopped);
    assert!(
        leader.step(Input::Tick).is_empty(),
        "a stopped core ignores inputs"
    );
}

#[test]
fn a_late_learner_with_txns_the_leader_never_saw_is_truncated() {
    // The old leader (2) logged (1,3) and (1,4) that never reached the new leader.
    let mut leader = leader_with(
        &[make(1, 1), make(1, 2)],
        (1, 1),
        Ensemble::new([1, 2, 3], []),
    );
    leader.step(msg(3, info(3, 1, make(1, 2))));
    let out = leader.step(msg(
        3,
        Packet::AckEpoch {
            current_epoch: 1,
            last_zxid: make(1, 2),
        },
    ));
    assert!(out.contains(&send(3, Packet::Diff { zxid: make(1, 2) })));
    leader.step(msg(2, info(2, 1, make(1, 4))));
    let out = leader.step(msg(
        2,
        Packet::AckEpoch {
            current_epoch: 1,
            last_zxid: make(1, 4),
        },
    ));
    assert_eq!(
        out,
        vec![
            Command::SyncChosen {
                learner: 2,
                mode: SyncMode::Trunc,
                peer_last_zxid: make(1, 4),
                synced_to: make(1, 2)
            },
            send(2, Packet::Trunc { zxid: make(1, 2) }),
            send(
                2,
                Packet::NewLeader {
                    zxid: make(2, 0),
                    config: Bytes::new()
                }
            ),
        ]
    );
    let storage = LearnerStorage {
        accepted_epoch: 1,
        current_epoch: 1,
        last_logged_zxid: make(1, 4),
        applied_zxid: make(1, 1),
    };
    let mut f = Follower::new(2, L, Config::default(), storage);
    f.start();
    f.step(msg(L, Packet::LeaderInfo { new_epoch: 2 }));
    assert_eq!(
        f.step(msg(L, Packet::Trunc { zxid: make(1, 2) })),
        vec![Command::Truncate { to: make(1, 2) }]
    );
    assert_eq!(f.last_logged_zxid(), make(1, 2));
}

#[test]
fn a_trunc_below_what_was_applied_is_refused() {
    let storage = LearnerStorage {
        accepted_epoch: 1,
        current_epoch: 1,
        last_logged_zxid: make(1, 4),
        applied_zxid: make(1, 3),
    };
    let mut f = Follower::new(2, L, Config::default(), storage);
    f.start();
    f.step(msg(L, Packet::LeaderInfo { new_epoch: 2 }));
    let out = f.step(msg(L, Packet::Trunc { zxid: make(1, 2) }));
    assert_eq!(
        out,
        vec![Command::GoLooking {
            reason: ZabError::TruncateBelowApplied {
                to: make(1, 2),
                applied: make(1, 3)
            }
        }]
    );
}

#[test]
fn a_learner_behind_a_compacted_log_gets_a_snapshot_then_the_rest() {
    let mut h = History::new(make(1, 5), 500, 10_000);
    h.push(&txn(make(1, 6)));
    let mut leader = Leader::new(
        L,
        Config::default(),
        Ensemble::new([1, 2, 3], []),
        LeaderStorage {
            accepted_epoch: 1,
            current_epoch: 1,
            applied_zxid: make(1, 5),
            history: h,
            snapshot_bytes: 10,
        },
    );
    leader.start();
    leader.step(msg(2, info(2, 1, make(1, 2))));
    let out = leader.step(msg(
        2,
        Packet::AckEpoch {
            current_epoch: 1,
            last_zxid: make(1, 2),
        },
    ));
    assert_eq!(
        &out[1..],
        &[
            Command::SyncChosen {
                learner: 2,
                mode: SyncMode::Snap,
                peer_last_zxid: make(1, 2),
                synced_to: make(1, 6)
            },
            Command::SendSnapshot {
                to: 2,
                zxid: make(1, 5)
            },
            send(2, Packet::Proposal(txn(make(1, 6)))),
            send(2, Packet::Commit { zxid: make(1, 6) }),
            send(
                2,
                Packet::NewLeader {
                    zxid: make(2, 0),
                    config: Bytes::new()
                }
            ),
        ]
    );

    // The follower side: chunks are checked, the snapshot installed on the last one.
    let storage = LearnerStorage {
        accepted_epoch: 1,
        current_epoch: 1,
        last_logged_zxid: make(1, 2),
        applied_zxid: 0,
    };
    let mut f = Follower::new(2, L, Config::default(), storage);
    f.start();
    f.step(msg(L, Packet::LeaderInfo { new_epoch: 2 }));
    let packets = snapshot_packets(make(1, 5), &[Bytes::from_static(b"state as of (1,5)")], 8);
    let mut cmds = Vec::new();
    for p in packets {
        cmds.extend(f.step(msg(L, p)));
    }
    assert_eq!(
        cmds.len(),
        3,
        "three chunks, nothing installed yet: {cmds:?}"
    );
    assert!(
        cmds.iter()
            .all(|c| matches!(c, Command::SnapshotChunk { .. }))
    );
    assert_eq!(f.applied_zxid(), 0, "the old state stays until NEWLEADER");
    assert!(f.step(msg(L, Packet::Proposal(txn(make(1, 6))))).is_empty());
    assert!(
        f.step(msg(L, Packet::Commit { zxid: make(1, 6) }))
            .is_empty()
    );
    // NEWLEADER: snapshot and synced txns replace the log in one durable step, then
    // currentEpoch, then the ACK.
    let out = f.step(msg(
        L,
        Packet::NewLeader {
            zxid: make(2, 0),
            config: Bytes::new(),
        },
    ));
    assert_eq!(
        out,
        vec![
            Command::InstallSnapshot {
                zxid: make(1, 5),
                txns: vec![txn(make(1, 6))]
            },
            Command::SaveCurrentEpoch { epoch: 2 },
            send(L, Packet::Ack { zxid: make(2, 0) }),
        ]
    );
    assert_eq!(f.applied_zxid(), make(1, 5));
    assert_eq!(
        f.step(msg(L, Packet::UpToDate)),
        vec![
            Command::Apply { up_to: make(1, 6) },
            Command::Serving { epoch: 2 }
        ]
    );
}

#[test]
fn a_truncated_snapshot_stream_aborts_and_applies_nothing() {
    let mut f = syncing_follower(
        empty_learner(),
        1,
        Packet::Snap {
            zxid: make(0, 0),
            total_bytes: 0,
        },
    );
    let mut f2 = Follower::new(2, L, Config::default(), empty_learner());
    f2.start();
    f2.step(msg(L, Packet::LeaderInfo { new_epoch: 2 }));
    let packets = snapshot_packets(make(1, 9), &[Bytes::from(vec![5u8; 100])], 40);
    assert_eq!(packets.len(), 4);
    let mut out = Vec::new();
    for p in packets.into_iter().take(3) {
        out.extend(f2.step(msg(L, p)));
    }
    // The stream ends: NEWLEADER arrives before the last chunk.
    out.extend(f2.step(msg(
        L,
        Packet::NewLeader {
            zxid: make(2, 0),
            config: Bytes::new(),
        },
    )));
    assert!(!out.iter().any(is_apply_or_install), "{out:?}");
    assert_eq!(
        &out[out.len() - 2..],
        &[
            Command::AbortSnapshot,
            Command::GoLooking {
                reason: ZabError::Snapshot("stream ended before its last chunk")
            }
        ]
    );
    assert_eq!(f2.phase(), LearnerPhase::Stopped);
    // A zero-byte snapshot with a corrupt chunk is refused too.
    let out = f.step(msg(
        L,
        Packet::SnapChunk {
            offset: 0,
            data: Bytes::from_static(b"x"),
            last: true,
            crc32c: 0,
        },
    ));
    assert!(matches!(
        out.last(),
        Some(Command::GoLooking {
            reason: ZabError::Snapshot(_)
        })
    ));
    assert!(!out.iter().any(is_apply_or_install));
}

#[test]
fn a_packet_out_of_protocol_order_sends_the_learner_back_to_looking() {
    let mut f = Follower::new(2, L, Config::default(), empty_learner());
    f.start();
    let out = f.step(msg(L, Packet::UpToDate));
    assert_eq!(
        out,
        vec![Command::GoLooking {
            reason: ZabError::UnexpectedPacket {
                from: L,
                packet: "UPTODATE",
                phase: "waiting for LEADERINFO"
            }
        }]
    );
    // A COMMIT during sync for a txn never proposed.
    let mut f = syncing_follower(empty_learner(), 1, Packet::Diff { zxid: 0 });
    let out = f.step(msg(L, Packet::Commit { zxid: make(1, 1) }));
    assert_eq!(
        out,
        vec![Command::GoLooking {
            reason: ZabError::CommitMismatch {
                expected: None,
                got: make(1, 1)
            }
        }]
    );
}

#[test]
fn proposals_with_gaps_or_from_a_future_epoch_are_refused() {
    let mut f = broadcasting_follower();
    let out = f.step(msg(L, Packet::Proposal(txn(make(1, 2)))));
    assert_eq!(
        out,
        vec![Command::GoLooking {
            reason: ZabError::NotContiguous {
                last: 0,
                got: make(1, 2)
            }
        }]
    );

    let mut f = broadcasting_follower();
    let out = f.step(msg(L, Packet::Proposal(txn(make(7, 1)))));
    assert_eq!(
        out,
        vec![Command::GoLooking {
            reason: ZabError::WrongEpoch {
                zxid: make(7, 1),
                epoch: 1
            }
        }]
    );

    let mut f = syncing_follower(empty_learner(), 1, Packet::Diff { zxid: 0 });
    let out = f.step(msg(
        L,
        Packet::NewLeader {
            zxid: make(3, 0),
            config: Bytes::new(),
        },
    ));
    assert_eq!(
        out,
        vec![Command::GoLooking {
            reason: ZabError::WrongEpoch {
                zxid: make(3, 0),
                epoch: 1
            }
        }]
    );
}

#[test]
fn a_learner_refuses_an_epoch_older_than_the_one_it_accepted() {
    let storage = LearnerStorage {
        accepted_epoch: 5,
        current_epoch: 4,
        last_logged_zxid: 0,
        applied_zxid: 0,
    };
    let mut f = Follower::new(2, L, Config::default(), storage);
    let out = f.start();
    assert_eq!(out, vec![send(L, info(2, 5, 0))]);
    let out = f.step(msg(L, Packet::LeaderInfo { new_epoch: 3 }));
    assert_eq!(
        out,
        vec![Command::GoLooking {
            reason: ZabError::StaleEpoch {
                leader: 3,
                accepted: 5
            }
        }]
    );
}

#[test]
fn discovery_persists_the_accepted_epoch_before_acking() {
    let storage = LearnerStorage {
        accepted_epoch: 2,
        current_epoch: 2,
        last_logged_zxid: make(2, 7),
        applied_zxid: 0,
    };
    let mut f = Follower::new(2, L, Config::default(), storage);
    f.start();
    let out = f.step(msg(L, Packet::LeaderInfo { new_epoch: 3 }));
    assert_eq!(
        out,
        vec![
            Command::SaveAcceptedEpoch { epoch: 3 },
            send(
                L,
                Packet::AckEpoch {
                    current_epoch: 2,
                    last_zxid: make(2, 7)
                }
            )
        ]
    );
}

#[test]
fn the_leader_times_out_without_a_quorum_within_init_limit() {
    let mut leader = leader_with(&[], (0, 0), Ensemble::new([1, 2, 3], []));
    for _ in 0..20 {
        assert!(leader.step(Input::Tick).is_empty());
    }
    let out = leader.step(Input::Tick);
    assert!(matches!(
        out.as_slice(),
        [Command::GoLooking {
            reason: ZabError::Timeout { ticks: 10, .. }
        }]
    ));
}

#[test]
fn an_established_leader_pings_and_steps_down_when_it_loses_its_quorum() {
    let mut leader = established_leader();
    assert_eq!(
        leader.step(Input::Tick),
        vec![send(2, Packet::Ping { touches: vec![] })]
    );
    let touches = vec![SessionTouch {
        session_id: 9,
        timeout_ms: 4000,
    }];
    assert_eq!(
        leader.step(msg(
            2,
            Packet::Ping {
                touches: touches.clone()
            }
        )),
        vec![Command::SessionTouches { from: 2, touches }]
    );
    let mut last = Vec::new();
    for _ in 0..11 {
        last = leader.step(Input::Tick);
    }
    assert!(
        last.iter().any(|c| matches!(
            c,
            Command::GoLooking {
                reason: ZabError::QuorumLost { .. }
            }
        )),
        "{last:?}"
    );
}

#[test]
fn a_follower_goes_looking_after_sync_limit_without_the_leader() {
    let mut f = broadcasting_follower();
    for _ in 0..10 {
        assert!(f.step(Input::Tick).is_empty());
    }
    assert_eq!(
        f.step(Input::Tick),
        vec![Command::GoLooking {
            reason: ZabError::Timeout {
                phase: "following",
                ticks: 5
            }
        }]
    );
}

#[test]
fn followers_answer_pings_with_their_session_touches_and_forward_writes() {
    let mut f = broadcasting_follower();
    f.touch_session(SessionTouch {
        session_id: 7,
        timeout_ms: 3000,
    })
    .unwrap();
    f.touch_session(SessionTouch {
        session_id: 7,
        timeout_ms: 3000,
    })
    .unwrap();
    assert_eq!(
        f.step(msg(L, Packet::Ping { touches: vec![] })),
        vec![send(
            L,
            Packet::Ping {
                touches: vec![SessionTouch {
                    session_id: 7,
                    timeout_ms: 3000
                }]
            }
        )]
    );
    assert_eq!(
        f.step(msg(L, Packet::Ping { touches: vec![] })),
        vec![send(L, Packet::Ping { touches: vec![] })]
    );
    let req = ForwardedRequest {
        session_id: 7,
        cxid: 1,
        op_type: 1,
        request: Bytes::from_static(b"c"),
        auth: vec![],
    };
    assert_eq!(
        f.forward_request(req.clone()).unwrap(),
        vec![send(L, Packet::Request(req.clone()))]
    );

    let mut leader = established_leader();
    assert_eq!(
        leader.step(msg(2, Packet::Request(req.clone()))),
        vec![Command::Request {
            from: 2,
            request: req.clone()
        }]
    );
    let mut not_yet = Follower::new(2, L, Config::default(), empty_learner());
    assert_eq!(not_yet.forward_request(req), Err(ZabError::NotFollowing));
}

#[test]
fn observers_get_inform_and_never_count() {
    let mut leader = leader_with(&[], (0, 0), Ensemble::new([1, 2, 3], [4]));
    let obs_info = Packet::LearnerInfo(LearnerInfo {
        sid: 4,
        accepted_epoch: 0,
        last_zxid: 0,
        observer: true,
    });
    assert!(
        leader.step(msg(4, obs_info.clone())).is_empty(),
        "an observer does not complete the epoch quorum"
    );
    leader.step(msg(2, info(2, 0, 0)));
    leader.step(msg(
        2,
        Packet::AckEpoch {
            current_epoch: 0,
            last_zxid: 0,
        },
    ));
    leader.step(msg(2, Packet::Ack { zxid: make(1, 0) }));
    assert_eq!(leader.phase(), LeaderPhase::Broadcast);

    let mut obs = Observer::new(4, L, Config::default(), empty_learner());
    assert_eq!(obs.start(), vec![send(L, obs_info)]);
    obs.step(msg(L, Packet::LeaderInfo { new_epoch: 1 }));
    let out = leader.step(msg(
        4,
        Packet::AckEpoch {
            current_epoch: 0,
            last_zxid: 0,
        },
    ));
    let mut replies = Vec::new();
    for c in out {
        if let Command::Send { to: 4, packet } = c {
            replies.extend(obs.step(msg(L, packet)));
        }
    }
    let out = replies;
    assert_eq!(
        out,
        vec![
            Command::SaveCurrentEpoch { epoch: 1 },
            send(L, Packet::Ack { zxid: make(1, 0) })
        ]
    );
    assert_eq!(
        leader.step(msg(4, Packet::Ack { zxid: make(1, 0) })),
        vec![send(4, Packet::UpToDate)]
    );
    obs.step(msg(L, Packet::UpToDate));

    let (z, out) = leader.propose(Bytes::from_static(b"w")).unwrap();
    assert!(
        !out.iter().any(|c| matches!(c, Command::Send { to: 4, .. })),
        "no PROPOSAL to observers"
    );
    leader.step(Input::Persisted { zxid: z });
    // The observer's ack would not count even if it sent one.
    let out = leader.step(msg(4, Packet::Ack { zxid: z }));
    assert!(matches!(
        out.as_slice(),
        [Command::Disconnect { peer: 4, .. }]
    ));
    assert_eq!(leader.outstanding(), 1);
    let out = leader.step(msg(2, Packet::Ack { zxid: z }));
    assert_eq!(
        out,
        vec![
            send(2, Packet::Commit { zxid: z }),
            Command::Apply { up_to: z }
        ]
    );

    let mut obs = {
        let mut o = Observer::new(4, L, Config::default(), empty_learner());
        o.start();
        o.step(msg(L, Packet::LeaderInfo { new_epoch: 1 }));
        o.step(msg(L, Packet::Diff { zxid: 0 }));
        o.step(msg(
            L,
            Packet::NewLeader {
                zxid: make(1, 0),
                config: Bytes::new(),
            },
        ));
        o.step(msg(L, Packet::UpToDate));
        o
    };
    let t = Txn::new(z, &b"w"[..]);
    assert_eq!(
        obs.step(msg(L, Packet::Inform(t.clone()))),
        vec![
            Command::Persist {
                txns: vec![t.clone()]
            },
            Command::Apply { up_to: z }
        ]
    );
    assert!(
        obs.step(Input::Persisted { zxid: z }).is_empty(),
        "observers never ACK"
    );
    let out = obs.step(msg(L, Packet::Proposal(txn(make(1, 2)))));
    assert!(matches!(out.as_slice(), [Command::GoLooking { .. }]));
}

#[test]
fn learners_with_wrong_ids_or_roles_are_dropped() {
    let mut leader = leader_with(&[], (0, 0), Ensemble::new([1, 2, 3], [4]));
    assert_eq!(
        leader.step(msg(2, info(3, 0, 0))),
        vec![Command::Disconnect {
            peer: 2,
            reason: ZabError::UnknownPeer(2)
        }]
    );
    assert_eq!(
        leader.step(msg(4, info(4, 0, 0))),
        vec![Command::Disconnect {
            peer: 4,
            reason: ZabError::UnknownPeer(4)
        }],
        "an observer may not vote"
    );
    assert!(matches!(
        leader.step(msg(2, Packet::Ack { zxid: 1 })).as_slice(),
        [Command::Disconnect {
            peer: 2,
            reason: ZabError::UnexpectedPacket { .. }
        }]
    ));
}

#[test]
fn the_leader_refuses_proposals_beyond_max_outstanding() {
    let mut leader = established_leader();
    let cfg_max = Config::default().max_outstanding;
    for _ in 0..cfg_max {
        leader.propose(Bytes::new()).unwrap();
    }
    assert_eq!(leader.propose(Bytes::new()), Err(ZabError::Busy(cfg_max)));
}

/// A learner that reconnects may be truncated by its new sync (TRUNC to the last
/// committed zxid), so the acks it sent before no longer count: found by the simulation
/// (a txn committed with such an ack was lost when that learner was elected next).
#[test]
fn acks_sent_before_a_learner_reconnects_do_not_count() {
    let mut leader = established_leader();
    let (z1, _) = leader.propose(Bytes::from_static(b"a")).unwrap();
    assert!(leader.step(msg(2, Packet::Ack { zxid: z1 })).is_empty());
    // Follower 2 restarts and reconnects before the leader's own flush.
    assert_eq!(
        leader.step(msg(2, info(2, 1, z1))),
        vec![send(2, Packet::LeaderInfo { new_epoch: 1 })]
    );
    assert!(
        leader.step(Input::Persisted { zxid: z1 }).is_empty(),
        "the old ack must not complete a quorum"
    );
    // It syncs (TRUNC to the committed point, then the proposal again) and acks anew.
    let out = leader.step(msg(
        2,
        Packet::AckEpoch {
            current_epoch: -1,
            last_zxid: z1,
        },
    ));
    assert_eq!(
        &out[1..],
        &[
            send(2, Packet::Trunc { zxid: 0 }),
            send(2, Packet::Proposal(Txn::new(z1, &b"a"[..]))),
            send(
                2,
                Packet::NewLeader {
                    zxid: make(1, 0),
                    config: Bytes::new()
                }
            ),
        ]
    );
    assert_eq!(
        leader.step(msg(2, Packet::Ack { zxid: make(1, 0) })),
        vec![send(2, Packet::UpToDate)]
    );
    assert_eq!(
        leader.step(msg(2, Packet::Ack { zxid: z1 })),
        vec![
            send(2, Packet::Commit { zxid: z1 }),
            Command::Apply { up_to: z1 }
        ]
    );
}

/// Found by the simulation's liveness check: a follower that already logged the leader's
/// txns (an empty DIFF) must still apply them at UPTODATE, or it never catches up.
#[test]
fn txns_logged_before_a_diff_are_applied_at_uptodate() {
    let storage = LearnerStorage {
        accepted_epoch: 2,
        current_epoch: 2,
        last_logged_zxid: make(2, 3),
        applied_zxid: make(2, 1),
    };
    let mut f = Follower::new(2, L, Config::default(), storage);
    f.start();
    f.step(msg(L, Packet::LeaderInfo { new_epoch: 3 }));
    assert!(f.step(msg(L, Packet::Diff { zxid: make(2, 3) })).is_empty());
    f.step(msg(
        L,
        Packet::NewLeader {
            zxid: make(3, 0),
            config: Bytes::new(),
        },
    ));
    assert_eq!(
        f.step(msg(L, Packet::UpToDate)),
        vec![
            Command::Apply { up_to: make(2, 3) },
            Command::Serving { epoch: 3 }
        ]
    );
    // After a TRUNC, what is left is applied the same way.
    let storage = LearnerStorage {
        accepted_epoch: 2,
        current_epoch: 2,
        last_logged_zxid: make(2, 5),
        applied_zxid: make(2, 1),
    };
    let mut f = Follower::new(2, L, Config::default(), storage);
    f.start();
    f.step(msg(L, Packet::LeaderInfo { new_epoch: 3 }));
    f.step(msg(L, Packet::Trunc { zxid: make(2, 3) }));
    f.step(msg(
        L,
        Packet::NewLeader {
            zxid: make(3, 0),
            config: Bytes::new(),
        },
    ));
    assert_eq!(
        f.step(msg(L, Packet::UpToDate)),
        vec![
            Command::Apply { up_to: make(2, 3) },
            Command::Serving { epoch: 3 }
        ]
    );
}

/// Found by the simulation's liveness check: a learner that accepted a newer epoch (from a
/// leader attempt that failed) can never follow this leader; the leader steps down so that
/// the next election picks an epoch above it.
#[test]
fn a_learner_with_a_newer_accepted_epoch_makes_the_leader_step_down() {
    let mut leader = established_leader();
    assert_eq!(
        leader.step(msg(3, info(3, 4, 0))),
        vec![Command::GoLooking {
            reason: ZabError::NewerEpochSeen {
                sid: 3,
                accepted: 4,
                epoch: 1
            }
        }]
    );
    assert_eq!(leader.phase(), LeaderPhase::Stopped);
}

#[test]
fn answers_go_only_to_synced_learners() {
    let mut leader = established_leader();
    assert_eq!(
        leader.revalidate_reply(2, 7, 3000, true),
        vec![send(
            2,
            Packet::Revalidate {
                session_id: 7,
                timeout_ms: 3000,
                valid: true
            }
        )]
    );
    assert_eq!(
        leader.sync_reply(2, 7, 1).unwrap(),
        vec![send(
            2,
            Packet::SyncReply {
                session_id: 7,
                cxid: 1,
                zxid: 0
            }
        )]
    );
    // Follower 2 reconnects: until its sync is queued, answers would break its discovery.
    leader.step(msg(2, info(2, 1, 0)));
    assert!(leader.revalidate_reply(2, 7, 3000, true).is_empty());
    assert!(leader.sync_reply(2, 7, 2).unwrap().is_empty());
    // A follower finishing its sync accepts a late answer.
    let mut f = syncing_follower(empty_learner(), 1, Packet::Diff { zxid: 0 });
    f.step(msg(
        L,
        Packet::NewLeader {
            zxid: make(1, 0),
            config: Bytes::new(),
        },
    ));
    assert_eq!(
        f.step(msg(
            L,
            Packet::Revalidate {
                session_id: 7,
                timeout_ms: 3000,
                valid: true
            }
        )),
        vec![Command::RevalidateReply {
            session_id: 7,
            timeout_ms: 3000,
            valid: true
        }]
    );
}

/// Found by the simulation's liveness check on long histories: while snapshots stream to
/// some learners, the others must not time out, nor the leader drop the receiving ones.
#[test]
fn pings_keep_a_long_sync_alive_both_ways() {
    // A learner receiving its sync tells the leader it is alive on every tick.
    let mut f = syncing_follower(
        empty_learner(),
        1,
        Packet::Snap {
            zxid: make(1, 9),
            total_bytes: 10,
        },
    );
    assert_eq!(
        f.step(Input::Tick),
        vec![send(L, Packet::Ping { touches: vec![] })]
    );
    // A leader not yet established pings the learners whose sync is queued.
    let mut leader = leader_with(&[], (0, 0), Ensemble::new([1, 2, 3, 4, 5], []));
    leader.step(msg(2, info(2, 0, 0)));
    leader.step(msg(3, info(3, 0, 0)));
    leader.step(msg(
        2,
        Packet::AckEpoch {
            current_epoch: 0,
            last_zxid: 0,
        },
    ));
    leader.step(msg(
        3,
        Packet::AckEpoch {
            current_epoch: 0,
            last_zxid: 0,
        },
    ));
    leader.step(msg(2, Packet::Ack { zxid: make(1, 0) }));
    assert_eq!(leader.phase(), LeaderPhase::Synchronization);
    assert_eq!(
        leader.step(Input::Tick),
        vec![
            send(2, Packet::Ping { touches: vec![] }),
            send(3, Packet::Ping { touches: vec![] })
        ]
    );
}
