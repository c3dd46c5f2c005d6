//! Raw TOML structs → validated [`Config`]: defaults, ranges, name syntax, path resolution
//! and every cross-reference (plugins, topics, dead letters, routes).
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
    BusConfig, Config, KafkaConfig, Limits, PluginConfig, RetryPolicy, RouteConfig, RuntimeConfig,
    ServerConfig, StateConfig, SubscriptionConfig, TopicConfig,
};
use super::names::{check_method, check_plugin_name, check_route_path, check_topic_name};
use super::raw::{
    RawBus, RawConfig, RawPlugin, RawRoute, RawRuntime, RawServer, RawSubscription, RawTopic,
    Scalar,
};
use super::source::{Source, base_dir, quote_key};

/// Validates `raw` (the main file, with any drop-in tables already merged into it) as the
/// configuration loaded from `file`.
pub(crate) fn validate(raw: RawConfig, file: &Path) -> Result<Config, ConfigError> {
    let main = &*raw.source;
    let dir = base_dir(file);
    let server = server(&raw.server, main, dir)?;
    let bus = bus(raw.bus.as_ref(), main)?;
    let state = StateConfig {
        path: path_or(
            main,
            dir,
            "state.path",
            &raw.state.path,
            StateConfig::DEFAULT_PATH,
        )?,
    };
    let runtime = runtime(&raw.runtime, main, dir)?;
    let mut topics = topics(&raw.topic)?;
    let plugins = plugins(&raw.plugin, &runtime, &topics)?;
    let subscriptions = subscriptions(&raw.subscription, &plugins, &mut topics)?;
    let routes = routes(&raw.route, &plugins)?;
    Ok(Config {
        file: file.to_owned(),
        server,
        bus,
        state,
        runtime,
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
    Ok(ServerConfig {
        listen,
        admin_listen,
        static_dir,
        body_limit_bytes,
        shutdown_grace: millis_or(&raw.shutdown_grace_ms, ServerConfig::DEFAULT_SHUTDOWN_GRACE),
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
    })
}

fn topics(raw: &[RawTopic]) -> Result<BTreeMap<String, TopicConfig>, ConfigError> {
    let mut topics = BTreeMap::new();
    let mut first: BTreeMap<&str, &RawTopic> = BTreeMap::new();
    for topic in raw {
        let src = &*topic.origin.source;
        let key = |field| format!("topic[{}].{field}", topic.origin.index);
        let name = topic.name.get_ref();
        check_topic_name(name).map_err(|msg| src.error(topic.name.span(), key("name"), msg))?;
        if let Some(earlier) = first.insert(name, topic) {
            let at = location(&earlier.origin.source, earlier.name.span(), src);
            return Err(src.error(
                topic.name.span(),
                key("name"),
                format!("topic {name:?} is already declared {at}, expected unique topic names"),
            ));
        }
        let partitions = at_least(src, &key("partitions"), &topic.partitions, 1)?
            .unwrap_or(TopicConfig::DEFAULT_PARTITIONS);
        let replication = match &topic.replication {
            Some(r) if *r.get_ref() < 1 && *r.get_ref() != -1 => {
                return Err(src.error(
                    r.span(),
                    key("replication"),
                    format!(
                        "expected at least 1, or -1 for the broker's default, found {}",
                        r.get_ref()
                    ),
                ));
            }
            Some(r) => *r.get_ref(),
            None => TopicConfig::DEFAULT_REPLICATION,
        };
        let config = TopicConfig {
            name: name.clone(),
            partitions,
            replication,
        };
        topics.insert(name.clone(), config);
    }
    Ok(topics)
}

fn plugins(
    raw: &BTreeMap<Spanned<String>, RawPlugin>,
    runtime: &RuntimeConfig,
    topics: &BTreeMap<String, TopicConfig>,
) -> Result<BTreeMap<String, PluginConfig>, ConfigError> {
    let mut plugins = BTreeMap::new();
    for (name, plugin) in raw {
        let src = &*plugin.origin.source;
        let table = format!("plugin.{}", quote_key(name.get_ref()));
        let key = |field: &str| format!("{table}.{field}");
        check_plugin_name(name.get_ref()).map_err(|msg| src.error(name.span(), &table, msg))?;
        let path = match &plugin.path {
            Some(path) => resolve(src, src.dir(), &key("path"), path)?,
            None => runtime.plugins_dir.join(format!("{}.wasm", name.get_ref())),
        };
        let mut publish = Vec::with_capacity(plugin.publish.len());
        for (i, topic) in plugin.publish.iter().enumerate() {
            declared_topic(src, &key(&format!("publish[{i}]")), topic, topics)?;
            publish.push(topic.get_ref().clone());
        }
        let config = plugin
            .config
            .iter()
            .map(|(k, v)| (k.get_ref().clone(), v.get_ref().to_string()))
            .collect();
        let limits = &plugin.limits;
        let memory_mib = match &limits.memory_mib {
            Some(mib) if *mib.get_ref() > runtime.max_memory_mib => {
                return Err(src.error(
                    mib.span(),
                    key("limits.memory_mib"),
                    format!(
                        "{} MiB is above runtime.max_memory_mib, expected at most {}",
                        mib.get_ref(),
                        runtime.max_memory_mib
                    ),
                ));
            }
            Some(_) => {
                at_least(src, &key("limits.memory_mib"), &limits.memory_mib, 1)?.unwrap_or_default()
            }
            None => Limits::DEFAULT_MEMORY_MIB.min(runtime.max_memory_mib),
        };
        let timeout = at_least(src, &key("limits.timeout_ms"), &limits.timeout_ms, 1)?
            .map_or(Limits::DEFAULT_TIMEOUT, Duration::from_millis);
        let config = PluginConfig {
            name: name.get_ref().clone(),
            path,
            publish,
            config,
            limits: Limits {
                memory_mib,
                timeout,
            },
        };
        plugins.insert(name.get_ref().clone(), config);
    }
    Ok(plugins)
}

fn subscriptions(
    raw: &[RawSubscription],
    plugins: &BTreeMap<String, PluginConfig>,
    topics: &mut BTreeMap<String, TopicConfig>,
) -> Result<Vec<SubscriptionConfig>, ConfigError> {
    let declared = topics.clone();
    let mut consumers: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut subscriptions = Vec::with_capacity(raw.len());
    for sub in raw {
        let src = &*sub.origin.source;
        let key = |field| format!("subscription[{}].{field}", sub.origin.index);
        let topic = declared_topic(src, &key("topic"), &sub.topic, &declared)?;
        defined_plugin(src, &key("plugin"), &sub.plugin, plugins)?;
        let (group, group_at) = match &sub.group {
            Some(group) => (
                non_empty(src, &key("group"), group)?,
                ("group", group.span()),
            ),
            None => (sub.plugin.get_ref().clone(), ("plugin", sub.plugin.span())),
        };
        let group_ref = sub.group.as_ref().unwrap_or(&sub.plugin).get_ref();
        if let Some(other) = consumers.insert((topic.name.as_str(), group_ref), sub.origin.index) {
            return Err(src.error(
                group_at.1,
                key(group_at.0),
                format!(
                    "group {group:?} already consumes topic {:?} in subscription[{other}], \
                     expected one subscription per topic and group",
                    topic.name
                ),
            ));
        }
        let dead_letter = match &sub.dead_letter {
            Some(dlq) if dlq.get_ref() == &topic.name => {
                return Err(src.error(
                    dlq.span(),
                    key("dead_letter"),
                    "is the consumed topic itself, expected another topic",
                ));
            }
            Some(dlq) => declared_topic(src, &key("dead_letter"), dlq, &declared)?
                .name
                .clone(),
            None => {
                let name = format!("{}.dlq", topic.name);
                check_topic_name(&name).map_err(|msg| {
                    let msg = format!("the default dead-letter topic is invalid: {msg}");
                    src.error(sub.topic.span(), key("dead_letter"), msg)
                })?;
                let implicit = TopicConfig {
                    name: name.clone(),
                    partitions: 1,
                    replication: topic.replication,
                };
                topics.entry(name.clone()).or_insert(implicit);
                name
            }
        };
        let retry = &sub.retry;
        let attempts = at_least(src, &key("retry.attempts"), &retry.attempts, 1)?
            .unwrap_or(RetryPolicy::DEFAULT_ATTEMPTS);
        let backoff = millis_or(&retry.backoff_ms, RetryPolicy::DEFAULT_BACKOFF);
        let max_backoff = millis_or(&retry.max_backoff_ms, RetryPolicy::DEFAULT_MAX_BACKOFF);
        if max_backoff < backoff {
            let (ms, field, message) = match (&retry.max_backoff_ms, &retry.backoff_ms) {
                (Some(max), _) => (
                    max,
                    "retry.max_backoff_ms",
                    format!(
                        "expected at least backoff_ms ({}), found {}",
                        backoff.as_millis(),
                        max_backoff.as_millis()
                    ),
                ),
                (None, Some(ms)) => (
                    ms,
                    "retry.backoff_ms",
                    format!(
                        "expected at most max_backoff_ms ({}), found {}",
                        max_backoff.as_millis(),
                        backoff.as_millis()
                    ),
                ),
                (None, None) => unreachable!("the defaults are ordered"),
            };
            return Err(src.error(ms.span(), key(field), message));
        }
        subscriptions.push(SubscriptionConfig {
            topic: topic.name.clone(),
            plugin: sub.plugin.get_ref().clone(),
            group,
            dead_letter,
            retry: RetryPolicy {
                attempts,
                backoff,
                max_backoff,
            },
        });
    }
    Ok(subscriptions)
}

fn routes(
    raw: &[RawRoute],
    plugins: &BTreeMap<String, PluginConfig>,
) -> Result<Vec<RouteConfig>, ConfigError> {
    // The router matches on shape; one shape must use one spelling of its parameters.
    let mut shapes: BTreeMap<String, &RawRoute> = BTreeMap::new();
    let mut seen: BTreeMap<(String, &str), &RawRoute> = BTreeMap::new();
    let mut routes = Vec::with_capacity(raw.len());
    for route in raw {
        let src = &*route.origin.source;
        let key = |field| format!("route[{}].{field}", route.origin.index);
        let method = check_method(route.method.get_ref())
            .map_err(|msg| src.error(route.method.span(), key("method"), msg))?;
        let path = route.path.get_ref();
        let shape = check_route_path(path)
            .map_err(|msg| src.error(route.path.span(), key("path"), msg))?
            .shape;
        if let Some(other) = seen.insert((method.clone(), path), route) {
            return Err(src.error(
                route.path.span(),
                key("path"),
                format!(
                    "{method} {path:?} is already routed by route[{}], \
                     expected each method and path once",
                    other.origin.index
                ),
            ));
        }
        let other = *shapes.entry(shape).or_insert(route);
        if other.path.get_ref() != path {
            return Err(src.error(
                route.path.span(),
                key("path"),
                format!(
                    "path {path:?} overlaps {:?} of route[{}], expected the same parameter \
                     names at the same positions",
                    other.path.get_ref(),
                    other.origin.index
                ),
            ));
        }
        defined_plugin(src, &key("plugin"), &route.plugin, plugins)?;
        routes.push(RouteConfig {
            method,
            path: path.clone(),
            plugin: route.plugin.get_ref().clone(),
        });
    }
    Ok(routes)
}

fn declared_topic<'t>(
    src: &Source,
    key: &str,
    name: &Spanned<String>,
    topics: &'t BTreeMap<String, TopicConfig>,
) -> Result<&'t TopicConfig, ConfigError> {
    topics.get(name.get_ref()).ok_or_else(|| {
        let expected = one_of(topics.keys(), "the name of a [[topic]]");
        let message = format!(
            "topic {:?} is not declared, expected {expected}",
            name.get_ref()
        );
        src.error(name.span(), key, message)
    })
}

fn defined_plugin(
    src: &Source,
    key: &str,
    name: &Spanned<String>,
    plugins: &BTreeMap<String, PluginConfig>,
) -> Result<(), ConfigError> {
    if plugins.contains_key(name.get_ref()) {
        return Ok(());
    }
    let expected = one_of(plugins.keys(), "the name of a [plugin.<name>] table");
    let message = format!(
        "plugin {:?} is not defined, expected {expected}",
        name.get_ref()
    );
    Err(src.error(name.span(), key, message))
}

/// `one of "a", "b"`, `"a"`, or `none` when there is nothing to choose from.
fn one_of<'a>(names: impl ExactSizeIterator<Item = &'a String>, none: &str) -> String {
    let count = names.len();
    let list = names
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    match count {
        0 => none.to_owned(),
        1 => list,
        _ => format!("one of {list}"),
    }
}

/// `at line N`, or `in <file> at line N` when the earlier item is in another file.
fn location(earlier: &Source, span: Range<usize>, current: &Source) -> String {
    let (line, _) = earlier.position(span.start);
    if earlier.path() == current.path() {
        format!("at line {line}")
    } else {
        format!("in {} at line {line}", earlier.path().display())
    }
}

fn first_span<K, V>(map: &BTreeMap<Spanned<K>, V>) -> Option<Range<usize>> {
    map.keys().map(Spanned::span).min_by_key(|span| span.start)
}

fn at_least<T>(
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

fn millis_or(value: &Option<Spanned<u64>>, default: Duration) -> Duration {
    value
        .as_ref()
        .map_or(default, |ms| Duration::from_millis(*ms.get_ref()))
}

fn socket_addr(
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

fn non_empty(src: &Source, key: &str, value: &Spanned<String>) -> Result<String, ConfigError> {
    if value.get_ref().trim().is_empty() {
        return Err(src.error(value.span(), key, "is empty, expected a value"));
    }
    Ok(value.get_ref().clone())
}

fn resolve(
    src: &Source,
    dir: &Path,
    key: &str,
    path: &Spanned<String>,
) -> Result<PathBuf, ConfigError> {
    non_empty(src, key, path).map(|path| dir.join(path))
}

fn path_or(
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
