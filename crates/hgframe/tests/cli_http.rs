//! `hgframe serve`, `call` and `demo` end to end, as docs/cli.md describes them, with the real
//! binary on loopback sockets and pipes; and `curl` as a client we did not write.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_hgframe");
const MEDIA_TYPE: &str = "application/mercurial-exp-framing-0002";

/// A running `hgframe serve`, killed when dropped.
struct Served {
    child: Child,
    addr: String,
    tcp: Option<String>,
    root: tempfile::TempDir,
}

impl Served {
    fn start(extra: &[&str]) -> Self {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("a.txt"), b"alpha\n").unwrap();
        std::fs::create_dir(root.path().join("sub")).unwrap();
        std::fs::write(root.path().join("sub/b.txt"), b"beta\n").unwrap();
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--root"])
            .arg(root.path())
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = lines.next().expect("serve printed its address").unwrap();
        let tcp = extra.contains(&"--tcp").then(|| {
            lines
                .next()
                .expect("serve printed its tcp address")
                .unwrap()
        });
        Self {
            child,
            addr,
            tcp,
            root,
        }
    }

    /// Sends SIGTERM and returns the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.child.wait().unwrap()
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

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}, stderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn failed(out: &Output, code: i32) -> String {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8(out.stderr.clone()).unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn serve_and_call_over_http() {
    let served = Served::start(&[]);
    let addr = served.addr.as_str();
    assert!(
        addr.starts_with("127.0.0.1:"),
        "first line is the address: {addr}"
    );
    let url = format!("http://{addr}");
    assert_eq!(
        ok(&hgframe(&["call", &url, "echo", "b=2", "a=1"], b"")),
        "a=1\nb=2\n"
    );
    assert_eq!(
        ok(&hgframe(
            &["call", addr, "echo", "--data", "-"],
            b"raw bytes"
        )),
        "raw bytes"
    );
    assert_eq!(
        ok(&hgframe(&["call", &url, "files"], b"")),
        "a.txt\nsub/b.txt\n"
    );
    assert_eq!(
        ok(&hgframe(&["call", &url, "cat", "path=sub/b.txt"], b"")),
        "beta\n"
    );
    let data = served.root.path().join("data.bin");
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&data, &payload).unwrap();
    ok(&hgframe(
        &[
            "call",
            &url,
            "put",
            "path=copy.bin",
            "--data",
            data.to_str().unwrap(),
        ],
        b"",
    ));
    assert_eq!(
        std::fs::read(served.root.path().join("copy.bin")).unwrap(),
        payload
    );
    let out = hgframe(
        &[
            "call",
            &url,
            "cat",
            "path=copy.bin",
            "--encodings",
            "identity",
        ],
        b"",
    );
    assert_eq!(out.stdout, payload);

    let err = failed(&hgframe(&["call", &url, "cat", "path=../a.txt"], b""), 1);
    assert_eq!(err.trim(), "hgframe: path leaves the root: ../a.txt");
    let err = failed(&hgframe(&["call", &url, "cat", "path=nope"], b""), 1);
    assert_eq!(err.trim(), "hgframe: no such file: nope");
    let err = failed(
        &hgframe(
            &[
                "call",
                &url,
                "put",
                "path=x",
                "--permission",
                "ro",
                "--data",
                "-",
            ],
            b"x",
        ),
        1,
    );
    assert!(
        err.contains("insufficient permissions to execute command: put"),
        "{err}"
    );
    let err = failed(&hgframe(&["call", &url, "nosuch"], b""), 1);
    assert!(
        err.contains("404") && err.contains("unknown wire protocol command: nosuch"),
        "{err}"
    );
    failed(&hgframe(&["call", &url, "echo", "no-equals-sign"], b""), 2);
    failed(
        &hgframe(&["call", "https://example.invalid", "echo"], b""),
        2,
    );
    assert!(
        served.terminate().success(),
        "SIGTERM ends serve with status 0"
    );
}

#[test]
fn serve_rejects_bad_options() {
    let err = failed(
        &hgframe(
            &["serve", "--listen", "127.0.0.1:0", "--encoding", "gzip"],
            b"",
        ),
        2,
    );
    assert!(err.contains("unknown encoding"), "{err}");
    failed(&hgframe(&["serve", "--listen", "256.0.0.1:1"], b""), 1);
    failed(
        &hgframe(
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--root",
                "/nonexistent/dir",
            ],
            b"",
        ),
        1,
    );
}

#[test]
fn the_byte_stream_over_tcp_and_over_a_child_process() {
    let served = Served::start(&["--tcp", "127.0.0.1:0"]);
    let tcp = served.tcp.clone().unwrap();
    assert!(tcp.starts_with("tcp://127.0.0.1:"), "{tcp}");
    assert_eq!(
        ok(&hgframe(&["call", &tcp, "cat", "path=a.txt"], b"")),
        "alpha\n"
    );
    assert_eq!(
        ok(&hgframe(
            &["call", &tcp, "echo", "--data", "-"],
            b"over tcp"
        )),
        "over tcp"
    );
    let err = failed(&hgframe(&["call", &tcp, "cat", "path=/etc/passwd"], b""), 1);
    assert!(err.contains("absolute paths are not allowed"), "{err}");

    let root = served.root.path().to_str().unwrap();
    let stdio = format!("stdio:{BIN} serve --stdio --root {root}");
    assert_eq!(
        ok(&hgframe(&["call", &stdio, "files"], b"")),
        "a.txt\nsub/b.txt\n"
    );
    assert_eq!(ok(&hgframe(&["call", &stdio, "echo", "x=1"], b"")), "x=1\n");
    ok(&hgframe(
        &["call", &stdio, "put", "path=piped.txt", "--data", "-"],
        b"through pipes",
    ));
    assert_eq!(
        std::fs::read(served.root.path().join("piped.txt")).unwrap(),
        b"through pipes"
    );
    assert!(served.terminate().success());
}

/// `curl`, or a clear failure. In CI as root, it is installed if missing.
fn curl() -> &'static str {
    let present = |c: &str| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if present("curl") {
        return "curl";
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n");
    if std::env::var("CI").as_deref() == Ok("true") && root {
        let _ = Command::new("apt-get")
            .args(["install", "-y", "curl"])
            .status();
        if present("curl") {
            return "curl";
        }
    }
    panic!("this test needs `curl` (a client we did not write): install it, e.g. `apt-get install -y curl`");
}

#[test]
fn curl_talks_to_serve_with_frames_made_by_the_cli() {
    let curl = curl();
    let served = Served::start(&[]);
    let dir = served.root.path();
    let request = dir.join("request.bin");
    let encoded = hgframe(
        &[
            "frames",
            "encode",
            "1 1 stream-begin command-name have-args echo",
            r"1 1 0 command-argument eoa \x01\x00\x05\x00ahello",
        ],
        b"",
    );
    std::fs::write(&request, ok_bytes(&encoded)).unwrap();
    let answer = dir.join("answer.bin");
    let url = format!("http://{}/api/exp-http-v2-0001/ro/echo", served.addr);
    let out = Command::new(curl)
        .args(["-sS", "--fail", "-o"])
        .arg(&answer)
        .args([
            "-H",
            &format!("Accept: {MEDIA_TYPE}"),
            "-H",
            &format!("Content-Type: {MEDIA_TYPE}"),
        ])
        .arg("--data-binary")
        .arg(format!("@{}", request.display()))
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoded = ok(&hgframe(
        &["frames", "decode", answer.to_str().unwrap()],
        b"",
    ));
    assert_eq!(
        decoded,
        "1 2 stream-begin|stream-end bytes-response eos a=hello\\n\n"
    );

    let status = |extra: &[&str]| {
        let out = Command::new(curl)
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(extra)
            .arg(&url)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(status(&["-X", "POST", "-H", "Accept: text/html"]), "406");
    assert_eq!(
        status(&["-X", "POST", "-H", &format!("Accept: {MEDIA_TYPE}")]),
        "415"
    );
    assert_eq!(status(&[]), "405");
}

fn ok_bytes(out: &Output) -> Vec<u8> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout.clone()
}

#[test]
fn demo_fetches_every_file_intact() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..20 {
        let text = format!("file {i}\n").repeat(100 + i);
        std::fs::write(dir.path().join(format!("f{i}.txt")), text).unwrap();
    }
    std::fs::create_dir_all(dir.path().join("target/debug")).unwrap();
    std::fs::write(dir.path().join("target/debug/skipped"), b"build output").unwrap();
    let out = ok(&hgframe(
        &["demo", "--root", dir.path().to_str().unwrap()],
        b"",
    ));
    assert!(
        out.contains("21: files, then 20 cat in one HTTP/2 exchange"),
        "{out}"
    );
    assert!(out.contains("one long-lived zstd-8mb stream"), "{out}");
    assert!(out.contains("all 20 files intact"), "{out}");
    // Without arguments: the workspace's own sources.
    let out = ok(&hgframe(&["demo"], b""));
    assert!(out.contains("files intact"), "{out}");
    assert!(Path::new(env!("CARGO_MANIFEST_DIR")).exists());
}

#[test]
fn call_gives_up_on_a_server_that_never_answers() {
    // `sleep` reads nothing and writes nothing: a peer that never answers. Without the
    // idle timeout `call` would wait forever (docs/cli.md: no input may make it hang).
    let out = hgframe(
        &["call", "stdio:sleep 60", "echo", "--idle-timeout", "1"],
        b"",
    );
    let stderr = failed(&out, 1);
    assert!(stderr.contains("no progress from the server"), "{stderr}");
    // Over TCP too: a listener that accepts and then says nothing.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("tcp://{}", listener.local_addr().unwrap());
    let silent = std::thread::spawn(move || {
        let conn = listener.accept().map(|(c, _)| c);
        std::thread::sleep(std::time::Duration::from_secs(3));
        drop(conn);
    });
    let out = hgframe(&["call", &url, "echo", "--idle-timeout", "1"], b"");
    let stderr = failed(&out, 1);
    assert!(stderr.contains("no progress from the server"), "{stderr}");
    silent.join().unwrap();
}

/// A one-shot HTTP server that records the request line it gets and answers 404.
fn record_one_request() -> (String, std::thread::JoinHandle<String>) {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let recorder = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap() == 1 {
            head.push(byte[0]);
        }
        let _ = conn
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        let head = String::from_utf8(head).unwrap();
        head.lines().next().unwrap_or_default().to_owned()
    });
    (addr, recorder)
}

#[test]
fn call_prefix_replaces_the_default_url_prefix() {
    // `serve` has no prefix option: it answers under the default one only, so a wrong
    // prefix is a 404 and the default one, given explicitly, works.
    let served = Served::start(&[]);
    let url = format!("http://{}", served.addr);
    let err = failed(
        &hgframe(
            &["call", &url, "echo", "x=1", "--prefix", "/elsewhere"],
            b"",
        ),
        1,
    );
    assert!(err.contains("404"), "{err}");
    assert_eq!(
        ok(&hgframe(
            &[
                "call",
                &url,
                "echo",
                "x=1",
                "--prefix",
                "/api/exp-http-v2-0001/"
            ],
            b"",
        )),
        "x=1\n"
    );
    // The exact path sent: URL root, then the prefix (a missing leading `/` added),
    // then `<permission>/<command>`.
    let (addr, recorder) = record_one_request();
    let out = hgframe(
        &[
            "call",
            &format!("http://{addr}/root"),
            "echo",
            "--prefix",
            "hg/v2",
        ],
        b"",
    );
    failed(&out, 1);
    assert_eq!(
        recorder.join().unwrap(),
        "POST /root/hg/v2/ro/echo HTTP/1.1"
    );
    let (addr, recorder) = record_one_request();
    failed(&hgframe(&["call", &addr, "put", "path=x"], b""), 1);
    assert_eq!(
        recorder.join().unwrap(),
        "POST /api/exp-http-v2-0001/rw/put HTTP/1.1"
    );
    // Byte streams have no URL: the option is accepted and changes nothing.
    let root = served.root.path().to_str().unwrap();
    let stdio = format!("stdio:{BIN} serve --stdio --root {root}");
    assert_eq!(
        ok(&hgframe(
            &["call", &stdio, "echo", "y=2", "--prefix", "/x"],
            b""
        )),
        "y=2\n"
    );
}

/// A listener that accepts one connection, reads what comes and never answers (or, with
/// `head`, answers that much and then nothing), until the returned sender is dropped.
fn silent_server(head: &'static [u8]) -> (String, std::sync::mpsc::Sender<()>) {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (release, released) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let Ok((mut conn, _)) = listener.accept() else {
            return;
        };
        let mut buf = [0u8; 4096];
        // The head goes out once the request has started.
        let _ = conn.read(&mut buf);
        let _ = conn.write_all(head);
        conn.set_read_timeout(Some(std::time::Duration::from_millis(50)))
            .unwrap();
        // Read (so the client is never blocked writing) until released or 60 s pass.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::time::Instant::now() < until
            && matches!(
                released.try_recv(),
                Err(std::sync::mpsc::TryRecvError::Empty)
            )
        {
            let _ = conn.read(&mut buf);
        }
    });
    (addr, release)
}

/// `call` with a 1 s idle timeout; asserts it failed at that timeout, not when the
/// server gave up.
fn gives_up_quickly(url: &str, extra: &[&str]) -> String {
    let started = std::time::Instant::now();
    let mut args = vec!["call", url, "echo", "--idle-timeout", "1"];
    args.extend_from_slice(extra);
    let out = hgframe(&args, b"");
    let stderr = failed(&out, 1);
    assert!(stderr.contains("no progress from the server"), "{stderr}");
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(10),
        "{url}: exited after {took:?}"
    );
    stderr
}

#[test]
fn call_gives_up_at_its_idle_timeout_on_every_transport() {
    // HTTP: accepted, the request read, no answer at all.
    let (addr, release) = silent_server(b"");
    let err = gives_up_quickly(&format!("http://{addr}"), &[]);
    assert!(err.contains("waiting for the answer"), "{err}");
    drop(release);
    // HTTP: the response starts, then nothing more (h2c too).
    let head: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/mercurial-exp-framing-0002\r\ntransfer-encoding: chunked\r\n\r\n";
    let (addr, release) = silent_server(head);
    let err = gives_up_quickly(&format!("http://{addr}"), &[]);
    assert!(err.contains("reading the answer"), "{err}");
    drop(release);
    let (addr, release) = silent_server(b"");
    gives_up_quickly(&format!("http://{addr}"), &["--http2"]);
    drop(release);
    // tcp:// and stdio: with identity only: no `hello`, so the call itself waits; the
    // connection must not then wait for the silent peer to close.
    for extra in [&[][..], &["--encodings", "identity"][..]] {
        let (addr, release) = silent_server(b"");
        gives_up_quickly(&format!("tcp://{addr}"), extra);
        drop(release);
        gives_up_quickly("stdio:sleep 30", extra);
    }
}

#[test]
fn serve_uses_deflate_when_it_prefers_it_and_the_client_accepts_it() {
    // deflate first in the server's order (streams of tiny messages); the client's
    // HgFrame-Encodings header decides among what the server lists.
    let curl = curl();
    let served = Served::start(&[
        "--encoding",
        "deflate",
        "--encoding",
        "zstd-8mb",
        "--encoding",
        "identity",
        "--level",
        "6",
    ]);
    let dir = served.root.path();
    let request = dir.join("request.bin");
    let encoded = hgframe(
        &[
            "frames",
            "encode",
            "1 1 stream-begin command-name have-args echo",
            r"1 1 0 command-argument eoa \x01\x00\x05\x00ahello",
        ],
        b"",
    );
    std::fs::write(&request, ok_bytes(&encoded)).unwrap();
    let url = format!("http://{}/api/exp-http-v2-0001/ro/echo", served.addr);
    for (accepts, settings) in [
        ("zstd-8mb, deflate, identity", Some(r"\x07deflate")),
        ("deflate", Some(r"\x07deflate")),
        ("zstd-8mb, identity", Some(r"\x08zstd-8mb")),
        ("identity", None),
    ] {
        let answer = dir.join("answer.bin");
        let out = Command::new(curl)
            .args(["-sS", "--fail", "-o"])
            .arg(&answer)
            .args([
                "-H",
                &format!("Accept: {MEDIA_TYPE}"),
                "-H",
                &format!("Content-Type: {MEDIA_TYPE}"),
                "-H",
                &format!("HgFrame-Encodings: {accepts}"),
            ])
            .arg("--data-binary")
            .arg(format!("@{}", request.display()))
            .arg(&url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let decoded = ok(&hgframe(
            &["frames", "decode", answer.to_str().unwrap()],
            b"",
        ));
        let first = decoded.lines().next().unwrap_or_default();
        match settings {
            Some(profile) => {
                assert!(first.contains("stream-settings"), "{accepts}: {decoded}");
                assert!(first.ends_with(profile), "{accepts}: {decoded}");
                assert!(decoded.contains("encoded"), "{accepts}: {decoded}");
            }
            None => assert!(!decoded.contains("stream-settings"), "{decoded}"),
        }
        let unpacked = hgframe(&["frames", "unpack", answer.to_str().unwrap()], b"");
        assert_eq!(ok(&unpacked), "a=hello\n", "{accepts}");
    }
    // A level deflate lacks is refused before anything listens, naming the option.
    let out = hgframe(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--encoding",
            "deflate",
            "--level",
            "12",
        ],
        b"",
    );
    let stderr = failed(&out, 2);
    assert!(stderr.contains("--level"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn serve_refuses_an_unusable_option_before_it_listens() {
    // A zstd level out of range used to be accepted, and every zstd response then
    // never started. Now nothing listens: exit 2, the option named.
    for (args, option) in [
        (
            &["serve", "--listen", "127.0.0.1:0", "--level", "50"][..],
            "--level",
        ),
        (
            &["serve", "--listen", "127.0.0.1:0", "--level", "-200000"][..],
            "--level",
        ),
        (
            &["serve", "--listen", "127.0.0.1:0", "--encoding", "zstd-9gb"][..],
            "zstd-9gb",
        ),
    ] {
        let out = hgframe(args, b"");
        let stderr = failed(&out, 2);
        assert!(stderr.contains(option), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "nothing listened: {:?}", out.stdout);
    }
}
