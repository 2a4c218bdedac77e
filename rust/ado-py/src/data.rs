//! Bindings of `ado_core::data`: shard indexing and the mixture loader core.
//!
//! The Python wrapper `ado.data.MixtureLoader` owns configuration, pickling and the public API;
//! this class only holds the Rust loader. Heavy work (indexing, reading, packing) runs with the
//! GIL released.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use ado_core::data::index_shards;
use ado_core::data::loader::{Batch, Loader, LoaderConfig, LoaderState, Remote, Tokens};
use ado_core::data::sampler::Mode;
use ado_core::data::shard::{
    build_index, check_local_path, file_digest, IndexSource, ReadAt, ShardIndex,
};
use ado_core::data::stream::{Fetch, PackSpec, TokenFormat, Tokenize};
use ado_core::Error;
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::errors::{no_panic, PyAdoError, PyAdoResult};

fn source_name(s: IndexSource) -> &'static str {
    match s {
        IndexSource::Cache => "cache",
        IndexSource::Built => "built",
        IndexSource::BuiltUncached => "uncached",
        IndexSource::Rejected => "rejected",
    }
}

/// Index one shard (or load its valid sidecar). Returns a summary dict.
#[pyfunction]
#[pyo3(signature = (path, cache_dir=None))]
pub fn index_shard<'py>(
    py: Python<'py>,
    path: PathBuf,
    cache_dir: Option<PathBuf>,
) -> PyAdoResult<Bound<'py, PyDict>> {
    let mut res = py.detach(|| no_panic(|| index_shards(&[path], cache_dir.as_deref(), 1)))?;
    let (idx, source) = res.pop().ok_or_else(|| Error::internal("no index"))?;
    summary(py, &idx, source_name(source))
}

/// Index a local file without writing any sidecar; the encoded index (what a sidecar holds).
#[pyfunction]
pub fn index_file<'py>(py: Python<'py>, path: PathBuf) -> PyAdoResult<Bound<'py, PyBytes>> {
    let bytes = py.detach(|| {
        no_panic(|| {
            check_local_path(&path)?;
            build_index(&path).map(|i| i.encode())
        })
    })?;
    Ok(PyBytes::new(py, &bytes))
}

/// Summary of an encoded index (as `index_shard` returns, `source="sidecar"`); `name` is used
/// in the error when the bytes are not a valid index.
#[pyfunction]
pub fn decode_index<'py>(
    py: Python<'py>,
    data: &[u8],
    name: &str,
) -> PyAdoResult<Bound<'py, PyDict>> {
    let idx = no_panic(|| {
        ShardIndex::decode(data).ok_or_else(|| Error::Shard {
            path: PathBuf::from(name),
            message: "not a valid ado index".into(),
        })
    })?;
    summary(py, &idx, "sidecar")
}

/// A shard read through a Python callable `read(offset, length) -> bytes` (ranged GETs); the
/// first exception it raises is kept, to be raised again as is.
struct PyReadAt<'py> {
    read: Bound<'py, PyAny>,
    failed: std::cell::RefCell<Option<PyErr>>,
}

impl ReadAt for PyReadAt<'_> {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> std::io::Result<usize> {
        let out = self.read.call1((pos, buf.len())).map_err(|e| {
            let text = e.to_string();
            self.failed.borrow_mut().get_or_insert(e);
            std::io::Error::other(text)
        })?;
        let bytes = out
            .cast::<PyBytes>()
            .map_err(|_| std::io::Error::other("read returned no bytes"))?
            .as_bytes();
        let n = bytes.len().min(buf.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        Ok(n)
    }
}

/// Whether the encoded index `data` tiles its archive (see `ShardIndex::check_tiling`), reading
/// the archive through `read(offset, length) -> bytes`: `None`, or why not. What it reads is a
/// tar header after the last member and in each gap between members (none in a plain ustar
/// shard but the end). An exception of `read` (a failed transfer) is raised as is.
#[pyfunction]
pub fn check_tiling(data: &[u8], name: &str, read: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    let idx = no_panic(|| {
        ShardIndex::decode(data).ok_or_else(|| Error::Shard {
            path: PathBuf::from(name),
            message: "not a valid ado index".into(),
        })
    })
    .map_err(PyAdoError::from)?;
    let src = PyReadAt {
        read: read.clone(),
        failed: std::cell::RefCell::new(None),
    };
    let verdict = idx.check_tiling(&src).err();
    match src.failed.into_inner() {
        Some(err) => Err(err),
        None => Ok(verdict),
    }
}

/// `(size, xxh3-64 as 16 hex digits)` of a whole file (GIL released).
#[pyfunction]
pub fn file_hash(py: Python<'_>, path: PathBuf) -> PyAdoResult<(u64, String)> {
    let (size, h) = py.detach(|| no_panic(|| file_digest(Path::new(&path))))?;
    Ok((size, format!("{h:016x}")))
}

fn summary<'py>(
    py: Python<'py>,
    idx: &ShardIndex,
    source: &str,
) -> PyAdoResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    let set = |k: &str, v: Bound<'py, PyAny>| out.set_item(k, v);
    let r: PyResult<()> = (|| {
        set("samples", idx.len().into_pyobject(py)?.into_any())?;
        set("members", idx.members.len().into_pyobject(py)?.into_any())?;
        set("file_size", idx.file_size.into_pyobject(py)?.into_any())?;
        set("bytes_read", idx.bytes_read.into_pyobject(py)?.into_any())?;
        set(
            "header_hash",
            format!("{:016x}", idx.header_hash)
                .into_pyobject(py)?
                .into_any(),
        )?;
        set(
            "content_hash",
            format!("{:016x}", idx.content_hash)
                .into_pyobject(py)?
                .into_any(),
        )?;
        set("source", source.into_pyobject(py)?.into_any())?;
        set("exts", PyList::new(py, &idx.exts)?.into_any())?;
        let tokens = PyDict::new(py);
        for (ext, n) in idx.token_counts() {
            tokens.set_item(ext, n)?;
        }
        set("tokens", tokens.into_any())?;
        Ok(())
    })();
    r.map_err(|e| PyAdoError(Error::invalid(e.to_string())))?;
    Ok(out)
}

/// A sample key and its members `(ext, offset, size)`.
type SampleMembers = (String, Vec<(String, u64, u64)>);

/// Members of every sample of a shard: `[(key, [(ext, offset, size), ...]), ...]`.
#[pyfunction]
#[pyo3(signature = (path, cache_dir=None))]
pub fn shard_members(
    py: Python<'_>,
    path: PathBuf,
    cache_dir: Option<PathBuf>,
) -> PyAdoResult<Vec<SampleMembers>> {
    let mut res = py.detach(|| no_panic(|| index_shards(&[path], cache_dir.as_deref(), 1)))?;
    let (idx, _) = res.pop().ok_or_else(|| Error::internal("no index"))?;
    Ok((0..idx.len())
        .map(|i| {
            let ms = idx
                .sample(i)
                .iter()
                .map(|m| (idx.exts[m.ext as usize].clone(), m.offset, m.size))
                .collect();
            (idx.keys[i].clone(), ms)
        })
        .collect())
}

/// A Python tokenizer callable: `str -> sequence of int`.
struct PyTokenizer(Py<PyAny>);

impl Tokenize for PyTokenizer {
    fn encode(&self, text: &[u8]) -> Result<Vec<u64>, String> {
        let text = std::str::from_utf8(text).map_err(|e| format!("text is not UTF-8: {e}"))?;
        Python::try_attach(|py| {
            let out = self.0.bind(py).call1((text,)).map_err(|e| e.to_string())?;
            out.extract::<Vec<u64>>()
                .map_err(|e| format!("tokenizer must return ints: {e}"))
        })
        .unwrap_or_else(|| Err("the Python interpreter is shutting down".into()))
    }
}

/// The Python node cache (`ado.data.cache.ShardCache`) seen from the core.
struct PyFetcher(Py<PyAny>);

impl Fetch for PyFetcher {
    fn acquire(&self, url: &str) -> Result<PathBuf, Error> {
        Python::try_attach(|py| {
            let out = self
                .0
                .bind(py)
                .call_method1("acquire", (url,))
                .map_err(|e| Error::Remote(e.value(py).to_string()))?;
            out.extract::<PathBuf>()
                .map_err(|e| Error::Remote(format!("fetcher returned no path: {e}")))
        })
        .unwrap_or_else(|| {
            Err(Error::Remote(
                "the Python interpreter is shutting down".into(),
            ))
        })
    }

    fn read_ranges(&self, url: &str, ranges: &[(u64, u64)]) -> Result<Option<Vec<Vec<u8>>>, Error> {
        Python::try_attach(|py| {
            let out = self
                .0
                .bind(py)
                .call_method1("read_ranges", (url, ranges.to_vec()))
                .map_err(|e| Error::Remote(e.value(py).to_string()))?;
            if out.is_none() {
                return Ok(None);
            }
            let parts = out
                .extract::<Vec<Bound<'_, PyBytes>>>()
                .map_err(|e| Error::Remote(format!("fetcher returned no list of bytes: {e}")))?;
            Ok(Some(parts.iter().map(|b| b.as_bytes().to_vec()).collect()))
        })
        .unwrap_or_else(|| {
            Err(Error::Remote(
                "the Python interpreter is shutting down".into(),
            ))
        })
    }

    fn release(&self, url: &str) {
        // At interpreter shutdown there is nothing to release: the process's locks go with it.
        Python::try_attach(|py| {
            if let Err(e) = self.0.bind(py).call_method1("release", (url,)) {
                e.write_unraisable(py, None);
            }
        });
    }
}

/// What the cheap getters read: updated after each operation that changes it, never held
/// while anything else is locked or called, so a Python thread may wait for it attached.
#[derive(Clone)]
struct Snapshot {
    step: u64,
    weights: Vec<f64>,
}

/// The loader, lent to one operation at a time (see `docs/data-path.md`).
struct Slot {
    loader: Option<Box<Loader>>,
    /// Thread of the operation that has the loader out.
    owner: Option<std::thread::ThreadId>,
    /// Process that lent it: a child forked while another thread had it out never gets it.
    owner_pid: u32,
}

/// The Rust half of `ado.data.MixtureLoader`.
///
/// Concurrency: every operation takes the loader out of `slot` (waiting detached from Python
/// while another operation has it), runs detached, and puts it back; no Rust lock is held while
/// the loader calls into Python (remote fetcher, tokenizer). The getters `step` and `weights`
/// read `snap` and never wait on an operation.
#[pyclass(name = "MixtureLoaderCore", module = "ado._core", frozen)]
pub struct PyMixtureLoaderCore {
    slot: Mutex<Slot>,
    returned: Condvar,
    snap: Mutex<Snapshot>,
    num_samples: Vec<u64>,
    fingerprint: String,
    packed: bool,
    rejected_sidecars: Vec<PathBuf>,
}

/// The loader on loan to one operation; put back (and waiters woken) when dropped.
struct Lease<'a> {
    core: &'a PyMixtureLoaderCore,
    loader: Option<Box<Loader>>,
}

impl std::ops::Deref for Lease<'_> {
    type Target = Loader;
    fn deref(&self) -> &Loader {
        match &self.loader {
            Some(l) => l,
            None => unreachable!("a lease holds its loader until dropped"),
        }
    }
}

impl std::ops::DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut Loader {
        match &mut self.loader {
            Some(l) => l,
            None => unreachable!("a lease holds its loader until dropped"),
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut slot = lock(&self.core.slot);
        slot.loader = self.loader.take();
        slot.owner = None;
        drop(slot);
        self.core.returned.notify_all();
    }
}

/// The fields of `ado.data.PackConfig` the core reads (attributes of the Python object).
#[derive(FromPyObject)]
struct PackArgs {
    seq_len: usize,
    eos_id: u32,
    field: String,
    format: String,
    vocab_size: Option<u64>,
    tokenizer: Option<Py<PyAny>>,
    dtype: String,
}

/// The fields of `ado.data.LoaderConfig` the core reads (attributes of the Python object,
/// validated there): the configuration crosses the boundary whole, and no default lives here.
#[derive(FromPyObject)]
struct ConfigArgs {
    batch_size: usize,
    seed: u64,
    rank: usize,
    world_size: usize,
    mode: String,
    pack: Option<PackArgs>,
    readahead_bytes: usize,
    readahead_threads: usize,
    index_threads: usize,
    max_open_files: usize,
    /// `cache_dir`, else the default folder (resolved in Python).
    index_dir: PathBuf,
}

impl PackArgs {
    fn spec(self) -> Result<PackSpec, Error> {
        let int64 = match self.dtype.as_str() {
            "int64" => true,
            "int32" => false,
            other => {
                return Err(Error::invalid(format!(
                    "pack dtype {other:?} is not int64 or int32"
                )))
            }
        };
        Ok(PackSpec {
            seq_len: self.seq_len,
            eos: self.eos_id,
            field: self.field,
            format: TokenFormat::parse(&self.format)?,
            vocab_size: self.vocab_size,
            tokenizer: self
                .tokenizer
                .map(|t| Arc::new(PyTokenizer(t)) as Arc<dyn Tokenize>),
            int64,
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl PyMixtureLoaderCore {
    /// Borrow the loader (call detached: it waits while another operation has it).
    fn lease(&self) -> Result<Lease<'_>, Error> {
        let me = std::thread::current().id();
        let mut slot = lock(&self.slot);
        loop {
            if let Some(loader) = slot.loader.take() {
                slot.owner = Some(me);
                slot.owner_pid = std::process::id();
                return Ok(Lease {
                    core: self,
                    loader: Some(loader),
                });
            }
            if slot.owner_pid != std::process::id() {
                return Err(Error::invalid(
                    "this process was forked while another thread was using the loader; build \
                     a new loader in the child",
                ));
            }
            if slot.owner == Some(me) {
                return Err(Error::invalid(
                    "the loader was used from inside its own tokenizer or shard fetcher \
                     (re-entrant call); only its step and weights may be read there",
                ));
            }
            slot = self
                .returned
                .wait(slot)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Run `f` on the loader, detached from Python (waiting for the loader included).
    fn with_loader<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Loader) -> Result<T, Error> + Send,
    ) -> PyAdoResult<T> {
        Ok(py.detach(|| {
            no_panic(|| {
                let mut lease = self.lease()?;
                let out = f(&mut lease)?;
                *lock(&self.snap) = Snapshot {
                    step: lease.step(),
                    weights: lease.weights().to_vec(),
                };
                Ok(out)
            })
        })?)
    }
}

/// True while Python's cyclic garbage collector runs (set by [`gc_phase`], registered in
/// `gc.callbacks` when the module is imported).
static GC_COLLECTING: AtomicBool = AtomicBool::new(false);

/// `gc.callbacks` entry: notes when a collection starts and stops.
#[pyfunction]
pub fn gc_phase(phase: &str, #[allow(unused_variables)] info: &Bound<'_, PyAny>) {
    GC_COLLECTING.store(phase == "start", Ordering::Release);
}

/// Reaper threads still stopping a loader the collector freed, and the condvar told when one
/// ends. A reaper's loader may call back into Python (a read-ahead thread inside the fetcher,
/// the release of its shards): that must end before the interpreter finalises, or the thread
/// is killed there by a forced unwind through Rust frames, which aborts the process.
static REAPERS: Mutex<usize> = Mutex::new(0);
static REAPED: Condvar = Condvar::new();

/// One running reaper, counted from before its thread starts until it ends (or fails to start).
struct Reaping;

impl Reaping {
    fn start() -> Self {
        *lock(&REAPERS) += 1;
        Reaping
    }
}

impl Drop for Reaping {
    fn drop(&mut self) {
        let mut n = lock(&REAPERS);
        *n = n.saturating_sub(1);
        REAPED.notify_all();
    }
}

/// Wait (detached from Python) until every reaper has ended, at most `timeout_s` seconds; whether
/// none is left. Called at interpreter exit, before finalisation.
#[pyfunction]
pub fn wait_for_reapers(py: Python<'_>, timeout_s: f64) -> PyAdoResult<bool> {
    if !(0.0..=86_400.0).contains(&timeout_s) {
        return Err(Error::invalid(format!(
            "timeout_s must be between 0 and 86400 seconds, got {timeout_s}"
        ))
        .into());
    }
    let timeout = std::time::Duration::from_secs_f64(timeout_s);
    Ok(py.detach(|| {
        let (n, _) = REAPED
            .wait_timeout_while(lock(&REAPERS), timeout, |n| *n > 0)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *n == 0
    }))
}

impl Drop for PyMixtureLoaderCore {
    fn drop(&mut self) {
        let loader = self
            .slot
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .loader
            .take();
        if GC_COLLECTING.load(Ordering::Acquire) {
            // The collector frees garbage in whichever thread allocated at that moment, and
            // that thread may hold any lock (the cache's, a logging handler's) that a
            // read-ahead thread or the fetcher's release needs: waiting for them here could
            // deadlock. A reaper thread stops, joins and releases instead.
            let (tx, rx) = std::sync::mpsc::channel();
            let reaping = Reaping::start();
            let reaper = std::thread::Builder::new()
                .name("ado-loader-reaper".into())
                .spawn(move || {
                    drop(rx.recv());
                    drop(reaping);
                });
            if reaper.is_ok() {
                let _ = tx.send(loader);
                return;
            }
        }
        // Joining the read-ahead threads must not hold the interpreter: one may be waiting
        // to call the fetcher.
        let _ = Python::try_attach(|py| py.detach(|| drop(loader)));
    }
}

#[pymethods]
impl PyMixtureLoaderCore {
    /// `domains`: `[(name, [shard paths])]`; `config`: an `ado.data.LoaderConfig` (its fields
    /// are read here: every default and bound is declared once, by that model); `weights`: the
    /// initial weights (`None`: uniform).
    #[new]
    #[pyo3(signature = (domains, config, weights, *, remote=None, fetcher=None))]
    fn new(
        py: Python<'_>,
        domains: Vec<(String, Vec<PathBuf>)>,
        config: ConfigArgs,
        weights: Option<Vec<f64>>,
        remote: Option<HashMap<String, Vec<u8>>>,
        fetcher: Option<Py<PyAny>>,
    ) -> PyAdoResult<Self> {
        let remote = match (remote, fetcher) {
            (None, _) => None,
            (Some(_), None) => return Err(Error::invalid("remote shards need a fetcher").into()),
            (Some(map), Some(f)) => {
                let mut indexes = HashMap::with_capacity(map.len());
                for (url, bytes) in map {
                    let idx = ShardIndex::decode(&bytes).ok_or_else(|| {
                        Error::Remote(format!("{url}: its index is not a valid ado index"))
                    })?;
                    indexes.insert(PathBuf::from(url), idx);
                }
                Some(Remote {
                    indexes,
                    fetch: Arc::new(PyFetcher(f)) as Arc<dyn Fetch>,
                })
            }
        };
        let (cache_dir, index_threads) = (config.index_dir, config.index_threads);
        let cfg = LoaderConfig {
            batch_size: config.batch_size,
            seed: config.seed,
            rank: config.rank,
            world_size: config.world_size,
            mode: Mode::parse(&config.mode)?,
            readahead_bytes: config.readahead_bytes,
            threads: config.readahead_threads,
            max_open_files: config.max_open_files,
            pack: config.pack.map(PackArgs::spec).transpose()?,
        };
        let loader = py.detach(move || {
            no_panic(|| {
                Loader::open_with_remote(
                    cfg,
                    domains,
                    weights,
                    Some(cache_dir.as_path()),
                    index_threads,
                    remote,
                )
            })
        })?;
        let (num_samples, fp) = (loader.num_samples(), loader.fingerprint().to_string());
        let rejected_sidecars = loader.rejected_sidecars().to_vec();
        let snap = Snapshot {
            step: loader.step(),
            weights: loader.weights().to_vec(),
        };
        Ok(PyMixtureLoaderCore {
            packed: loader.packed(),
            slot: Mutex::new(Slot {
                loader: Some(Box::new(loader)),
                owner: None,
                owner_pid: std::process::id(),
            }),
            returned: Condvar::new(),
            snap: Mutex::new(snap),
            num_samples,
            fingerprint: fp,
            rejected_sidecars,
        })
    }

    /// Local shards whose sidecar had the file's identity but did not describe the file (it
    /// left samples out): indexed again when the loader was built.
    #[getter]
    fn rejected_sidecars(&self) -> Vec<String> {
        self.rejected_sidecars
            .iter()
            .map(|p| p.display().to_string())
            .collect()
    }

    /// Samples per domain.
    #[getter]
    fn num_samples(&self) -> Vec<u64> {
        self.num_samples.clone()
    }

    /// Content fingerprint of the manifest.
    #[getter]
    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    /// The next step to be produced (a snapshot: never waits for a batch in progress).
    #[getter]
    fn step(&self) -> u64 {
        // `snap` is held only to copy it, never while waiting or calling: safe to wait attached.
        lock(&self.snap).step
    }

    /// Current weights (a snapshot: never waits for a batch in progress).
    #[getter]
    fn weights(&self) -> Vec<f64> {
        lock(&self.snap).weights.clone()
    }

    /// (shard files open now, files opened so far).
    fn file_stats(&self, py: Python<'_>) -> PyAdoResult<(usize, u64)> {
        self.with_loader(py, |l| Ok(l.file_stats()))
    }

    /// Stop the read-ahead threads (joined) and close every shard file. Idempotent.
    fn shutdown(&self, py: Python<'_>) -> PyAdoResult<()> {
        self.with_loader(py, |l| {
            l.shutdown();
            Ok(())
        })
    }

    /// Per domain, the next `depth[d]` distinct shards (indices) this rank reads.
    fn upcoming_shards(&self, py: Python<'_>, depth: Vec<usize>) -> PyAdoResult<Vec<Vec<usize>>> {
        self.with_loader(py, |l| Ok(l.upcoming_shards(&depth)))
    }

    /// Completed epochs of this rank's stream, per domain.
    fn epochs(&self, py: Python<'_>) -> PyAdoResult<Vec<u64>> {
        self.with_loader(py, |l| Ok(l.epochs()))
    }

    /// Weights for the very next batch.
    fn set_weights(&self, py: Python<'_>, weights: Vec<f64>) -> PyAdoResult<()> {
        self.with_loader(py, |l| l.set_weights(weights))
    }

    /// `(step, domain, keys, samples, tokens)`; `samples` (raw) or `tokens` (pack) is `None`.
    #[allow(clippy::type_complexity)]
    fn next_batch<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(
        u64,
        Bound<'py, PyArray1<i64>>,
        Bound<'py, PyList>,
        Option<Bound<'py, PyList>>,
        Option<Bound<'py, PyAny>>,
    )> {
        let packed = self.packed;
        // Ctrl-C while the batch waits for a read-ahead thread (maybe stuck in a stalled remote
        // read): the wait asks for Python's signals (no Rust lock held) and stops; the handler's
        // exception (`KeyboardInterrupt`) is raised here. A fetch run by this thread itself is
        // interrupted inside Python (see `MixtureLoader.__next__`).
        let raised = std::sync::OnceLock::new();
        let interrupted = || {
            Python::try_attach(|py| match py.check_signals() {
                Ok(()) => false,
                Err(e) => {
                    let _ = raised.set(e);
                    true
                }
            })
            .unwrap_or(false)
        };
        let batch: Batch = match self.with_loader(py, |l| l.next_batch_interruptible(&interrupted))
        {
            Ok(b) => b,
            Err(PyAdoError(Error::Interrupted)) => {
                return Err(raised.into_inner().unwrap_or_else(|| {
                    pyo3::exceptions::PyKeyboardInterrupt::new_err("interrupted")
                }))
            }
            Err(e) => return Err(e.into()),
        };
        let b = batch.domains.len();
        let domain = PyArray1::from_vec(py, batch.domains.iter().map(|&d| i64::from(d)).collect());
        let keys = PyList::new(py, &batch.keys)?;
        if packed {
            let row = tokens_len(&batch.tokens).checked_div(b).unwrap_or(0);
            let arr = match batch.tokens {
                Tokens::I32(v) => Array2::from_shape_vec((b, row), v)
                    .map_err(|e| PyAdoError(Error::internal(e.to_string())))?
                    .into_pyarray(py)
                    .into_any(),
                Tokens::I64(v) => Array2::from_shape_vec((b, row), v)
                    .map_err(|e| PyAdoError(Error::internal(e.to_string())))?
                    .into_pyarray(py)
                    .into_any(),
            };
            return Ok((batch.step, domain, keys, None, Some(arr)));
        }
        let samples = PyList::empty(py);
        for s in &batch.samples {
            let d = PyDict::new(py);
            d.set_item("__key__", &s.key)?;
            for (ext, start, len) in &s.fields {
                d.set_item(ext, PyBytes::new(py, &s.data[*start..start + len]))?;
            }
            samples.append(d)?;
        }
        Ok((batch.step, domain, keys, Some(samples), None))
    }

    /// The loader state as a JSON string.
    fn state_json(&self, py: Python<'_>) -> PyAdoResult<String> {
        self.with_loader(py, |l| {
            serde_json::to_string(&l.state()).map_err(|e| Error::internal(e.to_string()))
        })
    }

    /// Restore a state from `state_json`, or (a JSON list) the states of every rank of a
    /// checkpoint saved with another world size (elastic resume).
    fn load_state_json(&self, py: Python<'_>, state: &str) -> PyAdoResult<()> {
        let malformed =
            |e: serde_json::Error| PyAdoError(Error::State(format!("malformed loader state: {e}")));
        let states: Vec<LoaderState> = if state.trim_start().starts_with('[') {
            serde_json::from_str(state).map_err(malformed)?
        } else {
            vec![serde_json::from_str(state).map_err(malformed)?]
        };
        self.with_loader(py, |l| l.load_states(&states))
    }
}

fn tokens_len(t: &Tokens) -> usize {
    match t {
        Tokens::I32(v) => v.len(),
        Tokens::I64(v) => v.len(),
    }
}
