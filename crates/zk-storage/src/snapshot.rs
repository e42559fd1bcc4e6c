//! Snapshots of the database.
