//! `hgframe frames encode` and `hgframe frames decode`: between the human-readable frame
//! syntax and binary frames.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use clap::builder::TypedValueParser as _;
use hgframe_wire::{Frame, FrameDecoder, Frames, DEFAULT_MAX_PAYLOAD_LEN, MAX_PAYLOAD_LEN};

use super::{hex, read_input, CliResult, Failure};

/// Options of `frames encode`.
#[derive(Debug, clap::Args)]
pub(crate) struct EncodeArgs {
    /// Frames in the human-readable syntax; with none, each non-empty line of stdin.
    lines: Vec<String>,
}

/// Options of `frames decode`.
#[derive(Debug, clap::Args)]
pub(crate) struct DecodeArgs {
    /// File of binary frames (stdin when absent).
    file: Option<PathBuf>,
    /// One JSON object per frame instead of the human-readable syntax.
    #[arg(long)]
    json: bool,
    /// Largest payload length accepted.
    #[arg(long, default_value_t = DEFAULT_MAX_PAYLOAD_LEN,
          value_parser = clap::value_parser!(u32).range(0..=MAX_PAYLOAD_LEN as i64).map(|v| v as usize))]
    max_frame_size: usize,
}

pub(crate) fn encode(args: EncodeArgs) -> CliResult {
    let mut out = BytesMut::new();
    let parse = |n: usize, line: &str, out: &mut BytesMut| -> CliResult {
        let frame = Frame::from_human(line).map_err(|e| Failure::bad(format!("line {n}: {e}")))?;
        frame.encode(out);
        Ok(())
    };
    // One trailing CR is a line ending, from stdin or an argument alike; lines are UTF-8
    // (other bytes are written \xNN). See docs/protocol-decisions.md.
    let strip_cr = |line: &str| line.strip_suffix('\r').unwrap_or(line).to_string();
    if args.lines.is_empty() {
        for (i, line) in std::io::stdin().lock().split(b'\n').enumerate() {
            let n = i + 1;
            let line = line.map_err(|e| Failure::bad(format!("line {n}: {e}")))?;
            let line = String::from_utf8(line).map_err(|_| {
                Failure::bad(format!(
                    "line {n}: not UTF-8 (write bytes that are not text as \\xNN)"
                ))
            })?;
            let line = strip_cr(&line);
            if !line.is_empty() {
                parse(n, &line, &mut out)?;
            }
        }
    } else {
        for (i, line) in args.lines.iter().enumerate() {
            parse(i + 1, &strip_cr(line), &mut out)?;
        }
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&out)?;
    stdout.flush()?;
    Ok(())
}

pub(crate) fn decode(args: DecodeArgs) -> CliResult {
    let input = Bytes::from(read_input(args.file.as_deref())?);
    let decoder = FrameDecoder::with_max_payload_len(args.max_frame_size);
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    for frame in Frames::with_decoder(input, decoder) {
        let frame = frame.map_err(Failure::bad)?;
        let line = if args.json {
            json_line(&frame)
        } else {
            frame.to_human()
        };
        writeln!(stdout, "{line}")?;
    }
    stdout.flush()?;
    Ok(())
}

/// A frame as the JSON object of docs/cli.md (also used by `debug reactor --json`).
pub(crate) fn json_value(frame: &Frame) -> serde_json::Value {
    serde_json::json!({
        "request_id": frame.request_id().0,
        "stream_id": frame.stream_id().0,
        "stream_flags": frame.stream_flags().bits(),
        "type": frame.frame_type(),
        "flags": frame.flags(),
        "payload": hex(frame.payload()),
    })
}

fn json_line(frame: &Frame) -> String {
    json_value(frame).to_string()
}
