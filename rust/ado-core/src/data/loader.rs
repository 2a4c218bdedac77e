//! The mixture loader: composition per step, per-domain read-ahead, batches and exact state.
//!
//! Each step every rank draws the same global composition (`batch_size * world_size` slots) and
//! materialises its own slice `[rank * B, (rank + 1) * B)`. Items come from per-domain streams
//! ([`crate::data::stream`]); read-ahead threads (started at the first batch, never before) fill
//! bounded per-domain queues, but the domain choice is made when the batch is requested, with the
//! weights current at that moment (staleness 0). Which item a domain yields next never depends on
//! timing, so batches are identical with any read-ahead setting.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::data::rng::{permutation, tag};
use crate::data::sampler::{compose, quantize, Mode};
use crate::data::shard::{IndexSource, ShardIndex};
use crate::data::stream::{
    Cursor, Domain, Fetch, FilePool, Item, PackSpec, Phase, Produced, RawSample, Stream,
    TokenFormat,
};
use crate::data::{domain_fingerprint, fingerprint, index_shards};
use crate::error::{Error, Result};

/// Loader settings.
#[derive(Debug, Clone)]
pub struct LoaderConfig {
    pub batch_size: usize,
    pub seed: u64,
    pub rank: usize,
    pub world_size: usize,
    pub mode: Mode,
    /// Read-ahead budget in bytes over all domains (0 disables read-ahead threads).
    pub readahead_bytes: usize,
    /// Number of read-ahead threads (0 disables them).
    pub threads: usize,
    /// Most shard files open at once over all domains (least recently used closed first).
    pub max_open_files: usize,
    pub pack: Option<PackSpec>,
}

/// Largest global batch (`batch_size * world_size` slots drawn per step).
pub const MAX_GLOBAL_BATCH: usize = 1 << 24;
/// Largest `world_size`.
pub const MAX_WORLD_SIZE: usize = 1 << 16;
/// Largest number of per-(domain, rank) counters (`K * world_size`).
pub const MAX_DOMAIN_RANKS: usize = 1 << 26;
/// Largest packed row (`seq_len`).
pub const MAX_SEQ_LEN: usize = 1 << 24;
/// Largest packed batch in tokens (`batch_size * (seq_len + 1)`).
pub const MAX_BATCH_TOKENS: usize = 1 << 30;

impl LoaderConfig {
    /// Bounds on the sizes that become allocations, so that a huge number is a clear error rather
    /// than an allocation failure (abort) at the first batch.
    pub fn check_sizes(&self, num_domains: usize) -> Result<()> {
        let global = self.batch_size.checked_mul(self.world_size);
        if self.world_size > MAX_WORLD_SIZE || !matches!(global, Some(g) if g <= MAX_GLOBAL_BATCH) {
            return Err(Error::invalid(format!(
                "batch_size * world_size must be <= {MAX_GLOBAL_BATCH} and world_size <= \
                 {MAX_WORLD_SIZE}; got batch_size {} and world_size {}",
                self.batch_size, self.world_size
            )));
        }
        if !matches!(num_domains.checked_mul(self.world_size), Some(n) if n <= MAX_DOMAIN_RANKS) {
            return Err(Error::invalid(format!(
                "domains * world_size must be <= {MAX_DOMAIN_RANKS}; got {num_domains} domains \
                 and world_size {}",
                self.world_size
            )));
        }
        if let Some(p) = &self.pack {
            let tokens = p
                .seq_len
                .checked_add(1)
                .and_then(|row| row.checked_mul(self.batch_size));
            if p.seq_len > MAX_SEQ_LEN || !matches!(tokens, Some(t) if t <= MAX_BATCH_TOKENS) {
                return Err(Error::invalid(format!(
                    "seq_len must be <= {MAX_SEQ_LEN} and batch_size * (seq_len + 1) <= \
                     {MAX_BATCH_TOKENS}; got seq_len {} and batch_size {}",
                    p.seq_len, self.batch_size
                )));
            }
        }
        Ok(())
    }
}

/// One batch of this rank.
#[derive(Debug)]
pub struct Batch {
    pub step: u64,
    pub domains: Vec<u32>,
    pub keys: Vec<String>,
    /// Raw mode: one sample per slot.
    pub samples: Vec<RawSample>,
    /// Pack mode: `batch_size * (seq_len + 1)` tokens, row-major.
    pub tokens: Tokens,
}

/// Packed tokens in the dtype the user asked for (built in place, handed over without a copy).
#[derive(Debug)]
pub enum Tokens {
    I32(Vec<i32>),
    I64(Vec<i64>),
}

/// Remote shards of a loader: their indexes (from sidecars or a node-cached indexing pass),
/// keyed by URL as it appears in the domains' shard lists, and the cache that fetches them.
pub struct Remote {
    pub indexes: HashMap<PathBuf, ShardIndex>,
    pub fetch: Arc<dyn Fetch>,
}

/// Version of [`LoaderState`] written now (2: content fingerprints per domain).
const STATE_VERSION: u32 = 2;
/// Version of a state that carries an elastic [`Origin`] (older readers must refuse it).
const ELASTIC_STATE_VERSION: u32 = 3;

/// The JSON-safe loader state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoaderState {
    pub format_version: u32,
    pub manifest_fingerprint: String,
    /// Per domain, the fingerprint of its shards' contents (format 2 on).
    #[serde(default)]
    pub domain_fingerprints: Vec<String>,
    pub domains: Vec<String>,
    pub seed: u64,
    pub mode: String,
    pub batch_size: usize,
    pub rank: usize,
    pub world_size: usize,
    pub step: u64,
    pub weights: Vec<f64>,
    pub credits: Vec<i64>,
    /// Items drawn so far per domain and rank (`[K][world_size]`), identical on every rank.
    pub ordinals: Vec<Vec<u64>>,
    /// Completed epochs of this rank's stream, per domain.
    pub epochs: Vec<u64>,
    /// Pack mode: per domain, (documents opened, token offset in the last one) on this rank.
    pub pack_cursors: Option<Vec<(u64, u64)>>,
    /// Format 3: the elastic resumes behind this state (see [`Origin`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// A checkpoint of `world` ranks that was resumed on a different number of ranks: per domain
/// and old rank, the items that rank had drawn (`positions[d][r]`; documents opened in pack
/// mode). The samples the old ranks had not drawn in their current epochs (or shares) are shared
/// out to the new ranks, who draw them first (see [`crate::data::stream::Phase`]); so within an
/// epoch no sample is drawn twice or skipped over all ranks, across any number of resumes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Origin {
    pub world: usize,
    /// 0 for the first elastic resume of a run, then 1, 2, ... (keys the shuffle of the shares).
    pub level: u64,
    pub positions: Vec<Vec<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Box<Origin>>,
}

/// Largest world of an elastic origin (bounds the work a state can ask for).
const MAX_ORIGIN_WORLD: usize = MAX_WORLD_SIZE;

/// Per domain, the phase of every rank `0..world` of a run resumed from `origin`.
fn phases_after(
    domains: &Arc<Vec<Domain>>,
    seed: u64,
    origin: &Origin,
    world: usize,
) -> Result<Vec<Vec<Phase>>> {
    let k = domains.len();
    if origin.world == 0
        || origin.world > MAX_ORIGIN_WORLD
        || origin.positions.len() != k
        || origin.positions.iter().any(|p| p.len() != origin.world)
        || origin
            .parent
            .as_ref()
            .is_some_and(|p| p.level >= origin.level)
    {
        return Err(Error::State(
            "malformed elastic origin in the loader state (world, positions or level)".into(),
        ));
    }
    let old = match &origin.parent {
        Some(p) => phases_after(domains, seed, p, origin.world)?,
        None => vec![vec![Phase::default(); origin.world]; k],
    };
    let files = Arc::new(FilePool::new(1, None));
    let mut out = Vec::with_capacity(k);
    for d in 0..k {
        let mut rest = Vec::new();
        let mut top = 0u64;
        for r in 0..origin.world {
            let mut s = Stream::new(
                Arc::clone(domains),
                d,
                seed,
                r as u64,
                origin.world as u64,
                None,
                Cursor::default(),
                Arc::clone(&files),
            )
            .with_phase(old[d][r].clone());
            let pos = origin.positions[d][r];
            top = top.max(s.epoch_of(pos.saturating_sub(1)));
            rest.extend(s.remaining(pos));
        }
        rest.sort_unstable();
        rest.dedup(); // only a domain with fewer samples than ranks repeats samples over ranks
        let order = permutation(
            rest.len(),
            &[seed, tag::ELASTIC, d as u64, top, origin.level],
        );
        out.push(
            (0..world)
                .map(|r| Phase {
                    share: Some(Arc::new(
                        order
                            .iter()
                            .skip(r)
                            .step_by(world.max(1))
                            .map(|&i| rest[i as usize])
                            .collect(),
                    )),
                    epoch_base: top.saturating_add(1),
                })
                .collect(),
        );
    }
    Ok(out)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The read-ahead schedule of one loader: per-domain queues of produced items and the streams
/// themselves. A stream is taken out (`None`) while a thread produces from it, so nothing holds
/// this lock (or any other) while a stream reads, fetches a remote shard or tokenizes: those
/// may call into Python.
struct Sched {
    queues: Vec<VecDeque<Result<Produced>>>,
    /// Each domain's stream; `None` while a worker or the consumer produces from it.
    streams: Vec<Option<Stream>>,
    bytes: Vec<usize>,
    total: usize,
    budget: Vec<usize>,
    failed: Vec<bool>,
    cap: usize,
    /// Whether the consumer waits on `ready` / how many workers wait on `work` (wake-ups are
    /// syscalls, so they are only sent when someone waits).
    consumer_waiting: bool,
    idle_workers: usize,
}

impl Sched {
    fn pick(&self) -> Option<usize> {
        if self.total >= self.cap {
            return None;
        }
        (0..self.queues.len())
            .filter(|&d| {
                self.streams[d].is_some() && !self.failed[d] && self.bytes[d] < self.budget[d]
            })
            .max_by_key(|&d| (self.budget[d] - self.bytes[d], usize::MAX - d))
    }
}

struct Shared {
    files: Arc<FilePool>,
    sched: Mutex<Sched>,
    ready: Condvar,
    work: Condvar,
    stop: AtomicBool,
}

fn budgets(cap: usize, q: &[u64]) -> Vec<usize> {
    let k = q.len() as f64;
    let total: f64 = q.iter().map(|&w| w as f64).sum();
    q.iter()
        .map(|&w| ((w as f64 / total + 1.0 / k) / 2.0 * cap as f64) as usize)
        .collect()
}

impl Shared {
    fn wait<'a>(cv: &Condvar, s: MutexGuard<'a, Sched>) -> MutexGuard<'a, Sched> {
        cv.wait(s)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn worker(&self) {
        loop {
            let (d, stream) = {
                let mut s = lock(&self.sched);
                loop {
                    if self.stop.load(Ordering::Acquire) {
                        return;
                    }
                    if let Some(d) = s.pick() {
                        if let Some(stream) = s.streams[d].take() {
                            break (d, stream);
                        }
                    }
                    s.idle_workers += 1;
                    s = Self::wait(&self.work, s);
                    s.idle_workers -= 1;
                }
            };
            // Fill domain `d` while it is under budget, one item at a time, holding no lock
            // while the stream produces.
            let mut held = Some(stream);
            while let Some(stream) = held.as_mut() {
                let res = stream.produce();
                let mut s = lock(&self.sched);
                let ok = res.is_ok();
                match &res {
                    Ok(p) => {
                        s.bytes[d] += p.bytes;
                        s.total += p.bytes;
                    }
                    Err(_) => s.failed[d] = true,
                }
                s.queues[d].push_back(res);
                let more = ok
                    && !self.stop.load(Ordering::Acquire)
                    && s.bytes[d] < s.budget[d]
                    && s.total < s.cap;
                if !more {
                    s.streams[d] = held.take();
                }
                let wake = s.consumer_waiting;
                drop(s);
                if wake {
                    self.ready.notify_all();
                }
            }
        }
    }

    /// The next `n` items of domain `d`, from the queue or produced right here (with no lock
    /// held while producing). While it waits for a read-ahead thread, `interrupted` is asked
    /// every [`INTERRUPT_POLL`] (with no lock held): `true` ends the wait with
    /// [`Error::Interrupted`].
    fn pop_many(
        &self,
        d: usize,
        n: usize,
        interrupted: Interrupted<'_>,
    ) -> Result<VecDeque<Produced>> {
        let mut out = VecDeque::with_capacity(n);
        let mut s = lock(&self.sched);
        loop {
            let before = out.len();
            while out.len() < n {
                let Some(res) = s.queues[d].pop_front() else {
                    break;
                };
                let p = res?;
                s.bytes[d] -= p.bytes;
                s.total -= p.bytes;
                out.push_back(p);
            }
            if out.len() > before && s.idle_workers > 0 {
                self.work.notify_one();
            }
            if out.len() == n {
                return Ok(out);
            }
            // The queue is empty: produce here, or wait for the worker that has the stream.
            let Some(mut stream) = s.streams[d].take() else {
                s.consumer_waiting = true;
                let (guard, waited) = self
                    .ready
                    .wait_timeout(s, INTERRUPT_POLL)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                s = guard;
                s.consumer_waiting = false;
                if waited.timed_out() {
                    drop(s);
                    if interrupted() {
                        return Err(Error::Interrupted);
                    }
                    s = lock(&self.sched);
                }
                continue;
            };
            drop(s);
            let mut res = Ok(());
            while out.len() < n {
                match stream.produce() {
                    Ok(p) => out.push_back(p),
                    Err(e) => {
                        res = Err(e);
                        break;
                    }
                }
            }
            s = lock(&self.sched);
            s.streams[d] = Some(stream);
            let wake = s.idle_workers > 0;
            drop(s);
            if wake {
                self.work.notify_all();
            }
            return res.map(|()| out);
        }
    }
}

/// The read-ahead threads of a loader. Dropping it stops them and waits for them (each
/// finishes the item it is producing); call it detached from Python, since a thread may be
/// waiting to call into Python (a remote shard's fetcher).
struct Engine {
    shared: Arc<Shared>,
    /// Process that started the threads: after a fork the child has none of them.
    pid: u32,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Engine {
    /// Tell the threads to stop after the item each is producing.
    fn stop(&self) {
        self.shared.stop.store(true, Ordering::Release);
        let _guard = lock(&self.shared.sched);
        self.shared.work.notify_all();
    }

    /// Stop the threads and leave the waiting for them to a reaper thread: a thread may be
    /// stuck in a stalled remote read (until its timeout) and the caller must not wait for it.
    /// Its streams and open files go when the last thread is done.
    fn abandon(self) {
        self.stop();
        let (tx, rx) = std::sync::mpsc::channel::<Engine>();
        let reaper = std::thread::Builder::new()
            .name("ado-loader-reaper".into())
            .spawn(move || drop(rx.recv()));
        if reaper.is_ok() {
            let _ = tx.send(self);
        }
        // (without a reaper the engine is dropped right here: joined in this thread)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if self.pid != std::process::id() {
            // Forked child: the threads (and maybe a lock they held) stayed in the parent.
            std::mem::forget(std::mem::take(&mut self.threads));
            return;
        }
        self.stop();
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }
}

/// Asked while a batch waits for a read-ahead thread: whether to stop waiting (Ctrl-C).
pub type Interrupted<'a> = &'a (dyn Fn() -> bool + Sync);

/// How often a batch waiting for a read-ahead thread asks whether it was interrupted.
pub const INTERRUPT_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// The mixture loader of one rank.
pub struct Loader {
    cfg: LoaderConfig,
    domains: Arc<Vec<Domain>>,
    fingerprint: String,
    weights: Vec<f64>,
    q: Vec<u64>,
    credits: Vec<i64>,
    step: u64,
    ordinals: Vec<Vec<u64>>,
    cursors: Vec<Cursor>,
    engine: Option<Engine>,
    fetch: Option<Arc<dyn Fetch>>,
    domain_fps: Vec<String>,
    /// The format-1 fingerprint (header hashes), to accept states saved before format 2.
    legacy_fingerprint: String,
    /// Per domain, a stream used only to plan which shards come next (never reads).
    planners: Vec<Option<Stream>>,
    /// Per domain, where this rank's stream starts (after an elastic resume: its share).
    phases: Vec<Phase>,
    /// The elastic resumes this run went through (`None`: the world never changed).
    origin: Option<Origin>,
    /// Local shards whose sidecar carried their identity but did not describe them (reindexed).
    rejected_sidecars: Vec<PathBuf>,
}

/// The manifest fingerprint of format-1 states (size, samples, header hash per shard).
fn legacy_fingerprint(domains: &[Domain]) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for d in domains {
        h.update(&(d.name.len() as u64).to_le_bytes());
        h.update(d.name.as_bytes());
        h.update(&(d.shards.len() as u64).to_le_bytes());
        for s in &d.shards {
            h.update(&s.file_size.to_le_bytes());
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(&s.header_hash.to_le_bytes());
        }
    }
    format!("{:032x}", h.digest128())
}

impl Loader {
    /// Index every shard of `domains` (`(name, shard paths)`; sidecars beside the shards or in
    /// `cache_dir`, `index_threads` at a time), fingerprint the manifest and build the loader.
    /// A txt packing field needs a tokenizer.
    pub fn open(
        cfg: LoaderConfig,
        domains: Vec<(String, Vec<PathBuf>)>,
        weights: Option<Vec<f64>>,
        cache_dir: Option<&Path>,
        index_threads: usize,
    ) -> Result<Loader> {
        Loader::open_with_remote(cfg, domains, weights, cache_dir, index_threads, None)
    }

    /// [`Loader::open`] where some shards are remote: a path that is a key of
    /// `remote.indexes` takes that index and is read through `remote.fetch`.
    pub fn open_with_remote(
        cfg: LoaderConfig,
        domains: Vec<(String, Vec<PathBuf>)>,
        weights: Option<Vec<f64>>,
        cache_dir: Option<&Path>,
        index_threads: usize,
        mut remote: Option<Remote>,
    ) -> Result<Loader> {
        if let Some(p) = &cfg.pack {
            if p.format == TokenFormat::Text && p.tokenizer.is_none() {
                return Err(Error::invalid("a txt token field needs a tokenizer"));
            }
        }
        let is_remote = |p: &PathBuf| remote.as_ref().is_some_and(|r| r.indexes.contains_key(p));
        let local: Vec<PathBuf> = domains
            .iter()
            .flat_map(|(_, p)| p.iter().filter(|p| !is_remote(p)).cloned())
            .collect();
        let indexed = index_shards(&local, cache_dir, index_threads)?;
        let rejected_sidecars = local
            .iter()
            .zip(&indexed)
            .filter(|(_, (_, src))| *src == IndexSource::Rejected)
            .map(|(p, _)| p.clone())
            .collect();
        let mut indexes = indexed.into_iter();
        let mut doms = Vec::with_capacity(domains.len());
        for (name, paths) in domains {
            let mut shards = Vec::with_capacity(paths.len());
            let mut flags = Vec::with_capacity(paths.len());
            for p in &paths {
                let from_remote = remote.as_mut().and_then(|r| r.indexes.get(p).cloned());
                flags.push(from_remote.is_some());
                match from_remote {
                    Some(idx) => shards.push(idx),
                    None => match indexes.next() {
                        Some((idx, _)) => shards.push(idx),
                        None => return Err(Error::internal("shard left unindexed")),
                    },
                }
            }
            let mut dom = Domain::new(name, paths, shards)?;
            dom.remote = flags;
            doms.push(dom);
        }
        let fp = fingerprint(
            &doms
                .iter()
                .map(|d| (d.name.clone(), d.shards.iter().collect()))
                .collect::<Vec<_>>(),
        );
        let mut loader = Loader::new(cfg, doms, weights, fp)?;
        loader.fetch = remote.map(|r| r.fetch);
        loader.rejected_sidecars = rejected_sidecars;
        Ok(loader)
    }

    /// Local shards whose sidecar had the file's identity but left samples out (or otherwise
    /// did not tile the archive): they were indexed again (see [`load_or_build`]).
    ///
    /// [`load_or_build`]: crate::data::shard::load_or_build
    pub fn rejected_sidecars(&self) -> &[PathBuf] {
        &self.rejected_sidecars
    }

    /// Per domain, the next `depth[d]` distinct shards this rank reads, from the shard it is
    /// reading now on (indices into the domain's shard list). A pure function of the seed and
    /// the committed position: what the prefetcher downloads next.
    pub fn upcoming_shards(&mut self, depth: &[usize]) -> Vec<Vec<usize>> {
        let k = self.domains.len();
        if self.planners.len() != k {
            self.planners = (0..k).map(|_| None).collect();
        }
        (0..k)
            .map(|d| {
                let n = depth.get(d).copied().unwrap_or(0);
                if n == 0 {
                    return Vec::new();
                }
                let (rank, world) = (self.cfg.rank as u64, self.cfg.world_size as u64);
                let phase = self.phases[d].clone();
                let planner = self.planners[d].get_or_insert_with(|| {
                    Stream::new(
                        Arc::clone(&self.domains),
                        d,
                        self.cfg.seed,
                        rank,
                        world,
                        None,
                        Cursor::default(),
                        Arc::new(FilePool::new(1, None)),
                    )
                    .with_phase(phase)
                });
                planner.upcoming_shards(self.cursors[d].doc.saturating_sub(1), n)
            })
            .collect()
    }

    /// Stop the read-ahead threads, wait for them, and close every shard file (remote shards
    /// are released to their fetcher). The next batch starts afresh from the committed cursors.
    pub fn shutdown(&mut self) {
        // Dropping the engine stops and joins its threads (a forked child only forgets them).
        self.engine = None;
    }

    /// Content fingerprint of the manifest (see [`fingerprint`]).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Samples per domain.
    pub fn num_samples(&self) -> Vec<u64> {
        self.domains.iter().map(Domain::len).collect()
    }

    /// A loader over indexed domains. No thread is started here.
    pub fn new(
        cfg: LoaderConfig,
        domains: Vec<Domain>,
        weights: Option<Vec<f64>>,
        fingerprint: String,
    ) -> Result<Loader> {
        if cfg.batch_size == 0 {
            return Err(Error::invalid("batch_size must be >= 1"));
        }
        cfg.check_sizes(domains.len())?;
        if cfg.world_size == 0 || cfg.rank >= cfg.world_size {
            return Err(Error::invalid(format!(
                "rank {} is out of range for world_size {}",
                cfg.rank, cfg.world_size
            )));
        }
        if domains.is_empty() {
            return Err(Error::invalid("at least one domain is needed"));
        }
        if let Some(p) = &cfg.pack {
            if p.seq_len == 0 {
                return Err(Error::invalid("seq_len must be >= 1"));
            }
        }
        let k = domains.len();
        let weights = weights.unwrap_or_else(|| vec![1.0; k]);
        let q = quantize(&weights, k)?;
        let domain_fps = domains
            .iter()
            .map(|d| domain_fingerprint(&d.shards.iter().collect::<Vec<_>>()))
            .collect();
        let legacy = legacy_fingerprint(&domains);
        Ok(Loader {
            fetch: None,
            domain_fps,
            legacy_fingerprint: legacy,
            planners: Vec::new(),
            phases: vec![Phase::default(); k],
            origin: None,
            rejected_sidecars: Vec::new(),
            domains: Arc::new(domains),
            fingerprint,
            weights,
            q,
            credits: vec![0; k],
            step: 0,
            ordinals: vec![vec![0; cfg.world_size]; k],
            cursors: vec![Cursor::default(); k],
            engine: None,
            cfg,
        })
    }

    /// The domains.
    pub fn domains(&self) -> &[Domain] {
        &self.domains
    }

    /// Current weights (as given, not renormalised).
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// Whether the loader packs tokens (else it yields raw samples).
    pub fn packed(&self) -> bool {
        self.cfg.pack.is_some()
    }

    /// (files open now, files opened so far) by this loader's read path.
    pub fn file_stats(&self) -> (usize, u64) {
        self.engine.as_ref().map_or((0, 0), |e| {
            (e.shared.files.open_files(), e.shared.files.opens())
        })
    }

    /// The next step to be produced.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Set the weights used from the very next batch on.
    pub fn set_weights(&mut self, weights: Vec<f64>) -> Result<()> {
        let q = quantize(&weights, self.domains.len())?;
        if let Some(e) = &self.engine {
            let mut sched = lock(&e.shared.sched);
            sched.budget = budgets(sched.cap, &q);
            drop(sched);
            e.shared.work.notify_all();
        }
        self.q = q;
        self.weights = weights;
        Ok(())
    }

    fn engine(&mut self) -> Result<&Arc<Shared>> {
        if self
            .engine
            .as_ref()
            .is_some_and(|e| e.pid != std::process::id())
        {
            // Forked child: the read-ahead threads (and maybe a lock they held) stayed in the
            // parent. Leak the copy without touching its locks and rebuild from the cursors.
            std::mem::forget(self.engine.take());
        }
        if self.engine.is_none() {
            let k = self.domains.len();
            // Ranged reads of remote shards: the spans a stream holds share the read-ahead
            // budget out per domain (256 KiB to 16 MiB each, one sample at least).
            let window = (self.cfg.readahead_bytes / k.max(1)).clamp(256 << 10, 16 << 20);
            let files = Arc::new(
                FilePool::new(self.cfg.max_open_files, self.fetch.clone())
                    .with_range_window(window as u64),
            );
            let streams = (0..k)
                .map(|d| {
                    Some(
                        Stream::new(
                            Arc::clone(&self.domains),
                            d,
                            self.cfg.seed,
                            self.cfg.rank as u64,
                            self.cfg.world_size as u64,
                            self.cfg.pack.clone(),
                            self.cursors[d],
                            Arc::clone(&files),
                        )
                        .with_phase(self.phases[d].clone()),
                    )
                })
                .collect();
            let tokenizer = self
                .cfg
                .pack
                .as_ref()
                .is_some_and(|p| p.tokenizer.is_some());
            let threads = if self.cfg.readahead_bytes == 0 || tokenizer {
                0
            } else {
                self.cfg.threads
            };
            let cap = self.cfg.readahead_bytes;
            let shared = Arc::new(Shared {
                files,
                sched: Mutex::new(Sched {
                    queues: (0..k).map(|_| VecDeque::new()).collect(),
                    streams,
                    bytes: vec![0; k],
                    total: 0,
                    budget: budgets(cap, &self.q),
                    failed: vec![false; k],
                    cap,
                    consumer_waiting: false,
                    idle_workers: 0,
                }),
                ready: Condvar::new(),
                work: Condvar::new(),
                stop: AtomicBool::new(false),
            });
            let mut handles = Vec::with_capacity(threads);
            for i in 0..threads {
                let s = Arc::clone(&shared);
                let h = std::thread::Builder::new()
                    .name(format!("ado-readahead-{i}"))
                    .spawn(move || s.worker())
                    .map_err(|e| Error::invalid(format!("cannot start read-ahead thread: {e}")))?;
                handles.push(h);
            }
            self.engine = Some(Engine {
                shared,
                pid: std::process::id(),
                threads: handles,
            });
        }
        match &self.engine {
            Some(e) => Ok(&e.shared),
            None => Err(Error::internal("loader engine missing")),
        }
    }

    /// Produce this rank's batch of the next step.
    pub fn next_batch(&mut self) -> Result<Batch> {
        self.next_batch_interruptible(&|| false)
    }

    /// [`Loader::next_batch`] that stops with [`Error::Interrupted`] when `interrupted` says so
    /// while the batch waits for a read-ahead thread (asked every [`INTERRUPT_POLL`] of waiting,
    /// never while a lock is held, so it may call into Python). On this or any error the
    /// read-ahead threads are stopped and left to a reaper thread (one may be stuck in a
    /// stalled remote read); nothing is committed, so the next call restarts them from the
    /// committed cursors and yields the batch this one would have.
    pub fn next_batch_interruptible(&mut self, interrupted: Interrupted<'_>) -> Result<Batch> {
        let (b, w, rank) = (self.cfg.batch_size, self.cfg.world_size, self.cfg.rank);
        let mut credits = self.credits.clone();
        let global = compose(
            self.cfg.mode,
            self.cfg.seed,
            self.step,
            &self.q,
            &mut credits,
            b * w,
        );
        let mine = &global[rank * b..(rank + 1) * b];
        let shared = Arc::clone(self.engine()?);
        let row = self.cfg.pack.as_ref().map_or(0, |p| p.seq_len + 1);
        let mut batch = Batch {
            step: self.step,
            domains: mine.to_vec(),
            keys: Vec::with_capacity(b),
            samples: Vec::with_capacity(if row == 0 { b } else { 0 }),
            tokens: if self.cfg.pack.as_ref().is_some_and(|p| p.int64) {
                Tokens::I64(Vec::with_capacity(b * row))
            } else {
                Tokens::I32(Vec::with_capacity(b * row))
            },
        };
        let mut cursors = self.cursors.clone();
        let mut need = vec![0usize; self.domains.len()];
        for &d in mine {
            need[d as usize] += 1;
        }
        let mut items = Vec::with_capacity(need.len());
        for (d, &n) in need.iter().enumerate() {
            match shared.pop_many(d, n, interrupted) {
                Ok(v) => items.push(v),
                Err(e) => {
                    // Streams ran ahead of the committed cursors: rebuild them on the next call.
                    // Not joined here: after Ctrl-C (seen here, or by this thread's own fetch
                    // as a failed read) another read-ahead thread may be stuck in a stalled
                    // remote read until its timeout.
                    if let Some(engine) = self.engine.take() {
                        engine.abandon();
                    }
                    return Err(e);
                }
            }
        }
        for &d in mine {
            let Some(p) = items[d as usize].pop_front() else {
                return Err(Error::internal("read-ahead returned too few items"));
            };
            cursors[d as usize] = p.after;
            match p.item {
                Item::Raw(s) => {
                    batch.keys.push(s.key.clone());
                    batch.samples.push(s);
                }
                Item::Tokens(t, key) => {
                    batch.keys.push(key);
                    match &mut batch.tokens {
                        // Streams reject ids above i32::MAX when int32 output is asked for.
                        Tokens::I32(v) => v.extend(t.iter().map(|&x| x as i32)),
                        Tokens::I64(v) => v.extend(t.iter().map(|&x| i64::from(x))),
                    }
                }
            }
        }
        // Commit only after the whole batch succeeded.
        for (i, &d) in global.iter().enumerate() {
            self.ordinals[d as usize][i / b] += 1;
        }
        self.credits = credits;
        self.cursors = cursors;
        self.step += 1;
        Ok(batch)
    }

    /// Completed epochs of this rank's stream, per domain.
    pub fn epochs(&self) -> Vec<u64> {
        let (rank, world) = (self.cfg.rank as u64, self.cfg.world_size as u64);
        (0..self.domains.len())
            .map(|d| {
                let stream = Stream::new(
                    Arc::clone(&self.domains),
                    d,
                    0,
                    rank,
                    world,
                    None,
                    Cursor::default(),
                    Arc::new(FilePool::new(1, None)),
                )
                .with_phase(self.phases[d].clone());
                stream.epoch_of(self.cursors[d].doc.saturating_sub(u64::from(
                    self.cfg.pack.is_some() && self.cursors[d].doc > 0,
                )))
            })
            .collect()
    }

    /// The JSON-safe state.
    pub fn state(&self) -> LoaderState {
        LoaderState {
            format_version: if self.origin.is_some() {
                ELASTIC_STATE_VERSION
            } else {
                STATE_VERSION
            },
            manifest_fingerprint: self.fingerprint.clone(),
            domain_fingerprints: self.domain_fps.clone(),
            domains: self.domains.iter().map(|d| d.name.clone()).collect(),
            seed: self.cfg.seed,
            mode: self.cfg.mode.name().into(),
            batch_size: self.cfg.batch_size,
            rank: self.cfg.rank,
            world_size: self.cfg.world_size,
            step: self.step,
            weights: self.weights.clone(),
            credits: self.credits.clone(),
            ordinals: self.ordinals.clone(),
            epochs: self.epochs(),
            pack_cursors: self
                .cfg
                .pack
                .as_ref()
                .map(|_| self.cursors.iter().map(|c| (c.doc, c.tok)).collect()),
            origin: self.origin.clone(),
        }
    }

    /// Restore a state saved by [`Loader::state`] (same manifest, seed, batch and world).
    pub fn load_state(&mut self, st: &LoaderState) -> Result<()> {
        self.load_states(std::slice::from_ref(st))
    }

    /// Checks of a state against this loader that hold whatever the world.
    fn check_state(&self, st: &LoaderState) -> Result<()> {
        let bad = |what: &str, have: String, got: String| {
            Err(Error::State(format!(
                "state was saved with {what} {got}, this loader has {have}"
            )))
        };
        if ![1, STATE_VERSION, ELASTIC_STATE_VERSION].contains(&st.format_version) {
            return bad(
                "format_version",
                format!("1 to {ELASTIC_STATE_VERSION}"),
                st.format_version.to_string(),
            );
        }
        let names: Vec<String> = self.domains.iter().map(|d| d.name.clone()).collect();
        let expected = if st.format_version == 1 {
            &self.legacy_fingerprint
        } else {
            &self.fingerprint
        };
        if st.manifest_fingerprint != *expected {
            let changed: Vec<&str> =
                if st.domains == names && st.domain_fingerprints.len() == names.len() {
                    names
                        .iter()
                        .zip(st.domain_fingerprints.iter().zip(&self.domain_fps))
                        .filter(|(_, (a, b))| a != b)
                        .map(|(n, _)| n.as_str())
                        .collect()
                } else {
                    Vec::new()
                };
            let what = if changed.is_empty() {
                "other domains, shards or shard contents".to_string()
            } else {
                format!(
                    "the shards of domain(s) {changed:?} differ (a shard was added, removed, \
                     replaced or rewritten since the checkpoint)"
                )
            };
            return Err(Error::State(format!(
                "state belongs to a different manifest (fingerprint {} != {expected}): {what}",
                st.manifest_fingerprint
            )));
        }
        if st.domains != names {
            return bad("domains", format!("{names:?}"), format!("{:?}", st.domains));
        }
        if st.seed != self.cfg.seed {
            return bad("seed", self.cfg.seed.to_string(), st.seed.to_string());
        }
        if st.mode != self.cfg.mode.name() {
            return bad("mode", self.cfg.mode.name().into(), st.mode.clone());
        }
        if st.batch_size != self.cfg.batch_size {
            return bad(
                "batch_size",
                self.cfg.batch_size.to_string(),
                st.batch_size.to_string(),
            );
        }
        let k = names.len();
        if st.world_size == 0
            || st.world_size > MAX_WORLD_SIZE
            || st.rank >= st.world_size
            || st.credits.len() != k
            || st.ordinals.len() != k
            || st.ordinals.iter().any(|o| o.len() != st.world_size)
        {
            return Err(Error::State(
                "state has the wrong number of domains or ranks".into(),
            ));
        }
        if self.cfg.pack.is_some() != st.pack_cursors.is_some() {
            return Err(Error::State("state and loader disagree on packing".into()));
        }
        if st.pack_cursors.as_ref().is_some_and(|pc| pc.len() != k) {
            return Err(Error::State("pack_cursors has the wrong length".into()));
        }
        Ok(())
    }

    /// Restore from the states of one checkpoint. With the checkpoint's world size, this rank's
    /// own state is used and the following batches equal the uninterrupted run's. With another
    /// world size the resume is elastic: the global step, weights and credits continue, and the
    /// samples the old ranks had not drawn in their current epochs are shared out to the new
    /// ranks, who draw them first (see [`Origin`]). Raw samples need any one old rank's state
    /// (each holds every rank's position); packed rows need the states of all old ranks.
    pub fn load_states(&mut self, states: &[LoaderState]) -> Result<()> {
        let Some(st) = states.first() else {
            return Err(Error::State("no loader state given".into()));
        };
        for other in states {
            self.check_state(other)?;
            if other.step != st.step
                || other.world_size != st.world_size
                || other.ordinals != st.ordinals
                || other.credits != st.credits
                || other.weights != st.weights
                || other.origin != st.origin
            {
                return Err(Error::State(
                    "the loader states come from different checkpoints (step, world, \
                     positions, weights or origin differ)"
                        .into(),
                ));
            }
        }
        let k = self.domains.len();
        let q = quantize(&st.weights, k).map_err(|e| Error::State(format!("weights: {e}")))?;
        let (world, rank) = (self.cfg.world_size, self.cfg.rank);
        let (cursors, ordinals, origin, phases) = if st.world_size == world {
            let Some(mine) = states.iter().find(|s| s.rank == rank) else {
                return Err(Error::State(format!(
                    "state was saved with rank(s) {:?}, this loader has rank {rank}",
                    states.iter().map(|s| s.rank).collect::<Vec<_>>()
                )));
            };
            let cursors: Vec<Cursor> = (0..k)
                .map(|d| {
                    let items = mine.ordinals[d][rank];
                    match &mine.pack_cursors {
                        Some(pc) => Cursor {
                            items,
                            doc: pc[d].0,
                            tok: pc[d].1,
                        },
                        None => Cursor {
                            items,
                            doc: items,
                            tok: 0,
                        },
                    }
                })
                .collect();
            let phases = match &mine.origin {
                Some(o) => phases_after(&self.domains, self.cfg.seed, o, world)?
                    .into_iter()
                    .map(|mut p| p.swap_remove(rank))
                    .collect(),
                None => vec![Phase::default(); k],
            };
            (cursors, mine.ordinals.clone(), mine.origin.clone(), phases)
        } else {
            let n = st.world_size;
            let positions: Vec<Vec<u64>> = if self.cfg.pack.is_some() {
                let mut by_rank: Vec<Option<&LoaderState>> = vec![None; n];
                for s in states {
                    by_rank[s.rank] = Some(s);
                }
                let missing: Vec<usize> = (0..n).filter(|&r| by_rank[r].is_none()).collect();
                if !missing.is_empty() {
                    return Err(Error::State(format!(
                        "resuming packed rows saved by {n} ranks on {world} needs the loader \
                         states of all {n} ranks; missing rank(s) {missing:?}"
                    )));
                }
                (0..k)
                    .map(|d| {
                        by_rank
                            .iter()
                            .map(|s| {
                                s.and_then(|s| s.pack_cursors.as_ref())
                                    .map_or(0, |pc| pc[d].0)
                            })
                            .collect()
                    })
                    .collect()
            } else {
                st.ordinals.clone()
            };
            let origin = Origin {
                world: n,
                level: st.origin.as_ref().map_or(0, |o| o.level + 1),
                positions,
                parent: st.origin.clone().map(Box::new),
            };
            let phases = phases_after(&self.domains, self.cfg.seed, &origin, world)?
                .into_iter()
                .map(|mut p| p.swap_remove(rank))
                .collect();
            (
                vec![Cursor::default(); k],
                vec![vec![0; world]; k],
                Some(origin),
                phases,
            )
        };
        self.engine = None;
        self.planners = Vec::new();
        self.phases = phases;
        self.origin = origin;
        self.q = q;
        self.weights = st.weights.clone();
        self.credits = st.credits.clone();
        self.ordinals = ordinals;
        self.cursors = cursors;
        self.step = st.step;
        Ok(())
    }
}
