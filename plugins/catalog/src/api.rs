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

/// A stock record as the workshop's inventory service answers it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InventoryJson {
    /// The record's number: the product's position in the catalog, from 1.
    id: usize,
    item_id: &'static str,
    location: &'static str,
    quantity: u32,
    /// A map of the location.
    link: String,
}

impl InventoryJson {
    fn of(index: usize, p: &Product) -> Self {
        Self {
            id: index + 1,
            item_id: p.item_id,
            location: p.location,
            quantity: p.quantity,
            link: format!(
                "https://maps.google.com/?q={}",
                p.location.replace(' ', "+")
            ),
        }
    }
}

/// The stock records of the products `keep` selects, in catalog order.
fn inventory(keep: impl Fn(&Product) -> bool) -> Vec<InventoryJson> {
    shop_data::PRODUCTS
        .iter()
        .enumerate()
        .filter(|(_, p)| keep(p))
        .map(|(i, p)| InventoryJson::of(i, p))
        .collect()
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
        // Like the workshop's, one item's stock is a list: empty for an unknown item.
        [.., "inventory", id] => Response::json(200, &inventory(|p| p.item_id == *id)),
        [.., "inventory"] => Response::json(200, &inventory(|_| true)),
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
        let res = get("/api/product/123");
        assert_eq!(res.status, 404);
        assert_eq!(
            res.body_json(),
            json!({ "message": "product 123 not found", "status": 404 })
        );
    }

    #[test]
    fn reports_one_items_stock_as_a_list() {
        let res = get("/api/inventory/444434");
        assert_eq!(res.status, 200);
        assert_eq!(
            res.body_json(),
            json!([{
                "id": 6,
                "itemId": "444434",
                "location": "New York",
                "quantity": 232,
                "link": "https://maps.google.com/?q=New+York"
            }])
        );
        let unknown = get("/api/inventory/123");
        assert_eq!((unknown.status, unknown.body_json()), (200, json!([])));
    }

    #[test]
    fn reports_all_stock_with_unique_ids() {
        let res = get("/api/inventory");
        assert_eq!(res.status, 200);
        let all = res.body_json();
        let all = all.as_array().cloned().unwrap_or_default();
        assert_eq!(all.len(), shop_data::PRODUCTS.len());
        for (record, product) in all.iter().zip(&shop_data::PRODUCTS) {
            assert_eq!(record["itemId"], product.item_id);
            assert_eq!(record["quantity"], product.quantity);
            assert_eq!(
                get(&format!("/api/inventory/{}", product.item_id)).body_json(),
                json!([record])
            );
        }
        let ids: std::collections::BTreeSet<u64> =
            all.iter().filter_map(|r| r["id"].as_u64()).collect();
        assert_eq!(ids.len(), all.len(), "ids are unique: {all:?}");
    }

    #[test]
    fn rejects_other_methods_and_paths() {
        assert_eq!(handle(&Request::new("POST", "/api/products")).status, 405);
        assert_eq!(get("/api/other").status, 404);
    }
}
