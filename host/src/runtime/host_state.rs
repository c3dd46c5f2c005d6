//! The data of one input's `Store`: its sandboxed WASI context, its limits, and the host side
//! of the contract's imports (outbox, state, config, log), which stage effects instead of
//! applying them.

use std::sync::Arc;

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::eventhost::plugin::{config, log, outbox, state, types};
use super::effects::{Effects, OutMessage};
use super::output::CapturedOutput;
use super::plugin::PluginInfo;
use crate::state::StateStore;

/// Largest state key a plugin may use, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest state value or message payload, in bytes.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Most messages one input may send.
pub const MAX_MESSAGES_PER_INPUT: usize = 10_000;
/// Header names with this prefix are the host's own and cannot be set by plugins.
pub const RESERVED_HEADER_PREFIX: &str = "eventhost-";

/// Store data for one input.
pub struct InputState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limits: StoreLimits,
    pub(super) stdout: CapturedOutput,
    pub(super) stderr: CapturedOutput,
    plugin: Arc<PluginInfo>,
    store: Arc<dyn StateStore>,
    /// How this input is named in logs, e.g. `orders/2@17` or `POST /api/cart/1`.
    label: Arc<str>,
    pub(super) effects: Effects,
}

impl InputState {
    pub(super) fn new(
        plugin: Arc<PluginInfo>,
        store: Arc<dyn StateStore>,
        label: Arc<str>,
        limits: StoreLimits,
    ) -> Self {
        let stdout = CapturedOutput::default();
        let stderr = CapturedOutput::default();
        // Nothing is granted: no preopened directories, no environment, no arguments, and the
        // default socket policy denies every address and name lookup.
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .build();
        InputState {
            wasi,
            table: ResourceTable::new(),
            limits,
            stdout,
            stderr,
            plugin,
            store,
            label,
            effects: Effects::default(),
        }
    }

    fn check_key(key: &str) -> Result<(), String> {
        if key.len() > MAX_KEY_BYTES {
            return Err(format!(
                "state key is {} bytes, the limit is {MAX_KEY_BYTES}",
                key.len()
            ));
        }
        Ok(())
    }
}

impl WasiView for InputState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for InputState {}

impl outbox::Host for InputState {
    fn send(&mut self, msg: types::Message) -> wasmtime::Result<Result<(), String>> {
        if !self.plugin.publish.contains(&msg.topic) {
            return Ok(Err(format!(
                "plugin {} may not publish to topic {:?} (allowed: {:?})",
                self.plugin.name, msg.topic, self.plugin.publish
            )));
        }
        if self.effects.outbox.len() >= MAX_MESSAGES_PER_INPUT {
            return Ok(Err(format!(
                "more than {MAX_MESSAGES_PER_INPUT} messages in one input"
            )));
        }
        if msg.value.len() > MAX_VALUE_BYTES {
            return Ok(Err(format!(
                "message is {} bytes, the limit is {MAX_VALUE_BYTES}",
                msg.value.len()
            )));
        }
        if let Some((name, _)) = msg
            .headers
            .iter()
            .find(|(n, _)| n.starts_with(RESERVED_HEADER_PREFIX))
        {
            return Ok(Err(format!("header {name:?} is reserved for the host")));
        }
        self.effects.outbox.push(OutMessage {
            topic: msg.topic,
            key: msg.key,
            value: msg.value,
            headers: msg.headers,
        });
        Ok(Ok(()))
    }
}

impl state::Host for InputState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        if let Some(staged) = self.effects.staged(&key) {
            return Ok(staged.clone());
        }
        let value = self.store.get(&self.plugin.name, &key)?;
        self.effects
            .reads
            .entry(key)
            .or_insert_with(|| value.clone());
        Ok(value)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
        if let Err(e) = Self::check_key(&key) {
            return Ok(Err(e));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Ok(Err(format!(
                "state value is {} bytes, the limit is {MAX_VALUE_BYTES}",
                value.len()
            )));
        }
        self.effects.writes.insert(key, Some(value));
        Ok(Ok(()))
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        self.effects.writes.insert(key, None);
        Ok(())
    }

    fn scan(&mut self, prefix: String) -> wasmtime::Result<Vec<(String, Vec<u8>)>> {
        let stored = self.store.scan(&self.plugin.name, &prefix)?;
        self.effects
            .scans
            .entry(prefix.clone())
            .or_insert_with(|| stored.clone());
        Ok(self.effects.overlay_scan(&prefix, stored))
    }
}

impl config::Host for InputState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.plugin.config.get(&key).cloned())
    }
}

impl log::Host for InputState {
    fn log(&mut self, level: log::Level, msg: String) -> wasmtime::Result<()> {
        let (plugin, input) = (&*self.plugin.name, &*self.label);
        match level {
            log::Level::Trace => tracing::trace!(plugin = %plugin, input = %input, "{msg}"),
            log::Level::Debug => tracing::debug!(plugin = %plugin, input = %input, "{msg}"),
            log::Level::Info => tracing::info!(plugin = %plugin, input = %input, "{msg}"),
            log::Level::Warn => tracing::warn!(plugin = %plugin, input = %input, "{msg}"),
            log::Level::Error => tracing::error!(plugin = %plugin, input = %input, "{msg}"),
        }
        Ok(())
    }
}
