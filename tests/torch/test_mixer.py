"""DataMixer: weights change only at optimizer-step boundaries; accumulation is one step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from ado import StepStats, load_policy
from ado.data import MixtureLoader, PackConfig
from ado.errors import InvalidInputError, StateError
from ado.torch import DataMixer, lm_tensors, weights_hash

ROOT = Path(__file__).resolve().parents[2]
PACK = PackConfig(seq_len=16, eos_id=0, field="u16", vocab_size=64)
#: DoReMi-style multiplicative weights on the plain loss: the weights move at every step.
POLICY = {"kind": "doremi", "eta": 0.5, "estimator": {"kind": "loss_ema", "init": "zero"}}


def _mixer(manifest: Path, grad_accum: int, batch: int = 4, **kw: Any) -> DataMixer:
    loader = MixtureLoader(manifest, batch, seed=3, pack=PACK)
    policy = load_policy(POLICY, domains=loader.domains)
    return DataMixer(loader, policy, grad_accum=grad_accum, tokens_per_sample=16, **kw)


def _fake_loss(domain: torch.Tensor) -> torch.Tensor:
    # a deterministic per-domain loss, different per domain, so the policy moves every step
    return 1.0 + domain.double() * 0.5


@pytest.mark.parametrize("grad_accum", [1, 3])
def test_weights_change_only_at_step_boundaries(make_corpus: Any, grad_accum: int) -> None:
    mixer = _mixer(make_corpus(), grad_accum)
    seen: list[str] = []
    for t in range(6):
        w_start = mixer.weights.copy()
        counts = np.zeros(3)
        sums = np.zeros(3)
        for _ in range(grad_accum):
            # every micro-batch of the step is drawn with the weights in force at its start
            np.testing.assert_array_equal(mixer.loader.weights, w_start)
            batch = mixer.next_batch()
            _, _, dom = lm_tensors(batch, "cpu")
            loss = _fake_loss(dom)
            mixer.record(loss, batch.domain)
            np.add.at(counts, batch.domain, 1.0)
            np.add.at(sums, batch.domain, loss.numpy())
        np.testing.assert_array_equal(mixer.weights, w_start)  # nothing moved mid-step
        stats = mixer.step()
        # one StepStats per optimizer step, summing all its micro-batches
        assert stats.step == t
        assert mixer.policy.step == t
        np.testing.assert_array_equal(stats.counts, counts)
        np.testing.assert_allclose(stats.loss_sums, sums, rtol=1e-15)
        assert stats.token_counts is not None
        assert stats.token_counts.sum() == 4 * grad_accum * 16
        np.testing.assert_array_equal(mixer.loader.weights, mixer.weights)
        seen.append(weights_hash(mixer.weights))
    assert len(set(seen)) == len(seen)  # the policy really moved at every boundary


def test_accumulation_equals_one_big_batch(make_corpus: Any) -> None:
    """grad_accum=2 with batch 4 hands the policy the same statistics as the same 8 rows in one
    micro-batch would: accumulation is one step, not two."""
    manifest = make_corpus()
    acc = _mixer(manifest, 2)
    ref_policy = load_policy(POLICY, domains=acc.domains)
    for t in range(4):
        doms = []
        for _ in range(2):
            b = acc.next_batch()
            doms.append(b.domain)
            acc.record(_fake_loss(torch.from_numpy(b.domain)), b.domain)
        acc.step()
        dom = np.concatenate(doms)
        counts = np.bincount(dom, minlength=3).astype(float)
        sums = np.bincount(dom, weights=1.0 + dom * 0.5, minlength=3)
        ref_policy.update(StepStats(step=t, counts=counts, loss_sums=sums))
        np.testing.assert_array_equal(acc.weights, ref_policy.weights)


def test_contract_violations_raise(make_corpus: Any) -> None:
    mixer = _mixer(make_corpus(), 2)
    with pytest.raises(StateError, match="drew 0 of its 2"):
        mixer.step()
    mixer.next_batch()
    mixer.next_batch()
    with pytest.raises(StateError, match="already drew its 2"):
        mixer.next_batch()
    loader = MixtureLoader(make_corpus(name="other"), 2, pack=PACK)
    policy = load_policy(ROOT / "policies" / "uniform.yaml", domains=["x", "y", "z"])
    with pytest.raises(InvalidInputError, match="differ from loader domains"):
        DataMixer(loader, policy)
    with pytest.raises(InvalidInputError, match="grad_accum"):
        _mixer(make_corpus(name="third"), 0)


def test_state_dict_resumes_mid_step(make_corpus: Any) -> None:
    """Save after 3 steps plus one of two micro-batches (through torch.save); the resumed mixer
    continues with identical batches, statistics and weights."""
    manifest = make_corpus()

    def drive(m: DataMixer, micro: int) -> list[Any]:
        out = []
        for _ in range(micro):
            b = m.next_batch()
            m.record(_fake_loss(torch.from_numpy(b.domain)), b.domain)
            out.append((b.keys, b.domain.tolist()))
            if m._micro == m.grad_accum:
                s = m.step()
                out.append((s.counts.tolist(), s.loss_sums.tolist(), m.weights.tolist()))
        return out

    full = drive(_mixer(manifest, 2), 14)
    first = _mixer(manifest, 2)
    head = drive(first, 7)
    import io

    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    again = _mixer(manifest, 2)
    again.load_state_dict(state)
    assert again.steps_done == 3
    assert head + drive(again, 7) == full
