//! The host's Prometheus metrics, served at `GET /metrics` on the admin routes.
//!
//! Each host has its own registry (no process-wide recorder), so several hosts in one process
//! (as in tests) keep their numbers apart. Counters and histograms are updated where things
//! happen; consumer lag and the instance pool are read from their owners at scrape time.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// An input's labels: which plugin (and version) handled what, with which outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InputLabels {
    plugin: String,
    version: String,
    /// The consumed topic, or `http`.
    source: String,
    /// `ok`, or the failure's kind (`invalid`, `retry`, `trap`, `timeout`, `memory-limit`, ...).
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginSource {
    plugin: String,
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabel {
    plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostLabel {
    host: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabel {
    topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    /// The route's pattern, or `none` when no route matched.
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoadLabels {
    plugin: String,
    /// `ok` or `rejected`.
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LagLabels {
    group: String,
    topic: String,
    partition: i32,
}

/// How far one consumer group is behind on one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// The consumer group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// Records published and not yet committed by the group.
    pub records: i64,
}

/// The metrics of one host.
pub struct Metrics {
    registry: Registry,
    inputs: Family<InputLabels, Counter>,
    handler_seconds: Family<PluginSource, Histogram>,
    produced: Family<TopicLabel, Counter>,
    retries: Family<PluginSource, Counter>,
    dead_letters: Family<PluginSource, Counter>,
    http_requests: Family<HttpLabels, Counter>,
    loads: Family<LoadLabels, Counter>,
    commit_batch: Histogram,
    lag: Family<LagLabels, Gauge>,
    instances: Gauge,
    memory_peak: Family<PluginLabel, Gauge>,
    host: Family<HostLabel, Gauge>,
    /// Scrapes render one at a time: lag is replaced as a whole before each.
    render: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric, registered and at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("eventhost");
        let inputs = Family::default();
        registry.register(
            "inputs",
            "Inputs handled, by plugin, version, source and outcome",
            inputs.clone(),
        );
        let handler_seconds = Family::<PluginSource, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.5, 14))
        });
        registry.register(
            "handler_seconds",
            "Time a handler ran on its instance, by plugin and source",
            handler_seconds.clone(),
        );
        let produced = Family::default();
        registry.register(
            "messages_produced",
            "Messages published by plugins, by topic",
            produced.clone(),
        );
        let retries = Family::default();
        registry.register(
            "retries",
            "Inputs tried again after a failure, by plugin and topic",
            retries.clone(),
        );
        let dead_letters = Family::default();
        registry.register(
            "dead_letters",
            "Inputs sent to a dead-letter topic, by plugin and topic",
            dead_letters.clone(),
        );
        let http_requests = Family::default();
        registry.register(
            "http_requests",
            "HTTP requests to plugin routes, by route, method and status",
            http_requests.clone(),
        );
        let loads = Family::default();
        registry.register(
            "plugin_loads",
            "Plugin versions loaded or rejected, by plugin",
            loads.clone(),
        );
        let commit_batch = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        registry.register(
            "commit_batch_inputs",
            "Inputs whose state writes went into one store transaction",
            commit_batch.clone(),
        );
        let lag = Family::default();
        registry.register(
            "consumer_lag_records",
            "Records not yet committed by a consumer group, by group, topic and partition",
            lag.clone(),
        );
        let instances = Gauge::default();
        registry.register(
            "instances_in_use",
            "Plugin instances alive now",
            instances.clone(),
        );
        let memory_peak = Family::default();
        registry.register(
            "instance_memory_peak_bytes",
            "The largest linear memory any instance of a plugin had, by plugin",
            memory_peak.clone(),
        );
        let host = Family::default();
        registry.register(
            "host_info",
            "1, labelled with this host's id among the hosts of a fleet",
            host.clone(),
        );
        Metrics {
            registry,
            host,
            memory_peak,
            inputs,
            handler_seconds,
            produced,
            retries,
            dead_letters,
            http_requests,
            loads,
            commit_batch,
            lag,
            instances,
            render: Mutex::default(),
        }
    }

    /// One input finished (`outcome` `ok`) or failed (the failure's kind).
    pub fn input(&self, plugin: &str, version: &str, source: &str, outcome: &str) {
        let labels = InputLabels {
            plugin: plugin.into(),
            version: version.into(),
            source: source.into(),
            outcome: outcome.into(),
        };
        self.inputs.get_or_create(&labels).inc();
    }

    /// A handler ran for `seconds`.
    pub fn handler_time(&self, plugin: &str, source: &str, seconds: f64) {
        let labels = PluginSource {
            plugin: plugin.into(),
            source: source.into(),
        };
        self.handler_seconds.get_or_create(&labels).observe(seconds);
    }

    /// Messages published to `topic`.
    pub fn produced(&self, topic: &str, count: u64) {
        let labels = TopicLabel {
            topic: topic.into(),
        };
        self.produced.get_or_create(&labels).inc_by(count);
    }

    /// An input of `topic` will be tried again.
    pub fn retry(&self, plugin: &str, topic: &str) {
        let labels = PluginSource {
            plugin: plugin.into(),
            source: topic.into(),
        };
        self.retries.get_or_create(&labels).inc();
    }

    /// An input of `topic` went to its dead-letter topic.
    pub fn dead_letter(&self, plugin: &str, topic: &str) {
        let labels = PluginSource {
            plugin: plugin.into(),
            source: topic.into(),
        };
        self.dead_letters.get_or_create(&labels).inc();
    }

    /// An HTTP request was answered.
    pub fn http_request(&self, route: &str, method: &str, status: u16) {
        let labels = HttpLabels {
            route: route.into(),
            method: method.into(),
            status,
        };
        self.http_requests.get_or_create(&labels).inc();
    }

    /// This host is known as `id`.
    pub fn host(&self, id: &str) {
        self.host.clear();
        let labels = HostLabel { host: id.into() };
        self.host.get_or_create(&labels).set(1);
    }

    /// A plugin version was loaded (`ok`) or rejected.
    pub fn plugin_load(&self, plugin: &str, ok: bool) {
        let labels = LoadLabels {
            plugin: plugin.into(),
            outcome: if ok { "ok" } else { "rejected" }.into(),
        };
        self.loads.get_or_create(&labels).inc();
    }

    /// An instance of `plugin` had `bytes` of linear memory at most.
    pub fn instance_memory(&self, plugin: &str, bytes: usize) {
        let labels = PluginLabel {
            plugin: plugin.to_string(),
        };
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        let peak = self.memory_peak.get_or_create(&labels);
        peak.inner()
            .fetch_max(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// The state writes of `inputs` inputs went into one store transaction.
    pub fn commit_batch(&self, inputs: usize) {
        self.commit_batch.observe(inputs as f64);
    }

    /// The text exposition, with consumer lag and the instances in use as they are now.
    pub fn render(&self, lag: &[PartitionLag], instances: usize) -> String {
        let _one_at_a_time = self.render.lock().unwrap_or_else(|e| e.into_inner());
        self.lag.clear();
        for entry in lag {
            let labels = LagLabels {
                group: entry.group.clone(),
                topic: entry.topic.clone(),
                partition: entry.partition,
            };
            self.lag.get_or_create(&labels).set(entry.records);
        }
        self.instances.set(instances as i64);
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_their_labels_and_lag_as_it_is_now() {
        let metrics = Metrics::new();
        metrics.input("payment", "abc", "orders", "ok");
        metrics.input("payment", "abc", "orders", "ok");
        metrics.produced("payments", 3);
        let lag = |records| PartitionLag {
            group: "g".into(),
            topic: "orders".into(),
            partition: 1,
            records,
        };
        let text = metrics.render(&[lag(7)], 2);
        assert!(text.contains(
            r#"eventhost_inputs_total{plugin="payment",version="abc",source="orders",outcome="ok"} 2"#
        ), "{text}");
        assert!(text.contains(r#"eventhost_messages_produced_total{topic="payments"} 3"#));
        assert!(text.contains(
            r#"eventhost_consumer_lag_records{group="g",topic="orders",partition="1"} 7"#
        ));
        assert!(text.contains("eventhost_instances_in_use 2"));
        let text = metrics.render(&[], 0);
        assert!(!text.contains("eventhost_consumer_lag_records{"), "{text}");
    }
}
