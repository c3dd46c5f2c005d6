//! Raw TOML structs → validated [`Config`]: defaults, ranges, path resolution, and (in
//! [`wiring`]) names and cross-references.
//!
//! Checks run section by section in the order of [`Config`]'s fields and stop at the first
//! error, which points at the offending value in the file that declared it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_spanned::Spanned;

use super::error::ConfigError;
use super::model::{
    BusConfig, Config, KafkaConfig, RuntimeConfig, ServerConfig, StateConfig, TelemetryConfig,
};
use super::raw::{RawBus, RawConfig, RawRuntime, RawServer, RawState, RawTelemetry, Scalar};
use super::source::{Source, base_dir, quote_key};
use super::wiring;

/// Validates `raw` (the main file, with any drop-in tables already merged into it) as the
/// configuration loaded from `file`.
pub(crate) fn validate(raw: RawConfig, file: &Path) -> Result<Config, ConfigError> {
    let main = &*raw.source;
    let dir = base_dir(file);
    let server = server(&raw.server, main, dir)?;
    let bus = bus(raw.bus.as_ref(), main)?;
    let state = state(&raw.state, main, dir)?;
    let runtime = runtime(&raw.runtime, main, dir)?;
    let telemetry = telemetry(&raw.telemetry, main)?;
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

fn server(raw: &RawServer, src: &Source, dir: &Path) -> Result<ServerConfig, ConfigError> {
    let listen = match &raw.listen {
        Some(listen) => socket_addr(src, "server.listen", listen)?,
        None => ServerConfig::DEFAULT_LISTEN,
    };
    let admin_listen = match &raw.admin_listen {
        Some(admin) => {
            let addr = socket_addr(src, "server.admin_listen", admin)?;
            if addr == listen {
                return Err(src.error(
                    admin.span(),
                    "server.admin_listen",
                    "is the same address as listen, expected another address \
                     (or no admin_listen to serve admin routes on listen)",
                ));
            }
            Some(addr)
        }
        None => None,
    };
    let static_dir = match &raw.static_dir {
        Some(path) => Some(resolve(src, dir, "server.static_dir", path)?),
        None => None,
    };
    let kib = at_least(src, "server.body_limit_kib", &raw.body_limit_kib, 1)?
        .unwrap_or(ServerConfig::DEFAULT_BODY_LIMIT_KIB);
    let body_limit_bytes = kib
        .checked_mul(1024)
        .and_then(|bytes| usize::try_from(bytes).ok())
        .ok_or_else(|| {
            let span = raw.body_limit_kib.as_ref().map_or(0..0, Spanned::span);
            src.error(
                span,
                "server.body_limit_kib",
                format!("{kib} KiB is too large"),
            )
        })?;
    let admin_token = match &raw.admin_token {
        Some(token) if token.get_ref().trim().len() < 16 => {
            return Err(src.error(
                token.span(),
                "server.admin_token",
                "expected at least 16 characters",
            ));
        }
        Some(token) => Some(token.get_ref().clone()),
        None => None,
    };
    Ok(ServerConfig {
        listen,
        admin_listen,
        admin_token,
        static_dir,
        body_limit_bytes,
        shutdown_grace: millis_or(&raw.shutdown_grace_ms, ServerConfig::DEFAULT_SHUTDOWN_GRACE),
        header_timeout: at_least(src, "server.header_timeout_ms", &raw.header_timeout_ms, 1)?
            .map_or(ServerConfig::DEFAULT_HEADER_TIMEOUT, Duration::from_millis),
        body_timeout: at_least(src, "server.body_timeout_ms", &raw.body_timeout_ms, 1)?
            .map_or(ServerConfig::DEFAULT_BODY_TIMEOUT, Duration::from_millis),
        max_connections: at_least(src, "server.max_connections", &raw.max_connections, 1)?
            .unwrap_or(ServerConfig::DEFAULT_MAX_CONNECTIONS),
        cors: match &raw.cors {
            Some(cors) => Some(super::cors::cors(cors, src)?),
            None => None,
        },
    })
}

fn bus(raw: Option<&RawBus>, src: &Source) -> Result<BusConfig, ConfigError> {
    let Some(raw) = raw else {
        return Ok(BusConfig::Embedded);
    };
    match raw.kind.as_ref().map(|kind| kind.get_ref().as_str()) {
        None | Some("embedded") => {
            let kafka_only = [
                ("bootstrap", raw.bootstrap.as_ref().map(Spanned::span)),
                ("client_id", raw.client_id.as_ref().map(Spanned::span)),
                ("exactly_once", raw.exactly_once.as_ref().map(Spanned::span)),
                ("options", raw.options.as_ref().and_then(first_span)),
            ];
            match kafka_only
                .into_iter()
                .find_map(|(k, span)| Some((k, span?)))
            {
                Some((key, span)) => Err(src.error(
                    span,
                    format!("bus.{key}"),
                    "is only allowed with kind = \"kafka\", expected kind = \"kafka\" in [bus]",
                )),
                None => Ok(BusConfig::Embedded),
            }
        }
        Some("kafka") => kafka(raw, src).map(BusConfig::Kafka),
        Some(other) => Err(src.error(
            raw.kind.as_ref().map_or(0..0, Spanned::span),
            "bus.kind",
            format!("unknown bus kind {other:?}, expected \"embedded\" or \"kafka\""),
        )),
    }
}

fn state(raw: &RawState, src: &Source, dir: &Path) -> Result<StateConfig, ConfigError> {
    let kind = raw.kind.as_ref();
    match kind.map(|kind| kind.get_ref().as_str()) {
        None | Some("embedded") => {
            if let Some(url) = &raw.url {
                return Err(src.error(
                    url.span(),
                    "state.url",
                    "is only allowed with kind = \"postgres\", expected kind = \"postgres\" in [state]",
                ));
            }
            let path = path_or(src, dir, "state.path", &raw.path, StateConfig::DEFAULT_PATH)?;
            Ok(StateConfig::Embedded { path })
        }
        Some("postgres") => {
            if let Some(path) = &raw.path {
                return Err(src.error(
                    path.span(),
                    "state.path",
                    "is only allowed with kind = \"embedded\": a PostgreSQL store has a url",
                ));
            }
            let Some(url) = &raw.url else {
                return Err(src.error(
                    kind.map_or(0..0, Spanned::span),
                    "state.url",
                    "is required with kind = \"postgres\", \
                     e.g. url = \"postgres://eventhost@127.0.0.1:5433/eventhost\"",
                ));
            };
            let url = non_empty(src, "state.url", url)?;
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(src.error(
                    raw.url.as_ref().map_or(0..0, Spanned::span),
                    "state.url",
                    format!("{url:?} is not a PostgreSQL url, expected postgres://USER@HOST:PORT/DATABASE"),
                ));
            }
            Ok(StateConfig::Postgres { url })
        }
        Some(other) => Err(src.error(
            kind.map_or(0..0, Spanned::span),
            "state.kind",
            format!("unknown state kind {other:?}, expected \"embedded\" or \"postgres\""),
        )),
    }
}

fn kafka(raw: &RawBus, src: &Source) -> Result<KafkaConfig, ConfigError> {
    let Some(bootstrap) = &raw.bootstrap else {
        return Err(src.error(
            raw.kind.as_ref().map_or(0..0, Spanned::span),
            "bus.bootstrap",
            "is required with kind = \"kafka\", e.g. bootstrap = \"127.0.0.1:9092\"",
        ));
    };
    let bootstrap = non_empty(src, "bus.bootstrap", bootstrap)?;
    let client_id = match &raw.client_id {
        Some(id) => non_empty(src, "bus.client_id", id)?,
        None => KafkaConfig::DEFAULT_CLIENT_ID.to_owned(),
    };
    let mut options = BTreeMap::new();
    for (name, value) in raw.options.iter().flatten() {
        let key = format!("bus.options.{}", quote_key(name.get_ref()));
        let reserved = KafkaConfig::RESERVED_OPTIONS
            .iter()
            .find(|(reserved, _)| reserved == name.get_ref());
        if let Some((_, instead)) = reserved {
            return Err(src.error(
                name.span(),
                key,
                format!("{:?} cannot be set here: {instead}", name.get_ref()),
            ));
        }
        if let Scalar::Float(_) = value.get_ref() {
            return Err(src.error(
                value.span(),
                key,
                "invalid type: float, expected a string, integer or boolean",
            ));
        }
        options.insert(name.get_ref().clone(), value.get_ref().to_string());
    }
    Ok(KafkaConfig {
        bootstrap,
        client_id,
        options,
        exactly_once: raw.exactly_once.as_ref().is_some_and(|on| *on.get_ref()),
    })
}

fn runtime(raw: &RawRuntime, src: &Source, dir: &Path) -> Result<RuntimeConfig, ConfigError> {
    let plugins_dir = path_or(
        src,
        dir,
        "runtime.plugins_dir",
        &raw.plugins_dir,
        RuntimeConfig::DEFAULT_PLUGINS_DIR,
    )?;
    let cache_dir = match &raw.cache_dir {
        Some(path) => Some(resolve(src, dir, "runtime.cache_dir", path)?),
        None => None,
    };
    Ok(RuntimeConfig {
        plugins_dir,
        max_memory_mib: at_least(src, "runtime.max_memory_mib", &raw.max_memory_mib, 1)?
            .unwrap_or(RuntimeConfig::DEFAULT_MAX_MEMORY_MIB),
        max_concurrency: at_least(src, "runtime.max_concurrency", &raw.max_concurrency, 1)?
            .unwrap_or(RuntimeConfig::DEFAULT_MAX_CONCURRENCY),
        cache_dir,
        guest_threads: at_least(src, "runtime.guest_threads", &raw.guest_threads, 1)?,
    })
}

fn telemetry(raw: &RawTelemetry, src: &Source) -> Result<TelemetryConfig, ConfigError> {
    let otlp_endpoint = match &raw.otlp_endpoint {
        Some(endpoint) => Some(
            TelemetryConfig::check_endpoint(endpoint.get_ref())
                .map_err(|why| src.error(endpoint.span(), "telemetry.otlp_endpoint", why))?,
        ),
        None => None,
    };
    let service_name = match &raw.service_name {
        Some(name) => non_empty(src, "telemetry.service_name", name)?,
        None => TelemetryConfig::DEFAULT_SERVICE_NAME.to_owned(),
    };
    Ok(TelemetryConfig {
        otlp_endpoint,
        service_name,
    })
}

fn first_span<K, V>(map: &BTreeMap<Spanned<K>, V>) -> Option<Range<usize>> {
    map.keys().map(Spanned::span).min_by_key(|span| span.start)
}

pub(super) fn at_least<T>(
    src: &Source,
    key: &str,
    value: &Option<Spanned<T>>,
    min: T,
) -> Result<Option<T>, ConfigError>
where
    T: Copy + PartialOrd + std::fmt::Display,
{
    match value {
        Some(v) if *v.get_ref() < min => Err(src.error(
            v.span(),
            key,
            format!("expected at least {min}, found {}", v.get_ref()),
        )),
        Some(v) => Ok(Some(*v.get_ref())),
        None => Ok(None),
    }
}

pub(super) fn between(
    src: &Source,
    key: &str,
    value: &Option<Spanned<u32>>,
    min: u32,
    max: u32,
) -> Result<Option<u32>, ConfigError> {
    match value {
        Some(v) if !(min..=max).contains(v.get_ref()) => Err(src.error(
            v.span(),
            key,
            format!("expected {min} to {max}, found {}", v.get_ref()),
        )),
        Some(v) => Ok(Some(*v.get_ref())),
        None => Ok(None),
    }
}

pub(super) fn millis_or(value: &Option<Spanned<u64>>, default: Duration) -> Duration {
    value
        .as_ref()
        .map_or(default, |ms| Duration::from_millis(*ms.get_ref()))
}

pub(super) fn socket_addr(
    src: &Source,
    key: &str,
    value: &Spanned<String>,
) -> Result<SocketAddr, ConfigError> {
    value.get_ref().parse().map_err(|_| {
        let message = format!(
            "invalid address {:?}, expected ip:port such as \"127.0.0.1:8080\" or \"[::1]:8080\"",
            value.get_ref()
        );
        src.error(value.span(), key, message)
    })
}

pub(super) fn non_empty(
    src: &Source,
    key: &str,
    value: &Spanned<String>,
) -> Result<String, ConfigError> {
    if value.get_ref().trim().is_empty() {
        return Err(src.error(value.span(), key, "is empty, expected a value"));
    }
    Ok(value.get_ref().clone())
}

pub(super) fn resolve(
    src: &Source,
    dir: &Path,
    key: &str,
    path: &Spanned<String>,
) -> Result<PathBuf, ConfigError> {
    non_empty(src, key, path).map(|path| dir.join(path))
}

pub(super) fn path_or(
    src: &Source,
    dir: &Path,
    key: &str,
    path: &Option<Spanned<String>>,
    default: &str,
) -> Result<PathBuf, ConfigError> {
    match path {
        Some(path) => resolve(src, dir, key, path),
        None => Ok(dir.join(default)),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn error(text: &str) -> String {
        let err = Config::parse(text, Path::new("e.toml")).expect_err("invalid config");
        err.to_string()
    }

    #[test]
    fn admin_listen_must_differ_from_listen() {
        assert_eq!(
            error("[server]\nlisten = \"127.0.0.1:8080\"\nadmin_listen = \"127.0.0.1:8080\"\n"),
            "e.toml:3:16: server.admin_listen: is the same address as listen, expected \
             another address (or no admin_listen to serve admin routes on listen)"
        );
    }

    #[test]
    fn body_limit_is_at_least_one_kib() {
        assert_eq!(
            error("[server]\nbody_limit_kib = 0\n"),
            "e.toml:2:18: server.body_limit_kib: expected at least 1, found 0"
        );
    }

    #[test]
    fn empty_paths_are_rejected() {
        assert_eq!(
            error("[state]\npath = \"\"\n"),
            "e.toml:2:8: state.path: is empty, expected a value"
        );
    }

    #[test]
    fn embedded_bus_takes_no_options() {
        assert_eq!(
            error("[bus]\nkind = \"embedded\"\n[bus.options]\n\"linger.ms\" = 5\n"),
            "e.toml:4:1: bus.options: is only allowed with kind = \"kafka\", \
             expected kind = \"kafka\" in [bus]"
        );
    }

    #[test]
    fn kafka_options_are_not_floats() {
        assert_eq!(
            error("[bus]\nkind = \"kafka\"\nbootstrap = \"k:9092\"\noptions = { \"x.y\" = 0.5 }\n"),
            "e.toml:4:21: bus.options.\"x.y\": invalid type: float, \
             expected a string, integer or boolean"
        );
    }

    #[test]
    fn telemetry_exports_nothing_unless_asked() {
        let config = Config::parse("", Path::new("e.toml")).expect("an empty config is valid");
        assert_eq!(config.telemetry.otlp_endpoint, None);
        assert_eq!(config.telemetry.service_name, "eventhost");
    }

    #[test]
    fn runtime_ceilings_are_at_least_one() {
        assert_eq!(
            error("[runtime]\nmax_concurrency = 0\n"),
            "e.toml:2:19: runtime.max_concurrency: expected at least 1, found 0"
        );
    }
}
