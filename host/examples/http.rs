//! HTTP through plugins against the same handlers compiled natively, with a real load generator,
//! in the same process and the same run.
//!
//! Run with: `make bench` (builds the release host with the `bench` feature, which adds the
//! native routes). Writes `target/bench/http.json`, `http.md` and the chart `http.svg`.
//!
//! The release host serves the shop's catalog and cart three ways, from one process:
//!
//! - **native**: `/native/api/product/{id}` and `/native/api/cart/{id}`, the plugins' own Rust
//!   code linked into the host (`host/src/http/native.rs`), reading the same state;
//! - **fresh**: the `catalog` and `cart` components with a fresh instance per request (the
//!   default);
//! - **reuse**: the same components with `instance = "reuse"`.
//!
//! wrk (Debian's) drives each for [`RUN`] at 1, 16 and 64 connections, taking the three
//! sides in turns, [`ROUNDS`] times, so that the machine's other work weighs on all alike; the
//! medians are reported. wrk shares the machine's cores with the host, for every side alike.
//! The host's CPU time per request comes from `/proc/<pid>/stat`.
//!
//! Last, latency at half the native maximum: wrk paced to half the native req/s at 16
//! connections (64 connections, each waiting between requests), for native and fresh, to
//! report the p99 the sandbox adds when not saturated.

#[path = "support/host_process.rs"]
mod host_process;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};
use plotters::prelude::*;
use serde_json::json;

use host_process::{HostProcess, copy_plugins, root};

/// How long wrk runs per measurement, and how many times each measurement is taken.
const RUN: Duration = Duration::from_secs(3);
const ROUNDS: usize = 3;
/// Open connections of each measurement.
const CONNECTIONS: [u32; 3] = [1, 16, 64];
/// The cart the cart routes read, with a few items in it.
const CART: &str = "bench-cart";
const CART_ITEMS: [(&str, u32); 3] = [("329299", 2), ("165613", 1), ("444437", 3)];

/// Which implementation answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Native,
    Fresh,
    Reuse,
}

impl Side {
    const ALL: [Side; 3] = [Side::Native, Side::Fresh, Side::Reuse];

    fn name(self) -> &'static str {
        match self {
            Side::Native => "native",
            Side::Fresh => "plugin, fresh instance",
            Side::Reuse => "plugin, instance reuse",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Side::Native => "native",
            Side::Fresh => "fresh",
            Side::Reuse => "reuse",
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Side::Native => "/native",
            Side::Fresh => "",
            Side::Reuse => "/reuse",
        }
    }

    fn color(self) -> RGBColor {
        match self {
            Side::Native => RGBColor(90, 90, 90),
            Side::Fresh => RGBColor(31, 119, 180),
            Side::Reuse => RGBColor(255, 127, 14),
        }
    }
}

/// The routes measured, as `(label, path after the side's prefix)`.
fn routes() -> [(&'static str, String); 2] {
    [
        ("GET /api/product/{id}", "/api/product/329299".into()),
        ("GET /api/cart/{id}", format!("/api/cart/{CART}")),
    ]
}

/// One wrk run, as its Lua `done` hook reports it.
#[derive(Clone, Copy, Default)]
struct Run {
    requests: f64,
    seconds: f64,
    errors: f64,
    /// Latency percentiles, µs.
    p50: f64,
    p99: f64,
    p999: f64,
    /// The host's CPU time during the run per request, µs.
    cpu_us: f64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.requests / self.seconds
    }
}

/// wrk's report as one line of JSON, after its own.
const REPORT_LUA: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"errors":%d,"p50":%d,"p99":%d,"p999":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout + e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"#;

fn main() -> anyhow::Result<()> {
    let wrk =
        which("wrk").context("wrk is missing: `make bench` installs it (apt-get install wrk)")?;
    let dir = tempfile::tempdir()?;
    let config = write_config(dir.path())?;
    let report_lua = dir.path().join("report.lua");
    std::fs::write(&report_lua, REPORT_LUA)?;
    let host = HostProcess::start(
        dir.path(),
        &config,
        &[("RUST_LOG", "info,wasmtime=warn,cranelift=warn")],
    )?;
    fill_carts(&host.url)?;
    let bench = Bench {
        wrk,
        host,
        report_lua,
        dir: dir.path().to_path_buf(),
    };
    // Warm every route on every side (pools, caches), then measure in turns.
    for (_, path) in routes() {
        for side in Side::ALL {
            bench.run(
                &format!("{}{path}", side.prefix()),
                16,
                Duration::from_secs(1),
                None,
            )?;
        }
    }
    let mut runs: Vec<Vec<Vec<Vec<Run>>>> = vec![vec![vec![Vec::new(); 3]; 3]; 2];
    for round in 1..=ROUNDS {
        eprintln!("round {round} of {ROUNDS}");
        for (c, connections) in CONNECTIONS.into_iter().enumerate() {
            for (r, (_, path)) in routes().iter().enumerate() {
                for (s, side) in Side::ALL.into_iter().enumerate() {
                    let url = format!("{}{path}", side.prefix());
                    runs[r][c][s].push(bench.run(&url, connections, RUN, None)?);
                }
            }
        }
    }
    let medians: Vec<Vec<Vec<Run>>> = runs
        .iter()
        .map(|by_conn| {
            by_conn
                .iter()
                .map(|by_side| by_side.iter().map(|rs| median(rs)).collect())
                .collect()
        })
        .collect();

    // Latency at half the native maximum (16 connections), paced.
    let mut paced = Vec::new();
    for (r, (label, path)) in routes().iter().enumerate() {
        let half = medians[r][1][0].rate() / 2.0;
        let mut sides = Vec::new();
        for side in [Side::Native, Side::Fresh] {
            let url = format!("{}{path}", side.prefix());
            let runs: Vec<Run> = (0..ROUNDS)
                .map(|_| bench.run(&url, 64, RUN, Some(half)))
                .collect::<anyhow::Result<_>>()?;
            sides.push(median(&runs));
        }
        paced.push((*label, half, sides[0], sides[1]));
    }
    bench.host_alive()?;

    let table = markdown(&medians, &paced);
    println!("\n{table}");
    let out = root().join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("http.md"), &table)?;
    let json = serde_json::to_string_pretty(&report(&medians, &paced))?;
    std::fs::write(out.join("http.json"), json)?;
    chart(&out.join("http.svg"), &medians)?;
    println!("wrote target/bench/http.json, http.md and http.svg");
    Ok(())
}

struct Bench {
    wrk: PathBuf,
    host: HostProcess,
    report_lua: PathBuf,
    dir: PathBuf,
}

impl Bench {
    /// wrk against `path` with `connections` for `length`; paced to `rate` req/s in total when
    /// given (each connection waits between its requests).
    fn run(
        &self,
        path: &str,
        connections: u32,
        length: Duration,
        rate: Option<f64>,
    ) -> anyhow::Result<Run> {
        let script = match rate {
            None => self.report_lua.clone(),
            Some(rate) => {
                // wrk waits whole milliseconds; the rate reached is measured, not assumed.
                let wait_ms = (f64::from(connections) * 1000.0 / rate).round().max(1.0);
                let script = self.dir.join(format!("paced-{wait_ms}.lua"));
                std::fs::write(
                    &script,
                    format!("{REPORT_LUA}\ndelay = function() return {wait_ms} end\n"),
                )?;
                script
            }
        };
        let threads = connections.min(2);
        let before = cpu_ticks(self.host.pid())?;
        let output = Command::new(&self.wrk)
            .args(["-t", &threads.to_string(), "-c", &connections.to_string()])
            .args(["-d", &format!("{}s", length.as_secs()), "-s"])
            .arg(&script)
            .arg(format!("{}{path}", self.host.url))
            .output()
            .context("cannot run wrk")?;
        let after = cpu_ticks(self.host.pid())?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let Some(line) = stdout.lines().find_map(|l| l.strip_prefix("RESULT ")) else {
            bail!(
                "wrk gave no result: {stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        let v: serde_json::Value = serde_json::from_str(line)?;
        let num = |k: &str| v[k].as_f64().unwrap_or_default();
        let requests = num("requests");
        if num("errors") > 0.0 {
            bail!("{path}: {} of {requests} requests failed", num("errors"));
        }
        let tick_us = 1e6 / clock_ticks_per_second();
        Ok(Run {
            requests,
            seconds: num("duration_us") / 1e6,
            errors: num("errors"),
            p50: num("p50"),
            p99: num("p99"),
            p999: num("p999"),
            cpu_us: (after - before) as f64 * tick_us / requests.max(1.0),
        })
    }

    fn host_alive(mut self) -> anyhow::Result<()> {
        self.host.check()
    }
}

/// The host's config: catalog and cart as they ship, and each again reusing instances under
/// `/reuse`. The plugins' files are copied into the run's own folder.
fn write_config(dir: &Path) -> anyhow::Result<PathBuf> {
    copy_plugins(&dir.join("plugins"), &["catalog", "cart"])?;
    let mut toml = String::from(
        "[server]\nlisten = \"127.0.0.1:0\"\n[state]\npath = \"state.redb\"\n[runtime]\nplugins_dir = \"plugins\"\n",
    );
    for (name, reuse) in [
        ("catalog", false),
        ("cart", false),
        ("catalog-reuse", true),
        ("cart-reuse", true),
    ] {
        let file = name.trim_end_matches("-reuse");
        toml += &format!("[plugin.{name}]\npath = \"plugins/{file}.wasm\"\n");
        if reuse {
            toml += "instance = \"reuse\"\n";
        }
    }
    for (prefix, suffix) in [("", ""), ("/reuse", "-reuse")] {
        for (method, path, plugin) in [
            ("GET", "/api/product/{itemId}", "catalog"),
            ("GET", "/api/cart/{cartId}", "cart"),
            ("POST", "/api/cart/{cartId}/{itemId}/{quantity}", "cart"),
        ] {
            toml += &format!(
                "[[route]]\nmethod = \"{method}\"\npath = \"{prefix}{path}\"\nplugin = \"{plugin}{suffix}\"\n"
            );
        }
    }
    let config = dir.join("eventhost.toml");
    std::fs::write(&config, toml)?;
    Ok(config)
}

/// Puts the same items into the cart of `cart` and of `cart-reuse` (each plugin's own state).
fn fill_carts(url: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = reqwest::Client::new();
        for prefix in ["", "/reuse"] {
            for (item, quantity) in CART_ITEMS {
                let response = client
                    .post(format!("{url}{prefix}/api/cart/{CART}/{item}/{quantity}"))
                    .send()
                    .await?;
                if !response.status().is_success() {
                    bail!("filling the cart: {}", response.text().await?);
                }
            }
        }
        let native: serde_json::Value = reqwest::get(format!("{url}/native/api/cart/{CART}"))
            .await?
            .json()
            .await?;
        let plugin: serde_json::Value = reqwest::get(format!("{url}/api/cart/{CART}"))
            .await?
            .json()
            .await?;
        if native != plugin
            || plugin["shoppingCartItemList"].as_array().map(Vec::len) != Some(CART_ITEMS.len())
        {
            bail!("native and plugin answer differently:\n{native}\n{plugin}");
        }
        Ok(())
    })
}

/// The run with the median req/s.
fn median(runs: &[Run]) -> Run {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    sorted[sorted.len() / 2]
}

fn markdown(medians: &[Vec<Vec<Run>>], paced: &[(&str, f64, Run, Run)]) -> String {
    let mut out = String::from(
        "| route | connections | side | req/s | × native | p50 | p99 | p99.9 | host CPU per request |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for (r, (label, _)) in routes().iter().enumerate() {
        for (c, connections) in CONNECTIONS.into_iter().enumerate() {
            let native = medians[r][c][0].rate();
            for (s, side) in Side::ALL.into_iter().enumerate() {
                let run = medians[r][c][s];
                out += &format!(
                    "| `{label}` | {connections} | {} | {:.0} | {:.2} | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs |\n",
                    side.name(),
                    run.rate(),
                    run.rate() / native,
                    run.p50,
                    run.p99,
                    run.p999,
                    run.cpu_us
                );
            }
        }
    }
    out += "\n| route | paced at (half the native maximum) | native: reached, p99 | plugin, fresh: reached, p99 | p99 added |\n|---|---|---|---|---|\n";
    for (label, rate, native, fresh) in paced {
        out += &format!(
            "| `{label}` | {rate:.0} req/s | {:.0} req/s, {:.0} µs | {:.0} req/s, {:.0} µs | {:.0} µs |\n",
            native.rate(),
            native.p99,
            fresh.rate(),
            fresh.p99,
            fresh.p99 - native.p99
        );
    }
    out
}

fn report(medians: &[Vec<Vec<Run>>], paced: &[(&str, f64, Run, Run)]) -> serde_json::Value {
    let run_json = |run: &Run| {
        json!({
            "req_per_s": run.rate(),
            "requests": run.requests,
            "errors": run.errors,
            "p50_us": run.p50,
            "p99_us": run.p99,
            "p99_9_us": run.p999,
            "host_cpu_us_per_request": run.cpu_us,
        })
    };
    let mut measured = Vec::new();
    for (r, (label, _)) in routes().iter().enumerate() {
        for (c, connections) in CONNECTIONS.into_iter().enumerate() {
            let native = medians[r][c][0].rate();
            for (s, side) in Side::ALL.into_iter().enumerate() {
                let run = &medians[r][c][s];
                measured.push(json!({
                    "route": label,
                    "connections": connections,
                    "side": side.key(),
                    "ratio_to_native": run.rate() / native,
                    "median_of": ROUNDS,
                    "run": run_json(run),
                }));
            }
        }
    }
    let paced: Vec<_> = paced
        .iter()
        .map(|(label, rate, native, fresh)| {
            json!({
                "route": label,
                "paced_req_per_s": rate,
                "native": run_json(native),
                "fresh": run_json(fresh),
                "p99_added_us": fresh.p99 - native.p99,
            })
        })
        .collect();
    json!({
        "seconds_per_run": RUN.as_secs(),
        "measured": measured,
        "half_native_maximum": paced,
        "cores": std::thread::available_parallelism().map(usize::from).unwrap_or(1),
        "load_average": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
    })
}

/// Req/s against connections, one panel per route, one line per side.
fn chart(path: &Path, medians: &[Vec<Vec<Run>>]) -> anyhow::Result<()> {
    let root_area = SVGBackend::new(path, (960, 420)).into_drawing_area();
    root_area.fill(&WHITE)?;
    let panels = root_area.split_evenly((1, 2));
    for ((r, (label, _)), panel) in routes().iter().enumerate().zip(panels.iter()) {
        let top = medians[r]
            .iter()
            .flatten()
            .map(Run::rate)
            .fold(0.0, f64::max)
            * 1.15;
        let mut chart = ChartBuilder::on(panel)
            .caption(format!("{label}: req/s (wrk)"), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(-0.3f64..2.3f64, 0f64..top)?;
        chart
            .configure_mesh()
            .x_labels(3)
            .x_label_formatter(&|x| {
                CONNECTIONS
                    .get(x.round() as usize)
                    .map(|c| format!("{c} conn."))
                    .unwrap_or_default()
            })
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()?;
        for (s, side) in Side::ALL.into_iter().enumerate() {
            let color = side.color();
            let points: Vec<(f64, f64)> = (0..CONNECTIONS.len())
                .map(|c| (c as f64, medians[r][c][s].rate()))
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                .label(side.name())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart.draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, color.filled())),
            )?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root_area.present()?;
    Ok(())
}

/// User plus system CPU time of process `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let utime: u64 = fields.get(11).context("utime")?.parse()?;
    let stime: u64 = fields.get(12).context("stime")?.parse()?;
    Ok(utime + stime)
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}
