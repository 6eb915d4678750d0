"""How a classifier's probabilities become a label: temperature, then the GGS threshold.

One place reads a classifier's ``temperature`` and ``decision`` metadata keys (written by
``glomkit study classifier-cv --final``) and applies them; ``glomkit classify`` and the
pipeline both call it. A model without those keys keeps the plain argmax of its raw softmax.

- ``temperature`` T (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017): the
  probabilities are recomputed as ``softmax(log p / T)``; T is fitted on out-of-fold predictions
  by minimising the negative log-likelihood, so ``ggs_probability`` means what it says.
- ``decision`` = ``{"positive": "sclerosed", "threshold": t, "glomerulus_min": 0.5}``: a patch
  is a glomerulus when P(glomerulus classes) >= ``glomerulus_min``; a glomerulus is GGS when its
  GGS score P(GGS) / P(glomerulus) >= t (t chosen on out-of-fold predictions); inside each group
  the most probable class wins.

Example::

    d = Decision.of(model.info.typed)
    probs = d.calibrate(raw_probs)
    labels = d.labels(probs, scheme)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from glomkit.models.metadata import ClassifierMetadata, DecisionFields, parse_decision

# the default share of the real glomeruli (out of fold) that a classifier's non_glomerular cut
# (Decision.glomerulus_min) may drop: glomkit.classify.cv fits the cut at this quantile
MAX_REAL_GLOM_DROPPED = 0.02

EPS = 1e-12


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(probs) / T)`` row-wise (T = 1 returns the input)."""
    p = np.asarray(probs, dtype=np.float64)
    if temperature == 1.0 or p.size == 0:
        return p
    z = np.log(np.clip(p, EPS, 1.0)) / float(temperature)
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def nll(probs: np.ndarray, y: Sequence[int]) -> float:
    """Mean negative log-likelihood of integer labels ``y`` under ``probs``."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y, dtype=int)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], EPS, 1.0))))


def fit_temperature(probs: np.ndarray, y: Sequence[int], bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature minimising the NLL of ``y`` (bounded search on log T; scipy)."""
    from scipy.optimize import minimize_scalar

    y = np.asarray(y, dtype=int)
    if len(y) == 0:
        return 1.0
    res = minimize_scalar(
        lambda log_t: nll(apply_temperature(probs, float(np.exp(log_t))), y),
        bounds=(float(np.log(bounds[0])), float(np.log(bounds[1]))),
        method="bounded",
    )
    return float(np.exp(res.x))


def ggs_score(probs: np.ndarray, scheme) -> np.ndarray:
    """P(GGS) / P(glomerulus): the grade of a patch taken to be a glomerulus."""
    p = np.asarray(probs, dtype=np.float64)
    return scheme.ggs_probability(p) / np.maximum(scheme.glomerulus_probability(p), EPS)


def choose_threshold(score: np.ndarray, truth: np.ndarray) -> float:
    """The score threshold (predict positive when score >= t) with the best balanced accuracy.

    Candidates are midpoints between consecutive distinct scores (robust to ties); on a tie of
    balanced accuracy the candidate closest to 0.5 wins. 0.5 when one class is missing.
    """
    from sklearn.metrics import balanced_accuracy_score

    s = np.asarray(score, dtype=np.float64)
    t = np.asarray(truth, dtype=bool)
    if t.all() or not t.any():
        return 0.5
    u = np.unique(s)
    cands = np.concatenate([[u[0] - 1e-6], (u[:-1] + u[1:]) / 2, [u[-1] + 1e-6]])
    best, best_t = -1.0, 0.5
    for c in cands:
        ba = balanced_accuracy_score(t, s >= c)
        if ba > best + 1e-12 or (abs(ba - best) <= 1e-12 and abs(c - 0.5) < abs(best_t - 0.5)):
            best, best_t = ba, float(c)
    return best_t


@dataclass(frozen=True)
class Decision(DecisionFields):
    """Temperature and thresholds of a classifier (defaults: raw softmax, argmax), and how they apply."""

    @classmethod
    def of(cls, info: ClassifierMetadata) -> Decision:
        """The decision a classifier's typed metadata states."""
        return cls(**asdict(info.decision))

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any] | None, where: str = "decision") -> Decision:
        """The decision of raw keys (``temperature``, ``decision``: a CV summary's, or a model's)."""
        return cls(**asdict(parse_decision(meta or {}, where)))

    def to_meta(self) -> dict[str, Any]:
        out: dict[str, Any] = {"temperature": float(self.temperature)}
        if self.threshold is not None:
            out["decision"] = {
                "positive": self.positive,
                "threshold": float(self.threshold),
                "score": "P(GGS) / P(glomerulus), after temperature",
                "glomerulus_min": float(self.glomerulus_min),
            }
        return out

    def calibrate(self, probs: np.ndarray) -> np.ndarray:
        return apply_temperature(probs, self.temperature)

    def labels(self, probs: np.ndarray, scheme) -> np.ndarray:
        """Class index per row of (already calibrated) ``probs``."""
        p = np.asarray(probs, dtype=np.float64)
        if self.threshold is None or not scheme.ggs_indices:
            return p.argmax(axis=-1) if p.size else np.zeros(len(p), dtype=int)
        k = len(scheme)
        glom = np.zeros(k, bool)
        glom[scheme.glomerulus_indices] = True
        ggs = np.zeros(k, bool)
        ggs[scheme.ggs_indices] = True

        def best_of(mask: np.ndarray) -> np.ndarray:
            return np.where(mask[None, :], p, -1.0).argmax(axis=-1)

        is_glom = (
            scheme.glomerulus_probability(p) >= self.glomerulus_min
            if (~glom).any()
            else np.ones(len(p), bool)
        )
        is_ggs = ggs_score(p, scheme) >= self.threshold
        non_ggs_glom = glom & ~ggs
        out = np.where(is_ggs, best_of(ggs), best_of(non_ggs_glom) if non_ggs_glom.any() else best_of(ggs))
        if (~glom).any():
            out = np.where(is_glom, out, best_of(~glom))
        return out.astype(int)
