//! Applying an input's staged effects: publish and wait for acknowledgement, then write state.

use super::Dispatcher;
use crate::bus::BusError;
use crate::runtime::{Effects, OutMessage, PluginInfo};

/// Header naming the plugin that produced a message.
pub const PLUGIN_HEADER: &str = "eventhost-plugin";
/// Header naming the plugin version (content hash) that produced a message.
pub const VERSION_HEADER: &str = "eventhost-plugin-version";

pub(super) enum CommitError {
    /// State the input read changed before it could commit: run it again.
    Conflict,
    /// The bus or the store failed; nothing of the input's state writes was applied.
    Failed(String),
    /// The bus refused a message for good; nothing of the input's state writes was applied.
    Refused(String),
}

impl Dispatcher {
    /// Applies `effects` of an input that succeeded on `plugin`.
    ///
    /// Order matters: messages are acknowledged before state is written, so a crash in between
    /// re-runs the input (at-least-once publishing) rather than losing its messages.
    pub(super) async fn commit(
        &self,
        plugin: &PluginInfo,
        effects: Effects,
    ) -> Result<(), CommitError> {
        if effects.writes.is_empty() {
            // Nothing to write: a read-only input cannot lose anyone's update.
            return self.publish(stamp(plugin, effects.outbox)).await;
        }
        let lock = self.commit_lock(&plugin.name);
        let _guard = lock.lock().await;
        self.commit_locked(plugin, effects).await
    }

    /// Like [`Dispatcher::commit`], for a caller that already holds the plugin's commit lock.
    pub(super) async fn commit_locked(
        &self,
        plugin: &PluginInfo,
        effects: Effects,
    ) -> Result<(), CommitError> {
        let messages = stamp(plugin, effects.outbox);
        let store = self.store.clone();
        let name = plugin.name.clone();
        let (reads, scans) = (effects.reads, effects.scans);
        let unchanged = blocking(move || {
            for (key, seen) in &reads {
                if store.get(&name, key)? != *seen {
                    return Ok(false);
                }
            }
            for (prefix, seen) in &scans {
                if store.scan(&name, prefix)? != *seen {
                    return Ok(false);
                }
            }
            Ok(true)
        })
        .await?;
        if !unchanged {
            return Err(CommitError::Conflict);
        }
        self.publish(messages).await?;
        let (store, name) = (self.store.clone(), plugin.name.clone());
        let writes: Vec<_> = effects.writes.into_iter().collect();
        blocking(move || store.apply(&name, &writes)).await
    }

    async fn publish(&self, messages: Vec<OutMessage>) -> Result<(), CommitError> {
        if messages.is_empty() {
            return Ok(());
        }
        self.bus.publish(messages).await.map_err(|e| match e {
            BusError::Refused(why) => CommitError::Refused(why),
            other => CommitError::Failed(other.to_string()),
        })
    }
}

/// Adds the producing plugin's name and version to every message.
fn stamp(plugin: &PluginInfo, mut messages: Vec<OutMessage>) -> Vec<OutMessage> {
    for message in &mut messages {
        message
            .headers
            .push((PLUGIN_HEADER.into(), plugin.name.clone().into_bytes()));
        message
            .headers
            .push((VERSION_HEADER.into(), plugin.version.clone().into_bytes()));
    }
    messages
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, crate::state::StateError> + Send + 'static,
) -> Result<T, CommitError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(|e| CommitError::Failed(e.to_string())),
        Err(join) => Err(CommitError::Failed(format!("state task failed: {join}"))),
    }
}
