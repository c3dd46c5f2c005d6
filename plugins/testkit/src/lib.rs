//! Testkit plugin (world `plugin`), for the host's integration tests. The input picks the
//! behaviour: for HTTP the last path segment (see [`http`]), for messages the value, as text
//! `op` or `op:arg` (see [`messages`]). Some behaviours misbehave on purpose (traps, endless
//! loops, memory bombs, sandbox escapes, invalid strings) so tests can prove the host contains
//! them.

mod http;
mod messages;
mod misbehave;

#[allow(unsafe_code)] // the generated glue is unsafe by nature
mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "plugin" });
    sdk::bind!();

    // Exported names contain `:`, which a native build (the unit tests) cannot link.
    #[cfg(target_arch = "wasm32")]
    use super::Testkit;
    #[cfg(target_arch = "wasm32")]
    export!(Testkit);
}

use bindings::eventhost::plugin::types::{Delivery, Failure, HttpRequest, HttpResponse};
use bindings::exports::eventhost::plugin::{http_handler, message_handler};

struct Testkit;

impl http_handler::Guest for Testkit {
    fn handle(request: HttpRequest) -> Result<HttpResponse, Failure> {
        http::handle(&mut bindings::Wasm, &request.into())
            .map(Into::into)
            .map_err(Into::into)
    }
}

impl message_handler::Guest for Testkit {
    fn handle(delivery: Delivery) -> Result<(), Failure> {
        messages::handle(&mut bindings::Wasm, &delivery.into()).map_err(Into::into)
    }
}
