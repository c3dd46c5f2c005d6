//! Cross-origin requests from browsers, by `[server.cors]` ([`CorsConfig`]).
//!
//! Off unless configured. When on, the host owns the `Access-Control-Allow-*` headers:
//! - A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered
//!   here and never reaches a plugin: 204 when a route serves the requested method at that
//!   path, carrying the allow headers if the origin is allowed; otherwise the 404 or 405 the
//!   request itself would get.
//! - Every other response to an allowed origin carries `Access-Control-Allow-Origin`, errors
//!   and static files included.
//! - An origin that is not allowed gets no CORS headers, so the browser keeps the answer from
//!   the page. Its requests are served as usual: that is the browser's check, not an error.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

use super::{ApiError, HttpState, Match};
use crate::config::{Allowed, CorsConfig};

/// A [`CorsConfig`] with its header values ready.
#[derive(Debug)]
pub(super) struct Policy {
    origins: Allowed,
    credentials: bool,
    methods: Option<HeaderValue>,
    /// `None` with [`Allowed::Any`]: the headers a preflight asks for are echoed.
    headers: Option<HeaderValue>,
    any_header: bool,
    max_age: Option<HeaderValue>,
}

impl Policy {
    fn new(config: &CorsConfig) -> Self {
        let joined = |items: &[String]| HeaderValue::try_from(items.join(", ")).ok();
        let (headers, any_header) = match &config.headers {
            Allowed::Any => (None, true),
            Allowed::Only(list) if list.is_empty() => (None, false),
            Allowed::Only(list) => (joined(list), false),
        };
        Policy {
            origins: config.origins.clone(),
            credentials: config.credentials,
            methods: joined(&config.methods),
            headers,
            any_header,
            max_age: config.max_age.map(|age| HeaderValue::from(age.as_secs())),
        }
    }

    /// The value of `Access-Control-Allow-Origin` for a request from `origin`, if allowed.
    fn allow_origin(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        let origin = origin?;
        match &self.origins {
            Allowed::Any => Some(HeaderValue::from_static("*")),
            Allowed::Only(list) => {
                let text = origin.to_str().ok()?.to_ascii_lowercase();
                list.contains(&text).then(|| origin.clone())
            }
        }
    }

    /// Sets the headers every response gets: the allowed origin (or none), and `Vary: Origin`
    /// when the answer depends on it. Whatever a plugin set in their place is dropped.
    fn decorate(&self, headers: &mut HeaderMap, allow_origin: Option<HeaderValue>) {
        headers.remove(header::ACCESS_CONTROL_ALLOW_ORIGIN);
        headers.remove(header::ACCESS_CONTROL_ALLOW_CREDENTIALS);
        if let Allowed::Only(_) = self.origins {
            headers.append(header::VARY, HeaderValue::from_static("origin"));
        }
        if let Some(origin) = allow_origin {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            if self.credentials {
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                );
            }
        }
    }

    /// The allow headers of a successful preflight.
    fn allow_preflight(&self, headers: &mut HeaderMap, request: &HeaderMap) {
        let requested = request.get(header::ACCESS_CONTROL_REQUEST_HEADERS);
        let allowed = match (&self.headers, requested) {
            (Some(list), _) => Some(list.clone()),
            (None, Some(requested)) if self.any_header => Some(requested.clone()),
            (None, _) => None,
        };
        let values: [(HeaderName, Option<HeaderValue>); 3] = [
            (header::ACCESS_CONTROL_ALLOW_METHODS, self.methods.clone()),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, allowed),
            (header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone()),
        ];
        for (name, value) in values {
            if let Some(value) = value {
                headers.insert(name, value);
            }
        }
    }
}

impl HttpState {
    /// Answers cross-origin requests by `cors` (see the [`cors`](self) module); `None` sends
    /// no CORS headers at all.
    pub fn with_cors(mut self, cors: Option<&CorsConfig>) -> Self {
        self.cors = cors.map(Policy::new);
        self
    }
}

/// Puts `router` behind the CORS policy of `state`, if it has one.
pub(super) fn layer(router: Router, state: Arc<HttpState>) -> Router {
    if state.cors.is_none() {
        return router;
    }
    router.layer(middleware::from_fn_with_state(state, apply))
}

async fn apply(State(state): State<Arc<HttpState>>, request: Request, next: Next) -> Response {
    let Some(policy) = &state.cors else {
        return next.run(request).await;
    };
    let allow_origin = policy.allow_origin(request.headers().get(header::ORIGIN));
    if let Some(method) = preflight_method(&request) {
        return preflight(&state, policy, allow_origin, &method, &request);
    }
    let mut response = next.run(request).await;
    policy.decorate(response.headers_mut(), allow_origin);
    response
}

/// The method a CORS preflight asks about, if `request` is one.
fn preflight_method(request: &Request) -> Option<String> {
    let headers = request.headers();
    if request.method() != Method::OPTIONS || !headers.contains_key(header::ORIGIN) {
        return None;
    }
    let method = headers.get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
    Some(method.to_str().ok()?.to_owned())
}

fn preflight(
    state: &HttpState,
    policy: &Policy,
    allow_origin: Option<HeaderValue>,
    method: &str,
    request: &Request,
) -> Response {
    let path = request.uri().path();
    let routes = state.routes();
    let mut response = match routes.find(method, path) {
        Match::Found(..) => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            if allow_origin.is_some() {
                policy.allow_preflight(response.headers_mut(), request.headers());
            }
            response
        }
        Match::MethodNotAllowed(allow) => ApiError::method_not_allowed(path, allow).into_response(),
        Match::NotFound => ApiError::not_found(path).into_response(),
    };
    response.headers_mut().append(
        header::VARY,
        HeaderValue::from_static("access-control-request-method, access-control-request-headers"),
    );
    policy.decorate(response.headers_mut(), allow_origin);
    response
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn policy(origins: Allowed, headers: Allowed, credentials: bool) -> Policy {
        Policy::new(&CorsConfig {
            origins,
            methods: vec!["GET".into(), "POST".into()],
            headers,
            max_age: Some(Duration::from_secs(600)),
            credentials,
        })
    }

    fn listed() -> Allowed {
        Allowed::Only(vec!["http://localhost:4200".into()])
    }

    fn value(text: &'static str) -> HeaderValue {
        HeaderValue::from_static(text)
    }

    fn decorated(policy: &Policy, origin: Option<&'static str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value("http://evil"));
        let allow = policy.allow_origin(origin.map(value).as_ref());
        policy.decorate(&mut headers, allow);
        headers
    }

    #[test]
    fn any_origin_is_answered_with_a_star() {
        let policy = policy(Allowed::Any, Allowed::Any, false);
        let headers = decorated(&policy, Some("https://anywhere.example"));
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(!headers.contains_key(header::VARY));
        assert!(!headers.contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));
    }

    #[test]
    fn listed_origins_are_echoed_whatever_their_case_and_vary() {
        let policy = policy(listed(), Allowed::Any, true);
        let headers = decorated(&policy, Some("http://LOCALHOST:4200"));
        assert_eq!(
            headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "http://LOCALHOST:4200"
        );
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(headers[header::VARY], "origin");
    }

    #[test]
    fn other_origins_and_requests_without_origin_get_no_cors_headers() {
        let policy = policy(listed(), Allowed::Any, true);
        for origin in [Some("http://localhost:4201"), Some("null"), None] {
            let headers = decorated(&policy, origin);
            let cors: Vec<_> = headers
                .keys()
                .filter(|name| name.as_str().starts_with("access-control-"))
                .collect();
            assert!(cors.is_empty(), "{origin:?}: {cors:?}");
            assert_eq!(headers[header::VARY], "origin");
        }
    }

    #[test]
    fn preflights_echo_requested_headers_or_list_the_configured_ones() {
        let mut request = HeaderMap::new();
        request.insert(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            value("content-type, x-trace"),
        );
        let mut any = HeaderMap::new();
        policy(Allowed::Any, Allowed::Any, false).allow_preflight(&mut any, &request);
        assert_eq!(any[header::ACCESS_CONTROL_ALLOW_METHODS], "GET, POST");
        assert_eq!(
            any[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "content-type, x-trace"
        );
        assert_eq!(any[header::ACCESS_CONTROL_MAX_AGE], "600");

        let only = Allowed::Only(vec!["content-type".into()]);
        let mut listed_headers = HeaderMap::new();
        policy(Allowed::Any, only, false).allow_preflight(&mut listed_headers, &request);
        assert_eq!(
            listed_headers[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "content-type"
        );

        let mut none = HeaderMap::new();
        policy(Allowed::Any, Allowed::Only(vec![]), false).allow_preflight(&mut none, &request);
        assert!(!none.contains_key(header::ACCESS_CONTROL_ALLOW_HEADERS));
    }
}
