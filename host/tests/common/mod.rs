//! Shared helpers for integration tests: real compiled plugins, a host on a free port, and
//! waiting for conditions with a deadline instead of sleeping.

#![allow(dead_code)] // each test binary uses a different subset

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventhost::app::{Host, RunningHost};
use eventhost::bus::{Bus, Handled, Record, RecordHandler};
use eventhost::config::Config;
use tokio_util::sync::CancellationToken;

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

/// A host started from a config snippet, with its own state folder and a free port.
pub struct TestHost {
    pub running: Option<RunningHost>,
    pub url: String,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
}

impl TestHost {
    /// Starts a host from `toml`. `[server]`, `[state]` and `[runtime] plugins_dir` are added.
    pub async fn start(toml: &str) -> TestHost {
        Self::start_with(toml, "", "").await
    }

    /// Like [`TestHost::start`], with lines added to `[server]` (keys, then sub-tables such
    /// as `[server.cors]`) and to `[runtime]`.
    pub async fn start_with(toml: &str, server: &str, runtime: &str) -> TestHost {
        let dir = tempfile::tempdir().unwrap();
        let config = test_config_with(dir.path(), server, runtime, toml);
        Self::start_config(dir, config).await
    }

    /// Like [`TestHost::start`] but reusing `dir` (and so its state) from an earlier host.
    pub async fn start_in(dir: tempfile::TempDir, toml: &str) -> TestHost {
        let config = test_config(dir.path(), toml);
        Self::start_config(dir, config).await
    }

    async fn start_config(dir: tempfile::TempDir, config: Config) -> TestHost {
        let host = Host::build(config).await.expect("host builds");
        let running = host.start().await.expect("host starts");
        let url = format!("http://{}", running.addr);
        TestHost {
            running: Some(running),
            url,
            client: reqwest::Client::new(),
            dir,
        }
    }

    pub fn host(&self) -> &RunningHost {
        self.running.as_ref().expect("host is running")
    }

    pub fn bus(&self) -> Arc<dyn Bus> {
        self.host().dispatcher().bus().clone()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.url))
            .body(body)
            .send()
            .await
            .expect("request sent")
    }

    /// Stops the host and hands back its folder.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.running
            .take()
            .expect("running")
            .stop()
            .await
            .expect("clean stop");
        self.dir
    }
}

/// Writes `toml` plus test defaults into `dir` and loads it.
pub fn test_config(dir: &Path, toml: &str) -> Config {
    test_config_with(dir, "", "", toml)
}

/// Like [`test_config`], with lines of keys added to `[server]` and `[runtime]`.
pub fn test_config_with(dir: &Path, server: &str, runtime: &str, toml: &str) -> Config {
    let grace = if server.contains("shutdown_grace_ms") {
        ""
    } else {
        "shutdown_grace_ms = 20000\n"
    };
    let full = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{grace}{server}\n[state]\npath = \"{state}\"\n\n[runtime]\nplugins_dir = \"{plugins}\"\n{runtime}\n{toml}",
        state = dir.join("state.redb").display(),
        plugins = plugins_dir().display(),
    );
    let file = dir.join("eventhost.toml");
    std::fs::write(&file, full).unwrap();
    Config::load(&file).unwrap_or_else(|e| panic!("test config is invalid: {e}"))
}

/// `static_dir = "<the coolstore's web page>"`, for [`test_config_with`].
pub fn coolstore_static_dir() -> String {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/coolstore/web");
    format!("static_dir = {:?}\n", web.display().to_string())
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

/// Polls `check` until it returns `Some`, failing the test after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
