//! Replays the fuzz regression corpus (`tests/fuzz_corpus/`, written by
//! `cargo run --release -p ado-core --example fuzz_shard -- 1000000 7 --save-corpus ...`): every
//! input must index without a panic, to the outcome class recorded in `expected.tsv`, and a
//! successful index must be consistent and survive the sidecar round trip. The same inputs are
//! replayed from Python through `ado.data.index_shard` (`tests/hardening/test_fuzz_corpus.py`).

use std::panic::catch_unwind;
use std::path::Path;

use ado_core::data::shard::{build_index, index_bytes, outcome_class, ShardIndex};

#[test]
fn corpus_replays_to_recorded_outcomes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus");
    let expected = std::fs::read_to_string(dir.join("expected.tsv")).expect("expected.tsv");
    let mut n = 0;
    for line in expected.lines() {
        let (name, want) = line.split_once('\t').expect("name<TAB>class");
        let data = std::fs::read(dir.join(name)).expect("corpus file");
        let res = catch_unwind(|| index_bytes(&data)).expect("index_bytes panicked");
        assert_eq!(outcome_class(&res), want, "{name}");
        if let Ok(idx) = &res {
            idx.validate().expect("consistent index");
            assert_eq!(ShardIndex::decode(&idx.encode()).as_ref(), Some(idx));
        }
        // The file path walk gives the same outcome as the in-memory one.
        let from_file = build_index(&dir.join(name));
        assert_eq!(
            from_file.is_ok(),
            res.is_ok(),
            "{name}: {:?}",
            from_file.err()
        );
        n += 1;
    }
    assert!(n >= 15, "corpus has {n} inputs");
}

#[test]
fn corrupt_sidecars_are_rejected_not_trusted() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus");
    let data = std::fs::read(dir.join("018.tar")).expect("corpus file");
    let idx = index_bytes(&data).expect("a valid shard");
    let enc = idx.encode();
    // A member that ends past the end of the file (a corrupt size, or an overflowing one).
    let mut bad = idx.clone();
    bad.members[0].size = u64::MAX - 1;
    assert!(ShardIndex::decode(&bad.encode()).is_none());
    bad.members[0].size = idx.file_size;
    assert!(ShardIndex::decode(&bad.encode()).is_none());
    // Every truncation of a valid sidecar is rejected.
    for cut in 0..enc.len() {
        assert!(ShardIndex::decode(&enc[..cut]).is_none(), "cut {cut}");
    }
}
