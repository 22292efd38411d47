//! Entry points for fuzz targets and robustness tests of the stream layer: arbitrary
//! bytes in, never a panic, decoded sizes within [`DecodeLimits`]. Each function returns
//! `Err` with the property that broke (the fuzz target turns it into a crash), so the
//! library itself never panics. Not a stable API.
#![doc(hidden)]

use bytes::Bytes;
use hgframe_wire::{Frame, Frames, StreamFlags};
#[cfg(any(feature = "zstd", feature = "deflate"))]
use hgframe_wire::{FrameType, RequestId, StreamId};

use crate::{DecodeLimits, IncomingStreams, Profiles, Side};
#[cfg(any(feature = "zstd", feature = "deflate"))]
use crate::{EncodingSettings, OutgoingStream, StreamError};

/// What a property check found: `Err` names the property that broke.
pub type Check = Result<(), String>;

/// Small decode limits chosen by one fuzz byte, so the caps are hit often.
fn limits(byte: u8) -> DecodeLimits {
    let mut limits = DecodeLimits::default();
    limits
        .max_decoded_frame_len(1 << (8 + usize::from(byte % 13)))
        .max_decoding_streams(usize::from(byte >> 4) % 4 + 1);
    limits
}

/// What the stream layer did with a frame.
enum Fed {
    /// Passed on (decoded).
    Frame(Frame),
    /// Consumed (`stream-settings`).
    Consumed,
    /// Refused as a protocol violation.
    Refused,
}

/// Feeds `frame` to `incoming` and checks what comes out: no `encoded` flag, never more
/// than the cap, errors that blame the peer.
fn feed(incoming: &mut IncomingStreams, frame: Frame) -> Result<Fed, String> {
    let cap = incoming.limits().max_decoded_frame_len;
    let encoded = frame.stream_flags().contains(StreamFlags::ENCODED);
    let raw_len = frame.payload().len();
    match incoming.on_frame(frame) {
        Ok(Some(out)) => {
            if out.stream_flags().contains(StreamFlags::ENCODED) {
                return Err("a decoded frame still has the encoded flag".into());
            }
            if encoded && out.payload().len() > cap {
                return Err(format!(
                    "a frame decoded to {} bytes, over the cap of {cap}",
                    out.payload().len()
                ));
            }
            if !encoded && out.payload().len() != raw_len {
                return Err("a raw frame's payload changed".into());
            }
            Ok(Fed::Frame(out))
        }
        Ok(None) => Ok(Fed::Consumed),
        Err(e) => {
            // Every error of the incoming side is the peer's fault, and says so.
            if !e.is_protocol_violation() {
                return Err(format!("incoming error not marked as a violation: {e}"));
            }
            Ok(Fed::Refused)
        }
    }
}

/// The incoming side on arbitrary input; `data[0]` picks the mode (its two low bits)
/// and the profile of modes 1 and 2 (bit 2: `zstd-8mb` when clear, `deflate` when set),
/// and `data[1]` the limits:
///
/// - mode 0: `data[2..]` is frames in wire format, from a client or (mode 3) a server;
/// - mode 1: `data[2..]` is the content of a compressed stream's encoded frames, cut
///   into frames of `data[2]` bytes, so the decoder meets corrupt and hostile
///   compressed data (bombs, huge windows, bad checksums, final deflate blocks) under
///   its caps;
/// - mode 2: `data[2..]` are messages, encoded on a real outgoing stream, then one byte
///   of one frame is changed as `data[2..5]` say (or nothing is, when the position
///   falls outside): unchanged streams must decode to exactly the messages, changed
///   ones may fail but never panic or exceed the cap.
pub fn stream_decoder(data: &[u8]) -> Check {
    let [mode, limit_byte, rest @ ..] = data else {
        return Ok(());
    };
    let limits = limits(*limit_byte);
    let profile = if mode & 4 == 0 { "zstd-8mb" } else { "deflate" };
    match mode % 4 {
        1 => hostile(profile, limits, rest),
        2 => round_trip(profile, limits, rest),
        side => {
            let local = if side == 0 {
                Side::Server
            } else {
                Side::Client
            };
            let mut incoming = IncomingStreams::new(local, Profiles::default(), limits);
            for frame in Frames::new(Bytes::copy_from_slice(rest)).map_while(Result::ok) {
                if let Fed::Frame(f) = feed(&mut incoming, frame)? {
                    if local.owns(f.stream_id()) {
                        return Err(format!(
                            "a frame on our own stream {} passed",
                            f.stream_id()
                        ));
                    }
                }
            }
            Ok(())
        }
    }
}

/// Whether this build has the profile (modes 1 and 2 do nothing without it).
#[cfg(any(feature = "zstd", feature = "deflate"))]
fn built_in(profile: &str) -> bool {
    Profiles::default().contains(profile)
}

#[cfg(not(any(feature = "zstd", feature = "deflate")))]
fn hostile(_: &str, _: DecodeLimits, _: &[u8]) -> Check {
    Ok(())
}

#[cfg(not(any(feature = "zstd", feature = "deflate")))]
fn round_trip(_: &str, _: DecodeLimits, _: &[u8]) -> Check {
    Ok(())
}

#[cfg(any(feature = "zstd", feature = "deflate"))]
fn hostile(profile: &str, limits: DecodeLimits, data: &[u8]) -> Check {
    let Some((&cut, content)) = data.split_first() else {
        return Ok(());
    };
    if !built_in(profile) {
        return Ok(());
    }
    let cut = usize::from(cut).max(1) * 16;
    let mut incoming = IncomingStreams::new(Side::Server, Profiles::default(), limits);
    let settings = hgframe_wire::payload::stream_settings::StreamSettings::new(profile)
        .encode()
        .map_err(|e| format!("{profile} settings do not encode: {e}"))?;
    let frame = |flags, frame_type, payload: Bytes| {
        Frame::new(RequestId(1), StreamId(1), flags, frame_type, 0, payload)
            .map_err(|e| format!("a frame of the target does not build: {e}"))
    };
    let first = frame(
        StreamFlags::STREAM_BEGIN,
        FrameType::StreamSettings,
        settings,
    )?;
    if !matches!(feed(&mut incoming, first)?, Fed::Consumed) {
        return Err(format!("a {profile} stream-settings frame was refused"));
    }
    for chunk in content.chunks(cut) {
        let f = frame(
            StreamFlags::ENCODED,
            FrameType::CommandData,
            Bytes::copy_from_slice(chunk),
        )?;
        if let Fed::Refused = feed(&mut incoming, f)? {
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(any(feature = "zstd", feature = "deflate"))]
fn round_trip(profile: &str, limits: DecodeLimits, data: &[u8]) -> Check {
    let [frame_pick, offset_hi, offset_lo, size_byte, messages @ ..] = data else {
        return Ok(());
    };
    if !built_in(profile) {
        return Ok(());
    }
    let profiles = Profiles::default();
    // Level 6 for deflate (3, the default, is zstd's).
    let level = if profile == "deflate" { 6 } else { 3 };
    let mut out = OutgoingStream::new(
        StreamId(1),
        Side::Client,
        &profiles,
        &EncodingSettings::new(profile).with_level(level),
    )
    .map_err(|e| format!("a {profile} stream does not open: {e}"))?;
    // Raw bytes per frame within the receiver's cap, as the sender is told to.
    out.set_max_frame_raw_len(limits.max_decoded_frame_len);
    out.set_max_frame_size(usize::from(*size_byte).max(1) * 64);
    let mut frames = Vec::new();
    let mut sent = Vec::new();
    let mut request = 1u16;
    for message in messages.split(|&b| b == 0xff) {
        let data = Bytes::copy_from_slice(message);
        let pushed = if message.first() == Some(&0xfe) {
            // Raw frames on an encoded stream keep the context untouched.
            out.push_raw_data(
                RequestId(request),
                FrameType::CommandData,
                data,
                true,
                &mut frames,
            )
        } else {
            out.push_data(
                RequestId(request),
                FrameType::CommandData,
                data,
                true,
                &mut frames,
            )
        };
        pushed.map_err(|e| format!("pushing {} bytes failed: {e}", message.len()))?;
        sent.extend_from_slice(message);
        request = request.wrapping_add(2);
    }
    out.end(&mut frames)
        .map_err(|e: StreamError| format!("end failed: {e}"))?;

    // Change one byte of one frame's payload, if the position is inside.
    let offset = usize::from(u16::from_le_bytes([*offset_lo, *offset_hi]));
    let pick = usize::from(*frame_pick);
    let mut changed = false;
    if let Some(frame) = frames.get_mut(pick) {
        let mut payload = frame.payload().to_vec();
        if let Some(b) = payload.get_mut(offset) {
            *b ^= 0x5a;
            changed = true;
            *frame = frame
                .clone()
                .with_payload(Bytes::from(payload))
                .map_err(|e| format!("a changed frame does not build: {e}"))?;
        }
    }

    let mut incoming = IncomingStreams::new(Side::Server, profiles, limits);
    let mut received = Vec::new();
    for frame in frames {
        match feed(&mut incoming, frame)? {
            Fed::Frame(f) => received.extend_from_slice(f.payload()),
            Fed::Consumed => {}
            Fed::Refused if changed => return Ok(()),
            Fed::Refused => return Err("an unchanged stream failed to decode".into()),
        }
    }
    if !changed && received != sent {
        return Err(format!(
            "sent {} bytes, received {} different ones",
            sent.len(),
            received.len()
        ));
    }
    Ok(())
}

/// Seed inputs made from valid traffic, for the `stream_decoder` target:
/// `(target, input)`. Without the `zstd` feature, only identity streams.
pub fn seeds() -> Result<Vec<(&'static str, Vec<u8>)>, String> {
    let mut seeds = Vec::new();
    let frame = |line: &str| Frame::from_human(line).map_err(|e| format!("{line}: {e}"));
    let mut wire = vec![0u8, 12];
    for line in [
        r"1 1 stream-begin stream-settings 0 \x08identity",
        "1 1 0 command-name eos a",
        "3 1 encoded command-name eos b",
        "5 3 stream-begin|stream-end command-name eos c",
        "7 1 stream-end command-name eos d",
    ] {
        wire.extend_from_slice(&frame(line)?.to_bytes());
    }
    seeds.push(("stream_decoder", wire));
    #[cfg(any(feature = "zstd", feature = "deflate"))]
    for (profile, mode_bit) in [("zstd-8mb", 0u8), ("deflate", 4)] {
        if !built_in(profile) {
            continue;
        }
        let messages: &[&[u8]] = &[b"hello hello hello", b"world", b"\xferaw", &[b'x'; 3000]];
        let joined = messages.join(&0xff);
        let mut input = vec![2 | mode_bit, 12, 200, 0, 0, 4];
        input.extend_from_slice(&joined);
        seeds.push(("stream_decoder", input));
        // The encoded payloads of the same stream, back to back, for mode 1.
        let mut out = OutgoingStream::new(
            StreamId(1),
            Side::Client,
            &Profiles::default(),
            &EncodingSettings::new(profile).with_level(if mode_bit == 0 { 3 } else { 6 }),
        )
        .map_err(|e| e.to_string())?;
        let mut frames = Vec::new();
        for m in messages {
            out.push_data(
                RequestId(1),
                FrameType::CommandData,
                Bytes::copy_from_slice(m),
                false,
                &mut frames,
            )
            .map_err(|e| e.to_string())?;
        }
        let mut content = vec![1 | mode_bit, 12, 255];
        let mut client = vec![0, 12];
        for f in &frames {
            if f.stream_flags().contains(StreamFlags::ENCODED) {
                content.extend_from_slice(f.payload());
            }
            client.extend_from_slice(&f.to_bytes());
        }
        seeds.push(("stream_decoder", content));
        seeds.push(("stream_decoder", client));
    }
    Ok(seeds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_accepts_valid_and_garbage_input() {
        let garbage: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
        for mode in 0..8u8 {
            for limit in [0u8, 7, 200] {
                let mut data = vec![mode, limit];
                data.extend_from_slice(&garbage);
                stream_decoder(&data).unwrap();
            }
        }
    }

    #[test]
    fn seeds_pass_their_checks() {
        for (target, input) in seeds().unwrap() {
            assert_eq!(target, "stream_decoder");
            stream_decoder(&input).unwrap();
        }
    }

    #[cfg(feature = "zstd")]
    #[test]
    fn unchanged_streams_round_trip() {
        // Frame 200 does not exist: nothing is changed, so the data must come back.
        let mut data = vec![2, 12, 200, 0, 0, 4];
        data.extend_from_slice(b"hello hello hello\xffworld\xff\xfe raw\xff");
        data.extend_from_slice(&b"x".repeat(10_000));
        stream_decoder(&data).unwrap();
    }

    #[cfg(feature = "zstd")]
    #[test]
    fn a_changed_byte_is_an_error_or_a_different_payload_never_a_panic() {
        for offset in 0..40u8 {
            let mut data = vec![2, 3, 1, 0, offset, 1];
            data.extend_from_slice(&b"abcdefgh".repeat(64));
            stream_decoder(&data).unwrap();
        }
    }

    #[cfg(feature = "deflate")]
    #[test]
    fn unchanged_deflate_streams_round_trip_and_changed_ones_never_panic() {
        // Mode 6: deflate round trips; frame 200 does not exist, nothing is changed.
        let mut data = vec![6, 12, 200, 0, 0, 4];
        data.extend_from_slice(b"hello hello hello\xffworld\xff\xfe raw\xff");
        data.extend_from_slice(&b"x".repeat(10_000));
        stream_decoder(&data).unwrap();
        for offset in 0..40u8 {
            let mut data = vec![6, 3, 1, 0, offset, 1];
            data.extend_from_slice(&b"abcdefgh".repeat(64));
            stream_decoder(&data).unwrap();
        }
    }

    #[cfg(feature = "deflate")]
    #[test]
    fn hostile_deflate_content_stays_under_the_cap() {
        // Mode 5: a deflate bomb (8 MiB of zeros) as a stream's content, under a 256-byte
        // cap, then a final block, then garbage: refused, never over the cap.
        use crate::encoding::{ContentEncoder, DeflateEncoder};
        let mut bomb = Vec::new();
        DeflateEncoder::new(9)
            .unwrap()
            .encode_flush(&vec![0; 8 << 20], &mut bomb)
            .unwrap();
        bomb.truncate(bomb.len() - 4);
        for content in [bomb, vec![0x03, 0x00], vec![0x07; 100]] {
            let mut data = vec![5, 0, 255];
            data.extend_from_slice(&content);
            stream_decoder(&data).unwrap();
        }
    }
}
