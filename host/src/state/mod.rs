//! Durable per-plugin key-value state.
//!
//! Every plugin has its own namespace. Handlers never write directly: their writes are staged
//! (see `runtime::Effects`), become visible to later inputs once they passed their conflict
//! check ([`PendingStore`]), and are applied here, many inputs in one atomic batch.

mod embedded;
mod outbox;
mod pending;
mod postgres;

use std::ops::RangeInclusive;

use crate::error::{Cause, cause};
use crate::runtime::OutMessage;

pub use embedded::EmbeddedStore;
pub use outbox::{Consumed, OutboxEntry};
pub use pending::{ApplyError, PendingStore, Ticket};
pub use postgres::{PostgresStore, redacted};

/// One staged write: a key and its new value, `None` to delete.
pub type Write = (String, Option<Vec<u8>>);

/// Entries in key order, as a scan returns them.
pub type Entries = Vec<(String, Vec<u8>)>;

/// What one input read, for a store shared with other hosts to check at commit time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reads {
    /// Key → the value the input saw (`None`: absent).
    pub keys: Vec<(String, Option<Vec<u8>>)>,
    /// Prefix → the entries the input saw under it.
    pub scans: Vec<(String, Entries)>,
}

impl Reads {
    /// True when the input read nothing.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.scans.is_empty()
    }
}

/// One input's part of a store transaction.
#[derive(Debug, Clone, Default)]
pub struct Change {
    /// The plugin's namespace.
    pub namespace: String,
    /// Its writes, applied in this order.
    pub writes: Vec<Write>,
    /// What it read: a [shared](StateStore::shared) store applies the change only if these
    /// still hold; a store with one writer relies on the host's own check.
    pub reads: Reads,
    /// Its outbox entry, for a consumed record of an exactly-once subscription.
    pub outbox: Option<OutboxEntry>,
    /// Messages a shared store keeps and relays to the bus once the change committed.
    pub relay: Vec<OutMessage>,
}

/// What one store transaction applies: many inputs' changes, in order.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// The changes, applied in this order.
    pub changes: Vec<Change>,
}

impl Batch {
    /// A batch of one namespace's writes.
    pub fn writes(namespace: &str, writes: &[Write]) -> Self {
        Batch {
            changes: vec![Change {
                namespace: namespace.to_string(),
                writes: writes.to_vec(),
                ..Change::default()
            }],
        }
    }

    fn is_empty(&self) -> bool {
        (self.changes.iter())
            .all(|c| c.writes.is_empty() && c.outbox.is_none() && c.relay.is_empty())
    }
}

/// The indexes of the changes of a batch that a shared store refused, because what they read
/// had changed; the others were applied.
pub type Refused = Vec<usize>;

/// Why the store could not serve a request: what failed, and the store's own error beneath.
#[derive(Debug, Clone, thiserror::Error)]
#[error("state store: {what}")]
pub struct StateError {
    what: String,
    #[source]
    cause: Option<Cause>,
}

impl StateError {
    /// A failure with no underlying error.
    pub fn new(what: impl Into<String>) -> Self {
        StateError {
            what: what.into(),
            cause: None,
        }
    }

    /// A `map_err` adapter: `what` failed because of the store-specific error it is given.
    pub fn failed<E>(what: impl Into<String>) -> impl FnOnce(E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let what = what.into();
        move |error| StateError {
            what,
            cause: cause(error),
        }
    }
}

/// A durable key-value store with one namespace per plugin.
pub trait StateStore: Send + Sync + 'static {
    /// Reads `key` in `namespace`.
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, StateError>;

    /// Every entry of `namespace` whose key starts with `prefix`, in key order.
    fn scan(&self, namespace: &str, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StateError>;

    /// Applies `writes` to `namespace` atomically and durably: after `Ok`, a crash loses none
    /// of them; after `Err` or a crash during the call, none is visible.
    fn apply(&self, namespace: &str, writes: &[Write]) -> Result<(), StateError> {
        self.apply_batch(&Batch::writes(namespace, writes))
            .map(drop)
    }

    /// Applies the batch's changes in order, all atomically and durably, as [`Self::apply`]
    /// does for one namespace: writes, outbox entries and relayed messages together. This is
    /// the commit exactly-once rests on. A shared store leaves out the changes whose reads no
    /// longer hold and names them; the rest commit.
    fn apply_batch(&self, batch: &Batch) -> Result<Refused, StateError>;

    /// True when other hosts write this store too: the host's own conflict check is then not
    /// enough, so changes carry their reads, and messages of inputs that touched state are
    /// relayed from the store rather than sent before the commit.
    fn shared(&self) -> bool {
        false
    }

    /// The outbox entries of `from` whose offsets are in `offsets`, in offset order.
    fn outbox(
        &self,
        from: &Consumed,
        offsets: RangeInclusive<i64>,
    ) -> Result<Vec<OutboxEntry>, StateError>;

    /// Drops the outbox entries of `from` below `offset`: they are published and their
    /// offsets committed.
    fn drop_outbox_below(&self, from: &Consumed, offset: i64) -> Result<(), StateError>;

    /// True when the record at `offset` of `from` was applied: its outbox entry is there (not
    /// yet published), or (a shared store) it is below what was published already.
    fn applied(&self, from: &Consumed, offset: i64) -> Result<bool, StateError> {
        Ok(!self.outbox(from, offset..=offset)?.is_empty())
    }
}
