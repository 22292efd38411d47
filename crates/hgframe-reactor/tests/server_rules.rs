//! Every rule of the server reactor beyond the seed's scenarios: flags, continuation,
//! streaming data, limits, encoded input, output streams, request tracking.

mod common;

use bytes::{Bytes, BytesMut};
use common::*;
use hgframe_reactor::{
    DataMode, Limit, ProtocolError, ReactorError, ServerAction, ServerConfig, ServerReactor,
    TextAtom,
};
#[cfg(any(feature = "zstd", feature = "deflate"))]
use hgframe_stream::{DecodeLimits, IncomingStreams, Profiles, Side};
#[cfg(any(feature = "zstd", feature = "deflate"))]
use hgframe_wire::StreamFlags;
use hgframe_wire::{Frame, FrameType, RequestId};

fn reactor(f: impl FnOnce(&mut ServerConfig)) -> ServerReactor {
    let mut c = ServerConfig::default();
    f(&mut c);
    ServerReactor::new(c)
}

fn limit_of(a: ServerAction) -> (Limit, usize, usize) {
    match a {
        ServerAction::Error(ProtocolError::Limit {
            limit, value, max, ..
        }) => (limit, value, max),
        other => panic!("expected a limit error, got {other:?}"),
    }
}

/// After an error the client gets exactly one protocol error-response.
#[track_caller]
fn assert_protocol_error_frame(r: &mut ServerReactor, request: u16) {
    let frames: Vec<Frame> = std::iter::from_fn(|| r.poll_frame()).collect();
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].known_type(), Some(FrameType::ErrorResponse));
    assert_eq!(frames[0].flags(), 0x01, "protocol flag");
    assert_eq!(frames[0].request_id(), RequestId(request));
    assert!(!frames[0].stream_id().is_client_initiated());
}

#[test]
fn even_request_ids_are_the_servers() {
    let mut r = reactor(|_| {});
    let a = r.on_frame(ffs("2 1 stream-begin command-name eos c"));
    assert_eq!(
        error(a),
        "received command request with even numbered request ID: 2"
    );
    assert_protocol_error_frame(&mut r, 2);
}

#[test]
fn command_name_flag_rules() {
    for flags in ["eos|have-args", "eos|have-data", "8", "have-args|8"] {
        let mut r = reactor(|_| {});
        let a = r.on_frame(ffs(&format!("1 1 stream-begin command-name {flags} c")));
        assert!(
            matches!(
                a,
                ServerAction::Error(ProtocolError::BadCommandFlags { .. })
            ),
            "{flags}: {a:?}"
        );
    }
}

#[test]
fn command_data_flag_rules() {
    for (flags, want) in [
        (
            "continuation|eos",
            "invalid flags 0x3 on command data frame of request 1",
        ),
        ("4", "invalid flags 0x4 on command data frame of request 1"),
        ("0", "command data frame without flags"),
    ] {
        let mut r = reactor(|_| {});
        let _ = r.on_frame(ffs("1 1 stream-begin command-name have-data c"));
        assert_eq!(
            error(r.on_frame(ffs(&format!("1 1 0 command-data {flags} x")))),
            want
        );
    }
}

#[test]
fn frames_of_types_a_client_cannot_send() {
    for (ty, n) in [
        ("bytes-response", 4),
        ("error-response", 5),
        ("text-output", 6),
        ("9", 9),
        ("0", 0),
    ] {
        let mut r = reactor(|_| {});
        let a = r.on_frame(ffs(&format!("1 1 stream-begin {ty} 0 x")));
        assert_eq!(error(a), format!("expected command frame; got {n}"));
        // Also while a command is being received.
        let mut r = reactor(|_| {});
        let _ = r.on_frame(ffs("1 1 stream-begin command-name have-args c"));
        let a = r.on_frame(ffs(&format!("1 1 0 {ty} 0 x")));
        assert_eq!(error(a), format!("expected command frame; got {n}"));
    }
}

#[test]
fn argument_frame_for_a_running_request() {
    let mut r = reactor(|_| {});
    let actions = feed(
        &mut r,
        vec![
            ffs("1 1 stream-begin command-name eos c"),
            ffs("3 1 0 command-name have-args c"),
            ffs(r"1 1 0 command-argument eoa \x01\x00\x01\x00ab"),
        ],
    );
    let mut actions = actions.into_iter();
    assert_eq!(kind(&actions.next().unwrap()), "runcommand");
    assert_eq!(kind(&actions.next().unwrap()), "wantframe");
    assert_eq!(
        error(actions.next().unwrap()),
        "received frame for request that is still active: 1"
    );
}

#[test]
fn data_before_the_last_argument_is_refused() {
    let mut r = reactor(|_| {});
    let _ = r.on_frame(ffs("1 1 stream-begin command-name have-args|have-data c"));
    let _ = r.on_frame(ffs(r"1 1 0 command-argument 0 \x01\x00\x01\x00ab"));
    assert_eq!(
        error(r.on_frame(ffs("1 1 0 command-data eos x"))),
        "received command data frame for request that is not expecting data: 1"
    );
}

#[test]
fn argument_values_span_frames() {
    let mut r = reactor(|_| {});
    let long = vec![7u8; 1000];
    let mut s = ClientStream::new();
    let frames = s.stamp(raw_command(
        1,
        "c",
        &[("a", b"short"), ("long", &long), ("z", b"")],
        None,
        64,
    ));
    assert!(frames.len() > 16, "the value spans continuation frames");
    let mut actions = feed(&mut r, frames);
    let last = actions.pop().unwrap();
    assert!(actions.iter().all(|a| kind(a) == "wantframe"));
    let cmd = run(last);
    let args = args_of(&cmd);
    assert_eq!(args["long"], long);
    assert_eq!(args["a"], b"short");
    assert_eq!(args["z"], b"");
    assert_eq!(r.buffered_bytes(), 0);
}

#[test]
fn malformed_continuations() {
    let cases = [
        // continuation on a value that is whole
        (
            vec![r"1 1 0 command-argument continuation \x01\x00\x01\x00ab"],
            "continuation flag after the whole value",
        ),
        // eoa with continuation
        (
            vec![r"1 1 0 command-argument continuation|eoa \x01\x00\x02\x00ab"],
            "eoa on a frame with continuation",
        ),
        // more value bytes than announced
        (
            vec![
                r"1 1 0 command-argument continuation \x01\x00\x02\x00ab",
                r"1 1 0 command-argument eoa cd",
            ],
            "argument value longer than announced",
        ),
        // the value stops short
        (
            vec![
                r"1 1 0 command-argument continuation \x01\x00\x04\x00ab",
                r"1 1 0 command-argument eoa c",
            ],
            "partial argument value",
        ),
        // an undefined flag
        (
            vec![r"1 1 0 command-argument 4 \x01\x00\x01\x00ab"],
            "undefined flags",
        ),
        // header cut
        (
            vec![r"1 1 0 command-argument eoa \x01\x00"],
            "partial argument header",
        ),
    ];
    for (lines, reason) in cases {
        let mut r = reactor(|_| {});
        let _ = r.on_frame(ffs("1 1 stream-begin command-name have-args c"));
        let mut last = None;
        for l in lines {
            last = Some(r.on_frame(ffs(l)));
        }
        assert_eq!(
            error(last.unwrap()),
            format!("malformed argument frame: {reason}")
        );
        assert_protocol_error_frame(&mut r, 1);
    }
}

#[test]
fn duplicate_argument_names() {
    let mut r = reactor(|_| {});
    let _ = r.on_frame(ffs("1 1 stream-begin command-name have-args c"));
    let _ = r.on_frame(ffs(r"1 1 0 command-argument 0 \x01\x00\x01\x00ab"));
    let a = r.on_frame(ffs(r"1 1 0 command-argument eoa \x01\x00\x01\x00ac"));
    assert_eq!(error(a), "duplicate argument \"a\" in request 1");
}

#[test]
fn streaming_data_is_handed_over_as_it_arrives() {
    let mut r = reactor(|c| {
        c.set_data_mode(DataMode::Streaming);
    });
    let mut actions = feed(
        &mut r,
        vec![
            ffs("1 1 stream-begin command-name have-args|have-data c"),
            ffs(r"1 1 0 command-argument eoa \x01\x00\x01\x00ab"),
            ffs("1 1 0 command-data continuation one"),
            ffs("1 1 0 command-data continuation two"),
            ffs("1 1 0 command-data eos "),
        ],
    )
    .into_iter();
    assert_eq!(kind(&actions.next().unwrap()), "wantframe");
    let cmd = run(actions.next().unwrap());
    assert!(cmd.data_follows);
    assert_eq!(cmd.data, None);
    assert_eq!(args_of(&cmd)["a"], b"b");
    let mut data = Vec::new();
    let mut eoses = Vec::new();
    for a in actions {
        match a {
            ServerAction::CommandData {
                request_id,
                data: d,
                eos,
            } => {
                assert_eq!(request_id, RequestId(1));
                data.extend_from_slice(&d);
                eoses.push(eos);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(data, b"onetwo");
    assert_eq!(eoses, [false, false, true]);
    assert_eq!(r.buffered_bytes(), 0);
    // Data frames after the last one: the request is no longer receiving.
    assert_eq!(
        error(r.on_frame(ffs("1 1 0 command-data eos x"))),
        "expected command frame; got 3"
    );
}

#[test]
fn streaming_command_without_arguments_runs_at_once() {
    let mut r = reactor(|c| {
        c.set_data_mode(DataMode::Streaming);
    });
    let cmd = run(r.on_frame(ffs("1 1 stream-begin command-name have-data c")));
    assert!(cmd.data_follows);
    // The request id stays taken until its data has ended and its response left.
    assert_eq!(
        error(r.on_frame(ffs("1 1 0 command-name eos c"))),
        "request with ID 1 already received"
    );
}

#[test]
fn a_command_that_answers_before_its_data_ends() {
    let mut r = reactor(|c| {
        c.set_data_mode(DataMode::Streaming);
    });
    let _ = run(r.on_frame(ffs("1 1 stream-begin command-name have-data c")));
    let a = r.on_frame(ffs("1 1 0 command-data continuation one"));
    assert_eq!(kind(&a), "commanddata");
    let _ = r.on_application_error(RequestId(1), "no thanks").unwrap();
    assert_eq!(
        drain(&mut r),
        ["1 2 stream-begin error-response application no thanks"]
    );
    // The rest of the data is dropped without being handed over or kept.
    for _ in 0..3 {
        assert_eq!(
            kind(&r.on_frame(ffs("1 1 0 command-data continuation more"))),
            "wantframe"
        );
        assert_eq!(r.buffered_bytes(), 0);
    }
    assert!(matches!(
        r.on_response_data(RequestId(1), Bytes::new(), true),
        Err(ReactorError::ResponseFinished(_))
    ));
    assert_eq!(
        kind(&r.on_frame(ffs("1 1 0 command-data eos"))),
        "wantframe"
    );
    // Now the id is free again.
    assert_eq!(
        kind(&r.on_frame(ffs("1 1 0 command-name eos c"))),
        "runcommand"
    );
}

#[test]
fn request_ids_are_reusable_only_once_the_response_left() {
    let mut r = reactor(|_| {});
    let _ = run(r.on_frame(ffs("1 1 stream-begin command-name eos c")));
    assert_eq!(r.active_requests(), 1);
    let _ = r
        .on_response_data(RequestId(1), Bytes::from_static(b"part"), false)
        .unwrap();
    let _ = r
        .on_response_data(RequestId(1), Bytes::from_static(b"end"), true)
        .unwrap();
    assert_eq!(r.active_requests(), 1);
    let mut out = BytesMut::new();
    // The first frame leaves; the request is still active until the last one does.
    let first = r.poll_transmit(&mut out, 1);
    assert_eq!(first, 8 + 4);
    assert_eq!(r.active_requests(), 1);
    assert_eq!(
        error(r.on_frame(ffs("1 1 0 command-name eos c"))),
        "request with ID 1 is already active"
    );
    let mut r = reactor(|_| {});
    let _ = run(r.on_frame(ffs("1 1 stream-begin command-name eos c")));
    let _ = r
        .on_response_data(RequestId(1), Bytes::from_static(b"end"), true)
        .unwrap();
    assert_eq!(r.poll_transmit(&mut out, 1 << 20), 11);
    assert_eq!(r.active_requests(), 0);
    assert_eq!(
        kind(&r.on_frame(ffs("1 1 0 command-name eos c"))),
        "runcommand"
    );
}

#[test]
fn responding_to_requests_that_are_not_running() {
    let mut r = reactor(|_| {});
    assert!(matches!(
        r.on_response_data(RequestId(1), Bytes::new(), true),
        Err(ReactorError::UnknownRequest(RequestId(1)))
    ));
    let _ = r.on_frame(ffs("1 1 stream-begin command-name have-args c"));
    assert!(matches!(
        r.on_text_output(RequestId(1), &[]),
        Err(ReactorError::UnknownRequest(RequestId(1)))
    ));
    let _ = r.on_frame(ffs("3 1 0 command-name eos c"));
    let _ = r.on_application_error(RequestId(3), "x").unwrap();
    assert!(matches!(
        r.on_response_data(RequestId(3), Bytes::new(), true),
        Err(ReactorError::ResponseFinished(RequestId(3)))
    ));
}

#[test]
fn responses_interleave_in_any_order() {
    let mut r = reactor(|c| {
        c.set_max_frame_size(16);
    });
    let _ = feed(
        &mut r,
        vec![
            ffs("1 1 stream-begin command-name eos a"),
            ffs("3 1 0 command-name eos b"),
        ],
    );
    let _ = r
        .on_response_data(RequestId(3), Bytes::from_static(b"b1"), false)
        .unwrap();
    let _ = r
        .on_response_data(RequestId(1), Bytes::from_static(b"a1"), false)
        .unwrap();
    let _ = r
        .on_text_output(RequestId(3), &[TextAtom::new("hi", vec![])])
        .unwrap();
    let _ = r
        .on_response_data(RequestId(1), Bytes::from_static(b"a2"), true)
        .unwrap();
    let _ = r
        .on_response_data(RequestId(3), Bytes::from_static(b"b2"), true)
        .unwrap();
    assert_eq!(
        drain(&mut r),
        [
            "3 2 stream-begin bytes-response continuation b1",
            "1 2 0 bytes-response continuation a1",
            r"3 2 0 text-output 0 \x02\x00\x00\x00hi",
            "1 2 0 bytes-response eos a2",
            "3 2 0 bytes-response eos b2",
        ]
    );
}

#[test]
fn output_is_cut_at_the_frame_size() {
    let mut r = reactor(|c| {
        c.set_max_frame_size(100);
    });
    let _ = r.on_frame(ffs("1 1 stream-begin command-name eos c"));
    let _ = r
        .on_response_data(RequestId(1), Bytes::from(vec![1u8; 250]), true)
        .unwrap();
    let frames: Vec<Frame> = std::iter::from_fn(|| r.poll_frame()).collect();
    let sizes: Vec<usize> = frames.iter().map(|f| f.payload().len()).collect();
    assert_eq!(sizes, [100, 100, 50]);
    assert_eq!(
        frames.iter().map(Frame::flags).collect::<Vec<_>>(),
        [1, 1, 2]
    );
    // A long error message is cut to one frame.
    let _ = r.on_frame(ffs("3 1 0 command-name eos c"));
    let _ = r
        .on_application_error(RequestId(3), &"é".repeat(100))
        .unwrap();
    let f = r.poll_frame().unwrap();
    assert_eq!(f.payload().len(), 100);
    assert_eq!(f.flags(), 0x02);
}

#[test]
fn text_output_must_fit_in_a_frame() {
    let mut r = reactor(|c| {
        c.set_max_frame_size(16);
    });
    let _ = r.on_frame(ffs("1 1 stream-begin command-name eos c"));
    assert!(matches!(
        r.on_text_output(RequestId(1), &[TextAtom::new("x".repeat(40), vec![])]),
        Err(ReactorError::Build(_))
    ));
    // The request goes on.
    assert!(r.on_response_data(RequestId(1), Bytes::new(), true).is_ok());
}

#[cfg(feature = "zstd")]
#[test]
fn output_uses_the_negotiated_encoding() {
    let mut r = reactor(|c| {
        c.set_peer_accepts(&["zstd-8mb", "identity"]);
    });
    assert_eq!(r.output_encoding(), "zstd-8mb");
    let data = Bytes::from("hello world ".repeat(10_000));
    let _ = r.on_frame(ffs("1 1 stream-begin command-name eos c"));
    let _ = r
        .on_response_data(RequestId(1), data.clone(), true)
        .unwrap();
    assert_eq!(kind(&r.on_input_eof()), "sendframes");
    let frames: Vec<Frame> = std::iter::from_fn(|| r.poll_frame()).collect();
    assert_eq!(frames[0].known_type(), Some(FrameType::StreamSettings));
    assert_eq!(frames[0].stream_flags(), StreamFlags::STREAM_BEGIN);
    assert!(frames[1].stream_flags().contains(StreamFlags::ENCODED));
    assert!(frames
        .last()
        .unwrap()
        .stream_flags()
        .contains(StreamFlags::STREAM_END));
    let wire: usize = frames.iter().map(Frame::encoded_len).sum();
    assert!(wire < data.len() / 10, "compressed: {wire}");
    let mut incoming =
        IncomingStreams::new(Side::Client, Profiles::default(), DecodeLimits::default());
    let mut got = Vec::new();
    for f in frames {
        if let Some(f) = incoming.on_frame(f).unwrap() {
            got.extend_from_slice(f.payload());
        }
    }
    assert_eq!(got, data);
    // A client that accepts nothing else gets identity.
    let mut r = reactor(|_| {});
    assert_eq!(r.set_peer_accepts(&["gzip"]), "identity");
}

/// The server's preference order decides between the profiles the client accepts:
/// zstd-8mb by default (deflate only when listed), deflate first when configured so
/// (streams of tiny messages), and never a profile the client did not list.
#[cfg(all(feature = "zstd", feature = "deflate"))]
#[test]
fn the_server_preference_order_picks_among_what_the_client_accepts() {
    let everything = ["zstd-8mb", "deflate", "identity"];
    assert_eq!(
        ServerConfig::default().encodings(),
        ["zstd-8mb", "identity"]
    );
    let default = ["zstd-8mb", "identity"];
    for (ours, theirs, chosen) in [
        (&default[..], &everything[..], "zstd-8mb"),
        (&default[..], &["deflate"][..], "identity"),
        (&everything[..], &everything[..], "zstd-8mb"),
        (&everything[..], &["deflate", "zstd-8mb"][..], "zstd-8mb"),
        (&everything[..], &["deflate", "identity"][..], "deflate"),
        (
            &["deflate", "zstd-8mb", "identity"][..],
            &everything[..],
            "deflate",
        ),
        (&["deflate", "zstd-8mb"][..], &["zstd-8mb"][..], "zstd-8mb"),
        (&["zstd-8mb", "identity"][..], &["deflate"][..], "identity"),
        (&["deflate"][..], &["identity"][..], "identity"),
        (&[][..], &everything[..], "identity"),
    ] {
        let mut r = reactor(|c| {
            c.set_encodings(ours).set_peer_accepts(theirs);
        });
        assert_eq!(
            r.output_encoding(),
            chosen,
            "ours {ours:?}, theirs {theirs:?}"
        );
        // Negotiating again per exchange follows the same order.
        assert_eq!(r.set_peer_accepts(theirs), chosen);
    }
}

#[cfg(feature = "deflate")]
#[test]
fn deflate_output_decodes_with_its_stream_settings() {
    let mut r = reactor(|c| {
        c.set_encodings(&["deflate", "identity"])
            .set_peer_accepts(&["deflate"])
            .set_level(6);
    });
    assert_eq!(r.output_encoding(), "deflate");
    let mut data = Vec::new();
    let _ = r.on_frame(ffs("1 1 stream-begin command-name eos c"));
    for i in 0..200 {
        let message = format!("{{\"id\":{i},\"name\":\"record {i}\",\"ok\":true}}\n");
        data.extend_from_slice(message.as_bytes());
        let _ = r
            .on_response_data(RequestId(1), Bytes::from(message), i == 199)
            .unwrap();
    }
    assert_eq!(kind(&r.on_input_eof()), "sendframes");
    let frames: Vec<Frame> = std::iter::from_fn(|| r.poll_frame()).collect();
    assert_eq!(frames[0].known_type(), Some(FrameType::StreamSettings));
    assert_eq!(&frames[0].payload()[..], b"\x07deflate");
    assert!(frames[1].stream_flags().contains(StreamFlags::ENCODED));
    let wire: usize = frames.iter().map(|f| f.payload().len()).sum();
    assert!(
        wire * 3 < data.len(),
        "compressed: {wire} of {}",
        data.len()
    );
    let mut incoming =
        IncomingStreams::new(Side::Client, Profiles::default(), DecodeLimits::default());
    let mut got = Vec::new();
    for f in frames {
        if let Some(f) = incoming.on_frame(f).unwrap() {
            got.extend_from_slice(f.payload());
        }
    }
    assert_eq!(got, data);
}

#[cfg(feature = "zstd")]
#[test]
fn encoded_input_is_decoded_through_its_stream() {
    let mut r = reactor(|_| {});
    let mut s = ClientStream::with_encoding("zstd-8mb");
    let mut frames = Vec::new();
    s.inner()
        .push_frame(ffs("1 1 0 command-name have-data c"), &mut frames)
        .unwrap();
    let data = Bytes::from("abc".repeat(50_000));
    s.inner()
        .push_data(
            RequestId(1),
            FrameType::CommandData,
            data.clone(),
            true,
            &mut frames,
        )
        .unwrap();
    assert!(frames
        .iter()
        .any(|f| f.stream_flags().contains(StreamFlags::ENCODED)));
    let mut actions = feed(&mut r, frames);
    let cmd = run(actions.pop().unwrap());
    assert!(actions.iter().all(|a| kind(a) == "wantframe"));
    assert_eq!(cmd.data.unwrap(), data);
}

#[test]
fn stream_rule_violations_are_protocol_errors() {
    // An encoded frame on a stream without settings.
    let mut r = reactor(|_| {});
    let a = r.on_frame(ffs("1 1 stream-begin|encoded command-name eos c"));
    assert!(
        matches!(a, ServerAction::Error(ProtocolError::Stream(_))),
        "{a:?}"
    );
    // A stream-settings frame naming an unknown profile.
    let mut r = reactor(|_| {});
    let a = r.on_frame(ffs(r"1 1 stream-begin stream-settings 0 \x04nope"));
    assert!(
        matches!(a, ServerAction::Error(ProtocolError::Stream(_))),
        "{a:?}"
    );
    // A stream-settings frame on its own is consumed.
    let mut r = reactor(|_| {});
    let a = r.on_frame(ffs(r"1 1 stream-begin stream-settings 0 \x08identity"));
    assert_eq!(kind(&a), "wantframe");
    assert_eq!(
        kind(&r.on_frame(ffs("1 1 0 command-name eos c"))),
        "runcommand"
    );
    // A frame on a stream the client ended.
    let mut r = reactor(|_| {});
    let _ = r.on_frame(ffs("1 1 stream-begin|stream-end command-name eos c"));
    let a = r.on_frame(ffs("3 1 0 command-name eos c"));
    assert_eq!(
        error(a),
        "received frame on unknown inactive stream without beginning of stream flag set"
    );
}

#[test]
fn stream_settings_flag_rules() {
    // stream-settings defines no frame flags: every bit is refused, as on other types.
    for (flags, hex) in [
        ("1", "0x1"),
        ("2", "0x2"),
        ("4", "0x4"),
        ("8", "0x8"),
        ("15", "0xf"),
    ] {
        let mut r = reactor(|_| {});
        let line = format!(r"1 1 stream-begin stream-settings {flags} \x08identity");
        assert_eq!(
            error(r.on_frame(ffs(&line))),
            format!("invalid flags {hex} on stream-settings frame of stream 1")
        );
        assert_protocol_error_frame(&mut r, 1);
    }
    // Without flags the same frame is consumed.
    let mut r = reactor(|_| {});
    let a = r.on_frame(ffs(r"1 1 stream-begin stream-settings 0 \x08identity"));
    assert_eq!(kind(&a), "wantframe");
}

#[test]
fn limit_receiving_commands() {
    let mut r = reactor(|c| {
        c.set_max_receiving_commands(2);
    });
    let _ = r.on_frame(ffs("1 1 stream-begin command-name have-args a"));
    let _ = r.on_frame(ffs("3 1 0 command-name have-data b"));
    // A command complete in one frame is not receiving.
    assert_eq!(
        kind(&r.on_frame(ffs("5 1 0 command-name eos c"))),
        "runcommand"
    );
    let a = r.on_frame(ffs("7 1 0 command-name have-args d"));
    assert_eq!(limit_of(a), (Limit::ReceivingCommands, 3, 2));
    assert_protocol_error_frame(&mut r, 7);
    assert_eq!(r.buffered_bytes(), 0, "partial commands are dropped");
}

#[test]
fn limit_active_requests() {
    let mut r = reactor(|c| {
        c.set_max_active_requests(2);
    });
    let _ = run(r.on_frame(ffs("1 1 stream-begin command-name eos a")));
    let _ = run(r.on_frame(ffs("3 1 0 command-name eos b")));
    let _ = r.on_frame(ffs("5 1 0 command-name have-args c"));
    let a = r.on_frame(ffs(r"5 1 0 command-argument eoa \x01\x00\x00\x00k"));
    assert_eq!(limit_of(a), (Limit::ActiveRequests, 3, 2));
    // The earlier requests may still answer.
    assert!(r.on_response_data(RequestId(1), Bytes::new(), true).is_ok());
}

#[test]
fn limit_args_per_command() {
    let mut r = reactor(|c| {
        c.set_max_args_per_command(1);
    });
    let _ = r.on_frame(ffs("1 1 stream-begin command-name have-args a"));
    let _ = r.on_frame(ffs(r"1 1 0 command-argument 0 \x01\x00\x00\x00k"));
    let a = r.on_frame(ffs(r"1 1 0 command-argument eoa \x01\x00\x00\x00l"));
    assert_eq!(limit_of(a), (Limit::ArgsPerCommand, 2, 1));
}

#[test]
fn limit_arg_len_is_checked_on_the_announced_length() {
    let mut r = reactor(|c| {
        c.set_max_arg_len(10);
    });
    let _ = r.on_frame(ffs("1 1 stream-begin command-name have-args a"));
    let a = r.on_frame(ffs(
        r"1 1 0 command-argument continuation \x01\x00\x0b\x00kx",
    ));
    assert_eq!(limit_of(a), (Limit::ArgLen, 11, 10));
    assert_eq!(r.buffered_bytes(), 0);
}

#[test]
fn limit_buffered_data_counts_names_arguments_and_data() {
    let mut r = reactor(|c| {
        c.set_max_buffered_data(20);
    });
    let _ = r.on_frame(ffs(
        "1 1 stream-begin command-name have-args|have-data abcd",
    ));
    assert_eq!(r.buffered_bytes(), 4);
    let _ = r.on_frame(ffs(r"1 1 0 command-argument eoa \x01\x00\x05\x00k12345"));
    assert_eq!(r.buffered_bytes(), 10);
    let _ = r.on_frame(ffs("1 1 0 command-data continuation 12345"));
    assert!(r.buffered_bytes() <= 20);
    let a = r.on_frame(ffs("1 1 0 command-data continuation 123456"));
    assert_eq!(limit_of(a), (Limit::BufferedData, 21, 20));
    assert_eq!(r.buffered_bytes(), 0);
    assert_protocol_error_frame(&mut r, 1);
    // Later frames of the request are refused without being kept.
    assert_eq!(
        error(r.on_frame(ffs("1 1 0 command-data eos 1"))),
        "server already errored"
    );
    assert_eq!(r.buffered_bytes(), 0);
}

#[test]
fn limit_frame_payload() {
    let mut r = reactor(|c| {
        c.set_max_frame_payload(10);
    });
    assert_eq!(
        kind(&r.on_frame(ffs("1 1 stream-begin command-name eos 0123456789"))),
        "runcommand"
    );
    let a = r.on_frame(ffs("3 1 0 command-name eos 0123456789a"));
    assert_eq!(limit_of(a), (Limit::FramePayload, 11, 10));
}

#[cfg(feature = "zstd")]
#[test]
fn limit_decoded_frame_len() {
    let mut r = reactor(|c| {
        c.set_max_decoded_frame_len(1000);
    });
    let mut s = ClientStream::with_encoding("zstd-8mb");
    let mut frames = Vec::new();
    s.inner()
        .push_frame(ffs("1 1 0 command-name have-data c"), &mut frames)
        .unwrap();
    s.inner()
        .push_data(
            RequestId(1),
            FrameType::CommandData,
            Bytes::from(vec![0u8; 5000]),
            true,
            &mut frames,
        )
        .unwrap();
    let actions = feed(&mut r, frames);
    let last = actions
        .into_iter()
        .find(|a| kind(a) == "error")
        .expect("an error");
    assert!(error(last).contains("decodes to more than 1000 bytes"));
}

#[cfg(feature = "zstd")]
#[test]
fn limit_decoding_streams() {
    let mut r = reactor(|c| {
        c.set_max_decoding_streams(1);
    });
    let a = r.on_frame(ffs(r"1 1 stream-begin stream-settings 0 \x08zstd-8mb"));
    assert_eq!(kind(&a), "wantframe");
    let a = r.on_frame(ffs(r"3 3 stream-begin stream-settings 0 \x08zstd-8mb"));
    assert!(error(a).contains("more than 1 streams"));
}

#[test]
fn partial_commands_at_end_of_input() {
    for (mode, lines) in [
        (
            DataMode::Buffered,
            vec![
                "5 1 stream-begin command-name have-data c",
                "5 1 0 command-data continuation x",
            ],
        ),
        (
            DataMode::Streaming,
            vec![
                "5 1 stream-begin command-name have-data c",
                "5 1 0 command-data continuation x",
            ],
        ),
        (
            DataMode::Buffered,
            vec![
                "5 1 stream-begin command-name have-args c",
                r"5 1 0 command-argument continuation \x01\x00\x05\x00kab",
            ],
        ),
    ] {
        let mut r = reactor(|c| {
            c.set_data_mode(mode);
        });
        for l in lines {
            let _ = r.on_frame(ffs(l));
        }
        let e = error(r.on_input_eof());
        assert!(
            e.starts_with("end of input with partial command request 5"),
            "{e}"
        );
        assert_protocol_error_frame(&mut r, 5);
        assert_eq!(r.buffered_bytes(), 0);
    }
}

#[test]
fn frames_after_end_of_input() {
    let mut r = reactor(|_| {});
    assert_eq!(kind(&r.on_input_eof()), "noop");
    assert!(r.is_finished());
    assert_eq!(
        error(r.on_frame(ffs("1 1 stream-begin command-name eos c"))),
        "received frame after end of input"
    );
}

#[test]
fn stream_end_marks_the_last_response_after_end_of_input() {
    let mut r = reactor(|_| {});
    let _ = feed(
        &mut r,
        vec![
            ffs("1 1 stream-begin command-name eos a"),
            ffs("3 1 0 command-name eos b"),
        ],
    );
    assert_eq!(kind(&r.on_input_eof()), "noop");
    assert!(!r.is_finished());
    let _ = r
        .on_response_data(RequestId(1), Bytes::from_static(b"one"), true)
        .unwrap();
    assert_eq!(drain(&mut r), ["1 2 stream-begin bytes-response eos one"]);
    let _ = r
        .on_response_data(RequestId(3), Bytes::from_static(b"three"), true)
        .unwrap();
    assert_eq!(drain(&mut r), ["3 2 stream-end bytes-response eos three"]);
    assert!(r.is_finished());
}

#[test]
fn poll_transmit_writes_the_frames_bytes() {
    let mut r = reactor(|_| {});
    let _ = r.on_frame(ffs("1 1 stream-begin command-name eos c"));
    let _ = r
        .on_response_data(RequestId(1), Bytes::from_static(b"response"), true)
        .unwrap();
    let mut out = BytesMut::new();
    assert!(r.has_pending_output());
    assert_eq!(r.queued_output_bytes(), 16);
    assert_eq!(r.poll_transmit(&mut out, 1000), 16);
    assert_eq!(
        &out[..],
        &ffs("1 2 stream-begin bytes-response eos response").to_bytes()[..]
    );
    assert!(!r.has_pending_output());
    assert_eq!(r.poll_transmit(&mut out, 1000), 0);
}

#[test]
fn the_reactor_is_send() {
    fn send<T: Send>() {}
    send::<ServerReactor>();
    send::<hgframe_reactor::ClientReactor>();
}

#[cfg(feature = "zstd")]
#[test]
fn output_that_cannot_be_encoded_is_an_error_for_the_caller() {
    let mut r = reactor(|c| {
        c.set_peer_accepts(&["zstd-8mb"]).set_level(1000);
    });
    let _ = r.on_frame(ffs("1 1 stream-begin command-name eos c"));
    assert!(matches!(
        r.on_response_data(RequestId(1), Bytes::from_static(b"x"), true),
        Err(ReactorError::Encode(_))
    ));
}
