"""Bad inputs and what the user sees: one function per row of ``docs/bad-inputs.md``.

Each case builds its bad input under a work folder and calls the public API *without* catching
anything. ``test_bad_inputs.py`` runs every case in a fresh interpreter::

    python tests/hardening/bad_inputs.py CASE WORKDIR

and checks the exit status and the last line of stderr: a case that must fail exits with status 1
and a traceback ending in the expected ``ado.errors`` exception (never a signal, an abort or a
``pyo3_runtime.PanicException``); a case that is accepted exits 0 and prints its outcome.
"""

from __future__ import annotations

import io
import math
import os
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = ["CASES", "Case", "write_tar"]


@dataclass(frozen=True)
class Case:
    """A bad input: how to run it, and what must come out.

    Attributes:
        run: Builds the input under the work folder and calls the API.
        error: Expected exception class name (``None``: the input is accepted).
        match: Substring of the exception message (or of stdout when accepted).
    """

    run: Callable[[Path], None]
    error: str | None
    match: str


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    """A plain tar with the given (name, data) members, in order."""
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return path


def _good(path: Path, n: int = 4, prefix: str = "s") -> Path:
    members = []
    for i in range(n):
        members += [(f"{prefix}{i}.txt", f"{prefix}{i}".encode()), (f"{prefix}{i}.cls", b"1")]
    return write_tar(path, members)


def _loader(work: Path, domains: dict[str, object], **kw: object) -> object:
    from ado.data import MixtureLoader

    return MixtureLoader(domains, 2, cache_dir=work / "cache", readahead_bytes=0, **kw)  # type: ignore[arg-type]


def _index(path: Path) -> None:
    from ado.data import index_shard

    print(index_shard(path, path.parent / "cache"))


def corrupt_tar_header(work: Path) -> None:
    path = _good(work / "a.tar")
    data = bytearray(path.read_bytes())
    data[512 * 2 + 10] ^= 0x55  # a name byte of the second header: its checksum no longer holds
    path.write_bytes(bytes(data))
    _index(path)


def truncated_tar(work: Path) -> None:
    path = write_tar(work / "a.tar", [("s0.bin", b"x" * 5000), ("s1.bin", b"y" * 5000)])
    path.write_bytes(path.read_bytes()[:3000])
    _index(path)


def zero_length_shard(work: Path) -> None:
    path = work / "a.tar"
    path.write_bytes(b"")
    _index(path)


def missing_shard(work: Path) -> None:
    _loader(work, {"web": str(work / "nope-{000..001}.tar")})


def glob_matches_nothing(work: Path) -> None:
    _loader(work, {"web": str(work / "nope-*.tar")})


def shard_is_a_directory(work: Path) -> None:
    (work / "dir.tar").mkdir()
    _index(work / "dir.tar")


def shard_is_a_fifo(work: Path) -> None:
    # Unreadable for every user, root included (chmod 000 does not stop root): a FIFO is refused
    # before anything opens it, so indexing cannot block on it.
    os.mkfifo(work / "fifo.tar")
    _index(work / "fifo.tar")


def compressed_shard(work: Path) -> None:
    path = _good(work / "a.tar")
    import gzip

    (work / "a.tar.gz").write_bytes(gzip.compress(path.read_bytes()))
    _index(work / "a.tar.gz")


def gzip_renamed_tar(work: Path) -> None:
    import gzip

    data = gzip.compress(_good(work / "a.tar").read_bytes())
    (work / "b.tar").write_bytes(data)
    _index(work / "b.tar")


def duplicate_extension(work: Path) -> None:
    _index(write_tar(work / "a.tar", [("s0.txt", b"a"), ("s0.TXT", b"b")]))


def interleaved_keys(work: Path) -> None:
    # webdataset groups consecutive members only: s1 becomes two samples, as in webdataset.
    path = write_tar(work / "a.tar", [("s1.txt", b"a"), ("s2.txt", b"b"), ("s1.cls", b"c")])
    loader = _loader(work, {"web": str(path)})
    print(f"samples={loader.num_samples}")  # type: ignore[attr-defined]


def empty_domain(work: Path) -> None:
    # A valid tar archive with no member at all.
    path = write_tar(work / "empty.tar", [])
    _loader(work, {"web": str(_good(work / "a.tar")), "empty": str(path)})


def domain_empty_after_filtering(work: Path) -> None:
    # Every member is skipped by the webdataset rules: __meta__ files and names without a dot.
    path = write_tar(work / "meta.tar", [("__index__", b"x"), ("README", b"y"), ("__k__/a.t", b"")])
    _loader(work, {"web": str(_good(work / "a.tar")), "meta": str(path)})


def _load_policy_yaml(work: Path, text: str) -> None:
    """Write ``text`` to a policy file and load it (the YAML cases)."""
    from ado.policy import load_policy_config

    path = work / "p.yaml"
    path.write_text(text)
    load_policy_config(path)


def _stats(**kw: object) -> None:
    from ado.stats import StepStats

    args: dict[str, object] = {"step": 1, "counts": [2, 2], "loss_sums": [4.0, 5.0]}
    args.update(kw)
    StepStats(**args)  # type: ignore[arg-type]


def stats_nan_loss(work: Path) -> None:
    _stats(loss_sums=[math.nan, 1.0])


def stats_inf_loss(work: Path) -> None:
    _stats(loss_sums=[math.inf, 1.0])


def stats_negative_loss(work: Path) -> None:
    _stats(loss_sums=[-1.0, 1.0])


def stats_negative_counts(work: Path) -> None:
    _stats(counts=[-1, 2])


def stats_wrong_length(work: Path) -> None:
    _stats(loss_sums=[1.0, 2.0, 3.0])


def stats_negative_lr(work: Path) -> None:
    _stats(lr=-1e-3)


def lr_law_step_outside_schedule(work: Path) -> None:
    from ado.estimators import fit_lr_laws

    fit_lr_laws([1e-3] * 100, [10, 50, 90, 100], [3.0, 2.5, 2.2, 2.1])


def lr_law_nan_learning_rate(work: Path) -> None:
    from ado.estimators import fit_lr_laws

    lr = [1e-3] * 100
    lr[7] = math.nan
    fit_lr_laws(lr, [10, 50, 90, 99], [3.0, 2.5, 2.2, 2.1])


def ado_lr_law_without_lr(work: Path) -> None:
    from ado.policy import load_policy
    from ado.stats import StepStats

    policy = load_policy("ado-lr", domains=["a", "b"])
    policy.update(StepStats(step=0, counts=[2, 2], loss_sums=[4.0, 5.0]))


def lr_fit_alpha_grid_huge(work: Path) -> None:
    _load_policy_yaml(work, "kind: ado\nlaw: lr\nlr_fit:\n  alpha_grid: 10000000000\n")


def lr_fit_max_iter_huge(work: Path) -> None:
    _load_policy_yaml(work, "kind: ado\nlaw: lr\nlr_fit:\n  max_iter: 1000000000\n")


def _ado_lr_after_step_0(**stats: object) -> None:
    from ado.policy import load_policy
    from ado.stats import StepStats

    policy = load_policy("ado-lr", domains=["a", "b"])
    policy.update(StepStats(step=0, counts=[2, 2], loss_sums=[4.0, 5.0], lr=1e-3))
    policy.update(StepStats(counts=[2, 2], loss_sums=[4.0, 5.0], **stats))  # type: ignore[arg-type]


def ado_lr_law_step_jump_huge(work: Path) -> None:
    _ado_lr_after_step_0(step=10**12, lr=1e-3)


def ado_lr_law_rates_overflow(work: Path) -> None:
    _ado_lr_after_step_0(step=3, lr=1e308)


def lr_schedule_total_huge(work: Path) -> None:
    _load_policy_yaml(
        work, "kind: ado\nlaw: lr\nlr_schedule:\n  peak: 0.001\n  total: 1000000000000\n"
    )


def lr_schedule_peak_inf(work: Path) -> None:
    _load_policy_yaml(work, "kind: ado\nlaw: lr\nlr_schedule:\n  peak: .inf\n  total: 100\n")


def lr_law_rates_overflow(work: Path) -> None:
    from ado.estimators import fit_lr_laws

    fit_lr_laws([1e308] * 100, [10, 50, 90, 99], [3.0, 2.5, 2.2, 2.1])


def policy_wrong_number_of_domains(work: Path) -> None:
    from ado.policy import load_policy
    from ado.stats import StepStats

    policy = load_policy({"kind": "ado"}, domains=["a", "b", "c"])
    policy.update(StepStats(step=1, counts=np.ones(2), loss_sums=np.full(2, 2.0)))


def _set_weights(work: Path, w: list[float]) -> None:
    loader = _loader(work, {"a": str(_good(work / "a.tar")), "b": str(_good(work / "b.tar"))})
    loader.set_weights(w)  # type: ignore[attr-defined]


def loader_weights_nan(work: Path) -> None:
    _set_weights(work, [math.nan, 1.0])


def loader_weights_negative(work: Path) -> None:
    _set_weights(work, [-0.5, 1.0])


def loader_weights_all_zero(work: Path) -> None:
    _set_weights(work, [0.0, 0.0])


def loader_weights_wrong_length(work: Path) -> None:
    _set_weights(work, [0.5, 0.25, 0.25])


def policy_proposes_bad_weights(work: Path) -> None:
    # A policy whose update proposes NaN, negative and all-zero weights, behind the fallback
    # guardrail: each bad proposal is replaced by the weights in force and counted.
    from ado.policy import Policy, PolicyConfig, load_policy, register_policy
    from ado.stats import StepStats

    bad = [[math.nan, 1.0], [-0.5, 1.5], [0.0, 0.0]]

    @register_policy
    class Broken(Policy):
        class Config(PolicyConfig):
            kind: Literal["test_broken"] = "test_broken"

        def _update(self, stats: StepStats) -> Any:
            return np.asarray(bad[stats.step % len(bad)])

    policy = load_policy(
        {"kind": "test_broken", "guardrails": [{"kind": "fallback"}]}, domains=["a", "b"]
    )
    for t in range(3):
        policy.update(StepStats(step=t, counts=np.ones(2), loss_sums=np.ones(2)))
    print(f"weights={policy.weights.tolist()} fallbacks={policy.metrics()}")


def policy_weights_nan(work: Path) -> None:
    from ado.policy import load_policy

    load_policy({"kind": "static", "weights": [math.nan, 1.0]}, domains=["a", "b"])


def policy_weights_all_zero(work: Path) -> None:
    from ado.policy import load_policy

    load_policy({"kind": "static", "weights": [0.0, 0.0]}, domains=["a", "b"])


def policy_prior_negative(work: Path) -> None:
    from ado.policy import load_policy

    load_policy({"kind": "ado"}, domains=["a", "b"], prior=[-1.0, 2.0])


def yaml_unknown_kind(work: Path) -> None:
    _load_policy_yaml(work, "kind: adoo\n")


def yaml_extra_field(work: Path) -> None:
    _load_policy_yaml(work, "kind: temperature\ntemperature: 2.0\ntemprature: 3.0\n")


def manifest_extra_field(work: Path) -> None:
    from ado.data import Manifest

    path = work / "m.yaml"
    path.write_text("domains:\n  web: {shards: [a.tar], wieght: 1.0}\n")
    Manifest.load(path)


def policy_state_other_domains(work: Path) -> None:
    from ado.policy import load_policy

    state = load_policy({"kind": "ado"}, domains=["a", "b"]).state_dict()
    load_policy({"kind": "ado"}, domains=["a", "c"]).load_state_dict(state)


def loader_state_other_manifest(work: Path) -> None:
    a, b = _good(work / "a.tar"), _good(work / "b.tar", n=6, prefix="t")
    state = _loader(work, {"web": str(a)}).state_dict()  # type: ignore[attr-defined]
    _loader(work, {"web": str(b)}).load_state_dict(state)  # type: ignore[attr-defined]


def loader_state_garbage(work: Path) -> None:
    loader = _loader(work, {"web": str(_good(work / "a.tar"))})
    state = loader.state_dict()  # type: ignore[attr-defined]
    state["ordinals"] = "lots"
    loader.load_state_dict(state)  # type: ignore[attr-defined]


def pipe_url(work: Path) -> None:
    _loader(work, {"web": f"pipe:touch {work / 'pwned'} && cat a.tar"})


def remote_unreachable(work: Path) -> None:
    # nothing listens on port 1 of the loopback: every attempt is refused
    _loader(
        work,
        {"web": "http://127.0.0.1:1/shard-{000..009}.tar"},
        remote={"retries": 2, "backoff_s": 0.01},
    )


def remote_unknown_scheme(work: Path) -> None:
    _loader(work, {"web": "ftp://127.0.0.1/shard-000.tar"})


def pipe_path_in_core(work: Path) -> None:
    _index(Path("pipe:cat a.tar"))


def pack_token_outside_vocab(work: Path) -> None:
    from ado.data import PackConfig

    toks = np.array([5, 7, 1234], dtype="<u2").tobytes()
    path = write_tar(work / "a.tar", [("d0.u16", toks), ("d1.u16", toks)])
    pack = PackConfig(seq_len=4, eos_id=0, field="u16", vocab_size=1000)
    loader = _loader(work, {"web": str(path)}, pack=pack)
    next(loader)  # type: ignore[call-overload]


def pack_odd_byte_count(work: Path) -> None:
    from ado.data import PackConfig

    path = write_tar(work / "a.tar", [("d0.u16", b"\x01\x00\x02")])
    loader = _loader(work, {"web": str(path)}, pack=PackConfig(seq_len=4, eos_id=0, field="u16"))
    next(loader)  # type: ignore[call-overload]


def shard_changed_after_indexing(work: Path) -> None:
    path = _good(work / "a.tar")
    loader = _loader(work, {"web": str(path)})
    _good(work / "a.tar", n=5, prefix="x")  # rewritten in place after indexing
    next(loader)  # type: ignore[call-overload]


def shard_truncated_while_open(work: Path) -> None:
    # Shards are read with pread, not mmap: a file cut under an open loader is an I/O error, not a
    # SIGBUS.
    path = write_tar(work / "a.tar", [(f"s{i}.bin", bytes(2000)) for i in range(40)])
    loader = _loader(work, {"web": str(path)})
    next(loader)  # type: ignore[call-overload]
    os.truncate(path, 4096)
    for _ in range(40):
        next(loader)  # type: ignore[call-overload]


def corrupt_sidecar(work: Path) -> None:
    from ado.data import index_shard

    path = _good(work / "a.tar")
    first = index_shard(path, work / "cache")
    side = Path(str(path) + ".adoidx")
    data = bytearray(side.read_bytes())
    data[-10] ^= 0xFF  # the last member's size (before its hash and name flag): far outside
    side.write_bytes(bytes(data))
    again = index_shard(path, work / "cache")
    same = again == {**first, "source": again["source"]}
    print(f"source={again['source']} samples={again['samples']} same={same}")


# -- second round (issue 13): crashes, aborts, hangs -------------------------------------------


def _ado_after(steps: int, **overrides: object) -> Any:
    from ado.policy import load_policy
    from ado.stats import StepStats
    from fuzz_state import SHORT  # the state fuzzer's short schedule (this folder)

    policy = load_policy("ado", domains=["a", "b"], overrides={**SHORT, **overrides})
    for t in range(steps):
        loss = 2.0 + 3.0 * (t + 1.0) ** -0.5
        policy.update(StepStats(step=t, counts=[3, 5], loss_sums=[3 * loss, 5 * loss * 1.1]))
    return policy


def _estimator_state(state: dict[str, Any]) -> dict[str, Any]:
    inner: dict[str, Any] = state["state"]["estimator"]["estimator"]
    return inner


def _legacy_state(policy: Any) -> dict[str, Any]:
    """The policy's state with its estimator in the earlier JSON form (lists), which still loads."""
    import json

    state: dict[str, Any] = policy.state_dict()
    legacy = json.loads(policy.estimator._est._inner.state_json())
    state["state"]["estimator"]["estimator"] = legacy
    return state


def tampered_estimator_raw(work: Path) -> None:
    policy = _ado_after(31)
    state = _legacy_state(policy)
    _estimator_state(state)["series"][0]["raw"] = []
    policy.load_state_dict(state)


def tampered_estimator_points(work: Path) -> None:
    policy = _ado_after(31, max_points=8)
    state = _legacy_state(policy)
    series = _estimator_state(state)["series"][1]
    series["points_n"] = [1.0] * 10**6
    series["points_y"] = [2.0] * 10**6
    policy.load_state_dict(state)


def tampered_estimator_column(work: Path) -> None:
    import numpy as np
    from ado._state import encode_array

    policy = _ado_after(31)
    state = policy.state_dict()
    _estimator_state(state)["raw"] = encode_array(np.ones((2, 3)))  # 10 values per row saved
    policy.load_state_dict(state)


def tampered_estimator_claims_points(work: Path) -> None:
    import numpy as np
    from ado._state import decode_array, encode_array

    policy = _ado_after(31, max_points=8)
    state = policy.state_dict()
    est = _estimator_state(state)
    ints = decode_array(est["ints"], np.uint64, 8, "ints").reshape(4, 2)
    ints[3] = 10**6  # the points per domain: 10^6 each, and a column that would hold them
    est["ints"] = encode_array(ints)
    est["points"] = encode_array(np.zeros(2 * 10**6))
    policy.load_state_dict(state)


def loader_batch_size_huge(work: Path) -> None:
    from ado.data import MixtureLoader

    MixtureLoader({"web": str(_good(work / "a.tar"))}, 2**40, cache_dir=work / "c")


def loader_world_size_huge(work: Path) -> None:
    from ado.data import MixtureLoader

    MixtureLoader({"web": str(_good(work / "a.tar"))}, 2, world_size=2**40, cache_dir=work / "c")


def loader_batch_size_bool(work: Path) -> None:
    from ado.data import MixtureLoader

    MixtureLoader({"web": str(_good(work / "a.tar"))}, True, cache_dir=work / "c")  # type: ignore[arg-type]


def fit_alpha_grid_huge(work: Path) -> None:
    _load_policy_yaml(work, "kind: ado\nfit:\n  alpha_grid: 10000000000000\n")


def yaml_alias_bomb(work: Path) -> None:
    lines = ["kind: ado", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    _load_policy_yaml(work, "\n".join(lines) + "\n")


def yaml_too_large(work: Path) -> None:
    _load_policy_yaml(work, "kind: ado\n" + "# padding\n" * 1_000_000)


def yaml_deep_nesting(work: Path) -> None:
    _load_policy_yaml(work, "kind: ado\nx: " + "[" * 100_000 + "]" * 100_000 + "\n")


def policy_path_dev_zero(work: Path) -> None:
    from ado.policy import load_policy_config

    load_policy_config("/dev/zero")


def manifest_path_dev_zero(work: Path) -> None:
    from ado.data import Manifest

    Manifest.load("/dev/zero")


def brace_expansion_bomb(work: Path) -> None:
    _loader(work, {"web": str(work / "s{0..999999}{0..999999}.tar")})


# -- silent wrong results ----------------------------------------------------------------------


def _edited_state(edit: Callable[[dict[str, Any]], None], steps: int = 31) -> None:
    policy = _ado_after(steps)
    state = policy.state_dict()
    edit(state)
    policy.load_state_dict(state)


def state_weights_nan(work: Path) -> None:
    _edited_state(lambda s: s.update(weights=[math.nan, 1.0]))


def state_weights_unnormalised(work: Path) -> None:
    _edited_state(lambda s: s.update(weights=[0.6, 0.6]))


def state_weights_all_zero(work: Path) -> None:
    _edited_state(lambda s: s.update(weights=[0.0, 0.0]))


def state_pi_bar_negative(work: Path) -> None:
    _edited_state(lambda s: s["state"].update(pi_bar=[-0.5, 1.5]))


def state_averaged_negative(work: Path) -> None:
    _edited_state(lambda s: s["state"].update(averaged=-2))


def state_fit_truncated(work: Path) -> None:
    _edited_state(lambda s: s["state"]["estimator"]["fit"].update(alpha=[0.3]))


def state_step_string(work: Path) -> None:
    _edited_state(lambda s: s.update(step="12"))


def state_none(work: Path) -> None:
    _ado_after(3).load_state_dict(None)


def stats_zero_loss(work: Path) -> None:
    _stats(loss_sums=[0.0, 5.0])


def stats_step_too_large(work: Path) -> None:
    _stats(step=2**64)


def prior_overflow(work: Path) -> None:
    from ado.policy import load_policy
    from ado.stats import StepStats

    policy = load_policy("natural", domains=["a", "b"], prior=[1e308, 1e308])
    policy.update(StepStats(step=0, counts=[1, 1], loss_sums=[2.0, 2.0]))
    print(f"weights={policy.weights.tolist()}")


def yaml_update_interval_bool(work: Path) -> None:
    _load_policy_yaml(work, "kind: ado\nupdate_interval: true\n")


def yaml_alpha_floor_inf(work: Path) -> None:
    _load_policy_yaml(work, "kind: ado\nalpha_floor: .inf\n")


def loader_weights_partial_mapping(work: Path) -> None:
    loader = _loader(work, {"web": str(_good(work / "a.tar")), "code": str(_good(work / "b.tar"))})
    loader.set_weights({"web": 1.0})  # type: ignore[attr-defined]


def loader_weights_none(work: Path) -> None:
    loader = _loader(work, {"web": str(_good(work / "a.tar"))})
    loader.set_weights(None)  # type: ignore[attr-defined]


# -- interop -----------------------------------------------------------------------------------


def member_named_key(work: Path) -> None:
    _index(write_tar(work / "a.tar", [("m.txt", b"x"), ("m.__key__", b"other")]))


def pax_sparse_member(work: Path) -> None:
    import subprocess

    sparse = work / "k1.bin"
    with sparse.open("wb") as f:
        f.seek(1 << 20)
        f.write(b"end")
    path = work / "a.tar"
    subprocess.run(
        ["tar", "--format=pax", "-S", "-cf", str(path), "-C", str(work), "k1.bin"], check=True
    )
    _index(path)


CASES: dict[str, Case] = {
    "corrupt_tar_header": Case(corrupt_tar_header, "ShardError", "header checksum mismatch"),
    "truncated_tar": Case(truncated_tar, "ShardError", "truncated tar"),
    "zero_length_shard": Case(zero_length_shard, "ShardError", "empty file, not a tar archive"),
    "missing_shard": Case(missing_shard, "ShardNotFoundError", "No such file or directory"),
    "glob_matches_nothing": Case(glob_matches_nothing, "ShardError", "no file matches"),
    "shard_is_a_directory": Case(shard_is_a_directory, "ShardError", "not a regular file"),
    "shard_is_a_fifo": Case(shard_is_a_fifo, "ShardError", "not a regular file"),
    "compressed_shard": Case(compressed_shard, "ShardError", "compressed shards cannot be read"),
    "gzip_renamed_tar": Case(gzip_renamed_tar, "ShardError", "gzip-compressed tar"),
    "duplicate_extension": Case(duplicate_extension, "ShardError", "duplicate file name"),
    "interleaved_keys": Case(interleaved_keys, None, "samples=[3]"),
    "empty_domain": Case(empty_domain, "InvalidInputError", 'domain "empty" is empty'),
    "domain_empty_after_filtering": Case(
        domain_empty_after_filtering, "InvalidInputError", 'domain "meta" is empty'
    ),
    "stats_nan_loss": Case(stats_nan_loss, "InvalidInputError", "holds NaN or inf"),
    "stats_inf_loss": Case(stats_inf_loss, "InvalidInputError", "holds NaN or inf"),
    "stats_negative_loss": Case(stats_negative_loss, "InvalidInputError", "loss_sums must be >= 0"),
    "stats_negative_counts": Case(
        stats_negative_counts, "InvalidInputError", "counts must be >= 0"
    ),
    "stats_wrong_length": Case(stats_wrong_length, "InvalidInputError", "has 3 entries"),
    "stats_negative_lr": Case(stats_negative_lr, "InvalidInputError", "StepStats.lr must be"),
    "lr_law_step_outside_schedule": Case(
        lr_law_step_outside_schedule, "InvalidInputError", "steps[3] = 100 is outside the schedule"
    ),
    "lr_law_nan_learning_rate": Case(
        lr_law_nan_learning_rate, "InvalidInputError", "lr[7] = NaN; learning rates must be"
    ),
    "ado_lr_law_without_lr": Case(
        ado_lr_law_without_lr, "InvalidInputError", "learns the schedule from StepStats.lr"
    ),
    "policy_wrong_number_of_domains": Case(
        policy_wrong_number_of_domains, "InvalidInputError", "StepStats has 2 domains"
    ),
    "loader_weights_nan": Case(loader_weights_nan, "InvalidInputError", "weight"),
    "loader_weights_negative": Case(loader_weights_negative, "InvalidInputError", "weight"),
    "loader_weights_all_zero": Case(loader_weights_all_zero, "InvalidInputError", "weight"),
    "loader_weights_wrong_length": Case(loader_weights_wrong_length, "InvalidInputError", "weight"),
    "policy_proposes_bad_weights": Case(
        policy_proposes_bad_weights, None, "weights=[0.5, 0.5] fallbacks="
    ),
    "policy_weights_nan": Case(policy_weights_nan, "ConfigError", "invalid 'static' policy config"),
    "policy_weights_all_zero": Case(policy_weights_all_zero, "ConfigError", "all 0"),
    "policy_prior_negative": Case(policy_prior_negative, "InvalidInputError", "prior must"),
    "yaml_unknown_kind": Case(yaml_unknown_kind, "ConfigError", "unknown policy kind 'adoo'"),
    "yaml_extra_field": Case(yaml_extra_field, "ConfigError", "Extra inputs are not permitted"),
    "manifest_extra_field": Case(manifest_extra_field, "ConfigError", "Extra inputs"),
    "policy_state_other_domains": Case(
        policy_state_other_domains, "StateError", "state is for domains"
    ),
    "loader_state_other_manifest": Case(
        loader_state_other_manifest, "StateError", "different manifest"
    ),
    "loader_state_garbage": Case(loader_state_garbage, "StateError", "malformed loader state"),
    "pipe_url": Case(pipe_url, "ShardError", "pipe: commands and URLs are not supported"),
    "remote_unreachable": Case(
        remote_unreachable, "RetryBudgetError", "stat failed after 2 attempts; last error"
    ),
    "remote_unknown_scheme": Case(
        remote_unknown_scheme, "ShardError", "unsupported URL scheme ftp://"
    ),
    "pipe_path_in_core": Case(pipe_path_in_core, "ShardError", "pipe: and URLs are not supported"),
    "pack_token_outside_vocab": Case(
        pack_token_outside_vocab, "InvalidInputError", "token id 1234 >= vocab_size 1000"
    ),
    "pack_odd_byte_count": Case(pack_odd_byte_count, "InvalidInputError", "not a multiple of 2"),
    "shard_changed_after_indexing": Case(
        shard_changed_after_indexing, "ShardError", "shard changed since it was indexed"
    ),
    "shard_truncated_while_open": Case(
        shard_truncated_while_open, "ShardError", "failed to fill whole buffer"
    ),
    "corrupt_sidecar": Case(corrupt_sidecar, None, "source=built samples=4 same=True"),
    "tampered_estimator_raw": Case(
        tampered_estimator_raw, "StateError", "domain 0: raw holds 0 observations"
    ),
    "tampered_estimator_points": Case(
        tampered_estimator_points, "StateError", "points exceed max_points 8"
    ),
    "loader_batch_size_huge": Case(
        loader_batch_size_huge, "InvalidInputError", "batch_size * world_size must be <="
    ),
    "loader_world_size_huge": Case(
        loader_world_size_huge, "InvalidInputError", "world_size <= 65536"
    ),
    "loader_batch_size_bool": Case(
        loader_batch_size_bool, "InvalidInputError", "batch_size: Input should be a valid integer"
    ),
    "fit_alpha_grid_huge": Case(fit_alpha_grid_huge, "ConfigError", "less than or equal to 1024"),
    "yaml_alias_bomb": Case(yaml_alias_bomb, "ConfigError", "aliases expand to more than"),
    "yaml_too_large": Case(yaml_too_large, "ConfigError", "the limit is 8388608"),
    "yaml_deep_nesting": Case(yaml_deep_nesting, "ConfigError", "nested deeper than 64"),
    "policy_path_dev_zero": Case(policy_path_dev_zero, "ConfigError", "not a regular file"),
    "manifest_path_dev_zero": Case(manifest_path_dev_zero, "ConfigError", "not a regular file"),
    "brace_expansion_bomb": Case(
        brace_expansion_bomb, "ConfigError", "brace expansion gives more than 1048576"
    ),
    "state_weights_nan": Case(state_weights_nan, "StateError", "weights.0: Input should be"),
    "state_weights_unnormalised": Case(state_weights_unnormalised, "StateError", "must sum to 1"),
    "state_weights_all_zero": Case(state_weights_all_zero, "StateError", "must sum to 1"),
    "state_pi_bar_negative": Case(state_pi_bar_negative, "StateError", "pi_bar: Value error"),
    "state_averaged_negative": Case(
        state_averaged_negative, "StateError", "averaged: Input should be greater than"
    ),
    "state_fit_truncated": Case(
        state_fit_truncated, "StateError", "fit.alpha: Value error, has 1 entries"
    ),
    "state_step_string": Case(state_step_string, "StateError", "step: Input should be"),
    "state_none": Case(state_none, "StateError", "policy state must be a mapping"),
    "stats_zero_loss": Case(stats_zero_loss, "InvalidInputError", "exactly 0"),
    "stats_step_too_large": Case(stats_step_too_large, "InvalidInputError", "2**63 - 1"),
    "prior_overflow": Case(prior_overflow, None, "weights=[0.5, 0.5]"),
    "yaml_update_interval_bool": Case(yaml_update_interval_bool, "ConfigError", "update_interval"),
    "yaml_alpha_floor_inf": Case(yaml_alpha_floor_inf, "ConfigError", "finite number"),
    "loader_weights_partial_mapping": Case(
        loader_weights_partial_mapping, "InvalidInputError", "must name every domain"
    ),
    "loader_weights_none": Case(loader_weights_none, "InvalidInputError", "got None"),
    "member_named_key": Case(
        member_named_key, "ShardError", 'duplicate file name in tar file (extension "__key__")'
    ),
    "pax_sparse_member": Case(pax_sparse_member, "ShardError", "PAX sparse members"),
    "lr_fit_alpha_grid_huge": Case(
        lr_fit_alpha_grid_huge, "ConfigError", "less than or equal to 1024"
    ),
    "lr_fit_max_iter_huge": Case(
        lr_fit_max_iter_huge, "ConfigError", "less than or equal to 100000"
    ),
    "ado_lr_law_step_jump_huge": Case(
        ado_lr_law_step_jump_huge, "InvalidInputError", "steps must be < 16777216"
    ),
    "ado_lr_law_rates_overflow": Case(
        ado_lr_law_rates_overflow, "InvalidInputError", "overflow a double"
    ),
    "lr_schedule_total_huge": Case(
        lr_schedule_total_huge, "ConfigError", "less than or equal to 16777216"
    ),
    "lr_schedule_peak_inf": Case(lr_schedule_peak_inf, "ConfigError", "finite number"),
    "lr_law_rates_overflow": Case(lr_law_rates_overflow, "InvalidInputError", "overflows"),
    "tampered_estimator_column": Case(
        tampered_estimator_column, "StateError", "estimator state raw holds 48 bytes"
    ),
    "tampered_estimator_claims_points": Case(
        tampered_estimator_claims_points,
        "StateError",
        "domain 0: 1000000 points exceed max_points 8",
    ),
}


if __name__ == "__main__":
    CASES[sys.argv[1]].run(Path(sys.argv[2]))
