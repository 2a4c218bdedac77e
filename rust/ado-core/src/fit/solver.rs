//! The deterministic global solver behind [`super::fit_one`].
//!
//! 1. **Profile over alpha** ([`profile`]). On an evenly spaced subset of at most `search_points`
//!    points, for each of `alpha_grid` exponents, `eps` and `beta` come from a few rounds of
//!    Huber-IRLS on the relative error `1 - (eps + beta x_i) / L_i` (the model is linear in them once
//!    alpha is fixed: five weighted sums and a 2x2 solve in the box of the limits), and the objective
//!    there is approximated without a logarithm per point. The IRLS weights carry over from one
//!    alpha to the next, and `x_i = n_i^-alpha` is updated by a factor along the grid, so the whole
//!    profile costs two exponentials per point. Each eps face (its lowest and highest value) keeps
//!    its own best profile point: along a face the objective can be so flat that it is a basin of
//!    its own. So does each soft bound of eps (the kink of a linear penalty, e.g. the reference's
//!    `eps >= e^0.5`): an optimum on it is reached from the valley beside it only by a long crawl.
//! 2. **Polish** ([`polish`]). Starts: the best two local minima of the profile, the best point of
//!    each face and soft bound, and (for curves of fewer than 64 points) a few evenly spaced
//!    profile points. Each gets a short screen of damped Newton iterations on the exact
//!    objective; the best distinct basins and the faces get a second short stage, and only the
//!    near-ties of its leader are polished to convergence. The winner is polished again on ever
//!    larger subsets, then on all points. The line search minimises a piecewise model that knows
//!    where the linear penalties and hard bounds bend, so a parameter that belongs on a kink
//!    lands exactly on it and stays there while the others move.
//!
//!    The near-ties' polish runs first in coordinates where the valleys of eps and beta trading
//!    off are nearly straight ([`polish_in`]), then finishes on the bounds and kinks.
//!
//! Nearly all the cost is in step 2: with the Huber threshold 1e-3 the objective is close to an L1
//! fit, and Newton zigzags across the kinks of the points entering and leaving the quadratic zone.
//! Each Newton step is two passes over the points ([`kernel`]: SIMD code, with the same results
//! at every vector width).

use super::kernel::{self, Scratch};
use super::{huber, log_model, Curve, FitConfig, Limit, Limits, A, ALPHA, E};

type Mat3 = [[f64; 3]; 3];

/// Gradients and curvatures below this mean the data do not depend on a parameter.
const INERT: f64 = 1e-200;

/// A polish stops once a step gains (or promises) less than this fraction of the objective.
const RELATIVE_TOLERANCE: f64 = 1e-13;

/// `sum_i H(log L_i - log L(n_i))`.
pub(crate) fn data_term(curve: &Curve, theta: &[f64; 3], delta: f64) -> f64 {
    let sum: f64 = curve
        .u
        .iter()
        .zip(&curve.y)
        .map(|(&u, &y)| huber(y - log_model(theta, u), delta))
        .sum();
    curve.weight * sum
}

fn objective(curve: &Curve, limits: &Limits, theta: &[f64; 3], delta: f64) -> f64 {
    let p = limits.penalty(theta);
    if p.is_infinite() {
        return p;
    }
    data_term(curve, theta, delta) + p
}

/// Value, gradient and two Hessians (exact, and the positive semi-definite IRLS one) of the data term.
struct Derivatives {
    value: f64,
    grad: [f64; 3],
    exact: Mat3,
    irls: Mat3,
}

/// The data term at `theta` (the same sum, in the same order, as [`derivatives_from`]'s value),
/// leaving the per-point transcendentals in `scratch`.
fn trial_value(curve: &Curve, theta: &[f64; 3], delta: f64, scratch: &mut Scratch) -> f64 {
    curve.weight * kernel::trial(&curve.u, &curve.y, *theta, delta, scratch)
}

/// Value and derivatives at `theta`, from the per-point values [`trial_value`] left in `scratch`
/// for this same `theta`.
fn derivatives_from(
    curve: &Curve,
    theta: &[f64; 3],
    delta: f64,
    scratch: &mut Scratch,
) -> Derivatives {
    // With gm = (p, 1 - p, -u p) the gradient of the model and v = (1, -1, -u), both Hessians are
    // weighted sums of the six products of gm, plus `q v v^T` terms for the exact one: 19 sums
    // over the points instead of two 3x3 matrices per point.
    let kernel::Sums {
        value,
        g,
        sw,
        si,
        sq,
    } = kernel::derivative_sums(&curve.u, *theta, delta, scratch);
    let cw = curve.weight;
    let mat = |s: &[f64; 6]| -> Mat3 {
        [
            [s[0], s[1], -s[2]],
            [s[1], s[3], -s[4]],
            [-s[2], -s[4], s[5]],
        ]
    };
    let mut irls = mat(&sw);
    let mut exact = mat(&si);
    // - psi q v v^T with v v^T = [[1, -1, -u], [-1, 1, u], [-u, u, u^2]].
    let vv = [
        [sq[0], -sq[0], -sq[1]],
        [-sq[0], sq[0], sq[1]],
        [-sq[1], sq[1], sq[2]],
    ];
    for j in 0..3 {
        for l in 0..3 {
            exact[j][l] = cw * (exact[j][l] - vv[j][l]);
            irls[j][l] *= cw;
        }
    }
    Derivatives {
        value: cw * value,
        grad: [-cw * g[0], -cw * g[1], cw * g[2]],
        exact,
        irls,
    }
}

/// One-sided derivatives of the penalty of coordinate `j` at `x`: (from the left, to the right).
fn penalty_slopes(limits: &Limits, j: usize, x: f64) -> (f64, f64) {
    let (mut left, mut right) = (0.0, 0.0);
    match limits.lower[j] {
        Limit::Free => {}
        Limit::Hard(at) => {
            if x <= at {
                left = f64::NEG_INFINITY;
            }
        }
        Limit::Linear { at, weight } => {
            if x <= at {
                left -= weight;
            }
            if x < at {
                right -= weight;
            }
        }
    }
    match limits.upper[j] {
        Limit::Free => {}
        Limit::Hard(at) => {
            if x >= at {
                right = f64::INFINITY;
            }
        }
        Limit::Linear { at, weight } => {
            if x > at {
                left += weight;
            }
            if x >= at {
                right += weight;
            }
        }
    }
    (left, right)
}

/// Solve `m x = b` for a symmetric positive definite `m` restricted to `free`; `None` if not SPD.
fn cholesky_solve(m: &Mat3, b: &[f64; 3], free: &[usize]) -> Option<[f64; 3]> {
    match *free {
        [0, 1, 2] => cholesky_solve3(m, b),
        [i, j] => cholesky_solve2(m, b, i, j),
        _ => cholesky_solve_any(m, b, free),
    }
}

/// [`cholesky_solve`] for any subset `free` (the definition the unrolled versions follow).
fn cholesky_solve_any(m: &Mat3, b: &[f64; 3], free: &[usize]) -> Option<[f64; 3]> {
    let k = free.len();
    let mut l = [[0.0; 3]; 3];
    for i in 0..k {
        for j in 0..=i {
            let mut s = m[free[i]][free[j]];
            for p in 0..j {
                s -= l[i][p] * l[j][p];
            }
            if i == j {
                if !(s > 0.0 && s.is_finite()) {
                    return None;
                }
                l[i][i] = s.sqrt();
            } else {
                l[i][j] = s / l[j][j];
            }
        }
    }
    let mut z = [0.0; 3];
    for i in 0..k {
        let mut s = b[free[i]];
        for p in 0..i {
            s -= l[i][p] * z[p];
        }
        z[i] = s / l[i][i];
    }
    let mut x = [0.0; 3];
    for i in (0..k).rev() {
        let mut s = z[i];
        for p in i + 1..k {
            s -= l[p][i] * x[p];
        }
        x[i] = s / l[i][i];
    }
    let mut out = [0.0; 3];
    for (i, &j) in free.iter().enumerate() {
        out[j] = x[i];
    }
    Some(out)
}

/// [`cholesky_solve`] with the two coordinates `i` and `j` free, unrolled: the same operations
/// in the same order.
fn cholesky_solve2(m: &Mat3, b: &[f64; 3], i: usize, j: usize) -> Option<[f64; 3]> {
    let pivot = |s: f64| (s > 0.0 && s.is_finite()).then(|| s.sqrt());
    let l00 = pivot(m[i][i])?;
    let l10 = m[j][i] / l00;
    let l11 = pivot(m[j][j] - l10 * l10)?;
    let z0 = b[i] / l00;
    let z1 = (b[j] - l10 * z0) / l11;
    let x1 = z1 / l11;
    let x0 = (z0 - l10 * x1) / l00;
    let mut out = [0.0; 3];
    out[i] = x0;
    out[j] = x1;
    Some(out)
}

/// [`cholesky_solve`] with every coordinate free, unrolled: the same operations in the same order.
fn cholesky_solve3(m: &Mat3, b: &[f64; 3]) -> Option<[f64; 3]> {
    let pivot = |s: f64| (s > 0.0 && s.is_finite()).then(|| s.sqrt());
    let l00 = pivot(m[0][0])?;
    let l10 = m[1][0] / l00;
    let l11 = pivot(m[1][1] - l10 * l10)?;
    let l20 = m[2][0] / l00;
    let l21 = (m[2][1] - l20 * l10) / l11;
    let l22 = pivot(m[2][2] - l20 * l20 - l21 * l21)?;
    let z0 = b[0] / l00;
    let z1 = (b[1] - l10 * z0) / l11;
    let z2 = (b[2] - l20 * z0 - l21 * z1) / l22;
    let x2 = z2 / l22;
    let x1 = (z1 - l21 * x2) / l11;
    let x0 = (z0 - l10 * x1 - l20 * x2) / l00;
    Some([x0, x1, x2])
}

fn limit_points(limits: &Limits, j: usize) -> [(Option<f64>, bool); 2] {
    let point = |lim: Limit| match lim {
        Limit::Free => (None, false),
        Limit::Hard(at) => (Some(at), true),
        Limit::Linear { at, .. } => (Some(at), false),
    };
    [point(limits.lower[j]), point(limits.upper[j])]
}

/// Damped Newton on the exact objective, starting from `theta`. Returns (theta, objective, iterations).
fn polish(
    curve: &Curve,
    limits: &Limits,
    delta: f64,
    theta: [f64; 3],
    max_iter: usize,
) -> ([f64; 3], f64, usize) {
    polish_in(curve, limits, delta, theta, max_iter, Coords::Log)
}

/// The coordinates a polish works in (see [`polish_in`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Coords {
    /// `(a, e, alpha)`, the fitted parameters.
    Log,
    /// `(beta, eps, alpha)`.
    Linear,
    /// `(B, S, alpha)`: the model's value `S` and slope `-B` (in `log n`) at the first point.
    Anchored,
}

/// Smallest alpha of the anchored coordinates.
const ANCHOR_MIN_ALPHA: f64 = 1e-3;

/// Whether a polish may run in linear coordinates: no linear penalty on `a` or `e` (it would not
/// be piecewise linear in `beta` and `eps`).
fn linear_ok(limits: &Limits) -> bool {
    [A, E].iter().all(|&j| {
        !matches!(limits.lower[j], Limit::Linear { .. })
            && !matches!(limits.upper[j], Limit::Linear { .. })
    })
}

/// [`polish`] in the coordinates `coords` ([`Coords::Linear`] only where [`linear_ok`]).
///
/// Where eps and beta trade off (small alpha, or eps far below the losses), the valley of the
/// objective is curved in the fitted parameters `(a, e, alpha)`, and it rises at first order off
/// its floor (the Huber threshold is small): Newton's straight steps stay short and crawl along
/// it for hundreds of iterations. In `(beta, eps)` the valley at a fixed alpha is nearly
/// straight; along alpha it keeps the model's value and slope at the first point about fixed,
/// `(S, B) = (eps + beta n0^-alpha, alpha beta n0^-alpha)`, so in the anchored coordinates
/// `(B, S, alpha)` it is nearly straight as well. The anchored map needs `alpha > 0` and leaves
/// eps's bounds curved, and its model leaves out the linear penalties: a step across a bound, or
/// one that changes a penalty, is rejected, and a linear (or, with linear penalties on `a` or
/// `e`, a logarithmic) polish finishes there.
fn polish_in(
    curve: &Curve,
    limits: &Limits,
    delta: f64,
    mut theta: [f64; 3],
    max_iter: usize,
    coords: Coords,
) -> ([f64; 3], f64, usize) {
    limits.clamp(&mut theta);
    // Returned as it is if no step is taken: the round trip through other coordinates can move
    // it by an ulp, e.g. off the kink of a penalty.
    let start = theta;
    let mut stepped = false;
    let outer_limits: &Limits = limits;
    let u0 = match coords {
        Coords::Anchored => curve.u.iter().copied().fold(f64::INFINITY, f64::min),
        _ => 0.0,
    };
    let lin_limits;
    let limits: &Limits = match coords {
        Coords::Log => outer_limits,
        Coords::Linear => {
            let map = |lim: Limit, j: usize, lower: bool| match lim {
                Limit::Hard(at) if j != ALPHA => Limit::Hard(at.exp()),
                Limit::Free if j != ALPHA && lower => Limit::Hard(f64::MIN_POSITIVE),
                other => other,
            };
            lin_limits = Limits {
                lower: std::array::from_fn(|j| map(outer_limits.lower[j], j, true)),
                upper: std::array::from_fn(|j| map(outer_limits.upper[j], j, false)),
                constant: outer_limits.constant,
            };
            &lin_limits
        }
        Coords::Anchored => {
            let alpha_lo = match outer_limits.lower[ALPHA] {
                Limit::Hard(at) => at.max(ANCHOR_MIN_ALPHA),
                _ => ANCHOR_MIN_ALPHA,
            };
            lin_limits = Limits {
                lower: [
                    Limit::Hard(f64::MIN_POSITIVE),
                    Limit::Free,
                    Limit::Hard(alpha_lo),
                ],
                upper: [Limit::Free, Limit::Free, outer_limits.upper[ALPHA]],
                constant: outer_limits.constant,
            };
            &lin_limits
        }
    };
    let hard_box = limits.is_hard_box();
    let to_theta = |x: &[f64; 3]| -> [f64; 3] {
        match coords {
            Coords::Log => *x,
            Coords::Linear => [x[A].ln(), x[E].ln(), x[ALPHA]],
            Coords::Anchored => {
                let (b, s, alpha) = (x[A], x[E], x[ALPHA]);
                let a0 = b / alpha;
                [a0.ln() + alpha * u0, (s - a0).ln(), alpha]
            }
        }
    };
    // Derivatives with respect to the working coordinates.
    let chain = |mut d: Derivatives, x: &[f64; 3]| -> Derivatives {
        match coords {
            Coords::Log => {}
            Coords::Linear => {
                let s = [1.0 / x[A], 1.0 / x[E], 1.0];
                for j in 0..3 {
                    for l in 0..3 {
                        d.exact[j][l] *= s[j] * s[l];
                        d.irls[j][l] *= s[j] * s[l];
                    }
                }
                for j in [A, E] {
                    d.exact[j][j] -= d.grad[j] * s[j] * s[j];
                    d.grad[j] *= s[j];
                }
            }
            Coords::Anchored => {
                let (b, s, alpha) = (x[A], x[E], x[ALPHA]);
                let ev = s - b / alpha;
                let dv = [-1.0 / alpha, 1.0, b / (alpha * alpha)];
                let mut hv = [[0.0; 3]; 3];
                hv[A][ALPHA] = 1.0 / (alpha * alpha);
                hv[ALPHA][A] = hv[A][ALPHA];
                hv[ALPHA][ALPHA] = -2.0 * b / (alpha * alpha * alpha);
                let jac = [
                    [1.0 / b, 0.0, u0 - 1.0 / alpha],
                    [dv[0] / ev, dv[1] / ev, dv[2] / ev],
                    [0.0, 0.0, 1.0],
                ];
                let mut ha = [[0.0; 3]; 3];
                ha[A][A] = -1.0 / (b * b);
                ha[ALPHA][ALPHA] = 1.0 / (alpha * alpha);
                let he: Mat3 = std::array::from_fn(|i| {
                    std::array::from_fn(|j| hv[i][j] / ev - dv[i] * dv[j] / (ev * ev))
                });
                let sandwich = |h: &Mat3| -> Mat3 {
                    std::array::from_fn(|i| {
                        std::array::from_fn(|j| {
                            let mut v = 0.0;
                            for p in 0..3 {
                                for q in 0..3 {
                                    v += jac[p][i] * h[p][q] * jac[q][j];
                                }
                            }
                            v
                        })
                    })
                };
                let g = d.grad;
                let mut exact = sandwich(&d.exact);
                for i in 0..3 {
                    for j in 0..3 {
                        exact[i][j] += g[A] * ha[i][j] + g[E] * he[i][j];
                    }
                }
                d.exact = exact;
                d.irls = sandwich(&d.irls);
                d.grad = std::array::from_fn(|i| (0..3).map(|p| jac[p][i] * g[p]).sum());
            }
        }
        d
    };
    match coords {
        Coords::Log => {}
        Coords::Linear => {
            theta = [theta[A].exp(), theta[E].exp(), theta[ALPHA]];
            limits.clamp(&mut theta);
        }
        Coords::Anchored => {
            let alpha = theta[ALPHA].max(ANCHOR_MIN_ALPHA);
            let a0 = (theta[A] - alpha * u0).exp();
            theta = [a0 * alpha, theta[E].exp() + a0, alpha];
            limits.clamp(&mut theta);
        }
    }
    // An anchored point past a hard bound of eps, or past eps = 0. There `log eps` is NaN (the
    // penalty is infinite), and the passes over the points would drop the eps term (a max ignores
    // NaN) and run on e^-708 in its place, whose products underflow (slow microcode assists).
    // Measured before the check: 63 of 500 fits of 11 points accepted such a step.
    // The linear penalties are not modelled in anchored coordinates: there a step is taken only
    // where they stay as they are at the start (their kinks are walls).
    let start_penalty =
        (coords == Coords::Anchored).then(|| outer_limits.penalty(&to_theta(&theta)));
    let outside = |x: &[f64; 3]| -> bool {
        start_penalty.is_some_and(|start| {
            let p = outer_limits.penalty(&to_theta(x));
            !p.is_finite() || (start.is_finite() && p != start)
        })
    };
    // The per-point buffers of this thread's last polish (a fit runs a dozen: no allocation each).
    let mut scratch = SCRATCH.with(|s| s.replace(Scratch::empty()));
    scratch.ensure(curve.y.len());
    trial_value(curve, &to_theta(&theta), delta, &mut scratch);
    let mut der = chain(
        derivatives_from(curve, &to_theta(&theta), delta, &mut scratch),
        &theta,
    );
    let mut f = der.value + limits.penalty(&theta);
    let mut mu = 1e-4;
    let mut iterations = 0;
    while iterations < max_iter {
        iterations += 1;
        // Effective gradient and the coordinates locked on a kink.
        let mut geff = [0.0; 3];
        let mut free = Small::<usize, 3>::new();
        let slopes: [(f64, f64); 3] = std::array::from_fn(|j| penalty_slopes(limits, j, theta[j]));
        // Whether the penalty is flat around theta in every free coordinate (zero slope, or a hard
        // bound): then the damped steps' promised gain only shrinks as the damping grows.
        let mut flat = true;
        for j in 0..3 {
            let (sl, sr) = slopes[j];
            let (gl, gr) = (der.grad[j] + sl, der.grad[j] + sr);
            if der.grad[j].abs() <= INERT && der.irls[j][j] <= INERT && sl == sr {
                // The data ignore this parameter (alpha once beta has underflowed): leave it.
                continue;
            }
            let moves = if gr < 0.0 {
                geff[j] = gr;
                true
            } else if gl > 0.0 {
                geff[j] = gl;
                true
            } else if sl == sr && der.irls[j][j] > INERT {
                // Smooth here and stationary: keep it in the system so curvature can still move it.
                geff[j] = der.grad[j] + sl;
                true
            } else {
                false
            };
            if moves {
                free.push(j);
                flat &=
                    (sl == 0.0 || sl == f64::NEG_INFINITY) && (sr == 0.0 || sr == f64::INFINITY);
            }
        }
        if free.is_empty() {
            break;
        }
        let scale: [f64; 3] =
            std::array::from_fn(|j| der.irls[j][j].max(der.exact[j][j].abs()).max(1e-300));
        let neg_g = geff.map(|g| -g);
        let mut accepted = false;
        // Each damping level tries the exact Newton step, then the IRLS (majorise-minimise) step,
        // which still descends where the Huber kinks make the quadratic model of Newton useless.
        'damping: while mu < 1e12 {
            let mut hopeless = 0;
            let damp = |h: &Mat3| -> Mat3 {
                let mut d = *h;
                for j in 0..3 {
                    d[j][j] += mu * scale[j];
                }
                d
            };
            let grad = der.grad;
            // (Not `for hess in [der.exact, der.irls]`: that array was a 144-byte copy a level.)
            for exact in [true, false] {
                let hmat = damp(if exact { &der.exact } else { &der.irls });
                let Some(step) = cholesky_solve(&hmat, &neg_g, free.as_slice()) else {
                    continue;
                };
                let gd: f64 = (0..3).map(|j| geff[j] * step[j]).sum();
                if gd.is_nan() || gd >= 0.0 {
                    continue;
                }
                // With a flat penalty this step's model is the quadratic alone, cut short at most
                // by a hard bound: it promises at most gd / 2 = -g^T (H + mu D)^-1 g / 2, which
                // only shrinks as mu grows. Once both steps promise nothing here, no damping level
                // will: the polish has converged (the same outcome as trying every level).
                if flat && 0.5 * gd >= -RELATIVE_TOLERANCE * der.value {
                    hopeless += 1;
                    continue;
                }
                let curv: f64 = (0..3)
                    .map(|j| (0..3).map(|l| step[j] * hmat[j][l] * step[l]).sum::<f64>())
                    .sum();
                let (t, snapped, predicted, penalty) =
                    line_model(limits, hard_box, &theta, &step, &grad, curv);
                let threshold = -RELATIVE_TOLERANCE * der.value;
                if t <= 0.0 || predicted.is_nan() || predicted >= threshold {
                    // The model promises nothing measurable: not worth a pass over the data.
                    continue;
                }
                let mut cand = theta;
                for j in 0..3 {
                    cand[j] += t * step[j];
                }
                for &(j, at) in snapped.as_slice() {
                    cand[j] = at;
                }
                limits.clamp(&mut cand);
                // (The line model's penalty is at this same point, computed the same way.)
                let penalty = penalty.unwrap_or_else(|| limits.penalty(&cand));
                if penalty.is_infinite() || outside(&cand) {
                    continue;
                }
                let f_new = trial_value(curve, &to_theta(&cand), delta, &mut scratch) + penalty;
                if f_new < f {
                    der = chain(
                        derivatives_from(curve, &to_theta(&cand), delta, &mut scratch),
                        &cand,
                    );
                    let gain = f - f_new;
                    let moved =
                        (0..3).any(|j| (cand[j] - theta[j]).abs() > 1e-15 * (1.0 + theta[j].abs()));
                    theta = cand;
                    stepped = true;
                    f = f_new;
                    mu = (mu * 0.25).max(1e-12);
                    accepted = moved && gain > RELATIVE_TOLERANCE * der.value;
                    break 'damping;
                }
            }
            if hopeless == 2 {
                break;
            }
            mu *= 10.0;
        }
        if !accepted {
            break;
        }
    }
    SCRATCH.with(|s| s.replace(scratch));
    (
        if stepped { to_theta(&theta) } else { start },
        f,
        iterations,
    )
}

thread_local! {
    static SCRATCH: std::cell::Cell<Scratch> = const { std::cell::Cell::new(Scratch::empty()) };
}

/// A vector of at most `N` elements on the stack (the polish runs millions of times: no heap).
#[derive(Clone, Copy)]
struct Small<T: Copy + Default, const N: usize> {
    items: [T; N],
    len: usize,
}

impl<T: Copy + Default, const N: usize> Small<T, N> {
    fn new() -> Self {
        Small {
            items: [T::default(); N],
            len: 0,
        }
    }

    fn push(&mut self, x: T) {
        if self.len < N {
            self.items[self.len] = x;
            self.len += 1;
        }
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn as_slice(&self) -> &[T] {
        &self.items[..self.len]
    }
}

/// Coordinates snapped onto a limit point by a step: (coordinate, position).
type Snaps = Small<(usize, f64), 6>;

/// The best point of a line model: `(t, coordinates to snap onto a limit point, model value,
/// penalty there)`. The penalty is computed where the model needs it (not for a box of hard
/// bounds, where it is the constant inside), and the polish reuses it.
type LinePoint = (f64, Snaps, f64, Option<f64>);

/// Limit points along a line: `(t, coordinate, position)`.
type Breaks = Small<(f64, usize, f64), 6>;

/// The limit points ahead of `theta` along `step` (within the line's reach, `t > 0`), into
/// `breaks`, and the largest `t <= 1` that crosses no hard bound (`HARD_BOX`: every limit point is
/// a hard bound). (Filled in place: returned by value, the 152 bytes were copied with a call.)
fn breaks_ahead<const HARD_BOX: bool>(
    limits: &Limits,
    theta: &[f64; 3],
    step: &[f64; 3],
    breaks: &mut Breaks,
) -> f64 {
    let mut t_max = 1.0_f64;
    for j in 0..3 {
        if step[j] == 0.0 {
            continue;
        }
        for (at, hard) in limit_points(limits, j) {
            let Some(at) = at else { continue };
            let t = (at - theta[j]) / step[j];
            if t > 0.0 && t.is_finite() {
                if HARD_BOX || hard {
                    t_max = t_max.min(t);
                }
                breaks.push((t, j, at));
            }
        }
    }
    t_max
}

/// [`line_model`] where the limits are a consistent box of hard bounds (see there): the same
/// arithmetic, with `P(x) - P(theta) = 0` for every clamped `x`.
fn quadratic_line_model(
    limits: &Limits,
    theta: &[f64; 3],
    step: &[f64; 3],
    grad: &[f64; 3],
    curv: f64,
) -> LinePoint {
    let mut breaks = Breaks::new();
    let t_max = breaks_ahead::<true>(limits, theta, step, &mut breaks);
    let gd: f64 = (0..3).map(|j| grad[j] * step[j]).sum();
    // P(x) - P(theta) for clamped x: the constant minus itself (the general model's term, kept so
    // that a zero promise has the same sign).
    let dp = 0.0;
    let mut top = Snaps::new();
    for b in breaks.as_slice() {
        if b.0 == t_max {
            top.push((b.1, b.2));
        }
    }
    let mut best = (
        t_max,
        top,
        t_max * gd + 0.5 * t_max * t_max * curv + dp,
        None,
    );
    if curv > 0.0 && t_max > 0.0 {
        // The general model's slope on (0, t_max): zero, unless rounding put the unclamped end
        // outside a bound (an infinite slope, skipped there).
        let end: [f64; 3] = std::array::from_fn(|j| theta[j] + t_max * step[j]);
        if limits.penalty(&end).is_finite() {
            let t = -(gd + 0.0) / curv;
            if t > 0.0 && t < t_max {
                let v = t * gd + 0.5 * t * t * curv + dp;
                if v < best.2 {
                    best = (t, Snaps::new(), v, None);
                }
            }
        }
    }
    best
}

/// Minimise the piecewise model `t * g.d + t^2 curv / 2 + P(theta + t d) - P(theta)` over `t in (0, 1]`,
/// never crossing a hard bound (see [`LinePoint`]).
///
/// With `hard_box` (every limit hard or absent, and every lower bound at most its upper bound) the
/// penalty is constant inside the box, so the model is the quadratic alone, cut at the first hard
/// bound: the same result in a few operations.
fn line_model(
    limits: &Limits,
    hard_box: bool,
    theta: &[f64; 3],
    step: &[f64; 3],
    grad: &[f64; 3],
    curv: f64,
) -> LinePoint {
    if hard_box {
        return quadratic_line_model(limits, theta, step, grad, curv);
    }
    let mut breaks = Breaks::new();
    let t_max = breaks_ahead::<false>(limits, theta, step, &mut breaks);
    let gd: f64 = (0..3).map(|j| grad[j] * step[j]).sum();
    let p0 = limits.penalty(theta);
    let at_t = |t: f64| -> [f64; 3] { std::array::from_fn(|j| theta[j] + t * step[j]) };
    // The model's value and the penalty at the clamped point.
    let model = |t: f64, snaps: &Snaps| -> (f64, f64) {
        let mut x = at_t(t);
        for &(j, at) in snaps.as_slice() {
            x[j] = at;
        }
        limits.clamp(&mut x);
        let p = limits.penalty(&x);
        (t * gd + 0.5 * t * t * curv + (p - p0), p)
    };
    let mut knots = Small::<f64, 7>::new();
    for b in breaks.as_slice() {
        if b.0 < t_max {
            knots.push(b.0);
        }
    }
    knots.push(t_max);
    let len = knots.len;
    knots.items[..len].sort_by(f64::total_cmp);
    let snaps_at = |t: f64| -> Snaps {
        let mut out = Snaps::new();
        for b in breaks.as_slice() {
            if b.0 == t {
                out.push((b.1, b.2));
            }
        }
        out
    };
    let top = snaps_at(t_max);
    let (v, p) = model(t_max, &top);
    let mut best = (t_max, top, v, Some(p));
    let mut lo = 0.0;
    // The penalty at `at_t(lo)`, where the previous interval computed it.
    let mut p_lo = None;
    for &hi in knots.as_slice() {
        // (The last knot is `t_max`, scored above.)
        if hi < t_max {
            let snaps = snaps_at(hi);
            let (v, p) = model(hi, &snaps);
            if v < best.2 {
                best = (hi, snaps, v, Some(p));
            }
        }
        let mut p_hi = None;
        if curv > 0.0 && hi > lo {
            // The penalty is linear on (lo, hi): its slope from the values at the ends.
            let ph = limits.penalty(&at_t(hi));
            let pl = p_lo.unwrap_or_else(|| limits.penalty(&at_t(lo)));
            p_hi = Some(ph);
            let slope = (ph - pl) / (hi - lo);
            if slope.is_finite() {
                let t = -(gd + slope) / curv;
                if t > lo && t < hi {
                    let (v, p) = model(t, &Snaps::new());
                    if v < best.2 {
                        best = (t, Snaps::new(), v, Some(p));
                    }
                }
            }
        }
        lo = hi;
        p_lo = p_hi;
    }
    best
}

/// The evenly spaced subset of at most `m` points (always including the first and the last).
fn subset(curve: &Curve, m: usize) -> Option<Curve> {
    let t = curve.y.len();
    if t <= m {
        return None;
    }
    let idx = (0..m).map(|i| i * (t - 1) / (m - 1));
    let (u, y) = idx.map(|i| (curve.u[i], curve.y[i])).unzip();
    Some(Curve {
        u,
        y,
        weight: curve.weight * t as f64 / m as f64,
    })
}

/// The box the cheap profile keeps `eps` and `beta` in.
#[derive(Clone, Copy, PartialEq)]
struct Box2 {
    eps: (f64, f64),
    beta: (f64, f64),
}

/// Minimise the convex quadratic `s11 e^2 + 2 s12 e b + s22 b^2 - 2 b1 e - 2 b2 b` (the weighted
/// least squares of the relative error, `s = [s11, s12, s22, b1, b2]`) over `e x b` in `bx`.
fn box_lsq(s: &[f64; 5], bx: &Box2) -> (f64, f64) {
    let [s11, s12, s22, b1, b2] = *s;
    let q = |e: f64, b: f64| e * (s11 * e + 2.0 * (s12 * b - b1)) + b * (s22 * b - 2.0 * b2);
    let clamp = |v: f64, (lo, hi): (f64, f64)| if v.is_nan() { lo } else { v.max(lo).min(hi) };
    let det = s11 * s22 - s12 * s12;
    if det > 1e-12 * s11 * s22 {
        let (e, b) = ((b1 * s22 - b2 * s12) / det, (b2 * s11 - b1 * s12) / det);
        if (bx.eps.0..=bx.eps.1).contains(&e) && (bx.beta.0..=bx.beta.1).contains(&b) {
            return (e, b);
        }
    }
    // The minimum is on an edge of the box: each edge's best point, and the best of those.
    let mut best = (f64::INFINITY, bx.eps.0, bx.beta.0);
    let mut consider = |e: f64, b: f64| {
        let v = q(e, b);
        if v < best.0 {
            best = (v, e, b);
        }
    };
    for e in [bx.eps.0, bx.eps.1] {
        if e.is_finite() {
            consider(e, clamp((b2 - s12 * e) / s22, bx.beta));
        }
    }
    for b in [bx.beta.0, bx.beta.1] {
        if b.is_finite() {
            consider(clamp((b1 - s12 * b) / s11, bx.eps), b);
        }
    }
    (best.1, best.2)
}

/// IRLS rounds of the relative-error fit at each alpha of the profile (the weights carry over from
/// the previous alpha, so the rounds accumulate along the sweep).
const PROFILE_ROUNDS: usize = 3;

/// The profile of the objective over alpha: for each of `alpha_grid` evenly spaced exponents, the
/// best `(a, e)` found by a few rounds of Huber-IRLS on the relative error `1 - (eps + beta x_i) / L_i`
/// (the model is linear in eps and beta once alpha is fixed: each round is five weighted sums and a
/// 2x2 solve in the box of the limits), and an approximation of the objective there (the
/// log-residual from a short series, the penalties exactly). No transcendental function is
/// evaluated per point and alpha: `x_i = n_i^-alpha` is updated by a factor along the grid.
/// Returns `(score, theta)` in the order of alpha.
#[allow(clippy::type_complexity)]
fn profile(curve: &Curve, limits: &Limits, config: &FitConfig) -> (Vec<Scored>, Faces) {
    let hard = |lim: Limit| match lim {
        Limit::Hard(at) => Some(at),
        _ => None,
    };
    let soft = |lim: Limit| match lim {
        Limit::Linear { at, .. } => Some(at),
        _ => None,
    };
    let a_lo = hard(limits.lower[ALPHA]).unwrap_or(0.0);
    let a_hi = hard(limits.upper[ALPHA]).unwrap_or(1.0).max(a_lo);
    let inv_l: Vec<f64> = curve.y.iter().map(|y| (-y).exp()).collect();
    let min_loss = 1.0 / inv_l.iter().copied().fold(0.0, f64::max);
    let n_pts = curve.y.len();
    let g = config.alpha_grid;
    let step = (a_hi - a_lo) / (g - 1) as f64;
    let mut x: Vec<f64> = curve.u.iter().map(|u| (-a_lo * u).exp()).collect();
    let factor: Vec<f64> = curve.u.iter().map(|u| (-step * u).exp()).collect();
    let u_min = curve.u.iter().copied().fold(f64::INFINITY, f64::min);
    let eps_lo = hard(limits.lower[E]).map_or(1e-9 * min_loss, f64::exp);
    let eps_hi = hard(limits.upper[E]).map_or(f64::INFINITY, f64::exp);
    let beta_hi = hard(limits.upper[A]).map_or(f64::INFINITY, f64::exp);
    let hard_box = |alpha: f64| Box2 {
        eps: (eps_lo, eps_hi.max(eps_lo)),
        // Below this the power-law term is < 1e-9 of every loss.
        beta: (
            (1e-9 * min_loss * (alpha * u_min).exp()).min(beta_hi),
            beta_hi,
        ),
    };
    // The soft limits taken as hard: the usual optimum of the reference objective.
    let soft_box = |bx: Box2| {
        let mut b = bx;
        if let Some(at) = soft(limits.lower[E]) {
            b.eps.0 = at.exp().max(b.eps.0).min(b.eps.1);
        }
        if let Some(at) = soft(limits.upper[E]) {
            b.eps.1 = at.exp().min(b.eps.1).max(b.eps.0);
        }
        if let Some(at) = soft(limits.upper[A]) {
            b.beta.1 = at.exp().min(b.beta.1).max(b.beta.0);
        }
        if let Some(at) = soft(limits.lower[A]) {
            b.beta.0 = at.exp().max(b.beta.0).min(b.beta.1);
        }
        b
    };
    let delta = config.huber_delta;
    // The score at `(eps, beta)`, from `memo` where this alpha's points already scored the same
    // clamped parameters (the soft and hard boxes' fits, or a fit and a face, often agree).
    let score = |x: &[f64], alpha: f64, (eps, beta): (f64, f64), memo: &mut Vec<Scored>| {
        let mut th = [beta.ln(), eps.ln(), alpha];
        limits.clamp(&mut th);
        if let Some(&done) = memo.iter().find(|m| m.1 == th) {
            return done;
        }
        let p = limits.penalty(&th);
        let scored = if p.is_finite() {
            let (eps, beta) = (th[E].exp(), th[A].exp());
            let sum = kernel::profile_score(x, &inv_l, eps, beta, delta);
            (curve.weight * sum + p, th)
        } else {
            (f64::INFINITY, th)
        };
        memo.push(scored);
        scored
    };
    let mut memo: Vec<Scored> = Vec::with_capacity(4);
    let mut w = vec![1.0; n_pts];
    let mut out = Vec::with_capacity(g);
    let mut eb = (f64::NAN, f64::NAN);
    let mut faces = Faces::default();
    let soft_eps = [soft(limits.lower[E]), soft(limits.upper[E])].map(|at| at.map(f64::exp));
    for s in 0..g {
        let alpha = if s + 1 == g {
            a_hi
        } else {
            a_lo + step * s as f64
        };
        if s > 0 {
            for (xi, f) in x.iter_mut().zip(&factor) {
                *xi *= f;
            }
        }
        let hb = hard_box(alpha);
        let sb = soft_box(hb);
        let mut sums = [0.0; 5];
        for round in 0..PROFILE_ROUNDS {
            sums = kernel::irls_sums(&x, &inv_l, &mut w, (round > 0).then_some(eb), delta);
            eb = box_lsq(&sums, &sb);
        }
        memo.clear();
        let mut best = score(&x, alpha, eb, &mut memo);
        if sb != hb {
            let other = score(&x, alpha, box_lsq(&sums, &hb), &mut memo);
            if other.0 < best.0 {
                best = other;
            }
        }
        out.push(best);
        // The faces of eps (its hard bounds) and its soft bounds inside them, with beta fitted to
        // each eps.
        let on_soft = soft_eps.map(|e| e.filter(|e| (hb.eps.0..=hb.eps.1).contains(e)));
        let slots = faces.hard.iter_mut().zip([Some(hb.eps.0), Some(hb.eps.1)]);
        for (slot, e) in slots.chain(faces.soft.iter_mut().zip(on_soft)) {
            let Some(e) = e.filter(|e| e.is_finite()) else {
                continue;
            };
            let b = ((sums[4] - sums[1] * e) / sums[2])
                .max(hb.beta.0)
                .min(hb.beta.1);
            let f = score(
                &x,
                alpha,
                (e, if b.is_nan() { hb.beta.0 } else { b }),
                &mut memo,
            );
            if slot.is_none_or(|c: Scored| f.0 < c.0) {
                *slot = Some(f);
            }
        }
    }
    (out, faces)
}

/// A profile point: `(score, theta)`.
type Scored = (f64, [f64; 3]);

/// The best profile point on each bound of eps (lower, upper), over all alphas.
#[derive(Default)]
struct Faces {
    /// On the hard bounds (the limits', or the profile's box).
    hard: [Option<Scored>; 2],
    /// On the soft bounds (the kinks of linear penalties), where inside the hard ones.
    soft: [Option<Scored>; 2],
}

/// Local minima of the profile (best first) that start a polish, besides the faces.
const STARTS: usize = 2;

/// Point budget for extra starts: a 5-point curve gets 12 evenly spaced profile points, an 11-point
/// one 5, a 32-point one 1, and from 64 points none (measured on 64-point curves: the one extra
/// start, the profile's first point, cost 18 % of a fit; it changed no fit of the default objective
/// by more than 1e-9, and 5 of 1,000 of the reference objective, 3 of which the start on its soft
/// bound finds).
const EXTRA_START_BUDGET: usize = 63;

/// Newton iterations every start gets before the field is cut.
const SCREEN_ITERATIONS: usize = 6;

/// Newton iterations of the second stage (after which only near-ties go on).
const SECOND_STAGE_ITERATIONS: usize = 15;

/// Distinct basins (besides the faces) that go on after the screen (best first).
const KEPT_AFTER_SCREEN: usize = 2;

/// Candidates within this relative distance of the best on the search subset are all refined on the
/// full data: the subset's objective is not the full one, and near-ties may swap.
const NEAR_TIE: f64 = 1e-3;

/// Whether two polished points sit in the same basin.
fn same_basin(s: &[f64; 3], t: &[f64; 3]) -> bool {
    (t[A] - s[A]).abs() + (t[E] - s[E]).abs() + 10.0 * (t[ALPHA] - s[ALPHA]).abs() < 1e-3
}

/// Fit one validated curve. Returns (theta, objective, iterations).
pub(crate) fn solve(curve: &Curve, limits: &Limits, config: &FitConfig) -> ([f64; 3], f64, usize) {
    let delta = config.huber_delta;
    let small = subset(curve, config.search_points);
    let search = small.as_ref().unwrap_or(curve);
    let (prof, faces) = profile(search, limits, config);
    // Local minima of the profile, best first.
    let mut minima: Vec<(f64, [f64; 3])> = (0..prof.len())
        .filter(|&i| {
            let f = prof[i].0;
            f.is_finite()
                && (i == 0 || f <= prof[i - 1].0)
                && (i + 1 == prof.len() || f <= prof[i + 1].0)
        })
        .map(|i| prof[i])
        .collect();
    minima.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut starts: Vec<([f64; 3], bool)> =
        minima.iter().take(STARTS).map(|m| (m.1, false)).collect();
    // The optimum may sit on a bound of eps: seed each face with its own best profile point. On a
    // soft bound (a kink of the penalty) too, where Newton from the valley beside it crawls: those
    // starts compete with the minima for the places after the screen.
    starts.extend(faces.hard.into_iter().flatten().map(|f| (f.1, true)));
    // (Measured with the reference objective: its fits of 128 and 500 points take about 20 %
    // longer, and 11 of 1,000 of 200 points are better; paying for these starts from the extra
    // starts below left one 11-point fit of 1,000 short of the 512-start grid.)
    starts.extend(faces.soft.into_iter().flatten().map(|f| (f.1, false)));
    // Small problems are cheap to polish, and few points make the Huber landscape rugged: spend a
    // fixed budget of point-iterations on further evenly spaced profile points.
    let extra = (EXTRA_START_BUDGET / search.y.len()).min(prof.len());
    if extra > 0 {
        let stride = prof.len() as f64 / extra as f64;
        starts.extend((0..extra).map(|i| (prof[(i as f64 * stride) as usize].1, false)));
    }
    let screen = SCREEN_ITERATIONS.min(config.max_iter);
    let mut screened: Vec<([f64; 3], f64, usize, bool)> = starts
        .into_iter()
        .map(|(start, face)| {
            let (t, f, it) = polish(search, limits, delta, start, screen);
            (t, f, it, face)
        })
        .filter(|c| c.1.is_finite())
        .collect();
    screened.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut kept: Vec<([f64; 3], f64, usize)> = Vec::with_capacity(5);
    let mut others = 0;
    for (t, f, it, face) in screened {
        if !face && others == KEPT_AFTER_SCREEN {
            continue;
        }
        if !kept.iter().any(|k| same_basin(&k.0, &t)) {
            others += usize::from(!face);
            kept.push((t, f, it));
        }
    }
    let second = SECOND_STAGE_ITERATIONS.min(config.max_iter);
    let mut staged: Vec<([f64; 3], f64, usize, bool)> = kept
        .into_iter()
        .map(|(start, f, iters)| {
            if iters < screen {
                return (start, f, iters, true);
            }
            let (t, f, more) = polish(search, limits, delta, start, second);
            (t, f, iters + more, more < second)
        })
        .filter(|c| c.1.is_finite())
        .collect();
    staged.sort_by(|a, b| a.1.total_cmp(&b.1));
    let lead = staged.first().map_or(f64::NAN, |c| c.1);
    let lead_margin = 10.0 * NEAR_TIE * lead.abs().max(f64::MIN_POSITIVE);
    // The near-ties go on to convergence in anchored, then linear coordinates (logarithmic ones
    // with linear penalties on a or e), unless the search ran on a subset: there the refinement
    // below needs the near-ties' distinct end points (the full data's optimum can lie in another
    // basin than the subset's), and the crawl of the logarithmic coordinates keeps them apart
    // (measured: in linear coordinates they merge, and 125 of 7,100 fits of 150-250 points ended
    // worse, 0 of 7,800 fits of <= 128 points).
    let anchored = small.is_none();
    let linear = linear_ok(limits);
    let mut cands: Vec<([f64; 3], f64, usize)> = staged
        .into_iter()
        .filter(|c| c.1 <= lead + lead_margin)
        .map(|(start, f, iters, done)| {
            if done {
                return (start, f, iters);
            }
            let (t, f2, more) = if anchored {
                // Along the valley first, then eps's bounds (and the penalties' kinks) exactly.
                let (t, _, m1) = polish_in(
                    search,
                    limits,
                    delta,
                    start,
                    config.max_iter,
                    Coords::Anchored,
                );
                let finish = if linear { Coords::Linear } else { Coords::Log };
                let (t, f, m2) = polish_in(search, limits, delta, t, config.max_iter, finish);
                (t, f, m1 + m2)
            } else {
                polish(search, limits, delta, start, config.max_iter)
            };
            (t, f2, iters + more)
        })
        .filter(|c| c.1.is_finite())
        .collect();
    cands.sort_by(|a, b| a.1.total_cmp(&b.1));
    let Some(&(_, f_best, _)) = cands.first() else {
        return ([f64::NAN; 3], f64::NAN, 0);
    };
    if small.is_none() {
        let (theta, _, iters) = cands[0];
        return (theta, objective(curve, limits, &theta, delta), iters);
    }
    // Refine the near-ties on ever larger evenly spaced subsets (x8 each), then on all points: each
    // stage starts close to its optimum, so the expensive full-size stage needs few iterations.
    let margin = NEAR_TIE * f_best.abs().max(f64::MIN_POSITIVE);
    let mut best: Option<([f64; 3], f64, usize)> = None;
    let mut refined: Vec<[f64; 3]> = Vec::with_capacity(3);
    for &(start, f_start, mut iters) in &cands {
        if f_start > f_best + margin || refined.len() == 3 {
            break;
        }
        // Starts that polished into the same basin are refined once.
        if refined.iter().any(|t| same_basin(t, &start)) {
            continue;
        }
        refined.push(start);
        let mut theta = start;
        let mut size = config.search_points.saturating_mul(8);
        while size < curve.y.len() {
            if let Some(sub) = subset(curve, size) {
                let (t, _, more) = polish(&sub, limits, delta, theta, config.max_iter);
                theta = t;
                iters += more;
            }
            size = size.saturating_mul(8);
        }
        let cand = polish(curve, limits, delta, theta, config.max_iter);
        if best.as_ref().is_none_or(|b| cand.1 < b.1) {
            best = Some((cand.0, cand.1, iters + cand.2));
        }
    }
    let Some((theta, _, iters)) = best else {
        return ([f64::NAN; 3], f64::NAN, 0);
    };
    // Report the objective exactly as `objective()` computes it.
    (theta, objective(curve, limits, &theta, delta), iters)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noisy_curve() -> Curve {
        let n: Vec<f64> = (1..=40).map(|i| 2560.0 * i as f64).collect();
        let l: Vec<f64> = n
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                (1.7 + 25.0 * x.powf(-0.35)) * (1.0 + 0.01 * ((i * 37 % 11) as f64 - 5.0) / 5.0)
            })
            .collect();
        Curve::new(0, &n, &l).unwrap_or_else(|e| panic!("{e}"))
    }

    fn at(curve: &Curve, theta: &[f64; 3], delta: f64) -> (f64, Derivatives) {
        let mut scratch = Scratch::with_len(curve.y.len());
        let value = trial_value(curve, theta, delta, &mut scratch);
        (value, derivatives_from(curve, theta, delta, &mut scratch))
    }

    #[test]
    fn the_unrolled_cholesky_solves_are_the_general_one_bit_for_bit() {
        // Symmetric positive definite matrices of a wide range of conditioning.
        for k in 0..200 {
            let f = |i: usize| ((k * 7 + i * 13) % 17) as f64 / 17.0 - 0.5;
            let g = [[f(0), f(1), f(2)], [f(3), f(4), f(5)], [f(6), f(7), f(8)]];
            let ridge = 10f64.powi(k as i32 % 9 - 6);
            let m: Mat3 = std::array::from_fn(|i| {
                std::array::from_fn(|j| {
                    (0..3).map(|p| g[i][p] * g[j][p]).sum::<f64>()
                        + if i == j { ridge } else { 0.0 }
                })
            });
            let b = [f(9), f(10), f(11)];
            let bits = |x: Option<[f64; 3]>| x.map(|x| x.map(f64::to_bits));
            assert_eq!(
                bits(cholesky_solve(&m, &b, &[0, 1, 2])),
                bits(cholesky_solve_any(&m, &b, &[0, 1, 2]))
            );
            for free in [[0, 1], [0, 2], [1, 2]] {
                let got = cholesky_solve(&m, &b, &free);
                assert!(got.is_some());
                assert_eq!(
                    bits(got),
                    bits(cholesky_solve_any(&m, &b, &free)),
                    "{free:?}"
                );
            }
        }
        // Not positive definite: no step.
        let m = [[1.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        assert!(cholesky_solve(&m, &[1.0; 3], &[0, 1]).is_none());
    }

    #[test]
    fn the_profile_seeds_each_soft_bound_of_eps() {
        let curve = noisy_curve();
        let config = FitConfig::reference();
        let limits = config.resolve(curve.min_loss());
        let (_, faces) = profile(&curve, &limits, &config);
        // The reference's eps >= e^0.5 is a linear penalty: a soft lower bound, no upper one.
        let (score, theta) = faces.soft[0].expect("a start on the soft bound");
        assert!((theta[E] - 0.5).abs() < 1e-12, "{theta:?}");
        assert!(score.is_finite());
        assert!(faces.soft[1].is_none());
        // The default objective's bounds of eps are hard: faces, and no soft bound.
        let config = FitConfig::default();
        let limits = config.resolve(curve.min_loss());
        let (_, faces) = profile(&curve, &limits, &config);
        assert!(faces.hard.iter().all(Option::is_some));
        assert!(faces.soft.iter().all(Option::is_none));
    }

    /// An 11-point curve on `fit_cost`'s steps (`y`: the log-losses).
    fn eleven_point_curve(y: [f64; 11]) -> Curve {
        let u = vec![
            12.453932223794784,
            14.384599052100164,
            15.002456016335673,
            15.381509721828282,
            15.655719815980316,
            15.870692193422833,
            16.047528970254504,
            16.197743449896436,
            16.328312491191006,
            16.443785393431657,
            16.54729395221158,
        ];
        Curve {
            u,
            y: y.to_vec(),
            weight: 1.0,
        }
    }

    #[test]
    fn a_polish_that_takes_no_step_returns_its_start() {
        // On the reference's soft bound e = 0.5, where every anchored step changes the penalty:
        // the round trip through the anchored coordinates gave e = 0.4999999999999995, off the
        // kink, and the logarithmic polish after it stopped there.
        let curve = eleven_point_curve([
            2.790984355048776,
            2.569955334097162,
            2.553138266889434,
            2.551001165600734,
            2.5320577390363153,
            2.4575242414369267,
            2.4398854787384563,
            2.491397635343296,
            2.466388929721944,
            2.3855671778251923,
            2.372653235061411,
        ]);
        let config = FitConfig::reference();
        let limits = config.resolve(curve.min_loss());
        let delta = config.huber_delta;
        let start = [4.032989306960535, 0.5, 0.10827392344581627];
        let (theta, _, _) = polish_in(&curve, &limits, delta, start, 300, Coords::Anchored);
        assert_eq!(theta, start);
        let (theta, f, _) = polish_in(&curve, &limits, delta, theta, 300, Coords::Log);
        assert!(f < objective(&curve, &limits, &start, delta), "{theta:?}");
    }

    #[test]
    fn an_anchored_polish_never_steps_past_eps_zero() {
        // 11 noisy points of a nearly flat curve (`fit_cost`'s generator) and a start from which
        // the anchored polish stepped past eps = 0: log eps was NaN, the data term dropped the eps
        // term (a max ignores NaN), the step was accepted and the polish returned a NaN.
        let curve = eleven_point_curve([
            0.7210235066368503,
            0.7093048764937929,
            0.710733681782594,
            0.7148083113785185,
            0.7162812817800516,
            0.7091146410418031,
            0.6949456397725949,
            0.6908451327559284,
            0.6943986561944603,
            0.7001522477194739,
            0.7019935795994734,
        ]);
        let config = FitConfig::default();
        let limits = config.resolve(curve.min_loss());
        let delta = config.huber_delta;
        let start = [0.7753447779311706, -3.871444733523604, 0.005160215043248664];
        let (theta, f, _) = polish_in(&curve, &limits, delta, start, 300, Coords::Anchored);
        assert!(theta.iter().all(|x| x.is_finite()), "{theta:?}");
        let exact = objective(&curve, &limits, &theta, delta);
        assert!((f - exact).abs() <= 1e-12 * exact.abs(), "{f} vs {exact}");
        assert!(exact <= objective(&curve, &limits, &start, delta));
    }

    #[test]
    fn split_evaluation_matches_the_objective_and_finite_differences() {
        let curve = noisy_curve();
        // A Huber threshold far above the residuals (the smooth, all-inside case), and the
        // reference's 1e-3 (a mix of inside and outside points).
        for delta in [1.0, 1e-3] {
            for theta in [[3.2, 0.5, 0.35], [2.0, 0.7, 0.2], [4.0, -1.0, 0.5]] {
                let (value, der) = at(&curve, &theta, delta);
                let want = data_term(&curve, &theta, delta);
                assert!(
                    (value - want).abs() <= 1e-13 * want.abs(),
                    "{value} vs {want}"
                );
                assert_eq!(value.to_bits(), der.value.to_bits());
                let h = 1e-6;
                for j in 0..3 {
                    let shifted = |s: f64| {
                        let mut t = theta;
                        t[j] += s;
                        at(&curve, &t, delta).1
                    };
                    let (up, down) = (shifted(h), shifted(-h));
                    let numeric = (up.value - down.value) / (2.0 * h);
                    let scale = der.grad[j].abs().max(1e-3 * value);
                    assert!(
                        (der.grad[j] - numeric).abs() <= 1e-4 * scale,
                        "grad {j}: {} vs {numeric}",
                        der.grad[j]
                    );
                    if delta == 1.0 {
                        // All points inside: the exact Hessian is the derivative of the gradient.
                        for l in 0..3 {
                            let numeric = (up.grad[l] - down.grad[l]) / (2.0 * h);
                            let scale = der.exact[j][l].abs().max(1e-3 * der.exact[j][j].abs());
                            assert!(
                                (der.exact[j][l] - numeric).abs() <= 1e-4 * scale,
                                "hessian {j}{l}: {} vs {numeric}",
                                der.exact[j][l]
                            );
                            // and then the IRLS Hessian is the Gauss-Newton part, symmetric.
                            assert_eq!(der.irls[j][l].to_bits(), der.irls[l][j].to_bits());
                        }
                    }
                }
            }
        }
    }
}
