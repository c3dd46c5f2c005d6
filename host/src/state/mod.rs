//! Durable per-plugin key-value state.
//!
//! Every plugin has its own namespace. Handlers never write directly: their writes are staged
//! (see `runtime::Effects`), become visible to later inputs once they passed their conflict
//! check ([`PendingStore`]), and are applied here, many inputs in one atomic batch.

mod embedded;
mod pending;

use crate::error::{Cause, cause};

pub use embedded::EmbeddedStore;
pub use pending::{ApplyError, PendingStore, Ticket};

/// One staged write: a key and its new value, `None` to delete.
pub type Write = (String, Option<Vec<u8>>);

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
        self.apply_batch(&[(namespace.to_string(), writes.to_vec())])
    }

    /// Applies every namespace's writes, in order, atomically and durably, as [`Self::apply`]
    /// does for one.
    fn apply_batch(&self, batch: &[(String, Vec<Write>)]) -> Result<(), StateError>;
}
