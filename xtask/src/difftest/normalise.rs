//! Turns replies into text that can be compared across the two systems.
//!
//! What differs between two correct servers is taken out:
//! * zxids (`czxid`, `mzxid`, `pzxid`) become `z<rank>`, the rank of the value's first
//!   appearance in the replay: equal zxids stay equal, distinct ones distinct, but the
//!   numbers themselves (epochs, txns that consumed zxids unseen) do not count;
//! * session ids (`ephemeralOwner`) become `S<n>`, the n-th session the replay opened
//!   (`s?<rank>` for one it did not open);
//! * `ctime` and `mtime` are left out (two ops in the same millisecond on one system
//!   and not on the other would look different);
//! * children (`getChildren`, `getChildren2`, multiRead), `getEphemerals` and `whoAmI`
//!   lists are sorted: Apache ZooKeeper answers in hash-set order, ours in name order,
//!   and neither promises an order, so they are compared as sets;
//! * ACL entries (`getACL`) are compared as a set too: Apache expands an `auth:` entry
//!   into one entry per identity of the session in the order of its `authInfo`, a hash
//!   set (a session with `alice` and `bob` gets them in either order), and an ACL grants
//!   by any entry, so the order carries no meaning.
//!
//! Everything else — error codes, data (null apart from empty), versions, cversion,
//! aversion, dataLength, numChildren, paths, watch events in the order they arrived per
//! session — is compared as it is.

use std::collections::HashMap;
use std::fmt::Write as _;

use zk_proto::data::{Acl, Stat};
use zk_proto::jute::{ClientInfo, MultiResult};
use zk_proto::zxid::Zxid;
use zk_server::client::Error as ZkError;

/// The replay-wide maps from raw values to their normalised names.
#[derive(Debug, Default)]
pub struct Normaliser {
    zxids: HashMap<Zxid, usize>,
    sessions: HashMap<i64, usize>,
    unknown_sessions: HashMap<i64, usize>,
}

/// Data as text: `null`, a quoted string, or its length and FNV hash when long or binary.
pub fn data(d: Option<&[u8]>) -> String {
    match d {
        None => "null".to_owned(),
        Some(b) if b.len() <= 32 && b.iter().all(|c| c.is_ascii_graphic() || *c == b' ') => {
            format!("{:?}", String::from_utf8_lossy(b))
        }
        Some(b) => {
            let mut h = 0xcbf2_9ce4_8422_2325u64;
            for c in b {
                h ^= u64::from(*c);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            format!("<{} bytes {h:016x}>", b.len())
        }
    }
}

/// A list of names as a sorted set.
pub fn set(items: &[String]) -> String {
    let mut v: Vec<&str> = items.iter().map(String::as_str).collect();
    v.sort_unstable();
    format!("{{{}}}", v.join(","))
}

/// ACL entries as a sorted set (see the module doc: Apache expands an `auth` entry in
/// the hash order of the session's identities).
pub fn acl(acl: &[Acl]) -> String {
    let parts: Vec<String> = acl
        .iter()
        .map(|a| format!("{}:{}:{}", a.id.scheme, a.id.id, a.perms))
        .collect();
    set(&parts)
}

/// `whoAmI` entries as a sorted set.
pub fn who(infos: &[ClientInfo]) -> String {
    let v: Vec<String> = infos
        .iter()
        .map(|i| format!("{}:{}", i.auth_scheme, i.user))
        .collect();
    set(&v)
}

impl Normaliser {
    /// Registers the id of a session the replay opened (the n-th becomes `S<n>`).
    pub fn session(&mut self, id: i64) {
        let n = self.sessions.len();
        self.sessions.entry(id).or_insert(n);
    }

    /// A zxid as `z<rank of first appearance>`.
    pub fn zxid(&mut self, z: Zxid) -> String {
        let n = self.zxids.len();
        format!("z{}", self.zxids.entry(z).or_insert(n))
    }

    /// An ephemeral owner: `0`, `S<n>` for a session of the replay, `s?<rank>` else.
    pub fn owner(&mut self, id: i64) -> String {
        if id == 0 {
            return "0".to_owned();
        }
        if let Some(n) = self.sessions.get(&id) {
            return format!("S{n}");
        }
        let n = self.unknown_sessions.len();
        format!("s?{}", self.unknown_sessions.entry(id).or_insert(n))
    }

    /// A Stat without its times, zxids and owner normalised.
    pub fn stat(&mut self, s: &Stat) -> String {
        let cz = self.zxid(s.czxid);
        let mz = self.zxid(s.mzxid);
        let pz = self.zxid(s.pzxid);
        let owner = self.owner(s.ephemeral_owner);
        format!(
            "{{cz={cz} mz={mz} pz={pz} v={} cv={} av={} owner={owner} len={} kids={}}}",
            s.version, s.cversion, s.aversion, s.data_length, s.num_children
        )
    }

    /// One result of a multi or multiRead.
    pub fn multi_result(&mut self, r: &MultiResult) -> String {
        match r {
            MultiResult::Create(c) => format!("create {}", c.path),
            MultiResult::Create2(c) => format!("create2 {} {}", c.path, self.stat(&c.stat)),
            MultiResult::Delete => "delete".to_owned(),
            MultiResult::SetData(s) => format!("setData {}", self.stat(&s.stat)),
            MultiResult::Check => "check".to_owned(),
            MultiResult::GetChildren(c) => format!("children {}", set(&c.children)),
            MultiResult::GetData(d) => {
                format!("data {} {}", data(d.data.as_deref()), self.stat(&d.stat))
            }
            MultiResult::Error(e) => match zk_proto::data::ErrorCode::try_from(e.err) {
                Ok(code) => format!("error {code:?}"),
                Err(raw) => format!("error {raw}"),
            },
        }
    }

    /// All results of a multi or multiRead.
    pub fn multi_results(&mut self, rs: &[MultiResult]) -> String {
        let parts: Vec<String> = rs.iter().map(|r| self.multi_result(r)).collect();
        format!("[{}]", parts.join("; "))
    }

    /// A failed call.
    pub fn error(&mut self, e: &ZkError) -> String {
        match e {
            ZkError::Keeper(code) => format!("Err({code:?})"),
            ZkError::Multi {
                code,
                index,
                results,
            } => {
                let rs = self.multi_results(results);
                format!("Err(multi {code:?} at {index}: {rs})")
            }
            ZkError::UnknownCode(c) => format!("Err(code {c})"),
            ZkError::Closed => "Err(client closed)".to_owned(),
            ZkError::InvalidPath { reason, .. } => format!("Err(client: bad path, {reason})"),
            ZkError::BadArgument(why) => format!("Err(client: {why})"),
            other => {
                let mut s = String::new();
                let _ = write!(s, "Err({other})");
                s
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(czxid: i64, mzxid: i64, pzxid: i64, owner: i64, ctime: i64) -> Stat {
        Stat {
            czxid,
            mzxid,
            pzxid,
            ctime,
            mtime: ctime + 5,
            version: 1,
            cversion: 2,
            aversion: 0,
            ephemeral_owner: owner,
            data_length: 3,
            num_children: 1,
        }
    }

    /// The same history with other raw zxids, session ids and times reads the same.
    #[test]
    fn raw_values_differ_but_normalised_text_is_equal() {
        let mut ours = Normaliser::default();
        ours.session(0x100);
        ours.session(0x200);
        let mut theirs = Normaliser::default();
        theirs.session(0x7fff_0001);
        theirs.session(0x7fff_0002);
        let a = [
            ours.stat(&stat(
                0x1_0000_0005,
                0x1_0000_0005,
                0x1_0000_0005,
                0x200,
                10,
            )),
            ours.stat(&stat(0x1_0000_0007, 0x1_0000_0009, 0x1_0000_0005, 0, 99)),
            ours.owner(0x100),
        ];
        let b = [
            theirs.stat(&stat(
                0x3_0000_0010,
                0x3_0000_0010,
                0x3_0000_0010,
                0x7fff_0002,
                77,
            )),
            theirs.stat(&stat(0x3_0000_0012, 0x3_0000_0020, 0x3_0000_0010, 0, 1)),
            theirs.owner(0x7fff_0001),
        ];
        assert_eq!(a, b);
        assert_eq!(
            a[0],
            "{cz=z0 mz=z0 pz=z0 v=1 cv=2 av=0 owner=S1 len=3 kids=1}"
        );
        assert_eq!(a[2], "S0");
    }

    /// Equal zxids on one side and distinct ones on the other, or another owner, or
    /// another version, do show.
    #[test]
    fn structural_differences_survive() {
        let mut ours = Normaliser::default();
        let mut theirs = Normaliser::default();
        ours.session(1);
        theirs.session(2);
        // ours: mzxid == czxid; theirs: mzxid is a new zxid.
        assert_ne!(
            ours.stat(&stat(5, 5, 5, 0, 0)),
            theirs.stat(&stat(5, 6, 5, 0, 0))
        );
        let mut ours = Normaliser::default();
        let mut theirs = Normaliser::default();
        ours.session(1);
        theirs.session(2);
        // An owner that is the replay's session versus one that is not.
        assert_ne!(ours.owner(1), theirs.owner(3));
        let mut s = stat(1, 1, 1, 0, 0);
        let plain = Normaliser::default().stat(&s);
        s.cversion = 4;
        assert_ne!(Normaliser::default().stat(&s), plain);
    }

    #[test]
    fn lists_are_sets_and_data_keeps_null_apart() {
        let a = set(&["b".into(), "a".into(), "c".into()]);
        let b = set(&["c".into(), "a".into(), "b".into()]);
        assert_eq!(a, b);
        assert_eq!(a, "{a,b,c}");
        assert_ne!(set(&["a".into()]), set(&["a".into(), "b".into()]));
        let e = |p: i32, s: &str, id: &str| Acl {
            perms: p,
            id: zk_proto::data::Id::new(s, id),
        };
        let ab = [e(31, "digest", "a:x"), e(31, "digest", "b:y")];
        let ba = [e(31, "digest", "b:y"), e(31, "digest", "a:x")];
        assert_eq!(acl(&ab), acl(&ba));
        assert_ne!(
            acl(&ab),
            acl(&[e(1, "digest", "a:x"), e(31, "digest", "b:y")])
        );
        assert_eq!(data(None), "null");
        assert_eq!(data(Some(b"")), "\"\"");
        assert_ne!(data(None), data(Some(b"")));
        assert!(data(Some(&[0u8; 100])).starts_with("<100 bytes "));
        assert_ne!(data(Some(&[0u8; 100])), data(Some(&[1u8; 100])));
    }
}
