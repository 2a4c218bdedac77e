//! One domain's deterministic stream of samples (or packed sequences) on one rank.
//!
//! A domain's samples are numbered by concatenating its shards in manifest order. Rank `r` of `W`
//! owns the samples whose number is `r` modulo `W` (a domain with fewer samples than ranks gives
//! each rank one sample, `r mod N`), so ranks never read each other's samples. Each epoch of the
//! rank's subset is a fresh permutation: the shard order is shuffled, then the order inside each
//! shard, both keyed by (seed, domain, epoch[, shard, rank]) through [`crate::data::rng`]. The
//! `k`-th item of the stream is therefore a pure function of `k`.
//!
//! After an elastic resume (a checkpoint of `N` ranks resumed on `M != N`), a stream first
//! consumes its [`Phase::share`]: its slice of the samples the `N` old ranks had not yet drawn in
//! their current epochs; then epochs `Phase::epoch_base, ...` of the `M`-rank scheme follow.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::data::rng::{permutation, tag};
use crate::data::shard::{open_regular, ShardIndex};
use crate::error::{Error, Result};

/// A domain: its shards and their indexes.
#[derive(Debug)]
pub struct Domain {
    pub name: String,
    /// Local paths, or (where `remote[s]`) the URL of a remote shard, read through a [`Fetch`].
    pub paths: Vec<PathBuf>,
    pub remote: Vec<bool>,
    pub shards: Vec<ShardIndex>,
    /// `bases[s]` = number of samples before shard `s`; `bases[S]` = total.
    pub bases: Vec<u64>,
}

impl Domain {
    /// Build from indexed shards; an empty domain is an error.
    pub fn new(name: String, paths: Vec<PathBuf>, shards: Vec<ShardIndex>) -> Result<Domain> {
        let mut bases = Vec::with_capacity(shards.len() + 1);
        let mut n = 0u64;
        bases.push(0);
        for s in &shards {
            n += s.len() as u64;
            bases.push(n);
        }
        if n == 0 {
            return Err(Error::invalid(format!(
                "domain {name:?} is empty: its {} shard(s) hold no sample",
                shards.len()
            )));
        }
        Ok(Domain {
            name,
            remote: vec![false; paths.len()],
            paths,
            shards,
            bases,
        })
    }

    /// Total number of samples.
    pub fn len(&self) -> u64 {
        self.bases[self.shards.len()]
    }

    /// Whether the domain has no sample (never true for a constructed domain).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (first local index, count, stride) of rank `r`'s samples in shard `s`.
    fn rank_slice(&self, s: usize, rank: u64, world: u64) -> (u64, u64, u64) {
        let n = self.shards[s].len() as u64;
        let base = self.bases[s];
        let total = self.len();
        if total < world {
            let g = rank % total;
            return if (base..base + n).contains(&g) {
                (g - base, 1, 1)
            } else {
                (0, 0, 1)
            };
        }
        let first = (rank + world - base % world) % world;
        let count = if first < n {
            (n - first - 1) / world + 1
        } else {
            0
        };
        (first, count, world)
    }
}

/// Where remote shards are read from: a node-local cache of whole shards, checked against their
/// index (size and content hash) before they are handed out.
pub trait Fetch: Send + Sync {
    /// A local copy of the shard at `url`, downloaded if needed. It stays on disk (never evicted)
    /// until the matching [`Fetch::release`].
    fn acquire(&self, url: &str) -> Result<PathBuf>;
    /// The reader is done with `url` (one call per successful `acquire`).
    fn release(&self, url: &str);
    /// The bytes of `ranges` (`[start, end)` offsets, in order) of the shard at `url`, read by
    /// ranged GETs, or `None` when the fetcher would rather hand out the whole shard (it is
    /// cached, ranged reads are off, or the server does not serve ranges): the reader then
    /// calls [`Fetch::acquire`]. Called with no lock of the core held.
    fn read_ranges(&self, _url: &str, _ranges: &[(u64, u64)]) -> Result<Option<Vec<Vec<u8>>>> {
        Ok(None)
    }
}

/// Most samples one ranged read asks for (this stream's next samples in the same shard).
const RANGE_WINDOW_SAMPLES: usize = 64;
/// Default most bytes of sample spans one ranged read asks for (one sample at least); see
/// [`FilePool::with_range_window`].
const RANGE_WINDOW_BYTES: u64 = 16 << 20;

/// Remote shards kept open per domain: the one being read and the previous one (so a copy in
/// the cache is held "in use" only while a stream may still read it).
const REMOTE_OPEN_PER_DOMAIN: usize = 2;

/// The open shard files of one loader, shared by all its streams: at most `cap` stay open, the
/// least recently used is closed first, so open descriptors stay bounded however many domains
/// and shards there are. A local shard is checked against its index (size, mtime, ctime, inode,
/// device) each time it is opened; remote shards come from the [`Fetch`] and stay acquired
/// while open.
pub struct FilePool {
    cap: usize,
    fetch: Option<Arc<dyn Fetch>>,
    inner: Mutex<PoolInner>,
    /// Most bytes of sample spans a stream asks one ranged read for (and then holds).
    range_window: u64,
}

struct Open {
    file: Arc<File>,
    tick: u64,
    /// The URL acquired from the fetcher, for remote shards.
    url: Option<String>,
}

#[derive(Default)]
struct PoolInner {
    tick: u64,
    opens: u64,
    files: HashMap<(usize, usize), Open>,
}

impl FilePool {
    /// A pool keeping at most `cap` (at least 1) files open; remote shards go through `fetch`.
    pub fn new(cap: usize, fetch: Option<Arc<dyn Fetch>>) -> FilePool {
        FilePool {
            cap: cap.max(1),
            fetch,
            inner: Mutex::new(PoolInner::default()),
            range_window: RANGE_WINDOW_BYTES,
        }
    }

    /// This pool with each stream's ranged reads bounded to `bytes` of sample spans (one
    /// sample at least): what a stream holds of a remote shard it reads by ranges.
    pub fn with_range_window(mut self, bytes: u64) -> FilePool {
        self.range_window = bytes;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolInner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Files open now.
    pub fn open_files(&self) -> usize {
        self.lock().files.len()
    }

    /// The fetcher of remote shards, if any.
    fn fetcher(&self) -> Option<&Arc<dyn Fetch>> {
        self.fetch.as_ref()
    }

    /// Whether shard `s` of domain `d` is open now (a remote one: acquired whole).
    fn is_open(&self, d: usize, s: usize) -> bool {
        self.lock().files.contains_key(&(d, s))
    }

    /// Files opened so far (re-opens after eviction included).
    pub fn opens(&self) -> u64 {
        self.lock().opens
    }

    fn release_all(&self, gone: Vec<Open>) {
        if let Some(f) = &self.fetch {
            for o in gone {
                if let Some(url) = o.url {
                    drop(o.file);
                    f.release(&url);
                }
            }
        }
    }

    fn open_shard(&self, dom: &Domain, s: usize) -> Result<(File, Option<String>)> {
        let path = &dom.paths[s];
        let idx = &dom.shards[s];
        if !dom.remote[s] {
            let (file, st) = open_regular(path)?;
            if st != idx.file_stat() {
                return Err(Error::Shard {
                    path: path.clone(),
                    message: "shard changed since it was indexed; rebuild the loader".into(),
                });
            }
            return Ok((file, None));
        }
        let url = path.to_string_lossy().into_owned();
        let Some(fetch) = &self.fetch else {
            return Err(Error::Remote(format!(
                "{url}: remote shard without a fetcher (internal)"
            )));
        };
        let local = fetch.acquire(&url)?;
        let opened = open_regular(&local).and_then(|(file, st)| {
            if st.size == idx.file_size {
                Ok(file)
            } else {
                Err(Error::Remote(format!(
                    "{url}: the cached copy has {} bytes, its index says {}",
                    st.size, idx.file_size
                )))
            }
        });
        match opened {
            Ok(file) => Ok((file, Some(url))),
            Err(e) => {
                fetch.release(&url);
                Err(e)
            }
        }
    }

    /// The open file of shard `s` of domain `d`, opening (and checking) it if needed.
    fn get(&self, domains: &[Domain], d: usize, s: usize) -> Result<Arc<File>> {
        {
            let mut g = self.lock();
            g.tick += 1;
            let tick = g.tick;
            if let Some(o) = g.files.get_mut(&(d, s)) {
                o.tick = tick;
                return Ok(Arc::clone(&o.file));
            }
        }
        let (file, url) = self.open_shard(&domains[d], s)?;
        let remote = url.is_some();
        let file = Arc::new(file);
        let mut gone = Vec::new();
        let mut g = self.lock();
        g.tick += 1;
        g.opens += 1;
        let tick = g.tick;
        let file = match g.files.get(&(d, s)) {
            // Another thread opened it meanwhile: keep that one (and drop our acquisition).
            Some(o) => {
                if let Some(u) = url {
                    gone.push(Open {
                        file,
                        tick,
                        url: Some(u),
                    });
                }
                Arc::clone(&o.file)
            }
            None => {
                g.files.insert(
                    (d, s),
                    Open {
                        file: Arc::clone(&file),
                        tick,
                        url,
                    },
                );
                file
            }
        };
        if remote {
            // Keep only the most recent remote shards of this domain open.
            let mut mine: Vec<((usize, usize), u64)> = g
                .files
                .iter()
                .filter(|(k, o)| k.0 == d && o.url.is_some())
                .map(|(k, o)| (*k, o.tick))
                .collect();
            mine.sort_by_key(|e| std::cmp::Reverse(e.1));
            for (k, _) in mine.into_iter().skip(REMOTE_OPEN_PER_DOMAIN) {
                gone.extend(g.files.remove(&k));
            }
        }
        while g.files.len() > self.cap {
            // O(cap) scan; evictions happen at most once per shard switch.
            let Some(oldest) = g.files.iter().min_by_key(|(_, v)| v.tick).map(|(k, _)| *k) else {
                break;
            };
            gone.extend(g.files.remove(&oldest));
        }
        drop(g);
        self.release_all(gone);
        Ok(file)
    }
}

impl Drop for FilePool {
    fn drop(&mut self) {
        let gone: Vec<Open> = self.lock().files.drain().map(|(_, o)| o).collect();
        self.release_all(gone);
    }
}

/// One raw sample: key and members (extension, range in `data`).
#[derive(Debug, Clone)]
pub struct RawSample {
    pub key: String,
    pub fields: Vec<(String, usize, usize)>,
    pub data: Vec<u8>,
}

/// How tokens are stored in the packing field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFormat {
    Npy,
    U16,
    U32,
    Text,
}

impl TokenFormat {
    /// `npy`, `u16`, `u32` or `txt` (a field's last extension).
    pub fn parse(name: &str) -> Result<TokenFormat> {
        match name {
            "npy" => Ok(TokenFormat::Npy),
            "u16" => Ok(TokenFormat::U16),
            "u32" => Ok(TokenFormat::U32),
            "txt" => Ok(TokenFormat::Text),
            other => Err(Error::invalid(format!(
                "token format must be npy, u16, u32 or txt, got {other:?}"
            ))),
        }
    }
}

/// A user tokenizer for `.txt` fields.
pub trait Tokenize: Send + Sync {
    /// Token ids of one document.
    fn encode(&self, text: &[u8]) -> std::result::Result<Vec<u64>, String>;
}

/// LM packing parameters.
#[derive(Clone)]
pub struct PackSpec {
    pub seq_len: usize,
    pub eos: u32,
    pub field: String,
    pub format: TokenFormat,
    pub vocab_size: Option<u64>,
    pub tokenizer: Option<Arc<dyn Tokenize>>,
    /// Hand out int64 (true) or int32 (false) tokens.
    pub int64: bool,
}

impl std::fmt::Debug for PackSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackSpec")
            .field("seq_len", &self.seq_len)
            .field("eos", &self.eos)
            .field("field", &self.field)
            .field("format", &self.format)
            .field("vocab_size", &self.vocab_size)
            .finish_non_exhaustive()
    }
}

/// What a stream yields.
#[derive(Debug)]
pub enum Item {
    Raw(RawSample),
    /// `seq_len + 1` tokens and the key of the document the sequence starts in.
    Tokens(Vec<u32>, String),
}

/// Position of a stream: items produced, and (pack mode) the next token (document, offset).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    pub items: u64,
    pub doc: u64,
    pub tok: u64,
}

/// An item plus its size in bytes and the stream position after it.
#[derive(Debug)]
pub struct Produced {
    pub item: Item,
    pub bytes: usize,
    pub after: Cursor,
}

/// Where a rank's stream starts: empty (`share` `None`, `epoch_base` 0) unless the loader was
/// resumed elastically.
#[derive(Debug, Clone, Default)]
pub struct Phase {
    /// Domain sample numbers this rank draws first, in order (its share of the old ranks'
    /// unfinished epochs).
    pub share: Option<Arc<Vec<u64>>>,
    /// The epoch the stream enters after its share.
    pub epoch_base: u64,
}

/// The per-(domain, rank) stream state; see the module docs.
pub struct Stream {
    domains: Arc<Vec<Domain>>,
    d: usize,
    seed: u64,
    rank: u64,
    world: u64,
    /// Samples in this rank's subset per epoch.
    per_epoch: u64,
    pack: Option<PackSpec>,
    cursor: Cursor,
    epoch_cache: Option<(u64, Vec<u32>, Vec<u64>)>,
    within_cache: Option<(u64, usize, Vec<u32>)>,
    files: Arc<FilePool>,
    doc: Option<(Vec<u32>, String)>,
    phase: Phase,
    /// Samples of a remote shard read by one ranged read and not yet handed out:
    /// (shard, sample) -> the bytes of its span (see [`span`]).
    ranged: HashMap<(usize, usize), Vec<u8>>,
}

/// `[lo, hi)`: the bytes of sample `j` of `idx` a reader takes, from its first member's tar
/// header on (every member is checked against its hash).
fn span(idx: &ShardIndex, j: usize) -> (u64, u64) {
    let members = idx.sample(j);
    let lo = members
        .iter()
        .map(|m| m.offset)
        .min()
        .unwrap_or(512)
        .saturating_sub(512);
    let hi = members.iter().map(|m| m.offset + m.size).max().unwrap_or(0);
    (lo, hi.max(lo))
}

impl Stream {
    /// A stream positioned at `cursor`, reading through the shared `files`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        domains: Arc<Vec<Domain>>,
        d: usize,
        seed: u64,
        rank: u64,
        world: u64,
        pack: Option<PackSpec>,
        cursor: Cursor,
        files: Arc<FilePool>,
    ) -> Stream {
        let dom = &domains[d];
        let per_epoch = (0..dom.shards.len())
            .map(|s| dom.rank_slice(s, rank, world).1)
            .sum::<u64>();
        Stream {
            domains,
            d,
            seed,
            rank,
            world,
            per_epoch,
            pack,
            cursor,
            epoch_cache: None,
            within_cache: None,
            files,
            doc: None,
            phase: Phase::default(),
            ranged: HashMap::new(),
        }
    }

    /// This stream starting with `phase` (see [`Phase`]).
    pub fn with_phase(mut self, phase: Phase) -> Stream {
        self.phase = phase;
        self.epoch_cache = None;
        self.within_cache = None;
        self
    }

    fn share_len(&self) -> u64 {
        self.phase.share.as_ref().map_or(0, |s| s.len() as u64)
    }

    /// The epoch the `ord`-th item belongs to (the share phase counts as `epoch_base - 1`).
    pub fn epoch_of(&self, ord: u64) -> u64 {
        let sl = self.share_len();
        if ord < sl {
            return self.phase.epoch_base.saturating_sub(1);
        }
        self.phase.epoch_base + (ord - sl) / self.per_epoch.max(1)
    }

    /// The domain sample numbers this stream still owes in the phase (its share, or an epoch)
    /// of the last item it drew, when `pos` items have been drawn (all of the first phase
    /// when none was). A partly packed document counts as drawn.
    pub fn remaining(&mut self, pos: u64) -> Vec<u64> {
        let sl = self.share_len();
        let per = self.per_epoch.max(1);
        let end = match pos.checked_sub(1) {
            None if sl > 0 => sl,
            None => per,
            Some(last) if last < sl => sl,
            Some(last) => sl + ((last - sl) / per + 1) * per,
        };
        let bases = self.domains[self.d].bases.clone();
        (pos..end)
            .map(|k| {
                let (s, j) = self.locate(k);
                bases[s] + j as u64
            })
            .collect()
    }

    /// Samples per epoch in this rank's subset.
    pub fn per_epoch(&self) -> u64 {
        self.per_epoch
    }

    fn ensure_epoch(&mut self, epoch: u64) {
        let dom = &self.domains[self.d];
        let n_shards = dom.shards.len();
        if self.epoch_cache.as_ref().is_none_or(|c| c.0 != epoch) {
            let order = permutation(
                n_shards,
                &[self.seed, tag::SHARD_ORDER, self.d as u64, epoch],
            );
            let mut prefix = Vec::with_capacity(n_shards + 1);
            let mut acc = 0u64;
            prefix.push(0);
            for &s in &order {
                acc += dom.rank_slice(s as usize, self.rank, self.world).1;
                prefix.push(acc);
            }
            self.epoch_cache = Some((epoch, order, prefix));
            self.within_cache = None;
        }
    }

    /// The next `n` distinct shards this stream reads from its `ord`-th sample on, in order
    /// (a pure function of seed, domain, rank and `ord`: what prefetching downloads next).
    pub fn upcoming_shards(&mut self, ord: u64, n: usize) -> Vec<usize> {
        let mut out: Vec<usize> = Vec::with_capacity(n);
        let per = self.per_epoch.max(1);
        let sl = self.share_len();
        let mut ord = ord;
        if let Some(share) = self.phase.share.clone() {
            let bases = &self.domains[self.d].bases;
            for &g in share.iter().skip(ord.min(sl) as usize) {
                let s = bases.partition_point(|&b| b <= g).saturating_sub(1);
                if !out.contains(&s) {
                    out.push(s);
                    if out.len() >= n {
                        return out;
                    }
                }
            }
            ord = ord.saturating_sub(sl);
        }
        // Two epochs hold every shard at least once.
        for _ in 0..2 {
            let (epoch, pos) = (self.phase.epoch_base + ord / per, ord % per);
            self.ensure_epoch(epoch);
            let Some((_, order, prefix)) = self.epoch_cache.as_ref() else {
                break;
            };
            let slot = prefix.partition_point(|&p| p <= pos) - 1;
            for sl in slot..order.len() {
                let s = order[sl] as usize;
                if prefix[sl + 1] > prefix[sl] && !out.contains(&s) {
                    out.push(s);
                    if out.len() >= n {
                        return out;
                    }
                }
            }
            ord = (epoch + 1 - self.phase.epoch_base) * per;
        }
        out
    }

    /// (shard, local sample index) of the `ord`-th sample of this rank's stream.
    pub fn locate(&mut self, ord: u64) -> (usize, usize) {
        let sl = self.share_len();
        if let Some(share) = &self.phase.share {
            if ord < sl {
                let g = share[ord as usize];
                let bases = &self.domains[self.d].bases;
                let s = bases.partition_point(|&b| b <= g).saturating_sub(1);
                return (s, (g - bases[s]) as usize);
            }
        }
        let ord = ord - sl;
        let per = self.per_epoch.max(1);
        let (epoch, pos) = (self.phase.epoch_base + ord / per, ord % per);
        self.ensure_epoch(epoch);
        let dom = &self.domains[self.d];
        let Some((_, order, prefix)) = self.epoch_cache.as_ref() else {
            return (0, 0);
        };
        let slot = prefix.partition_point(|&p| p <= pos) - 1;
        let s = order[slot] as usize;
        let k = pos - prefix[slot];
        let (first, count, stride) = dom.rank_slice(s, self.rank, self.world);
        if self
            .within_cache
            .as_ref()
            .is_none_or(|c| c.0 != epoch || c.1 != s)
        {
            let key = [
                self.seed,
                tag::WITHIN_SHARD,
                self.d as u64,
                epoch,
                s as u64,
                self.rank,
            ];
            self.within_cache = Some((epoch, s, permutation(count as usize, &key)));
        }
        let perm = self.within_cache.as_ref().map_or(&[][..], |c| &c.2[..]);
        let k = perm.get(k as usize).copied().map_or(k, u64::from);
        (s, (first + k * stride) as usize)
    }

    /// The bytes of sample `j` of shard `s` (the `ord`-th of this stream) by a ranged read of
    /// the fetcher, when it serves one: with this stream's next samples of the same shard
    /// (one call, which the fetcher coalesces into few GETs). `None`: read the shard's file.
    fn ranged_sample(&mut self, ord: u64, s: usize, j: usize) -> Result<Option<Vec<u8>>> {
        if let Some(data) = self.ranged.remove(&(s, j)) {
            return Ok(Some(data));
        }
        let Some(fetch) = self.files.fetcher().cloned() else {
            return Ok(None);
        };
        if !self.domains[self.d].remote[s] || self.files.is_open(self.d, s) {
            return Ok(None);
        }
        self.ranged.clear();
        let domains = Arc::clone(&self.domains);
        let dom = &domains[self.d];
        let idx = &dom.shards[s];
        let mut want = vec![j];
        let (lo, hi) = span(idx, j);
        let mut bytes = hi - lo;
        let mut next = ord + 1;
        while want.len() < RANGE_WINDOW_SAMPLES {
            let (s2, j2) = self.locate(next);
            let (lo2, hi2) = span(idx, j2);
            if s2 != s || want.contains(&j2) || bytes + (hi2 - lo2) > self.files.range_window {
                break;
            }
            bytes += hi2 - lo2;
            want.push(j2);
            next += 1;
        }
        let ranges: Vec<(u64, u64)> = want.iter().map(|&k| span(idx, k)).collect();
        let url = dom.paths[s].to_string_lossy().into_owned();
        let Some(got) = fetch.read_ranges(&url, &ranges)? else {
            return Ok(None);
        };
        if got.len() != ranges.len()
            || got
                .iter()
                .zip(&ranges)
                .any(|(b, r)| b.len() as u64 != r.1 - r.0)
        {
            return Err(Error::Remote(format!(
                "{url}: the fetcher's ranged read returned other lengths than asked for"
            )));
        }
        let mut got = got.into_iter();
        let first = got.next();
        for (&k, data) in want.iter().skip(1).zip(got) {
            self.ranged.insert((s, k), data);
        }
        Ok(first)
    }

    fn read_sample(&mut self, ord: u64, s: usize, j: usize) -> Result<RawSample> {
        let domains = Arc::clone(&self.domains);
        let dom = &domains[self.d];
        let path = &dom.paths[s];
        let idx = &dom.shards[s];
        let members = idx.sample(j);
        let (lo, hi) = span(idx, j);
        let ranged = self.ranged_sample(ord, s, j)?;
        let read_file = || -> Result<Vec<u8>> {
            let file = self.files.get(&self.domains, self.d, s)?;
            let mut data = vec![0u8; (hi - lo) as usize];
            file.read_exact_at(&mut data, lo).map_err(|e| Error::Io {
                path: path.clone(),
                source: e,
            })?;
            Ok(data)
        };
        let data = match ranged {
            // Bytes of a ranged read that are not the indexed sample (a corrupt answer, or an
            // object replaced since it was indexed): the shard is read whole instead, through
            // the cache, whose download is checked against the index's content hash and
            // retried like any download (it fails clearly if the object changed).
            Some(data) if idx.verify_sample(j, &data, lo).is_err() => {
                let whole = read_file()?;
                self.ranged.retain(|k, _| k.0 != s);
                whole
            }
            Some(data) => data,
            None => read_file()?,
        };
        idx.verify_sample(j, &data, lo).map_err(|m| Error::Shard {
            path: path.clone(),
            message: format!(
                "{m}; the shard changed after it was indexed (or the index is not its own): \
                 rebuild the loader"
            ),
        })?;
        let fields = members
            .iter()
            .map(|m| {
                (
                    idx.exts[m.ext as usize].clone(),
                    (m.offset - lo) as usize,
                    m.size as usize,
                )
            })
            .collect();
        Ok(RawSample {
            key: idx.keys[j].clone(),
            fields,
            data,
        })
    }

    fn next_raw(&mut self) -> Result<RawSample> {
        let (s, j) = self.locate(self.cursor.doc);
        let sample = self.read_sample(self.cursor.doc, s, j)?;
        self.cursor.doc += 1;
        Ok(sample)
    }

    /// Produce the next item and advance.
    pub fn produce(&mut self) -> Result<Produced> {
        let item = match self.pack.clone() {
            None => {
                let sample = self.next_raw()?;
                self.cursor.items += 1;
                Item::Raw(sample)
            }
            Some(spec) => {
                let (seq, key) = self.next_sequence(&spec)?;
                self.cursor.items += 1;
                Item::Tokens(seq, key)
            }
        };
        let bytes = match &item {
            Item::Raw(s) => s.data.len() + s.key.len() + 64,
            Item::Tokens(t, _) => t.len() * 4 + 64,
        };
        Ok(Produced {
            item,
            bytes,
            after: self.cursor,
        })
    }

    fn load_doc(&mut self, spec: &PackSpec) -> Result<()> {
        let sample = self.next_raw()?;
        let dom_name = self.domains[self.d].name.clone();
        let ctx = |msg: String| {
            Error::invalid(format!(
                "domain {dom_name:?}, sample {:?}: {msg}",
                sample.key
            ))
        };
        let Some(&(_, start, len)) = sample.fields.iter().find(|f| f.0 == spec.field) else {
            let have: Vec<&str> = sample.fields.iter().map(|f| f.0.as_str()).collect();
            return Err(ctx(format!("no field {:?} (has {have:?})", spec.field)));
        };
        let bytes = &sample.data[start..start + len];
        let mut toks: Vec<u32> = match spec.format {
            TokenFormat::U16 => decode_le(bytes, 2).map_err(ctx)?,
            TokenFormat::U32 => decode_le(bytes, 4).map_err(ctx)?,
            TokenFormat::Npy => decode_npy(bytes).map_err(ctx)?,
            TokenFormat::Text => {
                let Some(tok) = &spec.tokenizer else {
                    return Err(ctx("a .txt field needs a tokenizer".into()));
                };
                let ids = tok
                    .encode(bytes)
                    .map_err(|e| ctx(format!("tokenizer failed: {e}")))?;
                ids.into_iter()
                    .map(|t| u32::try_from(t).map_err(|_| ctx(format!("token id {t} too large"))))
                    .collect::<Result<Vec<u32>>>()?
            }
        };
        toks.push(spec.eos);
        if let Some(v) = spec.vocab_size {
            if let Some(bad) = toks.iter().find(|&&t| u64::from(t) >= v) {
                return Err(ctx(format!("token id {bad} >= vocab_size {v}")));
            }
        }
        if !spec.int64 {
            if let Some(bad) = toks.iter().find(|&&t| t > i32::MAX as u32) {
                return Err(ctx(format!(
                    "token id {bad} does not fit int32; use dtype int64"
                )));
            }
        }
        self.doc = Some((toks, sample.key));
        Ok(())
    }

    fn next_sequence(&mut self, spec: &PackSpec) -> Result<(Vec<u32>, String)> {
        if self.doc.is_none() && self.cursor.doc > 0 {
            // Resuming: re-read the current document and restore the token offset.
            let tok = self.cursor.tok;
            self.cursor.doc -= 1;
            self.load_doc(spec)?;
            self.cursor.tok = tok;
        }
        let want = spec.seq_len + 1;
        let mut out = Vec::with_capacity(want);
        let mut key = None;
        while out.len() < want {
            let tok = self.cursor.tok as usize;
            if self.doc.as_ref().is_none_or(|(toks, _)| tok >= toks.len()) {
                self.load_doc(spec)?;
                self.cursor.tok = 0;
            }
            let Some((toks, k)) = &self.doc else { break };
            if key.is_none() {
                key = Some(k.clone());
            }
            let from = self.cursor.tok as usize;
            let take = (want - out.len()).min(toks.len() - from);
            out.extend_from_slice(&toks[from..from + take]);
            self.cursor.tok = (from + take) as u64;
        }
        Ok((out, key.unwrap_or_default()))
    }

    /// The pack cursor as (next document, token offset), normalised.
    pub fn cursor(&self) -> Cursor {
        self.cursor
    }
}

/// Decode little-endian unsigned integers of `width` bytes.
fn decode_le(bytes: &[u8], width: usize) -> std::result::Result<Vec<u32>, String> {
    if bytes.len() % width != 0 {
        return Err(format!(
            "{} bytes is not a multiple of {width}",
            bytes.len()
        ));
    }
    Ok(match width {
        2 => bytes
            .chunks_exact(2)
            .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        _ => bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    })
}

/// Decode a 1-D `.npy` array of uint16/uint32 (little-endian or native).
fn decode_npy(bytes: &[u8]) -> std::result::Result<Vec<u32>, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy array".into());
    }
    let (hlen, start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = bytes
        .get(start..start + hlen)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or("truncated .npy header")?;
    let compact: String = header.chars().filter(|c| !c.is_whitespace()).collect();
    let width = if compact.contains("'descr':'<u2'") || compact.contains("'descr':'=u2'") {
        2
    } else if compact.contains("'descr':'<u4'") || compact.contains("'descr':'=u4'") {
        4
    } else {
        return Err(format!(
            ".npy dtype must be uint16 or uint32 (little-endian); header {header}"
        ));
    };
    if compact.contains("'fortran_order':True") {
        return Err(".npy in Fortran order is not supported".into());
    }
    let shape_1d = compact.contains("'shape':(") && {
        let s = compact.split("'shape':(").nth(1).unwrap_or("");
        let inner = s.split(')').next().unwrap_or("");
        inner.split(',').filter(|p| !p.is_empty()).count() == 1
    };
    if !shape_1d {
        return Err(format!(".npy token arrays must be 1-D; header {header}"));
    }
    decode_le(&bytes[start + hlen..], width)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_decoding() {
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        let h = "{'descr': '<u2', 'fortran_order': False, 'shape': (3,), }";
        let mut header = h.to_string();
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        b.extend_from_slice(&(header.len() as u16).to_le_bytes());
        b.extend_from_slice(header.as_bytes());
        for t in [1u16, 2, 65535] {
            b.extend_from_slice(&t.to_le_bytes());
        }
        assert_eq!(decode_npy(&b), Ok(vec![1, 2, 65535]));
        assert!(decode_npy(b"junk").is_err());
    }

    #[test]
    fn rank_slices_partition_the_domain() {
        let mk = |n: usize| ShardIndex {
            file_size: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            inode: 0,
            dev: 0,
            content_hash: 0,
            header_hash: 0,
            bytes_read: 0,
            exts: vec![],
            keys: vec![String::new(); n],
            starts: vec![0; n + 1],
            members: vec![],
        };
        let dom = Domain::new("x".into(), vec![], vec![mk(5), mk(3), mk(7)]);
        let Ok(dom) = dom else { panic!("domain") };
        for world in [1u64, 2, 3, 4, 16] {
            let mut seen = vec![0; 15];
            for r in 0..world {
                for s in 0..3 {
                    let (first, count, stride) = dom.rank_slice(s, r, world);
                    for k in 0..count {
                        seen[(dom.bases[s] + first + k * stride) as usize] += 1;
                    }
                }
            }
            if world <= 15 {
                assert!(seen.iter().all(|&c| c == 1), "{world}: {seen:?}");
            } else {
                assert_eq!(seen.iter().sum::<u32>(), world as u32);
            }
        }
    }
}
