//! The one error type of configuration loading.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Why a configuration file could not be loaded.
///
/// `Display` starts with one line meant for a person, the file, the 1-based line and column
/// (in characters) of the offending key or value, and what is wrong with it; then the line
/// itself with the value underlined, as rustc and toml show it:
///
/// ```text
/// eventhost.toml:12:10: plugin "carts" is not defined, expected "cart"
///  12 | plugin = "carts"
///     |          ^^^^^^^
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("{}: cannot read: {error}", file.display())]
    Read {
        /// The file that was to be read.
        file: PathBuf,
        /// What the operating system said. It is part of the message, so it is not also
        /// returned as the `source()` (which would print it twice in error chains).
        error: io::Error,
    },
    /// The file was read but is not a valid configuration: bad TOML syntax, an unknown key,
    /// a value of the wrong type or out of range, or a reference to something not declared.
    #[error("{}", Located(self))]
    Invalid {
        /// The file the offending value is in.
        file: PathBuf,
        /// 1-based line of the offending key or value.
        line: usize,
        /// 1-based column (in characters) of the offending key or value.
        column: usize,
        /// What is wrong and what is expected: toml's and serde's own words for syntax and
        /// types, the host's for its own checks.
        message: String,
        /// The text of the offending line.
        text: String,
        /// How many characters of `text` from `column` on are the offending key or value.
        width: usize,
    },
}

impl ConfigError {
    /// The file the error is about.
    pub fn file(&self) -> &Path {
        match self {
            Self::Read { file, .. } | Self::Invalid { file, .. } => file,
        }
    }

    /// The first line of the message: where, and what is wrong.
    #[cfg(test)]
    pub(crate) fn summary(&self) -> String {
        self.to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    }
}

/// Renders [`ConfigError::Invalid`]: the message line, then the source line, underlined.
struct Located<'a>(&'a ConfigError);

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ConfigError::Invalid {
            file,
            line,
            column,
            message,
            text,
            width,
        } = self.0
        else {
            return Ok(());
        };
        let gutter = " ".repeat(line.to_string().len() + 1);
        let pad = " ".repeat(column - 1);
        writeln!(f, "{}:{line}:{column}: {message}", file.display())?;
        writeln!(f, " {line} | {text}")?;
        write!(f, "{gutter} | {pad}{}", "^".repeat((*width).max(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_error_names_the_file_and_the_cause() {
        let err = ConfigError::Read {
            file: PathBuf::from("conf/eventhost.toml"),
            error: io::Error::new(io::ErrorKind::NotFound, "no such file"),
        };
        assert_eq!(
            err.to_string(),
            "conf/eventhost.toml: cannot read: no such file"
        );
        assert_eq!(err.file(), Path::new("conf/eventhost.toml"));
        assert!(std::error::Error::source(&err).is_none());
    }

    #[test]
    fn invalid_error_underlines_the_value() {
        let err = ConfigError::Invalid {
            file: PathBuf::from("e.toml"),
            line: 12,
            column: 10,
            message: "plugin \"carts\" is not defined".into(),
            text: "plugin = \"carts\"".into(),
            width: 7,
        };
        assert_eq!(
            err.to_string(),
            "e.toml:12:10: plugin \"carts\" is not defined\n \
             12 | plugin = \"carts\"\n    \
             |          ^^^^^^^"
        );
    }
}
