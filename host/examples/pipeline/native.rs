//! The native baseline: the payment service in plain Rust on rdkafka, with the guarantee the
//! host gives, written the way one would for production rather than one round trip per event.
//!
//! - At-least-once (`run_at_least_once`): an order's offset is stored (and auto-committed) only
//!   once its result is acknowledged by the broker (`acks=all`, idempotent producer). Results are
//!   produced without waiting; an in-order watermark per partition decides how far offsets may be
//!   stored, so a crash re-delivers every order whose result might be missing.
//! - Exactly-once (`run_exactly_once`): results and consumed offsets go into one Kafka
//!   transaction (`send_offsets_to_transaction`, fenced by the consumer group's metadata),
//!   committed every 100 ms as Kafka Streams' `exactly_once_v2` does by default; a
//!   `read_committed` consumer sees each result once.

use std::collections::{BTreeSet, HashMap};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, FutureProducer, FutureRecord};
use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::broker::Topics;
use crate::{Guarantee, orders};

/// Results awaiting acknowledgement at most; bounds memory and stays well below librdkafka's
/// producer queue (100,000 messages), so a send never finds it full.
const MAX_IN_FLIGHT: usize = 20_000;
/// How often the exactly-once worker commits its transaction.
const COMMIT_INTERVAL: Duration = Duration::from_millis(100);
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);

/// A native worker on its own thread; stopped when dropped.
pub struct NativeWorker {
    stop: CancellationToken,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

/// What a worker consumes and where it publishes.
#[derive(Clone)]
struct Route {
    bootstrap: String,
    input: String,
    output: String,
    group: String,
}

impl NativeWorker {
    pub fn start(
        bootstrap: &str,
        topics: &Topics,
        group: &str,
        guarantee: Guarantee,
    ) -> NativeWorker {
        let route = Route {
            bootstrap: bootstrap.to_string(),
            input: topics.input.clone(),
            output: topics.output.clone(),
            group: group.to_string(),
        };
        let stop = CancellationToken::new();
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || match guarantee {
                Guarantee::AtLeastOnce => run_at_least_once(&route, &stop),
                Guarantee::ExactlyOnce => run_exactly_once(&route, &stop),
            }
        });
        NativeWorker {
            stop,
            thread: Some(thread),
        }
    }

    /// Whether the worker gave up (it never does on its own while the broker is healthy).
    pub fn failure(&mut self) -> Option<anyhow::Error> {
        if !self.thread.as_ref()?.is_finished() {
            return None;
        }
        match self.thread.take()?.join() {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some(anyhow::anyhow!("the native worker panicked")),
        }
    }
}

impl Drop for NativeWorker {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run_at_least_once(route: &Route, stop: &CancellationToken) -> anyhow::Result<()> {
    // One thread, like one partition worker of a service; librdkafka does its I/O on its own.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The stream consumer registers with the runtime it is created in.
    runtime.block_on(async {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &route.bootstrap)
            .set("group.id", &route.group)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .context("kafka consumer")?;
        consumer.subscribe(&[&route.input])?;
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &route.bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()
            .context("kafka producer")?;
        pipeline(route, &consumer, &producer, stop).await
    })
}

/// Consume, decide, produce without waiting, and store each partition's offset as far as its
/// results are acknowledged in order.
async fn pipeline(
    route: &Route,
    consumer: &StreamConsumer,
    producer: &FutureProducer,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let mut watermarks = Watermarks::default();
    let mut in_flight = FuturesUnordered::new();
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return Ok(()),
            Some((partition, offset, acknowledged)) = in_flight.next() => {
                if let Err(e) = acknowledged {
                    // Nothing is stored past this offset; a restart would run it again.
                    bail!("result of {}/{partition}@{offset} not delivered: {e}", route.input);
                }
                if let Some(done) = watermarks.acknowledged(partition, offset) {
                    consumer.store_offset(&route.input, partition, done)?;
                }
            }
            message = consumer.recv(), if in_flight.len() < MAX_IN_FLIGHT => {
                let message = message?;
                let (partition, offset) = (message.partition(), message.offset());
                let delivery = publish_result(route, producer, &message)?;
                watermarks.read(partition, offset);
                in_flight.push(async move {
                    let acknowledged = match delivery.await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err((e, _))) => Err(e.to_string()),
                        Err(_) => Err("the producer was dropped".to_string()),
                    };
                    (partition, offset, acknowledged)
                });
            }
        }
    }
}

/// Decides the order and hands its result to the producer, keyed by order id (the input's key,
/// as the cart sets it).
fn publish_result(
    route: &Route,
    producer: &FutureProducer,
    message: &BorrowedMessage<'_>,
) -> anyhow::Result<rdkafka::producer::DeliveryFuture> {
    let Some(result) = orders::decide(message.payload().unwrap_or_default()) else {
        bail!("not an order at offset {}", message.offset());
    };
    let key = message.key().unwrap_or_default();
    let record = FutureRecord::to(&route.output).key(key).payload(&result);
    producer
        .send_result(record)
        .map_err(|(e, _)| anyhow::anyhow!("cannot produce a result: {e}"))
}

/// Per input partition: the offsets read whose results are not yet acknowledged. Everything
/// below the lowest of them is done, so that is how far the offset may be stored.
#[derive(Default)]
struct Watermarks {
    partitions: HashMap<i32, Pending>,
}

#[derive(Default)]
struct Pending {
    unacknowledged: BTreeSet<i64>,
    last_read: i64,
}

impl Watermarks {
    fn read(&mut self, partition: i32, offset: i64) {
        let pending = self.partitions.entry(partition).or_default();
        pending.unacknowledged.insert(offset);
        pending.last_read = offset;
    }

    /// Marks `offset` acknowledged and returns the last offset of `partition` that is done with
    /// everything before it, if that moved.
    fn acknowledged(&mut self, partition: i32, offset: i64) -> Option<i64> {
        let pending = self.partitions.get_mut(&partition)?;
        let lowest_before = pending.unacknowledged.first().copied();
        pending.unacknowledged.remove(&offset);
        if lowest_before != Some(offset) {
            return None;
        }
        Some(match pending.unacknowledged.first() {
            Some(&lowest) => lowest - 1,
            None => pending.last_read,
        })
    }
}

fn run_exactly_once(route: &Route, stop: &CancellationToken) -> anyhow::Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &route.bootstrap)
        .set("group.id", &route.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()
        .context("kafka consumer")?;
    consumer.subscribe(&[&route.input])?;
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &route.bootstrap)
        .set("transactional.id", format!("{}-tx", route.group))
        .create()
        .context("kafka transactional producer")?;
    producer.init_transactions(TRANSACTION_TIMEOUT)?;
    while !stop.is_cancelled() {
        let consumed = consume_into_transaction(route, &consumer, &producer, stop)?;
        if consumed.count() == 0 {
            continue;
        }
        let group = consumer
            .group_metadata()
            .context("the consumer has no group metadata")?;
        producer.send_offsets_to_transaction(&consumed, &group, TRANSACTION_TIMEOUT)?;
        producer.commit_transaction(TRANSACTION_TIMEOUT)?;
    }
    Ok(())
}

/// Consumes for one commit interval, producing each result inside a transaction begun with the
/// first order, and returns the next offset of each partition it read from.
fn consume_into_transaction(
    route: &Route,
    consumer: &BaseConsumer,
    producer: &ThreadedProducer<DefaultProducerContext>,
    stop: &CancellationToken,
) -> anyhow::Result<TopicPartitionList> {
    let mut next_offsets = HashMap::new();
    let mut closes = None;
    while !stop.is_cancelled() {
        let now = Instant::now();
        let wait = closes.map_or(COMMIT_INTERVAL, |at: Instant| {
            at.saturating_duration_since(now)
        });
        if wait.is_zero() {
            break;
        }
        let Some(message) = consumer.poll(wait) else {
            continue;
        };
        let message = message?;
        if closes.is_none() {
            producer.begin_transaction()?;
            closes = Some(now + COMMIT_INTERVAL);
        }
        let Some(result) = orders::decide(message.payload().unwrap_or_default()) else {
            bail!("not an order at offset {}", message.offset());
        };
        let key = message.key().unwrap_or_default();
        send_waiting_for_room(
            producer,
            BaseRecord::to(&route.output).key(key).payload(&result),
        )?;
        next_offsets.insert(message.partition(), message.offset() + 1);
    }
    let mut consumed = TopicPartitionList::new();
    for (partition, next) in next_offsets {
        consumed.add_partition_offset(&route.input, partition, Offset::Offset(next))?;
    }
    Ok(consumed)
}

fn send_waiting_for_room(
    producer: &ThreadedProducer<DefaultProducerContext>,
    mut record: BaseRecord<'_, [u8], Vec<u8>>,
) -> anyhow::Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(e).context("cannot produce a result"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Watermarks;

    #[test]
    fn offsets_are_stored_only_up_to_the_first_unacknowledged_result() {
        let mut marks = Watermarks::default();
        for offset in 10..14 {
            marks.read(0, offset);
        }
        assert_eq!(marks.acknowledged(0, 12), None);
        assert_eq!(marks.acknowledged(0, 10), Some(10));
        assert_eq!(marks.acknowledged(0, 11), Some(12));
        marks.read(1, 5);
        assert_eq!(marks.acknowledged(0, 13), Some(13));
        assert_eq!(marks.acknowledged(1, 5), Some(5));
    }
}
