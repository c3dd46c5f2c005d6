//! Routes, matched on the path segments after `cart` so they do not depend on the parameter
//! names of the deployment's route table.
//!
//! Client errors are answered before anything is staged. Once a write or a send is staged, a
//! later problem must be an `Err(Failure)`, which makes the host discard the staged effects: an
//! `Ok` with an error status would commit them (e.g. empty the cart of an unpublished order).

use sdk::{Failure, Host, Level, Message, Request, Response};
use shop_data::money;

use crate::order;
use crate::pricing::{self, Line};

pub fn handle(host: &mut impl Host, req: &Request) -> Result<Response, Failure> {
    let segments = req.segments();
    let after_cart = match segments.iter().position(|s| s == "cart") {
        Some(i) => &segments[i + 1..],
        None => &[][..],
    };
    let after_cart: Vec<&str> = after_cart.iter().map(String::as_str).collect();
    match (req.method.as_str(), after_cart.as_slice()) {
        ("GET", [cart_id]) => Ok(priced(cart_id, &load(host, cart_id)?)),
        ("POST", ["checkout", cart_id]) => checkout(host, cart_id, &req.body),
        ("POST", [cart_id, item_id, quantity]) => add(host, cart_id, item_id, quantity),
        ("DELETE", [cart_id, item_id, quantity]) => remove(host, cart_id, item_id, quantity),
        ("POST", [cart_id, tmp_id]) => merge(host, cart_id, tmp_id),
        _ => Ok(Response::message(
            404,
            &format!("no cart route for {} {}", req.method, req.path),
        )),
    }
}

fn add(
    host: &mut impl Host,
    cart_id: &str,
    item_id: &str,
    quantity: &str,
) -> Result<Response, Failure> {
    let Some(quantity) = parse_quantity(quantity) else {
        return Ok(bad_quantity(quantity));
    };
    let mut lines = load(host, cart_id)?;
    if shop_data::find(item_id).is_none() {
        // The workshop's cart answers an unknown product with the cart as it is.
        host.log(
            Level::Warn,
            &format!("cart {cart_id} unchanged: product {item_id} not found"),
        );
        return Ok(priced(cart_id, &lines));
    }
    if let Err(msg) = add_line(&mut lines, item_id, quantity) {
        return Ok(Response::message(400, &msg));
    }
    save(host, cart_id, &lines)?;
    Ok(priced(cart_id, &lines))
}

fn remove(
    host: &mut impl Host,
    cart_id: &str,
    item_id: &str,
    quantity: &str,
) -> Result<Response, Failure> {
    let Some(quantity) = parse_quantity(quantity) else {
        return Ok(bad_quantity(quantity));
    };
    let mut lines = load(host, cart_id)?;
    if let Some(i) = lines.iter().position(|l| l.item_id == item_id) {
        match lines[i].quantity.checked_sub(quantity) {
            Some(left) if left > 0 => lines[i].quantity = left,
            _ => {
                lines.remove(i);
            }
        }
        save(host, cart_id, &lines)?;
    }
    Ok(priced(cart_id, &lines))
}

/// Moves the items of `tmp_id` (e.g. the cart of a shopper before logging in) into `cart_id`.
fn merge(host: &mut impl Host, cart_id: &str, tmp_id: &str) -> Result<Response, Failure> {
    let mut lines = load(host, cart_id)?;
    if cart_id != tmp_id {
        for line in load(host, tmp_id)? {
            if let Err(msg) = add_line(&mut lines, &line.item_id, line.quantity) {
                return Ok(Response::message(400, &msg));
            }
        }
        save(host, cart_id, &lines)?;
        save(host, tmp_id, &[])?;
    }
    Ok(priced(cart_id, &lines))
}

/// Publishes the order with the cart's total, keyed by order id, and empties the cart.
fn checkout(host: &mut impl Host, cart_id: &str, body: &[u8]) -> Result<Response, Failure> {
    let mut order = match order::parse(body) {
        Ok(order) => order,
        Err(msg) => return Ok(Response::message(400, &msg)),
    };
    let lines = load(host, cart_id)?;
    let cart = pricing::price(&lines);
    if cart.lines.is_empty() {
        return Ok(Response::message(400, &format!("cart {cart_id} is empty")));
    }
    order.total = money::to_text(cart.cart_total);
    let value = serde_json::to_vec(&order)
        .map_err(|e| Failure::retry(format!("cannot encode order: {e}")))?;
    let topic = host.config_or("orders_topic", "orders");
    host.send(Message {
        topic,
        key: Some(order.order_id.clone().into_bytes()),
        value,
        headers: Vec::new(),
    })
    .map_err(|e| Failure::retry(format!("cannot publish order {}: {e}", order.order_id)))?;
    save(host, cart_id, &[])?;
    Ok(priced(cart_id, &[]))
}

fn key(cart_id: &str) -> String {
    format!("cart:{cart_id}")
}

fn load(host: &impl Host, cart_id: &str) -> Result<Vec<Line>, Failure> {
    Ok(host.get_json(&key(cart_id))?.unwrap_or_default())
}

/// Stores the lines; an empty cart is not stored at all.
fn save(host: &mut impl Host, cart_id: &str, lines: &[Line]) -> Result<(), Failure> {
    if lines.is_empty() {
        host.delete(&key(cart_id));
        Ok(())
    } else {
        host.set_json(&key(cart_id), &lines)
    }
}

/// Adds to the line of the same item, or appends a new line.
fn add_line(lines: &mut Vec<Line>, item_id: &str, quantity: u32) -> Result<(), String> {
    match lines.iter_mut().find(|l| l.item_id == item_id) {
        Some(line) => {
            line.quantity = line
                .quantity
                .checked_add(quantity)
                .ok_or_else(|| format!("too many of product {item_id}"))?;
        }
        None => lines.push(Line {
            item_id: item_id.to_owned(),
            quantity,
        }),
    }
    Ok(())
}

fn parse_quantity(text: &str) -> Option<u32> {
    text.parse().ok().filter(|&q| q > 0)
}

fn bad_quantity(text: &str) -> Response {
    Response::message(
        400,
        &format!("quantity must be a positive integer, not {text:?}"),
    )
}

fn priced(cart_id: &str, lines: &[Line]) -> Response {
    Response::json(200, &pricing::price(lines).to_json(cart_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdk::fake::FakeHost;
    use serde_json::{Value, json};

    fn call(host: &mut FakeHost, method: &str, path: &str, body: &str) -> Response {
        let req = Request::new(method, path).with_body(body);
        handle(host, &req).unwrap_or_else(|f| panic!("{method} {path} failed: {f:?}"))
    }

    fn items(cart: &Value) -> Vec<(String, u64)> {
        let list = cart["shoppingCartItemList"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        list.iter()
            .map(|i| {
                (
                    i["product"]["itemId"].as_str().unwrap_or("?").to_owned(),
                    i["quantity"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    }

    fn order() -> String {
        json!({
            "orderId": "o-7",
            "creditCard": { "number": "4123987754646678", "expiration": "04/29", "nameOnCard": "Jane G Doe" },
            "billingAddress": "123 Anystreet",
            "name": "Jane Doe"
        })
        .to_string()
    }

    #[test]
    fn unknown_cart_is_empty() {
        let res = call(&mut FakeHost::new(), "GET", "/api/cart/nobody", "");
        assert_eq!(res.status, 200);
        assert_eq!(res.body_json()["cartId"], "nobody");
        assert_eq!(res.body_json()["cartTotal"], 0.0);
        assert!(items(&res.body_json()).is_empty());
    }

    #[test]
    fn adds_merges_and_removes_lines() {
        let mut host = FakeHost::new();
        call(&mut host, "POST", "/api/cart/c1/329299/1", "");
        call(&mut host, "POST", "/api/cart/c1/165613/2", "");
        let res = call(&mut host, "POST", "/api/cart/c1/329299/2", "");
        assert_eq!(
            items(&res.body_json()),
            [("329299".into(), 3), ("165613".into(), 2)]
        );
        assert_eq!(
            host.text("cart:c1").as_deref(),
            Some(r#"[{"itemId":"329299","quantity":3},{"itemId":"165613","quantity":2}]"#)
        );

        let res = call(&mut host, "DELETE", "/api/cart/c1/329299/1", "");
        assert_eq!(
            items(&res.body_json()),
            [("329299".into(), 2), ("165613".into(), 2)]
        );
        let res = call(&mut host, "DELETE", "/api/cart/c1/165613/5", "");
        assert_eq!(items(&res.body_json()), [("329299".into(), 2)]);
        call(&mut host, "DELETE", "/api/cart/c1/329299/2", "");
        assert!(host.state.is_empty(), "an emptied cart is not stored");
    }

    #[test]
    fn rejects_bad_items_and_quantities() {
        let mut host = FakeHost::new();
        for (path, message) in [
            (
                "/api/cart/c1/329299/0",
                "quantity must be a positive integer, not \"0\"",
            ),
            (
                "/api/cart/c1/329299/-1",
                "quantity must be a positive integer, not \"-1\"",
            ),
            (
                "/api/cart/c1/329299/two",
                "quantity must be a positive integer, not \"two\"",
            ),
        ] {
            let res = call(&mut host, "POST", path, "");
            assert_eq!(
                (res.status, res.body_json()),
                (400, json!({ "message": message, "status": 400 })),
                "{path}"
            );
        }
        assert_eq!(
            call(&mut host, "DELETE", "/api/cart/c1/329299/x", "").status,
            400
        );
        assert!(host.state.is_empty());
    }

    #[test]
    fn unknown_products_leave_the_cart_unchanged_and_say_why() {
        let mut host = FakeHost::new();
        let before = call(&mut host, "POST", "/api/cart/1111/329299/1", "");
        let res = call(&mut host, "POST", "/api/cart/1111/2222/4", "");
        assert_eq!(res.status, 200);
        assert_eq!(res.body_json(), before.body_json());
        assert_eq!(
            host.text("cart:1111").as_deref(),
            Some(r#"[{"itemId":"329299","quantity":1}]"#)
        );
        assert_eq!(
            host.logs.borrow().as_slice(),
            [(
                Level::Warn,
                "cart 1111 unchanged: product 2222 not found".to_owned()
            )]
        );

        let res = call(&mut host, "POST", "/api/cart/empty/2222/4", "");
        assert_eq!(res.status, 200);
        assert!(items(&res.body_json()).is_empty());
        assert!(host.get("cart:empty").is_none(), "nothing stored");
    }

    #[test]
    fn moves_a_temporary_cart_into_another() {
        let mut host = FakeHost::new();
        call(&mut host, "POST", "/api/cart/user/329299/1", "");
        call(&mut host, "POST", "/api/cart/tmp/329299/2", "");
        call(&mut host, "POST", "/api/cart/tmp/444437/1", "");
        let res = call(&mut host, "POST", "/api/cart/user/tmp", "");
        assert_eq!(
            items(&res.body_json()),
            [("329299".into(), 3), ("444437".into(), 1)]
        );
        assert!(host.get("cart:tmp").is_none());
        // Merging a cart into itself changes nothing.
        let res = call(&mut host, "POST", "/api/cart/user/user", "");
        assert_eq!(
            items(&res.body_json()),
            [("329299".into(), 3), ("444437".into(), 1)]
        );
    }

    #[test]
    fn checkout_publishes_the_order_and_empties_the_cart() {
        let mut host = FakeHost::new();
        call(&mut host, "POST", "/api/cart/c9/329299/1", "");
        let res = call(&mut host, "POST", "/api/cart/checkout/c9", &order());
        assert_eq!(res.status, 200);
        assert_eq!(res.body_json()["cartId"], "c9");
        assert!(items(&res.body_json()).is_empty());
        assert!(host.get("cart:c9").is_none());

        let [sent] = host.sent.as_slice() else {
            panic!("expected one message: {:?}", host.sent)
        };
        assert_eq!(
            (sent.topic.as_str(), sent.key.as_deref()),
            ("orders", Some(&b"o-7"[..]))
        );
        let published: Value = serde_json::from_slice(&sent.value).unwrap_or_default();
        assert_eq!(
            published,
            json!({
                "orderId": "o-7",
                "name": "Jane Doe",
                "total": "10.49",
                "creditCard": { "number": "4123987754646678", "expiration": "04/29", "nameOnCard": "Jane G Doe" },
                "billingAddress": "123 Anystreet"
            })
        );
    }

    #[test]
    fn checkout_refuses_bad_orders_and_empty_carts() {
        let mut host = FakeHost::new().with_config("orders_topic", "shop.orders");
        let res = call(&mut host, "POST", "/api/cart/checkout/c9", &order());
        assert_eq!(
            (res.status, res.body_json()),
            (400, json!({ "message": "cart c9 is empty", "status": 400 }))
        );

        call(&mut host, "POST", "/api/cart/c9/329299/1", "");
        let res = call(&mut host, "POST", "/api/cart/checkout/c9", "{oops");
        assert_eq!(res.status, 400);
        let res = call(
            &mut host,
            "POST",
            "/api/cart/checkout/c9",
            r#"{"orderId":"o-1"}"#,
        );
        assert_eq!(
            res.body_json(),
            json!({ "message": "missing or empty field: name", "status": 400 })
        );
        assert!(host.sent.is_empty());

        call(&mut host, "POST", "/api/cart/checkout/c9", &order());
        assert_eq!(
            host.sent
                .iter()
                .map(|m| m.topic.as_str())
                .collect::<Vec<_>>(),
            ["shop.orders"]
        );
    }

    #[test]
    fn checkout_fails_whole_when_the_order_cannot_be_published() {
        let mut host = FakeHost::new();
        host.denied_topics.insert("orders".into());
        call(&mut host, "POST", "/api/cart/c9/329299/1", "");
        let req = Request::new("POST", "/api/cart/checkout/c9").with_body(order());
        assert!(matches!(handle(&mut host, &req), Err(Failure::Retry(_))));
    }

    #[test]
    fn unknown_routes_are_404() {
        let mut host = FakeHost::new();
        assert_eq!(call(&mut host, "PUT", "/api/cart/c1", "").status, 404);
        assert_eq!(call(&mut host, "GET", "/api/cart/a/b/c/d", "").status, 404);
    }
}
