//! Raw TOML structs → validated [`Config`]: defaults, path resolution, the checks that
//! relate one key to another, and (in [`wiring`]) cross-references between tables.
//!
//! Values are already checked where they stand (see `names`); checks run section by section
//! in the order of [`Config`]'s fields and stop at the first error, which points at the
//! offending value in the file that declared it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_spanned::Spanned;

use super::error::ConfigError;
use super::model::{
    BusConfig, Config, KafkaConfig, RuntimeConfig, ServerConfig, StateConfig, TelemetryConfig,
};
use super::names::NonEmpty;
use super::raw::{
    BusKind, RawBus, RawConfig, RawRuntime, RawServer, RawState, RawTelemetry, Scalar, StateKind,
};
use super::source::{Source, base_dir};
use super::wiring;

/// Validates `raw` (the main file, with any drop-in tables already merged into it) as the
/// configuration loaded from `file`.
pub(crate) fn validate(raw: RawConfig, file: &Path) -> Result<Config, ConfigError> {
    let main = &*raw.source;
    let dir = base_dir(file);
    let server = server(raw.server, main, dir)?;
    let bus = bus(raw.bus, main)?;
    let state = state(raw.state, main, dir)?;
    let runtime = runtime(raw.runtime, dir);
    let telemetry = telemetry(raw.telemetry);
    let mut topics = wiring::topics(&raw.topic)?;
    let plugins = wiring::plugins(&raw.plugin, &runtime, &topics)?;
    let subscriptions = wiring::subscriptions(&raw.subscription, &plugins, &mut topics)?;
    let routes = wiring::routes(&raw.route, &plugins)?;
    Ok(Config {
        file: file.to_owned(),
        server,
        bus,
        state,
        runtime,
        telemetry,
        topics,
        plugins,
        subscriptions,
        routes,
    })
}

fn server(raw: RawServer, src: &Source, dir: &Path) -> Result<ServerConfig, ConfigError> {
    let listen = raw.listen.map_or(ServerConfig::DEFAULT_LISTEN, |a| a.0);
    if let Some(admin) = raw
        .admin_listen
        .as_ref()
        .filter(|a| a.get_ref().0 == listen)
    {
        return Err(src.error(
            admin.span(),
            "admin_listen is the same address as listen, expected another address \
             (or no admin_listen to serve admin routes on listen)",
        ));
    }
    let kib = raw
        .body_limit_kib
        .map_or(ServerConfig::DEFAULT_BODY_LIMIT_KIB, u64::from);
    let millis = |ms: Option<std::num::NonZeroU64>, default| {
        ms.map_or(default, |ms| Duration::from_millis(ms.get()))
    };
    Ok(ServerConfig {
        listen,
        admin_listen: raw.admin_listen.map(|a| a.into_inner().0),
        admin_token: raw.admin_token.map(|t| t.0),
        static_dir: raw.static_dir.map(|p| dir.join(p.0)),
        body_limit_bytes: usize::try_from(kib.saturating_mul(1024)).unwrap_or(usize::MAX),
        shutdown_grace: (raw.shutdown_grace_ms)
            .map_or(ServerConfig::DEFAULT_SHUTDOWN_GRACE, Duration::from_millis),
        header_timeout: millis(raw.header_timeout_ms, ServerConfig::DEFAULT_HEADER_TIMEOUT),
        body_timeout: millis(raw.body_timeout_ms, ServerConfig::DEFAULT_BODY_TIMEOUT),
        max_connections: (raw.max_connections)
            .map_or(ServerConfig::DEFAULT_MAX_CONNECTIONS, u32::from),
        cors: match &raw.cors {
            Some(cors) => Some(super::cors::cors(cors, src)?),
            None => None,
        },
    })
}

fn bus(raw: RawBus, src: &Source) -> Result<BusConfig, ConfigError> {
    let kind = raw.kind.as_ref().map(|k| *k.get_ref()).unwrap_or_default();
    if kind == BusKind::Embedded {
        let kafka_only = [
            ("bootstrap", raw.bootstrap.as_ref().map(Spanned::span)),
            ("client_id", raw.client_id.as_ref().map(Spanned::span)),
            ("exactly_once", raw.exactly_once.as_ref().map(Spanned::span)),
            (
                "options",
                raw.options.iter().flatten().map(|(k, _)| k.span()).next(),
            ),
        ];
        return match kafka_only
            .into_iter()
            .find_map(|(k, span)| Some((k, span?)))
        {
            Some((key, span)) => Err(src.error(
                span,
                format!("{key} is only allowed with kind = \"kafka\" in [bus]"),
            )),
            None => Ok(BusConfig::Embedded),
        };
    }
    let Some(bootstrap) = raw.bootstrap else {
        return Err(src.error(
            raw.kind.map_or(0..0, |k| k.span()),
            "kind = \"kafka\" needs bootstrap, e.g. bootstrap = \"127.0.0.1:9092\"",
        ));
    };
    let mut options = BTreeMap::new();
    for (name, value) in raw.options.into_iter().flatten() {
        let reserved = KafkaConfig::RESERVED_OPTIONS
            .iter()
            .find(|(reserved, _)| reserved == name.get_ref());
        if let Some((_, instead)) = reserved {
            let message = format!("{:?} cannot be set here: {instead}", name.get_ref());
            return Err(src.error(name.span(), message));
        }
        if let Scalar::Float(_) = value.get_ref() {
            let message = "invalid type: float, expected a string, integer or boolean";
            return Err(src.error(value.span(), message));
        }
        options.insert(name.into_inner(), value.get_ref().to_string());
    }
    Ok(BusConfig::Kafka(KafkaConfig {
        bootstrap: bootstrap.into_inner().0,
        client_id: (raw.client_id).map_or_else(
            || KafkaConfig::DEFAULT_CLIENT_ID.to_owned(),
            |id| id.into_inner().0,
        ),
        options,
        exactly_once: raw.exactly_once.is_some_and(|on| on.into_inner()),
    }))
}

fn state(raw: RawState, src: &Source, dir: &Path) -> Result<StateConfig, ConfigError> {
    let kind = raw.kind.as_ref().map(|k| *k.get_ref()).unwrap_or_default();
    match (kind, raw.path, raw.url) {
        (StateKind::Embedded, path, None) => Ok(StateConfig::Embedded {
            path: path_or(
                dir,
                path.map(Spanned::into_inner),
                StateConfig::DEFAULT_PATH,
            ),
        }),
        (StateKind::Embedded, _, Some(url)) => Err(src.error(
            url.span(),
            "url is only allowed with kind = \"postgres\" in [state]",
        )),
        (StateKind::Postgres, Some(path), _) => Err(src.error(
            path.span(),
            "path is only allowed with kind = \"embedded\": a PostgreSQL store has a url",
        )),
        (StateKind::Postgres, None, Some(url)) => Ok(StateConfig::Postgres {
            url: url.into_inner().0,
        }),
        (StateKind::Postgres, None, None) => Err(src.error(
            raw.kind.map_or(0..0, |k| k.span()),
            "kind = \"postgres\" needs url, \
             e.g. url = \"postgres://eventhost@127.0.0.1:5433/eventhost\"",
        )),
    }
}

fn runtime(raw: RawRuntime, dir: &Path) -> RuntimeConfig {
    RuntimeConfig {
        plugins_dir: path_or(dir, raw.plugins_dir, RuntimeConfig::DEFAULT_PLUGINS_DIR),
        max_memory_mib: (raw.max_memory_mib)
            .map_or(RuntimeConfig::DEFAULT_MAX_MEMORY_MIB, u64::from),
        max_concurrency: (raw.max_concurrency)
            .map_or(RuntimeConfig::DEFAULT_MAX_CONCURRENCY, u32::from),
        cache_dir: raw.cache_dir.map(|p| dir.join(p.0)),
        guest_threads: raw.guest_threads.map(u32::from),
    }
}

fn telemetry(raw: RawTelemetry) -> TelemetryConfig {
    TelemetryConfig {
        otlp_endpoint: raw.otlp_endpoint.map(|e| e.0),
        service_name: (raw.service_name)
            .map_or_else(|| TelemetryConfig::DEFAULT_SERVICE_NAME.to_owned(), |n| n.0),
    }
}

/// `dir/path`, or `dir/default` when no path is set.
pub(super) fn path_or(dir: &Path, path: Option<NonEmpty>, default: &str) -> PathBuf {
    match path {
        Some(path) => dir.join(path.0),
        None => dir.join(default),
    }
}
