//! The client reactor: request ids, the frames it produces, the events it reports, and
//! the server violations it detects.

mod common;

use bytes::Bytes;
use common::*;
use hgframe_reactor::{
    ClientConfig, ClientEvent, ClientReactor, ErrorKind, Limit, ProtocolError, ReactorError,
    TextAtom,
};
use hgframe_wire::{Frame, RequestId};
#[cfg(feature = "zstd")]
use hgframe_wire::{FrameType, StreamFlags};

fn client() -> ClientReactor {
    ClientReactor::new(ClientConfig::default())
}

fn frames(c: &mut ClientReactor) -> Vec<String> {
    std::iter::from_fn(|| c.poll_frame())
        .map(|f| f.to_human())
        .collect()
}

fn eos_response(id: RequestId) -> Frame {
    ffs(&format!("{} 2 0 bytes-response eos", id.0))
}

#[test]
fn frames_of_a_command() {
    let mut c = client();
    let id = c
        .call_command(
            b"mycommand",
            [
                (Bytes::from("foo"), Bytes::from("bar")),
                (Bytes::from("biz"), Bytes::from("baz")),
            ],
            Some(Bytes::from("data!")),
        )
        .unwrap();
    assert_eq!(id, RequestId(1));
    assert_eq!(
        frames(&mut c),
        [
            "1 1 stream-begin command-name have-args|have-data mycommand",
            r"1 1 0 command-argument 0 \x03\x00\x03\x00bizbaz",
            r"1 1 0 command-argument eoa \x03\x00\x03\x00foobar",
            "1 1 0 command-data eos data!",
        ]
    );
    let id = c.call_command(b"other", [], None).unwrap();
    assert_eq!(id, RequestId(3));
    assert_eq!(frames(&mut c), ["3 1 0 command-name eos other"]);
}

#[test]
fn long_values_and_data_are_cut_at_the_frame_size() {
    let mut config = ClientConfig::default();
    config.set_max_frame_size(16);
    let mut c = ClientReactor::new(config);
    let _ = c
        .call_command(
            b"c",
            [(Bytes::from("k"), Bytes::from(vec![b'v'; 30]))],
            Some(Bytes::from(vec![b'd'; 32])),
        )
        .unwrap();
    let out: Vec<Frame> = std::iter::from_fn(|| c.poll_frame()).collect();
    assert!(out.iter().all(|f| f.payload().len() <= 16));
    let kinds: Vec<(u8, u8)> = out.iter().map(|f| (f.frame_type(), f.flags())).collect();
    assert_eq!(
        kinds,
        [
            (1, 0x06),
            (2, 0x01),
            (2, 0x01),
            (2, 0x02),
            (3, 0x01),
            (3, 0x02)
        ]
    );
    // A server takes them back whole.
    let mut server = hgframe_reactor::ServerReactor::new(hgframe_reactor::ServerConfig::default());
    let cmd = feed(&mut server, out).into_iter().last().map(run).unwrap();
    assert_eq!(args_of(&cmd)["k"], vec![b'v'; 30]);
    assert_eq!(cmd.data.unwrap(), vec![b'd'; 32]);
}

#[test]
fn data_in_pieces() {
    let mut c = client();
    let id = c.start_command(b"put", [], true).unwrap();
    c.send_command_data(id, Bytes::from("ab"), false).unwrap();
    c.send_command_data(id, Bytes::new(), false).unwrap();
    c.send_command_data(id, Bytes::from("cd"), false).unwrap();
    c.send_command_data(id, Bytes::new(), true).unwrap();
    assert_eq!(
        frames(&mut c),
        [
            "1 1 stream-begin command-name have-data put",
            "1 1 0 command-data continuation ab",
            "1 1 0 command-data continuation cd",
            "1 1 0 command-data eos",
        ]
    );
    assert!(matches!(
        c.send_command_data(id, Bytes::from("x"), true),
        Err(ReactorError::NoDataExpected(_))
    ));
    assert!(matches!(
        c.send_command_data(RequestId(99), Bytes::from("x"), true),
        Err(ReactorError::UnknownRequest(RequestId(99)))
    ));
    let id = c.start_command(b"nodata", [], false).unwrap();
    assert!(matches!(
        c.send_command_data(id, Bytes::from("x"), true),
        Err(ReactorError::NoDataExpected(_))
    ));
}

#[test]
fn events_per_request_in_any_order() {
    let mut c = client();
    let a = c.call_command(b"a", [], None).unwrap();
    let b = c.call_command(b"b", [], None).unwrap();
    assert_eq!(c.in_flight(), 2);
    let mut events = Vec::new();
    for line in [
        "3 2 stream-begin bytes-response continuation b1",
        r"1 2 0 text-output 0 \x02\x00\x00\x00hi",
        "1 2 0 bytes-response continuation a1",
        "3 2 0 bytes-response eos b2",
        "1 2 0 error-response application boom",
    ] {
        events.extend(c.on_frame(ffs(line)).unwrap());
    }
    assert_eq!(
        events,
        [
            ClientEvent::ResponseData {
                request_id: b,
                data: Bytes::from("b1"),
                eos: false
            },
            ClientEvent::TextOutput {
                request_id: a,
                atoms: vec![TextAtom::new("hi", vec![])]
            },
            ClientEvent::ResponseData {
                request_id: a,
                data: Bytes::from("a1"),
                eos: false
            },
            ClientEvent::ResponseData {
                request_id: b,
                data: Bytes::from("b2"),
                eos: true
            },
            ClientEvent::Error {
                request_id: a,
                kind: ErrorKind::Application,
                message: "boom".into()
            },
        ]
    );
    assert!(events[3].is_final() && events[4].is_final() && !events[0].is_final());
    assert_eq!(c.in_flight(), 0);
}

#[test]
fn request_ids_are_odd_wrap_around_and_skip_active_ones() {
    let mut c = client();
    let first = c.call_command(b"long", [], None).unwrap();
    assert_eq!(first, RequestId(1));
    let mut last = first;
    // Every other odd id, completed at once.
    for _ in 0..32767 {
        let id = c.call_command(b"x", [], None).unwrap();
        assert_eq!(id.0 % 2, 1);
        assert!(id > last);
        last = id;
        let _ = c.poll_frame();
        assert!(c
            .on_frame(if id.0 == 3 {
                ffs(&format!("{} 2 stream-begin bytes-response eos", id.0))
            } else {
                eos_response(id)
            })
            .unwrap()[0]
            .is_final());
    }
    assert_eq!(last, RequestId(65535));
    // Wrapped: 1 is still active, so 3 comes next.
    assert_eq!(c.call_command(b"x", [], None).unwrap(), RequestId(3));
}

#[test]
fn in_flight_limit() {
    let mut config = ClientConfig::default();
    config.set_max_in_flight(2);
    let mut c = ClientReactor::new(config);
    let a = c.call_command(b"a", [], None).unwrap();
    let _ = c.call_command(b"b", [], None).unwrap();
    assert!(matches!(
        c.call_command(b"c", [], None),
        Err(ReactorError::Limit {
            limit: Limit::InFlight,
            max: 2
        })
    ));
    let _ = c
        .on_frame(ffs(&format!("{} 2 stream-begin bytes-response eos", a.0)))
        .unwrap();
    assert!(c.call_command(b"c", [], None).is_ok());
}

#[test]
fn end_of_input_fails_what_is_in_flight() {
    let mut c = client();
    let a = c.call_command(b"a", [], None).unwrap();
    let events = c.on_input_eof().unwrap();
    assert_eq!(
        events,
        [ClientEvent::Error {
            request_id: a,
            kind: ErrorKind::Closed,
            message: "connection closed before the end of the response to request 1".into()
        }]
    );
    assert!(matches!(
        c.call_command(b"b", [], None),
        Err(ReactorError::InputEnded)
    ));
    assert!(matches!(
        c.on_frame(eos_response(a)),
        Err(ReactorError::InputEnded)
    ));
}

#[test]
fn a_protocol_error_about_no_request_fails_them_all() {
    let mut c = client();
    let a = c.call_command(b"a", [], None).unwrap();
    let b = c.call_command(b"b", [], None).unwrap();
    let events = c
        .on_frame(ffs("99 2 stream-begin error-response protocol bad"))
        .unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].request_id(), a);
    assert_eq!(events[1].request_id(), b);
    assert_eq!(c.in_flight(), 0);
}

type Check = fn(&ProtocolError) -> bool;

#[test]
fn server_violations() {
    let cases: Vec<(&str, Check)> = vec![
        ("1 1 stream-begin bytes-response eos x", |e| {
            matches!(e, ProtocolError::OddStreamId(_))
        }),
        ("1 2 0 bytes-response eos x", |e| {
            matches!(e, ProtocolError::UnknownStream(_))
        }),
        ("5 2 stream-begin bytes-response eos x", |e| {
            matches!(e, ProtocolError::UnknownRequest(RequestId(5)))
        }),
        ("5 2 stream-begin error-response application x", |e| {
            matches!(e, ProtocolError::UnknownRequest(RequestId(5)))
        }),
        ("1 2 stream-begin bytes-response 0 x", |e| {
            matches!(e, ProtocolError::BadResponseFlags { .. })
        }),
        ("1 2 stream-begin bytes-response continuation|eos x", |e| {
            matches!(e, ProtocolError::BadResponseFlags { .. })
        }),
        ("1 2 stream-begin error-response 0 x", |e| {
            matches!(e, ProtocolError::BadResponseFlags { .. })
        }),
        (
            "1 2 stream-begin error-response protocol|application x",
            |e| matches!(e, ProtocolError::BadResponseFlags { .. }),
        ),
        ("1 2 stream-begin command-name eos x", |e| {
            matches!(
                e,
                ProtocolError::UnexpectedResponseType { frame_type: 1, .. }
            )
        }),
        ("1 2 stream-begin stream-settings 1 \\x08identity", |e| {
            matches!(e, ProtocolError::BadSettingsFlags { flags: 1, .. })
        }),
        ("1 2 stream-begin stream-settings 8 \\x08identity", |e| {
            matches!(e, ProtocolError::BadSettingsFlags { flags: 8, .. })
        }),
        ("1 2 stream-begin text-output 1 x", |e| {
            matches!(
                e,
                ProtocolError::BadResponseFlags {
                    frame_type: "text-output",
                    ..
                }
            )
        }),
        ("1 2 stream-begin text-output 0 \\x05\\x00", |e| {
            matches!(e, ProtocolError::MalformedTextOutput { .. })
        }),
        ("1 2 stream-begin|encoded bytes-response eos x", |e| {
            matches!(e, ProtocolError::Stream(_))
        }),
    ];
    for (line, check) in cases {
        let mut c = client();
        let _ = c.call_command(b"a", [], None).unwrap();
        match c.on_frame(ffs(line)) {
            Err(ReactorError::Protocol(e)) => assert!(check(&e), "{line}: {e:?}"),
            other => panic!("{line}: {other:?}"),
        }
        // The client is failed from then on.
        assert_eq!(c.in_flight(), 0);
        assert!(matches!(c.on_frame(ffs(line)), Err(ReactorError::Failed)));
        assert!(matches!(
            c.call_command(b"a", [], None),
            Err(ReactorError::Failed)
        ));
        assert!(matches!(c.on_input_eof(), Err(ReactorError::Failed)));
    }
}

#[test]
fn a_response_to_a_finished_request_is_a_violation() {
    let mut c = client();
    let a = c.call_command(b"a", [], None).unwrap();
    let _ = c
        .on_frame(ffs("1 2 stream-begin bytes-response eos x"))
        .unwrap();
    assert!(matches!(
        c.on_frame(eos_response(a)),
        Err(ReactorError::Protocol(ProtocolError::UnknownRequest(_)))
    ));
}

#[test]
fn an_early_answer_closes_the_commands_data() {
    let mut c = client();
    let id = c.start_command(b"put", [], true).unwrap();
    c.send_command_data(id, Bytes::from("ab"), false).unwrap();
    let events = c
        .on_frame(ffs("1 2 stream-begin error-response application refused"))
        .unwrap();
    assert!(events[0].is_final());
    assert_eq!(
        frames(&mut c),
        [
            "1 1 stream-begin command-name have-data put",
            "1 1 0 command-data continuation ab",
            "1 1 0 command-data eos",
        ]
    );
    assert!(matches!(
        c.send_command_data(id, Bytes::from("cd"), true),
        Err(ReactorError::UnknownRequest(_))
    ));
}

#[test]
fn finish_sending_ends_the_stream() {
    let mut c = client();
    assert!(!c.finish_sending(), "no stream yet");
    let _ = c.call_command(b"a", [], None).unwrap();
    let _ = c.call_command(b"b", [], None).unwrap();
    assert!(c.finish_sending());
    assert_eq!(
        frames(&mut c),
        [
            "1 1 stream-begin command-name eos a",
            "3 1 stream-end command-name eos b"
        ]
    );
    // A later command opens a new stream.
    let _ = c.call_command(b"c", [], None).unwrap();
    assert_eq!(frames(&mut c), ["5 3 stream-begin command-name eos c"]);
    // Once the output left, there is no frame to carry the end.
    assert!(!c.finish_sending());
}

#[cfg(feature = "zstd")]
#[test]
fn command_data_is_encoded_with_the_clients_profile() {
    let mut config = ClientConfig::default();
    config.set_encoding("zstd-8mb");
    let mut c = ClientReactor::new(config);
    // Every profile of the build, best first.
    #[cfg(feature = "deflate")]
    assert_eq!(c.accepted_encodings(), ["zstd-8mb", "deflate", "identity"]);
    #[cfg(not(feature = "deflate"))]
    assert_eq!(c.accepted_encodings(), ["zstd-8mb", "identity"]);
    let data = Bytes::from("abc".repeat(100_000));
    let _ = c.call_command(b"put", [], Some(data.clone())).unwrap();
    let out: Vec<Frame> = std::iter::from_fn(|| c.poll_frame()).collect();
    assert_eq!(out[0].known_type(), Some(FrameType::StreamSettings));
    assert!(out
        .iter()
        .any(|f| f.stream_flags().contains(StreamFlags::ENCODED)));
    let wire: usize = out.iter().map(Frame::encoded_len).sum();
    assert!(wire < data.len() / 10);
    let mut server = hgframe_reactor::ServerReactor::new(hgframe_reactor::ServerConfig::default());
    let cmd = feed(&mut server, out).into_iter().last().map(run).unwrap();
    assert_eq!(cmd.data.unwrap(), data);
    // An unknown profile falls back to identity.
    let mut config = ClientConfig::default();
    config.set_encoding("nope");
    let mut c = ClientReactor::new(config);
    let _ = c.call_command(b"a", [], None).unwrap();
    assert_eq!(frames(&mut c), ["1 1 stream-begin command-name eos a"]);
}

#[test]
fn data_from_a_reader() {
    let mut config = ClientConfig::default();
    config.set_max_frame_size(16);
    let mut c = ClientReactor::new(config);
    let data = vec![b'r'; 40];
    let id = c.call_command_with_reader(b"put", [], &data[..]).unwrap();
    let out: Vec<Frame> = std::iter::from_fn(|| c.poll_frame()).collect();
    let flags: Vec<(u8, u8)> = out.iter().map(|f| (f.frame_type(), f.flags())).collect();
    assert_eq!(
        flags,
        [(1, 0x04), (3, 0x01), (3, 0x01), (3, 0x01), (3, 0x02)]
    );
    let mut server = hgframe_reactor::ServerReactor::new(hgframe_reactor::ServerConfig::default());
    let cmd = feed(&mut server, out).into_iter().last().map(run).unwrap();
    assert_eq!(cmd.request_id, id);
    assert_eq!(cmd.data.unwrap(), data);

    struct Failing;
    impl std::io::Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk on fire"))
        }
    }
    let mut c = client();
    assert!(matches!(
        c.call_command_with_reader(b"put", [], Failing),
        Err(ReactorError::ReadData {
            request_id: RequestId(1),
            ..
        })
    ));
    // The data stays unfinished: the server must not run the command on part of it.
    assert_eq!(
        frames(&mut c),
        ["1 1 stream-begin command-name have-data put"]
    );
    assert!(c.is_in_flight(RequestId(1)));
}
