//! `ado-core`: the pure-Rust engine behind `ado` (Adaptive Data Optimization).
//!
//! * [`fit`]: robust fitting of per-domain power laws `L(n) = eps + beta * n^-alpha`.
//! * [`lr_law`]: the learning-rate-aware law `L(s) = L0 + A * S1(s)^-alpha - C * S2(s)` (Tissue et al.).
//! * [`estimator`]: the online, bounded-memory estimator that turns a stream of per-domain losses into
//!   smoothed, subsampled fit points (Savitzky–Golay) and refits on demand.
//! * [`data`]: the WebDataset mixture loader (shard indexes, counter-based sampling, packing).
//!
//! Nothing here depends on Python; the `ado-py` crate is the thin PyO3 layer.

pub mod data;
pub mod error;
pub mod estimator;
pub mod fit;
pub mod lr_law;
pub mod par;
pub mod savgol;

pub use error::{Error, Result};
