//! Batch composition: which domain fills each slot of global batch `t`.
//!
//! Weights are renormalised in float64 and quantised to fixed point (2^32 = 1), so that every
//! rank builds bit-identical tables. `iid` draws each slot from the multinomial with the
//! counter-based RNG keyed by (seed, step, slot). `deficit` is a low-discrepancy smooth weighted
//! round robin: each slot, every active domain earns its weight in credit, the richest domain is
//! picked and pays one unit. Running counts then stay within a bounded distance of the cumulative
//! targets, also while the weights change; the credits are part of the loader state.

use crate::data::rng::{below, hash, tag};
use crate::error::{Error, Result};

/// Fixed-point one.
pub const ONE: u64 = 1 << 32;

/// How domains are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Iid,
    Deficit,
}

impl Mode {
    /// Parse `"iid"` or `"deficit"`.
    pub fn parse(s: &str) -> Result<Mode> {
        match s {
            "iid" => Ok(Mode::Iid),
            "deficit" => Ok(Mode::Deficit),
            other => Err(Error::invalid(format!(
                "mode must be 'iid' or 'deficit', got {other:?}"
            ))),
        }
    }

    /// The name used in configs and state.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Iid => "iid",
            Mode::Deficit => "deficit",
        }
    }
}

/// Validate and quantise weights: finite, ≥ 0, positive sum. A positive weight never rounds to 0.
pub fn quantize(weights: &[f64], k: usize) -> Result<Vec<u64>> {
    if weights.len() != k {
        return Err(Error::invalid(format!(
            "expected {k} weights, got {}",
            weights.len()
        )));
    }
    if let Some((d, w)) = weights
        .iter()
        .enumerate()
        .find(|(_, w)| !w.is_finite() || **w < 0.0)
    {
        return Err(Error::invalid(format!(
            "weight of domain {d} is {w}; must be finite and >= 0"
        )));
    }
    let sum: f64 = weights.iter().sum();
    if sum <= 0.0 || !sum.is_finite() {
        return Err(Error::invalid("weights must have a positive, finite sum"));
    }
    Ok(weights
        .iter()
        .map(|&w| {
            if w > 0.0 {
                ((w / sum * ONE as f64).round() as u64).max(1)
            } else {
                0
            }
        })
        .collect())
}

/// Domain of each of `slots` slots of step `step`. `credits` (deficit mode) is updated in place.
pub fn compose(
    mode: Mode,
    seed: u64,
    step: u64,
    q: &[u64],
    credits: &mut [i64],
    slots: usize,
) -> Vec<u32> {
    match mode {
        Mode::Iid => compose_iid(seed, step, q, slots),
        Mode::Deficit => compose_deficit(q, credits, slots),
    }
}

fn compose_iid(seed: u64, step: u64, q: &[u64], slots: usize) -> Vec<u32> {
    let mut cum = Vec::with_capacity(q.len());
    let mut total = 0u64;
    for &w in q {
        total += w;
        cum.push(total);
    }
    (0..slots)
        .map(|i| {
            let r = below(hash(&[seed, tag::COMPOSE, step, i as u64]), total);
            // First domain whose cumulative weight exceeds r (zero weights are never picked).
            cum.partition_point(|&c| c <= r) as u32
        })
        .collect()
}

fn compose_deficit(q: &[u64], credits: &mut [i64], slots: usize) -> Vec<u32> {
    let total: i64 = q.iter().map(|&w| w as i64).sum();
    // Inactive domains forget their credit; re-centre the active ones so the sum stays 0.
    let active: Vec<usize> = (0..q.len()).filter(|&d| q[d] > 0).collect();
    for d in 0..q.len() {
        if q[d] == 0 {
            credits[d] = 0;
        }
    }
    let sum: i64 = active.iter().map(|&d| credits[d]).sum();
    if sum != 0 && !active.is_empty() {
        let n = active.len() as i64;
        let (each, rem) = (sum.div_euclid(n), sum.rem_euclid(n));
        for (i, &d) in active.iter().enumerate() {
            credits[d] -= each + i64::from((i as i64) < rem);
        }
    }
    (0..slots)
        .map(|_| {
            let mut best = active[0];
            for &d in &active {
                credits[d] += q[d] as i64;
                if credits[d] > credits[best] {
                    best = d;
                }
            }
            credits[best] -= total;
            best as u32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_validates() {
        assert!(quantize(&[1.0, f64::NAN], 2).is_err());
        assert!(quantize(&[0.0, 0.0], 2).is_err());
        assert!(quantize(&[1.0], 2).is_err());
        assert!(quantize(&[-1.0, 2.0], 2).is_err());
        let q = quantize(&[1.0, 3.0, 0.0], 3).unwrap_or_default();
        assert_eq!(q, vec![ONE / 4, 3 * ONE / 4, 0]);
    }

    #[test]
    fn iid_matches_weights_and_skips_zeros() {
        let q = quantize(&[0.2, 0.0, 0.8], 3).unwrap_or_default();
        let mut counts = [0usize; 3];
        for t in 0..200 {
            for d in compose(Mode::Iid, 5, t, &q, &mut [0; 3], 100) {
                counts[d as usize] += 1;
            }
        }
        assert_eq!(counts[1], 0);
        assert!((3_700..4_300).contains(&counts[0]), "{counts:?}");
    }

    #[test]
    fn deficit_is_exact_over_time() {
        let q = quantize(&[0.5, 0.25, 0.25], 3).unwrap_or_default();
        let mut credits = [0i64; 3];
        let mut counts = [0usize; 3];
        for t in 0..10 {
            for d in compose(Mode::Deficit, 0, t, &q, &mut credits, 8) {
                counts[d as usize] += 1;
            }
            assert_eq!(counts[0], 4 * (t as usize + 1));
        }
        // Weight change: a zeroed domain is never drawn again.
        let q = quantize(&[0.0, 0.5, 0.5], 3).unwrap_or_default();
        let ds = compose(Mode::Deficit, 0, 10, &q, &mut credits, 8);
        assert!(ds.iter().all(|&d| d != 0));
    }
}
