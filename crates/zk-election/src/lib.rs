//! ZooKeeper's FastLeaderElection (`electionAlg=3`) as a library.
//!
//! * [`Election`]: the sans-IO core. Notifications, ticks and peer up/down go in
//!   ([`Input`]); notifications to send and the [`Decision`] come out ([`Output`]).
//! * [`Vote`] with ZooKeeper's order (epoch, then zxid, then sid), [`QuorumVerifier`]
//!   with [`Majority`] and [`Weighted`] quorums (observers never vote).
//!
//! It knows nothing of znodes.

#![deny(missing_docs)]

pub mod config;
pub mod core;
pub mod error;
pub mod node;
pub mod quorum;
pub mod transport;
pub mod vote;

pub use crate::config::{Member, NodeConfig};
pub use crate::core::{CoreConfig, Election, Input, Output};
pub use crate::error::{DecodeError, ElectionError, InvariantViolation};
pub use crate::node::{ElectionHandle, ElectionInputs, ElectionNode, NodeStatus};
pub use crate::quorum::{Majority, QuorumVerifier, Weighted};
pub use crate::transport::{Dialer, TcpDialer};
pub use crate::vote::{Decision, Notification, PeerState, Sid, Vote};
