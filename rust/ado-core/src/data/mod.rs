//! WebDataset mixture loading: shard indexes, counter-based sampling, per-domain streams, packing.
//!
//! * [`shard`]: tar header walk, webdataset grouping, sidecar index cache with a fingerprint.
//! * [`rng`]: the counter-based RNG (SplitMix64 finaliser over key words) and permutations.
//! * [`sampler`]: fixed-point weights and the `iid` / `deficit` batch composition.
//! * [`stream`]: one domain's deterministic per-rank stream, reading by offset, LM packing.
//! * [`loader`]: read-ahead threads, batches, JSON-safe state.

pub mod loader;
pub mod rng;
pub mod sampler;
pub mod shard;
pub mod stream;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::error::{Error, Result};
use shard::{load_or_build, IndexSource, ShardIndex};

/// Index many shards with `threads` scoped threads (all joined before returning), loading valid
/// sidecars and building (and caching) the rest. Results are in input order.
pub fn index_shards(
    paths: &[PathBuf],
    cache_dir: Option<&Path>,
    threads: usize,
) -> Result<Vec<(ShardIndex, IndexSource)>> {
    let next = AtomicUsize::new(0);
    type Slot = Option<Result<(ShardIndex, IndexSource)>>;
    let results: Mutex<Vec<Slot>> = Mutex::new((0..paths.len()).map(|_| None).collect());
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= paths.len() {
            break;
        }
        let r = load_or_build(&paths[i], cache_dir);
        let mut guard = results
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard[i] = Some(r);
    };
    let n = threads.clamp(1, paths.len().max(1));
    std::thread::scope(|s| {
        for _ in 1..n {
            s.spawn(work);
        }
        work();
    });
    results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(Error::internal("shard left unindexed"))))
        .collect()
}

/// Content fingerprint of a manifest: domain names, and per shard its size, sample count and
/// content hash (not paths or mtimes, so copied data keeps its fingerprint; a shard whose bytes
/// changed changes it).
pub fn fingerprint(domains: &[(String, Vec<&ShardIndex>)]) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for (name, shards) in domains {
        h.update(&(name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(&domain_digest(shards).to_le_bytes());
    }
    format!("{:032x}", h.digest128())
}

/// Fingerprint of one domain's shards (count, and per shard size, samples and content hash).
pub fn domain_fingerprint(shards: &[&ShardIndex]) -> String {
    format!("{:032x}", domain_digest(shards))
}

fn domain_digest(shards: &[&ShardIndex]) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&(shards.len() as u64).to_le_bytes());
    for s in shards {
        h.update(&s.file_size.to_le_bytes());
        h.update(&(s.len() as u64).to_le_bytes());
        h.update(&s.content_hash.to_le_bytes());
    }
    h.digest128()
}
