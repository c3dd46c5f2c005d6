//! What the sandbox costs: the same work natively and as a plugin, in the same run, as a ratio.
//!
//! Run with: `make bench` (a release build of the host; build the plugins first).
//!
//! 1. Message handling: the payment plugin decides one 300-byte order on a fresh instance
//!    (instantiate from the pool + call + collect staged effects), against the same parse,
//!    decision and result serialization in native Rust.
//! 2. HTTP: `GET /api/product/{id}` through the host's router to the catalog plugin, against a
//!    native axum handler answering the same JSON; both in process, without TCP.
//!
//! Both also with the plugin reusing its instances (`instance = "reuse"`) instead of a fresh
//! one per input.
//! 3. Languages: the payment plugin in Rust, JavaScript, Python, Go and C: component size,
//!    compile time cold and from the compiled-code cache, and one order on a fresh instance.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventhost::app::Host;
use eventhost::config::Config;
use eventhost::runtime::{
    Delivery, LoadedPlugin, Message, PluginInfo, Runtime, RuntimeSettings, version_of,
};
use eventhost::state::EmbeddedStore;
use tower::ServiceExt as _;

const ORDER: &str = r#"{"orderId":"bench-000001","total":"158.95","name":"Ada Lovelace","billingAddress":"12 Analytical Engine Row, London","creditCard":{"number":"4123987754646678","expiration":"04/29","nameOnCard":"Ada K Lovelace"},"note":"leave at the door, please"}"#;

/// Runs `f` in rounds and returns the best round's time per iteration (the machine is noisy;
/// the best round is the least disturbed one).
fn per_iteration(rounds: usize, iterations: usize, mut f: impl FnMut()) -> Duration {
    (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                f();
            }
            start.elapsed() / iterations as u32
        })
        .min()
        .unwrap_or_default()
}

/// The payment decision, natively: what the plugin does with an order.
fn native_payment(order: &[u8]) -> Vec<u8> {
    let order: serde_json::Value = serde_json::from_slice(order).expect("order");
    let number = order["creditCard"]["number"].as_str().unwrap_or_default();
    let masked = format!(
        "{}{}",
        "*".repeat(number.len().saturating_sub(4)),
        &number[number.len().saturating_sub(4)..]
    );
    let (status, remarks) = if number.starts_with('4') {
        (
            "COMPLETED",
            format!(
                "Payment of {} succeeded for {} CC details: {masked}",
                order["total"].as_str().unwrap_or_default(),
                order["name"].as_str().unwrap_or_default()
            ),
        )
    } else {
        ("FAILED", format!("Invalid Credit Card: {masked}"))
    };
    serde_json::json!({ "orderId": order["orderId"], "paymentId": "12345", "remarks": remarks, "status": status, "rules": "v1" })
        .to_string()
        .into_bytes()
}

fn plugin(name: &str) -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../plugins/dist/{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run make plugins",
        path.display()
    );
    path
}

/// A runtime whose compiled code is cached in `cache_dir` (`None`: the user's cache).
fn runtime_with(dir: &std::path::Path, cache_dir: Option<std::path::PathBuf>) -> Runtime {
    let store = Arc::new(EmbeddedStore::open(&dir.join("state.redb")).expect("store"));
    let settings = RuntimeSettings {
        max_memory_bytes: 64 << 20,
        max_instances: 16,
        cache_dir,
        max_message_bytes: None,
        guest_threads: None,
    };
    Runtime::new(settings, store).expect("runtime")
}

/// Reads and loads the component `info` names.
fn load(runtime: &Runtime, info: &PluginInfo) -> anyhow::Result<LoadedPlugin> {
    let bytes = std::fs::read(&info.source)?;
    runtime.load(info.clone(), &bytes)
}

fn payment_info(name: &str) -> PluginInfo {
    PluginInfo {
        name: name.into(),
        version: version_of(&std::fs::read(plugin(name)).expect("component")),
        source: plugin(name),
        publish: ["payments".to_string()].into(),
        config: Default::default(),
        memory_bytes: 32 << 20,
        timeout: Duration::from_secs(5),
        budget: Default::default(),
        concurrency: 16,
        cloudevents: None,
        reuse: None,
    }
}

fn order_delivery() -> Delivery {
    Delivery {
        message: Message {
            topic: "orders".into(),
            key: Some(b"bench-000001".to_vec()),
            value: ORDER.as_bytes().to_vec(),
            headers: vec![],
        },
        partition: 0,
        offset: 0,
        timestamp_ms: None,
        attempt: 1,
    }
}

/// The best time per order on a fresh instance of `payment`, over 5 rounds of `iterations`.
fn per_order(
    tokio: &tokio::runtime::Runtime,
    runtime: &Runtime,
    payment: &eventhost::runtime::LoadedPlugin,
    iterations: usize,
) -> Duration {
    let delivery = order_delivery();
    let label: Arc<str> = "orders/0@0".into();
    per_iteration(5, iterations, || {
        let invocation = tokio.block_on(runtime.handle_message(payment, &delivery, label.clone()));
        assert!(matches!(invocation.outcome, Ok(Ok(()))) && invocation.effects.outbox.len() == 1);
        black_box(invocation.effects);
    })
}

fn message_handling(tokio: &tokio::runtime::Runtime) {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = runtime_with(dir.path(), None);
    let info = payment_info("payment");
    let payment = load(&runtime, &info).expect("payment loads");
    let wasm = per_order(tokio, &runtime, &payment, 2000);
    let native = per_iteration(5, 2000, || {
        black_box(native_payment(black_box(ORDER.as_bytes())));
    });
    report("payment decision per order", native, wasm);
    let reusing = PluginInfo {
        reuse: Some(1000),
        ..info
    };
    let payment = load(&runtime, &reusing).expect("payment loads");
    let reused = per_order(tokio, &runtime, &payment, 2000);
    report("  the same, instance reuse", native, reused);
}

fn http_requests(runtime: &tokio::runtime::Runtime) {
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        // The catalog twice: a fresh instance per request, and reusing instances.
        let catalog = |name: &str, instance: &str| {
            format!(
                "[plugin.{name}]\npath = \"{}\"\ninstance = \"{instance}\"\n[[route]]\nmethod = \"GET\"\npath = \"/{name}/api/product/{{itemId}}\"\nplugin = \"{name}\"\n",
                plugin("catalog").display()
            )
        };
        let file = dir.path().join("eventhost.toml");
        let text = format!(
            "[state]\npath = \"state.redb\"\n[runtime]\nplugins_dir = \"none\"\n{}{}",
            catalog("fresh", "fresh"),
            catalog("reused", "reuse")
        );
        std::fs::write(&file, text).expect("config");
        let host = Host::build(Config::load(&file).expect("config")).await.expect("host");
        let router = host.router();
        let product = serde_json::json!({"itemId":"329299","name":"Quarkus T-shirt","desc":"Unisex crew-neck tee in combed cotton with the Quarkus logo.","price":10.0,"quantity":35});
        let native = axum::Router::new().route("/{name}/api/product/{id}", axum::routing::get(move || { let p = product.clone(); async move { axum::Json(p) } }));
        let request = |name: &str| axum::http::Request::get(format!("/{name}/api/product/329299")).body(axum::body::Body::empty()).expect("request");
        let mut best = [Duration::MAX; 3];
        for _ in 0..5 {
            for (side, (service, name)) in [(&native, "native"), (&router, "fresh"), (&router, "reused")].into_iter().enumerate() {
                let start = Instant::now();
                for _ in 0..1000 {
                    let response = service.clone().oneshot(request(name)).await.expect("answer");
                    assert_eq!(response.status(), 200);
                    black_box(axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body"));
                }
                best[side] = best[side].min(start.elapsed() / 1000);
            }
        }
        report("GET /api/product/{id} per request", best[0], best[1]);
        report("  the same, instance reuse", best[0], best[2]);
    });
}

/// The payment plugin in each language, measured the same way, as a table.
fn languages(tokio: &tokio::runtime::Runtime) {
    println!(
        "\n| payment plugin | .wasm | compile, cold | load from the cache | fresh instance + 1 order | vs Rust |"
    );
    println!("|---|---|---|---|---|---|");
    let mut rust_order = None;
    for (name, language) in [
        ("payment", "Rust"),
        ("payment-js", "JavaScript"),
        ("payment-py", "Python"),
        ("payment-go", "Go"),
        ("payment-c", "C"),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = dir.path().join("compiled");
        let info = payment_info(name);
        let size = std::fs::metadata(&info.source).expect("component").len();
        let timed_load = || {
            let runtime = runtime_with(dir.path(), Some(cache.clone()));
            let start = Instant::now();
            let loaded = load(&runtime, &info).expect("loads");
            (start.elapsed(), runtime, loaded)
        };
        let (cold, _, _) = timed_load();
        let (cached, runtime, payment) = timed_load();
        let order = per_order(tokio, &runtime, &payment, 200);
        let ratio = order.as_secs_f64() / rust_order.get_or_insert(order).as_secs_f64();
        println!(
            "| {language} | {:.2} MB | {:.2} s | {:.0} ms | {:.0} µs | {ratio:.1}× |",
            size as f64 / 1e6,
            cold.as_secs_f64(),
            cached.as_secs_f64() * 1e3,
            order.as_secs_f64() * 1e6
        );
    }
}

fn report(what: &str, native: Duration, wasm: Duration) {
    println!(
        "{what:<36} native {:>8.1} µs   plugin {:>8.1} µs   plugin/native {:>6.1}×",
        native.as_secs_f64() * 1e6,
        wasm.as_secs_f64() * 1e6,
        wasm.as_secs_f64() / native.as_secs_f64()
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    message_handling(&runtime);
    http_requests(&runtime);
    languages(&runtime);
}
