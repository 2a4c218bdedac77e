"""``DataMixer``: wires a :class:`~ado.data.MixtureLoader`, a :class:`~ado.Policy` and a
:class:`~ado.torch.DomainLossTracker` into a training loop.

The contract (tested in ``tests/torch``):

* The weights change only at optimizer-step boundaries. One optimizer step is ``grad_accum``
  micro-batches; all of them are drawn with the weights in force at the start of the step.
  :meth:`DataMixer.next_batch` refuses a ``grad_accum + 1``-th micro-batch and
  :meth:`DataMixer.step` refuses to run before all ``grad_accum`` were drawn, so every rank draws
  the same number.
* :meth:`DataMixer.step` at the end of optimizer step ``t`` all-reduces the losses recorded over all
  micro-batches and ranks (one float64 ``[2K]`` all-reduce), feeds them to the policy as
  ``StepStats(step=t)`` and sets the policy's new weights on the loader: the batches of step
  ``t + 1`` use them (a lag of 0 steps). Every rank runs the same policy on the same reduced
  numbers in float64, so the weights agree on every rank (checked with ``verify_every``).
* :meth:`DataMixer.state_dict` is the whole data side (policy, this rank's loader and tracker); it
  satisfies ``torch.distributed.checkpoint``'s ``Stateful`` protocol and pickles with
  ``torch.save``.

Example::

    mixer = DataMixer(loader, policy, device=device, grad_accum=2)
    for step in range(steps):
        for _ in range(2):
            batch = mixer.next_batch()
            x, y, domain = lm_tensors(batch, device)
            per_seq = model(x, y)
            (per_seq.mean() / 2).backward()
            mixer.record(per_seq, domain)
        optimizer.step(); optimizer.zero_grad()
        mixer.step()
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.distributed as dist
from pydantic import JsonValue, StrictInt

from ado._state import Count, StateModel, parse_state
from ado.data import Batch, MixtureLoader
from ado.errors import InvalidInputError, StateError
from ado.policy import Policy
from ado.stats import StepStats
from ado.torch.tracker import DomainLossTracker

__all__ = ["STATE_FORMAT_VERSION", "DataMixer", "lm_tensors", "weights_hash"]

logger = logging.getLogger(__name__)

#: Version of :meth:`DataMixer.state_dict`'s layout.
STATE_FORMAT_VERSION = 1


def weights_hash(weights: npt.ArrayLike) -> str:
    """SHA-256 (hex, 16 chars) of the float64 bytes of ``weights``: equal iff bitwise equal."""
    arr = np.ascontiguousarray(np.asarray(weights, dtype=np.float64))
    return hashlib.sha256(arr.tobytes()).hexdigest()[:16]


def lm_tensors(
    batch: Batch, device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs ``[B, T]``, targets ``[B, T]`` and domain ids ``[B]`` of a packed batch, on
    ``device``.

    Raises:
        InvalidInputError: the batch is not packed (the loader has no ``pack``).
    """
    if batch.tokens is None:
        raise InvalidInputError("lm_tensors needs a packed batch (MixtureLoader(..., pack=...))")
    tokens = torch.from_numpy(np.asarray(batch.tokens, dtype=np.int64))
    device = torch.device(device)
    pin = device.type == "cuda"
    if pin:
        tokens = tokens.pin_memory()
    tokens = tokens.to(device, non_blocking=pin)
    domain = torch.from_numpy(np.asarray(batch.domain, dtype=np.int64)).to(device)
    return tokens[:, :-1], tokens[:, 1:], domain


class _DataState(StateModel):
    """:meth:`DataMixer.state_dict`'s layout but the ``rank_<r>`` entries (:class:`_RankState`,
    this rank's only)."""

    format_version: StrictInt
    step: Count
    policy: Any  # a JSON string or a mapping: checked by _decode, which names what it got


class _RankState(StateModel):
    """One rank's entry of :meth:`DataMixer.state_dict`."""

    micro: Count
    loader: dict[str, JsonValue]
    tracker: dict[str, JsonValue]


def _decode(value: Any, where: str) -> dict[str, Any]:
    """A state entry: a JSON string (as saved) or an already-decoded mapping.

    Raises:
        StateError: neither (a tensor, a list...), or JSON that is not an object.
    """
    if isinstance(value, Mapping):
        return dict(value)
    if not isinstance(value, str):
        raise StateError(
            f"data state {where} must be a JSON string (as saved) or a mapping, got "
            f"{type(value).__name__}"
        )
    try:
        out = json.loads(value)
    except ValueError as err:
        raise StateError(f"data state {where} is not valid JSON: {err}") from None
    if not isinstance(out, dict):
        raise StateError(f"data state {where} must be a JSON object, got {type(out).__name__}")
    return out


def _rank_number(key: str) -> int:
    """``rank_12`` -> 12 (other keys sort first)."""
    tail = key.removeprefix("rank_")
    return int(tail) if tail.isdigit() else -1


class DataMixer:
    """Loader ↔ policy ↔ tracker for one rank.

    Args:
        loader: this rank's loader (its ``rank``/``world_size`` match the process group).
        policy: the policy; must have the loader's domains, in the same order. Its current weights
            are set on the loader now.
        device: where losses are accumulated (the model's device).
        grad_accum: micro-batches per optimizer step.
        group: process group for the loss all-reduce (``None``: the default group, if any).
        tokens_per_sample: tokens per row for ``StepStats.token_counts`` (packed rows:
            ``seq_len``); ``None`` leaves token counts out.
        verify_every: every this many steps, all-gather a hash of the weights and raise
            :class:`~ado.errors.StateError` if the ranks disagree (0: never; a debug check, it
            costs one small collective).

    Raises:
        InvalidInputError: the policy's and loader's domains differ, or ``grad_accum < 1``.
    """

    def __init__(
        self,
        loader: MixtureLoader,
        policy: Policy,
        *,
        device: torch.device | str = "cpu",
        grad_accum: int = 1,
        group: dist.ProcessGroup | None = None,
        tokens_per_sample: int | None = None,
        verify_every: int = 0,
    ) -> None:
        if list(policy.domains) != list(loader.domains):
            raise InvalidInputError(
                f"policy domains {policy.domains} differ from loader domains {loader.domains}"
            )
        if grad_accum < 1 or verify_every < 0:
            raise InvalidInputError(
                f"need grad_accum >= 1 and verify_every >= 0, got {grad_accum}, {verify_every}"
            )
        self.loader = loader
        self.policy = policy
        self.device = torch.device(device)
        self.grad_accum = int(grad_accum)
        self.group = group
        self.tokens_per_sample = tokens_per_sample
        self.verify_every = int(verify_every)
        self.tracker = DomainLossTracker(len(loader.domains), device=self.device, group=group)
        self._step = policy.step + 1
        self._micro = 0
        #: Seconds spent inside ``policy.update`` (wall clock, this process).
        self.policy_seconds = 0.0
        #: Seconds the last ``policy.update`` took.
        self.last_policy_seconds = 0.0
        self.last_stats: StepStats | None = None
        loader.set_weights(policy.weights)

    @property
    def steps_done(self) -> int:
        """Completed optimizer steps (:meth:`step` calls) = the index of the step in progress."""
        return self._step

    @property
    def weights(self) -> npt.NDArray[np.float64]:
        """The weights the current step's batches are drawn with."""
        return self.policy.weights

    @property
    def domains(self) -> list[str]:
        """Domain names (``batch.domain`` indexes them)."""
        return self.loader.domains

    def next_batch(self) -> Batch:
        """This rank's next micro-batch of the current optimizer step.

        Raises:
            StateError: ``grad_accum`` micro-batches were already drawn in this step.
        """
        if self._micro >= self.grad_accum:
            raise StateError(
                f"step {self._step} already drew its {self.grad_accum} micro-batch(es); "
                "call DataMixer.step() after the optimizer step"
            )
        self._micro += 1
        return next(self.loader)

    def record(
        self,
        loss: torch.Tensor,
        domain: torch.Tensor | npt.ArrayLike,
        mask: torch.Tensor | None = None,
    ) -> None:
        """Record a micro-batch's per-sequence losses ``[B]`` (or per-token ``[B, T]``, with an
        optional ``[B, T]`` mask of the tokens that count) and its domain ids ``[B]``;
        accumulated on the device, no host transfer (see :meth:`DomainLossTracker.add`)."""
        if not isinstance(domain, torch.Tensor):
            domain = torch.from_numpy(np.asarray(domain, dtype=np.int64))
        self.tracker.add(loss, domain, mask)

    def step(self, lr: float | None = None) -> StepStats:
        """End the optimizer step: reduce the losses, update the policy, set the next weights.

        Args:
            lr: the learning rate this step was trained with (``StepStats.lr``; ADO's
                ``law: lr`` learns the schedule from it).

        Returns:
            The reduced statistics of the step that just ended.

        Raises:
            StateError: fewer than ``grad_accum`` micro-batches were drawn in this step, or (with
            ``verify_every``) the ranks' weights differ.
        """
        if self._micro != self.grad_accum:
            raise StateError(
                f"step {self._step} drew {self._micro} of its {self.grad_accum} micro-batch(es)"
            )
        stats = self.tracker.step_stats(self._step, self.tokens_per_sample, lr)
        t0 = time.perf_counter()
        self.policy.update(stats)
        self.last_policy_seconds = time.perf_counter() - t0
        self.policy_seconds += self.last_policy_seconds
        self.loader.set_weights(self.policy.weights)
        self.last_stats = stats
        self._step += 1
        self._micro = 0
        if self.verify_every and self._step % self.verify_every == 0:
            self.verify()
        return stats

    def verify(self) -> None:
        """All-gather the weights' hash and raise if any rank differs (no-op without a group).

        Raises:
            StateError: the ranks' weights are not bitwise equal.
        """
        if not (dist.is_available() and dist.is_initialized()):
            return
        mine = weights_hash(self.policy.weights)
        hashes: list[Any] = [None] * dist.get_world_size(self.group)
        dist.all_gather_object(hashes, mine, group=self.group)
        if len(set(hashes)) != 1:
            raise StateError(f"step {self._step}: ranks disagree on the weights: {hashes}")

    # -- state --------------------------------------------------------------------------------
    def _rank_key(self) -> str:
        return f"rank_{self.loader.rank}"

    def state_dict(self) -> dict[str, Any]:
        """The whole data side: ``{"format_version", "step", "policy", "rank_<r>"}``.

        ``policy`` (identical on every rank) and ``rank_<r>`` (this rank's loader position and
        not-yet-reduced tracker sums) are JSON strings: ``torch.distributed.checkpoint`` stores each
        as one opaque object (it would otherwise flatten nested lists and dicts and demand the same
        shape on load, which a policy's growing history does not have), the distinct ``rank_<r>``
        keys keep every rank's entry, and ``torch.save``/``torch.load(weights_only=True)`` and JSON
        carry them as they are. ``json.loads`` them to inspect.
        """
        mine = {
            "micro": self._micro,
            "loader": self.loader.state_dict(),
            "tracker": self.tracker.state_dict(),
        }
        return {
            "format_version": STATE_FORMAT_VERSION,
            "step": self._step,
            "policy": json.dumps(self.policy.state_dict()),
            self._rank_key(): json.dumps(mine),
        }

    def gathered_state_dict(self) -> dict[str, Any]:
        """:meth:`state_dict` with every rank's entry (``rank_0`` ... ``rank_<W-1>``), so one
        process can write the whole data side into one checkpoint file and every rank can
        :meth:`load_state_dict` its own entry from it.

        A collective (one ``all_gather_object`` over the group) when ``torch.distributed`` is
        initialised: call it on every rank at the same point. Otherwise it is :meth:`state_dict`.
        """
        state = self.state_dict()
        if not (dist.is_available() and dist.is_initialized()):
            return state
        key = self._rank_key()
        entries: list[Any] = [None] * dist.get_world_size(self.group)
        dist.all_gather_object(entries, (key, state[key]), group=self.group)
        for rank_key, entry in entries:
            state[rank_key] = entry
        return state

    def _load_elastic(self, policy: Any, saved: Mapping[str, _RankState], world: int) -> None:
        """Resume a data state saved by ``world`` ranks on this loader's world size (see
        :meth:`ado.data.MixtureLoader.load_state_dict`): needs every old rank's entry, taken at
        a step boundary (no micro-batch or loss sum pending)."""
        missing = [r for r in range(world) if f"rank_{r}" not in saved]
        if missing:
            raise StateError(
                f"resuming a data state of {world} ranks on {self.loader.world_size} needs every "
                f"rank's entry; missing ranks {missing}"
            )
        entries = [saved[f"rank_{r}"] for r in range(world)]
        buffers = [e.tracker.get("buffer") for e in entries]
        if not all(isinstance(b, list) for b in buffers):
            raise StateError("data state rank entries' tracker.buffer must be lists")
        try:
            pending = any(e.micro for e in entries) or any(
                float(x) for b in buffers for x in b  # type: ignore[union-attr, arg-type]
            )
        except (TypeError, ValueError) as err:
            raise StateError(f"data state tracker.buffer is malformed: {err}") from None
        if pending:
            raise StateError(
                "a data state with micro-batches or loss sums pending cannot be resumed on "
                "another number of ranks; checkpoint at a step boundary"
            )
        self.policy.load_state_dict(policy)
        self.loader.load_state_dict([e.loader for e in entries])
        self.tracker.load_state_dict(entries[0].tracker)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output; the following batches, losses and weights then equal
        those of the uninterrupted run. A state saved by another number of ranks (with every
        rank's entry, as :meth:`gathered_state_dict` or ``ado.torch.train``'s checkpoints hold
        them) resumes elastically: the policy continues unchanged and the loader as
        :meth:`ado.data.MixtureLoader.load_state_dict` describes.

        Raises:
            StateError: another format version, no entry for this rank, or a policy/loader/tracker
            state that does not fit; an elastic resume without every old rank's entry or with
            sums pending.
        """
        if not isinstance(state, Mapping):
            raise StateError(f"data state must be a mapping, got {type(state).__name__}")
        version = state.get("format_version")
        if type(version) is int and version != STATE_FORMAT_VERSION:
            raise StateError(f"data state format_version {version} is not {STATE_FORMAT_VERSION}")
        fields = {k: state[k] for k in _DataState.model_fields if k in state}
        top = parse_state(_DataState, fields, "data state")
        key = self._rank_key()
        ranks = sorted((k for k in state if str(k).startswith("rank_")), key=_rank_number)
        saved = {
            k: parse_state(_RankState, _decode(state[k], k), f"data state {k}") for k in ranks
        }
        policy = _decode(top.policy, "policy")
        world = saved[ranks[0]].loader.get("world_size") if ranks else None
        if world is not None and (type(world) is not int or world < 1):
            raise StateError(f"data state {ranks[0]}.loader.world_size {world!r} is not a count")
        elastic = world is not None and world != self.loader.world_size
        if not elastic and key not in saved:
            raise StateError(f"data state has no {key!r} entry (has {ranks})")
        # all or nothing: a refused part (another batch size, a policy of other domains, an
        # elastic resume that cannot be done...) leaves the policy, loader and tracker as they were
        before = (self.policy.state_dict(), self.loader.state_dict(), self.tracker.state_dict())
        try:
            if elastic:
                assert isinstance(world, int)
                self._load_elastic(policy, saved, world)
            else:
                mine = saved[key]
                self.policy.load_state_dict(policy)
                self.loader.load_state_dict(mine.loader)
                self.tracker.load_state_dict(mine.tracker)
            if self.policy.step + 1 != top.step:
                raise StateError(
                    f"data state step {top.step} does not follow the policy's step "
                    f"{self.policy.step}"
                )
        except BaseException:
            self.policy.load_state_dict(before[0])
            self.loader.load_state_dict(before[1])
            self.tracker.load_state_dict(before[2])
            raise
        self._micro = 0 if elastic else saved[key].micro
        self._step = top.step
