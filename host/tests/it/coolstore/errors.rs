//! Error answers of the host and of the plugins: JSON with a message and a status.

use super::*;

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
    let order_id = unique("order");
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
