//! The follower core: a voting learner (ZooKeeper's `Follower`).

crate::learner::learner_core!(
    /// A follower: syncs with the leader, then logs every PROPOSAL, acknowledges it once
    /// durable and applies it on COMMIT.
    Follower,
    observer = false
);
