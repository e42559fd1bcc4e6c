//! Length framing (`int32 length | payload`) as `tokio_util::codec` decoders/encoders.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::JuteError;
use super::four_letter::FourLetterWord;
use super::record::Record;
use super::records::{ConnectRequest, ConnectResponse};
use super::request::RequestPacket;
use super::response::ReplyPacket;

/// ZooKeeper's default `jute.maxbuffer` (`0xfffff`, one byte short of 1 MiB).
pub const JUTE_MAX_BUFFER: usize = 0xfffff;

/// Default largest frame payload: `jute.maxbuffer` plus 1 KiB of slack for headers,
/// so that a znode of `jute.maxbuffer` bytes still fits in a setData request or a
/// getData reply.
pub const DEFAULT_MAX_FRAME_BYTES: usize = JUTE_MAX_BUFFER + 1024;

/// Something sent as one frame: the codec writes its length, then its bytes.
pub trait Packet {
    /// The exact number of bytes [`Packet::encode_packet`] writes.
    fn packet_len(&self) -> usize;
    /// Appends the payload (without the length prefix).
    fn encode_packet(&self, dst: &mut BytesMut);
}

impl Packet for ConnectRequest {
    fn packet_len(&self) -> usize {
        self.encoded_len()
    }
    fn encode_packet(&self, dst: &mut BytesMut) {
        self.encode(dst);
    }
}

impl Packet for ConnectResponse {
    fn packet_len(&self) -> usize {
        self.encoded_len()
    }
    fn encode_packet(&self, dst: &mut BytesMut) {
        self.encode(dst);
    }
}

impl Packet for RequestPacket {
    fn packet_len(&self) -> usize {
        self.encoded_len()
    }
    fn encode_packet(&self, dst: &mut BytesMut) {
        self.encode(dst);
    }
}

impl Packet for ReplyPacket {
    fn packet_len(&self) -> usize {
        self.encoded_len()
    }
    fn encode_packet(&self, dst: &mut BytesMut) {
        self.encode(dst);
    }
}

/// Raw payload bytes, framed as they are.
impl Packet for [u8] {
    fn packet_len(&self) -> usize {
        self.len()
    }
    fn encode_packet(&self, dst: &mut BytesMut) {
        dst.put_slice(self);
    }
}

/// Raw payload bytes, framed as they are.
impl Packet for Bytes {
    fn packet_len(&self) -> usize {
        self.len()
    }
    fn encode_packet(&self, dst: &mut BytesMut) {
        dst.put_slice(self);
    }
}

impl<T: Packet + ?Sized> Packet for &T {
    fn packet_len(&self) -> usize {
        (**self).packet_len()
    }
    fn encode_packet(&self, dst: &mut BytesMut) {
        (**self).encode_packet(dst);
    }
}

/// Writes `packet` as one frame, refusing (and writing nothing) above `max`.
fn encode_frame<T: Packet + ?Sized>(
    packet: &T,
    max: usize,
    dst: &mut BytesMut,
) -> Result<(), JuteError> {
    let len = packet.packet_len();
    let prefix = i32::try_from(len)
        .ok()
        .filter(|_| len <= max)
        .ok_or(JuteError::FrameTooLarge { len, max })?;
    dst.reserve(4 + len);
    dst.put_i32(prefix);
    let start = dst.len();
    packet.encode_packet(dst);
    debug_assert_eq!(
        dst.len() - start,
        len,
        "packet_len disagrees with encode_packet"
    );
    Ok(())
}

/// The ZooKeeper client-port framing: each frame is a big-endian `int32` length and that
/// many bytes. The decoder yields each payload (without the prefix); a negative length or
/// one above the maximum is an error before anything is buffered or allocated for it.
/// The encoder takes any [`Packet`] and applies the same maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JuteCodec {
    max_frame_bytes: usize,
}

impl Default for JuteCodec {
    fn default() -> Self {
        JuteCodec {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
        }
    }
}

impl JuteCodec {
    /// A codec with [`DEFAULT_MAX_FRAME_BYTES`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A codec whose frames may carry at most `max_frame_bytes` of payload (capped at
    /// `i32::MAX`).
    pub fn with_max_frame_bytes(max_frame_bytes: usize) -> Self {
        JuteCodec {
            max_frame_bytes: max_frame_bytes.min(i32::MAX as usize),
        }
    }

    /// The largest payload accepted, in bytes.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    /// Checks a length prefix against the limits.
    fn check_len(&self, len: i32) -> Result<usize, JuteError> {
        let n = usize::try_from(len).map_err(|_| JuteError::NegativeFrameLength(len))?;
        if n > self.max_frame_bytes {
            return Err(JuteError::FrameTooLarge {
                len: n,
                max: self.max_frame_bytes,
            });
        }
        Ok(n)
    }
}

impl Decoder for JuteCodec {
    type Item = BytesMut;
    type Error = JuteError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, JuteError> {
        let Some(prefix) = src.first_chunk::<4>() else {
            return Ok(None);
        };
        let len = self.check_len(i32::from_be_bytes(*prefix))?;
        let total = 4 + len;
        if src.len() < total {
            // Bounded by max_frame_bytes, checked above.
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(4);
        Ok(Some(src.split_to(len)))
    }
}

impl<T: Packet> Encoder<T> for JuteCodec {
    type Error = JuteError;

    fn encode(&mut self, item: T, dst: &mut BytesMut) -> Result<(), JuteError> {
        encode_frame(&item, self.max_frame_bytes, dst)
    }
}

/// What a server reads from a client connection (see [`ServerCodec`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A four-letter word in place of the first length prefix. Any bytes after it (the
    /// 8-byte mask of `stmk`) stay in the read buffer.
    FourLetterWord(FourLetterWord),
    /// A frame payload: the `ConnectRequest` first, then request packets.
    Frame(BytesMut),
}

/// Where a [`ServerCodec`] is in the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerState {
    /// Nothing decoded yet: the first 4 bytes may be a four-letter word.
    First,
    /// A first frame was decoded: only frames follow.
    Framed,
    /// A four-letter word was decoded: the server answers it and closes.
    FourLetterWord,
}

/// At most this many bytes may follow a four-letter word (`stmk` reads an 8-byte mask;
/// `echo ruok | nc` adds a newline).
const MAX_AFTER_FOUR_LETTER_WORD: usize = 64;

/// The server side of the client port: [`JuteCodec`] plus four-letter-word detection on
/// the first 4 bytes of the connection (ZooKeeper's `checkFourLetterWord`, done before
/// the length check). After a four-letter word the codec yields nothing more: the server
/// answers and closes; up to 64 trailing bytes are tolerated (readable through the
/// framed read buffer), more is [`JuteError::AfterFourLetterWord`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerCodec {
    inner: JuteCodec,
    state: ServerState,
}

impl Default for ServerCodec {
    fn default() -> Self {
        Self::new(JuteCodec::default())
    }
}

impl ServerCodec {
    /// A server codec for a fresh connection, framing with `inner`.
    pub fn new(inner: JuteCodec) -> Self {
        ServerCodec {
            inner,
            state: ServerState::First,
        }
    }

    /// True until the first frame or word has been decoded.
    pub fn awaiting_first(&self) -> bool {
        self.state == ServerState::First
    }

    /// The framing codec inside.
    pub fn framing(&self) -> JuteCodec {
        self.inner
    }
}

impl Decoder for ServerCodec {
    type Item = Inbound;
    type Error = JuteError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Inbound>, JuteError> {
        match self.state {
            ServerState::First => {
                let Some(first4) = src.first_chunk::<4>() else {
                    return Ok(None);
                };
                if let Some(word) = FourLetterWord::from_bytes(*first4) {
                    src.advance(4);
                    self.state = ServerState::FourLetterWord;
                    return Ok(Some(Inbound::FourLetterWord(word)));
                }
                let frame = self.inner.decode(src)?;
                if frame.is_some() {
                    self.state = ServerState::Framed;
                }
                Ok(frame.map(Inbound::Frame))
            }
            ServerState::Framed => Ok(self.inner.decode(src)?.map(Inbound::Frame)),
            ServerState::FourLetterWord => {
                if src.len() > MAX_AFTER_FOUR_LETTER_WORD {
                    return Err(JuteError::AfterFourLetterWord);
                }
                Ok(None)
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Inbound>, JuteError> {
        match self.decode(src)? {
            Some(item) => Ok(Some(item)),
            None if src.is_empty() || self.state == ServerState::FourLetterWord => Ok(None),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed inside a frame",
            )
            .into()),
        }
    }
}

impl<T: Packet> Encoder<T> for ServerCodec {
    type Error = JuteError;

    fn encode(&mut self, item: T, dst: &mut BytesMut) -> Result<(), JuteError> {
        self.inner.encode(item, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_and_join() {
        let mut codec = JuteCodec::new();
        let mut buf = BytesMut::from(&[0, 0, 0, 3, 1, 2][..]);
        assert!(codec.decode(&mut buf).ok().flatten().is_none());
        buf.extend_from_slice(&[3, 0, 0, 0, 0]);
        let f = codec.decode(&mut buf).ok().flatten();
        assert_eq!(f.as_deref(), Some(&[1u8, 2, 3][..]));
        let f = codec.decode(&mut buf).ok().flatten();
        assert_eq!(f.as_deref(), Some(&[][..]));
        assert!(buf.is_empty());
    }

    #[test]
    fn too_large_or_negative_fails_without_buffering() {
        let mut codec = JuteCodec::with_max_frame_bytes(10);
        let mut buf = BytesMut::from(&[0, 0, 0, 11][..]);
        let cap = buf.capacity();
        assert!(matches!(
            codec.decode(&mut buf),
            Err(JuteError::FrameTooLarge { len: 11, max: 10 })
        ));
        assert_eq!(buf.capacity(), cap);
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xfe][..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(JuteError::NegativeFrameLength(-2))
        ));
        let mut out = BytesMut::new();
        assert!(matches!(
            codec.encode(Bytes::from_static(&[0; 11]), &mut out),
            Err(JuteError::FrameTooLarge { len: 11, max: 10 })
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn server_codec_sees_four_letter_words_only_first() {
        let mut codec = ServerCodec::default();
        let mut buf = BytesMut::from(&b"ruok\n"[..]);
        assert_eq!(
            codec.decode(&mut buf).ok().flatten(),
            Some(Inbound::FourLetterWord(FourLetterWord::Ruok))
        );
        assert!(codec.decode_eof(&mut buf).ok().flatten().is_none());

        let mut codec = ServerCodec::default();
        let mut buf = BytesMut::from(&[0, 0, 0, 1, 7][..]);
        buf.extend_from_slice(b"ruok");
        assert_eq!(
            codec.decode(&mut buf).ok().flatten(),
            Some(Inbound::Frame(BytesMut::from(&[7u8][..])))
        );
        assert!(!codec.awaiting_first());
        // After the first frame "ruok" is a length prefix, and far too large.
        assert!(matches!(
            codec.decode(&mut buf),
            Err(JuteError::FrameTooLarge { .. })
        ));
    }
}
