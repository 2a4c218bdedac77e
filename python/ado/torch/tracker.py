"""``DomainLossTracker``: per-domain loss sums and counts accumulated on the device.

Losses stay where they were computed: each :meth:`DomainLossTracker.add` is two ``index_add_`` calls
on a float64 ``[2K]`` buffer (sums in the first half, counts in the second), with no host transfer.
:meth:`DomainLossTracker.step_stats` all-reduces the buffer once over the process group (SUM),
copies the ``2K`` numbers to the host and resets the buffer: one small copy per optimizer step.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ado.errors import InvalidInputError, StateError
from ado.stats import StepStats

__all__ = ["DomainLossTracker"]

logger = logging.getLogger(__name__)


class DomainLossTracker:
    """Accumulate per-domain loss sums and sample counts on the device between optimizer steps.

    Args:
        num_domains: K.
        device: where losses arrive (the model's device).
        group: the process group to reduce over; ``None`` is the default group when
            ``torch.distributed`` is initialised, and no reduction otherwise.

    Example::

        tracker = DomainLossTracker(len(domains), device="cuda")
        for micro_batch in ...:
            per_seq = model_loss_per_sequence(...)   # [B], on the device
            tracker.add(per_seq, domain)             # domain: int64 [B]
        stats = tracker.step_stats(step)             # one all-reduce, one [2K] copy
    """

    def __init__(
        self,
        num_domains: int,
        device: torch.device | str = "cpu",
        group: dist.ProcessGroup | None = None,
    ) -> None:
        if num_domains < 1:
            raise InvalidInputError(f"num_domains must be >= 1, got {num_domains}")
        self.num_domains = int(num_domains)
        self.device = torch.device(device)
        self.group = group
        self._buf = torch.zeros(2 * self.num_domains, dtype=torch.float64, device=self.device)

    def _distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized()

    def add(
        self, loss: torch.Tensor, domain: torch.Tensor, mask: torch.Tensor | None = None
    ) -> None:
        """Add one micro-batch.

        Args:
            loss: per-sequence mean losses ``[B]``, or per-token losses ``[B, T]`` (then each row is
                averaged over its ``mask``-ed tokens, or all tokens without a mask). Detached here.
            domain: int64 ``[B]`` domain index of each row (on any device; moved if needed).
            mask: optional ``[B, T]`` bool/0-1 mask of the tokens that count (per-token losses
                only).
                A row with no counted token contributes nothing.

        Raises:
            InvalidInputError: mismatched shapes or a mask with per-sequence losses. (Domain ids out
            of range are caught by ``index_add_`` itself, on the device, without a sync.)
        """
        loss = loss.detach()
        if loss.dim() == 2:
            if mask is None:
                seq = loss.to(torch.float64).mean(dim=1)
                weight = None
            else:
                if mask.shape != loss.shape:
                    raise InvalidInputError(
                        f"mask shape {tuple(mask.shape)} != loss shape {tuple(loss.shape)}"
                    )
                m = mask.to(device=loss.device, dtype=torch.float64)
                tokens = m.sum(dim=1)
                seq = (loss.to(torch.float64) * m).sum(dim=1) / tokens.clamp(min=1.0)
                weight = (tokens > 0).to(torch.float64)
        elif loss.dim() == 1:
            if mask is not None:
                raise InvalidInputError("mask is only valid with per-token losses [B, T]")
            seq = loss.to(torch.float64)
            weight = None
        else:
            raise InvalidInputError(
                f"loss must be [B] (per sequence) or [B, T] (per token), got {tuple(loss.shape)}"
            )
        if domain.dim() != 1 or domain.shape[0] != seq.shape[0]:
            raise InvalidInputError(
                f"domain must be [B] with B = {seq.shape[0]}, got {tuple(domain.shape)}"
            )
        if domain.dtype.is_floating_point or domain.dtype.is_complex or domain.dtype == torch.bool:
            raise InvalidInputError(
                f"domain must hold integer domain indices, got dtype {domain.dtype} "
                "(float ids would be truncated)"
            )
        if (
            domain.device.type == "cpu"
            and domain.numel()
            and not (int(domain.min()) >= 0 and int(domain.max()) < self.num_domains)
        ):  # (on an accelerator this check would synchronise; index_add_ checks there)
            raise InvalidInputError(
                f"domain indices must be in [0, {self.num_domains}), got "
                f"[{int(domain.min())}, {int(domain.max())}]"
            )
        idx = domain.to(device=self.device, dtype=torch.long, non_blocking=True)
        seq = seq.to(self.device)
        k = self.num_domains
        if weight is None:
            self._buf[:k].index_add_(0, idx, seq)
            self._buf[k:].index_add_(0, idx, torch.ones_like(seq))
        else:
            weight = weight.to(self.device)
            self._buf[:k].index_add_(0, idx, seq * weight)
            self._buf[k:].index_add_(0, idx, weight)

    def reduce(self) -> np.ndarray:
        """All-reduce (SUM) the buffer over the group, copy it to the host and reset it.

        Returns:
            float64 ``[2K]``: per-domain loss sums, then per-domain counts, over all ranks.
        """
        buf = self._buf
        if self._distributed():
            dist.all_reduce(buf, op=dist.ReduceOp.SUM, group=self.group)
        host = buf.cpu().numpy().copy()
        buf.zero_()
        return host

    def step_stats(
        self, step: int, tokens_per_sample: int | None = None, lr: float | None = None
    ) -> StepStats:
        """The :class:`~ado.StepStats` of optimizer step ``step`` (reduced over all ranks); resets.

        Args:
            step: the global optimizer step these losses were trained at.
            tokens_per_sample: if given (packed rows of equal length), ``token_counts`` is
                ``counts * tokens_per_sample``.
            lr: the step's learning rate, if known (``StepStats.lr``).

        Raises:
            InvalidInputError: non-finite losses (a NaN/inf loss in some micro-batch).
        """
        host = self.reduce()
        k = self.num_domains
        counts = host[k:]
        loss_sums = np.where(counts > 0, host[:k], 0.0)
        tokens = None if tokens_per_sample is None else counts * float(tokens_per_sample)
        return StepStats(step=step, counts=counts, loss_sums=loss_sums, token_counts=tokens, lr=lr)

    def state_dict(self) -> dict[str, Any]:
        """The not-yet-reduced sums of this rank (zero right after :meth:`step_stats`)."""
        return {"num_domains": self.num_domains, "buffer": self._buf.cpu().tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output.

        Raises:
            StateError: the state has another number of domains or is malformed.
        """
        try:
            k = int(state["num_domains"])
            values = [float(x) for x in state["buffer"]]
        except (KeyError, TypeError, ValueError) as err:
            raise StateError(f"tracker state is malformed: {err!r}") from None
        if k != self.num_domains or len(values) != 2 * k:
            raise StateError(
                f"tracker state is for {k} domains ({len(values)} values); "
                f"this tracker has {self.num_domains}"
            )
        self._buf.copy_(torch.tensor(values, dtype=torch.float64))
