//! Results: latency percentiles of a set of calls for the benchmarks' tables, and their JSON
//! report in `target/bench`.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

/// Percentiles in milliseconds (nearest rank).
#[derive(Debug, Default)]
pub struct Stats {
    pub count: usize,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Stats {
    pub fn of(mut took: Vec<Duration>) -> Stats {
        if took.is_empty() {
            return Stats::default();
        }
        took.sort();
        let at = |q: f64| took[((took.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
        Stats {
            count: took.len(),
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
            max: at(1.0),
        }
    }

    /// `p50 / p99 / max ms`.
    pub fn row(&self) -> String {
        format!("{:.1} / {:.1} / {:.1} ms", self.p50, self.p99, self.max)
    }

    pub fn json(&self) -> serde_json::Value {
        json!({
            "count": self.count,
            "p50": self.p50,
            "p99": self.p99,
            "p99_9": self.p999,
            "max": self.max,
        })
    }
}

/// Writes `report` to `target/bench/<name>.json`.
pub fn write_report(name: &str, report: &serde_json::Value) -> anyhow::Result<()> {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join(format!("{name}.json")),
        serde_json::to_string_pretty(report)?,
    )?;
    Ok(())
}
