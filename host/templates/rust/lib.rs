//! {{name}}: forwards each message to config `output_topic` (default `output`) and answers each
//! HTTP request with its body. Build with `bash build.sh`, test with
//! `eventhost test {{name}}.wasm cases.toml`.

mod bindings {
    wit_bindgen::generate!({ path: "wit", world: "plugin" });
    use super::Plugin;
    export!(Plugin);
}

use bindings::eventhost::plugin::config;
use bindings::eventhost::plugin::outbox;
use bindings::eventhost::plugin::types::{Delivery, Failure, HttpRequest, HttpResponse, Message};
use bindings::exports::eventhost::plugin::{http_handler, message_handler};

struct Plugin;

impl message_handler::Guest for Plugin {
    fn handle(delivery: Delivery) -> Result<(), Failure> {
        let message = delivery.message;
        if message.value.is_empty() {
            return Err(Failure::Invalid("empty message".into()));
        }
        let topic = config::get("output_topic").unwrap_or_else(|| "output".into());
        outbox::send(&Message {
            topic,
            key: message.key,
            value: message.value,
            headers: Vec::new(),
        })
        .map_err(Failure::Retry)
    }
}

impl http_handler::Guest for Plugin {
    fn handle(request: HttpRequest) -> Result<HttpResponse, Failure> {
        Ok(HttpResponse {
            status: 200,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: request.body,
        })
    }
}
