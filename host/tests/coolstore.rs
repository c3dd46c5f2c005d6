//! The coolstore of the workshop's lab 2 ("Creating Event-Driven/Reactive Services"), run on the
//! real compiled plugins (catalog, cart, payment, order) with the wiring of
//! `examples/coolstore/eventhost.toml`, and checked the way a shopper and an operator would:
//! through HTTP, and by watching the `orders` and `payments` topics. Every test runs on the
//! embedded bus except the last one, which runs the same shop on a real Kafka broker and reads
//! `payments` with `kcat`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{TestHost, collect, eventually, header, shop_wiring};
use eventhost::bus::Record;
use eventhost::runtime::OutMessage;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);
/// Starts with 4: the workshop's payment service accepts it.
const VALID_CARD: &str = "4123987754646678";
/// Any other first digit fails.
const INVALID_CARD: &str = "5555555555554444";
const FINAL: [&str; 2] = ["COMPLETED", "FAILED"];

// ---- configuration -------------------------------------------------------------------------

/// The shop's wiring, without the tables `TestHost` adds itself.
fn coolstore_table() -> toml::Table {
    shop_wiring(include_str!("../../examples/coolstore/eventhost.toml"))
}

fn to_toml(table: &toml::Table) -> String {
    toml::to_string(table).expect("config serializes")
}

fn coolstore() -> String {
    to_toml(&coolstore_table())
}

/// The coolstore with the workshop's fake card processing time.
fn coolstore_with_payment_delay(ms: i64) -> String {
    let mut table = coolstore_table();
    table
        .get_mut("plugin")
        .and_then(|p| p.get_mut("payment"))
        .and_then(|p| p.get_mut("config"))
        .and_then(toml::Value::as_table_mut)
        .expect("[plugin.payment] config")
        .insert("processing_delay_ms".into(), ms.into());
    to_toml(&table)
}

/// The coolstore whose card processing takes `delay_ms` against a payment timeout of 300 ms,
/// with two attempts per order: a slow payment service dead-letters its orders quickly.
fn coolstore_with_payment_timeout(delay_ms: i64) -> String {
    with_payment_timeout(&coolstore(), delay_ms)
}

/// `shop` with card processing taking `delay_ms` against a payment timeout of 300 ms, and two
/// attempts per order.
fn with_payment_timeout(shop: &str, delay_ms: i64) -> String {
    let mut table: toml::Table = shop.parse().expect("TOML");
    let payment = table
        .get_mut("plugin")
        .and_then(|p| p.get_mut("payment"))
        .and_then(toml::Value::as_table_mut)
        .expect("[plugin.payment]");
    payment
        .entry("config")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .expect("[plugin.payment] config")
        .insert("processing_delay_ms".into(), delay_ms.into());
    payment.insert(
        "limits".into(),
        toml::Value::Table(toml::toml! { memory_mib = 32
        timeout_ms = 300 }),
    );
    let subscriptions = table
        .get_mut("subscription")
        .and_then(toml::Value::as_array_mut)
        .expect("[[subscription]]");
    for sub in subscriptions {
        if sub["plugin"].as_str() == Some("payment") {
            sub.as_table_mut().expect("a table").insert(
                "retry".into(),
                toml::Value::Table(toml::toml! { attempts = 2
                backoff_ms = 10 }),
            );
        }
    }
    to_toml(&table)
}

/// The coolstore without the payment service's subscription: the order service alone, so a
/// test decides which payments it sees.
fn order_service_alone() -> String {
    let mut table = coolstore_table();
    let subscriptions = table
        .get_mut("subscription")
        .and_then(toml::Value::as_array_mut)
        .expect("[[subscription]]");
    subscriptions.retain(|s| s["plugin"].as_str() != Some("payment"));
    assert_eq!(
        subscriptions.len(),
        2,
        "the order service's two subscriptions"
    );
    to_toml(&table)
}

// ---- HTTP ----------------------------------------------------------------------------------

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.expect("body read");
    assert!(
        content_type.starts_with("application/json"),
        "answer {status} is {content_type:?}, not JSON: {text:?}"
    );
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("answer {status} is not JSON: {text:?}"));
    (status, body)
}

async fn get(host: &TestHost, path: &str) -> (u16, Value) {
    json_of(host.get(path).await).await
}

async fn post(host: &TestHost, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    json_of(host.post(path, body).await).await
}

async fn delete(host: &TestHost, path: &str) -> (u16, Value) {
    let response = host
        .client
        .delete(format!("{}{path}", host.url))
        .send()
        .await
        .expect("request sent");
    json_of(response).await
}

/// An error answer: JSON with a message a person can act on, and its status if it says one.
///
/// Every error body should be `{"message", "status"}`; the host's own are, but the plugins'
/// carry only `message` for now (see `plugin_errors_are_message_and_status`).
fn assert_error(answer: &(u16, Value), status: u16, mentions: &str) {
    let (code, body) = answer;
    assert_eq!(*code, status, "{body}");
    let message = body["message"]
        .as_str()
        .unwrap_or_else(|| panic!("error without a message: {body}"));
    assert!(
        !message.trim().is_empty() && message.contains(mentions),
        "the message should mention {mentions:?}: {body}"
    );
    assert_eq!(body["status"], json!(status), "the body's status: {body}");
}

/// An error body that is exactly `{"message", "status"}`.
fn assert_error_shape(what: &str, answer: &(u16, Value), status: u16) {
    let (code, body) = answer;
    assert_eq!(*code, status, "{what}: {body}");
    let keys: BTreeSet<&str> = body
        .as_object()
        .unwrap_or_else(|| panic!("{what}: error body is not an object: {body}"))
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["message", "status"]),
        "{what}: error body {body}"
    );
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| !m.trim().is_empty()),
        "{what}: {body}"
    );
    assert_eq!(body["status"], json!(status), "{what}: {body}");
}

// ---- the shop ------------------------------------------------------------------------------

/// A money amount in integer cents, checking it is a JSON number with at most two decimals.
fn cents(value: &Value) -> i64 {
    let number = value
        .as_f64()
        .unwrap_or_else(|| panic!("amount is not a number: {value}"));
    let text = value.to_string();
    let decimals = text.split_once('.').map_or(0, |(_, d)| d.len());
    assert!(
        decimals <= 2 && !text.contains(['e', 'E']),
        "amount is not a two-decimal number: {text}"
    );
    (number * 100.0).round() as i64
}

/// Cents as the two-decimal text of the orders' `total`.
fn amount_text(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// (cartItemTotal, cartItemPromoSavings, shippingTotal, shippingPromoSavings, cartTotal) in
/// cents.
type Totals = (i64, i64, i64, i64, i64);

/// The cart's totals, after checking that it adds up.
fn totals(cart: &Value) -> Totals {
    let items = cart["shoppingCartItemList"]
        .as_array()
        .unwrap_or_else(|| panic!("no item list: {cart}"));
    let (mut items_total, mut items_savings) = (0, 0);
    for item in items {
        let quantity = item["quantity"].as_i64().expect("quantity");
        items_total += cents(&item["price"]) * quantity;
        items_savings += cents(&item["promoSavings"]) * quantity;
        cents(&item["product"]["price"]);
    }
    let totals = (
        cents(&cart["cartItemTotal"]),
        cents(&cart["cartItemPromoSavings"]),
        cents(&cart["shippingTotal"]),
        cents(&cart["shippingPromoSavings"]),
        cents(&cart["cartTotal"]),
    );
    assert_eq!(totals.0, items_total, "item total is Σ price × quantity");
    assert_eq!(
        totals.1, items_savings,
        "savings are Σ promoSavings × quantity"
    );
    assert_eq!(
        totals.4,
        totals.0 + totals.2,
        "cart total is items + shipping"
    );
    totals
}

/// The cart's lines as (itemId, quantity).
fn lines(cart: &Value) -> Vec<(String, u64)> {
    cart["shoppingCartItemList"]
        .as_array()
        .unwrap_or_else(|| panic!("no item list: {cart}"))
        .iter()
        .map(|item| {
            (
                item["product"]["itemId"]
                    .as_str()
                    .expect("itemId")
                    .to_owned(),
                item["quantity"].as_u64().expect("quantity"),
            )
        })
        .collect()
}

async fn add(host: &TestHost, cart_id: &str, item_id: &str, quantity: u32) -> Value {
    let (status, cart) = post(
        host,
        &format!("/api/cart/{cart_id}/{item_id}/{quantity}"),
        "",
    )
    .await;
    assert_eq!(status, 200, "adding {quantity} × {item_id}: {cart}");
    cart
}

async fn cart(host: &TestHost, cart_id: &str) -> Value {
    let (status, cart) = get(host, &format!("/api/cart/{cart_id}")).await;
    assert_eq!(status, 200, "{cart}");
    assert_eq!(cart["cartId"], cart_id);
    cart
}

/// An id no other test, run or process uses (the Kafka topics outlive test runs).
fn fresh_id(tag: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{tag}-{:x}-{nanos:x}-{n}", std::process::id())
}

/// The checkout form of the workshop's web shop. Its `total` is ignored: the cart sets it.
fn order(order_id: &str, card: &str) -> Value {
    json!({
        "orderId": order_id,
        "name": "Jane Doe",
        "total": "999.99",
        "creditCard": { "number": card, "expiration": "04/29", "nameOnCard": "Jane G Doe" },
        "billingAddress": "123 Anystreet, Pueblo, CO 32213"
    })
}

async fn checkout(host: &TestHost, cart_id: &str, order: &Value) -> (u16, Value) {
    post(
        host,
        &format!("/api/cart/checkout/{cart_id}"),
        order.to_string(),
    )
    .await
}

/// Fills a cart with one T-shirt and two pairs of socks (18.79 with shipping) and checks out.
async fn buy(host: &TestHost, cart_id: &str, order_id: &str, card: &str) {
    add(host, cart_id, "329299", 1).await;
    add(host, cart_id, "165613", 2).await;
    let (status, body) = checkout(host, cart_id, &order(order_id, card)).await;
    assert_eq!(status, 200, "checkout of {order_id}: {body}");
}

/// The order as `GET /api/orders/{id}` shows it, once it has a final status.
async fn final_order(host: &TestHost, order_id: &str) -> Value {
    eventually(
        WAIT,
        &format!("order {order_id} to be paid or failed"),
        || async {
            let (status, order) = get(host, &format!("/api/orders/{order_id}")).await;
            (status == 200 && FINAL.iter().any(|s| order["status"] == *s)).then_some(order)
        },
    )
    .await
}

fn expected_status(card: &str) -> &'static str {
    if card.starts_with('4') {
        "COMPLETED"
    } else {
        "FAILED"
    }
}

// ---- the bus -------------------------------------------------------------------------------

type Seen = Arc<Mutex<Vec<Record>>>;

fn value_json(record: &Record) -> Value {
    serde_json::from_slice(&record.value).unwrap_or_else(|_| {
        panic!(
            "record is not JSON: {}",
            String::from_utf8_lossy(&record.value)
        )
    })
}

/// The records of `seen` keyed `key`, leaving out sync markers.
fn keyed(seen: &Seen, key: &str) -> Vec<Record> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|r| r.key.as_deref() == Some(key.as_bytes()) && !r.value.starts_with(b"marker-"))
        .cloned()
        .collect()
}

async fn publish(host: &TestHost, topic: &str, key: &str, value: impl Into<Vec<u8>>) {
    publish_with(host, topic, key, value.into(), Vec::new()).await;
}

async fn publish_with(
    host: &TestHost,
    topic: &str,
    key: &str,
    value: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
) {
    let message = OutMessage {
        topic: topic.into(),
        key: Some(key.as_bytes().to_vec()),
        value,
        headers,
    };
    host.bus().publish(vec![message]).await.expect("published");
}

/// Waits until observer `seen` of `topic` has every record published so far under `key`: a
/// marker goes after them to the same partition, and they come before it.
async fn observed_through(host: &TestHost, seen: &Seen, topic: &str, key: &str) {
    let marker = fresh_id("marker");
    publish(host, topic, key, marker.clone()).await;
    eventually(
        WAIT,
        &format!("marker on {topic} to be observed"),
        || async {
            let seen = seen.lock().unwrap();
            seen.iter()
                .any(|r| r.value == marker.as_bytes())
                .then_some(())
        },
    )
    .await;
}

/// Waits until consumer group `group` got past every record published so far on `topic` under
/// `key`: a marker that is not JSON follows them on the same partition, and its dead letter
/// from that group shows it was handled, so they were too.
async fn handled_through(host: &TestHost, topic: &str, key: &str, group: &str) {
    let marker = fresh_id("marker");
    let (dead, stop) = collect(&host.bus(), &format!("{topic}.dlq"), &fresh_id("sync"));
    publish(host, topic, key, marker.clone()).await;
    eventually(
        WAIT,
        &format!("{group} to get past the marker on {topic}"),
        || async {
            let dead = dead.lock().unwrap();
            dead.iter()
                .any(|r| {
                    r.value == marker.as_bytes()
                        && header(r, "eventhost-dlq-group").as_deref() == Some(group)
                })
                .then_some(())
        },
    )
    .await;
    stop.cancel();
}

fn version(host: &TestHost, plugin: &str) -> String {
    host.host()
        .dispatcher()
        .registry()
        .get(plugin)
        .unwrap_or_else(|| panic!("plugin {plugin} is loaded"))
        .info
        .version
        .clone()
}

/// Inputs of `plugin` that committed (HTTP requests included).
fn handled(host: &TestHost, plugin: &str) -> u64 {
    host.host()
        .dispatcher()
        .registry()
        .stats(plugin)
        .unwrap_or_else(|| panic!("plugin {plugin} is loaded"))
        .handled
        .load(Ordering::SeqCst)
}

// ---- errors --------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_errors_are_message_and_status() {
    let host = TestHost::start(&coolstore()).await;
    let response = host
        .client
        .put(format!("{}/api/products", host.url))
        .send()
        .await
        .expect("request sent");
    assert_eq!(
        response
            .headers()
            .get(reqwest::header::ALLOW)
            .and_then(|v| v.to_str().ok()),
        Some("GET")
    );
    assert_error_shape("PUT /api/products", &json_of(response).await, 405);
    assert_error_shape("GET /api/nothing", &get(&host, "/api/nothing").await, 404);
    assert_error_shape(
        "DELETE /api/orders",
        &delete(&host, "/api/orders").await,
        405,
    );
}

/// Plugin errors have the same shape as the host's own: `{"message", "status"}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_errors_are_message_and_status() {
    let host = TestHost::start(&coolstore()).await;
    let order_id = fresh_id("order");
    let cases = [
        (
            "catalog: unknown product",
            get(&host, "/api/product/123456").await,
            404,
        ),
        (
            "cart: bad quantity",
            post(&host, "/api/cart/c1/329299/0", "").await,
            400,
        ),
        (
            "cart: empty cart",
            checkout(&host, "nobody", &order(&order_id, VALID_CARD)).await,
            400,
        ),
        (
            "cart: not JSON",
            post(&host, "/api/cart/checkout/c1", "nope").await,
            400,
        ),
        (
            "payment: not JSON",
            post(&host, "/api/payment", "nope").await,
            400,
        ),
        (
            "order: unknown order",
            get(&host, "/api/orders/nope").await,
            404,
        ),
        (
            "order: status of an unknown order",
            get(&host, "/api/orders/nope/COMPLETED").await,
            404,
        ),
        (
            "order: posted order not JSON",
            post(&host, "/api/orders", "nope").await,
            400,
        ),
    ];
    for (what, answer, status) in &cases {
        assert_error_shape(what, answer, *status);
    }
}

// ---- catalog -------------------------------------------------------------------------------

const PRODUCTS: [(&str, &str, i64); 8] = [
    ("329299", "Quarkus T-shirt", 10_00),
    ("329199", "Pronounced Kubernetes", 9_00),
    ("165613", "Knit socks", 4_15),
    ("165614", "Quarkus H2Go water bottle", 14_45),
    ("165954", "Patagonia Refugio pack 28L", 6_00),
    ("444434", "Red Hat Impact T-shirt", 9_00),
    ("444435", "Quarkus twill cap", 13_00),
    ("444437", "Nanobloc Universal Webcam Cover", 2_75),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_lists_the_eight_products_of_the_workshop() {
    let host = TestHost::start(&coolstore()).await;
    let (status, products) = get(&host, "/api/products").await;
    assert_eq!(status, 200, "{products}");
    let products = products.as_array().expect("a list of products");
    let listed: Vec<(&str, &str, i64)> = products
        .iter()
        .map(|p| {
            (
                p["itemId"].as_str().expect("itemId"),
                p["name"].as_str().expect("name"),
                cents(&p["price"]),
            )
        })
        .collect();
    assert_eq!(listed, PRODUCTS);
    for product in products {
        assert!(product["quantity"].is_u64(), "{product}");
        assert!(
            product["desc"].as_str().is_some_and(|d| !d.is_empty()),
            "{product}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_serves_one_product_and_its_stock_and_404s_unknown_ids() {
    let host = TestHost::start(&coolstore()).await;
    let (_, list) = get(&host, "/api/products").await;
    for (id, name, price) in PRODUCTS {
        let listed = list
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["itemId"] == id)
            .expect("listed");

        let (status, product) = get(&host, &format!("/api/product/{id}")).await;
        assert_eq!(status, 200, "{product}");
        assert_eq!(&product, listed);
        assert_eq!(
            (product["name"].as_str(), cents(&product["price"])),
            (Some(name), price)
        );
    }
    assert_error(&get(&host, "/api/product/123456").await, 404, "123456");
}

/// The workshop's inventory service: `GET /api/inventory` (the lab's
/// `curl .../api/inventory | jq`) lists every record, `GET /api/inventory/{itemId}` answers a
/// list of that item's records (the workshop's catalog parses that list).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_answers_lists_of_records_like_the_workshop() {
    let host = TestHost::start(&coolstore()).await;
    let (status, all) = get(&host, "/api/inventory").await;
    assert_eq!(status, 200, "{all}");
    let all = all.as_array().expect("a list of inventory records").clone();
    assert_eq!(all.len(), PRODUCTS.len(), "one record per product: {all:?}");
    let (_, products) = get(&host, "/api/products").await;
    let mut ids = BTreeSet::new();
    for record in &all {
        let keys: BTreeSet<&str> = record
            .as_object()
            .expect("a record is an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from(["id", "itemId", "location", "quantity", "link"]),
            "{record}"
        );
        assert!(
            ids.insert(record["id"].as_u64().expect("numeric id")),
            "{record}"
        );
        let location = record["location"].as_str().expect("location");
        assert!(!location.is_empty(), "{record}");
        assert!(
            record["link"]
                .as_str()
                .is_some_and(|l| l.starts_with("https://")),
            "{record}"
        );
        let item_id = record["itemId"].as_str().expect("itemId");
        let product = products
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["itemId"] == item_id)
            .unwrap_or_else(|| panic!("{item_id} is a product"));
        assert_eq!(
            record["quantity"], product["quantity"],
            "stock agrees with the catalog"
        );

        let (status, one) = get(&host, &format!("/api/inventory/{item_id}")).await;
        assert_eq!(status, 200, "{one}");
        assert_eq!(one, json!([record]), "the item's records");
    }
    let (status, none) = get(&host, "/api/inventory/123456").await;
    assert_eq!(
        (status, none),
        (200, json!([])),
        "no records for an unknown item"
    );
}

// ---- cart ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cart_prices_promotions_and_shipping_like_the_workshop() {
    let host = TestHost::start(&coolstore()).await;

    // One T-shirt: 25% off makes 10.00 into 7.50, saving 2.50.
    let tee = add(&host, "promo", "329299", 1).await;
    let line = &tee["shoppingCartItemList"][0];
    assert_eq!(
        (
            cents(&line["product"]["price"]),
            cents(&line["price"]),
            cents(&line["promoSavings"])
        ),
        (10_00, 7_50, -2_50)
    );
    assert_eq!(totals(&tee), (7_50, -2_50, 2_99, 0, 10_49));

    // (lines, totals in cents), shipping by item total:
    // < 25 → 2.99, < 50 → 4.99, < 75 → 6.99, and free from 75 on (the saving shows the fee).
    let cases: [(&[(&str, u32)], Totals); 9] = [
        (&[("444437", 9)], (24_75, 0, 2_99, 0, 27_74)),
        (&[("444437", 10)], (27_50, 0, 4_99, 0, 32_49)),
        (&[("329299", 4)], (30_00, -10_00, 4_99, 0, 34_99)),
        (&[("444437", 19)], (52_25, 0, 6_99, 0, 59_24)),
        // 80.00 at list price, 60.00 after the promotion: shipping is due.
        (&[("329299", 8)], (60_00, -20_00, 6_99, 0, 66_99)),
        (
            &[("444435", 3), ("329299", 4), ("444437", 2)],
            (74_50, -10_00, 6_99, 0, 81_49),
        ),
        (&[("329199", 5), ("165954", 5)], (75_00, 0, 0, -8_99, 75_00)),
        (&[("165614", 6)], (86_70, 0, 0, -8_99, 86_70)),
        (&[("165614", 10)], (14450, 0, 0, -10_99, 14450)),
    ];
    for (i, (items, expected)) in cases.into_iter().enumerate() {
        let cart_id = format!("tiers-{i}");
        for &(item_id, quantity) in items {
            add(&host, &cart_id, item_id, quantity).await;
        }
        let priced = cart(&host, &cart_id).await;
        assert_eq!(totals(&priced), expected, "cart {items:?}: {priced}");
    }

    // An empty cart costs nothing, not even shipping.
    assert_eq!(totals(&cart(&host, "nobody").await), (0, 0, 0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cart_merges_lines_removes_items_and_moves_carts() {
    let host = TestHost::start(&coolstore()).await;
    add(&host, "main", "329299", 1).await;
    add(&host, "main", "165613", 2).await;
    let merged = add(&host, "main", "329299", 2).await;
    assert_eq!(
        lines(&merged),
        [("329299".into(), 3), ("165613".into(), 2)],
        "lines of the same item merge"
    );
    assert_eq!(totals(&merged), (30_80, -7_50, 4_99, 0, 35_79));

    let (status, removed) = delete(&host, "/api/cart/main/329299/1").await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(
        lines(&removed),
        [("329299".into(), 2), ("165613".into(), 2)]
    );
    let (_, removed) = delete(&host, "/api/cart/main/165613/5").await;
    assert_eq!(
        lines(&removed),
        [("329299".into(), 2)],
        "removing more than there is"
    );
    assert_eq!(lines(&cart(&host, "main").await), [("329299".into(), 2)]);

    // A shopper's anonymous cart moves into their own on login.
    add(&host, "anonymous", "329299", 1).await;
    add(&host, "anonymous", "444437", 4).await;
    let (status, moved) = post(&host, "/api/cart/main/anonymous", "").await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["cartId"], "main");
    assert_eq!(lines(&moved), [("329299".into(), 3), ("444437".into(), 4)]);
    assert_eq!(totals(&moved), (33_50, -7_50, 4_99, 0, 38_49));
    assert_eq!(lines(&cart(&host, "main").await), lines(&moved));
    assert!(
        lines(&cart(&host, "anonymous").await).is_empty(),
        "moved, not copied"
    );

    for path in ["/api/cart/main/329299/0", "/api/cart/main/329299/two"] {
        assert_error(&post(&host, path, "").await, 400, "");
    }
    assert_eq!(
        lines(&cart(&host, "main").await),
        lines(&moved),
        "bad requests change nothing"
    );
}

/// The workshop's cart test adds a product that does not exist and expects 200 with the cart
/// unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_an_unknown_product_answers_the_cart_unchanged_like_the_workshop() {
    let host = TestHost::start(&coolstore()).await;
    let (status, unknown) = post(&host, "/api/cart/1111/2222/4", "").await;
    assert_eq!(status, 200, "{unknown}");
    assert_eq!(unknown, cart(&host, "1111").await);
    assert!(lines(&unknown).is_empty(), "{unknown}");
    assert_eq!(totals(&unknown), (0, 0, 0, 0, 0));

    let filled = add(&host, "1111", "329299", 1).await;
    let (status, again) = post(&host, "/api/cart/1111/2222/4", "").await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, filled);
    assert_eq!(cart(&host, "1111").await, filled);
}

// ---- checkout ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_publishes_exactly_one_order_with_the_cart_total_and_empties_the_cart() {
    let host = TestHost::start(&coolstore()).await;
    let (orders, _stop) = collect(&host.bus(), "orders", "observer");
    add(&host, "c1", "329299", 1).await;
    let before = add(&host, "c1", "165613", 2).await;
    let total = totals(&before).4;
    assert_eq!(total, 18_79);

    let order_id = fresh_id("order");
    let (status, emptied) = checkout(&host, "c1", &order(&order_id, VALID_CARD)).await;
    assert_eq!(status, 200, "{emptied}");
    assert_eq!(emptied["cartId"], "c1");
    assert!(lines(&emptied).is_empty(), "{emptied}");
    assert_eq!(totals(&emptied), (0, 0, 0, 0, 0));
    assert!(lines(&cart(&host, "c1").await).is_empty());

    observed_through(&host, &orders, "orders", &order_id).await;
    let published = keyed(&orders, &order_id);
    assert_eq!(published.len(), 1, "exactly one order on `orders`");
    let record = &published[0];
    let mut expected = order(&order_id, VALID_CARD);
    expected["total"] = json!(amount_text(total));
    assert_eq!(
        value_json(record),
        expected,
        "the order, its total from the cart"
    );
    assert_eq!(header(record, "eventhost-plugin").as_deref(), Some("cart"));
    assert_eq!(
        header(record, "eventhost-plugin-version"),
        Some(version(&host, "cart"))
    );
    assert_eq!(
        orders.lock().unwrap().len(),
        2,
        "the order and the marker, nothing else"
    );
}

/// One checkout is one trace: the request's `traceparent` continues on the order it publishes,
/// and the payment result of that order continues it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_and_its_payment_result_share_one_trace() {
    let host = TestHost::start(&coolstore()).await;
    let (orders, _stop) = collect(&host.bus(), "orders", "observer");
    let (payments, _stop_payments) = collect(&host.bus(), "payments", "observer");
    add(&host, "c1", "329299", 1).await;
    let order_id = fresh_id("order");
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = host
        .client
        .post(format!("{}/api/cart/checkout/c1", host.url))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .body(order(&order_id, VALID_CARD).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    observed_through(&host, &orders, "orders", &order_id).await;
    observed_through(&host, &payments, "payments", &order_id).await;
    let parent = |record: &Record| {
        let value = header(record, "traceparent").expect("a traceparent header");
        let parts: Vec<String> = value.split('-').map(str::to_string).collect();
        assert_eq!(parts.len(), 4, "{value}");
        (parts[1].clone(), parts[2].clone())
    };
    let (order_trace, order_span) = parent(&keyed(&orders, &order_id)[0]);
    let (payment_trace, payment_span) = parent(&keyed(&payments, &order_id)[0]);
    assert_eq!(
        order_trace, trace_id,
        "the order continues the request's trace"
    );
    assert_eq!(
        payment_trace, trace_id,
        "the payment result continues it too"
    );
    assert_ne!(
        order_span, "00f067aa0ba902b7",
        "the cart's input has a span of its own"
    );
    assert_ne!(payment_span, order_span, "so has the payment's");
}

/// The OTLP/HTTP request bodies a collector received.
type Received = Arc<Mutex<Vec<bytes::Bytes>>>;

/// A collector on a free port that takes every `POST /v1/traces` and keeps its body.
async fn otlp_collector() -> (String, Received) {
    let received = Received::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: bytes::Bytes| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(body);
                // An empty ExportTraceServiceResponse: everything accepted.
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

/// One exported span, with what a test looks at.
#[derive(Debug)]
struct Exported {
    service: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    kind: i32,
    failed: bool,
    attributes: BTreeMap<String, String>,
}

fn exported_spans(received: &Received) -> Vec<Exported> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
    use prost::Message as _;
    let text = |value: &Option<AnyValue>| match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    };
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let mut spans = Vec::new();
    for body in received.lock().unwrap().iter() {
        let request = ExportTraceServiceRequest::decode(body.as_ref()).expect("OTLP protobuf");
        for resource_spans in request.resource_spans {
            let resource = resource_spans.resource.unwrap_or_default();
            let service = (resource.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .map(|kv| text(&kv.value))
                .unwrap_or_default();
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                spans.push(Exported {
                    service: service.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name,
                    kind: span.kind,
                    // STATUS_CODE_ERROR
                    failed: span.status.is_some_and(|s| s.code == 2),
                    attributes: (span.attributes.iter())
                        .map(|kv| (kv.key.clone(), text(&kv.value)))
                        .collect(),
                });
            }
        }
    }
    spans
}

/// With `[telemetry]`, a checkout is one exported trace whose spans have the ids of the
/// `traceparent` headers on the bus: cart's request (SERVER) is the parent of payment's input
/// from `orders` (CONSUMER), which is the parent of order's input from `payments`. An input
/// that fails for good is an error span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_is_exported_over_otlp_as_one_trace_of_linked_spans() {
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
    let (collector, received) = otlp_collector().await;
    let mut shop = coolstore_table();
    let mut telemetry = toml::Table::new();
    telemetry.insert("otlp_endpoint".into(), collector.into());
    telemetry.insert("service_name".into(), "coolstore".into());
    shop.insert("telemetry".into(), telemetry.into());
    let host = TestHost::start(&to_toml(&shop)).await;
    let (orders, _stop) = collect(&host.bus(), "orders", "observer");
    add(&host, "c1", "329299", 1).await;
    let order_id = fresh_id("order");
    let trace_id = "5bf92f3577b34da6a3ce929d0e0e4736";
    let response = host
        .client
        .post(format!("{}/api/cart/checkout/c1", host.url))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .body(order(&order_id, VALID_CARD).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(final_order(&host, &order_id).await["status"], "COMPLETED");
    let on_orders = eventually(WAIT, "the order on orders", || async {
        keyed(&orders, &order_id).first().cloned()
    })
    .await;
    let on_orders = header(&on_orders, "traceparent").unwrap();
    // An order payment cannot read fails its input for good: an error span.
    let (dead, _stop_dead) = collect(&host.bus(), "orders.dlq", "observer");
    let failing_trace = "6bf92f3577b34da6a3ce929d0e0e4736";
    let unreadable = fresh_id("unreadable");
    let traceparent = format!("00-{failing_trace}-00f067aa0ba902b7-01");
    let headers = vec![("traceparent".into(), traceparent.into_bytes())];
    publish_with(&host, "orders", &unreadable, b"{oops".to_vec(), headers).await;
    eventually(WAIT, "the unreadable order's dead letter", || async {
        (dead.lock().unwrap().iter())
            .any(|r| {
                r.key.as_deref() == Some(unreadable.as_bytes())
                    && header(r, "eventhost-dlq-group").as_deref() == Some("payment-service")
            })
            .then_some(())
    })
    .await;
    let versions: BTreeMap<&str, String> = ["cart", "payment", "order"]
        .into_iter()
        .map(|plugin| (plugin, version(&host, plugin)))
        .collect();
    // Stopping sends the spans still waiting in the batch.
    host.stop().await;

    let spans = exported_spans(&received);
    let in_trace: Vec<&Exported> = spans.iter().filter(|s| s.trace_id == trace_id).collect();
    let find = |plugin: &str, kind: SpanKind, source: &str| {
        let found: Vec<&&Exported> = (in_trace.iter())
            .filter(|s| s.attributes.get("eventhost.plugin").map(String::as_str) == Some(plugin))
            .filter(|s| s.kind == kind as i32)
            .filter(|s| {
                s.attributes
                    .get("messaging.destination.name")
                    .map(String::as_str)
                    == Some(source)
                    || s.attributes.get("http.route").map(String::as_str) == Some(source)
            })
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one {plugin} span for {source} in {in_trace:#?}"
        );
        *found[0]
    };
    let cart = find("cart", SpanKind::Server, "/api/cart/checkout/{cartId}");
    let payment = find("payment", SpanKind::Consumer, "orders");
    let order = find("order", SpanKind::Consumer, "payments");

    assert_eq!(
        cart.parent_span_id, "00f067aa0ba902b7",
        "the request's span"
    );
    assert_eq!(
        on_orders,
        format!("00-{trace_id}-{}-01", cart.span_id),
        "the order on the bus names the exported cart span as its parent"
    );
    assert_eq!(payment.parent_span_id, cart.span_id);
    assert_eq!(order.parent_span_id, payment.span_id);
    assert_eq!(cart.name, "POST /api/cart/checkout/{cartId}");
    assert_eq!(payment.name, "process orders");
    for (span, plugin) in [(cart, "cart"), (payment, "payment"), (order, "order")] {
        assert_eq!(span.service, "coolstore");
        assert!(!span.failed, "{span:#?}");
        assert_eq!(
            span.attributes["eventhost.plugin.version"],
            versions[plugin]
        );
    }
    let expect = |span: &Exported, pairs: &[(&str, &str)]| {
        for (key, value) in pairs {
            assert_eq!(
                span.attributes.get(*key).map(String::as_str),
                Some(*value),
                "{key} of {span:#?}"
            );
        }
    };
    expect(
        cart,
        &[
            ("http.request.method", "POST"),
            ("url.path", "/api/cart/checkout/c1"),
            ("http.response.status_code", "200"),
        ],
    );
    let record = [
        ("messaging.system", "eventhost-embedded"),
        ("messaging.operation.type", "process"),
    ];
    expect(payment, &record);
    expect(
        payment,
        &[("messaging.consumer.group.name", "payment-service")],
    );
    expect(order, &record);
    expect(order, &[("messaging.consumer.group.name", "order-service")]);
    for span in [payment, order] {
        assert!(
            span.attributes
                .contains_key("messaging.destination.partition.id"),
            "{span:#?}"
        );
    }

    let failed: Vec<&Exported> = (spans.iter())
        .filter(|s| s.trace_id == failing_trace)
        .filter(|s| s.attributes.get("eventhost.plugin").map(String::as_str) == Some("payment"))
        .collect();
    assert_eq!(failed.len(), 1, "{spans:#?}");
    assert!(failed[0].failed, "{:#?}", failed[0]);
    assert_eq!(failed[0].attributes["error.type"], "invalid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_rejects_bad_orders_with_json_errors_and_keeps_the_cart() {
    let host = TestHost::start(&coolstore()).await;
    let (orders, _stop) = collect(&host.bus(), "orders", "observer");
    let order_id = fresh_id("order");

    assert_error(
        &checkout(&host, "nobody", &order(&order_id, VALID_CARD)).await,
        400,
        "empty",
    );

    add(&host, "c1", "329299", 1).await;
    let complete = order(&order_id, VALID_CARD);
    let mut no_card = complete.clone();
    no_card.as_object_mut().unwrap().remove("creditCard");
    let mut no_name = complete.clone();
    no_name.as_object_mut().unwrap().remove("name");
    let mut blank_number = complete.clone();
    blank_number["creditCard"]["number"] = json!("  ");
    let mut no_id = complete.clone();
    no_id.as_object_mut().unwrap().remove("orderId");
    let cases = [
        (no_card.to_string(), "creditCard"),
        (no_name.to_string(), "name"),
        (blank_number.to_string(), "creditCard.number"),
        (no_id.to_string(), "orderId"),
        ("this is not JSON".to_string(), "JSON"),
        ("[1, 2]".to_string(), "JSON object"),
        (String::new(), "JSON"),
    ];
    for (body, mentions) in cases {
        let answer = post(&host, "/api/cart/checkout/c1", body.clone()).await;
        assert_error(&answer, 400, mentions);
    }
    assert_eq!(
        lines(&cart(&host, "c1").await),
        [("329299".into(), 1)],
        "the cart is kept"
    );

    observed_through(&host, &orders, "orders", &order_id).await;
    assert!(
        keyed(&orders, &order_id).is_empty(),
        "no order was published"
    );
    assert_eq!(orders.lock().unwrap().len(), 1, "only the marker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carts_survive_a_host_restart() {
    let config = coolstore();
    let host = TestHost::start(&config).await;
    add(&host, "keep", "329299", 2).await;
    let before = add(&host, "keep", "444435", 1).await;
    let dir = host.stop().await;

    let host = TestHost::start_in(dir, &config).await;
    let after = cart(&host, "keep").await;
    assert_eq!(after, before);
    assert_eq!(totals(&after), (28_00, -5_00, 4_99, 0, 32_99));

    // And the restarted shop still sells it.
    let order_id = fresh_id("order");
    let (status, body) = checkout(&host, "keep", &order(&order_id, VALID_CARD)).await;
    assert_eq!(status, 200, "{body}");
    let order = final_order(&host, &order_id).await;
    assert_eq!(
        (order["status"].as_str(), order["total"].as_str()),
        (Some("COMPLETED"), Some("32.99"))
    );
}

// ---- payment -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_completes_cards_starting_with_4_fails_others_and_never_shows_the_number() {
    let host = TestHost::start(&coolstore()).await;
    let (payments, _stop) = collect(&host.bus(), "payments", "observer");
    let paid = fresh_id("paid");
    let refused = fresh_id("refused");
    buy(&host, "c1", &paid, VALID_CARD).await;
    buy(&host, "c2", &refused, INVALID_CARD).await;

    eventually(WAIT, "both orders to be decided", || async {
        (handled(&host, "payment") == 2 && payments.lock().unwrap().len() == 2).then_some(())
    })
    .await;
    let version = version(&host, "payment");
    for (order_id, card) in [(&paid, VALID_CARD), (&refused, INVALID_CARD)] {
        let results = keyed(&payments, order_id);
        assert_eq!(
            results.len(),
            1,
            "exactly one payment result for {order_id}"
        );
        let record = &results[0];
        let result = value_json(record);
        let status = expected_status(card);
        assert_eq!(
            (result["orderId"].as_str(), result["status"].as_str()),
            (Some(order_id.as_str()), Some(status))
        );
        assert!(
            result["paymentId"]
                .as_str()
                .is_some_and(|id| !id.is_empty()),
            "{result}"
        );
        let remarks = result["remarks"].as_str().expect("remarks");
        let masked = format!("************{}", &card[12..]);
        if status == "COMPLETED" {
            assert!(
                remarks.starts_with("Payment of 18.79 succeeded for Jane Doe"),
                "{remarks}"
            );
            assert!(remarks.contains(&masked), "{remarks}");
        } else {
            assert_eq!(remarks, format!("Invalid Credit Card: {masked}"));
        }
        assert!(!remarks.contains(card), "the card number leaked: {remarks}");
        assert_eq!(
            header(record, "eventhost-plugin").as_deref(),
            Some("payment")
        );
        assert_eq!(
            header(record, "eventhost-plugin-version").as_deref(),
            Some(version.as_str())
        );

        let order = final_order(&host, order_id).await;
        assert_eq!(order["status"], status);
        assert_eq!(order["ccNumber"], masked.as_str());
    }
    let (status, all) = get(&host, "/api/orders").await;
    assert_eq!(status, 200);
    let text = all.to_string();
    for card in [VALID_CARD, INVALID_CARD] {
        assert!(
            !text.contains(card),
            "the orders API shows a card number: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_dead_letters_orders_it_cannot_read_and_fails_broken_cards() {
    let host = TestHost::start(&coolstore()).await;
    let (dead, _stop) = collect(&host.bus(), "orders.dlq", "observer");
    let (payments, _stop_payments) = collect(&host.bus(), "payments", "observer");
    let unreadable: [(&str, &[u8]); 3] = [
        ("not-json", b"{\"orderId\": \"x\", oops"),
        ("not-utf8", &[0xff, 0x00, 0xfe]),
        (
            "no-order-id",
            br#"{"name":"Jane Doe","total":"10.00","creditCard":{"number":"4123987754646678"}}"#,
        ),
    ];
    for (key, value) in unreadable {
        publish_with(
            &host,
            "orders",
            key,
            value.to_vec(),
            vec![("trace".into(), b"t-1".to_vec())],
        )
        .await;
    }
    let not_an_object = fresh_id("card-text");
    let number_not_text = fresh_id("card-number");
    let broken = [
        (
            &not_an_object,
            json!(VALID_CARD),
            "Credit card details are not an object",
        ),
        (
            &number_not_text,
            json!({ "number": VALID_CARD.parse::<u64>().expect("digits") }),
            "Credit card has no number",
        ),
    ];
    for (order_id, card, _) in &broken {
        let value = json!({ "orderId": order_id, "name": "Jane Doe", "total": "10.00", "creditCard": card });
        publish(&host, "orders", order_id, value.to_string()).await;
    }

    let payment_version = version(&host, "payment");
    for (key, value) in unreadable {
        let letters = eventually(WAIT, &format!("{key} to be dead-lettered"), || async {
            let letters = keyed(&dead, key);
            (letters.len() == 2).then_some(letters)
        })
        .await;
        // Both services that consume `orders` refuse it: each says so once.
        let groups: BTreeSet<_> = letters
            .iter()
            .map(|r| header(r, "eventhost-dlq-group").unwrap_or_default())
            .collect();
        assert_eq!(
            groups,
            BTreeSet::from(["order-service".to_string(), "payment-service".to_string()])
        );
        let letter = letters
            .iter()
            .find(|r| header(r, "eventhost-dlq-group").as_deref() == Some("payment-service"))
            .unwrap();
        assert_eq!(letter.value, value, "original bytes of {key}");
        assert_eq!(
            header(letter, "eventhost-dlq-kind").as_deref(),
            Some("invalid")
        );
        assert_eq!(
            header(letter, "eventhost-dlq-attempts").as_deref(),
            Some("1"),
            "bad input is not retried"
        );
        assert_eq!(
            header(letter, "eventhost-dlq-topic").as_deref(),
            Some("orders")
        );
        assert!(
            header(letter, "eventhost-dlq-partition").is_some_and(|p| p.parse::<i32>().is_ok())
        );
        assert!(header(letter, "eventhost-dlq-offset").is_some_and(|o| o.parse::<i64>().is_ok()));
        assert!(header(letter, "eventhost-dlq-reason").is_some_and(|r| !r.is_empty()));
        assert_eq!(
            header(letter, "eventhost-plugin").as_deref(),
            Some("payment")
        );
        assert_eq!(
            header(letter, "eventhost-plugin-version").as_deref(),
            Some(payment_version.as_str())
        );
        assert_eq!(
            header(letter, "trace").as_deref(),
            Some("t-1"),
            "original headers are kept"
        );
    }

    for (order_id, _, remarks) in &broken {
        let result = eventually(WAIT, &format!("the result of {order_id}"), || async {
            keyed(&payments, order_id).first().map(value_json)
        })
        .await;
        assert_eq!(
            (result["status"].as_str(), result["remarks"].as_str()),
            (Some("FAILED"), Some(*remarks))
        );
        assert_eq!(final_order(&host, order_id).await["status"], "FAILED");
        assert!(
            keyed(&dead, order_id).is_empty(),
            "an order with an id is answered, not dead-lettered"
        );
    }
    for (key, _) in unreadable {
        assert!(keyed(&payments, key).is_empty(), "no result for {key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_over_http_answers_the_decision_and_publishes_it() {
    let host = TestHost::start(&coolstore()).await;
    let (payments, _stop) = collect(&host.bus(), "payments", "observer");
    // The workshop's curl example.
    let paid = fresh_id("curl");
    let body = json!({
        "orderId": paid, "total": "232.23",
        "creditCard": { "number": "4232454678667866", "expiration": "04/22", "nameOnCard": "Jane G Doe" },
        "billingAddress": "123 Anystreet, Pueblo, CO 32213", "name": "Jane Doe"
    });
    let (status, answer) = post(&host, "/api/payment", body.to_string()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["orderId"], paid.as_str());
    assert_eq!(answer["status"], "COMPLETED");
    assert_eq!(
        answer["remarks"],
        r#"Payment of 232.23 succeeded for Jane Doe CC details: {"number":"************7866","expiration":"04/22","nameOnCard":"Jane G Doe"}"#
    );

    let refused = fresh_id("curl");
    let mut invalid = body.clone();
    invalid["orderId"] = json!(refused);
    invalid["creditCard"]["number"] = json!(INVALID_CARD);
    let (status, refusal) = post(&host, "/api/payment", invalid.to_string()).await;
    assert_eq!(status, 200, "{refusal}");
    assert_eq!(refusal["status"], "FAILED");
    assert_eq!(refusal["remarks"], "Invalid Credit Card: ************4444");

    for (order_id, answer) in [(&paid, &answer), (&refused, &refusal)] {
        observed_through(&host, &payments, "payments", order_id).await;
        let published = keyed(&payments, order_id);
        assert_eq!(published.len(), 1, "one result for {order_id}");
        assert_eq!(
            &value_json(&published[0]),
            answer,
            "the answer is what was published"
        );
    }

    assert_error(
        &post(&host, "/api/payment", "not an order").await,
        400,
        "JSON",
    );
    assert_error(
        &post(&host, "/api/payment", r#"{"total":"1.00"}"#).await,
        400,
        "orderId",
    );
    observed_through(&host, &payments, "payments", "end").await;
    let results = payments
        .lock()
        .unwrap()
        .iter()
        .filter(|r| !r.value.starts_with(b"marker-"))
        .count();
    assert_eq!(results, 2, "bad requests publish nothing");
}

/// A Knative-style source posts the workshop's order as a CloudEvent, in structured or binary
/// mode: the payment plugin sees the order as usual, and its answer and its published result
/// are CloudEvents of the type the coolstore configures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloudevent_posted_to_the_payment_route_gets_a_cloudevent_result() {
    let host = TestHost::start(&coolstore()).await;
    let (payments, _stop) = collect(&host.bus(), "payments", "observer");
    let url = format!("{}/api/payment", host.url);
    let order_of = |id: &str| order(id, VALID_CARD);
    let ce = |response: &reqwest::Response, name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };

    let structured = fresh_id("ce-structured");
    let event = json!({
        "specversion": "1.0", "id": format!("evt-{structured}"), "source": "/knative/orders",
        "type": "com.redhat.coolstore.order.created", "datacontenttype": "application/json",
        "data": order_of(&structured)
    });
    let response = host
        .client
        .post(&url)
        .header("content-type", "application/cloudevents+json")
        .body(event.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(ce(&response, "ce-specversion").as_deref(), Some("1.0"));
    assert_eq!(
        ce(&response, "ce-type").as_deref(),
        Some("com.redhat.coolstore.payment.result")
    );
    assert_eq!(
        ce(&response, "ce-source").as_deref(),
        Some("/coolstore/payment")
    );
    assert!(ce(&response, "ce-id").is_some_and(|id| !id.is_empty()));
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["orderId"], structured.as_str());
    assert_eq!(answer["status"], "COMPLETED");

    let binary = fresh_id("ce-binary");
    let response = host
        .client
        .post(&url)
        .header("content-type", "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-id", format!("evt-{binary}"))
        .header("ce-source", "/knative/orders")
        .header("ce-type", "com.redhat.coolstore.order.created")
        .body(order_of(&binary).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(ce(&response, "ce-specversion").as_deref(), Some("1.0"));
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["orderId"], binary.as_str());

    // The published results are CloudEvents too, identified by the host's message id.
    for order_id in [&structured, &binary] {
        observed_through(&host, &payments, "payments", order_id).await;
        let published = keyed(&payments, order_id);
        assert_eq!(published.len(), 1, "one result for {order_id}");
        let header = |name: &str| {
            let found = published[0].headers.iter().find(|(n, _)| n == name);
            found.map(|(_, v)| String::from_utf8(v.clone()).unwrap())
        };
        assert_eq!(header("ce_specversion").as_deref(), Some("1.0"));
        assert_eq!(
            header("ce_type").as_deref(),
            Some("com.redhat.coolstore.payment.result")
        );
        assert_eq!(header("ce_id"), header("eventhost-id"));
        assert!(header("ce_time").is_some());
    }

    // An event without its id is refused before the plugin runs; a plain request gets a plain
    // answer.
    let broken = json!({"specversion": "1.0", "source": "/s", "type": "t", "data": order_of("x")});
    let response = host
        .client
        .post(&url)
        .header("content-type", "application/cloudevents+json")
        .body(broken.to_string())
        .send()
        .await
        .unwrap();
    assert_error(&json_of(response).await, 400, "id is missing");
    let plain = host
        .client
        .post(&url)
        .body(order_of(&fresh_id("plain")).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 200);
    assert!(ce(&plain, "ce-specversion").is_none());
}

/// The lab's own command, run as written: `curl -i -H 'Content-Type: application/json'
/// -X POST -d'{...}' $URL`, where `$URL` is the payment service's address. The coolstore binds
/// `POST /` to the payment plugin, so the shop's own address is it; `GET /` still serves the
/// shop's page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_labs_payment_command_works_against_the_shops_address() {
    const DELAY_MS: u64 = 300;
    let host = TestHost::start_with(
        &coolstore_with_payment_delay(DELAY_MS as i64),
        &common::coolstore_static_dir(),
        "",
    )
    .await;
    let (payments, _stop) = collect(&host.bus(), "payments", "observer");
    let lab_order = r#"{"orderId": "12321","total": "232.23", "creditCard": {"number": "4232454678667866","expiration": "04/22","nameOnCard": "Jane G Doe"}, "billingAddress": "123 Anystreet, Pueblo, CO 32213", "name": "Jane Doe"}"#;
    let started = std::time::Instant::now();
    let output = std::process::Command::new("curl")
        .args(["-i", "-H", "Content-Type: application/json", "-X", "POST"])
        .arg(format!("-d{lab_order}"))
        .arg(&host.url)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run curl ({e}): install it with `apt-get install curl` (`make test` does)"
            )
        });
    let elapsed = started.elapsed();
    assert!(output.status.success(), "curl failed: {output:?}");
    let text = String::from_utf8(output.stdout).expect("curl prints text");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header/body split in {text:?}"));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        elapsed >= Duration::from_millis(DELAY_MS),
        "answered after {elapsed:?}, before the processing delay of {DELAY_MS} ms"
    );
    let answer: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("{body:?}"));
    assert_eq!(answer["orderId"], "12321");
    assert_eq!(answer["status"], "COMPLETED");
    assert_eq!(
        answer["remarks"],
        r#"Payment of 232.23 succeeded for Jane Doe CC details: {"number":"************7866","expiration":"04/22","nameOnCard":"Jane G Doe"}"#
    );

    observed_through(&host, &payments, "payments", "12321").await;
    let published = keyed(&payments, "12321");
    assert_eq!(published.len(), 1, "one result on `payments`");
    assert_eq!(
        value_json(&published[0]),
        answer,
        "the answer is what was published"
    );

    let page = host.get("/").await;
    assert_eq!(page.status(), 200);
    let content_type = page.headers()[reqwest::header::CONTENT_TYPE].clone();
    assert!(
        content_type.to_str().unwrap().starts_with("text/html"),
        "{content_type:?}"
    );
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("<title>Coolstore</title>")
    );
    assert_error(&get(&host, "/api/payment").await, 405, "POST");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_redriven_after_a_fix_ends_completed() {
    // The payment service is deployed too slow for its timeout: the order is dead-lettered.
    let host = TestHost::start(&coolstore_with_payment_timeout(2000)).await;
    let (dead, _stop) = collect(&host.bus(), "orders.dlq", "observer");
    let (orders, _stop_orders) = collect(&host.bus(), "orders", "observer");
    let order_id = fresh_id("redriven");
    buy(&host, "c-redrive", &order_id, VALID_CARD).await;
    let letter = eventually(WAIT, "the order to be dead-lettered", || async {
        keyed(&dead, &order_id)
            .into_iter()
            .find(|r| header(r, "eventhost-dlq-group").as_deref() == Some("payment-service"))
    })
    .await;
    assert_eq!(
        header(&letter, "eventhost-dlq-kind").as_deref(),
        Some("timeout")
    );
    let (_, order) = get(&host, &format!("/api/orders/{order_id}")).await;
    assert_eq!(order["status"], "PROCESSING", "{order}");

    // The fix is deployed, then the dead letter goes back.
    let fixed = common::test_config(host.dir.path(), &coolstore_with_payment_timeout(0));
    let report = host.host().deployment().apply(fixed).await;
    assert!(
        report.loaded.iter().any(|p| p.starts_with("payment@")),
        "{report:?}"
    );
    let (status, body) = post(&host, "/admin/redrive?subscription=payment-service", "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["message"],
        "redriven 1 dead letter from orders.dlq to orders"
    );
    assert_eq!(final_order(&host, &order_id).await["status"], "COMPLETED");

    // It went back as it was, counted once, without the dead letter's headers.
    let sent = keyed(&orders, &order_id);
    assert_eq!(sent.len(), 2, "the checkout's order and the redriven one");
    assert_eq!(sent[1].value, sent[0].value);
    assert_eq!(
        header(&sent[1], "eventhost-redrive-count").as_deref(),
        Some("1")
    );
    let without_count: Vec<_> = (sent[1].headers.iter())
        .filter(|(name, _)| name != "eventhost-redrive-count")
        .collect();
    assert_eq!(without_count, sent[0].headers.iter().collect::<Vec<_>>());

    let (status, body) = post(&host, "/admin/redrive?subscription=payment-service", "").await;
    assert_eq!(
        (status, body["message"].as_str()),
        (
            200,
            Some("redriven 0 dead letters from orders.dlq to orders")
        ),
        "nothing is sent twice"
    );
}

// ---- order ---------------------------------------------------------------------------------

/// The workshop's order service also stores posted orders (`POST /api/orders`, answered with
/// the list) and sets an order's status (`GET /api/orders/{orderId}/{status}`, answered with
/// the order); both are idempotent by order id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_service_stores_posted_orders_and_sets_their_status() {
    let host = TestHost::start(&order_service_alone()).await;
    let posted = json!({
        "orderId": "o-posted", "name": "Jane Doe", "total": "18.79",
        "ccNumber": VALID_CARD, "ccExp": "04/29",
        "billingAddress": "123 Anystreet, Pueblo, CO 32213", "status": "PROCESSING"
    });
    let stored = json!({
        "orderId": "o-posted", "name": "Jane Doe", "total": "18.79",
        "ccNumber": "************6678", "ccExp": "04/29",
        "billingAddress": "123 Anystreet, Pueblo, CO 32213", "status": "PROCESSING"
    });
    let (status, list) = post(&host, "/api/orders", posted.to_string()).await;
    assert_eq!((status, &list), (200, &json!([stored])));
    let (status, again) = post(&host, "/api/orders", posted.to_string()).await;
    assert_eq!(
        (status, again),
        (200, json!([stored])),
        "posted twice, stored once"
    );

    // The checkout form's shape is taken too.
    let (status, list) = post(
        &host,
        "/api/orders",
        order("o-form", INVALID_CARD).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    let (_, all) = get(&host, "/api/orders").await;
    assert_eq!(all, list, "the answer is the order list");

    let (status, changed) = get(&host, "/api/orders/o-posted/COMPLETED").await;
    let mut completed = stored.clone();
    completed["status"] = json!("COMPLETED");
    assert_eq!((status, &changed), (200, &completed));
    assert_eq!(
        get(&host, "/api/orders/o-posted").await,
        (200, completed.clone())
    );
    assert_eq!(
        get(&host, "/api/orders/o-posted/COMPLETED").await,
        (200, completed.clone()),
        "asked again, the same"
    );
    let (status, reposted) = post(&host, "/api/orders", posted.to_string()).await;
    assert_eq!(status, 200);
    let reposted = reposted
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["orderId"] == "o-posted")
        .cloned();
    assert_eq!(
        reposted,
        Some(completed),
        "posting it again keeps the status"
    );

    let missing = get(&host, "/api/orders/nobody/COMPLETED").await;
    assert_error(&missing, 404, "nobody");
    let (_, all) = get(&host, "/api/orders").await;
    assert_eq!(
        all.as_array().map(Vec::len),
        Some(2),
        "nothing created: {all}"
    );
    assert_error(
        &post(&host, "/api/orders", r#"{"name":"x"}"#).await,
        400,
        "orderId",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_processing_until_their_payment_decides() {
    // The workshop's card processing took 5 s; 2 s is long enough to see PROCESSING.
    let host = TestHost::start(&coolstore_with_payment_delay(2000)).await;
    let paid = fresh_id("paid");
    let refused = fresh_id("refused");
    buy(&host, "c1", &paid, VALID_CARD).await;
    buy(&host, "c2", &refused, INVALID_CARD).await;

    let listed = eventually(WAIT, "both orders to be listed", || async {
        let (_, all) = get(&host, "/api/orders").await;
        (all.as_array()?.len() == 2).then_some(all)
    })
    .await;
    for order in listed.as_array().unwrap() {
        assert_eq!(order["status"], "PROCESSING", "{order}");
    }

    for (order_id, card) in [(&paid, VALID_CARD), (&refused, INVALID_CARD)] {
        let order = final_order(&host, order_id).await;
        assert_eq!(
            order,
            json!({
                "orderId": order_id,
                "name": "Jane Doe",
                "total": "18.79",
                "ccNumber": format!("************{}", &card[12..]),
                "ccExp": "04/29",
                "billingAddress": "123 Anystreet, Pueblo, CO 32213",
                "status": expected_status(card),
            })
        );
        let (_, all) = get(&host, "/api/orders").await;
        let listed = all
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["orderId"] == order_id.as_str());
        assert_eq!(listed, Some(&order), "GET /api/orders agrees");
    }
    assert_error(
        &get(&host, "/api/orders/no-such-order").await,
        404,
        "no-such-order",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_that_arrives_before_its_order_decides_it() {
    let host = TestHost::start(&order_service_alone()).await;
    for status in FINAL {
        let order_id = fresh_id("early");
        let payment = json!({ "orderId": order_id, "paymentId": "12345", "remarks": "decided early", "status": status });
        publish(&host, "payments", &order_id, payment.to_string()).await;
        handled_through(&host, "payments", &order_id, "order-service").await;
        assert_error(
            &get(&host, &format!("/api/orders/{order_id}")).await,
            404,
            &order_id,
        );

        // Whatever its card, the order takes the payment's status as soon as it is recorded.
        publish(
            &host,
            "orders",
            &order_id,
            order(&order_id, VALID_CARD).to_string(),
        )
        .await;
        let first_seen = eventually(WAIT, "the order to be recorded", || async {
            let (code, order) = get(&host, &format!("/api/orders/{order_id}")).await;
            (code == 200).then_some(order)
        })
        .await;
        assert_eq!(first_seen["status"], status, "{first_seen}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_orders_and_payments_change_nothing() {
    let host = TestHost::start(&coolstore()).await;
    let (orders, _stop) = collect(&host.bus(), "orders", "observer");
    let (payments, _stop_payments) = collect(&host.bus(), "payments", "observer");
    for (i, card) in [VALID_CARD, INVALID_CARD].into_iter().enumerate() {
        let order_id = fresh_id("again");
        buy(&host, &format!("c{i}"), &order_id, card).await;
        let decided = final_order(&host, &order_id).await;
        assert_eq!(decided["status"], expected_status(card));
        let first_payment = eventually(WAIT, "the payment result", || async {
            keyed(&payments, &order_id).first().cloned()
        })
        .await;
        observed_through(&host, &orders, "orders", &order_id).await;
        let [first_order] = <[Record; 1]>::try_from(keyed(&orders, &order_id)).expect("one order");

        // At-least-once delivery: both come again, byte for byte.
        for record in [&first_order, &first_payment] {
            publish_with(
                &host,
                &record.topic,
                &order_id,
                record.value.clone(),
                record.headers.clone(),
            )
            .await;
        }
        // The payment service answers the same order the same way: the first result, the
        // redelivered one and the answer to the redelivered order are all alike...
        let results = eventually(WAIT, "the payment of the redelivered order", || async {
            let results = keyed(&payments, &order_id);
            (results.len() == 3).then_some(results)
        })
        .await;
        for again in &results {
            assert_eq!(
                value_json(again),
                value_json(&first_payment),
                "same paymentId, same decision"
            );
        }
        // ... and once the order service got past every copy, the order is as it was.
        handled_through(&host, "orders", &order_id, "order-service").await;
        handled_through(&host, "payments", &order_id, "order-service").await;
        let (status, now) = get(&host, &format!("/api/orders/{order_id}")).await;
        assert_eq!(status, 200);
        assert_eq!(now, decided, "status not reset by the redelivered order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_checkouts_each_get_one_final_status_and_one_payment() {
    const CARTS: usize = 20;
    const ORDERS_PER_CART: usize = 10;
    let host = TestHost::start(&coolstore()).await;
    let (payments, _stop) = collect(&host.bus(), "payments", "observer");

    let shoppers = (0..CARTS).map(|c| {
        let host = &host;
        async move {
            let cart_id = format!("busy-{c}");
            let mut placed = Vec::new();
            for n in 0..ORDERS_PER_CART {
                let (item_id, _, _) = PRODUCTS[(c + n) % PRODUCTS.len()];
                let quantity = (1 + n % 3) as u32;
                let cart = add(host, &cart_id, item_id, quantity).await;
                let total = totals(&cart).4;
                let card = if (c + n) % 3 == 0 {
                    INVALID_CARD
                } else {
                    VALID_CARD
                };
                let order_id = fresh_id(&format!("busy-{c}-{n}"));
                let (status, emptied) = checkout(host, &cart_id, &order(&order_id, card)).await;
                assert_eq!(status, 200, "checkout {order_id}: {emptied}");
                assert!(lines(&emptied).is_empty());
                placed.push((order_id, expected_status(card), amount_text(total)));
            }
            placed
        }
    });
    let placed: Vec<_> = futures::future::join_all(shoppers)
        .await
        .into_iter()
        .flatten()
        .collect();
    let count = CARTS * ORDERS_PER_CART;
    assert_eq!(placed.len(), count);

    eventually(
        Duration::from_secs(120),
        "every order to be paid or failed",
        || async {
            (handled(&host, "payment") == count as u64 && payments.lock().unwrap().len() == count)
                .then_some(())
        },
    )
    .await;
    let mut results: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for record in payments.lock().unwrap().iter() {
        let result = value_json(record);
        results
            .entry(result["orderId"].as_str().unwrap().to_owned())
            .or_default()
            .push(result);
    }
    assert_eq!(results.len(), count, "one result per order");
    for (order_id, status, _) in &placed {
        let for_order = &results[order_id];
        assert_eq!(for_order.len(), 1, "{order_id}: {for_order:?}");
        assert_eq!(for_order[0]["status"], *status, "{order_id}");
    }

    let listed = eventually(
        Duration::from_secs(60),
        "every order to show its final status",
        || async {
            let (_, all) = get(&host, "/api/orders").await;
            let all = all.as_array()?.clone();
            (all.len() == count && all.iter().all(|o| FINAL.iter().any(|s| o["status"] == *s)))
                .then_some(all)
        },
    )
    .await;
    let listed: BTreeMap<&str, &Value> = listed
        .iter()
        .map(|o| (o["orderId"].as_str().unwrap(), o))
        .collect();
    for (order_id, status, total) in &placed {
        let order = listed[order_id.as_str()];
        assert_eq!(
            (order["status"].as_str(), order["total"].as_str()),
            (Some(*status), Some(total.as_str())),
            "{order_id}"
        );
    }
}

// ---- Kafka ---------------------------------------------------------------------------------

/// The coolstore of `eventhost-kafka.toml` on the broker at `bootstrap`, with consumer groups
/// of its own (`coolstore-test-<group>`), so that a shop running on the same broker neither
/// takes its partitions nor handles its orders.
fn coolstore_on_kafka(bootstrap: &str) -> String {
    let mut table = shop_wiring(include_str!(
        "../../examples/coolstore/eventhost-kafka.toml"
    ));
    let bus = table
        .get_mut("bus")
        .and_then(toml::Value::as_table_mut)
        .expect("[bus]");
    assert_eq!(bus.get("kind").and_then(toml::Value::as_str), Some("kafka"));
    bus.insert("bootstrap".into(), bootstrap.into());
    bus.insert("client_id".into(), "coolstore-test".into());
    let mut options = toml::Table::new();
    // A member left behind by a killed run is dropped from the group quickly.
    options.insert("session.timeout.ms".into(), "6000".into());
    options.insert("heartbeat.interval.ms".into(), "500".into());
    bus.insert("options".into(), options.into());
    let subscriptions = table
        .get_mut("subscription")
        .and_then(toml::Value::as_array_mut)
        .expect("[[subscription]]");
    for sub in subscriptions {
        let sub = sub.as_table_mut().expect("a subscription table");
        let group = sub["group"].as_str().expect("group").to_owned();
        sub.insert("group".into(), format!("coolstore-test-{group}").into());
    }
    to_toml(&table)
}

/// One record as `kcat -f '%k\t%h\t%s\n'` prints it.
struct KcatRecord {
    key: String,
    headers: BTreeMap<String, String>,
    value: String,
}

fn kcat_payments(bootstrap: &str) -> Vec<KcatRecord> {
    let output = std::process::Command::new("kcat")
        .args([
            "-b",
            bootstrap,
            "-C",
            "-t",
            "payments",
            "-o",
            "beginning",
            "-e",
            "-q",
        ])
        .args(["-f", "%k\t%h\t%s\n"])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run kcat ({e}): install it with `apt-get install kcat` (`make test` does)"
            )
        });
    assert!(
        output.status.success(),
        "kcat failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("kcat prints text")
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let mut fields = line.splitn(3, '\t');
            let (key, headers, value) = (
                fields.next().unwrap_or_default(),
                fields.next().unwrap_or_default(),
                fields.next().unwrap_or_default(),
            );
            KcatRecord {
                key: key.to_owned(),
                headers: headers
                    .split(',')
                    .filter_map(|h| h.split_once('='))
                    .map(|(n, v)| (n.to_owned(), v.to_owned()))
                    .collect(),
                value: value.to_owned(),
            }
        })
        .collect()
}

/// Held by each test that runs the shop on Kafka: they share its consumer groups, and a host
/// keeps its orders in its own store, so two at once would take each other's orders.
static SHOP_ON_KAFKA: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Dead letters of `plugin` from `topic`, from `/metrics`.
async fn dead_letters(host: &TestHost, plugin: &str, topic: &str) -> u64 {
    let text = host.get("/metrics").await.text().await.expect("metrics");
    let series = format!("eventhost_dead_letters_total{{plugin=\"{plugin}\",source=\"{topic}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series)?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kafka_a_dead_letter_redriven_after_a_fix_ends_completed() {
    let bootstrap =
        std::env::var("EVENTHOST_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let shop = coolstore_on_kafka(&bootstrap);
    let _alone = SHOP_ON_KAFKA.lock().await;
    let host = TestHost::start(&with_payment_timeout(&shop, 2000)).await;
    let order_id = fresh_id("kafka-redriven");
    buy(&host, &format!("cart-{order_id}"), &order_id, VALID_CARD).await;
    eventually(
        Duration::from_secs(90),
        "the order to be dead-lettered",
        || async { (dead_letters(&host, "payment", "orders").await >= 1).then_some(()) },
    )
    .await;
    let (_, order) = get(&host, &format!("/api/orders/{order_id}")).await;
    assert_eq!(order["status"], "PROCESSING", "{order}");

    let fixed = common::test_config(host.dir.path(), &with_payment_timeout(&shop, 0));
    let report = host.host().deployment().apply(fixed).await;
    assert!(report.failed.is_empty(), "{report:?}");
    let redrive = "/admin/redrive?subscription=coolstore-test-payment-service";
    let (status, body) = post(&host, redrive, "").await;
    assert_eq!(status, 200, "{body}");
    // Letters of runs that stopped before their redrive go back too.
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("redriven ") && message.ends_with(" from orders.dlq to orders"),
        "{body}"
    );
    assert!(body["records"].as_u64() >= Some(1), "{body}");
    let order = eventually(Duration::from_secs(90), "the order to complete", || async {
        let (_, order) = get(&host, &format!("/api/orders/{order_id}")).await;
        (order["status"] == "COMPLETED").then_some(order)
    })
    .await;
    assert_eq!(order["orderId"], order_id.as_str());
    let (status, body) = post(&host, redrive, "").await;
    assert_eq!(
        (status, body["message"].as_str()),
        (
            200,
            Some("redriven 0 dead letters from orders.dlq to orders")
        ),
        "nothing is sent twice"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kafka_each_checkout_gets_one_payment_result_seen_with_kcat() {
    let bootstrap =
        std::env::var("EVENTHOST_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let first = bootstrap.split(',').next().unwrap_or_default();
    assert!(
        std::net::TcpStream::connect(first).is_ok(),
        "no Kafka broker at {bootstrap}: start one with `bash scripts/kafka start`"
    );
    let _alone = SHOP_ON_KAFKA.lock().await;
    let host = TestHost::start(&coolstore_on_kafka(&bootstrap)).await;
    let paid = fresh_id("kafka-paid");
    let refused = fresh_id("kafka-refused");
    buy(&host, &format!("cart-{paid}"), &paid, VALID_CARD).await;
    buy(&host, &format!("cart-{refused}"), &refused, INVALID_CARD).await;

    let expected = [(&paid, VALID_CARD), (&refused, INVALID_CARD)];
    for (order_id, card) in expected {
        let order = eventually(
            Duration::from_secs(90),
            &format!("order {order_id} on Kafka"),
            || async {
                let (_, all) = get(&host, "/api/orders").await;
                all.as_array()?
                    .iter()
                    .find(|o| {
                        o["orderId"] == order_id.as_str() && FINAL.iter().any(|s| o["status"] == *s)
                    })
                    .cloned()
            },
        )
        .await;
        assert_eq!(order["status"], expected_status(card), "{order}");
        assert_eq!(order["total"], "18.79");
    }

    let version = version(&host, "payment");
    let records = kcat_payments(&bootstrap);
    for (order_id, card) in expected {
        let results: Vec<&KcatRecord> = records.iter().filter(|r| r.key == *order_id).collect();
        assert_eq!(
            results.len(),
            1,
            "exactly one result for {order_id} on `payments`"
        );
        let record = results[0];
        let result: Value = serde_json::from_str(&record.value)
            .unwrap_or_else(|_| panic!("result is not JSON: {}", record.value));
        assert_eq!(result["orderId"], order_id.as_str());
        assert_eq!(result["status"], expected_status(card));
        assert!(
            !record.value.contains(card),
            "the card number leaked: {}",
            record.value
        );
        assert_eq!(
            record.headers.get("eventhost-plugin").map(String::as_str),
            Some("payment")
        );
        assert_eq!(
            record.headers.get("eventhost-plugin-version"),
            Some(&version),
            "headers: {:?}",
            record.headers
        );
    }
    host.stop().await;
}
