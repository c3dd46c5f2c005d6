//! The shop's catalog and cart compiled natively into the host, served at `/native/...`: the
//! baseline of the HTTP benchmark (`make bench`). Only in builds with the `bench` feature.
//!
//! The handlers run the plugins' own Rust code (the same crates the components are built
//! from) on the same state, so a benchmark compares the sandbox with no sandbox, not two
//! implementations. They answer reads only: a native write would skip the commit path that a
//! plugin's write goes through, and compare nothing.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use plugin_sdk::{HttpHandler, Level};

use crate::state::StateStore;

/// `GET /native/api/product/{itemId}` (the catalog) and `GET /native/api/cart/{cartId}` (the
/// cart, reading the `cart` plugin's state).
pub fn router(state: Arc<dyn StateStore>) -> Router {
    Router::new()
        .route("/native/api/product/{id}", get(product))
        .route("/native/api/cart/{id}", get(cart))
        .with_state(state)
}

async fn product(Path(id): Path<String>) -> Response {
    let request = get_request("/api/product/{itemId}", "itemId", &id);
    answer(catalog::Catalog::on_request(
        &mut Natively::without_state(),
        request,
    ))
}

async fn cart(State(state): State<Arc<dyn StateStore>>, Path(id): Path<String>) -> Response {
    let request = get_request("/api/cart/{cartId}", "cartId", &id);
    let mut host = Natively {
        state: Some(state),
        namespace: "cart",
    };
    answer(cart::Cart::on_request(&mut host, request))
}

/// The request a plugin would get for `GET` of `pattern` with its one parameter.
fn get_request(pattern: &str, param: &str, value: &str) -> plugin_sdk::Request {
    plugin_sdk::Request {
        method: "GET".into(),
        path: pattern.replace(&format!("{{{param}}}"), value),
        route: pattern.into(),
        params: vec![(param.into(), value.into())],
        ..Default::default()
    }
}

fn answer(result: Result<plugin_sdk::Response, plugin_sdk::Failure>) -> Response {
    let response = match result {
        Ok(response) => response,
        Err(failure) => {
            let message = format!("{failure:?}");
            return (StatusCode::INTERNAL_SERVER_ERROR, message).into_response();
        }
    };
    let mut out = Response::new(Body::from(response.body));
    *out.status_mut() = StatusCode::from_u16(response.status).unwrap_or(StatusCode::OK);
    for (name, value) in response.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            out.headers_mut().append(name, value);
        }
    }
    out
}

/// The plugin contract's host calls, answered directly: reads from the host's state store;
/// writes and sends are refused (these routes only read).
struct Natively {
    state: Option<Arc<dyn StateStore>>,
    namespace: &'static str,
}

impl Natively {
    fn without_state() -> Self {
        Natively {
            state: None,
            namespace: "",
        }
    }
}

impl plugin_sdk::Host for Natively {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        let state = self.state.as_ref()?;
        state.get(self.namespace, key).ok().flatten()
    }
    fn set(&mut self, _key: &str, _value: &[u8]) -> Result<(), String> {
        Err("the native routes only read".into())
    }
    fn delete(&mut self, _key: &str) {}
    fn scan(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        let Some(state) = &self.state else {
            return Vec::new();
        };
        state.scan(self.namespace, prefix).unwrap_or_default()
    }
    fn send(&mut self, _msg: plugin_sdk::Message) -> Result<(), String> {
        Err("the native routes only read".into())
    }
    fn config(&self, _key: &str) -> Option<String> {
        None
    }
    fn log(&self, level: Level, msg: &str) {
        match level {
            Level::Error | Level::Warn => tracing::warn!(target: "native", "{msg}"),
            _ => tracing::debug!(target: "native", "{msg}"),
        }
    }
}
