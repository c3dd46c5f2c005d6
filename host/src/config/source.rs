//! The text of one configuration file, and how to turn byte spans in it into the located
//! errors of [`ConfigError`].

use std::borrow::Cow;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::ConfigError;

/// One configuration file: its path (as given, used in messages) and its text.
#[derive(Debug, Default)]
pub(crate) struct Source {
    path: PathBuf,
    text: String,
}

impl Source {
    /// Wraps the text read from `path`.
    pub(crate) fn new(path: &Path, text: &str) -> Arc<Self> {
        Arc::new(Self {
            path: path.to_owned(),
            text: text.to_owned(),
        })
    }

    /// The path the file was read from.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The directory relative paths in this file are resolved against.
    pub(crate) fn dir(&self) -> &Path {
        base_dir(&self.path)
    }

    /// 1-based line and column (counted in characters) of the byte at `offset`.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(&self.text, offset);
        let before = &self.text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line = before.matches('\n').count() + 1;
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    /// An error pointing at `span`: the message, and the line it is on, underlined.
    pub(crate) fn error(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        let (line, column) = self.position(span.start);
        let start = floor_char_boundary(&self.text, span.start);
        let line_start = self.text[..start].rfind('\n').map_or(0, |i| i + 1);
        let text = self.text[line_start..].lines().next().unwrap_or("");
        let end = floor_char_boundary(&self.text, span.end).clamp(start, line_start + text.len());
        ConfigError::Invalid {
            file: self.path.clone(),
            line,
            column,
            message: message.into(),
            text: text.to_owned(),
            width: self.text[start..end].chars().count(),
        }
    }

    /// toml's own error (syntax, an unknown key, a type, or a check in a `try_from`), located.
    pub(crate) fn toml_error(&self, error: &toml::de::Error) -> ConfigError {
        self.error(error.span().unwrap_or(0..0), error.message())
    }
}

/// Where a `[[topic]]`, `[plugin.X]`, `[[subscription]]` or `[[route]]` table came from.
///
/// Kept on each raw item so that items merged from several files (drop-ins) still report
/// errors against their own file, with their own index in it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Origin {
    /// The file the table was read from.
    pub(crate) source: Arc<Source>,
    /// Position of the table among its siblings of the same kind in that file (0-based).
    pub(crate) index: usize,
}

/// The directory of `file`, or `.`-relative empty path when it has none.
pub(crate) fn base_dir(file: &Path) -> &Path {
    file.parent().unwrap_or(Path::new(""))
}

/// `key` as written in TOML: bare when it can be, else in double quotes.
pub(crate) fn quote_key(key: &str) -> Cow<'_, str> {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        Cow::Borrowed(key)
    } else {
        Cow::Owned(format!("{key:?}"))
    }
}

fn floor_char_boundary(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> Arc<Source> {
        Source::new(Path::new("x.toml"), text)
    }

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let s = source("a = 1\nbé = \"x\"\n");
        assert_eq!(s.position(0), (1, 1));
        assert_eq!(s.position(4), (1, 5));
        assert_eq!(s.position(6), (2, 1));
        // `=` after the two-byte `é`
        assert_eq!(s.position(10), (2, 4));
        assert_eq!(s.position(999), (3, 1));
    }

    #[test]
    fn errors_underline_the_span_on_its_line() {
        let s = source("[server]\nlisten = \"nope\"\n");
        let err = s.error(18..24, "bad address");
        assert_eq!(
            err.to_string(),
            "x.toml:2:10: bad address\n 2 | listen = \"nope\"\n   |          ^^^^^^"
        );
        // A span running past its line is cut at the line's end.
        let err = s.error(18..40, "x");
        assert!(err.to_string().ends_with("|          ^^^^^^"), "{err}");
    }

    #[test]
    fn keys_are_quoted_only_when_needed() {
        assert_eq!(quote_key("bus"), "bus");
        assert_eq!(quote_key("linger.ms"), "\"linger.ms\"");
        assert_eq!(quote_key(""), "\"\"");
    }

    #[test]
    fn base_dir_of_a_bare_file_name_is_empty() {
        assert_eq!(base_dir(Path::new("eventhost.toml")), Path::new(""));
        assert_eq!(base_dir(Path::new("/etc/e/h.toml")), Path::new("/etc/e"));
    }
}
