//! A plugin version: a compiled, checked and pre-instantiated component.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use wasmtime::component::InstancePre;

use super::bindings::{http_handler, message_handler};
use super::budget::Budget;
use super::host_state::InputState;

/// What the host knows about a plugin version besides its code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// The plugin's name from the config; also its state namespace.
    pub name: String,
    /// Content hash of the `.wasm` (first 12 hex digits of its BLAKE3 hash).
    pub version: String,
    /// Where the component was loaded from.
    pub source: PathBuf,
    /// Topics it may publish to.
    pub publish: BTreeSet<String>,
    /// Values its `config.get` returns.
    pub config: BTreeMap<String, String>,
    /// Memory limit in bytes.
    pub memory_bytes: usize,
    /// Time limit per input.
    pub timeout: Duration,
    /// What one input may stage in host memory.
    pub budget: Budget,
    /// Most inputs of this plugin running at once.
    pub concurrency: usize,
    /// The CloudEvents attributes of what it produces, when its config asks for them.
    pub cloudevents: Option<crate::cloudevents::Producer>,
    /// Inputs one instance serves before it is replaced, when the plugin reuses instances
    /// (`instance = "reuse"`); `None`: a fresh instance per input.
    pub reuse: Option<u32>,
}

/// Which handlers a component exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exports {
    /// It exports `message-handler`, so it can serve subscriptions.
    pub message: bool,
    /// It exports `http-handler`, so it can serve routes.
    pub http: bool,
}

/// A loaded plugin version, ready to instantiate once per input.
pub struct LoadedPlugin {
    /// Name, version and limits.
    pub info: Arc<PluginInfo>,
    /// When this version was loaded.
    pub loaded_at: SystemTime,
    /// How its code was obtained.
    pub compiled: Compiled,
    pub(super) pre: InstancePre<InputState>,
    pub(super) message: Option<message_handler::GuestIndices>,
    pub(super) http: Option<http_handler::GuestIndices>,
    /// Idle instances, when the plugin reuses them.
    pub(super) warm: super::warm::WarmPool,
}

/// How a plugin's machine code was obtained, and how long it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compiled {
    /// Read from the compiled-code cache rather than compiled.
    pub from_cache: bool,
    /// Compiling or reading it.
    pub took: std::time::Duration,
}

impl std::fmt::Display for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = if self.from_cache {
            "from the compiled-code cache"
        } else {
            "compiled"
        };
        write!(f, "{how} in {}", crate::runtime::human_duration(self.took))
    }
}

impl LoadedPlugin {
    /// Which handlers this version exports.
    pub fn exports(&self) -> Exports {
        Exports {
            message: self.message.is_some(),
            http: self.http.is_some(),
        }
    }
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("info", &self.info)
            .field("exports", &self.exports())
            .finish()
    }
}

/// Content hash used as a plugin's version.
pub fn version_of(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex()[..12].to_string()
}
