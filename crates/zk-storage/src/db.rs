//! The database of one node: snapshot + log replay.
