//! Compares what a plugin did with an input to what its case expects, and words each
//! difference as a line a person can act on: where, what was expected, what came.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::case::{Expect, Output, Response};
use crate::runtime::{Effects, Failure, HttpResponse, InvokeError, OutMessage};

/// What the plugin did with one input.
pub struct Observed {
    /// `ok`, `invalid`, `retry`, or why there was no result (`timeout`, `trap`, ...).
    pub outcome: &'static str,
    /// The failure's text, if it failed.
    pub message: Option<String>,
    /// How long the input took.
    pub elapsed: Duration,
    /// What it staged.
    pub effects: Effects,
    /// Its HTTP response, if it answered one.
    pub response: Option<HttpResponse>,
}

impl Observed {
    /// Sorts the runtime's result of a call into an outcome kind and a message.
    pub fn new<T>(
        outcome: Result<Result<T, Failure>, InvokeError>,
        effects: Effects,
        elapsed: Duration,
    ) -> (Self, Option<T>) {
        let (kind, message, value) = match outcome {
            Ok(Ok(value)) => ("ok", None, Some(value)),
            Ok(Err(Failure::Invalid(why))) => ("invalid", Some(why), None),
            Ok(Err(Failure::Retry(why))) => ("retry", Some(why), None),
            Err(e) => (kind_of(&e), Some(e.to_string()), None),
        };
        let observed = Observed {
            outcome: kind,
            message,
            elapsed,
            effects,
            response: None,
        };
        (observed, value)
    }
}

/// The name a case uses for a reason the host got no result.
fn kind_of(e: &InvokeError) -> &'static str {
    match e {
        InvokeError::Timeout(_) => "timeout",
        InvokeError::MemoryLimit(_) => "memory",
        InvokeError::Budget(_) => "budget",
        InvokeError::InvalidResponse(_) => "invalid-response",
        InvokeError::Trap(_) => "trap",
        InvokeError::MissingExport(_) => "missing-export",
    }
}

/// Every way `observed` differs from `expect`; empty when the case passes.
pub fn differences(expect: &Expect, observed: &Observed) -> anyhow::Result<Vec<String>> {
    let mut diffs = Vec::new();
    if expect.outcome != observed.outcome {
        let got = match &observed.message {
            Some(why) => format!("{} ({})", observed.outcome, shorten(why)),
            None => observed.outcome.to_string(),
        };
        diffs.push(format!("outcome: expected {}, got {got}", expect.outcome));
        // Outputs and writes of an unexpected outcome only repeat the same news.
        return Ok(diffs);
    }
    if let Some(part) = &expect.message_contains {
        let message = observed.message.as_deref().unwrap_or_default();
        if !message.contains(part.as_str()) {
            diffs.push(format!(
                "message: expected it to contain {}, got {}",
                quoted(part),
                quoted(message)
            ));
        }
    }
    if let Some(min_ms) = expect.min_ms
        && observed.elapsed < Duration::from_millis(min_ms)
    {
        diffs.push(format!(
            "time: expected at least {min_ms} ms, took {:.1?}",
            observed.elapsed
        ));
    }
    if let Some(outputs) = &expect.output {
        compare_outputs(outputs, &observed.effects.outbox, &mut diffs)?;
    }
    if let Some(response) = &expect.response {
        match &observed.response {
            Some(actual) => compare_response(response, actual, &mut diffs)?,
            None => diffs.push("response: expected one, got none".into()),
        }
    }
    if expect.state.is_some() || !expect.state_deleted.is_empty() {
        compare_writes(expect, &observed.effects.writes, &mut diffs);
    }
    Ok(diffs)
}

fn compare_outputs(
    expected: &[Output],
    actual: &[OutMessage],
    diffs: &mut Vec<String>,
) -> anyhow::Result<()> {
    if expected.len() != actual.len() {
        let topics: Vec<&str> = actual.iter().map(|m| m.topic.as_str()).collect();
        diffs.push(format!(
            "output: expected {} message(s), got {} {topics:?}",
            expected.len(),
            actual.len()
        ));
    }
    for (i, (want, got)) in expected.iter().zip(actual).enumerate() {
        let at = format!("output[{i}]");
        if want.topic != got.topic {
            diffs.push(format!(
                "{at}.topic: expected {}, got {}",
                quoted(&want.topic),
                quoted(&got.topic)
            ));
        }
        if let Some(key) = &want.key {
            let got_key = got.key.as_deref().map(String::from_utf8_lossy);
            if got_key.as_deref() != Some(key.as_str()) {
                let shown = got_key.map_or("no key".into(), |k| quoted(&k));
                diffs.push(format!("{at}.key: expected {}, got {shown}", quoted(key)));
            }
        }
        let payload = Payload {
            exact: want.payload()?,
            fields: want.fields.as_ref(),
            excludes: &want.excludes,
        };
        payload.compare(&format!("{at}.value"), &got.value, diffs);
    }
    Ok(())
}

fn compare_response(
    want: &Response,
    got: &HttpResponse,
    diffs: &mut Vec<String>,
) -> anyhow::Result<()> {
    if want.status != got.status {
        diffs.push(format!(
            "response.status: expected {}, got {} ({})",
            want.status,
            got.status,
            shorten(&String::from_utf8_lossy(&got.body))
        ));
    }
    let payload = Payload {
        exact: want.payload()?,
        fields: want.fields.as_ref(),
        excludes: &want.excludes,
    };
    payload.compare("response.body", &got.body, diffs);
    Ok(())
}

fn compare_writes(
    expect: &Expect,
    writes: &BTreeMap<String, Option<Vec<u8>>>,
    diffs: &mut Vec<String>,
) {
    let mut wanted: BTreeMap<&str, Option<&[u8]>> = BTreeMap::new();
    for (key, value) in expect.state.iter().flatten() {
        wanted.insert(key, Some(value.as_bytes()));
    }
    for key in &expect.state_deleted {
        wanted.insert(key, None);
    }
    let shown = |value: Option<&[u8]>| match value {
        Some(bytes) => quoted(&String::from_utf8_lossy(bytes)),
        None => "deleted".to_string(),
    };
    for (key, want) in &wanted {
        match writes.get(*key) {
            Some(got) if got.as_deref() == *want => {}
            Some(got) => diffs.push(format!(
                "state[{key}]: expected {}, got {}",
                shown(*want),
                shown(got.as_deref())
            )),
            None => diffs.push(format!(
                "state[{key}]: expected {}, not written",
                shown(*want)
            )),
        }
    }
    // With `state` given the writes are exact: nothing else may be written.
    if expect.state.is_some() {
        for (key, got) in writes {
            if !wanted.contains_key(key.as_str()) {
                diffs.push(format!(
                    "state[{key}]: expected no write, got {}",
                    shown(got.as_deref())
                ));
            }
        }
    }
}

/// What a payload must be: exact bytes, JSON fields, and text it must not contain.
struct Payload<'a> {
    exact: Option<Vec<u8>>,
    fields: Option<&'a toml::Table>,
    excludes: &'a [String],
}

impl Payload<'_> {
    fn compare(&self, at: &str, got: &[u8], diffs: &mut Vec<String>) {
        if let Some(want) = &self.exact
            && want.as_slice() != got
        {
            diffs.push(bytes_diff(at, want, got));
        }
        if let Some(fields) = self.fields {
            match serde_json::from_slice::<Value>(got) {
                Ok(Value::Object(object)) => {
                    for (name, want) in fields {
                        let want = serde_json::to_value(want).unwrap_or(Value::Null);
                        match object.get(name) {
                            Some(value) if *value == want => {}
                            Some(value) => diffs.push(format!(
                                "{at}.{name}: expected {}, got {}",
                                shorten(&want.to_string()),
                                shorten(&value.to_string())
                            )),
                            None => diffs.push(format!("{at}.{name}: missing")),
                        }
                    }
                }
                _ => diffs.push(format!(
                    "{at}: expected a JSON object, got {}",
                    quoted(&String::from_utf8_lossy(got))
                )),
            }
        }
        let text = String::from_utf8_lossy(got);
        for excluded in self.excludes {
            if text.contains(excluded.as_str()) {
                diffs.push(format!("{at}: must not contain {}", quoted(excluded)));
            }
        }
    }
}

/// Two payloads side by side from just before their first difference.
fn bytes_diff(at: &str, want: &[u8], got: &[u8]) -> String {
    let first = want
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(want.len().min(got.len()));
    let from = first.saturating_sub(40);
    let show = |bytes: &[u8]| shorten(&String::from_utf8_lossy(&bytes[from.min(bytes.len())..]));
    format!(
        "{at} differs at byte {first} ({} vs {} bytes):\n      expected: {}{}\n      got:      {}{}",
        want.len(),
        got.len(),
        if from > 0 { "…" } else { "" },
        show(want),
        if from > 0 { "…" } else { "" },
        show(got),
    )
}

/// Text as a quoted string, cut to a readable length.
fn quoted(text: &str) -> String {
    shorten(&format!("{text:?}"))
}

/// At most 160 characters of `text`, with the cut marked.
fn shorten(text: &str) -> String {
    const LIMIT: usize = 160;
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(LIMIT).collect();
    let rest = chars.count();
    if rest == 0 {
        head
    } else {
        format!("{head}… ({rest} more characters)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expect(toml_text: &str) -> Expect {
        toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn observed(outcome: &'static str, outbox: Vec<OutMessage>) -> Observed {
        Observed {
            outcome,
            message: None,
            elapsed: Duration::from_millis(5),
            effects: Effects {
                outbox,
                ..Effects::default()
            },
            response: None,
        }
    }

    fn message(value: &str) -> OutMessage {
        OutMessage {
            topic: "payments".into(),
            key: Some(b"o-1".to_vec()),
            value: value.as_bytes().to_vec(),
            headers: vec![],
        }
    }

    #[test]
    fn a_matching_input_has_no_differences() {
        let want = expect(
            r#"
            outcome = "ok"
            output = [{ topic = "payments", key = "o-1", fields = { status = "COMPLETED", n = 2 } }]
            "#,
        );
        let got = observed("ok", vec![message(r#"{"status":"COMPLETED","n":2,"x":1}"#)]);
        assert_eq!(differences(&want, &got).ok(), Some(vec![]));
    }

    #[test]
    fn each_difference_names_where_what_and_what_came() {
        let want = expect(
            r#"
            outcome = "ok"
            min_ms = 100
            output = [{ topic = "payments", key = "o-2", fields = { status = "COMPLETED", gone = 1 }, excludes = ["4123"] }]
            "#,
        );
        let got = observed("ok", vec![message(r#"{"status":"FAILED","card":"4123"}"#)]);
        let diffs = differences(&want, &got).unwrap_or_default();
        assert_eq!(
            diffs,
            [
                "time: expected at least 100 ms, took 5.0ms",
                r#"output[0].key: expected "o-2", got "o-1""#,
                // Fields are checked in key order.
                "output[0].value.gone: missing",
                r#"output[0].value.status: expected "COMPLETED", got "FAILED""#,
                r#"output[0].value: must not contain "4123""#,
            ]
        );
    }

    #[test]
    fn exact_bytes_show_where_they_part() {
        let diff = bytes_diff("value", b"{\"a\":1}", b"{\"a\":2}");
        assert_eq!(
            diff,
            "value differs at byte 5 (7 vs 7 bytes):\n      expected: {\"a\":1}\n      got:      {\"a\":2}"
        );
    }

    #[test]
    fn a_wrong_outcome_is_reported_alone() {
        let want = expect("outcome = \"ok\"\noutput = []");
        let mut got = observed("invalid", vec![]);
        got.message = Some("order has no orderId string".into());
        assert_eq!(
            differences(&want, &got).unwrap_or_default(),
            ["outcome: expected ok, got invalid (order has no orderId string)"]
        );
    }
}
