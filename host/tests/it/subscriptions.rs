//! Subscriptions, on the embedded bus and on a real Kafka broker: partition order, commit after
//! effects, retries with backoff, and dead letters that say why, while the partition flows on.

use std::time::Duration;

use crate::common::{TestHost, collect, eventually, header, kafka_bus, unique};
use eventhost::runtime::OutMessage;

/// Where a test runs: the bus section of its config and its topic names.
struct Setup {
    bus: String,
    input: String,
    output: String,
    dead_letter: String,
}

impl Setup {
    fn embedded() -> Self {
        Setup {
            bus: String::new(),
            input: "in".into(),
            output: "out".into(),
            dead_letter: "in.dlq".into(),
        }
    }

    /// Kafka topics outlive a test, so every run gets its own.
    fn kafka() -> Self {
        let suffix = unique("");
        Setup {
            bus: kafka_bus(),
            input: format!("in{suffix}"),
            output: format!("out{suffix}"),
            dead_letter: format!("in{suffix}.dlq"),
        }
    }

    fn config(&self) -> String {
        self.config_with("timeout_ms = 300", "")
    }

    /// The config with more `limits` of the plugin and more keys of the subscription.
    fn config_with(&self, limits: &str, subscription: &str) -> String {
        let Setup {
            bus, input, output, ..
        } = self;
        format!(
            r#"{bus}
[[topic]]
name = "{input}"
partitions = 3

[[topic]]
name = "{output}"
partitions = 3

[plugin.testkit]
publish = ["{output}"]
config = {{ forward_to = "{output}" }}
limits = {{ memory_mib = 32, {limits} }}

[[subscription]]
topic = "{input}"
plugin = "testkit"
retry = {{ attempts = 3, backoff_ms = 10 }}
{subscription}

[[route]]
method = "GET"
path = "/t/{{op}}"
plugin = "testkit"
"#
        )
    }

    /// A keyed message to the input topic, with one application header.
    fn message(&self, key: &str, value: impl Into<Vec<u8>>) -> OutMessage {
        OutMessage {
            topic: self.input.clone(),
            key: Some(key.as_bytes().to_vec()),
            value: value.into(),
            headers: vec![("trace".into(), b"t-1".to_vec())],
        }
    }
}

async fn publish(host: &TestHost, messages: Vec<OutMessage>) {
    host.bus().publish(messages).await.expect("published");
}

async fn keeps_order_per_key_and_stamps_the_producing_plugin(setup: Setup) {
    keeps_order_per_key(setup, "").await;
}

async fn keeps_order_per_key_with_concurrency(setup: Setup) {
    keeps_order_per_key(setup, "concurrency = 64").await;
}

async fn keeps_order_per_key(setup: Setup, subscription: &str) {
    let host = TestHost::start(&setup.config_with("timeout_ms = 300", subscription)).await;
    let (out, _stop) = collect(&host.bus(), &setup.output, "observer");
    let keys = ["k0", "k1", "k2", "k3", "k4"];
    let messages = (0..100)
        .map(|i| setup.message(keys[i % 5], format!("record:{}-{i}", keys[i % 5])))
        .collect();
    publish(&host, messages).await;

    let records = eventually(Duration::from_secs(20), "100 forwarded records", || async {
        let seen = out.lock().unwrap();
        (seen.len() == 100).then(|| seen.clone())
    })
    .await;
    let version = host.version("testkit");
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
    let mut ids = std::collections::BTreeSet::new();
    for record in &records {
        // The id names the input (topic/partition/offset) and the message's place among its
        // outputs: the same on every re-run, so consumers can drop duplicates by it.
        let id = header(record, "eventhost-id").expect("every message has an id");
        let input = format!("{}/{}/", setup.input, record.partition);
        assert!(id.starts_with(&input) && id.ends_with("#0"), "{id}");
        assert!(ids.insert(id), "ids are unique");
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

async fn transient_failures_are_retried_until_they_succeed(setup: Setup) {
    let host = TestHost::start(&setup.config()).await;
    let (out, _stop) = collect(&host.bus(), &setup.output, "observer");
    let (dead, _stop_dlq) = collect(&host.bus(), &setup.dead_letter, "observer");
    publish(&host, vec![setup.message("a", "fail-until:3")]).await;
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

async fn failures_end_in_the_dead_letter_topic_with_reasons_and_original_bytes(setup: Setup) {
    let host = TestHost::start(&setup.config()).await;
    let (dead, _stop) = collect(&host.bus(), &setup.dead_letter, "observer");
    let (out, _stop_out) = collect(&host.bus(), &setup.output, "observer");
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
        .map(|(key, value, _, _)| setup.message(key, value.clone()))
        .collect();
    publish(&host, messages).await;
    // Inputs behind a bad one on the same partition keep flowing.
    publish(
        &host,
        cases
            .iter()
            .map(|(key, ..)| setup.message(key, format!("record:after-{key}")))
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
    let version = host.version("testkit");
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
        assert_eq!(
            header(record, "eventhost-dlq-topic").as_deref(),
            Some(setup.input.as_str())
        );
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

async fn a_failed_input_leaves_no_state_behind(setup: Setup) {
    let host = TestHost::start(&setup.config()).await;
    let (dead, _stop) = collect(&host.bus(), &setup.dead_letter, "observer");
    publish(
        &host,
        vec![
            setup.message("a", "put-then-fail:ghost"),
            setup.message("a", "record:real"),
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

macro_rules! on_both_buses {
    ($($case:ident),*) => {
        mod embedded_bus {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(super::Setup::embedded()).await })*
        }
        mod kafka_bus {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(super::Setup::kafka()).await })*
        }
    };
}

/// Pipelined inputs read the writes of earlier ones that are still committing, and concurrent
/// read-modify-writes from three partitions (and, with `concurrency`, from many keys of one
/// partition) all survive: every count from 1 to N is sent exactly once.
async fn counts_exactly_across_pipelined_and_parallel_inputs(setup: Setup, subscription: &str) {
    let host = TestHost::start(&setup.config_with("timeout_ms = 2000", subscription)).await;
    let (out, _stop) = collect(&host.bus(), &setup.output, "observer");
    const N: usize = 300;
    let messages = (0..N)
        .map(|i| setup.message(&format!("k{i}"), "count:c"))
        .collect();
    publish(&host, messages).await;
    eventually(Duration::from_secs(60), "every count sent", || async {
        (out.lock().unwrap().len() >= N).then_some(())
    })
    .await;
    // Duplicates, if any, would arrive right behind.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let records = out.lock().unwrap().clone();
    let mut counts: Vec<usize> = records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.value).parse().unwrap())
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, (1..=N).collect::<Vec<_>>());
}

async fn counts_exactly_when_pipelined(setup: Setup) {
    counts_exactly_across_pipelined_and_parallel_inputs(setup, "").await;
}

async fn counts_exactly_with_concurrency(setup: Setup) {
    counts_exactly_across_pipelined_and_parallel_inputs(setup, "concurrency = 64").await;
}

/// The workshop's slow payment service: each input waits 5 s. With `concurrency = 64`, inputs
/// with different keys wait together, so 100 inputs on 3 partitions take two rounds, not 34.
async fn slow_inputs_with_different_keys_wait_together(setup: Setup) {
    let limits = "timeout_ms = 10000, concurrency = 128";
    let host = TestHost::start(&setup.config_with(limits, "concurrency = 64")).await;
    let (out, _stop) = collect(&host.bus(), &setup.output, "observer");
    let messages = (0..100)
        .map(|i| setup.message(&format!("order-{i}"), "sleep:5000"))
        .collect();
    let started = std::time::Instant::now();
    publish(&host, messages).await;
    eventually(
        Duration::from_secs(60),
        "100 slow inputs handled",
        || async { (out.lock().unwrap().len() >= 100).then_some(()) },
    )
    .await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "100 inputs of 5 s took {took:?}"
    );
}

/// `GET /metrics` counts inputs by plugin, version, source and outcome, what was produced and
/// dead-lettered, HTTP requests by route, and each group's lag per partition.
async fn metrics_count_what_flows(setup: Setup) {
    let host = TestHost::start(&setup.config()).await;
    let (out, _stop) = collect(&host.bus(), &setup.output, "observer");
    let (dead, _stop_dlq) = collect(&host.bus(), &setup.dead_letter, "observer");
    let mut messages: Vec<OutMessage> = (0..5)
        .map(|i| setup.message(&format!("k{i}"), format!("record:{i}")))
        .collect();
    messages.push(setup.message("bad", "invalid"));
    publish(&host, messages).await;
    assert_eq!(host.get("/t/ok").await.status(), 200);
    eventually(Duration::from_secs(30), "the inputs handled", || async {
        let done = out.lock().unwrap().len() == 5 && dead.lock().unwrap().len() == 1;
        done.then_some(())
    })
    .await;
    let version = host.version("testkit");
    let (input, output) = (&setup.input, &setup.output);
    let expected = [
        format!(
            r#"eventhost_inputs_total{{plugin="testkit",version="{version}",source="{input}",outcome="ok"}} 5"#
        ),
        format!(
            r#"eventhost_inputs_total{{plugin="testkit",version="{version}",source="{input}",outcome="invalid"}} 1"#
        ),
        format!(
            r#"eventhost_inputs_total{{plugin="testkit",version="{version}",source="http",outcome="ok"}} 1"#
        ),
        format!(r#"eventhost_dead_letters_total{{plugin="testkit",source="{input}"}} 1"#),
        format!(r#"eventhost_messages_produced_total{{topic="{output}"}} 5"#),
        r#"eventhost_http_requests_total{route="/t/{op}",method="GET",status="200"} 1"#.into(),
        format!(r#"eventhost_consumer_lag_records{{group="testkit",topic="{input}",partition="#),
    ];
    // Kafka reports lag in its statistics, once a second.
    let text = eventually(Duration::from_secs(20), "every expected line", || async {
        let response = host.get("/metrics").await;
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        expected
            .iter()
            .all(|line| text.contains(line))
            .then_some(text)
    })
    .await;
    assert!(text.contains("eventhost_handler_seconds_bucket{"), "{text}");
    assert!(text.contains("eventhost_plugin_loads_total{plugin=\"testkit\",outcome=\"ok\"} 1"));
    let peak = text
        .lines()
        .find_map(|l| l.strip_prefix("eventhost_instance_memory_peak_bytes{plugin=\"testkit\"} "))
        .unwrap_or_else(|| panic!("no memory high-water mark in {text}"));
    // At least one 64 KiB page, at most the plugin's limit.
    let peak: u64 = peak.parse().unwrap();
    assert!((65536..=64 << 20).contains(&peak), "{peak}");
}

/// The sum of `group`'s lag on `topic` over its partitions, as `/metrics` reports it.
async fn lag(host: &TestHost, group: &str, topic: &str) -> Option<u64> {
    let text = host.get("/metrics").await.text().await.unwrap();
    let prefix = format!(r#"eventhost_consumer_lag_records{{group="{group}",topic="{topic}","#);
    let values: Vec<u64> = text
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// While a slow plugin works through a backlog, its lag shows the backlog, and it falls to 0
/// once the backlog is done.
async fn lag_grows_while_a_plugin_is_slow_and_drains_after(setup: Setup) {
    let host = TestHost::start(&setup.config_with("timeout_ms = 5000", "")).await;
    let (out, _stop) = collect(&host.bus(), &setup.output, "observer");
    const N: usize = 30;
    let messages = (0..N)
        .map(|i| setup.message(&format!("slow-{i}"), "sleep:300"))
        .collect();
    publish(&host, messages).await;
    // One input at a time per partition, 300 ms each: about 3 s of backlog on 3 partitions.
    let most = eventually(
        Duration::from_secs(20),
        "a lag of a third of the backlog",
        || async {
            lag(&host, "testkit", &setup.input)
                .await
                .filter(|lag| *lag >= (N / 3) as u64)
        },
    )
    .await;
    assert!(
        out.lock().unwrap().len() < N,
        "lag {most} seen only after the backlog was done"
    );
    eventually(
        Duration::from_secs(30),
        "the backlog done and the lag 0",
        || async {
            // At least once: a rebalance may hand an input over and run it twice.
            let done = out.lock().unwrap().len() >= N;
            (done && lag(&host, "testkit", &setup.input).await == Some(0)).then_some(())
        },
    )
    .await;
}

on_both_buses!(
    metrics_count_what_flows,
    lag_grows_while_a_plugin_is_slow_and_drains_after,
    keeps_order_per_key_and_stamps_the_producing_plugin,
    keeps_order_per_key_with_concurrency,
    counts_exactly_when_pipelined,
    counts_exactly_with_concurrency,
    slow_inputs_with_different_keys_wait_together,
    transient_failures_are_retried_until_they_succeed,
    failures_end_in_the_dead_letter_topic_with_reasons_and_original_bytes,
    a_failed_input_leaves_no_state_behind
);

/// A message the broker will never accept is not an outage: the input is dead-lettered on its
/// first attempt, with the reason, and its partition flows on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_broker_refuses_is_dead_lettered_without_retries() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;

    let setup = Setup::kafka();
    let bootstrap = crate::common::kafka_bootstrap();
    // The output topic takes records of at most 2000 bytes; the host's producer allows more.
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("admin client");
    let small = NewTopic::new(&setup.output, 3, TopicReplication::Fixed(1))
        .set("max.message.bytes", "2000");
    let created = admin
        .create_topics([&small], &AdminOptions::new())
        .await
        .expect("create topic");
    assert!(created.iter().all(Result::is_ok), "{created:?}");

    let host = TestHost::start(&setup.config()).await;
    let (dead, _stop) = collect(&host.bus(), &setup.dead_letter, "observer");
    let (out, _stop_out) = collect(&host.bus(), &setup.output, "observer");
    let big = format!("record:{}", "x".repeat(5000));
    publish(
        &host,
        vec![setup.message("k", big), setup.message("k", "record:small")],
    )
    .await;
    let records = eventually(
        Duration::from_secs(60),
        "the refused input dead-lettered",
        || async {
            let seen = dead.lock().unwrap();
            (!seen.is_empty()).then(|| seen.clone())
        },
    )
    .await;
    assert_eq!(records.len(), 1);
    assert_eq!(
        header(&records[0], "eventhost-dlq-kind").as_deref(),
        Some("refused")
    );
    assert_eq!(
        header(&records[0], "eventhost-dlq-attempts").as_deref(),
        Some("1")
    );
    // The record behind it on the same partition is handled.
    eventually(
        Duration::from_secs(30),
        "the small record forwarded",
        || async {
            let seen = out.lock().unwrap();
            seen.iter().any(|r| r.value == b"small").then_some(())
        },
    )
    .await;
    // Health is fine: a refusal is not an outage.
    assert_eq!(host.get("/healthz").await.status(), 200);
}

/// Partitions added to a topic while the host consumes it are consumed too (once the clients
/// see the new metadata; the refresh interval is shortened here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_added_to_a_consumed_topic_are_consumed() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
    use rdkafka::client::DefaultClientContext;

    let mut setup = Setup::kafka();
    setup
        .bus
        .push_str("[bus.options]\n\"topic.metadata.refresh.interval.ms\" = \"1000\"\n");
    let config = setup
        .config()
        .replacen("partitions = 3", "partitions = 1", 1);
    let host = TestHost::start(&config).await;
    let (out, _stop) = collect(&host.bus(), &setup.output, "observer");
    publish(&host, vec![setup.message("before", "record:before")]).await;
    eventually(
        Duration::from_secs(30),
        "the first record forwarded",
        || async { (!out.lock().unwrap().is_empty()).then_some(()) },
    )
    .await;

    let bootstrap = crate::common::kafka_bootstrap();
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("admin client");
    let added = admin
        .create_partitions(&[NewPartitions::new(&setup.input, 3)], &AdminOptions::new())
        .await
        .expect("create partitions");
    assert!(added.iter().all(Result::is_ok), "{added:?}");
    // Wait until the host's producer sees all three partitions, so keys spread over them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let messages = (0..30)
        .map(|i| setup.message(&format!("k{i}"), format!("record:after-{i}")))
        .collect();
    publish(&host, messages).await;
    let records = eventually(
        Duration::from_secs(60),
        "every record forwarded, from the new partitions too",
        || async {
            let seen = out.lock().unwrap();
            (seen.len() >= 31).then(|| seen.clone())
        },
    )
    .await;
    assert_eq!(records.len(), 31);
    let (inputs, _stop_in) = collect(&host.bus(), &setup.input, "observer");
    let partitions = eventually(Duration::from_secs(30), "the inputs read back", || async {
        let seen = inputs.lock().unwrap();
        let partitions: std::collections::BTreeSet<i32> =
            seen.iter().map(|r| r.partition).collect();
        (seen.len() >= 31).then_some(partitions)
    })
    .await;
    assert_eq!(
        partitions.len(),
        3,
        "the inputs went to all three partitions"
    );
}
