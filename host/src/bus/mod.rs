//! The message bus: publishing with acknowledgement, and subscriptions that hand each record to
//! a handler in partition order and commit its offset only after the handler is done.
//!
//! Two implementations pass the same conformance tests: [`EmbeddedBus`] (in-process, the
//! default) and `KafkaBus` (rdkafka). Both drive each partition through the same pipeline
//! (`pipeline`), so ordering, per-key parallelism and offset commits behave the same on both.
//! Retries and dead letters are not the bus's job: they live in the dispatcher.

mod embedded;
mod handover;
mod kafka;
mod partition_log;
mod pipeline;
mod transactions;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use embedded::{EmbeddedBus, Kept};
pub use kafka::{KafkaBus, KafkaSettings};

use crate::error::Cause;
use crate::metrics::PartitionLag;
use crate::runtime::OutMessage;

/// A consumed record and its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Topic it was read from.
    pub topic: String,
    /// Partition within the topic.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
    /// Partitioning key.
    pub key: Option<Vec<u8>>,
    /// Payload.
    pub value: Vec<u8>,
    /// Headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Publish time in milliseconds since the Unix epoch, when known.
    pub timestamp_ms: Option<i64>,
}

/// What a handler tells the bus once it is done with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Its effects are applied (or it was dead-lettered): its offset may be committed.
    Commit,
    /// Its effects could not be applied: run it and every later record of its partition that
    /// is not committed yet again, in order.
    Rerun,
    /// The host is shutting down before the record was finished: do not commit it, stop.
    Stop,
}

/// The second stage of handling a record: resolves once its effects are applied.
pub struct Finish(BoxFuture<'static, Handled>);

impl Finish {
    /// A second stage that waits for `finishing`.
    pub fn later(finishing: impl Future<Output = Handled> + Send + 'static) -> Self {
        Finish(Box::pin(finishing))
    }

    /// A record that was handled to the end in the first stage.
    pub fn now(handled: Handled) -> Self {
        Finish(Box::pin(std::future::ready(handled)))
    }

    async fn wait(self) -> Handled {
        self.0.await
    }
}

type Start = dyn Fn(Record) -> BoxFuture<'static, Finish> + Send + Sync;

/// Where an exactly-once subscription's finished records keep what they produced until the bus
/// publishes it, in one transaction with the consumed offsets (see the `state` module's
/// outbox). Its calls block.
pub trait Outbox: Send + Sync + 'static {
    /// The messages of the finished records of `partition` with offsets in `from..=to`, in
    /// offset order.
    fn messages(&self, partition: i32, from: i64, to: i64) -> Result<Vec<OutMessage>, BusError>;

    /// Everything of `partition` below `offset` is published and its offset committed.
    fn published(&self, partition: i32, offset: i64) -> Result<(), BusError>;
}

/// How a subscription handles its records, in two stages.
///
/// The bus starts records in partition order (records with different keys may start at the
/// same time, up to `concurrency`); starting one runs its handler and stages its effects. The
/// returned [`Finish`] then waits for the effects to be applied while later records start. An
/// offset is committed only when every record up to it has finished with [`Handled::Commit`].
#[derive(Clone)]
pub struct RecordHandler {
    start: Arc<Start>,
    /// Records of one partition whose first stage may run at once (different keys only).
    pub concurrency: usize,
    /// Most records of one partition started and not yet committed.
    pub max_pending: usize,
    /// Set for an exactly-once subscription: committing an offset publishes the outbox's
    /// messages up to it, in one transaction with the offset.
    pub outbox: Option<Arc<dyn Outbox>>,
}

impl RecordHandler {
    /// A two-stage handler: `start` returns the record's [`Finish`].
    pub fn pipelined(
        concurrency: usize,
        max_pending: usize,
        start: impl Fn(Record) -> BoxFuture<'static, Finish> + Send + Sync + 'static,
    ) -> Self {
        RecordHandler {
            start: Arc::new(start),
            concurrency: concurrency.max(1),
            max_pending: max_pending.max(1),
            outbox: None,
        }
    }

    /// The same handler, exactly-once: finished records' messages wait in `outbox`.
    pub fn transactional(mut self, outbox: Arc<dyn Outbox>) -> Self {
        self.outbox = Some(outbox);
        self
    }

    /// A handler that finishes each record before the next one of its partition starts.
    pub fn sequential(
        handle: impl Fn(Record) -> BoxFuture<'static, Handled> + Send + Sync + 'static,
    ) -> Self {
        let handle = Arc::new(handle);
        Self::pipelined(1, 1, move |record| {
            let handle = handle.clone();
            Box::pin(async move { Finish::now(handle(record).await) })
        })
    }

    fn start(&self, record: Record) -> BoxFuture<'static, Finish> {
        (self.start)(record)
    }
}

/// Where [`Bus::tail`] starts reading each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailFrom {
    /// Only records published from now on.
    End,
    /// The earliest record kept.
    Beginning,
    /// This offset in every partition (or the earliest kept, if later).
    Offset(i64),
    /// The first record published at or after this time (milliseconds since the Unix epoch).
    Time(i64),
}

/// Where a consumer group stands on one partition of a topic (see [`Bus::positions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct GroupPosition {
    /// The partition.
    pub partition: i32,
    /// The offset of the earliest record the bus still keeps.
    pub start: i64,
    /// The offset the next record published gets.
    pub end: i64,
    /// The group's committed position (the next offset it reads); `None` before its first
    /// commit.
    pub committed: Option<i64>,
}

/// Resolves once the bus acknowledged every message of one [`Bus::enqueue`] call.
pub type Acks = BoxFuture<'static, Result<(), BusError>>;

/// Declares a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Number of partitions.
    pub partitions: u32,
    /// Replication factor (ignored by the embedded bus).
    pub replication: i16,
    /// How long the topic keeps records.
    pub retention: Retention,
    /// The consumer groups that are to consume the topic. The embedded bus keeps records for
    /// them from now on, even before their subscriptions start; Kafka ignores this.
    pub groups: Vec<String>,
}

impl TopicSpec {
    /// A topic of `partitions` partitions, replication 1, with the bus's default retention.
    pub fn new(name: impl Into<String>, partitions: u32) -> Self {
        TopicSpec {
            name: name.into(),
            partitions,
            replication: 1,
            retention: Retention::default(),
            groups: Vec::new(),
        }
    }
}

/// How much of a topic is kept: Kafka's `retention.bytes` and `retention.ms`.
///
/// Retention, not consumption, decides what a group that joins later can read, as on Kafka.
/// The embedded bus also drops records that every group consuming the topic has committed
/// past; see [`EmbeddedBus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// Most bytes each partition keeps (`retention.bytes`); the oldest records go first.
    pub bytes: Limit<u64>,
    /// How long a record is kept after it was published (`retention.ms`).
    pub age: Limit<Duration>,
}

/// One retention limit, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Limit<T> {
    /// Not configured: the bus decides. The embedded bus uses
    /// [`EmbeddedBus::DEFAULT_RETENTION_BYTES`] and [`EmbeddedBus::DEFAULT_RETENTION_AGE`];
    /// Kafka uses the broker's defaults.
    #[default]
    BusDefault,
    /// No limit (`-1`).
    Unlimited,
    /// At most this much.
    At(T),
}

impl<T> Limit<T> {
    /// The same limit with its value converted.
    pub fn map<U>(self, convert: impl FnOnce(T) -> U) -> Limit<U> {
        match self {
            Limit::BusDefault => Limit::BusDefault,
            Limit::Unlimited => Limit::Unlimited,
            Limit::At(value) => Limit::At(convert(value)),
        }
    }
}

/// Why the bus could not do what was asked: what failed, and the client library's error
/// beneath it when there is one.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BusError {
    /// The topic does not exist.
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    /// The broker did not acknowledge, or cannot be reached. Trying again later may work.
    #[error("bus unavailable: {what}")]
    Unavailable {
        /// What could not be done.
        what: String,
        /// The underlying error.
        #[source]
        cause: Option<Cause>,
    },
    /// The broker refused a message for good (too large, unknown topic, not authorized):
    /// trying again cannot help.
    #[error("refused by the bus: {what}")]
    Refused {
        /// What was refused.
        what: String,
        /// The underlying error.
        #[source]
        cause: Option<Cause>,
    },
    /// Anything else, e.g. an invalid subscription.
    #[error("{what}")]
    Other {
        /// What could not be done.
        what: String,
        /// The underlying error.
        #[source]
        cause: Option<Cause>,
    },
}

impl BusError {
    /// See [`BusError::Unavailable`].
    pub fn unavailable(what: impl Into<String>, cause: Option<Cause>) -> Self {
        BusError::Unavailable {
            what: what.into(),
            cause,
        }
    }

    /// See [`BusError::Refused`].
    pub fn refused(what: impl Into<String>, cause: Option<Cause>) -> Self {
        BusError::Refused {
            what: what.into(),
            cause,
        }
    }

    /// See [`BusError::Other`].
    pub fn other(what: impl Into<String>, cause: Option<Cause>) -> Self {
        BusError::Other {
            what: what.into(),
            cause,
        }
    }
}

/// Whether the bus can currently reach what it depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Working normally.
    Ok,
    /// Working on reduced means, e.g. the broker is unreachable and work is queued.
    Degraded(String),
}

/// A message bus. See the module docs for the guarantees.
pub trait Bus: Send + Sync + 'static {
    /// Creates the topics that do not exist yet. The embedded bus also applies a changed
    /// retention to existing topics; Kafka sets retention only when it creates a topic.
    fn ensure_topics(&self, topics: Vec<TopicSpec>) -> BoxFuture<'_, Result<(), BusError>>;

    /// Hands `messages` to the bus, in order; resolves once they are queued for sending (so a
    /// later call's messages go after them), with the [`Acks`] that resolve once the bus
    /// acknowledged every one of them (durable as far as this bus goes), or with an error if
    /// any was not.
    fn enqueue(&self, messages: Vec<OutMessage>) -> BoxFuture<'_, Result<Acks, BusError>>;

    /// Publishes `messages` and waits for their acknowledgement.
    fn publish(&self, messages: Vec<OutMessage>) -> BoxFuture<'_, Result<(), BusError>> {
        Box::pin(async move { self.enqueue(messages).await?.await })
    }

    /// Consumes `topic` as consumer group `group`, from the group's committed offsets. Each
    /// partition is handled by its own task, as [`RecordHandler`] describes. The returned task
    /// ends once `shutdown` fired and every started record was finished.
    fn subscribe(
        &self,
        topic: &str,
        group: &str,
        handler: RecordHandler,
        shutdown: CancellationToken,
    ) -> Result<JoinHandle<()>, BusError>;

    /// Reads `topic` without a consumer group (nothing is committed, no subscription is
    /// affected): every partition from `from` on, live, until the receiver is dropped. Records
    /// of one partition arrive in order.
    fn tail(
        &self,
        topic: &str,
        from: TailFrom,
    ) -> BoxFuture<'_, Result<mpsc::Receiver<Record>, BusError>>;

    /// Where `group` stands on every partition of `topic`, in partition order. Repairs
    /// (replay, redrive) start from here.
    fn positions(
        &self,
        topic: &str,
        group: &str,
    ) -> BoxFuture<'_, Result<Vec<GroupPosition>, BusError>>;

    /// The offset of the first record of each partition of `topic` published at or after
    /// `ms` (milliseconds since the Unix epoch), or the end offset when there is none.
    fn offsets_at(&self, topic: &str, ms: i64) -> BoxFuture<'_, Result<Vec<i64>, BusError>>;

    /// Sets the committed position (the next offset to read) of `group` on the given
    /// partitions of `topic`. Only for a group that is not consuming `topic` now: a running
    /// subscription would overwrite it with its own commits.
    fn set_positions(
        &self,
        topic: &str,
        group: &str,
        positions: Vec<(i32, i64)>,
    ) -> BoxFuture<'_, Result<(), BusError>>;

    /// The kept records of `topic`/`partition` from offset `from` up to (not including)
    /// `until`, without a consumer group.
    fn read(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        until: i64,
    ) -> BoxFuture<'_, Result<Vec<Record>, BusError>>;

    /// The largest message the bus accepts, key, value and headers included; `None` when it
    /// has no limit of its own.
    fn max_message_bytes(&self) -> Option<usize> {
        None
    }

    /// How far each consumer group of this host is behind, per partition (as far as known).
    fn lag(&self) -> Vec<PartitionLag> {
        Vec::new()
    }

    /// Whether the bus is healthy.
    fn health(&self) -> Health {
        Health::Ok
    }
}
