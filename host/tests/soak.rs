//! The host keeps its memory while it runs: the real `eventhost` binary serves the coolstore of
//! `make run` under a steady mix of HTTP and bus traffic (payments over HTTP, shopping and
//! checkouts whose orders and payments flow through the consumers) while its resident memory
//! (`VmRSS`) is sampled every second. After a warm-up, every sample must stay below the warm-up
//! baseline plus [`BAND`] while the bus takes a hundred thousand records and more.
//!
//! The clients send more than the order service can handle, so its topics sit at their
//! retention bound and the embedded log holds as much as it ever will: the worst case for
//! memory. Without retention the same run doubles the host's RSS and fails.
//!
//! `cargo test --test soak` (part of `make test`) runs about 100 s on the embedded bus.
//! `make soak` runs it longer on both buses and prints RSS over time; set by
//! `EVENTHOST_SOAK_BUS` (`embedded` or `kafka`), `EVENTHOST_SOAK_SECONDS` (of traffic) and, for
//! Kafka, `EVENTHOST_KAFKA_BOOTSTRAP` (default `127.0.0.1:9092`).

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{HostProcess, eventually, kafka_bootstrap, shop_wiring, unique};
use serde_json::{Value, json};

/// How far RSS may rise above the warm-up baseline.
const BAND: f64 = 0.20;
/// Share of the run spent warming up before the baseline is taken.
const WARM_UP_SHARE: f64 = 0.3;
/// Concurrent clients.
const CLIENTS: usize = 8;
/// Fewest records per second after warm-up: less traffic could not show a leak.
const MIN_RECORDS_PER_SECOND: f64 = 500.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BusKind {
    Embedded,
    Kafka,
}

impl std::fmt::Display for BusKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BusKind::Embedded => "embedded",
            BusKind::Kafka => "kafka",
        })
    }
}

struct Settings {
    bus: BusKind,
    traffic: Duration,
}

impl Settings {
    fn from_env() -> Settings {
        let bus = match std::env::var("EVENTHOST_SOAK_BUS").as_deref() {
            Ok("kafka") => BusKind::Kafka,
            Ok("embedded") | Err(_) => BusKind::Embedded,
            Ok(other) => panic!("EVENTHOST_SOAK_BUS is {other:?}, expected embedded or kafka"),
        };
        let seconds = std::env::var("EVENTHOST_SOAK_SECONDS")
            .map(|s| s.parse().expect("EVENTHOST_SOAK_SECONDS is a number"))
            .unwrap_or(100);
        Settings {
            bus,
            traffic: Duration::from_secs(seconds),
        }
    }

    fn warm_up(&self) -> Duration {
        self.traffic.mul_f64(WARM_UP_SHARE)
    }
}

/// What the clients did so far.
#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    /// Records the bus took because of the clients' requests: one per payment over HTTP, and
    /// per checkout one order plus the payment the payment service publishes for it.
    records: AtomicU64,
    /// Requests answered with something else than expected: how many, and the first few.
    unexpected: AtomicU64,
    first_unexpected: Mutex<Vec<String>>,
    /// The first order checked out.
    first_order: Mutex<Option<String>>,
}

impl Counters {
    fn unexpected(&self, what: String) {
        self.unexpected.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_unexpected.lock().unwrap();
        if first.len() < 5 {
            first.push(what);
        }
    }
}

struct Sample {
    at: Duration,
    rss_kib: u64,
    records: u64,
    requests: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resident_memory_stays_flat_under_steady_traffic() {
    let settings = Settings::from_env();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), settings.bus);
    let state = dir.path().join("state.redb");
    let args = ["--state", state.to_str().expect("a UTF-8 path")];
    let mut host = HostProcess::start(&config, &args, "warn", &dir.path().join("host.log")).await;
    let url = host.url.clone();

    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::new();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let (client, url, counters, stop) =
                (client.clone(), url.clone(), counters.clone(), stop.clone());
            tokio::spawn(async move { shop(n, &client, &url, &counters, &stop).await })
        })
        .collect();

    let started = Instant::now();
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while started.elapsed() < settings.traffic {
        tick.tick().await;
        assert!(
            !host.exited(),
            "the host exited during the soak; its log:\n{}",
            host.log_tail()
        );
        samples.push(Sample {
            at: started.elapsed(),
            rss_kib: rss_kib(host.id()),
            records: counters.records.load(Ordering::Relaxed),
            requests: counters.requests.load(Ordering::Relaxed),
        });
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }

    let report = Report::new(&settings, &samples, host.log());
    println!("{report}");
    assert_eq!(
        counters.unexpected.load(Ordering::Relaxed),
        0,
        "requests failed, the first: {:#?}\nthe host's log:\n{}",
        counters.first_unexpected.lock().unwrap(),
        host.log_tail()
    );
    let min_records =
        (settings.traffic - settings.warm_up()).as_secs_f64() * MIN_RECORDS_PER_SECOND;
    assert!(
        report.records_after_warm_up as f64 >= min_records,
        "only {} records after warm-up, expected at least {min_records}: too little traffic \
         to tell whether memory stays flat\n{report}",
        report.records_after_warm_up
    );
    assert!(
        report.peak_kib as f64 <= report.baseline_kib as f64 * (1.0 + BAND),
        "RSS rose more than {:.0}% above its warm-up baseline\n{report}",
        BAND * 100.0
    );

    // Orders went through the bus end to end: the first one checked out got its payment.
    let first = counters.first_order.lock().unwrap().clone();
    let order_id = first.expect("at least one checkout");
    let path = format!("{url}/api/orders/{order_id}");
    eventually(
        Duration::from_secs(30),
        &format!("order {order_id} to complete"),
        || async {
            let order: Value = client.get(&path).send().await.ok()?.json().await.ok()?;
            (order["status"] == "COMPLETED").then_some(())
        },
    )
    .await;
    host.stop().await;
}

/// One client: pays over HTTP, shops and checks out, and looks at products and orders, until
/// `stop`.
async fn shop(
    n: usize,
    client: &reqwest::Client,
    url: &str,
    counters: &Counters,
    stop: &AtomicBool,
) {
    let mut last_order = None;
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let id = format!("soak-{n}-{round}");
        let done = match round % 6 {
            // A new cart id and order id every time: nothing may be kept per id in memory.
            0 => {
                let cart = format!("cart-{id}");
                counters.requests.fetch_add(2, Ordering::Relaxed);
                let bought = async {
                    post(
                        client,
                        &format!("{url}/api/cart/{cart}/329299/1"),
                        String::new(),
                    )
                    .await?;
                    let checkout = format!("{url}/api/cart/checkout/{cart}");
                    post(client, &checkout, order(&id).to_string()).await
                };
                bought.await.map(|()| {
                    counters.records.fetch_add(2, Ordering::Relaxed);
                    counters
                        .first_order
                        .lock()
                        .unwrap()
                        .get_or_insert(id.clone());
                    last_order = Some(id);
                })
            }
            1 => {
                counters.requests.fetch_add(2, Ordering::Relaxed);
                let looked = async {
                    get(client, &format!("{url}/api/product/329299"), &[200]).await?;
                    match &last_order {
                        // 404 until the order service consumed the order.
                        Some(id) => {
                            get(client, &format!("{url}/api/orders/{id}"), &[200, 404]).await
                        }
                        None => Ok(()),
                    }
                };
                looked.await
            }
            _ => {
                counters.requests.fetch_add(1, Ordering::Relaxed);
                let payment = format!("{url}/api/payment");
                let paid = post(client, &payment, order(&id).to_string()).await;
                paid.map(|()| {
                    counters.records.fetch_add(1, Ordering::Relaxed);
                })
            }
        };
        if let Err(what) = done {
            counters.unexpected(what);
        }
    }
}

fn order(order_id: &str) -> Value {
    json!({
        "orderId": order_id,
        "name": "Jane Doe",
        "total": "18.79",
        "creditCard": { "number": "4123987754646678", "expiration": "04/29", "nameOnCard": "Jane G Doe" },
        "billingAddress": "123 Anystreet, Pueblo, CO 32213"
    })
}

async fn post(client: &reqwest::Client, url: &str, body: String) -> Result<(), String> {
    answered(
        "POST",
        url,
        client.post(url).body(body).send().await,
        &[200],
    )
    .await
}

async fn get(client: &reqwest::Client, url: &str, expected: &[u16]) -> Result<(), String> {
    answered("GET", url, client.get(url).send().await, expected).await
}

/// `Ok` for an expected status whose body arrived, else what happened.
async fn answered(
    method: &str,
    url: &str,
    response: reqwest::Result<reqwest::Response>,
    expected: &[u16],
) -> Result<(), String> {
    let response = response.map_err(|e| format!("{method} {url}: {e}"))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|e| format!("{method} {url}: {status}, body: {e}"))?;
    if expected.contains(&status.as_u16()) {
        Ok(())
    } else {
        Err(format!("{method} {url}: {status} {body}"))
    }
}

// ---- the host ------------------------------------------------------------------------------

/// The coolstore of `make run` (or `make run-kafka`) with its plugins copied beside it. On
/// Kafka, topics and groups get names of their own, so the shared broker's `orders` and
/// `payments` stay as they were, and the broker drops the soak's records after an hour.
fn write_config(dir: &Path, bus: BusKind) -> std::path::PathBuf {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for name in ["catalog", "cart", "payment", "order"] {
        std::fs::copy(
            common::plugin_wasm(name),
            plugins.join(format!("{name}.wasm")),
        )
        .unwrap();
    }
    let example = match bus {
        BusKind::Embedded => include_str!("../../examples/coolstore/eventhost.toml"),
        BusKind::Kafka => include_str!("../../examples/coolstore/eventhost-kafka.toml"),
    };
    let mut table = shop_wiring(example);
    if bus == BusKind::Kafka {
        rename_for_kafka(&mut table);
    }
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[runtime]\nplugins_dir = \"plugins\"\n\n{}",
        toml::to_string(&table).expect("config serializes")
    );
    let file = dir.join("eventhost.toml");
    std::fs::write(&file, text).unwrap();
    file
}

fn rename_for_kafka(table: &mut toml::Table) {
    let prefix = unique("soak");
    let renamed = |name: &str| format!("{prefix}.{name}");
    let bootstrap = kafka_bootstrap();
    let bus = table["bus"].as_table_mut().expect("[bus]");
    bus.insert("bootstrap".into(), bootstrap.into());
    bus.insert("client_id".into(), prefix.clone().into());
    for topic in table["topic"].as_array_mut().expect("[[topic]]") {
        let topic = topic.as_table_mut().expect("a topic table");
        let name = renamed(topic["name"].as_str().expect("a topic name"));
        topic.insert("name".into(), name.into());
        let mut retention = toml::Table::new();
        retention.insert("ms".into(), 3_600_000.into());
        topic.insert("retention".into(), retention.into());
    }
    for sub in table["subscription"]
        .as_array_mut()
        .expect("[[subscription]]")
    {
        let sub = sub.as_table_mut().expect("a subscription table");
        for key in ["topic", "group"] {
            let value = renamed(sub[key].as_str().expect("topic and group"));
            sub.insert(key.into(), value.into());
        }
    }
    for (_, plugin) in table["plugin"].as_table_mut().expect("[plugin.*]") {
        let plugin = plugin.as_table_mut().expect("a plugin table");
        if let Some(publish) = plugin
            .get_mut("publish")
            .and_then(toml::Value::as_array_mut)
        {
            for topic in publish {
                *topic = renamed(topic.as_str().expect("a topic name")).into();
            }
        }
        let config = plugin
            .entry("config")
            .or_insert_with(|| toml::Table::new().into())
            .as_table_mut()
            .expect("a config table");
        config.insert("orders_topic".into(), renamed("orders").into());
        config.insert("payments_topic".into(), renamed("payments").into());
    }
}

/// `VmRSS` of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc is readable");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

// ---- the report ----------------------------------------------------------------------------

struct Report {
    title: String,
    rows: Vec<String>,
    baseline_kib: u64,
    peak_kib: u64,
    low_kib: u64,
    records_after_warm_up: u64,
    resets: usize,
}

impl Report {
    fn new(settings: &Settings, samples: &[Sample], log: &Path) -> Report {
        let warm_up = settings.warm_up();
        let after: Vec<&Sample> = samples.iter().filter(|s| s.at >= warm_up).collect();
        assert!(after.len() >= 5, "too few samples after warm-up");
        // The baseline is the median of the first samples after warm-up, so one outlier does
        // not set it.
        let mut first: Vec<u64> = after.iter().take(5).map(|s| s.rss_kib).collect();
        first.sort_unstable();
        let baseline_kib = first[first.len() / 2];
        let peak_kib = after.iter().map(|s| s.rss_kib).max().unwrap_or_default();
        let low_kib = after.iter().map(|s| s.rss_kib).min().unwrap_or_default();
        let records_after_warm_up = samples.last().map_or(0, |s| s.records) - after[0].records;
        let resets = std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("retention dropped"))
            .count();
        let every = (samples.len() / 20).max(1);
        let max_kib = samples.iter().map(|s| s.rss_kib).max().unwrap_or(1).max(1);
        let rows = samples
            .iter()
            .enumerate()
            .filter(|(i, _)| i % every == every - 1 || *i + 1 == samples.len())
            .map(|(_, s)| {
                let bar = "#".repeat((s.rss_kib * 40 / max_kib) as usize);
                let phase = if s.at < warm_up { "warm-up" } else { "" };
                format!(
                    "{:>6.0} s {:>8.1} {:>10} {:>10}  {bar:<40} {phase}",
                    s.at.as_secs_f64(),
                    s.rss_kib as f64 / 1024.0,
                    s.records,
                    s.requests
                )
            })
            .collect();
        Report {
            title: format!(
                "soak on the {} bus: {} s of traffic from {CLIENTS} clients, RSS sampled every second",
                settings.bus,
                settings.traffic.as_secs()
            ),
            rows,
            baseline_kib,
            peak_kib,
            low_kib,
            records_after_warm_up,
            resets,
        }
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |kib: u64| kib as f64 / 1024.0;
        writeln!(f, "{}", self.title)?;
        writeln!(
            f,
            "{:>8} {:>8} {:>10} {:>10}  RSS",
            "time", "RSS MiB", "records", "requests"
        )?;
        for row in &self.rows {
            writeln!(f, "{row}")?;
        }
        writeln!(
            f,
            "after warm-up: baseline {:.1} MiB, low {:.1} MiB, peak {:.1} MiB ({:+.1}%, limit +{:.0}%); \
             {} records; {} retention resets logged",
            mib(self.baseline_kib),
            mib(self.low_kib),
            mib(self.peak_kib),
            (self.peak_kib as f64 / self.baseline_kib as f64 - 1.0) * 100.0,
            BAND * 100.0,
            self.records_after_warm_up,
            self.resets
        )
    }
}
