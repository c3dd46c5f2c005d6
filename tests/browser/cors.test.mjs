// Browser test of CORS: the coolstore's own web page, served from two other origins, calls the
// shop's API at SHOP_URL (the page takes the API's address as ?api=...). The host allows only
// http://127.0.0.1:PAGE_PORT (cors.sh sets that up), so:
//
// - from that origin the whole shopper flow works: simple requests (GET, a POST without a
//   body) and preflighted ones (DELETE, the checkout's JSON POST);
// - from another origin the browser blocks every answer, a preflighted request is never sent,
//   and the host serves what does reach it without an error.
//
//   SHOP_URL=http://127.0.0.1:8080 PAGE_PORT=4200 node --test cors.test.mjs

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { mkdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = dirname(fileURLToPath(import.meta.url));
const WEB = join(HERE, '../../examples/coolstore/web');
const ARTIFACTS = join(HERE, 'artifacts');
const SHOP = new URL((process.env.SHOP_URL || 'http://127.0.0.1:8080').replace(/\/*$/, '/'));
const PAGE_PORT = Number(process.env.PAGE_PORT);
const STATUS_DEADLINE_MS = 60_000;
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml' };

/** Serves the coolstore's web folder on 127.0.0.1:port (0: any free port); resolves its origin. */
function serveWeb(port) {
  const server = createServer(async (req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname)).replace(/^(\.\.[/\\])+/, '');
    const file = join(WEB, path === '/' ? 'index.html' : path);
    try {
      const body = await readFile(file);
      res.writeHead(200, { 'content-type': TYPES[extname(file)] || 'application/octet-stream' });
      res.end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve({ server, origin: `http://127.0.0.1:${server.address().port}` }));
  });
}

let browser;
let allowed;
let blocked;

before(async () => {
  assert.ok(PAGE_PORT > 0, 'PAGE_PORT is the port of the origin the host allows (cors.sh sets it)');
  mkdirSync(ARTIFACTS, { recursive: true });
  allowed = await serveWeb(PAGE_PORT);
  blocked = await serveWeb(0);
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
});

after(async () => {
  await browser?.close();
  allowed?.server.close();
  blocked?.server.close();
});

/** The shop's page from `origin`, pointed at the shop's API; collects console errors. */
async function openPage(t, origin) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  context.setDefaultTimeout(15_000);
  const page = await context.newPage();
  const consoleErrors = [];
  const pageErrors = [];
  page.on('console', (msg) => { if (msg.type() === 'error') consoleErrors.push(msg.text()); });
  page.on('pageerror', (err) => pageErrors.push(String(err)));
  t.after(() => context.close());
  await page.goto(`${origin}/index.html?api=${encodeURIComponent(SHOP.href)}#/products`);
  return { page, consoleErrors, pageErrors };
}

/** The shop's API from Node: no Origin, no CORS. */
async function api(method, path) {
  const res = await fetch(new URL(path, SHOP), { method });
  if (!res.ok) assert.fail(`${method} ${path} answered ${res.status}: ${await res.text()}`);
  return res.json();
}

const cartIdOf = (page) => page.evaluate(() => localStorage.getItem('coolstore.cartId'));

/** Waits for the shop's answer to `method` on a path containing `part`. */
function shopAnswer(page, method, part) {
  return page.waitForResponse((res) => res.request().method() === method
    && res.url().startsWith(SHOP.origin) && new URL(res.url()).pathname.includes(part));
}

describe('the shop page on an allowed origin', () => {
  test('runs the whole shopper flow against the API', { timeout: 180_000 }, async (t) => {
    const { page, pageErrors } = await openPage(t, allowed.origin);

    // Products and their stock (simple GETs).
    await page.getByTestId('product-card').first().waitFor();
    const products = await api('GET', 'api/products');
    const inventory = await api('GET', 'api/inventory');
    assert.equal(await page.getByTestId('product-card').count(), products.length);
    for (const record of inventory) {
      const card = page.locator(`[data-testid="product-card"][data-item-id="${record.itemId}"]`);
      assert.equal((await card.getByTestId('product-stock').textContent()).trim(), `${record.quantity} in stock`);
      assert.equal((await card.getByTestId('product-location').textContent()).trim(), `At ${record.location}`);
      assert.equal(await card.getByTestId('product-location').getByRole('link').getAttribute('href'), record.link);
    }

    // Add two products (POST without a body: a simple request).
    const [tshirt, socks] = ['329299', '165613'].map((id) => products.find((p) => p.itemId === id));
    for (const product of [tshirt, socks]) {
      const card = page.locator(`[data-testid="product-card"][data-item-id="${product.itemId}"]`);
      const [added] = await Promise.all([shopAnswer(page, 'POST', `/${product.itemId}/1`), card.getByTestId('add-to-cart').click()]);
      assert.equal(added.status(), 200);
      assert.equal(added.headers()['access-control-allow-origin'], allowed.origin);
      await page.getByRole('status').getByText(`Added ${product.name} to your cart`).first().waitFor();
    }
    const cartId = await cartIdOf(page);
    assert.deepEqual((await api('GET', `api/cart/${cartId}`)).shoppingCartItemList.map((i) => i.product.itemId),
      [tshirt.itemId, socks.itemId], 'the host has the cart the page built');

    // Remove one (DELETE: preflighted).
    await page.getByTestId('nav-cart').click();
    const line = page.locator(`[data-testid="cart-line"][data-item-id="${socks.itemId}"]`);
    const [removed] = await Promise.all([shopAnswer(page, 'DELETE', `/${socks.itemId}/`), line.getByTestId('remove-item').click()]);
    assert.equal(removed.status(), 200);
    assert.equal(removed.headers()['access-control-allow-origin'], allowed.origin);
    await line.waitFor({ state: 'detached' });

    // Check out (a JSON POST: preflighted) and watch the order get paid.
    await page.getByTestId('checkout-button').click();
    await page.getByTestId('cc-number').fill('4123987754646678');
    await page.getByTestId('cc-exp').fill(`12/${String((new Date().getFullYear() + 3) % 100).padStart(2, '0')}`);
    await page.getByTestId('cc-name').fill('Jane Shopper');
    await page.getByTestId('billing-address').fill('100 E Davie St, Raleigh, NC 27601');
    await page.getByTestId('name').fill('Jane Shopper');
    const [checkout] = await Promise.all([shopAnswer(page, 'POST', '/api/cart/checkout/'), page.getByTestId('place-order').click()]);
    assert.equal(checkout.status(), 200, await checkout.text());
    assert.equal(checkout.headers()['access-control-allow-origin'], allowed.origin);
    const orderId = JSON.parse(checkout.request().postData()).orderId;
    await page.waitForURL(/#\/orders$/);
    const status = await page.waitForFunction((id) => {
      const row = [...document.querySelectorAll('[data-testid="order-row"]')].find((r) => r.dataset.orderId === id);
      const shown = row?.querySelector('[data-testid="order-status"]')?.dataset.status;
      return ['COMPLETED', 'FAILED'].includes(shown) ? shown : null;
    }, orderId, { timeout: STATUS_DEADLINE_MS, polling: 250 }).then((h) => h.jsonValue());
    assert.equal(status, 'COMPLETED');
    assert.equal((await api('GET', `api/orders/${orderId}`)).status, 'COMPLETED');
    await page.screenshot({ path: join(ARTIFACTS, 'cors-allowed-orders.png'), fullPage: true });
    assert.deepEqual(pageErrors, []);
  });
});

describe('the shop page on an origin the host does not allow', () => {
  test('gets no answers, and preflighted requests are never sent', { timeout: 120_000 }, async (t) => {
    const { page, consoleErrors, pageErrors } = await openPage(t, blocked.origin);

    // The page cannot read the product list.
    await page.getByTestId('page-error').waitFor();
    assert.match(await page.getByTestId('page-error-message').textContent(), /Cannot reach the Coolstore server/);
    await page.screenshot({ path: join(ARTIFACTS, 'cors-blocked-products.png'), fullPage: true });

    // A simple request is sent and served (the host answers it as any other), but the page
    // does not get the answer. A preflighted one is stopped by the browser before it is sent.
    const cartId = `blocked-${Date.now()}`;
    const cartPath = new URL(`api/cart/${cartId}/329299/1`, SHOP).href;
    const outcome = (method) => page.evaluate(async ([url, m]) => {
      try { await fetch(url, { method: m }); return 'answered'; } catch (err) { return err.name; }
    }, [cartPath, method]);
    assert.equal(await outcome('POST'), 'TypeError', 'the simple POST is blocked for the page');
    const cart = await api('GET', `api/cart/${cartId}`);
    assert.deepEqual(cart.shoppingCartItemList.map((i) => [i.product.itemId, i.quantity]), [['329299', 1]],
      'the host served the simple POST');
    assert.equal(await outcome('DELETE'), 'TypeError', 'the DELETE is blocked for the page');
    const still = await api('GET', `api/cart/${cartId}`);
    assert.deepEqual(still.shoppingCartItemList.map((i) => [i.product.itemId, i.quantity]), [['329299', 1]],
      'the DELETE never reached the cart: its preflight was refused');

    assert.ok(consoleErrors.some((e) => /blocked by CORS policy/.test(e)),
      `the browser says it is CORS: ${JSON.stringify(consoleErrors)}`);
    assert.deepEqual(pageErrors, []);
  });
});
