//! The Kafka bus, on rdkafka (librdkafka).
//!
//! Guarantee: at-least-once. The producer is idempotent with `acks=all`, and a publish
//! resolves only when the broker acknowledged every message. Consumers run with
//! `enable.auto.offset.store=false`: an offset is stored (and later committed) only after the
//! handler finished the record and every record before it, i.e. after their messages were
//! acknowledged and their state written. A crash re-delivers at most the records handled
//! since the last commit.
//!
//! Each partition has its own queue and pipeline task, so partitions run in parallel and one
//! slow partition never blocks another. A revoked partition is released once the records its
//! pipeline took have finished (see `handover`), and its stored offsets are committed then and
//! at shutdown; offsets of partitions this consumer no longer owns are never stored.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
    stream_consumer::StreamPartitionQueue,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::handover::{HANDOVER_WAIT, Handover};
use super::pipeline::{self, PartitionSource};
use super::transactions;
use super::{
    Acks, Bus, BusError, GroupPosition, Health, Limit, Record, RecordHandler, Retention, TailFrom,
    TopicSpec,
};
use crate::error::{Chain, cause};
use crate::metrics::PartitionLag;
use crate::runtime::OutMessage;

/// Records a tail reader may have fetched and not yet taken.
const TAIL_BUFFER: usize = 256;
/// librdkafka's default `message.max.bytes`.
const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;
/// What a record's framing adds to its key, value and headers, at most (a generous bound).
const RECORD_OVERHEAD_BYTES: usize = 512;
/// How long a repair's look-up (positions, offsets by time, a commit) may wait for the broker.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long reading a range of a partition may take before it gives up.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Connection settings of the Kafka bus.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `bootstrap.servers`.
    pub bootstrap: String,
    /// `client.id`.
    pub client_id: String,
    /// This host's id when other hosts consume the same groups; it goes into the
    /// transactional ids, which must differ between hosts.
    pub instance: Option<String>,
    /// Raw librdkafka properties, applied last so they can override the defaults.
    pub options: BTreeMap<String, String>,
}

/// Tracks whether the brokers are reachable, from librdkafka's error events, and which
/// subscriptions could not start yet.
#[derive(Default)]
struct Reachability {
    problem: Mutex<Option<String>>,
    subscriptions: Mutex<BTreeMap<String, String>>,
}

impl Reachability {
    fn set(&self, problem: Option<String>) {
        *self.problem.lock().unwrap_or_else(|e| e.into_inner()) = problem;
    }

    fn set_subscription(&self, name: &str, problem: Option<String>) {
        let mut subscriptions = self.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
        match problem {
            Some(problem) => subscriptions.insert(name.to_string(), problem),
            None => subscriptions.remove(name),
        };
    }

    fn health(&self) -> Health {
        if let Some(problem) = &*self.problem.lock().unwrap_or_else(|e| e.into_inner()) {
            return Health::Degraded(problem.clone());
        }
        let subscriptions = self.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
        match subscriptions.iter().next() {
            Some((name, problem)) => Health::Degraded(format!("{name}: {problem}")),
            None => Health::Ok,
        }
    }
}

/// Consumer lag by (group, topic, partition), from the consumers' statistics.
type Lags = Mutex<BTreeMap<(String, String, i32), i64>>;

/// librdkafka callbacks: health from error events and statistics, consumer lag from
/// statistics, handover and commit of stored offsets on revoke.
#[derive(Clone)]
struct Context {
    reachability: Arc<Reachability>,
    /// The consumer group, for a consumer's context.
    group: Option<String>,
    lags: Arc<Lags>,
    /// A consumer's records in flight, per partition.
    handover: Arc<Handover>,
}

impl ClientContext for Context {
    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        if matches!(
            code,
            Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure)
        ) {
            self.reachability
                .set(Some(format!("kafka unreachable: {reason}")));
        }
        tracing::warn!("kafka: {error}: {reason}");
    }

    /// Every `statistics.interval.ms`: a real broker (not a bootstrap placeholder, whose node
    /// id is -1) in state UP means the cluster is reachable again, even when no record flows.
    fn stats(&self, statistics: Statistics) {
        if statistics
            .brokers
            .values()
            .any(|broker| broker.nodeid >= 0 && broker.state == "UP")
        {
            self.reachability.set(None);
        }
        if let Some(group) = &self.group {
            let mut lags = self.lags.lock().unwrap_or_else(|e| e.into_inner());
            lags.retain(|(g, _, _), _| g != group);
            for (topic, stats) in &statistics.topics {
                for (partition, stats) in &stats.partitions {
                    // -1: unknown, and partition -1 is librdkafka's internal one.
                    if *partition >= 0 && stats.consumer_lag >= 0 {
                        let key = (group.clone(), topic.clone(), *partition);
                        lags.insert(key, stats.consumer_lag);
                    }
                }
            }
        }
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            let revoked: Vec<(String, i32)> = (partitions.elements().iter())
                .map(|e| (e.topic().to_string(), e.partition()))
                .collect();
            let release = || self.handover.release(&revoked, HANDOVER_WAIT);
            // The callback runs on an async worker (inside the consumer's poll): hand its other
            // tasks to another thread while this one waits for the records to finish.
            let multi_thread = tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
            let busy = if multi_thread {
                tokio::task::block_in_place(release)
            } else {
                release()
            };
            if !busy.is_empty() {
                tracing::warn!(partitions = ?busy, "revoked partitions released with records \
                    still running after {HANDOVER_WAIT:?}; their next owner may run them again");
            }
            // Commit what was finished while we still own these partitions.
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) => tracing::info!(
                    partitions = partitions.count(),
                    "partitions revoked; offsets committed"
                ),
                Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                Err(e) => tracing::warn!("commit on revoke failed: {e}"),
            }
        }
    }
}

/// The Kafka [`Bus`].
pub struct KafkaBus {
    settings: KafkaSettings,
    producer: FutureProducer<Context>,
    reachability: Arc<Reachability>,
    lags: Arc<Lags>,
}

impl KafkaBus {
    /// Creates the producer. Connections are made lazily; nothing blocks here.
    pub fn new(settings: KafkaSettings) -> Result<Self, BusError> {
        let reachability = Arc::new(Reachability::default());
        let lags = Arc::new(Lags::default());
        let producer = settings
            .client_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "30000")
            .set_all(&settings.options)
            .create_with_context(Context {
                reachability: reachability.clone(),
                group: None,
                lags: lags.clone(),
                handover: Arc::default(),
            })
            .map_err(|e| BusError::other("cannot create the kafka producer", cause(e)))?;
        Ok(KafkaBus {
            settings,
            producer,
            reachability,
            lags,
        })
    }

    /// A consumer of `group`. A transactional one commits nothing itself (its offsets go into
    /// the transactions) and reads only committed transactions.
    fn consumer(
        &self,
        group: &str,
        transactional: bool,
    ) -> Result<Arc<StreamConsumer<Context>>, BusError> {
        let mut config = self.settings.client_config();
        config
            .set("group.id", group)
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false");
        if transactional {
            config
                .set("enable.auto.commit", "false")
                .set("isolation.level", "read_committed");
        } else {
            config
                .set("enable.auto.commit", "true")
                .set("auto.commit.interval.ms", "1000");
        }
        let consumer: StreamConsumer<Context> = config
            .set_all(&self.settings.options)
            .create_with_context(Context {
                reachability: self.reachability.clone(),
                group: Some(group.to_string()),
                lags: self.lags.clone(),
                handover: Arc::default(),
            })
            .map_err(|e| BusError::other("cannot create the kafka consumer", cause(e)))?;
        Ok(Arc::new(consumer))
    }

    /// A consumer for the repairs' look-ups and commits as `group`. It is assigned partitions
    /// at most, never subscribes, so it never joins the group nor moves a running member's
    /// partitions. Its calls block.
    fn plain_consumer(&self, group: &str) -> Result<BaseConsumer, BusError> {
        self.settings
            .client_config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set_all(&self.settings.options)
            .create()
            .map_err(|e| BusError::other("cannot create the kafka consumer", cause(e)))
    }

    /// Runs `work` with a plain consumer of `group`, off the async runtime.
    fn blocking<T: Send + 'static>(
        &self,
        group: &str,
        work: impl FnOnce(BaseConsumer) -> Result<T, BusError> + Send + 'static,
    ) -> BoxFuture<'_, Result<T, BusError>> {
        let consumer = self.plain_consumer(group);
        async move {
            let consumer = consumer?;
            tokio::task::spawn_blocking(move || work(consumer))
                .await
                .map_err(|e| BusError::other("the consumer task failed", cause(e)))?
        }
        .boxed()
    }
}

impl KafkaSettings {
    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("client.id", &self.client_id)
            // Broker states for `Context::stats`, which clears a degraded health.
            .set("statistics.interval.ms", "1000");
        config
    }
}

trait SetAll {
    fn set_all(&mut self, options: &BTreeMap<String, String>) -> &mut Self;
}

impl SetAll for ClientConfig {
    fn set_all(&mut self, options: &BTreeMap<String, String>) -> &mut Self {
        for (key, value) in options {
            self.set(key, value);
        }
        self
    }
}

impl Bus for KafkaBus {
    fn ensure_topics(&self, topics: Vec<TopicSpec>) -> BoxFuture<'_, Result<(), BusError>> {
        async move {
            let admin: AdminClient<DefaultClientContext> =
                self.settings.client_config().create().map_err(|e| {
                    BusError::other("cannot create the kafka admin client", cause(e))
                })?;
            let configs: Vec<Vec<(&str, String)>> = topics
                .iter()
                .map(|t| retention_configs(&t.retention))
                .collect();
            let new: Vec<NewTopic<'_>> = topics
                .iter()
                .zip(&configs)
                .map(|(t, configs)| {
                    let mut topic = NewTopic::new(
                        &t.name,
                        t.partitions as i32,
                        TopicReplication::Fixed(i32::from(t.replication)),
                    );
                    for (key, value) in configs {
                        topic = topic.set(key, value);
                    }
                    topic
                })
                .collect();
            let options = AdminOptions::new()
                .operation_timeout(Some(Timeout::After(Duration::from_secs(30))));
            let results = admin
                .create_topics(&new, &options)
                .await
                .map_err(|e| BusError::unavailable("cannot create topics", cause(e)))?;
            for result in results {
                match result {
                    Ok(name) => tracing::info!(topic = %name, "created topic"),
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((name, code)) => {
                        return Err(BusError::other(
                            format!("cannot create topic {name}"),
                            cause(code),
                        ));
                    }
                }
            }
            Ok(())
        }
        .boxed()
    }

    fn enqueue(&self, messages: Vec<OutMessage>) -> BoxFuture<'_, Result<Acks, BusError>> {
        async move {
            // librdkafka keeps the order of enqueued records per partition; acknowledgements
            // are awaited separately, so later inputs can enqueue meanwhile.
            let mut deliveries = Vec::with_capacity(messages.len());
            for message in &messages {
                let mut record = FutureRecord::to(&message.topic)
                    .payload(&message.value)
                    .headers(kafka_headers(message));
                if let Some(key) = &message.key {
                    record = record.key(key);
                }
                loop {
                    match self.producer.send_result(record) {
                        Ok(delivery) => break deliveries.push(delivery),
                        Err((
                            KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                            returned,
                        )) => {
                            record = returned;
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        Err((e, _)) => return Err(publish_error(e)),
                    }
                }
            }
            let reachability = self.reachability.clone();
            let acks = async move {
                for delivery in deliveries {
                    match delivery.await {
                        Ok(Ok(_)) => {}
                        Ok(Err((e, _))) => return Err(publish_error(e)),
                        Err(_) => {
                            return Err(BusError::unavailable(
                                "the producer dropped the delivery",
                                None,
                            ));
                        }
                    }
                }
                reachability.set(None);
                Ok(())
            };
            Ok(acks.boxed())
        }
        .boxed()
    }

    fn subscribe(
        &self,
        topic: &str,
        group: &str,
        handler: RecordHandler,
        shutdown: CancellationToken,
    ) -> Result<JoinHandle<()>, BusError> {
        let consumer = self.consumer(group, handler.outbox.is_some())?;
        // One transactional id per subscription of this host: a restarted host fences its
        // earlier self and aborts what it left open.
        let id = match &self.settings.instance {
            Some(host) => format!("{}-{host}-{group}-{topic}", self.settings.client_id),
            None => format!("{}-{group}-{topic}", self.settings.client_id),
        };
        let mut transactional = self.settings.client_config();
        transactional
            .set("transactional.id", id)
            .set_all(&self.settings.options)
            // Its context is librdkafka's default, which would log every statistics report.
            .set("statistics.interval.ms", "0");
        let (topic, group) = (topic.to_string(), group.to_string());
        let problems = self.reachability.clone();
        Ok(tokio::spawn(async move {
            // Metadata calls block: run them off the async runtime, and retry until the
            // topic is there (a failed attempt shows in health meanwhile).
            let mut delay = Duration::from_millis(200);
            let partitions = loop {
                let (c, t) = (consumer.clone(), topic.clone());
                let found = tokio::task::spawn_blocking(move || partition_count(&*c, &t)).await;
                let error = match found {
                    Ok(Ok(partitions)) => break partitions,
                    Ok(Err(e)) => e,
                    Err(join) => BusError::other("the subscribe task failed", cause(join)),
                };
                let key = format!("subscription {topic} ({group})");
                tracing::warn!(
                    topic,
                    group,
                    "cannot subscribe yet, retrying in {delay:?}: {}",
                    Chain(&error)
                );
                problems.set_subscription(&key, Some(error.to_string()));
                tokio::select! {
                    // Stopped (paused, removed): its problem goes with it.
                    _ = shutdown.cancelled() => {
                        problems.set_subscription(&key, None);
                        return;
                    }
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(30));
            };
            problems.set_subscription(&format!("subscription {topic} ({group})"), None);
            if let Err(e) = consume(
                consumer,
                &topic,
                &group,
                partitions,
                handler,
                transactional,
                shutdown,
            )
            .await
            {
                tracing::error!(topic, group, "subscription failed: {}", Chain(&e));
                problems.set_subscription(
                    &format!("subscription {topic} ({group})"),
                    Some(e.to_string()),
                );
            }
        }))
    }

    fn tail(
        &self,
        topic: &str,
        from: TailFrom,
    ) -> BoxFuture<'_, Result<mpsc::Receiver<Record>, BusError>> {
        let topic = topic.to_string();
        async move {
            // A group of its own that never commits: no subscription is affected. Its problems
            // stay out of the host's health.
            let consumer: StreamConsumer<Context> = self
                .settings
                .client_config()
                .set(
                    "group.id",
                    format!("eventhost-tail-{}", uuid::Uuid::new_v4()),
                )
                .set("enable.auto.commit", "false")
                .set("enable.partition.eof", "false")
                .set_all(&self.settings.options)
                .create_with_context(Context {
                    reachability: Arc::default(),
                    group: None,
                    lags: Arc::default(),
                    handover: Arc::default(),
                })
                .map_err(|e| BusError::other("cannot create the kafka consumer", cause(e)))?;
            let consumer = Arc::new(consumer);
            let (c, t) = (consumer.clone(), topic.clone());
            tokio::task::spawn_blocking(move || assign_for_tail(&c, &t, from))
                .await
                .map_err(|e| BusError::other("the tail task failed", cause(e)))??;
            let (records, receiver) = mpsc::channel(TAIL_BUFFER);
            tokio::spawn(async move {
                loop {
                    let message = tokio::select! {
                        _ = records.closed() => return,
                        message = consumer.recv() => message,
                    };
                    match message {
                        Ok(message) => {
                            if records.send(to_record(&message)).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => tracing::debug!(topic, "tail: {e}"),
                    }
                }
            });
            Ok(receiver)
        }
        .boxed()
    }

    fn positions(
        &self,
        topic: &str,
        group: &str,
    ) -> BoxFuture<'_, Result<Vec<GroupPosition>, BusError>> {
        let topic = topic.to_string();
        self.blocking(group, move |consumer| {
            let partitions = partition_count(&consumer, &topic)? as i32;
            let mut list = TopicPartitionList::new();
            for partition in 0..partitions {
                list.add_partition(&topic, partition);
            }
            let committed = consumer
                .committed_offsets(list, LOOKUP_TIMEOUT)
                .map_err(|e| BusError::unavailable("committed offsets", cause(e)))?;
            (0..partitions)
                .map(|partition| {
                    let (start, end) = consumer
                        .fetch_watermarks(&topic, partition, LOOKUP_TIMEOUT)
                        .map_err(|e| {
                            BusError::unavailable(format!("offsets of {topic}"), cause(e))
                        })?;
                    let committed = (committed.find_partition(&topic, partition)).and_then(|e| {
                        match e.offset() {
                            Offset::Offset(next) => Some(next),
                            _ => None,
                        }
                    });
                    Ok(GroupPosition {
                        partition,
                        start,
                        end,
                        committed,
                    })
                })
                .collect()
        })
    }

    fn offsets_at(&self, topic: &str, ms: i64) -> BoxFuture<'_, Result<Vec<i64>, BusError>> {
        let topic = topic.to_string();
        let group = format!("eventhost-lookup-{}", uuid::Uuid::new_v4());
        self.blocking(&group, move |consumer| {
            let partitions = partition_count(&consumer, &topic)? as i32;
            let mut list = TopicPartitionList::new();
            for partition in 0..partitions {
                list.add_partition_offset(&topic, partition, Offset::Offset(ms))
                    .map_err(|e| {
                        BusError::other(format!("cannot look up {topic} at {ms}"), cause(e))
                    })?;
            }
            let found = consumer
                .offsets_for_times(list, LOOKUP_TIMEOUT)
                .map_err(|e| {
                    BusError::unavailable(format!("offsets of {topic} by time"), cause(e))
                })?;
            (0..partitions)
                .map(|partition| {
                    match found.find_partition(&topic, partition).map(|e| e.offset()) {
                        Some(Offset::Offset(offset)) => Ok(offset),
                        // No record at or after that time: the end.
                        _ => consumer
                            .fetch_watermarks(&topic, partition, LOOKUP_TIMEOUT)
                            .map(|(_, end)| end)
                            .map_err(|e| {
                                BusError::unavailable(format!("offsets of {topic}"), cause(e))
                            }),
                    }
                })
                .collect()
        })
    }

    /// The broker takes a commit from outside the group only while the group has no member:
    /// a consumer that just left may take a moment to be gone, so this tries a few times.
    fn set_positions(
        &self,
        topic: &str,
        group: &str,
        positions: Vec<(i32, i64)>,
    ) -> BoxFuture<'_, Result<(), BusError>> {
        let (topic, group_name) = (topic.to_string(), group.to_string());
        self.blocking(group, move |consumer| {
            let mut list = TopicPartitionList::new();
            for (partition, next) in positions {
                list.add_partition_offset(&topic, partition, Offset::Offset(next))
                    .map_err(|e| {
                        BusError::other(format!("cannot set {topic} to {next}"), cause(e))
                    })?;
            }
            let mut tries = 0;
            loop {
                match consumer.commit(&list, CommitMode::Sync) {
                    Ok(()) => return Ok(()),
                    Err(e) if tries < 10 => {
                        tracing::debug!(topic, group = group_name, "commit refused, retrying: {e}");
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(500));
                    }
                    Err(e) => {
                        return Err(BusError::other(
                            format!(
                                "cannot commit offsets of group {group_name:?} on {topic} (does \
                                 another consumer of the group still run?)"
                            ),
                            cause(e),
                        ));
                    }
                }
            }
        })
    }

    fn read(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        until: i64,
    ) -> BoxFuture<'_, Result<Vec<Record>, BusError>> {
        let topic = topic.to_string();
        let group = format!("eventhost-read-{}", uuid::Uuid::new_v4());
        self.blocking(&group, move |consumer| {
            let mut records = Vec::new();
            if from >= until {
                return Ok(records);
            }
            let mut list = TopicPartitionList::new();
            list.add_partition_offset(&topic, partition, Offset::Offset(from))
                .map_err(|e| BusError::other(format!("cannot read {topic} from {from}"), cause(e)))?;
            consumer
                .assign(&list)
                .map_err(|e| BusError::other(format!("cannot assign {topic}"), cause(e)))?;
            let deadline = std::time::Instant::now() + READ_TIMEOUT;
            while std::time::Instant::now() < deadline {
                match consumer.poll(Duration::from_millis(500)) {
                    Some(Ok(message)) => {
                        let record = to_record(&message);
                        let last = record.offset >= until - 1;
                        if record.offset < until {
                            records.push(record);
                        }
                        if last {
                            return Ok(records);
                        }
                    }
                    Some(Err(e)) => tracing::debug!(topic, partition, "read: {e}"),
                    None => {}
                }
            }
            Err(BusError::unavailable(
                format!(
                    "reading {topic}/{partition} from {from} to {until} took longer than {READ_TIMEOUT:?}"
                ),
                None,
            ))
        })
    }

    fn max_message_bytes(&self) -> Option<usize> {
        let configured =
            (self.settings.options.get("message.max.bytes")).and_then(|v| v.parse::<usize>().ok());
        // librdkafka counts a record's framing too; leave room for it.
        Some(configured.unwrap_or(DEFAULT_MESSAGE_MAX_BYTES) - RECORD_OVERHEAD_BYTES)
    }

    fn lag(&self) -> Vec<PartitionLag> {
        let lags = self.lags.lock().unwrap_or_else(|e| e.into_inner());
        lags.iter()
            .map(|((group, topic, partition), records)| PartitionLag {
                group: group.clone(),
                topic: topic.clone(),
                partition: *partition,
                records: *records,
            })
            .collect()
    }

    fn health(&self) -> Health {
        self.reachability.health()
    }
}

/// Assigns every partition of `topic` to `consumer`, starting `from` there. Blocking.
fn assign_for_tail(
    consumer: &StreamConsumer<Context>,
    topic: &str,
    from: TailFrom,
) -> Result<(), BusError> {
    let partitions = partition_count(consumer, topic)? as i32;
    let start = match from {
        TailFrom::End => Offset::End,
        TailFrom::Beginning => Offset::Beginning,
        TailFrom::Offset(offset) => Offset::Offset(offset),
        // Looked up below: the timestamp stands where the offset will be.
        TailFrom::Time(ms) => Offset::Offset(ms),
    };
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition_offset(topic, partition, start)
            .map_err(|e| BusError::other(format!("cannot start {topic} at {start:?}"), cause(e)))?;
    }
    if let TailFrom::Time(_) = from {
        list = consumer
            .offsets_for_times(list, Duration::from_secs(10))
            .map_err(|e| BusError::unavailable(format!("offsets of {topic} by time"), cause(e)))?;
    }
    consumer
        .assign(&list)
        .map_err(|e| BusError::other(format!("cannot assign {topic}"), cause(e)))
}

/// How many partitions `topic` has, from the broker's metadata. Blocking.
fn partition_count<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    topic: &str,
) -> Result<usize, BusError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| BusError::unavailable(format!("metadata of {topic}"), cause(e)))?;
    metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len())
        .filter(|n| *n > 0)
        .ok_or_else(|| BusError::UnknownTopic(topic.to_string()))
}

/// How long a wait for a queue (a partition's, or the consumer's own, which also serves
/// rebalances) lasts before the queue is looked at again. rdkafka wakes a waiting stream only
/// when its queue turns non-empty, and such a wake-up can be missed (seen after a broker
/// restart): the stream then slept for good while records piled up. Looking again is a cheap
/// poll of an empty queue.
const MISSED_WAKEUP: Duration = Duration::from_millis(500);

/// Where a partition's finished offsets go.
#[derive(Clone)]
enum Committer {
    /// Stored on the consumer, for its next commit.
    Store(Arc<StreamConsumer<Context>>),
    /// To the subscription's transactions (exactly-once).
    Transactions(mpsc::UnboundedSender<(i32, i64)>),
}

impl Committer {
    fn commit(&self, topic: &str, partition: i32, offset: i64) {
        match self {
            Committer::Store(consumer) => store_offset(consumer, topic, partition, offset),
            Committer::Transactions(finished) => {
                let _ = finished.send((partition, offset));
            }
        }
    }
}

/// One partition's own queue, split off the consumer's main queue.
struct PartitionQueue {
    committer: Committer,
    handover: Arc<Handover>,
    queue: StreamPartitionQueue<Context>,
    topic: String,
    partition: i32,
    reachability: Arc<Reachability>,
}

impl PartitionSource for PartitionQueue {
    fn next(&mut self) -> BoxFuture<'_, Option<Record>> {
        async move {
            loop {
                let Ok(received) = tokio::time::timeout(MISSED_WAKEUP, self.queue.recv()).await
                else {
                    continue;
                };
                match received {
                    Ok(message) => {
                        self.reachability.set(None);
                        let record = to_record(&message);
                        (self.handover).taken(&self.topic, self.partition, record.offset);
                        return Some(record);
                    }
                    Err(e) => {
                        let (topic, partition) = (&self.topic, self.partition);
                        tracing::warn!(topic, partition, "consume error: {e}");
                    }
                }
            }
        }
        .boxed()
    }

    fn commit(&mut self, offset: i64) {
        self.committer.commit(&self.topic, self.partition, offset);
        (self.handover).finished(&self.topic, self.partition, offset);
    }
}

/// A partition added to the topic while consuming: its records come through the main queue.
struct AddedPartition {
    committer: Committer,
    handover: Arc<Handover>,
    records: mpsc::Receiver<Record>,
    topic: String,
    partition: i32,
}

impl PartitionSource for AddedPartition {
    fn next(&mut self) -> BoxFuture<'_, Option<Record>> {
        async move {
            let record = self.records.recv().await?;
            (self.handover).taken(&self.topic, self.partition, record.offset);
            Some(record)
        }
        .boxed()
    }

    fn commit(&mut self, offset: i64) {
        self.committer.commit(&self.topic, self.partition, offset);
        (self.handover).finished(&self.topic, self.partition, offset);
    }
}

/// Stores `offset` for the next commit. librdkafka commits `offset + 1`, the next record to
/// read. This fails harmlessly if the partition was revoked meanwhile: its new owner
/// re-delivers the record (at-least-once).
fn store_offset(consumer: &StreamConsumer<Context>, topic: &str, partition: i32, offset: i64) {
    if let Err(e) = consumer.store_offset(topic, partition, offset) {
        tracing::debug!(topic, partition, "offset not stored: {e}");
    }
}

/// Consumes `topic` with one pipeline per partition until `shutdown`, then commits.
async fn consume(
    consumer: Arc<StreamConsumer<Context>>,
    topic: &str,
    group: &str,
    partitions: usize,
    handler: RecordHandler,
    transactional: ClientConfig,
    shutdown: CancellationToken,
) -> Result<(), BusError> {
    let closer = Closer::new(consumer.clone());
    let reachability = consumer.context().reachability.clone();
    let (committer, transactions) = match &handler.outbox {
        None => (Committer::Store(consumer.clone()), None),
        Some(outbox) => {
            let (finished, watermarks) = mpsc::unbounded_channel();
            let publishing = transactions::publish(
                transactional,
                consumer.clone(),
                topic.to_string(),
                outbox.clone(),
                watermarks,
            );
            (
                Committer::Transactions(finished),
                Some(tokio::spawn(publishing)),
            )
        }
    };
    // Once shutting down, a revoke (the final one included) no longer waits for records.
    tokio::spawn({
        let (handover, shutdown) = (consumer.context().handover.clone(), shutdown.clone());
        async move {
            shutdown.cancelled().await;
            handover.close();
        }
    });
    // Split every partition off the main queue before subscribing, so no record of this
    // topic is ever delivered through the shared queue.
    let mut tasks = Vec::new();
    for partition in 0..partitions as i32 {
        let queue = consumer
            .split_partition_queue(topic, partition)
            .ok_or_else(|| BusError::other(format!("cannot split {topic}/{partition}"), None))?;
        let source = PartitionQueue {
            committer: committer.clone(),
            handover: consumer.context().handover.clone(),
            queue,
            topic: topic.to_string(),
            partition,
            reachability: reachability.clone(),
        };
        tasks.push(tokio::spawn(pipeline::drive(
            source,
            handler.clone(),
            shutdown.clone(),
        )));
    }
    consumer
        .subscribe(&[topic])
        .map_err(|e| BusError::other(format!("cannot subscribe to {topic}"), cause(e)))?;
    // The main queue serves rebalances and errors, and the records of partitions added to the
    // topic after the split: each of those gets a pipeline fed from here.
    let events = {
        let (consumer, shutdown, topic) = (consumer.clone(), shutdown.clone(), topic.to_string());
        let committer = committer.clone();
        tokio::spawn(async move {
            let mut added: BTreeMap<i32, mpsc::Sender<Record>> = BTreeMap::new();
            let mut tasks = Vec::new();
            loop {
                let record = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    message = tokio::time::timeout(MISSED_WAKEUP, consumer.recv()) => match message {
                        Err(_) => continue,
                        Ok(Ok(m)) => to_record(&m),
                        Ok(Err(e)) => {
                            tracing::debug!("consumer event: {e}");
                            continue;
                        }
                    },
                };
                let partition = record.partition;
                let feed = added.entry(partition).or_insert_with(|| {
                    if partition < partitions as i32 {
                        // Its own queue was split off at start: two pipelines now consume it.
                        tracing::warn!(
                            topic,
                            partition,
                            "records of a partition with a queue \
                            of its own arrive on the main queue"
                        );
                    }
                    tracing::info!(topic, partition, "consuming a partition added to the topic");
                    let (feed, records) = mpsc::channel(handler.max_pending);
                    let source = AddedPartition {
                        committer: committer.clone(),
                        handover: consumer.context().handover.clone(),
                        records,
                        topic: topic.clone(),
                        partition,
                    };
                    tasks.push(tokio::spawn(pipeline::drive(
                        source,
                        handler.clone(),
                        shutdown.clone(),
                    )));
                    feed
                });
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = feed.send(record) => {}
                }
            }
            drop(added);
            for task in tasks {
                let _ = task.await;
            }
        })
    };
    drop(committer);
    for task in tasks {
        let _ = task.await;
    }
    let _ = events.await;
    // Every pipeline has ended: the transactions publish what they finished, then end.
    if let Some(transactions) = transactions {
        let _ = transactions.await;
    }
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => tracing::warn!(topic, group, "final commit failed: {e}"),
    }
    consumer.unsubscribe();
    {
        let mut lags = consumer
            .context()
            .lags
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        lags.retain(|(g, t, _), _| !(g == group && t == topic));
    }
    drop(consumer);
    closer.close(CLOSE_WAIT).await;
    Ok(())
}

/// How long a stopping subscription waits for its consumer to leave its group.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// Closes a consumer (leaves its group) off the async runtime. rdkafka closes a consumer when
/// its last reference goes, polling until librdkafka reports it closed. When a runtime dropped
/// a subscription's tasks mid-flight (a runtime shut down without stopping the subscription
/// first) that loop was seen never to end, holding the runtime's shutdown with it. So the last
/// reference is dropped on a thread of its own, once every other holder (the partition queues,
/// the commit path) let go; a stopping subscription waits for it, within a bound.
struct Closer(Option<Arc<StreamConsumer<Context>>>);

impl Closer {
    fn new(consumer: Arc<StreamConsumer<Context>>) -> Self {
        Closer(Some(consumer))
    }

    /// Starts the close; the receiver hears once the consumer is closed.
    fn start(&mut self) -> Option<tokio::sync::oneshot::Receiver<()>> {
        let consumer = self.0.take()?;
        let (closed, receiver) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("kafka-close".into())
            .spawn(move || {
                while Arc::strong_count(&consumer) > 1 {
                    std::thread::sleep(Duration::from_millis(20));
                }
                drop(consumer);
                let _ = closed.send(());
            });
        spawned.ok().map(|_| receiver)
    }

    /// Closes the consumer, waiting at most `within`.
    async fn close(mut self, within: Duration) {
        if let Some(closed) = self.start()
            && tokio::time::timeout(within, closed).await.is_err()
        {
            tracing::warn!("the consumer did not leave its group within {within:?}");
        }
    }
}

impl Drop for Closer {
    fn drop(&mut self) {
        self.start();
    }
}

/// A message's headers as Kafka record headers.
pub(super) fn kafka_headers(message: &OutMessage) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new_with_capacity(message.headers.len());
    for (key, value) in &message.headers {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
    }
    headers
}

/// Sorts a produce error: refusals that no retry can fix, or an outage.
fn publish_error(error: KafkaError) -> BusError {
    use RDKafkaErrorCode as Code;
    let permanent = matches!(
        error.rdkafka_error_code(),
        Some(
            Code::MessageSizeTooLarge
                | Code::InvalidMessageSize
                | Code::MessageBatchTooLarge
                | Code::UnknownTopicOrPartition
                | Code::UnknownTopic
                | Code::TopicAuthorizationFailed
                | Code::ClusterAuthorizationFailed
                | Code::InvalidRecord
                | Code::InvalidTopic
        )
    );
    if permanent {
        BusError::refused("the broker refused the message", cause(error))
    } else {
        BusError::unavailable("the message was not delivered", cause(error))
    }
}

/// The topic configs for the retention limits set in the config; the broker's defaults stand
/// for the others.
fn retention_configs(retention: &Retention) -> Vec<(&'static str, String)> {
    let value = |limit: Limit<u64>| match limit {
        Limit::BusDefault => None,
        Limit::Unlimited => Some("-1".to_string()),
        Limit::At(value) => Some(value.to_string()),
    };
    [
        ("retention.bytes", value(retention.bytes)),
        (
            "retention.ms",
            value(retention.age.map(|age| age.as_millis() as u64)),
        ),
    ]
    .into_iter()
    .filter_map(|(key, value)| Some((key, value?)))
    .collect()
}

fn to_record(message: &impl rdkafka::Message) -> Record {
    let headers = message
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default();
    Record {
        topic: message.topic().to_string(),
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().unwrap_or_default().to_vec(),
        headers,
        timestamp_ms: message.timestamp().to_millis(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn produce_errors_are_sorted_and_keep_the_client_error() {
        let refused = publish_error(KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge,
        ));
        assert!(matches!(refused, BusError::Refused { .. }));
        let source = std::error::Error::source(&refused).expect("the client error is kept");
        let kafka = source.downcast_ref::<KafkaError>().expect("a KafkaError");
        assert_eq!(
            kafka.rdkafka_error_code(),
            Some(RDKafkaErrorCode::MessageSizeTooLarge)
        );

        let outage = publish_error(KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageTimedOut,
        ));
        assert!(matches!(outage, BusError::Unavailable { .. }));
        let chain = Chain(&outage).to_string();
        let expected = "bus unavailable: the message was not delivered: ";
        assert!(chain.starts_with(expected), "{chain}");
        assert!(chain.contains("timed out"), "{chain}");
    }
}
