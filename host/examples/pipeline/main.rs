//! The Kafka pipeline at full speed: the payment plugin in the `eventhost` binary against the
//! same work in plain Rust on rdkafka (`native.rs`), on the same broker, in the same run.
//!
//! Run with: `make bench` (starts the broker, builds the plugins and the release host), or with
//! a broker on 127.0.0.1:9092 and the plugins built (`make plugins`):
//! `cargo build --release --bin eventhost --example pipeline && target/release/examples/pipeline`.
//!
//! For each partition count and guarantee, on fresh topics, native first, then eventhost:
//! 1. Throughput: N workshop orders are produced first; the worker then drains them, and
//!    events/s counts from the creation of the first result (the worker's produce call, stamped
//!    by its Kafka client) to the last result being seen on the results topic, so start-up and
//!    group join are not counted.
//! 2. Latency (by default on 3 partitions): a new worker, warmed up with one order, gets lone
//!    orders one at a time, then an open-loop producer at half the native maximum; each order's
//!    latency runs from its produce call to its result being seen by a consumer.
//!
//! 3. Languages (by default on 3 partitions, at-least-once): the host's throughput with the
//!    payment plugin in each language (`plugins/dist/payment-{c,go,js,py}.wasm`), as a ratio to
//!    the Rust plugin measured the same way in the same run (`languages.rs`).
//!
//! Results: a Markdown table on stdout and `target/bench/pipeline.json`. Settings (env):
//! - `EVENTHOST_BENCH_ORDERS` (100000): orders per throughput run (a native run then lasts
//!   about 1.5 s);
//!   `EVENTHOST_BENCH_WINDOW_S` (10): a throughput run stops this long after its first result;
//! - `EVENTHOST_BENCH_PARTITIONS` (1,3,6), `EVENTHOST_BENCH_LATENCY_PARTITIONS` (3);
//! - `EVENTHOST_BENCH_LOAD_S` (3) of open-loop load, then up to `EVENTHOST_BENCH_DRAIN_S` (10);
//! - `EVENTHOST_BENCH_ROUNDS` (2): throughput runs per side, alternating, best one kept (a
//!   shared machine is noisy, and the short native runs feel it most);
//! - `EVENTHOST_BENCH_SUB_EXTRA` (`concurrency = 64`, as the coolstore ships; empty for one
//!   input at a time), `EVENTHOST_BENCH_BUS_OPTIONS`: TOML lines added to the host's
//!   `[[subscription]]` and `[bus.options]` (e.g. `"linger.ms" = 0`);
//! - `EVENTHOST_BENCH_LANGUAGES` (rust,c,go,js,python; empty skips them) on
//!   `EVENTHOST_BENCH_LANGUAGE_PARTITIONS` (3), with `EVENTHOST_BENCH_LANGUAGE_ORDERS` (20000)
//!   orders for the compiled languages and `EVENTHOST_BENCH_INTERPRETED_ORDERS` (3000) for
//!   JavaScript and Python, whose runs would otherwise last minutes (each stops at the window);
//! - `EVENTHOST_BENCH_SLOW_ORDERS` (100; 0 skips it): also time that many orders with the
//!   workshop's 5 s processing delay on 3 partitions, for at most
//!   `EVENTHOST_BENCH_SLOW_TIMEOUT_S` (120);
//! - `EVENTHOST_KAFKA_BOOTSTRAP` (127.0.0.1:9092), `EVENTHOST_BENCH_OUTPUT` (the JSON file).

mod broker;
mod host;
mod languages;
mod measure;
mod native;
mod orders;
mod report;
mod settings;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;

use broker::{Broker, OrderProducer, Topics, Watcher};
use host::{EventhostProcess, HostRun, HostTuning};
use measure::{Latency, Probe, Throughput};
use native::NativeWorker;
use report::{LatencyRow, Report, SlowRun, ThroughputRow};
use settings::Settings;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Guarantee {
    AtLeastOnce,
    ExactlyOnce,
}

impl Guarantee {
    /// How a consumer of results reads: only committed transactions count for exactly-once.
    pub fn isolation_level(self) -> &'static str {
        match self {
            Guarantee::AtLeastOnce => "read_uncommitted",
            Guarantee::ExactlyOnce => "read_committed",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Guarantee::AtLeastOnce => "at-least-once",
            Guarantee::ExactlyOnce => "exactly-once",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Native,
    Eventhost,
}

/// The worker of a run: native in this process, or the host as a subprocess.
pub enum Worker {
    Native(NativeWorker),
    Eventhost(EventhostProcess),
}

impl Worker {
    /// Fails when the worker stopped on its own.
    pub fn check(&mut self) -> anyhow::Result<()> {
        match self {
            Worker::Native(worker) => worker.failure().map_or(Ok(()), Err),
            Worker::Eventhost(process) => process.check_running(),
        }
    }
}

/// What a throughput run drains and, for the host, which component does the work.
struct Workload<'a> {
    plugin: &'a Path,
    orders: usize,
    tuning: &'a HostTuning,
}

/// Everything a run needs: settings, the broker, the host binary and the plugin.
struct Bench {
    settings: Settings,
    broker: Broker,
    producer: OrderProducer,
    host_binary: PathBuf,
    plugin: PathBuf,
}

/// A name no other run of this process or an earlier one uses (topics, groups, order ids).
fn unique_run(label: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("bench-{seconds}-{}-{n}-{label}", std::process::id())
}

impl Bench {
    /// The workload of the main rows: the Rust payment plugin as the coolstore ships it.
    fn shipped(&self) -> Workload<'_> {
        Workload {
            plugin: &self.plugin,
            orders: self.settings.orders,
            tuning: &self.settings.tuning,
        }
    }

    fn start_worker(
        &self,
        side: Side,
        guarantee: Guarantee,
        topics: &Topics,
        group: &str,
        workload: &Workload<'_>,
    ) -> anyhow::Result<Worker> {
        Ok(match side {
            Side::Native => Worker::Native(NativeWorker::start(
                &self.broker.bootstrap,
                topics,
                group,
                guarantee,
            )),
            Side::Eventhost => Worker::Eventhost(EventhostProcess::start(&HostRun {
                binary: &self.host_binary,
                plugin: workload.plugin,
                bootstrap: &self.broker.bootstrap,
                topics,
                group,
                guarantee,
                tuning: workload.tuning,
            })?),
        })
    }

    /// Events/s of one side draining a backlog of orders on fresh topics.
    fn throughput(
        &self,
        side: Side,
        guarantee: Guarantee,
        partitions: i32,
        workload: &Workload<'_>,
    ) -> anyhow::Result<Throughput> {
        let run = unique_run(&format!("{side:?}-{partitions}p").to_lowercase());
        let topics = self.broker.fresh_topics(&run, partitions)?;
        let orders: Vec<_> = (0..workload.orders)
            .map(|n| orders::order(&run, n))
            .collect();
        self.producer.produce_all(&topics.input, &orders)?;
        let watcher = Watcher::start(&self.broker, &topics, guarantee)?;
        let mut worker = self.start_worker(side, guarantee, &topics, &run, workload)?;
        let window = Duration::from_secs(self.settings.window_s);
        let measured = measure::throughput(&watcher, &mut worker, orders.len(), window);
        drop(worker);
        let checked = measured.and_then(|m| check_sample(&watcher, &orders).map(|()| m));
        drop(watcher);
        self.broker.delete_topics(&topics);
        if let Ok(run) = &checked {
            let side = format!("{side:?}").to_lowercase();
            let what = format!("{side}, {}, {partitions} partition(s)", guarantee.label());
            eprintln!("  {what}: {:.0} events/s", run.events_per_s);
        }
        checked
    }

    /// Lone-order and open-loop latency of one side at `rate` orders/s, on fresh topics.
    fn latency(
        &self,
        side: Side,
        guarantee: Guarantee,
        partitions: i32,
        rate: f64,
    ) -> anyhow::Result<(Latency, Latency)> {
        let run = unique_run(&format!("{side:?}-{partitions}p-latency").to_lowercase());
        let topics = self.broker.fresh_topics(&run, partitions)?;
        let watcher = Watcher::start(&self.broker, &topics, guarantee)?;
        let mut worker = self.start_worker(side, guarantee, &topics, &run, &self.shipped())?;
        let mut probe = Probe {
            producer: &self.producer,
            topic: &topics.input,
            run: &run,
            watcher: &watcher,
            worker: &mut worker,
        };
        let measured = probe.warm_up().and_then(|()| {
            let lone = probe.lone_orders(self.settings.lone_orders)?;
            let load = Duration::from_secs(self.settings.load_s);
            let drain = Duration::from_secs(self.settings.drain_s);
            let loaded = probe.open_loop(rate, load, drain)?;
            Ok((lone, loaded))
        });
        drop(worker);
        drop(watcher);
        self.broker.delete_topics(&topics);
        measured
    }

    /// The workshop's 5 s card processing: how long the host takes for `count` orders on 3
    /// partitions, from the moment it listens to the last result.
    fn slow_orders(&self, count: usize) -> anyhow::Result<SlowRun> {
        const PARTITIONS: i32 = 3;
        let run = unique_run("slow");
        let topics = self.broker.fresh_topics(&run, PARTITIONS)?;
        // The same order ids every time, so the same keys land on the same partitions and runs
        // compare: one slow order holds its whole partition today, the fullest one sets the time.
        let orders: Vec<_> = (0..count).map(|n| orders::order("slow", n)).collect();
        let per_partition = self.producer.produce_all(&topics.input, &orders)?;
        let watcher = Watcher::start(&self.broker, &topics, Guarantee::AtLeastOnce)?;
        let tuning = HostTuning {
            processing_delay_ms: 5000,
            ..self.settings.tuning.clone()
        };
        let workload = Workload {
            tuning: &tuning,
            ..self.shipped()
        };
        let mut worker = self.start_worker(
            Side::Eventhost,
            Guarantee::AtLeastOnce,
            &topics,
            &run,
            &workload,
        )?;
        let started = Instant::now();
        let deadline = started + Duration::from_secs(self.settings.slow_timeout_s);
        let mut results = 0;
        while results < count && Instant::now() < deadline {
            results = watcher.wait_for(
                count,
                (Instant::now() + Duration::from_secs(1)).min(deadline),
            )?;
            worker.check()?;
        }
        let last = watcher.first_and_last().map(|(_, last)| last - started);
        drop(worker);
        drop(watcher);
        self.broker.delete_topics(&topics);
        Ok(SlowRun {
            orders: count,
            partitions: PARTITIONS,
            processing_delay_ms: 5000,
            orders_per_partition: per_partition.into_values().collect(),
            results,
            seconds_to_last_result: last.map(|d| d.as_secs_f64()),
            timeout_s: self.settings.slow_timeout_s,
            subscription_extra: self.settings.subscription_extra.clone(),
        })
    }
}

/// The first result a worker published must be what the native decision gives for that order:
/// both sides do the same work, byte for byte (but for the other languages' stamp on `rules`).
fn check_sample(watcher: &Watcher, orders: &[(String, Vec<u8>)]) -> anyhow::Result<()> {
    let (id, value) = watcher.sample().context("no result to check")?;
    let (_, order) = orders
        .iter()
        .find(|(order_id, _)| *order_id == id)
        .with_context(|| format!("a result for an order never sent: {id}"))?;
    let expected = orders::decide(order).context("a sent order is not an order")?;
    if without_language_stamp(&value) != expected {
        bail!(
            "the results differ for order {id}:\n  published {}\n  native    {}",
            String::from_utf8_lossy(&value),
            String::from_utf8_lossy(&expected)
        );
    }
    Ok(())
}

/// The result with `"rules":"c-v1"` (as the C, Go, JavaScript and Python plugins stamp it) read
/// as the Rust plugin's `"rules":"v1"`.
fn without_language_stamp(value: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(value);
    const RULES: &str = "\"rules\":\"";
    let Some(start) = text.find(RULES).map(|at| at + RULES.len()) else {
        return value.to_vec();
    };
    match text[start..].find(['-', '"']) {
        Some(dash) if text[start + dash..].starts_with('-') => {
            format!("{}{}", &text[..start], &text[start + dash + 1..]).into_bytes()
        }
        _ => value.to_vec(),
    }
}

/// The best of `rounds` throughput runs of each side, alternating native and eventhost so both
/// see the same share of the machine's noise.
fn throughput_row(
    bench: &Bench,
    guarantee: Guarantee,
    partitions: i32,
) -> anyhow::Result<ThroughputRow> {
    let mut native: Option<Throughput> = None;
    let mut eventhost: Option<Throughput> = None;
    let shipped = bench.shipped();
    for _ in 0..bench.settings.rounds {
        native = best(
            native,
            bench.throughput(Side::Native, guarantee, partitions, &shipped)?,
        );
        let run = bench.throughput(Side::Eventhost, guarantee, partitions, &shipped)?;
        eventhost = best(eventhost, run);
    }
    Ok(ThroughputRow::new(guarantee, partitions, native, eventhost))
}

fn best(kept: Option<Throughput>, run: Throughput) -> Option<Throughput> {
    match kept {
        Some(kept) if kept.events_per_s >= run.events_per_s => Some(kept),
        _ => Some(run),
    }
}

/// Latency of both sides at half the native maximum measured for the same partition count.
fn latency_row(bench: &Bench, throughput: &ThroughputRow) -> anyhow::Result<LatencyRow> {
    let (guarantee, partitions) = (throughput.guarantee, throughput.partitions);
    let native_max = throughput
        .native
        .as_ref()
        .map_or(0.0, |native| native.events_per_s);
    let rate = (native_max / 2.0).max(1.0);
    let native = bench.latency(Side::Native, guarantee, partitions, rate)?;
    let eventhost = if throughput.eventhost.is_some() {
        Some(bench.latency(Side::Eventhost, guarantee, partitions, rate)?)
    } else {
        None
    };
    Ok(LatencyRow::new(
        guarantee, partitions, rate, native, eventhost,
    ))
}

fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let plugin = languages::component("payment.wasm")?;
    let broker = Broker::connect(&settings.bootstrap)?;
    let bench = Bench {
        producer: broker.order_producer()?,
        broker,
        host_binary: host::release_binary()?,
        plugin,
        settings,
    };
    let mut report = Report::new(&bench.settings);
    for guarantee in [Guarantee::AtLeastOnce, Guarantee::ExactlyOnce] {
        for &partitions in &bench.settings.partitions {
            let row = throughput_row(&bench, guarantee, partitions)?;
            if bench.settings.latency_partitions.contains(&partitions) {
                report.latency.push(latency_row(&bench, &row)?);
            }
            report.throughput.push(row);
        }
    }
    if !bench.settings.languages.is_empty() {
        report.languages = Some(languages::rows(&bench)?);
    }
    if let Some(count) = bench.settings.slow_orders {
        eprintln!("  {count} orders with a 5 s processing delay ...");
        report.slow = Some(bench.slow_orders(count)?);
    }
    report.write_json(&bench.settings.output)?;
    println!("{}", report.markdown());
    println!("(JSON: {})", bench.settings.output.display());
    Ok(())
}
