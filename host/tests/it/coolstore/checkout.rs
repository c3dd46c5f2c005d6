//! Checkout: one order published per cart, its trace followed to the payment result and
//! exported over OTLP, bad orders refused, and carts kept across a restart.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_publishes_exactly_one_order_with_the_cart_total_and_empties_the_cart() {
    let host = TestHost::start(&coolstore()).await;
    let (orders, _stop) = collect(&host.bus(), "orders", "observer");
    add(&host, "c1", "329299", 1).await;
    let before = add(&host, "c1", "165613", 2).await;
    let total = totals(&before).4;
    assert_eq!(total, 18_79);

    let order_id = unique("order");
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
        Some(host.version("cart"))
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
    let order_id = unique("order");
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
    let order_id = unique("order");
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
    let unreadable = unique("unreadable");
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
        .map(|plugin| (plugin, host.version(plugin)))
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
    let order_id = unique("order");

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
    let order_id = unique("order");
    let (status, body) = checkout(&host, "keep", &order(&order_id, VALID_CARD)).await;
    assert_eq!(status, 200, "{body}");
    let order = final_order(&host, &order_id).await;
    assert_eq!(
        (order["status"].as_str(), order["total"].as_str()),
        (Some("COMPLETED"), Some("32.99"))
    );
}
