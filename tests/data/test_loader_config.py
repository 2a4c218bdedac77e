"""One loader configuration: :class:`LoaderConfig` declares every option, its default and its
bounds once; ``MixtureLoader``'s keywords, pickling, the Rust core, ``TrainConfig`` and the
adapters all go through it. ``cache_limit`` has one check with one error class (the loader's and
the node cache's); the Rust constructor takes the config whole and has no default of its own."""

from __future__ import annotations

import inspect
import json
import pickle
import re
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from ado._core import MixtureLoaderCore
from ado.data import LoaderConfig, MixtureLoader, PackConfig, RemoteConfig
from ado.data.cache import ShardCache
from ado.errors import ConfigError, InvalidInputError
from pydantic import ValidationError

sys.path.insert(0, str(Path(__file__).parents[1] / "hardening"))
from bad_inputs import write_tar

PACK = PackConfig(seq_len=16, eos_id=0, field="u16", vocab_size=1000)


def _manifest(corpus: Path) -> dict[str, str]:
    return {
        "web": str(corpus / "web" / "shard-{000..004}.tar"),
        "code": str(corpus / "code" / "shard-{000..002}.tar"),
    }


def _tokens(loader: MixtureLoader, n: int) -> list[np.ndarray]:
    out = []
    for _ in range(n):
        tokens = next(loader).tokens
        assert tokens is not None
        out.append(tokens)
    return out


@pytest.mark.parametrize("limit", [0, -1, True, 1.5])
def test_cache_limit_is_refused_with_one_error_class(tmp_path: Path, limit: object) -> None:
    shard = write_tar(tmp_path / "a.tar", [(f"s{i}.txt", b"x") for i in range(4)])
    with pytest.raises(InvalidInputError, match="cache_limit must be >= 1 byte or None"):
        MixtureLoader({"a": str(shard)}, 2, cache_limit=limit)
    with pytest.raises(InvalidInputError, match="cache_limit must be >= 1 byte or None"):
        LoaderConfig(batch_size=2, cache_limit=limit)
    with pytest.raises(InvalidInputError, match="cache_limit must be >= 1 byte or None"):
        ShardCache(tmp_path / "cache", limit)  # type: ignore[arg-type]  # was ShardError


def test_every_default_is_declared_once_by_the_config() -> None:
    assert LoaderConfig.model_fields["max_open_files"].default == 256
    # the keyword API has no defaults of its own: its options are LoaderConfig's
    params = inspect.signature(MixtureLoader).parameters
    assert not set(params) & (set(LoaderConfig.model_fields) - {"batch_size"})
    # the Rust core reads the config whole and has no second default: an object without
    # max_open_files is refused, whatever else it has
    fields = {k: getattr(LoaderConfig(batch_size=1), k) for k in LoaderConfig.model_fields}
    fields["index_dir"] = "/tmp"
    del fields["max_open_files"]
    with pytest.raises((TypeError, AttributeError), match="max_open_files"):
        MixtureLoaderCore([], SimpleNamespace(**fields), None)  # type: ignore[arg-type]


def test_round_trip_builds_the_same_loader(corpus: Path, tmp_path: Path) -> None:
    config = LoaderConfig(
        batch_size=3, seed=5, mode="deficit", pack=PACK, readahead_bytes=0, max_open_files=4,
        index_threads=1, cache_dir=tmp_path / "cache", remote={"retries": 2},
    )  # fmt: skip
    assert config.cache_dir == str(tmp_path / "cache")
    assert config.remote == RemoteConfig(retries=2)
    assert LoaderConfig(batch_size=3, remote=None).remote == RemoteConfig()  # as before: default
    dumped = config.model_dump()
    assert LoaderConfig(**dumped) == config
    text = config.model_dump_json()
    assert LoaderConfig(**json.loads(text)) == config
    assert LoaderConfig.model_validate_json(text) == config
    a = config.build(_manifest(corpus), weights=[0.3, 0.7])
    b = LoaderConfig(**json.loads(text)).build(_manifest(corpus), weights=[0.3, 0.7])
    # the keyword API builds the same configuration and the same batches
    c = MixtureLoader(_manifest(corpus), weights=[0.3, 0.7], **dumped)
    assert a.config is config
    assert c.config == config
    assert a.fingerprint == b.fingerprint == c.fingerprint
    for x, y, z in zip(_tokens(a, 5), _tokens(b, 5), _tokens(c, 5), strict=True):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x, z)
    assert (a.batch_size, a.rank, a.world_size, a.pack) == (3, 0, 1, PACK)


def test_the_config_is_frozen() -> None:
    config = LoaderConfig(batch_size=2)
    with pytest.raises(ValidationError, match="frozen"):
        config.batch_size = 3  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        PACK.seq_len = 3  # type: ignore[misc]
    assert config.replace(batch_size=3).batch_size == 3
    assert config.batch_size == 2
    with pytest.raises(InvalidInputError, match="batch_size"):
        config.replace(batch_size=0)  # a copy is validated like a new config


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"batch_size": 0}, "batch_size: Input should be greater than or equal to 1, got 0"),
        ({"batch_size": True}, "batch_size: Input should be a valid integer, got True"),
        ({"batch_size": 2.0}, "batch_size: Input should be a valid integer, got 2.0"),
        ({"batch_size": 2**63}, "batch_size: Input should be less than"),
        ({"seed": -1}, "seed: Input should be greater than or equal to 0"),
        ({"rank": 2, "world_size": 2}, "rank must be < world_size, got rank=2, world_size=2"),
        ({"world_size": 0}, "world_size: Input should be greater than or equal to 1"),
        ({"mode": "random"}, "mode: Input should be 'iid' or 'deficit'"),
        ({"readahead_bytes": -1}, "readahead_bytes: Input should be greater than or equal to 0"),
        ({"readahead_threads": "2"}, "readahead_threads: Input should be a valid integer"),
        ({"index_threads": 0}, "index_threads: Input should be greater than or equal to 1"),
        ({"max_open_files": 0}, "max_open_files: Input should be greater than or equal to 1"),
        ({"cache_limit": 0}, "cache_limit: cache_limit must be >= 1 byte or None, got 0"),
        ({"remote": {"retries": 0}}, "remote.retries: Input should be greater than or equal to 1"),
        ({"pack": {"seq_len": 0, "eos_id": 0}}, "pack: invalid pack config: seq_len: Input"),
        ({"pack": {"seq_len": 4, "eos_id": 0, "field": "a.bin"}},
         "pack: invalid pack config: field: pack field 'a.bin' must end in"),
        ({"readahed_bytes": 0}, "readahed_bytes: Extra inputs are not permitted"),
        ({"remote": {"retry": 3}}, "remote.retry: Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_a_bad_option_is_named(corpus: Path, options: dict[str, Any], named: str) -> None:
    full = {"batch_size": 2, **options}
    with pytest.raises(InvalidInputError, match=f"^invalid loader config: {_re(named)}"):
        LoaderConfig(**full)
    batch_size = full.pop("batch_size")
    with pytest.raises(InvalidInputError, match=_re(named)):  # the keyword API: the same
        MixtureLoader(_manifest(corpus), batch_size, **full)


def _re(text: str) -> str:
    return re.escape(text)


def test_a_missing_batch_size_and_mixed_arguments_are_refused(corpus: Path) -> None:
    with pytest.raises(InvalidInputError, match="batch_size: Field required"):
        MixtureLoader(_manifest(corpus))
    with pytest.raises(InvalidInputError, match="not both"):
        MixtureLoader(_manifest(corpus), 2, config=LoaderConfig(batch_size=2))
    with pytest.raises(InvalidInputError, match="not both"):
        MixtureLoader(_manifest(corpus), config=LoaderConfig(batch_size=2), seed=1)
    with pytest.raises(InvalidInputError, match="config must be a LoaderConfig, got dict"):
        MixtureLoader(_manifest(corpus), config={"batch_size": 2})  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="invalid pack config: eos_id: Input should be"):
        PackConfig(seq_len=4, eos_id=-1)


def test_storage_options_are_never_shown_but_kept_by_pickling() -> None:
    secret = {"key": "AKIA-not-shown", "secret": "s3cr3t-not-shown"}
    config = LoaderConfig(batch_size=2, storage_options=secret)
    for text in (repr(config), str(config), config.model_dump_json(), str(config.model_dump())):
        assert "not-shown" not in text
    assert pickle.loads(pickle.dumps(config)).storage_options == secret
    assert config.replace(seed=1).storage_options == secret
    with pytest.raises(InvalidInputError) as err:
        LoaderConfig(batch_size=2, storage_options=["s3cr3t-not-shown"])
    assert "storage_options" in str(err.value)
    assert "not-shown" not in str(err.value)


def test_for_rank_fills_in_the_launchers_rank_and_refuses_another() -> None:
    config = LoaderConfig(batch_size=2, seed=4)
    assert config.for_rank(1, 2) == LoaderConfig(batch_size=2, seed=4, rank=1, world_size=2)
    assert config.for_rank(1, 2).for_rank(1, 2).rank == 1
    with pytest.raises(ConfigError, match="for rank 1 of 2 but this process is rank 0 of 4"):
        config.for_rank(1, 2).for_rank(0, 4)


def test_a_pickled_loader_and_a_state_dict_still_resume(corpus: Path, tmp_path: Path) -> None:
    config = LoaderConfig(batch_size=3, seed=2, pack=PACK, index_threads=1)
    ref = config.build(_manifest(corpus))
    _tokens(ref, 4)
    ref.set_weights([0.9, 0.1])
    state = ref.state_dict()
    copy = pickle.loads(pickle.dumps(ref))  # configuration and weights
    assert copy.config == config
    assert copy.weights == ref.weights
    copy.load_state_dict(state)  # and the position
    resumed = config.build(_manifest(corpus))
    resumed.load_state_dict(state)
    for x, y, z in zip(_tokens(ref, 4), _tokens(copy, 4), _tokens(resumed, 4), strict=True):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x, z)


def test_remote_shards_use_the_configs_cache(http: Any, tmp_path: Path) -> None:
    config = LoaderConfig(batch_size=2, pack=PACK, cache_dir=tmp_path / "node", cache_limit=1 << 30,
                          remote={"retries": 2, "prefetch_bytes": 0})  # fmt: skip
    loader = config.build({"web": http.url("web/shard-{000..004}.tar")})
    with loader:
        _tokens(loader, 2)
        assert loader.cache is not None
        assert loader.cache.root == tmp_path / "node"
        assert loader.cache.limit == 1 << 30
