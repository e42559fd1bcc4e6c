//! `zoo.cfg` and `myid`: the server configuration (`QuorumPeerConfig`, `ServerConfig`).
//!
//! [`Config::parse`] reads the Java-properties text of a `zoo.cfg` (no I/O); [`load`] reads
//! the file and `dataDir/myid` and decides between standalone and quorum mode.
//! Unknown or ignored keys come back as [`ConfigWarning`]s for the binary to log; a bad
//! value is a [`ConfigError`] naming the line and the key.
//!
//! ```
//! use zk_server::config::{Config, Mode};
//!
//! let text = "tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir=/var/lib/zk\n\
//!             clientPort=2181\nserver.1=127.0.0.1:2888:3888\nserver.2=127.0.0.1:2889:3889\n\
//!             server.3=127.0.0.1:2890:3890\n";
//! let parsed = Config::parse(text).unwrap();
//! assert!(parsed.warnings.is_empty());
//! let cfg = parsed.config;
//! assert_eq!(cfg.max_session_timeout_ms, 40_000);
//! assert_eq!(cfg.resolve_mode(Some(2)).unwrap(), Mode::Quorum { my_id: 2 });
//! assert_eq!(cfg.resolve_mode(Some(7)).unwrap_err().to_string(), "My id 7 not in the peer list");
//! ```

mod properties;

pub use properties::Entry;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use properties::java_trim;

/// The default `tickTime` when the file has none (`ZooKeeperServer.DEFAULT_TICK_TIME`).
pub const DEFAULT_TICK_TIME_MS: u32 = 3000;
/// The default `jute.maxbuffer`.
pub const DEFAULT_JUTE_MAX_BUFFER: u32 = 0xfffff;
/// The default `snapCount`.
pub const DEFAULT_SNAP_COUNT: u64 = 100_000;
/// The smallest `autopurge.snapRetainCount` ZooKeeper honours (smaller values become 3).
pub const MIN_SNAP_RETAIN_COUNT: u32 = 3;
/// The largest server id allowed with `extendedTypesEnabled` (`EphemeralType.MAX_EXTENDED_SERVER_ID`).
pub const MAX_EXTENDED_SERVER_ID: u64 = 254;
/// Every four-letter word ZooKeeper 3.8 knows (`FourLetterCommands`).
pub const FOUR_LETTER_WORDS: &[&str] = &[
    "conf", "cons", "crst", "dirs", "dump", "envi", "gtmk", "ruok", "stmk", "srst", "srvr", "stat",
    "wchc", "wchp", "wchs", "mntr", "isro", "hash",
];

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file or `myid` could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line of the file is not valid properties syntax.
    #[error("line {line}: {reason}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A known key has a value that cannot be used.
    #[error("line {line}: invalid value {value:?} for {key}: {reason}")]
    BadValue {
        /// 1-based line number.
        line: usize,
        /// The key.
        key: String,
        /// The value as written (trimmed).
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// Two `server.N` lines name the same id.
    #[error("line {line}: duplicate server id {id} (first defined on line {first_line})")]
    DuplicateServerId {
        /// The repeated id.
        id: u64,
        /// The line of the repetition.
        line: usize,
        /// The line of the first definition.
        first_line: usize,
    },
    /// Two servers (or two ports of one server) share an address.
    #[error("address {address} is used by both server.{first} and server.{second}")]
    DuplicateAddress {
        /// The shared `host:port`.
        address: String,
        /// One server id.
        first: u64,
        /// The other server id (may equal `first` for a server listing an address twice).
        second: u64,
    },
    /// A required key is missing.
    #[error("{0} is not set")]
    Missing(&'static str),
    /// `minSessionTimeout > maxSessionTimeout`.
    #[error(
        "minSessionTimeout ({min_ms} ms) must not be larger than maxSessionTimeout ({max_ms} ms)"
    )]
    SessionTimeouts {
        /// Effective minimum.
        min_ms: u32,
        /// Effective maximum.
        max_ms: u32,
    },
    /// Observers are listed but no participant.
    #[error("Observers w/o participants is an invalid configuration")]
    NoParticipants,
    /// Quorum mode but `dataDir/myid` does not exist.
    #[error("myid file is missing: {0}")]
    MyIdMissing(PathBuf),
    /// `myid` does not hold a server id.
    #[error("serverid {content:?} in {path} is not a number")]
    MyIdInvalid {
        /// The file.
        path: PathBuf,
        /// Its first line.
        content: String,
    },
    /// `myid` names a server that is not in the `server.N` list.
    #[error("My id {0} not in the peer list")]
    NotInPeerList(u64),
    /// Any other inconsistency between keys.
    #[error("{0}")]
    Invalid(String),
}

/// Something in the file that does not stop the server but that the operator should see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// 1-based line number, if the warning is about one line.
    pub line: Option<usize>,
    /// The key concerned.
    pub key: String,
    /// What the server does about it.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}: {}", self.key, self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

/// A host (name or IP literal, without brackets) and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPort {
    /// Host name or IP address as written (IPv6 without `[]`).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl HostPort {
    /// Builds one.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        HostPort {
            host: host.into(),
            port,
        }
    }

    /// True for the wildcard addresses (`0.0.0.0`, `::`), which ZooKeeper leaves out of
    /// duplicate checks.
    pub fn is_wildcard(&self) -> bool {
        self.host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified())
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Whether a server votes (`LearnerType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LearnerType {
    /// Votes in elections and acks proposals.
    #[default]
    Participant,
    /// Follows the leader without voting.
    Observer,
}

impl LearnerType {
    fn parse(s: &str) -> Option<LearnerType> {
        match java_trim(s).to_ascii_lowercase().as_str() {
            "participant" => Some(LearnerType::Participant),
            "observer" => Some(LearnerType::Observer),
            _ => None,
        }
    }
}

/// One `server.N=host:quorumPort:electionPort[:type][;[clientHost:]clientPort]` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumServer {
    /// The server id `N`.
    pub id: u64,
    /// Where the leader listens for followers (Zab).
    pub quorum: HostPort,
    /// Where leader election listens.
    pub election: HostPort,
    /// Participant or observer.
    pub learner_type: LearnerType,
    /// The client address given after `;`, if any (host `0.0.0.0` when only a port).
    pub client: Option<HostPort>,
    /// Line of the definition.
    pub line: usize,
}

impl fmt::Display for QuorumServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ty = match self.learner_type {
            LearnerType::Participant => "participant",
            LearnerType::Observer => "observer",
        };
        write!(f, "{}:{}:{ty}", self.quorum, self.election.port)?;
        if let Some(c) = &self.client {
            write!(f, ";{c}")?;
        }
        Ok(())
    }
}

/// The four-letter words enabled by `4lw.commands.whitelist`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FourLetterWhitelist {
    words: BTreeSet<String>,
}

impl Default for FourLetterWhitelist {
    fn default() -> Self {
        FourLetterWhitelist {
            words: ["srvr".to_string()].into(),
        }
    }
}

impl FourLetterWhitelist {
    /// Parses a whitelist value (`*`, or words separated by commas and/or spaces); `srvr`
    /// is always enabled, as in ZooKeeper. Returns the unknown words separately.
    pub fn parse(value: &str) -> (FourLetterWhitelist, Vec<String>) {
        let mut list = FourLetterWhitelist::default();
        let mut unknown = Vec::new();
        for word in value
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|w| !w.is_empty())
        {
            if word == "*" {
                list.words
                    .extend(FOUR_LETTER_WORDS.iter().map(|w| w.to_string()));
            } else if FOUR_LETTER_WORDS.contains(&word) {
                list.words.insert(word.to_string());
            } else {
                unknown.push(word.to_string());
            }
        }
        (list, unknown)
    }

    /// True if `word` may run.
    pub fn is_enabled(&self, word: &str) -> bool {
        self.words.contains(word)
    }

    /// The enabled words, sorted.
    pub fn words(&self) -> impl Iterator<Item = &str> {
        self.words.iter().map(String::as_str)
    }
}

/// The HTTP admin server settings (`admin.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminServerConfig {
    /// `admin.enableServer` (default true).
    pub enabled: bool,
    /// `admin.serverAddress` (default `0.0.0.0`).
    pub address: String,
    /// `admin.serverPort` (default 8080; 0 picks a free port).
    pub port: u16,
}

impl Default for AdminServerConfig {
    fn default() -> Self {
        AdminServerConfig {
            enabled: true,
            address: "0.0.0.0".to_string(),
            port: 8080,
        }
    }
}

/// The parsed contents of a `zoo.cfg`. Field names follow the keys; units are in the names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `tickTime`.
    pub tick_time_ms: u32,
    /// `initLimit`, in ticks.
    pub init_limit: u32,
    /// `syncLimit`, in ticks.
    pub sync_limit: u32,
    /// `dataDir` (snapshots, `myid`, epochs).
    pub data_dir: PathBuf,
    /// `dataLogDir` (txn log); `dataDir` when unset.
    pub data_log_dir: PathBuf,
    /// `clientPort`.
    pub client_port: Option<u16>,
    /// `clientPortAddress`.
    pub client_port_address: Option<String>,
    /// `secureClientPort` (not supported: kept only to report it).
    pub secure_client_port: Option<u16>,
    /// The `server.N` lines, by id.
    pub servers: BTreeMap<u64, QuorumServer>,
    /// `peerType` (the server list wins when they disagree).
    pub peer_type: LearnerType,
    /// `electionAlg` (always 3).
    pub election_alg: u32,
    /// `fastleader.finalizeWaitMs`: how long a quorum agreeing on a vote waits for a
    /// better one before deciding (ZooKeeper's `finalizeWait`, default 200 ms).
    pub election_finalize_wait_ms: u64,
    /// `fastleader.accountedWaitMs`: the finalize wait once every voter has either voted
    /// the same or dropped its connection (a crashed leader), default 20 ms; a value of
    /// at least `fastleader.finalizeWaitMs` is ZooKeeper's timing. A quorum must agree
    /// either way: this only shortens the failover after a crash.
    pub election_accounted_wait_ms: u64,
    /// `snapCount`.
    pub snap_count: u64,
    /// `autopurge.snapRetainCount` (at least 3).
    pub snap_retain_count: u32,
    /// `autopurge.purgeInterval` in ms; 0 = autopurge off.
    pub purge_interval_ms: u64,
    /// `maxClientCnxns` per client IP; 0 = unlimited.
    pub max_client_cnxns: u32,
    /// `minSessionTimeout` (default 2 × tickTime).
    pub min_session_timeout_ms: u32,
    /// `maxSessionTimeout` (default 20 × tickTime).
    pub max_session_timeout_ms: u32,
    /// `4lw.commands.whitelist`.
    pub four_letter_words: FourLetterWhitelist,
    /// `admin.*`.
    pub admin: AdminServerConfig,
    /// `jute.maxbuffer`: largest accepted packet / znode data, bytes.
    pub jute_max_buffer: u32,
    /// `extendedTypesEnabled` (TTL nodes).
    pub extended_types_enabled: bool,
    /// `znode.container.checkIntervalMs`.
    pub container_check_interval_ms: u64,
    /// `znode.container.maxPerMinute`.
    pub container_max_per_minute: u32,
    /// `forceSync` (fsync the txn log; default yes).
    pub force_sync: bool,
    /// `standaloneEnabled` (default true: one participant runs standalone).
    pub standalone_enabled: bool,
    /// `reconfigEnabled` (default false).
    pub reconfig_enabled: bool,
    /// `skipACL` (default no).
    pub skip_acl: bool,
    /// `globalOutstandingLimit`.
    pub global_outstanding_limit: u32,
    /// `preAllocSize`, KiB.
    pub pre_alloc_size_kb: u64,
    /// `syncEnabled` (observers log to disk; default true).
    pub sync_enabled: bool,
    /// `quorumListenOnAllIPs`.
    pub quorum_listen_on_all_ips: bool,
    /// `leaderServes` (default yes).
    pub leader_serves: bool,
    /// `DigestAuthenticationProvider.superDigest` (`super:<base64 sha1>`), if set.
    pub super_digest: Option<String>,
    /// `metricsProvider.*` entries (accepted, ignored).
    pub metrics_provider: BTreeMap<String, String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tick_time_ms: DEFAULT_TICK_TIME_MS,
            init_limit: 0,
            sync_limit: 0,
            data_dir: PathBuf::new(),
            data_log_dir: PathBuf::new(),
            client_port: None,
            client_port_address: None,
            secure_client_port: None,
            servers: BTreeMap::new(),
            peer_type: LearnerType::Participant,
            election_alg: 3,
            election_finalize_wait_ms: zk_election::core::DEFAULT_FINALIZE_WAIT_MS,
            election_accounted_wait_ms: zk_election::core::DEFAULT_ACCOUNTED_WAIT_MS,
            snap_count: DEFAULT_SNAP_COUNT,
            snap_retain_count: MIN_SNAP_RETAIN_COUNT,
            purge_interval_ms: 0,
            max_client_cnxns: 60,
            min_session_timeout_ms: 2 * DEFAULT_TICK_TIME_MS,
            max_session_timeout_ms: 20 * DEFAULT_TICK_TIME_MS,
            four_letter_words: FourLetterWhitelist::default(),
            admin: AdminServerConfig::default(),
            jute_max_buffer: DEFAULT_JUTE_MAX_BUFFER,
            extended_types_enabled: false,
            container_check_interval_ms: 60_000,
            container_max_per_minute: 10_000,
            force_sync: true,
            standalone_enabled: true,
            reconfig_enabled: false,
            skip_acl: false,
            global_outstanding_limit: 1000,
            pre_alloc_size_kb: 65_536,
            sync_enabled: true,
            quorum_listen_on_all_ips: false,
            leader_serves: true,
            super_digest: None,
            metrics_provider: BTreeMap::new(),
        }
    }
}

/// [`Config::parse`]'s result: the config and what to warn about.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The configuration.
    pub config: Config,
    /// Unknown keys, ignored keys, adjusted values.
    pub warnings: Vec<ConfigWarning>,
}

/// How this node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A single server, no election.
    Standalone,
    /// A member of an ensemble.
    Quorum {
        /// This server's id (from `myid`).
        my_id: u64,
    },
}

/// [`load`]'s result: the config, the mode and every warning.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The configuration.
    pub config: Config,
    /// Standalone or quorum member.
    pub mode: Mode,
    /// The id in `myid`, when the file exists (also in standalone mode).
    pub my_id: Option<u64>,
    /// The effective client address (`server.N`'s client part wins over `clientPort`).
    pub client_address: HostPort,
    /// Everything to log.
    pub warnings: Vec<ConfigWarning>,
}

/// Reads `zoo.cfg` at `path` and `dataDir/myid`, and validates the whole.
pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let text = decode(bytes);
    let Parsed {
        config,
        mut warnings,
    } = Config::parse(&text)?;
    let myid_path = config.data_dir.join("myid");
    let my_id = match std::fs::read(&myid_path) {
        Ok(b) => Some(parse_myid(&decode(b), &myid_path)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(ConfigError::Io {
                path: myid_path,
                source,
            });
        }
    };
    if config.is_distributed() && my_id.is_none() {
        return Err(ConfigError::MyIdMissing(myid_path));
    }
    if config.data_dir.is_relative() {
        warnings.push(ConfigWarning {
            line: None,
            key: "dataDir".into(),
            message: format!(
                "{} is relative; it is resolved against the working directory",
                config.data_dir.display()
            ),
        });
    }
    let mode = config.resolve_mode(my_id)?;
    let client_address = config.client_address(mode)?;
    if let Mode::Quorum { my_id } = mode
        && let Some(me) = config.servers.get(&my_id)
        && me.learner_type != config.peer_type
    {
        warnings.push(ConfigWarning {
            line: None,
            key: "peerType".into(),
            message: format!(
                "peerType {:?} does not match the server list ({:?}); using the server list",
                config.peer_type, me.learner_type
            ),
        });
    }
    Ok(LoadedConfig {
        config,
        mode,
        my_id,
        client_address,
        warnings,
    })
}

/// UTF-8 if valid, else ISO-8859-1 (what `Properties.load(InputStream)` uses).
fn decode(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => e.into_bytes().into_iter().map(char::from).collect(),
    }
}

/// Parses the content of a `myid` file (its first line, a decimal id).
pub fn parse_myid(content: &str, path: &Path) -> Result<u64, ConfigError> {
    let first = content.lines().next().unwrap_or("");
    java_trim(first)
        .parse::<u64>()
        .map_err(|_| ConfigError::MyIdInvalid {
            path: path.to_path_buf(),
            content: first.to_string(),
        })
}

/// Splits `host:port:...` with an optional `[ipv6]` host (`ConfigUtils.getHostAndPort`).
fn host_and_ports(s: &str) -> Option<Vec<String>> {
    if let Some(rest) = s.strip_prefix('[') {
        let close = rest.find(']')?;
        let host = &rest[..close];
        let after = &rest[close + 1..];
        let mut parts = vec![host.to_string()];
        if !after.is_empty() {
            let after = after.strip_prefix(':')?;
            parts.extend(after.split(':').map(str::to_string));
        }
        Some(parts)
    } else {
        Some(s.split(':').map(str::to_string).collect())
    }
}

struct Ctx<'a> {
    entry: &'a Entry,
}

impl Ctx<'_> {
    fn bad(&self, reason: impl Into<String>) -> ConfigError {
        ConfigError::BadValue {
            line: self.entry.line,
            key: self.entry.key.clone(),
            value: self.entry.value.clone(),
            reason: reason.into(),
        }
    }

    fn num<T: std::str::FromStr>(&self) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        let v = self
            .entry
            .value
            .strip_prefix('+')
            .unwrap_or(&self.entry.value);
        v.parse::<T>().map_err(|e| match v.parse::<i128>() {
            Ok(_) => self.bad(format!("out of range ({e})")),
            Err(_) => self.bad("not a number"),
        })
    }

    fn positive_u32(&self) -> Result<u32, ConfigError> {
        let v: i64 = self.num()?;
        if v <= 0 {
            return Err(self.bad("must be greater than 0"));
        }
        u32::try_from(v).map_err(|_| self.bad("out of range (at most 4294967295)"))
    }

    fn port(&self) -> Result<u16, ConfigError> {
        self.num::<u16>()
            .map_err(|_| self.bad("not a port number (0-65535)"))
    }

    /// `true/false/yes/no`, case-insensitive.
    fn boolean(&self) -> Result<bool, ConfigError> {
        match self.entry.value.to_ascii_lowercase().as_str() {
            "true" | "yes" => Ok(true),
            "false" | "no" => Ok(false),
            _ => Err(self.bad("expected true/false or yes/no")),
        }
    }
}

/// An election wait in ms: 0 to 60 s.
fn wait_ms(ctx: &Ctx<'_>) -> Result<u64, ConfigError> {
    let v: i64 = ctx.num()?;
    if !(0..=60_000).contains(&v) {
        return Err(ctx.bad("must be in 0..=60000 (ms)"));
    }
    Ok(v.unsigned_abs())
}

/// `autopurge.purgeInterval`: digits are hours; else `Time.parseTimeInterval` units.
fn purge_interval_ms(ctx: &Ctx<'_>) -> Result<u64, ConfigError> {
    let v = ctx.entry.value.as_str();
    let bad = || ctx.bad("expected hours, or a number with ms/s/m/h/d");
    let (num, unit_ms): (&str, u64) = if v.ends_with(|c: char| c.is_ascii_digit()) {
        (v, 3_600_000)
    } else if let Some(n) = v.strip_suffix("ms").or_else(|| v.strip_suffix("MS")) {
        (n, 1)
    } else {
        let mut chars = v.chars();
        let unit = chars.next_back().ok_or_else(bad)?;
        let unit_ms = match unit.to_ascii_uppercase() {
            'S' => 1000,
            'M' => 60_000,
            'H' => 3_600_000,
            'D' => 86_400_000,
            _ => return Err(bad()),
        };
        (chars.as_str(), unit_ms)
    };
    let n: i64 = num.parse().map_err(|_| bad())?;
    // Negative values disable the purge task in ZooKeeper (`purgeInterval <= 0`).
    Ok(u64::try_from(n).unwrap_or(0).saturating_mul(unit_ms))
}

fn parse_server(id: u64, line: usize, ctx: &Ctx<'_>) -> Result<QuorumServer, ConfigError> {
    let value = ctx.entry.value.as_str();
    let wrong = || {
        ctx.bad(
            "expected host:quorumPort:electionPort[:participant|:observer][;[clientHost:]clientPort]",
        )
    };
    let mut parts = value.split(';');
    let server_part = parts.next().unwrap_or("");
    let client_part = parts.next();
    if parts.next().is_some_and(|s| !s.is_empty()) {
        return Err(ctx.bad("secure client addresses in server lines are not supported"));
    }
    if server_part.contains('|') {
        return Err(ctx.bad("multiple addresses per server are not supported"));
    }
    let sp = host_and_ports(server_part).ok_or_else(wrong)?;
    if sp.len() < 3 || sp.len() > 4 {
        return Err(wrong());
    }
    let host = java_trim(&sp[0]).to_string();
    if host.is_empty() {
        return Err(ctx.bad("missing host"));
    }
    let port = |s: &str| -> Result<u16, ConfigError> {
        match java_trim(s).parse::<u16>() {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(ctx.bad(format!("port {s:?} is not in 1-65535"))),
        }
    };
    let quorum_port = port(&sp[1])?;
    let election_port = port(&sp[2])?;
    if quorum_port == election_port {
        return Err(ctx.bad("quorum and election ports must be different"));
    }
    let learner_type = match sp.get(3) {
        Some(t) => {
            LearnerType::parse(t).ok_or_else(|| ctx.bad(format!("unrecognised peer type {t:?}")))?
        }
        None => LearnerType::Participant,
    };
    let client = match client_part.map(java_trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(c) => {
            let cp = host_and_ports(c).ok_or_else(wrong)?;
            let (chost, cport) = match cp.as_slice() {
                [p] => ("0.0.0.0".to_string(), p),
                [h, p] => (java_trim(h).to_string(), p),
                _ => return Err(wrong()),
            };
            let cport = java_trim(cport)
                .parse::<u16>()
                .map_err(|_| ctx.bad(format!("client port {cport:?} is not in 0-65535")))?;
            Some(HostPort::new(chost, cport))
        }
    };
    Ok(QuorumServer {
        id,
        quorum: HostPort::new(host.clone(), quorum_port),
        election: HostPort::new(host, election_port),
        learner_type,
        client,
        line,
    })
}

impl Config {
    /// Parses `zoo.cfg` text and checks it (everything except `myid`).
    pub fn parse(text: &str) -> Result<Parsed, ConfigError> {
        let entries = properties::parse(text)?;
        let mut c = Config::default();
        let mut warnings = Vec::new();
        let mut warn = |line: usize, key: &str, message: String| {
            warnings.push(ConfigWarning {
                line: Some(line),
                key: key.to_string(),
                message,
            })
        };
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut tick: Option<u32> = None;
        let mut data_dir: Option<PathBuf> = None;
        let mut data_log_dir: Option<PathBuf> = None;
        let mut min_to: Option<u32> = None;
        let mut max_to: Option<u32> = None;
        let mut retain: Option<(usize, i64)> = None;

        for entry in &entries {
            let key = entry.key.as_str();
            let ctx = Ctx { entry };
            if let Some(prev) = seen.insert(key.to_string(), entry.line) {
                if let Some(id) = key.strip_prefix("server.") {
                    let id = id.parse::<u64>().unwrap_or(0);
                    return Err(ConfigError::DuplicateServerId {
                        id,
                        line: entry.line,
                        first_line: prev,
                    });
                }
                warn(
                    entry.line,
                    key,
                    format!("also set on line {prev}; the last value wins"),
                );
            }
            match key {
                "tickTime" => tick = Some(ctx.positive_u32()?),
                "initLimit" => c.init_limit = ctx.num()?,
                "syncLimit" => c.sync_limit = ctx.num()?,
                "dataDir" | "dataLogDir" => {
                    if entry.value.is_empty() {
                        return Err(ctx.bad("empty path"));
                    }
                    let p = Some(PathBuf::from(&entry.value));
                    if key == "dataDir" {
                        data_dir = p;
                    } else {
                        data_log_dir = p;
                    }
                }
                "clientPort" => c.client_port = Some(ctx.port()?),
                "clientPortAddress" => {
                    if entry.value.is_empty() {
                        return Err(ctx.bad("empty address"));
                    }
                    let v = entry.value.trim_start_matches('[').trim_end_matches(']');
                    c.client_port_address = Some(v.to_string());
                }
                "secureClientPort" => {
                    c.secure_client_port = Some(ctx.port()?);
                    warn(
                        entry.line,
                        key,
                        "TLS client connections are not supported; ignored".into(),
                    );
                }
                "peerType" => {
                    c.peer_type = LearnerType::parse(&entry.value)
                        .ok_or_else(|| ctx.bad("expected participant or observer"))?;
                }
                "electionAlg" => {
                    let v: i64 = ctx.num()?;
                    if v != 3 {
                        return Err(ctx.bad("Invalid electionAlg value. Only 3 is supported."));
                    }
                    c.election_alg = 3;
                }
                "fastleader.finalizeWaitMs" => c.election_finalize_wait_ms = wait_ms(&ctx)?,
                "fastleader.accountedWaitMs" => c.election_accounted_wait_ms = wait_ms(&ctx)?,
                "snapCount" => {
                    let v: u64 = ctx.num()?;
                    if v < 2 {
                        warn(entry.line, key, format!("{v} is below 2; using 2"));
                    }
                    c.snap_count = v.max(2);
                }
                "autopurge.snapRetainCount" => retain = Some((entry.line, ctx.num()?)),
                "autopurge.purgeInterval" => c.purge_interval_ms = purge_interval_ms(&ctx)?,
                "maxClientCnxns" => c.max_client_cnxns = ctx.num()?,
                "minSessionTimeout" => min_to = Some(ctx.positive_u32()?),
                "maxSessionTimeout" => max_to = Some(ctx.positive_u32()?),
                "4lw.commands.whitelist" => {
                    let (list, unknown) = FourLetterWhitelist::parse(&entry.value);
                    for w in unknown {
                        warn(
                            entry.line,
                            key,
                            format!("unknown four-letter word {w:?}; ignored"),
                        );
                    }
                    c.four_letter_words = list;
                }
                "admin.serverPort" => c.admin.port = ctx.port()?,
                "admin.serverAddress" => {
                    if entry.value.is_empty() {
                        return Err(ctx.bad("empty address"));
                    }
                    c.admin.address = entry.value.clone();
                }
                "admin.enableServer" => c.admin.enabled = ctx.boolean()?,
                "jute.maxbuffer" => {
                    let v: u32 = ctx.num()?;
                    if v == 0 || v > i32::MAX as u32 {
                        return Err(ctx.bad("must be in 1..=2147483647"));
                    }
                    c.jute_max_buffer = v;
                }
                "extendedTypesEnabled" => c.extended_types_enabled = ctx.boolean()?,
                "znode.container.checkIntervalMs" => {
                    c.container_check_interval_ms = u64::from(ctx.positive_u32()?)
                }
                "znode.container.maxPerMinute" => c.container_max_per_minute = ctx.positive_u32()?,
                "forceSync" => c.force_sync = ctx.boolean()?,
                "standaloneEnabled" => c.standalone_enabled = ctx.boolean()?,
                "reconfigEnabled" => c.reconfig_enabled = ctx.boolean()?,
                "skipACL" => c.skip_acl = ctx.boolean()?,
                "globalOutstandingLimit" => c.global_outstanding_limit = ctx.positive_u32()?,
                "preAllocSize" => c.pre_alloc_size_kb = ctx.num()?,
                "syncEnabled" => c.sync_enabled = ctx.boolean()?,
                "quorumListenOnAllIPs" => c.quorum_listen_on_all_ips = ctx.boolean()?,
                "leaderServes" => c.leader_serves = ctx.boolean()?,
                "DigestAuthenticationProvider.superDigest" => {
                    let v = &entry.value;
                    if v.split(':').count() != 2 {
                        return Err(ctx.bad("expected super:<base64 sha1 digest>"));
                    }
                    c.super_digest = Some(v.clone());
                }
                "dynamicConfigFile" => warn(
                    entry.line,
                    key,
                    "dynamic configuration files are not supported; ignored (put server.N lines in this file)"
                        .into(),
                ),
                _ if key.starts_with("metricsProvider.") => {
                    c.metrics_provider
                        .insert(key["metricsProvider.".len()..].to_string(), entry.value.clone());
                    warn(
                        entry.line,
                        key,
                        "metrics providers are not pluggable here (the admin server serves /metrics); ignored".into(),
                    );
                }
                _ if key.starts_with("server.") => {
                    let id_text = &key["server.".len()..];
                    let id: u64 = id_text.parse().map_err(|_| ConfigError::BadValue {
                        line: entry.line,
                        key: key.to_string(),
                        value: entry.value.clone(),
                        reason: format!("server id {id_text:?} is not a non-negative number"),
                    })?;
                    if let Some(first) = c.servers.get(&id) {
                        return Err(ConfigError::DuplicateServerId {
                            id,
                            line: entry.line,
                            first_line: first.line,
                        });
                    }
                    let s = parse_server(id, entry.line, &ctx)?;
                    c.servers.insert(id, s);
                }
                _ if key.starts_with("group.") || key.starts_with("weight.") => {
                    return Err(ConfigError::BadValue {
                        line: entry.line,
                        key: key.to_string(),
                        value: entry.value.clone(),
                        reason: "hierarchical quorums are not supported".into(),
                    });
                }
                _ => warn(entry.line, key, "unknown key; ignored".into()),
            }
        }

        c.tick_time_ms = tick.unwrap_or(DEFAULT_TICK_TIME_MS);
        if tick.is_none() {
            warnings.push(ConfigWarning {
                line: None,
                key: "tickTime".into(),
                message: format!("not set; using {DEFAULT_TICK_TIME_MS} ms"),
            });
        }
        c.data_dir = data_dir.ok_or(ConfigError::Missing("dataDir"))?;
        c.data_log_dir = data_log_dir.unwrap_or_else(|| c.data_dir.clone());
        if let Some((line, r)) = retain {
            if r < i64::from(MIN_SNAP_RETAIN_COUNT) {
                warnings.push(ConfigWarning {
                    line: Some(line),
                    key: "autopurge.snapRetainCount".into(),
                    message: format!("{r} is below the minimum; using {MIN_SNAP_RETAIN_COUNT}"),
                });
                c.snap_retain_count = MIN_SNAP_RETAIN_COUNT;
            } else {
                c.snap_retain_count = u32::try_from(r).unwrap_or(u32::MAX);
            }
        }
        c.min_session_timeout_ms = min_to.unwrap_or(c.tick_time_ms.saturating_mul(2));
        c.max_session_timeout_ms = max_to.unwrap_or(c.tick_time_ms.saturating_mul(20));
        if c.min_session_timeout_ms > c.max_session_timeout_ms {
            return Err(ConfigError::SessionTimeouts {
                min_ms: c.min_session_timeout_ms,
                max_ms: c.max_session_timeout_ms,
            });
        }
        if c.client_port_address.is_some() && c.client_port.is_none() {
            return Err(ConfigError::Invalid(
                "clientPortAddress is set but clientPort is not set".into(),
            ));
        }
        c.check_servers(&mut warnings)?;
        Ok(Parsed {
            config: c,
            warnings,
        })
    }

    /// Checks the server list: participants, duplicate addresses, id ranges, limits.
    fn check_servers(&self, warnings: &mut Vec<ConfigWarning>) -> Result<(), ConfigError> {
        let participants = self.participants().count();
        let observers = self.servers.len() - participants;
        if participants == 0 {
            if observers > 0 {
                return Err(ConfigError::NoParticipants);
            }
            if !self.standalone_enabled {
                return Err(ConfigError::Invalid(
                    "standaloneEnabled = false then number of participants should be >0".into(),
                ));
            }
        } else if participants == 1 && self.standalone_enabled {
            if observers > 0 {
                return Err(ConfigError::Invalid(
                    "Observers w/o quorum is an invalid configuration".into(),
                ));
            }
            warnings.push(ConfigWarning {
                line: None,
                key: "server".into(),
                message: "only one server specified; running standalone".into(),
            });
        } else if participants == 2 {
            warnings.push(ConfigWarning {
                line: None,
                key: "server".into(),
                message: "No server failure will be tolerated. You need at least 3 servers.".into(),
            });
        } else if participants.is_multiple_of(2) {
            warnings.push(ConfigWarning {
                line: None,
                key: "server".into(),
                message: "Non-optimal configuration, consider an odd number of servers.".into(),
            });
        }
        let mut used: BTreeMap<&HostPort, u64> = BTreeMap::new();
        for s in self.servers.values() {
            let addrs = [Some(&s.quorum), Some(&s.election), s.client.as_ref()];
            for a in addrs.into_iter().flatten().filter(|a| !a.is_wildcard()) {
                if let Some(&other) = used.get(a) {
                    return Err(ConfigError::DuplicateAddress {
                        address: a.to_string(),
                        first: other,
                        second: s.id,
                    });
                }
                used.insert(a, s.id);
            }
            if self.extended_types_enabled && s.id > MAX_EXTENDED_SERVER_ID {
                return Err(ConfigError::Invalid(format!(
                    "server.{}: with extendedTypesEnabled the server id must be at most {MAX_EXTENDED_SERVER_ID}",
                    s.id
                )));
            }
            if s.id > 255 {
                warnings.push(ConfigWarning {
                    line: Some(s.line),
                    key: format!("server.{}", s.id),
                    message: "ids above 255 share session id prefixes with other servers".into(),
                });
            }
        }
        if self.is_distributed() {
            if self.init_limit == 0 {
                return Err(ConfigError::Missing("initLimit"));
            }
            if self.sync_limit == 0 {
                return Err(ConfigError::Missing("syncLimit"));
            }
        }
        Ok(())
    }

    /// The voting members.
    pub fn participants(&self) -> impl Iterator<Item = &QuorumServer> {
        self.servers
            .values()
            .filter(|s| s.learner_type == LearnerType::Participant)
    }

    /// True when this config runs an ensemble (`QuorumPeerConfig.isDistributed`): more
    /// than one participant, or any participant with `standaloneEnabled=false`.
    pub fn is_distributed(&self) -> bool {
        let n = self.participants().count();
        n > 1 || (n > 0 && !self.standalone_enabled)
    }

    /// Decides the mode from the id read from `myid` (None when the file is absent).
    pub fn resolve_mode(&self, my_id: Option<u64>) -> Result<Mode, ConfigError> {
        if !self.is_distributed() {
            return Ok(Mode::Standalone);
        }
        let my_id = my_id.ok_or_else(|| ConfigError::MyIdMissing(self.data_dir.join("myid")))?;
        if !self.servers.contains_key(&my_id) {
            return Err(ConfigError::NotInPeerList(my_id));
        }
        if self.extended_types_enabled && my_id > MAX_EXTENDED_SERVER_ID {
            return Err(ConfigError::Invalid(format!(
                "with extendedTypesEnabled the server id must be at most {MAX_EXTENDED_SERVER_ID}, not {my_id}"
            )));
        }
        Ok(Mode::Quorum { my_id })
    }

    /// The address the client port binds: the client part of this server's `server.N`
    /// line if present (it must agree with `clientPort`/`clientPortAddress` when both are
    /// given), else `clientPortAddress:clientPort` (host `0.0.0.0` by default).
    pub fn client_address(&self, mode: Mode) -> Result<HostPort, ConfigError> {
        let from_static = self.client_port.map(|port| {
            HostPort::new(
                self.client_port_address
                    .clone()
                    .unwrap_or_else(|| "0.0.0.0".into()),
                port,
            )
        });
        let from_line = match mode {
            Mode::Quorum { my_id } => self.servers.get(&my_id).and_then(|s| s.client.clone()),
            Mode::Standalone => None,
        };
        match (from_static, from_line) {
            (Some(st), Some(line)) => {
                let same = if st.is_wildcard() {
                    st.port == line.port
                } else {
                    st == line
                };
                if !same {
                    return Err(ConfigError::Invalid(format!(
                        "client address for this server in clientPort/clientPortAddress is {st}, \
                         different from the server line's {line}"
                    )));
                }
                Ok(line)
            }
            (None, Some(line)) => Ok(line),
            (Some(st), None) => Ok(st),
            (None, None) => Err(ConfigError::Missing("clientPort")),
        }
    }
}

#[cfg(test)]
mod tests;
