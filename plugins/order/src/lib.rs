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

use sdk::{Delivery, Failure, Host, HttpHandler, MessageHandler, Request, Response};

pub struct Order;

impl MessageHandler for Order {
    fn on_message(host: &mut impl Host, delivery: Delivery) -> Result<(), Failure> {
        handler::on_message(host, &delivery)
    }
}

impl HttpHandler for Order {
    fn on_request(host: &mut impl Host, request: Request) -> Result<Response, Failure> {
        handler::on_request(host, &request)
    }
}

sdk::export_plugin!(Order);
