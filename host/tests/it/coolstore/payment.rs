//! The payment service: decisions by card, dead letters, HTTP and CloudEvents, the lab's
//! command, and a redrive after a fix.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_completes_cards_starting_with_4_fails_others_and_never_shows_the_number() {
    let host = TestHost::start(&coolstore()).await;
    let (payments, _stop) = collect(&host.bus(), "payments", "observer");
    let paid = unique("paid");
    let refused = unique("refused");
    buy(&host, "c1", &paid, VALID_CARD).await;
    buy(&host, "c2", &refused, INVALID_CARD).await;

    eventually(WAIT, "both orders to be decided", || async {
        (handled(&host, "payment") == 2 && payments.lock().unwrap().len() == 2).then_some(())
    })
    .await;
    let version = host.version("payment");
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
    let not_an_object = unique("card-text");
    let number_not_text = unique("card-number");
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

    let payment_version = host.version("payment");
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
    let paid = unique("curl");
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

    let refused = unique("curl");
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

    let structured = unique("ce-structured");
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

    let binary = unique("ce-binary");
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
        .body(order_of(&unique("plain")).to_string())
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
        &crate::common::coolstore_static_dir(),
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
    let order_id = unique("redriven");
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
    let fixed = crate::common::test_config(host.dir.path(), &coolstore_with_payment_timeout(0));
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
