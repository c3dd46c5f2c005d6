//! The validated configuration the rest of the host works with.
//!
//! Every reference has been checked (a route's plugin exists, a subscription's topic is
//! declared, ...), every default filled in, and every relative path resolved against the
//! directory of the file that declared it.

use crate::runtime::Budget;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use crate::bus::Retention;

/// A whole deployment: what the host listens on, which bus and store it uses, and which
/// plugins it runs bound to which topics and routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file the configuration was loaded from, as given to [`Config::load`].
    pub file: PathBuf,
    /// `[server]`: the HTTP side.
    pub server: ServerConfig,
    /// `[bus]`: where topics live.
    pub bus: BusConfig,
    /// `[state]`: where plugin state is stored.
    pub state: StateConfig,
    /// `[runtime]`: the WebAssembly engine.
    pub runtime: RuntimeConfig,
    /// `[telemetry]`: where traces are exported.
    pub telemetry: TelemetryConfig,
    /// `[[topic]]` tables by name, plus the default dead-letter topics of subscriptions.
    pub topics: BTreeMap<String, TopicConfig>,
    /// `[plugin.<name>]` tables by name.
    pub plugins: BTreeMap<String, PluginConfig>,
    /// `[[subscription]]` tables in file order.
    pub subscriptions: Vec<SubscriptionConfig>,
    /// `[[route]]` tables in file order.
    pub routes: Vec<RouteConfig>,
}

/// `[server]`: the HTTP listener.
///
/// ```toml
/// [server]
/// listen = "0.0.0.0:8080"
/// admin_listen = "127.0.0.1:9090"
/// admin_token = "a long random string"
/// static_dir = "web"
/// body_limit_kib = 1024
/// shutdown_grace_ms = 10000
/// header_timeout_ms = 10000
/// body_timeout_ms = 30000
/// max_connections = 1024
///
/// [server.cors]
/// origins = ["http://localhost:4200"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Address of the HTTP listener (`listen`, an `ip:port`). Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Separate address for the admin routes (`admin_listen`). Default `None`: they are
    /// served on `listen`. Either way they answer only loopback callers, or callers that send
    /// `admin_token` as a bearer token.
    pub admin_listen: Option<SocketAddr>,
    /// Bearer token that opens the admin routes to callers beyond loopback (`admin_token`;
    /// the environment variable `EVENTHOST_ADMIN_TOKEN` is used when this is not set).
    /// Default `None`: loopback callers only.
    pub admin_token: Option<String>,
    /// Directory of static files served at `/` (`static_dir`), resolved against the config
    /// file's directory. Default `None`: no static files.
    pub static_dir: Option<PathBuf>,
    /// Largest accepted request body in bytes (`body_limit_kib`, in KiB). Default 1 MiB.
    pub body_limit_bytes: usize,
    /// How long in-flight requests and events may take to finish on shutdown
    /// (`shutdown_grace_ms`). Default 10 s.
    pub shutdown_grace: Duration,
    /// Time for a request's headers to arrive, from when the connection is ready for them;
    /// also how long an idle keep-alive connection stays open (`header_timeout_ms`, at
    /// least 1). Default 10 s.
    pub header_timeout: Duration,
    /// Time for a request's body to arrive (`body_timeout_ms`, at least 1); a slower one is
    /// answered with 408. Default 30 s.
    pub body_timeout: Duration,
    /// Connections open at once (`max_connections`, at least 1); more wait in the listen
    /// backlog. Default 1024.
    pub max_connections: u32,
    /// Cross-origin requests from browsers (`[server.cors]`). Default `None`: the host sends
    /// no CORS headers, so browsers only let pages of its own origin call it.
    pub cors: Option<CorsConfig>,
}

impl ServerConfig {
    /// Default of `listen`.
    pub const DEFAULT_LISTEN: SocketAddr =
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));
    /// Default of `body_limit_kib`.
    pub const DEFAULT_BODY_LIMIT_KIB: u64 = 1024;
    /// Default of `shutdown_grace_ms`.
    pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
    /// Default of `header_timeout_ms`.
    pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default of `body_timeout_ms`.
    pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default of `max_connections`.
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 1024;
}

/// `[server.cors]`: which other origins' pages may call the host from a browser.
///
/// The host answers preflight requests (`OPTIONS` with `Access-Control-Request-Method`) for
/// its routes itself, and adds `Access-Control-Allow-Origin` to every response to an allowed
/// origin. A request from any other origin is served as usual but gets no CORS headers, so
/// the browser keeps its answer from the page.
///
/// ```toml
/// [server.cors]
/// origins = ["http://localhost:4200", "https://shop.example.com"]   # or "*" for any
/// methods = ["GET", "POST", "DELETE"]
/// headers = ["content-type", "authorization"]                      # or "*" for any
/// max_age_secs = 600
/// credentials = false
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsConfig {
    /// Origins whose pages may call the host (`origins`, required): `"*"` for any, or a list
    /// of `scheme://host[:port]`, lower-cased.
    pub origins: Allowed,
    /// Methods a preflight allows (`methods`), upper-cased. Default
    /// [`CorsConfig::DEFAULT_METHODS`].
    pub methods: Vec<String>,
    /// Request headers a preflight allows (`headers`), lower-cased: `"*"` allows whatever the
    /// preflight asks for. Default any.
    pub headers: Allowed,
    /// How long a browser may cache a preflight's answer (`max_age_secs`), at most a day.
    /// Default `None`: not sent, browsers then cache it for a few seconds.
    pub max_age: Option<Duration>,
    /// Whether pages may send cookies and read answers to such requests (`credentials`).
    /// Needs a list of origins. Default `false`.
    pub credentials: bool,
}

impl CorsConfig {
    /// Default of `methods`.
    pub const DEFAULT_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"];
    /// Largest `max_age_secs`; browsers cap it at this or less.
    pub const MAX_AGE_LIMIT: Duration = Duration::from_secs(86_400);
}

/// Either anything, or only the listed values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    /// `"*"`
    Any,
    /// The listed values.
    Only(Vec<String>),
}

/// `[bus]`: where topics live. Without a `[bus]` table, or with `kind = "embedded"`, the
/// in-process log is used.
///
/// ```toml
/// [bus]
/// kind = "kafka"
/// bootstrap = "127.0.0.1:9092"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BusConfig {
    /// `kind = "embedded"`: an in-process partitioned log; takes no other keys.
    #[default]
    Embedded,
    /// `kind = "kafka"`: an Apache Kafka cluster.
    Kafka(KafkaConfig),
}

/// The keys of `[bus]` with `kind = "kafka"`.
///
/// ```toml
/// [bus]
/// kind = "kafka"
/// bootstrap = "broker-1:9092,broker-2:9092"
/// client_id = "eventhost"
/// [bus.options]
/// "linger.ms" = 5
/// "compression.type" = "lz4"
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list of brokers (`bootstrap`, librdkafka's
    /// `bootstrap.servers`). Required.
    pub bootstrap: String,
    /// librdkafka's `client.id` (`client_id`). Default `"eventhost"`.
    pub client_id: String,
    /// Raw librdkafka properties from `[bus.options]`, passed through unchanged. Values may be
    /// TOML strings, integers or booleans and are stored as strings. Properties the host
    /// manages itself ([`KafkaConfig::RESERVED_OPTIONS`]) are rejected. Default empty.
    pub options: BTreeMap<String, String>,
    /// `exactly_once`: each consumed record's messages, state writes and offset take effect
    /// together (a transactional outbox and Kafka transactions). Default `false`
    /// (at-least-once).
    pub exactly_once: bool,
}

impl KafkaConfig {
    /// Default of `client_id`.
    pub const DEFAULT_CLIENT_ID: &str = "eventhost";
    /// librdkafka properties that may not appear in `[bus.options]`, with what to do instead:
    /// they are set from other keys, or fixed by the host to keep its delivery guarantees
    /// (idempotent producer with `acks=all`, offsets stored only after effects).
    pub const RESERVED_OPTIONS: &[(&str, &str)] = &[
        ("bootstrap.servers", "set bus.bootstrap instead"),
        ("metadata.broker.list", "set bus.bootstrap instead"),
        ("client.id", "set bus.client_id instead"),
        ("group.id", "set group on the subscription instead"),
        (
            "enable.auto.commit",
            "the host commits offsets after effects",
        ),
        (
            "enable.auto.offset.store",
            "the host stores offsets after effects",
        ),
        (
            "enable.idempotence",
            "the host always uses an idempotent producer",
        ),
        ("acks", "the host always uses acks=all"),
        ("request.required.acks", "the host always uses acks=all"),
        (
            "transactional.id",
            "set bus.exactly_once = true; the host names its transactions",
        ),
    ];
}

/// `[state]`: where plugin state is kept.
///
/// ```toml
/// [state]
/// path = "data/state.redb"        # kind = "embedded", the default
///
/// [state]
/// kind = "postgres"               # shared by several hosts
/// url = "postgres://eventhost@127.0.0.1:5433/eventhost"
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateConfig {
    /// One local file (`path`), resolved against the config file's directory. Default
    /// `data/state.redb`.
    Embedded {
        /// The store's file.
        path: PathBuf,
    },
    /// A PostgreSQL database (`url`) that several hosts share.
    Postgres {
        /// The connection URL.
        url: String,
    },
}

impl StateConfig {
    /// Default of `path`, before resolution.
    pub const DEFAULT_PATH: &str = "data/state.redb";
}

/// `[runtime]`: the WebAssembly engine.
///
/// ```toml
/// [runtime]
/// plugins_dir = "plugins"
/// max_memory_mib = 512
/// max_concurrency = 256
/// cache_dir = "data/cache"
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Where `<name>.wasm` files live and are watched for changes (`plugins_dir`), resolved
    /// against the config file's directory. Default `plugins`.
    pub plugins_dir: PathBuf,
    /// Ceiling for any plugin's `limits.memory_mib` (`max_memory_mib`). Default 512.
    pub max_memory_mib: u64,
    /// Most plugin instances alive at once, across all plugins (`max_concurrency`).
    /// Default 256.
    pub max_concurrency: u32,
    /// Directory for compiled-artifact caching (`cache_dir`), resolved against the config
    /// file's directory. Default `None`: no cache.
    pub cache_dir: Option<PathBuf>,
    /// How many guests run at once (`guest_threads`), at least 1. Default `None`: one fewer
    /// than the machine's cores (at least 1), which leaves a core for the host's own work
    /// (connections, the bus, commits) however busy the guests are; as many as the cores
    /// trades that for guest throughput.
    pub guest_threads: Option<u32>,
}

impl RuntimeConfig {
    /// Default of `plugins_dir`, before resolution.
    pub const DEFAULT_PLUGINS_DIR: &str = "plugins";
    /// Default of `max_memory_mib`.
    pub const DEFAULT_MAX_MEMORY_MIB: u64 = 512;
    /// Default of `max_concurrency`.
    pub const DEFAULT_MAX_CONCURRENCY: u32 = 256;
}

/// `[telemetry]`: OpenTelemetry trace export.
///
/// Every input (a consumed record or an HTTP request) is one span of the trace its
/// `traceparent` names. Without an endpoint, the trace id is only in the log lines.
///
/// ```toml
/// [telemetry]
/// otlp_endpoint = "http://127.0.0.1:4318"
/// service_name = "coolstore"
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// Base URL of an OTLP/HTTP collector (`otlp_endpoint`): `http://host:port[/path]`,
    /// spans are posted to `<it>/v1/traces` as protobuf. Default `None`: the environment
    /// variable [`TelemetryConfig::ENDPOINT_ENV`] if set, else no export.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of the exported spans (`service_name`). Default `eventhost`.
    pub service_name: String,
}

impl TelemetryConfig {
    /// Default of `service_name`.
    pub const DEFAULT_SERVICE_NAME: &str = "eventhost";
    /// OpenTelemetry's standard variable for the collector, used when `otlp_endpoint` is not
    /// set, so a host started by tooling that sets it exports without a config change.
    pub const ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
    /// Where the spans of a collector at `endpoint` (a checked base URL) are posted.
    pub const TRACES_PATH: &str = "/v1/traces";

    /// The base URL `text` with no trailing slash, or why it is not one this host can export
    /// to: plain `http://` with a host (TLS goes through a collector beside the host), no
    /// query, and not already the traces path.
    pub fn check_endpoint(text: &str) -> Result<String, String> {
        let expected = "expected the base URL of an OTLP/HTTP collector such as \
                        \"http://127.0.0.1:4318\"";
        let uri: http::Uri = text
            .parse()
            .map_err(|_| format!("invalid URL {text:?}, {expected}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(format!(
                    "{text:?} uses https, expected http: spans are sent unencrypted, to a \
                     collector on the same host or network that forwards them over TLS"
                ));
            }
            _ => return Err(format!("invalid URL {text:?}, {expected}")),
        }
        if uri.host().is_none_or(str::is_empty) || uri.query().is_some() {
            return Err(format!("invalid URL {text:?}, {expected}"));
        }
        let base = text.trim_end_matches('/');
        if base.ends_with(Self::TRACES_PATH) {
            return Err(format!(
                "{text:?} ends in {}, which the host adds itself: {expected}",
                Self::TRACES_PATH
            ));
        }
        Ok(base.to_string())
    }
}

/// `[[topic]]`: a topic the host creates if missing.
///
/// ```toml
/// [[topic]]
/// name = "orders"
/// partitions = 3
/// replication = 1
/// retention = { bytes = 4194304, ms = 21600000 }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    /// The topic's name (`name`, required): 1 to 249 of `a-z A-Z 0-9 . _ -`, not `.` or `..`.
    pub name: String,
    /// Number of partitions (`partitions`), at least 1. Default 3.
    pub partitions: u32,
    /// Replication factor (`replication`), at least 1, or -1 for the broker's default.
    /// Default 1.
    pub replication: i16,
    /// How much each partition keeps (`retention = { bytes, ms }`, Kafka's `retention.bytes`
    /// and `retention.ms`): at most `bytes` per partition, each record for at most `ms`; `-1`
    /// is no limit. A value left out is the bus's default: on the embedded bus 4 MiB and
    /// 6 hours (see [`crate::bus::EmbeddedBus`]); on Kafka the broker's, and values set here
    /// are given to Kafka when the host creates the topic.
    pub retention: Retention,
}

impl TopicConfig {
    /// Default of `partitions`.
    pub const DEFAULT_PARTITIONS: u32 = 3;
    /// Default of `replication`.
    pub const DEFAULT_REPLICATION: i16 = 1;
}

/// `[plugin.<name>]`: a WebAssembly component and what it may do.
///
/// ```toml
/// [plugin.payment]
/// path = "plugins/payment.wasm"
/// publish = ["payments"]
/// config = { processing_delay_ms = 5000 }
/// limits = { memory_mib = 64, timeout_ms = 10000 }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginConfig {
    /// The table's name: `[a-z0-9][a-z0-9_-]*`.
    pub name: String,
    /// The component file (`path`). Relative paths are resolved against the directory of the
    /// file that declares the plugin. Default `<plugins_dir>/<name>.wasm`.
    pub path: PathBuf,
    /// Topics the plugin may send to (`publish`); each is a `[[topic]]`. Default none.
    pub publish: Vec<String>,
    /// Values the plugin reads through the `config` interface (`config`); TOML strings,
    /// integers, floats and booleans, stored as strings (`5000`, `0.5`, `true`).
    /// Default empty.
    pub config: BTreeMap<String, String>,
    /// Resource limits of each instance (`limits`).
    pub limits: Limits,
    /// `cloudevents = { source, type }`: stamp what the plugin produces as CloudEvents, with
    /// these attributes (both optional). Default off.
    pub cloudevents: Option<crate::cloudevents::Producer>,
    /// `instance = "reuse"`: an instance serves up to this many inputs (`reuse_inputs`,
    /// default 1000) before it is replaced, and is replaced at once after a trap or a time
    /// limit; what one input leaves in guest memory is seen by the next. `None`
    /// (`instance = "fresh"`, the default): a fresh instance per input.
    pub reuse_inputs: Option<u32>,
}

impl PluginConfig {
    /// Default of `reuse_inputs`.
    pub const DEFAULT_REUSE_INPUTS: u32 = 1000;
}

/// `limits = { .. }` of a plugin: what one instance may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear-memory ceiling in MiB (`memory_mib`), from 1 to `runtime.max_memory_mib`.
    /// Default 64, or `runtime.max_memory_mib` when that is lower.
    pub memory_mib: u64,
    /// Wall-clock time one input may take (`timeout_ms`), at least 1 ms. Default 5 s.
    pub timeout: Duration,
    /// What one input may stage in host memory, each at least 1: `outbox_messages` (1000),
    /// `outbox_kib` (2048), `state_writes` (1000), `state_write_kib` (2048),
    /// `state_read_kib` (4096), `log_kib` (64), `response_kib` (2048).
    pub budget: Budget,
    /// Most inputs of this plugin running at once (`concurrency`), from 1 to
    /// `runtime.max_concurrency`; HTTP requests beyond it wait briefly, then get 503.
    /// Default 64, or `runtime.max_concurrency` when that is lower.
    pub concurrency: u32,
}

impl Limits {
    /// Default of `memory_mib`.
    pub const DEFAULT_MEMORY_MIB: u64 = 64;
    /// Default of `timeout_ms`.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default of `concurrency`.
    pub const DEFAULT_CONCURRENCY: u32 = 64;
}

/// `[[subscription]]`: a plugin consuming a topic.
///
/// ```toml
/// [[subscription]]
/// topic = "orders"
/// plugin = "payment"
/// group = "payment-service"
/// dead_letter = "orders.dlq"
/// retry = { attempts = 5, backoff_ms = 200, max_backoff_ms = 10000 }
/// concurrency = 64
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionConfig {
    /// The consumed topic (`topic`, required); a `[[topic]]`.
    pub topic: String,
    /// The handling plugin (`plugin`, required); a `[plugin.<name>]`.
    pub plugin: String,
    /// Consumer group (`group`). Default the plugin's name.
    pub group: String,
    /// Where inputs go that fail for good (`dead_letter`). An explicit value must be a
    /// `[[topic]]`; the default `<topic>.dlq` is added to [`Config::topics`] with one
    /// partition (and the consumed topic's replication) unless declared.
    pub dead_letter: String,
    /// How failed inputs are retried (`retry`).
    pub retry: RetryPolicy,
    /// Inputs of one partition that may run at once (`concurrency`), 1 to
    /// [`Self::MAX_CONCURRENCY`]: inputs with different keys run in parallel, inputs with the
    /// same key in offset order. Default 1: inputs run one after another, each starting as soon
    /// as the previous one's effects are staged.
    pub concurrency: u32,
    /// Most inputs of one partition started and not yet committed (`max_pending`), from
    /// `concurrency` to [`Self::MAX_PENDING`]. They are kept in memory until their offset is
    /// committed. Default 256 (or `concurrency` when higher).
    pub max_pending: u32,
}

impl SubscriptionConfig {
    /// Default of `concurrency`.
    pub const DEFAULT_CONCURRENCY: u32 = 1;
    /// Largest `concurrency`.
    pub const MAX_CONCURRENCY: u32 = 1024;
    /// Default of `max_pending`.
    pub const DEFAULT_MAX_PENDING: u32 = 256;
    /// Largest `max_pending`.
    pub const MAX_PENDING: u32 = 16384;
}

/// `retry = { .. }` of a subscription: exponential backoff between tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total tries including the first (`attempts`), at least 1. Default 3.
    pub attempts: u32,
    /// Wait before the second try, doubled after each further one (`backoff_ms`), at least
    /// 10 ms.
    /// Default 100 ms.
    pub backoff: Duration,
    /// Longest wait between tries (`max_backoff_ms`), not below `backoff_ms`. Default 10 s.
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// The smallest `backoff_ms` accepted.
    pub const MIN_BACKOFF_MS: u64 = 10;
    /// Default of `attempts`.
    pub const DEFAULT_ATTEMPTS: u32 = 3;
    /// Default of `backoff_ms`.
    pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(100);
    /// Default of `max_backoff_ms`.
    pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(10);
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: Self::DEFAULT_ATTEMPTS,
            backoff: Self::DEFAULT_BACKOFF,
            max_backoff: Self::DEFAULT_MAX_BACKOFF,
        }
    }
}

/// `[[route]]`: an HTTP route served by a plugin.
///
/// ```toml
/// [[route]]
/// method = "POST"
/// path = "/api/cart/checkout/{cart_id}"
/// plugin = "cart"
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// HTTP method (`method`), upper-cased: `GET`, `POST`, `PUT`, `DELETE`, `PATCH`, `HEAD`
    /// or `OPTIONS`.
    pub method: String,
    /// Path pattern (`path`) in axum syntax: starts with `/`; a segment may be a parameter
    /// `{name}`, and the last one a catch-all `{*name}`. Parameter names are unique.
    pub path: String,
    /// The handling plugin (`plugin`); a `[plugin.<name>]`.
    pub plugin: String,
}

impl RouteConfig {
    /// The accepted values of `method`.
    pub const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];
}
