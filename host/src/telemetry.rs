//! OpenTelemetry trace export: every input (a consumed record or an HTTP request) becomes one
//! span, posted to an OTLP/HTTP collector when `[telemetry] otlp_endpoint` (or
//! `OTEL_EXPORTER_OTLP_ENDPOINT`) is set. Without one, nothing here runs and the trace id
//! stays in the log lines.
//!
//! The spans keep the ids the host already writes into `traceparent` headers (see
//! [`crate::dispatch::Span`]), so what a collector shows links up with what travels on the
//! bus. That is why each span is assembled whole when its input ends and handed to the SDK's
//! batch processor directly: the SDK's tracer makes up span ids of its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter, SpanLinks, SpanProcessor};

use crate::config::{BusConfig, TelemetryConfig};
use crate::dispatch::{InputError, Span};

/// `messaging.system` of records consumed from Kafka.
const KAFKA_SYSTEM: &str = "kafka";
/// `messaging.system` of records consumed from the embedded bus.
const EMBEDDED_SYSTEM: &str = "eventhost-embedded";
/// How long one export may take before it counts as failed.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping host waits for its last spans to reach the collector.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The host's trace export: on, with a collector to send to, or off.
pub struct Telemetry {
    export: Option<Export>,
}

struct Export {
    processor: Arc<BatchSpanProcessor<Tokio>>,
    scope: InstrumentationScope,
    /// `messaging.system` of consumed records.
    messaging_system: &'static str,
    /// Where spans are posted.
    traces_url: String,
}

/// Where an input came from, as its span describes it.
#[derive(Debug, Clone, Copy)]
pub enum InputSource<'a> {
    /// A record consumed by a subscription.
    Record {
        /// The consumed topic.
        topic: &'a str,
        /// The subscription's consumer group.
        group: &'a str,
        /// The record's partition.
        partition: i32,
        /// The record's offset in its partition.
        offset: i64,
        /// The record's key.
        key: Option<&'a [u8]>,
    },
    /// An HTTP request to a route.
    Http {
        /// The route's method.
        method: &'a str,
        /// The route's path pattern, e.g. `/api/cart/{cartId}`.
        route: &'a str,
        /// The request's path.
        path: &'a str,
    },
}

impl Telemetry {
    /// No export: inputs are traced in the log lines only.
    pub fn off() -> Telemetry {
        Telemetry { export: None }
    }

    /// Exports to the collector of `config`, or of [`TelemetryConfig::ENDPOINT_ENV`] when the
    /// config names none; off when neither does. Must run inside the Tokio runtime: the batch
    /// processor is a task of it.
    pub fn start(config: &TelemetryConfig, bus: &BusConfig) -> anyhow::Result<Telemetry> {
        let from_env = std::env::var(TelemetryConfig::ENDPOINT_ENV).ok();
        let Some(endpoint) = endpoint(config, from_env.as_deref())? else {
            return Ok(Telemetry::off());
        };
        let traces_url = format!("{endpoint}{}", TelemetryConfig::TRACES_PATH);
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(&traces_url)
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .with_context(|| format!("cannot export traces to {traces_url}"))?;
        let exporter = Logged {
            inner: exporter,
            traces_url: traces_url.clone(),
            failing: AtomicBool::new(false),
        };
        let mut processor = BatchSpanProcessor::builder(exporter, Tokio).build();
        processor.set_resource(
            &Resource::builder()
                .with_service_name(config.service_name.clone())
                .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                .build(),
        );
        tracing::info!(endpoint = %traces_url, service = %config.service_name, "exporting traces");
        Ok(Telemetry {
            export: Some(Export {
                processor: Arc::new(processor),
                scope: InstrumentationScope::builder("eventhost")
                    .with_version(env!("CARGO_PKG_VERSION"))
                    .build(),
                messaging_system: match bus {
                    BusConfig::Embedded => EMBEDDED_SYSTEM,
                    BusConfig::Kafka(_) => KAFKA_SYSTEM,
                },
                traces_url,
            }),
        })
    }

    /// Where spans are posted; `None` when export is off.
    pub fn traces_url(&self) -> Option<&str> {
        self.export
            .as_ref()
            .map(|export| export.traces_url.as_str())
    }

    /// Starts the span of an input of `plugin` that runs as `span`; it is exported when ended,
    /// unless `span`'s trace is not sampled.
    pub fn input(&self, span: &Span, plugin: &str, source: InputSource<'_>) -> InputSpan {
        let Some(export) = self.export.as_ref().filter(|_| span.sampled()) else {
            // Off, or the trace's origin chose not to sample it.
            return InputSpan { recording: None };
        };
        let (name, kind, mut attributes) = describe(source, export.messaging_system);
        attributes.push(KeyValue::new("eventhost.plugin", plugin.to_string()));
        InputSpan {
            recording: Some(Box::new(Recording {
                processor: export.processor.clone(),
                scope: export.scope.clone(),
                span: *span,
                name,
                kind,
                start: SystemTime::now(),
                attributes,
            })),
        }
    }

    /// Sends the spans still waiting in the batch and stops exporting; spans ended later
    /// are dropped. Waits at most a few seconds for the collector.
    pub async fn shutdown(&self) {
        let Some(export) = &self.export else {
            return;
        };
        let processor = export.processor.clone();
        // The processor blocks its caller until its task has exported: keep that off the
        // async workers, which that task may need.
        let flushed = tokio::task::spawn_blocking(move || processor.shutdown());
        match tokio::time::timeout(FLUSH_TIMEOUT, flushed).await {
            Ok(Ok(Ok(()))) => tracing::debug!("trace export stopped"),
            Ok(Ok(Err(e))) => {
                tracing::warn!(endpoint = %export.traces_url, "the last spans may be lost: {e}");
            }
            Ok(Err(_)) | Err(_) => tracing::warn!(endpoint = %export.traces_url,
                "the last spans may be lost: the collector did not take them within {FLUSH_TIMEOUT:?}"),
        }
    }
}

/// The name, kind and semantic-convention attributes of the span of an input from `source`;
/// `messaging_system` is the bus's name for records.
fn describe(
    source: InputSource<'_>,
    messaging_system: &'static str,
) -> (String, SpanKind, Vec<KeyValue>) {
    let mut attributes = Vec::new();
    let (name, kind) = match source {
        InputSource::Record {
            topic,
            group,
            partition,
            offset,
            key,
        } => {
            attributes.extend([
                KeyValue::new("messaging.system", messaging_system),
                KeyValue::new("messaging.destination.name", topic.to_string()),
                KeyValue::new("messaging.operation.type", "process"),
                KeyValue::new("messaging.operation.name", "process"),
                KeyValue::new("messaging.consumer.group.name", group.to_string()),
                KeyValue::new("messaging.destination.partition.id", partition.to_string()),
            ]);
            if messaging_system == KAFKA_SYSTEM {
                attributes.push(KeyValue::new("messaging.kafka.offset", offset));
                if let Some(key) = key.and_then(|key| std::str::from_utf8(key).ok()) {
                    attributes.push(KeyValue::new(
                        "messaging.kafka.message.key",
                        key.to_string(),
                    ));
                }
            }
            (format!("process {topic}"), SpanKind::Consumer)
        }
        InputSource::Http {
            method,
            route,
            path,
        } => {
            attributes.extend([
                KeyValue::new("http.request.method", method.to_string()),
                KeyValue::new("http.route", route.to_string()),
                KeyValue::new("url.path", path.to_string()),
                KeyValue::new("url.scheme", "http"),
            ]);
            (format!("{method} {route}"), SpanKind::Server)
        }
    };
    (name, kind, attributes)
}

/// The collector's base URL: from the config, else from the environment (checked the same
/// way), else none.
fn endpoint(config: &TelemetryConfig, from_env: Option<&str>) -> anyhow::Result<Option<String>> {
    if let Some(endpoint) = &config.otlp_endpoint {
        return Ok(Some(endpoint.clone()));
    }
    match from_env.map(str::trim).filter(|value| !value.is_empty()) {
        Some(value) => TelemetryConfig::check_endpoint(value)
            .map(Some)
            .map_err(|why| anyhow::anyhow!("{}: {why}", TelemetryConfig::ENDPOINT_ENV)),
        None => Ok(None),
    }
}

/// An input being traced; exported as one span when it ends. Does nothing when export is
/// off. Dropped without an end (an HTTP client that went away), it ends as `cancelled`.
pub struct InputSpan {
    recording: Option<Box<Recording>>,
}

struct Recording {
    processor: Arc<BatchSpanProcessor<Tokio>>,
    scope: InstrumentationScope,
    span: Span,
    name: String,
    kind: SpanKind,
    start: SystemTime,
    attributes: Vec<KeyValue>,
}

impl InputSpan {
    /// Whether this span will be exported.
    pub fn is_recording(&self) -> bool {
        self.recording.is_some()
    }

    /// Records the status code of the HTTP response sent for the input.
    pub fn http_status(&mut self, status: u16) {
        if let Some(recording) = &mut self.recording {
            (recording.attributes).push(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
    }

    /// Ends the input handled by `plugin_version`: committed (`None`) or failed for good.
    pub fn end(mut self, plugin_version: &str, error: Option<&InputError>) {
        let status = match error {
            Some(error) => Ending::Failed(error.kind(), error.to_string()),
            None => Ending::Done,
        };
        self.finish(Some(plugin_version), status);
    }

    /// Ends an input that runs again from the start (it may have read writes that did not
    /// commit): the rerun is a span of its own.
    pub fn end_for_rerun(mut self, plugin_version: &str) {
        self.finish(Some(plugin_version), Ending::Rerun);
    }

    fn finish(&mut self, plugin_version: Option<&str>, ending: Ending) {
        let Some(recording) = self.recording.take() else {
            return;
        };
        let Recording {
            processor,
            scope,
            span,
            name,
            kind,
            start,
            mut attributes,
        } = *recording;
        if let Some(version) = plugin_version {
            attributes.push(KeyValue::new(
                "eventhost.plugin.version",
                version.to_string(),
            ));
        }
        let server_error = (attributes.iter())
            .find(|kv| kv.key.as_str() == "http.response.status_code")
            .and_then(|kv| match kv.value {
                opentelemetry::Value::I64(status) if status >= 500 => Some(status),
                _ => None,
            });
        let status = match ending {
            Ending::Failed(kind, description) => {
                attributes.push(KeyValue::new("error.type", kind));
                Status::error(description)
            }
            Ending::Cancelled => {
                attributes.push(KeyValue::new("error.type", "cancelled"));
                Status::error("the input was cancelled")
            }
            Ending::Rerun => {
                attributes.push(KeyValue::new("eventhost.rerun", true));
                Status::Unset
            }
            // A plugin's own answer of 5xx is a server error by the HTTP conventions.
            Ending::Done => match server_error {
                Some(status) => {
                    attributes.push(KeyValue::new("error.type", status.to_string()));
                    Status::error(format!("answered {status}"))
                }
                None => Status::Unset,
            },
        };
        processor.on_end(SpanData {
            span_context: SpanContext::new(
                TraceId::from_bytes(span.trace_id_bytes()),
                SpanId::from_bytes(span.span_id()),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: span.parent_id().map_or(SpanId::INVALID, SpanId::from_bytes),
            parent_span_is_remote: span.parent_id().is_some(),
            span_kind: kind,
            name: name.into(),
            start_time: start,
            end_time: SystemTime::now(),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: scope,
        });
    }
}

impl Drop for InputSpan {
    fn drop(&mut self) {
        self.finish(None, Ending::Cancelled);
    }
}

/// How an input ended, for its span's status.
enum Ending {
    Done,
    Failed(&'static str, String),
    Rerun,
    Cancelled,
}

/// The OTLP exporter, saying in the host's log when the collector cannot be reached and when
/// it can again, rather than once per batch.
#[derive(Debug)]
struct Logged {
    inner: opentelemetry_otlp::SpanExporter,
    traces_url: String,
    failing: AtomicBool,
}

impl SpanExporter for Logged {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        match &result {
            Err(e) if !self.failing.swap(true, Ordering::Relaxed) => {
                tracing::warn!(endpoint = %self.traces_url, spans,
                    "cannot export traces, dropping spans until the collector answers: {e}");
            }
            Err(e) => tracing::debug!(endpoint = %self.traces_url, spans, "spans dropped: {e}"),
            Ok(()) if self.failing.swap(false, Ordering::Relaxed) => {
                tracing::info!(endpoint = %self.traces_url, "exporting traces again");
            }
            Ok(()) => {}
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(endpoint: Option<&str>) -> TelemetryConfig {
        TelemetryConfig {
            otlp_endpoint: endpoint.map(str::to_string),
            service_name: TelemetryConfig::DEFAULT_SERVICE_NAME.into(),
        }
    }

    #[test]
    fn the_config_wins_over_the_environment() {
        let configured = config(Some("http://collector:4318"));
        let env = Some("http://other:4318");
        assert_eq!(
            endpoint(&configured, env).unwrap().as_deref(),
            Some("http://collector:4318")
        );
    }

    #[test]
    fn the_environment_is_checked_like_the_config() {
        assert_eq!(
            endpoint(&config(None), Some("http://agent:4318/"))
                .unwrap()
                .as_deref(),
            Some("http://agent:4318")
        );
        assert_eq!(endpoint(&config(None), Some("")).unwrap(), None);
        assert_eq!(endpoint(&config(None), None).unwrap(), None);
        let error = endpoint(&config(None), Some("https://agent:4318")).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("OTEL_EXPORTER_OTLP_ENDPOINT: \"https://agent:4318\" uses https"),
            "{error}"
        );
    }

    fn attributes(source: InputSource<'_>, system: &'static str) -> Vec<(String, String)> {
        let (_, _, attributes) = describe(source, system);
        (attributes.into_iter())
            .map(|kv| (kv.key.to_string(), kv.value.to_string()))
            .collect()
    }

    fn record(key: Option<&[u8]>) -> InputSource<'_> {
        InputSource::Record {
            topic: "orders",
            group: "payment-service",
            partition: 2,
            offset: 41,
            key,
        }
    }

    #[test]
    fn a_kafka_record_has_its_offset_and_text_key() {
        let kafka = attributes(record(Some(b"o1")), KAFKA_SYSTEM);
        let has = |key: &str, value: &str| kafka.contains(&(key.into(), value.into()));
        assert!(has("messaging.system", "kafka"), "{kafka:?}");
        assert!(has("messaging.destination.partition.id", "2"), "{kafka:?}");
        assert!(has("messaging.kafka.offset", "41"), "{kafka:?}");
        assert!(has("messaging.kafka.message.key", "o1"), "{kafka:?}");
        // A key that is not text is left out rather than mangled.
        let binary = attributes(record(Some(&[0xff, 0])), KAFKA_SYSTEM);
        assert!(
            !binary
                .iter()
                .any(|(k, _)| k == "messaging.kafka.message.key")
        );
    }

    #[test]
    fn an_embedded_record_has_no_kafka_attributes() {
        let embedded = attributes(record(Some(b"o1")), EMBEDDED_SYSTEM);
        assert!(embedded.contains(&("messaging.system".into(), EMBEDDED_SYSTEM.into())));
        assert!(
            !embedded
                .iter()
                .any(|(k, _)| k.starts_with("messaging.kafka."))
        );
    }

    #[test]
    fn an_http_span_is_named_by_method_and_route() {
        let source = InputSource::Http {
            method: "POST",
            route: "/api/cart/checkout/{cartId}",
            path: "/api/cart/checkout/c1",
        };
        let (name, kind, _) = describe(source, EMBEDDED_SYSTEM);
        assert_eq!(name, "POST /api/cart/checkout/{cartId}");
        assert_eq!(kind, SpanKind::Server);
    }

    #[tokio::test]
    async fn an_unsampled_trace_is_not_recorded() {
        let telemetry = Telemetry::start(&config(Some("http://127.0.0.1:9")), &BusConfig::Embedded)
            .expect("starts");
        let source = InputSource::Http {
            method: "GET",
            route: "/a",
            path: "/a",
        };
        let sampled = Span::continuing(None);
        assert!(telemetry.input(&sampled, "p", source).is_recording());
        let unsampled = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let unsampled = Span::continuing(Some(unsampled));
        assert!(!telemetry.input(&unsampled, "p", source).is_recording());
    }

    #[test]
    fn an_input_span_of_disabled_telemetry_records_nothing() {
        let span = Span::continuing(None);
        let source = InputSource::Http {
            method: "GET",
            route: "/a",
            path: "/a",
        };
        let mut input = Telemetry::off().input(&span, "p", source);
        assert!(!input.is_recording());
        input.http_status(200);
        input.end("v", None);
    }
}
