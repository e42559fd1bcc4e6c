//! `zk-cli [-server host:port,...] CMD ARGS`: one ZooKeeper command per run, with output
//! like Apache ZooKeeper's `zkCli.sh` (Stat as `cZxid = 0x…` lines, ACLs as
//! `'world,'anyone` / `: cdrwa`). Errors name the ZooKeeper error and exit with status 1.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use futures::future::join_all;
use zk_proto::data::{Acl, CreateMode, ErrorCode, EventType, KeeperState, Stat, perms};
use zk_server::client::{Client, Error as ZkError, SessionState, WatchedEvent};

#[derive(Parser)]
#[command(
    name = "zk-cli",
    version,
    about = "A ZooKeeper command-line client (one command per run)",
    after_help = "As in zkCli.sh, `-server` and `-timeout` may be written with one dash."
)]
struct Cli {
    /// Servers to connect to: host:port[,host:port...]
    #[arg(long, default_value = "127.0.0.1:2181")]
    server: String,
    /// Session timeout in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    timeout: u64,
    /// Give up connecting after this many milliseconds.
    #[arg(long, default_value_t = 10_000)]
    connect_timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the children of a znode.
    Ls {
        /// Print the znode's stat too.
        #[arg(short = 's')]
        stat: bool,
        /// Leave a child watch and wait for its event.
        #[arg(short = 'w')]
        watch: bool,
        /// List every descendant, one path per line.
        #[arg(short = 'R')]
        recursive: bool,
        /// The znode.
        path: String,
    },
    /// Print a znode's data.
    Get {
        /// Print the znode's stat too.
        #[arg(short = 's')]
        stat: bool,
        /// Leave a data watch and wait for its event.
        #[arg(short = 'w')]
        watch: bool,
        /// The znode.
        path: String,
    },
    /// Set a znode's data.
    Set {
        /// Print the new stat.
        #[arg(short = 's')]
        stat: bool,
        /// Only if the data version matches.
        #[arg(short = 'v', allow_negative_numbers = true)]
        version: Option<i32>,
        /// The znode.
        path: String,
        /// The new data.
        #[arg(allow_hyphen_values = true)]
        data: String,
    },
    /// Create a znode.
    Create {
        /// Ephemeral (gone when this command's session ends).
        #[arg(short = 'e')]
        ephemeral: bool,
        /// Sequential (a 10-digit suffix is appended).
        #[arg(short = 's')]
        sequential: bool,
        /// Container (removed by the server once its last child is gone).
        #[arg(short = 'c')]
        container: bool,
        /// Time to live in milliseconds (needs extendedTypesEnabled on the server).
        #[arg(short = 't')]
        ttl: Option<u64>,
        /// The znode.
        path: String,
        /// Its data.
        #[arg(allow_hyphen_values = true)]
        data: Option<String>,
    },
    /// Delete a znode.
    Delete {
        /// Only if the data version matches.
        #[arg(short = 'v', allow_negative_numbers = true)]
        version: Option<i32>,
        /// The znode.
        path: String,
    },
    /// Delete a znode and everything under it (from `/`: everything but /zookeeper).
    Deleteall {
        /// The znode.
        path: String,
    },
    /// Print a znode's stat.
    Stat {
        /// Leave a watch and wait for its event.
        #[arg(short = 'w')]
        watch: bool,
        /// The znode.
        path: String,
    },
    /// Print every change to a znode (data, children, creation, deletion) until Ctrl-C.
    Watch {
        /// The znode.
        path: String,
    },
    /// Make the connected server catch up with the leader.
    Sync {
        /// The znode.
        path: String,
    },
    /// Print a znode's ACL.
    #[command(name = "getAcl", alias = "getacl")]
    GetAcl {
        /// Print the znode's stat too.
        #[arg(short = 's')]
        stat: bool,
        /// The znode.
        path: String,
    },
}

impl Command {
    fn path(&self) -> &str {
        match self {
            Command::Ls { path, .. }
            | Command::Get { path, .. }
            | Command::Set { path, .. }
            | Command::Create { path, .. }
            | Command::Delete { path, .. }
            | Command::Deleteall { path }
            | Command::Stat { path, .. }
            | Command::Watch { path }
            | Command::Sync { path }
            | Command::GetAcl { path, .. } => path,
        }
    }
}

/// zkCli.sh takes `-server` and `-timeout` with one dash; clap wants two.
fn normalize_args(args: impl Iterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut before_command = true;
    for (i, arg) in args.enumerate() {
        if before_command && i > 0 {
            match arg.as_str() {
                "-server" | "-timeout" => {
                    out.push(format!("-{arg}"));
                    continue;
                }
                a if !a.starts_with('-')
                    && out.last().is_some_and(|p: &String| !p.starts_with("--")) =>
                {
                    before_command = false;
                }
                _ => {}
            }
        }
        out.push(arg);
    }
    out
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(normalize_args(std::env::args()));
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// zkCli.sh's wording of an error about `path`, followed by the error code's name.
fn describe(e: &ZkError, path: &str) -> String {
    let ZkError::Keeper(code) = e else {
        return e.to_string();
    };
    let text = match code {
        ErrorCode::NoNode => format!("Node does not exist: {path}"),
        ErrorCode::NodeExists => format!("Node already exists: {path}"),
        ErrorCode::BadVersion => format!("version No is not valid : {path}"),
        ErrorCode::NotEmpty => format!("Node not empty: {path}"),
        ErrorCode::NoAuth => format!("Insufficient permission : {path}"),
        ErrorCode::NoChildrenForEphemerals => format!("Ephemerals cannot have children: {path}"),
        _ => return format!("KeeperErrorCode = {code:?} for {path}"),
    };
    format!("{text} (KeeperErrorCode = {code:?})")
}

/// Attaches the path and zkCli's wording to a client error.
trait ForPath<T> {
    fn for_path(self, path: &str) -> Result<T>;
}

impl<T> ForPath<T> for Result<T, ZkError> {
    fn for_path(self, path: &str) -> Result<T> {
        self.map_err(|e| anyhow::anyhow!(describe(&e, path)))
    }
}

async fn run(cli: Cli) -> Result<()> {
    let (client, mut events) = Client::builder(cli.server.clone())
        .session_timeout(Duration::from_millis(cli.timeout))
        .connect_timeout(Duration::from_millis(cli.connect_timeout))
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("{e} (KeeperErrorCode = {:?})", e.code()))?;
    let path = cli.command.path().to_owned();
    let result = execute(&client, &mut events, cli.command).await;
    // Closing ends the session (and its ephemeral nodes) now rather than at expiry.
    let closed = client.close().await;
    result?;
    closed.for_path(&path)
}

async fn execute(
    client: &Client,
    events: &mut tokio::sync::mpsc::Receiver<WatchedEvent>,
    command: Command,
) -> Result<()> {
    match command {
        Command::Ls {
            stat,
            watch,
            recursive,
            path,
        } => {
            if recursive {
                for p in descendants(client, &path).await? {
                    println!("{p}");
                }
            } else {
                let (mut children, st) =
                    client.get_children2(&path, watch).await.for_path(&path)?;
                children.sort();
                println!("[{}]", children.join(", "));
                if stat {
                    print_stat(&st);
                }
            }
            if watch {
                wait_one_event(client, events).await?;
            }
        }
        Command::Get { stat, watch, path } => {
            let (data, st) = client.get_data(&path, watch).await.for_path(&path)?;
            println!("{}", show_data(data.as_ref()));
            if stat {
                print_stat(&st);
            }
            if watch {
                wait_one_event(client, events).await?;
            }
        }
        Command::Set {
            stat,
            version,
            path,
            data,
        } => {
            let st = client
                .set_data(&path, data.as_bytes(), version)
                .await
                .for_path(&path)?;
            if stat {
                print_stat(&st);
            }
        }
        Command::Create {
            ephemeral,
            sequential,
            container,
            ttl,
            path,
            data,
        } => {
            let mode = create_mode(ephemeral, sequential, container, ttl.is_some())?;
            let data = data.unwrap_or_default();
            let acl = Acl::open_unsafe();
            let created = match ttl {
                Some(ms) => {
                    client
                        .create_ttl(
                            &path,
                            data.as_bytes(),
                            &acl,
                            mode,
                            Duration::from_millis(ms),
                        )
                        .await
                        .for_path(&path)?
                        .0
                }
                None => client
                    .create(&path, data.as_bytes(), &acl, mode)
                    .await
                    .for_path(&path)?,
            };
            println!("Created {created}");
        }
        Command::Delete { version, path } => {
            client.delete(&path, version).await.for_path(&path)?;
        }
        Command::Deleteall { path } => delete_all(client, &path).await?,
        Command::Stat { watch, path } => {
            match client.exists(&path, watch).await.for_path(&path)? {
                Some(st) => print_stat(&st),
                None if watch => println!("Node does not exist: {path}"),
                None => {
                    return Err(ZkError::Keeper(ErrorCode::NoNode)).for_path(&path);
                }
            }
            if watch {
                wait_one_event(client, events).await?;
            }
        }
        Command::Watch { path } => watch_forever(client, events, &path).await?,
        Command::Sync { path } => {
            client.sync(&path).await.for_path(&path)?;
            println!("Sync is OK");
        }
        Command::GetAcl { stat, path } => {
            let (acl, st) = client.get_acl(&path).await.for_path(&path)?;
            for a in &acl {
                println!("'{},'{}", a.id.scheme, a.id.id);
                println!(": {}", perm_string(a.perms));
            }
            if stat {
                print_stat(&st);
            }
        }
    }
    Ok(())
}

fn create_mode(
    ephemeral: bool,
    sequential: bool,
    container: bool,
    ttl: bool,
) -> Result<CreateMode> {
    Ok(match (ephemeral, sequential, container, ttl) {
        (false, false, false, false) => CreateMode::Persistent,
        (true, false, false, false) => CreateMode::Ephemeral,
        (false, true, false, false) => CreateMode::PersistentSequential,
        (true, true, false, false) => CreateMode::EphemeralSequential,
        (false, false, true, false) => CreateMode::Container,
        (false, false, false, true) => CreateMode::PersistentWithTtl,
        (false, true, false, true) => CreateMode::PersistentSequentialWithTtl,
        _ => anyhow::bail!(
            "-c cannot be combined with -e, -s or -t, and -t not with -e (KeeperErrorCode = BadArguments)"
        ),
    })
}

/// Data as zkCli.sh prints it: UTF-8 (lossy), `null` for null data.
fn show_data(data: Option<&Bytes>) -> String {
    match data {
        Some(d) => String::from_utf8_lossy(d).into_owned(),
        None => "null".to_owned(),
    }
}

/// `ZKUtil.getPermString`: c, d, r, w, a.
fn perm_string(p: i32) -> String {
    [
        (perms::CREATE, 'c'),
        (perms::DELETE, 'd'),
        (perms::READ, 'r'),
        (perms::WRITE, 'w'),
        (perms::ADMIN, 'a'),
    ]
    .iter()
    .filter(|(bit, _)| p & bit != 0)
    .map(|(_, c)| *c)
    .collect()
}

/// zkCli.sh's `StatPrinter`.
fn print_stat(st: &Stat) {
    println!("cZxid = 0x{:x}", st.czxid);
    println!("ctime = {}", java_date(st.ctime));
    println!("mZxid = 0x{:x}", st.mzxid);
    println!("mtime = {}", java_date(st.mtime));
    println!("pZxid = 0x{:x}", st.pzxid);
    println!("cversion = {}", st.cversion);
    println!("dataVersion = {}", st.version);
    println!("aclVersion = {}", st.aversion);
    println!("ephemeralOwner = 0x{:x}", st.ephemeral_owner);
    println!("dataLength = {}", st.data_length);
    println!("numChildren = {}", st.num_children);
}

/// Java's `Date.toString()` in UTC: `Wed Nov 25 08:59:20 UTC 2026`.
fn java_date(ms: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let weekday = DAYS
        .get(days.rem_euclid(7) as usize)
        .copied()
        .unwrap_or("???");
    let month = MONTHS
        .get((m as usize).wrapping_sub(1))
        .copied()
        .unwrap_or("???");
    format!(
        "{weekday} {month} {d:02} {:02}:{:02}:{:02} UTC {y}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's
/// algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Requests sent at once when walking or deleting a tree.
const BATCH: usize = 256;

fn child_path(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

/// The tree under `root` (root included) level by level, each level's listing pipelined.
async fn levels(client: &Client, root: &str) -> Result<Vec<Vec<String>>> {
    let mut levels = vec![vec![root.to_owned()]];
    loop {
        let mut next = Vec::new();
        let Some(level) = levels.last() else { break };
        for chunk in level.chunks(BATCH) {
            let lists = join_all(chunk.iter().map(|p| client.get_children(p, false))).await;
            for (parent, children) in chunk.iter().zip(lists) {
                match children {
                    Ok(mut children) => {
                        children.sort();
                        next.extend(children.iter().map(|c| child_path(parent, c)));
                    }
                    // Deleted meanwhile: nothing under it.
                    Err(ZkError::Keeper(ErrorCode::NoNode)) if parent != root => {}
                    Err(e) => return Err(e).for_path(parent),
                }
            }
        }
        if next.is_empty() {
            break;
        }
        levels.push(next);
    }
    Ok(levels)
}

async fn descendants(client: &Client, root: &str) -> Result<Vec<String>> {
    Ok(levels(client, root).await?.into_iter().flatten().collect())
}

/// True for the nodes the server keeps for itself: `/` and, when walking from `/`, the
/// `/zookeeper` subtree (config, quota).
fn reserved(root: &str, path: &str) -> bool {
    path == "/" || (root == "/" && (path == "/zookeeper" || path.starts_with("/zookeeper/")))
}

/// zkCli's `deleteall`: deepest level first, each level's deletes pipelined. From `/`,
/// it deletes everything but the server's own nodes.
async fn delete_all(client: &Client, root: &str) -> Result<()> {
    let mut levels = levels(client, root).await?;
    for level in &mut levels {
        level.retain(|p| !reserved(root, p));
    }
    for level in levels.iter().rev() {
        for chunk in level.chunks(BATCH) {
            let results = join_all(chunk.iter().map(|p| client.delete(p, None))).await;
            for (path, r) in chunk.iter().zip(results) {
                match r {
                    Ok(()) | Err(ZkError::Keeper(ErrorCode::NoNode)) => {}
                    Err(e) => return Err(e).for_path(path),
                }
            }
        }
    }
    Ok(())
}

/// After `-w`: prints the watch event (or a session change) and returns.
async fn wait_one_event(
    client: &Client,
    events: &mut tokio::sync::mpsc::Receiver<WatchedEvent>,
) -> Result<()> {
    let mut states = client.state_changes();
    loop {
        tokio::select! {
            event = events.recv() => {
                let event = event.context("the client stopped")?;
                println!("{event}");
                return Ok(());
            }
            changed = states.changed() => {
                changed.context("the client stopped")?;
                let state = *states.borrow_and_update();
                print_state(state);
                if state.is_terminal() {
                    anyhow::bail!("session ended: {state:?}");
                }
            }
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

fn print_state(state: SessionState) {
    let keeper = match state {
        SessionState::Connected => KeeperState::SyncConnected,
        SessionState::Connecting | SessionState::Disconnected => KeeperState::Disconnected,
        SessionState::Expired => KeeperState::Expired,
        SessionState::AuthFailed => KeeperState::AuthFailed,
        SessionState::Closed => KeeperState::Closed,
    };
    println!("WatchedEvent state:{keeper:?} type:None path:null");
}

/// Sets the watches that report any change to `path`: exists (data, or creation when
/// absent) and, when it exists, children.
async fn arm(client: &Client, path: &str) -> Result<()> {
    if client.exists(path, true).await.for_path(path)?.is_some() {
        match client.get_children(path, true).await {
            // Deleted between the two calls: the exists watch reports it.
            Ok(_) | Err(ZkError::Keeper(ErrorCode::NoNode)) => {}
            Err(e) => return Err(e).for_path(path),
        }
    }
    Ok(())
}

/// `watch path`: prints every event, setting the one-shot watches again after each,
/// until Ctrl-C. The client re-registers them itself after a reconnect.
async fn watch_forever(
    client: &Client,
    events: &mut tokio::sync::mpsc::Receiver<WatchedEvent>,
    path: &str,
) -> Result<()> {
    let mut states = client.state_changes();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    arm(client, path).await?;
    println!("Watching {path}");
    loop {
        tokio::select! {
            event = events.recv() => {
                let event = event.context("the client stopped")?;
                // Set the watches again before printing: whoever saw the line knows the
                // next change will be reported.
                if event.event_type != EventType::None {
                    arm(client, path).await?;
                }
                println!("{event}");
            }
            changed = states.changed() => {
                changed.context("the client stopped")?;
                let state = *states.borrow_and_update();
                print_state(state);
                if state.is_terminal() {
                    anyhow::bail!("session ended: {state:?}");
                }
            }
            _ = &mut ctrl_c => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_like_java() {
        assert_eq!(java_date(0), "Thu Jan 01 00:00:00 UTC 1970");
        assert_eq!(java_date(1_795_597_160_000), "Wed Nov 25 08:59:20 UTC 2026");
        assert_eq!(java_date(951_782_400_000), "Tue Feb 29 00:00:00 UTC 2000");
    }

    #[test]
    fn perms_like_zkcli() {
        assert_eq!(perm_string(perms::ALL), "cdrwa");
        assert_eq!(perm_string(perms::READ | perms::ADMIN), "ra");
    }

    #[test]
    fn one_dash_options() {
        let args = ["zk-cli", "-server", "h:1", "-timeout", "5", "ls", "-s", "/"];
        let got = normalize_args(args.iter().map(|s| s.to_string()));
        assert_eq!(
            got,
            [
                "zk-cli",
                "--server",
                "h:1",
                "--timeout",
                "5",
                "ls",
                "-s",
                "/"
            ]
        );
        let args = ["zk-cli", "set", "/a", "-server"];
        let got = normalize_args(args.iter().map(|s| s.to_string()));
        assert_eq!(got, args);
    }
}
