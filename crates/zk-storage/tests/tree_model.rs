//! Property test: random sequences of txns (creates of every mode, deletes, setData,
//! setACL, multi with and without an error member, session create/close) applied to the
//! DataTree and to a plain BTreeMap model written from ZooKeeper's rules; after every txn
//! the outcomes must agree, and at the end every node (data, stats, ACL, children), the
//! ephemerals and sessions must be equal. Each final tree also goes through a snapshot and
//! must come back equal, and a snapshot taken halfway plus the txns after it must replay to
//! the same tree with the same outcomes (what a restart does).

use std::collections::BTreeMap;
use std::io::BufReader;

use proptest::prelude::*;
use zk_proto::data::{Acl, ErrorCode, EventType, Id, OpCode};
use zk_proto::txn::{MultiMember, Txn, TxnEntry, TxnHeader};
use zk_storage::tree::{
    CONTAINER_EPHEMERAL_OWNER, DataTree, NodeKind, StatPersisted, WatchTrigger, sequential_path,
    split_parent, ttl_ephemeral_owner,
};

#[derive(Debug, Clone, PartialEq)]
struct MNode {
    data: Option<Vec<u8>>,
    acl: Vec<Acl>,
    stat: StatPersisted,
}

#[derive(Debug, Clone, Default)]
struct Model {
    nodes: BTreeMap<String, MNode>,
    sessions: BTreeMap<i64, i32>,
}

fn parent_of(path: &str) -> &str {
    split_parent(path).map_or("/", |(p, _)| p)
}

impl Model {
    fn new() -> Self {
        let mut m = Model::default();
        let zero = StatPersisted::default();
        for (p, acl, stat) in [
            ("/", Acl::open_unsafe(), zero),
            ("/zookeeper", Acl::open_unsafe(), zero),
            ("/zookeeper/quota", Acl::open_unsafe(), zero),
            (
                "/zookeeper/config",
                Acl::read_unsafe(),
                StatPersisted {
                    aversion: -1,
                    ..zero
                },
            ),
        ] {
            m.nodes.insert(
                p.into(),
                MNode {
                    data: Some(vec![]),
                    acl,
                    stat,
                },
            );
        }
        m
    }

    fn children(&self, path: &str) -> Vec<String> {
        self.nodes
            .keys()
            .filter(|k| k.as_str() != "/" && parent_of(k) == path)
            .map(|k| k.rsplit('/').next().unwrap_or("").to_string())
            .collect()
    }

    fn bump_parent(&mut self, parent: &str, pcv: i32, zxid: i64) {
        if let Some(p) = self.nodes.get_mut(parent) {
            let new = if pcv == -1 {
                p.stat.cversion.wrapping_add(1)
            } else {
                pcv
            };
            if new > p.stat.cversion {
                p.stat.cversion = new;
                p.stat.pzxid = zxid;
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        path: &str,
        data: &Option<Vec<u8>>,
        acl: &[Acl],
        owner: i64,
        pcv: i32,
        h: &TxnHeader,
        trig: &mut Vec<WatchTrigger>,
    ) -> ErrorCode {
        let parent = parent_of(path).to_string();
        let Some(p) = self.nodes.get(&parent) else {
            return ErrorCode::NoNode;
        };
        if self.nodes.contains_key(path) {
            self.bump_parent(&parent, pcv, h.zxid);
            return ErrorCode::NodeExists;
        }
        if let NodeKind::Ephemeral(_) = NodeKind::of(p.stat.ephemeral_owner) {
            return ErrorCode::NoChildrenForEphemerals;
        }
        self.bump_parent(&parent, pcv, h.zxid);
        self.nodes.insert(
            path.into(),
            MNode {
                data: data.clone(),
                acl: acl.to_vec(),
                stat: StatPersisted::created(h.zxid, h.time, owner),
            },
        );
        trig.push(t(path, EventType::NodeCreated));
        trig.push(t(&parent, EventType::NodeChildrenChanged));
        ErrorCode::Ok
    }

    fn delete(&mut self, path: &str, zxid: i64, trig: &mut Vec<WatchTrigger>) -> ErrorCode {
        if path == "/" {
            return ErrorCode::BadArguments;
        }
        let parent = parent_of(path).to_string();
        if !self.nodes.contains_key(&parent) {
            return ErrorCode::NoNode;
        }
        if self.nodes.contains_key(path) && !self.children(path).is_empty() {
            return ErrorCode::NotEmpty;
        }
        if let Some(p) = self.nodes.get_mut(&parent)
            && zxid > p.stat.pzxid
        {
            p.stat.pzxid = zxid;
        }
        if self.nodes.remove(path).is_none() {
            return ErrorCode::NoNode;
        }
        trig.push(t(path, EventType::NodeDeleted));
        trig.push(t(&parent, EventType::NodeChildrenChanged));
        ErrorCode::Ok
    }

    fn ephemerals(&self, session: i64) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, n)| NodeKind::of(n.stat.ephemeral_owner) == NodeKind::Ephemeral(session))
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn op(
        &mut self,
        h: &TxnHeader,
        op: OpCode,
        txn: &Txn,
        trig: &mut Vec<WatchTrigger>,
    ) -> ErrorCode {
        match txn {
            Txn::Create {
                path,
                data,
                acl,
                ephemeral,
                parent_cversion,
            } => {
                let owner = if *ephemeral { h.client_id } else { 0 };
                self.create(path, data, acl, owner, *parent_cversion, h, trig)
            }
            Txn::CreateContainer {
                path,
                data,
                acl,
                parent_cversion,
            } => self.create(
                path,
                data,
                acl,
                CONTAINER_EPHEMERAL_OWNER,
                *parent_cversion,
                h,
                trig,
            ),
            Txn::CreateTtl {
                path,
                data,
                acl,
                parent_cversion,
                ttl,
            } => match ttl_ephemeral_owner(*ttl) {
                Some(o) => self.create(path, data, acl, o, *parent_cversion, h, trig),
                None => ErrorCode::BadArguments,
            },
            Txn::Delete { path } => self.delete(path, h.zxid, trig),
            Txn::SetData {
                path,
                data,
                version,
            } => match self.nodes.get_mut(path) {
                None => ErrorCode::NoNode,
                Some(n) => {
                    n.data = data.clone();
                    n.stat.version = *version;
                    n.stat.mzxid = h.zxid;
                    n.stat.mtime = h.time;
                    trig.push(t(path, EventType::NodeDataChanged));
                    ErrorCode::Ok
                }
            },
            Txn::SetAcl { path, acl, version } => match self.nodes.get_mut(path) {
                None => ErrorCode::NoNode,
                Some(n) => {
                    n.acl = acl.clone();
                    n.stat.aversion = *version;
                    ErrorCode::Ok
                }
            },
            Txn::Check { .. } => ErrorCode::Ok,
            Txn::Error { err } => *err,
            Txn::CreateSession { timeout_ms } => {
                self.sessions.insert(h.client_id, *timeout_ms);
                ErrorCode::Ok
            }
            Txn::CloseSession { paths_to_delete } => {
                self.sessions.remove(&h.client_id);
                let mut targets = self.ephemerals(h.client_id);
                targets.extend(paths_to_delete.iter().cloned());
                targets.sort();
                targets.dedup();
                targets.reverse();
                for p in targets {
                    self.delete(&p, h.zxid, trig);
                }
                ErrorCode::Ok
            }
            Txn::Multi(_) => {
                let _ = op;
                ErrorCode::MarshallingError
            }
        }
    }

    /// Returns (error, per-member errors, triggers).
    fn apply(&mut self, e: &TxnEntry) -> (ErrorCode, Vec<ErrorCode>, Vec<WatchTrigger>) {
        let mut trig = Vec::new();
        match &e.txn {
            Txn::Multi(members) => {
                let failed = members.iter().any(|m| m.op == OpCode::Error);
                let mut errs = Vec::new();
                if failed {
                    let mut post = false;
                    for m in members {
                        errs.push(if let Txn::Error { err } = m.txn {
                            post = true;
                            err
                        } else if post {
                            ErrorCode::RuntimeInconsistency
                        } else {
                            ErrorCode::Ok
                        });
                    }
                } else {
                    // Atomic: a member failing at apply undoes the members before it.
                    let before = self.clone();
                    for (i, m) in members.iter().enumerate() {
                        let err = self.op(&e.header, m.op, &m.txn, &mut trig);
                        if err != ErrorCode::Ok {
                            *self = before;
                            trig.clear();
                            errs = (0..members.len())
                                .map(|j| match j.cmp(&i) {
                                    std::cmp::Ordering::Less => ErrorCode::Ok,
                                    std::cmp::Ordering::Equal => err,
                                    std::cmp::Ordering::Greater => ErrorCode::RuntimeInconsistency,
                                })
                                .collect();
                            break;
                        }
                        errs.push(err);
                    }
                }
                let first = errs
                    .iter()
                    .copied()
                    .find(|&e| e != ErrorCode::Ok)
                    .unwrap_or(ErrorCode::Ok);
                (first, errs, trig)
            }
            txn => {
                let err = self.op(&e.header, e.header.op, txn, &mut trig);
                (err, vec![], trig)
            }
        }
    }
}

fn t(path: &str, event: EventType) -> WatchTrigger {
    WatchTrigger {
        path: path.into(),
        event,
    }
}

/// An abstract op; concrete paths are picked from the current model state when applied.
#[derive(Debug, Clone)]
enum AOp {
    Create {
        parent: usize,
        name: u8,
        mode: u8,
        session: u8,
        data: Option<Vec<u8>>,
        acl: u8,
        stale_cversion: bool,
    },
    Delete {
        node: usize,
    },
    SetData {
        node: usize,
        data: Option<Vec<u8>>,
    },
    SetAcl {
        node: usize,
        acl: u8,
    },
    CreateSession {
        session: u8,
    },
    CloseSession {
        session: u8,
        list_some: bool,
    },
    Multi {
        ops: Vec<AOp>,
        error_at: Option<usize>,
    },
}

fn leaf_op() -> impl Strategy<Value = AOp> {
    prop_oneof![
        4 => (any::<usize>(), 0u8..6, 0u8..7, 0u8..3, prop::option::weighted(0.8, prop::collection::vec(any::<u8>(), 0..8)), 0u8..3, prop::bool::weighted(0.1))
            .prop_map(|(parent, name, mode, session, data, acl, stale_cversion)| AOp::Create {
                parent, name, mode, session, data, acl, stale_cversion
            }),
        2 => any::<usize>().prop_map(|node| AOp::Delete { node }),
        2 => (any::<usize>(), prop::option::weighted(0.8, prop::collection::vec(any::<u8>(), 0..8)))
            .prop_map(|(node, data)| AOp::SetData { node, data }),
        1 => (any::<usize>(), 0u8..3).prop_map(|(node, acl)| AOp::SetAcl { node, acl }),
        1 => (0u8..3).prop_map(|session| AOp::CreateSession { session }),
        1 => (0u8..3, any::<bool>()).prop_map(|(session, list_some)| AOp::CloseSession { session, list_some }),
    ]
}

fn any_op() -> impl Strategy<Value = AOp> {
    prop_oneof![
        8 => leaf_op(),
        1 => (prop::collection::vec(leaf_op(), 1..4), prop::option::weighted(0.3, 0usize..4))
            .prop_map(|(ops, error_at)| AOp::Multi { ops, error_at }),
    ]
}

fn acl_n(n: u8) -> Vec<Acl> {
    match n {
        0 => Acl::open_unsafe(),
        1 => Acl::read_unsafe(),
        _ => vec![Acl {
            perms: 3,
            id: Id::new("digest", "u:x"),
        }],
    }
}

const SESSIONS: [i64; 3] = [
    0x100_0000_0000_0001,
    0x100_0000_0000_0002,
    0x200_0000_0000_0003,
];

struct Gen<'a> {
    model: &'a Model,
    /// Stored cversions as the txns generated so far in this multi leave them.
    pending_cversion: BTreeMap<String, i32>,
}

impl Gen<'_> {
    fn pick(&self, i: usize) -> String {
        let keys: Vec<&String> = self.model.nodes.keys().collect();
        keys[i % keys.len()].clone()
    }

    fn cversion(&self, path: &str) -> i32 {
        self.pending_cversion
            .get(path)
            .copied()
            .or_else(|| self.model.nodes.get(path).map(|n| n.stat.cversion))
            .unwrap_or(0)
    }

    /// (op code, txn, session) for an abstract op.
    fn concrete(&mut self, op: &AOp) -> (OpCode, Txn, i64) {
        match op {
            AOp::Create {
                parent,
                name,
                mode,
                session,
                data,
                acl,
                stale_cversion,
            } => {
                let parent = self.pick(*parent);
                let prefix = format!("{}/n{name}", if parent == "/" { "" } else { &parent });
                let cv = self.cversion(&parent);
                let sequential = matches!(mode, 2 | 3 | 6);
                let path = if sequential {
                    sequential_path(&prefix, cv)
                } else {
                    prefix
                };
                let pcv = if *stale_cversion {
                    cv
                } else {
                    cv.wrapping_add(1)
                };
                self.pending_cversion.insert(parent, pcv.max(cv));
                let s = SESSIONS[*session as usize % 3];
                let acl = acl_n(*acl);
                let data = data.clone();
                let txn = match mode {
                    4 => Txn::CreateContainer {
                        path,
                        data,
                        acl,
                        parent_cversion: pcv,
                    },
                    5 | 6 => Txn::CreateTtl {
                        path,
                        data,
                        acl,
                        parent_cversion: pcv,
                        ttl: 1000,
                    },
                    _ => Txn::Create {
                        path,
                        data,
                        acl,
                        ephemeral: matches!(mode, 1 | 3),
                        parent_cversion: pcv,
                    },
                };
                let code = match mode {
                    4 => OpCode::CreateContainer,
                    5 | 6 => OpCode::CreateTtl,
                    _ => OpCode::Create2,
                };
                (code, txn, s)
            }
            AOp::Delete { node } => (
                OpCode::Delete,
                Txn::Delete {
                    path: self.pick(*node),
                },
                SESSIONS[0],
            ),
            AOp::SetData { node, data } => {
                let path = self.pick(*node);
                let version = self
                    .model
                    .nodes
                    .get(&path)
                    .map_or(0, |n| n.stat.version + 1);
                (
                    OpCode::SetData,
                    Txn::SetData {
                        path,
                        data: data.clone(),
                        version,
                    },
                    SESSIONS[0],
                )
            }
            AOp::SetAcl { node, acl } => {
                let path = self.pick(*node);
                let version = self
                    .model
                    .nodes
                    .get(&path)
                    .map_or(0, |n| n.stat.aversion + 1);
                (
                    OpCode::SetAcl,
                    Txn::SetAcl {
                        path,
                        acl: acl_n(*acl),
                        version,
                    },
                    SESSIONS[0],
                )
            }
            AOp::CreateSession { session } => (
                OpCode::CreateSession,
                Txn::CreateSession {
                    timeout_ms: 1000 * (i32::from(*session) + 1),
                },
                SESSIONS[*session as usize % 3],
            ),
            AOp::CloseSession { session, list_some } => {
                let s = SESSIONS[*session as usize % 3];
                let mut list = self.model.ephemerals(s);
                if *list_some {
                    list.truncate(1);
                } else {
                    list.clear();
                }
                (
                    OpCode::CloseSession,
                    Txn::CloseSession {
                        paths_to_delete: list,
                    },
                    s,
                )
            }
            AOp::Multi { ops, error_at } => {
                let mut members = Vec::new();
                for (i, op) in ops.iter().enumerate() {
                    if *error_at == Some(i) {
                        members.push(MultiMember {
                            op: OpCode::Error,
                            txn: Txn::Error {
                                err: ErrorCode::BadVersion,
                            },
                        });
                    } else if let AOp::Multi { .. }
                    | AOp::CreateSession { .. }
                    | AOp::CloseSession { .. } = op
                    {
                        continue;
                    }
                    let (code, txn, _) = self.concrete(op);
                    members.push(MultiMember { op: code, txn });
                }
                (OpCode::Multi, Txn::Multi(members), SESSIONS[0])
            }
        }
    }
}

fn compare(tree: &DataTree, model: &Model) -> Result<(), TestCaseError> {
    if let Err(e) = tree.check_invariants() {
        return Err(TestCaseError::fail(e));
    }
    prop_assert_eq!(tree.node_count(), model.nodes.len());
    for (path, m) in &model.nodes {
        let n = tree.get(path);
        prop_assert!(n.is_some(), "missing {}", path);
        let n = n.unwrap();
        prop_assert_eq!(n.data(), m.data.as_deref(), "data of {}", path);
        prop_assert_eq!(n.persisted(), m.stat, "stat of {}", path);
        prop_assert_eq!(n.acl(), &m.acl[..], "acl of {}", path);
        let children = model.children(path);
        let got: Vec<String> = tree
            .children(path)
            .unwrap()
            .into_iter()
            .map(String::from)
            .collect();
        prop_assert_eq!(&got, &children, "children of {}", path);
        let stat = n.stat();
        prop_assert_eq!(stat.num_children as usize, children.len());
        prop_assert_eq!(
            stat.cversion,
            m.stat
                .cversion
                .wrapping_mul(2)
                .wrapping_sub(children.len() as i32)
        );
        prop_assert_eq!(
            stat.data_length as usize,
            m.data.as_ref().map_or(0, Vec::len)
        );
        prop_assert_eq!(
            stat.ephemeral_owner,
            NodeKind::client_owner(m.stat.ephemeral_owner)
        );
    }
    for s in SESSIONS {
        let model_eph = model.ephemerals(s);
        prop_assert_eq!(
            tree.ephemerals(s),
            model_eph.iter().map(String::as_str).collect::<Vec<_>>()
        );
    }
    prop_assert_eq!(
        tree.sessions().collect::<Vec<_>>(),
        model
            .sessions
            .iter()
            .map(|(&a, &b)| (a, b))
            .collect::<Vec<_>>()
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn tree_matches_model(ops in prop::collection::vec(any_op(), 1..60)) {
        let mut tree = DataTree::new();
        let mut model = Model::new();
        let mut zxid = 0x5_0000_0000i64;
        // A snapshot taken halfway, and everything applied after it.
        let half = ops.len() / 2;
        let mut mid_snapshot = Vec::new();
        let mut after_mid = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            if i == half {
                tree.snapshot_view().write_to(&mut mid_snapshot).unwrap();
            }
            zxid += 1;
            let (code, txn, session) = Gen { model: &model, pending_cversion: BTreeMap::new() }.concrete(op);
            let entry = TxnEntry {
                header: TxnHeader { client_id: session, cxid: 1, zxid, time: zxid * 10, op: code },
                txn,
            };
            let out = tree.apply(&entry);
            let (err, member_errs, trig) = model.apply(&entry);
            prop_assert_eq!(out.err, err, "{:?}", entry);
            prop_assert_eq!(out.multi.iter().map(|m| m.err).collect::<Vec<_>>(), member_errs);
            prop_assert_eq!(&out.triggers, &trig, "{:?}", entry);
            prop_assert_eq!(tree.last_processed_zxid(), zxid);
            if i >= half {
                after_mid.push((entry, out));
            }
        }
        compare(&tree, &model)?;

        // Restart: the halfway snapshot plus the txns after it replay to the same tree,
        // with the same outcomes.
        let mut replayed = DataTree::read_from(&mut BufReader::new(&mid_snapshot[..])).unwrap();
        for (entry, out) in &after_mid {
            prop_assert_eq!(&replayed.apply(entry), out);
        }
        prop_assert_eq!(replayed.digest(), tree.digest());
        compare(&replayed, &model)?;

        let mut buf = Vec::new();
        let written = tree.snapshot_view().write_to(&mut buf).unwrap();
        prop_assert_eq!(written as usize, buf.len());
        let restored = DataTree::read_from(&mut BufReader::new(&buf[..])).unwrap();
        prop_assert_eq!(restored.digest(), tree.digest());
        prop_assert_eq!(restored.last_processed_zxid(), tree.last_processed_zxid());
        prop_assert_eq!(restored.approximate_data_size(), tree.approximate_data_size());
        compare(&restored, &model)?;
    }
}
