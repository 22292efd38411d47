//! Handlers see who calls: the principal an authentication layer set, the peer's
//! address, the request's headers and the transport, over HTTP/1.1, h2c and the byte
//! stream; and shared state without a clone dance.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use common::{answer_of, command, raw, within};
use hgframe_http::bytestream::{serve_tcp, Connection};
use hgframe_http::{
    Call, ClientOptions, CommandError, CommandInput, HgFrameService, Permission, Principal,
    Registry, Responder, ServerConfig, State, MEDIA_TYPE,
};
use tower::Service as _;

/// Answers what it knows of its caller, one `name=value` line each.
async fn whoami(input: CommandInput, out: Responder) -> Result<(), CommandError> {
    let caller = input.caller();
    let principal = caller.principal().map_or("-", Principal::name).to_owned();
    let peer_is_loopback = caller.peer().is_some_and(|p| p.ip().is_loopback());
    let tag = caller
        .headers()
        .get("x-tag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let answer = format!(
        "principal={principal}\npeer-loopback={peer_is_loopback}\ntag={tag}\ntransport={:?}\n",
        caller.transport()
    );
    out.finish(answer).await?;
    Ok(())
}

fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.register("whoami", Permission::ReadOnly, whoami);
    registry
}

/// An HTTP server behind a layer that turns `Authorization: Bearer NAME` into a
/// [`Principal`] and refuses requests without it.
async fn start_authenticated() -> (String, tokio::sync::oneshot::Sender<()>) {
    let config = ServerConfig::default();
    let inner = HgFrameService::new(registry(), config.clone()).unwrap();
    let authed = tower::service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
        let mut inner = inner.clone();
        async move {
            let name = request
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_owned);
            let Some(name) = name else {
                let mut refused =
                    http::Response::new(hgframe_http::FrameBody::from(Bytes::from("who?\n")));
                *refused.status_mut() = http::StatusCode::UNAUTHORIZED;
                return Ok(refused);
            };
            request.extensions_mut().insert(Principal::new(name));
            inner.call(request).await
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        hgframe_http::serve_service(listener, authed, &config, async {
            let _ = stopped.await;
        })
        .await
    });
    (
        format!("http://{addr}/api/exp-http-v2-0001/ro/whoami"),
        stop,
    )
}

async fn ask(url: &str, headers: &[(&str, &str)], h2: bool) -> (u16, String) {
    let mut all = vec![("accept", MEDIA_TYPE), ("content-type", MEDIA_TYPE)];
    all.extend_from_slice(headers);
    let body = Bytes::from(command(1, "whoami", &[], None, true));
    let r = raw("POST", url, &all, body, h2).await;
    let text = if r.status == 200 {
        String::from_utf8(answer_of(&r.frames(), 1).0).unwrap()
    } else {
        r.text()
    };
    (r.status, text)
}

#[tokio::test]
async fn a_handler_reads_the_principal_that_middleware_set_over_http1_and_h2c() {
    let (url, _stop) = start_authenticated().await;
    let (status, _) = ask(&url, &[], false).await;
    assert_eq!(status, 401);
    for (h2, who, transport) in [(false, "alice", "Http1"), (true, "bob", "Http2")] {
        let bearer = format!("Bearer {who}");
        let (status, text) = ask(
            &url,
            &[("authorization", bearer.as_str()), ("x-tag", "t7")],
            h2,
        )
        .await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(
            text,
            format!("principal={who}\npeer-loopback=true\ntag=t7\ntransport={transport}\n")
        );
    }
}

#[tokio::test]
async fn a_client_behind_a_tower_layer_that_adds_authorization_is_seen_by_the_handler() {
    let (url, _stop) = start_authenticated().await;
    let root = url
        .trim_end_matches("/api/exp-http-v2-0001/ro/whoami")
        .to_owned();
    // Without credentials the layer in front of the server refuses the call.
    let bare = hgframe_http::Client::new(&root).unwrap();
    let e = bare.call(Call::new("whoami")).await.unwrap_err();
    assert_eq!(e.http_status(), Some(http::StatusCode::UNAUTHORIZED), "{e}");
    // A tower layer on the client adds them to every request.
    let authed = bare.clone().layer(tower::util::MapRequestLayer::new(
        |mut request: http::Request<hgframe_http::FrameBody>| {
            request.headers_mut().insert(
                http::header::AUTHORIZATION,
                http::HeaderValue::from_static("Bearer carol"),
            );
            request
        },
    ));
    let answer = within(async { authed.call(Call::new("whoami")).await?.collect().await })
        .await
        .unwrap();
    assert_eq!(
        answer.data,
        Bytes::from("principal=carol\npeer-loopback=true\ntag=-\ntransport=Http1\n")
    );
    // A fixed header, the same way.
    let tagged = bare
        .header(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_static("Bearer dave"),
        )
        .header(
            http::HeaderName::from_static("x-tag"),
            http::HeaderValue::from_static("t9"),
        );
    let answer = within(async { tagged.call(Call::new("whoami")).await?.collect().await })
        .await
        .unwrap();
    assert_eq!(
        answer.data,
        Bytes::from("principal=dave\npeer-loopback=true\ntag=t9\ntransport=Http1\n")
    );
}

/// A byte-stream server of `registry` over TCP, and a connection to it.
async fn connect_tcp(registry: Registry) -> Connection {
    let service = HgFrameService::new(registry, ServerConfig::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_tcp(
        listener,
        service.server().clone(),
        std::future::pending(),
    ));
    Connection::connect_tcp(&addr.to_string(), ClientOptions::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_byte_stream_caller_has_its_peer_address_and_no_principal() {
    let conn = connect_tcp(registry()).await;
    let answer = within(async { conn.call(Call::new("whoami")).await?.collect().await })
        .await
        .unwrap();
    assert_eq!(
        answer.data,
        Bytes::from("principal=-\npeer-loopback=true\ntag=-\ntransport=ByteStream\n")
    );
    conn.close().await;
}

#[tokio::test]
async fn state_reaches_every_call_of_a_command() {
    async fn count(
        State(calls): State<Arc<AtomicU64>>,
        _: CommandInput,
        out: Responder,
    ) -> Result<(), CommandError> {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        out.finish(n.to_string()).await?;
        Ok(())
    }
    let calls = Arc::new(AtomicU64::new(0));
    let mut registry = Registry::new();
    registry.register_with_state("count", Permission::ReadOnly, Arc::clone(&calls), count);
    let conn = connect_tcp(registry).await;
    for expected in 1..=3u64 {
        let answer = within(async { conn.call(Call::new("count")).await?.collect().await })
            .await
            .unwrap();
        assert_eq!(answer.data, Bytes::from(expected.to_string()));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    conn.close().await;
}

#[tokio::test]
async fn an_http_client_over_a_unix_socket_through_its_own_connector() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hgframe.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let service = HgFrameService::new(registry(), ServerConfig::default()).unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper_util::service::TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    // Every connection goes to the socket, whatever the URL's host.
    let connector = tower::service_fn(move |_: http::Uri| {
        let path = path.clone();
        // hyper wants an `Unpin` connecting future.
        Box::pin(async move {
            let stream = tokio::net::UnixStream::connect(path).await?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        })
    });
    let client = hgframe_http::Client::with_connector(
        "http://hgframe.local",
        ClientOptions::default(),
        connector,
    )
    .unwrap()
    .header(
        http::HeaderName::from_static("x-tag"),
        http::HeaderValue::from_static("unix"),
    );
    let answer = within(async { client.call(Call::new("whoami")).await?.collect().await })
        .await
        .unwrap();
    // No peer address over a Unix socket, no principal without a layer.
    assert_eq!(
        answer.data,
        Bytes::from("principal=-\npeer-loopback=false\ntag=unix\ntransport=Http1\n")
    );
}

#[test]
fn a_clients_debug_output_never_shows_its_header_values() {
    let client = hgframe_http::Client::new("127.0.0.1:1").unwrap().header(
        http::header::AUTHORIZATION,
        http::HeaderValue::from_static("Bearer s3cret"),
    );
    let shown = format!("{client:?}");
    assert!(shown.contains("authorization"), "{shown}");
    assert!(!shown.contains("s3cret"), "{shown}");
}
