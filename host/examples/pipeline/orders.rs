//! The workshop's orders, as the cart publishes them, and the payment plugin's decision written
//! natively: the same JSON parse, the same rules (rules v1, no configured cap) and the same
//! result serialization as `plugins/payment/src/decision.rs`. The benchmark checks that both
//! sides publish byte-identical results, so the comparison stays honest if either changes.

use serde::Serialize;
use serde_json::Value;

/// An order as the cart publishes it on `orders` (`plugins/cart/src/order.rs`), keyed by its id.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Order<'a> {
    order_id: &'a str,
    name: &'a str,
    total: String,
    credit_card: CreditCard<'a>,
    billing_address: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreditCard<'a> {
    number: &'a str,
    expiration: &'a str,
    name_on_card: &'a str,
}

const CUSTOMERS: [(&str, &str); 4] = [
    ("Jane Doe", "123 Anystreet, Pueblo, CO 32213"),
    ("Ada Lovelace", "12 Analytical Engine Row, London"),
    ("Grace Hopper", "1 Compiler Court, Arlington, VA 22201"),
    ("Alan Turing", "7 Bletchley Lane, Milton Keynes MK3 6EB"),
];

/// The `n`th order of a run: its id (also its key) and its JSON. One in eight is paid with a card
/// the workshop's rule refuses, so both branches of the decision are exercised.
pub fn order(run: &str, n: usize) -> (String, Vec<u8>) {
    let id = format!("{run}-{n:06}");
    let (name, address) = CUSTOMERS[n % CUSTOMERS.len()];
    let number = if n % 8 == 7 {
        "5123987754646678"
    } else {
        "4123987754646678"
    };
    let cents = 995 + (n * 137) % 25_000;
    let order = Order {
        order_id: &id,
        name,
        total: format!("{}.{:02}", cents / 100, cents % 100),
        credit_card: CreditCard {
            number,
            expiration: "04/29",
            name_on_card: name,
        },
        billing_address: address,
    };
    let json = serde_json::to_vec(&order).expect("an order serializes");
    (id, json)
}

/// The payment result, serialized as the plugin does: `{orderId, paymentId, remarks, status,
/// rules}`. `None` for input that is not an order with an `orderId` (the plugin fails it as
/// invalid and publishes nothing).
pub fn decide(order: &[u8]) -> Option<Vec<u8>> {
    let order: Value = serde_json::from_slice(order).ok()?;
    let order_id = order
        .get("orderId")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())?;
    let (status, remarks) = check(&order);
    let result = PaymentResult {
        order_id,
        payment_id: payment_id(order_id),
        remarks,
        status,
        rules: "v1",
    };
    serde_json::to_vec(&result).ok()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PaymentResult<'a> {
    order_id: &'a str,
    payment_id: String,
    remarks: String,
    status: &'static str,
    rules: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MaskedCard<'a> {
    number: &'a str,
    expiration: &'a Value,
    name_on_card: &'a Value,
}

const FAILED: &str = "FAILED";

/// The workshop's card check: a card number starting with 4 pays.
fn check(order: &Value) -> (&'static str, String) {
    let card = match order.get("creditCard") {
        None | Some(Value::Null) => return (FAILED, "Missing credit card details".into()),
        Some(card) if !card.is_object() => {
            return (FAILED, "Credit card details are not an object".into());
        }
        Some(card) => card,
    };
    let number = card
        .get("number")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if number.is_empty() {
        return (FAILED, "Credit card has no number".into());
    }
    let masked = mask_card(number);
    if !number.starts_with('4') {
        return (FAILED, format!("Invalid Credit Card: {masked}"));
    }
    let total = order.get("total").unwrap_or(&Value::Null);
    let Some(cents) = total_cents(total) else {
        return (FAILED, format!("Invalid total: {total}"));
    };
    let null = Value::Null;
    let shown = MaskedCard {
        number: &masked,
        expiration: card.get("expiration").unwrap_or(&null),
        name_on_card: card.get("nameOnCard").unwrap_or(&null),
    };
    let shown = serde_json::to_string(&shown).unwrap_or_default();
    let name = order
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("unknown customer");
    let total = format!("{}.{:02}", cents / 100, cents % 100);
    let remarks = format!("Payment of {total} succeeded for {name} CC details: {shown}");
    ("COMPLETED", remarks)
}

fn mask_card(number: &str) -> String {
    let len = number.chars().count();
    let keep = if len > 4 { 4 } else { 0 };
    number
        .chars()
        .enumerate()
        .map(|(i, c)| if i < len - keep { '*' } else { c })
        .collect()
}

/// A total given as a string with at most two decimals, or as a non-negative number, in cents.
fn total_cents(total: &Value) -> Option<i64> {
    match total {
        Value::String(text) => parse_amount(text),
        Value::Number(n) => {
            let value = n.as_f64()?;
            let cents = (value * 100.0).round();
            (value.is_finite() && value >= 0.0 && cents < i64::MAX as f64).then_some(cents as i64)
        }
        _ => None,
    }
}

fn parse_amount(text: &str) -> Option<i64> {
    let text = text.trim();
    let (whole, frac) = match text.split_once('.') {
        Some((_, "")) => return None,
        Some(parts) => parts,
        None => (text, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || frac.len() > 2 || !digits(frac) {
        return None;
    }
    let frac_cents: i64 = format!("{frac:0<2}").parse().ok()?;
    whole
        .parse::<i64>()
        .ok()?
        .checked_mul(100)?
        .checked_add(frac_cents)
}

/// A payment id below 100000 derived from the order id (FNV-1a), as the plugin derives it.
fn payment_id(order_id: &str) -> String {
    let hash = order_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % 100_000).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decides_the_workshops_example_as_the_plugin_does() {
        let order = br#"{"orderId":"12321","total":"232.23","creditCard":{"number":"4232454678667866","expiration":"04/22","nameOnCard":"Jane G Doe"},"billingAddress":"123 Anystreet, Pueblo, CO 32213","name":"Jane Doe"}"#;
        let result: Value = serde_json::from_slice(&decide(order).unwrap()).unwrap();
        assert_eq!(
            result["remarks"],
            r#"Payment of 232.23 succeeded for Jane Doe CC details: {"number":"************7866","expiration":"04/22","nameOnCard":"Jane G Doe"}"#
        );
        assert_eq!(result["status"], "COMPLETED");
    }

    #[test]
    fn every_eighth_order_is_refused() {
        let (_, order) = order("t", 7);
        let result: Value = serde_json::from_slice(&decide(&order).unwrap()).unwrap();
        assert_eq!(result["remarks"], "Invalid Credit Card: ************6678");
    }
}
