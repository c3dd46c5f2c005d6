//! The order a checkout publishes: the workshop's `Order`, read from the request body.

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub order_id: String,
    pub name: String,
    /// The cart's total with two decimals, e.g. `"10.49"`: a string, because the payment
    /// service of the workshop reads it with `getString("total")`.
    pub total: String,
    pub credit_card: CreditCard,
    pub billing_address: String,
}

#[derive(Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreditCard {
    pub number: String,
    pub expiration: String,
    pub name_on_card: String,
}

/// Reads the order from a checkout body. The client's `total`, if any, is ignored: the cart
/// sets it. The error says what to fix.
pub fn parse(body: &[u8]) -> Result<Order, String> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the body must be the order as JSON: {e}"))?;
    if !value.is_object() {
        return Err("the body must be a JSON object".into());
    }
    Ok(Order {
        order_id: field(&value, &["orderId"])?,
        name: field(&value, &["name"])?,
        total: String::new(),
        credit_card: CreditCard {
            number: field(&value, &["creditCard", "number"])?,
            expiration: field(&value, &["creditCard", "expiration"])?,
            name_on_card: field(&value, &["creditCard", "nameOnCard"])?,
        },
        billing_address: field(&value, &["billingAddress"])?,
    })
}

/// The non-empty string at `path`.
fn field(value: &Value, path: &[&str]) -> Result<String, String> {
    path.iter()
        .try_fold(value, |v, key| v.get(key))
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned)
        .ok_or_else(|| format!("missing or empty field: {}", path.join(".")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({
            "orderId": "o-1",
            "total": "999.99",
            "creditCard": { "number": "4123987754646678", "expiration": "04/29", "nameOnCard": "Jane G Doe" },
            "billingAddress": "123 Anystreet, Pueblo, CO 32213",
            "name": "Jane Doe"
        })
    }

    #[test]
    fn reads_a_complete_order() {
        let order = parse(sample().to_string().as_bytes());
        let order = order.as_ref().map(|o| {
            (
                &o.order_id[..],
                &o.credit_card.name_on_card[..],
                &o.total[..],
            )
        });
        assert_eq!(order, Ok(("o-1", "Jane G Doe", "")));
    }

    #[test]
    fn names_the_missing_field() {
        let mut order = sample();
        order["creditCard"]["number"] = json!("  ");
        assert_eq!(
            parse(order.to_string().as_bytes()),
            Err("missing or empty field: creditCard.number".into())
        );
        let mut order = sample();
        order["name"] = json!(42);
        assert_eq!(
            parse(order.to_string().as_bytes()),
            Err("missing or empty field: name".into())
        );
        let mut order = sample();
        order["creditCard"] = json!("4123");
        assert!(
            parse(order.to_string().as_bytes()).is_err_and(|e| e.ends_with("creditCard.number"))
        );
    }

    #[test]
    fn rejects_non_objects() {
        assert!(
            parse(b"not json").is_err_and(|e| e.starts_with("the body must be the order as JSON"))
        );
        assert_eq!(parse(b"[1]"), Err("the body must be a JSON object".into()));
    }
}
