//! `eventhost tail`: messages of a topic as they come, for people.
//!
//! On Kafka the command reads the broker itself; the embedded bus lives inside the running
//! host, so there the command asks the host's admin route `GET /admin/tail`, which streams one
//! JSON record per line.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::Deployment;
use crate::bus::{Record, TailFrom};
use crate::http::ApiError;

/// A record as `GET /admin/tail` streams it; text is decoded lossily (it is for reading).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TailedRecord {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Publish time, milliseconds since the Unix epoch.
    pub timestamp_ms: Option<i64>,
    /// Key.
    pub key: Option<String>,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// Value.
    pub value: String,
}

impl From<&Record> for TailedRecord {
    fn from(record: &Record) -> Self {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        TailedRecord {
            topic: record.topic.clone(),
            partition: record.partition,
            offset: record.offset,
            timestamp_ms: record.timestamp_ms,
            key: record.key.as_deref().map(text),
            headers: (record.headers.iter())
                .map(|(name, value)| (name.clone(), text(value)))
                .collect(),
            value: text(&record.value),
        }
    }
}

/// How a record is printed: where it is, its key and time, the host's headers (plugin,
/// version, trace, dead-letter reasons), then its value, pretty when it is JSON.
pub fn render(record: &TailedRecord) -> String {
    use std::fmt::Write as _;
    let mut out = format!("{}/{}@{}", record.topic, record.partition, record.offset);
    if let Some(ms) = record.timestamp_ms {
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
        let _ = write!(out, "  {}", humantime::format_rfc3339_millis(time));
    }
    if let Some(key) = &record.key {
        let _ = write!(out, "  key {key}");
    }
    out.push('\n');
    for (name, value) in &record.headers {
        if name.starts_with("eventhost-") || name == "traceparent" {
            let _ = writeln!(out, "  {name}: {value}");
        }
    }
    let value = match serde_json::from_str::<serde_json::Value>(&record.value) {
        Ok(json) if json.is_object() || json.is_array() => {
            serde_json::to_string_pretty(&json).unwrap_or_else(|_| record.value.clone())
        }
        _ => record.value.clone(),
    };
    for line in value.lines() {
        let _ = writeln!(out, "  {line}");
    }
    out
}

/// Where to start, from the command's options (at most one of them is given).
pub fn start(
    from_beginning: bool,
    from: Option<&str>,
    offset: Option<i64>,
) -> anyhow::Result<TailFrom> {
    Ok(match (from_beginning, from, offset) {
        (true, _, _) => TailFrom::Beginning,
        (_, _, Some(offset)) => TailFrom::Offset(offset),
        (_, Some(time), _) => TailFrom::Time(parse_time(time)?),
        _ => TailFrom::End,
    })
}

/// An RFC 3339 time, or a duration ago such as `10m`, as milliseconds since the Unix epoch.
fn parse_time(text: &str) -> anyhow::Result<i64> {
    let time = match humantime::parse_duration(text) {
        Ok(ago) => std::time::SystemTime::now() - ago,
        Err(_) => humantime::parse_rfc3339_weak(text).with_context(|| {
            format!("--from {text:?}: expected a time such as 2026-12-01T10:00:00Z or a duration ago such as 10m")
        })?,
    };
    let since_epoch = time.duration_since(std::time::UNIX_EPOCH)?;
    Ok(since_epoch.as_millis() as i64)
}

/// The query of `GET /admin/tail`.
#[derive(Debug, Deserialize)]
pub struct TailQuery {
    topic: String,
    /// `end` (default), `beginning`, `offset:N` or `time:MS`.
    from: Option<String>,
}

/// `GET /admin/tail?topic=T&from=...`: the topic's records as they come, one JSON per line.
pub async fn route(
    State(deployment): State<Arc<Deployment>>,
    Query(query): Query<TailQuery>,
) -> Response {
    let from = match query
        .from
        .as_deref()
        .map(query_start)
        .unwrap_or(Ok(TailFrom::End))
    {
        Ok(from) => from,
        Err(message) => return ApiError::new(StatusCode::BAD_REQUEST, message).into_response(),
    };
    let bus = deployment.dispatcher().bus().clone();
    let records = match bus.tail(&query.topic, from).await {
        Ok(records) => records,
        Err(e) => return ApiError::new(StatusCode::NOT_FOUND, e.to_string()).into_response(),
    };
    let lines = futures::stream::unfold(records, |mut records| async move {
        let record = records.recv().await?;
        let mut line = serde_json::to_string(&TailedRecord::from(&record)).unwrap_or_default();
        line.push('\n');
        Some((Ok::<_, std::convert::Infallible>(line), records))
    });
    let content_type = [(header::CONTENT_TYPE, "application/x-ndjson")];
    (content_type, Body::from_stream(lines)).into_response()
}

pub(super) fn query_start(text: &str) -> Result<TailFrom, String> {
    let number = |n: &str| {
        n.parse::<i64>()
            .map_err(|_| format!("from: {n:?} is not a number"))
    };
    match text.split_once(':') {
        None if text == "end" => Ok(TailFrom::End),
        None if text == "beginning" => Ok(TailFrom::Beginning),
        Some(("offset", n)) => Ok(TailFrom::Offset(number(n)?)),
        Some(("time", ms)) => Ok(TailFrom::Time(number(ms)?)),
        _ => Err(format!(
            "from: expected end, beginning, offset:N or time:MS, found {text:?}"
        )),
    }
}

/// The `from` query value for `start`.
pub fn query_value(from: TailFrom) -> String {
    match from {
        TailFrom::End => "end".into(),
        TailFrom::Beginning => "beginning".into(),
        TailFrom::Offset(n) => format!("offset:{n}"),
        TailFrom::Time(ms) => format!("time:{ms}"),
    }
}

/// Streams `GET /admin/tail` from the host at `addr`, calling `each` for every record until
/// it returns false or the host closes the stream.
pub async fn follow(
    addr: SocketAddr,
    token: Option<&str>,
    topic: &str,
    from: TailFrom,
    mut each: impl FnMut(TailedRecord) -> bool,
) -> anyhow::Result<()> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .context("connecting")?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let topic: String =
        percent_encoding::utf8_percent_encode(topic, percent_encoding::NON_ALPHANUMERIC).collect();
    let request = format!(
        "GET /admin/tail?topic={topic}&from={} HTTP/1.0\r\nHost: eventhost\r\n{auth}\r\n",
        query_value(from)
    );
    stream.write_all(request.as_bytes()).await?;
    let mut lines = BufReader::new(stream).lines();
    let status = lines.next_line().await?.unwrap_or_default();
    let ok = status.starts_with("HTTP/1.0 200") || status.starts_with("HTTP/1.1 200");
    let mut body = String::new();
    // Headers end at the first empty line.
    while let Some(line) = lines.next_line().await? {
        if line.is_empty() {
            break;
        }
    }
    if !ok {
        while let Some(line) = lines.next_line().await? {
            body.push_str(&line);
        }
        bail!("unexpected answer: {status} {body}");
    }
    while let Some(line) = lines.next_line().await? {
        if line.is_empty() {
            continue;
        }
        let record: TailedRecord = serde_json::from_str(&line).context("malformed record")?;
        if !each(record) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_where_the_key_the_hosts_headers_and_pretty_json() {
        let record = TailedRecord {
            topic: "payments".into(),
            partition: 2,
            offset: 17,
            timestamp_ms: Some(0),
            key: Some("o-1".into()),
            headers: vec![
                ("eventhost-plugin".into(), "payment".into()),
                ("app".into(), "left out".into()),
                ("traceparent".into(), "00-abc-def-01".into()),
            ],
            value: r#"{"orderId":"o-1","status":"COMPLETED"}"#.into(),
        };
        assert_eq!(
            render(&record),
            "payments/2@17  1970-01-01T00:00:00.000Z  key o-1\n  eventhost-plugin: payment\n  traceparent: 00-abc-def-01\n  {\n    \"orderId\": \"o-1\",\n    \"status\": \"COMPLETED\"\n  }\n"
        );
    }

    #[test]
    fn starts_where_asked() {
        assert_eq!(start(false, None, None).unwrap(), TailFrom::End);
        assert_eq!(start(true, None, None).unwrap(), TailFrom::Beginning);
        assert_eq!(start(false, None, Some(5)).unwrap(), TailFrom::Offset(5));
        assert_eq!(
            start(false, Some("1970-01-01T00:00:01Z"), None).unwrap(),
            TailFrom::Time(1000)
        );
        assert!(matches!(
            start(false, Some("10m"), None).unwrap(),
            TailFrom::Time(_)
        ));
        assert!(start(false, Some("yesterday-ish"), None).is_err());
        for from in [
            TailFrom::End,
            TailFrom::Beginning,
            TailFrom::Offset(3),
            TailFrom::Time(9),
        ] {
            assert_eq!(query_start(&query_value(from)), Ok(from));
        }
    }
}
