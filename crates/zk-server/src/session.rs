//! The session tracker (`SessionTrackerImpl` with its `ExpiryQueue`), without I/O: time
//! is an argument (ms of a monotonic clock the caller reads), nothing here reads a clock.
//!
//! Sessions expire in buckets: a touch at `now` with timeout `t` moves the session to the
//! bucket `(⌊(now + t) / tick⌋ + 1) × tick`, so expiry is checked once per tick for a whole
//! batch and a session always gets at least its timeout. [`SessionTracker::expired`]
//! returns the sessions of every bucket that has passed and marks them closing; the caller
//! then commits their closeSession txns and calls [`SessionTracker::remove_session`].
//!
//! Session ids and passwords are ZooKeeper's: the first id of server `sid` started at
//! `now` is `(now << 24 >>> 8) | (sid << 56)`, later ones count up by one; the password
//! is 16 bytes of `java.util.Random(sessionId ^ 0xB3415C00)` ([`generate_password`]).
//!
//! ```
//! use zk_server::session::{SessionTracker, negotiate_timeout, check_password, generate_password};
//!
//! let mut t = SessionTracker::new(1, 2000, 1_000_000);
//! let timeout = negotiate_timeout(30_000, 4000, 40_000);
//! let id = t.create_session(timeout, 1_000_000);
//! assert_eq!(id >> 56, 1);
//! assert!(check_password(id, &generate_password(id)));
//!
//! assert!(t.expired(1_020_000).is_empty());
//! assert!(t.touch(id, timeout, 1_020_000)); // a ping
//! assert!(t.expired(1_040_000).is_empty());
//! assert_eq!(t.expired(1_052_000), vec![id]); // 30 s after the last touch, rounded up
//! assert!(!t.touch(id, timeout, 1_052_000)); // closing: touches no longer count
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};

use zk_proto::data::ErrorCode;

/// A session id.
pub type SessionId = i64;

/// `0xB3415C00`, ZooKeeper's `superSecret` mixed into the password seed.
pub const SUPER_SECRET: i64 = 0xB341_5C00;

/// The `ephemeralOwner` ZooKeeper reserves for containers (`EphemeralType.CONTAINER_EPHEMERAL_OWNER`),
/// never handed out as a session id.
pub const CONTAINER_EPHEMERAL_OWNER: SessionId = i64::MIN;

/// Session check failures, each one of ZooKeeper's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The session is not tracked here (`UnknownSession`).
    #[error("unknown session")]
    UnknownSession,
    /// The session expired or is being closed (`SessionExpired`).
    #[error("session expired")]
    SessionExpired,
    /// The session is owned by another connection (`SessionMoved`).
    #[error("session moved to another connection")]
    SessionMoved,
}

impl SessionError {
    /// The wire error code.
    pub fn code(self) -> ErrorCode {
        match self {
            SessionError::UnknownSession => ErrorCode::UnknownSession,
            SessionError::SessionExpired => ErrorCode::SessionExpired,
            SessionError::SessionMoved => ErrorCode::SessionMoved,
        }
    }
}

/// `java.util.Random`: the 48-bit linear congruential generator of the Java platform,
/// bit for bit (seed scrambling, `next(bits)`, `nextInt`, `nextLong`, `nextBytes`).
#[derive(Debug, Clone)]
pub struct JavaRandom {
    seed: u64,
}

impl JavaRandom {
    const MULTIPLIER: u64 = 0x5_DEEC_E66D;
    const ADDEND: u64 = 0xB;
    const MASK: u64 = (1 << 48) - 1;

    /// `new Random(seed)`.
    pub fn new(seed: i64) -> Self {
        JavaRandom {
            seed: (seed as u64 ^ Self::MULTIPLIER) & Self::MASK,
        }
    }

    /// `next(bits)`, for `bits` in 1..=32.
    fn next(&mut self, bits: u32) -> i32 {
        self.seed = self
            .seed
            .wrapping_mul(Self::MULTIPLIER)
            .wrapping_add(Self::ADDEND)
            & Self::MASK;
        (self.seed >> (48 - bits)) as i32
    }

    /// `nextInt()`.
    pub fn next_int(&mut self) -> i32 {
        self.next(32)
    }

    /// `nextLong()`.
    pub fn next_long(&mut self) -> i64 {
        let hi = i64::from(self.next(32));
        let lo = i64::from(self.next(32));
        (hi << 32).wrapping_add(lo)
    }

    /// `nextBytes(bytes)`: each `nextInt` fills up to 4 bytes, low byte first.
    pub fn next_bytes(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(4) {
            let mut rnd = self.next_int();
            for b in chunk {
                *b = rnd as u8;
                rnd >>= 8;
            }
        }
    }
}

/// The session password: `new Random(sessionId ^ 0xB3415C00).nextBytes(16 bytes)`
/// (`ZooKeeperServer.generatePasswd`).
pub fn generate_password(session_id: SessionId) -> [u8; 16] {
    let mut p = [0u8; 16];
    JavaRandom::new(session_id ^ SUPER_SECRET).next_bytes(&mut p);
    p
}

/// `ZooKeeperServer.checkPasswd`: a reconnect must present the password of its session id.
pub fn check_password(session_id: SessionId, password: &[u8]) -> bool {
    session_id != 0 && password == generate_password(session_id)
}

/// The timeout granted to a connect request: the requested value clamped to
/// `[min_ms, max_ms]`.
pub fn negotiate_timeout(requested_ms: i32, min_ms: u32, max_ms: u32) -> u32 {
    let requested = u32::try_from(requested_ms).unwrap_or(0);
    requested.max(min_ms).min(max_ms.max(min_ms))
}

/// The first session id of server `server_id` (`SessionTrackerImpl.initializeNextSessionId`):
/// the high byte is the server id, the next five bytes the low 40 bits of `now_ms`.
pub fn initial_session_id(server_id: u64, now_ms: u64) -> SessionId {
    let time_part = (now_ms << 24) >> 8;
    let id = (time_part | (server_id << 56)) as i64;
    if id == CONTAINER_EPHEMERAL_OWNER {
        id + 1
    } else {
        id
    }
}

/// What the tracker knows about one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session id.
    pub id: SessionId,
    /// The negotiated timeout.
    pub timeout_ms: u32,
    /// Expired or closing: no longer touchable.
    pub closing: bool,
    /// The connection that owns it (set by [`SessionTracker::set_owner`] / checks).
    pub owner: Option<u64>,
    /// The bucket it expires in, ms.
    pub expires_at_ms: u64,
}

/// Tracks live sessions and when they expire (`SessionTrackerImpl`).
#[derive(Debug, Clone)]
pub struct SessionTracker {
    tick_ms: u64,
    next_id: SessionId,
    sessions: HashMap<SessionId, SessionInfo>,
    /// expiry time → sessions (`ExpiryQueue.expiryMap`).
    buckets: BTreeMap<u64, BTreeSet<SessionId>>,
}

impl SessionTracker {
    /// A tracker for server `server_id` with buckets of `tick_time_ms`, started at `now_ms`.
    pub fn new(server_id: u64, tick_time_ms: u32, now_ms: u64) -> Self {
        SessionTracker {
            tick_ms: u64::from(tick_time_ms.max(1)),
            next_id: initial_session_id(server_id, now_ms),
            sessions: HashMap::new(),
            buckets: BTreeMap::new(),
        }
    }

    /// The expiry bucket for a deadline (`ExpiryQueue.roundToNextInterval`).
    fn bucket_for(&self, deadline_ms: u64) -> u64 {
        (deadline_ms / self.tick_ms)
            .saturating_add(1)
            .saturating_mul(self.tick_ms)
    }

    /// The id the next [`Self::create_session`] hands out.
    pub fn next_session_id(&self) -> SessionId {
        self.next_id
    }

    /// Creates a session with a fresh id and starts its expiry clock.
    pub fn create_session(&mut self, timeout_ms: u32, now_ms: u64) -> SessionId {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        if self.next_id == CONTAINER_EPHEMERAL_OWNER {
            self.next_id = self.next_id.wrapping_add(1);
        }
        self.track_session(id, timeout_ms, now_ms);
        id
    }

    /// Tracks a session created elsewhere (loaded from the database, or created through
    /// another server); true if it was new. An existing session is only touched.
    pub fn track_session(&mut self, id: SessionId, timeout_ms: u32, now_ms: u64) -> bool {
        let added = !self.sessions.contains_key(&id);
        if added {
            self.sessions.insert(
                id,
                SessionInfo {
                    id,
                    timeout_ms,
                    closing: false,
                    owner: None,
                    expires_at_ms: 0,
                },
            );
        }
        self.update_expiry(id, timeout_ms, now_ms);
        added
    }

    fn update_expiry(&mut self, id: SessionId, timeout_ms: u32, now_ms: u64) {
        let new = self.bucket_for(now_ms.saturating_add(u64::from(timeout_ms)));
        let Some(info) = self.sessions.get_mut(&id) else {
            return;
        };
        let old = info.expires_at_ms;
        if old == new {
            return;
        }
        info.expires_at_ms = new;
        if let Some(set) = self.buckets.get_mut(&old) {
            set.remove(&id);
            if set.is_empty() {
                self.buckets.remove(&old);
            }
        }
        self.buckets.entry(new).or_default().insert(id);
    }

    /// Records activity of a session (a request or ping): its expiry moves to
    /// `now_ms + timeout_ms`, rounded up to the next tick. False for unknown or closing
    /// sessions.
    pub fn touch(&mut self, id: SessionId, timeout_ms: u32, now_ms: u64) -> bool {
        match self.sessions.get(&id) {
            Some(s) if !s.closing => {
                self.update_expiry(id, timeout_ms, now_ms);
                true
            }
            _ => false,
        }
    }

    /// The sessions whose bucket is at or before `now_ms`, in id order; they are marked
    /// closing (and leave the expiry queue) but stay tracked until
    /// [`Self::remove_session`].
    pub fn expired(&mut self, now_ms: u64) -> Vec<SessionId> {
        let later = match now_ms.checked_add(1) {
            Some(first_later) => self.buckets.split_off(&first_later),
            None => BTreeMap::new(),
        };
        let due = std::mem::replace(&mut self.buckets, later);
        let mut out: Vec<SessionId> = due.into_values().flatten().collect();
        out.sort_unstable();
        for id in &out {
            if let Some(s) = self.sessions.get_mut(id) {
                s.closing = true;
                s.expires_at_ms = 0;
            }
        }
        out
    }

    /// When the next bucket expires (the time to wake up), if any session is queued.
    pub fn next_expiration_ms(&self) -> Option<u64> {
        self.buckets.keys().next().copied()
    }

    /// A new leader takes over the sessions of its tree, as ZooKeeper's leader builds a
    /// fresh `SessionTrackerImpl` from the database: each gets a fresh timeout, and a
    /// closing mark left by an earlier role of this server (a closeSession it submitted
    /// that never committed, say while it was paused or cut off) is cleared, so the
    /// session is live again instead of being reported expired on revalidation.
    pub fn take_over(&mut self, sessions: impl IntoIterator<Item = (SessionId, u32)>, now_ms: u64) {
        for (id, timeout_ms) in sessions {
            if let Some(s) = self.sessions.get_mut(&id)
                && s.closing
            {
                s.closing = false;
                s.timeout_ms = timeout_ms;
            }
            self.track_session(id, timeout_ms, now_ms);
        }
    }

    /// Marks a session closing (a closeSession is in flight); true if it is tracked. It
    /// leaves the expiry queue, so [`Self::expired`] never reports it again (ZooKeeper
    /// would, and submit a second close).
    pub fn set_closing(&mut self, id: SessionId) -> bool {
        let Some(s) = self.sessions.get_mut(&id) else {
            return false;
        };
        s.closing = true;
        let at = std::mem::take(&mut s.expires_at_ms);
        if let Some(set) = self.buckets.get_mut(&at) {
            set.remove(&id);
            if set.is_empty() {
                self.buckets.remove(&at);
            }
        }
        true
    }

    /// Forgets a session (its closeSession committed).
    pub fn remove_session(&mut self, id: SessionId) -> Option<SessionInfo> {
        let info = self.sessions.remove(&id)?;
        if let Some(set) = self.buckets.get_mut(&info.expires_at_ms) {
            set.remove(&id);
            if set.is_empty() {
                self.buckets.remove(&info.expires_at_ms);
            }
        }
        Some(info)
    }

    /// `checkSession`: the session must be tracked, not closing, and owned by `owner`
    /// (the first check claims an unowned session).
    pub fn check_session(&mut self, id: SessionId, owner: u64) -> Result<(), SessionError> {
        let s = self
            .sessions
            .get_mut(&id)
            .ok_or(SessionError::UnknownSession)?;
        if s.closing {
            return Err(SessionError::SessionExpired);
        }
        match s.owner {
            None => {
                s.owner = Some(owner);
                Ok(())
            }
            Some(o) if o == owner => Ok(()),
            Some(_) => Err(SessionError::SessionMoved),
        }
    }

    /// `setOwner`: a connection (re)attaches to the session.
    pub fn set_owner(&mut self, id: SessionId, owner: u64) -> Result<(), SessionError> {
        match self.sessions.get_mut(&id) {
            Some(s) if !s.closing => {
                s.owner = Some(owner);
                Ok(())
            }
            _ => Err(SessionError::SessionExpired),
        }
    }

    /// One session.
    pub fn session(&self, id: SessionId) -> Option<&SessionInfo> {
        self.sessions.get(&id)
    }

    /// True if the session is tracked (closing or not).
    pub fn is_tracking(&self, id: SessionId) -> bool {
        self.sessions.contains_key(&id)
    }

    /// Number of tracked sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// True when no session is tracked.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Every tracked session with its timeout, in id order (the `sessionsWithTimeout`
    /// a snapshot stores).
    pub fn sessions_with_timeouts(&self) -> BTreeMap<SessionId, u32> {
        self.sessions
            .values()
            .map(|s| (s.id, s.timeout_ms))
            .collect()
    }

    /// Expiry time → sessions, ascending (`getSessionExpiryMap`, for `dump`).
    pub fn expiry_map(&self) -> &BTreeMap<u64, BTreeSet<SessionId>> {
        &self.buckets
    }

    /// The session part of the `dump` reply (`SessionTrackerImpl.dumpSessions`);
    /// `format_time` turns a bucket time into the text ZooKeeper prints as a date.
    pub fn dump_text(&self, format_time: impl Fn(u64) -> String) -> String {
        let mut out = format!(
            "Session Sets ({})/({}):\n",
            self.buckets.len(),
            self.sessions.len()
        );
        for (time, ids) in &self.buckets {
            out.push_str(&format!(
                "{} expire at {}:\n",
                ids.len(),
                format_time(*time)
            ));
            for id in ids {
                out.push_str(&format!("\t0x{id:x}\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// Values printed by OpenJDK 17's `java.util.Random` for the same seeds.
    #[test]
    fn java_random_matches_the_jdk() {
        assert_eq!(JavaRandom::new(0).next_int(), -1_155_484_576);
        assert_eq!(JavaRandom::new(42).next_long(), -5_025_562_857_975_149_833);
    }

    /// Reference passwords from `ZooKeeperServer.generatePasswd` of ZooKeeper 3.8.0 (called
    /// through reflection on OpenJDK 17).
    #[test]
    fn passwords_match_zookeeper() {
        for (id, want) in [
            (0i64, "f22acd4a97e69d6d20a49bb638eadb38"),
            (1, "054cc74a37327db215e702e20c73f005"),
            (0x0100_0000_0000_0000, "f22acd4a97e69d6d20a49bb638eadb38"),
            (0x0100_0018_bcfe_5680, "14783838bb3358754cd0eb07ff62ff04"),
            (-1, "20f62cb5648dc2d771471c8a2486a9ee"),
            (0x7200_0a1b_2c3d_4e00, "ce0083690e6f110430b01555d5462764"),
        ] {
            assert_eq!(hex(&generate_password(id)), want, "{id:#x}");
        }
    }

    /// The password depends on the low 48 bits of `id ^ 0xB3415C00` only (the LCG's
    /// seed width), which is why ids 0 and 1 << 56 share one above; the check still
    /// rejects session 0 and wrong passwords.
    #[test]
    fn password_check() {
        let id = 0x0100_0018_bcfe_5680;
        let p = generate_password(id);
        assert!(check_password(id, &p));
        assert!(!check_password(id + 1, &p));
        assert!(!check_password(0, &generate_password(0)));
        assert!(!check_password(id, &p[..15]));
        assert!(!check_password(id, &[0u8; 16]));
    }

    #[test]
    fn next_bytes_uses_each_int_low_byte_first() {
        let mut r = JavaRandom::new(7);
        let mut b = [0u8; 6];
        r.next_bytes(&mut b);
        let mut r2 = JavaRandom::new(7);
        let (a, c) = (r2.next_int(), r2.next_int());
        assert_eq!(b[..4], a.to_le_bytes());
        assert_eq!(b[4..], c.to_le_bytes()[..2]);
    }

    /// Expected ids computed with Java's `(now << 24) >>> 8 | (sid << 56)`.
    #[test]
    fn initial_session_ids_match_zookeeper() {
        for (now, sid, want) in [
            (0u64, 1u64, 0x0100_0000_0000_0000u64),
            (1, 1, 0x0100_0000_0001_0000),
            (1_700_000_000_000, 1, 0x018b_cfe5_6800_0000),
            (1_700_000_000_000, 127, 0x7f8b_cfe5_6800_0000),
            (1_700_000_000_000, 255, 0xff8b_cfe5_6800_0000),
            (123_456_789, 3, 0x0300_075b_cd15_0000),
            (0xff_ffff_ffff, 0, 0x00ff_ffff_ffff_0000),
            (0xff_ffff_ffff, 255, 0xffff_ffff_ffff_0000),
        ] {
            assert_eq!(initial_session_id(sid, now), want as i64, "{now} {sid}");
        }
        // Server 128 at time 0 would be the container sentinel: skipped.
        assert_eq!(initial_session_id(128, 0), i64::MIN + 1);
    }

    #[test]
    fn ids_count_up_from_the_initial_one() {
        let mut t = SessionTracker::new(3, 2000, 123_456_789);
        let first = t.create_session(4000, 0);
        let second = t.create_session(4000, 0);
        assert_eq!(first, 0x0300_075b_cd15_0000);
        assert_eq!(second, first + 1);
        assert_eq!(t.next_session_id(), first + 2);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn negotiated_timeout_is_clamped() {
        assert_eq!(negotiate_timeout(30_000, 4000, 40_000), 30_000);
        assert_eq!(negotiate_timeout(100, 4000, 40_000), 4000);
        assert_eq!(negotiate_timeout(1_000_000, 4000, 40_000), 40_000);
        assert_eq!(negotiate_timeout(-5, 4000, 40_000), 4000);
        assert_eq!(negotiate_timeout(0, 4000, 40_000), 4000);
        assert_eq!(negotiate_timeout(i32::MAX, 4000, 40_000), 40_000);
    }

    #[test]
    fn expiry_rounds_up_to_the_next_tick() {
        let mut t = SessionTracker::new(1, 2000, 0);
        let id = t.create_session(5000, 10_500);
        // 10_500 + 5000 = 15_500 → bucket 16_000.
        assert_eq!(t.session(id).unwrap().expires_at_ms, 16_000);
        assert_eq!(t.next_expiration_ms(), Some(16_000));
        assert!(t.expired(15_999).is_empty());
        assert_eq!(t.expired(16_000), vec![id]);
        assert!(t.session(id).unwrap().closing);
        assert_eq!(t.next_expiration_ms(), None);
        // An exact multiple still moves to the next bucket: 14_000 + 2000 → 18_000.
        let id2 = t.create_session(2000, 14_000);
        assert_eq!(t.session(id2).unwrap().expires_at_ms, 18_000);
    }

    #[test]
    fn touch_postpones_expiry_and_buckets_batch_sessions() {
        let mut t = SessionTracker::new(1, 1000, 0);
        let a = t.create_session(3000, 0);
        let b = t.create_session(3000, 100);
        let c = t.create_session(3000, 900);
        // All three land in bucket 4000.
        assert_eq!(t.expiry_map().len(), 1);
        assert!(t.touch(b, 3000, 2500)); // → 6000
        assert_eq!(t.expired(4000), vec![a, c]);
        assert!(
            !t.touch(a, 3000, 4000),
            "closing sessions cannot be touched"
        );
        assert!(!t.touch(12345, 3000, 4000), "unknown session");
        assert_eq!(t.expired(5999), Vec::<SessionId>::new());
        assert_eq!(t.expired(100_000), vec![b]);
        // Expired sessions are still tracked until removed.
        assert_eq!(t.len(), 3);
        assert!(t.remove_session(a).is_some());
        assert!(t.remove_session(a).is_none());
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn expired_handles_large_time_jumps_and_empty_queues() {
        let mut t = SessionTracker::new(1, 1, 0);
        assert!(t.expired(u64::MAX).is_empty());
        let ids: Vec<SessionId> = (0..100).map(|i| t.create_session(1000 + i, 0)).collect();
        assert_eq!(t.expiry_map().len(), 100);
        assert_eq!(t.expired(u64::MAX), ids);
        // A huge timeout near the end of time saturates instead of overflowing.
        let id = t.create_session(u32::MAX, u64::MAX - 5);
        assert_eq!(t.session(id).unwrap().expires_at_ms, u64::MAX);
        assert_eq!(t.expired(u64::MAX), vec![id]);
    }

    #[test]
    fn remove_session_leaves_no_empty_bucket() {
        let mut t = SessionTracker::new(1, 2000, 0);
        let id = t.create_session(4000, 0);
        assert_eq!(t.next_expiration_ms(), Some(6000));
        t.remove_session(id);
        assert_eq!(t.next_expiration_ms(), None);
        assert!(t.is_empty());
        assert!(!t.is_tracking(id));
    }

    #[test]
    fn track_existing_session_only_touches_it() {
        let mut t = SessionTracker::new(1, 1000, 0);
        assert!(t.track_session(77, 5000, 0));
        assert!(!t.track_session(77, 5000, 10_000));
        assert_eq!(t.session(77).unwrap().expires_at_ms, 16_000);
        assert_eq!(t.sessions_with_timeouts(), BTreeMap::from([(77, 5000)]));
    }

    #[test]
    fn take_over_revives_sessions_left_closing_by_an_earlier_leadership() {
        let mut t = SessionTracker::new(1, 1000, 0);
        t.track_session(7, 4000, 0);
        t.track_session(8, 4000, 0);
        // This server led, was paused past the timeouts, and marked both closing; its
        // closeSession txns never committed (another leader took over meanwhile).
        assert_eq!(t.expired(60_000), vec![7, 8]);
        assert!(!t.touch(7, 4000, 60_000));
        // Leading again, with only session 7 still in the tree.
        t.take_over([(7, 4000)], 70_000);
        assert!(t.touch(7, 4000, 70_500));
        assert_eq!(t.check_session(7, 1), Ok(()));
        assert_eq!(t.session(7).map(|s| s.expires_at_ms), Some(75_000));
        assert_eq!(t.expired(74_000), Vec::<SessionId>::new());
        assert_eq!(t.expired(75_000), vec![7]);
        // A session of the tree this server never saw is simply tracked.
        t.take_over([(9, 2000)], 80_000);
        assert!(t.touch(9, 2000, 80_000));
        // Session 8 is not in the tree: take_over leaves its mark alone.
        assert!(!t.touch(8, 4000, 80_000));
    }

    #[test]
    fn ownership_and_session_checks() {
        let mut t = SessionTracker::new(1, 1000, 0);
        assert_eq!(t.check_session(5, 1), Err(SessionError::UnknownSession));
        let id = t.create_session(3000, 0);
        assert_eq!(t.check_session(id, 1), Ok(()));
        assert_eq!(t.check_session(id, 1), Ok(()));
        assert_eq!(t.check_session(id, 2), Err(SessionError::SessionMoved));
        assert_eq!(t.set_owner(id, 2), Ok(()));
        assert_eq!(t.check_session(id, 2), Ok(()));
        assert!(t.set_closing(id));
        assert!(!t.set_closing(999));
        assert_eq!(t.check_session(id, 2), Err(SessionError::SessionExpired));
        assert_eq!(t.set_owner(id, 3), Err(SessionError::SessionExpired));
        assert_eq!(SessionError::SessionMoved.code(), ErrorCode::SessionMoved);
        assert_eq!(
            SessionError::UnknownSession.code(),
            ErrorCode::UnknownSession
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Create(u32),
        Touch(usize, u32),
        Advance(u64),
        Expire,
        Remove(usize),
        Close(usize),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            (0u32..20_000).prop_map(Op::Create),
            (0usize..16, 0u32..20_000).prop_map(|(i, t)| Op::Touch(i, t)),
            (0u64..5_000).prop_map(Op::Advance),
            Just(Op::Expire),
            (0usize..16).prop_map(Op::Remove),
            (0usize..16).prop_map(Op::Close),
        ]
    }

    proptest::proptest! {
        /// Against a plain model: a session expires at the first tick multiple strictly
        /// after its last touch plus timeout, once, and only while not closing.
        #[test]
        fn expiry_matches_a_model(tick in 1u32..3000, ops in proptest::collection::vec(op(), 1..80)) {
            let mut t = SessionTracker::new(2, tick, 0);
            let tick = u64::from(tick);
            let mut now = 0u64;
            let mut ids: Vec<SessionId> = Vec::new();
            // id -> (deadline bucket, closing)
            let mut model: HashMap<SessionId, (u64, bool)> = HashMap::new();
            for op in ops {
                match op {
                    Op::Create(timeout) => {
                        let id = t.create_session(timeout, now);
                        ids.push(id);
                        model.insert(id, (((now + u64::from(timeout)) / tick + 1) * tick, false));
                    }
                    Op::Touch(i, timeout) => {
                        let Some(&id) = ids.get(i) else { continue };
                        let ok = t.touch(id, timeout, now);
                        let want = matches!(model.get(&id), Some((_, false)));
                        proptest::prop_assert_eq!(ok, want);
                        if want {
                            model.insert(id, (((now + u64::from(timeout)) / tick + 1) * tick, false));
                        }
                    }
                    Op::Advance(ms) => now += ms,
                    Op::Expire => {
                        let got = t.expired(now);
                        let mut want: Vec<SessionId> = model
                            .iter()
                            .filter(|(_, (at, closing))| !closing && *at <= now)
                            .map(|(id, _)| *id)
                            .collect();
                        want.sort_unstable();
                        proptest::prop_assert_eq!(&got, &want);
                        for id in got {
                            model.get_mut(&id).unwrap().1 = true;
                        }
                    }
                    Op::Remove(i) => {
                        let Some(&id) = ids.get(i) else { continue };
                        proptest::prop_assert_eq!(t.remove_session(id).is_some(), model.remove(&id).is_some());
                    }
                    Op::Close(i) => {
                        let Some(&id) = ids.get(i) else { continue };
                        proptest::prop_assert_eq!(t.set_closing(id), model.contains_key(&id));
                        if let Some(m) = model.get_mut(&id) {
                            m.1 = true;
                        }
                    }
                }
                proptest::prop_assert_eq!(t.len(), model.len());
                let queued: usize = t.expiry_map().values().map(BTreeSet::len).sum();
                let live = model.values().filter(|(_, closing)| !closing).count();
                proptest::prop_assert_eq!(queued, live);
                if let Some(next) = t.next_expiration_ms() {
                    let min = model.values().filter(|(_, c)| !c).map(|(at, _)| *at).min();
                    proptest::prop_assert_eq!(Some(next), min);
                }
                proptest::prop_assert!(t.expiry_map().values().all(|s| !s.is_empty()));
            }
        }
    }

    #[test]
    fn dump_text_lists_buckets_in_time_order() {
        let mut t = SessionTracker::new(1, 1000, 0);
        let a = t.create_session(1000, 0);
        let b = t.create_session(5000, 0);
        let text = t.dump_text(|ms| format!("t+{ms}"));
        assert_eq!(
            text,
            format!(
                "Session Sets (2)/(2):\n1 expire at t+2000:\n\t0x{a:x}\n1 expire at t+6000:\n\t0x{b:x}\n"
            )
        );
    }
}
