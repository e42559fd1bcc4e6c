//! Typed errors of the election crate.

/// A peer message that could not be turned into one of our types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The `state` field holds a value that is not a known `PeerState`.
    #[error("unknown peer state {0}")]
    UnknownState(i32),
    /// A required oneof or message field is absent.
    #[error("missing field {0}")]
    MissingField(&'static str),
    /// A message arrived where another kind was expected (e.g. no `Hello` first).
    #[error("unexpected message: {0}")]
    Unexpected(&'static str),
}

/// Errors of the election configuration, transport and driver.
#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    /// Only `electionAlg=3` (FastLeaderElection) exists since ZooKeeper 3.6.
    #[error(
        "electionAlg={0} is not supported: only electionAlg=3 (FastLeaderElection) is implemented, as in ZooKeeper 3.6+"
    )]
    UnsupportedElectionAlg(u32),
    /// The configuration is inconsistent (empty voter set, myid missing, bad weight, …).
    #[error("invalid election configuration: {0}")]
    Config(String),
    /// Binding or accepting on the election address failed.
    #[error("election transport I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The gRPC server failed.
    #[error("election transport error: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The election task has stopped (shut down, or it panicked).
    #[error("the election node has stopped")]
    Stopped,
    /// Another `run` started a new election before this one decided.
    #[error("superseded by a newer election")]
    Superseded,
}

/// An internal invariant of the election core does not hold (a bug, never bad input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("election invariant violated: {0}")]
pub struct InvariantViolation(pub String);
