//! Contract cases as data: a TOML file of `[[case]]`s, each an input (a message or an HTTP
//! request) with the plugin's config, and what the plugin must do with it.
//!
//! ```toml
//! [defaults]                       # merged into every case (a case's own keys win)
//! publish = ["payments"]
//! config = { payments_topic = "payments" }
//!
//! [[case]]
//! name = "a visa card pays"
//! config = { max_total = "100.00" }
//! message = { topic = "orders", key = "o-1", value = '{"orderId":"o-1"}' }
//! expect.outcome = "ok"
//! expect.output = [{ topic = "payments", key = "o-1", fields = { status = "COMPLETED" } }]
//! ```
//!
//! A case may set `repeat = { marker = "@BIG@", text = "x", times = 100000 }`: every string of
//! the case (input and expectations) has the marker replaced, for huge fields without a huge
//! file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::Deserialize;

/// A case file: shared defaults and the cases.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[serde(default)]
    defaults: Option<toml::Table>,
    #[serde(default)]
    case: Vec<toml::Table>,
}

/// One input and what the plugin must do with it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Shown in the report.
    pub name: String,
    /// The plugin's `config.get` values.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Topics the plugin may publish to.
    #[serde(default)]
    pub publish: Vec<String>,
    /// The time limit of the input, in milliseconds (default 10000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// The memory limit of the instance, in MiB (default 64).
    #[serde(default = "default_memory_mib")]
    pub memory_mib: usize,
    /// State the plugin finds before the input: key → UTF-8 value.
    #[serde(default)]
    pub state: BTreeMap<String, String>,
    /// A message delivered to `message-handler`.
    #[serde(default)]
    pub message: Option<MessageInput>,
    /// A request to `http-handler`.
    #[serde(default)]
    pub http: Option<HttpInput>,
    /// What must happen.
    pub expect: Expect,
}

const fn default_timeout_ms() -> u64 {
    10_000
}

const fn default_memory_mib() -> usize {
    64
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Repeat {
    marker: String,
    text: String,
    times: usize,
}

/// The bytes given as `value` (UTF-8 text) or `value_hex` (any bytes), if any.
fn exact_bytes(
    value: &Option<String>,
    value_hex: &Option<String>,
) -> anyhow::Result<Option<Vec<u8>>> {
    match (value, value_hex) {
        (Some(_), Some(_)) => bail!("give either value or value_hex, not both"),
        (Some(text), None) => Ok(Some(text.clone().into_bytes())),
        (None, Some(hex)) => hex_bytes(hex).map(Some),
        (None, None) => Ok(None),
    }
}

/// A message delivered on a subscription.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageInput {
    /// The topic it arrives on (default `input`).
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Its key, if any.
    pub key: Option<String>,
    /// Its payload.
    pub value: Option<String>,
    /// The same as bytes in hex, e.g. `"ff00"`.
    pub value_hex: Option<String>,
    /// Which delivery attempt this is (default 1).
    #[serde(default = "first_attempt")]
    pub attempt: u32,
}

impl MessageInput {
    /// The payload's bytes, if given.
    pub fn payload(&self) -> anyhow::Result<Option<Vec<u8>>> {
        exact_bytes(&self.value, &self.value_hex)
    }
}

impl Output {
    /// The exact payload expected, if given.
    pub fn payload(&self) -> anyhow::Result<Option<Vec<u8>>> {
        exact_bytes(&self.value, &self.value_hex)
    }
}

impl Response {
    /// The exact body expected, if given.
    pub fn payload(&self) -> anyhow::Result<Option<Vec<u8>>> {
        exact_bytes(&self.value, &self.value_hex)
    }
}

fn default_topic() -> String {
    "input".into()
}

const fn first_attempt() -> u32 {
    1
}

/// An HTTP request routed to the plugin.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpInput {
    /// Upper-case method (default `GET`).
    #[serde(default = "default_method")]
    pub method: String,
    /// The request path, e.g. `/api/payment`.
    pub path: String,
    /// The route pattern that matched (default: the path).
    pub route: Option<String>,
    /// The query string without `?`.
    #[serde(default)]
    pub query: String,
    /// Route parameters by name.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Request headers (names in lower case).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The request body as text.
    #[serde(default)]
    pub body: String,
}

fn default_method() -> String {
    "GET".into()
}

/// What the plugin must do with the input.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// `ok`, a failure the plugin returned (`invalid`, `retry`), or why there was no result
    /// (`timeout`, `trap`, `memory`, `budget`, `missing-export`, `invalid-response`).
    pub outcome: String,
    /// Text the failure's message must contain.
    pub message_contains: Option<String>,
    /// The input must take at least this long (e.g. a configured processing delay).
    pub min_ms: Option<u64>,
    /// The messages it publishes, in order; not checked when left out, `[]` for none.
    pub output: Option<Vec<Output>>,
    /// The HTTP response.
    pub response: Option<Response>,
    /// Its state writes, key → UTF-8 value; not checked when left out.
    pub state: Option<BTreeMap<String, String>>,
    /// Keys it must delete.
    #[serde(default)]
    pub state_deleted: Vec<String>,
}

/// An expected published message.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Output {
    /// Its topic.
    pub topic: String,
    /// Its key (UTF-8); not checked when left out.
    pub key: Option<String>,
    /// The exact payload.
    pub value: Option<String>,
    /// The same as bytes in hex, e.g. `"ff00"`.
    pub value_hex: Option<String>,
    /// Fields the payload (a JSON object) must have, with these values.
    pub fields: Option<toml::Table>,
    /// Text the payload must not contain anywhere (e.g. a full card number).
    #[serde(default)]
    pub excludes: Vec<String>,
}

/// An expected HTTP response.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Response {
    /// Its status code.
    pub status: u16,
    /// The exact body.
    pub value: Option<String>,
    /// The same as bytes in hex, e.g. `"ff00"`.
    pub value_hex: Option<String>,
    /// Fields the body (a JSON object) must have, with these values.
    pub fields: Option<toml::Table>,
    /// Text the body must not contain anywhere.
    #[serde(default)]
    pub excludes: Vec<String>,
}

/// Reads the cases of `path`, with its defaults applied.
pub fn load(path: &Path) -> anyhow::Result<Vec<Case>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file: CaseFile = toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
    let defaults = file.defaults.unwrap_or_default();
    file.case
        .into_iter()
        .enumerate()
        .map(|(i, table)| {
            let case = with_defaults(table, &defaults);
            let name = case.get("name").and_then(|n| n.as_str()).map(str::to_owned);
            parse_case(case).with_context(|| {
                let name = name.unwrap_or_else(|| format!("case {}", i + 1));
                format!("{}: {name}", path.display())
            })
        })
        .collect()
}

/// The case files of `paths`, where a folder stands for the `.toml` files in it.
pub fn files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn parse_case(mut table: toml::Table) -> anyhow::Result<Case> {
    // `repeat` (see the module docs) is applied here, so a `Case` holds the final strings.
    if let Some(repeat) = table.remove("repeat") {
        let repeat: Repeat = repeat.try_into().context("repeat")?;
        let big = repeat.text.repeat(repeat.times);
        for (_, value) in table.iter_mut() {
            replace_marker(value, &repeat.marker, &big);
        }
    }
    let case: Case = toml::Value::Table(table).try_into()?;
    if case.message.is_some() == case.http.is_some() {
        bail!("a case needs exactly one input: message or http");
    }
    Ok(case)
}

/// `table` with the keys of `defaults` it lacks; tables (such as `config`) are merged.
fn with_defaults(mut table: toml::Table, defaults: &toml::Table) -> toml::Table {
    for (key, default) in defaults {
        match (table.get_mut(key), default) {
            (None, _) => {
                table.insert(key.clone(), default.clone());
            }
            (Some(toml::Value::Table(own)), toml::Value::Table(default)) => {
                *own = with_defaults(std::mem::take(own), default);
            }
            (Some(_), _) => {}
        }
    }
    table
}

fn replace_marker(value: &mut toml::Value, marker: &str, with: &str) {
    match value {
        toml::Value::String(s) if s.contains(marker) => *s = s.replace(marker, with),
        toml::Value::Array(items) => items
            .iter_mut()
            .for_each(|v| replace_marker(v, marker, with)),
        toml::Value::Table(table) => table
            .iter_mut()
            .for_each(|(_, v)| replace_marker(v, marker, with)),
        _ => {}
    }
}

fn hex_bytes(hex: &str) -> anyhow::Result<Vec<u8>> {
    let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        bail!("value_hex has an odd number of digits");
    }
    digits
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).unwrap_or("??");
            u8::from_str_radix(text, 16).with_context(|| format!("value_hex: {text:?} is not hex"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cases(text: &str) -> anyhow::Result<Vec<Case>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("cases.toml");
        std::fs::write(&path, text)?;
        load(&path)
    }

    #[test]
    fn defaults_merge_into_each_case() {
        let found = cases(
            r#"
            [defaults]
            publish = ["payments"]
            config = { payments_topic = "payments", max_total = "1" }

            [[case]]
            name = "one"
            config = { max_total = "2" }
            message = { value = "{}" }
            expect.outcome = "ok"
            "#,
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
        let case = &found[0];
        assert_eq!(case.publish, ["payments"]);
        assert_eq!(case.config["max_total"], "2");
        assert_eq!(case.config["payments_topic"], "payments");
        assert_eq!(case.timeout_ms, 10_000);
    }

    #[test]
    fn repeat_fills_inputs_and_expectations() {
        let found = cases(
            r#"
            [[case]]
            name = "big"
            repeat = { marker = "@X@", text = "ab", times = 3 }
            message = { value = "[@X@]" }
            expect = { outcome = "invalid", message_contains = "@X@!" }
            "#,
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
        let input = found[0].message.as_ref().map(|m| m.payload());
        assert_eq!(
            input.and_then(Result::ok).flatten(),
            Some(b"[ababab]".to_vec())
        );
        assert_eq!(found[0].expect.message_contains.as_deref(), Some("ababab!"));
    }

    #[test]
    fn a_case_needs_one_input_and_known_keys() {
        let none = cases("[[case]]\nname = \"x\"\nexpect.outcome = \"ok\"\n");
        assert!(none.is_err_and(|e| format!("{e:#}").contains("exactly one input")));
        let typo = cases("[[case]]\nname = \"x\"\nmesage = {}\nexpect.outcome = \"ok\"\n");
        assert!(typo.is_err_and(|e| format!("{e:#}").contains("mesage")));
        assert_eq!(hex_bytes("ff 00").ok(), Some(vec![0xff, 0]));
    }
}
