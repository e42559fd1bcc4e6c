//! The in-memory znode tree.
