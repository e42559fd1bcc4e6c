//! ZooKeeper's FastLeaderElection (`electionAlg=3`) as a library.
//!
//! * [`Election`] is the sans-IO core: notifications, ticks and peer up/down go in
//!   ([`Input`]); notifications to send and the [`Decision`] come out ([`Output`]). No
//!   tokio, no clock, no threads inside.
//! * [`Vote`] has ZooKeeper's order (epoch, then zxid, then sid); a [`QuorumVerifier`]
//!   decides quorums ([`Majority`], [`Weighted`]); observers never vote.
//! * [`ElectionNode`] runs the core behind a tonic transport (one bidirectional stream
//!   per pair of peers, the larger sid's connection survives) and [`ElectionHandle::run`]
//!   runs one election each time the node is LOOKING.
//!
//! It knows nothing of znodes.
//!
//! ```
//! use std::sync::Arc;
//! use zk_election::{CoreConfig, Election, Input, Majority, Output, PeerState};
//!
//! // Two of three voters, driven by hand: node 1 hears node 2's better vote, adopts it,
//! // and decides to follow 2 once the finalize wait (200 ms) passes.
//! let q = Arc::new(Majority::new([1, 2, 3], []).unwrap());
//! let mut n1 = Election::new(CoreConfig::new(1), q.clone()).unwrap();
//! let mut n2 = Election::new(CoreConfig::new(2), q).unwrap();
//! n1.start_election(0, 0x1_0000_0001, 1);
//! for out in n2.start_election(0, 0x1_0000_0009, 1) {
//!     if let Output::Send { to: 1, notification } = out {
//!         n1.step(Input::Receive(notification));
//!     }
//! }
//! let out = n1.step(Input::Tick { now_ms: 200 });
//! assert!(matches!(&out[..], [Output::Decided(d)] if d.leader() == 2 && d.state == PeerState::Following));
//! ```

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
pub use crate::node::{ElectionHandle, ElectionInputs, ElectionNode, NodeStatus, run};
pub use crate::quorum::{Hierarchical, Majority, QuorumVerifier, Weighted};
pub use crate::transport::{Dialer, TcpDialer};
pub use crate::vote::{Decision, Notification, PeerState, Sid, Vote};
