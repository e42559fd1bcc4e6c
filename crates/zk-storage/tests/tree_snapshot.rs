//! DataTree snapshots: view → write → read gives the same tree; a view is a consistent
//! copy while the tree keeps applying txns (on another thread too); damaged, truncated and
//! crafted inputs give errors, never panics or huge allocations.

use std::io::BufReader;

use proptest::prelude::*;
use zk_proto::data::{Acl, Id, OpCode};
use zk_proto::txn::{Txn, TxnEntry, TxnHeader};
use zk_storage::tree::{DataTree, TreeSnapshotError};

struct Builder {
    tree: DataTree,
    zxid: i64,
}

impl Builder {
    fn apply(&mut self, session: i64, op: OpCode, txn: Txn) {
        self.zxid += 1;
        let out = self.tree.apply(&TxnEntry {
            header: TxnHeader {
                client_id: session,
                cxid: 0,
                zxid: self.zxid,
                time: 10 * self.zxid,
                op,
            },
            txn,
        });
        assert!(out.is_ok(), "{out:?}");
    }

    fn create(&mut self, path: &str, data: &[u8], acl: Vec<Acl>, ephemeral_session: i64) {
        self.apply(
            ephemeral_session.max(1),
            OpCode::Create2,
            Txn::Create {
                path: path.into(),
                data: Some(data.to_vec()),
                acl,
                ephemeral: ephemeral_session != 0,
                parent_cversion: -1,
            },
        );
    }
}

fn sample_tree() -> DataTree {
    let mut b = Builder {
        tree: DataTree::new(),
        zxid: 0x3_0000_0000,
    };
    b.apply(
        7,
        OpCode::CreateSession,
        Txn::CreateSession { timeout_ms: 4000 },
    );
    b.apply(
        8,
        OpCode::CreateSession,
        Txn::CreateSession { timeout_ms: 9000 },
    );
    let digest_acl = vec![Acl {
        perms: 31,
        id: Id::new("digest", "alice:abc="),
    }];
    b.create("/a", b"root of a", Acl::open_unsafe(), 0);
    b.create("/a/b", &[0u8; 300], digest_acl.clone(), 0);
    b.create("/a/b/c", b"", Acl::read_unsafe(), 0);
    b.create("/a/e1", b"eph", Acl::open_unsafe(), 7);
    b.create("/a/e2", b"eph", Acl::open_unsafe(), 8);
    for i in 0..50 {
        b.create(
            &format!("/a/many{i:03}"),
            &[i as u8; 17],
            digest_acl.clone(),
            0,
        );
    }
    b.apply(
        1,
        OpCode::CreateContainer,
        Txn::CreateContainer {
            path: "/box".into(),
            data: Some(vec![]),
            acl: Acl::open_unsafe(),
            parent_cversion: -1,
        },
    );
    b.apply(
        1,
        OpCode::CreateTtl,
        Txn::CreateTtl {
            path: "/ttl".into(),
            data: Some(b"t".to_vec()),
            acl: Acl::open_unsafe(),
            parent_cversion: -1,
            ttl: 60_000,
        },
    );
    b.apply(
        1,
        OpCode::SetData,
        Txn::SetData {
            path: "/a".into(),
            data: Some(b"v2".to_vec()),
            version: 1,
        },
    );
    b.apply(
        1,
        OpCode::Delete,
        Txn::Delete {
            path: "/a/many007".into(),
        },
    );
    // Null data, from a create and from a setData.
    b.apply(
        1,
        OpCode::Create,
        Txn::Create {
            path: "/null".into(),
            data: None,
            acl: Acl::open_unsafe(),
            ephemeral: false,
            parent_cversion: -1,
        },
    );
    b.apply(
        1,
        OpCode::SetData,
        Txn::SetData {
            path: "/a/many008".into(),
            data: None,
            version: 1,
        },
    );
    b.tree
        .init_config_node(b"server.1=127.0.0.1:2888:3888", 5, 99);
    b.tree
}

fn all_paths(tree: &DataTree) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec!["/".to_string()];
    while let Some(p) = stack.pop() {
        for c in tree.children(&p).unwrap() {
            stack.push(if p == "/" {
                format!("/{c}")
            } else {
                format!("{p}/{c}")
            });
        }
        out.push(p);
    }
    out.sort();
    out
}

fn assert_same(a: &DataTree, b: &DataTree) {
    assert_eq!(a.digest(), b.digest());
    assert_eq!(a.node_count(), b.node_count());
    let paths = all_paths(a);
    assert_eq!(paths.len(), a.node_count());
    assert_eq!(paths, all_paths(b));
    for p in &paths {
        let (x, y) = (a.get(p).unwrap(), b.get(p).unwrap());
        assert_eq!(x.data(), y.data(), "{p}");
        assert_eq!(x.persisted(), y.persisted(), "{p}");
        assert_eq!(x.stat(), y.stat(), "{p}");
        assert_eq!(x.acl(), y.acl(), "{p}");
        assert_eq!(a.children(p), b.children(p), "{p}");
    }
    assert_eq!(
        a.sessions().collect::<Vec<_>>(),
        b.sessions().collect::<Vec<_>>()
    );
    for s in [7, 8, 9] {
        assert_eq!(a.ephemerals(s), b.ephemerals(s));
    }
    assert_eq!(a.containers(), b.containers());
    assert_eq!(a.ttl_nodes(), b.ttl_nodes());
    assert_eq!(a.last_processed_zxid(), b.last_processed_zxid());
    assert_eq!(a.approximate_data_size(), b.approximate_data_size());
    assert_eq!(a.acl_list_count(), b.acl_list_count());
}

fn snapshot_bytes(tree: &DataTree) -> Vec<u8> {
    let mut buf = Vec::new();
    let n = tree.snapshot_view().write_to(&mut buf).unwrap();
    assert_eq!(n as usize, buf.len());
    buf
}

fn read(bytes: &[u8]) -> Result<DataTree, TreeSnapshotError> {
    let tree = DataTree::read_from(&mut BufReader::new(bytes))?;
    if let Err(e) = tree.check_invariants() {
        panic!("restored tree broken: {e}");
    }
    Ok(tree)
}

#[test]
fn round_trip_restores_every_node() {
    let tree = sample_tree();
    let bytes = snapshot_bytes(&tree);
    let restored = read(&bytes).unwrap();
    assert_same(&tree, &restored);
    assert_eq!(restored.ephemerals(7), vec!["/a/e1"]);
    assert_eq!(restored.containers(), vec!["/box"]);
    // Null data stays null, empty stays empty.
    assert_eq!(restored.get("/null").unwrap().data(), None);
    assert_eq!(restored.get("/a/many008").unwrap().data(), None);
    assert_eq!(restored.get("/a/b/c").unwrap().data(), Some(&b""[..]));
    assert_eq!(restored.stat("/null").unwrap().data_length, 0);
    // And once more from the restored tree.
    assert_same(&tree, &read(&snapshot_bytes(&restored)).unwrap());
}

#[test]
fn reader_stops_at_the_end_of_the_snapshot() {
    let tree = sample_tree();
    let mut bytes = snapshot_bytes(&tree);
    let len = bytes.len();
    bytes.extend_from_slice(b"next record");
    let mut r = &bytes[..];
    DataTree::read_from(&mut r).unwrap();
    assert_eq!(r, b"next record");
    assert_eq!(bytes.len() - r.len(), len);
}

#[test]
fn view_is_a_consistent_copy_while_the_tree_changes() {
    let tree = sample_tree();
    let mut live = tree.clone();
    let view = live.snapshot_view();
    assert_eq!(view.node_count(), tree.node_count() as u64);
    assert_eq!(view.last_zxid(), tree.last_processed_zxid());
    let mut b = Builder {
        tree: live,
        zxid: 0x4_0000_0000,
    };
    b.create("/later", b"x", Acl::open_unsafe(), 0);
    b.apply(
        1,
        OpCode::SetData,
        Txn::SetData {
            path: "/a/b".into(),
            data: Some(b"changed".to_vec()),
            version: 1,
        },
    );
    b.apply(
        1,
        OpCode::Delete,
        Txn::Delete {
            path: "/a/b/c".into(),
        },
    );
    b.apply(
        7,
        OpCode::CloseSession,
        Txn::CloseSession {
            paths_to_delete: vec![],
        },
    );
    live = b.tree;
    // Writing on another thread while the tree keeps applying.
    let writer = std::thread::spawn(move || {
        let mut buf = Vec::new();
        view.write_to(&mut buf).map(|_| buf)
    });
    let mut b = Builder {
        tree: live,
        zxid: 0x4_0000_0100,
    };
    for i in 0..2000 {
        b.create(&format!("/bulk{i}"), b"y", Acl::open_unsafe(), 0);
    }
    let bytes = writer.join().unwrap().unwrap();
    let restored = read(&bytes).unwrap();
    assert_same(&tree, &restored);
    assert!(!restored.exists("/later"));
    assert!(b.tree.exists("/bulk1999"));
    assert_eq!(b.tree.get("/a/b").unwrap().data(), Some(&b"changed"[..]));
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = snapshot_bytes(&sample_tree());
    for len in 0..bytes.len() {
        match read(&bytes[..len]) {
            Err(TreeSnapshotError::Truncated | TreeSnapshotError::BadTrailer) => {}
            other => panic!("prefix {len}: {other:?}"),
        }
    }
}

#[test]
fn every_flipped_byte_is_an_error() {
    let bytes = snapshot_bytes(&sample_tree());
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x41;
        assert!(read(&bad).is_err(), "flip at {i} accepted");
    }
}

#[test]
fn header_errors() {
    assert!(matches!(read(b""), Err(TreeSnapshotError::Truncated)));
    assert!(matches!(
        read(b"ZKSN\x01\0\0\0"),
        Err(TreeSnapshotError::BadMagic)
    ));
    assert!(matches!(
        read(b"ZKDT\x03\0\0\0"),
        Err(TreeSnapshotError::UnsupportedVersion(3))
    ));
}

/// Builds a version 1 snapshot by hand (with a valid checksum) from (path, acl index)
/// nodes with empty data.
fn craft(nodes: &[(&str, u32)], acl_lists: u32, node_count: u64) -> Vec<u8> {
    let nodes: Vec<_> = nodes.iter().map(|&(p, a)| (p, a, 0)).collect();
    craft_versioned(1, &nodes, acl_lists, node_count)
}

/// Builds a snapshot by hand (with a valid checksum) from (path, acl index, data_len)
/// nodes; a data_len other than 0 and `u32::MAX` is followed by that many zero bytes.
fn craft_versioned(
    version: u32,
    nodes: &[(&str, u32, u32)],
    acl_lists: u32,
    node_count: u64,
) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"ZKDT");
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&5i64.to_le_bytes());
    b.extend_from_slice(&node_count.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&acl_lists.to_le_bytes());
    for _ in 0..acl_lists {
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&31i32.to_le_bytes());
        for s in ["world", "anyone"] {
            b.extend_from_slice(&(s.len() as u32).to_le_bytes());
            b.extend_from_slice(s.as_bytes());
        }
    }
    for (path, acl, data_len) in nodes {
        b.extend_from_slice(&(path.len() as u32).to_le_bytes());
        b.extend_from_slice(&data_len.to_le_bytes());
        b.extend_from_slice(&acl.to_le_bytes());
        b.extend_from_slice(&[0u8; 60]);
        b.extend_from_slice(path.as_bytes());
        if *data_len != u32::MAX {
            b.resize(b.len() + *data_len as usize, 0);
        }
    }
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(b"DTND");
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

#[test]
fn null_data_is_version_2_only() {
    let nodes = [("/", 0, 0), ("/n", 0, u32::MAX), ("/e", 0, 0), ("/d", 0, 3)];
    let tree = read(&craft_versioned(2, &nodes, 1, 4)).unwrap();
    assert_eq!(tree.get("/n").unwrap().data(), None);
    assert_eq!(tree.get("/e").unwrap().data(), Some(&b""[..]));
    assert_eq!(tree.get("/d").unwrap().data(), Some(&[0u8; 3][..]));
    // Version 1 has no null: the same bytes are a data length beyond the limit.
    assert!(matches!(
        read(&craft_versioned(1, &nodes, 1, 4)),
        Err(TreeSnapshotError::TooLong { what: "data", .. })
    ));
    // A version 1 snapshot without the marker still reads.
    let old = read(&craft_versioned(1, &[("/", 0, 0), ("/d", 0, 2)], 1, 2)).unwrap();
    assert_eq!(old.get("/d").unwrap().data(), Some(&[0u8; 2][..]));
}

#[test]
fn crafted_structure_errors() {
    let ok = craft(&[("/", 0), ("/a", 0), ("/a/b", 0)], 1, 3);
    let tree = read(&ok).unwrap();
    assert_eq!(tree.children("/a").unwrap(), vec!["b"]);
    assert_eq!(tree.last_processed_zxid(), 5);

    assert!(matches!(
        read(&craft(&[("/a", 0)], 1, 1)),
        Err(TreeSnapshotError::MissingRoot)
    ));
    assert!(matches!(
        read(&craft(&[("/", 0), ("/a/b", 0)], 1, 2)),
        Err(TreeSnapshotError::Orphan(p)) if p == "/a/b"
    ));
    assert!(matches!(
        read(&craft(&[("/", 0), ("/a", 0), ("/a", 0)], 1, 3)),
        Err(TreeSnapshotError::Duplicate(p)) if p == "/a"
    ));
    assert!(matches!(
        read(&craft(&[("/", 0), ("/", 0)], 1, 2)),
        Err(TreeSnapshotError::Duplicate(_))
    ));
    assert!(matches!(
        read(&craft(&[("/", 0), ("/a", 3)], 1, 2)),
        Err(TreeSnapshotError::BadAclIndex { index: 3, .. })
    ));
    assert!(matches!(
        read(&craft(&[("/", 0), ("/a/", 0)], 1, 2)),
        Err(TreeSnapshotError::InvalidPath { .. })
    ));
    // More nodes announced than present: the trailer is read as a node and the input ends.
    assert!(matches!(
        read(&craft(&[("/", 0)], 1, 2)),
        Err(TreeSnapshotError::Truncated)
    ));
    // A huge announced count with no data: fails fast without reserving for it.
    assert!(matches!(
        read(&craft(&[("/", 0)], 1, u32::MAX as u64 - 1)),
        Err(TreeSnapshotError::Truncated)
    ));
    assert!(matches!(
        read(&craft(&[], 0, u64::MAX)),
        Err(TreeSnapshotError::TooLong { .. })
    ));
}

#[test]
fn huge_length_fields_do_not_allocate() {
    // A node header announcing 2 GiB of data, then nothing: an error, not an allocation.
    let mut b = craft(&[("/", 0)], 1, 1);
    b.truncate(b.len() - 8);
    let node_start = b.len() - (72 + 1);
    b[node_start + 4..node_start + 8].copy_from_slice(&(i32::MAX as u32).to_le_bytes());
    assert!(matches!(read(&b), Err(TreeSnapshotError::Truncated)));
    b[node_start..node_start + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        read(&b),
        Err(TreeSnapshotError::TooLong { what: "path", .. })
    ));
}

proptest! {
    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512), magic in any::<bool>()) {
        let mut input = bytes;
        if magic && input.len() >= 8 {
            input[..4].copy_from_slice(b"ZKDT");
            input[4..8].copy_from_slice(&1u32.to_le_bytes());
        }
        prop_assert!(read(&input).is_err());
    }
}

#[test]
fn views_and_trees_can_move_between_threads() {
    fn send_static<T: Send + Sync + 'static>(_: &T) {}
    let tree = sample_tree();
    let view = tree.snapshot_view();
    send_static(&view);
    send_static(&tree);
    // Many views at once share the chunks; each still writes its own moment.
    let mut live = tree;
    let views: Vec<_> = (0..3)
        .map(|i| {
            let v = live.snapshot_view();
            let mut b = Builder {
                tree: live.clone(),
                zxid: 0x6_0000_0000 + 10 * i,
            };
            b.create(&format!("/v{i}"), b"", Acl::open_unsafe(), 0);
            live = b.tree;
            v
        })
        .collect();
    for (i, v) in views.iter().enumerate() {
        let mut buf = Vec::new();
        v.write_to(&mut buf).unwrap();
        let t = read(&buf).unwrap();
        for j in 0..3 {
            assert_eq!(t.exists(&format!("/v{j}")), j < i, "view {i} node {j}");
        }
    }
}

#[test]
fn large_data_round_trips() {
    let mut b = Builder {
        tree: DataTree::new(),
        zxid: 0x7_0000_0000,
    };
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let long_name = format!("/{}", "n".repeat(70_000));
    b.create("/big", &big, Acl::open_unsafe(), 0);
    b.create(&long_name, b"x", Acl::open_unsafe(), 0);
    let bytes = snapshot_bytes(&b.tree);
    let restored = read(&bytes).unwrap();
    assert_same(&b.tree, &restored);
    assert_eq!(restored.get("/big").unwrap().data(), Some(&big[..]));
    assert_eq!(restored.stat("/big").unwrap().data_length, 300_000);
    assert!(restored.exists(&long_name));
}
