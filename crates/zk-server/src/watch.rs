//! The watch manager: ZooKeeper's `WatchManager` pair (data watches and child watches) and
//! the trigger rules of `DataTree`.
//!
//! Watches are keyed by session id (one connection per session at a time: when a
//! connection goes away the server calls [`WatchManager::remove_session`], and the client
//! re-registers with setWatches on its next connection).
//!
//! * `getData` / `exists` set a one-shot **data watch** ([`WatchManager::add_data_watch`]);
//!   `getChildren` sets a one-shot **child watch** ([`WatchManager::add_child_watch`]).
//! * `addWatch(PERSISTENT)` watches the node's data and children and stays after firing;
//!   `addWatch(PERSISTENT_RECURSIVE)` watches the data events of the node and of every
//!   descendant, but never `NodeChildrenChanged` ([`WatchManager::add_watch`]).
//! * As in ZooKeeper 3.8.0 (`WatcherModeManager`), a session has one mode per path and
//!   table, the last set: a second addWatch on a path replaces the first, and a getData
//!   watch makes the data half of a persistent watch one-shot. Both addWatch modes are an
//!   entry in the data and in the child table, so checkWatches / removeWatches of `Data`
//!   or `Children` find (and remove) either half, and `zk_watch_count` counts both.
//! * `NodeCreated` and `NodeDataChanged` fire data watches; `NodeChildrenChanged` fires
//!   child watches; `NodeDeleted` fires both, and a session gets one event per trigger.
//!   [`WatchManager::node_created`], [`WatchManager::node_deleted`] and
//!   [`WatchManager::node_data_changed`] also fire `NodeChildrenChanged` on the parent, as
//!   `DataTree.createNode` / `deleteNode` / `setData` do.
//!
//! Delivering an event is the caller's business, and so is ZooKeeper's read check on
//! delivery (`ServerCnxn.process` drops an event when the session lacks READ on the node;
//! [`TriggerAcls`] gives the ACL to check with [`crate::acl::check`]). A one-shot watch is
//! used up when it fires, whether or not its event is then delivered. The manager holds no bound per session: a session can
//! register as many watches as it sends requests; limiting that (as packet size and
//! request rate limit it in ZooKeeper) is up to the caller.
//!
//! ```
//! use zk_proto::data::{AddWatchMode, EventType};
//! use zk_server::watch::WatchManager;
//!
//! let mut w = WatchManager::new();
//! w.add_data_watch(0x11, "/app/config");
//! w.add_child_watch(0x22, "/app");
//! w.add_watch(0x33, "/", AddWatchMode::PersistentRecursive);
//!
//! let fired = w.node_data_changed("/app/config", 7);
//! let who: Vec<i64> = fired.iter().map(|(s, _)| *s).collect();
//! assert_eq!(who, [0x11, 0x33]);
//! assert_eq!(fired[0].1.event_type, EventType::NodeDataChanged);
//! // One-shot: the data watch is gone, the recursive one stays.
//! assert_eq!(w.node_data_changed("/app/config", 8).len(), 1);
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;

use zk_proto::data::{AddWatchMode, EventType, KeeperState, Stat, WatcherType};
use zk_proto::zxid::Zxid;

mod event_acl;

pub use event_acl::TriggerAcls;

/// A session id (the watcher identity).
pub type SessionId = i64;

/// The zxid carried by events that no txn caused (setWatches replies).
pub const NO_ZXID: Zxid = -1;

/// Watch errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// checkWatches / removeWatches found no such watch (`ErrorCode::NoWatcher`).
    #[error("no watcher of that type on the path")]
    NoWatcher,
}

impl WatchError {
    /// The wire error code.
    pub fn code(self) -> zk_proto::data::ErrorCode {
        match self {
            WatchError::NoWatcher => zk_proto::data::ErrorCode::NoWatcher,
        }
    }
}

/// An event to deliver to one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedEvent {
    /// What happened.
    pub event_type: EventType,
    /// Always `SyncConnected` for node events.
    pub state: KeeperState,
    /// The node concerned.
    pub path: String,
    /// The zxid of the txn that caused it, or [`NO_ZXID`].
    pub zxid: Zxid,
}

impl WatchedEvent {
    fn new(event_type: EventType, path: &str, zxid: Zxid) -> Self {
        WatchedEvent {
            event_type,
            state: KeeperState::SyncConnected,
            path: path.to_string(),
            zxid,
        }
    }
}

/// The mode of one session's watch on one path in one table (ZooKeeper 3.8's
/// `WatcherMode`, kept by its `WatcherModeManager`): one mode per session and path, the
/// last one set wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// One-shot (getData, exists, getChildren): gone once it fires.
    Standard,
    /// addWatch(PERSISTENT): fires for events on the path, stays.
    Persistent,
    /// addWatch(PERSISTENT_RECURSIVE): fires for events on the path and every descendant,
    /// except `NodeChildrenChanged`, and stays.
    Recursive,
}

/// The parent of an absolute path (`/a/b` → `/a`, `/a` → `/`, `/` → none).
fn parent(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

/// One of ZooKeeper's two watch tables (`WatchManager`).
#[derive(Debug, Default, Clone)]
struct Table {
    /// path → sessions watching it (`watchTable`); no empty sets.
    by_path: HashMap<String, HashSet<SessionId>>,
    /// session → path → mode (`watch2Paths` plus the `WatcherModeManager`). As in
    /// ZooKeeper, a session stays here with no path once its watches have fired or been
    /// removed, until [`Table::remove_session`] (`wchs` counts it as a connection).
    by_session: HashMap<SessionId, HashMap<String, Mode>>,
    /// How many (session, path) pairs are recursive (`recursiveQty`): while it is 0 a
    /// trigger looks at the path only, not its ancestors.
    recursive: usize,
}

impl Table {
    /// `WatchManager.addWatch`: sets the session's mode on `path`, replacing any other.
    fn add(&mut self, path: &str, session: SessionId, mode: Mode) {
        let old = self
            .by_session
            .entry(session)
            .or_default()
            .insert(path.to_string(), mode);
        if old.is_none() {
            self.by_path
                .entry(path.to_string())
                .or_default()
                .insert(session);
        }
        let was_recursive = old == Some(Mode::Recursive);
        match (was_recursive, mode == Mode::Recursive) {
            (false, true) => self.recursive += 1,
            (true, false) => self.recursive -= 1,
            _ => {}
        }
    }

    fn mode(&self, path: &str, session: SessionId) -> Option<Mode> {
        self.by_session.get(&session)?.get(path).copied()
    }

    /// `WatchManager.removeWatcher(path, watcher)`: drops the session's watch on `path`,
    /// whatever its mode; false if it had none.
    fn remove(&mut self, path: &str, session: SessionId) -> bool {
        let Some(old) = self
            .by_session
            .get_mut(&session)
            .and_then(|paths| paths.remove(path))
        else {
            return false;
        };
        self.unlink(path, session);
        if old == Mode::Recursive {
            self.recursive -= 1;
        }
        true
    }

    /// Drops `session` from the sessions of `path`.
    fn unlink(&mut self, path: &str, session: SessionId) {
        if let Some(set) = self.by_path.get_mut(path) {
            set.remove(&session);
            if set.is_empty() {
                self.by_path.remove(path);
            }
        }
    }

    /// `WatchManager.removeWatcher(watcher)`: every watch of the session.
    fn remove_session(&mut self, session: SessionId) {
        let Some(paths) = self.by_session.remove(&session) else {
            return;
        };
        for (path, mode) in paths {
            self.unlink(&path, session);
            if mode == Mode::Recursive {
                self.recursive -= 1;
            }
        }
    }

    /// `WatchManager.triggerWatch`: adds to `fired` the sessions whose watch on `path`
    /// fires (or whose recursive watch on an ancestor does, except for
    /// `NodeChildrenChanged`); one-shot watches on `path` are consumed. Cost: the
    /// watchers of `path`, plus those of its ancestors while any recursive watch exists.
    fn trigger(&mut self, path: &str, children_changed: bool, fired: &mut BTreeSet<SessionId>) {
        let mut current = Some(path);
        let mut at_parent = false;
        let mut consumed = Vec::new();
        while let Some(p) = current {
            if let Some(sessions) = self.by_path.get(p) {
                for &s in sessions {
                    match self.mode(p, s) {
                        Some(Mode::Recursive) if !children_changed => {
                            fired.insert(s);
                        }
                        Some(Mode::Recursive) => {}
                        Some(mode) if !at_parent => {
                            fired.insert(s);
                            if mode == Mode::Standard {
                                consumed.push(s);
                            }
                        }
                        _ => {}
                    }
                }
            }
            if self.recursive == 0 {
                break;
            }
            current = parent(p);
            at_parent = true;
        }
        for s in consumed {
            if let Some(paths) = self.by_session.get_mut(&s) {
                paths.remove(path);
            }
            self.unlink(path, s);
        }
    }

    /// Number of (session, path) pairs (`WatchManager.size`).
    fn size(&self) -> usize {
        self.by_path.values().map(HashSet::len).sum()
    }
}

/// The paths a reconnecting client re-registers (`SetWatches` / `SetWatches2`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SetWatches<'a> {
    /// The last zxid the client saw: changes after it fire at once.
    pub relative_zxid: Zxid,
    /// getData watches.
    pub data: &'a [String],
    /// exists watches (on nodes that did not exist).
    pub exist: &'a [String],
    /// getChildren watches.
    pub child: &'a [String],
    /// addWatch(PERSISTENT) paths (setWatches2 only).
    pub persistent: &'a [String],
    /// addWatch(PERSISTENT_RECURSIVE) paths (setWatches2 only).
    pub persistent_recursive: &'a [String],
}

/// The `wchs` figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WatchesSummary {
    /// Sessions holding at least one watch.
    pub connections: usize,
    /// Distinct watched paths.
    pub paths: usize,
    /// (session, path) pairs.
    pub total: usize,
}

/// Every watch of the server: ZooKeeper's data and child watch tables.
#[derive(Debug, Default, Clone)]
pub struct WatchManager {
    data: Table,
    child: Table,
}

impl WatchManager {
    /// An empty manager.
    pub fn new() -> Self {
        WatchManager::default()
    }

    /// True when no session holds any watch.
    pub fn is_empty(&self) -> bool {
        self.data.by_path.is_empty() && self.child.by_path.is_empty()
    }

    /// A one-shot data watch (getData, exists — also on a missing node). As in ZooKeeper
    /// 3.8, it replaces the session's persistent or recursive mode on `path` in the data
    /// table.
    pub fn add_data_watch(&mut self, session: SessionId, path: &str) {
        self.data.add(path, session, Mode::Standard);
    }

    /// A one-shot child watch (getChildren); replaces the session's mode on `path` in the
    /// child table.
    pub fn add_child_watch(&mut self, session: SessionId, path: &str) {
        self.child.add(path, session, Mode::Standard);
    }

    /// addWatch: a persistent watch (data and children of `path`) or a persistent recursive
    /// one (data of `path` and every descendant). As `DataTree.addWatch` in ZooKeeper 3.8,
    /// either is an entry in both the data and the child table, replacing the session's
    /// mode on `path` there (a second addWatch with another mode replaces the first).
    pub fn add_watch(&mut self, session: SessionId, path: &str, mode: AddWatchMode) {
        let mode = match mode {
            AddWatchMode::Persistent => Mode::Persistent,
            AddWatchMode::PersistentRecursive => Mode::Recursive,
        };
        self.data.add(path, session, mode);
        self.child.add(path, session, mode);
    }

    /// Fires the watches one event on `path` triggers, in session order, at most one event
    /// per session. `NodeCreated`/`NodeDataChanged` → the data table; `NodeChildrenChanged`
    /// → the child table (recursive watches never get it); `NodeDeleted` → both. Recursive
    /// watches of ancestors fire too. Other types fire nothing.
    pub fn trigger(
        &mut self,
        path: &str,
        event_type: EventType,
        zxid: Zxid,
    ) -> Vec<(SessionId, WatchedEvent)> {
        let mut sessions = BTreeSet::new();
        match event_type {
            EventType::NodeCreated | EventType::NodeDataChanged => {
                self.data.trigger(path, false, &mut sessions)
            }
            EventType::NodeChildrenChanged => self.child.trigger(path, true, &mut sessions),
            EventType::NodeDeleted => {
                self.data.trigger(path, false, &mut sessions);
                self.child.trigger(path, false, &mut sessions);
            }
            _ => {}
        }
        sessions
            .into_iter()
            .map(|s| (s, WatchedEvent::new(event_type, path, zxid)))
            .collect()
    }

    /// The events of a create of `path`: `NodeCreated` on it, then `NodeChildrenChanged`
    /// on its parent.
    pub fn node_created(&mut self, path: &str, zxid: Zxid) -> Vec<(SessionId, WatchedEvent)> {
        let mut out = self.trigger(path, EventType::NodeCreated, zxid);
        if let Some(p) = parent(path) {
            out.extend(self.trigger(p, EventType::NodeChildrenChanged, zxid));
        }
        out
    }

    /// The events of a delete of `path`: `NodeDeleted` on it, then `NodeChildrenChanged`
    /// on its parent.
    pub fn node_deleted(&mut self, path: &str, zxid: Zxid) -> Vec<(SessionId, WatchedEvent)> {
        let mut out = self.trigger(path, EventType::NodeDeleted, zxid);
        if let Some(p) = parent(path) {
            out.extend(self.trigger(p, EventType::NodeChildrenChanged, zxid));
        }
        out
    }

    /// The events of a setData on `path`: `NodeDataChanged`.
    pub fn node_data_changed(&mut self, path: &str, zxid: Zxid) -> Vec<(SessionId, WatchedEvent)> {
        self.trigger(path, EventType::NodeDataChanged, zxid)
    }

    /// checkWatches: Ok if `session` has a watch of `kind` on `path`
    /// (`DataTree.containsWatcher`). As in ZooKeeper 3.8, `Children` and `Data` ask the
    /// child and the data table whatever the mode there, so a persistent or recursive
    /// watch is found as either; `Any` asks both. `Persistent` and `PersistentRecursive`
    /// (3.9's types, not on 3.8's wire) ask for that mode in the data table.
    ///
    /// ZooKeeper 3.8.0 answers yes when any session watches the path in the table asked
    /// about (its `containsWatcher` does not look at the watcher; later releases do);
    /// this looks at `session`'s watches only.
    pub fn check(
        &self,
        session: SessionId,
        path: &str,
        kind: WatcherType,
    ) -> Result<(), WatchError> {
        let found = match kind {
            WatcherType::Children => self.child.mode(path, session).is_some(),
            WatcherType::Data => self.data.mode(path, session).is_some(),
            WatcherType::Any => {
                self.child.mode(path, session).is_some() || self.data.mode(path, session).is_some()
            }
            WatcherType::Persistent => self.data.mode(path, session) == Some(Mode::Persistent),
            WatcherType::PersistentRecursive => {
                self.data.mode(path, session) == Some(Mode::Recursive)
            }
        };
        if found {
            Ok(())
        } else {
            Err(WatchError::NoWatcher)
        }
    }

    /// removeWatches: removes `session`'s watches of `kind` on `path`
    /// (`DataTree.removeWatch`); `NoWatcher` when there was none. As in ZooKeeper 3.8,
    /// `Children` and `Data` remove the session's entry in that table whatever its mode
    /// (so removing the data half of a persistent watch leaves its child half firing),
    /// `Any` both. `Persistent` / `PersistentRecursive` remove that mode from both tables.
    pub fn remove(
        &mut self,
        session: SessionId,
        path: &str,
        kind: WatcherType,
    ) -> Result<(), WatchError> {
        let remove_mode = |t: &mut Table, mode: Mode| {
            t.mode(path, session) == Some(mode) && t.remove(path, session)
        };
        let removed = match kind {
            WatcherType::Children => self.child.remove(path, session),
            WatcherType::Data => self.data.remove(path, session),
            WatcherType::Any => {
                let c = self.child.remove(path, session);
                let d = self.data.remove(path, session);
                c || d
            }
            WatcherType::Persistent => {
                let c = remove_mode(&mut self.child, Mode::Persistent);
                let d = remove_mode(&mut self.data, Mode::Persistent);
                c || d
            }
            WatcherType::PersistentRecursive => {
                let c = remove_mode(&mut self.child, Mode::Recursive);
                let d = remove_mode(&mut self.data, Mode::Recursive);
                c || d
            }
        };
        if removed {
            Ok(())
        } else {
            Err(WatchError::NoWatcher)
        }
    }

    /// Drops every watch of a session (its connection closed or it expired).
    pub fn remove_session(&mut self, session: SessionId) {
        self.data.remove_session(session);
        self.child.remove_session(session);
    }

    /// setWatches / setWatches2 on reconnect (`DataTree.setWatches`). `lookup` gives the
    /// current [`Stat`] of a node, or None if it does not exist. Returns the events that
    /// fire at once (zxid [`NO_ZXID`]), in list order; every other watch is registered:
    ///
    /// * data: node gone → `NodeDeleted`; `mzxid > relative_zxid` → `NodeDataChanged`;
    /// * exist: node exists now → `NodeCreated`;
    /// * child: node gone → `NodeDeleted`; `pzxid > relative_zxid` → `NodeChildrenChanged`;
    /// * persistent and persistent-recursive watches are re-added, with no event.
    pub fn set_watches(
        &mut self,
        session: SessionId,
        req: SetWatches<'_>,
        lookup: impl Fn(&str) -> Option<Stat>,
    ) -> Vec<WatchedEvent> {
        let mut events = Vec::new();
        let ev = |t, p: &str| WatchedEvent::new(t, p, NO_ZXID);
        for path in req.data {
            match lookup(path) {
                None => events.push(ev(EventType::NodeDeleted, path)),
                Some(st) if st.mzxid > req.relative_zxid => {
                    events.push(ev(EventType::NodeDataChanged, path))
                }
                Some(_) => self.add_data_watch(session, path),
            }
        }
        for path in req.exist {
            match lookup(path) {
                Some(_) => events.push(ev(EventType::NodeCreated, path)),
                None => self.add_data_watch(session, path),
            }
        }
        for path in req.child {
            match lookup(path) {
                None => events.push(ev(EventType::NodeDeleted, path)),
                Some(st) if st.pzxid > req.relative_zxid => {
                    events.push(ev(EventType::NodeChildrenChanged, path))
                }
                Some(_) => self.add_child_watch(session, path),
            }
        }
        for path in req.persistent {
            self.add_watch(session, path, AddWatchMode::Persistent);
        }
        for path in req.persistent_recursive {
            self.add_watch(session, path, AddWatchMode::PersistentRecursive);
        }
        events
    }

    /// Total watches in both tables (`DataTree.getWatchCount`, mntr's `zk_watch_count`):
    /// a persistent or recursive watch counts twice, once per table, as in ZooKeeper 3.8.
    pub fn watch_count(&self) -> usize {
        self.data.size() + self.child.size()
    }

    /// The `wchs` figures. As in ZooKeeper (`DataTree.getWatchesSummary`) they cover the
    /// data-watch table: getData/exists, persistent and recursive watches, not
    /// getChildren watches. `connections` counts the sessions that have held a data-table
    /// watch since they connected, also those whose watches have all fired or been
    /// removed (ZooKeeper keeps a watcher in `watch2Paths` until its connection closes).
    pub fn summary(&self) -> WatchesSummary {
        WatchesSummary {
            connections: self.data.by_session.len(),
            paths: self.data.by_path.len(),
            total: self.data.by_session.values().map(HashMap::len).sum(),
        }
    }

    /// `wchc` data: watched paths per session (data-watch table, as ZooKeeper; a session
    /// whose watches have all fired is listed with no path).
    pub fn by_session(&self) -> BTreeMap<SessionId, BTreeSet<String>> {
        self.data
            .by_session
            .iter()
            .map(|(s, paths)| (*s, paths.keys().cloned().collect()))
            .collect()
    }

    /// `wchp` data: watching sessions per path (data-watch table, as ZooKeeper).
    pub fn by_path(&self) -> BTreeMap<String, BTreeSet<SessionId>> {
        self.data
            .by_path
            .iter()
            .map(|(p, s)| (p.clone(), s.iter().copied().collect()))
            .collect()
    }

    /// The `wchs` reply text, as ZooKeeper prints it.
    pub fn wchs_text(&self) -> String {
        let s = self.summary();
        format!(
            "{} connections watching {} paths\nTotal watches:{}\n",
            s.connections, s.paths, s.total
        )
    }

    /// The `wchc` reply text: `0x<session>` then one tab-indented path per line.
    pub fn wchc_text(&self) -> String {
        let mut out = String::new();
        for (s, paths) in self.by_session() {
            let _ = writeln!(out, "0x{:x}", s);
            for p in paths {
                let _ = writeln!(out, "\t{p}");
            }
        }
        out.push('\n');
        out
    }

    /// The `wchp` reply text: a path then one `\t0x<session>` line per watcher.
    pub fn wchp_text(&self) -> String {
        let mut out = String::new();
        for (p, sessions) in self.by_path() {
            let _ = writeln!(out, "{p}");
            for s in sessions {
                let _ = writeln!(out, "\t0x{:x}", s);
            }
        }
        out.push('\n');
        out
    }
}

#[cfg(test)]
mod tests;
