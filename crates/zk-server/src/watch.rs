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
//! * `NodeCreated` and `NodeDataChanged` fire data watches; `NodeChildrenChanged` fires
//!   child watches; `NodeDeleted` fires both, and a session gets one event per trigger.
//!   [`WatchManager::node_created`], [`WatchManager::node_deleted`] and
//!   [`WatchManager::node_data_changed`] also fire `NodeChildrenChanged` on the parent, as
//!   `DataTree.createNode` / `deleteNode` / `setData` do.
//!
//! Delivering an event is the caller's business, and so is ZooKeeper's read check on
//! delivery (`ServerCnxn.process` drops an event when the session lacks READ on the node:
//! use [`crate::acl::check`]). The manager holds no bound per session: a session can
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

/// Watch modes held by one session on one path (`WatchStats`), as bits.
const STANDARD: u8 = 1;
const PERSISTENT: u8 = 2;
const RECURSIVE: u8 = 4;

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

/// One of ZooKeeper's two watch tables.
#[derive(Debug, Default, Clone)]
struct Table {
    /// path → sessions watching it (`watchTable`).
    by_path: HashMap<String, HashSet<SessionId>>,
    /// session → path → modes (`watch2Paths`).
    by_session: HashMap<SessionId, HashMap<String, u8>>,
    /// How many (session, path) pairs hold a recursive mode.
    recursive: usize,
}

impl Table {
    fn add(&mut self, path: &str, session: SessionId, mode: u8) -> bool {
        let paths = self.by_session.entry(session).or_default();
        let old = paths.get(path).copied().unwrap_or(0);
        let new = old | mode;
        if new == old {
            return false;
        }
        paths.insert(path.to_string(), new);
        self.by_path
            .entry(path.to_string())
            .or_default()
            .insert(session);
        if mode & RECURSIVE != 0 && old & RECURSIVE == 0 {
            self.recursive += 1;
        }
        true
    }

    fn modes(&self, path: &str, session: SessionId) -> u8 {
        self.by_session
            .get(&session)
            .and_then(|p| p.get(path))
            .copied()
            .unwrap_or(0)
    }

    /// Drops (session, path) from both maps, returning its former modes.
    fn unwatch(&mut self, path: &str, session: SessionId) -> u8 {
        let Some(paths) = self.by_session.get_mut(&session) else {
            return 0;
        };
        let Some(old) = paths.remove(path) else {
            return 0;
        };
        if paths.is_empty() {
            self.by_session.remove(&session);
        }
        if let Some(set) = self.by_path.get_mut(path) {
            set.remove(&session);
            if set.is_empty() {
                self.by_path.remove(path);
            }
        }
        if old & RECURSIVE != 0 {
            self.recursive -= 1;
        }
        old
    }

    /// Removes `mode` (every mode when None); true if something was removed.
    fn remove(&mut self, path: &str, session: SessionId, mode: Option<u8>) -> bool {
        let old = self.modes(path, session);
        if old == 0 {
            return false;
        }
        let new = match mode {
            Some(m) => old & !m,
            None => 0,
        };
        if new == old {
            return false;
        }
        if new == 0 {
            self.unwatch(path, session);
        } else {
            if let Some(p) = self.by_session.get_mut(&session) {
                p.insert(path.to_string(), new);
            }
            if old & RECURSIVE != 0 && new & RECURSIVE == 0 {
                self.recursive -= 1;
            }
        }
        true
    }

    fn remove_session(&mut self, session: SessionId) {
        let Some(paths) = self.by_session.remove(&session) else {
            return;
        };
        for (path, modes) in paths {
            if let Some(set) = self.by_path.get_mut(&path) {
                set.remove(&session);
                if set.is_empty() {
                    self.by_path.remove(&path);
                }
            }
            if modes & RECURSIVE != 0 {
                self.recursive -= 1;
            }
        }
    }

    /// `WatchManager.triggerWatch`: the sessions whose watch on `path` (or recursive watch
    /// on an ancestor) fires; one-shot modes on `path` are consumed.
    fn trigger(&mut self, path: &str) -> BTreeSet<SessionId> {
        let mut fired = BTreeSet::new();
        let mut current = Some(path);
        let mut at_parent = false;
        while let Some(p) = current {
            if let Some(sessions) = self.by_path.get(p) {
                let sessions: Vec<SessionId> = sessions.iter().copied().collect();
                for s in sessions {
                    let modes = self.modes(p, s);
                    if !at_parent {
                        fired.insert(s);
                        if modes & STANDARD != 0 {
                            self.remove(p, s, Some(STANDARD));
                        }
                    } else if modes & RECURSIVE != 0 {
                        fired.insert(s);
                    }
                }
            }
            if self.recursive == 0 {
                break;
            }
            current = parent(p);
            at_parent = true;
        }
        fired
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

    /// A one-shot data watch (getData, exists — also on a missing node).
    pub fn add_data_watch(&mut self, session: SessionId, path: &str) {
        self.data.add(path, session, STANDARD);
    }

    /// A one-shot child watch (getChildren).
    pub fn add_child_watch(&mut self, session: SessionId, path: &str) {
        self.child.add(path, session, STANDARD);
    }

    /// addWatch: a persistent watch (data and children of `path`) or a persistent recursive
    /// one (data of `path` and every descendant), as `DataTree.addWatch`.
    pub fn add_watch(&mut self, session: SessionId, path: &str, mode: AddWatchMode) {
        match mode {
            AddWatchMode::Persistent => {
                self.data.add(path, session, PERSISTENT);
                self.child.add(path, session, PERSISTENT);
            }
            AddWatchMode::PersistentRecursive => {
                self.data.add(path, session, RECURSIVE);
            }
        }
    }

    /// Fires the watches one event on `path` triggers, in session order, at most one event
    /// per session. `NodeCreated`/`NodeDataChanged` → data watches (and recursive watches
    /// of ancestors); `NodeChildrenChanged` → child watches; `NodeDeleted` → both. Other
    /// types fire nothing.
    pub fn trigger(
        &mut self,
        path: &str,
        event_type: EventType,
        zxid: Zxid,
    ) -> Vec<(SessionId, WatchedEvent)> {
        let sessions = match event_type {
            EventType::NodeCreated | EventType::NodeDataChanged => self.data.trigger(path),
            EventType::NodeChildrenChanged => self.child.trigger(path),
            EventType::NodeDeleted => {
                let mut s = self.data.trigger(path);
                s.extend(self.child.trigger(path));
                s
            }
            _ => BTreeSet::new(),
        };
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
    /// (`DataTree.containsWatcher`).
    pub fn check(
        &self,
        session: SessionId,
        path: &str,
        kind: WatcherType,
    ) -> Result<(), WatchError> {
        let has = |t: &Table, m: u8| t.modes(path, session) & m != 0;
        let found = match kind {
            WatcherType::Children => has(&self.child, STANDARD),
            WatcherType::Data => has(&self.data, STANDARD),
            WatcherType::Persistent => has(&self.data, PERSISTENT),
            WatcherType::PersistentRecursive => has(&self.data, RECURSIVE),
            WatcherType::Any => has(&self.child, !0) || has(&self.data, !0),
        };
        if found {
            Ok(())
        } else {
            Err(WatchError::NoWatcher)
        }
    }

    /// removeWatches: removes `session`'s watches of `kind` on `path`
    /// (`DataTree.removeWatch`); `NoWatcher` when there was none.
    pub fn remove(
        &mut self,
        session: SessionId,
        path: &str,
        kind: WatcherType,
    ) -> Result<(), WatchError> {
        let removed = match kind {
            WatcherType::Children => self.child.remove(path, session, Some(STANDARD)),
            WatcherType::Data => self.data.remove(path, session, Some(STANDARD)),
            WatcherType::Persistent => {
                let c = self.child.remove(path, session, Some(PERSISTENT));
                let d = self.data.remove(path, session, Some(PERSISTENT));
                c || d
            }
            WatcherType::PersistentRecursive => self.data.remove(path, session, Some(RECURSIVE)),
            WatcherType::Any => {
                let c = self.child.remove(path, session, None);
                let d = self.data.remove(path, session, None);
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

    /// Total watches in both tables (`DataTree.getWatchCount`, mntr's `zk_watch_count`).
    pub fn watch_count(&self) -> usize {
        self.data.size() + self.child.size()
    }

    /// The `wchs` figures. As in ZooKeeper (`DataTree.getWatchesSummary`) they cover the
    /// data-watch table: getData/exists, persistent and recursive watches, not
    /// getChildren watches. `connections` counts sessions that hold a watch now
    /// (ZooKeeper also counts sessions whose watches have all fired).
    pub fn summary(&self) -> WatchesSummary {
        WatchesSummary {
            connections: self.data.by_session.len(),
            paths: self.data.by_path.len(),
            total: self.data.by_session.values().map(HashMap::len).sum(),
        }
    }

    /// `wchc` data: watched paths per session (data-watch table, as ZooKeeper).
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
