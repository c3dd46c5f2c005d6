//! The `eventhost` command.
//!
//! Run with: `cargo run -- run examples/hello/eventhost.toml`

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use eventhost::app::{Host, RunningHost, fleet, load_plugins, tail};
use eventhost::bus::{Bus as _, KafkaBus, KafkaSettings, TailFrom};
use eventhost::config::{Allowed, BusConfig, Config, StateConfig};
use eventhost::dispatch::Dispatcher;
use eventhost::runtime::Runtime;
use eventhost::state::EmbeddedStore;
use tokio_util::sync::CancellationToken;

/// Every request allocates on several threads (the HTTP workers, the guests' threads); glibc's
/// allocator spent a fifth of a loaded host's CPU in its arena locks and consolidation.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for an invalid configuration (EX_USAGE in sysexits.h).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    version,
    about = "Runs event-driven business logic as sandboxed WebAssembly components"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines for people (`human`) or one JSON object per line (`json`), on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "EVENTHOST_LOG_FORMAT")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the host described by CONFIG until SIGINT or SIGTERM.
    Run {
        /// The eventhost.toml file.
        config: PathBuf,
        /// Listen on this address instead of `server.listen` (port 0 picks a free port).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Keep state in this file (the embedded store) instead of what `[state]` says.
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// Validates CONFIG and the plugins it names; exits 0 when valid, 64 when not.
    Check {
        /// The eventhost.toml file.
        config: PathBuf,
    },
    /// Prints the messages of TOPIC as they come: key, the host's headers and the value.
    /// Reads Kafka directly; on the embedded bus, asks the host running with CONFIG.
    Tail {
        /// The topic.
        topic: String,
        /// The eventhost.toml file: which bus, and where the host is.
        #[arg(long, default_value = "eventhost.toml")]
        config: PathBuf,
        /// Start at the earliest kept record instead of the end.
        #[arg(long, conflicts_with_all = ["from", "offset"])]
        from_beginning: bool,
        /// Start at the first record published at or after TIME (RFC 3339, or ago: `10m`).
        #[arg(long, conflicts_with = "offset")]
        from: Option<String>,
        /// Start at this offset in every partition.
        #[arg(long)]
        offset: Option<i64>,
        /// Stop after this many records.
        #[arg(long)]
        count: Option<usize>,
    },
    /// Deploys a plugin's component to every host of a fleet sharing CONFIG's PostgreSQL
    /// store: each one swaps it in within about a second, and hosts started later load it.
    Deploy {
        /// The eventhost.toml file of the fleet (`[state] kind = "postgres"`).
        config: PathBuf,
        /// The component (.wasm).
        component: PathBuf,
        /// The plugin it is; default the file's name without `.wasm`.
        #[arg(long)]
        name: Option<String>,
    },
    /// Lists the plugins of the host running with CONFIG (from its admin routes); with a
    /// PostgreSQL store, the version each host of the fleet serves.
    Plugins {
        /// The eventhost.toml file of the running host.
        config: PathBuf,
        /// Ask this address instead of the one in CONFIG, e.g. 127.0.0.1:8080.
        #[arg(long)]
        addr: Option<std::net::SocketAddr>,
    },
    /// Pauses SUBSCRIPTION on the host running with CONFIG: its in-flight records finish, the
    /// next ones wait (uncommitted) until `resume`. SUBSCRIPTION is its group, or GROUP/TOPIC.
    Pause {
        /// The subscription: its consumer group, or GROUP/TOPIC.
        subscription: String,
        /// The eventhost.toml file of the running host.
        #[arg(long, default_value = "eventhost.toml")]
        config: PathBuf,
    },
    /// Resumes a paused SUBSCRIPTION from its committed offsets.
    Resume {
        /// The subscription: its consumer group, or GROUP/TOPIC.
        subscription: String,
        /// The eventhost.toml file of the running host.
        #[arg(long, default_value = "eventhost.toml")]
        config: PathBuf,
    },
    /// Rewinds SUBSCRIPTION's consumer group to a time or an offset on every partition: the
    /// host stops the subscription, moves its offsets and starts it again.
    #[command(group(clap::ArgGroup::new("start").required(true)))]
    Replay {
        /// The subscription: its consumer group, or GROUP/TOPIC.
        subscription: String,
        /// The eventhost.toml file of the running host.
        #[arg(long, default_value = "eventhost.toml")]
        config: PathBuf,
        /// From the first record published at or after TIME (RFC 3339, or ago: `10m`).
        #[arg(long, group = "start")]
        from: Option<String>,
        /// From this offset in every partition.
        #[arg(long, group = "start")]
        offset: Option<i64>,
    },
    /// Dead letters.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Runs contract cases (TOML files, or folders of them) against PLUGIN through the host's
    /// runtime; prints a diff for each failed case and exits 0 only when every case passes.
    Test {
        /// The plugin component (.wasm).
        plugin: PathBuf,
        /// Case files or folders.
        #[arg(required = true)]
        cases: Vec<PathBuf>,
    },
    /// Creates the folder NAME with a sample plugin in LANG that builds with `bash build.sh` and
    /// passes its contract cases (`eventhost test NAME.wasm cases.toml`).
    New {
        /// The plugin's language.
        #[arg(long, value_enum)]
        lang: eventhost::scaffold::Language,
        /// The plugin's name, also its folder's.
        name: String,
        /// Where to create the folder.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Sends SUBSCRIPTION's dead letters back to its topic (original key, value and headers,
    /// plus eventhost-redrive-count), up to the end of the dead-letter topic as it is now.
    /// Each letter is sent once: a second redrive goes on where the first stopped.
    Redrive {
        /// The subscription: its consumer group, or GROUP/TOPIC.
        subscription: String,
        /// Only dead letters of this kind (eventhost-dlq-kind: timeout, trap, invalid, ...);
        /// the others are passed over for good.
        #[arg(long)]
        kind: Option<String>,
        /// The eventhost.toml file of the running host.
        #[arg(long, default_value = "eventhost.toml")]
        config: PathBuf,
    },
}

/// Polls between a worker's checks for I/O and timers.
const EVENT_INTERVAL: u32 = 4;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The kit's report is the output of `test`; the plugins' own log lines would bury it.
    let default_filter = match cli.command {
        Command::Test { .. } => "warn",
        _ => "info,wasmtime=warn,cranelift=warn",
    };
    init_logs(cli.log_format, default_filter);
    // Workers look for I/O and timers every few polls instead of tokio's default 61: a poll of
    // a busy guest lasts up to an epoch tick, and deadlines and new connections must not wait
    // for dozens of them.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .event_interval(EVENT_INTERVAL)
        .build();
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Run {
                config,
                listen,
                state,
            } => run(config, listen, state).await,
            Command::Check { config } => check(config).await,
            Command::Plugins { config, addr } => plugins(config, addr).await,
            Command::Deploy {
                config,
                component,
                name,
            } => deploy(config, component, name).await,
            Command::Tail {
                topic,
                config,
                from_beginning,
                from,
                offset,
                count,
            } => {
                let from = match tail::start(from_beginning, from.as_deref(), offset) {
                    Ok(from) => from,
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        return ExitCode::from(EXIT_CONFIG);
                    }
                };
                tail_topic(config, topic, from, count).await
            }
            Command::Pause {
                subscription,
                config,
            } => repair(config, "pause", vec![("subscription", subscription)]).await,
            Command::Resume {
                subscription,
                config,
            } => repair(config, "resume", vec![("subscription", subscription)]).await,
            Command::Replay {
                subscription,
                config,
                from,
                offset,
            } => {
                let from = match tail::start(false, from.as_deref(), offset) {
                    Ok(from) => tail::query_value(from),
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        return ExitCode::from(EXIT_CONFIG);
                    }
                };
                let query = vec![("subscription", subscription), ("from", from)];
                repair(config, "replay", query).await
            }
            Command::Dlq {
                command:
                    DlqCommand::Redrive {
                        subscription,
                        kind,
                        config,
                    },
            } => {
                let mut query = vec![("subscription", subscription)];
                query.extend(kind.map(|kind| ("kind", kind)));
                repair(config, "redrive", query).await
            }
            Command::Test { plugin, cases } => test(plugin, cases).await,
            Command::New { lang, name, dir } => new(lang, &name, &dir),
        }
    })
}

fn load_config(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load_deployment(path).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

async fn check(path: PathBuf) -> ExitCode {
    let config = match load_config(&path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    // Plugins are compiled and checked exactly as `run` would, against a throwaway store.
    let scratch = match tempfile_store() {
        Ok(store) => store,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    // No bus here: nothing is published, so no message size limit applies.
    let settings = eventhost::app::runtime_settings(&config, None);
    let loaded = match Runtime::new(settings, scratch.1) {
        Ok(runtime) => load_plugins(&Arc::new(runtime), &config).await,
        Err(e) => Err(e),
    };
    match loaded {
        Ok(plugins) => {
            println!("{}: valid", path.display());
            for plugin in plugins {
                let exports = plugin.exports();
                println!(
                    "  plugin {} {} (message-handler: {}, http-handler: {})",
                    plugin.info.name, plugin.info.version, exports.message, exports.http
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn tempfile_store() -> anyhow::Result<(PathBuf, Arc<dyn eventhost::state::StateStore>)> {
    let path = std::env::temp_dir().join(format!("eventhost-check-{}.redb", std::process::id()));
    let store = EmbeddedStore::open(&path)?;
    let _ = std::fs::remove_file(&path);
    Ok((path, Arc::new(store)))
}

async fn run(
    path: PathBuf,
    listen: Option<std::net::SocketAddr>,
    state: Option<PathBuf>,
) -> ExitCode {
    let mut config = match load_config(&path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    if let Some(listen) = listen {
        config.server.listen = listen;
    }
    if let Some(state) = state {
        config.state = StateConfig::Embedded { path: state };
    }
    let host = match Host::build(config).await {
        Ok(host) => host.reload_from(path.clone()),
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let config = host.config().clone();
    let running = match host.start().await {
        Ok(running) => running,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    // Before the address is announced: whoever reads it may stop the host at once.
    spawn_signal_handler(running.shutdown_token());
    print!("{}", summary(&config, running.dispatcher(), running.addr));
    finish(running).await
}

async fn finish(running: RunningHost) -> ExitCode {
    match running.wait().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn plugins(path: PathBuf, addr: Option<std::net::SocketAddr>) -> ExitCode {
    let config = match load_config(&path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    if let (StateConfig::Postgres { url }, None) = (&config.state, addr) {
        return match fleet_plugins(url).await {
            Ok(table) => {
                print!("{table}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let addr = addr.unwrap_or(config.server.admin_listen.unwrap_or(config.server.listen));
    let token =
        (config.server.admin_token).or_else(|| std::env::var(eventhost::app::ADMIN_TOKEN_ENV).ok());
    match eventhost::app::admin_client::list(addr, token.as_deref()).await {
        Ok(plugins) => {
            print!("{}", eventhost::app::admin_client::table(&plugins));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot ask the host at {addr}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The deployed version of every plugin and the one each host of the fleet serves.
async fn fleet_plugins(url: &str) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let store = open_postgres(url)?;
    let deployed = fleet::deployed(&store).await?;
    let hosts = fleet::hosts(&store).await?;
    let mut names: std::collections::BTreeSet<&String> = deployed.keys().collect();
    names.extend(hosts.iter().flat_map(|h| h.plugins.keys()));
    let mut out = String::new();
    let _ = writeln!(out, "{:<24} {:<14} HOSTS", "PLUGIN", "DEPLOYED");
    for name in names {
        let serving: Vec<String> = (hosts.iter())
            .map(|host| {
                let version = host.plugins.get(name).map_or("-", String::as_str);
                format!("{}={version}", host.id)
            })
            .collect();
        let wanted = deployed.get(name).map_or("-", String::as_str);
        let _ = writeln!(out, "{name:<24} {wanted:<14} {}", serving.join(" "));
    }
    if hosts.is_empty() {
        let _ = writeln!(out, "(no host has reported in the last seconds)");
    }
    Ok(out)
}

fn open_postgres(url: &str) -> anyhow::Result<eventhost::state::PostgresStore> {
    // Connecting blocks: off the async workers.
    tokio::task::block_in_place(|| eventhost::state::PostgresStore::open(url))
        .map_err(anyhow::Error::from)
}

/// Checks the component at `file` as plugin `name` of the config at `path` and stores it as
/// the fleet's version of that plugin.
async fn deploy(path: PathBuf, file: PathBuf, name: Option<String>) -> ExitCode {
    let config = match load_config(&path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    match deploy_checked(&config, &file, name).await {
        Ok((name, version)) => {
            println!("deployed {name} {version}: every host of the fleet swaps to it");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn deploy_checked(
    config: &Config,
    file: &std::path::Path,
    name: Option<String>,
) -> anyhow::Result<(String, String)> {
    let StateConfig::Postgres { url } = &config.state else {
        anyhow::bail!(
            "{}: deploy needs a fleet's shared store ([state] kind = \"postgres\"); a single \
             host deploys a plugin when its component is copied into its plugins folder",
            config.file.display()
        );
    };
    let name = match name {
        Some(name) => name,
        None => (file.file_stem())
            .map(|stem| stem.to_string_lossy().into_owned())
            .ok_or_else(|| anyhow::anyhow!("{}: no file name; pass --name", file.display()))?,
    };
    if !config.plugins.contains_key(&name) {
        anyhow::bail!(
            "{}: there is no plugin {name:?}; add [plugin.{name}] with its wiring first, or pass \
             --name",
            config.file.display()
        );
    }
    // The component is checked as the hosts will load it: compiled, with the handlers its
    // routes and subscriptions need.
    let mut checked = config.clone();
    checked.plugins.retain(|n, _| *n == name);
    if let Some(plugin) = checked.plugins.get_mut(&name) {
        plugin.path = file.to_path_buf();
    }
    let (_path, scratch) = tempfile_store()?;
    let runtime = Runtime::new(eventhost::app::runtime_settings(config, None), scratch)?;
    load_plugins(&Arc::new(runtime), &checked).await?;
    let bytes = std::fs::read(file).map_err(|e| eventhost::runtime::unreadable(file, e))?;
    let store = open_postgres(url)?;
    let version = fleet::deploy(&store, &name, bytes).await?;
    Ok((name, version))
}

/// Asks the host running with the config at `path` to do a repair, and prints its report.
async fn repair(path: PathBuf, action: &str, query: Vec<(&str, String)>) -> ExitCode {
    let config = match load_config(&path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let addr = config.server.admin_listen.unwrap_or(config.server.listen);
    let token =
        (config.server.admin_token).or_else(|| std::env::var(eventhost::app::ADMIN_TOKEN_ENV).ok());
    let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
    match eventhost::app::repair::call(addr, token.as_deref(), action, &query).await {
        Ok(report) => {
            println!("{}", report.message);
            for letter in &report.skipped {
                println!("  skipped {letter}: it holds only a reference to the original");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {action} through the host at {addr}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn tail_topic(
    path: PathBuf,
    topic: String,
    from: TailFrom,
    count: Option<usize>,
) -> ExitCode {
    let config = match load_config(&path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let mut left = count.unwrap_or(usize::MAX);
    let mut print = |record: tail::TailedRecord| {
        println!("{}", tail::render(&record));
        left -= 1;
        left > 0
    };
    let result = match &config.bus {
        BusConfig::Kafka(kafka) => {
            let settings = KafkaSettings {
                bootstrap: kafka.bootstrap.clone(),
                client_id: kafka.client_id.clone(),
                instance: None,
                options: kafka.options.clone(),
            };
            match KafkaBus::new(settings) {
                Ok(bus) => match bus.tail(&topic, from).await {
                    Ok(mut records) => {
                        while let Some(record) = records.recv().await {
                            if !print(tail::TailedRecord::from(&record)) {
                                break;
                            }
                        }
                        Ok(())
                    }
                    Err(e) => Err(anyhow::anyhow!(e)),
                },
                Err(e) => Err(anyhow::anyhow!(e)),
            }
        }
        BusConfig::Embedded => {
            let addr = config.server.admin_listen.unwrap_or(config.server.listen);
            let token = (config.server.admin_token)
                .or_else(|| std::env::var(eventhost::app::ADMIN_TOKEN_ENV).ok());
            tail::follow(addr, token.as_deref(), &topic, from, print)
                .await
                .with_context(|| format!("tailing {topic} through the host at {addr}"))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn test(plugin: PathBuf, cases: Vec<PathBuf>) -> ExitCode {
    match eventhost::contract::run(&plugin, &cases, &mut std::io::stdout()).await {
        Ok(summary) if summary.failed == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn new(lang: eventhost::scaffold::Language, name: &str, parent: &std::path::Path) -> ExitCode {
    match eventhost::scaffold::create(lang, name, parent) {
        Ok(dir) => {
            let dir = dir.display();
            println!("created {dir}: build with `bash {dir}/build.sh`,");
            println!("test with `eventhost test {dir}/{name}.wasm {dir}/cases.toml`");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// Cancels `shutdown` on the first SIGINT or SIGTERM. Both are registered before this returns,
/// so a signal sent right after start-up stops the host cleanly instead of killing it.
fn spawn_signal_handler(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (int, term) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(int), Ok(term)) => (int, term),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!("cannot listen for SIGINT and SIGTERM: {e}");
            return;
        }
    };
    let (mut int, mut term) = (int, term);
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => tracing::info!("SIGINT received"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
        }
        shutdown.cancel();
    });
}

/// The start-up summary: the address (first, on a line of its own, for scripts and tests to
/// read), bus, state, plugins with versions and limits, subscriptions, routes, and a command
/// to try.
fn summary(config: &Config, dispatcher: &Dispatcher, addr: std::net::SocketAddr) -> String {
    use std::fmt::Write as _;
    let registry = dispatcher.registry();
    let mut out = String::new();
    let _ = writeln!(out, "eventhost listening on http://{addr}");
    let bus = match &config.bus {
        BusConfig::Embedded => "embedded (in-process, no broker)".to_string(),
        BusConfig::Kafka(kafka) => format!("kafka at {}", kafka.bootstrap),
    };
    let _ = writeln!(out, "  bus:    {bus}");
    let state = match &config.state {
        StateConfig::Embedded { path } => path.display().to_string(),
        StateConfig::Postgres { url } => format!("postgres at {}", eventhost::state::redacted(url)),
    };
    let _ = writeln!(out, "  state:  {state}");
    if let Some(dir) = &config.server.static_dir {
        let _ = writeln!(out, "  static: {}", dir.display());
    }
    if let Some(cors) = &config.server.cors {
        let origins = match &cors.origins {
            Allowed::Any => "any origin".to_string(),
            Allowed::Only(list) => list.join(", "),
        };
        let _ = writeln!(out, "  cors:   {origins}");
    }
    if let Some(url) = dispatcher.telemetry().traces_url() {
        let service = &config.telemetry.service_name;
        let _ = writeln!(out, "  traces: OTLP to {url} as service {service}");
    }
    let _ = writeln!(out, "  plugins:");
    for (plugin, _) in registry.all() {
        let info = &plugin.info;
        let _ = writeln!(
            out,
            "    {:<12} {}  memory {} MiB, timeout {} ms  ({}, {})",
            info.name,
            info.version,
            info.memory_bytes >> 20,
            info.timeout.as_millis(),
            info.source.display(),
            plugin.compiled
        );
    }
    if !config.subscriptions.is_empty() {
        let _ = writeln!(out, "  subscriptions:");
        for sub in &config.subscriptions {
            let _ = writeln!(
                out,
                "    {:<12} -> {:<12} group {}, {} attempts, dead letters to {}",
                sub.topic, sub.plugin, sub.group, sub.retry.attempts, sub.dead_letter
            );
        }
    }
    if !config.routes.is_empty() {
        let _ = writeln!(out, "  routes:");
        for route in &config.routes {
            let _ = writeln!(
                out,
                "    {:<7}{:<40} -> {}",
                route.method, route.path, route.plugin
            );
        }
    }
    // A curl command for the first route that takes no parameters, to try the host at once.
    let plain = (config.routes.iter()).find(|r| r.method == "GET" && !r.path.contains('{'));
    if let Some(route) = plain {
        let _ = writeln!(out, "  try:    curl http://{addr}{}", route.path);
    }
    out
}

/// Logs go to stderr, filtered by `RUST_LOG` (default: `default_filter`).
fn init_logs(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| default_filter.into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}
