//! W3C trace context (`traceparent`) across inputs: an input continues the trace of the record
//! or request that caused it, or starts one, and every message it publishes carries the
//! input's span as its parent. One checkout is then one trace: HTTP → cart → `orders` →
//! payment → `payments` → order. The trace id is in every log line of the input.

/// The header that carries the trace context, on HTTP requests and Kafka records alike.
pub const TRACEPARENT: &str = "traceparent";

/// One input's place in a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    /// The span of the record or request that caused the input; `None` for a new trace.
    parent_id: Option<[u8; 8]>,
    sampled: bool,
}

impl Span {
    /// The span of an input whose record or request carried `parent` (a `traceparent` value),
    /// or the first span of a new trace when it carried none or an invalid one.
    pub fn continuing(parent: Option<&[u8]>) -> Span {
        let span_id = random_span_id();
        match parent.and_then(parse) {
            Some((trace_id, parent_id, sampled)) => Span {
                trace_id,
                span_id,
                parent_id: Some(parent_id),
                sampled,
            },
            None => Span {
                trace_id: *uuid::Uuid::new_v4().as_bytes(),
                span_id,
                parent_id: None,
                sampled: true,
            },
        }
    }

    /// The trace id as bytes.
    pub fn trace_id_bytes(&self) -> [u8; 16] {
        self.trace_id
    }

    /// This input's span id, the one its messages name as their parent.
    pub fn span_id(&self) -> [u8; 8] {
        self.span_id
    }

    /// The span id of the record or request that caused the input, when it carried one.
    pub fn parent_id(&self) -> Option<[u8; 8]> {
        self.parent_id
    }

    /// Whether the trace is sampled: an unsampled one is traced in logs but not exported.
    pub fn sampled(&self) -> bool {
        self.sampled
    }

    /// The trace id, 32 lower-case hex digits.
    pub fn trace_id(&self) -> String {
        hex(&self.trace_id)
    }

    /// The `traceparent` value naming this span as the parent.
    pub fn traceparent(&self) -> String {
        let flags = if self.sampled { "01" } else { "00" };
        format!("00-{}-{}-{flags}", hex(&self.trace_id), hex(&self.span_id))
    }
}

/// The trace id, parent span id and sampled flag of a valid version-00 `traceparent`.
fn parse(value: &[u8]) -> Option<([u8; 16], [u8; 8], bool)> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let mut parts = text.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || parts.next().is_some() || parent.len() != 16 || flags.len() != 2 {
        return None;
    }
    let trace_id: [u8; 16] = unhex(trace)?.try_into().ok()?;
    let parent: [u8; 8] = unhex(parent)?.try_into().ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    // All-zero ids are invalid by the specification.
    if trace_id == [0; 16] || parent == [0; 8] {
        return None;
    }
    Some((trace_id, parent, flags & 1 == 1))
}

fn random_span_id() -> [u8; 8] {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes[..8].try_into().expect("16 bytes")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    // Lower-case hex only, as the specification writes it.
    let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if !text.len().is_multiple_of(2) || !text.bytes().all(lower_hex) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn an_input_continues_its_parents_trace_with_a_span_of_its_own() {
        let span = Span::continuing(Some(PARENT.as_bytes()));
        assert_eq!(span.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let header = span.traceparent();
        assert!(header.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(header.ends_with("-01"));
        assert_ne!(header, PARENT, "a new span id");
        assert_eq!(span.parent_id(), Some(0x00f067aa0ba902b7_u64.to_be_bytes()));
        assert_eq!(header[36..52], hex(&span.span_id()));
        // And its children continue the same trace.
        let child = Span::continuing(Some(header.as_bytes()));
        assert_eq!(child.trace_id(), span.trace_id());
    }

    #[test]
    fn a_missing_or_invalid_parent_starts_a_new_trace() {
        for parent in [
            None,
            Some("garbage"),
            Some("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            Some("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"),
        ] {
            let span = Span::continuing(parent.map(str::as_bytes));
            assert_ne!(
                span.trace_id(),
                "4bf92f3577b34da6a3ce929d0e0e4736",
                "{parent:?}"
            );
            assert_eq!(span.trace_id().len(), 32);
            assert_eq!(span.parent_id(), None, "{parent:?}");
            assert!(parse(span.traceparent().as_bytes()).is_some());
        }
    }

    #[test]
    fn the_sampled_flag_is_kept() {
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let span = Span::continuing(Some(unsampled.as_bytes()));
        assert!(span.traceparent().ends_with("-00"));
    }
}
