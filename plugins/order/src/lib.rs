//! Order plugin (world `plugin`): records every order from topic `orders` with status
//! `PROCESSING`, sets `COMPLETED` or `FAILED` from topic `payments`, and serves the workshop's
//! order API: `GET /api/orders`, `POST /api/orders`, `GET /api/orders/{orderId}` and
//! `GET /api/orders/{orderId}/{status}` (see [`handler::on_request`]).
//!
//! State: `order:<orderId>` holds the order; `payment:<orderId>` holds a payment that arrived
//! before its order. Config: `orders_topic` (default `orders`), `payments_topic` (default
//! `payments`).

mod handler;
mod model;

#[allow(unsafe_code)] // the generated glue is unsafe by nature
mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "plugin" });
    sdk::bind!();

    // Exported names contain `:`, which a native build (the unit tests) cannot link.
    #[cfg(target_arch = "wasm32")]
    use super::Order;
    #[cfg(target_arch = "wasm32")]
    export!(Order);
}

use bindings::eventhost::plugin::types::{Delivery, Failure, HttpRequest, HttpResponse};
use bindings::exports::eventhost::plugin::{http_handler, message_handler};

struct Order;

impl message_handler::Guest for Order {
    fn handle(delivery: Delivery) -> Result<(), Failure> {
        handler::on_message(&mut bindings::Wasm, &delivery.into()).map_err(Into::into)
    }
}

impl http_handler::Guest for Order {
    fn handle(request: HttpRequest) -> Result<HttpResponse, Failure> {
        handler::on_request(&mut bindings::Wasm, &request.into())
            .map(Into::into)
            .map_err(Into::into)
    }
}
