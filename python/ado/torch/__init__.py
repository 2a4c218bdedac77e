"""PyTorch integration (optional: needs ``pip install 'ado[torch]'``; ``import ado`` never imports
torch).

* :class:`DomainLossTracker`: per-domain loss sums on the device, one all-reduce per step.
* :class:`DataMixer`: loader ↔ policy ↔ tracker; weights change only at optimizer-step boundaries.
* :func:`atomic_save`, :func:`save_checkpoint`, :func:`latest_checkpoint`: crash-safe checkpoints.
* :class:`GPT`/:class:`GPTConfig` and :func:`train`/:class:`TrainConfig`: a small GPT and its
  training loop over the mixture loader (the training example and ``ado compare`` use them).
"""

from __future__ import annotations

from ado.torch.checkpoint import atomic_save, latest_checkpoint, load_checkpoint, save_checkpoint
from ado.torch.gpt import GPT, GPTConfig
from ado.torch.mixer import DataMixer, lm_tensors, weights_hash
from ado.torch.tracker import DomainLossTracker
from ado.torch.train import (
    HeldOut,
    TrainConfig,
    TrainResult,
    build_policy,
    destroy_process_group,
    evaluate_checkpoint,
    natural_prior,
    train,
)

__all__ = [
    "GPT",
    "DataMixer",
    "DomainLossTracker",
    "GPTConfig",
    "HeldOut",
    "TrainConfig",
    "TrainResult",
    "atomic_save",
    "build_policy",
    "destroy_process_group",
    "evaluate_checkpoint",
    "latest_checkpoint",
    "lm_tensors",
    "load_checkpoint",
    "natural_prior",
    "save_checkpoint",
    "train",
    "weights_hash",
]
