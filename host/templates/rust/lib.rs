//! {{name}}: forwards each message to config `output_topic` (default `output`) and answers each
//! HTTP request with its body. Build with `bash build.sh`, test with
//! `eventhost test {{name}}.wasm cases.toml`, and the logic natively with `cargo test`.

use sdk::{Delivery, Failure, Host, HttpHandler, Message, MessageHandler, Request, Response};

pub struct Plugin;

impl MessageHandler for Plugin {
    fn on_message(host: &mut impl Host, delivery: Delivery) -> Result<(), Failure> {
        let message = delivery.message;
        if message.value.is_empty() {
            return Err(Failure::invalid("empty message"));
        }
        host.send(Message {
            topic: host.config_or("output_topic", "output"),
            key: message.key,
            value: message.value,
            headers: Vec::new(),
        })
        .map_err(Failure::Retry)
    }
}

impl HttpHandler for Plugin {
    fn on_request(_host: &mut impl Host, request: Request) -> Result<Response, Failure> {
        Ok(Response {
            status: 200,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: request.body,
        })
    }
}

sdk::export_plugin!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use sdk::fake::FakeHost;

    #[test]
    fn forwards_to_output_topic() {
        let mut host = FakeHost::new().with_config("output_topic", "elsewhere");
        let mut delivery = Delivery::default();
        delivery.message.value = b"hello".to_vec();
        Plugin::on_message(&mut host, delivery).expect("forwarded");
        assert_eq!(host.sent[0].topic, "elsewhere");
        assert_eq!(host.sent[0].value, b"hello");
    }
}
