//! N streams encoded on N worker threads, interleaved on one connection.
#![cfg(feature = "zstd")]

use std::collections::HashMap;

use bytes::Bytes;
use hgframe_stream::{
    EncodingSettings, OutgoingStream, ParallelEncoder, ParallelError, Profiles, Side, StreamError,
    StreamWriter,
};
use hgframe_wire::{Frame, FrameType, RequestId, StreamId};

fn data(n: usize, seed: u64) -> Bytes {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(format!("item {} value {}\n", x % 500, x % 7).as_bytes());
    }
    out.truncate(n);
    Bytes::from(out)
}

fn stream(id: u8) -> OutgoingStream {
    OutgoingStream::new(
        StreamId(id),
        Side::Server,
        &Profiles::default(),
        &EncodingSettings::new("zstd-8mb"),
    )
    .unwrap()
}

type Job = Box<dyn FnOnce(&mut StreamWriter<'_>) -> Result<(), StreamError> + Send>;
type BorrowingJob<'a> =
    Box<dyn FnOnce(&mut StreamWriter<'_>) -> Result<(), StreamError> + Send + 'a>;

fn job(request: u16, parts: Vec<Bytes>, end: bool) -> Job {
    Box::new(move |w: &mut StreamWriter<'_>| {
        let n = parts.len();
        for (i, part) in parts.into_iter().enumerate() {
            w.push_data(
                RequestId(request),
                FrameType::BytesResponse,
                part,
                i + 1 == n,
            )?;
        }
        if end {
            w.end()?;
        }
        Ok(())
    })
}

#[test]
fn each_stream_keeps_its_order_and_matches_sequential_encoding() {
    let inputs: Vec<Vec<Bytes>> = (0..4)
        .map(|i| {
            (0..30)
                .map(|j| data(3000 + 100 * j, i * 100 + j as u64))
                .collect()
        })
        .collect();
    let jobs: Vec<(OutgoingStream, Job)> = inputs
        .iter()
        .enumerate()
        .map(|(i, parts)| {
            (
                stream(2 + 2 * i as u8),
                job(1 + 2 * i as u16, parts.clone(), true),
            )
        })
        .collect();
    let mut wire: Vec<Frame> = Vec::new();
    let streams = ParallelEncoder::new()
        .batch_bytes(2000)
        .queue_depth(1)
        .run(jobs, |f| {
            wire.push(f);
            Ok::<(), ()>(())
        })
        .unwrap();
    assert_eq!(streams.len(), 4);
    for (i, s) in streams.iter().enumerate() {
        assert_eq!(s.id(), StreamId(2 + 2 * i as u8));
        assert!(!s.is_open());
    }
    // Encoding is deterministic: each stream's frames, in wire order, are exactly those
    // of the same pushes done on the calling thread.
    let mut per_stream: HashMap<u8, Vec<Frame>> = HashMap::new();
    for f in wire {
        per_stream.entry(f.stream_id().0).or_default().push(f);
    }
    for (i, parts) in inputs.iter().enumerate() {
        let mut s = stream(2 + 2 * i as u8);
        let mut want = Vec::new();
        let n = parts.len();
        for (j, part) in parts.iter().enumerate() {
            s.push_data(
                RequestId(1 + 2 * i as u16),
                FrameType::BytesResponse,
                part.clone(),
                j + 1 == n,
                &mut want,
            )
            .unwrap();
        }
        s.end(&mut want).unwrap();
        assert_eq!(per_stream[&(2 + 2 * i as u8)], want, "stream {i}");
    }
}

#[test]
fn streams_come_back_open_for_more() {
    let jobs = vec![(stream(2), job(1, vec![data(1000, 1)], false))];
    let mut wire = Vec::new();
    let mut streams = ParallelEncoder::new()
        .run(jobs, |f| {
            wire.push(f);
            Ok::<(), ()>(())
        })
        .unwrap();
    let s = &mut streams[0];
    assert!(s.is_open());
    s.push_data(
        RequestId(3),
        FrameType::BytesResponse,
        data(1000, 1),
        true,
        &mut wire,
    )
    .unwrap();
    s.end(&mut wire).unwrap();
    // The second push went through the same context: the repeat costs little.
    let sizes: Vec<usize> = wire[1..].iter().map(|f| f.payload().len()).collect();
    assert!(sizes[1] * 5 < sizes[0], "{sizes:?}");
}

#[test]
fn a_failing_sink_stops_the_workers() {
    let jobs: Vec<(OutgoingStream, Job)> = (0..2)
        .map(|i| {
            let parts = (0..200).map(|j| data(10_000, j)).collect();
            (stream(2 + 2 * i), job(1, parts, true))
        })
        .collect();
    let mut taken = 0;
    let result = ParallelEncoder::new().batch_bytes(1000).run(jobs, |_| {
        taken += 1;
        if taken == 3 {
            Err("connection lost")
        } else {
            Ok(())
        }
    });
    assert!(matches!(
        result,
        Err(ParallelError::Sink("connection lost"))
    ));
    assert_eq!(taken, 3);
}

#[test]
fn job_errors_and_panics_are_reported_by_index() {
    let ok: Job = job(1, vec![data(100, 1)], true);
    let failing: Job = Box::new(|w: &mut StreamWriter<'_>| {
        w.push_data(RequestId(3), FrameType::TextOutput, Bytes::new(), true)
    });
    let result = ParallelEncoder::new().run(vec![(stream(2), ok), (stream(4), failing)], |_| {
        Ok::<(), ()>(())
    });
    assert!(matches!(
        result,
        Err(ParallelError::Stream {
            index: 1,
            source: StreamError::NotDataFrameType { .. }
        })
    ));
    let panicking: Job = Box::new(|_: &mut StreamWriter<'_>| panic!("job panics"));
    let result = ParallelEncoder::new().run(vec![(stream(2), panicking)], |_| Ok::<(), ()>(()));
    assert!(matches!(
        result,
        Err(ParallelError::WorkerPanicked { index: 0 })
    ));
}

#[test]
fn a_job_sees_its_backlog() {
    // The backlog a job sees is bounded by the queue depth (2 batches waiting, one
    // being taken); a job can react to it, here by lowering its level.
    let seen = std::sync::Mutex::new(Vec::new());
    let jobs: Vec<(OutgoingStream, BorrowingJob<'_>)> = vec![(
        stream(2),
        Box::new(|w: &mut StreamWriter<'_>| {
            for j in 0..50 {
                w.push_data(RequestId(1), FrameType::BytesResponse, data(5000, j), false)?;
                seen.lock().unwrap().push(w.queued_batches());
                if w.queued_batches() > 1 {
                    // What an adaptive sender does when the connection lags.
                    w.set_level(1)?;
                }
            }
            w.end()
        }),
    )];
    ParallelEncoder::new()
        .batch_bytes(100)
        .queue_depth(2)
        .run(jobs, |_| Ok::<(), ()>(()))
        .unwrap();
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.len(), 50);
    assert!(seen.iter().all(|&q| q <= 3), "{seen:?}");
}

/// A job that records how many jobs run at once while it runs, waits at `meet` if
/// given, then encodes its data.
fn counting_job<'a>(
    running: &'a std::sync::atomic::AtomicUsize,
    most: &'a std::sync::atomic::AtomicUsize,
    meet: Option<&'a std::sync::Barrier>,
    request: u16,
) -> BorrowingJob<'a> {
    use std::sync::atomic::Ordering;
    Box::new(move |w: &mut StreamWriter<'_>| {
        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
        most.fetch_max(now, Ordering::SeqCst);
        match meet {
            // Returns only once every job has started: they all run at once.
            Some(barrier) => {
                barrier.wait();
            }
            // Gives the other threads time to start jobs, if they (wrongly) may.
            None => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
        let result = w.push_data(
            RequestId(request),
            FrameType::BytesResponse,
            data(5000, u64::from(request)),
            true,
        );
        running.fetch_sub(1, Ordering::SeqCst);
        result?;
        w.end()
    })
}

#[test]
fn threads_bounds_the_jobs_running_at_once_and_runs_them_all() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let all_four = std::sync::Barrier::new(4);
    // With a bound, never more jobs at once than threads; without, all four at once
    // (they meet at a barrier, which would hang if one waited for another to end).
    for (threads, meet) in [(1, None), (2, None), (usize::MAX, Some(&all_four))] {
        let (running, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let jobs: Vec<(OutgoingStream, BorrowingJob<'_>)> = (0..4)
            .map(|i| {
                (
                    stream(2 + 2 * i as u8),
                    counting_job(&running, &most, meet, 1 + 2 * i as u16),
                )
            })
            .collect();
        let mut ended = Vec::new();
        let streams = ParallelEncoder::new()
            .threads(threads)
            .run(jobs, |frame| {
                if frame
                    .stream_flags()
                    .contains(hgframe_wire::StreamFlags::STREAM_END)
                {
                    ended.push(frame.stream_id().0);
                }
                Ok::<(), ()>(())
            })
            .unwrap();
        let most = most.load(Ordering::SeqCst);
        assert!(
            (1..=threads.min(4)).contains(&most),
            "threads({threads}): {most}"
        );
        if meet.is_some() {
            assert_eq!(most, 4);
        }
        // Every job ran, and the streams come back in job order.
        ended.sort_unstable();
        assert_eq!(ended, [2, 4, 6, 8]);
        let ids: Vec<u8> = streams.iter().map(|s| s.id().0).collect();
        assert_eq!(ids, [2, 4, 6, 8]);
    }
}

#[test]
fn a_panicking_job_does_not_stop_the_jobs_after_it_on_its_thread() {
    let panicking: Job = Box::new(|_: &mut StreamWriter<'_>| panic!("job panics"));
    let mut frames = 0;
    let result = ParallelEncoder::new().threads(1).run(
        vec![
            (stream(2), panicking),
            (stream(4), job(3, vec![data(100, 1)], true)),
        ],
        |_| {
            frames += 1;
            Ok::<(), ()>(())
        },
    );
    assert!(matches!(
        result,
        Err(ParallelError::WorkerPanicked { index: 0 })
    ));
    // The second job still ran on the same (only) thread.
    assert!(frames >= 1);
}

#[test]
fn a_streams_first_data_reaches_the_sink_before_a_whole_batch() {
    // `frames pack` lets stream k start only once every lower stream's data reached
    // stdout: the first hand-over must not wait for a whole batch (256 KiB).
    use std::sync::atomic::{AtomicBool, Ordering};
    let seen = AtomicBool::new(false);
    let jobs: Vec<(OutgoingStream, BorrowingJob<'_>)> = vec![(
        stream(2),
        Box::new(|w: &mut StreamWriter<'_>| {
            for j in 0..3 {
                w.push_data(RequestId(1), FrameType::BytesResponse, data(1000, j), false)?;
            }
            // A few KiB pushed: the sink gets the data frames but the last now.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while !seen.load(Ordering::SeqCst) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the sink never saw the first data"
                );
                std::thread::yield_now();
            }
            w.push_data(RequestId(1), FrameType::BytesResponse, Bytes::new(), true)?;
            w.end()
        }),
    )];
    ParallelEncoder::new()
        .run(jobs, |frame| {
            if frame.known_type() == Some(FrameType::BytesResponse) {
                seen.store(true, Ordering::SeqCst);
            }
            Ok::<(), ()>(())
        })
        .unwrap();
}
