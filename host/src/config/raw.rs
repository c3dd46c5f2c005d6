//! Serde structs that mirror the TOML file one to one.
//!
//! Nothing here is validated beyond TOML syntax, unknown keys and value types; values that
//! later checks must point at are kept [`Spanned`]. `validate` turns a [`RawConfig`] into the
//! domain [`Config`](super::Config). Keys are singular because each `[[topic]]`,
//! `[plugin.X]`, `[[subscription]]` and `[[route]]` table declares one thing.
//!
//! Every collection item carries an [`Origin`], so raw tables from several files (a plugin's
//! drop-in binding file beside its `.wasm`) can be merged with [`RawConfig::merge`] before
//! validation and still report errors against their own file.

use std::collections::BTreeMap;
use std::fmt;
use std::num::{NonZeroU32, NonZeroU64};
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{self, Visitor};
use serde_spanned::Spanned;

use super::error::ConfigError;
use super::names::Origin as CorsOrigin;
use super::names::{
    Address, AdminToken, HeaderName, Method, NonEmpty, OtlpEndpoint, PluginName, PostgresUrl,
    RoutePath, TopicName,
};
use super::source::{Origin, Source};
use crate::bus::Limit;

/// A whole configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    /// The main file; where `[server]`, `[bus]`, `[state]`, `[runtime]` and `[telemetry]`
    /// come from.
    #[serde(skip)]
    pub(crate) source: Arc<Source>,
    #[serde(default)]
    pub(crate) server: RawServer,
    #[serde(default)]
    pub(crate) bus: RawBus,
    #[serde(default)]
    pub(crate) state: RawState,
    #[serde(default)]
    pub(crate) runtime: RawRuntime,
    #[serde(default)]
    pub(crate) telemetry: RawTelemetry,
    #[serde(default)]
    pub(crate) topic: Vec<RawTopic>,
    #[serde(default)]
    pub(crate) plugin: BTreeMap<Spanned<PluginName>, RawPlugin>,
    #[serde(default)]
    pub(crate) subscription: Vec<RawSubscription>,
    #[serde(default)]
    pub(crate) route: Vec<RawRoute>,
}

/// `[server]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub(crate) listen: Option<Address>,
    pub(crate) admin_listen: Option<Spanned<Address>>,
    pub(crate) admin_token: Option<AdminToken>,
    pub(crate) static_dir: Option<NonEmpty>,
    pub(crate) body_limit_kib: Option<NonZeroU64>,
    pub(crate) shutdown_grace_ms: Option<u64>,
    pub(crate) header_timeout_ms: Option<NonZeroU64>,
    pub(crate) body_timeout_ms: Option<NonZeroU64>,
    pub(crate) max_connections: Option<NonZeroU32>,
    pub(crate) cors: Option<RawCors>,
}

/// `[server.cors]`; checked in `cors`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCors {
    pub(crate) origins: Spanned<AnyOrList<CorsOrigin>>,
    pub(crate) methods: Option<Spanned<Vec<Method>>>,
    pub(crate) headers: Option<Spanned<AnyOrList<HeaderName>>>,
    pub(crate) max_age_secs: Option<Spanned<u64>>,
    pub(crate) credentials: Option<bool>,
}

/// A value that is either one string (such as `"*"`) or a list.
#[derive(Debug)]
pub(crate) enum AnyOrList<T> {
    One(String),
    List(Vec<T>),
}

/// `[bus]`; which keys are allowed depends on `kind`, so that is checked in `validate`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBus {
    pub(crate) kind: Option<Spanned<BusKind>>,
    pub(crate) bootstrap: Option<Spanned<NonEmpty>>,
    pub(crate) client_id: Option<Spanned<NonEmpty>>,
    pub(crate) exactly_once: Option<Spanned<bool>>,
    pub(crate) options: Option<BTreeMap<Spanned<String>, Spanned<Scalar>>>,
}

/// `kind` of `[bus]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum BusKind {
    #[default]
    Embedded,
    Kafka,
}

/// `[state]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawState {
    pub(crate) kind: Option<Spanned<StateKind>>,
    pub(crate) path: Option<Spanned<NonEmpty>>,
    pub(crate) url: Option<Spanned<PostgresUrl>>,
}

/// `kind` of `[state]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StateKind {
    #[default]
    Embedded,
    Postgres,
}

/// `[runtime]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRuntime {
    pub(crate) plugins_dir: Option<NonEmpty>,
    pub(crate) max_memory_mib: Option<NonZeroU64>,
    pub(crate) max_concurrency: Option<NonZeroU32>,
    pub(crate) cache_dir: Option<NonEmpty>,
    pub(crate) guest_threads: Option<NonZeroU32>,
}

/// `[telemetry]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTelemetry {
    pub(crate) otlp_endpoint: Option<OtlpEndpoint>,
    pub(crate) service_name: Option<NonEmpty>,
}

/// `[[topic]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTopic {
    #[serde(skip)]
    pub(crate) origin: Origin,
    pub(crate) name: Spanned<TopicName>,
    pub(crate) partitions: Option<NonZeroU32>,
    pub(crate) replication: Option<Replication>,
    #[serde(default)]
    pub(crate) retention: RawRetention,
}

/// A topic's replication factor: at least 1, or -1 for the broker's default.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "i16")]
pub(crate) struct Replication(pub(crate) i16);

impl TryFrom<i16> for Replication {
    type Error = String;
    fn try_from(n: i16) -> Result<Self, String> {
        match n {
            -1 | 1.. => Ok(Self(n)),
            _ => Err(format!(
                "expected at least 1, or -1 for the broker's default, found {n}"
            )),
        }
    }
}

/// `retention = { .. }` of a topic: Kafka's `retention.bytes` and `retention.ms`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetention {
    pub(crate) bytes: Option<RetentionLimit>,
    pub(crate) ms: Option<RetentionLimit>,
}

/// A retention limit: at least 1, or -1 for no limit.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "i64")]
pub(crate) struct RetentionLimit(pub(crate) Limit<u64>);

impl TryFrom<i64> for RetentionLimit {
    type Error = String;
    fn try_from(n: i64) -> Result<Self, String> {
        match n {
            -1 => Ok(Self(Limit::Unlimited)),
            1.. => Ok(Self(Limit::At(n.unsigned_abs()))),
            _ => Err(format!(
                "expected at least 1, or -1 for no limit, found {n}"
            )),
        }
    }
}

/// A drop-in binding file `<plugins_dir>/<name>.toml`: one plugin's own tables.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDropIn {
    #[serde(default)]
    plugin: BTreeMap<Spanned<PluginName>, RawPlugin>,
    #[serde(default)]
    subscription: Vec<RawSubscription>,
    #[serde(default)]
    route: Vec<RawRoute>,
}

/// `[plugin.<name>]`; the name is the map key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPlugin {
    #[serde(skip)]
    pub(crate) origin: Origin,
    pub(crate) path: Option<NonEmpty>,
    #[serde(default)]
    pub(crate) publish: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) config: BTreeMap<String, Scalar>,
    #[serde(default)]
    pub(crate) limits: RawLimits,
    pub(crate) cloudevents: Option<RawCloudEvents>,
    pub(crate) instance: Option<Instance>,
    pub(crate) reuse_inputs: Option<Spanned<NonZeroU32>>,
}

/// `instance` of a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Instance {
    Fresh,
    Reuse,
}

/// `cloudevents = { .. }` of a plugin.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCloudEvents {
    pub(crate) source: Option<NonEmpty>,
    #[serde(rename = "type")]
    pub(crate) event_type: Option<NonEmpty>,
}

/// `limits = { .. }` of a plugin.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub(crate) memory_mib: Option<Spanned<NonZeroU64>>,
    pub(crate) timeout_ms: Option<NonZeroU64>,
    pub(crate) outbox_messages: Option<NonZeroU64>,
    pub(crate) outbox_kib: Option<NonZeroU64>,
    pub(crate) state_writes: Option<NonZeroU64>,
    pub(crate) state_write_kib: Option<NonZeroU64>,
    pub(crate) state_read_kib: Option<NonZeroU64>,
    pub(crate) log_kib: Option<NonZeroU64>,
    pub(crate) response_kib: Option<NonZeroU64>,
    pub(crate) concurrency: Option<Spanned<NonZeroU32>>,
}

/// `[[subscription]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSubscription {
    #[serde(skip)]
    pub(crate) origin: Origin,
    pub(crate) topic: Spanned<String>,
    pub(crate) plugin: Spanned<String>,
    pub(crate) group: Option<Spanned<NonEmpty>>,
    pub(crate) dead_letter: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) retry: RawRetry,
    pub(crate) concurrency: Option<Spanned<u32>>,
    pub(crate) max_pending: Option<Spanned<u32>>,
}

/// `retry = { .. }` of a subscription.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetry {
    pub(crate) attempts: Option<NonZeroU32>,
    pub(crate) backoff_ms: Option<Spanned<u64>>,
    pub(crate) max_backoff_ms: Option<Spanned<u64>>,
}

/// `[[route]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    #[serde(skip)]
    pub(crate) origin: Origin,
    pub(crate) method: Method,
    pub(crate) path: Spanned<RoutePath>,
    pub(crate) plugin: Spanned<String>,
}

impl RawConfig {
    /// Parses `text`, read from `file`, and records that file as the origin of every table.
    pub(crate) fn parse(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let source = Source::new(file, text);
        let mut raw: Self = toml::from_str(text).map_err(|e| source.toml_error(&e))?;
        raw.set_origin(&source);
        raw.source = source;
        Ok(raw)
    }

    /// Parses a drop-in binding file: only `[plugin.<name>]`, `[[subscription]]` and
    /// `[[route]]` tables, each about `plugin` (the file's own plugin).
    pub(crate) fn parse_drop_in(
        text: &str,
        file: &Path,
        plugin: &str,
    ) -> Result<Self, ConfigError> {
        let source = Source::new(file, text);
        let drop_in: RawDropIn = toml::from_str(text).map_err(|e| source.toml_error(&e))?;
        let foreign = |name: &Spanned<String>| {
            (name.get_ref() != plugin).then(|| {
                let message = format!(
                    "a drop-in file may only bind its own plugin {plugin:?}, not {:?}",
                    name.get_ref()
                );
                source.error(name.span(), message)
            })
        };
        let names = drop_in
            .plugin
            .keys()
            .map(|name| Spanned::new(name.span(), name.get_ref().0.clone()));
        let references = (drop_in.subscription.iter().map(|sub| sub.plugin.clone()))
            .chain(drop_in.route.iter().map(|route| route.plugin.clone()));
        if let Some(err) = names.chain(references).find_map(|name| foreign(&name)) {
            return Err(err);
        }
        let mut raw = RawConfig {
            plugin: drop_in.plugin,
            subscription: drop_in.subscription,
            route: drop_in.route,
            ..RawConfig::default()
        };
        raw.set_origin(&source);
        raw.source = source;
        Ok(raw)
    }

    /// Adds the topics, plugins, subscriptions and routes of `other` (e.g. a drop-in file) to
    /// `self`. Its `[server]`, `[bus]`, `[state]`, `[runtime]` and `[telemetry]` are ignored; a drop-in
    /// format should reject them before merging. A plugin defined in both is an error that
    /// points at the second definition.
    pub(crate) fn merge(&mut self, other: Self) -> Result<(), ConfigError> {
        for (name, plugin) in other.plugin {
            if let Some((first, existing)) = self.plugin.get_key_value(&name) {
                let (line, _) = existing.origin.source.position(first.span().start);
                let first_file = existing.origin.source.path().display();
                return Err(plugin.origin.source.error(
                    name.span(),
                    format!(
                        "plugin {:?} is already defined in {first_file} at line {line}",
                        name.get_ref().0
                    ),
                ));
            }
            self.plugin.insert(name, plugin);
        }
        self.topic.extend(other.topic);
        self.subscription.extend(other.subscription);
        self.route.extend(other.route);
        Ok(())
    }

    fn set_origin(&mut self, source: &Arc<Source>) {
        let origin = |index| Origin {
            source: Arc::clone(source),
            index,
        };
        for (index, topic) in self.topic.iter_mut().enumerate() {
            topic.origin = origin(index);
        }
        for plugin in self.plugin.values_mut() {
            plugin.origin = origin(0);
        }
        for (index, subscription) in self.subscription.iter_mut().enumerate() {
            subscription.origin = origin(index);
        }
        for (index, route) in self.route.iter_mut().enumerate() {
            route.origin = origin(index);
        }
    }
}

/// A TOML string, integer, float or boolean, kept as such until it is turned into a string.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
}

impl fmt::Display for Scalar {
    /// The value as a plugin or librdkafka sees it: strings verbatim, `5000`, `0.5`, `true`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::String(s) => f.write_str(s),
            Self::Integer(i) => write!(f, "{i}"),
            // `Debug` keeps the `.0` of whole floats and round-trips every value.
            Self::Float(x) => write!(f, "{x:?}"),
            Self::Boolean(b) => write!(f, "{b}"),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;

        impl Visitor<'_> for ScalarVisitor {
            type Value = Scalar;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, integer, float or boolean")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::String(v.to_owned()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar::String(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Integer(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                i64::try_from(v)
                    .map(Scalar::Integer)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Float(v))
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Boolean(v))
            }
        }

        deserializer.deserialize_any(ScalarVisitor)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for AnyOrList<T> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AnyOrListVisitor<T>(std::marker::PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for AnyOrListVisitor<T> {
            type Value = AnyOrList<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"*\" or an array of strings")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<AnyOrList<T>, E> {
                Ok(AnyOrList::One(v.to_owned()))
            }

            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<AnyOrList<T>, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(AnyOrList::List(items))
            }
        }

        deserializer.deserialize_any(AnyOrListVisitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> RawConfig {
        RawConfig::parse(text, Path::new("main.toml")).expect("valid raw config")
    }

    #[test]
    fn scalars_keep_their_toml_spelling() {
        let raw =
            parse("[plugin.a]\nconfig = { s = \"x\", i = 5000, f = 2.0, g = 0.25, b = true }\n");
        let plugin = raw.plugin.values().next().expect("one plugin");
        let config: Vec<(&str, String)> = plugin
            .config
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_string()))
            .collect();
        let expected = [
            ("b", "true"),
            ("f", "2.0"),
            ("g", "0.25"),
            ("i", "5000"),
            ("s", "x"),
        ];
        let expected = expected.map(|(k, v)| (k, v.to_owned()));
        assert_eq!(config, expected);
    }

    #[test]
    fn tables_and_arrays_are_not_scalars() {
        let err = RawConfig::parse("[plugin.a]\nconfig = { k = [1] }\n", Path::new("m.toml"))
            .expect_err("an array is not a scalar");
        assert_eq!(
            err.summary(),
            "m.toml:2:16: invalid type: sequence, \
             expected a string, integer, float or boolean"
        );
    }

    #[test]
    fn origins_index_each_kind_separately() {
        let raw = parse(
            "[[route]]\nmethod = \"GET\"\npath = \"/\"\nplugin = \"a\"\n\
             [[route]]\nmethod = \"GET\"\npath = \"/b\"\nplugin = \"a\"\n\
             [[subscription]]\ntopic = \"t\"\nplugin = \"a\"\n",
        );
        assert_eq!(raw.route[1].origin.index, 1);
        assert_eq!(raw.subscription[0].origin.index, 0);
        assert_eq!(raw.route[0].origin.source.path(), Path::new("main.toml"));
    }

    #[test]
    fn merge_appends_and_rejects_a_plugin_defined_twice() {
        let mut main =
            parse("[plugin.a]\n[[route]]\nmethod = \"GET\"\npath = \"/\"\nplugin = \"a\"\n");
        let drop_in = RawConfig::parse(
            "[plugin.b]\n[[route]]\nmethod = \"GET\"\npath = \"/b\"\nplugin = \"b\"\n",
            Path::new("plugins/b.toml"),
        )
        .unwrap();
        main.merge(drop_in).unwrap();
        assert_eq!(main.route.len(), 2);
        assert_eq!(
            main.route[1].origin.source.path(),
            Path::new("plugins/b.toml")
        );
        assert_eq!(main.route[1].origin.index, 0);

        let again = RawConfig::parse("\n[plugin.a]\n", Path::new("plugins/a.toml")).unwrap();
        let err = main.merge(again).expect_err("a is defined twice");
        assert_eq!(
            err.summary(),
            "plugins/a.toml:2:9: plugin \"a\" is already defined in main.toml at line 1"
        );
    }
}
