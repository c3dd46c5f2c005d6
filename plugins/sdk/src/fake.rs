//! An in-memory [`Host`] for native unit tests of plugin logic.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use crate::{Host, Level, Message};

/// Records everything a handler does. Unlike the real host it applies writes immediately, so a
/// test that expects a failure to discard effects must check that itself.
#[derive(Debug, Default)]
pub struct FakeHost {
    pub state: BTreeMap<String, Vec<u8>>,
    pub sent: Vec<Message>,
    pub config: BTreeMap<String, String>,
    /// Topics that `send` refuses, like a host whose configuration does not allow them.
    pub denied_topics: BTreeSet<String>,
    pub logs: RefCell<Vec<(Level, String)>>,
}

impl FakeHost {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a configuration value.
    pub fn with_config(mut self, key: &str, value: &str) -> Self {
        self.config.insert(key.to_owned(), value.to_owned());
        self
    }

    /// The stored value under `key` as text, for assertions.
    pub fn text(&self, key: &str) -> Option<String> {
        self.state
            .get(key)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

impl Host for FakeHost {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.state.get(key).cloned()
    }

    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        self.state.insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    fn delete(&mut self, key: &str) {
        self.state.remove(key);
    }

    fn scan(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        self.state
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn send(&mut self, msg: Message) -> Result<(), String> {
        if self.denied_topics.contains(&msg.topic) {
            return Err(format!("publishing to {:?} is not allowed", msg.topic));
        }
        self.sent.push(msg);
        Ok(())
    }

    fn config(&self, key: &str) -> Option<String> {
        self.config.get(key).cloned()
    }

    fn log(&self, level: Level, msg: &str) {
        self.logs.borrow_mut().push((level, msg.to_owned()));
    }
}
