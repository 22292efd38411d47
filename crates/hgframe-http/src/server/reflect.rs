//! `debugreflect`: reads the request's frames, feeds them to a fresh reactor, and answers
//! (in `text/plain`) with what it received and what the reactor decided, one line each.
//! No command runs. Off unless [`crate::ServerConfig::set_debugreflect`] enables it.
//!
//! ```text
//! received: 1 1 stream-begin command-name eos echo
//! action: runcommand request=1 command=echo args={} data=none
//! received: <no frame>
//! action: noop
//! ```
//!
//! The report is buffered, so both what is read and what is written stop at
//! [`crate::ServerConfig::reflect_limit`] bytes (the last line then says so).

use std::fmt::Write as _;

use futures_util::{Stream, StreamExt};
use hgframe_reactor::{ServerAction, ServerReactor};
use hgframe_wire::codec::CodecError;
use hgframe_wire::human::escape;
use hgframe_wire::Frame;

/// Runs the reflection and returns the report.
pub(crate) async fn reflect<I>(mut input: I, reactor: ServerReactor, limit: usize) -> String
where
    I: Stream<Item = Result<Frame, CodecError>> + Unpin,
{
    let mut reactor = reactor;
    let mut report = String::new();
    loop {
        if report.len() > limit {
            report.push_str("... (report limit reached; the rest was not read)\n");
            return report;
        }
        match input.next().await {
            Some(Ok(frame)) => {
                let _ = writeln!(report, "received: {}", frame.to_human());
                let action = reactor.on_frame(frame);
                let _ = writeln!(report, "action: {}", describe(&action));
            }
            Some(Err(e)) => {
                let _ = writeln!(report, "received: <malformed input: {e}>");
                break;
            }
            None => {
                report.push_str("received: <no frame>\n");
                break;
            }
        }
    }
    let action = reactor.on_input_eof();
    let _ = writeln!(report, "action: {}", describe(&action));
    report
}

/// One line for an action.
fn describe(action: &ServerAction) -> String {
    match action {
        ServerAction::RunCommand(cmd) => {
            let args: Vec<String> = cmd
                .args
                .iter()
                .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
                .collect();
            let data = match (&cmd.data, cmd.data_follows) {
                (Some(d), _) => format!("{} bytes", d.len()),
                (None, true) => "follows".to_owned(),
                (None, false) => "none".to_owned(),
            };
            format!(
                "runcommand request={} command={} args={{{}}} data={data}",
                cmd.request_id,
                escape(&cmd.name),
                args.join(", ")
            )
        }
        ServerAction::CommandData {
            request_id,
            data,
            eos,
        } => format!(
            "commanddata request={request_id} bytes={} eos={eos}",
            data.len()
        ),
        ServerAction::SendFrames => "sendframes".to_owned(),
        ServerAction::WantFrame => "wantframe".to_owned(),
        ServerAction::Error(e) => format!("error: {e}"),
        ServerAction::Cancelled(r) => format!("cancelled request {r}"),
        ServerAction::Noop => "noop".to_owned(),
    }
}
