//! Arbitrary txns, including malformed paths, mismatched op codes and nonsense versions,
//! never panic the DataTree nor break its structure: every node is reachable from `/`
//! through the children lists, the counts agree, every ephemeral listed exists and is
//! owned by its session, and a snapshot of the result reads back equal.

use std::io::BufReader;

use proptest::prelude::*;
use zk_proto::data::{Acl, ErrorCode, OpCode};
use zk_proto::txn::{MultiMember, Txn, TxnEntry, TxnHeader};
use zk_storage::tree::{DataTree, NodeKind};

fn arb_path() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::collection::vec(prop::sample::select(vec!["a", "b", "zookeeper", "quota"]), 1..4)
            .prop_map(|segs| format!("/{}", segs.join("/"))),
        1 => "[/a.\\x00\\x01é]{0,6}",
        1 => Just("/".to_string()),
    ]
}

fn arb_body() -> impl Strategy<Value = Txn> {
    let data = prop::option::of(prop::collection::vec(any::<u8>(), 0..4));
    prop_oneof![
        (arb_path(), data.clone(), any::<bool>(), -2i32..4).prop_map(
            |(path, data, ephemeral, pcv)| Txn::Create {
                path,
                data,
                acl: Acl::open_unsafe(),
                ephemeral,
                parent_cversion: pcv
            }
        ),
        (arb_path(), -2i32..4).prop_map(|(path, pcv)| Txn::CreateContainer {
            path,
            data: Some(vec![]),
            acl: vec![],
            parent_cversion: pcv
        }),
        (arb_path(), -1i64..3).prop_map(|(path, ttl)| Txn::CreateTtl {
            path,
            data: Some(vec![]),
            acl: Acl::read_unsafe(),
            parent_cversion: -1,
            ttl
        }),
        arb_path().prop_map(|path| Txn::Delete { path }),
        (arb_path(), data, any::<i32>()).prop_map(|(path, data, version)| Txn::SetData {
            path,
            data,
            version
        }),
        (arb_path(), any::<i32>()).prop_map(|(path, version)| Txn::SetAcl {
            path,
            acl: vec![],
            version
        }),
        (arb_path(), any::<i32>()).prop_map(|(path, version)| Txn::Check { path, version }),
        any::<i32>().prop_map(|timeout_ms| Txn::CreateSession { timeout_ms }),
        prop::collection::vec(arb_path(), 0..3)
            .prop_map(|paths_to_delete| Txn::CloseSession { paths_to_delete }),
        Just(Txn::Error {
            err: ErrorCode::NoNode
        }),
    ]
}

fn arb_op() -> impl Strategy<Value = OpCode> {
    prop::sample::select(OpCode::ALL)
}

fn arb_entry() -> impl Strategy<Value = TxnEntry> {
    let body = prop_oneof![
        6 => (arb_op(), arb_body()).prop_map(|(op, txn)| (op, txn)),
        // Mostly well-formed: the op code that goes with the body.
        6 => arb_body().prop_map(|txn| {
            let op = OpCode::ALL.iter().copied().find(|&op| txn.accepts_op(op)).unwrap_or(OpCode::Error);
            (op, txn)
        }),
        2 => prop::collection::vec((arb_op(), arb_body()), 0..4).prop_map(|m| {
            (OpCode::Multi, Txn::Multi(m.into_iter().map(|(op, txn)| MultiMember { op, txn }).collect()))
        }),
    ];
    (0i64..3, 0i64..100, body).prop_map(|(session, zxid, (op, txn))| TxnEntry {
        header: TxnHeader {
            client_id: session,
            cxid: 0,
            zxid,
            time: zxid,
            op,
        },
        txn,
    })
}

fn check_structure(tree: &DataTree) -> Result<(), TestCaseError> {
    if let Err(e) = tree.check_invariants() {
        return Err(TestCaseError::fail(e));
    }
    let mut seen = 0usize;
    let mut stack = vec!["/".to_string()];
    while let Some(p) = stack.pop() {
        seen += 1;
        prop_assert!(seen <= tree.node_count(), "cycle or stray node");
        let node = tree.get(&p);
        prop_assert!(node.is_some(), "child {} not found by path", p);
        let children = tree.children(&p).unwrap();
        prop_assert_eq!(node.unwrap().num_children() as usize, children.len());
        for c in children {
            stack.push(if p == "/" {
                format!("/{c}")
            } else {
                format!("{p}/{c}")
            });
        }
    }
    prop_assert_eq!(seen, tree.node_count());
    let mut ephemerals = 0;
    for s in tree.sessions_with_ephemerals() {
        for p in tree.ephemerals(s) {
            ephemerals += 1;
            let n = tree.get(p);
            prop_assert!(n.is_some());
            prop_assert_eq!(n.unwrap().kind(), NodeKind::Ephemeral(s));
        }
    }
    prop_assert_eq!(ephemerals, tree.ephemeral_count());
    for p in tree.containers() {
        prop_assert_eq!(tree.get(p).map(|n| n.kind()), Some(NodeKind::Container));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_txns_keep_the_tree_whole(entries in prop::collection::vec(arb_entry(), 1..40)) {
        let mut tree = DataTree::new();
        for e in &entries {
            let before = tree.last_processed_zxid();
            let out = tree.apply(e);
            prop_assert_eq!(tree.last_processed_zxid(), before.max(e.header.zxid));
            if let Txn::Multi(m) = &e.txn
                && e.header.op == OpCode::Multi
            {
                prop_assert_eq!(out.multi.len(), m.len());
            }
        }
        check_structure(&tree)?;
        let mut buf = Vec::new();
        tree.snapshot_view().write_to(&mut buf).unwrap();
        let restored = DataTree::read_from(&mut BufReader::new(&buf[..])).unwrap();
        prop_assert_eq!(restored.digest(), tree.digest());
        check_structure(&restored)?;
    }
}
