//! `hgframe frames pack` and `hgframe frames unpack`: data to the frames a server would
//! answer with, and back. The whole content-encoding path of `hgframe-stream`, on a file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use bytes::Bytes;
use clap::builder::TypedValueParser as _;
use hgframe_stream::{
    DecodeLimits, EncodingSettings, IncomingStreams, OutgoingStream, ParallelEncoder,
    ParallelError, Profiles, Side, StreamError, StreamWriter,
};
use hgframe_wire::{
    BytesResponseFlags, FrameDecoder, FrameType, Frames, RequestId, StreamId,
    DEFAULT_MAX_FRAME_SIZE, MAX_PAYLOAD_LEN,
};

use super::{read_input, CliResult, Failure};

/// Options of `frames pack`.
#[derive(Debug, clap::Args)]
pub(crate) struct PackArgs {
    /// Content encoding of every stream.
    #[arg(long, default_value = "identity", value_parser = ["identity", "zstd-8mb"])]
    encoding: String,
    /// Largest frame payload on the wire.
    #[arg(long, default_value_t = DEFAULT_MAX_FRAME_SIZE,
          value_parser = clap::value_parser!(u32).range(1..=MAX_PAYLOAD_LEN as i64).map(|v| v as usize))]
    max_frame_size: usize,
    /// Number of streams (and requests) the input is cut into, encoded concurrently.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=127))]
    streams: u8,
    /// zstd compression level.
    #[arg(long, default_value_t = 3, allow_negative_numbers = true)]
    level: i32,
}

/// Options of `frames unpack`.
#[derive(Debug, clap::Args)]
pub(crate) struct UnpackArgs {
    /// File of binary frames (stdin when absent).
    file: Option<PathBuf>,
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

    let input = Bytes::from(read_stdin()?);
    let jobs: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, stream)| {
            // Part i: a contiguous, near-equal share of the input.
            let part = input.slice(input.len() * i / count..input.len() * (i + 1) / count);
            let request = RequestId(1 + 2 * i as u16);
            let job = move |w: &mut StreamWriter<'_>| -> Result<(), StreamError> {
                w.push_data(request, FrameType::BytesResponse, part, true)?;
                w.end()
            };
            (stream, job)
        })
        .collect();

    let mut stdout = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    ParallelEncoder::new()
        .run(jobs, |frame| {
            let (header, payload) = frame.to_parts();
            stdout.write_all(&header)?;
            stdout.write_all(&payload)
        })
        .map_err(|e| match e {
            ParallelError::Sink(io) => Failure::from(io),
            other => Failure::bad(other),
        })?;
    stdout.flush()?;
    Ok(())
}

pub(crate) fn unpack(args: UnpackArgs) -> CliResult {
    let input = Bytes::from(match args.file {
        Some(path) => read_input(Some(&path))?,
        None => read_stdin()?,
    });
    // Any payload the length field allows; what a frame decodes to is capped separately.
    let frames = Frames::with_decoder(input, FrameDecoder::with_max_payload_len(MAX_PAYLOAD_LEN));
    let mut streams =
        IncomingStreams::new(Side::Client, Profiles::default(), DecodeLimits::default());
    let mut responses: BTreeMap<u16, Vec<Bytes>> = BTreeMap::new();
    let mut offset = 0u64;
    for (n, frame) in frames.enumerate() {
        let frame = frame.map_err(Failure::bad)?;
        let at = offset;
        offset += frame.encoded_len() as u64;
        let where_ = || format!("frame {n} at byte offset {at}");
        let Some(frame) = streams
            .on_frame(frame)
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
        responses
            .entry(frame.request_id().0)
            .or_default()
            .push(frame.into_payload());
    }
    let mut stdout = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    for piece in responses.values().flatten() {
        stdout.write_all(piece)?;
    }
    stdout.flush()?;
    Ok(())
}

/// All of stdin, read into a buffer sized once when stdin is a file (`< file`), so a
/// large input is not copied over and over as the buffer grows.
fn read_stdin() -> Result<Vec<u8>, Failure> {
    use std::io::Read;
    let stdin = std::io::stdin();
    #[cfg(unix)]
    let hint = {
        use std::os::fd::AsFd;
        stdin
            .as_fd()
            .try_clone_to_owned()
            .ok()
            .map(std::fs::File::from)
            .and_then(|f| f.metadata().ok())
            .filter(std::fs::Metadata::is_file)
            .map_or(0, |m| usize::try_from(m.len()).unwrap_or(0))
    };
    #[cfg(not(unix))]
    let hint = 0;
    let mut buf = Vec::with_capacity(hint.saturating_add(1));
    stdin.lock().read_to_end(&mut buf)?;
    Ok(buf)
}
