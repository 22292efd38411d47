//! What a level change on a live stream costs: the history it discards.
//!
//! ```text
//! cargo run --release -p hgframe-benches --example level_change [-- CORPUS_DIR]
//! ```
//!
//! `OutgoingStream::set_level` cannot keep the stream's history (docs/streams.md, "Level
//! changes"): single-threaded zstd reads the level only when a zstd frame starts, and a
//! new zstd frame cannot refer to the data of the one before; a new deflate compressor
//! starts with an empty window. This measures what that costs, per message set and
//! change:
//!
//! - *restarted*: the messages after the change, on a stream that sent the first half at
//!   the old level and then called `set_level` (what happens);
//! - *kept*: the same messages on a stream that sent the first half at the new level
//!   already, so its history is intact (what keeping the history would give);
//! - the cost: restarted minus kept, in bytes and as a share of the kept bytes.
//!
//! Message sets: 20,000 generated records; with `CORPUS_DIR`, the first 20,000 lines of
//! its `records.jsonl`, the files of its `small/`, and the first 32 MiB of its `bulk.bin`
//! in 1 MiB pieces. Each message is one response (`push_data` with `eos`); bytes are
//! frame payloads.

use std::path::PathBuf;

use bytes::Bytes;
use hgframe_benches::{corpus_sets, records, send_messages, server_stream};

/// Payload bytes of `messages[half..]` on a stream that sent `messages[..half]` at
/// `before`, then changed to `after`.
fn bytes_after_change(messages: &[Bytes], profile: &str, before: i32, after: i32) -> usize {
    let mut stream = server_stream(profile, before);
    let half = messages.len() / 2;
    let (first, second) = messages.split_at(half);
    send_messages(&mut stream, first, 0, |_| {});
    stream.set_level(after).expect("a valid level");
    let mut total = 0;
    send_messages(&mut stream, second, half, |f| total += f.payload().len());
    total
}

/// `data` in pieces of `piece` bytes.
fn pieces(data: &[u8], piece: usize) -> Vec<Bytes> {
    data.chunks(piece).map(Bytes::copy_from_slice).collect()
}

fn main() {
    let corpus: Option<PathBuf> = std::env::args().nth(1).map(PathBuf::from);
    let mut sets = vec![("records (generated)".to_string(), records())];
    if let Some(dir) = &corpus {
        sets.extend(corpus_sets(dir).expect("the corpus's records.jsonl and small/"));
        let bulk = std::fs::read(dir.join("bulk.bin")).expect("the corpus's bulk.bin");
        sets.push((
            "corpus bulk.bin, 32 MiB in 1 MiB pieces".into(),
            pieces(&bulk[..bulk.len().min(32 << 20)], 1 << 20),
        ));
    }
    let changes: [(&str, i32, i32); 4] = [
        ("zstd-8mb", 3, 1),
        ("zstd-8mb", 3, 9),
        ("zstd-8mb", 1, 3),
        ("deflate", 6, 1),
    ];
    println!(
        "| messages (second half) | profile | change | kept | restarted | cost | cost / kept |"
    );
    println!("|---|---|---|---:|---:|---:|---:|");
    for (name, messages) in &sets {
        for (profile, before, after) in changes {
            let kept = bytes_after_change(messages, profile, after, after);
            let restarted = bytes_after_change(messages, profile, before, after);
            let cost = restarted as i64 - kept as i64;
            println!(
                "| {name} ({}) | {profile} | {before} -> {after} | {kept} | {restarted} | {cost} | {:.2}% |",
                messages.len() - messages.len() / 2,
                100.0 * cost as f64 / kept as f64
            );
        }
    }
}
