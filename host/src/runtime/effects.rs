//! What one input staged: messages to publish and state reads and writes.
//!
//! Nothing here touches the bus or the store; the dispatcher applies an `Effects` only when the
//! handler returned `ok`, and uses the recorded reads to detect conflicting concurrent inputs.

use std::collections::BTreeMap;

/// A message a plugin asked to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutMessage {
    /// Destination topic (already checked against the plugin's allow-list).
    pub topic: String,
    /// Partitioning key.
    pub key: Option<Vec<u8>>,
    /// Payload.
    pub value: Vec<u8>,
    /// Headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl OutMessage {
    /// Bytes it takes on the bus: key, value and headers.
    pub fn size(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        self.key.as_ref().map_or(0, Vec::len) + self.value.len() + headers
    }
}

/// Staged effects of one input.
#[derive(Debug, Default)]
pub struct Effects {
    /// Messages to publish, in the order they were sent.
    pub outbox: Vec<OutMessage>,
    /// Key → new value (`None` deletes).
    pub writes: BTreeMap<String, Option<Vec<u8>>>,
    /// Key → the value the input saw in the store when it first read it.
    pub reads: BTreeMap<String, Option<Vec<u8>>>,
    /// Prefix → the entries the store held when the input scanned it.
    pub scans: BTreeMap<String, Vec<(String, Vec<u8>)>>,
}

impl Effects {
    /// True when the input read or wrote state, so its commit must be checked for conflicts.
    pub fn touches_state(&self) -> bool {
        !(self.writes.is_empty() && self.reads.is_empty() && self.scans.is_empty())
    }

    /// The value of `key` as this input sees it: its own staged write if any.
    pub fn staged(&self, key: &str) -> Option<&Option<Vec<u8>>> {
        self.writes.get(key)
    }

    /// Merges the input's staged writes over `stored`, the store's entries under `prefix`.
    pub fn overlay_scan(
        &self,
        prefix: &str,
        stored: Vec<(String, Vec<u8>)>,
    ) -> Vec<(String, Vec<u8>)> {
        let mut merged: BTreeMap<String, Vec<u8>> = stored.into_iter().collect();
        for (key, value) in self.writes.range(prefix.to_string()..) {
            if !key.starts_with(prefix) {
                break;
            }
            match value {
                Some(v) => merged.insert(key.clone(), v.clone()),
                None => merged.remove(key),
            };
        }
        merged.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_sees_own_writes_and_deletes() {
        let mut effects = Effects::default();
        effects.writes.insert("a:2".into(), Some(b"new".to_vec()));
        effects.writes.insert("a:1".into(), None);
        effects.writes.insert("b:1".into(), Some(b"other".to_vec()));
        let stored = vec![("a:1".into(), b"x".to_vec()), ("a:3".into(), b"y".to_vec())];
        let seen = effects.overlay_scan("a:", stored);
        assert_eq!(
            seen,
            vec![
                ("a:2".into(), b"new".to_vec()),
                ("a:3".into(), b"y".to_vec())
            ]
        );
    }

    #[test]
    fn pure_outbox_does_not_touch_state() {
        let mut effects = Effects::default();
        assert!(!effects.touches_state());
        effects.reads.insert("k".into(), None);
        assert!(effects.touches_state());
    }
}
