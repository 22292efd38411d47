//! Memory stays bounded whatever a client streams: 1 GiB of command data against a
//! 16 MiB buffered-data limit gets the error at the limit, and every later frame is
//! refused without the reactor holding anything.

use std::alloc::System;
use std::sync::Mutex;

use bytes::Bytes;
use hgframe_reactor::{DataMode, Limit, ProtocolError, ServerAction, ServerConfig, ServerReactor};
use hgframe_wire::{
    CommandDataFlags, CommandNameFlags, Frame, FrameType, RequestId, StreamFlags, StreamId,
};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

/// Counts what the process allocates, so the tests see real memory, not only the
/// reactor's own accounting.
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The tests measure the whole process: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Bytes held now beyond what was held when the region began.
fn held(region: &Region<'_, System>) -> isize {
    // Growth by reallocation is counted in bytes_allocated, shrinking in
    // bytes_deallocated.
    let s = region.change();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

/// Allocations (and reallocations) since the region began.
fn allocations(region: &Region<'_, System>) -> usize {
    let s = region.change();
    s.allocations + s.reallocations
}

const CHUNK: usize = 32 * 1024;
const TOTAL: usize = 1 << 30;
const LIMIT: usize = 16 << 20;

fn name_frame(flags: CommandNameFlags) -> Frame {
    Frame::new(
        RequestId(1),
        StreamId(1),
        StreamFlags::STREAM_BEGIN,
        FrameType::CommandName,
        flags.bits(),
        "put",
    )
    .unwrap()
}

/// The same preallocated 32 KiB payload, cloned without copying.
fn data_frame(chunk: &Bytes, eos: bool) -> Frame {
    let flags = if eos {
        CommandDataFlags::EOS
    } else {
        CommandDataFlags::CONTINUATION
    };
    Frame::new(
        RequestId(1),
        StreamId(1),
        StreamFlags::empty(),
        FrameType::CommandData,
        flags.bits(),
        chunk.clone(),
    )
    .unwrap()
}

#[test]
fn one_gib_against_a_16_mib_limit() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let region = Region::new(GLOBAL);
    let mut peak = 0;
    let mut config = ServerConfig::default();
    config.set_max_buffered_data(LIMIT);
    let mut server = ServerReactor::new(config);
    let chunk = Bytes::from(vec![0x5a; CHUNK]);
    assert!(matches!(
        server.on_frame(name_frame(CommandNameFlags::HAVE_DATA)),
        ServerAction::WantFrame
    ));
    let frames = TOTAL / CHUNK;
    let mut error_at = None;
    for i in 0..frames {
        let action = server.on_frame(data_frame(&chunk, i + 1 == frames));
        assert!(
            server.buffered_bytes() <= LIMIT,
            "buffered {} at frame {i}",
            server.buffered_bytes()
        );
        peak = peak.max(held(&region));
        match (action, error_at) {
            (ServerAction::WantFrame, None) => {}
            (
                ServerAction::Error(ProtocolError::Limit {
                    limit: Limit::BufferedData,
                    value,
                    max,
                    ..
                }),
                None,
            ) => {
                assert_eq!(max, LIMIT);
                assert!(value > LIMIT);
                error_at = Some(i);
                // The partial command was dropped.
                assert_eq!(server.buffered_bytes(), 0);
            }
            (ServerAction::Error(ProtocolError::AlreadyErrored), Some(_)) => {
                assert_eq!(server.buffered_bytes(), 0);
            }
            (other, _) => panic!("frame {i}: {other:?}"),
        }
    }
    // What the process held never went far past the limit (the payload chunk, the
    // buffer, bookkeeping), for 1 GiB sent.
    assert!(peak < (LIMIT + (1 << 20)) as isize, "peak {peak} bytes");
    // Later frames of the request are refused without a single allocation.
    let before = allocations(&region);
    for _ in 0..1000 {
        let action = server.on_frame(data_frame(&chunk, false));
        assert!(matches!(
            action,
            ServerAction::Error(ProtocolError::AlreadyErrored)
        ));
    }
    assert_eq!(allocations(&region), before);
    // The error came exactly at the limit: with the 3 bytes of the command's name, the
    // 512th frame (16 MiB of data) is the first that does not fit.
    assert_eq!(error_at, Some(LIMIT / CHUNK - 1));
    // The client was told, once.
    let errors: Vec<Frame> = std::iter::from_fn(|| server.poll_frame()).collect();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].known_type(), Some(FrameType::ErrorResponse));
    assert!(matches!(server.on_input_eof(), ServerAction::Noop));
    assert!(server.is_finished());
}

#[test]
fn one_gib_streams_through_without_being_buffered() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let region = Region::new(GLOBAL);
    let mut peak = 0;
    let mut config = ServerConfig::default();
    config
        .set_max_buffered_data(LIMIT)
        .set_data_mode(DataMode::Streaming);
    let mut server = ServerReactor::new(config);
    let chunk = Bytes::from(vec![0x5a; CHUNK]);
    let ServerAction::RunCommand(cmd) = server.on_frame(name_frame(CommandNameFlags::HAVE_DATA))
    else {
        panic!("dispatched at once");
    };
    assert!(cmd.data_follows);
    let frames = TOTAL / CHUNK;
    let mut total = 0;
    for i in 0..frames {
        match server.on_frame(data_frame(&chunk, i + 1 == frames)) {
            ServerAction::CommandData { data, eos, .. } => {
                // The payload handed over is the frame's, not a copy.
                assert_eq!(data.as_ptr(), chunk.as_ptr());
                total += data.len();
                assert_eq!(eos, i + 1 == frames);
            }
            other => panic!("frame {i}: {other:?}"),
        }
        assert_eq!(server.buffered_bytes(), 0);
        peak = peak.max(held(&region));
    }
    assert_eq!(total, TOTAL);
    assert!(peak < 1 << 20, "peak {peak} bytes");
}
