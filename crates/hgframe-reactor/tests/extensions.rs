//! The `cancel` and `progress` extensions at the reactors: used only once negotiated,
//! a protocol error otherwise, and what a cancel frees.

mod common;

use bytes::Bytes;
use common::{drain, error, ffs, kind, run};
use hgframe_reactor::{
    ClientConfig, ClientEvent, ClientReactor, ReactorError, ServerAction, ServerConfig,
    ServerReactor,
};
use hgframe_wire::extension::{Extension, Extensions};
use hgframe_wire::payload::progress::Progress;
use hgframe_wire::RequestId;

fn negotiated() -> ServerReactor {
    let mut server = ServerReactor::new(ServerConfig::default());
    assert_eq!(
        server.set_peer_extensions(Extensions::all()),
        Extensions::all()
    );
    server
}

fn report(position: u64) -> Progress {
    Progress {
        topic: "cat".into(),
        position,
        total: 100,
    }
}

#[test]
fn without_negotiation_a_cancel_frame_is_a_protocol_error() {
    // Default settings: the client offered nothing.
    let mut server = ServerReactor::new(ServerConfig::default());
    run(server.on_frame(ffs("1 1 stream-begin command-name eos cat")));
    let e = error(server.on_frame(ffs("1 1 0 9 0")));
    assert_eq!(e, "expected command frame; got 9");
    // Offered, but this server does not accept it: the same.
    let mut config = ServerConfig::default();
    config.set_extensions(Extensions::only(Extension::Progress));
    let mut server = ServerReactor::new(config);
    assert_eq!(
        server.set_peer_extensions(Extensions::all()),
        Extensions::only(Extension::Progress)
    );
    run(server.on_frame(ffs("1 1 stream-begin command-name eos cat")));
    assert_eq!(
        error(server.on_frame(ffs("1 1 0 9 0"))),
        "expected command frame; got 9"
    );
}

#[test]
fn without_negotiation_the_server_never_emits_progress() {
    let mut server = ServerReactor::new(ServerConfig::default());
    let cmd = run(server.on_frame(ffs("1 1 stream-begin command-name eos cat")));
    assert!(matches!(
        server.on_progress(cmd.request_id, &report(1)),
        Err(ReactorError::NotNegotiated(Extension::Progress))
    ));
    assert_eq!(server.queued_output_bytes(), 0);
}

#[test]
fn progress_is_a_frame_of_type_7_in_the_response() {
    let mut server = negotiated();
    let cmd = run(server.on_frame(ffs("1 1 stream-begin command-name eos cat")));
    let r = cmd.request_id;
    let _ = server.on_progress(r, &report(40)).unwrap();
    let _ = server.on_response_data(r, Bytes::from("x"), true).unwrap();
    assert_eq!(
        drain(&mut server),
        [
            "1 2 stream-begin 7 0 \\x03cat(\\x00\\x00\\x00\\x00\\x00\\x00\\x00d\\x00\\x00\\x00\\x00\\x00\\x00\\x00",
            "1 2 0 bytes-response eos x",
        ]
    );
    // Not once the response ended.
    assert!(matches!(
        server.on_progress(r, &report(50)),
        Err(ReactorError::UnknownRequest(_) | ReactorError::ResponseFinished(_))
    ));
}

#[test]
fn cancelling_a_running_request_drops_its_queued_output_and_ends_it_with_a_cancel() {
    let mut server = negotiated();
    let cmd = run(server.on_frame(ffs("1 1 stream-begin command-name eos cat")));
    let other = run(server.on_frame(ffs("3 1 0 command-name eos cat")));
    let r = cmd.request_id;
    for _ in 0..10 {
        let _ = server
            .on_response_data(r, Bytes::from(vec![7u8; 1000]), false)
            .unwrap();
    }
    let _ = server
        .on_response_data(other.request_id, Bytes::from("o"), false)
        .unwrap();
    let action = server.on_frame(ffs("1 1 0 9 0"));
    assert!(
        matches!(action, ServerAction::Cancelled(RequestId(1))),
        "{}",
        kind(&action)
    );
    // The running command's answers are refused from now on.
    assert!(server
        .on_response_data(r, Bytes::from("late"), true)
        .is_err());
    let frames = drain(&mut server);
    // The first frame opened the stream and stays; the nine others are dropped; the
    // other request is untouched; the cancel frame ends request 1.
    assert_eq!(frames.len(), 3, "{frames:?}");
    assert!(frames[0].starts_with("1 2 stream-begin bytes-response continuation"));
    assert_eq!(frames[1], "3 2 0 bytes-response continuation o");
    assert_eq!(frames[2], "1 2 0 9 0");
    // Request 1 is over: its id may be used again.
    run(server.on_frame(ffs("1 1 0 command-name eos cat")));
    assert_eq!(server.active_requests(), 2);
}

#[test]
fn cancelling_a_command_still_arriving_frees_its_bytes() {
    let mut server = negotiated();
    assert!(matches!(
        server.on_frame(ffs("1 1 stream-begin command-name have-data cat")),
        ServerAction::WantFrame
    ));
    let _ = server.on_frame(ffs(&format!(
        "1 1 0 command-data continuation {}",
        "d".repeat(500)
    )));
    assert!(server.buffered_bytes() >= 500);
    let action = server.on_frame(ffs("1 1 0 9 0"));
    assert!(
        matches!(action, ServerAction::SendFrames),
        "{}",
        kind(&action)
    );
    assert_eq!(server.buffered_bytes(), 0);
    assert_eq!(server.receiving_commands(), 0);
    assert_eq!(drain(&mut server), ["1 2 stream-begin 9 0"]);
    let _ = server.on_input_eof();
    assert!(server.is_finished());
}

#[test]
fn a_cancel_for_an_unknown_or_finished_request_is_ignored() {
    let mut server = negotiated();
    assert!(matches!(
        server.on_frame(ffs("1 1 stream-begin 9 0")),
        ServerAction::WantFrame
    ));
    let cmd = run(server.on_frame(ffs("3 1 0 command-name eos cat")));
    let _ = server
        .on_response_data(cmd.request_id, Bytes::from("all"), true)
        .unwrap();
    // Its last frame is queued: the cancel crossed it, and changes nothing.
    let action = server.on_frame(ffs("3 1 0 9 0"));
    assert!(
        !matches!(action, ServerAction::Error(_)),
        "{}",
        kind(&action)
    );
    assert_eq!(
        drain(&mut server),
        ["3 2 stream-begin bytes-response eos all"]
    );
    assert!(!server.is_errored());
}

#[test]
fn a_malformed_cancel_is_a_protocol_error() {
    let mut server = negotiated();
    run(server.on_frame(ffs("1 1 stream-begin command-name eos cat")));
    let e = error(server.on_frame(ffs("1 1 0 9 0 x")));
    assert!(e.contains("cancel carries no payload"), "{e}");
    let mut server = negotiated();
    run(server.on_frame(ffs("1 1 stream-begin command-name eos cat")));
    let e = error(server.on_frame(ffs("1 1 0 9 1")));
    assert!(e.contains("cancel defines no flags"), "{e}");
}

fn client(offer: Extensions, accepted: Extensions) -> ClientReactor {
    let mut config = ClientConfig::default();
    config.set_extensions(offer);
    let mut client = ClientReactor::new(config);
    client.set_extensions(accepted);
    client
}

#[test]
fn a_client_that_did_not_negotiate_refuses_extension_frames_and_never_cancels() {
    // Offered but not accepted: nothing is used.
    let mut c = client(Extensions::all(), Extensions::none());
    let id = c.call_command(b"cat", [], None).unwrap();
    assert!(matches!(
        c.cancel(id),
        Err(ReactorError::NotNegotiated(Extension::Cancel))
    ));
    let progress = ffs("1 2 stream-begin 7 0 \\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00");
    assert!(matches!(
        c.on_frame(progress),
        Err(ReactorError::Protocol(_))
    ));
    // Accepted but never offered: not used either.
    let c = client(Extensions::none(), Extensions::all());
    assert!(c.extensions().is_empty());
}

#[test]
fn progress_events_come_in_order_with_their_positions() {
    let mut c = client(Extensions::all(), Extensions::all());
    let id = c.call_command(b"cat", [], None).unwrap();
    let mut server = negotiated();
    let mut events = Vec::new();
    let mut out = bytes::BytesMut::new();
    c.poll_transmit(&mut out, 1 << 16);
    for frame in hgframe_wire::Frames::new(out.freeze()) {
        run(server.on_frame(frame.unwrap()));
    }
    for position in [0, 10, 60, 100] {
        let _ = server.on_progress(id, &report(position)).unwrap();
        let _ = server
            .on_response_data(id, Bytes::from("d"), false)
            .unwrap();
    }
    let _ = server.on_response_data(id, Bytes::new(), true).unwrap();
    while let Some(frame) = server.poll_frame() {
        events.extend(c.on_frame(frame).unwrap());
    }
    let positions: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Progress {
                position,
                total,
                topic,
                ..
            } => {
                assert_eq!((topic.as_str(), *total), ("cat", 100));
                Some(*position)
            }
            _ => None,
        })
        .collect();
    assert_eq!(positions, [0, 10, 60, 100]);
    // Each report came before the data written after it.
    assert!(matches!(events[0], ClientEvent::Progress { .. }));
    assert!(matches!(events[1], ClientEvent::ResponseData { .. }));
    assert!(events.last().unwrap().is_final());
}

#[test]
fn a_cancelled_request_is_silent_until_its_last_frame_frees_the_id() {
    let mut c = client(Extensions::all(), Extensions::all());
    let id = c
        .call_command(b"cat", [], Some(Bytes::from("data")))
        .unwrap();
    assert!(c.cancel(id).unwrap());
    assert!(!c.cancel(id).unwrap(), "a second cancel sends nothing");
    assert!(c.send_command_data(id, Bytes::from("more"), true).is_err());
    let before = c.queued_output_bytes();
    assert!(c
        .on_frame(ffs("1 2 stream-begin bytes-response continuation late"))
        .unwrap()
        .is_empty());
    assert!(c.on_frame(ffs("1 2 0 7 0 \\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00")).unwrap().is_empty());
    assert!(c.is_in_flight(id));
    assert!(c.on_frame(ffs("1 2 0 9 0")).unwrap().is_empty());
    assert!(!c.is_in_flight(id));
    // Nothing was sent in answer (no data eos for a cancelled request).
    assert_eq!(c.queued_output_bytes(), before);
    // Frames of an unknown request after that are the server's fault again.
    assert!(c.on_frame(ffs("1 2 0 bytes-response eos x")).is_err());
}
