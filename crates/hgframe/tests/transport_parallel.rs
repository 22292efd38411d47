//! Large responses compress on several cores: pieces go to worker streams, and arrive
//! in order, over HTTP and over a byte stream.

mod common;

use bytes::Bytes;
use common::TestServer;
use hgframe_http::{
    Call, Client, ClientOptions, CommandError, CommandInput, ExchangeStats, Permission, Responder,
    ResponseEvent, TextAtom,
};

/// Compressible data that is not one repeated block: numbered lines.
fn generated(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(format!("line {i} of the generated file, {}\n", i % 97).as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

/// Writes `text` as `big.txt`, and checks that `cat` gives it back whole.
async fn cat_back(server: &TestServer, text: &[u8]) {
    std::fs::write(server.root.path().join("big.txt"), text).unwrap();
    let client = Client::new(&server.url()).unwrap();
    assert!(
        cat(&client, "big.txt").await == text,
        "the response differs"
    );
}

/// What `cat` of `path` answers.
async fn cat(client: &Client, path: &str) -> Vec<u8> {
    let got = client
        .call(Call::new("cat").arg("path", path.to_owned()))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    got.data.to_vec()
}

/// The streams that carried response data.
fn data_streams(stats: &ExchangeStats) -> usize {
    stats.streams.iter().filter(|s| s.raw_bytes > 0).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_cat_is_compressed_on_several_streams_and_arrives_intact() {
    let server = TestServer::start(|c, _| {
        c.engine_mut().set_parallel_streams(2);
    })
    .await;
    let text = generated(8 << 20);
    cat_back(&server, &text).await;

    let stats = server.wait_stats(1).await;
    let stats = &stats[0];
    assert!(data_streams(stats) >= 2, "{:?}", stats.streams);
    assert!(stats.streams.iter().all(|s| s.profile == "zstd-8mb"));
    assert!(stats.streams.iter().all(|s| s.stream_id % 2 == 0));
    assert_eq!(stats.raw_bytes(), text.len() as u64);
    let wire: u64 = stats.streams.iter().map(|s| s.wire_bytes).sum();
    assert!(wire * 5 < text.len() as u64, "{:?}", stats.streams);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cat_reads_whole_worker_pieces_when_they_are_larger_than_its_chunk() {
    // Pieces of 1 MiB: `cat` reads what the response prefers, else its 256 KiB writes
    // would all stay on the exchange's own stream.
    let server = TestServer::start(|c, _| {
        c.engine_mut()
            .set_parallel_streams(2)
            .set_parallel_piece(1 << 20);
    })
    .await;
    let text = generated(6 << 20);
    cat_back(&server, &text).await;
    let stats = server.wait_stats(1).await;
    let stats = &stats[0];
    assert!(data_streams(stats) >= 2, "{:?}", stats.streams);
    // The exchange's own stream (2) carried none of the file: every read was a whole
    // piece, and the worker streams carried all of it.
    let own_raw: u64 = stats
        .streams
        .iter()
        .filter(|s| s.stream_id == 2)
        .map(|s| s.raw_bytes)
        .sum();
    assert_eq!(own_raw, 0, "{:?}", stats.streams);
    assert_eq!(stats.raw_bytes(), text.len() as u64);
}

#[tokio::test]
async fn one_parallel_stream_keeps_compression_on_the_exchange() {
    let server = TestServer::start(|c, _| {
        c.engine_mut().set_parallel_streams(1);
    })
    .await;
    let text = generated(2 << 20);
    cat_back(&server, &text).await;
    let stats = server.wait_stats(1).await;
    assert_eq!(stats[0].streams.len(), 1, "{:?}", stats[0].streams);
}

#[tokio::test]
async fn identity_needs_no_workers() {
    let server = TestServer::start(|c, _| {
        c.engine_mut().set_parallel_streams(4);
    })
    .await;
    let text = generated(1 << 20);
    std::fs::write(server.root.path().join("big.txt"), &text).unwrap();
    let mut options = ClientOptions::default();
    options.set_encodings(&["identity"]);
    let client = Client::with_options(&server.url(), options).unwrap();
    assert!(
        cat(&client, "big.txt").await == text,
        "the response differs"
    );
    let stats = server.wait_stats(1).await;
    assert_eq!(stats[0].streams.len(), 1, "{:?}", stats[0].streams);
}

/// Large pieces, small data and text interleaved: everything arrives in the order the
/// handler wrote it, although the large pieces compress elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_data_and_text_wait_behind_pieces_compressing() {
    let server = TestServer::start(|c, r| {
        c.engine_mut()
            .set_parallel_streams(3)
            .set_parallel_piece(64 << 10);
        r.register(
            "mixed",
            Permission::ReadOnly,
            |_: CommandInput, mut out: Responder| async move {
                for i in 0..6u8 {
                    out.write(Bytes::from(vec![b'a' + i; 200 << 10])).await?;
                    out.write(Bytes::from(vec![i])).await?;
                    out.text(vec![TextAtom::new("piece %s", vec![i.to_string()])])
                        .await?;
                }
                out.finish(Bytes::from_static(b"end")).await?;
                Ok::<(), CommandError>(())
            },
        );
    })
    .await;
    let client = Client::new(&server.url()).unwrap();
    let mut response = client.call(Call::new("mixed")).await.unwrap();
    let mut data = Vec::new();
    let mut texts = Vec::new();
    while let Some(event) = response.next().await {
        match event.unwrap() {
            ResponseEvent::Data(d) => data.extend_from_slice(&d),
            // Where the text came in the data.
            ResponseEvent::Text(_) => texts.push(data.len()),
            other => panic!("no extension was offered: {other:?}"),
        }
    }
    let mut expected = Vec::new();
    let mut text_at = Vec::new();
    for i in 0..6u8 {
        expected.extend(std::iter::repeat_n(b'a' + i, 200 << 10));
        expected.push(i);
        text_at.push(expected.len());
    }
    expected.extend_from_slice(b"end");
    assert!(data == expected, "the response differs");
    assert_eq!(texts, text_at);
    let stats = server.wait_stats(1).await;
    assert!(data_streams(&stats[0]) >= 2, "{:?}", stats[0].streams);
}

/// Several requests' large responses at once, in one exchange over h2c: a worker stream
/// queues a request's next piece behind its current one, and never another request's,
/// so each stream's frames go out in the order they were encoded, and a piece that
/// finds no stream waits for one. Every response arrives intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_responses_of_several_requests_at_once_arrive_intact() {
    let server = TestServer::start(|c, _| {
        c.engine_mut()
            .set_parallel_streams(2)
            .set_parallel_piece(64 << 10);
    })
    .await;
    // Whole pieces only (multiples of 64 KiB): each goes to a worker stream, never to
    // the exchange's own.
    let files: Vec<Vec<u8>> = (0..4usize)
        .map(|k| {
            let mut text = generated((16 + 2 * k) << 16);
            text.rotate_left(k * 1000);
            text
        })
        .collect();
    for (k, text) in files.iter().enumerate() {
        std::fs::write(server.root.path().join(format!("f{k}.txt")), text).unwrap();
    }
    let mut options = ClientOptions::default();
    options.set_http2_prior_knowledge(true);
    let client = Client::with_options(&server.url(), options).unwrap();
    let calls = (0..files.len())
        .map(|k| Call::new("cat").arg("path", format!("f{k}.txt")))
        .collect();
    let batch = client.call_many(Permission::ReadOnly, calls).await.unwrap();
    let answers = batch.collect().await;
    assert_eq!(answers.len(), files.len());
    for (k, answer) in answers.into_iter().enumerate() {
        let answer = answer.unwrap_or_else(|e| panic!("cat {k}: {e}"));
        assert!(answer.data == files[k], "cat {k}: the response differs");
    }
    let stats = server.wait_stats(1).await;
    assert!(data_streams(&stats[0]) >= 2, "{:?}", stats[0].streams);
    // A piece whose request found every stream with room taken by other requests
    // waited for one; it was not compressed on the exchange's task, its own stream.
    let own_raw: u64 = stats[0]
        .streams
        .iter()
        .filter(|s| s.stream_id == 2)
        .map(|s| s.raw_bytes)
        .sum();
    assert_eq!(own_raw, 0, "{:?}", stats[0].streams);
}
