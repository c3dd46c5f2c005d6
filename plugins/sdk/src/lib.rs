//! A plain-Rust view of the `eventhost:plugin` contract, shared by the Rust guest plugins.
//!
//! Each plugin generates its own bindings with `wit_bindgen::generate!`, which gives it private
//! copies of the contract's types. Plugin logic is written against the types and the [`Host`]
//! trait of this crate instead, so it runs in native unit tests against [`fake::FakeHost`];
//! [`bind!`] connects it to the real imports in the component.

pub mod fake;
mod http;

pub use http::{Request, Response, percent_decode};

use serde::{Serialize, de::DeserializeOwned};

/// A message on a topic, as sent through the outbox or received by a subscription.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    /// Application headers: names with raw byte values, in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// A consumed message together with where it came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    pub message: Message,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    /// 1 for the first try, 2 for the first retry, and so on.
    pub attempt: u32,
}

/// Why a handler could not handle an input; nothing it staged is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The input is bad: dead-lettered at once, or HTTP 400.
    Invalid(String),
    /// Something transient: retried with backoff, or HTTP 500.
    Retry(String),
}

impl Failure {
    pub fn invalid(reason: impl Into<String>) -> Self {
        Self::Invalid(reason.into())
    }

    pub fn retry(reason: impl Into<String>) -> Self {
        Self::Retry(reason.into())
    }
}

/// How important a log line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// The host's imports: state, outbox, config and log. Writes and sends are staged by the host
/// and applied only when the handler succeeds.
pub trait Host {
    fn get(&self, key: &str) -> Option<Vec<u8>>;
    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), String>;
    fn delete(&mut self, key: &str);
    /// Every key starting with `prefix`, with its value, in key order.
    fn scan(&self, prefix: &str) -> Vec<(String, Vec<u8>)>;
    fn send(&mut self, msg: Message) -> Result<(), String>;
    fn config(&self, key: &str) -> Option<String>;
    fn log(&self, level: Level, msg: &str);

    /// Reads a JSON value. A value that does not parse is our own bug, not the input's, so it
    /// is reported as transient: the message is retried and finally dead-lettered, not lost.
    fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Failure> {
        self.get(key)
            .map(|bytes| serde_json::from_slice(&bytes))
            .transpose()
            .map_err(|e| Failure::retry(format!("corrupt state under {key:?}: {e}")))
    }

    /// Stores a JSON value. The host refuses values over its size limit, which retrying cannot
    /// change, hence `invalid`.
    fn set_json<T: Serialize>(&mut self, key: &str, value: &T) -> Result<(), Failure> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| Failure::retry(format!("cannot encode state for {key:?}: {e}")))?;
        self.set(key, &bytes)
            .map_err(|e| Failure::invalid(format!("cannot store {key:?}: {e}")))
    }

    /// A configuration value, or `default` when it is unset.
    fn config_or(&self, key: &str, default: &str) -> String {
        self.config(key).unwrap_or_else(|| default.to_owned())
    }
}

/// Connects a plugin to the contract: call it inside the module that ran
/// `wit_bindgen::generate!`. It defines `Wasm`, the [`Host`] backed by the component's imports,
/// and `From` conversions between the generated types and this crate's.
#[macro_export]
macro_rules! bind {
    () => {
        /// The real host, reached through the component's imports.
        pub struct Wasm;

        impl $crate::Host for Wasm {
            fn get(&self, key: &str) -> Option<Vec<u8>> {
                eventhost::plugin::state::get(key)
            }
            fn set(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
                eventhost::plugin::state::set(key, value)
            }
            fn delete(&mut self, key: &str) {
                eventhost::plugin::state::delete(key)
            }
            fn scan(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
                eventhost::plugin::state::scan(prefix)
            }
            fn send(&mut self, msg: $crate::Message) -> Result<(), String> {
                eventhost::plugin::outbox::send(&msg.into())
            }
            fn config(&self, key: &str) -> Option<String> {
                eventhost::plugin::config::get(key)
            }
            fn log(&self, level: $crate::Level, msg: &str) {
                eventhost::plugin::log::log(level.into(), msg)
            }
        }

        impl From<$crate::Message> for eventhost::plugin::types::Message {
            fn from(m: $crate::Message) -> Self {
                let $crate::Message {
                    topic,
                    key,
                    value,
                    headers,
                } = m;
                Self {
                    topic,
                    key,
                    value,
                    headers,
                }
            }
        }

        impl From<eventhost::plugin::types::Delivery> for $crate::Delivery {
            fn from(d: eventhost::plugin::types::Delivery) -> Self {
                let eventhost::plugin::types::Message {
                    topic,
                    key,
                    value,
                    headers,
                } = d.message;
                Self {
                    message: $crate::Message {
                        topic,
                        key,
                        value,
                        headers,
                    },
                    partition: d.partition,
                    offset: d.offset,
                    timestamp_ms: d.timestamp_ms,
                    attempt: d.attempt,
                }
            }
        }

        impl From<eventhost::plugin::types::HttpRequest> for $crate::Request {
            fn from(r: eventhost::plugin::types::HttpRequest) -> Self {
                let eventhost::plugin::types::HttpRequest {
                    method,
                    path,
                    query,
                    route,
                    params,
                    headers,
                    body,
                } = r;
                Self {
                    method,
                    path,
                    query,
                    route,
                    params,
                    headers,
                    body,
                }
            }
        }

        impl From<$crate::Response> for eventhost::plugin::types::HttpResponse {
            fn from(r: $crate::Response) -> Self {
                let $crate::Response {
                    status,
                    headers,
                    body,
                } = r;
                Self {
                    status,
                    headers,
                    body,
                }
            }
        }

        impl From<$crate::Failure> for eventhost::plugin::types::Failure {
            fn from(f: $crate::Failure) -> Self {
                match f {
                    $crate::Failure::Invalid(s) => Self::Invalid(s),
                    $crate::Failure::Retry(s) => Self::Retry(s),
                }
            }
        }

        impl From<$crate::Level> for eventhost::plugin::log::Level {
            fn from(l: $crate::Level) -> Self {
                match l {
                    $crate::Level::Trace => Self::Trace,
                    $crate::Level::Debug => Self::Debug,
                    $crate::Level::Info => Self::Info,
                    $crate::Level::Warn => Self::Warn,
                    $crate::Level::Error => Self::Error,
                }
            }
        }
    };
}
