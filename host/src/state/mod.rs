//! Durable per-plugin key-value state.
//!
//! Every plugin has its own namespace. Handlers never write directly: their writes are staged
//! (see `runtime::Effects`), become visible to later inputs once they passed their conflict
//! check ([`PendingStore`]), and are applied here, many inputs in one atomic batch.

mod embedded;
mod outbox;
mod pending;

use std::ops::RangeInclusive;

use crate::error::{Cause, cause};

pub use embedded::EmbeddedStore;
pub use outbox::{Consumed, OutboxEntry};
pub use pending::{ApplyError, PendingStore, Ticket};

/// One staged write: a key and its new value, `None` to delete.
pub type Write = (String, Option<Vec<u8>>);

/// What one store transaction applies: the writes of many inputs, namespace by namespace in
/// order, and the outbox entries of the consumed records among them.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Each namespace's writes, applied in this order.
    pub writes: Vec<(String, Vec<Write>)>,
    /// Entries added to the outbox.
    pub outbox: Vec<OutboxEntry>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.outbox.is_empty() && self.writes.iter().all(|(_, writes)| writes.is_empty())
    }
}

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
        self.apply_batch(&Batch {
            writes: vec![(namespace.to_string(), writes.to_vec())],
            outbox: Vec::new(),
        })
    }

    /// Applies every namespace's writes, in order, and adds the batch's outbox entries, all
    /// atomically and durably, as [`Self::apply`] does for one namespace. This is the commit
    /// exactly-once rests on: state writes and what the inputs produced, together.
    fn apply_batch(&self, batch: &Batch) -> Result<(), StateError>;

    /// The outbox entries of `from` whose offsets are in `offsets`, in offset order.
    fn outbox(
        &self,
        from: &Consumed,
        offsets: RangeInclusive<i64>,
    ) -> Result<Vec<OutboxEntry>, StateError>;

    /// Drops the outbox entries of `from` below `offset`: they are published and their
    /// offsets committed.
    fn drop_outbox_below(&self, from: &Consumed, offset: i64) -> Result<(), StateError>;
}
