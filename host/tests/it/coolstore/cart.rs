//! The cart service: prices, promotions, shipping, lines and carts.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cart_prices_promotions_and_shipping_like_the_workshop() {
    let host = TestHost::start(&coolstore()).await;

    // One T-shirt: 25% off makes 10.00 into 7.50, saving 2.50.
    let tee = add(&host, "promo", "329299", 1).await;
    let line = &tee["shoppingCartItemList"][0];
    assert_eq!(
        (
            cents(&line["product"]["price"]),
            cents(&line["price"]),
            cents(&line["promoSavings"])
        ),
        (10_00, 7_50, -2_50)
    );
    assert_eq!(totals(&tee), (7_50, -2_50, 2_99, 0, 10_49));

    // (lines, totals in cents), shipping by item total:
    // < 25 → 2.99, < 50 → 4.99, < 75 → 6.99, and free from 75 on (the saving shows the fee).
    let cases: [(&[(&str, u32)], Totals); 9] = [
        (&[("444437", 9)], (24_75, 0, 2_99, 0, 27_74)),
        (&[("444437", 10)], (27_50, 0, 4_99, 0, 32_49)),
        (&[("329299", 4)], (30_00, -10_00, 4_99, 0, 34_99)),
        (&[("444437", 19)], (52_25, 0, 6_99, 0, 59_24)),
        // 80.00 at list price, 60.00 after the promotion: shipping is due.
        (&[("329299", 8)], (60_00, -20_00, 6_99, 0, 66_99)),
        (
            &[("444435", 3), ("329299", 4), ("444437", 2)],
            (74_50, -10_00, 6_99, 0, 81_49),
        ),
        (&[("329199", 5), ("165954", 5)], (75_00, 0, 0, -8_99, 75_00)),
        (&[("165614", 6)], (86_70, 0, 0, -8_99, 86_70)),
        (&[("165614", 10)], (14450, 0, 0, -10_99, 14450)),
    ];
    for (i, (items, expected)) in cases.into_iter().enumerate() {
        let cart_id = format!("tiers-{i}");
        for &(item_id, quantity) in items {
            add(&host, &cart_id, item_id, quantity).await;
        }
        let priced = cart(&host, &cart_id).await;
        assert_eq!(totals(&priced), expected, "cart {items:?}: {priced}");
    }

    // An empty cart costs nothing, not even shipping.
    assert_eq!(totals(&cart(&host, "nobody").await), (0, 0, 0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cart_merges_lines_removes_items_and_moves_carts() {
    let host = TestHost::start(&coolstore()).await;
    add(&host, "main", "329299", 1).await;
    add(&host, "main", "165613", 2).await;
    let merged = add(&host, "main", "329299", 2).await;
    assert_eq!(
        lines(&merged),
        [("329299".into(), 3), ("165613".into(), 2)],
        "lines of the same item merge"
    );
    assert_eq!(totals(&merged), (30_80, -7_50, 4_99, 0, 35_79));

    let (status, removed) = delete(&host, "/api/cart/main/329299/1").await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(
        lines(&removed),
        [("329299".into(), 2), ("165613".into(), 2)]
    );
    let (_, removed) = delete(&host, "/api/cart/main/165613/5").await;
    assert_eq!(
        lines(&removed),
        [("329299".into(), 2)],
        "removing more than there is"
    );
    assert_eq!(lines(&cart(&host, "main").await), [("329299".into(), 2)]);

    // A shopper's anonymous cart moves into their own on login.
    add(&host, "anonymous", "329299", 1).await;
    add(&host, "anonymous", "444437", 4).await;
    let (status, moved) = post(&host, "/api/cart/main/anonymous", "").await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["cartId"], "main");
    assert_eq!(lines(&moved), [("329299".into(), 3), ("444437".into(), 4)]);
    assert_eq!(totals(&moved), (33_50, -7_50, 4_99, 0, 38_49));
    assert_eq!(lines(&cart(&host, "main").await), lines(&moved));
    assert!(
        lines(&cart(&host, "anonymous").await).is_empty(),
        "moved, not copied"
    );

    for path in ["/api/cart/main/329299/0", "/api/cart/main/329299/two"] {
        assert_error(&post(&host, path, "").await, 400, "");
    }
    assert_eq!(
        lines(&cart(&host, "main").await),
        lines(&moved),
        "bad requests change nothing"
    );
}

/// The workshop's cart test adds a product that does not exist and expects 200 with the cart
/// unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_an_unknown_product_answers_the_cart_unchanged_like_the_workshop() {
    let host = TestHost::start(&coolstore()).await;
    let (status, unknown) = post(&host, "/api/cart/1111/2222/4", "").await;
    assert_eq!(status, 200, "{unknown}");
    assert_eq!(unknown, cart(&host, "1111").await);
    assert!(lines(&unknown).is_empty(), "{unknown}");
    assert_eq!(totals(&unknown), (0, 0, 0, 0, 0));

    let filled = add(&host, "1111", "329299", 1).await;
    let (status, again) = post(&host, "/api/cart/1111/2222/4", "").await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, filled);
    assert_eq!(cart(&host, "1111").await, filled);
}
