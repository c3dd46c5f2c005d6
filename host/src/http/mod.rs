//! The HTTP front: configured routes dispatched to plugins, an optional static folder,
//! `/healthz`, CORS when configured, and JSON errors for everything else.

mod cors;
mod error;
#[cfg(feature = "bench")]
mod native;
mod routes;
mod server;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use percent_encoding::percent_decode_str;
use tower::ServiceExt as _;
use tower_http::services::ServeDir;
use tower_http::timeout::RequestBodyTimeoutLayer;

pub use error::ApiError;
pub use routes::{Match, Route, RouteTable};
pub use server::{ServerLimits, serve};

use crate::cloudevents;
use crate::dispatch::{Dispatcher, InputError};
use crate::error::Chain;
use crate::runtime::{Failure, HttpRequest, HttpResponse, InvokeError};

/// What the HTTP handlers share.
pub struct HttpState {
    dispatcher: Arc<Dispatcher>,
    routes: RwLock<Arc<RouteTable>>,
    body_limit: usize,
    body_timeout: std::time::Duration,
    static_dir: Option<PathBuf>,
    cors: Option<cors::Policy>,
}

impl HttpState {
    /// State for a server dispatching `routes` to `dispatcher`.
    pub fn new(
        dispatcher: Arc<Dispatcher>,
        routes: RouteTable,
        body_limit: usize,
        body_timeout: std::time::Duration,
        static_dir: Option<PathBuf>,
    ) -> Self {
        HttpState {
            dispatcher,
            routes: RwLock::new(Arc::new(routes)),
            body_limit,
            body_timeout,
            static_dir,
            cors: None,
        }
    }

    /// Replaces the route table; requests already matched keep their route.
    pub fn set_routes(&self, routes: RouteTable) {
        *self.routes.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(routes);
    }

    /// The routes requests are matched against now.
    pub(crate) fn routes(&self) -> Arc<RouteTable> {
        self.routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The application router. Tests drive it with `oneshot`, without a port.
pub fn router(state: Arc<HttpState>) -> Router {
    router_with(state, Router::new())
}

/// The application router with the routes of `more` (e.g. the admin routes) merged in, all
/// behind the CORS policy; request bodies must arrive within the body timeout.
pub fn router_with(state: Arc<HttpState>, more: Router) -> Router {
    let body_timeout = state.body_timeout;
    let app = Router::new()
        .route("/healthz", get(healthz))
        .fallback(dispatch)
        .layer(RequestBodyTimeoutLayer::new(body_timeout))
        .with_state(state.clone())
        .merge(more);
    #[cfg(feature = "bench")]
    let app = app.merge(native::router(state.dispatcher.state()));
    cors::layer(app, state)
}

/// Liveness: 200 while the host serves. Whether it can do its work (broker reachable, plugins
/// loaded, subscriptions flowing) is `GET /readyz`.
async fn healthz() -> Response {
    Json(serde_json::json!({ "status": "ok" })).into_response()
}

async fn dispatch(State(state): State<Arc<HttpState>>, request: Request) -> Response {
    let routes = state.routes();
    let path = request.uri().path().to_string();
    match routes.find(request.method().as_str(), &path) {
        Match::Found(route, params) => {
            let method = request.method().clone();
            let mut response = match call_plugin(&state, route, params, request).await {
                Ok(response) => response,
                Err(error) => error.into_response(),
            };
            if matches!(
                response.status(),
                StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
            ) {
                // The body was not read to its end: the connection cannot carry another
                // request, and the client must not try.
                (response.headers_mut())
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            let status = response.status().as_u16();
            (state.dispatcher.metrics()).http_request(&route.pattern, method.as_str(), status);
            response
        }
        // A file still answers GET and HEAD where routes take only other methods, so that
        // e.g. `POST /` can go to a plugin while `GET /` serves the page.
        Match::MethodNotAllowed(allow) => {
            let error = ApiError::method_not_allowed(&path, allow);
            serve_static(&state, request, error).await
        }
        Match::NotFound => serve_static(&state, request, ApiError::not_found(&path)).await,
    }
}

/// The file for a GET or HEAD request, or `otherwise`.
async fn serve_static(state: &HttpState, request: Request, otherwise: ApiError) -> Response {
    let Some(dir) = &state.static_dir else {
        return otherwise.into_response();
    };
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return otherwise.into_response();
    }
    match ServeDir::new(dir).oneshot(request).await {
        Ok(response) if response.status() != StatusCode::NOT_FOUND => response.map(Body::new),
        _ => otherwise.into_response(),
    }
}

async fn call_plugin(
    state: &HttpState,
    route: &Route,
    params: Vec<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body is larger than the limit of {} bytes",
                state.body_limit
            ),
        )
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if let Some(declared) = declared.filter(|len| *len > state.body_limit) {
        // A client still sending when the answer comes would see its connection reset instead
        // of the answer: read (and drop) a body of up to twice the limit first.
        if declared <= state.body_limit.saturating_mul(2) {
            discard(body).await;
        }
        return Err(too_large());
    }
    let body = axum::body::to_bytes(body, state.body_limit)
        .await
        .map_err(|e| body_error(e, state.body_limit))?;
    let params = params
        .into_iter()
        .map(|(name, raw)| match percent_decode_str(&raw).decode_utf8() {
            Ok(value) => Ok((name, value.into_owned())),
            Err(_) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("path parameter {name} is not valid UTF-8"),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (mut headers, mut body) = (header_pairs(&parts.headers), body.to_vec());
    let event = cloudevents::unpack_request(&mut headers, &mut body)
        .map_err(|why| ApiError::new(StatusCode::BAD_REQUEST, why))?;
    let request = HttpRequest {
        // The route's method: HEAD served by a GET route reaches the plugin as GET.
        method: route.method.clone(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        route: route.pattern.clone(),
        params,
        headers,
        body,
    };
    let label = format!("{} {}", request.method, request.path);
    match state.dispatcher.handle_http(&route.plugin, request).await {
        Ok(mut response) => {
            if event == cloudevents::Request::Event {
                answer_as_event(state, &route.plugin, &mut response);
            }
            Ok(to_response(response))
        }
        Err(error) => Err(plugin_error(&route.plugin, &label, error)),
    }
}

/// A successful answer to an event is an event too, when the plugin's config asks for it.
fn answer_as_event(state: &HttpState, plugin: &str, response: &mut HttpResponse) {
    let Some(loaded) = state.dispatcher.registry().get(plugin) else {
        return;
    };
    if let Some(producer) = &loaded.info.cloudevents
        && (200..300).contains(&response.status)
        && !response.body.is_empty()
    {
        let id = uuid::Uuid::new_v4().to_string();
        producer.stamp_response(&id, &mut response.headers);
    }
}

/// Reads `body` to its end, keeping nothing.
async fn discard(mut body: Body) {
    use http_body_util::BodyExt as _;
    while let Some(Ok(_)) = body.frame().await {}
}

/// A body that could not be read: too large (413), or too slow or broken (408).
fn body_error(error: axum::Error, limit: usize) -> ApiError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is larger than the limit of {limit} bytes"),
            );
        }
        source = e.source();
    }
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "the request body did not arrive in time or was cut off",
    )
}

fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(name, value)| {
            Some((name.as_str().to_string(), value.to_str().ok()?.to_string()))
        })
        .collect()
}

/// The plugin's response as sent. The runtime checked it before its effects were applied
/// (status range, header syntax, no framing headers), so nothing is dropped here.
fn to_response(response: HttpResponse) -> Response {
    let mut headers = HeaderMap::with_capacity(response.headers.len());
    for (name, value) in response.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            headers.append(name, value);
        }
    }
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::OK);
    (status, headers, response.body).into_response()
}

/// Maps an input's failure to a status. Client errors carry the plugin's message; server
/// errors are logged in full and answered with a message that leaks no internals.
fn plugin_error(plugin: &str, input: &str, error: InputError) -> ApiError {
    let status = error.http_status();
    let message = match &error {
        InputError::Failed(Failure::Invalid(why)) => {
            return ApiError::new(status, why.clone());
        }
        InputError::Invoke(InvokeError::Timeout(limit)) => format!(
            "plugin {plugin} did not answer within its limit of {} ms",
            limit.as_millis()
        ),
        InputError::NoPlugin(_) => format!("plugin {plugin} is not loaded"),
        InputError::Overloaded(overloaded) => {
            return ApiError {
                retry_after: Some(crate::dispatch::RETRY_AFTER),
                ..ApiError::new(status, format!("plugin {plugin} is busy: {overloaded}"))
            };
        }
        InputError::Commit(_) | InputError::Conflict | InputError::ShuttingDown => {
            "the request's effects could not be applied; nothing was changed, try again".to_string()
        }
        InputError::Invoke(InvokeError::InvalidResponse(_)) => {
            format!("plugin {plugin} returned an invalid response; nothing was changed")
        }
        InputError::Invoke(InvokeError::Budget(exceeded)) => {
            format!("plugin {plugin} went {exceeded}; nothing was changed")
        }
        InputError::Refused(_) => {
            format!("plugin {plugin} sent a message the bus refused; nothing was changed")
        }
        InputError::Failed(Failure::Retry(_)) | InputError::Invoke(_) => {
            format!("plugin {plugin} failed to handle the request")
        }
    };
    tracing::warn!(plugin = %plugin, input = %input, kind = error.kind(), "input failed: {}", Chain(&error));
    ApiError::new(status, message)
}
