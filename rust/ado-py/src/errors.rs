//! Error bridge: `ado_core::Error` → the Python exception tree defined in `ado.errors`.
//!
//! The classes live in Python (so that `InvalidInputError` can be both an `AdoError` and a
//! `ValueError`); they are looked up when an error is raised.

use ado_core::Error;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyType;

/// Newtype so that `?` converts core errors into Python exceptions (orphan rule).
pub struct PyAdoError(pub Error);

impl From<Error> for PyAdoError {
    fn from(e: Error) -> Self {
        PyAdoError(e)
    }
}

impl From<PyAdoError> for PyErr {
    fn from(e: PyAdoError) -> PyErr {
        let class = match &e.0 {
            Error::InvalidInput(_) => "InvalidInputError",
            Error::Fit { .. } => "FitError",
            Error::State(_) => "StateError",
            Error::Shard { .. } | Error::Io { .. } => "ShardError",
        };
        let message = e.0.to_string();
        Python::attach(|py| {
            let cls = py
                .import("ado.errors")
                .and_then(|m| m.getattr(class))
                .and_then(|c| c.cast_into::<PyType>().map_err(PyErr::from));
            match cls {
                Ok(cls) => PyErr::from_type(cls, message),
                Err(_) => PyValueError::new_err(message),
            }
        })
    }
}

/// `Result` for glue functions.
pub type PyAdoResult<T> = Result<T, PyAdoError>;
