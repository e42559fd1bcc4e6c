//! zxid arithmetic: `zxid = epoch << 32 | counter` (ZooKeeper's `ZxidUtils`).
//!
//! zxids and epochs are signed 64-bit values, as in ZooKeeper, so that `-1` can keep its
//! ZooKeeper meaning of "none" where the protocol uses it.

/// A ZooKeeper transaction id.
pub type Zxid = i64;

/// Builds a zxid from an epoch and a counter.
///
/// ```
/// assert_eq!(zk_proto::zxid::make(3, 7), (3 << 32) | 7);
/// ```
pub const fn make(epoch: i64, counter: i64) -> Zxid {
    (epoch << 32) | (counter & 0xffff_ffff)
}

/// The epoch (high 32 bits) of a zxid.
pub const fn epoch_of(zxid: Zxid) -> i64 {
    zxid >> 32
}

/// The counter (low 32 bits) of a zxid.
pub const fn counter_of(zxid: Zxid) -> i64 {
    zxid & 0xffff_ffff
}

/// True when the zxid is the first of its epoch (`counter == 0`), which no txn carries.
pub const fn is_epoch_start(zxid: Zxid) -> bool {
    counter_of(zxid) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let z = make(0x1234, 0xdead_beef);
        assert_eq!(epoch_of(z), 0x1234);
        assert_eq!(counter_of(z), 0xdead_beef);
        assert!(is_epoch_start(make(5, 0)));
        assert!(!is_epoch_start(make(5, 1)));
    }
}
