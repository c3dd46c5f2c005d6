//! Plugins in other languages: the payment rules written in JavaScript (`plugins/js/payment`,
//! built with componentize-js into `payment-js.wasm`) run beside the Rust payment plugin on the
//! embedded bus. Both consume the same `orders`, each in its own consumer group and publishing
//! to its own results topic, and every order must be decided the same way by both: the same
//! status, remarks and payment id, and the same dead letters for input that is not an order.
//! Generated orders then go through the payment plugin of all five languages (Rust,
//! JavaScript, Python, Go and C), which must publish the very same bytes. The hand-written
//! cases of every language are in plugins/cases/payment.toml (tests/it/contract.rs runs them).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{TestHost, collect, eventually, header, plugin_wasm, value_json};
use eventhost::bus::Record;
use eventhost::runtime::{
    Delivery, Failure, Message, OutMessage, PluginInfo, Runtime, RuntimeSettings, version_of,
};
use eventhost::state::EmbeddedStore;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
const RUST_RESULTS: &str = "payments.rust";
const JS_RESULTS: &str = "payments.js";
/// Where both subscriptions dead-letter (the default for `orders`).
const DEAD_LETTERS: &str = "orders.dlq";
const VALID_CARD: &str = "4123987754646678";

type Seen = Arc<Mutex<Vec<Record>>>;

/// The two payment plugins on `orders`, each with its own group and results topic, both with
/// the same `max_total`; `POST /api/payment` goes to the JavaScript one, `POST /rust/payment`
/// to the Rust one.
fn config() -> String {
    let plugin = |name: &str, wasm: &str, results: &str| {
        format!(
            r#"
[plugin.{name}]
path = "{path}"
publish = ["{results}"]
config = {{ payments_topic = "{results}", max_total = "100.00" }}
limits = {{ memory_mib = 64, timeout_ms = 10000 }}

[[subscription]]
topic = "orders"
plugin = "{name}"
group = "{name}-service"
retry = {{ attempts = 2, backoff_ms = 10 }}
"#,
            path = plugin_wasm(wasm).display(),
        )
    };
    format!(
        r#"
[[topic]]
name = "orders"
partitions = 3

[[topic]]
name = "{RUST_RESULTS}"

[[topic]]
name = "{JS_RESULTS}"
{rust}{js}
[[route]]
method = "POST"
path = "/api/payment"
plugin = "payment-js"

[[route]]
method = "POST"
path = "/rust/payment"
plugin = "payment"
"#,
        rust = plugin("payment", "payment", RUST_RESULTS),
        js = plugin("payment-js", "payment-js", JS_RESULTS),
    )
}

fn order(order_id: &str, card: Value, total: Value) -> String {
    json!({
        "orderId": order_id,
        "name": "Jane Doe",
        "billingAddress": "123 Anystreet, Pueblo, CO 32213",
        "total": total,
        "creditCard": card,
    })
    .to_string()
}

fn card(number: &str) -> Value {
    json!({ "number": number, "expiration": "04/29", "nameOnCard": "Jane G Doe" })
}

/// Orders with an id, the status both plugins must give them, and the remarks they must start
/// with.
fn orders() -> Vec<(&'static str, String, &'static str, &'static str)> {
    vec![
        (
            "valid-card",
            order("valid-card", card(VALID_CARD), json!("20.00")),
            "COMPLETED",
            "Payment of 20.00 succeeded for Jane Doe CC details: {\"number\":\"************6678\"",
        ),
        (
            "invalid-card",
            order("invalid-card", card("5555555555554444"), json!("20.00")),
            "FAILED",
            "Invalid Credit Card: ************4444",
        ),
        (
            "card-not-an-object",
            order("card-not-an-object", json!(VALID_CARD), json!("20.00")),
            "FAILED",
            "Credit card details are not an object",
        ),
        (
            "card-number-not-text",
            order(
                "card-number-not-text",
                json!({ "number": 4_123_987_754_646_678_u64 }),
                json!("20.00"),
            ),
            "FAILED",
            "Credit card has no number",
        ),
        (
            "card-missing",
            order("card-missing", Value::Null, json!("20.00")),
            "FAILED",
            "Missing credit card details",
        ),
        (
            "big-total",
            order("big-total", card(VALID_CARD), json!("158.95")),
            "FAILED",
            "Rule max_total (100.00) exceeded: total 158.95",
        ),
        (
            "total-as-number",
            order("total-as-number", card(VALID_CARD), json!(21.4)),
            "COMPLETED",
            "Payment of 21.40 succeeded for Jane Doe",
        ),
        (
            "total-not-an-amount",
            order("total-not-an-amount", card(VALID_CARD), json!("lots")),
            "FAILED",
            "Invalid total: \"lots\"",
        ),
        // The card details are printed into the remarks as serde_json prints them: keys
        // sorted, `4.0` kept a float, strings escaped.
        (
            "odd-card-details",
            r#"{"orderId":"odd-card-details","total":"99.99","name":"Zoë \"Z\" Ünal",
                "creditCard":{"number":"4111111111111111","nameOnCard":{"z":1,"a":[4.0,1e21,-0]},
                "expiration":"04/29\n"}}"#
                .to_string(),
            "COMPLETED",
            "Payment of 99.99 succeeded for Zoë \"Z\" Ünal CC details: {\"number\":\"************1111\",\"expiration\":\"04/29\\n\",\"nameOnCard\":{\"a\":[4.0,1e+21,-0.0],\"z\":1}}",
        ),
    ]
}

/// Input that is not an order: dead-lettered by both, with the reason each gives.
fn not_orders() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    vec![
        (
            "not-json",
            b"{\"orderId\": \"x\", oops".to_vec(),
            "invalid input: order is not JSON",
        ),
        (
            "not-utf8",
            vec![0xff, 0x00, 0xfe],
            "invalid input: order is not JSON",
        ),
        (
            "no-order-id",
            br#"{"name":"Jane Doe","total":"10.00","creditCard":{"number":"4123987754646678"}}"#
                .to_vec(),
            "invalid input: order has no orderId string",
        ),
    ]
}

fn keyed(seen: &Seen, key: &str) -> Vec<Record> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|r| r.key.as_deref() == Some(key.as_bytes()))
        .cloned()
        .collect()
}

async fn publish(host: &TestHost, key: &str, value: Vec<u8>) {
    let message = OutMessage {
        topic: "orders".into(),
        key: Some(key.as_bytes().to_vec()),
        value,
        headers: vec![("trace".into(), b"t-1".to_vec())],
    };
    host.bus().publish(vec![message]).await.expect("published");
}

/// The one result of `key` on `seen`, once it is there.
async fn result_of(seen: &Seen, topic: &str, key: &str) -> Record {
    let records = eventually(WAIT, &format!("the result of {key} on {topic}"), || async {
        let records = keyed(seen, key);
        (!records.is_empty()).then_some(records)
    })
    .await;
    assert_eq!(records.len(), 1, "exactly one result of {key} on {topic}");
    records.into_iter().next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_and_rust_payment_plugins_decide_every_order_the_same() {
    crate::common::init_logs();
    let started = Instant::now();
    let host = TestHost::start(&config()).await;
    println!(
        "host with both payment plugins started in {:.2?} (Cranelift compiles the JavaScript one)",
        started.elapsed()
    );
    let (rust, _stop_rust) = collect(&host.bus(), RUST_RESULTS, "observer");
    let (js, _stop_js) = collect(&host.bus(), JS_RESULTS, "observer");
    let (dead, _stop_dead) = collect(&host.bus(), DEAD_LETTERS, "observer");
    let rust_version = host.version("payment");
    let js_version = host.version("payment-js");
    assert_ne!(rust_version, js_version);

    let orders = orders();
    for (key, value, ..) in &orders {
        publish(&host, key, value.clone().into_bytes()).await;
    }
    for (key, value, _) in not_orders() {
        publish(&host, key, value).await;
    }

    for (key, _, status, remarks) in &orders {
        let from_rust = result_of(&rust, RUST_RESULTS, key).await;
        let from_js = result_of(&js, JS_RESULTS, key).await;
        let (rust_result, js_result) = (value_json(&from_rust), value_json(&from_js));
        assert_eq!(
            (js_result["status"].as_str(), rust_result["status"].as_str()),
            (Some(*status), Some(*status)),
            "status of {key}"
        );
        assert!(
            rust_result["remarks"]
                .as_str()
                .is_some_and(|r| r.starts_with(remarks)),
            "remarks of {key}: {rust_result}"
        );
        assert_eq!(
            js_result["remarks"], rust_result["remarks"],
            "the same remarks for {key}"
        );
        assert_eq!(js_result["orderId"], *key);
        assert_eq!(
            js_result["paymentId"], rust_result["paymentId"],
            "the same payment id for {key}"
        );
        assert_eq!(
            (js_result["rules"].as_str(), rust_result["rules"].as_str()),
            (Some("js-v1"), Some("v1"))
        );
        let keys = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
        assert_eq!(keys(&js_result), keys(&rust_result), "the same fields");
        let rust_text = String::from_utf8_lossy(&from_rust.value);
        let expected = rust_text
            .strip_suffix(r#""rules":"v1"}"#)
            .map(|head| format!(r#"{head}"rules":"js-v1"}}"#));
        assert_eq!(
            Some(String::from_utf8_lossy(&from_js.value).into_owned()),
            expected,
            "the same bytes but the rules"
        );
        assert!(!js_result.to_string().contains(VALID_CARD));
        for (record, plugin, version) in [
            (&from_js, "payment-js", &js_version),
            (&from_rust, "payment", &rust_version),
        ] {
            assert_eq!(header(record, "eventhost-plugin").as_deref(), Some(plugin));
            assert_eq!(
                header(record, "eventhost-plugin-version").as_deref(),
                Some(version.as_str())
            );
        }
    }

    for (key, value, reason) in not_orders() {
        let letters = eventually(
            WAIT,
            &format!("{key} to be dead-lettered twice"),
            || async {
                let letters = keyed(&dead, key);
                (letters.len() == 2).then_some(letters)
            },
        )
        .await;
        for (group, plugin, version) in [
            ("payment-service", "payment", &rust_version),
            ("payment-js-service", "payment-js", &js_version),
        ] {
            let letter = letters
                .iter()
                .find(|r| header(r, "eventhost-dlq-group").as_deref() == Some(group))
                .unwrap_or_else(|| panic!("{group} dead-letters {key}"));
            assert_eq!(letter.value, value, "original bytes of {key}");
            assert_eq!(
                header(letter, "eventhost-dlq-kind").as_deref(),
                Some("invalid"),
                "{group}: {key}"
            );
            assert_eq!(
                header(letter, "eventhost-dlq-attempts").as_deref(),
                Some("1"),
                "{group}: {key} is not retried"
            );
            let why = header(letter, "eventhost-dlq-reason").unwrap_or_default();
            assert!(why.starts_with(reason), "{group}: {key}: {why}");
            assert_eq!(header(letter, "eventhost-plugin").as_deref(), Some(plugin));
            assert_eq!(
                header(letter, "eventhost-plugin-version").as_deref(),
                Some(version.as_str())
            );
            assert_eq!(header(letter, "trace").as_deref(), Some("t-1"));
        }
        assert!(keyed(&rust, key).is_empty() && keyed(&js, key).is_empty());
    }

    // Latency on the bus, one order at a time: publish, then poll both results topics every
    // millisecond until each has the result.
    let mut latencies = [Vec::new(), Vec::new()];
    for i in 0..20 {
        let key = format!("single-{i:02}");
        let start = Instant::now();
        publish(
            &host,
            &key,
            order(&key, card(VALID_CARD), json!("20.00")).into_bytes(),
        )
        .await;
        let deadline = start + WAIT;
        let mut pending = [true, true];
        while pending.contains(&true) {
            for (n, seen) in [&js, &rust].into_iter().enumerate() {
                if pending[n] && !keyed(seen, &key).is_empty() {
                    pending[n] = false;
                    latencies[n].push(start.elapsed());
                }
            }
            assert!(Instant::now() < deadline, "no result for {key}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    // Throughput on the bus: a burst of orders over 3 partitions, until each has decided all.
    let burst: Vec<String> = (0..100).map(|i| format!("burst-{i:03}")).collect();
    let start = Instant::now();
    for key in &burst {
        publish(
            &host,
            key,
            order(key, card(VALID_CARD), json!("20.00")).into_bytes(),
        )
        .await;
    }
    let mut done = [None, None];
    while done.contains(&None) {
        for (n, seen) in [&js, &rust].into_iter().enumerate() {
            let decided = seen
                .lock()
                .unwrap()
                .iter()
                .filter(|r| r.key.as_deref().is_some_and(|k| k.starts_with(b"burst-")))
                .count();
            if decided == burst.len() && done[n].is_none() {
                done[n] = Some(start.elapsed());
            }
        }
        assert!(start.elapsed() < WAIT, "the burst is not decided: {done:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for (n, plugin) in ["payment-js", "payment"].into_iter().enumerate() {
        latencies[n].sort();
        let burst_time = done[n].unwrap_or_default();
        println!(
            "{plugin:<10}: one order, published to result seen: median {:.2?}, max {:.2?}; \
             a burst of {} in {burst_time:.2?} ({:.2?} per order; both plugins share 2 cores)",
            latencies[n][latencies[n].len() / 2],
            latencies[n][latencies[n].len() - 1],
            burst.len(),
            burst_time / burst.len() as u32
        );
    }
    for key in &burst {
        let (from_rust, from_js) = (keyed(&rust, key), keyed(&js, key));
        assert_eq!((from_rust.len(), from_js.len()), (1, 1), "{key}");
        assert_eq!(
            value_json(&from_js[0])["remarks"],
            value_json(&from_rust[0])["remarks"]
        );
    }
    host.stop().await;
}

/// Posts `body` to `path`: the status, the content type and the JSON answer.
async fn post(host: &TestHost, path: &str, body: String) -> (u16, String, Value) {
    let response = host.post(path, body).await;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value = response.json().await.expect("a JSON answer");
    (status, content_type, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_javascript_plugin_answers_post_api_payment_like_the_rust_one() {
    let host = TestHost::start(&config()).await;
    let (js, _stop) = collect(&host.bus(), JS_RESULTS, "observer");
    let body = order("http-1", card(VALID_CARD), json!("32.23"));
    let (status, content_type, answer) = post(&host, "/api/payment", body.clone()).await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "application/json"),
        "{answer}"
    );
    assert_eq!(answer["status"], "COMPLETED");
    assert_eq!(answer["rules"], "js-v1");
    assert_eq!(
        answer["remarks"],
        r#"Payment of 32.23 succeeded for Jane Doe CC details: {"number":"************6678","expiration":"04/29","nameOnCard":"Jane G Doe"}"#
    );
    let (_, _, rust_answer) = post(&host, "/rust/payment", body).await;
    for field in ["orderId", "paymentId", "remarks", "status"] {
        assert_eq!(answer[field], rust_answer[field], "{field}");
    }
    let published = result_of(&js, JS_RESULTS, "http-1").await;
    assert_eq!(
        value_json(&published),
        answer,
        "the answer is what was published"
    );

    for bad in ["not an order", r#"{"total":"1.00"}"#] {
        let (status, _, refusal) = post(&host, "/api/payment", bad.to_string()).await;
        let (rust_status, _, rust_refusal) = post(&host, "/rust/payment", bad.to_string()).await;
        assert_eq!(
            (status, rust_status),
            (400, 400),
            "{refusal} {rust_refusal}"
        );
        assert_eq!(refusal["status"], 400);
        let prefix = |v: &Value| {
            v["message"]
                .as_str()
                .and_then(|m| m.split(':').next())
                .map(str::to_owned)
        };
        assert_eq!(
            prefix(&refusal),
            prefix(&rust_refusal),
            "{refusal} {rust_refusal}"
        );
    }
    host.stop().await;
}

/// A small deterministic generator (xorshift), so a failing order can be reproduced.
struct Random(u64);

impl Random {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    /// A JSON value as text: strings, numbers written in unusual ways, and nesting.
    fn value(&mut self, depth: usize) -> String {
        const TEXTS: &[&str] = &[
            "",
            "4",
            "4123987754646678",
            "5123",
            "41",
            "é",
            "😀4123",
            " 4",
            "4\\u0000x",
            "\\\"",
            "\\\\",
            "20.00",
            "1.5",
            " 99 ",
            "100.001",
            "x\\ny",
            "\u{2028}",
            "\u{7f}",
            "\\ud83d\\ude00",
        ];
        const NUMBERS: &[&str] = &[
            "0",
            "-0",
            "1",
            "-1",
            "4.0",
            "20.5",
            "1e2",
            "1.5e300",
            "1e-7",
            "2e-5",
            "0.105",
            "99.995",
            "100",
            "100.01",
            "3.14159",
            "123456789012345678901",
            "12345678901234567.0",
            "18446744073709551615",
            "-9223372036854775809",
            "1E+2",
            "0.1e-400",
        ];
        const KEYS: &[&str] = &["a", "Z", "ä", "b", "number", "😀", "\u{ffff}"];
        match self.below(100) {
            _ if depth > 3 => format!("\"{}\"", self.pick(TEXTS)),
            0..30 => format!("\"{}\"", self.pick(TEXTS)),
            30..55 => self.pick(NUMBERS).to_string(),
            55..62 => self.pick(&["true", "false", "null"]).to_string(),
            62..80 => {
                let items: Vec<String> =
                    (0..self.below(3)).map(|_| self.value(depth + 1)).collect();
                format!("[{}]", items.join(","))
            }
            _ => {
                let members: Vec<String> = (0..self.below(3))
                    .map(|_| format!("\"{}\":{}", self.pick(KEYS), self.value(depth + 1)))
                    .collect();
                format!("{{{}}}", members.join(","))
            }
        }
    }

    /// An order, mostly well-formed, sometimes not.
    fn order(&mut self, n: usize) -> String {
        let mut fields = Vec::new();
        if self.chance(95) {
            let id = if self.chance(90) {
                format!("\"o{n}\"")
            } else {
                self.value(1)
            };
            fields.push(format!("\"orderId\":{id}"));
        }
        if self.chance(90) {
            fields.push(format!("\"total\":{}", self.value(1)));
        }
        if self.chance(80) {
            fields.push(format!("\"name\":{}", self.value(1)));
        }
        if self.chance(90) {
            let mut card = Vec::new();
            if self.chance(90) {
                let number = if self.chance(70) {
                    "\"4123987754646678\"".into()
                } else {
                    self.value(1)
                };
                card.push(format!("\"number\":{number}"));
            }
            for key in ["expiration", "nameOnCard"] {
                if self.chance(80) {
                    card.push(format!("\"{key}\":{}", self.value(1)));
                }
            }
            let card = if self.chance(90) {
                format!("{{{}}}", card.join(","))
            } else {
                self.value(1)
            };
            fields.push(format!("\"creditCard\":{card}"));
        }
        let mut text = format!("{{{}}}", fields.join(","));
        if self.chance(3) {
            let mut end = self.below(text.len() + 1);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        text
    }
}

/// The payment plugin in each language, and the label its results carry in `rules`.
const LANGUAGES: [(&str, &str); 5] = [
    ("payment", "v1"),
    ("payment-js", "js-v1"),
    ("payment-py", "py-v1"),
    ("payment-go", "go-v1"),
    ("payment-c", "c-v1"),
];

/// What a plugin did with an order: the result it published (with the `rules` label made
/// equal), or its failure, without the parser's own words after "order is not JSON" and with
/// the plugin's name made equal.
fn outcome(
    invocation: eventhost::runtime::Invocation<Result<(), Failure>>,
    (name, label): (&str, &str),
) -> String {
    match invocation.outcome {
        Ok(Ok(())) => {
            let own_label = format!(r#""rules":"{label}"}}"#);
            let sent: Vec<String> = invocation
                .effects
                .outbox
                .iter()
                .map(|m| String::from_utf8_lossy(&m.value).replace(&own_label, r#""rules":"v1"}"#))
                .collect();
            format!("ok {sent:?}")
        }
        Ok(Err(Failure::Invalid(why))) => {
            let why = why.split_once(": ").map_or(why.as_str(), |(head, _)| head);
            format!("invalid {why}")
        }
        // The host names the plugin when it refuses a topic.
        Ok(Err(Failure::Retry(why))) => {
            format!("retry {}", why.replace(&format!("{name} "), "payment "))
        }
        Err(e) => format!("no result: {e}"),
    }
}

/// Loads the payment plugin of every language into one runtime, reports what each costs
/// (component size, load time, time per order on a fresh instance; `cargo test --test it
/// polyglot -- --nocapture` shows it), then runs 1000 generated orders through each, under four
/// configurations, and requires the very same published bytes as the Rust plugin's (but the
/// `rules` label) or the same failure for each.
#[tokio::test(flavor = "current_thread")]
async fn every_language_gives_the_same_results_for_generated_orders() {
    let _process = crate::common::share_process().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("state.redb")).expect("store"));
    let settings = RuntimeSettings {
        max_memory_bytes: 64 << 20,
        max_instances: 16,
        cache_dir: None,
        max_message_bytes: None,
        guest_threads: None,
    };
    let runtime = Runtime::new(settings, store).expect("runtime");
    let delivery = |value: Vec<u8>| Delivery {
        message: Message {
            topic: "orders".into(),
            key: None,
            value,
            headers: vec![],
        },
        partition: 0,
        offset: 0,
        timestamp_ms: None,
        attempt: 1,
    };
    let label: Arc<str> = "orders/0@0".into();
    let one_order = delivery(order("o-1", card(VALID_CARD), json!("158.95")).into_bytes());
    let mut plugins = Vec::new();
    for language in LANGUAGES {
        let name = language.0;
        let start = Instant::now();
        let bytes = std::fs::read(plugin_wasm(name)).expect("component");
        let info = PluginInfo {
            name: name.into(),
            version: version_of(&bytes),
            source: plugin_wasm(name),
            publish: ["payments".to_string()].into(),
            config: Default::default(),
            memory_bytes: 64 << 20,
            timeout: Duration::from_secs(10),
            budget: Default::default(),
            concurrency: 16,
            cloudevents: None,
            reuse: None,
        };
        let size = bytes.len();
        let plugin = runtime.load(info.clone(), &bytes).expect("plugin loads");
        let load = start.elapsed();
        let decide = || runtime.handle_message(&plugin, &one_order, label.clone());
        let first = Instant::now();
        let outcome_of_first = outcome(decide().await, language);
        let first = first.elapsed();
        assert!(
            outcome_of_first.contains("COMPLETED"),
            "{name}: {outcome_of_first}"
        );
        let rounds = 200;
        let start = Instant::now();
        for _ in 0..rounds {
            assert!(matches!(decide().await.outcome, Ok(Ok(()))));
        }
        let per_order = start.elapsed() / rounds;
        println!(
            "{name:<11} {:>6.2} MB  load {load:>9.2?}  first order {first:>9.2?}  then {per_order:>9.2?} per order (fresh instance each)",
            size as f64 / 1e6
        );
        plugins.push((info, plugin));
    }

    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    let orders: Vec<String> = (0..1000).map(|n| random.order(n)).collect();
    let (mut decided, mut completed) = (0, 0);
    // No cap; two caps; and a results topic the plugin may not publish to (a `retry`).
    let configs = [
        vec![],
        vec![("max_total", "100")],
        vec![("max_total", " 20.5 ")],
        vec![("payments_topic", "elsewhere")],
    ];
    for config in &configs {
        let configured: Vec<_> = plugins
            .iter()
            .map(|(info, plugin)| {
                let mut info = info.clone();
                info.config = config
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                runtime.reconfigure(plugin, info).expect("reconfigured")
            })
            .collect();
        for text in &orders {
            let input = delivery(text.clone().into_bytes());
            let run = |k: usize| runtime.handle_message(&configured[k], &input, label.clone());
            let rust = outcome(run(0).await, LANGUAGES[0]);
            for (k, language) in LANGUAGES.iter().enumerate().skip(1) {
                let other = outcome(run(k).await, *language);
                assert_eq!(
                    other, rust,
                    "{}, config {config:?}, order {text}",
                    language.0
                );
            }
            decided += usize::from(rust.starts_with("ok"));
            completed += usize::from(rust.contains(r#"\"status\":\"COMPLETED\""#));
        }
    }
    println!(
        "{} generated inputs: the same outcome in every language; {decided} decided ({completed} COMPLETED), the rest refused",
        configs.len() * orders.len()
    );
    assert!(
        decided > orders.len() && completed > orders.len() / 10,
        "the generator should mostly make orders, some payable: {decided}, {completed}"
    );
}
