//! The dispatcher: input → fresh instance → staged effects → commit.
//!
//! Every input (a consumed record or an HTTP request) runs on the current version of its
//! plugin, on the blocking pool so a CPU-bound plugin never stalls the async runtime. Its
//! effects are applied only when the handler succeeded: messages are published and
//! acknowledged first, then state writes are made durable. An input whose reads were changed
//! by a concurrent commit runs again on fresh state, holding its plugin's commit lock so the
//! second run cannot lose again: no update is lost, and uncontended inputs never wait.

mod commit;
mod messages;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

pub use commit::{PLUGIN_HEADER, VERSION_HEADER};
pub use messages::{SubscriptionRuntime, dead_letter_headers};

use crate::bus::Bus;
use crate::runtime::{
    Failure, HttpRequest, HttpResponse, Invocation, InvokeError, LoadedPlugin, Registry, Runtime,
};
use crate::state::StateStore;

/// How often an input runs before it gives up on write conflicts. Only the first run is
/// optimistic, so more than two runs happen only if something outside this host changes state.
const MAX_CONFLICT_RERUNS: usize = 4;

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
    #[error("effects not applied: {0}")]
    Commit(String),
    /// Concurrent inputs kept changing the state this input read.
    #[error("gave up after {MAX_CONFLICT_RERUNS} write conflicts")]
    Conflict,
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
                | InputError::Invoke(InvokeError::MissingExport(_))
        )
    }

    /// A one-word kind for headers and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            InputError::NoPlugin(_) => "no-plugin",
            InputError::Invoke(InvokeError::Timeout(_)) => "timeout",
            InputError::Invoke(InvokeError::MemoryLimit(_)) => "memory-limit",
            InputError::Invoke(InvokeError::Trap(_)) => "trap",
            InputError::Invoke(InvokeError::MissingExport(_)) => "missing-export",
            InputError::Failed(Failure::Invalid(_)) => "invalid",
            InputError::Failed(Failure::Retry(_)) => "retry",
            InputError::Commit(_) => "commit",
            InputError::Conflict => "conflict",
        }
    }
}

/// Runs inputs on plugins and applies their effects. Shared by HTTP and every subscription.
pub struct Dispatcher {
    runtime: Arc<Runtime>,
    registry: Arc<Registry>,
    store: Arc<dyn StateStore>,
    bus: Arc<dyn Bus>,
    /// One lock per plugin namespace, held from conflict check to durable write.
    commit_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Inputs wait here rather than fail when every instance slot is in use.
    slots: Arc<Semaphore>,
}

impl Dispatcher {
    /// A dispatcher running at most `max_instances` inputs at once.
    pub fn new(
        runtime: Arc<Runtime>,
        registry: Arc<Registry>,
        store: Arc<dyn StateStore>,
        bus: Arc<dyn Bus>,
        max_instances: usize,
    ) -> Self {
        Dispatcher {
            runtime,
            registry,
            store,
            bus,
            commit_locks: Mutex::default(),
            slots: Arc::new(Semaphore::new(max_instances)),
        }
    }

    /// The plugin registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The bus effects are published to.
    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.bus
    }

    /// Runs an HTTP request on `plugin` and commits its effects before returning the response.
    pub async fn handle_http(
        &self,
        plugin: &str,
        request: HttpRequest,
    ) -> Result<HttpResponse, InputError> {
        let label: Arc<str> = format!("{} {}", request.method, request.path).into();
        let request = Arc::new(request);
        self.execute(plugin, label, move |runtime, loaded, label| {
            runtime.handle_http(loaded, &request, label)
        })
        .await
    }

    /// Runs `call` on a fresh instance of `plugin` until it commits, fails, or loses too many
    /// write conflicts.
    async fn execute<T: Send + 'static>(
        &self,
        plugin: &str,
        label: Arc<str>,
        call: impl Fn(&Runtime, &LoadedPlugin, Arc<str>) -> Invocation<Result<T, Failure>>
        + Send
        + Sync
        + 'static,
    ) -> Result<T, InputError> {
        let result = self
            .execute_until_committed(plugin, label, Arc::new(call))
            .await;
        match &result {
            Ok(_) => self.registry.count_handled(plugin),
            Err(_) => self.registry.count_failed(plugin),
        }
        result
    }

    async fn execute_until_committed<T: Send + 'static>(
        &self,
        plugin: &str,
        label: Arc<str>,
        call: Arc<
            impl Fn(&Runtime, &LoadedPlugin, Arc<str>) -> Invocation<Result<T, Failure>>
            + Send
            + Sync
            + 'static,
        >,
    ) -> Result<T, InputError> {
        // First optimistically; after a conflict, the input re-runs holding its plugin's commit
        // lock, so no other commit can change what it reads and the next commit succeeds.
        let mut exclusive = None;
        for _ in 0..MAX_CONFLICT_RERUNS {
            let loaded = self
                .registry
                .get(plugin)
                .ok_or_else(|| InputError::NoPlugin(plugin.to_string()))?;
            let invocation = self
                .run_blocking(loaded.clone(), label.clone(), call.clone())
                .await;
            let value = match invocation.outcome {
                Ok(Ok(value)) => value,
                Ok(Err(failure)) => return Err(InputError::Failed(failure)),
                Err(e) => return Err(InputError::Invoke(e)),
            };
            let committed = match exclusive {
                None => self.commit(&loaded.info, invocation.effects).await,
                Some(_) => self.commit_locked(&loaded.info, invocation.effects).await,
            };
            match committed {
                Ok(()) => return Ok(value),
                Err(commit::CommitError::Conflict) => {
                    tracing::debug!(plugin = %plugin, input = %label, "write conflict, running the input again");
                    if exclusive.is_none() {
                        exclusive = Some(self.commit_lock(plugin).lock_owned().await);
                    }
                }
                Err(commit::CommitError::Failed(why)) => return Err(InputError::Commit(why)),
            }
        }
        Err(InputError::Conflict)
    }

    async fn run_blocking<T: Send + 'static>(
        &self,
        loaded: Arc<LoadedPlugin>,
        label: Arc<str>,
        call: Arc<
            impl Fn(&Runtime, &LoadedPlugin, Arc<str>) -> Invocation<T> + Send + Sync + 'static,
        >,
    ) -> Invocation<T> {
        let timeout = loaded.info.timeout;
        let Ok(_slot) = self.slots.clone().acquire_owned().await else {
            return Invocation {
                outcome: Err(InvokeError::Trap("host is shutting down".into())),
                effects: Default::default(),
            };
        };
        let runtime = self.runtime.clone();
        let task = tokio::task::spawn_blocking(move || call(&runtime, &loaded, label));
        // The epoch deadline stops guest code at `timeout`; this outer bound also covers a guest
        // blocked inside a host call (e.g. a long sleep), so callers never wait much longer.
        match tokio::time::timeout(timeout + std::time::Duration::from_millis(250), task).await {
            Ok(Ok(invocation)) => invocation,
            Ok(Err(join)) => Invocation {
                outcome: Err(InvokeError::Trap(format!("host task failed: {join}"))),
                effects: Default::default(),
            },
            Err(_) => Invocation {
                outcome: Err(InvokeError::Timeout(timeout)),
                effects: Default::default(),
            },
        }
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::bus::EmbeddedBus;
    use crate::runtime::RuntimeSettings;
    use crate::state::EmbeddedStore;

    #[test]
    fn commit_locks_follow_the_deployment() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn StateStore> =
            Arc::new(EmbeddedStore::open(&dir.path().join("state.redb")).unwrap());
        let settings = RuntimeSettings {
            max_memory_bytes: 1 << 20,
            max_instances: 1,
            cache_dir: Some(dir.path().join("cache")),
        };
        let runtime = Arc::new(Runtime::new(settings, store.clone()).unwrap());
        let bus = Arc::new(EmbeddedBus::new());
        let dispatcher = Dispatcher::new(runtime, Arc::new(Registry::new()), store, bus, 1);
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
