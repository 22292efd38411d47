//! Property tests of the codecs: any frame round-trips, any split of a valid byte stream
//! decodes to the same frames, garbage never panics.

use bytes::{Bytes, BytesMut};
use hgframe_wire::payload::command_argument::{encode_first, ArgumentHead};
use hgframe_wire::payload::text_output::{self, TextAtom};
use hgframe_wire::{Frame, FrameDecoder, Frames, RequestId, StreamFlags, StreamId};
use proptest::prelude::*;

fn any_frame() -> impl Strategy<Value = Frame> {
    (
        any::<u16>(),
        any::<u8>(),
        any::<u8>(),
        0u8..16,
        0u8..16,
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(r, s, sf, t, f, p)| {
            Frame::from_raw(
                RequestId(r),
                StreamId(s),
                StreamFlags::from_bits_retain(sf),
                t,
                f,
                p,
            )
            .unwrap()
        })
}

fn encode_all(frames: &[Frame]) -> Bytes {
    let mut buf = BytesMut::new();
    for f in frames {
        f.encode(&mut buf);
    }
    buf.freeze()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn frame_round_trips(frame in any_frame()) {
        let bytes = frame.to_bytes();
        let back: Vec<_> = Frames::new(bytes).collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(back, vec![frame.clone()]);
        // And through the human syntax.
        prop_assert_eq!(Frame::from_human(&frame.to_human()).unwrap(), frame);
    }

    #[test]
    fn any_split_decodes_the_same(frames in proptest::collection::vec(any_frame(), 0..8),
                                  cuts in proptest::collection::vec(1usize..64, 0..64)) {
        let input = encode_all(&frames);
        let mut decoder = FrameDecoder::new();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut rest = &input[..];
        let mut cuts = cuts.into_iter().cycle();
        while !rest.is_empty() {
            let n = cuts.next().unwrap_or(1).min(rest.len());
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            while let Some(f) = decoder.decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        prop_assert!(decoder.decode_eof(&mut buf).unwrap().is_none());
        prop_assert_eq!(got, frames);
        prop_assert_eq!(decoder.offset(), input.len() as u64);
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000), max in 0usize..70000) {
        let mut decoder = FrameDecoder::with_max_payload_len(max);
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = decoder.decode_eof(&mut buf) {}
        for f in Frames::new(Bytes::from(bytes.clone())).flatten() {
            let _ = ArgumentHead::parse(f.payload());
            let _ = text_output::decode(f.payload());
            let _ = f.to_human();
        }
        let _ = ArgumentHead::parse(&Bytes::from(bytes.clone()));
        let _ = text_output::decode(&Bytes::from(bytes));
    }

    #[test]
    fn garbage_lines_never_panic(line in "\\PC{0,80}") {
        let _ = Frame::from_human(&line);
    }

    #[test]
    fn argument_round_trips(name in proptest::collection::vec(any::<u8>(), 0..40),
                            value in proptest::collection::vec(any::<u8>(), 0..400),
                            size in 44usize..500) {
        let value = Bytes::from(value);
        let (first, rest) = encode_first(&name, &value, size).unwrap();
        prop_assert!(first.len() <= size);
        let head = ArgumentHead::parse(&first).unwrap();
        prop_assert_eq!(&head.name[..], &name[..]);
        prop_assert_eq!(head.value_len, value.len());
        let mut whole = head.value_part.to_vec();
        whole.extend_from_slice(&rest);
        prop_assert_eq!(&whole[..], &value[..]);
    }

    #[test]
    fn text_atoms_round_trip(atoms in proptest::collection::vec(
        ("\\PC{0,20}", proptest::collection::vec("[a-z.]{0,10}", 0..4), proptest::collection::vec("\\PC{0,10}", 0..4)),
        0..5)) {
        let atoms: Vec<TextAtom> = atoms.into_iter().map(|(format, labels, args)| TextAtom { format, labels, args }).collect();
        let payload = text_output::encode(&atoms, 32768).unwrap();
        prop_assert_eq!(text_output::decode(&payload).unwrap(), atoms);
    }
}
