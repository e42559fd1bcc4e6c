//! Speed of the server's building blocks on the paths every request takes: firing
//! watches, checking ACLs, touching and expiring sessions, parsing a `zoo.cfg`.
//! Run with `cargo bench -p zk-server --bench building_blocks`.

use std::net::IpAddr;

use divan::counter::ItemsCount;
use divan::{Bencher, black_box};
use zk_proto::data::{Acl, AddWatchMode, Id, perms};
use zk_server::acl::{self, AuthProviders};
use zk_server::config::Config;
use zk_server::session::{SessionTracker, generate_password};
use zk_server::watch::WatchManager;

fn main() {
    divan::main();
}

/// `sessions` sessions each watch the same node (getData); one setData fires them all.
#[divan::bench(args = [1, 100, 10_000])]
fn fire_data_watches(bencher: Bencher, sessions: i64) {
    bencher
        .counter(ItemsCount::new(sessions as usize))
        .with_inputs(|| {
            let mut w = WatchManager::new();
            for s in 0..sessions {
                w.add_data_watch(s, "/app/config");
            }
            w
        })
        .bench_local_values(|mut w| black_box(w.node_data_changed("/app/config", 1)));
}

/// A change 8 levels deep with 1000 recursive watchers on the root and 10,000 unrelated
/// one-shot watches: the cost of the ancestor walk.
#[divan::bench]
fn fire_recursive_watches(bencher: Bencher) {
    let mut w = WatchManager::new();
    for s in 0..1000 {
        w.add_watch(s, "/", AddWatchMode::PersistentRecursive);
    }
    for s in 0..10_000 {
        w.add_data_watch(s, &format!("/other/n{s}"));
    }
    bencher.bench_local(|| black_box(w.node_data_changed("/a/b/c/d/e/f/g/h", 2)));
}

/// Registering and removing one session's 100 watches (getData on 100 nodes, then close).
#[divan::bench]
fn add_and_drop_session_watches(bencher: Bencher) {
    let paths: Vec<String> = (0..100).map(|i| format!("/app/n{i}")).collect();
    let mut w = WatchManager::new();
    bencher.counter(ItemsCount::new(100usize)).bench_local(|| {
        for p in &paths {
            w.add_data_watch(7, p);
        }
        w.remove_session(7);
    });
}

/// checkACL for a node with a digest, an ip CIDR and world:anyone-read entries.
#[divan::bench]
fn check_acl(bencher: Bencher) {
    let remote: IpAddr = "10.1.2.3".parse().unwrap();
    let mut ids = acl::connection_ids(remote);
    acl::add_auth_ids(
        &mut ids,
        AuthProviders::default()
            .authenticate("digest", b"app:pw", remote)
            .unwrap(),
    );
    let node = vec![
        Acl {
            perms: perms::READ,
            id: Id::new("world", "anyone"),
        },
        Acl {
            perms: perms::WRITE,
            id: Id::new("ip", "192.168.0.0/16"),
        },
        Acl {
            perms: perms::ALL,
            id: Id::new("digest", acl::digest("app:pw")),
        },
    ];
    bencher.bench_local(|| black_box(acl::check(&node, &ids, perms::WRITE)));
}

/// The SHA-1 digest of an `addauth digest user:password`.
#[divan::bench]
fn digest(bencher: Bencher) {
    bencher.bench_local(|| black_box(acl::digest(black_box("app:password"))));
}

/// One ping per session for 10,000 sessions, then expiring them all.
#[divan::bench]
fn touch_then_expire_10k_sessions(bencher: Bencher) {
    bencher
        .counter(ItemsCount::new(10_000usize))
        .with_inputs(|| {
            let mut t = SessionTracker::new(1, 2000, 0);
            let ids: Vec<i64> = (0..10_000).map(|_| t.create_session(10_000, 0)).collect();
            (t, ids)
        })
        .bench_local_values(|(mut t, ids)| {
            for (i, id) in ids.iter().enumerate() {
                t.touch(*id, 10_000, 1000 + i as u64);
            }
            black_box(t.expired(1_000_000))
        });
}

/// The 16-byte session password (java.util.Random).
#[divan::bench]
fn session_password(bencher: Bencher) {
    bencher.bench_local(|| black_box(generate_password(black_box(0x0100_0018_bcfe_5680))));
}

/// Parsing a 3-server `zoo.cfg` with comments.
#[divan::bench]
fn parse_zoo_cfg(bencher: Bencher) {
    let text = "# ensemble\ntickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir=/var/lib/zookeeper\n\
                clientPortAddress=127.0.0.1\nclientPort=2181\nmaxClientCnxns=0\n\
                4lw.commands.whitelist=*\nautopurge.snapRetainCount=3\nautopurge.purgeInterval=1\n\
                server.1=127.0.0.1:2888:3888\nserver.2=127.0.0.2:2888:3888\nserver.3=127.0.0.3:2888:3888\n";
    bencher.bench_local(|| black_box(Config::parse(black_box(text))));
}
