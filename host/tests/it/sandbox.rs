//! Misbehaving plugins fail only their own input: the host stays up, answers other inputs,
//! and keeps each plugin inside its sandbox.

use std::time::{Duration, Instant};

use crate::common::{TestHost, json};

const CONFIG: &str = r#"
[[topic]]
name = "allowed"
partitions = 1

[plugin.testkit]
publish = ["allowed"]
limits = { memory_mib = 32, timeout_ms = 1500 }

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
"#;

async fn assert_still_serving(host: &TestHost) {
    let (status, body) = json(host.get("/t/ok").await).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = json(host.get("/hello/ada").await).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_fails_only_its_request() {
    let host = TestHost::start(CONFIG).await;
    let (status, body) = json(host.get("/t/trap").await).await;
    assert_eq!(status, 500);
    assert_eq!(body["status"], 500);
    assert!(
        body["message"].as_str().unwrap().contains("testkit"),
        "{body}"
    );
    assert!(
        !body["message"].as_str().unwrap().contains("boom"),
        "internal details leaked: {body}"
    );
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_is_cut_at_the_time_limit_and_blocks_nobody() {
    let host = TestHost::start(CONFIG).await;
    let started = Instant::now();
    let looping = tokio::spawn({
        let (client, url) = (host.client.clone(), host.url.clone());
        async move { client.get(format!("{url}/t/loop")).send().await.unwrap() }
    });
    // While the loop burns CPU, other requests are answered.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, _) = json(host.get("/hello/bob").await).await;
    assert_eq!(status, 200);
    assert!(
        !looping.is_finished(),
        "the looping request should still be running"
    );

    let (status, body) = json(looping.await.unwrap()).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("1500 ms"),
        "{body}"
    );
    // The limit is 1500 ms; allow generous slack for a loaded machine, but never a hang.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_hits_the_limit() {
    let host = TestHost::start(CONFIG).await;
    let (status, body) = json(host.get("/t/alloc").await).await;
    assert_eq!(status, 500, "{body}");
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_to_a_forbidden_topic_is_refused_and_publishes_nothing() {
    let host = TestHost::start(CONFIG).await;
    let (seen, _stop) = crate::common::collect(&host.bus(), "allowed", "observer");

    let (status, body) = json(host.get("/t/forbidden").await).await;
    assert_eq!(status, 200);
    let error = body["send_error"].as_str().expect("send was refused");
    assert!(
        error.contains("forbidden-topic") && error.contains("may not publish"),
        "{error}"
    );

    // A plugin that ignores the refusal by unwrapping traps, and its other sends are dropped.
    let (status, _) = json(host.get("/t/forbidden-unwrap").await).await;
    assert_eq!(status, 500);

    // An allowed publish goes through, proving the observer sees this topic.
    let response = host
        .client
        .post(format!("{}/t/publish?topic=allowed", host.url))
        .body("fine")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    crate::common::eventually(Duration::from_secs(5), "the allowed message", || async {
        (!seen.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    let values: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.value.clone())
        .collect();
    assert_eq!(values, [b"fine".to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_output_is_capped_and_invalid_utf8_is_rejected() {
    let host = TestHost::start(CONFIG).await;
    let response = host.get("/t/noise").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "done");

    let (status, body) = json(host.get("/t/bad-utf8").await).await;
    assert_eq!(status, 500, "{body}");
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_cannot_read_files_open_sockets_or_see_the_environment() {
    let host = TestHost::start(CONFIG).await;
    let (status, body) = json(host.get("/t/fs").await).await;
    assert_eq!(status, 200);
    for op in ["read", "list", "write"] {
        assert_ne!(body[op], "ok", "{op} should have failed: {body}");
    }

    // A real listener on this machine: only the sandbox stands between the plugin and it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (status, body) = json(host.get(&format!("/t/net?addr={addr}")).await).await;
    assert_eq!(status, 200);
    assert_ne!(body["connect"], "ok", "{body}");
    assert_ne!(body["resolve"], "ok", "{body}");
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_err(),
        "the plugin reached the listener"
    );

    let (status, body) = json(host.get("/t/env").await).await;
    assert_eq!(status, 200);
    assert_eq!(body["vars"], 0, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_failures_map_to_statuses() {
    let host = TestHost::start(CONFIG).await;
    let (status, body) = json(host.get("/t/invalid").await).await;
    assert_eq!(
        (status, body["message"].as_str().unwrap()),
        (400, "bad request: testkit says no")
    );
    let (status, _) = json(host.get("/t/retry").await).await;
    assert_eq!(status, 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_and_malformed_paths_get_json_errors() {
    let host = TestHost::start(CONFIG).await;
    // The default body limit is 1 MiB.
    let response = host.post("/t/ok", vec![b'x'; 2 << 20]).await;
    // The rest of the body was never read: the client must not send more on this connection.
    assert_eq!(response.headers()["connection"], "close");
    let (status, body) = json(response).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["status"], 413);
    assert!(
        body["message"].as_str().unwrap().contains("limit"),
        "{body}"
    );

    let (status, body) = json(host.get("/hello/%FF%FE").await).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("name"), "{body}");

    let (status, body) = json(host.get("/nowhere").await).await;
    assert_eq!(
        (status, body["status"].as_u64()),
        (404, Some(404)),
        "{body}"
    );
    let response = host
        .client
        .delete(format!("{}/t/ok", host.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["allow"], "GET, POST");
    let (status, _) = json(response).await;
    assert_eq!(status, 405);
    assert_still_serving(&host).await;
}
