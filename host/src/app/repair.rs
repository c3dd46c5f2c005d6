//! Repairs without code: pause and resume a subscription, replay it from an offset or a time,
//! and send its dead letters back once a fix is deployed.
//!
//! They run inside the host, behind admin routes, for two reasons: the embedded bus lives in
//! the host's process, and a rewind needs the host to let go of the subscription's partitions
//! first (a running consumer would overwrite the new offsets with its own commits). The
//! commands (`eventhost pause|resume|replay|dlq redrive`) call these routes, on either bus.
//!
//! A subscription is named by its consumer group, or `GROUP/TOPIC` when the group consumes
//! more than one topic (the config allows one subscription per topic and group).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Deployment;
use super::deployment::SubscriptionState;
use crate::bus::{Bus, BusError, GroupPosition, Record, TailFrom};
use crate::config::{Config, SubscriptionConfig};
use crate::dispatch::{DLQ_OMITTED_HEADER, ERROR_KINDS};
use crate::http::ApiError;
use crate::runtime::OutMessage;

/// Header a redriven record carries: how many times it was sent back from its dead letters.
pub const REDRIVE_COUNT_HEADER: &str = "eventhost-redrive-count";
/// The prefix of the headers a dead letter adds to the original record.
const DEAD_LETTER_PREFIX: &str = "eventhost-dlq-";
/// The first of the headers a dead letter adds; the ones after it are the dead letter's too.
const DEAD_LETTER_FIRST: &str = "eventhost-dlq-reason";
/// Dead letters read, sent back and recorded as done at a time: a long dead-letter topic is
/// never held in memory whole, and an interrupted redrive resends at most one batch.
const REDRIVE_BATCH: i64 = 500;

/// One subscription as `GET /admin/subscriptions` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionStatus {
    /// What the repair commands call it.
    pub name: String,
    /// The consumed topic.
    pub topic: String,
    /// The consumer group.
    pub group: String,
    /// The handling plugin.
    pub plugin: String,
    /// Where its dead letters go.
    pub dead_letter: String,
    /// Running, paused or stopped.
    pub state: SubscriptionState,
}

/// The name of `sub` among the subscriptions of `config`.
pub fn name_of(config: &Config, sub: &SubscriptionConfig) -> String {
    let topics = (config.subscriptions.iter())
        .filter(|s| s.group == sub.group)
        .count();
    if topics == 1 {
        sub.group.clone()
    } else {
        format!("{}/{}", sub.group, sub.topic)
    }
}

/// The subscription `name` picks, or an error that lists the known names.
pub fn resolve<'c>(config: &'c Config, name: &str) -> Result<&'c SubscriptionConfig, String> {
    let found: Vec<&SubscriptionConfig> = (config.subscriptions.iter())
        .filter(|s| s.group == name || format!("{}/{}", s.group, s.topic) == name)
        .collect();
    match found[..] {
        [sub] => Ok(sub),
        _ => {
            let known: Vec<String> = (config.subscriptions.iter())
                .map(|s| name_of(config, s))
                .collect();
            let why = if found.is_empty() {
                "no subscription"
            } else {
                "more than one subscription (it consumes several topics)"
            };
            let known = if known.is_empty() {
                "none is configured".to_string()
            } else {
                format!("known: {}", known.join(", "))
            };
            Err(format!("{why} is named {name:?}; {known}"))
        }
    }
}

/// The group that remembers how far the dead letters of `group` were redriven.
pub fn redrive_group(group: &str) -> String {
    format!("{group}.redrive")
}

// ---- admin routes ----------------------------------------------------------------------------

/// The query of the repair routes.
#[derive(Debug, Default, Deserialize)]
pub struct RepairQuery {
    /// The subscription's name.
    subscription: String,
    /// `replay`: `offset:N` or `time:MS`.
    from: Option<String>,
    /// `redrive`: only dead letters of this kind (`eventhost-dlq-kind`).
    kind: Option<String>,
}

/// What a repair route answers: a line for people, and the numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairReport {
    /// What was done, in one line.
    pub message: String,
    /// The subscription's name.
    pub subscription: String,
    /// Records concerned: dead letters redriven, records to re-deliver; 0 for pause/resume.
    pub records: u64,
    /// Dead letters skipped because they only hold a reference (`redrive`), as
    /// `topic/partition@offset`.
    #[serde(default)]
    pub skipped: Vec<String>,
}

/// `GET /admin/subscriptions`: every configured subscription and its state.
pub async fn list(State(deployment): State<Arc<Deployment>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "subscriptions": statuses(&deployment).await }))
}

/// The status of every configured subscription.
pub async fn statuses(deployment: &Deployment) -> Vec<SubscriptionStatus> {
    let Some(config) = deployment.config().await else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for sub in &config.subscriptions {
        out.push(SubscriptionStatus {
            name: name_of(&config, sub),
            topic: sub.topic.clone(),
            group: sub.group.clone(),
            plugin: sub.plugin.clone(),
            dead_letter: sub.dead_letter.clone(),
            state: deployment.subscription_state(&sub.topic, &sub.group).await,
        });
    }
    out
}

/// `POST /admin/pause?subscription=NAME`.
pub async fn pause(
    State(deployment): State<Arc<Deployment>>,
    Query(query): Query<RepairQuery>,
) -> Response {
    let sub = match find(&deployment, &query.subscription).await {
        Ok(sub) => sub,
        Err(response) => return response,
    };
    let message = if deployment.pause(&sub.topic, &sub.group).await {
        format!(
            "paused {}: {} is no longer consumed by group {} (in-flight records finished)",
            query.subscription, sub.topic, sub.group
        )
    } else {
        format!("{} was paused already", query.subscription)
    };
    report(message, &query.subscription, 0, Vec::new())
}

/// `POST /admin/resume?subscription=NAME`.
pub async fn resume(
    State(deployment): State<Arc<Deployment>>,
    Query(query): Query<RepairQuery>,
) -> Response {
    let sub = match find(&deployment, &query.subscription).await {
        Ok(sub) => sub,
        Err(response) => return response,
    };
    // Counted before it resumes, which starts reading them at once.
    let waiting: i64 = match (deployment.dispatcher().bus())
        .positions(&sub.topic, &sub.group)
        .await
    {
        Ok(positions) => positions.iter().map(waiting_after).sum(),
        Err(_) => 0,
    };
    let message = if deployment.resume(&sub.topic, &sub.group).await {
        format!(
            "resumed {}: {waiting} record{} waiting on {}",
            query.subscription,
            plural(waiting as u64),
            sub.topic
        )
    } else {
        format!("{} was not paused", query.subscription)
    };
    report(message, &query.subscription, waiting as u64, Vec::new())
}

/// `POST /admin/replay?subscription=NAME&from=offset:N|time:MS`.
pub async fn replay(
    State(deployment): State<Arc<Deployment>>,
    Query(query): Query<RepairQuery>,
) -> Response {
    let sub = match find(&deployment, &query.subscription).await {
        Ok(sub) => sub,
        Err(response) => return response,
    };
    let from = match query.from.as_deref().map(super::tail::query_start) {
        Some(Ok(from @ (TailFrom::Offset(_) | TailFrom::Time(_)))) => from,
        Some(Err(message)) => return bad_request(message),
        _ => return bad_request("from: expected offset:N or time:MS".into()),
    };
    let _repairing = deployment.repairing.lock().await;
    let result = deployment
        .while_stopped(&sub.topic, &sub.group, rewind(&deployment, &sub, from))
        .await;
    match result {
        Ok(rewound) => {
            let from_text = match from {
                TailFrom::Time(ms) => format!("time {}", rfc3339(ms)),
                TailFrom::Offset(n) => format!("offset {n}"),
                _ => unreachable!("checked above"),
            };
            let mut message = format!(
                "replayed {} from {from_text}: {} partition{} rewound, {} record{} to re-deliver",
                query.subscription,
                rewound.partitions,
                plural(rewound.partitions),
                rewound.records,
                plural(rewound.records),
            );
            if rewound.not_kept > 0 {
                message.push_str(&format!(
                    " ({} partition{} no longer keep{} records that far back: replayed from \
                     the earliest kept)",
                    rewound.not_kept,
                    plural(rewound.not_kept),
                    if rewound.not_kept == 1 { "s" } else { "" }
                ));
            }
            tracing::info!(subscription = %query.subscription, "{message}");
            report(message, &query.subscription, rewound.records, Vec::new())
        }
        Err(e) => bus_error(e),
    }
}

/// `POST /admin/redrive?subscription=NAME[&kind=KIND]`.
pub async fn redrive(
    State(deployment): State<Arc<Deployment>>,
    Query(query): Query<RepairQuery>,
) -> Response {
    let sub = match find(&deployment, &query.subscription).await {
        Ok(sub) => sub,
        Err(response) => return response,
    };
    if let Some(kind) = &query.kind
        && !ERROR_KINDS.contains(&kind.as_str())
    {
        return bad_request(format!(
            "kind: {kind:?} is not a dead-letter kind; known: {}",
            ERROR_KINDS.join(", ")
        ));
    }
    let _repairing = deployment.repairing.lock().await;
    match send_back(&deployment, &sub, query.kind.as_deref()).await {
        Ok(done) => {
            let mut message = format!(
                "redriven {} dead letter{} from {} to {}",
                done.redriven,
                plural(done.redriven),
                sub.dead_letter,
                sub.topic
            );
            let mut notes = Vec::new();
            if !done.skipped.is_empty() {
                notes.push(format!("{} skipped: reference only", done.skipped.len()));
            }
            if done.left_out > 0 {
                notes.push(format!("{} of another kind passed over", done.left_out));
            }
            if !notes.is_empty() {
                message.push_str(&format!(" ({})", notes.join("; ")));
            }
            tracing::info!(subscription = %query.subscription, "{message}");
            report(message, &query.subscription, done.redriven, done.skipped)
        }
        Err(e) => bus_error(e),
    }
}

async fn find(deployment: &Deployment, name: &str) -> Result<SubscriptionConfig, Response> {
    let Some(config) = deployment.config().await else {
        return Err(
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no configuration yet").into_response(),
        );
    };
    resolve(&config, name)
        .cloned()
        .map_err(|message| ApiError::new(StatusCode::NOT_FOUND, message).into_response())
}

fn report(message: String, subscription: &str, records: u64, skipped: Vec<String>) -> Response {
    Json(RepairReport {
        message,
        subscription: subscription.to_string(),
        records,
        skipped,
    })
    .into_response()
}

fn bad_request(message: String) -> Response {
    ApiError::new(StatusCode::BAD_REQUEST, message).into_response()
}

fn bus_error(error: BusError) -> Response {
    let status = match error {
        BusError::UnknownTopic(_) => StatusCode::NOT_FOUND,
        BusError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::CONFLICT,
    };
    // Admin callers are trusted (see `admin`): they get the whole chain.
    ApiError::new(status, crate::error::Chain(&error).to_string()).into_response()
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn rfc3339(ms: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

/// Records of a partition the group has not read yet.
fn waiting_after(position: &GroupPosition) -> i64 {
    position.end
        - position
            .committed
            .unwrap_or(position.start)
            .max(position.start)
}

// ---- replay ----------------------------------------------------------------------------------

/// What a rewind moved.
struct Rewound {
    /// Partitions whose position went back.
    partitions: u64,
    /// Records the group had read that it will read again.
    records: u64,
    /// Partitions that no longer keep every record from the asked offset on.
    not_kept: u64,
}

/// Moves the group of `sub` back to `from` on every partition. The subscription is stopped.
async fn rewind(
    deployment: &Deployment,
    sub: &SubscriptionConfig,
    from: TailFrom,
) -> Result<Rewound, BusError> {
    let bus = deployment.dispatcher().bus();
    let positions = bus.positions(&sub.topic, &sub.group).await?;
    let wanted: Vec<i64> = match from {
        TailFrom::Offset(offset) => vec![offset; positions.len()],
        TailFrom::Time(ms) => bus.offsets_at(&sub.topic, ms).await?,
        TailFrom::Beginning => positions.iter().map(|p| p.start).collect(),
        TailFrom::End => positions.iter().map(|p| p.end).collect(),
    };
    let mut rewound = Rewound {
        partitions: 0,
        records: 0,
        not_kept: 0,
    };
    let mut targets = Vec::new();
    for (position, wanted) in positions.iter().zip(wanted) {
        let target = wanted.clamp(position.start, position.end);
        // A group that never committed reads from the earliest kept record.
        let before = position.committed.unwrap_or(position.start);
        // Offsets start at 0: below the earliest kept one, records were dropped.
        if wanted < position.start {
            rewound.not_kept += 1;
        }
        if target < before {
            rewound.partitions += 1;
            rewound.records += (before - target) as u64;
        }
        targets.push((position.partition, target));
    }
    bus.set_positions(&sub.topic, &sub.group, targets).await?;
    Ok(rewound)
}

// ---- redrive ---------------------------------------------------------------------------------

/// What a redrive did.
struct SentBack {
    redriven: u64,
    /// Reference-only dead letters, as `topic/partition@offset`.
    skipped: Vec<String>,
    /// Dead letters of the subscription that the kind filter left out.
    left_out: u64,
}

/// Sends the dead letters of `sub` back to its topic, from where the last redrive stopped up to
/// the end of the dead-letter topic as it is now: letters dead-lettered meanwhile (even the
/// redriven ones, failing again) wait for the next redrive, so a redrive always ends.
///
/// Progress is the committed position of group `<group>.redrive` on the dead-letter topic,
/// moved past each batch of letters once it is sent: a second redrive does not send
/// them again. Letters of other subscriptions sharing the topic are passed over (they have
/// their own progress); so are letters the kind filter leaves out, for good.
async fn send_back(
    deployment: &Deployment,
    sub: &SubscriptionConfig,
    kind: Option<&str>,
) -> Result<SentBack, BusError> {
    let bus = deployment.dispatcher().bus();
    let progress = redrive_group(&sub.group);
    let positions = bus.positions(&sub.dead_letter, &progress).await?;
    let mut done = SentBack {
        redriven: 0,
        skipped: Vec::new(),
        left_out: 0,
    };
    for position in positions {
        let mut from = (position.committed.unwrap_or(position.start)).max(position.start);
        while from < position.end {
            let until = (from + REDRIVE_BATCH).min(position.end);
            let letters = bus
                .read(&sub.dead_letter, position.partition, from, until)
                .await?;
            send_batch(bus.as_ref(), sub, kind, &letters, &mut done).await?;
            let next = vec![(position.partition, until)];
            bus.set_positions(&sub.dead_letter, &progress, next).await?;
            from = until;
        }
    }
    Ok(done)
}

/// Sends back the letters of one batch that belong to `sub` (and are of `kind`, if given).
async fn send_batch(
    bus: &dyn Bus,
    sub: &SubscriptionConfig,
    kind: Option<&str>,
    letters: &[Record],
    done: &mut SentBack,
) -> Result<(), BusError> {
    let mut messages = Vec::new();
    for letter in letters {
        if header(letter, "eventhost-dlq-group") != Some(sub.group.as_str())
            || header(letter, "eventhost-dlq-topic") != Some(sub.topic.as_str())
        {
            continue;
        }
        if header(letter, DLQ_OMITTED_HEADER).is_some() {
            done.skipped.push(format!(
                "{}/{}@{}",
                letter.topic, letter.partition, letter.offset
            ));
            continue;
        }
        if kind.is_some_and(|kind| header(letter, "eventhost-dlq-kind") != Some(kind)) {
            done.left_out += 1;
            continue;
        }
        messages.push(original(letter, &sub.topic));
    }
    let count = messages.len() as u64;
    if count > 0 {
        bus.publish(messages).await?;
    }
    done.redriven += count;
    Ok(())
}

/// The record a dead letter came from, for `topic`: its key, value and headers, without the
/// dead letter's headers, and with the redrive count one up.
pub fn original(letter: &Record, topic: &str) -> OutMessage {
    // The dead letter's headers follow the original ones, starting with the reason.
    let end = (letter.headers.iter())
        .rposition(|(name, _)| name == DEAD_LETTER_FIRST)
        .unwrap_or(letter.headers.len());
    let count = header(letter, REDRIVE_COUNT_HEADER)
        .and_then(|c| c.parse::<u64>().ok())
        .unwrap_or(0);
    let mut headers: Vec<(String, Vec<u8>)> = letter.headers[..end]
        .iter()
        .filter(|(name, _)| !name.starts_with(DEAD_LETTER_PREFIX) && name != REDRIVE_COUNT_HEADER)
        .cloned()
        .collect();
    headers.push((
        REDRIVE_COUNT_HEADER.to_string(),
        (count + 1).to_string().into_bytes(),
    ));
    OutMessage {
        topic: topic.to_string(),
        key: letter.key.clone(),
        value: letter.value.clone(),
        headers,
    }
}

fn header<'r>(record: &'r Record, name: &str) -> Option<&'r str> {
    (record.headers.iter())
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

// ---- the commands' side ----------------------------------------------------------------------

/// Calls a repair route of the host at `addr` (`action`: pause, resume, replay or redrive)
/// and returns its report.
pub async fn call(
    addr: SocketAddr,
    token: Option<&str>,
    action: &str,
    query: &[(&str, &str)],
) -> anyhow::Result<RepairReport> {
    let query: Vec<String> = (query.iter())
        .map(|(name, value)| {
            let value: String =
                percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC)
                    .collect();
            format!("{name}={value}")
        })
        .collect();
    // A single plain HTTP/1.0 request, as `eventhost plugins` does.
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .context("connecting")?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!(
        "POST /admin/{action}?{} HTTP/1.0\r\nHost: eventhost\r\nContent-Length: 0\r\n{auth}\r\n",
        query.join("&")
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").context("malformed response")?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        let message = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| head.lines().next().unwrap_or_default().to_string());
        bail!("{message}");
    }
    serde_json::from_str(body).context("malformed report")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(headers: &[(&str, &str)]) -> Record {
        Record {
            topic: "orders.dlq".into(),
            partition: 0,
            offset: 7,
            key: Some(b"o-1".to_vec()),
            value: b"{}".to_vec(),
            headers: (headers.iter())
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect(),
            timestamp_ms: None,
        }
    }

    #[test]
    fn the_original_keeps_its_own_headers_and_counts_redrives() {
        let dead = letter(&[
            ("traceparent", "00-a-b-01"),
            ("eventhost-plugin", "cart"),
            ("eventhost-dlq-reason", "timed out"),
            ("eventhost-dlq-kind", "timeout"),
            ("eventhost-dlq-group", "payment-service"),
            ("eventhost-plugin", "payment"),
            ("eventhost-plugin-version", "abc"),
        ]);
        let sent = original(&dead, "orders");
        assert_eq!(sent.topic, "orders");
        assert_eq!(sent.key.as_deref(), Some(b"o-1".as_slice()));
        let names: Vec<(&str, &[u8])> = (sent.headers.iter())
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        assert_eq!(
            names,
            [
                ("traceparent", b"00-a-b-01".as_slice()),
                ("eventhost-plugin", b"cart"),
                ("eventhost-redrive-count", b"1"),
            ]
        );
        let again = letter(&[
            ("eventhost-redrive-count", "1"),
            ("eventhost-dlq-reason", "timed out"),
        ]);
        assert_eq!(
            original(&again, "orders").headers,
            [("eventhost-redrive-count".to_string(), b"2".to_vec())]
        );
    }
}
