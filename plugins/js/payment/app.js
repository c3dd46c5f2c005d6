// Payment plugin in JavaScript (world `plugin`, built with componentize-js): the rules of the
// Rust plugin in plugins/payment, so each order gets the same decision and remarks from either.
//
// Consumes orders and answers `POST /api/payment` with an order as the body. Each order gives
// exactly one result on topic `payments` (config `payments_topic`), keyed by order id:
// `{orderId, paymentId, remarks, status, rules}` with `rules: "js-v1"` (or `"js-v2"`).
//
// Config: `rules` ("v1" or "v2"; v2 caps the total at 100.00 unless `max_total` says
// otherwise), `processing_delay_ms` (default 0), `max_total` (caps the order total, e.g.
// "100.00"), `payments_topic` (default `payments`). A bad config value is a `retry`
// failure (the deployment's fault, not the order's); input that is not an order with an
// `orderId` is `invalid` and is dead-lettered.
//
// Amounts are integer cents held as BigInt, like the Rust plugin's i64, so totals of any size
// are compared and printed exactly.

import { send } from 'eventhost:plugin/outbox@0.1.0';
import { get as configGet } from 'eventhost:plugin/config@0.1.0';
import { log } from 'eventhost:plugin/log@0.1.0';

const I64_MAX = (1n << 63n) - 1n;

const utf8 = new TextEncoder();
// A byte order mark is kept (and refused by JSON.parse), as serde_json refuses it.
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** A failure result of the contract: `invalid` is dead-lettered (HTTP 400), `retry` is retried. */
class Failure {
    constructor(tag, val) {
        this.tag = tag;
        this.val = val;
    }
}

// ---- money (as in plugins/shop-data/src/money.rs) -----------------------------------------

/** Cents as text with two decimals, e.g. `750n` → `"7.50"`. */
function toText(cents) {
    const sign = cents < 0n ? '-' : '';
    const abs = cents < 0n ? -cents : cents;
    return `${sign}${abs / 100n}.${String(abs % 100n).padStart(2, '0')}`;
}

const DIGITS = /^[0-9]*$/;

// Rust's `str::trim` takes Unicode White_Space; JavaScript's `trim` also takes U+FEFF, not U+0085.
const WHITE_SPACE =
    '[\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]+';
const TRIMMED = new RegExp(`^${WHITE_SPACE}|${WHITE_SPACE}$`, 'g');
const rustTrim = (text) => text.replace(TRIMMED, '');

/** Parses a non-negative amount with at most two decimals ("21", "21.4", "21.45") into cents. */
function parseMoney(text) {
    const trimmed = rustTrim(text);
    const dot = trimmed.indexOf('.');
    const whole = dot < 0 ? trimmed : trimmed.slice(0, dot);
    const frac = dot < 0 ? '' : trimmed.slice(dot + 1);
    if (dot >= 0 && frac === '') return null;
    if (whole === '' || !DIGITS.test(whole) || frac.length > 2 || !DIGITS.test(frac)) return null;
    const cents = BigInt(whole) * 100n + BigInt(frac.padEnd(2, '0'));
    return cents <= I64_MAX ? cents : null;
}

/** A JSON number as cents, rounded to the nearest cent. */
function centsOfNumber(value) {
    const cents = Math.round(value * 100);
    if (!Number.isFinite(value) || !(value >= 0) || !(cents < 9223372036854775808)) return null;
    return BigInt(cents);
}

/** A total given as a string ("21.45", as the cart sends it) or as a number. */
function totalCents(total) {
    if (typeof total === 'string') return parseMoney(total);
    if (total instanceof JsonNumber) return centsOfNumber(total.value);
    return null;
}

// ---- JSON read and printed the way serde_json does it in the Rust plugin ------------------

/**
 * A number of a parsed order as serde_json reads it: its value as a float, and the integer
 * (a BigInt) when serde_json keeps it as a 64-bit integer rather than a float; floats print
 * differently (`4.0`, not `4`).
 */
class JsonNumber {
    constructor(value, integer = null) {
        this.value = value;
        this.integer = integer;
    }
}

const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);
const I32_MAX = 2 ** 31 - 1;

/**
 * The number written `source` (valid JSON) as serde_json 1.x reads it without its
 * `float_roundtrip` feature: digits gathered into a u64 until it would overflow (later digits
 * dropped), then scaled by a power of ten, which may differ from the nearest float in the last
 * bit. `null` when it refuses the number as out of range.
 */
function serdeNumber(source) {
    const positive = source[0] !== '-';
    let i = positive ? 0 : 1;
    const digits = () => {
        const start = i;
        while (i < source.length && source[i] >= '0' && source[i] <= '9') i++;
        return source.slice(start, i);
    };
    // Adds digits to the significand until one would overflow; returns how many it took.
    let significand = 0n;
    let full = false;
    const take = (text) => {
        let taken = 0;
        for (const c of text) {
            const next = significand * 10n + BigInt(c);
            if (full || next > U64_MAX) {
                full = true;
                break;
            }
            significand = next;
            taken++;
        }
        return taken;
    };
    const whole = digits();
    let exponent = whole.length - take(whole);
    let float = full;
    if (source[i] === '.') {
        i++;
        const fraction = digits();
        full = false; // the fraction is tried digit by digit again, as serde_json does
        exponent -= take(fraction);
        float = true;
    }
    if (source[i] === 'e' || source[i] === 'E') {
        i++;
        const negative = source[i] === '-';
        if (source[i] === '-' || source[i] === '+') i++;
        const text = digits();
        let exp = 0;
        for (const c of text) {
            exp = exp * 10 + Number(c);
            if (exp > I32_MAX) {
                if (significand !== 0n && !negative) return null;
                return new JsonNumber(positive ? 0 : -0);
            }
        }
        const sum = negative ? exponent - exp : exponent + exp;
        exponent = Math.max(-I32_MAX - 1, Math.min(I32_MAX, sum)); // i32 saturating
        float = true;
    }
    if (!float) {
        const n = positive ? significand : -significand;
        if (positive || (n < 0n && n >= I64_MIN)) return new JsonNumber(Number(n), n);
        return new JsonNumber(-Number(significand)); // -0, or below i64::MIN: a float
    }
    let f = Number(significand);
    for (;;) {
        const power = Math.abs(exponent);
        if (power <= 308) {
            if (exponent >= 0) {
                f *= Number(`1e${power}`);
                if (!Number.isFinite(f)) return null;
            } else {
                f /= Number(`1e${power}`);
            }
            break;
        }
        if (f === 0) break;
        if (exponent >= 0) return null;
        f /= 1e308;
        exponent += 308;
    }
    return new JsonNumber(positive ? f : -f);
}

/** serde_json's nesting limit: it refuses a 128th level of arrays or objects. */
function tooDeep(text) {
    if ((text.match(/[[{]/g)?.length ?? 0) < 128) return false;
    let depth = 0;
    let inString = false;
    for (let i = 0; i < text.length; i++) {
        const c = text.charCodeAt(i);
        if (inString) {
            if (c === 0x5c) i++;
            else if (c === 0x22) inString = false;
        } else if (c === 0x22) inString = true;
        else if (c === 0x5b || c === 0x7b) {
            if (++depth >= 128) return true;
        } else if (c === 0x5d || c === 0x7d) depth--;
    }
    return false;
}

/** Parses `bytes` as JSON, refusing what serde_json refuses; numbers become `JsonNumber`s. */
function parseJson(bytes) {
    const notJson = (why) => new Failure('invalid', `order is not JSON: ${why}`);
    let text;
    try {
        text = strictUtf8.decode(bytes);
    } catch {
        throw notJson('invalid UTF-8');
    }
    if (tooDeep(text)) throw notJson('recursion limit exceeded');
    try {
        return JSON.parse(text, (key, value, context) => {
            if (!key.isWellFormed() || (typeof value === 'string' && !value.isWellFormed())) {
                throw notJson('lone surrogate in a string');
            }
            if (typeof value !== 'number') return value;
            const source = context?.source;
            const number =
                typeof source === 'string'
                    ? serdeNumber(source)
                    : Number.isFinite(value) &&
                      new JsonNumber(value, Number.isSafeInteger(value) ? BigInt(value) : null);
            if (!number) throw notJson('number out of range');
            return number;
        });
    } catch (e) {
        if (e instanceof Failure) throw e;
        throw notJson(e.message.replace(/^JSON\.parse: /, ''));
    }
}

/** A float as serde_json prints it: `4.0`, `0.001`, `1e+16`, `1.5e-7` (shortest round trip). */
function floatText(x) {
    if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
    const sign = x < 0 ? '-' : '';
    const [mantissa, exponent] = Math.abs(x).toExponential().split('e');
    const digits = mantissa.replace('.', '');
    const length = digits.length;
    const kk = Number(exponent) + 1; // 10^(kk-1) <= |x| < 10^kk
    if (length <= kk && kk <= 16) return `${sign}${digits}${'0'.repeat(kk - length)}.0`;
    if (0 < kk && kk <= 16) return `${sign}${digits.slice(0, kk)}.${digits.slice(kk)}`;
    if (-5 < kk && kk <= 0) return `${sign}0.${'0'.repeat(-kk)}${digits}`;
    const fraction = length === 1 ? '' : `.${digits.slice(1)}`;
    return `${sign}${digits[0]}${fraction}e${kk > 0 ? '+' : ''}${kk - 1}`;
}

/** A number as serde_json prints it: integers as they are, floats as `floatText`. */
function numberText({ value, integer }) {
    return integer === null ? floatText(value) : String(integer);
}

/** Compares strings by code point, the byte order of their UTF-8 (serde_json's map order). */
function byCodePoint(a, b) {
    const [x, y] = [Array.from(a), Array.from(b)];
    for (let i = 0; i < Math.min(x.length, y.length); i++) {
        const d = x[i].codePointAt(0) - y[i].codePointAt(0);
        if (d !== 0) return d;
    }
    return x.length - y.length;
}

/** `value` (parsed by `parseJson`) as compact JSON the way serde_json prints it: keys sorted. */
function jsonText(value) {
    if (value instanceof JsonNumber) return numberText(value);
    if (Array.isArray(value)) return `[${value.map(jsonText).join(',')}]`;
    if (value !== null && typeof value === 'object') {
        const keys = Object.keys(value).sort(byCodePoint);
        return `{${keys.map((k) => `${JSON.stringify(k)}:${jsonText(value[k])}`).join(',')}}`;
    }
    return JSON.stringify(value);
}

// ---- the decision (as in plugins/payment/src/decision.rs) ---------------------------------

/** Masks a card number: every character but the last four becomes `*`; four or fewer, all. */
function maskCard(number) {
    const chars = Array.from(number);
    const keep = chars.length > 4 ? 4 : 0;
    return chars.map((c, i) => (i < chars.length - keep ? '*' : c)).join('');
}

/** A payment id below 100000 from the order id (64-bit FNV-1a), so redelivery repeats it. */
function paymentId(orderId) {
    let hash = 0xcbf29ce484222325n;
    for (const byte of utf8.encode(orderId)) {
        hash = ((hash ^ BigInt(byte)) * 0x100000001b3n) & 0xffffffffffffffffn;
    }
    return String(hash % 100000n);
}

const isObject = (v) =>
    v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof JsonNumber);

/** The member `key` of a parsed JSON object, `null` when absent (like serde_json's `get`). */
const member = (object, key) => (Object.hasOwn(object, key) ? object[key] : null);

/** The workshop's checks (a card number starting with 4 pays), then the configured rules. */
function check(order, rules) {
    const failed = (remarks, maskedCard = null) => ({ status: 'FAILED', remarks, maskedCard });
    const card = member(order, 'creditCard');
    if (card === null) return failed('Missing credit card details');
    if (!isObject(card)) return failed('Credit card details are not an object');
    const number = member(card, 'number');
    if (typeof number !== 'string' || number === '') return failed('Credit card has no number');
    const masked = maskCard(number);
    if (!number.startsWith('4')) return failed(`Invalid Credit Card: ${masked}`, masked);
    const total = member(order, 'total');
    const cents = totalCents(total);
    if (cents === null) return failed(`Invalid total: ${jsonText(total)}`, masked);
    if (rules.maxTotal !== null && cents > rules.maxTotal) {
        const [max, actual] = [toText(rules.maxTotal), toText(cents)];
        return failed(`Rule max_total (${max}) exceeded: total ${actual}`, masked);
    }
    const expiration = jsonText(member(card, 'expiration'));
    const nameOnCard = jsonText(member(card, 'nameOnCard'));
    const shownNumber = JSON.stringify(masked);
    const shown = `{"number":${shownNumber},"expiration":${expiration},"nameOnCard":${nameOnCard}}`;
    const name = typeof member(order, 'name') === 'string' ? order.name : 'unknown customer';
    return {
        status: 'COMPLETED',
        remarks: `Payment of ${toText(cents)} succeeded for ${name} CC details: ${shown}`,
        maskedCard: masked,
    };
}

/** Decides the payment of `bytes` (an order as JSON); input that is not an order is `invalid`. */
function decide(bytes, rules) {
    const order = parseJson(bytes);
    const orderId = isObject(order) ? member(order, 'orderId') : null;
    if (typeof orderId !== 'string' || orderId === '') {
        throw new Failure('invalid', 'order has no orderId string');
    }
    const verdict = check(order, rules);
    return {
        result: {
            orderId,
            paymentId: paymentId(orderId),
            remarks: verdict.remarks,
            status: verdict.status,
            rules: rules.label,
        },
        maskedCard: verdict.maskedCard,
    };
}

// ---- glue (as in plugins/payment/src/handler.rs) ------------------------------------------

/** v1: no cap unless `max_total` sets one; v2: a cap of 100.00 unless `max_total` says. */
function rules() {
    const version = configGet('rules') ?? 'v1';
    if (version !== 'v1' && version !== 'v2') {
        throw new Failure('retry', `config rules is not v1 or v2: ${JSON.stringify(version)}`);
    }
    const label = `js-${version}`;
    const text = configGet('max_total');
    if (text === undefined || text === null) {
        return { maxTotal: version === 'v2' ? 10000n : null, label };
    }
    const maxTotal = parseMoney(text);
    if (maxTotal === null) {
        throw new Failure('retry', `config max_total is not an amount: ${JSON.stringify(text)}`);
    }
    return { maxTotal, label };
}

function configNumber(key) {
    const text = configGet(key);
    if (text === undefined || text === null) return null;
    const digits = rustTrim(text);
    // Rust's `u64::from_str`: an optional `+`, then digits, at most u64::MAX.
    if (!/^\+?[0-9]+$/.test(digits) || BigInt(digits) > 0xffffffffffffffffn) {
        throw new Failure('retry', `config ${key} is not a number: ${JSON.stringify(text)}`);
    }
    return Number(BigInt(digits));
}

/** The text of an import's error result, however the bindings wrap it. */
function errorText(e) {
    if (e && e.payload !== undefined) return String(e.payload);
    return String(e && e.message ? e.message : e);
}

/** Decides the payment of `order` and publishes the result. */
async function pay(order) {
    const current = rules();
    const delay = configNumber('processing_delay_ms') ?? 0;
    // The workshop's fake processing time; the host's timeout bounds it. setTimeout takes at
    // most 2^31 - 1 ms (a longer delay fires at once), so a long delay waits in steps.
    for (let left = delay; left > 0; left -= 2 ** 31 - 1) {
        const step = Math.min(left, 2 ** 31 - 1);
        await new Promise((resolve) => setTimeout(resolve, step));
    }
    const { result, maskedCard } = decide(order, current);
    const { orderId } = result;
    const card = maskedCard ?? 'none';
    const verdict = `${result.status} (card ${card}, rules ${result.rules}): ${result.remarks}`;
    log('info', `payment ${result.paymentId} of order ${orderId}: ${verdict}`);
    try {
        send({
            topic: configGet('payments_topic') ?? 'payments',
            key: utf8.encode(orderId),
            value: utf8.encode(JSON.stringify(result)),
            headers: [],
        });
    } catch (e) {
        throw new Failure('retry', `cannot publish payment of order ${orderId}: ${errorText(e)}`);
    }
    return result;
}

/** A failure thrown by this module becomes the handler's error result; anything else traps. */
function asResult(e) {
    if (e instanceof Failure) return { tag: e.tag, val: e.val };
    throw e;
}

const jsonResponse = (status, value) => ({
    status,
    headers: [['content-type', 'application/json']],
    body: utf8.encode(JSON.stringify(value)),
});

export const messageHandler = {
    async handle(delivery) {
        try {
            await pay(delivery.message.value);
        } catch (e) {
            throw asResult(e);
        }
    },
};

export const httpHandler = {
    async handle(request) {
        if (request.method !== 'POST') {
            return jsonResponse(405, { message: 'POST an order to pay for it', status: 405 });
        }
        try {
            return jsonResponse(200, await pay(request.body));
        } catch (e) {
            if (e instanceof Failure && e.tag === 'invalid') {
                return jsonResponse(400, { message: e.val, status: 400 });
            }
            throw asResult(e);
        }
    },
};
