"""A torch ``IterableDataset`` over a :class:`MixtureLoader` for the fork/spawn tests (a module of
its own so that spawned DataLoader workers can import it)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch.utils.data
from ado.data import MixtureLoader


class LoaderDataset(torch.utils.data.IterableDataset[Any]):
    """Each worker continues ``loader`` from ``state`` for ``steps`` batches (under fork the
    worker has the parent's loader, holds and threads included; under spawn a rebuilt one)."""

    def __init__(self, loader: MixtureLoader, steps: int) -> None:
        self.loader = loader
        self.state = loader.state_dict()
        self.steps = steps

    def __iter__(self) -> Iterator[bytes]:
        self.loader.load_state_dict(self.state)
        for _ in range(self.steps):
            batch = next(self.loader)
            assert batch.tokens is not None
            yield batch.tokens.tobytes()
        self.loader.close()
