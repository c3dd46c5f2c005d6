//! The plugin registry: plugin name → its current version, swapped atomically.
//!
//! An input takes an `Arc` of the current version when it starts and keeps it to the end, so
//! a swap never changes the code under a running input; the old version is freed when the
//! last input using it finishes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::LoadedPlugin;

/// Counters kept per plugin name, across versions.
#[derive(Debug, Default)]
pub struct PluginStats {
    /// Inputs that committed.
    pub handled: AtomicU64,
    /// Inputs that failed (each failed attempt counts).
    pub failed: AtomicU64,
}

struct Entry {
    current: Arc<LoadedPlugin>,
    stats: Arc<PluginStats>,
}

/// See the module docs.
#[derive(Default)]
pub struct Registry {
    plugins: RwLock<BTreeMap<String, Entry>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current version of `name`.
    pub fn get(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        self.read().get(name).map(|e| e.current.clone())
    }

    /// The counters of `name`.
    pub fn stats(&self, name: &str) -> Option<Arc<PluginStats>> {
        self.read().get(name).map(|e| e.stats.clone())
    }

    /// Installs `plugin` as the current version of its name; returns the version it replaced.
    pub fn install(&self, plugin: LoadedPlugin) -> Option<Arc<LoadedPlugin>> {
        let name = plugin.info.name.clone();
        let plugin = Arc::new(plugin);
        let mut plugins = self.plugins.write().unwrap_or_else(|e| e.into_inner());
        match plugins.get_mut(&name) {
            Some(entry) => Some(std::mem::replace(&mut entry.current, plugin)),
            None => {
                plugins.insert(
                    name,
                    Entry {
                        current: plugin,
                        stats: Arc::default(),
                    },
                );
                None
            }
        }
    }

    /// Removes `name`; inputs already running on it finish normally.
    pub fn remove(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        let mut plugins = self.plugins.write().unwrap_or_else(|e| e.into_inner());
        plugins.remove(name).map(|e| e.current)
    }

    /// Every current version, by name.
    pub fn all(&self) -> Vec<(Arc<LoadedPlugin>, Arc<PluginStats>)> {
        self.read()
            .values()
            .map(|e| (e.current.clone(), e.stats.clone()))
            .collect()
    }

    /// Counts one committed input of `name`.
    pub fn count_handled(&self, name: &str) {
        if let Some(stats) = self.stats(name) {
            stats.handled.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one failed attempt of `name`.
    pub fn count_failed(&self, name: &str) {
        if let Some(stats) = self.stats(name) {
            stats.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Entry>> {
        self.plugins.read().unwrap_or_else(|e| e.into_inner())
    }
}
