//! The ZooKeeper database of one node. It knows nothing of the network.
//!
//! * [`tree`]: the `DataTree` (znodes with data, ACLs, `Stat`, ephemerals by session,
//!   containers and TTL nodes, deterministic `apply` of txns, copy-on-write snapshot views).
//! * [`log`]: the txn log behind the [`log::TxnLog`] trait (crc32c per record, group
//!   commit: `append` many, `sync` once), on sled ([`log::SledTxnLog`]) or in memory
//!   ([`log::MemTxnLog`], for simulations), and `acceptedEpoch` / `currentEpoch` behind
//!   [`log::EpochStore`]; both pairs pass one shared test suite, [`log::suite`].
//! * [`snapshot`]: `snapshot.<hex zxid>` files, chunked and checksummed, written atomically,
//!   verified, purged, and streamed to / received from a peer in chunks of at most 1 MiB.
//! * [`db`]: [`db::ZkDatabase`], which ties them together: `open` = newest valid snapshot +
//!   log replay, append/sync/apply, TRUNC, background snapshots, SNAP install, purge, epochs.
//!
//! ```
//! use zk_storage::db::{DbOptions, ZkDatabase};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let db = ZkDatabase::open(dir.path(), DbOptions::default())?;
//! assert_eq!(db.last_logged_zxid(), 0);
//! assert_eq!((db.accepted_epoch(), db.current_epoch()), (0, 0));
//! # Ok(()) }
//! ```

pub mod db;
mod fsio;
pub mod log;
pub mod snapshot;
pub mod tree;
