//! CloudEvents 1.0 at the host's edges, so an event source that speaks CloudEvents (Knative
//! Eventing, for one) can feed plugins and read their results; the contract does not change.
//!
//! - **HTTP in**: a request in binary mode (`ce-*` headers) reaches the plugin as it came; one
//!   in structured mode (`application/cloudevents+json`) is unpacked into binary mode: its
//!   `data` becomes the body, `datacontenttype` the `content-type`, and every other attribute
//!   a `ce-<name>` header. A request that claims to be an event and is not a valid one is
//!   refused.
//! - **Out**: when a plugin's config has `cloudevents`, every message it produces carries the
//!   attributes as `ce_*` headers (Kafka's binary mode), and its successful answers to events
//!   carry them as `ce-*` headers. Attributes the plugin set itself are kept.

use base64::Engine as _;
use serde_json::Value;

/// The version of the specification this host speaks.
pub const SPEC_VERSION: &str = "1.0";

/// Content type of a structured-mode event.
const STRUCTURED: &str = "application/cloudevents+json";
/// Content type of a batch of events, which no plugin input can hold.
const BATCH: &str = "application/cloudevents-batch+json";

/// `[plugin.<name>] cloudevents = { source, type }`: the attributes of what the plugin produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Producer {
    /// `source`; default `/eventhost/<plugin>`.
    pub source: String,
    /// `type`; default `eventhost.<plugin>`.
    pub event_type: String,
}

impl Producer {
    /// The defaults for `plugin`.
    pub fn default_for(plugin: &str) -> Self {
        Producer {
            source: format!("/eventhost/{plugin}"),
            event_type: format!("eventhost.{plugin}"),
        }
    }

    /// The required attributes, and `time`, under `prefix` (`ce_` for Kafka, `ce-` for HTTP),
    /// for those of them `present` does not have yet.
    fn attributes(
        &self,
        prefix: &str,
        id: &str,
        present: impl Fn(&str) -> bool,
    ) -> Vec<(String, String)> {
        let time = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        [
            ("specversion", SPEC_VERSION),
            ("id", id),
            ("source", &self.source),
            ("type", &self.event_type),
            ("time", &time),
        ]
        .into_iter()
        .map(|(name, value)| (format!("{prefix}{name}"), value.to_string()))
        .filter(|(name, _)| !present(name))
        .collect()
    }

    /// Adds the `ce_*` headers to a produced message whose id is `id`.
    pub fn stamp_message(&self, id: &str, headers: &mut Vec<(String, Vec<u8>)>) {
        let present = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
        let added = self.attributes("ce_", id, present);
        headers.extend(added.into_iter().map(|(n, v)| (n, v.into_bytes())));
    }

    /// Adds the `ce-*` headers to a plugin's answer to an event.
    pub fn stamp_response(&self, id: &str, headers: &mut Vec<(String, String)>) {
        let present = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
        let added = self.attributes("ce-", id, present);
        headers.extend(added);
    }
}

/// Whether an HTTP request carried an event, after [`unpack_request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// An ordinary request.
    Plain,
    /// An event, now in binary mode.
    Event,
}

/// Turns a structured-mode event into binary mode in place, and checks that a binary-mode one
/// has the required attributes. The error says what is wrong with the event.
pub fn unpack_request(
    headers: &mut Vec<(String, String)>,
    body: &mut Vec<u8>,
) -> Result<Request, String> {
    let header = |headers: &[(String, String)], name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    };
    let content_type = header(headers, "content-type").unwrap_or_default();
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    if media_type.eq_ignore_ascii_case(BATCH) {
        return Err("batched CloudEvents are not accepted; send one event per request".into());
    }
    if media_type.eq_ignore_ascii_case(STRUCTURED) {
        let event: serde_json::Map<String, Value> = serde_json::from_slice(body)
            .map_err(|e| format!("not a valid structured CloudEvent: {e}"))?;
        let (attributes, data) = structured(event)?;
        headers.retain(|(n, _)| {
            !n.eq_ignore_ascii_case("content-type") && !n.to_ascii_lowercase().starts_with("ce-")
        });
        headers.extend(attributes);
        *body = data;
        return Ok(Request::Event);
    }
    if header(headers, "ce-specversion").is_none() {
        return Ok(Request::Plain);
    }
    for name in ["specversion", "id", "source", "type"] {
        match header(headers, &format!("ce-{name}")) {
            Some(value) if !value.is_empty() => {}
            _ => {
                return Err(format!(
                    "not a valid CloudEvent: the ce-{name} header is missing"
                ));
            }
        }
    }
    let version = header(headers, "ce-specversion").unwrap_or_default();
    if version != SPEC_VERSION {
        return Err(format!(
            "CloudEvents specversion {version:?} is not supported; expected {SPEC_VERSION:?}"
        ));
    }
    Ok(Request::Event)
}

/// HTTP headers, as the plugin sees them.
type Headers = Vec<(String, String)>;

/// The headers and body of a structured-mode event.
fn structured(mut event: serde_json::Map<String, Value>) -> Result<(Headers, Vec<u8>), String> {
    for name in ["specversion", "id", "source", "type"] {
        match event.get(name) {
            Some(Value::String(s)) if !s.is_empty() => {}
            Some(_) => return Err(format!("not a valid CloudEvent: {name} must be a string")),
            None => return Err(format!("not a valid CloudEvent: {name} is missing")),
        }
    }
    if event["specversion"] != SPEC_VERSION {
        return Err(format!(
            "CloudEvents specversion {} is not supported; expected {SPEC_VERSION:?}",
            event["specversion"]
        ));
    }
    let content_type = match event.remove("datacontenttype") {
        Some(Value::String(s)) => s,
        Some(_) => return Err("not a valid CloudEvent: datacontenttype must be a string".into()),
        None => "application/json".to_string(),
    };
    let data = match (event.remove("data"), event.remove("data_base64")) {
        (Some(_), Some(_)) => {
            return Err("not a valid CloudEvent: it has both data and data_base64".into());
        }
        (None, Some(Value::String(encoded))) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| format!("not a valid CloudEvent: data_base64: {e}"))?,
        (None, Some(_)) => {
            return Err("not a valid CloudEvent: data_base64 must be a string".into());
        }
        // Text data of a non-JSON type is the text itself; anything else is JSON.
        (Some(Value::String(text)), None) if !is_json(&content_type) => text.into_bytes(),
        (Some(value), None) => value.to_string().into_bytes(),
        (None, None) => Vec::new(),
    };
    let mut headers = vec![("content-type".to_string(), content_type)];
    for (name, value) in event {
        let value = match value {
            Value::String(s) => s,
            other => other.to_string(),
        };
        headers.push((format!("ce-{name}"), value));
    }
    Ok((headers, data))
}

fn is_json(content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    let media = media.to_ascii_lowercase();
    media == "application/json" || media == "text/json" || media.ends_with("+json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_structured_event_becomes_binary_with_its_data_as_the_body() {
        let mut headers = vec![(
            "content-type".to_string(),
            "application/cloudevents+json; charset=utf-8".to_string(),
        )];
        let mut body = serde_json::to_vec(&serde_json::json!({
            "specversion": "1.0", "id": "o-1", "source": "/shop", "type": "order.created",
            "subject": "o-1", "attempt": 2, "data": {"orderId": "o-1", "total": "10.00"}
        }))
        .unwrap();
        assert_eq!(unpack_request(&mut headers, &mut body), Ok(Request::Event));
        let data: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(data["orderId"], "o-1");
        assert_eq!(get(&headers, "content-type"), Some("application/json"));
        assert_eq!(get(&headers, "ce-id"), Some("o-1"));
        assert_eq!(get(&headers, "ce-type"), Some("order.created"));
        assert_eq!(get(&headers, "ce-attempt"), Some("2"));
    }

    #[test]
    fn text_and_base64_data_arrive_as_bytes() {
        let event = |data: Value| {
            let mut headers = vec![("content-type".into(), STRUCTURED.into())];
            let mut e =
                serde_json::json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t"});
            e.as_object_mut()
                .unwrap()
                .extend(data.as_object().unwrap().clone());
            let mut body = serde_json::to_vec(&e).unwrap();
            unpack_request(&mut headers, &mut body).map(|_| (headers, body))
        };
        let (headers, body) =
            event(serde_json::json!({"datacontenttype": "text/plain", "data": "héllo"})).unwrap();
        assert_eq!(body, "héllo".as_bytes());
        assert_eq!(get(&headers, "content-type"), Some("text/plain"));
        let (_, body) = event(serde_json::json!({"data_base64": "AAEC"})).unwrap();
        assert_eq!(body, [0, 1, 2]);
        let both = event(serde_json::json!({"data": 1, "data_base64": "AA=="}));
        assert!(both.unwrap_err().contains("both data and data_base64"));
    }

    #[test]
    fn invalid_events_are_refused_with_what_is_wrong() {
        let structured = |body: &str| {
            let mut headers = vec![("content-type".into(), STRUCTURED.into())];
            unpack_request(&mut headers, &mut body.as_bytes().to_vec())
        };
        assert!(
            structured("{")
                .unwrap_err()
                .contains("not a valid structured CloudEvent")
        );
        let missing = structured(r#"{"specversion":"1.0","source":"s","type":"t"}"#);
        assert_eq!(
            missing.unwrap_err(),
            "not a valid CloudEvent: id is missing"
        );
        let old = structured(r#"{"specversion":"0.3","id":"1","source":"s","type":"t"}"#);
        assert!(old.unwrap_err().contains("not supported"));

        let mut binary = vec![
            ("ce-specversion".to_string(), "1.0".to_string()),
            ("ce-id".to_string(), "1".to_string()),
        ];
        let error = unpack_request(&mut binary, &mut Vec::new()).unwrap_err();
        assert_eq!(
            error,
            "not a valid CloudEvent: the ce-source header is missing"
        );

        let mut batch = vec![("content-type".to_string(), BATCH.to_string())];
        assert!(unpack_request(&mut batch, &mut b"[]".to_vec()).is_err());
    }

    #[test]
    fn a_plain_request_and_a_valid_binary_event_pass_unchanged() {
        let mut plain = vec![("content-type".to_string(), "application/json".to_string())];
        let mut body = b"{}".to_vec();
        assert_eq!(unpack_request(&mut plain, &mut body), Ok(Request::Plain));
        let mut binary: Vec<(String, String)> = [
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "s"),
            ("ce-type", "t"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        let before = binary.clone();
        assert_eq!(unpack_request(&mut binary, &mut body), Ok(Request::Event));
        assert_eq!(binary, before);
        assert_eq!(body, b"{}");
    }

    #[test]
    fn produced_messages_get_the_attributes_the_plugin_did_not_set() {
        let producer = Producer::default_for("payment");
        let mut headers = vec![("ce_type".to_string(), b"custom".to_vec())];
        producer.stamp_message("orders/0/7#0", &mut headers);
        let value = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
        };
        assert_eq!(value("ce_specversion").as_deref(), Some("1.0"));
        assert_eq!(value("ce_id").as_deref(), Some("orders/0/7#0"));
        assert_eq!(value("ce_source").as_deref(), Some("/eventhost/payment"));
        assert_eq!(value("ce_type").as_deref(), Some("custom"));
        assert!(value("ce_time").unwrap().ends_with('Z'));
        assert_eq!(headers.iter().filter(|(n, _)| n == "ce_type").count(), 1);
    }
}
