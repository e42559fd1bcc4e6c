use zk_proto::data::{Acl, EventType, Id, OpCode, perms};
use zk_proto::txn::{MultiMember, Txn, TxnEntry, TxnHeader};
use zk_storage::tree::DataTree;

use super::TriggerAcls;

const SESSION: i64 = 0x77;

fn digest_acl(user: &str, perm: i32) -> Vec<Acl> {
    vec![Acl {
        perms: perm,
        id: Id {
            scheme: "digest".into(),
            id: format!("{user}:hash"),
        },
    }]
}

fn entry(zxid: i64, op: OpCode, txn: Txn) -> TxnEntry {
    TxnEntry {
        header: TxnHeader {
            client_id: SESSION,
            cxid: 1,
            zxid,
            time: 1_700_000_000_000,
            op,
        },
        txn,
    }
}

fn create(path: &str, acl: Vec<Acl>, ephemeral: bool) -> Txn {
    Txn::Create {
        path: path.into(),
        data: None,
        acl,
        ephemeral,
        parent_cversion: -1,
    }
}

fn delete(path: &str) -> Txn {
    Txn::Delete { path: path.into() }
}

/// A tree with `/p` (readable by digest user `p` only) and `/p/c` (user `c` only).
fn tree() -> DataTree {
    let mut tree = DataTree::new();
    let setup = [
        entry(
            1,
            OpCode::CreateSession,
            Txn::CreateSession { timeout_ms: 30_000 },
        ),
        entry(
            2,
            OpCode::Create,
            create("/p", digest_acl("p", perms::ALL), false),
        ),
        entry(
            3,
            OpCode::Create,
            create("/p/c", digest_acl("c", perms::READ), false),
        ),
    ];
    for e in &setup {
        assert!(tree.apply(e).is_ok(), "{e:?}");
    }
    tree
}

/// Notes the ACLs, applies the txn and returns the ACL of each of its triggers.
fn acls_of_triggers(tree: &mut DataTree, e: &TxnEntry) -> Vec<(String, EventType, Vec<Acl>)> {
    let acls = TriggerAcls::before_apply(tree, e);
    let outcome = tree.apply(e);
    assert!(outcome.is_ok(), "{outcome:?}");
    outcome
        .triggers
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let acl = acls.for_trigger(tree, i, &t.path, t.event).to_vec();
            (t.path.clone(), t.event, acl)
        })
        .collect()
}

#[test]
fn create_checks_the_new_node_and_the_parent() {
    let mut tree = tree();
    let e = entry(
        4,
        OpCode::Create,
        create("/p/n", digest_acl("n", perms::READ), false),
    );
    assert_eq!(
        acls_of_triggers(&mut tree, &e),
        [
            (
                "/p/n".into(),
                EventType::NodeCreated,
                digest_acl("n", perms::READ)
            ),
            (
                "/p".into(),
                EventType::NodeChildrenChanged,
                digest_acl("p", perms::ALL)
            ),
        ]
    );
}

#[test]
fn delete_checks_the_acl_the_node_had() {
    let mut tree = tree();
    let e = entry(4, OpCode::Delete, delete("/p/c"));
    assert_eq!(
        acls_of_triggers(&mut tree, &e),
        [
            (
                "/p/c".into(),
                EventType::NodeDeleted,
                digest_acl("c", perms::READ)
            ),
            (
                "/p".into(),
                EventType::NodeChildrenChanged,
                digest_acl("p", perms::ALL)
            ),
        ]
    );
}

#[test]
fn set_data_checks_the_node() {
    let mut tree = tree();
    let e = entry(
        4,
        OpCode::SetData,
        Txn::SetData {
            path: "/p/c".into(),
            data: Some(b"1".to_vec()),
            version: -1,
        },
    );
    assert_eq!(
        acls_of_triggers(&mut tree, &e),
        [(
            "/p/c".into(),
            EventType::NodeDataChanged,
            digest_acl("c", perms::READ)
        )]
    );
}

#[test]
fn multi_uses_the_acls_of_nodes_it_creates_and_deletes() {
    let mut tree = tree();
    let member = |op, txn| MultiMember { op, txn };
    // Create then delete /p/t; delete /p/c and then /p itself.
    let e = entry(
        4,
        OpCode::Multi,
        Txn::Multi(vec![
            member(
                OpCode::Create,
                create("/p/t", digest_acl("t", perms::READ), false),
            ),
            member(OpCode::Delete, delete("/p/t")),
            member(OpCode::Delete, delete("/p/c")),
            member(OpCode::Delete, delete("/p")),
        ]),
    );
    let got = acls_of_triggers(&mut tree, &e);
    assert!(!tree.exists("/p"));
    let t = digest_acl("t", perms::READ);
    let c = digest_acl("c", perms::READ);
    let p = digest_acl("p", perms::ALL);
    let open = Acl::open_unsafe();
    assert_eq!(
        got,
        [
            ("/p/t".into(), EventType::NodeCreated, t.clone()),
            ("/p".into(), EventType::NodeChildrenChanged, p.clone()),
            ("/p/t".into(), EventType::NodeDeleted, t),
            ("/p".into(), EventType::NodeChildrenChanged, p.clone()),
            ("/p/c".into(), EventType::NodeDeleted, c),
            ("/p".into(), EventType::NodeChildrenChanged, p.clone()),
            ("/p".into(), EventType::NodeDeleted, p),
            ("/".into(), EventType::NodeChildrenChanged, open),
        ]
    );
}

#[test]
fn close_session_uses_the_acls_of_its_ephemerals() {
    let mut tree = tree();
    let e = entry(
        4,
        OpCode::Create,
        create("/e", digest_acl("e", perms::READ), true),
    );
    assert!(tree.apply(&e).is_ok());
    // An empty list: every ephemeral of the session goes.
    let close = entry(
        5,
        OpCode::CloseSession,
        Txn::CloseSession {
            paths_to_delete: Vec::new(),
        },
    );
    let got = acls_of_triggers(&mut tree, &close);
    assert!(!tree.exists("/e"));
    assert_eq!(
        got,
        [
            (
                "/e".into(),
                EventType::NodeDeleted,
                digest_acl("e", perms::READ)
            ),
            (
                "/".into(),
                EventType::NodeChildrenChanged,
                Acl::open_unsafe()
            ),
        ]
    );
}

#[test]
fn unknown_path_gives_an_empty_acl() {
    let tree = tree();
    let acls = TriggerAcls::default();
    assert!(
        acls.for_trigger(&tree, 0, "/nowhere", EventType::NodeDeleted)
            .is_empty()
    );
    assert_eq!(
        acls.for_trigger(&tree, 0, "/p", EventType::NodeDataChanged),
        digest_acl("p", perms::ALL).as_slice()
    );
}

#[test]
fn container_and_ttl_creates_check_the_acl_in_the_txn() {
    let mut tree = tree();
    let container = entry(
        4,
        OpCode::CreateContainer,
        Txn::CreateContainer {
            path: "/p/k".into(),
            data: None,
            acl: digest_acl("k", perms::READ),
            parent_cversion: -1,
        },
    );
    let ttl = entry(
        5,
        OpCode::CreateTtl,
        Txn::CreateTtl {
            path: "/p/t".into(),
            data: None,
            acl: digest_acl("t", perms::READ),
            parent_cversion: -1,
            ttl: 60_000,
        },
    );
    let p = digest_acl("p", perms::ALL);
    assert_eq!(
        acls_of_triggers(&mut tree, &container),
        [
            (
                "/p/k".into(),
                EventType::NodeCreated,
                digest_acl("k", perms::READ)
            ),
            ("/p".into(), EventType::NodeChildrenChanged, p.clone()),
        ]
    );
    assert_eq!(
        acls_of_triggers(&mut tree, &ttl),
        [
            (
                "/p/t".into(),
                EventType::NodeCreated,
                digest_acl("t", perms::READ)
            ),
            ("/p".into(), EventType::NodeChildrenChanged, p),
        ]
    );
}

#[test]
fn multi_events_see_the_acl_of_their_member_time() {
    let mut tree = tree();
    let member = |op, txn| MultiMember { op, txn };
    let set_data = |path: &str| Txn::SetData {
        path: path.into(),
        data: Some(b"1".to_vec()),
        version: -1,
    };
    let c = digest_acl("c", perms::READ);
    let x = digest_acl("x", perms::READ);
    let y = digest_acl("y", perms::READ);
    let p = digest_acl("p", perms::ALL);
    // /p/c changes, goes and comes back with another ACL; /p/t comes, goes and comes
    // back with another ACL: each event has the ACL of its moment.
    let e = entry(
        4,
        OpCode::Multi,
        Txn::Multi(vec![
            member(OpCode::SetData, set_data("/p/c")),
            member(OpCode::Delete, delete("/p/c")),
            member(OpCode::Create, create("/p/c", x.clone(), false)),
            member(OpCode::SetData, set_data("/p/c")),
            member(OpCode::Create, create("/p/t", x.clone(), false)),
            member(OpCode::Delete, delete("/p/t")),
            member(OpCode::Create, create("/p/t", y.clone(), false)),
        ]),
    );
    let got = acls_of_triggers(&mut tree, &e);
    let changed = EventType::NodeChildrenChanged;
    assert_eq!(
        got,
        [
            ("/p/c".into(), EventType::NodeDataChanged, c.clone()),
            ("/p/c".into(), EventType::NodeDeleted, c),
            ("/p".into(), changed, p.clone()),
            ("/p/c".into(), EventType::NodeCreated, x.clone()),
            ("/p".into(), changed, p.clone()),
            ("/p/c".into(), EventType::NodeDataChanged, x.clone()),
            ("/p/t".into(), EventType::NodeCreated, x.clone()),
            ("/p".into(), changed, p.clone()),
            ("/p/t".into(), EventType::NodeDeleted, x),
            ("/p".into(), changed, p.clone()),
            ("/p/t".into(), EventType::NodeCreated, y),
            ("/p".into(), changed, p),
        ]
    );
}
