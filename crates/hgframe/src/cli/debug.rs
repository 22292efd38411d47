//! `hgframe debug reactor`: feeds frames into a server reactor, as a server receiving
//! them from a client, and prints the action it returns for each frame and for the end
//! of input: the way to see how the server judges any sequence of frames.

use std::io::Write;
use std::path::PathBuf;

use bytes::Bytes;
use hgframe_reactor::{ServerAction, ServerConfig, ServerReactor};
use hgframe_wire::human::escape;
use hgframe_wire::{Frame, Frames};
use serde_json::{json, Map, Value};

use super::frames::json_value;
use super::{hex, read_input, CliResult, Failure};

/// Options of `hgframe debug reactor`.
#[derive(Debug, clap::Args)]
pub(crate) struct ReactorArgs {
    /// Hold all output until end of input, then send it in order (half-duplex
    /// transports).
    #[arg(long)]
    defer_output: bool,
    /// One JSON object per line instead of the readable form.
    #[arg(long)]
    json: bool,
    /// The binary frames (stdin when absent).
    file: Option<PathBuf>,
}

pub(crate) fn reactor(args: ReactorArgs) -> CliResult {
    let input = Bytes::from(read_input(args.file.as_deref())?);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = feed(input, args.defer_output, args.json, &mut out);
    // The actions so far are printed even when the input turns out malformed.
    out.flush()?;
    result
}

/// Decodes `input` (payloads up to 65535 bytes), feeds each frame and then the end of
/// input to a server reactor, and prints one line per action.
fn feed(input: Bytes, defer_output: bool, json: bool, out: &mut impl Write) -> CliResult {
    let mut config = ServerConfig::default();
    config.set_defer_output(defer_output);
    let mut reactor = ServerReactor::new(config);
    for frame in Frames::new(input) {
        let frame = frame.map_err(Failure::bad)?;
        let action = reactor.on_frame(frame);
        print_action(out, &mut reactor, action, json)?;
    }
    let action = reactor.on_input_eof();
    print_action(out, &mut reactor, action, json)?;
    Ok(())
}

fn print_action(
    out: &mut impl Write,
    reactor: &mut ServerReactor,
    action: ServerAction,
    json: bool,
) -> std::io::Result<()> {
    let line = if json {
        action_json(reactor, action).to_string()
    } else {
        action_text(reactor, action)
    };
    writeln!(out, "{line}")
}

/// Frames the action released (for `sendframes`).
fn drain(reactor: &mut ServerReactor) -> Vec<Frame> {
    std::iter::from_fn(|| reactor.poll_frame()).collect()
}

fn action_json(reactor: &mut ServerReactor, action: ServerAction) -> Value {
    match action {
        ServerAction::RunCommand(cmd) => {
            let args: Map<String, Value> = cmd
                .args
                .iter()
                .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), json!(hex(v))))
                .collect();
            json!({
                "action": "runcommand",
                "request_id": cmd.request_id.0,
                "command": String::from_utf8_lossy(&cmd.name),
                "args": args,
                "data": cmd.data.as_deref().map(hex),
            })
        }
        ServerAction::CommandData {
            request_id,
            data,
            eos,
        } => json!({
            "action": "commanddata",
            "request_id": request_id.0,
            "data": hex(&data),
            "eos": eos,
        }),
        ServerAction::SendFrames => {
            let frames: Vec<Value> = drain(reactor).iter().map(json_value).collect();
            json!({"action": "sendframes", "frames": frames})
        }
        ServerAction::WantFrame => json!({"action": "wantframe"}),
        ServerAction::Error(e) => json!({"action": "error", "message": e.to_string()}),
        // Only with the cancel extension, which `debug reactor` never negotiates.
        ServerAction::Cancelled(r) => json!({"action": "cancelled", "request": r.0}),
        ServerAction::Noop => json!({"action": "noop"}),
    }
}

fn action_text(reactor: &mut ServerReactor, action: ServerAction) -> String {
    match action {
        ServerAction::RunCommand(cmd) => {
            let args: Vec<String> = cmd
                .args
                .iter()
                .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
                .collect();
            let data = cmd.data.as_deref().map_or_else(|| "-".to_string(), escape);
            format!(
                "runcommand request={} command={} args=[{}] data={}",
                cmd.request_id,
                escape(&cmd.name),
                args.join(", "),
                data
            )
        }
        ServerAction::CommandData {
            request_id,
            data,
            eos,
        } => format!(
            "commanddata request={request_id} eos={eos} data={}",
            escape(&data)
        ),
        ServerAction::SendFrames => {
            let frames: Vec<String> = drain(reactor).iter().map(Frame::to_human).collect();
            format!("sendframes [{}]", frames.join("] ["))
        }
        ServerAction::WantFrame => "wantframe".to_string(),
        ServerAction::Error(e) => format!("error: {e}"),
        ServerAction::Cancelled(r) => format!("cancelled request={r}"),
        ServerAction::Noop => "noop".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lines: &[&str], defer: bool, json: bool) -> (Vec<String>, CliResult) {
        let mut input = bytes::BytesMut::new();
        for l in lines {
            Frame::from_human(l).unwrap().encode(&mut input);
        }
        let mut out = Vec::new();
        let result = feed(input.freeze(), defer, json, &mut out);
        let text = String::from_utf8(out).unwrap();
        (text.lines().map(str::to_string).collect(), result)
    }

    #[test]
    fn one_line_per_frame_and_one_for_the_end() {
        let (lines, result) = run(
            &[
                "1 1 stream-begin command-name have-args mycommand",
                r"1 1 0 command-argument eoa \x03\x00\x03\x00foobar",
            ],
            false,
            true,
        );
        assert!(result.is_ok());
        let values: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(values.len(), 3);
        assert_eq!(values[0], json!({"action": "wantframe"}));
        assert_eq!(
            values[1],
            json!({"action": "runcommand", "request_id": 1, "command": "mycommand",
                   "args": {"foo": "626172"}, "data": null})
        );
        assert_eq!(values[2], json!({"action": "noop"}));
    }

    #[test]
    fn errors_then_the_error_frame_at_the_end() {
        let (lines, _) = run(
            &[
                "1 1 stream-begin command-argument 0 x",
                "1 1 0 command-name eos x",
            ],
            true,
            true,
        );
        let values: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            values[0],
            json!({"action": "error", "message": "expected command frame; got 2"})
        );
        assert_eq!(
            values[1],
            json!({"action": "error", "message": "server already errored"})
        );
        assert_eq!(values[2]["action"], "sendframes");
        assert_eq!(values[2]["frames"][0]["type"], 5);
        assert_eq!(values[2]["frames"][0]["flags"], 1);
    }

    #[test]
    fn readable_form() {
        let (lines, _) = run(
            &[
                "1 1 stream-begin command-name have-data put",
                "1 1 0 command-data eos hi\x00",
            ],
            false,
            false,
        );
        assert_eq!(
            lines,
            [
                "wantframe",
                r"runcommand request=1 command=put args=[] data=hi\x00",
                "noop"
            ]
        );
    }

    #[test]
    fn truncated_input_prints_what_came_before() {
        let mut input = bytes::BytesMut::new();
        Frame::from_human("1 1 stream-begin command-name eos x")
            .unwrap()
            .encode(&mut input);
        input.extend_from_slice(&[5, 0, 0]);
        let mut out = Vec::new();
        let result = feed(input.freeze(), false, false, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "runcommand request=1 command=x args=[] data=-\n"
        );
        assert!(matches!(result, Err(Failure::Bad(m)) if m.contains("truncated")));
    }
}
