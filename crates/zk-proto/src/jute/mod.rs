//! The ZooKeeper client wire protocol (jute records, 4-byte length framing).
//!
//! What ZooKeeper 3.8 clients (Java, Curator, kazoo, the C client, go-zookeeper, the Rust
//! `zookeeper-client` crate) speak to the client port, in both directions, so that a server
//! and a test client share one implementation:
//!
//! * [`Record`]: the jute binary encoding (big-endian ints, `int`-length buffers and
//!   strings with −1 for null, counted vectors), implemented for every record of
//!   `zookeeper.jute`'s `proto` module ([`records`]) and for [`crate::data::Stat`],
//!   [`crate::data::Acl`], [`crate::data::Id`].
//! * [`ConnectRequest`] / [`ConnectResponse`]: the handshake, with the optional trailing
//!   read-only byte.
//! * [`RequestPacket`] = `RequestHeader` + [`Request`] (one variant per op, `multi` as
//!   [`MultiOp`]s), [`ReplyPacket`] = `ReplyHeader` + [`Response`] (multi results as
//!   [`MultiResult`]s, watch notifications as [`Response::Notification`]).
//! * [`JuteCodec`]: `tokio_util::codec` framing with a maximum frame size, and
//!   [`ServerCodec`], which also recognises a [`FourLetterWord`] on a fresh connection.
//!
//! Decoding untrusted bytes returns a [`JuteError`], never panics, and allocates no more
//! than the input can justify.
//!
//! ```
//! use bytes::BytesMut;
//! use tokio_util::codec::{Decoder, Encoder};
//! use zk_proto::data::{Acl, OpCode};
//! use zk_proto::jute::{
//!     CreateRequest, CreateResponse, JuteCodec, ReplyPacket, Request, RequestPacket, Response,
//! };
//!
//! // Client side: frame a create request.
//! let mut codec = JuteCodec::new();
//! let mut wire = BytesMut::new();
//! let create = Request::Create(CreateRequest {
//!     path: "/app".into(),
//!     data: Some("hi".into()),
//!     acl: Acl::open_unsafe(),
//!     flags: 0,
//! });
//! codec.encode(RequestPacket::new(1, create.clone()), &mut wire).unwrap();
//!
//! // Server side: cut the frame, decode it, answer.
//! let mut frame = codec.decode(&mut wire).unwrap().unwrap().freeze();
//! let packet = RequestPacket::decode(&mut frame).unwrap();
//! assert_eq!((packet.xid, &packet.request), (1, &create));
//! let reply = ReplyPacket::new(
//!     packet.xid,
//!     0x1_0000_0002,
//!     zk_proto::data::ErrorCode::Ok,
//!     Response::Create(CreateResponse { path: "/app".into() }),
//! );
//! codec.encode(&reply, &mut wire).unwrap();
//!
//! // Client side: the op of a reply comes from the pending request with its xid.
//! let mut frame = codec.decode(&mut wire).unwrap().unwrap().freeze();
//! let got = ReplyPacket::decode(&mut frame, |xid| (xid == 1).then_some(OpCode::Create));
//! assert_eq!(got.unwrap(), reply);
//! ```

mod codec;
mod error;
mod four_letter;
mod record;
pub mod records;
mod request;
mod response;

pub use codec::{
    DEFAULT_MAX_FRAME_BYTES, Inbound, JUTE_MAX_BUFFER, JuteCodec, Packet, ServerCodec,
};
pub use error::JuteError;
pub use four_letter::FourLetterWord;
pub use record::{Record, STAT_LEN};
pub use records::*;
pub use request::{MultiOp, Request, RequestPacket};
pub use response::{MultiResult, ReplyPacket, Response};
