//! Savitzky–Golay smoothing weights, matching `scipy.signal.savgol_filter(..., mode="interp")`.
//!
//! For a window of `w` points and a polynomial order `p`, the smoothed value at position `r` of the
//! window is `sum_j H[r][j] * x_j`, where `H` is the hat matrix of the least-squares polynomial fit over
//! the window. Interior points use the centre row; with `mode="interp"` scipy evaluates the fit over the
//! first (last) window at the first (last) `w / 2` positions, which are the other rows of the same matrix.

use crate::error::{Error, Result};

/// The hat matrix of an order-`order` polynomial least-squares fit over `window` equally spaced points.
#[derive(Clone, Debug)]
pub struct SavGol {
    window: usize,
    rows: Vec<Vec<f64>>,
}

impl SavGol {
    /// Build the weights. Needs `order < window`.
    pub fn new(window: usize, order: usize) -> Result<Self> {
        if window == 0 || order >= window {
            return Err(Error::invalid(format!(
                "Savitzky-Golay needs polyorder < window, got window={window}, polyorder={order}"
            )));
        }
        let p = order + 1;
        // Positions scaled into [-1, 1] for conditioning.
        let half = (window as f64 - 1.0) / 2.0;
        let scale = if half > 0.0 { half } else { 1.0 };
        let x: Vec<f64> = (0..window).map(|i| (i as f64 - half) / scale).collect();
        let vand = |xi: f64| -> Vec<f64> { (0..p).map(|k| xi.powi(k as i32)).collect() };
        // Normal matrix V^T V.
        let mut gram = vec![vec![0.0; p]; p];
        for &xi in &x {
            let v = vand(xi);
            for a in 0..p {
                for b in 0..p {
                    gram[a][b] += v[a] * v[b];
                }
            }
        }
        let inv = invert(gram)?;
        // H[r][j] = v(x_r)^T (V^T V)^-1 v(x_j).
        let proj: Vec<Vec<f64>> = x
            .iter()
            .map(|&xr| {
                let v = vand(xr);
                (0..p)
                    .map(|b| (0..p).map(|a| v[a] * inv[a][b]).sum())
                    .collect()
            })
            .collect();
        let rows = proj
            .iter()
            .map(|pr: &Vec<f64>| {
                x.iter()
                    .map(|&xj| vand(xj).iter().zip(pr).map(|(a, b)| a * b).sum())
                    .collect()
            })
            .collect();
        Ok(SavGol { window, rows })
    }

    /// Window length.
    pub fn window(&self) -> usize {
        self.window
    }

    /// The weights of row `row`: its smoothed value is `sum_j row[j] * values[j]`, in order.
    pub fn row(&self, row: usize) -> &[f64] {
        &self.rows[row]
    }

    /// Smoothed value at position `row` of `values` (which must hold exactly `window` values, oldest
    /// first), given as an iterator so ring buffers need no copy.
    pub fn apply<I: IntoIterator<Item = f64>>(&self, row: usize, values: I) -> f64 {
        self.rows[row].iter().zip(values).map(|(h, v)| h * v).sum()
    }
}

/// Gauss–Jordan inverse with partial pivoting of a small matrix.
fn invert(mut m: Vec<Vec<f64>>) -> Result<Vec<Vec<f64>>> {
    let n = m.len();
    let mut inv: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| if i == j { 1.0 } else { 0.0 }).collect())
        .collect();
    for col in 0..n {
        let piv = (col..n)
            .max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))
            .unwrap_or(col);
        if m[piv][col].abs() < 1e-300 {
            return Err(Error::invalid("Savitzky-Golay normal matrix is singular"));
        }
        m.swap(col, piv);
        inv.swap(col, piv);
        let d = m[col][col];
        for j in 0..n {
            m[col][j] /= d;
            inv[col][j] /= d;
        }
        for r in 0..n {
            if r != col {
                let f = m[r][col];
                if f != 0.0 {
                    for j in 0..n {
                        m[r][j] -= f * m[col][j];
                        inv[r][j] -= f * inv[col][j];
                    }
                }
            }
        }
    }
    Ok(inv)
}

/// Smooth a whole series like `scipy.signal.savgol_filter(x, window, order, mode="interp")`.
/// A series shorter than the window is smoothed with one polynomial fit over all of it (scipy raises
/// instead); one of at most `order + 1` points is returned unchanged.
pub fn savgol_interp(x: &[f64], window: usize, order: usize) -> Result<Vec<f64>> {
    let n = x.len();
    if n <= order + 1 {
        return Ok(x.to_vec());
    }
    let w = window.min(n);
    let sg = SavGol::new(w, order)?;
    let half = w / 2;
    let mut out = vec![0.0; n];
    for (i, o) in out.iter_mut().enumerate() {
        let (start, row) = if i < half {
            (0, i)
        } else if i + w - half > n {
            (n - w, i - (n - w))
        } else {
            (i - half, half)
        };
        *o = sg.apply(row, x[start..start + w].iter().copied());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preserves_cubics_exactly() {
        let x: Vec<f64> = (0..300)
            .map(|i| {
                let t = i as f64 / 10.0;
                1.0 + 0.5 * t - 0.02 * t * t + 0.001 * t * t * t
            })
            .collect();
        let y = savgol_interp(&x, 101, 3).expect("smooth");
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() < 1e-9 * a.abs().max(1.0), "{a} vs {b}");
        }
    }

    #[test]
    fn rows_sum_to_one() {
        let sg = SavGol::new(101, 3).expect("weights");
        for r in 0..101 {
            let s: f64 = sg.rows[r].iter().sum();
            assert!((s - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn rejects_bad_order() {
        assert!(SavGol::new(3, 3).is_err());
    }
}
