//! Deterministic, structure-aware fuzzer of the tar header walk, sample grouping and sidecar
//! decoding (`ado_core::data::shard`).
//!
//! No nightly toolchain or libFuzzer is needed: seeds are valid WebDataset tars built with the `tar`
//! crate (USTAR, GNU and PAX long names, metadata members, directories, links, interleaved keys,
//! repeated extensions, empty members); each execution applies 1-8 mutations drawn from a
//! SplitMix64 stream (bit flips, interesting bytes, header-field rewrites with a re-computed
//! checksum, octal and base-256 sizes, truncation, extension, block duplication, splicing), then
//! indexes the result with [`index_bytes`] and checks:
//!
//! * no panic (caught and reported with the input saved), no execution slower than 1 s;
//! * peak heap growth during one execution ≤ 1 MiB + 64 × input length (a counting allocator);
//! * on success, [`ShardIndex::validate`] holds and the sidecar encoding round-trips;
//! * a mutated sidecar encoding either decodes to a valid index or is rejected.
//!
//! ```text
//! cargo run --release -p ado-core --example fuzz_shard -- [EXECUTIONS] [SEED] [--save-corpus DIR]
//! ```
//!
//! With `--save-corpus`, the smallest input (≤ 8 KiB) of each outcome class (ok with a given
//! shape, or an error message with its numbers stripped) is written to `DIR`, with
//! `DIR/expected.tsv` listing the outcome, for the regression test `tests/fuzz_corpus.rs`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ado_core::data::shard::{index_bytes, outcome_class, ShardIndex};

/// Counts live heap bytes and the peak since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded to the system allocator with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// SplitMix64: the whole run is a pure function of the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn append(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8], kind: tar::EntryType) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o444);
    h.set_mtime(0);
    // `append_data` writes GNU long-name records for names over 100 bytes.
    let _ = b.append_data(&mut h, name, data);
}

fn append_pax(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
    let _ = b.append_pax_extensions([("path", name.as_bytes())]);
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o444);
    let _ = h.set_path("placeholder.bin");
    h.set_cksum();
    let _ = b.append(&h, data);
}

/// Valid (or deliberately odd) WebDataset shards.
fn seeds() -> Vec<Vec<u8>> {
    use tar::EntryType as E;
    let mut out = Vec::new();
    let mut build = |f: &dyn Fn(&mut tar::Builder<Vec<u8>>)| {
        let mut b = tar::Builder::new(Vec::new());
        f(&mut b);
        out.push(b.into_inner().unwrap_or_default());
    };
    build(&|b| {
        for i in 0..3 {
            append(b, &format!("s{i}.cls"), b"7", E::Regular);
            append(b, &format!("s{i}.json"), b"{}", E::Regular);
            append(b, &format!("s{i}.txt"), &[b'x'; 700], E::Regular);
        }
    });
    build(&|b| {
        append(b, "__meta__", b"m", E::Regular);
        append(b, "__dir__/x.txt", b"m", E::Regular);
        append(b, "d.v1/img.001.JPG", b"jpg", E::Regular);
        append(b, "d.v1/img.001.seg.png", b"png", E::Regular);
        append(b, "noext", b"", E::Regular);
        append(b, "dir", b"", E::Directory);
        append(b, "k.sym", b"", E::Symlink);
        append(b, "k.empty", b"", E::Regular);
    });
    build(&|b| {
        let long = "l".repeat(150);
        append(b, &format!("{long}/a.txt"), b"long", E::Regular);
        append(b, &format!("{long}/a.cls"), b"1", E::Regular);
        append_pax(b, &format!("{}/p.txt", "p".repeat(120)), b"pax");
    });
    build(&|b| {
        // interleaved keys and a repeated extension
        append(b, "a.txt", b"1", E::Regular);
        append(b, "b.txt", b"2", E::Regular);
        append(b, "a.cls", b"3", E::Regular);
        append(b, "c.txt", b"4", E::Regular);
        append(b, "c.TXT", b"5", E::Regular);
    });
    build(&|b| {
        append(b, "tok.u16", &[1, 0, 2, 0, 3, 0], E::Regular);
        append(
            b,
            "tok.npy",
            &[0x93, b'N', b'U', b'M', b'P', b'Y'],
            E::Continuous,
        );
        append(b, "z.bin", &[0u8; 1500], E::Regular);
    });
    out
}

const INTERESTING: [u8; 10] = [0, 0xff, 0x80, b'0', b'7', b'8', b' ', b'.', b'/', b'\n'];

fn octal(n: u64, width: usize) -> Vec<u8> {
    let mut s = format!("{n:o}").into_bytes();
    s.truncate(width - 1);
    while s.len() < width - 1 {
        s.insert(0, b'0');
    }
    s.push(0);
    s
}

fn set_cksum(data: &mut [u8], block: usize) {
    let h = &mut data[block..block + 512];
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    h[148..156].copy_from_slice(&octal(sum, 8));
}

fn mutate(rng: &mut Rng, data: &mut Vec<u8>, pool: &[Vec<u8>]) {
    let rounds = 1 + rng.below(8);
    for _ in 0..rounds {
        let blocks = data.len() / 512;
        let block = rng.below(blocks.max(1)) * 512;
        match rng.below(12) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            // header fields, checksum fixed so the walk goes on past the header
            2..=5 if blocks > 0 => {
                let (off, width) = [
                    (124, 12),
                    (124, 12),
                    (156, 1),
                    (0, 100),
                    (345, 155),
                    (257, 8),
                ][rng.below(6)];
                let field = &mut data[block + off..block + off + width];
                match rng.below(6) {
                    0 => {
                        let v =
                            [0, 1, 511, 512, 513, 1 << 20, 1 << 33, u64::MAX >> 2][rng.below(8)];
                        let o = octal(v, width.max(2));
                        let n = o.len().min(field.len());
                        field[..n].copy_from_slice(&o[..n]);
                    }
                    1 => {
                        // base-256 size
                        field[0] = 0x80;
                        for b in field.iter_mut().skip(1) {
                            *b = (rng.next() & 0xff) as u8;
                        }
                    }
                    2 => {
                        let t = [
                            b'0', b'1', b'2', b'5', b'7', b'K', b'L', b'S', b'x', b'g', 0,
                        ];
                        field[0] = t[rng.below(t.len())];
                    }
                    3 => {
                        let i = rng.below(field.len());
                        field[i] = INTERESTING[rng.below(INTERESTING.len())];
                    }
                    4 => field.fill(0),
                    _ => {
                        let i = rng.below(field.len());
                        field[i] = b'0' + (rng.next() % 10) as u8;
                    }
                }
                if rng.below(8) != 0 {
                    set_cksum(data, block);
                }
            }
            6 => {
                let n = rng.below(data.len() + 1);
                data.truncate(n);
            }
            7 => {
                let n = rng.below(1024);
                data.extend(std::iter::repeat_n(0u8, n));
            }
            8 if blocks > 0 => {
                let copy = data[block..block + 512].to_vec();
                let at = rng.below(blocks + 1) * 512;
                data.splice(at..at, copy);
            }
            9 if blocks > 1 => {
                data.drain(block..block + 512);
            }
            10 => {
                let other = &pool[rng.below(pool.len())];
                let ob = other.len() / 512;
                if ob > 0 {
                    let from = rng.below(ob) * 512;
                    let n = (1 + rng.below(4)) * 512;
                    let chunk = &other[from..(from + n).min(other.len())];
                    let at = rng.below(blocks + 1) * 512;
                    data.splice(at..at, chunk.iter().copied());
                }
            }
            _ if data.len() > 4 => {
                let i = rng.below(data.len() - 4);
                let v = (rng.next() as u32).to_le_bytes();
                data[i..i + 4].copy_from_slice(&v);
            }
            _ => {}
        }
    }
    if data.len() > 1 << 16 {
        data.truncate(1 << 16);
    }
}

struct Stats {
    execs: u64,
    ok: u64,
    failures: Vec<String>,
    classes: BTreeMap<String, u64>,
    sidecar_execs: u64,
    max_ratio_bytes: usize,
    slowest: Duration,
}

#[allow(clippy::print_stdout)]
fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let save = args.iter().position(|a| a == "--save-corpus").map(|i| {
        let dir = args.get(i + 1).cloned().unwrap_or_default();
        args.drain(i..(i + 2).min(args.len()));
        PathBuf::from(dir)
    });
    let execs: u64 = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let seed: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(7);
    let pool = seeds();
    let mut rng = Rng(seed);
    let mut st = Stats {
        execs: 0,
        ok: 0,
        failures: Vec::new(),
        classes: BTreeMap::new(),
        sidecar_execs: 0,
        max_ratio_bytes: 0,
        slowest: Duration::ZERO,
    };
    // The smallest input seen of each outcome class.
    let mut corpus: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    // A panic is caught and reported below; keep the default hook quiet.
    std::panic::set_hook(Box::new(|_| {}));
    let start = Instant::now();
    let mut input = Vec::new();
    while st.execs < execs {
        // Start from a fresh seed most of the time; otherwise keep mutating the last input.
        if rng.below(4) != 0 || input.is_empty() {
            input = pool[rng.below(pool.len())].clone();
        }
        mutate(&mut rng, &mut input, &pool);
        let base = LIVE.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let t0 = Instant::now();
        let res = catch_unwind(AssertUnwindSafe(|| index_bytes(&input)));
        let dt = t0.elapsed();
        let grew = PEAK.load(Ordering::Relaxed).saturating_sub(base);
        st.execs += 1;
        st.slowest = st.slowest.max(dt);
        st.max_ratio_bytes = st.max_ratio_bytes.max(grew);
        let fail = |st: &mut Stats, what: String, input: &[u8]| {
            let name = format!("failure-{}.tar", st.failures.len());
            let _ = std::fs::write(&name, input);
            st.failures.push(format!("{what} (input saved to {name})"));
        };
        if grew > (1 << 20) + 64 * input.len() {
            fail(
                &mut st,
                format!("allocated {grew} B for a {} B input", input.len()),
                &input,
            );
        }
        if dt > Duration::from_secs(1) {
            fail(&mut st, format!("slow execution: {dt:?}"), &input);
        }
        let class = match res {
            Err(_) => {
                fail(&mut st, "panic".into(), &input);
                continue;
            }
            Ok(r) => outcome_class(&r),
        };
        if let Ok(idx) = index_bytes(&input) {
            st.ok += 1;
            if let Err(e) = idx.validate() {
                fail(&mut st, format!("invalid index: {e}"), &input);
            }
            let enc = idx.encode();
            if ShardIndex::decode(&enc).as_ref() != Some(&idx) {
                fail(&mut st, "sidecar round trip".into(), &input);
            }
            // Mutated sidecar: decode must reject it or yield a valid index.
            let mut bad = enc;
            mutate(&mut rng, &mut bad, &pool);
            let dec = catch_unwind(AssertUnwindSafe(|| ShardIndex::decode(&bad)));
            st.sidecar_execs += 1;
            match dec {
                Err(_) => fail(&mut st, "panic in sidecar decode".into(), &bad),
                Ok(Some(d)) if d.validate().is_err() => {
                    fail(&mut st, "decoded an invalid sidecar".into(), &bad)
                }
                Ok(_) => {}
            }
        }
        *st.classes.entry(class.clone()).or_insert(0) += 1;
        if corpus.get(&class).is_none_or(|c| input.len() < c.len()) {
            corpus.insert(class, input.clone());
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "fuzz_shard: {} executions of the tar walk ({} ok), {} sidecar decodes, seed {seed}, \
         {secs:.1} s ({:.0} exec/s)",
        st.execs,
        st.ok,
        st.sidecar_execs,
        st.execs as f64 / secs
    );
    println!(
        "  slowest execution {:?}; peak heap growth in one execution {} B; {} outcome classes",
        st.slowest,
        st.max_ratio_bytes,
        st.classes.len()
    );
    for (c, n) in &st.classes {
        println!("  {n:>9}  {c}");
    }
    if let Some(dir) = save {
        let _ = std::fs::create_dir_all(&dir);
        let mut tsv = String::new();
        for (i, (class, data)) in corpus.iter().filter(|c| c.1.len() <= 8192).enumerate() {
            let name = format!("{i:03}.tar");
            let _ = std::fs::write(dir.join(&name), data);
            tsv.push_str(&format!("{name}\t{class}\n"));
        }
        let _ = std::fs::write(dir.join("expected.tsv"), tsv);
        println!(
            "  saved {} corpus inputs to {}",
            corpus.len(),
            dir.display()
        );
    }
    if st.failures.is_empty() {
        println!("  no failure");
    } else {
        for f in &st.failures {
            println!("  FAILURE: {f}");
        }
        std::process::exit(1);
    }
}
