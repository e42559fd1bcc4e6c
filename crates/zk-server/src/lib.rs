//! One node of a ZooKeeper-compatible ensemble.
//!
//! This crate will wire election, Zab and the database into a server that existing
//! ZooKeeper clients use unchanged: `zoo.cfg` parsing, the peer lifecycle
//! (LOOKING → LEADING / FOLLOWING / OBSERVING), the client port (jute), sessions, watches,
//! the request pipeline, four-letter words and the admin server.
//!
//! The self-contained building blocks exist so far, each without I/O of its own (except
//! [`config::load`], which reads `zoo.cfg` and `myid`):
//!
//! * [`config`]: `zoo.cfg` and `myid` (`QuorumPeerConfig`).
//! * [`acl`]: authentication schemes and permission checks (`checkACL`, `fixupACL`).
//! * [`watch`]: the watch manager (one-shot, persistent and recursive watches).
//! * [`session`]: the session tracker (expiry buckets, ids, passwords), time as an input.

pub mod acl;
pub mod config;
pub mod session;
pub mod watch;
