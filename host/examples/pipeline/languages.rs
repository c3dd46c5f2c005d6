//! The host's throughput with the payment plugin in each language: the same pipeline, the
//! same orders and checks, with `payment.wasm` replaced by the JavaScript, Python, Go or C
//! component, as a ratio to the Rust plugin measured the same way in the same run.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::Serialize;

use crate::host::HostTuning;
use crate::measure::Throughput;
use crate::{Bench, Guarantee, Side, Workload, best};

/// A payment plugin of `plugins/dist`.
struct Language {
    name: &'static str,
    component: &'static str,
    /// An interpreter in the component: a fresh instance costs milliseconds, so its runs get
    /// fewer orders.
    interpreted: bool,
}

const LANGUAGES: [Language; 5] = [
    Language {
        name: "rust",
        component: "payment.wasm",
        interpreted: false,
    },
    Language {
        name: "c",
        component: "payment-c.wasm",
        interpreted: false,
    },
    Language {
        name: "go",
        component: "payment-go.wasm",
        interpreted: false,
    },
    Language {
        name: "js",
        component: "payment-js.wasm",
        interpreted: true,
    },
    Language {
        name: "python",
        component: "payment-py.wasm",
        interpreted: true,
    },
];

#[derive(Serialize)]
pub struct LanguageRow {
    pub language: &'static str,
    pub component: &'static str,
    pub bytes: u64,
    pub guarantee: Guarantee,
    pub partitions: i32,
    pub eventhost: Throughput,
    /// events/s over the Rust plugin's in the same run, when Rust was measured.
    pub ratio_to_rust: Option<f64>,
}

/// A component of `plugins/dist`, which `make plugins` builds.
pub fn component(file: &str) -> anyhow::Result<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/dist")
        .join(file);
    if !path.exists() {
        bail!("{} is missing: run make plugins", path.display());
    }
    Ok(path.canonicalize()?)
}

/// One row per language of the settings, each the best of the settings' rounds.
pub fn rows(bench: &Bench) -> anyhow::Result<Vec<LanguageRow>> {
    let settings = &bench.settings;
    // The interpreters' heaps outgrow the 32 MiB the coolstore gives the Rust plugin; every
    // language gets the same limit so that the rows compare.
    let tuning = HostTuning {
        memory_mib: 64,
        ..settings.tuning.clone()
    };
    let mut rows = Vec::new();
    for name in &settings.languages {
        let language = LANGUAGES
            .iter()
            .find(|language| language.name == name)
            .with_context(|| format!("EVENTHOST_BENCH_LANGUAGES: no payment plugin in {name:?}"))?;
        let plugin = component(language.component)?;
        let workload = Workload {
            plugin: &plugin,
            orders: if language.interpreted {
                settings.interpreted_orders
            } else {
                settings.language_orders
            },
            tuning: &tuning,
        };
        eprintln!(
            "  the payment plugin in {} ({}):",
            language.name, language.component
        );
        let mut kept = None;
        for _ in 0..settings.rounds {
            let run = bench.throughput(
                Side::Eventhost,
                Guarantee::AtLeastOnce,
                settings.language_partitions,
                &workload,
            )?;
            kept = best(kept, run);
        }
        let eventhost = kept.context("no round ran")?;
        rows.push(LanguageRow {
            language: language.name,
            component: language.component,
            bytes: std::fs::metadata(&plugin)?.len(),
            guarantee: Guarantee::AtLeastOnce,
            partitions: settings.language_partitions,
            eventhost,
            ratio_to_rust: None,
        });
    }
    let rust = rows
        .iter()
        .find(|row| row.language == "rust")
        .map(|row| row.eventhost.events_per_s)
        .filter(|rate| *rate > 0.0);
    for row in &mut rows {
        row.ratio_to_rust = rust.map(|rust| row.eventhost.events_per_s / rust);
    }
    Ok(rows)
}
