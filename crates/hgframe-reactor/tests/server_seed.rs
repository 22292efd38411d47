//! The seed's server reactor scenarios (`test-wireproto-serverreactor.py` at the
//! seed's revision), with the completed behaviours where the seed fell short.

mod common;

use bytes::Bytes;
use common::*;
use hgframe_reactor::{ServerAction, ServerConfig, ServerReactor};
use hgframe_wire::RequestId;

fn reactor() -> ServerReactor {
    ServerReactor::new(ServerConfig::default())
}

fn deferred() -> ServerReactor {
    let mut c = ServerConfig::default();
    c.set_defer_output(true);
    ServerReactor::new(c)
}

#[test]
fn one_frame_command() {
    let mut r = reactor();
    let mut s = ClientStream::new();
    let mut actions = feed(&mut r, s.command(1, "mycommand", &[], None));
    assert_eq!(actions.len(), 1);
    let cmd = run(actions.remove(0));
    assert_eq!(cmd.request_id, RequestId(1));
    assert_eq!(&cmd.name[..], b"mycommand");
    assert!(cmd.args.is_empty());
    assert_eq!(cmd.data, None);
    assert!(!cmd.data_follows);
    assert!(matches!(r.on_input_eof(), ServerAction::Noop));
}

#[test]
fn one_argument() {
    let mut r = reactor();
    let mut s = ClientStream::new();
    let mut actions = feed(&mut r, s.command(41, "mycommand", &[("foo", b"bar")], None));
    assert_eq!(kinds(&actions), ["wantframe", "runcommand"]);
    let cmd = run(actions.remove(1));
    assert_eq!(cmd.request_id, RequestId(41));
    assert_eq!(args_of(&cmd), [("foo".to_string(), b"bar".to_vec())].into());
}

#[test]
fn several_arguments() {
    let mut r = reactor();
    let mut s = ClientStream::new();
    let mut actions = feed(
        &mut r,
        s.command(1, "mycommand", &[("foo", b"bar"), ("biz", b"baz")], None),
    );
    assert_eq!(kinds(&actions), ["wantframe", "wantframe", "runcommand"]);
    let cmd = run(actions.remove(2));
    assert_eq!(
        args_of(&cmd),
        [
            ("biz".to_string(), b"baz".to_vec()),
            ("foo".to_string(), b"bar".to_vec())
        ]
        .into()
    );
}

#[test]
fn data_in_exactly_one_frame() {
    let mut r = reactor();
    let mut s = ClientStream::new();
    let mut actions = feed(&mut r, s.command(1, "mycommand", &[], Some(b"data!")));
    assert_eq!(kinds(&actions), ["wantframe", "runcommand"]);
    assert_eq!(
        run(actions.remove(1)).data,
        Some(Bytes::from_static(b"data!"))
    );
}

#[test]
fn data_of_exactly_one_frame_size_ends_with_an_empty_eos_frame() {
    let mut r = reactor();
    let data = vec![b'x'; 32768];
    let mut s = ClientStream::new();
    let frames = s.command(1, "mycommand", &[], Some(&data));
    assert_eq!(frames.len(), 3);
    let mut actions = feed(&mut r, frames);
    assert_eq!(kinds(&actions), ["wantframe", "wantframe", "runcommand"]);
    assert_eq!(run(actions.remove(2)).data.unwrap(), data);
}

#[test]
fn data_over_several_frames() {
    let mut r = reactor();
    let mut actions = feed(
        &mut r,
        vec![
            ffs("1 1 stream-begin command-name have-data mycommand"),
            ffs("1 1 0 command-data continuation data1"),
            ffs("1 1 0 command-data continuation data2"),
            ffs("1 1 0 command-data eos data3"),
        ],
    );
    assert_eq!(
        kinds(&actions),
        ["wantframe", "wantframe", "wantframe", "runcommand"]
    );
    let cmd = run(actions.remove(3));
    assert_eq!(cmd.data, Some(Bytes::from_static(b"data1data2data3")));
}

#[test]
fn arguments_and_data() {
    let mut r = reactor();
    let mut actions = feed(
        &mut r,
        vec![
            ffs("1 1 stream-begin command-name have-args|have-data command"),
            ffs(r"1 1 0 command-argument 0 \x03\x00\x03\x00keyval"),
            ffs(r"1 1 0 command-argument eoa \x03\x00\x05\x00foovalue"),
            ffs("1 1 0 command-data continuation value1"),
            ffs("1 1 0 command-data eos value2"),
        ],
    );
    assert_eq!(
        kinds(&actions),
        [
            "wantframe",
            "wantframe",
            "wantframe",
            "wantframe",
            "runcommand"
        ]
    );
    let cmd = run(actions.remove(4));
    assert_eq!(
        args_of(&cmd),
        [
            ("foo".to_string(), b"value".to_vec()),
            ("key".to_string(), b"val".to_vec())
        ]
        .into()
    );
    assert_eq!(cmd.data, Some(Bytes::from_static(b"value1value2")));
}

#[test]
fn unexpected_command_argument() {
    let mut r = reactor();
    let actions = feed(
        &mut r,
        vec![ffs("1 1 stream-begin command-argument 0 ignored")],
    );
    assert_eq!(
        error(actions.into_iter().next().unwrap()),
        "expected command frame; got 2"
    );
    // Frames are refused once errored.
    let a = r.on_frame(ffs("1 1 0 command-name eos mycommand"));
    assert_eq!(error(a), "server already errored");
}

#[test]
fn unexpected_command_argument_while_receiving() {
    let mut r = reactor();
    let mut actions = feed(
        &mut r,
        vec![
            ffs("1 1 stream-begin command-name have-data command"),
            ffs("1 1 0 command-argument eoa ignored"),
        ],
    );
    assert_eq!(
        error(actions.remove(1)),
        "received command argument frame for request that is not expecting arguments: 1"
    );
}

#[test]
fn unexpected_command_data() {
    let mut r = reactor();
    let a = r.on_frame(ffs("1 1 stream-begin command-data 0 ignored"));
    assert_eq!(error(a), "expected command frame; got 3");
}

#[test]
fn unexpected_command_data_while_receiving() {
    let mut r = reactor();
    let mut actions = feed(
        &mut r,
        vec![
            ffs("1 1 stream-begin command-name have-args command"),
            ffs("1 1 0 command-data eos ignored"),
        ],
    );
    assert_eq!(
        error(actions.remove(1)),
        "received command data frame for request that is not expecting data: 1"
    );
}

#[test]
fn missing_command_frame_flags() {
    let mut r = reactor();
    let a = r.on_frame(ffs("1 1 stream-begin command-name 0 command"));
    assert_eq!(error(a), "missing frame flags on command frame");
}

#[test]
fn conflicting_request_id_while_receiving() {
    let mut r = reactor();
    let mut actions = feed(
        &mut r,
        vec![
            ffs("1 1 stream-begin command-name have-args command"),
            ffs("1 1 0 command-name eos command"),
        ],
    );
    assert_eq!(
        error(actions.remove(1)),
        "request with ID 1 already received"
    );
}

#[test]
fn interleaved_commands() {
    let mut r = reactor();
    let mut actions = feed(
        &mut r,
        vec![
            ffs("1 1 stream-begin command-name have-args command1"),
            ffs("3 1 0 command-name have-args command3"),
            ffs(r"1 1 0 command-argument 0 \x03\x00\x03\x00foobar"),
            ffs(r"3 1 0 command-argument 0 \x03\x00\x03\x00bizbaz"),
            ffs(r"3 1 0 command-argument eoa \x03\x00\x03\x00keyval"),
            ffs(r"1 1 0 command-argument eoa \x04\x00\x03\x00key1val"),
        ],
    );
    assert_eq!(
        kinds(&actions),
        [
            "wantframe",
            "wantframe",
            "wantframe",
            "wantframe",
            "runcommand",
            "runcommand"
        ]
    );
    let one = run(actions.remove(5));
    let three = run(actions.remove(4));
    assert_eq!(three.request_id, RequestId(3));
    assert_eq!(&three.name[..], b"command3");
    assert_eq!(
        args_of(&three),
        [
            ("biz".to_string(), b"baz".to_vec()),
            ("key".to_string(), b"val".to_vec())
        ]
        .into()
    );
    assert_eq!(one.request_id, RequestId(1));
    assert_eq!(
        args_of(&one),
        [
            ("foo".to_string(), b"bar".to_vec()),
            ("key1".to_string(), b"val".to_vec())
        ]
        .into()
    );
}

#[test]
fn incomplete_argument_name() {
    let mut r = reactor();
    let mut actions = feed(
        &mut r,
        vec![
            ffs("1 1 stream-begin command-name have-args command1"),
            ffs(r"1 1 0 command-argument eoa \x04\x00\xde\xadfoo"),
        ],
    );
    assert_eq!(
        error(actions.remove(1)),
        "malformed argument frame: partial argument name"
    );
}

#[test]
fn incomplete_argument_value() {
    let mut r = reactor();
    let mut actions = feed(
        &mut r,
        vec![
            ffs("1 1 stream-begin command-name have-args command"),
            ffs(r"1 1 0 command-argument eoa \x03\x00\xaa\xaafoopartialvalue"),
        ],
    );
    assert_eq!(
        error(actions.remove(1)),
        "malformed argument frame: partial argument value"
    );
}

#[test]
fn missing_argument_frame_is_an_error_at_end_of_input() {
    // The seed could not act on this; the command is partial at end of input.
    let mut r = reactor();
    let a = r.on_frame(ffs("1 1 stream-begin command-name have-args command"));
    assert_eq!(kind(&a), "wantframe");
    assert_eq!(
        error(r.on_input_eof()),
        "end of input with partial command request 1: its frames stopped before the end of its arguments or data"
    );
}

#[test]
fn missing_command_data_frame() {
    let mut r = reactor();
    let actions = feed(
        &mut r,
        vec![
            ffs("1 1 stream-begin command-name have-data command1"),
            ffs("3 1 0 command-name eos command2"),
        ],
    );
    assert_eq!(kinds(&actions), ["wantframe", "runcommand"]);
    let e = error(r.on_input_eof());
    assert!(e.contains("partial command request 1"), "{e}");
}

#[test]
fn missing_command_data_frame_flags() {
    let mut r = reactor();
    let mut actions = feed(
        &mut r,
        vec![
            ffs("1 1 stream-begin command-name have-data command1"),
            ffs("1 1 0 command-data 0 data"),
        ],
    );
    assert_eq!(error(actions.remove(1)), "command data frame without flags");
}

#[test]
fn frame_for_non_receiving_request() {
    let mut r = reactor();
    let mut actions = feed(
        &mut r,
        vec![
            ffs("1 1 stream-begin command-name eos command1"),
            ffs("3 1 0 command-name have-data command3"),
            ffs("5 1 0 command-argument eoa ignored"),
        ],
    );
    assert_eq!(
        error(actions.remove(2)),
        "received frame for request that is not receiving: 5"
    );
}

#[test]
fn simple_response() {
    let mut r = reactor();
    let mut s = ClientStream::new();
    let _ = feed(&mut r, s.command(1, "mycommand", &[], None));
    let a = r
        .on_response_data(RequestId(1), Bytes::from_static(b"response"), true)
        .unwrap();
    assert_eq!(kind(&a), "sendframes");
    assert_eq!(
        drain(&mut r),
        ["1 2 stream-begin bytes-response eos response"]
    );
}

#[test]
fn multi_frame_response() {
    let mut r = reactor();
    let mut s = ClientStream::new();
    let _ = feed(&mut r, s.command(1, "mycommand", &[], None));
    let first = "x".repeat(32768);
    let second = "y".repeat(100);
    let data = Bytes::from(format!("{first}{second}"));
    let _ = r.on_response_data(RequestId(1), data, true).unwrap();
    assert_eq!(
        drain(&mut r),
        [
            format!("1 2 stream-begin bytes-response continuation {first}"),
            format!("1 2 0 bytes-response eos {second}"),
        ]
    );
}

#[test]
fn application_error() {
    let mut r = reactor();
    let mut s = ClientStream::new();
    let _ = feed(&mut r, s.command(1, "mycommand", &[], None));
    let a = r
        .on_application_error(RequestId(1), "some message")
        .unwrap();
    assert_eq!(kind(&a), "sendframes");
    assert_eq!(
        drain(&mut r),
        ["1 2 stream-begin error-response application some message"]
    );
}

#[test]
fn one_command_deferred_response() {
    let mut r = deferred();
    let mut s = ClientStream::new();
    let actions = feed(&mut r, s.command(1, "mycommand", &[], None));
    assert_eq!(kinds(&actions), ["runcommand"]);
    let a = r
        .on_response_data(RequestId(1), Bytes::from_static(b"response"), true)
        .unwrap();
    assert_eq!(kind(&a), "noop");
    assert!(!r.has_pending_output());
    assert!(drain(&mut r).is_empty());
    assert_eq!(kind(&r.on_input_eof()), "sendframes");
    // The server is done with its stream: its last frame ends it.
    assert_eq!(
        drain(&mut r),
        ["1 2 stream-begin|stream-end bytes-response eos response"]
    );
    assert!(r.is_finished());
}

#[test]
fn several_commands_deferred_response() {
    let mut r = deferred();
    let mut s = ClientStream::new();
    let _ = feed(&mut r, s.command(1, "command1", &[], None));
    let _ = feed(&mut r, s.command(3, "command2", &[], None));
    let a = r
        .on_response_data(RequestId(1), Bytes::from_static(b"response1"), true)
        .unwrap();
    assert_eq!(kind(&a), "noop");
    let a = r
        .on_response_data(RequestId(3), Bytes::from_static(b"response2"), true)
        .unwrap();
    assert_eq!(kind(&a), "noop");
    assert_eq!(kind(&r.on_input_eof()), "sendframes");
    assert_eq!(
        drain(&mut r),
        [
            "1 2 stream-begin bytes-response eos response1",
            "3 2 stream-end bytes-response eos response2"
        ]
    );
}

#[test]
fn request_id_tracking_out_of_order() {
    let mut r = deferred();
    let mut s = ClientStream::new();
    for (id, name) in [(1, "command1"), (3, "command2"), (5, "command3")] {
        let _ = feed(&mut r, s.command(id, name, &[], None));
    }
    for id in [3u16, 1, 5] {
        let _ = r
            .on_response_data(RequestId(id), Bytes::from(format!("response{id}")), true)
            .unwrap();
    }
    assert_eq!(kind(&r.on_input_eof()), "sendframes");
    assert_eq!(
        drain(&mut r),
        [
            "3 2 stream-begin bytes-response eos response3",
            "1 2 0 bytes-response eos response1",
            "5 2 stream-end bytes-response eos response5"
        ]
    );
}

#[test]
fn duplicate_request_on_active_command() {
    let mut r = reactor();
    let mut s = ClientStream::new();
    let _ = feed(&mut r, s.command(1, "command1", &[], None));
    let mut actions = feed(&mut r, s.command(1, "command1", &[], None));
    assert_eq!(
        error(actions.remove(0)),
        "request with ID 1 is already active"
    );
}

#[test]
fn duplicate_request_on_active_command_before_its_response_is_sent() {
    let mut r = reactor();
    let mut s = ClientStream::new();
    let _ = feed(&mut r, s.command(1, "command1", &[], None));
    let _ = r
        .on_response_data(RequestId(1), Bytes::from_static(b"response"), true)
        .unwrap();
    // The response is registered but not transmitted: the request is still active.
    let mut actions = feed(&mut r, s.command(1, "command1", &[], None));
    assert_eq!(
        error(actions.remove(0)),
        "request with ID 1 is already active"
    );
}

#[test]
fn duplicate_request_after_send() {
    let mut r = reactor();
    let mut s = ClientStream::new();
    for _ in 0..3 {
        let mut actions = feed(&mut r, s.command(1, "command1", &[], None));
        assert_eq!(run(actions.remove(0)).request_id, RequestId(1));
        let _ = r
            .on_response_data(RequestId(1), Bytes::from_static(b"response"), true)
            .unwrap();
        assert_eq!(drain(&mut r).len(), 1);
    }
}

#[test]
fn errors_after_an_error() {
    let mut r = reactor();
    let mut actions = feed(
        &mut r,
        vec![
            ffs("1 2 stream-begin command-name eos command"),
            ffs("1 1 stream-begin command-name eos command"),
            ffs("3 1 0 command-name eos command"),
        ],
    );
    assert_eq!(
        error(actions.remove(0)),
        "received frame with even numbered stream ID: 2"
    );
    for a in actions {
        assert_eq!(error(a), "server already errored");
    }
    // The client is told once, with a protocol error-response.
    assert_eq!(
        drain(&mut r),
        ["1 2 stream-begin error-response protocol received frame with even numbered stream ID: 2"]
    );
    assert_eq!(kind(&r.on_input_eof()), "noop");
    assert!(r.is_finished());
}

#[test]
fn unknown_stream_without_begin() {
    let mut r = reactor();
    let a = r.on_frame(ffs("1 1 0 command-name eos command"));
    assert_eq!(
        error(a),
        "received frame on unknown inactive stream without beginning of stream flag set"
    );
}
