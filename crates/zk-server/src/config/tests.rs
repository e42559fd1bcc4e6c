use super::*;

/// `conf/zoo_sample.cfg` as shipped with Apache ZooKeeper (trailing spaces included).
const ZOO_SAMPLE: &str = include_str!("../../testdata/zoo_sample.cfg");

/// Written by `shared/tools/zk-ensemble.sh start 3 /tmp/ens-ours` with `ZK_IMPL=ours`
/// (node 2), and by `start 1 /tmp/ens-one` (node 1).
const ENSEMBLE_3_NODE2: &str = include_str!("../../testdata/zk-ensemble-3-node2.cfg");
const ENSEMBLE_1_NODE1: &str = include_str!("../../testdata/zk-ensemble-1-node1.cfg");

/// The `zoo.cfg` that `shared/tools/zk-ensemble.sh start N DIR` writes for node `i`,
/// reproduced line for line from its heredoc (default knobs).
fn ensemble_cfg(n: u32, i: u32, dir: &str, ours: bool) -> String {
    let mut servers = String::new();
    if n > 1 {
        for j in 1..=n {
            servers.push_str(&format!(
                "server.{j}=127.0.0.1:{}:{}\n",
                2888 + j - 1,
                3888 + j - 1
            ));
        }
    }
    let admin = if ours {
        format!("admin.serverPort={}", 8080 + i)
    } else {
        "admin.enableServer=false".to_string()
    };
    format!(
        "tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir={dir}/data\nclientPortAddress=127.0.0.1\n\
         clientPort={}\nmaxClientCnxns=0\n{admin}\n4lw.commands.whitelist=*\nforceSync=yes\n\
         autopurge.snapRetainCount=3\nautopurge.purgeInterval=1\n\
         # bind quorum/election sockets to the given 127.0.0.1 address only\n\
         quorumListenOnAllIPs=false\n{servers}\n",
        2181 + i - 1
    )
}

fn parse_ok(text: &str) -> Parsed {
    match Config::parse(text) {
        Ok(p) => p,
        Err(e) => panic!("parse failed: {e}\n{text}"),
    }
}

fn parse_err(text: &str) -> ConfigError {
    match Config::parse(text) {
        Ok(p) => panic!("expected an error, got {:?}", p.config),
        Err(e) => e,
    }
}

const BASE: &str = "tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir=/data\nclientPort=2181\n";

fn three_servers() -> String {
    format!(
        "{BASE}server.1=10.0.0.1:2888:3888\nserver.2=10.0.0.2:2888:3888\nserver.3=10.0.0.3:2888:3888\n"
    )
}

#[test]
fn zoo_sample_cfg_is_standalone_with_defaults() {
    let Parsed { config, warnings } = parse_ok(ZOO_SAMPLE);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(config.tick_time_ms, 2000);
    assert_eq!(config.init_limit, 10);
    assert_eq!(config.sync_limit, 5);
    assert_eq!(config.data_dir, PathBuf::from("/tmp/zookeeper"));
    assert_eq!(config.data_log_dir, PathBuf::from("/tmp/zookeeper"));
    assert_eq!(config.client_port, Some(2181));
    assert_eq!(config.max_client_cnxns, 60);
    assert_eq!(config.min_session_timeout_ms, 4000);
    assert_eq!(config.max_session_timeout_ms, 40_000);
    assert_eq!(config.snap_retain_count, 3);
    assert_eq!(config.purge_interval_ms, 0);
    assert_eq!(config.snap_count, 100_000);
    assert_eq!(config.jute_max_buffer, 0xfffff);
    assert_eq!(config.global_outstanding_limit, 1000);
    assert_eq!(config.admin, AdminServerConfig::default());
    assert_eq!(config.admin.port, 8080);
    assert!(config.force_sync && config.leader_serves && !config.skip_acl);
    assert!(!config.extended_types_enabled);
    assert_eq!(config.container_check_interval_ms, 60_000);
    assert_eq!(
        config.four_letter_words.words().collect::<Vec<_>>(),
        ["srvr"]
    );
    assert!(config.servers.is_empty());
    assert!(!config.is_distributed());
    assert_eq!(config.resolve_mode(None).unwrap(), Mode::Standalone);
    assert_eq!(
        config.client_address(Mode::Standalone).unwrap(),
        HostPort::new("0.0.0.0", 2181)
    );
}

#[test]
fn zk_ensemble_script_output_matches_the_reproduction() {
    assert_eq!(
        ensemble_cfg(3, 2, "/tmp/ens-ours/node2", true),
        ENSEMBLE_3_NODE2
    );
    assert_eq!(
        ensemble_cfg(1, 1, "/tmp/ens-one/node1", true),
        ENSEMBLE_1_NODE1
    );
    let Parsed { config, warnings } = parse_ok(ENSEMBLE_3_NODE2);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        config.resolve_mode(Some(2)).unwrap(),
        Mode::Quorum { my_id: 2 }
    );
    assert_eq!(
        config.client_address(Mode::Quorum { my_id: 2 }).unwrap(),
        HostPort::new("127.0.0.1", 2182)
    );
    assert_eq!(config.admin.port, 8082);
    let Parsed { config, warnings } = parse_ok(ENSEMBLE_1_NODE1);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(config.resolve_mode(Some(1)).unwrap(), Mode::Standalone);
}

#[test]
fn zk_ensemble_script_configs_load_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    for ours in [false, true] {
        for n in [1u32, 3] {
            for i in 1..=n {
                let dir = tmp.path().join(format!("{ours}-{n}-node{i}"));
                std::fs::create_dir_all(dir.join("data")).unwrap();
                std::fs::write(dir.join("data/myid"), format!("{i}\n")).unwrap();
                let cfg_path = dir.join("zoo.cfg");
                std::fs::write(&cfg_path, ensemble_cfg(n, i, dir.to_str().unwrap(), ours)).unwrap();
                let loaded = load(&cfg_path).unwrap();
                assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
                let c = &loaded.config;
                assert_eq!(loaded.my_id, Some(u64::from(i)));
                if n == 1 {
                    assert_eq!(loaded.mode, Mode::Standalone);
                } else {
                    assert_eq!(
                        loaded.mode,
                        Mode::Quorum {
                            my_id: u64::from(i)
                        }
                    );
                    assert_eq!(c.servers.len(), 3);
                    let me = &c.servers[&u64::from(i)];
                    assert_eq!(me.quorum, HostPort::new("127.0.0.1", (2888 + i - 1) as u16));
                    assert_eq!(me.election.port, (3888 + i - 1) as u16);
                }
                assert_eq!(
                    loaded.client_address,
                    HostPort::new("127.0.0.1", (2181 + i - 1) as u16)
                );
                assert_eq!(c.max_client_cnxns, 0);
                assert_eq!(c.purge_interval_ms, 3_600_000);
                assert!(c.four_letter_words.is_enabled("mntr"));
                assert!(c.four_letter_words.is_enabled("wchp"));
                assert!(c.force_sync);
                assert!(!c.quorum_listen_on_all_ips);
                if ours {
                    assert!(c.admin.enabled);
                    assert_eq!(c.admin.port, (8080 + i) as u16);
                } else {
                    assert!(!c.admin.enabled);
                }
                assert_eq!(c.data_dir, dir.join("data"));
            }
        }
    }
}

#[test]
fn myid_not_in_peer_list_has_zookeepers_message() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("myid"), "4\n").unwrap();
    let cfg = tmp.path().join("zoo.cfg");
    std::fs::write(&cfg, ensemble_cfg(3, 1, tmp.path().to_str().unwrap(), true)).unwrap();
    let err = load(&cfg).unwrap_err();
    assert_eq!(err.to_string(), "My id 4 not in the peer list");
    assert!(matches!(err, ConfigError::NotInPeerList(4)));
}

#[test]
fn myid_missing_or_garbage_in_quorum_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let cfg = tmp.path().join("zoo.cfg");
    std::fs::write(&cfg, ensemble_cfg(3, 1, tmp.path().to_str().unwrap(), true)).unwrap();
    assert!(
        matches!(load(&cfg).unwrap_err(), ConfigError::MyIdMissing(p) if p == data.join("myid"))
    );
    std::fs::write(data.join("myid"), "one\n").unwrap();
    let err = load(&cfg).unwrap_err();
    assert!(matches!(err, ConfigError::MyIdInvalid { .. }), "{err}");
    assert!(err.to_string().contains("\"one\""), "{err}");
}

#[test]
fn missing_config_file_is_an_io_error() {
    let tmp = tempfile::tempdir().unwrap();
    let err = load(&tmp.path().join("nope.cfg")).unwrap_err();
    assert!(matches!(err, ConfigError::Io { .. }), "{err}");
}

#[test]
fn standalone_does_not_need_myid() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("zoo.cfg");
    std::fs::write(&cfg, ensemble_cfg(1, 1, tmp.path().to_str().unwrap(), true)).unwrap();
    let loaded = load(&cfg).unwrap();
    assert_eq!(loaded.mode, Mode::Standalone);
    assert_eq!(loaded.my_id, None);
}

#[test]
fn server_line_forms() {
    let text = format!(
        "{BASE}server.1=a.example:2888:3888\n\
         server.2=b.example:2888:3888:participant;2182\n\
         server.3=c.example:2888:3888:observer;10.0.0.3:2183\n\
         server.4=[::1]:2888:3888;[::1]:2184\n\
         server.5=e.example:2888:3888:PARTICIPANT;\n"
    );
    let c = parse_ok(&text).config;
    let s = |id| &c.servers[&id];
    assert_eq!(s(1).learner_type, LearnerType::Participant);
    assert_eq!(s(1).client, None);
    assert_eq!(s(2).client, Some(HostPort::new("0.0.0.0", 2182)));
    assert_eq!(s(3).learner_type, LearnerType::Observer);
    assert_eq!(s(3).client, Some(HostPort::new("10.0.0.3", 2183)));
    assert_eq!(s(4).quorum, HostPort::new("::1", 2888));
    assert_eq!(s(4).election, HostPort::new("::1", 3888));
    assert_eq!(s(4).client, Some(HostPort::new("::1", 2184)));
    assert_eq!(s(4).to_string(), "[::1]:2888:3888:participant;[::1]:2184");
    assert_eq!(s(5).client, None);
    assert_eq!(c.participants().count(), 4);
    assert!(c.is_distributed());
    // The client part of the own server line must agree with clientPort (wildcard host).
    assert_eq!(
        c.client_address(Mode::Quorum { my_id: 1 }).unwrap(),
        HostPort::new("0.0.0.0", 2181)
    );
    assert!(matches!(
        c.client_address(Mode::Quorum { my_id: 2 }),
        Err(ConfigError::Invalid(_))
    ));
}

#[test]
fn client_address_from_server_line_only() {
    let text = "tickTime=2000\ninitLimit=5\nsyncLimit=2\ndataDir=/d\n\
                server.1=127.0.0.1:2888:3888;127.0.0.1:2181\nserver.2=127.0.0.2:2888:3888;127.0.0.2:2181\n\
                server.3=127.0.0.3:2888:3888;127.0.0.3:2181\n";
    let c = parse_ok(text).config;
    assert_eq!(
        c.client_address(Mode::Quorum { my_id: 2 }).unwrap(),
        HostPort::new("127.0.0.2", 2181)
    );
}

#[test]
fn every_known_key_is_parsed() {
    let text = format!(
        "{}dataLogDir=/log\nsecureClientPort=2281\npeerType=participant\nelectionAlg=3\n\
         snapCount=5000\nautopurge.snapRetainCount=7\nautopurge.purgeInterval=30m\nmaxClientCnxns=12\n\
         minSessionTimeout=3000\nmaxSessionTimeout=90000\n4lw.commands.whitelist=stat, ruok conf,,\n\
         admin.serverPort=9090\nadmin.serverAddress=127.0.0.1\nadmin.enableServer=true\n\
         jute.maxbuffer=4194304\nextendedTypesEnabled=true\nznode.container.checkIntervalMs=1000\n\
         znode.container.maxPerMinute=100\nforceSync=no\nstandaloneEnabled=false\nreconfigEnabled=true\n\
         skipACL=yes\nglobalOutstandingLimit=50\npreAllocSize=1024\nsyncEnabled=false\n\
         quorumListenOnAllIPs=true\nleaderServes=no\n\
         fastleader.finalizeWaitMs=150\nfastleader.accountedWaitMs=0\n\
         DigestAuthenticationProvider.superDigest=super:D/InIHSb7yEEbrWz8b9l71RjZJU=\n\
         metricsProvider.className=x.Y\nmetricsProvider.httpPort=7000\n",
        three_servers()
    );
    let Parsed {
        config: c,
        warnings,
    } = parse_ok(&text);
    assert_eq!(c.data_log_dir, PathBuf::from("/log"));
    assert_eq!(c.secure_client_port, Some(2281));
    assert_eq!(c.snap_count, 5000);
    assert_eq!(c.snap_retain_count, 7);
    assert_eq!(c.purge_interval_ms, 30 * 60_000);
    assert_eq!(c.max_client_cnxns, 12);
    assert_eq!(
        (c.min_session_timeout_ms, c.max_session_timeout_ms),
        (3000, 90_000)
    );
    assert_eq!(
        c.four_letter_words.words().collect::<Vec<_>>(),
        ["conf", "ruok", "srvr", "stat"]
    );
    assert!(!c.four_letter_words.is_enabled("mntr"));
    assert_eq!(c.admin.port, 9090);
    assert_eq!(c.admin.address, "127.0.0.1");
    assert_eq!(c.jute_max_buffer, 4_194_304);
    assert!(c.extended_types_enabled);
    assert_eq!(c.container_check_interval_ms, 1000);
    assert_eq!(c.container_max_per_minute, 100);
    assert!(!c.force_sync && !c.standalone_enabled && c.reconfig_enabled && c.skip_acl);
    assert_eq!(c.global_outstanding_limit, 50);
    assert_eq!(c.pre_alloc_size_kb, 1024);
    assert!(!c.sync_enabled && c.quorum_listen_on_all_ips && !c.leader_serves);
    assert_eq!(
        (c.election_finalize_wait_ms, c.election_accounted_wait_ms),
        (150, 0)
    );
    assert_eq!(
        c.super_digest.as_deref(),
        Some("super:D/InIHSb7yEEbrWz8b9l71RjZJU=")
    );
    assert_eq!(
        c.metrics_provider.get("httpPort").map(String::as_str),
        Some("7000")
    );
    let keys: Vec<&str> = warnings.iter().map(|w| w.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "secureClientPort",
            "metricsProvider.className",
            "metricsProvider.httpPort"
        ]
    );
    assert!(warnings.iter().all(|w| w.line.is_some()));
}

#[test]
fn warnings_for_unknown_duplicate_and_adjusted_keys() {
    let text = format!(
        "{BASE}fooBar=1\ndynamicConfigFile=/x/zoo.cfg.dynamic\nautopurge.snapRetainCount=1\n\
         tickTime=2000\n4lw.commands.whitelist=ruok,kill\nsnapCount=1\n"
    );
    let Parsed { config, warnings } = parse_ok(&text);
    let w = |key: &str| {
        warnings
            .iter()
            .find(|w| w.key == key)
            .unwrap_or_else(|| panic!("no warning for {key}: {warnings:?}"))
    };
    assert_eq!(w("fooBar").line, Some(6));
    assert!(w("fooBar").to_string().starts_with("line 6: fooBar:"));
    assert_eq!(w("dynamicConfigFile").line, Some(7));
    assert_eq!(w("autopurge.snapRetainCount").line, Some(8));
    assert_eq!(config.snap_retain_count, 3);
    assert!(w("tickTime").message.contains("line 1"));
    assert!(w("4lw.commands.whitelist").message.contains("kill"));
    assert_eq!(config.snap_count, 2);
    assert_eq!(warnings.len(), 6, "{warnings:?}");
}

#[test]
fn default_tick_time_when_absent() {
    let Parsed { config, warnings } = parse_ok("dataDir=/d\nclientPort=1\n");
    assert_eq!(config.tick_time_ms, 3000);
    assert_eq!(config.min_session_timeout_ms, 6000);
    assert_eq!(config.max_session_timeout_ms, 60_000);
    assert_eq!(warnings.len(), 1);
}

#[test]
fn session_timeout_defaults_follow_tick_time() {
    let c = parse_ok("tickTime=500\ndataDir=/d\nclientPort=1\nminSessionTimeout=100\n").config;
    assert_eq!(
        (c.min_session_timeout_ms, c.max_session_timeout_ms),
        (100, 10_000)
    );
}

#[test]
fn purge_interval_units() {
    for (v, ms) in [
        ("0", 0u64),
        ("1", 3_600_000),
        ("24", 86_400_000),
        ("90s", 90_000),
        ("500ms", 500),
        ("2H", 7_200_000),
        ("1d", 86_400_000),
        ("-1", 0),
    ] {
        let c = parse_ok(&format!("{BASE}autopurge.purgeInterval={v}\n")).config;
        assert_eq!(c.purge_interval_ms, ms, "{v}");
    }
    let e = parse_err(&format!("{BASE}autopurge.purgeInterval=2w\n"));
    assert!(matches!(e, ConfigError::BadValue { line: 6, .. }), "{e}");
}

#[test]
fn two_participants_warn_no_failure_tolerated() {
    let text = format!("{BASE}server.1=h1:1:2\nserver.2=h2:1:2\n");
    let p = parse_ok(&text);
    assert!(
        p.warnings
            .iter()
            .any(|w| w.message.contains("No server failure"))
    );
    assert!(p.config.is_distributed());
}

#[test]
fn single_server_line_runs_standalone_unless_disabled() {
    let one = format!("{BASE}server.1=h1:1:2\n");
    let c = parse_ok(&one).config;
    assert!(!c.is_distributed());
    assert_eq!(c.resolve_mode(Some(9)).unwrap(), Mode::Standalone);
    let c = parse_ok(&format!("{one}standaloneEnabled=false\n")).config;
    assert!(c.is_distributed());
    assert_eq!(c.resolve_mode(Some(1)).unwrap(), Mode::Quorum { my_id: 1 });
}

// ---- one test per error ----

fn assert_bad_value(text: &str, want_line: usize, want_key: &str) -> String {
    match parse_err(text) {
        ConfigError::BadValue { line, key, .. } if line == want_line && key == want_key => {
            parse_err(text).to_string()
        }
        other => panic!("expected BadValue at line {want_line} for {want_key}, got {other}"),
    }
}

#[test]
fn error_election_alg_other_than_3() {
    let msg = assert_bad_value(&format!("{BASE}electionAlg=1\n"), 6, "electionAlg");
    assert!(msg.contains("Only 3 is supported"), "{msg}");
    assert!(msg.starts_with("line 6: "), "{msg}");
    assert_bad_value(&format!("{BASE}electionAlg=fast\n"), 6, "electionAlg");
}

#[test]
fn election_waits_default_and_bounds() {
    let c = parse_ok(&three_servers()).config;
    assert_eq!(
        (c.election_finalize_wait_ms, c.election_accounted_wait_ms),
        (200, 20)
    );
    let text = format!("{}fastleader.accountedWaitMs=-1\n", three_servers());
    let msg = assert_bad_value(&text, 9, "fastleader.accountedWaitMs");
    assert!(msg.contains("0..=60000"), "{msg}");
    let text = format!("{}fastleader.finalizeWaitMs=60001\n", three_servers());
    assert_bad_value(&text, 9, "fastleader.finalizeWaitMs");
}

#[test]
fn error_not_a_number() {
    let msg = assert_bad_value("tickTime=2000\ninitLimit=ten\ndataDir=/d\n", 2, "initLimit");
    assert!(msg.contains("\"ten\""), "{msg}");
    assert!(msg.ends_with("not a number"), "{msg}");
}

#[test]
fn error_tick_time_zero() {
    let msg = assert_bad_value("tickTime=0\ndataDir=/d\nclientPort=1\n", 1, "tickTime");
    assert!(msg.ends_with("must be greater than 0"), "{msg}");
    let msg = assert_bad_value("tickTime=-5\ndataDir=/d\nclientPort=1\n", 1, "tickTime");
    assert!(msg.ends_with("must be greater than 0"), "{msg}");
    let msg = assert_bad_value(
        "tickTime=99999999999\ndataDir=/d\nclientPort=1\n",
        1,
        "tickTime",
    );
    assert!(msg.contains("out of range"), "{msg}");
}

#[test]
fn error_port_out_of_range() {
    assert_bad_value("dataDir=/d\nclientPort=65536\n", 2, "clientPort");
    assert_bad_value("dataDir=/d\nclientPort=-1\n", 2, "clientPort");
    assert_bad_value(
        "dataDir=/d\nclientPort=1\nadmin.serverPort=70000\n",
        3,
        "admin.serverPort",
    );
    assert_bad_value(&format!("{BASE}server.1=h:0:3888\n"), 6, "server.1");
    assert_bad_value(&format!("{BASE}server.1=h:2888:99999\n"), 6, "server.1");
    assert_bad_value(
        &format!("{BASE}server.1=h:2888:3888;70000\n"),
        6,
        "server.1",
    );
}

#[test]
fn error_bad_boolean() {
    assert_bad_value(&format!("{BASE}forceSync=maybe\n"), 6, "forceSync");
}

#[test]
fn error_malformed_server_lines() {
    for bad in [
        "h:2888",
        "h:2888:3888:voter",
        "h:2888:3888:observer:x",
        ":2888:3888",
        "h:2888:2888",
        "h:2888:3888;a:b:c",
        "h1:2888:3888|h2:2888:3888",
        "h:2888:3888;2181;2281",
        "[::1:2888:3888",
    ] {
        assert_bad_value(&format!("{BASE}server.1={bad}\n"), 6, "server.1");
    }
    assert_bad_value(&format!("{BASE}server.x=h:1:2\n"), 6, "server.x");
    assert_bad_value(&format!("{BASE}server.-1=h:1:2\n"), 6, "server.-1");
    assert_bad_value(&format!("{BASE}peerType=voter\n"), 6, "peerType");
    assert_bad_value(&format!("{BASE}group.1=1:2:3\n"), 6, "group.1");
}

#[test]
fn error_duplicate_server_id() {
    let e = parse_err(&format!(
        "{BASE}server.1=h1:1:2\nserver.2=h2:1:2\nserver.1=h3:1:2\n"
    ));
    assert!(
        matches!(
            e,
            ConfigError::DuplicateServerId {
                id: 1,
                line: 8,
                first_line: 6
            }
        ),
        "{e}"
    );
    let e = parse_err(&format!("{BASE}server.1=h1:1:2\nserver.01=h3:1:2\n"));
    assert!(
        matches!(e, ConfigError::DuplicateServerId { id: 1, line: 7, .. }),
        "{e}"
    );
}

#[test]
fn error_duplicate_address() {
    let e = parse_err(&format!(
        "{BASE}server.1=h1:2888:3888\nserver.2=h1:3888:3999\n"
    ));
    assert!(
        matches!(&e, ConfigError::DuplicateAddress { address, first: 1, second: 2 } if address == "h1:3888"),
        "{e}"
    );
    // Client addresses count too, wildcard hosts do not.
    let e = parse_err(&format!(
        "{BASE}server.1=h1:2888:3888;h2:2181\nserver.2=h2:2181:3888\n"
    ));
    assert!(matches!(e, ConfigError::DuplicateAddress { .. }), "{e}");
    parse_ok(&format!(
        "{BASE}server.1=h1:2888:3888;2181\nserver.2=h2:2888:3888;2181\nserver.3=h3:2888:3888;2181\n"
    ));
}

#[test]
fn error_min_session_timeout_above_max() {
    let e = parse_err(&format!("{BASE}minSessionTimeout=50000\n"));
    assert!(
        matches!(
            e,
            ConfigError::SessionTimeouts {
                min_ms: 50_000,
                max_ms: 40_000
            }
        ),
        "{e}"
    );
    let e = parse_err(&format!(
        "{BASE}minSessionTimeout=5000\nmaxSessionTimeout=4000\n"
    ));
    assert!(matches!(e, ConfigError::SessionTimeouts { .. }), "{e}");
}

#[test]
fn error_no_participants() {
    let e = parse_err(&format!(
        "{BASE}server.1=h1:1:2:observer\nserver.2=h2:1:2:observer\n"
    ));
    assert!(matches!(e, ConfigError::NoParticipants), "{e}");
    let e = parse_err(&format!(
        "{BASE}server.1=h1:1:2\nserver.2=h2:1:2:observer\n"
    ));
    assert!(matches!(e, ConfigError::Invalid(_)), "{e}");
}

#[test]
fn error_standalone_disabled_without_servers() {
    let e = parse_err(&format!("{BASE}standaloneEnabled=false\n"));
    assert!(matches!(e, ConfigError::Invalid(_)), "{e}");
}

#[test]
fn error_missing_data_dir() {
    let e = parse_err("tickTime=2000\nclientPort=2181\n");
    assert_eq!(e.to_string(), "dataDir is not set");
}

#[test]
fn error_missing_init_or_sync_limit_in_quorum() {
    let servers = "server.1=h1:1:2\nserver.2=h2:1:2\nserver.3=h3:1:2\n";
    let e = parse_err(&format!(
        "tickTime=2000\nsyncLimit=5\ndataDir=/d\nclientPort=1\n{servers}"
    ));
    assert_eq!(e.to_string(), "initLimit is not set");
    let e = parse_err(&format!(
        "tickTime=2000\ninitLimit=5\ndataDir=/d\nclientPort=1\n{servers}"
    ));
    assert_eq!(e.to_string(), "syncLimit is not set");
}

#[test]
fn error_client_port_address_without_client_port() {
    let e = parse_err("dataDir=/d\nclientPortAddress=127.0.0.1\n");
    assert!(e.to_string().contains("clientPort is not set"), "{e}");
}

#[test]
fn error_no_client_port_at_all() {
    let c = parse_ok("dataDir=/d\n").config;
    assert!(matches!(
        c.client_address(Mode::Standalone),
        Err(ConfigError::Missing("clientPort"))
    ));
}

#[test]
fn error_bad_super_digest() {
    assert_bad_value(
        &format!("{BASE}DigestAuthenticationProvider.superDigest=nocolon\n"),
        6,
        "DigestAuthenticationProvider.superDigest",
    );
}

#[test]
fn error_extended_types_limit_server_ids() {
    let e = parse_err(&format!(
        "{BASE}extendedTypesEnabled=true\nserver.1=h1:1:2\nserver.255=h2:1:2\nserver.3=h3:1:2\n"
    ));
    assert!(matches!(e, ConfigError::Invalid(_)), "{e}");
}

#[test]
fn error_bad_escape_has_line() {
    let e = parse_err("dataDir=/d\nclientPort=\\u21\n");
    assert!(matches!(e, ConfigError::Syntax { line: 2, .. }), "{e}");
}

#[test]
fn myid_parsing() {
    let p = Path::new("/d/myid");
    assert_eq!(parse_myid("3\n", p).unwrap(), 3);
    assert_eq!(parse_myid(" 12 \r\nignored", p).unwrap(), 12);
    assert!(parse_myid("", p).is_err());
    assert!(parse_myid("-1", p).is_err());
}

#[test]
fn whitelist_star_enables_everything() {
    let (list, unknown) = FourLetterWhitelist::parse(" * ");
    assert!(unknown.is_empty());
    for w in FOUR_LETTER_WORDS {
        assert!(list.is_enabled(w), "{w}");
    }
    let (list, _) = FourLetterWhitelist::parse("");
    assert!(list.is_enabled("srvr") && !list.is_enabled("ruok"));
}

#[test]
fn latin1_config_is_decoded_like_java() {
    assert_eq!(decode(vec![b'a', b'=', 0xe9]), "a=\u{e9}");
    assert_eq!(decode("a=é".as_bytes().to_vec()), "a=é");
}

// ---- hostile input: errors, never panics ----

const KEYS: &[&str] = &[
    "tickTime",
    "initLimit",
    "syncLimit",
    "dataDir",
    "clientPort",
    "clientPortAddress",
    "server.1",
    "server.2",
    "server.x",
    "peerType",
    "electionAlg",
    "fastleader.finalizeWaitMs",
    "fastleader.accountedWaitMs",
    "autopurge.purgeInterval",
    "autopurge.snapRetainCount",
    "minSessionTimeout",
    "maxSessionTimeout",
    "4lw.commands.whitelist",
    "admin.serverPort",
    "jute.maxbuffer",
    "forceSync",
    "DigestAuthenticationProvider.superDigest",
    "standaloneEnabled",
    "metricsProvider.x",
];

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = Config::parse(&text);
    }

    #[test]
    fn arbitrary_values_for_known_keys_never_panic(
        lines in proptest::collection::vec(
            (0..KEYS.len(), "[ -~\\[\\]:;|\\\\é]{0,30}"), 0..12)
    ) {
        let mut text = String::from("dataDir=/d\n");
        for (k, v) in lines {
            text.push_str(KEYS[k]);
            text.push('=');
            text.push_str(&v);
            text.push('\n');
        }
        if let Ok(p) = Config::parse(&text) {
            let c = p.config;
            proptest::prop_assert!(c.min_session_timeout_ms <= c.max_session_timeout_ms);
            proptest::prop_assert!(c.tick_time_ms > 0);
            proptest::prop_assert!(c.snap_retain_count >= 3);
            let _ = c.resolve_mode(Some(1)).and_then(|m| c.client_address(m));
        }
    }
}

/// The `zoo.cfg` that `cargo xtask cluster up` writes (`xtask/src/cluster.rs`,
/// `write_node_config`): one 127.0.0.i address per node.
#[test]
fn xtask_cluster_config_is_accepted() {
    let (nodes, tick) = (5u16, 500);
    for id in 1..=nodes {
        let mut text = format!(
            "tickTime={tick}\ninitLimit=10\nsyncLimit=5\ndataDir=/tmp/c/node{id}/data\n\
             clientPortAddress=127.0.0.{id}\nclientPort={}\nmaxClientCnxns=0\n\
             admin.serverPort={}\nadmin.serverAddress=127.0.0.{id}\n4lw.commands.whitelist=*\n\
             autopurge.snapRetainCount=3\nautopurge.purgeInterval=1\n",
            12181 + id - 1,
            8080 + id
        );
        for peer in 1..=nodes {
            text.push_str(&format!(
                "server.{peer}=127.0.0.{peer}:{}:{}\n",
                12888 + peer - 1,
                13888 + peer - 1
            ));
        }
        let Parsed { config, warnings } = parse_ok(&text);
        assert!(warnings.is_empty(), "{warnings:?}");
        let mode = config.resolve_mode(Some(u64::from(id))).unwrap();
        assert_eq!(
            config.client_address(mode).unwrap(),
            HostPort::new(format!("127.0.0.{id}"), 12181 + id - 1)
        );
        assert_eq!(config.admin.address, format!("127.0.0.{id}"));
        assert_eq!(
            (config.min_session_timeout_ms, config.max_session_timeout_ms),
            (1000, 10_000)
        );
    }
}
