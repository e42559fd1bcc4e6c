//! Every byte on the wire of a ZooKeeper-compatible ensemble.
//!
//! * [`peer`]: the peer protocol, Protobuf messages and gRPC services compiled from
//!   `proto/*.proto` (by protox, so no system `protoc` is needed): [`peer::election`] for
//!   fast leader election, [`peer::quorum`] for Zab, [`peer::txn`] for the replicated txn.
//! * [`data`]: the ZooKeeper data types every layer shares (`Stat`, `Acl`, op and error
//!   codes, create modes, watch events).
//! * [`zxid`]: zxid arithmetic.
//!
//! ```
//! use prost::Message;
//! use zk_proto::peer::election::{Notification, PeerState};
//!
//! let n = Notification { leader: 3, zxid: zk_proto::zxid::make(1, 42), sid: 3,
//!     state: PeerState::Looking as i32, ..Default::default() };
//! let bytes = n.encode_to_vec();
//! assert_eq!(Notification::decode(bytes.as_slice()).unwrap(), n);
//! ```

pub mod data;
pub mod jute;
pub mod txn;
pub mod zxid;

/// Generated Protobuf types and gRPC services of the peer protocol.
#[allow(missing_docs, clippy::all)]
pub mod peer {
    /// The replicated transaction (`proto/txn.proto`).
    pub mod txn {
        tonic::include_proto!("zk.txn");
    }
    /// Fast leader election notifications and the `Election` service (`proto/election.proto`).
    pub mod election {
        tonic::include_proto!("zk.election");
    }
    /// Zab packets and the `Quorum` service (`proto/quorum.proto`).
    pub mod quorum {
        tonic::include_proto!("zk.quorum");
    }
}
