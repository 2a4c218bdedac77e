//! Parallel work on a thread pool of its own, joined before returning.
//!
//! Fits run their domains in parallel with rayon, but never on rayon's global pool: its threads
//! live until the process ends (a library should not leave threads behind), and a child forked
//! after the pool started would find a pool whose threads stayed in its parent. Each call gets
//! a scoped pool instead; spawning a few threads costs microseconds next to a fit.

use crate::error::{Error, Result};

/// Run `f` (which may use rayon's parallel iterators) on a pool of at most `tasks` threads
/// (and at most the machine's parallelism), all joined before this returns.
pub fn scoped<R: Send>(tasks: usize, f: impl FnOnce() -> R + Send) -> Result<R> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    rayon::ThreadPoolBuilder::new()
        .num_threads(tasks.clamp(1, cores))
        .thread_name(|i| format!("ado-fit-{i}"))
        .build_scoped(|thread| thread.run(), |pool| pool.install(f))
        .map_err(|e| Error::invalid(format!("cannot start fit threads: {e}")))
}
