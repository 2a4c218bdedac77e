"""Remote corpora through every entry point: a manifest that lives behind HTTP or in an S3 bucket
(moto's server), with its shards beside it, trains exactly as the same corpus on local disk does
(``train``/``TrainConfig.manifest``, ``benchmarks/train_gpt.py``, ``MixtureDataModule``, the loader
``AdoTrainer`` is given), its natural prior comes from the shards' indexes through the node cache,
and ``ado compare --corpus URL`` finds the corpus's manifests."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ado.data import Manifest, MixtureLoader
from ado.torch import TrainConfig, natural_prior, train
from torch_runs import ROOT, tiny_config

sys.path.insert(0, str(ROOT / "tests" / "data"))
from servers import ShardHTTPServer, s3_env, upload

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    # as in test_integration_lightning (and a machine with Slurm's srun on its PATH)
    pytest.mark.filterwarnings("ignore:.*LeafSpec.*is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:.*does not have many workers:UserWarning"),
    pytest.mark.filterwarnings("ignore:The `srun` command is available"),
]


@pytest.fixture
def served(make_corpus: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The corpus (``manifest.yaml``, ``val.yaml``, ``corpus.json``, shards) on an HTTP server;
    the node cache in ``tmp_path``."""
    manifest = make_corpus()
    root = manifest.parent
    # HTTP cannot list a folder: name the shards with braces
    lines = ["domains:"]
    for dom in ("cycle", "pairs", "noise"):
        n = len(list((root / dom).glob("*.tar")))
        lines.append(f"  {dom}: {dom}/shard-{{000..{n - 1:03d}}}.tar")
    manifest.write_text("\n".join(lines) + "\n")
    (root / "val.yaml").write_text(manifest.read_text())
    (root / "corpus.json").write_text(json.dumps({"name": "tiny", "domains": 3}))
    monkeypatch.setenv("ADO_CACHE_DIR", str(tmp_path / "node"))
    server = ShardHTTPServer(root).start()
    yield manifest, server
    server.stop()


def _run(manifest: Any, **fields: Any) -> Any:
    return train(TrainConfig(**tiny_config(manifest, steps=4, **fields)))


def test_train_from_a_manifest_behind_http_equals_local(served: Any) -> None:
    manifest, http = served
    url = http.url("manifest.yaml")
    local = _run(str(manifest), eval_manifest=str(manifest.parent / "val.yaml"), eval_every=2)
    remote = _run(url, eval_manifest=http.url("val.yaml"), eval_every=2)
    assert remote.train_losses == local.train_losses
    assert remote.weights == local.weights
    assert remote.evals == local.evals
    assert natural_prior(Manifest.load(url)) == natural_prior(Manifest.load(manifest))
    assert http.shard_gets()  # the shards came over HTTP


def test_held_out_sets_read_through_the_training_loaders_cache(
    served: Any, tmp_path: Path
) -> None:
    """The evaluators take the training loader's options (``train()`` passes ``cfg.loader``):
    with its ``cache_dir`` set, the remote held-out shards land in that cache, not the default
    one, and the evaluation reads them from there."""
    from ado.data import LoaderConfig, PackConfig
    from ado.torch import HeldOut

    _, http = served
    mine = tmp_path / "mine"
    pack = PackConfig(seq_len=16, eos_id=0, field="u16")
    held = HeldOut(
        http.url("val.yaml"),
        batch_size=4,
        pack=pack,
        batches=1,
        loader=LoaderConfig(batch_size=1, cache_dir=str(mine), readahead_threads=1),
    )
    try:
        assert [ld.config.cache_dir for ld in held.loaders] == [str(mine)] * len(held.domains)
        assert [ld.config.batch_size for ld in held.loaders] == [4] * len(held.domains)
        for ld in held.loaders:
            next(ld)
    finally:
        held.close()
    assert list(mine.rglob("*.tar"))
    assert not list((tmp_path / "node").rglob("*.tar"))  # ADO_CACHE_DIR, the default


def test_natural_prior_reads_through_the_run_loaders_cache(served: Any, tmp_path: Path) -> None:
    """``build_policy`` (as ``train()`` calls it, with ``cfg.loader``) computes the natural prior
    from the remote shards' indexes through the run's node cache (``cache_dir``), not the
    default one."""
    from ado.data import LoaderConfig
    from ado.torch import build_policy

    manifest, http = served
    mine = tmp_path / "mine"
    loader = LoaderConfig(batch_size=1, cache_dir=str(mine))
    policy = build_policy(Manifest.load(http.url("manifest.yaml")), "natural", loader=loader)
    assert [p for p in mine.rglob("*") if p.is_file()]  # the indexes came through my cache
    assert not (tmp_path / "node" / "remote").exists()  # ADO_CACHE_DIR, the default
    totals = natural_prior(Manifest.load(manifest))
    assert policy.prior.tolist() == pytest.approx([t / sum(totals) for t in totals], rel=1e-12)


def test_train_from_a_manifest_in_s3_equals_local(
    make_corpus: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.server import ThreadedMotoServer

    manifest = make_corpus()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        for key, value in s3_env(endpoint).items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("ADO_CACHE_DIR", str(tmp_path / "node"))
        bucket = f"b-{uuid.uuid4().hex[:12]}"
        upload(endpoint, bucket, manifest.parent)
        url = f"s3://{bucket}/manifest.yaml"
        assert _run(url).train_losses == _run(str(manifest)).train_losses
    finally:
        server.stop()
        import s3fs

        # fsspec caches file systems by their options, not by AWS_ENDPOINT_URL: drop the ones
        # that point at this server, or later tests would reach a stopped endpoint
        s3fs.S3FileSystem.clear_instance_cache()


def _script_losses(
    script: str, manifests: dict[str, str], tmp_path: Path, *extra: str
) -> dict[str, list]:
    """The logged losses of a training script in ``benchmarks/`` run on each manifest."""
    logs = {}
    for name, m in manifests.items():
        log = tmp_path / f"{Path(script).stem}-{name}.jsonl"
        cmd = [
            sys.executable,
            str(ROOT / "benchmarks" / script),
            "--manifest",
            m,
            "--steps",
            "3",
            "--seq-len",
            "16",
            "--vocab-size",
            "64",
            "--batch-size",
            "4",
            "--n-layer",
            "1",
            "--n-embd",
            "32",
            "--threads",
            "1",
            "--jsonl",
            str(log),
            "--policy",
            "natural",
            "--no-progress",
            *extra,
        ]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert res.returncode == 0, res.stderr[-3000:]
        logs[name] = [
            r["loss"] for r in map(json.loads, log.read_text().splitlines()) if "loss" in r
        ]
    return logs


def test_train_hf_script_takes_a_url(served: Any, tmp_path: Path) -> None:
    """``benchmarks/train_hf.py`` (the HF Trainer) on the manifest behind HTTP trains exactly as
    on the local one, and its shards came over HTTP."""
    pytest.importorskip("transformers")
    manifest, http = served
    manifests = {"local": str(manifest), "remote": http.url("manifest.yaml")}
    logs = _script_losses("train_hf.py", manifests, tmp_path, "--log-every", "1")
    assert len(logs["remote"]) == 3
    assert logs["remote"] == logs["local"]
    assert http.shard_gets()


def test_train_gpt_script_and_lightning_datamodule_take_a_url(
    served: Any, tmp_path: Path
) -> None:
    manifest, http = served
    url = http.url("manifest.yaml")
    logs = _script_losses("train_gpt.py", {"local": str(manifest), "remote": url}, tmp_path)
    assert logs["remote"] == logs["local"]
    assert logs["remote"]
    pytest.importorskip("lightning")
    from test_integration_lightning import _fit

    params = []
    for i, m in enumerate((manifest, url)):
        _, data, _, module = _fit(m, tmp_path / f"pl{i}", steps=3, accum=1)
        assert data.mixer is not None
        params.append([t.detach().clone() for t in module.parameters()])
    assert all(bool((a == b).all()) for a, b in zip(*params, strict=True))
    from ado.data import PackConfig

    pack = PackConfig(seq_len=16, eos_id=0, field="u16")
    # AdoTrainer is given a loader: one built from the URL is the same stream
    a = MixtureLoader(url, 4, pack=pack, seed=2)
    b = MixtureLoader(manifest, 4, pack=pack, seed=2)
    rows = [[next(x).tokens.tolist() for _ in range(3)] for x in (a, b)]  # type: ignore[union-attr]
    assert rows[0] == rows[1]


def test_compare_finds_a_corpus_behind_a_url(served: Any) -> None:
    from ado.cli.compare import remote_corpus

    manifest, http = served
    folder = remote_corpus(http.url(""))
    assert json.loads((folder / "corpus.json").read_text())["name"] == "tiny"
    assert not (folder / "ood.yaml").exists()
    for name in ("manifest.yaml", "val.yaml"):
        mirrored = Manifest.load(folder / name)
        sources = mirrored.sources()
        assert all(u.startswith(http.url("")) for us in sources.values() for u in us)
        local = Manifest.load(manifest.parent / name).sources()
        assert [len(v) for v in sources.values()] == [len(v) for v in local.values()]
