//! The one error type of configuration loading.

use std::io;
use std::path::{Path, PathBuf};

/// Why a configuration file could not be loaded.
///
/// `Display` is one line meant for a person: the file, the position and dotted key of the
/// offending value, and what is wrong with it, e.g.
/// `eventhost.toml:12:10: route[1].plugin: plugin "carts" is not defined`.
/// Line and column are 1-based; column counts characters. Array-of-tables entries are
/// numbered from 0 in file order (`route[1]` is the second `[[route]]`).
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
    #[error("{}:{line}:{column}: {key}: {message}", file.display())]
    Invalid {
        /// The file the offending value is in.
        file: PathBuf,
        /// 1-based line of the offending key or value.
        line: usize,
        /// 1-based column (in characters) of the offending key or value.
        column: usize,
        /// Dotted key path, e.g. `plugin.payment.limits.memory_mib`; `-` when unknown.
        key: String,
        /// What is wrong and what is expected, lower-case.
        message: String,
    },
}

impl ConfigError {
    /// The file the error is about.
    pub fn file(&self) -> &Path {
        match self {
            Self::Read { file, .. } | Self::Invalid { file, .. } => file,
        }
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
    fn invalid_error_is_one_line() {
        let err = ConfigError::Invalid {
            file: PathBuf::from("e.toml"),
            line: 12,
            column: 1,
            key: "route[1].plugin".into(),
            message: "plugin \"carts\" is not defined".into(),
        };
        assert_eq!(
            err.to_string(),
            "e.toml:12:1: route[1].plugin: plugin \"carts\" is not defined"
        );
    }
}
