//! Error bridge: `ado_core::Error` → the Python exception tree defined in `ado.errors`.
//!
//! The classes live in Python (so that `InvalidInputError` can be both an `AdoError` and a
//! `ValueError`); they are looked up when an error is raised.

use ado_core::Error;
use pyo3::exceptions::{PyMemoryError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyType;
use std::io::ErrorKind;

/// Newtype so that `?` converts core errors into Python exceptions (orphan rule).
pub struct PyAdoError(pub Error);

impl From<Error> for PyAdoError {
    fn from(e: Error) -> Self {
        PyAdoError(e)
    }
}

impl From<PyAdoError> for PyErr {
    fn from(e: PyAdoError) -> PyErr {
        let message = e.0.to_string();
        let (class, os_args) = match &e.0 {
            Error::InvalidInput(_) => ("InvalidInputError", None),
            Error::Fit { .. } => ("FitError", None),
            Error::State(_) => ("StateError", None),
            Error::Internal(_) => ("InternalError", None),
            Error::Shard { .. } | Error::Remote(_) => ("ShardError", None),
            Error::Io { path, source } => {
                let class = match source.kind() {
                    ErrorKind::NotFound => "ShardNotFoundError",
                    ErrorKind::PermissionDenied => "ShardPermissionError",
                    ErrorKind::OutOfMemory => return PyMemoryError::new_err(message),
                    _ => "ShardError",
                };
                // (errno, strerror, filename): the OSError subclasses fill their attributes
                let text = source.to_string();
                let strerror = text
                    .split(" (os error")
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let os = source
                    .raw_os_error()
                    .map(|errno| (errno, strerror, path.display().to_string()));
                (class, os)
            }
        };
        Python::attach(|py| {
            let cls = py
                .import("ado.errors")
                .and_then(|m| m.getattr(class))
                .and_then(|c| c.cast_into::<PyType>().map_err(PyErr::from));
            match (cls, os_args) {
                (Ok(cls), Some(args)) => PyErr::from_type(cls, args),
                (Ok(cls), None) => PyErr::from_type(cls, message),
                (Err(_), _) => PyValueError::new_err(message),
            }
        })
    }
}

/// `Result` for glue functions.
pub type PyAdoResult<T> = Result<T, PyAdoError>;
