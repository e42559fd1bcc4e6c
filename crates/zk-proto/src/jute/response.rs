//! Typed replies: [`Response`] (one variant per reply body), [`MultiResult`] and the framed
//! [`ReplyPacket`] (`ReplyHeader` + body), including watch notifications.

use bytes::{Buf, BufMut};

use super::JuteError;
use super::record::Record;
use super::records::{
    AUTH_XID, Create2Response, CreateResponse, ErrorResponse, ExistsResponse, GetAclResponse,
    GetAllChildrenNumberResponse, GetChildren2Response, GetChildrenResponse, GetDataResponse,
    GetEphemeralsResponse, MultiHeader, NOTIFICATION_XID, PING_XID, ReplyHeader, SET_WATCHES_XID,
    SetAclResponse, SetDataResponse, SetSaslResponse, SyncResponse, WatcherEvent, WhoAmIResponse,
};
use crate::data::{ErrorCode, OpCode};
use crate::zxid::Zxid;

/// One result of a `multi` or `multiRead` response (ZooKeeper's `OpResult`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiResult {
    /// Result of create: the path.
    Create(CreateResponse),
    /// Result of create2, createContainer and createTTL: path and stat.
    Create2(Create2Response),
    /// Result of delete (no body).
    Delete,
    /// Result of setData.
    SetData(SetDataResponse),
    /// Result of check (no body).
    Check,
    /// Result of getChildren in multiRead.
    GetChildren(GetChildrenResponse),
    /// Result of getData in multiRead.
    GetData(GetDataResponse),
    /// An op that failed, or (code 0) one that was rolled back because another failed;
    /// ops after the failing one carry `RuntimeInconsistency`.
    Error(ErrorResponse),
}

impl MultiResult {
    /// An error result with `code`.
    pub fn error(code: ErrorCode) -> Self {
        MultiResult::Error(ErrorResponse { err: code.code() })
    }

    /// The `MultiHeader` that precedes this result.
    fn header(&self) -> MultiHeader {
        let (op, err) = match self {
            MultiResult::Create(_) => (OpCode::Create, 0),
            MultiResult::Create2(_) => (OpCode::Create2, 0),
            MultiResult::Delete => (OpCode::Delete, 0),
            MultiResult::SetData(_) => (OpCode::SetData, 0),
            MultiResult::Check => (OpCode::Check, 0),
            MultiResult::GetChildren(_) => (OpCode::GetChildren, 0),
            MultiResult::GetData(_) => (OpCode::GetData, 0),
            MultiResult::Error(e) => (OpCode::Error, e.err),
        };
        MultiHeader {
            op: op.code(),
            done: false,
            err,
        }
    }

    fn encode_body<B: BufMut>(&self, buf: &mut B) {
        match self {
            MultiResult::Create(r) => r.encode(buf),
            MultiResult::Create2(r) => r.encode(buf),
            MultiResult::Delete | MultiResult::Check => {}
            MultiResult::SetData(r) => r.encode(buf),
            MultiResult::GetChildren(r) => r.encode(buf),
            MultiResult::GetData(r) => r.encode(buf),
            MultiResult::Error(r) => r.encode(buf),
        }
    }

    fn body_len(&self) -> usize {
        match self {
            MultiResult::Create(r) => r.encoded_len(),
            MultiResult::Create2(r) => r.encoded_len(),
            MultiResult::Delete | MultiResult::Check => 0,
            MultiResult::SetData(r) => r.encoded_len(),
            MultiResult::GetChildren(r) => r.encoded_len(),
            MultiResult::GetData(r) => r.encoded_len(),
            MultiResult::Error(r) => r.encoded_len(),
        }
    }

    fn decode_body<B: Buf>(op: i32, buf: &mut B) -> Result<Self, JuteError> {
        Ok(match OpCode::try_from(op) {
            Ok(OpCode::Create) => MultiResult::Create(Record::decode(buf)?),
            Ok(OpCode::Create2) => MultiResult::Create2(Record::decode(buf)?),
            Ok(OpCode::Delete) => MultiResult::Delete,
            Ok(OpCode::SetData) => MultiResult::SetData(Record::decode(buf)?),
            Ok(OpCode::Check) => MultiResult::Check,
            Ok(OpCode::GetChildren) => MultiResult::GetChildren(Record::decode(buf)?),
            Ok(OpCode::GetData) => MultiResult::GetData(Record::decode(buf)?),
            Ok(OpCode::Error) => MultiResult::Error(Record::decode(buf)?),
            _ => return Err(JuteError::InvalidMultiResult(op)),
        })
    }
}

/// Size of an encoded `MultiHeader`.
const MULTI_HEADER_LEN: usize = 4 + 1 + 4;

/// A reply body, one variant per body ZooKeeper sends. Which one a reply carries depends on
/// the op of the request (see [`Response::decode`]); error replies carry none
/// ([`Response::Empty`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// No body: errors, delete, ping, auth, setWatches, checkWatches, removeWatches,
    /// closeSession.
    Empty,
    /// create.
    Create(CreateResponse),
    /// create2, createContainer, createTTL.
    Create2(Create2Response),
    /// exists.
    Exists(ExistsResponse),
    /// getData and reconfig.
    GetData(GetDataResponse),
    /// setData and standalone check.
    SetData(SetDataResponse),
    /// getACL.
    GetAcl(GetAclResponse),
    /// setACL.
    SetAcl(SetAclResponse),
    /// getChildren.
    GetChildren(GetChildrenResponse),
    /// getChildren2.
    GetChildren2(GetChildren2Response),
    /// sync.
    Sync(SyncResponse),
    /// multi and multiRead: results in op order, framed by `MultiHeader`s.
    Multi(Vec<MultiResult>),
    /// getAllChildrenNumber.
    GetAllChildrenNumber(GetAllChildrenNumberResponse),
    /// getEphemerals.
    GetEphemerals(GetEphemeralsResponse),
    /// addWatch (ZooKeeper sends `ErrorResponse{0}`).
    Error(ErrorResponse),
    /// whoAmI.
    WhoAmI(WhoAmIResponse),
    /// sasl.
    Sasl(SetSaslResponse),
    /// A watch notification (xid −1, op "notification").
    Notification(WatcherEvent),
}

impl Response {
    /// Decodes the body of a successful reply to a request of type `op` (the rest of the
    /// frame after the [`ReplyHeader`]). `OpCode::Notification` reads a [`WatcherEvent`].
    pub fn decode<B: Buf>(op: OpCode, buf: &mut B) -> Result<Self, JuteError> {
        Ok(match op {
            OpCode::Create => Response::Create(Record::decode(buf)?),
            OpCode::Create2 | OpCode::CreateContainer | OpCode::CreateTtl => {
                Response::Create2(Record::decode(buf)?)
            }
            OpCode::Exists => Response::Exists(Record::decode(buf)?),
            OpCode::GetData | OpCode::Reconfig => Response::GetData(Record::decode(buf)?),
            OpCode::SetData | OpCode::Check => Response::SetData(Record::decode(buf)?),
            OpCode::GetAcl => Response::GetAcl(Record::decode(buf)?),
            OpCode::SetAcl => Response::SetAcl(Record::decode(buf)?),
            OpCode::GetChildren => Response::GetChildren(Record::decode(buf)?),
            OpCode::GetChildren2 => Response::GetChildren2(Record::decode(buf)?),
            OpCode::Sync => Response::Sync(Record::decode(buf)?),
            OpCode::Multi | OpCode::MultiRead => Response::Multi(decode_results(buf)?),
            OpCode::GetAllChildrenNumber => Response::GetAllChildrenNumber(Record::decode(buf)?),
            OpCode::GetEphemerals => Response::GetEphemerals(Record::decode(buf)?),
            OpCode::AddWatch => Response::Error(Record::decode(buf)?),
            OpCode::WhoAmI => Response::WhoAmI(Record::decode(buf)?),
            OpCode::Sasl => Response::Sasl(Record::decode(buf)?),
            OpCode::Notification => Response::Notification(Record::decode(buf)?),
            OpCode::Delete
            | OpCode::Ping
            | OpCode::CheckWatches
            | OpCode::RemoveWatches
            | OpCode::Auth
            | OpCode::SetWatches
            | OpCode::SetWatches2
            | OpCode::CloseSession
            | OpCode::DeleteContainer
            | OpCode::CreateSession
            | OpCode::Error => Response::Empty,
        })
    }

    /// Appends the body.
    pub fn encode_body<B: BufMut>(&self, buf: &mut B) {
        match self {
            Response::Empty => {}
            Response::Create(r) => r.encode(buf),
            Response::Create2(r) => r.encode(buf),
            Response::Exists(r) => r.encode(buf),
            Response::GetData(r) => r.encode(buf),
            Response::SetData(r) => r.encode(buf),
            Response::GetAcl(r) => r.encode(buf),
            Response::SetAcl(r) => r.encode(buf),
            Response::GetChildren(r) => r.encode(buf),
            Response::GetChildren2(r) => r.encode(buf),
            Response::Sync(r) => r.encode(buf),
            Response::Multi(results) => {
                for result in results {
                    result.header().encode(buf);
                    result.encode_body(buf);
                }
                MultiHeader {
                    op: -1,
                    done: true,
                    err: -1,
                }
                .encode(buf);
            }
            Response::GetAllChildrenNumber(r) => r.encode(buf),
            Response::GetEphemerals(r) => r.encode(buf),
            Response::Error(r) => r.encode(buf),
            Response::WhoAmI(r) => r.encode(buf),
            Response::Sasl(r) => r.encode(buf),
            Response::Notification(r) => r.encode(buf),
        }
    }

    /// The exact length of [`Response::encode_body`].
    pub fn body_len(&self) -> usize {
        match self {
            Response::Empty => 0,
            Response::Create(r) => r.encoded_len(),
            Response::Create2(r) => r.encoded_len(),
            Response::Exists(r) => r.encoded_len(),
            Response::GetData(r) => r.encoded_len(),
            Response::SetData(r) => r.encoded_len(),
            Response::GetAcl(r) => r.encoded_len(),
            Response::SetAcl(r) => r.encoded_len(),
            Response::GetChildren(r) => r.encoded_len(),
            Response::GetChildren2(r) => r.encoded_len(),
            Response::Sync(r) => r.encoded_len(),
            Response::Multi(results) => {
                results
                    .iter()
                    .map(|r| MULTI_HEADER_LEN + r.body_len())
                    .sum::<usize>()
                    + MULTI_HEADER_LEN
            }
            Response::GetAllChildrenNumber(r) => r.encoded_len(),
            Response::GetEphemerals(r) => r.encoded_len(),
            Response::Error(r) => r.encoded_len(),
            Response::WhoAmI(r) => r.encoded_len(),
            Response::Sasl(r) => r.encoded_len(),
            Response::Notification(r) => r.encoded_len(),
        }
    }
}

/// Reads a `MultiResponse` up to its `done` header; every result consumes at least a
/// header, so the loop ends within the frame. As in ZooKeeper, an error result's code is
/// taken from its `ErrorResponse` body.
fn decode_results<B: Buf>(buf: &mut B) -> Result<Vec<MultiResult>, JuteError> {
    let mut results = Vec::new();
    loop {
        let h = MultiHeader::decode(buf)?;
        if h.done {
            return Ok(results);
        }
        results.push(MultiResult::decode_body(h.op, buf)?);
    }
}

/// A whole frame from the server after the handshake: `ReplyHeader` and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyPacket {
    /// xid, zxid and error code.
    pub header: ReplyHeader,
    /// The body; [`Response::Empty`] for errors and body-less replies.
    pub body: Response,
}

impl ReplyPacket {
    /// A reply to request `xid`: `body` if `err` is `Ok`, else no body.
    pub fn new(xid: i32, zxid: Zxid, err: ErrorCode, body: Response) -> Self {
        ReplyPacket {
            header: ReplyHeader {
                xid,
                zxid,
                err: err.code(),
            },
            body: if err == ErrorCode::Ok {
                body
            } else {
                Response::Empty
            },
        }
    }

    /// A watch notification: xid −1, zxid −1 (as ZooKeeper 3.8 sends them), err 0.
    pub fn notification(event: WatcherEvent) -> Self {
        ReplyPacket {
            header: ReplyHeader {
                xid: NOTIFICATION_XID,
                zxid: -1,
                err: 0,
            },
            body: Response::Notification(event),
        }
    }

    /// Decodes a reply frame on the client side. The body type follows from the xid: the
    /// special xids (notification, ping, auth, setWatches) are known, any other is looked
    /// up with `op_of_xid` (the op of the pending request with that xid); an xid it does
    /// not know is [`JuteError::UnknownXid`]. Error replies have no body.
    pub fn decode<B: Buf>(
        buf: &mut B,
        op_of_xid: impl FnOnce(i32) -> Option<OpCode>,
    ) -> Result<Self, JuteError> {
        let header = ReplyHeader::decode(buf)?;
        let op = match header.xid {
            NOTIFICATION_XID => OpCode::Notification,
            PING_XID => OpCode::Ping,
            AUTH_XID => OpCode::Auth,
            SET_WATCHES_XID => OpCode::SetWatches,
            xid => op_of_xid(xid).ok_or(JuteError::UnknownXid(xid))?,
        };
        let body = if header.err == 0 {
            Response::decode(op, buf)?
        } else {
            Response::Empty
        };
        Ok(ReplyPacket { header, body })
    }

    /// Appends header and body.
    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        self.header.encode(buf);
        self.body.encode_body(buf);
    }

    /// The exact length of [`ReplyPacket::encode`].
    pub fn encoded_len(&self) -> usize {
        16 + self.body.body_len()
    }
}
