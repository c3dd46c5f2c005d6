//! State effects are transactional per input, lose no concurrent update, and survive restarts.

use crate::common::TestHost;

const CONFIG: &str = r#"
[plugin.testkit]
limits = { memory_mib = 32, timeout_ms = 2000 }

[[route]]
method = "POST"
path = "/t/{op}"
plugin = "testkit"

[[route]]
method = "GET"
path = "/t/{op}"
plugin = "testkit"
"#;

async fn put(host: &TestHost, key: &str, value: &str) -> u16 {
    host.post(&format!("/t/state-put?key={key}"), value.to_string())
        .await
        .status()
        .as_u16()
}

async fn get(host: &TestHost, key: &str) -> (u16, String) {
    let response = host.get(&format!("/t/state-get?key={key}")).await;
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_apply_only_when_the_handler_succeeds() {
    let host = TestHost::start(CONFIG).await;
    assert_eq!(put(&host, "kept", "v1").await, 200);
    assert_eq!(get(&host, "kept").await, (200, "v1".to_string()));

    let failed = host.post("/t/put-then-fail?key=lost", "x").await;
    assert_eq!(failed.status(), 500);
    let trapped = host.post("/t/put-then-trap?key=lost", "x").await;
    assert_eq!(trapped.status(), 500);
    assert_eq!(
        get(&host, "lost").await.0,
        404,
        "a failed input's write was applied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_and_delete() {
    let host = TestHost::start(CONFIG).await;
    for (k, v) in [("a:1", "one"), ("a:2", "two"), ("b:1", "other")] {
        assert_eq!(put(&host, k, v).await, 200);
    }
    let scanned: serde_json::Value = host
        .get("/t/state-scan?prefix=a:")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(scanned, serde_json::json!({"a:1": "one", "a:2": "two"}));
    assert_eq!(host.post("/t/state-del?key=a:1", "").await.status(), 200);
    let scanned: serde_json::Value = host
        .get("/t/state-scan?prefix=a:")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(scanned, serde_json::json!({"a:2": "two"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_read_modify_writes_lose_no_update() {
    let host = TestHost::start(CONFIG).await;
    let requests = (0..40).map(|_| {
        let (client, url) = (host.client.clone(), host.url.clone());
        tokio::spawn(async move {
            let response = client
                .post(format!("{url}/t/counter"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.text().await.unwrap().parse::<u32>().unwrap()
        })
    });
    let mut answers = Vec::new();
    for request in requests.collect::<Vec<_>>() {
        answers.push(request.await.unwrap());
    }
    answers.sort_unstable();
    assert_eq!(
        answers,
        (1..=40).collect::<Vec<_>>(),
        "each increment must see the previous one"
    );
    assert_eq!(get(&host, "counter").await, (200, "40".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_restart() {
    let host = TestHost::start(CONFIG).await;
    assert_eq!(put(&host, "durable", "yes").await, 200);
    let dir = host.stop().await;
    let host = TestHost::start_in(dir, CONFIG).await;
    assert_eq!(get(&host, "durable").await, (200, "yes".to_string()));
}

/// How many store transactions the host has committed, from `/metrics`.
async fn commits(host: &TestHost) -> u64 {
    let text = host.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("eventhost_commit_batch_inputs_count "))
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no commit count in {text}"))
}

/// A request that reads one durable key answers from it without a store transaction of its
/// own; one that reads while a write is still pending waits for it, and sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_one_durable_key_commits_nothing() {
    let host = TestHost::start(CONFIG).await;
    assert_eq!(put(&host, "cart:1", "two socks").await, 200);
    let before = commits(&host).await;
    assert!(before >= 1, "the write was committed");
    for _ in 0..20 {
        assert_eq!(get(&host, "cart:1").await, (200, "two socks".to_string()));
    }
    assert_eq!(commits(&host).await, before, "reads committed something");

    // Reads racing writes of the same key see one of the written values, never a lost one.
    let writes = (0..20).map(|n| {
        let host = &host;
        async move { put(host, "cart:1", &format!("v{n}")).await }
    });
    let reads = (0..20).map(|_| {
        let host = &host;
        async move { get(host, "cart:1").await }
    });
    let (written, read) = tokio::join!(
        futures::future::join_all(writes),
        futures::future::join_all(reads)
    );
    assert!(written.iter().all(|status| *status == 200), "{written:?}");
    for (status, value) in read {
        assert_eq!(status, 200);
        assert!(
            value == "two socks" || (value.starts_with('v') && value[1..].parse::<u32>().is_ok()),
            "read {value:?}"
        );
    }
}
