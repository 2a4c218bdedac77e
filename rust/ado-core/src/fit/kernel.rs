//! The two transcendentals of the fitter's inner loop, `e^x` for `x <= 0` and `ln(1 + t)` for
//! `t` in `[0, 1]`, as branch-free polynomial arithmetic.
//!
//! The polish evaluates both once per point and trial: they were two thirds of its time as calls
//! into the C library, which the compiler cannot vectorise. Written as plain arithmetic on `f64`
//! and its bits (selects, no branches, no calls), a loop over the points compiles to SIMD code,
//! and every lane performs the same IEEE operations in the same order as the scalar code: the
//! results do not depend on the vector width. Rust does not contract floating-point expressions;
//! the one fused multiply-add is explicit: each Horner step of the two series is an
//! `f64::mul_add` (one rounding). The trial's SIMD version is compiled with FMA (measured: 8-9 %
//! less time per fit of 64 points); the generic version, for a CPU without it (before 2013), gets
//! the same correctly rounded result from the C library's `fma`, more slowly. The polish's two
//! passes also have AVX-512 versions for curves of [`LONG`] points or more.
//!
//! The passes over the points (the polish's trial and derivative sums, the profile's IRLS sums
//! and scores) are written over small arrays, one point per lane (`each`, `lanes`): every line is
//! one SIMD operation on all lanes. Their helpers are `#[inline(always)]` functions, not
//! closures: a closure can be compiled apart from the SIMD version of the function that calls
//! it, without its features (measured: the derivative sums ran as scalar code with their sums in
//! memory). A sum over points adds point `i` to lane `i % 4` and the lanes in a fixed order: the
//! same sums at every SIMD width. The profile's two passes are written with AVX intrinsics
//! instead (module `avx`), with a portable version of the same arithmetic.
//!
//! Accuracy (tested against the standard library on dense grids): `exp_nonpos` within 2 ulp,
//! `ln_1p_unit` within 3e-16 absolute, which is what the model `max(z, e) + ln(1 + t)` needs.

use multiversion::multiversion;

/// `1.5 * 2^52`: adding it rounds a double of magnitude < 2^51 to an integer held in its low bits.
const SHIFT: f64 = 6_755_399_441_055_744.0;
/// `ln 2` split so that `k * LN2_HI` is exact for `|k| < 2^11` (fdlibm's constants).
const LN2_HI: f64 = f64::from_bits(0x3FE6_2E42_FEE0_0000);
const LN2_LO: f64 = f64::from_bits(0x3DEA_39EF_3579_3C76);

/// `1 / k!` for `k = 2 ..= 13`.
const INV_FACT: [f64; 12] = [
    1.0 / 2.0,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5_040.0,
    1.0 / 40_320.0,
    1.0 / 362_880.0,
    1.0 / 3_628_800.0,
    1.0 / 39_916_800.0,
    1.0 / 479_001_600.0,
    1.0 / 6_227_020_800.0,
];

/// `[f(0), f(1), ...]` (a function, not a closure: inlined into each SIMD version of its caller
/// and compiled with its features).
#[inline(always)]
fn each<const N: usize>(f: impl Fn(usize) -> f64) -> [f64; N] {
    // A plain loop: `std::array::from_fn` was left out of line (and without the SIMD features).
    let mut out = [0.0; N];
    for (j, o) in out.iter_mut().enumerate() {
        *o = f(j);
    }
    out
}

/// `e^x` for `x <= 0`, lane by lane: `0` below `-708` (where the result would leave the normal
/// range), and within 2 ulp of the correctly rounded value elsewhere. (Over arrays: each line is
/// one SIMD operation on all lanes, and wide arrays keep several registers' chains in flight.)
#[inline(always)]
pub(crate) fn exp_nonpos<const N: usize>(x: [f64; N]) -> [f64; N] {
    let xc = each::<N>(|j| x[j].max(-708.0));
    // k = round(x / ln 2), r = x - k ln 2 in [-ln2/2, ln2/2].
    let shifted = each::<N>(|j| xc[j] * std::f64::consts::LOG2_E + SHIFT);
    let k = each::<N>(|j| shifted[j] - SHIFT);
    let r = each::<N>(|j| (xc[j] - k[j] * LN2_HI) - k[j] * LN2_LO);
    // e^r - 1 - r = r^2 p(r) on the Taylor series to r^13 (truncation < 5e-18 at |r| = ln2/2),
    // p(r) = pe(r^2) + r po(r^2): two Horner chains of half the length, which overlap.
    let r2 = each::<N>(|j| r[j] * r[j]);
    let mut pe = [INV_FACT[10]; N];
    let mut po = [INV_FACT[11]; N];
    for k in (0..5).rev() {
        pe = each::<N>(|j| f64::mul_add(pe[j], r2[j], INV_FACT[2 * k]));
        po = each::<N>(|j| f64::mul_add(po[j], r2[j], INV_FACT[2 * k + 1]));
    }
    let p = each::<N>(|j| pe[j] + r[j] * po[j]);
    let er = each::<N>(|j| 1.0 + (r[j] + r[j] * r[j] * p[j]));
    // 2^k from k's bits: k is in [-1022, 0], so k + 1023 is a normal exponent.
    let scale = each::<N>(|j| {
        let kbits = shifted[j].to_bits().wrapping_sub(SHIFT.to_bits());
        f64::from_bits(kbits.wrapping_add(1023) << 52)
    });
    each::<N>(|j| if x[j] < -708.0 { 0.0 } else { er[j] * scale[j] })
}

/// `ln(1 + t)` for `t` in `[0, 1]`, lane by lane (absolute error below 3e-16): `2 atanh(f)` with
/// `f = t / (2 + t)`, or `ln 2 + 2 atanh((t - 1) / (t + 3))` above `sqrt(2) - 1`, so that
/// `|f| <= 0.1716` and ten terms of the series suffice.
#[inline(always)]
pub(crate) fn ln_1p_unit<const N: usize>(t: [f64; N]) -> [f64; N] {
    let upper = |j: usize| t[j] > std::f64::consts::SQRT_2 - 1.0;
    let num = each::<N>(|j| if upper(j) { t[j] - 1.0 } else { t[j] });
    let den = each::<N>(|j| if upper(j) { t[j] + 3.0 } else { t[j] + 2.0 });
    let add = each::<N>(|j| {
        if upper(j) {
            std::f64::consts::LN_2
        } else {
            0.0
        }
    });
    let f = each::<N>(|j| num[j] / den[j]);
    let z = each::<N>(|j| f[j] * f[j]);
    // sum_k z^k / (2k + 1), k = 0 ..= 9 (truncation below 1e-17 at z = 0.0295), as its even and
    // odd halves in z^2: two Horner chains of half the length, which overlap.
    let z2 = each::<N>(|j| z[j] * z[j]);
    let mut even = [1.0 / 17.0; N];
    let mut odd = [1.0 / 19.0; N];
    for (ce, co) in [
        (1.0 / 13.0, 1.0 / 15.0),
        (1.0 / 9.0, 1.0 / 11.0),
        (1.0 / 5.0, 1.0 / 7.0),
        (1.0, 1.0 / 3.0),
    ] {
        even = each::<N>(|j| f64::mul_add(even[j], z2[j], ce));
        odd = each::<N>(|j| f64::mul_add(odd[j], z2[j], co));
    }
    let s = each::<N>(|j| even[j] + z[j] * odd[j]);
    each::<N>(|j| add[j] + 2.0 * f[j] * s[j])
}

/// Width of the explicit accumulators of the sums over points. Each lane sums the points `i` with
/// `i % LANES` equal to its index, and the lanes are added in a fixed order at the end, so a sum
/// is the same whatever SIMD width the code runs at.
const LANES: usize = 4;

/// One value per lane: `[f(0), f(1), ...]` (inlined into the SIMD function that calls it).
#[inline(always)]
fn lanes(f: impl Fn(usize) -> f64) -> [f64; LANES] {
    each(f)
}

/// The first `N` values of `c`, zeros after its end (the tail of a sum over points).
#[inline(always)]
fn pad<const N: usize>(c: &[f64]) -> [f64; N] {
    match c.get(..N) {
        // A whole block: one copy.
        Some(whole) => {
            let mut out = [0.0; N];
            out.copy_from_slice(whole);
            out
        }
        None => each(|j| c.get(j).copied().unwrap_or(0.0)),
    }
}

/// Points per step of [`trial`]'s transcendentals: four AVX2 registers, whose independent
/// polynomial chains overlap (measured: 4 and 8 points a step were slower, 32 spills registers).
const WIDE: usize = 16;

/// The Huber function of a residual of size `ar = |r|`, branch-free: `H = c (ar - c / 2)` with
/// `c = min(ar, delta)` (the trial, derivative and profile passes all use this form).
#[inline(always)]
fn huber_abs(ar: f64, delta: f64) -> f64 {
    let c = ar.min(delta);
    c * (ar - 0.5 * c)
}

/// Sum `x` of every lane, in a fixed order.
#[inline(always)]
fn fold(x: [f64; LANES]) -> f64 {
    (x[0] + x[1]) + (x[2] + x[3])
}

/// Per-point work buffers of one curve, reused across the passes of a polish.
pub(crate) struct Scratch {
    /// `t = exp(-|z - e|)` at the last trial point (the weight of the smaller of the two terms).
    pub(crate) t: Vec<f64>,
    /// `ln(1 + t)`.
    pub(crate) l: Vec<f64>,
    /// The residual `y - m`.
    r: Vec<f64>,
    /// `p`: the power-law term's share of the prediction.
    p: Vec<f64>,
}

impl Scratch {
    /// No buffers yet (see [`Scratch::ensure`]).
    pub(crate) const fn empty() -> Self {
        Scratch {
            t: Vec::new(),
            l: Vec::new(),
            r: Vec::new(),
            p: Vec::new(),
        }
    }

    #[cfg(test)]
    pub(crate) fn with_len(len: usize) -> Self {
        let mut s = Scratch::empty();
        s.ensure(len);
        s
    }

    /// Room for `len` points.
    pub(crate) fn ensure(&mut self, len: usize) {
        if self.t.len() < len {
            for v in [&mut self.t, &mut self.l, &mut self.r, &mut self.p] {
                v.resize(len, 0.0);
            }
        }
    }
}

/// [`trial`]'s per-point values of the `N` points from `base` (fewer at the end of the data).
#[inline(always)]
fn trial_block<const N: usize>(
    base: usize,
    u: &[f64],
    y: &[f64],
    [a, e, alpha]: [f64; 3],
    ts: &mut [f64],
    ls: &mut [f64],
    rs: &mut [f64],
) {
    let used = N.min(u.len() - base);
    let (uc, yc) = (pad::<N>(&u[base..]), pad::<N>(&y[base..]));
    let z = each::<N>(|j| a - alpha * uc[j]);
    let t = exp_nonpos(each::<N>(|j| -(z[j] - e).abs()));
    let l = ln_1p_unit(t);
    for j in 0..used {
        ts[base + j] = t[j];
        ls[base + j] = l[j];
        rs[base + j] = yc[j] - (z[j].max(e) + l[j]);
    }
}

/// `sum_i H(y_i - m_i)` at `(a, e, alpha)` with `m_i = max(z_i, e) + ln(1 + exp(-|z_i - e|))` and
/// `z_i = a - alpha u_i`, leaving `t`, `l` and the residuals in `scratch` for [`derivative_sums`].
pub(crate) fn trial(
    u: &[f64],
    y: &[f64],
    theta: [f64; 3],
    delta: f64,
    scratch: &mut Scratch,
) -> f64 {
    if u.len() >= LONG {
        trial_long(u, y, theta, delta, scratch)
    } else {
        trial_short(u, y, theta, delta, scratch)
    }
}

/// [`trial`] of a curve of at least [`LONG`] points, with an AVX-512 version.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
fn trial_long(u: &[f64], y: &[f64], theta: [f64; 3], delta: f64, scratch: &mut Scratch) -> f64 {
    trial_body(u, y, theta, delta, scratch)
}

/// [`trial`] of a shorter curve.
#[multiversion(targets("x86_64+avx2+fma"))]
fn trial_short(u: &[f64], y: &[f64], theta: [f64; 3], delta: f64, scratch: &mut Scratch) -> f64 {
    trial_body(u, y, theta, delta, scratch)
}

/// Points from which the polish's passes run their AVX-512 versions where the CPU has them (twice
/// the registers and lanes, the same results). Measured on a Xeon with AVX-512, single-threaded:
/// 10 % less time per fit of 64 points and 5-8 % of 32; but 5-point fits took 4-7 % longer with
/// them (and 11-point ones no less), so shorter curves keep the AVX2 versions.
const LONG: usize = 16;

/// The body of [`trial`], compiled into each of its versions.
#[inline(always)]
fn trial_body(u: &[f64], y: &[f64], theta: [f64; 3], delta: f64, scratch: &mut Scratch) -> f64 {
    let n = u.len();
    let (ts, ls, rs) = (
        &mut scratch.t[..n],
        &mut scratch.l[..n],
        &mut scratch.r[..n],
    );
    // WIDE points at a time, then 8 or 4 (the last block padded with zeros, its unused lanes not
    // stored): a short curve does not pay for a wide block.
    let mut base = 0;
    while base < n {
        let left = n - base;
        if left >= WIDE {
            trial_block::<WIDE>(base, u, y, theta, ts, ls, rs);
            base += WIDE;
        } else if left > LANES {
            trial_block::<{ 2 * LANES }>(base, u, y, theta, ts, ls, rs);
            base += 2 * LANES;
        } else {
            trial_block::<LANES>(base, u, y, theta, ts, ls, rs);
            base += LANES;
        }
    }
    let mut acc = [0.0; LANES];
    let chunks = rs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for j in 0..LANES {
            acc[j] += huber_abs(c[j].abs(), delta);
        }
    }
    for (j, &r) in tail.iter().enumerate() {
        acc[j] += huber_abs(r.abs(), delta);
    }
    fold(acc)
}

/// The sums of one derivative pass (see [`derivative_sums`]).
pub(crate) struct Sums {
    /// `sum_i H(r_i)`.
    pub(crate) value: f64,
    /// `sum_i psi_i (p_i, 1 - p_i, u_i p_i)` with `psi = H'(r)`.
    pub(crate) g: [f64; 3],
    /// `sum_i w_i (p^2, p(1-p), u p^2, (1-p)^2, u p(1-p), u^2 p^2)_i` with the IRLS weight `w`.
    pub(crate) sw: [f64; 6],
    /// The same over the points inside the Huber threshold.
    pub(crate) si: [f64; 6],
    /// `sum_i psi_i p_i (1 - p_i) (1, u_i, u_i^2)`.
    pub(crate) sq: [f64; 3],
}

/// Add four points' terms to the lanes of [`derivative_sums`]'s accumulators, one point per lane,
/// every quantity an array of four computed lane by lane without branches, so that each line
/// becomes one SIMD operation. `used` lanes hold points (the tail has fewer); the others add
/// nothing. (A function, not a closure: it is inlined into each SIMD version and compiled with
/// its features.)
#[inline(always)]
fn add_terms(
    acc: &mut [[f64; LANES]; 19],
    u: [f64; LANES],
    r: [f64; LANES],
    p: [f64; LANES],
    used: usize,
    delta: f64,
) {
    let ar = lanes(|j| r[j].abs());
    let c = lanes(|j| ar[j].min(delta));
    let psi = lanes(|j| c[j].copysign(r[j]));
    let inside = lanes(|j| if ar[j] <= delta { 1.0 } else { 0.0 });
    let w = lanes(|j| if ar[j] <= delta { 1.0 } else { delta / ar[j] });
    let p1 = lanes(|j| 1.0 - p[j]);
    let q = lanes(|j| p[j] * p1[j]);
    let up = lanes(|j| u[j] * p[j]);
    let pq = lanes(|j| psi[j] * q[j]);
    let outer = [
        lanes(|j| p[j] * p[j]),
        q,
        lanes(|j| up[j] * p[j]),
        lanes(|j| p1[j] * p1[j]),
        lanes(|j| up[j] * p1[j]),
        lanes(|j| up[j] * up[j]),
    ];
    let mut terms = [[0.0; LANES]; 19];
    terms[0] = lanes(|j| huber_abs(ar[j], delta));
    terms[1] = lanes(|j| psi[j] * p[j]);
    terms[2] = lanes(|j| psi[j] * p1[j]);
    terms[3] = lanes(|j| psi[j] * up[j]);
    for k in 0..6 {
        terms[4 + k] = lanes(|j| w[j] * outer[k][j]);
        terms[10 + k] = lanes(|j| inside[j] * outer[k][j]);
    }
    terms[16] = pq;
    terms[17] = lanes(|j| pq[j] * u[j]);
    terms[18] = lanes(|j| pq[j] * u[j] * u[j]);
    for k in 0..19 {
        for j in 0..LANES {
            if j < used {
                acc[k][j] += terms[k][j];
            }
        }
    }
}

/// The 19 sums behind the value, gradient and both Hessians at the point of the last [`trial`]
/// on `scratch` (same `u`, `y`, `(a, e, alpha)` and `delta`).
pub(crate) fn derivative_sums(
    u: &[f64],
    theta: [f64; 3],
    delta: f64,
    scratch: &mut Scratch,
) -> Sums {
    if u.len() >= LONG {
        derivative_long(u, theta, delta, scratch)
    } else {
        derivative_short(u, theta, delta, scratch)
    }
}

/// [`derivative_sums`] of a curve of at least [`LONG`] points, with an AVX-512 version.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq+avx2+fma", "x86_64+avx2"))]
fn derivative_long(u: &[f64], theta: [f64; 3], delta: f64, scratch: &mut Scratch) -> Sums {
    derivative_body(u, theta, delta, scratch)
}

/// [`derivative_sums`] of a shorter curve.
#[multiversion(targets("x86_64+avx2"))]
fn derivative_short(u: &[f64], theta: [f64; 3], delta: f64, scratch: &mut Scratch) -> Sums {
    derivative_body(u, theta, delta, scratch)
}

/// The body of [`derivative_sums`], compiled into each of its versions.
#[inline(always)]
fn derivative_body(u: &[f64], theta: [f64; 3], delta: f64, scratch: &mut Scratch) -> Sums {
    let [a, e, alpha] = theta;
    let n = u.len();
    let (ts, rs, ps) = (&scratch.t[..n], &scratch.r[..n], &mut scratch.p[..n]);
    for i in 0..n {
        let d = (a - alpha * u[i]) - e;
        let t = ts[i];
        ps[i] = if d > 0.0 { 1.0 } else { t } / (1.0 + t);
    }
    // acc[k][j]: sum k of lane j. 0: value, 1-3: g, 4-9: sw, 10-15: si, 16-18: sq.
    let mut acc = [[0.0; LANES]; 19];
    let (us, rc, pc) = (
        u[..n].chunks_exact(LANES),
        rs.chunks_exact(LANES),
        ps.chunks_exact(LANES),
    );
    let tail = (us.remainder(), rc.remainder(), pc.remainder());
    for ((uc, rcc), pcc) in us.zip(rc).zip(pc) {
        add_terms(&mut acc, pad(uc), pad(rcc), pad(pcc), LANES, delta);
    }
    if !tail.0.is_empty() {
        add_terms(
            &mut acc,
            pad(tail.0),
            pad(tail.1),
            pad(tail.2),
            tail.0.len(),
            delta,
        );
    }
    let s: [f64; 19] = std::array::from_fn(|k| fold(acc[k]));
    Sums {
        value: s[0],
        g: [s[1], s[2], s[3]],
        sw: std::array::from_fn(|k| s[4 + k]),
        si: std::array::from_fn(|k| s[10 + k]),
        sq: [s[16], s[17], s[18]],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f64, b: f64) -> u64 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs()
    }

    #[test]
    fn exp_nonpos_is_within_two_ulp() {
        let mut worst = 0;
        for i in 0..=2_000_000u32 {
            let x = -708.0 * f64::from(i) / 2_000_000.0;
            let (got, want) = (exp_nonpos([x])[0], x.exp());
            worst = worst.max(ulps(got, want));
        }
        for x in [
            0.0,
            -0.0,
            -1e-300,
            -1e-17,
            -0.5 * std::f64::consts::LN_2,
            -707.9,
        ] {
            worst = worst.max(ulps(exp_nonpos([x])[0], x.exp()));
        }
        assert!(worst <= 2, "{worst} ulp");
        assert_eq!(exp_nonpos([0.0])[0], 1.0);
        assert_eq!(exp_nonpos([-708.5])[0], 0.0);
        assert_eq!(exp_nonpos([f64::NEG_INFINITY])[0], 0.0);
    }

    #[test]
    fn every_point_is_summed_once_whatever_the_length() {
        // Lengths around the lane width: the tail of the last chunk must be summed, once.
        for n in 1..=13 {
            let u: Vec<f64> = (0..n).map(|i| 8.0 + 0.37 * i as f64).collect();
            let y: Vec<f64> = (0..n)
                .map(|i| 1.1 - 0.02 * i as f64 + 1e-3 * ((i * 7 % 5) as f64))
                .collect();
            let theta = [2.0, 0.6, 0.3];
            let delta = 1e-3;
            let mut scratch = Scratch::with_len(n);
            let got = trial(&u, &y, theta, delta, &mut scratch);
            let want: f64 = u
                .iter()
                .zip(&y)
                .map(|(&u, &y)| super::super::huber(y - super::super::log_model(&theta, u), delta))
                .sum();
            assert!(
                (got - want).abs() <= 1e-14 * want.abs(),
                "n = {n}: {got} vs {want}"
            );
            let sums = derivative_sums(&u, theta, delta, &mut scratch);
            assert_eq!(sums.value.to_bits(), got.to_bits(), "n = {n}");
            // The gradient's first sum, psi * p, point by point.
            let g0: f64 = u
                .iter()
                .zip(&y)
                .map(|(&u, &y)| {
                    let r = y - super::super::log_model(&theta, u);
                    let z = theta[0] - theta[2] * u;
                    let p = 1.0 / (1.0 + (theta[1] - z).exp());
                    r.abs().min(delta).copysign(r) * p
                })
                .sum();
            assert!(
                (sums.g[0] - g0).abs() <= 1e-12 * g0.abs().max(1e-6),
                "n = {n}"
            );
        }
    }

    #[test]
    fn the_profile_passes_match_their_portable_versions_bit_for_bit() {
        // Lengths around the lane width (the tail), values where the Huber threshold, the eps
        // clamp of the weights and the series all matter.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut unif = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for n in 1..=13 {
            for _ in 0..20 {
                let x: Vec<f64> = (0..n).map(|_| 1e-3 + unif()).collect();
                let inv_l: Vec<f64> = (0..n).map(|_| 0.2 + unif()).collect();
                let (eps, beta) = (0.5 + 2.0 * unif(), 3.0 * unif());
                // About half the points within 1e-3 of the model where delta = 1e-3.
                let delta = if unif() < 0.5 { 1e-3 } else { 0.5 };
                let got = profile_score(&x, &inv_l, eps, beta, delta);
                let want = profile_score_portable(&x, &inv_l, eps, beta, delta);
                assert_eq!(got.to_bits(), want.to_bits(), "n = {n}");
                // Points exactly on the model: the weights' clamp.
                let exact: Vec<f64> = x.iter().map(|&x| 1.0 / (eps + beta * x)).collect();
                let w0: Vec<f64> = (0..n).map(|_| unif()).collect();
                for (il, fit) in [
                    (&inv_l, None),
                    (&inv_l, Some((eps, beta))),
                    (&exact, Some((eps, beta))),
                ] {
                    let (mut w1, mut w2) = (w0.clone(), w0.clone());
                    let got = irls_sums(&x, il, &mut w1, fit, delta);
                    let want = irls_sums_portable(&x, il, &mut w2, fit, delta);
                    assert_eq!(got.map(f64::to_bits), want.map(f64::to_bits), "n = {n}");
                    assert_eq!(
                        w1.iter().map(|w| w.to_bits()).collect::<Vec<_>>(),
                        w2.iter().map(|w| w.to_bits()).collect::<Vec<_>>(),
                        "n = {n}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_profile_passes_sum_every_point_once() {
        for n in 1..=9 {
            let x: Vec<f64> = (0..n).map(|i| 0.1 * (i + 1) as f64).collect();
            let inv_l = vec![0.5; n];
            let mut w = vec![2.0; n];
            // With w = 2 the sum of w c_i is 2 * 0.5 * n.
            let sums = irls_sums(&x, &inv_l, &mut w, None, 1e-3);
            assert_eq!(sums[3], n as f64);
            // The model at half of every loss: the same term n times.
            let one = profile_score(&[0.0], &[0.5], 1.0, 0.0, 1e-3);
            let all = profile_score(&vec![0.0; n], &inv_l, 1.0, 0.0, 1e-3);
            assert!(
                one > 0.0 && (all - n as f64 * one).abs() <= 1e-15 * all,
                "n = {n}"
            );
        }
    }

    #[test]
    fn ln_1p_unit_is_within_3e_16() {
        let mut worst: f64 = 0.0;
        for i in 0..=2_000_000u32 {
            let t = f64::from(i) / 2_000_000.0;
            worst = worst.max((ln_1p_unit([t])[0] - t.ln_1p()).abs());
        }
        for t in [1e-300, 1e-17, 1e-9, std::f64::consts::SQRT_2 - 1.0, 1.0] {
            worst = worst.max((ln_1p_unit([t])[0] - t.ln_1p()).abs());
            // Relative accuracy for small t as well.
            assert!(
                (ln_1p_unit([t])[0] - t.ln_1p()).abs() <= 4.5e-16 * t.ln_1p(),
                "{t}"
            );
        }
        assert!(worst <= 3e-16, "{worst}");
        assert_eq!(ln_1p_unit([0.0])[0], 0.0);
    }
}

/// One round of the profile's Huber-IRLS at a fixed alpha: the five weighted sums
/// `sum_i w_i (c_i^2, c_i f_i, f_i^2, c_i, f_i)` of the relative-error least squares, with
/// `c_i = 1 / L_i` and `f_i = x_i / L_i`. With `fit = Some((eps, beta))` the weights are first
/// updated from that fit's relative errors, `w_i = 1 / max(|1 - eps c_i - beta f_i|, delta)`.
pub(crate) fn irls_sums(
    x: &[f64],
    inv_l: &[f64],
    w: &mut [f64],
    fit: Option<(f64, f64)>,
    delta: f64,
) -> [f64; 5] {
    let n = x.len().min(inv_l.len()).min(w.len());
    let (x, inv_l, w) = (&x[..n], &inv_l[..n], &mut w[..n]);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU has AVX, the one feature `avx::irls_sums` is compiled with.
        return unsafe { avx::irls_sums(x, inv_l, w, fit, delta) };
    }
    irls_sums_portable(x, inv_l, w, fit, delta)
}

/// [`irls_sums`] without SIMD intrinsics (the same results, bit for bit).
fn irls_sums_portable(
    x: &[f64],
    inv_l: &[f64],
    w: &mut [f64],
    fit: Option<(f64, f64)>,
    delta: f64,
) -> [f64; 5] {
    let mut acc = [[0.0; LANES]; 5];
    for (i, ((&x, &il), w)) in x.iter().zip(inv_l).zip(w).enumerate() {
        irls_point(&mut acc, i % LANES, x, il, w, fit, delta);
    }
    acc.map(fold)
}

/// [`irls_sums`]'s work on point `(x, il)`: its weight updated from `fit` (if any), its terms added
/// to lane `lane` of the sums (the definition of every version's arithmetic).
#[inline(always)]
fn irls_point(
    acc: &mut [[f64; LANES]; 5],
    lane: usize,
    x: f64,
    il: f64,
    w: &mut f64,
    fit: Option<(f64, f64)>,
    delta: f64,
) {
    let f2 = x * il;
    if let Some((eps, beta)) = fit {
        *w = 1.0 / (1.0 - eps * il - beta * f2).abs().max(delta);
    }
    let (wf1, wf2) = (*w * il, *w * f2);
    for (k, term) in [wf1 * il, wf1 * f2, wf2 * f2, wf1, wf2]
        .into_iter()
        .enumerate()
    {
        acc[k][lane] += term;
    }
}

/// The profile's cheap estimate of `sum_i H(log L_i - log m_i)` at `m_i = eps + beta x_i`: the
/// log-ratio from its series `2 atanh(s)`, `s = (L - m) / (L + m)`, to `O(s^7)`.
pub(crate) fn profile_score(x: &[f64], inv_l: &[f64], eps: f64, beta: f64, delta: f64) -> f64 {
    let n = x.len().min(inv_l.len());
    let (x, inv_l) = (&x[..n], &inv_l[..n]);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU has AVX, the one feature `avx::profile_score` is compiled with.
        return unsafe { avx::profile_score(x, inv_l, eps, beta, delta) };
    }
    profile_score_portable(x, inv_l, eps, beta, delta)
}

/// [`profile_score`] without SIMD intrinsics (the same result, bit for bit).
fn profile_score_portable(x: &[f64], inv_l: &[f64], eps: f64, beta: f64, delta: f64) -> f64 {
    let mut acc = [0.0; LANES];
    for (i, (&x, &il)) in x.iter().zip(inv_l).enumerate() {
        acc[i % LANES] += score_point(x, il, eps, beta, delta);
    }
    fold(acc)
}

/// [`profile_score`]'s term of point `(x, il)` (the definition of every version's arithmetic).
#[inline(always)]
fn score_point(x: f64, il: f64, eps: f64, beta: f64, delta: f64) -> f64 {
    let t = (eps + beta * x) * il;
    let s = (1.0 - t) / (1.0 + t);
    let s2 = s * s;
    let ar = (2.0 * s * (1.0 + s2 * (1.0 / 3.0 + 0.2 * s2))).abs();
    huber_abs(ar, delta)
}

/// The profile's passes written with AVX intrinsics, four points per register.
///
/// The compiler's vectoriser turned the lane loops of these two passes into two-wide code with
/// scalar loads (measured on a 64-point score: 80 ns a call in point order, 100 ns with lane sums,
/// 44 ns written out here). Each operation is the IEEE operation of the scalar definition
/// ([`score_point`], [`irls_point`]) in the same order, with no fused multiply-add, and `min`/`max`
/// take the bound when a value is NaN as `f64::min`/`f64::max` do: the results are bit for bit
/// those of the portable code.
#[cfg(target_arch = "x86_64")]
mod avx {
    use super::{fold, LANES};
    use std::arch::x86_64::{
        __m128d, __m256d, _mm256_add_pd, _mm256_and_pd, _mm256_castpd256_pd128,
        _mm256_castsi256_pd, _mm256_div_pd, _mm256_extractf128_pd, _mm256_max_pd, _mm256_min_pd,
        _mm256_mul_pd, _mm256_set1_epi64x, _mm256_set1_pd, _mm256_set_pd, _mm256_setzero_pd,
        _mm256_sub_pd, _mm_cvtsd_f64, _mm_unpackhi_pd,
    };

    /// The first four values of `c`, zeros after its end.
    #[inline]
    #[target_feature(enable = "avx")]
    fn load(c: &[f64]) -> __m256d {
        let c = super::pad::<LANES>(c);
        _mm256_set_pd(c[3], c[2], c[1], c[0])
    }

    /// The four lanes of `v`.
    #[inline]
    #[target_feature(enable = "avx")]
    fn lanes_of(v: __m256d) -> [f64; LANES] {
        let (lo, hi) = (_mm256_castpd256_pd128(v), _mm256_extractf128_pd::<1>(v));
        let second = |h: __m128d| _mm_cvtsd_f64(_mm_unpackhi_pd(h, h));
        [_mm_cvtsd_f64(lo), second(lo), _mm_cvtsd_f64(hi), second(hi)]
    }

    /// `|v|` lane by lane.
    #[inline]
    #[target_feature(enable = "avx")]
    fn abs(v: __m256d) -> __m256d {
        _mm256_and_pd(v, _mm256_castsi256_pd(_mm256_set1_epi64x(i64::MAX)))
    }

    /// [`super::score_point`] of four points.
    #[inline]
    #[target_feature(enable = "avx")]
    fn score_block(
        x: __m256d,
        il: __m256d,
        eps: __m256d,
        beta: __m256d,
        delta: __m256d,
    ) -> __m256d {
        let one = _mm256_set1_pd(1.0);
        let t = _mm256_mul_pd(_mm256_add_pd(eps, _mm256_mul_pd(beta, x)), il);
        let s = _mm256_div_pd(_mm256_sub_pd(one, t), _mm256_add_pd(one, t));
        let s2 = _mm256_mul_pd(s, s);
        let series = _mm256_mul_pd(
            s2,
            _mm256_add_pd(
                _mm256_set1_pd(1.0 / 3.0),
                _mm256_mul_pd(_mm256_set1_pd(0.2), s2),
            ),
        );
        let two_s = _mm256_mul_pd(_mm256_set1_pd(2.0), s);
        let ar = abs(_mm256_mul_pd(two_s, _mm256_add_pd(one, series)));
        // huber_abs: c (ar - c / 2) with c = min(ar, delta) (delta where ar is NaN).
        let c = _mm256_min_pd(ar, delta);
        _mm256_mul_pd(c, _mm256_sub_pd(ar, _mm256_mul_pd(_mm256_set1_pd(0.5), c)))
    }

    #[target_feature(enable = "avx")]
    pub(super) fn profile_score(x: &[f64], inv_l: &[f64], eps: f64, beta: f64, delta: f64) -> f64 {
        let (eps, beta, delta) = (
            _mm256_set1_pd(eps),
            _mm256_set1_pd(beta),
            _mm256_set1_pd(delta),
        );
        let mut sum = _mm256_setzero_pd();
        let (xc, lc) = (x.chunks_exact(LANES), inv_l.chunks_exact(LANES));
        let (xt, lt) = (xc.remainder(), lc.remainder());
        for (x, il) in xc.zip(lc) {
            sum = _mm256_add_pd(sum, score_block(load(x), load(il), eps, beta, delta));
        }
        let mut acc = lanes_of(sum);
        if !xt.is_empty() {
            let tail = lanes_of(score_block(load(xt), load(lt), eps, beta, delta));
            for j in 0..xt.len() {
                acc[j] += tail[j];
            }
        }
        fold(acc)
    }

    /// [`super::irls_point`] of four points: their weights (updated from `fit` if any) and terms.
    #[inline]
    #[target_feature(enable = "avx")]
    fn irls_block(
        x: __m256d,
        il: __m256d,
        w: __m256d,
        fit: Option<(__m256d, __m256d)>,
        delta: __m256d,
    ) -> (__m256d, [__m256d; 5]) {
        let f2 = _mm256_mul_pd(x, il);
        let w = match fit {
            Some((eps, beta)) => {
                let one = _mm256_set1_pd(1.0);
                let r = _mm256_sub_pd(
                    _mm256_sub_pd(one, _mm256_mul_pd(eps, il)),
                    _mm256_mul_pd(beta, f2),
                );
                // max(|r|, delta) (delta where r is NaN), as `f64::max`.
                _mm256_div_pd(one, _mm256_max_pd(abs(r), delta))
            }
            None => w,
        };
        let (wf1, wf2) = (_mm256_mul_pd(w, il), _mm256_mul_pd(w, f2));
        (
            w,
            [
                _mm256_mul_pd(wf1, il),
                _mm256_mul_pd(wf1, f2),
                _mm256_mul_pd(wf2, f2),
                wf1,
                wf2,
            ],
        )
    }

    #[target_feature(enable = "avx")]
    pub(super) fn irls_sums(
        x: &[f64],
        inv_l: &[f64],
        w: &mut [f64],
        fit: Option<(f64, f64)>,
        delta: f64,
    ) -> [f64; 5] {
        let fit = fit.map(|(e, b)| (_mm256_set1_pd(e), _mm256_set1_pd(b)));
        let delta = _mm256_set1_pd(delta);
        let mut sums = [_mm256_setzero_pd(); 5];
        let (xc, lc) = (x.chunks_exact(LANES), inv_l.chunks_exact(LANES));
        let (xt, lt) = (xc.remainder(), lc.remainder());
        let mut wc = w.chunks_exact_mut(LANES);
        for ((x, il), w) in xc.zip(lc).zip(&mut wc) {
            let (w4, terms) = irls_block(load(x), load(il), load(w), fit, delta);
            if fit.is_some() {
                w.copy_from_slice(&lanes_of(w4));
            }
            for (s, t) in sums.iter_mut().zip(terms) {
                *s = _mm256_add_pd(*s, t);
            }
        }
        let mut acc: [[f64; LANES]; 5] = std::array::from_fn(|k| lanes_of(sums[k]));
        let wt = wc.into_remainder();
        if !xt.is_empty() {
            let (w4, terms) = irls_block(load(xt), load(lt), load(wt), fit, delta);
            let w4 = lanes_of(w4);
            // (A loop, not `copy_from_slice`: a copy of a variable length is a call.)
            for (w, v) in wt.iter_mut().zip(w4) {
                *w = v;
            }
            for (k, t) in terms.into_iter().enumerate() {
                let t = lanes_of(t);
                for j in 0..xt.len() {
                    acc[k][j] += t[j];
                }
            }
        }
        acc.map(fold)
    }
}
