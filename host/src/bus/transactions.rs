//! Exactly-once on Kafka: publishing an outbox together with the consumed offsets.
//!
//! An exactly-once subscription's records finish once their state writes and messages are in
//! the store (the outbox, see [`Outbox`]). Each partition's pipeline reports its watermark
//! here instead of storing an offset; one task per subscription then runs Kafka transactions:
//! the outbox messages of every partition from its committed offset up to its watermark, and
//! `send_offsets_to_transaction` with the consumer's group metadata (KIP-447, so a consumer
//! that lost its partitions cannot commit for them), then `commit_transaction`. Only after the
//! commit are the entries dropped from the outbox. Whatever fails in between (the host killed,
//! the broker gone, the transaction aborted) leaves the entries where they are, and the next
//! transaction, in this process or the next, publishes them again: a `read_committed` reader
//! sees each exactly once.
//!
//! A transaction holds whatever finished while the previous one committed, so under load one
//! commit carries many records; at low load a record is published as soon as it finishes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::kafka::kafka_headers;
use super::{BusError, Outbox};
use crate::error::{Chain, cause};

/// How long one step of a transaction may wait for the broker.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Most records of one partition published in one transaction.
const MAX_RECORDS_PER_TRANSACTION: i64 = 4096;
/// Upper bound of the wait between attempts while the broker refuses or is away.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

type TransactionalProducer = ThreadedProducer<DefaultProducerContext>;

/// Runs one subscription's transactions until every pipeline of it has ended (their senders
/// of `finished`, the watermarks, are gone) and what they finished is published.
pub(super) async fn publish<C: ConsumerContext + 'static>(
    producer_config: ClientConfig,
    consumer: Arc<StreamConsumer<C>>,
    topic: String,
    outbox: Arc<dyn Outbox>,
    mut finished: mpsc::UnboundedReceiver<(i32, i64)>,
) {
    let mut producer: Option<Arc<TransactionalProducer>> = None;
    // Per partition: the highest finished offset, and the first offset not yet published.
    let mut watermarks: BTreeMap<i32, i64> = BTreeMap::new();
    let mut published: BTreeMap<i32, i64> = BTreeMap::new();
    let mut open = true;
    let mut delay = Duration::from_millis(100);
    loop {
        let waiting = watermarks
            .iter()
            .any(|(p, mark)| published.get(p).is_none_or(|next| mark >= next));
        if !waiting {
            if !open {
                return;
            }
            match finished.recv().await {
                Some((partition, offset)) => note(&mut watermarks, partition, offset),
                None => open = false,
            }
        }
        while let Ok((partition, offset)) = finished.try_recv() {
            note(&mut watermarks, partition, offset);
        }
        // A partition taken away by a rebalance is its new owner's to publish (its outbox
        // entries stay in the store); offsets of it would fence the whole transaction.
        if let Ok(assigned) = consumer.assignment() {
            let owned = |p: &i32| assigned.find_partition(&topic, *p).is_some();
            watermarks.retain(|p, _| owned(p));
            published.retain(|p, _| owned(p));
        }
        let outcome = {
            let (config, consumer, topic) =
                (producer_config.clone(), consumer.clone(), topic.clone());
            let (outbox, watermarks, known) =
                (outbox.clone(), watermarks.clone(), published.clone());
            let current = producer.clone();
            tokio::task::spawn_blocking(move || {
                let producer = match current {
                    Some(producer) => producer,
                    None => match transactional_producer(&config) {
                        Ok(producer) => Arc::new(producer),
                        Err(e) => return Step::failed(None, e),
                    },
                };
                let result =
                    transaction(&producer, &*consumer, &topic, &*outbox, &watermarks, known);
                Step {
                    producer: Some(producer),
                    result,
                }
            })
            .await
            .unwrap_or_else(|join| {
                Step::failed(
                    None,
                    BusError::other("the transaction task failed", cause(join)),
                )
            })
        };
        match outcome.result {
            Ok(now_published) => {
                published = now_published;
                producer = outcome.producer;
                delay = Duration::from_millis(100);
            }
            Err(failure) => {
                tracing::warn!(
                    topic,
                    "transaction failed, publishing again in {delay:?}: {}",
                    Chain(&failure.error)
                );
                // A producer that cannot go on (fenced, or in a fatal state) is replaced; its
                // successor aborts whatever it left open.
                producer = if failure.keep_producer {
                    outcome.producer
                } else {
                    None
                };
                // What is committed may have moved (another owner); look it up again.
                published.clear();
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
        }
    }
}

fn note(watermarks: &mut BTreeMap<i32, i64>, partition: i32, offset: i64) {
    let mark = watermarks.entry(partition).or_insert(offset);
    *mark = (*mark).max(offset);
}

/// A transaction's outcome, with the producer to use next.
struct Step {
    producer: Option<Arc<TransactionalProducer>>,
    result: Result<BTreeMap<i32, i64>, Failure>,
}

struct Failure {
    error: BusError,
    /// The producer aborted the transaction and can begin the next one.
    keep_producer: bool,
}

impl Step {
    fn failed(producer: Option<Arc<TransactionalProducer>>, error: BusError) -> Self {
        Step {
            producer,
            result: Err(Failure {
                error,
                keep_producer: false,
            }),
        }
    }
}

fn transactional_producer(config: &ClientConfig) -> Result<TransactionalProducer, BusError> {
    let producer: TransactionalProducer = config
        .create()
        .map_err(|e| BusError::other("cannot create the transactional producer", cause(e)))?;
    // Fences an earlier producer with the same id (this host before a crash) and aborts its
    // open transaction, so readers need not wait for it to time out.
    producer
        .init_transactions(TRANSACTION_TIMEOUT)
        .map_err(|e| BusError::unavailable("cannot start transactions", cause(e)))?;
    Ok(producer)
}

/// Publishes every partition's outbox from its first unpublished offset to its watermark, with
/// the offsets, in one transaction; returns the new first unpublished offsets.
fn transaction<C: ConsumerContext>(
    producer: &TransactionalProducer,
    consumer: &StreamConsumer<C>,
    topic: &str,
    outbox: &dyn Outbox,
    watermarks: &BTreeMap<i32, i64>,
    mut published: BTreeMap<i32, i64>,
) -> Result<BTreeMap<i32, i64>, Failure> {
    let unknown: Vec<i32> = (watermarks.keys())
        .filter(|p| !published.contains_key(p))
        .copied()
        .collect();
    if !unknown.is_empty() {
        for (partition, next) in committed(consumer, topic, &unknown).map_err(keep)? {
            // Entries below the committed offset were published before a crash cut their
            // clean-up short.
            outbox.published(partition, next).map_err(keep)?;
            published.insert(partition, next);
        }
    }
    let work: Vec<(i32, i64, i64)> = watermarks
        .iter()
        .filter_map(|(&partition, &mark)| {
            let from = published[&partition];
            let to = mark.min(from + MAX_RECORDS_PER_TRANSACTION - 1);
            (to >= from).then_some((partition, from, to))
        })
        .collect();
    if work.is_empty() {
        return Ok(published);
    }
    let failed = |e: KafkaError| {
        let keep_producer = match &e {
            KafkaError::Transaction(t) if t.is_fatal() => false,
            _ => producer.abort_transaction(TRANSACTION_TIMEOUT).is_ok(),
        };
        Failure {
            error: BusError::unavailable("the transaction did not commit", cause(e)),
            keep_producer,
        }
    };
    producer.begin_transaction().map_err(|e| Failure {
        error: BusError::unavailable("cannot begin a transaction", cause(e)),
        keep_producer: false,
    })?;
    let mut offsets = TopicPartitionList::new();
    for &(partition, from, to) in &work {
        let messages = match outbox.messages(partition, from, to) {
            Ok(messages) => messages,
            Err(error) => {
                let keep_producer = producer.abort_transaction(TRANSACTION_TIMEOUT).is_ok();
                return Err(Failure {
                    error,
                    keep_producer,
                });
            }
        };
        for message in &messages {
            let mut record = BaseRecord::<[u8], [u8]>::to(&message.topic)
                .payload(&message.value)
                .headers(kafka_headers(message));
            if let Some(key) = &message.key {
                record = record.key(key);
            }
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err((e, _)) => return Err(failed(e)),
                }
            }
        }
        offsets
            .add_partition_offset(topic, partition, Offset::Offset(to + 1))
            .map_err(failed)?;
    }
    let Some(group) = consumer.group_metadata() else {
        let keep_producer = producer.abort_transaction(TRANSACTION_TIMEOUT).is_ok();
        return Err(Failure {
            error: BusError::unavailable("the consumer has no group metadata yet", None),
            keep_producer,
        });
    };
    producer
        .send_offsets_to_transaction(&offsets, &group, TRANSACTION_TIMEOUT)
        .map_err(failed)?;
    producer
        .commit_transaction(TRANSACTION_TIMEOUT)
        .map_err(failed)?;
    for (partition, _, to) in work {
        published.insert(partition, to + 1);
        if let Err(e) = outbox.published(partition, to + 1) {
            // Harmless: the next transaction or start-up drops them (they are below the
            // committed offset).
            tracing::warn!(
                topic,
                partition,
                "published outbox entries not dropped: {}",
                Chain(&e)
            );
        }
    }
    Ok(published)
}

fn keep(error: BusError) -> Failure {
    Failure {
        error,
        keep_producer: true,
    }
}

/// The group's committed offsets of `partitions` (0 where it has none).
fn committed<C: ConsumerContext>(
    consumer: &StreamConsumer<C>,
    topic: &str,
    partitions: &[i32],
) -> Result<Vec<(i32, i64)>, BusError> {
    let mut list = TopicPartitionList::new();
    for &partition in partitions {
        list.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(list, TRANSACTION_TIMEOUT)
        .map_err(|e| BusError::unavailable("cannot read the committed offsets", cause(e)))?;
    Ok(committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(next) => (e.partition(), next),
            _ => (e.partition(), 0),
        })
        .collect())
}
