//! `hgframe call URL --batch FILE|- [--concurrency N] [--stats]` end to end, as
//! docs/cli.md describes it, against the real `hgframe serve` on every transport.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_hgframe");

/// A running `hgframe serve --tcp`, killed when dropped.
struct Served {
    child: Child,
    http: String,
    tcp: String,
    root: tempfile::TempDir,
}

impl Served {
    fn start() -> Self {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("a.txt"), b"alpha\n").unwrap();
        let mut child = Command::new(BIN)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--tcp",
                "127.0.0.1:0",
                "--root",
            ])
            .arg(root.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let http = lines.next().unwrap().unwrap();
        let tcp = lines.next().unwrap().unwrap();
        Self {
            child,
            http,
            tcp,
            root,
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hgframe(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// The output lines, by index.
fn answers(out: &Output) -> BTreeMap<u64, Value> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            (v["index"].as_u64().unwrap(), v)
        })
        .collect()
}

/// 300 echoes (half with data, some not UTF-8), a `cat`, and a failing `cat`.
fn batch() -> (String, usize) {
    let mut lines = Vec::new();
    for i in 0..300 {
        lines.push(match i % 3 {
            0 => format!(r#"{{"command":"echo","args":{{"i":"{i}"}}}}"#),
            1 => format!(r#"{{"command":"echo","data":"data {i}"}}"#),
            _ => format!(r#"{{"command":"echo","data_hex":"ff{:02x}"}}"#, i % 256),
        });
    }
    lines.push(r#"{"command":"cat","args":{"path":"a.txt"}}"#.to_owned());
    lines.push(r#"{"command":"cat","args":{"path":"nope"}}"#.to_owned());
    let n = lines.len();
    (lines.join("\n") + "\n", n)
}

fn check(out: &Output, n: usize) {
    assert_eq!(out.status.code(), Some(1), "one call failed: exit 1");
    let answers = answers(out);
    assert_eq!(answers.len(), n, "one line per command");
    for (index, answer) in &answers {
        let i = *index as usize;
        if i < 300 {
            assert_eq!(answer["ok"], true, "{answer}");
            match i % 3 {
                0 => assert_eq!(answer["data"], format!("i={i}\n")),
                1 => assert_eq!(answer["data"], format!("data {i}")),
                _ => assert_eq!(answer["data_hex"], format!("ff{:02x}", i % 256)),
            }
        }
    }
    assert_eq!(answers[&300]["data"], "alpha\n");
    assert_eq!(answers[&301]["ok"], false);
    assert!(
        answers[&301]["error"].as_str().unwrap().contains("nope"),
        "{}",
        answers[&301]
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stats: Value = serde_json::from_str(
        stderr
            .lines()
            .find(|l| l.starts_with('{'))
            .expect("--stats prints a JSON object"),
    )
    .unwrap();
    assert_eq!(stats["calls"], n);
    assert_eq!(stats["errors"], 1);
    assert_eq!(stats["encoding"], "zstd-8mb");
    for key in [
        "request_wire_bytes",
        "response_wire_bytes",
        "response_decoded_bytes",
    ] {
        assert!(stats[key].as_u64().unwrap() > 0, "{key}: {stats}");
    }
    assert!(stats["seconds"].as_f64().is_some());
}

#[test]
fn a_batch_runs_over_every_transport_and_reports_each_call() {
    let served = Served::start();
    let (input, n) = batch();
    let root = served.root.path().to_str().unwrap();
    let stdio = format!("stdio:{BIN} serve --stdio --root {root}");
    for (url, extra) in [
        (served.tcp.as_str(), &[][..]),
        (served.http.as_str(), &["--http2"][..]),
        (served.http.as_str(), &[][..]),
        (stdio.as_str(), &[][..]),
    ] {
        let mut args = vec!["call", url, "--batch", "-", "--concurrency", "8", "--stats"];
        args.extend_from_slice(extra);
        check(&hgframe(&args, input.as_bytes()), n);
    }
}

#[test]
fn a_batch_from_a_file_with_put_asks_for_rw() {
    let served = Served::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("batch.jsonl");
    std::fs::write(
        &file,
        "{\"command\":\"put\",\"args\":{\"path\":\"b.txt\"},\"data\":\"bee\"}\n",
    )
    .unwrap();
    let out = hgframe(
        &["call", &served.http, "--batch", file.to_str().unwrap()],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(answers(&out)[&0]["ok"], true);
    assert_eq!(
        std::fs::read(served.root.path().join("b.txt")).unwrap(),
        b"bee"
    );
}

#[test]
fn bad_batch_input_and_usage_are_refused() {
    let served = Served::start();
    // A bad line: exit 1 naming it, nothing sent.
    let out = hgframe(
        &["call", &served.tcp, "--batch", "-"],
        b"{\"command\":\"echo\"}\nnot json\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 2"), "{stderr}");
    // Usage: no concurrency, a command with --batch, --stats without --batch.
    for args in [
        &["call", &served.tcp, "--batch", "-", "--concurrency", "0"][..],
        &["call", &served.tcp, "echo", "--batch", "-"][..],
        &["call", &served.tcp, "echo", "--stats"][..],
    ] {
        let out = hgframe(args, b"");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn call_help_names_the_batch_form() {
    let out = hgframe(&["call", "--help"], b"");
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["--batch", "--concurrency", "--stats", "--prefix"] {
        assert!(help.contains(word), "{word} missing from:\n{help}");
    }
    let out = hgframe(&["--help"], b"");
    assert!(String::from_utf8_lossy(&out.stdout).contains("--batch"));
}

#[test]
fn a_batch_goes_under_the_prefix_given() {
    let served = Served::start();
    let input = b"{\"command\":\"echo\",\"args\":{\"a\":\"1\"}}\n";
    // The default prefix works; another one reaches nothing on this server (404).
    let out = hgframe(
        &[
            "call",
            &served.http,
            "--batch",
            "-",
            "--prefix",
            "/api/exp-http-v2-0001/",
        ],
        input,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(answers(&out)[&0]["data"], "a=1\n");
    let out = hgframe(
        &["call", &served.http, "--batch", "-", "--prefix", "nope"],
        input,
    );
    assert_eq!(out.status.code(), Some(1));
    let answers = answers(&out);
    assert_eq!(answers[&0]["ok"], false);
    assert!(
        answers[&0]["error"].as_str().unwrap().contains("404"),
        "{}",
        answers[&0]
    );
    // Over h2c the session itself is refused: exit 1 with the status, no line.
    let out = hgframe(
        &[
            "call",
            &served.http,
            "--batch",
            "-",
            "--http2",
            "--prefix",
            "nope",
        ],
        input,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("404"), "{stderr}");
}
