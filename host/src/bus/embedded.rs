//! The embedded bus: an in-process partitioned log with consumer groups.
//!
//! It keeps Kafka's semantics that plugins rely on (keys pick partitions, order within a
//! partition, committed offsets per group, resume from the committed offset) without a broker.
//! It lives in memory: records and offsets last as long as the process. It never pretends to be
//! a cluster; use the Kafka bus for durability across restarts and for scale-out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Bus, BusError, Handled, Record, RecordHandler, TopicSpec};
use crate::runtime::OutMessage;

struct Partition {
    log: Mutex<Vec<Arc<Record>>>,
    /// The log's length, so consumers can wait for new records without polling.
    end: watch::Sender<i64>,
}

struct Topic {
    partitions: Vec<Arc<Partition>>,
    round_robin: AtomicU64,
}

/// Committed offsets: (group, topic, partition) → next offset to consume.
type Offsets = HashMap<(String, String, i32), i64>;

/// The in-process [`Bus`].
#[derive(Default)]
pub struct EmbeddedBus {
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    offsets: Arc<Mutex<Offsets>>,
    /// (group, topic) pairs with a running subscription: a group owns all partitions.
    active: Arc<Mutex<Vec<(String, String)>>>,
}

impl EmbeddedBus {
    /// An empty bus with no topics.
    pub fn new() -> Self {
        Self::default()
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>, BusError> {
        let topics = self.topics.read().unwrap_or_else(|e| e.into_inner());
        topics
            .get(name)
            .cloned()
            .ok_or_else(|| BusError::UnknownTopic(name.to_string()))
    }

    /// The committed offset of `group` on `topic`/`partition` (the next offset it will read).
    pub fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        let offsets = self.offsets.lock().unwrap_or_else(|e| e.into_inner());
        offsets
            .get(&(group.to_string(), topic.to_string(), partition))
            .copied()
    }

    /// Every record of `topic`, partition by partition (for inspection and tests).
    pub fn records(&self, topic: &str) -> Result<Vec<Record>, BusError> {
        let topic = self.topic(topic)?;
        Ok(topic
            .partitions
            .iter()
            .flat_map(|p| {
                p.log
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .map(|r| (**r).clone())
                    .collect::<Vec<_>>()
            })
            .collect())
    }

    fn append(&self, message: OutMessage) -> Result<(), BusError> {
        let topic = self.topic(&message.topic)?;
        let count = topic.partitions.len() as u64;
        let index = match &message.key {
            Some(key) => partition_for_key(key, count),
            None => topic.round_robin.fetch_add(1, Ordering::Relaxed) % count,
        } as usize;
        let partition = &topic.partitions[index];
        let mut log = partition.log.lock().unwrap_or_else(|e| e.into_inner());
        let offset = log.len() as i64;
        log.push(Arc::new(Record {
            topic: message.topic,
            partition: index as i32,
            offset,
            key: message.key,
            value: message.value,
            headers: message.headers,
            timestamp_ms: Some(now_ms()),
        }));
        partition.end.send_replace(offset + 1);
        Ok(())
    }
}

/// FNV-1a: stable across runs and platforms, so a key always maps to the same partition.
fn partition_for_key(key: &[u8], partitions: u64) -> u64 {
    let hash = key.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    hash % partitions
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

impl Bus for EmbeddedBus {
    fn ensure_topics(&self, specs: Vec<TopicSpec>) -> BoxFuture<'_, Result<(), BusError>> {
        let mut topics = self.topics.write().unwrap_or_else(|e| e.into_inner());
        for spec in specs {
            topics.entry(spec.name).or_insert_with(|| {
                let partitions = (0..spec.partitions.max(1))
                    .map(|_| {
                        Arc::new(Partition {
                            log: Mutex::new(Vec::new()),
                            end: watch::channel(0).0,
                        })
                    })
                    .collect();
                Arc::new(Topic {
                    partitions,
                    round_robin: AtomicU64::new(0),
                })
            });
        }
        futures::future::ready(Ok(())).boxed()
    }

    fn publish(&self, messages: Vec<OutMessage>) -> BoxFuture<'_, Result<(), BusError>> {
        // Appending is the acknowledgement: the record is in the log once this returns.
        let result = messages.into_iter().try_for_each(|m| self.append(m));
        futures::future::ready(result).boxed()
    }

    fn subscribe(
        &self,
        topic: &str,
        group: &str,
        handler: RecordHandler,
        shutdown: CancellationToken,
    ) -> Result<JoinHandle<()>, BusError> {
        let topic_log = self.topic(topic)?;
        let pair = (group.to_string(), topic.to_string());
        {
            let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
            if active.contains(&pair) {
                return Err(BusError::Other(format!(
                    "group {group:?} already consumes topic {topic:?}"
                )));
            }
            active.push(pair.clone());
        }
        let mut tasks = Vec::new();
        for (index, partition) in topic_log.partitions.iter().enumerate() {
            let key = (group.to_string(), topic.to_string(), index as i32);
            tasks.push(tokio::spawn(consume_partition(
                partition.clone(),
                key,
                self.offsets.clone(),
                handler.clone(),
                shutdown.clone(),
            )));
        }
        let active = self.active.clone();
        Ok(tokio::spawn(async move {
            for task in tasks {
                let _ = task.await;
            }
            active
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|p| *p != pair);
        }))
    }

    fn describe(&self) -> String {
        "embedded (in-process log; no broker)".to_string()
    }
}

async fn consume_partition(
    partition: Arc<Partition>,
    key: (String, String, i32),
    offsets: Arc<Mutex<Offsets>>,
    handler: RecordHandler,
    shutdown: CancellationToken,
) {
    let mut next = offsets
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .copied()
        .unwrap_or(0);
    let mut end = partition.end.subscribe();
    loop {
        let record = partition
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(next as usize)
            .cloned();
        let Some(record) = record else {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = end.changed() => if changed.is_err() { return },
            }
            continue;
        };
        if shutdown.is_cancelled() {
            return;
        }
        match handler((*record).clone()).await {
            Handled::Commit => {
                next += 1;
                offsets
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key.clone(), next);
            }
            Handled::Stop => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_partition() {
        for key in [b"a".as_slice(), b"order-17", b""] {
            assert_eq!(partition_for_key(key, 3), partition_for_key(key, 3));
            assert!(partition_for_key(key, 3) < 3);
        }
    }
}
