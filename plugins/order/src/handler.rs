//! Glue between the host and the model: which topic a message came from, state keys, routes.

use sdk::{Delivery, Failure, Host, Request, Response};

use crate::model::{self, OrderRecord, PaymentEffect, PaymentUpdate};

fn order_key(order_id: &str) -> String {
    format!("order:{order_id}")
}

fn payment_key(order_id: &str) -> String {
    format!("payment:{order_id}")
}

/// Handles a message from either topic, told apart by name since both are configurable.
pub fn on_message(host: &mut impl Host, delivery: &Delivery) -> Result<(), Failure> {
    let topic = &delivery.message.topic;
    let value = &delivery.message.value;
    if *topic == host.config_or("orders_topic", "orders") {
        on_order(host, model::parse_order(value).map_err(Failure::Invalid)?)
    } else if *topic == host.config_or("payments_topic", "payments") {
        on_payment(host, model::parse_payment(value).map_err(Failure::Invalid)?)
    } else {
        Err(Failure::invalid(format!("unexpected topic {topic:?}")))
    }
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

/// `GET /api/orders` and `GET /api/orders/{orderId}`.
pub fn on_request(host: &impl Host, req: &Request) -> Result<Response, Failure> {
    if req.method != "GET" {
        return Ok(Response::message(405, "only GET is supported"));
    }
    let segments = req.segments();
    let after = segments
        .iter()
        .position(|s| s == "orders")
        .map(|i| &segments[i + 1..]);
    match after {
        Some([]) => {
            let orders = host
                .scan(&order_key(""))
                .into_iter()
                .map(|(key, value)| {
                    serde_json::from_slice::<OrderRecord>(&value)
                        .map_err(|e| Failure::retry(format!("corrupt state under {key:?}: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Response::json(200, &orders))
        }
        Some([id]) => Ok(match host.get_json::<OrderRecord>(&order_key(id))? {
            Some(order) => Response::json(200, &order),
            None => Response::message(404, &format!("order {id} not found")),
        }),
        _ => Ok(Response::message(
            404,
            &format!("no order route for {}", req.path),
        )),
    }
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

    fn status(host: &FakeHost, id: &str) -> Value {
        let res = on_request(host, &Request::new("GET", &format!("/api/orders/{id}")));
        res.map(|r| r.body_json()["status"].clone())
            .unwrap_or_default()
    }

    #[test]
    fn order_then_payment() {
        let mut host = FakeHost::new();
        assert_eq!(deliver(&mut host, "orders", ORDER), Ok(()));
        assert_eq!(status(&host, "o-1"), "PROCESSING");
        assert_eq!(
            deliver(&mut host, "payments", &payment("COMPLETED")),
            Ok(())
        );
        assert_eq!(status(&host, "o-1"), "COMPLETED");
        // Redelivery of either changes nothing.
        deliver(&mut host, "orders", ORDER).ok();
        deliver(&mut host, "payments", &payment("COMPLETED")).ok();
        assert_eq!(status(&host, "o-1"), "COMPLETED");
        assert_eq!(host.state.len(), 1);
    }

    #[test]
    fn payment_then_order() {
        let mut host = FakeHost::new();
        deliver(&mut host, "payments", &payment("FAILED")).ok();
        assert!(host.get("payment:o-1").is_some());
        let res = on_request(&host, &Request::new("GET", "/api/orders/o-1"));
        assert_eq!(res.map(|r| r.status), Ok(404));

        deliver(&mut host, "orders", ORDER).ok();
        assert_eq!(status(&host, "o-1"), "FAILED");
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
        let res = on_request(&host, &Request::new("GET", "/api/orders"));
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

    #[test]
    fn only_serves_gets() {
        let host = FakeHost::new();
        assert_eq!(
            on_request(&host, &Request::new("POST", "/api/orders")).map(|r| r.status),
            Ok(405)
        );
        assert_eq!(
            on_request(&host, &Request::new("GET", "/api/other")).map(|r| r.status),
            Ok(404)
        );
    }
}
