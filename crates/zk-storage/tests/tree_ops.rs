//! DataTree: one test per op and error case, against ZooKeeper's DataTree rules.

use zk_proto::data::{Acl, ErrorCode, EventType, Id, OpCode, Stat};
use zk_proto::txn::{MultiMember, Txn, TxnEntry, TxnHeader};
use zk_storage::tree::{
    CONTAINER_EPHEMERAL_OWNER, DataTree, NodeKind, WatchTrigger, sequential_path,
    ttl_ephemeral_owner,
};

const SESSION: i64 = 0x0100_0000_0000_0001;

struct T {
    tree: DataTree,
    zxid: i64,
}

impl T {
    fn new() -> Self {
        T {
            tree: DataTree::new(),
            zxid: 0x1_0000_0000,
        }
    }

    fn apply_as(&mut self, session: i64, op: OpCode, txn: Txn) -> zk_storage::tree::ApplyOutcome {
        self.zxid += 1;
        let out = self.tree.apply(&TxnEntry {
            header: TxnHeader {
                client_id: session,
                cxid: 7,
                zxid: self.zxid,
                time: 1000 + self.zxid,
                op,
            },
            txn,
        });
        if let Err(e) = self.tree.check_invariants() {
            panic!("invariant broken: {e}");
        }
        out
    }

    fn apply(&mut self, op: OpCode, txn: Txn) -> zk_storage::tree::ApplyOutcome {
        self.apply_as(SESSION, op, txn)
    }

    /// A create with the parent cversion the leader would put in the txn.
    fn create(&mut self, path: &str, data: &[u8]) -> zk_storage::tree::ApplyOutcome {
        let op = create_txn(&self.tree, path, data, false);
        self.apply(OpCode::Create2, op)
    }
}

fn create_txn(tree: &DataTree, path: &str, data: &[u8], ephemeral: bool) -> Txn {
    let parent = zk_storage::tree::split_parent(path).map_or("/", |(p, _)| p);
    let parent_cversion = tree
        .get(parent)
        .map_or(0, |n| n.persisted().cversion.wrapping_add(1));
    Txn::Create {
        path: path.into(),
        data: Some(data.to_vec()),
        acl: Acl::open_unsafe(),
        ephemeral,
        parent_cversion,
    }
}

fn trig(path: &str, event: EventType) -> WatchTrigger {
    WatchTrigger {
        path: path.into(),
        event,
    }
}

#[test]
fn initial_tree_is_zookeepers() {
    let tree = DataTree::new();
    assert_eq!(tree.node_count(), 4);
    assert_eq!(tree.children("/").unwrap(), vec!["zookeeper"]);
    assert_eq!(
        tree.children("/zookeeper").unwrap(),
        vec!["config", "quota"]
    );
    let root = tree.stat("/").unwrap();
    assert_eq!(root.num_children, 1);
    assert_eq!(root.cversion, -1, "2 × 0 − 1 child");
    assert_eq!(root.czxid, 0);
    let (acl, stat) = tree.acl("/zookeeper/config").unwrap();
    assert_eq!(acl, &Acl::read_unsafe()[..]);
    assert_eq!(stat.aversion, -1);
    assert_eq!(tree.acl("/zookeeper").unwrap().0, &Acl::open_unsafe()[..]);
    assert_eq!(tree.last_processed_zxid(), 0);
}

#[test]
fn create_sets_stat_parent_and_triggers() {
    let mut t = T::new();
    let out = t.create("/a", b"hello");
    assert_eq!(out.err, ErrorCode::Ok);
    assert_eq!(out.path.as_deref(), Some("/a"));
    let z = t.zxid;
    let expected = Stat {
        czxid: z,
        mzxid: z,
        ctime: 1000 + z,
        mtime: 1000 + z,
        version: 0,
        cversion: 0,
        aversion: 0,
        ephemeral_owner: 0,
        data_length: 5,
        num_children: 0,
        pzxid: z,
    };
    assert_eq!(out.stat, Some(expected));
    assert_eq!(t.tree.stat("/a"), Some(expected));
    assert_eq!(t.tree.get("/a").unwrap().data(), Some(&b"hello"[..]));
    assert_eq!(
        out.triggers,
        vec![
            trig("/a", EventType::NodeCreated),
            trig("/", EventType::NodeChildrenChanged)
        ]
    );
    let root = t.tree.get("/").unwrap();
    assert_eq!(root.persisted().cversion, 1);
    assert_eq!(root.persisted().pzxid, z);
    assert_eq!(root.stat().cversion, 0, "2 × 1 − 2 children");
    assert_eq!(t.tree.last_processed_zxid(), z);
    assert_eq!(t.tree.approximate_data_size(), 1 + 10 + 16 + 17 + 2 + 5);
}

#[test]
fn create_errors_leave_the_tree_alone() {
    let mut t = T::new();
    t.create("/a", b"");
    let digest = t.tree.digest();
    let out = t.create("/missing/child", b"");
    assert_eq!(out.err, ErrorCode::NoNode);
    assert!(out.triggers.is_empty());
    let out = t.apply(
        OpCode::Create,
        Txn::Create {
            path: "/a/../b".into(),
            data: Some(vec![]),
            acl: vec![],
            ephemeral: false,
            parent_cversion: 5,
        },
    );
    assert_eq!(out.err, ErrorCode::BadArguments);
    assert_eq!(t.tree.digest(), digest);
    assert_eq!(t.tree.node_count(), 5);
}

#[test]
fn create_of_existing_node_still_raises_parent_cversion() {
    // Fuzzy-snapshot replay: the node is already there, the parent's cversion/pzxid come
    // up to the txn's (ZooKeeper's setCversionPzxid after NodeExists).
    let mut t = T::new();
    t.create("/a", b"");
    t.create("/a/b", b"");
    assert_eq!(t.tree.get("/a").unwrap().persisted().cversion, 1);
    let out = t.apply(
        OpCode::Create,
        Txn::Create {
            path: "/a/b".into(),
            data: Some(vec![]),
            acl: Acl::open_unsafe(),
            ephemeral: false,
            parent_cversion: 5,
        },
    );
    assert_eq!(out.err, ErrorCode::NodeExists);
    assert!(out.triggers.is_empty());
    let a = t.tree.get("/a").unwrap().persisted();
    assert_eq!(a.cversion, 5);
    assert_eq!(a.pzxid, t.zxid);
    // A lower parent cversion never lowers it.
    t.apply(
        OpCode::Create,
        Txn::Create {
            path: "/a/b".into(),
            data: Some(vec![]),
            acl: Acl::open_unsafe(),
            ephemeral: false,
            parent_cversion: 2,
        },
    );
    assert_eq!(t.tree.get("/a").unwrap().persisted().cversion, 5);
    // -1 means "one more".
    t.apply(
        OpCode::Create,
        Txn::Create {
            path: "/a/c".into(),
            data: Some(vec![]),
            acl: Acl::open_unsafe(),
            ephemeral: false,
            parent_cversion: -1,
        },
    );
    assert_eq!(t.tree.get("/a").unwrap().persisted().cversion, 6);
    assert_eq!(t.tree.stat("/a").unwrap().cversion, 2 * 6 - 2);
}

#[test]
fn sequential_names_come_from_the_stored_parent_cversion() {
    let mut t = T::new();
    t.create("/q", b"");
    for i in 0..3 {
        let cv = t.tree.get("/q").unwrap().persisted().cversion;
        assert_eq!(cv, i);
        let path = sequential_path("/q/n-", cv);
        assert!(t.create(&path, b"").is_ok());
    }
    // A delete does not change the stored cversion, so the counter keeps going.
    t.apply(
        OpCode::Delete,
        Txn::Delete {
            path: "/q/n-0000000001".into(),
        },
    );
    let cv = t.tree.get("/q").unwrap().persisted().cversion;
    assert_eq!(sequential_path("/q/n-", cv), "/q/n-0000000003");
    assert_eq!(
        t.tree.children("/q").unwrap(),
        vec!["n-0000000000", "n-0000000002"]
    );
    assert_eq!(t.tree.stat("/q").unwrap().cversion, 2 * 3 - 2);
}

#[test]
fn delete_rules() {
    let mut t = T::new();
    t.create("/a", b"xyz");
    t.create("/a/b", b"");
    let out = t.apply(OpCode::Delete, Txn::Delete { path: "/a".into() });
    assert_eq!(out.err, ErrorCode::NotEmpty);
    assert!(t.tree.exists("/a"));
    let before = t.tree.get("/a").unwrap().persisted();
    let out = t.apply(
        OpCode::Delete,
        Txn::Delete {
            path: "/a/b".into(),
        },
    );
    assert!(out.is_ok());
    assert_eq!(
        out.triggers,
        vec![
            trig("/a/b", EventType::NodeDeleted),
            trig("/a", EventType::NodeChildrenChanged)
        ]
    );
    let after = t.tree.get("/a").unwrap().persisted();
    assert_eq!(
        after.cversion, before.cversion,
        "delete keeps stored cversion"
    );
    assert_eq!(after.pzxid, t.zxid);
    assert_eq!(t.tree.stat("/a").unwrap().cversion, 2);
    // Missing node: NoNode, but the parent's pzxid still advances (ZooKeeper).
    let out = t.apply(
        OpCode::Delete,
        Txn::Delete {
            path: "/a/gone".into(),
        },
    );
    assert_eq!(out.err, ErrorCode::NoNode);
    assert_eq!(t.tree.get("/a").unwrap().persisted().pzxid, t.zxid);
    let out = t.apply(
        OpCode::Delete,
        Txn::Delete {
            path: "/x/y".into(),
        },
    );
    assert_eq!(out.err, ErrorCode::NoNode);
    let out = t.apply(OpCode::Delete, Txn::Delete { path: "/".into() });
    assert_eq!(out.err, ErrorCode::BadArguments);
    let out = t.apply(OpCode::DeleteContainer, Txn::Delete { path: "/a".into() });
    assert!(out.is_ok());
    assert!(!t.tree.exists("/a"));
    assert_eq!(t.tree.node_count(), 4);
    assert_eq!(
        t.tree.approximate_data_size(),
        DataTree::new().approximate_data_size()
    );
}

/// Null data (ZooKeeper's −1 buffer length) is kept apart from empty data: it reads back
/// as `None`, its stat's dataLength is 0 as for empty data, and the digest tells them apart.
#[test]
fn null_data_is_not_empty_data() {
    let mut t = T::new();
    let out = t.apply(
        OpCode::Create2,
        Txn::Create {
            path: "/n".into(),
            data: None,
            acl: Acl::open_unsafe(),
            ephemeral: false,
            parent_cversion: 1,
        },
    );
    assert!(out.is_ok(), "{out:?}");
    assert_eq!(out.stat.map(|s| s.data_length), Some(0));
    assert_eq!(t.tree.get("/n").unwrap().data(), None);
    assert_eq!(t.tree.get("/n").unwrap().path(), "/n");
    let null_digest = t.tree.digest();
    let size = t.tree.approximate_data_size();

    let set = |t: &mut T, data: Option<&[u8]>, version| {
        t.apply(
            OpCode::SetData,
            Txn::SetData {
                path: "/n".into(),
                data: data.map(<[u8]>::to_vec),
                version,
            },
        )
    };
    assert!(set(&mut t, Some(b"abc"), 1).is_ok());
    assert_eq!(t.tree.approximate_data_size(), size + 3);
    let out = set(&mut t, None, 2);
    assert_eq!(out.stat.map(|s| (s.version, s.data_length)), Some((2, 0)));
    assert_eq!(t.tree.get("/n").unwrap().data(), None);
    assert_eq!(t.tree.approximate_data_size(), size);
    assert!(set(&mut t, Some(b""), 3).is_ok());
    assert_eq!(t.tree.get("/n").unwrap().data(), Some(&b""[..]));
    assert_eq!(t.tree.stat("/n").unwrap().data_length, 0);
    // Same stat fields but for version and mzxid/mtime; the data alone differs in kind.
    let mut other = T::new();
    other.apply(
        OpCode::Create2,
        Txn::Create {
            path: "/n".into(),
            data: Some(vec![]),
            acl: Acl::open_unsafe(),
            ephemeral: false,
            parent_cversion: 1,
        },
    );
    assert_ne!(other.tree.digest(), null_digest);
    t.tree.check_invariants().unwrap();
}

#[test]
fn set_data_and_set_acl() {
    let mut t = T::new();
    t.create("/a", b"1");
    let czxid = t.zxid;
    let out = t.apply(
        OpCode::SetData,
        Txn::SetData {
            path: "/a".into(),
            data: Some(b"22".to_vec()),
            version: 1,
        },
    );
    assert!(out.is_ok());
    assert_eq!(out.triggers, vec![trig("/a", EventType::NodeDataChanged)]);
    let stat = out.stat.unwrap();
    assert_eq!((stat.version, stat.mzxid, stat.czxid), (1, t.zxid, czxid));
    assert_eq!(stat.mtime, 1000 + t.zxid);
    assert_eq!(stat.data_length, 2);
    assert_eq!(t.tree.get("/a").unwrap().data(), Some(&b"22"[..]));
    assert_eq!(
        t.apply(
            OpCode::SetData,
            Txn::SetData {
                path: "/b".into(),
                data: Some(vec![]),
                version: 1
            }
        )
        .err,
        ErrorCode::NoNode
    );

    let acl = vec![Acl {
        perms: 1,
        id: Id::new("digest", "bob:hash"),
    }];
    let out = t.apply(
        OpCode::SetAcl,
        Txn::SetAcl {
            path: "/a".into(),
            acl: acl.clone(),
            version: 1,
        },
    );
    assert!(out.is_ok());
    assert!(out.triggers.is_empty());
    assert_eq!(out.stat.unwrap().aversion, 1);
    let (got, stat) = t.tree.acl("/a").unwrap();
    assert_eq!(got, &acl[..]);
    assert_eq!(stat.version, 1, "setACL keeps the data version");
    assert_eq!(t.tree.acl_list_count(), 3, "open, read-only, bob");
    t.apply(OpCode::Delete, Txn::Delete { path: "/a".into() });
    assert_eq!(
        t.tree.acl_list_count(),
        2,
        "bob's list went with its last node"
    );
}

#[test]
fn ephemerals_sessions_and_close() {
    let mut t = T::new();
    let other = SESSION + 1;
    t.apply(
        OpCode::CreateSession,
        Txn::CreateSession { timeout_ms: 30000 },
    );
    t.apply_as(
        other,
        OpCode::CreateSession,
        Txn::CreateSession { timeout_ms: 5000 },
    );
    assert_eq!(t.tree.session_timeout(SESSION), Some(30000));
    assert_eq!(t.tree.sessions().count(), 2);
    t.create("/app", b"");
    for name in ["/app/e1", "/app/e2", "/e3"] {
        let txn = create_txn(&t.tree, name, b"", true);
        assert!(t.apply(OpCode::Create, txn).is_ok());
    }
    let txn = create_txn(&t.tree, "/app/o1", b"", true);
    assert!(t.apply_as(other, OpCode::Create, txn).is_ok());
    assert_eq!(t.tree.stat("/app/e1").unwrap().ephemeral_owner, SESSION);
    assert_eq!(
        t.tree.ephemerals(SESSION),
        vec!["/app/e1", "/app/e2", "/e3"]
    );
    assert_eq!(
        t.tree.ephemerals_with_prefix(SESSION, "/app"),
        vec!["/app/e1", "/app/e2"]
    );
    assert_eq!(t.tree.ephemerals_with_prefix(SESSION, " / ").len(), 3);
    assert_eq!(t.tree.ephemeral_count(), 4);
    // No children under an ephemeral.
    let txn = create_txn(&t.tree, "/e3/child", b"", false);
    assert_eq!(
        t.apply(OpCode::Create, txn).err,
        ErrorCode::NoChildrenForEphemerals
    );

    // The txn lists only e1; 3.8 deletes the others of the session too.
    let out = t.apply(
        OpCode::CloseSession,
        Txn::CloseSession {
            paths_to_delete: vec!["/app/e1".into()],
        },
    );
    assert!(out.is_ok());
    assert_eq!(
        out.triggers,
        vec![
            trig("/e3", EventType::NodeDeleted),
            trig("/", EventType::NodeChildrenChanged),
            trig("/app/e2", EventType::NodeDeleted),
            trig("/app", EventType::NodeChildrenChanged),
            trig("/app/e1", EventType::NodeDeleted),
            trig("/app", EventType::NodeChildrenChanged),
        ]
    );
    assert!(t.tree.ephemerals(SESSION).is_empty());
    assert_eq!(t.tree.session_timeout(SESSION), None);
    assert_eq!(t.tree.ephemerals(other), vec!["/app/o1"]);
    assert_eq!(t.tree.children("/app").unwrap(), vec!["o1"]);
    assert_eq!(t.tree.sessions_with_ephemerals(), vec![other]);
    // Closing with an empty list deletes every ephemeral of the session.
    let out = t.apply_as(
        other,
        OpCode::CloseSession,
        Txn::CloseSession {
            paths_to_delete: vec![],
        },
    );
    assert_eq!(out.triggers.len(), 2);
    assert_eq!(t.tree.ephemeral_count(), 0);
    assert_eq!(t.tree.sessions().count(), 0);
}

#[test]
fn containers_and_ttl_nodes() {
    let mut t = T::new();
    let out = t.apply(
        OpCode::CreateContainer,
        Txn::CreateContainer {
            path: "/c".into(),
            data: Some(vec![]),
            acl: Acl::open_unsafe(),
            parent_cversion: 1,
        },
    );
    assert!(out.is_ok());
    let c = t.tree.get("/c").unwrap();
    assert_eq!(c.persisted().ephemeral_owner, CONTAINER_EPHEMERAL_OWNER);
    assert_eq!(c.stat().ephemeral_owner, 0, "hidden from clients");
    assert_eq!(c.kind(), NodeKind::Container);
    let out = t.apply(
        OpCode::CreateTtl,
        Txn::CreateTtl {
            path: "/t".into(),
            data: Some(vec![]),
            acl: Acl::open_unsafe(),
            parent_cversion: 2,
            ttl: 500,
        },
    );
    assert!(out.is_ok());
    let ttl_node = t.tree.get("/t").unwrap();
    assert_eq!(ttl_node.persisted().ephemeral_owner, (0xffi64 << 56) | 500);
    assert_eq!(
        Some(ttl_node.persisted().ephemeral_owner),
        ttl_ephemeral_owner(500)
    );
    assert_eq!(ttl_node.stat().ephemeral_owner, 0);
    assert_eq!(ttl_node.kind(), NodeKind::Ttl(500));
    let t_mtime = ttl_node.persisted().mtime;
    assert_eq!(t.tree.containers(), vec!["/c"]);
    assert_eq!(t.tree.ttl_nodes(), vec!["/t"]);
    let bad = t.apply(
        OpCode::CreateTtl,
        Txn::CreateTtl {
            path: "/t2".into(),
            data: Some(vec![]),
            acl: Acl::open_unsafe(),
            parent_cversion: 3,
            ttl: 0,
        },
    );
    assert_eq!(bad.err, ErrorCode::BadArguments);

    // A fresh container is not a candidate until it has had a child, or is too old.
    assert!(t.tree.cleanup_candidates(t_mtime, 0).is_empty());
    assert_eq!(t.tree.cleanup_candidates(t_mtime + 501, 0), vec!["/t"]);
    assert_eq!(
        t.tree.cleanup_candidates(t_mtime + 100_000, 1000),
        vec!["/c", "/t"]
    );
    t.create("/c/x", b"");
    assert_eq!(t.tree.cleanup_candidates(t_mtime, 0), Vec::<String>::new());
    t.apply(
        OpCode::Delete,
        Txn::Delete {
            path: "/c/x".into(),
        },
    );
    assert_eq!(t.tree.cleanup_candidates(t_mtime, 0), vec!["/c"]);
    t.apply(OpCode::DeleteContainer, Txn::Delete { path: "/c".into() });
    t.apply(OpCode::Delete, Txn::Delete { path: "/t".into() });
    assert!(t.tree.containers().is_empty());
    assert!(t.tree.ttl_nodes().is_empty());
}

fn member(op: OpCode, txn: Txn) -> MultiMember {
    MultiMember { op, txn }
}

#[test]
fn multi_applies_in_order() {
    let mut t = T::new();
    t.create("/a", b"");
    let out = t.apply(
        OpCode::Multi,
        Txn::Multi(vec![
            member(
                OpCode::Check,
                Txn::Check {
                    path: "/a".into(),
                    version: 0,
                },
            ),
            member(OpCode::Create, create_txn(&t.tree, "/a/x", b"1", false)),
            member(
                OpCode::SetData,
                Txn::SetData {
                    path: "/a".into(),
                    data: Some(b"v".to_vec()),
                    version: 1,
                },
            ),
            member(
                OpCode::Delete,
                Txn::Delete {
                    path: "/a/x".into(),
                },
            ),
        ]),
    );
    assert!(out.is_ok(), "{out:?}");
    assert_eq!(out.multi.len(), 4);
    assert!(out.multi.iter().all(|m| m.err == ErrorCode::Ok));
    assert_eq!(out.multi[1].path.as_deref(), Some("/a/x"));
    assert_eq!(
        out.triggers,
        vec![
            trig("/a/x", EventType::NodeCreated),
            trig("/a", EventType::NodeChildrenChanged),
            trig("/a", EventType::NodeDataChanged),
            trig("/a/x", EventType::NodeDeleted),
            trig("/a", EventType::NodeChildrenChanged),
        ]
    );
    let a = t.tree.stat("/a").unwrap();
    assert_eq!((a.version, a.num_children, a.mzxid), (1, 0, t.zxid));
    assert_eq!(t.tree.last_processed_zxid(), t.zxid);
}

#[test]
fn failed_multi_applies_nothing() {
    let mut t = T::new();
    t.create("/a", b"");
    let digest = t.tree.digest();
    let out = t.apply(
        OpCode::Multi,
        Txn::Multi(vec![
            member(OpCode::Create, create_txn(&t.tree, "/a/x", b"1", false)),
            member(
                OpCode::Error,
                Txn::Error {
                    err: ErrorCode::BadVersion,
                },
            ),
            member(
                OpCode::Error,
                Txn::Error {
                    err: ErrorCode::RuntimeInconsistency,
                },
            ),
            member(OpCode::Delete, Txn::Delete { path: "/a".into() }),
        ]),
    );
    assert_eq!(out.err, ErrorCode::BadVersion);
    let errs: Vec<_> = out.multi.iter().map(|m| (m.op, m.err)).collect();
    assert_eq!(
        errs,
        vec![
            (OpCode::Error, ErrorCode::Ok),
            (OpCode::Error, ErrorCode::BadVersion),
            (OpCode::Error, ErrorCode::RuntimeInconsistency),
            (OpCode::Error, ErrorCode::RuntimeInconsistency),
        ]
    );
    assert!(out.triggers.is_empty());
    assert_eq!(t.tree.digest(), digest);
    assert_eq!(t.tree.last_processed_zxid(), t.zxid, "zxid still advances");
}

#[test]
fn error_txn_and_mismatched_ops() {
    let mut t = T::new();
    let out = t.apply(
        OpCode::Error,
        Txn::Error {
            err: ErrorCode::NoAuth,
        },
    );
    assert_eq!(out.err, ErrorCode::NoAuth);
    // An entry built in code with an op that does not match its body is refused.
    let out = t.apply(
        OpCode::SetData,
        Txn::Delete {
            path: "/zookeeper".into(),
        },
    );
    assert_eq!(out.err, ErrorCode::MarshallingError);
    assert!(t.tree.exists("/zookeeper"));
}

#[test]
fn reads_for_the_server() {
    let mut t = T::new();
    t.create("/a", b"");
    for c in ["z", "b", "m"] {
        t.create(&format!("/a/{c}"), b"");
    }
    t.create("/a/b/deep", b"");
    assert_eq!(t.tree.children("/a").unwrap(), vec!["b", "m", "z"]);
    let mut unsorted: Vec<_> = t.tree.children_unsorted("/a").unwrap().collect();
    unsorted.sort_unstable();
    assert_eq!(unsorted, vec!["b", "m", "z"]);
    assert_eq!(t.tree.children("/nope"), None);
    assert_eq!(t.tree.all_children_number("/a"), Some(4));
    assert_eq!(t.tree.all_children_number("/"), Some(3 + 5));
    assert_eq!(t.tree.all_children_number("/nope"), None);
    assert!(t.tree.exists("/a/b/deep"));
    assert!(!t.tree.exists("/a/b/dee"));
    let node = t.tree.get("/a/b/deep").unwrap();
    assert_eq!(
        (node.path(), node.name()),
        ("/a/b/deep".to_string(), "deep")
    );
    let root = t.tree.get("/").unwrap();
    assert_eq!((root.path(), root.name()), ("/".to_string(), ""));
    assert_eq!(t.tree.get("/a/b").unwrap().data(), Some(&b""[..]));
}

#[test]
fn config_node_init() {
    let mut tree = DataTree::new();
    tree.init_config_node(b"server.1=127.0.0.1:2888:3888", 0x1_0000_0000, 42);
    let n = tree.get("/zookeeper/config").unwrap();
    assert_eq!(n.data(), Some(&b"server.1=127.0.0.1:2888:3888"[..]));
    let s = n.stat();
    assert_eq!(
        (s.version, s.mzxid, s.mtime, s.aversion),
        (-1, 0x1_0000_0000, 42, -1)
    );
}

#[test]
fn digest_is_order_independent_and_sensitive() {
    let mut a = T::new();
    a.create("/x", b"1");
    a.create("/y", b"2");
    let mut b = T::new();
    // Same nodes and stats, built through a different history.
    b.zxid = a.zxid - 2;
    b.create("/x", b"1");
    b.create("/y", b"2");
    assert_eq!(a.tree.digest(), b.tree.digest());
    b.apply(
        OpCode::SetData,
        Txn::SetData {
            path: "/y".into(),
            data: Some(b"3".to_vec()),
            version: 1,
        },
    );
    assert_ne!(a.tree.digest(), b.tree.digest());
}

#[test]
fn quota_usage_follows_creates_deletes_and_set_data() {
    let mut t = T::new();
    t.create("/app", b"12");
    t.create("/app/a", b"345");
    // What `setquota -n 10 /app` does: the quota directory, the limits, then the stats.
    t.create("/zookeeper/quota/app", b"");
    t.create(
        "/zookeeper/quota/app/zookeeper_limits",
        b"count=10,bytes=-1",
    );
    assert_eq!(t.tree.quota_paths(), vec!["/app"]);
    t.create("/zookeeper/quota/app/zookeeper_stats", b"count=0,bytes=0");
    let stats = |t: &T| {
        String::from_utf8(
            t.tree
                .get("/zookeeper/quota/app/zookeeper_stats")
                .unwrap()
                .data()
                .unwrap()
                .to_vec(),
        )
        .unwrap()
    };
    assert_eq!(stats(&t), "count=2,bytes=5", "recomputed from the subtree");
    let stat_before = t.tree.stat("/zookeeper/quota/app/zookeeper_stats").unwrap();

    t.create("/app/b", b"6789");
    assert_eq!(stats(&t), "count=3,bytes=9");
    t.apply(
        OpCode::SetData,
        Txn::SetData {
            path: "/app/b".into(),
            data: Some(b"6".to_vec()),
            version: 1,
        },
    );
    assert_eq!(stats(&t), "count=3,bytes=6");
    t.apply(
        OpCode::Delete,
        Txn::Delete {
            path: "/app/a".into(),
        },
    );
    assert_eq!(stats(&t), "count=2,bytes=3");
    // Outside the quota: no change.
    t.create("/other", b"xxxx");
    assert_eq!(stats(&t), "count=2,bytes=3");
    // The stats node's data changes in place; its version and mzxid do not.
    let stat_after = t.tree.stat("/zookeeper/quota/app/zookeeper_stats").unwrap();
    assert_eq!(
        (stat_after.version, stat_after.mzxid),
        (stat_before.version, stat_before.mzxid)
    );

    // Quota usage survives a snapshot, and the quota is known again after loading.
    let mut buf = Vec::new();
    t.tree.snapshot_view().write_to(&mut buf).unwrap();
    let restored = DataTree::read_from(&mut &buf[..]).unwrap();
    assert_eq!(restored.quota_paths(), vec!["/app"]);
    assert_eq!(restored.digest(), t.tree.digest());

    // delquota: removing the limits ends the accounting.
    t.apply(
        OpCode::Delete,
        Txn::Delete {
            path: "/zookeeper/quota/app/zookeeper_limits".into(),
        },
    );
    assert!(t.tree.quota_paths().is_empty());
    t.create("/app/c", b"1");
    assert_eq!(stats(&t), "count=2,bytes=3");
}

#[test]
fn multi_failing_at_apply_rolls_back() {
    let mut t = T::new();
    t.apply(
        OpCode::CreateSession,
        Txn::CreateSession { timeout_ms: 5000 },
    );
    t.create("/a", b"old");
    t.create("/a/gone", b"g");
    t.create("/zookeeper/quota/a", b"");
    t.create("/zookeeper/quota/a/zookeeper_limits", b"count=100,bytes=-1");
    t.create("/zookeeper/quota/a/zookeeper_stats", b"");
    let digest = t.tree.digest();
    let stats = t
        .tree
        .get("/zookeeper/quota/a/zookeeper_stats")
        .unwrap()
        .data()
        .map(<[u8]>::to_vec);
    let acl = vec![Acl {
        perms: 1,
        id: Id::new("digest", "only:this"),
    }];
    // Every kind of change, then a member the tree refuses (its parent does not exist).
    let out = t.apply(
        OpCode::Multi,
        Txn::Multi(vec![
            member(OpCode::Create, create_txn(&t.tree, "/a/new", b"n", false)),
            member(OpCode::Create, create_txn(&t.tree, "/a/new2", b"n", true)),
            member(
                OpCode::SetData,
                Txn::SetData {
                    path: "/a".into(),
                    data: Some(b"new".to_vec()),
                    version: 1,
                },
            ),
            member(
                OpCode::SetAcl,
                Txn::SetAcl {
                    path: "/a".into(),
                    acl,
                    version: 1,
                },
            ),
            member(
                OpCode::Delete,
                Txn::Delete {
                    path: "/a/gone".into(),
                },
            ),
            member(OpCode::Create, create_txn(&t.tree, "/nope/x", b"", false)),
            member(
                OpCode::Check,
                Txn::Check {
                    path: "/a".into(),
                    version: 1,
                },
            ),
        ]),
    );
    assert_eq!(out.err, ErrorCode::NoNode);
    let errs: Vec<_> = out.multi.iter().map(|m| (m.op, m.err)).collect();
    let mut expected = vec![(OpCode::Error, ErrorCode::Ok); 5];
    expected.push((OpCode::Error, ErrorCode::NoNode));
    expected.push((OpCode::Error, ErrorCode::RuntimeInconsistency));
    assert_eq!(errs, expected);
    assert!(out.triggers.is_empty());
    assert_eq!(t.tree.digest(), digest);
    assert_eq!(t.tree.get("/a").unwrap().data(), Some(&b"old"[..]));
    assert_eq!(t.tree.acl("/a").unwrap().0, &Acl::open_unsafe()[..]);
    assert!(t.tree.exists("/a/gone"));
    assert!(!t.tree.exists("/a/new"));
    assert!(t.tree.ephemerals(SESSION).is_empty());
    assert_eq!(t.tree.acl_list_count(), 2);
    assert_eq!(
        t.tree
            .get("/zookeeper/quota/a/zookeeper_stats")
            .unwrap()
            .data()
            .map(<[u8]>::to_vec),
        stats
    );
    assert_eq!(t.tree.session_timeout(SESSION), Some(5000));
    assert_eq!(t.tree.last_processed_zxid(), t.zxid);
}

/// Nodes keep their names only and the index their ids: a path is put together from the
/// ancestors' names, also for deep paths and while the index grows.
#[test]
fn deep_paths_are_found_while_the_index_grows() {
    let mut tree = DataTree::new();
    let mut zxid = 0x1_0000_0000;
    let mut create = |tree: &mut DataTree, path: &str| {
        zxid += 1;
        let txn = create_txn(tree, path, b"d", false);
        tree.apply(&TxnEntry {
            header: TxnHeader {
                client_id: SESSION,
                cxid: 1,
                zxid,
                time: zxid,
                op: OpCode::Create,
            },
            txn,
        })
    };
    let mut deep = String::new();
    for depth in 0..40 {
        deep.push_str(&format!("/level{depth}"));
        assert!(create(&mut tree, &deep).is_ok(), "{deep}");
    }
    for i in 0..3000 {
        assert!(create(&mut tree, &format!("{deep}/n{i}")).is_ok());
    }
    for i in (0..3000).step_by(7) {
        let p = format!("{deep}/n{i}");
        let n = tree.get(&p).unwrap();
        assert_eq!(n.path(), p);
        assert_eq!(
            (n.name(), n.data()),
            (&p[deep.len() + 1..], Some(&b"d"[..]))
        );
    }
    // Near misses are not found.
    assert!(tree.get(&format!("{deep}/n3000")).is_none());
    assert!(tree.get(&format!("{deep}n1")).is_none());
    assert!(tree.get(&deep.replacen("level3", "level4", 1)).is_none());
    assert!(tree.get("/level0/level1//level2").is_none());
    tree.check_invariants().unwrap();
    assert_eq!(tree.children(&deep).unwrap().len(), 3000);
}
