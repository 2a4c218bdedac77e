"""Type stubs of the Rust extension module ``ado._core`` (checked by ``mypy.stubtest``)."""

from typing import final

import numpy as np
import numpy.typing as npt

__all__ = [
    "FitSpec",
    "LrFitSpec",
    "MixtureLoaderCore",
    "PowerLawEstimator",
    "__version__",
    "decode_index",
    "default_configs",
    "file_hash",
    "fit_lr_laws",
    "fit_power_laws",
    "gc_phase",
    "index_file",
    "index_shard",
    "lr_areas",
    "objective",
    "predict_lr_laws",
    "shard_members",
]

__version__: str

_F64 = npt.NDArray[np.float64]
_I64 = npt.NDArray[np.int64]
_FitArrays = tuple[_F64, _F64, _F64, _F64, _I64, _I64]

@final
class FitSpec:
    def __new__(cls, config_json: str) -> FitSpec: ...

def default_configs() -> tuple[str, str, str]: ...
def fit_power_laws(n: _F64, losses: _F64, spec: FitSpec) -> _FitArrays: ...
def objective(n: _F64, losses: _F64, eps: _F64, beta: _F64, alpha: _F64, spec: FitSpec) -> _F64: ...

# --- the learning-rate-aware law ------------------------------------------------------------

_LrFitArrays = tuple[_F64, _F64, _F64, _F64, _F64, _I64, _I64]

@final
class LrFitSpec:
    def __new__(cls, config_json: str) -> LrFitSpec: ...

def fit_lr_laws(lr: _F64, steps: _I64, losses: _F64, spec: LrFitSpec) -> _LrFitArrays: ...
def lr_areas(lr: _F64, spec: LrFitSpec) -> tuple[_F64, _F64]: ...
def predict_lr_laws(lr: _F64, steps: _I64, params: _F64, spec: LrFitSpec) -> _F64: ...

@final
class PowerLawEstimator:
    def __new__(cls, num_domains: int, config_json: str) -> PowerLawEstimator: ...
    @property
    def num_domains(self) -> int: ...
    @property
    def last_step(self) -> int | None: ...
    def update(self, step: int, losses: _F64, n: _F64, fill: float | None = None) -> None: ...
    def points(self, d: int) -> tuple[_F64, _F64]: ...
    def num_points(self) -> _I64: ...
    def fit(self, spec: FitSpec) -> _FitArrays: ...
    def copy(self) -> PowerLawEstimator: ...
    def state_json(self) -> str: ...
    def load_state_json(self, state: str) -> None: ...

# --- ado.data: WebDataset shards and the mixture loader -------------------------------------

def index_shard(path: str, cache_dir: str | None = None) -> dict[str, object]: ...
def index_file(path: str) -> bytes: ...
def decode_index(data: bytes, name: str) -> dict[str, object]: ...
def file_hash(path: str) -> tuple[int, str]: ...
def gc_phase(phase: str, info: object) -> None:
    """The ``gc.callbacks`` entry registered at import: tells the loader core a collection runs."""
def shard_members(
    path: str, cache_dir: str | None = None
) -> list[tuple[str, list[tuple[str, int, int]]]]: ...

_PackArgs = tuple[int, int, str, str, int | None, object | None, bool]

@final
class MixtureLoaderCore:
    def __new__(
        cls,
        domains: list[tuple[str, list[str]]],
        *,
        batch_size: int,
        seed: int,
        rank: int,
        world_size: int,
        mode: str,
        weights: list[float] | None,
        readahead_bytes: int,
        threads: int,
        cache_dir: str | None,
        index_threads: int,
        pack: _PackArgs | None,
        max_open_files: int,
        remote: dict[str, bytes] | None = None,
        fetcher: object | None = None,
    ) -> MixtureLoaderCore: ...
    @property
    def num_samples(self) -> list[int]: ...
    @property
    def fingerprint(self) -> str: ...
    @property
    def rejected_sidecars(self) -> list[str]: ...
    @property
    def step(self) -> int: ...
    @property
    def weights(self) -> list[float]: ...
    def upcoming_shards(self, depth: list[int]) -> list[list[int]]: ...
    def shutdown(self) -> None: ...
    def epochs(self) -> list[int]: ...
    def file_stats(self) -> tuple[int, int]: ...
    def set_weights(self, weights: list[float]) -> None: ...
    def next_batch(
        self,
    ) -> tuple[
        int,
        _I64,
        list[str],
        list[dict[str, bytes | str]] | None,
        npt.NDArray[np.int32] | npt.NDArray[np.int64] | None,
    ]: ...
    def state_json(self) -> str: ...
    def load_state_json(self, state: str) -> None: ...
