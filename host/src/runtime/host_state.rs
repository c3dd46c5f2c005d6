//! The data of one input's `Store`: its sandboxed WASI context, its limits, and the host side
//! of the contract's imports (outbox, state, config, log), which stage effects instead of
//! applying them.

use std::sync::Arc;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::eventhost::plugin::{config, log, outbox, state, types};
use super::budget::{BudgetKind, Usage};
use super::effects::{Effects, OutMessage};
use super::output::CapturedOutput;
use super::plugin::PluginInfo;
use crate::state::StateStore;

/// Largest state key a plugin may use, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest state value or message payload, in bytes.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Header names with this prefix are the host's own and cannot be set by plugins.
pub const RESERVED_HEADER_PREFIX: &str = "eventhost-";

/// Store data for one input.
pub struct InputState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limits: MemoryLimiter,
    pub(super) stdout: CapturedOutput,
    pub(super) stderr: CapturedOutput,
    plugin: Arc<PluginInfo>,
    store: Arc<dyn StateStore>,
    /// How this input is named in logs, e.g. `orders/2@17` or `POST /api/cart/1`.
    label: Arc<str>,
    pub(super) effects: Effects,
    usage: Usage,
    /// The largest message the bus accepts, key and headers included.
    max_message_bytes: Option<usize>,
}

impl InputState {
    pub(super) fn new(
        plugin: Arc<PluginInfo>,
        store: Arc<dyn StateStore>,
        label: Arc<str>,
        max_message_bytes: Option<usize>,
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
            limits: MemoryLimiter {
                max: plugin.memory_bytes,
                peak: 0,
            },
            stdout,
            stderr,
            plugin,
            store,
            label,
            effects: Effects::default(),
            usage: Usage::default(),
            max_message_bytes,
        }
    }

    /// Makes a kept instance's state ready for its next input: the label changes and the
    /// budgets start again. (Effects were taken when the last input finished.)
    pub(super) fn next_input(&mut self, label: Arc<str>) {
        self.label = label;
        self.usage = Usage::default();
    }

    /// Counts `amount` against the input's budget of `kind`. Going over traps the input: a
    /// handler could ignore an error result and go on, a trap it cannot.
    fn spend(&mut self, kind: BudgetKind, amount: usize) -> wasmtime::Result<()> {
        self.usage
            .spend(&self.plugin.budget, kind, amount)
            .map_err(wasmtime::Error::from)
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
        let size = message_size(&msg);
        if let Some(max) = self.max_message_bytes
            && size > max
        {
            return Ok(Err(format!(
                "message is {size} bytes with its key and headers, the bus accepts at most {max}"
            )));
        }
        self.spend(BudgetKind::OutboxMessages, 1)?;
        self.spend(BudgetKind::OutboxBytes, size)?;
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
        let read = key.len() + value.as_ref().map_or(0, Vec::len);
        self.spend(BudgetKind::StateReadBytes, read)?;
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
        self.spend(BudgetKind::StateWrites, 1)?;
        self.spend(BudgetKind::StateWriteBytes, key.len() + value.len())?;
        self.effects.writes.insert(key, Some(value));
        Ok(Ok(()))
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        self.spend(BudgetKind::StateWrites, 1)?;
        self.spend(BudgetKind::StateWriteBytes, key.len())?;
        self.effects.writes.insert(key, None);
        Ok(())
    }

    fn scan(&mut self, prefix: String) -> wasmtime::Result<Vec<(String, Vec<u8>)>> {
        let stored = self.store.scan(&self.plugin.name, &prefix)?;
        let read = stored.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        self.spend(BudgetKind::StateReadBytes, prefix.len() + read)?;
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
        self.spend(BudgetKind::LogBytes, msg.len())?;
        let msg = escape_log_text(&msg);
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

/// Bytes a message takes on the bus: key, value and headers.
fn message_size(msg: &types::Message) -> usize {
    let headers: usize = msg.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
    msg.key.as_ref().map_or(0, Vec::len) + msg.value.len() + headers
}

/// Plugin text as one log line: control characters (newlines, carriage returns, terminal
/// escapes) are escaped, so a plugin cannot forge host log lines or rewrite the terminal.
pub(super) fn escape_log_text(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    escaped.into()
}

/// The plugin's memory limit, enforced with an error of its own type so a breach is told
/// apart from other traps without reading messages.
pub(super) struct MemoryLimiter {
    max: usize,
    /// The largest linear memory the instance was given, for the high-water mark.
    pub(super) peak: usize,
}

/// A plugin tried to grow its linear memory past its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("memory limit of {} MiB exceeded", .limit_bytes >> 20)]
pub struct MemoryLimitExceeded {
    /// The limit in bytes.
    pub limit_bytes: usize,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max {
            return Err(MemoryLimitExceeded {
                limit_bytes: self.max,
            }
            .into());
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables are bounded by the pooling allocator's slots.
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_text_cannot_break_lines() {
        assert_eq!(escape_log_text("plain text é"), "plain text é");
        assert_eq!(
            escape_log_text("ok\n2026-01-01 ERROR forged\r\u{1b}[2J"),
            "ok\\n2026-01-01 ERROR forged\\r\\u{1b}[2J"
        );
    }
}
