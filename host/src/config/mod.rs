//! TOML configuration → validated [`Config`].
//!
//! One file describes a deployment: the HTTP server, the bus, the state store, the runtime,
//! and the plugins bound to topics and routes. Loading happens in two layers: private serde
//! structs mirror the TOML exactly, with newtypes that refuse bad values where they stand
//! (unknown keys are errors too), then `validate` fills in defaults, resolves relative paths
//! against the file's directory and checks every reference. Every error names the file, line
//! and column, and shows the offending line ([`ConfigError`]).
//!
//! ```
//! use std::path::Path;
//! use eventhost::config::{BusConfig, Config};
//!
//! let text = r#"
//!     [[topic]]
//!     name = "orders"
//!
//!     [plugin.cart]
//!     publish = ["orders"]
//!
//!     [[route]]
//!     method = "post"
//!     path = "/api/cart/{cart_id}"
//!     plugin = "cart"
//! "#;
//! let config = Config::parse(text, Path::new("deploy/eventhost.toml"))?;
//! assert_eq!(config.bus, BusConfig::Embedded);
//! assert_eq!(config.routes[0].method, "POST");
//! assert_eq!(config.plugins["cart"].path, Path::new("deploy/plugins/cart.wasm"));
//!
//! let err = Config::parse("[[route]]\nmethod = \"GET\"\npath = \"/\"\nplugin = \"carts\"\n",
//!     Path::new("e.toml")).unwrap_err();
//! assert_eq!(err.to_string(), "e.toml:4:10: plugin \"carts\" is not defined, expected \
//!     the name of a [plugin.<name>] table\n 4 | plugin = \"carts\"\n   |          ^^^^^^^");
//! # Ok::<(), eventhost::config::ConfigError>(())
//! ```

mod cors;
mod drop_in;
mod error;
mod model;
mod names;
mod raw;
mod source;
mod validate;
mod wiring;

use std::path::Path;

pub use error::ConfigError;
pub use model::{
    Allowed, BusConfig, Config, CorsConfig, KafkaConfig, Limits, PluginConfig, RetryPolicy,
    RouteConfig, RuntimeConfig, ServerConfig, StateConfig, SubscriptionConfig, TelemetryConfig,
    TopicConfig,
};

impl Config {
    /// Reads and validates the configuration file at `path`.
    ///
    /// Relative paths in it are resolved against `path`'s directory, so a relative `path`
    /// yields paths relative to the current directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            file: path.to_owned(),
            error,
        })?;
        Self::parse(&text, path)
    }

    /// Reads the configuration file at `path` together with the drop-in plugins of its
    /// plugins folder: each `<name>.wasm` there is a plugin, bound by an optional `<name>.toml`
    /// beside it. This is what the host runs; [`Config::load`] reads the file alone.
    pub fn load_deployment(path: &Path) -> Result<Config, ConfigError> {
        drop_in::load(path)
    }

    /// Validates configuration `text` as if read from `file`, which names it in errors and
    /// anchors its relative paths; `file` itself is not read.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let raw = raw::RawConfig::parse(text, file)?;
        validate::validate(raw, file)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;

    fn parse(text: &str) -> Config {
        Config::parse(text, Path::new("conf/eventhost.toml")).expect("valid config")
    }

    #[test]
    fn an_empty_file_is_all_defaults() {
        let config = parse("");
        assert_eq!(config.file, Path::new("conf/eventhost.toml"));
        assert_eq!(config.server.listen, ServerConfig::DEFAULT_LISTEN);
        assert_eq!(config.server.admin_listen, None);
        assert_eq!(config.server.static_dir, None);
        assert_eq!(config.server.body_limit_bytes, 1024 * 1024);
        assert_eq!(config.server.shutdown_grace, Duration::from_secs(10));
        assert_eq!(config.bus, BusConfig::Embedded);
        assert_eq!(
            config.state,
            StateConfig::Embedded {
                path: "conf/data/state.redb".into()
            }
        );
        assert_eq!(config.runtime.plugins_dir, Path::new("conf/plugins"));
        assert_eq!(config.runtime.max_memory_mib, 512);
        assert_eq!(config.runtime.max_concurrency, 256);
        assert_eq!(config.runtime.cache_dir, None);
        assert_eq!(config.telemetry.otlp_endpoint, None);
        assert_eq!(config.telemetry.service_name, "eventhost");
        assert!(config.topics.is_empty() && config.plugins.is_empty());
        assert!(config.subscriptions.is_empty() && config.routes.is_empty());
    }

    #[test]
    fn paths_resolve_against_the_config_dir_unless_absolute() {
        let config = parse(
            "[server]\nstatic_dir = \"web\"\n[runtime]\nplugins_dir = \"/opt/p\"\n\
             cache_dir = \"cache\"\n[plugin.a]\n[plugin.b]\npath = \"b/b.wasm\"\n",
        );
        assert_eq!(config.server.static_dir, Some(PathBuf::from("conf/web")));
        assert_eq!(config.runtime.cache_dir, Some(PathBuf::from("conf/cache")));
        assert_eq!(config.plugins["a"].path, Path::new("/opt/p/a.wasm"));
        assert_eq!(config.plugins["b"].path, Path::new("conf/b/b.wasm"));
    }

    #[test]
    fn plugin_defaults_and_scalar_config() {
        let config = parse(
            "[runtime]\nmax_memory_mib = 32\n[plugin.a]\n\
             config = { delay_ms = 5000, rate = 0.5, on = true, name = \"x\" }\n",
        );
        let a = &config.plugins["a"];
        assert_eq!(
            a.limits.memory_mib, 32,
            "default is capped by the runtime ceiling"
        );
        assert_eq!(a.limits.timeout, Duration::from_secs(5));
        let expected = [
            ("delay_ms", "5000"),
            ("name", "x"),
            ("on", "true"),
            ("rate", "0.5"),
        ];
        let expected: BTreeMap<String, String> = expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(a.config, expected);
    }

    #[test]
    fn subscription_defaults_add_an_implicit_dead_letter_topic() {
        let config = parse(
            "[[topic]]\nname = \"orders\"\nreplication = 3\n[plugin.pay]\n\
             [[subscription]]\ntopic = \"orders\"\nplugin = \"pay\"\n",
        );
        let sub = &config.subscriptions[0];
        assert_eq!(sub.group, "pay");
        assert_eq!(sub.dead_letter, "orders.dlq");
        assert_eq!(sub.retry, RetryPolicy::default());
        let dlq = &config.topics["orders.dlq"];
        assert_eq!((dlq.partitions, dlq.replication), (1, 3));
        assert_eq!(config.topics["orders"].partitions, 3);
    }

    #[test]
    fn kafka_options_become_strings() {
        let config = parse(
            "[bus]\nkind = \"kafka\"\nbootstrap = \"k:9092\"\n[bus.options]\n\
             \"linger.ms\" = 5\n\"socket.keepalive.enable\" = true\n\"compression.type\" = \"lz4\"\n",
        );
        let BusConfig::Kafka(kafka) = config.bus else {
            panic!("expected kafka, got {:?}", config.bus);
        };
        assert_eq!(kafka.client_id, "eventhost");
        assert_eq!(kafka.options["linger.ms"], "5");
        assert_eq!(kafka.options["socket.keepalive.enable"], "true");
        assert_eq!(kafka.options["compression.type"], "lz4");
    }

    #[test]
    fn same_shape_routes_must_spell_parameters_alike() {
        let routes = "[plugin.a]\n[[route]]\nmethod = \"GET\"\npath = \"/c/{id}\"\nplugin = \"a\"\n\
                      [[route]]\nmethod = \"POST\"\npath = \"/c/{cid}\"\nplugin = \"a\"\n";
        assert!(Config::parse(routes, Path::new("e.toml")).is_err());
        let ok = routes.replace("{cid}", "{id}");
        let config = Config::parse(&ok, Path::new("e.toml")).unwrap();
        assert_eq!(config.routes.len(), 2);
    }

    #[test]
    fn unreadable_file() {
        let err = Config::load(Path::new("/nonexistent/eventhost.toml")).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(
            err.summary()
                .starts_with("/nonexistent/eventhost.toml: cannot read: "),
            "{err}"
        );
    }
}
