//! The online power-law estimator: per-domain loss streams in, fitted laws out.
//!
//! Each step brings one mean loss per domain (NaN for a domain absent from the batch) and the x-axis
//! value `n` of each domain. The estimator
//!
//! * imputes an absent domain by carrying its last loss forward (the reference behaviour), or skips it;
//! * smooths each domain's series with a Savitzky–Golay filter (scipy's `mode="interp"` semantics),
//!   incrementally: an observation's smoothed value is final once half a window of newer observations
//!   has arrived; the newest half window is smoothed at query time from the raw ring buffer;
//! * keeps every `subsample`-th observation from `ignore_steps` on as a fit point, in a buffer bounded by
//!   `max_points` (dropping the oldest, or thinning to every other point and doubling the stride).
//!
//! Memory is `O(K * (window + max_points))` and [`PowerLawEstimator::update`] costs `O(K)` amortised.

use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fit::{fit_many_cancellable, FitConfig, FitResult};
use crate::savgol::SavGol;

/// What to do with a domain that is absent from a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Missing {
    /// Record its last loss again (the reference implementation).
    Carry,
    /// Record nothing for it at this step.
    Skip,
}

/// What to do when a domain's fit-point buffer is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// Drop the oldest point (a sliding window over the most recent points).
    DropOldest,
    /// Keep every other point and double the subsampling stride: the whole run stays covered.
    Thin,
}

/// Settings of [`PowerLawEstimator`]. Its JSON form is the Python model
/// `ado.estimators.PowerLawEstimatorConfig` (same fields, same defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EstimatorConfig {
    /// Observations at steps below this are smoothed over but never become fit points.
    pub ignore_steps: u64,
    /// Keep every `subsample`-th observation as a fit point.
    pub subsample: u64,
    /// Savitzky–Golay window (odd; 1 disables smoothing).
    pub window: usize,
    /// Savitzky–Golay polynomial order.
    pub order: usize,
    /// Capacity of each domain's fit-point buffer (`None`: unbounded).
    pub max_points: Option<usize>,
    /// Policy for a full buffer.
    pub overflow: Overflow,
    /// Policy for absent domains.
    pub missing: Missing,
}

/// Largest smoothing window (the smoother keeps a `window x window` weight matrix).
pub const MAX_WINDOW: usize = 4095;
/// Largest smoothing polynomial order.
pub const MAX_ORDER: usize = 16;
/// Most domains of one estimator (each holds a series; far beyond any mixture).
pub const MAX_DOMAINS: usize = 1 << 24;
/// Largest `max_points` (per-domain fit-point capacity).
pub const MAX_POINTS: usize = 1 << 24;

impl Default for EstimatorConfig {
    fn default() -> Self {
        EstimatorConfig {
            ignore_steps: 0,
            subsample: 10,
            window: 101,
            order: 3,
            max_points: Some(4096),
            overflow: Overflow::Thin,
            missing: Missing::Carry,
        }
    }
}

impl EstimatorConfig {
    /// Parse and validate the JSON form.
    pub fn from_json(json: &str) -> Result<Self> {
        let config: EstimatorConfig = serde_json::from_str(json)
            .map_err(|e| Error::invalid(format!("estimator config: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        if self.window > MAX_WINDOW || self.order > MAX_ORDER {
            return Err(Error::invalid(format!(
                "smoothing window must be <= {MAX_WINDOW} and order <= {MAX_ORDER}, got window {} \
                 and order {}",
                self.window, self.order
            )));
        }
        if matches!(self.max_points, Some(m) if m > MAX_POINTS) {
            return Err(Error::invalid(format!(
                "max_points must be <= {MAX_POINTS}"
            )));
        }
        if self.window == 0 || self.window % 2 == 0 {
            return Err(Error::invalid(format!(
                "smoothing window must be odd and >= 1, got {}",
                self.window
            )));
        }
        if self.window > 1 && self.order >= self.window {
            return Err(Error::invalid(format!(
                "smoothing order {} must be below the window {}",
                self.order, self.window
            )));
        }
        if self.subsample == 0 {
            return Err(Error::invalid("subsample must be >= 1"));
        }
        if matches!(self.max_points, Some(m) if m < 3) {
            return Err(Error::invalid("max_points must be >= 3"));
        }
        Ok(())
    }
}

/// One raw observation of a domain's smoothing ring, in the per-domain form of a state.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct Obs {
    loss: f64,
    n: f64,
    /// Index among the observations at steps >= `ignore_steps`, if any.
    ordinal: Option<u64>,
}

/// One domain's series in the per-domain form: how a state is checked (and the earlier JSON
/// form of a state), not how the estimator stores it (see [`PowerLawEstimator`]).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Series {
    raw: Vec<Obs>,
    count: u64,
    ordinals: u64,
    stride: u64,
    last: Option<f64>,
    points_n: VecDeque<f64>,
    points_y: VecDeque<f64>,
}

/// The whole state of a [`PowerLawEstimator`] one domain at a time: its JSON form (the
/// earlier form of a checkpoint, still read), from [`PowerLawEstimator::state`], restored by
/// [`PowerLawEstimator::restore`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EstimatorState {
    config: EstimatorConfig,
    series: Vec<Series>,
    last_step: Option<u64>,
}

/// The state of a [`PowerLawEstimator`] as flat columns: per-domain scalars (one entry per
/// domain) and each domain's raw ring and fit points, concatenated in domain order. A raw
/// observation's ordinal is not stored: past `ignore_steps` they are consecutive, so the count
/// of `ordinals` gives them. `last` is NaN for a domain never observed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StateColumns {
    /// The last step ingested.
    pub last_step: Option<u64>,
    /// Observations of each domain.
    pub count: Vec<u64>,
    /// Observations of each domain at steps >= `ignore_steps`.
    pub ordinals: Vec<u64>,
    /// Each domain's subsampling stride (grows by thinning).
    pub stride: Vec<u64>,
    /// Each domain's last loss (NaN: none yet).
    pub last: Vec<f64>,
    /// Fit points of each domain.
    pub points: Vec<u64>,
    /// The raw rings' losses (`min(count, window)` per domain).
    pub raw_loss: Vec<f64>,
    /// The raw rings' x-values.
    pub raw_n: Vec<f64>,
    /// The fit points' x-values (`points` per domain).
    pub points_n: Vec<f64>,
    /// The fit points' smoothed losses.
    pub points_y: Vec<f64>,
}

/// The online estimator. See the module docs.
///
/// Stored by column: the per-domain counters in one vector each, and the raw rings of all
/// domains in one `window x K` matrix per quantity, slot-major (observation `q` of domain `d`
/// at `[(q % window) * K + d]`; a domain's ring is its last `min(count, window)` observations).
/// A step writes one row (all domains observe every step in carry mode, so their rings move in
/// lockstep) and adds it to the running smoothing sums of the upcoming fit rows; the step whose
/// middle row is a fit row takes its finished sums and writes one row of the point matrices
/// ([`PointStore`]). Every step thus costs about the same: no step reads the whole ring matrix.
#[derive(Clone, Debug)]
pub struct PowerLawEstimator {
    config: EstimatorConfig,
    sg: SavGol,
    last_step: Option<u64>,
    count: Vec<u64>,
    ordinals: Vec<u64>,
    stride: Vec<u64>,
    /// NaN: never observed.
    last: Vec<f64>,
    /// Rows of the ring matrices allocated so far (up to `window`, as observations arrive).
    rows: usize,
    raw_loss: Vec<f64>,
    raw_n: Vec<f64>,
    points: PointStore,
    /// The steady state's running smoothing sums (see [`PowerLawEstimator::push_row`]): for each
    /// upcoming fit row `m` whose window has begun, `(m, per-domain sum so far)`, oldest first.
    /// Not part of the state: it is empty after a restore, and rebuilt within one window.
    running: VecDeque<(u64, Vec<f64>)>,
}

/// Every domain's fit points, in two slot-major `rows x K` matrices like the raw rings: point `i`
/// of domain `d` is at `[slot * K + d]` with `slot = start[d] + i` (modulo `max_points + 1` when
/// the oldest points are dropped). The step that keeps a point for every domain writes one row
/// of each matrix, where `K` separate buffers per matrix would cost `2 K` cache misses (at
/// K = 10^4 this was most of a step's time, and evicted the rest of the policy's data).
#[derive(Clone, Debug)]
struct PointStore {
    k: usize,
    /// Ring modulus (`max_points + 1`) when the oldest points are dropped.
    modulus: Option<usize>,
    /// Most rows ever needed (`max_points + 1`), if bounded.
    limit: usize,
    rows: usize,
    n: Vec<f64>,
    y: Vec<f64>,
    start: Vec<usize>,
    len: Vec<usize>,
}

impl PointStore {
    fn new(k: usize, max_points: Option<usize>, overflow: Overflow) -> Self {
        let limit = max_points.map_or(usize::MAX, |cap| cap.saturating_add(1));
        PointStore {
            k,
            modulus: (overflow == Overflow::DropOldest && max_points.is_some()).then_some(limit),
            limit,
            rows: 0,
            n: Vec::new(),
            y: Vec::new(),
            start: vec![0; k],
            len: vec![0; k],
        }
    }

    fn len(&self, d: usize) -> usize {
        self.len[d]
    }

    /// Index of point `i` of domain `d` in the matrices.
    fn at(&self, d: usize, i: usize) -> usize {
        let slot = self.start[d] + i;
        let slot = match self.modulus {
            Some(m) if slot >= m => slot - m,
            _ => slot,
        };
        slot * self.k + d
    }

    fn push(&mut self, d: usize, n: f64, y: f64) {
        let at = self.at(d, self.len[d]);
        if at >= self.rows * self.k {
            // Grow geometrically (bounded by the most rows ever needed).
            let need = at / self.k + 1;
            let rows = self.rows.saturating_mul(2).max(4).min(self.limit).max(need);
            self.n.resize(rows * self.k, 0.0);
            self.y.resize(rows * self.k, 0.0);
            self.rows = rows;
        }
        self.n[at] = n;
        self.y[at] = y;
        self.len[d] += 1;
    }

    fn pop_front(&mut self, d: usize) {
        if self.len[d] > 0 {
            self.start[d] += 1;
            if self.modulus == Some(self.start[d]) {
                self.start[d] = 0;
            }
            self.len[d] -= 1;
        }
    }

    /// Keep every other point (the first, the third, ...).
    fn thin(&mut self, d: usize) {
        let keep = self.len[d].div_ceil(2);
        for i in 1..keep {
            let (to, from) = (self.at(d, i), self.at(d, 2 * i));
            self.n[to] = self.n[from];
            self.y[to] = self.y[from];
        }
        self.len[d] = keep;
    }

    /// Domain `d`'s points `(n, y)`, oldest first.
    fn iter(&self, d: usize) -> impl Iterator<Item = (f64, f64)> + '_ {
        (0..self.len[d]).map(move |i| {
            let at = self.at(d, i);
            (self.n[at], self.y[at])
        })
    }

    fn clear(&mut self) {
        self.rows = 0;
        self.n.clear();
        self.y.clear();
        self.start.fill(0);
        self.len.fill(0);
    }
}

/// Most running sums kept in the steady state (`window / stride` of them are live).
const MAX_RUNNING: usize = 16;

impl PowerLawEstimator {
    /// An empty estimator for `num_domains` domains.
    pub fn new(num_domains: usize, config: EstimatorConfig) -> Result<Self> {
        config.validate()?;
        if num_domains == 0 || num_domains > MAX_DOMAINS {
            return Err(Error::invalid(format!(
                "num_domains must be in [1, {MAX_DOMAINS}], got {num_domains}"
            )));
        }
        let sg = SavGol::new(config.window, config.order.min(config.window - 1))?;
        let k = num_domains;
        let points = PointStore::new(k, config.max_points, config.overflow);
        Ok(PowerLawEstimator {
            stride: vec![config.subsample; k],
            config,
            sg,
            last_step: None,
            count: vec![0; k],
            ordinals: vec![0; k],
            last: vec![f64::NAN; k],
            rows: 0,
            raw_loss: Vec::new(),
            raw_n: Vec::new(),
            points,
            running: VecDeque::new(),
        })
    }

    /// Settings.
    pub fn config(&self) -> &EstimatorConfig {
        &self.config
    }

    /// Number of domains.
    pub fn num_domains(&self) -> usize {
        self.count.len()
    }

    /// The last step ingested.
    pub fn last_step(&self) -> Option<u64> {
        self.last_step
    }

    /// Index of observation `q` of domain `d` in the ring matrices.
    fn at(&self, d: usize, q: u64) -> usize {
        (q % self.config.window as u64) as usize * self.count.len() + d
    }

    /// Domain `d`'s raw ring: the index of its oldest observation and its losses, oldest first.
    fn ring(&self, d: usize) -> (u64, Vec<f64>) {
        let c = self.count[d];
        let first = c - c.min(self.config.window as u64);
        (
            first,
            (first..c).map(|q| self.raw_loss[self.at(d, q)]).collect(),
        )
    }

    /// Whether observation `q` of domain `d` is a fit point (past `ignore_steps`, on the
    /// stride). The observations at steps >= `ignore_steps` are the last `ordinals`.
    fn is_point(&self, d: usize, q: u64) -> bool {
        let first = self.count[d] - self.ordinals[d];
        q >= first && (q - first) % self.stride[d] == 0
    }

    /// Ingest one step. `losses[k]` is domain `k`'s mean loss (NaN: absent), `n[k]` its x-axis value,
    /// `fill` the value imputed for an absent domain that has no earlier loss (carry mode).
    pub fn update(
        &mut self,
        step: u64,
        losses: &[f64],
        n: &[f64],
        fill: Option<f64>,
    ) -> Result<()> {
        let k = self.count.len();
        if losses.len() != k || n.len() != k {
            return Err(Error::invalid(format!(
                "expected {k} losses and {k} x-values, got {} and {}",
                losses.len(),
                n.len()
            )));
        }
        if let Some(last) = self.last_step {
            if step <= last {
                return Err(Error::invalid(format!(
                    "steps must increase: got step {step} after step {last}"
                )));
            }
        }
        if let Some(f) = fill {
            if !(f.is_finite() && f > 0.0) {
                return Err(Error::invalid(format!(
                    "fill must be finite and > 0, got {f}"
                )));
            }
        }
        // Validate everything before mutating anything; NaN: nothing to record (skip mode).
        let mut values = Vec::with_capacity(k);
        for d in 0..k {
            let (l, x) = (losses[d], n[d]);
            if !(x.is_finite() && x > 0.0) {
                return Err(Error::invalid(format!(
                    "domain {d}: n = {x}; must be finite and > 0"
                )));
            }
            let v = if l.is_nan() {
                match self.config.missing {
                    Missing::Skip => f64::NAN,
                    Missing::Carry => match (self.last[d], fill) {
                        (last, _) if !last.is_nan() => last,
                        (_, Some(v)) => v,
                        _ => {
                            return Err(Error::invalid(format!(
                                "domain {d} is absent at step {step} and has no earlier loss to \
                                 carry forward; pass a fill value"
                            )))
                        }
                    },
                }
            } else if l.is_finite() && l > 0.0 {
                l
            } else {
                return Err(Error::invalid(format!(
                    "domain {d}: loss = {l}; must be finite and > 0 (NaN marks an absent domain)"
                )));
            };
            values.push(v);
        }
        self.last_step = Some(step);
        let w = self.config.window;
        if self.rows < w {
            let most = self.count.iter().copied().max().unwrap_or(0);
            let rows = (most as usize).saturating_add(1).min(w);
            if rows > self.rows {
                self.raw_loss.resize(rows * k, 0.0);
                self.raw_n.resize(rows * k, 0.0);
                self.rows = rows;
            }
        }
        let past_ignore = step >= self.config.ignore_steps;
        match self.count.first() {
            Some(&c0)
                if c0 >= w as u64
                    && self.count.iter().all(|&c| c == c0)
                    && values.iter().all(|v| !v.is_nan()) =>
            {
                let due = self.push_row(c0, &values, n, past_ignore);
                match self.advance_running(c0, &values, &due) {
                    Some(sums) => {
                        // The middle row's slot, the same for every domain in lockstep.
                        let row = self.at(0, c0 - w as u64 / 2);
                        for (d, smoothed) in sums.into_iter().enumerate() {
                            self.keep(d, self.raw_n[row + d], smoothed);
                        }
                    }
                    None => self.smooth_middle(&due),
                }
            }
            _ => {
                self.running.clear();
                let mut due = Vec::new();
                for (d, &v) in values.iter().enumerate() {
                    if !v.is_nan() && self.push(d, v, n[d], past_ignore) {
                        due.push(d);
                    }
                }
                self.smooth_middle(&due);
            }
        }
        Ok(())
    }

    /// The steady state's smoothing, spread over the steps: observation `q` (just written, row
    /// `values`) is added to the running sum of every upcoming fit row whose window holds it,
    /// and starts the sum of row `q + window / 2` if that will be a fit row. Returns the finished
    /// sums of the middle row `q - window / 2` if every domain is `due` there and its sum ran
    /// from the start of its window (else the caller smooths it from the ring).
    ///
    /// A sum adds its window's terms oldest first from 0.0, like [`Self::smooth_middle`] and
    /// `SavGol::apply`: the points are bitwise the same. Instead of one pass over the whole
    /// `window x K` matrix every `stride` steps (a spike of ~1 ms at K = 10^4), each step adds
    /// one row to `window / stride` sums. Used while all domains share their ordinals and stride
    /// (the steady state of carry mode) and `window / stride <= MAX_RUNNING`; anything else
    /// empties it.
    fn advance_running(&mut self, q: u64, values: &[f64], due: &[usize]) -> Option<Vec<f64>> {
        let (k, w) = (self.count.len(), self.config.window as u64);
        let h = w / 2;
        let (o0, s0) = (self.ordinals[0], self.stride[0]);
        let uniform = o0 > 0
            && self.ordinals.iter().all(|&o| o == o0)
            && self.stride.iter().all(|&s| s == s0)
            && w.div_ceil(s0) as usize <= MAX_RUNNING;
        if !uniform {
            self.running.clear();
            return None;
        }
        let coef = self.sg.row(h as usize);
        for (m, sums) in &mut self.running {
            // This observation is term `q - (m - h)` of row m's window.
            let c = coef[(q + h - *m) as usize];
            for (a, &v) in sums.iter_mut().zip(values) {
                *a += c * v;
            }
        }
        let first = self.count[0] - o0;
        let next = q + h;
        if next >= first && (next - first) % s0 == 0 {
            let c = coef[0];
            self.running
                .push_back((next, values.iter().map(|&v| 0.0 + c * v).collect()));
        }
        let middle = q - h;
        while self.running.front().is_some_and(|(m, _)| *m < middle) {
            self.running.pop_front();
        }
        if self.running.front().is_some_and(|(m, _)| *m == middle) {
            let (_, sums) = self.running.pop_front()?;
            if due.len() == k {
                return Some(sums);
            }
        }
        None
    }

    /// [`PowerLawEstimator::push`] for every domain at once, when all of them observe and their
    /// full rings are in lockstep (`c0` observations each, the steady state of carry mode): one
    /// row of the matrices is written. Returns the domains whose middle row is due.
    fn push_row(&mut self, c0: u64, values: &[f64], n: &[f64], past_ignore: bool) -> Vec<usize> {
        let k = self.count.len();
        let at = self.at(0, c0);
        self.raw_loss[at..at + k].copy_from_slice(values);
        self.raw_n[at..at + k].copy_from_slice(n);
        self.last.copy_from_slice(values);
        for c in &mut self.count {
            *c += 1;
        }
        if past_ignore {
            for o in &mut self.ordinals {
                *o += 1;
            }
        }
        // the middle observation; every stride is a multiple of `subsample`, so when all the
        // domains give it the same ordinal, one test of it rules them all out 9 times in 10
        let middle = c0 - self.config.window as u64 / 2;
        let o0 = self.ordinals[0];
        if self.ordinals.iter().all(|&o| o == o0) {
            let first = c0 + 1 - o0;
            if middle < first || (middle - first) % self.config.subsample != 0 {
                return Vec::new();
            }
        }
        (0..k).filter(|&d| self.is_point(d, middle)).collect()
    }

    /// Append an observation to domain `d`'s ring; smooth and keep what became final, except the
    /// steady state's middle row: returns whether that one is due (see `smooth_middle`).
    fn push(&mut self, d: usize, loss: f64, n: f64, past_ignore: bool) -> bool {
        let w = self.config.window as u64;
        let h = w / 2;
        let q = self.count[d];
        let at = self.at(d, q);
        self.raw_loss[at] = loss;
        self.raw_n[at] = n;
        if past_ignore {
            self.ordinals[d] += 1;
        }
        self.last[d] = loss;
        let c = q + 1;
        self.count[d] = c;
        // the rows whose smoothed value became final with this observation; only a fit point is
        // smoothed (1 in `stride` observations: the hot path's cost)
        if c > w {
            return self.is_point(d, c - 1 - h);
        }
        if c < w {
            return false;
        }
        let (_, ring) = self.ring(d);
        for r in 0..=h {
            if self.is_point(d, r) {
                let smoothed = self.sg.apply(r as usize, ring.iter().copied());
                self.keep(d, self.raw_n[self.at(d, r)], smoothed);
            }
        }
        false
    }

    /// Keep the middle row of each domain in `due` (a full ring whose middle observation is a fit
    /// point), smoothed. Domains whose rings are in the same phase (all of them in carry mode)
    /// are summed row by row over the ring matrix, each domain's sum in its own order (so bitwise
    /// `SavGol::apply` over its ring).
    fn smooth_middle(&mut self, due: &[usize]) {
        let Some(&first) = due.first() else { return };
        let (k, w) = (self.count.len(), self.config.window);
        let h = w / 2;
        let coef = self.sg.row(h);
        let phase = |d: usize| (self.count[d] % w as u64) as usize; // the slot of the oldest
        let s0 = phase(first);
        let mut acc = vec![0.0f64; due.len()];
        if due.iter().all(|&d| phase(d) == s0) {
            let all = due.len() == k; // then due is 0..k
            for (j, &c) in coef.iter().enumerate() {
                let slot = if s0 + j >= w { s0 + j - w } else { s0 + j };
                let row = &self.raw_loss[slot * k..(slot + 1) * k];
                if all {
                    for (a, &v) in acc.iter_mut().zip(row) {
                        *a += c * v;
                    }
                } else {
                    for (a, &d) in acc.iter_mut().zip(due) {
                        *a += c * row[d];
                    }
                }
            }
        } else {
            for (a, &d) in acc.iter_mut().zip(due) {
                let s = phase(d);
                for (j, &c) in coef.iter().enumerate() {
                    let slot = if s + j >= w { s + j - w } else { s + j };
                    *a += c * self.raw_loss[slot * k + d];
                }
            }
        }
        for (&d, &smoothed) in due.iter().zip(&acc) {
            let middle = self.count[d] - 1 - h as u64;
            self.keep(d, self.raw_n[self.at(d, middle)], smoothed);
        }
    }

    /// Append a fit point of domain `d`, thinning a full buffer.
    fn keep(&mut self, d: usize, n: f64, smoothed: f64) {
        self.points.push(d, n, smoothed);
        if let Some(cap) = self.config.max_points {
            if self.points.len(d) > cap {
                match self.config.overflow {
                    Overflow::DropOldest => self.points.pop_front(d),
                    Overflow::Thin => {
                        self.points.thin(d);
                        self.stride[d] = self.stride[d].saturating_mul(2);
                    }
                }
            }
        }
    }

    /// The first row of domain `d`'s ring not yet kept as a point: the newest half window once
    /// the ring is full (its older rows were kept), else all of it.
    fn first_pending_row(&self, d: usize) -> u64 {
        let w = self.config.window as u64;
        if self.count[d] >= w {
            w / 2 + 1
        } else {
            0
        }
    }

    /// Domain `d`'s current fit points `(n, smoothed loss)`, including the newest half window, which is
    /// smoothed now from the raw ring buffer.
    pub fn points(&self, d: usize) -> Result<(Vec<f64>, Vec<f64>)> {
        if d >= self.count.len() {
            return Err(Error::invalid(format!(
                "domain {d} out of range (have {})",
                self.count.len()
            )));
        }
        let (mut xs, mut ys): (Vec<f64>, Vec<f64>) = self.points.iter(d).unzip();
        let w = self.config.window;
        let order = self.config.order;
        let (first, ring) = self.ring(d);
        let m = ring.len();
        let owned;
        let sg = if self.count[d] >= w as u64 {
            &self.sg
        } else {
            owned = if m > order + 1 {
                SavGol::new(m, order)?
            } else {
                SavGol::new(1, 0)?
            };
            &owned
        };
        for r in self.first_pending_row(d)..m as u64 {
            if !self.is_point(d, first + r) {
                continue;
            }
            let y = if sg.window() == 1 {
                ring[r as usize]
            } else {
                sg.apply(r as usize, ring.iter().copied())
            };
            xs.push(self.raw_n[self.at(d, first + r)]);
            ys.push(y);
        }
        Ok((xs, ys))
    }

    /// Number of fit points of each domain (what [`PowerLawEstimator::points`] would return,
    /// counted without smoothing anything).
    pub fn num_points(&self) -> Vec<usize> {
        let w = self.config.window as u64;
        (0..self.count.len())
            .map(|d| {
                let first = self.count[d] - self.count[d].min(w);
                let pending = (first + self.first_pending_row(d)..self.count[d])
                    .filter(|&q| self.is_point(d, q))
                    .count();
                self.points.len(d) + pending
            })
            .collect()
    }

    /// Fit every domain's current points (in parallel).
    ///
    /// A domain with fewer than 3 points, or whose smoothed series left the positive reals (the
    /// smoother can undershoot when losses approach 0), gives [`Error::Fit`]: the data are not
    /// wrong, there is just no law to fit yet.
    pub fn fit(&self, config: &FitConfig) -> Result<Vec<FitResult>> {
        self.fit_cancellable(config, &AtomicBool::new(false))
    }

    /// [`PowerLawEstimator::fit`] that stops with [`Error::Interrupted`] once `cancel` is set.
    pub fn fit_cancellable(
        &self,
        config: &FitConfig,
        cancel: &AtomicBool,
    ) -> Result<Vec<FitResult>> {
        let pts: Vec<(Vec<f64>, Vec<f64>)> = (0..self.count.len())
            .map(|d| self.points(d))
            .collect::<Result<_>>()?;
        for (domain, (_, ys)) in pts.iter().enumerate() {
            if ys.len() < 3 {
                return Err(Error::Fit {
                    domain,
                    message: format!("{} fit points, at least 3 are needed", ys.len()),
                });
            }
            if let Some(y) = ys.iter().find(|y| !(y.is_finite() && **y > 0.0)) {
                return Err(Error::Fit {
                    domain,
                    message: format!("a smoothed loss is {y}; power laws need positive losses"),
                });
            }
        }
        let ns: Vec<&[f64]> = pts.iter().map(|p| p.0.as_slice()).collect();
        let ys: Vec<&[f64]> = pts.iter().map(|p| p.1.as_slice()).collect();
        fit_many_cancellable(&ns, &ys, config, cancel)
    }

    /// The state as flat columns ([`StateColumns`]): the compact, binary-friendly form of
    /// a checkpoint (restored exactly by [`PowerLawEstimator::restore_columns`]).
    pub fn to_columns(&self) -> StateColumns {
        let k = self.count.len();
        let mut c = StateColumns {
            last_step: self.last_step,
            count: self.count.clone(),
            ordinals: self.ordinals.clone(),
            stride: self.stride.clone(),
            last: self.last.clone(),
            points: (0..k).map(|d| self.points.len(d) as u64).collect(),
            ..StateColumns::default()
        };
        let w = self.config.window as u64;
        for d in 0..k {
            let cnt = self.count[d];
            for q in cnt - cnt.min(w)..cnt {
                c.raw_loss.push(self.raw_loss[self.at(d, q)]);
                c.raw_n.push(self.raw_n[self.at(d, q)]);
            }
            for (x, y) in self.points.iter(d) {
                c.points_n.push(x);
                c.points_y.push(y);
            }
        }
        c
    }

    /// Restore [`PowerLawEstimator::to_columns`] output of an estimator with this configuration
    /// and number of domains. Every column and every domain's invariants are checked first; on an
    /// error ([`Error::State`], naming the column or the domain) nothing changes.
    pub fn restore_columns(&mut self, c: StateColumns) -> Result<()> {
        let k = self.count.len();
        let w = self.config.window as u64;
        for (name, len) in [
            ("count", c.count.len()),
            ("ordinals", c.ordinals.len()),
            ("stride", c.stride.len()),
            ("last", c.last.len()),
            ("points", c.points.len()),
        ] {
            if len != k {
                return Err(Error::State(format!(
                    "estimator state: {name} has {len} entries; expected one per domain ({k})"
                )));
            }
        }
        let raw_len: u64 = c.count.iter().map(|&n| n.min(w)).sum();
        let mut points_len: u64 = 0;
        for (d, &p) in c.points.iter().enumerate() {
            if matches!(self.config.max_points, Some(cap) if p > cap as u64) {
                return Err(Error::State(format!(
                    "estimator state, domain {d}: {p} points exceed max_points {}",
                    self.config.max_points.unwrap_or(0)
                )));
            }
            points_len = points_len.saturating_add(p);
        }
        for (name, len, want) in [
            ("raw_loss", c.raw_loss.len(), raw_len),
            ("raw_n", c.raw_n.len(), raw_len),
            ("points_n", c.points_n.len(), points_len),
            ("points_y", c.points_y.len(), points_len),
        ] {
            if len as u64 != want {
                return Err(Error::State(format!(
                    "estimator state: {name} has {len} values; the per-domain counts make {want}"
                )));
            }
        }
        let (mut raw_at, mut pts_at) = (0usize, 0usize);
        let mut series = Vec::with_capacity(k);
        for d in 0..k {
            let m = c.count[d].min(w) as usize;
            let p = c.points[d] as usize;
            let ordinals = c.ordinals[d];
            // the raw ring's ordinals: none before ignore_steps, then consecutive up to the last
            let with = (m as u64).min(ordinals) as usize;
            let first = ordinals - with as u64;
            let raw = (0..m)
                .map(|i| Obs {
                    loss: c.raw_loss[raw_at + i],
                    n: c.raw_n[raw_at + i],
                    ordinal: (i >= m - with).then(|| first + (i - (m - with)) as u64),
                })
                .collect();
            let last = c.last[d];
            let s = Series {
                raw,
                count: c.count[d],
                ordinals,
                stride: c.stride[d],
                last: (!last.is_nan()).then_some(last),
                points_n: c.points_n[pts_at..pts_at + p].iter().copied().collect(),
                points_y: c.points_y[pts_at..pts_at + p].iter().copied().collect(),
            };
            self.check_series(&s, c.last_step)
                .map_err(|e| Error::State(format!("estimator state, domain {d}: {e}")))?;
            series.push(s);
            raw_at += m;
            pts_at += p;
        }
        self.install(series, c.last_step);
        Ok(())
    }

    /// The state one domain at a time (its JSON form is the earlier form of a checkpoint).
    pub fn state(&self) -> EstimatorState {
        let w = self.config.window as u64;
        let series = (0..self.count.len())
            .map(|d| {
                let cnt = self.count[d];
                let ord_from = cnt - self.ordinals[d];
                Series {
                    raw: (cnt - cnt.min(w)..cnt)
                        .map(|q| Obs {
                            loss: self.raw_loss[self.at(d, q)],
                            n: self.raw_n[self.at(d, q)],
                            ordinal: (q >= ord_from).then(|| q - ord_from),
                        })
                        .collect(),
                    count: cnt,
                    ordinals: self.ordinals[d],
                    stride: self.stride[d],
                    last: (!self.last[d].is_nan()).then_some(self.last[d]),
                    points_n: self.points.iter(d).map(|p| p.0).collect(),
                    points_y: self.points.iter(d).map(|p| p.1).collect(),
                }
            })
            .collect();
        EstimatorState {
            config: self.config.clone(),
            series,
            last_step: self.last_step,
        }
    }

    /// Restore [`PowerLawEstimator::state`] output of an estimator with the same configuration
    /// and domains (each domain's invariants checked first; on an error nothing changes).
    pub fn restore(&mut self, other: EstimatorState) -> Result<()> {
        if other.config != self.config {
            return Err(Error::State(format!(
                "estimator state was saved with {:?}, this estimator has {:?}",
                other.config, self.config
            )));
        }
        if other.series.len() != self.count.len() {
            return Err(Error::State(format!(
                "estimator state has {} domains, this estimator has {}",
                other.series.len(),
                self.count.len()
            )));
        }
        for (d, s) in other.series.iter().enumerate() {
            self.check_series(s, other.last_step)
                .map_err(|e| Error::State(format!("estimator state, domain {d}: {e}")))?;
        }
        self.install(other.series, other.last_step);
        Ok(())
    }

    /// Take the checked per-domain `series` as the state.
    fn install(&mut self, series: Vec<Series>, last_step: Option<u64>) {
        let (k, w) = (series.len(), self.config.window as u64);
        let rows = series.iter().map(|s| s.count.min(w)).max().unwrap_or(0) as usize;
        self.rows = rows;
        self.raw_loss = vec![0.0; rows * k];
        self.raw_n = vec![0.0; rows * k];
        self.last_step = last_step;
        self.points.clear();
        self.running.clear();
        for (d, s) in series.into_iter().enumerate() {
            self.count[d] = s.count;
            self.ordinals[d] = s.ordinals;
            self.stride[d] = s.stride;
            self.last[d] = s.last.unwrap_or(f64::NAN);
            let first = s.count - s.raw.len() as u64;
            for (i, o) in s.raw.iter().enumerate() {
                let at = self.at(d, first + i as u64);
                self.raw_loss[at] = o.loss;
                self.raw_n[at] = o.n;
            }
            for (&x, &y) in s.points_n.iter().zip(&s.points_y) {
                self.points.push(d, x, y);
            }
        }
    }
}

impl PowerLawEstimator {
    /// The invariants [`PowerLawEstimator::update`] maintains for one domain's series; a restored
    /// state that breaks one would make later updates index out of range or fit garbage.
    fn check_series(&self, s: &Series, last_step: Option<u64>) -> std::result::Result<(), String> {
        let cfg = &self.config;
        let expect_raw = s.count.min(cfg.window as u64);
        if s.raw.len() as u64 != expect_raw {
            return Err(format!(
                "raw holds {} observations; {} observations with window {} leave {expect_raw}",
                s.raw.len(),
                s.count,
                cfg.window
            ));
        }
        match last_step {
            None if s.count > 0 => return Err("observations but no last_step".into()),
            Some(t) if s.count > t.saturating_add(1) => {
                return Err(format!("count {} exceeds last_step + 1 = {t} + 1", s.count))
            }
            _ => {}
        }
        if s.ordinals > s.count {
            return Err(format!("ordinals {} exceed count {}", s.ordinals, s.count));
        }
        if s.last.is_some() != (s.count > 0) {
            return Err("last must be set exactly when count > 0".into());
        }
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if let Some(l) = s.last {
            if !positive(l) {
                return Err(format!("last = {l}; must be finite and > 0"));
            }
        }
        let stride_ok = s.stride >= cfg.subsample
            && s.stride % cfg.subsample == 0
            && (s.stride / cfg.subsample).is_power_of_two()
            && (cfg.overflow == Overflow::Thin || s.stride == cfg.subsample);
        if !stride_ok {
            return Err(format!(
                "stride {} is not subsample {} times a power of 2",
                s.stride, cfg.subsample
            ));
        }
        // the observations at steps >= ignore_steps are the last `ordinals`, numbered in order
        let (first, ord_from) = (s.count - expect_raw, s.count - s.ordinals);
        for (i, o) in s.raw.iter().enumerate() {
            if !(positive(o.loss) && positive(o.n)) {
                return Err(format!(
                    "raw observation (loss {}, n {}) must be finite and > 0",
                    o.loss, o.n
                ));
            }
            let q = first + i as u64;
            let want = (q >= ord_from).then(|| q - ord_from);
            if o.ordinal != want {
                return Err(format!(
                    "raw observation {i} has ordinal {:?}; the counts give {want:?}",
                    o.ordinal
                ));
            }
        }
        if s.points_n.len() != s.points_y.len() {
            return Err(format!(
                "{} point x-values but {} y-values",
                s.points_n.len(),
                s.points_y.len()
            ));
        }
        if let Some(cap) = cfg.max_points {
            if s.points_n.len() > cap {
                return Err(format!(
                    "{} points exceed max_points {cap}",
                    s.points_n.len()
                ));
            }
        }
        if s.points_n.len() as u64 > s.ordinals {
            return Err(format!(
                "{} points from {} ordinals",
                s.points_n.len(),
                s.ordinals
            ));
        }
        if let Some(x) = s.points_n.iter().find(|x| !positive(**x)) {
            return Err(format!("a point's n is {x}; must be finite and > 0"));
        }
        if let Some(y) = s.points_y.iter().find(|y| !y.is_finite()) {
            return Err(format!("a point's loss is {y}; must be finite"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_json_form() {
        let json = serde_json::to_string(&EstimatorConfig::default()).unwrap_or_default();
        assert_eq!(
            EstimatorConfig::from_json(&json).ok(),
            Some(EstimatorConfig::default())
        );
        assert!(json.contains(r#""overflow":"thin""#) && json.contains(r#""missing":"carry""#));
        let bad = json.replace(r#""window":101"#, r#""window":100"#);
        assert!(EstimatorConfig::from_json(&bad).is_err());
        let unknown = json.replace(r#""order":3"#, r#""order":3,"odrer":3"#);
        assert!(EstimatorConfig::from_json(&unknown).is_err());
    }
    use crate::savgol::savgol_interp;

    fn stream(t: usize) -> Vec<f64> {
        (0..t)
            .map(|i| {
                2.0 + 10.0
                    * ((i + 1) as f64 * 48.0).powf(-0.3)
                    * (1.0 + 0.01 * ((i * 37 % 11) as f64 - 5.0))
            })
            .collect()
    }

    /// The incremental points equal a batch savgol over the whole history, then `[ignore::subsample]`.
    #[test]
    fn matches_batch_reference_pipeline() {
        let cfg = EstimatorConfig {
            ignore_steps: 50,
            max_points: None,
            ..EstimatorConfig::default()
        };
        for t in [30usize, 101, 102, 160, 1000, 1234] {
            let mut est = PowerLawEstimator::new(1, cfg.clone()).expect("new");
            let losses = stream(t);
            for (i, &l) in losses.iter().enumerate() {
                est.update(i as u64, &[l], &[((i + 1) * 48) as f64], None)
                    .expect("update");
            }
            let smooth = savgol_interp(&losses, 101, 3).expect("savgol");
            let want: Vec<f64> = smooth.iter().skip(50).step_by(10).copied().collect();
            let (xs, ys) = est.points(0).expect("points");
            assert_eq!(ys.len(), want.len(), "t={t}");
            for (a, b) in ys.iter().zip(&want) {
                assert!((a - b).abs() < 1e-12, "t={t}: {a} vs {b}");
            }
            let want_x: Vec<f64> = (50..t).step_by(10).map(|i| ((i + 1) * 48) as f64).collect();
            assert_eq!(xs, want_x);
        }
    }

    #[test]
    fn carries_absent_domains_and_uses_fill() {
        let cfg = EstimatorConfig {
            window: 1,
            order: 0,
            subsample: 1,
            ..EstimatorConfig::default()
        };
        let mut est = PowerLawEstimator::new(2, cfg).expect("new");
        assert!(est.update(0, &[1.0, f64::NAN], &[1.0, 1.0], None).is_err());
        est.update(0, &[1.0, f64::NAN], &[1.0, 1.0], Some(3.0))
            .expect("fill");
        est.update(1, &[2.0, f64::NAN], &[2.0, 2.0], None)
            .expect("carry");
        assert_eq!(est.points(1).expect("points").1, vec![3.0, 3.0]);
    }

    #[test]
    fn memory_is_bounded_and_thinning_keeps_the_grid() {
        let cfg = EstimatorConfig {
            window: 5,
            order: 2,
            subsample: 1,
            max_points: Some(16),
            ..EstimatorConfig::default()
        };
        let mut est = PowerLawEstimator::new(1, cfg).expect("new");
        for i in 0..10_000u64 {
            est.update(i, &[1.0 + 1.0 / (i + 1) as f64], &[(i + 1) as f64], None)
                .expect("update");
        }
        let (xs, _) = est.points(0).expect("points");
        assert!(xs.len() <= 16 + 2, "{}", xs.len());
        assert_eq!(xs[0], 1.0);
        assert!(est.state().series[0].raw.len() <= 5);
    }

    /// A restored state that breaks an invariant is an error, never a later panic.
    #[test]
    fn restore_checks_invariants() {
        let cfg = EstimatorConfig {
            window: 5,
            order: 2,
            subsample: 1,
            max_points: Some(8),
            ..EstimatorConfig::default()
        };
        let mut est = PowerLawEstimator::new(2, cfg.clone()).expect("new");
        for i in 0..31u64 {
            let l = 2.0 + 1.0 / (i + 1) as f64;
            est.update(i, &[l, l], &[(i + 1) as f64; 2], None)
                .expect("update");
        }
        let good = est.state();
        let tamper = |edit: &dyn Fn(&mut EstimatorState)| {
            let mut bad = good.clone();
            edit(&mut bad);
            let mut target = PowerLawEstimator::new(2, cfg.clone()).expect("new");
            let err = target.restore(bad).expect_err("tampered state accepted");
            assert!(matches!(err, Error::State(_)), "{err}");
            err.to_string()
        };
        assert!(tamper(&|e| e.series[0].raw.clear()).contains("raw holds 0"));
        assert!(tamper(&|e| {
            e.series[1].points_n.extend([1.0; 100]);
            e.series[1].points_y.extend([1.0; 100]);
        })
        .contains("exceed max_points"));
        assert!(tamper(&|e| e.series[0].stride = 3).contains("stride"));
        assert!(tamper(&|e| e.series[0].points_y.clear()).contains("y-values"));
        assert!(tamper(&|e| e.series[0].raw[0].loss = f64::NAN).contains("finite"));
        assert!(tamper(&|e| e.last_step = None).contains("last_step"));
        assert!(tamper(&|e| e.series[1].raw[2].ordinal = Some(99)).contains("ordinal"));
        let mut target = PowerLawEstimator::new(2, cfg.clone()).expect("new");
        target
            .restore(good.clone())
            .expect("an untouched state loads");
        target
            .update(31, &[2.0, 2.0], &[32.0; 2], None)
            .expect("and updates");
    }

    /// The batched, interleaved smoothing of the steady state gives bitwise what smoothing each
    /// window alone gives (domains in groups of 4 and a remainder).
    #[test]
    fn batched_smoothing_is_bitwise_the_one_window_sum() {
        let cfg = EstimatorConfig {
            window: 7,
            order: 2,
            subsample: 1,
            max_points: None,
            ..EstimatorConfig::default()
        };
        let k = 6;
        let mut est = PowerLawEstimator::new(k, cfg).expect("new");
        let loss = |i: usize, d: usize| {
            2.0 + (d as f64 + 1.0) / ((i + 1) as f64).sqrt() + 0.01 * ((i * 31 + d * 7) % 13) as f64
        };
        for i in 0..60 {
            let row: Vec<f64> = (0..k).map(|d| loss(i, d)).collect();
            est.update(i as u64, &row, &vec![(i + 1) as f64; k], None)
                .expect("update");
        }
        let sg = SavGol::new(7, 2).expect("savgol");
        for d in 0..k {
            let series: Vec<f64> = (0..60).map(|i| loss(i, d)).collect();
            let want: Vec<f64> = (3..57)
                .map(|c| sg.apply(3, series[c - 3..c + 4].iter().copied()))
                .collect();
            let got = &est.points(d).expect("points").1[3..57];
            assert_eq!(got, want.as_slice(), "domain {d}");
        }
    }

    /// The per-domain algorithm as it was written before the column layout: one ring per
    /// domain, each fit point smoothed by `SavGol::apply` over it as soon as it is final.
    struct Model {
        cfg: EstimatorConfig,
        sg: SavGol,
        raw: VecDeque<(f64, f64, Option<u64>)>,
        count: u64,
        ordinals: u64,
        stride: u64,
        last: Option<f64>,
        pn: Vec<f64>,
        py: Vec<f64>,
    }

    impl Model {
        fn new(cfg: &EstimatorConfig) -> Self {
            let sg = SavGol::new(cfg.window, cfg.order.min(cfg.window - 1)).expect("sg");
            Model {
                cfg: cfg.clone(),
                sg,
                raw: VecDeque::new(),
                count: 0,
                ordinals: 0,
                stride: cfg.subsample,
                last: None,
                pn: Vec::new(),
                py: Vec::new(),
            }
        }

        fn on_stride(&self, r: usize) -> bool {
            matches!(self.raw[r].2, Some(o) if o % self.stride == 0)
        }

        fn smooth(&self, r: usize) -> f64 {
            self.sg.apply(r, self.raw.iter().map(|o| o.0))
        }

        fn push(&mut self, loss: f64, n: f64, past_ignore: bool) {
            let (w, h) = (self.cfg.window, self.cfg.window / 2);
            let ordinal = past_ignore.then(|| {
                self.ordinals += 1;
                self.ordinals - 1
            });
            self.last = Some(loss);
            self.raw.push_back((loss, n, ordinal));
            if self.raw.len() > w {
                self.raw.pop_front();
            }
            self.count += 1;
            let rows = if self.count > w as u64 {
                h..h + 1
            } else if self.count == w as u64 {
                0..h + 1
            } else {
                0..0
            };
            for r in rows {
                if self.on_stride(r) {
                    let (y, x) = (self.smooth(r), self.raw[r].1);
                    self.keep(x, y);
                }
            }
        }

        fn keep(&mut self, x: f64, y: f64) {
            self.pn.push(x);
            self.py.push(y);
            if matches!(self.cfg.max_points, Some(cap) if self.pn.len() > cap) {
                if self.cfg.overflow == Overflow::DropOldest {
                    self.pn.remove(0);
                    self.py.remove(0);
                } else {
                    self.pn = self.pn.iter().copied().step_by(2).collect();
                    self.py = self.py.iter().copied().step_by(2).collect();
                    self.stride *= 2;
                }
            }
        }

        fn points(&self) -> (Vec<f64>, Vec<f64>) {
            let (mut xs, mut ys) = (self.pn.clone(), self.py.clone());
            let (w, m) = (self.cfg.window, self.raw.len());
            let full = self.count >= w as u64;
            let sg = if full {
                self.sg.clone()
            } else if m > self.cfg.order + 1 {
                SavGol::new(m, self.cfg.order).expect("sg")
            } else {
                SavGol::new(1, 0).expect("sg")
            };
            for r in (if full { w / 2 + 1 } else { 0 })..m {
                if self.on_stride(r) {
                    xs.push(self.raw[r].1);
                    ys.push(if sg.window() == 1 {
                        self.raw[r].0
                    } else {
                        sg.apply(r, self.raw.iter().map(|o| o.0))
                    });
                }
            }
            (xs, ys)
        }
    }

    /// The column layout (rings in one slot-major matrix, the steady state's smoothing row by
    /// row) gives bitwise the points of the per-domain algorithm, whether the domains' rings
    /// move in lockstep (carry) or not (skip), across thinning, dropping, ignore_steps and gaps
    /// in the steps.
    #[test]
    fn column_layout_is_bitwise_the_per_domain_algorithm() {
        let base = EstimatorConfig::default();
        let configs = [
            EstimatorConfig {
                window: 7,
                order: 2,
                subsample: 3,
                ignore_steps: 5,
                max_points: Some(6),
                missing: Missing::Skip,
                ..base.clone()
            },
            EstimatorConfig {
                window: 5,
                order: 2,
                subsample: 1,
                max_points: Some(9),
                overflow: Overflow::DropOldest,
                ..base.clone()
            },
            EstimatorConfig {
                window: 1,
                order: 0,
                subsample: 2,
                max_points: Some(5),
                missing: Missing::Skip,
                ..base.clone()
            },
            EstimatorConfig {
                ignore_steps: 40,
                max_points: Some(12),
                ..base.clone()
            },
            EstimatorConfig {
                ignore_steps: 40,
                max_points: Some(12),
                missing: Missing::Skip,
                ..base
            },
        ];
        let k = 7;
        for cfg in configs {
            let mut est = PowerLawEstimator::new(k, cfg.clone()).expect("new");
            let mut models: Vec<Model> = (0..k).map(|_| Model::new(&cfg)).collect();
            for i in 0..400u64 {
                let step = i + i / 50; // a gap every 50 steps
                let loss: Vec<f64> = (0..k as u64)
                    .map(|d| {
                        if (i * 7 + d * 3) % 5 == 0 && i > 0 {
                            f64::NAN
                        } else {
                            2.0 + (d + 1) as f64 / ((i + 1) as f64).sqrt()
                                + 0.01 * ((i * 31 + d * 7) % 13) as f64
                        }
                    })
                    .collect();
                let n: Vec<f64> = (0..k)
                    .map(|d| ((step + 1) * 64 + d as u64) as f64)
                    .collect();
                est.update(step, &loss, &n, None).expect("update");
                let past_ignore = step >= cfg.ignore_steps;
                for (d, m) in models.iter_mut().enumerate() {
                    let v = if loss[d].is_nan() {
                        match cfg.missing {
                            Missing::Skip => continue,
                            Missing::Carry => m.last.expect("seen at step 0"),
                        }
                    } else {
                        loss[d]
                    };
                    m.push(v, n[d], past_ignore);
                }
                let counts = est.num_points();
                for (d, m) in models.iter().enumerate() {
                    let want = m.points();
                    assert_eq!(
                        est.points(d).ok(),
                        Some(want.clone()),
                        "{cfg:?} step {step} d {d}"
                    );
                    assert_eq!(counts[d], want.0.len());
                }
            }
        }
    }

    /// The columns restore bitwise (later updates and points equal), and refuse bad lengths.
    /// The steady state's running sums (carry mode, all domains in lockstep) give bitwise the
    /// points that smoothing each window from the ring gives, through thinning, and after a
    /// restore (which starts them afresh) at every phase of the stride.
    #[test]
    fn running_sums_are_the_ring_sums_across_restores() {
        let cfg = EstimatorConfig {
            window: 11,
            order: 3,
            subsample: 3,
            ignore_steps: 4,
            max_points: Some(12),
            ..EstimatorConfig::default()
        };
        let k = 5;
        let row = |i: u64| -> Vec<f64> {
            (0..k)
                .map(|d| {
                    2.0 + (d + 1) as f64 / ((i + 1) as f64).sqrt()
                        + 0.01 * ((i * 17 + d as u64 * 5) % 11) as f64
                })
                .collect()
        };
        let feed = |est: &mut PowerLawEstimator, steps: std::ops::Range<u64>| {
            for i in steps {
                est.update(i, &row(i), &vec![(i + 1) as f64; k], None)
                    .expect("update");
            }
        };
        let mut whole = PowerLawEstimator::new(k, cfg.clone()).expect("new");
        feed(&mut whole, 0..150);
        let sg = SavGol::new(11, 3).expect("savgol");
        for cut in 20..32 {
            let mut head = PowerLawEstimator::new(k, cfg.clone()).expect("new");
            feed(&mut head, 0..cut);
            let mut tail = PowerLawEstimator::new(k, cfg.clone()).expect("new");
            tail.restore_columns(head.to_columns()).expect("restore");
            feed(&mut tail, cut..150);
            for d in 0..k {
                assert_eq!(
                    tail.points(d).expect("points"),
                    whole.points(d).expect("points")
                );
            }
        }
        // and each kept point is the window sum over the raw series
        for d in 0..k {
            let series: Vec<f64> = (0..150).map(|i| row(i)[d]).collect();
            let (n, y) = whole.points(d).expect("points");
            for (x, v) in n.iter().zip(&y) {
                let m = *x as usize - 1;
                if m >= 5 && m + 5 < 150 {
                    assert_eq!(
                        *v,
                        sg.apply(5, series[m - 5..m + 6].iter().copied()),
                        "row {m}"
                    );
                }
            }
        }
    }

    #[test]
    fn columns_round_trip_exactly() {
        let cfg = EstimatorConfig {
            window: 5,
            order: 2,
            subsample: 2,
            max_points: Some(8),
            ignore_steps: 7,
            missing: Missing::Skip,
            ..EstimatorConfig::default()
        };
        let mut est = PowerLawEstimator::new(3, cfg.clone()).expect("new");
        let row = |i: u64| {
            let l = 2.0 + 1.0 / (i + 1) as f64;
            [
                l,
                if i % 3 == 0 { f64::NAN } else { l * 1.1 },
                if i < 4 { f64::NAN } else { l },
            ]
        };
        for i in 0..63u64 {
            est.update(i, &row(i), &[(i + 1) as f64; 3], None)
                .expect("update");
        }
        let cols = est.to_columns();
        let mut back = PowerLawEstimator::new(3, cfg.clone()).expect("new");
        back.restore_columns(cols.clone()).expect("restore");
        assert_eq!(back.to_columns(), cols);
        for i in 63..90u64 {
            est.update(i, &row(i), &[(i + 1) as f64; 3], None)
                .expect("update");
            back.update(i, &row(i), &[(i + 1) as f64; 3], None)
                .expect("update");
        }
        for d in 0..3 {
            assert_eq!(est.points(d).ok(), back.points(d).ok());
        }
        let mut short = cols.clone();
        short.raw_loss.pop();
        let err = back.restore_columns(short).expect_err("short column");
        assert!(err.to_string().contains("raw_loss"), "{err}");
        let mut many = cols.clone();
        many.points[1] = 9;
        let err = back.restore_columns(many).expect_err("too many points");
        assert!(err.to_string().contains("exceed max_points"), "{err}");
        let mut bad = cols;
        bad.stride[2] = 3;
        let err = back.restore_columns(bad).expect_err("bad stride");
        assert!(err.to_string().contains("domain 2: stride"), "{err}");
        assert_eq!(
            back.to_columns(),
            est.to_columns(),
            "a refused load changed nothing"
        );
    }

    #[test]
    fn num_points_counts_what_points_returns() {
        for (window, subsample) in [(1usize, 1u64), (5, 1), (5, 3), (101, 10)] {
            let cfg = EstimatorConfig {
                window,
                order: if window > 1 { 2 } else { 0 },
                subsample,
                max_points: Some(16),
                ignore_steps: 7,
                ..EstimatorConfig::default()
            };
            let mut est = PowerLawEstimator::new(1, cfg).expect("new");
            for i in 0..500u64 {
                est.update(i, &[1.0 + 1.0 / (i + 1) as f64], &[(i + 1) as f64], None)
                    .expect("update");
                let want = est.points(0).expect("points").0.len();
                assert_eq!(est.num_points(), vec![want], "window {window}, step {i}");
            }
        }
    }

    #[test]
    fn config_sizes_are_bounded() {
        for bad in [
            EstimatorConfig {
                window: MAX_WINDOW + 2,
                ..EstimatorConfig::default()
            },
            EstimatorConfig {
                order: MAX_ORDER + 1,
                ..EstimatorConfig::default()
            },
            EstimatorConfig {
                max_points: Some(MAX_POINTS + 1),
                ..EstimatorConfig::default()
            },
        ] {
            assert!(PowerLawEstimator::new(1, bad).is_err());
        }
    }

    #[test]
    fn rejects_bad_rows() {
        let mut est = PowerLawEstimator::new(2, EstimatorConfig::default()).expect("new");
        assert!(est.update(0, &[1.0], &[1.0, 1.0], None).is_err());
        assert!(est.update(0, &[1.0, -1.0], &[1.0, 1.0], None).is_err());
        assert!(est.update(0, &[1.0, 1.0], &[0.0, 1.0], None).is_err());
        est.update(5, &[1.0, 1.0], &[1.0, 1.0], None).expect("ok");
        assert!(est.update(5, &[1.0, 1.0], &[1.0, 1.0], None).is_err());
    }
}
