//! The observer core: a non-voting learner (ZooKeeper's `Observer`).

crate::learner::learner_core!(
    /// An observer: syncs with the leader like a follower, then receives committed txns
    /// as INFORM; never acknowledges proposals and never counts in a quorum.
    Observer,
    observer = true
);
