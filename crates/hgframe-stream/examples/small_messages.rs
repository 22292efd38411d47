//! Why streams exist, measured: many small messages sent as responses on one long-lived
//! `zstd-8mb` stream, against each message compressed on its own (what gRPC's
//! per-message compression does) and against the ideal (one zstd context over the same
//! messages, flushed after each, used directly). Bytes are counted as on the wire,
//! 8-byte frame headers included.
//!
//! ```text
//! cargo run --release -p hgframe-stream --example small_messages -- $CORPUS [LEVEL]
//! ```
//!
//! The corpus is the one `docs/streams.md` describes: the `.py` files of
//! `small/` (each file one message) and the first 20,000 lines of `records.jsonl`
//! (each JSON record one message). Without a corpus directory, generated messages are
//! used.

use std::path::Path;

use bytes::Bytes;
use hgframe_stream::{EncodingSettings, OutgoingStream, Profiles, Side};
use hgframe_wire::{Frame, FrameType, RequestId, StreamId, HEADER_LEN};
use zstd::stream::raw::{Encoder, InBuffer, Operation, OutBuffer};

/// Wire bytes of the messages sent as responses on one zstd-8mb stream.
fn hgframe_stream(messages: &[Bytes], level: i32) -> usize {
    let settings = EncodingSettings::new("zstd-8mb").with_level(level);
    let mut stream =
        OutgoingStream::new(StreamId(2), Side::Server, &Profiles::default(), &settings)
            .expect("a zstd-8mb stream");
    let mut frames: Vec<Frame> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let request = RequestId((1 + 2 * i) as u16); // wraps; ids are reused after eos
        stream
            .push_data(
                request,
                FrameType::BytesResponse,
                m.clone(),
                true,
                &mut frames,
            )
            .expect("push");
    }
    stream.end(&mut frames).expect("end");
    frames.iter().map(Frame::encoded_len).sum()
}

/// Each message compressed on its own, in one frame each.
fn per_message(messages: &[Bytes], level: i32) -> usize {
    messages
        .iter()
        .map(|m| HEADER_LEN + zstd::bulk::compress(m, level).expect("zstd").len())
        .sum()
}

/// One zstd context over all messages, flushed after each, in one frame each.
fn ideal(messages: &[Bytes], level: i32) -> usize {
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
        total += HEADER_LEN + out.len();
    }
    total
}

fn corpus_sets(dir: &Path) -> std::io::Result<Vec<(String, Vec<Bytes>)>> {
    let mut names: Vec<_> = std::fs::read_dir(dir.join("small"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "py"))
        .collect();
    names.sort();
    let files = names
        .iter()
        .map(|p| std::fs::read(p).map(Bytes::from))
        .collect::<Result<Vec<_>, _>>()?;
    let records = std::fs::read(dir.join("records.jsonl"))?;
    let records: Vec<Bytes> = records
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .take(20_000)
        .map(Bytes::copy_from_slice)
        .collect();
    Ok(vec![
        (format!("small/ ({} files)", files.len()), files),
        (
            format!("records.jsonl ({} records)", records.len()),
            records,
        ),
    ])
}

fn generated_sets() -> Vec<(String, Vec<Bytes>)> {
    let records: Vec<Bytes> = (0..20_000)
        .map(|i| {
            Bytes::from(format!(
                "{{\"module\": \"mod{}\", \"name\": \"f{}\", \"kind\": \"FunctionDef\", \"line\": {}, \"args\": [\"self\"], \"doc\": \"\"}}",
                i / 40,
                i % 97,
                i * 7 % 1000
            ))
        })
        .collect();
    vec![("generated records (20000)".into(), records)]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next();
    let level: i32 = args.next().and_then(|l| l.parse().ok()).unwrap_or(3);
    let sets = match &dir {
        Some(dir) => corpus_sets(Path::new(dir)).unwrap_or_else(|e| {
            eprintln!("cannot read the corpus in {dir}: {e}; using generated messages");
            generated_sets()
        }),
        None => generated_sets(),
    };
    println!("zstd level {level}; bytes on the wire, 8-byte frame headers included\n");
    println!(
        "| messages | count | raw | identity | per-message zstd | hgframe stream | ideal | stream / ideal | per-message / stream |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, messages) in sets {
        let raw: usize = messages.iter().map(Bytes::len).sum();
        let identity = raw + HEADER_LEN * messages.len();
        let stream = hgframe_stream(&messages, level);
        let separate = per_message(&messages, level);
        let best = ideal(&messages, level);
        println!(
            "| {name} | {} | {raw} | {identity} | {separate} | {stream} | {best} | {:.4}x | {:.2}x |",
            messages.len(),
            stream as f64 / best as f64,
            separate as f64 / stream as f64,
        );
    }
}
