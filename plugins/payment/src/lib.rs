//! Payment plugin (world `plugin`): consumes orders (topic `orders`) and answers
//! an order `POST`ed as the body to any of its routes (the coolstore binds `/api/payment` and
//! `/`, the lab's address of the payment service). Each order gives exactly one result on topic
//! `payments`, keyed by order id: `{orderId, paymentId, remarks, status, rules}`.
//!
//! Config: `processing_delay_ms` (default 0), `rules` (`v1` or `v2`), `max_total` (caps the
//! order total, e.g. `"100.00"`; unset means no cap in rules v1 and 100.00 in rules v2),
//! `payments_topic` (default `payments`). Built with the `rules-v2` feature, it applies rules
//! v2 unless `rules` says otherwise. Each result's `rules` field names the rules applied.

mod decision;
mod handler;

#[allow(unsafe_code)] // the generated glue is unsafe by nature
mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "plugin" });
    sdk::bind!();

    // Exported names contain `:`, which a native build (the unit tests) cannot link.
    #[cfg(target_arch = "wasm32")]
    use super::Payment;
    #[cfg(target_arch = "wasm32")]
    export!(Payment);
}

use bindings::eventhost::plugin::types::{Delivery, Failure, HttpRequest, HttpResponse};
use bindings::exports::eventhost::plugin::{http_handler, message_handler};

struct Payment;

impl message_handler::Guest for Payment {
    fn handle(delivery: Delivery) -> Result<(), Failure> {
        let delivery: sdk::Delivery = delivery.into();
        handler::on_order(&mut bindings::Wasm, &delivery.message.value).map_err(Into::into)
    }
}

impl http_handler::Guest for Payment {
    fn handle(request: HttpRequest) -> Result<HttpResponse, Failure> {
        handler::on_request(&mut bindings::Wasm, &request.into())
            .map(Into::into)
            .map_err(Into::into)
    }
}
