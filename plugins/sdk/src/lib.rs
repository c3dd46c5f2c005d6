//! The Rust SDK of the `eventhost:plugin` contract, shared by the Rust guest plugins.
//!
//! The contract's bindings are generated here once. A plugin implements [`HttpHandler`] and/or
//! [`MessageHandler`] against the [`Host`] trait and exports itself with one line:
//!
//! ```
//! use sdk::{Delivery, Failure, Host, Request, Response};
//!
//! struct Payment;
//!
//! impl sdk::MessageHandler for Payment {
//!     fn on_message(host: &mut impl Host, delivery: Delivery) -> Result<(), Failure> {
//!         let _ = (host, delivery);
//!         Ok(())
//!     }
//! }
//!
//! impl sdk::HttpHandler for Payment {
//!     fn on_request(host: &mut impl Host, request: Request) -> Result<Response, Failure> {
//!         let _ = (host, request);
//!         Err(Failure::invalid("no payment rules yet"))
//!     }
//! }
//!
//! sdk::export_plugin!(Payment);
//! ```
//!
//! In the component the handlers get the real host; native unit tests call them with
//! [`fake::FakeHost`].

mod bindings;
mod export;
pub mod fake;
mod http;

pub use bindings::log::Level;
pub use bindings::types::{
    Delivery, Failure, HttpRequest as Request, HttpResponse as Response, Message,
};
pub use http::percent_decode;

/// What the export macros expand to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::{http, message};
    pub use crate::export::Exported;
}

use serde::{Serialize, de::DeserializeOwned};

/// A plugin that serves HTTP routes (world `http-plugin`, or `plugin` with [`MessageHandler`]).
pub trait HttpHandler {
    /// Answers one request. On `Ok` (whatever the status) the host applies the staged effects;
    /// on `Err` nothing is applied and the client gets 400 (`Invalid`) or 500 (`Retry`).
    fn on_request(host: &mut impl Host, request: Request) -> Result<Response, Failure>;
}

/// A plugin that consumes messages (world `message-plugin`, or `plugin` with [`HttpHandler`]).
pub trait MessageHandler {
    /// Handles one delivered message; `Ok` commits everything the call staged.
    fn on_message(host: &mut impl Host, delivery: Delivery) -> Result<(), Failure>;
}

impl Failure {
    /// The input is bad: dead-lettered at once, or HTTP 400.
    pub fn invalid(reason: impl Into<String>) -> Self {
        Self::Invalid(reason.into())
    }

    /// Something transient: retried with backoff, or HTTP 500.
    pub fn retry(reason: impl Into<String>) -> Self {
        Self::Retry(reason.into())
    }
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
