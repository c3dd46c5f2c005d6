//! Overload: what a plugin that uses all of its time costs everyone else, measured in one run.
//!
//! Run with: `make bench` (release host binary; plugins built first). Writes
//! `target/bench/overload.json`.
//!
//! The release host runs as a subprocess with two plugins on their default limits:
//! `testkit`, whose `/t/loop` spins until its time limit (100 ms here) cuts it, the worst case
//! of a plugin that is too slow; and `hello`, a healthy plugin. The host's own `/healthz` is the
//! native baseline.
//!
//! 1. **Unloaded**: `hello` and `/healthz` at a steady rate, and spinning requests one at a time.
//! 2. **Sustainable load**: as many spinning requests as the host completes when callers wait
//!    for each answer (closed loop, as many callers as the plugin may run at once).
//! 3. **Twice that**, offered at a fixed rate whatever the answers (open loop), with the same
//!    steady `hello` and `/healthz` traffic beside it.
//!
//! Reported: how long spinning requests took against their limit (the limit should hold within
//! about 20%), how many were shed with 503 and how fast, and the p99 of `hello` and `/healthz`
//! under overload as a multiple of their unloaded p99.

#[path = "support/host_process.rs"]
mod host_process;
#[path = "support/open_loop.rs"]
mod open_loop;
#[path = "support/stats.rs"]
mod stats;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eventhost::config::Limits;
use serde_json::json;

use host_process::{HostProcess, copy_plugins};
use stats::Stats;

/// The spinning plugin's time limit.
const LIMIT: Duration = Duration::from_millis(100);
/// Steady rate of `hello` and of `/healthz`, each, in requests per second.
const STEADY_RATE: u32 = 50;
/// How long each phase runs.
const PHASE: Duration = Duration::from_secs(8);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut host = HostProcess::start(
        dir.path(),
        &write_config(dir.path())?,
        &[("RUST_LOG", "error")],
    )?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()?;
    let url = host.url.clone();
    let (hello, native, spin) = (
        format!("{url}/hello/you"),
        format!("{url}/healthz"),
        format!("{url}/t/loop"),
    );
    let concurrency = Limits::DEFAULT_CONCURRENCY as usize;

    // Warm the instance pool and the connections.
    for _ in 0..50 {
        call(&client, &format!("{url}/hello/warm")).await;
        call(&client, &format!("{url}/healthz")).await;
    }

    println!("1. unloaded");
    let spins_alone = {
        let mut spins = Vec::new();
        for _ in 0..20 {
            spins.push(call(&client, &spin).await);
        }
        spins
    };
    let (hello_idle, native_idle) = tokio::join!(
        steady(&client, &hello, STEADY_RATE, PHASE),
        steady(&client, &native, STEADY_RATE, PHASE),
    );

    println!("2. sustainable load: {concurrency} callers, each waiting for its answer");
    let sustained = closed_loop(&client, &spin, concurrency, PHASE).await;
    let sustainable_rate = sustained.len() as f64 / PHASE.as_secs_f64();
    host.check()?;

    let handler_before = handler_time(&client, &url, "hello").await;
    let offered = (2.0 * sustainable_rate).round() as u32;
    println!("3. twice that: {offered} spinning requests/s offered, whatever the answers");
    let (spins, hello_loaded, native_loaded) = tokio::join!(
        steady(&client, &spin, offered, PHASE),
        steady(&client, &hello, STEADY_RATE, PHASE),
        steady(&client, &native, STEADY_RATE, PHASE),
    );
    host.check()?;
    let handler_after = handler_time(&client, &url, "hello").await;
    let hello_handler_ms =
        (handler_after.0 - handler_before.0) / (handler_after.1 - handler_before.1).max(1.0) * 1e3;

    let cut = |calls: &[Call]| -> Vec<Duration> {
        calls
            .iter()
            .filter(|c| c.outcome == Outcome::TimedOut)
            .map(|c| c.took)
            .collect()
    };
    let shed: Vec<Duration> = spins
        .iter()
        .filter(|c| c.outcome == Outcome::Shed)
        .map(|c| c.took)
        .collect();
    let cut_alone = Stats::of(cut(&spins_alone));
    let cut_loaded = Stats::of(cut(&spins));
    let shed_stats = Stats::of(shed.clone());
    let ok = |calls: &[Call]| -> Stats {
        Stats::of(
            calls
                .iter()
                .filter(|c| c.outcome == Outcome::Ok)
                .map(|c| c.took)
                .collect(),
        )
    };
    let failures = |calls: &[Call]| calls.iter().filter(|c| c.outcome == Outcome::Other).count();
    let (spin_failures, hello_failures) = (failures(&spins), failures(&hello_loaded));
    let (hello_idle, hello_loaded) = (ok(&hello_idle), ok(&hello_loaded));
    let (native_idle, native_loaded) = (ok(&native_idle), ok(&native_loaded));

    let limit_ms = LIMIT.as_secs_f64() * 1e3;
    let overshoot = cut_loaded.p99 / limit_ms;
    let hello_ratio = hello_loaded.p99 / hello_idle.p99;
    let native_ratio = native_loaded.p99 / native_idle.p99;
    let report = json!({
        "limit_ms": limit_ms,
        "plugin_concurrency": concurrency,
        "sustainable_rate": sustainable_rate,
        "offered_rate": offered,
        "spinning_alone_ms": cut_alone.json(),
        "spinning_cut_under_overload_ms": cut_loaded.json(),
        "spinning_shed_ms": shed_stats.json(),
        "spinning_other_failures": spin_failures,
        "hello_unloaded_ms": hello_idle.json(),
        "hello_overloaded_ms": hello_loaded.json(),
        "hello_failures": hello_failures,
        "native_unloaded_ms": native_idle.json(),
        "native_overloaded_ms": native_loaded.json(),
        "limit_p99_ratio": overshoot,
        "hello_p99_ratio": hello_ratio,
        "hello_handler_mean_ms_under_overload": hello_handler_ms,
        "native_p99_ratio": native_ratio,
    });

    println!();
    println!("| measure | unloaded | at 2x sustainable load |");
    println!("|---|---|---|");
    println!(
        "| spinning request cut at its {limit_ms:.0} ms limit, p50 / p99 / max | {} | {} ({} cut) |",
        cut_alone.row(),
        cut_loaded.row(),
        cut_loaded.count
    );
    println!(
        "| spinning request shed (503 busy), p50 / p99 / max | - | {} ({} shed) |",
        shed_stats.row(),
        shed_stats.count
    );
    println!(
        "| `hello` plugin, p50 / p99 / max | {} | {} |",
        hello_idle.row(),
        hello_loaded.row()
    );
    println!(
        "| native `/healthz`, p50 / p99 / max | {} | {} |",
        native_idle.row(),
        native_loaded.row()
    );
    println!();
    println!(
        "sustainable: {sustainable_rate:.0} spinning requests/s; offered {offered}/s; limit p99 / limit = {overshoot:.2} (target <= 1.2); hello p99 loaded / unloaded = {hello_ratio:.1}x (native /healthz: {native_ratio:.1}x)"
    );
    println!(
        "hello's handler itself (instance, turn, call) took {hello_handler_ms:.2} ms on average under overload"
    );
    stats::write_report("overload", &report)
}

/// The sum and count of `plugin`'s HTTP handler time, from the host's metrics.
async fn handler_time(client: &reqwest::Client, url: &str, plugin: &str) -> (f64, f64) {
    let text = match client.get(format!("{url}/metrics")).send().await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let series = |suffix: &str| {
        let prefix =
            format!("eventhost_handler_seconds_{suffix}{{plugin=\"{plugin}\",source=\"http\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix)?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (series("sum"), series("count"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    /// 503 because the time limit cut the input.
    TimedOut,
    /// 503 because the plugin was at its concurrency limit and its queue full.
    Shed,
    /// Anything else: a failure the benchmark reports.
    Other,
}

#[derive(Clone, Copy, Debug)]
struct Call {
    took: Duration,
    outcome: Outcome,
}

async fn call(client: &reqwest::Client, url: &str) -> Call {
    let start = Instant::now();
    let outcome = match client.get(url).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            match status {
                200 => Outcome::Ok,
                503 if body.contains("within its limit") => Outcome::TimedOut,
                503 if body.contains("busy") => Outcome::Shed,
                _ => Outcome::Other,
            }
        }
        Err(_) => Outcome::Other,
    };
    Call {
        took: start.elapsed(),
        outcome,
    }
}

/// Requests at `rate` per second for `phase`, each sent on time whatever the earlier ones do.
async fn steady(client: &reqwest::Client, url: &str, rate: u32, phase: Duration) -> Vec<Call> {
    open_loop::at_rate(rate, phase, |_| {
        let (client, url) = (client.clone(), url.to_string());
        async move { call(&client, &url).await }
    })
    .await
}

/// `callers` callers each sending the next request once the last one answered.
async fn closed_loop(
    client: &reqwest::Client,
    url: &str,
    callers: usize,
    phase: Duration,
) -> Vec<Call> {
    let end = Instant::now() + phase;
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (client, url) = (client.clone(), url.to_string());
            tokio::spawn(async move {
                let mut calls = Vec::new();
                while Instant::now() < end {
                    calls.push(call(&client, &url).await);
                }
                calls
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap_or_default());
    }
    all
}

/// Writes the config of `testkit` and `hello`, copied into `dir/plugins`, and returns its path.
fn write_config(dir: &Path) -> anyhow::Result<PathBuf> {
    copy_plugins(&dir.join("plugins"), &["testkit", "hello"])?;
    let config = dir.join("eventhost.toml");
    std::fs::write(
        &config,
        format!(
            r#"[server]
listen = "127.0.0.1:0"

[state]
path = "state.redb"

[runtime]
plugins_dir = "plugins"

[plugin.testkit]
limits = {{ timeout_ms = {} }}

[plugin.hello]

[[route]]
method = "GET"
path = "/t/{{op}}"
plugin = "testkit"

[[route]]
method = "GET"
path = "/hello/{{name}}"
plugin = "hello"
"#,
            LIMIT.as_millis()
        ),
    )?;
    Ok(config)
}
