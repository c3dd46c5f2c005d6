//! The benchmark's own clients of the broker: fresh topics, the order producer, and the watcher
//! that sees results as any consumer of the results topic would.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use futures::executor::block_on;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde::Deserialize;

use crate::Guarantee;

/// The broker's address and an admin client for topics.
pub struct Broker {
    pub bootstrap: String,
    admin: AdminClient<DefaultClientContext>,
}

/// A run's input and results topics.
pub struct Topics {
    pub input: String,
    pub output: String,
    pub partitions: i32,
}

impl Broker {
    pub fn connect(bootstrap: &str) -> anyhow::Result<Broker> {
        let admin = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .context("kafka admin client")?;
        Ok(Broker {
            bootstrap: bootstrap.to_string(),
            admin,
        })
    }

    /// Creates an input and a results topic of `partitions` partitions, named after `run`.
    pub fn fresh_topics(&self, run: &str, partitions: i32) -> anyhow::Result<Topics> {
        let topics = Topics {
            input: format!("{run}-orders"),
            output: format!("{run}-payments"),
            partitions,
        };
        let specs = [&topics.input, &topics.output]
            .map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(1)));
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        for result in block_on(self.admin.create_topics(&specs, &options))? {
            result.map_err(|(topic, e)| anyhow::anyhow!("cannot create topic {topic}: {e}"))?;
        }
        self.wait_until_led(&topics.input, partitions)?;
        self.wait_until_led(&topics.output, partitions)?;
        Ok(topics)
    }

    /// Waits until every partition of a new topic has a leader in the broker's metadata: a
    /// client that asks sooner gets "unknown topic or partition".
    fn wait_until_led(&self, topic: &str, partitions: i32) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let metadata = self
                .admin
                .inner()
                .fetch_metadata(Some(topic), Duration::from_secs(5))?;
            let led = metadata.topics().iter().any(|t| {
                t.error().is_none()
                    && t.partitions().len() == partitions as usize
                    && t.partitions()
                        .iter()
                        .all(|p| p.error().is_none() && p.leader() >= 0)
            });
            if led {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("topic {topic} has no leader for every partition after 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Deletes a run's topics (and the dead-letter topic the host declares), best effort: they
    /// are only there to keep the broker's disk small.
    pub fn delete_topics(&self, topics: &Topics) {
        let dead_letter = format!("{}.dlq", topics.input);
        let names = [&topics.input[..], &topics.output[..], &dead_letter[..]];
        let _ = block_on(self.admin.delete_topics(&names, &AdminOptions::new()));
    }

    /// A producer of orders with the host's guarantees (idempotent, `acks=all`) and no linger,
    /// so an order's latency starts when it is handed to the client, not when a batch closes.
    pub fn order_producer(&self) -> anyhow::Result<OrderProducer> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "0")
            .create()
            .context("kafka producer")?;
        Ok(OrderProducer { producer })
    }
}

/// Produces workshop orders, keyed by order id as the cart does.
pub struct OrderProducer {
    producer: FutureProducer,
}

impl OrderProducer {
    /// Hands one order to the client; the future completes when the broker has it.
    pub fn send(&self, topic: &str, id: &str, order: &[u8]) -> anyhow::Result<DeliveryFuture> {
        let record = FutureRecord::to(topic).key(id).payload(order);
        self.producer
            .send_result(record)
            .map_err(|(e, _)| anyhow::anyhow!("cannot produce order {id}: {e}"))
    }

    /// Produces `orders` and waits until the broker has them all; returns how many went to
    /// each partition (the key's hash decides).
    pub fn produce_all(
        &self,
        topic: &str,
        orders: &[(String, Vec<u8>)],
    ) -> anyhow::Result<BTreeMap<i32, usize>> {
        let mut per_partition = BTreeMap::new();
        // Below librdkafka's default queue of 100,000 messages.
        for chunk in orders.chunks(50_000) {
            let deliveries = chunk
                .iter()
                .map(|(id, order)| self.send(topic, id, order))
                .collect::<anyhow::Result<Vec<_>>>()?;
            for delivery in block_on(futures::future::join_all(deliveries)) {
                match delivery? {
                    Ok(delivery) => *per_partition.entry(delivery.partition).or_default() += 1,
                    Err((e, _)) => bail!("an order was not delivered: {e}"),
                }
            }
        }
        Ok(per_partition)
    }
}

/// Every result seen on a results topic, with the time it was first seen, read by a thread of
/// its own from the start of every partition (no consumer group, so no join to wait for).
pub struct Watcher {
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

#[derive(Default)]
struct Seen {
    /// Order id → when its first result was seen.
    arrivals: HashMap<String, Instant>,
    /// The first and the latest time a result was seen for the first time.
    first: Option<Instant>,
    last: Option<Instant>,
    /// The earliest creation time of a result (its producer's clock, when the worker handed
    /// it to its Kafka client), and the wall-clock time the latest new result was seen.
    first_created: Option<SystemTime>,
    last_seen: Option<SystemTime>,
    /// The first result, to check it against the native decision.
    sample: Option<(String, Vec<u8>)>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResultId {
    order_id: String,
}

impl Watcher {
    pub fn start(
        broker: &Broker,
        topics: &Topics,
        guarantee: Guarantee,
    ) -> anyhow::Result<Watcher> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &broker.bootstrap)
            .set("group.id", format!("{}-watcher", topics.output))
            .set("enable.auto.commit", "false")
            .set("isolation.level", guarantee.isolation_level())
            .create()
            .context("kafka results consumer")?;
        let mut assignment = TopicPartitionList::new();
        for partition in 0..topics.partitions {
            assignment.add_partition_offset(&topics.output, partition, Offset::Beginning)?;
        }
        consumer.assign(&assignment)?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (seen, stop) = (seen.clone(), stop.clone());
            move || watch(&consumer, &seen, &stop)
        });
        Ok(Watcher {
            seen,
            stop,
            thread: Some(thread),
        })
    }

    /// Waits until results for `count` distinct orders were seen or `deadline` passes, and
    /// returns how many were.
    pub fn wait_for(&self, count: usize, deadline: Instant) -> anyhow::Result<usize> {
        loop {
            let seen = self.distinct();
            if seen >= count || Instant::now() >= deadline {
                return Ok(seen);
            }
            if self.thread.as_ref().is_none_or(|t| t.is_finished()) {
                bail!("the results consumer stopped");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn distinct(&self) -> usize {
        self.lock().arrivals.len()
    }

    /// When the result of order `id` was first seen.
    pub fn arrival(&self, id: &str) -> Option<Instant> {
        self.lock().arrivals.get(id).copied()
    }

    /// When the first result and the latest new result were seen.
    pub fn first_and_last(&self) -> Option<(Instant, Instant)> {
        let seen = self.lock();
        seen.first.zip(seen.last)
    }

    /// From the creation of the first result to the moment the latest new result was seen: the
    /// worker's busy time as seen from outside, without its start-up.
    pub fn busy_span(&self) -> Option<Duration> {
        let seen = self.lock();
        let (created, last) = seen.first_created.zip(seen.last_seen)?;
        Some(last.duration_since(created).unwrap_or_default())
    }

    /// The first result seen: its order id and value.
    pub fn sample(&self) -> Option<(String, Vec<u8>)> {
        self.lock().sample.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn watch(consumer: &BaseConsumer, seen: &Mutex<Seen>, stop: &AtomicBool) -> anyhow::Result<()> {
    while !stop.load(Ordering::Relaxed) {
        let Some(message) = consumer.poll(Duration::from_millis(50)) else {
            continue;
        };
        let message = message.context("reading results")?;
        let now = Instant::now();
        let value = message.payload().unwrap_or_default();
        let id: ResultId = serde_json::from_slice(value).context("a result without orderId")?;
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.arrivals.contains_key(&id.order_id) {
            continue; // a duplicate, allowed at least once
        }
        seen.first.get_or_insert(now);
        seen.last = Some(now);
        seen.last_seen = Some(SystemTime::now());
        if let Some(ms) = message.timestamp().to_millis() {
            let created = SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
            seen.first_created = Some(seen.first_created.map_or(created, |c| c.min(created)));
        }
        if seen.sample.is_none() {
            seen.sample = Some((id.order_id.clone(), value.to_vec()));
        }
        seen.arrivals.insert(id.order_id, now);
    }
    Ok(())
}
