// JSON read and printed the way serde_json 1.x does it in the Rust payment plugin: strict UTF-8,
// a nesting limit of 128, the last of repeated keys, numbers kept as 64-bit integers when they
// fit and otherwise scaled like serde_json (without `float_roundtrip`), objects printed with
// sorted keys and floats in their shortest form. Values are never freed: an instance handles
// one input and is then dropped whole.
#ifndef PAYMENT_JSON_H
#define PAYMENT_JSON_H

#include <stddef.h>
#include <stdint.h>

typedef enum { J_NULL, J_BOOL, J_NUMBER, J_STRING, J_ARRAY, J_OBJECT } json_kind;

typedef struct json json;

struct json {
    json_kind kind;
    int boolean;
    // A number: an integer serde_json keeps (`is_int`, in `u` or, when `negative`, in `i`),
    // or a float `f`. `f` holds the value either way.
    int is_int, negative;
    uint64_t u;
    int64_t i;
    double f;
    // A string (UTF-8, not NUL-terminated).
    char *s;
    size_t len;
    // An array (`items`) or an object (`keys` with `items`), `count` entries.
    json **items;
    json **keys;
    size_t count;
};

// A growable byte buffer.
typedef struct {
    char *data;
    size_t len, cap;
} buffer;

void buf_add(buffer *b, const char *data, size_t len);
void buf_str(buffer *b, const char *text);
void buf_fmt(buffer *b, const char *format, ...);

// Parses `len` bytes; NULL when serde_json would refuse them.
json *json_parse(const uint8_t *data, size_t len);
// The member `key` of an object; NULL when absent or when `object` is no object.
json *json_get(const json *object, const char *key);
// Appends `value` as compact JSON, as serde_json prints a `Value`.
void json_print(buffer *out, const json *value);
// Appends `len` bytes of UTF-8 as a JSON string literal, escaped as serde_json does.
void json_print_string(buffer *out, const char *s, size_t len);

#endif
