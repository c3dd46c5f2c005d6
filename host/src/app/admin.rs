//! Admin routes: `GET /admin/plugins` lists what is deployed and how it is doing.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::Deployment;

/// One plugin as `GET /admin/plugins` shows it.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct PluginStatus {
    /// The plugin's name.
    pub name: String,
    /// Content hash of the serving version; `null` when no version could be loaded.
    pub version: Option<String>,
    /// When the serving version was loaded (RFC 3339).
    pub loaded_at: Option<String>,
    /// The component file.
    pub source: String,
    /// Its routes, as `METHOD /path`.
    pub routes: Vec<String>,
    /// Its subscriptions, as `topic (group g)`.
    pub subscriptions: Vec<String>,
    /// Inputs committed since start.
    pub handled: u64,
    /// Failed attempts since start.
    pub failed: u64,
    /// Why the newest file was rejected, if the serving version is older than it.
    pub last_load_error: Option<String>,
}

/// The admin router.
pub fn router(deployment: Arc<Deployment>) -> Router {
    Router::new()
        .route("/admin/plugins", get(plugins))
        .with_state(deployment)
}

async fn plugins(State(deployment): State<Arc<Deployment>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "plugins": status(&deployment).await }))
}

/// The status of every configured plugin, by name.
pub async fn status(deployment: &Deployment) -> Vec<PluginStatus> {
    let Some(config) = deployment.config().await else {
        return Vec::new();
    };
    let registry = deployment.dispatcher().registry();
    let errors = deployment.load_errors();
    config
        .plugins
        .values()
        .map(|plugin| {
            let loaded = registry.get(&plugin.name);
            let stats = registry.stats(&plugin.name);
            let count =
                |pick: fn(&crate::runtime::PluginStats) -> &std::sync::atomic::AtomicU64| {
                    stats
                        .as_ref()
                        .map_or(0, |s| pick(s).load(Ordering::Relaxed))
                };
            PluginStatus {
                name: plugin.name.clone(),
                version: loaded.as_ref().map(|p| p.info.version.clone()),
                loaded_at: loaded
                    .as_ref()
                    .map(|p| humantime::format_rfc3339_seconds(p.loaded_at).to_string()),
                source: plugin.path.display().to_string(),
                routes: config
                    .routes
                    .iter()
                    .filter(|r| r.plugin == plugin.name)
                    .map(|r| format!("{} {}", r.method, r.path))
                    .collect(),
                subscriptions: config
                    .subscriptions
                    .iter()
                    .filter(|s| s.plugin == plugin.name)
                    .map(|s| format!("{} (group {})", s.topic, s.group))
                    .collect(),
                handled: count(|s| &s.handled),
                failed: count(|s| &s.failed),
                last_load_error: errors.get(&plugin.name).cloned(),
            }
        })
        .collect()
}
