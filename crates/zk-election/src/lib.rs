//! ZooKeeper's FastLeaderElection (`electionAlg=3`) as a library.
//!
//! This crate will own a sans-IO election core (notifications and ticks in, notifications
//! and a decision out) and a tonic transport with one bidirectional stream per pair of
//! peers. It knows nothing of znodes.
