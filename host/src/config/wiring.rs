//! The wiring: the tables that bind plugins to the world — `[[topic]]`, `[plugin.X]`, `[[subscription]]`
//! and `[[route]]` — checked for name syntax, duplicates and dangling references.
//!
//! These tables may come from several files (see `RawConfig::merge`), so each check reports
//! against the item's own [`Origin`](super::source::Origin), not the main file.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use serde_spanned::Spanned;

use super::error::ConfigError;
use super::model::{
    Limits, PluginConfig, RetryPolicy, RouteConfig, RuntimeConfig, SubscriptionConfig, TopicConfig,
};
use super::names::{check_method, check_plugin_name, check_route_path, check_topic_name};
use super::raw::{RawLimits, RawPlugin, RawRoute, RawSubscription, RawTopic};
use super::source::{Source, quote_key};
use super::validate::{at_least, between, millis_or, non_empty, resolve};
use crate::bus::{Limit, Retention};
use crate::cloudevents::Producer;
use crate::runtime::Budget;

pub(super) fn topics(raw: &[RawTopic]) -> Result<BTreeMap<String, TopicConfig>, ConfigError> {
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
        let retention = Retention {
            bytes: limit(src, &key("retention.bytes"), &topic.retention.bytes)?
                .map(|bytes| bytes as u64),
            age: limit(src, &key("retention.ms"), &topic.retention.ms)?
                .map(|ms| Duration::from_millis(ms as u64)),
        };
        let config = TopicConfig {
            name: name.clone(),
            partitions,
            replication,
            retention,
        };
        topics.insert(name.clone(), config);
    }
    Ok(topics)
}

pub(super) fn plugins(
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
            Some(mib) => {
                let max = runtime.max_memory_mib;
                if !(1..=max).contains(mib.get_ref()) {
                    return Err(src.error(
                        mib.span(),
                        key("limits.memory_mib"),
                        format!(
                            "expected 1 to {max} (runtime.max_memory_mib), found {}",
                            mib.get_ref()
                        ),
                    ));
                }
                *mib.get_ref()
            }
            None => Limits::DEFAULT_MEMORY_MIB.min(runtime.max_memory_mib),
        };
        let timeout = at_least(src, &key("limits.timeout_ms"), &limits.timeout_ms, 1)?
            .map_or(Limits::DEFAULT_TIMEOUT, Duration::from_millis);
        let budget = budget(src, &key, limits)?;
        let max = runtime.max_concurrency;
        let concurrency = match &limits.concurrency {
            Some(n) if !(1..=max).contains(n.get_ref()) => {
                return Err(src.error(
                    n.span(),
                    key("limits.concurrency"),
                    format!(
                        "expected 1 to {max} (runtime.max_concurrency), found {}",
                        n.get_ref()
                    ),
                ));
            }
            Some(n) => *n.get_ref(),
            None => Limits::DEFAULT_CONCURRENCY.min(max),
        };
        let cloudevents = match &plugin.cloudevents {
            None => None,
            Some(raw) => {
                let mut producer = Producer::default_for(name.get_ref());
                for (field, value, into) in [
                    ("source", &raw.source, &mut producer.source),
                    ("type", &raw.event_type, &mut producer.event_type),
                ] {
                    if let Some(value) = value {
                        if value.get_ref().trim().is_empty() {
                            let key = key(&format!("cloudevents.{field}"));
                            return Err(src.error(value.span(), key, "must not be empty"));
                        }
                        *into = value.get_ref().clone();
                    }
                }
                Some(producer)
            }
        };
        let reuse_inputs = reuse_inputs(src, &key, plugin)?;
        let config = PluginConfig {
            name: name.get_ref().clone(),
            path,
            publish,
            config,
            cloudevents,
            reuse_inputs,
            limits: Limits {
                memory_mib,
                timeout,
                budget,
                concurrency,
            },
        };
        plugins.insert(name.get_ref().clone(), config);
    }
    Ok(plugins)
}

/// `instance` and `reuse_inputs` of a plugin: how many inputs one instance serves, when it
/// serves more than one.
fn reuse_inputs(
    src: &Source,
    key: &dyn Fn(&str) -> String,
    plugin: &RawPlugin,
) -> Result<Option<u32>, ConfigError> {
    let limit = at_least(src, &key("reuse_inputs"), &plugin.reuse_inputs, 1)?;
    match plugin
        .instance
        .as_ref()
        .map(|i| (i.get_ref().as_str(), i.span()))
    {
        None | Some(("fresh", _)) => match &plugin.reuse_inputs {
            Some(n) => Err(src.error(
                n.span(),
                key("reuse_inputs"),
                "is only allowed with instance = \"reuse\"",
            )),
            None => Ok(None),
        },
        Some(("reuse", _)) => Ok(Some(limit.unwrap_or(PluginConfig::DEFAULT_REUSE_INPUTS))),
        Some((other, span)) => Err(src.error(
            span,
            key("instance"),
            format!("unknown instance strategy {other:?}, expected \"fresh\" or \"reuse\""),
        )),
    }
}

/// The per-input budget of a plugin's `limits`; KiB values become bytes.
fn budget(
    src: &Source,
    key: &dyn Fn(&str) -> String,
    limits: &RawLimits,
) -> Result<Budget, ConfigError> {
    let defaults = Budget::default();
    let count = |field: &str, value: &Option<Spanned<u64>>, default: usize| {
        at_least(src, &key(&format!("limits.{field}")), value, 1)
            .map(|v| v.map_or(default, |v| usize::try_from(v).unwrap_or(usize::MAX)))
    };
    let kib = |field: &str, value: &Option<Spanned<u64>>, default: usize| {
        count(field, value, default >> 10).map(|kib| kib.saturating_mul(1024))
    };
    Ok(Budget {
        outbox_messages: count(
            "outbox_messages",
            &limits.outbox_messages,
            defaults.outbox_messages,
        )?,
        outbox_bytes: kib("outbox_kib", &limits.outbox_kib, defaults.outbox_bytes)?,
        state_writes: count("state_writes", &limits.state_writes, defaults.state_writes)?,
        state_write_bytes: kib(
            "state_write_kib",
            &limits.state_write_kib,
            defaults.state_write_bytes,
        )?,
        state_read_bytes: kib(
            "state_read_kib",
            &limits.state_read_kib,
            defaults.state_read_bytes,
        )?,
        log_bytes: kib("log_kib", &limits.log_kib, defaults.log_bytes)?,
        response_bytes: kib(
            "response_kib",
            &limits.response_kib,
            defaults.response_bytes,
        )?,
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
        let key = |field| format!("subscription[{}].{field}", sub.origin.index);
        let topic = declared_topic(src, &key("topic"), &sub.topic, declared)?;
        defined_plugin(src, &key("plugin"), &sub.plugin, plugins)?;
        // The group defaults to the plugin's name; errors about it point at whichever is set.
        let (group_key, group) = match &sub.group {
            Some(group) => ("group", group),
            None => ("plugin", &sub.plugin),
        };
        non_empty(src, &key(group_key), group)?;
        let consumer = (topic.name.as_str(), group.get_ref().as_str());
        if let Some(other) = consumers.insert(consumer, sub.origin.index) {
            return Err(src.error(
                group.span(),
                key(group_key),
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
                return Err(src.error(
                    dlq.span(),
                    key("dead_letter"),
                    "is the consumed topic itself, expected another topic",
                ));
            }
            Some(dlq) => declared_topic(src, &key("dead_letter"), dlq, declared)?
                .name
                .clone(),
            None => {
                let name = format!("{}.dlq", topic.name);
                check_topic_name(&name).map_err(|msg| {
                    let msg = format!("the default dead-letter topic is invalid: {msg}");
                    src.error(sub.topic.span(), key("dead_letter"), msg)
                })?;
                if !declared.contains_key(&name) {
                    implicit.entry(name.clone()).or_insert_with(|| TopicConfig {
                        name: name.clone(),
                        partitions: 1,
                        replication: topic.replication,
                        retention: Retention::default(),
                    });
                }
                name
            }
        };
        let retry = &sub.retry;
        let attempts = at_least(src, &key("retry.attempts"), &retry.attempts, 1)?
            .unwrap_or(RetryPolicy::DEFAULT_ATTEMPTS);
        // A floor keeps retry loops from spinning.
        at_least(
            src,
            &key("retry.backoff_ms"),
            &retry.backoff_ms,
            RetryPolicy::MIN_BACKOFF_MS,
        )?;
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
        let concurrency = between(
            src,
            &key("concurrency"),
            &sub.concurrency,
            1,
            SubscriptionConfig::MAX_CONCURRENCY,
        )?
        .unwrap_or(SubscriptionConfig::DEFAULT_CONCURRENCY);
        let max_pending = match &sub.max_pending {
            Some(n) if *n.get_ref() < concurrency => {
                let message = format!(
                    "expected at least concurrency ({concurrency}), found {}",
                    n.get_ref()
                );
                return Err(src.error(n.span(), key("max_pending"), message));
            }
            _ => between(
                src,
                &key("max_pending"),
                &sub.max_pending,
                1,
                SubscriptionConfig::MAX_PENDING,
            )?
            .unwrap_or(SubscriptionConfig::DEFAULT_MAX_PENDING.max(concurrency)),
        };
        subscriptions.push(SubscriptionConfig {
            topic: topic.name.clone(),
            plugin: sub.plugin.get_ref().clone(),
            group: group.get_ref().clone(),
            dead_letter,
            retry: RetryPolicy {
                attempts,
                backoff,
                max_backoff,
            },
            concurrency,
            max_pending,
        });
    }
    topics.extend(implicit);
    Ok(subscriptions)
}

pub(super) fn routes(
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

/// A retention limit: at least 1, or -1 for no limit; left out, the bus's default.
fn limit(src: &Source, key: &str, value: &Option<Spanned<i64>>) -> Result<Limit<i64>, ConfigError> {
    match value {
        None => Ok(Limit::BusDefault),
        Some(v) if *v.get_ref() == -1 => Ok(Limit::Unlimited),
        Some(v) if *v.get_ref() >= 1 => Ok(Limit::At(*v.get_ref())),
        Some(v) => Err(src.error(
            v.span(),
            key,
            format!(
                "expected at least 1, or -1 for no limit, found {}",
                v.get_ref()
            ),
        )),
    }
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;
    use crate::config::raw::RawConfig;
    use crate::config::validate::validate;

    /// Loads `main.toml` with the tables of a drop-in `plugins/extra.toml` merged in.
    fn load_with_drop_in(main: &str, drop_in: &str) -> Result<Config, String> {
        let mut raw = RawConfig::parse(main, Path::new("main.toml")).map_err(|e| e.to_string())?;
        let extra = RawConfig::parse(drop_in, Path::new("plugins/extra.toml"))
            .map_err(|e| e.to_string())?;
        raw.merge(extra).map_err(|e| e.to_string())?;
        validate(raw, Path::new("main.toml")).map_err(|e| e.to_string())
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
            "plugins/extra.toml:4:10: route[0].plugin: plugin \"audit\" is not defined, \
             expected \"cart\""
        );
    }

    #[test]
    fn a_duplicate_from_another_file_names_that_file() {
        let err = load_with_drop_in("[[topic]]\nname = \"t\"\n", "\n[[topic]]\nname = \"t\"\n")
            .expect_err("t is declared twice");
        assert_eq!(
            err,
            "plugins/extra.toml:3:8: topic[0].name: topic \"t\" is already declared in \
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

    #[test]
    fn explicit_zero_memory_is_rejected() {
        let err = Config::parse(
            "[plugin.a]\nlimits = { memory_mib = 0 }\n",
            Path::new("e.toml"),
        )
        .expect_err("zero memory");
        assert_eq!(
            err.to_string(),
            "e.toml:2:25: plugin.a.limits.memory_mib: expected 1 to 512 (runtime.max_memory_mib), found 0"
        );
    }
}
