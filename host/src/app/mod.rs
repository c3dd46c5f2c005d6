//! Wiring: from a validated config to a running host, and back down on shutdown.

pub mod admin;
pub mod admin_client;
mod deployment;
pub mod fleet;
pub mod readiness;
pub mod repair;
pub mod tail;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use deployment::{ApplyReport, Deployment, SubscriptionState, subscription_settings};

use crate::bus::{Bus, EmbeddedBus, KafkaBus, KafkaSettings, TopicSpec};
use crate::config::{BusConfig, Config, PluginConfig, StateConfig};
use crate::dispatch::Dispatcher;
use crate::http::{HttpState, RouteTable, ServerLimits};
use crate::metrics::Metrics;
use crate::runtime::{
    LoadedPlugin, PluginInfo, Registry, Runtime, RuntimeSettings, unreadable, version_of,
};
use crate::state::{EmbeddedStore, PendingStore, PostgresStore, StateStore, redacted};
use crate::telemetry::Telemetry;

/// How long a stopping host keeps relaying messages committed to a shared store; what is left
/// goes out from another host, or this one when it starts again.
const RELAY_FLUSH: Duration = Duration::from_secs(5);

/// Environment variable with the admin token, used when the config sets none.
pub const ADMIN_TOKEN_ENV: &str = "EVENTHOST_ADMIN_TOKEN";

/// A host built from a config, with every plugin loaded and checked, not yet serving.
pub struct Host {
    config: Config,
    deployment: Arc<Deployment>,
    http: Arc<HttpState>,
    reload_from: Option<PathBuf>,
    /// A shared store, whose committed messages this host relays to the bus.
    postgres: Option<Arc<PostgresStore>>,
    /// This host's id among the hosts of a fleet.
    id: String,
}

/// A host that serves HTTP and consumes its subscriptions until [`RunningHost::stop`].
pub struct RunningHost {
    /// The address the HTTP server listens on.
    pub addr: SocketAddr,
    /// The address of the admin routes, when they have a listener of their own.
    pub admin_addr: Option<SocketAddr>,
    deployment: Arc<Deployment>,
    shutdown: CancellationToken,
    servers: Vec<JoinHandle<std::io::Result<()>>>,
    watcher: Option<JoinHandle<()>>,
    grace: Duration,
    /// Stops the shared store's tasks (relaying messages, keeping up with the fleet), after
    /// the last input committed.
    relay: CancellationToken,
    relaying: Vec<JoinHandle<()>>,
}

impl Host {
    /// Opens the store and the bus, declares the topics, and loads every plugin. Any plugin
    /// that fails to load or lacks a handler its wiring needs is an error.
    pub async fn build(mut config: Config) -> anyhow::Result<Host> {
        let id = fleet::host_id(config.server.listen);
        let (store, postgres): (Arc<dyn StateStore>, _) = match &config.state {
            StateConfig::Embedded { path } => {
                let store = EmbeddedStore::open(path)
                    .with_context(|| format!("opening state {}", path.display()))?;
                (Arc::new(store), None)
            }
            StateConfig::Postgres { url } => {
                let store = Arc::new(
                    PostgresStore::open(url)
                        .with_context(|| format!("opening state at {}", redacted(url)))?,
                );
                (store.clone(), Some(store))
            }
        };
        let bus: Arc<dyn Bus> = match &config.bus {
            BusConfig::Embedded => Arc::new(EmbeddedBus::new()),
            BusConfig::Kafka(kafka) => Arc::new(KafkaBus::new(KafkaSettings {
                bootstrap: kafka.bootstrap.clone(),
                client_id: kafka.client_id.clone(),
                // Hosts of a fleet share the consumer groups, so each needs transactional
                // ids of its own.
                instance: postgres.is_some().then(|| id.clone()),
                options: kafka.options.clone(),
            })?),
        };
        if let Some(store) = &postgres {
            // A host joining a fleet starts with the plugins deployed to it.
            let written = fleet::sync(store, &config).await?;
            if written
                .iter()
                .any(|name| !config.plugins.contains_key(name))
            {
                let reloaded = Config::load(&config.file)?;
                config = Config {
                    server: config.server,
                    state: config.state,
                    ..reloaded
                };
            }
        }
        // Inputs read through the pending writes of inputs still committing.
        let metrics = Arc::new(Metrics::new());
        metrics.host(&id);
        let pending = PendingStore::new(store, metrics.clone());
        let runtime = Arc::new(Runtime::new(
            runtime_settings(&config, bus.max_message_bytes()),
            pending.clone(),
        )?);
        let registry = Arc::new(Registry::new());
        for plugin in load_plugins(&runtime, &config).await? {
            metrics.plugin_load(&plugin.info.name, true);
            registry.install(plugin);
        }
        let telemetry = Telemetry::start(&config.telemetry, &config.bus)
            .with_context(|| format!("{}: [telemetry]", config.file.display()))?;
        let dispatcher = Arc::new(
            Dispatcher::new(
                runtime.clone(),
                registry,
                pending,
                bus,
                config.runtime.max_concurrency as usize,
                metrics,
            )
            .with_telemetry(telemetry)
            .with_exactly_once(matches!(&config.bus, BusConfig::Kafka(k) if k.exactly_once)),
        );
        let http = Arc::new(
            HttpState::new(
                dispatcher.clone(),
                RouteTable::default(),
                config.server.body_limit_bytes,
                config.server.body_timeout,
                config.server.static_dir.clone(),
            )
            .with_cors(config.server.cors.as_ref()),
        );
        let deployment = Arc::new(Deployment::new(runtime, dispatcher, http.clone()));
        // Everything is loaded already, so this only declares topics and sets the routes.
        let report = deployment.apply(config.clone()).await;
        if let Some((what, why)) = report.failed.first() {
            bail!("{}: {what}: {why}", config.file.display());
        }
        Ok(Host {
            config,
            deployment,
            http,
            reload_from: None,
            postgres,
            id,
        })
    }

    /// Watches `main_config` and its plugins folder once started, applying every change
    /// while the host runs (see [`crate::reload`]).
    pub fn reload_from(mut self, main_config: PathBuf) -> Self {
        self.reload_from = Some(main_config);
        self
    }

    /// The config the host was built from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The dispatcher (plugins, bus) of this host.
    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        self.deployment.dispatcher()
    }

    /// The public HTTP router (routes, static files, health), for driving the host without a
    /// port, e.g. with `tower::ServiceExt::oneshot`.
    pub fn router(&self) -> axum::Router {
        crate::http::router(self.http.clone())
    }

    /// Binds the listeners, starts every subscription (and the watcher), and serves until
    /// stopped.
    pub async fn start(self) -> anyhow::Result<RunningHost> {
        let listen = self.config.server.listen;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let token = (self.config.server.admin_token.clone()).or_else(|| {
            std::env::var(ADMIN_TOKEN_ENV)
                .ok()
                .filter(|t| !t.is_empty())
        });
        let admin = admin::router(
            self.deployment.clone(),
            admin::AdminAccess {
                token: token.map(Into::into),
            },
        );
        let readiness = readiness::router(self.deployment.clone());
        let mut servers = Vec::new();
        let mut admin_addr = None;
        let limits = ServerLimits {
            header_timeout: self.config.server.header_timeout,
            max_connections: self.config.server.max_connections as usize,
        };
        let app = match self.config.server.admin_listen {
            Some(admin_listen) => {
                let admin_listener = tokio::net::TcpListener::bind(admin_listen)
                    .await
                    .with_context(|| format!("cannot listen on {admin_listen} (admin)"))?;
                admin_addr = Some(admin_listener.local_addr()?);
                servers.push(serve(admin_listener, admin, limits, shutdown.clone()));
                crate::http::router_with(self.http.clone(), readiness)
            }
            None => crate::http::router_with(self.http.clone(), readiness.merge(admin)),
        };
        servers.push(serve(listener, app, limits, shutdown.clone()));
        let id = self.id.clone();
        let _ = self.deployment.host_id.set(id.clone());
        let relay = CancellationToken::new();
        let mut relaying = Vec::new();
        if let Some(store) = &self.postgres {
            let bus = self.deployment.dispatcher().bus().clone();
            relaying.push(store.relay(bus, relay.clone()));
            let me = fleet::HostReport {
                id,
                url: format!("http://{addr}"),
                plugins: Default::default(),
            };
            let registry = self.deployment.dispatcher().registry().clone();
            let config = self.config.clone();
            relaying.push(fleet::spawn(
                store.clone(),
                config,
                registry,
                me,
                relay.clone(),
            ));
        }
        self.deployment.start(shutdown.clone()).await;
        let watcher = match self.reload_from {
            Some(path) => Some(crate::reload::spawn(
                path,
                self.config.runtime.plugins_dir.clone(),
                self.deployment.clone(),
                shutdown.clone(),
            )?),
            None => None,
        };
        Ok(RunningHost {
            addr,
            admin_addr,
            deployment: self.deployment,
            shutdown,
            servers,
            watcher,
            grace: self.config.server.shutdown_grace,
            relay,
            relaying,
        })
    }
}

fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    limits: ServerLimits,
    shutdown: CancellationToken,
) -> JoinHandle<std::io::Result<()>> {
    tokio::spawn(crate::http::serve(listener, app, limits, shutdown))
}

impl RunningHost {
    /// The dispatcher (plugins, bus) of this host.
    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        self.deployment.dispatcher()
    }

    /// The live deployment, to apply a new config by hand.
    pub fn deployment(&self) -> &Arc<Deployment> {
        &self.deployment
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
    /// period), sends the last trace spans, and returns once everything is down.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let dispatcher = self.deployment.dispatcher().clone();
        let (relay, relaying) = (self.relay.clone(), std::mem::take(&mut self.relaying));
        let stopped = self.drain().await;
        // Messages the last inputs committed go out before the bus does.
        relay.cancel();
        let finished = futures::future::join_all(relaying);
        let _ = tokio::time::timeout(RELAY_FLUSH, finished).await;
        // Spans of the inputs that finished while draining are still in the batch.
        dispatcher.telemetry().shutdown().await;
        stopped
    }

    async fn drain(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        // Inputs still waiting for a slot are not started; running ones may finish.
        self.deployment.dispatcher().close();
        tracing::info!(grace = ?self.grace, "shutting down: draining in-flight inputs");
        let drain = async {
            if let Some(watcher) = self.watcher {
                let _ = watcher.await;
            }
            self.deployment.drain().await;
            for server in self.servers {
                server.await??;
            }
            Ok::<_, anyhow::Error>(())
        };
        match tokio::time::timeout(self.grace, drain).await {
            Ok(result) => result.context("http server")?,
            Err(_) => bail!(
                "in-flight work did not finish within the grace period of {:?}",
                self.grace
            ),
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// The runtime's settings from `config`; `max_message_bytes` comes from the bus.
pub fn runtime_settings(config: &Config, max_message_bytes: Option<usize>) -> RuntimeSettings {
    RuntimeSettings {
        max_memory_bytes: (config.runtime.max_memory_mib as usize) << 20,
        max_instances: config.runtime.max_concurrency,
        cache_dir: config.runtime.cache_dir.clone(),
        max_message_bytes,
        guest_threads: config.runtime.guest_threads.map(|n| n as usize),
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
            retention: t.retention,
            // A dead-letter topic is read by the redrive of each subscription that writes to
            // it: the embedded bus keeps the letters for it until they are redriven.
            groups: (config.subscriptions.iter())
                .filter(|s| s.topic == t.name)
                .map(|s| s.group.clone())
                .chain(
                    (config.subscriptions.iter())
                        .filter(|s| s.dead_letter == t.name)
                        .map(|s| repair::redrive_group(&s.group)),
                )
                .collect(),
        })
        .collect()
}

/// What the host knows of a plugin from its config and its component's `bytes`.
pub fn plugin_info(plugin: &PluginConfig, bytes: &[u8]) -> PluginInfo {
    PluginInfo {
        name: plugin.name.clone(),
        version: version_of(bytes),
        source: plugin.path.clone(),
        publish: plugin.publish.iter().cloned().collect(),
        config: plugin.config.clone(),
        memory_bytes: (plugin.limits.memory_mib as usize) << 20,
        timeout: plugin.limits.timeout,
        budget: plugin.limits.budget,
        concurrency: plugin.limits.concurrency as usize,
        cloudevents: plugin.cloudevents.clone(),
        reuse: plugin.reuse_inputs,
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
        let (runtime, wanted) = (runtime.clone(), plugin.clone());
        let component = tokio::task::spawn_blocking(move || {
            let bytes = std::fs::read(&wanted.path).map_err(|e| unreadable(&wanted.path, e))?;
            runtime.load(plugin_info(&wanted, &bytes), &bytes)
        })
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
    check_wiring(config, &loaded)?;
    Ok(loaded)
}

/// Every route's plugin must export the HTTP handler; every subscription's the message handler.
pub fn check_wiring(config: &Config, loaded: &[LoadedPlugin]) -> anyhow::Result<()> {
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
