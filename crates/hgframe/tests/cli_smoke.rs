//! A smoke check of the stable command line (docs/cli.md) with known byte vectors: the
//! worked example of docs/protocol.md, escapes and flag names, integers for every field,
//! the exact JSON keys, a decode/encode round trip, a truncated input, the reactor's
//! view of a command, and pack/unpack on both encodings. Each run goes through the
//! built binary, as a script would.

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Runs `hgframe` with `args`, feeding `stdin`.
fn hgframe(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hgframe"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // Written beside the reading of stdout: a command that writes as it reads would
    // otherwise fill its stdout pipe while we still write. A process that fails early
    // may not read all of its input: broken pipes are ignored.
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    output
}

/// The stdout of a run that must succeed.
fn ok(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let out = hgframe(args, stdin);
    assert!(
        out.status.success(),
        "{args:?}: exit {:?}, stderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn encode_hex(lines: &[&str]) -> String {
    let mut args = vec!["frames", "encode"];
    args.extend_from_slice(lines);
    hex(&ok(&args, b""))
}

#[test]
fn encode_known_vectors() {
    // The worked example of docs/protocol.md.
    assert_eq!(
        encode_hex(&["1 1 stream-begin command-name eos customreadonly"]),
        "0e00000100010111637573746f6d726561646f6e6c79"
    );
    // Escapes in the payload, a flag by name.
    assert_eq!(
        encode_hex(&[r"1 1 0 command-argument eoa \x04\x00\x09\x00key3key3value"]),
        "1100000100010022040009006b6579336b65793376616c7565"
    );
    // Integers for every field, several lines on stdin.
    assert_eq!(
        hex(&ok(&["frames", "encode"], b"3 2 3 4 2 hi\n5 4 0 5 2 bad\n")),
        "020000030002034268690300000500040052626164"
    );
}

#[test]
fn decode_json_has_exactly_the_keys_and_lowercase_hex() {
    let bin = ok(
        &["frames", "encode", "1 1 stream-begin command-name eos abc"],
        b"",
    );
    let out = ok(&["frames", "decode", "--json"], &bin);
    let line = String::from_utf8(out).unwrap();
    let value: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
    assert_eq!(
        value,
        serde_json::json!({"request_id": 1, "stream_id": 1, "stream_flags": 1,
                           "type": 1, "flags": 1, "payload": "616263"})
    );
}

#[test]
fn decode_then_encode_gives_the_same_bytes() {
    let line = r"7 9 stream-begin|encoded bytes-response continuation \x00\xff\\ \n";
    let bin = ok(&["frames", "encode", line], b"");
    let text = ok(&["frames", "decode"], &bin);
    assert_eq!(ok(&["frames", "encode"], &text), bin);
}

#[test]
fn truncated_input_is_exit_1_without_a_panic() {
    let bin = ok(&["frames", "encode", "1 1 0 command-name eos abcdef"], b"");
    assert_eq!(bin.len(), 14);
    let out = hgframe(&["frames", "decode"], &bin[..10]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.is_empty() && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
fn debug_reactor_runs_a_command_with_one_argument() {
    let bin = ok(
        &[
            "frames",
            "encode",
            "1 1 stream-begin command-name have-args mycommand",
            r"1 1 0 command-argument eoa \x03\x00\x03\x00foobar",
        ],
        b"",
    );
    let out = String::from_utf8(ok(&["debug", "reactor", "--json"], &bin)).unwrap();
    let actions: Vec<serde_json::Value> = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let run = actions
        .iter()
        .find(|a| a["action"] == "runcommand")
        .unwrap_or_else(|| panic!("no runcommand in {out}"));
    assert_eq!(run["command"], "mycommand");
    assert_eq!(run["args"], serde_json::json!({"foo": "626172"}));
    assert_eq!(run["data"], serde_json::Value::Null);
}

#[test]
fn pack_then_unpack_gives_the_input_back() {
    // 300000 bytes that do not compress, then text that does.
    let mut seed = 0x9e37_79b9u32;
    let mut input: Vec<u8> = (0..300_000)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed as u8
        })
        .collect();
    for i in 1..=100_000 {
        input.extend_from_slice(format!("{i}\n").as_bytes());
    }
    for encoding in ["identity", "zstd-8mb"] {
        let packed = ok(
            &["frames", "pack", "--encoding", encoding, "--streams", "2"],
            &input,
        );
        let unpacked = ok(&["frames", "unpack"], &packed);
        assert!(unpacked == input, "{encoding}: unpack(pack(x)) != x");
    }
}
