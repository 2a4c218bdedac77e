//! Per-domain power-law fitting: `L(n) = eps + beta * n^-alpha`.
//!
//! The parameters are fitted as `theta = (a, e, alpha)` with `beta = exp(a)` and `eps = exp(e)`, and the
//! model is evaluated in log space, `log L(n) = logsumexp(a - alpha * log n, e)`, as in the ADO reference
//! implementation. The objective is
//!
//! ```text
//! J(theta) = sum_i H_delta(log L_i - log L(n_i; theta)) + P(theta) + constant
//! ```
//!
//! with `H_delta` the Huber function and `P` a sum of per-parameter limits: each of `a`, `e` and `alpha`
//! may have a lower and an upper [`Limit`], either a linear penalty past a point (the reference's
//! "soft" bounds) or a hard bound. [`FitConfig::reference`] is exactly the reference objective;
//! [`FitConfig::default`] derives its bounds from the data instead (`0 < eps <= min loss`), so it makes no
//! assumption about the loss scale.
//!
//! The solver ([`solver`]) profiles the objective over `alpha` (for a fixed `alpha` the model is linear in
//! `eps` and `beta`: a few rounds of IRLS in closed form per `alpha`), then polishes the best candidates
//! with a damped Newton method on the exact objective that lands exactly on the kinks of the penalties.
//! It is deterministic: no random restarts.

mod kernel;
mod solver;

use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Index of `a = log beta` in a parameter vector.
pub const A: usize = 0;
/// Index of `e = log eps` in a parameter vector.
pub const E: usize = 1;
/// Index of the exponent `alpha` in a parameter vector.
pub const ALPHA: usize = 2;
/// `a >= MIN_LOG_BETA` always holds (`beta >= 1e-300`), so a fitted `beta` is a positive double.
pub const MIN_LOG_BETA: f64 = -690.0;
/// Largest `alpha_grid` (the search costs `alpha_grid * search_points` per domain).
pub const MAX_ALPHA_GRID: usize = 1024;
/// Largest `search_points`.
pub const MAX_SEARCH_POINTS: usize = 16384;
/// Largest `max_iter`.
pub const MAX_ITER: usize = 100_000;
/// Parameter names, for messages.
pub const PARAM_NAMES: [&str; 3] = ["a (log beta)", "e (log eps)", "alpha"];

/// A one-sided limit on one parameter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Limit {
    /// No limit on this side.
    Free,
    /// A hard bound: the parameter never crosses `at`.
    Hard(f64),
    /// A linear penalty `weight * distance past at` (the reference's soft bounds).
    Linear { at: f64, weight: f64 },
}

impl Limit {
    fn at(self) -> Option<f64> {
        match self {
            Limit::Free => None,
            Limit::Hard(at) | Limit::Linear { at, .. } => Some(at),
        }
    }
}

/// What to fit, and how hard to search.
#[derive(Clone, Debug, PartialEq)]
pub struct FitConfig {
    /// Huber threshold on the log-space residual.
    pub huber_delta: f64,
    /// Lower limits of `(a, e, alpha)`.
    pub lower: [Limit; 3],
    /// Upper limits of `(a, e, alpha)`.
    pub upper: [Limit; 3],
    /// Hard bound `eps <= min observed loss` (derived from each domain's data).
    pub eps_below_min_loss: bool,
    /// Hard bound `eps >= ratio * min observed loss` (derived from each domain's data), if set.
    pub eps_min_ratio: Option<f64>,
    /// A constant added to the objective (the reference's `-min(alpha, 0.001)` contributes -0.001).
    pub constant: f64,
    /// Number of `alpha` values in the global profile search.
    pub alpha_grid: usize,
    /// Largest number of points used by the global search (evenly spaced); polishing uses all points.
    pub search_points: usize,
    /// Iteration cap of each Newton polish.
    pub max_iter: usize,
}

impl Default for FitConfig {
    /// Scale-free bounds: `0 <= alpha <= 1`, `1e-6 * min L <= eps <= min L`, `beta > 0`.
    fn default() -> Self {
        FitConfig {
            huber_delta: 1e-3,
            lower: [Limit::Free, Limit::Free, Limit::Hard(0.0)],
            upper: [Limit::Free, Limit::Free, Limit::Hard(1.0)],
            eps_below_min_loss: true,
            eps_min_ratio: Some(1e-6),
            constant: 0.0,
            alpha_grid: 48,
            search_points: 128,
            max_iter: 300,
        }
    }
}

/// One limit in the JSON form of [`FitConfig`]: `{"at": x, "weight": w}` (`weight` null: a hard
/// bound); an absent limit is `null`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitJson {
    at: f64,
    weight: Option<f64>,
}

/// The JSON form of [`FitConfig`]: the fields of the Python model `ado.estimators.FitConfig`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FitConfigJson {
    huber_delta: f64,
    log_beta_lower: Option<LimitJson>,
    log_beta_upper: Option<LimitJson>,
    log_eps_lower: Option<LimitJson>,
    log_eps_upper: Option<LimitJson>,
    alpha_lower: Option<LimitJson>,
    alpha_upper: Option<LimitJson>,
    eps_below_min_loss: bool,
    eps_min_ratio: Option<f64>,
    constant: f64,
    alpha_grid: usize,
    search_points: usize,
    max_iter: usize,
}

fn limit_from_json(l: Option<LimitJson>) -> Limit {
    match l {
        None => Limit::Free,
        Some(LimitJson { at, weight: None }) => Limit::Hard(at),
        Some(LimitJson {
            at,
            weight: Some(weight),
        }) => Limit::Linear { at, weight },
    }
}

fn limit_to_json(l: Limit) -> Option<LimitJson> {
    match l {
        Limit::Free => None,
        Limit::Hard(at) => Some(LimitJson { at, weight: None }),
        Limit::Linear { at, weight } => Some(LimitJson {
            at,
            weight: Some(weight),
        }),
    }
}

impl FitConfig {
    /// Parse and validate the JSON form (the Python model `ado.estimators.FitConfig`).
    pub fn from_json(json: &str) -> Result<Self> {
        let j: FitConfigJson =
            serde_json::from_str(json).map_err(|e| Error::invalid(format!("fit config: {e}")))?;
        let config = FitConfig {
            huber_delta: j.huber_delta,
            lower: [j.log_beta_lower, j.log_eps_lower, j.alpha_lower].map(limit_from_json),
            upper: [j.log_beta_upper, j.log_eps_upper, j.alpha_upper].map(limit_from_json),
            eps_below_min_loss: j.eps_below_min_loss,
            eps_min_ratio: j.eps_min_ratio,
            constant: j.constant,
            alpha_grid: j.alpha_grid,
            search_points: j.search_points,
            max_iter: j.max_iter,
        };
        config.validate()?;
        Ok(config)
    }

    /// The JSON form (what [`FitConfig::from_json`] reads).
    pub fn to_json(&self) -> String {
        let [log_beta_lower, log_eps_lower, alpha_lower] = self.lower.map(limit_to_json);
        let [log_beta_upper, log_eps_upper, alpha_upper] = self.upper.map(limit_to_json);
        let j = FitConfigJson {
            huber_delta: self.huber_delta,
            log_beta_lower,
            log_beta_upper,
            log_eps_lower,
            log_eps_upper,
            alpha_lower,
            alpha_upper,
            eps_below_min_loss: self.eps_below_min_loss,
            eps_min_ratio: self.eps_min_ratio,
            constant: self.constant,
            alpha_grid: self.alpha_grid,
            search_points: self.search_points,
            max_iter: self.max_iter,
        };
        serde_json::to_string(&j).unwrap_or_default()
    }

    /// Exactly the objective of the reference implementation (`ado.py`, `loss_fn`): Huber delta 1e-3,
    /// summed, with the linear penalties `max(alpha - 0.8, 0) - min(alpha, 0.001) + max(a - 6.5, 0) +
    /// max(0.5 - e, 0)`.
    pub fn reference() -> Self {
        FitConfig {
            huber_delta: 1e-3,
            lower: [
                Limit::Free,
                Limit::Linear {
                    at: 0.5,
                    weight: 1.0,
                },
                Limit::Linear {
                    at: 0.001,
                    weight: 1.0,
                },
            ],
            upper: [
                Limit::Linear {
                    at: 6.5,
                    weight: 1.0,
                },
                Limit::Free,
                Limit::Linear {
                    at: 0.8,
                    weight: 1.0,
                },
            ],
            eps_below_min_loss: false,
            eps_min_ratio: None,
            constant: -0.001,
            ..FitConfig::default()
        }
    }

    /// Check the configuration itself.
    pub fn validate(&self) -> Result<()> {
        if !(self.huber_delta.is_finite() && self.huber_delta > 0.0) {
            return Err(Error::invalid(format!(
                "huber_delta must be finite and > 0, got {}",
                self.huber_delta
            )));
        }
        for j in 0..3 {
            for (side, lim) in [("lower", self.lower[j]), ("upper", self.upper[j])] {
                match lim {
                    Limit::Free => {}
                    Limit::Hard(at) if at.is_finite() => {}
                    Limit::Linear { at, weight } if at.is_finite() && weight.is_finite() && weight >= 0.0 => {}
                    _ => {
                        return Err(Error::invalid(format!(
                            "{side} limit of {} must have a finite position and a finite weight >= 0, got {lim:?}",
                            PARAM_NAMES[j]
                        )))
                    }
                }
            }
            if let (Some(lo), Some(hi)) = (self.lower[j].at(), self.upper[j].at()) {
                if lo > hi {
                    return Err(Error::invalid(format!(
                        "lower limit {lo} of {} is above its upper limit {hi}",
                        PARAM_NAMES[j]
                    )));
                }
            }
        }
        if let Some(r) = self.eps_min_ratio {
            if !(r.is_finite() && r > 0.0 && r <= 1.0) {
                return Err(Error::invalid(format!(
                    "eps_min_ratio must be in (0, 1], got {r}"
                )));
            }
        }
        if !self.constant.is_finite() {
            return Err(Error::invalid("constant must be finite"));
        }
        for (name, value, lo, hi) in [
            ("alpha_grid", self.alpha_grid, 2, MAX_ALPHA_GRID),
            ("search_points", self.search_points, 3, MAX_SEARCH_POINTS),
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

    /// The limits in force for one domain, with the data-derived bounds resolved.
    fn resolve(&self, min_loss: f64) -> Limits {
        let mut lower = self.lower;
        let mut upper = self.upper;
        if lower[A] == Limit::Free {
            // beta = exp(a) stays a positive double; below this the power-law term is 0 anyway.
            lower[A] = Limit::Hard(MIN_LOG_BETA);
        }
        if self.eps_below_min_loss {
            upper[E] = tighter_upper(upper[E], min_loss.ln());
        }
        if let Some(ratio) = self.eps_min_ratio {
            lower[E] = tighter_lower(lower[E], (ratio * min_loss).ln());
        }
        Limits {
            lower,
            upper,
            constant: self.constant,
        }
    }
}

fn tighter_upper(lim: Limit, hard: f64) -> Limit {
    match lim {
        Limit::Hard(at) if at <= hard => lim,
        _ => Limit::Hard(hard),
    }
}

fn tighter_lower(lim: Limit, hard: f64) -> Limit {
    match lim {
        Limit::Hard(at) if at >= hard => lim,
        _ => Limit::Hard(hard),
    }
}

/// Per-domain limits with data-derived bounds resolved.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub lower: [Limit; 3],
    pub upper: [Limit; 3],
    pub constant: f64,
}

impl Limits {
    /// `P(theta) + constant`, or `+inf` outside a hard bound or where a parameter is NaN (no
    /// point: e.g. an anchored polish's step past `eps = 0`, whose `log eps` is NaN).
    pub fn penalty(&self, theta: &[f64; 3]) -> f64 {
        let mut p = self.constant;
        for (j, &x) in theta.iter().enumerate() {
            if x.is_nan() {
                return f64::INFINITY;
            }
            match self.lower[j] {
                Limit::Free => {}
                Limit::Hard(at) => {
                    if x < at {
                        return f64::INFINITY;
                    }
                }
                Limit::Linear { at, weight } => p += weight * (at - x).max(0.0),
            }
            match self.upper[j] {
                Limit::Free => {}
                Limit::Hard(at) => {
                    if x > at {
                        return f64::INFINITY;
                    }
                }
                Limit::Linear { at, weight } => p += weight * (x - at).max(0.0),
            }
        }
        p
    }

    /// Whether every limit is hard or absent and no lower bound exceeds its upper one: then every
    /// clamped point is inside and the penalty there is the constant.
    pub fn is_hard_box(&self) -> bool {
        (0..3).all(|j| match (self.lower[j], self.upper[j]) {
            (Limit::Linear { .. }, _) | (_, Limit::Linear { .. }) => false,
            (Limit::Hard(lo), Limit::Hard(hi)) => lo <= hi,
            _ => true,
        })
    }

    /// Clamp into the hard bounds.
    pub fn clamp(&self, theta: &mut [f64; 3]) {
        for (j, x) in theta.iter_mut().enumerate() {
            if let Limit::Hard(at) = self.lower[j] {
                *x = x.max(at);
            }
            if let Limit::Hard(at) = self.upper[j] {
                *x = x.min(at);
            }
        }
    }
}

/// One domain's fitted law.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FitResult {
    /// Irreducible loss `eps = exp(e)`.
    pub eps: f64,
    /// Scale `beta = exp(a)`.
    pub beta: f64,
    /// Exponent.
    pub alpha: f64,
    /// The objective `J` at the returned parameters (comparable across fitters).
    pub objective: f64,
    /// Number of points fitted.
    pub n_points: usize,
    /// Newton iterations spent polishing (diagnostic).
    pub iterations: usize,
}

impl FitResult {
    /// `(a, e, alpha)`.
    pub fn theta(&self) -> [f64; 3] {
        [self.beta.ln(), self.eps.ln(), self.alpha]
    }
}

/// One domain's data, validated and in log form.
pub(crate) struct Curve {
    /// `log n_i`.
    pub u: Vec<f64>,
    /// `log L_i`.
    pub y: Vec<f64>,
    /// Weight of every point in the data term: 1, or `T / M` for an evenly spaced subset of `M` of
    /// `T` points, so that the subset's sum estimates the full sum and the (unscaled) penalties
    /// keep their weight relative to the data.
    pub weight: f64,
}

impl Curve {
    /// Validate one domain's points. `domain` is only used in messages.
    pub fn new(domain: usize, n: &[f64], loss: &[f64]) -> Result<Self> {
        if n.len() != loss.len() {
            return Err(Error::invalid(format!(
                "domain {domain}: {} x-values but {} losses",
                n.len(),
                loss.len()
            )));
        }
        if loss.len() < 3 {
            return Err(Error::invalid(format!(
                "domain {domain}: {} points, at least 3 are needed to fit 3 parameters",
                loss.len()
            )));
        }
        let mut u = Vec::with_capacity(n.len());
        let mut y = Vec::with_capacity(n.len());
        for (i, (&ni, &li)) in n.iter().zip(loss).enumerate() {
            if !(ni.is_finite() && ni > 0.0) {
                return Err(Error::invalid(format!(
                    "domain {domain}: n[{i}] = {ni}; sample counts must be finite and > 0"
                )));
            }
            if !(li.is_finite() && li > 0.0) {
                return Err(Error::invalid(format!(
                    "domain {domain}: loss[{i}] = {li}; losses must be finite and > 0"
                )));
            }
            u.push(ni.ln());
            y.push(li.ln());
        }
        Ok(Curve { u, y, weight: 1.0 })
    }

    fn min_loss(&self) -> f64 {
        self.y.iter().copied().fold(f64::INFINITY, f64::min).exp()
    }
}

/// `log(beta * n^-alpha + eps)` for `u = log n`, stable.
#[inline]
pub fn log_model(theta: &[f64; 3], u: f64) -> f64 {
    let z = theta[A] - theta[ALPHA] * u;
    let e = theta[E];
    let (hi, lo) = if z > e { (z, e) } else { (e, z) };
    hi + (lo - hi).exp().ln_1p()
}

/// The Huber function.
#[inline]
pub fn huber(r: f64, delta: f64) -> f64 {
    let a = r.abs();
    if a <= delta {
        0.5 * r * r
    } else {
        delta * (a - 0.5 * delta)
    }
}

/// Fit one domain. `domain` is only used in messages.
pub fn fit_one(domain: usize, n: &[f64], loss: &[f64], config: &FitConfig) -> Result<FitResult> {
    config.validate()?;
    let curve = Curve::new(domain, n, loss)?;
    let limits = config.resolve(curve.min_loss());
    let (theta, objective, iterations) = solver::solve(&curve, &limits, config);
    if !(objective.is_finite() && theta.iter().all(|x| x.is_finite())) {
        return Err(Error::Fit {
            domain,
            message: format!(
                "the solver ended at a non-finite point {theta:?} (objective {objective})"
            ),
        });
    }
    Ok(FitResult {
        eps: theta[E].exp(),
        beta: theta[A].exp(),
        alpha: theta[ALPHA],
        objective,
        n_points: curve.y.len(),
        iterations,
    })
}

/// Fit every domain, in parallel. `ns[k]` and `losses[k]` are domain `k`'s points.
pub fn fit_many(ns: &[&[f64]], losses: &[&[f64]], config: &FitConfig) -> Result<Vec<FitResult>> {
    fit_many_cancellable(ns, losses, config, &AtomicBool::new(false))
}

/// [`fit_many`] that stops with [`Error::Interrupted`] once `cancel` is set: the flag is polled
/// before each domain, so the wait is at most one domain's fit (bounded by the config's limits).
pub fn fit_many_cancellable(
    ns: &[&[f64]],
    losses: &[&[f64]],
    config: &FitConfig,
    cancel: &AtomicBool,
) -> Result<Vec<FitResult>> {
    config.validate()?;
    if ns.len() != losses.len() {
        return Err(Error::invalid(format!(
            "{} x-value rows but {} loss rows",
            ns.len(),
            losses.len()
        )));
    }
    crate::par::scoped(losses.len(), || {
        (0..losses.len())
            .into_par_iter()
            .map(|k| {
                if cancel.load(Ordering::Relaxed) {
                    return Err(Error::Interrupted);
                }
                fit_one(k, ns[k], losses[k], config)
            })
            .collect()
    })?
}

/// The objective `J` of `config` at `(eps, beta, alpha)` for one domain's points, with the data-derived
/// bounds of `config` resolved from these points (`+inf` outside a hard bound).
pub fn objective(
    domain: usize,
    n: &[f64],
    loss: &[f64],
    eps: f64,
    beta: f64,
    alpha: f64,
    config: &FitConfig,
) -> Result<f64> {
    config.validate()?;
    let curve = Curve::new(domain, n, loss)?;
    if !(eps > 0.0 && beta > 0.0 && alpha.is_finite()) {
        return Err(Error::invalid(format!(
            "domain {domain}: parameters must satisfy eps > 0, beta > 0, finite alpha; got eps={eps}, beta={beta}, alpha={alpha}"
        )));
    }
    let limits = config.resolve(curve.min_loss());
    let theta = [beta.ln(), eps.ln(), alpha];
    Ok(solver::data_term(&curve, &theta, config.huber_delta) + limits.penalty(&theta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_cancel_flag_stops_the_fit() {
        let n: Vec<f64> = (1..=50).map(|i| i as f64 * 10.0).collect();
        let y: Vec<f64> = n.iter().map(|x| 2.0 + 5.0 * x.powf(-0.3)).collect();
        let (ns, ys) = (vec![n.as_slice(); 8], vec![y.as_slice(); 8]);
        let cancel = AtomicBool::new(true);
        let r = fit_many_cancellable(&ns, &ys, &FitConfig::default(), &cancel);
        assert!(matches!(r, Err(Error::Interrupted)));
        cancel.store(false, Ordering::Relaxed);
        let fits = fit_many_cancellable(&ns, &ys, &FitConfig::default(), &cancel).expect("fit");
        assert_eq!(fits.len(), 8);
    }

    #[test]
    fn a_nan_parameter_is_outside_every_limit() {
        for config in [FitConfig::default(), FitConfig::reference()] {
            let limits = config.resolve(2.0);
            let inside = [1.0, 0.5, 0.3];
            assert!(limits.penalty(&inside).is_finite());
            for j in 0..3 {
                let mut theta = inside;
                theta[j] = f64::NAN;
                assert_eq!(limits.penalty(&theta), f64::INFINITY, "{}", PARAM_NAMES[j]);
            }
        }
    }

    #[test]
    fn search_sizes_are_bounded() {
        for (grid, points, iters) in [
            (MAX_ALPHA_GRID + 1, 128, 300),
            (48, MAX_SEARCH_POINTS + 1, 300),
            (48, 128, MAX_ITER + 1),
        ] {
            let cfg = FitConfig {
                alpha_grid: grid,
                search_points: points,
                max_iter: iters,
                ..FitConfig::default()
            };
            assert!(cfg.validate().is_err());
        }
    }

    #[test]
    fn json_form_round_trips_and_rejects_unknown_fields() {
        for config in [FitConfig::default(), FitConfig::reference()] {
            assert_eq!(FitConfig::from_json(&config.to_json()).ok(), Some(config));
        }
        let mut json: serde_json::Value =
            serde_json::from_str(&FitConfig::default().to_json()).unwrap_or_default();
        json["alpha_gird"] = serde_json::json!(48);
        let err = FitConfig::from_json(&json.to_string())
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("alpha_gird")));
        json = serde_json::from_str(&FitConfig::default().to_json()).unwrap_or_default();
        json["alpha_grid"] = serde_json::json!(0);
        assert!(FitConfig::from_json(&json.to_string()).is_err()); // validated
    }

    fn curve(eps: f64, beta: f64, alpha: f64, t: usize) -> (Vec<f64>, Vec<f64>) {
        let n: Vec<f64> = (1..=t).map(|i| 1000.0 * i as f64).collect();
        let l = n.iter().map(|&x| eps + beta * x.powf(-alpha)).collect();
        (n, l)
    }

    #[test]
    fn recovers_clean_parameters_with_default_config() {
        for &(eps, beta, alpha) in &[(1.8, 30.0, 0.3), (0.9, 12.0, 0.25), (0.05, 5.0, 0.5)] {
            let (n, l) = curve(eps, beta, alpha, 400);
            let fit = fit_one(0, &n, &l, &FitConfig::default()).expect("fit");
            assert!((fit.eps - eps).abs() < 1e-4 * eps.max(1.0), "{fit:?}");
            assert!((fit.alpha - alpha).abs() < 1e-4, "{fit:?}");
            assert!((fit.beta / beta - 1.0).abs() < 1e-3, "{fit:?}");
        }
    }

    #[test]
    fn reference_objective_matches_hand_computation() {
        let n: [f64; 3] = [10.0, 100.0, 1000.0];
        let l: [f64; 3] = [3.0, 2.5, 2.2];
        let (eps, beta, alpha) = (1.5_f64, 4.0_f64, 0.9_f64);
        let theta = [beta.ln(), eps.ln(), alpha];
        let mut want = 0.0;
        for i in 0..3 {
            let pred = eps + beta * n[i].powf(-alpha);
            want += huber(l[i].ln() - pred.ln(), 1e-3);
        }
        want += (alpha - 0.8_f64).max(0.0) - alpha.min(0.001)
            + (theta[0] - 6.5_f64).max(0.0)
            + (0.5 - theta[1]).max(0.0);
        let got =
            objective(0, &n, &l, eps, beta, alpha, &FitConfig::reference()).expect("objective");
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }

    #[test]
    fn bad_input_names_the_domain() {
        let err = fit_many(
            &[&[1.0, 2.0, 3.0]],
            &[&[1.0, f64::NAN, 1.0]],
            &FitConfig::default(),
        )
        .expect_err("NaN must be rejected");
        assert!(err.to_string().contains("domain 0") && err.to_string().contains("loss[1]"));
        let err =
            fit_one(3, &[1.0, 2.0], &[1.0, 1.0], &FitConfig::default()).expect_err("2 points");
        assert!(err.to_string().contains("domain 3"));
        let err =
            fit_one(1, &[1.0, 0.0, 3.0], &[1.0, 1.0, 1.0], &FitConfig::default()).expect_err("n=0");
        assert!(err.to_string().contains("n[1]"));
    }

    #[test]
    fn deterministic_bitwise() {
        let (n, mut l) = curve(2.0, 20.0, 0.35, 300);
        for (i, x) in l.iter_mut().enumerate() {
            *x *= 1.0 + 0.01 * ((i * 7919 % 101) as f64 / 101.0 - 0.5);
        }
        let a = fit_one(0, &n, &l, &FitConfig::reference()).expect("fit");
        let b = fit_one(0, &n, &l, &FitConfig::reference()).expect("fit");
        assert_eq!(a.theta().map(f64::to_bits), b.theta().map(f64::to_bits));
    }
}
