//! The response cache of `cat`, end to end over HTTP: a second `cat` of an unchanged
//! file is a hit, sent as cached (pre-compressed bytes, no compression work), identical
//! to the file, and every frame decodes on arrival; a changed file is never answered
//! stale; the cache stays within its bounds; `serve` refuses cache limits that cannot
//! work.
#![cfg(all(feature = "zstd", feature = "http"))]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use common::{command, raw, TestServer};
use hgframe::commands::{CacheLimits, CacheStats, FileCommands};
use hgframe_http::{Call, Client, ClientOptions, ExchangeStats, MEDIA_TYPE};
use hgframe_stream::{
    DecodeLimits, EncodingSettings, IncomingStreams, OutgoingStream, Profiles, Side,
};
use hgframe_wire::{Frame, FrameType, Frames, RequestId, StreamFlags, StreamId};

/// A server whose file commands, over their own directory, answer `cat` through a
/// cache with these limits; the commands are returned for their cache's counters.
async fn start(limits: CacheLimits) -> (TestServer, tempfile::TempDir, FileCommands) {
    let dir = tempfile::tempdir().unwrap();
    let mut files = FileCommands::new(dir.path()).unwrap();
    files.set_cache(limits).unwrap();
    let registered = files.clone();
    let server = TestServer::start(move |_, registry| registered.register(registry)).await;
    (server, dir, files)
}

/// Limits under which every file is cached at once (no settling time).
fn eager(max_bytes: u64, max_entry_bytes: u64) -> CacheLimits {
    CacheLimits {
        max_bytes,
        max_entry_bytes,
        settle_time: Duration::ZERO,
    }
}

/// Text of `n` bytes, different for each seed.
fn text(n: usize, seed: u64) -> Vec<u8> {
    let words = [
        "def", "self", "return", "value", "stream", "frame", "None", "class",
    ];
    let mut out = Vec::with_capacity(n + 16);
    let mut x = seed | 1;
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(words[(x % 8) as usize].as_bytes());
        out.push(if x % 7 == 0 { b'\n' } else { b' ' });
    }
    out.truncate(n);
    out
}

/// Writes `content` to `path`, its modification time set to `mtime`.
fn write(path: &Path, content: &[u8], mtime: SystemTime) {
    std::fs::write(path, content).unwrap();
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(mtime).unwrap();
}

fn hours_ago(h: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(3600 * h)
}

/// `cat path` through the client (zstd).
async fn cat(server: &TestServer, path: &str) -> Vec<u8> {
    let client = Client::new(&server.url()).unwrap();
    client
        .call(Call::new("cat").arg("path", path.to_owned()))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap()
        .data
        .to_vec()
}

/// `cat path` as one raw HTTP request accepting zstd: the response's frames.
async fn cat_frames(server: &TestServer, path: &str) -> Vec<Frame> {
    let body = command(1, "cat", &[("path", path)], None, true).freeze();
    let r = raw(
        "POST",
        &server.api("ro/cat"),
        &[
            ("accept", MEDIA_TYPE),
            ("content-type", MEDIA_TYPE),
            ("hgframe-encodings", "zstd-8mb"),
        ],
        body,
        false,
    )
    .await;
    assert_eq!(r.status, 200);
    Frames::new(r.body).map(Result::unwrap).collect()
}

/// The offsets in a stream's encoded bytes where a zstd block (or skippable frame)
/// ends, parsed here independently of the library (as
/// `hgframe-stream/tests/on_arrival.rs` does).
fn block_ends(encoded: &[u8]) -> BTreeSet<usize> {
    let mut ends = BTreeSet::new();
    let mut at = 0;
    let u32_at = |at: usize| u32::from_le_bytes(encoded[at..at + 4].try_into().unwrap());
    while at < encoded.len() {
        let magic = u32_at(at);
        if magic & 0xFFFF_FFF0 == 0x184D_2A50 {
            at += 8 + u32_at(at + 4) as usize;
            ends.insert(at);
            continue;
        }
        assert_eq!(magic, 0xFD2F_B528, "a zstd frame at {at}");
        let fhd = encoded[at + 4];
        let single = fhd & 0x20 != 0;
        let dict = [0, 1, 2, 4][usize::from(fhd & 3)];
        let fcs = [usize::from(single), 2, 4, 8][usize::from(fhd >> 6)];
        at += 5 + usize::from(!single) + dict + fcs;
        while at < encoded.len() {
            let h = u32::from_le_bytes([encoded[at], encoded[at + 1], encoded[at + 2], 0]);
            at += 3 + if (h >> 1) & 3 == 1 {
                1
            } else {
                (h >> 3) as usize
            };
            if h & 1 == 1 {
                if fhd & 4 != 0 {
                    at += 4;
                }
                ends.insert(at);
                break;
            }
            ends.insert(at);
        }
    }
    ends
}

/// Feeds the frames to a client's decoder ONE AT A TIME and checks that each decodes
/// on arrival: every encoded frame ends where a zstd block ends, and once it is in, the
/// bytes decoded so far are a prefix of `want` that ends where a flush of `flush` raw
/// bytes ends (nothing held back). Returns all the bytes decoded.
fn decode_on_arrival(frames: &[Frame], want: &[u8], flush: usize) -> Vec<u8> {
    let encoded: Vec<u8> = frames
        .iter()
        .filter(|f| f.stream_flags().contains(StreamFlags::ENCODED))
        .flat_map(|f| f.payload().to_vec())
        .collect();
    let ends = block_ends(&encoded);
    let mut incoming =
        IncomingStreams::new(Side::Client, Profiles::default(), DecodeLimits::default());
    let (mut got, mut wire) = (Vec::new(), 0);
    for (n, frame) in frames.iter().enumerate() {
        assert!(frame.payload().len() <= 32768, "frame {n} too large");
        let is_encoded = frame.stream_flags().contains(StreamFlags::ENCODED);
        let Some(plain) = incoming.on_frame(frame.clone()).unwrap() else {
            continue;
        };
        if plain.frame_type() != FrameType::BytesResponse as u8 {
            continue;
        }
        got.extend_from_slice(plain.payload());
        if is_encoded {
            wire += frame.payload().len();
            assert!(ends.contains(&wire), "frame {n} ends inside a zstd block");
            assert!(got[..] == want[..got.len()], "frame {n}: wrong bytes");
            assert!(
                got.len() % flush == 0 || got.len() == want.len(),
                "frame {n}: {} bytes decoded, not where a flush ends",
                got.len()
            );
        }
    }
    got
}

/// What the response stream flushes at: zstd-8mb, level 3, 32768-byte frames.
fn flush_len() -> usize {
    OutgoingStream::new(
        StreamId(2),
        Side::Server,
        &Profiles::default(),
        &EncodingSettings::new("zstd-8mb"),
    )
    .unwrap()
    .max_flush_raw_len()
}

fn stats(files: &FileCommands) -> CacheStats {
    files.cache_stats().unwrap()
}

#[tokio::test]
async fn a_second_cat_is_a_hit_sent_as_cached_and_decodable_on_arrival() {
    let (server, dir, files) = start(eager(16 << 20, 4 << 20)).await;
    // Several pieces of a read chunk each, and an odd tail.
    let content = text(700_001, 1);
    write(&dir.path().join("big.txt"), &content, hours_ago(1));

    let first = cat_frames(&server, "big.txt").await;
    let s = stats(&files);
    assert_eq!((s.hits, s.misses, s.stores), (0, 1, 1), "{s:?}");
    let second = cat_frames(&server, "big.txt").await;
    let s = stats(&files);
    assert_eq!((s.hits, s.misses, s.stores), (1, 1, 1), "{s:?}");
    assert!(s.bytes > 0 && s.bytes < content.len(), "{s:?}");

    let flush = flush_len();
    for frames in [&first, &second] {
        assert_eq!(decode_on_arrival(frames, &content, flush), content);
        // One terminal frame: the last data frame carries eos.
        let eos = frames
            .iter()
            .filter(|f| f.request_id() == RequestId(1) && f.frame_type() == 4)
            .filter(|f| f.flags() & 0x02 != 0)
            .count();
        assert_eq!(eos, 1);
    }
    // The hit did no compression work: its stream took no raw bytes, only the cached
    // pre-compressed ones.
    let exchanges: Vec<ExchangeStats> = server.wait_stats(2).await;
    let hit = &exchanges[1].streams[0];
    assert_eq!(hit.profile, "zstd-8mb");
    assert_eq!(hit.raw_bytes, 0, "{hit:?}");
    assert!(hit.precompressed_bytes > 0, "{hit:?}");
    assert!(hit.wire_bytes * 3 < content.len() as u64, "{hit:?}");
    // And through the client, the same bytes again.
    assert_eq!(cat(&server, "big.txt").await, content);
    assert_eq!(stats(&files).hits, 2);
}

#[tokio::test]
async fn a_changed_file_is_never_answered_from_the_cache() {
    let (server, dir, files) = start(eager(16 << 20, 4 << 20)).await;
    let path = dir.path().join("f.txt");
    let old = hours_ago(2);
    write(&path, &text(100_000, 1), old);
    assert_eq!(cat(&server, "f.txt").await, text(100_000, 1));
    assert_eq!(cat(&server, "f.txt").await, text(100_000, 1));
    assert_eq!(stats(&files).hits, 1);

    // Same size, another modification time.
    write(&path, &text(100_000, 2), hours_ago(1));
    assert_eq!(cat(&server, "f.txt").await, text(100_000, 2));
    // Same size, the modification time set back to what it was: the change time (and
    // on some systems the inode) still tells.
    write(&path, &text(100_000, 3), old);
    assert_eq!(cat(&server, "f.txt").await, text(100_000, 3));
    // Another size.
    write(&path, &text(90_000, 4), old);
    assert_eq!(cat(&server, "f.txt").await, text(90_000, 4));
    // Replaced by `put` (a new file renamed over the old).
    let client = Client::new(&server.url()).unwrap();
    let put = Call::new("put")
        .permission(hgframe_http::Permission::ReadWrite)
        .arg("path", "f.txt")
        .data(text(90_000, 5));
    client.call(put).await.unwrap().collect().await.unwrap();
    assert_eq!(cat(&server, "f.txt").await, text(90_000, 5));
    let s = stats(&files);
    assert_eq!(s.hits, 1, "{s:?}");
    assert_eq!(s.entries, 1, "stale answers are dropped: {s:?}");
    // The last content is now what is cached.
    assert_eq!(cat(&server, "f.txt").await, text(90_000, 5));
    assert_eq!(stats(&files).hits, 2);
}

#[tokio::test]
async fn a_file_that_changed_just_now_is_not_cached() {
    // The default settling time: a file changed within it could change again without
    // its times changing.
    let (server, dir, files) = start(CacheLimits::default()).await;
    std::fs::write(dir.path().join("fresh.txt"), text(50_000, 1)).unwrap();
    for _ in 0..2 {
        assert_eq!(cat(&server, "fresh.txt").await, text(50_000, 1));
    }
    let s = stats(&files);
    assert_eq!((s.hits, s.stores, s.entries), (0, 0, 0), "{s:?}");
}

/// `n` bytes that do not compress: a cached answer is as large as its file.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[tokio::test]
async fn the_cache_stays_within_its_bounds() {
    // Room for three of these answers, not four.
    let (server, dir, files) = start(eager(100_000, 40_000)).await;
    let names = ["a", "b", "c", "d"];
    for (i, name) in names.iter().enumerate() {
        write(
            &dir.path().join(name),
            &noise(30_000, i as u64),
            hours_ago(1),
        );
    }
    // Larger than the entry limit: sent, never cached, not even looked up.
    write(&dir.path().join("large"), &noise(40_001, 9), hours_ago(1));
    assert_eq!(cat(&server, "large").await, noise(40_001, 9));
    assert_eq!(stats(&files), CacheStats::default());
    for round in 0..2 {
        for (i, name) in names.iter().enumerate() {
            assert_eq!(cat(&server, name).await, noise(30_000, i as u64));
            let s = stats(&files);
            assert!(s.bytes <= 100_000, "round {round}: {s:?}");
        }
    }
    // Used in a cycle, least recently used first out: every look-up missed.
    let s = stats(&files);
    assert_eq!((s.hits, s.misses, s.stores), (0, 8, 8), "{s:?}");
    assert_eq!((s.entries, s.evictions), (3, 5), "{s:?}");
    // The three most recent are there.
    assert_eq!(cat(&server, "d").await, noise(30_000, 3));
    assert_eq!(stats(&files).hits, 1);
}

#[tokio::test]
async fn identity_responses_do_not_use_the_cache() {
    let (server, dir, files) = start(eager(16 << 20, 4 << 20)).await;
    write(&dir.path().join("f.txt"), &text(80_000, 1), hours_ago(1));
    let mut options = ClientOptions::default();
    options.set_encodings(&["identity"]);
    let client = Client::with_options(&server.url(), options).unwrap();
    for _ in 0..2 {
        let got = client
            .call(Call::new("cat").arg("path", "f.txt"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(got.data, text(80_000, 1));
    }
    assert_eq!(stats(&files), CacheStats::default());
}

#[test]
fn serve_refuses_cache_limits_that_cannot_work() {
    for args in [
        &["--cache-entry-bytes", "0"][..],
        &["--cache-bytes", "0"][..],
        &["--no-cache", "--cache-bytes", "1000"][..],
        &["--cache-bytes", "1000", "--cache-entry-bytes", "1001"][..],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hgframe"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--cache"), "{err}");
    }
}
