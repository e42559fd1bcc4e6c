//! The stored form of one log record: `crc32c(zxid_be ‖ payload)` (4 bytes, big-endian)
//! followed by the payload. The key (the big-endian zxid) is stored beside it.

use zk_proto::zxid::Zxid;

/// Bytes in front of the payload in a stored record (the crc32c).
pub const RECORD_HEADER_LEN: usize = 4;

/// The checksum of a record: crc32c over the big-endian zxid followed by the payload, so a
/// value moved under another key is detected too.
pub fn record_crc(zxid: Zxid, payload: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&zxid.to_be_bytes());
    crc32c::crc32c_append(crc, payload)
}

/// Encodes the stored value of a record.
pub fn encode_record(zxid: Zxid, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER_LEN + payload.len());
    out.extend_from_slice(&record_crc(zxid, payload).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Verifies a stored value against its zxid and returns the payload, or what is wrong.
pub fn decode_record(zxid: Zxid, value: &[u8]) -> Result<&[u8], String> {
    let Some((crc_bytes, payload)) = value.split_first_chunk::<RECORD_HEADER_LEN>() else {
        return Err(format!(
            "value is {} bytes, shorter than its {RECORD_HEADER_LEN}-byte checksum",
            value.len()
        ));
    };
    let stored = u32::from_be_bytes(*crc_bytes);
    let actual = record_crc(zxid, payload);
    if stored != actual {
        return Err(format!(
            "checksum mismatch (stored {stored:#010x}, computed {actual:#010x})"
        ));
    }
    Ok(payload)
}

/// The sled key of a zxid: its big-endian bytes (zxids are positive, so byte order is
/// numeric order).
pub(crate) fn key_of(zxid: Zxid) -> [u8; 8] {
    zxid.to_be_bytes()
}

/// The zxid of a sled key, if it is 8 bytes.
pub(crate) fn zxid_of_key(key: &[u8]) -> Option<Zxid> {
    let bytes: [u8; 8] = key.try_into().ok()?;
    Some(Zxid::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_detection() {
        let v = encode_record(42, b"hello");
        assert_eq!(decode_record(42, &v), Ok(b"hello".as_slice()));
        // Another key: the zxid is covered by the checksum.
        assert!(decode_record(43, &v).is_err());
        // A flipped payload bit.
        let mut bad = v.clone();
        if let Some(b) = bad.last_mut() {
            *b ^= 1;
        }
        assert!(decode_record(42, &bad).is_err());
        // Too short.
        assert!(decode_record(42, &v[..3]).is_err());
        // An empty payload is fine.
        assert_eq!(decode_record(7, &encode_record(7, b"")), Ok(b"".as_slice()));
    }

    #[test]
    fn keys_sort_like_zxids() {
        let zxids = [1i64, 2, 255, 256, 1 << 32, (1 << 32) + 1, i64::MAX];
        let mut keys: Vec<[u8; 8]> = zxids.iter().map(|z| key_of(*z)).collect();
        keys.sort();
        let back: Vec<i64> = keys.iter().filter_map(|k| zxid_of_key(k)).collect();
        assert_eq!(back, zxids);
        assert_eq!(zxid_of_key(&[1, 2, 3]), None);
    }
}
