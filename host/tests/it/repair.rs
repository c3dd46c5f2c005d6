//! Repairs, on the embedded bus and on a real Kafka broker: a paused subscription handles
//! nothing until it resumes and then misses nothing; a replay re-delivers exactly the records
//! after its offset; a redrive sends a subscription's dead letters back once, as they were.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::{TestHost, collect, eventually, header, kafka_bus, unique};
use eventhost::bus::Record;
use eventhost::runtime::OutMessage;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);
const BIN: &str = env!("CARGO_BIN_EXE_eventhost");

/// Where a test runs: the bus section of its config and its topic names.
struct Setup {
    bus: String,
    input: String,
    output: String,
    audit: String,
    /// The consumer group of the testkit's subscription, also its name.
    group: String,
    /// The consumer group of the audit's subscription, also its name.
    audit_group: String,
}

impl Setup {
    fn embedded() -> Self {
        Setup {
            bus: String::new(),
            input: "in".into(),
            output: "out".into(),
            audit: "audit-out".into(),
            group: "records".into(),
            audit_group: "audit".into(),
        }
    }

    /// Kafka topics outlive a test, so every run gets its own.
    fn kafka() -> Self {
        let suffix = unique("");
        Setup {
            bus: kafka_bus(),
            input: format!("in{suffix}"),
            output: format!("out{suffix}"),
            audit: format!("audit{suffix}"),
            // Groups too: a broker commits offsets for a group only while it has no member.
            group: format!("records{suffix}"),
            audit_group: format!("audit{suffix}"),
        }
    }

    fn dead_letter(&self) -> String {
        format!("{}.dlq", self.input)
    }

    /// One input topic of one partition (so offsets are plain to count), consumed by two
    /// subscriptions of the testkit plugin: group `records` forwards to the output topic,
    /// group `audit` (the same code under another name) to the audit topic.
    fn config(&self) -> String {
        let Setup {
            bus,
            input,
            output,
            audit,
            group,
            audit_group,
        } = self;
        let testkit = crate::common::plugin_wasm("testkit");
        format!(
            r#"{bus}
[[topic]]
name = "{input}"
partitions = 1

[[topic]]
name = "{output}"
partitions = 1

[[topic]]
name = "{audit}"
partitions = 1

[plugin.testkit]
publish = ["{output}"]
config = {{ forward_to = "{output}" }}

[plugin.audit]
path = {testkit:?}
publish = ["{audit}"]
config = {{ forward_to = "{audit}" }}

[[subscription]]
topic = "{input}"
plugin = "testkit"
group = "{group}"
retry = {{ attempts = 2, backoff_ms = 10 }}

[[subscription]]
topic = "{input}"
plugin = "audit"
group = "{audit_group}"
retry = {{ attempts = 2, backoff_ms = 10 }}
"#
        )
    }

    fn message(&self, value: &str) -> OutMessage {
        OutMessage {
            topic: self.input.clone(),
            key: Some(b"k".to_vec()),
            value: value.as_bytes().to_vec(),
            headers: vec![("app".into(), b"kept".to_vec())],
        }
    }
}

async fn admin(host: &TestHost, action: &str, query: &str) -> (u16, Value) {
    let response = host
        .client
        .post(format!("{}/admin/{action}?{query}", host.url))
        .send()
        .await
        .expect("request sent");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

async fn states(host: &TestHost) -> BTreeMap<String, String> {
    let list: Value = host
        .get("/admin/subscriptions")
        .await
        .json()
        .await
        .expect("JSON");
    (list["subscriptions"].as_array().expect("a list").iter())
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn values(seen: &std::sync::Mutex<Vec<Record>>) -> Vec<String> {
    (seen.lock().unwrap().iter())
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .collect()
}

async fn until_values(
    what: &str,
    seen: &std::sync::Mutex<Vec<Record>>,
    count: usize,
) -> Vec<String> {
    eventually(WAIT, what, || async {
        let values = values(seen);
        (values.len() >= count).then_some(values)
    })
    .await
}

/// The `eventhost` binary, run against `host` through a config naming its address.
fn cli(host: &TestHost, args: &[&str]) -> (bool, String, String) {
    let main = std::fs::read_to_string(host.dir.path().join("eventhost.toml")).unwrap();
    let addr = host.host().addr.to_string();
    let file = host.dir.path().join("cli.toml");
    std::fs::write(&file, main.replace("127.0.0.1:0", &addr)).unwrap();
    let out = std::process::Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn pause_holds_records_and_resume_delivers_every_one(setup: Setup) {
    let host = TestHost::start(&setup.config()).await;
    let (out, _stop) = collect(&host.bus(), &setup.output, "observer");
    let (audit, _stop_audit) = collect(&host.bus(), &setup.audit, "observer");
    host.bus()
        .publish(vec![setup.message("record:r0")])
        .await
        .unwrap();
    until_values("the first record", &out, 1).await;

    let (status, report) = admin(&host, "pause", &format!("subscription={}", setup.group)).await;
    assert_eq!(status, 200, "{report}");
    assert!(
        report["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("paused {}", setup.group)),
        "{report}"
    );
    assert_eq!(states(&host).await[&setup.group], "paused");
    assert_eq!(states(&host).await[&setup.audit_group], "running");
    let plugins: Value = host.get("/admin/plugins").await.json().await.unwrap();
    let testkit = (plugins["plugins"].as_array().unwrap().iter())
        .find(|p| p["name"] == "testkit")
        .unwrap();
    assert_eq!(
        testkit["subscriptions"],
        serde_json::json!([format!("{} (group {}), paused", setup.input, setup.group)])
    );
    assert_eq!(
        host.get("/readyz").await.status(),
        200,
        "a pause is the operator's choice, not a fault"
    );
    let messages = (1..=3)
        .map(|i| setup.message(&format!("record:r{i}")))
        .collect();
    host.bus().publish(messages).await.unwrap();
    // The other subscription of the topic goes on: once it handled them, the paused one had
    // its chance to (and must not have).
    until_values("the audit to see every record", &audit, 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(values(&out), ["r0"], "nothing is handled while paused");

    // A reload keeps it paused.
    let config = crate::common::test_config(host.dir.path(), &setup.config());
    host.host().deployment().apply(config).await;
    assert_eq!(states(&host).await[&setup.group], "paused");

    let (status, report) = admin(&host, "resume", &format!("subscription={}", setup.group)).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["message"],
        format!(
            "resumed {}: 3 records waiting on {}",
            setup.group, setup.input
        )
    );
    let seen = until_values("the held records", &out, 4).await;
    assert_eq!(seen, ["r0", "r1", "r2", "r3"], "nothing lost, in order");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(values(&out).len(), 4, "nothing twice");
    assert_eq!(states(&host).await[&setup.group], "running");

    let (status, report) = admin(&host, "resume", &format!("subscription={}", setup.group)).await;
    assert_eq!(
        (status, report["message"].as_str()),
        (
            200,
            Some(format!("{} was not paused", setup.group).as_str())
        )
    );
    host.stop().await;
}

async fn replay_redelivers_exactly_the_records_from_an_offset_or_a_time(setup: Setup) {
    let host = TestHost::start(&setup.config()).await;
    let (out, _stop) = collect(&host.bus(), &setup.output, "observer");
    // On the embedded bus records are kept while a group still needs them: the paused audit
    // keeps them here (Kafka keeps them by retention alone).
    let (status, _) = admin(
        &host,
        "pause",
        &format!("subscription={}", setup.audit_group),
    )
    .await;
    assert_eq!(status, 200);
    let (input, _stop_input) = collect(&host.bus(), &setup.input, "observer");
    // Two batches, apart in time, for the replay by time.
    for batch in [0..5, 5..10] {
        let messages = batch
            .map(|i| setup.message(&format!("record:r{i}")))
            .collect();
        host.bus().publish(messages).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first: Vec<String> = (0..10).map(|i| format!("r{i}")).collect();
    assert_eq!(until_values("ten records", &out, 10).await, first);
    // Wait for the commit of the tenth, so the replay knows how far the group was.
    eventually(WAIT, "the group to commit all ten", || async {
        let positions = host
            .bus()
            .positions(&setup.input, &setup.group)
            .await
            .ok()?;
        (positions[0].committed == Some(10)).then_some(())
    })
    .await;

    let (ok, stdout, stderr) = cli(&host, &["replay", &setup.group, "--offset", "4"]);
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(
        stdout.trim(),
        format!(
            "replayed {} from offset 4: 1 partition rewound, 6 records to re-deliver",
            setup.group
        )
    );
    let seen = until_values("the replayed records", &out, 16).await;
    let again: Vec<String> = (4..10).map(|i| format!("r{i}")).collect();
    assert_eq!(
        seen[10..],
        again[..],
        "exactly the records from offset 4 on"
    );
    let replayed: Vec<i64> = out.lock().unwrap()[10..]
        .iter()
        .map(|r| {
            header(r, "eventhost-id")
                .and_then(|id| id.split('/').nth(2)?.split('#').next()?.parse().ok())
                .expect("the id names the input's offset")
        })
        .collect();
    assert_eq!(replayed, [4, 5, 6, 7, 8, 9], "the inputs at those offsets");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(values(&out).len(), 16, "and nothing more");
    assert_eq!(states(&host).await[&setup.group], "running");

    // From the time the second batch was published: r5 to r9 once more.
    let published = eventually(WAIT, "the input records", || async {
        let input = input.lock().unwrap();
        (input.iter())
            .find(|r| r.value == b"record:r5")
            .and_then(|r| r.timestamp_ms)
    })
    .await;
    let (status, report) = admin(
        &host,
        "replay",
        &format!("subscription={}&from=time:{published}", setup.group),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    let message = report["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("replayed {} from time ", setup.group))
            && message.ends_with(": 1 partition rewound, 5 records to re-deliver"),
        "{report}"
    );
    let seen = until_values("the records replayed by time", &out, 21).await;
    let again: Vec<String> = (5..10).map(|i| format!("r{i}")).collect();
    assert_eq!(
        seen[16..],
        again[..],
        "exactly the records from that time on"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(values(&out).len(), 21, "and nothing more");

    let (ok, _, stderr) = cli(&host, &["replay", "nobody", "--offset", "0"]);
    assert!(!ok);
    assert!(
        stderr.contains("no subscription is named \"nobody\"")
            && stderr.contains(&format!("known: {}, {}", setup.group, setup.audit_group)),
        "{stderr}"
    );
    host.stop().await;
}

async fn redrive_sends_a_subscriptions_dead_letters_back_once(setup: Setup) {
    let host = TestHost::start(&setup.config()).await;
    let (out, _stop) = collect(&host.bus(), &setup.output, "observer");
    let (input, _stop_input) = collect(&host.bus(), &setup.input, "observer");
    let dead_letter = setup.dead_letter();
    let letter = |value: &str, group: &str, kind: &str, extra: &[(&str, &str)]| {
        let mut headers = vec![("app".to_string(), b"kept".to_vec())];
        for (name, value) in [
            ("eventhost-dlq-reason", "the plugin timed out"),
            ("eventhost-dlq-kind", kind),
            ("eventhost-dlq-topic", setup.input.as_str()),
            ("eventhost-dlq-partition", "0"),
            ("eventhost-dlq-offset", "0"),
            ("eventhost-dlq-group", group),
            ("eventhost-dlq-attempts", "2"),
            ("eventhost-plugin", "testkit"),
            ("eventhost-plugin-version", "v-old"),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        {
            headers.push((name.to_string(), value.as_bytes().to_vec()));
        }
        OutMessage {
            topic: dead_letter.clone(),
            key: Some(b"k".to_vec()),
            value: value.as_bytes().to_vec(),
            headers,
        }
    };
    let omitted = [("eventhost-dlq-omitted", "value and headers omitted")];
    host.bus()
        .publish(vec![
            letter("record:x1", &setup.group, "timeout", &[]),
            letter("record:x2", &setup.group, "trap", &[]),
            letter("", &setup.group, "timeout", &omitted),
            letter("record:other", &setup.audit_group, "timeout", &[]),
            letter("record:x3", &setup.group, "timeout", &[]),
        ])
        .await
        .unwrap();

    let (status, report) = admin(
        &host,
        "redrive",
        &format!("subscription={}&kind=timeout", setup.group),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["message"],
        format!(
            "redriven 2 dead letters from {dead_letter} to {} (1 skipped: reference only; 1 of another kind passed over)",
            setup.input
        )
    );
    assert_eq!(
        report["skipped"],
        serde_json::json!([format!("{dead_letter}/0@2")])
    );
    let seen = until_values("the redriven records", &out, 2).await;
    assert_eq!(seen, ["x1", "x3"]);
    until_values("the redriven records on the input topic", &input, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent: Vec<Record> = input.lock().unwrap().clone();
    assert_eq!(sent.len(), 2, "only the matching letters went back");
    for record in &sent {
        let names: Vec<&str> = record.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["app", "eventhost-redrive-count"], "{record:?}");
        assert_eq!(
            header(record, "eventhost-redrive-count").as_deref(),
            Some("1")
        );
        assert_eq!(record.key.as_deref(), Some(b"k".as_slice()));
    }

    let (ok, stdout, stderr) = cli(&host, &["dlq", "redrive", &setup.group]);
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(
        stdout.trim(),
        format!(
            "redriven 0 dead letters from {dead_letter} to {}",
            setup.input
        ),
        "a second redrive sends nothing again"
    );
    let (status, report) = admin(
        &host,
        "redrive",
        &format!("subscription={}&kind=nonsense", setup.group),
    )
    .await;
    assert_eq!(status, 400, "{report}");
    host.stop().await;
}

macro_rules! on_both_buses {
    ($($case:ident),* $(,)?) => {
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

on_both_buses!(
    pause_holds_records_and_resume_delivers_every_one,
    replay_redelivers_exactly_the_records_from_an_offset_or_a_time,
    redrive_sends_a_subscriptions_dead_letters_back_once,
);
