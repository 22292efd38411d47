//! Response data compressed ahead of time (a cache's): the reactor says how responses
//! are encoded ([`ServerReactor::response_encoding`]) and sends data compressed that way
//! as it is ([`ServerReactor::on_response_precompressed`]), every frame decoding on
//! arrival; where it cannot (identity, sensitive, deflate, bad data), it refuses and
//! queues nothing.
#![cfg(feature = "zstd")]

use std::collections::BTreeSet;

use bytes::Bytes;
use hgframe_reactor::{
    ClientConfig, ClientEvent, ClientReactor, ReactorError, ResponseEncoding, ServerAction,
    ServerConfig, ServerReactor,
};
use hgframe_stream::encoding::ZstdEncoder;
use hgframe_stream::{ContentEncoder, EncodingSettings, OutgoingStream, Profiles, Side};
use hgframe_wire::{RequestId, StreamFlags, StreamId};

const ZSTD: &str = "zstd-8mb";

/// A client and a server agreeing on `encoding` with frames of `frame_size`, and `n`
/// commands dispatched.
fn setup(
    encoding: &str,
    frame_size: usize,
    n: usize,
) -> (ClientReactor, ServerReactor, Vec<RequestId>) {
    let mut client_config = ClientConfig::default();
    client_config.set_encoding(encoding);
    let mut client = ClientReactor::new(client_config);
    let mut server_config = ServerConfig::default();
    server_config
        .set_encodings(&[encoding])
        .set_peer_accepts(&[encoding])
        .set_max_frame_size(frame_size);
    let mut server = ServerReactor::new(server_config);
    for _ in 0..n {
        client.call_command(b"cat", [], None).unwrap();
    }
    client.finish_sending();
    let mut requests = Vec::new();
    while let Some(frame) = client.poll_frame() {
        if let ServerAction::RunCommand(cmd) = server.on_frame(frame) {
            requests.push(cmd.request_id);
        }
    }
    let _ = server.on_input_eof();
    assert_eq!(requests.len(), n);
    (client, server, requests)
}

/// Text-like data with some noise, different for each seed.
fn data(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if i % 5 == 0 {
                (x >> 24) as u8
            } else {
                b"abcdefgh \n"[(i / 3) % 10]
            }
        })
        .collect()
}

/// `raw` compressed as a cache does: flushed every `max_flush_raw_len` bytes, one unit.
fn precompress(encoding: &ResponseEncoding, raw: &[u8]) -> Bytes {
    let mut encoder = encoding.encoder().unwrap();
    let mut out = Vec::new();
    for chunk in raw.chunks(encoding.max_flush_raw_len()) {
        encoder.encode_flush(chunk, &mut out).unwrap();
    }
    encoder.end_unit(&mut out).unwrap();
    Bytes::from(out)
}

/// The offsets in a stream's encoded bytes where a zstd block (or a whole skippable
/// frame) ends: where a frame may end so that everything in it decodes. Parsed here,
/// independently of the library (as `hgframe-stream/tests/on_arrival.rs` does).
fn block_ends(encoded: &[u8]) -> BTreeSet<usize> {
    let mut ends = BTreeSet::new();
    let mut at = 0;
    let u32_at = |at: usize| u32::from_le_bytes(encoded[at..at + 4].try_into().unwrap());
    while at < encoded.len() {
        let magic = u32_at(at);
        if magic & 0xFFFF_FFF0 == 0x184D_2A50 {
            at += 8 + u32_at(at + 4) as usize;
            ends.insert(at);
            continue;
        }
        assert_eq!(magic, 0xFD2F_B528, "a zstd frame at {at}");
        let fhd = encoded[at + 4];
        let single = fhd & 0x20 != 0;
        let dict = [0, 1, 2, 4][usize::from(fhd & 3)];
        let fcs = [usize::from(single), 2, 4, 8][usize::from(fhd >> 6)];
        at += 5 + usize::from(!single) + dict + fcs;
        // The stream's own zstd frame stays open: its data may end after any block.
        while at < encoded.len() {
            let h = u32::from_le_bytes([encoded[at], encoded[at + 1], encoded[at + 2], 0]);
            let size = (h >> 3) as usize;
            at += 3 + if (h >> 1) & 3 == 1 { 1 } else { size };
            if h & 1 == 1 {
                if fhd & 4 != 0 {
                    at += 4; // checksum
                }
                ends.insert(at);
                break;
            }
            ends.insert(at);
        }
    }
    ends
}

/// Gives the client every frame the server has, one at a time, and checks `request`'s
/// data as it arrives: every encoded frame ends where a zstd block ends, and once it is
/// in, the client has all the bytes the blocks so far hold (a prefix of `want` ending
/// where a flush ended, `flush_ends`); nothing is held back. Returns the bytes and
/// whether the response ended.
fn deliver_on_arrival(
    server: &mut ServerReactor,
    client: &mut ClientReactor,
    request: RequestId,
    want: &[u8],
    flush_ends: &[usize],
    frame_size: usize,
) -> (Vec<u8>, bool) {
    let mut frames = Vec::new();
    while let Some(frame) = server.poll_frame() {
        frames.push(frame);
    }
    let encoded: Vec<u8> = frames
        .iter()
        .filter(|f| f.stream_flags().contains(StreamFlags::ENCODED))
        .flat_map(|f| f.payload().to_vec())
        .collect();
    let ends = block_ends(&encoded);
    let (mut body, mut ended, mut wire) = (Vec::new(), false, 0);
    for frame in frames {
        assert!(frame.payload().len() <= frame_size);
        let encoded = frame.stream_flags().contains(StreamFlags::ENCODED);
        if encoded {
            wire += frame.payload().len();
            assert!(ends.contains(&wire), "a frame ends inside a zstd block");
        }
        let ours = encoded && frame.request_id() == request;
        for event in client.on_frame(frame).unwrap() {
            if let ClientEvent::ResponseData {
                request_id,
                data,
                eos,
            } = event
            {
                if request_id == request {
                    body.extend_from_slice(&data);
                    ended |= eos;
                }
            }
        }
        if ours {
            assert!(body[..] == want[..body.len()], "wrong bytes");
            assert!(
                flush_ends.contains(&body.len()),
                "{} bytes decoded: not where a flush ends",
                body.len()
            );
        }
    }
    (body, ended)
}

#[test]
fn precompressed_data_arrives_intact_and_each_frame_decodes_on_arrival() {
    for frame_size in [1000, 32768] {
        let (mut client, mut server, requests) = setup(ZSTD, frame_size, 2);
        let encoding = server.response_encoding().unwrap().expect("zstd");
        assert_eq!(encoding.profile_name(), ZSTD);
        assert_eq!(encoding.level(), 3);
        // The flush length is the response stream's own.
        let mut stream = OutgoingStream::new(
            StreamId(2),
            Side::Server,
            &Profiles::default(),
            &EncodingSettings::new(ZSTD),
        )
        .unwrap();
        stream.set_max_frame_size(frame_size);
        assert_eq!(encoding.max_flush_raw_len(), stream.max_flush_raw_len());
        let flush = encoding.max_flush_raw_len();

        // The first request: data compressed by the stream, then cached data (the
        // stream ends its open zstd frame first), in two pieces.
        let (r1, r2) = (requests[0], requests[1]);
        let head = data(5000, 1);
        let cached = [data(300_000, 2), data(70_000, 3)];
        let _ = server
            .on_response_data(r1, Bytes::from(head.clone()), false)
            .unwrap();
        let _ = server
            .on_response_precompressed(r1, precompress(&encoding, &cached[0]), false)
            .unwrap();
        assert!(matches!(
            server
                .on_response_precompressed(r1, precompress(&encoding, &cached[1]), true)
                .unwrap(),
            ServerAction::SendFrames
        ));
        let want = [&head[..], &cached[0], &cached[1]].concat();
        let mut ends = vec![];
        let mut at = 0;
        for len in [head.len(), cached[0].len(), cached[1].len()] {
            let start = at;
            while at < start + len {
                at = (at + flush).min(start + len);
                ends.push(at);
            }
        }
        let (body, ended) =
            deliver_on_arrival(&mut server, &mut client, r1, &want, &ends, frame_size);
        assert!(ended);
        assert_eq!(body, want);
        // The request is over: nothing more for it.
        assert!(matches!(
            server.on_response_precompressed(r1, precompress(&encoding, b"x"), true),
            Err(ReactorError::UnknownRequest(_) | ReactorError::ResponseFinished(_))
        ));

        // The second request: cached data only, and the same bytes again.
        let again = precompress(&encoding, &cached[0]);
        let _ = server.on_response_precompressed(r2, again, true).unwrap();
        let ends: Vec<usize> = (1..=cached[0].len().div_ceil(flush))
            .map(|k| (k * flush).min(cached[0].len()))
            .collect();
        let (body, ended) =
            deliver_on_arrival(&mut server, &mut client, r2, &cached[0], &ends, frame_size);
        assert!(ended);
        assert_eq!(body, cached[0]);
        assert!(server.is_finished());
    }
}

#[test]
fn identity_has_no_encoding_and_refuses_precompressed_data() {
    let (_client, mut server, requests) = setup("identity", 32768, 1);
    assert!(server.response_encoding().unwrap().is_none());
    let mut encoder = ZstdEncoder::new(3).unwrap();
    let mut zstd = Vec::new();
    encoder.encode_flush(b"meow", &mut zstd).unwrap();
    encoder.end_unit(&mut zstd).unwrap();
    let zstd = Bytes::from(zstd);
    assert!(matches!(
        server.on_response_precompressed(requests[0], zstd, true),
        Err(ReactorError::Encode(_))
    ));
    assert!(server.poll_frame().is_none(), "nothing queued");
    // The request still runs: it can be answered the usual way.
    let _ = server
        .on_response_data(requests[0], Bytes::from("meow"), true)
        .unwrap();
    assert!(server.poll_frame().is_some());
}

#[test]
fn a_sensitive_response_refuses_precompressed_data() {
    let (_client, mut server, requests) = setup(ZSTD, 32768, 1);
    let encoding = server.response_encoding().unwrap().unwrap();
    server.set_sensitive(requests[0]).unwrap();
    assert!(matches!(
        server.on_response_precompressed(requests[0], precompress(&encoding, b"secret"), true),
        Err(ReactorError::Encode(_))
    ));
    assert!(server.poll_frame().is_none(), "nothing queued");
}

#[cfg(feature = "deflate")]
#[test]
fn deflate_has_no_precompressed_form() {
    let (_client, mut server, requests) = setup("deflate", 32768, 1);
    let encoding = server
        .response_encoding()
        .unwrap()
        .expect("deflate compresses");
    let mut encoder = encoding.encoder().unwrap();
    let mut out = Vec::new();
    encoder.encode_flush(b"meow", &mut out).unwrap();
    encoder.end_unit(&mut out).unwrap();
    assert!(encoding.profile().check_precompressed(&out).is_err());
    assert!(matches!(
        server.on_response_precompressed(requests[0], Bytes::from(out), true),
        Err(ReactorError::Encode(_))
    ));
    assert!(server.poll_frame().is_none(), "nothing queued");
}

#[test]
fn data_that_is_not_whole_frames_is_refused() {
    let (_client, mut server, requests) = setup(ZSTD, 32768, 1);
    let encoding = server.response_encoding().unwrap().unwrap();
    let whole = precompress(&encoding, &data(10_000, 4));
    let cut = whole.slice(..whole.len() - 2);
    assert!(matches!(
        server.on_response_precompressed(requests[0], cut, true),
        Err(ReactorError::Encode(_))
    ));
    assert!(server.poll_frame().is_none(), "nothing queued");
}
