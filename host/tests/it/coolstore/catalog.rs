//! The catalog and inventory services: the workshop's products, stock and lists.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_lists_the_eight_products_of_the_workshop() {
    let host = TestHost::start(&coolstore()).await;
    let (status, products) = get(&host, "/api/products").await;
    assert_eq!(status, 200, "{products}");
    let products = products.as_array().expect("a list of products");
    let listed: Vec<(&str, &str, i64)> = products
        .iter()
        .map(|p| {
            (
                p["itemId"].as_str().expect("itemId"),
                p["name"].as_str().expect("name"),
                cents(&p["price"]),
            )
        })
        .collect();
    assert_eq!(listed, PRODUCTS);
    for product in products {
        assert!(product["quantity"].is_u64(), "{product}");
        assert!(
            product["desc"].as_str().is_some_and(|d| !d.is_empty()),
            "{product}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_serves_one_product_and_its_stock_and_404s_unknown_ids() {
    let host = TestHost::start(&coolstore()).await;
    let (_, list) = get(&host, "/api/products").await;
    for (id, name, price) in PRODUCTS {
        let listed = list
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["itemId"] == id)
            .expect("listed");

        let (status, product) = get(&host, &format!("/api/product/{id}")).await;
        assert_eq!(status, 200, "{product}");
        assert_eq!(&product, listed);
        assert_eq!(
            (product["name"].as_str(), cents(&product["price"])),
            (Some(name), price)
        );
    }
    assert_error(&get(&host, "/api/product/123456").await, 404, "123456");
}

/// The workshop's inventory service: `GET /api/inventory` (the lab's
/// `curl .../api/inventory | jq`) lists every record, `GET /api/inventory/{itemId}` answers a
/// list of that item's records (the workshop's catalog parses that list).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_answers_lists_of_records_like_the_workshop() {
    let host = TestHost::start(&coolstore()).await;
    let (status, all) = get(&host, "/api/inventory").await;
    assert_eq!(status, 200, "{all}");
    let all = all.as_array().expect("a list of inventory records").clone();
    assert_eq!(all.len(), PRODUCTS.len(), "one record per product: {all:?}");
    let (_, products) = get(&host, "/api/products").await;
    let mut ids = BTreeSet::new();
    for record in &all {
        let keys: BTreeSet<&str> = record
            .as_object()
            .expect("a record is an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from(["id", "itemId", "location", "quantity", "link"]),
            "{record}"
        );
        assert!(
            ids.insert(record["id"].as_u64().expect("numeric id")),
            "{record}"
        );
        let location = record["location"].as_str().expect("location");
        assert!(!location.is_empty(), "{record}");
        assert!(
            record["link"]
                .as_str()
                .is_some_and(|l| l.starts_with("https://")),
            "{record}"
        );
        let item_id = record["itemId"].as_str().expect("itemId");
        let product = products
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["itemId"] == item_id)
            .unwrap_or_else(|| panic!("{item_id} is a product"));
        assert_eq!(
            record["quantity"], product["quantity"],
            "stock agrees with the catalog"
        );

        let (status, one) = get(&host, &format!("/api/inventory/{item_id}")).await;
        assert_eq!(status, 200, "{one}");
        assert_eq!(one, json!([record]), "the item's records");
    }
    let (status, none) = get(&host, "/api/inventory/123456").await;
    assert_eq!(
        (status, none),
        (200, json!([])),
        "no records for an unknown item"
    );
}
