//! Shared helpers of the integration tests (`tests/it`) and the binaries that own their
//! process or broker (`tests/kafka_crash.rs`, `tests/soak.rs`): real compiled plugins, unique
//! names, the broker's address, a host in the test process ([`TestHost`]) or as the real
//! binary ([`HostProcess`]), and waiting for conditions with a deadline instead of sleeping
//! ([`eventually`]).

#![allow(dead_code)] // each test binary uses a different subset

mod host;
mod postgres;
mod process;
mod wait;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use eventhost::bus::{Bus, Handled, Record, RecordHandler};
use tokio_util::sync::CancellationToken;

#[allow(unused_imports)] // each test binary uses a different subset
pub use host::{TestHost, coolstore_static_dir, share_process, test_config, test_config_with};
#[allow(unused_imports)] // each test binary uses a different subset
pub use postgres::{fresh_database, postgres_url, query};
pub use process::HostProcess;
pub use wait::eventually;

/// The Kafka broker of the tests: `EVENTHOST_KAFKA_BOOTSTRAP`, default `127.0.0.1:9092`
/// (`make test` starts one there).
pub fn kafka_bootstrap() -> String {
    std::env::var("EVENTHOST_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// The `[bus]` section of a config on the tests' Kafka broker.
pub fn kafka_bus() -> String {
    format!(
        "[bus]\nkind = \"kafka\"\nbootstrap = \"{}\"\n",
        kafka_bootstrap()
    )
}

/// `name` with a suffix no other test, run or process uses: Kafka topics and consumer groups
/// outlive a test run, and every test of `tests/it` shares one process.
pub fn unique(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{name}-{:x}-{nanos:x}-{n}", std::process::id())
}

/// The folder `plugins/build.sh` writes components to.
pub fn plugins_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/dist")
        .canonicalize()
        .unwrap_or_else(|_| {
            panic!("plugins/dist is missing: build the plugins first (make plugins, or make test)")
        })
}

/// The compiled component of plugin `name`.
pub fn plugin_wasm(name: &str) -> PathBuf {
    let path = plugins_dir().join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: build the plugins first (make plugins)",
        path.display()
    );
    path
}

/// The topics, plugins, subscriptions and routes of an example config such as
/// `examples/coolstore/eventhost.toml`, without the tables a test sets itself (`[server]`,
/// `[state]`, `[runtime]`).
pub fn shop_wiring(text: &str) -> toml::Table {
    let mut table: toml::Table = text.parse().expect("the example config is TOML");
    for managed in ["server", "state", "runtime"] {
        table.remove(managed);
    }
    table
}

/// Collects every record of `topic` into a shared list, as consumer group `group`.
pub fn collect(
    bus: &Arc<dyn Bus>,
    topic: &str,
    group: &str,
) -> (Arc<std::sync::Mutex<Vec<Record>>>, CancellationToken) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let stop = CancellationToken::new();
    let sink = seen.clone();
    bus.subscribe(
        topic,
        group,
        RecordHandler::sequential(move |record| {
            sink.lock().unwrap().push(record);
            Box::pin(async { Handled::Commit })
        }),
        stop.clone(),
    )
    .expect("subscribed");
    (seen, stop)
}

/// The value of `record`, which must be JSON.
pub fn value_json(record: &Record) -> serde_json::Value {
    serde_json::from_slice(&record.value).unwrap_or_else(|_| {
        panic!(
            "record is not JSON: {}",
            String::from_utf8_lossy(&record.value)
        )
    })
}

/// The status and JSON body of `response`.
pub async fn json(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}")),
    )
}

/// The value of header `name`, as text.
pub fn header(record: &Record, name: &str) -> Option<String> {
    record
        .headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

/// Sends the host's logs to the test output (shown for failing tests); `RUST_LOG` filters.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,wasmtime=warn,cranelift=warn".into()),
        )
        .with_test_writer()
        .try_init();
}
