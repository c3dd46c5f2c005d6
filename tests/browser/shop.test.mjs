// End-to-end browser test of the Coolstore web shop: the workshop's section 5
// "shopping" flow (add to cart, check out, watch the payment status), driven by
// Playwright on Debian's Chromium.
//
//   SHOP_URL=http://127.0.0.1:8080 node --test shop.test.mjs
//
// The shop must already be running at SHOP_URL (run.sh does not start it).
// Full-page screenshots go to ./artifacts/<scenario>-<page>.png.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const BASE = new URL((process.env.SHOP_URL || 'http://127.0.0.1:8080').replace(/\/*$/, '/'));
const ARTIFACTS = join(dirname(fileURLToPath(import.meta.url)), 'artifacts');
const STATUS_DEADLINE_MS = 60_000;
const TSHIRT = 'Quarkus T-shirt';
const FINAL_STATUSES = ['COMPLETED', 'FAILED'];

const SCENARIOS = [
  { name: 'valid-card', card: '4123987754646678', expected: 'COMPLETED' },
  { name: 'invalid-card', card: '5555555555554444', expected: 'FAILED' },
];

// Same formatting as the shop (app.js): "$1,234.50"; savings "−$2.50", none "$0.00".
const moneyFormat = new Intl.NumberFormat('en-US', {
  style: 'currency', currency: 'USD', minimumFractionDigits: 2, maximumFractionDigits: 2,
});
const num = (v) => (typeof v === 'number' ? v : parseFloat(v)) || 0;
const money = (v) => moneyFormat.format(num(v));
const savings = (v) => (Math.abs(num(v)) < 0.005 ? money(0) : '\u2212' + money(Math.abs(num(v))));
const lineSavings = (v) => (Math.abs(num(v)) < 0.005 ? '\u2014' : savings(v));

const url = (path) => new URL(path, BASE).href;

/** A card expiry date safely in the future, as MM/YY. */
function futureExpiry() {
  return `12/${String((new Date().getFullYear() + 3) % 100).padStart(2, '0')}`;
}

let browser;

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
});

after(async () => {
  await browser?.close();
});

/** A fresh browser context (so a fresh cartId) with one page, failing on page errors. */
async function openShop(t) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  context.setDefaultTimeout(15_000);
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (err) => pageErrors.push(err));
  page.on('console', (msg) => {
    if (msg.type() === 'error') t.diagnostic(`browser console: ${msg.text()}`);
  });
  t.after(async () => {
    await context.close();
  });
  await page.goto(url('#/products'));
  await page.getByTestId('product-card').first().waitFor();
  return {
    page,
    assertNoPageErrors() {
      assert.deepEqual(pageErrors.map(String), [], 'uncaught errors in the page');
    },
  };
}

async function screenshot(page, scenario, name) {
  await page.mouse.move(0, 0);
  await page.evaluate(() => window.scrollTo(0, 0));
  // Let a toast finish sliding in so the picture is stable.
  await page.evaluate(() => Promise.all(document.getAnimations().filter((a) => a.effect?.getComputedTiming().iterations !== Infinity).map((a) => a.finished.catch(() => {}))));
  await page.screenshot({ path: join(ARTIFACTS, `${scenario}-${name}.png`), fullPage: true });
}

async function getJson(page, path) {
  const res = await page.request.get(url(path));
  assert.ok(res.ok(), `GET ${path} answered ${res.status()}: ${await res.text()}`);
  return res.json();
}

const cartIdOf = (page) => page.evaluate(() => localStorage.getItem('coolstore.cartId'));

async function cartCount(page) {
  return Number(await page.getByTestId('cart-count').textContent());
}

/** Wait (polling the page, no fixed sleeps) until the cart badge shows n. */
async function waitForCartCount(page, n) {
  await page.waitForFunction((want) => document.querySelector('[data-testid="cart-count"]')?.textContent.trim() === String(want),
    n, { timeout: 10_000, polling: 100 });
}

/** Click "Add to Cart" on a product card and check the success message and badge. */
async function addToCart(page, product) {
  const before = await cartCount(page);
  const card = page.getByTestId('product-card').filter({ has: page.getByTestId('product-name').getByText(product.name, { exact: true }) });
  await card.getByTestId('add-to-cart').click();
  const message = page.getByRole('status').getByText(`Added ${product.name} to your cart`);
  await message.first().waitFor({ state: 'visible' });
  await waitForCartCount(page, before + 1);
}

/** Check that every cart line and total shown on the cart page matches the API's cart. */
async function assertCartMatchesApi(page, cart) {
  const rows = page.getByTestId('cart-line');
  assert.equal(await rows.count(), cart.shoppingCartItemList.length, 'number of cart lines');
  for (const item of cart.shoppingCartItemList) {
    const row = page.locator(`[data-testid="cart-line"][data-item-id="${item.product.itemId}"]`);
    const text = async (id) => (await row.getByTestId(id).textContent()).trim();
    const label = `line ${item.product.itemId}`;
    assert.equal(await text('line-name'), item.product.name, `${label} name`);
    assert.equal(await text('line-qty'), String(item.quantity), `${label} quantity`);
    assert.equal(await text('line-unit-price'), money(item.price), `${label} unit price`);
    assert.equal(await text('line-savings'), lineSavings(num(item.promoSavings) * item.quantity), `${label} promo savings`);
    assert.equal(await text('line-total'), money(num(item.price) * item.quantity), `${label} subtotal`);
  }
  const total = async (id) => (await page.getByTestId(id).textContent()).trim();
  assert.equal(await total('cart-item-total'), money(cart.cartItemTotal), 'item total');
  assert.equal(await total('cart-item-promo-savings'), savings(cart.cartItemPromoSavings), 'promo savings');
  assert.equal(await total('cart-shipping-total'), money(cart.shippingTotal), 'shipping');
  assert.equal(await total('cart-shipping-promo-savings'), savings(cart.shippingPromoSavings), 'shipping savings');
  assert.equal(await total('cart-total'), money(cart.cartTotal), 'cart total');
}

const FIELD_IDS = ['cc-number', 'cc-exp', 'cc-name', 'billing-address', 'name'];

/** Record every checkout POST the page sends. */
function watchCheckoutPosts(page) {
  const posts = [];
  page.on('request', (req) => {
    if (req.method() === 'POST' && new URL(req.url()).pathname.includes('/api/cart/checkout/')) posts.push(req);
  });
  return posts;
}

async function fieldError(page, id) {
  const el = page.getByTestId(`${id}-error`);
  return (await el.isVisible()) ? (await el.textContent()).trim() : '';
}

async function fillCheckout(page, { card, exp, nameOnCard, address, name }) {
  await page.getByTestId('cc-number').fill(card);
  await page.getByTestId('cc-exp').fill(exp);
  await page.getByTestId('cc-name').fill(nameOnCard);
  await page.getByTestId('billing-address').fill(address);
  await page.getByTestId('name').fill(name);
}

async function openCheckout(page) {
  await page.getByTestId('checkout-button').click();
  await page.getByTestId('checkout-form').waitFor();
  assert.match(page.url(), /#\/checkout$/);
}

for (const scenario of SCENARIOS) {
  describe(`shopping, ${scenario.name.replace('-', ' ')} ${scenario.card}`, () => {
    test(`order ends ${scenario.expected}`, { timeout: 180_000 }, async (t) => {
      const { page, assertNoPageErrors } = await openShop(t);
      const checkoutPosts = watchCheckoutPosts(page);

      // --- products: the list shows what the API returns
      const products = await getJson(page, 'api/products');
      assert.ok(Array.isArray(products) && products.length >= 2, 'the API lists at least two products');
      assert.equal(await page.getByTestId('product-card').count(), products.length, 'one card per product');
      for (const p of products) {
        const card = page.locator(`[data-testid="product-card"][data-item-id="${p.itemId}"]`);
        assert.equal((await card.getByTestId('product-name').textContent()).trim(), p.name);
        assert.equal((await card.getByTestId('product-price').textContent()).trim(), money(p.price), `price of ${p.name}`);
      }
      // Stock and where it is: the workshop's inventory records.
      for (const record of await getJson(page, 'api/inventory')) {
        const card = page.locator(`[data-testid="product-card"][data-item-id="${record.itemId}"]`);
        assert.equal((await card.getByTestId('product-stock').textContent()).trim(), `${record.quantity} in stock`);
        assert.equal((await card.getByTestId('product-location').textContent()).trim(), `At ${record.location}`);
      }
      const tshirt = products.find((p) => p.name === TSHIRT);
      assert.ok(tshirt, `the catalogue has a "${TSHIRT}"`);
      assert.ok(tshirt.quantity > 0, `"${TSHIRT}" is in stock`);
      const other = products.find((p) => p.itemId !== tshirt.itemId && p.quantity > 0);
      assert.ok(other, 'a second product is in stock');

      // --- add two products, each with a success message
      assert.equal(await cartCount(page), 0, 'a new browser starts with an empty cart');
      await addToCart(page, tshirt);
      await addToCart(page, other);
      await screenshot(page, scenario.name, 'products');

      // --- cart: lines and totals match the API's cart
      await page.getByTestId('nav-cart').click();
      await page.getByTestId('cart-line').nth(1).waitFor();
      const cartId = await cartIdOf(page);
      assert.ok(cartId, 'the cartId is kept in localStorage');
      let cart = await getJson(page, `api/cart/${encodeURIComponent(cartId)}`);
      await assertCartMatchesApi(page, cart);
      const tshirtLine = cart.shoppingCartItemList.find((i) => i.product.itemId === tshirt.itemId);
      assert.ok(Math.abs(Math.abs(num(tshirtLine.promoSavings)) - num(tshirt.price) * 0.25) < 0.01,
        `the ${TSHIRT} gets 25% off (promoSavings ${tshirtLine.promoSavings}, price ${tshirt.price})`);
      assert.notEqual(await page.locator(`[data-item-id="${tshirt.itemId}"] [data-testid="line-savings"]`).textContent(), '\u2014',
        'the promotion shows on the cart line');
      await screenshot(page, scenario.name, 'cart');

      // --- remove one item (the non-promoted one)
      await page.locator(`[data-testid="cart-line"][data-item-id="${other.itemId}"]`).getByTestId('remove-item').click();
      await page.locator(`[data-testid="cart-line"][data-item-id="${other.itemId}"]`).waitFor({ state: 'detached' });
      await page.getByRole('status').getByText(`Removed ${other.name} from your cart`).first().waitFor();
      cart = await getJson(page, `api/cart/${encodeURIComponent(cartId)}`);
      assert.equal(cart.shoppingCartItemList.length, 1, 'one line is left in the API cart');
      await assertCartMatchesApi(page, cart);
      await waitForCartCount(page, 1);

      // --- checkout: the empty form is refused client-side
      await openCheckout(page);
      await page.getByTestId('place-order').click();
      for (const id of FIELD_IDS) {
        await page.getByTestId(`${id}-error`).waitFor({ state: 'visible' });
      }
      assert.equal(checkoutPosts.length, 0, 'an invalid form posts nothing');
      await screenshot(page, scenario.name, 'checkout-errors');

      // --- checkout with the card
      await fillCheckout(page, {
        card: scenario.card, exp: futureExpiry(), nameOnCard: 'Jane Shopper',
        address: '100 E Davie St, Raleigh, NC 27601', name: 'Jane Shopper',
      });
      for (const id of FIELD_IDS) assert.equal(await fieldError(page, id), '', `no error left on ${id}`);
      await screenshot(page, scenario.name, 'checkout-filled');

      const [response] = await Promise.all([
        page.waitForResponse((res) => res.request().method() === 'POST' && new URL(res.url()).pathname.includes('/api/cart/checkout/')),
        page.getByTestId('place-order').click(),
      ]);
      assert.equal(checkoutPosts.length, 1, 'one checkout POST');
      assert.ok(response.ok(), `checkout answered ${response.status()}: ${await response.text()}`);
      const sent = JSON.parse(response.request().postData());
      assert.equal(new URL(response.url()).pathname, `${BASE.pathname}api/cart/checkout/${encodeURIComponent(cartId)}`);
      assert.ok(sent.orderId, 'the order has an orderId');
      assert.equal(sent.creditCard.number, scenario.card);
      assert.equal(num(sent.total), num(cart.cartTotal), 'the order total is the cart total');
      const emptied = await response.json();
      assert.equal(emptied.shoppingCartItemList.length, 0, 'checkout returns the emptied cart');

      // --- orders: the new order shows, then reaches its final status without a reload
      await page.waitForURL(/#\/orders$/);
      const row = page.locator(`[data-testid="order-row"][data-order-id="${sent.orderId}"]`);
      await row.waitFor();
      const firstStatus = await row.getByTestId('order-status').getAttribute('data-status');
      t.diagnostic(`order ${sent.orderId}: first shown as ${firstStatus}`);
      assert.ok(['PROCESSING', scenario.expected].includes(firstStatus), `first status ${firstStatus}`);
      await waitForCartCount(page, 0);

      const started = Date.now();
      // The orders page refreshes itself: poll the DOM (no reload) until a final status shows.
      const finalStatus = await page.waitForFunction(([id, finals]) => {
        const row = [...document.querySelectorAll('[data-testid="order-row"]')].find((r) => r.dataset.orderId === id);
        const status = row?.querySelector('[data-testid="order-status"]')?.dataset.status;
        return finals.includes(status) ? status : null;
      }, [sent.orderId, FINAL_STATUSES], { timeout: STATUS_DEADLINE_MS, polling: 250 })
        .then((handle) => handle.jsonValue())
        .catch((err) => { throw new Error(`order ${sent.orderId} did not reach COMPLETED or FAILED within ${STATUS_DEADLINE_MS / 1000} s: ${err.message}`); });
      t.diagnostic(`order ${sent.orderId}: ${finalStatus} after ${Date.now() - started} ms on the orders page`);
      assert.equal(finalStatus, scenario.expected);
      assert.equal((await row.getByTestId('order-status').textContent()).trim(), scenario.expected);

      const orders = await getJson(page, 'api/orders');
      const order = orders.find((o) => o.orderId === sent.orderId);
      assert.ok(order, 'the order is listed by the API');
      assert.equal(order.status, scenario.expected);
      assert.equal((await row.getByTestId('order-name').textContent()).trim(), order.name);
      assert.equal((await row.getByTestId('order-total').textContent()).trim(), money(order.total));
      assert.equal(money(order.total), money(cart.cartTotal), 'order total is the checked-out cart total');
      const cardShown = (await row.getByTestId('order-card').textContent()).trim();
      assert.equal(cardShown, order.ccNumber);
      assert.ok(!cardShown.includes(scenario.card), 'the orders page does not show the full card number');
      await screenshot(page, scenario.name, 'orders');

      assertNoPageErrors();
    });
  });
}

describe('checkout form validation', () => {
  test('invalid input is refused client-side and server errors are shown', { timeout: 120_000 }, async (t) => {
    const { page, assertNoPageErrors } = await openShop(t);
    const checkoutPosts = watchCheckoutPosts(page);
    const products = await getJson(page, 'api/products');
    await addToCart(page, products.find((p) => p.quantity > 0));
    await page.getByTestId('nav-cart').click();
    await page.getByTestId('cart-line').first().waitFor();
    await openCheckout(page);

    // Empty form: every field gets an error next to it, focus goes to the first one.
    await page.getByTestId('place-order').click();
    for (const id of FIELD_IDS) {
      await page.getByTestId(`${id}-error`).waitFor({ state: 'visible' });
      assert.equal(await page.getByTestId(id).getAttribute('aria-invalid'), 'true', `${id} is marked invalid`);
    }
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'cc-number', 'focus on the first invalid field');
    await screenshot(page, 'validation', 'checkout-empty');

    // Badly formatted values.
    const cases = [
      { card: '4123 9877 5464', exp: '13/30', number: /13 to 19 digits/, expiry: /MM\/YY/ },
      { card: '41239877546466781234', exp: '1230', number: /13 to 19 digits/, expiry: null },
      { card: '4123-9877-abcd-6678', exp: '01/20', number: /digits only/, expiry: /expired/ },
      { card: '4123987754646678', exp: '12-30', number: null, expiry: /MM\/YY/ },
    ];
    for (const c of cases) {
      await fillCheckout(page, { card: c.card, exp: c.exp, nameOnCard: 'Jane Shopper', address: '1 Main St', name: 'Jane Shopper' });
      await page.getByTestId('place-order').click();
      const numberError = await fieldError(page, 'cc-number');
      const expiryError = await fieldError(page, 'cc-exp');
      if (c.number) assert.match(numberError, c.number, `card "${c.card}"`); else assert.equal(numberError, '', `card "${c.card}"`);
      if (c.expiry) assert.match(expiryError, c.expiry, `expiry "${c.exp}"`); else assert.equal(expiryError, '', `expiry "${c.exp}"`);
      for (const id of ['cc-name', 'billing-address', 'name']) assert.equal(await fieldError(page, id), '', `no error on ${id}`);
    }
    await screenshot(page, 'validation', 'checkout-errors');
    assert.equal(checkoutPosts.length, 0, 'an invalid form posts nothing');

    // A server error ({"message", "status"}) is shown to the user and the form stays usable.
    // The checkout call is answered in the browser, so nothing reaches the shop.
    const serverMessage = 'Payment gateway unavailable, please try again later';
    await page.route('**/api/cart/checkout/**', (route) => route.fulfill({
      status: 503, contentType: 'application/json', body: JSON.stringify({ message: serverMessage, status: 503 }),
    }));
    await fillCheckout(page, { card: '4123987754646678', exp: futureExpiry(), nameOnCard: 'Jane Shopper', address: '1 Main St', name: 'Jane Shopper' });
    await page.getByTestId('place-order').click();
    await page.getByTestId('checkout-error-message').getByText(serverMessage).waitFor();
    assert.match(page.url(), /#\/checkout$/, 'stays on the checkout page');
    assert.ok(await page.getByTestId('place-order').isEnabled(), 'the form can be submitted again');
    await screenshot(page, 'validation', 'checkout-server-error');
    await page.unroute('**/api/cart/checkout/**');
    assert.equal(checkoutPosts.length, 1, 'only the intercepted checkout was attempted');

    assertNoPageErrors();
  });
});
