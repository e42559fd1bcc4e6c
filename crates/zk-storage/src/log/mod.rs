//! The durable txn log and epochs.
