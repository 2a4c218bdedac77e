//! The learning-rate-aware scaling law of Tissue et al. ("Scaling Law with Learning Rate
//! Annealing", arXiv 2408.11029): the whole loss curve under any learning-rate schedule,
//!
//! ```text
//! L(s) = L0 + A * S1(s)^-alpha - C * S2(s)
//! S1(s) = sum_{i <= s} eta_i                      (the area under the learning-rate curve)
//! S2(s) = sum_{i <= s} m_i,  m_i = lambda * m_{i-1} + (eta_{i-1} - eta_i),  m_0 = 0
//! ```
//!
//! (`S2` is the annealing area: its momentum form lets the loss keep falling for a while after the
//! learning rate drops.) By default a rise of the learning rate (warmup) does not enter `m`
//! (`max(eta_{i-1} - eta_i, 0)`): counted, a warmup to the peak leaves `m` at `-peak`, decaying
//! over about `1 / (1 - lambda)` steps, so `S2` goes deeply negative and the annealing term
//! predicts a loss that *rises* long after warmup; [`LrFitConfig::count_rises`] restores the
//! literal formula. One law per domain, with `L0, A, C >= 0` and `alpha` in
//! `[alpha_lower, alpha_upper]`.
//!
//! The fit minimises the sum of squared residuals. It is global and deterministic: for a fixed
//! `alpha` the model is linear in `(L0, A, C)`, so the non-negative least-squares problem is solved
//! exactly (every active set of the three bounds is tried, each with a QR solve); that profile is
//! evaluated on an evenly spaced grid of `alpha`, and each of its best local minima is polished by a
//! golden-section search on its bracket, which converges to the minimum of the (exactly computed)
//! profile. Domains are fitted in parallel.

use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fit::{MAX_ALPHA_GRID, MAX_ITER};

/// Largest `polish_starts` (each start costs up to `max_iter` profile evaluations).
pub const MAX_POLISH_STARTS: usize = 64;

/// Settings of the learning-rate-aware fit. Its JSON form is the Python model
/// `ado.estimators.LrFitConfig` (same fields, same defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LrFitConfig {
    /// `lambda`, the decay of the annealing momentum `m_i` (in `[0, 1)`).
    pub decay: f64,
    /// Smallest exponent considered (> 0: at 0 the power term is a second constant).
    pub alpha_lower: f64,
    /// Largest exponent considered.
    pub alpha_upper: f64,
    /// Exponents evaluated by the global profile search (evenly spaced, ends included).
    pub alpha_grid: usize,
    /// Local minima of the profile that are polished.
    pub polish_starts: usize,
    /// Golden-section iterations per polish (each shrinks the bracket by 0.618).
    pub max_iter: usize,
    /// Whether rises of the learning rate (warmup) enter the annealing momentum (the literal
    /// formula); by default only decreases do.
    pub count_rises: bool,
}

impl Default for LrFitConfig {
    fn default() -> Self {
        LrFitConfig {
            decay: 0.999,
            alpha_lower: 0.01,
            alpha_upper: 3.0,
            alpha_grid: 96,
            polish_starts: 3,
            max_iter: 80,
            count_rises: false,
        }
    }
}

impl LrFitConfig {
    /// Parse and validate the JSON form.
    pub fn from_json(json: &str) -> Result<Self> {
        let config: LrFitConfig = serde_json::from_str(json)
            .map_err(|e| Error::invalid(format!("lr fit config: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// The JSON form (what [`LrFitConfig::from_json`] reads).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Check the configuration itself.
    pub fn validate(&self) -> Result<()> {
        if !(self.decay.is_finite() && (0.0..1.0).contains(&self.decay)) {
            return Err(Error::invalid(format!(
                "decay (lambda) must be in [0, 1), got {}",
                self.decay
            )));
        }
        if !(self.alpha_lower.is_finite()
            && self.alpha_upper.is_finite()
            && self.alpha_lower > 0.0
            && self.alpha_lower < self.alpha_upper)
        {
            return Err(Error::invalid(format!(
                "need 0 < alpha_lower < alpha_upper (finite), got alpha_lower={} alpha_upper={}",
                self.alpha_lower, self.alpha_upper
            )));
        }
        // The same search bounds as the power-law fitter's (its constants, declared once).
        for (name, value, lo, hi) in [
            ("alpha_grid", self.alpha_grid, 3, MAX_ALPHA_GRID),
            ("polish_starts", self.polish_starts, 1, MAX_POLISH_STARTS),
            ("max_iter", self.max_iter, 1, MAX_ITER),
        ] {
            if !(lo..=hi).contains(&value) {
                return Err(Error::invalid(format!(
                    "{name} must be in [{lo}, {hi}], got {value}"
                )));
            }
        }
        Ok(())
    }
}

/// One domain's fitted law.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrFitResult {
    /// Irreducible loss `L0`.
    pub l0: f64,
    /// Scale `A` of the power term.
    pub a: f64,
    /// Exponent `alpha`.
    pub alpha: f64,
    /// Scale `C` of the annealing term.
    pub c: f64,
    /// Sum of squared residuals at the returned parameters.
    pub objective: f64,
    /// Number of points fitted.
    pub n_points: usize,
    /// Profile evaluations spent (diagnostic).
    pub evaluations: usize,
}

/// The areas `(S1, S2)` of a learning-rate schedule, at every step `0..S` (`count_rises`: see
/// [`LrFitConfig::count_rises`]).
///
/// Errors on an empty schedule, a learning rate that is negative or not finite (naming the step),
/// areas that overflow a double (rates near `f64::MAX`) and a `decay` outside `[0, 1)`.
pub fn areas(lr: &[f64], decay: f64, count_rises: bool) -> Result<(Vec<f64>, Vec<f64>)> {
    if lr.is_empty() {
        return Err(Error::invalid(
            "lr is empty: give the learning rate of every step",
        ));
    }
    if !(decay.is_finite() && (0.0..1.0).contains(&decay)) {
        return Err(Error::invalid(format!(
            "decay (lambda) must be in [0, 1), got {decay}"
        )));
    }
    let mut s1 = Vec::with_capacity(lr.len());
    let mut s2 = Vec::with_capacity(lr.len());
    let (mut a1, mut a2, mut m) = (0.0, 0.0, 0.0);
    let mut prev = lr[0];
    for (i, &eta) in lr.iter().enumerate() {
        if !(eta.is_finite() && eta >= 0.0) {
            return Err(Error::invalid(format!(
                "lr[{i}] = {eta}; learning rates must be finite and >= 0"
            )));
        }
        let fall = prev - eta;
        m = decay * m + if count_rises { fall } else { fall.max(0.0) };
        prev = eta;
        a1 += eta;
        a2 += m;
        if !(a1.is_finite() && a2.is_finite()) {
            return Err(Error::invalid(format!(
                "the learning rates up to lr[{i}] = {eta:e} sum to more than a double holds (S1 or \
                 S2 overflows); learning rates must be finite and >= 0 with a finite sum"
            )));
        }
        s1.push(a1);
        s2.push(a2);
    }
    Ok((s1, s2))
}

/// The observed points of every domain, with the areas at their steps.
struct Design {
    s1: Vec<f64>,
    s2: Vec<f64>,
    /// The constant column and `-S2`, the fixed columns of the linear model.
    ones: Vec<f64>,
    neg_s2: Vec<f64>,
}

/// Look the areas up at `steps`, checking every step is in the schedule and has `S1 > 0`.
fn design(lr: &[f64], steps: &[i64], decay: f64, count_rises: bool) -> Result<Design> {
    let (s1, s2) = areas(lr, decay, count_rises)?;
    let mut out = Design {
        s1: Vec::with_capacity(steps.len()),
        s2: Vec::with_capacity(steps.len()),
        ones: vec![1.0; steps.len()],
        neg_s2: Vec::with_capacity(steps.len()),
    };
    for (j, &s) in steps.iter().enumerate() {
        let Some(i) = usize::try_from(s).ok().filter(|&i| i < lr.len()) else {
            return Err(Error::invalid(format!(
                "steps[{j}] = {s} is outside the schedule: lr covers steps 0..{}",
                lr.len()
            )));
        };
        if s1[i] <= 0.0 {
            return Err(Error::invalid(format!(
                "steps[{j}] = {s}: the learning rate is 0 at every step up to it (S1 = 0), where \
                 the law is undefined; drop the points before training starts"
            )));
        }
        out.s1.push(s1[i]);
        out.s2.push(s2[i]);
        out.neg_s2.push(-s2[i]);
    }
    Ok(out)
}

/// Least squares of `y` on the columns `cols` (at most 3) by modified Gram–Schmidt with one
/// re-orthogonalisation. Returns the coefficients, or `None` if the columns are (numerically)
/// dependent.
fn least_squares(cols: &[&[f64]], y: &[f64]) -> Option<Vec<f64>> {
    let m = cols.len();
    let t = y.len();
    let mut q: Vec<Vec<f64>> = Vec::with_capacity(m);
    let mut r = vec![vec![0.0; m]; m];
    for (j, col) in cols.iter().enumerate() {
        let mut v = col.to_vec();
        let norm0 = dot(&v, &v).sqrt();
        if !(norm0 > 0.0 && norm0.is_finite()) {
            return None;
        }
        for _pass in 0..2 {
            for (i, qi) in q.iter().enumerate() {
                let h = dot(qi, &v);
                r[i][j] += h;
                for (x, &qx) in v.iter_mut().zip(qi) {
                    *x -= h * qx;
                }
            }
        }
        let norm = dot(&v, &v).sqrt();
        if norm.is_nan() || norm <= 1e-10 * norm0 {
            return None;
        }
        r[j][j] = norm;
        v.iter_mut().for_each(|x| *x /= norm);
        q.push(v);
    }
    let qty: Vec<f64> = q.iter().map(|qi| dot(qi, y)).collect();
    let mut x = vec![0.0; m];
    for i in (0..m).rev() {
        let mut s = qty[i];
        for k in i + 1..m {
            s -= r[i][k] * x[k];
        }
        x[i] = s / r[i][i];
    }
    debug_assert!(t >= m);
    Some(x)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The exact non-negative least-squares fit of `(L0, A, C)` for one `alpha`: every active set is
/// tried and the best feasible one kept (with 3 unknowns this is the NNLS solution).
/// Returns `(sse, [l0, a, c])`.
fn profile(design: &Design, y: &[f64], alpha: f64, scratch: &mut Vec<f64>) -> (f64, [f64; 3]) {
    scratch.clear();
    scratch.extend(design.s1.iter().map(|&s| s.powf(-alpha)));
    let columns: [&[f64]; 3] = [&design.ones, scratch, &design.neg_s2];
    let mut best = (dot(y, y), [0.0; 3]);
    for mask in 1u8..8 {
        let free: Vec<usize> = (0..3).filter(|j| mask & (1 << j) != 0).collect();
        let cols: Vec<&[f64]> = free.iter().map(|&j| columns[j]).collect();
        let Some(coef) = least_squares(&cols, y) else {
            continue;
        };
        if coef.iter().any(|&c| c.is_nan() || c < 0.0) {
            continue;
        }
        let mut theta = [0.0; 3];
        for (&j, &c) in free.iter().zip(&coef) {
            theta[j] = c;
        }
        let sse: f64 = (0..y.len())
            .map(|i| {
                let r = y[i] - (theta[0] + theta[1] * scratch[i] - theta[2] * design.s2[i]);
                r * r
            })
            .sum();
        if sse < best.0 {
            best = (sse, theta);
        }
    }
    best
}

/// Fit one domain to points already looked up in `design`.
fn fit_design(
    domain: usize,
    design: &Design,
    loss: &[f64],
    config: &LrFitConfig,
    cancel: &AtomicBool,
) -> Result<LrFitResult> {
    if loss.len() != design.s1.len() {
        return Err(Error::invalid(format!(
            "domain {domain}: {} losses but {} steps",
            loss.len(),
            design.s1.len()
        )));
    }
    if loss.len() < 4 {
        return Err(Error::invalid(format!(
            "domain {domain}: {} points, at least 4 are needed to fit L0, A, alpha and C",
            loss.len()
        )));
    }
    if let Some((i, &l)) = loss
        .iter()
        .enumerate()
        .find(|(_, l)| !(l.is_finite() && **l > 0.0))
    {
        return Err(Error::invalid(format!(
            "domain {domain}: loss[{i}] = {l}; losses must be finite and > 0"
        )));
    }
    let mut scratch = Vec::with_capacity(loss.len());
    let mut evaluations = 0usize;
    // Each evaluation is O(points); the cancel flag is polled before each, so a Ctrl-C waits for
    // one evaluation, not a whole domain's fit.
    let mut eval = |alpha: f64| {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        evaluations += 1;
        Ok(profile(design, loss, alpha, &mut scratch))
    };
    let (lo, hi, g) = (config.alpha_lower, config.alpha_upper, config.alpha_grid);
    let grid: Vec<f64> = (0..g)
        .map(|i| lo + (hi - lo) * i as f64 / (g - 1) as f64)
        .collect();
    let values: Vec<(f64, [f64; 3])> = grid.iter().map(|&a| eval(a)).collect::<Result<_>>()?;
    // Local minima of the profile (ends included), best first; ties keep grid order.
    let mut minima: Vec<usize> = (0..g)
        .filter(|&i| {
            let v = values[i].0;
            (i == 0 || v <= values[i - 1].0) && (i + 1 == g || v <= values[i + 1].0)
        })
        .collect();
    minima.sort_by(|&i, &j| values[i].0.total_cmp(&values[j].0));
    minima.truncate(config.polish_starts);
    let mut best = (values[minima[0]].0, grid[minima[0]], values[minima[0]].1);
    for &i in &minima {
        let (mut a, mut b) = (grid[i.saturating_sub(1)], grid[(i + 1).min(g - 1)]);
        // golden-section search of the profile on [a, b]
        let ratio = 0.5 * (5f64.sqrt() - 1.0);
        let mut x1 = b - ratio * (b - a);
        let mut x2 = a + ratio * (b - a);
        let mut f1 = eval(x1)?;
        let mut f2 = eval(x2)?;
        for _ in 0..config.max_iter {
            if b - a <= 1e-12 * (1.0 + b.abs()) {
                break;
            }
            if f1.0 <= f2.0 {
                b = x2;
                x2 = x1;
                f2 = f1;
                x1 = b - ratio * (b - a);
                f1 = eval(x1)?;
            } else {
                a = x1;
                x1 = x2;
                f1 = f2;
                x2 = a + ratio * (b - a);
                f2 = eval(x2)?;
            }
        }
        for (x, f) in [(x1, f1), (x2, f2)] {
            if f.0 < best.0 {
                best = (f.0, x, f.1);
            }
        }
    }
    let (objective, alpha, [l0, a, c]) = best;
    if !(objective.is_finite() && l0.is_finite() && a.is_finite() && c.is_finite()) {
        return Err(Error::Fit {
            domain,
            message: format!(
                "the fit ended at a non-finite point L0={l0} A={a} alpha={alpha} C={c} \
                 (objective {objective})"
            ),
        });
    }
    Ok(LrFitResult {
        l0,
        a,
        alpha,
        c,
        objective,
        n_points: loss.len(),
        evaluations,
    })
}

/// Fit one law per row of `losses`, observed at `steps` of the schedule `lr`, in parallel.
pub fn fit_many(
    lr: &[f64],
    steps: &[i64],
    losses: &[&[f64]],
    config: &LrFitConfig,
) -> Result<Vec<LrFitResult>> {
    fit_many_cancellable(lr, steps, losses, config, &AtomicBool::new(false))
}

/// [`fit_many`] that stops with [`Error::Interrupted`] once `cancel` is set (polled before each
/// profile evaluation, so the wait is one evaluation: O(points)).
pub fn fit_many_cancellable(
    lr: &[f64],
    steps: &[i64],
    losses: &[&[f64]],
    config: &LrFitConfig,
    cancel: &AtomicBool,
) -> Result<Vec<LrFitResult>> {
    config.validate()?;
    let design = design(lr, steps, config.decay, config.count_rises)?;
    crate::par::scoped(losses.len(), || {
        (0..losses.len())
            .into_par_iter()
            .map(|k| fit_design(k, &design, losses[k], config, cancel))
            .collect()
    })?
}

/// The laws' predictions at `steps` under the schedule `lr`: one row per law
/// `(l0, a, alpha, c)`; `config` gives the areas' `decay` and `count_rises`.
pub fn predict(
    lr: &[f64],
    steps: &[i64],
    laws: &[[f64; 4]],
    config: &LrFitConfig,
) -> Result<Vec<Vec<f64>>> {
    config.validate()?;
    let design = design(lr, steps, config.decay, config.count_rises)?;
    Ok(laws
        .iter()
        .map(|&[l0, a, alpha, c]| {
            design
                .s1
                .iter()
                .zip(&design.s2)
                .map(|(&s1, &s2)| l0 + a * s1.powf(-alpha) - c * s2)
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(total: usize, peak: f64, warmup: usize, floor: f64) -> Vec<f64> {
        (0..total)
            .map(|i| {
                if i < warmup {
                    peak * (i + 1) as f64 / warmup as f64
                } else {
                    let p = (i - warmup) as f64 / (total - warmup) as f64;
                    floor + 0.5 * (peak - floor) * (1.0 + (std::f64::consts::PI * p).cos())
                }
            })
            .collect()
    }

    fn wsd(total: usize, peak: f64, warmup: usize, decay_from: usize) -> Vec<f64> {
        (0..total)
            .map(|i| {
                if i < warmup {
                    peak * (i + 1) as f64 / warmup as f64
                } else if i < decay_from {
                    peak
                } else {
                    peak * (1.0 - (i - decay_from) as f64 / (total - decay_from) as f64).max(0.01)
                }
            })
            .collect()
    }

    fn check_recovers(lr: &[f64], law: [f64; 4]) {
        let steps: Vec<i64> = (20..lr.len() as i64).step_by(7).collect();
        let clean = &predict(lr, &steps, &[law], &LrFitConfig::default()).expect("predict")[0];
        let fit = fit_many(lr, &steps, &[clean], &LrFitConfig::default()).expect("fit")[0];
        let [l0, a, alpha, c] = law;
        assert!((fit.alpha - alpha).abs() < 1e-5, "{fit:?} vs {law:?}");
        assert!(
            (fit.l0 - l0).abs() < 1e-5 * l0.max(1.0),
            "{fit:?} vs {law:?}"
        );
        assert!((fit.a / a - 1.0).abs() < 1e-4, "{fit:?} vs {law:?}");
        assert!((fit.c / c - 1.0).abs() < 1e-4, "{fit:?} vs {law:?}");
    }

    #[test]
    fn recovers_clean_parameters_under_cosine_and_wsd() {
        let cos = cosine(3000, 3e-3, 100, 3e-4);
        let wsd = wsd(3000, 2e-3, 100, 2200);
        for law in [
            [1.8, 1.2, 0.45, 0.15],
            [0.9, 2.5, 0.3, 0.3],
            [2.5, 0.4, 1.1, 0.05],
        ] {
            check_recovers(&cos, law);
            check_recovers(&wsd, law);
        }
    }

    #[test]
    fn areas_follow_the_definition() {
        let lr = [1.0, 1.0, 0.5, 0.5, 0.0];
        let (s1, s2) = areas(&lr, 0.5, false).expect("areas");
        assert_eq!(s1, vec![1.0, 2.0, 2.5, 3.0, 3.0]);
        // m = 0, 0, 0.5, 0.25, 0.625
        assert_eq!(s2, vec![0.0, 0.0, 0.5, 0.75, 1.375]);
        // a rise: counted, m = 0, -1, -0.5; ignored, m = 0, 0, 0
        let up = [0.0, 1.0, 1.0];
        assert_eq!(
            areas(&up, 0.5, true).expect("areas").1,
            vec![0.0, -1.0, -1.5]
        );
        assert_eq!(
            areas(&up, 0.5, false).expect("areas").1,
            vec![0.0, 0.0, 0.0]
        );
    }

    #[test]
    fn constant_schedule_leaves_the_annealing_term_at_zero() {
        let lr = vec![1e-3; 500];
        let steps: Vec<i64> = (10..500).step_by(5).collect();
        let clean = &predict(
            &lr,
            &steps,
            &[[2.0, 0.5, 0.6, 0.0]],
            &LrFitConfig::default(),
        )
        .expect("predict")[0];
        let fit = fit_many(&lr, &steps, &[clean], &LrFitConfig::default()).expect("fit")[0];
        assert_eq!(fit.c, 0.0);
        assert!(
            (fit.alpha - 0.6).abs() < 1e-5 && (fit.l0 - 2.0).abs() < 1e-5,
            "{fit:?}"
        );
    }

    #[test]
    fn bad_inputs_are_named() {
        let cfg = LrFitConfig::default();
        let msg = |r: Result<Vec<LrFitResult>>| r.expect_err("must fail").to_string();
        let lr = vec![1e-3; 10];
        let steps = [1, 2, 3, 4];
        let y = [3.0, 2.9, 2.8, 2.7];
        assert!(msg(fit_many(&[], &steps, &[&y], &cfg)).contains("lr is empty"));
        let mut bad = lr.clone();
        bad[3] = f64::NAN;
        assert!(msg(fit_many(&bad, &steps, &[&y], &cfg)).contains("lr[3]"));
        assert!(msg(fit_many(&lr, &[1, 2, 3, 10], &[&y], &cfg)).contains("steps[3] = 10"));
        assert!(msg(fit_many(&lr, &[-1, 2, 3, 4], &[&y], &cfg)).contains("steps[0] = -1"));
        assert!(msg(fit_many(&lr, &steps, &[&[3.0, 0.0, 1.0, 1.0]], &cfg)).contains("loss[1]"));
        assert!(msg(fit_many(&lr, &steps[..3], &[&y[..3]], &cfg)).contains("at least 4"));
        let mut zero = lr.clone();
        zero[0] = 0.0;
        zero[1] = 0.0;
        assert!(msg(fit_many(&zero, &[1, 2, 3, 4], &[&y], &cfg)).contains("S1 = 0"));
        let bad_cfg = LrFitConfig {
            decay: 1.0,
            ..cfg.clone()
        };
        assert!(msg(fit_many(&lr, &steps, &[&y], &bad_cfg)).contains("decay"));
    }

    #[test]
    fn search_sizes_and_overflowing_areas_are_refused() {
        for (grid, starts, iters) in [
            (MAX_ALPHA_GRID + 1, 3, 80),
            (96, MAX_POLISH_STARTS + 1, 80),
            (96, 3, MAX_ITER + 1),
        ] {
            let cfg = LrFitConfig {
                alpha_grid: grid,
                polish_starts: starts,
                max_iter: iters,
                ..LrFitConfig::default()
            };
            assert!(cfg.validate().is_err(), "{cfg:?}");
        }
        let huge = vec![1e308; 10];
        let err = areas(&huge, 0.999, false).expect_err("overflow");
        assert!(err.to_string().contains("overflows"), "{err}");
    }

    #[test]
    fn a_set_cancel_flag_stops_the_fit() {
        let lr = vec![1e-3; 100];
        let steps: Vec<i64> = (10..100).collect();
        let y: Vec<f64> = steps.iter().map(|&s| 2.0 + (s as f64).powf(-0.5)).collect();
        let cancel = AtomicBool::new(true);
        let r = fit_many_cancellable(&lr, &steps, &[&y], &LrFitConfig::default(), &cancel);
        assert!(matches!(r, Err(Error::Interrupted)));
    }

    #[test]
    fn json_form_round_trips_and_rejects_unknown_fields() {
        let cfg = LrFitConfig::default();
        assert_eq!(LrFitConfig::from_json(&cfg.to_json()).ok(), Some(cfg));
        let err = LrFitConfig::from_json(r#"{"decay": 0.9, "lamda": 1}"#).expect_err("unknown");
        assert!(err.to_string().contains("lamda"));
    }

    #[test]
    fn deterministic_bitwise() {
        let lr = cosine(1000, 1e-3, 50, 1e-4);
        let steps: Vec<i64> = (10..1000).step_by(3).collect();
        let mut y = predict(
            &lr,
            &steps,
            &[[2.0, 0.3, 0.5, 0.2]],
            &LrFitConfig::default(),
        )
        .expect("predict");
        for (i, v) in y[0].iter_mut().enumerate() {
            *v *= 1.0 + 0.01 * ((i * 7919 % 101) as f64 / 101.0 - 0.5);
        }
        let rows: Vec<&[f64]> = vec![&y[0], &y[0]];
        let fits = fit_many(&lr, &steps, &rows, &LrFitConfig::default()).expect("fit");
        assert_eq!(fits[0], fits[1]);
    }
}
