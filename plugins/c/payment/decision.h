// The payment decision (decision.c) and the money helpers it shares with the glue (payment.c).
#ifndef PAYMENT_DECISION_H
#define PAYMENT_DECISION_H

#include <stddef.h>
#include <stdint.h>

#include "json.h"

// The rules from the plugin's config.
typedef struct {
    int has_max_total;
    int64_t max_total;  // cents; orders above it fail
    const char *label;  // reported in every result, e.g. "c-v1"
} rules;

// The result of an order: `{orderId, paymentId, remarks, status, rules}`, and the masked card
// number for the log (NULL when the order has none).
typedef struct {
    const char *order_id;
    size_t order_id_len;
    unsigned payment_id;
    int completed;
    char *remarks;
    char *masked_card;
} decision;

// Decides the payment of an order (JSON). Returns NULL, or why the input is not an order with
// an `orderId` (the input is then `invalid`: there is nobody to send a result to).
const char *decide(const uint8_t *order, size_t len, const rules *rules, decision *d);

// Cents as text with two decimals, e.g. 750 -> "7.50".
void money_text(buffer *out, int64_t cents);
// Parses a non-negative amount with at most two decimals into cents; 0 when it is none.
int money_parse(const char *text, size_t len, int64_t *cents);
// Narrows `s` to its text without leading and trailing Unicode White_Space (Rust's `trim`).
void rust_trim(const char **s, size_t *len);

#endif
