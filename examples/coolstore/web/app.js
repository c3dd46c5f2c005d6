/*
 * Coolstore web shop: plain JavaScript, no build step, no dependencies.
 *
 * Hash routes: #/products (default), #/cart, #/checkout, #/orders.
 * JSON API, by default on this page's own origin (paths are relative to this page). Served
 * from elsewhere, the page takes the API's address as ?api=http://host:port/ (the host must
 * then allow this page's origin: [server.cors] in its config).
 *   GET    api/products
 *   GET    api/inventory
 *   GET    api/cart/{cartId}
 *   POST   api/cart/{cartId}/{itemId}/{quantity}
 *   DELETE api/cart/{cartId}/{itemId}/{quantity}
 *   POST   api/cart/checkout/{cartId}
 *   GET    api/orders
 * Errors are JSON {"message": "...", "status": N} with a 4xx/5xx status.
 */
'use strict';

(function () {
  const CART_ID_KEY = 'coolstore.cartId';
  const API_BASE = apiBase();
  const ORDERS_POLL_MS = 1000;
  const TOAST_MS = 4000;

  const main = document.getElementById('main');
  const toasts = document.querySelector('.toasts');
  const cartCount = document.querySelector('[data-testid="cart-count"]');

  // ---------------------------------------------------------------- helpers

  /** Create an element: h('div', {class: 'x', onclick: fn}, child, 'text', ...). */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key.startsWith('on') && typeof value === 'function') {
        el.addEventListener(key.slice(2), value);
      } else if (key === 'class') {
        el.className = value;
      } else if (key === 'text') {
        el.textContent = value;
      } else if (value === true) {
        el.setAttribute(key, '');
      } else {
        el.setAttribute(key, String(value));
      }
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  const moneyFormat = new Intl.NumberFormat('en-US', {
    style: 'currency', currency: 'USD', minimumFractionDigits: 2, maximumFractionDigits: 2,
  });

  function toNumber(value) {
    const n = typeof value === 'number' ? value : parseFloat(value);
    return Number.isFinite(n) ? n : 0;
  }

  /** $1,234.50 */
  function money(value) {
    return moneyFormat.format(toNumber(value));
  }

  /** Savings are negative in the API; shown as "−$2.50" (or "$0.00" when none). */
  function savings(value) {
    const n = Math.abs(toNumber(value));
    return n < 0.005 ? money(0) : '\u2212' + money(n);
  }

  function newId() {
    if (window.crypto && typeof window.crypto.randomUUID === 'function') {
      return window.crypto.randomUUID();
    }
    const bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  /** Where the API is: ?api=<url> if given, else beside this page; always ends with '/'. */
  function apiBase() {
    const given = new URLSearchParams(location.search).get('api');
    let base;
    try { base = new URL(given || '.', location.href); } catch (_) { base = new URL('.', location.href); }
    if (!base.pathname.endsWith('/')) base.pathname += '/';
    base.search = '';
    base.hash = '';
    return base;
  }

  function getCartId() {
    let id = null;
    try { id = localStorage.getItem(CART_ID_KEY); } catch (_) { /* storage disabled */ }
    if (!id) {
      id = newId();
      try { localStorage.setItem(CART_ID_KEY, id); } catch (_) { /* storage disabled */ }
    }
    return id;
  }
  const cartId = getCartId();

  function pluralize(n, word) {
    return `${n} ${word}${n === 1 ? '' : 's'}`;
  }

  // -------------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.name = 'ApiError';
      this.status = status;
    }
  }

  async function api(method, path, body) {
    const options = { method, headers: { Accept: 'application/json' }, cache: 'no-store' };
    if (body !== undefined) {
      options.headers['Content-Type'] = 'application/json';
      options.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(new URL(path, API_BASE), options);
    } catch (_) {
      throw new ApiError('Cannot reach the Coolstore server. Please check your connection and try again.', 0);
    }
    const text = await response.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (_) { data = null; }
    }
    if (!response.ok) {
      const message = data && typeof data.message === 'string' && data.message.trim()
        ? data.message
        : `Request failed: ${response.status}${response.statusText ? ' ' + response.statusText : ''}`;
      throw new ApiError(message, (data && data.status) || response.status);
    }
    return data;
  }

  const seg = encodeURIComponent;
  const Api = {
    products: () => api('GET', 'api/products'),
    // The workshop's inventory records: [{id, itemId, location, quantity, link}].
    inventory: () => api('GET', 'api/inventory'),
    // A cart the server has never seen may answer 404: that is an empty cart.
    cart: () => api('GET', `api/cart/${seg(cartId)}`).catch((err) => {
      if (err.status === 404) return emptyCart();
      throw err;
    }),
    add: (itemId, qty) => api('POST', `api/cart/${seg(cartId)}/${seg(itemId)}/${qty}`),
    remove: (itemId, qty) => api('DELETE', `api/cart/${seg(cartId)}/${seg(itemId)}/${qty}`),
    checkout: (order) => api('POST', `api/cart/checkout/${seg(cartId)}`, order),
    orders: () => api('GET', 'api/orders'),
  };

  function emptyCart() {
    return {
      cartId, shoppingCartItemList: [], cartItemTotal: 0, cartItemPromoSavings: 0,
      shippingTotal: 0, shippingPromoSavings: 0, cartTotal: 0,
    };
  }

  function isCart(data) {
    return data && typeof data === 'object' && Array.isArray(data.shoppingCartItemList);
  }

  /** Use the cart a mutation returned, or fetch it when the response was not a cart. */
  async function cartFrom(data) {
    return isCart(data) ? data : Api.cart();
  }

  // ------------------------------------------------------------------ toasts

  function toast(message, kind) {
    const error = kind === 'error';
    const el = h('div', {
      class: `toast ${error ? 'toast-error' : 'toast-success'}`,
      'data-testid': error ? 'toast-error' : 'toast',
      role: error ? 'alert' : null,
    },
    h('span', { class: 'toast-icon', 'aria-hidden': 'true', text: error ? '!' : '\u2713' }),
    h('span', { class: 'toast-text', text: message }),
    h('button', {
      class: 'toast-close', type: 'button', 'aria-label': 'Dismiss', text: '\u00d7',
      onclick: () => el.remove(),
    }));
    el.dataset.created = String(Date.now());
    toasts.append(el);
    while (toasts.children.length > 3) toasts.firstElementChild.remove();
    setTimeout(() => el.remove(), error ? TOAST_MS * 2 : TOAST_MS);
  }

  // ------------------------------------------------------------- cart badge

  function updateBadge(cart) {
    const count = isCart(cart)
      ? cart.shoppingCartItemList.reduce((sum, item) => sum + toNumber(item.quantity), 0)
      : 0;
    cartCount.textContent = String(count);
    cartCount.classList.toggle('is-empty', count === 0);
    cartCount.setAttribute('aria-label', `${pluralize(count, 'item')} in cart`);
  }

  async function refreshBadge() {
    try { updateBadge(await Api.cart()); } catch (_) { /* the badge is best effort */ }
  }

  // ---------------------------------------------------------------- routing

  let view = { name: null, cleanup: null };
  let lastPlacedOrderId = null;

  const routes = {
    products: renderProducts,
    cart: renderCart,
    checkout: renderCheckout,
    orders: renderOrders,
  };

  const titles = { products: 'Products', cart: 'Your cart', checkout: 'Checkout', orders: 'Orders' };

  function currentRoute() {
    const hash = location.hash.replace(/^#\/?/, '');
    const name = hash.split(/[/?]/)[0];
    return name === '' ? 'products' : name;
  }

  function navigate(name) {
    if (currentRoute() === name && location.hash) route();
    else location.hash = `#/${name}`;
  }

  function route() {
    if (view.cleanup) view.cleanup();
    // Messages about the previous page go away; one raised just before navigating stays.
    for (const el of [...toasts.children]) {
      if (Date.now() - Number(el.dataset.created || 0) > 1500) el.remove();
    }
    const name = currentRoute();
    const render = routes[name] || renderNotFound;
    view = { name, cleanup: null };
    document.title = `${titles[name] || 'Not found'} \u00b7 Coolstore`;
    for (const link of document.querySelectorAll('.site-nav a')) {
      if (link.dataset.route === name || (name === 'checkout' && link.dataset.route === 'cart')) {
        link.setAttribute('aria-current', 'page');
      } else {
        link.removeAttribute('aria-current');
      }
    }
    main.replaceChildren();
    main.dataset.view = name;
    window.scrollTo(0, 0);
    const token = view;
    render({ isCurrent: () => view === token, onLeave: (fn) => { token.cleanup = fn; } });
  }

  function pageHeader(title, subtitle, testid, ...extra) {
    return h('div', { class: 'page-header' },
      h('div', {},
        h('h1', { 'data-testid': testid, text: title }),
        subtitle ? h('p', { class: 'page-subtitle', text: subtitle }) : null),
      ...extra);
  }

  function loading(text) {
    return h('div', { class: 'loading', 'data-testid': 'loading' },
      h('span', { class: 'spinner', 'aria-hidden': 'true' }), text);
  }

  function errorBox(message, retry) {
    return h('div', { class: 'notice notice-error', role: 'alert', 'data-testid': 'page-error' },
      h('strong', { text: 'Something went wrong. ' }),
      h('span', { 'data-testid': 'page-error-message', text: message }),
      retry ? h('button', { class: 'btn btn-secondary btn-sm', type: 'button', onclick: retry, text: 'Try again' }) : null);
  }

  function renderNotFound() {
    main.append(
      pageHeader('Page not found', 'There is nothing at this address.', 'page-title'),
      h('a', { class: 'btn btn-primary', href: '#/products', text: 'Browse products' }));
  }

  // --------------------------------------------------------------- products

  function productThumb(product) {
    const name = String(product.name || '?');
    let hash = 0;
    for (const ch of String(product.itemId || name)) hash = (hash * 31 + ch.charCodeAt(0)) >>> 0;
    const initials = name.split(/\s+/).filter(Boolean).slice(0, 2).map((w) => w[0].toUpperCase()).join('');
    return h('div', { class: 'thumb', style: `--hue:${hash % 360}`, 'aria-hidden': 'true' },
      h('span', { text: initials }));
  }

  async function renderProducts(ctx) {
    main.append(pageHeader('Products', 'Cool swag for cool developers.', 'page-title'));
    const body = h('div', {}, loading('Loading products\u2026'));
    main.append(body);

    let products;
    let stock;
    try {
      // Stock is extra: without it, cards show the catalog's quantity.
      [products, stock] = await Promise.all([Api.products(), Api.inventory().catch(() => null)]);
    } catch (err) {
      if (!ctx.isCurrent()) return;
      body.replaceChildren(errorBox(err.message, () => route()));
      return;
    }
    if (!ctx.isCurrent()) return;
    if (!Array.isArray(products) || products.length === 0) {
      body.replaceChildren(h('div', { class: 'empty', 'data-testid': 'products-empty' },
        h('p', { text: 'No products are available right now.' })));
      return;
    }

    const grid = h('div', { class: 'product-grid', 'data-testid': 'product-list' });
    const records = Array.isArray(stock) ? stock : [];
    for (const product of products) {
      grid.append(productCard(product, records.filter((r) => r && r.itemId === product.itemId)));
    }
    body.replaceChildren(grid);
  }

  /** A product's card; `records` are its inventory records (the catalog's quantity if none). */
  function productCard(product, records) {
    const stock = records.length
      ? records.reduce((sum, r) => sum + toNumber(r.quantity), 0)
      : toNumber(product.quantity);
    const inStock = stock > 0;
    const button = h('button', {
      class: 'btn btn-primary btn-block', type: 'button', 'data-testid': 'add-to-cart',
      disabled: !inStock, text: inStock ? 'Add to Cart' : 'Out of stock',
    });
    button.addEventListener('click', async () => {
      button.disabled = true;
      button.textContent = 'Adding\u2026';
      try {
        const cart = await cartFrom(await Api.add(product.itemId, 1));
        updateBadge(cart);
        toast(`Added ${product.name} to your cart`);
      } catch (err) {
        toast(err.message, 'error');
      } finally {
        button.disabled = !inStock;
        button.textContent = inStock ? 'Add to Cart' : 'Out of stock';
      }
    });

    return h('article', { class: 'card product-card', 'data-testid': 'product-card', 'data-item-id': product.itemId },
      productThumb(product),
      h('div', { class: 'product-body' },
        h('h2', { class: 'product-name', 'data-testid': 'product-name', text: product.name }),
        h('p', { class: 'product-desc', 'data-testid': 'product-desc', text: product.desc || '' }),
        h('div', { class: 'product-meta' },
          h('span', { class: 'price', 'data-testid': 'product-price', text: money(product.price) }),
          h('span', {
            class: `stock ${inStock ? (stock <= 5 ? 'stock-low' : '') : 'stock-out'}`,
            'data-testid': 'product-stock',
            text: inStock ? `${stock} in stock` : 'Out of stock',
          })),
        records.length ? h('p', { class: 'product-location', 'data-testid': 'product-location' },
          'At ', ...records.flatMap((r, i) => [
            i ? ', ' : null,
            /^https?:\/\//.test(String(r.link || ''))
              ? h('a', { href: r.link, target: '_blank', rel: 'noopener', text: r.location || r.link })
              : String(r.location || ''),
          ])) : null,
        button));
  }

  // -------------------------------------------------------------------- cart

  async function renderCart(ctx) {
    main.append(pageHeader('Your cart', null, 'page-title'));
    const body = h('div', {}, loading('Loading your cart\u2026'));
    main.append(body);

    let cart;
    try {
      cart = await Api.cart();
    } catch (err) {
      if (!ctx.isCurrent()) return;
      body.replaceChildren(errorBox(err.message, () => route()));
      return;
    }
    if (!ctx.isCurrent()) return;
    updateBadge(cart);
    body.replaceChildren(cartView(cart, ctx));
  }

  function cartView(cart, ctx) {
    const items = isCart(cart) ? cart.shoppingCartItemList : [];
    if (items.length === 0) {
      return h('div', { class: 'empty card', 'data-testid': 'cart-empty' },
        h('p', { class: 'empty-title', text: 'Your cart is empty.' }),
        h('p', { text: 'Find something you like and add it to your cart.' }),
        h('a', { class: 'btn btn-primary', href: '#/products', text: 'Browse products' }));
    }

    let busy = false;
    async function mutate(action, item, qty, doneMessage) {
      if (busy) return;
      busy = true;
      wrapper.classList.add('is-busy');
      try {
        const result = action === 'add'
          ? await Api.add(item.product.itemId, qty)
          : await Api.remove(item.product.itemId, qty);
        const updated = await cartFrom(result);
        if (doneMessage) toast(doneMessage);
        updateBadge(updated);
        if (ctx.isCurrent()) wrapper.replaceWith(cartView(updated, ctx));
      } catch (err) {
        toast(err.message, 'error');
        wrapper.classList.remove('is-busy');
      } finally {
        busy = false;
      }
    }

    const rows = items.map((item) => {
      const product = item.product || {};
      const qty = toNumber(item.quantity);
      const unit = toNumber(item.price);
      const listPrice = toNumber(product.price);
      const lineSavings = toNumber(item.promoSavings) * qty;
      const discounted = Math.abs(toNumber(item.promoSavings)) >= 0.005;
      return h('tr', { 'data-testid': 'cart-line', 'data-item-id': product.itemId },
        h('td', { class: 'col-product' },
          h('div', { class: 'line-product' },
            productThumb(product),
            h('div', {},
              h('div', { class: 'line-name', 'data-testid': 'line-name', text: product.name }),
              discounted ? h('span', { class: 'promo-tag', 'data-testid': 'line-promo', text: 'Promotion applied' }) : null))),
        h('td', { class: 'num col-unit', 'data-label': 'Price' },
          discounted && Math.abs(listPrice - unit) >= 0.005
            ? h('s', { class: 'list-price', 'data-testid': 'line-list-price', text: money(listPrice) }) : null,
          h('span', { 'data-testid': 'line-unit-price', text: money(unit) })),
        h('td', { class: 'num col-qty', 'data-label': 'Quantity' },
          h('div', { class: 'qty' },
            h('button', {
              class: 'qty-btn', type: 'button', 'data-testid': 'line-decrement',
              'aria-label': `Remove one ${product.name}`, text: '\u2212',
              onclick: () => mutate('remove', item, 1, qty <= 1 ? `Removed ${product.name} from your cart` : null),
            }),
            h('span', { class: 'qty-value', 'data-testid': 'line-qty', text: String(qty) }),
            h('button', {
              class: 'qty-btn', type: 'button', 'data-testid': 'line-increment',
              'aria-label': `Add one more ${product.name}`, text: '+',
              onclick: () => mutate('add', item, 1, null),
            }))),
        h('td', { class: 'num col-savings', 'data-label': 'Savings' },
          h('span', { class: discounted ? 'saving' : 'muted', 'data-testid': 'line-savings', text: discounted ? savings(lineSavings) : '\u2014' })),
        h('td', { class: 'num col-total', 'data-label': 'Subtotal' },
          h('strong', { 'data-testid': 'line-total', text: money(unit * qty) })),
        h('td', { class: 'col-actions' },
          h('button', {
            class: 'btn btn-ghost btn-sm', type: 'button', 'data-testid': 'remove-item',
            'aria-label': `Remove ${product.name} from cart`, text: 'Remove',
            onclick: () => mutate('remove', item, qty, `Removed ${product.name} from your cart`),
          })));
    });

    const table = h('table', { class: 'cart-table', 'data-testid': 'cart-lines' },
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col', text: 'Product' }),
        h('th', { scope: 'col', class: 'num', text: 'Price' }),
        h('th', { scope: 'col', class: 'num', text: 'Quantity' }),
        h('th', { scope: 'col', class: 'num', text: 'Savings' }),
        h('th', { scope: 'col', class: 'num', text: 'Subtotal' }),
        h('th', { scope: 'col', class: 'col-actions' }, h('span', { class: 'sr-only', text: 'Actions' })))),
      h('tbody', {}, rows));

    const wrapper = h('div', { class: 'cart-layout', 'data-testid': 'cart' },
      h('div', { class: 'card cart-lines-card' }, h('div', { class: 'table-scroll' }, table)),
      cartSummary(cart, h('a', { class: 'btn btn-primary btn-block', href: '#/checkout', 'data-testid': 'checkout-button', text: 'Checkout' })));
    return wrapper;
  }

  function cartSummary(cart, ...actions) {
    const row = (label, testid, value, cls) => h('div', { class: `summary-row ${cls || ''}` },
      h('dt', { text: label }), h('dd', { 'data-testid': testid, text: value }));
    const count = cart.shoppingCartItemList.reduce((sum, item) => sum + toNumber(item.quantity), 0);
    return h('aside', { class: 'card summary', 'data-testid': 'cart-summary', 'aria-label': 'Order summary' },
      h('h2', { class: 'summary-title', text: 'Order summary' }),
      h('p', { class: 'muted summary-count', 'data-testid': 'summary-count', text: pluralize(count, 'item') }),
      h('dl', {},
        row('Item total', 'cart-item-total', money(cart.cartItemTotal)),
        row('Promo savings', 'cart-item-promo-savings', savings(cart.cartItemPromoSavings), 'saving'),
        row('Shipping', 'cart-shipping-total', money(cart.shippingTotal)),
        row('Shipping savings', 'cart-shipping-promo-savings', savings(cart.shippingPromoSavings), 'saving'),
        row('Total', 'cart-total', money(cart.cartTotal), 'summary-total')),
      ...actions);
  }

  // --------------------------------------------------------------- checkout

  const FIELDS = [
    { id: 'cc-number', label: 'Card number', autocomplete: 'cc-number', inputmode: 'numeric', placeholder: '4123 9877 5464 6678', maxlength: 23 },
    { id: 'cc-exp', label: 'Expiry (MM/YY)', autocomplete: 'cc-exp', inputmode: 'numeric', placeholder: 'MM/YY', maxlength: 5 },
    { id: 'cc-name', label: 'Name on card', autocomplete: 'cc-name', placeholder: 'Jane Doe' },
    { id: 'billing-address', label: 'Billing address', autocomplete: 'street-address', placeholder: '100 Main St, Raleigh, NC 27601', wide: true },
    { id: 'name', label: 'Your name', autocomplete: 'name', placeholder: 'Jane Doe', wide: true },
  ];

  function validate(values, now) {
    const errors = {};
    const digits = values['cc-number'].replace(/[\s-]/g, '');
    if (!values['cc-number'].trim()) errors['cc-number'] = 'Enter your card number.';
    else if (!/^\d+$/.test(digits)) errors['cc-number'] = 'Card number may contain digits only.';
    else if (digits.length < 13 || digits.length > 19) errors['cc-number'] = 'Card number must be 13 to 19 digits.';

    const exp = values['cc-exp'].trim();
    const m = /^(\d{2})\/(\d{2})$/.exec(exp);
    if (!exp) errors['cc-exp'] = 'Enter the expiry date.';
    else if (!m || +m[1] < 1 || +m[1] > 12) errors['cc-exp'] = 'Use the format MM/YY, e.g. 08/29.';
    else {
      const year = 2000 + +m[2];
      const month = +m[1];
      if (year < now.getFullYear() || (year === now.getFullYear() && month < now.getMonth() + 1)) {
        errors['cc-exp'] = 'This card has expired.';
      }
    }

    if (!values['cc-name'].trim()) errors['cc-name'] = 'Enter the name on the card.';
    if (!values['billing-address'].trim()) errors['billing-address'] = 'Enter your billing address.';
    if (!values.name.trim()) errors.name = 'Enter your name.';
    return errors;
  }

  async function renderCheckout(ctx) {
    main.append(pageHeader('Checkout', 'Payment is processed after you place the order.', 'page-title'));
    const body = h('div', {}, loading('Loading your cart\u2026'));
    main.append(body);

    let cart;
    try {
      cart = await Api.cart();
    } catch (err) {
      if (!ctx.isCurrent()) return;
      body.replaceChildren(errorBox(err.message, () => route()));
      return;
    }
    if (!ctx.isCurrent()) return;
    updateBadge(cart);
    if (!isCart(cart) || cart.shoppingCartItemList.length === 0) {
      body.replaceChildren(h('div', { class: 'empty card', 'data-testid': 'checkout-empty' },
        h('p', { class: 'empty-title', text: 'Your cart is empty.' }),
        h('p', { text: 'Add some products before checking out.' }),
        h('a', { class: 'btn btn-primary', href: '#/products', text: 'Browse products' })));
      return;
    }

    const inputs = {};
    const errorEls = {};
    const fieldEls = FIELDS.map((f) => {
      const errId = `${f.id}-error`;
      inputs[f.id] = h('input', {
        id: f.id, name: f.id, type: 'text', autocomplete: f.autocomplete, inputmode: f.inputmode,
        placeholder: f.placeholder, maxlength: f.maxlength, 'data-testid': f.id,
        'aria-describedby': errId, required: true, spellcheck: 'false',
      });
      errorEls[f.id] = h('p', { class: 'field-error', id: errId, 'data-testid': errId, hidden: true });
      return h('div', { class: `field ${f.wide ? 'field-wide' : ''}` },
        h('label', { for: f.id, text: f.label }), inputs[f.id], errorEls[f.id]);
    });

    // Insert the slash in the expiry date as the user types "1229" -> "12/29".
    inputs['cc-exp'].addEventListener('input', (e) => {
      const el = e.target;
      if (e.inputType && e.inputType.startsWith('delete')) return;
      const digits = el.value.replace(/\D/g, '').slice(0, 4);
      if (/^\d{2}$/.test(el.value) || /^\d{3,4}$/.test(el.value)) {
        el.value = digits.length > 2 ? `${digits.slice(0, 2)}/${digits.slice(2)}` : `${digits}/`;
      }
    });

    const formError = h('div', { class: 'notice notice-error', role: 'alert', 'data-testid': 'checkout-error', hidden: true });
    const submit = h('button', { class: 'btn btn-primary btn-block btn-lg', type: 'submit', 'data-testid': 'place-order', text: `Place order \u00b7 ${money(cart.cartTotal)}` });

    const form = h('form', { class: 'card checkout-form', novalidate: true, 'data-testid': 'checkout-form', 'aria-label': 'Payment details' },
      h('h2', { class: 'form-section-title', text: 'Payment details' }),
      formError,
      h('div', { class: 'field-grid' }, fieldEls),
      h('div', { class: 'form-actions' },
        submit,
        h('a', { class: 'btn btn-ghost', href: '#/cart', text: 'Back to cart' })));

    function values() {
      const v = {};
      for (const f of FIELDS) v[f.id] = inputs[f.id].value;
      return v;
    }

    function setFieldError(id, msg) {
      errorEls[id].textContent = msg || '';
      errorEls[id].hidden = !msg;
      if (msg) inputs[id].setAttribute('aria-invalid', 'true');
      else inputs[id].removeAttribute('aria-invalid');
      inputs[id].closest('.field').classList.toggle('has-error', Boolean(msg));
    }

    function showErrors(errors) {
      for (const f of FIELDS) setFieldError(f.id, errors[f.id]);
    }

    // After a failed submit, clear a field's error as soon as it becomes valid.
    for (const f of FIELDS) {
      inputs[f.id].addEventListener('input', () => {
        if (!errorEls[f.id].hidden && !validate(values(), new Date())[f.id]) setFieldError(f.id, null);
      });
    }

    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      formError.hidden = true;
      const v = values();
      const errors = validate(v, new Date());
      showErrors(errors);
      const firstInvalid = FIELDS.find((f) => errors[f.id]);
      if (firstInvalid) {
        inputs[firstInvalid.id].focus();
        return;
      }

      const order = {
        orderId: newId(),
        total: toNumber(cart.cartTotal),
        creditCard: {
          number: v['cc-number'].replace(/[\s-]/g, ''),
          expiration: v['cc-exp'].trim(),
          nameOnCard: v['cc-name'].trim(),
        },
        billingAddress: v['billing-address'].trim(),
        name: v.name.trim(),
      };
      submit.disabled = true;
      submit.textContent = 'Placing order\u2026';
      try {
        const result = await Api.checkout(order);
        updateBadge(isCart(result) ? result : null);
        lastPlacedOrderId = order.orderId;
        toast('Order placed. Payment is being processed.');
        if (ctx.isCurrent()) navigate('orders');
      } catch (err) {
        formError.replaceChildren(h('strong', { text: 'Your order could not be placed. ' }),
          h('span', { 'data-testid': 'checkout-error-message', text: err.message }));
        formError.hidden = false;
        formError.scrollIntoView({ block: 'center' });
        submit.disabled = false;
        submit.textContent = `Place order \u00b7 ${money(cart.cartTotal)}`;
      }
    });

    body.replaceChildren(h('div', { class: 'checkout-layout' },
      form,
      cartSummary(cart, h('a', { class: 'summary-link', href: '#/cart', text: 'Edit cart' }))));
  }

  // ----------------------------------------------------------------- orders

  const STATUS_CLASS = { PROCESSING: 'status-processing', COMPLETED: 'status-completed', FAILED: 'status-failed' };

  function renderOrders(ctx) {
    const updated = h('span', { class: 'live', 'data-testid': 'orders-updated' },
      h('span', { class: 'live-dot', 'aria-hidden': 'true' }), 'Live');
    main.append(pageHeader('Orders', 'Statuses update automatically as payments are processed.', 'page-title', updated));
    const body = h('div', {}, loading('Loading orders\u2026'));
    const errorSlot = h('div', {});
    main.append(errorSlot, body);

    let timer = null;
    let lastJson = null;
    let stopped = false;
    ctx.onLeave(() => { stopped = true; clearTimeout(timer); });

    async function poll() {
      timer = null;
      if (stopped) return;
      if (document.hidden) { schedule(); return; }
      try {
        const orders = await Api.orders();
        if (stopped || !ctx.isCurrent()) return;
        errorSlot.replaceChildren();
        updated.classList.remove('is-stale');
        updated.title = `Updated ${new Date().toLocaleTimeString()}`;
        const json = JSON.stringify(orders);
        if (json !== lastJson) {
          lastJson = json;
          body.replaceChildren(ordersView(Array.isArray(orders) ? orders : []));
        }
      } catch (err) {
        if (stopped || !ctx.isCurrent()) return;
        updated.classList.add('is-stale');
        errorSlot.replaceChildren(errorBox(err.message));
        if (lastJson === null) body.replaceChildren();
      }
      schedule();
    }
    function schedule() {
      if (!stopped) timer = setTimeout(poll, ORDERS_POLL_MS);
    }
    poll();
  }

  function ordersView(orders) {
    if (orders.length === 0) {
      return h('div', { class: 'empty card', 'data-testid': 'orders-empty' },
        h('p', { class: 'empty-title', text: 'No orders yet.' }),
        h('p', { text: 'Orders appear here as soon as you check out.' }),
        h('a', { class: 'btn btn-primary', href: '#/products', text: 'Start shopping' }));
    }
    // Newest first, assuming the API lists orders in the order they were placed.
    const list = orders.slice().reverse();
    const rows = list.map((order) => {
      const status = String(order.status || 'UNKNOWN').toUpperCase();
      const id = String(order.orderId || '');
      return h('tr', {
        'data-testid': 'order-row', 'data-order-id': id,
        class: id && id === lastPlacedOrderId ? 'is-new' : null,
      },
      h('td', { 'data-label': 'Order' },
        h('code', { class: 'order-id', title: id, 'data-testid': 'order-id', text: id.length > 13 ? `${id.slice(0, 8)}\u2026` : id })),
      h('td', { 'data-label': 'Name', 'data-testid': 'order-name', text: order.name || '' }),
      h('td', { 'data-label': 'Card' }, h('span', {},
        h('span', { class: 'card-number', 'data-testid': 'order-card', text: order.ccNumber || '' }),
        order.ccExp ? h('span', { class: 'muted card-exp', 'data-testid': 'order-exp', text: ` exp. ${order.ccExp}` }) : null)),
      h('td', { 'data-label': 'Billing address', class: 'col-address', 'data-testid': 'order-address', text: order.billingAddress || '' }),
      h('td', { class: 'num', 'data-label': 'Total', 'data-testid': 'order-total', text: money(order.total) }),
      h('td', { 'data-label': 'Status' },
        h('span', {
          class: `status ${STATUS_CLASS[status] || 'status-unknown'}`,
          'data-testid': 'order-status', 'data-status': status, text: status,
        })));
    });
    return h('div', { class: 'card' }, h('div', { class: 'table-scroll' },
      h('table', { class: 'orders-table', 'data-testid': 'orders-list' },
        h('thead', {}, h('tr', {},
          h('th', { scope: 'col', text: 'Order' }),
          h('th', { scope: 'col', text: 'Name' }),
          h('th', { scope: 'col', text: 'Card' }),
          h('th', { scope: 'col', text: 'Billing address' }),
          h('th', { scope: 'col', class: 'num', text: 'Total' }),
          h('th', { scope: 'col', text: 'Status' }))),
        h('tbody', {}, rows))));
  }

  // ------------------------------------------------------------------ start

  window.addEventListener('hashchange', route);
  document.documentElement.dataset.cartId = cartId;
  route();
  refreshBadge();
}());
