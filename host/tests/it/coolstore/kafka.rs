//! The same shop on a real Kafka broker, read back with `kcat`.

use super::*;

/// The coolstore of `eventhost-kafka.toml` on the broker at `bootstrap`, with consumer groups
/// of its own (`coolstore-test-<group>`), so that a shop running on the same broker neither
/// takes its partitions nor handles its orders.
fn coolstore_on_kafka(bootstrap: &str) -> String {
    let mut table = shop_wiring(include_str!(
        "../../../../examples/coolstore/eventhost-kafka.toml"
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
    let bootstrap = crate::common::kafka_bootstrap();
    let shop = coolstore_on_kafka(&bootstrap);
    let _alone = SHOP_ON_KAFKA.lock().await;
    let host = TestHost::start(&with_payment_timeout(&shop, 2000)).await;
    let order_id = unique("kafka-redriven");
    buy(&host, &format!("cart-{order_id}"), &order_id, VALID_CARD).await;
    eventually(
        Duration::from_secs(90),
        "the order to be dead-lettered",
        || async { (dead_letters(&host, "payment", "orders").await >= 1).then_some(()) },
    )
    .await;
    let (_, order) = get(&host, &format!("/api/orders/{order_id}")).await;
    assert_eq!(order["status"], "PROCESSING", "{order}");

    let fixed = crate::common::test_config(host.dir.path(), &with_payment_timeout(&shop, 0));
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
    let bootstrap = crate::common::kafka_bootstrap();
    let first = bootstrap.split(',').next().unwrap_or_default();
    assert!(
        std::net::TcpStream::connect(first).is_ok(),
        "no Kafka broker at {bootstrap}: start one with `bash scripts/kafka start`"
    );
    let _alone = SHOP_ON_KAFKA.lock().await;
    let host = TestHost::start(&coolstore_on_kafka(&bootstrap)).await;
    let paid = unique("kafka-paid");
    let refused = unique("kafka-refused");
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

    let version = host.version("payment");
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
