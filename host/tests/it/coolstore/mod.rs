//! The coolstore of the workshop's lab 2 ("Creating Event-Driven/Reactive Services"), run on the
//! real compiled plugins (catalog, cart, payment, order) with the wiring of
//! `examples/coolstore/eventhost.toml`, and checked the way a shopper and an operator would:
//! through HTTP, and by watching the `orders` and `payments` topics. One module per service;
//! every test runs on the embedded bus except those of `kafka`, which run the same shop on a
//! real Kafka broker and read `payments` with `kcat`. The helpers below are shared by them.

mod cart;
mod catalog;
mod checkout;
mod errors;
mod kafka;
mod order;
mod payment;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{TestHost, collect, eventually, header, shop_wiring, unique, value_json};
use eventhost::bus::Record;
use eventhost::runtime::OutMessage;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);
/// Starts with 4: the workshop's payment service accepts it.
const VALID_CARD: &str = "4123987754646678";
/// Any other first digit fails.
const INVALID_CARD: &str = "5555555555554444";
const FINAL: [&str; 2] = ["COMPLETED", "FAILED"];
/// The workshop's catalog: (itemId, name, price in cents).
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

// ---- configuration -------------------------------------------------------------------------

/// The shop's wiring, without the tables `TestHost` adds itself.
fn coolstore_table() -> toml::Table {
    shop_wiring(include_str!(
        "../../../../examples/coolstore/eventhost.toml"
    ))
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
    let marker = unique("marker");
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
    let marker = unique("marker");
    let (dead, stop) = collect(&host.bus(), &format!("{topic}.dlq"), &unique("sync"));
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
