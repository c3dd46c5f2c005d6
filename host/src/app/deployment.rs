//! The live deployment: which plugin versions, routes and subscriptions are active, and how a
//! new config is applied to them while the host runs.
//!
//! Applying is a reconciliation: each plugin whose code or settings changed is loaded and
//! checked off the async runtime, then swapped in atomically; a plugin that fails any check
//! keeps its previous version. Routes and subscriptions follow the plugins that are loaded.
//! Subscriptions whose settings did not change keep running (and keep their partitions);
//! removed ones are stopped after their in-flight inputs commit.
//!
//! An operator may pause a subscription: it is stopped the same way and stays stopped, across
//! reloads, until resumed. Repairs that move a group's offsets run while it is stopped.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, bail};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{plugin_info, topic_specs};
use crate::config::{Config, PluginConfig, SubscriptionConfig};
use crate::dispatch::{Dispatcher, SubscriptionSettings};
use crate::http::{HttpState, Route, RouteTable};
use crate::runtime::{LoadedPlugin, Runtime};

/// What applying a config changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// Plugins loaded or swapped to a new version, as `name@version`.
    pub loaded: Vec<String>,
    /// Plugins removed.
    pub unloaded: Vec<String>,
    /// Plugins whose new version was rejected, with the reason; the old version (if any) serves.
    pub failed: Vec<(String, String)>,
}

struct RunningSubscription {
    settings: SubscriptionSettings,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct Applied {
    config: Option<Config>,
    subscriptions: Vec<RunningSubscription>,
    /// Set once the host started; until then subscriptions are only planned.
    shutdown: Option<CancellationToken>,
    /// Subscriptions an operator paused, as (topic, group).
    paused: BTreeSet<(String, String)>,
}

/// Whether a configured subscription consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionState {
    /// It consumes.
    Running,
    /// An operator paused it.
    Paused,
    /// It does not consume: the host has not started, or its plugin is not loaded.
    Stopped,
}

/// See the module docs.
pub struct Deployment {
    runtime: Arc<Runtime>,
    dispatcher: Arc<Dispatcher>,
    http: Arc<HttpState>,
    applied: tokio::sync::Mutex<Applied>,
    load_errors: Mutex<BTreeMap<String, String>>,
    /// Held by a repair that reads and moves offsets, so two never interleave.
    pub(super) repairing: tokio::sync::Mutex<()>,
    /// This host's id among others, once it listens (see `fleet::host_id`).
    pub(super) host_id: std::sync::OnceLock<String>,
}

impl Deployment {
    pub(super) fn new(
        runtime: Arc<Runtime>,
        dispatcher: Arc<Dispatcher>,
        http: Arc<HttpState>,
    ) -> Self {
        Deployment {
            runtime,
            dispatcher,
            http,
            applied: Default::default(),
            load_errors: Default::default(),
            repairing: Default::default(),
            host_id: Default::default(),
        }
    }

    /// The dispatcher (registry, bus).
    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    /// The config last applied.
    pub async fn config(&self) -> Option<Config> {
        self.applied.lock().await.config.clone()
    }

    /// The last rejected load of each plugin whose current version is older than the file.
    pub fn load_errors(&self) -> BTreeMap<String, String> {
        self.load_errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Brings plugins, routes and subscriptions in line with `config`.
    pub async fn apply(&self, config: Config) -> ApplyReport {
        let mut applied = self.applied.lock().await;
        tracing::debug!("applying a new configuration");
        let mut report = ApplyReport::default();
        if let Err(e) = self
            .dispatcher
            .bus()
            .ensure_topics(topic_specs(&config))
            .await
        {
            report.failed.push(("topics".into(), e.to_string()));
        }
        let registry = self.dispatcher.registry();
        for plugin in config.plugins.values() {
            let needs = Needs::of(&config, &plugin.name);
            match self
                .load_version(registry.get(&plugin.name), plugin, needs)
                .await
            {
                // The file is the serving version again: an earlier rejection is past.
                Ok(None) => self.set_load_error(&plugin.name, None),
                Ok(Some(new)) => {
                    report
                        .loaded
                        .push(format!("{}@{}", new.info.name, new.info.version));
                    self.dispatcher.metrics().plugin_load(&plugin.name, true);
                    self.set_load_error(&plugin.name, None);
                    registry.install(new);
                }
                Err(e) => {
                    let reason = format!("{e:#}");
                    tracing::error!(plugin = %plugin.name, source = %plugin.path.display(), "new version rejected, previous one keeps serving: {reason}");
                    self.set_load_error(&plugin.name, Some(reason.clone()));
                    self.dispatcher.metrics().plugin_load(&plugin.name, false);
                    report.failed.push((plugin.name.clone(), reason));
                }
            }
        }
        // Subscriptions of removed plugins stop first, so their in-flight records finish (or
        // stay uncommitted) on the version that took them, and none meets a missing plugin.
        let removed: Vec<String> = (registry.all().into_iter())
            .map(|(plugin, _)| plugin.info.name.clone())
            .filter(|name| !config.plugins.contains_key(name))
            .collect();
        if !removed.is_empty() {
            self.stop_subscriptions(&mut applied, |s| removed.contains(&s.plugin))
                .await;
        }
        for (plugin, _) in registry.all() {
            if !config.plugins.contains_key(&plugin.info.name) {
                registry.remove(&plugin.info.name);
                self.set_load_error(&plugin.info.name, None);
                report.unloaded.push(plugin.info.name.clone());
            }
        }
        tracing::debug!("plugins applied");
        let routes = config
            .routes
            .iter()
            .filter(|r| registry.get(&r.plugin).is_some_and(|p| p.exports().http))
            .map(|r| Route::new(&r.method, &r.path, &r.plugin))
            .collect();
        self.http.set_routes(RouteTable::new(routes));
        applied.config = Some(config);
        self.sync_subscriptions(&mut applied).await;
        for name in &report.loaded {
            tracing::info!(plugin = %name, "plugin loaded");
        }
        for name in &report.unloaded {
            tracing::info!(plugin = %name, "plugin unloaded");
        }
        report
    }

    /// The state of the subscription of `group` on `topic`.
    pub async fn subscription_state(&self, topic: &str, group: &str) -> SubscriptionState {
        let applied = self.applied.lock().await;
        let key = (topic.to_string(), group.to_string());
        if applied.paused.contains(&key) {
            SubscriptionState::Paused
        } else if (applied.subscriptions.iter())
            .any(|s| s.settings.topic == topic && s.settings.group == group)
        {
            SubscriptionState::Running
        } else {
            SubscriptionState::Stopped
        }
    }

    /// The subscriptions an operator paused, as (topic, group).
    pub async fn paused(&self) -> BTreeSet<(String, String)> {
        self.applied.lock().await.paused.clone()
    }

    /// Pauses the subscription of `group` on `topic` until [`Deployment::resume`]: its
    /// in-flight records finish and commit, later ones stay for when it resumes. False when
    /// it was paused already.
    pub async fn pause(&self, topic: &str, group: &str) -> bool {
        let mut applied = self.applied.lock().await;
        if !applied
            .paused
            .insert((topic.to_string(), group.to_string()))
        {
            return false;
        }
        self.stop_subscriptions(&mut applied, |s| s.topic == topic && s.group == group)
            .await;
        tracing::info!(topic, group, "subscription paused");
        true
    }

    /// Resumes a paused subscription from its committed offsets. False when it was not paused.
    pub async fn resume(&self, topic: &str, group: &str) -> bool {
        let mut applied = self.applied.lock().await;
        if !applied
            .paused
            .remove(&(topic.to_string(), group.to_string()))
        {
            return false;
        }
        self.sync_subscriptions(&mut applied).await;
        tracing::info!(topic, group, "subscription resumed");
        true
    }

    /// Runs `work` while the subscription of `group` on `topic` is stopped (its in-flight
    /// records finished), then starts it again unless it was paused before. Reloads wait
    /// meanwhile, so nothing restarts it halfway.
    pub async fn while_stopped<T>(
        &self,
        topic: &str,
        group: &str,
        work: impl Future<Output = T>,
    ) -> T {
        let mut applied = self.applied.lock().await;
        let key = (topic.to_string(), group.to_string());
        let was_paused = !applied.paused.insert(key.clone());
        self.stop_subscriptions(&mut applied, |s| s.topic == topic && s.group == group)
            .await;
        let out = work.await;
        if !was_paused {
            applied.paused.remove(&key);
            self.sync_subscriptions(&mut applied).await;
        }
        out
    }

    /// Starts the planned subscriptions; later applies start and stop them as needed.
    pub async fn start(&self, shutdown: CancellationToken) {
        let mut applied = self.applied.lock().await;
        applied.shutdown = Some(shutdown);
        self.sync_subscriptions(&mut applied).await;
    }

    /// Waits for every subscription to finish after shutdown was signalled.
    pub async fn drain(&self) {
        let subscriptions = std::mem::take(&mut self.applied.lock().await.subscriptions);
        for sub in subscriptions {
            let _ = sub.task.await;
        }
    }

    /// Stops subscriptions that are no longer wanted (after their in-flight inputs commit) and
    /// starts new ones; unchanged ones keep running undisturbed.
    async fn sync_subscriptions(&self, applied: &mut Applied) {
        let Some(shutdown) = applied.shutdown.clone() else {
            return;
        };
        let registry = self.dispatcher.registry();
        let wanted: Vec<SubscriptionSettings> = applied
            .config
            .iter()
            .flat_map(|c| c.subscriptions.iter())
            .filter(|s| registry.get(&s.plugin).is_some_and(|p| p.exports().message))
            .filter(|s| !applied.paused.contains(&(s.topic.clone(), s.group.clone())))
            .map(subscription_settings)
            .collect();
        self.stop_subscriptions(applied, |s| !wanted.contains(s))
            .await;
        for settings in wanted {
            if applied.subscriptions.iter().any(|r| r.settings == settings) {
                continue;
            }
            let stop = shutdown.child_token();
            let handler = self
                .dispatcher
                .record_handler(settings.clone(), stop.clone());
            match self.dispatcher.bus().subscribe(
                &settings.topic,
                &settings.group,
                handler,
                stop.clone(),
            ) {
                Ok(task) => {
                    tracing::info!(topic = %settings.topic, plugin = %settings.plugin, group = %settings.group, "subscription started");
                    applied.subscriptions.push(RunningSubscription {
                        settings,
                        stop,
                        task,
                    });
                }
                Err(e) => {
                    tracing::error!(topic = %settings.topic, plugin = %settings.plugin, "cannot subscribe: {}", crate::error::Chain(&e))
                }
            }
        }
    }

    /// Stops the running subscriptions that `unwanted` picks, each after its in-flight records
    /// finished; records not yet started stay uncommitted for the next consumer.
    async fn stop_subscriptions(
        &self,
        applied: &mut Applied,
        unwanted: impl Fn(&SubscriptionSettings) -> bool,
    ) {
        let (stop, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut applied.subscriptions)
            .into_iter()
            .partition(|r| unwanted(&r.settings));
        applied.subscriptions = keep;
        for sub in &stop {
            sub.stop.cancel();
        }
        for sub in stop {
            let _ = sub.task.await;
            // Paused or removed, it no longer counts against readiness.
            self.dispatcher.set_stalled(&sub.settings, None);
            tracing::info!(topic = %sub.settings.topic, plugin = %sub.settings.plugin, "subscription stopped");
        }
    }

    /// Loads the version of `plugin` that its config and file describe, unless it is the
    /// current one.
    async fn load_version(
        &self,
        current: Option<Arc<LoadedPlugin>>,
        plugin: &PluginConfig,
        needs: Needs,
    ) -> anyhow::Result<Option<LoadedPlugin>> {
        let bytes = (tokio::fs::read(&plugin.path).await)
            .map_err(|e| crate::runtime::unreadable(&plugin.path, e))?;
        let info = plugin_info(plugin, &bytes);
        if let Some(current) = current.filter(|c| c.info.version == info.version) {
            // The code is the same, but the wiring may not be: check it every time.
            needs.check(&current)?;
            if *current.info == info {
                return Ok(None);
            }
            let reconfigured = self.runtime.reconfigure(&current, info)?;
            return Ok(Some(reconfigured));
        }
        let runtime = self.runtime.clone();
        let loaded = tokio::task::spawn_blocking(move || runtime.load(info, &bytes)).await??;
        needs.check(&loaded)?;
        self.runtime
            .try_instantiate(&loaded)
            .await
            .context("it does not instantiate")?;
        Ok(Some(loaded))
    }

    fn set_load_error(&self, plugin: &str, error: Option<String>) {
        let mut errors = self.load_errors.lock().unwrap_or_else(|e| e.into_inner());
        match error {
            Some(error) => errors.insert(plugin.to_string(), error),
            None => errors.remove(plugin),
        };
    }
}

/// Which handlers the wiring of a plugin needs.
#[derive(Debug, Clone, Copy)]
struct Needs {
    http: bool,
    message: bool,
}

impl Needs {
    fn of(config: &Config, plugin: &str) -> Self {
        Needs {
            http: config.routes.iter().any(|r| r.plugin == plugin),
            message: config.subscriptions.iter().any(|s| s.plugin == plugin),
        }
    }

    fn check(self, plugin: &LoadedPlugin) -> anyhow::Result<()> {
        let exports = plugin.exports();
        if self.http && !exports.http {
            bail!("it does not export eventhost:plugin/http-handler, which its routes need");
        }
        if self.message && !exports.message {
            bail!(
                "it does not export eventhost:plugin/message-handler, which its subscriptions need"
            );
        }
        Ok(())
    }
}

/// The dispatcher's view of a configured subscription.
pub fn subscription_settings(sub: &SubscriptionConfig) -> SubscriptionSettings {
    SubscriptionSettings {
        topic: sub.topic.clone(),
        plugin: sub.plugin.clone(),
        group: sub.group.clone(),
        dead_letter: sub.dead_letter.clone(),
        attempts: sub.retry.attempts,
        backoff: sub.retry.backoff,
        max_backoff: sub.retry.max_backoff,
        concurrency: sub.concurrency,
        max_pending: sub.max_pending,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::bus::EmbeddedBus;
    use crate::dispatch::dispatcher_for_tests;
    use crate::runtime::test_component::{HANDLES_HTTP, HANDLES_MESSAGES, component};
    use crate::runtime::version_of;
    use crate::state::{EmbeddedStore, PendingStore};

    /// `hello` serves `GET /hello`. The runtime of `dispatcher_for_tests` allows 1 MiB.
    const WITH_HELLO: &str = r#"
        [runtime]
        max_memory_mib = 1

        [plugin.hello]

        [[route]]
        method = "GET"
        path = "/hello"
        plugin = "hello"
    "#;

    const WITHOUT_HELLO: &str = "[runtime]\nmax_memory_mib = 1\n";

    /// A deployment on the embedded bus and store, its config file and plugins in `dir`.
    struct Fixture {
        dir: tempfile::TempDir,
        deployment: Deployment,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("plugins")).unwrap();
            let store = EmbeddedStore::open(&dir.path().join("state.redb")).unwrap();
            let pending = PendingStore::new(Arc::new(store), Arc::default());
            let dispatcher =
                dispatcher_for_tests(dir.path(), pending, Arc::new(EmbeddedBus::new()));
            let http = Arc::new(HttpState::new(
                dispatcher.clone(),
                RouteTable::default(),
                1 << 20,
                Duration::from_secs(1),
                None,
            ));
            let deployment = Deployment::new(dispatcher.runtime().clone(), dispatcher, http);
            Fixture { dir, deployment }
        }

        /// Puts `bytes` where the config expects `hello`'s component, as a deploy does.
        fn deploy_hello(&self, bytes: &[u8]) {
            std::fs::write(self.dir.path().join("plugins/hello.wasm"), bytes).unwrap();
        }

        async fn apply(&self, config: &str) -> ApplyReport {
            let file = self.dir.path().join("eventhost.toml");
            let config = Config::parse(config, &file).unwrap();
            self.deployment.apply(config).await
        }

        /// The version of `hello` that inputs get.
        fn serving(&self) -> Option<String> {
            let registry = self.deployment.dispatcher().registry();
            registry.get("hello").map(|p| p.info.version.clone())
        }

        fn routes(&self) -> Vec<String> {
            let routes = self.deployment.http.routes();
            (routes.routes().iter())
                .map(|r| format!("{} {} -> {}", r.method, r.pattern, r.plugin))
                .collect()
        }
    }

    fn loaded(bytes: &[u8]) -> ApplyReport {
        ApplyReport {
            loaded: vec![format!("hello@{}", version_of(bytes))],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_new_plugin_is_loaded_and_serves_its_routes() {
        let host = Fixture::new();
        let v1 = component(HANDLES_HTTP, "v1");
        host.deploy_hello(&v1);

        assert_eq!(host.apply(WITH_HELLO).await, loaded(&v1));
        assert_eq!(host.serving(), Some(version_of(&v1)));
        assert_eq!(host.routes(), ["GET /hello -> hello"]);
        assert!(host.deployment.load_errors().is_empty());
    }

    #[tokio::test]
    async fn new_bytes_swap_the_version_and_the_same_bytes_load_nothing() {
        let host = Fixture::new();
        let (v1, v2) = (component(HANDLES_HTTP, "v1"), component(HANDLES_HTTP, "v2"));
        assert_ne!(version_of(&v1), version_of(&v2));
        host.deploy_hello(&v1);
        host.apply(WITH_HELLO).await;

        host.deploy_hello(&v2);
        assert_eq!(host.apply(WITH_HELLO).await, loaded(&v2));
        assert_eq!(host.serving(), Some(version_of(&v2)));

        assert_eq!(host.apply(WITH_HELLO).await, ApplyReport::default());
        assert_eq!(host.serving(), Some(version_of(&v2)));
        assert_eq!(host.routes(), ["GET /hello -> hello"]);
    }

    #[tokio::test]
    async fn a_plugin_dropped_from_the_config_is_unloaded_with_its_routes() {
        let host = Fixture::new();
        host.deploy_hello(&component(HANDLES_HTTP, "v1"));
        host.apply(WITH_HELLO).await;
        assert_eq!(host.routes(), ["GET /hello -> hello"]);

        let report = host.apply(WITHOUT_HELLO).await;
        assert_eq!(
            report,
            ApplyReport {
                unloaded: vec!["hello".into()],
                ..Default::default()
            }
        );
        assert_eq!(host.serving(), None);
        assert!(host.routes().is_empty());
    }

    /// Deploys `bad` over a serving `hello`: it is rejected with a reason containing `why`,
    /// the previous version keeps its routes, and a good file afterwards clears the error.
    async fn rejected_while_the_previous_version_serves(bad: &[u8], why: &str) {
        let host = Fixture::new();
        let v1 = component(HANDLES_HTTP, "v1");
        host.deploy_hello(&v1);
        host.apply(WITH_HELLO).await;

        host.deploy_hello(bad);
        let report = host.apply(WITH_HELLO).await;
        assert!(
            report.loaded.is_empty() && report.unloaded.is_empty(),
            "{report:?}"
        );
        let [(plugin, reason)] = &report.failed[..] else {
            panic!("one failure expected: {report:?}");
        };
        assert_eq!(plugin, "hello");
        assert!(reason.contains(why), "{reason}");
        assert_eq!(
            host.deployment.load_errors(),
            BTreeMap::from([("hello".to_string(), reason.clone())])
        );
        assert_eq!(host.serving(), Some(version_of(&v1)));
        assert_eq!(host.routes(), ["GET /hello -> hello"]);

        let v2 = component(HANDLES_HTTP, "v2");
        host.deploy_hello(&v2);
        assert_eq!(host.apply(WITH_HELLO).await, loaded(&v2));
        assert!(host.deployment.load_errors().is_empty());
    }

    #[tokio::test]
    async fn putting_back_the_serving_file_clears_its_rejection() {
        let host = Fixture::new();
        let v1 = component(HANDLES_HTTP, "v1");
        host.deploy_hello(&v1);
        host.apply(WITH_HELLO).await;
        host.deploy_hello(b"not wasm");
        host.apply(WITH_HELLO).await;
        assert!(host.deployment.load_errors().contains_key("hello"));

        host.deploy_hello(&v1);
        assert_eq!(host.apply(WITH_HELLO).await, ApplyReport::default());
        assert!(host.deployment.load_errors().is_empty());
        assert_eq!(host.serving(), Some(version_of(&v1)));
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_component_leaves_the_previous_version_serving() {
        rejected_while_the_previous_version_serves(b"not wasm", "not a valid component").await;
    }

    #[tokio::test]
    async fn a_component_without_the_handler_its_routes_need_leaves_the_previous_version_serving() {
        let messages_only = component(HANDLES_MESSAGES, "v2");
        let why = "does not export eventhost:plugin/http-handler";
        rejected_while_the_previous_version_serves(&messages_only, why).await;
    }
}
