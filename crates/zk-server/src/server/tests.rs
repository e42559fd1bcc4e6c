//! Event delivery against the READ permission of the znode (ZooKeeper's
//! `ServerCnxn.process(WatchedEvent, List<ACL>)`), on a server state built by hand.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;
use zk_proto::data::{Acl, AddWatchMode, EventType, Id, OpCode, perms};
use zk_proto::jute::{ReplyPacket, Response};
use zk_proto::txn::{Txn, TxnEntry, TxnHeader};
use zk_storage::tree::DataTree;

use super::{ClientRegistration, ConnHandle, Outbound, Shared};
use crate::acl;
use crate::config::Config;

/// The session that writes.
const WRITER: i64 = 0x10;
/// A session authenticated as digest user `alice`.
const ALICE: i64 = 0x20;
/// A session with its ip id only.
const STRANGER: i64 = 0x30;

struct Fixture {
    shared: Arc<Shared>,
    alice: mpsc::UnboundedReceiver<Outbound>,
    stranger: mpsc::UnboundedReceiver<Outbound>,
    _clients: Vec<ClientRegistration>,
    _dir: tempfile::TempDir,
    next_zxid: i64,
}

fn alice_id() -> Id {
    Id::new(acl::SCHEME_DIGEST, acl::digest("alice:secret"))
}

/// READ (and everything else) for alice only.
fn alice_only() -> Vec<Acl> {
    vec![Acl {
        perms: perms::ALL,
        id: alice_id(),
    }]
}

fn fixture(extra_cfg: &str) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = format!(
        "tickTime=2000\ndataDir={}\nclientPort=2181\n{extra_cfg}",
        dir.path().display()
    );
    let config = Config::parse(&text).expect("config").config;
    let shared = Shared::new(Arc::new(config), 0, DataTree::new());
    let remote: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
    let mut clients = Vec::new();
    let mut attach = |session: i64, extra: Option<Id>| {
        let client = shared.register_client(remote);
        let mut ids = acl::connection_ids(remote.ip());
        acl::add_auth_ids(&mut ids, extra);
        let (tx, rx) = mpsc::unbounded_channel();
        shared.attach(
            session,
            ConnHandle {
                id: client.stats.id,
                remote,
                tx,
                stats: client.stats.clone(),
                auth: Arc::new(RwLock::new(ids)),
            },
        );
        clients.push(client);
        rx
    };
    let alice = attach(ALICE, Some(alice_id()));
    let stranger = attach(STRANGER, None);
    let mut f = Fixture {
        shared,
        alice,
        stranger,
        _clients: clients,
        _dir: dir,
        next_zxid: 1,
    };
    for s in [WRITER, ALICE, STRANGER] {
        f.apply_as(
            s,
            OpCode::CreateSession,
            Txn::CreateSession { timeout_ms: 30_000 },
        );
    }
    f
}

impl Fixture {
    fn apply_as(&mut self, session: i64, op: OpCode, txn: Txn) {
        let entry = TxnEntry {
            header: TxnHeader {
                client_id: session,
                cxid: 0,
                zxid: self.next_zxid,
                time: 1_700_000_000_000,
                op,
            },
            txn,
        };
        self.next_zxid += 1;
        self.shared.apply_committed(&[entry]).expect("apply");
    }

    fn create(&mut self, path: &str, acl: Vec<Acl>) {
        let txn = Txn::Create {
            path: path.into(),
            data: None,
            acl,
            ephemeral: false,
            parent_cversion: -1,
        };
        self.apply_as(WRITER, OpCode::Create, txn);
    }

    fn delete(&mut self, path: &str) {
        self.apply_as(WRITER, OpCode::Delete, Txn::Delete { path: path.into() });
    }

    fn set_acl(&mut self, path: &str, acl: Vec<Acl>) {
        let txn = Txn::SetAcl {
            path: path.into(),
            acl,
            version: -1,
        };
        self.apply_as(WRITER, OpCode::SetAcl, txn);
    }

    fn set_data(&mut self, path: &str) {
        let txn = Txn::SetData {
            path: path.into(),
            data: Some(b"1".to_vec()),
            version: -1,
        };
        self.apply_as(WRITER, OpCode::SetData, txn);
    }
}

/// The (type, path) of every event queued on a connection.
fn events(rx: &mut mpsc::UnboundedReceiver<Outbound>) -> Vec<(EventType, String)> {
    let mut out = Vec::new();
    while let Ok(msg) = rx.try_recv() {
        if let Outbound::Notify(ReplyPacket {
            body: Response::Notification(ev),
            ..
        }) = msg
        {
            let t = EventType::try_from(ev.event_type).expect("event type");
            out.push((t, ev.path));
        }
    }
    out
}

fn ev(t: EventType, path: &str) -> (EventType, String) {
    (t, path.to_string())
}

#[test]
fn persistent_watch_events_need_read_on_the_node() {
    let mut f = fixture("");
    for s in [ALICE, STRANGER] {
        f.shared
            .watches()
            .add_watch(s, "/b", AddWatchMode::Persistent);
    }
    f.create("/b", alice_only());
    f.set_data("/b");
    f.delete("/b");
    let all = [
        ev(EventType::NodeCreated, "/b"),
        ev(EventType::NodeDataChanged, "/b"),
        ev(EventType::NodeDeleted, "/b"),
    ];
    assert_eq!(events(&mut f.alice), all);
    assert_eq!(events(&mut f.stranger), []);
    // The persistent watches stay: an open node is seen by both.
    f.create("/b", Acl::open_unsafe());
    assert_eq!(events(&mut f.alice), [ev(EventType::NodeCreated, "/b")]);
    assert_eq!(events(&mut f.stranger), [ev(EventType::NodeCreated, "/b")]);
}

#[test]
fn children_changed_needs_read_on_the_parent() {
    let mut f = fixture("");
    f.create("/p", alice_only());
    for s in [ALICE, STRANGER] {
        f.shared.watches().add_child_watch(s, "/p");
    }
    // The child is open, the parent is not: the event is about the parent.
    let child = vec![Acl {
        perms: perms::ALL,
        id: Id::new("world", "anyone"),
    }];
    f.create("/p/c", child);
    assert_eq!(
        events(&mut f.alice),
        [ev(EventType::NodeChildrenChanged, "/p")]
    );
    assert_eq!(events(&mut f.stranger), []);
}

#[test]
fn a_withheld_one_shot_watch_is_used_up() {
    let mut f = fixture("");
    f.shared.watches().add_data_watch(STRANGER, "/x");
    f.create("/x", alice_only());
    assert_eq!(events(&mut f.stranger), []);
    assert_eq!(
        f.shared.watches().watch_count(),
        0,
        "the exists watch fired"
    );
    // Readable now, but the watch is gone.
    f.set_acl("/x", Acl::open_unsafe());
    f.set_data("/x");
    assert_eq!(events(&mut f.stranger), []);
}

#[test]
fn deleted_node_is_checked_against_the_acl_it_had() {
    let mut f = fixture("");
    f.create("/d", alice_only());
    for s in [ALICE, STRANGER] {
        f.shared.watches().add_data_watch(s, "/d");
    }
    f.delete("/d");
    assert_eq!(events(&mut f.alice), [ev(EventType::NodeDeleted, "/d")]);
    assert_eq!(events(&mut f.stranger), []);
}

#[test]
fn added_auth_ids_count_from_then_on() {
    let mut f = fixture("");
    f.shared
        .watches()
        .add_watch(STRANGER, "/", AddWatchMode::PersistentRecursive);
    f.create("/a", alice_only());
    assert_eq!(events(&mut f.stranger), []);
    // The connection authenticates as alice (what an auth packet does to its handle).
    let conns = f.shared.connections();
    let (_, h) = conns
        .iter()
        .find(|(s, _)| *s == STRANGER)
        .expect("stranger attached");
    h.auth.write().expect("auth lock").push(alice_id());
    f.set_data("/a");
    assert_eq!(
        events(&mut f.stranger),
        [ev(EventType::NodeDataChanged, "/a")]
    );
}

#[test]
fn skip_acl_delivers_every_event() {
    let mut f = fixture("skipACL=yes");
    f.shared
        .watches()
        .add_watch(STRANGER, "/b", AddWatchMode::Persistent);
    f.create("/b", alice_only());
    assert_eq!(events(&mut f.stranger), [ev(EventType::NodeCreated, "/b")]);
}
