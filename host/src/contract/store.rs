//! The state a case starts from: an in-memory store, seeded before each case. The kit never
//! applies a plugin's writes (it compares them), so nothing needs to last.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::sync::Mutex;

use crate::state::{Batch, Consumed, OutboxEntry, Refused, StateError, StateStore};

/// Keys and values of every namespace, in key order.
#[derive(Default)]
pub struct MemoryStore(Mutex<BTreeMap<String, BTreeMap<String, Vec<u8>>>>);

/// The kit runs message handlers as at-least-once inputs: nothing goes to an outbox.
const NO_OUTBOX: &str = "the contract kit keeps no outbox";

impl MemoryStore {
    /// Makes `entries` the whole state of `namespace`.
    pub fn reset(&self, namespace: &str, entries: &BTreeMap<String, String>) {
        let seeded = entries
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
            .collect();
        self.lock().insert(namespace.to_string(), seeded);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, BTreeMap<String, Vec<u8>>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl StateStore for MemoryStore {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self
            .lock()
            .get(namespace)
            .and_then(|ns| ns.get(key))
            .cloned())
    }

    fn scan(&self, namespace: &str, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        let all = self.lock();
        let Some(entries) = all.get(namespace) else {
            return Ok(Vec::new());
        };
        Ok(entries
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn apply_batch(&self, batch: &Batch) -> Result<Refused, StateError> {
        if batch.changes.iter().any(|c| c.outbox.is_some()) {
            return Err(StateError::new(NO_OUTBOX));
        }
        let mut all = self.lock();
        for change in &batch.changes {
            let entries = all.entry(change.namespace.clone()).or_default();
            for (key, value) in &change.writes {
                match value {
                    Some(v) => entries.insert(key.clone(), v.clone()),
                    None => entries.remove(key),
                };
            }
        }
        Ok(Refused::new())
    }

    fn outbox(&self, _: &Consumed, _: RangeInclusive<i64>) -> Result<Vec<OutboxEntry>, StateError> {
        Ok(Vec::new())
    }

    fn drop_outbox_below(&self, _: &Consumed, _: i64) -> Result<(), StateError> {
        Ok(())
    }
}
