//! Durable per-plugin key-value state.
//!
//! Every plugin has its own namespace. Handlers never write directly: their writes are staged
//! (see `runtime::Effects`), become visible to later inputs once they passed their conflict
//! check ([`PendingStore`]), and are applied here, many inputs in one atomic batch.

mod embedded;
mod pending;

pub use embedded::EmbeddedStore;
pub use pending::{ApplyError, PendingStore, Ticket};

/// One staged write: a key and its new value, `None` to delete.
pub type Write = (String, Option<Vec<u8>>);

/// Why the store could not serve a request.
#[derive(Debug, thiserror::Error)]
#[error("state store: {0}")]
pub struct StateError(String);

impl StateError {
    /// Wraps any store-specific error.
    pub fn new(err: impl std::fmt::Display) -> Self {
        StateError(err.to_string())
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
        self.apply_batch(&[(namespace.to_string(), writes.to_vec())])
    }

    /// Applies every namespace's writes, in order, atomically and durably, as [`Self::apply`]
    /// does for one.
    fn apply_batch(&self, batch: &[(String, Vec<Write>)]) -> Result<(), StateError>;
}
