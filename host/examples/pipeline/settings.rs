//! The benchmark's settings, from environment variables (listed in `main.rs`), so that
//! `make bench` needs no arguments and a run can still be shaped for a question.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;

use crate::host::HostTuning;

/// The run's settings, from the environment.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    pub bootstrap: String,
    pub orders: usize,
    pub window_s: u64,
    pub partitions: Vec<i32>,
    pub latency_partitions: Vec<i32>,
    pub load_s: u64,
    pub drain_s: u64,
    pub lone_orders: usize,
    pub rounds: usize,
    pub slow_orders: Option<usize>,
    pub slow_timeout_s: u64,
    #[serde(skip)]
    pub output: PathBuf,
    #[serde(skip)]
    pub tuning: HostTuning,
    pub subscription_extra: String,
    pub bus_options: String,
    /// The payment plugin's languages to compare, in order (`rust` first gives the ratios).
    pub languages: Vec<String>,
    pub language_partitions: i32,
    pub language_orders: usize,
    pub interpreted_orders: usize,
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Settings> {
        let tuning = HostTuning {
            // The coolstore's payment subscription as shipped.
            subscription_extra: env_text("EVENTHOST_BENCH_SUB_EXTRA", "concurrency = 64"),
            bus_options: env_text("EVENTHOST_BENCH_BUS_OPTIONS", ""),
            processing_delay_ms: 0,
            memory_mib: 32,
        };
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap_or(Path::new("."));
        let default_output = workspace.join("target/bench/pipeline.json");
        Ok(Settings {
            bootstrap: env_text("EVENTHOST_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
            orders: env_number("EVENTHOST_BENCH_ORDERS", 100_000)?,
            window_s: env_number("EVENTHOST_BENCH_WINDOW_S", 10)?,
            partitions: env_list("EVENTHOST_BENCH_PARTITIONS", "1,3,6")?,
            latency_partitions: env_list("EVENTHOST_BENCH_LATENCY_PARTITIONS", "3")?,
            load_s: env_number("EVENTHOST_BENCH_LOAD_S", 3)?,
            drain_s: env_number("EVENTHOST_BENCH_DRAIN_S", 10)?,
            lone_orders: 20,
            rounds: env_number("EVENTHOST_BENCH_ROUNDS", 2)?.max(1),
            slow_orders: match env_text("EVENTHOST_BENCH_SLOW_ORDERS", "100").trim() {
                "" | "0" => None,
                text => Some(
                    text.parse()
                        .context("EVENTHOST_BENCH_SLOW_ORDERS is not a number")?,
                ),
            },
            slow_timeout_s: env_number("EVENTHOST_BENCH_SLOW_TIMEOUT_S", 120)?,
            output: std::env::var_os("EVENTHOST_BENCH_OUTPUT").map_or(default_output, Into::into),
            languages: env_text("EVENTHOST_BENCH_LANGUAGES", "rust,c,go,js,python")
                .split(',')
                .map(|name| name.trim().to_string())
                .filter(|name| !name.is_empty())
                .collect(),
            language_partitions: env_number("EVENTHOST_BENCH_LANGUAGE_PARTITIONS", 3)?,
            language_orders: env_number("EVENTHOST_BENCH_LANGUAGE_ORDERS", 20_000)?,
            interpreted_orders: env_number("EVENTHOST_BENCH_INTERPRETED_ORDERS", 3_000)?,
            subscription_extra: tuning.subscription_extra.clone(),
            bus_options: tuning.bus_options.clone(),
            tuning,
        })
    }
}

fn env_text(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .ok()
            .with_context(|| format!("{name} is not a number: {text:?}")),
        Err(_) => Ok(default),
    }
}

fn env_list(name: &str, default: &str) -> anyhow::Result<Vec<i32>> {
    env_text(name, default)
        .split(',')
        .filter(|item| !item.trim().is_empty())
        .map(|item| {
            item.trim()
                .parse()
                .with_context(|| format!("{name}: not a partition count: {item:?}"))
        })
        .collect()
}
