//! Error bridge: `ado_core::Error` → the Python exception tree defined in `ado.errors`.
//!
//! The classes live in Python (so that `InvalidInputError` can be both an `AdoError` and a
//! `ValueError`); they are looked up when an error is raised.

use ado_core::Error;
use pyo3::exceptions::{PyKeyboardInterrupt, PyMemoryError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyType;
use std::io::ErrorKind;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

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
            Error::Interrupted => return PyKeyboardInterrupt::new_err(message),
            Error::Shard { .. } => ("ShardError", None),
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

/// A panic's payload as text.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

/// Run `work`, turning a panic into an `InternalError` (a `PanicException` must never reach
/// Python: it is a `BaseException`, which `except Exception` does not catch).
pub fn no_panic<T>(work: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    catch_unwind(AssertUnwindSafe(work))
        .unwrap_or_else(|p| Err(Error::internal(format!("panic: {}", panic_message(&*p)))))
}

/// How often a waiting call looks for pending Python signals (Ctrl-C).
const SIGNAL_POLL: Duration = Duration::from_millis(20);

/// Run `work` on a helper thread without the GIL while this thread checks Python's signals every
/// 20 ms: on Ctrl-C the cancel flag handed to `work` is set, the work is awaited (it polls the
/// flag between domains) and the signal's exception (`KeyboardInterrupt`) is raised. Panics
/// become `InternalError`. Off the main thread no signal is ever pending, so this only waits.
pub fn interruptible<T: Send>(
    py: Python<'_>,
    work: impl FnOnce(&AtomicBool) -> Result<T, Error> + Send,
) -> PyResult<T> {
    let cancel = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel();
    // A Receiver is not Sync; the mutex lets the GIL-free closures below borrow it.
    let rx = std::sync::Mutex::new(rx);
    let recv = |timeout: Option<Duration>| match rx.lock() {
        Ok(rx) => match timeout {
            Some(t) => rx.recv_timeout(t),
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        },
        Err(_) => Err(mpsc::RecvTimeoutError::Disconnected),
    };
    std::thread::scope(|scope| {
        let cancel = &cancel;
        scope.spawn(move || {
            let _ = tx.send(no_panic(|| work(cancel)));
        });
        loop {
            match py.detach(|| recv(Some(SIGNAL_POLL))) {
                Ok(result) => return result.map_err(|e| PyErr::from(PyAdoError(e))),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Err(signal) = py.check_signals() {
                        cancel.store(true, Ordering::Relaxed);
                        let _ = py.detach(|| recv(None));
                        return Err(signal);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(PyAdoError(Error::internal("worker thread vanished")).into())
                }
            }
        }
    })
}
