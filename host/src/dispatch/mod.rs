//! The dispatcher: input → fresh instance → staged effects → commit.
//!
//! Every input (a consumed record or an HTTP request) runs on the current version of its
//! plugin, on a fresh instance that yields to the async runtime while it waits. Its effects
//! are applied only when the handler succeeded, in two stages (see `commit`): checked,
//! made visible to later inputs and queued first; acknowledged and made durable later, while
//! the next inputs already run. An input whose reads were changed by a concurrent commit runs
//! again on fresh state, holding its plugin's commit lock so the second run cannot lose again:
//! no update is lost, and uncontended inputs never wait.

mod admission;
mod commit;
mod messages;
mod trace;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use tracing::Instrument as _;

use admission::{Admission, Kind, Refusal};

pub use admission::{Overloaded, RETRY_AFTER};
use commit::{CommitError, Committing};
pub use commit::{ID_HEADER, PLUGIN_HEADER, VERSION_HEADER};
pub use messages::{DLQ_OMITTED_HEADER, SubscriptionSettings, dead_letter_headers};
pub use trace::{Span, TRACEPARENT};

use crate::bus::{Bus, BusError};
use crate::error::Cause;
use crate::metrics::Metrics;
use crate::runtime::{
    Failure, HttpRequest, HttpResponse, Invocation, InvokeError, LoadedPlugin, Registry, Runtime,
};
use crate::state::{Consumed, PendingStore, StateStore};
use crate::telemetry::{InputSource, InputSpan, Telemetry};

/// One run of a handler on a fresh instance, as the dispatcher drives it.
type Call<T> = BoxFuture<'static, Invocation<Result<T, Failure>>>;

/// How often an input runs before it gives up on write conflicts. Only the first run is
/// optimistic, so more than two runs happen only if something outside this host changes state.
const MAX_CONFLICT_RERUNS: usize = 4;

/// How often a request runs again when its commit could not settle: an earlier input failed,
/// or (with a shared store) another host changed what it read.
const MAX_SETTLE_RERUNS: usize = 16;

/// Why an input did not commit.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InputError {
    /// No plugin of that name is loaded.
    #[error("plugin {0:?} is not loaded")]
    NoPlugin(String),
    /// The handler did not return (trap, timeout, memory limit, missing export).
    #[error("{0}")]
    Invoke(#[from] InvokeError),
    /// The handler returned a failure.
    #[error("{}", describe_failure(.0))]
    Failed(Failure),
    /// The effects could not be applied (bus or store unavailable).
    #[error("effects not applied")]
    Commit(#[source] Cause),
    /// The bus refused one of the input's messages for good (too large, unknown topic, not
    /// authorized); nothing was applied.
    #[error("effects refused")]
    Refused(#[source] Cause),
    /// Concurrent inputs kept changing the state this input read.
    #[error("gave up after {MAX_CONFLICT_RERUNS} write conflicts")]
    Conflict,
    /// The host is shutting down and runs no new inputs.
    #[error("the host is shutting down")]
    ShuttingDown,
    /// The plugin is at its concurrency limit and its HTTP queue is full.
    #[error("{0}")]
    Overloaded(#[from] Overloaded),
}

impl From<CommitError> for InputError {
    fn from(error: CommitError) -> Self {
        match error {
            CommitError::Conflict | CommitError::Superseded => InputError::Conflict,
            CommitError::Bus(e @ BusError::Refused { .. }) => InputError::Refused(Cause::new(e)),
            other => InputError::Commit(Cause::new(other)),
        }
    }
}

fn describe_failure(failure: &Failure) -> String {
    match failure {
        Failure::Invalid(why) => format!("invalid input: {why}"),
        Failure::Retry(why) => format!("transient failure: {why}"),
    }
}

impl InputError {
    /// False when retrying cannot help: the input is bad, or the plugin cannot handle it.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            InputError::Failed(Failure::Invalid(_))
                | InputError::Refused(_)
                | InputError::Invoke(
                    InvokeError::MissingExport(_)
                        | InvokeError::Budget(_)
                        | InvokeError::InvalidResponse(_)
                )
        )
    }

    /// The status an HTTP request that failed this way is answered with.
    pub fn http_status(&self) -> http::StatusCode {
        use http::StatusCode;
        match self {
            InputError::Failed(Failure::Invalid(_)) => StatusCode::BAD_REQUEST,
            InputError::Invoke(InvokeError::Timeout(_))
            | InputError::NoPlugin(_)
            | InputError::Overloaded(_)
            | InputError::Commit(_)
            | InputError::Conflict
            | InputError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            InputError::Invoke(_)
            | InputError::Refused(_)
            | InputError::Failed(Failure::Retry(_)) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A one-word kind for headers and metrics: one of [`ERROR_KINDS`].
    pub fn kind(&self) -> &'static str {
        match self {
            InputError::NoPlugin(_) => "no-plugin",
            InputError::Invoke(InvokeError::Timeout(_)) => "timeout",
            InputError::Invoke(InvokeError::MemoryLimit(_)) => "memory-limit",
            InputError::Invoke(InvokeError::Budget(_)) => "budget",
            InputError::Invoke(InvokeError::InvalidResponse(_)) => "invalid-response",
            InputError::Invoke(InvokeError::Trap(_)) => "trap",
            InputError::Invoke(InvokeError::MissingExport(_)) => "missing-export",
            InputError::Failed(Failure::Invalid(_)) => "invalid",
            InputError::Failed(Failure::Retry(_)) => "retry",
            InputError::Commit(_) => "commit",
            InputError::Refused(_) => "refused",
            InputError::Conflict => "conflict",
            InputError::ShuttingDown => "shutdown",
            InputError::Overloaded(_) => "overloaded",
        }
    }
}

/// Every [`InputError::kind`], e.g. for checking a filter on dead letters' kinds.
pub const ERROR_KINDS: [&str; 14] = [
    "no-plugin",
    "timeout",
    "memory-limit",
    "budget",
    "invalid-response",
    "trap",
    "missing-export",
    "invalid",
    "retry",
    "commit",
    "refused",
    "conflict",
    "shutdown",
    "overloaded",
];

/// Runs inputs on plugins and applies their effects. Shared by HTTP and every subscription.
pub struct Dispatcher {
    runtime: Arc<Runtime>,
    registry: Arc<Registry>,
    /// State as inputs see it: durable plus the writes of inputs still committing.
    pending: Arc<PendingStore>,
    bus: Arc<dyn Bus>,
    /// One lock per plugin namespace, held while an input's reads are checked and its writes
    /// registered (and across the run of an input that lost a conflict).
    commit_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Which inputs may run now (per-plugin caps, fair shares, the instance pool).
    admission: Admission,
    /// Subscriptions that cannot make progress (name → why), e.g. waiting out an outage.
    stalled: Mutex<BTreeMap<String, String>>,
    metrics: Arc<Metrics>,
    telemetry: Telemetry,
    /// Subscriptions keep their results in the outbox and publish them in transactions.
    exactly_once: bool,
}

/// What the dispatcher knows of one input while it runs it.
struct Input<'a> {
    plugin: &'a str,
    kind: Kind,
    /// The consumed topic, or `http`.
    source: &'a str,
    /// Names the input in its messages' ids.
    id: &'a str,
    /// Names the input in log lines.
    label: Arc<str>,
    /// Its place in a trace: its messages carry it as their parent.
    span: Span,
    /// For a record of an exactly-once subscription: where it was consumed and its offset.
    /// Its messages then go to the outbox with its state writes.
    consumed: Option<(Consumed, i64)>,
}

impl Dispatcher {
    /// A dispatcher running at most `max_instances` inputs at once. `pending` must be the
    /// store `runtime` reads from.
    pub fn new(
        runtime: Arc<Runtime>,
        registry: Arc<Registry>,
        pending: Arc<PendingStore>,
        bus: Arc<dyn Bus>,
        max_instances: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Dispatcher {
            runtime,
            registry,
            pending,
            bus,
            commit_locks: Mutex::default(),
            admission: Admission::new(max_instances),
            stalled: Mutex::default(),
            metrics,
            telemetry: Telemetry::off(),
            exactly_once: false,
        }
    }

    /// Makes every subscription exactly-once (`[bus] exactly_once`): a record's messages, its
    /// state writes and its offset take effect together.
    pub fn with_exactly_once(self, exactly_once: bool) -> Self {
        Dispatcher {
            exactly_once,
            ..self
        }
    }

    /// Exports each input as a span through `telemetry`.
    pub fn with_telemetry(self, telemetry: Telemetry) -> Self {
        Dispatcher { telemetry, ..self }
    }

    /// The host's trace export.
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// The host's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The text of `GET /metrics`: the counters, and consumer lag and instances as they are.
    pub fn render_metrics(&self) -> String {
        self.metrics
            .render(&self.bus.lag(), self.admission.in_use())
    }

    /// The plugin registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The bus effects are published to.
    /// State as plugins read it: durable plus the writes of inputs still committing.
    pub fn state(&self) -> Arc<dyn StateStore> {
        self.pending.clone()
    }

    /// The bus this dispatcher publishes to.
    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.bus
    }

    /// Runs an HTTP request on `plugin` and commits its effects before returning the response.
    /// Dropping the returned future (the client went away) cancels the handler and frees its
    /// instance; a commit already under way still completes.
    pub async fn handle_http(
        self: &Arc<Self>,
        plugin: &str,
        request: HttpRequest,
    ) -> Result<HttpResponse, InputError> {
        // Re-runs of this request (after a conflict) give its messages the same ids.
        let id = format!("http/{}", uuid::Uuid::new_v4().simple());
        let parent = (request.headers.iter())
            .find(|(name, _)| name.eq_ignore_ascii_case(TRACEPARENT))
            .map(|(_, value)| value.as_bytes());
        let input = Input {
            plugin,
            kind: Kind::Http,
            source: "http",
            id: &id,
            label: format!("{} {}", request.method, request.path).into(),
            span: Span::continuing(parent),
            consumed: None,
        };
        let source = InputSource::Http {
            method: &request.method,
            route: &request.route,
            path: &request.path,
        };
        let mut traced = self.telemetry.input(&input.span, plugin, source);
        let request = Arc::new(request);
        let call = move |runtime: Arc<Runtime>, loaded: Arc<LoadedPlugin>, label| {
            let request = request.clone();
            async move { runtime.handle_http(&loaded, &request, label).await }.boxed()
        };
        let mut result = Err(InputError::Conflict);
        for rerun in 0..MAX_SETTLE_RERUNS {
            result = match self.run(&input, &call).await {
                Ok((response, committing)) => match committing.settled().await {
                    Ok(()) => Ok(response),
                    // An earlier input whose writes this one may have read could not commit.
                    Err(CommitError::Superseded) => continue,
                    // Another host changed what it read (a shared store). Hosts racing for the
                    // same keys are spread out a little, so that one of them wins each round.
                    Err(CommitError::Conflict) => {
                        let spread = rand_millis(1 + 2 * rerun as u64);
                        tokio::time::sleep(Duration::from_millis(spread)).await;
                        continue;
                    }
                    Err(e) => Err(e.into()),
                },
                Err(e) => Err(e),
            };
            break;
        }
        self.finished(plugin, "http", result.as_ref().err());
        traced.http_status(match &result {
            Ok(response) => response.status,
            Err(error) => error.http_status().as_u16(),
        });
        self.end_span(traced, plugin, result.as_ref().err());
        result
    }

    /// Ends the span of an input of `plugin` that committed (`None`) or failed for good.
    fn end_span(&self, traced: InputSpan, plugin: &str, error: Option<&InputError>) {
        if traced.is_recording() {
            traced.end(&self.version(plugin), error);
        }
    }

    /// The version of `plugin` now serving, `-` when none is.
    fn version(&self, plugin: &str) -> String {
        let version = self.registry.get(plugin).map(|p| p.info.version.clone());
        version.unwrap_or_else(|| "-".into())
    }

    /// Counts an input that committed (`None`) or failed.
    fn finished(&self, plugin: &str, source: &str, error: Option<&InputError>) {
        let outcome = match error {
            None => {
                self.registry.count_handled(plugin);
                "ok"
            }
            Some(error) => {
                self.registry.count_failed(plugin);
                error.kind()
            }
        };
        self.metrics
            .input(plugin, &self.version(plugin), source, outcome);
    }

    /// Runs `call` on a fresh instance of `plugin` until its commit is past the first stage,
    /// it fails, or it loses too many write conflicts.
    async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        input: &Input<'_>,
        call: &impl Fn(Arc<Runtime>, Arc<LoadedPlugin>, Arc<str>) -> Call<T>,
    ) -> Result<(T, Committing), InputError> {
        // Every log line of the input, the plugin's own included, names it and its trace.
        let log = tracing::info_span!("input", plugin = %input.plugin, input = %input.label,
            trace_id = %input.span.trace_id());
        self.run_logged(input, call).instrument(log).await
    }

    async fn run_logged<T: Send + 'static>(
        self: &Arc<Self>,
        input: &Input<'_>,
        call: &impl Fn(Arc<Runtime>, Arc<LoadedPlugin>, Arc<str>) -> Call<T>,
    ) -> Result<(T, Committing), InputError> {
        let plugin = input.plugin;
        // First optimistically; after a conflict, the input re-runs holding its plugin's commit
        // lock, so no other commit can change what it reads and the next check succeeds.
        let mut exclusive = None;
        let mut failures_before;
        let arrived = tokio::time::Instant::now();
        for _ in 0..MAX_CONFLICT_RERUNS {
            let loaded = self
                .registry
                .get(plugin)
                .ok_or_else(|| InputError::NoPlugin(plugin.to_string()))?;
            // A request's time limit runs from its arrival: time spent waiting to be admitted
            // is taken from the time it may run, so the client hears back within the limit.
            // Records wait outside their limit (the bus holds them back).
            let deadline = (input.kind == Kind::Http).then(|| arrived + loaded.info.timeout);
            let invocation = {
                let admission = self.admission.admit(&loaded.info, input.kind);
                let admitted = match deadline {
                    Some(deadline) => tokio::time::timeout_at(deadline, admission)
                        .await
                        .unwrap_or_else(|_| Err(Refusal::overloaded(&loaded.info))),
                    None => admission.await,
                };
                let _admitted = match admitted {
                    Ok(admitted) => admitted,
                    Err(Refusal::Overloaded(overloaded)) => return Err(overloaded.into()),
                    Err(Refusal::ShuttingDown) => return Err(InputError::ShuttingDown),
                };
                // The instance lives inside this call: when it returns (or is dropped), the
                // instance is gone before the slot is released.
                let started = std::time::Instant::now();
                failures_before = self.pending.failures();
                let invocation = call(self.runtime.clone(), loaded.clone(), input.label.clone());
                let invocation = match deadline {
                    Some(deadline) => tokio::time::timeout_at(deadline, invocation)
                        .await
                        .unwrap_or_else(|_| Invocation::timed_out(loaded.info.timeout)),
                    None => invocation.await,
                };
                let seconds = started.elapsed().as_secs_f64();
                self.metrics.handler_time(plugin, input.source, seconds);
                self.metrics
                    .instance_memory(plugin, invocation.memory_bytes);
                invocation
            };
            let value = match invocation.outcome {
                Ok(Ok(value)) => value,
                Ok(Err(failure)) => return Err(InputError::Failed(failure)),
                Err(e) => return Err(InputError::Invoke(e)),
            };
            match self
                .commit(
                    &loaded.info,
                    input,
                    invocation.effects,
                    exclusive.take(),
                    failures_before,
                )
                .await
            {
                Ok(committing) => return Ok((value, committing)),
                Err(CommitError::Conflict) => {
                    tracing::debug!("write conflict, running the input again");
                    exclusive = Some(self.commit_lock(plugin).lock_owned().await);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(InputError::Conflict)
    }

    /// Admits no more inputs: those waiting for a slot and all later ones fail with
    /// [`InputError::ShuttingDown`] (records stay uncommitted).
    pub fn close(&self) {
        self.admission.close();
    }

    /// Subscriptions that currently make no progress, with the reason.
    pub fn stalled(&self) -> BTreeMap<String, String> {
        self.stalled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Marks `sub` as making no progress (`why`), or as fine again (`None`); a stopped
    /// subscription is fine: it makes no progress on purpose.
    pub(crate) fn set_stalled(&self, sub: &SubscriptionSettings, why: Option<String>) {
        let mut stalled = self.stalled.lock().unwrap_or_else(|e| e.into_inner());
        if why.is_none() && stalled.is_empty() {
            return;
        }
        match why {
            Some(why) => stalled.insert(sub.name(), why),
            None => stalled.remove(&sub.name()),
        };
    }

    fn commit_lock(&self, plugin: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.commit_locks.lock().unwrap_or_else(|e| e.into_inner());
        if !locks.contains_key(plugin) {
            // Locks of removed plugins go once nobody holds them: the map follows the
            // deployment instead of growing with every plugin name ever deployed.
            locks.retain(|name, lock| {
                Arc::strong_count(lock) > 1 || self.registry.get(name).is_some()
            });
        }
        locks.entry(plugin.to_string()).or_default().clone()
    }
}

/// A pseudo-random number of milliseconds below `below`.
fn rand_millis(below: u64) -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0 % below.max(1)
}

/// A dispatcher over `pending` and `bus` with an engine of one small instance and nothing
/// loaded, for unit tests of its commit path and of deployments that load their own plugins.
#[cfg(test)]
pub(crate) fn dispatcher_for_tests(
    dir: &std::path::Path,
    pending: Arc<PendingStore>,
    bus: Arc<dyn Bus>,
) -> Arc<Dispatcher> {
    let settings = crate::runtime::RuntimeSettings {
        max_memory_bytes: 1 << 20,
        max_instances: 1,
        cache_dir: Some(dir.join("cache")),
        max_message_bytes: None,
        guest_threads: None,
    };
    let runtime = Arc::new(Runtime::new(settings, pending.clone()).unwrap());
    let registry = Arc::new(Registry::new());
    Arc::new(Dispatcher::new(
        runtime,
        registry,
        pending,
        bus,
        1,
        Arc::default(),
    ))
}

#[cfg(test)]
impl Dispatcher {
    /// The runtime its plugins are loaded with, for tests that load more.
    pub(crate) fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::bus::EmbeddedBus;
    use crate::state::{EmbeddedStore, StateError};

    #[test]
    fn a_commit_failure_keeps_the_store_error_beneath_it() {
        let disk = std::io::Error::other("disk full");
        let error = InputError::from(CommitError::Store(StateError::failed("cannot commit")(
            disk,
        )));
        assert_eq!(error.kind(), "commit");
        assert_eq!(
            crate::error::Chain(&error).to_string(),
            "effects not applied: state store: cannot commit: disk full"
        );
    }

    #[test]
    fn a_refusal_is_told_apart_from_an_outage() {
        let refused = BusError::refused("too large", None);
        assert_eq!(
            InputError::from(CommitError::Bus(refused)).kind(),
            "refused"
        );
        let outage = BusError::unavailable("no broker", None);
        assert_eq!(InputError::from(CommitError::Bus(outage)).kind(), "commit");
    }

    #[test]
    fn commit_locks_follow_the_deployment() {
        let dir = tempfile::tempdir().unwrap();
        let store = PendingStore::new(
            Arc::new(EmbeddedStore::open(&dir.path().join("state.redb")).unwrap()),
            Arc::default(),
        );
        let dispatcher = dispatcher_for_tests(dir.path(), store, Arc::new(EmbeddedBus::new()));
        let held = dispatcher.commit_lock("busy");
        for i in 0..100 {
            dispatcher.commit_lock(&format!("removed-{i}"));
        }
        let names: BTreeSet<String> = dispatcher
            .commit_locks
            .lock()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        // Nothing is loaded: only the lock in use and the newest one are left.
        assert_eq!(names, BTreeSet::from(["busy".into(), "removed-99".into()]));
        drop(held);
    }
}
