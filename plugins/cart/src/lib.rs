//! Cart plugin (world `http-plugin`): the coolstore's shopping cart, priced like the workshop's
//! cart service. Routes (see [`api`]):
//!
//! - `GET    /api/cart/{cartId}`: the priced cart (an unknown cart is empty)
//! - `POST   /api/cart/{cartId}/{itemId}/{quantity}`: adds items (an unknown product leaves
//!   the cart as it is, with a warning in the host log)
//! - `DELETE /api/cart/{cartId}/{itemId}/{quantity}`: removes items
//! - `POST   /api/cart/{cartId}/{tmpId}`: moves the items of cart `tmpId` into `cartId`
//! - `POST   /api/cart/checkout/{cartId}`: publishes the order in the body to `orders`
//!
//! Carts live in plugin state under `cart:<cartId>`. Config: `orders_topic` (default `orders`).

mod api;
mod order;
mod pricing;

use sdk::{Failure, Host, HttpHandler, Request, Response};

pub struct Cart;

impl HttpHandler for Cart {
    fn on_request(host: &mut impl Host, request: Request) -> Result<Response, Failure> {
        api::handle(host, &request)
    }
}

sdk::export_http_plugin!(Cart);
