//! The jute binary encoding (`BinaryOutputArchive`/`BinaryInputArchive`) as one trait.
//!
//! Big-endian `int` (4 bytes), `long` (8), `boolean` (1); `buffer` and `ustring` are an
//! `int` length (−1 = null) and the bytes; `vector` is an `int` count (−1 = null) and the
//! elements; a record is its fields in order, untagged.

use bytes::{Buf, BufMut, Bytes};

use super::JuteError;
use crate::data::{Acl, Id, Stat};

/// A jute type: a primitive or a record, with its exact wire encoding.
///
/// Decoding reads from any [`Buf`]; from a [`Bytes`] frame, `buffer` fields are taken
/// without copying. Every read checks the remaining length first, and vector counts are
/// bounded by the remaining bytes before anything is allocated.
///
/// Encoding writes to a growable [`BufMut`] (`BytesMut`, `Vec<u8>`). It does not fail:
/// lengths are written as `int`, and the frame encoder rejects any frame above the
/// configured maximum, far below the 2 GiB where an `int` length would not fit.
pub trait Record: Sized {
    /// The fewest bytes any value of this type encodes to (bounds vector counts).
    const MIN_LEN: usize;

    /// Appends the encoding of `self`.
    fn encode<B: BufMut>(&self, buf: &mut B);

    /// Reads one value.
    fn decode<B: Buf>(buf: &mut B) -> Result<Self, JuteError>;

    /// The exact number of bytes [`Record::encode`] writes.
    fn encoded_len(&self) -> usize;

    /// Encodes into a new vector (convenience for tests and small records).
    fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.encoded_len());
        self.encode(&mut v);
        v
    }
}

/// Fails unless `buf` holds at least `n` more bytes.
pub(crate) fn need<B: Buf>(buf: &B, n: usize) -> Result<(), JuteError> {
    let remaining = buf.remaining();
    if remaining < n {
        return Err(JuteError::UnexpectedEof {
            needed: n,
            remaining,
        });
    }
    Ok(())
}

/// Writes a length or count as a jute `int`.
fn put_len<B: BufMut>(buf: &mut B, len: usize) {
    // Frames are bounded far below i32::MAX by the codec; saturate rather than wrap.
    buf.put_i32(i32::try_from(len).unwrap_or(i32::MAX));
}

/// Reads a `buffer`/`ustring` length: `None` for null (−1), else a length that the
/// remaining input holds.
fn get_len<B: Buf>(buf: &mut B) -> Result<Option<usize>, JuteError> {
    let len = i32::decode(buf)?;
    if len == -1 {
        return Ok(None);
    }
    let n = usize::try_from(len).map_err(|_| JuteError::InvalidLength(len))?;
    need(buf, n)?;
    Ok(Some(n))
}

/// Reads a `buffer`, keeping null apart from empty.
pub(crate) fn get_opt_bytes<B: Buf>(buf: &mut B) -> Result<Option<Bytes>, JuteError> {
    Ok(get_len(buf)?.map(|n| buf.copy_to_bytes(n)))
}

/// Reads a `ustring`, keeping null apart from empty. Invalid UTF-8 is replaced with
/// U+FFFD, as Java's `new String(bytes, UTF_8)` in ZooKeeper does.
pub(crate) fn get_opt_string<B: Buf>(buf: &mut B) -> Result<Option<String>, JuteError> {
    Ok(match get_len(buf)? {
        None => None,
        Some(n) => {
            let mut v = vec![0u8; n];
            buf.copy_to_slice(&mut v);
            Some(match String::from_utf8(v) {
                Ok(s) => s,
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            })
        }
    })
}

impl Record for i32 {
    const MIN_LEN: usize = 4;
    fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_i32(*self);
    }
    fn decode<B: Buf>(buf: &mut B) -> Result<Self, JuteError> {
        need(buf, 4)?;
        Ok(buf.get_i32())
    }
    fn encoded_len(&self) -> usize {
        4
    }
}

impl Record for i64 {
    const MIN_LEN: usize = 8;
    fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_i64(*self);
    }
    fn decode<B: Buf>(buf: &mut B) -> Result<Self, JuteError> {
        need(buf, 8)?;
        Ok(buf.get_i64())
    }
    fn encoded_len(&self) -> usize {
        8
    }
}

/// `boolean`: one byte, written as 0 or 1; any non-zero byte reads as true (Java's
/// `DataInput.readBoolean`).
impl Record for bool {
    const MIN_LEN: usize = 1;
    fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u8(u8::from(*self));
    }
    fn decode<B: Buf>(buf: &mut B) -> Result<Self, JuteError> {
        need(buf, 1)?;
        Ok(buf.get_u8() != 0)
    }
    fn encoded_len(&self) -> usize {
        1
    }
}

/// `ustring` where null carries no meaning: null (−1) decodes as the empty string, which
/// every path check then rejects, as ZooKeeper rejects a null path.
impl Record for String {
    const MIN_LEN: usize = 4;
    fn encode<B: BufMut>(&self, buf: &mut B) {
        put_len(buf, self.len());
        buf.put_slice(self.as_bytes());
    }
    fn decode<B: Buf>(buf: &mut B) -> Result<Self, JuteError> {
        Ok(get_opt_string(buf)?.unwrap_or_default())
    }
    fn encoded_len(&self) -> usize {
        4 + self.len()
    }
}

/// `ustring` that may be null (−1 on the wire).
impl Record for Option<String> {
    const MIN_LEN: usize = 4;
    fn encode<B: BufMut>(&self, buf: &mut B) {
        match self {
            None => buf.put_i32(-1),
            Some(s) => s.encode(buf),
        }
    }
    fn decode<B: Buf>(buf: &mut B) -> Result<Self, JuteError> {
        get_opt_string(buf)
    }
    fn encoded_len(&self) -> usize {
        4 + self.as_ref().map_or(0, String::len)
    }
}

/// `buffer` where null carries no meaning: null decodes as empty.
impl Record for Bytes {
    const MIN_LEN: usize = 4;
    fn encode<B: BufMut>(&self, buf: &mut B) {
        put_len(buf, self.len());
        buf.put_slice(self);
    }
    fn decode<B: Buf>(buf: &mut B) -> Result<Self, JuteError> {
        Ok(get_opt_bytes(buf)?.unwrap_or_default())
    }
    fn encoded_len(&self) -> usize {
        4 + self.len()
    }
}

/// `buffer` that may be null: znode data, which the Java client sends as null for
/// `create(path, null, …)` and gets back as null.
impl Record for Option<Bytes> {
    const MIN_LEN: usize = 4;
    fn encode<B: BufMut>(&self, buf: &mut B) {
        match self {
            None => buf.put_i32(-1),
            Some(b) => b.encode(buf),
        }
    }
    fn decode<B: Buf>(buf: &mut B) -> Result<Self, JuteError> {
        get_opt_bytes(buf)
    }
    fn encoded_len(&self) -> usize {
        4 + self.as_ref().map_or(0, Bytes::len)
    }
}

/// `vector<T>`: null (−1) decodes as empty. A count that the remaining bytes cannot hold
/// (each element takes at least `T::MIN_LEN`) fails before any allocation.
impl<T: Record> Record for Vec<T> {
    const MIN_LEN: usize = 4;
    fn encode<B: BufMut>(&self, buf: &mut B) {
        put_len(buf, self.len());
        for item in self {
            item.encode(buf);
        }
    }
    fn decode<B: Buf>(buf: &mut B) -> Result<Self, JuteError> {
        let count = i32::decode(buf)?;
        if count == -1 {
            return Ok(Vec::new());
        }
        let remaining = buf.remaining();
        let n = usize::try_from(count)
            .ok()
            .filter(|n| n.saturating_mul(T::MIN_LEN.max(1)) <= remaining)
            .ok_or(JuteError::InvalidCount { count, remaining })?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(T::decode(buf)?);
        }
        Ok(v)
    }
    fn encoded_len(&self) -> usize {
        4 + self.iter().map(Record::encoded_len).sum::<usize>()
    }
}

/// Declares jute records: a struct with public fields and its [`Record`] impl (fields
/// encoded in declaration order).
macro_rules! record {
    ($(
        $(#[$meta:meta])*
        $name:ident { $( $(#[$fmeta:meta])* $field:ident : $ty:ty, )* }
    )*) => {$(
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl $crate::jute::Record for $name {
            const MIN_LEN: usize = 0 $(+ <$ty as $crate::jute::Record>::MIN_LEN)*;
            #[allow(unused_variables)]
            fn encode<B: ::bytes::BufMut>(&self, buf: &mut B) {
                $( $crate::jute::Record::encode(&self.$field, buf); )*
            }
            #[allow(unused_variables)]
            fn decode<B: ::bytes::Buf>(buf: &mut B) -> Result<Self, $crate::jute::JuteError> {
                Ok($name { $( $field: <$ty as $crate::jute::Record>::decode(buf)?, )* })
            }
            fn encoded_len(&self) -> usize {
                0 $(+ $crate::jute::Record::encoded_len(&self.$field))*
            }
        }
    )*};
}
pub(crate) use record;

impl Record for Id {
    const MIN_LEN: usize = 8;
    fn encode<B: BufMut>(&self, buf: &mut B) {
        self.scheme.encode(buf);
        self.id.encode(buf);
    }
    fn decode<B: Buf>(buf: &mut B) -> Result<Self, JuteError> {
        Ok(Id {
            scheme: String::decode(buf)?,
            id: String::decode(buf)?,
        })
    }
    fn encoded_len(&self) -> usize {
        self.scheme.encoded_len() + self.id.encoded_len()
    }
}

impl Record for Acl {
    const MIN_LEN: usize = 4 + Id::MIN_LEN;
    fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_i32(self.perms);
        self.id.encode(buf);
    }
    fn decode<B: Buf>(buf: &mut B) -> Result<Self, JuteError> {
        Ok(Acl {
            perms: i32::decode(buf)?,
            id: Id::decode(buf)?,
        })
    }
    fn encoded_len(&self) -> usize {
        4 + self.id.encoded_len()
    }
}

/// Size of an encoded [`Stat`]: 6 longs and 5 ints.
pub const STAT_LEN: usize = 6 * 8 + 5 * 4;

impl Record for Stat {
    const MIN_LEN: usize = STAT_LEN;
    fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_i64(self.czxid);
        buf.put_i64(self.mzxid);
        buf.put_i64(self.ctime);
        buf.put_i64(self.mtime);
        buf.put_i32(self.version);
        buf.put_i32(self.cversion);
        buf.put_i32(self.aversion);
        buf.put_i64(self.ephemeral_owner);
        buf.put_i32(self.data_length);
        buf.put_i32(self.num_children);
        buf.put_i64(self.pzxid);
    }
    fn decode<B: Buf>(buf: &mut B) -> Result<Self, JuteError> {
        need(buf, STAT_LEN)?;
        Ok(Stat {
            czxid: buf.get_i64(),
            mzxid: buf.get_i64(),
            ctime: buf.get_i64(),
            mtime: buf.get_i64(),
            version: buf.get_i32(),
            cversion: buf.get_i32(),
            aversion: buf.get_i32(),
            ephemeral_owner: buf.get_i64(),
            data_length: buf.get_i32(),
            num_children: buf.get_i32(),
            pzxid: buf.get_i64(),
        })
    }
    fn encoded_len(&self) -> usize {
        STAT_LEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitives_are_big_endian() {
        assert_eq!(0x0102_0304_i32.to_vec(), [1, 2, 3, 4]);
        assert_eq!(
            (-2_i64).to_vec(),
            [0xff; 7].iter().copied().chain([0xfe]).collect::<Vec<_>>()
        );
        assert_eq!(true.to_vec(), [1]);
        assert_eq!("ab".to_string().to_vec(), [0, 0, 0, 2, b'a', b'b']);
        assert_eq!(None::<Bytes>.to_vec(), [0xff; 4]);
        assert_eq!(Some(Bytes::new()).to_vec(), [0; 4]);
    }

    #[test]
    fn null_and_empty_stay_apart() {
        let mut b: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert_eq!(Option::<Bytes>::decode(&mut b).ok(), Some(None));
        let mut b: &[u8] = &[0, 0, 0, 0];
        assert_eq!(
            Option::<Bytes>::decode(&mut b).ok(),
            Some(Some(Bytes::new()))
        );
        let mut b: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert_eq!(String::decode(&mut b).ok(), Some(String::new()));
    }

    #[test]
    fn huge_counts_fail_before_allocating() {
        let mut b: &[u8] = &[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        assert!(matches!(
            Vec::<String>::decode(&mut b),
            Err(JuteError::InvalidCount {
                count: i32::MAX,
                remaining: 4
            })
        ));
        let mut b: &[u8] = &[0x7f, 0xff, 0xff, 0xff, 0];
        assert!(matches!(
            Bytes::decode(&mut b),
            Err(JuteError::UnexpectedEof {
                needed: 0x7fff_ffff,
                remaining: 1
            })
        ));
        let mut b: &[u8] = &[0xff, 0xff, 0xff, 0xfe];
        assert!(matches!(
            String::decode(&mut b),
            Err(JuteError::InvalidLength(-2))
        ));
    }

    #[test]
    fn invalid_utf8_is_replaced_like_java() {
        let mut b: &[u8] = &[0, 0, 0, 2, b'a', 0xff];
        assert_eq!(String::decode(&mut b).ok().as_deref(), Some("a\u{fffd}"));
    }
}
