//! Crash tests on a real Kafka broker (`EVENTHOST_KAFKA_BOOTSTRAP`, default 127.0.0.1:9092,
//! controlled with `scripts/kafka`): the `eventhost` binary is killed with SIGKILL mid-stream,
//! and the broker is stopped and started again under load. Nothing may be lost, and duplicates
//! may only come from the window that was not yet committed.
//!
//! The tests stop or kill things, so they run one after the other (`SERIAL`), and a guard starts
//! the broker again when a test ends, even when it fails. Each prints its figures (run with
//! `--nocapture` to see them).
//!
//! Two more pin down outage behaviour: an idle host reports healthy again once the broker is
//! back (health comes from librdkafka's broker states, not from traffic), and an outage longer
//! than a subscription's retry budget dead-letters nothing (effects that cannot be applied yet
//! are waited for, not counted as failed attempts).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventhost::bus::{Bus, Handled, KafkaBus, KafkaSettings, Record, RecordHandler, TopicSpec};
use eventhost::runtime::OutMessage;
use eventhost::state::{EmbeddedStore, StateStore};
use futures::FutureExt;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use common::{HostProcess, eventually, kafka_bootstrap, unique};

const PARTITIONS: i32 = 3;
/// The plugin under test, also its state namespace.
const PLUGIN: &str = "testkit";

/// The tests kill the host and stop the broker: never two at once.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// --- the broker ----------------------------------------------------------------------------

/// Runs `scripts/kafka <action>` and fails the test with its output if it fails.
fn kafka_script(action: &str) -> Duration {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka");
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(&script)
        .arg(action)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} {action}: {e}", script.display()));
    assert!(
        out.status.success(),
        "scripts/kafka {action} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

async fn kafka_script_async(action: &'static str) -> Duration {
    tokio::task::spawn_blocking(move || kafka_script(action))
        .await
        .unwrap_or_else(|e| panic!("scripts/kafka {action}: {e}"))
}

/// Starts the broker when created (a no-op when it runs), and again when dropped, so a failed
/// test never leaves it stopped.
struct BrokerGuard;

impl BrokerGuard {
    fn new() -> BrokerGuard {
        kafka_script("start");
        BrokerGuard
    }
}

impl Drop for BrokerGuard {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka");
        match Command::new("bash")
            .arg(&script)
            .arg("start")
            .stdin(Stdio::null())
            .output()
        {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "warning: scripts/kafka start failed on drop: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("warning: cannot run scripts/kafka start on drop: {e}"),
        }
    }
}

/// The test's own client of the broker, from the library. `message.timeout.ms` is short so
/// that a send during an outage fails soon and the test's producer retries it.
fn test_bus(client_id: &str) -> Arc<dyn Bus> {
    let options = [
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "500"),
        ("message.timeout.ms", "3000"),
        // Results of exactly-once runs count only once their transaction committed.
        ("isolation.level", "read_committed"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Arc::new(
        KafkaBus::new(KafkaSettings {
            bootstrap: kafka_bootstrap(),
            client_id: client_id.into(),
            instance: None,
            options,
        })
        .expect("kafka bus"),
    )
}

/// A plain rdkafka consumer for offset queries; it never joins its group.
fn admin_consumer(group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", kafka_bootstrap())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("rdkafka consumer")
}

/// The offset committed by `group` on each partition of `topic` (0 when none).
fn committed_offsets(group: &str, topic: &str) -> BTreeMap<i32, i64> {
    let consumer = admin_consumer(group);
    let mut tpl = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        tpl.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("committed offsets of group {group}: {e}"));
    committed
        .elements_for_topic(topic)
        .iter()
        .map(|e| {
            let offset = match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            };
            (e.partition(), offset)
        })
        .collect()
}

/// The high watermark (next offset) of each of the `partitions` partitions of `topic`. Right
/// after a broker restart a partition may have no leader yet: that is asked again, for a while.
fn end_offsets(topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let consumer = admin_consumer(&unique("watermarks"));
    let deadline = Instant::now() + Duration::from_secs(60);
    (0..partitions)
        .map(|p| {
            loop {
                match consumer.fetch_watermarks(topic, p, Duration::from_secs(30)) {
                    Ok((_, high)) => break (p, high),
                    Err(e) if Instant::now() > deadline => panic!("watermarks of {topic}/{p}: {e}"),
                    Err(_) => std::thread::sleep(Duration::from_millis(500)),
                }
            }
        })
        .collect()
}

// --- the scenario: topics, config, and the host process --------------------------------------

/// What a scenario changes in the host's config.
#[derive(Clone, Copy)]
struct Tuning {
    /// Extra lines of `[bus.options]`.
    bus_options: &'static str,
    /// The subscription's `retry` table.
    retry: &'static str,
    /// `[bus] exactly_once`.
    exactly_once: bool,
}

/// The host's defaults, except that a killed consumer leaves its group after 6 s, not 45 s.
const DEFAULTS: Tuning = Tuning {
    bus_options: "",
    retry: "{ attempts = 3, backoff_ms = 100 }",
    exactly_once: false,
};

/// One run's topics, consumer group, config file and state file.
struct Scenario {
    dir: tempfile::TempDir,
    config: PathBuf,
    state: PathBuf,
    input: String,
    output: String,
    dead_letter: String,
    group: String,
}

impl Scenario {
    /// Creates the topics (so no consumer can auto-create them with one partition) and writes
    /// the config: testkit consumes `input` and forwards every `record:<n>` to `output`.
    async fn new(bus: &Arc<dyn Bus>, name: &str, tuning: Tuning) -> Scenario {
        let dir = tempfile::tempdir().unwrap();
        let input = unique(&format!("{name}-in"));
        let output = unique(&format!("{name}-out"));
        let dead_letter = format!("{input}.dlq");
        let group = unique(&format!("{name}-group"));
        let state = dir.path().join("state.redb");
        let topics = [
            (&input, PARTITIONS),
            (&output, PARTITIONS),
            (&dead_letter, 1),
        ];
        bus.ensure_topics(
            topics
                .iter()
                .map(|(name, partitions)| TopicSpec::new(*name, *partitions as u32))
                .collect(),
        )
        .await
        .expect("topics created");
        let toml = format!(
            r#"[server]
listen = "127.0.0.1:0"
shutdown_grace_ms = 20000

[bus]
kind = "kafka"
bootstrap = "{bootstrap}"
client_id = "{name}"
exactly_once = {exactly_once}

# A killed host's consumer leaves the group after 6 s instead of 45 s.
[bus.options]
"session.timeout.ms" = 6000
"heartbeat.interval.ms" = 500
{bus_options}

[state]
path = "{state}"

[runtime]
plugins_dir = "{plugins}"

[[topic]]
name = "{input}"
partitions = {PARTITIONS}

[[topic]]
name = "{output}"
partitions = {PARTITIONS}

[plugin.testkit]
publish = ["{output}"]
config = {{ forward_to = "{output}" }}
limits = {{ memory_mib = 64, timeout_ms = 10000 }}

[[subscription]]
topic = "{input}"
plugin = "testkit"
group = "{group}"
retry = {retry}

[[route]]
method = "GET"
path = "/t/{{op}}"
plugin = "testkit"
"#,
            bootstrap = kafka_bootstrap(),
            bus_options = tuning.bus_options,
            retry = tuning.retry,
            exactly_once = tuning.exactly_once,
            state = state.display(),
            plugins = common::plugins_dir().display(),
        );
        let config = dir.path().join("eventhost.toml");
        std::fs::write(&config, toml).unwrap();
        Scenario {
            dir,
            config,
            state,
            input,
            output,
            dead_letter,
            group,
        }
    }

    /// Keeps the state in the PostgreSQL database at `url` instead of the state file, for
    /// several hosts to share.
    fn share_state(&self, url: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let file = format!("[state]\npath = \"{}\"", self.state.display());
        assert!(text.contains(&file), "the config has a state file");
        let shared = format!("[state]\nkind = \"postgres\"\nurl = \"{url}\"");
        std::fs::write(&self.config, text.replace(&file, &shared)).unwrap();
    }

    /// Input `record:<n>`, keyed so that inputs spread over every partition.
    fn input_message(&self, n: usize) -> OutMessage {
        OutMessage {
            topic: self.input.clone(),
            key: Some(counter_key(n).into_bytes()),
            value: format!("record:{n}").into_bytes(),
            headers: vec![],
        }
    }

    /// Input `count:<key>`: adds one to the counter of its key and forwards the new count,
    /// keyed like the input.
    fn count_message(&self, n: usize) -> OutMessage {
        let key = counter_key(n);
        OutMessage {
            topic: self.input.clone(),
            value: format!("count:{key}").into_bytes(),
            key: Some(key.into_bytes()),
            headers: vec![],
        }
    }
}

/// Runs `eventhost run CONFIG --listen 127.0.0.1:0 --state STATE` and waits for its
/// `eventhost listening on http://ADDR` line. Its log goes to `host-<label>.log`.
async fn spawn_host(scenario: &Scenario, label: &str) -> HostProcess {
    let log = scenario.dir.path().join(format!("host-{label}.log"));
    let state = scenario.state.to_str().expect("a UTF-8 path");
    let args = ["--listen", "127.0.0.1:0", "--state", state];
    HostProcess::start(
        &scenario.config,
        &args,
        "info,wasmtime=warn,cranelift=warn",
        &log,
    )
    .await
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// `GET /readyz`: the status code and `status` field, or `None` when it did not answer.
async fn health(client: &reqwest::Client, url: &str) -> Option<(u16, String)> {
    let response = client.get(format!("{url}/readyz")).send().await.ok()?;
    let code = response.status().as_u16();
    let body: serde_json::Value = response.json().await.ok()?;
    Some((
        code,
        body["status"].as_str().unwrap_or_default().to_string(),
    ))
}

/// Every `rec:<partition>:<offset>` entry of the plugin's state, through its HTTP route:
/// position -> recorded text.
async fn state_over_http(
    client: &reqwest::Client,
    url: &str,
) -> Option<BTreeMap<(i32, i64), String>> {
    let response = client
        .get(format!("{url}/t/state-scan?prefix=rec:"))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let entries: BTreeMap<String, String> = response.json().await.ok()?;
    Some(parse_state(entries))
}

/// The same, read straight from the state file (the host must not be running).
fn state_from_file(path: &Path) -> BTreeMap<(i32, i64), String> {
    let store = EmbeddedStore::open(path).expect("state file opens after the kill");
    let entries = store.scan(PLUGIN, "rec:").expect("state scan");
    parse_state(
        entries
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8(v).expect("utf-8 state value")))
            .collect(),
    )
}

fn parse_state(entries: BTreeMap<String, String>) -> BTreeMap<(i32, i64), String> {
    entries
        .into_iter()
        .map(|(key, value)| {
            let mut parts = key.split(':').skip(1);
            let position = parts
                .next()
                .and_then(|p| p.parse().ok())
                .zip(parts.next().and_then(|o| o.parse().ok()))
                .unwrap_or_else(|| panic!("unexpected state key {key:?}"));
            (position, value)
        })
        .collect()
}

// --- watching topics -----------------------------------------------------------------------

/// Records by position: (key, value).
type Positions = BTreeMap<(i32, i64), (String, String)>;

/// Every record of a topic, read by a fresh consumer group and de-duplicated by position, so a
/// re-delivery to this reader is never mistaken for a duplicate on the topic.
struct TopicReader {
    records: Arc<Mutex<Positions>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl TopicReader {
    fn start(bus: &Arc<dyn Bus>, topic: &str) -> TopicReader {
        let records: Arc<Mutex<Positions>> = Arc::default();
        let stop = CancellationToken::new();
        let sink = records.clone();
        let task = bus
            .subscribe(
                topic,
                &unique("reader"),
                RecordHandler::sequential(move |record: Record| {
                    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
                    let entry = (
                        text(record.key.as_deref().unwrap_or_default()),
                        text(&record.value),
                    );
                    sink.lock()
                        .unwrap()
                        .insert((record.partition, record.offset), entry);
                    async { Handled::Commit }.boxed()
                }),
                stop.clone(),
            )
            .unwrap_or_else(|e| panic!("cannot read {topic}: {e}"));
        TopicReader {
            records,
            stop,
            task,
        }
    }

    /// Position -> value.
    fn snapshot(&self) -> BTreeMap<(i32, i64), String> {
        let records = self.records.lock().unwrap();
        records
            .iter()
            .map(|(p, (_, value))| (*p, value.clone()))
            .collect()
    }

    fn len(&self) -> usize {
        self.records.lock().unwrap().len()
    }

    /// How often each value was seen on the topic.
    fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for (_, value) in self.records.lock().unwrap().values() {
            *counts.entry(value.clone()).or_default() += 1;
        }
        counts
    }

    async fn close(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.task).await;
    }
}

/// Reads the whole of `topic` as it is now (up to its high watermarks): position -> value.
async fn read_all(
    bus: &Arc<dyn Bus>,
    topic: &str,
    partitions: i32,
) -> BTreeMap<(i32, i64), String> {
    let ends = end_offsets(topic, partitions);
    let total: i64 = ends.values().sum();
    let reader = TopicReader::start(bus, topic);
    eventually(
        Duration::from_secs(120),
        &format!("all of {topic}"),
        || async {
            let n = reader.len() as i64;
            if n >= total {
                Ok(())
            } else {
                Err(format!("{n} of {total} records read"))
            }
        },
    )
    .await;
    let records = reader.snapshot();
    reader.close().await;
    records
}

/// Values `record:<n>` of the input topic: position -> n.
fn input_numbers(inputs: &BTreeMap<(i32, i64), String>) -> BTreeMap<(i32, i64), usize> {
    inputs
        .iter()
        .map(|(position, value)| {
            let n = value
                .strip_prefix("record:")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unexpected input {value:?} at {position:?}"));
            (*position, n)
        })
        .collect()
}

/// Every input's effects: its state entry under its own position with its number, and its
/// number on the output topic.
fn assert_effects(
    inputs: &BTreeMap<(i32, i64), usize>,
    state: &BTreeMap<(i32, i64), String>,
    outputs: &BTreeMap<String, usize>,
) {
    let missing_state: Vec<_> = inputs
        .iter()
        .filter(|(position, n)| state.get(position) != Some(&n.to_string()))
        .take(10)
        .collect();
    assert!(
        missing_state.is_empty(),
        "inputs without their state entry (position -> n), first 10: {missing_state:?}"
    );
    let extra: Vec<_> = state
        .keys()
        .filter(|p| !inputs.contains_key(p))
        .take(10)
        .collect();
    assert!(
        extra.is_empty(),
        "state entries for positions that hold no input: {extra:?}"
    );
    let missing_output: Vec<_> = inputs
        .values()
        .filter(|n| !outputs.contains_key(&n.to_string()))
        .take(10)
        .collect();
    assert!(
        missing_output.is_empty(),
        "inputs never forwarded to the output topic, first 10: {missing_output:?}"
    );
}

// --- 1. kill -9 ----------------------------------------------------------------------------

const KILL_INPUTS: usize = 5000;
/// Kill once this many distinct outputs were seen.
const KILL_AFTER: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_loses_nothing_and_duplicates_only_the_uncommitted_window() {
    let _serial = SERIAL.lock().await;
    let _broker = BrokerGuard::new();
    let began = Instant::now();
    let bus = test_bus("crash-test");
    let scenario = Scenario::new(&bus, "crash", DEFAULTS).await;

    // Produce every input up front, keyed over all partitions.
    let messages: Vec<_> = (0..KILL_INPUTS)
        .map(|n| scenario.input_message(n))
        .collect();
    for batch in messages.chunks(500) {
        bus.publish(batch.to_vec()).await.expect("inputs produced");
    }
    let outputs = TopicReader::start(&bus, &scenario.output);

    let mut host = spawn_host(&scenario, "first").await;
    let client = http();
    eventually(
        Duration::from_secs(180),
        "the first host to handle some inputs",
        || async {
            let seen = outputs.counts().len();
            if seen >= KILL_AFTER {
                Ok(())
            } else {
                Err(format!("{seen} outputs so far\n{}", host.log_tail()))
            }
        },
    )
    .await;
    host.kill9();
    let killed_at = Instant::now();

    // Crash consistency: a state write is made only after its message was acknowledged, so
    // every state entry on disk must have its output on the topic.
    let state_at_kill = state_from_file(&scenario.state);
    let committed = committed_offsets(&scenario.group, &scenario.input);
    eventually(
        Duration::from_secs(60),
        "the output of every input whose state was written before the kill",
        || async {
            let counts = outputs.counts();
            let missing: Vec<_> = state_at_kill
                .values()
                .filter(|n| !counts.contains_key(*n))
                .take(10)
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "state written without its message, first 10: {missing:?}"
                ))
            }
        },
    )
    .await;
    // Let the reader catch up with everything the first host published.
    let mut last = (outputs.len(), Instant::now());
    eventually(
        Duration::from_secs(60),
        "the output topic to settle",
        || {
            let now = outputs.len();
            if now != last.0 {
                last = (now, Instant::now());
            }
            let settled = last.1.elapsed() >= Duration::from_secs(3);
            async move {
                if settled {
                    Ok(())
                } else {
                    Err(format!("{now} outputs"))
                }
            }
        },
    )
    .await;
    let before_restart = outputs.counts();
    assert!(
        before_restart.len() < KILL_INPUTS,
        "the host handled every input before the kill; raise KILL_INPUTS"
    );
    let written: BTreeSet<&String> = state_at_kill.values().collect();
    let published_without_state: Vec<String> = before_restart
        .keys()
        .filter(|n| !written.contains(n))
        .cloned()
        .collect();

    // Restart on the same config and state; wait until every input has its effects.
    let restarted = Instant::now();
    let host = spawn_host(&scenario, "second").await;
    eventually(
        Duration::from_secs(240),
        "every input forwarded after the restart",
        || async {
            let seen = outputs.counts().len();
            if seen >= KILL_INPUTS {
                Ok(())
            } else {
                Err(format!(
                    "{seen} of {KILL_INPUTS} distinct outputs\n{}",
                    host.log_tail()
                ))
            }
        },
    )
    .await;
    let state = eventually(
        Duration::from_secs(120),
        "a state entry for every input",
        || async {
            match state_over_http(&client, &host.url).await {
                Some(state) if state.len() >= KILL_INPUTS => Ok(state),
                Some(state) => Err(format!("{} of {KILL_INPUTS} state entries", state.len())),
                None => Err("state scan did not answer".into()),
            }
        },
    )
    .await;
    let recovered_in = restarted.elapsed();

    let inputs = input_numbers(&read_all(&bus, &scenario.input, PARTITIONS).await);
    assert_eq!(inputs.len(), KILL_INPUTS, "input records on the topic");
    let distinct: BTreeSet<usize> = inputs.values().copied().collect();
    assert_eq!(distinct.len(), KILL_INPUTS, "every input number once");
    // Let late duplicates (if any) arrive before counting them.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let counts = outputs.counts();
    assert_effects(&inputs, &state, &counts);
    assert_eq!(
        counts.len(),
        KILL_INPUTS,
        "only input numbers on the output topic"
    );

    // Duplicates are exactly the inputs at or after the committed offset whose output the
    // first host had already published: that window is re-delivered, nothing else.
    let position_of: BTreeMap<String, (i32, i64)> =
        inputs.iter().map(|(p, n)| (n.to_string(), *p)).collect();
    let duplicated: BTreeSet<(i32, i64)> = counts
        .iter()
        .filter(|(_, count)| **count > 1)
        .map(|(n, _)| position_of[n])
        .collect();
    let expected: BTreeSet<(i32, i64)> = before_restart
        .keys()
        .map(|n| position_of[n])
        .filter(|(p, offset)| *offset >= committed[p])
        .collect();
    // Pipelined inputs publish before earlier ones committed, so several per partition may
    // have published without their state write; none of them may be committed.
    let uncommitted = |n: &String| {
        let (partition, offset) = position_of[n];
        offset >= committed[&partition]
    };
    assert!(
        published_without_state.iter().all(uncommitted),
        "an input published without its state write was committed (committed {committed:?}): {:?}",
        published_without_state
            .iter()
            .filter(|n| !uncommitted(n))
            .take(10)
            .collect::<Vec<_>>()
    );
    let extra_copies: usize = counts.values().map(|c| c - 1).sum();
    let max_copies = counts.values().copied().max().unwrap_or(0);
    let window: Vec<_> = expected.iter().take(5).collect();
    assert!(
        duplicated.is_subset(&expected),
        "duplicates outside the uncommitted window (committed {committed:?}): {:?}",
        duplicated
            .difference(&expected)
            .take(10)
            .collect::<Vec<_>>()
    );
    assert!(
        expected.is_subset(&duplicated),
        "inputs of the uncommitted window not re-delivered (committed {committed:?}): {:?}",
        expected
            .difference(&duplicated)
            .take(10)
            .collect::<Vec<_>>()
    );
    assert!(duplicated.len() < KILL_INPUTS, "duplicates below the total");
    assert!(max_copies <= 2, "an output appeared {max_copies} times");

    let dead = read_all(&bus, &scenario.dead_letter, 1).await;
    assert!(dead.is_empty(), "dead-lettered inputs: {dead:?}");
    outputs.close().await;
    drop(host);
    println!(
        "kill -9: {KILL_INPUTS} inputs over {PARTITIONS} partitions; at the kill {} outputs \
         published, {} state entries written, committed offsets {committed:?}; after the \
         restart {} inputs duplicated ({extra_copies} extra copies, at most {max_copies} per \
         input; first of the window {window:?}); all effects present {:.1} s after the \
         restart ({:.1} s after the kill); test took {:.1} s",
        before_restart.len(),
        state_at_kill.len(),
        duplicated.len(),
        recovered_in.as_secs_f64(),
        killed_at.elapsed().as_secs_f64(),
        began.elapsed().as_secs_f64()
    );
}

fn counter_key(n: usize) -> String {
    format!("key-{}", n % 97)
}

// --- 2. exactly-once: kill -9 and a broker restart ------------------------------------------

const EXACTLY_ONCE_INPUTS: usize = 20_000;

/// Every output of the counters (read committed, as `TopicReader` does), per key in the order
/// they were published: exactly once means `1, 2, ..., n` for a key with `n` inputs.
fn counts_by_key(outputs: &TopicReader) -> BTreeMap<String, Vec<u64>> {
    let records = outputs.records.lock().unwrap().clone();
    let mut by_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (key, value) in records.values() {
        let count = value
            .parse()
            .unwrap_or_else(|_| panic!("unexpected output {value:?} for {key}"));
        by_key.entry(key.clone()).or_default().push(count);
    }
    by_key
}

/// The JSON a host answers at `url`.
async fn client_get(url: &str) -> Result<serde_json::Value, String> {
    let response = http().get(url).send().await.map_err(|e| e.to_string())?;
    response.json().await.map_err(|e| e.to_string())
}

/// Exactly once, as a `read_committed` reader of `outputs` and the counters of the host at
/// `url` see it: every key's results are `1, 2, ..., n` (its `expected` number of inputs), and
/// its counter is `n`.
async fn assert_counted_once(url: &str, outputs: &TopicReader, expected: &BTreeMap<String, u64>) {
    let client = http();
    let state = eventually(Duration::from_secs(60), "the counters", || async {
        let response = client
            .get(format!("{url}/t/state-scan?prefix=count:"))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let entries: BTreeMap<String, String> = response.json().await.map_err(|e| e.to_string())?;
        Ok(entries)
    })
    .await;
    // Anything published twice would have arrived by now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let by_key = counts_by_key(outputs);
    let total: u64 = by_key.values().map(|counts| counts.len() as u64).sum();
    assert_eq!(
        total,
        expected.values().sum::<u64>(),
        "results seen by a read_committed consumer"
    );
    for (key, n) in expected {
        let counts = by_key.get(key).cloned().unwrap_or_default();
        let once: Vec<u64> = (1..=*n).collect();
        assert_eq!(
            counts, once,
            "the results of {key}: each count once, in order"
        );
        assert_eq!(
            state.get(&format!("count:{key}")),
            Some(&n.to_string()),
            "the counter of {key} applied each input once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_survives_kill_9_and_a_broker_restart_with_each_result_once() {
    common::init_logs();
    let _serial = SERIAL.lock().await;
    let _broker = BrokerGuard::new();
    let began = Instant::now();
    let bus = test_bus("exactly-once-test");
    let tuning = Tuning {
        exactly_once: true,
        ..DEFAULTS
    };
    let scenario = Scenario::new(&bus, "exactly-once", tuning).await;
    let messages: Vec<_> = (0..EXACTLY_ONCE_INPUTS)
        .map(|n| scenario.count_message(n))
        .collect();
    for batch in messages.chunks(500) {
        bus.publish(batch.to_vec()).await.expect("inputs produced");
    }
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for n in 0..EXACTLY_ONCE_INPUTS {
        *expected.entry(counter_key(n)).or_default() += 1;
    }
    let outputs = TopicReader::start(&bus, &scenario.output);
    let seen = |outputs: &TopicReader| outputs.len();

    // 1. kill -9 mid-stream.
    let mut host = spawn_host(&scenario, "first").await;
    eventually(Duration::from_secs(180), "some results", || async {
        match seen(&outputs) {
            n if n >= EXACTLY_ONCE_INPUTS / 5 => Ok(()),
            n => Err(format!("{n} results\n{}", host.log_tail())),
        }
    })
    .await;
    host.kill9();
    let at_kill = seen(&outputs);

    // 2. Restart; once more results came, restart the broker under load.
    let host = spawn_host(&scenario, "second").await;
    eventually(
        Duration::from_secs(180),
        "results after the restart",
        || async {
            match seen(&outputs) {
                n if n >= EXACTLY_ONCE_INPUTS / 2 => Ok(()),
                n => Err(format!("{n} results\n{}", host.log_tail())),
            }
        },
    )
    .await;
    let at_broker_stop = seen(&outputs);
    kafka_script_async("stop").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    kafka_script_async("start").await;

    // 3. Every result, then nothing more.
    eventually(Duration::from_secs(300), "every result", || async {
        match seen(&outputs) {
            n if n >= EXACTLY_ONCE_INPUTS => Ok(()),
            n => Err(format!(
                "{n} of {EXACTLY_ONCE_INPUTS} results\n{}",
                host.log_tail()
            )),
        }
    })
    .await;
    assert_counted_once(&host.url, &outputs, &expected).await;
    let dead = read_all(&bus, &scenario.dead_letter, 1).await;
    assert!(dead.is_empty(), "dead-lettered inputs: {dead:?}");
    outputs.close().await;
    drop(host);
    println!(
        "exactly-once: {EXACTLY_ONCE_INPUTS} inputs over {PARTITIONS} partitions; host killed \
         at {at_kill} results, broker restarted at {at_broker_stop}; every result once and \
         every counter exact; test took {:.1} s",
        began.elapsed().as_secs_f64()
    );
}

// --- 3. a fleet on PostgreSQL: kill -9 one host, restart another -----------------------------

const FLEET_INPUTS: usize = 10_000;

/// A free loopback port: a host restarted on the same port keeps its id (and so its
/// transactional ids, with which it fences what its killed predecessor left open).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("an address").port()
}

/// One host of the fleet on `port`, its state in the scenario's database.
async fn spawn_fleet_host(scenario: &Scenario, port: u16, label: &str) -> HostProcess {
    let log = scenario.dir.path().join(format!("host-{label}.log"));
    let listen = format!("127.0.0.1:{port}");
    let filter = "info,wasmtime=warn,cranelift=warn";
    HostProcess::start(&scenario.config, &["--listen", &listen], filter, &log).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_on_postgres_keeps_exactly_once_through_a_kill_9_and_a_restart() {
    let _serial = SERIAL.lock().await;
    let _broker = BrokerGuard::new();
    let began = Instant::now();
    let bus = test_bus("fleet-test");
    let tuning = Tuning {
        exactly_once: true,
        ..DEFAULTS
    };
    let scenario = Scenario::new(&bus, "fleet", tuning).await;
    scenario.share_state(&common::fresh_database().await);
    let messages: Vec<_> = (0..FLEET_INPUTS)
        .map(|n| scenario.count_message(n))
        .collect();
    for batch in messages.chunks(500) {
        bus.publish(batch.to_vec()).await.expect("inputs produced");
    }
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for n in 0..FLEET_INPUTS {
        *expected.entry(counter_key(n)).or_default() += 1;
    }
    let outputs = TopicReader::start(&bus, &scenario.output);
    let ports = [free_port(), free_port(), free_port()];
    let mut hosts = Vec::new();
    for (n, port) in ports.iter().enumerate() {
        hosts.push(spawn_fleet_host(&scenario, *port, &format!("{n}")).await);
    }
    let progress = |at_least: usize, what: &'static str| {
        let outputs = &outputs;
        eventually(Duration::from_secs(240), what, move || async move {
            match outputs.len() {
                n if n >= at_least => Ok(n),
                n => Err(format!("{n} of {FLEET_INPUTS} results")),
            }
        })
    };

    // 1. kill -9 one host mid-stream, and start it again on its port.
    let at_kill = progress(FLEET_INPUTS / 5, "some results").await;
    hosts[0].kill9();
    hosts[0] = spawn_fleet_host(&scenario, ports[0], "0-again").await;

    // 2. Stop another one cleanly and start it again.
    let at_restart = progress(FLEET_INPUTS / 2, "results after the kill").await;
    let stopped = hosts.remove(1);
    stopped.stop().await;
    hosts.insert(1, spawn_fleet_host(&scenario, ports[1], "1-again").await);

    // 3. Every result, then nothing more.
    progress(FLEET_INPUTS, "every result").await;
    assert_counted_once(&hosts[2].url, &outputs, &expected).await;
    // Between them, the hosts hold every partition of the input, each named in /admin/plugins.
    let held = eventually(Duration::from_secs(30), "every partition held", || async {
        let mut held = BTreeSet::new();
        for host in &hosts {
            let response = client_get(&format!("{}/admin/plugins", host.url)).await?;
            for partition in response["partitions"].as_array().into_iter().flatten() {
                held.insert(partition.as_str().unwrap_or_default().to_string());
            }
        }
        let all = (0..PARTITIONS)
            .all(|p| held.contains(&format!("{}/{p} ({})", scenario.input, scenario.group)));
        if all {
            Ok(held)
        } else {
            Err(format!("held: {held:?}"))
        }
    })
    .await;
    let dead = read_all(&bus, &scenario.dead_letter, 1).await;
    assert!(dead.is_empty(), "dead-lettered inputs: {dead:?}");
    outputs.close().await;
    for host in hosts {
        host.stop().await;
    }
    println!(
        "fleet: {FLEET_INPUTS} inputs over {PARTITIONS} partitions and three hosts sharing \
         PostgreSQL; one killed at {at_kill} results, another restarted at {at_restart}; every \
         result once and in order, every counter exact; partitions held: {held:?}; test took \
         {:.1} s",
        began.elapsed().as_secs_f64()
    );
}

// --- 4. broker restart under load ----------------------------------------------------------

const BATCH: usize = 5;

/// Produces batches of inputs until `stop`, retrying each batch until the broker takes it.
async fn produce_until(
    bus: Arc<dyn Bus>,
    inputs: Vec<OutMessage>,
    stop: CancellationToken,
    produced: Arc<AtomicUsize>,
    retries: Arc<AtomicUsize>,
) -> usize {
    let mut next = 0;
    while !stop.is_cancelled() && next < inputs.len() {
        let batch = inputs[next..(next + BATCH).min(inputs.len())].to_vec();
        let deadline = Instant::now() + Duration::from_secs(240);
        while let Err(e) = bus.publish(batch.clone()).await {
            assert!(
                Instant::now() < deadline,
                "the producer could not send inputs {next}.. for 240 s: {e}"
            );
            retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        next += batch.len();
        produced.store(next, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    next
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_under_load_degrades_health_reconnects_and_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let _broker = BrokerGuard::new();
    broker_restart_under_load("restart", DEFAULTS, Duration::from_secs(3)).await;
}

/// A broker outage longer than a subscription's retry budget (attempts x
/// `message.timeout.ms`) must not dead-letter valid inputs whose only problem was that their
/// effects could not be published yet: they wait for the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_the_retry_budget_dead_letters_nothing() {
    let _serial = SERIAL.lock().await;
    let _broker = BrokerGuard::new();
    let tuning = Tuning {
        bus_options: "\"message.timeout.ms\" = 2000",
        retry: "{ attempts = 2, backoff_ms = 100 }",
        exactly_once: false,
    };
    broker_restart_under_load("outage", tuning, Duration::from_secs(15)).await;
}

/// Runs a host under a steady stream of inputs, stops the broker, checks that `/readyz`
/// reports degraded, keeps it down `down_for` longer, starts it again, and checks that the host
/// reconnects by itself and that every input produced ends up with its effects.
async fn broker_restart_under_load(name: &str, tuning: Tuning, down_for: Duration) {
    let began = Instant::now();
    let bus = test_bus(&format!("{name}-test"));
    let scenario = Scenario::new(&bus, name, tuning).await;
    let host = spawn_host(&scenario, "host").await;
    let client = http();
    eventually(Duration::from_secs(60), "a healthy host", || async {
        match health(&client, &host.url).await {
            Some((200, _)) => Ok(()),
            other => Err(format!("readyz: {other:?}")),
        }
    })
    .await;
    let outputs = TopicReader::start(&bus, &scenario.output);

    let (stop, produced, retries) = (
        CancellationToken::new(),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let producer = tokio::spawn(produce_until(
        test_bus(&format!("{name}-producer")),
        (0..100_000).map(|n| scenario.input_message(n)).collect(),
        stop.clone(),
        produced.clone(),
        retries.clone(),
    ));
    eventually(Duration::from_secs(120), "inputs flowing", || async {
        let (p, o) = (produced.load(Ordering::Relaxed), outputs.counts().len());
        if p >= 300 && o >= 100 {
            Ok(())
        } else {
            Err(format!("{p} produced, {o} forwarded\n{}", host.log_tail()))
        }
    })
    .await;

    // Stop the broker mid-way; the host must say it is degraded while it is down.
    let produced_before_stop = produced.load(Ordering::Relaxed);
    let stopping = Instant::now();
    let stop_took = kafka_script_async("stop").await;
    let degraded = eventually(
        Duration::from_secs(60),
        "readyz to report degraded while the broker is down",
        || async {
            match health(&client, &host.url).await {
                Some((503, status)) if status == "not ready" => Ok(stopping.elapsed()),
                other => Err(format!("readyz: {other:?}")),
            }
        },
    )
    .await;
    // Stay down a little longer, so producers and the host really wait on the outage.
    tokio::time::sleep(down_for).await;
    let produced_during_outage = produced.load(Ordering::Relaxed);

    // Start it again; meanwhile watch when its port opens and when the host is healthy.
    let starting = Instant::now();
    let start = tokio::spawn(kafka_script_async("start"));
    let port_open = tokio::spawn(async move {
        let address = kafka_bootstrap()
            .split(',')
            .next()
            .unwrap_or_default()
            .to_string();
        while tokio::net::TcpStream::connect(&address).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        starting.elapsed()
    });
    let healthy = eventually(
        Duration::from_secs(180),
        "readyz back to 200 after the broker restart",
        || async {
            match health(&client, &host.url).await {
                Some((200, _)) => Ok(starting.elapsed()),
                other => Err(format!("readyz: {other:?}\n{}", host.log_tail())),
            }
        },
    )
    .await;
    let outage = stopping.elapsed();
    let start_took = start.await.expect("scripts/kafka start");
    let port_open = port_open.await.expect("port watch");

    // Keep producing for a while after the recovery, then stop and check every input.
    let more = produced.load(Ordering::Relaxed) + 300;
    eventually(
        Duration::from_secs(120),
        "inputs after the recovery",
        || async {
            let p = produced.load(Ordering::Relaxed);
            if p >= more {
                Ok(())
            } else {
                Err(format!("{p} of {more} produced"))
            }
        },
    )
    .await;
    stop.cancel();
    let total = producer.await.expect("producer");
    let settle = Instant::now();
    eventually(
        Duration::from_secs(240),
        "every produced input forwarded",
        || async {
            let counts = outputs.counts();
            let missing = (0..total)
                .filter(|n| !counts.contains_key(&n.to_string()))
                .count();
            if missing == 0 {
                Ok(())
            } else {
                Err(format!(
                    "{missing} of {total} inputs not forwarded yet\n{}",
                    host.log_tail()
                ))
            }
        },
    )
    .await;
    let inputs = input_numbers(&read_all(&bus, &scenario.input, PARTITIONS).await);
    let state = eventually(
        Duration::from_secs(120),
        "a state entry for every input record",
        || async {
            match state_over_http(&client, &host.url).await {
                Some(state) if inputs.keys().all(|p| state.contains_key(p)) => Ok(state),
                Some(state) => Err(format!(
                    "{} state entries for {} input records",
                    state.len(),
                    inputs.len()
                )),
                None => Err("state scan did not answer".into()),
            }
        },
    )
    .await;
    let drained_in = settle.elapsed();
    let numbers: BTreeSet<usize> = inputs.values().copied().collect();
    assert_eq!(
        numbers,
        (0..total).collect::<BTreeSet<_>>(),
        "the input topic holds exactly the numbers the producer sent"
    );
    let counts = outputs.counts();
    assert_effects(&inputs, &state, &counts);
    let dead = read_all(&bus, &scenario.dead_letter, 1).await;
    assert!(
        dead.is_empty(),
        "{} inputs were dead-lettered during the outage instead of waiting for the broker: \
         first {:?}",
        dead.len(),
        dead.values().take(5).collect::<Vec<_>>()
    );
    match health(&client, &host.url).await {
        Some((200, _)) => {}
        other => panic!("readyz after the run: {other:?}"),
    }
    let duplicated = counts.values().filter(|c| **c > 1).count();
    assert!(
        retries.load(Ordering::Relaxed) > 0,
        "no send of the test producer failed: the outage did not interrupt production"
    );
    outputs.close().await;
    drop(host);
    println!(
        "broker restart ({name}): {total} inputs ({} input records, {} sends retried by the test \
         producer); {produced_before_stop} produced before the stop, {} during the outage; \
         stop took {:.1} s, readyz degraded {:.1} s after the stop began; the broker's port \
         opened {:.1} s after the start began, readyz back to 200 after {:.1} s ({:.1} s \
         after the port opened; scripts/kafka start returned after {:.1} s); whole outage \
         as seen by the host {:.1} s; {duplicated} outputs duplicated; all effects present {:.1} s after the last \
         input; test took {:.1} s",
        inputs.len(),
        retries.load(Ordering::Relaxed),
        produced_during_outage - produced_before_stop,
        stop_took.as_secs_f64(),
        degraded.as_secs_f64(),
        port_open.as_secs_f64(),
        healthy.as_secs_f64(),
        healthy.saturating_sub(port_open).as_secs_f64(),
        start_took.as_secs_f64(),
        outage.as_secs_f64(),
        drained_in.as_secs_f64(),
        began.elapsed().as_secs_f64()
    );
}

/// A host with no traffic reports healthy again once the broker is back (health must not
/// depend on traffic, or a readiness probe would keep away the traffic that could clear it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_host_reports_healthy_again_after_a_broker_restart() {
    let _serial = SERIAL.lock().await;
    let _broker = BrokerGuard::new();
    let bus = test_bus("idle-test");
    let scenario = Scenario::new(&bus, "idle", DEFAULTS).await;
    let host = spawn_host(&scenario, "host").await;
    let client = http();
    let outputs = TopicReader::start(&bus, &scenario.output);
    let inputs: Vec<_> = (0..10).map(|n| scenario.input_message(n)).collect();
    bus.publish(inputs).await.expect("inputs produced");
    eventually(Duration::from_secs(60), "10 inputs handled", || async {
        match outputs.len() {
            10.. => Ok(()),
            n => Err(format!("{n} outputs")),
        }
    })
    .await;
    // Once they are committed, nothing is re-delivered after the restart: the host stays idle.
    eventually(Duration::from_secs(60), "10 inputs committed", || async {
        let committed = committed_offsets(&scenario.group, &scenario.input);
        match committed.values().sum::<i64>() {
            10.. => Ok(()),
            _ => Err(format!("committed {committed:?}")),
        }
    })
    .await;

    kafka_script_async("stop").await;
    eventually(Duration::from_secs(60), "readyz degraded", || async {
        match health(&client, &host.url).await {
            Some((503, status)) if status == "not ready" => Ok(()),
            other => Err(format!("readyz: {other:?}")),
        }
    })
    .await;
    kafka_script_async("start").await;
    let back = Instant::now();
    eventually(
        Duration::from_secs(60),
        "readyz back to 200 with no traffic after the broker restart",
        || async {
            match health(&client, &host.url).await {
                Some((200, _)) => Ok(()),
                other => Err(format!("readyz: {other:?}")),
            }
        },
    )
    .await;
    println!(
        "idle host healthy {:.1} s after the broker was back",
        back.elapsed().as_secs_f64()
    );
    outputs.close().await;
}
