//! Admin routes: `GET /admin/plugins` names the host and lists what is deployed and how it is
//! doing;
//! `GET /metrics` gives the host's metrics in Prometheus text format; `GET /admin/tail` streams
//! a topic's records (for `eventhost tail` on the embedded bus); `GET /admin/subscriptions`
//! and `POST /admin/{pause,resume,replay,redrive}?subscription=NAME` show and repair
//! subscriptions (see `repair`).
//!
//! They show paths and internal errors, so they are private: a caller on a loopback address
//! is let in; anyone else must send the configured token as `Authorization: Bearer ..`, and
//! without a configured token nobody else gets in.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use super::Deployment;
use crate::http::ApiError;

/// Who may call the admin routes besides loopback callers.
#[derive(Clone, Default)]
pub struct AdminAccess {
    /// The bearer token that opens them to other callers; `None`: nobody else.
    pub token: Option<Arc<str>>,
}

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
    /// Its subscriptions, as `topic (group g)`, with `, paused` when an operator paused it.
    pub subscriptions: Vec<String>,
    /// Inputs committed since start.
    pub handled: u64,
    /// Failed attempts since start.
    pub failed: u64,
    /// Why the newest file was rejected, if the serving version is older than it.
    pub last_load_error: Option<String>,
}

/// The admin router. Serve it with `ConnectInfo<SocketAddr>` so loopback callers are known.
pub fn router(deployment: Arc<Deployment>, access: AdminAccess) -> Router {
    Router::new()
        .route("/admin/plugins", get(plugins))
        .route("/metrics", get(metrics))
        .route("/admin/tail", get(super::tail::route))
        .route("/admin/subscriptions", get(super::repair::list))
        .route("/admin/pause", post(super::repair::pause))
        .route("/admin/resume", post(super::repair::resume))
        .route("/admin/replay", post(super::repair::replay))
        .route("/admin/redrive", post(super::repair::redrive))
        .route_layer(middleware::from_fn_with_state(access, require_access))
        .with_state(deployment)
}

async fn require_access(
    State(access): State<AdminAccess>,
    request: Request,
    next: Next,
) -> Response {
    let loopback = (request.extensions().get::<ConnectInfo<SocketAddr>>())
        .is_some_and(|ConnectInfo(peer)| peer.ip().is_loopback());
    let presented = (request.headers().get(header::AUTHORIZATION))
        .and_then(|v| v.to_str().ok()?.strip_prefix("Bearer "));
    let token_ok = match (&access.token, presented) {
        (Some(token), Some(presented)) => same_secret(token.as_bytes(), presented.as_bytes()),
        _ => false,
    };
    if loopback || token_ok {
        return next.run(request).await;
    }
    let message = match (&access.token, presented) {
        (None, _) => {
            "admin routes answer loopback callers only; set server.admin_token to call them from elsewhere"
        }
        (Some(_), None) => "admin routes need an Authorization: Bearer token",
        (Some(_), Some(_)) => "the admin token is wrong",
    };
    let status = if access.token.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::FORBIDDEN
    };
    ApiError::new(status, message).into_response()
}

/// Compares secrets in time that does not depend on where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

async fn metrics(State(deployment): State<Arc<Deployment>>) -> Response {
    let text = deployment.dispatcher().render_metrics();
    let content_type = "text/plain; version=0.0.4; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], text).into_response()
}

async fn plugins(State(deployment): State<Arc<Deployment>>) -> Json<serde_json::Value> {
    let host = deployment.host_id.get();
    // On Kafka, the partitions this host's consumers were given (as their statistics report
    // them), so that an operator sees how a fleet shares the work.
    let partitions: Vec<String> = (deployment.dispatcher().bus().lag().iter())
        .map(|p| format!("{}/{} ({})", p.topic, p.partition, p.group))
        .collect();
    Json(serde_json::json!({
        "host": host,
        "partitions": partitions,
        "plugins": status(&deployment).await,
    }))
}

/// The status of every configured plugin, by name.
pub async fn status(deployment: &Deployment) -> Vec<PluginStatus> {
    let Some(config) = deployment.config().await else {
        return Vec::new();
    };
    let registry = deployment.dispatcher().registry();
    let errors = deployment.load_errors();
    let paused = deployment.paused().await;
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
                    .map(|s| {
                        let key = (s.topic.clone(), s.group.clone());
                        let state = if paused.contains(&key) {
                            ", paused"
                        } else {
                            ""
                        };
                        format!("{} (group {}){state}", s.topic, s.group)
                    })
                    .collect(),
                handled: count(|s| &s.handled),
                failed: count(|s| &s.failed),
                last_load_error: errors.get(&plugin.name).cloned(),
            }
        })
        .collect()
}
