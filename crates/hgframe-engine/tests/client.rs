//! The client side of the byte stream: many calls with large responses, read in any
//! order, never hang; the `hello` answer is bounded.
//!
//! Every test runs under [`within`]: a deadlock fails the test instead of hanging it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hgframe_engine::bytestream::{serve_connection, Connection, MAX_HELLO_ANSWER};
use hgframe_engine::{
    BatchEvent, Call, ClientOptions, CommandError, CommandInput, EngineConfig, Permission,
    Registry, Responder, Server,
};
use hgframe_wire::{BytesResponseFlags, Frame, FrameType, RequestId, StreamFlags, StreamId};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A deadlock fails the test after this long.
const PATIENCE: Duration = Duration::from_secs(60);

/// Each response: a little over 1 MiB, so more than 32 frames of 32 KiB.
const SIZE: usize = (1 << 20) + 4321;
/// The handler writes this much at a time.
const CHUNK: usize = 64 << 10;
/// Calls per test.
const CALLS: usize = 200;

async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .expect("deadlock: no answer within the patience")
}

/// Response `i` holds, in each chunk `c` of [`CHUNK`] bytes, `i` and `c` (big-endian
/// u32) and then the byte `(i + c) % 251`: any byte out of place or from another
/// response is caught.
fn expected_into(i: usize, offset: usize, len: usize, out: &mut Vec<u8>) {
    out.clear();
    let mut at = offset;
    while at < offset + len {
        let c = at / CHUNK;
        let end = ((c + 1) * CHUNK).min(offset + len);
        let start = out.len();
        out.resize(start + (end - at), ((i + c) % 251) as u8);
        let mut head = [0u8; 8];
        head[..4].copy_from_slice(&(i as u32).to_be_bytes());
        head[4..].copy_from_slice(&(c as u32).to_be_bytes());
        for k in at..end.min(c * CHUNK + 8) {
            out[start + k - at] = head[k - c * CHUNK];
        }
        at = end;
    }
}

/// Checks `data` as the bytes of response `i` at `offset`.
fn check(i: usize, offset: usize, data: &[u8], scratch: &mut Vec<u8>) {
    assert!(offset + data.len() <= SIZE, "response {i} is too long");
    expected_into(i, offset, data.len(), scratch);
    assert!(
        scratch[..] == data[..],
        "response {i} differs in {offset}..{}",
        offset + data.len()
    );
}

/// `big i=<n>`: response `n` of [`SIZE`] bytes, written [`CHUNK`] bytes at a time.
async fn big(input: CommandInput, mut out: Responder) -> Result<(), CommandError> {
    let i: usize = input
        .arg_str("i")?
        .parse()
        .map_err(|_| CommandError::new("bad i"))?;
    let mut buf = Vec::new();
    let mut at = 0;
    while at < SIZE {
        let len = CHUNK.min(SIZE - at);
        expected_into(i, at, len, &mut buf);
        if out.write(Bytes::copy_from_slice(&buf)).await.is_err() {
            return Ok(());
        }
        at += len;
    }
    let _ = out.finish(Bytes::new()).await;
    Ok(())
}

/// Counts the bytes written through it.
struct Counting<W> {
    inner: W,
    written: Arc<AtomicUsize>,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Counting<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            self.written.fetch_add(*n, Ordering::SeqCst);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A server with `big` on one end of an in-memory pipe; a client on the other.
async fn connect(options: ClientOptions) -> Connection {
    connect_counting(options).await.0
}

/// [`connect`], and the bytes the server has written so far.
async fn connect_counting(options: ClientOptions) -> (Connection, Arc<AtomicUsize>) {
    let mut registry = Registry::new();
    registry.register("big", Permission::ReadOnly, big);
    let server = Server::new(registry, EngineConfig::default()).unwrap();
    let (client_end, server_end) = tokio::io::duplex(256 << 10);
    let (server_read, server_write) = tokio::io::split(server_end);
    let written = Arc::new(AtomicUsize::new(0));
    let server_write = Counting {
        inner: server_write,
        written: Arc::clone(&written),
    };
    tokio::spawn(async move {
        serve_connection(server_read, server_write, &server, std::future::pending()).await
    });
    let (client_read, client_write) = tokio::io::split(client_end);
    let conn = within(Connection::new(client_read, client_write, options))
        .await
        .unwrap();
    (conn, written)
}

/// Identity: the tests are about queues, not compression (which a debug build makes
/// slow).
fn identity() -> ClientOptions {
    let mut options = ClientOptions::default();
    options.set_encodings(&["identity"]);
    options
}

fn calls() -> Vec<Call> {
    (0..CALLS)
        .map(|i| Call::new("big").arg("i", i.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_200_large_responses_collects_in_call_order() {
    let conn = connect(identity()).await;
    // Queued at once: nothing waits for a response to be read.
    let batch = conn.call_many(calls());
    assert_eq!(batch.len(), CALLS);
    let answers = within(batch.collect()).await;
    let mut scratch = Vec::new();
    for (i, answer) in answers.into_iter().enumerate() {
        let answer = answer.unwrap();
        assert_eq!(answer.data.len(), SIZE, "response {i}");
        check(i, 0, &answer.data, &mut scratch);
    }
    within(conn.close()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_200_large_responses_is_read_as_it_arrives() {
    let conn = connect(identity()).await;
    let mut batch = conn.call_many(calls());
    let mut offsets = vec![0usize; CALLS];
    let mut ended = [false; CALLS];
    let mut switches = 0;
    let mut last = usize::MAX;
    let mut scratch = Vec::new();
    within(async {
        while let Some((i, event)) = batch.next().await {
            assert!(!ended[i], "event after the end of {i}");
            if i != last {
                switches += 1;
                last = i;
            }
            match event {
                BatchEvent::Data(data) => {
                    check(i, offsets[i], &data, &mut scratch);
                    offsets[i] += data.len();
                }
                BatchEvent::Text(_) => {}
                BatchEvent::End => ended[i] = true,
                BatchEvent::Failed(e) => panic!("response {i} failed: {e}"),
            }
        }
    })
    .await;
    assert!(ended.iter().all(|e| *e));
    assert!(offsets.iter().all(|&n| n == SIZE), "{offsets:?}");
    // The responses were interleaved (several in flight at once), and still all whole.
    assert!(switches > CALLS, "{switches} switches");
    within(conn.close()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_not_read_stops_the_client_reading_instead_of_buffering_it_all() {
    let (conn, written) = connect_counting(identity()).await;
    let mut batch = conn.call_many(calls());
    // Nobody reads: the client holds one response queue (32 frames of 32 KiB), the
    // pipe holds 256 KiB, and then the server can write no more.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stalled = written.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(written.load(Ordering::SeqCst), stalled, "still reading");
    assert!(stalled < 4 << 20, "{stalled} bytes read for nobody");
    // And it goes on as soon as the batch is read.
    let mut ended = 0;
    let mut scratch = Vec::new();
    let mut offsets = vec![0usize; CALLS];
    within(async {
        while let Some((i, event)) = batch.next().await {
            match event {
                BatchEvent::Data(data) => {
                    check(i, offsets[i], &data, &mut scratch);
                    offsets[i] += data.len();
                }
                BatchEvent::End => ended += 1,
                BatchEvent::Text(_) => {}
                BatchEvent::Failed(e) => panic!("response {i} failed: {e}"),
            }
        }
    })
    .await;
    assert_eq!(ended, CALLS);
    assert!(written.load(Ordering::SeqCst) > CALLS * SIZE);
    within(conn.close()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_of_200_large_responses_read_one_after_another() {
    // The pattern that used to hang: 200 calls made first, then each response read to
    // its end before the next. The responses not read yet are held (up to the window
    // of calls in flight, 64 MiB here, under the default response buffer).
    let conn = connect(identity()).await;
    let mut streams = Vec::new();
    for call in calls() {
        streams.push(within(conn.call(call)).await.unwrap());
    }
    let mut scratch = Vec::new();
    for (i, stream) in streams.into_iter().enumerate() {
        let answer = within(stream.collect()).await.unwrap();
        assert_eq!(answer.data.len(), SIZE, "response {i}");
        check(i, 0, &answer.data, &mut scratch);
    }
    within(conn.close()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_of_200_large_responses_read_concurrently() {
    let conn = connect(identity()).await;
    let mut readers = tokio::task::JoinSet::new();
    for (i, call) in calls().into_iter().enumerate() {
        let mut stream = within(conn.call(call)).await.unwrap();
        readers.spawn(async move {
            let mut scratch = Vec::new();
            let mut offset = 0;
            while let Some(event) = stream.next().await {
                if let hgframe_engine::ResponseEvent::Data(data) = event.unwrap() {
                    check(i, offset, &data, &mut scratch);
                    offset += data.len();
                }
            }
            assert_eq!(offset, SIZE, "response {i}");
        });
    }
    within(async {
        while let Some(done) = readers.join_next().await {
            done.unwrap();
        }
    })
    .await;
    within(conn.close()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_response_buffer_an_unread_response_fails_instead_of_hanging() {
    // 4 MiB for responses not read yet, 12 calls of 1 MiB, and the last one read
    // first: the others cannot all be held, and must not stop the one awaited.
    let mut options = identity();
    options.set_response_buffer(4 << 20);
    let conn = connect(options).await;
    let mut streams = Vec::new();
    for call in calls().into_iter().take(12) {
        streams.push(conn.call(call).await.unwrap());
    }
    let last = streams.pop().unwrap();
    let answer = within(last.collect()).await.unwrap();
    let mut scratch = Vec::new();
    check(11, 0, &answer.data, &mut scratch);
    assert_eq!(answer.data.len(), SIZE);
    let mut dropped = 0;
    for (i, stream) in streams.into_iter().enumerate() {
        match within(stream.collect()).await {
            Ok(answer) => {
                assert_eq!(answer.data.len(), SIZE, "response {i}");
                check(i, 0, &answer.data, &mut scratch);
            }
            Err(e) => {
                assert!(
                    e.message().contains("response dropped unread")
                        && e.message().contains("set_response_buffer"),
                    "{e}"
                );
                dropped += 1;
            }
        }
    }
    assert!(dropped > 0, "the buffer of 4 MiB held 11 MiB?");
    within(conn.close()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_answer_of_10_mib_fails_the_connection() {
    // A hostile server: answers `hello` with 10 MiB and counts what it could write.
    let (client_end, server_end) = tokio::io::duplex(64 << 10);
    let (mut server_read, mut server_write) = tokio::io::split(server_end);
    let hostile = tokio::spawn(async move {
        // Answer once `hello` has been sent; read (and ignore) whatever comes.
        let mut sink = [0u8; 4096];
        assert!(server_read.read(&mut sink).await.unwrap() > 0);
        tokio::spawn(async move {
            while matches!(server_read.read(&mut sink).await, Ok(n) if n > 0) {}
        });
        let total = 10 << 20;
        let piece = Bytes::from(vec![b'x'; 32 << 10]);
        let mut written = 0usize;
        let mut flags = StreamFlags::STREAM_BEGIN;
        while written < total {
            let last = written + piece.len() >= total;
            let kind = if last {
                BytesResponseFlags::EOS
            } else {
                BytesResponseFlags::CONTINUATION
            };
            let frame = Frame::new(
                RequestId(1),
                StreamId(2),
                flags,
                FrameType::BytesResponse,
                kind.bits(),
                piece.clone(),
            )
            .unwrap();
            flags = StreamFlags::empty();
            if server_write.write_all(&frame.to_bytes()).await.is_err() {
                break;
            }
            written += piece.len();
        }
        written
    });
    let (client_read, client_write) = tokio::io::split(client_end);
    let started = Connection::new(client_read, client_write, ClientOptions::default());
    let e = within(started).await.unwrap_err();
    assert!(
        e.message().contains("answer to hello is longer than")
            && e.message().contains(&MAX_HELLO_ANSWER.to_string()),
        "{e}"
    );
    // The client stopped reading: the server could write about what the pipe (64 KiB)
    // and the answer's queue (32 events of one 32 KiB frame, plus the frame being
    // decoded) hold: a bound that does not grow with the answer, far from 10 MiB.
    let written = within(hostile).await.unwrap();
    assert!(
        written <= 40 * (32 << 10),
        "the client read {written} bytes of hello"
    );
}
