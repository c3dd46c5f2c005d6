//! Message behaviours, picked by the value as text: `op` or `op:arg`.
//!
//! | value | does |
//! |---|---|
//! | `forward:<text>` | stores the value under `msg:<text>`, and sends `<text>` to config `forward_to` if set |
//! | `fail-until:<n>` | fails (retry) while `attempt` < n, then forwards `done:<n>` as above |
//! | `record:<text>` | stores `<text>` under `rec:<partition>:<offset, 12 digits>`, and sends it to `forward_to` if set |
//! | `put-then-fail:<key>` | stores the value under `<key>`, then fails (retry) |
//! | `count:<name>` | adds one to the counter under `count:<name>` and sends the new count to `forward_to` if set |
//! | `sleep:<ms>` | sleeps that long (a WASI wait), then forwards `slept:<ms>` as above |
//! | `invalid`, `retry` | fails with that failure |
//! | `trap`, `loop`, `alloc` | panics, spins forever, allocates until stopped |
//! | anything else, UTF-8 or not | fails as invalid |
//!
//! Forwarded messages keep the input's key and its application headers.

use sdk::{Delivery, Failure, Host, Message};

use crate::misbehave;

pub fn handle(host: &mut impl Host, delivery: &Delivery) -> Result<(), Failure> {
    let Ok(text) = std::str::from_utf8(&delivery.message.value) else {
        return Err(Failure::invalid("unknown message"));
    };
    let (op, arg) = text.split_once(':').unwrap_or((text, ""));
    match op {
        "forward" => forward(host, delivery, arg),
        "fail-until" => {
            let n: u32 = arg
                .parse()
                .map_err(|_| Failure::invalid(format!("fail-until needs a number, not {arg:?}")))?;
            if delivery.attempt < n {
                return Err(Failure::retry(format!(
                    "attempt {} < {n}",
                    delivery.attempt
                )));
            }
            forward(host, delivery, &format!("done:{n}"))
        }
        "record" => {
            let key = format!("rec:{}:{:012}", delivery.partition, delivery.offset);
            put(host, &key, arg.as_bytes())?;
            send_forward(host, delivery, arg)
        }
        "count" => {
            let key = format!("count:{arg}");
            let count = host
                .get(&key)
                .map(|v| String::from_utf8_lossy(&v).parse::<u64>().unwrap_or(0))
                .unwrap_or(0)
                + 1;
            put(host, &key, count.to_string().as_bytes())?;
            send_forward(host, delivery, &count.to_string())
        }
        "put-then-fail" => {
            put(host, arg, &delivery.message.value)?;
            Err(Failure::retry("after write"))
        }
        "sleep" => {
            let ms = arg
                .parse()
                .map_err(|_| Failure::invalid(format!("sleep needs a number, not {arg:?}")))?;
            std::thread::sleep(std::time::Duration::from_millis(ms));
            forward(host, delivery, &format!("slept:{ms}"))
        }
        "invalid" => Err(Failure::invalid("bad input")),
        "retry" => Err(Failure::retry("always")),
        "trap" => misbehave::trap(),
        "loop" => misbehave::spin(),
        "alloc" => misbehave::memory_bomb(),
        _ => Err(Failure::invalid("unknown message")),
    }
}

fn forward(host: &mut impl Host, delivery: &Delivery, text: &str) -> Result<(), Failure> {
    put(host, &format!("msg:{text}"), &delivery.message.value)?;
    send_forward(host, delivery, text)
}

/// Sends `text` to the topic in config `forward_to`, if there is one. The host's own
/// `eventhost-*` headers are left out: it sets them afresh on publish.
fn send_forward(host: &mut impl Host, delivery: &Delivery, text: &str) -> Result<(), Failure> {
    let Some(topic) = host.config("forward_to") else {
        return Ok(());
    };
    let headers = delivery
        .message
        .headers
        .iter()
        .filter(|(name, _)| !name.to_ascii_lowercase().starts_with("eventhost-"))
        .cloned()
        .collect();
    let msg = Message {
        topic,
        key: delivery.message.key.clone(),
        value: text.as_bytes().to_vec(),
        headers,
    };
    host.send(msg)
        .map_err(|e| Failure::retry(format!("forward: {e}")))
}

fn put(host: &mut impl Host, key: &str, value: &[u8]) -> Result<(), Failure> {
    host.set(key, value)
        .map_err(|e| Failure::invalid(format!("state set {key:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdk::fake::FakeHost;

    fn delivery(value: &[u8], attempt: u32) -> Delivery {
        Delivery {
            message: Message {
                topic: "in".into(),
                key: Some(b"k".to_vec()),
                value: value.to_vec(),
                headers: vec![
                    ("trace".into(), b"t1".to_vec()),
                    ("eventhost-attempt".into(), b"1".to_vec()),
                ],
            },
            partition: 2,
            offset: 42,
            timestamp_ms: None,
            attempt,
        }
    }

    #[test]
    fn forwards_with_key_and_headers() {
        let mut host = FakeHost::new().with_config("forward_to", "out");
        assert_eq!(handle(&mut host, &delivery(b"forward:hello", 1)), Ok(()));
        assert_eq!(host.text("msg:hello").as_deref(), Some("forward:hello"));
        assert_eq!(
            host.sent,
            [Message {
                topic: "out".into(),
                key: Some(b"k".to_vec()),
                value: b"hello".to_vec(),
                headers: vec![("trace".into(), b"t1".to_vec())],
            }]
        );
    }

    #[test]
    fn counts_up_and_forwards_the_count() {
        let mut host = FakeHost::new().with_config("forward_to", "out");
        for _ in 0..3 {
            assert_eq!(handle(&mut host, &delivery(b"count:c", 1)), Ok(()));
        }
        assert_eq!(host.text("count:c").as_deref(), Some("3"));
        let sent: Vec<&[u8]> = host.sent.iter().map(|m| m.value.as_slice()).collect();
        assert_eq!(sent, [b"1", b"2", b"3"]);
    }

    #[test]
    fn forward_without_a_target_only_stores() {
        let mut host = FakeHost::new();
        assert_eq!(handle(&mut host, &delivery(b"forward:x", 1)), Ok(()));
        assert!(host.sent.is_empty());
        assert!(host.get("msg:x").is_some());
    }

    #[test]
    fn fails_until_the_given_attempt() {
        let mut host = FakeHost::new().with_config("forward_to", "out");
        assert_eq!(
            handle(&mut host, &delivery(b"fail-until:3", 2)),
            Err(Failure::retry("attempt 2 < 3"))
        );
        assert_eq!(handle(&mut host, &delivery(b"fail-until:3", 3)), Ok(()));
        assert_eq!(host.sent[0].value, b"done:3");
        assert!(matches!(
            handle(&mut host, &delivery(b"fail-until:x", 9)),
            Err(Failure::Invalid(_))
        ));
    }

    #[test]
    fn records_by_position() {
        let mut host = FakeHost::new();
        assert_eq!(handle(&mut host, &delivery(b"record:a:b", 1)), Ok(()));
        assert_eq!(host.text("rec:2:000000000042").as_deref(), Some("a:b"));
    }

    #[test]
    fn fails_as_asked() {
        let mut host = FakeHost::new();
        assert_eq!(
            handle(&mut host, &delivery(b"put-then-fail:k", 1)),
            Err(Failure::retry("after write"))
        );
        assert_eq!(
            handle(&mut host, &delivery(b"invalid", 1)),
            Err(Failure::invalid("bad input"))
        );
        assert_eq!(
            handle(&mut host, &delivery(b"retry", 7)),
            Err(Failure::retry("always"))
        );
        for junk in [&b"what"[..], b"\xff\xfe", b""] {
            assert_eq!(
                handle(&mut host, &delivery(junk, 1)),
                Err(Failure::invalid("unknown message"))
            );
        }
    }
}
