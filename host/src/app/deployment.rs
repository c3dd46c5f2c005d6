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
                Ok(None) => {}
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
