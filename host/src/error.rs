//! What the layers share about errors: the underlying error each of ours keeps as its source,
//! and a way to print the whole chain where a person reads it (logs, dead-letter headers).
//!
//! Our errors say what failed in their own words and keep the library's error beneath them
//! rather than flattening it into text, so callers can still walk to the root cause.

use std::error::Error;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// An underlying error kept as the source of one of ours; shared, so our errors stay `Clone`.
///
/// It is not an error itself but derefs to the one it holds, so `source()` hands out that
/// error and callers can downcast it to the library's type.
#[derive(Debug, Clone)]
pub struct Cause(Arc<dyn Error + Send + Sync + 'static>);

impl Cause {
    /// Keeps `error`.
    pub fn new(error: impl Error + Send + Sync + 'static) -> Self {
        Cause(Arc::new(error))
    }
}

impl Deref for Cause {
    type Target = dyn Error + Send + Sync + 'static;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

/// Wraps `error` as a [`Cause`], for the optional ones.
pub fn cause(error: impl Error + Send + Sync + 'static) -> Option<Cause> {
    Some(Cause::new(error))
}

/// Displays an error followed by each of its sources: `outer: inner: root`.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Option<Cause>);

    #[test]
    fn chain_prints_every_source_in_order() {
        let root = std::io::Error::other("root");
        let error = Outer(cause(Outer(cause(root))));
        assert_eq!(Chain(&error).to_string(), "outer: outer: root");
        assert_eq!(Chain(&Outer(None)).to_string(), "outer");
    }

    #[test]
    fn the_source_is_the_kept_error_itself() {
        let error = Outer(cause(std::io::Error::other("root")));
        let source = error.source().expect("kept");
        assert!(source.downcast_ref::<std::io::Error>().is_some());
    }
}
