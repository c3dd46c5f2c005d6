//! The transactional outbox of exactly-once subscriptions.
//!
//! A consumed record's messages are not sent when its handler succeeds: they are stored with
//! its state writes, in the same store transaction, as an [`OutboxEntry`] under the record's
//! position. The bus later publishes the entries of a partition in one Kafka transaction
//! together with the consumed offset, and drops them once that transaction committed. An entry
//! therefore also marks its record as applied: a record re-delivered after a crash whose entry
//! is still there must not run again, only be published.

use crate::runtime::OutMessage;

use super::StateError;

/// A partition as one consumer group consumes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Consumed {
    /// The consumer group.
    pub group: String,
    /// The consumed topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
}

/// What one consumed record produced, kept until it is published with its offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Where the record was consumed.
    pub from: Consumed,
    /// The record's offset.
    pub offset: i64,
    /// Its messages, in the order they were sent (possibly none).
    pub messages: Vec<OutMessage>,
}

/// Serializes messages as length-prefixed fields (u32, little-endian), for a store to keep.
pub fn encode(messages: &[OutMessage]) -> Vec<u8> {
    fn bytes(out: &mut Vec<u8>, data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
    }
    let mut out = Vec::new();
    out.extend_from_slice(&(messages.len() as u32).to_le_bytes());
    for message in messages {
        bytes(&mut out, message.topic.as_bytes());
        match &message.key {
            Some(key) => {
                out.push(1);
                bytes(&mut out, key);
            }
            None => out.push(0),
        }
        bytes(&mut out, &message.value);
        out.extend_from_slice(&(message.headers.len() as u32).to_le_bytes());
        for (name, value) in &message.headers {
            bytes(&mut out, name.as_bytes());
            bytes(&mut out, value);
        }
    }
    out
}

/// The messages [`encode`] serialized.
pub fn decode(data: &[u8]) -> Result<Vec<OutMessage>, StateError> {
    let mut reader = Reader(data);
    let corrupt = || StateError::new("an outbox entry is corrupt");
    let count = reader.u32().ok_or_else(corrupt)?;
    let mut messages = Vec::new();
    for _ in 0..count {
        let message = reader.message().ok_or_else(corrupt)?;
        messages.push(message);
    }
    if !reader.0.is_empty() {
        return Err(corrupt());
    }
    Ok(messages)
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn bytes(&mut self) -> Option<Vec<u8>> {
        let len = self.u32()? as usize;
        Some(self.take(len)?.to_vec())
    }

    fn text(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?).ok()
    }

    fn message(&mut self) -> Option<OutMessage> {
        let topic = self.text()?;
        let key = match self.take(1)? {
            [0] => None,
            [1] => Some(self.bytes()?),
            _ => return None,
        };
        let value = self.bytes()?;
        let headers = (0..self.u32()?)
            .map(|_| Some((self.text()?, self.bytes()?)))
            .collect::<Option<Vec<_>>>()?;
        Some(OutMessage {
            topic,
            key,
            value,
            headers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_survive_encoding_and_a_truncated_entry_is_refused() {
        let messages = vec![
            OutMessage {
                topic: "payments".into(),
                key: Some(b"order-1".to_vec()),
                value: b"{\"ok\":true}".to_vec(),
                headers: vec![("eventhost-id".into(), b"orders/0/7#0".to_vec())],
            },
            OutMessage {
                topic: "audit".into(),
                key: None,
                value: Vec::new(),
                headers: Vec::new(),
            },
        ];
        let encoded = encode(&messages);
        assert_eq!(decode(&encoded).unwrap(), messages);
        assert_eq!(decode(&encode(&[])).unwrap(), []);
        assert!(decode(&encoded[..encoded.len() - 1]).is_err());
        assert!(decode(&[encoded.as_slice(), b"x"].concat()).is_err());
    }
}
