//! Zab, the ZooKeeper atomic broadcast, as sans-IO state machines.
//!
//! After an election, a [`Leader`] and its [`Follower`]s (and non-voting [`Observer`]s)
//! agree on a new epoch (discovery), bring every learner's log in line with the leader's
//! (synchronisation by DIFF, TRUNC or SNAP) and then replicate writes with PROPOSAL / ACK /
//! COMMIT (broadcast), as Apache ZooKeeper 3.8 does. Txns are opaque bytes with a zxid;
//! what they are applied to is a [`StateMachine`].
//!
//! The cores do no I/O, read no clock and spawn nothing: [`Input`]s (packets, half-ticks,
//! "persisted up to zxid") go in, typed [`Command`]s come out, and the driver executes them
//! in order. "ACK only after fsync" shows in the types: a follower answers a PROPOSAL with
//! [`Command::Persist`] and only the input [`Input::Persisted`] makes it send the ACK.
//!
//! ```
//! use bytes::Bytes;
//! use zk_quorum::{Command, Config, Ensemble, Follower, History, Input, Leader,
//!     LeaderStorage, LearnerStorage, Packet};
//!
//! let ensemble = Ensemble::new([1, 2, 3], []);
//! let mut leader = Leader::new(1, Config::default(), ensemble, LeaderStorage {
//!     accepted_epoch: 0, current_epoch: 0, applied_zxid: 0,
//!     history: History::new(0, 500, 1_000_000), snapshot_bytes: 0,
//! });
//! let empty = LearnerStorage { accepted_epoch: 0, current_epoch: 0, last_logged_zxid: 0, applied_zxid: 0 };
//! let mut follower = Follower::new(2, 1, Config::default(), empty);
//! leader.start();
//!
//! // A tiny in-memory "network": deliver every Send, complete every Persist at once.
//! let mut to_leader = follower.start();
//! for _ in 0..10 {
//!     let mut to_follower = Vec::new();
//!     for c in std::mem::take(&mut to_leader) {
//!         if let Command::Send { packet, .. } = c {
//!             to_follower.extend(leader.step(Input::Message { from: 2, packet }));
//!         }
//!     }
//!     for c in to_follower {
//!         match c {
//!             Command::Send { to: 2, packet } => {
//!                 to_leader.extend(follower.step(Input::Message { from: 1, packet }))
//!             }
//!             Command::Persist { txns } => {
//!                 let zxid = txns.last().map(|t| t.zxid).unwrap_or(0);
//!                 to_leader.extend(follower.step(Input::Persisted { zxid }));
//!             }
//!             _ => {}
//!         }
//!     }
//! }
//! assert_eq!(leader.phase(), zk_quorum::LeaderPhase::Broadcast);
//! let (zxid, commands) = leader.propose(Bytes::from_static(b"create /a")).unwrap();
//! assert_eq!(zxid, zk_proto::zxid::make(1, 1));
//! assert!(matches!(&commands[0], Command::Persist { .. }));
//! assert!(matches!(&commands[1], Command::Send { to: 2, packet: Packet::Proposal(_) }));
//! ```

pub mod broadcast;
pub mod command;
pub mod discovery;
pub mod driver;
pub mod error;
pub mod follower;
pub mod hooks;
pub mod leader;
pub mod learner;
pub mod observer;
pub mod state_machine;
pub mod sync;
pub mod transport;
pub mod types;

pub use command::{Command, Input};
pub use error::{DecodeError, ZabError};
pub use follower::Follower;
pub use leader::{Leader, LeaderPhase, LeaderStorage};
pub use learner::{LearnerPhase, LearnerStorage};
pub use observer::Observer;
pub use state_machine::{Rollback, StateMachine};
pub use sync::{History, SyncMode, SyncPlan, snapshot_packets};
pub use types::{
    Config, Ensemble, ForwardedRequest, LearnerInfo, Packet, ServerId, SessionTouch, Txn, Zxid,
};
