//! The WebAssembly runtime: one engine, one linker, and a fresh sandboxed instance per input.
//!
//! Components are compiled once and pre-instantiated; each input gets a new `Store` with its
//! own memory limit and deadline, instantiated from the pooling allocator, and is dropped when
//! the input ends, so nothing leaks between inputs except through the `state` import.

mod bindings;
mod effects;
mod host_state;
mod output;
mod plugin;
mod registry;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
    StoreLimitsBuilder, Trap,
};

pub use bindings::{Delivery, Failure, HttpRequest, HttpResponse, Message};
pub use effects::{Effects, OutMessage};
pub use host_state::RESERVED_HEADER_PREFIX;
pub use plugin::{Exports, LoadedPlugin, PluginInfo, version_of};
pub use registry::{PluginStats, Registry};

use crate::state::StateStore;
use host_state::InputState;

/// How often the deadline clock ticks. Deadlines are rounded up to this.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// Largest memory any plugin may be given, in bytes (sizes the pooling allocator's slots).
    pub max_memory_bytes: usize,
    /// Most instances alive at once.
    pub max_instances: u32,
    /// Where compiled plugins are cached across starts; `None` uses the user's cache folder.
    pub cache_dir: Option<std::path::PathBuf>,
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
}

/// The engine, linker and deadline clock shared by every plugin.
pub struct Runtime {
    engine: Engine,
    linker: Linker<InputState>,
    store: Arc<dyn StateStore>,
    settings: RuntimeSettings,
    ticker_stop: Arc<AtomicBool>,
}

impl Runtime {
    /// Builds the engine (pooling allocator, epoch deadlines) and links the contract and WASI.
    pub fn new(settings: RuntimeSettings, store: Arc<dyn StateStore>) -> anyhow::Result<Self> {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(settings.max_instances)
            .total_core_instances(settings.max_instances * 4)
            .total_memories(settings.max_instances * 2)
            .total_tables(settings.max_instances * 4)
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
        match compile_cache(settings.cache_dir.as_deref()) {
            Ok(cache) => {
                config.cache(Some(cache));
            }
            Err(e) => tracing::warn!("compiled-code cache disabled: {e:#}"),
        }
        let engine = Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("creating the wasm engine")?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
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
        Ok(Runtime {
            engine,
            linker,
            store,
            settings,
            ticker_stop,
        })
    }

    /// Compiles and checks a component from `bytes`. Blocking and CPU-heavy: call it off the
    /// async runtime.
    pub fn load(&self, mut info: PluginInfo, bytes: &[u8]) -> anyhow::Result<LoadedPlugin> {
        if info.memory_bytes > self.settings.max_memory_bytes {
            bail!(
                "memory limit {} MiB is above the runtime's maximum of {} MiB",
                info.memory_bytes >> 20,
                self.settings.max_memory_bytes >> 20
            );
        }
        if wasmparser_is_core_module(bytes) {
            bail!(
                "{} is a core wasm module, not a component (build for wasm32-wasip2)",
                info.source.display()
            );
        }
        info.version = version_of(bytes);
        let component = Component::new(&self.engine, bytes)
            .map_err(anyhow::Error::from)
            .context("not a valid component")?;
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
            pre,
            message,
            http,
        })
    }

    /// A new version of `plugin` with the same code and different settings (config values,
    /// limits, allowed topics): nothing is compiled again.
    pub fn reconfigure(
        &self,
        plugin: &LoadedPlugin,
        mut info: PluginInfo,
    ) -> anyhow::Result<LoadedPlugin> {
        if info.memory_bytes > self.settings.max_memory_bytes {
            bail!(
                "memory limit {} MiB is above the runtime's maximum of {} MiB",
                info.memory_bytes >> 20,
                self.settings.max_memory_bytes >> 20
            );
        }
        info.version = plugin.info.version.clone();
        Ok(LoadedPlugin {
            info: Arc::new(info),
            loaded_at: std::time::SystemTime::now(),
            pre: plugin.pre.clone(),
            message: plugin.message.clone(),
            http: plugin.http.clone(),
        })
    }

    /// Reads and loads the component at `path`.
    pub fn load_file(&self, info: PluginInfo, path: &Path) -> anyhow::Result<LoadedPlugin> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        self.load(info, &bytes)
    }

    /// Checks that a fresh instance of `plugin` can be created (used before swapping it in).
    pub fn try_instantiate(&self, plugin: &LoadedPlugin) -> anyhow::Result<()> {
        let mut store = self.new_store(plugin, "load check".into());
        plugin
            .pre
            .instantiate(&mut store)
            .map(drop)
            .map_err(anyhow::Error::from)
    }

    /// Runs the message handler on a fresh instance. Blocking: call it off the async runtime.
    pub fn handle_message(
        &self,
        plugin: &LoadedPlugin,
        delivery: &Delivery,
        label: Arc<str>,
    ) -> Invocation<Result<(), Failure>> {
        self.invoke(plugin, label, |store, instance| {
            let indices = plugin
                .message
                .as_ref()
                .ok_or(CallError::Missing("message-handler"))?;
            let guest = indices.load(&mut *store, instance)?;
            Ok(guest.call_handle(store, delivery)?)
        })
    }

    /// Runs the HTTP handler on a fresh instance. Blocking: call it off the async runtime.
    pub fn handle_http(
        &self,
        plugin: &LoadedPlugin,
        request: &HttpRequest,
        label: Arc<str>,
    ) -> Invocation<Result<HttpResponse, Failure>> {
        self.invoke(plugin, label, |store, instance| {
            let indices = plugin
                .http
                .as_ref()
                .ok_or(CallError::Missing("http-handler"))?;
            let guest = indices.load(&mut *store, instance)?;
            Ok(guest.call_handle(store, request)?)
        })
    }

    fn new_store(&self, plugin: &LoadedPlugin, label: Arc<str>) -> Store<InputState> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(plugin.info.memory_bytes)
            .trap_on_grow_failure(true)
            .build();
        let state = InputState::new(plugin.info.clone(), self.store.clone(), label, limits);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        let ticks = plugin
            .info
            .timeout
            .as_millis()
            .div_ceil(EPOCH_TICK.as_millis()) as u64;
        store.set_epoch_deadline(ticks.max(1));
        store.epoch_deadline_trap();
        store
    }

    fn invoke<T>(
        &self,
        plugin: &LoadedPlugin,
        label: Arc<str>,
        call: impl FnOnce(
            &mut Store<InputState>,
            &wasmtime::component::Instance,
        ) -> Result<T, CallError>,
    ) -> Invocation<T> {
        let mut store = self.new_store(plugin, label.clone());
        let outcome = match plugin.pre.instantiate(&mut store) {
            Ok(instance) => call(&mut store, &instance),
            Err(e) => Err(CallError::Wasm(e)),
        };
        let outcome = outcome.map_err(|e| match e {
            CallError::Missing(what) => InvokeError::MissingExport(what),
            CallError::Wasm(e) => classify(&e, &plugin.info),
        });
        let state = store.into_data();
        forward_output(&plugin.info.name, &label, "stdout", &state.stdout);
        forward_output(&plugin.info.name, &label, "stderr", &state.stderr);
        Invocation {
            outcome,
            effects: state.effects,
        }
    }
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

fn classify(err: &wasmtime::Error, info: &PluginInfo) -> InvokeError {
    if let Some(trap) = err.downcast_ref::<Trap>() {
        if *trap == Trap::Interrupt {
            return InvokeError::Timeout(info.timeout);
        }
        tracing::debug!(plugin = %info.name, "trap details: {err:?}");
        return InvokeError::Trap(trap.to_string());
    }
    let text = format!("{err:#}");
    if text.contains("forcing trap when growing memory") {
        return InvokeError::MemoryLimit(info.memory_bytes >> 20);
    }
    // Not a wasm trap: a host-side error, e.g. malformed data lifted from the guest. Its root
    // cause says what went wrong; the full chain (with backtrace) is kept at debug level.
    tracing::debug!(plugin = %info.name, "failure details: {err:?}");
    let cause = err.chain().last().map(|c| c.to_string()).unwrap_or(text);
    InvokeError::Trap(cause)
}

fn forward_output(plugin: &str, input: &str, stream: &str, output: &output::CapturedOutput) {
    let (text, dropped) = output.take();
    for line in text.lines().filter(|l| !l.is_empty()) {
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
fn wasmparser_is_core_module(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [1, 0, 0, 0]
}
