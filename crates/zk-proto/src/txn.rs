//! Typed Rust form of the replicated txn (`proto/txn.proto`).
//!
//! The generated Protobuf types in [`crate::peer::txn`] have optional message fields and
//! raw `i32` codes. The types here are what the rest of the code works with: every field
//! present, op and error codes typed, and the op code of the header checked against the
//! body. Convert with `TryFrom<pb::…>` (a typed [`TxnDecodeError`], never a panic) and
//! `From<…> for pb::…`; [`TxnEntry::encode`] / [`TxnEntry::decode`] go to and from bytes.
//! Znode data is an `Option`: `None` is ZooKeeper's null data (a jute buffer of length
//! −1), which reads back as null, unlike `Some(vec![])`.
//!
//! ```
//! use zk_proto::data::{Acl, OpCode};
//! use zk_proto::txn::{Txn, TxnEntry, TxnHeader};
//!
//! let entry = TxnEntry {
//!     header: TxnHeader { client_id: 7, cxid: 1, zxid: 0x1_0000_0001, time: 1_700_000_000_000, op: OpCode::Create2 },
//!     txn: Txn::Create { path: "/a".into(), data: Some(b"x".to_vec()), acl: Acl::open_unsafe(),
//!         ephemeral: false, parent_cversion: 1 },
//! };
//! let bytes = entry.encode();
//! assert_eq!(TxnEntry::decode(&bytes).unwrap(), entry);
//! ```

use prost::Message;

use crate::data::{Acl, ErrorCode, Id, OpCode};
use crate::peer::txn as pb;
use crate::zxid::Zxid;

/// Why a txn could not be decoded or converted from its Protobuf form.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TxnDecodeError {
    /// The bytes are not a valid Protobuf `TxnEntry`.
    #[error("txn protobuf decode: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// A message field that must be present is absent.
    #[error("txn field {0} is missing")]
    MissingField(&'static str),
    /// A field holds a value that has no meaning here (unknown op or error code, …).
    #[error("txn field {field} has bad value {value}")]
    BadValue {
        /// The field.
        field: &'static str,
        /// The value found.
        value: i64,
    },
    /// The op code does not go with the body (a setData header on a create body, …).
    #[error("op code {op} does not match a {body} body")]
    OpMismatch {
        /// The op code of the header or multi member.
        op: i32,
        /// The kind of body found.
        body: &'static str,
    },
    /// Null data flagged together with data bytes.
    #[error("txn {0} has null data and data bytes")]
    NullWithBytes(&'static str),
    /// A multi inside a multi (ZooKeeper has none).
    #[error("nested multi txn")]
    NestedMulti,
}

/// The header of every txn (`TxnHeader` in `zookeeper.jute`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TxnHeader {
    /// Session id of the client that issued the request (0 for server-internal ones).
    pub client_id: i64,
    /// The client's xid.
    pub cxid: i32,
    /// zxid assigned by the leader.
    pub zxid: Zxid,
    /// Leader's wall clock in ms since the epoch: the only clock the tree sees.
    pub time: i64,
    /// The op code: tells create (1) from create2 (15), delete (2) from deleteContainer (20).
    pub op: OpCode,
}

/// One member of a multi txn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiMember {
    /// Its op code (`Error` for the members of a failed multi).
    pub op: OpCode,
    /// Its body (never a [`Txn::Multi`]).
    pub txn: Txn,
}

/// The body of a txn, one variant per ZooKeeper txn record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Txn {
    /// `CreateTxn`: create (1) and create2 (15), persistent or ephemeral.
    Create {
        /// Full path, sequence suffix included.
        path: String,
        /// Initial data. `None` is null data.
        data: Option<Vec<u8>>,
        /// ACL of the new node.
        acl: Vec<Acl>,
        /// Owned by the session of the header.
        ephemeral: bool,
        /// The parent's stored cversion after this create (`-1`: increment).
        parent_cversion: i32,
    },
    /// `CreateContainerTxn`: createContainer (19).
    CreateContainer {
        /// Full path.
        path: String,
        /// Initial data. `None` is null data.
        data: Option<Vec<u8>>,
        /// ACL of the new node.
        acl: Vec<Acl>,
        /// The parent's stored cversion after this create.
        parent_cversion: i32,
    },
    /// `CreateTTLTxn`: createTTL (21).
    CreateTtl {
        /// Full path, sequence suffix included.
        path: String,
        /// Initial data. `None` is null data.
        data: Option<Vec<u8>>,
        /// ACL of the new node.
        acl: Vec<Acl>,
        /// The parent's stored cversion after this create.
        parent_cversion: i32,
        /// Time to live in ms.
        ttl: i64,
    },
    /// `DeleteTxn`: delete (2) and deleteContainer (20).
    Delete {
        /// Path of the node to delete.
        path: String,
    },
    /// `SetDataTxn`: setData (5) (and reconfig (16), which sets the config node).
    SetData {
        /// Path of the node.
        path: String,
        /// New data. `None` is null data.
        data: Option<Vec<u8>>,
        /// The node's new version.
        version: i32,
    },
    /// `SetACLTxn`: setACL (7).
    SetAcl {
        /// Path of the node.
        path: String,
        /// New ACL.
        acl: Vec<Acl>,
        /// The node's new aversion.
        version: i32,
    },
    /// `CheckVersionTxn`: check (13), inside a multi.
    Check {
        /// Path checked.
        path: String,
        /// Version checked.
        version: i32,
    },
    /// `MultiTxn`: multi (14).
    Multi(Vec<MultiMember>),
    /// `CreateSessionTxn`: createSession (-10).
    CreateSession {
        /// Negotiated session timeout.
        timeout_ms: i32,
    },
    /// `CloseSessionTxn`: closeSession (-11). An empty list means "every ephemeral of the
    /// session".
    CloseSession {
        /// Ephemerals of the session known to the leader when it closed the session.
        paths_to_delete: Vec<String>,
    },
    /// `ErrorTxn`: error (-1), a request that failed in the leader's pre-processing.
    Error {
        /// The error.
        err: ErrorCode,
    },
}

impl Txn {
    /// Short name of the body kind, for errors and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Txn::Create { .. } => "create",
            Txn::CreateContainer { .. } => "createContainer",
            Txn::CreateTtl { .. } => "createTTL",
            Txn::Delete { .. } => "delete",
            Txn::SetData { .. } => "setData",
            Txn::SetAcl { .. } => "setACL",
            Txn::Check { .. } => "check",
            Txn::Multi(_) => "multi",
            Txn::CreateSession { .. } => "createSession",
            Txn::CloseSession { .. } => "closeSession",
            Txn::Error { .. } => "error",
        }
    }

    /// True when `op` is an op code this body can carry.
    pub fn accepts_op(&self, op: OpCode) -> bool {
        match self {
            Txn::Create { .. } => matches!(op, OpCode::Create | OpCode::Create2),
            Txn::CreateContainer { .. } => op == OpCode::CreateContainer,
            Txn::CreateTtl { .. } => op == OpCode::CreateTtl,
            Txn::Delete { .. } => matches!(op, OpCode::Delete | OpCode::DeleteContainer),
            Txn::SetData { .. } => matches!(op, OpCode::SetData | OpCode::Reconfig),
            Txn::SetAcl { .. } => op == OpCode::SetAcl,
            Txn::Check { .. } => op == OpCode::Check,
            Txn::Multi(_) => op == OpCode::Multi,
            Txn::CreateSession { .. } => op == OpCode::CreateSession,
            Txn::CloseSession { .. } => op == OpCode::CloseSession,
            Txn::Error { .. } => op == OpCode::Error,
        }
    }

    /// The path this txn acts on, if it acts on one node.
    pub fn path(&self) -> Option<&str> {
        match self {
            Txn::Create { path, .. }
            | Txn::CreateContainer { path, .. }
            | Txn::CreateTtl { path, .. }
            | Txn::Delete { path }
            | Txn::SetData { path, .. }
            | Txn::SetAcl { path, .. }
            | Txn::Check { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// A txn as logged and proposed: header plus body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnEntry {
    /// The header.
    pub header: TxnHeader,
    /// The body.
    pub txn: Txn,
}

impl TxnEntry {
    /// Protobuf encoding of the entry (`pb::TxnEntry`).
    pub fn encode(&self) -> Vec<u8> {
        pb::TxnEntry::from(self.clone()).encode_to_vec()
    }

    /// Decodes and checks an entry encoded by [`TxnEntry::encode`].
    pub fn decode(bytes: &[u8]) -> Result<TxnEntry, TxnDecodeError> {
        TxnEntry::try_from(pb::TxnEntry::decode(bytes)?)
    }
}

fn op_code(field: &'static str, v: i32) -> Result<OpCode, TxnDecodeError> {
    OpCode::try_from(v).map_err(|v| TxnDecodeError::BadValue {
        field,
        value: i64::from(v),
    })
}

impl TryFrom<pb::TxnHeader> for TxnHeader {
    type Error = TxnDecodeError;
    fn try_from(h: pb::TxnHeader) -> Result<Self, TxnDecodeError> {
        Ok(TxnHeader {
            client_id: h.client_id,
            cxid: h.cxid,
            zxid: h.zxid,
            time: h.time,
            op: op_code("header.type", h.r#type)?,
        })
    }
}

impl From<TxnHeader> for pb::TxnHeader {
    fn from(h: TxnHeader) -> Self {
        pb::TxnHeader {
            client_id: h.client_id,
            cxid: h.cxid,
            zxid: h.zxid,
            time: h.time,
            r#type: h.op.code(),
        }
    }
}

fn acl_from_pb(acl: Vec<pb::Acl>) -> Result<Vec<Acl>, TxnDecodeError> {
    acl.into_iter()
        .map(|a| {
            let id = a.id.ok_or(TxnDecodeError::MissingField("acl.id"))?;
            Ok(Acl {
                perms: a.perms,
                id: Id {
                    scheme: id.scheme,
                    id: id.id,
                },
            })
        })
        .collect()
}

/// Typed data from the Protobuf pair (`data`, `data_null`).
fn data_from_pb(
    kind: &'static str,
    data: Vec<u8>,
    null: bool,
) -> Result<Option<Vec<u8>>, TxnDecodeError> {
    match (null, data.is_empty()) {
        (false, _) => Ok(Some(data)),
        (true, true) => Ok(None),
        (true, false) => Err(TxnDecodeError::NullWithBytes(kind)),
    }
}

/// The Protobuf pair (`data`, `data_null`) of typed data.
fn data_to_pb(data: Option<Vec<u8>>) -> (Vec<u8>, bool) {
    match data {
        Some(d) => (d, false),
        None => (Vec::new(), true),
    }
}

fn acl_to_pb(acl: Vec<Acl>) -> Vec<pb::Acl> {
    acl.into_iter()
        .map(|a| pb::Acl {
            perms: a.perms,
            id: Some(pb::Id {
                scheme: a.id.scheme,
                id: a.id.id,
            }),
        })
        .collect()
}

/// Converts a body; `nested` is true inside a multi.
fn txn_from_pb(t: pb::Txn, nested: bool) -> Result<Txn, TxnDecodeError> {
    use pb::txn::Body;
    let body = t.body.ok_or(TxnDecodeError::MissingField("txn.body"))?;
    Ok(match body {
        Body::Create(c) => Txn::Create {
            data: data_from_pb("create", c.data, c.data_null)?,
            path: c.path,
            acl: acl_from_pb(c.acl)?,
            ephemeral: c.ephemeral,
            parent_cversion: c.parent_cversion,
        },
        Body::CreateContainer(c) => Txn::CreateContainer {
            data: data_from_pb("createContainer", c.data, c.data_null)?,
            path: c.path,
            acl: acl_from_pb(c.acl)?,
            parent_cversion: c.parent_cversion,
        },
        Body::CreateTtl(c) => Txn::CreateTtl {
            data: data_from_pb("createTTL", c.data, c.data_null)?,
            path: c.path,
            acl: acl_from_pb(c.acl)?,
            parent_cversion: c.parent_cversion,
            ttl: c.ttl,
        },
        Body::Delete(d) => Txn::Delete { path: d.path },
        Body::SetData(s) => Txn::SetData {
            data: data_from_pb("setData", s.data, s.data_null)?,
            path: s.path,
            version: s.version,
        },
        Body::SetAcl(s) => Txn::SetAcl {
            path: s.path,
            acl: acl_from_pb(s.acl)?,
            version: s.version,
        },
        Body::Check(c) => Txn::Check {
            path: c.path,
            version: c.version,
        },
        Body::Multi(m) => {
            if nested {
                return Err(TxnDecodeError::NestedMulti);
            }
            let members = m
                .txns
                .into_iter()
                .map(|member| {
                    let op = op_code("multi.type", member.r#type)?;
                    let txn = txn_from_pb(
                        member
                            .txn
                            .ok_or(TxnDecodeError::MissingField("multi.txn"))?,
                        true,
                    )?;
                    if !txn.accepts_op(op) {
                        return Err(TxnDecodeError::OpMismatch {
                            op: op.code(),
                            body: txn.kind(),
                        });
                    }
                    Ok(MultiMember { op, txn })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Txn::Multi(members)
        }
        Body::CreateSession(s) => Txn::CreateSession {
            timeout_ms: s.timeout_ms,
        },
        Body::CloseSession(c) => Txn::CloseSession {
            paths_to_delete: c.paths_to_delete,
        },
        Body::Error(e) => Txn::Error {
            err: ErrorCode::try_from(e.err).map_err(|v| TxnDecodeError::BadValue {
                field: "error.err",
                value: i64::from(v),
            })?,
        },
    })
}

impl TryFrom<pb::Txn> for Txn {
    type Error = TxnDecodeError;
    fn try_from(t: pb::Txn) -> Result<Self, TxnDecodeError> {
        txn_from_pb(t, false)
    }
}

impl From<Txn> for pb::Txn {
    fn from(t: Txn) -> Self {
        use pb::txn::Body;
        let body = match t {
            Txn::Create {
                path,
                data,
                acl,
                ephemeral,
                parent_cversion,
            } => {
                let (data, data_null) = data_to_pb(data);
                Body::Create(pb::CreateTxn {
                    path,
                    data,
                    acl: acl_to_pb(acl),
                    ephemeral,
                    parent_cversion,
                    data_null,
                })
            }
            Txn::CreateContainer {
                path,
                data,
                acl,
                parent_cversion,
            } => {
                let (data, data_null) = data_to_pb(data);
                Body::CreateContainer(pb::CreateContainerTxn {
                    path,
                    data,
                    acl: acl_to_pb(acl),
                    parent_cversion,
                    data_null,
                })
            }
            Txn::CreateTtl {
                path,
                data,
                acl,
                parent_cversion,
                ttl,
            } => {
                let (data, data_null) = data_to_pb(data);
                Body::CreateTtl(pb::CreateTtlTxn {
                    path,
                    data,
                    acl: acl_to_pb(acl),
                    parent_cversion,
                    ttl,
                    data_null,
                })
            }
            Txn::Delete { path } => Body::Delete(pb::DeleteTxn { path }),
            Txn::SetData {
                path,
                data,
                version,
            } => {
                let (data, data_null) = data_to_pb(data);
                Body::SetData(pb::SetDataTxn {
                    path,
                    data,
                    version,
                    data_null,
                })
            }
            Txn::SetAcl { path, acl, version } => Body::SetAcl(pb::SetAclTxn {
                path,
                acl: acl_to_pb(acl),
                version,
            }),
            Txn::Check { path, version } => Body::Check(pb::CheckVersionTxn { path, version }),
            Txn::Multi(members) => Body::Multi(pb::MultiTxn {
                txns: members
                    .into_iter()
                    .map(|m| pb::MultiMember {
                        r#type: m.op.code(),
                        txn: Some(pb::Txn::from(m.txn)),
                    })
                    .collect(),
            }),
            Txn::CreateSession { timeout_ms } => {
                Body::CreateSession(pb::CreateSessionTxn { timeout_ms })
            }
            Txn::CloseSession { paths_to_delete } => {
                Body::CloseSession(pb::CloseSessionTxn { paths_to_delete })
            }
            Txn::Error { err } => Body::Error(pb::ErrorTxn { err: err.code() }),
        };
        pb::Txn { body: Some(body) }
    }
}

impl TryFrom<pb::TxnEntry> for TxnEntry {
    type Error = TxnDecodeError;
    fn try_from(e: pb::TxnEntry) -> Result<Self, TxnDecodeError> {
        let header = TxnHeader::try_from(
            e.header
                .ok_or(TxnDecodeError::MissingField("entry.header"))?,
        )?;
        let txn = Txn::try_from(e.txn.ok_or(TxnDecodeError::MissingField("entry.txn"))?)?;
        if !txn.accepts_op(header.op) {
            return Err(TxnDecodeError::OpMismatch {
                op: header.op.code(),
                body: txn.kind(),
            });
        }
        Ok(TxnEntry { header, txn })
    }
}

impl From<TxnEntry> for pb::TxnEntry {
    fn from(e: TxnEntry) -> Self {
        pb::TxnEntry {
            header: Some(e.header.into()),
            txn: Some(e.txn.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(op: OpCode) -> TxnHeader {
        TxnHeader {
            client_id: 0x100_0000_0000_0001,
            cxid: 9,
            zxid: crate::zxid::make(2, 5),
            time: 1_700_000_000_123,
            op,
        }
    }

    #[test]
    fn every_kind_round_trips() {
        let acl = vec![Acl {
            perms: 31,
            id: Id::new("digest", "u:h"),
        }];
        let cases = vec![
            (
                OpCode::Create,
                Txn::Create {
                    path: "/a".into(),
                    data: Some(vec![1, 2]),
                    acl: acl.clone(),
                    ephemeral: true,
                    parent_cversion: 3,
                },
            ),
            (
                OpCode::CreateContainer,
                Txn::CreateContainer {
                    path: "/c".into(),
                    data: None,
                    acl: acl.clone(),
                    parent_cversion: 1,
                },
            ),
            (
                OpCode::CreateTtl,
                Txn::CreateTtl {
                    path: "/t".into(),
                    data: Some(vec![7]),
                    acl: acl.clone(),
                    parent_cversion: 1,
                    ttl: 5000,
                },
            ),
            (OpCode::DeleteContainer, Txn::Delete { path: "/c".into() }),
            (
                OpCode::SetData,
                Txn::SetData {
                    path: "/a".into(),
                    data: Some(vec![]),
                    version: 2,
                },
            ),
            (
                OpCode::SetAcl,
                Txn::SetAcl {
                    path: "/a".into(),
                    acl: acl.clone(),
                    version: 1,
                },
            ),
            (
                OpCode::Multi,
                Txn::Multi(vec![
                    MultiMember {
                        op: OpCode::Check,
                        txn: Txn::Check {
                            path: "/a".into(),
                            version: 1,
                        },
                    },
                    MultiMember {
                        op: OpCode::Error,
                        txn: Txn::Error {
                            err: ErrorCode::BadVersion,
                        },
                    },
                ]),
            ),
            (
                OpCode::CreateSession,
                Txn::CreateSession { timeout_ms: 30000 },
            ),
            (
                OpCode::CloseSession,
                Txn::CloseSession {
                    paths_to_delete: vec!["/a".into()],
                },
            ),
            (
                OpCode::Error,
                Txn::Error {
                    err: ErrorCode::NoNode,
                },
            ),
        ];
        for (op, txn) in cases {
            let entry = TxnEntry {
                header: header(op),
                txn,
            };
            assert_eq!(TxnEntry::decode(&entry.encode()), Ok(entry));
        }
    }

    #[test]
    fn null_data_and_empty_data_stay_apart() {
        let set = |data: Option<Vec<u8>>| TxnEntry {
            header: header(OpCode::SetData),
            txn: Txn::SetData {
                path: "/a".into(),
                data,
                version: 1,
            },
        };
        for data in [None, Some(vec![]), Some(b"x".to_vec())] {
            let entry = set(data.clone());
            let decoded = TxnEntry::decode(&entry.encode());
            assert!(
                matches!(&decoded, Ok(TxnEntry { txn: Txn::SetData { data: d, .. }, .. }) if *d == data),
                "{data:?} decoded as {decoded:?}"
            );
        }
        // An entry written before `data_null` existed (the field absent) is empty data.
        let old = pb::TxnEntry {
            header: Some(header(OpCode::Create).into()),
            txn: Some(pb::Txn {
                body: Some(pb::txn::Body::Create(pb::CreateTxn {
                    path: "/old".into(),
                    ..Default::default()
                })),
            }),
        };
        let decoded = TxnEntry::decode(&old.encode_to_vec());
        assert!(
            matches!(&decoded, Ok(TxnEntry { txn: Txn::Create { data: Some(d), .. }, .. }) if d.is_empty()),
            "{decoded:?}"
        );
        // Null flagged together with bytes is refused.
        let both = pb::Txn {
            body: Some(pb::txn::Body::CreateTtl(pb::CreateTtlTxn {
                path: "/t".into(),
                data: b"x".to_vec(),
                data_null: true,
                ttl: 1,
                ..Default::default()
            })),
        };
        assert_eq!(
            Txn::try_from(both),
            Err(TxnDecodeError::NullWithBytes("createTTL"))
        );
    }

    #[test]
    fn missing_fields_are_typed_errors() {
        let no_header = pb::TxnEntry {
            header: None,
            txn: Some(pb::Txn::from(Txn::Delete { path: "/a".into() })),
        };
        assert_eq!(
            TxnEntry::try_from(no_header),
            Err(TxnDecodeError::MissingField("entry.header"))
        );
        let no_body = pb::TxnEntry {
            header: Some(header(OpCode::Delete).into()),
            txn: Some(pb::Txn { body: None }),
        };
        assert_eq!(
            TxnEntry::try_from(no_body),
            Err(TxnDecodeError::MissingField("txn.body"))
        );
        let no_acl_id = pb::Txn {
            body: Some(pb::txn::Body::SetAcl(pb::SetAclTxn {
                path: "/a".into(),
                acl: vec![pb::Acl { perms: 1, id: None }],
                version: 0,
            })),
        };
        assert_eq!(
            Txn::try_from(no_acl_id),
            Err(TxnDecodeError::MissingField("acl.id"))
        );
    }

    #[test]
    fn bad_values_are_rejected() {
        let mut h: pb::TxnHeader = header(OpCode::Delete).into();
        h.r#type = 10;
        let e = pb::TxnEntry {
            header: Some(h),
            txn: Some(Txn::Delete { path: "/a".into() }.into()),
        };
        assert_eq!(
            TxnEntry::try_from(e),
            Err(TxnDecodeError::BadValue {
                field: "header.type",
                value: 10
            })
        );
        let e = pb::TxnEntry {
            header: Some(header(OpCode::SetData).into()),
            txn: Some(Txn::Delete { path: "/a".into() }.into()),
        };
        assert_eq!(
            TxnEntry::try_from(e),
            Err(TxnDecodeError::OpMismatch {
                op: 5,
                body: "delete"
            })
        );
        let bad_err = pb::Txn {
            body: Some(pb::txn::Body::Error(pb::ErrorTxn { err: 12345 })),
        };
        assert!(matches!(
            Txn::try_from(bad_err),
            Err(TxnDecodeError::BadValue {
                field: "error.err",
                ..
            })
        ));
        let nested = Txn::Multi(vec![MultiMember {
            op: OpCode::Multi,
            txn: Txn::Multi(vec![]),
        }]);
        assert_eq!(
            Txn::try_from(pb::Txn::from(nested)),
            Err(TxnDecodeError::NestedMulti)
        );
        assert!(matches!(
            TxnEntry::decode(&[0xff, 0xff, 0xff]),
            Err(TxnDecodeError::Protobuf(_))
        ));
    }

    fn arb_acl() -> impl Strategy<Value = Vec<Acl>> {
        prop::collection::vec(
            (0i32..32, "[a-z]{1,6}", "[a-z:]{0,8}").prop_map(|(perms, s, i)| Acl {
                perms,
                id: Id::new(s, i),
            }),
            0..3,
        )
    }

    fn arb_leaf() -> impl Strategy<Value = (OpCode, Txn)> {
        let path = "/[a-z0-9/]{0,12}";
        let data = prop::option::of(prop::collection::vec(any::<u8>(), 0..16));
        prop_oneof![
            (
                path,
                data.clone(),
                arb_acl(),
                any::<bool>(),
                any::<i32>(),
                any::<bool>()
            )
                .prop_map(|(path, data, acl, ephemeral, parent_cversion, two)| (
                    if two { OpCode::Create2 } else { OpCode::Create },
                    Txn::Create {
                        path,
                        data,
                        acl,
                        ephemeral,
                        parent_cversion
                    }
                )),
            (path, data.clone(), arb_acl(), any::<i32>()).prop_map(|(path, data, acl, pc)| (
                OpCode::CreateContainer,
                Txn::CreateContainer {
                    path,
                    data,
                    acl,
                    parent_cversion: pc
                }
            )),
            (path, data.clone(), arb_acl(), any::<i32>(), any::<i64>()).prop_map(
                |(path, data, acl, pc, ttl)| (
                    OpCode::CreateTtl,
                    Txn::CreateTtl {
                        path,
                        data,
                        acl,
                        parent_cversion: pc,
                        ttl
                    }
                )
            ),
            (path, any::<bool>()).prop_map(|(path, c)| (
                if c {
                    OpCode::DeleteContainer
                } else {
                    OpCode::Delete
                },
                Txn::Delete { path }
            )),
            (path, data, any::<i32>()).prop_map(|(path, data, version)| (
                OpCode::SetData,
                Txn::SetData {
                    path,
                    data,
                    version
                }
            )),
            (path, arb_acl(), any::<i32>()).prop_map(|(path, acl, version)| (
                OpCode::SetAcl,
                Txn::SetAcl { path, acl, version }
            )),
            (path, any::<i32>())
                .prop_map(|(path, version)| (OpCode::Check, Txn::Check { path, version })),
            prop::sample::select(ErrorCode::ALL)
                .prop_map(|err| (OpCode::Error, Txn::Error { err })),
        ]
    }

    fn arb_entry() -> impl Strategy<Value = TxnEntry> {
        let body = prop_oneof![
            arb_leaf(),
            prop::collection::vec(arb_leaf(), 0..5).prop_map(|members| (
                OpCode::Multi,
                Txn::Multi(
                    members
                        .into_iter()
                        .map(|(op, txn)| MultiMember { op, txn })
                        .collect()
                )
            )),
            any::<i32>()
                .prop_map(|t| (OpCode::CreateSession, Txn::CreateSession { timeout_ms: t })),
            prop::collection::vec("/[a-z]{1,5}", 0..4).prop_map(|p| (
                OpCode::CloseSession,
                Txn::CloseSession { paths_to_delete: p }
            )),
        ];
        (any::<i64>(), any::<i32>(), any::<i64>(), any::<i64>(), body).prop_map(
            |(client_id, cxid, zxid, time, (op, txn))| TxnEntry {
                header: TxnHeader {
                    client_id,
                    cxid,
                    zxid,
                    time,
                    op,
                },
                txn,
            },
        )
    }

    proptest! {
        #[test]
        fn entries_round_trip(entry in arb_entry()) {
            let bytes = entry.encode();
            prop_assert_eq!(TxnEntry::decode(&bytes), Ok(entry.clone()));
            // and through the Protobuf types directly
            let pb_entry = pb::TxnEntry::from(entry.clone());
            prop_assert_eq!(TxnEntry::try_from(pb_entry), Ok(entry));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            // Either an error or an entry that re-encodes to something decodable.
            if let Ok(e) = TxnEntry::decode(&bytes) {
                prop_assert_eq!(TxnEntry::decode(&e.encode()), Ok(e));
            }
        }
    }
}
