#![doc = include_str!("../README.md")]

pub mod acl;
pub mod admin;
pub mod client;
pub mod cnxn;
pub mod config;
pub mod fourlw;
pub mod metrics;
pub mod node;
pub mod pipeline;
pub mod prep;
pub mod quorum;
pub mod server;
pub mod session;
pub mod snapshots;
pub mod watch;
