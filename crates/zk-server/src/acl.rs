//! Authentication schemes and permission checks, as ZooKeeper's auth providers,
//! `ZooKeeperServer.checkACL` and `PrepRequestProcessor.fixupACL` do them.
//!
//! A session holds a list of [`Id`]s: `ip:<address>` from the moment it connects
//! ([`connection_ids`]), plus whatever `addauth` packets add ([`AuthProviders::authenticate`],
//! [`add_auth_ids`]). Schemes:
//!
//! * `world:anyone` matches everyone;
//! * `auth` in a create/setACL request expands to every *authenticated* id of the session
//!   (`digest` ids; `ip` ids do not count), and with none it is `InvalidACL`;
//! * `digest:user:base64(sha1("user:password"))`, from an `addauth digest user:password`;
//! * `ip:address[/bits]`, IPv4 or IPv6, matched against the connection's address;
//! * `super`: a session that authenticated with the configured `superDigest` passes every
//!   check.
//!
//! `skipACL` is the caller's business: when it is set, do not call [`check`].
//!
//! ```
//! use std::net::IpAddr;
//! use zk_proto::data::{perms, Acl, ErrorCode, Id};
//! use zk_server::acl::{self, AuthProviders};
//!
//! let remote: IpAddr = "10.1.2.3".parse().unwrap();
//! let mut ids = acl::connection_ids(remote);
//! let added = AuthProviders::default().authenticate("digest", b"user:password", remote).unwrap();
//! acl::add_auth_ids(&mut ids, added);
//!
//! // create /x with CREATOR_ALL_ACL: `auth` becomes the session's digest id.
//! let node_acl = acl::fixup_acl(&ids, &Acl::creator_all()).unwrap();
//! assert_eq!(node_acl[0].id, Id::new("digest", "user:tpUq/4Pn5A64fVZyQ0gOJ8ZWqkY="));
//! assert!(acl::check(&node_acl, &ids, perms::WRITE).is_ok());
//!
//! let stranger = acl::connection_ids(remote);
//! let err = acl::check(&node_acl, &stranger, perms::READ).unwrap_err();
//! assert_eq!(ErrorCode::from(err), ErrorCode::NoAuth);
//! ```

use std::net::IpAddr;

use base64::Engine as _;
use zk_proto::data::{Acl, ErrorCode, Id, OpCode};

/// ACL and authentication failures, each one of ZooKeeper's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    /// The session's ids do not grant the permission (`NoAuth`).
    #[error("not authenticated for this operation")]
    NoAuth,
    /// The ACL of a create/setACL is empty, malformed or names an unknown scheme
    /// (`InvalidACL`).
    #[error("invalid ACL")]
    InvalidAcl,
    /// An `addauth` packet was refused: unknown scheme (`AuthFailed`).
    #[error("authentication failed")]
    AuthFailed,
}

impl AclError {
    /// The wire error code.
    pub fn code(self) -> ErrorCode {
        match self {
            AclError::NoAuth => ErrorCode::NoAuth,
            AclError::InvalidAcl => ErrorCode::InvalidAcl,
            AclError::AuthFailed => ErrorCode::AuthFailed,
        }
    }
}

impl From<AclError> for ErrorCode {
    fn from(e: AclError) -> Self {
        e.code()
    }
}

/// `world`.
pub const SCHEME_WORLD: &str = "world";
/// `auth`.
pub const SCHEME_AUTH: &str = "auth";
/// `digest`.
pub const SCHEME_DIGEST: &str = "digest";
/// `ip`.
pub const SCHEME_IP: &str = "ip";
/// `super`.
pub const SCHEME_SUPER: &str = "super";

/// Java's `String.split(sep)`: like `str::split`, minus trailing empty strings.
fn java_split(s: &str, sep: char) -> Vec<&str> {
    let mut parts: Vec<&str> = s.split(sep).collect();
    while parts.last().is_some_and(|p| p.is_empty()) {
        parts.pop();
    }
    parts
}

/// The digest id for `user:password` (`DigestAuthenticationProvider.generateDigest`):
/// `user:` followed by base64 of SHA-1 over the whole `user:password` text.
///
/// ```
/// assert_eq!(zk_server::acl::digest("super:superpw"), "super:g9oN2HttPfn8MMWJZ2r45Np/LIA=");
/// ```
pub fn digest(user_password: &str) -> String {
    let user = user_password.split(':').next().unwrap_or("");
    let hash = sha1_smol::Sha1::from(user_password.as_bytes())
        .digest()
        .bytes();
    format!(
        "{user}:{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

/// The address text Java's `InetAddress.getHostAddress()` gives: dotted IPv4 (also for
/// IPv4-mapped IPv6), and IPv6 as eight uncompressed lowercase hex groups.
pub fn java_host_address(addr: IpAddr) -> String {
    match addr.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => v6
            .segments()
            .iter()
            .map(|s| format!("{s:x}"))
            .collect::<Vec<_>>()
            .join(":"),
    }
}

/// The ids every connection starts with: `ip:<remote address>`.
pub fn connection_ids(remote: IpAddr) -> Vec<Id> {
    vec![Id::new(SCHEME_IP, java_host_address(remote))]
}

/// Adds ids to a session's list, skipping ones it already has (`ServerCnxn.addAuthInfo`).
pub fn add_auth_ids(session_ids: &mut Vec<Id>, ids: impl IntoIterator<Item = Id>) {
    for id in ids {
        if !session_ids.contains(&id) {
            session_ids.push(id);
        }
    }
}

/// The server's authentication providers and their settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthProviders {
    /// `superDigest`: `super:<base64 sha1>`; a digest auth that produces exactly this id
    /// also gets `super:`.
    pub super_digest: Option<String>,
}

impl AuthProviders {
    /// Providers with an optional super digest.
    pub fn new(super_digest: Option<String>) -> Self {
        AuthProviders { super_digest }
    }

    /// Handles an auth packet (`addauth scheme data`) from a client at `remote`, giving
    /// the ids to add to the session. `digest`: `user:password` (any bytes; invalid UTF-8
    /// is replaced, as Java's `new String(bytes)` does); `ip`: the connection's address.
    /// Any other scheme is `AuthFailed`.
    pub fn authenticate(
        &self,
        scheme: &str,
        auth_data: &[u8],
        remote: IpAddr,
    ) -> Result<Vec<Id>, AclError> {
        match scheme {
            SCHEME_DIGEST => {
                let text = String::from_utf8_lossy(auth_data);
                let d = digest(&text);
                let mut ids = Vec::with_capacity(2);
                if self.super_digest.as_deref() == Some(d.as_str()) {
                    ids.push(Id::new(SCHEME_SUPER, ""));
                }
                ids.push(Id::new(SCHEME_DIGEST, d));
                Ok(ids)
            }
            SCHEME_IP => Ok(connection_ids(remote)),
            _ => Err(AclError::AuthFailed),
        }
    }
}

/// True if ids of this scheme count as authenticated for `auth` expansion
/// (`AuthenticationProvider.isAuthenticated`): `digest` yes, `ip` no, others unknown.
pub fn is_authenticated_scheme(scheme: &str) -> bool {
    scheme == SCHEME_DIGEST
}

/// Whether `id` is well formed for `scheme` (`AuthenticationProvider.isValid`); unknown
/// schemes are never valid.
pub fn is_valid_id(scheme: &str, id: &str) -> bool {
    match scheme {
        SCHEME_WORLD => id == "anyone",
        SCHEME_DIGEST => java_split(id, ':').len() == 2,
        SCHEME_IP => parse_ip_expr(id).is_some(),
        _ => false,
    }
}

/// Does the session id `id` of `scheme` satisfy an ACL entry's `acl_id`?
fn matches(scheme: &str, id: &str, acl_id: &str) -> bool {
    match scheme {
        SCHEME_DIGEST => id == acl_id,
        SCHEME_IP => ip_matches(id, acl_id),
        _ => false,
    }
}

/// `ZooKeeperServer.checkACL`: Ok if the node's ACL is empty, if the session has a
/// `super` id, or if an entry granting any bit of `perm` matches one of the session's
/// ids; else `NoAuth`.
pub fn check(node_acl: &[Acl], session_ids: &[Id], perm: i32) -> Result<(), AclError> {
    if node_acl.is_empty() || session_ids.iter().any(|id| id.scheme == SCHEME_SUPER) {
        return Ok(());
    }
    for a in node_acl.iter().filter(|a| a.perms & perm != 0) {
        if a.id.scheme == SCHEME_WORLD && a.id.id == "anyone" {
            return Ok(());
        }
        if session_ids
            .iter()
            .any(|s| s.scheme == a.id.scheme && matches(&s.scheme, &s.id, &a.id.id))
        {
            return Ok(());
        }
    }
    Err(AclError::NoAuth)
}

/// `PrepRequestProcessor.fixupACL`: validates the ACL of a create or setACL and expands
/// `auth` entries to the session's authenticated ids. Duplicates are dropped first; an
/// empty list, an unknown scheme, a malformed id, or `auth` without any authenticated id
/// is `InvalidACL`.
pub fn fixup_acl(session_ids: &[Id], acl: &[Acl]) -> Result<Vec<Acl>, AclError> {
    let mut unique: Vec<&Acl> = Vec::with_capacity(acl.len());
    for a in acl {
        if !unique.contains(&a) {
            unique.push(a);
        }
    }
    if unique.is_empty() {
        return Err(AclError::InvalidAcl);
    }
    let mut out = Vec::with_capacity(unique.len());
    for a in unique {
        if a.id.scheme == SCHEME_WORLD && a.id.id == "anyone" {
            out.push(a.clone());
        } else if a.id.scheme == SCHEME_AUTH {
            let mut any = false;
            for id in session_ids
                .iter()
                .filter(|id| is_authenticated_scheme(&id.scheme))
            {
                any = true;
                out.push(Acl {
                    perms: a.perms,
                    id: id.clone(),
                });
            }
            if !any {
                return Err(AclError::InvalidAcl);
            }
        } else if is_valid_id(&a.id.scheme, &a.id.id) {
            out.push(a.clone());
        } else {
            return Err(AclError::InvalidAcl);
        }
    }
    Ok(out)
}

/// Whose ACL guards an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclTarget {
    /// The node the request names.
    Node,
    /// Its parent (creates and deletes).
    Parent,
}

/// The ACL check ZooKeeper makes for a request (`PrepRequestProcessor`,
/// `FinalRequestProcessor`): which node's ACL and which permission bits (any one of them
/// suffices). None for operations without an ACL check (sync, ping, watches, session and
/// auth packets, getEphemerals, whoAmI, multi and multiRead themselves — their sub-ops are
/// checked one by one — and deleteContainer, which only the server issues). `exists` is
/// checked only when the node exists.
pub fn required_permission(op: OpCode) -> Option<(AclTarget, i32)> {
    use zk_proto::data::perms;
    match op {
        OpCode::Create | OpCode::Create2 | OpCode::CreateContainer | OpCode::CreateTtl => {
            Some((AclTarget::Parent, perms::CREATE))
        }
        OpCode::Delete => Some((AclTarget::Parent, perms::DELETE)),
        OpCode::SetData => Some((AclTarget::Node, perms::WRITE)),
        OpCode::SetAcl => Some((AclTarget::Node, perms::ADMIN)),
        OpCode::GetAcl => Some((AclTarget::Node, perms::READ | perms::ADMIN)),
        OpCode::Exists
        | OpCode::GetData
        | OpCode::GetChildren
        | OpCode::GetChildren2
        | OpCode::GetAllChildrenNumber
        | OpCode::Check => Some((AclTarget::Node, perms::READ)),
        _ => None,
    }
}

/// The ACL a getACL returns to this session: `NoAuth` without READ or ADMIN on the node;
/// without ADMIN, digest ids are shown as `user:x` so the password hashes stay hidden
/// (`FinalRequestProcessor`, getACL).
pub fn acl_for_reader(node_acl: &[Acl], session_ids: &[Id]) -> Result<Vec<Acl>, AclError> {
    use zk_proto::data::perms;
    check(node_acl, session_ids, perms::READ | perms::ADMIN)?;
    if check(node_acl, session_ids, perms::ADMIN).is_ok() {
        return Ok(node_acl.to_vec());
    }
    Ok(node_acl
        .iter()
        .map(|a| {
            let mut a = a.clone();
            if a.id.scheme == SCHEME_DIGEST
                && let Some(colon) = a.id.id.find(':')
            {
                a.id.id.truncate(colon);
                a.id.id.push_str(":x");
            }
            a
        })
        .collect())
}

/// One entry of a `whoAmI` reply (`ClientInfo{authScheme, user}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// The scheme.
    pub auth_scheme: String,
    /// The user name the scheme's provider gives (`""` when none).
    pub user: String,
}

/// `AuthUtil.getClientInfos`: the session's ids as `whoAmI` reports them (digest: the
/// user part; ip: the address; schemes without a provider, like `super`: empty).
pub fn who_am_i(session_ids: &[Id]) -> Vec<ClientInfo> {
    session_ids
        .iter()
        .map(|id| ClientInfo {
            auth_scheme: id.scheme.clone(),
            user: match id.scheme.as_str() {
                SCHEME_DIGEST => java_split(&id.id, ':')
                    .first()
                    .copied()
                    .unwrap_or("")
                    .to_string(),
                SCHEME_IP => id.id.clone(),
                _ => String::new(),
            },
        })
        .collect()
}

/// An address as bytes: 4 for IPv4, 16 for IPv6 (`IPAuthenticationProvider.addr2Bytes`).
fn addr_bytes(addr: &str) -> Option<Vec<u8>> {
    if addr.contains(':') {
        v6_bytes(addr)
    } else if addr.contains('.') {
        v4_bytes(addr)
    } else {
        None
    }
}

fn v4_bytes(addr: &str) -> Option<Vec<u8>> {
    let parts: Vec<&str> = addr.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    parts
        .iter()
        .map(|p| p.parse::<i32>().ok().and_then(|v| u8::try_from(v).ok()))
        .collect()
}

/// Splits IPv6 groups on `:`; the empty text has no groups.
fn split_segments(s: &str) -> Vec<&str> {
    if s.is_empty() {
        Vec::new()
    } else {
        s.split(':').collect()
    }
}

fn v6_bytes(addr: &str) -> Option<Vec<u8>> {
    let halves: Vec<&str> = addr.split("::").collect();
    let (head, tail): (Vec<&str>, Vec<&str>) = match halves.as_slice() {
        [all] => {
            let segs: Vec<&str> = all.split(':').collect();
            if segs.len() != 8 {
                return None;
            }
            (segs, Vec::new())
        }
        [a, b] => {
            let (h, t) = (split_segments(a), split_segments(b));
            if h.len() + t.len() >= 8 {
                return None;
            }
            (h, t)
        }
        _ => return None,
    };
    let seg = |s: &str| -> Option<[u8; 2]> {
        if s.is_empty() || s.len() > 4 {
            return None;
        }
        let v = i32::from_str_radix(s, 16).ok()?;
        Some([((v >> 8) & 0xff) as u8, (v & 0xff) as u8])
    };
    let mut out = vec![0u8; 16];
    for (i, s) in head.iter().enumerate() {
        let b = seg(s)?;
        out[2 * i..2 * i + 2].copy_from_slice(&b);
    }
    let start = 16 - 2 * tail.len();
    for (i, s) in tail.iter().enumerate() {
        let b = seg(s)?;
        out[start + 2 * i..start + 2 * i + 2].copy_from_slice(&b);
    }
    Some(out)
}

/// Parses `address[/bits]` into its bytes and the prefix length.
fn parse_ip_expr(expr: &str) -> Option<(Vec<u8>, usize)> {
    let (addr, bits) = match expr.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (expr, None),
    };
    let bytes = addr_bytes(addr)?;
    let max = bytes.len() * 8;
    let bits = match bits {
        None => max,
        Some(b) => {
            let b = b.parse::<i32>().ok()?;
            usize::try_from(b).ok().filter(|&b| b <= max)?
        }
    };
    Some((bytes, bits))
}

/// Clears every bit after the first `bits`.
fn mask(bytes: &mut [u8], bits: usize) {
    for (i, b) in bytes.iter_mut().enumerate() {
        let keep = bits.saturating_sub(i * 8).min(8);
        *b &= !(0xffu16 >> keep) as u8;
    }
}

/// `IPAuthenticationProvider.matches`: does the address `id` fall in `acl_expr`
/// (`address` or `address/bits`)? IPv4 never matches IPv6 and vice versa.
pub fn ip_matches(id: &str, acl_expr: &str) -> bool {
    let Some((mut acl, bits)) = parse_ip_expr(acl_expr) else {
        return false;
    };
    let Some(mut remote) = addr_bytes(id) else {
        return false;
    };
    if remote.len() != acl.len() {
        return false;
    }
    mask(&mut acl, bits);
    mask(&mut remote, bits);
    acl == remote
}

#[cfg(test)]
mod tests {
    use super::*;
    use zk_proto::data::perms;

    fn acl(perms: i32, scheme: &str, id: &str) -> Acl {
        Acl {
            perms,
            id: Id::new(scheme, id),
        }
    }

    fn local() -> IpAddr {
        "127.0.0.1".parse().unwrap()
    }

    /// Reference values computed with `java.security.MessageDigest("SHA1")` and
    /// `java.util.Base64` over the same strings (OpenJDK 17), i.e. `generateDigest`.
    #[test]
    fn digest_matches_zookeepers_generate_digest() {
        for (input, want) in [
            ("super:superpw", "super:g9oN2HttPfn8MMWJZ2r45Np/LIA="),
            ("user:password", "user:tpUq/4Pn5A64fVZyQ0gOJ8ZWqkY="),
            ("foo", "foo:C+7Hteo/D9vJXQ3UfzxbwnXaijM="),
            ("bob:", "bob:tK1fpNO1hB0F++FhHpSq0Fa4tv0="),
            (
                "alice:secret:with:colons",
                "alice:iUYmEB+0ylhpCFSPTqDzMZuaDdA=",
            ),
            ("émile:pässwörd", "émile:Zo/xIxUcHGDVwiMm5md9qxi/xFk="),
            (":", ":BaefBs8/Z/cm2uaNGKIpD2yaUMk="),
            // The examples of ZooKeeper's CLI guide (`addauth digest user1:12345`, and the
            // superDigest for `zookeeper:admin`).
            ("user1:12345", "user1:+owfoSBn/am19roBPzR1/MfCblE="),
            ("zookeeper:admin", "zookeeper:qW/HnTfCSoQpB5G8LgkwT3IbiFc="),
        ] {
            assert_eq!(digest(input), want, "{input}");
        }
    }

    #[test]
    fn super_digest_gives_super_id_which_passes_everything() {
        let providers = AuthProviders::new(Some(digest("super:superpw")));
        let ids = providers
            .authenticate("digest", b"super:superpw", local())
            .unwrap();
        assert_eq!(
            ids,
            vec![
                Id::new("super", ""),
                Id::new("digest", "super:g9oN2HttPfn8MMWJZ2r45Np/LIA=")
            ]
        );
        let locked = vec![acl(perms::READ, "digest", "other:xyz")];
        assert_eq!(check(&locked, &ids, perms::ADMIN), Ok(()));
        // A wrong password is not super, and is still accepted as a (different) digest id.
        let wrong = providers
            .authenticate("digest", b"super:nope", local())
            .unwrap();
        assert_eq!(wrong.len(), 1);
        assert_eq!(check(&locked, &wrong, perms::READ), Err(AclError::NoAuth));
    }

    #[test]
    fn cli_guide_super_user_example() {
        let providers =
            AuthProviders::new(Some("zookeeper:qW/HnTfCSoQpB5G8LgkwT3IbiFc=".to_string()));
        let ids = providers
            .authenticate("digest", b"zookeeper:admin", local())
            .unwrap();
        assert_eq!(ids[0], Id::new("super", ""));
        let node = vec![acl(
            perms::ALL,
            "digest",
            "user1:+owfoSBn/am19roBPzR1/MfCblE=",
        )];
        assert_eq!(check(&node, &ids, perms::DELETE), Ok(()));
        let user1 = providers
            .authenticate("digest", b"user1:12345", local())
            .unwrap();
        assert_eq!(check(&node, &user1, perms::DELETE), Ok(()));
    }

    #[test]
    fn unknown_auth_scheme_fails() {
        let p = AuthProviders::default();
        for scheme in ["sasl", "world", "super", "x509", ""] {
            assert_eq!(
                p.authenticate(scheme, b"x", local()),
                Err(AclError::AuthFailed),
                "{scheme}"
            );
        }
        assert_eq!(
            p.authenticate("ip", b"", "10.0.0.9".parse().unwrap()),
            Ok(vec![Id::new("ip", "10.0.0.9")])
        );
        assert_eq!(AclError::AuthFailed.code(), ErrorCode::AuthFailed);
    }

    #[test]
    fn world_anyone_and_perm_bits() {
        let node = vec![acl(perms::READ | perms::WRITE, "world", "anyone")];
        let ids = connection_ids(local());
        assert_eq!(check(&node, &ids, perms::READ), Ok(()));
        assert_eq!(check(&node, &ids, perms::WRITE), Ok(()));
        assert_eq!(check(&node, &ids, perms::DELETE), Err(AclError::NoAuth));
        assert_eq!(check(&node, &ids, perms::ADMIN), Err(AclError::NoAuth));
        // world with another id is not "anyone".
        let odd = vec![acl(perms::ALL, "world", "someone")];
        assert_eq!(check(&odd, &ids, perms::READ), Err(AclError::NoAuth));
        // An empty ACL allows everything, as in ZooKeeper.
        assert_eq!(check(&[], &[], perms::ADMIN), Ok(()));
    }

    #[test]
    fn digest_acl_needs_the_same_digest() {
        let node = vec![acl(perms::ALL, "digest", &digest("user:password"))];
        let mut ids = connection_ids(local());
        assert_eq!(check(&node, &ids, perms::READ), Err(AclError::NoAuth));
        let p = AuthProviders::default();
        add_auth_ids(
            &mut ids,
            p.authenticate("digest", b"user:wrong", local()).unwrap(),
        );
        assert_eq!(check(&node, &ids, perms::READ), Err(AclError::NoAuth));
        add_auth_ids(
            &mut ids,
            p.authenticate("digest", b"user:password", local()).unwrap(),
        );
        assert_eq!(check(&node, &ids, perms::READ), Ok(()));
        assert_eq!(ids.len(), 3);
        add_auth_ids(
            &mut ids,
            p.authenticate("digest", b"user:password", local()).unwrap(),
        );
        assert_eq!(ids.len(), 3, "no duplicate ids");
    }

    #[test]
    fn ip_acls_v4_and_cidr() {
        let ids = connection_ids("192.168.1.77".parse().unwrap());
        let ok = |expr: &str| check(&[acl(perms::READ, "ip", expr)], &ids, perms::READ);
        assert_eq!(ok("192.168.1.77"), Ok(()));
        assert_eq!(ok("192.168.1.0/24"), Ok(()));
        assert_eq!(ok("192.168.0.0/16"), Ok(()));
        assert_eq!(ok("192.168.1.64/26"), Ok(()));
        assert_eq!(ok("0.0.0.0/0"), Ok(()));
        assert_eq!(ok("192.168.1.78"), Err(AclError::NoAuth));
        assert_eq!(ok("192.168.1.80/29"), Err(AclError::NoAuth));
        assert_eq!(ok("10.0.0.0/8"), Err(AclError::NoAuth));
        assert_eq!(ok("192.168.1.0/33"), Err(AclError::NoAuth));
        assert_eq!(ok("::/0"), Err(AclError::NoAuth), "v6 never matches v4");
    }

    #[test]
    fn ip_acls_v6() {
        let addr: IpAddr = "2001:db8::1:2".parse().unwrap();
        let ids = connection_ids(addr);
        assert_eq!(ids, vec![Id::new("ip", "2001:db8:0:0:0:0:1:2")]);
        let ok = |expr: &str| check(&[acl(perms::READ, "ip", expr)], &ids, perms::READ);
        assert_eq!(ok("2001:db8::1:2"), Ok(()));
        assert_eq!(ok("2001:0db8:0000:0000:0000:0000:0001:0002"), Ok(()));
        assert_eq!(ok("2001:db8::/32"), Ok(()));
        assert_eq!(ok("2001:db8::1:0/112"), Ok(()));
        assert_eq!(ok("2001:db9::/32"), Err(AclError::NoAuth));
        assert_eq!(ok("2001:db8::1:3"), Err(AclError::NoAuth));
        assert_eq!(ok("0.0.0.0/0"), Err(AclError::NoAuth));
        // Loopback in Java's form, and IPv4-mapped addresses count as IPv4.
        assert_eq!(java_host_address("::1".parse().unwrap()), "0:0:0:0:0:0:0:1");
        assert_eq!(
            java_host_address("::ffff:10.1.2.3".parse().unwrap()),
            "10.1.2.3"
        );
        assert!(ip_matches("0:0:0:0:0:0:0:1", "::1"));
        assert!(ip_matches("::", "::"));
    }

    #[test]
    fn ip_expression_validity() {
        for good in [
            "10.0.0.1",
            "10.0.0.0/8",
            "0.0.0.0/0",
            "255.255.255.255/32",
            "::1",
            "fe80::/10",
            "1:2:3:4:5:6:7:8",
            "::",
            "1::",
            "2001:db8::/128",
            // Java's Integer.parseInt accepts these, and so does ZooKeeper 3.8.0.
            "+1.2.3.4",
            "01.2.3.4",
            "10.0.0.1/+8",
        ] {
            assert!(is_valid_id("ip", good), "{good}");
        }
        for bad in [
            "",
            "10.0.0",
            "10.0.0.256",
            "10.0.0.1/33",
            "10.0.0.1/-1",
            "10.0.0.1/x",
            "a.b.c.d",
            "host",
            "1:2:3:4:5:6:7",
            "1:2:3:4:5:6:7:8:9",
            "1::2::3",
            "1:2:3:4::5:6:7:8",
            "12345::",
            "::g",
            "fe80::/129",
            "1.2.3.4.5",
        ] {
            assert!(!is_valid_id("ip", bad), "{bad}");
        }
    }

    #[test]
    fn fixup_expands_auth_to_authenticated_ids_only() {
        let mut ids = connection_ids(local());
        // Only an ip id: `auth` has nothing to expand to.
        assert_eq!(
            fixup_acl(&ids, &Acl::creator_all()),
            Err(AclError::InvalidAcl)
        );
        add_auth_ids(
            &mut ids,
            [
                Id::new("digest", digest("a:1")),
                Id::new("digest", digest("b:2")),
            ],
        );
        let out = fixup_acl(&ids, &[acl(perms::READ, "auth", "ignored")]).unwrap();
        assert_eq!(
            out,
            vec![
                acl(perms::READ, "digest", &digest("a:1")),
                acl(perms::READ, "digest", &digest("b:2")),
            ]
        );
    }

    #[test]
    fn fixup_rejects_bad_acls_and_drops_duplicates() {
        let ids = connection_ids(local());
        assert_eq!(fixup_acl(&ids, &[]), Err(AclError::InvalidAcl));
        for bad in [
            acl(perms::ALL, "world", "everyone"),
            acl(perms::ALL, "digest", "nocolon"),
            acl(perms::ALL, "digest", "user:"),
            acl(perms::ALL, "digest", "a:b:c"),
            acl(perms::ALL, "ip", "10.0.0.300"),
            acl(perms::ALL, "super", ""),
            acl(perms::ALL, "sasl", "user"),
            acl(perms::ALL, "", ""),
        ] {
            assert_eq!(
                fixup_acl(&ids, &[acl(perms::READ, "world", "anyone"), bad.clone()]),
                Err(AclError::InvalidAcl),
                "{bad:?}"
            );
        }
        let open = Acl::open_unsafe();
        let doubled = [open[0].clone(), open[0].clone()];
        assert_eq!(fixup_acl(&ids, &doubled), Ok(open));
        let mixed = [
            acl(perms::READ, "ip", "10.0.0.0/8"),
            acl(perms::ALL, "digest", "user:tpUq/4Pn5A64fVZyQ0gOJ8ZWqkY="),
        ];
        assert_eq!(fixup_acl(&ids, &mixed), Ok(mixed.to_vec()));
        assert_eq!(AclError::InvalidAcl.code(), ErrorCode::InvalidAcl);
    }

    #[test]
    fn permissions_per_operation() {
        assert_eq!(
            required_permission(OpCode::Create2),
            Some((AclTarget::Parent, perms::CREATE))
        );
        assert_eq!(
            required_permission(OpCode::CreateTtl),
            Some((AclTarget::Parent, perms::CREATE))
        );
        assert_eq!(
            required_permission(OpCode::Delete),
            Some((AclTarget::Parent, perms::DELETE))
        );
        assert_eq!(
            required_permission(OpCode::SetData),
            Some((AclTarget::Node, perms::WRITE))
        );
        assert_eq!(
            required_permission(OpCode::SetAcl),
            Some((AclTarget::Node, perms::ADMIN))
        );
        assert_eq!(
            required_permission(OpCode::GetAcl),
            Some((AclTarget::Node, perms::READ | perms::ADMIN))
        );
        for op in [
            OpCode::GetData,
            OpCode::Exists,
            OpCode::GetChildren2,
            OpCode::Check,
        ] {
            assert_eq!(
                required_permission(op),
                Some((AclTarget::Node, perms::READ)),
                "{op:?}"
            );
        }
        for op in [
            OpCode::Sync,
            OpCode::Ping,
            OpCode::SetWatches2,
            OpCode::AddWatch,
            OpCode::Multi,
            OpCode::WhoAmI,
            OpCode::GetEphemerals,
            OpCode::DeleteContainer,
        ] {
            assert_eq!(required_permission(op), None, "{op:?}");
        }
    }

    #[test]
    fn get_acl_hides_digests_without_admin() {
        let node = vec![
            acl(perms::READ, "world", "anyone"),
            acl(perms::ALL, "digest", "user1:+owfoSBn/am19roBPzR1/MfCblE="),
            acl(perms::READ, "ip", "10.0.0.0/8"),
        ];
        let anon = connection_ids(local());
        let shown = acl_for_reader(&node, &anon).unwrap();
        assert_eq!(shown[1].id, Id::new("digest", "user1:x"));
        assert_eq!(shown[0], node[0]);
        assert_eq!(shown[2], node[2]);
        let admin = vec![Id::new("digest", "user1:+owfoSBn/am19roBPzR1/MfCblE=")];
        assert_eq!(acl_for_reader(&node, &admin).unwrap(), node);
        let locked = vec![acl(perms::WRITE, "world", "anyone")];
        assert_eq!(acl_for_reader(&locked, &anon), Err(AclError::NoAuth));
        let admin_only = vec![acl(perms::ADMIN, "world", "anyone")];
        assert_eq!(acl_for_reader(&admin_only, &anon).unwrap(), admin_only);
    }

    #[test]
    fn who_am_i_reports_users() {
        let ids = vec![
            Id::new("ip", "127.0.0.1"),
            Id::new("super", ""),
            Id::new("digest", digest("user:password")),
        ];
        let info = who_am_i(&ids);
        let pairs: Vec<(&str, &str)> = info
            .iter()
            .map(|c| (c.auth_scheme.as_str(), c.user.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [("ip", "127.0.0.1"), ("super", ""), ("digest", "user")]
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_ids_never_panic(
            id in "[0-9a-fA-F:./+-]{0,45}|\\PC{0,20}",
            expr in "[0-9a-fA-F:./+-]{0,45}|\\PC{0,20}",
        ) {
            let _ = is_valid_id("ip", &expr);
            let _ = is_valid_id("digest", &expr);
            let _ = ip_matches(&id, &expr);
            let node = [acl(perms::ALL, "ip", &expr), acl(perms::ALL, "digest", &expr)];
            let ids = [Id::new("ip", id.clone()), Id::new("digest", id.clone())];
            let _ = check(&node, &ids, perms::READ);
            let _ = fixup_acl(&ids, &node);
            let _ = who_am_i(&ids);
            let _ = digest(&id);
        }

        #[test]
        fn cidr_matching_agrees_with_std(a in proptest::prelude::any::<u32>(), b in proptest::prelude::any::<u32>(), bits in 0u32..=32) {
            let (x, y) = (std::net::Ipv4Addr::from(a), std::net::Ipv4Addr::from(b));
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            let want = (a & mask) == (b & mask);
            proptest::prop_assert_eq!(ip_matches(&x.to_string(), &format!("{y}/{bits}")), want);
        }
    }

    proptest::proptest! {
        #[test]
        fn cidr_v6_matching_agrees_with_std(
            a in proptest::prelude::any::<u128>(),
            b in proptest::prelude::any::<u128>(),
            bits in 0u32..=128,
            zeros in 0u32..=128,
        ) {
            // Clear low bits so that compressed `::` forms show up often.
            let clear = |v: u128| if zeros == 128 { 0 } else { v >> zeros << zeros };
            let (a, b) = (clear(a), clear(b));
            let (x, y) = (std::net::Ipv6Addr::from(a), std::net::Ipv6Addr::from(b));
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
            let want = (a & mask) == (b & mask);
            let id = java_host_address(IpAddr::V6(x));
            // IPv4-mapped addresses become IPv4 ids (and dotted v6 expressions are invalid),
            // which never match.
            let want = want && !id.contains('.') && !y.to_string().contains('.');
            proptest::prop_assert_eq!(ip_matches(&id, &format!("{y}/{bits}")), want, "{} {}/{}", id, y, bits);
        }
    }

    #[test]
    fn mask_clears_exactly_the_host_bits() {
        let mut b = vec![0xff; 4];
        mask(&mut b, 20);
        assert_eq!(b, [0xff, 0xff, 0xf0, 0x00]);
        let mut b = vec![0xff; 4];
        mask(&mut b, 32);
        assert_eq!(b, [0xff; 4]);
        let mut b = vec![0xff; 4];
        mask(&mut b, 0);
        assert_eq!(b, [0; 4]);
    }
}
