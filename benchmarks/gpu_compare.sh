#!/usr/bin/env bash
# The GPU recipe for a short lease: natural, uniform, temperature and ADO (one seed) on one
# H100/H200-class GPU in under 8 minutes including start-up, on shards built beforehand on a CPU
# machine and shipped as one compressed archive.
#
#   # on a CPU machine: build the corpus (or take one built by `ado corpus build`), index it, pack it
#   benchmarks/gpu_compare.sh prepare builtin corpus.tar.gz
#   benchmarks/gpu_compare.sh prepare /path/to/debian-corpus corpus.tar.gz
#   # on the GPU machine: unpack, train the 4 policies at once, write OUT/report.md (+ .json, plots)
#   benchmarks/gpu_compare.sh run corpus.tar.gz runs/gpu
#
# Environment (run): ADO_GPU_PRESET (gpu-short), ADO_GPU_STEPS (the preset's), ADO_GPU_DEVICE
# (the preset's: cuda), ADO_GPU_JOBS (4), ADO_GPU_BUDGET_S (480: training is stopped at this wall
# time from the script's start, and the report is written from the runs finished by then),
# ADO_GPU_POLICIES ("natural uniform temperature ado"); ADO (the `ado` command).
# Run again with the same OUT, an interrupted comparison resumes from its checkpoints.
set -euo pipefail

ADO=${ADO:-ado}
SECONDS=0  # bash counts the seconds since the script started from here
say() { printf '[gpu_compare %4d s] %s\n' "$SECONDS" "$*" >&2; }

case "${1:-}" in
prepare)
    [ $# -eq 3 ] || { echo "usage: $0 prepare CORPUS_DIR|builtin ARCHIVE.tar.gz" >&2; exit 2; }
    src=$2
    archive=$3
    if [ "$src" = builtin ]; then
        src=$(mktemp -d)/builtin
        say "building the built-in corpus in $src"
        "$ADO" corpus build --recipe builtin --out "$src" --no-progress
    fi
    [ -f "$src/manifest.yaml" ] || { echo "$src: no manifest.yaml (not a corpus)" >&2; exit 2; }
    [ ! -e "$archive" ] || { echo "$archive exists; not overwriting it" >&2; exit 2; }
    say "indexing the shards of $src"
    "$ADO" shards index "$src/train/*/*.tar" "$src/val/*/*.tar" >/dev/null
    say "packing $src into $archive"
    tar -czf "$archive" -C "$src" .
    say "done: $(du -h "$archive" | cut -f1) $archive"
    ;;
run)
    [ $# -eq 3 ] || { echo "usage: $0 run ARCHIVE.tar.gz OUT" >&2; exit 2; }
    archive=$2
    out=$3
    budget=${ADO_GPU_BUDGET_S:-480}
    corpus=$(mktemp -d)
    trap 'rm -rf "$corpus"' EXIT
    say "unpacking $archive"
    tar -xzf "$archive" -C "$corpus"
    args=(compare --corpus "$corpus" --preset "${ADO_GPU_PRESET:-gpu-short}" --seeds 0
          --jobs "${ADO_GPU_JOBS:-4}" --out "$out" --no-progress)
    # shellcheck disable=SC2206
    args+=(--policies ${ADO_GPU_POLICIES:-natural uniform temperature ado})
    [ -z "${ADO_GPU_STEPS:-}" ] || args+=(--steps "$ADO_GPU_STEPS")
    [ -z "${ADO_GPU_DEVICE:-}" ] || args+=(--device "$ADO_GPU_DEVICE")
    left=$((budget - SECONDS - 20))  # 20 s kept for the report of an interrupted comparison
    [ "$left" -gt 0 ] || { echo "no time left of ADO_GPU_BUDGET_S=$budget" >&2; exit 1; }
    say "training (stopped after ${left} s): $ADO ${args[*]}"
    status=0
    timeout --signal=INT --kill-after=10 "$left" "$ADO" "${args[@]}" || status=$?
    if [ "$status" -ne 0 ]; then
        say "compare ended with status $status; writing the report from the finished runs"
        "$ADO" "${args[@]}" --report-only || true
    fi
    say "done: $out/report.md"
    exit "$status"
    ;;
*)
    sed -n '2,18p' "$0" >&2
    exit 2
    ;;
esac
