//! No plugin and no client can take the host down: waiting guests, host-side budgets, forged
//! responses, overload, slow clients, reloads and admin access. Each test misbehaves on
//! purpose and checks that the host stays up, a healthy plugin keeps answering, the caller
//! gets a clear error, and nothing of the failed input is applied.

use std::io::{Read as _, Write as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{TestHost, eventually, json};
use serde_json::Value;

/// The instance pool is small here (`max_concurrency = 16`, see [`start`]).
const CONFIG: &str = r#"
[[topic]]
name = "allowed"
partitions = 1

[plugin.testkit]
publish = ["allowed"]
limits = { memory_mib = 32, timeout_ms = 1000, concurrency = 4, outbox_kib = 256, state_write_kib = 256, log_kib = 16, response_kib = 64 }

[plugin.hello]
limits = { memory_mib = 16, timeout_ms = 1000 }

[[route]]
method = "GET"
path = "/t/{op}"
plugin = "testkit"

[[route]]
method = "POST"
path = "/t/{op}"
plugin = "testkit"

[[route]]
method = "GET"
path = "/hello/{name}"
plugin = "hello"

[[route]]
method = "GET"
path = "/files/{*rest}"
plugin = "testkit"
"#;

const RUNTIME: &str = "max_concurrency = 16\n";

async fn start(toml: &str) -> TestHost {
    TestHost::start_with(toml, "", RUNTIME).await
}

/// `hello` answers, and quickly: a healthy plugin is not held up by a misbehaving one.
async fn assert_healthy_plugin_answers(host: &TestHost) {
    let started = Instant::now();
    let (status, body) = json(host.get("/hello/ada").await).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "hello took {:?}",
        started.elapsed()
    );
}

/// What the testkit plugin has stored under `key`, if anything.
async fn stored(host: &TestHost, key: &str) -> Option<String> {
    let response = host.get(&format!("/t/state-get?key={key}")).await;
    match response.status().as_u16() {
        404 => None,
        200 => Some(response.text().await.unwrap()),
        other => panic!("state-get answered {other}"),
    }
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib << 10
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleeping_guests_hold_no_thread_and_free_their_slot_at_the_deadline() {
    let host = start(CONFIG).await;
    // Far more sleepers than instance slots (16) and host threads (2 workers).
    let started = Instant::now();
    let sleepers: Vec<_> = (0..40)
        .map(|_| {
            let (client, url) = (host.client.clone(), host.url.clone());
            tokio::spawn(async move {
                let response = client
                    .get(format!("{url}/t/sleep?ms=20000"))
                    .send()
                    .await
                    .unwrap();
                let retry_after = response.headers().get("retry-after").cloned();
                (json(response).await, retry_after)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_healthy_plugin_answers(&host).await;

    let mut timed_out = 0;
    for sleeper in sleepers {
        let ((status, body), retry_after) = sleeper.await.unwrap();
        assert_eq!(status, 503, "{body}");
        let message = body["message"].as_str().unwrap();
        if message.contains("within its limit of 1000 ms") {
            timed_out += 1;
        } else {
            assert!(message.contains("busy"), "{body}");
            assert_eq!(retry_after.unwrap(), "1");
        }
    }
    // Four ran (the plugin's cap) and were cut at their limit; the rest were shed. Nobody
    // waited for the 20 s sleep.
    assert!(timed_out >= 4, "{timed_out} timed out");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    // Every slot is free again: the whole pool's worth of requests runs at once.
    let oks: Vec<_> = (0..16)
        .map(|i| {
            let (client, url) = (host.client.clone(), host.url.clone());
            tokio::spawn(async move {
                let r = client.get(format!("{url}/hello/n{i}")).send().await;
                r.unwrap().status().as_u16()
            })
        })
        .collect();
    for ok in oks {
        assert_eq!(ok.await.unwrap(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_frees_its_instance() {
    let host = start(&CONFIG.replace("concurrency = 4", "concurrency = 1")).await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let gone = impatient
        .get(format!("{}/t/sleep?ms=900", host.url))
        .send()
        .await;
    assert!(gone.is_err(), "the client should have given up");
    // With a cap of one, this waits for the slot; it must get it at once, not after the
    // abandoned sleep ended.
    let started = Instant::now();
    let (status, body) = json(host.get("/t/ok").await).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "waited {:?} for the abandoned request's slot",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_past_its_grace_for_a_waiting_guest() {
    let config = CONFIG.replace(
        "timeout_ms = 1000, concurrency",
        "timeout_ms = 60000, concurrency",
    );
    let mut host = TestHost::start_with(&config, "shutdown_grace_ms = 500\n", RUNTIME).await;
    let sleeper = tokio::spawn({
        let (client, url) = (host.client.clone(), host.url.clone());
        async move { client.get(format!("{url}/t/sleep?ms=50000")).send().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let running = host.running.take().unwrap();
    let started = Instant::now();
    let stopped = tokio::time::timeout(Duration::from_secs(10), running.stop()).await;
    let result = stopped.expect("stop hung past its grace period");
    let error = result.expect_err("the sleeping request did not finish in the grace period");
    assert!(error.to_string().contains("grace period"), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stop took {:?} with a grace of 500 ms",
        started.elapsed()
    );
    sleeper.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_fail_the_input_by_name_and_apply_nothing() {
    let host = start(CONFIG).await;
    let (seen, _stop) = crate::common::collect(&host.bus(), "allowed", "observer");
    let floods = [
        (
            "send&topic=allowed&count=100&size=65536",
            "limits.outbox_kib",
        ),
        ("state&count=100&size=65536", "limits.state_write_kib"),
        ("log&count=100&size=4096", "limits.log_kib"),
    ];
    for (i, (flood, budget)) in floods.iter().enumerate() {
        let key = format!("flood{i}");
        let (status, body) =
            json(host.get(&format!("/t/flood?what={flood}&key={key}")).await).await;
        assert_eq!(status, 500, "{flood}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(budget), "{flood}: {body}");
        assert_eq!(stored(&host, &key).await, None, "{flood} wrote state");
    }
    // What fits in the budget goes through.
    let (status, body) = json(
        host.get("/t/flood?what=send&topic=allowed&count=2&size=1000&key=small")
            .await,
    )
    .await;
    assert_eq!((status, &body["done"]), (200, &Value::from(2)), "{body}");
    eventually(Duration::from_secs(5), "the two small messages", || async {
        (seen.lock().unwrap().len() == 2).then_some(())
    })
    .await;
    assert_eq!(
        stored(&host, "small").await.as_deref(),
        Some("written before the flood")
    );
    assert_healthy_plugin_answers(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_floods_keep_host_memory_bounded() {
    // The test process's memory is measured: no other test's host may run meanwhile.
    let config = CONFIG.replace("concurrency = 4", "concurrency = 8");
    let host = TestHost::start_alone(&config, "", RUNTIME).await;
    let (_, _) = json(host.get("/t/ok").await).await;
    let before = rss_bytes();
    for _ in 0..3 {
        let floods: Vec<_> = (0..8)
            .map(|i| {
                let (client, url) = (host.client.clone(), host.url.clone());
                let what = ["send&topic=allowed", "state"][i % 2];
                tokio::spawn(async move {
                    let url = format!("{url}/t/flood?what={what}&count=10000&size=1000000");
                    client.get(url).send().await.unwrap().status().as_u16()
                })
            })
            .collect();
        for flood in floods {
            assert_eq!(flood.await.unwrap(), 500);
        }
    }
    let grown = rss_bytes().saturating_sub(before);
    // 8 inputs × (256 KiB budget + up to 1 MiB in flight) plus the instances' memory: far
    // below the gigabytes these floods would stage without budgets.
    assert!(grown < 300 << 20, "the host grew by {} MiB", grown >> 20);
    assert_healthy_plugin_answers(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_responses_are_refused_before_any_effect() {
    let host = start(CONFIG).await;
    let forgeries = [
        "status=200&hname=content-length&hvalue=3",
        "status=200&hname=Transfer-Encoding&hvalue=chunked",
        "status=200&hname=connection&hvalue=close",
        "status=101&hname=upgrade&hvalue=websocket",
        "status=700",
        "status=99",
    ];
    for (i, forged) in forgeries.iter().enumerate() {
        let key = format!("forged{i}");
        let (status, body) = json(host.get(&format!("/t/respond?{forged}&key={key}")).await).await;
        assert_eq!(status, 500, "{forged}: {body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("invalid response"),
            "{body}"
        );
        assert_eq!(stored(&host, &key).await, None, "{forged} changed state");
    }
    // A valid custom header passes, and its write is applied.
    let response = host
        .get("/t/respond?status=201&hname=x-custom&hvalue=yes&key=fine")
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-custom"], "yes");
    assert_eq!(
        stored(&host, "fine").await.as_deref(),
        Some("written before the response")
    );

    // Over the response budget (64 KiB here): refused with the budget's name.
    let (status, body) = json(host.post("/t/ok", vec![b'x'; 100 << 10]).await).await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("limits.response_kib"),
        "{body}"
    );
    assert_healthy_plugin_answers(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connections_cannot_be_desynchronized() {
    let host = start(CONFIG).await;
    let addr = host.host().addr;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // A forged content-length first, then an honest request on the same connection.
    let requests = "GET /t/respond?status=200&hname=content-length&hvalue=0 HTTP/1.1\r\nHost: x\r\n\r\n\
                    GET /hello/second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    stream.write_all(requests.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let statuses: Vec<&str> = answer
        .match_indices("HTTP/1.1 ")
        .map(|(at, _)| answer[at..].lines().next().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["HTTP/1.1 500 Internal Server Error", "HTTP/1.1 200 OK"],
        "{answer}"
    );
    assert!(
        answer.contains("hello") && answer.contains("second"),
        "{answer}"
    );
    assert!(!answer.contains("forged body"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_and_connections_are_capped() {
    let host = TestHost::start_with(
        CONFIG,
        "header_timeout_ms = 300\nbody_timeout_ms = 300\nmax_connections = 2\n",
        RUNTIME,
    )
    .await;
    let addr = host.host().addr;

    // Headers that never finish: the connection is closed after the header timeout.
    let mut slow = std::net::TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    slow.write_all(b"GET /hello/x HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a half-sent request held its connection for {:?}",
        started.elapsed()
    );

    // A body that stops arriving: 408, not a hung input.
    let mut trickle = std::net::TcpStream::connect(addr).unwrap();
    trickle
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    trickle
        .write_all(b"POST /t/ok HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part")
        .unwrap();
    let mut answer = String::new();
    let _ = trickle.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // Two idle connections take both places; a third is served only when one closes.
    let idle: Vec<_> = (0..2)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let waiting = tokio::spawn({
        let (client, url) = (host.client.clone(), host.url.clone());
        async move {
            let started = Instant::now();
            let status = client.get(format!("{url}/hello/third")).send().await;
            (status.map(|r| r.status().as_u16()), started.elapsed())
        }
    });
    // The idle ones are closed by the header timeout, which frees the places.
    let (status, waited) = waiting.await.unwrap();
    assert_eq!(status.unwrap(), 200);
    assert!(
        waited >= Duration::from_millis(150),
        "the third connection was served while two were open ({waited:?})"
    );
    drop(idle);
    assert_healthy_plugin_answers(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_is_answered_by_get_routes_and_rest_params_capture_the_rest() {
    let host = start(CONFIG).await;
    let response = host
        .client
        .head(format!("{}/hello/ada", host.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.unwrap().is_empty());

    let (status, body) = json(host.get("/files/a/b%20c/ok").await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["params"]["rest"], "a/b c/ok", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_says_only_its_status() {
    let host = start(CONFIG).await;
    let (status, body) = json(host.get("/healthz").await).await;
    assert_eq!((status, body), (200, serde_json::json!({"status": "ok"})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_answer_loopback_or_a_token_only() {
    use axum::extract::ConnectInfo;
    use tower::ServiceExt as _;

    let host = start(CONFIG).await;
    // Over the real listener, from loopback: allowed.
    let response = host.get("/admin/plugins").await;
    assert_eq!(response.status(), 200);

    // The same router as seen from another machine (the peer address is what the server
    // records for each connection).
    let remote: std::net::SocketAddr = "192.0.2.7:40000".parse().unwrap();
    let ask = |token: Option<&'static str>, configured: Option<&'static str>| {
        let deployment = host.host().deployment().clone();
        async move {
            let router = eventhost::app::admin::router(
                deployment,
                eventhost::app::admin::AdminAccess {
                    token: configured.map(Arc::from),
                },
            );
            let mut request = axum::http::Request::get("/admin/plugins");
            if let Some(token) = token {
                request = request.header("authorization", format!("Bearer {token}"));
            }
            let mut request = request.body(axum::body::Body::empty()).unwrap();
            request.extensions_mut().insert(ConnectInfo(remote));
            let response = router.oneshot(request).await.unwrap();
            let status = response.status().as_u16();
            let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let (status, body) = ask(None, None).await;
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains(".wasm"), "paths leaked: {body}");
    let secret = Some("0123456789abcdef0123");
    let (status, body) = ask(None, secret).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = ask(Some("wrong-token-wrong-token"), secret).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = ask(Some("0123456789abcdef0123"), secret).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("testkit"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_an_http_only_plugin_to_a_topic_is_refused_and_dead_letters_nothing() {
    let host = start(CONFIG).await;
    let config = crate::common::test_config_with(
        host.dir.path(),
        "",
        RUNTIME,
        &format!("{CONFIG}\n[[subscription]]\ntopic = \"allowed\"\nplugin = \"hello\"\n"),
    );
    let report = host.host().deployment().apply(config).await;
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert!(report.failed[0].1.contains("message-handler"), "{report:?}");
    // The dead-letter topic was declared by the new config; watch it.
    let (dead, _stop) = crate::common::collect(&host.bus(), "allowed.dlq", "observer");
    host.bus()
        .publish(vec![eventhost::runtime::OutMessage {
            topic: "allowed".into(),
            key: None,
            value: b"hello?".to_vec(),
            headers: vec![],
        }])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        dead.lock().unwrap().is_empty(),
        "records were dead-lettered"
    );
    // The plugin keeps serving its routes.
    assert_healthy_plugin_answers(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_plugin_leaves_its_unfinished_records_for_later() {
    let subscribed = format!(
        "{CONFIG}\n[[topic]]\nname = \"work\"\npartitions = 1\n\
         [plugin.worker]\npath = \"{testkit}\"\npublish = [\"allowed\"]\n\
         config = {{ forward_to = \"allowed\" }}\nlimits = {{ timeout_ms = 5000 }}\n\
         [[subscription]]\ntopic = \"work\"\nplugin = \"worker\"\n",
        testkit = crate::common::plugin_wasm("testkit").display()
    );
    let host = start(&subscribed).await;
    let (forwarded, _s1) = crate::common::collect(&host.bus(), "allowed", "observer");
    let (dead, _s2) = crate::common::collect(&host.bus(), "work.dlq", "observer");
    let send = |value: &str| eventhost::runtime::OutMessage {
        topic: "work".into(),
        key: None,
        value: value.as_bytes().to_vec(),
        headers: vec![],
    };
    host.bus()
        .publish(vec![send("sleep:800"), send("forward:after")])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Remove the worker while its first record sleeps.
    let report = host
        .host()
        .deployment()
        .apply(crate::common::test_config_with(
            host.dir.path(),
            "",
            RUNTIME,
            CONFIG,
        ))
        .await;
    assert_eq!(report.unloaded, ["worker"], "{report:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        dead.lock().unwrap().is_empty(),
        "records were dead-lettered"
    );
    // Put it back: whatever it had not finished is delivered again, nothing is lost.
    host.host()
        .deployment()
        .apply(crate::common::test_config_with(
            host.dir.path(),
            "",
            RUNTIME,
            &subscribed,
        ))
        .await;
    eventually(
        Duration::from_secs(15),
        "both records forwarded",
        || async {
            let values: Vec<String> = forwarded
                .lock()
                .unwrap()
                .iter()
                .map(|r| String::from_utf8_lossy(&r.value).into_owned())
                .collect();
            (values.contains(&"slept:800".to_string()) && values.contains(&"after".to_string()))
                .then_some(())
        },
    )
    .await;
    assert!(
        dead.lock().unwrap().is_empty(),
        "records were dead-lettered"
    );
}

/// Whatever a client sends (method, path, query, headers, body), the host answers it without
/// a server error and without panicking.
#[test]
fn client_input_never_causes_a_server_error() {
    use proptest::prelude::*;
    use tower::ServiceExt as _;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The testkit echoes under /echo; its ops are single words, which the "x" prefix avoids.
    let config = crate::common::test_config_with(
        dir.path(),
        "",
        RUNTIME,
        &format!(
            "{CONFIG}\n[[route]]\nmethod = \"POST\"\npath = \"/echo/{{*rest}}\"\nplugin = \"testkit\"\n"
        ),
    );
    let host = runtime
        .block_on(eventhost::app::Host::build(config))
        .unwrap();
    let router = host.router();

    let method = prop::sample::select(vec![
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS",
    ]);
    let segment = "[a-zA-Z0-9%._~:@!$&'()*+,;=-]{0,12}".prop_map(|s| format!("x{s}"));
    let prefix = prop::sample::select(vec![
        "/hello", "/echo", "/t", "/files", "", "/admin", "/healthz",
    ]);
    let path = (prefix, prop::collection::vec(segment, 0..5))
        .prop_map(|(prefix, segments)| format!("{prefix}/{}", segments.join("/")));
    let query = prop::option::of("[a-zA-Z0-9%=&+._-]{0,30}");
    let header = ("[a-z][a-z0-9-]{0,15}", "[ -~]{0,40}");
    let headers = prop::collection::vec(header, 0..6);
    let body = prop::collection::vec(any::<u8>(), 0..2048);

    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(
            &(method, path, query, headers, body),
            |(method, path, query, headers, body)| {
                let uri = match &query {
                    Some(q) => format!("{path}?{q}"),
                    None => path.clone(),
                };
                let mut request = axum::http::Request::builder().method(method).uri(&uri);
                for (name, value) in &headers {
                    request = request.header(name.as_str(), value.as_str());
                }
                let Ok(request) = request.body(axum::body::Body::from(body)) else {
                    return Ok(()); // not a request a client can send
                };
                let response = runtime.block_on(router.clone().oneshot(request)).unwrap();
                prop_assert!(
                    response.status().as_u16() < 500,
                    "{method} {uri} {headers:?} answered {}",
                    response.status()
                );
                Ok(())
            },
        )
        .unwrap();
}
