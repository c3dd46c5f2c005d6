//! Testkit plugin (world `plugin`), for the host's integration tests. The input picks the
//! behaviour: for HTTP the last path segment (see [`http`]), for messages the value, as text
//! `op` or `op:arg` (see [`messages`]). Some behaviours misbehave on purpose (traps, endless
//! loops, memory bombs, sandbox escapes, invalid strings) so tests can prove the host contains
//! them.

mod http;
mod messages;
mod misbehave;

use sdk::{Delivery, Failure, Host, HttpHandler, MessageHandler, Request, Response};

pub struct Testkit;

impl HttpHandler for Testkit {
    fn on_request(host: &mut impl Host, request: Request) -> Result<Response, Failure> {
        http::handle(host, &request)
    }
}

impl MessageHandler for Testkit {
    fn on_message(host: &mut impl Host, delivery: Delivery) -> Result<(), Failure> {
        messages::handle(host, &delivery)
    }
}

sdk::export_plugin!(Testkit);
