//! Four-letter word texts against a server state built by hand; the expected formats
//! are those Apache ZooKeeper 3.8.0 printed for the same situations.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use zk_proto::data::{Acl, OpCode};
use zk_proto::jute::FourLetterWord;
use zk_proto::txn::{Txn, TxnEntry, TxnHeader};
use zk_storage::tree::DataTree;

use super::*;
use crate::config::Config;
use crate::server::{ClientRegistration, Role, Shared};

/// The session the fixture creates.
pub(crate) const SESSION: i64 = 0x0100_0028_9497_0000;

/// A standalone server (every word whitelisted) with one session owning `/app/eph`, a
/// data watch on `/app`, and its connection from 127.0.0.1:46406.
pub(crate) struct Fixture {
    pub shared: Arc<Shared>,
    pub client: ClientRegistration,
    pub _dir: tempfile::TempDir,
}

pub(crate) fn config_text(dir: &std::path::Path, extra: &str) -> String {
    format!(
        "tickTime=2000\ndataDir={}\nclientPort=2181\n4lw.commands.whitelist=*\n{extra}",
        dir.display()
    )
}

pub(crate) fn fixture_with(extra_cfg: &str, my_id: u64) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config::parse(&config_text(dir.path(), extra_cfg))
        .expect("config")
        .config;
    let shared = Shared::new(Arc::new(config), my_id, DataTree::new());
    let header = |zxid, op, client_id| TxnHeader {
        client_id,
        cxid: 1,
        zxid,
        time: 1_700_000_000_000,
        op,
    };
    let create = |zxid, path: &str, ephemeral| TxnEntry {
        header: header(zxid, OpCode::Create, SESSION),
        txn: Txn::Create {
            path: path.into(),
            data: Some(b"x".to_vec()),
            acl: Acl::open_unsafe(),
            ephemeral,
            parent_cversion: -1,
        },
    };
    shared
        .apply_committed(&[
            TxnEntry {
                header: header(1, OpCode::CreateSession, SESSION),
                txn: Txn::CreateSession { timeout_ms: 30_000 },
            },
            create(2, "/app", false),
            create(3, "/app/eph", true),
        ])
        .expect("apply");
    shared
        .sessions()
        .track_session(SESSION, 30_000, shared.now_ms());
    shared.watches().add_data_watch(SESSION, "/app");
    shared.set_role(Role::Standalone);
    let remote: SocketAddr = "127.0.0.1:46406".parse().expect("addr");
    let client = shared.register_client(remote);
    client.stats.set_session(SESSION, 30_000);
    Fixture {
        shared,
        client,
        _dir: dir,
    }
}

pub(crate) fn fixture() -> Fixture {
    fixture_with("", 0)
}

fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in\n{text}"))
}

#[test]
fn srvr_prints_zookeepers_lines_in_order() {
    let f = fixture();
    let s = &f.shared.stats;
    s.packets_received.store(7, Ordering::Relaxed);
    s.packets_sent.store(6, Ordering::Relaxed);
    for us in [1_000, 6_000, 1_000] {
        s.record_request(us, false);
    }
    let nodes = f.shared.tree().node_count() + 1;
    let text = answer(&f.shared, FourLetterWord::Srvr);
    let expected = format!(
        "Zookeeper version: {VERSION}, built on unknown\n\
         Latency min/avg/max: 1/2.6667/6\n\
         Received: 7\n\
         Sent: 6\n\
         Connections: 1\n\
         Outstanding: 0\n\
         Zxid: 0x3\n\
         Mode: standalone\n\
         Node count: {nodes}\n"
    );
    assert_eq!(text, expected);
}

#[test]
fn stat_lists_every_connection_briefly() {
    let f = fixture();
    f.client.stats.received();
    f.client.stats.received();
    f.client.stats.sent(1);
    // A connection that has not sent its handshake yet (or a four-letter word).
    let other = f
        .shared
        .register_client("127.0.0.1:46430".parse().expect("addr"));
    other.stats.received();
    let text = answer(&f.shared, FourLetterWord::Stat);
    let clients = text
        .split("Clients:\n")
        .nth(1)
        .and_then(|t| t.split("\n\n").next())
        .expect("a Clients: block");
    assert_eq!(
        clients,
        " /127.0.0.1:46406[1](queued=0,recved=2,sent=1)\n \
         /127.0.0.1:46430[0](queued=0,recved=1,sent=0)"
    );
    assert_eq!(line(&text, "Connections:"), "Connections: 2");
    drop(other);
    assert_eq!(
        line(&answer(&f.shared, FourLetterWord::Stat), "Connections:"),
        "Connections: 1"
    );
}

#[test]
fn cons_prints_per_connection_fields_and_crst_resets_them() {
    let f = fixture();
    let c = &f.client.stats;
    for _ in 0..6 {
        c.received();
    }
    c.sent(6);
    c.request_queued();
    c.responded("CREA", 5, 3, 6_000, 2_672_000);
    c.request_queued();
    c.responded("PING", -2, 3, 1_000, 2_672_542);
    let text = answer(&f.shared, FourLetterWord::Cons);
    let expected = format!(
        " /127.0.0.1:46406[1](queued=0,recved=6,sent=6,sid={SESSION:#x},lop=PING,est={},\
         to=30000,lcxid=0x5,lzxid=0x3,lresp=2672542,llat=1,minlat=1,avglat=3,maxlat=6)\n\n",
        c.established_ms
    );
    assert_eq!(text, expected);

    assert_eq!(
        answer(&f.shared, FourLetterWord::Crst),
        "Connection stats reset.\n"
    );
    let text = answer(&f.shared, FourLetterWord::Cons);
    let expected = format!(
        " /127.0.0.1:46406[1](queued=0,recved=0,sent=0,sid={SESSION:#x},lop=NA,est={},\
         to=30000,lzxid=0xffffffffffffffff,lresp=0,llat=0,minlat=0,avglat=0,maxlat=0)\n\n",
        c.established_ms
    );
    assert_eq!(text, expected);
}

#[test]
fn srst_resets_server_latency_and_packets() {
    let f = fixture();
    let s = &f.shared.stats;
    s.packets_received.store(10, Ordering::Relaxed);
    s.record_request(4_000, true);
    assert_eq!(
        answer(&f.shared, FourLetterWord::Srst),
        "Server stats reset.\n"
    );
    let text = answer(&f.shared, FourLetterWord::Srvr);
    assert_eq!(line(&text, "Latency"), "Latency min/avg/max: 0/0.0/0");
    assert_eq!(line(&text, "Received:"), "Received: 0");
    // The histogram /metrics exports keeps its count.
    assert_eq!(s.update_latency.snapshot().count, 1);
}

#[test]
fn mntr_has_zookeepers_keys_and_leader_keys_on_the_leader() {
    let f = fixture();
    let text = answer(&f.shared, FourLetterWord::Mntr);
    let kv: Vec<(&str, &str)> = text
        .lines()
        .map(|l| l.split_once('\t').expect("key<TAB>value"))
        .collect();
    let get = |k: &str| {
        kv.iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no {k} in\n{text}"))
    };
    assert_eq!(get("zk_version"), format!("{VERSION}, built on unknown"));
    assert_eq!(get("zk_server_state"), "standalone");
    assert_eq!(
        get("zk_znode_count"),
        (f.shared.tree().node_count() + 1).to_string()
    );
    assert_eq!(get("zk_ephemerals_count"), "1");
    assert_eq!(get("zk_watch_count"), "1");
    assert_eq!(get("zk_global_sessions"), "1");
    assert_eq!(get("zk_num_alive_connections"), "1");
    assert_eq!(get("zk_avg_latency"), "0.0");
    for k in [
        "zk_outstanding_requests",
        "zk_packets_sent",
        "zk_packets_received",
        "zk_min_latency",
        "zk_max_latency",
        "zk_approximate_data_size",
        "zk_uptime",
        "zk_open_file_descriptor_count",
        "zk_max_file_descriptor_count",
        "zk_cnt_fsynctime",
        "zk_cnt_readlatency",
        "zk_cnt_updatelatency",
    ] {
        let v = get(k);
        assert!(v.parse::<u64>().is_ok(), "{k} = {v:?}");
    }
    assert!(kv.iter().all(|(k, _)| k.starts_with("zk_")));
    assert!(!text.contains("zk_learners"), "{text}");

    f.shared.set_role(Role::Leader);
    let q = &f.shared.stats.quorum;
    q.learners.store(2, Ordering::Relaxed);
    q.synced_followers.store(2, Ordering::Relaxed);
    q.pending_syncs.store(1, Ordering::Relaxed);
    q.record_sync(crate::metrics::SyncMode::Diff);
    let text = answer(&f.shared, FourLetterWord::Mntr);
    assert!(text.contains("zk_server_state\tleader\n"), "{text}");
    assert!(text.contains("zk_learners\t2\n"), "{text}");
    assert!(text.contains("zk_synced_followers\t2\n"), "{text}");
    assert!(text.contains("zk_pending_syncs\t1\n"), "{text}");
    assert!(text.contains("zk_diff_count\t1\n"), "{text}");
    assert!(text.contains("zk_last_proposal_size\t-1\n"), "{text}");
    let srvr = answer(&f.shared, FourLetterWord::Srvr);
    assert!(
        srvr.ends_with("Proposal sizes last/min/max: -1/-1/-1\n"),
        "{srvr}"
    );
}

#[test]
fn whitelist_and_not_serving() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config::parse(&format!(
        "dataDir={}\nclientPort=2181\n4lw.commands.whitelist=ruok\n",
        dir.path().display()
    ))
    .expect("config")
    .config;
    let shared = Shared::new(Arc::new(config), 0, DataTree::new());
    assert_eq!(
        answer(&shared, FourLetterWord::Mntr),
        "mntr is not executed because it is not in the whitelist.\n"
    );
    assert_eq!(answer(&shared, FourLetterWord::Ruok), "imok");
    // srvr is always on the list; the server does not serve yet.
    assert_eq!(
        answer(&shared, FourLetterWord::Srvr),
        format!("{NOT_SERVING}\n")
    );
}

#[test]
fn dump_lists_expiry_sets_and_ephemerals() {
    let f = fixture();
    let text = answer(&f.shared, FourLetterWord::Dump);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("SessionTracker dump:"));
    assert_eq!(lines.next(), Some("Session Sets (1)/(1):"));
    let expire = lines.next().expect("an expiry set");
    assert!(
        expire.starts_with("1 expire at ") && expire.contains(" UTC 20") && expire.ends_with(':'),
        "{expire}"
    );
    assert_eq!(lines.next(), Some(format!("\t{SESSION:#x}").as_str()));
    let rest: Vec<&str> = lines.collect();
    assert_eq!(
        rest,
        [
            "ephemeral nodes dump:",
            "Sessions with Ephemerals (1):",
            &format!("{SESSION:#x}:"),
            "\t/app/eph",
            "Connections dump:",
        ]
    );
}

#[test]
fn dump_on_a_follower_lists_the_global_sessions() {
    let f = fixture();
    f.shared.set_role(Role::Follower);
    let text = answer(&f.shared, FourLetterWord::Dump);
    assert!(
        text.starts_with(&format!(
            "SessionTracker dump:\nGlobal Sessions(1):\n{SESSION:#x}\t30000ms\nephemeral nodes dump:\n"
        )),
        "{text}"
    );
    let m = crate::admin::run_command(&f.shared, "dump").body;
    assert_eq!(m["expiry_time_to_session_ids"], serde_json::json!({}));
}

#[test]
fn watch_words() {
    let f = fixture();
    assert_eq!(
        answer(&f.shared, FourLetterWord::Wchs),
        "1 connections watching 1 paths\nTotal watches:1\n"
    );
    assert_eq!(
        answer(&f.shared, FourLetterWord::Wchc),
        format!("{SESSION:#x}\n\t/app\n\n")
    );
    assert_eq!(
        answer(&f.shared, FourLetterWord::Wchp),
        format!("/app\n\t{SESSION:#x}\n\n")
    );
}

#[test]
fn conf_of_a_standalone_server_and_of_an_ensemble_member() {
    let f = fixture();
    let text = answer(&f.shared, FourLetterWord::Conf);
    let keys: Vec<&str> = text
        .lines()
        .map(|l| l.split_once('=').expect("key=value").0)
        .collect();
    assert_eq!(
        keys,
        [
            "clientPort",
            "secureClientPort",
            "dataDir",
            "dataDirSize",
            "dataLogDir",
            "dataLogSize",
            "tickTime",
            "maxClientCnxns",
            "minSessionTimeout",
            "maxSessionTimeout",
            "clientPortListenBacklog",
            "serverId",
        ]
    );
    assert_eq!(line(&text, "clientPort="), "clientPort=2181");
    assert_eq!(line(&text, "minSessionTimeout="), "minSessionTimeout=4000");
    assert!(line(&text, "dataDir=").ends_with("/zk-rs"));

    let f = fixture_with(
        "initLimit=10\nsyncLimit=5\nserver.1=127.0.0.1:2888:3888\n\
         server.2=127.0.0.1:2889:3889\nserver.3=127.0.0.1:2890:3890:observer\n",
        2,
    );
    let text = answer(&f.shared, FourLetterWord::Conf);
    let tail: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("serverId"))
        .collect();
    assert_eq!(
        tail,
        [
            "serverId=2",
            "initLimit=10",
            "syncLimit=5",
            "electionAlg=3",
            "electionPort=3889",
            "quorumPort=2889",
            "peerType=0",
            "membership: ",
            "server.1=127.0.0.1:2888:3888:participant",
            "server.2=127.0.0.1:2889:3889:participant",
            "server.3=127.0.0.1:2890:3890:observer",
            "version=0",
        ]
    );
}

#[test]
fn envi_dirs_hash_isro() {
    let f = fixture();
    let text = answer(&f.shared, FourLetterWord::Envi);
    assert!(
        text.starts_with("Environment:\nzookeeper.version="),
        "{text}"
    );
    for k in ["host.name=", "os.name=", "os.arch=", "user.dir="] {
        assert!(text.lines().any(|l| l.starts_with(k)), "{k} in {text}");
    }
    // The database directory does not exist in this fixture.
    assert_eq!(
        answer(&f.shared, FourLetterWord::Dirs),
        "datadir_size: 0\nlogdir_size: 0\n"
    );
    std::fs::create_dir_all(database_dir(&f.shared)).expect("mkdir");
    std::fs::write(database_dir(&f.shared).join("log"), [0u8; 1234]).expect("write");
    assert_eq!(
        answer(&f.shared, FourLetterWord::Dirs),
        "datadir_size: 1234\nlogdir_size: 1234\n"
    );
    let digest = f.shared.tree().digest();
    assert_eq!(
        answer(&f.shared, FourLetterWord::Hash),
        format!("3: {digest}\n")
    );
    assert_eq!(answer(&f.shared, FourLetterWord::Isro), "rw");
    assert_eq!(answer(&f.shared, FourLetterWord::Ruok), "imok");
}

#[test]
fn a_recent_tree_digest_is_answered_again_with_its_zxid() {
    let f = fixture();
    let hour = std::time::Duration::from_secs(3600);
    let first = f.shared.tree_digest(hour);
    assert_eq!(first, (3, f.shared.tree().digest()));
    f.shared
        .apply_committed(&[TxnEntry {
            header: TxnHeader {
                client_id: SESSION,
                cxid: 2,
                zxid: 4,
                time: 1_700_000_000_000,
                op: OpCode::Create,
            },
            txn: Txn::Create {
                path: "/b".into(),
                data: Some(Vec::new()),
                acl: Acl::open_unsafe(),
                ephemeral: false,
                parent_cversion: -1,
            },
        }])
        .expect("apply");
    assert_eq!(f.shared.tree_digest(hour), first);
    let fresh = f.shared.tree_digest(std::time::Duration::ZERO);
    assert_eq!(fresh, (4, f.shared.tree().digest()));
    assert_ne!(fresh.1, first.1);
}

#[test]
fn java_formats() {
    assert_eq!(java_double(0.0), "0.0");
    assert_eq!(java_double(1.0), "1.0");
    assert_eq!(java_double(2.6667), "2.6667");
    assert_eq!(java_double(0.5), "0.5");
    assert_eq!(java_date(0), "Thu Jan 01 00:00:00 UTC 1970");
    assert_eq!(java_date(951_782_400_000), "Tue Feb 29 00:00:00 UTC 2000");
    assert_eq!(java_date(1_795_597_275_999), "Wed Nov 25 09:01:15 UTC 2026");
    let v6: SocketAddr = "[::1]:2181".parse().expect("addr");
    assert_eq!(java_address(&v6), "0:0:0:0:0:0:0:1:2181");
    let v4: SocketAddr = "10.0.0.1:80".parse().expect("addr");
    assert_eq!(java_address(&v4), "10.0.0.1:80");
}

#[test]
fn last_op_names_follow_final_request_processor() {
    use crate::server::last_op_name;
    assert_eq!(last_op_name(OpCode::Create2), "CREA");
    assert_eq!(last_op_name(OpCode::GetChildren2), "GETC");
    assert_eq!(last_op_name(OpCode::AddWatch), "ADDW");
    assert_eq!(last_op_name(OpCode::WhoAmI), "HOMI");
    assert_eq!(last_op_name(OpCode::GetAllChildrenNumber), "GETACN");
}

#[test]
fn max_open_files_is_the_soft_limit() {
    let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                  Max processes             127473               127473               processes\n\
                  Max open files            1024                 524288               files\n";
    assert_eq!(parse_max_open_files(limits), Some(1024));
    assert_eq!(
        parse_max_open_files("Max open files  unlimited  unlimited  files\n"),
        None
    );
    assert_eq!(parse_max_open_files(""), None);
}
