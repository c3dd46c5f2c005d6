//! The embedded bus: an in-process partitioned log with consumer groups and retention.
//!
//! It keeps Kafka's semantics that plugins rely on (keys pick partitions, order within a
//! partition, committed offsets per group, resume from the committed offset) without a broker.
//! It lives in memory: records and offsets last as long as the process. It never pretends to be
//! a cluster; use the Kafka bus for durability across restarts and for scale-out.
//!
//! Memory stays bounded while the host runs for days: a record is dropped once every group
//! consuming its topic has committed past it, and each partition keeps at most
//! `retention.bytes` of records for at most `retention.ms` (defaults
//! [`EmbeddedBus::DEFAULT_RETENTION_BYTES`] and [`EmbeddedBus::DEFAULT_RETENTION_AGE`]), which
//! bounds topics nobody consumes. A group whose next record was dropped by retention resumes at
//! the earliest kept record and the host logs it. See `partition_log` for the details.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::partition_log::{Fetch, Limits, PartitionLog};
use super::pipeline::{self, PartitionSource};
use super::{
    Acks, Bus, BusError, GroupPosition, Limit, Record, RecordHandler, Retention, TailFrom,
    TopicSpec,
};
use crate::metrics::PartitionLag;
use crate::runtime::OutMessage;

/// Records a tail reader may have fetched and not yet taken.
const TAIL_BUFFER: usize = 256;

/// How often age retention is applied to partitions that receive no records.
const AGE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

struct Partition {
    log: Mutex<PartitionLog>,
    /// The log's end offset, so consumers can wait for new records without polling.
    end: watch::Sender<i64>,
}

impl Partition {
    fn log(&self) -> MutexGuard<'_, PartitionLog> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Topic {
    partitions: Vec<Arc<Partition>>,
    round_robin: AtomicU64,
}

type Topics = RwLock<HashMap<String, Arc<Topic>>>;

/// What one partition of a topic keeps (see [`EmbeddedBus::kept`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    /// The offset of the earliest kept record; equal to `end` when none is kept.
    pub start: i64,
    /// The offset the next record gets.
    pub end: i64,
    /// The kept records' estimated memory in bytes: topic, key, value, headers and bookkeeping.
    pub bytes: u64,
}

/// The in-process [`Bus`].
#[derive(Default)]
pub struct EmbeddedBus {
    topics: Arc<Topics>,
    /// (group, topic) pairs with a running subscription: a group owns all partitions.
    active: Arc<Mutex<Vec<(String, String)>>>,
    /// Applies age retention to idle partitions; started with the first topic.
    age_check: Mutex<Option<JoinHandle<()>>>,
}

impl EmbeddedBus {
    /// Default of `retention.bytes`: each partition keeps at most 4 MiB of records.
    pub const DEFAULT_RETENTION_BYTES: u64 = 4 << 20;
    /// Default of `retention.ms`: records are kept for at most 6 hours.
    pub const DEFAULT_RETENTION_AGE: Duration = Duration::from_secs(6 * 60 * 60);

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

    /// The position of `group` on `topic`/`partition`: the next offset it reads.
    pub fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        let topic = self.topic(topic).ok()?;
        let partition = topic.partitions.get(usize::try_from(partition).ok()?)?;
        partition.log().position(group)
    }

    /// What each partition of `topic` keeps, in partition order.
    pub fn kept(&self, topic: &str) -> Result<Vec<Kept>, BusError> {
        let topic = self.topic(topic)?;
        Ok(topic
            .partitions
            .iter()
            .map(|p| {
                let log = p.log();
                Kept {
                    start: log.start(),
                    end: log.end(),
                    bytes: log.bytes(),
                }
            })
            .collect())
    }

    /// Every kept record of `topic`, partition by partition (for inspection and tests).
    pub fn records(&self, topic: &str) -> Result<Vec<Record>, BusError> {
        let topic = self.topic(topic)?;
        Ok(topic
            .partitions
            .iter()
            .flat_map(|p| p.log().records().map(|r| (**r).clone()).collect::<Vec<_>>())
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
        let now = now_ms();
        let record = Record {
            topic: message.topic,
            partition: index as i32,
            offset: -1,
            key: message.key,
            value: message.value,
            headers: message.headers,
            timestamp_ms: Some(now),
        };
        let mut log = partition.log();
        let offset = log.append(record, now);
        partition.end.send_replace(offset + 1);
        Ok(())
    }

    /// Starts the periodic age check once, if there is a runtime to run it on.
    /// [`Bus::tail`]: nothing to wait for in memory.
    fn tail_now(&self, topic: &str, from: TailFrom) -> Result<mpsc::Receiver<Record>, BusError> {
        let topic_log = self.topic(topic)?;
        let (records, receiver) = mpsc::channel(TAIL_BUFFER);
        for partition in &topic_log.partitions {
            let (partition, records) = (partition.clone(), records.clone());
            let mut end = partition.end.subscribe();
            let mut next = {
                let log = partition.log();
                match from {
                    TailFrom::End => log.end(),
                    TailFrom::Beginning => log.start(),
                    TailFrom::Offset(offset) => offset.clamp(log.start(), log.end()),
                    TailFrom::Time(ms) => log.offset_at(ms),
                }
            };
            tokio::spawn(async move {
                loop {
                    let fetched = partition.log().fetch(next);
                    match fetched {
                        Fetch::Record(record) => {
                            next = record.offset + 1;
                            if records.send((*record).clone()).await.is_err() {
                                return;
                            }
                        }
                        Fetch::Dropped { start } => next = start,
                        Fetch::End => tokio::select! {
                            _ = records.closed() => return,
                            changed = end.changed() => if changed.is_err() { return },
                        },
                    }
                }
            });
        }
        Ok(receiver)
    }

    fn start_age_check(&self) {
        let mut task = self.age_check.lock().unwrap_or_else(|e| e.into_inner());
        if task.is_some() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let topics = Arc::downgrade(&self.topics);
            *task = Some(runtime.spawn(check_ages(topics)));
        }
    }
}

impl Drop for EmbeddedBus {
    fn drop(&mut self) {
        if let Some(task) = self.age_check.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}

/// Applies age retention every [`AGE_CHECK_INTERVAL`] until the bus is dropped.
async fn check_ages(topics: Weak<Topics>) {
    loop {
        tokio::time::sleep(AGE_CHECK_INTERVAL).await;
        let Some(topics) = topics.upgrade() else {
            return;
        };
        let all: Vec<Arc<Topic>> = topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let now = now_ms();
        for topic in all {
            for partition in &topic.partitions {
                partition.log().enforce(now);
            }
        }
    }
}

/// The embedded bus's limits for `retention`: its defaults where none is configured.
fn limits(retention: &Retention) -> Limits {
    Limits {
        bytes: match retention.bytes {
            Limit::BusDefault => Some(EmbeddedBus::DEFAULT_RETENTION_BYTES),
            Limit::Unlimited => None,
            Limit::At(bytes) => Some(bytes),
        },
        age: match retention.age {
            Limit::BusDefault => Some(EmbeddedBus::DEFAULT_RETENTION_AGE),
            Limit::Unlimited => None,
            Limit::At(age) => Some(age),
        },
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
    /// Creates missing topics; for existing ones, applies a changed retention (the partition
    /// count of an existing topic does not change).
    fn ensure_topics(&self, specs: Vec<TopicSpec>) -> BoxFuture<'_, Result<(), BusError>> {
        {
            let mut topics = self.topics.write().unwrap_or_else(|e| e.into_inner());
            let now = now_ms();
            for spec in specs {
                let limits = limits(&spec.retention);
                let topic = match topics.get(&spec.name) {
                    Some(topic) => {
                        for partition in &topic.partitions {
                            partition.log().set_limits(limits, now);
                        }
                        topic.clone()
                    }
                    None => {
                        let partitions = (0..spec.partitions.max(1))
                            .map(|_| {
                                Arc::new(Partition {
                                    log: Mutex::new(PartitionLog::new(limits)),
                                    end: watch::channel(0).0,
                                })
                            })
                            .collect();
                        let topic = Arc::new(Topic {
                            partitions,
                            round_robin: AtomicU64::new(0),
                        });
                        topics.insert(spec.name, topic.clone());
                        topic
                    }
                };
                // Configured groups hold records back from now on, so none is trimmed before a
                // group's subscription starts.
                for partition in &topic.partitions {
                    let mut log = partition.log();
                    for group in &spec.groups {
                        log.join(group);
                    }
                }
            }
        }
        self.start_age_check();
        futures::future::ready(Ok(())).boxed()
    }

    fn enqueue(&self, messages: Vec<OutMessage>) -> BoxFuture<'_, Result<Acks, BusError>> {
        // Appending is the acknowledgement: the record is in the log once this returns.
        let result = messages.into_iter().try_for_each(|m| self.append(m));
        futures::future::ready(result.map(|()| futures::future::ready(Ok(())).boxed() as Acks))
            .boxed()
    }

    fn subscribe(
        &self,
        topic: &str,
        group: &str,
        handler: RecordHandler,
        shutdown: CancellationToken,
    ) -> Result<JoinHandle<()>, BusError> {
        if handler.outbox.is_some() {
            return Err(BusError::other(
                "exactly-once subscriptions need the Kafka bus",
                None,
            ));
        }
        let topic_log = self.topic(topic)?;
        let pair = (group.to_string(), topic.to_string());
        {
            let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
            if active.contains(&pair) {
                return Err(BusError::other(
                    format!("group {group:?} already consumes topic {topic:?}"),
                    None,
                ));
            }
            active.push(pair.clone());
        }
        let mut tasks = Vec::new();
        for (index, partition) in topic_log.partitions.iter().enumerate() {
            // Joined here, not in the task: from now on the group holds records back.
            let next = partition.log().join(group);
            let reader = PartitionReader {
                partition: partition.clone(),
                topic: topic.to_string(),
                index: index as i32,
                group: group.to_string(),
                next,
                end: partition.end.subscribe(),
                resets: Resets::default(),
            };
            tasks.push(tokio::spawn(pipeline::drive(
                reader,
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

    fn tail(
        &self,
        topic: &str,
        from: TailFrom,
    ) -> BoxFuture<'_, Result<mpsc::Receiver<Record>, BusError>> {
        futures::future::ready(self.tail_now(topic, from)).boxed()
    }

    fn positions(
        &self,
        topic: &str,
        group: &str,
    ) -> BoxFuture<'_, Result<Vec<GroupPosition>, BusError>> {
        let positions = self.topic(topic).map(|topic| {
            (topic.partitions.iter().enumerate())
                .map(|(index, partition)| {
                    let log = partition.log();
                    GroupPosition {
                        partition: index as i32,
                        start: log.start(),
                        end: log.end(),
                        committed: log.position(group),
                    }
                })
                .collect()
        });
        futures::future::ready(positions).boxed()
    }

    fn offsets_at(&self, topic: &str, ms: i64) -> BoxFuture<'_, Result<Vec<i64>, BusError>> {
        let offsets = self.topic(topic).map(|topic| {
            (topic.partitions.iter())
                .map(|p| p.log().offset_at(ms))
                .collect()
        });
        futures::future::ready(offsets).boxed()
    }

    /// Positions go no further back than the earliest kept record: records every group had
    /// read are gone (see the module docs).
    fn set_positions(
        &self,
        topic: &str,
        group: &str,
        positions: Vec<(i32, i64)>,
    ) -> BoxFuture<'_, Result<(), BusError>> {
        let result = (|| {
            let topic_log = self.topic(topic)?;
            let pair = (group.to_string(), topic.to_string());
            if (self.active.lock().unwrap_or_else(|e| e.into_inner())).contains(&pair) {
                return Err(BusError::other(
                    format!("group {group:?} is consuming topic {topic:?}: stop it first"),
                    None,
                ));
            }
            let now = now_ms();
            for (index, next) in positions {
                let partition = usize::try_from(index)
                    .ok()
                    .and_then(|i| topic_log.partitions.get(i))
                    .ok_or_else(|| {
                        BusError::other(format!("{topic} has no partition {index}"), None)
                    })?;
                partition.log().seek(group, next, now);
            }
            Ok(())
        })();
        futures::future::ready(result).boxed()
    }

    fn read(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        until: i64,
    ) -> BoxFuture<'_, Result<Vec<Record>, BusError>> {
        let result = self.topic(topic).and_then(|topic_log| {
            let partition = usize::try_from(partition)
                .ok()
                .and_then(|i| topic_log.partitions.get(i))
                .ok_or_else(|| {
                    BusError::other(format!("{topic} has no partition {partition}"), None)
                })?;
            let log = partition.log();
            Ok(log
                .records()
                .filter(|r| r.offset >= from && r.offset < until)
                .map(|r| (**r).clone())
                .collect())
        });
        futures::future::ready(result).boxed()
    }

    fn lag(&self) -> Vec<PartitionLag> {
        let topics = self.topics.read().unwrap_or_else(|e| e.into_inner());
        let mut lag = Vec::new();
        for (name, topic) in topics.iter() {
            for (index, partition) in topic.partitions.iter().enumerate() {
                let log = partition.log();
                let end = log.end();
                lag.extend(log.positions().map(|(group, next)| PartitionLag {
                    group: group.to_string(),
                    topic: name.clone(),
                    partition: index as i32,
                    records: end - next,
                }));
            }
        }
        lag
    }
}

/// One partition of a topic as one group reads it.
struct PartitionReader {
    partition: Arc<Partition>,
    topic: String,
    index: i32,
    group: String,
    /// The offset of the next record to read.
    next: i64,
    end: watch::Receiver<i64>,
    resets: Resets,
}

impl PartitionSource for PartitionReader {
    fn next(&mut self) -> BoxFuture<'_, Option<Record>> {
        async move {
            loop {
                let fetched = self.partition.log().fetch(self.next);
                match fetched {
                    Fetch::Record(record) => {
                        self.next = record.offset + 1;
                        return Some((*record).clone());
                    }
                    // The offset moves only once a record is returned: waiting is cancel-safe.
                    Fetch::End => self.end.changed().await.ok()?,
                    Fetch::Dropped { start } => {
                        self.resets
                            .skipped(&self.topic, self.index, &self.group, self.next, start);
                        self.next = start;
                    }
                }
            }
        }
        .boxed()
    }

    fn commit(&mut self, offset: i64) {
        self.partition
            .log()
            .commit(&self.group, offset + 1, now_ms());
    }
}

/// Warnings about records a group missed. A consumer that stays behind retention finds its next
/// record dropped again and again; it says so at most once per [`RESET_LOG_INTERVAL`], with
/// how many records it missed in between.
#[derive(Default)]
struct Resets {
    last_warning: Option<Instant>,
    unreported: i64,
}

/// How often a partition's consumer warns about records it missed.
const RESET_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl Resets {
    fn skipped(&mut self, topic: &str, partition: i32, group: &str, next: i64, start: i64) {
        self.unreported += start - next;
        if self
            .last_warning
            .is_some_and(|at| at.elapsed() < RESET_LOG_INTERVAL)
        {
            return;
        }
        let earlier = self.unreported - (start - next);
        let more = match earlier {
            0 => String::new(),
            n => format!(" (and {n} records since the last warning)"),
        };
        tracing::warn!(
            %topic,
            partition,
            %group,
            "retention dropped offsets {next} to {} before the group read them{more}; it resumes \
             at the earliest kept offset {start} (auto.offset.reset=earliest)",
            start - 1
        );
        self.last_warning = Some(Instant::now());
        self.unreported = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::bus::Handled;

    #[test]
    fn same_key_same_partition() {
        for key in [b"a".as_slice(), b"order-17", b""] {
            assert_eq!(partition_for_key(key, 3), partition_for_key(key, 3));
            assert!(partition_for_key(key, 3) < 3);
        }
    }

    fn message(topic: &str, i: usize) -> OutMessage {
        OutMessage {
            topic: topic.into(),
            key: Some(b"one-key".to_vec()),
            value: format!("record {i}").into_bytes(),
            headers: Vec::new(),
        }
    }

    async fn bus_with(topic: &str, retention: Retention) -> EmbeddedBus {
        let bus = EmbeddedBus::new();
        let spec = TopicSpec {
            retention,
            ..TopicSpec::new(topic, 1)
        };
        bus.ensure_topics(vec![spec]).await.unwrap();
        bus
    }

    /// Consumes `topic` as `group`, recording offsets, until `stop` fires.
    fn consume(
        bus: &EmbeddedBus,
        topic: &str,
        group: &str,
    ) -> (Arc<Mutex<Vec<i64>>>, CancellationToken, JoinHandle<()>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let sink = seen.clone();
        let handler = RecordHandler::sequential(move |record: Record| {
            sink.lock().unwrap().push(record.offset);
            async { Handled::Commit }.boxed()
        });
        let task = bus.subscribe(topic, group, handler, stop.clone()).unwrap();
        (seen, stop, task)
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn records_are_dropped_once_every_group_committed_past_them() {
        let bus = bus_with("t", Retention::default()).await;
        let (a, stop_a, task_a) = consume(&bus, "t", "a");
        let (b, stop_b, task_b) = consume(&bus, "t", "b");
        bus.publish((0..100).map(|i| message("t", i)).collect())
            .await
            .unwrap();
        until("both groups to read 100 records", || {
            a.lock().unwrap().len() == 100 && b.lock().unwrap().len() == 100
        })
        .await;
        until("the log to be trimmed", || {
            bus.kept("t").unwrap()[0].start == 100
        })
        .await;
        assert_eq!(
            bus.kept("t").unwrap(),
            [Kept {
                start: 100,
                end: 100,
                bytes: 0
            }]
        );
        assert!(bus.records("t").unwrap().is_empty());
        stop_a.cancel();
        stop_b.cancel();
        let _ = tokio::join!(task_a, task_b);

        // Offsets go on from where they were; a group that joins now sees only what is kept.
        bus.publish(vec![message("t", 100)]).await.unwrap();
        let (late, stop, task) = consume(&bus, "t", "late");
        until("the late group to read the kept record", || {
            !late.lock().unwrap().is_empty()
        })
        .await;
        assert_eq!(*late.lock().unwrap(), [100]);
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_configured_group_holds_records_back_before_its_subscription_starts() {
        let bus = EmbeddedBus::new();
        let spec = TopicSpec {
            groups: vec!["first".into(), "second".into()],
            ..TopicSpec::new("t", 1)
        };
        bus.ensure_topics(vec![spec]).await.unwrap();
        let (first, stop, task) = consume(&bus, "t", "first");
        bus.publish((0..10).map(|i| message("t", i)).collect())
            .await
            .unwrap();
        until("the first group to read 10", || {
            first.lock().unwrap().len() == 10
        })
        .await;
        stop.cancel();
        task.await.unwrap();
        assert_eq!(bus.kept("t").unwrap()[0].start, 0);

        let (second, stop, task) = consume(&bus, "t", "second");
        until("the second group to read 10", || {
            second.lock().unwrap().len() == 10
        })
        .await;
        stop.cancel();
        task.await.unwrap();
        assert_eq!(*second.lock().unwrap(), (0..10).collect::<Vec<i64>>());
        assert_eq!(bus.kept("t").unwrap()[0].start, 10);
    }

    #[tokio::test]
    async fn size_retention_bounds_a_topic_nobody_consumes() {
        let bus = bus_with(
            "dlq",
            Retention {
                bytes: Limit::At(10_000),
                age: Limit::BusDefault,
            },
        )
        .await;
        for i in 0..1_000 {
            bus.publish(vec![message("dlq", i)]).await.unwrap();
        }
        let [kept] = bus.kept("dlq").unwrap()[..] else {
            panic!("one partition")
        };
        assert_eq!(kept.end, 1_000);
        assert!(kept.bytes <= 10_000, "{kept:?}");
        assert!(kept.start > 900, "{kept:?}");
        let records = bus.records("dlq").unwrap();
        assert_eq!(records.len() as i64, kept.end - kept.start);
        assert_eq!(records.last().map(|r| r.offset), Some(999));
    }

    #[tokio::test]
    async fn the_default_retention_keeps_a_few_mib_per_partition() {
        let bus = bus_with("t", Retention::default()).await;
        let big = |i: usize| OutMessage {
            value: vec![b'x'; 64 << 10],
            ..message("t", i)
        };
        for i in 0..200 {
            bus.publish(vec![big(i)]).await.unwrap();
        }
        let kept = bus.kept("t").unwrap()[0];
        assert!(
            kept.bytes <= EmbeddedBus::DEFAULT_RETENTION_BYTES,
            "{kept:?}"
        );
        assert!(
            kept.bytes > EmbeddedBus::DEFAULT_RETENTION_BYTES / 2,
            "{kept:?}"
        );
    }

    #[tokio::test]
    async fn a_group_whose_next_record_was_dropped_resumes_at_the_earliest_kept_one_and_says_so() {
        let logs = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = logs.clone();
        let _guard = tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_ansi(false)
                .with_writer(move || LogSink(sink.clone()))
                .finish(),
        );
        let one = crate::bus::partition_log::footprint(&Record {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            key: Some(b"one-key".to_vec()),
            value: b"record 10".to_vec(),
            headers: Vec::new(),
            timestamp_ms: None,
        });
        let bus = bus_with(
            "t",
            Retention {
                bytes: Limit::At(5 * one),
                age: Limit::Unlimited,
            },
        )
        .await;
        let (seen, stop, task) = consume(&bus, "t", "g");
        bus.publish((0..3).map(|i| message("t", i)).collect())
            .await
            .unwrap();
        until("3 records", || seen.lock().unwrap().len() == 3).await;
        stop.cancel();
        task.await.unwrap();
        assert_eq!(bus.committed("g", "t", 0), Some(3));

        // While the group is away, size retention drops records it has not read.
        bus.publish((3..20).map(|i| message("t", i)).collect())
            .await
            .unwrap();
        let kept = bus.kept("t").unwrap()[0];
        assert_eq!((kept.start, kept.end), (15, 20));
        let (seen, stop, task) = consume(&bus, "t", "g");
        until("the kept records", || seen.lock().unwrap().len() == 5).await;
        assert_eq!(*seen.lock().unwrap(), [15, 16, 17, 18, 19]);
        stop.cancel();
        task.await.unwrap();

        let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
        let line = text
            .lines()
            .find(|l| l.contains("retention dropped"))
            .unwrap_or_else(|| panic!("no reset logged in:\n{text}"));
        assert!(line.contains("WARN"), "{line}");
        assert!(
            line.contains("offsets 3 to 14") && line.contains("earliest kept offset 15"),
            "{line}"
        );
        assert!(
            line.contains("topic=t") && line.contains("group=g"),
            "{line}"
        );
    }

    #[tokio::test]
    async fn age_retention_empties_a_topic_that_receives_nothing_more() {
        let bus = bus_with(
            "idle",
            Retention {
                bytes: Limit::Unlimited,
                age: Limit::At(Duration::from_millis(50)),
            },
        )
        .await;
        bus.publish((0..3).map(|i| message("idle", i)).collect())
            .await
            .unwrap();
        assert_eq!(bus.kept("idle").unwrap()[0].start, 0);
        until("the idle records to age out", || {
            bus.kept("idle").unwrap()[0]
                == Kept {
                    start: 3,
                    end: 3,
                    bytes: 0,
                }
        })
        .await;
    }

    #[tokio::test]
    async fn a_changed_retention_applies_to_an_existing_topic() {
        let bus = bus_with("t", Retention::default()).await;
        bus.publish((0..50).map(|i| message("t", i)).collect())
            .await
            .unwrap();
        assert_eq!(bus.kept("t").unwrap()[0].start, 0);
        let spec = TopicSpec {
            retention: Retention {
                bytes: Limit::At(1),
                age: Limit::BusDefault,
            },
            ..TopicSpec::new("t", 1)
        };
        bus.ensure_topics(vec![spec]).await.unwrap();
        let kept = bus.kept("t").unwrap()[0];
        assert_eq!((kept.start, kept.end), (49, 50));
    }

    /// Collects formatted log lines for a test.
    struct LogSink(Arc<Mutex<Vec<u8>>>);

    impl Write for LogSink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
