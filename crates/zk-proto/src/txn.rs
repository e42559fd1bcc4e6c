//! Typed Rust form of the replicated txn (`proto/txn.proto`).
