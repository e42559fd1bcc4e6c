//! One node of a ZooKeeper-compatible ensemble.
//!
//! This crate will wire election, Zab and the database into a server that existing
//! ZooKeeper clients use unchanged: `zoo.cfg` parsing, the peer lifecycle
//! (LOOKING → LEADING / FOLLOWING / OBSERVING), the client port (jute), sessions, watches,
//! the request pipeline, four-letter words and the admin server.
