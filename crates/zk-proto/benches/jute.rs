//! Speed of the jute codec: encoding and decoding the common request and reply frames,
//! and cutting a stream into frames. Run with `cargo bench -p zk-proto --bench jute`.

use bytes::{Bytes, BytesMut};
use divan::counter::{BytesCount, ItemsCount};
use divan::{Bencher, black_box};
use tokio_util::codec::{Decoder, Encoder};
use zk_proto::data::{Acl, ErrorCode, OpCode, Stat};
use zk_proto::jute::{
    CreateRequest, GetDataRequest, GetDataResponse, JuteCodec, MultiOp, ReplyPacket, Request,
    RequestPacket, Response, SetDataRequest,
};

fn main() {
    divan::main();
}

fn stat() -> Stat {
    Stat {
        czxid: 0x1_0000_0001,
        mzxid: 0x1_0000_0002,
        ctime: 1_764_000_000_000,
        mtime: 1_764_000_000_001,
        version: 1,
        data_length: 100,
        pzxid: 0x1_0000_0001,
        ..Stat::default()
    }
}

fn create(i: usize) -> RequestPacket {
    RequestPacket::new(
        1,
        Request::Create(CreateRequest {
            path: format!("/bench/node-{i:010}"),
            data: Some(Bytes::from(vec![7u8; 100])),
            acl: Acl::open_unsafe(),
            flags: 0,
        }),
    )
}

fn get_data_reply(len: usize) -> ReplyPacket {
    ReplyPacket::new(
        9,
        0x1_0000_0002,
        ErrorCode::Ok,
        Response::GetData(GetDataResponse {
            data: Some(Bytes::from(vec![1u8; len])),
            stat: stat(),
        }),
    )
}

fn frame<P: zk_proto::jute::Packet>(p: P) -> Bytes {
    let mut out = BytesMut::new();
    JuteCodec::new().encode(p, &mut out).expect("encode");
    out.split_off(4).freeze()
}

/// Frames a create request (100-byte value).
#[divan::bench]
fn encode_create(bencher: Bencher) {
    let packet = create(1);
    let mut codec = JuteCodec::new();
    let mut out = BytesMut::with_capacity(4096);
    bencher.bench_local(|| {
        out.clear();
        codec.encode(black_box(&packet), &mut out).expect("encode");
        black_box(out.len())
    });
}

/// Decodes a create request frame.
#[divan::bench]
fn decode_create(bencher: Bencher) {
    let payload = frame(create(1));
    bencher
        .counter(BytesCount::new(payload.len()))
        .bench_local(|| RequestPacket::decode(&mut black_box(payload.clone())).expect("decode"));
}

/// Frames a getData reply with a value of the given size.
#[divan::bench(args = [100, 4096, 1 << 20])]
fn encode_get_data_reply(bencher: Bencher, len: usize) {
    let reply = get_data_reply(len);
    let mut codec = JuteCodec::with_max_frame_bytes(2 << 20);
    let mut out = BytesMut::with_capacity(len + 256);
    bencher.counter(BytesCount::new(len)).bench_local(|| {
        out.clear();
        codec.encode(black_box(&reply), &mut out).expect("encode");
        black_box(out.len())
    });
}

/// Decodes a getData reply (client side) with a value of the given size; the value is
/// taken from the frame without copying, so the size does not matter.
#[divan::bench(args = [100, 4096, 1 << 20])]
fn decode_get_data_reply(bencher: Bencher, len: usize) {
    let payload = frame(get_data_reply(len));
    bencher.bench_local(|| {
        ReplyPacket::decode(&mut black_box(payload.clone()), |_| Some(OpCode::GetData))
            .expect("decode")
    });
}

/// Decodes a 10-op multi request (creates and setData).
#[divan::bench]
fn decode_multi_10(bencher: Bencher) {
    let ops = (0..10)
        .map(|i| {
            if i % 2 == 0 {
                let Request::Create(c) = create(i).request else {
                    unreachable!("create() builds a create")
                };
                MultiOp::Create(c)
            } else {
                MultiOp::SetData(SetDataRequest {
                    path: format!("/bench/node-{i:010}"),
                    data: Some(Bytes::from_static(b"v")),
                    version: -1,
                })
            }
        })
        .collect();
    let payload = frame(RequestPacket::new(3, Request::Multi(ops)));
    bencher
        .counter(BytesCount::new(payload.len()))
        .bench_local(|| RequestPacket::decode(&mut black_box(payload.clone())).expect("decode"));
}

/// Cuts a buffer holding 1000 getData request frames into frames and decodes each.
#[divan::bench]
fn split_and_decode_1000_requests(bencher: Bencher) {
    let mut wire = BytesMut::new();
    let mut codec = JuteCodec::new();
    for i in 0..1000 {
        let get = Request::GetData(GetDataRequest {
            path: format!("/bench/node-{i:010}"),
            watch: i % 2 == 0,
        });
        codec
            .encode(RequestPacket::new(i, get), &mut wire)
            .expect("encode");
    }
    let wire = wire.freeze();
    bencher
        .counter(ItemsCount::new(1000usize))
        .with_inputs(|| BytesMut::from(&wire[..]))
        .bench_local_values(|mut buf| {
            let mut n = 0;
            while let Some(f) = codec.decode(&mut buf).expect("frame") {
                RequestPacket::decode(&mut f.freeze()).expect("decode");
                n += 1;
            }
            n
        });
}
