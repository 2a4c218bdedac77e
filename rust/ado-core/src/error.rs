//! The one error type of the core crate.
//!
//! Each variant maps to one Python exception in `ado.errors` (see the `ado-py` crate):
//! `InvalidInput` → `InvalidInputError` (a `ValueError`), `Fit` → `FitError`,
//! `State` → `StateError`, `Shard` → `ShardError`, `Io` → `ShardError` of the matching OS kind
//! (`ShardNotFoundError`, `ShardPermissionError`; out of memory: `MemoryError`), `Internal` →
//! `InternalError`, `Interrupted` → `KeyboardInterrupt`.

use std::path::PathBuf;

/// Everything that can go wrong in `ado-core`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An argument is malformed: wrong shape, NaN, out of range. The message names the culprit.
    #[error("{0}")]
    InvalidInput(String),
    /// A power-law fit could not be computed for one domain.
    #[error("domain {domain}: {message}")]
    Fit { domain: usize, message: String },
    /// A saved state does not fit the object it is loaded into.
    #[error("{0}")]
    State(String),
    /// A shard is malformed (corrupt or truncated tar, bad sample grouping, ...).
    #[error("{path}: {message}")]
    Shard { path: PathBuf, message: String },
    /// A broken internal invariant: a bug in ado, never a problem with the input.
    #[error("internal error (please report): {0}")]
    Internal(String),
    /// Long work stopped because its cancel flag was set (e.g. Ctrl-C in the caller).
    #[error("interrupted")]
    Interrupted,
    /// An operating-system error while touching a file.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `Result` with the crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for [`Error::InvalidInput`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidInput(message.into())
    }

    /// Shorthand for [`Error::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal(message.into())
    }
}
