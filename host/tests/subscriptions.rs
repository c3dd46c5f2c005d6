//! Subscriptions on the embedded bus: partition order, commit after effects, retries with
//! backoff, and dead letters that say why.

mod common;

use std::time::Duration;

use common::{TestHost, collect, eventually, header};
use eventhost::runtime::OutMessage;

const CONFIG: &str = r#"
[[topic]]
name = "in"
partitions = 3

[[topic]]
name = "out"
partitions = 3

[plugin.testkit]
publish = ["out"]
config = { forward_to = "out" }
limits = { memory_mib = 32, timeout_ms = 300 }

[[subscription]]
topic = "in"
plugin = "testkit"
retry = { attempts = 3, backoff_ms = 10 }

[[route]]
method = "GET"
path = "/t/{op}"
plugin = "testkit"
"#;

fn message(key: &str, value: impl Into<Vec<u8>>) -> OutMessage {
    OutMessage {
        topic: "in".into(),
        key: Some(key.as_bytes().to_vec()),
        value: value.into(),
        headers: vec![("trace".into(), b"t-1".to_vec())],
    }
}

async fn publish(host: &TestHost, messages: Vec<OutMessage>) {
    host.bus().publish(messages).await.expect("published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_order_per_key_and_stamps_the_producing_plugin() {
    let host = TestHost::start(CONFIG).await;
    let (out, _stop) = collect(&host.bus(), "out", "observer");
    let keys = ["k0", "k1", "k2", "k3", "k4"];
    let messages = (0..100)
        .map(|i| message(keys[i % 5], format!("record:{}-{i}", keys[i % 5])))
        .collect();
    publish(&host, messages).await;

    let records = eventually(Duration::from_secs(20), "100 forwarded records", || async {
        let seen = out.lock().unwrap();
        (seen.len() == 100).then(|| seen.clone())
    })
    .await;
    let version = host
        .host()
        .dispatcher()
        .registry()
        .get("testkit")
        .unwrap()
        .info
        .version
        .clone();
    for key in keys {
        let values: Vec<String> = records
            .iter()
            .filter(|r| r.key.as_deref() == Some(key.as_bytes()))
            .map(|r| String::from_utf8(r.value.clone()).unwrap())
            .collect();
        let expected: Vec<String> = (0..100)
            .filter(|i| keys[i % 5] == key)
            .map(|i| format!("{key}-{i}"))
            .collect();
        assert_eq!(values, expected, "order of key {key}");
    }
    for record in &records {
        assert_eq!(
            header(record, "eventhost-plugin").as_deref(),
            Some("testkit")
        );
        assert_eq!(
            header(record, "eventhost-plugin-version").as_deref(),
            Some(version.as_str())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_until_they_succeed() {
    let host = TestHost::start(CONFIG).await;
    let (out, _stop) = collect(&host.bus(), "out", "observer");
    let (dead, _stop_dlq) = collect(&host.bus(), "in.dlq", "observer");
    publish(&host, vec![message("a", "fail-until:3")]).await;
    eventually(
        Duration::from_secs(10),
        "the third attempt to succeed",
        || async {
            out.lock()
                .unwrap()
                .iter()
                .any(|r| r.value == b"done:3")
                .then_some(())
        },
    )
    .await;
    assert!(dead.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_end_in_the_dead_letter_topic_with_reasons_and_original_bytes() {
    let host = TestHost::start(CONFIG).await;
    let (dead, _stop) = collect(&host.bus(), "in.dlq", "observer");
    let (out, _stop_out) = collect(&host.bus(), "out", "observer");
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        ("k-invalid", b"invalid".to_vec(), "invalid", "1"),
        ("k-bytes", vec![0xff, 0x00, 0xfe], "invalid", "1"),
        ("k-retry", b"fail-until:9".to_vec(), "retry", "3"),
        ("k-trap", b"trap".to_vec(), "trap", "3"),
        ("k-loop", b"loop".to_vec(), "timeout", "3"),
        ("k-alloc", b"alloc".to_vec(), "memory-limit", "3"),
    ];
    let messages = cases
        .iter()
        .map(|(key, value, _, _)| message(key, value.clone()))
        .collect();
    publish(&host, messages).await;
    // Inputs behind a bad one on the same partition keep flowing.
    publish(
        &host,
        cases
            .iter()
            .map(|(key, ..)| message(key, format!("record:after-{key}")))
            .collect(),
    )
    .await;

    let records = eventually(
        Duration::from_secs(60),
        "every bad input dead-lettered",
        || async {
            let seen = dead.lock().unwrap();
            (seen.len() == cases.len()).then(|| seen.clone())
        },
    )
    .await;
    let version = host
        .host()
        .dispatcher()
        .registry()
        .get("testkit")
        .unwrap()
        .info
        .version
        .clone();
    for (key, value, kind, attempts) in &cases {
        let record = records
            .iter()
            .find(|r| r.key.as_deref() == Some(key.as_bytes()))
            .expect(key);
        assert_eq!(&record.value, value, "original bytes of {key}");
        assert_eq!(
            header(record, "eventhost-dlq-kind").as_deref(),
            Some(*kind),
            "{key}"
        );
        assert_eq!(
            header(record, "eventhost-dlq-attempts").as_deref(),
            Some(*attempts),
            "{key}"
        );
        assert_eq!(header(record, "eventhost-dlq-topic").as_deref(), Some("in"));
        assert!(
            header(record, "eventhost-dlq-partition")
                .unwrap()
                .parse::<i32>()
                .is_ok()
        );
        assert!(
            header(record, "eventhost-dlq-offset")
                .unwrap()
                .parse::<i64>()
                .is_ok()
        );
        assert_eq!(
            header(record, "eventhost-plugin").as_deref(),
            Some("testkit")
        );
        assert_eq!(
            header(record, "eventhost-plugin-version").as_deref(),
            Some(version.as_str())
        );
        assert!(!header(record, "eventhost-dlq-reason").unwrap().is_empty());
        assert_eq!(
            header(record, "trace").as_deref(),
            Some("t-1"),
            "original headers are kept"
        );
    }
    eventually(
        Duration::from_secs(20),
        "the inputs after the bad ones",
        || async { (out.lock().unwrap().len() == cases.len()).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_input_leaves_no_state_behind() {
    let host = TestHost::start(CONFIG).await;
    let (dead, _stop) = collect(&host.bus(), "in.dlq", "observer");
    publish(
        &host,
        vec![
            message("a", "put-then-fail:ghost"),
            message("a", "record:real"),
        ],
    )
    .await;
    eventually(Duration::from_secs(10), "the dead letter", || async {
        (!dead.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    let scan: serde_json::Value = eventually(
        Duration::from_secs(10),
        "the second record's effect",
        || async {
            let scan: serde_json::Value =
                host.get("/t/state-scan?prefix=").await.json().await.ok()?;
            scan.as_object()?
                .keys()
                .any(|k| k.starts_with("rec:"))
                .then_some(scan)
        },
    )
    .await;
    assert!(
        scan.get("ghost").is_none(),
        "a dead-lettered input's write was applied: {scan}"
    );
}
