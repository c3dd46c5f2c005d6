//! Components of the contract in `wit/` for unit tests that load plugins without building a
//! guest: the text of `host/tests/components/*.wat`, assembled in memory.

/// Exports `eventhost:plugin/http-handler`.
pub(crate) const HANDLES_HTTP: &str = include_str!("../../tests/components/handles-http.wat");
/// Exports `eventhost:plugin/message-handler`.
pub(crate) const HANDLES_MESSAGES: &str =
    include_str!("../../tests/components/handles-messages.wat");

/// The component of `wat` whose bytes, hence version, differ for each `tag`: a custom
/// section named `tag` is appended.
pub(crate) fn component(wat: &str, tag: &str) -> Vec<u8> {
    let mut bytes = wat::parse_str(wat).expect("the component text parses");
    let name = u8::try_from(tag.len()).expect("a short tag");
    // A custom section (id 0) holds its size, then its name as a length-prefixed string.
    assert!(tag.len() < 0x7f, "one-byte LEB128 sizes");
    bytes.extend([0, name + 1, name]);
    bytes.extend(tag.as_bytes());
    bytes
}
