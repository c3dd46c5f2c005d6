//! Footprint, start and swap: the host's memory, how fast it starts and what a hot swap of the
//! payment plugin costs, measured in one run.
//!
//! Run with: `make bench` (release host binary; plugins built first). Writes
//! `target/bench/footprint.json`.
//!
//! The release host runs as a subprocess with the coolstore's config
//! (`examples/coolstore/eventhost.toml`) and the shop's four plugins, copied with the config
//! into a folder of the run's own, beside its own compiled-code cache (`[runtime] cache_dir`).
//!
//! 1. **Cold start**: from spawning `eventhost run` to the first answered `GET /api/products`
//!    (the catalog plugin), [`STARTS`] times with an empty compiled-code cache and as many with
//!    a warm one.
//! 2. **Memory**: the host's VmRSS idle after start, the highest VmRSS sampled during a few
//!    seconds of concurrent GETs through the catalog and cart plugins, and VmHWM after them.
//! 3. **Swap**: payment POSTs (`/api/payment`) at a steady rate, in turns of a window without
//!    swaps and one as long in which `payment.wasm` is replaced by rules v2 and back (written
//!    to a temporary name, then renamed). Each swapped file ends with a custom section of its own,
//!    so every swap is a new version that is compiled, not read from the cache. The host's JSON
//!    log gives the compile time, when its watcher found the folder settled (`applying a new
//!    configuration`, at debug level) and the first payment decided by the new rules (the
//!    plugin logs the rules of every payment); the answers say which rules decided each request.

#[path = "support/host_process.rs"]
mod host_process;
#[path = "support/open_loop.rs"]
mod open_loop;
#[path = "support/stats.rs"]
mod stats;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use serde_json::json;

use host_process::{HostProcess, copy_plugins, root};
use stats::Stats;

/// Starts measured with each cache state.
const STARTS: usize = 5;
/// How long the host is left alone before its idle memory is read.
const IDLE: Duration = Duration::from_secs(2);
/// Concurrent callers, and for how long, of the load under which memory is sampled.
const LOAD_CALLERS: usize = 16;
const LOAD: Duration = Duration::from_secs(5);
/// Payment POSTs per second, how long each window (without swaps, with swaps) lasts, and how
/// many of each, taken in turns so that the machine's other work weighs on both alike.
const PAY_RATE: u32 = 200;
const WINDOW: Duration = Duration::from_secs(10);
const ROUNDS: usize = 2;
/// When the first swap happens in its window, and the time between swaps.
const FIRST_SWAP: Duration = Duration::from_secs(1);
const SWAP_EVERY: Duration = Duration::from_millis(2500);
/// The shop's plugins, as `make shop-plugins` stages them.
const SHOP: [&str; 4] = ["catalog", "cart", "payment", "order"];
/// The host's default log filter, for the starts.
const START_ENV: [(&str, &str); 1] = [("RUST_LOG", "info,wasmtime=warn,cranelift=warn")];
/// JSON logs with the deployment's debug lines, which say when a change is applied.
const SWAP_ENV: [(&str, &str); 2] = [
    (
        "RUST_LOG",
        "info,eventhost::app::deployment=debug,wasmtime=warn,cranelift=warn",
    ),
    ("EVENTHOST_LOG_FORMAT", "json"),
];
/// Above the 100.00 that rules v2 allow and with a card rules v1 accept: the answer's
/// `status` and `rules` tell the versions apart.
const ORDER: &str = r#"{"orderId":"ID","total":"158.95","name":"Ada","billingAddress":"1 Loop St","creditCard":{"number":"4123987754646678","expiration":"04/29","nameOnCard":"Ada L"}}"#;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let load_before = load_average();
    let base = tempfile::tempdir()?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()?;

    println!(
        "1. cold start, {STARTS} times with an empty compiled-code cache, {STARTS} with a warm one"
    );
    let mut empty = Vec::new();
    for n in 0..STARTS {
        let dir = base.path().join(format!("empty-{n}"));
        empty.push(start_once(&client, &dir, &dir.join("cache")).await?);
    }
    let warm_cache = base.path().join("warm-cache");
    start_once(&client, &base.path().join("warming"), &warm_cache).await?;
    let mut warm = Vec::new();
    for n in 0..STARTS {
        let dir = base.path().join(format!("warm-{n}"));
        warm.push(start_once(&client, &dir, &warm_cache).await?);
    }

    println!("2. memory: idle, then {LOAD_CALLERS} callers for {LOAD:?}");
    let dir = base.path().join("memory");
    let config = coolstore(&dir, &warm_cache)?;
    let mut host = HostProcess::start(&dir, &config, &START_ENV)?;
    first_answer(&client, &format!("{}/api/products", host.url)).await?;
    tokio::time::sleep(IDLE).await;
    let idle = Memory::of(host.pid())?;
    let (loaded, requests, failed) = load(&client, &host).await?;
    let after_load = Memory::of(host.pid())?;
    host.check()?;
    drop(host);

    println!(
        "3. payment at {PAY_RATE}/s: {ROUNDS} rounds of {WINDOW:?} without swaps, then {WINDOW:?} with"
    );
    let dir = base.path().join("swap");
    let config = coolstore(&dir, &warm_cache)?;
    let mut host = HostProcess::start(&dir, &config, &SWAP_ENV)?;
    let pay = format!("{}/api/payment", host.url);
    for n in 0..50 {
        pay_once(&client, &pay, &format!("warm-{n}")).await;
    }
    let plugins = dir.join("plugins");
    let (mut calm, mut swapping, mut swaps) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        calm.extend(steady_payments(&client, &pay, &format!("calm-{round}")).await);
        let label = format!("swap-{round}");
        let (payments, done) = tokio::join!(
            steady_payments(&client, &pay, &label),
            swap_payment(&plugins, swaps.len()),
        );
        swapping.extend(payments);
        swaps.extend(done?);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    host.check()?;
    let log = parse_log(&host.log()?);
    let swaps: Vec<SwapResult> = (swaps.iter())
        .map(|swap| SwapResult::of(swap, &log, &swapping))
        .collect::<anyhow::Result<_>>()?;
    drop(host);
    let load_after = load_average();

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let min_median = |starts: &[Start], of: fn(&Start) -> Duration| {
        let mut all: Vec<f64> = starts.iter().map(|s| ms(of(s))).collect();
        all.sort_by(f64::total_cmp);
        (all[0], all[all.len() / 2])
    };
    let (empty_min, empty_median) = min_median(&empty, |s| s.answered);
    let (warm_min, warm_median) = min_median(&warm, |s| s.answered);
    let (_, warm_listening) = min_median(&warm, |s| s.listening);
    let (_, empty_listening) = min_median(&empty, |s| s.listening);
    let compiles: Vec<f64> = swaps.iter().map(|s| s.compile_ms).collect();
    let first_inputs: Vec<f64> = swaps.iter().map(|s| s.first_input_ms).collect();
    let settles: Vec<f64> = swaps.iter().map(|s| s.settled_ms).collect();
    let answers: Vec<f64> = swaps.iter().map(|s| s.first_answer_ms).collect();
    let after_compile: Vec<f64> = (swaps.iter())
        .map(|s| s.compiled_to_first_input_ms)
        .collect();
    let slowest: Vec<f64> = swaps.iter().map(|s| s.slowest_ms).collect();
    let fresh = swaps.iter().filter(|s| !s.from_cache).count();
    let (calm_stats, swap_stats) = (ok_stats(&calm), ok_stats(&swapping));
    let p999_ratio = swap_stats.p999 / calm_stats.p999;
    let met = |ok: bool| if ok { "met" } else { "missed" };

    let report = json!({
        "load_average_before": load_before,
        "load_average_after": load_after,
        "cold_start_ms": {
            "empty_cache": starts_json(&empty),
            "warm_cache": starts_json(&warm),
        },
        "memory": {
            "idle": idle.json(),
            "under_load_highest_sampled": loaded.json(),
            "after_load": after_load.json(),
            "load_requests": requests,
            "load_failures": failed,
            "load_seconds": LOAD.as_secs_f64(),
            "load_callers": LOAD_CALLERS,
        },
        "swap": {
            "swaps": swaps.iter().map(SwapResult::json).collect::<Vec<_>>(),
            "pay_rate": PAY_RATE,
            "window_seconds": WINDOW.as_secs_f64(),
            "rounds": ROUNDS,
            "payments_without_swaps_ms": calm_stats.json(),
            "payments_during_swaps_ms": swap_stats.json(),
            "payment_failures_without_swaps": failures(&calm),
            "payment_failures_during_swaps": failures(&swapping),
            "payment_failure_reasons": failure_reasons(&calm).into_iter().chain(failure_reasons(&swapping)).collect::<std::collections::BTreeMap<_, _>>(),
            "p99_9_ratio": p999_ratio,
        },
    });

    println!();
    println!("| measure | figure | target |");
    println!("|---|---|---|");
    println!(
        "| cold start to the first answered `GET /api/products`, empty cache: min / median | {empty_min:.0} / {empty_median:.0} ms (listening line: {empty_listening:.0} ms) | – |"
    );
    println!(
        "| the same, warm compiled-code cache: min / median | {warm_min:.0} / {warm_median:.0} ms (listening line: {warm_listening:.0} ms) | ≤ 30 ms: {} |",
        met(warm_median <= 30.0)
    );
    println!(
        "| RSS idle, coolstore loaded (VmRSS; anonymous + files) | {:.1} MiB ({:.1} + {:.1}) | ≤ 15 MiB: {} |",
        idle.rss_mib(),
        idle.anon_kib as f64 / 1024.0,
        idle.file_kib as f64 / 1024.0,
        met(idle.rss_mib() <= 15.0)
    );
    println!(
        "| RSS under load ({LOAD_CALLERS} callers, {} GETs in {:.0} s): highest sampled / VmHWM | {:.1} / {:.1} MiB | – |",
        requests,
        LOAD.as_secs_f64(),
        loaded.rss_mib(),
        after_load.hwm_mib()
    );
    println!(
        "| payment compile on a swap: min / median / max ({fresh} of {} compiled, not cached) | {:.0} / {:.0} / {:.0} ms | ≤ 100 ms: {} |",
        swaps.len(),
        min(&compiles),
        median(&compiles),
        max(&compiles),
        met(median(&compiles) <= 100.0)
    );
    println!(
        "| file settled to the first input on the new version: min / median / max | {:.0} / {:.0} / {:.0} ms | ≤ 50 ms: {} |",
        min(&first_inputs),
        median(&first_inputs),
        max(&first_inputs),
        met(median(&first_inputs) <= 50.0)
    );
    println!(
        "| of which after the compile: median / max | {:.0} / {:.0} ms | – |",
        median(&after_compile),
        max(&after_compile)
    );
    println!(
        "| rename to settled (the watcher's debounce) / to the first answer by the new rules: median | {:.0} / {:.0} ms | – |",
        median(&settles),
        median(&answers)
    );
    println!(
        "| slowest payment sent in the {:.1} s after each swap: median / max | {:.0} / {:.0} ms | – |",
        SWAP_EVERY.as_secs_f64(),
        median(&slowest),
        max(&slowest)
    );
    println!(
        "| payment POST at {PAY_RATE}/s without swaps: p50 / p99 / max; p99.9 | {} | – |",
        latency_row(&calm_stats)
    );
    println!(
        "| the same during {} swaps | {} | p99.9 ≤ 2×: {:.2}×, {} |",
        swaps.len(),
        latency_row(&swap_stats),
        p999_ratio,
        met(p999_ratio <= 2.0)
    );
    println!();
    println!(
        "load average before: {load_before}; after: {load_after}; failed: {failed} of the load's GETs, {} / {} payments",
        failures(&calm),
        failures(&swapping)
    );
    for (reason, count) in failure_reasons(&calm)
        .into_iter()
        .chain(failure_reasons(&swapping))
    {
        println!("payment failed {count}x: {reason}");
    }
    stats::write_report("footprint", &report)
}

/// Writes the coolstore's config into `dir`, with the shop's plugins in `dir/plugins` and the
/// compiled-code cache in `cache`, and returns its path.
fn coolstore(dir: &Path, cache: &Path) -> anyhow::Result<PathBuf> {
    copy_plugins(&dir.join("plugins"), &SHOP)?;
    let shipped = root().join("examples/coolstore/eventhost.toml");
    let mut config: toml::Table = std::fs::read_to_string(&shipped)?
        .parse()
        .with_context(|| shipped.display().to_string())?;
    // The shop's page stays where it is; plugins, state and cache are the run's own.
    let web = root().join("examples/coolstore/web");
    for (table, key, value) in [
        ("server", "static_dir", &web),
        ("runtime", "cache_dir", &cache.to_path_buf()),
    ] {
        config
            .get_mut(table)
            .and_then(toml::Value::as_table_mut)
            .with_context(|| format!("{} has no [{table}]", shipped.display()))?
            .insert(key.into(), value.display().to_string().into());
    }
    let path = dir.join("eventhost.toml");
    std::fs::write(&path, toml::to_string(&config)?)?;
    Ok(path)
}

#[derive(Debug, Clone, Copy)]
struct Start {
    /// Spawn to the `eventhost listening on` line.
    listening: Duration,
    /// Spawn to the first answered plugin request.
    answered: Duration,
}

async fn start_once(client: &reqwest::Client, dir: &Path, cache: &Path) -> anyhow::Result<Start> {
    let config = coolstore(dir, cache)?;
    let spawned = Instant::now();
    let host = HostProcess::start(dir, &config, &START_ENV)?;
    let listening = spawned.elapsed();
    first_answer(client, &format!("{}/api/products", host.url)).await?;
    Ok(Start {
        listening,
        answered: spawned.elapsed(),
    })
}

fn starts_json(starts: &[Start]) -> serde_json::Value {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    json!({
        "listening": starts.iter().map(|s| ms(s.listening)).collect::<Vec<_>>(),
        "answered": starts.iter().map(|s| ms(s.answered)).collect::<Vec<_>>(),
    })
}

/// Calls `url` until it answers 200, for at most 10 s.
async fn first_answer(client: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.get(url).send().await {
            Ok(response) if response.status().is_success() => {
                response.bytes().await?;
                return Ok(());
            }
            Ok(response) if Instant::now() > deadline => bail!("{url}: {}", response.status()),
            Err(e) if Instant::now() > deadline => bail!("{url}: {e}"),
            _ => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

/// The host's resident memory, from `/proc/<pid>/status`, in KiB.
#[derive(Debug, Clone, Copy, Default)]
struct Memory {
    rss_kib: u64,
    hwm_kib: u64,
    /// Of the resident memory: the heap and other private pages, and mapped files (the binary).
    anon_kib: u64,
    file_kib: u64,
}

impl Memory {
    fn of(pid: u32) -> anyhow::Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| {
                    line.strip_prefix(name)?
                        .trim()
                        .strip_suffix("kB")?
                        .trim()
                        .parse()
                        .ok()
                })
                .with_context(|| format!("no {name} in /proc/{pid}/status"))
        };
        Ok(Memory {
            rss_kib: field("VmRSS:")?,
            hwm_kib: field("VmHWM:")?,
            anon_kib: field("RssAnon:")?,
            file_kib: field("RssFile:")?,
        })
    }

    fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }

    fn hwm_mib(&self) -> f64 {
        self.hwm_kib as f64 / 1024.0
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "vm_rss_kib": self.rss_kib,
            "vm_hwm_kib": self.hwm_kib,
            "rss_anon_kib": self.anon_kib,
            "rss_file_kib": self.file_kib,
        })
    }
}

/// [`LOAD_CALLERS`] callers, each sending the next GET once the last one answered, through the
/// catalog and the cart in turn, for [`LOAD`]; returns the highest memory sampled every 50 ms,
/// the requests answered and those that failed.
async fn load(
    client: &reqwest::Client,
    host: &HostProcess,
) -> anyhow::Result<(Memory, usize, usize)> {
    let end = Instant::now() + LOAD;
    let callers: Vec<_> = (0..LOAD_CALLERS)
        .map(|n| {
            let client = client.clone();
            let urls = [
                format!("{}/api/products", host.url),
                format!("{}/api/cart/load-{n}", host.url),
            ];
            tokio::spawn(async move {
                let (mut answered, mut failed) = (0, 0);
                for url in urls.iter().cycle() {
                    if Instant::now() >= end {
                        break;
                    }
                    let ok = match client.get(url).send().await {
                        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    if ok {
                        answered += 1;
                    } else {
                        failed += 1;
                    }
                }
                (answered, failed)
            })
        })
        .collect();
    let mut highest = Memory::default();
    while Instant::now() < end {
        let now = Memory::of(host.pid())?;
        if now.rss_kib > highest.rss_kib {
            highest = now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut answered, mut failed) = (0, 0);
    for caller in callers {
        let (a, f) = caller.await?;
        answered += a;
        failed += f;
    }
    Ok((highest, answered, failed))
}

/// One payment POST: when it was sent and answered, and the rules that decided it or why it
/// failed.
#[derive(Debug, Clone)]
struct Payment {
    sent: Instant,
    answered: Instant,
    rules: Result<String, String>,
}

async fn pay_once(client: &reqwest::Client, url: &str, id: &str) -> Payment {
    let sent = Instant::now();
    let answer = async {
        let body = ORDER.replace("ID", id);
        let response = (client.post(url).body(body).send().await).map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response.text().await.map_err(|e| e.to_string())?;
        let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        match json["rules"].as_str() {
            Some(rules) if status.is_success() => Ok(rules.to_string()),
            _ => Err(format!("{status}: {body}")),
        }
    };
    let rules = answer.await;
    Payment {
        sent,
        answered: Instant::now(),
        rules,
    }
}

/// Payments at [`PAY_RATE`] for [`WINDOW`], each sent on time whatever the earlier ones do.
async fn steady_payments(client: &reqwest::Client, url: &str, label: &str) -> Vec<Payment> {
    open_loop::at_rate(PAY_RATE, WINDOW, |n| {
        let (client, url, id) = (client.clone(), url.to_string(), format!("{label}-{n}"));
        async move { pay_once(&client, &url, &id).await }
    })
    .await
}

fn ok_stats(payments: &[Payment]) -> Stats {
    Stats::of(
        payments
            .iter()
            .filter(|p| p.rules.is_ok())
            .map(|p| p.answered - p.sent)
            .collect(),
    )
}

fn failures(payments: &[Payment]) -> usize {
    payments.iter().filter(|p| p.rules.is_err()).count()
}

/// Each reason payments failed for, with how many did.
fn failure_reasons(payments: &[Payment]) -> std::collections::BTreeMap<&str, usize> {
    let mut reasons = std::collections::BTreeMap::new();
    for reason in payments.iter().filter_map(|p| p.rules.as_ref().err()) {
        *reasons.entry(reason.as_str()).or_default() += 1;
    }
    reasons
}

fn latency_row(stats: &Stats) -> String {
    format!(
        "{}; p99.9 {:.1} ms ({} answered)",
        stats.row(),
        stats.p999,
        stats.count
    )
}

/// One replacement of `payment.wasm`: the rules swapped in and when the rename returned.
#[derive(Debug, Clone)]
struct Swap {
    rules: &'static str,
    at: Instant,
    wall: SystemTime,
}

/// Replaces `plugins/payment.wasm` by rules v2, then v1, and so on (`first`: how many swaps
/// came before), from [`FIRST_SWAP`] every [`SWAP_EVERY`] while a swap still has a second to
/// land inside [`WINDOW`].
async fn swap_payment(plugins: &Path, first: usize) -> anyhow::Result<Vec<Swap>> {
    let dist = root().join("plugins/dist");
    let v1 = std::fs::read(dist.join("payment.wasm"))?;
    let v2 = std::fs::read(dist.join("payment-v2.wasm"))?;
    let started = Instant::now();
    let mut swaps = Vec::new();
    let mut at = FIRST_SWAP;
    while at + Duration::from_secs(1) < WINDOW {
        tokio::time::sleep_until((started + at).into()).await;
        let n = first + swaps.len();
        let (rules, code) = if n.is_multiple_of(2) {
            ("v2", &v2)
        } else {
            ("v1", &v1)
        };
        let mut bytes = code.clone();
        bytes.extend(custom_section(
            "footprint-bench",
            format!("swap {n}").as_bytes(),
        ));
        let temp = plugins.join(".payment.wasm.tmp");
        std::fs::write(&temp, &bytes)?;
        std::fs::rename(&temp, plugins.join("payment.wasm"))?;
        swaps.push(Swap {
            rules,
            at: Instant::now(),
            wall: SystemTime::now(),
        });
        at += SWAP_EVERY;
    }
    Ok(swaps)
}

/// A custom section (id 0): ignored by the runtime, but it makes the file a new version.
fn custom_section(name: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = leb128(name.len());
    body.extend(name.as_bytes());
    body.extend(payload);
    let mut section = vec![0];
    section.extend(leb128(body.len()));
    section.extend(body);
    section
}

fn leb128(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// A line of the host's JSON log.
#[derive(Debug)]
struct LogLine {
    /// Seconds since the Unix epoch.
    at: f64,
    message: String,
    plugin: String,
}

fn parse_log(log: &str) -> Vec<LogLine> {
    log.lines()
        .filter_map(|line| {
            let line: serde_json::Value = serde_json::from_str(line).ok()?;
            let text = |key: &str| line[key].as_str().unwrap_or_default().to_string();
            Some(LogLine {
                at: unix_seconds(line["timestamp"].as_str()?)?,
                message: text("message"),
                plugin: text("plugin"),
            })
        })
        .collect()
}

/// `2026-12-02T01:06:13.123456Z` as seconds since the Unix epoch.
fn unix_seconds(timestamp: &str) -> Option<f64> {
    let (date, time) = timestamp.trim_end_matches('Z').split_once('T')?;
    let mut ymd = date.split('-').map(|n| n.parse::<i64>().ok());
    let (y, m, d) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let mut hms = time.split(':');
    let (h, min) = (
        hms.next()?.parse::<f64>().ok()?,
        hms.next()?.parse::<f64>().ok()?,
    );
    let s = hms.next()?.parse::<f64>().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + h * 3600.0 + min * 60.0 + s)
}

/// What one swap took, in milliseconds.
#[derive(Debug)]
struct SwapResult {
    rules: &'static str,
    compile_ms: f64,
    from_cache: bool,
    /// Rename to the watcher applying the change.
    settled_ms: f64,
    /// The watcher applying the change to the first payment the new rules decided.
    first_input_ms: f64,
    /// The end of the compile to that first payment.
    compiled_to_first_input_ms: f64,
    /// Rename to the first answer given by the new rules.
    first_answer_ms: f64,
    /// The slowest payment sent from the rename to the next swap.
    slowest_ms: f64,
}

impl SwapResult {
    fn of(swap: &Swap, log: &[LogLine], payments: &[Payment]) -> anyhow::Result<SwapResult> {
        let renamed = swap
            .wall
            .duration_since(SystemTime::UNIX_EPOCH)?
            .as_secs_f64();
        let after = |since: f64, matches: &dyn Fn(&LogLine) -> bool| {
            log.iter()
                .find(|line| line.at >= since && matches(line))
                .with_context(|| {
                    format!(
                        "swap to rules {} at {renamed:.3}: a log line is missing",
                        swap.rules
                    )
                })
        };
        let settled = after(renamed, &|l| l.message == "applying a new configuration")?;
        let compiled = after(renamed, &|l| {
            l.plugin == "payment"
                && (l.message.contains("component compiled in")
                    || l.message.contains("compiled-code cache in"))
        })?;
        let needle = format!("rules {})", swap.rules);
        let first = after(settled.at, &|l| {
            l.plugin == "payment"
                && l.message.starts_with("payment ")
                && l.message.contains(&needle)
        })?;
        let answered = payments
            .iter()
            .filter(|p| p.answered >= swap.at && p.rules.as_deref() == Ok(swap.rules))
            .map(|p| p.answered)
            .min()
            .context("no answer by the new rules")?;
        let slowest = (payments.iter())
            .filter(|p| p.sent >= swap.at && p.sent < swap.at + SWAP_EVERY)
            .map(|p| p.answered - p.sent)
            .max()
            .unwrap_or_default();
        Ok(SwapResult {
            rules: swap.rules,
            compile_ms: compile_ms(&compiled.message).context("compile time")?,
            from_cache: compiled.message.contains("cache"),
            settled_ms: (settled.at - renamed) * 1e3,
            first_input_ms: (first.at - settled.at) * 1e3,
            compiled_to_first_input_ms: (first.at - compiled.at) * 1e3,
            first_answer_ms: (answered - swap.at).as_secs_f64() * 1e3,
            slowest_ms: slowest.as_secs_f64() * 1e3,
        })
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "rules": self.rules,
            "compile_ms": self.compile_ms,
            "from_cache": self.from_cache,
            "rename_to_settled_ms": self.settled_ms,
            "settled_to_first_input_ms": self.first_input_ms,
            "compiled_to_first_input_ms": self.compiled_to_first_input_ms,
            "rename_to_first_answer_ms": self.first_answer_ms,
            "slowest_payment_until_next_swap_ms": self.slowest_ms,
        })
    }
}

/// The time in `... compiled in 85 ms` or `... in 1.2 s`.
fn compile_ms(message: &str) -> Option<f64> {
    let (_, took) = message.rsplit_once(" in ")?;
    let (number, unit) = took.split_once(' ')?;
    let number: f64 = number.parse().ok()?;
    Some(if unit == "s" { number * 1e3 } else { number })
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NAN, f64::min)
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NAN, f64::max)
}

/// The 1, 5 and 15 minute load averages, from `/proc/loadavg`.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}
