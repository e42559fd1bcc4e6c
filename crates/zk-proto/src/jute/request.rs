//! Typed client requests: [`Request`] (one variant per op), [`MultiOp`] and the framed
//! [`RequestPacket`] (`RequestHeader` + body).

use bytes::{Buf, BufMut};

use super::JuteError;
use super::record::Record;
use super::records::{
    AUTH_XID, AddWatchRequest, AuthPacket, CheckVersionRequest, CheckWatchesRequest, CreateRequest,
    CreateTtlRequest, DeleteRequest, ExistsRequest, GetAclRequest, GetAllChildrenNumberRequest,
    GetChildrenRequest, GetDataRequest, GetEphemeralsRequest, GetSaslRequest, MultiHeader,
    PING_XID, ReconfigRequest, RemoveWatchesRequest, RequestHeader, SET_WATCHES_XID, SetAclRequest,
    SetDataRequest, SetWatches, SetWatches2, SyncRequest,
};
use crate::data::OpCode;

/// One op of a `multi` (writes) or `multiRead` (reads) request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiOp {
    /// create (result: path).
    Create(CreateRequest),
    /// create2 (result: path and stat).
    Create2(CreateRequest),
    /// createContainer.
    CreateContainer(CreateRequest),
    /// createTTL.
    CreateTtl(CreateTtlRequest),
    /// delete.
    Delete(DeleteRequest),
    /// setData.
    SetData(SetDataRequest),
    /// check: fails the multi unless the version matches.
    Check(CheckVersionRequest),
    /// getChildren (multiRead only; `watch` is ignored by ZooKeeper).
    GetChildren(GetChildrenRequest),
    /// getData (multiRead only; `watch` is ignored by ZooKeeper).
    GetData(GetDataRequest),
}

impl MultiOp {
    /// The op code written in this op's [`MultiHeader`].
    pub fn op_code(&self) -> OpCode {
        match self {
            MultiOp::Create(_) => OpCode::Create,
            MultiOp::Create2(_) => OpCode::Create2,
            MultiOp::CreateContainer(_) => OpCode::CreateContainer,
            MultiOp::CreateTtl(_) => OpCode::CreateTtl,
            MultiOp::Delete(_) => OpCode::Delete,
            MultiOp::SetData(_) => OpCode::SetData,
            MultiOp::Check(_) => OpCode::Check,
            MultiOp::GetChildren(_) => OpCode::GetChildren,
            MultiOp::GetData(_) => OpCode::GetData,
        }
    }

    /// True for the read ops that belong in `multiRead`.
    pub fn is_read(&self) -> bool {
        matches!(self, MultiOp::GetChildren(_) | MultiOp::GetData(_))
    }

    /// The path the op works on.
    pub fn path(&self) -> &str {
        match self {
            MultiOp::Create(r) | MultiOp::Create2(r) | MultiOp::CreateContainer(r) => &r.path,
            MultiOp::CreateTtl(r) => &r.path,
            MultiOp::Delete(r) => &r.path,
            MultiOp::SetData(r) => &r.path,
            MultiOp::Check(r) => &r.path,
            MultiOp::GetChildren(r) => &r.path,
            MultiOp::GetData(r) => &r.path,
        }
    }

    fn encode_body<B: BufMut>(&self, buf: &mut B) {
        match self {
            MultiOp::Create(r) | MultiOp::Create2(r) | MultiOp::CreateContainer(r) => r.encode(buf),
            MultiOp::CreateTtl(r) => r.encode(buf),
            MultiOp::Delete(r) => r.encode(buf),
            MultiOp::SetData(r) => r.encode(buf),
            MultiOp::Check(r) => r.encode(buf),
            MultiOp::GetChildren(r) => r.encode(buf),
            MultiOp::GetData(r) => r.encode(buf),
        }
    }

    fn body_len(&self) -> usize {
        match self {
            MultiOp::Create(r) | MultiOp::Create2(r) | MultiOp::CreateContainer(r) => {
                r.encoded_len()
            }
            MultiOp::CreateTtl(r) => r.encoded_len(),
            MultiOp::Delete(r) => r.encoded_len(),
            MultiOp::SetData(r) => r.encoded_len(),
            MultiOp::Check(r) => r.encoded_len(),
            MultiOp::GetChildren(r) => r.encoded_len(),
            MultiOp::GetData(r) => r.encoded_len(),
        }
    }

    fn decode_body<B: Buf>(op: i32, buf: &mut B) -> Result<Self, JuteError> {
        Ok(match OpCode::try_from(op) {
            Ok(OpCode::Create) => MultiOp::Create(Record::decode(buf)?),
            Ok(OpCode::Create2) => MultiOp::Create2(Record::decode(buf)?),
            Ok(OpCode::CreateContainer) => MultiOp::CreateContainer(Record::decode(buf)?),
            Ok(OpCode::CreateTtl) => MultiOp::CreateTtl(Record::decode(buf)?),
            Ok(OpCode::Delete) => MultiOp::Delete(Record::decode(buf)?),
            Ok(OpCode::SetData) => MultiOp::SetData(Record::decode(buf)?),
            Ok(OpCode::Check) => MultiOp::Check(Record::decode(buf)?),
            Ok(OpCode::GetChildren) => MultiOp::GetChildren(Record::decode(buf)?),
            Ok(OpCode::GetData) => MultiOp::GetData(Record::decode(buf)?),
            _ => return Err(JuteError::InvalidMultiOp(op)),
        })
    }
}

/// Size of an encoded [`MultiHeader`].
const MULTI_HEADER_LEN: usize = 4 + 1 + 4;

/// The header that ends a multi request or response.
const MULTI_DONE: MultiHeader = MultiHeader {
    op: -1,
    done: true,
    err: -1,
};

/// Writes `ops` as ZooKeeper's `MultiOperationRecord`: `MultiHeader{op, false, -1}` and the
/// op's record for each op, then `MultiHeader{-1, true, -1}`.
fn encode_multi<B: BufMut>(ops: &[MultiOp], buf: &mut B) {
    for op in ops {
        MultiHeader {
            op: op.op_code().code(),
            done: false,
            err: -1,
        }
        .encode(buf);
        op.encode_body(buf);
    }
    MULTI_DONE.encode(buf);
}

fn multi_len(ops: &[MultiOp]) -> usize {
    ops.iter()
        .map(|op| MULTI_HEADER_LEN + op.body_len())
        .sum::<usize>()
        + MULTI_HEADER_LEN
}

/// Reads a `MultiOperationRecord` up to its `done` header. Every op consumes at least a
/// header, so the loop ends within the frame. Mixing reads and writes is an error, as in
/// ZooKeeper.
fn decode_multi<B: Buf>(buf: &mut B) -> Result<Vec<MultiOp>, JuteError> {
    let mut ops: Vec<MultiOp> = Vec::new();
    loop {
        let h = MultiHeader::decode(buf)?;
        if h.done {
            return Ok(ops);
        }
        let op = MultiOp::decode_body(h.op, buf)?;
        if ops
            .first()
            .is_some_and(|first| first.is_read() != op.is_read())
        {
            return Err(JuteError::MixedMulti);
        }
        ops.push(op);
    }
}

/// A client request body, one variant per op ZooKeeper 3.8 clients send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// create (1) → [`super::Response::Create`].
    Create(CreateRequest),
    /// create2 (15) → [`super::Response::Create2`]; Curator sends it for every create.
    Create2(CreateRequest),
    /// createContainer (19) → [`super::Response::Create2`].
    CreateContainer(CreateRequest),
    /// createTTL (21) → [`super::Response::Create2`].
    CreateTtl(CreateTtlRequest),
    /// delete (2) → empty.
    Delete(DeleteRequest),
    /// exists (3) → [`super::Response::Exists`].
    Exists(ExistsRequest),
    /// getData (4) → [`super::Response::GetData`].
    GetData(GetDataRequest),
    /// setData (5) → [`super::Response::SetData`].
    SetData(SetDataRequest),
    /// getACL (6) → [`super::Response::GetAcl`].
    GetAcl(GetAclRequest),
    /// setACL (7) → [`super::Response::SetAcl`].
    SetAcl(SetAclRequest),
    /// getChildren (8) → [`super::Response::GetChildren`].
    GetChildren(GetChildrenRequest),
    /// sync (9) → [`super::Response::Sync`].
    Sync(SyncRequest),
    /// ping (11), xid [`PING_XID`] → empty.
    Ping,
    /// getChildren2 (12) → [`super::Response::GetChildren2`].
    GetChildren2(GetChildrenRequest),
    /// check (13) outside multi → [`super::Response::SetData`].
    Check(CheckVersionRequest),
    /// multi (14): writes and checks → [`super::Response::Multi`].
    Multi(Vec<MultiOp>),
    /// reconfig (16) → [`super::Response::GetData`] (the new config).
    Reconfig(ReconfigRequest),
    /// checkWatches (17) → empty.
    CheckWatches(CheckWatchesRequest),
    /// removeWatches (18) → empty.
    RemoveWatches(RemoveWatchesRequest),
    /// multiRead (22): getData/getChildren → [`super::Response::Multi`].
    MultiRead(Vec<MultiOp>),
    /// auth (100), xid [`AUTH_XID`] → empty.
    Auth(AuthPacket),
    /// setWatches (101), xid [`SET_WATCHES_XID`] → empty. The Java client's NIO socket
    /// renumbers it with an ordinary xid: a server must echo whatever xid it gets.
    SetWatches(SetWatches),
    /// sasl (102) → [`super::Response::Sasl`].
    Sasl(GetSaslRequest),
    /// getEphemerals (103) → [`super::Response::GetEphemerals`].
    GetEphemerals(GetEphemeralsRequest),
    /// getAllChildrenNumber (104) → [`super::Response::GetAllChildrenNumber`].
    GetAllChildrenNumber(GetAllChildrenNumberRequest),
    /// setWatches2 (105), xid [`SET_WATCHES_XID`] (or an ordinary one, as for
    /// setWatches) → empty.
    SetWatches2(SetWatches2),
    /// addWatch (106) → [`super::Response::Error`] with err 0.
    AddWatch(AddWatchRequest),
    /// whoAmI (107), no body → [`super::Response::WhoAmI`].
    WhoAmI,
    /// closeSession (−11), no body → empty.
    CloseSession,
}

/// Applies `$f` to the record inside every variant that has one; `$none` otherwise.
macro_rules! with_body {
    ($self:expr, $r:ident => $f:expr, multi $m:ident => $fm:expr, none => $none:expr) => {
        match $self {
            Request::Create($r) | Request::Create2($r) | Request::CreateContainer($r) => $f,
            Request::CreateTtl($r) => $f,
            Request::Delete($r) => $f,
            Request::Exists($r) => $f,
            Request::GetData($r) => $f,
            Request::SetData($r) => $f,
            Request::GetAcl($r) => $f,
            Request::SetAcl($r) => $f,
            Request::GetChildren($r) | Request::GetChildren2($r) => $f,
            Request::Sync($r) => $f,
            Request::Check($r) => $f,
            Request::Reconfig($r) => $f,
            Request::CheckWatches($r) => $f,
            Request::RemoveWatches($r) => $f,
            Request::Auth($r) => $f,
            Request::SetWatches($r) => $f,
            Request::Sasl($r) => $f,
            Request::GetEphemerals($r) => $f,
            Request::GetAllChildrenNumber($r) => $f,
            Request::SetWatches2($r) => $f,
            Request::AddWatch($r) => $f,
            Request::Multi($m) | Request::MultiRead($m) => $fm,
            Request::Ping | Request::WhoAmI | Request::CloseSession => $none,
        }
    };
}

impl Request {
    /// The op code written in the [`RequestHeader`].
    pub fn op_code(&self) -> OpCode {
        match self {
            Request::Create(_) => OpCode::Create,
            Request::Create2(_) => OpCode::Create2,
            Request::CreateContainer(_) => OpCode::CreateContainer,
            Request::CreateTtl(_) => OpCode::CreateTtl,
            Request::Delete(_) => OpCode::Delete,
            Request::Exists(_) => OpCode::Exists,
            Request::GetData(_) => OpCode::GetData,
            Request::SetData(_) => OpCode::SetData,
            Request::GetAcl(_) => OpCode::GetAcl,
            Request::SetAcl(_) => OpCode::SetAcl,
            Request::GetChildren(_) => OpCode::GetChildren,
            Request::Sync(_) => OpCode::Sync,
            Request::Ping => OpCode::Ping,
            Request::GetChildren2(_) => OpCode::GetChildren2,
            Request::Check(_) => OpCode::Check,
            Request::Multi(_) => OpCode::Multi,
            Request::Reconfig(_) => OpCode::Reconfig,
            Request::CheckWatches(_) => OpCode::CheckWatches,
            Request::RemoveWatches(_) => OpCode::RemoveWatches,
            Request::MultiRead(_) => OpCode::MultiRead,
            Request::Auth(_) => OpCode::Auth,
            Request::SetWatches(_) => OpCode::SetWatches,
            Request::Sasl(_) => OpCode::Sasl,
            Request::GetEphemerals(_) => OpCode::GetEphemerals,
            Request::GetAllChildrenNumber(_) => OpCode::GetAllChildrenNumber,
            Request::SetWatches2(_) => OpCode::SetWatches2,
            Request::AddWatch(_) => OpCode::AddWatch,
            Request::WhoAmI => OpCode::WhoAmI,
            Request::CloseSession => OpCode::CloseSession,
        }
    }

    /// The xid ZooKeeper clients use for this request when it has a fixed one (ping,
    /// auth, setWatches), else `None` (the client picks it).
    pub fn special_xid(&self) -> Option<i32> {
        match self {
            Request::Ping => Some(PING_XID),
            Request::Auth(_) => Some(AUTH_XID),
            Request::SetWatches(_) | Request::SetWatches2(_) => Some(SET_WATCHES_XID),
            _ => None,
        }
    }

    /// The znode path the request names, if it names exactly one (for logs, metrics and
    /// ACL checks); multi, auth, setWatches, ping, whoAmI, sasl, reconfig and close have
    /// none.
    pub fn path(&self) -> Option<&str> {
        Some(match self {
            Request::Create(r) | Request::Create2(r) | Request::CreateContainer(r) => &r.path,
            Request::CreateTtl(r) => &r.path,
            Request::Delete(r) => &r.path,
            Request::Exists(r) => &r.path,
            Request::GetData(r) => &r.path,
            Request::SetData(r) => &r.path,
            Request::GetAcl(r) => &r.path,
            Request::SetAcl(r) => &r.path,
            Request::GetChildren(r) | Request::GetChildren2(r) => &r.path,
            Request::Sync(r) => &r.path,
            Request::Check(r) => &r.path,
            Request::CheckWatches(r) => &r.path,
            Request::RemoveWatches(r) => &r.path,
            Request::GetEphemerals(r) => &r.prefix_path,
            Request::GetAllChildrenNumber(r) => &r.path,
            Request::AddWatch(r) => &r.path,
            Request::Multi(_)
            | Request::MultiRead(_)
            | Request::Ping
            | Request::Reconfig(_)
            | Request::Auth(_)
            | Request::SetWatches(_)
            | Request::Sasl(_)
            | Request::SetWatches2(_)
            | Request::WhoAmI
            | Request::CloseSession => return None,
        })
    }

    /// Decodes the body of a request of type `op` (the rest of the frame after the
    /// [`RequestHeader`]). Bytes after the body are ignored, as ZooKeeper does.
    pub fn decode<B: Buf>(op: OpCode, buf: &mut B) -> Result<Self, JuteError> {
        Ok(match op {
            OpCode::Create => Request::Create(Record::decode(buf)?),
            OpCode::Create2 => Request::Create2(Record::decode(buf)?),
            OpCode::CreateContainer => Request::CreateContainer(Record::decode(buf)?),
            OpCode::CreateTtl => Request::CreateTtl(Record::decode(buf)?),
            OpCode::Delete => Request::Delete(Record::decode(buf)?),
            OpCode::Exists => Request::Exists(Record::decode(buf)?),
            OpCode::GetData => Request::GetData(Record::decode(buf)?),
            OpCode::SetData => Request::SetData(Record::decode(buf)?),
            OpCode::GetAcl => Request::GetAcl(Record::decode(buf)?),
            OpCode::SetAcl => Request::SetAcl(Record::decode(buf)?),
            OpCode::GetChildren => Request::GetChildren(Record::decode(buf)?),
            OpCode::Sync => Request::Sync(Record::decode(buf)?),
            OpCode::Ping => Request::Ping,
            OpCode::GetChildren2 => Request::GetChildren2(Record::decode(buf)?),
            OpCode::Check => Request::Check(Record::decode(buf)?),
            OpCode::Multi => Request::Multi(decode_multi(buf)?),
            OpCode::Reconfig => Request::Reconfig(Record::decode(buf)?),
            OpCode::CheckWatches => Request::CheckWatches(Record::decode(buf)?),
            OpCode::RemoveWatches => Request::RemoveWatches(Record::decode(buf)?),
            OpCode::MultiRead => Request::MultiRead(decode_multi(buf)?),
            OpCode::Auth => Request::Auth(Record::decode(buf)?),
            OpCode::SetWatches => Request::SetWatches(Record::decode(buf)?),
            OpCode::Sasl => Request::Sasl(Record::decode(buf)?),
            OpCode::GetEphemerals => Request::GetEphemerals(Record::decode(buf)?),
            OpCode::GetAllChildrenNumber => Request::GetAllChildrenNumber(Record::decode(buf)?),
            OpCode::SetWatches2 => Request::SetWatches2(Record::decode(buf)?),
            OpCode::AddWatch => Request::AddWatch(Record::decode(buf)?),
            OpCode::WhoAmI => Request::WhoAmI,
            OpCode::CloseSession => Request::CloseSession,
            OpCode::Notification
            | OpCode::DeleteContainer
            | OpCode::CreateSession
            | OpCode::Error => return Err(JuteError::NotARequest(op)),
        })
    }

    /// Like [`Request::decode`] for the raw `type` of a [`RequestHeader`]; an unknown
    /// value is [`JuteError::UnknownOpCode`] (ZooKeeper answers it with `Unimplemented`).
    pub fn decode_type<B: Buf>(op: i32, buf: &mut B) -> Result<Self, JuteError> {
        let code = OpCode::try_from(op).map_err(JuteError::UnknownOpCode)?;
        Request::decode(code, buf)
    }

    /// Appends the body (without the [`RequestHeader`]).
    pub fn encode_body<B: BufMut>(&self, buf: &mut B) {
        with_body!(self, r => r.encode(buf), multi m => encode_multi(m, buf), none => ())
    }

    /// The exact length of [`Request::encode_body`].
    pub fn body_len(&self) -> usize {
        with_body!(self, r => r.encoded_len(), multi m => multi_len(m), none => 0)
    }
}

/// A whole request frame after the handshake: `RequestHeader{xid, type}` and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPacket {
    /// The client's id for this request, echoed in the reply.
    pub xid: i32,
    /// The request.
    pub request: Request,
}

impl RequestPacket {
    /// A request with the xid ZooKeeper clients use for it: the fixed xid of ping, auth
    /// and setWatches, else `xid`.
    pub fn new(xid: i32, request: Request) -> Self {
        RequestPacket {
            xid: request.special_xid().unwrap_or(xid),
            request,
        }
    }

    /// The header this packet starts with.
    pub fn header(&self) -> RequestHeader {
        RequestHeader {
            xid: self.xid,
            op: self.request.op_code().code(),
        }
    }

    /// Decodes a request frame (payload without the length prefix).
    ///
    /// A server that wants to answer an unknown op with `Unimplemented` needs the xid:
    /// decode [`RequestHeader`] first, then [`Request::decode_type`].
    pub fn decode<B: Buf>(buf: &mut B) -> Result<Self, JuteError> {
        let header = RequestHeader::decode(buf)?;
        Ok(RequestPacket {
            xid: header.xid,
            request: Request::decode_type(header.op, buf)?,
        })
    }

    /// Appends header and body.
    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        self.header().encode(buf);
        self.request.encode_body(buf);
    }

    /// The exact length of [`RequestPacket::encode`].
    pub fn encoded_len(&self) -> usize {
        8 + self.request.body_len()
    }
}
