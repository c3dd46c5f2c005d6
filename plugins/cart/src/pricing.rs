//! Cart pricing, as in the workshop's cart service, in integer cents.
//!
//! - A line's `price` is the unit price after promotions and its `promoSavings` the saving per
//!   unit, as a negative amount: the Quarkus T-shirt (329299) is 25% off, so 10.00 becomes
//!   `price` 7.50 with `promoSavings` -2.50.
//! - `cartItemTotal` = Σ price × quantity; `cartItemPromoSavings` = Σ promoSavings × quantity.
//! - Shipping by item total: < 25 → 2.99, < 50 → 4.99, < 75 → 6.99, < 100 → 8.99, else 10.99.
//!   From 75 on shipping is free: `shippingPromoSavings` = -fee and `shippingTotal` = 0.
//! - `cartTotal` = cartItemTotal + shippingTotal. An empty cart costs nothing, not even shipping.

use serde::{Deserialize, Serialize};
use shop_data::{Product, money};

/// Percent off per item id.
const PROMOTIONS: [(&str, i64); 1] = [("329299", 25)];

/// Item total (cents) from which shipping is free.
const FREE_SHIPPING_FROM: i64 = 75_00;

/// A cart line as stored in state: prices are never stored, so they always follow the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    pub item_id: String,
    pub quantity: u32,
}

/// A cart with every amount computed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Priced {
    pub lines: Vec<PricedLine>,
    pub item_total: i64,
    pub item_promo_savings: i64,
    pub shipping_total: i64,
    pub shipping_promo_savings: i64,
    pub cart_total: i64,
}

#[derive(Debug, PartialEq, Eq)]
pub struct PricedLine {
    pub product: &'static Product,
    pub quantity: u32,
    /// Unit price after promotions.
    pub price: i64,
    /// Saving per unit, zero or negative.
    pub promo_savings: i64,
}

/// Prices `lines`. Lines whose product the shop no longer sells are left out.
pub fn price(lines: &[Line]) -> Priced {
    let mut cart = Priced::default();
    for line in lines {
        let Some(product) = shop_data::find(&line.item_id) else {
            continue;
        };
        let percent_off = PROMOTIONS
            .iter()
            .find_map(|&(id, pct)| (id == product.item_id).then_some(pct))
            .unwrap_or(0);
        // Rounded half up to the cent.
        let saving = (product.price * percent_off + 50) / 100;
        let quantity = i64::from(line.quantity);
        cart.item_total += (product.price - saving) * quantity;
        cart.item_promo_savings -= saving * quantity;
        cart.lines.push(PricedLine {
            product,
            quantity: line.quantity,
            price: product.price - saving,
            promo_savings: -saving,
        });
    }
    if !cart.lines.is_empty() {
        let fee = shipping_fee(cart.item_total);
        if cart.item_total >= FREE_SHIPPING_FROM {
            cart.shipping_promo_savings = -fee;
        } else {
            cart.shipping_total = fee;
        }
    }
    cart.cart_total = cart.item_total + cart.shipping_total;
    cart
}

fn shipping_fee(item_total: i64) -> i64 {
    const TIERS: [(i64, i64); 4] = [(25_00, 2_99), (50_00, 4_99), (75_00, 6_99), (100_00, 8_99)];
    TIERS
        .iter()
        .find_map(|&(below, fee)| (item_total < below).then_some(fee))
        .unwrap_or(10_99)
}

/// The workshop's `ShoppingCart` JSON.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CartJson<'a> {
    cart_id: &'a str,
    shopping_cart_item_list: Vec<ItemJson>,
    cart_item_total: f64,
    cart_item_promo_savings: f64,
    shipping_total: f64,
    shipping_promo_savings: f64,
    cart_total: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ItemJson {
    product: ProductJson,
    quantity: u32,
    price: f64,
    promo_savings: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProductJson {
    item_id: &'static str,
    name: &'static str,
    desc: &'static str,
    price: f64,
}

impl Priced {
    pub fn to_json<'a>(&self, cart_id: &'a str) -> CartJson<'a> {
        let items = self.lines.iter().map(|l| ItemJson {
            product: ProductJson {
                item_id: l.product.item_id,
                name: l.product.name,
                desc: l.product.desc,
                price: money::to_number(l.product.price),
            },
            quantity: l.quantity,
            price: money::to_number(l.price),
            promo_savings: money::to_number(l.promo_savings),
        });
        CartJson {
            cart_id,
            shopping_cart_item_list: items.collect(),
            cart_item_total: money::to_number(self.item_total),
            cart_item_promo_savings: money::to_number(self.item_promo_savings),
            shipping_total: money::to_number(self.shipping_total),
            shipping_promo_savings: money::to_number(self.shipping_promo_savings),
            cart_total: money::to_number(self.cart_total),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn line(item_id: &str, quantity: u32) -> Line {
        Line {
            item_id: item_id.into(),
            quantity,
        }
    }

    /// (item total, promo savings, shipping, shipping promo savings, cart total)
    fn totals(c: &Priced) -> (i64, i64, i64, i64, i64) {
        (
            c.item_total,
            c.item_promo_savings,
            c.shipping_total,
            c.shipping_promo_savings,
            c.cart_total,
        )
    }

    #[test]
    fn one_promoted_t_shirt() {
        let cart = price(&[line("329299", 1)]);
        assert_eq!(totals(&cart), (7_50, -2_50, 2_99, 0, 10_49));
        assert_eq!(
            (cart.lines[0].price, cart.lines[0].promo_savings),
            (7_50, -2_50)
        );
    }

    #[test]
    fn promotion_applies_per_unit() {
        let cart = price(&[line("329299", 4)]);
        assert_eq!(totals(&cart), (30_00, -10_00, 4_99, 0, 34_99));
    }

    #[test]
    fn unpromoted_items_keep_their_price() {
        let cart = price(&[line("165613", 2), line("444437", 1)]);
        assert_eq!(totals(&cart), (11_05, 0, 2_99, 0, 14_04));
        assert_eq!(cart.lines[1].promo_savings, 0);
    }

    #[test]
    fn shipping_tiers_follow_the_item_total() {
        // 444437 costs 2.75: n of them make an item total of n × 2.75.
        for (n, fee) in [(9, 2_99), (10, 4_99), (19, 6_99), (27, 6_99)] {
            let cart = price(&[line("444437", n)]);
            assert_eq!(cart.shipping_total, fee, "{n} webcam covers");
            assert_eq!(cart.cart_total, cart.item_total + fee);
        }
    }

    #[test]
    fn shipping_is_free_from_75() {
        // 6 water bottles: 86.70, which would ship for 8.99.
        let cart = price(&[line("165614", 6)]);
        assert_eq!(totals(&cart), (86_70, 0, 0, -8_99, 86_70));
        // 10 bottles: 144.50, which would ship for 10.99.
        let cart = price(&[line("165614", 10)]);
        assert_eq!(totals(&cart), (144_50, 0, 0, -10_99, 144_50));
        // The threshold itself: 5 × 9.00 + 5 × 6.00 = 75.00 ships free; 74.50 does not.
        let cart = price(&[line("329199", 5), line("165954", 5)]);
        assert_eq!(totals(&cart), (75_00, 0, 0, -8_99, 75_00));
        let cart = price(&[line("444435", 3), line("329299", 4), line("444437", 2)]);
        assert_eq!(totals(&cart), (74_50, -10_00, 6_99, 0, 81_49));
    }

    #[test]
    fn promotion_counts_before_the_free_shipping_threshold() {
        // 8 T-shirts: 80.00 at list price but 60.00 after the promotion, so shipping is due.
        let cart = price(&[line("329299", 8)]);
        assert_eq!(totals(&cart), (60_00, -20_00, 6_99, 0, 66_99));
    }

    #[test]
    fn empty_and_unknown_lines_cost_nothing() {
        assert_eq!(price(&[]), Priced::default());
        assert_eq!(price(&[line("nope", 3)]), Priced::default());
    }

    #[test]
    fn serializes_the_workshop_shape() {
        let cart = price(&[line("329299", 1)]);
        let value = serde_json::to_value(cart.to_json("42")).unwrap_or_default();
        assert_eq!(
            value,
            json!({
                "cartId": "42",
                "shoppingCartItemList": [{
                    "product": {
                        "itemId": "329299",
                        "name": "Quarkus T-shirt",
                        "desc": shop_data::find("329299").map(|p| p.desc),
                        "price": 10.0
                    },
                    "quantity": 1,
                    "price": 7.5,
                    "promoSavings": -2.5
                }],
                "cartItemTotal": 7.5,
                "cartItemPromoSavings": -2.5,
                "shippingTotal": 2.99,
                "shippingPromoSavings": 0.0,
                "cartTotal": 10.49
            })
        );
    }
}
