"""Adapters for the training stacks people already use; each is a thin layer over
:class:`ado.torch.DataMixer` (loader ↔ policy ↔ loss tracker), with its guarantees: the weights
change only at optimizer-step boundaries and identically on every rank, the losses of every
micro-batch reach the policy (one all-reduce per optimizer step, no host sync per micro-batch),
and a checkpoint holds the whole data side, so a resumed run equals the uninterrupted one.

* :mod:`ado.integrations.hf`: Hugging Face ``transformers.Trainer``
  (``pip install 'ado[hf]'``): :class:`~ado.integrations.hf.AdoTrainer`, or
  :class:`~ado.integrations.hf.AdoTrainerMixin` for a Trainer subclass of your own.
* :mod:`ado.integrations.lightning`: PyTorch Lightning (``pip install 'ado[lightning]'``):
  :class:`~ado.integrations.lightning.MixtureDataModule` and
  :class:`~ado.integrations.lightning.AdoCallback`.

Importing this package imports neither stack (nor does ``import ado`` or ``import ado.torch``);
each submodule imports its own and names the extra to install when it is missing.
"""

from __future__ import annotations

__all__: list[str] = []
