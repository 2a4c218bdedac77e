"""The policy contract, the configuration base, the registry and ``load_policy``.

A policy turns per-step statistics into the sampling distribution of the next batch::

    policy = load_policy("policies/ado.yaml", domains=names, prior=mu)
    policy.update(StepStats(step=t, counts=counts, loss_sums=loss_sums))
    w = policy.weights          # float64[K], >= 0, sums to 1: the distribution for batch t + 1

A policy class subclasses :class:`Policy`, declares its configuration as a nested ``Config``
(a :class:`PolicyConfig` with a ``kind`` literal) and registers with :func:`register_policy`, or
through the entry-point group ``ado.policies`` (entry-point name = ``kind``, value = the policy
class). Its YAML is then ``kind: <name>`` plus the config's fields, plus an optional ``guardrails:``
list.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, ValidationError

from ado._config_file import read_config
from ado._state import Distribution, StateModel, Step, parse_state
from ado.errors import ConfigError, InvalidInputError, StateError
from ado.policy.guardrails import Guardrail, GuardrailConfig
from ado.stats import F64, StepStats, normalised

__all__ = [
    "ENTRY_POINT_GROUP",
    "STATE_FORMAT_VERSION",
    "Guarded",
    "Policy",
    "PolicyConfig",
    "load_policy",
    "load_policy_config",
    "policy_kinds",
    "register_policy",
]

logger = logging.getLogger(__name__)

#: Entry-point group through which installed packages contribute policy classes.
ENTRY_POINT_GROUP = "ado.policies"
#: Version of the ``state_dict`` layout.
STATE_FORMAT_VERSION = 1

_REGISTRY: dict[str, type[Policy]] = {}


class PolicyConfig(BaseModel):
    """Base of every policy configuration: frozen, unknown fields rejected, ``kind`` discriminator.

    Attributes:
        kind: the registry key of the policy.
        guardrails: constraints applied, in order, to the policy's weights (see
            :mod:`ado.policy.guardrails`).
    """

    # strict: YAML `update_interval: true` is not 1, `"12"` not 12; no inf/NaN unless a field
    # says so
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    kind: str
    guardrails: list[GuardrailConfig] = []

    policy_class: ClassVar[type[Policy] | None] = None

    def harness_needs(self) -> frozenset[str]:
        """What this policy needs from an experiment harness such as ``ado compare``:

        * ``"schedule"``: it acts on a step schedule (``ignore_steps``, ``start_step``,
          ``update_interval``, ...) that a run-length preset should scale to the run;
        * ``"reference_losses"``: its estimator wants per-domain reference losses
          (``estimator.reference_losses``), from a run of the natural mixture with the same
          model, seed and tokens;
        * ``"target_set"``: a held-out target set that the training loop evaluates every
          ``target_set.every`` steps on ``target_set.tokens`` tokens, its mean loss handed to
          :meth:`Policy.observe_target` (``TrainConfig.target_manifest``).

        The base policy needs nothing.
        """
        return frozenset()

    def build(self, domains: Sequence[str], prior: npt.ArrayLike | None = None) -> Policy:
        """Construct the policy (wrapped in its guardrails, if any).

        Args:
            domains: the K domain names, in the order of every per-domain array.
            prior: the prior mu (e.g. natural token proportions); None means uniform.
        """
        cls = type(self).policy_class
        if cls is None:
            raise ConfigError(f"policy config {type(self).__name__} is not registered")
        policy = cls(self, domains, prior)
        if self.guardrails:
            return Guarded(policy, self.guardrails)
        return policy

    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON form of this configuration."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def _check_domains(domains: Sequence[str]) -> list[str]:
    if isinstance(domains, str):
        raise InvalidInputError("domains must be a sequence of names, not a string")
    names = [str(d) for d in domains]
    if not names:
        raise InvalidInputError("domains is empty")
    dupes = sorted(d for d, n in Counter(names).items() if n > 1)
    if dupes:
        raise InvalidInputError(f"domain names must be unique; repeated: {dupes}")
    return names


def _check_prior(prior: npt.ArrayLike | None, k: int) -> F64:
    if prior is None:
        return np.full(k, 1.0 / k)
    mu = np.asarray(prior, dtype=np.float64)
    if mu.shape != (k,):
        raise InvalidInputError(f"prior must have shape ({k},), got {mu.shape}")
    if not np.all(np.isfinite(mu)) or mu.min() < 0 or mu.max() <= 0:
        raise InvalidInputError(f"prior must be finite, >= 0 and not all 0, got {mu.tolist()}")
    return normalised(mu)


def _readonly(w: F64) -> F64:
    w.flags.writeable = False
    return w


class Policy(ABC):
    """A data-mixture policy.

    Subclasses implement :meth:`_update` (return the next weights) and, if they hold state beyond
    the weights, :meth:`_state`/:meth:`_load_state`; optionally :meth:`metrics`.

    Args:
        config: the policy's configuration.
        domains: the K domain names.
        prior: the prior mu (None: uniform).
    """

    Config: ClassVar[type[PolicyConfig]]

    def __init__(
        self, config: PolicyConfig, domains: Sequence[str], prior: npt.ArrayLike | None = None
    ) -> None:
        self.config = config
        self._domains = _check_domains(domains)
        self._k = len(self._domains)
        self._prior = _readonly(_check_prior(prior, self._k))
        self._weights = self._prior
        self._step = -1

    @property
    def domains(self) -> list[str]:
        """The domain names."""
        return list(self._domains)

    @property
    def num_domains(self) -> int:
        """K."""
        return self._k

    @property
    def prior(self) -> F64:
        """The prior mu (read-only)."""
        return self._prior

    @property
    def weights(self) -> F64:
        """The distribution for the next batch: float64[K], >= 0, sums to 1 (read-only)."""
        return self._weights

    @property
    def step(self) -> int:
        """The last step ingested (-1 before the first update)."""
        return self._step

    def _set_weights(self, w: F64) -> None:
        self._weights = _readonly(np.array(w, dtype=np.float64))

    def update(self, stats: StepStats) -> None:
        """Ingest the statistics of the batch trained at ``stats.step`` (reduced over all ranks).

        Raises:
            InvalidInputError: the stats have the wrong number of domains, or the step does not
            increase, or the policy computed weights that are not a distribution (NaN/inf,
            negative, wrong length, zero sum; the message names the policy). A step that raises
            changes nothing: the built-in policies validate before they move (and ADO undoes an
            interrupted refit); a custom policy's :meth:`_update` should do the same.
        """
        if not isinstance(stats, StepStats):
            raise InvalidInputError(f"update needs a StepStats, got {type(stats).__name__}")
        prev_step = self._step
        proposed = self._advance(stats)
        try:
            w = self._checked(proposed)
        except BaseException:
            self._step = prev_step
            raise
        self._set_weights(w)

    def _advance(self, stats: StepStats) -> npt.ArrayLike:
        """Check ``stats`` against this policy, run :meth:`_update` and move to its step; returns
        the weights exactly as :meth:`_update` proposed them (not yet checked)."""
        if stats.counts.shape[0] != self._k:
            raise InvalidInputError(
                f"StepStats has {stats.counts.shape[0]} domains; the policy has {self._k}"
            )
        if stats.step <= self._step:
            raise InvalidInputError(
                f"steps must increase: got step {stats.step} after step {self._step}"
            )
        w = self._update(stats)
        self._step = stats.step
        return w

    def _name(self) -> str:
        return f"{type(self).__name__} (kind {self.config.kind!r})"

    def _checked(self, w: npt.ArrayLike) -> F64:
        """``w`` renormalised to sum 1, after checking that it is a distribution over K.

        Weights that already sum to 1 up to rounding are returned bitwise as they are (dividing by
        a sum of 1 ± 1 ulp would only move their last bits, and a static prior must stay itself).
        """
        arr = np.asarray(w, dtype=np.float64)
        ok = arr.shape == (self._k,) and bool(np.isfinite(arr).all()) and arr.min() >= 0.0
        if not (ok and arr.max() > 0.0):
            raise InvalidInputError(
                f"policy {self._name()} computed invalid "
                f"weights (want {self._k} finite, non-negative values with a positive sum): "
                f"{np.array2string(arr, threshold=12)}"
            )
        total = float(np.add.reduce(arr))
        return arr if abs(total - 1.0) <= 1e-12 else normalised(arr)

    @abstractmethod
    def _update(self, stats: StepStats) -> F64:
        """Compute the next weights from ``stats`` (validated, right length, increasing step)."""

    def metrics(self) -> dict[str, float]:
        """Scalars for any logger: ``weight/<domain>`` plus policy-specific values."""
        return {f"weight/{d}": float(w) for d, w in zip(self._domains, self._weights, strict=True)}

    def _state(self) -> dict[str, Any]:
        """Policy-specific JSON-safe state (beyond weights and step)."""
        return {}

    def observe_target(self, step: int, loss: float) -> None:
        """The mean loss of a held-out target set after training step ``step``, for a policy
        whose config asks the training loop for one (``"target_set"`` in
        :meth:`PolicyConfig.harness_needs`; ADO's ``target_set``). The loop calls it after the
        policy's update for ``step`` and before the next one.

        Raises:
            ConfigError: this policy takes no target loss.
        """
        raise ConfigError(f"{self._name()} takes no held-out target loss (see ADO's target_set)")

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Stop any background thread the policy runs (a fit in flight finishes first). The
        policy stays usable: a later update starts what it needs again."""

    def _load_state(self, state: dict[str, Any]) -> None:  # noqa: B027 (optional hook)
        """Restore :meth:`_state` output."""

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe, versioned state: domains, config fingerprint, step, weights, policy state."""
        return {
            "format_version": STATE_FORMAT_VERSION,
            "kind": self.config.kind,
            "domains": list(self._domains),
            "config_fingerprint": self.config.fingerprint(),
            "step": self._step,
            "weights": self._weights.tolist(),
            "state": self._state(),
        }

    def load_state_dict(self, state: Mapping[str, Any], *, strict: bool = True) -> None:
        """Restore :meth:`state_dict` output; future weights are then bitwise identical.

        Every field is validated first (exact types, finite values, one entry per domain,
        weights that are a distribution, the policy's own state); a load that fails leaves the
        policy exactly as it was.

        Args:
            state: a state produced by :meth:`state_dict` (possibly through JSON).
            strict: a config-fingerprint mismatch raises (True) or only logs a warning (False).

        Raises:
            StateError: not a mapping, other format version, kind or domains, a fingerprint
            mismatch (strict), or an invalid field (the message names it).
        """
        st = parse_state(_PolicyState, state, "policy state", k=None)
        if st.format_version != STATE_FORMAT_VERSION:
            raise StateError(
                f"policy state format_version {st.format_version!r} is not {STATE_FORMAT_VERSION}"
            )
        if st.kind != self.config.kind:
            raise StateError(
                f"state is for policy kind {st.kind!r}, this policy is {self.config.kind!r}"
            )
        if st.domains != self._domains:
            shown = st.domains if len(st.domains) <= 20 else f"{len(st.domains)} other domains"
            raise StateError(f"state is for domains {shown}, this policy has {self._domains}")
        if st.config_fingerprint != self.config.fingerprint():
            msg = "state was saved under a different policy configuration (fingerprint mismatch)"
            if strict:
                raise StateError(msg + "; pass strict=False to load it anyway")
            logger.warning(msg)
        weights = parse_state(_Weights, {"weights": st.weights}, "policy state", k=self._k)
        saved = self.state_dict()
        try:
            self._load_state(dict(st.state))
        except BaseException:
            self._load_state(saved["state"])  # all or nothing: back to the state before
            raise
        self._step = st.step
        self._set_weights(np.asarray(weights.weights, dtype=np.float64))


class _PolicyState(StateModel):
    format_version: StrictInt
    kind: StrictStr
    domains: list[StrictStr]
    config_fingerprint: StrictStr
    step: Step
    weights: list[Any]
    state: dict[str, Any]


class _Weights(StateModel):
    weights: Distribution


class Guarded(Policy):
    """A policy wrapped in guardrails (built by :meth:`PolicyConfig.build` when the config lists
    any). The wrapped policy sees every step; its proposal passes through each guardrail in
    order."""

    def __init__(self, inner: Policy, rails: Sequence[GuardrailConfig]) -> None:
        super().__init__(inner.config, inner.domains, inner.prior)
        self.inner = inner
        self.rails: list[Guardrail] = [r.build(self._domains, self._prior) for r in rails]
        w = inner.weights
        for rail in self.rails:
            w = rail.apply(w, w, None)
        self._set_weights(w)

    def _update(self, stats: StepStats) -> F64:
        for rail in self.rails:  # before anything moves: a refused step changes nothing
            rail.check(stats)
        # the raw proposal: a guardrail (fallback) may be there to replace a bad one
        w = np.asarray(self.inner._advance(stats), dtype=np.float64)
        self.inner._set_weights(w)
        prev = self._weights
        for rail in self.rails:
            w = rail.apply(w, prev, stats)
        return w

    def _name(self) -> str:
        return f"{self.inner._name()} with guardrails"

    def observe_target(self, step: int, loss: float) -> None:
        """Forwarded to the wrapped policy."""
        self.inner.observe_target(step, loss)

    def close(self) -> None:
        """Close the wrapped policy."""
        self.inner.close()

    def metrics(self) -> dict[str, float]:
        """The wrapped policy's metrics (its ``weight/*`` renamed ``proposed/*``), the final weights
        and each guardrail's counters as ``guardrail/<i>_<name>/<counter>``."""
        out = {
            (("proposed/" + k[len("weight/") :]) if k.startswith("weight/") else k): v
            for k, v in self.inner.metrics().items()
        }
        out.update(super().metrics())
        for i, rail in enumerate(self.rails):
            for key, value in rail.metrics().items():
                out[f"guardrail/{i}_{rail.name}/{key}"] = value
        return out

    def _state(self) -> dict[str, Any]:
        return {
            "inner": self.inner.state_dict(),
            "guardrails": [rail.state_dict() for rail in self.rails],
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        st = parse_state(_GuardedState, state, "guarded policy state")
        if len(st.guardrails) != len(self.rails):
            raise StateError(
                f"state has {len(st.guardrails)} guardrail states, expected {len(self.rails)}"
            )
        self.inner.load_state_dict(st.inner)
        for rail, rail_state in zip(self.rails, st.guardrails, strict=True):
            rail.load_state_dict(rail_state)


class _GuardedState(StateModel):
    inner: dict[str, Any]
    guardrails: list[dict[str, Any]]


P = TypeVar("P", bound=type[Policy])


def register_policy(cls: P) -> P:
    """Class decorator: register a :class:`Policy` subclass under its ``Config``'s ``kind``.

    The class must define ``Config``, a :class:`PolicyConfig` subclass whose ``kind`` field defaults
    to the name used in YAML.

    Raises:
        ConfigError: no ``Config``, no ``kind`` default, or the kind is taken by another class.
    """
    config = getattr(cls, "Config", None)
    if not (isinstance(config, type) and issubclass(config, PolicyConfig)):
        raise ConfigError(f"{cls.__name__} needs a nested Config(PolicyConfig) class")
    kind = config.model_fields["kind"].default
    if not isinstance(kind, str) or not kind:
        raise ConfigError(f"{cls.__name__}.Config.kind needs a string default (the YAML kind)")
    existing = _REGISTRY.get(kind)
    if existing is not None and existing is not cls:
        raise ConfigError(f"policy kind {kind!r} is already registered by {existing.__name__}")
    config.policy_class = cls
    _REGISTRY[kind] = cls
    return cls


def _from_entry_points(kind: str) -> type[Policy] | None:
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name != kind:
            continue
        try:
            obj = ep.load()
        except Exception as err:  # a broken plugin must name itself
            raise ConfigError(
                f"entry point {ep.name} = {ep.value!r} failed to load: {err}"
            ) from err
        if not (isinstance(obj, type) and issubclass(obj, Policy)):
            raise ConfigError(f"entry point {ep.name} = {ep.value!r} is not a Policy subclass")
        if _REGISTRY.get(kind) is not obj:
            register_policy(obj)
        return obj
    return None


def policy_kinds() -> list[str]:
    """Registered kinds (built-ins and anything imported or loaded so far), sorted."""
    return sorted(_REGISTRY)


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            try:
                node = node[int(part)]
            except (ValueError, IndexError):
                raise ConfigError(f"override {key!r}: no list item {part!r}") from None
        else:
            if part not in node or node[part] is None:
                node[part] = {}
            node = node[part]
        if not isinstance(node, dict | list):
            raise ConfigError(f"override {key!r}: {'.'.join(parts[: i + 1])} is not a mapping")
    last = parts[-1]
    if isinstance(node, list):
        try:
            node[int(last)] = value
        except (ValueError, IndexError):
            raise ConfigError(f"override {key!r}: no list item {last!r}") from None
    else:
        node[last] = value


def load_policy_config(
    source: str | Path | Mapping[str, Any], overrides: Mapping[str, Any] | None = None
) -> PolicyConfig:
    """Read and validate a policy configuration.

    Args:
        source: a preset name (``"ado"``, see :func:`ado.policy.presets`), a YAML file path, or
            an already-parsed mapping.
        overrides: field values replacing those of ``source`` before validation; keys are field
            names, or dotted paths into nested fields (``"estimator.decay"``,
            ``"guardrails.0.rate"``).

    Raises:
        ConfigError: unreadable file, no/unknown ``kind``, unknown field, invalid value.
    """
    where = "policy config"
    if isinstance(source, Mapping):
        data: Any = json.loads(json.dumps(source))  # a deep, plain copy
    else:
        from ado.policy.presets import resolve_policy

        path = resolve_policy(source)
        where = str(path)
        data = read_config(path, "policy config")
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping with a 'kind', got {type(data).__name__}")
    for key, value in (overrides or {}).items():
        _set_dotted(data, str(key), value)
    kind = data.get("kind")
    if not isinstance(kind, str):
        raise ConfigError(f"{where}: missing 'kind' (one of {policy_kinds()})")
    cls = _REGISTRY.get(kind) or _from_entry_points(kind)
    if cls is None:
        raise ConfigError(
            f"{where}: unknown policy kind {kind!r}; known: {policy_kinds()} "
            f"(or register one, see ado.register_policy)"
        )
    try:
        return cls.Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{where}: invalid {kind!r} policy config:\n{err}") from None


def load_policy(
    source: str | Path | Mapping[str, Any],
    *,
    domains: Sequence[str],
    prior: npt.ArrayLike | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Policy:
    """Load a policy from a YAML preset (or mapping) and build it for ``domains``.

    Args:
        source: preset name, YAML path or mapping (``kind`` plus fields).
        domains: the K domain names.
        prior: the prior mu (None: uniform).
        overrides: replacement field values, validated like the YAML (see
            :func:`load_policy_config`).

    Example:
        ``load_policy("ado", domains=names, prior=mu, overrides=dict(update_interval=200))``
    """
    return load_policy_config(source, overrides).build(domains, prior)
