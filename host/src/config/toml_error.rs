//! Turns a `toml` parse or deserialize error into a [`ConfigError`] with a position, a dotted
//! key path and a one-line, lower-case message.
//!
//! `toml::de::Error` gives a byte span and a message but not (publicly) the key path. When the
//! document is syntactically valid, the path is found by walking the spanned document tree to
//! the key or value under the span. When it is not, the nearest preceding table header (plus
//! the key on the error's line, if any) is used, or `-`.

use std::collections::HashMap;
use std::ops::Range;

use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::ConfigError;
use super::source::{Source, join_key};

/// Maps `error`, raised while reading `source`, to a [`ConfigError::Invalid`].
pub(crate) fn convert(source: &Source, error: &toml::de::Error) -> ConfigError {
    let text = source.text();
    let span = error.span().unwrap_or(0..0);
    let mut key = match DeTable::parse(text) {
        Ok(root) => key_in_table(root.get_ref(), span.start, ""),
        Err(_) => key_from_text(text, span.start, error.message() == "duplicate key"),
    }
    .unwrap_or_else(|| "-".to_owned());
    let message = match missing_field(error.message()) {
        Some(field) => {
            key = join_key(&key, field);
            "required key is missing".to_owned()
        }
        None => humanize(error.message()),
    };
    source.error(span, key, message)
}

/// The dotted path of the deepest key or value in `table` whose span holds `pos`.
fn key_in_table(table: &DeTable<'_>, pos: usize, path: &str) -> Option<String> {
    table.iter().find_map(|(key, value)| {
        let path = join_key(path, key.get_ref());
        key_in_value(value, pos, &path).or_else(|| holds(&key.span(), pos).then_some(path))
    })
}

fn key_in_value(value: &Spanned<DeValue<'_>>, pos: usize, path: &str) -> Option<String> {
    let inner = match value.get_ref() {
        DeValue::Table(table) => key_in_table(table, pos, path),
        DeValue::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let path = format!("{path}[{i}]");
            key_in_value(item, pos, &path)
        }),
        _ => None,
    };
    inner.or_else(|| holds(&value.span(), pos).then(|| path.to_owned()))
}

fn holds(span: &Range<usize>, pos: usize) -> bool {
    span.contains(&pos) || (span.is_empty() && span.start == pos)
}

/// Best-effort key path for a syntax error at `pos`: the table header in force there, plus
/// the key assigned on the error's line. An error at the very start of a line (other than a
/// `duplicate` key) means the previous value was left open (an unclosed array or inline
/// table swallowed the line break), so the last key assigned before that line is used.
fn key_from_text(text: &str, pos: usize, duplicate: bool) -> Option<String> {
    let pos = pos.min(text.len());
    let line_start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
    let mut table: Option<String> = None;
    let mut last_key: Option<&str> = None;
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut header_path = |name: String, is_array: bool| {
        if is_array {
            let count = seen.entry(name.clone()).or_default();
            *count += 1;
            format!("{name}[{}]", *count - 1)
        } else {
            name
        }
    };
    for line in text[..line_start].lines() {
        if let Some((name, is_array)) = header(line) {
            table = Some(header_path(name, is_array));
            last_key = None;
        } else if let Some(key) = assigned_key(line) {
            last_key = Some(key);
        }
    }
    let line = text[line_start..].lines().next().unwrap_or("");
    let at_line_start = pos <= line_start + (line.len() - line.trim_start().len());
    let (table, key) = match header(line) {
        Some(_) if at_line_start => (table, last_key),
        Some((name, is_array)) => (Some(header_path(name, is_array)), None),
        None => match assigned_key(line) {
            Some(_) if at_line_start && !duplicate => (table, last_key),
            Some(key) => (table, Some(key)),
            None => (table, None),
        },
    };
    match (table, key) {
        (Some(table), Some(key)) => Some(format!("{table}.{key}")),
        (table, key) => table.or_else(|| key.map(str::to_owned)),
    }
}

/// The key assigned on `line` (`key = ...`).
fn assigned_key(line: &str) -> Option<&str> {
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    let key_like = !key.is_empty()
        && !key.starts_with('[')
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || "_-.\"' ".contains(c));
    key_like.then_some(key)
}

/// `Some((name, is_array))` when `line` is a `[name]` or `[[name]]` header.
fn header(line: &str) -> Option<(String, bool)> {
    let line = line.trim_start();
    let (rest, is_array) = match line.strip_prefix("[[") {
        Some(rest) => (rest, true),
        None => (line.strip_prefix('[')?, false),
    };
    let name = rest.split(']').next()?.trim();
    (!name.is_empty()).then(|| (name.to_owned(), is_array))
}

fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.strip_suffix('`')
}

/// One line, lower-case, `"quoted"` instead of `` `quoted` ``, and TOML words instead of Rust
/// type names.
fn humanize(message: &str) -> String {
    // Numbers and booleans are shown bare, strings quoted: `integer 5` but `string "5"`.
    // An integer too large for TOML's i64 is a range error, not a type error.
    let mut message = message.to_owned();
    if message.starts_with("invalid type: integer") && message.contains("` as i128") {
        message = message
            .replacen("invalid type", "invalid value", 1)
            .replacen("` as i128", "`", 1);
    }
    for kind in ["integer", "float", "boolean"] {
        if let Some(start) = message.find(&format!("{kind} `")) {
            let open = start + kind.len() + 1;
            if let Some(len) = message[open + 1..].find('`') {
                message.replace_range(open + 1 + len..open + 2 + len, "");
                message.replace_range(open..open + 1, "");
            }
        }
    }
    let mut out = String::with_capacity(message.len());
    let mut parts = message.split('`');
    out.push_str(parts.next().unwrap_or_default());
    let mut quoted = true;
    for part in parts {
        if quoted {
            let quote = if part.contains('"') { '\'' } else { '"' };
            out.extend([quote].into_iter().chain(part.chars()).chain([quote]));
        } else {
            out.push_str(part);
        }
        quoted = !quoted;
    }
    let mut out = out.lines().map(str::trim).collect::<Vec<_>>().join("; ");
    let is_range = out.starts_with("invalid value");
    for (rust, toml_type, range) in [
        ("u8", "an integer", "an integer from 0 to 255"),
        ("u16", "an integer", "an integer from 0 to 65535"),
        ("u32", "an integer", "an integer from 0 to 4294967295"),
        ("u64", "an integer", "a non-negative integer"),
        ("usize", "an integer", "a non-negative integer"),
        ("i16", "an integer", "an integer from -32768 to 32767"),
        (
            "i32",
            "an integer",
            "an integer from -2147483648 to 2147483647",
        ),
        ("i64", "an integer", "an integer"),
    ] {
        let suffix = format!("expected {rust}");
        if let Some(head) = out.strip_suffix(&suffix) {
            out = format!(
                "{head}expected {}",
                if is_range { range } else { toml_type }
            );
            break;
        }
    }
    if let Some(start) = out.find("expected struct ") {
        out.replace_range(start.., "expected a table");
    }
    for (serde_word, toml_word) in [
        ("invalid type: map,", "invalid type: table,"),
        ("invalid type: sequence,", "invalid type: array,"),
        ("expected a map", "expected a table"),
        ("expected a sequence", "expected an array"),
    ] {
        out = out.replace(serde_word, toml_word);
    }
    if out == "duplicate key" {
        out = "key or table is defined more than once".to_owned();
    }
    lower_first(&out)
}

fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        #[serde(default)]
        plugin: std::collections::BTreeMap<String, Plugin>,
        #[serde(default)]
        route: Vec<Route>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Plugin {
        path: Option<String>,
        publish: Option<Vec<String>>,
        partitions: Option<u32>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Route {
        plugin: String,
    }

    fn error(text: &str) -> String {
        let source = Source::new(Path::new("f.toml"), text);
        let err = toml::from_str::<Doc>(text).expect_err("should not parse");
        convert(&source, &err).to_string()
    }

    #[test]
    fn unknown_key_names_its_path() {
        assert_eq!(
            error("[plugin.a]\npath = \"x\"\ntimeout = 3\n"),
            "f.toml:3:1: plugin.a.timeout: unknown field \"timeout\", \
             expected one of \"path\", \"publish\", \"partitions\""
        );
    }

    #[test]
    fn wrong_type_inside_an_array() {
        assert_eq!(
            error("[plugin.a]\npublish = [\"x\", 3]\n"),
            "f.toml:2:17: plugin.a.publish[1]: invalid type: integer 3, expected a string"
        );
    }

    #[test]
    fn wrong_type_of_an_integer_says_integer() {
        assert_eq!(
            error("[plugin.a]\npartitions = \"3\"\n"),
            "f.toml:2:14: plugin.a.partitions: invalid type: string \"3\", expected an integer"
        );
        assert_eq!(
            error("[plugin.a]\npartitions = -1\n"),
            "f.toml:2:14: plugin.a.partitions: invalid value: integer -1, \
             expected an integer from 0 to 4294967295"
        );
    }

    #[test]
    fn missing_field_in_array_of_tables_points_at_its_header() {
        assert_eq!(
            error("[[route]]\nplugin = \"a\"\n\n[[route]]\n"),
            "f.toml:4:1: route[1].plugin: required key is missing"
        );
    }

    #[test]
    fn syntax_error_uses_table_and_key_of_its_line() {
        assert_eq!(
            error("[[route]]\nplugin = \"a\"\n[[route]]\nplugin = \"b\n"),
            "f.toml:4:12: route[1].plugin: invalid basic string, expected '\"'"
        );
        assert_eq!(
            error("[plugin.a]\n[plugin.a]\n"),
            "f.toml:2:9: plugin.a: key or table is defined more than once"
        );
        assert_eq!(
            error("[plugin.a]\npublish = [\"x\"\n\n[[route]]\nplugin = \"a\"\n"),
            "f.toml:4:1: plugin.a.publish: missing comma between array elements, expected \",\""
        );
        assert_eq!(
            error("[plugin.a]\npath = \"a\"\npath = \"b\"\n"),
            "f.toml:3:1: plugin.a.path: key or table is defined more than once"
        );
        assert_eq!(
            error("= 3\n"),
            "f.toml:1:1: -: unquoted keys cannot be empty, expected letters, numbers, \"-\", \"_\""
        );
    }

    #[test]
    fn humanize_hides_rust_types() {
        assert_eq!(
            humanize("invalid type: integer `5`, expected struct RawLimits"),
            "invalid type: integer 5, expected a table"
        );
        assert_eq!(
            humanize("invalid type: integer `99999999999999999999` as i128, expected u64"),
            "invalid value: integer 99999999999999999999, expected a non-negative integer"
        );
        assert_eq!(
            humanize("invalid type: boolean `true`, expected i16"),
            "invalid type: boolean true, expected an integer"
        );
    }

    #[test]
    fn humanize_quotes_and_lowercases() {
        assert_eq!(humanize("Unexpected `]`"), "unexpected \"]\"");
        assert_eq!(humanize("a\n  b"), "a; b");
        assert_eq!(
            humanize("invalid type: sequence, expected a map"),
            "invalid type: array, expected a table"
        );
    }
}
