//! The state the replicated txns are applied to.

use bytes::Bytes;
use zk_storage::log::TxnLog;

use crate::types::{Txn, Zxid};

/// What [`StateMachine::rollback`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rollback {
    /// The state is rebuilt at the truncation point.
    Done,
    /// This state machine cannot roll back; the driver stops with an error.
    Unsupported,
}

/// A deterministic state machine fed by Zab: every replica applies the same txns in the
/// same zxid order.
///
/// A driver executes [`crate::Command::Apply`] with [`StateMachine::apply`],
/// [`crate::Command::SendSnapshot`] with [`StateMachine::snapshot`],
/// [`crate::Command::InstallSnapshot`] with [`StateMachine::restore`] and a
/// [`crate::Command::Truncate`] below `applied_zxid()` with [`StateMachine::rollback`].
///
/// # Restart contract
///
/// The driver's storage ([`crate::driver::NodeStorage`]) is the txn log, the epochs, this
/// state machine and `log_base`, the zxid the log starts after. On restart the server
/// loads its newest durable snapshot (zxid `S`), passes `log_base = S`, and may replay
/// the whole log after `S` into the state machine, committed or not, as ZooKeeper does:
/// the driver tells the cores only that `S` (or what it applied itself) is committed, so
/// if the new leader truncates txns this node replayed, the driver rolls them back.
///
/// * [`restore`](StateMachine::restore) must make the snapshot durable before it returns
///   (the driver then replaces the whole log with the txns that follow the snapshot and
///   sets `log_base` to its zxid, in memory only: after a restart the server must find
///   that snapshot and pass its zxid as `log_base`).
/// * A snapshot the server takes on its own must hold committed txns only (e.g. be taken
///   at a zxid the driver applied, `NodeStatus::applied`, while the node serves), so that
///   no truncation ever goes below it.
pub trait StateMachine {
    /// Why an operation failed (the node must stop: state machines are deterministic).
    type Error: std::error::Error + Send + Sync + 'static;

    /// The zxid of the last txn applied (or of the snapshot restored).
    fn applied_zxid(&self) -> Zxid;

    /// Applies one committed txn; its zxid is greater than `applied_zxid()`.
    fn apply(&mut self, txn: &Txn) -> Result<(), Self::Error>;

    /// Serialises the state as of `applied_zxid()` into chunks of at most
    /// `max_chunk_bytes` each.
    fn snapshot(&self, max_chunk_bytes: usize) -> Result<Vec<Bytes>, Self::Error>;

    /// Replaces the state with the snapshot made of `chunks` (in order), taken at `zxid`,
    /// and makes that snapshot durable (see the restart contract above).
    fn restore(&mut self, zxid: Zxid, chunks: &[Bytes]) -> Result<(), Self::Error>;

    /// Called by a learner's driver after the leader's TRUNC removed every logged txn after
    /// `to` while `applied_zxid() > to` (txns replayed at restart that the new epoch
    /// dropped). Rebuild the state as of `to`, e.g. reload the newest durable snapshot at
    /// or below `to` (and forget newer ones) and re-apply `log`'s txns up to `to`; `log`
    /// holds exactly the txns after the driver's `log_base` up to `to`. Afterwards
    /// `applied_zxid()` must be `to`.
    ///
    /// The default returns [`Rollback::Unsupported`]: enough for a state machine that is
    /// only ever fed by the driver (the driver applies committed txns only, and a TRUNC
    /// never goes below a committed txn).
    fn rollback(&mut self, to: Zxid, log: &dyn TxnLog) -> Result<Rollback, Self::Error> {
        let _ = (to, log);
        Ok(Rollback::Unsupported)
    }
}
