//! `hgframe frames encode` / `decode` through the real binary, as docs/cli.md specifies them.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn hgframe(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hgframe"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // Written beside the reading of stdout (a command that writes as it reads would fill
    // its stdout pipe while we still write). A process that fails early (bad usage) may
    // not read its input: broken pipes are ignored.
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    output
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn encode_arguments_and_stdin_agree() {
    let a = hgframe(
        &[
            "frames",
            "encode",
            "1 1 stream-begin command-name have-args c",
            "1 1 0 command-argument eoa \\x01\\x00\\x01\\x00kv",
        ],
        b"",
    );
    let b = hgframe(
        &["frames", "encode"],
        b"1 1 stream-begin command-name have-args c\n\n1 1 0 command-argument eoa \\x01\\x00\\x01\\x00kv\r\n",
    );
    assert!(a.status.success(), "{}", stderr(&a));
    assert_eq!(a.stdout, b.stdout);
    assert_eq!(&a.stdout[..8], &[1, 0, 0, 1, 0, 1, 1, 0x12]);
}

#[test]
fn encode_bad_line_is_exit_1_naming_the_line() {
    let o = hgframe(
        &["frames", "encode"],
        b"1 1 0 command-name eos x\n1 1 0 bogus-type 0 x\n",
    );
    assert_eq!(o.status.code(), Some(1));
    let msg = stderr(&o);
    assert!(msg.contains("line 2"), "{msg}");
    assert!(msg.contains("type"), "{msg}");
    assert!(!msg.contains("panicked"));
}

#[test]
fn decode_prints_lines_that_encode_back() {
    let lines = "1 1 stream-begin command-name have-args|have-data cmd\n\
                 1 1 0 command-argument eoa \\x01\\x00\\x02\\x00k\\x00\\xff\n\
                 1 1 0 command-data eos a b\\\\c\\n\n\
                 2 2 stream-begin|encoded 9 15 \\x01\n\
                 3 4 64 bytes-response continuation|8\n";
    let bin = hgframe(&["frames", "encode"], lines.as_bytes());
    let text = hgframe(&["frames", "decode"], &bin.stdout);
    assert!(text.status.success(), "{}", stderr(&text));
    assert_eq!(String::from_utf8(text.stdout.clone()).unwrap(), lines);
    let again = hgframe(&["frames", "encode"], &text.stdout);
    assert_eq!(again.stdout, bin.stdout);
}

#[test]
fn decode_json_has_exactly_the_keys() {
    let bin = hgframe(
        &["frames", "encode", "513 7 stream-end text-output 0 \\x00A"],
        b"",
    );
    let o = hgframe(&["frames", "decode", "--json"], &bin.stdout);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"request_id":513,"stream_id":7,"stream_flags":2,"type":6,"flags":0,"payload":"0041"})
    );
}

#[test]
fn decode_reads_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("frames.bin");
    let bin = hgframe(&["frames", "encode", "1 1 0 command-name eos x"], b"");
    std::fs::write(&path, &bin.stdout).unwrap();
    let o = hgframe(&["frames", "decode", path.to_str().unwrap()], b"");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "1 1 0 command-name eos x\n"
    );
    let missing = hgframe(
        &[
            "frames",
            "decode",
            dir.path().join("nope").to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(missing.status.code(), Some(1));
}

#[test]
fn truncated_input_prints_frames_before_the_fault() {
    let bin = hgframe(
        &[
            "frames",
            "encode",
            "1 1 0 command-name eos first",
            "3 1 0 command-name eos second",
        ],
        b"",
    );
    let cut = &bin.stdout[..bin.stdout.len() - 2];
    let o = hgframe(&["frames", "decode"], cut);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "1 1 0 command-name eos first\n"
    );
    let msg = stderr(&o);
    assert!(
        msg.contains("frame 1") && msg.contains("offset 13"),
        "{msg}"
    );
}

#[test]
fn max_frame_size_is_enforced_and_raisable() {
    // A 70000-byte payload: over the default 65535.
    let mut bin = vec![0x70, 0x11, 0x01, 1, 0, 2, 0, 0x42];
    bin.extend(std::iter::repeat(b'z').take(70000));
    let o = hgframe(&["frames", "decode", "--json"], &bin);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("exceeds the limit of 65535"),
        "{}",
        stderr(&o)
    );
    let o = hgframe(
        &["frames", "decode", "--json", "--max-frame-size", "70000"],
        &bin,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = hgframe(&["frames", "decode", "--max-frame-size", "16777216"], &bin);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn garbage_never_panics() {
    let mut seed = 0x1234_5678u32;
    for len in [1usize, 7, 8, 9, 100, 4096] {
        let garbage: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                seed as u8
            })
            .collect();
        for args in [
            &["frames", "decode"][..],
            &["frames", "decode", "--json"][..],
            &["frames", "encode"][..],
        ] {
            let o = hgframe(args, &garbage);
            assert!(
                matches!(o.status.code(), Some(0 | 1)),
                "{args:?}: {:?}",
                o.status
            );
            assert!(!stderr(&o).contains("panicked"));
        }
    }
}

#[test]
fn bad_usage_is_exit_2() {
    assert_eq!(hgframe(&["frames", "nope"], b"").status.code(), Some(2));
    assert_eq!(
        hgframe(&["frames", "decode", "--bogus"], b"").status.code(),
        Some(2)
    );
}

#[test]
fn a_trailing_cr_is_a_line_ending_in_arguments_as_on_stdin() {
    // docs/protocol-decisions.md: one literal trailing CR is a line ending wherever the
    // line comes from; a payload CR is written \r.
    let arg = hgframe(&["frames", "encode", "1 1 0 command-name eos ab\r"], b"");
    let stdin = hgframe(&["frames", "encode"], b"1 1 0 command-name eos ab\r\n");
    assert!(arg.status.success(), "{}", stderr(&arg));
    assert_eq!(arg.stdout, stdin.stdout);
    assert_eq!(&arg.stdout[8..], b"ab");
    let escaped = hgframe(&["frames", "encode", "1 1 0 command-name eos ab\\r"], b"");
    assert_eq!(&escaped.stdout[8..], b"ab\r");
}

#[test]
fn a_line_that_is_not_utf8_is_refused_naming_the_line_and_the_remedy() {
    let o = hgframe(
        &["frames", "encode"],
        b"1 1 0 command-name eos a\n1 1 0 command-name eos \xff\n",
    );
    assert_eq!(o.status.code(), Some(1));
    let msg = stderr(&o);
    assert!(msg.contains("line 2: not UTF-8"), "{msg}");
    assert!(msg.contains("\\xNN"), "{msg}");
    assert!(o.stdout.is_empty());
}
