//! Zab: discovery, synchronisation (DIFF / TRUNC / SNAP) and broadcast.
//!
//! This crate will own sans-IO leader, follower and observer cores that replicate opaque
//! txns, the state-machine trait they apply them to, and a tonic transport.
