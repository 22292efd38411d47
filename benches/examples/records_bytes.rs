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

use hgframe_benches::{corpus_sets, files_under, records, send_messages, server_stream};

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress};
use zstd::stream::raw::{Encoder, InBuffer, Operation, OutBuffer};

/// Payload and wire bytes of the messages sent as responses on one stream.
fn stream_bytes(messages: &[Bytes], profile: &str, level: i32) -> (usize, usize) {
    let (mut payload, mut wire) = (0, 0);
    send_messages(&mut server_stream(profile, level), messages, 0, |f| {
        payload += f.payload().len();
        wire += f.encoded_len();
    });
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
