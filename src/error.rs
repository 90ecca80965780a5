//! The crate's error types.

use std::fmt;

/// Why bytes are not a valid envelope (PROTOCOL.md §1, §2). Its text is the `detail` a client sees
/// in an `invalid_envelope` error and the `error` of a publish endpoint's `400`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeError {
    detail: String,
}

impl EnvelopeError {
    pub(crate) fn new(detail: impl Into<String>) -> Self {
        Self {
            detail: detail.into(),
        }
    }

    pub(crate) fn from_json(err: serde_json::Error) -> Self {
        Self::new(err.to_string())
    }

    /// Prefixes the detail with where in a batch the bad envelope stands.
    pub(crate) fn at(self, place: fmt::Arguments<'_>) -> Self {
        Self::new(format!("{place}: {}", self.detail))
    }

    /// What is wrong, in one sentence.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid envelope: {}", self.detail)
    }
}

impl std::error::Error for EnvelopeError {}
