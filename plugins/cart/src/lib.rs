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

#[allow(unsafe_code)] // the generated glue is unsafe by nature
mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "http-plugin" });
    sdk::bind!();

    // Exported names contain `:`, which a native build (the unit tests) cannot link.
    #[cfg(target_arch = "wasm32")]
    use super::Cart;
    #[cfg(target_arch = "wasm32")]
    export!(Cart);
}

use bindings::eventhost::plugin::types::{Failure, HttpRequest, HttpResponse};
use bindings::exports::eventhost::plugin::http_handler::Guest;

struct Cart;

impl Guest for Cart {
    fn handle(request: HttpRequest) -> Result<HttpResponse, Failure> {
        api::handle(&mut bindings::Wasm, &request.into())
            .map(Into::into)
            .map_err(Into::into)
    }
}
