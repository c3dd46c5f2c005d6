// JSON as serde_json reads and prints it (see json.h).
#include "json.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 128

// ---- buffers -----------------------------------------------------------------------------

void buf_add(buffer *b, const char *data, size_t len) {
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + len + 1) cap *= 2;
        b->data = realloc(b->data, cap);
        if (!b->data) abort();
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void buf_str(buffer *b, const char *text) { buf_add(b, text, strlen(text)); }

void buf_fmt(buffer *b, const char *format, ...) {
    char small[128];
    va_list args;
    va_start(args, format);
    int n = vsnprintf(small, sizeof small, format, args);
    va_end(args);
    if (n < (int)sizeof small) {
        buf_add(b, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) abort();
    va_start(args, format);
    vsnprintf(big, (size_t)n + 1, format, args);
    va_end(args);
    buf_add(b, big, (size_t)n);
    free(big);
}

// ---- UTF-8 -------------------------------------------------------------------------------

// Length of the well-formed UTF-8 sequence at `p` (at most `n` bytes), 0 when ill-formed:
// overlong forms, surrogates and code points past U+10FFFF are refused, as by Rust's `str`.
static size_t utf8_sequence(const uint8_t *p, size_t n) {
    uint8_t c = p[0];
    if (c < 0x80) return 1;
    size_t len;
    uint32_t min, cp;
    if ((c & 0xe0) == 0xc0) len = 2, min = 0x80, cp = c & 0x1f;
    else if ((c & 0xf0) == 0xe0) len = 3, min = 0x800, cp = c & 0x0f;
    else if ((c & 0xf8) == 0xf0) len = 4, min = 0x10000, cp = c & 0x07;
    else return 0;
    if (n < len) return 0;
    for (size_t k = 1; k < len; k++) {
        if ((p[k] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (p[k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

static int valid_utf8(const uint8_t *p, size_t n) {
    for (size_t at = 0; at < n;) {
        size_t len = utf8_sequence(p + at, n - at);
        if (!len) return 0;
        at += len;
    }
    return 1;
}

static void utf8_encode(buffer *b, uint32_t cp) {
    char out[4];
    size_t len;
    if (cp < 0x80) out[0] = (char)cp, len = 1;
    else if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        len = 2;
    } else if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        len = 3;
    } else {
        out[0] = (char)(0xf0 | (cp >> 18));
        out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[3] = (char)(0x80 | (cp & 0x3f));
        len = 4;
    }
    buf_add(b, out, len);
}

// ---- numbers -----------------------------------------------------------------------------

// 10^n for 0 <= n <= 308, correctly rounded (strtod rounds correctly, as the literals of
// serde_json's table are).
static double pow10_of(int n) {
    static double table[309];
    static int ready = 0;
    if (!ready) {
        char text[8];
        for (int k = 0; k <= 308; k++) {
            snprintf(text, sizeof text, "1e%d", k);
            table[k] = strtod(text, NULL);
        }
        ready = 1;
    }
    return table[n];
}

static int is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

// Reads a number already checked against the JSON grammar, as serde_json 1.x does without its
// `float_roundtrip` feature: digits gathered into a u64 until one would overflow (later ones
// dropped), then scaled by a power of ten. Returns 0 when serde_json refuses it as out of range.
static int read_number(const char *p, const char *end, json *out) {
    int positive = *p != '-';
    if (!positive) p++;
    uint64_t significand = 0;
    int full = 0;
    int64_t exponent = 0;
    int is_float = 0;

    const char *start = p;
    size_t taken = 0;
    while (p < end && is_digit((uint8_t)*p)) {
        uint64_t d = (uint64_t)(*p - '0');
        if (!full && significand <= (UINT64_MAX - d) / 10) {
            significand = significand * 10 + d;
            taken++;
        } else {
            full = 1;
        }
        p++;
    }
    exponent = (int64_t)(p - start) - (int64_t)taken;
    is_float = full;
    if (p < end && *p == '.') {
        p++;
        full = 0;  // serde_json tries the fraction digit by digit again
        while (p < end && is_digit((uint8_t)*p)) {
            uint64_t d = (uint64_t)(*p - '0');
            if (!full && significand <= (UINT64_MAX - d) / 10) {
                significand = significand * 10 + d;
                exponent--;
            } else {
                full = 1;
            }
            p++;
        }
        is_float = 1;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        int negative = *p == '-';
        if (*p == '-' || *p == '+') p++;
        int64_t exp = 0;
        for (; p < end && is_digit((uint8_t)*p); p++) {
            exp = exp * 10 + (*p - '0');
            if (exp > INT32_MAX) {
                if (significand != 0 && !negative) return 0;
                out->kind = J_NUMBER;
                out->f = positive ? 0.0 : -0.0;
                return 1;
            }
        }
        int64_t sum = negative ? exponent - exp : exponent + exp;
        exponent = sum > INT32_MAX ? INT32_MAX : sum < INT32_MIN ? INT32_MIN : sum;
        is_float = 1;
    }
    out->kind = J_NUMBER;
    if (!is_float) {
        if (positive) {
            out->is_int = 1, out->u = significand, out->f = (double)significand;
            return 1;
        }
        if (significand != 0 && significand <= (uint64_t)INT64_MAX + 1) {
            out->is_int = 1, out->negative = 1;
            out->i = (int64_t)(0 - significand);
            out->f = (double)out->i;
            return 1;
        }
        out->f = -(double)significand;  // -0, or below i64::MIN: a float
        return 1;
    }
    double f = (double)significand;
    for (;;) {
        int64_t power = exponent < 0 ? -exponent : exponent;
        if (power <= 308) {
            if (exponent >= 0) {
                f *= pow10_of((int)power);
                if (isinf(f)) return 0;
            } else {
                f /= pow10_of((int)power);
            }
            break;
        }
        if (f == 0) break;
        if (exponent >= 0) return 0;
        f /= 1e308;
        exponent += 308;
    }
    out->f = positive ? f : -f;
    return 1;
}

// ---- parsing -----------------------------------------------------------------------------

typedef struct {
    const uint8_t *p, *end;
    int depth;
} parser;

static json *new_value(json_kind kind) {
    json *v = calloc(1, sizeof *v);
    if (!v) abort();
    v->kind = kind;
    return v;
}

static void skip_space(parser *ps) {
    while (ps->p < ps->end &&
           (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static int literal(parser *ps, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) return 0;
    ps->p += n;
    return 1;
}

static int hex4(parser *ps, uint32_t *out) {
    if (ps->end - ps->p < 4) return 0;
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        uint8_t c = *ps->p++;
        v <<= 4;
        if (c >= '0' && c <= '9') v |= c - '0';
        else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
        else return 0;
    }
    *out = v;
    return 1;
}

// A string after its opening quote; escapes decoded, lone surrogates refused.
static json *parse_string(parser *ps) {
    buffer b = {0};
    buf_add(&b, "", 0);
    for (;;) {
        if (ps->p >= ps->end) return NULL;
        uint8_t c = *ps->p++;
        if (c == '"') break;
        if (c < 0x20) return NULL;
        if (c != '\\') {
            buf_add(&b, (const char *)&c, 1);
            continue;
        }
        if (ps->p >= ps->end) return NULL;
        uint8_t e = *ps->p++;
        switch (e) {
        case '"': buf_add(&b, "\"", 1); break;
        case '\\': buf_add(&b, "\\", 1); break;
        case '/': buf_add(&b, "/", 1); break;
        case 'b': buf_add(&b, "\b", 1); break;
        case 'f': buf_add(&b, "\f", 1); break;
        case 'n': buf_add(&b, "\n", 1); break;
        case 'r': buf_add(&b, "\r", 1); break;
        case 't': buf_add(&b, "\t", 1); break;
        case 'u': {
            uint32_t cp;
            if (!hex4(ps, &cp)) return NULL;
            if (cp >= 0xdc00 && cp <= 0xdfff) return NULL;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                uint32_t low;
                if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u') return NULL;
                ps->p += 2;
                if (!hex4(ps, &low) || low < 0xdc00 || low > 0xdfff) return NULL;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
            }
            utf8_encode(&b, cp);
            break;
        }
        default: return NULL;
        }
    }
    json *v = new_value(J_STRING);
    v->s = b.data;
    v->len = b.len;
    return v;
}

static json *parse_value(parser *ps);

static void push(json *container, json *key, json *item) {
    if (container->kind == J_OBJECT) {
        // The last of repeated keys wins, as serde_json's map inserts it.
        for (size_t k = 0; k < container->count; k++) {
            json *known = container->keys[k];
            if (known->len == key->len && memcmp(known->s, key->s, key->len) == 0) {
                container->items[k] = item;
                return;
            }
        }
    }
    size_t n = container->count + 1;
    container->items = realloc(container->items, n * sizeof(json *));
    if (!container->items) abort();
    container->items[n - 1] = item;
    if (container->kind == J_OBJECT) {
        container->keys = realloc(container->keys, n * sizeof(json *));
        if (!container->keys) abort();
        container->keys[n - 1] = key;
    }
    container->count = n;
}

static json *parse_container(parser *ps, json_kind kind, uint8_t close) {
    if (++ps->depth >= MAX_DEPTH) return NULL;
    json *v = new_value(kind);
    skip_space(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        ps->depth--;
        return v;
    }
    for (;;) {
        json *key = NULL;
        skip_space(ps);
        if (kind == J_OBJECT) {
            if (ps->p >= ps->end || *ps->p != '"') return NULL;
            ps->p++;
            if (!(key = parse_string(ps))) return NULL;
            skip_space(ps);
            if (ps->p >= ps->end || *ps->p != ':') return NULL;
            ps->p++;
        }
        json *item = parse_value(ps);
        if (!item) return NULL;
        push(v, key, item);
        skip_space(ps);
        if (ps->p >= ps->end) return NULL;
        uint8_t c = *ps->p++;
        if (c == close) break;
        if (c != ',') return NULL;
    }
    ps->depth--;
    return v;
}

static json *parse_number(parser *ps) {
    const uint8_t *start = ps->p;
    if (ps->p < ps->end && *ps->p == '-') ps->p++;
    if (ps->p >= ps->end || !is_digit(*ps->p)) return NULL;
    if (*ps->p == '0') ps->p++;
    else while (ps->p < ps->end && is_digit(*ps->p)) ps->p++;
    if (ps->p < ps->end && *ps->p == '.') {
        ps->p++;
        if (ps->p >= ps->end || !is_digit(*ps->p)) return NULL;
        while (ps->p < ps->end && is_digit(*ps->p)) ps->p++;
    }
    if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
        ps->p++;
        if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-')) ps->p++;
        if (ps->p >= ps->end || !is_digit(*ps->p)) return NULL;
        while (ps->p < ps->end && is_digit(*ps->p)) ps->p++;
    }
    json *v = new_value(J_NUMBER);
    if (!read_number((const char *)start, (const char *)ps->p, v)) return NULL;
    return v;
}

static json *parse_value(parser *ps) {
    skip_space(ps);
    if (ps->p >= ps->end) return NULL;
    switch (*ps->p) {
    case '{': ps->p++; return parse_container(ps, J_OBJECT, '}');
    case '[': ps->p++; return parse_container(ps, J_ARRAY, ']');
    case '"': ps->p++; return parse_string(ps);
    case 'n': return literal(ps, "null") ? new_value(J_NULL) : NULL;
    case 't':
    case 'f': {
        int truth = *ps->p == 't';
        if (!literal(ps, truth ? "true" : "false")) return NULL;
        json *v = new_value(J_BOOL);
        v->boolean = truth;
        return v;
    }
    default: return parse_number(ps);
    }
}

json *json_parse(const uint8_t *data, size_t len) {
    // A byte order mark is no JSON whitespace: it is refused below, as by serde_json.
    if (!valid_utf8(data, len)) return NULL;
    parser ps = {data, data + len, 0};
    json *v = parse_value(&ps);
    if (!v) return NULL;
    skip_space(&ps);
    return ps.p == ps.end ? v : NULL;
}

json *json_get(const json *object, const char *key) {
    if (!object || object->kind != J_OBJECT) return NULL;
    size_t n = strlen(key);
    for (size_t k = 0; k < object->count; k++) {
        const json *known = object->keys[k];
        if (known->len == n && memcmp(known->s, key, n) == 0) return object->items[k];
    }
    return NULL;
}

// ---- printing ----------------------------------------------------------------------------

void json_print_string(buffer *out, const char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    buf_add(out, "\"", 1);
    size_t run = 0;  // start of the bytes not yet copied
    for (size_t k = 0; k < len; k++) {
        uint8_t c = (uint8_t)s[k];
        const char *escape = NULL;
        char unicode[7];
        switch (c) {
        case '"': escape = "\\\""; break;
        case '\\': escape = "\\\\"; break;
        case '\b': escape = "\\b"; break;
        case '\f': escape = "\\f"; break;
        case '\n': escape = "\\n"; break;
        case '\r': escape = "\\r"; break;
        case '\t': escape = "\\t"; break;
        default:
            if (c < 0x20) {
                memcpy(unicode, "\\u00", 4);
                unicode[4] = hex[c >> 4];
                unicode[5] = hex[c & 15];
                unicode[6] = '\0';
                escape = unicode;
            }
        }
        if (escape) {
            buf_add(out, s + run, k - run);
            buf_str(out, escape);
            run = k + 1;
        }
    }
    buf_add(out, s + run, len - run);
    buf_add(out, "\"", 1);
}

// A float as serde_json prints it: `4.0`, `0.001`, `1e+16`, `1.5e-7`, with the fewest digits
// that read back as the same float.
static void print_float(buffer *out, double x) {
    if (x == 0) {
        buf_str(out, signbit(x) ? "-0.0" : "0.0");
        return;
    }
    if (x < 0) buf_add(out, "-", 1);
    double a = fabs(x);
    char text[40];
    for (int precision = 1; precision <= 17; precision++) {
        snprintf(text, sizeof text, "%.*e", precision - 1, a);
        if (strtod(text, NULL) == a) break;
    }
    // text is d[.ddd]e±XX: gather the digits without trailing zeros, and the exponent.
    char digits[20];
    int length = 0;
    char *e = strchr(text, 'e');
    for (char *c = text; c < e; c++)
        if (is_digit((uint8_t)*c)) digits[length++] = *c;
    while (length > 1 && digits[length - 1] == '0') length--;
    digits[length] = '\0';
    int kk = atoi(e + 1) + 1;  // 10^(kk-1) <= |x| < 10^kk
    if (length <= kk && kk <= 16) {
        buf_add(out, digits, (size_t)length);
        for (int k = length; k < kk; k++) buf_add(out, "0", 1);
        buf_str(out, ".0");
    } else if (0 < kk && kk <= 16) {
        buf_add(out, digits, (size_t)kk);
        buf_add(out, ".", 1);
        buf_add(out, digits + kk, (size_t)(length - kk));
    } else if (-5 < kk && kk <= 0) {
        buf_str(out, "0.");
        for (int k = 0; k < -kk; k++) buf_add(out, "0", 1);
        buf_add(out, digits, (size_t)length);
    } else {
        buf_add(out, digits, 1);
        if (length > 1) {
            buf_add(out, ".", 1);
            buf_add(out, digits + 1, (size_t)(length - 1));
        }
        buf_fmt(out, "e%s%d", kk > 0 ? "+" : "", kk - 1);
    }
}

static int key_order(const void *a, const void *b) {
    const json *x = **(json *const *const *)a, *y = **(json *const *const *)b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

void json_print(buffer *out, const json *value) {
    if (!value) {
        buf_str(out, "null");
        return;
    }
    switch (value->kind) {
    case J_NULL: buf_str(out, "null"); break;
    case J_BOOL: buf_str(out, value->boolean ? "true" : "false"); break;
    case J_STRING: json_print_string(out, value->s, value->len); break;
    case J_NUMBER:
        if (!value->is_int) print_float(out, value->f);
        else if (value->negative) buf_fmt(out, "%lld", (long long)value->i);
        else buf_fmt(out, "%llu", (unsigned long long)value->u);
        break;
    case J_ARRAY:
        buf_add(out, "[", 1);
        for (size_t k = 0; k < value->count; k++) {
            if (k) buf_add(out, ",", 1);
            json_print(out, value->items[k]);
        }
        buf_add(out, "]", 1);
        break;
    case J_OBJECT: {
        // serde_json's map keeps keys in byte order; sort the entries by key.
        json ***order = malloc((value->count + 1) * sizeof *order);
        if (!order) abort();
        for (size_t k = 0; k < value->count; k++) order[k] = &value->keys[k];
        qsort(order, value->count, sizeof *order, key_order);
        buf_add(out, "{", 1);
        for (size_t k = 0; k < value->count; k++) {
            size_t at = (size_t)(order[k] - value->keys);
            if (k) buf_add(out, ",", 1);
            json_print_string(out, value->keys[at]->s, value->keys[at]->len);
            buf_add(out, ":", 1);
            json_print(out, value->items[at]);
        }
        buf_add(out, "}", 1);
        free(order);
        break;
    }
    }
}
