//! Property tests on hostile input: random, truncated and corrupted bytes give errors,
//! never panics, and no length or count makes the decoder allocate beyond its input.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use tokio_util::codec::Decoder;
use zk_proto::data::{Acl, OpCode, Stat};
use zk_proto::jute::*;

/// Runs every decoder of the crate over `bytes`; only the absence of panics matters here.
fn decode_everything(bytes: &[u8]) {
    let b = Bytes::copy_from_slice(bytes);
    for op in OpCode::ALL {
        let _ = Request::decode(*op, &mut b.clone());
        let _ = Response::decode(*op, &mut b.clone());
        let _ = ReplyPacket::decode(&mut b.clone(), |_| Some(*op));
    }
    let _ = RequestPacket::decode(&mut b.clone());
    let _ = ConnectRequest::decode(&mut b.clone());
    let _ = ConnectResponse::decode(&mut b.clone());
    let _ = Vec::<Acl>::decode(&mut b.clone());
    let _ = Stat::decode(&mut b.clone());
    let _ = SetWatches2::decode(&mut b.clone());
    let mut codec = JuteCodec::with_max_frame_bytes(64);
    let mut buf = BytesMut::from(bytes);
    while let Ok(Some(_)) = codec.decode(&mut buf) {}
    let mut server = ServerCodec::new(JuteCodec::with_max_frame_bytes(64));
    let mut buf = BytesMut::from(bytes);
    while let Ok(Some(_)) = server.decode(&mut buf) {}
    let _ = server.decode_eof(&mut buf);
}

/// Valid request and reply frames with several kinds of nested lengths and counts.
fn samples() -> Vec<Vec<u8>> {
    let stat = Stat {
        czxid: 5,
        data_length: 3,
        ..Stat::default()
    };
    let create = CreateRequest {
        path: "/a/b".into(),
        data: Some(Bytes::from_static(b"xyz")),
        acl: Acl::open_unsafe(),
        flags: 1,
    };
    let requests = [
        Request::Create2(create.clone()),
        Request::Multi(vec![
            MultiOp::Create(create),
            MultiOp::Check(CheckVersionRequest {
                path: "/a".into(),
                version: 2,
            }),
        ]),
        Request::SetWatches2(SetWatches2 {
            relative_zxid: 9,
            data_watches: vec!["/a".into(), "/b".into()],
            persistent_recursive_watches: vec!["/c".into()],
            ..SetWatches2::default()
        }),
        Request::Auth(AuthPacket {
            auth_type: 0,
            scheme: "digest".into(),
            auth: Bytes::from_static(b"u:p"),
        }),
    ];
    let replies = [
        (
            OpCode::GetChildren2,
            Response::GetChildren2(GetChildren2Response {
                children: vec!["x".into(), "y".into()],
                stat,
            }),
        ),
        (
            OpCode::MultiRead,
            Response::Multi(vec![
                MultiResult::GetData(GetDataResponse {
                    data: Some(Bytes::from_static(b"abc")),
                    stat,
                }),
                MultiResult::Error(ErrorResponse { err: -101 }),
            ]),
        ),
        (
            OpCode::GetAcl,
            Response::GetAcl(GetAclResponse {
                acl: Acl::creator_all(),
                stat,
            }),
        ),
    ];
    let mut out: Vec<Vec<u8>> = requests
        .into_iter()
        .map(|r| {
            let mut v = Vec::new();
            RequestPacket::new(3, r).encode(&mut v);
            v
        })
        .collect();
    for (_, body) in replies {
        let mut v = Vec::new();
        ReplyPacket {
            header: ReplyHeader {
                xid: 3,
                zxid: 7,
                err: 0,
            },
            body,
        }
        .encode(&mut v);
        out.push(v);
    }
    out
}

fn sample_op(index: usize) -> OpCode {
    [OpCode::GetChildren2, OpCode::MultiRead, OpCode::GetAcl][index % 3]
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        decode_everything(&bytes);
    }

    #[test]
    fn truncated_frames_are_errors(index in 0usize..7, cut in any::<prop::sample::Index>()) {
        let samples = samples();
        let full = &samples[index % samples.len()];
        let short = &full[..cut.index(full.len())];
        let mut b = Bytes::copy_from_slice(short);
        if index < 4 {
            prop_assert!(RequestPacket::decode(&mut b).is_err(), "{} of {} bytes decoded", short.len(), full.len());
        } else {
            let op = sample_op(index - 4);
            prop_assert!(ReplyPacket::decode(&mut b, |_| Some(op)).is_err(), "{} of {} bytes decoded", short.len(), full.len());
        }
        decode_everything(short);
    }

    #[test]
    fn corrupted_frames_never_panic(
        index in 0usize..7,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let samples = samples();
        let mut bytes = samples[index % samples.len()].clone();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        decode_everything(&bytes);
    }

    #[test]
    fn huge_lengths_and_counts_fail_before_allocating(len in 0x10_0001i32..=i32::MAX) {
        // As a frame prefix: refused without reserving room for it.
        let mut codec = JuteCodec::with_max_frame_bytes(0x10_0000);
        let mut buf = BytesMut::with_capacity(8);
        buf.extend_from_slice(&len.to_be_bytes());
        let cap = buf.capacity();
        let refused = matches!(codec.decode(&mut buf), Err(JuteError::FrameTooLarge { .. }));
        prop_assert!(refused);
        prop_assert_eq!(buf.capacity(), cap);
        // As a buffer length, string length or vector count inside a small frame.
        let mut b = Bytes::from([&len.to_be_bytes()[..], &[0; 12]].concat());
        let eof = matches!(Bytes::decode(&mut b.clone()), Err(JuteError::UnexpectedEof { .. }));
        prop_assert!(eof);
        let eof = matches!(String::decode(&mut b.clone()), Err(JuteError::UnexpectedEof { .. }));
        prop_assert!(eof);
        let count = matches!(Vec::<String>::decode(&mut b), Err(JuteError::InvalidCount { .. }));
        prop_assert!(count);
    }

    #[test]
    fn four_letter_words_with_any_tail(
        word in proptest::sample::select(FourLetterWord::ALL),
        tail in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut codec = ServerCodec::default();
        let mut buf = BytesMut::from(&word.bytes()[..]);
        buf.extend_from_slice(&tail);
        let first = codec.decode(&mut buf).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(first, Some(Inbound::FourLetterWord(word)));
        let rest = codec.decode_eof(&mut buf);
        if tail.len() <= 64 {
            prop_assert!(matches!(rest, Ok(None)));
        } else {
            prop_assert!(matches!(rest, Err(JuteError::AfterFourLetterWord)));
        }
    }

    #[test]
    fn negative_lengths_are_errors(len in i32::MIN..-1) {
        let mut codec = JuteCodec::new();
        let mut buf = BytesMut::from(&len.to_be_bytes()[..]);
        let negative = matches!(codec.decode(&mut buf), Err(JuteError::NegativeFrameLength(_)));
        prop_assert!(negative);
        let b = Bytes::copy_from_slice(&len.to_be_bytes());
        let invalid = matches!(Bytes::decode(&mut b.clone()), Err(JuteError::InvalidLength(_)));
        prop_assert!(invalid);
        let count = matches!(Vec::<Acl>::decode(&mut b.clone()), Err(JuteError::InvalidCount { .. }));
        prop_assert!(count);
    }
}

#[test]
fn frames_arriving_byte_by_byte_are_reassembled() {
    let samples = samples();
    let mut wire = Vec::new();
    for s in &samples {
        wire.extend_from_slice(&(s.len() as u32).to_be_bytes());
        wire.extend_from_slice(s);
    }
    let mut codec = JuteCodec::new();
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for byte in wire {
        buf.extend_from_slice(&[byte]);
        while let Some(frame) = codec.decode(&mut buf).expect("valid stream") {
            got.push(frame.to_vec());
        }
    }
    assert_eq!(got, samples);
}

#[test]
fn bytes_after_a_four_letter_word_are_bounded() {
    let mut codec = ServerCodec::default();
    let mut buf = BytesMut::from(&b"stmk"[..]);
    buf.extend_from_slice(&0xffu64.to_be_bytes());
    assert_eq!(
        codec.decode(&mut buf).expect("word"),
        Some(Inbound::FourLetterWord(FourLetterWord::Stmk))
    );
    // The mask stays readable for the server.
    assert!(codec.decode(&mut buf).expect("nothing more").is_none());
    assert_eq!(&buf[..], &0xffu64.to_be_bytes());
    buf.extend_from_slice(&[0; 100]);
    assert!(matches!(
        codec.decode(&mut buf),
        Err(JuteError::AfterFourLetterWord)
    ));
}
