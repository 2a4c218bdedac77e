"""Atomic checkpoint files.

:func:`atomic_save` writes ``torch.save`` output to a temporary file in the target's folder, fsyncs
it, renames it into place and fsyncs the folder, so a crash (even SIGKILL or a power cut after the
call returns) leaves either the old file or the complete new one, never a torn file. By default it
refuses to replace an existing file (the rename is a hard link, which fails if the name exists).

:func:`save_checkpoint` / :func:`latest_checkpoint` keep numbered checkpoints ``step_00000120.pt``
in a folder and prune old ones only after the new one is durable.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import IO, Any, cast

import torch

from ado._io import RecordingWriter, atomic_write, remove_stale_temps

__all__ = ["atomic_save", "latest_checkpoint", "load_checkpoint", "save_checkpoint"]

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^step_(\d{8,})\.pt$")


def atomic_save(obj: Any, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """``torch.save(obj)`` to ``path`` atomically and durably.

    Args:
        obj: anything ``torch.save`` accepts.
        path: the destination file; its folder is created if needed.
        overwrite: replace an existing file (atomically). If False, an existing file is an error
            and is left untouched.

    Returns:
        The destination path.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        OSError: the disk is full (``ENOSPC``) or another write error; the message names ``path``.
            The file at ``path`` (if any) is untouched and no temporary file is left.
    """
    path = Path(path)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    if not overwrite and path.exists():
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")

    def write(out: RecordingWriter) -> None:
        # torch.save reports a full disk as an opaque RuntimeError; the RecordingWriter keeps the
        # real OSError, and atomic_write raises it with the path.
        torch.save(obj, cast(IO[bytes], out))

    return atomic_write(path, write, overwrite=overwrite)


def save_checkpoint(
    folder: str | os.PathLike[str], step: int, state: dict[str, Any], *, keep: int = 2
) -> Path:
    """Write ``state`` as ``folder/step_<step:08d>.pt`` (atomic) and prune older checkpoints.

    Args:
        folder: checkpoint folder.
        step: the number of completed optimizer steps the state describes.
        state: the checkpoint, e.g. ``{"model": ..., "optimizer": ...,
            "data": mixer.state_dict()}``.
        keep: how many of the newest checkpoints to keep (>= 1); older ones are deleted only after
            the new one is durable.

    Raises:
        FileExistsError: a checkpoint for ``step`` already exists.
        ValueError: ``keep < 1`` or ``step < 0``.
    """
    if keep < 1 or step < 0:
        raise ValueError(f"need keep >= 1 and step >= 0, got keep={keep}, step={step}")
    folder = Path(folder)
    remove_stale_temps(folder, ".step_")  # debris of a killed earlier write
    path = atomic_save(state, folder / f"step_{step:08d}.pt")
    done = sorted(_checkpoints(folder))
    for _, old in done[:-keep]:
        old.unlink()
        logger.debug("pruned %s", old)
    return path


def _checkpoints(folder: Path) -> list[tuple[int, Path]]:
    if not folder.is_dir():
        return []
    out = []
    for p in folder.iterdir():
        m = _NAME.match(p.name)
        if m:
            out.append((int(m.group(1)), p))
    return out


def latest_checkpoint(folder: str | os.PathLike[str]) -> Path | None:
    """The newest ``step_*.pt`` in ``folder``, or None. Temporary files that a killed write left
    are deleted."""
    remove_stale_temps(folder, ".step_")
    found = sorted(_checkpoints(Path(folder)))
    return found[-1][1] if found else None


def load_checkpoint(
    path: str | os.PathLike[str], map_location: Any = "cpu", *, weights_only: bool = True
) -> dict[str, Any]:
    """``torch.load`` a checkpoint written by :func:`save_checkpoint`.

    ``weights_only=True`` (the default) loads tensors and plain Python containers only, which is
    all that model, optimizer and :class:`~ado.torch.DataMixer` states hold.
    """
    state: dict[str, Any] = torch.load(path, map_location=map_location, weights_only=weights_only)
    return state
