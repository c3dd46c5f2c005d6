// {{name}}: forwards each message to config `output_topic` (default `output`) and answers each
// HTTP request with its body. Build with `bash build.sh` (the bindings, plugin.h and plugin.c,
// are generated into target/gen), test with `eventhost test {{name}}.wasm cases.toml`.
//
// The bindings free what a handler returns after the call, so returned strings are malloc'd.
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

bool exports_eventhost_plugin_message_handler_handle(
    exports_eventhost_plugin_message_handler_delivery_t *delivery,
    exports_eventhost_plugin_message_handler_failure_t *err) {
    eventhost_plugin_types_message_t *in = &delivery->message;
    if (in->value.len == 0) {
        err->tag = EVENTHOST_PLUGIN_TYPES_FAILURE_INVALID;
        plugin_string_dup(&err->val.invalid, "empty message");
        return false;
    }
    plugin_string_t name, topic;
    plugin_string_set(&name, "output_topic");
    if (!eventhost_plugin_config_get(&name, &topic)) plugin_string_set(&topic, "output");
    eventhost_plugin_outbox_message_t out = {0};
    out.topic = topic;
    out.key = in->key;
    out.value = in->value;
    plugin_string_t refused;
    if (!eventhost_plugin_outbox_send(&out, &refused)) {
        err->tag = EVENTHOST_PLUGIN_TYPES_FAILURE_RETRY;
        err->val.retry = refused;
        return false;
    }
    return true;
}

bool exports_eventhost_plugin_http_handler_handle(
    exports_eventhost_plugin_http_handler_http_request_t *request,
    exports_eventhost_plugin_http_handler_http_response_t *ret,
    exports_eventhost_plugin_http_handler_failure_t *err) {
    (void)err;
    ret->status = 200;
    ret->headers.len = 1;
    ret->headers.ptr = malloc(sizeof *ret->headers.ptr);
    if (!ret->headers.ptr) abort();
    plugin_string_dup(&ret->headers.ptr[0].f0, "content-type");
    plugin_string_dup(&ret->headers.ptr[0].f1, "text/plain");
    // The handler owns its arguments: the request body becomes the response body, uncopied.
    ret->body = request->body;
    request->body = (plugin_list_u8_t){0};
    return true;
}
