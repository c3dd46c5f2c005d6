//! The wiring: the tables that bind plugins to the world — `[[topic]]`, `[plugin.X]`,
//! `[[subscription]]` and `[[route]]` — checked for duplicates, dangling references and
//! limits that depend on other keys.
//!
//! These tables may come from several files (see `RawConfig::merge`), so each check reports
//! against the item's own [`Origin`](super::source::Origin), not the main file.

use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::ops::Range;
use std::time::Duration;

use serde_spanned::Spanned;

use super::error::ConfigError;
use super::model::{
    Limits, PluginConfig, RetryPolicy, RouteConfig, RuntimeConfig, SubscriptionConfig, TopicConfig,
};
use super::names::{PluginName, TopicName};
use super::raw::{Instance, RawLimits, RawPlugin, RawRoute, RawSubscription, RawTopic};
use super::source::Source;
use crate::bus::{Limit, Retention};
use crate::cloudevents::Producer;
use crate::runtime::Budget;

pub(super) fn topics(raw: &[RawTopic]) -> Result<BTreeMap<String, TopicConfig>, ConfigError> {
    let mut topics = BTreeMap::new();
    let mut first: BTreeMap<&str, &RawTopic> = BTreeMap::new();
    for topic in raw {
        let src = &*topic.origin.source;
        let name = &topic.name.get_ref().0;
        if let Some(earlier) = first.insert(name, topic) {
            let at = location(&earlier.origin.source, earlier.name.span(), src);
            return Err(src.error(
                topic.name.span(),
                format!("topic {name:?} is already declared {at}, expected unique topic names"),
            ));
        }
        let retention = &topic.retention;
        let config = TopicConfig {
            name: name.clone(),
            partitions: (topic.partitions).map_or(TopicConfig::DEFAULT_PARTITIONS, u32::from),
            replication: (topic.replication).map_or(TopicConfig::DEFAULT_REPLICATION, |r| r.0),
            retention: Retention {
                bytes: retention.bytes.map_or(Limit::BusDefault, |l| l.0),
                age: (retention.ms).map_or(Limit::BusDefault, |l| l.0.map(Duration::from_millis)),
            },
        };
        topics.insert(name.clone(), config);
    }
    Ok(topics)
}

pub(super) fn plugins(
    raw: &BTreeMap<Spanned<PluginName>, RawPlugin>,
    runtime: &RuntimeConfig,
    topics: &BTreeMap<String, TopicConfig>,
) -> Result<BTreeMap<String, PluginConfig>, ConfigError> {
    let mut plugins = BTreeMap::new();
    for (name, plugin) in raw {
        let src = &*plugin.origin.source;
        let name = &name.get_ref().0;
        let path = match &plugin.path {
            Some(path) => src.dir().join(&path.0),
            None => runtime.plugins_dir.join(format!("{name}.wasm")),
        };
        let publish = (plugin.publish.iter())
            .map(|topic| declared_topic(src, topic, topics).map(|t| t.name.clone()))
            .collect::<Result<_, _>>()?;
        let config = (plugin.config.iter())
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        let cloudevents = plugin.cloudevents.as_ref().map(|raw| {
            let mut producer = Producer::default_for(name);
            if let Some(source) = &raw.source {
                producer.source = source.0.clone();
            }
            if let Some(event_type) = &raw.event_type {
                producer.event_type = event_type.0.clone();
            }
            producer
        });
        let reuse_inputs = match (plugin.instance, &plugin.reuse_inputs) {
            (Some(Instance::Reuse), n) => Some(
                n.as_ref()
                    .map_or(PluginConfig::DEFAULT_REUSE_INPUTS, |n| n.get_ref().get()),
            ),
            (_, Some(n)) => {
                let message = "reuse_inputs is only allowed with instance = \"reuse\"";
                return Err(src.error(n.span(), message));
            }
            (_, None) => None,
        };
        let config = PluginConfig {
            name: name.clone(),
            path,
            publish,
            config,
            cloudevents,
            reuse_inputs,
            limits: limits(src, &plugin.limits, runtime)?,
        };
        plugins.insert(name.clone(), config);
    }
    Ok(plugins)
}

/// A plugin's `limits`, within the runtime's ceilings; KiB values become bytes.
fn limits(src: &Source, raw: &RawLimits, runtime: &RuntimeConfig) -> Result<Limits, ConfigError> {
    let max_memory = runtime.max_memory_mib;
    let max_concurrency = u64::from(runtime.max_concurrency);
    let within = |value: &Option<Spanned<NonZeroU64>>, max: u64, setting: &str| match value {
        Some(v) if v.get_ref().get() > max => Err(src.error(
            v.span(),
            format!("expected 1 to {max} ({setting}), found {}", v.get_ref()),
        )),
        Some(v) => Ok(Some(v.get_ref().get())),
        None => Ok(None),
    };
    let concurrency = raw
        .concurrency
        .as_ref()
        .map(|n| Spanned::new(n.span(), (*n.get_ref()).into()));
    let defaults = Budget::default();
    let count = |value: Option<NonZeroU64>, default: usize| {
        value.map_or(default, |v| usize::try_from(v.get()).unwrap_or(usize::MAX))
    };
    let kib = |value: Option<NonZeroU64>, default: usize| {
        count(value, default >> 10).saturating_mul(1024)
    };
    Ok(Limits {
        memory_mib: within(&raw.memory_mib, max_memory, "runtime.max_memory_mib")?
            .unwrap_or(Limits::DEFAULT_MEMORY_MIB.min(max_memory)),
        timeout: (raw.timeout_ms).map_or(Limits::DEFAULT_TIMEOUT, |ms| {
            Duration::from_millis(ms.get())
        }),
        concurrency: within(&concurrency, max_concurrency, "runtime.max_concurrency")?.map_or(
            Limits::DEFAULT_CONCURRENCY.min(runtime.max_concurrency),
            |n| n as u32,
        ),
        budget: Budget {
            outbox_messages: count(raw.outbox_messages, defaults.outbox_messages),
            outbox_bytes: kib(raw.outbox_kib, defaults.outbox_bytes),
            state_writes: count(raw.state_writes, defaults.state_writes),
            state_write_bytes: kib(raw.state_write_kib, defaults.state_write_bytes),
            state_read_bytes: kib(raw.state_read_kib, defaults.state_read_bytes),
            log_bytes: kib(raw.log_kib, defaults.log_bytes),
            response_bytes: kib(raw.response_kib, defaults.response_bytes),
        },
    })
}

pub(super) fn subscriptions(
    raw: &[RawSubscription],
    plugins: &BTreeMap<String, PluginConfig>,
    topics: &mut BTreeMap<String, TopicConfig>,
) -> Result<Vec<SubscriptionConfig>, ConfigError> {
    let declared: &BTreeMap<_, _> = topics;
    let mut implicit = BTreeMap::new();
    let mut consumers: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut subscriptions = Vec::with_capacity(raw.len());
    for sub in raw {
        let src = &*sub.origin.source;
        let topic = declared_topic(src, &sub.topic, declared)?;
        defined_plugin(src, &sub.plugin, plugins)?;
        // The group defaults to the plugin's name; errors about it point at whichever is set.
        let group = match &sub.group {
            Some(group) => Spanned::new(group.span(), group.get_ref().0.as_str()),
            None => Spanned::new(sub.plugin.span(), sub.plugin.get_ref().as_str()),
        };
        let consumer = (topic.name.as_str(), *group.get_ref());
        if let Some(other) = consumers.insert(consumer, sub.origin.index) {
            return Err(src.error(
                group.span(),
                format!(
                    "group {:?} already consumes topic {:?} in subscription[{other}], \
                     expected one subscription per topic and group",
                    group.get_ref(),
                    topic.name
                ),
            ));
        }
        let dead_letter = match &sub.dead_letter {
            Some(dlq) if dlq.get_ref() == &topic.name => {
                let message = "dead_letter is the consumed topic itself, expected another topic";
                return Err(src.error(dlq.span(), message));
            }
            Some(dlq) => declared_topic(src, dlq, declared)?.name.clone(),
            None => {
                let name = TopicName::try_from(format!("{}.dlq", topic.name)).map_err(|msg| {
                    let msg = format!("the default dead-letter topic is invalid: {msg}");
                    src.error(sub.topic.span(), msg)
                })?;
                if !declared.contains_key(&name.0) {
                    implicit
                        .entry(name.0.clone())
                        .or_insert_with(|| TopicConfig {
                            name: name.0.clone(),
                            partitions: 1,
                            replication: topic.replication,
                            retention: Retention::default(),
                        });
                }
                name.0
            }
        };
        let concurrency = between(src, &sub.concurrency, SubscriptionConfig::MAX_CONCURRENCY)?
            .unwrap_or(SubscriptionConfig::DEFAULT_CONCURRENCY);
        let max_pending = match &sub.max_pending {
            Some(n) if *n.get_ref() < concurrency => {
                let message = format!(
                    "max_pending must be at least concurrency ({concurrency}), found {}",
                    n.get_ref()
                );
                return Err(src.error(n.span(), message));
            }
            n => between(src, n, SubscriptionConfig::MAX_PENDING)?
                .unwrap_or(SubscriptionConfig::DEFAULT_MAX_PENDING.max(concurrency)),
        };
        subscriptions.push(SubscriptionConfig {
            topic: topic.name.clone(),
            plugin: sub.plugin.get_ref().clone(),
            group: group.get_ref().to_string(),
            dead_letter,
            retry: retry(src, sub)?,
            concurrency,
            max_pending,
        });
    }
    topics.extend(implicit);
    Ok(subscriptions)
}

/// A subscription's `retry`: a backoff above its floor, which keeps retry loops from
/// spinning, and not above its ceiling.
fn retry(src: &Source, sub: &RawSubscription) -> Result<RetryPolicy, ConfigError> {
    let raw = &sub.retry;
    let millis = |ms: &Option<Spanned<u64>>, default| {
        ms.as_ref()
            .map_or(default, |ms| Duration::from_millis(*ms.get_ref()))
    };
    let backoff = millis(&raw.backoff_ms, RetryPolicy::DEFAULT_BACKOFF);
    let max_backoff = millis(&raw.max_backoff_ms, RetryPolicy::DEFAULT_MAX_BACKOFF);
    let error = |ms: &Spanned<u64>, message: String| Err(src.error(ms.span(), message));
    match (&raw.backoff_ms, &raw.max_backoff_ms) {
        (Some(ms), _) if *ms.get_ref() < RetryPolicy::MIN_BACKOFF_MS => error(
            ms,
            format!(
                "backoff_ms must be at least {}, found {}",
                RetryPolicy::MIN_BACKOFF_MS,
                ms.get_ref()
            ),
        ),
        (_, Some(max)) if max_backoff < backoff => error(
            max,
            format!(
                "max_backoff_ms must be at least backoff_ms ({}), found {}",
                backoff.as_millis(),
                max.get_ref()
            ),
        ),
        (Some(ms), None) if max_backoff < backoff => error(
            ms,
            format!(
                "backoff_ms must be at most max_backoff_ms ({}), found {}",
                max_backoff.as_millis(),
                ms.get_ref()
            ),
        ),
        _ => Ok(RetryPolicy {
            attempts: raw
                .attempts
                .map_or(RetryPolicy::DEFAULT_ATTEMPTS, u32::from),
            backoff,
            max_backoff,
        }),
    }
}

pub(super) fn routes(
    raw: &[RawRoute],
    plugins: &BTreeMap<String, PluginConfig>,
) -> Result<Vec<RouteConfig>, ConfigError> {
    // The router matches on shape; one shape must use one spelling of its parameters.
    let mut shapes: BTreeMap<&str, &RawRoute> = BTreeMap::new();
    let mut seen: BTreeMap<(&str, &str), &RawRoute> = BTreeMap::new();
    let mut routes = Vec::with_capacity(raw.len());
    for route in raw {
        let src = &*route.origin.source;
        let method = &route.method.0;
        let path = &route.path.get_ref().path;
        if let Some(other) = seen.insert((method, path), route) {
            return Err(src.error(
                route.path.span(),
                format!(
                    "{method} {path:?} is already routed by route[{}], \
                     expected each method and path once",
                    other.origin.index
                ),
            ));
        }
        let other = *shapes.entry(&route.path.get_ref().shape).or_insert(route);
        if &other.path.get_ref().path != path {
            return Err(src.error(
                route.path.span(),
                format!(
                    "path {path:?} overlaps {:?} of route[{}], expected the same parameter \
                     names at the same positions",
                    other.path.get_ref().path,
                    other.origin.index
                ),
            ));
        }
        defined_plugin(src, &route.plugin, plugins)?;
        routes.push(RouteConfig {
            method: method.clone(),
            path: path.clone(),
            plugin: route.plugin.get_ref().clone(),
        });
    }
    Ok(routes)
}

/// A value from 1 to `max`, when set.
fn between(
    src: &Source,
    value: &Option<Spanned<u32>>,
    max: u32,
) -> Result<Option<u32>, ConfigError> {
    match value {
        Some(v) if !(1..=max).contains(v.get_ref()) => Err(src.error(
            v.span(),
            format!("expected 1 to {max}, found {}", v.get_ref()),
        )),
        v => Ok(v.as_ref().map(|v| *v.get_ref())),
    }
}

fn declared_topic<'t>(
    src: &Source,
    name: &Spanned<String>,
    topics: &'t BTreeMap<String, TopicConfig>,
) -> Result<&'t TopicConfig, ConfigError> {
    topics.get(name.get_ref()).ok_or_else(|| {
        let expected = one_of(topics.keys(), "the name of a [[topic]]");
        let message = format!(
            "topic {:?} is not declared, expected {expected}",
            name.get_ref()
        );
        src.error(name.span(), message)
    })
}

fn defined_plugin(
    src: &Source,
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
    Err(src.error(name.span(), message))
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;
    use crate::config::raw::RawConfig;
    use crate::config::validate::validate;

    /// Loads `main.toml` with the tables of a drop-in `plugins/extra.toml` merged in.
    fn load_with_drop_in(main: &str, drop_in: &str) -> Result<Config, String> {
        let mut raw = RawConfig::parse(main, Path::new("main.toml")).map_err(|e| e.summary())?;
        let extra =
            RawConfig::parse(drop_in, Path::new("plugins/extra.toml")).map_err(|e| e.summary())?;
        raw.merge(extra).map_err(|e| e.summary())?;
        validate(raw, Path::new("main.toml")).map_err(|e| e.summary())
    }

    #[test]
    fn drop_in_tables_resolve_and_report_against_their_own_file() {
        let main = "[[topic]]\nname = \"orders\"\n[plugin.cart]\n";
        let config = load_with_drop_in(
            main,
            "[plugin.audit]\npath = \"audit.wasm\"\n[[subscription]]\ntopic = \"orders\"\n\
             plugin = \"audit\"\n",
        )
        .expect("valid drop-in");
        assert_eq!(
            config.plugins["audit"].path,
            Path::new("plugins/audit.wasm")
        );
        assert_eq!(config.plugins["cart"].path, Path::new("plugins/cart.wasm"));

        let err = load_with_drop_in(
            main,
            "[[route]]\nmethod = \"GET\"\npath = \"/a\"\nplugin = \"audit\"\n",
        )
        .expect_err("audit is not defined");
        assert_eq!(
            err,
            "plugins/extra.toml:4:10: plugin \"audit\" is not defined, \
             expected \"cart\""
        );
    }

    #[test]
    fn a_duplicate_from_another_file_names_that_file() {
        let err = load_with_drop_in("[[topic]]\nname = \"t\"\n", "\n[[topic]]\nname = \"t\"\n")
            .expect_err("t is declared twice");
        assert_eq!(
            err,
            "plugins/extra.toml:3:8: topic \"t\" is already declared in \
             main.toml at line 2, expected unique topic names"
        );
    }

    #[test]
    fn one_of_lists_what_there_is() {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(one_of(names(&[]).iter(), "a topic"), "a topic");
        assert_eq!(one_of(names(&["a"]).iter(), "-"), "\"a\"");
        assert_eq!(
            one_of(names(&["a", "b"]).iter(), "-"),
            "one of \"a\", \"b\""
        );
    }
}
