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

use sdk::{Delivery, Failure, Host, HttpHandler, MessageHandler, Request, Response};

pub struct Payment;

impl MessageHandler for Payment {
    fn on_message(host: &mut impl Host, delivery: Delivery) -> Result<(), Failure> {
        handler::on_order(host, &delivery.message.value)
    }
}

impl HttpHandler for Payment {
    fn on_request(host: &mut impl Host, request: Request) -> Result<Response, Failure> {
        handler::on_request(host, &request)
    }
}

sdk::export_plugin!(Payment);
