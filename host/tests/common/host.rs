//! A host started in the test process from a config snippet, on a free port.

use std::path::Path;
use std::sync::Arc;

use eventhost::app::{Host, RunningHost};
use eventhost::bus::Bus;
use eventhost::config::Config;
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::plugins_dir;

/// Tests that measure the test process itself (its resident memory) run alone: every host
/// started in the process holds this lock shared ([`share_process`]), and such a test holds it
/// exclusively ([`TestHost::start_alone`]). A test must not wait for a second share while it
/// holds one.
static PROCESS: RwLock<()> = RwLock::const_new(());

/// A share of the test process, held while a test runs a host in it.
pub async fn share_process() -> RwLockReadGuard<'static, ()> {
    PROCESS.read().await
}

/// How a [`TestHost`] holds the test process.
enum Process {
    Shared(RwLockReadGuard<'static, ()>),
    Alone(RwLockWriteGuard<'static, ()>),
}

/// A host started from a config snippet, with its own state folder and a free port.
pub struct TestHost {
    pub running: Option<RunningHost>,
    pub url: String,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    _process: Process,
}

impl TestHost {
    /// Starts a host from `toml`. `[server]`, `[state]` and `[runtime] plugins_dir` are added.
    pub async fn start(toml: &str) -> TestHost {
        Self::start_with(toml, "", "").await
    }

    /// Like [`TestHost::start`], with lines added to `[server]` (keys, then sub-tables such
    /// as `[server.cors]`) and to `[runtime]`.
    pub async fn start_with(toml: &str, server: &str, runtime: &str) -> TestHost {
        let process = Process::Shared(share_process().await);
        let dir = tempfile::tempdir().unwrap();
        let config = test_config_with(dir.path(), server, runtime, toml);
        Self::start_config(dir, config, process).await
    }

    /// Like [`TestHost::start_with`], once no other host runs in the test process and with
    /// none starting until this one is dropped: for tests that measure the process.
    pub async fn start_alone(toml: &str, server: &str, runtime: &str) -> TestHost {
        let process = Process::Alone(PROCESS.write().await);
        let dir = tempfile::tempdir().unwrap();
        let config = test_config_with(dir.path(), server, runtime, toml);
        Self::start_config(dir, config, process).await
    }

    /// Like [`TestHost::start`] but reusing `dir` (and so its state) from an earlier host.
    pub async fn start_in(dir: tempfile::TempDir, toml: &str) -> TestHost {
        let process = Process::Shared(share_process().await);
        let config = test_config(dir.path(), toml);
        Self::start_config(dir, config, process).await
    }

    async fn start_config(dir: tempfile::TempDir, config: Config, process: Process) -> TestHost {
        let host = Host::build(config).await.expect("host builds");
        let running = host.start().await.expect("host starts");
        let url = format!("http://{}", running.addr);
        TestHost {
            running: Some(running),
            url,
            client: reqwest::Client::new(),
            dir,
            _process: process,
        }
    }

    pub fn host(&self) -> &RunningHost {
        self.running.as_ref().expect("host is running")
    }

    /// The version of `plugin` the host serves.
    pub fn version(&self, plugin: &str) -> String {
        let registry = self.host().dispatcher().registry();
        let loaded = registry.get(plugin);
        let loaded = loaded.unwrap_or_else(|| panic!("plugin {plugin} is loaded"));
        loaded.info.version.clone()
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
