//! The order service: posted orders, statuses decided by payments in any order, redelivery,
//! and many concurrent checkouts.

use super::*;

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
    let paid = unique("paid");
    let refused = unique("refused");
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
        let order_id = unique("early");
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
        let order_id = unique("again");
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
                let order_id = unique(&format!("busy-{c}-{n}"));
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
