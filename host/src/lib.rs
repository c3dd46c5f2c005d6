//! eventhost runs event-driven business logic as sandboxed WebAssembly components.
//!
//! A TOML [`config`] binds topics and HTTP routes to plugins: components implementing the
//! `eventhost:plugin` WIT contract. The [`runtime`] runs each input on a fresh, limited
//! instance; the [`dispatch`]er applies the input's staged effects (published messages, state
//! writes) only when it succeeded; the [`bus`] (embedded or Kafka) delivers records in
//! partition order and commits after effects; [`state`] keeps each plugin's data durably;
//! [`http`] serves the routes, speaking [`cloudevents`] where asked; [`metrics`] counts what flows;
//! [`telemetry`] exports each input as a trace span. The [`contract`] test kit runs
//! data-driven cases against any plugin through the same runtime; [`scaffold`] creates a plugin
//! folder in any language.

#![deny(missing_docs)]

pub mod app;
pub mod bus;
pub mod cloudevents;
pub mod config;
pub mod contract;
pub mod dispatch;
pub mod error;
pub mod http;
pub mod metrics;
pub mod reload;
pub mod runtime;
pub mod scaffold;
pub mod state;
pub mod telemetry;
