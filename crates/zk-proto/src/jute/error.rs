//! The error type of the jute codec.

use crate::data::OpCode;

/// Why bytes could not be decoded (or a frame could not be sent).
///
/// Every malformed input maps to one of these; decoding never panics.
#[derive(Debug, thiserror::Error)]
pub enum JuteError {
    /// The record needs more bytes than the frame holds.
    #[error("unexpected end of data: needed {needed} bytes, {remaining} remaining")]
    UnexpectedEof {
        /// Bytes the next field needs.
        needed: usize,
        /// Bytes left in the input.
        remaining: usize,
    },
    /// A buffer or string length below −1 (−1 is null).
    #[error("invalid length {0}")]
    InvalidLength(i32),
    /// A vector count that the remaining bytes cannot hold (checked before allocating).
    #[error("vector count {count} cannot fit in the {remaining} remaining bytes")]
    InvalidCount {
        /// The count read from the wire.
        count: i32,
        /// Bytes left in the input.
        remaining: usize,
    },
    /// A frame length prefix below zero.
    #[error("negative frame length {0}")]
    NegativeFrameLength(i32),
    /// A frame longer than the configured maximum (`jute.maxbuffer`).
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge {
        /// The announced (or encoded) payload length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A request type that is not a ZooKeeper op code.
    #[error("unknown op code {0}")]
    UnknownOpCode(i32),
    /// An op code that a client never sends as a request (createSession, error, …).
    #[error("op code {0:?} is not a client request")]
    NotARequest(OpCode),
    /// An op inside `multi`/`multiRead` that ZooKeeper does not allow there.
    #[error("op code {0} is not allowed inside multi")]
    InvalidMultiOp(i32),
    /// A `multi` mixing read and write ops (ZooKeeper: "Mixing different kind of ops").
    #[error("multi mixes read and write ops")]
    MixedMulti,
    /// A result type inside a multi response that ZooKeeper never sends.
    #[error("invalid result type {0} in multi response")]
    InvalidMultiResult(i32),
    /// A reply whose xid matches no pending request.
    #[error("reply for unknown xid {0}")]
    UnknownXid(i32),
    /// Bytes followed a four-letter word that no command reads.
    #[error("unexpected bytes after a four-letter word")]
    AfterFourLetterWord,
    /// The underlying transport failed (only from the tokio codec).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}
