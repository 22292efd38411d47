//! Benchmarks live in benches/. This library holds the message sets that several of
//! them measure.

use std::path::Path;

use bytes::Bytes;
use hgframe_stream::{EncodingSettings, OutgoingStream, Profiles, Side};
use hgframe_wire::{Frame, FrameType, RequestId, StreamId};

/// A server stream (id 2) of `profile` at `level`, as the benchmarks send messages on.
pub fn server_stream(profile: &str, level: i32) -> OutgoingStream {
    let settings = EncodingSettings::new(profile).with_level(level);
    OutgoingStream::new(StreamId(2), Side::Server, &Profiles::default(), &settings)
        .expect("a stream of a built-in profile")
}

/// Sends each message as one response (`push_data` with `eos`) on `stream`, and
/// passes each frame to `on_frame`. Message `i` (counting from `first`) answers
/// request `1 + 2i`: ids wrap, and an id is free again once its response has ended.
pub fn send_messages(
    stream: &mut OutgoingStream,
    messages: &[Bytes],
    first: usize,
    mut on_frame: impl FnMut(&Frame),
) {
    let mut frames: Vec<Frame> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let request = RequestId((1 + 2 * (first + i)) as u16);
        stream
            .push_data(
                request,
                FrameType::BytesResponse,
                m.clone(),
                true,
                &mut frames,
            )
            .expect("push");
        frames.drain(..).for_each(|f| on_frame(&f));
    }
}

/// 20,000 JSON records of about 139 bytes, the same on every run, shaped like the
/// corpus's `records.jsonl` (one per function or class definition: module, name, kind,
/// line, positional arguments, first line of the docstring).
pub fn records() -> Vec<Bytes> {
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
pub fn files_under(dir: &Path) -> Vec<Bytes> {
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

/// The corpus's message sets (docs/streams.md, "The benchmark corpus"): the first
/// 20,000 lines of `records.jsonl`, and the files of `small/`.
pub fn corpus_sets(dir: &Path) -> std::io::Result<Vec<(String, Vec<Bytes>)>> {
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

/// A thread of its own running a current-thread runtime, for a server whose work must
/// stay on one thread (so that the thread's CPU time is the server's); its handle.
pub fn server_thread() -> tokio::runtime::Handle {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        tx.send(rt.handle().clone()).expect("the caller waits");
        rt.block_on(std::future::pending::<()>());
    });
    rx.recv().expect("the server thread starts")
}
