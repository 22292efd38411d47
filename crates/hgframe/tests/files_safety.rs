//! The file commands against races and failures: a directory swapped for a symbolic
//! link during requests, `put`'s size limit, `put`'s temporary files, and a server killed
//! in the middle of a `put`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hgframe::commands::{FileCommands, TEMP_PREFIX};
use hgframe_http::ServerConfig;
use hgframe_http::{serve, Call, Client, ErrorKind, HgFrameService, Permission, Registry};
use tokio::sync::oneshot;

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_hgframe");

/// Anything in a test may wait at most this long: a hang fails instead of blocking CI.
const PATIENCE: Duration = Duration::from_secs(60);

/// An in-process server with the file commands over `root`; stops when dropped.
struct InProcess {
    url: String,
    _stop: oneshot::Sender<()>,
}

async fn start(root: &Path, configure: impl FnOnce(&mut FileCommands)) -> InProcess {
    let mut files = FileCommands::new(root).unwrap();
    configure(&mut files);
    let mut registry = Registry::new();
    files.register(&mut registry);
    let service = HgFrameService::new(registry, ServerConfig::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = serve(listener, service, async {
            let _ = rx.await;
        })
        .await;
    });
    InProcess { url, _stop: tx }
}

fn put(path: &str, data: impl Into<bytes::Bytes>) -> Call {
    Call::new("put")
        .permission(Permission::ReadWrite)
        .arg("path", path.to_owned())
        .data(data)
}

fn cat(path: &str) -> Call {
    Call::new("cat").arg("path", path.to_owned())
}

/// Every name under `dir` (recursively, not following links), relative.
fn all_names(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(relative) = stack.pop() {
        for entry in std::fs::read_dir(dir.join(&relative)).unwrap() {
            let entry = entry.unwrap();
            let path = relative.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                stack.push(path.clone());
            }
            names.push(path.to_string_lossy().into_owned());
        }
    }
    names.sort();
    names
}

fn litter(dir: &Path) -> Vec<String> {
    all_names(dir)
        .into_iter()
        .filter(|n| n.rsplit('/').next().unwrap_or("").starts_with(TEMP_PREFIX))
        .collect()
}

const SECRET: &[u8] = b"OUTSIDE THE ROOT\n";

/// One thread keeps swapping `root/d` between a real directory and a symbolic link to a
/// directory outside the root, while `cat d/secret.txt` and `put d/...` run through it.
/// With the old check-then-open-by-name code a `cat` returned the outside file (39 of 500
/// in the issue) and a `put` created files outside; opening beneath the root in one step
/// refuses the link whenever it is in place.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_swapped_for_a_link_never_leads_outside_the_root() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("root");
    let outside = base.path().join("outside");
    std::fs::create_dir_all(root.join("d")).unwrap();
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), SECRET).unwrap();
    std::fs::write(root.join("d/secret.txt"), b"inside\n").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("staged")).unwrap();
    let server = start(&root, |_| {}).await;

    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let swapper = {
        let (stop, swaps, root) = (Arc::clone(&stop), Arc::clone(&swaps), root.clone());
        std::thread::spawn(move || {
            let (d, parked, staged) = (root.join("d"), root.join("parked"), root.join("staged"));
            while !stop.load(Ordering::Relaxed) {
                // The directory out, the link in ...
                std::fs::rename(&d, &parked).unwrap();
                std::fs::rename(&staged, &d).unwrap();
                swaps.fetch_add(1, Ordering::Relaxed);
                // ... and back.
                std::fs::rename(&d, &staged).unwrap();
                std::fs::rename(&parked, &d).unwrap();
            }
        })
    };

    let client = Client::new(&server.url).unwrap();
    let (mut cats, mut puts, mut read_inside, mut refused) = (0u32, 0u32, 0u32, 0u32);
    let started = Instant::now();
    // Enough rounds to have caught the old code many times over; more until both
    // states of the directory were seen by `cat`.
    let mut round = 0u32;
    while round < 300 || read_inside == 0 || refused == 0 {
        assert!(
            started.elapsed() < PATIENCE,
            "the race never showed both states"
        );
        let mut tasks = Vec::new();
        for i in 0..6u32 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                if i % 2 == 0 {
                    let r = client.call(cat("d/secret.txt")).await;
                    let r = match r {
                        Ok(response) => response.collect().await.map(|c| c.data),
                        Err(e) => Err(e),
                    };
                    (true, r.map_err(|e| (e.kind(), e.message().to_owned())))
                } else {
                    let name = if i == 1 {
                        "d/secret.txt".to_owned()
                    } else {
                        format!("d/new-{i}.txt")
                    };
                    let r = match client.call(put(&name, "written by put\n")).await {
                        Ok(response) => response.collect().await.map(|c| c.data),
                        Err(e) => Err(e),
                    };
                    (false, r.map_err(|e| (e.kind(), e.message().to_owned())))
                }
            }));
        }
        for task in tasks {
            let (is_cat, result) = task.await.unwrap();
            match (is_cat, result) {
                (true, Ok(data)) => {
                    assert_ne!(&data[..], SECRET, "cat read a file outside the root");
                    read_inside += 1;
                    cats += 1;
                }
                (true, Err((kind, message))) => {
                    assert_eq!(kind, ErrorKind::Application, "{message}");
                    if message.contains("leaves the root") {
                        refused += 1;
                    }
                    cats += 1;
                }
                (false, Ok(_)) => puts += 1,
                (false, Err((kind, message))) => {
                    assert_eq!(kind, ErrorKind::Application, "{message}");
                    puts += 1;
                }
            }
        }
        round += 1;
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    eprintln!(
        "{cats} cats ({read_inside} read inside, {refused} refused as leaving the root), \
         {puts} puts, {} swaps",
        swaps.load(Ordering::Relaxed)
    );
    assert!(swaps.load(Ordering::Relaxed) > 0);
    assert!(cats >= 900 && puts >= 900, "{cats} cats, {puts} puts");
    // Nothing outside was created or changed.
    assert_eq!(all_names(&outside), ["secret.txt"]);
    assert_eq!(std::fs::read(outside.join("secret.txt")).unwrap(), SECRET);
    assert!(litter(&root).is_empty(), "{:?}", litter(&root));
}

/// Over the limit fails with an application error naming it; the old file stays and
/// no temporary file remains. At the limit, `put` succeeds.
#[tokio::test]
async fn put_refuses_content_over_its_size_limit() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("a.txt"), b"old\n").unwrap();
    let server = start(root.path(), |f| {
        f.set_max_put_bytes(64 << 10);
    })
    .await;
    let client = Client::new(&server.url).unwrap();
    for size in [(64 << 10) + 1, 8 << 20] {
        let e = client
            .call(put("a.txt", vec![b'x'; size]))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Application, "{e}");
        assert!(e.message().contains("65536"), "{e}");
        assert_eq!(std::fs::read(root.path().join("a.txt")).unwrap(), b"old\n");
        assert_eq!(all_names(root.path()), ["a.txt"]);
    }
    client
        .call(put("a.txt", vec![b'y'; 64 << 10]))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(root.path().join("a.txt")).unwrap(),
        vec![b'y'; 64 << 10]
    );
    assert_eq!(all_names(root.path()), ["a.txt"]);
}

/// The limit counts decoded bytes: 8 MiB of a repeated 1000-byte block, a few KiB of
/// zstd on the wire, is refused against a 1 MiB limit (raw frames, as the client library
/// sends identity). (Zeros would be refused by the stream layer first, as decoding to
/// over 1000 times their size: `hgframe-stream/tests/expansion.rs`.)
#[tokio::test]
async fn put_counts_decoded_bytes_against_its_limit() {
    use bytes::{Bytes, BytesMut};
    use hgframe_stream::{EncodingSettings, OutgoingStream, Profiles, Side};
    use hgframe_wire::build::{command_head_frames, FrameTarget};
    use hgframe_wire::{FrameType, RequestId, StreamId};

    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("a.txt"), b"old\n").unwrap();
    let server = start(root.path(), |f| {
        f.set_max_put_bytes(1 << 20);
    })
    .await;
    let mut stream = OutgoingStream::new(
        StreamId(1),
        Side::Client,
        &Profiles::default(),
        &EncodingSettings::new("zstd-8mb"),
    )
    .unwrap();
    let args = [(Bytes::from_static(b"path"), Bytes::from_static(b"a.txt"))];
    let head = command_head_frames(
        FrameTarget::new(RequestId(1), StreamId(1)),
        b"put",
        &args,
        true,
    )
    .unwrap();
    let mut frames = Vec::new();
    for frame in head {
        stream.push_frame(frame, &mut frames).unwrap();
    }
    let block: Vec<u8> = (0..1000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let zeros = Bytes::from(block.repeat(8 << 10));
    stream
        .push_data(
            RequestId(1),
            FrameType::CommandData,
            zeros,
            true,
            &mut frames,
        )
        .unwrap();
    let mut body = BytesMut::new();
    for frame in &frames {
        frame.encode(&mut body);
    }
    assert!(body.len() < 1 << 20, "{} bytes on the wire", body.len());
    let answer = common::post_frames(
        &format!("{}/api/exp-http-v2-0001/rw/put", server.url),
        body.freeze(),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let (_, errors) = common::answer_of(&answer.frames(), 1);
    assert!(
        errors.iter().any(|e| e.contains("limit of 1048576 bytes")),
        "{errors:?}"
    );
    assert_eq!(std::fs::read(root.path().join("a.txt")).unwrap(), b"old\n");
    assert_eq!(all_names(root.path()), ["a.txt"]);
}

/// Temporary files (another server's, or ones that appeared after start-up) are not
/// listed, cannot be read, and their names cannot be written.
#[tokio::test]
async fn temp_files_are_invisible_to_files_and_refused_by_cat_and_put() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("sub")).unwrap();
    std::fs::write(root.path().join("a.txt"), b"alpha\n").unwrap();
    let stale = format!("sub/{TEMP_PREFIX}stale");
    std::fs::write(root.path().join(&stale), b"stale").unwrap();
    let server = start(root.path(), |_| {}).await;
    assert!(!root.path().join(&stale).exists(), "removed at start-up");
    let late = format!("{TEMP_PREFIX}late");
    let late_in_sub = format!("sub/{TEMP_PREFIX}late");
    std::fs::write(root.path().join(&late), b"half written").unwrap();
    std::fs::write(root.path().join(&late_in_sub), b"half written").unwrap();
    let client = Client::new(&server.url).unwrap();
    let files = client
        .call(Call::new("files"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(&files.data[..], b"a.txt\n");
    for path in [&late, &late_in_sub] {
        let e = client
            .call(cat(path))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Application, "{e}");
        assert_eq!(e.message(), format!("no such file: {path}"));
        let e = client
            .call(put(path, "x"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap_err();
        assert!(e.message().contains("reserved"), "{e}");
        assert_eq!(
            std::fs::read(root.path().join(path)).unwrap(),
            b"half written"
        );
    }
}

/// A running `hgframe serve`, killed when dropped.
struct Served {
    child: Child,
    url: String,
}

impl Served {
    fn start(root: &Path) -> Self {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--root"])
            .arg(root)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = lines.next().expect("serve printed its address").unwrap();
        Self {
            child,
            url: format!("http://{addr}"),
        }
    }

    fn call(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .arg("call")
            .arg(&self.url)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kill -9` in the middle of a large streaming `put`: the old file is intact, and
/// after a restart `files` lists no temporary file and none is left on disk.
#[cfg(unix)]
#[test]
fn a_server_killed_mid_put_leaves_the_old_file_and_no_litter() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("sub")).unwrap();
    std::fs::write(root.path().join("sub/big.bin"), b"old\n").unwrap();
    let server = Served::start(root.path());
    let mut call = Command::new(BIN)
        .args([
            "call",
            &server.url,
            "put",
            "path=sub/big.bin",
            "--data",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // A writer that keeps streaming the content (until the pipe breaks, or 512 MiB).
    let mut stdin = call.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'z'; 1 << 20];
        for _ in 0..512 {
            if stdin.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    // Wait until the server has written part of the content to its temporary file.
    let temp = loop {
        assert!(started.elapsed() < PATIENCE, "no temporary file appeared");
        let found = litter(root.path())
            .into_iter()
            .find(|name| std::fs::metadata(root.path().join(name)).is_ok_and(|m| m.len() > 0));
        if let Some(name) = found {
            break name;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut server = server;
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    let _ = call.kill();
    let _ = call.wait();
    writer.join().unwrap();
    assert_eq!(
        std::fs::read(root.path().join("sub/big.bin")).unwrap(),
        b"old\n",
        "the old file is intact"
    );
    assert!(
        root.path().join(&temp).exists(),
        "the kill left {temp} behind (so the restart has something to clean)"
    );

    let restarted = Served::start(root.path());
    let files = restarted.call(&["files"]);
    assert!(files.status.success(), "{files:?}");
    assert_eq!(String::from_utf8_lossy(&files.stdout), "sub/big.bin\n");
    assert_eq!(all_names(root.path()), ["sub", "sub/big.bin"]);
    let cat = restarted.call(&["cat", "path=sub/big.bin"]);
    assert_eq!(cat.stdout, b"old\n");
}

/// `serve --max-put-bytes`: 0 is refused before anything listens; a limit holds.
#[test]
fn serve_max_put_bytes() {
    let root = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--max-put-bytes",
            "0",
            "--root",
        ])
        .arg(root.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--max-put-bytes"),
        "{out:?}"
    );

    std::fs::write(root.path().join("a.txt"), b"old\n").unwrap();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--max-put-bytes",
            "4",
            "--root",
        ])
        .arg(root.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    let server = Served {
        child,
        url: format!("http://{addr}"),
    };
    let mut call = Command::new(BIN)
        .args(["call", &server.url, "put", "path=a.txt", "--data", "-"])
        .stdin(Stdio::piped())
        .output_with(b"12345");
    assert_eq!(call.status.code(), Some(1), "{call:?}");
    let err = String::from_utf8_lossy(&call.stderr).into_owned();
    assert!(err.contains("limit of 4 bytes"), "{err}");
    assert_eq!(std::fs::read(root.path().join("a.txt")).unwrap(), b"old\n");
    call = Command::new(BIN)
        .args(["call", &server.url, "put", "path=a.txt", "--data", "-"])
        .output_with(b"1234");
    assert!(call.status.success(), "{call:?}");
    assert_eq!(std::fs::read(root.path().join("a.txt")).unwrap(), b"1234");
}

trait OutputWith {
    fn output_with(&mut self, stdin: &[u8]) -> std::process::Output;
}

impl OutputWith for Command {
    /// Runs the command with `stdin` as its standard input.
    fn output_with(&mut self, stdin: &[u8]) -> std::process::Output {
        let mut child = self
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }
}
