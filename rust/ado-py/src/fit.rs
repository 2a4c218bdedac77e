//! Bindings of `ado_core::fit` and `ado_core::estimator`.

use ado_core::estimator::{EstimatorConfig, EstimatorState, PowerLawEstimator, StateColumns};
use ado_core::fit::{self, FitConfig, FitResult};
use ado_core::lr_law::{self, LrFitConfig, LrFitResult};
use ado_core::Error;
use numpy::ndarray::{Array2, ArrayView2};
use numpy::{PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;

use crate::errors::{interruptible, no_panic, PyAdoError, PyAdoResult};

/// A validated fitter configuration (built by `ado.estimators.FitConfig`).
#[pyclass(name = "FitSpec", module = "ado._core", frozen)]
pub struct PyFitSpec {
    pub inner: FitConfig,
}

#[pymethods]
impl PyFitSpec {
    /// From the JSON form of `ado.estimators.FitConfig` (its `model_dump_json()`).
    #[new]
    fn new(config_json: &str) -> PyAdoResult<Self> {
        Ok(PyFitSpec {
            inner: FitConfig::from_json(config_json)?,
        })
    }

    fn __repr__(&self) -> String {
        format!("FitSpec({:?})", self.inner)
    }
}

/// A validated configuration of the learning-rate-aware fit (built by `ado.estimators.LrFitConfig`).
#[pyclass(name = "LrFitSpec", module = "ado._core", frozen)]
pub struct PyLrFitSpec {
    pub inner: LrFitConfig,
}

#[pymethods]
impl PyLrFitSpec {
    /// From the JSON form of `ado.estimators.LrFitConfig` (its `model_dump_json()`).
    #[new]
    fn new(config_json: &str) -> PyAdoResult<Self> {
        Ok(PyLrFitSpec {
            inner: LrFitConfig::from_json(config_json)?,
        })
    }

    fn __repr__(&self) -> String {
        format!("LrFitSpec({:?})", self.inner)
    }
}

/// The defaults of the Rust configurations, as JSON: `(fit config, estimator config, lr fit
/// config)` (the Python models' defaults are tested against these).
#[pyfunction]
pub fn default_configs() -> PyAdoResult<(String, String, String)> {
    let estimator = serde_json::to_string(&EstimatorConfig::default())
        .map_err(|e| Error::internal(e.to_string()))?;
    Ok((
        FitConfig::default().to_json(),
        estimator,
        LrFitConfig::default().to_json(),
    ))
}

/// Arrays of a batch of learning-rate-aware fits: (l0, a, alpha, c, objective, n_points,
/// evaluations).
type LrFitArrays<'py> = (
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
);

/// Fit `L(s) = L0 + A * S1(s)^-alpha - C * S2(s)` to every row of `losses` (K, T) observed at
/// `steps` (T,) of the schedule `lr` (S,), in parallel, without the GIL.
#[pyfunction]
pub fn fit_lr_laws<'py>(
    py: Python<'py>,
    lr: PyReadonlyArray1<'py, f64>,
    steps: PyReadonlyArray1<'py, i64>,
    losses: PyReadonlyArray2<'py, f64>,
    spec: &PyLrFitSpec,
) -> PyResult<LrFitArrays<'py>> {
    let lr = lr.as_array().to_vec();
    let steps = steps.as_array().to_vec();
    let l = losses.as_array();
    if l.ncols() != steps.len() {
        return Err(PyAdoError(Error::invalid(format!(
            "losses have {} points per row but steps has {}",
            l.ncols(),
            steps.len()
        )))
        .into());
    }
    let ys: Rows = l.rows().into_iter().map(|r| r.to_vec()).collect();
    let config = &spec.inner;
    let fits = interruptible(py, |cancel| {
        let yr: Vec<&[f64]> = ys.iter().map(Vec::as_slice).collect();
        lr_law::fit_many_cancellable(&lr, &steps, &yr, config, cancel)
    })?;
    let col = |f: fn(&LrFitResult) -> f64| PyArray1::from_vec(py, fits.iter().map(f).collect());
    let icol = |f: fn(&LrFitResult) -> i64| PyArray1::from_vec(py, fits.iter().map(f).collect());
    Ok((
        col(|r| r.l0),
        col(|r| r.a),
        col(|r| r.alpha),
        col(|r| r.c),
        col(|r| r.objective),
        icol(|r| r.n_points as i64),
        icol(|r| r.evaluations as i64),
    ))
}

/// The areas `(S1, S2)` of the schedule `lr` at every step, with the `decay` and
/// `count_rises` of `spec`.
#[pyfunction]
pub fn lr_areas<'py>(
    py: Python<'py>,
    lr: PyReadonlyArray1<'py, f64>,
    spec: &PyLrFitSpec,
) -> PyAdoResult<(F64Array<'py>, F64Array<'py>)> {
    let c = &spec.inner;
    let (s1, s2) = lr_law::areas(&lr.as_array().to_vec(), c.decay, c.count_rises)?;
    Ok((PyArray1::from_vec(py, s1), PyArray1::from_vec(py, s2)))
}

/// Predictions (K, T) of the laws `params` (K, 4: l0, a, alpha, c) at `steps` of `lr`, with the
/// areas of `spec`.
#[pyfunction]
pub fn predict_lr_laws<'py>(
    py: Python<'py>,
    lr: PyReadonlyArray1<'py, f64>,
    steps: PyReadonlyArray1<'py, i64>,
    params: PyReadonlyArray2<'py, f64>,
    spec: &PyLrFitSpec,
) -> PyAdoResult<Bound<'py, PyArray2<f64>>> {
    let p = params.as_array();
    if p.ncols() != 4 {
        return Err(Error::invalid(format!(
            "params must have 4 columns (l0, a, alpha, c), got {}",
            p.ncols()
        ))
        .into());
    }
    let laws: Vec<[f64; 4]> = p
        .rows()
        .into_iter()
        .map(|r| [r[0], r[1], r[2], r[3]])
        .collect();
    let (lr, steps) = (lr.as_array().to_vec(), steps.as_array().to_vec());
    let t = steps.len();
    let k = laws.len();
    let config = spec.inner.clone();
    let out = py.detach(move || lr_law::predict(&lr, &steps, &laws, &config))?;
    let flat: Vec<f64> = out.into_iter().flatten().collect();
    let arr = numpy::ndarray::Array2::from_shape_vec((k, t), flat)
        .map_err(|e| Error::internal(e.to_string()))?;
    Ok(PyArray2::from_owned_array(py, arr))
}

/// A 1-D float64 numpy array.
type F64Array<'py> = Bound<'py, PyArray1<f64>>;

/// Arrays of a batch of fits: (eps, beta, alpha, objective, n_points, iterations).
type FitArrays<'py> = (
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
);

fn fit_arrays<'py>(py: Python<'py>, fits: &[FitResult]) -> FitArrays<'py> {
    let col = |f: fn(&FitResult) -> f64| PyArray1::from_vec(py, fits.iter().map(f).collect());
    let icol = |f: fn(&FitResult) -> i64| PyArray1::from_vec(py, fits.iter().map(f).collect());
    (
        col(|r| r.eps),
        col(|r| r.beta),
        col(|r| r.alpha),
        col(|r| r.objective),
        icol(|r| r.n_points as i64),
        icol(|r| r.iterations as i64),
    )
}

/// Owned rows of a 2-D array.
type Rows = Vec<Vec<f64>>;

/// Rows of `n` (one shared row, or one per domain) and of `losses`, as owned vectors.
fn rows(
    n: &PyReadonlyArray2<'_, f64>,
    losses: &PyReadonlyArray2<'_, f64>,
) -> PyAdoResult<(Rows, Rows)> {
    let (n, l) = (n.as_array(), losses.as_array());
    let k = l.nrows();
    if n.nrows() != 1 && n.nrows() != k {
        return Err(Error::invalid(format!(
            "n has {} rows; expected 1 (shared) or one per domain ({k})",
            n.nrows()
        ))
        .into());
    }
    if n.ncols() != l.ncols() {
        return Err(Error::invalid(format!(
            "n has {} points per row but losses have {}",
            n.ncols(),
            l.ncols()
        ))
        .into());
    }
    let ys: Vec<Vec<f64>> = l.rows().into_iter().map(|r| r.to_vec()).collect();
    let xs: Vec<Vec<f64>> = (0..k)
        .map(|i| n.row(if n.nrows() == 1 { 0 } else { i }).to_vec())
        .collect();
    Ok((xs, ys))
}

/// Fit `L = eps + beta * n^-alpha` to every row of `losses` (K, T), in parallel, without the GIL.
#[pyfunction]
pub fn fit_power_laws<'py>(
    py: Python<'py>,
    n: PyReadonlyArray2<'py, f64>,
    losses: PyReadonlyArray2<'py, f64>,
    spec: &PyFitSpec,
) -> PyResult<FitArrays<'py>> {
    let (xs, ys) = rows(&n, &losses)?;
    let config = &spec.inner;
    let fits = interruptible(py, |cancel| {
        let xr: Vec<&[f64]> = xs.iter().map(Vec::as_slice).collect();
        let yr: Vec<&[f64]> = ys.iter().map(Vec::as_slice).collect();
        fit::fit_many_cancellable(&xr, &yr, config, cancel)
    })?;
    Ok(fit_arrays(py, &fits))
}

/// The objective of `spec` at per-domain parameters, for comparing fitters on equal terms.
#[pyfunction]
pub fn objective<'py>(
    py: Python<'py>,
    n: PyReadonlyArray2<'py, f64>,
    losses: PyReadonlyArray2<'py, f64>,
    eps: PyReadonlyArray1<'py, f64>,
    beta: PyReadonlyArray1<'py, f64>,
    alpha: PyReadonlyArray1<'py, f64>,
    spec: &PyFitSpec,
) -> PyAdoResult<Bound<'py, PyArray1<f64>>> {
    let (xs, ys) = rows(&n, &losses)?;
    let (eps, beta, alpha) = (eps.as_array(), beta.as_array(), alpha.as_array());
    let k = ys.len();
    if eps.len() != k || beta.len() != k || alpha.len() != k {
        return Err(Error::invalid(format!(
            "expected {k} values each of eps, beta and alpha, got {}, {} and {}",
            eps.len(),
            beta.len(),
            alpha.len()
        ))
        .into());
    }
    let out = no_panic(|| {
        (0..k)
            .map(|d| fit::objective(d, &xs[d], &ys[d], eps[d], beta[d], alpha[d], &spec.inner))
            .collect::<Result<Vec<f64>, Error>>()
    })?;
    Ok(PyArray1::from_vec(py, out))
}

/// [`PyPowerLawEstimator::state_columns`]'s arrays.
type ColumnArrays<'py> = (
    Option<u64>,
    Bound<'py, PyArray2<u64>>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray2<f64>>,
    Bound<'py, PyArray2<f64>>,
);

/// The online estimator (see `ado_core::estimator`).
#[pyclass(name = "PowerLawEstimator", module = "ado._core")]
pub struct PyPowerLawEstimator {
    inner: PowerLawEstimator,
}

#[pymethods]
impl PyPowerLawEstimator {
    /// `config_json`: the JSON form of `ado.estimators.PowerLawEstimatorConfig`.
    #[new]
    fn new(num_domains: usize, config_json: &str) -> PyAdoResult<Self> {
        let config = EstimatorConfig::from_json(config_json)?;
        Ok(PyPowerLawEstimator {
            inner: PowerLawEstimator::new(num_domains, config)?,
        })
    }

    #[getter]
    fn num_domains(&self) -> usize {
        self.inner.num_domains()
    }

    #[getter]
    fn last_step(&self) -> Option<u64> {
        self.inner.last_step()
    }

    /// Ingest one step: per-domain mean losses (NaN = absent) and x-axis values.
    #[pyo3(signature = (step, losses, n, fill=None))]
    fn update(
        &mut self,
        step: u64,
        losses: PyReadonlyArray1<'_, f64>,
        n: PyReadonlyArray1<'_, f64>,
        fill: Option<f64>,
    ) -> PyAdoResult<()> {
        let (l, x) = (losses.as_array(), n.as_array());
        let inner = &mut self.inner;
        no_panic(|| match (l.as_slice(), x.as_slice()) {
            (Some(l), Some(x)) => inner.update(step, l, x, fill),
            _ => inner.update(step, &l.to_vec(), &x.to_vec(), fill),
        })?;
        Ok(())
    }

    /// Domain `d`'s fit points `(n, smoothed loss)`.
    fn points<'py>(
        &self,
        py: Python<'py>,
        d: usize,
    ) -> PyAdoResult<(F64Array<'py>, F64Array<'py>)> {
        let (x, y) = no_panic(|| self.inner.points(d))?;
        Ok((PyArray1::from_vec(py, x), PyArray1::from_vec(py, y)))
    }

    /// Fit points per domain.
    fn num_points<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        PyArray1::from_vec(
            py,
            self.inner
                .num_points()
                .into_iter()
                .map(|n| n as i64)
                .collect(),
        )
    }

    /// Fit every domain's points, in parallel, without the GIL.
    fn fit<'py>(&self, py: Python<'py>, spec: &PyFitSpec) -> PyResult<FitArrays<'py>> {
        let est = &self.inner;
        let config = &spec.inner;
        let fits = interruptible(py, |cancel| est.fit_cancellable(config, cancel))?;
        Ok(fit_arrays(py, &fits))
    }

    /// An independent copy.
    fn copy(&self) -> Self {
        PyPowerLawEstimator {
            inner: self.inner.clone(),
        }
    }

    /// The whole state as a JSON string (floats round-trip exactly).
    fn state_json(&self) -> PyAdoResult<String> {
        serde_json::to_string(&self.inner.state()).map_err(|e| {
            PyAdoError(Error::State(format!(
                "cannot serialise estimator state: {e}"
            )))
        })
    }

    /// The state as arrays: `(last_step, ints (4, K): count, ordinals, stride, points per
    /// domain; last (K,): last loss, NaN if none; raw (2, R): the rings' losses and x-values;
    /// points (2, P): the fit points' x-values and smoothed losses)`, rings and points
    /// concatenated in domain order.
    fn state_columns<'py>(&self, py: Python<'py>) -> PyAdoResult<ColumnArrays<'py>> {
        let c = self.inner.to_columns();
        let k = c.count.len();
        let ints = [c.count, c.ordinals, c.stride, c.points].concat();
        let raw = [c.raw_loss, c.raw_n].concat();
        let points = [c.points_n, c.points_y].concat();
        let two = |v: Vec<f64>| {
            let cols = v.len() / 2;
            Array2::from_shape_vec((2, cols), v).map_err(|e| Error::internal(e.to_string()))
        };
        Ok((
            c.last_step,
            PyArray2::from_owned_array(
                py,
                Array2::from_shape_vec((4, k), ints).map_err(|e| Error::internal(e.to_string()))?,
            ),
            PyArray1::from_vec(py, c.last),
            PyArray2::from_owned_array(py, two(raw)?),
            PyArray2::from_owned_array(py, two(points)?),
        ))
    }

    /// Restore `state_columns` output (validated whole first; `StateError` naming the column or
    /// the domain, and then nothing changes).
    fn load_state_columns(
        &mut self,
        last_step: Option<u64>,
        ints: PyReadonlyArray2<'_, u64>,
        last: PyReadonlyArray1<'_, f64>,
        raw: PyReadonlyArray2<'_, f64>,
        points: PyReadonlyArray2<'_, f64>,
    ) -> PyAdoResult<()> {
        let (ints, raw, points) = (ints.as_array(), raw.as_array(), points.as_array());
        for (name, rows, got) in [
            ("ints", 4, ints.nrows()),
            ("raw", 2, raw.nrows()),
            ("points", 2, points.nrows()),
        ] {
            if got != rows {
                return Err(Error::State(format!(
                    "estimator state: {name} has {got} rows, expected {rows}"
                ))
                .into());
            }
        }
        fn row<T: Copy>(a: &ArrayView2<'_, T>, i: usize) -> Vec<T> {
            a.row(i).to_vec()
        }
        let columns = StateColumns {
            last_step,
            count: row(&ints, 0),
            ordinals: row(&ints, 1),
            stride: row(&ints, 2),
            points: row(&ints, 3),
            last: last.as_array().to_vec(),
            raw_loss: row(&raw, 0),
            raw_n: row(&raw, 1),
            points_n: row(&points, 0),
            points_y: row(&points, 1),
        };
        let inner = &mut self.inner;
        no_panic(|| inner.restore_columns(columns))?;
        Ok(())
    }

    /// Restore a state from `state_json`; the configuration and domain count must match.
    fn load_state_json(&mut self, state: &str) -> PyAdoResult<()> {
        let other: EstimatorState = serde_json::from_str(state)
            .map_err(|e| PyAdoError(Error::State(format!("malformed estimator state: {e}"))))?;
        let inner = &mut self.inner;
        no_panic(|| inner.restore(other))?;
        Ok(())
    }
}
