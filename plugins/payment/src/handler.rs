//! Glue between the host and the decision: config, the fake processing delay, logging and
//! publishing.

use std::time::Duration;

use sdk::{Failure, Host, Level, Message, Request, Response};
use shop_data::money;

use crate::decision::{self, PaymentResult, Rules};

/// Handles an order from the bus.
pub fn on_order(host: &mut impl Host, order: &[u8]) -> Result<(), Failure> {
    pay(host, order).map(drop)
}

/// A `POST` to any of the plugin's routes (e.g. `/api/payment`, or `/` as the lab calls the
/// payment service): the same as a message, answered with the result.
pub fn on_request(host: &mut impl Host, req: &Request) -> Result<Response, Failure> {
    if req.method != "POST" {
        return Ok(Response::message(405, "POST an order to pay for it"));
    }
    match pay(host, &req.body) {
        Ok(result) => Ok(Response::json(200, &result)),
        Err(Failure::Invalid(msg)) => Ok(Response::message(400, &msg)),
        Err(failure) => Err(failure),
    }
}

/// Decides the payment of `order` and publishes the result.
fn pay(host: &mut impl Host, order: &[u8]) -> Result<PaymentResult, Failure> {
    let rules = rules(host)?;
    let delay = config_number(host, "processing_delay_ms")?.unwrap_or(0);
    if delay > 0 {
        // The workshop's fake processing time; the host's timeout bounds it.
        std::thread::sleep(Duration::from_millis(delay));
    }
    let result = decision::decide(order, &rules).map_err(Failure::Invalid)?;
    host.log(
        Level::Info,
        &format!(
            "payment {} of order {}: {} (card {}, rules {}): {}",
            result.payment_id,
            result.order_id,
            result.status.as_str(),
            result.masked_card.as_deref().unwrap_or("none"),
            result.rules,
            result.remarks,
        ),
    );
    let value = serde_json::to_vec(&result)
        .map_err(|e| Failure::retry(format!("cannot encode result: {e}")))?;
    host.send(Message {
        topic: host.config_or("payments_topic", "payments"),
        key: Some(result.order_id.clone().into_bytes()),
        value,
        headers: Vec::new(),
    })
    .map_err(|e| {
        Failure::retry(format!(
            "cannot publish payment of order {}: {e}",
            result.order_id
        ))
    })?;
    Ok(result)
}

/// The rules applied when config `rules` does not choose: v1 is the workshop's card check; v2
/// (the default of a build with the `rules-v2` feature) also caps the order total, at 100.00
/// unless `max_total` says otherwise.
const RULES: &str = if cfg!(feature = "rules-v2") {
    "v2"
} else {
    "v1"
};

/// Reads the rules. A bad value is the deployment's fault, not the order's: the input is
/// retried (and in the end dead-lettered) rather than failed, so fixing the config saves it.
fn rules(host: &impl Host) -> Result<Rules, Failure> {
    let version = host.config("rules").unwrap_or_else(|| RULES.to_string());
    let default_max_total = match version.as_str() {
        "v1" => None,
        "v2" => Some(100_00),
        _ => {
            return Err(Failure::retry(format!(
                "config rules is not v1 or v2: {version:?}"
            )));
        }
    };
    let max_total = match host.config("max_total") {
        None => default_max_total,
        Some(text) => Some(money::parse(&text).ok_or_else(|| {
            Failure::retry(format!("config max_total is not an amount: {text:?}"))
        })?),
    };
    Ok(Rules { max_total, version })
}

fn config_number(host: &impl Host, key: &str) -> Result<Option<u64>, Failure> {
    host.config(key)
        .map(|text| {
            text.trim()
                .parse()
                .map_err(|_| Failure::retry(format!("config {key} is not a number: {text:?}")))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdk::fake::FakeHost;
    use serde_json::{Value, json};

    const ORDER: &str = r#"{"orderId":"o-1","total":"20.00","name":"Jane Doe",
        "creditCard":{"number":"4123987754646678","expiration":"04/29","nameOnCard":"Jane G Doe"}}"#;
    const BIG_ORDER: &str = r#"{"orderId":"o-1","total":"120.00","name":"Jane Doe",
        "creditCard":{"number":"4123987754646678","expiration":"04/29","nameOnCard":"Jane G Doe"}}"#;

    fn sent(host: &FakeHost) -> Vec<(String, Value)> {
        let parse = |m: &Message| serde_json::from_slice(&m.value).unwrap_or_default();
        host.sent
            .iter()
            .map(|m| (m.topic.clone(), parse(m)))
            .collect()
    }

    #[test]
    fn publishes_one_result_keyed_by_order() {
        let mut host = FakeHost::new();
        assert_eq!(on_order(&mut host, ORDER.as_bytes()), Ok(()));
        let [(topic, result)] = sent(&host).try_into().unwrap_or_else(|s| panic!("{s:?}"));
        assert_eq!(topic, "payments");
        assert_eq!(host.sent[0].key.as_deref(), Some(&b"o-1"[..]));
        assert_eq!(result["status"], "COMPLETED");
        assert_eq!(result["orderId"], "o-1");
    }

    #[test]
    fn logs_the_decision_with_the_card_masked() {
        let mut host = FakeHost::new();
        on_order(&mut host, ORDER.as_bytes()).ok();
        let logs = host.logs.borrow();
        assert_eq!(logs.len(), 1);
        assert!(logs[0].1.contains("card ************6678"), "{}", logs[0].1);
        assert!(!logs[0].1.contains("4123987754646678"));
    }

    #[test]
    fn applies_configured_rules() {
        let mut host = FakeHost::new()
            .with_config("max_total", "100")
            .with_config("payments_topic", "pay.results");
        on_order(&mut host, BIG_ORDER.as_bytes()).ok();
        let [(topic, result)] = sent(&host).try_into().unwrap_or_else(|s| panic!("{s:?}"));
        assert_eq!(topic, "pay.results");
        assert_eq!(
            result,
            json!({
                "orderId": "o-1",
                "paymentId": result["paymentId"],
                "remarks": "Rule max_total (100.00) exceeded: total 120.00",
                "status": "FAILED",
                "rules": RULES
            })
        );
    }

    #[test]
    fn the_cap_applies_by_default_only_in_rules_v2() {
        let mut host = FakeHost::new();
        on_order(&mut host, BIG_ORDER.as_bytes()).ok();
        let [(_, result)] = sent(&host).try_into().unwrap_or_else(|s| panic!("{s:?}"));
        let expected = if cfg!(feature = "rules-v2") {
            "FAILED"
        } else {
            "COMPLETED"
        };
        assert_eq!(result["status"], expected, "{result}");
        assert_eq!(result["rules"], RULES);
    }

    #[test]
    fn config_rules_chooses_v1_or_v2() {
        let mut host = FakeHost::new().with_config("rules", "v2");
        on_order(&mut host, BIG_ORDER.as_bytes()).ok();
        let mut host_v1 = FakeHost::new().with_config("rules", "v1");
        on_order(&mut host_v1, BIG_ORDER.as_bytes()).ok();
        let [(_, v2)] = sent(&host).try_into().unwrap_or_else(|s| panic!("{s:?}"));
        let [(_, v1)] = sent(&host_v1)
            .try_into()
            .unwrap_or_else(|s| panic!("{s:?}"));
        assert_eq!(
            (v2["status"].as_str(), v2["rules"].as_str()),
            (Some("FAILED"), Some("v2"))
        );
        assert_eq!(
            (v1["status"].as_str(), v1["rules"].as_str()),
            (Some("COMPLETED"), Some("v1"))
        );
        let mut host = FakeHost::new().with_config("rules", "v3");
        assert!(matches!(
            on_order(&mut host, ORDER.as_bytes()),
            Err(Failure::Retry(_))
        ));
    }

    #[test]
    fn bad_input_is_invalid_and_bad_config_is_retried() {
        let mut host = FakeHost::new();
        assert!(matches!(
            on_order(&mut host, b"{}"),
            Err(Failure::Invalid(_))
        ));
        let mut host = FakeHost::new().with_config("max_total", "lots");
        assert!(matches!(
            on_order(&mut host, ORDER.as_bytes()),
            Err(Failure::Retry(_))
        ));
        let mut host = FakeHost::new().with_config("processing_delay_ms", "soon");
        assert!(matches!(
            on_order(&mut host, ORDER.as_bytes()),
            Err(Failure::Retry(_))
        ));
        assert!(host.sent.is_empty());
    }

    #[test]
    fn answers_http_with_the_result() {
        let mut host = FakeHost::new().with_config("processing_delay_ms", "1");
        let res = on_request(
            &mut host,
            &Request::new("POST", "/api/payment").with_body(ORDER),
        );
        assert_eq!(res.as_ref().map(|r| r.status), Ok(200));
        assert_eq!(
            res.map(|r| r.body_json()["status"].clone()),
            Ok(json!("COMPLETED"))
        );
        assert_eq!(host.sent.len(), 1);

        let res = on_request(
            &mut host,
            &Request::new("POST", "/api/payment").with_body("nope"),
        );
        assert_eq!(res.as_ref().map(|r| r.status), Ok(400));
        let res = on_request(&mut host, &Request::new("GET", "/api/payment"));
        assert_eq!(res.map(|r| r.status), Ok(405));
        assert_eq!(host.sent.len(), 1);
    }
}
