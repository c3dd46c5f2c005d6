//! The one error type of the HTTP layer: every error body is `{"message": .., "status": ..}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An HTTP error answered as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The status code.
    pub status: StatusCode,
    /// A message a person can act on; never internal details.
    pub message: String,
    /// Methods for an `Allow` header (405 only).
    pub allow: Vec<String>,
    /// When to try again, for a `Retry-After` header (503 only).
    pub retry_after: Option<std::time::Duration>,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            allow: Vec::new(),
            retry_after: None,
        }
    }

    /// 404 for a path no route or file serves.
    pub fn not_found(path: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("no route for {path}"))
    }

    /// 405 for a path whose routes take only the methods `allow`.
    pub fn method_not_allowed(path: &str, allow: Vec<String>) -> Self {
        let message = format!("{path} allows {}", allow.join(", "));
        ApiError {
            allow,
            ..Self::new(StatusCode::METHOD_NOT_ALLOWED, message)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "message": self.message, "status": self.status.as_u16() });
        let mut response = (self.status, Json(body)).into_response();
        if !self.allow.is_empty()
            && let Ok(value) = HeaderValue::from_str(&self.allow.join(", "))
        {
            response.headers_mut().insert(header::ALLOW, value);
        }
        if let Some(after) = self.retry_after {
            let seconds = after.as_secs().max(1);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
