//! HTTP behaviours, picked by the last path segment, so any route works (e.g. `/t/{op}`).
//! Query parameters give the arguments (`key`, `prefix`, `topic`, `addr`); bodies are values.
//!
//! | op | does |
//! |---|---|
//! | `ok` | 200 `{method, path, query, params, body}` |
//! | `trap`, `loop`, `alloc` | panics, spins forever, allocates until stopped |
//! | `forbidden` | sends to `forbidden-topic`; 200 `{"send_error": ..}` when refused |
//! | `forbidden-unwrap` | the same, but traps when refused |
//! | `noise` | 10 MiB to stdout and invalid UTF-8 to stderr, then 200 `done` |
//! | `bad-utf8` | answers with a header value that is not UTF-8 |
//! | `fs`, `net`, `env` | tries to escape the sandbox and reports what happened |
//! | `state-put`, `state-get`, `state-scan`, `state-del` | state access by `key` / `prefix` |
//! | `put-then-fail`, `put-then-trap` | writes `key`, then fails (retry) or traps |
//! | `counter` | increments state key `counter` and answers the new value |
//! | `calls` | answers how many requests this instance has served, itself included (guest memory) |
//! | `publish` | sends the body to `topic`, keyed by `key` if given |
//! | `config` | 200 `{"key": .., "value": ..}`, `value` null when unset |
//! | `log` | logs at every level |
//! | `invalid`, `retry` | fails with that failure |
//! | `sleep` | sleeps `ms` milliseconds (a WASI wait), then 200 `slept` |
//! | `flood` | writes `key` (if given), then `count` times `what` (`send` to `topic`, `state`, `log`) of `size` bytes; 200 `{"done": n, "error": ..}` |
//! | `respond` | writes `key` (if given), then answers `status` with header `hname: hvalue` |

use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};

use sdk::{Failure, Host, Level, Message, Request, Response};
use serde_json::{Map, Value, json};

use crate::misbehave;

/// Requests this instance has served: 1 on a fresh instance, more when the host reuses it.
static CALLS: AtomicU32 = AtomicU32::new(0);

pub fn handle(host: &mut impl Host, req: &Request) -> Result<Response, Failure> {
    let segments = req.segments();
    let op = segments.last().map_or("", String::as_str);
    let query = |name: &str| req.query_param(name);
    let required = |name: &str| {
        query(name).ok_or_else(|| Failure::invalid(format!("query parameter {name} is required")))
    };
    Ok(match op {
        "ok" => echo(req),
        "trap" => misbehave::trap(),
        "loop" => misbehave::spin(),
        "alloc" => misbehave::memory_bomb(),
        "forbidden" => match host.send(message("forbidden-topic", None, b"nope")) {
            Ok(()) => Response::json(200, &json!({ "sent": true })),
            Err(e) => Response::json(200, &json!({ "send_error": e })),
        },
        "forbidden-unwrap" => {
            host.send(message("forbidden-topic", None, b"nope"))
                .expect("send to forbidden-topic");
            Response::json(200, &json!({ "sent": true }))
        }
        "noise" => noise(),
        "bad-utf8" => Response {
            status: 200,
            headers: vec![("x-bad".to_owned(), misbehave::invalid_utf8())],
            body: Vec::new(),
        },
        "fs" => Response::json(
            200,
            &json!({
                "read": outcome(std::fs::read_to_string("/etc/passwd")),
                "list": outcome(std::fs::read_dir("/")),
                "write": outcome(std::fs::write("/tmp/x", "y")),
            }),
        ),
        "net" => {
            use std::net::{TcpStream, ToSocketAddrs};
            let connect = match query("addr") {
                Some(addr) => outcome(TcpStream::connect(addr.as_str())),
                None => "query parameter addr is required".to_owned(),
            };
            let resolve = outcome("localhost:80".to_socket_addrs());
            Response::json(200, &json!({ "connect": connect, "resolve": resolve }))
        }
        "env" => Response::json(
            200,
            &json!({ "vars": std::env::vars().count(), "args": std::env::args().count() }),
        ),
        "state-put" => {
            put(host, &required("key")?, &req.body)?;
            Response::json(200, &json!({ "stored": true }))
        }
        "state-get" => match host.get(&required("key")?) {
            Some(value) => Response {
                status: 200,
                headers: vec![("content-type".into(), "application/octet-stream".into())],
                body: value,
            },
            None => Response::message(404, "not found"),
        },
        "state-scan" => {
            let prefix = query("prefix").unwrap_or_default();
            let entries: Map<String, Value> = host
                .scan(&prefix)
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned().into()))
                .collect();
            Response::json(200, &entries)
        }
        "state-del" => {
            host.delete(&required("key")?);
            Response::json(200, &json!({ "deleted": true }))
        }
        "put-then-fail" => {
            put(host, &required("key")?, &req.body)?;
            return Err(Failure::retry("after write"));
        }
        "put-then-trap" => {
            put(host, &required("key")?, &req.body)?;
            misbehave::trap()
        }
        "calls" => {
            let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
            Response::text(200, calls.to_string())
        }
        "counter" => {
            let current = host
                .get("counter")
                .and_then(|v| String::from_utf8(v).ok()?.trim().parse::<u64>().ok())
                .unwrap_or(0);
            let next = (current + 1).to_string();
            put(host, "counter", next.as_bytes())?;
            Response::text(200, next)
        }
        "publish" => {
            let key = query("key").map(String::into_bytes);
            match host.send(message(&required("topic")?, key, &req.body)) {
                Ok(()) => Response::json(200, &json!({ "sent": true })),
                Err(e) => Response::json(200, &json!({ "send_error": e })),
            }
        }
        "config" => {
            let key = required("key")?;
            let value = host.config(&key);
            Response::json(200, &json!({ "key": key, "value": value }))
        }
        "log" => {
            for level in [
                Level::Trace,
                Level::Debug,
                Level::Info,
                Level::Warn,
                Level::Error,
            ] {
                host.log(level, "hello from testkit");
            }
            Response::json(200, &json!({ "logged": 5 }))
        }
        "sleep" => {
            let ms = query("ms").and_then(|ms| ms.parse().ok()).unwrap_or(1000);
            std::thread::sleep(std::time::Duration::from_millis(ms));
            Response::text(200, "slept")
        }
        "flood" => {
            if let Some(key) = query("key") {
                put(host, &key, b"written before the flood")?;
            }
            let number = |name: &str| query(name).and_then(|n| n.parse::<usize>().ok());
            let (count, size) = (number("count").unwrap_or(1), number("size").unwrap_or(1024));
            let what = query("what").unwrap_or_default();
            let chunk = vec![b'x'; size];
            let mut done = 0;
            let mut error = None;
            for i in 0..count {
                let result = match what.as_str() {
                    "send" => host.send(message(&required("topic")?, None, &chunk)),
                    "state" => host.set(&format!("flood:{i}"), &chunk),
                    "log" => {
                        host.log(Level::Info, &String::from_utf8_lossy(&chunk));
                        Ok(())
                    }
                    _ => return Err(Failure::invalid("what must be send, state or log")),
                };
                if let Err(e) = result {
                    error = Some(e);
                    break;
                }
                done += 1;
            }
            Response::json(200, &json!({ "done": done, "error": error }))
        }
        "respond" => {
            if let Some(key) = query("key") {
                put(host, &key, b"written before the response")?;
            }
            let status = query("status").and_then(|s| s.parse().ok()).unwrap_or(200);
            let headers = match (query("hname"), query("hvalue")) {
                (Some(name), Some(value)) => vec![(name, value)],
                _ => Vec::new(),
            };
            Response {
                status,
                headers,
                body: b"forged body".to_vec(),
            }
        }
        "invalid" => return Err(Failure::invalid("bad request: testkit says no")),
        "retry" => return Err(Failure::retry("try later")),
        _ => Response::message(404, "no such op"),
    })
}

fn echo(req: &Request) -> Response {
    let params: Map<String, Value> = req
        .params
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into()))
        .collect();
    Response::json(
        200,
        &json!({
            "method": req.method,
            "path": req.path,
            "query": req.query,
            "params": params,
            "body": String::from_utf8_lossy(&req.body),
        }),
    )
}

/// 10 MiB of lines on stdout, and bytes that are not UTF-8 on stderr. Write errors are
/// ignored: a host that closes the streams is allowed to.
fn noise() -> Response {
    let mut line = [b'~'; 1024];
    line[1023] = b'\n';
    let mut out = std::io::stdout().lock();
    for _ in 0..10 * 1024 {
        if out.write_all(&line).is_err() {
            break;
        }
    }
    let _ = out.flush();
    let _ = std::io::stderr().write_all(b"\xff\xfe oops\n");
    Response::text(200, "done")
}

fn put(host: &mut impl Host, key: &str, value: &[u8]) -> Result<(), Failure> {
    host.set(key, value)
        .map_err(|e| Failure::invalid(format!("state set {key:?}: {e}")))
}

fn message(topic: &str, key: Option<Vec<u8>>, value: &[u8]) -> Message {
    Message {
        topic: topic.to_owned(),
        key,
        value: value.to_vec(),
        headers: Vec::new(),
    }
}

/// `"ok"`, or the error as text.
fn outcome<T, E: std::fmt::Display>(result: Result<T, E>) -> String {
    match result {
        Ok(_) => "ok".to_owned(),
        Err(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdk::fake::FakeHost;

    fn call(host: &mut FakeHost, target: &str, body: &str) -> Result<Response, Failure> {
        let mut req = Request::new("POST", target).with_body(body);
        req.params = vec![(
            "op".into(),
            req.segments().last().cloned().unwrap_or_default(),
        )];
        handle(host, &req)
    }

    fn json_of(res: Result<Response, Failure>) -> Value {
        res.map(|r| r.body_json())
            .unwrap_or_else(|f| panic!("{f:?}"))
    }

    #[test]
    fn echoes_the_request() {
        let body = json_of(call(&mut FakeHost::new(), "/t/ok?a=1", "hi"));
        assert_eq!(
            body,
            json!({ "method": "POST", "path": "/t/ok", "query": "a=1", "params": { "op": "ok" }, "body": "hi" })
        );
    }

    #[test]
    fn state_round_trip() {
        let mut host = FakeHost::new();
        call(&mut host, "/t/state-put?key=a:1", "one").ok();
        call(&mut host, "/t/state-put?key=a:2", "two").ok();
        call(&mut host, "/t/state-put?key=b", "three").ok();
        let got = call(&mut host, "/t/state-get?key=a:1", "");
        assert_eq!(got.map(|r| r.body), Ok(b"one".to_vec()));
        assert_eq!(
            json_of(call(&mut host, "/t/state-scan?prefix=a:", "")),
            json!({ "a:1": "one", "a:2": "two" })
        );
        call(&mut host, "/t/state-del?key=a:1", "").ok();
        let missing =
            call(&mut host, "/t/state-get?key=a:1", "").map(|r| (r.status, r.body_json()));
        assert_eq!(
            missing,
            Ok((404, json!({ "message": "not found", "status": 404 })))
        );
        assert!(matches!(
            call(&mut host, "/t/state-get", ""),
            Err(Failure::Invalid(_))
        ));
    }

    #[test]
    fn counts() {
        let mut host = FakeHost::new();
        for expected in ["1", "2", "3"] {
            assert_eq!(
                call(&mut host, "/t/counter", "").map(|r| r.body),
                Ok(expected.as_bytes().to_vec())
            );
        }
    }

    #[test]
    fn fails_after_writing() {
        let mut host = FakeHost::new();
        assert_eq!(
            call(&mut host, "/t/put-then-fail?key=k", "v"),
            Err(Failure::retry("after write"))
        );
        assert_eq!(host.text("k").as_deref(), Some("v"));
        assert_eq!(
            call(&mut host, "/t/invalid", ""),
            Err(Failure::invalid("bad request: testkit says no"))
        );
        assert_eq!(
            call(&mut host, "/t/retry", ""),
            Err(Failure::retry("try later"))
        );
    }

    #[test]
    fn publishes_or_reports_refusal() {
        let mut host = FakeHost::new();
        host.denied_topics.insert("forbidden-topic".into());
        assert_eq!(
            json_of(call(&mut host, "/t/publish?topic=out&key=k1", "v")),
            json!({ "sent": true })
        );
        assert_eq!(host.sent, [message("out", Some(b"k1".to_vec()), b"v")]);
        let refused = json_of(call(&mut host, "/t/forbidden", ""));
        assert!(
            refused["send_error"]
                .as_str()
                .is_some_and(|e| e.contains("not allowed"))
        );
    }

    #[test]
    fn reads_config_and_logs() {
        let mut host = FakeHost::new().with_config("greeting", "hi");
        assert_eq!(
            json_of(call(&mut host, "/t/config?key=greeting", "")),
            json!({ "key": "greeting", "value": "hi" })
        );
        assert_eq!(
            json_of(call(&mut host, "/t/config?key=nope", ""))["value"],
            Value::Null
        );
        call(&mut host, "/t/log", "").ok();
        assert_eq!(host.logs.borrow().len(), 5);
    }

    #[test]
    fn unknown_ops_are_404() {
        let res = call(&mut FakeHost::new(), "/t/what", "").map(|r| (r.status, r.body_json()));
        assert_eq!(
            res,
            Ok((404, json!({ "message": "no such op", "status": 404 })))
        );
    }
}
