//! The ZooKeeper client wire protocol (jute records, 4-byte length framing).
