//! The integration tests, in one binary: one module per area, sharing `tests/common`.
//!
//! Run with: `cargo test -p eventhost --test it` (or `... --test it coolstore::cart` for one
//! module). Tests that need a Kafka broker read `EVENTHOST_KAFKA_BOOTSTRAP` (default
//! `127.0.0.1:9092`; `make test` starts one).
//!
//! Tests that must own the process or the broker are binaries of their own:
//! `tests/kafka_crash.rs` stops the broker and kills hosts, and `tests/soak.rs` measures a
//! host's memory under a load that must not share the machine with other tests.

#[path = "../common/mod.rs"]
mod common;

mod bus_conformance;
mod cli;
mod cluster;
mod config_fixtures;
mod contract;
mod coolstore;
mod cors;
mod polyglot;
mod reload;
mod repair;
mod reuse;
mod robustness;
mod sandbox;
mod scaffold;
mod state;
mod subscriptions;
