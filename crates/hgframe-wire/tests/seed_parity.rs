//! The seed's generators, input by input: our builders must give the same bytes. The
//! expected frames are written in the human syntax, as the seed's own tests do with
//! `makeframefromhumanstring`. Builders leave stream flags to the stream, so `on_stream`
//! stamps `stream-begin` on the first frame, as the seed's `stream.makeframe` does.

use bytes::Bytes;
use hgframe_wire::build::{
    bytes_response_frames, command_frames, error_frame, text_output_frame, FrameTarget,
};
use hgframe_wire::payload::text_output::TextAtom;
use hgframe_wire::{ErrorResponseFlags, Frame, RequestId, StreamFlags, StreamId};

fn on_stream(frames: Vec<Frame>) -> Vec<Frame> {
    frames
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            if i == 0 {
                f.with_stream_flags(StreamFlags::STREAM_BEGIN)
            } else {
                f
            }
        })
        .collect()
}

fn human(lines: &[&str]) -> Vec<Frame> {
    lines
        .iter()
        .map(|l| Frame::from_human(l).unwrap())
        .collect()
}

fn target() -> FrameTarget {
    FrameTarget::new(RequestId(1), StreamId(1))
}

fn args(pairs: &[(&str, &str)]) -> Vec<(Bytes, Bytes)> {
    pairs
        .iter()
        .map(|(k, v)| (Bytes::from(k.to_string()), Bytes::from(v.to_string())))
        .collect()
}

#[test]
fn protocol_md_example() {
    let f = Frame::from_human("1 1 stream-begin command-name eos customreadonly").unwrap();
    let mut want = vec![0x0e, 0x00, 0x00, 0x01, 0x00, 0x01, 0x01, 0x11];
    want.extend_from_slice(b"customreadonly");
    assert_eq!(f.to_bytes(), want);
}

#[test]
fn command_without_args_or_data() {
    let got = command_frames(target(), b"command", [], None::<&[u8]>).unwrap();
    assert_eq!(
        on_stream(got),
        human(&["1 1 stream-begin command-name eos command"])
    );
}

#[test]
fn command_with_args_sorted_by_name() {
    let got = command_frames(
        target(),
        b"command",
        args(&[("foo", "bar"), ("biz", "baz")]),
        None::<&[u8]>,
    )
    .unwrap();
    assert_eq!(
        on_stream(got),
        human(&[
            "1 1 stream-begin command-name have-args command",
            "1 1 0 command-argument 0 \\x03\\x00\\x03\\x00bizbaz",
            "1 1 0 command-argument eoa \\x03\\x00\\x03\\x00foobar",
        ])
    );
}

#[test]
fn command_with_data() {
    let got = command_frames(target(), b"command", [], Some(&b"data!"[..])).unwrap();
    assert_eq!(
        on_stream(got),
        human(&[
            "1 1 stream-begin command-name have-data command",
            "1 1 0 command-data eos data!",
        ])
    );
}

#[test]
fn data_exactly_one_frame_ends_with_empty_eos() {
    let data = vec![b'x'; 32768];
    let got = command_frames(target(), b"command", [], Some(&data[..])).unwrap();
    let mut want = human(&["1 1 stream-begin command-name have-data command"]);
    want.push(
        Frame::from_human(&format!(
            "1 1 0 command-data continuation {}",
            "x".repeat(32768)
        ))
        .unwrap(),
    );
    want.push(Frame::from_human("1 1 0 command-data eos").unwrap());
    assert_eq!(on_stream(got), want);
}

#[test]
fn data_over_several_frames() {
    let data = vec![b'x'; 32768 + 1];
    let got = command_frames(target(), b"command", [], Some(&data[..])).unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(got[1].payload().len(), 32768);
    assert_eq!(got[2].to_human(), "1 1 0 command-data eos x");
}

#[test]
fn args_and_data() {
    let got = command_frames(
        target(),
        b"command",
        args(&[
            ("key1", "key1value"),
            ("key2", "key2value"),
            ("key3", "key3value"),
        ]),
        Some(&b"data1data2data3"[..]),
    )
    .unwrap();
    assert_eq!(
        on_stream(got),
        human(&[
            "1 1 stream-begin command-name have-args|have-data command",
            "1 1 0 command-argument 0 \\x04\\x00\\x09\\x00key1key1value",
            "1 1 0 command-argument 0 \\x04\\x00\\x09\\x00key2key2value",
            "1 1 0 command-argument eoa \\x04\\x00\\x09\\x00key3key3value",
            "1 1 0 command-data eos data1data2data3",
        ])
    );
}

#[test]
fn bytes_response_single_and_split() {
    let one: Vec<_> = bytes_response_frames(target(), Bytes::from_static(b"response")).collect();
    assert_eq!(
        on_stream(one),
        human(&["1 1 stream-begin bytes-response eos response"])
    );
    let empty: Vec<_> = bytes_response_frames(target(), Bytes::new()).collect();
    assert_eq!(
        on_stream(empty),
        human(&["1 1 stream-begin bytes-response eos"])
    );
    // Exactly twice the frame size: no trailing empty frame (unlike command data).
    let two: Vec<_> = bytes_response_frames(target(), Bytes::from(vec![b'y'; 65536])).collect();
    assert_eq!(two.len(), 2);
    assert_eq!(two[0].flags(), 0x01);
    assert_eq!(two[1].flags(), 0x02);
    assert_eq!(two[1].payload().len(), 32768);
}

#[test]
fn error_frames() {
    let f = error_frame(target(), b"bad thing", ErrorResponseFlags::APPLICATION).unwrap();
    assert_eq!(
        on_stream(vec![f]),
        human(&["1 1 stream-begin error-response application bad thing"])
    );
    let f = error_frame(target(), b"x", ErrorResponseFlags::PROTOCOL).unwrap();
    assert_eq!(f.to_human(), "1 1 0 error-response protocol x");
    assert!(error_frame(target(), &[b'e'; 32769], ErrorResponseFlags::PROTOCOL).is_err());
}

#[test]
fn text_output_frames() {
    // The seed's test-wireproto-framing.py vectors.
    let simple = text_output_frame(target(), &[TextAtom::new("foo", vec![])]).unwrap();
    assert_eq!(
        on_stream(vec![simple]),
        human(&["1 1 stream-begin text-output 0 \\x03\\x00\\x00\\x00foo"])
    );
    let args =
        text_output_frame(target(), &[TextAtom::new("foo %s", vec!["val1".into()])]).unwrap();
    assert_eq!(
        args.to_human(),
        "1 1 0 text-output 0 \\x06\\x00\\x00\\x01\\x04\\x00foo %sval1"
    );
    let multiple = text_output_frame(
        target(),
        &[TextAtom::new(
            "foo %s %s",
            vec!["val".into(), "value".into()],
        )],
    )
    .unwrap();
    assert_eq!(
        multiple.to_human(),
        "1 1 0 text-output 0 \\t\\x00\\x00\\x02\\x03\\x00\\x05\\x00foo %s %svalvalue"
    );
    let label = TextAtom {
        format: "foo".into(),
        labels: vec!["label".into()],
        args: vec![],
    };
    assert_eq!(
        text_output_frame(target(), &[label]).unwrap().to_human(),
        "1 1 0 text-output 0 \\x03\\x00\\x01\\x00\\x05foolabel"
    );
    let two_atoms = text_output_frame(
        target(),
        &[TextAtom::new("foo", vec![]), TextAtom::new("bar", vec![])],
    )
    .unwrap();
    assert_eq!(
        two_atoms.to_human(),
        "1 1 0 text-output 0 \\x03\\x00\\x00\\x00foo\\x03\\x00\\x00\\x00bar"
    );
}

#[test]
fn long_argument_value_spans_frames() {
    let t = target().with_max_frame_size(16);
    let got = command_frames(
        t,
        b"c",
        args(&[("k", "0123456789abcdefghij")]),
        None::<&[u8]>,
    )
    .unwrap();
    let lines: Vec<String> = got.iter().map(Frame::to_human).collect();
    assert_eq!(
        lines,
        [
            "1 1 0 command-name have-args c",
            "1 1 0 command-argument continuation \\x01\\x00\\x14\\x00k0123456789a",
            "1 1 0 command-argument eoa bcdefghij",
        ]
    );
}
