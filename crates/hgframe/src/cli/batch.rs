//! `hgframe call URL --batch FILE|- [--concurrency N] [--stats]`: many commands over one
//! session, for scripts and load tests.
//!
//! - `tcp://` and `stdio:`: one byte-stream connection, shared as a `Session`.
//! - `http://` with `--http2`: one full-duplex `multirequest` exchange kept open.
//! - `http://` over HTTP/1.1 (half duplex: nothing is answered before the request ends):
//!   one `multirequest` exchange per N commands, one after the other.
//!
//! At most N calls are in flight (`--concurrency`, default 64): the session's window
//! and its pending calls are both N, so reading the input waits when they are full.
//! Input: JSON Lines, one command per non-blank line (`index` counts them from 0).
//! Output: one JSON line per command as it completes.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hgframe_http::bytestream::Connection;
use hgframe_http::{
    BatchEvent, Call, Client, ClientStats, Error, Permission, Response, Session, TextAtom,
};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::call::{failure, options, within, CallArgs, Target};
use super::{hex, read_input, CliResult, Failure};

/// One answer: the command's index and how it ended.
type Answer = (usize, Result<Response, Error>);

pub(crate) fn run(args: &CallArgs, target: Target) -> CliResult {
    let concurrency = args.concurrency.unwrap_or(64);
    if concurrency == 0 {
        return Err(Failure::usage("--concurrency must be at least 1"));
    }
    let source = args
        .batch
        .as_deref()
        .ok_or_else(|| Failure::usage("--batch needs FILE or -"))?;
    let input = read_input((source.as_os_str() != "-").then_some(source))?;
    let calls = parse(&input)?;
    let mut options = options(args);
    options
        .set_window(concurrency)
        .set_max_pending_calls(concurrency);
    let idle = (args.idle_timeout > 0).then(|| Duration::from_secs(args.idle_timeout));
    let permission = match args.permission.as_deref() {
        Some("rw") => Permission::ReadWrite,
        Some(_) => Permission::ReadOnly,
        None if calls.iter().any(|c| c.name() == "put") => Permission::ReadWrite,
        None => Permission::ReadOnly,
    };
    let show_stats = args.stats;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async move {
        let started = Instant::now();
        let total = calls.len();
        let (tx, rx) = mpsc::unbounded_channel::<Answer>();
        let outcome = match target {
            Target::Http(url) => {
                let client = Client::with_options(&url, options).map_err(Failure::usage)?;
                if args.http2 {
                    let session = within(idle, "opening the session", client.session(permission))
                        .await?
                        .map_err(failure)?;
                    run_session(session, calls, tx, rx, idle).await
                } else {
                    let sending = tokio::spawn(multirequests(
                        client.clone(),
                        permission,
                        calls,
                        concurrency,
                        tx,
                    ));
                    let printed = print_answers(rx, total, idle).await;
                    sending.abort();
                    printed.map(|errors| (errors, client.stats()))
                }
            }
            Target::Tcp(addr) => {
                let conn = within(idle, "connecting", Connection::connect_tcp(&addr, options))
                    .await?
                    .map_err(failure)?;
                run_session(conn.session().map_err(failure)?, calls, tx, rx, idle).await
            }
            Target::Stdio(program, words) => {
                let conn = Connection::spawn_command(&program, &words, options);
                let conn = within(idle, "starting the server", conn)
                    .await?
                    .map_err(failure)?;
                run_session(conn.session().map_err(failure)?, calls, tx, rx, idle).await
            }
        };
        let (errors, stats) = outcome?;
        if show_stats {
            let line = stats_line(total, errors, &stats, started.elapsed());
            let _ = writeln!(std::io::stderr(), "{line}");
        }
        if errors > 0 {
            return Err(Failure::bad(format!("{errors} of {total} calls failed")));
        }
        Ok(())
    });
    // Reading stdin may still block a runtime thread: do not wait for it.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

/// Issues every call on `session` (waiting for room as its pending calls allow),
/// prints the answers as they complete; the number of failures and the counters.
async fn run_session(
    session: Session,
    calls: Vec<Call>,
    tx: mpsc::UnboundedSender<Answer>,
    rx: mpsc::UnboundedReceiver<Answer>,
    idle: Option<Duration>,
) -> Result<(usize, ClientStats), Failure> {
    let total = calls.len();
    let issuing = {
        let session = session.clone();
        tokio::spawn(async move {
            for (index, call) in calls.into_iter().enumerate() {
                match session.call(call).await {
                    Ok(response) => {
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            let _ = tx.send((index, response.collect().await));
                        });
                    }
                    Err(e) => {
                        let _ = tx.send((index, Err(e)));
                    }
                }
            }
        })
    };
    let printed = print_answers(rx, total, idle).await;
    issuing.abort();
    let stats = session.stats();
    if printed.is_ok() {
        let _ = within(idle, "closing", session.close()).await;
    }
    printed.map(|errors| (errors, stats))
}

/// HTTP/1.1: one `multirequest` of at most `concurrency` commands at a time.
async fn multirequests(
    client: Client,
    permission: Permission,
    calls: Vec<Call>,
    concurrency: usize,
    tx: mpsc::UnboundedSender<Answer>,
) {
    let mut calls = calls.into_iter().enumerate().peekable();
    while calls.peek().is_some() {
        let chunk: Vec<(usize, Call)> = calls.by_ref().take(concurrency).collect();
        let indexes: Vec<usize> = chunk.iter().map(|(i, _)| *i).collect();
        let chunk: Vec<Call> = chunk.into_iter().map(|(_, c)| c).collect();
        let mut batch = match client.call_many(permission, chunk).await {
            Ok(batch) => batch,
            Err(e) => {
                for index in indexes {
                    let _ = tx.send((index, Err(e.duplicate())));
                }
                continue;
            }
        };
        let mut gathering: HashMap<usize, (BytesMut, Vec<Vec<TextAtom>>)> = HashMap::new();
        while let Some((i, event)) = batch.next().await {
            let Some(&index) = indexes.get(i) else {
                continue;
            };
            let entry = gathering.entry(i).or_default();
            match event {
                BatchEvent::Data(data) => entry.0.extend_from_slice(&data),
                BatchEvent::Text(atoms) => entry.1.push(atoms),
                BatchEvent::End => {
                    let (data, text) = gathering.remove(&i).unwrap_or_default();
                    let response = Response {
                        data: data.freeze(),
                        text,
                    };
                    let _ = tx.send((index, Ok(response)));
                }
                BatchEvent::Failed(e) => {
                    gathering.remove(&i);
                    let _ = tx.send((index, Err(e)));
                }
            }
        }
    }
}

/// Prints `total` answers as they come, one JSON line each; the number of failures.
async fn print_answers(
    mut rx: mpsc::UnboundedReceiver<Answer>,
    total: usize,
    idle: Option<Duration>,
) -> Result<usize, Failure> {
    let mut errors = 0;
    let mut stdout = std::io::stdout();
    for _ in 0..total {
        let Some((index, result)) = within(idle, "waiting for the answers", rx.recv()).await?
        else {
            return Err(Failure::bad(
                "the session ended before every call was answered",
            ));
        };
        if result.is_err() {
            errors += 1;
        }
        writeln!(stdout, "{}", answer_line(index, result))?;
    }
    stdout.flush()?;
    Ok(errors)
}

/// The output line of one command.
fn answer_line(index: usize, result: Result<Response, Error>) -> String {
    let mut line = Map::new();
    line.insert("index".into(), json!(index));
    match result {
        Ok(response) => {
            line.insert("ok".into(), json!(true));
            match std::str::from_utf8(&response.data) {
                Ok(text) => line.insert("data".into(), json!(text)),
                Err(_) => line.insert("data_hex".into(), json!(hex(&response.data))),
            };
            if !response.text.is_empty() {
                let text: Vec<String> = response
                    .text
                    .into_iter()
                    .map(|atoms| {
                        atoms
                            .into_iter()
                            .map(|atom| atom.render().unwrap_or(atom.format))
                            .collect()
                    })
                    .collect();
                line.insert("text".into(), json!(text));
            }
        }
        Err(e) => {
            line.insert("ok".into(), json!(false));
            let message = if e.is_application() {
                e.message().to_owned()
            } else {
                e.to_string()
            };
            line.insert("error".into(), json!(message));
        }
    }
    Value::Object(line).to_string()
}

/// The `--stats` object.
fn stats_line(calls: usize, errors: usize, stats: &ClientStats, elapsed: Duration) -> String {
    json!({
        "calls": calls,
        "errors": errors,
        "encoding": stats.profile,
        "request_wire_bytes": stats.request_wire_bytes,
        "request_decoded_bytes": stats.request_decoded_bytes,
        "response_wire_bytes": stats.response_wire_bytes,
        "response_decoded_bytes": stats.response_decoded_bytes,
        "seconds": elapsed.as_secs_f64(),
    })
    .to_string()
}

/// Every non-blank line of the input as a call; the first bad line fails the whole
/// batch before anything is sent (exit 1, naming the line).
fn parse(input: &[u8]) -> Result<Vec<Call>, Failure> {
    let text = std::str::from_utf8(input)
        .map_err(|e| Failure::bad(format!("the batch is not UTF-8: {e}")))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| parse_line(line).map_err(|e| Failure::bad(format!("line {}: {e}", n + 1))))
        .collect()
}

fn parse_line(line: &str) -> Result<Call, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err("not a JSON object".into());
    };
    let mut command = None;
    let mut args = Vec::new();
    let mut data = None;
    for (key, value) in fields {
        match (key.as_str(), value) {
            ("command", Value::String(name)) => command = Some(name),
            ("args", Value::Object(map)) => {
                for (name, value) in map {
                    let Value::String(value) = value else {
                        return Err(format!("argument {name:?} is not a string"));
                    };
                    args.push((name, value));
                }
            }
            ("data", Value::String(text)) => {
                if data.is_some() {
                    return Err("both data and data_hex".into());
                }
                data = Some(Bytes::from(text));
            }
            ("data_hex", Value::String(text)) => {
                if data.is_some() {
                    return Err("both data and data_hex".into());
                }
                data = Some(unhex(&text).ok_or("data_hex is not lowercase hex")?);
            }
            ("command" | "args" | "data" | "data_hex", _) => {
                return Err(format!("{key} has the wrong type"));
            }
            (other, _) => return Err(format!("unknown key {other:?}")),
        }
    }
    let command = command.ok_or("no \"command\"")?;
    let permission = if command == "put" {
        Permission::ReadWrite
    } else {
        Permission::ReadOnly
    };
    let mut call = Call::new(command).permission(permission);
    for (name, value) in args {
        call = call.arg(name, value);
    }
    if let Some(data) = data {
        call = call.data(data);
    }
    Ok(call)
}

fn unhex(text: &str) -> Option<Bytes> {
    if text.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    text.as_bytes()
        .chunks(2)
        .map(|pair| match pair {
            [hi, lo] => Some(digit(*hi)? << 4 | digit(*lo)?),
            _ => None,
        })
        .collect::<Option<Vec<u8>>>()
        .map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_calls_and_bad_lines_name_themselves() {
        let calls = parse(
            b"{\"command\":\"echo\",\"args\":{\"a\":\"1\"}}\n\n{\"command\":\"put\",\"data_hex\":\"00ff\"}\n",
        )
        .unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].name(), "echo");
        assert_eq!(calls[1].required_permission(), Permission::ReadWrite);
        let Err(Failure::Bad(e)) = parse(b"{\"command\":\"echo\"}\n{\"cmd\":1}\n") else {
            panic!("accepted");
        };
        assert!(e.starts_with("line 2: "), "{e}");
        assert!(parse(b"{\"command\":\"x\",\"data_hex\":\"0g\"}").is_err());
        assert!(parse(b"{\"command\":\"x\",\"data\":\"a\",\"data_hex\":\"00\"}").is_err());
        assert_eq!(
            unhex("00ff7a").unwrap(),
            Bytes::from_static(b"\x00\xff\x7a")
        );
    }

    #[test]
    fn answers_are_json_lines_as_specified() {
        let ok = Response {
            data: Bytes::from_static(b"a=1\n"),
            text: Vec::new(),
        };
        let line: Value = serde_json::from_str(&answer_line(3, Ok(ok))).unwrap();
        assert_eq!(line, json!({"index": 3, "ok": true, "data": "a=1\n"}));
        let bin = Response {
            data: Bytes::from_static(b"\xff"),
            text: Vec::new(),
        };
        assert!(answer_line(0, Ok(bin)).contains(r#""data_hex":"ff""#));
        let e = answer_line(1, Err(Error::application("no such file: nope")));
        assert!(e.contains(r#""error":"no such file: nope""#), "{e}");
        assert!(e.contains(r#""ok":false"#), "{e}");
    }
}
