//! One suite of Bus behaviour, run against the embedded bus and a real Kafka broker
//! (`EVENTHOST_KAFKA_BOOTSTRAP`, default 127.0.0.1:9092; `make test` starts one).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{eventually, kafka_bootstrap, unique};
use eventhost::bus::{
    Bus, EmbeddedBus, Handled, KafkaBus, KafkaSettings, Limit, Record, RecordHandler, Retention,
    TailFrom, TopicSpec,
};
use eventhost::runtime::OutMessage;
use futures::FutureExt;
use tokio_util::sync::CancellationToken;

fn message(topic: &str, key: &str, value: &str) -> OutMessage {
    OutMessage {
        topic: topic.into(),
        key: Some(key.as_bytes().to_vec()),
        value: value.as_bytes().to_vec(),
        headers: vec![("h1".into(), b"v1".to_vec()), ("h2".into(), vec![0, 255])],
    }
}

async fn with_topic(bus: &Arc<dyn Bus>, name: &str, partitions: u32) -> String {
    let topic = unique(name);
    bus.ensure_topics(vec![TopicSpec::new(topic.clone(), partitions)])
        .await
        .expect("topic created");
    topic
}

type Seen = Arc<Mutex<Vec<Record>>>;

/// Subscribes with a handler that records every record and commits it.
fn recorder(
    bus: &Arc<dyn Bus>,
    topic: &str,
    group: &str,
) -> (Seen, CancellationToken, tokio::task::JoinHandle<()>) {
    let seen: Seen = Arc::default();
    let stop = CancellationToken::new();
    let sink = seen.clone();
    let task = bus
        .subscribe(
            topic,
            group,
            RecordHandler::sequential(move |r| {
                sink.lock().unwrap().push(r);
                async { Handled::Commit }.boxed()
            }),
            stop.clone(),
        )
        .expect("subscribed");
    (seen, stop, task)
}

async fn keeps_order_within_each_key(bus: Arc<dyn Bus>) {
    let topic = with_topic(&bus, "order", 3).await;
    let keys = ["a", "b", "c", "d"];
    let messages: Vec<_> = (0..200)
        .map(|i| message(&topic, keys[i % 4], &i.to_string()))
        .collect();
    bus.publish(messages).await.unwrap();
    let (seen, stop, task) = recorder(&bus, &topic, "g-order");
    let records = eventually(Duration::from_secs(60), "200 records", || async {
        let seen = seen.lock().unwrap();
        (seen.len() >= 200).then(|| seen.clone())
    })
    .await;
    assert_eq!(records.len(), 200, "no duplicates without a crash");
    let mut by_key: BTreeMap<Vec<u8>, Vec<i32>> = BTreeMap::new();
    let mut partition_of: BTreeMap<Vec<u8>, i32> = BTreeMap::new();
    for record in &records {
        let key = record.key.clone().unwrap();
        by_key
            .entry(key.clone())
            .or_default()
            .push(String::from_utf8_lossy(&record.value).parse().unwrap());
        assert_eq!(
            *partition_of.entry(key).or_insert(record.partition),
            record.partition,
            "a key moved partitions"
        );
    }
    for values in by_key.values() {
        assert!(
            values.windows(2).all(|w| w[0] < w[1]),
            "out of order: {values:?}"
        );
    }
    stop.cancel();
    task.await.unwrap();
}

async fn carries_key_value_and_headers(bus: Arc<dyn Bus>) {
    let topic = with_topic(&bus, "headers", 1).await;
    bus.publish(vec![message(&topic, "k", "payload")])
        .await
        .unwrap();
    let (seen, stop, task) = recorder(&bus, &topic, "g-headers");
    let record = eventually(Duration::from_secs(60), "the record", || async {
        seen.lock().unwrap().first().cloned()
    })
    .await;
    assert_eq!(record.topic, topic);
    assert_eq!(record.key.as_deref(), Some(b"k".as_slice()));
    assert_eq!(record.value, b"payload");
    assert_eq!(
        record.headers,
        vec![
            ("h1".to_string(), b"v1".to_vec()),
            ("h2".to_string(), vec![0, 255])
        ]
    );
    assert_eq!(record.offset, 0);
    assert!(record.timestamp_ms.is_some());
    stop.cancel();
    task.await.unwrap();
}

/// Records after the last one a handler committed are delivered again to the next consumer of
/// the same group; committed ones are not.
async fn resumes_from_the_committed_offset(bus: Arc<dyn Bus>) {
    let topic = with_topic(&bus, "resume", 1).await;
    let messages: Vec<_> = (0..10)
        .map(|i| message(&topic, "k", &i.to_string()))
        .collect();
    bus.publish(messages).await.unwrap();

    let handled: Seen = Arc::default();
    let stop = CancellationToken::new();
    let (sink, stopper) = (handled.clone(), stop.clone());
    // Finish records 0..=5, then shut down while record 6 is in flight.
    let first = bus
        .subscribe(
            &topic,
            "g-resume",
            RecordHandler::sequential(move |r| {
                let (sink, stopper) = (sink.clone(), stopper.clone());
                async move {
                    if r.value == b"6" {
                        stopper.cancel();
                        return Handled::Stop;
                    }
                    sink.lock().unwrap().push(r);
                    Handled::Commit
                }
                .boxed()
            }),
            stop.clone(),
        )
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), first)
        .await
        .expect("first consumer stops")
        .unwrap();
    let values: Vec<_> = handled
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.value.clone())
        .collect();
    assert_eq!(
        values,
        (0..6)
            .map(|i| i.to_string().into_bytes())
            .collect::<Vec<_>>()
    );

    let (seen, stop, task) = recorder(&bus, &topic, "g-resume");
    let values = eventually(Duration::from_secs(60), "records 6..10", || async {
        let seen = seen.lock().unwrap();
        (seen.len() >= 4).then(|| {
            seen.iter()
                .map(|r| String::from_utf8_lossy(&r.value).into_owned())
                .collect::<Vec<_>>()
        })
    })
    .await;
    assert_eq!(values, ["6", "7", "8", "9"]);
    stop.cancel();
    task.await.unwrap();
}

/// A handler stuck on one partition does not hold back the others.
async fn partitions_run_in_parallel(bus: Arc<dyn Bus>) {
    let topic = with_topic(&bus, "parallel", 2).await;
    let mut keys_by_partition: BTreeMap<i32, String> = BTreeMap::new();
    // Find one key per partition by publishing probes and watching where they land.
    let probes: Vec<_> = (0..20)
        .map(|i| message(&topic, &format!("key-{i}"), "probe"))
        .collect();
    bus.publish(probes).await.unwrap();
    let (seen, stop, task) = recorder(&bus, &topic, "g-probe");
    eventually(
        Duration::from_secs(60),
        "probes on both partitions",
        || async {
            let partitions: std::collections::BTreeSet<i32> =
                seen.lock().unwrap().iter().map(|r| r.partition).collect();
            (partitions.len() == 2).then_some(())
        },
    )
    .await;
    for record in seen.lock().unwrap().iter() {
        keys_by_partition
            .entry(record.partition)
            .or_insert_with(|| String::from_utf8_lossy(record.key.as_ref().unwrap()).into_owned());
    }
    stop.cancel();
    task.await.unwrap();

    let slow_key = keys_by_partition[&0].clone();
    let fast_key = keys_by_partition[&1].clone();
    let release = CancellationToken::new();
    let fast_done: Seen = Arc::default();
    let stop = CancellationToken::new();
    let (gate, sink) = (release.clone(), fast_done.clone());
    let group = "g-parallel";
    let task = bus
        .subscribe(
            &topic,
            group,
            RecordHandler::sequential(move |r| {
                let (gate, sink) = (gate.clone(), sink.clone());
                async move {
                    if r.value == b"slow" {
                        gate.cancelled().await;
                    } else if r.value == b"fast" {
                        sink.lock().unwrap().push(r);
                    }
                    Handled::Commit
                }
                .boxed()
            }),
            stop.clone(),
        )
        .unwrap();
    bus.publish(vec![
        message(&topic, &slow_key, "slow"),
        message(&topic, &fast_key, "fast"),
    ])
    .await
    .unwrap();
    eventually(
        Duration::from_secs(60),
        "the fast partition while the slow one is stuck",
        || async { (!fast_done.lock().unwrap().is_empty()).then_some(()) },
    )
    .await;
    release.cancel();
    stop.cancel();
    task.await.unwrap();
}

/// Kafka only (the embedded bus has one consumer per group): a second consumer joining the
/// group takes over some partitions; every record is still handled, and after both stop the
/// group's committed offsets reach the end of every partition, so nothing was skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_rebalance_hands_partitions_over_without_loss() {
    let (first_bus, second_bus) = (kafka(), kafka());
    let topic = with_topic(&first_bus, "rebalance", 4).await;
    let publish = |from: usize, to: usize| {
        let (bus, topic) = (first_bus.clone(), topic.clone());
        async move {
            let messages = (from..to)
                .map(|i| message(&topic, &format!("k{i}"), &i.to_string()))
                .collect();
            bus.publish(messages).await.unwrap();
        }
    };
    publish(0, 200).await;
    let (first, stop_first, first_task) = recorder(&first_bus, &topic, "g-rebalance");
    eventually(
        Duration::from_secs(60),
        "the first consumer to start",
        || async { (!first.lock().unwrap().is_empty()).then_some(()) },
    )
    .await;
    let (second, stop_second, second_task) = recorder(&second_bus, &topic, "g-rebalance");
    // Keep records coming until the joiner, once the group rebalanced, handles some of them.
    let mut published = 200;
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while second.lock().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the joining consumer never received a record"
        );
        publish(published, published + 20).await;
        published += 20;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eventually(
        Duration::from_secs(90),
        "every record handled by one of the two",
        || async {
            let seen: std::collections::BTreeSet<Vec<u8>> = first
                .lock()
                .unwrap()
                .iter()
                .chain(second.lock().unwrap().iter())
                .map(|r| r.value.clone())
                .collect();
            (seen.len() == published).then_some(())
        },
    )
    .await;
    stop_second.cancel();
    second_task.await.unwrap();
    stop_first.cancel();
    first_task.await.unwrap();

    let bootstrap = kafka_bootstrap();
    let consumer: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "g-rebalance")
        .create()
        .unwrap();
    let mut partitions = rdkafka::TopicPartitionList::new();
    for p in 0..4 {
        partitions.add_partition(&topic, p);
    }
    let committed = rdkafka::consumer::Consumer::committed_offsets(
        &consumer,
        partitions,
        Duration::from_secs(10),
    )
    .unwrap();
    for element in committed.elements() {
        let (_, high) = rdkafka::consumer::Consumer::fetch_watermarks(
            &consumer,
            &topic,
            element.partition(),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(
            element.offset(),
            rdkafka::Offset::Offset(high),
            "partition {} was not committed to its end",
            element.partition()
        );
    }
}

/// Retention set in the config reaches Kafka when the host creates a topic; what is not set
/// stays the broker's default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_topics_are_created_with_the_configured_retention() {
    use rdkafka::admin::{AdminClient, AdminOptions, ConfigSource, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;

    let bus = kafka();
    let configured = unique("retention-set");
    let defaults = unique("retention-default");
    let retention = Retention {
        bytes: Limit::At(1 << 20),
        age: Limit::Unlimited,
    };
    bus.ensure_topics(vec![
        TopicSpec {
            retention,
            ..TopicSpec::new(configured.clone(), 1)
        },
        TopicSpec::new(defaults.clone(), 1),
    ])
    .await
    .expect("topics created");

    let bootstrap = kafka_bootstrap();
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let described = admin
        .describe_configs(
            &[
                ResourceSpecifier::Topic(&configured),
                ResourceSpecifier::Topic(&defaults),
            ],
            &AdminOptions::new().request_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("topic configs described");
    let [Ok(configured), Ok(defaults)] = &described[..] else {
        panic!("expected the configs of both topics, got {described:?}");
    };
    let value = |name| configured.get(name).and_then(|e| e.value.as_deref());
    assert_eq!(value("retention.bytes"), Some("1048576"));
    assert_eq!(value("retention.ms"), Some("-1"));
    for name in ["retention.bytes", "retention.ms"] {
        let entry = configured.get(name).expect("retention configs");
        assert_eq!(entry.source, ConfigSource::DynamicTopic, "{name}");
        let entry = defaults.get(name).expect("retention configs");
        assert_ne!(
            entry.source,
            ConfigSource::DynamicTopic,
            "{name} of a topic without retention"
        );
    }
}

fn kafka() -> Arc<dyn Bus> {
    let bootstrap = kafka_bootstrap();
    let options = [
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "500"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Arc::new(
        KafkaBus::new(KafkaSettings {
            bootstrap,
            client_id: "conformance".into(),
            instance: None,
            options,
        })
        .expect("kafka bus"),
    )
}

fn embedded() -> Arc<dyn Bus> {
    Arc::new(EmbeddedBus::new())
}

/// A tail reads without a group: from the beginning it sees what is there and what comes;
/// from the end, only what comes; from an offset, what follows it; and it commits nothing.
async fn tails_a_topic_without_a_group(bus: Arc<dyn Bus>) {
    let topic = with_topic(&bus, "tail", 2).await;
    let before: Vec<_> = (0..4)
        .map(|i| message(&topic, &format!("k{i}"), &format!("before-{i}")))
        .collect();
    bus.publish(before).await.unwrap();
    let mut from_start = bus.tail(&topic, TailFrom::Beginning).await.unwrap();
    let mut from_end = bus.tail(&topic, TailFrom::End).await.unwrap();
    let mut from_one = bus.tail(&topic, TailFrom::Offset(1)).await.unwrap();
    // Kafka assigns asynchronously: give the end position time to be fixed before publishing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    bus.publish(vec![message(&topic, "k0", "after")])
        .await
        .unwrap();

    async fn take(tail: &mut tokio::sync::mpsc::Receiver<Record>, count: usize) -> Vec<Record> {
        let mut records = Vec::new();
        while records.len() < count {
            let record = tokio::time::timeout(Duration::from_secs(20), tail.recv())
                .await
                .expect("a record within 20 s")
                .expect("the tail is open");
            records.push(record);
        }
        records.sort_by_key(|r| r.value.clone());
        records
    }
    let values = |records: &[Record]| -> Vec<String> {
        (records.iter())
            .map(|r| String::from_utf8(r.value.clone()).unwrap())
            .collect()
    };
    let everything = take(&mut from_start, 5).await;
    assert_eq!(
        values(&everything),
        ["after", "before-0", "before-1", "before-2", "before-3"]
    );
    assert_eq!(values(&take(&mut from_end, 1).await), ["after"]);
    // Offset 1 of each partition on: every record but the first of each partition.
    let mut after_first: Vec<Record> = everything.into_iter().filter(|r| r.offset >= 1).collect();
    after_first.sort_by_key(|r| r.value.clone());
    let from_one = take(&mut from_one, after_first.len()).await;
    assert_eq!(values(&from_one), values(&after_first));
    assert!(
        tokio::time::timeout(Duration::from_millis(500), from_end.recv())
            .await
            .is_err(),
        "nothing more from the end"
    );
}

macro_rules! conformance {
    ($($case:ident),*) => {
        mod embedded_bus {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(super::embedded()).await })*
        }
        mod kafka_bus {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(super::kafka()).await })*
        }
    };
}

conformance!(
    tails_a_topic_without_a_group,
    keeps_order_within_each_key,
    carries_key_value_and_headers,
    resumes_from_the_committed_offset,
    partitions_run_in_parallel
);
