//! Consumed records: two-stage handling for the bus's pipeline, retries with exponential
//! backoff, then the dead-letter topic.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use super::admission::Kind;
use super::commit::{CommitError, Committing, PLUGIN_HEADER, VERSION_HEADER};
use super::trace::{Span, TRACEPARENT};
use super::{Dispatcher, Input, InputError};
use crate::bus::{BusError, Finish, Handled, Outbox, Record, RecordHandler};
use crate::error::{Chain, cause};
use crate::runtime::{Delivery, LoadedPlugin, Message, OutMessage, Runtime};
use crate::state::{Consumed, OutboxEntry, PendingStore, StateStore};
use crate::telemetry::{InputSource, InputSpan};

/// What the dispatcher needs to know about one subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionSettings {
    /// The consumed topic.
    pub topic: String,
    /// The plugin that handles it.
    pub plugin: String,
    /// The consumer group.
    pub group: String,
    /// Where inputs go when they cannot be handled.
    pub dead_letter: String,
    /// Total tries per input, including the first.
    pub attempts: u32,
    /// Delay before the first retry; doubles with each retry.
    pub backoff: Duration,
    /// Upper bound of the delay.
    pub max_backoff: Duration,
    /// Inputs of one partition that may run at once (different keys only).
    pub concurrency: u32,
    /// Most inputs of one partition started and not yet committed.
    pub max_pending: u32,
}

impl SubscriptionSettings {
    /// How the subscription is named in health reports, e.g. `orders → payment (payment)`.
    pub fn name(&self) -> String {
        format!("{} → {} ({})", self.topic, self.plugin, self.group)
    }

    fn delay_before(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(2));
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// Bound of [`Subscribed::refused`]; records refused once and then never rerun (a rebalance)
/// would otherwise pile up.
const MAX_REMEMBERED_REFUSALS: usize = 1024;

/// A running subscription, as its records see it.
struct Subscribed {
    settings: SubscriptionSettings,
    /// Commits that failed in a row for want of the bus or the store: the next wait doubles.
    outages: AtomicU32,
    /// Records whose messages the bus refused once (partition, offset), to be sure on rerun.
    refused: Mutex<HashSet<(i32, i64)>>,
    shutdown: CancellationToken,
}

impl Dispatcher {
    /// The bus-facing handler of a subscription.
    pub fn record_handler(
        self: &Arc<Self>,
        settings: SubscriptionSettings,
        shutdown: CancellationToken,
    ) -> RecordHandler {
        let (concurrency, max_pending) = (settings.concurrency, settings.max_pending);
        let outbox = self.exactly_once.then(|| -> Arc<dyn Outbox> {
            Arc::new(StoreOutbox {
                store: self.pending.clone(),
                group: settings.group.clone(),
                topic: settings.topic.clone(),
            })
        });
        let dispatcher = self.clone();
        let sub = Arc::new(Subscribed {
            settings,
            outages: AtomicU32::new(0),
            refused: Mutex::default(),
            shutdown,
        });
        let handler =
            RecordHandler::pipelined(concurrency as usize, max_pending as usize, move |record| {
                dispatcher.clone().start(sub.clone(), record).boxed()
            });
        match outbox {
            Some(outbox) => handler.transactional(outbox),
            None => handler,
        }
    }

    /// Runs a record until its commit is past the first stage, then returns the wait for the
    /// rest; or handles it to the end (dead letter, shutdown) and returns that outcome.
    async fn start(self: Arc<Self>, sub: Arc<Subscribed>, record: Record) -> Finish {
        let settings = &sub.settings;
        let consumed = self.exactly_once.then(|| {
            let from = Consumed {
                group: settings.group.clone(),
                topic: record.topic.clone(),
                partition: record.partition,
            };
            (from, record.offset)
        });
        if let Some((from, offset)) = &consumed {
            match self.pending.applied(from, *offset) {
                // Applied before a crash (or by the partition's previous owner): the
                // transaction that commits its offset publishes it. Running it again would
                // apply it twice.
                Ok(true) => return Finish::now(Handled::Commit),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(input = %format!("{}/{}@{}", record.topic, record.partition, record.offset),
                        "cannot read the outbox, running again later: {}", Chain(&e));
                    return match sub.pause(settings.backoff).await {
                        true => Finish::now(Handled::Rerun),
                        false => Finish::now(Handled::Stop),
                    };
                }
            }
        }
        let id = format!("{}/{}/{}", record.topic, record.partition, record.offset);
        let input = Input {
            plugin: &settings.plugin,
            kind: Kind::Message,
            source: &settings.topic,
            id: &id,
            label: format!("{}/{}@{}", record.topic, record.partition, record.offset).into(),
            span: Span::continuing(
                (record.headers.iter())
                    .find(|(name, _)| name.eq_ignore_ascii_case(TRACEPARENT))
                    .map(|(_, value)| value.as_slice()),
            ),
            consumed,
        };
        let source = InputSource::Record {
            topic: &record.topic,
            group: &settings.group,
            partition: record.partition,
            offset: record.offset,
            key: record.key.as_deref(),
        };
        // One span from the first attempt to the outcome, whatever happens in between.
        let traced = self.telemetry.input(&input.span, &settings.plugin, source);
        let mut attempt = 1;
        let mut outage_delay = settings.backoff;
        loop {
            let delivery = Arc::new(to_delivery(&record, attempt));
            let call = move |runtime: Arc<Runtime>, loaded: Arc<LoadedPlugin>, label| {
                let delivery = delivery.clone();
                async move { runtime.handle_message(&loaded, &delivery, label).await }.boxed()
            };
            let error = match self.run(&input, &call).await {
                Ok(((), committing)) => {
                    return self.finish(sub, record, attempt, committing, traced);
                }
                Err(error) => error,
            };
            if let InputError::ShuttingDown = error {
                self.end_span(traced, &settings.plugin, Some(&error));
                return Finish::now(Handled::Stop);
            }
            self.finished(&settings.plugin, &settings.topic, Some(&error));
            tracing::warn!(plugin = %settings.plugin, input = %input.label, trace_id = %input.span.trace_id(),
                attempt, kind = error.kind(), "input failed: {}", Chain(&error));
            if matches!(error, InputError::Commit(_) | InputError::NoPlugin(_)) {
                // The handler succeeded but the bus or the store could not take its effects, or
                // the plugin is being replaced or removed: not the input's fault. Wait for them
                // without using up its attempts, so an outage never dead-letters good inputs.
                // Meanwhile the subscription shows as stalled.
                self.set_stalled(settings, Some(error.to_string()));
                if !sub.pause(outage_delay).await {
                    self.end_span(traced, &settings.plugin, Some(&error));
                    return Finish::now(Handled::Stop);
                }
                outage_delay = (outage_delay * 2).min(settings.max_backoff);
                continue;
            }
            if !error.is_retryable() || attempt >= settings.attempts {
                self.end_span(traced, &settings.plugin, Some(&error));
                return Finish::now(self.dead_letter(&sub, &record, &error, attempt).await);
            }
            attempt += 1;
            self.metrics.retry(&settings.plugin, &settings.topic);
            if !sub.pause(settings.delay_before(attempt)).await {
                self.end_span(traced, &settings.plugin, Some(&error));
                return Finish::now(Handled::Stop);
            }
        }
    }

    /// The second stage of a record: waits for its commit to settle.
    fn finish(
        self: Arc<Self>,
        sub: Arc<Subscribed>,
        record: Record,
        attempt: u32,
        committing: Committing,
        traced: InputSpan,
    ) -> Finish {
        Finish::later(async move {
            let settings = &sub.settings;
            let error = match committing.settled().await {
                Ok(()) => {
                    sub.outages.store(0, Ordering::Relaxed);
                    self.set_stalled(settings, None);
                    self.finished(&settings.plugin, &settings.topic, None);
                    self.end_span(traced, &settings.plugin, None);
                    return Handled::Commit;
                }
                // An earlier input this one may have read from did not commit: run again.
                Err(CommitError::Superseded | CommitError::Conflict) => {
                    if traced.is_recording() {
                        traced.end_for_rerun(&self.version(&settings.plugin));
                    }
                    return Handled::Rerun;
                }
                Err(e) => InputError::from(e),
            };
            self.finished(&settings.plugin, &settings.topic, Some(&error));
            self.end_span(traced, &settings.plugin, Some(&error));
            let input = format!("{}/{}@{}", record.topic, record.partition, record.offset);
            tracing::warn!(plugin = %settings.plugin, input = %input, kind = error.kind(), "input failed: {}", Chain(&error));
            if matches!(error, InputError::Refused(_)) {
                // The broker refuses a whole batch when one message is too large for it, so a
                // refusal is final only when the record's messages went alone: the rerun does.
                if sub.refused_before(&record) {
                    return self.dead_letter(&sub, &record, &error, attempt).await;
                }
                return Handled::Rerun;
            }
            self.set_stalled(settings, Some(error.to_string()));
            let outages = sub.outages.fetch_add(1, Ordering::Relaxed);
            let delay = settings
                .backoff
                .saturating_mul(2u32.saturating_pow(outages.min(16)))
                .min(settings.max_backoff);
            if sub.pause(delay).await {
                Handled::Rerun
            } else {
                Handled::Stop
            }
        })
    }

    /// Publishes the record to the dead-letter topic, retrying until the bus takes it: an
    /// input's offset is never committed before it is somewhere durable.
    async fn dead_letter(
        &self,
        subscribed: &Subscribed,
        record: &Record,
        error: &InputError,
        attempts: u32,
    ) -> Handled {
        let sub = &subscribed.settings;
        let version = self
            .registry
            .get(&sub.plugin)
            .map(|p| p.info.version.clone())
            .unwrap_or_else(|| "-".into());
        let reasons = dead_letter_headers(sub, record, error, attempts, &version);
        let mut message = OutMessage {
            topic: sub.dead_letter.clone(),
            key: record.key.clone(),
            value: record.value.clone(),
            headers: record
                .headers
                .iter()
                .cloned()
                .chain(reasons.clone())
                .collect(),
        };
        if (self.bus.max_message_bytes()).is_some_and(|max| message.size() > max) {
            message = reference_only(message, reasons.clone());
        }
        let input = format!("{}/{}@{}", record.topic, record.partition, record.offset);
        let mut delay = sub.backoff;
        loop {
            let sent = match self.exactly_once {
                true => self.dead_letter_to_outbox(sub, record, &message).await,
                false => self.bus.publish(vec![message.clone()]).await,
            };
            match sent {
                Ok(()) => {
                    tracing::warn!(plugin = %sub.plugin, input = %input,
                        dead_letter = %sub.dead_letter, "dead-lettered after {attempts} attempt(s): {}", Chain(error));
                    self.metrics.dead_letter(&sub.plugin, &sub.topic);
                    self.set_stalled(sub, None);
                    return Handled::Commit;
                }
                Err(e @ BusError::Refused { .. }) if !message.value.is_empty() => {
                    tracing::warn!(dead_letter = %sub.dead_letter, input = %input, "the dead letter was refused ({}); sending a reference to the original instead", Chain(&e));
                    message = reference_only(message, reasons.clone());
                    continue;
                }
                Err(e) => {
                    tracing::error!(dead_letter = %sub.dead_letter, "cannot dead-letter yet: {}", Chain(&e));
                    self.set_stalled(sub, Some(format!("cannot dead-letter {input}: {e}")));
                }
            }
            if !subscribed.pause(delay).await {
                return Handled::Stop;
            }
            delay = (delay * 2).min(sub.max_backoff);
        }
    }
}

impl Dispatcher {
    /// Stores an exactly-once record's dead letter as its outbox entry: published with its
    /// offset, once.
    async fn dead_letter_to_outbox(
        &self,
        sub: &SubscriptionSettings,
        record: &Record,
        message: &OutMessage,
    ) -> Result<(), BusError> {
        let entry = OutboxEntry {
            from: Consumed {
                group: sub.group.clone(),
                topic: record.topic.clone(),
                partition: record.partition,
            },
            offset: record.offset,
            messages: vec![message.clone()],
        };
        let ticket = self.pending.register(&sub.plugin, Vec::new());
        ticket
            .carrying(entry)
            .apply()
            .await
            .map_err(|e| BusError::unavailable("cannot store the dead letter", cause(e)))
    }
}

/// An exactly-once subscription's outbox, in the state store.
struct StoreOutbox {
    store: Arc<PendingStore>,
    group: String,
    topic: String,
}

impl StoreOutbox {
    fn consumed(&self, partition: i32) -> Consumed {
        Consumed {
            group: self.group.clone(),
            topic: self.topic.clone(),
            partition,
        }
    }
}

impl Outbox for StoreOutbox {
    fn messages(&self, partition: i32, from: i64, to: i64) -> Result<Vec<OutMessage>, BusError> {
        let entries = (self.store.outbox(&self.consumed(partition), from..=to))
            .map_err(|e| BusError::other("cannot read the outbox", cause(e)))?;
        Ok(entries.into_iter().flat_map(|e| e.messages).collect())
    }

    fn published(&self, partition: i32, offset: i64) -> Result<(), BusError> {
        (self
            .store
            .drop_outbox_below(&self.consumed(partition), offset))
        .map_err(|e| BusError::other("cannot trim the outbox", cause(e)))
    }
}

impl Subscribed {
    /// Whether `record` was refused before; remembers it otherwise.
    fn refused_before(&self, record: &Record) -> bool {
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        let position = (record.partition, record.offset);
        if refused.remove(&position) {
            return true;
        }
        if refused.len() >= MAX_REMEMBERED_REFUSALS {
            refused.clear();
        }
        refused.insert(position);
        false
    }

    /// Waits `delay`; false when shutdown came first.
    async fn pause(&self, delay: Duration) -> bool {
        tokio::select! {
            _ = self.shutdown.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}

/// Header of a dead letter that carries no payload, saying why and where the original is.
pub const DLQ_OMITTED_HEADER: &str = "eventhost-dlq-omitted";

/// A dead letter too large for the bus: the reasons and a reference to the original record
/// (its topic, partition and offset are in the reason headers), without its value or headers.
fn reference_only(message: OutMessage, reasons: Vec<(String, Vec<u8>)>) -> OutMessage {
    let size = message.size();
    let mut headers = reasons;
    headers.push((
        DLQ_OMITTED_HEADER.into(),
        format!("value and headers omitted: {size} bytes are more than the bus accepts; the original is at the eventhost-dlq-topic, -partition and -offset given").into_bytes(),
    ));
    OutMessage {
        topic: message.topic,
        key: message.key,
        value: Vec::new(),
        headers,
    }
}

/// The headers that say why a record was dead-lettered.
pub fn dead_letter_headers(
    sub: &SubscriptionSettings,
    record: &Record,
    error: &InputError,
    attempts: u32,
    version: &str,
) -> Vec<(String, Vec<u8>)> {
    [
        ("eventhost-dlq-reason", Chain(error).to_string()),
        ("eventhost-dlq-kind", error.kind().to_string()),
        ("eventhost-dlq-topic", record.topic.clone()),
        ("eventhost-dlq-partition", record.partition.to_string()),
        ("eventhost-dlq-offset", record.offset.to_string()),
        ("eventhost-dlq-group", sub.group.clone()),
        ("eventhost-dlq-attempts", attempts.to_string()),
        (PLUGIN_HEADER, sub.plugin.clone()),
        (VERSION_HEADER, version.to_string()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value.into_bytes()))
    .collect()
}

fn to_delivery(record: &Record, attempt: u32) -> Delivery {
    Delivery {
        message: Message {
            topic: record.topic.clone(),
            key: record.key.clone(),
            value: record.value.clone(),
            headers: record.headers.clone(),
        },
        partition: record.partition,
        offset: record.offset,
        timestamp_ms: record.timestamp_ms,
        attempt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let sub = SubscriptionSettings {
            topic: "t".into(),
            plugin: "p".into(),
            group: "g".into(),
            dead_letter: "t.dlq".into(),
            attempts: 10,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
            concurrency: 1,
            max_pending: 1,
        };
        let delays: Vec<_> = (2..=6).map(|a| sub.delay_before(a).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
    }
}
