//! The WebAssembly runtime: one engine, one linker, and a fresh sandboxed instance per input.
//!
//! Components are compiled once and pre-instantiated; each input gets a new `Store` with its
//! own memory limit, budget and deadline, instantiated from the pooling allocator, and is
//! dropped when the input ends, so nothing leaks between inputs except through the `state`
//! import.
//!
//! Guests run as futures on the async runtime. Compiled code yields at every epoch tick, so a
//! busy guest shares its worker thread, and a guest waiting in WASI (a sleep) holds no thread
//! at all. A guest runs only while it holds one of a few turns, handed out fairly between
//! plugins (`turns`), so one plugin's busy inputs cannot crowd out another's. The deadline is a timer around the whole input: when it fires, the future is
//! dropped, which drops the store and returns the instance's pool slot at once.

mod bindings;
mod budget;
mod effects;
mod host_state;
mod output;
mod plugin;
mod registry;
mod response;
#[cfg(test)]
pub(crate) mod test_component;
mod turns;
mod warm;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use wasmtime::component::{Component, HasSelf, Instance, Linker};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
};

pub use bindings::{Delivery, Failure, HttpRequest, HttpResponse, Message};
pub use budget::{Budget, BudgetExceeded, BudgetKind};
pub use effects::{Effects, OutMessage};
pub use host_state::{MemoryLimitExceeded, RESERVED_HEADER_PREFIX};
pub use plugin::{Compiled, Exports, LoadedPlugin, PluginInfo, version_of};
pub use registry::{PluginStats, Registry};

use crate::state::StateStore;
use host_state::InputState;
use turns::Turns;
use warm::{WARM_SLOTS, Warm, WarmPool, WarmSlots};

/// How often a running guest yields to the async runtime: the longest it holds a thread while
/// others wait, so it bounds how late a deadline or another plugin's input can be.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// Largest memory any plugin may be given, in bytes (sizes the pooling allocator's slots).
    pub max_memory_bytes: usize,
    /// Most instances alive at once.
    pub max_instances: u32,
    /// Where compiled plugins are cached across starts; `None` uses the user's cache folder.
    pub cache_dir: Option<std::path::PathBuf>,
    /// The largest message the bus accepts (key, value and headers); `outbox.send` refuses
    /// larger ones. `None` when the bus has no limit.
    pub max_message_bytes: Option<usize>,
    /// How many guests run at once; `None`: one fewer than the cores (at least 1).
    pub guest_threads: Option<usize>,
}

/// Why an input did not produce a handler result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    /// The handler ran past its time limit.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The handler tried to grow its memory past its limit.
    #[error("memory limit of {0} MiB exceeded")]
    MemoryLimit(usize),
    /// The handler staged more in host memory than its budget allows.
    #[error("{0}")]
    Budget(BudgetExceeded),
    /// The HTTP handler's response breaks the contract (status, headers).
    #[error("invalid response: {0}")]
    InvalidResponse(String),
    /// The handler trapped (panicked, hit `unreachable`, returned malformed data, ...).
    #[error("trapped: {0}")]
    Trap(String),
    /// The plugin does not export the handler this input needs.
    #[error("plugin does not export {0}")]
    MissingExport(&'static str),
}

/// The result of running one input: the handler's answer (if it gave one) and the effects it
/// staged, which the caller applies only on success.
pub struct Invocation<T> {
    /// The handler's result, or why there is none.
    pub outcome: Result<T, InvokeError>,
    /// What the handler staged. Discard unless `outcome` is `Ok(Ok(_))`.
    pub effects: Effects,
    /// The largest linear memory the instance had, in bytes.
    pub memory_bytes: usize,
}

impl<T> Invocation<T> {
    /// An input cancelled at its time limit before it finished.
    pub fn timed_out(limit: Duration) -> Self {
        Invocation {
            outcome: Err(InvokeError::Timeout(limit)),
            effects: Effects::default(),
            memory_bytes: 0,
        }
    }
}

/// The engine, linker and deadline clock shared by every plugin.
pub struct Runtime {
    engine: Engine,
    linker: Linker<InputState>,
    store: Arc<dyn StateStore>,
    settings: RuntimeSettings,
    turns: Arc<Turns<PluginKey>>,
    /// The compiled-code cache, when enabled; its counters tell a cache hit from a compile.
    cache: Option<wasmtime::Cache>,
    /// One compile at a time (each uses every core), so the cache's counters belong to it.
    compiling: std::sync::Mutex<()>,
    ticker_stop: Arc<AtomicBool>,
    /// Instances kept idle for plugins that reuse them, across all plugins.
    warm: Arc<WarmSlots>,
}

/// Guests of the same plugin (by name) queue together for their turns.
#[derive(Clone)]
struct PluginKey(Arc<PluginInfo>);

impl PartialEq for PluginKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}

impl Runtime {
    /// Builds the engine (pooling allocator, epoch deadlines) and links the contract and WASI.
    pub fn new(settings: RuntimeSettings, store: Arc<dyn StateStore>) -> anyhow::Result<Self> {
        let mut pool = PoolingAllocationConfig::new();
        // Instances kept idle for reuse have slots of their own.
        let instances = settings.max_instances + WARM_SLOTS;
        pool.total_component_instances(instances)
            .total_core_instances(instances * 4)
            .total_memories(instances * 2)
            .total_tables(instances * 4)
            .total_stacks(instances)
            .max_memory_size(settings.max_memory_bytes)
            // Reset only dirty pages between inputs instead of zeroing and unmapping.
            .linear_memory_keep_resident(1 << 20)
            .table_keep_resident(64 << 10)
            .pagemap_scan(Enabled::Auto);
        let mut config = Config::new();
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .epoch_interruption(true);
        // Compiled code is cached by content hash, so an unchanged plugin (above all one with an
        // embedded JavaScript or Python engine) loads in milliseconds on the next start.
        let cache = match compile_cache(settings.cache_dir.as_deref()) {
            Ok(cache) => {
                config.cache(Some(cache.clone()));
                Some(cache)
            }
            Err(e) => {
                tracing::warn!("compiled-code cache disabled: {e:#}");
                None
            }
        };
        let engine = Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("creating the wasm engine")?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        bindings::Plugin::add_to_linker::<_, HasSelf<InputState>>(&mut linker, |s| s)?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (ticking, stop) = (engine.clone(), ticker_stop.clone());
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticking.increment_epoch();
                }
            })?;
        let turns = Arc::new(Turns::new(
            settings.guest_threads.unwrap_or_else(guest_threads),
        ));
        Ok(Runtime {
            engine,
            linker,
            store,
            settings,
            turns,
            cache,
            compiling: std::sync::Mutex::default(),
            ticker_stop,
            warm: Arc::default(),
        })
    }

    /// Compiles and checks a component from `bytes`, whose version `info` gives
    /// ([`version_of`]). Blocking and CPU-heavy: call it off the async runtime.
    pub fn load(&self, info: PluginInfo, bytes: &[u8]) -> anyhow::Result<LoadedPlugin> {
        if info.memory_bytes > self.settings.max_memory_bytes {
            bail!(
                "memory limit {} MiB is above the runtime's maximum of {} MiB",
                info.memory_bytes >> 20,
                self.settings.max_memory_bytes >> 20
            );
        }
        if is_core_module(bytes) {
            bail!(
                "{} is a core wasm module, not a component (build for wasm32-wasip2)",
                info.source.display()
            );
        }
        debug_assert_eq!(
            info.version,
            version_of(bytes),
            "the version of {}",
            info.name
        );
        let (component, compiled) = self.compile(&info, bytes)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context("the component imports something the host does not provide")?;
        let message = bindings::message_handler::GuestIndices::new(&pre).ok();
        let http = bindings::http_handler::GuestIndices::new(&pre).ok();
        if message.is_none() && http.is_none() {
            bail!(
                "the component exports neither message-handler nor http-handler of eventhost:plugin@0.1.0"
            );
        }
        Ok(LoadedPlugin {
            info: Arc::new(info),
            loaded_at: std::time::SystemTime::now(),
            compiled,
            pre,
            message,
            http,
            warm: WarmPool::new(self.warm.clone()),
        })
    }

    /// Compiles `bytes`, or reads the result from the cache, and logs which and how long it
    /// took: a large component (an embedded JavaScript or Python engine) takes seconds.
    fn compile(&self, info: &PluginInfo, bytes: &[u8]) -> anyhow::Result<(Component, Compiled)> {
        let _one_at_a_time = self.compiling.lock().unwrap_or_else(|e| e.into_inner());
        let size = format!("{:.1} MB", bytes.len() as f64 / 1e6);
        if bytes.len() >= LARGE_COMPONENT {
            tracing::info!(plugin = %info.name, version = %info.version,
                "loading a {size} component; compiling one this large takes seconds, reading it from the compiled-code cache much less");
        }
        let hits = self.cache.as_ref().map(wasmtime::Cache::cache_hits);
        let started = std::time::Instant::now();
        let component = Component::new(&self.engine, bytes)
            .map_err(anyhow::Error::from)
            .context("not a valid component")?;
        let compiled = Compiled {
            from_cache: hits.is_some_and(|before| {
                self.cache.as_ref().map(wasmtime::Cache::cache_hits) > Some(before)
            }),
            took: started.elapsed(),
        };
        tracing::info!(plugin = %info.name, version = %info.version, "{size} component {compiled}");
        Ok((component, compiled))
    }

    /// A new version of `plugin` with the same code and different settings (config values,
    /// limits, allowed topics): nothing is compiled again.
    pub fn reconfigure(
        &self,
        plugin: &LoadedPlugin,
        info: PluginInfo,
    ) -> anyhow::Result<LoadedPlugin> {
        if info.memory_bytes > self.settings.max_memory_bytes {
            bail!(
                "memory limit {} MiB is above the runtime's maximum of {} MiB",
                info.memory_bytes >> 20,
                self.settings.max_memory_bytes >> 20
            );
        }
        debug_assert_eq!(info.version, plugin.info.version, "the same code");
        Ok(LoadedPlugin {
            info: Arc::new(info),
            loaded_at: std::time::SystemTime::now(),
            compiled: plugin.compiled,
            pre: plugin.pre.clone(),
            message: plugin.message.clone(),
            http: plugin.http.clone(),
            warm: WarmPool::new(self.warm.clone()),
        })
    }

    /// Checks that a fresh instance of `plugin` can be created (used before swapping it in).
    pub async fn try_instantiate(&self, plugin: &LoadedPlugin) -> anyhow::Result<()> {
        let mut store = self.new_store(plugin, "load check".into());
        let created = plugin.pre.instantiate_async(&mut store);
        match tokio::time::timeout(plugin.info.timeout, created).await {
            Ok(created) => created.map(drop).map_err(anyhow::Error::from),
            Err(_) => bail!("instantiating took longer than its time limit"),
        }
    }

    /// Runs the message handler on a fresh instance, within the plugin's time limit.
    pub async fn handle_message(
        &self,
        plugin: &LoadedPlugin,
        delivery: &Delivery,
        label: Arc<str>,
    ) -> Invocation<Result<(), Failure>> {
        let (mut store, kept) = self.instance_for(plugin, label.clone());
        let call = async {
            let (instance, served) = match kept {
                Some(kept) => kept,
                None => (plugin.pre.instantiate_async(&mut store).await?, 0),
            };
            let indices = plugin
                .message
                .as_ref()
                .ok_or(CallError::Missing("message-handler"))?;
            let guest = indices.load(&mut store, &instance)?;
            Ok((
                (instance, served),
                guest.call_handle(&mut store, delivery).await?,
            ))
        };
        let call = self.turns.run(PluginKey(plugin.info.clone()), call);
        let outcome = within_deadline(&plugin.info, call).await;
        self.let_next_guest_run().await;
        finish(plugin, &label, store, outcome)
    }

    /// Runs the HTTP handler on a fresh instance, within the plugin's time limit. A response
    /// that breaks the contract fails the input (see `response::check`).
    pub async fn handle_http(
        &self,
        plugin: &LoadedPlugin,
        request: &HttpRequest,
        label: Arc<str>,
    ) -> Invocation<Result<HttpResponse, Failure>> {
        let (mut store, kept) = self.instance_for(plugin, label.clone());
        let call = async {
            let (instance, served) = match kept {
                Some(kept) => kept,
                None => (plugin.pre.instantiate_async(&mut store).await?, 0),
            };
            let indices = plugin
                .http
                .as_ref()
                .ok_or(CallError::Missing("http-handler"))?;
            let guest = indices.load(&mut store, &instance)?;
            Ok((
                (instance, served),
                guest.call_handle(&mut store, request).await?,
            ))
        };
        let call = self.turns.run(PluginKey(plugin.info.clone()), call);
        let outcome = within_deadline(&plugin.info, call).await;
        self.let_next_guest_run().await;
        let outcome = outcome.and_then(|(used, result)| match result {
            Ok(response) => {
                response::check(&response, &plugin.info.budget).map(|()| (used, Ok(response)))
            }
            Err(failure) => Ok((used, Err(failure))),
        });
        finish(plugin, &label, store, outcome)
    }

    /// When a guest was waiting, its turn was just handed to it, and its task woken onto this
    /// worker's next-task slot, which no other worker can steal. Yielding here runs it now and
    /// leaves the rest of this input (dropping its instance, applying its effects) to whichever
    /// worker is free; otherwise the turn idled while this input finished.
    async fn let_next_guest_run(&self) {
        if self.turns.contended() {
            tokio::task::yield_now().await;
        }
    }

    /// The store and instance an input runs in: a kept one when the plugin reuses instances
    /// and one is idle (the instance is `None` otherwise: the caller creates it, within the
    /// input's time limit).
    fn instance_for(
        &self,
        plugin: &LoadedPlugin,
        label: Arc<str>,
    ) -> (Store<InputState>, Option<(Instance, u32)>) {
        match plugin.warm.take() {
            Some(Warm {
                mut store,
                instance,
                served,
            }) => {
                store.data_mut().next_input(label);
                (store, Some((instance, served)))
            }
            None => (self.new_store(plugin, label), None),
        }
    }

    fn new_store(&self, plugin: &LoadedPlugin, label: Arc<str>) -> Store<InputState> {
        let state = InputState::new(
            plugin.info.clone(),
            self.store.clone(),
            label,
            self.settings.max_message_bytes,
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        // Yield to the async runtime at every tick; the deadline itself is a timer (see
        // `within_deadline`), which also covers a guest waiting inside a host call.
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        store
    }
}

/// Runs `call` until it finishes or the plugin's time limit passes. On time-out the future is
/// dropped, which cancels the guest wherever it is (running code or waiting in WASI).
async fn within_deadline<T>(
    info: &PluginInfo,
    call: impl Future<Output = Result<T, CallError>>,
) -> Result<T, InvokeError> {
    match tokio::time::timeout(info.timeout, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(CallError::Missing(what))) => Err(InvokeError::MissingExport(what)),
        Ok(Err(CallError::Wasm(e))) => Err(classify(&e, info)),
        Err(_) => Err(InvokeError::Timeout(info.timeout)),
    }
}

/// Forwards the input's captured output to the log and hands back its staged effects. The
/// instance is dropped, or kept for the next input when the plugin reuses instances and this
/// one returned normally (`used`: the instance and how many inputs it served before).
fn finish<T>(
    plugin: &LoadedPlugin,
    label: &str,
    mut store: Store<InputState>,
    outcome: Result<((Instance, u32), T), InvokeError>,
) -> Invocation<T> {
    let state = store.data_mut();
    forward_output(&plugin.info.name, label, "stdout", &state.stdout);
    forward_output(&plugin.info.name, label, "stderr", &state.stderr);
    let memory_bytes = state.limits.peak;
    let effects = std::mem::take(&mut state.effects);
    let outcome = outcome.map(|((instance, served), value)| {
        if plugin.info.reuse.is_some_and(|limit| served + 1 < limit) {
            plugin.warm.keep(Warm {
                store,
                instance,
                served: served + 1,
            });
        }
        value
    });
    Invocation {
        outcome,
        memory_bytes,
        effects,
    }
}

/// Components from this size on announce their compile before it starts.
const LARGE_COMPONENT: usize = 1 << 20;

/// A duration as a person reads it: `850 ms`, `8.8 s`.
pub(crate) fn human_duration(took: Duration) -> String {
    if took < Duration::from_secs(1) {
        format!("{} ms", took.as_millis())
    } else {
        format!("{:.1} s", took.as_secs_f64())
    }
}

/// How many guests run at once: one fewer than the cores (tokio starts one worker per core),
/// so however busy the guests, one core's worth of time is left for the host's own work:
/// accepting and answering connections, timers, the bus and commits. On one core, one.
fn guest_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    cores.saturating_sub(1).max(1)
}

fn compile_cache(dir: Option<&Path>) -> anyhow::Result<wasmtime::Cache> {
    let mut cache = wasmtime::CacheConfig::new();
    if let Some(dir) = dir {
        cache.with_directory(std::path::absolute(dir)?);
    }
    wasmtime::Cache::new(cache).map_err(anyhow::Error::from)
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

enum CallError {
    Missing(&'static str),
    Wasm(wasmtime::Error),
}

impl From<wasmtime::Error> for CallError {
    fn from(e: wasmtime::Error) -> Self {
        CallError::Wasm(e)
    }
}

/// Tells why a call failed from the error's type: the host's own limits first, then traps.
fn classify(err: &wasmtime::Error, info: &PluginInfo) -> InvokeError {
    if let Some(exceeded) = err.downcast_ref::<MemoryLimitExceeded>() {
        return InvokeError::MemoryLimit(exceeded.limit_bytes >> 20);
    }
    if let Some(exceeded) = err.downcast_ref::<BudgetExceeded>() {
        return InvokeError::Budget(*exceeded);
    }
    if let Some(trap) = err.downcast_ref::<Trap>() {
        tracing::debug!(plugin = %info.name, "trap details: {err:?}");
        return InvokeError::Trap(trap.to_string());
    }
    // Not a wasm trap: a host-side error, e.g. malformed data lifted from the guest. Its root
    // cause says what went wrong; the full chain (with backtrace) is kept at debug level.
    tracing::debug!(plugin = %info.name, "failure details: {err:?}");
    let cause = err
        .chain()
        .last()
        .map(|c| c.to_string())
        .unwrap_or_else(|| err.to_string());
    InvokeError::Trap(cause)
}

fn forward_output(plugin: &str, input: &str, stream: &str, output: &output::CapturedOutput) {
    let (text, dropped) = output.take();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let line = host_state::escape_log_text(line);
        tracing::info!(plugin = %plugin, input = %input, stream, "{line}");
    }
    if dropped > 0 {
        tracing::warn!(
            plugin,
            input,
            stream,
            "dropped {dropped} bytes of output past the {} KiB cap",
            output::CAPTURE_LIMIT >> 10
        );
    }
}

/// A core module starts with the same magic as a component but has version 1 and layer 0.
fn is_core_module(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [1, 0, 0, 0]
}

/// Why a plugin's component could not be read; a missing one says how components get there.
pub fn unreadable(path: &Path, error: std::io::Error) -> anyhow::Error {
    if error.kind() == std::io::ErrorKind::NotFound {
        anyhow::anyhow!(
            "cannot read {}: there is no such file. Build the plugin and put its component \
             there (this repository's examples: `make shop-plugins` stages the shop's, and \
             `make run`, `make run-kafka` and `make run-hello` stage their own)",
            path.display()
        )
    } else {
        anyhow::Error::new(error).context(format!("cannot read {}", path.display()))
    }
}
