//! Wiring: from a validated config to a running host, and back down on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, EmbeddedBus, KafkaBus, KafkaSettings, TopicSpec};
use crate::config::{BusConfig, Config, PluginConfig};
use crate::dispatch::{Dispatcher, SubscriptionRuntime};
use crate::http::{HttpState, Route, RouteTable};
use crate::runtime::{LoadedPlugin, PluginInfo, Registry, Runtime, RuntimeSettings};
use crate::state::{EmbeddedStore, StateStore};

/// A host built from a config, with every plugin loaded and checked, not yet serving.
pub struct Host {
    config: Config,
    dispatcher: Arc<Dispatcher>,
    http: Arc<HttpState>,
}

/// A host that serves HTTP and consumes its subscriptions until [`RunningHost::stop`].
pub struct RunningHost {
    /// The address the HTTP server listens on.
    pub addr: SocketAddr,
    dispatcher: Arc<Dispatcher>,
    shutdown: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    subscriptions: Vec<JoinHandle<()>>,
    grace: Duration,
}

impl Host {
    /// Opens the store and the bus, declares the topics, and loads every plugin.
    pub async fn build(config: Config) -> anyhow::Result<Host> {
        let store: Arc<dyn StateStore> = Arc::new(
            EmbeddedStore::open(&config.state.path)
                .with_context(|| format!("opening state {}", config.state.path.display()))?,
        );
        let bus: Arc<dyn Bus> = match &config.bus {
            BusConfig::Embedded => Arc::new(EmbeddedBus::new()),
            BusConfig::Kafka(kafka) => Arc::new(KafkaBus::new(KafkaSettings {
                bootstrap: kafka.bootstrap.clone(),
                client_id: kafka.client_id.clone(),
                options: kafka.options.clone(),
            })?),
        };
        bus.ensure_topics(topic_specs(&config))
            .await
            .context("declaring topics")?;
        let runtime = Arc::new(Runtime::new(runtime_settings(&config), store.clone())?);
        let registry = Arc::new(Registry::new());
        for plugin in load_plugins(&runtime, &config).await? {
            registry.install(plugin);
        }
        let dispatcher = Arc::new(Dispatcher::new(
            runtime,
            registry,
            store,
            bus,
            config.runtime.max_concurrency as usize,
        ));
        let routes = RouteTable::new(
            config
                .routes
                .iter()
                .map(|r| Route::new(&r.method, &r.path, &r.plugin))
                .collect(),
        );
        let http = Arc::new(HttpState::new(
            dispatcher.clone(),
            routes,
            config.server.body_limit_bytes,
            config.server.static_dir.clone(),
        ));
        Ok(Host {
            config,
            dispatcher,
            http,
        })
    }

    /// The config the host was built from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The dispatcher (plugins, bus) of this host.
    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    /// Binds the listener, starts every subscription, and serves until stopped.
    pub async fn start(self) -> anyhow::Result<RunningHost> {
        let listener = tokio::net::TcpListener::bind(self.config.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", self.config.server.listen))?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let mut subscriptions = Vec::new();
        for sub in &self.config.subscriptions {
            let runtime = SubscriptionRuntime {
                topic: sub.topic.clone(),
                plugin: sub.plugin.clone(),
                group: sub.group.clone(),
                dead_letter: sub.dead_letter.clone(),
                attempts: sub.retry.attempts,
                backoff: sub.retry.backoff,
                max_backoff: sub.retry.max_backoff,
            };
            let handler = self.dispatcher.record_handler(runtime, shutdown.clone());
            let task = self
                .dispatcher
                .bus()
                .subscribe(&sub.topic, &sub.group, handler, shutdown.clone())
                .with_context(|| format!("subscribing {} to {}", sub.plugin, sub.topic))?;
            subscriptions.push(task);
        }
        let app = crate::http::router(self.http.clone());
        let stop = shutdown.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        });
        Ok(RunningHost {
            addr,
            dispatcher: self.dispatcher,
            shutdown,
            server,
            subscriptions,
            grace: self.config.server.shutdown_grace,
        })
    }
}

impl RunningHost {
    /// The dispatcher (plugins, bus) of this host.
    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    /// A token that stops the host when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled, then drains.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.shutdown.cancelled().await;
        self.stop().await
    }

    /// Stops accepting work, lets in-flight inputs finish and commit (up to the grace
    /// period), and returns once everything is down.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tracing::info!(grace = ?self.grace, "shutting down: draining in-flight inputs");
        let drain = async {
            for task in self.subscriptions {
                let _ = task.await;
            }
            self.server.await
        };
        match tokio::time::timeout(self.grace, drain).await {
            Ok(Ok(result)) => result.context("http server")?,
            Ok(Err(join)) => bail!("http server task failed: {join}"),
            Err(_) => bail!(
                "in-flight work did not finish within the grace period of {:?}",
                self.grace
            ),
        }
        tracing::info!("stopped");
        Ok(())
    }
}

fn runtime_settings(config: &Config) -> RuntimeSettings {
    RuntimeSettings {
        max_memory_bytes: (config.runtime.max_memory_mib as usize) << 20,
        max_instances: config.runtime.max_concurrency,
    }
}

fn topic_specs(config: &Config) -> Vec<TopicSpec> {
    config
        .topics
        .values()
        .map(|t| TopicSpec {
            name: t.name.clone(),
            partitions: t.partitions,
            replication: t.replication,
        })
        .collect()
}

/// What the host knows of a plugin before loading its code.
pub fn plugin_info(plugin: &PluginConfig) -> PluginInfo {
    PluginInfo {
        name: plugin.name.clone(),
        version: String::new(),
        source: plugin.path.clone(),
        publish: plugin.publish.iter().cloned().collect(),
        config: plugin.config.clone(),
        memory_bytes: (plugin.limits.memory_mib as usize) << 20,
        timeout: plugin.limits.timeout,
    }
}

/// Compiles every configured plugin (off the async runtime) and checks that each exports the
/// handlers its routes and subscriptions need.
pub async fn load_plugins(
    runtime: &Arc<Runtime>,
    config: &Config,
) -> anyhow::Result<Vec<LoadedPlugin>> {
    let mut loaded = Vec::new();
    for plugin in config.plugins.values() {
        let (runtime, info, path) = (runtime.clone(), plugin_info(plugin), plugin.path.clone());
        let component = tokio::task::spawn_blocking(move || runtime.load_file(info, &path))
            .await?
            .with_context(|| {
                format!(
                    "{}: plugin.{}: cannot load {}",
                    config.file.display(),
                    plugin.name,
                    plugin.path.display()
                )
            })?;
        loaded.push(component);
    }
    check_bindings(config, &loaded)?;
    Ok(loaded)
}

/// Every route's plugin must export the HTTP handler; every subscription's the message handler.
pub fn check_bindings(config: &Config, loaded: &[LoadedPlugin]) -> anyhow::Result<()> {
    let exports = |name: &str| {
        loaded
            .iter()
            .find(|p| p.info.name == name)
            .map(|p| p.exports())
    };
    let mut problems = Vec::new();
    for (i, route) in config.routes.iter().enumerate() {
        if exports(&route.plugin).is_some_and(|e| !e.http) {
            problems.push(format!(
                "{}: route[{}] ({} {}): plugin {} does not export eventhost:plugin/http-handler",
                config.file.display(),
                i,
                route.method,
                route.path,
                route.plugin
            ));
        }
    }
    for (i, sub) in config.subscriptions.iter().enumerate() {
        if exports(&sub.plugin).is_some_and(|e| !e.message) {
            problems.push(format!(
                "{}: subscription[{}] (topic {}): plugin {} does not export eventhost:plugin/message-handler",
                config.file.display(), i, sub.topic, sub.plugin
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!(problems.join("\n"))
    }
}
