//! Orders, payment updates and how they combine. `orders` and `payments` are separate topics,
//! so a payment may arrive before its order, and either may be delivered more than once.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use shop_data::{mask_card, money};

pub const PROCESSING: &str = "PROCESSING";

/// An order as the order service stores and serves it (the workshop's `Order`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderRecord {
    pub order_id: String,
    pub name: String,
    pub total: String,
    /// Masked: only the last four digits are kept.
    pub cc_number: String,
    pub cc_exp: String,
    pub billing_address: String,
    pub status: String,
}

/// The part of a payment result the order service needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentUpdate {
    pub order_id: String,
    pub status: String,
}

/// Reads an order event, the checkout form's shape (card details under `creditCard`). Only
/// `orderId` is required; other missing fields stay empty. A new order is `PROCESSING`.
pub fn parse_order(bytes: &[u8]) -> Result<OrderRecord, String> {
    order_from(&parse_object(bytes, "order")?)
}

/// Reads an order posted to the order service: the checkout form's shape or the workshop's
/// `Order` (`ccNumber`, `ccExp`, `status`). A status given in the body is the new order's.
pub fn parse_posted_order(bytes: &[u8]) -> Result<OrderRecord, String> {
    let value = parse_object(bytes, "order")?;
    let mut order = order_from(&value)?;
    if let Some(status) = value.get("status").and_then(Value::as_str)
        && !status.trim().is_empty()
    {
        order.status = status.to_owned();
    }
    Ok(order)
}

fn order_from(order: &Value) -> Result<OrderRecord, String> {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_owned();
    let card = order.get("creditCard");
    let total = match order.get("total") {
        Some(Value::Number(n)) => n.as_f64().and_then(money::from_number).map(money::to_text),
        other => Some(text(other)),
    };
    let card_field = |in_card: &str, flat: &str| {
        text(
            card.and_then(|c| c.get(in_card))
                .or_else(|| order.get(flat)),
        )
    };
    Ok(OrderRecord {
        order_id: order_id(order, "order")?,
        name: text(order.get("name")),
        total: total.unwrap_or_default(),
        cc_number: mask_card(&card_field("number", "ccNumber")),
        cc_exp: card_field("expiration", "ccExp"),
        billing_address: text(order.get("billingAddress")),
        status: PROCESSING.to_owned(),
    })
}

/// Reads a payment event: `orderId` and a `COMPLETED` or `FAILED` status.
pub fn parse_payment(bytes: &[u8]) -> Result<PaymentUpdate, String> {
    let payment = parse_object(bytes, "payment")?;
    let status = payment
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !matches!(status, "COMPLETED" | "FAILED") {
        return Err(format!(
            "payment status must be COMPLETED or FAILED, not {status:?}"
        ));
    }
    Ok(PaymentUpdate {
        order_id: order_id(&payment, "payment")?,
        status: status.to_owned(),
    })
}

fn parse_object(bytes: &[u8], what: &str) -> Result<Value, String> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("{what} is not JSON: {e}"))?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(format!("{what} is not a JSON object"))
    }
}

fn order_id(value: &Value, what: &str) -> Result<String, String> {
    value
        .get("orderId")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| format!("{what} has no orderId string"))
}

/// The order to store when an order event arrives: a payment that came first decides the
/// status, and a redelivered order keeps the status it already has.
pub fn merge_order(
    incoming: OrderRecord,
    existing: Option<&OrderRecord>,
    early_payment: Option<&PaymentUpdate>,
) -> OrderRecord {
    let status = match (early_payment, existing) {
        (Some(payment), _) => payment.status.clone(),
        (None, Some(existing)) => existing.status.clone(),
        (None, None) => incoming.status.clone(),
    };
    OrderRecord { status, ..incoming }
}

/// What a payment event does.
#[derive(Debug, PartialEq, Eq)]
pub enum PaymentEffect {
    /// The order is known: store it with the payment's status.
    Update(OrderRecord),
    /// The order has not arrived yet: keep the payment for it.
    Park(PaymentUpdate),
}

pub fn apply_payment(existing: Option<OrderRecord>, payment: PaymentUpdate) -> PaymentEffect {
    match existing {
        Some(order) => PaymentEffect::Update(OrderRecord {
            status: payment.status,
            ..order
        }),
        None => PaymentEffect::Park(payment),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order_json() -> Value {
        json!({
            "orderId": "o-1",
            "name": "Jane Doe",
            "total": "10.49",
            "creditCard": { "number": "4123987754646678", "expiration": "04/29", "nameOnCard": "Jane G Doe" },
            "billingAddress": "123 Anystreet"
        })
    }

    fn record(status: &str) -> OrderRecord {
        OrderRecord {
            status: status.into(),
            ..parse_order(order_json().to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"))
        }
    }

    fn payment(status: &str) -> PaymentUpdate {
        PaymentUpdate {
            order_id: "o-1".into(),
            status: status.into(),
        }
    }

    #[test]
    fn parses_orders_with_the_card_masked() {
        let record = parse_order(order_json().to_string().as_bytes());
        assert_eq!(
            record,
            Ok(OrderRecord {
                order_id: "o-1".into(),
                name: "Jane Doe".into(),
                total: "10.49".into(),
                cc_number: "************6678".into(),
                cc_exp: "04/29".into(),
                billing_address: "123 Anystreet".into(),
                status: "PROCESSING".into(),
            })
        );
    }

    #[test]
    fn tolerates_missing_details_but_not_a_missing_id() {
        let record = parse_order(br#"{"orderId":"o-2","total":21.4}"#);
        assert_eq!(
            record
                .as_ref()
                .map(|r| (&r.total[..], &r.cc_number[..], &r.name[..])),
            Ok(("21.40", "", ""))
        );
        assert_eq!(
            parse_order(br#"{"total":"1"}"#),
            Err("order has no orderId string".into())
        );
        assert!(parse_order(b"[]").is_err());
        assert!(parse_order(b"\xff").is_err_and(|e| e.starts_with("order is not JSON")));
    }

    #[test]
    fn posted_orders_may_be_the_workshops_order_shape() {
        let posted = json!({
            "orderId": "o-9", "name": "Ada", "total": "5.00", "ccNumber": "4123987754646678",
            "ccExp": "04/29", "billingAddress": "1 Loop St", "status": "COMPLETED"
        });
        assert_eq!(
            parse_posted_order(posted.to_string().as_bytes()),
            Ok(OrderRecord {
                order_id: "o-9".into(),
                name: "Ada".into(),
                total: "5.00".into(),
                cc_number: "************6678".into(),
                cc_exp: "04/29".into(),
                billing_address: "1 Loop St".into(),
                status: "COMPLETED".into(),
            })
        );
        let checkout_form = order_json().to_string();
        assert_eq!(
            parse_posted_order(checkout_form.as_bytes()),
            Ok(record(PROCESSING))
        );
        assert!(parse_posted_order(br#"{"name":"Ada"}"#).is_err());
    }

    #[test]
    fn parses_payments() {
        let p =
            parse_payment(br#"{"orderId":"o-1","paymentId":"1","remarks":"ok","status":"FAILED"}"#);
        assert_eq!(p, Ok(payment("FAILED")));
        assert!(parse_payment(br#"{"orderId":"o-1","status":"MAYBE"}"#).is_err());
        assert!(parse_payment(br#"{"status":"COMPLETED"}"#).is_err());
    }

    #[test]
    fn a_new_order_is_processing() {
        assert_eq!(
            merge_order(record(PROCESSING), None, None).status,
            PROCESSING
        );
    }

    #[test]
    fn a_redelivered_order_keeps_its_final_status() {
        let done = record("COMPLETED");
        assert_eq!(
            merge_order(record(PROCESSING), Some(&done), None).status,
            "COMPLETED"
        );
    }

    #[test]
    fn an_early_payment_decides_the_status() {
        let merged = merge_order(record(PROCESSING), None, Some(&payment("FAILED")));
        assert_eq!(merged, record("FAILED"));
    }

    #[test]
    fn payments_update_known_orders_and_wait_for_unknown_ones() {
        assert_eq!(
            apply_payment(Some(record(PROCESSING)), payment("COMPLETED")),
            PaymentEffect::Update(record("COMPLETED"))
        );
        assert_eq!(
            apply_payment(None, payment("COMPLETED")),
            PaymentEffect::Park(payment("COMPLETED"))
        );
    }
}
