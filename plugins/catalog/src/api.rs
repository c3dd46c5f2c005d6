//! Routes. The catalog is read-only data, so it needs no host imports.

use sdk::{Request, Response};
use serde::Serialize;
use shop_data::{Product, money};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProductJson {
    item_id: &'static str,
    name: &'static str,
    desc: &'static str,
    price: f64,
    quantity: u32,
}

impl From<&Product> for ProductJson {
    fn from(p: &Product) -> Self {
        Self {
            item_id: p.item_id,
            name: p.name,
            desc: p.desc,
            price: money::to_number(p.price),
            quantity: p.quantity,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InventoryJson {
    item_id: &'static str,
    quantity: u32,
}

pub fn handle(req: &Request) -> Response {
    if req.method != "GET" {
        return Response::message(405, "only GET is supported");
    }
    let segments = req.segments();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match segments.as_slice() {
        [.., "products"] => {
            let all: Vec<ProductJson> = shop_data::PRODUCTS.iter().map(Into::into).collect();
            Response::json(200, &all)
        }
        [.., "product", id] => with_product(id, |p| Response::json(200, &ProductJson::from(p))),
        [.., "inventory", id] => with_product(id, |p| {
            let stock = InventoryJson {
                item_id: p.item_id,
                quantity: p.quantity,
            };
            Response::json(200, &stock)
        }),
        _ => Response::message(404, &format!("no catalog route for {}", req.path)),
    }
}

fn with_product(item_id: &str, found: impl FnOnce(&Product) -> Response) -> Response {
    match shop_data::find(item_id) {
        Some(p) => found(p),
        None => Response::message(404, &format!("product {item_id} not found")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn get(path: &str) -> Response {
        handle(&Request::new("GET", path))
    }

    #[test]
    fn lists_all_products() {
        let res = get("/api/products");
        assert_eq!(res.status, 200);
        let list = res.body_json();
        assert_eq!(list.as_array().map(Vec::len), Some(8));
        assert_eq!(list[0]["itemId"], "329299");
        assert_eq!(list[0]["price"], 10.0);
        assert_eq!(list[2]["price"], 4.15);
    }

    #[test]
    fn finds_one_product() {
        let res = get("/api/product/444437");
        assert_eq!(res.status, 200);
        let p = res.body_json();
        assert_eq!(p["name"], "Nanobloc Universal Webcam Cover");
        assert_eq!(p["price"], 2.75);
        assert_eq!(p["quantity"], 450);
    }

    #[test]
    fn unknown_products_are_404() {
        for path in ["/api/product/123", "/api/inventory/123"] {
            let res = get(path);
            assert_eq!(res.status, 404);
            assert_eq!(
                res.body_json(),
                json!({ "message": "product 123 not found", "status": 404 })
            );
        }
    }

    #[test]
    fn reports_inventory() {
        let res = get("/api/inventory/165614");
        assert_eq!(
            res.body_json(),
            json!({ "itemId": "165614", "quantity": 87 })
        );
    }

    #[test]
    fn rejects_other_methods_and_paths() {
        assert_eq!(handle(&Request::new("POST", "/api/products")).status, 405);
        assert_eq!(get("/api/other").status, 404);
    }
}
