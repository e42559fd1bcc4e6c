//! The state the replicated txns are applied to.

use bytes::Bytes;

use crate::types::{Txn, Zxid};

/// A deterministic state machine fed by Zab: every replica applies the same txns in the
/// same zxid order. A driver executes [`crate::Command::Apply`] with [`StateMachine::apply`],
/// [`crate::Command::SendSnapshot`] with [`StateMachine::snapshot`] and
/// [`crate::Command::InstallSnapshot`] with [`StateMachine::restore`].
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

    /// Replaces the state with the snapshot made of `chunks` (in order), taken at `zxid`.
    fn restore(&mut self, zxid: Zxid, chunks: &[Bytes]) -> Result<(), Self::Error>;
}
