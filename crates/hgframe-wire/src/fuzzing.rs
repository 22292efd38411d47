//! Entry points for fuzz targets and robustness tests: arbitrary bytes in, never a
//! panic. Each function checks a property of this crate and returns `Err` with what
//! broke (the fuzz target turns it into a crash), so the library itself never panics.
//! Not a stable API.

use bytes::{Bytes, BytesMut};

use crate::human::{escape, unescape};
use crate::payload::command_argument::{encode_first, ArgumentHead};
use crate::payload::error_response::ErrorResponse;
use crate::payload::progress::Progress;
use crate::payload::stream_settings::StreamSettings;
use crate::payload::text_output;
use crate::{Frame, FrameDecoder, Frames};

/// What a property check found: `Err` names the property that broke.
pub type Check = Result<(), String>;

/// The incremental decoder on `data[1..]`, fed in pieces of `data[0]` bytes (at least
/// one): it must never panic and must yield exactly the frames, and fail exactly where,
/// the whole-buffer iterator does.
pub fn frame_decoder(data: &[u8]) -> Check {
    let Some((&cut, input)) = data.split_first() else {
        return Ok(());
    };
    let cut = usize::from(cut).max(1);
    let mut decoder = FrameDecoder::new();
    let mut buf = BytesMut::new();
    let mut incremental = Vec::new();
    let mut failed = false;
    'feed: for piece in input.chunks(cut) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(f)) => incremental.push(f),
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break 'feed;
                }
            }
        }
    }
    if !failed {
        loop {
            match decoder.decode_eof(&mut buf) {
                Ok(Some(f)) => incremental.push(f),
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
    }
    let mut whole = Vec::new();
    let mut whole_failed = false;
    for frame in Frames::new(Bytes::copy_from_slice(input)) {
        match frame {
            Ok(f) => whole.push(f),
            Err(_) => {
                whole_failed = true;
                break;
            }
        }
    }
    if incremental != whole {
        return Err(format!(
            "incremental decoding gave {} frames, whole-buffer decoding {}",
            incremental.len(),
            whole.len()
        ));
    }
    if failed != whole_failed {
        return Err(format!(
            "incremental decoding failed: {failed}, whole-buffer decoding failed: {whole_failed}"
        ));
    }
    // Every frame decoded re-encodes to the bytes it came from.
    let mut again = BytesMut::new();
    for f in &whole {
        f.encode(&mut again);
    }
    if !input.starts_with(&again) {
        return Err("decoded frames do not re-encode to their input".into());
    }
    Ok(())
}

/// Every payload codec on `data`: errors are fine, panics are not; what decodes
/// re-encodes to the same bytes.
pub fn payloads(data: &[u8]) -> Check {
    let payload = Bytes::copy_from_slice(data);

    // command-argument: the head's parts add up to the payload, and a whole argument
    // re-encodes to it.
    if let Ok(head) = ArgumentHead::parse(&payload) {
        let parts = 4 + head.name.len() + head.value_part.len();
        if parts != payload.len() || head.value_part.len() > head.value_len {
            return Err(format!(
                "argument head {head:?} does not add up to its payload"
            ));
        }
        if head.is_complete() {
            let again = encode_first(&head.name, &head.value_part, payload.len())
                .map_err(|e| format!("a parsed argument does not re-encode: {e}"))?;
            if again != (payload.clone(), Bytes::new()) {
                return Err("a parsed argument re-encodes differently".into());
            }
        }
    }

    // progress (extension): what parses re-encodes to the same bytes.
    if let Ok(progress) = Progress::parse(&payload) {
        match progress.encode() {
            Ok(again) if again == payload => {}
            other => return Err(format!("progress re-encodes to {other:?}")),
        }
    }

    // stream-settings.
    if let Ok(settings) = StreamSettings::parse(&payload) {
        match settings.encode() {
            Ok(again) if again == payload => {}
            other => return Err(format!("stream settings re-encode to {other:?}")),
        }
    }

    // text-output.
    if let Ok(atoms) = text_output::decode(&payload) {
        match text_output::encode(&atoms, payload.len()) {
            Ok(again) if again == payload => {}
            other => return Err(format!("text output re-encodes to {other:?}")),
        }
        for atom in &atoms {
            // Rendering may refuse a format (an unknown `%` code), never panic.
            let _ = atom.render();
        }
    }

    // error-response: any flags, any bytes.
    if let Some((&flags, message)) = data.split_first() {
        let error = ErrorResponse::from_frame_parts(flags, Bytes::copy_from_slice(message));
        let lossy = error.message_lossy();
        if std::str::from_utf8(message).is_ok_and(|m| m != lossy) {
            return Err("a UTF-8 error message changed when read".into());
        }
        if error.check_len(message.len()).is_err() {
            return Err("an error message does not fit its own length".into());
        }
    }
    Ok(())
}

/// The human-readable syntax. `data[0]` even: `data[1..]` is text to parse; whatever
/// parses prints back to a line that parses to the same frame. Odd: `data[1..]` is
/// frames in wire format, each of which must survive `from_human(to_human(frame))`.
/// Either way, escaping any bytes and unescaping them gives the bytes back.
pub fn human_syntax(data: &[u8]) -> Check {
    let Some((&mode, rest)) = data.split_first() else {
        return Ok(());
    };
    match unescape(&escape(rest)) {
        Ok(back) if back == rest => {}
        other => return Err(format!("escape does not round-trip: {other:?}")),
    }
    if mode % 2 == 0 {
        let Ok(line) = std::str::from_utf8(rest) else {
            return Ok(());
        };
        if let Ok(frame) = Frame::from_human(line) {
            round_trip(&frame)?;
        }
        return Ok(());
    }
    for frame in Frames::new(Bytes::copy_from_slice(rest)).map_while(Result::ok) {
        round_trip(&frame)?;
    }
    Ok(())
}

fn round_trip(frame: &Frame) -> Check {
    let line = frame.to_human();
    match Frame::from_human(&line) {
        Ok(again) if &again == frame => Ok(()),
        other => Err(format!("{frame:?} printed as {line:?} parses to {other:?}")),
    }
}

/// A short exchange in the human syntax: a command with arguments and data, and its
/// response with text output and an error (the seed's own examples).
const TRAFFIC: [&str; 9] = [
    "1 1 stream-begin command-name have-args|have-data command",
    r"1 1 0 command-argument 0 \x03\x00\x04\x00foobar1",
    r"1 1 0 command-argument eoa \x04\x00\x09\x00key3key3value",
    "1 1 0 command-data continuation data1",
    "1 1 0 command-data eos data2",
    "3 1 0 command-name eos customreadonly",
    r"1 2 stream-begin text-output 0 \x06\x00\x01\x01\x01\x01\x00foo %sly",
    "1 2 0 bytes-response eos response",
    "3 2 stream-end error-response application failed",
];

/// Seed inputs made from valid traffic, for the `frame_decoder`, `payloads` and
/// `human_syntax` targets: `(target, input)`.
pub fn seeds() -> Result<Vec<(&'static str, Vec<u8>)>, String> {
    let mut frames = Vec::new();
    for line in TRAFFIC {
        frames.push(Frame::from_human(line).map_err(|e| format!("{line}: {e}"))?);
    }
    let mut wire = BytesMut::new();
    for f in &frames {
        f.encode(&mut wire);
    }
    let mut seeds = Vec::new();
    for cut in [255u8, 7] {
        let mut input = vec![cut];
        input.extend_from_slice(&wire);
        seeds.push(("frame_decoder", input));
    }
    for f in &frames {
        if matches!(
            f.known_type(),
            Some(crate::FrameType::CommandArgument | crate::FrameType::TextOutput)
        ) {
            seeds.push(("payloads", f.payload().to_vec()));
        }
    }
    let settings = StreamSettings::new("zstd-8mb")
        .encode()
        .map_err(|e| e.to_string())?;
    seeds.push(("payloads", settings.to_vec()));
    seeds.push(("payloads", b"\x01protocol error: bad frame".to_vec()));
    for line in [TRAFFIC[0], TRAFFIC[2], TRAFFIC[6]] {
        let mut input = vec![0];
        input.extend_from_slice(line.as_bytes());
        seeds.push(("human_syntax", input));
    }
    let mut input = vec![1];
    input.extend_from_slice(&wire);
    seeds.push(("human_syntax", input));
    Ok(seeds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_traffic_passes_every_check() {
        let frames = [
            "1 1 stream-begin command-name have-args customreadonly",
            r"1 1 0 command-argument eoa \x04\x00\x05\x00key3value",
            r"1 2 stream-begin stream-settings 0 \x08identity",
            "1 2 0 bytes-response eos response",
        ];
        let mut wire = BytesMut::new();
        for line in frames {
            Frame::from_human(line).unwrap().encode(&mut wire);
        }
        for cut in [1u8, 3, 8, 255] {
            let mut data = vec![cut];
            data.extend_from_slice(&wire);
            frame_decoder(&data).unwrap();
            human_syntax(&data).unwrap();
        }
        for line in frames {
            let mut data = vec![0];
            data.extend_from_slice(line.as_bytes());
            human_syntax(&data).unwrap();
        }
        payloads(b"\x04\x00\x05\x00key3value").unwrap();
        payloads(b"\x08zstd-8mb").unwrap();
        payloads(b"\x06\x00\x01\x01\x01\x01\x00foo %sly").unwrap();
    }

    #[test]
    fn seeds_pass_their_checks() {
        let seeds = seeds().unwrap();
        for target in ["frame_decoder", "payloads", "human_syntax"] {
            assert!(seeds.iter().any(|(t, _)| *t == target), "{target}");
        }
        for (target, input) in seeds {
            match target {
                "frame_decoder" => frame_decoder(&input).unwrap(),
                "payloads" => payloads(&input).unwrap(),
                "human_syntax" => human_syntax(&input).unwrap(),
                other => panic!("unknown target {other}"),
            }
        }
    }

    #[test]
    fn garbage_is_refused_without_a_violation() {
        for data in [
            &b""[..],
            b"\x00",
            b"\x01\xff\xff\xff\x01\x00\x01\x00\x11",
            b"\xff",
        ] {
            frame_decoder(data).unwrap();
            payloads(data).unwrap();
            human_syntax(data).unwrap();
        }
    }
}
