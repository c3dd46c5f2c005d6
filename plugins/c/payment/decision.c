// The payment decision, as in plugins/payment/src/decision.rs: a pure function of the order
// and the rules, so a redelivered order gets the very same result.
#include "decision.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// ---- money (as in plugins/shop-data/src/money.rs) ------------------------------------------

void money_text(buffer *out, int64_t cents) {
    uint64_t abs = cents < 0 ? 0 - (uint64_t)cents : (uint64_t)cents;
    buf_fmt(out, "%s%llu.%02llu", cents < 0 ? "-" : "", (unsigned long long)(abs / 100),
            (unsigned long long)(abs % 100));
}

// The code point of the UTF-8 sequence at s[at] (well-formed) and its length.
static uint32_t decode(const char *s, size_t at, size_t *len) {
    const uint8_t *p = (const uint8_t *)s + at;
    if (p[0] < 0x80) return *len = 1, p[0];
    if ((p[0] & 0xe0) == 0xc0) return *len = 2, ((p[0] & 0x1fu) << 6) | (p[1] & 0x3fu);
    if ((p[0] & 0xf0) == 0xe0)
        return *len = 3, ((p[0] & 0x0fu) << 12) | ((p[1] & 0x3fu) << 6) | (p[2] & 0x3fu);
    return *len = 4, ((p[0] & 0x07u) << 18) | ((p[1] & 0x3fu) << 12) | ((p[2] & 0x3fu) << 6) |
                     (p[3] & 0x3fu);
}

// Unicode White_Space, which Rust's `str::trim` takes away.
static int white_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
           c == 0x205f || c == 0x3000;
}

void rust_trim(const char **s, size_t *len) {
    size_t start = 0, end = *len, n;
    while (start < end && white_space(decode(*s, start, &n))) start += n;
    while (end > start) {
        size_t back = end - 1;
        while (back > start && (((uint8_t)(*s)[back]) & 0xc0) == 0x80) back--;
        if (!white_space(decode(*s, back, &n))) break;
        end = back;
    }
    *s += start;
    *len = end - start;
}

static int all_digits(const char *s, size_t len) {
    for (size_t k = 0; k < len; k++)
        if (s[k] < '0' || s[k] > '9') return 0;
    return 1;
}

int money_parse(const char *text, size_t len, int64_t *cents) {
    rust_trim(&text, &len);
    const char *dot = memchr(text, '.', len);
    size_t whole = dot ? (size_t)(dot - text) : len;
    size_t frac = dot ? len - whole - 1 : 0;
    if (dot && frac == 0) return 0;
    if (whole == 0 || !all_digits(text, whole) || frac > 2 || !all_digits(dot + 1, frac))
        return 0;
    int64_t value = 0;
    for (size_t k = 0; k < whole; k++) {
        if (value > (INT64_MAX - (text[k] - '0')) / 10) return 0;
        value = value * 10 + (text[k] - '0');
    }
    int64_t fraction = 0;
    for (size_t k = 0; k < 2; k++) fraction = fraction * 10 + (k < frac ? dot[1 + k] - '0' : 0);
    if (value > (INT64_MAX - fraction) / 100) return 0;
    *cents = value * 100 + fraction;
    return 1;
}

// A JSON number in cents, rounded half away from zero like Rust's `f64::round`.
static int cents_of_number(double value, int64_t *cents) {
    double rounded = round(value * 100.0);
    if (!isfinite(value) || !(value >= 0) || !(rounded < 9223372036854775808.0)) return 0;
    *cents = (int64_t)rounded;
    return 1;
}

// A total given as a string ("21.45", as the cart sends it) or as a number.
static int total_cents(const json *total, int64_t *cents) {
    if (!total) return 0;
    if (total->kind == J_STRING) return money_parse(total->s, total->len, cents);
    if (total->kind == J_NUMBER) return cents_of_number(total->f, cents);
    return 0;
}

// ---- the decision ----------------------------------------------------------------------------

// Every character but the last four becomes `*`; four or fewer, all.
static char *mask_card(const char *number, size_t len) {
    size_t chars = 0, n;
    for (size_t at = 0; at < len; at += n, chars++) decode(number, at, &n);
    size_t keep = chars > 4 ? 4 : 0;
    buffer out = {0};
    buf_add(&out, "", 0);
    size_t index = 0;
    for (size_t at = 0; at < len; at += n, index++) {
        decode(number, at, &n);
        if (index < chars - keep) buf_add(&out, "*", 1);
        else buf_add(&out, number + at, n);
    }
    return out.data;
}

// A payment id below 100000 from the order id (64-bit FNV-1a), so redelivery repeats it.
static unsigned payment_id(const char *id, size_t len) {
    uint64_t hash = 0xcbf29ce484222325ull;
    for (size_t k = 0; k < len; k++) hash = (hash ^ (uint8_t)id[k]) * 0x100000001b3ull;
    return (unsigned)(hash % 100000);
}

static char *text_of(const buffer *b) { return b->data ? b->data : calloc(1, 1); }

// The workshop's checks (a card number starting with 4 pays), then the configured rules.
static void check(const json *order, const rules *rules, decision *d) {
    buffer remarks = {0};
    d->completed = 0;
    d->masked_card = NULL;
    const json *card = json_get(order, "creditCard");
    if (!card || card->kind == J_NULL) {
        buf_str(&remarks, "Missing credit card details");
    } else if (card->kind != J_OBJECT) {
        buf_str(&remarks, "Credit card details are not an object");
    } else {
        const json *number = json_get(card, "number");
        int64_t cents;
        if (!number || number->kind != J_STRING || number->len == 0) {
            buf_str(&remarks, "Credit card has no number");
        } else if ((d->masked_card = mask_card(number->s, number->len)), number->s[0] != '4') {
            buf_str(&remarks, "Invalid Credit Card: ");
            buf_str(&remarks, d->masked_card);
        } else if (!total_cents(json_get(order, "total"), &cents)) {
            buf_str(&remarks, "Invalid total: ");
            json_print(&remarks, json_get(order, "total"));
        } else if (rules->has_max_total && cents > rules->max_total) {
            buf_str(&remarks, "Rule max_total (");
            money_text(&remarks, rules->max_total);
            buf_str(&remarks, ") exceeded: total ");
            money_text(&remarks, cents);
        } else {
            const json *name = json_get(order, "name");
            buf_str(&remarks, "Payment of ");
            money_text(&remarks, cents);
            buf_str(&remarks, " succeeded for ");
            if (name && name->kind == J_STRING) buf_add(&remarks, name->s, name->len);
            else buf_str(&remarks, "unknown customer");
            buf_str(&remarks, " CC details: {\"number\":");
            json_print_string(&remarks, d->masked_card, strlen(d->masked_card));
            buf_str(&remarks, ",\"expiration\":");
            json_print(&remarks, json_get(card, "expiration"));
            buf_str(&remarks, ",\"nameOnCard\":");
            json_print(&remarks, json_get(card, "nameOnCard"));
            buf_str(&remarks, "}");
            d->completed = 1;
        }
    }
    d->remarks = text_of(&remarks);
}

const char *decide(const uint8_t *order_bytes, size_t len, const rules *rules, decision *d) {
    json *order = json_parse(order_bytes, len);
    if (!order) return "order is not JSON: refused by the parser";
    const json *id = json_get(order, "orderId");
    if (!id || id->kind != J_STRING || id->len == 0) return "order has no orderId string";
    d->order_id = id->s;
    d->order_id_len = id->len;
    d->payment_id = payment_id(id->s, id->len);
    check(order, rules, d);
    return NULL;
}
