//! CORS (`[server.cors]`) on the coolstore with its real plugins, driven through the host's
//! router without a port: what a browser on another origin gets for preflights and for the
//! requests themselves, from an allowed origin and from one that is not.
//!
//! The same in a real browser, with pages served from two other origins: `tests/browser`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use eventhost::app::Host;
use serde_json::{Value, json};
use tower::ServiceExt as _;

const SHOP_UI: &str = "http://shop-ui.test:4200";
const ELSEWHERE: &str = "http://elsewhere.test:4200";
const LISTED: &str = "origins = [\"http://shop-ui.test:4200\"]\n\
                      methods = [\"GET\", \"POST\", \"DELETE\"]\n\
                      headers = [\"content-type\"]\n\
                      max_age_secs = 600\n";

/// The coolstore of `examples/coolstore/eventhost.toml`, its web page as static files, with
/// `cors` as the body of `[server.cors]` (none when `None`).
async fn shop(cors: Option<&str>) -> (Host, Kept) {
    let process = crate::common::share_process().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let wiring =
        crate::common::shop_wiring(include_str!("../../../examples/coolstore/eventhost.toml"));
    let wiring = toml::to_string(&wiring).expect("wiring serializes");
    let cors = cors.map_or(String::new(), |body| format!("[server.cors]\n{body}"));
    let server = format!("{}{cors}", crate::common::coolstore_static_dir());
    let config = crate::common::test_config_with(dir.path(), &server, "", &wiring);
    let host = Host::build(config).await.expect("host builds");
    (host, (dir, process))
}

/// What a test keeps while it uses the shop: its folder and its share of the test process.
type Kept = (tempfile::TempDir, tokio::sync::RwLockReadGuard<'static, ()>);

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    /// The `access-control-*` headers, by name.
    fn cors(&self) -> BTreeMap<String, String> {
        self.headers
            .iter()
            .filter(|(name, _)| name.as_str().starts_with("access-control-"))
            .map(|(name, value)| {
                let value = value.to_str().expect("ASCII header").to_owned();
                (name.as_str().to_owned(), value)
            })
            .collect()
    }

    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "answer {} is not JSON: {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

async fn send(host: &Host, request: Request<Body>) -> Answer {
    let response = host
        .router()
        .oneshot(request)
        .await
        .expect("the router answers");
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .expect("body read");
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.to_vec(),
    }
}

/// What a browser sends before a cross-origin `method` with `headers` to `path`.
fn preflight(path: &str, origin: &str, method: &str, headers: &str) -> Request<Body> {
    Request::options(path)
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, method)
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, headers)
        .body(Body::empty())
        .expect("request")
}

fn from(origin: Option<&str>, method: &str, path: &str, body: &str) -> Request<Body> {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(origin) = origin {
        request = request.header(header::ORIGIN, origin);
    }
    request
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .expect("request")
}

/// Inputs every plugin has handled or failed so far.
fn plugin_inputs(host: &Host) -> u64 {
    let registry = host.dispatcher().registry();
    ["catalog", "cart", "payment", "order"]
        .iter()
        .map(|name| {
            let stats = registry.stats(name).expect("plugin is loaded");
            stats.handled.load(Ordering::SeqCst) + stats.failed.load(Ordering::SeqCst)
        })
        .sum()
}

fn vary(answer: &Answer) -> Vec<String> {
    answer
        .headers
        .get_all(header::VARY)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or_default().split(','))
        .map(|v| v.trim().to_ascii_lowercase())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preflight_for_a_route_is_answered_by_the_host_without_running_a_plugin() {
    let (host, _dir) = shop(Some(LISTED)).await;
    let before = plugin_inputs(&host);
    let answer = send(
        &host,
        preflight("/api/cart/checkout/c1", SHOP_UI, "POST", "content-type"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert!(answer.body.is_empty());
    assert_eq!(
        answer.cors(),
        BTreeMap::from([
            ("access-control-allow-origin".into(), SHOP_UI.into()),
            (
                "access-control-allow-methods".into(),
                "GET, POST, DELETE".into()
            ),
            ("access-control-allow-headers".into(), "content-type".into()),
            ("access-control-max-age".into(), "600".into()),
        ])
    );
    let vary = vary(&answer);
    for name in [
        "origin",
        "access-control-request-method",
        "access-control-request-headers",
    ] {
        assert!(vary.iter().any(|v| v == name), "Vary {vary:?} lacks {name}");
    }
    assert_eq!(plugin_inputs(&host), before, "no plugin ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preflight_from_an_origin_not_allowed_gets_no_cors_headers_and_no_error() {
    let (host, _dir) = shop(Some(LISTED)).await;
    let before = plugin_inputs(&host);
    for origin in [ELSEWHERE, "null", "http://shop-ui.test:4201"] {
        let answer = send(
            &host,
            preflight("/api/cart/checkout/c1", origin, "POST", "content-type"),
        )
        .await;
        assert_eq!(answer.status, StatusCode::NO_CONTENT, "{origin}");
        assert_eq!(answer.cors(), BTreeMap::new(), "{origin}");
    }
    assert_eq!(plugin_inputs(&host), before, "no plugin ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preflight_for_a_path_or_method_without_a_route_gets_the_routes_answer() {
    let (host, _dir) = shop(Some(LISTED)).await;
    let before = plugin_inputs(&host);

    let unknown = send(&host, preflight("/api/nothing", SHOP_UI, "GET", "x-any")).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(
        unknown.json(),
        json!({ "message": "no route for /api/nothing", "status": 404 })
    );
    assert_eq!(
        unknown.cors(),
        BTreeMap::from([("access-control-allow-origin".into(), SHOP_UI.into())]),
        "the error is readable by the page, nothing is allowed"
    );

    let wrong = send(&host, preflight("/api/products", SHOP_UI, "PUT", "")).await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong.header(header::ALLOW), Some("GET"));
    assert_eq!(
        wrong.json(),
        json!({ "message": "/api/products allows GET", "status": 405 })
    );
    assert!(!wrong.cors().contains_key("access-control-allow-methods"));
    assert_eq!(plugin_inputs(&host), before, "no plugin ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_to_an_allowed_origin_carries_allow_origin() {
    let (host, _dir) = shop(Some(LISTED)).await;
    let allowed = BTreeMap::from([(
        "access-control-allow-origin".to_string(),
        SHOP_UI.to_string(),
    )]);

    let products = send(&host, from(Some(SHOP_UI), "GET", "/api/products", "")).await;
    assert_eq!(products.status, StatusCode::OK);
    assert_eq!(products.json().as_array().map(Vec::len), Some(8));
    assert_eq!(products.cors(), allowed);
    assert!(vary(&products).contains(&"origin".to_string()));

    let added = send(
        &host,
        from(Some(SHOP_UI), "POST", "/api/cart/c1/329299/1", ""),
    )
    .await;
    assert_eq!(added.status, StatusCode::OK);
    assert_eq!(added.cors(), allowed);

    // Errors of the host and of plugins, and static files.
    let others = [
        ("GET", "/api/nothing", "", StatusCode::NOT_FOUND),
        (
            "POST",
            "/api/cart/checkout/c1",
            "{",
            StatusCode::BAD_REQUEST,
        ),
        ("GET", "/", "", StatusCode::OK),
        ("GET", "/app.js", "", StatusCode::OK),
    ];
    for (method, path, body, status) in others {
        let answer = send(&host, from(Some(SHOP_UI), method, path, body)).await;
        assert_eq!(answer.status, status, "{method} {path}");
        assert_eq!(answer.cors(), allowed, "{method} {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_from_an_origin_not_allowed_are_served_without_cors_headers() {
    let (host, _dir) = shop(Some(LISTED)).await;
    let added = send(
        &host,
        from(Some(ELSEWHERE), "POST", "/api/cart/c2/329299/2", ""),
    )
    .await;
    assert_eq!(added.status, StatusCode::OK, "not an error in the host");
    assert_eq!(added.cors(), BTreeMap::new());
    let cart = send(&host, from(None, "GET", "/api/cart/c2", "")).await;
    assert_eq!(cart.json()["shoppingCartItemList"][0]["quantity"], 2);
    assert_eq!(cart.cors(), BTreeMap::new(), "no Origin, no CORS headers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_allowed_only_when_configured() {
    let (host, _dir) = shop(Some(&format!("{LISTED}credentials = true\n"))).await;
    let preflight = send(
        &host,
        preflight("/api/cart/c1", SHOP_UI, "GET", "content-type"),
    )
    .await;
    assert_eq!(
        preflight.cors().get("access-control-allow-credentials"),
        Some(&"true".to_string())
    );
    let cart = send(&host, from(Some(SHOP_UI), "GET", "/api/cart/c1", "")).await;
    assert_eq!(
        cart.header(header::ACCESS_CONTROL_ALLOW_ORIGIN),
        Some(SHOP_UI)
    );
    assert_eq!(
        cart.header(header::ACCESS_CONTROL_ALLOW_CREDENTIALS),
        Some("true")
    );

    let (host, _dir) = shop(Some(LISTED)).await;
    let cart = send(&host, from(Some(SHOP_UI), "GET", "/api/cart/c1", "")).await;
    assert_eq!(cart.header(header::ACCESS_CONTROL_ALLOW_CREDENTIALS), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coolstore_example_allows_any_origin_like_the_workshop() {
    let example: toml::Table = include_str!("../../../examples/coolstore/eventhost.toml")
        .parse()
        .expect("TOML");
    let cors = toml::to_string(&example["server"]["cors"]).expect("[server.cors]");
    let (host, _dir) = shop(Some(&cors)).await;
    let before = plugin_inputs(&host);
    for origin in [SHOP_UI, ELSEWHERE] {
        let checkout = send(
            &host,
            preflight("/api/cart/checkout/c1", origin, "POST", "content-type"),
        )
        .await;
        assert_eq!(checkout.status, StatusCode::NO_CONTENT);
        let cors = checkout.cors();
        assert_eq!(cors["access-control-allow-origin"], "*");
        assert_eq!(cors["access-control-allow-headers"], "content-type");
        assert!(cors["access-control-allow-methods"].contains("DELETE"));

        let products = send(&host, from(Some(origin), "GET", "/api/products", "")).await;
        assert_eq!(
            products.header(header::ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("*")
        );
    }
    assert_eq!(plugin_inputs(&host), before + 2, "only the two GETs ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_server_cors_the_host_sends_no_cors_headers() {
    let (host, _dir) = shop(None).await;
    let before = plugin_inputs(&host);
    let answer = send(
        &host,
        preflight("/api/cart/checkout/c1", SHOP_UI, "POST", "content-type"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(answer.cors(), BTreeMap::new());
    let products = send(&host, from(Some(SHOP_UI), "GET", "/api/products", "")).await;
    assert_eq!(products.status, StatusCode::OK);
    assert_eq!(products.cors(), BTreeMap::new());
    assert_eq!(plugin_inputs(&host), before + 1);
}
