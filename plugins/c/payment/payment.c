// Payment plugin in C (world `plugin`, bindings from `wit-bindgen c`): the rules of the Rust
// plugin in plugins/payment, so each order gets the same decision and remarks from either.
//
// Consumes orders and answers `POST /api/payment` with an order as the body. Each order gives
// exactly one result on topic `payments` (config `payments_topic`), keyed by order id:
// `{orderId, paymentId, remarks, status, rules}` with `rules: "c-v1"` (or "c-v2").
//
// Config: `rules` ("v1" or "v2"; v2 caps the total at 100.00 unless `max_total` says
// otherwise), `max_total` (e.g. "100.00"), `payments_topic` (default `payments`),
// `processing_delay_ms` (default 0). A bad config value is a `retry` failure (the deployment's
// fault, not the order's); input that is not an order with an `orderId` is `invalid`.
//
// Memory is not freed: an instance handles one input and is then dropped whole.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "decision.h"
#include "plugin.h"

typedef eventhost_plugin_types_failure_t failure;

// Sets `f` to a failure of `tag` with the text of `b`; returns false, for `return fail(..)`.
static bool fail(failure *f, uint8_t tag, const buffer *b) {
    f->tag = tag;
    plugin_string_dup_n(&f->val.invalid, b->data ? b->data : "", b->len);
    return false;
}

// The value of config `key` as a NUL-terminated string; NULL when unset.
static char *config(const char *key) {
    plugin_string_t name, value;
    plugin_string_set(&name, key);
    if (!eventhost_plugin_config_get(&name, &value)) return NULL;
    char *text = malloc(value.len + 1);
    if (!text) abort();
    memcpy(text, value.ptr, value.len);
    text[value.len] = '\0';
    return text;
}

// "config KEY is not ...: TEXT" with TEXT quoted as JSON, as a retry.
static bool config_fault(failure *f, const char *key, const char *what, const char *text) {
    buffer b = {0};
    buf_fmt(&b, "config %s is not %s: ", key, what);
    json_print_string(&b, text, strlen(text));
    return fail(f, EVENTHOST_PLUGIN_TYPES_FAILURE_RETRY, &b);
}

// v1: no cap unless `max_total` sets one; v2: a cap of 100.00 unless `max_total` says.
static bool read_rules(rules *r, failure *f) {
    const char *version = config("rules");
    if (!version) version = "v1";
    int v2 = strcmp(version, "v2") == 0;
    if (!v2 && strcmp(version, "v1") != 0) return config_fault(f, "rules", "v1 or v2", version);
    r->label = v2 ? "c-v2" : "c-v1";
    r->has_max_total = v2;
    r->max_total = 100 * 100;
    char *text = config("max_total");
    if (text) {
        if (!money_parse(text, strlen(text), &r->max_total))
            return config_fault(f, "max_total", "an amount", text);
        r->has_max_total = 1;
    }
    return true;
}

// A u64 as Rust's `str::parse` reads it: an optional `+`, then digits.
static bool config_number(const char *key, uint64_t *n, failure *f) {
    *n = 0;
    char *text = config(key);
    if (!text) return true;
    const char *digits = text;
    size_t len = strlen(text);
    rust_trim(&digits, &len);
    if (len && *digits == '+') digits++, len--;
    if (!len) return config_fault(f, key, "a number", text);
    for (size_t k = 0; k < len; k++) {
        uint64_t d = (uint64_t)(digits[k] - '0');
        if (digits[k] < '0' || digits[k] > '9' || *n > (UINT64_MAX - d) / 10)
            return config_fault(f, key, "a number", text);
        *n = *n * 10 + d;
    }
    return true;
}

// Decides the payment of `order`, publishes the result and sets `json` to it.
static bool pay(const uint8_t *order, size_t len, buffer *json, failure *f) {
    rules r;
    uint64_t delay;
    if (!read_rules(&r, f) || !config_number("processing_delay_ms", &delay, f)) return false;
    if (delay > 0) {
        // The workshop's fake processing time; the host's timeout bounds it.
        struct timespec wait = {(time_t)(delay / 1000), (long)(delay % 1000) * 1000000L};
        nanosleep(&wait, NULL);
    }
    decision d;
    const char *invalid = decide(order, len, &r, &d);
    if (invalid) {
        buffer b = {0};
        buf_str(&b, invalid);
        return fail(f, EVENTHOST_PLUGIN_TYPES_FAILURE_INVALID, &b);
    }
    char payment_id[16];
    snprintf(payment_id, sizeof payment_id, "%u", d.payment_id);
    const char *status = d.completed ? "COMPLETED" : "FAILED";

    buffer line = {0};
    buf_fmt(&line, "payment %s of order ", payment_id);
    buf_add(&line, d.order_id, d.order_id_len);
    buf_fmt(&line, ": %s (card %s, rules %s): %s", status,
            d.masked_card ? d.masked_card : "none", r.label, d.remarks);
    plugin_string_t msg = {(uint8_t *)line.data, line.len};
    eventhost_plugin_log_log(EVENTHOST_PLUGIN_LOG_LEVEL_INFO, &msg);

    buf_str(json, "{\"orderId\":");
    json_print_string(json, d.order_id, d.order_id_len);
    buf_str(json, ",\"paymentId\":");
    json_print_string(json, payment_id, strlen(payment_id));
    buf_str(json, ",\"remarks\":");
    json_print_string(json, d.remarks, strlen(d.remarks));
    buf_fmt(json, ",\"status\":\"%s\",\"rules\":\"%s\"}", status, r.label);

    char *topic = config("payments_topic");
    eventhost_plugin_outbox_message_t out = {0};
    plugin_string_set(&out.topic, topic ? topic : "payments");
    out.key.is_some = true;
    out.key.val = (plugin_list_u8_t){(uint8_t *)d.order_id, d.order_id_len};
    out.value = (plugin_list_u8_t){(uint8_t *)json->data, json->len};
    plugin_string_t refused;
    if (!eventhost_plugin_outbox_send(&out, &refused)) {
        buffer b = {0};
        buf_str(&b, "cannot publish payment of order ");
        buf_add(&b, d.order_id, d.order_id_len);
        buf_str(&b, ": ");
        buf_add(&b, (const char *)refused.ptr, refused.len);
        return fail(f, EVENTHOST_PLUGIN_TYPES_FAILURE_RETRY, &b);
    }
    return true;
}

bool exports_eventhost_plugin_message_handler_handle(
    exports_eventhost_plugin_message_handler_delivery_t *delivery, failure *err) {
    buffer json = {0};
    return pay(delivery->message.value.ptr, delivery->message.value.len, &json, err);
}

// A JSON response; `body` is handed over to the bindings, which free it after the call.
static void respond(exports_eventhost_plugin_http_handler_http_response_t *ret, uint16_t status,
                    buffer *body) {
    ret->status = status;
    ret->headers.len = 1;
    ret->headers.ptr = malloc(sizeof *ret->headers.ptr);
    if (!ret->headers.ptr) abort();
    plugin_string_dup(&ret->headers.ptr[0].f0, "content-type");
    plugin_string_dup(&ret->headers.ptr[0].f1, "application/json");
    if (!body->data) buf_add(body, "", 0);
    ret->body = (plugin_list_u8_t){(uint8_t *)body->data, body->len};
}

// `{"message": .., "status": ..}`, the shape of the host's own errors.
static void respond_message(exports_eventhost_plugin_http_handler_http_response_t *ret,
                            uint16_t status, const char *text, size_t len) {
    buffer body = {0};
    buf_str(&body, "{\"message\":");
    json_print_string(&body, text, len);
    buf_fmt(&body, ",\"status\":%u}", status);
    respond(ret, status, &body);
}

bool exports_eventhost_plugin_http_handler_handle(
    exports_eventhost_plugin_http_handler_http_request_t *request,
    exports_eventhost_plugin_http_handler_http_response_t *ret, failure *err) {
    static const char post_only[] = "POST an order to pay for it";
    if (request->method.len != 4 || memcmp(request->method.ptr, "POST", 4) != 0) {
        respond_message(ret, 405, post_only, strlen(post_only));
        return true;
    }
    buffer json = {0};
    if (pay(request->body.ptr, request->body.len, &json, err)) {
        respond(ret, 200, &json);
        return true;
    }
    if (err->tag == EVENTHOST_PLUGIN_TYPES_FAILURE_INVALID) {
        respond_message(ret, 400, (const char *)err->val.invalid.ptr, err->val.invalid.len);
        return true;
    }
    return false;
}
