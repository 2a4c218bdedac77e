//! End-to-end tests of the loader core on tar shards written with the `tar` crate.

use std::path::{Path, PathBuf};

use ado_core::data::loader::{Loader, LoaderConfig, Tokens};
use ado_core::data::sampler::Mode;
use ado_core::data::shard::{build_index, load_or_build, IndexSource};
use ado_core::data::stream::{Domain, PackSpec, TokenFormat};
use ado_core::data::{fingerprint, index_shards};

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

fn domains(dir: &Path) -> (Vec<Domain>, String) {
    let mut out = Vec::new();
    for (name, shards) in [("a", 3), ("b", 2)] {
        let paths: Vec<PathBuf> = (0..shards)
            .map(|s| dir.join(format!("{name}-{s}.tar")))
            .collect();
        let idx = index_shards(&paths, None, 2).expect("index");
        let idx = idx.into_iter().map(|(i, _)| i).collect();
        out.push(Domain::new(name.into(), paths, idx).expect("domain"));
    }
    let fp = fingerprint(
        &out.iter()
            .map(|d| (d.name.clone(), d.shards.iter().collect()))
            .collect::<Vec<_>>(),
    );
    (out, fp)
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
    let (doms, fp) = domains(&dir);
    let (doms2, _) = domains(&dir);
    let (doms3, _) = domains(&dir);
    let mut a = Loader::new(cfg(0, None), doms, None, fp.clone()).expect("loader");
    let mut b = Loader::new(cfg(1 << 20, None), doms2, None, fp.clone()).expect("loader");
    let full = run(&mut a, 30, 0);
    assert_eq!(full, run(&mut b, 30, 0));
    // Staleness 0: a one-hot weight is honoured by the very next batch.
    assert!(full[0].1.iter().all(|&d| d == 0));

    let mut c = Loader::new(cfg(1 << 20, None), doms3, None, fp).expect("loader");
    let head = run(&mut c, 12, 0);
    let state = c.state();
    let json = serde_json::to_string(&state).expect("json");
    let (doms4, fp4) = domains(&dir);
    let mut d = Loader::new(cfg(0, None), doms4, None, fp4).expect("loader");
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
    let (doms, fp) = domains(&dir);
    let spec = PackSpec {
        seq_len: 7,
        eos: 0,
        field: "u16".into(),
        format: TokenFormat::U16,
        vocab_size: Some(100),
        tokenizer: None,
        int64: true,
    };
    let mut l =
        Loader::new(cfg(1 << 16, Some(spec)), doms, Some(vec![1.0, 0.0]), fp).expect("loader");
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
fn open_files_are_capped_without_changing_batches() {
    let dir = tmp_dir("fdcap");
    write_domains(&dir);
    let (doms, fp) = domains(&dir);
    let (doms2, _) = domains(&dir);
    let mut wide = Loader::new(cfg(1 << 20, None), doms, None, fp.clone()).expect("loader");
    let mut tight_cfg = cfg(1 << 20, None);
    tight_cfg.max_open_files = 1;
    let mut tight = Loader::new(tight_cfg, doms2, None, fp).expect("loader");
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
