//! End-to-end tests of the loader core on tar shards written with the `tar` crate.

use std::path::{Path, PathBuf};

use ado_core::data::loader::{Loader, LoaderConfig, Tokens};
use ado_core::data::sampler::Mode;
use ado_core::data::shard::{build_index, load_or_build, IndexSource};
use ado_core::data::stream::{PackSpec, TokenFormat};

fn tmp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ado-core-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A shard of `n` samples `{prefix}{i}` with members `.txt` (key) and `.u16` (i+1 tokens).
fn write_shard(path: &Path, prefix: &str, n: usize) {
    let file = std::fs::File::create(path).expect("create shard");
    let mut b = tar::Builder::new(file);
    for i in 0..n {
        let key = format!("{prefix}{i:04}");
        let toks: Vec<u8> = (0..=i as u16).flat_map(|t| (t + 1).to_le_bytes()).collect();
        for (ext, data) in [("txt", key.as_bytes().to_vec()), ("u16", toks)] {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o444);
            h.set_cksum();
            b.append_data(&mut h, format!("{key}.{ext}"), data.as_slice())
                .expect("append");
        }
    }
    b.finish().expect("finish");
}

fn write_domains(dir: &Path) {
    for (name, shards, n) in [("a", 3, 20), ("b", 2, 9)] {
        for s in 0..shards {
            write_shard(
                &dir.join(format!("{name}-{s}.tar")),
                &format!("{name}{s}-"),
                n,
            );
        }
    }
}

/// The loader over the two domains of `write_domains`, as `Loader::open` builds it.
fn open(dir: &Path, cfg: LoaderConfig, weights: Option<Vec<f64>>) -> Loader {
    let domains = [("a", 3), ("b", 2)]
        .iter()
        .map(|&(name, shards)| {
            let paths = (0..shards)
                .map(|s| dir.join(format!("{name}-{s}.tar")))
                .collect();
            (name.to_string(), paths)
        })
        .collect();
    Loader::open(cfg, domains, weights, None, 2).expect("loader")
}

fn cfg(readahead: usize, pack: Option<PackSpec>) -> LoaderConfig {
    LoaderConfig {
        batch_size: 5,
        seed: 11,
        rank: 0,
        world_size: 1,
        mode: Mode::Iid,
        readahead_bytes: readahead,
        threads: 2,
        max_open_files: 256,
        pack,
    }
}

fn run(loader: &mut Loader, steps: usize, from: usize) -> Vec<(Vec<String>, Vec<u32>)> {
    (from..from + steps)
        .map(|t| {
            let w = if t % 3 == 0 {
                vec![1.0, 0.0]
            } else {
                vec![0.3, 0.7]
            };
            loader.set_weights(w).expect("weights");
            let b = loader.next_batch().expect("batch");
            (b.keys, b.domains)
        })
        .collect()
}

#[test]
fn deterministic_across_readahead_and_exact_resume() {
    let dir = tmp_dir("resume");
    write_domains(&dir);
    let mut a = open(&dir, cfg(0, None), None);
    let mut b = open(&dir, cfg(1 << 20, None), None);
    assert_eq!(a.num_samples(), vec![60, 18]);
    assert_eq!(a.fingerprint(), b.fingerprint());
    let full = run(&mut a, 30, 0);
    assert_eq!(full, run(&mut b, 30, 0));
    // Staleness 0: a one-hot weight is honoured by the very next batch.
    assert!(full[0].1.iter().all(|&d| d == 0));

    let mut c = open(&dir, cfg(1 << 20, None), None);
    let head = run(&mut c, 12, 0);
    let state = c.state();
    let json = serde_json::to_string(&state).expect("json");
    let mut d = open(&dir, cfg(0, None), None);
    d.load_state(&serde_json::from_str(&json).expect("parse"))
        .expect("load");
    let tail = run(&mut d, 18, 12);
    assert_eq!([head, tail].concat(), full);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn packing_covers_the_stream() {
    let dir = tmp_dir("pack");
    write_domains(&dir);
    let spec = PackSpec {
        seq_len: 7,
        eos: 0,
        field: "u16".into(),
        format: TokenFormat::U16,
        vocab_size: Some(100),
        tokenizer: None,
        int64: true,
    };
    let mut l = open(&dir, cfg(1 << 16, Some(spec)), Some(vec![1.0, 0.0]));
    let mut stream = Vec::new();
    for _ in 0..10 {
        let b = l.next_batch().expect("batch");
        let Tokens::I64(t) = b.tokens else {
            panic!("int64 expected")
        };
        assert_eq!(t.len(), 5 * 8);
        stream.extend(t);
    }
    // Every document is 1..=i+1 followed by EOS: split at EOS and check each piece's shape.
    let pieces: Vec<&[i64]> = stream.split(|&t| t == 0).collect();
    for p in &pieces[1..pieces.len() - 1] {
        assert!(
            p.iter().enumerate().all(|(j, &t)| t == j as i64 + 1),
            "{p:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sidecar_cache_round_trip_and_truncation() {
    let dir = tmp_dir("cache");
    let p = dir.join("x.tar");
    write_shard(&p, "x", 5);
    let (idx, src) = load_or_build(&p, None).expect("index");
    assert_eq!((idx.len(), src), (5, IndexSource::Built));
    let (again, src) = load_or_build(&p, None).expect("index");
    assert_eq!((again, src), (idx, IndexSource::Cache));
    let bytes = std::fs::read(&p).expect("read");
    let cut = dir.join("cut.tar");
    std::fs::write(&cut, &bytes[..1500]).expect("write");
    let err = build_index(&cut).expect_err("truncated").to_string();
    assert!(
        err.contains("truncated") || err.contains("corrupt"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_sidecar_with_the_files_identity_that_leaves_samples_out_is_rebuilt() {
    let dir = tmp_dir("forged");
    let p = dir.join("x.tar");
    write_shard(&p, "x", 20);
    let (idx, _) = load_or_build(&p, None).expect("index");
    let mut forged = idx.clone();
    forged.keys.truncate(2);
    forged.starts.truncate(3);
    forged.members.truncate(forged.starts[2] as usize);
    assert_eq!(forged.file_stat(), idx.file_stat());
    let side = dir.join("x.tar.adoidx");
    std::fs::write(&side, forged.encode()).expect("forge");
    // writing the sidecar does not change the shard's identity
    let (again, src) = load_or_build(&p, None).expect("index");
    assert_eq!((again.len(), src), (20, IndexSource::Rejected));
    assert_eq!(again, idx);
    let (third, src) = load_or_build(&p, None).expect("index");
    assert_eq!((third, src), (idx, IndexSource::Cache));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn open_files_are_capped_without_changing_batches() {
    let dir = tmp_dir("fdcap");
    write_domains(&dir);
    let mut wide = open(&dir, cfg(1 << 20, None), None);
    let mut tight_cfg = cfg(1 << 20, None);
    tight_cfg.max_open_files = 1;
    let mut tight = open(&dir, tight_cfg, None);
    assert_eq!(run(&mut wide, 40, 0), run(&mut tight, 40, 0));
    let (open_wide, opened_wide) = wide.file_stats();
    let (open_tight, opened_tight) = tight.file_stats();
    // 5 shards in all: the wide loader keeps what it opened; the tight one keeps one file and
    // re-opens shards as the streams move between them.
    assert_eq!(open_wide as u64, opened_wide);
    assert!(open_wide <= 5);
    assert_eq!(open_tight, 1);
    assert!(opened_tight > opened_wide, "{opened_tight} > {opened_wide}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn open_refuses_a_text_field_without_a_tokenizer() {
    let dir = tmp_dir("txt");
    write_domains(&dir);
    let spec = PackSpec {
        seq_len: 7,
        eos: 0,
        field: "txt".into(),
        format: TokenFormat::parse("txt").expect("format"),
        vocab_size: None,
        tokenizer: None,
        int64: true,
    };
    let domains = vec![("a".to_string(), vec![dir.join("a-0.tar")])];
    let err = Loader::open(cfg(0, Some(spec)), domains, None, None, 1).err();
    assert!(err.is_some_and(|e| e.to_string().contains("tokenizer")));
    assert!(TokenFormat::parse("u8").is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn huge_sizes_are_errors_not_allocations() {
    let mut c = cfg(0, None);
    assert!(c.check_sizes(2).is_ok());
    c.batch_size = 1 << 40;
    assert!(c.check_sizes(2).is_err());
    c.batch_size = 5;
    c.world_size = 1 << 40;
    assert!(c.check_sizes(2).is_err());
    c.world_size = 1 << 12;
    assert!(c.check_sizes(1 << 20).is_err()); // domains * world_size counters
    assert!(c.check_sizes(2).is_ok());
}

#[test]
fn members_are_checked_against_their_hashes() {
    let dir = tmp_dir("verify");
    let p = dir.join("v.tar");
    write_shard(&p, "v", 4);
    let idx = build_index(&p).expect("index");
    let data = std::fs::read(&p).expect("read");
    for i in 0..idx.len() {
        assert_eq!(idx.verify_sample(i, &data, 0), Ok(()));
    }
    let m = idx.sample(2)[1];
    let mut bad = data.clone();
    bad[m.offset as usize] ^= 1;
    let err = idx.verify_sample(2, &bad, 0).expect_err("flipped byte");
    assert!(err.contains("not the indexed member"), "{err}");
    // another shard's index never matches these bytes
    let q = dir.join("w.tar");
    write_shard(&q, "w", 4);
    let other = build_index(&q).expect("index");
    assert!(other.verify_sample(0, &data, 0).is_err());
    assert_ne!(idx.content_hash, other.content_hash);
}

#[test]
fn upcoming_shards_follow_the_stream() {
    let dir = tmp_dir("upcoming");
    write_domains(&dir);
    let mut loader = open(&dir, cfg(0, None), Some(vec![1.0, 1.0]));
    let plan = loader.upcoming_shards(&[3, 2]);
    assert_eq!(plan[0].len(), 3);
    assert_eq!(plan[1].len(), 2);
    // domain a's keys come shard by shard, in the planned order
    let mut seen: Vec<usize> = Vec::new();
    for _ in 0..40 {
        let batch = loader.next_batch().expect("batch");
        for (key, &d) in batch.keys.iter().zip(&batch.domains) {
            if d == 0 {
                let s: usize = key[1..2].parse().expect("shard digit");
                if seen.last() != Some(&s) && !seen.contains(&s) {
                    seen.push(s);
                }
            }
        }
    }
    assert_eq!(seen, plan[0]);
    assert_eq!(
        loader.upcoming_shards(&[0, 0]),
        vec![Vec::<usize>::new(); 2]
    );
}
