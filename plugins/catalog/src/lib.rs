//! Catalog plugin (world `http-plugin`): the coolstore's products and their stock.
//!
//! - `GET /api/products`: every product, `[{itemId, name, desc, price, quantity}]`
//! - `GET /api/product/{itemId}`: one product, or 404
//! - `GET /api/inventory`: the stock of every product, `[{id, itemId, location, quantity, link}]`
//! - `GET /api/inventory/{itemId}`: that product's stock records, a list as above (empty for
//!   an unknown product), as the workshop's inventory service answers

mod api;

use sdk::{Failure, Host, HttpHandler, Request, Response};

pub struct Catalog;

impl HttpHandler for Catalog {
    fn on_request(_host: &mut impl Host, request: Request) -> Result<Response, Failure> {
        Ok(api::handle(&request))
    }
}

sdk::export_http_plugin!(Catalog);
