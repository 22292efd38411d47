//! `hgframe frames pack` / `unpack` through the real binary: round trips for every
//! option, stdin as a pipe and as a file, requests written in ascending order whatever
//! the order of their data (data that comes before its turn held, and spilled, up to
//! `--max-held`), and responses that never end.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use bytes::BytesMut;
use hgframe_wire::{Frame, FrameDecoder, FrameType, RequestId, StreamFlags, StreamId};

fn hgframe(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hgframe"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    // Written from a thread: the child writes its output while it reads.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

/// The same with stdin redirected from a file (`< file`).
fn hgframe_file_stdin(args: &[&str], stdin: &[u8]) -> Output {
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(stdin).unwrap();
    use std::io::Seek;
    file.rewind().unwrap();
    Command::new(env!("CARGO_BIN_EXE_hgframe"))
        .args(args)
        .stdin(Stdio::from(file))
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn text(n: usize, seed: u64) -> Vec<u8> {
    let words = ["def", "self", "return", "value", "stream", "frame", "None"];
    let mut out = Vec::with_capacity(n + 16);
    let mut x = seed | 1;
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(words[(x % 7) as usize].as_bytes());
        out.push(if x % 5 == 0 { b'\n' } else { b' ' });
        if x % 97 == 0 {
            // some noise
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out.truncate(n);
    out
}

fn frames_of(wire: &[u8]) -> Vec<Frame> {
    let mut decoder = FrameDecoder::with_max_payload_len(16_777_215);
    let mut buf = BytesMut::from(wire);
    let mut frames = Vec::new();
    while let Some(f) = decoder.decode(&mut buf).unwrap() {
        frames.push(f);
    }
    assert!(buf.is_empty());
    frames
}

fn wire_of(frames: &[Frame]) -> Vec<u8> {
    let mut wire = BytesMut::new();
    for f in frames {
        f.encode(&mut wire);
    }
    wire.to_vec()
}

#[test]
fn pack_then_unpack_gives_the_input_back_for_every_option() {
    let big = text(5 << 20, 1);
    for input in [Vec::new(), b"x".to_vec(), big] {
        for encoding in ["identity", "zstd-8mb"] {
            for (streams, max) in [
                ("1", "32768"),
                ("2", "32768"),
                ("3", "1000"),
                ("2", "200000"),
            ] {
                let args = [
                    "frames",
                    "pack",
                    "--encoding",
                    encoding,
                    "--streams",
                    streams,
                    "--max-frame-size",
                    max,
                ];
                let what = format!("{} bytes, {args:?}", input.len());
                // stdin as a pipe, then as a file: the same frames.
                let packed = hgframe(&args, &input);
                assert!(packed.status.success(), "{what}: {}", stderr(&packed));
                let from_file = hgframe_file_stdin(&args, &input);
                assert!(from_file.status.success(), "{what}: {}", stderr(&from_file));
                let max: usize = max.parse().unwrap();
                for wire in [&packed.stdout, &from_file.stdout] {
                    assert!(frames_of(wire).iter().all(|f| f.payload().len() <= max));
                    let unpacked = hgframe(&["frames", "unpack"], wire);
                    assert!(unpacked.status.success(), "{what}: {}", stderr(&unpacked));
                    assert!(unpacked.stdout == input, "{what}: round trip differs");
                }
            }
        }
    }
}

#[test]
fn pack_emits_requests_in_ascending_order_of_first_data() {
    // Stream k starts only once every lower stream's data is out, whatever the
    // scheduling: the first bytes-response of request 1 comes before that of 3, 5, 7.
    let input = text(6 << 20, 2);
    for encoding in ["identity", "zstd-8mb"] {
        let o = hgframe(
            &["frames", "pack", "--encoding", encoding, "--streams", "4"],
            &input,
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let mut first_seen = Vec::new();
        for f in frames_of(&o.stdout) {
            if f.known_type() == Some(FrameType::BytesResponse)
                && !first_seen.contains(&f.request_id().0)
            {
                first_seen.push(f.request_id().0);
            }
        }
        assert_eq!(first_seen, [1, 3, 5, 7], "{encoding}");
    }
}

#[test]
fn each_request_ends_with_exactly_one_eos_frame() {
    // The input is pushed in 1 MiB pieces: only the last piece's last frame has eos.
    let input = text(5 << 20, 3);
    for encoding in ["identity", "zstd-8mb"] {
        let o = hgframe(
            &["frames", "pack", "--encoding", encoding, "--streams", "2"],
            &input,
        );
        let frames = frames_of(&o.stdout);
        for request in [1, 3] {
            let data: Vec<&Frame> = frames
                .iter()
                .filter(|f| {
                    f.request_id() == RequestId(request)
                        && f.known_type() == Some(FrameType::BytesResponse)
                })
                .collect();
            assert!(data.len() > 10, "{encoding}");
            let (last, rest) = data.split_last().unwrap();
            assert_eq!(last.flags(), 0x02, "{encoding}");
            assert!(rest.iter().all(|f| f.flags() == 0x01), "{encoding}");
        }
    }
}

fn data_frame(request: u16, stream: u8, begin: bool, eos: bool, payload: &[u8]) -> Frame {
    Frame::new(
        RequestId(request),
        StreamId(stream),
        if begin {
            StreamFlags::STREAM_BEGIN
        } else {
            StreamFlags::empty()
        },
        FrameType::BytesResponse,
        if eos { 0x02 } else { 0x01 },
        payload.to_vec(),
    )
    .unwrap()
}

#[test]
fn unpack_holds_higher_requests_until_the_lower_one_ends() {
    // Request 3's data (more than unpack keeps in memory, so part of it goes to a
    // temporary file) arrives while request 1 is still being written.
    let r1a = text(100_000, 4);
    let r1b = text(50_000, 5);
    let r3 = text(20 << 20, 6);
    let mut frames = vec![data_frame(1, 2, true, false, &r1a)];
    let pieces: Vec<&[u8]> = r3.chunks(60_000).collect();
    for (i, piece) in pieces.iter().enumerate() {
        frames.push(data_frame(3, 4, i == 0, i + 1 == pieces.len(), piece));
    }
    frames.push(data_frame(1, 2, false, true, &r1b));
    let o = hgframe(&["frames", "unpack"], &wire_of(&frames));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout == [&r1a[..], &r1b, &r3].concat());
}

#[test]
fn unpack_of_a_response_without_eos_is_exit_1_naming_the_request() {
    let input = text(3 << 20, 7);
    for streams in ["1", "2"] {
        let packed = hgframe(
            &[
                "frames",
                "pack",
                "--encoding",
                "zstd-8mb",
                "--streams",
                streams,
            ],
            &input,
        );
        let frames = frames_of(&packed.stdout);
        // Drop the last frame of the last request: its eos never comes.
        let last = 2 * streams.parse::<u16>().unwrap() - 1;
        let pos = frames
            .iter()
            .rposition(|f| f.request_id() == RequestId(last))
            .unwrap();
        let mut cut = frames.clone();
        cut.remove(pos);
        let o = hgframe(&["frames", "unpack"], &wire_of(&cut));
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        let msg = stderr(&o);
        assert!(msg.contains(&format!("request {last}")), "{msg}");
        assert!(msg.contains("eos"), "{msg}");
        assert!(!msg.contains("panicked"), "{msg}");
        // What did decode was written as it came.
        assert!(input.starts_with(&o.stdout));
        assert!(o.stdout.len() > input.len() / 2, "{}", o.stdout.len());

        // And a cut inside a frame is reported as a truncated frame.
        let wire = packed.stdout;
        let o = hgframe(&["frames", "unpack"], &wire[..wire.len() - 5]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("truncated"), "{}", stderr(&o));
    }
}

/// The frames of responses to requests 1, 3, 5, ... (one stream each, `pieces` frames
/// each), in an order given by `order`: indexes into the list of every frame, grouped by
/// request, each request's own frames keeping their order.
fn responses_in_order(bodies: &[Vec<u8>], pieces: usize, order: &[usize]) -> Vec<Frame> {
    let per_request: Vec<Vec<Frame>> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let request = 1 + 2 * i as u16;
            let stream = 2 + 2 * i as u8;
            let chunk = body.len().div_ceil(pieces).max(1);
            let parts: Vec<&[u8]> = if body.is_empty() {
                vec![&[][..]]
            } else {
                body.chunks(chunk).collect()
            };
            parts
                .iter()
                .enumerate()
                .map(|(k, part)| data_frame(request, stream, k == 0, k + 1 == parts.len(), part))
                .collect()
        })
        .collect();
    // `order` names requests; each mention takes that request's next frame.
    let mut next = vec![0usize; per_request.len()];
    let mut frames = Vec::new();
    for &r in order {
        if let Some(f) = per_request[r].get(next[r]) {
            frames.push(f.clone());
            next[r] += 1;
        }
    }
    for (r, frames_of_r) in per_request.iter().enumerate() {
        frames.extend(frames_of_r[next[r]..].iter().cloned());
    }
    frames
}

#[test]
fn unpack_writes_requests_in_ascending_order_whatever_the_input_order() {
    let bodies: Vec<Vec<u8>> = (0..4)
        .map(|i| text(200_000 + 1000 * i, 20 + i as u64))
        .collect();
    let want = bodies.concat();
    let mut x = 12345u64;
    let mut random_order = Vec::new();
    for _ in 0..40 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        random_order.push((x % 4) as usize);
    }
    let orders: Vec<(&str, Vec<usize>)> = vec![
        (
            "ascending, one after the other",
            [0; 5]
                .into_iter()
                .chain([1; 5])
                .chain([2; 5])
                .chain([3; 5])
                .collect(),
        ),
        (
            "descending: each ends before the lower ones begin",
            [3; 5]
                .into_iter()
                .chain([2; 5])
                .chain([1; 5])
                .chain([0; 5])
                .collect(),
        ),
        ("interleaved round robin", (0..20).map(|i| i % 4).collect()),
        (
            "interleaved, highest first",
            (0..20).map(|i| 3 - i % 4).collect(),
        ),
        (
            "the lowest last",
            [2, 1, 3, 2, 1, 3, 3, 2, 1, 1, 2, 3, 1, 2, 3, 0, 0, 0, 0, 0].to_vec(),
        ),
        ("random", random_order),
    ];
    for (name, order) in &orders {
        let frames = responses_in_order(&bodies, 5, order);
        let o = hgframe(&["frames", "unpack"], &wire_of(&frames));
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        assert!(o.stdout == want, "{name}: not in ascending request order");
    }
    // Held data over what unpack keeps in memory goes to a temporary file; the order is
    // the same.
    let big: Vec<Vec<u8>> = vec![text(3 << 20, 30), text(12 << 20, 31), text(10 << 20, 32)];
    let frames = responses_in_order(
        &big,
        40,
        &[2; 40].into_iter().chain([1; 40]).collect::<Vec<_>>(),
    );
    let o = hgframe(&["frames", "unpack"], &wire_of(&frames));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        o.stdout == big.concat(),
        "spilled: not in ascending request order"
    );
}

#[test]
fn unpack_writes_the_next_request_as_it_arrives_and_holds_only_the_others() {
    // Request 1 is written as it comes even with --max-held 1: only data that arrives
    // before its turn is held.
    let bodies = vec![text(500_000, 40), text(500_000, 41)];
    let frames = responses_in_order(&bodies, 10, &[0; 10]);
    let o = hgframe(&["frames", "unpack", "--max-held", "1"], &wire_of(&frames));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout == bodies.concat());
    // A request that never comes (3) holds the ones above it until the input ends; they
    // are then written in order.
    let frames = [
        data_frame(7, 2, true, true, b"seven"),
        data_frame(5, 4, true, true, b"five"),
        data_frame(1, 6, true, true, b"one"),
    ];
    let o = hgframe(&["frames", "unpack"], &wire_of(&frames));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout, b"onefiveseven");
}

#[test]
fn unpack_holds_at_most_max_held_bytes() {
    // Request 3 (2000 bytes) arrives before request 1: it must be held.
    let bodies = vec![text(100, 50), text(2000, 51)];
    let frames = responses_in_order(&bodies, 4, &[1, 1, 1, 1, 0]);
    let o = hgframe(
        &["frames", "unpack", "--max-held", "1999"],
        &wire_of(&frames),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("--max-held 1999"), "{}", stderr(&o));
    assert!(stderr(&o).contains("request 3"), "{}", stderr(&o));
    let o = hgframe(
        &["frames", "unpack", "--max-held", "2000"],
        &wire_of(&frames),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout == bodies.concat());
    // The option is checked before any input is read.
    for bad in ["0", "-1", "lots", ""] {
        let o = hgframe(&["frames", "unpack", "--max-held", bad], &wire_of(&frames));
        assert_eq!(
            o.status.code(),
            Some(2),
            "--max-held {bad:?}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn unpack_refuses_data_after_eos_and_even_request_ids() {
    let frames = [
        data_frame(1, 2, true, true, b"one"),
        data_frame(1, 2, false, true, b"again"),
    ];
    let o = hgframe(&["frames", "unpack"], &wire_of(&frames));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("after its eos"), "{}", stderr(&o));
    // The same for a request that is held.
    let frames = [
        data_frame(3, 2, true, true, b"three"),
        data_frame(3, 2, false, true, b"again"),
        data_frame(1, 4, true, true, b"one"),
    ];
    let o = hgframe(&["frames", "unpack"], &wire_of(&frames));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("request 3: bytes-response data after its eos"),
        "{}",
        stderr(&o)
    );
    // Responses carry the client's odd request ids.
    let frames = [data_frame(2, 2, true, true, b"two")];
    let o = hgframe(&["frames", "unpack"], &wire_of(&frames));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("even request id"), "{}", stderr(&o));
}

#[test]
fn unpack_reads_a_file() {
    let input = text(300_000, 8);
    let packed = hgframe(&["frames", "pack", "--encoding", "zstd-8mb"], &input);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("frames.bin");
    std::fs::write(&path, &packed.stdout).unwrap();
    let o = hgframe(&["frames", "unpack", path.to_str().unwrap()], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout == input);
    let o = hgframe(&["frames", "unpack", "/nonexistent/frames.bin"], b"");
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn deflate_pack_then_unpack_gives_the_input_back() {
    // Text, noise, and many tiny pieces; frame sizes down to 8 bytes, the size of the
    // deflate stream-settings frame; one and two streams; levels 0, 6 and 9.
    let mut noisy = text(300_000, 8);
    noisy.extend((0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    for input in [Vec::new(), b"x".to_vec(), text(3 << 20, 9), noisy] {
        for (streams, max, level) in [
            ("1", "32768", "6"),
            ("2", "32768", "0"),
            ("2", "1000", "9"),
            ("1", "8", "6"),
            ("1", "200000", "1"),
        ] {
            if max == "8" && input.len() > 400_000 {
                continue; // a flush of a byte or two per frame: slow, and said above
            }
            let args = [
                "frames",
                "pack",
                "--encoding",
                "deflate",
                "--streams",
                streams,
                "--max-frame-size",
                max,
                "--level",
                level,
            ];
            let what = format!("{} bytes, {args:?}", input.len());
            let packed = hgframe(&args, &input);
            assert!(packed.status.success(), "{what}: {}", stderr(&packed));
            let frames = frames_of(&packed.stdout);
            let max: usize = max.parse().unwrap();
            assert!(frames.iter().all(|f| f.payload().len() <= max), "{what}");
            if !input.is_empty() {
                assert_eq!(&frames[0].payload()[..], b"\x07deflate", "{what}");
            }
            let unpacked = hgframe(&["frames", "unpack"], &packed.stdout);
            assert!(unpacked.status.success(), "{what}: {}", stderr(&unpacked));
            assert!(unpacked.stdout == input, "{what}: round trip differs");
        }
    }
    // Compressible text: deflate shrinks it.
    let input = text(1 << 20, 10);
    let packed = hgframe(&["frames", "pack", "--encoding", "deflate"], &input);
    assert!(
        packed.stdout.len() * 2 < input.len(),
        "{}",
        packed.stdout.len()
    );
}

#[test]
fn deflate_pack_refuses_a_level_or_frame_size_it_cannot_use() {
    for (args, needle) in [
        (&["--level", "10"][..], "level"),
        (&["--level", "-1"][..], "level"),
        (&["--max-frame-size", "7"][..], "stream-settings"),
    ] {
        let mut all = vec!["frames", "pack", "--encoding", "deflate"];
        all.extend_from_slice(args);
        let o = hgframe(&all, b"data");
        assert_eq!(o.status.code(), Some(2), "{all:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{all:?}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "{all:?}");
    }
}
