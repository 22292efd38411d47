//! Bytes of many small messages: `deflate` against `zstd-8mb` streams, each against its
//! compressor used directly (one context, a flush per message, no framing), and both
//! against per-message zstd. Not a test: it prints a table (docs/streams.md, "deflate").
//!
//! ```text
//! cargo run --release -p hgframe-benches --example records_bytes [-- [CORPUS_DIR] [--zstd-level N] [--deflate-level N]]
//! ```
//!
//! Message sets:
//! - `records`: 20,000 JSON records of about 139 bytes, generated deterministically in
//!   the shape of the corpus's `records.jsonl`;
//! - `crates/ files`: every regular file under this repository's `crates/`, in sorted
//!   path order, each file one message;
//! - with `CORPUS_DIR` (docs/streams.md, "The benchmark corpus"): the first 20,000
//!   lines of its `records.jsonl` and the files of its `small/`.
//!
//! Each message is one response (`push_data` with `eos`) on one stream. "payload" counts
//! the bytes of the frames' payloads (the `stream-settings` frame included), which is
//! what the compressors used directly are compared with; "wire" adds the 8-byte frame
//! headers. For `deflate`, used directly means one raw-deflate context, sync-flushed
//! after each message, each flush's `00 00 ff ff` tail left out (what WebSocket's
//! permessage-deflate sends). The last column is the time to encode the set on each
//! stream (fastest of 5 runs, taken in turns), deflate's over zstd-8mb's.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress};
use hgframe_stream::{EncodingSettings, OutgoingStream, Profiles, Side};
use hgframe_wire::{Frame, FrameType, RequestId, StreamId};
use zstd::stream::raw::{Encoder, InBuffer, Operation, OutBuffer};

/// Payload and wire bytes of the messages sent as responses on one stream.
fn stream_bytes(messages: &[Bytes], profile: &str, level: i32) -> (usize, usize) {
    let settings = EncodingSettings::new(profile).with_level(level);
    let mut stream =
        OutgoingStream::new(StreamId(2), Side::Server, &Profiles::default(), &settings)
            .expect("a stream of a built-in profile");
    let mut frames: Vec<Frame> = Vec::new();
    let (mut payload, mut wire) = (0, 0);
    for (i, m) in messages.iter().enumerate() {
        // Ids wrap; an id is free again once its response has ended.
        let request = RequestId((1 + 2 * i) as u16);
        stream
            .push_data(
                request,
                FrameType::BytesResponse,
                m.clone(),
                true,
                &mut frames,
            )
            .expect("push");
        for f in frames.drain(..) {
            payload += f.payload().len();
            wire += f.encoded_len();
        }
    }
    (payload, wire)
}

/// Each message compressed on its own (gRPC's per-message compression).
fn per_message_zstd(messages: &[Bytes], level: i32) -> usize {
    messages
        .iter()
        .map(|m| zstd::bulk::compress(m, level).expect("zstd").len())
        .sum()
}

/// One zstd context over all messages, flushed after each, no framing.
fn zstd_direct(messages: &[Bytes], level: i32) -> usize {
    let mut enc = Encoder::new(level).expect("zstd context");
    let mut total = 0;
    let mut out = Vec::with_capacity(1 << 20);
    for m in messages {
        out.clear();
        let mut src = InBuffer::around(&m[..]);
        while src.pos() < m.len() {
            out.reserve(m.len() + 1024);
            let pos = out.len();
            enc.run(&mut src, &mut OutBuffer::around_pos(&mut out, pos))
                .expect("zstd");
        }
        loop {
            out.reserve(1024);
            let pos = out.len();
            if enc
                .flush(&mut OutBuffer::around_pos(&mut out, pos))
                .expect("zstd")
                == 0
            {
                break;
            }
        }
        total += out.len();
    }
    total
}

/// One raw-deflate context over all messages, sync-flushed after each, the 4-byte tail
/// left out, no framing.
fn deflate_direct(messages: &[Bytes], level: i32) -> usize {
    let mut ctx = Compress::new(Compression::new(level as u32), false);
    let mut total = 0;
    let mut out = Vec::with_capacity(1 << 20);
    for m in messages {
        out.clear();
        let mut rest = &m[..];
        loop {
            out.reserve(rest.len() + 1024);
            let before = ctx.total_in();
            ctx.compress_vec(rest, &mut out, FlushCompress::Sync)
                .expect("deflate");
            rest = &rest[(ctx.total_in() - before) as usize..];
            if rest.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
        total += out.len() - 4;
    }
    total
}

/// 20,000 JSON records of about 139 bytes, the same on every run, shaped like the
/// corpus's `records.jsonl` (one per function or class definition: module, name, kind,
/// line, positional arguments, first line of the docstring).
fn records() -> Vec<Bytes> {
    const WORDS: [&str; 24] = [
        "read", "write", "stream", "frame", "buffer", "request", "response", "header", "value",
        "name", "path", "file", "index", "entry", "node", "token", "config", "cache", "encode",
        "decode", "parse", "close", "open", "check",
    ];
    const PACKAGES: [&str; 6] = ["email", "http", "json", "asyncio", "xml.dom", "importlib"];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::with_capacity(20_000);
    let (mut module, mut line) = (String::new(), 0u64);
    for i in 0..20_000u64 {
        let r = next();
        let word = |k: u64| WORDS[((r >> (k * 5)) % 24) as usize];
        if i % 40 == 0 {
            module = format!("{}.{}", PACKAGES[(r % 6) as usize], word(1));
            line = 1;
        }
        line += 3 + (r >> 40) % 60;
        let (kind, name, args) = match (r >> 48) % 8 {
            0 => (
                "ClassDef",
                format!("{}{}", cap(word(3)), cap(word(4))),
                String::new(),
            ),
            1 => (
                "AsyncFunctionDef",
                format!("{}_{}", word(3), word(4)),
                format!("\"self\", \"{}\"", word(5)),
            ),
            n => {
                let args: Vec<String> =
                    (0..n % 4).map(|k| format!("\"{}\"", word(5 + k))).collect();
                (
                    "FunctionDef",
                    format!("{}_{}", word(3), word(4)),
                    ["\"self\"".to_string()]
                        .into_iter()
                        .chain(args)
                        .collect::<Vec<_>>()
                        .join(", "),
                )
            }
        };
        let doc = if (r >> 56) % 2 == 0 {
            String::new()
        } else {
            format!("{} the {} {}.", cap(word(6)), word(7), word(8))
        };
        out.push(Bytes::from(format!(
            "{{\"module\": \"{module}\", \"name\": \"{name}\", \"kind\": \"{kind}\", \"line\": {line}, \"args\": [{args}], \"doc\": \"{doc}\"}}"
        )));
    }
    out
}

/// `word` with its first letter in upper case.
fn cap(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// Every regular file under `dir`, sorted by path.
fn files_under(dir: &Path) -> Vec<Bytes> {
    let mut paths = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() {
                todo.push(e.path());
            } else if kind.is_file() {
                paths.push(e.path());
            }
        }
    }
    paths.sort();
    paths
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .map(Bytes::from)
        .collect()
}

fn corpus_sets(dir: &Path) -> std::io::Result<Vec<(String, Vec<Bytes>)>> {
    let records = std::fs::read(dir.join("records.jsonl"))?;
    let records: Vec<Bytes> = records
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .take(20_000)
        .map(Bytes::copy_from_slice)
        .collect();
    Ok(vec![
        ("corpus records.jsonl".into(), records),
        ("corpus small/".into(), files_under(&dir.join("small"))),
    ])
}

fn main() {
    let mut corpus: Option<PathBuf> = None;
    let (mut zstd_level, mut deflate_level) = (3i32, 6i32);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| -> i32 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} takes a number"))
        };
        match a.as_str() {
            "--zstd-level" => zstd_level = value("--zstd-level"),
            "--deflate-level" => deflate_level = value("--deflate-level"),
            _ => corpus = Some(PathBuf::from(a)),
        }
    }
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates");
    let mut sets = vec![
        ("records (generated)".to_string(), records()),
        ("crates/ files".to_string(), files_under(&crates)),
    ];
    if let Some(dir) = &corpus {
        match corpus_sets(dir) {
            Ok(more) => sets.extend(more),
            Err(e) => eprintln!("cannot read the corpus in {}: {e}", dir.display()),
        }
    }
    println!(
        "zstd level {zstd_level}, deflate level {deflate_level}; bytes per message (payload; \
         wire adds 8-byte frame headers)\n"
    );
    println!(
        "| messages | count | raw | per-message zstd | zstd direct | zstd-8mb stream | deflate direct | deflate stream | deflate / zstd-8mb stream | zstd-8mb stream / zstd direct | deflate stream / deflate direct | per-message / deflate stream | wire: zstd-8mb, deflate | encoding time: deflate / zstd-8mb stream |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, messages) in sets {
        let n = messages.len() as f64;
        let raw: usize = messages.iter().map(Bytes::len).sum();
        let separate = per_message_zstd(&messages, zstd_level);
        let zstd = zstd_direct(&messages, zstd_level);
        let (zstd_stream, zstd_wire) = stream_bytes(&messages, "zstd-8mb", zstd_level);
        let deflate = deflate_direct(&messages, deflate_level);
        let (deflate_stream, deflate_wire) = stream_bytes(&messages, "deflate", deflate_level);
        let per = |b: usize| b as f64 / n;
        // Fastest of 5 runs each, taken in turns (the machine is shared).
        let (mut t_zstd, mut t_deflate) = (f64::MAX, f64::MAX);
        for _ in 0..5 {
            let t = std::time::Instant::now();
            std::hint::black_box(stream_bytes(&messages, "zstd-8mb", zstd_level));
            t_zstd = t_zstd.min(t.elapsed().as_secs_f64());
            let t = std::time::Instant::now();
            std::hint::black_box(stream_bytes(&messages, "deflate", deflate_level));
            t_deflate = t_deflate.min(t.elapsed().as_secs_f64());
        }
        println!(
            "| {name} | {} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.3}x | {:.4}x | {:.4}x | {:.2}x | {:.2}, {:.2} | {:.2}x |",
            messages.len(),
            per(raw),
            per(separate),
            per(zstd),
            per(zstd_stream),
            per(deflate),
            per(deflate_stream),
            deflate_stream as f64 / zstd_stream as f64,
            zstd_stream as f64 / zstd as f64,
            deflate_stream as f64 / deflate as f64,
            separate as f64 / deflate_stream as f64,
            per(zstd_wire),
            per(deflate_wire),
            t_deflate / t_zstd,
        );
    }
}
