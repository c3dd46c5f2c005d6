//! Catalog plugin (world `http-plugin`): the coolstore's products and their stock.
//!
//! - `GET /api/products`: every product, `[{itemId, name, desc, price, quantity}]`
//! - `GET /api/product/{itemId}`: one product, or 404
//! - `GET /api/inventory`: the stock of every product, `[{id, itemId, location, quantity, link}]`
//! - `GET /api/inventory/{itemId}`: that product's stock records, a list as above (empty for
//!   an unknown product), as the workshop's inventory service answers

mod api;

#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "http-plugin" });
    sdk::bind!();

    // Exported names contain `:`, which a native build (the unit tests) cannot link.
    #[cfg(target_arch = "wasm32")]
    use super::Catalog;
    #[cfg(target_arch = "wasm32")]
    export!(Catalog);
}

use bindings::eventhost::plugin::types::{Failure, HttpRequest, HttpResponse};
use bindings::exports::eventhost::plugin::http_handler::Guest;

struct Catalog;

impl Guest for Catalog {
    fn handle(request: HttpRequest) -> Result<HttpResponse, Failure> {
        Ok(api::handle(&request.into()).into())
    }
}
