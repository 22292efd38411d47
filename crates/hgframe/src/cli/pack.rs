//! `hgframe frames pack` and `hgframe frames unpack`: data to the frames a server would
//! answer with, and back. The whole content-encoding path of `hgframe-stream`, on a file.
//!
//! Both stream, in memory bounded whatever the input size:
//! - `pack` reads its input in pieces of [`PUSH_LEN`] bytes and pushes each as it is
//!   read, so frames leave while the rest is still being compressed. With `--streams N`
//!   each worker reads its own part (stdin as a file; a pipe is first copied to an
//!   unlinked temporary file, as the parts must be cut by size), and the workers'
//!   frames interleave on stdout. Stream `k` starts only once the data of every lower
//!   stream has reached stdout, so requests first appear in ascending order.
//! - `unpack` reads frames in pieces, decodes each into one reused buffer, and writes the
//!   bytes of the next request in ascending order as they are decoded. Requests whose
//!   data arrives before their turn, in any order, are held: up to [`BUFFERED_MAX`] bytes
//!   in memory, the rest in an unlinked temporary file, at most `--max-held` bytes in all.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

use bytes::{Bytes, BytesMut};
use clap::builder::TypedValueParser as _;
use hgframe_stream::{
    DecodeLimits, EncodingSettings, IncomingStreams, OutgoingStream, ParallelEncoder,
    ParallelError, Profiles, Side, StreamError, StreamWriter,
};
use hgframe_wire::{
    BytesResponseFlags, Frame, FrameDecoder, FrameType, RequestId, StreamId,
    DEFAULT_MAX_FRAME_SIZE, MAX_PAYLOAD_LEN,
};

use super::{CliResult, Failure};

/// Raw bytes `pack` reads and pushes at a time, per stream.
const PUSH_LEN: usize = 1 << 20;

/// Bytes `unpack` reads at a time.
const READ_LEN: usize = 256 * 1024;

/// Decoded bytes `unpack` holds in memory for requests it cannot write yet; more go to a
/// temporary file.
const BUFFERED_MAX: usize = 16 << 20;

/// Default of `unpack --max-held`: 64 GiB, memory and temporary file together.
const DEFAULT_MAX_HELD: u64 = 64 << 30;

/// Options of `frames pack`.
#[derive(Debug, clap::Args)]
pub(crate) struct PackArgs {
    /// Content encoding of every stream.
    #[arg(long, default_value = "identity", value_parser = ["identity", "zstd-8mb", "deflate"])]
    encoding: String,
    /// Largest frame payload on the wire.
    #[arg(long, default_value_t = DEFAULT_MAX_FRAME_SIZE,
          value_parser = clap::value_parser!(u32).range(1..=MAX_PAYLOAD_LEN as i64).map(|v| v as usize))]
    max_frame_size: usize,
    /// Number of streams (and requests) the input is cut into, encoded concurrently.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=127))]
    streams: u8,
    /// Compression level (zstd: negative to 22; deflate: 0 to 9).
    #[arg(long, default_value_t = 3, allow_negative_numbers = true)]
    level: i32,
}

/// Options of `frames unpack`.
#[derive(Debug, clap::Args)]
pub(crate) struct UnpackArgs {
    /// File of binary frames (stdin when absent).
    file: Option<PathBuf>,
    /// Most bytes held for requests whose data arrives before their turn (up to 16 MiB
    /// in memory, the rest in a temporary file); more is exit 1.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_HELD,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_held: u64,
}

/// Where a worker of `pack` reads its part.
enum Source {
    /// Stdin, read in order (one stream).
    Stdin,
    /// A file (stdin redirected from a file, or the copy of a pipe): part `i` is the
    /// range `start..end`.
    File(Arc<File>),
}

/// Lets stream `k` start only once streams `0..k` have put data on stdout.
struct StartGate {
    state: Mutex<GateState>,
    cond: Condvar,
}

struct GateState {
    /// Whether a data frame of stream `i` was written.
    seen: Vec<bool>,
    /// Number of leading `true`s in `seen`.
    started: usize,
    /// Set on any failure: nobody waits any more.
    open: bool,
}

impl StartGate {
    fn new(n: usize) -> Self {
        Self {
            state: Mutex::new(GateState {
                seen: vec![false; n],
                started: 0,
                open: false,
            }),
            cond: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until every stream before `k` has written data (or the run failed).
    fn wait(&self, k: usize) {
        let mut state = self.lock();
        while !state.open && state.started < k {
            state = self
                .cond
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// A data frame of stream `i` went to stdout.
    fn seen(&self, i: usize) {
        let mut state = self.lock();
        if state.seen.get(i).copied().unwrap_or(true) {
            return;
        }
        if let Some(s) = state.seen.get_mut(i) {
            *s = true;
        }
        let started = state.seen.iter().take_while(|s| **s).count();
        state.started = started;
        self.cond.notify_all();
    }

    /// Something failed: release every waiting worker.
    fn open(&self) {
        self.lock().open = true;
        self.cond.notify_all();
    }
}

/// Opens a [`StartGate`] when dropped, unless disarmed.
struct OpenOnDrop<'a>(Option<&'a StartGate>);

impl OpenOnDrop<'_> {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for OpenOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(gate) = self.0 {
            gate.open();
        }
    }
}

pub(crate) fn pack(args: PackArgs) -> CliResult {
    let profiles = Profiles::default();
    let settings = EncodingSettings::new(args.encoding.as_str()).with_level(args.level);
    let count = usize::from(args.streams);
    // Streams first, so bad options are reported before reading stdin.
    let mut streams = Vec::with_capacity(count);
    for i in 0..args.streams {
        let mut stream =
            OutgoingStream::new(StreamId(2 + 2 * i), Side::Server, &profiles, &settings)
                .map_err(Failure::usage)?;
        stream.set_max_frame_size(args.max_frame_size);
        streams.push(stream);
    }
    if args.encoding != hgframe_stream::IDENTITY {
        // The stream-settings frame cannot be cut: it must fit the frame size.
        let settings_len = 1 + args.encoding.len();
        if settings_len > args.max_frame_size {
            return Err(Failure::usage(format!(
                "--max-frame-size {} is too small for the {settings_len}-byte stream-settings frame of {}",
                args.max_frame_size, args.encoding
            )));
        }
    }

    if count == 1 {
        if let Some(stream) = streams.pop() {
            return pack_one(stream, &Source::Stdin);
        }
    }
    // Several streams need the size to cut the parts.
    let (source, total) = match stdin_file() {
        Some((file, len)) => (Source::File(Arc::new(file)), len),
        None => {
            let (file, len) = spill_stdin()?;
            (Source::File(Arc::new(file)), len)
        }
    };
    let source = Arc::new(source);
    let gate = Arc::new(StartGate::new(count));
    // An i/o error of a worker, reported instead of the stream error it causes.
    let read_error: Arc<Mutex<Option<std::io::Error>>> = Arc::default();

    let jobs: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, stream)| {
            let (start, end) = (
                total * i as u64 / count as u64,
                total * (i as u64 + 1) / count as u64,
            );
            let request = RequestId(1 + 2 * i as u16);
            let (source, gate, read_error) = (source.clone(), gate.clone(), read_error.clone());
            let job = move |w: &mut StreamWriter<'_>| -> Result<(), StreamError> {
                gate.wait(i);
                // Opens the gate unless the job succeeds (an error, or a panic that
                // unwinds): the workers waiting for this stream must not wait forever.
                let guard = OpenOnDrop(Some(&gate));
                let result = push_part(w, request, &source, start, end)
                    .and_then(|()| w.end().map_err(PartError::from));
                if let Err(PartError::Read(io)) = &result {
                    let mut slot = read_error
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    slot.get_or_insert(std::io::Error::new(io.kind(), io.to_string()));
                }
                if result.is_ok() {
                    guard.disarm();
                }
                result.map_err(|e| match e {
                    PartError::Stream(e) => e,
                    PartError::Read(_) => StreamError::Cancelled {
                        id: w.stream().id(),
                    },
                })
            };
            (stream, job)
        })
        .collect();

    let mut stdout = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    // As many compressors at once as there are cores: more would only take turns, and
    // each turn evicts the others' tables from the caches (docs/streams.md).
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let result = ParallelEncoder::new()
        .threads(cores)
        .run(jobs, |frame: Frame| {
            let (header, payload) = frame.to_parts();
            let written = stdout
                .write_all(&header)
                .and_then(|()| stdout.write_all(&payload));
            if written.is_err() {
                gate.open();
            } else if frame.known_type() == Some(FrameType::BytesResponse) {
                gate.seen(usize::from(frame.stream_id().0.saturating_sub(2) / 2));
            }
            written
        });
    if let Some(io) = read_error
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
    {
        return Err(Failure::bad(format!("cannot read the input: {io}")));
    }
    result.map_err(|e| match e {
        ParallelError::Sink(io) => Failure::from(io),
        other => Failure::bad(other),
    })?;
    stdout.flush()?;
    Ok(())
}

enum PartError {
    Stream(StreamError),
    Read(std::io::Error),
}

impl From<StreamError> for PartError {
    fn from(e: StreamError) -> Self {
        Self::Stream(e)
    }
}

/// Pushes one part through a worker's writer, piece by piece.
fn push_part(
    w: &mut StreamWriter<'_>,
    request: RequestId,
    source: &Source,
    start: u64,
    end: u64,
) -> Result<(), PartError> {
    let mut reader = PartReader::new(source, start, end);
    while let Some((piece, last)) = reader.next().map_err(PartError::Read)? {
        w.push_data(request, FrameType::BytesResponse, piece, last)?;
    }
    Ok(())
}

/// One part of the input, in pieces of [`PUSH_LEN`] bytes. One piece is read ahead, to
/// know which is the last; the two buffers are reused once the stream is done with
/// their bytes.
struct PartReader<'a> {
    source: &'a Source,
    at: u64,
    end: u64,
    buffers: [BytesMut; 2],
    turn: usize,
    ahead: Option<Bytes>,
    done: bool,
}

impl<'a> PartReader<'a> {
    /// The range `start..end` of a file source (ignored for stdin, read to its end).
    fn new(source: &'a Source, start: u64, end: u64) -> Self {
        Self {
            source,
            at: start,
            end,
            buffers: [BytesMut::new(), BytesMut::new()],
            turn: 0,
            ahead: None,
            done: false,
        }
    }

    /// The next piece, and whether it is the last (an empty part is one empty piece).
    fn next(&mut self) -> std::io::Result<Option<(Bytes, bool)>> {
        if self.done {
            return Ok(None);
        }
        let current = match self.ahead.take() {
            Some(piece) => piece,
            None => self.read_piece()?,
        };
        let next = if current.is_empty() {
            Bytes::new()
        } else {
            self.read_piece()?
        };
        let last = next.is_empty();
        if last {
            self.done = true;
        } else {
            self.ahead = Some(next);
        }
        Ok(Some((current, last)))
    }

    fn read_piece(&mut self) -> std::io::Result<Bytes> {
        self.turn ^= 1;
        let Some(buf) = self.buffers.get_mut(self.turn) else {
            return Ok(Bytes::new());
        };
        // Reclaims the buffer's memory once the previous piece read into it is gone.
        buf.clear();
        buf.reserve(PUSH_LEN);
        buf.resize(PUSH_LEN, 0);
        let n = match self.source {
            Source::Stdin => read_full(&mut std::io::stdin().lock(), buf)?,
            Source::File(file) => {
                let want = usize::try_from(self.end.saturating_sub(self.at))
                    .map_or(PUSH_LEN, |r| r.min(PUSH_LEN));
                read_full_at(file, buf.get_mut(..want).unwrap_or_default(), self.at)?
            }
        };
        self.at += n as u64;
        buf.truncate(n);
        Ok(buf.split().freeze())
    }
}

/// One stream: on this thread, no hand-over between threads. Frames are written as the
/// pushes make them, but the last, kept to be marked `stream-end`.
fn pack_one(mut stream: OutgoingStream, source: &Source) -> CliResult {
    let mut stdout = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut reader = PartReader::new(source, 0, 0);
    let mut frames = Vec::new();
    while let Some((piece, last)) = reader
        .next()
        .map_err(|e| Failure::bad(format!("cannot read the input: {e}")))?
    {
        stream
            .push_data(
                RequestId(1),
                FrameType::BytesResponse,
                piece,
                last,
                &mut frames,
            )
            .map_err(Failure::bad)?;
        if last {
            stream.end(&mut frames).map_err(Failure::bad)?;
        }
        let ready = frames.len() - usize::from(!last).min(frames.len());
        for frame in frames.drain(..ready) {
            let (header, payload) = frame.to_parts();
            stdout.write_all(&header)?;
            stdout.write_all(&payload)?;
        }
    }
    stdout.flush()?;
    Ok(())
}

/// Reads until `buf` is full or the input ends; the number of bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(buf.get_mut(n..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(unix)]
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(buf.get_mut(n..).unwrap_or_default(), offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(not(unix))]
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut file = file;
    file.seek(SeekFrom::Start(offset))?;
    read_full(&mut file, buf)
}

/// Stdin as a file and its length, when it is a regular file (`< file`).
fn stdin_file() -> Option<(File, u64)> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        let file = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .ok()
            .map(File::from)?;
        let meta = file.metadata().ok().filter(std::fs::Metadata::is_file)?;
        Some((file, meta.len()))
    }
    #[cfg(not(unix))]
    None
}

/// A new temporary file, already unlinked where the system allows.
fn temp_file() -> Result<File, Failure> {
    let dir = std::env::temp_dir();
    for attempt in 0..100u32 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = dir.join(format!("hgframe-{}-{nanos}-{attempt}", std::process::id()));
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => {
                #[cfg(unix)]
                let _ = std::fs::remove_file(&path);
                return Ok(file);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(Failure::bad(format!(
                    "cannot create a temporary file in {}: {e}",
                    dir.display()
                )))
            }
        }
    }
    Err(Failure::bad("cannot create a temporary file"))
}

/// Copies stdin (a pipe) to a temporary file, to cut it into parts by size.
fn spill_stdin() -> Result<(File, u64), Failure> {
    let mut file = temp_file()?;
    let len = std::io::copy(&mut std::io::stdin().lock(), &mut file)?;
    file.flush()?;
    Ok((file, len))
}

/// What `unpack` holds of a request whose turn has not come.
#[derive(Default)]
struct Held {
    /// The first bytes, in memory.
    memory: Vec<u8>,
    /// The bytes after them, once memory ran out: `(offset, length)` in the spill file.
    spilled: Vec<(u64, u64)>,
    /// Whether its `eos` came.
    ended: bool,
}

/// The temporary file held bytes go to once [`BUFFERED_MAX`] are in memory. Its space is
/// reclaimed whenever no request has bytes in it.
struct Spill {
    file: File,
    /// Where the next bytes go.
    len: u64,
    /// Bytes in it that are still held.
    live: u64,
}

/// The requests of `unpack`, written in ascending order of request id whatever the order
/// their data arrives in.
///
/// Responses carry the client's request ids, which are odd (docs/protocol.md), so the
/// requests come in the order 1, 3, 5, ... `next` is the lowest of them that has not
/// ended: its data is written as it is decoded. Data of a higher request is held until
/// `next` reaches it; a request below `next` has ended, so more data for it is an error.
/// A request that never comes (a gap) keeps the ones above it held until the input
/// ends; they are then written in order.
struct Responses<W: Write> {
    out: W,
    /// The request written as it arrives (odd; above 65535 once every id has ended).
    next: u32,
    /// Whether some of `next`'s data was written.
    next_started: bool,
    /// Requests above `next`, by id.
    held: BTreeMap<u16, Held>,
    /// Bytes of `held` in memory.
    held_memory: usize,
    /// Bytes of `held`, memory and file.
    held_total: u64,
    /// The most `held_total` may reach (`--max-held`).
    max_held: u64,
    spill: Option<Spill>,
}

impl<W: Write> Responses<W> {
    fn new(out: W, max_held: u64) -> Self {
        Self {
            out,
            next: 1,
            next_started: false,
            held: BTreeMap::new(),
            held_memory: 0,
            held_total: 0,
            max_held,
            spill: None,
        }
    }

    fn on_data(&mut self, request: u16, data: &[u8], eos: bool) -> Result<(), Failure> {
        if request % 2 == 0 {
            return Err(Failure::bad(format!(
                "request {request}: a response with an even request id (responses carry the client's odd ids; even ids are a server's own)"
            )));
        }
        let id = u32::from(request);
        if id < self.next {
            return Err(Failure::bad(format!(
                "request {request}: bytes-response data after its eos frame"
            )));
        }
        if id == self.next {
            self.out.write_all(data)?;
            self.next_started = true;
            if eos {
                self.advance()?;
            }
            return Ok(());
        }
        self.hold(request, data, eos)
    }

    /// Keeps `data` of `request` (above `next`) until its turn.
    fn hold(&mut self, request: u16, data: &[u8], eos: bool) -> Result<(), Failure> {
        let held = self.held.entry(request).or_default();
        if held.ended {
            return Err(Failure::bad(format!(
                "request {request}: bytes-response data after its eos frame"
            )));
        }
        let len = data.len() as u64;
        if self.held_total.saturating_add(len) > self.max_held {
            return Err(Failure::bad(format!(
                "request {request}: holding its data until request {} ends would take more than --max-held {} bytes",
                self.next, self.max_held
            )));
        }
        self.held_total += len;
        if held.spilled.is_empty() && self.held_memory + data.len() <= BUFFERED_MAX {
            held.memory.extend_from_slice(data);
            self.held_memory += data.len();
        } else if !data.is_empty() {
            let spill = match &mut self.spill {
                Some(spill) => spill,
                None => self.spill.insert(Spill {
                    file: tempfile::tempfile().map_err(|e| {
                        Failure::bad(format!("cannot create a temporary file: {e}"))
                    })?,
                    len: 0,
                    live: 0,
                }),
            };
            spill.file.seek(SeekFrom::Start(spill.len))?;
            spill.file.write_all(data)?;
            match held.spilled.last_mut() {
                // Contiguous with this request's last bytes in the file.
                Some((at, n)) if *at + *n == spill.len => *n += len,
                _ => held.spilled.push((spill.len, len)),
            }
            spill.len += len;
            spill.live += len;
        }
        held.ended = eos;
        Ok(())
    }

    /// Writes what is held of `held`.
    fn write_held(&mut self, held: Held) -> Result<(), Failure> {
        self.out.write_all(&held.memory)?;
        self.held_memory -= held.memory.len();
        self.held_total -= held.memory.len() as u64;
        if let Some(spill) = &mut self.spill {
            for (at, n) in held.spilled {
                spill.file.seek(SeekFrom::Start(at))?;
                std::io::copy(&mut (&mut spill.file).take(n), &mut self.out)?;
                spill.live -= n;
                self.held_total -= n;
            }
            if spill.live == 0 && spill.len > 0 {
                // Nothing in it is held any more: its space is reused from the start.
                spill.file.set_len(0)?;
                spill.len = 0;
            }
        }
        Ok(())
    }

    /// `next` ended: the requests after it that are held go out, up to the first that
    /// has not ended, which becomes `next` (or the first that has not come).
    fn advance(&mut self) -> Result<(), Failure> {
        self.next_started = false;
        loop {
            self.next += 2;
            let Ok(id) = u16::try_from(self.next) else {
                return Ok(()); // every id has ended
            };
            let Some(held) = self.held.remove(&id) else {
                return Ok(());
            };
            let ended = held.ended;
            self.write_held(held)?;
            if !ended {
                self.next_started = true;
                return Ok(());
            }
        }
    }

    /// The input ended: what is held goes out in order, and every request must have
    /// ended.
    fn end(mut self) -> Result<(), Failure> {
        let mut unended = if self.next_started {
            u16::try_from(self.next).ok()
        } else {
            None
        };
        if unended.is_none() {
            // A gap (a request that never came): the requests above it, in order.
            while let Some((id, held)) = self.held.pop_first() {
                let ended = held.ended;
                self.write_held(held)?;
                if !ended {
                    unended = Some(id);
                    break;
                }
            }
        }
        self.out.flush()?;
        match unended {
            Some(request) => Err(Failure::bad(format!(
                "request {request}: the input ended before its response's eos frame (truncated response)"
            ))),
            None => Ok(()),
        }
    }
}

pub(crate) fn unpack(args: UnpackArgs) -> CliResult {
    let mut input: Box<dyn Read> = match &args.file {
        Some(path) => Box::new(
            File::open(path)
                .map_err(|e| Failure::bad(format!("cannot read {}: {e}", path.display())))?,
        ),
        None => Box::new(std::io::stdin().lock()),
    };
    // Any payload the length field allows; what a frame decodes to is capped separately.
    let mut decoder = FrameDecoder::with_max_payload_len(MAX_PAYLOAD_LEN);
    let mut streams =
        IncomingStreams::new(Side::Client, Profiles::default(), DecodeLimits::default());
    let mut responses = Responses::new(
        std::io::BufWriter::with_capacity(128 * 1024, std::io::stdout().lock()),
        args.max_held,
    );
    let mut buf = BytesMut::with_capacity(READ_LEN);
    let mut decoded = Vec::new();
    let (mut n, mut offset) = (0u64, 0u64);
    let mut eof = false;
    loop {
        let frame = if eof {
            decoder.decode_eof(&mut buf)
        } else {
            decoder.decode(&mut buf)
        }
        .map_err(Failure::bad)?;
        let Some(frame) = frame else {
            if eof {
                break;
            }
            // More input: read into the buffer's free space (reclaimed once the frames
            // taken from it are gone).
            buf.reserve(READ_LEN);
            let start = buf.len();
            buf.resize(start + READ_LEN, 0);
            let got = read_full(&mut input, buf.get_mut(start..).unwrap_or_default())?;
            buf.truncate(start + got);
            eof = got == 0;
            continue;
        };
        let at = offset;
        offset += frame.encoded_len() as u64;
        let this = n;
        n += 1;
        let where_ = || format!("frame {this} at byte offset {at}");
        let Some(frame) = streams
            .on_frame_into(frame, &mut decoded)
            .map_err(|e| Failure::bad(format!("{}: {e}", where_())))?
        else {
            continue; // stream-settings
        };
        if frame.known_type() != Some(FrameType::BytesResponse) {
            continue;
        }
        let flags = BytesResponseFlags::from_bits_retain(frame.flags());
        if flags.contains(BytesResponseFlags::CONTINUATION | BytesResponseFlags::EOS) {
            return Err(Failure::bad(format!(
                "{}: bytes-response with both continuation and eos",
                where_()
            )));
        }
        // An encoded frame's data is in `decoded` (one buffer for the whole run).
        let data: &[u8] = if decoded.is_empty() {
            frame.payload()
        } else {
            &decoded
        };
        responses
            .on_data(
                frame.request_id().0,
                data,
                flags.contains(BytesResponseFlags::EOS),
            )
            .map_err(|e| match e {
                Failure::Bad(msg) => Failure::bad(format!("{}: {msg}", where_())),
                other => other,
            })?;
    }
    responses.end()
}
