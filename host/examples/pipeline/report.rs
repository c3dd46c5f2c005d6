//! The run's figures as JSON (for comparing runs) and as the Markdown table the README shows.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use crate::Guarantee;
use crate::languages::LanguageRow;
use crate::measure::{Latency, Throughput};
use crate::settings::Settings;

#[derive(Serialize)]
pub struct Report {
    machine: Machine,
    settings: Settings,
    pub throughput: Vec<ThroughputRow>,
    pub latency: Vec<LatencyRow>,
    pub languages: Option<Vec<LanguageRow>>,
    pub slow: Option<SlowRun>,
}

#[derive(Serialize)]
struct Machine {
    cpus: usize,
    cpu_model: String,
    kernel: String,
    /// `/proc/loadavg` when the run started: other work on the machine skews the figures.
    load_average: String,
    unix_time: u64,
}

#[derive(Serialize)]
pub struct ThroughputRow {
    pub guarantee: Guarantee,
    pub partitions: i32,
    pub native: Option<Throughput>,
    pub eventhost: Option<Throughput>,
    /// eventhost events/s over native events/s.
    pub ratio: Option<f64>,
}

#[derive(Serialize)]
pub struct LatencyRow {
    pub guarantee: Guarantee,
    pub partitions: i32,
    pub offered_per_s: f64,
    pub native_lone: Latency,
    pub native_loaded: Latency,
    pub eventhost_lone: Option<Latency>,
    pub eventhost_loaded: Option<Latency>,
}

#[derive(Serialize)]
pub struct SlowRun {
    pub orders: usize,
    pub partitions: i32,
    pub processing_delay_ms: u64,
    pub orders_per_partition: Vec<usize>,
    pub results: usize,
    /// From the host listening to the last result; `None` when none came.
    pub seconds_to_last_result: Option<f64>,
    pub timeout_s: u64,
    pub subscription_extra: String,
}

impl ThroughputRow {
    pub fn new(
        guarantee: Guarantee,
        partitions: i32,
        native: Option<Throughput>,
        eventhost: Option<Throughput>,
    ) -> ThroughputRow {
        let ratio = native
            .as_ref()
            .zip(eventhost.as_ref())
            .filter(|(native, _)| native.events_per_s > 0.0)
            .map(|(native, host)| host.events_per_s / native.events_per_s);
        ThroughputRow {
            guarantee,
            partitions,
            native,
            eventhost,
            ratio,
        }
    }
}

impl LatencyRow {
    pub fn new(
        guarantee: Guarantee,
        partitions: i32,
        offered_per_s: f64,
        (native_lone, native_loaded): (Latency, Latency),
        eventhost: Option<(Latency, Latency)>,
    ) -> LatencyRow {
        let (eventhost_lone, eventhost_loaded) = eventhost.unzip();
        LatencyRow {
            guarantee,
            partitions,
            offered_per_s,
            native_lone,
            native_loaded,
            eventhost_lone,
            eventhost_loaded,
        }
    }
}

impl Report {
    pub fn new(settings: &Settings) -> Report {
        Report {
            machine: Machine::here(),
            settings: settings.clone(),
            throughput: Vec::new(),
            latency: Vec::new(),
            languages: None,
            slow: None,
        }
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("cannot write {}", path.display()))
    }

    pub fn markdown(&self) -> String {
        let (s, machine) = (&self.settings, &self.machine);
        let mut out = format!(
            "Kafka pipeline, payment plugin in eventhost against native Rust on rdkafka \
             ({} orders per run, or {} s after the first result; best of {} runs per side; {}, \
             {} CPUs, Linux {}, load average at start {}):\n\n",
            s.orders,
            s.window_s,
            s.rounds,
            machine.cpu_model,
            machine.cpus,
            machine.kernel,
            machine.load_average
        );
        if !self.throughput.is_empty() {
            self.throughput_table(&mut out);
        }
        if !self.latency.is_empty() {
            self.latency_table(&mut out);
        }
        if let Some(languages) = &self.languages {
            self.languages_table(languages, &mut out);
        }
        if let Some(slow) = &self.slow {
            slow.describe(&mut out);
        }
        out
    }

    fn languages_table(&self, rows: &[LanguageRow], out: &mut String) {
        let s = &self.settings;
        let _ = writeln!(
            out,
            "\nThe payment plugin in each language, eventhost, at-least-once, {} partitions \
             ({} orders per run for Rust, C and Go, {} for JavaScript and Python, or {} s after \
             the first result; limits.memory_mib = 64 for all; best of {} runs):\n",
            s.language_partitions, s.language_orders, s.interpreted_orders, s.window_s, s.rounds
        );
        out.push_str("| language | component | events/s | vs Rust |\n");
        out.push_str("|---|---|---|---|\n");
        for row in rows {
            let ratio = row.ratio_to_rust.map_or("—".into(), |r| format!("{r:.3}×"));
            let _ = writeln!(
                out,
                "| {} | {} ({:.2} MB) | {} | {ratio} |",
                row.language,
                row.component,
                row.bytes as f64 / 1e6,
                rate(&row.eventhost)
            );
        }
    }

    fn throughput_table(&self, out: &mut String) {
        out.push_str("| guarantee | partitions | native events/s | eventhost events/s | eventhost/native |\n");
        out.push_str("|---|---|---|---|---|\n");
        for row in &self.throughput {
            let native = row.native.as_ref().map_or("—".into(), rate);
            let host = row.eventhost.as_ref().map_or("not available".into(), rate);
            let ratio = row.ratio.map_or("—".into(), |r| format!("{r:.3}×"));
            let guarantee = row.guarantee.label();
            let _ = writeln!(
                out,
                "| {guarantee} | {} | {native} | {host} | {ratio} |",
                row.partitions
            );
        }
    }

    fn latency_table(&self, out: &mut String) {
        out.push_str(
            "\nEnd-to-end latency in ms (produce call → result seen by a consumer): lone orders one \
             at a time, then an open-loop load at half the native maximum:\n\n",
        );
        out.push_str("| guarantee | partitions | side | lone p50 | lone p99 | load/s | loaded p50 | loaded p99 | results in time |\n");
        out.push_str("|---|---|---|---|---|---|---|---|---|\n");
        for row in &self.latency {
            let sides = [
                ("native", Some((&row.native_lone, &row.native_loaded))),
                (
                    "eventhost",
                    row.eventhost_lone
                        .as_ref()
                        .zip(row.eventhost_loaded.as_ref()),
                ),
            ];
            for (side, figures) in sides {
                let cells = figures.map_or_else(
                    || "not available | — | — | — | —".to_string(),
                    |(lone, loaded)| {
                        let (p50, p99) =
                            (millis(loaded.p50_ms, loaded), millis(loaded.p99_ms, loaded));
                        let results = format!("{} of {}", loaded.received, loaded.sent);
                        let lone = format!(
                            "{} | {}",
                            millis(lone.p50_ms, lone),
                            millis(lone.p99_ms, lone)
                        );
                        format!(
                            "{lone} | {:.0} | {p50} | {p99} | {results}",
                            row.offered_per_s
                        )
                    },
                );
                let _ = writeln!(
                    out,
                    "| {} | {} | {side} | {cells} |",
                    row.guarantee.label(),
                    row.partitions
                );
            }
        }
    }
}

impl SlowRun {
    fn describe(&self, out: &mut String) {
        let time = self
            .seconds_to_last_result
            .map_or("no result".into(), |s| format!("{s:.1} s"));
        let extra = match self.subscription_extra.trim() {
            "" => String::new(),
            extra => format!(" ({extra})"),
        };
        let _ = writeln!(
            out,
            "\n{} orders with processing_delay_ms = {} on {} partitions{extra} ({:?} per \
             partition): {} results, the last {time} after the host listened (bound {} s).",
            self.orders,
            self.processing_delay_ms,
            self.partitions,
            self.orders_per_partition,
            self.results,
            self.timeout_s,
        );
    }
}

fn rate(run: &Throughput) -> String {
    let partial = if run.results < run.orders {
        format!(
            " ({} of {} in {:.0} s)",
            run.results, run.orders, run.seconds
        )
    } else {
        String::new()
    };
    format!("{:.0}{partial}", run.events_per_s)
}

/// A percentile, or how long results were waited for when too few of them came.
fn millis(value: Option<f64>, latency: &Latency) -> String {
    value.map_or_else(
        || format!("> {:.0} s", latency.waited_s),
        |ms| format!("{ms:.1}"),
    )
}

impl Machine {
    fn here() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map_or("unknown CPU".into(), |(_, model)| model.trim().to_string());
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            cpu_model,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or("unknown".into(), |text| text.trim().to_string()),
            load_average: std::fs::read_to_string("/proc/loadavg").map_or(
                "unknown".into(),
                |text| {
                    text.split_whitespace()
                        .take(3)
                        .collect::<Vec<_>>()
                        .join(" ")
                },
            ),
            unix_time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }
}
