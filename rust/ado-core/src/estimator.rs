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

/// One raw observation in the smoothing ring.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct Obs {
    loss: f64,
    n: f64,
    /// Index among the observations at steps >= `ignore_steps`, if any.
    ordinal: Option<u64>,
}

/// The smoothing ring of one domain, stored by column: the losses contiguous (the smoother reads
/// only them, a quarter of an [`Obs`]), the x-values and ordinals beside. Serialised as the list
/// of [`Obs`] it holds (the earlier JSON form).
#[derive(Clone, Debug, Default)]
struct Ring {
    loss: VecDeque<f64>,
    rest: VecDeque<(f64, Option<u64>)>,
}

impl Ring {
    fn len(&self) -> usize {
        self.loss.len()
    }

    fn push_back(&mut self, o: Obs) {
        self.loss.push_back(o.loss);
        self.rest.push_back((o.n, o.ordinal));
    }

    fn pop_front(&mut self) {
        self.loss.pop_front();
        self.rest.pop_front();
    }

    fn get(&self, i: usize) -> Obs {
        let (n, ordinal) = self.rest[i];
        Obs {
            loss: self.loss[i],
            n,
            ordinal,
        }
    }

    fn iter(&self) -> impl Iterator<Item = Obs> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    #[cfg(test)]
    fn clear(&mut self) {
        self.loss.clear();
        self.rest.clear();
    }
}

impl Serialize for Ring {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> std::result::Result<S::Ok, S::Error> {
        ser.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Ring {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> std::result::Result<Self, D::Error> {
        let mut ring = Ring::default();
        for o in Vec::<Obs>::deserialize(de)? {
            ring.push_back(o);
        }
        Ok(ring)
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Series {
    raw: Ring,
    count: u64,
    ordinals: u64,
    stride: u64,
    last: Option<f64>,
    points_n: VecDeque<f64>,
    points_y: VecDeque<f64>,
}

impl Series {
    /// Whether the observation `obs` becomes a fit point (past `ignore_steps`, on the stride).
    fn is_point(&self, obs: &Obs) -> bool {
        matches!(obs.ordinal, Some(ord) if ord % self.stride == 0)
    }
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
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PowerLawEstimator {
    config: EstimatorConfig,
    series: Vec<Series>,
    last_step: Option<u64>,
    #[serde(skip)]
    sg: Option<SavGol>,
}

impl PowerLawEstimator {
    /// An empty estimator for `num_domains` domains.
    pub fn new(num_domains: usize, config: EstimatorConfig) -> Result<Self> {
        config.validate()?;
        if num_domains == 0 || num_domains > MAX_DOMAINS {
            return Err(Error::invalid(format!(
                "num_domains must be in [1, {MAX_DOMAINS}], got {num_domains}"
            )));
        }
        let series = (0..num_domains)
            .map(|_| Series {
                stride: config.subsample,
                ..Series::default()
            })
            .collect();
        let sg = Some(SavGol::new(
            config.window,
            config.order.min(config.window - 1),
        )?);
        Ok(PowerLawEstimator {
            config,
            series,
            last_step: None,
            sg,
        })
    }

    /// Settings.
    pub fn config(&self) -> &EstimatorConfig {
        &self.config
    }

    /// Number of domains.
    pub fn num_domains(&self) -> usize {
        self.series.len()
    }

    /// The last step ingested.
    pub fn last_step(&self) -> Option<u64> {
        self.last_step
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
        let k = self.series.len();
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
        // Validate everything before mutating anything.
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
                    Missing::Skip => None,
                    Missing::Carry => match self.series[d].last.or(fill) {
                        Some(v) => Some(v),
                        None => {
                            return Err(Error::invalid(format!(
                            "domain {d} is absent at step {step} and has no earlier loss to carry \
                                 forward; pass a fill value"
                        )))
                        }
                    },
                }
            } else if l.is_finite() && l > 0.0 {
                Some(l)
            } else {
                return Err(Error::invalid(format!(
                    "domain {d}: loss = {l}; must be finite and > 0 (NaN marks an absent domain)"
                )));
            };
            values.push(v);
        }
        self.last_step = Some(step);
        let past_ignore = step >= self.config.ignore_steps;
        let mut due = Vec::new();
        for (d, v) in values.into_iter().enumerate() {
            if let Some(loss) = v {
                if self.push(d, loss, n[d], past_ignore) {
                    due.push(d);
                }
            }
        }
        self.smooth_middle(&due);
        Ok(())
    }

    /// Keep the middle row of each domain in `due` (a full ring whose middle observation is a fit
    /// point), smoothed. Four domains' sums run interleaved (each in its own order, so bitwise
    /// the same as one at a time), which hides the latency of the long chains of additions.
    fn smooth_middle(&mut self, due: &[usize]) {
        if due.is_empty() {
            return;
        }
        let h = self.config.window / 2;
        self.sg();
        let Self {
            sg, series, config, ..
        } = self;
        let Some(sg) = sg.as_ref() else { return };
        let coef = sg.row(h);
        for group in due.chunks(4) {
            let mut acc = [0.0f64; 4];
            let mut rings: [_; 4] =
                std::array::from_fn(|i| group.get(i).map(|&d| series[d].raw.loss.iter()));
            for &c in coef {
                for (a, ring) in acc.iter_mut().zip(rings.iter_mut()) {
                    if let Some(v) = ring.as_mut().and_then(Iterator::next) {
                        *a += c * v;
                    }
                }
            }
            for (&d, &smoothed) in group.iter().zip(&acc) {
                let s = &mut series[d];
                let obs = s.raw.get(h);
                Self::keep(config, s, obs, smoothed);
            }
        }
    }

    fn sg(&mut self) -> &SavGol {
        let (w, o) = (
            self.config.window,
            self.config.order.min(self.config.window - 1),
        );
        self.sg.get_or_insert_with(|| {
            // Validated at construction; a window of 1 with order 0 cannot fail.
            SavGol::new(w, o).unwrap_or_else(|_| SavGol::new(1, 0).expect("1-point window"))
        })
    }

    /// Append an observation to domain `d`'s ring; smooth and keep what became final, except the
    /// steady state's middle row: returns whether that one is due (see `smooth_middle`).
    fn push(&mut self, d: usize, loss: f64, n: f64, past_ignore: bool) -> bool {
        let w = self.config.window;
        let h = w / 2;
        let s = &mut self.series[d];
        let ordinal = past_ignore.then(|| {
            s.ordinals += 1;
            s.ordinals - 1
        });
        s.last = Some(loss);
        s.raw.push_back(Obs { loss, n, ordinal });
        if s.raw.len() > w {
            s.raw.pop_front();
        }
        s.count += 1;
        // the rows whose smoothed value became final with this observation; only a fit point is
        // smoothed (1 in `stride` observations: the hot path's cost)
        if s.count > w as u64 {
            return s.is_point(&s.raw.get(h));
        }
        if s.count < w as u64 {
            return false;
        }
        self.sg();
        let Self {
            sg, series, config, ..
        } = self;
        let Some(sg) = sg.as_ref() else { return false };
        let s = &mut series[d];
        for r in 0..=h {
            let obs = s.raw.get(r);
            if s.is_point(&obs) {
                let smoothed = sg.apply(r, s.raw.loss.iter().copied());
                Self::keep(config, s, obs, smoothed);
            }
        }
        false
    }

    /// Append a fit point (`obs` is one, [`Series::is_point`]), thinning a full buffer.
    fn keep(config: &EstimatorConfig, s: &mut Series, obs: Obs, smoothed: f64) {
        s.points_n.push_back(obs.n);
        s.points_y.push_back(smoothed);
        if let Some(cap) = config.max_points {
            if s.points_n.len() > cap {
                match config.overflow {
                    Overflow::DropOldest => {
                        s.points_n.pop_front();
                        s.points_y.pop_front();
                    }
                    Overflow::Thin => {
                        let keep_even = |q: &mut VecDeque<f64>| {
                            let mut i = 0;
                            q.retain(|_| {
                                i += 1;
                                (i - 1) % 2 == 0
                            });
                        };
                        keep_even(&mut s.points_n);
                        keep_even(&mut s.points_y);
                        s.stride = s.stride.saturating_mul(2);
                    }
                }
            }
        }
    }

    /// Domain `d`'s current fit points `(n, smoothed loss)`, including the newest half window, which is
    /// smoothed now from the raw ring buffer.
    pub fn points(&self, d: usize) -> Result<(Vec<f64>, Vec<f64>)> {
        let s = self.series.get(d).ok_or_else(|| {
            Error::invalid(format!(
                "domain {d} out of range (have {})",
                self.series.len()
            ))
        })?;
        let mut xs: Vec<f64> = s.points_n.iter().copied().collect();
        let mut ys: Vec<f64> = s.points_y.iter().copied().collect();
        let w = self.config.window;
        let order = self.config.order;
        let m = s.raw.len();
        let owned;
        let (sg, first_row) = match &self.sg {
            Some(sg) if s.count >= w as u64 => (sg, w / 2 + 1),
            _ => {
                owned = if s.count >= w as u64 {
                    SavGol::new(w, order.min(w - 1))?
                } else if m > order + 1 {
                    SavGol::new(m, order)?
                } else {
                    SavGol::new(1, 0)?
                };
                let first_row = if s.count >= w as u64 { w / 2 + 1 } else { 0 };
                (&owned, first_row)
            }
        };
        for r in first_row..m {
            let obs = s.raw.get(r);
            if !s.is_point(&obs) {
                continue;
            }
            let y = if sg.window() == 1 {
                obs.loss
            } else {
                sg.apply(r, s.raw.loss.iter().copied())
            };
            xs.push(obs.n);
            ys.push(y);
        }
        Ok((xs, ys))
    }

    /// Number of fit points of each domain (what [`PowerLawEstimator::points`] would return,
    /// counted without smoothing anything).
    pub fn num_points(&self) -> Vec<usize> {
        let w = self.config.window;
        self.series
            .iter()
            .map(|s| {
                let first_row = if s.count >= w as u64 { w / 2 + 1 } else { 0 };
                let pending = s
                    .raw
                    .iter()
                    .skip(first_row)
                    .filter(|o| s.is_point(o))
                    .count();
                s.points_n.len() + pending
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
        let pts: Vec<(Vec<f64>, Vec<f64>)> = (0..self.series.len())
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
        let k = self.series.len();
        let mut c = StateColumns {
            last_step: self.last_step,
            count: Vec::with_capacity(k),
            ordinals: Vec::with_capacity(k),
            stride: Vec::with_capacity(k),
            last: Vec::with_capacity(k),
            points: Vec::with_capacity(k),
            ..StateColumns::default()
        };
        for s in &self.series {
            c.count.push(s.count);
            c.ordinals.push(s.ordinals);
            c.stride.push(s.stride);
            c.last.push(s.last.unwrap_or(f64::NAN));
            c.points.push(s.points_n.len() as u64);
            c.raw_loss.extend(s.raw.loss.iter());
            c.raw_n.extend(s.raw.rest.iter().map(|r| r.0));
            c.points_n.extend(s.points_n.iter());
            c.points_y.extend(s.points_y.iter());
        }
        c
    }

    /// Restore [`PowerLawEstimator::to_columns`] output of an estimator with this configuration
    /// and number of domains. Every column and every domain's invariants are checked first; on an
    /// error ([`Error::State`], naming the column or the domain) nothing changes.
    pub fn restore_columns(&mut self, c: StateColumns) -> Result<()> {
        let k = self.series.len();
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
            let mut raw = Ring::default();
            for i in 0..m {
                raw.push_back(Obs {
                    loss: c.raw_loss[raw_at + i],
                    n: c.raw_n[raw_at + i],
                    ordinal: (i >= m - with).then(|| first + (i - (m - with)) as u64),
                });
            }
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
        self.series = series;
        self.last_step = c.last_step;
        Ok(())
    }

    /// Restore a state produced by serialising an estimator with the same configuration and domains.
    pub fn restore(&mut self, other: PowerLawEstimator) -> Result<()> {
        if other.config != self.config {
            return Err(Error::State(format!(
                "estimator state was saved with {:?}, this estimator has {:?}",
                other.config, self.config
            )));
        }
        if other.series.len() != self.series.len() {
            return Err(Error::State(format!(
                "estimator state has {} domains, this estimator has {}",
                other.series.len(),
                self.series.len()
            )));
        }
        for (d, s) in other.series.iter().enumerate() {
            self.check_series(s, other.last_step)
                .map_err(|e| Error::State(format!("estimator state, domain {d}: {e}")))?;
        }
        self.series = other.series;
        self.last_step = other.last_step;
        Ok(())
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
        let mut prev: Option<u64> = None;
        for o in s.raw.iter() {
            if !(positive(o.loss) && positive(o.n)) {
                return Err(format!(
                    "raw observation (loss {}, n {}) must be finite and > 0",
                    o.loss, o.n
                ));
            }
            if let Some(ord) = o.ordinal {
                if ord >= s.ordinals || prev.is_some_and(|p| ord <= p) {
                    return Err(format!("raw ordinal {ord} is out of order or range"));
                }
                prev = Some(ord);
            } else if prev.is_some() {
                return Err("a raw observation without ordinal follows one with".into());
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
        assert!(est.series[0].raw.len() <= 5);
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
        let good = est.clone();
        let tamper = |edit: &dyn Fn(&mut PowerLawEstimator)| {
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
        assert!(tamper(&|e| e.series[0].raw.loss[0] = f64::NAN).contains("finite"));
        assert!(tamper(&|e| e.last_step = None).contains("last_step"));
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

    /// The columns restore bitwise (later updates and points equal), and refuse bad lengths.
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
