//! Data and helpers shared by the coolstore plugins: the product list (compiled in, so the
//! catalog and the cart agree without calling each other), money in integer cents, and card
//! masking.

mod card;
pub mod money;

pub use card::mask_card;

/// A product of the coolstore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Product {
    pub item_id: &'static str,
    pub name: &'static str,
    pub desc: &'static str,
    /// Unit price in cents.
    pub price: i64,
    /// Units in stock.
    pub quantity: u32,
    /// The store that holds the stock.
    pub location: &'static str,
}

const fn product(
    item_id: &'static str,
    name: &'static str,
    desc: &'static str,
    price: i64,
    (quantity, location): (u32, &'static str),
) -> Product {
    Product {
        item_id,
        name,
        desc,
        price,
        quantity,
        location,
    }
}

/// Every product, in catalog order.
#[rustfmt::skip]
pub const PRODUCTS: [Product; 8] = [
    product("329299", "Quarkus T-shirt", "Unisex crew-neck tee in combed cotton with the Quarkus logo.", 10_00, (35, "Raleigh")),
    product("329199", "Pronounced Kubernetes", "Sticker pack settling how to say Kubernetes, once and for all.", 9_00, (98, "Boston")),
    product("165613", "Knit socks", "Warm knit socks with a subtle logo pattern.", 4_15, (45, "Seoul")),
    product("165614", "Quarkus H2Go water bottle", "Leak-proof 650 ml bottle that keeps drinks cold for hours.", 14_45, (87, "Singapore")),
    product("165954", "Patagonia Refugio pack 28L", "Everyday 28-litre backpack with a padded laptop sleeve.", 6_00, (45, "London")),
    product("444434", "Red Hat Impact T-shirt", "Soft, lightweight tee with the Red Hat Impact print.", 9_00, (232, "New York")),
    product("444435", "Quarkus twill cap", "Six-panel cotton twill cap with an embroidered logo.", 13_00, (32, "Paris")),
    product("444437", "Nanobloc Universal Webcam Cover", "Slim sliding cover that fits laptops, tablets and phones.", 2_75, (450, "Tokyo")),
];

/// The product with `item_id`, if the shop sells it.
pub fn find(item_id: &str) -> Option<&'static Product> {
    PRODUCTS.iter().find(|p| p.item_id == item_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_products_by_id() {
        assert_eq!(find("165613").map(|p| p.price), Some(4_15));
        assert_eq!(
            find("444437").map(|p| p.name),
            Some("Nanobloc Universal Webcam Cover")
        );
        assert!(find("123").is_none());
    }

    #[test]
    fn item_ids_are_unique() {
        let mut ids: Vec<_> = PRODUCTS.iter().map(|p| p.item_id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), PRODUCTS.len());
    }
}
