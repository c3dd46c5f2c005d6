//! Glue between the host and the model: which topic a message came from, state keys, routes.

use sdk::{Delivery, Failure, Host, Request, Response};

use crate::model::{self, OrderRecord, PaymentEffect, PaymentUpdate};

fn order_key(order_id: &str) -> String {
    format!("order:{order_id}")
}

fn payment_key(order_id: &str) -> String {
    format!("payment:{order_id}")
}

/// The host's id of a message: a message published again (at-least-once) carries the same.
const MESSAGE_ID_HEADER: &str = "eventhost-id";

/// Where the id of the last message applied to an order from one topic is kept.
fn applied_key(kind: &str, order_id: &str) -> String {
    format!("applied:{kind}:{order_id}")
}

/// Handles a message from either topic, told apart by name since both are configurable.
pub fn on_message(host: &mut impl Host, delivery: &Delivery) -> Result<(), Failure> {
    let topic = &delivery.message.topic;
    let value = &delivery.message.value;
    if *topic == host.config_or("orders_topic", "orders") {
        let order = model::parse_order(value).map_err(Failure::Invalid)?;
        if first_time(host, delivery, "order", &order.order_id) {
            on_order(host, order)?;
        }
        Ok(())
    } else if *topic == host.config_or("payments_topic", "payments") {
        let payment = model::parse_payment(value).map_err(Failure::Invalid)?;
        if first_time(host, delivery, "payment", &payment.order_id) {
            on_payment(host, payment)?;
        }
        Ok(())
    } else {
        Err(Failure::invalid(format!("unexpected topic {topic:?}")))
    }
}

/// False for a copy of the last message of this kind applied to the order (same
/// `eventhost-id`): messages caused by HTTP requests are published at least once, and a copy
/// applied again could undo a later change (a status set by hand). One id per order and kind
/// is kept, so state grows with orders, not with messages.
fn first_time(host: &mut impl Host, delivery: &Delivery, kind: &str, order_id: &str) -> bool {
    let headers = &delivery.message.headers;
    let Some((_, id)) = headers.iter().find(|(name, _)| name == MESSAGE_ID_HEADER) else {
        return true;
    };
    let key = applied_key(kind, order_id);
    if host.get(&key).as_ref() == Some(id) {
        return false;
    }
    // Staged with the order's own writes: both commit, or neither.
    host.set(&key, id).is_ok()
}

fn on_order(host: &mut impl Host, incoming: OrderRecord) -> Result<(), Failure> {
    let id = incoming.order_id.clone();
    let existing: Option<OrderRecord> = host.get_json(&order_key(&id))?;
    let early_payment: Option<PaymentUpdate> = host.get_json(&payment_key(&id))?;
    let order = model::merge_order(incoming, existing.as_ref(), early_payment.as_ref());
    host.set_json(&order_key(&id), &order)?;
    if early_payment.is_some() {
        host.delete(&payment_key(&id));
    }
    Ok(())
}

fn on_payment(host: &mut impl Host, payment: PaymentUpdate) -> Result<(), Failure> {
    let existing = host.get_json(&order_key(&payment.order_id))?;
    match model::apply_payment(existing, payment) {
        PaymentEffect::Update(order) => host.set_json(&order_key(&order.order_id), &order),
        PaymentEffect::Park(payment) => host.set_json(&payment_key(&payment.order_id), &payment),
    }
}

/// The workshop's order service API:
/// - `GET /api/orders`: every order
/// - `POST /api/orders`: stores the order in the body (as if it came from `orders`: posting
///   it again keeps its status), answers every order
/// - `GET /api/orders/{orderId}`: one order
/// - `GET /api/orders/{orderId}/{status}`: sets the order's status, answers the order
pub fn on_request(host: &mut impl Host, req: &Request) -> Result<Response, Failure> {
    let segments = req.segments();
    let after = segments
        .iter()
        .position(|s| s == "orders")
        .map(|i| &segments[i + 1..]);
    match (req.method.as_str(), after) {
        ("GET", Some([])) => Ok(Response::json(200, &all_orders(host)?)),
        ("POST", Some([])) => {
            let order = match model::parse_posted_order(&req.body) {
                Ok(order) => order,
                Err(msg) => return Ok(Response::message(400, &msg)),
            };
            on_order(host, order)?;
            Ok(Response::json(200, &all_orders(host)?))
        }
        ("GET", Some([id])) => Ok(match host.get_json::<OrderRecord>(&order_key(id))? {
            Some(order) => Response::json(200, &order),
            None => not_found(id),
        }),
        ("GET", Some([id, status])) => {
            let Some(order) = host.get_json::<OrderRecord>(&order_key(id))? else {
                return Ok(not_found(id));
            };
            let order = OrderRecord {
                status: status.clone(),
                ..order
            };
            host.set_json(&order_key(id), &order)?;
            Ok(Response::json(200, &order))
        }
        (method, Some(_)) => Ok(Response::message(
            405,
            &format!("{method} is not supported on {}", req.path),
        )),
        (_, None) => Ok(Response::message(
            404,
            &format!("no order route for {}", req.path),
        )),
    }
}

fn all_orders(host: &impl Host) -> Result<Vec<OrderRecord>, Failure> {
    host.scan(&order_key(""))
        .into_iter()
        .map(|(key, value)| {
            serde_json::from_slice::<OrderRecord>(&value)
                .map_err(|e| Failure::retry(format!("corrupt state under {key:?}: {e}")))
        })
        .collect()
}

fn not_found(order_id: &str) -> Response {
    Response::message(404, &format!("order {order_id} not found"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdk::Message;
    use sdk::fake::FakeHost;
    use serde_json::{Value, json};

    const ORDER: &str = r#"{"orderId":"o-1","name":"Jane Doe","total":"10.49","billingAddress":"1 Road",
        "creditCard":{"number":"4123987754646678","expiration":"04/29","nameOnCard":"Jane G Doe"}}"#;

    fn deliver(host: &mut FakeHost, topic: &str, value: &str) -> Result<(), Failure> {
        let message = Message {
            topic: topic.into(),
            value: value.into(),
            ..Message::default()
        };
        on_message(
            host,
            &Delivery {
                message,
                attempt: 1,
                ..Delivery::default()
            },
        )
    }

    fn payment(status: &str) -> String {
        json!({ "orderId": "o-1", "paymentId": "123", "remarks": "", "status": status }).to_string()
    }

    fn status(host: &mut FakeHost, id: &str) -> Value {
        let res = on_request(host, &Request::new("GET", &format!("/api/orders/{id}")));
        res.map(|r| r.body_json()["status"].clone())
            .unwrap_or_default()
    }

    #[test]
    fn order_then_payment() {
        let mut host = FakeHost::new();
        assert_eq!(deliver(&mut host, "orders", ORDER), Ok(()));
        assert_eq!(status(&mut host, "o-1"), "PROCESSING");
        assert_eq!(
            deliver(&mut host, "payments", &payment("COMPLETED")),
            Ok(())
        );
        assert_eq!(status(&mut host, "o-1"), "COMPLETED");
        // Redelivery of either changes nothing.
        deliver(&mut host, "orders", ORDER).ok();
        deliver(&mut host, "payments", &payment("COMPLETED")).ok();
        assert_eq!(status(&mut host, "o-1"), "COMPLETED");
        assert_eq!(host.state.len(), 1);
    }

    #[test]
    fn a_copy_of_a_message_is_dropped_by_its_id() {
        let mut host = FakeHost::new();
        assert_eq!(deliver(&mut host, "orders", ORDER), Ok(()));
        let paid = |id: &str| Message {
            topic: "payments".into(),
            value: payment("COMPLETED").into_bytes(),
            headers: vec![(MESSAGE_ID_HEADER.into(), id.as_bytes().to_vec())],
            ..Message::default()
        };
        let delivery = |message| Delivery {
            message,
            attempt: 1,
            ..Delivery::default()
        };
        assert_eq!(
            on_message(&mut host, &delivery(paid("orders/0/7#0"))),
            Ok(())
        );
        assert_eq!(status(&mut host, "o-1"), "COMPLETED");
        let shipped = on_request(&mut host, &Request::new("GET", "/api/orders/o-1/SHIPPED"));
        assert_eq!(shipped.map(|r| r.status), Ok(200));
        assert_eq!(
            on_message(&mut host, &delivery(paid("orders/0/7#0"))),
            Ok(())
        );
        assert_eq!(status(&mut host, "o-1"), "SHIPPED", "the copy was dropped");
        assert_eq!(
            on_message(&mut host, &delivery(paid("orders/0/9#0"))),
            Ok(())
        );
        assert_eq!(
            status(&mut host, "o-1"),
            "COMPLETED",
            "a new message applies"
        );
    }

    #[test]
    fn payment_then_order() {
        let mut host = FakeHost::new();
        deliver(&mut host, "payments", &payment("FAILED")).ok();
        assert!(host.get("payment:o-1").is_some());
        let res = on_request(&mut host, &Request::new("GET", "/api/orders/o-1"));
        assert_eq!(res.map(|r| r.status), Ok(404));

        deliver(&mut host, "orders", ORDER).ok();
        assert_eq!(status(&mut host, "o-1"), "FAILED");
        assert!(
            host.get("payment:o-1").is_none(),
            "the parked payment is used up"
        );
    }

    #[test]
    fn lists_orders_with_masked_cards() {
        let mut host = FakeHost::new().with_config("orders_topic", "shop.orders");
        deliver(&mut host, "shop.orders", ORDER).ok();
        deliver(&mut host, "shop.orders", &ORDER.replace("o-1", "o-2")).ok();
        let res = on_request(&mut host, &Request::new("GET", "/api/orders"));
        let list = res.map(|r| r.body_json()).unwrap_or_default();
        assert_eq!(list.as_array().map(Vec::len), Some(2));
        assert_eq!(
            list[0],
            json!({
                "orderId": "o-1", "name": "Jane Doe", "total": "10.49", "ccNumber": "************6678",
                "ccExp": "04/29", "billingAddress": "1 Road", "status": "PROCESSING"
            })
        );
        assert_eq!(list[1]["orderId"], "o-2");
    }

    #[test]
    fn rejects_bad_messages() {
        let mut host = FakeHost::new();
        assert!(matches!(
            deliver(&mut host, "orders", "{oops"),
            Err(Failure::Invalid(_))
        ));
        assert!(matches!(
            deliver(&mut host, "payments", "{}"),
            Err(Failure::Invalid(_))
        ));
        assert!(matches!(
            deliver(&mut host, "elsewhere", ORDER),
            Err(Failure::Invalid(_))
        ));
        assert!(host.state.is_empty());
    }

    fn call(host: &mut FakeHost, method: &str, path: &str, body: &str) -> (u16, Value) {
        let res = on_request(host, &Request::new(method, path).with_body(body))
            .unwrap_or_else(|f| panic!("{method} {path} failed: {f:?}"));
        (res.status, res.body_json())
    }

    #[test]
    fn posted_orders_are_stored_once_and_answered_with_the_list() {
        let mut host = FakeHost::new();
        let (code, list) = call(&mut host, "POST", "/api/orders", ORDER);
        assert_eq!(code, 200, "{list}");
        assert_eq!(list.as_array().map(Vec::len), Some(1));
        assert_eq!(list[0]["orderId"], "o-1");
        assert_eq!(list[0]["status"], "PROCESSING");
        assert_eq!(list[0]["ccNumber"], "************6678");

        // Posted again, or after its payment: still one order, and the status stays.
        deliver(&mut host, "payments", &payment("COMPLETED")).ok();
        let (code, list) = call(&mut host, "POST", "/api/orders", ORDER);
        assert_eq!(code, 200);
        assert_eq!(list.as_array().map(Vec::len), Some(1));
        assert_eq!(list[0]["status"], "COMPLETED");

        let (code, list) = call(
            &mut host,
            "POST",
            "/api/orders",
            &ORDER.replace("o-1", "o-2"),
        );
        assert_eq!(code, 200);
        assert_eq!(list.as_array().map(Vec::len), Some(2));
        assert!(host.sent.is_empty(), "storing an order publishes nothing");
    }

    #[test]
    fn posted_orders_may_decide_the_status_of_a_new_order() {
        let mut host = FakeHost::new();
        let posted = json!({ "orderId": "o-3", "name": "Ada", "status": "FAILED" }).to_string();
        call(&mut host, "POST", "/api/orders", &posted);
        assert_eq!(status(&mut host, "o-3"), "FAILED");
    }

    #[test]
    fn bad_posted_orders_are_400_and_store_nothing() {
        let mut host = FakeHost::new();
        for body in ["{oops", "[]", r#"{"name":"Ada"}"#] {
            let (code, error) = call(&mut host, "POST", "/api/orders", body);
            assert_eq!(code, 400, "{body}: {error}");
            assert_eq!(error["status"], 400);
        }
        assert!(host.state.is_empty());
    }

    #[test]
    fn the_status_route_changes_the_order() {
        let mut host = FakeHost::new();
        deliver(&mut host, "orders", ORDER).ok();
        let (code, order) = call(&mut host, "GET", "/api/orders/o-1/COMPLETED", "");
        assert_eq!(code, 200, "{order}");
        assert_eq!(order["status"], "COMPLETED");
        assert_eq!(order["orderId"], "o-1");
        assert_eq!(status(&mut host, "o-1"), "COMPLETED");
        // Asked twice, the same.
        let (_, again) = call(&mut host, "GET", "/api/orders/o-1/COMPLETED", "");
        assert_eq!(again, order);

        let (code, error) = call(&mut host, "GET", "/api/orders/nope/COMPLETED", "");
        assert_eq!(
            (code, error),
            (
                404,
                json!({ "message": "order nope not found", "status": 404 })
            )
        );
        assert_eq!(host.state.len(), 1, "an unknown order is not created");
    }

    #[test]
    fn other_methods_and_paths_are_refused() {
        let mut host = FakeHost::new();
        assert_eq!(call(&mut host, "DELETE", "/api/orders", "").0, 405);
        assert_eq!(call(&mut host, "POST", "/api/orders/o-1", "").0, 405);
        assert_eq!(call(&mut host, "GET", "/api/other", "").0, 404);
    }
}
