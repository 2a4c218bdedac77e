//! Bindings of `ado_core::fit` and `ado_core::estimator`.

use ado_core::estimator::{EstimatorConfig, Missing, Overflow, PowerLawEstimator};
use ado_core::fit::{self, FitConfig, FitResult, Limit};
use ado_core::Error;
use numpy::{PyArray1, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;

use crate::errors::{PyAdoError, PyAdoResult};

/// A validated fitter configuration (built by `ado.estimators.FitConfig`).
#[pyclass(name = "FitSpec", module = "ado._core", frozen)]
pub struct PyFitSpec {
    pub inner: FitConfig,
}

type LimitSpec = Option<(f64, Option<f64>)>;

fn limit(spec: LimitSpec) -> Limit {
    match spec {
        None => Limit::Free,
        Some((at, None)) => Limit::Hard(at),
        Some((at, Some(weight))) => Limit::Linear { at, weight },
    }
}

#[pymethods]
impl PyFitSpec {
    /// Limits are `None` (free), `(at, None)` (hard bound) or `(at, weight)` (linear penalty), for
    /// `(a, e, alpha)` in that order.
    #[new]
    #[pyo3(signature = (*, huber_delta, lower, upper, eps_below_min_loss, eps_min_ratio, constant,
                        alpha_grid, search_points, max_iter))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        huber_delta: f64,
        lower: [LimitSpec; 3],
        upper: [LimitSpec; 3],
        eps_below_min_loss: bool,
        eps_min_ratio: Option<f64>,
        constant: f64,
        alpha_grid: usize,
        search_points: usize,
        max_iter: usize,
    ) -> PyAdoResult<Self> {
        let inner = FitConfig {
            huber_delta,
            lower: lower.map(limit),
            upper: upper.map(limit),
            eps_below_min_loss,
            eps_min_ratio,
            constant,
            alpha_grid,
            search_points,
            max_iter,
        };
        inner.validate()?;
        Ok(PyFitSpec { inner })
    }

    fn __repr__(&self) -> String {
        format!("FitSpec({:?})", self.inner)
    }
}

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

/// Rows of `n` (one shared row, or one per domain) and of `losses`, as owned vectors.
fn rows(
    n: &PyReadonlyArray2<'_, f64>,
    losses: &PyReadonlyArray2<'_, f64>,
) -> PyAdoResult<(Vec<Vec<f64>>, Vec<Vec<f64>>)> {
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
) -> PyAdoResult<FitArrays<'py>> {
    let (xs, ys) = rows(&n, &losses)?;
    let config = spec.inner.clone();
    let fits = py.detach(move || {
        let xr: Vec<&[f64]> = xs.iter().map(Vec::as_slice).collect();
        let yr: Vec<&[f64]> = ys.iter().map(Vec::as_slice).collect();
        fit::fit_many(&xr, &yr, &config)
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
    let out = (0..k)
        .map(|d| fit::objective(d, &xs[d], &ys[d], eps[d], beta[d], alpha[d], &spec.inner))
        .collect::<Result<Vec<f64>, Error>>()?;
    Ok(PyArray1::from_vec(py, out))
}

/// The online estimator (see `ado_core::estimator`).
#[pyclass(name = "PowerLawEstimator", module = "ado._core")]
pub struct PyPowerLawEstimator {
    inner: PowerLawEstimator,
}

fn parse_enum<T>(what: &str, value: &str, options: &[(&str, T)]) -> PyAdoResult<T>
where
    T: Copy,
{
    options
        .iter()
        .find(|(name, _)| *name == value)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            PyAdoError(Error::invalid(format!(
                "{what} must be one of {names:?}, got {value:?}"
            )))
        })
}

#[pymethods]
impl PyPowerLawEstimator {
    #[new]
    #[pyo3(signature = (num_domains, *, ignore_steps, subsample, window, order, max_points, overflow, missing))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        num_domains: usize,
        ignore_steps: u64,
        subsample: u64,
        window: usize,
        order: usize,
        max_points: Option<usize>,
        overflow: &str,
        missing: &str,
    ) -> PyAdoResult<Self> {
        let config = EstimatorConfig {
            ignore_steps,
            subsample,
            window,
            order,
            max_points,
            overflow: parse_enum(
                "overflow",
                overflow,
                &[
                    ("thin", Overflow::Thin),
                    ("drop_oldest", Overflow::DropOldest),
                ],
            )?,
            missing: parse_enum(
                "missing",
                missing,
                &[("carry", Missing::Carry), ("skip", Missing::Skip)],
            )?,
        };
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
        match (l.as_slice(), x.as_slice()) {
            (Some(l), Some(x)) => self.inner.update(step, l, x, fill)?,
            _ => self.inner.update(step, &l.to_vec(), &x.to_vec(), fill)?,
        }
        Ok(())
    }

    /// Domain `d`'s fit points `(n, smoothed loss)`.
    fn points<'py>(
        &self,
        py: Python<'py>,
        d: usize,
    ) -> PyAdoResult<(Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>)> {
        let (x, y) = self.inner.points(d)?;
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
    fn fit<'py>(&self, py: Python<'py>, spec: &PyFitSpec) -> PyAdoResult<FitArrays<'py>> {
        let est = &self.inner;
        let config = &spec.inner;
        let fits = py.detach(|| est.fit(config))?;
        Ok(fit_arrays(py, &fits))
    }

    /// The whole state as a JSON string (floats round-trip exactly).
    fn state_json(&self) -> PyAdoResult<String> {
        serde_json::to_string(&self.inner).map_err(|e| {
            PyAdoError(Error::State(format!(
                "cannot serialise estimator state: {e}"
            )))
        })
    }

    /// Restore a state from `state_json`; the configuration and domain count must match.
    fn load_state_json(&mut self, state: &str) -> PyAdoResult<()> {
        let other: PowerLawEstimator = serde_json::from_str(state)
            .map_err(|e| PyAdoError(Error::State(format!("malformed estimator state: {e}"))))?;
        self.inner.restore(other)?;
        Ok(())
    }
}
