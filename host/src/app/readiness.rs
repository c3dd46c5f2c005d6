//! `GET /readyz`: whether this host can do its work now. 200 only when the bus is connected,
//! every configured plugin is loaded and every subscription makes progress; otherwise 503 with
//! the reasons. (`GET /healthz` is liveness: it answers 200 while the process serves.)
//!
//! The reasons name plugins and subscriptions, never addresses or error chains: those are in
//! the log and on the admin routes.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::Deployment;
use crate::bus::Health;

/// The public router with `/readyz`.
pub fn router(deployment: Arc<Deployment>) -> Router {
    Router::new()
        .route("/readyz", get(readyz))
        .with_state(deployment)
}

async fn readyz(State(deployment): State<Arc<Deployment>>) -> Response {
    let reasons = not_ready(&deployment).await;
    if reasons.is_empty() {
        return Json(serde_json::json!({ "status": "ready" })).into_response();
    }
    let body = serde_json::json!({ "status": "not ready", "reasons": reasons });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// Why the host is not ready; empty when it is.
pub async fn not_ready(deployment: &Deployment) -> Vec<String> {
    let dispatcher = deployment.dispatcher();
    let mut reasons = Vec::new();
    if dispatcher.bus().health() != Health::Ok {
        reasons.push("the bus cannot reach its broker or subscribe (see the log)".to_string());
    }
    match deployment.config().await {
        None => reasons.push("no configuration is applied yet".to_string()),
        Some(config) => {
            let registry = dispatcher.registry();
            for name in config.plugins.keys() {
                if registry.get(name).is_none() {
                    reasons.push(format!("plugin {name} is not loaded"));
                }
            }
        }
    }
    for subscription in dispatcher.stalled().keys() {
        reasons.push(format!("subscription {subscription} makes no progress"));
    }
    reasons
}
