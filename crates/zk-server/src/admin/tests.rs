//! The JSON shapes of the admin commands (field names as Apache ZooKeeper 3.8.0's
//! AdminServer prints them) and the HTTP layer over a real socket.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::fourlw::tests::{SESSION, fixture, fixture_with};

fn ok(shared: &Shared, name: &str) -> Map<String, Value> {
    let r = run_command(shared, name);
    assert_eq!(r.status, 200, "{name}: {}", r.body);
    let Value::Object(m) = r.body else {
        panic!("{name}: not an object");
    };
    assert_eq!(m.get("error"), Some(&Value::Null), "{name}: {m:?}");
    m
}

fn keys(m: &Map<String, Value>) -> Vec<&str> {
    m.keys().map(String::as_str).collect()
}

#[test]
fn every_name_and_alias_answers_with_its_primary_name() {
    let f = fixture();
    for names in COMMANDS {
        for name in *names {
            let m = if *name == "leader" || *name == "lead" {
                // A standalone server has no leader: ZooKeeper's error text.
                let r = run_command(&f.shared, name);
                assert_eq!(r.status, 200);
                assert_eq!(r.body["error"], "server is not initialized");
                continue;
            } else {
                ok(&f.shared, name)
            };
            assert_eq!(m["command"], names[0], "{name}");
        }
    }
}

#[test]
fn unknown_command_is_a_404_with_a_json_error() {
    let f = fixture();
    let r = run_command(&f.shared, "nosuch");
    assert_eq!(r.status, 404);
    assert_eq!(
        r.body,
        json!({ "command": "nosuch", "error": "Unknown command: nosuch" })
    );
}

#[test]
fn commands_that_need_a_serving_server_say_so() {
    let f = fixture();
    f.shared.set_role(Role::NotServing);
    let r = run_command(&f.shared, "ruok");
    assert_eq!(r.body["error"], NOT_SERVING);
    assert_eq!(r.body["command"], "ruok");
    let r = run_command(&f.shared, "srvr");
    assert_eq!(r.body["error"], NOT_SERVING);
    assert_eq!(r.body["command"], "srvr");
    // environment, get_trace_mask, monitor and zabstate answer anyway.
    assert_eq!(ok(&f.shared, "mntr")["server_state"], "not serving");
    ok(&f.shared, "envi");
    ok(&f.shared, "zabstate");
    assert_eq!(ok(&f.shared, "gtmk")["tracemask"], 0);
}

#[test]
fn server_stats_and_stats() {
    let f = fixture();
    f.shared.stats.packets_received.store(21, Ordering::Relaxed);
    f.shared.stats.record_request(2_000, false);
    f.client.stats.received();
    let m = ok(&f.shared, "srvr");
    assert_eq!(
        keys(&m),
        [
            "command",
            "error",
            "node_count",
            "read_only",
            "server_stats",
            "version"
        ]
    );
    let s = &m["server_stats"];
    assert_eq!(s["packets_received"], 21);
    assert_eq!(s["server_state"], "standalone");
    assert_eq!(s["last_processed_zxid"], 3);
    assert_eq!(s["avg_latency"], 2.0);
    assert_eq!(s["min_latency"], 2);
    assert_eq!(s["num_alive_client_connections"], 1);
    assert_eq!(s["provider_null"], false);
    for k in [
        "packets_sent",
        "data_dir_size",
        "log_dir_size",
        "outstanding_requests",
        "max_latency",
        "uptime",
    ] {
        assert!(s[k].is_u64(), "{k}: {s}");
    }
    assert_eq!(m["read_only"], false);
    assert_eq!(m["node_count"], f.shared.tree().node_count() + 1);

    let m = ok(&f.shared, "stats");
    assert_eq!(m["command"], "stats");
    assert!(m.contains_key("server_stats"));
    assert_eq!(m["secure_connections"], json!([]));
    assert_eq!(
        m["connections"],
        json!([{
            "remote_socket_address": "127.0.0.1:46406",
            "interest_ops": 1,
            "outstanding_requests": 0,
            "packets_received": 1,
            "packets_sent": 0,
        }])
    );
}

#[test]
fn connections_carry_zookeepers_per_connection_fields() {
    let f = fixture();
    let c = &f.client.stats;
    c.request_queued();
    c.responded("GETD", 7, 3, 2_500, 99);
    let m = ok(&f.shared, "cons");
    assert_eq!(m["secure_connections"], json!([]));
    assert_eq!(
        m["connections"],
        json!([{
            "remote_socket_address": "127.0.0.1:46406",
            "interest_ops": 1,
            "outstanding_requests": 0,
            "packets_received": 0,
            "packets_sent": 0,
            "session_id": SESSION,
            "last_operation": "GETD",
            "established": c.established_ms,
            "session_timeout": 30000,
            "last_cxid": 7,
            "last_zxid": 3,
            "last_response_time": 99,
            "last_latency": 2,
            "min_latency": 2,
            "avg_latency": 2,
            "max_latency": 2,
        }])
    );
    ok(&f.shared, "connection_stat_reset");
    let m = ok(&f.shared, "connections");
    assert_eq!(m["connections"][0]["last_operation"], "NA");
    assert_eq!(m["connections"][0]["last_cxid"], -1);
}

#[test]
fn stat_reset_zeroes_server_counters() {
    let f = fixture();
    f.shared.stats.packets_sent.store(5, Ordering::Relaxed);
    assert_eq!(ok(&f.shared, "srst")["command"], "stat_reset");
    assert_eq!(ok(&f.shared, "srvr")["server_stats"]["packets_sent"], 0);
}

#[test]
fn monitor_has_unprefixed_typed_values() {
    let f = fixture();
    let m = ok(&f.shared, "monitor");
    assert_eq!(m["command"], "monitor");
    assert_eq!(m["server_state"], "standalone");
    assert_eq!(m["znode_count"], f.shared.tree().node_count() + 1);
    assert_eq!(m["ephemerals_count"], 1);
    assert_eq!(m["watch_count"], 1);
    assert_eq!(m["global_sessions"], 1);
    assert!(m["avg_latency"].is_f64());
    assert!(m["version"].as_str().is_some_and(|v| v.starts_with("3.8.")));
    assert!(m.keys().all(|k| !k.starts_with("zk_")));
}

#[test]
fn watches_dump_and_summary() {
    let f = fixture();
    let sid = SESSION.to_string();
    assert_eq!(
        ok(&f.shared, "wchc")["session_id_to_watched_paths"],
        json!({ sid.clone(): ["/app"] })
    );
    assert_eq!(
        ok(&f.shared, "wchp")["path_to_session_ids"],
        json!({ "/app": [SESSION] })
    );
    let m = ok(&f.shared, "wchs");
    assert_eq!(
        (
            &m["num_connections"],
            &m["num_paths"],
            &m["num_total_watches"]
        ),
        (&json!(1), &json!(1), &json!(1))
    );
    let m = ok(&f.shared, "dump");
    assert_eq!(
        m["session_id_to_ephemeral_paths"],
        json!({ sid: ["/app/eph"] })
    );
    let expiry = m["expiry_time_to_session_ids"]
        .as_object()
        .expect("an object");
    assert_eq!(expiry.len(), 1);
    let (time, ids) = expiry.iter().next().expect("one set");
    assert!(time.parse::<u64>().is_ok_and(|t| t % 2000 == 0), "{time}");
    assert_eq!(ids, &json!([SESSION]));
}

#[test]
fn configuration_dirs_environment_hash_isro() {
    let f = fixture();
    let m = ok(&f.shared, "conf");
    assert_eq!(m["client_port"], 2181);
    assert_eq!(m["tick_time"], 2000);
    assert_eq!(m["min_session_timeout"], 4000);
    assert_eq!(m["max_session_timeout"], 40000);
    assert_eq!(m["server_id"], 0);
    assert!(
        m["data_dir"]
            .as_str()
            .is_some_and(|d| d.ends_with("/zk-rs"))
    );
    let m = ok(&f.shared, "dirs");
    assert_eq!(
        (&m["datadir_size"], &m["logdir_size"]),
        (&json!(0), &json!(0))
    );
    let m = ok(&f.shared, "env");
    assert_eq!(m["command"], "environment");
    assert!(m["zookeeper.version"].is_string() && m["os.name"].is_string());
    let m = ok(&f.shared, "hash");
    let digest = f.shared.tree().digest();
    assert_eq!(m["digests"], json!([{ "zxid": 3, "digest": digest }]));
    assert_eq!(ok(&f.shared, "isro")["read_only"], false);
    let m = ok(&f.shared, "zabstate");
    assert_eq!((&m["voting"], &m["zabstate"]), (&json!(false), &json!("")));
    assert_eq!(ok(&f.shared, "voting_view")["current_config"], json!({}));
}

#[test]
fn leader_zabstate_and_voting_view_on_an_ensemble_leader() {
    let f = fixture_with(
        "initLimit=10\nsyncLimit=5\nserver.1=127.0.0.1:2888:3888\n\
         server.2=127.0.0.2:2889:3889;2182\nserver.3=127.0.0.1:2890:3890:observer\n",
        2,
    );
    f.shared.set_role(Role::Leader);
    let q = &f.shared.stats.quorum;
    q.set_leader(Some(2));
    q.set_zab_state(crate::metrics::ZabState::Broadcast);
    q.record_proposal(120);
    let m = ok(&f.shared, "lead");
    assert_eq!(
        (&m["is_leader"], &m["leader_id"], &m["leader_ip"]),
        (&json!(true), &json!(2), &json!("127.0.0.2"))
    );
    let m = ok(&f.shared, "zabstate");
    assert_eq!(m["myid"], 2);
    assert_eq!(m["is_leader"], true);
    assert_eq!(m["voting"], true);
    assert_eq!(m["zabstate"], "broadcast");
    assert_eq!(m["quorum_address"]["one"], "127.0.0.2:2889");
    assert_eq!(m["quorum_address"]["all_ports"], json!([2889]));
    assert_eq!(
        m["quorum_address"]["wildcard_addresses"],
        json!(["0.0.0.0:2889"])
    );
    assert_eq!(
        m["election_address"]["all_addresses"],
        json!(["127.0.0.2:3889"])
    );
    assert_eq!(m["client_address"], "0.0.0.0:2182");
    assert_eq!(m["last_zxid"], "0x3");
    assert_eq!((&m["zab_epoch"], &m["zab_counter"]), (&json!(0), &json!(3)));
    let view = ok(&f.shared, "voting_view");
    let view = view["current_config"].as_object().expect("an object");
    assert_eq!(keys(view), ["1", "2"], "observers do not vote");
    assert_eq!(
        view["1"],
        json!({
            "server_addresses": ["127.0.0.1:2888"],
            "election_addresses": ["127.0.0.1:3888"],
            "learner_type": "participant",
            "client_address": "",
        })
    );
    // Its own client address is known.
    assert_eq!(view["2"]["client_address"], "0.0.0.0:2182");
    let m = ok(&f.shared, "srvr");
    assert_eq!(
        m["proposal_stats"],
        json!({ "last_buffer_size": 120, "min_buffer_size": 120, "max_buffer_size": 120 })
    );
    assert_eq!(ok(&f.shared, "mntr")["quorum_size"], 2);
}

#[test]
fn command_list_links_every_primary_name() {
    let html = command_list_html();
    for names in COMMANDS {
        let link = format!("<a href=\"/commands/{0}\">{0}</a>", names[0]);
        assert!(html.contains(&link), "{link}");
    }
    assert_eq!(html.matches("<br/>").count(), COMMANDS.len());
}

// -- HTTP ---------------------------------------------------------------------------

/// One raw HTTP/1.1 exchange: `(status, content type, body)`.
async fn http(addr: std::net::SocketAddr, request: &[u8]) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("an answer within 10 s")
        .expect("read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    (status, content_type, body.to_string())
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    http(addr, req.as_bytes()).await
}

#[tokio::test]
async fn http_routes_and_bad_requests() {
    let f = fixture();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(serve(listener, f.shared.clone()));

    let (status, ct, body) = get(addr, "/commands/ruok").await;
    assert_eq!((status, ct.as_str()), (200, "application/json"));
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v, json!({ "command": "ruok", "error": null }));

    let (status, _, body) = get(addr, "/commands/mntr").await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["command"], "monitor");

    let (status, _, body) = get(addr, "/commands/nosuch").await;
    assert_eq!(status, 404);
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["error"], "Unknown command: nosuch");

    let (status, ct, body) = get(addr, "/commands").await;
    assert_eq!((status, ct.as_str()), (200, "text/html; charset=utf-8"));
    assert!(body.contains("/commands/monitor"));

    let (status, ct, body) = get(addr, "/metrics").await;
    assert_eq!((status, ct.as_str()), (200, crate::metrics::CONTENT_TYPE));
    assert!(body.contains("\nznode_count "), "{body}");

    let (status, _, _) = get(addr, "/nowhere").await;
    assert_eq!(status, 404);
    // Hostile input: a bad escape, a huge path, garbage instead of HTTP.
    let (status, _, _) = get(addr, "/commands/%ZZ").await;
    assert_eq!(status, 404);
    let long = format!("/commands/{}", "a".repeat(100_000));
    let (status, _, _) = get(addr, &long).await;
    assert!(
        status == 404 || status == 414 || status == 431 || status == 0,
        "{status}"
    );
    let (status, _, _) = http(addr, b"\x00\x01garbage\r\n\r\n").await;
    assert!(status == 400 || status == 0, "{status}");
    // Still serving.
    let (status, _, _) = get(addr, "/commands/ruok").await;
    assert_eq!(status, 200);
    server.abort();
}

#[tokio::test]
async fn idle_connections_are_closed_and_the_connection_bound_holds() {
    let f = fixture();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let limits = AdminLimits {
        max_connections: 1,
        idle_timeout: Duration::from_millis(300),
    };
    let server = tokio::spawn(serve_with(listener, f.shared.clone(), limits));
    // A connection that sends nothing takes the only slot...
    let mut idle = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // ...so this request waits until the idle one is closed, then is answered.
    let waiting = tokio::spawn(async move { get(addr, "/commands/ruok").await });
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut byte))
        .await
        .expect("the idle connection is closed within 10 s");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    let (status, _, body) = waiting.await.expect("request task");
    assert_eq!(status, 200, "{body}");
    server.abort();
}
