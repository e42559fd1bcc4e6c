//! The ZooKeeper database of one node.
//!
//! This crate will own the `DataTree` (znodes with data, ACLs, `Stat`, ephemerals by
//! session, containers and TTL nodes, deterministic `apply` of txns), the checksummed txn
//! log on sled with group commit, `acceptedEpoch` / `currentEpoch`, fuzzy snapshots streamed
//! in chunks, and `ZkDatabase::open` (newest valid snapshot + log replay).
//! It knows nothing of the network.

pub mod db;
mod fsio;
pub mod log;
pub mod snapshot;
pub mod tree;
