#![doc = include_str!("../README.md")]

pub mod acl;
pub mod config;
pub mod session;
pub mod watch;
