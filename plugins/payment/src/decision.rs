//! The payment decision: a pure function of the order and the rules, so a redelivered order
//! gets the very same result.

use serde::Serialize;
use serde_json::Value;
use shop_data::{mask_card, money};

/// Rules from the plugin's config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    /// Orders above this total (cents) fail.
    pub max_total: Option<i64>,
    /// A label for the rule set, reported in every result.
    pub version: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Completed,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
        }
    }
}

/// The workshop's payment event, plus the rule set that decided it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentResult {
    pub order_id: String,
    pub payment_id: String,
    pub remarks: String,
    pub status: Status,
    pub rules: String,
    /// The masked card number, for the log only.
    #[serde(skip)]
    pub masked_card: Option<String>,
}

/// The card as shown in remarks: the workshop prints the card JSON, but never the full number.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MaskedCard<'a> {
    number: &'a str,
    expiration: &'a Value,
    name_on_card: &'a Value,
}

/// Decides the payment of `order` (JSON). Input that is not an order with an `orderId` is an
/// error: there is nobody to send a result to. Anything else wrong gives a `FAILED` result.
pub fn decide(order: &[u8], rules: &Rules) -> Result<PaymentResult, String> {
    let order: Value =
        serde_json::from_slice(order).map_err(|e| format!("order is not JSON: {e}"))?;
    let order_id = order
        .get("orderId")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or("order has no orderId string")?;

    let verdict = check(&order, rules);
    Ok(PaymentResult {
        order_id: order_id.to_owned(),
        payment_id: payment_id(order_id),
        remarks: verdict.remarks,
        status: verdict.status,
        rules: rules.version.clone(),
        masked_card: verdict.masked_card,
    })
}

struct Verdict {
    status: Status,
    remarks: String,
    masked_card: Option<String>,
}

impl Verdict {
    fn failed(remarks: impl Into<String>, masked_card: Option<&str>) -> Self {
        let masked_card = masked_card.map(str::to_owned);
        Self {
            status: Status::Failed,
            remarks: remarks.into(),
            masked_card,
        }
    }
}

/// The workshop's checks (a card number starting with 4 pays), then the configured rules.
fn check(order: &Value, rules: &Rules) -> Verdict {
    let card = match order.get("creditCard") {
        None | Some(Value::Null) => return Verdict::failed("Missing credit card details", None),
        Some(card) if !card.is_object() => {
            return Verdict::failed("Credit card details are not an object", None);
        }
        Some(card) => card,
    };
    let number = card
        .get("number")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if number.is_empty() {
        return Verdict::failed("Credit card has no number", None);
    }
    let masked = mask_card(number);
    if !number.starts_with('4') {
        return Verdict::failed(format!("Invalid Credit Card: {masked}"), Some(&masked));
    }
    let total = order.get("total").unwrap_or(&Value::Null);
    let Some(cents) = total_cents(total) else {
        return Verdict::failed(format!("Invalid total: {total}"), Some(&masked));
    };
    if let Some(max) = rules.max_total.filter(|&max| cents > max) {
        let (max, total) = (money::to_text(max), money::to_text(cents));
        let remarks = format!("Rule max_total ({max}) exceeded: total {total}");
        return Verdict::failed(remarks, Some(&masked));
    }
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
    let total = money::to_text(cents);
    Verdict {
        status: Status::Completed,
        remarks: format!("Payment of {total} succeeded for {name} CC details: {shown}"),
        masked_card: Some(masked),
    }
}

/// A total given as a string (`"21.45"`, as the cart sends it) or as a number.
fn total_cents(total: &Value) -> Option<i64> {
    match total {
        Value::String(s) => money::parse(s),
        Value::Number(n) => n.as_f64().and_then(money::from_number),
        _ => None,
    }
}

/// A payment id below 100000 derived from the order id (FNV-1a), so redelivery repeats it.
fn payment_id(order_id: &str) -> String {
    let hash = order_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % 100_000).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v1() -> Rules {
        Rules {
            max_total: None,
            version: "v1".into(),
        }
    }

    fn order() -> Value {
        json!({
            "orderId": "12321",
            "total": "232.23",
            "creditCard": { "number": "4232454678667866", "expiration": "04/22", "nameOnCard": "Jane G Doe" },
            "billingAddress": "123 Anystreet, Pueblo, CO 32213",
            "name": "Jane Doe"
        })
    }

    fn decide_json(order: &Value, rules: &Rules) -> PaymentResult {
        decide(order.to_string().as_bytes(), rules).unwrap_or_else(|e| panic!("not decided: {e}"))
    }

    #[test]
    fn a_visa_card_pays_and_is_masked() {
        let result = decide_json(&order(), &v1());
        assert_eq!(result.status, Status::Completed);
        assert_eq!(
            result.remarks,
            r#"Payment of 232.23 succeeded for Jane Doe CC details: {"number":"************7866","expiration":"04/22","nameOnCard":"Jane G Doe"}"#
        );
        assert_eq!(result.masked_card.as_deref(), Some("************7866"));
        let json = serde_json::to_value(&result).unwrap_or_default();
        assert_eq!(json["status"], "COMPLETED");
        assert_eq!(json["rules"], "v1");
        assert!(!json.to_string().contains("4232454678667866"));
        assert!(json.get("maskedCard").is_none());
    }

    #[test]
    fn other_cards_fail_without_showing_the_number() {
        let mut order = order();
        order["creditCard"]["number"] = json!("5123987754646678");
        let result = decide_json(&order, &v1());
        assert_eq!(result.status, Status::Failed);
        assert_eq!(result.remarks, "Invalid Credit Card: ************6678");
    }

    #[test]
    fn broken_card_details_fail_with_a_reason() {
        let cases = [
            (json!(null), "Missing credit card details"),
            (
                json!("4232454678667866"),
                "Credit card details are not an object",
            ),
            (
                json!({ "expiration": "04/22" }),
                "Credit card has no number",
            ),
            (
                json!({ "number": 4232454678667866_u64 }),
                "Credit card has no number",
            ),
        ];
        for (card, remarks) in cases {
            let mut order = order();
            order["creditCard"] = card;
            let result = decide_json(&order, &v1());
            assert_eq!(
                (result.status, result.remarks.as_str()),
                (Status::Failed, remarks)
            );
        }
        let mut order = order();
        order.as_object_mut().map(|o| o.remove("creditCard"));
        assert_eq!(
            decide_json(&order, &v1()).remarks,
            "Missing credit card details"
        );
    }

    #[test]
    fn totals_may_be_numbers_but_must_be_amounts() {
        let mut order = order();
        order["total"] = json!(21.4);
        assert!(
            decide_json(&order, &v1())
                .remarks
                .starts_with("Payment of 21.40 succeeded")
        );
        order["total"] = json!("lots");
        let result = decide_json(&order, &v1());
        assert_eq!(
            (result.status, result.remarks.as_str()),
            (Status::Failed, r#"Invalid total: "lots""#)
        );
    }

    #[test]
    fn max_total_rule_fails_large_orders() {
        let rules = Rules {
            max_total: Some(100_00),
            version: "strict-2".into(),
        };
        let mut order = order();
        order["total"] = json!("120.00");
        let result = decide_json(&order, &rules);
        assert_eq!(result.status, Status::Failed);
        assert_eq!(
            result.remarks,
            "Rule max_total (100.00) exceeded: total 120.00"
        );
        assert_eq!(result.rules, "strict-2");
        order["total"] = json!("100.00");
        assert_eq!(decide_json(&order, &rules).status, Status::Completed);
    }

    #[test]
    fn payment_id_is_stable_per_order() {
        let a = decide_json(&order(), &v1());
        assert_eq!(a, decide_json(&order(), &v1()));
        assert!(a.payment_id.parse::<u32>().is_ok_and(|id| id < 100_000));
        let mut other = order();
        other["orderId"] = json!("12322");
        assert_ne!(decide_json(&other, &v1()).payment_id, a.payment_id);
    }

    #[test]
    fn input_without_an_order_id_is_rejected() {
        assert!(decide(b"{not json", &v1()).is_err_and(|e| e.starts_with("order is not JSON")));
        for bad in [
            json!({}),
            json!({ "orderId": 12321 }),
            json!({ "orderId": "" }),
            json!([1]),
        ] {
            assert_eq!(
                decide(bad.to_string().as_bytes(), &v1()),
                Err("order has no orderId string".into())
            );
        }
    }
}
