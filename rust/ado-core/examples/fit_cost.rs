//! A driver for profilers of the power-law fitter: fits seeded noisy curves one after another
//! (no thread pool), so `perf stat -e task-clock` (CPU time) and `valgrind --tool=callgrind`
//! (instruction counts) give stable before/after ratios on a shared machine.
//!
//! ```text
//! cargo build --release -p ado-core --example fit_cost
//! perf stat -e task-clock target/release/examples/fit_cost POINTS K [reference|default]
//! perf stat -e task-clock target/release/examples/fit_cost POINTS 0 [reference|default] FILE
//! ```
//!
//! The first form fits `K` curves of `POINTS` points like `benchmarks/fit_speed.py`'s
//! `random_curves` (1 % log-normal noise). The second reads little-endian f64 rows from `FILE`:
//! the first row is `n` (`POINTS` values), every further row one domain's losses (e.g. the smoothed
//! K = 22 x 5,900-point histories of `fit_speed.py`'s `make_histories`, written with `tofile`).
//! With `FIT_COST_EACH=1` in the environment it also prints every curve's objective, one a line (`=2`:
//! with its parameters and Newton iterations),
//! (to compare two builds of the fitter curve by curve).
#![allow(clippy::print_stdout)]

use ado_core::fit::{fit_one, FitConfig};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let points: usize = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(64)
        .max(3);
    let k: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200);
    let config = match args.get(3).map(String::as_str) {
        Some("reference") => FitConfig::reference(),
        _ => FitConfig::default(),
    };
    let rows: Vec<Vec<f64>> = if let Some(path) = args.get(4) {
        let bytes = std::fs::read(path)?;
        let values: Vec<f64> = bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        values.chunks_exact(points).map(<[f64]>::to_vec).collect()
    } else {
        // SplitMix64 uniforms and Box-Muller normals: deterministic without a dependency.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut unif = move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64 + 0.5 / (1u64 << 53) as f64
        };
        let n: Vec<f64> = (0..points)
            .map(|i| (1000.0 + 59000.0 * i as f64 / (points - 1) as f64).round() * 256.0 + 256.0)
            .collect();
        let mut rows = vec![n.clone()];
        for _ in 0..k {
            let (eps, beta, alpha) = (
                0.8 + 2.2 * unif(),
                5.0 + 55.0 * unif(),
                0.15 + 0.35 * unif(),
            );
            rows.push(
                n.iter()
                    .map(|&x| {
                        let g =
                            (-2.0 * unif().ln()).sqrt() * (std::f64::consts::TAU * unif()).cos();
                        (eps + beta * x.powf(-alpha)) * (0.01 * g).exp()
                    })
                    .collect(),
            );
        }
        rows
    };
    let Some((n, curves)) = rows.split_first() else {
        return Err("no rows".into());
    };
    let t0 = Instant::now();
    let each = std::env::var_os("FIT_COST_EACH").is_some_and(|v| v == "1");
    let theta = std::env::var_os("FIT_COST_EACH").is_some_and(|v| v == "2");
    let (mut iterations, mut objective) = (0, 0.0);
    for losses in curves {
        let fit = fit_one(0, n, losses, &config)?;
        iterations += fit.iterations;
        objective += fit.objective;
        if each {
            println!("{:.17e}", fit.objective);
        }
        if theta {
            println!(
                "{:.17e} eps {:.6e} beta {:.6e} alpha {:.6} iterations {}",
                fit.objective, fit.eps, fit.beta, fit.alpha, fit.iterations
            );
        }
    }
    let k = curves.len().max(1) as f64;
    println!(
        "{} curves of {} points: {:.1} us per curve (wall), {:.1} Newton iterations per curve, sum of objectives {objective:.12e}",
        curves.len(),
        n.len(),
        t0.elapsed().as_secs_f64() / k * 1e6,
        iterations as f64 / k
    );
    Ok(())
}
